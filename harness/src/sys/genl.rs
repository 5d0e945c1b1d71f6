//! The `netdev` generic-netlink family, for devmem TCP detection: look the family up, list
//! its operations, and attempt `NETDEV_CMD_BIND_RX` to read the kernel's answer.
//!
//! Messages are built with `netlink-packet-generic` and sent over a plain `netlink-sys`
//! socket with a receive timeout, so no call can hang. The socket belongs to the network
//! namespace of the calling thread: call these from inside `NetNs::run` to speak about the
//! interfaces of one of the suite's namespaces.

use std::io;
use std::os::fd::{AsFd, RawFd};
use std::time::Duration;

use netlink_packet_core::{
    DecodeError, DefaultNla, Emitable, NetlinkMessage, NetlinkPayload, NlaBuffer, NlasIterator,
    Parseable, ParseableParametrized, NLM_F_ACK, NLM_F_REQUEST,
};
use netlink_packet_generic::ctrl::nlas::{GenlCtrlAttrs, OpAttrs};
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::{GenlFamily, GenlHeader, GenlMessage};
use netlink_sys::protocols::NETLINK_GENERIC;
use netlink_sys::{Socket, SocketAddr};

/// `NETDEV_CMD_BIND_RX` (6.12): bind a dma-buf to receive queues.
pub const NETDEV_CMD_BIND_RX: u32 = 13;
const NETDEV_A_DMABUF_IFINDEX: u16 = 1;
const NETDEV_A_DMABUF_QUEUES: u16 = 2;
const NETDEV_A_DMABUF_FD: u16 = 3;
const NETDEV_A_QUEUE_ID: u16 = 1;
const NETDEV_A_QUEUE_TYPE: u16 = 3;
const NETDEV_QUEUE_TYPE_RX: u32 = 0;
const NLA_F_NESTED: u16 = 1 << 15;

/// Bound on waiting for the kernel's answer to one request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// The `netdev` family as the controller describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetdevFamily {
    pub id: u16,
    pub version: Option<u32>,
    /// The command ids the family registers (`CTRL_ATTR_OPS`).
    pub ops: Vec<u32>,
}

impl NetdevFamily {
    pub fn has_op(&self, cmd: u32) -> bool {
        self.ops.contains(&cmd)
    }
}

/// Looks up the `netdev` family. `Ok(None)`: the controller does not know it (ENOENT), as on
/// kernels before the family existed.
pub fn netdev_family() -> io::Result<Option<NetdevFamily>> {
    let mut msg = GenlMessage::from_payload(GenlCtrl {
        cmd: GenlCtrlCmd::GetFamily,
        nlas: vec![GenlCtrlAttrs::FamilyName("netdev".into())],
    });
    msg.finalize();
    let replies = match exchange::<GenlCtrl>(msg) {
        Ok(r) => r,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(e),
    };
    for reply in replies {
        if reply.payload.cmd != GenlCtrlCmd::NewFamily {
            continue;
        }
        let mut family = NetdevFamily {
            id: 0,
            version: None,
            ops: Vec::new(),
        };
        for nla in reply.payload.nlas {
            match nla {
                GenlCtrlAttrs::FamilyId(id) => family.id = id,
                GenlCtrlAttrs::Version(v) => family.version = Some(v),
                GenlCtrlAttrs::Ops(ops) => {
                    family.ops = ops
                        .iter()
                        .flat_map(|op| op.iter())
                        .filter_map(|a| match a {
                            OpAttrs::Id(id) => Some(*id),
                            _ => None,
                        })
                        .collect()
                }
                _ => {}
            }
        }
        if family.id != 0 {
            return Ok(Some(family));
        }
    }
    Err(io::Error::other(
        "CTRL_CMD_GETFAMILY netdev: acknowledged without a family id",
    ))
}

/// Sends `NETDEV_CMD_BIND_RX` for receive queue `rxq` of `ifindex` with `dmabuf_fd` and
/// returns the kernel's answer: `Ok(())` if it bound, the errno of its NACK otherwise.
pub fn bind_rx(family: u16, ifindex: u32, rxq: u32, dmabuf_fd: RawFd) -> io::Result<()> {
    let queue = [
        DefaultNla::new(NETDEV_A_QUEUE_ID, rxq.to_ne_bytes().to_vec()),
        DefaultNla::new(
            NETDEV_A_QUEUE_TYPE,
            NETDEV_QUEUE_TYPE_RX.to_ne_bytes().to_vec(),
        ),
    ];
    let mut nested = vec![0u8; queue.as_slice().buffer_len()];
    queue.as_slice().emit(&mut nested);
    let payload = NetdevMessage {
        cmd: NETDEV_CMD_BIND_RX as u8,
        attrs: vec![
            DefaultNla::new(NETDEV_A_DMABUF_IFINDEX, ifindex.to_ne_bytes().to_vec()),
            DefaultNla::new(
                NETDEV_A_DMABUF_FD,
                (dmabuf_fd as u32).to_ne_bytes().to_vec(),
            ),
            DefaultNla::new(NETDEV_A_DMABUF_QUEUES | NLA_F_NESTED, nested),
        ],
    };
    let mut msg = GenlMessage::new(
        GenlHeader {
            cmd: payload.cmd,
            version: 1,
        },
        payload,
        family,
    );
    msg.finalize();
    exchange::<NetdevMessage>(msg).map(drop)
}

/// A `netdev` family message with raw attributes.
#[derive(Debug, Clone)]
struct NetdevMessage {
    cmd: u8,
    attrs: Vec<DefaultNla>,
}

impl GenlFamily for NetdevMessage {
    fn family_name() -> &'static str {
        "netdev"
    }
    fn command(&self) -> u8 {
        self.cmd
    }
    fn version(&self) -> u8 {
        1
    }
}

impl Emitable for NetdevMessage {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }
    fn emit(&self, buffer: &mut [u8]) {
        self.attrs.as_slice().emit(buffer)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for NetdevMessage {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        let mut attrs = Vec::new();
        for nla in NlasIterator::new(buf) {
            let nla: NlaBuffer<&[u8]> = nla?;
            attrs.push(DefaultNla::parse(&nla)?);
        }
        Ok(NetdevMessage {
            cmd: header.cmd,
            attrs,
        })
    }
}

/// Sends one request with an ACK asked for, and returns the replies that came before the
/// ACK. A NACK becomes its errno.
fn exchange<F>(msg: GenlMessage<F>) -> io::Result<Vec<GenlMessage<F>>>
where
    F: GenlFamily + Emitable + ParseableParametrized<[u8], GenlHeader> + std::fmt::Debug,
{
    let mut socket = Socket::new(NETLINK_GENERIC)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    nix::sys::socket::setsockopt(
        &socket.as_fd(),
        nix::sys::socket::sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(ANSWER_TIMEOUT.as_secs() as i64, 0),
    )
    .map_err(io::Error::from)?;
    let mut nl = NetlinkMessage::from(msg);
    nl.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    nl.header.sequence_number = 1;
    nl.finalize();
    let mut tx = vec![0u8; nl.buffer_len()];
    nl.serialize(&mut tx);
    socket.send(&tx, 0)?;

    let mut replies = Vec::new();
    let mut rx: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        let n = super::retry::retry_interrupted(ANSWER_TIMEOUT, || {
            rx.clear();
            socket.recv(&mut rx, 0)
        })
        .map_err(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no netlink answer within {ANSWER_TIMEOUT:?}"),
                )
            } else {
                e
            }
        })?;
        let mut off = 0;
        while off < n.min(rx.len()) {
            let m = NetlinkMessage::<GenlMessage<F>>::deserialize(&rx[off..])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let len = m.header.length as usize;
            match m.payload {
                NetlinkPayload::Error(err) => {
                    return match err.code {
                        None => Ok(replies),
                        Some(_) => Err(err.to_io()),
                    }
                }
                NetlinkPayload::Done(_) => return Ok(replies),
                NetlinkPayload::InnerMessage(inner) => replies.push(inner),
                _ => {}
            }
            if len == 0 {
                break;
            }
            off += (len + 3) & !3;
        }
    }
}
