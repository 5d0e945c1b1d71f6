//! SO_ZEROCOPY and MSG_ZEROCOPY sends.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::sockopt;

/// `MSG_ZEROCOPY` from `include/linux/socket.h`.
pub const MSG_ZEROCOPY: i32 = libc::MSG_ZEROCOPY;
/// `SO_ZEROCOPY`; its number is architecture specific, so it comes from `libc`.
pub const SO_ZEROCOPY: i32 = libc::SO_ZEROCOPY;

/// Turns `SO_ZEROCOPY` on or off.
pub fn set_so_zerocopy(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    sockopt::set_int(fd, libc::SOL_SOCKET, SO_ZEROCOPY, on as i32)
}

/// Reads `SO_ZEROCOPY` (0 or 1).
pub fn get_so_zerocopy(fd: BorrowedFd<'_>) -> io::Result<i32> {
    sockopt::get_int(fd, libc::SOL_SOCKET, SO_ZEROCOPY)
}

/// `send(fd, buf, MSG_ZEROCOPY | extra_flags)`. Returns bytes queued.
pub fn send_zc(fd: BorrowedFd<'_>, buf: &[u8], extra_flags: i32) -> io::Result<usize> {
    send_flags(fd, buf, MSG_ZEROCOPY | extra_flags)
}

/// `send(fd, buf, flags)` with exact flags (the zero-copy flag included or not).
pub fn send_flags(fd: BorrowedFd<'_>, buf: &[u8], flags: i32) -> io::Result<usize> {
    // A send under SO_SNDTIMEO answers EINTR after a stop and continue, having queued
    // nothing and taken no zero-copy id: it is made again.
    super::retry::retry_interrupted(super::retry::DEFAULT_BOUND, || {
        // SAFETY: the pointer and length describe `buf`, borrowed for the call.
        let rc = unsafe { libc::send(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), flags) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc as usize)
        }
    })
}

/// Sends `len` bytes from memory the process may not read (a PROT_NONE mapping), to make
/// the kernel fail the copy or the pin with EFAULT.
pub fn send_from_inaccessible(fd: BorrowedFd<'_>, len: usize, flags: i32) -> io::Result<usize> {
    use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};
    let size = std::num::NonZeroUsize::new(len.max(1).next_multiple_of(4096)).expect("non-zero");
    // SAFETY: a fresh private anonymous mapping; nothing in this process reads it.
    let region = unsafe { mmap_anonymous(None, size, ProtFlags::PROT_NONE, MapFlags::MAP_PRIVATE) }
        .map_err(io::Error::from)?;
    // SAFETY: the kernel validates the user pointer; the region stays mapped for the call.
    let rc = unsafe { libc::send(fd.as_raw_fd(), region.as_ptr().cast(), len, flags) };
    let result = if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    };
    // SAFETY: unmapping exactly the region mapped above.
    let _ = unsafe { munmap(region, size.get()) };
    result
}
