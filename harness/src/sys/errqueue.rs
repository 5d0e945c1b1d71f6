//! Reading the socket error queue, where MSG_ZEROCOPY completions arrive.
//!
//! Error-queue reads never block (an empty queue answers EAGAIN even on a blocking socket), so
//! waiting is done with `poll` for POLLERR under a deadline: a kernel that never completes a
//! send becomes a timeout the caller records, never a hang.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use serde::Serialize;

/// `SO_EE_ORIGIN_ZEROCOPY` from `include/uapi/linux/errqueue.h`.
pub const SO_EE_ORIGIN_ZEROCOPY: u8 = 5;
/// `SO_EE_ORIGIN_TIMESTAMPING`.
pub const SO_EE_ORIGIN_TIMESTAMPING: u8 = 4;
/// `SO_EE_CODE_ZEROCOPY_COPIED`.
pub const SO_EE_CODE_ZEROCOPY_COPIED: u8 = 1;

/// `struct sock_extended_err`, as the kernel wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ExtendedErr {
    pub errno: u32,
    pub origin: u8,
    pub kind: u8,
    pub code: u8,
    pub pad: u8,
    pub info: u32,
    pub data: u32,
}

/// One message read from the error queue, validated whole by [`read_one`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ErrQueueEntry {
    /// `msg_flags` of the recvmsg (MSG_ERRQUEUE, and MSG_CTRUNC if the control was cut).
    pub msg_flags: i32,
    /// cmsg level and type of the first cmsg (SCM_TIMESTAMPING comes before RECVERR).
    pub cmsg_level: Option<i32>,
    pub cmsg_type: Option<i32>,
    /// The extended error, when the cmsg was a RECVERR one and fit.
    pub ee: Option<ExtendedErr>,
    /// The socket's family (`SO_DOMAIN`), which decides the RECVERR level and type.
    pub family: i32,
    /// An IPv6 socket talking to a v4-mapped peer got its RECVERR at SOL_IP/IP_RECVERR (the
    /// contract names SOL_IPV6 for IPv6 sockets; recorded, not judged).
    pub v4_mapped_at_sol_ip: bool,
    /// Bytes recvmsg returned (the looped payload of a timestamp; 0 for a zero-copy one).
    pub len: usize,
}

impl ErrQueueEntry {
    pub fn truncated(&self) -> bool {
        self.msg_flags & libc::MSG_CTRUNC != 0
    }

    /// The zero-copy completion this entry carries, if it is one.
    pub fn completion(&self) -> Option<Completion> {
        let ee = self.ee?;
        (ee.origin == SO_EE_ORIGIN_ZEROCOPY).then_some(Completion {
            lo: ee.info,
            hi: ee.data,
            copied: ee.code & SO_EE_CODE_ZEROCOPY_COPIED != 0,
        })
    }
}

/// A MSG_ZEROCOPY completion: ids `lo..=hi` (inclusive, u32, may wrap), and whether the
/// kernel says it copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub struct Completion {
    pub lo: u32,
    pub hi: u32,
    pub copied: bool,
}

/// Space for one cmsg carrying `sock_extended_err` plus an offender address.
pub const FULL_CONTROL_LEN: usize = 128;

/// Room for the RECVERR cmsg of either family: the CMSG_SPACE of a `sock_extended_err`
/// followed by a `sockaddr_in6` (16 + 28 bytes). A buffer at least this large that still comes back with
/// MSG_CTRUNC (and no timestamp cmsg that took the room) is a broken notification.
pub const ADEQUATE_CONTROL_LEN: usize = 64;

/// `SO_EE_ORIGIN_LOCAL`, `_ICMP`, `_ICMP6`, `_TXTIME`: the other origins the kernel uses.
pub const SO_EE_ORIGIN_LOCAL: u8 = 1;
pub const SO_EE_ORIGIN_ICMP: u8 = 2;
pub const SO_EE_ORIGIN_ICMP6: u8 = 3;
pub const SO_EE_ORIGIN_TXTIME: u8 = 6;

/// An error-queue message that breaks the contract (SEMANTICS.md R2.2, R2.7). It travels as
/// the inner error of an `io::Error` (kind `InvalidData`) so every existing caller's `?`
/// carries it to the runner, which makes it a `fail` (never an `error`): see
/// [`malformed_in`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// What is wrong, in one line.
    pub fault: String,
    /// The whole message as read: flags, every cmsg, the extended error.
    pub evidence: String,
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed error-queue notification: {}", self.fault)
    }
}

impl std::error::Error for Malformed {}

/// The [`Malformed`] inside `e`, if `e` is one (as an `io::Error` or itself).
pub fn malformed_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Malformed> {
    if let Some(m) = e.downcast_ref::<Malformed>() {
        return Some(m);
    }
    e.downcast_ref::<io::Error>()
        .and_then(|io| io.get_ref())
        .and_then(|inner| inner.downcast_ref::<Malformed>())
}

/// One cmsg as it came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawCmsg {
    pub level: i32,
    pub kind: i32,
    pub len: usize,
    pub ee: Option<ExtendedErr>,
}

/// What one `recvmsg(MSG_ERRQUEUE)` returned, before validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    pub family: i32,
    /// The peer of an IPv6 socket is a v4-mapped address.
    pub v4_mapped_peer: bool,
    pub control_len: usize,
    pub rc: usize,
    pub msg_flags: i32,
    pub cmsgs: Vec<RawCmsg>,
}

impl RawMessage {
    fn evidence(&self) -> String {
        let mut s = format!(
            "family {} recvmsg returned {} msg_flags {:#x} with a {}-byte control buffer",
            self.family, self.rc, self.msg_flags, self.control_len
        );
        for c in &self.cmsgs {
            s.push_str(&format!(
                "\ncmsg level {} type {} len {}",
                c.level, c.kind, c.len
            ));
            if let Some(ee) = c.ee {
                s.push_str(&format!(": {ee:?}"));
            }
        }
        if self.cmsgs.is_empty() {
            s.push_str("\nno cmsg");
        }
        s
    }
}

fn is_recverr(level: i32, kind: i32) -> bool {
    (level == libc::SOL_IP && kind == libc::IP_RECVERR)
        || (level == libc::SOL_IPV6 && kind == libc::IPV6_RECVERR)
}

/// Validates one message whole and turns it into an entry. The rules:
/// * `msg_flags` has MSG_ERRQUEUE;
/// * MSG_CTRUNC only with a buffer smaller than [`ADEQUATE_CONTROL_LEN`] (or when a timestamp
///   cmsg took the room);
/// * exactly one RECVERR cmsg (unless truncated), long enough for `sock_extended_err`, at the
///   level and type of the socket's family: IPv4 → SOL_IP/IP_RECVERR, IPv6 →
///   SOL_IPV6/IPV6_RECVERR (SOL_IP/IP_RECVERR is accepted and recorded for a v4-mapped peer);
/// * a known origin; for ZEROCOPY: errno 0, type 0, pad 0, code 0 or COPIED, no payload;
///   for TIMESTAMPING: errno ENOMSG, pad 0; for ICMP/ICMP6/LOCAL: a non-zero errno.
pub fn validate(raw: &RawMessage) -> Result<ErrQueueEntry, Malformed> {
    let bad = |fault: String| Malformed {
        fault,
        evidence: raw.evidence(),
    };
    if raw.msg_flags & libc::MSG_ERRQUEUE == 0 {
        return Err(bad(format!(
            "msg_flags {:#x} lacks MSG_ERRQUEUE",
            raw.msg_flags
        )));
    }
    let truncated = raw.msg_flags & libc::MSG_CTRUNC != 0;
    let timestamp_cmsg = raw.cmsgs.iter().any(|c| c.level == libc::SOL_SOCKET);
    if truncated && raw.control_len >= ADEQUATE_CONTROL_LEN && !timestamp_cmsg {
        return Err(bad(format!(
            "MSG_CTRUNC with a {}-byte control buffer, room enough for the RECVERR cmsg",
            raw.control_len
        )));
    }
    let recverrs: Vec<&RawCmsg> = raw
        .cmsgs
        .iter()
        .filter(|c| is_recverr(c.level, c.kind))
        .collect();
    if recverrs.len() > 1 {
        return Err(bad(format!(
            "{} RECVERR cmsgs in one message",
            recverrs.len()
        )));
    }
    let mut entry = ErrQueueEntry {
        msg_flags: raw.msg_flags,
        cmsg_level: raw.cmsgs.first().map(|c| c.level),
        cmsg_type: raw.cmsgs.first().map(|c| c.kind),
        ee: None,
        family: raw.family,
        v4_mapped_at_sol_ip: false,
        len: raw.rc,
    };
    let Some(c) = recverrs.first() else {
        if truncated {
            return Ok(entry);
        }
        return Err(bad("no RECVERR cmsg and no MSG_CTRUNC".into()));
    };
    let sol_ip = c.level == libc::SOL_IP;
    match raw.family {
        libc::AF_INET if !sol_ip => {
            return Err(bad("an IPv4 socket got SOL_IPV6/IPV6_RECVERR".into()));
        }
        libc::AF_INET6 if sol_ip => {
            if !raw.v4_mapped_peer {
                return Err(bad(
                    "an IPv6 socket (peer not v4-mapped) got SOL_IP/IP_RECVERR".into(),
                ));
            }
            entry.v4_mapped_at_sol_ip = true;
        }
        _ => {}
    }
    let Some(ee) = c.ee else {
        if truncated {
            return Ok(entry);
        }
        return Err(bad(format!(
            "the RECVERR cmsg is {} bytes, too short for sock_extended_err, without MSG_CTRUNC",
            c.len
        )));
    };
    entry.ee = Some(ee);
    let field = |name: &str, got: i64, want: &str| {
        Err(bad(format!(
            "origin {} {name} is {got}, the contract says {want}",
            ee.origin
        )))
    };
    match ee.origin {
        SO_EE_ORIGIN_ZEROCOPY => {
            if ee.errno != 0 {
                return field("ee_errno", ee.errno as i64, "0");
            }
            if ee.kind != 0 {
                return field("ee_type", ee.kind as i64, "0");
            }
            if ee.pad != 0 {
                return field("ee_pad", ee.pad as i64, "0");
            }
            if ee.code & !SO_EE_CODE_ZEROCOPY_COPIED != 0 {
                return field("ee_code", ee.code as i64, "0 or 1 (COPIED)");
            }
            if raw.rc != 0 {
                return field("payload length", raw.rc as i64, "0");
            }
        }
        SO_EE_ORIGIN_TIMESTAMPING => {
            if ee.errno != libc::ENOMSG as u32 {
                return field("ee_errno", ee.errno as i64, "ENOMSG");
            }
            if ee.pad != 0 {
                return field("ee_pad", ee.pad as i64, "0");
            }
        }
        SO_EE_ORIGIN_LOCAL | SO_EE_ORIGIN_ICMP | SO_EE_ORIGIN_ICMP6 => {
            if ee.errno == 0 {
                return field("ee_errno", 0, "an error number");
            }
        }
        SO_EE_ORIGIN_TXTIME => {}
        other => return Err(bad(format!("unknown ee_origin {other}"))),
    }
    Ok(entry)
}

/// The socket's family, and whether an IPv6 socket's peer is a v4-mapped address.
pub fn socket_family(fd: BorrowedFd<'_>) -> io::Result<(i32, bool)> {
    let family = super::sockopt::get_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)?;
    let mut mapped = false;
    if family == libc::AF_INET6 {
        // SAFETY: getpeername writes at most `len` bytes into the storage it is given.
        unsafe {
            let mut ss: libc::sockaddr_storage = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            if libc::getpeername(
                fd.as_raw_fd(),
                (&mut ss as *mut libc::sockaddr_storage).cast(),
                &mut len,
            ) == 0
                && ss.ss_family as i32 == libc::AF_INET6
            {
                let sin6 = &*(&ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
                let b = sin6.sin6_addr.s6_addr;
                mapped = b[..10].iter().all(|x| *x == 0) && b[10] == 0xff && b[11] == 0xff;
            }
        }
    }
    Ok((family, mapped))
}

/// Reads one error-queue message with a control buffer of `control_len` bytes and validates
/// it whole ([`validate`]). `Ok(None)` means the queue is empty; a message that breaks the
/// contract is an `io::Error` of kind `InvalidData` carrying [`Malformed`].
pub fn read_one(fd: BorrowedFd<'_>, control_len: usize) -> io::Result<Option<ErrQueueEntry>> {
    let (family, v4_mapped_peer) = socket_family(fd)?;
    // u64 storage keeps the control buffer aligned for cmsghdr.
    let mut control = vec![0u64; control_len.div_ceil(8).max(1)];
    let mut data = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: an all-zero msghdr is a valid "no name, no iov, no control" value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control_len as _;
    // SAFETY: msg points at buffers that outlive the call and whose lengths are given.
    let rc = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_ERRQUEUE) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN) => Ok(None),
            _ => Err(e),
        };
    }
    check_received(fd, family, v4_mapped_peer, control_len, rc as usize, &msg).map(Some)
}

/// Validates one message `recvmsg` or `recvmmsg` filled in `msg` (with a control buffer of
/// `control_len` bytes and `rc` payload bytes): every cmsg is walked, the whole message is
/// judged by [`validate`], and a zero-copy range goes into the socket's ledger. This is the
/// one place an error-queue message becomes an entry, whichever call read it.
pub fn check_received(
    fd: BorrowedFd<'_>,
    family: i32,
    v4_mapped_peer: bool,
    control_len: usize,
    rc: usize,
    msg: &libc::msghdr,
) -> io::Result<ErrQueueEntry> {
    let mut raw = RawMessage {
        family,
        v4_mapped_peer,
        control_len,
        rc,
        msg_flags: msg.msg_flags,
        cmsgs: Vec::new(),
    };
    let ee_size = std::mem::size_of::<libc::sock_extended_err>();
    // SAFETY: CMSG_FIRSTHDR/CMSG_NXTHDR/CMSG_DATA walk the control buffer the kernel filled,
    // bounded by msg_controllen (which the kernel set to what it wrote); the payload is read
    // unaligned and only when the cmsg is long enough.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() && raw.cmsgs.len() < 16 {
            let (level, kind, len) = (
                (*cmsg).cmsg_level,
                (*cmsg).cmsg_type,
                (*cmsg).cmsg_len as usize,
            );
            let need = libc::CMSG_LEN(ee_size as u32) as usize;
            let ee = (is_recverr(level, kind) && len >= need).then(|| {
                let raw = std::ptr::read_unaligned(
                    libc::CMSG_DATA(cmsg) as *const libc::sock_extended_err
                );
                ExtendedErr {
                    errno: raw.ee_errno,
                    origin: raw.ee_origin,
                    kind: raw.ee_type,
                    code: raw.ee_code,
                    pad: raw.ee_pad,
                    info: raw.ee_info,
                    data: raw.ee_data,
                }
            });
            raw.cmsgs.push(RawCmsg {
                level,
                kind,
                len,
                ee,
            });
            if len < std::mem::size_of::<libc::cmsghdr>() {
                break;
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    validate(&raw)
        .and_then(|entry| {
            if let (Some(c), Some(ino)) = (entry.completion(), socket_identity(fd)) {
                ledger_take(ino, c).map_err(|fault| Malformed {
                    fault,
                    evidence: raw.evidence(),
                })?;
            }
            Ok(entry)
        })
        .map_err(|m| io::Error::new(io::ErrorKind::InvalidData, m))
}

/// Every zero-copy range read so far, per socket (by inode, so a dup or a clone of the fd
/// shares it and a reused fd number does not). No range may run backwards (cover 2^31 ids
/// or more: no test issues that many) or share an id with one read before on the same
/// socket: a duplicated or overlapping notification is refused wherever it is read, even
/// in a case that never checks its id window. Which ids were issued is the case's business
/// (the model); this only needs what the reader itself saw.
static LEDGER: std::sync::Mutex<
    Option<std::collections::HashMap<u64, std::collections::BTreeMap<u32, u32>>>,
> = std::sync::Mutex::new(None);

/// The socket's inode, or None if fstat fails (then the ledger is not kept for it).
fn socket_identity(fd: BorrowedFd<'_>) -> Option<u64> {
    // SAFETY: an all-zero struct stat is a valid value for fstat to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes one struct stat for a valid fd.
    (unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } == 0).then_some(st.st_ino as u64)
}

/// Adds `c` to the ledger of socket `ino`, or says how it breaks the rules above.
pub fn ledger_take(ino: u64, c: Completion) -> Result<(), String> {
    let span = c.hi.wrapping_sub(c.lo) as u64 + 1;
    if span > 1 << 31 {
        return Err(format!(
            "notification [{}, {}] runs backwards (it would cover {span} ids)",
            c.lo, c.hi
        ));
    }
    let pieces: Vec<(u32, u32)> = if c.lo <= c.hi {
        vec![(c.lo, c.hi)]
    } else {
        vec![(c.lo, u32::MAX), (0, c.hi)]
    };
    let mut guard = LEDGER.lock().unwrap_or_else(|p| p.into_inner());
    let seen = guard
        .get_or_insert_with(Default::default)
        .entry(ino)
        .or_default();
    for &(lo, hi) in &pieces {
        if let Some((&a, &b)) = seen.range(..=hi).next_back() {
            if b >= lo {
                return Err(format!(
                    "notification [{}, {}] repeats ids already reported on this socket in [{a}, {b}]",
                    c.lo, c.hi
                ));
            }
        }
    }
    for (lo, hi) in pieces {
        seen.insert(lo, hi);
    }
    Ok(())
}

/// Reads every entry queued now (never blocks).
pub fn drain(fd: BorrowedFd<'_>) -> io::Result<Vec<ErrQueueEntry>> {
    let mut out = Vec::new();
    while let Some(e) = read_one(fd, FULL_CONTROL_LEN)? {
        out.push(e);
    }
    Ok(out)
}

/// `poll` for POLLERR on `fd` for at most `timeout`. True if the error queue is non-empty.
pub fn wait_err(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: 0,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(pfd.revents & libc::POLLERR != 0)
}

/// Collects entries until `done(&entries_so_far)` says enough, or `timeout` passes. Returns
/// what was read and whether `done` was reached. Entries are returned in arrival order.
pub fn collect_until(
    fd: BorrowedFd<'_>,
    timeout: Duration,
    mut done: impl FnMut(&[ErrQueueEntry]) -> bool,
) -> io::Result<(Vec<ErrQueueEntry>, bool)> {
    let deadline = Instant::now() + timeout;
    let mut got = drain(fd)?;
    while !done(&got) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok((got, false));
        }
        wait_err(fd, left.min(Duration::from_millis(50)))?;
        got.extend(drain(fd)?);
    }
    Ok((got, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ee(origin: u8, errno: u32, code: u8) -> ExtendedErr {
        ExtendedErr {
            errno,
            origin,
            kind: 0,
            code,
            pad: 0,
            info: 3,
            data: 5,
        }
    }

    fn recverr(family: i32, e: ExtendedErr) -> RawCmsg {
        let (level, kind) = if family == libc::AF_INET {
            (libc::SOL_IP, libc::IP_RECVERR)
        } else {
            (libc::SOL_IPV6, libc::IPV6_RECVERR)
        };
        RawCmsg {
            level,
            kind,
            len: 48,
            ee: Some(e),
        }
    }

    fn good(family: i32) -> RawMessage {
        RawMessage {
            family,
            v4_mapped_peer: false,
            control_len: FULL_CONTROL_LEN,
            rc: 0,
            msg_flags: libc::MSG_ERRQUEUE,
            cmsgs: vec![recverr(family, ee(SO_EE_ORIGIN_ZEROCOPY, 0, 1))],
        }
    }

    fn fault(raw: &RawMessage) -> String {
        validate(raw).expect_err("must be refused").fault
    }

    #[test]
    fn accepts_well_formed_notifications() {
        for family in [libc::AF_INET, libc::AF_INET6] {
            let e = validate(&good(family)).unwrap();
            let c = e.completion().unwrap();
            assert_eq!((c.lo, c.hi, c.copied), (3, 5, true));
        }
        let mut mapped = good(libc::AF_INET6);
        mapped.v4_mapped_peer = true;
        mapped.cmsgs = vec![recverr(libc::AF_INET, ee(SO_EE_ORIGIN_ZEROCOPY, 0, 0))];
        assert!(validate(&mapped).unwrap().v4_mapped_at_sol_ip);
        // A small buffer: truncation is expected, the cmsg may be absent.
        let small = RawMessage {
            control_len: 8,
            msg_flags: libc::MSG_ERRQUEUE | libc::MSG_CTRUNC,
            cmsgs: vec![],
            ..good(libc::AF_INET)
        };
        assert!(validate(&small).unwrap().ee.is_none());
    }

    #[test]
    fn refuses_every_broken_part() {
        let mut m = good(libc::AF_INET);
        m.msg_flags = 0;
        assert!(fault(&m).contains("MSG_ERRQUEUE"));
        let mut m = good(libc::AF_INET);
        m.msg_flags |= libc::MSG_CTRUNC;
        assert!(fault(&m).contains("MSG_CTRUNC"));
        let mut m = good(libc::AF_INET);
        m.cmsgs.clear();
        assert!(fault(&m).contains("no RECVERR"));
        let mut m = good(libc::AF_INET);
        m.cmsgs.push(m.cmsgs[0].clone());
        assert!(fault(&m).contains("2 RECVERR"));
        let mut m = good(libc::AF_INET);
        m.cmsgs = vec![recverr(libc::AF_INET6, ee(SO_EE_ORIGIN_ZEROCOPY, 0, 0))];
        assert!(fault(&m).contains("IPv4 socket"));
        let mut m = good(libc::AF_INET6);
        m.cmsgs = vec![recverr(libc::AF_INET, ee(SO_EE_ORIGIN_ZEROCOPY, 0, 0))];
        assert!(fault(&m).contains("IPv6 socket"));
        let mut m = good(libc::AF_INET);
        m.cmsgs[0].ee = None;
        assert!(fault(&m).contains("too short"));
        for (mutate, field) in [
            (
                (|e: &mut ExtendedErr| e.errno = 1) as fn(&mut ExtendedErr),
                "ee_errno",
            ),
            (|e| e.kind = 1, "ee_type"),
            (|e| e.pad = 1, "ee_pad"),
            (|e| e.code = 2, "ee_code"),
            (|e| e.origin = 9, "unknown ee_origin"),
        ] {
            let mut m = good(libc::AF_INET6);
            mutate(m.cmsgs[0].ee.as_mut().unwrap());
            assert!(fault(&m).contains(field), "{field}");
        }
        let mut m = good(libc::AF_INET);
        m.rc = 1;
        assert!(fault(&m).contains("payload"));
        let mut m = good(libc::AF_INET);
        m.cmsgs[0].ee = Some(ee(SO_EE_ORIGIN_TIMESTAMPING, 0, 0));
        assert!(fault(&m).contains("ENOMSG"));
    }

    #[test]
    fn the_ledger_refuses_repeats_overlaps_and_backwards_ranges() {
        let c = |lo, hi| Completion {
            lo,
            hi,
            copied: false,
        };
        let ino = u64::MAX - 7;
        assert!(ledger_take(ino, c(0, 3)).is_ok());
        assert!(ledger_take(ino, c(5, 5)).is_ok());
        assert!(ledger_take(ino, c(4, 4)).is_ok());
        assert!(ledger_take(ino, c(5, 5)).unwrap_err().contains("repeats"));
        assert!(ledger_take(ino, c(3, 9)).unwrap_err().contains("repeats"));
        assert!(ledger_take(ino, c(9, 2)).unwrap_err().contains("backwards"));
        // Another socket has its own ids.
        assert!(ledger_take(ino - 1, c(0, 3)).is_ok());
        // A short range across the u32 wrap is fine, and then taken.
        assert!(ledger_take(ino - 2, c(u32::MAX - 1, 1)).is_ok());
        assert!(ledger_take(ino - 2, c(0, 0)).is_err());
    }

    #[test]
    fn malformed_travels_inside_io_errors() {
        let m = Malformed {
            fault: "x".into(),
            evidence: "y".into(),
        };
        let io = io::Error::new(io::ErrorKind::InvalidData, m.clone());
        assert_eq!(malformed_in(&io), Some(&m));
        let other = io::Error::other("not it");
        assert_eq!(malformed_in(&other), None);
    }
}
