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
}

impl Payload {
    pub fn len(&self) -> usize {
        match self {
            Payload::Owned { len, .. } | Payload::Fixed { len, .. } => *len,
        }
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
    /// SQE flags such as `IOSQE_CQE_SKIP_SUCCESS`.
    pub sqe_flags: squeue::Flags,
    pub user_data: u64,
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
        }
    }
}

/// What the kernel may still read for a request in flight.
struct InFlight {
    _data: Option<Arc<[u8]>>,
    _msg: Option<Box<MsgParts>>,
    zc: bool,
}

/// A `msghdr` and the one `iovec` it points at, kept at a stable address.
struct MsgParts {
    iov: libc::iovec,
    msg: libc::msghdr,
}

/// An io_uring instance for sends. Field order matters: the ring is closed before the
/// buffers it may still reference are freed.
pub struct Ring {
    ring: IoUring,
    in_flight: HashMap<u64, InFlight>,
    fixed: Vec<Box<[u8]>>,
    queued: usize,
}

// SAFETY: the raw pointers a `Ring` holds (inside the `msghdr`/`iovec` of requests in
// flight) point only into heap memory the same `Ring` owns, and the ring is not set up with
// `SINGLE_ISSUER`, so nothing ties it to the thread that created it: moving it to another
// thread (a benchmark's sending thread) moves everything it refers to along with it.
unsafe impl Send for Ring {}

impl Ring {
    /// A ring with `entries` submission slots and four times as many completion slots (every
    /// zero-copy request can post two CQEs).
    pub fn new(entries: u32) -> io::Result<Ring> {
        let ring = IoUring::builder()
            .setup_cqsize(entries * 4)
            .build(entries)?;
        Ok(Ring {
            ring,
            in_flight: HashMap::new(),
            fixed: Vec::new(),
            queued: 0,
        })
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
        let bufs: Vec<Box<[u8]>> = sizes
            .iter()
            .map(|&n| vec![0u8; n].into_boxed_slice())
            .collect();
        let iovecs: Vec<libc::iovec> = bufs
            .iter()
            .map(|b| libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            })
            .collect();
        // SAFETY: the boxes are kept in `self.fixed` and never resized; they are dropped only
        // after `self.ring` (field order), i.e. after the registration ends with the ring.
        unsafe { self.ring.submitter().register_buffers(&iovecs)? };
        self.fixed = bufs;
        Ok(())
    }

    /// A registered buffer, to fill before sending from it.
    pub fn fixed_mut(&mut self, index: usize) -> &mut [u8] {
        &mut self.fixed[index]
    }

    /// Queues a send on `fd`. The request is submitted by the next [`Ring::submit`] or
    /// [`Ring::wait`]. A full submission queue is flushed first.
    pub fn push(&mut self, fd: BorrowedFd<'_>, req: &SendRequest) -> io::Result<()> {
        assert!(
            !self.in_flight.contains_key(&req.user_data),
            "user_data {} is already in flight",
            req.user_data
        );
        let raw: RawFd = fd.as_raw_fd();
        let msg_flags = req.msg_flags | libc::MSG_NOSIGNAL;
        let (data, addr, buf_index) = match &req.payload {
            Payload::Owned { data, start, len } => {
                assert!(
                    start + len <= data.len(),
                    "payload range outside its buffer"
                );
                (Some(data.clone()), data[*start..].as_ptr(), None)
            }
            Payload::Fixed { index, offset, len } => {
                let base = match self.fixed.get(*index as usize) {
                    Some(b) => {
                        assert!(offset + len <= b.len(), "range outside registered buffer");
                        b.as_ptr()
                    }
                    None => std::ptr::null(),
                };
                (None, base.wrapping_add(*offset), Some(*index))
            }
        };
        let len = req.payload.len() as u32;
        let mut msg_parts = None;
        let entry = match req.op {
            SendOp::SendZc => {
                let mut op = opcode::SendZc::new(Fd(raw), addr, len)
                    .flags(msg_flags)
                    .zc_flags(req.ioprio);
                if buf_index.is_some() {
                    op = op.buf_index(buf_index);
                }
                op.build()
            }
            SendOp::SendMsgZc => {
                let mut parts = Box::new(MsgParts {
                    iov: libc::iovec {
                        iov_base: addr as *mut libc::c_void,
                        iov_len: len as usize,
                    },
                    // SAFETY: an all-zero msghdr is a valid, empty one.
                    msg: unsafe { std::mem::zeroed() },
                });
                parts.msg.msg_iov = &mut parts.iov;
                parts.msg.msg_iovlen = 1;
                let mut op = opcode::SendMsgZc::new(Fd(raw), &parts.msg)
                    .flags(msg_flags as u32)
                    .ioprio(req.ioprio);
                if buf_index.is_some() {
                    op = op.buf_index(buf_index);
                }
                msg_parts = Some(parts);
                op.build()
            }
            SendOp::Send => {
                assert!(buf_index.is_none(), "a plain send has no fixed buffer here");
                opcode::Send::new(Fd(raw), addr, len)
                    .flags(msg_flags)
                    .ioprio(req.ioprio)
                    .build()
            }
        }
        .flags(req.sqe_flags)
        .user_data(req.user_data);
        if self.ring.submission().is_full() {
            self.submit()?;
        }
        // SAFETY: everything the entry points at (payload, msghdr, iovec, registered buffer)
        // is owned by `self` and kept until the request's last CQE is reaped; a stale fd
        // only makes the kernel answer EBADF or act on another descriptor of ours.
        unsafe {
            self.ring
                .submission()
                .push(&entry)
                .map_err(|_| io::Error::other("submission queue full after a flush"))?;
        }
        self.queued += 1;
        self.in_flight.insert(
            req.user_data,
            InFlight {
                _data: data,
                _msg: msg_parts,
                zc: req.op.is_zc(),
            },
        );
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
            let ts = Timespec::from(deadline - now);
            let args = SubmitArgs::new().timespec(&ts);
            match self.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)
                    ) => {}
                Err(e) => return Err(e),
            }
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
