//! `sendmmsg` and `recvmmsg`: several datagrams, or several error-queue messages, in one
//! call.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::errqueue::{ErrQueueEntry, ExtendedErr};

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
/// error-queue messages in one call. An empty queue gives an empty vector. Each entry
/// carries the RECVERR cmsg if one came back (else the first cmsg's level and type).
pub fn recvmmsg_errqueue(fd: BorrowedFd<'_>, vlen: usize) -> io::Result<Vec<ErrQueueEntry>> {
    let vlen = vlen.max(1);
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
    Ok(msgs[..rc as usize]
        .iter()
        .map(|m| parse(&m.msg_hdr))
        .collect())
}

/// The entry one received message holds.
fn parse(msg: &libc::msghdr) -> ErrQueueEntry {
    let mut entry = ErrQueueEntry {
        msg_flags: msg.msg_flags,
        cmsg_level: None,
        cmsg_type: None,
        ee: None,
    };
    let need = std::mem::size_of::<libc::sock_extended_err>();
    // SAFETY: CMSG_FIRSTHDR/CMSG_NXTHDR walk the control buffer the kernel filled, bounded
    // by msg_controllen; the payload is read unaligned, only when the cmsg is long enough.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            let (level, kind) = ((*cmsg).cmsg_level, (*cmsg).cmsg_type);
            let is_recverr = (level == libc::SOL_IP && kind == libc::IP_RECVERR)
                || (level == libc::SOL_IPV6 && kind == libc::IPV6_RECVERR);
            if entry.cmsg_level.is_none() || is_recverr {
                entry.cmsg_level = Some(level);
                entry.cmsg_type = Some(kind);
            }
            if is_recverr && (*cmsg).cmsg_len as usize >= libc::CMSG_LEN(need as u32) as usize {
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
                break;
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    entry
}
