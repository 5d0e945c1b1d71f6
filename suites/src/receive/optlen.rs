//! The struct-size ladder of TCP_ZEROCOPY_RECEIVE (SEMANTICS.md §7.1, §7.2).
//!
//! Rules checked: an `optlen` shorter than `length`'s end is refused (EINVAL); every `optlen`
//! from there up to the kernel's struct size is accepted as given (on kernels whose struct
//! is longer than the first 16 bytes); a longer `optlen` is accepted only with an all-zero tail
//! and is then rewritten to the struct size; the kernel writes nothing past the `optlen` it
//! reports; `length` and `recv_skip_hint` are always answered, `inq` and `err` at the field
//! boundaries that include them; a non-zero `reserved` and unknown `msg_flags` bits are
//! refused where the struct has them.
//!
//! Observed: the accepted sizes (which tell the struct version: 16, 24, 40 or 64 bytes), the
//! rewritten `optlen`s, and which fields come back computed at every `optlen` (at lengths
//! between field boundaries 6.18 computes neither `inq` nor `err` and echoes the input).

use std::collections::BTreeMap;
use std::os::fd::AsFd;

use anyhow::Result;
use harness::sys::socket_mmap;
use harness::sys::tcp_zc_receive::{field_end, ZcCall, ZcReply, STRUCT_LEN, TCP_CMSG_TS};
use serde::Serialize;

use super::fixture::{Queued, Spec};
use super::probes::{struct_len, ZC_MSG_CONTROL, ZC_RECEIVE};
use crate::case::{Area, Case, Ctx};
use crate::outcome::{fail_with, unsupported, Verdict};
use crate::probes::{errno_name, io_errno, NET_ADMIN};

pub fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "receive.optlen.ladder",
            Area::Receive,
            "every optlen from below the smallest to above the largest struct: which are accepted, \
             what comes back, nothing written past the struct",
            vec![NET_ADMIN, ZC_RECEIVE],
            ladder,
        ),
        Case::new(
            "receive.optlen.nonzero_tail",
            Area::Receive,
            "an optlen beyond the kernel's struct is refused unless the extra tail is all zero",
            // The zero-tail check came with the struct that has msg_control and `reserved`
            // (check_zeroed_sockptr next to the reserved check); a kernel whose struct ends
            // earlier (40 bytes, 5.10) truncates a longer optlen without looking at the tail,
            // which the ladder records. Its contract has no such rule to break.
            vec![NET_ADMIN, ZC_MSG_CONTROL],
            nonzero_tail,
        ),
        Case::new(
            "receive.optlen.reserved",
            Area::Receive,
            "a non-zero reserved field is refused with EINVAL",
            vec![NET_ADMIN, ZC_MSG_CONTROL],
            reserved,
        ),
        Case::new(
            "receive.optlen.msg_flags",
            Area::Receive,
            "msg_flags bits other than TCP_CMSG_TS are refused with EINVAL; TCP_CMSG_TS is accepted",
            vec![NET_ADMIN, ZC_MSG_CONTROL],
            msg_flags,
        ),
    ]
}

/// Bytes queued for the ladder: less than a page, so no call consumes anything and every
/// call sees the same socket.
const QUEUED: u32 = 100;
/// Input values of the output fields, to tell written from echoed.
const SENTINEL_LENGTH: u32 = 0x5000;
const SENTINEL_SKIP: u32 = 0xa5a5_0001;
const SENTINEL_INQ: u32 = 0xa5a5_0002;
const SENTINEL_ERR: i32 = 0x5a5a_0003;
/// A recognisable byte for the tail beyond the struct.
const TAIL_LEN: usize = 4096 - STRUCT_LEN;

/// One rung of the ladder.
#[derive(Debug, Clone, Serialize)]
struct Rung {
    optlen: i32,
    result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    optlen_out: Option<i32>,
    /// Output fields that came back different from their sentinel.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    computed: Vec<&'static str>,
}

fn ladder_optlens() -> Vec<i32> {
    let mut v = vec![-1, 0, 4, 8, 11];
    v.extend(12..=72);
    v.extend([80, 128, 4096]);
    v
}

fn ladder(ctx: &mut Ctx) -> Result<Verdict> {
    let q = Queued::new(Spec {
        zc_sender: false,
        ..Spec::mappable(QUEUED as usize)
    })?;
    let map = q.map(2)?;
    let fd = q.receiver.as_fd();
    let mut rungs = Vec::new();
    let mut replies: BTreeMap<i32, ZcReply> = BTreeMap::new();
    let mut evidence = Vec::new();
    for optlen in ladder_optlens() {
        let mut call = ZcCall::new(map.addr(), SENTINEL_LENGTH)
            .prefill_outputs(SENTINEL_SKIP, SENTINEL_INQ, SENTINEL_ERR)
            .tail(vec![0u8; TAIL_LEN]);
        let r = call.call(fd, optlen);
        let rung = match &r {
            Ok(rep) => Rung {
                optlen,
                result: "0".into(),
                optlen_out: Some(rep.optlen),
                computed: computed(rep),
            },
            Err(e) => Rung {
                optlen,
                result: io_errno(e),
                optlen_out: None,
                computed: vec![],
            },
        };
        evidence.push(format!(
            "optlen {optlen}: {}{}{}",
            rung.result,
            rung.optlen_out
                .filter(|o| *o != optlen)
                .map(|o| format!(", optlen -> {o}"))
                .unwrap_or_default(),
            if rung.computed.is_empty() {
                String::new()
            } else {
                format!(", computed {}", rung.computed.join("+"))
            }
        ));
        if let Ok(rep) = r {
            replies.insert(optlen, rep);
        }
        rungs.push(rung);
    }
    let evidence = evidence.join("\n");
    let bad = |msg: String| fail_with(msg, evidence.clone());

    // The kernel's struct size: what an oversize optlen is rewritten to, else the largest
    // optlen taken as given.
    let oversize: Vec<(i32, i32)> = replies
        .iter()
        .filter(|(l, _)| **l > STRUCT_LEN as i32)
        .map(|(l, r)| (*l, r.optlen))
        .collect();
    let size = match oversize.first() {
        Some((_, s)) => *s,
        None => replies.keys().copied().max().unwrap_or(0),
    };
    ctx.observe("struct_size", size);
    ctx.observe("ladder", &rungs);
    ctx.observe(
        "accepted",
        ranges(&replies.keys().copied().collect::<Vec<_>>()),
    );
    ctx.observe("inq_err_at_non_boundaries", non_boundary(&replies));

    for rung in &rungs {
        if rung.optlen < field_end::LENGTH as i32 && rung.result != errno_name(libc::EINVAL) {
            return Err(bad(format!(
                "optlen {} (shorter than the length field's end, 12) gave {}, not EINVAL",
                rung.optlen, rung.result
            )));
        }
    }
    if size == 0 {
        return Err(bad(
            "no optlen at all was accepted, not even 16 (the 4.18 struct)".into(),
        ));
    }
    if let Some((l, r)) = replies.iter().find(|(l, r)| r.optlen > **l) {
        return Err(bad(format!(
            "optlen {l} was written back as {}, larger than what was passed",
            r.optlen
        )));
    }
    for (l, out) in &oversize {
        if *out != size {
            return Err(bad(format!(
                "optlen {l} was rewritten to {out}, another optlen to {size}: the struct size must be one"
            )));
        }
    }
    // A kernel that knows more than the first 16 bytes takes every optlen from 12 to its size.
    let lowest = if size > field_end::RECV_SKIP_HINT as i32 {
        field_end::LENGTH as i32
    } else {
        size
    };
    for l in lowest..=size.min(STRUCT_LEN as i32) {
        match replies.get(&l) {
            Some(r) if r.optlen == l => {}
            Some(r) => {
                return Err(bad(format!(
                    "optlen {l}, within the {size}-byte struct, was rewritten to {}",
                    r.optlen
                )))
            }
            None => {
                return Err(bad(format!(
                    "optlen {l}, within the {size}-byte struct, was refused"
                )))
            }
        }
    }
    for (l, r) in &replies {
        let written = (*l).min(r.optlen).max(0) as usize;
        let before = ZcCall::new(map.addr(), SENTINEL_LENGTH)
            .prefill_outputs(SENTINEL_SKIP, SENTINEL_INQ, SENTINEL_ERR)
            .fields()
            .to_bytes();
        let mut expected = before.to_vec();
        expected.resize(expected.len() + TAIL_LEN, 0);
        if let Some(i) =
            (written..r.buffer.len().min(expected.len())).find(|&i| r.buffer[i] != expected[i])
        {
            return Err(bad(format!(
                "optlen {l} (reported back as {}): the kernel wrote byte {i}, past the optlen",
                r.optlen
            )));
        }
        let f = &r.fields;
        if f.length != 0 {
            return Err(bad(format!(
                "optlen {l}: length came back {:#x}; with {QUEUED} bytes queued nothing can be mapped",
                f.length
            )));
        }
        let reach = (*l as usize).min(r.optlen as usize);
        if reach >= field_end::RECV_SKIP_HINT && f.recv_skip_hint != QUEUED {
            return Err(bad(format!(
                "optlen {l}: recv_skip_hint {:#x}, expected {QUEUED} (what is queued)",
                f.recv_skip_hint
            )));
        }
        let at_boundary = field_end::ALL.contains(&reach);
        if at_boundary && reach >= field_end::INQ && f.inq != QUEUED {
            return Err(bad(format!(
                "optlen {l}: inq {:#x} at a field boundary that includes it, expected {QUEUED}",
                f.inq
            )));
        }
        if at_boundary && reach >= field_end::ERR && f.err != 0 {
            return Err(bad(format!(
                "optlen {l}: err {:#x} at a field boundary that includes it, expected 0",
                f.err
            )));
        }
    }
    Ok(Verdict::pass(format!(
        "struct size {size}: optlen < 12 refused, {}..={} taken as given{}, nothing written past it",
        lowest,
        size.min(STRUCT_LEN as i32),
        if oversize.is_empty() {
            ", longer ones refused".to_string()
        } else {
            format!(", longer ones with a zero tail rewritten to {size}")
        }
    )))
}

/// Fields whose value differs from the sentinel after the call (within the optlen used).
fn computed(r: &ZcReply) -> Vec<&'static str> {
    let reach = r.optlen.max(0) as usize;
    let f = &r.fields;
    let mut v = Vec::new();
    if reach >= field_end::LENGTH && f.length != SENTINEL_LENGTH {
        v.push("length");
    }
    if reach >= field_end::RECV_SKIP_HINT && f.recv_skip_hint != SENTINEL_SKIP {
        v.push("recv_skip_hint");
    }
    if reach >= field_end::INQ && f.inq != SENTINEL_INQ {
        v.push("inq");
    }
    if reach >= field_end::ERR && f.err != SENTINEL_ERR {
        v.push("err");
    }
    v
}

/// At accepted optlens that end between field boundaries: are inq/err computed or echoed?
fn non_boundary(replies: &BTreeMap<i32, ZcReply>) -> BTreeMap<i32, &'static str> {
    replies
        .iter()
        .filter(|(l, r)| {
            let reach = (**l).min(r.optlen) as usize;
            reach > field_end::ERR && !field_end::ALL.contains(&reach)
        })
        .map(|(l, r)| {
            let c = computed(r);
            (
                *l,
                if c.contains(&"inq") {
                    "computed"
                } else {
                    "echoed"
                },
            )
        })
        .collect()
}

/// `[12, 13, 14, 20]` as `"12-14, 20"`.
fn ranges(v: &[i32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            v[i].to_string()
        } else {
            format!("{}-{}", v[i], v[j])
        });
        i = j + 1;
    }
    out.join(", ")
}

/// The socket every negative check calls on: connected, [`QUEUED`] bytes queued (less than a
/// page, so no call consumes anything and every call sees the same socket) and a real
/// two-page mapping. Kernels before 5.11 look up the mapping before anything else, so a call
/// with address 0 or on an unconnected socket would be refused for that reason alone.
struct Target {
    q: Queued,
    map: harness::sys::socket_mmap::SocketMapping,
}

impl Target {
    fn new() -> Result<Self> {
        let q = Queued::new(Spec {
            zc_sender: false,
            ..Spec::mappable(QUEUED as usize)
        })?;
        let map = q.map(2)?;
        Ok(Target { q, map })
    }

    /// A call on the mapping; nothing can be mapped (less than a page is queued).
    fn call(&self) -> ZcCall<'static> {
        ZcCall::new(self.map.addr(), self.map.len() as u32)
    }

    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.q.receiver.as_fd()
    }
}

fn shown(r: &std::io::Result<ZcReply>) -> String {
    r.as_ref()
        .map(|r| {
            format!(
                "0 (optlen -> {}, msg_flags out {:#x})",
                r.optlen, r.fields.msg_flags
            )
        })
        .unwrap_or_else(io_errno)
}

/// The positive control of a negative check: the same call on the same socket and mapping
/// with only the varied field restored must succeed, or the negative answer would prove
/// nothing. A refused control is `unsupported` (EINVAL, EOPNOTSUPP, ENOPROTOOPT: the kernel
/// does not take this call at all) naming the control, else `error`. An optlen written back
/// larger than the one passed is a `fail`.
fn control(
    t: &Target,
    what: &str,
    mut call: ZcCall<'static>,
    optlen: i32,
    log: &mut Vec<String>,
) -> Result<ZcReply> {
    let r = call.call(t.fd(), optlen);
    log.push(format!("control, {what}, optlen {optlen}: {}", shown(&r)));
    if r.is_ok() {
        // An accepted control is still an answer: the oracle judges it (a hint of what is
        // queued, nothing mapped, inq and err as they must be).
        super::fixture::judge_own(&t.map, t.map.len() as u32, QUEUED, false, &r, log)?;
    }
    match r {
        Ok(rep) if rep.optlen > optlen => Err(fail_with(
            format!(
                "the control call ({what}) wrote back optlen {}, larger than the {optlen} passed",
                rep.optlen
            ),
            log.join("\n"),
        )),
        Ok(rep) => Ok(rep),
        Err(e) => match e.raw_os_error() {
            Some(libc::EINVAL | libc::EOPNOTSUPP | libc::ENOPROTOOPT) => Err(unsupported(format!(
                "control call ({what}, optlen {optlen}, connected socket, real mapping) refused \
                 with {}: the negative check would prove nothing",
                io_errno(&e)
            ))),
            _ => Err(anyhow::anyhow!(
                "the control call ({what}, optlen {optlen}) failed: {}; calls:\n{}",
                io_errno(&e),
                log.join("\n")
            )),
        },
    }
}

/// The negative check: the call with the varied field must be refused with EINVAL.
fn refused_with_einval(
    t: &Target,
    what: &str,
    mut call: ZcCall<'static>,
    optlen: i32,
    log: &mut Vec<String>,
) -> Result<()> {
    let r = call.call(t.fd(), optlen);
    let got = shown(&r);
    log.push(format!("{what}, optlen {optlen}: {got}"));
    if !matches!(&r, Err(e) if e.raw_os_error() == Some(libc::EINVAL)) {
        return Err(fail_with(
            format!("{what} gave {got}, not EINVAL"),
            log.join("\n"),
        ));
    }
    Ok(())
}

fn nonzero_tail(ctx: &mut Ctx) -> Result<Verdict> {
    let t = Target::new()?;
    let size = struct_len() as usize;
    let mut log = Vec::new();
    for optlen in [size + 4, 128, socket_mmap::page_size()] {
        let tail_len = optlen - STRUCT_LEN.min(optlen);
        let rep = control(
            &t,
            "all-zero tail",
            t.call().tail(vec![0u8; tail_len]),
            optlen as i32,
            &mut log,
        )?;
        if rep.optlen != size as i32 {
            return Err(fail_with(
                format!(
                    "optlen {optlen} with a zero tail was written back as {}, not the {size}-byte struct",
                    rep.optlen
                ),
                log.join("\n"),
            ));
        }
        let mut tail = vec![0u8; tail_len];
        if let Some(last) = tail.last_mut() {
            *last = 1;
        }
        refused_with_einval(
            &t,
            &format!("a non-zero byte past the {size}-byte struct"),
            t.call().tail(tail),
            optlen as i32,
            &mut log,
        )?;
    }
    ctx.observe("calls", &log);
    Ok(Verdict::pass(
        "a non-zero tail past the struct is refused; the same call with a zero tail is accepted \
         and optlen rewritten to the struct size",
    ))
}

fn reserved(ctx: &mut Ctx) -> Result<Verdict> {
    let t = Target::new()?;
    let mut log = Vec::new();
    for v in [1u32, 0x8000_0000, u32::MAX] {
        control(&t, "reserved 0", t.call(), STRUCT_LEN as i32, &mut log)?;
        refused_with_einval(
            &t,
            &format!("reserved {v:#x}"),
            t.call().reserved(v),
            STRUCT_LEN as i32,
            &mut log,
        )?;
    }
    ctx.observe("calls", &log);
    Ok(Verdict::pass(
        "reserved must be zero: 3 non-zero values refused, the same call with 0 accepted",
    ))
}

fn msg_flags(ctx: &mut Ctx) -> Result<Verdict> {
    let t = Target::new()?;
    let mut log = Vec::new();
    for v in [1u32, 4, 0x8000_0000, !TCP_CMSG_TS] {
        control(&t, "msg_flags 0", t.call(), STRUCT_LEN as i32, &mut log)?;
        refused_with_einval(
            &t,
            &format!("msg_flags {v:#x}"),
            t.call().msg_flags(v),
            STRUCT_LEN as i32,
            &mut log,
        )?;
    }
    // TCP_CMSG_TS is itself a promise of this case, not only a control: refused next to an
    // accepted msg_flags 0, it is a fail.
    let mut ts = t.call().msg_flags(TCP_CMSG_TS);
    let r = ts.call(t.fd(), STRUCT_LEN as i32);
    log.push(format!("msg_flags TCP_CMSG_TS: {}", shown(&r)));
    let out = r.map_err(|e| {
        fail_with(
            format!(
                "msg_flags TCP_CMSG_TS was refused ({}) although msg_flags 0 was accepted",
                io_errno(&e)
            ),
            log.join("\n"),
        )
    })?;
    ctx.observe("msg_flags_out_without_timestamps", out.fields.msg_flags);
    ctx.observe("calls", &log);
    Ok(Verdict::pass(
        "unknown msg_flags bits refused with EINVAL (each next to an accepted msg_flags 0); \
         TCP_CMSG_TS accepted",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{verdict_of_error, Outcome};

    /// The control and the negative check each refuse a wrong answer on the real kernel: a
    /// control that the kernel refuses (a misaligned address) is `unsupported`, never a
    /// pass, and a negative check whose call is accepted is `fail`.
    #[test]
    fn controls_and_negative_checks_can_fail() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root for a namespace");
            return;
        }
        let t = Target::new().expect("target");
        let mut log = Vec::new();
        let broken = ZcCall::new(t.map.addr() + 1, 4096);
        let e = control(&t, "misaligned", broken, STRUCT_LEN as i32, &mut log).unwrap_err();
        assert_eq!(verdict_of_error(e).outcome, Outcome::Unsupported);
        let e = refused_with_einval(&t, "a valid call", t.call(), STRUCT_LEN as i32, &mut log)
            .unwrap_err();
        assert_eq!(verdict_of_error(e).outcome, Outcome::Fail);
        control(&t, "valid", t.call(), STRUCT_LEN as i32, &mut log).expect("the valid control");
    }
}
