//! Registered buffers and buffer lifetime (send-zerocopy.c's buffer table, sendzc-bug.c,
//! vec-regbuf.c; SEMANTICS.md R8.2, R8.3).
//!
//! * offsets inside a registration (+13 bytes, a page + 27, ranges crossing pages), from an
//!   ordinary and from a hugetlb mapping, through SEND_ZC and SENDMSG_ZC: byte-exact;
//! * the memory behind a request released before its notification: buffers unregistered and
//!   unmapped (sendzc-bug.c), no crash, the notification still comes, the receiver gets the
//!   bytes as they were at submission;
//! * the buffer overwritten before the notification: what the receiver got is recorded (the
//!   contract forbids the write; what it shows depends on whether the path copied);
//! * RLIMIT_MEMLOCK too small for the pinned pages: ENOMEM, and the protocol still holds.

use std::io;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use harness::sockets::{self, Family, Proto};
use harness::sys::creds;
use harness::sys::uring::{self, Mapping, Payload, SendOp, SendRequest, SqeFlags};
use harness::topology::Loopback;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use socket2::Socket;

use super::collect;
use super::probes;
use super::support::{self, Conn, Item};
use crate::case::{Area, Case, Ctx};
use crate::model::uring_notif::{self, Issued, Kind};
use crate::outcome::{expect, fail_with, Verdict};
use crate::send::flow::Path;

const TCP4: Conn = Conn {
    proto: Proto::Tcp,
    family: Family::V4,
};
const PAGE: usize = 4096;

pub fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "uring.fixed.offsets",
            Area::Uring,
            "registered-buffer sends at offsets inside the registration (+13, +41, a page + \
             27, ranges crossing pages, the end; SEND_ZC and SENDMSG_ZC) deliver exactly those bytes",
            support::requires(Some(Path::Loopback), &[]),
            |ctx| offsets(ctx, false),
        ),
        Case::new(
            "uring.fixed.hugetlb",
            Area::Uring,
            "the same from a hugetlb-backed registration, ranges crossing the 2 MiB page",
            support::requires(Some(Path::Loopback), &[probes::HUGETLB]),
            |ctx| offsets(ctx, true),
        ),
        Case::new(
            "uring.lifetime.unmap_before_notification",
            Area::Uring,
            "buffers unregistered and unmapped after the first CQE, before the notification: \
             no crash, the notification still comes, the receiver gets the bytes as they were \
             at submission (sendzc-bug.c)",
            support::requires(Some(Path::Loopback), &[]),
            unmap_before_notification,
        ),
        Case::new(
            "uring.lifetime.overwrite_before_notification",
            Area::Uring,
            "a buffer overwritten after the first CQE, before the notification: each byte \
             received is the old or the new one; which, is recorded",
            support::requires(Some(Path::Loopback), &[]),
            overwrite_before_notification,
        ),
        Case::new(
            "uring.error.memlock",
            Area::Uring,
            "under a 16-page RLIMIT_MEMLOCK without CAP_IPC_LOCK a 1 MiB SEND_ZC fails with \
             ENOMEM, and the protocol holds (a notification iff F_MORE)",
            support::requires(Some(Path::Loopback), &[]),
            memlock,
        )
        .serial("sets the process's RLIMIT_MEMLOCK and switches one thread's uid"),
    ]
}

/// A loopback TCP connection and a receiver that keeps everything until end of stream.
fn tcp_lo() -> Result<(Loopback, Socket, collect::Stream)> {
    let lo = Loopback::new(None)?;
    let (s, r) = support::connect(&lo, TCP4)?;
    let rx = collect::Stream::start(r)?;
    Ok((lo, s, rx))
}

/// Fills `buf` with a pattern that differs at every offset of a page.
fn fill(buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i % 251) as u8 ^ (i / 4096) as u8;
    }
}

fn offsets(ctx: &mut Ctx, hugetlb: bool) -> Result<Verdict> {
    let (_lo, s, rx) = tcp_lo()?;
    let mut ring = support::ring()?;
    let size = if hugetlb { 4 << 20 } else { 16 * PAGE };
    let mut map = Mapping::new(size, hugetlb).with_context(|| {
        format!(
            "mmap of {size} bytes{}",
            if hugetlb { " (MAP_HUGETLB)" } else { "" }
        )
    })?;
    fill(map.as_mut_slice());
    let copy = map.as_mut_slice().to_vec();
    ring.register_mappings(vec![map])
        .context("registering the mapping")?;
    // (offset, len) ranges: odd offsets, page crossings, and for hugetlb the 2 MiB boundary.
    let mut ranges = vec![
        (13, 100),
        (41, 2 * PAGE - 41 - 13),
        (PAGE + 27, PAGE),
        (PAGE - 1, 2 * PAGE + 3),
        // Touching the end of the registration.
        (size - PAGE + 5, PAGE - 5),
    ];
    if hugetlb {
        ranges.push(((2 << 20) - 13, 3 * PAGE));
    }
    let fixed_msg = support::offered(probes::SENDMSG_ZC_FIXED);
    let mut reqs = Vec::new();
    let mut want = Vec::new();
    for (i, &(off, len)) in ranges.iter().enumerate() {
        let ud = 2 * i as u64 + 1;
        reqs.push(SendRequest::new(
            SendOp::SendZc,
            Payload::Fixed {
                index: 0,
                offset: off,
                len,
            },
            ud,
        ));
        want.extend_from_slice(&copy[off..off + len]);
        if fixed_msg {
            // Two iovecs, the first of one byte, both inside the registration.
            reqs.push(SendRequest::new(
                SendOp::SendMsgZc,
                Payload::FixedVectored {
                    index: 0,
                    segments: vec![(off, 1), (off + 1, len - 1)],
                },
                ud + 1,
            ));
            want.extend_from_slice(&copy[off..off + len]);
        }
    }
    let n = reqs.len();
    for (i, r) in reqs.iter_mut().enumerate() {
        r.msg_flags |= libc::MSG_WAITALL;
        if i + 1 < n {
            r.sqe_flags |= SqeFlags::IO_LINK;
        }
    }
    let items: Vec<Item<'_>> = reqs.iter().map(|r| Item::Send(&s, r.clone())).collect();
    let (acc, cqes) = support::exchange_items(&mut ring, &items, Duration::ZERO, |_| {})?;
    for r in &reqs {
        let res = acc.outcomes[&r.user_data].res.expect("complete stream");
        expect(res == r.payload.len() as i32, || {
            format!(
                "request #{} of {} bytes completed with {} (CQEs: {})",
                r.user_data,
                r.payload.len(),
                support::show_res(res),
                uring_notif::show(&cqes)
            )
        })?;
    }
    drop(ring);
    drop(s);
    let got = rx.finish()?;
    expect(got == want, || {
        format!(
            "the receiver got {} bytes, {} expected; first difference at {:?}",
            got.len(),
            want.len(),
            got.iter().zip(&want).position(|(a, b)| a != b)
        )
    })?;
    ctx.observe("sendmsg_zc_fixed", fixed_msg);
    Ok(Verdict::pass(format!(
        "{n} requests at {} offsets, {} bytes exact",
        ranges.len(),
        want.len()
    )))
}

/// A TCP connection whose receiver reads nothing until told, with a small receive buffer so
/// that sent data waits on the sender's side, pages still referenced.
fn held_tcp(lo: &Loopback) -> Result<(Socket, Socket)> {
    let l = sockets::tcp_listener(&lo.host.ns, lo.host.ip(Family::V4))?;
    l.set_recv_buffer_size(4096)?;
    let to = sockets::local_addr(&l)?;
    let s = sockets::tcp_connect(&lo.host.ns, to, |_| Ok(()))?;
    let r = sockets::accept(&l, sockets::IO_TIMEOUT)?;
    Ok((s, r))
}

/// What [`hold_and_meddle`] saw of one request.
struct Held {
    label: &'static str,
    res: i32,
    notified_early: bool,
    sent: Vec<u8>,
    received: Vec<u8>,
}

/// Sends `len` bytes from a registered mapping and `len` from an unregistered one, each on
/// its own held connection, waits for the first CQEs, runs `meddle` on the ring and the
/// unregistered mapping, then lets the receivers read and checks the whole stream.
/// What happens to the buffers between the first CQEs and the notifications.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Meddle {
    /// Unmap the unregistered buffer; unregister the registered one and free its memory.
    Release,
    /// Overwrite both with [`NEW`].
    Overwrite,
}

const NEW: u8 = 0xee;

/// What [`hold_and_meddle`] found besides the requests: the stream as evidence, and whether
/// unregistering waited for the in-flight requests (older kernels quiesce the registration).
struct Meddled {
    cqes: String,
    unregister_waited: bool,
}

fn hold_and_meddle(len: usize, meddle: Meddle) -> Result<(Vec<Held>, Meddled)> {
    let lo = Loopback::new(None)?;
    let (s_fixed, r_fixed) = held_tcp(&lo)?;
    let (s_raw, r_raw) = held_tcp(&lo)?;
    let mut ring = support::ring()?;
    let mut fixed = Mapping::new(len, false).context("mmap")?;
    fill(fixed.as_mut_slice());
    let sent_fixed = fixed.as_mut_slice().to_vec();
    ring.register_mappings(vec![fixed])?;
    let mut raw = Mapping::new(len, false).context("mmap")?;
    fill(raw.as_mut_slice());
    raw.as_mut_slice()[0] ^= 0xff;
    let sent_raw = raw.as_mut_slice().to_vec();
    let issued = [1u64, 2].map(|ud| Issued {
        user_data: ud,
        kind: Kind::ZeroCopy {
            report_usage: false,
        },
    });
    // sendzc-bug.c's form where the kernel has it: SENDMSG_ZC from the registration, on a
    // socket with SO_ZEROCOPY set; SEND_ZC from the registration otherwise.
    harness::sys::zerocopy::set_so_zerocopy(s_fixed.as_fd(), true)
        .context("setsockopt(SO_ZEROCOPY, 1)")?;
    let fixed_req = if support::offered(probes::SENDMSG_ZC_FIXED) {
        SendRequest::new(
            SendOp::SendMsgZc,
            Payload::FixedVectored {
                index: 0,
                segments: vec![(0, len)],
            },
            1,
        )
    } else {
        SendRequest::new(
            SendOp::SendZc,
            Payload::Fixed {
                index: 0,
                offset: 0,
                len,
            },
            1,
        )
    };
    ring.push(s_fixed.as_fd(), &fixed_req)?;
    ring.push(
        s_raw.as_fd(),
        &SendRequest::new(
            SendOp::SendZc,
            Payload::Raw {
                addr: raw.addr(0),
                len,
            },
            2,
        ),
    )?;
    // The first CQEs only.
    let mut cqes = ring
        .wait(support::COMPLETION_WAIT, |got| {
            got.iter().filter(|c| !c.notif()).count() == 2
        })
        .context("waiting for the first CQEs")?;
    let early: Vec<u64> = cqes
        .iter()
        .filter(|c| c.notif())
        .map(|c| c.user_data)
        .collect();
    let mut raw = Some(raw);
    let mut readers = None;
    let mut unregister_waited = false;
    let start = |rf: Socket, rr: Socket| -> Result<(collect::Stream, collect::Stream)> {
        Ok((collect::Stream::start(rf)?, collect::Stream::start(rr)?))
    };
    let mut sockets = Some((r_fixed, r_raw));
    match meddle {
        Meddle::Overwrite => {
            ring.fixed_mut(0).fill(NEW);
            if let Some(m) = &mut raw {
                m.as_mut_slice().fill(NEW);
            }
        }
        Meddle::Release => {
            raw.take();
            // Older kernels wait in the unregistration until no request uses the buffers:
            // it runs on a thread of its own, and if it has not returned shortly, the
            // receivers start reading so that the requests can complete.
            let fd = ring.fd();
            let released = std::thread::scope(|sc| -> Result<io::Result<()>> {
                let h = sc.spawn(move || uring::unregister_buffers(fd));
                let deadline = Instant::now() + Duration::from_millis(300);
                while !h.is_finished() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(2));
                }
                if !h.is_finished() {
                    unregister_waited = true;
                    let (rf, rr) = sockets.take().expect("receivers not started yet");
                    readers = Some(start(rf, rr)?);
                }
                Ok(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            })?;
            released.context("IORING_UNREGISTER_BUFFERS")?;
            ring.forget_buffers();
        }
    }
    // Now let the data flow.
    let (rx_fixed, rx_raw) = match readers {
        Some(r) => r,
        None => {
            let (rf, rr) = sockets.take().expect("receivers not started yet");
            start(rf, rr)?
        }
    };
    cqes.extend(
        ring.wait(support::COMPLETION_WAIT, |got| {
            let all: Vec<_> = cqes.iter().chain(got).copied().collect();
            uring_notif::owed(&issued, &all) == 0
        })
        .context("waiting for the notifications")?,
    );
    let shown = uring_notif::show(&cqes);
    let acc = uring_notif::check(&issued, &cqes, true)
        .map_err(|v| fail_with(v.to_string(), shown.clone()))?;
    drop(ring);
    drop(s_fixed);
    drop(s_raw);
    let got_fixed = rx_fixed.finish()?;
    let got_raw = rx_raw.finish()?;
    drop(raw);
    let held = [
        ("fixed", 1u64, sent_fixed, got_fixed),
        ("unregistered", 2, sent_raw, got_raw),
    ]
    .into_iter()
    .map(|(label, ud, sent, received)| Held {
        label,
        res: acc.outcomes[&ud].res.expect("complete stream"),
        notified_early: early.contains(&ud),
        sent,
        received,
    })
    .collect();
    Ok((
        held,
        Meddled {
            cqes: shown,
            unregister_waited,
        },
    ))
}

fn unmap_before_notification(ctx: &mut Ctx) -> Result<Verdict> {
    let len = 256 * 1024;
    let (held, m) = hold_and_meddle(len, Meddle::Release)?;
    let cqes = &m.cqes;
    ctx.observe("unregister_waited_for_requests", m.unregister_waited);
    let mut seen = Vec::new();
    for h in &held {
        expect(h.res > 0, || {
            format!(
                "{}: the send completed with {} (CQEs: {cqes})",
                h.label,
                support::show_res(h.res)
            )
        })?;
        let n = h.res as usize;
        expect(h.received[..] == h.sent[..n], || {
            format!(
                "{}: {n} bytes were sent from memory released before the notification; the \
                 receiver got {} bytes, first difference at {:?}",
                h.label,
                h.received.len(),
                h.received.iter().zip(&h.sent).position(|(a, b)| a != b)
            )
        })?;
        ctx.observe_timing(
            format!("{}.notified_before_release", h.label),
            h.notified_early,
        );
        seen.push(format!(
            "{}: {n} bytes intact{}",
            h.label,
            if h.notified_early {
                " (notified before the release began)"
            } else {
                ", notification still pending when the release began"
            }
        ));
    }
    if m.unregister_waited {
        seen.push(
            "IORING_UNREGISTER_BUFFERS waited until the requests were done, so the registered \
             memory was freed only after its notification"
                .into(),
        );
    }
    Ok(Verdict::pass(seen.join("; ")))
}

fn overwrite_before_notification(ctx: &mut Ctx) -> Result<Verdict> {
    let len = 256 * 1024;
    let (held, m) = hold_and_meddle(len, Meddle::Overwrite)?;
    let cqes = m.cqes;
    let mut seen = Vec::new();
    for h in &held {
        let n = h.res.max(0) as usize;
        expect(h.received.len() == n, || {
            format!(
                "{}: the send reported {n} bytes, the receiver got {} (CQEs: {cqes})",
                h.label,
                h.received.len()
            )
        })?;
        let stray = h
            .received
            .iter()
            .zip(&h.sent)
            .position(|(&got, &old)| got != old && got != NEW);
        expect(stray.is_none(), || {
            format!(
                "{}: byte {:?} received is neither the value at submission nor the one \
                 written after",
                h.label, stray
            )
        })?;
        let changed = h
            .received
            .iter()
            .zip(&h.sent)
            .filter(|(a, b)| a != b)
            .count();
        ctx.observe_timing(
            format!("{}.bytes_changed_after_first_cqe", h.label),
            changed,
        );
        ctx.observe_timing(
            format!("{}.notified_before_overwrite", h.label),
            h.notified_early,
        );
        seen.push(format!(
            "{}: {changed} of {n} bytes show the overwrite",
            h.label
        ));
    }
    Ok(Verdict::pass(seen.join("; ")))
}

/// Restores RLIMIT_MEMLOCK on drop.
struct MemlockGuard(libc::rlim_t, libc::rlim_t);

impl Drop for MemlockGuard {
    fn drop(&mut self) {
        if let Err(e) = setrlimit(Resource::RLIMIT_MEMLOCK, self.0, self.1) {
            eprintln!("zccheck: could not restore RLIMIT_MEMLOCK: {e}");
        }
    }
}

/// What the unprivileged thread saw.
struct Limited {
    register: Result<(), i32>,
    res: i32,
    more: bool,
    notified: bool,
}

fn memlock(ctx: &mut Ctx) -> Result<Verdict> {
    let lo = Loopback::new(None)?;
    let (s, r) = support::connect(&lo, TCP4)?;
    let _sink = harness::sockets::Sink::start(r, false)?;
    let (soft, hard) = getrlimit(Resource::RLIMIT_MEMLOCK).context("getrlimit")?;
    let limit = 16 * PAGE as u64;
    if hard < limit {
        // The environment's limit, which this process cannot raise.
        return Err(crate::outcome::skipped(format!(
            "the hard RLIMIT_MEMLOCK ({hard} bytes) is below the {limit} bytes the case sets"
        )));
    }
    let guard = MemlockGuard(soft, hard);
    setrlimit(Resource::RLIMIT_MEMLOCK, limit, hard).context("setrlimit(MEMLOCK)")?;
    let data = support::pattern(1 << 20);
    let work = || -> Result<Limited> {
        // The ring is made here: io_uring charges pinned pages to the creator's user unless
        // it had CAP_IPC_LOCK when the ring was set up.
        let mut ring = support::ring()?;
        let register = ring
            .register_buffers(&[1 << 20])
            .map_err(|e| e.raw_os_error().unwrap_or(0));
        let reqs = vec![(
            &s,
            support::request(SendOp::SendZc, &data, data.len(), false, false, 1),
        )];
        let (acc, _) = support::exchange(&mut ring, &reqs, Duration::from_millis(50))?;
        let o = acc.outcomes[&1];
        Ok(Limited {
            register,
            res: o.res.expect("complete stream"),
            more: o.more,
            notified: o.notif.is_some(),
        })
    };
    let got = if ctx.privileges.machine_wide() {
        ctx.observe("charged_to", "an unused uid with no capabilities");
        creds::run_as_uid(2_000_000_000 + std::process::id(), work)??
    } else {
        ctx.observe("charged_to", "the caller's uid (rootless)");
        work()?
    };
    drop(guard);
    ctx.observe(
        "register_1mib",
        match got.register {
            Ok(()) => "ok".to_string(),
            Err(e) => crate::probes::errno_name(e),
        },
    );
    ctx.observe("send_res", support::show_res(got.res));
    ctx.observe("send_f_more", got.more);
    expect(got.res == -libc::ENOMEM, || {
        format!(
            "a 1 MiB SEND_ZC charged against a 16-page RLIMIT_MEMLOCK completed with {} \
             (ENOMEM expected: the pinned pages do not fit)",
            support::show_res(got.res)
        )
    })?;
    Ok(Verdict::pass(format!(
        "ENOMEM{}; registering 1 MiB: {}",
        if got.more {
            " with F_MORE, then its notification"
        } else if got.notified {
            ""
        } else {
            " without F_MORE, nothing after"
        },
        match got.register {
            Ok(()) => "ok".to_string(),
            Err(e) => crate::probes::errno_name(e),
        }
    )))
}
