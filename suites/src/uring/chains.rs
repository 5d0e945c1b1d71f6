//! Flags and request relations (send-zerocopy.c's `test_inet_send` flags, `test_async_addr`;
//! SEMANTICS.md R8.2): linked chains, linked timeouts, cancellation, POLL_FIRST, the
//! destination address copied at submission, and MSG_MORE corking across linked sends. In
//! every one a notification follows if and only if the first CQE carried F_MORE, exactly
//! once; `support::exchange_items` checks that on each stream.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::Duration;

use anyhow::{Context, Result};
use harness::sockets::{self, Family, Proto, Sink};
use harness::sys::uring::RECVSEND_POLL_FIRST;
use harness::sys::uring::{AuxOp, Dest, DestSlot, Payload, SendOp, SendRequest, SqeFlags};
use harness::topology::Loopback;
use socket2::Socket;

use super::collect;
use super::probes;
use super::support::{self, Conn, Item};
use crate::case::{Area, Case, Ctx};
use crate::model::uring_notif::{self, check_chain, Accepted, ChainMember};
use crate::outcome::{expect, fail_with, Stop, Verdict};
use crate::send::flow::Path;

const LINGER: Duration = Duration::from_millis(50);
const TCP4: Conn = Conn {
    proto: Proto::Tcp,
    family: Family::V4,
};
const UDP4: Conn = Conn {
    proto: Proto::Udp,
    family: Family::V4,
};

pub fn cases() -> Vec<Case> {
    let lo = || support::requires(Some(Path::Loopback), &[]);
    vec![
        Case::new(
            "uring.form.send_vectorized",
            Area::Uring,
            "SEND_ZC with IORING_SEND_VECTORIZED (an iovec array, the first of one byte) sends \
             exactly those bytes (send-zerocopy.c test_basic_send vec)",
            support::requires(Some(Path::Loopback), &[probes::SEND_VECTORIZED]),
            send_vectorized,
        ),
        Case::new(
            "uring.form.multi_iov_partial",
            Area::Uring,
            "a 1 MiB SENDMSG_ZC of four iovecs (a 1-byte first one) with MSG_WAITALL on TCP with a \
             64 KiB send buffer: partial sends advance through the iovecs, res is the full length, the bytes exact",
            support::requires(Some(Path::Loopback), &[probes::SENDMSG_ZC]),
            multi_iov_partial,
        ),
        Case::new(
            "uring.link.failed_head",
            Area::Uring,
            "a chain whose first SEND_ZC fails (EFAULT): the linked SEND_ZC/SENDMSG_ZC \
             complete with -ECANCELED, and each gets a notification iff its CQE had F_MORE",
            lo(),
            failed_head,
        ),
        Case::new(
            "uring.link.mixed_fixed",
            Area::Uring,
            "an IOSQE_IO_LINK chain mixing registered and ordinary buffers (SEND_ZC, \
             SENDMSG_ZC, plain SEND) delivers every byte in chain order",
            lo(),
            mixed_fixed,
        ),
        Case::new(
            "uring.link.timeout",
            Area::Uring,
            "a SEND_ZC stuck on a full TCP socket is cancelled by its linked timeout \
             (-ECANCELED, the timeout -ETIME), a notification iff F_MORE",
            lo(),
            link_timeout,
        ),
        Case::new(
            "uring.cancel.stuck_send",
            Area::Uring,
            "IORING_OP_ASYNC_CANCEL of a SEND_ZC stuck on a full TCP socket: -ECANCELED, a \
             notification iff F_MORE",
            lo(),
            cancel_stuck,
        ),
        Case::new(
            "uring.flags.poll_first",
            Area::Uring,
            "IORING_RECVSEND_POLL_FIRST on a writable socket sends everything inline and \
             under IOSQE_ASYNC; linked behind an IOSQE_ASYNC request (issued by io-wq in \
             blocking mode, which the man pages leave open) the result is recorded",
            lo(),
            poll_first,
        ),
        Case::new(
            "uring.udp.dest_copied_at_submit",
            Area::Uring,
            "unconnected UDP: the destination of SEND_ZC (addr2) and SENDMSG_ZC (msg_name) \
             is read at submission; overwriting it right after submit does not redirect the \
             datagram (send-zerocopy.c test_async_addr)",
            lo(),
            dest_copied,
        ),
        Case::new(
            "uring.udp.cork_linked",
            Area::Uring,
            "five linked UDP zero-copy sends, MSG_MORE on all but the last, fixed and \
             ordinary buffers mixed, arrive as one datagram of exactly their bytes",
            lo(),
            cork_linked,
        ),
    ]
}

/// Records F_MORE and the notification of each labelled request.
fn observe_more(ctx: &mut Ctx, acc: &Accepted, labels: &[(&str, u64)]) -> String {
    labels
        .iter()
        .map(|(label, ud)| {
            let o = acc.outcomes[ud];
            ctx.observe(format!("{label}.f_more"), o.more);
            format!(
                "{label} {}{}",
                support::show_res(o.res.unwrap_or(i32::MIN)),
                if o.more { " +notif" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a notification after a cancelled chain member is the kernel's, appended to the
/// model's evidence. The rule is io_uring_enter(2) (IORING_OP_SEND_ZC: "the user must check
/// for IORING_CQE_F_MORE rather than relying on the result") and io_uring_prep_send_zc(3)
/// ("if that CQE has IORING_CQE_F_MORE set ... then a second notification CQE will be
/// posted"); liburing issue #1462 (2025) states it as "iff F_MORE".
const FAILED_LINK_PATH: &str = "kernel path (read in the 7.3 source): io_send_zc_prep \
    allocates the notification at prep and sets REQ_F_NEED_CLEANUP; the head's failure runs \
    io_fail_links -> io_req_tw_fail_links (timeout.c), which completes each linked request with \
    io_req_set_res(link, -ECANCELED, 0), no F_MORE, and never calls the opcode's ->fail hook \
    io_sendrecv_fail (net.c), the one that adds F_MORE to a failing SEND_ZC whose notification \
    is pending; freeing the request then runs io_send_zc_cleanup, whose io_notif_flush posts \
    the notification anyway. The cancelled request's only CQE says no notification follows, \
    and one does.";

/// Adds `note` to the evidence of a model `fail` (other errors pass through).
fn with_note(e: anyhow::Error, note: &str) -> anyhow::Error {
    match e.downcast::<Stop>() {
        Ok(Stop::Fail { reason, evidence }) => {
            fail_with(reason, format!("{}\n{note}", evidence.unwrap_or_default()))
        }
        Ok(other) => other.into(),
        Err(e) => e,
    }
}

/// A chain whose head fails: the links are cancelled. The stream rule is checked as
/// everywhere; a notification for a cancelled link whose CQE lacked F_MORE is a kernel
/// `fail` (`#2:-125, ... #2:n` on 6.1, 6.18 and 7.3), with the code path in the evidence
/// (`FAILED_LINK_PATH`).
fn failed_head(ctx: &mut Ctx) -> Result<Verdict> {
    let lo = Loopback::new(None)?;
    let p = sockets::udp_pair(&lo.host.ns, &lo.host.ns, lo.host.ip(Family::V4))?;
    let _sink = Sink::start(p.server, false)?;
    let mut ring = support::ring()?;
    ring.register_buffers(&[4096])?;
    let data = support::pattern(100);
    let mut head = SendRequest::new(SendOp::SendZc, Payload::Raw { addr: 1, len: 100 }, 1);
    head.sqe_flags |= SqeFlags::IO_LINK;
    let mut fixed = support::request(SendOp::SendZc, &data, 100, true, false, 2);
    fixed.sqe_flags |= SqeFlags::IO_LINK;
    let tail_op = if support::has_sendmsg_zc() {
        SendOp::SendMsgZc
    } else {
        SendOp::SendZc
    };
    let tail = support::request(tail_op, &data, 100, false, false, 3);
    let items = vec![
        Item::Send(&p.client, head),
        Item::Send(&p.client, fixed),
        Item::Send(&p.client, tail),
    ];
    let (acc, cqes) = support::exchange_items(&mut ring, &items, LINGER, |_| {})
        .map_err(|e| with_note(e, FAILED_LINK_PATH))?;
    let members: Vec<ChainMember> = (1..=3)
        .map(|ud| {
            let res = acc.outcomes[&ud].res.expect("complete stream");
            ChainMember {
                user_data: ud,
                res,
                breaks: res < 0,
            }
        })
        .collect();
    check_chain(&members).map_err(|v| fail_with(v.to_string(), uring_notif::show(&cqes)))?;
    let head_res = members[0].res;
    expect(head_res == -libc::EFAULT, || {
        format!(
            "the head at address 1 completed with {} (CQEs: {})",
            support::show_res(head_res),
            uring_notif::show(&cqes)
        )
    })?;
    let summary = observe_more(
        ctx,
        &acc,
        &[("head", 1), ("linked_fixed", 2), ("linked_tail", 3)],
    );
    Ok(Verdict::pass(summary))
}

fn mixed_fixed(ctx: &mut Ctx) -> Result<Verdict> {
    let lo = Loopback::new(None)?;
    let (s, r) = support::connect(&lo, TCP4)?;
    let rx = collect::Stream::start(r)?;
    let mut ring = support::ring()?;
    let len = 48 * 1024;
    ring.register_buffers(&[4 * len])?;
    let data = support::pattern(4 * len);
    ring.fixed_mut(0).copy_from_slice(&data);
    let fixed_msg = support::offered(probes::SENDMSG_ZC_FIXED);
    let sendmsg = support::has_sendmsg_zc();
    // Four pieces of the pattern, each from a different form, at odd offsets.
    let pieces = [
        (13usize, len),
        (len + 7, len),
        (2 * len + 1, len),
        (3 * len, len - 1),
    ];
    let mut reqs = Vec::new();
    let mut forms = Vec::new();
    for (i, &(start, n)) in pieces.iter().enumerate() {
        let ud = i as u64 + 1;
        let (op, payload, form) = match i {
            0 => (
                SendOp::SendZc,
                Payload::Fixed {
                    index: 0,
                    offset: start,
                    len: n,
                },
                "send_zc_fixed",
            ),
            1 => (
                SendOp::SendZc,
                Payload::Owned {
                    data: data.clone(),
                    start,
                    len: n,
                },
                "send_zc",
            ),
            2 if fixed_msg => (
                SendOp::SendMsgZc,
                Payload::FixedVectored {
                    index: 0,
                    segments: vec![(start, 1), (start + 1, n - 1)],
                },
                "sendmsg_zc_fixed",
            ),
            2 if sendmsg => (
                SendOp::SendMsgZc,
                Payload::Vectored {
                    data: data.clone(),
                    segments: vec![(start, 1), (start + 1, n - 1)],
                },
                "sendmsg_zc",
            ),
            2 => (
                SendOp::SendZc,
                Payload::Fixed {
                    index: 0,
                    offset: start,
                    len: n,
                },
                "send_zc_fixed",
            ),
            _ => (
                SendOp::Send,
                Payload::Owned {
                    data: data.clone(),
                    start,
                    len: n,
                },
                "send",
            ),
        };
        let mut req = SendRequest::new(op, payload, ud);
        req.msg_flags |= libc::MSG_WAITALL;
        if i + 1 < pieces.len() {
            req.sqe_flags |= SqeFlags::IO_LINK;
        }
        reqs.push(req);
        forms.push(form);
    }
    let items: Vec<Item<'_>> = reqs.iter().map(|r| Item::Send(&s, r.clone())).collect();
    let (acc, cqes) = support::exchange_items(&mut ring, &items, Duration::ZERO, |_| {})?;
    for (i, &(_, n)) in pieces.iter().enumerate() {
        let res = acc.outcomes[&(i as u64 + 1)].res.expect("complete stream");
        expect(res == n as i32, || {
            format!(
                "{} in the chain completed with {} of {n} bytes (CQEs: {})",
                forms[i],
                support::show_res(res),
                uring_notif::show(&cqes)
            )
        })?;
    }
    drop(ring);
    drop(s);
    let got = rx.finish()?;
    let want: Vec<u8> = pieces
        .iter()
        .flat_map(|&(start, n)| data[start..start + n].iter().copied())
        .collect();
    expect(got == want, || {
        let at = got.iter().zip(&want).position(|(a, b)| a != b);
        format!(
            "the receiver got {} bytes, {} expected in chain order; first difference at {:?}",
            got.len(),
            want.len(),
            at
        )
    })?;
    ctx.observe("forms", &forms);
    Ok(Verdict::pass(format!(
        "{} bytes in chain order from {}",
        want.len(),
        forms.join(", ")
    )))
}

/// A TCP connection whose sender cannot send: small buffers, a receiver that never reads,
/// and the send buffer filled with ordinary sends.
fn stuck_tcp(lo: &Loopback) -> Result<(Socket, Socket)> {
    let l = sockets::tcp_listener(&lo.host.ns, lo.host.ip(Family::V4))?;
    let to = sockets::local_addr(&l)?;
    let s = sockets::tcp_connect(&lo.host.ns, to, |s| s.set_send_buffer_size(4096))?;
    let r = sockets::accept(&l, sockets::IO_TIMEOUT)?;
    r.set_recv_buffer_size(4096)?;
    s.set_nonblocking(true)?;
    let chunk = vec![0u8; 64 * 1024];
    for _ in 0..10_000 {
        match std::io::Write::write(&mut &s, &chunk) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                s.set_nonblocking(false)?;
                return Ok((s, r));
            }
            Err(e) => return Err(e).context("filling the send buffer"),
        }
    }
    anyhow::bail!("the send buffer never filled")
}

fn link_timeout(ctx: &mut Ctx) -> Result<Verdict> {
    let lo = Loopback::new(None)?;
    let (s, _r) = stuck_tcp(&lo)?;
    let mut ring = support::ring()?;
    let data = support::pattern(64 * 1024);
    let mut send = support::request(SendOp::SendZc, &data, data.len(), false, false, 1);
    send.sqe_flags |= SqeFlags::IO_LINK;
    let items = vec![
        Item::Send(&s, send),
        Item::Aux(
            AuxOp::LinkTimeout {
                after: Duration::from_millis(50),
            },
            SqeFlags::empty(),
            2,
        ),
    ];
    let (acc, cqes) = support::exchange_items(&mut ring, &items, LINGER, |_| {})?;
    let send_res = acc.outcomes[&1].res.expect("complete stream");
    let timeout_res = acc.outcomes[&2].res.expect("complete stream");
    expect(
        send_res == -libc::ECANCELED && timeout_res == -libc::ETIME,
        || {
            format!(
                "the stuck send completed with {} and its linked timeout with {} (expected \
                 ECANCELED and ETIME; CQEs: {})",
                support::show_res(send_res),
                support::show_res(timeout_res),
                uring_notif::show(&cqes)
            )
        },
    )?;
    let summary = observe_more(ctx, &acc, &[("cancelled_send", 1)]);
    Ok(Verdict::pass(summary))
}

fn cancel_stuck(ctx: &mut Ctx) -> Result<Verdict> {
    let lo = Loopback::new(None)?;
    let (s, _r) = stuck_tcp(&lo)?;
    let mut ring = support::ring()?;
    let data = support::pattern(64 * 1024);
    let send = support::request(SendOp::SendZc, &data, data.len(), false, false, 1);
    let items = vec![
        Item::Send(&s, send),
        Item::Aux(AuxOp::Cancel { target: 1 }, SqeFlags::empty(), 2),
    ];
    let (acc, cqes) = support::exchange_items(&mut ring, &items, LINGER, |_| {})?;
    let send_res = acc.outcomes[&1].res.expect("complete stream");
    let cancel_res = acc.outcomes[&2].res.expect("complete stream");
    expect(send_res == -libc::ECANCELED && cancel_res == 0, || {
        format!(
            "the stuck send completed with {} and the cancellation with {} (expected \
             ECANCELED and 0; CQEs: {})",
            support::show_res(send_res),
            support::show_res(cancel_res),
            uring_notif::show(&cqes)
        )
    })?;
    let summary = observe_more(ctx, &acc, &[("cancelled_send", 1)]);
    Ok(Verdict::pass(summary))
}

/// How each POLL_FIRST setup of `uring.flags.poll_first` is held to the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PollFirstRule {
    /// Documented: POLL_FIRST skips the first attempt and arms io_uring's internal poll,
    /// and "if poll does indicate that data can be sent, the operation will proceed"
    /// (io_uring_enter(2), io_uring_prep_send(3)). A writable socket must send everything.
    Firm,
    /// Recorded only. A request without IOSQE_ASYNC linked behind one that io-wq ran is
    /// issued by the io-wq worker in blocking mode: io_wq_submit_work arms poll only for
    /// REQ_F_FORCE_ASYNC requests, and io_sendmsg_zc returns -EAGAIN for POLL_FIRST
    /// whenever the request is not REQ_F_POLLED, so the -EAGAIN reaches the CQE
    /// (io_uring.c, net.c, 6.18 to 7.3). The man pages describe POLL_FIRST only through
    /// the internal poll of the non-blocking path and say nothing of how or in which mode a
    /// chain member is issued after an io-wq predecessor, so they leave room here.
    Observed,
}

/// The setups whose `Firm` result was not the full length: empty means pass. `Observed`
/// setups never count, whatever they returned.
fn poll_first_wrong(results: &[(&str, PollFirstRule, i32, String)], want: i32) -> Vec<String> {
    results
        .iter()
        .filter(|(_, rule, res, _)| *rule == PollFirstRule::Firm && *res != want)
        .map(|(label, _, res, cqes)| format!("{label}: {} (CQEs: {cqes})", support::show_res(*res)))
        .collect()
}

/// Inline and IOSQE_ASYNC POLL_FIRST sends on a writable socket must send everything (a
/// `fail` otherwise); the one linked behind an IOSQE_ASYNC request is an observed fact
/// (`linked_behind_async.res`, `linked_behind_async.sent_all`), see [`PollFirstRule`].
fn poll_first(ctx: &mut Ctx) -> Result<Verdict> {
    let lo = Loopback::new(None)?;
    let (s, r) = support::connect(&lo, TCP4)?;
    let _sink = Sink::start(r, false)?;
    let data = support::pattern(1000);
    let req = |ud: u64, poll: bool, flags: SqeFlags| {
        let mut r = support::request(SendOp::SendZc, &data, data.len(), false, false, ud);
        if poll {
            r.ioprio |= RECVSEND_POLL_FIRST;
        }
        r.sqe_flags |= flags;
        r
    };
    // (label, how it is judged, the batch, the request that must have sent everything)
    let setups: Vec<(&str, PollFirstRule, Vec<SendRequest>, u64)> = vec![
        (
            "inline",
            PollFirstRule::Firm,
            vec![req(1, true, SqeFlags::empty())],
            1,
        ),
        (
            "async",
            PollFirstRule::Firm,
            vec![req(1, true, SqeFlags::ASYNC)],
            1,
        ),
        (
            "linked_behind_async",
            PollFirstRule::Observed,
            vec![
                req(1, false, SqeFlags::ASYNC | SqeFlags::IO_LINK),
                req(2, true, SqeFlags::empty()),
            ],
            2,
        ),
    ];
    let want = data.len() as i32;
    let mut results = Vec::new();
    for (label, rule, batch, ud) in setups {
        let mut ring = support::ring()?;
        let items: Vec<Item<'_>> = batch.into_iter().map(|r| Item::Send(&s, r)).collect();
        let (acc, cqes) = support::exchange_items(&mut ring, &items, Duration::ZERO, |_| {})?;
        let res = acc.outcomes[&ud].res.expect("complete stream");
        ctx.observe(format!("{label}.res"), support::show_res(res));
        if rule == PollFirstRule::Observed {
            ctx.observe(format!("{label}.sent_all"), res == want);
        }
        results.push((label, rule, res, uring_notif::show(&cqes)));
    }
    // A link flag on the last entry of a submission leaves the chain open, which the uAPI
    // does not define: what the kernel does is recorded only.
    let mut ring = support::ring()?;
    let items = vec![Item::Send(&s, req(1, true, SqeFlags::IO_LINK))];
    let (acc, _) = support::exchange_items(&mut ring, &items, Duration::ZERO, |_| {})?;
    let open = acc.outcomes[&1].res.expect("complete stream");
    ctx.observe("open_chain.res", support::show_res(open));
    let wrong = poll_first_wrong(&results, want);
    if !wrong.is_empty() {
        return Err(fail_with(
            "a POLL_FIRST SEND_ZC on a writable socket did not send everything",
            wrong.join("\n"),
        ));
    }
    Ok(Verdict::pass(
        results
            .iter()
            .map(|(label, rule, res, _)| {
                let recorded = if *rule == PollFirstRule::Observed {
                    " (recorded)"
                } else {
                    ""
                };
                format!("{label}: {}{recorded}", support::show_res(*res))
            })
            .collect::<Vec<_>>()
            .join(", "),
    ))
}

fn dest_copied(ctx: &mut Ctx) -> Result<Verdict> {
    let lo = Loopback::new(None)?;
    let ip = lo.host.ip(Family::V4);
    let bind = |_: ()| -> Result<(Socket, SocketAddr)> {
        let r = sockets::socket_in(&lo.host.ns, Family::V4, Proto::Udp)?;
        r.bind(&SocketAddr::new(ip, 0).into())?;
        let a = sockets::local_addr(&r)?;
        Ok((r, a))
    };
    let (ra, a) = bind(())?;
    let (rb, b) = bind(())?;
    let tx = sockets::socket_in(&lo.host.ns, Family::V4, Proto::Udp)?;
    let mut ring = support::ring()?;
    let data = support::pattern(100);
    let mut ops = vec![("send_zc", SendOp::SendZc)];
    if support::has_sendmsg_zc() {
        ops.push(("sendmsg_zc", SendOp::SendMsgZc));
    }
    let mut items = Vec::new();
    let mut slots = Vec::new();
    for (i, (_, op)) in ops.iter().enumerate() {
        let ud = 2 * i as u64 + 1;
        // The timeout holds the send back until after the overwrite; HARDLINK keeps the
        // chain going although the timeout ends with -ETIME.
        items.push(Item::Aux(
            AuxOp::Timeout {
                after: Duration::from_millis(30),
                count: 0,
            },
            SqeFlags::IO_HARDLINK,
            ud,
        ));
        let slot = DestSlot::new(a);
        let mut req = support::request(*op, &data, 100, false, false, ud + 1);
        req.dest = Dest::Slot(slot.clone());
        slots.push(slot);
        items.push(Item::Send(&tx, req));
    }
    let (acc, cqes) = support::exchange_items(&mut ring, &items, LINGER, |_| {
        for s in &slots {
            s.set(b);
        }
    })?;
    for (i, (label, _)) in ops.iter().enumerate() {
        let res = acc.outcomes[&(2 * i as u64 + 2)]
            .res
            .expect("complete stream");
        expect(res == 100, || {
            format!(
                "{label} to an address overwritten after submit completed with {} (CQEs: {})",
                support::show_res(res),
                uring_notif::show(&cqes)
            )
        })?;
    }
    let at_a = collect::Datagrams::start(ra)?.finish(ops.len())?;
    let at_b = collect::Datagrams::start(rb)?.finish(0)?;
    ctx.observe("datagrams_at_submitted_address", at_a.len());
    ctx.observe("datagrams_at_overwritten_address", at_b.len());
    expect(at_a.len() == ops.len() && at_b.is_empty(), || {
        format!(
            "{} datagrams reached the address given at submission and {} the address written \
             after it; the kernel must have copied the address when the request was submitted",
            at_a.len(),
            at_b.len()
        )
    })?;
    expect(at_a.iter().all(|d| d[..] == data[..]), || {
        "a datagram's bytes differ from what was sent".to_string()
    })?;
    Ok(Verdict::pass(format!(
        "{} datagrams went to the address given at submission",
        at_a.len()
    )))
}

fn cork_linked(ctx: &mut Ctx) -> Result<Verdict> {
    let lo = Loopback::new(None)?;
    let (s, r) = support::connect(&lo, UDP4)?;
    let rx = collect::Datagrams::start(r)?;
    let mut ring = support::ring()?;
    let total = 1000;
    ring.register_buffers(&[4096])?;
    let data = support::pattern(4096);
    ring.fixed_mut(0).copy_from_slice(&data);
    let chunk = total / 5;
    let sendmsg = support::has_sendmsg_zc();
    let mut items = Vec::new();
    let mut forms = Vec::new();
    for i in 0..5 {
        let ud = i as u64 + 1;
        let start = i * chunk;
        let (op, payload, form) = match i {
            1 | 3 => (
                SendOp::SendZc,
                Payload::Fixed {
                    index: 0,
                    offset: start,
                    len: chunk,
                },
                "fixed",
            ),
            2 if sendmsg => (
                SendOp::SendMsgZc,
                Payload::Owned {
                    data: data.clone(),
                    start,
                    len: chunk,
                },
                "sendmsg_zc",
            ),
            _ => (
                SendOp::SendZc,
                Payload::Owned {
                    data: data.clone(),
                    start,
                    len: chunk,
                },
                "send_zc",
            ),
        };
        let mut req = SendRequest::new(op, payload, ud);
        if i < 4 {
            req.msg_flags |= libc::MSG_MORE;
            req.sqe_flags |= SqeFlags::IO_LINK;
        }
        items.push(Item::Send(&s, req));
        forms.push(form);
    }
    let (acc, cqes) = support::exchange_items(&mut ring, &items, Duration::ZERO, |_| {})?;
    for i in 0..5u64 {
        let res = acc.outcomes[&(i + 1)].res.expect("complete stream");
        expect(res == chunk as i32, || {
            format!(
                "corked request {} completed with {} (CQEs: {})",
                i + 1,
                support::show_res(res),
                uring_notif::show(&cqes)
            )
        })?;
    }
    let got = rx.finish(1)?;
    ctx.observe("forms", &forms);
    ctx.observe("datagrams", got.len());
    expect(got.len() == 1 && got[0][..] == data[..total], || {
        format!(
            "the receiver got {} datagrams of {:?} bytes; one of {total} bytes, the five \
             pieces in order, was sent",
            got.len(),
            got.iter().map(Vec::len).collect::<Vec<_>>()
        )
    })?;
    let _ = s.as_fd();
    Ok(Verdict::pass(format!(
        "one datagram of {total} bytes from {}",
        forms.join(", ")
    )))
}

/// Sends one request on a fresh loopback TCP connection (with `sndbuf` as SO_SNDBUF if
/// given) and returns (res, received bytes, the CQEs as evidence).
fn one_tcp(req: SendRequest, sndbuf: Option<usize>) -> Result<(i32, Vec<u8>, String)> {
    let lo = Loopback::new(None)?;
    let (s, r) = support::connect(&lo, TCP4)?;
    if let Some(n) = sndbuf {
        s.set_send_buffer_size(n).context("SO_SNDBUF")?;
    }
    let rx = collect::Stream::start(r)?;
    let mut ring = support::ring()?;
    let ud = req.user_data;
    let items = vec![Item::Send(&s, req)];
    let (acc, cqes) = support::exchange_items(&mut ring, &items, Duration::ZERO, |_| {})?;
    drop(ring);
    drop(s);
    let got = rx.finish()?;
    let res = acc.outcomes[&ud].res.expect("complete stream");
    Ok((res, got, uring_notif::show(&cqes)))
}

/// The bytes of `segments` of `data`, in order.
fn gather(data: &[u8], segments: &[(usize, usize)]) -> Vec<u8> {
    let mut v = Vec::new();
    for &(o, n) in segments {
        v.extend_from_slice(&data[o..o + n]);
    }
    v
}

fn send_vectorized(ctx: &mut Ctx) -> Result<Verdict> {
    let data = support::pattern(8192);
    let segments = vec![(7, 1), (100, 50), (4000, 3000)];
    let want = gather(&data, &segments);
    let req = SendRequest::new(
        SendOp::SendZc,
        Payload::Vectored {
            data: data.clone(),
            segments,
        },
        1,
    );
    let (res, got, cqes) = one_tcp(req, None)?;
    ctx.observe("res", support::show_res(res));
    expect(res == want.len() as i32 && got == want, || {
        format!(
            "a vectored SEND_ZC of {} bytes completed with {} and the receiver got {} bytes \
             (equal: {}; CQEs: {cqes})",
            want.len(),
            support::show_res(res),
            got.len(),
            got == want
        )
    })?;
    Ok(Verdict::pass(format!(
        "{} bytes from 3 iovecs, exact",
        want.len()
    )))
}

fn multi_iov_partial(ctx: &mut Ctx) -> Result<Verdict> {
    // A 64 KiB send buffer makes the 1 MiB send advance in many partial steps.
    let total = 1 << 20;
    let data = support::pattern(total + 64);
    let segments = vec![
        (3, 1),
        (5, 3 << 17),
        ((3 << 17) + 11, 1 << 18),
        ((5 << 17) + 13, (3 << 17) - 1),
    ];
    let want = gather(&data, &segments);
    let mut req = SendRequest::new(
        SendOp::SendMsgZc,
        Payload::Vectored {
            data: data.clone(),
            segments,
        },
        1,
    );
    req.msg_flags |= libc::MSG_WAITALL;
    let (res, got, cqes) = one_tcp(req, Some(64 * 1024))?;
    ctx.observe("res", support::show_res(res));
    expect(res == want.len() as i32, || {
        format!(
            "MSG_WAITALL SENDMSG_ZC of {} bytes completed with {} (CQEs: {cqes})",
            want.len(),
            support::show_res(res)
        )
    })?;
    expect(got == want, || {
        format!(
            "the receiver got {} bytes, {} sent; first difference at {:?}",
            got.len(),
            want.len(),
            got.iter().zip(&want).position(|(a, b)| a != b)
        )
    })?;
    Ok(Verdict::pass(format!(
        "{} bytes from 4 iovecs, exact",
        want.len()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results(inline: i32, linked: i32) -> Vec<(&'static str, PollFirstRule, i32, String)> {
        vec![
            ("inline", PollFirstRule::Firm, inline, String::new()),
            ("async", PollFirstRule::Firm, 1000, String::new()),
            (
                "linked_behind_async",
                PollFirstRule::Observed,
                linked,
                String::new(),
            ),
        ]
    }

    #[test]
    fn poll_first_fails_when_a_firm_setup_does_not_send_everything() {
        let wrong = poll_first_wrong(&results(-libc::EAGAIN, 1000), 1000);
        assert_eq!(wrong.len(), 1);
        assert!(wrong[0].starts_with("inline: EAGAIN"), "{wrong:?}");
        assert_eq!(poll_first_wrong(&results(999, 1000), 1000).len(), 1);
    }

    #[test]
    fn poll_first_only_records_the_io_wq_linked_setup() {
        assert!(poll_first_wrong(&results(1000, -libc::EAGAIN), 1000).is_empty());
        assert!(poll_first_wrong(&results(1000, 1000), 1000).is_empty());
    }

    #[test]
    fn a_model_fail_gets_the_kernel_path_in_its_evidence() {
        let e = with_note(fail_with("broke", "CQEs: #2:-125, #2:n"), "the path");
        match e.downcast::<Stop>() {
            Ok(Stop::Fail { reason, evidence }) => {
                assert_eq!(reason, "broke");
                assert_eq!(evidence.as_deref(), Some("CQEs: #2:-125, #2:n\nthe path"));
            }
            other => panic!("not a fail: {other:?}"),
        }
        let plain = with_note(anyhow::anyhow!("setup"), "the path");
        assert!(plain.downcast_ref::<Stop>().is_none());
    }
}
