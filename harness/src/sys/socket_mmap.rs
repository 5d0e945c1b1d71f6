//! `mmap()` of a socket, as a value that unmaps itself on drop.
//!
//! Rust code never holds a reference into a socket mapping: its pages come and go under the
//! kernel's control (`TCP_ZEROCOPY_RECEIVE` zaps a range and inserts pages into it; a page
//! never filled raises SIGBUS when touched). So the mapping is read by copying it out with
//! `process_vm_readv` on the own process, which reports a missing page as a short read
//! instead of a signal: a kernel that claims to have mapped more than it did becomes
//! evidence, not a crash.
//!
//! Each mapping sits between two `PROT_NONE` anonymous guard pages, so the addresses just
//! outside it are known to be ordinary memory, never another socket's mapping that the
//! allocator happened to place next to it.

use std::io;
use std::io::IoSliceMut;
use std::num::NonZeroUsize;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;

use nix::sys::mman::{self, MapFlags, MmapAdvise, ProtFlags};
use nix::sys::uio::{process_vm_readv, RemoteIoVec};

pub use nix::sys::mman::ProtFlags as Prot;

/// The page size of this machine.
pub fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map(|v| v as usize)
        .unwrap_or(4096)
}

/// `MAP_SHARED` or `MAP_PRIVATE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sharing {
    Shared,
    Private,
}

/// A mapping of a socket (normally a TCP socket, for zero-copy receive).
#[derive(Debug)]
pub struct SocketMapping {
    /// Start of the reservation: guard page, mapping, guard page.
    reservation: NonNull<libc::c_void>,
    reserved_len: usize,
    start: usize,
    len: usize,
}

// SAFETY: the mapping is plain address space; no Rust reference points into it, and every
// access goes through system calls, so it may move between threads.
unsafe impl Send for SocketMapping {}
unsafe impl Sync for SocketMapping {}

impl SocketMapping {
    /// Maps `len` bytes (rounded up to whole pages) of socket `fd` at file offset `offset`.
    /// The kernel's answer is returned as is: `EPERM` for a writable TCP mapping, `ENODEV`
    /// for a socket type without mmap.
    pub fn new(
        fd: BorrowedFd<'_>,
        len: usize,
        prot: ProtFlags,
        sharing: Sharing,
        offset: i64,
    ) -> io::Result<Self> {
        let page = page_size();
        let len = len.max(1).next_multiple_of(page);
        let reserved_len = len + 2 * page;
        // SAFETY: a fresh anonymous reservation; nothing else refers to it.
        let reservation = unsafe {
            mman::mmap_anonymous(
                None,
                NonZeroUsize::new(reserved_len).expect("non-zero"),
                ProtFlags::PROT_NONE,
                MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE,
            )
        }
        .map_err(io::Error::from)?;
        let start = reservation.as_ptr() as usize + page;
        let flags = match sharing {
            Sharing::Shared => MapFlags::MAP_SHARED,
            Sharing::Private => MapFlags::MAP_PRIVATE,
        } | MapFlags::MAP_FIXED;
        // SAFETY: MAP_FIXED replaces pages inside the reservation made above, which this
        // value owns; no Rust reference points into it.
        let mapped = unsafe {
            mman::mmap(
                NonZeroUsize::new(start),
                NonZeroUsize::new(len).expect("non-zero"),
                prot,
                flags,
                fd,
                offset,
            )
        };
        let this = SocketMapping {
            reservation,
            reserved_len,
            start,
            len,
        };
        match mapped {
            Ok(p) if p.as_ptr() as usize == start => Ok(this),
            Ok(_) => Err(io::Error::other("MAP_FIXED mapping landed elsewhere")),
            Err(e) => Err(io::Error::from(e)),
        }
    }

    /// The mapping zero-copy receive uses: `PROT_READ`, from offset 0.
    pub fn readable(fd: BorrowedFd<'_>, len: usize, sharing: Sharing) -> io::Result<Self> {
        Self::new(fd, len, ProtFlags::PROT_READ, sharing, 0)
    }

    /// The first byte of the mapping, as the kernel's `address` field wants it.
    pub fn addr(&self) -> u64 {
        self.start as u64
    }

    /// One past the last byte.
    pub fn end(&self) -> u64 {
        (self.start + self.len) as u64
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies up to `len` bytes from `offset` into a vector. The result is shorter than
    /// asked exactly when a page of the range is not mapped (where a plain read would raise
    /// SIGBUS); its length says where the hole starts.
    pub fn read(&self, offset: usize, len: usize) -> io::Result<Vec<u8>> {
        if offset.checked_add(len).is_none_or(|e| e > self.len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "read of {len} bytes at {offset} outside a {}-byte mapping",
                    self.len
                ),
            ));
        }
        let mut out = vec![0u8; len];
        let mut done = 0;
        // process_vm_readv stops at the first page it cannot fault in and reports what it
        // copied; a call that copies nothing answers EFAULT.
        while done < len {
            let remote = [RemoteIoVec {
                base: self.start + offset + done,
                len: len - done,
            }];
            let mut local = [IoSliceMut::new(&mut out[done..])];
            match process_vm_readv(nix::unistd::getpid(), &mut local, &remote) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(nix::errno::Errno::EFAULT) => break,
                Err(e) => return Err(io::Error::from(e)),
            }
        }
        out.truncate(done);
        Ok(out)
    }

    /// `madvise(MADV_DONTNEED)` on a range: drops the pages a zero-copy receive mapped there.
    pub fn discard(&self, offset: usize, len: usize) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        let ptr = NonNull::new((self.start + offset) as *mut libc::c_void).expect("non-null");
        // SAFETY: the range lies in this mapping, which no Rust reference points into.
        unsafe { mman::madvise(ptr, len, MmapAdvise::MADV_DONTNEED) }.map_err(io::Error::from)
    }

    /// `mprotect` of the whole mapping; the kernel's answer is returned as is.
    pub fn mprotect(&self, prot: ProtFlags) -> io::Result<()> {
        let ptr = NonNull::new(self.start as *mut libc::c_void).expect("non-null");
        // SAFETY: changes only this mapping's protection; no Rust reference points into it,
        // so even a protection the kernel should have refused cannot break Rust's rules.
        unsafe { mman::mprotect(ptr, self.len, prot) }.map_err(io::Error::from)
    }

    /// The page just below the mapping: an anonymous `PROT_NONE` guard page.
    pub fn guard_below(&self) -> u64 {
        (self.start - page_size()) as u64
    }

    /// The page just above the mapping: the other guard page.
    pub fn guard_above(&self) -> u64 {
        (self.start + self.len) as u64
    }
}

impl Drop for SocketMapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the reservation this value made (guards and mapping).
        let _ = unsafe { mman::munmap(self.reservation, self.reserved_len) };
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn a_udp_socket_cannot_be_mapped_and_nothing_leaks() {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        let e = SocketMapping::new(s.as_fd(), 4096, ProtFlags::PROT_READ, Sharing::Shared, 0)
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENODEV));
    }

    #[test]
    fn an_unfilled_tcp_mapping_reads_short_instead_of_raising_sigbus() {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let m =
            SocketMapping::new(s.as_fd(), 8192, ProtFlags::PROT_READ, Sharing::Shared, 0).unwrap();
        assert_eq!(m.len(), 8192);
        assert_eq!(m.read(0, 4096).unwrap().len(), 0);
        assert!(m.read(4096, 8192).is_err());
        m.discard(0, 8192).unwrap();
        assert_eq!(m.guard_above() - m.guard_below(), 8192 + 4096);
    }
}
