//! What one `getsockopt(TCP_ZEROCOPY_RECEIVE)` may answer (SEMANTICS.md §7.4), given where
//! its address points, how much it asked for and what the socket holds.
//!
//! The rules, in the kernel's order:
//! 1. an address that is not page aligned is refused (EINVAL), whatever else holds;
//! 2. a listening socket is refused (ENOTCONN);
//! 3. if a copy buffer can hold everything queued, everything is copied and nothing mapped;
//! 4. with less than a page queued nothing is mapped, `recv_skip_hint` is what is queued, and
//!    an empty queue after a FIN is EIO;
//! 5. an address outside any TCP socket mapping is refused (EINVAL); a mapping of another
//!    TCP socket may be accepted (the kernel checks only the VMA type);
//! 6. otherwise `length` is at most the request clamped to the mapping's end and to what is
//!    queued, rounded down to whole pages (never more than was sent). Mapping the whole of
//!    that leaves no hint; mapping less must leave a hint or a copy (or a receiver would
//!    spin), and hint plus copy never exceed what is still queued.
//!
//! Where the contract leaves room (how many of the allowed pages were mappable, whether a
//! foreign mapping is accepted), the checker accepts every allowed answer and says which one
//! it saw, so the case can record it.

use std::fmt;

use serde::Serialize;

/// Where a call's address points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Region {
    /// Inside this socket's own mapping, `room` bytes before its end.
    Own { room: u64 },
    /// Inside a mapping of another TCP socket, `room` bytes before its end.
    Foreign { room: u64 },
    /// In no socket mapping (anonymous, file-backed, stack, guard page, null, unmapped).
    Elsewhere,
}

/// The copy buffer of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CopyBuf {
    /// `copybuf_len` as passed (0: none).
    pub len: i32,
    /// Whether writing to it faults (a null or read-only buffer).
    pub faults: bool,
}

impl CopyBuf {
    pub const NONE: CopyBuf = CopyBuf {
        len: 0,
        faults: false,
    };
}

/// One call, as the suite made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Call {
    pub page: u32,
    /// `address % page`.
    pub misalignment: u64,
    pub region: Region,
    /// `length` asked for.
    pub requested: u32,
    pub copybuf: CopyBuf,
    pub listening: bool,
    /// Bytes queued before the call (a FIN not counted).
    pub inq: u32,
    /// Whether a FIN has been received.
    pub fin: bool,
}

/// What the kernel answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Answer {
    Err {
        errno: i32,
    },
    Ok {
        length: u32,
        skip: u32,
        /// `copybuf_len` as returned: bytes copied, or a negative errno.
        copied: i32,
        /// The `inq` field, when the call asked for it and nothing else was arriving.
        inq_after: Option<u32>,
        /// The `err` field, when the call's optlen reached it (`sock_error()`: 0, or a
        /// pending socket error, negated).
        err: Option<i32>,
    },
}

/// Which allowed answer the kernel gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Seen {
    /// Refused as the rules demand (misaligned, listening, not a socket mapping).
    Refused,
    /// A mapping of another socket was refused (allowed).
    ForeignRefused,
    /// A mapping of another socket was used (allowed; the case on 6.18).
    ForeignAccepted,
    /// Everything queued was copied into the copy buffer.
    CopiedAll,
    /// Nothing could be mapped (less than a page queued, asked or room): only a hint.
    HintOnly,
    /// Every page allowed was mapped.
    MappedAll,
    /// Some of the allowed pages were mapped (possibly none), with a hint for the rest.
    MappedPart,
    /// End of stream.
    Eof,
    /// Answered by the general rules where 5.11+ takes a fast path (copy everything into the
    /// copy buffer, or only a hint when less than a page is queued): an older kernel.
    NoFastPath,
}

/// A way the answer breaks the rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallViolation {
    pub rule: &'static str,
    pub detail: String,
}

impl fmt::Display for CallViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.rule, self.detail)
    }
}

fn violation(rule: &'static str, detail: String) -> CallViolation {
    CallViolation { rule, detail }
}

fn errno_is(answer: &Answer, want: i32, rule: &'static str) -> Result<Seen, CallViolation> {
    match answer {
        Answer::Err { errno } if *errno == want => Ok(Seen::Refused),
        other => Err(violation(
            rule,
            format!("expected errno {want}, got {other:?}"),
        )),
    }
}

/// The socket errors `err` may carry (negated): what a TCP connection can die of.
const CONNECTION_ERRORS: [i32; 7] = [
    libc::ECONNRESET,
    libc::EPIPE,
    libc::ETIMEDOUT,
    libc::ECONNABORTED,
    libc::ECONNREFUSED,
    libc::EHOSTUNREACH,
    libc::ENETUNREACH,
];

/// Rule 0: `err` is 0 or a pending connection error, negated.
fn check_err(answer: &Answer) -> Result<(), CallViolation> {
    if let Answer::Ok { err: Some(e), .. } = *answer {
        if e != 0 && !CONNECTION_ERRORS.contains(&-e) {
            return Err(violation(
                "err is 0 or a pending connection error, negated",
                format!("err {e}"),
            ));
        }
    }
    Ok(())
}

/// Checks one answer against the rules; says which allowed answer it was.
pub fn check(call: &Call, answer: &Answer) -> Result<Seen, CallViolation> {
    check_err(answer)?;
    let page = call.page.max(1);
    if call.misalignment != 0 {
        return errno_is(
            answer,
            libc::EINVAL,
            "an address that is not page aligned is refused with EINVAL",
        );
    }
    if call.listening {
        return errno_is(
            answer,
            libc::ENOTCONN,
            "a listening socket is refused with ENOTCONN",
        );
    }
    let inq = call.inq;
    if inq == 0 && call.fin {
        // The end of the stream is reported by every kernel, fast path or not; a kernel that
        // checks the address first refuses a bad one before it gets there.
        if matches!(call.region, Region::Elsewhere)
            && matches!(answer, Answer::Err { errno } if *errno == libc::EINVAL)
        {
            return Ok(Seen::NoFastPath);
        }
        return errno_is(
            answer,
            libc::EIO,
            "a call on an empty queue after a FIN is EIO",
        )
        .map(|_| Seen::Eof);
    }
    // Rules 3 and 4 are fast paths that 5.11 put before the mapping checks. A kernel without
    // them (Debian's 5.10 has the copy buffer but neither) answers by the general rules, which
    // keep every byte accounted for just as well: that is allowed, and said (NoFastPath).
    // A wrong answer is reported against the fast path's rule.
    let fast = if inq > 0 && call.copybuf.len >= 0 && inq <= call.copybuf.len as u32 {
        Some(check_copy_all(call, answer))
    } else if inq < page {
        Some(check_short_queue(call, answer))
    } else {
        None
    };
    match fast {
        None => general(call, answer),
        Some(Ok(seen)) => Ok(seen),
        Some(Err(strict)) => general(call, answer)
            .map(|_| Seen::NoFastPath)
            .map_err(|_| strict),
    }
}

/// Rules 5 and 6: the address must be a socket mapping; then the mapping rules.
fn general(call: &Call, answer: &Answer) -> Result<Seen, CallViolation> {
    let room = match call.region {
        Region::Elsewhere => {
            return errno_is(
                answer,
                libc::EINVAL,
                "an address outside every TCP socket mapping is refused with EINVAL",
            )
        }
        Region::Foreign { room } => {
            if matches!(answer, Answer::Err { errno } if *errno == libc::EINVAL) {
                return Ok(Seen::ForeignRefused);
            }
            check_mapping(call, room, answer)?;
            return Ok(Seen::ForeignAccepted);
        }
        Region::Own { room } => room,
    };
    check_mapping(call, room, answer)
}

/// Rule 3: `inq <= copybuf_len`: everything queued is copied, nothing mapped.
fn check_copy_all(call: &Call, answer: &Answer) -> Result<Seen, CallViolation> {
    const RULE: &str = "a copy buffer that holds everything queued receives all of it";
    if call.copybuf.faults {
        return errno_is(
            answer,
            libc::EFAULT,
            "copying everything queued into a faulting buffer fails with EFAULT",
        );
    }
    match *answer {
        Answer::Ok {
            length: 0,
            skip: 0,
            copied,
            inq_after,
            ..
        } if copied == call.inq as i32 => {
            check_inq(call, 0, copied, inq_after)?;
            Ok(Seen::CopiedAll)
        }
        other => Err(violation(
            RULE,
            format!(
                "{} bytes queued, copybuf_len {}: expected length 0, skip 0, copied {}; got {other:?}",
                call.inq, call.copybuf.len, call.inq
            ),
        )),
    }
}

/// Rule 4: less than a page queued.
fn check_short_queue(call: &Call, answer: &Answer) -> Result<Seen, CallViolation> {
    if call.inq == 0 && call.fin {
        return errno_is(
            answer,
            libc::EIO,
            "a call on an empty queue after a FIN is EIO",
        )
        .map(|_| Seen::Eof);
    }
    match *answer {
        Answer::Ok {
            length: 0,
            skip,
            copied: 0,
            inq_after,
            ..
        } if skip == call.inq => {
            check_inq(call, 0, 0, inq_after)?;
            Ok(Seen::HintOnly)
        }
        other => Err(violation(
            "with less than a page queued nothing is mapped and the hint is what is queued",
            format!(
                "{} bytes queued: expected length 0, skip {}; got {other:?}",
                call.inq, call.inq
            ),
        )),
    }
}

/// Rule 6: a socket mapping with at least a page queued.
fn check_mapping(call: &Call, room: u64, answer: &Answer) -> Result<Seen, CallViolation> {
    let page = call.page;
    let avail = (call.requested as u64).min(room).min(call.inq as u64) as u32;
    let cap = avail - avail % page;
    let (length, skip, copied, inq_after) = match *answer {
        Answer::Ok {
            length,
            skip,
            copied,
            inq_after,
            ..
        } => (length, skip, copied, inq_after),
        Answer::Err { errno } if errno == libc::EIO && call.fin && avail == 0 => {
            // Nothing asked for, no hint, FIN seen: the kernel reports the end even with
            // data queued (a request of 0 bytes is the caller's mistake, not a stream end).
            return Ok(Seen::Eof);
        }
        Answer::Err { errno } => {
            return Err(violation(
                "a page-aligned address in a socket mapping with data queued is accepted",
                format!(
                    "requested {}, room {room}, queued {}: errno {errno}",
                    call.requested, call.inq
                ),
            ))
        }
    };
    let context = || {
        format!(
            "requested {}, room {room}, queued {} (at most {cap} mappable): length {length}, skip {skip}, copied {copied}",
            call.requested, call.inq
        )
    };
    if length % page != 0 {
        return Err(violation("length comes back in whole pages", context()));
    }
    if length > cap {
        return Err(violation(
            "length is clamped to the request, the mapping's room and what is queued, in whole pages",
            context(),
        ));
    }
    let copy_allowed = !call.copybuf.faults && call.copybuf.len > 0;
    let copied_bytes = if copied > 0 {
        if !copy_allowed || copied > call.copybuf.len {
            return Err(violation(
                "bytes are copied only into a copy buffer, at most its length",
                context(),
            ));
        }
        copied as u32
    } else {
        if copied < 0 && !call.copybuf.faults {
            return Err(violation(
                "a copy into a valid buffer does not fail",
                context(),
            ));
        }
        if copied < 0 && copied != -libc::EFAULT {
            return Err(violation(
                "a faulting copy buffer reports -EFAULT in copybuf_len",
                context(),
            ));
        }
        0
    };
    if skip as u64 + copied_bytes as u64 > (call.inq - length) as u64 {
        return Err(violation(
            "hint and copy never exceed what is still queued",
            context(),
        ));
    }
    if cap == 0 {
        if length != 0 || skip + copied_bytes != avail {
            return Err(violation(
                "when less than a page is asked for, nothing is mapped and hint plus copy is the request",
                context(),
            ));
        }
        check_inq(call, 0, copied, inq_after)?;
        return Ok(Seen::HintOnly);
    }
    if length == cap {
        if skip != 0 {
            return Err(violation(
                "the hint is zero when everything asked for was mapped",
                context(),
            ));
        }
        check_inq(call, length, copied, inq_after)?;
        return Ok(Seen::MappedAll);
    }
    if skip + copied_bytes == 0 {
        return Err(violation(
            "mapping less than allowed leaves a hint or a copy (else a receiver spins)",
            context(),
        ));
    }
    check_inq(call, length, copied, inq_after)?;
    Ok(Seen::MappedPart)
}

/// `inq` after the call: what was queued minus what was mapped and copied, plus one for a FIN.
fn check_inq(
    call: &Call,
    length: u32,
    copied: i32,
    inq_after: Option<u32>,
) -> Result<(), CallViolation> {
    let Some(got) = inq_after else {
        return Ok(());
    };
    let want = call.inq - length - copied.max(0) as u32 + call.fin as u32;
    if got != want {
        return Err(violation(
            "inq is what is still queued after the call (a FIN counts as one)",
            format!(
                "queued {} before, mapped {length}, copied {}: inq {got}, expected {want}",
                call.inq,
                copied.max(0)
            ),
        ));
    }
    Ok(())
}

/// A call of a receive loop while the peer may still be sending: how much was queued at
/// the moment of the call is not known, only what SIOCINQ said right after it (the loop is
/// the only reader, so the queue can only have grown since the call answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct InFlight {
    pub page: u32,
    pub requested: u32,
    /// Bytes of the socket mapping from the address to its end.
    pub room: u64,
    pub copybuf: CopyBuf,
    /// SIOCINQ right after the call.
    pub queued_after: u32,
}

/// The rules that hold for every successful call of a loop whatever arrives meanwhile:
/// `err` as in [`check`]; length in whole pages, at most the request and the mapping's room;
/// a copy only into a copy buffer and at most its length, never failing on a valid one; the
/// hinted bytes are queued (at most SIOCINQ after the call); `inq` at most SIOCINQ after the
/// call plus one for a FIN.
pub fn check_in_flight(call: &InFlight, answer: &Answer) -> Result<(), CallViolation> {
    check_err(answer)?;
    let Answer::Ok {
        length,
        skip,
        copied,
        inq_after,
        ..
    } = *answer
    else {
        return Ok(());
    };
    let context = || {
        format!(
            "requested {}, room {}, copybuf {}, SIOCINQ after {}: length {length}, skip {skip}, \
             copied {copied}, inq {inq_after:?}",
            call.requested, call.room, call.copybuf.len, call.queued_after
        )
    };
    if length % call.page.max(1) != 0 {
        return Err(violation("length comes back in whole pages", context()));
    }
    if length as u64 > (call.requested as u64).min(call.room) {
        return Err(violation(
            "length is clamped to the request and the mapping's room",
            context(),
        ));
    }
    if copied > 0 && (call.copybuf.faults || copied > call.copybuf.len) {
        return Err(violation(
            "bytes are copied only into a copy buffer, at most its length",
            context(),
        ));
    }
    if copied < 0 && !call.copybuf.faults {
        return Err(violation(
            "a copy into a valid buffer does not fail",
            context(),
        ));
    }
    if skip > call.queued_after {
        return Err(violation(
            "the hinted bytes are queued (the hint is at most SIOCINQ after the call)",
            context(),
        ));
    }
    if let Some(inq) = inq_after {
        if inq as u64 > call.queued_after as u64 + 1 {
            return Err(violation(
                "inq is at most what SIOCINQ says after the call (plus one for a FIN)",
                context(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    const PAGE: u32 = 4096;

    fn call(region: Region, requested: u32, inq: u32) -> Call {
        Call {
            page: PAGE,
            misalignment: 0,
            region,
            requested,
            copybuf: CopyBuf::NONE,
            listening: false,
            inq,
            fin: false,
        }
    }

    fn ok(length: u32, skip: u32) -> Answer {
        Answer::Ok {
            length,
            skip,
            copied: 0,
            inq_after: None,
            err: None,
        }
    }

    fn err(errno: i32) -> Answer {
        Answer::Err { errno }
    }

    const OWN: Region = Region::Own { room: 16 * 4096 };

    #[rstest]
    #[case::all_mapped(call(OWN, 8 * 4096, 20 * 4096), ok(8 * 4096, 0), Seen::MappedAll)]
    #[case::clamped_to_room(call(Region::Own { room: 4096 }, 1 << 20, 20 * 4096), ok(4096, 0), Seen::MappedAll)]
    #[case::clamped_to_queue(call(OWN, 1 << 20, 3 * 4096 + 100), ok(3 * 4096, 0), Seen::MappedAll)]
    #[case::part_with_hint(call(OWN, 1 << 20, 10 * 4096), ok(4096, 3144), Seen::MappedPart)]
    #[case::none_with_hint(call(OWN, 1 << 20, 10 * 4096), ok(0, 8192), Seen::MappedPart)]
    #[case::small_request(call(OWN, 100, 10 * 4096), ok(0, 100), Seen::HintOnly)]
    #[case::short_queue(call(Region::Elsewhere, 1 << 20, 100), ok(0, 100), Seen::HintOnly)]
    #[case::elsewhere(call(Region::Elsewhere, 4096, 8192), err(libc::EINVAL), Seen::Refused)]
    #[case::foreign_used(call(Region::Foreign { room: 4096 }, 8192, 8192), ok(4096, 0), Seen::ForeignAccepted)]
    #[case::foreign_refused(call(Region::Foreign { room: 4096 }, 8192, 8192), err(libc::EINVAL), Seen::ForeignRefused)]
    fn allowed_answers_pass(#[case] c: Call, #[case] a: Answer, #[case] seen: Seen) {
        assert_eq!(check(&c, &a), Ok(seen));
    }

    /// Wrong answers: each must be named.
    #[rstest]
    #[case::misaligned_accepted(Call { misalignment: 1, ..call(OWN, 4096, 8192) }, ok(4096, 0), "page aligned")]
    #[case::misaligned_other_errno(Call { misalignment: 2048, ..call(OWN, 4096, 100) }, ok(0, 100), "page aligned")]
    #[case::anonymous_accepted(call(Region::Elsewhere, 4096, 8192), ok(4096, 0), "outside every")]
    #[case::own_refused(call(OWN, 4096, 8192), err(libc::EINVAL), "is accepted")]
    #[case::not_whole_pages(call(OWN, 1 << 20, 8192), ok(4097, 0), "whole pages")]
    #[case::beyond_room(call(Region::Own { room: 4096 }, 1 << 20, 8 * 4096), ok(8192, 0), "clamped")]
    #[case::beyond_queue(call(OWN, 1 << 20, 8192 + 100), ok(3 * 4096, 0), "clamped")]
    #[case::beyond_request(call(OWN, 4096, 8 * 4096), ok(8192, 0), "clamped")]
    #[case::hint_when_all_mapped(call(OWN, 8192, 8 * 4096), ok(8192, 5), "hint is zero")]
    #[case::spin(call(OWN, 1 << 20, 8 * 4096), ok(4096, 0), "spins")]
    #[case::hint_past_queue(call(OWN, 1 << 20, 8 * 4096), ok(4096, 8 * 4096), "never exceed")]
    #[case::short_queue_mapped(call(OWN, 1 << 20, 100), ok(4096, 0), "less than a page")]
    #[case::short_queue_wrong_hint(call(OWN, 1 << 20, 100), ok(0, 99), "less than a page")]
    #[case::small_request_wrong_hint(call(OWN, 100, 8 * 4096), ok(0, 0), "less than a page is asked")]
    #[case::listener_accepted(Call { listening: true, ..call(OWN, 4096, 0) }, ok(0, 0), "ENOTCONN")]
    #[case::eof_missing(Call { fin: true, ..call(OWN, 4096, 0) }, ok(0, 0), "EIO")]
    fn wrong_answers_are_caught(#[case] c: Call, #[case] a: Answer, #[case] rule: &str) {
        let v = check(&c, &a).expect_err("a wrong answer passed");
        assert!(v.to_string().contains(rule), "{v}");
    }

    fn full(length: u32, skip: u32, copied: i32, inq_after: u32) -> Answer {
        Answer::Ok {
            length,
            skip,
            copied,
            inq_after: Some(inq_after),
            err: None,
        }
    }

    #[test]
    fn copy_buffers_and_inq() {
        let mut c = call(OWN, 1 << 20, 1000);
        c.copybuf = CopyBuf {
            len: 4096,
            faults: false,
        };
        assert_eq!(check(&c, &full(0, 0, 1000, 0)), Ok(Seen::CopiedAll));
        assert!(check(&c, &full(0, 0, 500, 0)).is_err(), "a partial copy");
        c.copybuf.faults = true;
        assert_eq!(check(&c, &err(libc::EFAULT)), Ok(Seen::Refused));
        assert!(
            check(&c, &full(0, 0, 1000, 0)).is_err(),
            "a copy into a fault"
        );

        let mut c = call(OWN, 1 << 20, 3 * 4096 + 100);
        c.copybuf = CopyBuf {
            len: 1000,
            faults: false,
        };
        assert_eq!(check(&c, &full(3 * 4096, 0, 100, 0)), Ok(Seen::MappedAll));
        let wrong_inq = check(&c, &full(3 * 4096, 0, 100, 100)).unwrap_err();
        assert!(wrong_inq.rule.contains("inq"), "{wrong_inq}");
        assert!(
            check(&c, &full(3 * 4096, 0, 2000, 0)).is_err(),
            "copied past the buffer"
        );
        assert!(
            check(&c, &full(3 * 4096, 0, -libc::EFAULT, 100)).is_err(),
            "a fault on a valid buffer"
        );
        c.copybuf.faults = true;
        assert_eq!(
            check(&c, &full(3 * 4096, 0, -libc::EFAULT, 100)),
            Ok(Seen::MappedAll)
        );
        assert!(
            check(&c, &full(3 * 4096, 0, -libc::EINVAL, 100)).is_err(),
            "the wrong errno for a fault"
        );
    }

    /// Answers of a kernel without the 5.11 fast paths (seen on Debian's 5.10): allowed by
    /// the general rules, and named; wrong answers are still refused.
    #[test]
    fn kernels_without_the_fast_paths() {
        // The address is checked before the small-queue hint.
        let c = call(Region::Elsewhere, 0, 1);
        assert_eq!(check(&c, &err(libc::EINVAL)), Ok(Seen::NoFastPath));
        let own = call(OWN, 0, 1);
        assert!(
            check(&own, &err(libc::EINVAL)).is_err(),
            "a socket mapping refused"
        );
        // A copy buffer that could hold everything: pages mapped, the rest copied.
        let mut c = call(OWN, 8 * 4096, 3 * 4096 + 100);
        c.copybuf = CopyBuf {
            len: 65536,
            faults: false,
        };
        assert_eq!(check(&c, &full(3 * 4096, 0, 100, 0)), Ok(Seen::NoFastPath));
        assert!(
            check(&c, &full(3 * 4096, 0, 50, 0)).is_err(),
            "50 of the 100 remaining bytes vanish"
        );
        // A faulting buffer that could hold everything: -EFAULT in copybuf_len, a hint.
        let mut c = call(OWN, 2 * 4096, 1000);
        c.copybuf = CopyBuf {
            len: 4096,
            faults: true,
        };
        assert_eq!(
            check(&c, &full(0, 1000, -libc::EFAULT, 1000)),
            Ok(Seen::NoFastPath)
        );
        assert!(
            check(&c, &full(0, 0, -libc::EFAULT, 1000)).is_err(),
            "no hint for the queued bytes"
        );
    }

    #[test]
    fn a_fin_counts_in_inq_and_ends_an_empty_queue() {
        let mut c = call(OWN, 1 << 20, 4096);
        c.fin = true;
        let a = Answer::Ok {
            length: 4096,
            skip: 0,
            copied: 0,
            inq_after: Some(1),
            err: Some(0),
        };
        assert_eq!(check(&c, &a), Ok(Seen::MappedAll));
        c.inq = 0;
        assert_eq!(check(&c, &err(libc::EIO)), Ok(Seen::Eof));
    }

    fn flight() -> InFlight {
        InFlight {
            page: PAGE,
            requested: 8 * PAGE,
            room: 8 * PAGE as u64,
            copybuf: CopyBuf {
                len: 1000,
                faults: false,
            },
            queued_after: 5000,
        }
    }

    fn answer5(length: u32, skip: u32, copied: i32, inq: u32, err: i32) -> Answer {
        Answer::Ok {
            length,
            skip,
            copied,
            inq_after: Some(inq),
            err: Some(err),
        }
    }

    #[test]
    fn in_flight_accepts_what_a_moving_queue_allows() {
        for a in [
            answer5(8 * PAGE, 0, 0, 5000, 0),
            answer5(4096, 5000, 1000, 5001, 0),
            answer5(0, 0, 0, 0, -libc::ECONNRESET),
            err(libc::EIO),
        ] {
            assert_eq!(check_in_flight(&flight(), &a), Ok(()), "{a:?}");
        }
    }

    #[rstest]
    #[case::err_positive(answer5(0, 0, 0, 0, 5), "err is 0")]
    #[case::err_unknown(answer5(0, 0, 0, 0, -libc::EINVAL), "err is 0")]
    #[case::not_pages(answer5(100, 0, 0, 0, 0), "whole pages")]
    #[case::beyond_request(answer5(9 * PAGE, 0, 0, 0, 0), "clamped")]
    #[case::copy_too_long(answer5(0, 0, 1001, 0, 0), "copy buffer")]
    #[case::copy_failed(answer5(0, 0, -14, 0, 0), "valid buffer")]
    #[case::hint_not_queued(answer5(0, 5001, 0, 0, 0), "hinted bytes")]
    #[case::inq_too_large(answer5(0, 0, 0, 5002, 0), "inq is at most")]
    fn in_flight_refuses_wrong_answers(#[case] a: Answer, #[case] rule: &str) {
        let v = check_in_flight(&flight(), &a).expect_err("a wrong answer passed");
        assert!(v.rule.contains(rule), "{v} does not name {rule:?}");
    }

    #[test]
    fn err_is_checked_by_the_main_oracle_too() {
        let c = call(OWN, 8 * PAGE, 8 * PAGE);
        let v = check(&c, &answer5(8 * PAGE, 0, 0, 0, 7)).expect_err("err 7 passed");
        assert!(v.rule.contains("err"), "{v}");
    }
}
