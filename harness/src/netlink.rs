//! Link, address, neighbour and route set-up through rtnetlink, inside a namespace.
//!
//! Each call opens a netlink socket on a thread inside the target namespace (so the socket
//! speaks to that namespace) and drives it on a small single-threaded tokio runtime. Every
//! error names the equivalent `ip` command, so a person can repeat the step by hand.

use std::net::IpAddr;

use anyhow::{anyhow, Context, Result};
use futures_util::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressFlags};
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute};
use netlink_packet_route::neighbour::NeighbourState;
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::NetNs;

/// Runs one netlink conversation inside `ns`. `cmd` is the equivalent `ip` command line.
pub(crate) fn in_ns<T, F>(ns: &NetNs, cmd: &str, f: F) -> Result<T>
where
    T: Send,
    F: AsyncFnOnce(Handle) -> Result<T, rtnetlink::Error> + Send,
{
    let outcome = ns.run(|| -> Result<T> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building a tokio runtime for netlink")?;
        rt.block_on(async {
            let (connection, handle, _) =
                rtnetlink::new_connection().context("opening a NETLINK_ROUTE socket")?;
            let conn = tokio::spawn(connection);
            let r = f(handle).await.map_err(anyhow::Error::from);
            conn.abort();
            r
        })
    })?;
    outcome.with_context(|| format!("`{cmd}` in namespace {} failed", ns.name()))
}

/// The interface index of `name` in `ns`.
pub fn link_index(ns: &NetNs, name: &str) -> Result<u32> {
    let n = name.to_string();
    in_ns(
        ns,
        &format!("ip link show dev {name}"),
        async move |h: Handle| {
            let mut links = h.link().get().match_name(n).execute();
            Ok(links.try_next().await?.map(|l| l.header.index))
        },
    )?
    .ok_or_else(|| anyhow!("no interface {name} in namespace {}", ns.name()))
}

/// The link-layer address of `name` in `ns`.
pub fn link_mac(ns: &NetNs, name: &str) -> Result<[u8; 6]> {
    let n = name.to_string();
    let attrs = in_ns(
        ns,
        &format!("ip link show dev {name}"),
        async move |h: Handle| {
            let mut links = h.link().get().match_name(n).execute();
            Ok(links.try_next().await?.map(|l| l.attributes))
        },
    )?
    .ok_or_else(|| anyhow!("no interface {name} in namespace {}", ns.name()))?;
    attrs
        .into_iter()
        .find_map(|a| match a {
            LinkAttribute::Address(mac) if mac.len() == 6 => mac.try_into().ok(),
            _ => None,
        })
        .ok_or_else(|| anyhow!("interface {name} has no MAC address"))
}

pub fn set_up(ns: &NetNs, name: &str) -> Result<()> {
    // Addressed by name: one request, no index lookup first.
    let n = name.to_string();
    in_ns(
        ns,
        &format!("ip link set dev {name} up"),
        async move |h: Handle| {
            h.link()
                .set(LinkUnspec::new_with_name(&n).up().build())
                .execute()
                .await
        },
    )
}

pub fn set_down(ns: &NetNs, name: &str) -> Result<()> {
    // Addressed by name: one request, no index lookup first.
    let n = name.to_string();
    in_ns(
        ns,
        &format!("ip link set dev {name} down"),
        async move |h: Handle| {
            h.link()
                .set(LinkUnspec::new_with_name(&n).down().build())
                .execute()
                .await
        },
    )
}

pub fn set_mtu(ns: &NetNs, name: &str, mtu: u32) -> Result<()> {
    let n = name.to_string();
    in_ns(
        ns,
        &format!("ip link set dev {name} mtu {mtu}"),
        async move |h: Handle| {
            h.link()
                .set(LinkUnspec::new_with_name(&n).mtu(mtu).build())
                .execute()
                .await
        },
    )
}

/// Creates a veth pair: `name_a` in `ns_a`, its peer `name_b` born in `ns_b` (one request,
/// as `ip link add NAME_A type veth peer name NAME_B netns NS_B`: moving the peer afterwards
/// would cost a second request and the kernel's namespace change). Both stay down until
/// [`set_up`]. The pair never exists in the caller's namespace.
pub fn add_veth(ns_a: &NetNs, name_a: &str, ns_b: &NetNs, name_b: &str) -> Result<()> {
    let target = ns_b.raw_fd();
    let peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(name_b.to_string())
        .setns_by_fd(target)
        .build();
    let msg = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
        .name(name_a.to_string())
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .build();
    in_ns(
        ns_a,
        &format!("ip link add {name_a} type veth peer name {name_b} netns <fd {target}>"),
        async move |h: Handle| h.link().add(msg).execute().await,
    )
    .context("creating a veth pair (is the veth module available? `modprobe veth`)")
}

/// Adds `addr/prefix` to `name`. IPv6 addresses skip duplicate address detection, so they
/// are usable at once instead of after a second or two.
pub fn add_address(ns: &NetNs, name: &str, addr: IpAddr, prefix: u8) -> Result<()> {
    let nodad = if addr.is_ipv6() { " nodad" } else { "" };
    let n = name.to_string();
    in_ns(
        ns,
        &format!("ip addr add {addr}/{prefix} dev {name}{nodad}"),
        async move |h: Handle| {
            // The lookup and the change share one conversation (one thread, one socket).
            let Some(idx) = index_of(&h, n).await? else {
                return Ok(None);
            };
            let mut req = h.address().add(idx, addr, prefix);
            if addr.is_ipv6() {
                req.message_mut()
                    .attributes
                    .push(AddressAttribute::Flags(AddressFlags::Nodad));
            }
            req.execute().await.map(Some)
        },
    )?
    .ok_or_else(|| anyhow!("no interface {name} in namespace {}", ns.name()))
}

/// The index of `name`, asked on an open conversation; `None` if there is no such link.
async fn index_of(h: &Handle, name: String) -> Result<Option<u32>, rtnetlink::Error> {
    let mut links = h.link().get().match_name(name).execute();
    Ok(links.try_next().await?.map(|l| l.header.index))
}

/// A permanent neighbour entry, so traffic to `addr` needs no ARP/ND (used where the peer
/// cannot answer, as behind a veth whose peer is down).
pub fn add_neighbour(ns: &NetNs, name: &str, addr: IpAddr, mac: [u8; 6]) -> Result<()> {
    let m = mac.map(|b| format!("{b:02x}")).join(":");
    let n = name.to_string();
    in_ns(
        ns,
        &format!("ip neigh add {addr} lladdr {m} dev {name} nud permanent"),
        async move |h: Handle| {
            let Some(idx) = index_of(&h, n).await? else {
                return Ok(None);
            };
            h.neighbours()
                .add(idx, addr)
                .link_layer_address(&mac)
                .state(NeighbourState::Permanent)
                .execute()
                .await
                .map(Some)
        },
    )?
    .ok_or_else(|| anyhow!("no interface {name} in namespace {}", ns.name()))
}

/// A route to `dest/prefix` via `gateway`.
pub fn add_route(ns: &NetNs, dest: IpAddr, prefix: u8, gateway: IpAddr) -> Result<()> {
    let cmd = format!("ip route add {dest}/{prefix} via {gateway}");
    in_ns(ns, &cmd, async move |h: Handle| {
        let msg = match (dest, gateway) {
            (IpAddr::V4(d), IpAddr::V4(g)) => RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                .destination_prefix(d, prefix)
                .gateway(g)
                .build(),
            (IpAddr::V6(d), IpAddr::V6(g)) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                .destination_prefix(d, prefix)
                .gateway(g)
                .build(),
            _ => unreachable!("route family mismatch is a programming error"),
        };
        h.route().add(msg).execute().await
    })
}
