//! How a stream ends, seen through the zero-copy call (SEMANTICS.md §7.4 steps 5 and 10):
//! after a FIN, the call keeps giving data while there is some and then EIO, for good; after a
//! reset, `err` reports -ECONNRESET once and consumes it like SO_ERROR. What follows a reset
//! (on 6.18: all-zero fields forever and never EIO, so a loop that only reads the fields
//! spins) is detected with a bounded number of calls and recorded.

use std::os::fd::AsFd;

use anyhow::Result;
use harness::sys::socket_mmap;
use harness::sys::tcp_zc_receive::{field_end, ZcCall};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::fields::step;
use super::fixture::{show, Queued, Spec};
use super::net::Path;
use super::probes::{struct_len, ZC_INQ_ERR};
use crate::case::{Area, Case, Ctx};
use crate::outcome::{expect, fail_with, Verdict};
use crate::probes::io_errno;

pub fn cases() -> Vec<Case> {
    let mut reset_req = Path::Loopback.requires();
    reset_req.push(ZC_INQ_ERR);
    vec![
        Case::new(
            "receive.end.eio",
            Area::Receive,
            "after a FIN the queued data still comes, then every call fails with EIO",
            Path::Loopback.requires(),
            eio,
        ),
        Case::new(
            "receive.end.reset",
            Area::Receive,
            "after a reset, err is -ECONNRESET once (consumed like SO_ERROR); what follows is \
             recorded without spinning",
            reset_req,
            reset,
        ),
    ]
}

fn errno_of(r: &std::io::Result<harness::sys::tcp_zc_receive::ZcReply>) -> Option<i32> {
    r.as_ref().err().and_then(|e| e.raw_os_error())
}

fn eio(ctx: &mut Ctx) -> Result<Verdict> {
    let page = socket_mmap::page_size();
    let mut q = Queued::new(Spec::mappable(4 * page + 100))?;
    let map = q.map(8)?;
    let mut log = Vec::new();
    q.ends_with_fin()?;
    // Asking for nothing with data queued after a FIN: recorded (the kernel takes "nothing
    // asked, nothing to skip, FIN seen" for the end).
    let zero = ZcCall::new(map.addr(), 0).call(q.receiver.as_fd(), struct_len());
    log.push(format!(
        "asked 0 with {} queued after the FIN: {}",
        q.inq()?,
        show(&zero)
    ));
    ctx.observe("zero_request_after_fin_with_data", show(&zero));
    let mut calls = 0;
    loop {
        calls += 1;
        if calls >= 1000 {
            return Err(fail_with(
                "1000 calls after the FIN neither emptied the queue nor gave EIO",
                log[log.len().saturating_sub(12)..].join("\n"),
            ));
        }
        let inq = q.inq()?;
        let r = ZcCall::new(map.addr(), map.len() as u32).call(q.receiver.as_fd(), struct_len());
        log.push(format!("{inq} queued: {}", show(&r)));
        super::fixture::judge_own(&map, map.len() as u32, inq, true, &r, &log)?;
        match &r {
            Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                if inq > 0 {
                    return Err(fail_with(
                        format!("EIO with {inq} bytes still queued after the FIN"),
                        log.join("\n"),
                    ));
                }
                break;
            }
            Err(e) => {
                return Err(fail_with(
                    format!("after the FIN the call failed with {}", io_errno(e)),
                    log.join("\n"),
                ))
            }
            Ok(rep) => {
                let f = rep.fields;
                if f.length + f.recv_skip_hint == 0 {
                    return Err(fail_with(
                        format!(
                            "after the FIN, with {inq} bytes queued, the call gave neither data nor a hint \
                             (and no EIO): a receiver would spin"
                        ),
                        log.join("\n"),
                    ));
                }
                if f.length > 0 {
                    q.take_mapped(&map, 0, f.length)?;
                }
                if f.recv_skip_hint > 0 {
                    q.take_recv(f.recv_skip_hint as usize)?;
                }
            }
        }
    }
    q.check
        .finish()
        .map_err(|v| fail_with(v.to_string(), log.join("\n")))?;
    for _ in 0..3 {
        let r = ZcCall::new(map.addr(), map.len() as u32).call(q.receiver.as_fd(), struct_len());
        log.push(format!("again: {}", show(&r)));
        super::fixture::judge_own(&map, map.len() as u32, 0, true, &r, &log)?;
        expect(errno_of(&r) == Some(libc::EIO), || {
            format!("after EIO, a later call gave {}", show(&r))
        })?;
    }
    ctx.observe("calls", &log);
    Ok(Verdict::pass(format!(
        "{} bytes after the FIN, then EIO on every call",
        q.len
    )))
}

/// How many calls the case makes after a reset before calling the state settled.
const AFTER_RESET_CALLS: u32 = 100;

fn reset(ctx: &mut Ctx) -> Result<Verdict> {
    let page = socket_mmap::page_size();
    let optlen = struct_len();
    let mut q = Queued::new(Spec::mappable(16 * page))?;
    let map = q.map(16)?;
    let mut log = Vec::new();
    while q.inq()? > 0 {
        step(&mut q, &map, 0, map.len() as u32, 0, &mut log)?;
    }
    q.ends_with_reset()?;
    let first = ZcCall::new(map.addr(), map.len() as u32).call(q.receiver.as_fd(), optlen);
    log.push(format!("first call after the reset: {}", show(&first)));
    let f = match &first {
        Ok(r) => r.fields,
        Err(e) => {
            return Err(fail_with(
                format!(
                    "the first call after a reset failed with {} instead of reporting err",
                    io_errno(e)
                ),
                log.join("\n"),
            ))
        }
    };
    expect(f.err == -libc::ECONNRESET, || {
        format!(
            "the first call after a reset reported err {}, not -ECONNRESET (-{}):\n{}",
            f.err,
            libc::ECONNRESET,
            log.join("\n")
        )
    })?;
    let so_error =
        harness::sys::sockopt::get_int(q.receiver.as_fd(), libc::SOL_SOCKET, libc::SO_ERROR)?;
    log.push(format!("SO_ERROR then: {so_error}"));
    expect(so_error == 0, || {
        format!("SO_ERROR is {so_error} after err reported the reset: it was not consumed")
    })?;

    // What follows: bounded, with poll saying whether the socket claims to be ready.
    let mut zero_while_ready = 0;
    let mut eio = 0;
    let mut later_errors = Vec::new();
    let mut other = Vec::new();
    for _ in 0..AFTER_RESET_CALLS {
        let mut pfd = [PollFd::new(q.receiver.as_fd(), PollFlags::POLLIN)];
        let ready = poll(&mut pfd, PollTimeout::ZERO)? > 0;
        let r = ZcCall::new(map.addr(), map.len() as u32).call(q.receiver.as_fd(), optlen);
        match &r {
            Ok(rep) if rep.fields == zeroed_reply(map.addr(), rep.fields.copybuf_address) => {
                zero_while_ready += ready as u32
            }
            Ok(rep) if rep.fields.err != 0 => later_errors.push(rep.fields.err),
            Err(e) if e.raw_os_error() == Some(libc::EIO) => eio += 1,
            _ => other.push(show(&r)),
        }
    }
    expect(later_errors.is_empty(), || {
        format!("err was reported again after being consumed: {later_errors:?}")
    })?;
    let after = if zero_while_ready == AFTER_RESET_CALLS {
        "all-zero fields while poll says readable, never EIO: a loop that reads only the fields spins"
            .to_string()
    } else if eio == AFTER_RESET_CALLS {
        "EIO".to_string()
    } else {
        format!("{zero_while_ready} all-zero while ready, {eio} EIO, others: {other:?}")
    };
    ctx.observe("after_reset", &after);
    ctx.observe("recv_after_reset", super::rx_loop::recv_after(&q.receiver));

    // A struct too short for err: the error must stay pending for recv/SO_ERROR to see.
    let mut short = Queued::new(Spec::mappable(0))?;
    let smap = short.map(1)?;
    short.ends_with_reset()?;
    let r =
        ZcCall::new(smap.addr(), page as u32).call(short.receiver.as_fd(), field_end::INQ as i32);
    log.push(format!("optlen 20 after a reset: {}", show(&r)));
    let pending =
        harness::sys::sockopt::get_int(short.receiver.as_fd(), libc::SOL_SOCKET, libc::SO_ERROR)?;
    log.push(format!("SO_ERROR then: {pending}"));
    ctx.observe("calls", &log);
    if r.is_ok() {
        expect(pending == libc::ECONNRESET, || {
            format!(
                "a call with optlen 20 (no err field) consumed the reset: SO_ERROR is {pending}"
            )
        })?;
    }
    Ok(Verdict::pass(format!(
        "err -ECONNRESET once, then consumed; afterwards: {after}"
    )))
}

/// The fields a call returns when it has nothing to say: everything zero but the input.
fn zeroed_reply(
    address: u64,
    copybuf_address: u64,
) -> harness::sys::tcp_zc_receive::TcpZerocopyReceive {
    harness::sys::tcp_zc_receive::TcpZerocopyReceive {
        address,
        copybuf_address,
        ..Default::default()
    }
}
