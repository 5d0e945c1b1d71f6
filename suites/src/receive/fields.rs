//! The fields of one call, on a socket with a known queue (SEMANTICS.md §7.4):
//! `recv_skip_hint` (what to read before the next attempt), `inq` (what is still queued),
//! the TLB clean hint flag, and the receive-timestamp cmsg of `msg_control`.

use std::os::fd::AsFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use harness::sys::socket_mmap::{self, SocketMapping};
use harness::sys::sockopt;
use harness::sys::tcp_zc_receive::{field_end, ZcCall, ZcReply, TCP_CMSG_TS, TLB_CLEAN_HINT};

use super::fixture::{answer, show, Queued, Spec};
use super::net::Path;
use super::probes::{struct_len, ZC_COPYBUF, ZC_INQ_ERR, ZC_MSG_CONTROL};
use crate::case::{Area, Case, Ctx};
use crate::model::zc_receive::{check, Call, CopyBuf, Region, Seen};
use crate::outcome::{expect, fail_with, Verdict};

pub fn cases() -> Vec<Case> {
    let with = |r| {
        let mut v = Path::Loopback.requires();
        v.push(r);
        v
    };
    vec![
        Case::new(
            "receive.fields.skip_hint",
            Area::Receive,
            "recv_skip_hint: the request when under a page, zero when all asked was mapped, \
             else what to read before mapping can go on",
            Path::Loopback.requires(),
            skip_hint,
        ),
        Case::new(
            "receive.fields.inq",
            Area::Receive,
            "inq is what is still queued after the call",
            with(ZC_INQ_ERR),
            inq,
        ),
        Case::new(
            "receive.fields.tlb_hint",
            Area::Receive,
            "TCP_RECEIVE_ZEROCOPY_FLAG_TLB_CLEAN_HINT is accepted, and data stays right with \
             the range unmapped or not",
            with(ZC_COPYBUF),
            tlb_hint,
        ),
        Case::new(
            "receive.fields.timestamp",
            Area::Receive,
            "with msg_control and SO_TIMESTAMPNS, a call that maps data writes a receive \
             timestamp cmsg",
            with(ZC_MSG_CONTROL),
            timestamp,
        ),
    ]
}

/// Makes one call at page `page_index` of `map`, checks it against the oracle, and takes
/// what it mapped and what it said to skip. Returns the reply.
pub fn step(
    q: &mut Queued,
    map: &SocketMapping,
    page_index: usize,
    requested: u32,
    flags: u32,
    log: &mut Vec<String>,
) -> Result<(ZcReply, Seen)> {
    let (rep, seen) = look(q, map, page_index, requested, flags, log)?;
    if rep.fields.length > 0 {
        q.take_mapped(
            map,
            page_index * socket_mmap::page_size(),
            rep.fields.length,
        )?;
    }
    if rep.fields.recv_skip_hint > 0 {
        q.take_recv(rep.fields.recv_skip_hint as usize)?;
    }
    Ok((rep, seen))
}

/// One call checked against the oracle, taking nothing (for calls that map nothing).
pub fn look(
    q: &mut Queued,
    map: &SocketMapping,
    page_index: usize,
    requested: u32,
    flags: u32,
    log: &mut Vec<String>,
) -> Result<(ZcReply, Seen)> {
    let page = socket_mmap::page_size();
    let optlen = struct_len();
    let inq = q.inq()?;
    let addr = map.addr() + (page_index * page) as u64;
    let r = ZcCall::new(addr, requested)
        .flags(flags)
        .call(q.receiver.as_fd(), optlen);
    log.push(format!(
        "at page {page_index}, asked {requested}, {inq} queued: {}",
        show(&r)
    ));
    let call = Call {
        page: page as u32,
        misalignment: 0,
        region: Region::Own {
            room: (map.len() - page_index * page) as u64,
        },
        requested,
        copybuf: CopyBuf::NONE,
        listening: false,
        inq,
        fin: false,
    };
    let seen = check(&call, &answer(&r, optlen >= field_end::INQ as i32))
        .map_err(|v| fail_with(v.to_string(), log.join("\n")))?;
    let rep = r.with_context(|| format!("call at page {page_index}"))?;
    Ok((rep, seen))
}

/// Follows the hints until nothing is queued; returns the bytes mapped.
fn drain(q: &mut Queued, map: &SocketMapping, log: &mut Vec<String>) -> Result<u64> {
    let mut mapped = 0;
    for _ in 0..10_000 {
        if q.inq()? == 0 {
            return Ok(mapped);
        }
        let (rep, _) = step(q, map, 0, map.len() as u32, 0, log)?;
        mapped += rep.fields.length as u64;
    }
    anyhow::bail!("10000 calls did not empty the queue")
}

fn skip_hint(ctx: &mut Ctx) -> Result<Verdict> {
    let page = socket_mmap::page_size();
    let mut q = Queued::new(Spec::mappable(64 * page))?;
    let map = q.map(16)?;
    let mut log = Vec::new();
    for requested in [100, page as u32 - 1, 0] {
        let before = q.inq()?;
        let (rep, _) = look(&mut q, &map, 0, requested, 0, &mut log)?;
        expect(rep.fields.length == 0, || {
            format!(
                "a request of {requested} bytes mapped {}",
                rep.fields.length
            )
        })?;
        expect(q.inq()? == before, || {
            format!(
                "a request of {requested} bytes consumed data:\n{}",
                log.join("\n")
            )
        })?;
    }
    // The last page of the mapping: room for one page only.
    step(&mut q, &map, 15, 1 << 20, 0, &mut log)?;
    let mapped = drain(&mut q, &map, &mut log)?;
    q.check
        .finish()
        .map_err(|v| fail_with(v.to_string(), log.join("\n")))?;
    ctx.observe("calls", &log);

    // A plain sender: record what the hints say about its pages.
    let mut plain = Queued::new(Spec {
        zc_sender: false,
        ..Spec::mappable(16 * page)
    })?;
    let pmap = plain.map(16)?;
    let mut plog = Vec::new();
    let pmapped = drain(&mut plain, &pmap, &mut plog)?;
    plain
        .check
        .finish()
        .map_err(|v| fail_with(v.to_string(), plog.join("\n")))?;
    ctx.observe("plain_sender_calls", &plog);
    ctx.observe(
        "plain_sender_fraction_mapped",
        pmapped as f64 / plain.len as f64,
    );
    Ok(Verdict::pass(format!(
        "hints followed to the end: {mapped} of {} bytes mapped (plain sender: {pmapped} of {})",
        q.len, plain.len
    )))
}

fn inq(ctx: &mut Ctx) -> Result<Verdict> {
    let page = socket_mmap::page_size();
    let mut q = Queued::new(Spec::mappable(8 * page + 100))?;
    let map = q.map(8)?;
    let mut log = Vec::new();
    // The oracle compares the inq field with SIOCINQ minus what the call took.
    step(&mut q, &map, 0, page as u32, 0, &mut log)?;
    step(&mut q, &map, 0, 2 * page as u32, 0, &mut log)?;
    // After a FIN: record how the FIN is counted.
    q.ends_with_fin()?;
    let remaining = q.inq()?;
    let r = ZcCall::new(map.addr(), page as u32).call(q.receiver.as_fd(), struct_len());
    log.push(format!("after the FIN, {remaining} queued: {}", show(&r)));
    if let Ok(rep) = &r {
        let left = remaining - rep.fields.length;
        ctx.observe(
            "inq_after_fin",
            match rep.fields.inq {
                x if x == left + 1 => "remaining + 1 (the FIN counts)".to_string(),
                x if x == left => "remaining".to_string(),
                x => format!("{x} with {left} remaining"),
            },
        );
        if rep.fields.length > 0 {
            q.take_mapped(&map, 0, rep.fields.length)?;
        }
    }
    ctx.observe("calls", &log);
    Ok(Verdict::pass(
        "inq matched what was still queued after every call",
    ))
}

fn tlb_hint(ctx: &mut Ctx) -> Result<Verdict> {
    let page = socket_mmap::page_size();
    let mut q = Queued::new(Spec::mappable(128 * page))?;
    let map = q.map(4)?;
    let mut log = Vec::new();
    let req = map.len() as u32;
    // 1. The range is empty: the promise holds.
    let mut mapped_with_pages_in_place = 0;
    let mut mapped_fresh = 0;
    for _ in 0..64 {
        let (rep, _) = step(&mut q, &map, 0, req, TLB_CLEAN_HINT, &mut log)?;
        if rep.fields.length > 0 {
            mapped_fresh = rep.fields.length;
            break;
        }
    }
    // 2. Pages are still mapped there: a broken promise the kernel must survive, and the
    //    bytes read afterwards must be the new ones.
    for _ in 0..64 {
        let (rep, _) = step(&mut q, &map, 0, req, TLB_CLEAN_HINT, &mut log)?;
        if rep.fields.length > 0 {
            mapped_with_pages_in_place = rep.fields.length;
            break;
        }
    }
    // 3. The way it is meant to be used: unmap, then promise.
    map.discard(0, map.len())?;
    step(&mut q, &map, 0, req, TLB_CLEAN_HINT, &mut log)?;
    // Unknown flag bits: recorded.
    let r = ZcCall::new(map.addr(), req)
        .flags(!TLB_CLEAN_HINT)
        .call(q.receiver.as_fd(), struct_len());
    log.push(format!("flags {:#x}: {}", !TLB_CLEAN_HINT, show(&r)));
    ctx.observe(
        "unknown_flag_bits",
        if r.is_ok() { "accepted" } else { "refused" },
    );
    if let Ok(rep) = &r {
        if rep.fields.length > 0 {
            q.take_mapped(&map, 0, rep.fields.length)?;
        }
        if rep.fields.recv_skip_hint > 0 {
            q.take_recv(rep.fields.recv_skip_hint as usize)?;
        }
    }
    ctx.observe("calls", &log);
    anyhow::ensure!(
        mapped_fresh > 0 && mapped_with_pages_in_place > 0,
        "nothing could be mapped, so the hint could not be shown working:\n{}",
        log.join("\n")
    );
    Ok(Verdict::pass(format!(
        "hint accepted: {mapped_fresh} bytes into an empty range, {mapped_with_pages_in_place} \
         over pages still mapped, all intact"
    )))
}

/// One cmsg header and its data, read out of a control buffer.
struct Cmsg {
    level: i32,
    kind: i32,
    data: Vec<u8>,
}

/// Walks the cmsgs in `used` bytes of a control buffer (struct cmsghdr: a usize length, then
/// level and type as ints; data and each header aligned to usize).
fn cmsgs(buf: &[u8]) -> Vec<Cmsg> {
    const W: usize = std::mem::size_of::<usize>();
    let hdr = W + 8;
    let mut out = Vec::new();
    let mut at = 0;
    while at + hdr <= buf.len() {
        let len = usize::from_ne_bytes(buf[at..at + W].try_into().expect("usize"));
        if len < hdr || at + len > buf.len() {
            break;
        }
        let level = i32::from_ne_bytes(buf[at + W..at + W + 4].try_into().expect("i32"));
        let kind = i32::from_ne_bytes(buf[at + W + 4..at + W + 8].try_into().expect("i32"));
        out.push(Cmsg {
            level,
            kind,
            data: buf[at + hdr..at + len].to_vec(),
        });
        at += len.next_multiple_of(W);
    }
    out
}

fn timestamp(ctx: &mut Ctx) -> Result<Verdict> {
    let page = socket_mmap::page_size();
    let mut q = Queued::new(Spec::mappable(0))?;
    sockopt::set_int(
        q.receiver.as_fd(),
        libc::SOL_SOCKET,
        libc::SO_TIMESTAMPNS,
        1,
    )
    .context("SO_TIMESTAMPNS on the receiver")?;
    // The kernel turns receive timestamps on asynchronously; let that settle before sending.
    std::thread::sleep(Duration::from_millis(50));
    let sender = q.sender.take().context("sender")?;
    let data = super::fixture::PATTERN.bytes(64 * page);
    let mut sent = 0;
    while sent < data.len() {
        sent += harness::sys::zerocopy::send_zc(sender.as_fd(), &data[sent..], 0)?;
    }
    q.sender = Some(sender);
    q.check.set_sent(data.len() as u64);
    super::sender::wait_queued(&q.receiver, data.len() as u32, super::fixture::ARRIVAL)?;
    let map = q.map(16)?;
    let mut log = Vec::new();
    let mut found = None;
    for _ in 0..64 {
        let inq = q.inq()?;
        if inq == 0 {
            break;
        }
        let mut control = vec![0u8; 256];
        let r = ZcCall::new(map.addr(), map.len() as u32)
            .msg_control(&mut control, TCP_CMSG_TS)
            .call(q.receiver.as_fd(), struct_len());
        log.push(format!("{inq} queued: {}", show(&r)));
        super::fixture::judge_own(&map, map.len() as u32, inq, false, &r, &log)?;
        let rep = r.context("zero-copy receive with msg_control")?;
        let f = rep.fields;
        let used = 256usize.saturating_sub(f.msg_controllen as usize);
        let got = cmsgs(&control[..used.min(256)]);
        if f.length > 0 {
            q.take_mapped(&map, 0, f.length)?;
        }
        if f.recv_skip_hint > 0 {
            q.take_recv(f.recv_skip_hint as usize)?;
        }
        if f.length > 0 || !got.is_empty() {
            found = Some((f, used, got));
            break;
        }
    }
    let (f, used, got) = found.context("nothing was mapped, so no timestamp could be asked for")?;
    ctx.observe("calls", &log);
    ctx.observe("control_bytes_used", used);
    let ts = got
        .iter()
        .find(|c| c.level == libc::SOL_SOCKET && c.kind == libc::SO_TIMESTAMPNS);
    let Some(ts) = ts else {
        return Err(fail_with(
            "a call that mapped data with msg_control and SO_TIMESTAMPNS wrote no SCM_TIMESTAMPNS cmsg",
            format!(
                "fields: {f:?}\ncmsgs: {:?}\n{}",
                got.iter().map(|c| (c.level, c.kind)).collect::<Vec<_>>(),
                log.join("\n")
            ),
        ));
    };
    expect(f.msg_flags & libc::MSG_CTRUNC as u32 == 0, || {
        format!("msg_flags {:#x} says the cmsg was cut", f.msg_flags)
    })?;
    let sec = i64::from_ne_bytes(ts.data[0..8].try_into().context("timespec")?);
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    ctx.observe_timing("timestamp_age_s", now - sec);
    expect((now - sec).abs() <= 60, || {
        format!("the timestamp says {sec} s, the clock {now} s: not a receive time")
    })?;
    // The input flag is validated, but is it needed? Record what a call without it writes.
    for _ in 0..64 {
        let inq = q.inq()?;
        if inq == 0 {
            break;
        }
        let mut control = vec![0u8; 256];
        let r = ZcCall::new(map.addr(), map.len() as u32)
            .msg_control(&mut control, 0)
            .call(q.receiver.as_fd(), struct_len());
        log.push(format!("{inq} queued, no TCP_CMSG_TS: {}", show(&r)));
        super::fixture::judge_own(&map, map.len() as u32, inq, false, &r, &log)?;
        let rep = r.context("zero-copy receive with msg_control, no TCP_CMSG_TS")?;
        let f = rep.fields;
        let used = 256usize.saturating_sub(f.msg_controllen as usize);
        let wrote = !cmsgs(&control[..used.min(256)]).is_empty();
        if f.length > 0 {
            q.take_mapped(&map, 0, f.length)?;
        }
        if f.recv_skip_hint > 0 {
            q.take_recv(f.recv_skip_hint as usize)?;
        }
        if f.length > 0 {
            ctx.observe("cmsg_written_without_tcp_cmsg_ts", wrote);
            break;
        }
    }
    Ok(Verdict::pass(
        "a call that mapped data wrote an SCM_TIMESTAMPNS cmsg with a current time",
    ))
}
