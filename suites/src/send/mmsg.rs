//! `sendmmsg` with MSG_ZEROCOPY, and the error queue read with `recvmmsg` (msg_zerocopy.rst:
//! the flag works with "send (or sendto, sendmsg, sendmmsg)", and "multiple outstanding
//! packets can be read at once using the recvmmsg call").
//!
//! `send.sendmmsg.udp.pair`, IPv4 and IPv6: a batch of four datagrams takes four ids, one
//! per message; a batch whose second message is too large stops there, returns 1, and only
//! the first message takes an id; a batch that fails at its first message fails the call
//! and takes none. Every notification is read with `recvmmsg(MSG_ERRQUEUE)` and judged like
//! a `recvmsg` one; together they cover the ids exactly once, and the receiver gets exactly
//! the datagrams the kernel took. What SO_ERROR says after the partial batch, and how many
//! messages each recvmmsg returned, are recorded.
//!
//! Consecutive completions merge into one queued notification, so to give recvmmsg several
//! messages at once an unconnected socket with IP_RECVERR sends a zero-copy datagram, a
//! copied one to a closed port (its ICMP error is queued between), and a second zero-copy
//! one. One recvmmsg call then reads the queue: the two completions must cover ids 0 and 1
//! once each; how many messages that call returned, and in what order the kinds came, are
//! recorded.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use harness::sockets::{self, Family, Proto};
use harness::sys::errqueue::SO_EE_ORIGIN_ZEROCOPY;
use harness::sys::errqueue::{self, ErrQueueEntry};
use harness::sys::mmsg;
use harness::sys::zerocopy::MSG_ZEROCOPY;
use harness::sys::{sockopt, zerocopy};
use harness::topology::{Pair, PairConfig};
use socket2::Socket;

use super::flow::{covered, show, COMPLETION_WAIT, SO_ZEROCOPY_UDP};
use super::mapped::{self, Addressing};
use super::wire::{self, DatagramReader};
use crate::case::{Area, Case, Ctx};
use crate::model::completions::{check, IdWindow};
use crate::outcome::{expect, fail_with, Verdict};
use crate::probes::{errno_name, io_errno, NET_ADMIN, VETH};

pub fn cases() -> Vec<Case> {
    vec![Case::new(
        "send.sendmmsg.udp.pair",
        Area::Send,
        "sendmmsg with MSG_ZEROCOPY takes one id per message sent, none past a failing \
         message; recvmmsg(MSG_ERRQUEUE) reads the notifications",
        vec![NET_ADMIN, VETH, SO_ZEROCOPY_UDP],
        sendmmsg_case,
    )]
}

/// Reads the error queue with recvmmsg until `ids` ids are covered or the wait is over.
/// Returns the entries and the number of messages each successful call returned.
pub fn read_with_recvmmsg(sock: &Socket, ids: u64) -> Result<(Vec<ErrQueueEntry>, Vec<usize>)> {
    let deadline = Instant::now() + COMPLETION_WAIT;
    let mut entries = Vec::new();
    let mut batches = Vec::new();
    while covered(&entries) < ids && Instant::now() < deadline {
        errqueue::wait_err(sock.as_fd(), Duration::from_millis(50))?;
        let got = mmsg::recvmmsg_errqueue(sock.as_fd(), 8).context("recvmmsg(MSG_ERRQUEUE)")?;
        if !got.is_empty() {
            batches.push(got.len());
            entries.extend(got);
        }
    }
    Ok((entries, batches))
}

/// Zero-copy, ICMP error, zero-copy in the queue, read with one recvmmsg. Returns how many
/// messages that call returned and the kinds read, in order.
fn mixed_queue(pair: &Pair, family: Family, seed: u64) -> Result<(usize, Vec<String>)> {
    let r = &pair.b;
    let receiver = sockets::socket_in(&r.ns, family, Proto::Udp)?;
    receiver.bind(&std::net::SocketAddr::new(r.ip(family), 0).into())?;
    let open = sockets::local_addr(&receiver)?;
    let closed = {
        let gone = sockets::socket_in(&r.ns, family, Proto::Udp)?;
        gone.bind(&std::net::SocketAddr::new(r.ip(family), 0).into())?;
        sockets::local_addr(&gone)?
    };
    let sender = sockets::socket_in(&pair.a.ns, family, Proto::Udp)?;
    let fd = sender.as_fd();
    zerocopy::set_so_zerocopy(fd, true)?;
    let (level, name) = match family {
        Family::V4 => (libc::SOL_IP, libc::IP_RECVERR),
        Family::V6 => (libc::SOL_IPV6, libc::IPV6_RECVERR),
    };
    sockopt::set_int(fd, level, name, 1).context("IP_RECVERR on")?;
    let reader = DatagramReader::start(receiver, 2, Duration::from_secs(1))?;
    let flags = MSG_ZEROCOPY | libc::MSG_NOSIGNAL;
    let settle = || std::thread::sleep(Duration::from_millis(15));
    let sends = [
        (wire::payload(seed, 10, 300), open, flags),
        (wire::payload(seed, 11, 300), closed, libc::MSG_NOSIGNAL),
        (wire::payload(seed, 12, 300), open, flags),
    ];
    let mut kinds_sent = Vec::new();
    for (data, to, f) in &sends {
        let mut r = sender.send_to_with_flags(data, &(*to).into(), *f);
        if let Err(e) = &r {
            // The ICMP error also sets the socket's pending error, which the next send
            // reports once (and clears); it is not the send's own failure.
            kinds_sent.push(format!("sendto answered {} once", io_errno(e)));
            r = sender.send_to_with_flags(data, &(*to).into(), *f);
        }
        r.with_context(|| format!("sendto {to}"))?;
        settle();
    }
    let first = mmsg::recvmmsg_errqueue(fd, 8).context("recvmmsg(MSG_ERRQUEUE)")?;
    let in_one_call = first.len();
    let mut all = first;
    all.extend(errqueue::drain(fd)?);
    let kinds = kinds_sent
        .into_iter()
        .chain(all.iter().map(|e| match e.ee {
            Some(ee) if ee.origin == SO_EE_ORIGIN_ZEROCOPY => {
                format!("zerocopy [{},{}]", ee.info, ee.data)
            }
            Some(ee) => format!("origin {} {}", ee.origin, errno_name(ee.errno as i32)),
            None => format!("no extended error, flags {:#x}", e.msg_flags),
        }))
        .collect::<Vec<_>>();
    let zc: Vec<ErrQueueEntry> = all
        .iter()
        .filter(|e| e.ee.is_some_and(|ee| ee.origin == SO_EE_ORIGIN_ZEROCOPY))
        .copied()
        .collect();
    let comps = mapped::judged(family, &zc)?;
    check(IdWindow::new(0, 2), &comps, true).map_err(|v| {
        fail_with(
            format!("{family:?}: two zero-copy datagrams around an ICMP error: {v}"),
            kinds.join("; "),
        )
    })?;
    let got = reader.finish()?;
    wire::check_datagrams(&[sends[0].0.clone(), sends[2].0.clone()], &got, false)
        .map_err(|m| fail_with(m, format!("{family:?}: datagrams sent with sendto")))?;
    Ok((in_one_call, kinds))
}

fn sendmmsg_case(ctx: &mut Ctx) -> Result<Verdict> {
    let pair = Pair::new(PairConfig::default())?;
    let mut facts = Vec::new();
    for (family, how) in [(Family::V4, Addressing::V4), (Family::V6, Addressing::V6)] {
        let (sender, receiver) = mapped::connect(&pair.a.ns, &pair.b, Proto::Udp, how)?;
        let dg = |i: u32, len: usize| wire::payload(ctx.seed ^ family as u64, i, len);
        let too_big = vec![0u8; 70_000];
        let batch: Vec<Vec<u8>> = (0..4).map(|i| dg(i, 100 + 100 * i as usize)).collect();
        let first_of_partial = dg(4, 500);
        let after = dg(5, 700);
        let reader = DatagramReader::start(receiver, 6, Duration::from_secs(1))?;
        let flags = MSG_ZEROCOPY | libc::MSG_NOSIGNAL;
        let fd = sender.as_fd();
        let refs: Vec<&[u8]> = batch.iter().map(|b| b.as_slice()).collect();
        let full = mmsg::sendmmsg(fd, &refs, flags).context("sendmmsg of four datagrams")?;
        expect(full == 4, || {
            format!("sendmmsg of four datagrams returned {full}")
        })?;
        let partial = mmsg::sendmmsg(fd, &[&first_of_partial, &too_big, &after], flags);
        expect(matches!(partial, Ok(1)), || {
            format!("a batch whose second message is too large returned {partial:?}, not 1")
        })?;
        let so_error = sender.take_error()?.map(|e| e.to_string());
        let failing = mmsg::sendmmsg(fd, &[&too_big], flags);
        let failing_errno = failing.as_ref().err().and_then(|e| e.raw_os_error());
        expect(failing_errno == Some(libc::EMSGSIZE), || {
            format!("a batch of one oversized message returned {failing:?}, not EMSGSIZE")
        })?;
        let last = mmsg::sendmmsg(fd, &[&after], flags).context("sendmmsg of one datagram")?;
        expect(last == 1, || {
            format!("sendmmsg of one datagram returned {last}")
        })?;
        let (entries, batches) = read_with_recvmmsg(&sender, 6)?;
        let comps = mapped::judged(family, &entries)?;
        check(IdWindow::new(0, 6), &comps, true).map_err(|v| {
            fail_with(
                format!("{family:?}: ids of 4 + 1 + 0 + 1 messages: {v}"),
                show(&comps),
            )
        })?;
        let mut sent = batch.clone();
        sent.push(first_of_partial);
        sent.push(after);
        let got = reader.finish()?;
        wire::check_datagrams(&sent, &got, false)
            .map_err(|m| fail_with(m, format!("{family:?}: datagrams sent by sendmmsg")))?;
        facts.push(serde_json::json!({
            "family": family,
            "so_error_after_partial_batch": so_error,
            "failing_batch_errno": failing_errno.map(errno_name),
        }));
        ctx.observe_timing(
            format!("recvmmsg_batches_{family:?}").to_lowercase(),
            &batches,
        );
        let (in_one_call, kinds) = mixed_queue(&pair, family, ctx.seed)?;
        ctx.observe_timing(
            format!("recvmmsg_mixed_{family:?}").to_lowercase(),
            serde_json::json!({ "messages_in_one_call": in_one_call, "kinds": kinds }),
        );
    }
    ctx.observe("after_partial_batch", &facts);
    Ok(Verdict::pass(
        "four messages, four ids; a partial batch took one; an oversized batch none; all \
         read with recvmmsg, datagrams intact",
    ))
}
