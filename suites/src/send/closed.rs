//! Where the contract is firm about a TCP socket that cannot send, and about Fast Open.
//!
//! * `send.closed.tcp.lo`, IPv4 and IPv6: a zero-copy send on a socket never connected fails
//!   with EPIPE, takes no id and queues nothing (packetdrill `closed.pkt`); after
//!   `shutdown(SHUT_WR)` a zero-copy send fails with EPIPE and takes no id; the one send in
//!   between is id 0, reported once.
//! * [`judge_fastopen`] is what `send.tfo.*` judges: without a cookie, EINPROGRESS and no
//!   id; with one, the data goes in the SYN (the call returns its length) and is reported
//!   as `[0, 0]` (packetdrill `fastopen-client.pkt`).

use std::os::fd::AsFd;

use anyhow::{Context, Result};
use harness::sockets::{self, Family, Proto};
use harness::sys::errqueue::{self, Completion};
use harness::sys::zerocopy;
use harness::topology::{Loopback, Topology};

use super::flow::{await_ids, errno_result, show, zc_send, SO_ZEROCOPY_TCP};
use super::mapped;
use super::wire::StreamCollector;
use crate::case::{Area, Case, Ctx};
use crate::model::completions::{check, IdWindow};
use crate::outcome::{expect, fail_with, Verdict};
use crate::probes::{errno_name, NET_ADMIN};

pub fn cases() -> Vec<Case> {
    vec![Case::new(
        "send.closed.tcp.lo",
        Area::Send,
        "a zero-copy send on a never-connected or shut-down TCP socket fails with EPIPE and \
         takes no id (packetdrill closed.pkt)",
        vec![NET_ADMIN, SO_ZEROCOPY_TCP],
        closed,
    )]
}

/// A failed send must be EPIPE.
pub fn judge_epipe(what: &str, r: Result<usize, i32>) -> Result<(), String> {
    match r {
        Err(libc::EPIPE) => Ok(()),
        Err(e) => Err(format!("{what} failed with {}, not EPIPE", errno_name(e))),
        Ok(n) => Err(format!(
            "{what} sent {n} bytes instead of failing with EPIPE"
        )),
    }
}

/// Fast Open with MSG_ZEROCOPY: `without` is the first sendto's answer (no cookie yet),
/// `with` the second's (cookie cached), `notified` what the second socket was told.
pub fn judge_fastopen(
    without: Result<usize, i32>,
    with: Result<usize, i32>,
    len: usize,
    notified: &[Completion],
) -> Result<(), String> {
    if without != Err(libc::EINPROGRESS) {
        return Err(format!(
            "sendto(MSG_FASTOPEN | MSG_ZEROCOPY) without a cookie returned {}, not EINPROGRESS",
            show_result(without)
        ));
    }
    if with != Ok(len) {
        return Err(format!(
            "sendto(MSG_FASTOPEN | MSG_ZEROCOPY) with a cookie returned {}, not {len} (the \
             data in the SYN)",
            show_result(with)
        ));
    }
    match notified {
        [c] if c.lo == 0 && c.hi == 0 => Ok(()),
        _ => Err(format!(
            "the data in the SYN was reported as {}, not one [0,0]",
            show(notified)
        )),
    }
}

fn show_result(r: Result<usize, i32>) -> String {
    r.map(|n| n.to_string()).unwrap_or_else(errno_name)
}

fn closed(ctx: &mut Ctx) -> Result<Verdict> {
    let lo = Loopback::new(None)?;
    let host = lo.receiver();
    let mut answers = Vec::new();
    for family in [Family::V4, Family::V6] {
        let listener = sockets::tcp_listener(&host.ns, host.ip(family))?;
        let to = sockets::local_addr(&listener)?;
        let sock = sockets::socket_in(&host.ns, family, Proto::Tcp)?;
        zerocopy::set_so_zerocopy(sock.as_fd(), true)?;
        let data = [0x43u8; 4000];
        let never = errno_result(zc_send(&sock, &data, false));
        judge_epipe("a zero-copy send on a never-connected socket", never)
            .map_err(|m| fail_with(format!("{family:?}: {m}"), "closed.pkt"))?;
        let queued = errqueue::read_one(sock.as_fd(), errqueue::FULL_CONTROL_LEN)?;
        expect(queued.is_none(), || {
            format!("{family:?}: the failed send queued {queued:?}")
        })?;
        sock.connect_timeout(&to.into(), sockets::IO_TIMEOUT)
            .context("connect")?;
        let child = sockets::accept(&listener, sockets::IO_TIMEOUT)?;
        let reader = StreamCollector::start(child);
        zc_send(&sock, &data, false).context("zero-copy send once connected")?;
        let first = mapped::judged(family, &await_ids(&sock, 1)?)?;
        sock.shutdown(std::net::Shutdown::Write)?;
        let after = errno_result(zc_send(&sock, &data, false));
        judge_epipe("a zero-copy send after shutdown(SHUT_WR)", after)
            .map_err(|m| fail_with(format!("{family:?}: {m}"), show(&first)))?;
        let got = reader.finish()?;
        expect(got.len() == data.len(), || {
            format!(
                "{family:?}: the peer got {} bytes, not {}",
                got.len(),
                data.len()
            )
        })?;
        let mut all = first.clone();
        all.extend(mapped::judged(family, &errqueue::drain(sock.as_fd())?)?);
        check(IdWindow::new(0, 1), &all, true).map_err(|v| {
            fail_with(
                format!("{family:?}: one send between two EPIPEs: {v}"),
                show(&all),
            )
        })?;
        answers.push(format!(
            "{family:?}: never connected {}, after shutdown {}",
            show_result(never),
            show_result(after)
        ));
    }
    ctx.observe("answers", &answers);
    Ok(Verdict::pass(
        "EPIPE and no id before connecting and after shutdown; id 0 in between",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(lo: u32, hi: u32) -> Completion {
        Completion {
            lo,
            hi,
            copied: true,
        }
    }

    #[test]
    fn epipe_only() {
        assert!(judge_epipe("x", Err(libc::EPIPE)).is_ok());
        assert!(judge_epipe("x", Err(libc::EINVAL))
            .unwrap_err()
            .contains("EINVAL"));
        assert!(judge_epipe("x", Ok(4000)).is_err());
    }

    #[test]
    fn fastopen_answers() {
        let ok = judge_fastopen(Err(libc::EINPROGRESS), Ok(100), 100, &[c(0, 0)]);
        assert!(ok.is_ok());
        // Data in the SYN without a cookie.
        assert!(judge_fastopen(Ok(100), Ok(100), 100, &[c(0, 0)]).is_err());
        // No data in the SYN despite the cookie.
        assert!(judge_fastopen(Err(libc::EINPROGRESS), Err(libc::EINPROGRESS), 100, &[]).is_err());
        // The SYN's data reported twice, or as another id.
        assert!(judge_fastopen(Err(libc::EINPROGRESS), Ok(100), 100, &[c(0, 0), c(0, 0)]).is_err());
        assert!(judge_fastopen(Err(libc::EINPROGRESS), Ok(100), 100, &[c(1, 1)]).is_err());
    }
}
