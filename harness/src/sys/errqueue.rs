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

/// One message read from the error queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ErrQueueEntry {
    /// `msg_flags` of the recvmsg (MSG_ERRQUEUE, and MSG_CTRUNC if the control was cut).
    pub msg_flags: i32,
    /// cmsg level and type, when a cmsg came back.
    pub cmsg_level: Option<i32>,
    pub cmsg_type: Option<i32>,
    /// The extended error, when the cmsg was a RECVERR one and fit.
    pub ee: Option<ExtendedErr>,
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

/// Reads one error-queue message with a control buffer of `control_len` bytes. `Ok(None)`
/// means the queue is empty.
pub fn read_one(fd: BorrowedFd<'_>, control_len: usize) -> io::Result<Option<ErrQueueEntry>> {
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
    let mut entry = ErrQueueEntry {
        msg_flags: msg.msg_flags,
        cmsg_level: None,
        cmsg_type: None,
        ee: None,
    };
    // SAFETY: CMSG_FIRSTHDR/CMSG_DATA walk the control buffer the kernel filled, bounded by
    // msg_controllen; the payload is read unaligned.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if !cmsg.is_null() {
            let (level, kind) = ((*cmsg).cmsg_level, (*cmsg).cmsg_type);
            entry.cmsg_level = Some(level);
            entry.cmsg_type = Some(kind);
            let is_recverr = (level == libc::SOL_IP && kind == libc::IP_RECVERR)
                || (level == libc::SOL_IPV6 && kind == libc::IPV6_RECVERR);
            let need = libc::CMSG_LEN(std::mem::size_of::<libc::sock_extended_err>() as u32);
            if is_recverr && (*cmsg).cmsg_len as usize >= need as usize {
                let raw = std::ptr::read_unaligned(
                    libc::CMSG_DATA(cmsg) as *const libc::sock_extended_err
                );
                entry.ee = Some(ExtendedErr {
                    errno: raw.ee_errno,
                    origin: raw.ee_origin,
                    kind: raw.ee_type,
                    code: raw.ee_code,
                    pad: raw.ee_pad,
                    info: raw.ee_info,
                    data: raw.ee_data,
                });
            }
        }
    }
    Ok(Some(entry))
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
