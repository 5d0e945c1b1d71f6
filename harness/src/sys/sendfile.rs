//! `sendfile(2)`: file pages handed to a socket straight from the page cache, the sender
//! whose pages a zero-copy receiver must never map (the 6.8 "sanity checks to rx zerocopy").

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Sends up to `count` bytes of `file` from `*offset` to `socket`, advancing `*offset`.
/// Returns the bytes sent (a short count is normal for a socket with a full buffer).
pub fn sendfile(
    socket: BorrowedFd<'_>,
    file: BorrowedFd<'_>,
    offset: &mut i64,
    count: usize,
) -> io::Result<usize> {
    let mut off: libc::off_t = *offset;
    // A stop and continue interrupts a sendfile under SO_SNDTIMEO: nothing was sent.
    let rc = super::retry::retry_interrupted(super::retry::DEFAULT_BOUND, || {
        // SAFETY: `off` is a valid in/out offset; both descriptors are borrowed for the call.
        let rc = unsafe { libc::sendfile(socket.as_raw_fd(), file.as_raw_fd(), &mut off, count) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc)
        }
    })?;
    *offset = off;
    Ok(rc as usize)
}
