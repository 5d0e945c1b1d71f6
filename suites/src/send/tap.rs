//! Taps on the path: msg_zerocopy.rst (Loopback) says packets looped onto packet sockets
//! (tcpdump) and tun devices incur a deferred copy. Recorded, with the bytes checked.
//!
//! * `send.tap.packet.udp4.forward_dead`: through a router out of a dead link (not copied
//!   since 6.17, see `send.copied.*`), one datagram without a tap, then one with an
//!   AF_PACKET socket listening in the sender's namespace: whether each notification says
//!   COPIED is recorded; the tap must see the datagram's exact bytes. (A veth whose own
//!   peer is down cannot show a tap: with the carrier off its queue drops every packet
//!   before taps see it.)
//! * `send.tap.tun.udp4`: a datagram routed into a tun device nobody reads yet: whether the
//!   notification says COPIED is recorded; the packet then read from the tun carries the
//!   exact bytes.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use harness::netlink;
use harness::sockets::{self, Family};
use harness::sys::{tun, zerocopy};
use harness::topology::{Exit, Forward, Topology};
use harness::NetNs;
use socket2::{Domain, Protocol, Socket, Type};

use super::flow::{await_ids, show, zc_send, SO_ZEROCOPY_UDP};
use super::mapped;
use super::wire;
use crate::case::{Area, Case, Ctx};
use crate::outcome::{fail_with, Verdict};
use crate::probes::{Answer, Requirement, NET_ADMIN, VETH};

/// `/dev/net/tun` can be opened (the tun module is there and the device node exists).
const TUN: Requirement = Requirement {
    name: "env.tun",
    probe: || match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
    {
        Ok(_) => Answer::Present("open(/dev/net/tun): ok".into()),
        Err(e) => Answer::Blocked(format!("open(/dev/net/tun): {e}")),
    },
};

pub fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "send.tap.packet.udp4.forward_dead",
            Area::Send,
            "a packet socket listening on the path: whether it makes the notification \
             COPIED (recorded); the tap sees the exact bytes",
            vec![NET_ADMIN, VETH, SO_ZEROCOPY_UDP],
            packet_tap,
        ),
        Case::new(
            "send.tap.tun.udp4",
            Area::Send,
            "a datagram into a tun device: whether the notification is COPIED (recorded); \
             the tun's reader gets the exact bytes",
            vec![NET_ADMIN, TUN, SO_ZEROCOPY_UDP],
            tun_case,
        ),
    ]
}

/// Whether `frame` ends with `payload` (a frame or packet carrying the datagram).
pub fn carries(frame: &[u8], payload: &[u8]) -> bool {
    frame.len() >= payload.len() && &frame[frame.len() - payload.len()..] == payload
}

/// Reads packets from `read` (non-blocking) for up to `wait`, returning the first one at
/// least `min_len` long whose UDP destination port is `port` (IPv4 header of `l2` bytes in).
fn find_packet(
    mut read: impl FnMut(&mut [u8]) -> std::io::Result<usize>,
    l2: usize,
    port: u16,
    min_len: usize,
    wait: Duration,
) -> Result<Option<Vec<u8>>> {
    let deadline = Instant::now() + wait;
    let mut buf = vec![0u8; 4096];
    while Instant::now() < deadline {
        match read(&mut buf) {
            Ok(n) => {
                let p = &buf[..n];
                if n >= min_len && n > l2 + 24 && p[l2] >> 4 == 4 && p[l2 + 9] == 17 {
                    let ihl = (p[l2] & 0xf) as usize * 4;
                    let dport = u16::from_be_bytes([p[l2 + ihl + 2], p[l2 + ihl + 3]]);
                    if dport == port {
                        return Ok(Some(p.to_vec()));
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(e) => return Err(e).context("reading packets"),
        }
    }
    Ok(None)
}

const PORT: u16 = 9;

fn packet_tap(ctx: &mut Ctx) -> Result<Verdict> {
    let path = Forward::new(Exit::PeerDown)?;
    let s = path.sender();
    let to = SocketAddr::new(IpAddr::V4(path.receiver().v4), PORT);
    let sender = sockets::udp_to(&s.ns, to)?;
    zerocopy::set_so_zerocopy(sender.as_fd(), true)?;
    let first = wire::payload(ctx.seed, 0, 1000);
    zc_send(&sender, &first, false).context("zero-copy send without a tap")?;
    let without = mapped::judged(Family::V4, &await_ids(&sender, 1)?)?;
    // ETH_P_ALL in network byte order: every frame of the namespace, both directions.
    let tap =
        s.ns.run(|| Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(0x0300))))?
            .context("socket(AF_PACKET, SOCK_RAW, ETH_P_ALL)")?;
    tap.set_nonblocking(true)?;
    let second = wire::payload(ctx.seed, 1, 1000);
    zc_send(&sender, &second, false).context("zero-copy send with a tap")?;
    let with = mapped::judged(Family::V4, &await_ids(&sender, 1)?)?;
    let frame = find_packet(
        |b| (&tap).read(b),
        14,
        PORT,
        second.len(),
        Duration::from_secs(1),
    )?;
    let seen_by_tap = match &frame {
        Some(f) if carries(f, &second) => true,
        Some(f) => {
            return Err(fail_with(
                "the packet socket saw the datagram with other bytes than sent",
                format!("frame of {} bytes, payload of {}", f.len(), second.len()),
            ))
        }
        None => false,
    };
    ctx.observe("copied_without_tap", without.iter().any(|c| c.copied));
    ctx.observe("copied_with_packet_tap", with.iter().any(|c| c.copied));
    ctx.observe("tap_saw_datagram", seen_by_tap);
    Ok(Verdict::pass(format!(
        "without a tap {}, with a packet socket {}",
        show(&without),
        show(&with)
    )))
}

fn tun_case(ctx: &mut Ctx) -> Result<Verdict> {
    let ns = NetNs::new("tun")?;
    let dev = "zc-tun";
    let file = ns
        .run(|| tun::create(dev))?
        .with_context(|| format!("creating tun device {dev} (`ip tuntap add {dev} mode tun`)"))?;
    netlink::add_address(&ns, dev, IpAddr::V4(Ipv4Addr::new(198, 18, 9, 1)), 24)?;
    netlink::set_up(&ns, dev)?;
    let to = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 9, 2)), PORT);
    let sender = sockets::udp_to(&ns, to)?;
    zerocopy::set_so_zerocopy(sender.as_fd(), true)?;
    let data = wire::payload(ctx.seed, 0, 1000);
    zc_send(&sender, &data, false).context("zero-copy send into the tun")?;
    let got = mapped::judged(Family::V4, &await_ids(&sender, 1)?)?;
    let packet = find_packet(
        |b| (&file).read(b),
        0,
        PORT,
        data.len(),
        Duration::from_secs(1),
    )?
    .ok_or_else(|| fail_with("the tun's reader never got the datagram", show(&got)))?;
    if !carries(&packet, &data) {
        return Err(fail_with(
            "the tun's reader got the datagram with other bytes than sent",
            format!(
                "packet of {} bytes, payload of {}",
                packet.len(),
                data.len()
            ),
        ));
    }
    ctx.observe("copied", got.iter().any(|c| c.copied));
    Ok(Verdict::pass(format!(
        "notified as {}; the tun's reader got the exact bytes",
        show(&got)
    )))
}

#[cfg(test)]
mod tests {
    #[test]
    fn carries_only_the_exact_tail() {
        assert!(super::carries(&[0, 1, 2, 3], &[2, 3]));
        assert!(!super::carries(&[0, 1, 2, 4], &[2, 3]));
        assert!(!super::carries(&[3], &[2, 3]));
    }
}
