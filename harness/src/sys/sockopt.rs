//! Raw `setsockopt`/`getsockopt` with exact byte control, for cases that probe how the
//! kernel validates option lengths and values.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `setsockopt(fd, level, name, bytes, bytes.len())`.
pub fn set_raw(fd: BorrowedFd<'_>, level: i32, name: i32, bytes: &[u8]) -> io::Result<()> {
    // SAFETY: the pointer and length describe `bytes`, which lives across the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            bytes.as_ptr().cast(),
            bytes.len() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `getsockopt` into `buf` with an in/out length starting at `optlen` (which may differ from
/// `buf.len()` only downwards). Returns the length the kernel wrote back.
pub fn get_raw(
    fd: BorrowedFd<'_>,
    level: i32,
    name: i32,
    buf: &mut [u8],
    optlen: usize,
) -> io::Result<usize> {
    assert!(
        optlen <= buf.len(),
        "optlen beyond the buffer would let the kernel overrun it"
    );
    let mut len = optlen as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` <= buf.len() bytes into `buf`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(len as usize)
    }
}

pub fn set_int(fd: BorrowedFd<'_>, level: i32, name: i32, value: i32) -> io::Result<()> {
    set_raw(fd, level, name, &value.to_ne_bytes())
}

pub fn get_int(fd: BorrowedFd<'_>, level: i32, name: i32) -> io::Result<i32> {
    let mut b = [0u8; 4];
    get_raw(fd, level, name, &mut b, 4)?;
    Ok(i32::from_ne_bytes(b))
}
