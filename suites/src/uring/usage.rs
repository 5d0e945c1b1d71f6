//! What the notification says about copying (SEMANTICS.md R8.2, §12.3), and the zero-length
//! send.
//!
//! With `IORING_SEND_ZC_REPORT_USAGE` (6.2) the notification's `res` is
//! `IORING_NOTIF_USAGE_ZC_COPIED` when the data was copied or zero-copy was never used, and 0
//! when the pages went out by reference. Data delivered to a local socket (loopback, or the
//! far end of a veth pair) is always copied on receive; a UDP datagram into a veth whose peer
//! is down is dropped at transmit with its pages never copied. Seeing both answers proves the
//! bit carries information.

use std::os::fd::AsFd;
use std::time::Duration;

use anyhow::{Context, Result};
use harness::sockets::{self, Family, Proto, Sink};
use harness::sys::errqueue;
use harness::sys::uring::{SendOp, SendRequest};
use harness::sys::zerocopy;
use harness::topology::{DeadEnd, Loopback};
use socket2::Socket;

use super::probes::{self, REPORT_USAGE};
use super::support::{self, Conn};
use crate::case::{Area, Case, Ctx};
use crate::outcome::{expect, fail_with, Verdict};
use crate::send::flow::Path;

pub fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for path in [Path::Loopback, Path::Pair] {
        let tag = path.tag();
        cases.push(Case::new(
            format!("uring.usage.copied.{tag}"),
            Area::Uring,
            "REPORT_USAGE: data received by a local socket was copied, so every \
             notification says ZC_COPIED (TCP/UDP, v4/v6, send/sendmsg/fixed)",
            support::requires(Some(path), &[REPORT_USAGE]),
            move |ctx| copied(ctx, path),
        ));
    }
    cases.push(Case::new(
        "uring.usage.zerocopy.deadend",
        Area::Uring,
        "REPORT_USAGE: UDP into a veth whose peer is down is not copied, so the \
         notification's res is 0",
        support::requires(Some(Path::Pair), &[REPORT_USAGE]),
        zerocopy_deadend,
    ));
    cases.push(Case::new(
        "uring.usage.paths",
        Area::Uring,
        "REPORT_USAGE on the rest of the COPIED truth table's paths (veth with SG off, \
         forwarded, forwarded into a dead link, dead end with SG off): every request gets \
         its notification; what it reports is recorded per path",
        support::requires(Some(Path::Pair), &[REPORT_USAGE]),
        usage_paths,
    ));
    cases.push(Case::new(
        "uring.zero_length.tcp4.lo",
        Area::Uring,
        "a zero-length SEND_ZC completes with res 0 and keeps the protocol; whether a \
         notification follows (unlike MSG_ZEROCOPY, which takes no id) is recorded",
        support::requires(Some(Path::Loopback), &[]),
        zero_length,
    ));
    cases
}

/// The ways a zero-copy request can be made on this kernel.
fn ways() -> Vec<(&'static str, SendOp, bool)> {
    let mut w = vec![("send_zc", SendOp::SendZc, false)];
    if support::has_sendmsg_zc() {
        w.push(("sendmsg_zc", SendOp::SendMsgZc, false));
    }
    w.push(("send_zc_fixed", SendOp::SendZc, true));
    w
}

/// Sends one REPORT_USAGE request per (connection, way) and returns `(label, copied)` for
/// each, failing when a request produced no notification to carry the usage.
fn usage_of(
    ctx: &mut Ctx,
    key: &str,
    senders: &[(String, &Socket, usize)],
) -> Result<Vec<(String, bool)>> {
    let mut ring = support::ring()?;
    ring.register_buffers(&[64 * 1024])?;
    let data = support::pattern(64 * 1024);
    ring.fixed_mut(0).copy_from_slice(&data);
    let mut reqs: Vec<(&Socket, SendRequest)> = Vec::new();
    let mut labels = Vec::new();
    for (label, sock, len) in senders {
        for (way, op, fixed) in ways() {
            let ud = reqs.len() as u64 + 1;
            reqs.push((*sock, support::request(op, &data, *len, fixed, true, ud)));
            labels.push(format!("{label}.{way}"));
        }
    }
    let (acc, cqes) = support::exchange(&mut ring, &reqs, Duration::ZERO)?;
    let mut out = Vec::new();
    for ((_, req), label) in reqs.iter().zip(labels) {
        let o = acc.outcomes[&req.user_data];
        let res = o.res.expect("complete stream");
        // A datagram goes whole; a stream send may complete short without MSG_WAITALL.
        let len = req.payload.len() as i32;
        let whole = if label.starts_with("tcp") {
            res > 0 && res <= len
        } else {
            res == len
        };
        if !whole {
            return Err(fail_with(
                format!(
                    "{label}: the send completed with {} of {} bytes",
                    support::show_res(res),
                    req.payload.len()
                ),
                crate::model::uring_notif::show(&cqes),
            ));
        }
        let Some(copied) = o.copied() else {
            return Err(fail_with(
                format!("{label}: no notification came to report the usage (no F_MORE)"),
                crate::model::uring_notif::show(&cqes),
            ));
        };
        out.push((label, copied));
    }
    ctx.observe(
        key,
        out.iter()
            .map(|(l, c)| (l.clone(), if *c { "copied" } else { "zero-copy" }))
            .collect::<std::collections::BTreeMap<_, _>>(),
    );
    Ok(out)
}

fn copied(ctx: &mut Ctx, path: Path) -> Result<Verdict> {
    let topo = path.topology()?;
    let mut flows = Vec::new();
    for conn in Conn::ALL {
        let (s, r) = support::connect(topo.as_ref(), conn)?;
        let len = if conn.proto == Proto::Tcp {
            64 * 1024
        } else {
            1000
        };
        flows.push((conn, s, Sink::start(r, false)?, len));
    }
    let senders: Vec<(String, &Socket, usize)> = flows
        .iter()
        .map(|(c, s, _, len)| (c.to_string(), s, *len))
        .collect();
    let usage = usage_of(ctx, "usage", &senders)?;
    let not_copied: Vec<&str> = usage
        .iter()
        .filter(|(_, c)| !c)
        .map(|(l, _)| l.as_str())
        .collect();
    expect(not_copied.is_empty(), || {
        format!(
            "data received by a local socket must have been copied, yet the notification \
             said zero-copy for: {}",
            not_copied.join(", ")
        )
    })?;
    for (_, s, sink, _) in flows {
        drop(s);
        sink.finish()?;
    }
    Ok(Verdict::pass(format!(
        "{} requests, every notification ZC_COPIED",
        usage.len()
    )))
}

fn zerocopy_deadend(ctx: &mut Ctx) -> Result<Verdict> {
    let dead = DeadEnd::new()?;
    let mut socks = Vec::new();
    for family in [Family::V4, Family::V6] {
        let to = std::net::SocketAddr::new(dead.target.ip(family), 9);
        let s = sockets::udp_to(&dead.a.ns, to)?;
        let label = if family == Family::V4 { "udp4" } else { "udp6" };
        socks.push((label.to_string(), s));
    }
    let senders: Vec<(String, &Socket, usize)> =
        socks.iter().map(|(l, s)| (l.clone(), s, 1000)).collect();
    let usage = usage_of(ctx, "usage", &senders)?;
    let copied: Vec<&str> = usage
        .iter()
        .filter(|(_, c)| *c)
        .map(|(l, _)| l.as_str())
        .collect();
    expect(copied.is_empty(), || {
        format!(
            "UDP dropped at a veth whose peer is down is never copied, yet the notification \
             said ZC_COPIED for: {}",
            copied.join(", ")
        )
    })?;
    Ok(Verdict::pass(format!(
        "{} requests, every notification res 0 (zero-copy)",
        usage.len()
    )))
}

/// A zero-length SEND_ZC on TCP: res 0, and a protocol-consistent stream. MSG_ZEROCOPY with
/// length 0 takes no id and posts nothing (OBSERVED A); io_uring's answer is recorded next
/// to it.
fn zero_length(ctx: &mut Ctx) -> Result<Verdict> {
    let lo = Loopback::new(None)?;
    let conn = Conn {
        proto: Proto::Tcp,
        family: Family::V4,
    };
    let (s, r) = support::connect(&lo, conn)?;
    let sink = Sink::start(r, true)?;
    let usage = matches!(
        probes::REPORT_USAGE.answer(),
        crate::probes::Answer::Present(_)
    );
    let mut ring = support::ring()?;
    let data = support::pattern(1);
    let reqs = vec![
        (
            &s,
            support::request(SendOp::SendZc, &data, 0, false, false, 1),
        ),
        (
            &s,
            support::request(SendOp::SendZc, &data, 0, false, usage, 2),
        ),
    ];
    let (acc, cqes) = support::exchange(&mut ring, &reqs, Duration::from_millis(50))?;
    for (_, req) in &reqs {
        let o = acc.outcomes[&req.user_data];
        expect(o.res == Some(0), || {
            format!(
                "a zero-length SEND_ZC completed with {} (CQEs: {})",
                support::show_res(o.res.unwrap_or(i32::MIN)),
                crate::model::uring_notif::show(&cqes)
            )
        })?;
    }
    let plain = acc.outcomes[&1];
    let with_usage = acc.outcomes[&2];
    ctx.observe("f_more", plain.more);
    ctx.observe("notification", plain.notif.is_some());
    if usage {
        ctx.observe(
            "usage",
            match with_usage.copied() {
                Some(true) => "copied",
                Some(false) => "zero-copy",
                None => "no notification",
            },
        );
    }

    // The MSG_ZEROCOPY counterpart on the same connection.
    zerocopy::set_so_zerocopy(s.as_fd(), true).context("setsockopt(SO_ZEROCOPY, 1)")?;
    let n = zerocopy::send_zc(s.as_fd(), &[], 0).context("send(len 0, MSG_ZEROCOPY)")?;
    let woke = errqueue::wait_err(s.as_fd(), Duration::from_millis(100))?;
    let entries = errqueue::drain(s.as_fd())?;
    ctx.observe("msg_zerocopy_returned", n);
    ctx.observe("msg_zerocopy_notification", woke || !entries.is_empty());
    drop(s);
    let got = sink.finish()?;
    expect(got.is_empty(), || {
        format!("zero-length sends delivered {} bytes", got.len())
    })?;
    Ok(Verdict::pass(format!(
        "res 0; io_uring {} a notification, MSG_ZEROCOPY {}",
        if plain.notif.is_some() {
            "posted"
        } else {
            "did not post"
        },
        if woke || !entries.is_empty() {
            "posted one too"
        } else {
            "posted none"
        }
    )))
}

/// The truth table's other paths: what REPORT_USAGE says is recorded, not asserted (with SG
/// off, GSO copies without marking the request, OBSERVED-6.18 F; forwarding keeps zero-copy
/// from 6.17 on).
fn usage_paths(ctx: &mut Ctx) -> Result<Verdict> {
    let mut table = std::collections::BTreeMap::new();
    for path in [
        Path::PairSgOff,
        Path::Forward,
        Path::ForwardDead,
        Path::DeadEndSgOff,
    ] {
        let topo = path.topology()?;
        let mut socks: Vec<(String, Socket, Option<Sink>, usize)> = Vec::new();
        if path.delivers() {
            for conn in [Conn::ALL[0], Conn::ALL[2]] {
                let (s, r) = support::connect(topo.as_ref(), conn)?;
                let len = if conn.proto == Proto::Tcp {
                    64 * 1024
                } else {
                    1000
                };
                socks.push((conn.to_string(), s, Some(Sink::start(r, false)?), len));
            }
        } else {
            let to = std::net::SocketAddr::new(topo.receiver().ip(Family::V4), 9);
            let s = sockets::udp_to(&topo.sender().ns, to)?;
            socks.push(("udp4".into(), s, None, 1000));
        }
        let senders: Vec<(String, &Socket, usize)> = socks
            .iter()
            .map(|(l, s, _, len)| (format!("{l}.{}", path.tag()), s, *len))
            .collect();
        for (label, copied) in usage_of(ctx, &format!("usage.{}", path.tag()), &senders)? {
            table.insert(label, if copied { "copied" } else { "zero-copy" });
        }
        for (_, s, sink, _) in socks {
            drop(s);
            if let Some(sink) = sink {
                sink.finish()?;
            }
        }
    }
    Ok(Verdict::pass(format!(
        "{} requests on 4 paths, each with its notification",
        table.len()
    )))
}
