//! io_uring zero-copy receive registration (`IORING_REGISTER_ZCRX_IFQ`, 6.15), for detection
//! only: build a ring of a chosen shape and ask the kernel to attach an interface queue.
//!
//! The kernel looks the interface up in the network namespace of the *calling thread*, and a
//! `SINGLE_ISSUER` ring accepts registrations only from the thread that created it; so call
//! [`try_register`] from inside `NetNs::run`, which does both on one thread.

use std::io;
use std::num::NonZeroUsize;
use std::ptr::NonNull;

use io_uring::types::{io_uring_region_desc, io_uring_zcrx_area_reg, io_uring_zcrx_ifq_reg};
use io_uring::{cqueue, squeue, IoUring};
use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};

/// The ring set-ups a registration can be tried on. zcrx needs `DEFER_TASKRUN` (which itself
/// needs `SINGLE_ISSUER`) and 32-byte CQEs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingShape {
    /// No special flags.
    Plain,
    /// `SINGLE_ISSUER | DEFER_TASKRUN`, 16-byte CQEs.
    DeferTaskrunOnly,
    /// `CQE32` alone.
    Cqe32Only,
    /// `SINGLE_ISSUER | DEFER_TASKRUN | CQE32`: what zcrx requires.
    Required,
}

/// Where a registration attempt stopped.
#[derive(Debug)]
pub enum ZcrxError {
    /// `io_uring_setup` refused the ring shape itself.
    Setup(io::Error),
    /// `io_uring_register(IORING_REGISTER_ZCRX_IFQ)` refused.
    Register(io::Error),
}

/// Pages of anonymous memory for the receive area, unmapped on drop.
struct Area {
    ptr: NonNull<libc::c_void>,
    len: usize,
}

impl Area {
    fn new(pages: usize) -> io::Result<Area> {
        let len = pages * page_size();
        let len_nz = NonZeroUsize::new(len).expect("an area has at least one page");
        // SAFETY: a fresh private anonymous mapping aliases nothing.
        let ptr = unsafe {
            mmap_anonymous(
                None,
                len_nz,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE,
            )
        }
        .map_err(io::Error::from)?;
        Ok(Area { ptr, len })
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `Area::new` and nothing else refers to it (a ring
        // that registered it has been dropped before, see `try_register`).
        let _ = unsafe { munmap(self.ptr, self.len) };
    }
}

fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map(|p| p as usize)
        .unwrap_or(4096)
}

/// Builds a ring of `shape` and tries to register receive queue `rxq` of interface `ifindex`
/// (in the calling thread's namespace) with a small, well-formed request: 4 refill entries,
/// a kernel-allocated refill region, a 16-page user-memory area. `Ok(())` means the kernel
/// attached the queue; the ring (and the attachment) is released before returning.
pub fn try_register(shape: RingShape, ifindex: u32, rxq: u32) -> Result<(), ZcrxError> {
    try_register_with_flags(shape, ifindex, rxq, 0)
}

/// `ZCRX_REG_NODEV`: a device-less registration (interface 0, queue 0), in which data received
/// on ordinary sockets is copied into the area (newer than 6.18).
pub const ZCRX_REG_NODEV: u32 = 2;

/// [`try_register`] with the registration's `flags` field set (such as [`ZCRX_REG_NODEV`]).
pub fn try_register_with_flags(
    shape: RingShape,
    ifindex: u32,
    rxq: u32,
    flags: u32,
) -> Result<(), ZcrxError> {
    let area = Area::new(16).map_err(ZcrxError::Register)?;
    let mut area_reg = io_uring_zcrx_area_reg {
        addr: area.ptr.as_ptr() as u64,
        len: area.len as u64,
        ..Default::default()
    };
    let mut region = io_uring_region_desc {
        size: page_size() as u64,
        ..Default::default()
    };
    let reg = io_uring_zcrx_ifq_reg {
        if_idx: ifindex,
        if_rxq: rxq,
        rq_entries: 4,
        flags,
        area_ptr: &mut area_reg as *mut _ as u64,
        region_ptr: &mut region as *mut _ as u64,
        ..Default::default()
    };
    // The register call takes `&reg` but the kernel writes offsets back into it and into the
    // area and region descriptors, which is why those are mutable locals that outlive it.
    let result = match shape {
        RingShape::Plain => register_on(IoUring::<squeue::Entry, cqueue::Entry>::builder(), &reg),
        RingShape::DeferTaskrunOnly => {
            let mut b = IoUring::<squeue::Entry, cqueue::Entry>::builder();
            b.setup_single_issuer().setup_defer_taskrun();
            register_on(b, &reg)
        }
        RingShape::Cqe32Only => {
            register_on(IoUring::<squeue::Entry, cqueue::Entry32>::builder(), &reg)
        }
        RingShape::Required => {
            let mut b = IoUring::<squeue::Entry, cqueue::Entry32>::builder();
            b.setup_single_issuer().setup_defer_taskrun();
            register_on(b, &reg)
        }
    };
    drop(area);
    result
}

fn register_on<C: cqueue::EntryMarker>(
    builder: io_uring::Builder<squeue::Entry, C>,
    reg: &io_uring_zcrx_ifq_reg,
) -> Result<(), ZcrxError> {
    let ring = builder.build(8).map_err(ZcrxError::Setup)?;
    let r = ring
        .submitter()
        .register_ifq(reg)
        .map_err(ZcrxError::Register);
    drop(ring);
    r
}
