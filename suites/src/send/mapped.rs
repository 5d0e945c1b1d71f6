//! The socket's family decides the notification's cmsg (msg_zerocopy.rst: "The level and type
//! fields in the control data are protocol family specific, IP_RECVERR or IPV6_RECVERR";
//! packetdrill runs every zerocopy script as IPv4, IPv6 and IPv4-mapped IPv6, expecting
//! SOL_IPV6/IPV6_RECVERR for both AF_INET6 runs).
//!
//! * `send.cmsg_level.{tcp,udp}`: on loopback, an AF_INET socket gets SOL_IP/IP_RECVERR, an
//!   AF_INET6 socket SOL_IPV6/IPV6_RECVERR, to an IPv6 peer and to an IPv4-mapped one alike.
//!   (`send.format.*` accepts either level on IPv6, as msg_zerocopy.c does; an application
//!   that checks only SOL_IPV6 relies on this stricter rule.)
//! * `send.mapped.pair`, TCP and UDP: an AF_INET6 socket talking to `::ffff:198.18.0.2` across
//!   a veth keeps every rule of the id counter and the format: ids 0, 1, 2 each reported
//!   once, well formed, at SOL_IPV6, and the receiver gets exactly the bytes sent.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;

use anyhow::{Context, Result};
use harness::sockets::{self, Family, Proto};
use harness::sys::errqueue::{Completion, ErrQueueEntry};
use harness::topology::{Host, Loopback, Pair, PairConfig, Topology};
use harness::NetNs;
use serde::Serialize;
use socket2::Socket;

use super::flow::{await_ids, completions, show, zc_send, SO_ZEROCOPY_TCP, SO_ZEROCOPY_UDP};
use super::wire::{self, DatagramReader, StreamCollector};
use crate::case::{Area, Case, Ctx};
use crate::model::completions::{check, check_format, IdWindow};
use crate::outcome::{fail_with, Verdict};
use crate::probes::{Requirement, NET_ADMIN, VETH};
use harness::sys::zerocopy;

/// How the sending socket addresses its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Addressing {
    /// AF_INET to an IPv4 address.
    V4,
    /// AF_INET6 to an IPv6 address.
    V6,
    /// AF_INET6 to an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`).
    Mapped,
}

impl Addressing {
    pub const ALL: [Addressing; 3] = [Addressing::V4, Addressing::V6, Addressing::Mapped];

    /// The family of the sending socket.
    pub fn socket_family(self) -> Family {
        match self {
            Addressing::V4 => Family::V4,
            Addressing::V6 | Addressing::Mapped => Family::V6,
        }
    }

    /// The family of the receiving socket (the wire protocol).
    fn wire_family(self) -> Family {
        match self {
            Addressing::V4 | Addressing::Mapped => Family::V4,
            Addressing::V6 => Family::V6,
        }
    }

    /// The address the sender connects to, for a receiver bound at `at`.
    fn destination(self, at: SocketAddr) -> SocketAddr {
        match (self, at.ip()) {
            (Addressing::Mapped, IpAddr::V4(v4)) => {
                SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), at.port())
            }
            _ => at,
        }
    }
}

/// The cmsg level and type a socket of `family` must get its notifications in.
pub fn expected_cmsg(family: Family) -> (i32, i32) {
    match family {
        Family::V4 => (libc::SOL_IP, libc::IP_RECVERR),
        Family::V6 => (libc::SOL_IPV6, libc::IPV6_RECVERR),
    }
}

/// One error-queue entry of a socket of `family` is a well-formed zero-copy notification,
/// at exactly its family's cmsg level and type, not truncated.
pub fn check_notification(family: Family, e: &ErrQueueEntry) -> Result<Completion, String> {
    if e.truncated() {
        return Err(format!("MSG_CTRUNC set (msg_flags {:#x})", e.msg_flags));
    }
    let got = (e.cmsg_level.unwrap_or(-1), e.cmsg_type.unwrap_or(-1));
    let want = expected_cmsg(family);
    if got != want {
        return Err(format!(
            "cmsg level/type {got:?} on an {family:?} socket, not {want:?}"
        ));
    }
    let ee =
        e.ee.ok_or("the RECVERR cmsg carried no sock_extended_err")?;
    check_format(&ee).map_err(|m| format!("{m} in {ee:?}"))?;
    e.completion()
        .ok_or_else(|| "not a zero-copy notification".to_string())
}

/// A connected sender (SO_ZEROCOPY on) in `s` and its receiver in `r`, addressed as asked.
pub fn connect(s: &NetNs, r: &Host, proto: Proto, how: Addressing) -> Result<(Socket, Socket)> {
    let at = SocketAddr::new(r.ip(how.wire_family()), 0);
    let to_sender = |_bound: SocketAddr| -> Result<Socket> {
        let sock = sockets::socket_in(s, how.socket_family(), proto)?;
        if how.socket_family() == Family::V6 {
            sock.set_only_v6(false).context("IPV6_V6ONLY off")?;
        }
        Ok(sock)
    };
    let (sender, receiver) = match proto {
        Proto::Tcp => {
            let listener = sockets::tcp_listener(&r.ns, at.ip())?;
            let bound = sockets::local_addr(&listener)?;
            let sender = to_sender(bound)?;
            let dest = how.destination(bound);
            sender
                .connect_timeout(&dest.into(), sockets::IO_TIMEOUT)
                .with_context(|| format!("connect to {dest}"))?;
            (sender, sockets::accept(&listener, sockets::IO_TIMEOUT)?)
        }
        Proto::Udp => {
            let receiver = sockets::socket_in(&r.ns, how.wire_family(), Proto::Udp)?;
            receiver.bind(&at.into()).context("bind the UDP receiver")?;
            let bound = sockets::local_addr(&receiver)?;
            let sender = to_sender(bound)?;
            let dest = how.destination(bound);
            sender
                .connect(&dest.into())
                .with_context(|| format!("UDP connect to {dest}"))?;
            (sender, receiver)
        }
    };
    zerocopy::set_so_zerocopy(sender.as_fd(), true).context("setsockopt(SO_ZEROCOPY, 1)")?;
    Ok((sender, receiver))
}

fn proto_tag(p: Proto) -> &'static str {
    match p {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
    }
}

fn so_zerocopy(p: Proto) -> Requirement {
    match p {
        Proto::Tcp => SO_ZEROCOPY_TCP,
        Proto::Udp => SO_ZEROCOPY_UDP,
    }
}

pub fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for proto in [Proto::Tcp, Proto::Udp] {
        cases.push(Case::new(
            format!("send.cmsg_level.{}", proto_tag(proto)),
            Area::Send,
            "notifications come at the socket family's level: SOL_IP/IP_RECVERR on AF_INET, \
             SOL_IPV6/IPV6_RECVERR on AF_INET6 to IPv6 and to IPv4-mapped peers \
             (msg_zerocopy.rst; packetdrill's three runs)",
            vec![NET_ADMIN, so_zerocopy(proto)],
            move |ctx| cmsg_level(ctx, proto),
        ));
    }
    cases.push(Case::new(
        "send.mapped.pair",
        Area::Send,
        "an AF_INET6 socket to ::ffff:198.18.0.2, TCP and UDP: ids 0, 1, 2 once each, well \
         formed at SOL_IPV6, the bytes intact",
        vec![NET_ADMIN, VETH, SO_ZEROCOPY_TCP, SO_ZEROCOPY_UDP],
        mapped,
    ));
    cases
}

fn mapped(ctx: &mut Ctx) -> Result<Verdict> {
    let pair = Pair::new(PairConfig::default())?;
    let mut done = Vec::new();
    for proto in [Proto::Tcp, Proto::Udp] {
        done.push(mapped_pair(ctx, &pair, proto)?);
    }
    Ok(Verdict::pass(done.join("; ")))
}

/// One send per addressing on loopback; each notification judged at its family's level.
fn cmsg_level(ctx: &mut Ctx, proto: Proto) -> Result<Verdict> {
    let lo = Loopback::new(None)?;
    let host = lo.receiver();
    let mut seen = Vec::new();
    for how in Addressing::ALL {
        let (sender, receiver) = connect(&host.ns, host, proto, how)?;
        let reader = DatagramReader::start(receiver, 1, std::time::Duration::from_millis(300))?;
        zc_send(&sender, &[0x4d; 1000], false).context("zero-copy send")?;
        let entries = await_ids(&sender, 1)?;
        let entry = entries
            .first()
            .ok_or_else(|| fail_with(format!("{how:?}: no notification"), "(none)"))?;
        check_notification(how.socket_family(), entry).map_err(|m| {
            fail_with(
                format!("{how:?} addressing: {m}"),
                format!("entries: {entries:?}"),
            )
        })?;
        drop(sender);
        reader.finish()?;
        seen.push(format!(
            "{how:?}: level {} type {}",
            entry.cmsg_level.unwrap_or(-1),
            entry.cmsg_type.unwrap_or(-1)
        ));
    }
    ctx.observe("cmsg", &seen);
    Ok(Verdict::pass(seen.join("; ")))
}

/// Three sends over a veth from an AF_INET6 socket to an IPv4-mapped address.
fn mapped_pair(ctx: &mut Ctx, pair: &Pair, proto: Proto) -> Result<String> {
    let (sender, receiver) = connect(&pair.a.ns, &pair.b, proto, Addressing::Mapped)?;
    let sizes: &[usize] = match proto {
        Proto::Tcp => &[1, 4096, 100_000],
        Proto::Udp => &[1, 1000, 1400],
    };
    let bufs: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| wire::payload(ctx.seed, i as u32, n))
        .collect();
    let got = match proto {
        Proto::Tcp => {
            let sink = StreamCollector::start(receiver);
            for b in &bufs {
                let n = zc_send(&sender, b, false).context("zero-copy send")?;
                anyhow::ensure!(n == b.len(), "a blocking send sent {n} of {}", b.len());
            }
            let entries = await_ids(&sender, bufs.len() as u64)?;
            sender.shutdown(std::net::Shutdown::Write)?;
            let stream = sink.finish()?;
            wire::check_stream(&bufs.concat(), &stream)
                .map_err(|m| fail_with(m, "TCP over AF_INET6 to a mapped address"))?;
            entries
        }
        Proto::Udp => {
            let reader =
                DatagramReader::start(receiver, bufs.len(), std::time::Duration::from_secs(1))?;
            for b in &bufs {
                zc_send(&sender, b, false).context("zero-copy send")?;
            }
            let entries = await_ids(&sender, bufs.len() as u64)?;
            let dgrams = reader.finish()?;
            wire::check_datagrams(&bufs, &dgrams, false)
                .map_err(|m| fail_with(m, "UDP over AF_INET6 to a mapped address"))?;
            entries
        }
    };
    let mut comps = Vec::new();
    for e in &got {
        comps.push(
            check_notification(Family::V6, e)
                .map_err(|m| fail_with(m, format!("entries: {got:?}")))?,
        );
    }
    check(IdWindow::new(0, bufs.len() as u64), &comps, true).map_err(|v| {
        fail_with(
            format!("ids of an AF_INET6 socket to a mapped address: {v}"),
            show(&comps),
        )
    })?;
    let tag = proto_tag(proto);
    ctx.observe(format!("{tag}_copied"), comps.iter().all(|c| c.copied));
    ctx.observe_timing(format!("{tag}_notifications"), show(&comps));
    Ok(format!(
        "{proto:?}: ids 0..2 reported as {}, at SOL_IPV6, data intact",
        show(&comps)
    ))
}

/// The completions among `entries`, each judged as a notification of a `family` socket.
pub fn judged(family: Family, entries: &[ErrQueueEntry]) -> Result<Vec<Completion>> {
    entries
        .iter()
        .map(|e| {
            check_notification(family, e)
                .map_err(|m| fail_with(m, format!("completions: {}", show(&completions(entries)))))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use harness::sys::errqueue::{ExtendedErr, SO_EE_ORIGIN_ZEROCOPY};

    fn entry(level: i32, kind: i32) -> ErrQueueEntry {
        ErrQueueEntry {
            msg_flags: libc::MSG_ERRQUEUE,
            cmsg_level: Some(level),
            cmsg_type: Some(kind),
            ee: Some(ExtendedErr {
                errno: 0,
                origin: SO_EE_ORIGIN_ZEROCOPY,
                kind: 0,
                code: 1,
                pad: 0,
                info: 0,
                data: 0,
            }),
            family: libc::AF_INET6,
            v4_mapped_at_sol_ip: false,
            len: 0,
        }
    }

    #[test]
    fn each_family_gets_its_own_level() {
        assert!(check_notification(Family::V4, &entry(libc::SOL_IP, libc::IP_RECVERR)).is_ok());
        assert!(check_notification(Family::V6, &entry(libc::SOL_IPV6, libc::IPV6_RECVERR)).is_ok());
    }

    #[test]
    fn an_ipv6_socket_at_sol_ip_fails() {
        let e = check_notification(Family::V6, &entry(libc::SOL_IP, libc::IP_RECVERR));
        assert!(e.unwrap_err().contains("V6"));
        assert!(
            check_notification(Family::V4, &entry(libc::SOL_IPV6, libc::IPV6_RECVERR)).is_err()
        );
    }

    #[test]
    fn a_bad_origin_or_truncation_fails() {
        let mut e = entry(libc::SOL_IP, libc::IP_RECVERR);
        e.ee.as_mut().unwrap().origin = 4;
        assert!(check_notification(Family::V4, &e).is_err());
        let mut t = entry(libc::SOL_IP, libc::IP_RECVERR);
        t.msg_flags |= libc::MSG_CTRUNC;
        assert!(check_notification(Family::V4, &t).is_err());
    }

    #[test]
    fn mapped_destinations() {
        let at: SocketAddr = "198.18.0.2:9".parse().unwrap();
        assert_eq!(
            Addressing::Mapped.destination(at).to_string(),
            "[::ffff:198.18.0.2]:9"
        );
        assert_eq!(Addressing::V4.destination(at), at);
    }
}
