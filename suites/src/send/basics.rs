//! The first promises of MSG_ZEROCOPY, over every variant:
//! opt-in (R1.1), the notification format (R2.1, R2.2) and the per-socket counter (R2.3).
//! packetdrill anchors: `basic.pkt` (ids 0 then 1), `closed.pkt` (a failed send takes no id).

use std::os::fd::AsFd;
use std::time::Duration;

use anyhow::{Context, Result};
use harness::sockets::{Family, Proto, Sink};
use harness::sys::errqueue::{self, ErrQueueEntry};
use harness::sys::zerocopy::{self, MSG_ZEROCOPY};

use super::flow::{self, await_ids, completions, show, Variant};
use crate::case::{Area, Case, Ctx};
use crate::model::completions::{check, check_format, IdWindow};
use crate::outcome::{expect, fail, fail_with, Verdict};
use crate::probes::io_errno;

pub fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for v in Variant::all() {
        let tag = v.tag();
        cases.push(Case::new(
            format!("send.opt_in.{tag}"),
            Area::Send,
            "MSG_ZEROCOPY without SO_ZEROCOPY is ignored: data sent, no notification, no id",
            v.requires(),
            move |ctx| opt_in(ctx, v),
        ));
        cases.push(Case::new(
            format!("send.format.{tag}"),
            Area::Send,
            "a notification is errno 0, origin ZEROCOPY, inclusive [lo, hi] in a RECVERR cmsg",
            v.requires(),
            move |ctx| format(ctx, v),
        ));
        cases.push(Case::new(
            format!("send.counter.{tag}"),
            Area::Send,
            "ids start at 0 per socket, one per successful call, none for failed or empty sends",
            v.requires(),
            move |ctx| counter(ctx, v),
        ));
    }
    cases
}

fn payload(v: Variant) -> Vec<u8> {
    vec![0x5a; if v.proto == Proto::Udp { 1000 } else { 4096 }]
}

/// R1.1: without the option the flag is silently ignored; turning the option on afterwards
/// shows that the ignored send took no id (the first zero-copy id is still 0).
fn opt_in(ctx: &mut Ctx, v: Variant) -> Result<Verdict> {
    let net = v.build()?;
    let f = net.flow(false)?;
    let _sink = Sink::start(f.receiver.try_clone()?, false)?;
    let fd = f.sender.as_fd();
    let opt = zerocopy::get_so_zerocopy(fd).context("getsockopt(SO_ZEROCOPY)")?;
    expect(opt == 0, || {
        format!("a new socket reports SO_ZEROCOPY={opt}, not 0")
    })?;
    let data = payload(v);
    let n = zerocopy::send_zc(fd, &data, 0).map_err(|e| {
        fail(format!(
            "send(MSG_ZEROCOPY) without SO_ZEROCOPY failed: {}",
            io_errno(&e)
        ))
    })?;
    expect(n == data.len(), || {
        format!("send without SO_ZEROCOPY sent {n} of {} bytes", data.len())
    })?;
    let woke = errqueue::wait_err(fd, Duration::from_millis(200))?;
    let early = errqueue::drain(fd)?;
    if woke || !early.is_empty() {
        return Err(fail_with(
            "a notification arrived for a send made without SO_ZEROCOPY",
            format!("error queue: {early:?}"),
        ));
    }
    zerocopy::set_so_zerocopy(fd, true).context("setsockopt(SO_ZEROCOPY, 1)")?;
    zerocopy::send_zc(fd, &data, 0).context("the first zero-copy send")?;
    let got = completions(&await_ids(&f.sender, 1)?);
    expect(got.len() == 1 && got[0].lo == 0 && got[0].hi == 0, || {
        format!(
            "after one ignored and one real zero-copy send, expected the notification [0,0]; got {}",
            show(&got)
        )
    })?;
    ctx.observe("copied", got[0].copied);
    Ok(Verdict::pass(
        "flag ignored without the option; the first real id was 0",
    ))
}

/// R2.1/R2.2: one send gives exactly one well-formed notification.
fn format(ctx: &mut Ctx, v: Variant) -> Result<Verdict> {
    let net = v.build()?;
    let f = net.flow(true)?;
    let _sink = Sink::start(f.receiver.try_clone()?, false)?;
    zerocopy::send_zc(f.sender.as_fd(), &payload(v), 0).context("zero-copy send")?;
    let entries = await_ids(&f.sender, 1)?;
    let [entry] = entries.as_slice() else {
        return Err(fail_with(
            format!(
                "one send produced {} error-queue entries, not one",
                entries.len()
            ),
            format!("{entries:?}"),
        ));
    };
    check_entry(v, entry)?;
    let ee = entry.ee.expect("checked by check_entry");
    expect(ee.info == 0 && ee.data == 0, || {
        format!(
            "the first send of a fresh socket was reported as [{}, {}], not [0, 0]",
            ee.info, ee.data
        )
    })?;
    expect(
        errqueue::read_one(f.sender.as_fd(), errqueue::FULL_CONTROL_LEN)?.is_none(),
        || "a second entry followed the only notification".into(),
    )?;
    ctx.observe("copied", ee.code & 1 != 0);
    ctx.observe(
        "cmsg",
        format!(
            "level {} type {}",
            entry.cmsg_level.unwrap_or(-1),
            entry.cmsg_type.unwrap_or(-1)
        ),
    );
    Ok(Verdict::pass("one notification, well formed, [0, 0]"))
}

/// The cmsg level/type fit the family, nothing was truncated, and the fixed fields are as
/// R2.2 says. IPv6 sockets may report at SOL_IP (msg_zerocopy.c accepts both).
fn check_entry(v: Variant, e: &ErrQueueEntry) -> Result<()> {
    expect(!e.truncated(), || {
        format!(
            "MSG_CTRUNC with a {}-byte control buffer",
            errqueue::FULL_CONTROL_LEN
        )
    })?;
    expect(e.msg_flags & libc::MSG_ERRQUEUE != 0, || {
        format!("msg_flags {:#x} lacks MSG_ERRQUEUE", e.msg_flags)
    })?;
    let level_type = (e.cmsg_level.unwrap_or(-1), e.cmsg_type.unwrap_or(-1));
    let v4 = (libc::SOL_IP, libc::IP_RECVERR);
    let v6 = (libc::SOL_IPV6, libc::IPV6_RECVERR);
    let ok = match v.family {
        Family::V4 => level_type == v4,
        Family::V6 => level_type == v6 || level_type == v4,
    };
    expect(ok, || {
        format!(
            "cmsg level/type {level_type:?} is not RECVERR for {:?}",
            v.family
        )
    })?;
    let ee =
        e.ee.ok_or_else(|| fail("the RECVERR cmsg carried no sock_extended_err"))?;
    check_format(&ee).map_err(|m| fail_with(m.to_string(), format!("{ee:?}")))
}

/// R2.3: a fresh socket starts at 0; failed sends and (TCP) empty sends take no id.
fn counter(ctx: &mut Ctx, v: Variant) -> Result<Verdict> {
    let net = v.build()?;
    let f = net.flow(true)?;
    let _sink = Sink::start(f.receiver.try_clone()?, false)?;
    let fd = f.sender.as_fd();
    let data = payload(v);
    let mut log = Vec::new();
    let mut ids = 0u64;
    let mut send = |what: &str, r: std::io::Result<usize>, takes_id: bool| -> Result<()> {
        log.push(format!(
            "{what}: {}",
            r.as_ref().map(|n| n.to_string()).unwrap_or_else(io_errno)
        ));
        match (r, takes_id) {
            (Ok(_), true) => ids += 1,
            (Ok(n), false) if n > 0 => {
                return Err(fail(format!(
                    "{what} was expected to fail but sent {n} bytes"
                )))
            }
            (Err(e), true) => return Err(anyhow::Error::from(e).context(what.to_string())),
            _ => {}
        }
        Ok(())
    };
    send("zero-copy send", zerocopy::send_zc(fd, &data, 0), true)?;
    send(
        "send from an unreadable buffer (EFAULT)",
        zerocopy::send_from_inaccessible(fd, data.len(), MSG_ZEROCOPY),
        false,
    )?;
    match v.proto {
        Proto::Tcp => {
            send("zero-length send", zerocopy::send_zc(fd, &[], 0), false)?;
        }
        Proto::Udp => {
            // One byte over the largest UDP payload: 65535 minus the IPv4 and UDP headers
            // for IPv4; the IPv6 payload length does not count the IPv6 header.
            let limit = if v.family == Family::V4 {
                65_507
            } else {
                65_527
            };
            let big = vec![0u8; limit + 1];
            send(
                "oversized datagram (EMSGSIZE)",
                zerocopy::send_zc(fd, &big, 0),
                false,
            )?;
        }
    }
    send("zero-copy send", zerocopy::send_zc(fd, &data, 0), true)?;
    let got = completions(&await_ids(&f.sender, ids)?);
    check(IdWindow::new(0, ids), &got, true).map_err(|viol| {
        fail_with(
            format!("ids after failed and empty sends: {viol}"),
            format!("calls: {}\ncompletions: {}", log.join("; "), show(&got)),
        )
    })?;
    if v.proto == Proto::Tcp {
        ctx.observe("unconnected_send_errno", unconnected_send(&net)?);
    }
    ctx.observe("calls", log);
    Ok(Verdict::pass(format!(
        "{ids} successful calls took ids 0..{}",
        ids - 1
    )))
}

/// packetdrill closed.pkt: a zero-copy send on an unconnected TCP socket fails (EPIPE on
/// modern kernels, EINVAL before ~5.0) and takes no id: after connecting, the first id is 0.
fn unconnected_send(net: &flow::Net) -> Result<String> {
    let s = net.topo.sender();
    let r = net.topo.receiver();
    let listener = harness::sockets::tcp_listener(&r.ns, r.ip(net.variant.family))?;
    let to = harness::sockets::local_addr(&listener)?;
    let sock = harness::sockets::socket_in(&s.ns, net.variant.family, Proto::Tcp)?;
    zerocopy::set_so_zerocopy(sock.as_fd(), true)?;
    let errno = match zerocopy::send_zc(sock.as_fd(), &[1u8; 100], libc::MSG_NOSIGNAL) {
        Ok(n) => {
            return Err(fail(format!(
                "a send on an unconnected TCP socket sent {n} bytes"
            )))
        }
        Err(e) => io_errno(&e),
    };
    sock.connect_timeout(&to.into(), harness::sockets::IO_TIMEOUT)?;
    let accepted = harness::sockets::accept(&listener, harness::sockets::IO_TIMEOUT)?;
    let _sink = Sink::start(accepted, false)?;
    zerocopy::send_zc(sock.as_fd(), &[1u8; 100], 0)?;
    let got = completions(&await_ids(&sock, 1)?);
    expect(got.len() == 1 && got[0].lo == 0 && got[0].hi == 0, || {
        format!(
            "after a failed unconnected send ({errno}), the first id was not 0: {}",
            show(&got)
        )
    })?;
    Ok(errno)
}
