//! How zero-copy sends fail (SEMANTICS.md R8.3, R8.4, §12.7), each on its own socket, each
//! stream checked against the two-completion model: an error that carries `F_MORE` must
//! still be followed by exactly one notification, one without `F_MORE` by nothing. Whether
//! `F_MORE` was set is recorded.

use std::os::fd::AsFd;
use std::time::Duration;

use anyhow::{Context, Result};
use harness::sockets::{self, Family, Proto, Sink};
use harness::sys::errqueue;
use harness::sys::uring::{Dest, Payload, SendOp, SendRequest, SqeFlags};
use harness::sys::zerocopy;
use harness::topology::Loopback;
use socket2::{Domain, Socket, Type};

use super::probes;
use super::support::{self, Conn};
use crate::case::{Area, Case, Ctx};
use crate::model::uring_notif::{show, Accepted};
use crate::outcome::{expect, Verdict};
use crate::probes::errno_name;
use crate::send::flow::Path;

/// Time after the last expected CQE during which nothing more may arrive.
const LINGER: Duration = Duration::from_millis(50);

pub fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "uring.error.unix_socket",
            Area::Uring,
            "SEND_ZC/SENDMSG_ZC on an AF_UNIX socket fail with EOPNOTSUPP (6.0.3+), the \
             protocol kept",
            support::requires(None, &[]),
            unix_socket,
        ),
        Case::new(
            "uring.error.skip_success",
            Area::Uring,
            "IOSQE_CQE_SKIP_SUCCESS on SEND_ZC is refused with one EINVAL CQE, no F_MORE, \
             nothing after",
            support::requires(Some(Path::Loopback), &[]),
            skip_success,
        ),
        Case::new(
            "uring.error.unknown_flag",
            Area::Uring,
            "unknown ioprio bits (1<<7, 1<<15, all 16 bits) on SEND_ZC are refused with EINVAL, \
             a notification iff F_MORE (send-zerocopy.c test_send_faults)",
            support::requires(Some(Path::Loopback), &[]),
            unknown_flag,
        ),
        Case::new(
            "uring.error.fixed_index",
            Area::Uring,
            "a registered-buffer index out of range (none registered, or past the last) \
             gives EFAULT, while an index in range sends",
            support::requires(Some(Path::Loopback), &[]),
            fixed_index,
        ),
        Case::new(
            "uring.error.bad_buffer",
            Area::Uring,
            "a buffer address the kernel cannot read (SEND_ZC at address 1, a SENDMSG_ZC iovec \
             at address 1) gives EFAULT, a notification iff F_MORE (send-zerocopy.c \
             test_send_faults)",
            support::requires(Some(Path::Loopback), &[]),
            bad_buffer,
        ),
        Case::new(
            "uring.error.bad_dest_addr",
            Area::Uring,
            "a destination-address pointer the kernel cannot read gives EFAULT, a \
             notification iff F_MORE (send-zerocopy.c test_send_faults)",
            support::requires(Some(Path::Loopback), &[]),
            bad_dest_addr,
        ),
        Case::new(
            "uring.error.null_msghdr_async",
            Area::Uring,
            "SENDMSG_ZC with a NULL msghdr under IOSQE_ASYNC and MSG_WAITALL completes (no \
             hang), a notification iff F_MORE (send-zerocopy.c test_invalid_zc)",
            support::requires(Some(Path::Loopback), &[probes::SENDMSG_ZC]),
            null_msghdr_async,
        ),
        Case::new(
            "uring.error.fixed_range",
            Area::Uring,
            "SENDMSG_ZC from a registered buffer with an iovec outside the registration (one \
             byte before, one past the end, NULL, 0xffffffff) fails, eight empty iovecs give \
             res <= 0, one byte then an empty iovec sends the byte or fails (recorded), a \
             notification iff F_MORE (vec-regbuf.c test_fail)",
            support::requires(Some(Path::Loopback), &[probes::SENDMSG_ZC_FIXED]),
            fixed_range,
        ),
        Case::new(
            "uring.error.unconnected_tcp",
            Area::Uring,
            "SEND_ZC on a TCP socket that never connected fails with EPIPE",
            support::requires(None, &[]),
            unconnected_tcp,
        ),
        Case::new(
            "uring.so_zerocopy_not_needed.tcp4.lo",
            Area::Uring,
            "SEND_ZC works on a socket without SO_ZEROCOPY and leaves its error queue empty",
            support::requires(Some(Path::Loopback), &[]),
            so_zerocopy_not_needed,
        ),
    ]
}

/// A connected UDP pair on a fresh loopback; the receiver is drained in the background.
fn udp_lo() -> Result<(Loopback, Socket, Sink)> {
    let lo = Loopback::new(None)?;
    let p = sockets::udp_pair(&lo.host.ns, &lo.host.ns, lo.host.ip(Family::V4))?;
    let sink = Sink::start(p.server, false)?;
    Ok((lo, p.client, sink))
}

/// Checks that every request failed with `errno`, records `F_MORE` and the notification per
/// label, and returns a one-line summary.
fn expect_errno(
    ctx: &mut Ctx,
    labels: &[&str],
    reqs: &[(&Socket, SendRequest)],
    acc: &Accepted,
    cqes: &[harness::sys::uring::Cqe],
    errno: i32,
) -> Result<String> {
    let mut seen = Vec::new();
    for (label, (_, req)) in labels.iter().zip(reqs) {
        let o = acc.outcomes[&req.user_data];
        let res = o.res.expect("complete stream");
        expect(res == -errno, || {
            format!(
                "{label}: expected {}, got {} (CQEs: {})",
                errno_name(errno),
                support::show_res(res),
                show(cqes)
            )
        })?;
        ctx.observe(format!("{label}.f_more"), o.more);
        ctx.observe(format!("{label}.notification"), o.notif.is_some());
        seen.push(format!(
            "{label}: {}{}",
            errno_name(errno),
            if o.more { " +notif" } else { "" }
        ));
    }
    Ok(seen.join("; "))
}

fn unix_socket(ctx: &mut Ctx) -> Result<Verdict> {
    let (a, b) = Socket::pair(Domain::UNIX, Type::STREAM, None).context("socketpair")?;
    let _sink = Sink::start(b, false)?;
    let mut ring = support::ring()?;
    let data = support::pattern(100);
    let mut labels = vec!["send_zc"];
    let mut reqs = vec![(
        &a,
        support::request(SendOp::SendZc, &data, 100, false, false, 1),
    )];
    if support::has_sendmsg_zc() {
        labels.push("sendmsg_zc");
        reqs.push((
            &a,
            support::request(SendOp::SendMsgZc, &data, 100, false, false, 2),
        ));
    }
    let (acc, cqes) = support::exchange(&mut ring, &reqs, LINGER)?;
    let summary = expect_errno(ctx, &labels, &reqs, &acc, &cqes, libc::EOPNOTSUPP)?;
    Ok(Verdict::pass(summary))
}

fn skip_success(ctx: &mut Ctx) -> Result<Verdict> {
    let (_lo, s, _sink) = udp_lo()?;
    let mut ring = support::ring()?;
    let data = support::pattern(100);
    let mut req = support::request(SendOp::SendZc, &data, 100, false, false, 1);
    req.sqe_flags = SqeFlags::SKIP_SUCCESS;
    let reqs = vec![(&s, req)];
    let (acc, cqes) = support::exchange(&mut ring, &reqs, LINGER)?;
    let summary = expect_errno(ctx, &["send_zc"], &reqs, &acc, &cqes, libc::EINVAL)?;
    expect(cqes.len() == 1 && !cqes[0].more(), || {
        format!(
            "a request refused at preparation must complete once, without F_MORE; CQEs: {}",
            show(&cqes)
        )
    })?;
    Ok(Verdict::pass(format!("{summary}, a single CQE")))
}

fn unknown_flag(ctx: &mut Ctx) -> Result<Verdict> {
    let (_lo, s, _sink) = udp_lo()?;
    let mut ring = support::ring()?;
    let data = support::pattern(100);
    let mut reqs = Vec::new();
    for (i, bits) in [1u16 << 7, 1 << 15, u16::MAX].into_iter().enumerate() {
        let mut req = support::request(SendOp::SendZc, &data, 100, false, false, i as u64 + 1);
        req.ioprio = bits;
        reqs.push((&s, req));
    }
    let (acc, cqes) = support::exchange(&mut ring, &reqs, LINGER)?;
    let summary = expect_errno(
        ctx,
        &["bit7", "bit15", "all_bits"],
        &reqs,
        &acc,
        &cqes,
        libc::EINVAL,
    )?;
    Ok(Verdict::pass(summary))
}

fn fixed_index(ctx: &mut Ctx) -> Result<Verdict> {
    let (_lo, s, _sink) = udp_lo()?;
    let data = support::pattern(100);
    let fixed = |index: u16, ud: u64| {
        SendRequest::new(
            SendOp::SendZc,
            Payload::Fixed {
                index,
                offset: 0,
                len: 100,
            },
            ud,
        )
    };
    // A ring with no registered buffers at all.
    let mut bare = support::ring()?;
    let reqs = vec![(&s, fixed(0, 1))];
    let (acc, cqes) = support::exchange(&mut bare, &reqs, LINGER)?;
    let none = expect_errno(ctx, &["none_registered"], &reqs, &acc, &cqes, libc::EFAULT)?;

    // One registered buffer: index 0 works, 1 and 5 do not.
    let mut ring = support::ring()?;
    ring.register_buffers(&[4096])?;
    ring.fixed_mut(0)[..100].copy_from_slice(&data);
    let reqs = vec![(&s, fixed(0, 1)), (&s, fixed(1, 2)), (&s, fixed(5, 3))];
    let (acc, cqes) = support::exchange(&mut ring, &reqs, LINGER)?;
    let ok = acc.outcomes[&1].res.expect("complete stream");
    expect(ok == 100, || {
        format!(
            "a send from registered buffer 0 (in range) completed with {} (CQEs: {})",
            support::show_res(ok),
            show(&cqes)
        )
    })?;
    let past = expect_errno(
        ctx,
        &["index_1_of_1", "index_5_of_1"],
        &reqs[1..],
        &acc,
        &cqes,
        libc::EFAULT,
    )?;
    Ok(Verdict::pass(format!("{none}; {past}; index 0 sent")))
}

fn unconnected_tcp(ctx: &mut Ctx) -> Result<Verdict> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).context("socket(AF_INET, TCP)")?;
    let mut ring = support::ring()?;
    let data = support::pattern(100);
    let reqs = vec![(
        &s,
        support::request(SendOp::SendZc, &data, 100, false, false, 1),
    )];
    let (acc, cqes) = support::exchange(&mut ring, &reqs, LINGER)?;
    let summary = expect_errno(ctx, &["send_zc"], &reqs, &acc, &cqes, libc::EPIPE)?;
    Ok(Verdict::pass(summary))
}

fn so_zerocopy_not_needed(ctx: &mut Ctx) -> Result<Verdict> {
    let lo = Loopback::new(None)?;
    let conn = Conn {
        proto: Proto::Tcp,
        family: Family::V4,
    };
    let (s, r) = support::connect(&lo, conn)?;
    let sink = Sink::start(r, true)?;
    let opt = zerocopy::get_so_zerocopy(s.as_fd()).context("getsockopt(SO_ZEROCOPY)")?;
    expect(opt == 0, || {
        format!("a fresh socket reports SO_ZEROCOPY={opt}")
    })?;
    let len = 64 * 1024;
    let data = support::pattern(len);
    let mut ring = support::ring()?;
    let reqs = vec![(
        &s,
        support::request(SendOp::SendZc, &data, len, false, false, 1),
    )];
    let (acc, cqes) = support::exchange(&mut ring, &reqs, Duration::ZERO)?;
    let o = acc.outcomes[&1];
    let res = o.res.expect("complete stream");
    expect(res > 0, || {
        format!(
            "SEND_ZC without SO_ZEROCOPY failed: {} (CQEs: {})",
            support::show_res(res),
            show(&cqes)
        )
    })?;
    ctx.observe("f_more", o.more);
    let queued = errqueue::drain(s.as_fd())?;
    expect(queued.is_empty(), || {
        format!(
            "io_uring left {} entries on the socket's error queue",
            queued.len()
        )
    })?;
    drop(s);
    let got = sink.finish()?;
    expect(
        got.len() == res as usize && got[..] == data[..res as usize],
        || {
            format!(
                "the completion reported {res} bytes, the receiver got {} (or other bytes)",
                got.len()
            )
        },
    )?;
    Ok(Verdict::pass(format!(
        "{res} bytes sent and received without SO_ZEROCOPY{}",
        if o.more { ", notification posted" } else { "" }
    )))
}

/// A request over `payload` with `op`.
fn raw_request(op: SendOp, payload: Payload, user_data: u64) -> SendRequest {
    SendRequest::new(op, payload, user_data)
}

fn bad_buffer(ctx: &mut Ctx) -> Result<Verdict> {
    let (_lo, s, _sink) = udp_lo()?;
    let mut ring = support::ring()?;
    let bad = Payload::Raw { addr: 1, len: 100 };
    let mut labels = vec!["send_zc"];
    let mut reqs = vec![(&s, raw_request(SendOp::SendZc, bad.clone(), 1))];
    if support::has_sendmsg_zc() {
        labels.push("sendmsg_zc");
        reqs.push((&s, raw_request(SendOp::SendMsgZc, bad, 2)));
    }
    let (acc, cqes) = support::exchange(&mut ring, &reqs, LINGER)?;
    let summary = expect_errno(ctx, &labels, &reqs, &acc, &cqes, libc::EFAULT)?;
    Ok(Verdict::pass(summary))
}

fn bad_dest_addr(ctx: &mut Ctx) -> Result<Verdict> {
    let (_lo, s, _sink) = udp_lo()?;
    let mut ring = support::ring()?;
    let data = support::pattern(100);
    let bad = Dest::Raw {
        addr: 1,
        len: std::mem::size_of::<libc::sockaddr_in6>() as u32,
    };
    let mut labels = vec!["send_zc"];
    let mut req = support::request(SendOp::SendZc, &data, 100, false, false, 1);
    req.dest = bad.clone();
    let mut reqs = vec![(&s, req)];
    if support::has_sendmsg_zc() {
        labels.push("sendmsg_zc");
        let mut req = support::request(SendOp::SendMsgZc, &data, 100, false, false, 2);
        req.dest = bad;
        reqs.push((&s, req));
    }
    let (acc, cqes) = support::exchange(&mut ring, &reqs, LINGER)?;
    let summary = expect_errno(ctx, &labels, &reqs, &acc, &cqes, libc::EFAULT)?;
    Ok(Verdict::pass(summary))
}

fn null_msghdr_async(ctx: &mut Ctx) -> Result<Verdict> {
    let lo = Loopback::new(None)?;
    let conn = Conn {
        proto: Proto::Tcp,
        family: Family::V4,
    };
    let (s, r) = support::connect(&lo, conn)?;
    let _sink = Sink::start(r, false)?;
    let mut ring = support::ring()?;
    let data = support::pattern(1);
    let mut req = support::request(SendOp::SendMsgZc, &data, 1, false, false, 1);
    req.null_msghdr = true;
    req.msg_flags |= libc::MSG_WAITALL;
    req.sqe_flags |= SqeFlags::ASYNC;
    let reqs = vec![(&s, req)];
    // The protocol check inside `exchange` is the promise: one completion, and a
    // notification iff it carried F_MORE; a hang would be a missing completion.
    let (acc, _cqes) = support::exchange(&mut ring, &reqs, LINGER)?;
    let o = acc.outcomes[&1];
    let res = o.res.expect("complete stream");
    ctx.observe("res", support::show_res(res));
    ctx.observe("f_more", o.more);
    Ok(Verdict::pass(format!(
        "completed with {}{}",
        support::show_res(res),
        if o.more {
            ", then its notification"
        } else {
            ", no F_MORE, nothing after"
        }
    )))
}

/// What a fixed SENDMSG_ZC of `fixed_range`'s entry `label` may complete with: every range
/// outside the registration fails; eight empty iovecs send nothing (vec-regbuf.c allows 0);
/// one byte plus an empty iovec sends that byte or fails.
fn fixed_range_ok(label: &str, res: i32) -> bool {
    match label {
        "empty_iovecs" => res <= 0,
        "empty_among_data" => res < 0 || res == 1,
        _ => res < 0,
    }
}

fn fixed_range(ctx: &mut Ctx) -> Result<Verdict> {
    let (_lo, s, _sink) = udp_lo()?;
    let mut ring = support::ring()?;
    ring.register_buffers(&[8 * 4096])?;
    let (base, size) = ring.fixed_range(0).context("the registered buffer")?;
    let cases: Vec<(&str, Vec<(usize, usize)>)> = vec![
        ("underflow", vec![(base - 1, 1)]),
        ("overflow", vec![(base + size, 1)]),
        ("null", vec![(0, 1)]),
        ("all_ones", vec![(0xffff_ffff, 1)]),
        ("empty_iovecs", vec![(base, 0); 8]),
        // One byte, then an empty iovec: no man page says whether a registered vector may
        // hold empty entries; 6.15 to 7.3 refuse it with EFAULT (io_vec_fill_bvec). Either
        // the byte goes or the request fails: recorded, and the property avoids the form.
        ("empty_among_data", vec![(base, 1), (base + 4099, 0)]),
    ];
    let reqs: Vec<(&Socket, SendRequest)> = cases
        .iter()
        .enumerate()
        .map(|(i, (_, iovecs))| {
            (
                &s,
                SendRequest::new(
                    SendOp::SendMsgZc,
                    Payload::FixedAt {
                        index: 0,
                        iovecs: iovecs.clone(),
                    },
                    i as u64 + 1,
                ),
            )
        })
        .collect();
    let (acc, cqes) = support::exchange(&mut ring, &reqs, LINGER)?;
    let mut seen = Vec::new();
    for (i, (label, _)) in cases.iter().enumerate() {
        let o = acc.outcomes[&(i as u64 + 1)];
        let res = o.res.expect("complete stream");
        let ok = fixed_range_ok(label, res);
        expect(ok, || {
            format!(
                "{label}: completed with {} (CQEs: {})",
                support::show_res(res),
                show(&cqes)
            )
        })?;
        ctx.observe(format!("{label}.res"), support::show_res(res));
        ctx.observe(format!("{label}.f_more"), o.more);
        seen.push(format!("{label}: {}", support::show_res(res)));
    }
    Ok(Verdict::pass(seen.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::fixed_range_ok;

    #[test]
    fn fixed_range_rejects_a_send_outside_the_registration() {
        assert!(fixed_range_ok("overflow", -libc::EFAULT));
        assert!(!fixed_range_ok("overflow", 1));
        assert!(!fixed_range_ok("null", 0));
        assert!(fixed_range_ok("empty_iovecs", 0));
        assert!(!fixed_range_ok("empty_iovecs", 1));
        assert!(fixed_range_ok("empty_among_data", -libc::EFAULT));
        assert!(fixed_range_ok("empty_among_data", 1));
        assert!(!fixed_range_ok("empty_among_data", 0));
        assert!(!fixed_range_ok("empty_among_data", 4100));
    }
}
