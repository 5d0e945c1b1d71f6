//! Variants of the send cases (protocol × family × path) and the connected sockets they use.

use std::os::fd::AsFd;
use std::time::Duration;

use anyhow::{Context, Result};
use harness::ethtool::Offload;
use harness::sockets::Sink;
use harness::sockets::{self, Family, Proto};
use harness::sys::errqueue::{self, Completion, ErrQueueEntry};
use harness::sys::zerocopy;
use harness::topology::{
    DeadEnd, DeadEndConfig, Exit, Forward, Loopback, Pair, PairConfig, Topology,
};
use socket2::Socket;

use crate::probes::{errno_name, Answer, Requirement, NET_ADMIN, VETH};

/// Where the traffic goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// One namespace, its `lo`.
    Loopback,
    /// A veth into a receiving namespace.
    Pair,
    /// [`Path::Pair`] with scatter-gather off on the sender's veth.
    PairSgOff,
    /// A veth whose peer is down (UDP only: nothing answers).
    DeadEnd,
    /// [`Path::DeadEnd`] with scatter-gather off on the sender's veth.
    DeadEndSgOff,
    /// Through a router namespace into a receiving namespace.
    Forward,
    /// Through a router namespace out of a dead link (UDP only).
    ForwardDead,
}

impl Path {
    /// The path part of case ids.
    pub fn tag(self) -> &'static str {
        match self {
            Path::Loopback => "lo",
            Path::Pair => "pair",
            Path::PairSgOff => "pair_sg_off",
            Path::DeadEnd => "deadend",
            Path::DeadEndSgOff => "deadend_sg_off",
            Path::Forward => "forward",
            Path::ForwardDead => "forward_dead",
        }
    }

    /// Whether a socket in the receiving namespace gets the traffic.
    pub fn delivers(self) -> bool {
        !matches!(self, Path::DeadEnd | Path::DeadEndSgOff | Path::ForwardDead)
    }

    /// What building this path needs: namespaces, and veth for every path but loopback.
    pub fn requires(self) -> Vec<Requirement> {
        let mut r = vec![NET_ADMIN];
        if self != Path::Loopback {
            r.push(VETH);
        }
        r
    }
}

/// One protocol, family and path: the parameters a case runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    pub proto: Proto,
    pub family: Family,
    pub path: Path,
}

impl Variant {
    /// TCP and UDP, IPv4 and IPv6, over loopback and a veth pair.
    pub fn all() -> Vec<Variant> {
        let mut v = Vec::new();
        for proto in [Proto::Tcp, Proto::Udp] {
            for family in [Family::V4, Family::V6] {
                for path in [Path::Loopback, Path::Pair] {
                    v.push(Variant {
                        proto,
                        family,
                        path,
                    });
                }
            }
        }
        v
    }

    pub const fn new(proto: Proto, family: Family, path: Path) -> Self {
        Variant {
            proto,
            family,
            path,
        }
    }

    /// `tcp4`, `udp6`: protocol and family.
    pub fn flavour(&self) -> String {
        let p = match self.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        };
        let f = match self.family {
            Family::V4 => "4",
            Family::V6 => "6",
        };
        format!("{p}{f}")
    }

    /// `tcp4.lo`, `udp6.pair`: the variant part of case ids.
    pub fn tag(&self) -> String {
        format!("{}.{}", self.flavour(), self.path.tag())
    }

    pub fn requires(&self) -> Vec<Requirement> {
        let mut r = self.path.requires();
        r.push(match self.proto {
            Proto::Tcp => SO_ZEROCOPY_TCP,
            Proto::Udp => SO_ZEROCOPY_UDP,
        });
        r
    }

    /// Builds the topology of this variant.
    pub fn build(&self) -> Result<Net> {
        Ok(Net {
            topo: self.path.topology()?,
            variant: *self,
        })
    }
}

impl Path {
    /// Builds the topology this path runs over.
    pub fn topology(self) -> Result<Box<dyn Topology>> {
        let sg_off = || vec![Offload::Sg];
        Ok(match self {
            Path::Loopback => Box::new(Loopback::new(None)?),
            Path::Pair => Box::new(Pair::new(PairConfig::default())?),
            Path::PairSgOff => Box::new(Pair::new(PairConfig {
                mtu: None,
                sender_offloads_off: sg_off(),
            })?),
            Path::DeadEnd => Box::new(DeadEnd::new()?),
            Path::DeadEndSgOff => Box::new(DeadEnd::with(DeadEndConfig {
                sender_offloads_off: sg_off(),
            })?),
            Path::Forward => Box::new(Forward::new(Exit::Delivered)?),
            Path::ForwardDead => Box::new(Forward::new(Exit::PeerDown)?),
        })
    }
}

/// A built topology for one variant; opens fresh connections on demand.
pub struct Net {
    pub topo: Box<dyn Topology>,
    pub variant: Variant,
}

/// A sender and its receiver. `sender` has bounded I/O and, after [`Net::flow`], SO_ZEROCOPY
/// set as asked.
pub struct Flow {
    pub sender: Socket,
    pub receiver: Socket,
}

/// A sender and, where the path delivers, its receiver.
pub struct Conn {
    pub sender: Socket,
    pub receiver: Option<Socket>,
}

impl Conn {
    pub fn sender_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.sender.as_fd()
    }

    /// Starts reading everything the receiver gets (nothing to do on a dead-end path).
    pub fn sink(&self) -> Result<Option<Sink>> {
        self.receiver
            .as_ref()
            .map(|r| Sink::start(r.try_clone()?, false))
            .transpose()
    }
}

/// Reads a TCP stream to its end on a thread of its own. Unlike [`Sink`], which polls for a
/// stop request, it ends as soon as the peer closes, so a property that opens a connection
/// per sequence does not pay a polling interval each time.
pub struct StreamReader(Option<std::thread::JoinHandle<std::io::Result<u64>>>);

impl StreamReader {
    pub fn start(s: Socket) -> Self {
        StreamReader(Some(std::thread::spawn(move || {
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0u64;
            loop {
                let read = || std::io::Read::read(&mut &s, &mut buf);
                match harness::sys::retry::retry_interrupted(
                    harness::sys::retry::DEFAULT_BOUND,
                    read,
                )? {
                    0 => return Ok(total),
                    n => total += n as u64,
                }
            }
        })))
    }

    /// Waits for the end of the stream (the sender must have closed it; reads are bounded
    /// by the socket's timeout) and returns the bytes read.
    pub fn finish(mut self) -> Result<u64> {
        let h = self.0.take().expect("finish called once");
        match h.join() {
            Ok(r) => r.context("reading the stream on the receiving side"),
            Err(p) => std::panic::resume_unwind(p),
        }
    }
}

/// The UDP port dead-end paths send to (discard); nothing listens there.
const DEAD_PORT: u16 = 9;

impl Net {
    /// A fresh connection (TCP) or connected datagram pair (UDP), SO_ZEROCOPY on if `zc`.
    /// Only for paths that deliver; see [`Net::connect`].
    pub fn flow(&self, zc: bool) -> Result<Flow> {
        let c = self.connect(zc)?;
        let receiver = c
            .receiver
            .with_context(|| format!("path {} has no receiver", self.variant.tag()))?;
        Ok(Flow {
            sender: c.sender,
            receiver,
        })
    }

    /// A fresh sender, SO_ZEROCOPY on if `zc`, connected to the receiver (or, on a dead-end
    /// path, to an address nobody answers at).
    pub fn connect(&self, zc: bool) -> Result<Conn> {
        let (s, r) = (self.topo.sender(), self.topo.receiver());
        let to = r.ip(self.variant.family);
        let (sender, receiver) = match (self.variant.proto, self.variant.path.delivers()) {
            (Proto::Tcp, true) => {
                let p = sockets::tcp_pair(&s.ns, &r.ns, to)?;
                (p.client, Some(p.server))
            }
            (Proto::Udp, true) => {
                let p = sockets::udp_pair(&s.ns, &r.ns, to)?;
                (p.client, Some(p.server))
            }
            (Proto::Udp, false) => (
                sockets::udp_to(&s.ns, std::net::SocketAddr::new(to, DEAD_PORT))?,
                None,
            ),
            (Proto::Tcp, false) => {
                anyhow::bail!("TCP cannot connect over {}", self.variant.tag())
            }
        };
        if zc {
            zerocopy::set_so_zerocopy(sender.as_fd(), true)
                .context("setsockopt(SO_ZEROCOPY, 1)")?;
        }
        Ok(Conn { sender, receiver })
    }
}

/// A zero-copy send that never raises SIGPIPE (a TCP send after a reset or a shutdown must
/// come back as EPIPE), with MSG_MORE if `more`.
pub fn zc_send(sock: &Socket, buf: &[u8], more: bool) -> std::io::Result<usize> {
    let more = if more { libc::MSG_MORE } else { 0 };
    zerocopy::send_zc(sock.as_fd(), buf, libc::MSG_NOSIGNAL | more)
}

/// `Ok(bytes)` or `Err(errno)`, as the model takes a send's result.
pub fn errno_result(r: std::io::Result<usize>) -> Result<usize, i32> {
    r.map_err(|e| e.raw_os_error().unwrap_or(-1))
}

/// Keeps this process (and the threads it starts from now on) on one CPU.
///
/// A UDP datagram larger than the MTU completes only when its reader frees it, and a free on
/// another CPU than the one that built the skb is deferred to that CPU's next softirq, which
/// can take seconds on an idle machine (OBSERVED-6.18 C3, SEMANTICS B10). The contract
/// promises no completion latency, so the suite removes that delay instead of waiting it
/// out: sender and reader share one CPU.
pub fn pin_to_one_cpu() -> Result<usize> {
    use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let allowed = sched_getaffinity(Pid::from_raw(0)).context("sched_getaffinity")?;
    let cpu = (0..CpuSet::count())
        .find(|&c| allowed.is_set(c).unwrap_or(false))
        .context("no CPU in this process's affinity mask")?;
    let mut one = CpuSet::new();
    one.set(cpu).context("CpuSet::set")?;
    sched_setaffinity(Pid::from_raw(0), &one).context("sched_setaffinity")?;
    Ok(cpu)
}

/// How long a case waits for completions the kernel owes before calling them missing.
pub const COMPLETION_WAIT: Duration = Duration::from_secs(3);

/// Waits until the completions read cover `ids` ids, or [`COMPLETION_WAIT`] passes. Returns
/// every entry read (completions and anything else), in arrival order.
pub fn await_ids(sock: &Socket, ids: u64) -> Result<Vec<ErrQueueEntry>> {
    let (entries, _) =
        errqueue::collect_until(sock.as_fd(), COMPLETION_WAIT, |got| covered(got) >= ids)
            .context("reading the error queue")?;
    Ok(entries)
}

/// Ids covered by the completions among `entries` (without checking them).
pub fn covered(entries: &[ErrQueueEntry]) -> u64 {
    entries
        .iter()
        .filter_map(|e| e.completion())
        .map(|c| c.hi.wrapping_sub(c.lo) as u64 + 1)
        .sum()
}

pub fn completions(entries: &[ErrQueueEntry]) -> Vec<Completion> {
    entries.iter().filter_map(|e| e.completion()).collect()
}

/// `[0,3]c [4,4]` — completions as evidence lines show them (`c`: COPIED).
pub fn show(completions: &[Completion]) -> String {
    if completions.is_empty() {
        return "(none)".into();
    }
    completions
        .iter()
        .map(|c| format!("[{},{}]{}", c.lo, c.hi, if c.copied { "c" } else { "" }))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The same, one entry per notification: as an observed fact it is a list, which the matrix
/// keeps in the report instead of the cell, since how completions happen to merge depends on
/// timing.
pub fn show_each(completions: &[Completion]) -> Vec<String> {
    completions
        .iter()
        .map(|c| show(std::slice::from_ref(c)))
        .collect()
}

fn so_zerocopy_probe(proto: Proto) -> Answer {
    let what = match proto {
        Proto::Tcp => "TCP",
        Proto::Udp => "UDP",
    };
    let sock = match sockets::socket_here(Family::V4, proto) {
        Ok(s) => s,
        Err(e) => return Answer::Blocked(format!("cannot create a {what} socket: {e:#}")),
    };
    match zerocopy::set_so_zerocopy(sock.as_fd(), true) {
        Ok(()) => Answer::Present(format!("setsockopt(SO_ZEROCOPY, 1) on a {what} socket: 0")),
        Err(e) => Answer::Absent(format!(
            "setsockopt(SO_ZEROCOPY, 1) on a {what} socket: {}",
            e.raw_os_error()
                .map(errno_name)
                .unwrap_or_else(|| e.to_string())
        )),
    }
}

/// The kernel accepts SO_ZEROCOPY on TCP sockets (4.14+).
pub const SO_ZEROCOPY_TCP: Requirement = Requirement {
    name: "so_zerocopy.tcp",
    probe: || so_zerocopy_probe(Proto::Tcp),
};

/// The kernel accepts SO_ZEROCOPY on UDP sockets (5.0+).
pub const SO_ZEROCOPY_UDP: Requirement = Requirement {
    name: "so_zerocopy.udp",
    probe: || so_zerocopy_probe(Proto::Udp),
};

/// Ids covered by already-parsed completions.
pub fn covered_of(completions: &[Completion]) -> u64 {
    completions
        .iter()
        .map(|c| c.hi.wrapping_sub(c.lo) as u64 + 1)
        .sum()
}
