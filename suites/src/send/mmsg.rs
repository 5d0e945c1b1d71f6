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

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use harness::sockets::{Family, Proto};
use harness::sys::errqueue::{self, ErrQueueEntry};
use harness::sys::mmsg;
use harness::sys::zerocopy::MSG_ZEROCOPY;
use harness::topology::{Pair, PairConfig};
use socket2::Socket;

use super::flow::{covered, show, COMPLETION_WAIT, SO_ZEROCOPY_UDP};
use super::mapped::{self, Addressing};
use super::wire::{self, DatagramReader};
use crate::case::{Area, Case, Ctx};
use crate::model::completions::{check, IdWindow};
use crate::outcome::{expect, fail_with, Verdict};
use crate::probes::{errno_name, NET_ADMIN, VETH};

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
    }
    ctx.observe("after_partial_batch", &facts);
    Ok(Verdict::pass(
        "four messages, four ids; a partial batch took one; an oversized batch none; all \
         read with recvmmsg, datagrams intact",
    ))
}
