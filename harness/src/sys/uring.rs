//! io_uring zero-copy sends (`IORING_OP_SEND_ZC`, `IORING_OP_SENDMSG_ZC`) and plain sends,
//! over the `io-uring` crate.
//!
//! [`Ring`] owns everything a request points at (the payload, the `msghdr` and its `iovec`,
//! the registered buffers) until the kernel has said its last word about that request: the
//! notification CQE, or a first CQE without `F_MORE`. So a request can never send memory the
//! suite has already freed, whatever the kernel does with the protocol.
//!
//! Every wait is bounded: [`Ring::wait`] uses `io_uring_enter` with a timespec
//! (`IORING_ENTER_EXT_ARG`), never an unbounded `submit_and_wait`.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::types::{Fd, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring, Probe};

/// SQE flags (`IOSQE_*`), such as `SqeFlags::SKIP_SUCCESS`.
pub use io_uring::squeue::Flags as SqeFlags;

/// `IORING_OP_SEND_ZC` (6.0).
pub const OP_SEND_ZC: u8 = opcode::SendZc::CODE;
/// `IORING_OP_SENDMSG_ZC` (6.1).
pub const OP_SENDMSG_ZC: u8 = opcode::SendMsgZc::CODE;

// The `ioprio` flags of send requests; the crate keeps its copies private.
/// `IORING_RECVSEND_POLL_FIRST`.
pub const RECVSEND_POLL_FIRST: u16 = 1 << 0;
/// `IORING_RECVSEND_FIXED_BUF`: `buf_index` names a registered buffer.
pub const RECVSEND_FIXED_BUF: u16 = 1 << 2;
/// `IORING_SEND_ZC_REPORT_USAGE` (6.2): the notification's `res` says whether data was copied.
pub const SEND_ZC_REPORT_USAGE: u16 = 1 << 3;
/// `IORING_SEND_VECTORIZED` (6.17): `SEND[_ZC]` takes an `iovec` array in `addr`, its length
/// in `len`. Added by the ring for [`Payload::Vectored`] on [`SendOp::SendZc`].
pub const SEND_VECTORIZED: u16 = 1 << 5;
/// `IORING_OP_READV_FIXED` (6.15): its presence says the kernel imports registered buffers
/// through an iovec array, which is what lets `SENDMSG_ZC` use `IORING_RECVSEND_FIXED_BUF`.
pub const OP_READV_FIXED: u8 = 60;

/// `IORING_CQE_F_MORE`: another CQE (the notification) will follow for this request.
pub const CQE_F_MORE: u32 = 1 << 1;
/// `IORING_CQE_F_NOTIF`: this CQE is a zero-copy notification.
pub const CQE_F_NOTIF: u32 = 1 << 3;
/// `IORING_NOTIF_USAGE_ZC_COPIED`, in a notification's `res` (as an unsigned value).
pub const NOTIF_USAGE_ZC_COPIED: u32 = 1 << 31;

/// One completion queue entry, as plain values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cqe {
    pub user_data: u64,
    pub res: i32,
    pub flags: u32,
}

impl Cqe {
    pub fn more(&self) -> bool {
        self.flags & CQE_F_MORE != 0
    }
    pub fn notif(&self) -> bool {
        self.flags & CQE_F_NOTIF != 0
    }
}

/// Which operation a request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendOp {
    /// `IORING_OP_SEND_ZC`.
    SendZc,
    /// `IORING_OP_SENDMSG_ZC`, one iovec, no address (a connected socket).
    SendMsgZc,
    /// `IORING_OP_SEND`: an ordinary copying send, for interleaving.
    Send,
}

impl SendOp {
    pub fn is_zc(self) -> bool {
        !matches!(self, SendOp::Send)
    }
}

/// How a ring is set up: the three kinds applications use for zero-copy sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RingKind {
    /// No setup flags: completions are posted from task work or interrupts at any time.
    Default,
    /// `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN` (6.1): completions are
    /// posted only while the creating thread waits in `io_uring_enter(GETEVENTS)`.
    DeferTaskrun,
    /// `IORING_SETUP_SQPOLL`: a kernel thread consumes the submission queue.
    Sqpoll,
}

impl RingKind {
    pub const ALL: [RingKind; 3] = [RingKind::Default, RingKind::DeferTaskrun, RingKind::Sqpoll];

    pub fn tag(self) -> &'static str {
        match self {
            RingKind::Default => "default",
            RingKind::DeferTaskrun => "defer_taskrun",
            RingKind::Sqpoll => "sqpoll",
        }
    }
}

/// Where the bytes of a request come from.
#[derive(Debug, Clone)]
pub enum Payload {
    /// `data[range]` of a shared buffer the ring keeps alive while the request is in flight.
    Owned {
        data: Arc<[u8]>,
        start: usize,
        len: usize,
    },
    /// `len` bytes at `offset` of registered buffer `index` (`IORING_RECVSEND_FIXED_BUF`).
    /// An index the ring did not register is passed to the kernel as is, with a null base
    /// address: the kernel validates the index, which is what a case may want to see.
    Fixed {
        index: u16,
        offset: usize,
        len: usize,
    },
    /// Several `(start, len)` ranges of `data`, one `iovec` each: a `SENDMSG_ZC` with that
    /// many iovecs, or a `SEND_ZC` with `IORING_SEND_VECTORIZED`.
    Vectored {
        data: Arc<[u8]>,
        segments: Vec<(usize, usize)>,
    },
    /// Several `(offset, len)` ranges of registered buffer `index`, one `iovec` each, sent
    /// with `IORING_RECVSEND_FIXED_BUF` (`SENDMSG_ZC` only; 6.15).
    FixedVectored {
        index: u16,
        segments: Vec<(usize, usize)>,
    },
    /// `SENDMSG_ZC` from registered buffer `index` with iovecs at arbitrary `(address, len)`,
    /// inside the registration or not (the kernel must refuse ranges outside it).
    FixedAt {
        index: u16,
        iovecs: Vec<(usize, usize)>,
    },
    /// `len` bytes at an arbitrary address: memory the ring does not own (a mapping the case
    /// unmaps while the request is in flight) or no memory at all (address 1, for EFAULT).
    /// Safe for this process: a send only ever reads its buffer, and the kernel answers
    /// `EFAULT` for an address it cannot read.
    Raw { addr: usize, len: usize },
}

impl Payload {
    pub fn len(&self) -> usize {
        match self {
            Payload::Owned { len, .. } | Payload::Fixed { len, .. } | Payload::Raw { len, .. } => {
                *len
            }
            Payload::Vectored { segments, .. } | Payload::FixedVectored { segments, .. } => {
                segments.iter().map(|(_, l)| l).sum()
            }
            Payload::FixedAt { iovecs, .. } => iovecs.iter().map(|(_, l)| l).sum(),
        }
    }

    /// Whether the bytes come from a registered buffer.
    pub fn is_fixed(&self) -> bool {
        matches!(
            self,
            Payload::Fixed { .. } | Payload::FixedVectored { .. } | Payload::FixedAt { .. }
        )
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A send request, before submission.
#[derive(Debug, Clone)]
pub struct SendRequest {
    pub op: SendOp,
    pub payload: Payload,
    /// `msg_flags` (`MSG_NOSIGNAL` is always added: a peer that went away must give EPIPE,
    /// not kill the process).
    pub msg_flags: i32,
    /// The raw `ioprio` field: `SEND_ZC_REPORT_USAGE`, or any bits at all, including ones
    /// the kernel does not know. `RECVSEND_FIXED_BUF` is added for [`Payload::Fixed`].
    pub ioprio: u16,
    /// SQE flags such as `IOSQE_CQE_SKIP_SUCCESS`, `IOSQE_ASYNC`, `IOSQE_IO_LINK`.
    pub sqe_flags: squeue::Flags,
    pub user_data: u64,
    /// A destination address (`SEND_ZC`'s `addr2`, `SENDMSG_ZC`'s `msg_name`).
    pub dest: Dest,
    /// `SENDMSG_ZC` only: pass a NULL `msghdr` pointer instead of one describing the payload.
    pub null_msghdr: bool,
}

/// The destination of a request on an unconnected socket.
#[derive(Debug, Clone, Default)]
pub enum Dest {
    /// None: the socket is connected.
    #[default]
    None,
    /// A `sockaddr` in memory the caller can overwrite after submission (see [`DestSlot`]).
    Slot(Arc<DestSlot>),
    /// An address pointer the kernel is given as is (a bad pointer, for EFAULT), with a length.
    Raw { addr: usize, len: u32 },
}

/// A `sockaddr_storage` on the heap that the kernel reads through a pointer and the caller
/// may overwrite at any time, for instance right after submission: io_uring copies what a
/// request needs when it is submitted (`IORING_FEAT_SUBMIT_STABLE`), so a later write must
/// not change where the data goes.
pub struct DestSlot {
    storage: std::cell::UnsafeCell<libc::sockaddr_storage>,
    len: std::sync::atomic::AtomicU32,
    current: std::sync::Mutex<Option<std::net::SocketAddr>>,
}

// SAFETY: the storage is only written through `set`, with volatile writes of plain bytes; a
// concurrent reader (the kernel, or `set` on another thread) sees some sockaddr, which is the
// point of the slot; Rust code never holds a reference into it.
unsafe impl Sync for DestSlot {}
unsafe impl Send for DestSlot {}

impl std::fmt::Debug for DestSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DestSlot({:?})", self.get())
    }
}

impl DestSlot {
    pub fn new(addr: std::net::SocketAddr) -> Arc<DestSlot> {
        let slot = Arc::new(DestSlot {
            // SAFETY: all-zero is a valid (AF_UNSPEC) sockaddr_storage.
            storage: std::cell::UnsafeCell::new(unsafe { std::mem::zeroed() }),
            len: std::sync::atomic::AtomicU32::new(0),
            current: std::sync::Mutex::new(None),
        });
        slot.set(addr);
        slot
    }

    /// Overwrites the address in place.
    pub fn set(&self, addr: std::net::SocketAddr) {
        let sa = socket2::SockAddr::from(addr);
        // SAFETY: `sa` is at most a sockaddr_storage long; the destination is our own storage,
        // written byte by byte with volatile writes because the kernel may read it.
        unsafe {
            let src = sa.as_ptr() as *const u8;
            let dst = self.storage.get() as *mut u8;
            for i in 0..std::mem::size_of::<libc::sockaddr_storage>() {
                let b = if i < sa.len() as usize {
                    *src.add(i)
                } else {
                    0
                };
                std::ptr::write_volatile(dst.add(i), b);
            }
        }
        self.len
            .store(sa.len(), std::sync::atomic::Ordering::SeqCst);
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(addr);
    }

    /// The address last written.
    pub fn get(&self) -> Option<std::net::SocketAddr> {
        *self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ptr(&self) -> (*const libc::sockaddr, u32) {
        (
            self.storage.get() as *const libc::sockaddr,
            self.len.load(std::sync::atomic::Ordering::SeqCst),
        )
    }
}

impl SendRequest {
    pub fn new(op: SendOp, payload: Payload, user_data: u64) -> Self {
        SendRequest {
            op,
            payload,
            msg_flags: 0,
            ioprio: 0,
            sqe_flags: squeue::Flags::empty(),
            user_data,
            dest: Dest::None,
            null_msghdr: false,
        }
    }
}

/// One submission queue entry for [`Ring::push_all`].
pub enum Sqe<'a> {
    Send(BorrowedFd<'a>, &'a SendRequest),
    Aux(AuxOp, squeue::Flags, u64),
}

/// A request that is not a send, for chains and cancellation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuxOp {
    /// `IORING_OP_TIMEOUT` that fires after the duration (completes with `-ETIME`), or with 0
    /// once `count` other completions were posted.
    Timeout { after: Duration, count: u32 },
    /// `IORING_OP_LINK_TIMEOUT`: cancels the request it is linked behind if that one has not
    /// completed within the duration.
    LinkTimeout { after: Duration },
    /// `IORING_OP_ASYNC_CANCEL` of the request with this `user_data`.
    Cancel { target: u64 },
}

/// What the kernel may still read for a request in flight.
struct InFlight {
    _data: Option<Arc<[u8]>>,
    _msg: Option<Box<MsgParts>>,
    _dest: Option<Arc<DestSlot>>,
    _timespec: Option<Box<Timespec>>,
    zc: bool,
}

/// A `msghdr` and the iovecs it points at, kept at a stable address.
struct MsgParts {
    iovs: Vec<libc::iovec>,
    msg: libc::msghdr,
}

/// Memory behind a registered buffer.
enum FixedMem {
    Heap(Box<[u8]>),
    Mapped(Mapping),
}

impl FixedMem {
    fn as_ptr(&self) -> *const u8 {
        match self {
            FixedMem::Heap(b) => b.as_ptr(),
            FixedMem::Mapped(m) => m.ptr as *const u8,
        }
    }
    fn len(&self) -> usize {
        match self {
            FixedMem::Heap(b) => b.len(),
            FixedMem::Mapped(m) => m.len,
        }
    }
}

/// An anonymous private mapping, unmapped on drop. With `hugetlb`, backed by 2 MiB huge pages
/// (`MAP_HUGETLB`), which fails with ENOMEM when the machine has none reserved.
pub struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value.
unsafe impl Send for Mapping {}

impl Mapping {
    pub fn new(len: usize, hugetlb: bool) -> io::Result<Mapping> {
        let mut flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        if hugetlb {
            flags |= libc::MAP_HUGETLB | (21 << libc::MAP_HUGE_SHIFT);
        }
        // SAFETY: a fresh anonymous mapping at an address the kernel picks.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: p as *mut u8,
            len,
        })
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is readable and writable for `len` bytes while `self` lives.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    /// The address of byte `offset`, for [`Payload::Raw`].
    pub fn addr(&self, offset: usize) -> usize {
        self.ptr as usize + offset
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

/// An io_uring instance for sends. Field order matters: the ring is closed before the
/// buffers it may still reference are freed.
pub struct Ring {
    ring: IoUring,
    in_flight: HashMap<u64, InFlight>,
    fixed: Vec<FixedMem>,
    queued: usize,
    kind: RingKind,
}

// SAFETY: the raw pointers a `Ring` holds (inside the `msghdr`/`iovec` of requests in
// flight) point only into heap memory the same `Ring` owns, so moving it to another thread (a
// benchmark's sending thread) moves everything it refers to along with it. A ring of
// `RingKind::DeferTaskrun` is `SINGLE_ISSUER`: submitting from another thread than its
// creator makes the kernel answer EEXIST, an error the caller sees, never a memory hazard;
// the benchmark only moves default rings.
unsafe impl Send for Ring {}

impl Ring {
    /// A ring with `entries` submission slots and four times as many completion slots (every
    /// zero-copy request can post two CQEs).
    pub fn new(entries: u32) -> io::Result<Ring> {
        Ring::with_kind(entries, RingKind::Default)
    }

    /// A ring of `kind`. A kernel without the setup flags answers EINVAL; SQPOLL may be
    /// refused with EPERM where the environment does not allow a polling thread.
    pub fn with_kind(entries: u32, kind: RingKind) -> io::Result<Ring> {
        let mut b = IoUring::builder();
        b.setup_cqsize(entries * 4);
        match kind {
            RingKind::Default => {}
            RingKind::DeferTaskrun => {
                b.setup_single_issuer().setup_defer_taskrun();
            }
            RingKind::Sqpoll => {
                b.setup_sqpoll(2);
            }
        }
        let ring = b.build(entries)?;
        Ok(Ring {
            ring,
            in_flight: HashMap::new(),
            fixed: Vec::new(),
            queued: 0,
            kind,
        })
    }

    pub fn kind(&self) -> RingKind {
        self.kind
    }

    /// Whether the kernel's `IORING_REGISTER_PROBE` lists `opcode` as supported.
    pub fn supports(&self, opcode: u8) -> io::Result<bool> {
        let mut probe = Probe::new();
        self.ring.submitter().register_probe(&mut probe)?;
        Ok(probe.is_supported(opcode))
    }

    /// Registers buffers of the given sizes (zero-filled; see [`Ring::fixed_mut`]). Only
    /// once per ring.
    pub fn register_buffers(&mut self, sizes: &[usize]) -> io::Result<()> {
        assert!(
            self.fixed.is_empty(),
            "buffers are registered once per ring"
        );
        let bufs: Vec<FixedMem> = sizes
            .iter()
            .map(|&n| FixedMem::Heap(vec![0u8; n].into_boxed_slice()))
            .collect();
        self.register(bufs)
    }

    /// Registers mappings (anonymous or hugetlb) as buffers 0.., filled by the caller. Only
    /// once per ring.
    pub fn register_mappings(&mut self, maps: Vec<Mapping>) -> io::Result<()> {
        assert!(
            self.fixed.is_empty(),
            "buffers are registered once per ring"
        );
        self.register(maps.into_iter().map(FixedMem::Mapped).collect())
    }

    fn register(&mut self, bufs: Vec<FixedMem>) -> io::Result<()> {
        let iovecs: Vec<libc::iovec> = bufs
            .iter()
            .map(|b| libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            })
            .collect();
        // SAFETY: the memory is kept in `self.fixed` and never resized; it is freed only
        // after `self.ring` (field order) or by `release_buffers`, and the kernel only ever
        // reads registered memory for sends.
        unsafe { self.ring.submitter().register_buffers(&iovecs)? };
        self.fixed = bufs;
        Ok(())
    }

    /// Unregisters every buffer and frees its memory now, even with requests in flight: the
    /// kernel holds its own references to the pages an in-flight request uses (the promise
    /// a case checks), and later requests naming an index get EFAULT.
    pub fn release_buffers(&mut self) -> io::Result<()> {
        self.ring.submitter().unregister_buffers()?;
        self.fixed.clear();
        Ok(())
    }

    /// The address and length of registered buffer `index`, for [`Payload::FixedAt`].
    pub fn fixed_range(&self, index: usize) -> Option<(usize, usize)> {
        self.fixed
            .get(index)
            .map(|b| (b.as_ptr() as usize, b.len()))
    }

    /// The ring's file descriptor, for [`unregister_buffers`] from another thread.
    pub fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the ring's fd stays open as long as `self`, which the borrow outlives not.
        unsafe { BorrowedFd::borrow_raw(self.ring.as_raw_fd()) }
    }

    /// Frees the memory of the registered buffers once their registration ended (by
    /// [`unregister_buffers`]). Freeing it while still registered would not be unsafe for
    /// this process (the kernel holds its own page references) but later fixed sends would
    /// read recycled memory.
    pub fn forget_buffers(&mut self) {
        self.fixed.clear();
    }

    /// A registered buffer, to fill before sending from it.
    pub fn fixed_mut(&mut self, index: usize) -> &mut [u8] {
        match &mut self.fixed[index] {
            FixedMem::Heap(b) => b,
            FixedMem::Mapped(m) => m.as_mut_slice(),
        }
    }

    /// Queues a send on `fd`. The request is submitted by the next [`Ring::submit`] or
    /// [`Ring::wait`]. A full submission queue is flushed first.
    pub fn push(&mut self, fd: BorrowedFd<'_>, req: &SendRequest) -> io::Result<()> {
        let prepared = self.prepare(fd, req);
        self.push_entries(vec![prepared])
    }

    /// Queues several sends at once: they become visible to the kernel together, so a chain
    /// (`IOSQE_IO_LINK`) is never seen cut in two, even by an SQPOLL thread that consumes
    /// entries as soon as they are published.
    pub fn push_all(&mut self, sqes: &[Sqe<'_>]) -> io::Result<()> {
        let prepared = sqes
            .iter()
            .map(|q| match q {
                Sqe::Send(fd, r) => self.prepare(*fd, r),
                Sqe::Aux(op, flags, ud) => self.prepare_aux(*op, *flags, *ud),
            })
            .collect();
        self.push_entries(prepared)
    }

    fn prepare(&self, fd: BorrowedFd<'_>, req: &SendRequest) -> (squeue::Entry, u64, InFlight) {
        assert!(
            !self.in_flight.contains_key(&req.user_data),
            "user_data {} is already in flight",
            req.user_data
        );
        let raw: RawFd = fd.as_raw_fd();
        let msg_flags = req.msg_flags | libc::MSG_NOSIGNAL;
        let fixed_base = |index: u16, end: usize| -> *const u8 {
            match self.fixed.get(index as usize) {
                Some(b) => {
                    assert!(end <= b.len(), "range outside registered buffer");
                    b.as_ptr()
                }
                None => std::ptr::null(),
            }
        };
        // The iovecs of a vectored payload, and the single range of a flat one.
        let mut iovs: Vec<libc::iovec> = Vec::new();
        let (data, addr, buf_index) = match &req.payload {
            Payload::Owned { data, start, len } => {
                assert!(
                    start + len <= data.len(),
                    "payload range outside its buffer"
                );
                (Some(data.clone()), data[*start..].as_ptr(), None)
            }
            Payload::Fixed { index, offset, len } => {
                let base = fixed_base(*index, offset + len);
                (None, base.wrapping_add(*offset), Some(*index))
            }
            Payload::Raw { addr, .. } => (None, *addr as *const u8, None),
            Payload::Vectored { data, segments } => {
                for &(start, len) in segments {
                    assert!(start + len <= data.len(), "segment outside its buffer");
                    iovs.push(libc::iovec {
                        iov_base: data[start..].as_ptr() as *mut libc::c_void,
                        iov_len: len,
                    });
                }
                (Some(data.clone()), std::ptr::null(), None)
            }
            Payload::FixedVectored { index, segments } => {
                let end = segments.iter().map(|(o, l)| o + l).max().unwrap_or(0);
                let base = fixed_base(*index, end);
                for &(offset, len) in segments {
                    iovs.push(libc::iovec {
                        iov_base: base.wrapping_add(offset) as *mut libc::c_void,
                        iov_len: len,
                    });
                }
                (None, std::ptr::null(), Some(*index))
            }
            Payload::FixedAt { index, iovecs } => {
                for &(addr, len) in iovecs {
                    iovs.push(libc::iovec {
                        iov_base: addr as *mut libc::c_void,
                        iov_len: len,
                    });
                }
                (None, std::ptr::null(), Some(*index))
            }
        };
        let vectored = matches!(
            req.payload,
            Payload::Vectored { .. } | Payload::FixedVectored { .. } | Payload::FixedAt { .. }
        );
        if !vectored {
            iovs.push(libc::iovec {
                iov_base: addr as *mut libc::c_void,
                iov_len: req.payload.len(),
            });
        }
        let (dest_ptr, dest_len, dest_slot) = match &req.dest {
            Dest::None => (std::ptr::null(), 0, None),
            Dest::Slot(slot) => {
                let (p, l) = slot.ptr();
                (p, l, Some(slot.clone()))
            }
            Dest::Raw { addr, len } => (*addr as *const libc::sockaddr, *len, None),
        };
        let len = req.payload.len() as u32;
        let mut msg_parts = None;
        let entry = match req.op {
            SendOp::SendZc => {
                let mut parts = Box::new(MsgParts {
                    iovs,
                    // SAFETY: an all-zero msghdr is a valid, empty one.
                    msg: unsafe { std::mem::zeroed() },
                });
                let (buf, n, ioprio) = if vectored {
                    (
                        parts.iovs.as_ptr() as *const u8,
                        parts.iovs.len() as u32,
                        req.ioprio | SEND_VECTORIZED,
                    )
                } else {
                    (addr, len, req.ioprio)
                };
                let mut op = opcode::SendZc::new(Fd(raw), buf, n)
                    .flags(msg_flags)
                    .zc_flags(ioprio)
                    .dest_addr(dest_ptr)
                    .dest_addr_len(dest_len);
                if buf_index.is_some() {
                    op = op.buf_index(buf_index);
                }
                parts.msg.msg_iov = parts.iovs.as_mut_ptr();
                msg_parts = Some(parts);
                op.build()
            }
            SendOp::SendMsgZc => {
                let mut parts = Box::new(MsgParts {
                    iovs,
                    // SAFETY: an all-zero msghdr is a valid, empty one.
                    msg: unsafe { std::mem::zeroed() },
                });
                parts.msg.msg_iov = parts.iovs.as_mut_ptr();
                parts.msg.msg_iovlen = parts.iovs.len() as _;
                parts.msg.msg_name = dest_ptr as *mut libc::c_void;
                parts.msg.msg_namelen = dest_len;
                let msg: *const libc::msghdr = if req.null_msghdr {
                    std::ptr::null()
                } else {
                    &parts.msg
                };
                let mut op = opcode::SendMsgZc::new(Fd(raw), msg)
                    .flags(msg_flags as u32)
                    .ioprio(req.ioprio);
                if buf_index.is_some() {
                    op = op.buf_index(buf_index);
                }
                msg_parts = Some(parts);
                op.build()
            }
            SendOp::Send => {
                assert!(
                    buf_index.is_none() && !vectored,
                    "a plain send here has one ordinary buffer"
                );
                opcode::Send::new(Fd(raw), addr, len)
                    .flags(msg_flags)
                    .ioprio(req.ioprio)
                    .dest_addr(dest_ptr)
                    .dest_addr_len(dest_len)
                    .build()
            }
        }
        .flags(req.sqe_flags)
        .user_data(req.user_data);
        let held = InFlight {
            _data: data,
            _msg: msg_parts,
            _dest: dest_slot,
            _timespec: None,
            zc: req.op.is_zc(),
        };
        (entry, req.user_data, held)
    }

    /// Queues a request that is not a send (a timeout, a linked timeout, a cancellation),
    /// with `sqe_flags` (such as `IO_LINK` to chain what follows).
    pub fn push_aux(
        &mut self,
        op: AuxOp,
        sqe_flags: squeue::Flags,
        user_data: u64,
    ) -> io::Result<()> {
        let prepared = self.prepare_aux(op, sqe_flags, user_data);
        self.push_entries(vec![prepared])
    }

    fn prepare_aux(
        &self,
        op: AuxOp,
        sqe_flags: squeue::Flags,
        user_data: u64,
    ) -> (squeue::Entry, u64, InFlight) {
        assert!(
            !self.in_flight.contains_key(&user_data),
            "user_data {user_data} is already in flight"
        );
        let mut timespec = None;
        let entry = match op {
            AuxOp::Timeout { after, count } => {
                let ts = Box::new(Timespec::from(after));
                let e = opcode::Timeout::new(&*ts).count(count).build();
                timespec = Some(ts);
                e
            }
            AuxOp::LinkTimeout { after } => {
                let ts = Box::new(Timespec::from(after));
                let e = opcode::LinkTimeout::new(&*ts).build();
                timespec = Some(ts);
                e
            }
            AuxOp::Cancel { target } => opcode::AsyncCancel::new(target).build(),
        }
        .flags(sqe_flags)
        .user_data(user_data);
        let held = InFlight {
            _data: None,
            _msg: None,
            _dest: None,
            _timespec: timespec,
            zc: false,
        };
        (entry, user_data, held)
    }

    fn push_entries(&mut self, entries: Vec<(squeue::Entry, u64, InFlight)>) -> io::Result<()> {
        let capacity = self.ring.params().sq_entries() as usize;
        assert!(
            entries.len() <= capacity,
            "more entries than the ring holds"
        );
        // Make room for all of them; with SQPOLL a submit only wakes the kernel thread, so
        // wait (bounded) for it to consume.
        let deadline = Instant::now() + Duration::from_secs(2);
        while capacity - self.ring.submission().len() < entries.len() {
            self.submit()?;
            if Instant::now() > deadline {
                return Err(io::Error::other("the submission queue stayed full for 2 s"));
            }
            if capacity - self.ring.submission().len() < entries.len() {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        let mut sq = self.ring.submission();
        for (entry, user_data, held) in entries {
            // SAFETY: everything the entry points at (payload, msghdr, iovecs, address,
            // timespec, registered buffer) is owned by `self` and kept until the request's
            // last CQE is reaped, or is raw memory the kernel only reads (Payload::Raw,
            // Dest::Raw); a stale fd only makes the kernel answer EBADF or act on another
            // descriptor of ours.
            unsafe {
                sq.push(&entry)
                    .map_err(|_| io::Error::other("submission queue full after a flush"))?;
            }
            self.queued += 1;
            self.in_flight.insert(user_data, held);
        }
        // Dropping `sq` publishes the new tail, all entries at once.
        drop(sq);
        Ok(())
    }

    /// Submits what is queued without waiting.
    pub fn submit(&mut self) -> io::Result<usize> {
        let n = self.ring.submit()?;
        self.queued = self.queued.saturating_sub(n);
        Ok(n)
    }

    /// The completions already posted, without waiting.
    pub fn reap(&mut self) -> Vec<Cqe> {
        let mut out = Vec::new();
        for e in self.ring.completion() {
            out.push(Cqe {
                user_data: e.user_data(),
                res: e.result(),
                flags: cqueue::Entry::flags(&e),
            });
        }
        for c in &out {
            self.retire(c);
        }
        out
    }

    /// Submits what is queued and collects completions until `done(all collected so far)`
    /// holds or `timeout` passes. Returns everything collected; the caller decides what a
    /// timeout means.
    pub fn wait(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&[Cqe]) -> bool,
    ) -> io::Result<Vec<Cqe>> {
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
            wait_for_one(&self.ring.submitter(), deadline - now)?;
            self.queued = 0;
            got.extend(self.reap());
        }
    }

    /// Requests whose last CQE has not been reaped yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Frees what a request pinned once the kernel has posted its last CQE for it.
    fn retire(&mut self, c: &Cqe) {
        let last = match self.in_flight.get(&c.user_data) {
            Some(f) if f.zc => c.notif() || !c.more(),
            Some(_) => !c.more(),
            None => false,
        };
        if last {
            self.in_flight.remove(&c.user_data);
        }
    }
}

/// `IORING_UNREGISTER_BUFFERS` on a ring's fd. A plain function so that it can run on another
/// thread: before 6.x kernels quiesced the registration, this call waits until no in-flight
/// request uses the buffers any more.
pub fn unregister_buffers(ring: BorrowedFd<'_>) -> io::Result<()> {
    const IORING_UNREGISTER_BUFFERS: libc::c_long = 1;
    // SAFETY: io_uring_register with a null argument and count 0, as the opcode requires.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            ring.as_raw_fd(),
            IORING_UNREGISTER_BUFFERS,
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// What may keep `io_uring_setup` from working, read from procfs: the
/// `kernel.io_uring_disabled` sysctl (6.6+) and this process's seccomp mode.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SetupBlockers {
    /// The value of `kernel.io_uring_disabled`, if the knob exists.
    pub io_uring_disabled: Option<u32>,
    /// The `Seccomp:` field of /proc/self/status (0 none, 1 strict, 2 filter).
    pub seccomp_mode: Option<u32>,
}

impl SetupBlockers {
    pub fn read() -> Self {
        let read_u32 = |s: &str| s.trim().parse::<u32>().ok();
        let io_uring_disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
            .ok()
            .and_then(|s| read_u32(&s));
        let seccomp_mode = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Seccomp:"))
                    .and_then(read_u32)
            });
        SetupBlockers {
            io_uring_disabled,
            seccomp_mode,
        }
    }
}

/// Submits and waits for at least one completion, at most `timeout`. Running out of time
/// (ETIME), a signal (EINTR) and a full completion queue (EBUSY) all just end the wait: the
/// caller reaps what is there and decides.
pub(crate) fn wait_for_one(
    submitter: &io_uring::Submitter<'_>,
    timeout: Duration,
) -> io::Result<()> {
    let ts = Timespec::from(timeout);
    let args = SubmitArgs::new().timespec(&ts);
    match submitter.submit_with_args(1, &args) {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}
