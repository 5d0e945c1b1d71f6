//! What completions left unread merge into (msg_zerocopy.rst, Notification Batching: a new
//! notification that extends the range at the tail of the queue is merged into it; "for
//! protocols that acknowledge data in-order, like TCP, ... no more than one notification is
//! outstanding at any one point").
//!
//! `send.outstanding` runs both:
//!
//! * TCP, on loopback and a veth pair, IPv4 and IPv6: eight zero-copy
//!   sends, all acknowledged (TCP_INFO's unacked count back at 0) with nothing lost or
//!   reordered, and nothing read from the error queue: the queue then holds exactly one
//!   notification, `[0, 7]`. Judged: this is the in-order case the remark describes.
//! * UDP, the same with eight datagrams, all delivered before the queue
//!   is read: what they merged into is recorded (a deterministic fact per kernel).

use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use harness::sockets::{Family, Proto};
use harness::sys::errqueue::{self, Completion};
use harness::sys::sockopt;

use super::flow::{show, zc_send, Path, SO_ZEROCOPY_TCP, SO_ZEROCOPY_UDP};
use super::mapped::{self, Addressing};
use super::wire::{DatagramReader, StreamCollector};
use crate::case::{Area, Case, Ctx};
use crate::model::completions::{check, IdWindow};
use crate::outcome::{fail_with, Verdict};
use crate::probes::{NET_ADMIN, VETH};

const SENDS: u32 = 8;

pub fn cases() -> Vec<Case> {
    vec![Case::new(
        "send.outstanding",
        Area::Send,
        "nothing read: TCP with in-order acknowledgements has at most one notification \
         outstanding, [0, 7] for eight sends (msg_zerocopy.rst); what eight UDP completions \
         merged into is recorded",
        vec![NET_ADMIN, VETH, SO_ZEROCOPY_TCP, SO_ZEROCOPY_UDP],
        outstanding,
    )]
}

/// TCP_INFO's `tcpi_unacked` (offset 24 of `struct tcp_info`).
fn unacked(fd: BorrowedFd<'_>) -> Result<u32> {
    let mut info = [0u8; 104];
    let n = sockopt::get_raw(fd, libc::IPPROTO_TCP, libc::TCP_INFO, &mut info, 104)
        .context("getsockopt(TCP_INFO)")?;
    anyhow::ensure!(n >= 28, "TCP_INFO returned {n} bytes");
    Ok(u32::from_ne_bytes(
        info[24..28].try_into().expect("4 bytes"),
    ))
}

/// The TCP remark, as a check: all ids done and unread must be one notification.
pub fn judge_one_outstanding(sends: u32, got: &[Completion]) -> Result<(), String> {
    match got {
        [c] if c.lo == 0 && c.hi == sends - 1 => Ok(()),
        _ => Err(format!(
            "{sends} acknowledged sends left unread were queued as {}, not one [0,{}]",
            show(got),
            sends - 1
        )),
    }
}

fn outstanding(ctx: &mut Ctx) -> Result<Verdict> {
    let mut seen = Vec::new();
    for path in [Path::Loopback, Path::Pair] {
        let topo = path.topology()?;
        let (s, r) = (topo.sender(), topo.receiver());
        for (proto, family, how) in [
            (Proto::Tcp, Family::V4, Addressing::V4),
            (Proto::Tcp, Family::V6, Addressing::V6),
            (Proto::Udp, Family::V4, Addressing::V4),
            (Proto::Udp, Family::V6, Addressing::V6),
        ] {
            let (sender, receiver) = mapped::connect(&s.ns, r, proto, how)?;
            let fd = sender.as_fd();
            let buf = [0x6fu8; 1000];
            let got = match proto {
                Proto::Tcp => {
                    let reader = StreamCollector::start(receiver);
                    for _ in 0..SENDS {
                        zc_send(&sender, &buf, false).context("zero-copy send")?;
                    }
                    let deadline = Instant::now() + Duration::from_secs(3);
                    while unacked(fd)? != 0 {
                        anyhow::ensure!(
                            Instant::now() < deadline,
                            "the sends were not acknowledged within 3 s"
                        );
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    errqueue::wait_err(fd, Duration::from_secs(1))?;
                    let got = mapped::judged(family, &errqueue::drain(fd)?)?;
                    sender.shutdown(std::net::Shutdown::Write)?;
                    reader.finish()?;
                    got
                }
                Proto::Udp => {
                    let reader =
                        DatagramReader::start(receiver, SENDS as usize, Duration::from_secs(1))?;
                    for _ in 0..SENDS {
                        zc_send(&sender, &buf, false).context("zero-copy send")?;
                    }
                    let n = reader.finish()?.len();
                    anyhow::ensure!(n == SENDS as usize, "{n} of {SENDS} datagrams arrived");
                    errqueue::wait_err(fd, Duration::from_secs(1))?;
                    mapped::judged(family, &errqueue::drain(fd)?)?
                }
            };
            let what = format!("{} {proto:?} {family:?}", path.tag());
            check(IdWindow::new(0, SENDS as u64), &got, false)
                .map_err(|v| fail_with(format!("{what}: {v}"), show(&got)))?;
            if proto == Proto::Tcp {
                judge_one_outstanding(SENDS, &got)
                    .map_err(|m| fail_with(format!("{what}: {m}"), show(&got)))?;
            }
            seen.push(format!("{what}: {}", show(&got)));
        }
    }
    ctx.observe("unread_completions", &seen);
    Ok(Verdict::pass(seen.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(lo: u32, hi: u32) -> Completion {
        Completion {
            lo,
            hi,
            copied: false,
        }
    }

    #[test]
    fn one_range_only() {
        assert!(judge_one_outstanding(8, &[c(0, 7)]).is_ok());
        assert!(judge_one_outstanding(8, &[c(0, 3), c(4, 7)]).is_err());
        assert!(judge_one_outstanding(8, &[c(0, 6)]).is_err());
    }
}
