//! The networks the receive cases run on, set up so that pages can actually be mapped on one
//! host (SEMANTICS.md §7.6, OBSERVED-6.18.md E):
//! - large per-namespace `tcp_rmem`/`tcp_wmem`, so a whole test stream fits in the queues;
//! - an MTU (or a `TCP_MAXSEG`) that puts whole pages of payload in every segment;
//! - a sender that uses MSG_ZEROCOPY: at local delivery the kernel then copies its pages into
//!   fresh order-0 pages, which can be mapped (a plain sender's page-frag pages cannot).

use std::net::SocketAddr;
use std::os::fd::AsFd;

use anyhow::{Context, Result};
use harness::sockets::{self, Family};
use harness::sys::{sockopt, zerocopy};
use harness::sysctl::{self, SysctlGuard};
use harness::topology::{Loopback, Pair, PairConfig, Topology};
use harness::NetNs;
use socket2::Socket;

use crate::probes::{Requirement, NET_ADMIN, VETH};

/// Where the stream goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Path {
    /// One namespace, `lo`.
    Loopback,
    /// Two namespaces joined by a veth pair.
    Pair,
}

impl Path {
    pub fn tag(self) -> &'static str {
        match self {
            Path::Loopback => "lo",
            Path::Pair => "pair",
        }
    }

    pub fn requires(self) -> Vec<Requirement> {
        let mut r = vec![NET_ADMIN];
        if self == Path::Pair {
            r.push(VETH);
        }
        r.push(super::probes::ZC_RECEIVE);
        r.push(crate::send::flow::SO_ZEROCOPY_TCP);
        r
    }

    /// The largest MTU of the path's device (lo allows 65536, veth 65535).
    pub fn max_mtu(self) -> u32 {
        match self {
            Path::Loopback => 65536,
            Path::Pair => 65535,
        }
    }
}

/// The MTU whose segments carry exactly 15 pages of payload: 15·4096 plus the IP header, the
/// TCP header and the 12-byte timestamp option (the figure tcp_mmap.c computes).
pub fn aligned_mtu(family: Family) -> u32 {
    let ip = match family {
        Family::V4 => 20,
        Family::V6 => 40,
    };
    15 * 4096 + ip + 20 + 12
}

/// The `TCP_MAXSEG` that makes each segment carry exactly one page (the option counts the
/// 12-byte timestamp option, which the kernel then takes off).
pub const PAGE_MAXSEG: u32 = 4096 + 12;

/// Receive and send buffers large enough for every stream the cases send.
const TCP_RMEM: &str = "4096 8388608 16777216";
const TCP_WMEM: &str = "4096 4194304 16777216";

/// A topology with tuned buffers.
pub struct RxNet {
    pub path: Path,
    topo: Box<dyn Topology>,
    _sysctls: Vec<SysctlGuard>,
}

/// Options of one connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnOpts {
    /// SO_ZEROCOPY on the sender (it then sends with MSG_ZEROCOPY).
    pub zc_sender: bool,
    /// TCP_MAXSEG on both ends, before the handshake.
    pub maxseg: Option<u32>,
}

/// A connected pair: `sender` writes, `receiver` maps.
pub struct Conn {
    pub sender: Socket,
    pub receiver: Socket,
    pub family: Family,
}

impl RxNet {
    pub fn new(path: Path) -> Result<Self> {
        let topo: Box<dyn Topology> = match path {
            Path::Loopback => Box::new(Loopback::new(None)?),
            Path::Pair => Box::new(Pair::new(PairConfig::default())?),
        };
        let mut guards = Vec::new();
        let mut spaces = vec![topo.receiver().ns.clone()];
        if path == Path::Pair {
            spaces.push(topo.sender().ns.clone());
        }
        for ns in &spaces {
            guards.push(sysctl::set_in(ns, "net.ipv4.tcp_rmem", TCP_RMEM)?);
            guards.push(sysctl::set_in(ns, "net.ipv4.tcp_wmem", TCP_WMEM)?);
        }
        Ok(RxNet {
            path,
            topo,
            _sysctls: guards,
        })
    }

    /// Sets the MTU of every interface on the path (both veth ends).
    pub fn set_mtu(&self, mtu: u32) -> Result<()> {
        let s = self.topo.sender();
        harness::netlink::set_mtu(&s.ns, &s.ifname, mtu)?;
        if self.path == Path::Pair {
            let r = self.topo.receiver();
            harness::netlink::set_mtu(&r.ns, &r.ifname, mtu)?;
        }
        Ok(())
    }

    pub fn sender_ns(&self) -> &NetNs {
        &self.topo.sender().ns
    }

    pub fn receiver_ns(&self) -> &NetNs {
        &self.topo.receiver().ns
    }

    /// A listener in the receiver's namespace, with `maxseg` applied (accepted sockets
    /// inherit it).
    pub fn listener(&self, family: Family, maxseg: Option<u32>) -> Result<Socket> {
        let r = self.topo.receiver();
        let l = sockets::tcp_listener(&r.ns, r.ip(family))?;
        if let Some(m) = maxseg {
            set_maxseg(&l, m)?;
        }
        Ok(l)
    }

    /// A fresh connection from the sender's namespace to the receiver's.
    pub fn connect(&self, family: Family, opts: ConnOpts) -> Result<Conn> {
        let listener = self.listener(family, opts.maxseg)?;
        let to: SocketAddr = sockets::local_addr(&listener)?;
        let sender = sockets::tcp_connect(&self.topo.sender().ns, to, |s| {
            if let Some(m) = opts.maxseg {
                sockopt::set_int(s.as_fd(), libc::IPPROTO_TCP, libc::TCP_MAXSEG, m as i32)?;
            }
            Ok(())
        })?;
        let receiver = sockets::accept(&listener, sockets::IO_TIMEOUT)?;
        if opts.zc_sender {
            zerocopy::set_so_zerocopy(sender.as_fd(), true)
                .context("setsockopt(SO_ZEROCOPY, 1) on the sender")?;
        }
        Ok(Conn {
            sender,
            receiver,
            family,
        })
    }
}

fn set_maxseg(s: &Socket, mss: u32) -> Result<()> {
    sockopt::set_int(s.as_fd(), libc::IPPROTO_TCP, libc::TCP_MAXSEG, mss as i32)
        .with_context(|| format!("setsockopt(TCP_MAXSEG, {mss})"))
}

/// Loopback with the page-aligned MTU of `family`: the simplest network where pages map.
pub fn aligned_loopback(family: Family) -> Result<RxNet> {
    let net = RxNet::new(Path::Loopback)?;
    net.set_mtu(aligned_mtu(family))?;
    Ok(net)
}
