//! The paths the benchmark runs on (the suite's own topologies) and the connected ends of
//! one mode on one of them.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::Arc;

use anyhow::{Context, Result};
use harness::sockets::{self, Family};
use harness::sys::socket_mmap::{page_size, Sharing, SocketMapping};
use harness::sys::uring::Ring;
use harness::sys::zerocopy::set_so_zerocopy;
use harness::topology::{DeadEnd, Loopback, Pair, PairConfig, Topology};
use serde::{Deserialize, Serialize};

use super::measure::{RecvEnd, SendEnd, RX_SENDER_CHUNK};
use super::modes::{Mode, Side};
use crate::probes::Answer;
use crate::receive::net::{aligned_mtu, ConnOpts, Path as RxPath, RxNet};

/// Where the bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathKind {
    /// TCP over `lo` in one namespace.
    Loopback,
    /// TCP over a veth pair between two namespaces.
    Veth,
    /// UDP into a veth whose peer is down: the packets are dropped at transmit, so only the
    /// sender's cost exists, and zero-copy data is never copied by anyone.
    Deadend,
}

/// The largest UDP payload of one IPv4 datagram.
pub const MAX_UDP_PAYLOAD: u64 = 65_507;

impl PathKind {
    pub const ALL: [PathKind; 3] = [PathKind::Loopback, PathKind::Veth, PathKind::Deadend];

    pub fn id(self) -> &'static str {
        match self {
            PathKind::Loopback => "loopback",
            PathKind::Veth => "veth",
            PathKind::Deadend => "deadend",
        }
    }

    /// Whether a receiving socket gets the bytes (receive modes need one).
    pub fn delivers(self) -> bool {
        self != PathKind::Deadend
    }

    /// The largest message this path can carry as one message.
    pub fn max_message(self) -> Option<u64> {
        (self == PathKind::Deadend).then_some(MAX_UDP_PAYLOAD)
    }

    /// How a series of `side` is set up on this path, for the report.
    pub fn setup(self, side: Side) -> String {
        match (self, side) {
            (PathKind::Loopback, Side::Send) => {
                "TCP over lo (MTU 65536); the receiver reads with a 256 KiB copy buffer".into()
            }
            (PathKind::Veth, Side::Send) => "TCP over a veth pair (MTU 1500, default offloads); \
                 the receiver reads with a 256 KiB copy buffer"
                .into(),
            (PathKind::Deadend, _) => "UDP, one datagram per message, into a veth whose peer \
                 is down (MTU 65535, so no fragments); nothing receives"
                .into(),
            (p, Side::Receive) => format!(
                "TCP over {} with the page-aligned MTU {} and a sender writing 60 KiB \
                 MSG_ZEROCOPY chunks (the set-up under which one host can map received \
                 pages at all)",
                if p == PathKind::Loopback {
                    "lo"
                } else {
                    "a veth pair"
                },
                aligned_mtu(Family::V4)
            ),
        }
    }
}

/// The networks of one path: one for the send series, one for the receive series.
pub struct PathNets {
    pub kind: PathKind,
    send: Box<dyn Topology>,
    recv: Option<RxNet>,
}

impl PathNets {
    pub fn build(kind: PathKind) -> Result<PathNets> {
        let (send, recv): (Box<dyn Topology>, Option<RxNet>) = match kind {
            PathKind::Loopback => (
                Box::new(Loopback::new(None)?),
                Some(rx_net(RxPath::Loopback)?),
            ),
            PathKind::Veth => (
                Box::new(Pair::new(PairConfig::default())?),
                Some(rx_net(RxPath::Pair)?),
            ),
            PathKind::Deadend => {
                let d = DeadEnd::new()?;
                harness::netlink::set_mtu(&d.a.ns, &d.a.ifname, 65_535)
                    .context("raising the dead end's MTU")?;
                (Box::new(d), None)
            }
        };
        Ok(PathNets { kind, send, recv })
    }

    /// The two connected ends of `mode` for messages of `size` bytes.
    pub fn ends(&self, mode: Mode, size: usize) -> Result<(SendEnd, Option<RecvEnd>)> {
        match mode.side() {
            Side::Send => self.send_ends(mode, size),
            Side::Receive => self.recv_ends(mode, size),
        }
    }

    fn send_ends(&self, mode: Mode, size: usize) -> Result<(SendEnd, Option<RecvEnd>)> {
        let s = self.send.sender();
        let r = self.send.receiver();
        let (sock, rx, stream) = if self.kind.delivers() {
            let p = sockets::tcp_pair(&s.ns, &r.ns, r.ip(Family::V4))?;
            (
                p.client,
                Some(RecvEnd {
                    sock: p.server,
                    map: None,
                }),
                true,
            )
        } else {
            let to = SocketAddr::new(IpAddr::V4(r.v4), 9);
            (sockets::udp_to(&s.ns, to)?, None, false)
        };
        if mode == Mode::MsgZerocopy {
            set_so_zerocopy(sock.as_fd(), true).context("setsockopt(SO_ZEROCOPY, 1)")?;
        }
        let ring = match mode {
            Mode::UringSend | Mode::UringSendZc | Mode::UringSendZcFixed => {
                let mut ring = Ring::new(32).context("io_uring_setup")?;
                if mode == Mode::UringSendZcFixed {
                    ring.register_buffers(&[size])
                        .context("registering the send buffer")?;
                    fill(ring.fixed_mut(0));
                }
                Some(ring)
            }
            _ => None,
        };
        let report_usage = matches!(
            crate::uring::probes::REPORT_USAGE.answer(),
            Answer::Present(_)
        );
        Ok((
            SendEnd {
                sock,
                stream,
                ring,
                buf: pattern(size),
                report_usage,
            },
            rx,
        ))
    }

    fn recv_ends(&self, mode: Mode, size: usize) -> Result<(SendEnd, Option<RecvEnd>)> {
        let net = self
            .recv
            .as_ref()
            .context("receive modes need a path that delivers")?;
        let conn = net.connect(
            Family::V4,
            ConnOpts {
                zc_sender: true,
                maxseg: None,
            },
        )?;
        let map = match mode {
            Mode::TcpZerocopyReceive => Some(
                SocketMapping::readable(
                    conn.receiver.as_fd(),
                    size.max(page_size()),
                    Sharing::Shared,
                )
                .context("mmap of the receiving socket")?,
            ),
            _ => None,
        };
        Ok((
            SendEnd {
                sock: conn.sender,
                stream: true,
                ring: None,
                buf: pattern(RX_SENDER_CHUNK),
                report_usage: false,
            },
            Some(RecvEnd {
                sock: conn.receiver,
                map,
            }),
        ))
    }
}

fn rx_net(path: RxPath) -> Result<RxNet> {
    let net = RxNet::new(path)?;
    net.set_mtu(aligned_mtu(Family::V4))?;
    Ok(net)
}

/// A buffer of non-zero bytes (never the shared zero page, which pins differently).
fn pattern(len: usize) -> Arc<[u8]> {
    let mut v = vec![0u8; len];
    fill(&mut v);
    v.into()
}

fn fill(b: &mut [u8]) {
    for (i, x) in b.iter_mut().enumerate() {
        *x = (i % 251) as u8 | 1;
    }
}
