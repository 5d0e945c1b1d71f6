//! A ring with a zero-copy receive instance, for driving `IORING_OP_RECV_ZC` end to end: the
//! memory the kernel writes into (the area), the refill ring the suite hands buffers back on,
//! registration (well-formed or deliberately broken), receive requests, the refill protocol,
//! flush, export and import.
//!
//! The ring is `SINGLE_ISSUER | DEFER_TASKRUN | CQE32 | SUBMIT_ALL`, so it must be used from
//! the thread that created it; completions are only produced while that thread waits in
//! [`ZcrxRing::wait`], which always has a deadline.
//!
//! Memory safety: the area and the refill region are mappings owned by [`ZcrxRing`] and
//! dropped after the ring (field order), i.e. after the kernel released its pins on them. The
//! suite reads the area only through [`Mapping::read`], which copies out bytes the kernel has
//! finished writing (a CQE reported them).

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use io_uring::types::Fd;
use io_uring::{cqueue, opcode, squeue, IoUring};
use nix::sys::mman::{mmap_anonymous, mprotect, munmap, MapFlags, ProtFlags};

use super::zcrx_abi::{
    self, AreaReg, Ctrl, IfqReg, Offsets, RegionDesc, Rqe, AREA_OFFSET_MASK, MEM_REGION_TYPE_USER,
    REGISTER_ZCRX_IFQ, ZCRX_CTRL_EXPORT, ZCRX_CTRL_FLUSH_RQ, ZCRX_REG_IMPORT, ZCRX_REG_NODEV,
};

/// `IORING_CQE_F_MORE`.
pub const CQE_F_MORE: u32 = 1 << 1;
/// `IORING_RECVSEND_POLL_FIRST`.
pub const RECVSEND_POLL_FIRST: u16 = 1 << 0;

/// Size of the refill ring's header in the 7.x kernels (head and tail on their own 64-byte
/// cache lines); the kernel reports the real offsets at registration, this only sizes the
/// region the suite offers.
pub const RQ_HEADER: usize = 128;

pub fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map(|p| p as usize)
        .unwrap_or(4096)
}

/// Bytes of refill region `entries` need: header plus entries, rounded up to whole pages.
pub fn rq_region_size(entries: u32) -> usize {
    let raw = RQ_HEADER + entries as usize * std::mem::size_of::<Rqe>();
    raw.div_ceil(page_size()) * page_size()
}

/// An anonymous mapping, unmapped on drop. `guarded` ones have an inaccessible page on each
/// side, so that "one page before" and "one page past" the usable part are real addresses
/// the kernel cannot pin.
pub struct Mapping {
    base: NonNull<libc::c_void>,
    total: usize,
    /// Offset of the usable part from `base`.
    lead: usize,
    len: usize,
}

// SAFETY: the mapping is plain memory; access goes through `read`/`write` copies.
unsafe impl Send for Mapping {}

impl Mapping {
    fn map(total: usize, prot: ProtFlags, flags: MapFlags) -> io::Result<NonNull<libc::c_void>> {
        let len = NonZeroUsize::new(total).ok_or_else(|| io::Error::other("empty mapping"))?;
        // SAFETY: a fresh private anonymous mapping aliases nothing.
        unsafe { mmap_anonymous(None, len, prot, flags | MapFlags::MAP_PRIVATE) }
            .map_err(io::Error::from)
    }

    /// `len` bytes of read-write memory.
    pub fn anon(len: usize) -> io::Result<Mapping> {
        let base = Self::map(
            len,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::empty(),
        )?;
        Ok(Mapping {
            base,
            total: len,
            lead: 0,
            len,
        })
    }

    /// `len` bytes of `fd` at `offset`, shared (a region the kernel allocated for a ring).
    pub fn of_fd(fd: RawFd, offset: u64, len: usize) -> io::Result<Mapping> {
        let nz = NonZeroUsize::new(len).ok_or_else(|| io::Error::other("empty mapping"))?;
        // SAFETY: a fresh shared mapping of a descriptor the caller owns; nothing aliases it
        // in this process.
        let base = unsafe {
            nix::sys::mman::mmap(
                None,
                nz,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED | MapFlags::MAP_POPULATE,
                std::os::fd::BorrowedFd::borrow_raw(fd),
                offset as i64,
            )
        }
        .map_err(io::Error::from)?;
        Ok(Mapping {
            base,
            total: len,
            lead: 0,
            len,
        })
    }

    /// `len` bytes of read-only memory.
    pub fn read_only(len: usize) -> io::Result<Mapping> {
        let base = Self::map(len, ProtFlags::PROT_READ, MapFlags::empty())?;
        Ok(Mapping {
            base,
            total: len,
            lead: 0,
            len,
        })
    }

    /// `len` bytes backed by 2 MiB huge pages (`MAP_HUGETLB`); fails where none can be had.
    pub fn huge(len: usize) -> io::Result<Mapping> {
        let base = Self::map(
            len,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_HUGETLB | MapFlags::MAP_POPULATE,
        )?;
        Ok(Mapping {
            base,
            total: len,
            lead: 0,
            len,
        })
    }

    /// `len` read-write bytes between two inaccessible pages.
    pub fn guarded(len: usize) -> io::Result<Mapping> {
        let page = page_size();
        let total = len + 2 * page;
        let base = Self::map(total, ProtFlags::PROT_NONE, MapFlags::MAP_NORESERVE)?;
        let m = Mapping {
            base,
            total,
            lead: page,
            len,
        };
        // SAFETY: the range lies inside the mapping just made.
        unsafe { mprotect(m.ptr(), len, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE) }
            .map_err(io::Error::from)?;
        Ok(m)
    }

    fn ptr(&self) -> NonNull<libc::c_void> {
        // SAFETY: `lead` is inside the mapping.
        unsafe { NonNull::new_unchecked(self.base.as_ptr().cast::<u8>().add(self.lead).cast()) }
    }

    /// Address of the usable part.
    pub fn addr(&self) -> u64 {
        self.ptr().as_ptr() as u64
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Makes the usable part read-only.
    pub fn protect_read_only(&self) -> io::Result<()> {
        // SAFETY: the range is this mapping's usable part.
        unsafe { mprotect(self.ptr(), self.len, ProtFlags::PROT_READ) }.map_err(io::Error::from)
    }

    /// A copy of `len` bytes at `off` of the usable part.
    pub fn read(&self, off: usize, len: usize) -> Vec<u8> {
        assert!(off + len <= self.len, "read past the mapping");
        let mut out = vec![0u8; len];
        // SAFETY: in bounds (asserted); the kernel does not write this range while the suite
        // holds the buffer (it was reported by a CQE and not yet returned).
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr().as_ptr().cast::<u8>().add(off),
                out.as_mut_ptr(),
                len,
            )
        };
        out
    }

    /// Writes `bytes` at `off` (before the mapping is given to the kernel).
    pub fn write(&self, off: usize, bytes: &[u8]) {
        assert!(off + bytes.len() <= self.len, "write past the mapping");
        // SAFETY: in bounds; the caller owns the memory (not registered yet).
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.ptr().as_ptr().cast::<u8>().add(off),
                bytes.len(),
            )
        };
    }

    fn atomic_u32(&self, off: usize) -> &AtomicU32 {
        assert!(
            off + 4 <= self.len && off.is_multiple_of(4),
            "misplaced ring word"
        );
        // SAFETY: aligned, in bounds, and shared with the kernel only as a 32-bit word.
        unsafe {
            &*(self
                .ptr()
                .as_ptr()
                .cast::<u8>()
                .add(off)
                .cast::<AtomicU32>())
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by this value and is unmapped once.
        let _ = unsafe { munmap(self.base, self.total) };
    }
}

/// The raw inputs of one registration. Every field goes to the kernel as given, so a case
/// can break exactly one thing.
#[derive(Debug, Clone, Copy, Default)]
pub struct RegSpec {
    pub flags: u32,
    pub if_idx: u32,
    pub if_rxq: u32,
    pub rq_entries: u32,
    pub rx_buf_len: u32,
    pub area: AreaReg,
    /// `None`: a null `region_ptr`.
    pub region: Option<RegionDesc>,
    /// A null `area_ptr`.
    pub null_area_ptr: bool,
    /// Put the registration structs in read-only memory (the kernel must write answers back).
    pub read_only_structs: bool,
}

/// What a successful registration answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    pub zcrx_id: u32,
    /// The refill ring's entries after the kernel rounded them.
    pub rq_entries: u32,
    pub offsets: Offsets,
    pub area_token: u64,
    pub rx_buf_len: u32,
    /// Where to `mmap` the ring descriptor for a refill region the kernel allocated.
    pub region_mmap_offset: u64,
}

/// The three structures the kernel reads, adjacent so they can be made read-only together.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct RegBlock {
    reg: IfqReg,
    area: AreaReg,
    region: RegionDesc,
}

/// Where a setup or registration stopped.
#[derive(Debug)]
pub enum RingError {
    /// `io_uring_setup` refused.
    Setup(io::Error),
    /// The registration refused.
    Register(io::Error),
    /// The suite could not map memory.
    Memory(io::Error),
}

impl std::fmt::Display for RingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RingError::Setup(e) => write!(f, "io_uring_setup: {e}"),
            RingError::Register(e) => write!(f, "IORING_REGISTER_ZCRX_IFQ: {e}"),
            RingError::Memory(e) => write!(f, "mapping memory: {e}"),
        }
    }
}

impl std::error::Error for RingError {}

/// One completion, with the zcrx half of a 32-byte CQE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZcCqe {
    pub user_data: u64,
    pub res: i32,
    pub flags: u32,
    /// The raw `io_uring_zcrx_cqe.off`: area id in the top bits, offset below.
    pub off: u64,
}

impl ZcCqe {
    pub fn more(&self) -> bool {
        self.flags & CQE_F_MORE != 0
    }
    /// Offset inside the area.
    pub fn area_offset(&self) -> u64 {
        self.off & AREA_OFFSET_MASK
    }
}

/// A zcrx-capable ring and, once registered, its instance's memory. Field order matters:
/// the ring goes first, the memory it pinned after.
pub struct ZcrxRing {
    ring: IoUring<squeue::Entry, cqueue::Entry32>,
    instance: Option<Registered>,
    area: Option<Mapping>,
    rq: Option<Mapping>,
    rq_tail: u32,
    queued: usize,
}

impl ZcrxRing {
    /// A ring set up as zcrx requires, with room for `cq` completions. `clamp` adds
    /// `IORING_SETUP_CLAMP` (which also governs oversized refill rings).
    pub fn new(cq: u32, clamp: bool) -> Result<ZcrxRing, RingError> {
        let mut b = IoUring::<squeue::Entry, cqueue::Entry32>::builder();
        b.setup_single_issuer()
            .setup_defer_taskrun()
            .setup_submit_all()
            .setup_cqsize(cq);
        if clamp {
            b.setup_clamp();
        }
        let ring = b.build(64).map_err(RingError::Setup)?;
        Ok(ZcrxRing {
            ring,
            instance: None,
            area: None,
            rq: None,
            rq_tail: 0,
            queued: 0,
        })
    }

    pub fn fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }

    /// Sends `spec` to the kernel as is; on success the answer, whose memory the caller must
    /// keep alive as long as this ring (or hand over with [`ZcrxRing::adopt`]).
    pub fn register_raw(&mut self, spec: &RegSpec) -> io::Result<Registered> {
        register_on_fd(self.fd(), spec)
    }
}

/// Sends `spec` to the kernel as is on ring `fd`; see [`ZcrxRing::register_raw`].
pub fn register_on_fd(fd: RawFd, spec: &RegSpec) -> io::Result<Registered> {
    {
        let page = page_size();
        let block_len = std::mem::size_of::<RegBlock>().div_ceil(page) * page;
        let mem = Mapping::anon(block_len)?;
        let base = mem.addr();
        let area_addr = base + std::mem::offset_of!(RegBlock, area) as u64;
        let region_addr = base + std::mem::offset_of!(RegBlock, region) as u64;
        let mut block = RegBlock {
            reg: IfqReg {
                if_idx: spec.if_idx,
                if_rxq: spec.if_rxq,
                rq_entries: spec.rq_entries,
                flags: spec.flags,
                area_ptr: if spec.null_area_ptr { 0 } else { area_addr },
                region_ptr: if spec.region.is_some() {
                    region_addr
                } else {
                    0
                },
                rx_buf_len: spec.rx_buf_len,
                ..Default::default()
            },
            area: spec.area,
            region: spec.region.unwrap_or_default(),
        };
        // SAFETY: `RegBlock` is plain old data.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                &block as *const RegBlock as *const u8,
                std::mem::size_of::<RegBlock>(),
            )
        };
        mem.write(0, bytes);
        if spec.read_only_structs {
            mem.protect_read_only()?;
        }
        // SAFETY: the block lives in `mem` until after the call; the kernel reads it and
        // writes answers into it (EFAULT when it is read-only).
        unsafe { zcrx_abi::register(fd, REGISTER_ZCRX_IFQ, base as *mut _, 1)? };
        let out = mem.read(0, std::mem::size_of::<RegBlock>());
        // SAFETY: the bytes are a `RegBlock` the kernel filled in.
        block = unsafe { std::ptr::read_unaligned(out.as_ptr() as *const RegBlock) };
        Ok(Registered {
            zcrx_id: block.reg.zcrx_id,
            rq_entries: block.reg.rq_entries,
            offsets: block.reg.offsets,
            area_token: block.area.rq_area_token,
            rx_buf_len: block.reg.rx_buf_len,
            region_mmap_offset: block.region.mmap_offset,
        })
    }
}

impl ZcrxRing {
    /// Registers a device-less instance over `area` with a refill ring of `rq_entries` in
    /// user memory, and keeps both mappings for the ring's lifetime.
    pub fn register_nodev(&mut self, area: Mapping, rq_entries: u32) -> io::Result<Registered> {
        let rq = Mapping::anon(rq_region_size(rq_entries))?;
        let spec = RegSpec {
            flags: ZCRX_REG_NODEV,
            rq_entries,
            area: AreaReg {
                addr: area.addr(),
                len: area.len() as u64,
                ..Default::default()
            },
            region: Some(RegionDesc {
                user_addr: rq.addr(),
                size: rq.len() as u64,
                flags: MEM_REGION_TYPE_USER,
                ..Default::default()
            }),
            ..Default::default()
        };
        let reg = self.register_raw(&spec)?;
        self.adopt(reg, area, rq);
        Ok(reg)
    }

    /// Registers a device-less instance over `area` with a refill ring of `rq_entries` that
    /// the kernel allocates, mapped through the ring descriptor at the offset it answers.
    pub fn register_nodev_kernel_region(
        &mut self,
        area: Mapping,
        rq_entries: u32,
    ) -> io::Result<Registered> {
        let size = rq_region_size(rq_entries);
        let spec = RegSpec {
            flags: ZCRX_REG_NODEV,
            rq_entries,
            area: AreaReg {
                addr: area.addr(),
                len: area.len() as u64,
                ..Default::default()
            },
            region: Some(RegionDesc {
                size: size as u64,
                ..Default::default()
            }),
            ..Default::default()
        };
        let reg = self.register_raw(&spec)?;
        let rq = Mapping::of_fd(self.fd(), reg.region_mmap_offset, size)?;
        self.adopt(reg, area, rq);
        Ok(reg)
    }

    /// Makes `reg` this ring's instance, with the memory it uses.
    pub fn adopt(&mut self, reg: Registered, area: Mapping, rq: Mapping) {
        self.instance = Some(reg);
        self.area = Some(area);
        self.rq = Some(rq);
        self.rq_tail = 0;
    }

    pub fn instance(&self) -> Option<Registered> {
        self.instance
    }

    pub fn area(&self) -> Option<&Mapping> {
        self.area.as_ref()
    }

    /// Imports the instance exported as `box_fd`; the new id on this ring.
    pub fn import(&mut self, box_fd: RawFd) -> io::Result<u32> {
        let mut reg = IfqReg {
            flags: ZCRX_REG_IMPORT,
            if_idx: box_fd as u32,
            ..Default::default()
        };
        // SAFETY: `reg` is a live, writable `io_uring_zcrx_ifq_reg`.
        unsafe {
            zcrx_abi::register(
                self.fd(),
                REGISTER_ZCRX_IFQ,
                &mut reg as *mut IfqReg as *mut _,
                1,
            )?
        };
        Ok(reg.zcrx_id)
    }

    /// `ZCRX_CTRL_FLUSH_RQ` for instance `id`.
    pub fn flush(&self, id: u32) -> io::Result<()> {
        let mut c = Ctrl {
            zcrx_id: id,
            op: ZCRX_CTRL_FLUSH_RQ,
            ..Default::default()
        };
        zcrx_abi::ctrl(self.fd(), &mut c).map(drop)
    }

    /// `ZCRX_CTRL_EXPORT` for instance `id`: the descriptor that carries it.
    pub fn export(&self, id: u32) -> io::Result<OwnedFd> {
        let mut c = Ctrl {
            zcrx_id: id,
            op: ZCRX_CTRL_EXPORT,
            ..Default::default()
        };
        zcrx_abi::ctrl(self.fd(), &mut c)?;
        let fd = c.data[0] as RawFd;
        if fd < 0 {
            return Err(io::Error::other(
                "export answered 0 with a negative descriptor",
            ));
        }
        // SAFETY: the kernel installed `fd` for this process and nothing else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Queues `IORING_OP_RECV_ZC` on `fd` for instance `zcrx_id`, at most `len` bytes
    /// (0: no limit). Always multishot, as the kernel requires.
    pub fn push_recv(
        &mut self,
        fd: RawFd,
        len: u32,
        zcrx_id: u32,
        user_data: u64,
        ioprio: u16,
    ) -> io::Result<()> {
        let entry = opcode::RecvZc::new(Fd(fd), len)
            .ifq(zcrx_id)
            .ioprio(ioprio)
            .build()
            .user_data(user_data);
        if self.ring.submission().is_full() {
            self.submit()?;
        }
        // SAFETY: RECV_ZC carries no user pointer; the kernel writes into the registered
        // area, which this ring keeps mapped until it is closed.
        unsafe {
            self.ring
                .submission()
                .push(&entry)
                .map_err(|_| io::Error::other("submission queue full after a flush"))?;
        }
        self.queued += 1;
        Ok(())
    }

    pub fn submit(&mut self) -> io::Result<usize> {
        let n = self.ring.submit()?;
        self.queued = self.queued.saturating_sub(n);
        Ok(n)
    }

    fn reap(&mut self) -> Vec<ZcCqe> {
        self.ring
            .completion()
            .map(|e| {
                let big = e.big_cqe();
                ZcCqe {
                    user_data: e.user_data(),
                    res: e.result(),
                    flags: e.flags(),
                    off: big[0],
                }
            })
            .collect()
    }

    /// Submits what is queued and collects completions until `done(all so far)` or the
    /// deadline. Returns everything collected.
    pub fn wait(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&[ZcCqe]) -> bool,
    ) -> io::Result<Vec<ZcCqe>> {
        let deadline = Instant::now() + timeout;
        let mut got = self.reap();
        loop {
            if self.queued > 0 {
                self.submit()?;
            }
            if done(&got) {
                return Ok(got);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(got);
            }
            super::uring::wait_for_one(&self.ring.submitter(), deadline - now)?;
            self.queued = 0;
            got.extend(self.reap());
        }
    }

    /// Entries on the refill ring the kernel has not consumed yet.
    pub fn rq_pending(&self) -> u32 {
        match (&self.rq, &self.instance) {
            (Some(rq), Some(reg)) => {
                let head = rq
                    .atomic_u32(reg.offsets.head as usize)
                    .load(Ordering::Acquire);
                self.rq_tail.wrapping_sub(head)
            }
            _ => 0,
        }
    }

    /// Puts one buffer (an area offset and length from a CQE) on the refill ring. `false`
    /// when the ring is full (flush first).
    pub fn give_back(&mut self, area_offset: u64, len: u32) -> bool {
        let (Some(rq), Some(reg)) = (&self.rq, &self.instance) else {
            return false;
        };
        if self.rq_pending() >= reg.rq_entries {
            return false;
        }
        let idx = (self.rq_tail & (reg.rq_entries - 1)) as usize;
        let rqe = Rqe {
            off: (area_offset & AREA_OFFSET_MASK) | reg.area_token,
            len,
            pad: 0,
        };
        // SAFETY: `Rqe` is plain old data.
        let bytes = unsafe {
            std::slice::from_raw_parts(&rqe as *const Rqe as *const u8, std::mem::size_of::<Rqe>())
        };
        rq.write(
            reg.offsets.rqes as usize + idx * std::mem::size_of::<Rqe>(),
            bytes,
        );
        self.rq_tail = self.rq_tail.wrapping_add(1);
        rq.atomic_u32(reg.offsets.tail as usize)
            .store(self.rq_tail, Ordering::Release);
        true
    }
}

/// Builds a required ring and sends `spec` (memory given by the caller), then closes the
/// ring. For registration error cases.
pub fn try_spec(spec: &RegSpec, clamp: bool) -> Result<Registered, RingError> {
    let mut ring = ZcrxRing::new(64, clamp)?;
    ring.register_raw(spec).map_err(RingError::Register)
}

/// `IORING_SETUP_*` flags of the ring shapes [`try_spec_with_setup`] is given.
pub mod setup {
    pub const CQE32: u32 = 1 << 11;
    pub const SINGLE_ISSUER: u32 = 1 << 12;
    pub const DEFER_TASKRUN: u32 = 1 << 13;
    /// 6.18: 16- and 32-byte CQEs on one ring.
    pub const CQE_MIXED: u32 = 1 << 18;
}

/// Sets up a ring with raw `flags` (only its descriptor is used: nothing is mapped), sends
/// `spec`, and closes it. For ring shapes the `io-uring` crate cannot build.
pub fn try_spec_with_setup(spec: &RegSpec, flags: u32) -> Result<Registered, RingError> {
    // `struct io_uring_params` is 120 bytes; `flags` is its third u32.
    let mut p = [0u8; 120];
    p[8..12].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: `p` is a 120-byte `struct io_uring_params` with only `flags` set.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 8u32, p.as_mut_ptr()) };
    if fd < 0 {
        return Err(RingError::Setup(io::Error::last_os_error()));
    }
    // SAFETY: a fresh descriptor nothing else owns.
    let ring = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    register_on_fd(ring.as_raw_fd(), spec).map_err(RingError::Register)
}

/// A well-formed device-less request over `area` and refill memory `rq`.
pub fn nodev_spec(area: &Mapping, rq: &Mapping, rq_entries: u32) -> RegSpec {
    RegSpec {
        flags: ZCRX_REG_NODEV,
        rq_entries,
        area: AreaReg {
            addr: area.addr(),
            len: area.len() as u64,
            ..Default::default()
        },
        region: Some(RegionDesc {
            user_addr: rq.addr(),
            size: rq.len() as u64,
            flags: MEM_REGION_TYPE_USER,
            ..Default::default()
        }),
        ..Default::default()
    }
}
