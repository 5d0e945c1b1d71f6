//! Small named networks. Each is a value: building it creates namespaces and links, dropping
//! it frees them (the namespaces are anonymous and held only by fds, see [`crate::netns`]).
//!
//! Addresses come only from the benchmarking range 198.18.0.0/15 and from fd00:5a::/32, and
//! nothing is ever routed out of the suite's namespaces.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::ethtool::{self, Offload};
use crate::netlink;
use crate::sockets::Family;
use crate::sysctl;
use crate::NetNs;

/// One end of a topology: a namespace, the interface traffic leaves by, and its addresses.
#[derive(Debug, Clone)]
pub struct Host {
    pub ns: NetNs,
    pub ifname: String,
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
}

impl Host {
    pub fn ip(&self, family: Family) -> IpAddr {
        match family {
            Family::V4 => IpAddr::V4(self.v4),
            Family::V6 => IpAddr::V6(self.v6),
        }
    }
}

/// Describes a built topology in reports.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TopologyInfo {
    pub kind: &'static str,
    pub mtu: Option<u32>,
    pub offloads_off: Vec<Offload>,
}

/// A sender and a receiver that can reach each other.
pub trait Topology {
    fn sender(&self) -> &Host;
    fn receiver(&self) -> &Host;
    fn info(&self) -> TopologyInfo;
}

/// One namespace; sender and receiver both on its `lo`, optionally with a chosen MTU.
pub struct Loopback {
    pub host: Host,
    pub mtu: Option<u32>,
}

impl Loopback {
    pub fn new(mtu: Option<u32>) -> Result<Self> {
        let ns = NetNs::new("loopback")?;
        if let Some(m) = mtu {
            netlink::set_mtu(&ns, "lo", m)?;
        }
        let host = Host {
            ns,
            ifname: "lo".into(),
            v4: Ipv4Addr::LOCALHOST,
            v6: Ipv6Addr::LOCALHOST,
        };
        Ok(Loopback { host, mtu })
    }
}

impl Topology for Loopback {
    fn sender(&self) -> &Host {
        &self.host
    }
    fn receiver(&self) -> &Host {
        &self.host
    }
    fn info(&self) -> TopologyInfo {
        TopologyInfo {
            kind: "loopback",
            mtu: self.mtu,
            offloads_off: vec![],
        }
    }
}

/// Options of a [`Pair`].
#[derive(Debug, Clone, Default)]
pub struct PairConfig {
    pub mtu: Option<u32>,
    /// Offloads switched off on the sender's veth (as `ethtool -K zc-a sg off`).
    pub sender_offloads_off: Vec<Offload>,
}

/// Two namespaces joined by one veth pair: `a` (198.18.0.1, fd00:5a::1) sends, `b`
/// (198.18.0.2, fd00:5a::2) receives.
pub struct Pair {
    pub a: Host,
    pub b: Host,
    config: PairConfig,
}

impl Pair {
    pub fn new(config: PairConfig) -> Result<Self> {
        let (a, b) = veth_hosts(
            ("pair-a", "zc-a", Ipv4Addr::new(198, 18, 0, 1), v6(0, 1)),
            ("pair-b", "zc-b", Ipv4Addr::new(198, 18, 0, 2), v6(0, 2)),
            24,
        )?;
        for h in [&a, &b] {
            if let Some(m) = config.mtu {
                netlink::set_mtu(&h.ns, &h.ifname, m)?;
            }
        }
        for off in &config.sender_offloads_off {
            ethtool::set(&a.ns, &a.ifname, *off, false)?;
        }
        for h in [&a, &b] {
            netlink::set_up(&h.ns, &h.ifname)?;
        }
        know_each_other(&a, &b)?;
        Ok(Pair { a, b, config })
    }
}

impl Topology for Pair {
    fn sender(&self) -> &Host {
        &self.a
    }
    fn receiver(&self) -> &Host {
        &self.b
    }
    fn info(&self) -> TopologyInfo {
        TopologyInfo {
            kind: "pair",
            mtu: self.config.mtu,
            offloads_off: self.config.sender_offloads_off.clone(),
        }
    }
}

/// Options of a [`DeadEnd`].
#[derive(Debug, Clone, Default)]
pub struct DeadEndConfig {
    /// Offloads switched off on the sender's veth (as `ethtool -K zc-a sg off`).
    pub sender_offloads_off: Vec<Offload>,
}

/// A veth whose peer is down: the sender's packets are dropped at transmit, never received by
/// anyone. The one on-host path where UDP zero-copy data is not copied on every kernel.
/// `target` is the (unreachable) peer, reachable by a permanent neighbour entry.
pub struct DeadEnd {
    pub a: Host,
    /// The peer's addresses; nothing answers there.
    pub target: Host,
    config: DeadEndConfig,
}

impl DeadEnd {
    pub fn new() -> Result<Self> {
        Self::with(DeadEndConfig::default())
    }

    pub fn with(config: DeadEndConfig) -> Result<Self> {
        let (a, target) = veth_hosts(
            ("deadend-a", "zc-a", Ipv4Addr::new(198, 18, 0, 1), v6(0, 1)),
            ("deadend-b", "zc-b", Ipv4Addr::new(198, 18, 0, 2), v6(0, 2)),
            24,
        )?;
        let mac = netlink::link_mac(&target.ns, &target.ifname)?;
        for off in &config.sender_offloads_off {
            ethtool::set(&a.ns, &a.ifname, *off, false)?;
        }
        netlink::set_up(&a.ns, &a.ifname)?;
        netlink::add_neighbour(&a.ns, &a.ifname, IpAddr::V4(target.v4), mac)?;
        netlink::add_neighbour(&a.ns, &a.ifname, IpAddr::V6(target.v6), mac)?;
        Ok(DeadEnd { a, target, config })
    }
}

impl Topology for DeadEnd {
    fn sender(&self) -> &Host {
        &self.a
    }
    fn receiver(&self) -> &Host {
        &self.target
    }
    fn info(&self) -> TopologyInfo {
        TopologyInfo {
            kind: "deadend",
            mtu: None,
            offloads_off: self.config.sender_offloads_off.clone(),
        }
    }
}

/// Where forwarded traffic ends in a [`Forward`] topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// `b` is up and receives: the packet is locally delivered at the end.
    Delivered,
    /// `b`'s end is down: the router forwards the packet out a dead link and it is never
    /// locally delivered anywhere (the path that 6.17 stopped copying).
    PeerDown,
}

/// Three namespaces: `a` (198.18.1.1) — `router` — `b` (198.18.2.1), with forwarding on in
/// the router. The router's sysctls are per namespace and die with it.
pub struct Forward {
    pub a: Host,
    pub router: NetNs,
    pub b: Host,
    pub exit: Exit,
}

impl Forward {
    pub fn new(exit: Exit) -> Result<Self> {
        let router = NetNs::new("router")?;
        let a = Host {
            ns: NetNs::new("fwd-a")?,
            ifname: "zc-a".into(),
            v4: Ipv4Addr::new(198, 18, 1, 1),
            v6: v6(1, 1),
        };
        let b = Host {
            ns: NetNs::new("fwd-b")?,
            ifname: "zc-b".into(),
            v4: Ipv4Addr::new(198, 18, 2, 1),
            v6: v6(2, 1),
        };
        let (ra_v4, ra_v6) = (Ipv4Addr::new(198, 18, 1, 254), v6(1, 0xfe));
        let (rb_v4, rb_v6) = (Ipv4Addr::new(198, 18, 2, 254), v6(2, 0xfe));
        for ns in [&a.ns, &router, &b.ns] {
            quiet_ipv6(ns)?;
        }
        netlink::add_veth(&a.ns, &a.ifname, &router, "zc-ra")?;
        netlink::add_veth(&b.ns, &b.ifname, &router, "zc-rb")?;
        address(&a, 24)?;
        address(&b, 24)?;
        netlink::add_address(&router, "zc-ra", IpAddr::V4(ra_v4), 24)?;
        netlink::add_address(&router, "zc-ra", IpAddr::V6(ra_v6), 64)?;
        netlink::add_address(&router, "zc-rb", IpAddr::V4(rb_v4), 24)?;
        netlink::add_address(&router, "zc-rb", IpAddr::V6(rb_v6), 64)?;
        set_per_namespace(&router, "net.ipv4.ip_forward", "1")?;
        set_per_namespace(&router, "net.ipv6.conf.all.forwarding", "1")?;
        netlink::set_up(&a.ns, &a.ifname)?;
        netlink::set_up(&router, "zc-ra")?;
        netlink::set_up(&router, "zc-rb")?;
        match exit {
            Exit::Delivered => netlink::set_up(&b.ns, &b.ifname)?,
            Exit::PeerDown => {
                let mac = netlink::link_mac(&b.ns, &b.ifname)?;
                netlink::add_neighbour(&router, "zc-rb", IpAddr::V4(b.v4), mac)?;
                netlink::add_neighbour(&router, "zc-rb", IpAddr::V6(b.v6), mac)?;
            }
        }
        let ra = Host {
            ns: router.clone(),
            ifname: "zc-ra".into(),
            v4: ra_v4,
            v6: ra_v6,
        };
        know_each_other(&a, &ra)?;
        if exit == Exit::Delivered {
            let rb = Host {
                ns: router.clone(),
                ifname: "zc-rb".into(),
                v4: rb_v4,
                v6: rb_v6,
            };
            know_each_other(&b, &rb)?;
        }
        netlink::add_route(
            &a.ns,
            IpAddr::V4(Ipv4Addr::new(198, 18, 2, 0)),
            24,
            IpAddr::V4(ra_v4),
        )?;
        netlink::add_route(&a.ns, IpAddr::V6(v6(2, 0)), 64, IpAddr::V6(ra_v6))?;
        if exit == Exit::Delivered {
            netlink::add_route(
                &b.ns,
                IpAddr::V4(Ipv4Addr::new(198, 18, 1, 0)),
                24,
                IpAddr::V4(rb_v4),
            )?;
            netlink::add_route(&b.ns, IpAddr::V6(v6(1, 0)), 64, IpAddr::V6(rb_v6))?;
        }
        Ok(Forward { a, router, b, exit })
    }
}

impl Topology for Forward {
    fn sender(&self) -> &Host {
        &self.a
    }
    fn receiver(&self) -> &Host {
        &self.b
    }
    fn info(&self) -> TopologyInfo {
        let kind = match self.exit {
            Exit::Delivered => "forward",
            Exit::PeerDown => "forward-peer-down",
        };
        TopologyInfo {
            kind,
            mtu: None,
            offloads_off: vec![],
        }
    }
}

/// `RTF_LOCAL` from `include/uapi/linux/ipv6_route.h`.
const RTF_LOCAL: u32 = 0x8000_0000;

/// Waits until `h`'s IPv6 address has its local route, that is until the namespace accepts
/// packets for it. Until then a packet for the address is treated as one to forward and
/// dropped: the first datagrams of a fresh topology would vanish (and, never delivered,
/// never be copied). With duplicate address detection on, that can take seconds even for a
/// `nodad` address, which is why [`quiet_ipv6`] turns it off.
fn wait_ipv6_usable(h: &Host) -> Result<()> {
    let want: String = h.v6.octets().iter().map(|b| format!("{b:02x}")).collect();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let table =
            h.ns.run(|| std::fs::read_to_string("/proc/thread-self/net/ipv6_route"))?
                .context("reading /proc/net/ipv6_route")?;
        // Columns: destination, prefix length, source, source prefix, next hop, metric,
        // refcount, use, flags, device (all hex but the device).
        let local = table.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() == 10
                && f[0] == want
                && f[1] == "80"
                && u32::from_str_radix(f[8], 16).is_ok_and(|fl| fl & RTF_LOCAL != 0)
        });
        if local {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "{} has no local route in namespace {} after 3 s (`ip -6 route show table \
                 local`)",
                h.v6,
                h.ns.name()
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Turns off duplicate address detection for interfaces that will appear in `ns`. The
/// suite's addresses are unique by construction, and detection on the link-local address
/// holds back the routes of every address of the interface for a second or two.
fn quiet_ipv6(ns: &NetNs) -> Result<()> {
    set_per_namespace(ns, "net.ipv6.conf.default.accept_dad", "0")
}

/// Writes a sysctl that is per namespace on every kernel (IPv6 interface defaults,
/// forwarding), without the journal of [`sysctl::set_in`]: its two locked, synced journal
/// writes cost more than building the rest of a topology. The value dies with the
/// namespace. Should the machine's value move all the same, it is put back and this fails.
fn set_per_namespace(ns: &NetNs, key: &str, value: &str) -> Result<()> {
    let outer = sysctl::read_outer(key)?;
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    let written = ns
        .run(|| std::fs::write(&path, format!("{value}\n")))?
        .with_context(|| format!("`sysctl -w {key}={value}` in namespace {}", ns.name()));
    if sysctl::read_outer(key)? != outer {
        std::fs::write(&path, format!("{outer}\n"))
            .with_context(|| format!("putting the machine's {key}={outer} back"))?;
        anyhow::bail!("{key} is not per namespace on this kernel; the machine's value is back");
    }
    written
}

/// Permanent neighbour entries both ways, so no first packet waits for ARP or neighbour
/// discovery. A solicitation sent while a fresh veth's queue is still being activated is
/// lost and retried only a second later, which would delay the first datagram (and its
/// zero-copy completion) by that second.
fn know_each_other(x: &Host, y: &Host) -> Result<()> {
    for (from, to) in [(x, y), (y, x)] {
        wait_ipv6_usable(to)?;
        let mac = netlink::link_mac(&to.ns, &to.ifname)?;
        netlink::add_neighbour(&from.ns, &from.ifname, IpAddr::V4(to.v4), mac)?;
        netlink::add_neighbour(&from.ns, &from.ifname, IpAddr::V6(to.v6), mac)?;
    }
    Ok(())
}

/// fd00:5a:<subnet>::<host>.
fn v6(subnet: u16, host: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x5a, subnet, 0, 0, 0, 0, host)
}

fn address(h: &Host, prefix_v4: u8) -> Result<()> {
    netlink::add_address(&h.ns, &h.ifname, IpAddr::V4(h.v4), prefix_v4)?;
    netlink::add_address(&h.ns, &h.ifname, IpAddr::V6(h.v6), 64)
}

type HostSpec = (&'static str, &'static str, Ipv4Addr, Ipv6Addr);

/// Two fresh namespaces joined by a veth, addressed, both ends still down.
fn veth_hosts(a: HostSpec, b: HostSpec, prefix_v4: u8) -> Result<(Host, Host)> {
    let ha = Host {
        ns: NetNs::new(a.0)?,
        ifname: a.1.into(),
        v4: a.2,
        v6: a.3,
    };
    let hb = Host {
        ns: NetNs::new(b.0)?,
        ifname: b.1.into(),
        v4: b.2,
        v6: b.3,
    };
    quiet_ipv6(&ha.ns)?;
    quiet_ipv6(&hb.ns)?;
    netlink::add_veth(&ha.ns, &ha.ifname, &hb.ns, &hb.ifname)
        .with_context(|| format!("joining {} and {}", a.0, b.0))?;
    address(&ha, prefix_v4)?;
    address(&hb, prefix_v4)?;
    Ok((ha, hb))
}
