//! Variants of the send cases (protocol × family × path) and the connected sockets they use.

use std::os::fd::AsFd;
use std::time::Duration;

use anyhow::{Context, Result};
use harness::sockets::{self, Family, Proto};
use harness::sys::errqueue::{self, Completion, ErrQueueEntry};
use harness::sys::zerocopy;
use harness::topology::{Loopback, Pair, PairConfig, Topology};
use socket2::Socket;

use crate::probes::{errno_name, Answer, Requirement, NET_ADMIN, VETH};

/// Where the traffic goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Loopback,
    Pair,
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

    /// `tcp4.lo`, `udp6.pair`: the variant part of case ids.
    pub fn tag(&self) -> String {
        let p = match self.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        };
        let f = match self.family {
            Family::V4 => "4",
            Family::V6 => "6",
        };
        let path = match self.path {
            Path::Loopback => "lo",
            Path::Pair => "pair",
        };
        format!("{p}{f}.{path}")
    }

    pub fn requires(&self) -> Vec<Requirement> {
        let mut r = vec![NET_ADMIN];
        if self.path == Path::Pair {
            r.push(VETH);
        }
        r.push(match self.proto {
            Proto::Tcp => SO_ZEROCOPY_TCP,
            Proto::Udp => SO_ZEROCOPY_UDP,
        });
        r
    }

    /// Builds the topology of this variant.
    pub fn build(&self) -> Result<Net> {
        let topo: Box<dyn Topology> = match self.path {
            Path::Loopback => Box::new(Loopback::new(None)?),
            Path::Pair => Box::new(Pair::new(PairConfig::default())?),
        };
        Ok(Net {
            topo,
            variant: *self,
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

impl Net {
    /// A fresh connection (TCP) or connected datagram pair (UDP), SO_ZEROCOPY on if `zc`.
    pub fn flow(&self, zc: bool) -> Result<Flow> {
        let (s, r) = (self.topo.sender(), self.topo.receiver());
        let to = r.ip(self.variant.family);
        let (sender, receiver) = match self.variant.proto {
            Proto::Tcp => {
                let p = sockets::tcp_pair(&s.ns, &r.ns, to)?;
                (p.client, p.server)
            }
            Proto::Udp => {
                let p = sockets::udp_pair(&s.ns, &r.ns, to)?;
                (p.client, p.server)
            }
        };
        if zc {
            zerocopy::set_so_zerocopy(sender.as_fd(), true)
                .context("setsockopt(SO_ZEROCOPY, 1)")?;
        }
        Ok(Flow { sender, receiver })
    }
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
