//! One repetition of one mode: a sending thread and, on paths that deliver, a receiving
//! thread, each pinned to its own CPU where there are two, each timing its own CPU clock
//! around its loop and nothing else (set-up, rings and mappings are made before).
//!
//! Neither side touches the payload: the copy receiver reads into a buffer it never looks
//! at, the zero-copy receiver maps pages it never reads. What is measured is the cost of
//! delivering bytes, not of using them.
//!
//! Every wait is bounded: sockets carry send/receive timeouts, ring and error-queue waits a
//! deadline, and a repetition that overruns its deadline is an error, never a hang.

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::AsFd;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use harness::sys::cpu_clock::thread_cpu_time;
use harness::sys::errqueue;
use harness::sys::socket_mmap::{page_size, SocketMapping};
use harness::sys::tcp_zc_receive::{field_end, ZcCall};
use harness::sys::uring::{
    Payload, Ring, SendOp, SendRequest, NOTIF_USAGE_ZC_COPIED, SEND_ZC_REPORT_USAGE,
};
use harness::sys::zerocopy::{send_flags, MSG_ZEROCOPY};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use socket2::Socket;

use super::modes::Mode;
use crate::probes::io_errno;

/// Requests an io_uring sender keeps in flight (first completion or notification pending).
const URING_DEPTH: usize = 8;
/// Unread MSG_ZEROCOPY ids after which the sender reads its error queue.
const DRAIN_AT: u64 = 32;
/// The chunk the sender of the receive series writes: the 15 pages one segment carries on
/// the page-aligned MTU of the receive networks.
pub const RX_SENDER_CHUNK: usize = 15 * 4096;

/// What one repetition measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct RepResult {
    pub bytes: u64,
    pub messages: u64,
    pub wall: Duration,
    pub sender_cpu: Duration,
    pub receiver_cpu: Option<Duration>,
    /// Zero-copy sends whose completion said the kernel copied, and all zero-copy sends
    /// completed (MSG_ZEROCOPY ids, or io_uring notifications with usage reports).
    pub zc_copied: u64,
    pub zc_completed: u64,
    /// Zero-copy receive: bytes the kernel mapped (the rest came through `recv()`).
    pub rx_mapped: Option<u64>,
}

/// The CPUs the two threads are pinned to (`None`: not pinned).
#[derive(Debug, Clone, Copy)]
pub struct Pins {
    pub sender: Option<usize>,
    pub receiver: Option<usize>,
}

/// The sending end of one arm: the socket and what its mode needs across repetitions.
pub struct SendEnd {
    pub sock: Socket,
    pub stream: bool,
    pub ring: Option<Ring>,
    pub buf: Arc<[u8]>,
    /// io_uring: ask for usage reports on notifications.
    pub report_usage: bool,
}

/// The receiving end of one arm.
pub struct RecvEnd {
    pub sock: Socket,
    pub map: Option<SocketMapping>,
}

/// One repetition: `mode` moves `messages` messages of `size` bytes from `tx` to `rx`.
/// For a send mode, `size` is the sender's message and the receiver reads with a large
/// copy buffer; for a receive mode, `size` is the receiver's unit and the sender writes
/// MSG_ZEROCOPY chunks of [`RX_SENDER_CHUNK`] (what makes pages mappable on one host).
pub fn repetition(
    mode: Mode,
    size: usize,
    messages: u64,
    tx: &mut SendEnd,
    rx: Option<&mut RecvEnd>,
    pins: Pins,
    limit: Duration,
) -> Result<RepResult> {
    let total = size as u64 * messages;
    let deadline = Instant::now() + limit;
    let barrier = Barrier::new(if rx.is_some() { 2 } else { 1 });
    std::thread::scope(|s| {
        let barrier = &barrier;
        let sender = s.spawn(move || -> Result<(Timed, SendStats)> {
            pin(pins.sender);
            barrier.wait();
            timed(|| match mode {
                Mode::SendCopy => send_copy(tx, size, messages, deadline),
                Mode::MsgZerocopy => send_msg_zerocopy(tx, size, total, deadline),
                Mode::UringSend | Mode::UringSendZc | Mode::UringSendZcFixed => {
                    send_uring(tx, mode, size, messages, deadline)
                }
                Mode::RecvCopy | Mode::TcpZerocopyReceive => {
                    send_msg_zerocopy(tx, RX_SENDER_CHUNK, total, deadline)
                }
                Mode::ZcrxNodev => bail!("{} has no loop in this zccheck", mode.id()),
            })
        });
        let receiver = rx.map(|rx| {
            s.spawn(move || -> Result<(Timed, Option<u64>)> {
                pin(pins.receiver);
                barrier.wait();
                timed(|| match mode {
                    Mode::TcpZerocopyReceive => {
                        recv_tcp_zerocopy(rx, size, total, deadline).map(Some)
                    }
                    Mode::RecvCopy => recv_copy(&rx.sock, size, total, deadline).map(|()| None),
                    _ => recv_copy(&rx.sock, 256 * 1024, total, deadline).map(|()| None),
                })
            })
        });
        let (st, stats) = join(sender).context("sending")?;
        let (rt, rx_mapped) = match receiver {
            Some(h) => {
                let (t, mapped) = join(h).context("receiving")?;
                (Some(t), mapped)
            }
            None => (None, None),
        };
        let end = rt.map_or(st.end, |r| r.end.max(st.end));
        let start = rt.map_or(st.start, |r| r.start.min(st.start));
        Ok(RepResult {
            bytes: total,
            messages,
            wall: end - start,
            sender_cpu: st.cpu,
            receiver_cpu: rt.map(|r| r.cpu),
            zc_copied: stats.copied,
            zc_completed: stats.completed,
            rx_mapped,
        })
    })
}

fn join<T>(h: std::thread::ScopedJoinHandle<'_, Result<T>>) -> Result<T> {
    match h.join() {
        Ok(r) => r,
        Err(p) => std::panic::resume_unwind(p),
    }
}

#[derive(Debug, Clone, Copy)]
struct Timed {
    start: Instant,
    end: Instant,
    cpu: Duration,
}

fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(Timed, T)> {
    let cpu0 = thread_cpu_time().context("reading the thread CPU clock")?;
    let start = Instant::now();
    let v = f()?;
    let end = Instant::now();
    let cpu1 = thread_cpu_time().context("reading the thread CPU clock")?;
    Ok((
        Timed {
            start,
            end,
            cpu: cpu1.saturating_sub(cpu0),
        },
        v,
    ))
}

/// Pins the calling thread to `cpu`; a refusal (a cgroup's cpuset) leaves it unpinned.
fn pin(cpu: Option<usize>) {
    use nix::sched::{sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    if let Some(c) = cpu {
        let mut set = CpuSet::new();
        if set.set(c).is_ok() {
            let _ = sched_setaffinity(Pid::from_raw(0), &set);
        }
    }
}

#[derive(Debug, Default)]
struct SendStats {
    copied: u64,
    completed: u64,
}

fn check_deadline(deadline: Instant, what: &str) -> Result<()> {
    if Instant::now() > deadline {
        bail!("{what} did not finish before the repetition's deadline");
    }
    Ok(())
}

/// Sends all of `buf` with `flags`, calling again after a short send. `on_enobufs` runs when
/// the kernel refuses for lack of option memory (unread MSG_ZEROCOPY notifications) and
/// must make room. Returns the number of calls that queued bytes (each is one MSG_ZEROCOPY
/// id when the flag is set).
fn send_all(
    sock: &Socket,
    buf: &[u8],
    flags: i32,
    deadline: Instant,
    on_enobufs: &mut dyn FnMut() -> Result<()>,
) -> Result<u64> {
    let mut off = 0;
    let mut calls = 0;
    while off < buf.len() {
        match send_flags(sock.as_fd(), &buf[off..], flags | libc::MSG_NOSIGNAL) {
            Ok(n) => {
                off += n;
                calls += 1;
            }
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) && flags & MSG_ZEROCOPY != 0 => {
                on_enobufs()?
            }
            Err(e) => bail!("send of {} bytes: {}", buf.len() - off, io_errno(&e)),
        }
        check_deadline(deadline, "a send")?;
    }
    Ok(calls)
}

fn send_copy(tx: &SendEnd, size: usize, messages: u64, deadline: Instant) -> Result<SendStats> {
    for _ in 0..messages {
        send_all(&tx.sock, &tx.buf[..size], 0, deadline, &mut || Ok(()))?;
    }
    Ok(SendStats::default())
}

/// Notification bookkeeping of a MSG_ZEROCOPY sender.
#[derive(Default)]
struct Notifications {
    covered: u64,
    copied: u64,
}

impl Notifications {
    fn take(&mut self, entries: &[errqueue::ErrQueueEntry]) {
        for c in entries.iter().filter_map(|e| e.completion()) {
            let n = c.hi.wrapping_sub(c.lo) as u64 + 1;
            self.covered += n;
            if c.copied {
                self.copied += n;
            }
        }
    }
}

/// MSG_ZEROCOPY sends of `chunk` bytes until `total` bytes are out, reading notifications
/// whenever [`DRAIN_AT`] ids are unread, and waiting for all of them at the end (the buffer
/// may be reused only then).
fn send_msg_zerocopy(
    tx: &SendEnd,
    chunk: usize,
    total: u64,
    deadline: Instant,
) -> Result<SendStats> {
    let fd = tx.sock.as_fd();
    let mut ids = 0u64;
    let mut seen = Notifications::default();
    let mut sent = 0u64;
    while sent < total {
        let n = chunk.min((total - sent) as usize);
        ids += send_all(&tx.sock, &tx.buf[..n], MSG_ZEROCOPY, deadline, &mut || {
            errqueue::wait_err(fd, Duration::from_millis(100)).context("poll for notifications")?;
            seen.take(&errqueue::drain(fd).context("reading the error queue")?);
            Ok(())
        })?;
        sent += n as u64;
        if ids - seen.covered >= DRAIN_AT {
            seen.take(&errqueue::drain(fd).context("reading the error queue")?);
        }
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let (entries, done) = errqueue::collect_until(fd, left, |got| {
        let mut n = Notifications {
            covered: seen.covered,
            copied: 0,
        };
        n.take(got);
        n.covered >= ids
    })
    .context("waiting for the last notifications")?;
    seen.take(&entries);
    if !done {
        bail!(
            "only {} of {} MSG_ZEROCOPY ids were notified before the deadline",
            seen.covered,
            ids
        );
    }
    Ok(SendStats {
        copied: seen.copied,
        completed: seen.covered,
    })
}

/// io_uring sends of `size` bytes, [`URING_DEPTH`] requests in flight. For the zero-copy
/// operations a request is in flight until its notification; a short send is made up by
/// another request for the rest.
fn send_uring(
    tx: &mut SendEnd,
    mode: Mode,
    size: usize,
    messages: u64,
    deadline: Instant,
) -> Result<SendStats> {
    let (op, fixed) = match mode {
        Mode::UringSend => (SendOp::Send, false),
        Mode::UringSendZc => (SendOp::SendZc, false),
        Mode::UringSendZcFixed => (SendOp::SendZc, true),
        _ => unreachable!("not an io_uring mode"),
    };
    let ring = tx.ring.as_mut().context("no ring for an io_uring mode")?;
    let fd = tx.sock.as_fd();
    let mut lens: HashMap<u64, usize> = HashMap::new();
    let (mut issued, mut next_id, mut owed) = (0u64, 0u64, 0usize);
    let mut stats = SendStats::default();
    loop {
        while ring.in_flight() < URING_DEPTH && (issued < messages || owed > 0) {
            let len = if owed > 0 {
                let l = owed.min(size);
                owed -= l;
                l
            } else {
                issued += 1;
                size
            };
            let payload = if fixed {
                Payload::Fixed {
                    index: 0,
                    offset: 0,
                    len,
                }
            } else {
                Payload::Owned {
                    data: tx.buf.clone(),
                    start: 0,
                    len,
                }
            };
            let mut req = SendRequest::new(op, payload, next_id);
            if tx.stream {
                req.msg_flags = libc::MSG_WAITALL;
            }
            if op.is_zc() && tx.report_usage {
                req.ioprio = SEND_ZC_REPORT_USAGE;
            }
            ring.push(fd, &req).context("queueing a send")?;
            lens.insert(next_id, len);
            next_id += 1;
        }
        if ring.in_flight() == 0 && issued >= messages && owed == 0 {
            return Ok(stats);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!(
                "{} io_uring requests still in flight at the repetition's deadline",
                ring.in_flight()
            );
        }
        let cqes = ring
            .wait(left.min(Duration::from_secs(1)), |got| !got.is_empty())
            .context("waiting for completions")?;
        for c in cqes {
            if c.notif() {
                if tx.report_usage {
                    stats.completed += 1;
                    if (c.res as u32) & NOTIF_USAGE_ZC_COPIED != 0 {
                        stats.copied += 1;
                    }
                }
                continue;
            }
            if c.res < 0 {
                bail!(
                    "an io_uring {} completed with {}",
                    mode.id(),
                    crate::probes::errno_name(-c.res)
                );
            }
            let want = lens.remove(&c.user_data).unwrap_or(size);
            owed += want.saturating_sub(c.res as usize);
        }
    }
}

/// `recv()` into a `unit`-byte buffer until `total` bytes have arrived.
fn recv_copy(sock: &Socket, unit: usize, total: u64, deadline: Instant) -> Result<()> {
    let mut buf = vec![0u8; unit];
    let mut got = 0u64;
    while got < total {
        let want = unit.min((total - got) as usize);
        match (&*sock).read(&mut buf[..want]) {
            Ok(0) => bail!("the stream ended after {got} of {total} bytes"),
            Ok(n) => got += n as u64,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => bail!("recv after {got} of {total} bytes: {}", io_errno(&e)),
        }
        check_deadline(deadline, "the receive")?;
    }
    Ok(())
}

/// tcp_mmap's loop: `TCP_ZEROCOPY_RECEIVE` for up to `unit` bytes into the mapping (the
/// next call unmaps what the last one mapped), `recv()` of what the kernel says to skip,
/// `poll` when there is nothing. Returns the bytes that were mapped.
fn recv_tcp_zerocopy(rx: &RecvEnd, unit: usize, total: u64, deadline: Instant) -> Result<u64> {
    let map = rx.map.as_ref().context("no socket mapping")?;
    let fd = rx.sock.as_fd();
    let mut scratch = vec![0u8; unit.max(page_size())];
    let (mut got, mut mapped) = (0u64, 0u64);
    while got < total {
        check_deadline(deadline, "the zero-copy receive")?;
        let want = (unit as u64).min(total - got).min(map.len() as u64) as u32;
        let reply = ZcCall::new(map.addr(), want)
            .call(fd, field_end::RECV_SKIP_HINT as i32)
            .map_err(|e| anyhow::anyhow!("TCP_ZEROCOPY_RECEIVE: {}", io_errno(&e)))?;
        let f = reply.fields;
        got += f.length as u64;
        mapped += f.length as u64;
        let mut skip = (f.recv_skip_hint as u64).min(total - got);
        let progressed = f.length > 0 || skip > 0;
        while skip > 0 {
            let n = (skip as usize).min(unit).min(scratch.len());
            match (&rx.sock).read(&mut scratch[..n]) {
                Ok(0) => bail!("the stream ended after {got} of {total} bytes"),
                Ok(k) => {
                    got += k as u64;
                    skip -= k as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => bail!("recv of the skip hint: {}", io_errno(&e)),
            }
        }
        if !progressed {
            let mut pfd = [PollFd::new(fd, PollFlags::POLLIN)];
            poll(&mut pfd, PollTimeout::from(200u16)).context("poll")?;
        }
    }
    Ok(mapped)
}
