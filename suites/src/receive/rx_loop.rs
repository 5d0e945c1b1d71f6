//! The loop of a real zero-copy receiver (tcp_mmap.c's, made careful): map what can be
//! mapped, read what the kernel says to skip, take what it copied, repeat until EIO.
//!
//! Every byte it gets goes through the [`StreamCheck`], so the loop is also the integrity
//! check. It never hangs: waiting for data is bounded by a deadline, and a connection where
//! the call keeps answering "nothing" although `poll` says the socket is ready (the state after
//! a reset on 6.18, where a loop that only looks at the fields spins forever) is detected after
//! a bounded number of such calls and reported as [`End::Spin`].

use std::io::Read;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use harness::sys::socket_mmap::SocketMapping;
use harness::sys::tcp_zc_receive::{ZcCall, TLB_CLEAN_HINT};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde::Serialize;
use socket2::Socket;

use crate::model::stream::{Source, StreamCheck};
use crate::model::zc_receive::{check_in_flight, CopyBuf, InFlight};
use crate::outcome::fail_with;
use crate::probes::errno_name;

/// How the receiver gets rid of pages it has read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unmap {
    /// Leave them; the next call zaps the range itself.
    Kernel,
    /// madvise(MADV_DONTNEED), then promise it with TCP_RECEIVE_ZEROCOPY_FLAG_TLB_CLEAN_HINT.
    MadviseAndHint,
    /// Pass the hint without unmapping: a broken promise the kernel must survive (it zaps
    /// and retries when the insert finds pages in the way).
    HintOnly,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct RxConfig {
    /// `length` asked for per call (the mapping is this, rounded up to pages).
    pub request: u32,
    /// Size of the copy buffer (0: none).
    pub copybuf: usize,
    pub unmap: Unmap,
    /// The `optlen` passed (the kernel's struct size, from the probe).
    pub optlen: i32,
    /// Calls that find nothing while poll says ready, in a row, before calling it a spin.
    pub spin_limit: u32,
    /// How long the whole stream may take.
    pub deadline: Duration,
}

/// Why the loop stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "end", rename_all = "snake_case")]
pub enum End {
    /// The call returned EIO: end of stream.
    Eof,
    /// The call kept answering nothing while the socket was ready.
    Spin { idle_calls: u32 },
    /// The call failed with another errno.
    Error { errno: i32 },
    /// recv() for a hint reported end of stream.
    RecvEof,
}

/// An error the kernel reported on the way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reported {
    pub call: u32,
    /// `zc.err` (negative) or `recv`'s errno (negated here too).
    pub err: i32,
    pub via: &'static str,
}

/// What happened over one stream.
#[derive(Debug, Clone, Serialize)]
pub struct Transcript {
    pub calls: u32,
    pub end: End,
    pub errors: Vec<Reported>,
    /// Calls that mapped at least a page.
    pub mapping_calls: u32,
    /// The last few calls, for evidence.
    pub tail: Vec<String>,
}

impl Transcript {
    fn note(&mut self, line: String) {
        if self.tail.len() == 12 {
            self.tail.remove(0);
        }
        self.tail.push(line);
    }
}

/// Receives from `sock` through `map` until the stream ends, checking every byte.
/// Integrity and hint violations come back as `fail`s; set-up trouble as errors.
pub fn receive(
    sock: &Socket,
    map: &SocketMapping,
    cfg: &RxConfig,
    check: &mut StreamCheck,
) -> Result<Transcript> {
    let fd = sock.as_fd();
    let deadline = Instant::now() + cfg.deadline;
    let request = cfg.request.min(map.len() as u32);
    let flags = match cfg.unmap {
        Unmap::Kernel => 0,
        Unmap::MadviseAndHint | Unmap::HintOnly => TLB_CLEAN_HINT,
    };
    let mut t = Transcript {
        calls: 0,
        end: End::Eof,
        errors: Vec::new(),
        mapping_calls: 0,
        tail: Vec::new(),
    };
    let mut copy = vec![0u8; cfg.copybuf];
    let mut scratch = vec![0u8; 256 * 1024];
    let mut idle_ready = 0u32;
    loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the stream did not end within {:?} (at offset {} of {}); last calls:\n{}",
            cfg.deadline,
            check.position(),
            check.sent(),
            t.tail.join("\n")
        );
        t.calls += 1;
        let reply = {
            let mut call = ZcCall::new(map.addr(), request).flags(flags);
            if !copy.is_empty() {
                call = call.copybuf(&mut copy);
            }
            call.call(fd, cfg.optlen)
        };
        if reply.is_ok() {
            judge_call(sock, map, cfg, request, copy.len(), &reply, &t)?;
        }
        let f = match reply {
            Ok(r) => r.fields,
            Err(e) => {
                let errno = e.raw_os_error().unwrap_or(0);
                t.note(format!("#{}: {}", t.calls, errno_name(errno)));
                t.end = if errno == libc::EIO {
                    End::Eof
                } else {
                    End::Error { errno }
                };
                return Ok(t);
            }
        };
        t.note(format!(
            "#{}: length {} skip {} inq {} err {} copied {} (at {})",
            t.calls,
            f.length,
            f.recv_skip_hint,
            f.inq,
            f.err,
            f.copybuf_len,
            check.position()
        ));
        if f.err != 0 {
            t.errors.push(Reported {
                call: t.calls,
                err: f.err,
                via: "zc.err",
            });
        }
        let mut progress = false;
        if f.length > 0 {
            let at = check.position();
            let bytes = map
                .read(0, f.length as usize)
                .context("reading the mapping")?;
            if bytes.len() < f.length as usize {
                return Err(fail_with(
                    format!(
                        "the call reported {} bytes mapped, but only {} were readable in the mapping",
                        f.length,
                        bytes.len()
                    ),
                    format!("stream offset {at}; last calls:\n{}", t.tail.join("\n")),
                ));
            }
            accept(check, Source::Mapped, &bytes, &t)?;
            t.mapping_calls += 1;
            if cfg.unmap == Unmap::MadviseAndHint {
                map.discard(0, f.length as usize)?;
            }
            progress = true;
        }
        if f.copybuf_len > 0 {
            let n = f.copybuf_len as usize;
            if n > copy.len() {
                return Err(fail_with(
                    format!(
                        "copybuf_len {} exceeds the {}-byte copy buffer",
                        n,
                        copy.len()
                    ),
                    t.tail.join("\n"),
                ));
            }
            let got = copy[..n].to_vec();
            accept(check, Source::Copybuf, &got, &t)?;
            progress = true;
        } else if f.copybuf_len < 0 {
            return Err(fail_with(
                format!(
                    "copying into a valid {}-byte buffer failed: copybuf_len {}",
                    copy.len(),
                    f.copybuf_len
                ),
                t.tail.join("\n"),
            ));
        }
        if f.recv_skip_hint > 0 {
            let mut left = f.recv_skip_hint as usize;
            while left > 0 {
                let want = left.min(scratch.len());
                let read = || (&*sock).read(&mut scratch[..want]);
                match harness::sys::retry::retry_interrupted(
                    harness::sys::retry::DEFAULT_BOUND,
                    read,
                ) {
                    Ok(0) => {
                        return Err(fail_with(
                            format!(
                            "recv_skip_hint was {} but the stream ended after {} of those bytes",
                            f.recv_skip_hint,
                            f.recv_skip_hint as usize - left
                        ),
                            t.tail.join("\n"),
                        ))
                    }
                    Ok(n) => {
                        let got = scratch[..n].to_vec();
                        accept(check, Source::Recv, &got, &t)?;
                        left -= n;
                    }
                    Err(e) => {
                        let errno = e.raw_os_error().unwrap_or(0);
                        t.errors.push(Reported {
                            call: t.calls,
                            err: -errno,
                            via: "recv",
                        });
                        t.note(format!("recv for the hint: {}", errno_name(errno)));
                        break;
                    }
                }
            }
            progress = true;
        }
        if progress {
            idle_ready = 0;
            continue;
        }
        // Nothing now: wait for data, and count calls that find nothing on a ready socket.
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = left.min(Duration::from_millis(200));
        let mut pfd = [PollFd::new(fd, PollFlags::POLLIN)];
        let ready = poll(
            &mut pfd,
            PollTimeout::try_from(wait.as_millis() as u64).unwrap_or(PollTimeout::MAX),
        )
        .context("poll")?;
        if ready > 0 {
            idle_ready += 1;
            if idle_ready >= cfg.spin_limit {
                t.end = End::Spin {
                    idle_calls: idle_ready,
                };
                return Ok(t);
            }
        }
    }
}

/// The per-call oracle for a loop whose queue may still grow (`model::zc_receive::
/// check_in_flight`): `err`, whole pages within the request, the copy, and `recv_skip_hint`
/// and `inq` against SIOCINQ read right after the call.
fn judge_call(
    sock: &Socket,
    map: &SocketMapping,
    cfg: &RxConfig,
    request: u32,
    copybuf: usize,
    reply: &std::io::Result<harness::sys::tcp_zc_receive::ZcReply>,
    t: &Transcript,
) -> Result<()> {
    let queued_after = harness::sys::tcp_zc_receive::queued_in(sock.as_fd()).context("SIOCINQ")?;
    let call = InFlight {
        page: harness::sys::socket_mmap::page_size() as u32,
        requested: request,
        room: map.len() as u64,
        copybuf: CopyBuf {
            len: copybuf as i32,
            faults: false,
        },
        queued_after,
    };
    let inq_asked = cfg.optlen >= harness::sys::tcp_zc_receive::field_end::INQ as i32;
    check_in_flight(&call, &super::fixture::answer(reply, inq_asked)).map_err(|v| {
        fail_with(
            v.to_string(),
            format!(
                "this call: {}; SIOCINQ after it: {queued_after}; earlier calls:\n{}",
                super::fixture::show(reply),
                t.tail.join("\n")
            ),
        )
    })
}

fn accept(check: &mut StreamCheck, source: Source, bytes: &[u8], t: &Transcript) -> Result<()> {
    check
        .accept(source, bytes)
        .map_err(|v| fail_with(v.to_string(), format!("last calls:\n{}", t.tail.join("\n"))))
}

/// After the loop ended: reads what recv() says about the connection (data, EOF, an error).
pub fn recv_after(sock: &Socket) -> String {
    let mut b = [0u8; 64];
    sock.set_nonblocking(true).ok();
    let r = match (&*sock).read(&mut b) {
        Ok(0) => "recv: 0 (end of stream)".to_string(),
        Ok(n) => format!("recv: {n} bytes"),
        Err(e) => format!(
            "recv: {}",
            e.raw_os_error()
                .map(errno_name)
                .unwrap_or_else(|| e.to_string())
        ),
    };
    sock.set_nonblocking(false).ok();
    r
}
