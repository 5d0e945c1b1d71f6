//! The copy buffer (`copybuf_address`, `copybuf_len`; SEMANTICS.md §7.4 steps 4 and 9): when
//! it can hold everything queued, everything is copied and nothing mapped; otherwise the
//! unaligned remainder after the mapped pages is copied into it. A buffer the kernel cannot
//! write makes the first kind of call fail with EFAULT and the second report -EFAULT in
//! `copybuf_len`; in neither case may a byte be lost.

use std::os::fd::AsFd;

use anyhow::Result;
use harness::sys::socket_mmap::{self, SocketMapping};
use harness::sys::tcp_zc_receive::{field_end, ZcCall};

use super::fixture::{answer, show, Queued, Spec};
use super::net::Path;
use super::probes::{struct_len, ZC_COPYBUF};
use crate::case::{Area, Case, Ctx};
use crate::model::stream::Source;
use crate::model::zc_receive::{check, Call, CopyBuf, Region, Seen};
use crate::outcome::{expect, fail_with, Verdict};

pub fn cases() -> Vec<Case> {
    let req = || {
        let mut v = Path::Loopback.requires();
        v.push(ZC_COPYBUF);
        v
    };
    vec![
        Case::new(
            "receive.copybuf.whole_queue",
            Area::Receive,
            "a copy buffer that can hold everything queued: every byte arrives; whether the kernel \
             copies it all (5.11+) or maps pages and copies the rest is recorded",
            req(),
            whole_queue,
        ),
        Case::new(
            "receive.copybuf.straggler",
            Area::Receive,
            "with a smaller copy buffer, the bytes after the mapped pages are copied into it",
            req(),
            straggler,
        ),
        Case::new(
            "receive.copybuf.faulting",
            Area::Receive,
            "a copy buffer the kernel cannot write: EFAULT (whole queue) or copybuf_len -EFAULT \
             (remainder), and no byte lost",
            req(),
            faulting,
        ),
    ]
}

/// One call with a copy buffer of `copybuf` bytes (or a null one claiming `null_len`),
/// checked by the oracle; takes what it mapped, copied and hinted.
fn call_with_copy(
    q: &mut Queued,
    map: &SocketMapping,
    requested: u32,
    copy: CopyKind,
    log: &mut Vec<String>,
) -> Result<(Seen, i32, u32, u32)> {
    let page = socket_mmap::page_size() as u32;
    let inq = q.inq()?;
    let optlen = struct_len();
    let (mut buf, copybuf) = match copy {
        CopyKind::Valid(n) => (
            vec![0u8; n],
            CopyBuf {
                len: n as i32,
                faults: false,
            },
        ),
        CopyKind::Null(len) => (Vec::new(), CopyBuf { len, faults: true }),
    };
    let r = {
        let c = ZcCall::new(map.addr(), requested);
        let mut c = match copy {
            CopyKind::Valid(_) => c.copybuf(&mut buf),
            CopyKind::Null(len) => c.null_copybuf(len),
        };
        c.call(q.receiver.as_fd(), optlen)
    };
    log.push(format!(
        "asked {requested}, {inq} queued, {copy:?}: {}",
        show(&r)
    ));
    let call = Call {
        page,
        misalignment: 0,
        region: Region::Own {
            room: map.len() as u64,
        },
        requested,
        copybuf,
        listening: false,
        inq,
        fin: false,
    };
    let seen = check(&call, &answer(&r, optlen >= field_end::INQ as i32))
        .map_err(|v| fail_with(v.to_string(), log.join("\n")))?;
    let Ok(rep) = r else {
        return Ok((seen, 0, 0, 0));
    };
    let f = rep.fields;
    if f.length > 0 {
        q.take_mapped(map, 0, f.length)?;
    }
    if f.copybuf_len > 0 {
        q.take(Source::Copybuf, &buf[..f.copybuf_len as usize])?;
    }
    if f.recv_skip_hint > 0 {
        q.take_recv(f.recv_skip_hint as usize)?;
    }
    Ok((seen, f.copybuf_len, f.length, f.recv_skip_hint))
}

#[derive(Debug, Clone, Copy)]
enum CopyKind {
    Valid(usize),
    Null(i32),
}

/// Takes whatever is left with recv(), so the stream check sees the whole stream.
fn rest(q: &mut Queued) -> Result<()> {
    let left = q.inq()? as usize;
    if left > 0 {
        q.take_recv(left)?;
    }
    Ok(())
}

fn whole_queue(ctx: &mut Ctx) -> Result<Verdict> {
    let page = socket_mmap::page_size();
    let mut log = Vec::new();
    let mut whole = Vec::new();
    for len in [1000, 3 * page + 100] {
        let mut q = Queued::new(Spec::mappable(len))?;
        let map = q.map(8)?;
        let (seen, copied, length, _) = call_with_copy(
            &mut q,
            &map,
            map.len() as u32,
            CopyKind::Valid(64 * 1024),
            &mut log,
        )?;
        // 5.11+ copies everything (CopiedAll); a kernel without that fast path maps what it
        // can and copies the rest (NoFastPath). Both are judged by the oracle above and by
        // the byte check below; which one this kernel took is recorded.
        match seen {
            Seen::CopiedAll => {
                expect(copied == len as i32 && length == 0, || {
                    format!("copied {copied} of {len}, mapped {length}")
                })?;
                whole.push(format!("{len} B: all copied"));
            }
            Seen::NoFastPath => {
                whole.push(format!("{len} B: {length} mapped, {copied} copied"));
            }
            other => {
                return Err(fail_with(
                    format!("{len} bytes queued, 64 KiB copy buffer: answered as {other:?}"),
                    log.join("\n"),
                ))
            }
        }
        rest(&mut q)?;
        q.check
            .finish()
            .map_err(|v| fail_with(v.to_string(), log.join("\n")))?;
    }
    ctx.observe("calls", &log);
    ctx.observe(
        "whole_queue_copied",
        whole.iter().all(|w| w.ends_with("all copied")),
    );
    Ok(Verdict::pass(format!(
        "1000 bytes and 3 pages + 100 bytes, all intact: {}",
        whole.join("; ")
    )))
}

fn straggler(ctx: &mut Ctx) -> Result<Verdict> {
    let page = socket_mmap::page_size();
    // One send of 3 pages and 100 bytes: one segment, whose tail cannot be mapped.
    let len = 3 * page + 100;
    let mut q = Queued::new(Spec {
        chunk: len,
        ..Spec::mappable(len)
    })?;
    let map = q.map(8)?;
    let mut log = Vec::new();
    let (seen, copied, length, skip) = call_with_copy(
        &mut q,
        &map,
        map.len() as u32,
        CopyKind::Valid(1000),
        &mut log,
    )?;
    rest(&mut q)?;
    q.check
        .finish()
        .map_err(|v| fail_with(v.to_string(), log.join("\n")))?;
    ctx.observe(
        "first_call",
        format!("{seen:?}: length {length}, copied {copied}, skip {skip}"),
    );
    ctx.observe("calls", &log);
    Ok(Verdict::pass(format!(
        "{length} bytes mapped and {copied} copied in one call, all intact"
    )))
}

fn faulting(ctx: &mut Ctx) -> Result<Verdict> {
    let page = socket_mmap::page_size();
    let mut log = Vec::new();
    // The control: the same whole-queue call with a buffer the kernel can write. It tells
    // whether this kernel has the fast path, so the faulting answer must be the matching one.
    let mut c = Queued::new(Spec::mappable(1000))?;
    let cmap = c.map(2)?;
    let (control, ..) = call_with_copy(
        &mut c,
        &cmap,
        cmap.len() as u32,
        CopyKind::Valid(4096),
        &mut log,
    )?;
    rest(&mut c)?;
    c.check
        .finish()
        .map_err(|v| fail_with(v.to_string(), log.join("\n")))?;
    // Everything fits the (claimed) buffer: the whole-queue copy faults.
    let mut q = Queued::new(Spec::mappable(1000))?;
    let map = q.map(2)?;
    let (seen, ..) = call_with_copy(
        &mut q,
        &map,
        map.len() as u32,
        CopyKind::Null(4096),
        &mut log,
    )?;
    // 5.11+ refuses the whole-queue copy with EFAULT; a kernel without that fast path
    // reports the fault in copybuf_len and leaves a hint (both allowed by the oracle).
    let whole_queue_fault = match seen {
        Seen::Refused => "getsockopt fails with EFAULT",
        Seen::NoFastPath => "copybuf_len -EFAULT, bytes left queued",
        other => {
            return Err(fail_with(
                format!("the whole-queue copy into a null buffer was answered as {other:?}"),
                log.join("\n"),
            ))
        }
    };
    // With a fast path the fault is refused; without it both calls take the leftover copy,
    // which copies everything into a writable buffer (5.10 does) or reports the fault in
    // copybuf_len. Refusing a faulting buffer while not copying a writable one whole is no
    // kernel's behaviour: only the buffer differed.
    let consistent = matches!(
        (control, seen),
        (Seen::CopiedAll, Seen::Refused)
            | (Seen::NoFastPath, Seen::NoFastPath)
            | (Seen::CopiedAll, Seen::NoFastPath)
    );
    if !consistent {
        return Err(fail_with(
            format!(
                "the whole-queue call was answered as {control:?} with a writable buffer but \
                 as {seen:?} with a faulting one: only the buffer differed"
            ),
            log.join("\n"),
        ));
    }
    ctx.observe("whole_queue_fault", whole_queue_fault);
    // A refused call consumes nothing. (Without the fast path, the hinted bytes were read
    // with recv() above and go through the stream check below.)
    let left = if seen == Seen::Refused { 1000 } else { 0 };
    expect(q.inq()? == left, || {
        format!(
            "after the failed copy {} bytes are queued, not {left}: data lost\n{}",
            q.inq().unwrap_or(0),
            log.join("\n")
        )
    })?;
    rest(&mut q)?;
    q.check
        .finish()
        .map_err(|v| fail_with(v.to_string(), log.join("\n")))?;

    // The remainder after mapped pages faults: reported in copybuf_len, bytes stay queued.
    let len = 3 * page + 100;
    let mut q = Queued::new(Spec {
        chunk: len,
        ..Spec::mappable(len)
    })?;
    let map = q.map(8)?;
    let (_, copied, length, _) = call_with_copy(
        &mut q,
        &map,
        map.len() as u32,
        CopyKind::Null(1000),
        &mut log,
    )?;
    ctx.observe(
        "remainder_fault",
        format!("length {length}, copybuf_len {copied}"),
    );
    rest(&mut q)?;
    q.check
        .finish()
        .map_err(|v| fail_with(v.to_string(), log.join("\n")))?;

    // copybuf_len -1 with a null buffer: recorded (the field is signed in one check and
    // unsigned in another).
    let mut q = Queued::new(Spec {
        chunk: len,
        ..Spec::mappable(len)
    })?;
    let map = q.map(8)?;
    let inq = q.inq()?;
    let r = ZcCall::new(map.addr(), map.len() as u32)
        .null_copybuf(-1)
        .call(q.receiver.as_fd(), struct_len());
    log.push(format!("copybuf_len -1, null: {}", show(&r)));
    // What comes back is recorded, but it must still be an answer the oracle allows for a
    // faulting buffer (copybuf_len -1 never fits the queue, so no fast path applies).
    let call = Call {
        page: page as u32,
        misalignment: 0,
        region: Region::Own {
            room: map.len() as u64,
        },
        requested: map.len() as u32,
        copybuf: CopyBuf {
            len: -1,
            faults: true,
        },
        listening: false,
        inq,
        fin: false,
    };
    check(&call, &answer(&r, struct_len() >= field_end::INQ as i32))
        .map_err(|v| fail_with(v.to_string(), log.join("\n")))?;
    ctx.observe("copybuf_len_minus_one", show(&r));
    if let Ok(rep) = &r {
        if rep.fields.length > 0 {
            q.take_mapped(&map, 0, rep.fields.length)?;
        }
    }
    rest(&mut q)?;
    q.check
        .finish()
        .map_err(|v| fail_with(v.to_string(), log.join("\n")))?;
    ctx.observe("calls", &log);
    Ok(Verdict::pass(
        "faulting copy buffers: EFAULT or -EFAULT in copybuf_len, and every byte still arrived",
    ))
}
