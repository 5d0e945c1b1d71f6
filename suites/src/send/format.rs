//! The notification format (SEMANTICS.md R2.1, R2.2): one send gives one error-queue
//! message with `MSG_ERRQUEUE`, a RECVERR cmsg at the family's level (or SOL_IP on IPv6, as
//! msg_zerocopy.c accepts), `ee_errno` 0, origin ZEROCOPY, type 0, code 0 or COPIED, and the
//! inclusive range `[ee_info, ee_data]` = `[0, 0]` on a fresh socket. An empty queue answers
//! EAGAIN at once. packetdrill anchor: `basic.pkt`; kselftest: msg_zerocopy.c's checks of
//! origin, errno, cmsg level and MSG_CTRUNC.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use harness::sockets::{Family, Proto, Sink};
use harness::sys::errqueue::{self, ErrQueueEntry};

use super::flow::{await_ids, zc_send, Variant};
use crate::case::{Area, Case, Ctx};
use crate::model::completions::check_format;
use crate::outcome::{expect, fail, fail_with, Verdict};

pub fn cases() -> Vec<Case> {
    Variant::all()
        .into_iter()
        .map(|v| {
            Case::new(
                format!("send.format.{}", v.tag()),
                Area::Send,
                "a notification is errno 0, origin ZEROCOPY, inclusive [lo, hi] in a RECVERR cmsg",
                v.requires(),
                move |ctx| format(ctx, v),
            )
        })
        .collect()
}

/// R2.1/R2.2: one send gives exactly one well-formed notification.
fn format(ctx: &mut Ctx, v: Variant) -> Result<Verdict> {
    let net = v.build()?;
    let f = net.flow(true)?;
    let _sink = Sink::start(f.receiver.try_clone()?, false)?;
    let data = vec![0x5a; if v.proto == Proto::Udp { 1000 } else { 4096 }];
    zc_send(&f.sender, &data, false).context("zero-copy send")?;
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
    // R2.1: an empty error queue answers EAGAIN at once, even on a blocking socket (this
    // one blocks for up to 5 s on ordinary reads).
    let started = Instant::now();
    let next = errqueue::read_one(f.sender.as_fd(), errqueue::FULL_CONTROL_LEN)?;
    let waited = started.elapsed();
    expect(next.is_none(), || {
        format!("a second entry followed the only notification: {next:?}")
    })?;
    expect(waited < Duration::from_secs(1), || {
        format!("reading the empty error queue of a blocking socket took {waited:?}")
    })?;
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
pub(super) fn check_entry(v: Variant, e: &ErrQueueEntry) -> Result<()> {
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
