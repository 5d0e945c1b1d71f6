//! `sendmmsg` and `recvmmsg`: several datagrams, or several error-queue messages, in one
//! call.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::errqueue::{self, ErrQueueEntry};

/// `sendmmsg(fd, msgs, flags)` with one buffer per message, on a connected socket. Returns
/// how many messages the kernel took (fewer than given when one fails after the first).
pub fn sendmmsg(fd: BorrowedFd<'_>, bufs: &[&[u8]], flags: i32) -> io::Result<usize> {
    let mut iovs: Vec<libc::iovec> = bufs
        .iter()
        .map(|b| libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            // SAFETY: an all-zero mmsghdr is a valid "no name, no control" value.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    // SAFETY: every mmsghdr points at an iovec in `iovs`, which points into `bufs`; all
    // outlive the call, and the kernel only reads them.
    let rc = unsafe {
        libc::sendmmsg(
            fd.as_raw_fd(),
            msgs.as_mut_ptr(),
            msgs.len() as libc::c_uint,
            flags,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

/// Control space per message: one RECVERR cmsg with its offender address, and room for a
/// second cmsg.
const CONTROL_LEN: usize = 256;

/// `recvmmsg(fd, vlen messages, MSG_ERRQUEUE | MSG_DONTWAIT)`: reads up to `vlen`
/// error-queue messages in one call. An empty queue gives an empty vector. Every message is
/// validated whole by the same checks as `errqueue::read_one` (a message that breaks the
/// contract is an `InvalidData` error carrying `errqueue::Malformed`).
pub fn recvmmsg_errqueue(fd: BorrowedFd<'_>, vlen: usize) -> io::Result<Vec<ErrQueueEntry>> {
    let vlen = vlen.max(1);
    let (family, v4_mapped_peer) = errqueue::socket_family(fd)?;
    let mut data = vec![[0u8; 1]; vlen];
    // u64 storage keeps every control buffer aligned for cmsghdr.
    let mut control = vec![[0u64; CONTROL_LEN / 8]; vlen];
    let mut iovs: Vec<libc::iovec> = data
        .iter_mut()
        .map(|d| libc::iovec {
            iov_base: d.as_mut_ptr().cast(),
            iov_len: d.len(),
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .zip(control.iter_mut())
        .map(|(iov, c)| {
            // SAFETY: an all-zero mmsghdr is a valid "no name, no control" value.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m.msg_hdr.msg_control = c.as_mut_ptr().cast();
            m.msg_hdr.msg_controllen = CONTROL_LEN as _;
            m
        })
        .collect();
    // SAFETY: every mmsghdr points at buffers in `data` and `control` of the lengths given,
    // which outlive the call; no timeout is passed.
    let rc = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            msgs.as_mut_ptr(),
            vlen as libc::c_uint,
            libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN) => Ok(Vec::new()),
            _ => Err(e),
        };
    }
    msgs[..rc as usize]
        .iter()
        .map(|m| {
            errqueue::check_received(
                fd,
                family,
                v4_mapped_peer,
                CONTROL_LEN,
                m.msg_len as usize,
                &m.msg_hdr,
            )
        })
        .collect()
}
