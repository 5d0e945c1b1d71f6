//! The sending side of a receive test: a thread that writes a stream, with or without
//! MSG_ZEROCOPY, in bursts, and ends it with a FIN, a reset, or not at all.
//!
//! A zero-copy sender must not reuse or free its buffer while the kernel may still read it, so
//! the stream buffer stays alive until every completion arrived (or a bounded wait ran out);
//! the error queue is drained as it goes so that option memory never runs out.

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use harness::sys::errqueue::{self, Completion};
use harness::sys::zerocopy::{self, MSG_ZEROCOPY};
use socket2::Socket;

use crate::model::completions::{check, IdWindow};
use crate::outcome::fail_with;

/// One burst: `len` bytes, then a pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Burst {
    pub len: usize,
    pub pause_ms: u64,
}

/// How the sender ends the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ending {
    /// shutdown(SHUT_WR): the receiver sees a FIN after the last byte.
    Fin,
    /// close with SO_LINGER 0: the receiver sees a reset.
    Reset,
    /// Nothing: the connection stays open (the socket comes back in [`Sent`]).
    Open,
}

#[derive(Debug, Clone)]
pub struct SendPlan {
    pub bursts: Vec<Burst>,
    /// Bytes per send call.
    pub chunk: usize,
    /// Send with MSG_ZEROCOPY (the socket must have SO_ZEROCOPY).
    pub zc: bool,
    pub ending: Ending,
}

impl SendPlan {
    /// All of `len` bytes in one burst.
    pub fn whole(len: usize, chunk: usize, zc: bool, ending: Ending) -> Self {
        SendPlan {
            bursts: vec![Burst { len, pause_ms: 0 }],
            chunk,
            zc,
            ending,
        }
    }

    pub fn total(&self) -> usize {
        self.bursts.iter().map(|b| b.len).sum()
    }
}

/// What the sender did.
#[derive(Debug)]
pub struct Sent {
    pub bytes: u64,
    pub calls: u64,
    /// Zero-copy ids the calls took and ids reported complete.
    pub zc_ids: u64,
    pub zc_completed: u64,
    /// Every zero-copy notification read, in arrival order (each checked against the ids the
    /// calls took: none outside the window, backwards or reported twice).
    pub zc_reported: Vec<Completion>,
    /// The socket, for [`Ending::Open`] and [`Ending::Fin`] (so [`settle`] can read the
    /// notifications still owed).
    pub socket: Option<Socket>,
}

/// How long the sender waits, after its FIN, for completions it is owed; [`settle`] waits
/// as long again once the receiver has read everything.
const COMPLETION_WAIT: Duration = Duration::from_secs(3);

/// Starts sending `data` (at least `plan.total()` bytes) on `sock`.
pub fn spawn(sock: Socket, data: Arc<Vec<u8>>, plan: SendPlan) -> JoinHandle<Result<Sent>> {
    std::thread::spawn(move || send(sock, &data, &plan))
}

/// Waits for the sender thread.
pub fn join(h: JoinHandle<Result<Sent>>) -> Result<Sent> {
    match h.join() {
        Ok(r) => r,
        Err(p) => std::panic::resume_unwind(p),
    }
}

fn send(sock: Socket, data: &[u8], plan: &SendPlan) -> Result<Sent> {
    let fd = sock.as_fd();
    let flags = if plan.zc { MSG_ZEROCOPY } else { 0 } | libc::MSG_NOSIGNAL;
    let mut sent = Sent {
        bytes: 0,
        calls: 0,
        zc_ids: 0,
        zc_completed: 0,
        zc_reported: Vec::new(),
        socket: None,
    };
    let mut pos = 0usize;
    for burst in &plan.bursts {
        let end = pos + burst.len;
        while pos < end {
            let n = plan.chunk.max(1).min(end - pos);
            match zerocopy::send_flags(fd, &data[pos..pos + n], flags) {
                Ok(k) => {
                    pos += k;
                    sent.calls += 1;
                    sent.zc_ids += plan.zc as u64;
                }
                // Option memory ran out: completions are pending; let them land.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    errqueue::wait_err(fd, Duration::from_millis(10))?;
                }
                Err(e) if plan.ending == Ending::Reset && is_gone(&e) => break,
                Err(e) => {
                    return Err(e).with_context(|| format!("send at stream offset {pos}"));
                }
            }
            if plan.zc {
                take_notifications(&mut sent, &errqueue::drain(fd)?)?;
            }
        }
        if burst.pause_ms > 0 {
            std::thread::sleep(Duration::from_millis(burst.pause_ms));
        }
    }
    sent.bytes = pos as u64;
    match plan.ending {
        Ending::Fin => {
            sock.shutdown(std::net::Shutdown::Write)
                .context("shutdown(SHUT_WR)")?;
            if plan.zc {
                let deadline = Instant::now() + COMPLETION_WAIT;
                while sent.zc_completed < sent.zc_ids && Instant::now() < deadline {
                    errqueue::wait_err(fd, Duration::from_millis(20))?;
                    take_notifications(&mut sent, &errqueue::drain(fd)?)?;
                }
                sent.socket = Some(sock);
            }
        }
        Ending::Reset => {
            sock.set_linger(Some(Duration::ZERO))
                .context("SO_LINGER 0")?;
            drop(sock);
        }
        Ending::Open => sent.socket = Some(sock),
    }
    Ok(sent)
}

/// Once every id the zero-copy calls took is owed (the receiver has read a FIN-ended stream
/// to its end; or, over loopback, the data was delivered, since local delivery copies and
/// completes at once), reads what is still missing (bounded) and fails on a gap, that is a
/// lost notification. Nothing to do for a plain sender. The socket stays in `sent`.
pub fn settle(sent: &mut Sent) -> Result<()> {
    if sent.zc_ids == 0 {
        return Ok(());
    }
    let Some(sock) = sent.socket.take() else {
        return Ok(());
    };
    let missing = sent.zc_ids.saturating_sub(sent.zc_completed);
    if missing > 0 {
        let (entries, _) = errqueue::collect_until(sock.as_fd(), COMPLETION_WAIT, |got| {
            got.iter()
                .filter_map(|e| e.completion())
                .map(|c| c.hi.wrapping_sub(c.lo) as u64 + 1)
                .sum::<u64>()
                >= missing
        })?;
        take_notifications(sent, &entries)?;
    }
    sent.socket = Some(sock);
    check(IdWindow::new(0, sent.zc_ids), &sent.zc_reported, true).map_err(|v| {
        fail_with(
            format!("the MSG_ZEROCOPY sender's notifications, once the stream was read: {v}"),
            format!(
                "{} zero-copy calls; notifications in arrival order: {:?}",
                sent.zc_ids, sent.zc_reported
            ),
        )
    })?;
    Ok(())
}

fn is_gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPIPE) | Some(libc::ECONNRESET))
}

/// Adds the notifications of `entries` (already validated whole by the reader) to `sent`
/// and checks every one read so far against the window of ids the calls took (a fresh
/// socket: ids from 0). Completions may still be in flight, so a gap is not judged here.
fn take_notifications(sent: &mut Sent, entries: &[errqueue::ErrQueueEntry]) -> Result<()> {
    for e in entries {
        let Some(c) = e.completion() else {
            return Err(fail_with(
                "the MSG_ZEROCOPY sender's error queue held something that is not a \
                 zero-copy notification",
                format!("{e:?}"),
            ));
        };
        sent.zc_reported.push(c);
    }
    let stats = check(IdWindow::new(0, sent.zc_ids), &sent.zc_reported, false).map_err(|v| {
        fail_with(
            format!("the MSG_ZEROCOPY sender's notifications: {v}"),
            format!(
                "{} zero-copy calls; notifications in arrival order: {:?}",
                sent.zc_ids, sent.zc_reported
            ),
        )
    })?;
    sent.zc_completed = stats.ids;
    Ok(())
}

/// Waits until `sock` has at least `n` bytes queued, or `timeout` passes.
pub fn wait_queued(sock: &Socket, n: u32, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let q = harness::sys::tcp_zc_receive::queued_in(sock.as_fd()).context("SIOCINQ")?;
        if q >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {q} of {n} bytes reached the receiver within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
