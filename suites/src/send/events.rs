//! How notifications announce themselves, and what happens to them when things go wrong
//! (SEMANTICS.md R2.7, R6.6–R6.8, R3.4).
//!
//! * `send.ctrunc.*`: a control buffer too small for the notification sets MSG_CTRUNC; the
//!   notification is then gone (recorded) and the ids go on (msg_zerocopy.c treats
//!   MSG_CTRUNC as fatal).
//! * `send.poll.*`: a pending notification raises POLLERR even with no events asked for,
//!   level-triggered until read; SO_ERROR stays 0 and ordinary reads and writes are not
//!   disturbed.
//! * `send.select.*`: select() reports the socket readable and writable while a
//!   notification is pending (POLLIN_SET and POLLOUT_SET include EPOLLERR).
//! * `send.epoll_edge.*`: edge-triggered epoll gives one EPOLLERR per completion, also when
//!   the completion merges into an unread notification, and none without a new one
//!   (packetdrill `epoll_edge.pkt`, `epoll_exclusive.pkt`).
//! * `send.epoll_oneshot.*`: EPOLLONESHOT gives one EPOLLERR, then nothing until re-armed
//!   with EPOLL_CTL_MOD, which reports the still-pending queue at once (`epoll_oneshot.pkt`).
//! * `send.reset.*`, `send.abort.*`: when the connection is reset by the peer, or aborted by
//!   TCP_USER_TIMEOUT, with zero-copy data still unacknowledged, every notification is still
//!   delivered, and later sends fail with EPIPE and take no id (R6.7).
//! * `send.tfo.*`: TCP Fast Open with MSG_ZEROCOPY: without a cookie the send gives
//!   EINPROGRESS and takes no id; with a cookie the data rides in the SYN and takes id 0; the
//!   accepted child inherits SO_ZEROCOPY and its ids start at 0 (packetdrill
//!   `fastopen-client.pkt`, `fastopen-server.pkt`).

use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use harness::sockets::{self, Family, Proto, Sink};
use harness::sys::errqueue::{self, Completion};
use harness::sys::sockopt;
use harness::sys::zerocopy::{self, MSG_ZEROCOPY};
use harness::{netlink, sysctl};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::select::{select, FdSet};
use nix::sys::time::TimeVal;
use serde::Serialize;
use socket2::Socket;

use super::flow::{
    await_ids, completions, errno_result, show, show_each, zc_send, Path, Variant, COMPLETION_WAIT,
};
use crate::case::{Area, Case, Ctx};
use crate::model::coalescing::{Behaviour, CopyRule, IdModel, SendCall};
use crate::model::completions::{check, IdWindow};
use crate::outcome::{expect, fail_with, unsupported, Verdict};
use crate::probes::{errno_name, io_errno};

pub fn cases() -> Vec<Case> {
    use Family::{V4, V6};
    use Proto::{Tcp, Udp};
    let v = Variant::new;
    let mut cases = Vec::new();
    let mut add =
        |rule: &str, v: Variant, title: &str, run: fn(&mut Ctx, Variant) -> Result<Verdict>| {
            cases.push(Case::new(
                format!("send.{rule}.{}", v.tag()),
                Area::Send,
                title,
                v.requires(),
                move |ctx| run(ctx, v),
            ));
        };
    let ctrunc = "a control buffer too small for the notification sets MSG_CTRUNC; ids go on \
                  (loss recorded; msg_zerocopy.c treats it as fatal)";
    add("ctrunc", v(Tcp, V4, Path::Loopback), ctrunc, ctrunc_case);
    add("ctrunc", v(Udp, V6, Path::Loopback), ctrunc, ctrunc_case);
    add(
        "poll",
        v(Tcp, V4, Path::Loopback),
        "a pending notification raises POLLERR, unmaskable and level-triggered; SO_ERROR \
         stays 0; reads and writes are undisturbed",
        poll_case,
    );
    add(
        "select",
        v(Udp, V4, Path::Loopback),
        "select() reports a socket with a pending notification readable and writable",
        select_case,
    );
    add(
        "epoll_edge",
        v(Tcp, V4, Path::Loopback),
        "EPOLLET: one EPOLLERR per completion, merged or not, none without one (packetdrill \
         epoll_edge, epoll_exclusive)",
        epoll_edge,
    );
    add(
        "epoll_oneshot",
        v(Tcp, V4, Path::Loopback),
        "EPOLLONESHOT: one EPOLLERR, none until re-armed with EPOLL_CTL_MOD (packetdrill \
         epoll_oneshot)",
        epoll_oneshot,
    );
    add(
        "reset",
        v(Tcp, V4, Path::Loopback),
        "a reset with zero-copy data unsent: every notification delivered, then EPIPE and no \
         id",
        reset,
    );
    add(
        "abort",
        v(Tcp, V4, Path::Forward),
        "a TCP_USER_TIMEOUT abort with zero-copy data unacknowledged: every notification \
         delivered, then EPIPE and no id",
        abort,
    );
    for family in [V4, V6] {
        add(
            "tfo",
            v(Tcp, family, Path::Loopback),
            "TCP Fast Open with MSG_ZEROCOPY: no cookie, EINPROGRESS and no id; cookie, data \
             in the SYN with id 0; the child inherits (packetdrill fastopen-client/server)",
            tfo,
        );
    }
    cases
}

fn model(v: Variant) -> IdModel {
    IdModel::new(v.proto, Behaviour::NO_EMPTY_UDP_SENDS, CopyRule::Unknown)
}

/// `poll` with `events` for at most `ms`; the returned events (empty on timeout).
fn poll_now(fd: BorrowedFd<'_>, events: PollFlags, ms: u16) -> Result<PollFlags> {
    let mut fds = [PollFd::new(fd, events)];
    poll(&mut fds, PollTimeout::from(ms)).context("poll")?;
    Ok(fds[0].revents().unwrap_or(PollFlags::empty()))
}

fn so_error(fd: BorrowedFd<'_>) -> Result<i32> {
    sockopt::get_int(fd, libc::SOL_SOCKET, libc::SO_ERROR).context("getsockopt(SO_ERROR)")
}

/// One zero-copy send that must succeed in full.
fn send_ok(s: &Socket, len: usize) -> Result<()> {
    let data = vec![0x66u8; len];
    let n = zc_send(s, &data, false).context("zero-copy send")?;
    anyhow::ensure!(n == len, "a zero-copy send sent {n} of {len} bytes");
    Ok(())
}

/// R2.7. Two kinds of truncation: a buffer smaller than a cmsghdr, and one holding the
/// header but only part of the extended error.
fn ctrunc_case(ctx: &mut Ctx, v: Variant) -> Result<Verdict> {
    let net = v.build()?;
    let f = net.flow(true)?;
    let _sink = Sink::start(f.receiver.try_clone()?, false)?;
    let fd = f.sender.as_fd();
    let header = std::mem::size_of::<libc::cmsghdr>();
    let mut issued = 0u64;
    let mut read: Vec<Completion> = Vec::new();
    let mut lost = Vec::new();
    for control_len in [8, header + 4] {
        send_ok(&f.sender, 100)?;
        issued += 1;
        expect(errqueue::wait_err(fd, COMPLETION_WAIT)?, || {
            format!("a successful send was not notified within {COMPLETION_WAIT:?}")
        })?;
        let entry = errqueue::read_one(fd, control_len)?
            .context("POLLERR was raised but the error queue was empty")?;
        expect(entry.truncated(), || {
            format!(
                "a {control_len}-byte control buffer got the notification without MSG_CTRUNC \
                 (msg_flags {:#x})",
                entry.msg_flags
            )
        })?;
        expect(entry.msg_flags & libc::MSG_ERRQUEUE != 0, || {
            format!("msg_flags {:#x} lacks MSG_ERRQUEUE", entry.msg_flags)
        })?;
        let rest = completions(&errqueue::drain(fd)?);
        lost.push((control_len, rest.is_empty()));
        read.extend(rest);
    }
    // The ids go on: one more send, read in full, is the next id, alone or merged with a
    // notification the kernel chose to keep.
    send_ok(&f.sender, 100)?;
    issued += 1;
    read.extend(completions(&await_ids(&f.sender, 1)?));
    let last = (issued - 1) as u32;
    check(IdWindow::new(0, issued), &read, false)
        .map_err(|viol| fail_with(viol.to_string(), show(&read)))?;
    expect(read.iter().any(|c| c.lo <= last && last <= c.hi), || {
        format!(
            "the send after the truncated reads (id {last}) was not reported: {}",
            show(&read)
        )
    })?;
    ctx.observe(
        "truncated_notification_lost",
        lost.iter()
            .map(|(len, l)| (format!("control_{len}_bytes"), *l))
            .collect::<std::collections::BTreeMap<_, _>>(),
    );
    ctx.observe("read_in_full", show(&read));
    Ok(Verdict::pass(
        "MSG_CTRUNC on both truncations; the next id was reported",
    ))
}

/// R6.8 for poll(2).
fn poll_case(ctx: &mut Ctx, v: Variant) -> Result<Verdict> {
    let net = v.build()?;
    let f = net.flow(true)?;
    let _sink = Sink::start(f.receiver.try_clone()?, false)?;
    let fd = f.sender.as_fd();
    let idle = poll_now(fd, PollFlags::empty(), 0)?;
    expect(!idle.contains(PollFlags::POLLERR), || {
        format!("POLLERR before any send: {idle:?}")
    })?;
    send_ok(&f.sender, 1000)?;
    let started = Instant::now();
    let mut raised = PollFlags::empty();
    while started.elapsed() < COMPLETION_WAIT && !raised.contains(PollFlags::POLLERR) {
        raised = poll_now(fd, PollFlags::empty(), 100)?;
    }
    expect(raised.contains(PollFlags::POLLERR), || {
        format!("no POLLERR (events 0) within {COMPLETION_WAIT:?} of a zero-copy send")
    })?;
    let again = poll_now(fd, PollFlags::empty(), 0)?;
    expect(again.contains(PollFlags::POLLERR), || {
        format!("POLLERR was not raised again before the queue was read: {again:?}")
    })?;
    let asked = poll_now(fd, PollFlags::POLLIN | PollFlags::POLLOUT, 0)?;
    let err = so_error(fd)?;
    expect(err == 0, || {
        format!(
            "SO_ERROR is {} while a notification is pending",
            errno_name(err)
        )
    })?;
    let mut b = [0u8; 16];
    f.sender.set_nonblocking(true)?;
    let r = std::io::Read::read(&mut &f.sender, &mut b);
    f.sender.set_nonblocking(false)?;
    expect(
        matches!(&r, Err(e) if e.raw_os_error() == Some(libc::EAGAIN)),
        || {
            format!(
                "an ordinary read with a notification pending gave {}",
                r.as_ref().map(|n| n.to_string()).unwrap_or_else(io_errno)
            )
        },
    )?;
    let plain = zerocopy::send_flags(fd, &[1u8; 100], libc::MSG_NOSIGNAL);
    expect(matches!(plain, Ok(100)), || {
        format!("a plain send with a notification pending gave {plain:?}")
    })?;
    let got = completions(&errqueue::drain(fd)?);
    check(IdWindow::new(0, 1), &got, true)
        .map_err(|viol| fail_with(viol.to_string(), show(&got)))?;
    let after = poll_now(fd, PollFlags::empty(), 0)?;
    expect(!after.contains(PollFlags::POLLERR), || {
        format!("POLLERR after the queue was read: {after:?}")
    })?;
    ctx.observe("revents_pollin_pollout", format!("{asked:?}"));
    Ok(Verdict::pass(
        "POLLERR with no events asked, until read; SO_ERROR 0; EAGAIN on read; send works",
    ))
}

/// R6.8 for select(2).
fn select_case(ctx: &mut Ctx, v: Variant) -> Result<Verdict> {
    let net = v.build()?;
    let f = net.flow(true)?;
    let _sink = Sink::start(f.receiver.try_clone()?, false)?;
    let fd = f.sender.as_fd();
    let sets = |fd: BorrowedFd<'_>| -> Result<(bool, bool, bool)> {
        let (mut r, mut w, mut e) = (FdSet::new(), FdSet::new(), FdSet::new());
        r.insert(fd);
        w.insert(fd);
        e.insert(fd);
        let mut zero = TimeVal::new(0, 0);
        select(None, &mut r, &mut w, &mut e, &mut zero).context("select")?;
        Ok((r.contains(fd), w.contains(fd), e.contains(fd)))
    };
    let before = sets(fd)?;
    expect(!before.0, || "readable before anything was sent".into())?;
    send_ok(&f.sender, 1000)?;
    expect(errqueue::wait_err(fd, COMPLETION_WAIT)?, || {
        format!("a successful send was not notified within {COMPLETION_WAIT:?}")
    })?;
    let (readable, writable, exceptional) = sets(fd)?;
    expect(readable && writable, || {
        format!(
            "with a notification pending, select() says readable={readable} \
             writable={writable}; both are promised"
        )
    })?;
    let got = completions(&errqueue::drain(fd)?);
    check(IdWindow::new(0, 1), &got, true)
        .map_err(|viol| fail_with(viol.to_string(), show(&got)))?;
    let after = sets(fd)?;
    expect(!after.0, || {
        "still readable after the queue was read".into()
    })?;
    ctx.observe("exceptional_while_pending", exceptional);
    Ok(Verdict::pass(
        "readable and writable while a notification is pending, not readable after",
    ))
}

/// Events from one `epoll_wait` of at most `ms`.
fn epoll_events(ep: &Epoll, ms: u16) -> Result<Vec<EpollFlags>> {
    let mut evs = [EpollEvent::empty(); 4];
    // A stop and continue interrupts epoll_wait (EINTR): the wait goes on for the time left.
    let wait = Duration::from_millis(ms.into());
    let n = harness::sys::retry::retry_waiting(wait, |left| {
        let left = u16::try_from(left.as_millis()).unwrap_or(ms);
        ep.wait(&mut evs, PollTimeout::from(left))
            .map_err(std::io::Error::from)
    })
    .context("epoll_wait")?;
    Ok(evs[..n].iter().map(|e| e.events()).collect())
}

/// Waits up to [`COMPLETION_WAIT`] for the next epoll report.
fn next_epoll(ep: &Epoll) -> Result<Vec<EpollFlags>> {
    let started = Instant::now();
    loop {
        let evs = epoll_events(ep, 100)?;
        if !evs.is_empty() || started.elapsed() > COMPLETION_WAIT {
            return Ok(evs);
        }
    }
}

/// How long "no further event" is watched for. Completions on loopback take microseconds.
const NO_EVENT: u16 = 30;

fn one_err(evs: &[EpollFlags], what: &str) -> Result<()> {
    expect(
        evs.len() == 1 && evs[0].contains(EpollFlags::EPOLLERR),
        || format!("{what}: expected one EPOLLERR, got {evs:?}"),
    )
}

fn no_event(ep: &Epoll, what: &str) -> Result<()> {
    let evs = epoll_events(ep, NO_EVENT)?;
    expect(evs.is_empty(), || {
        format!("{what}: unexpected events {evs:?}")
    })
}

/// R3.4, R6.8 with EPOLLET, then the same with EPOLLEXCLUSIVE (a fresh connection each).
fn epoll_edge(ctx: &mut Ctx, v: Variant) -> Result<Verdict> {
    let net = v.build()?;
    let mut seen = Vec::new();
    for (name, flags) in [
        ("EPOLLET", EpollFlags::EPOLLET),
        (
            "EPOLLET|EPOLLEXCLUSIVE",
            EpollFlags::EPOLLET | EpollFlags::EPOLLEXCLUSIVE,
        ),
    ] {
        let f = net.flow(true)?;
        let _sink = Sink::start(f.receiver.try_clone()?, false)?;
        let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create1")?;
        // EPOLLERR is always reported; nothing else is asked for, so only completions
        // wake us.
        ep.add(&f.sender, EpollEvent::new(flags, 1))
            .with_context(|| format!("EPOLL_CTL_ADD {name}"))?;
        let what = |s: &str| format!("{name}, {s}");
        no_event(&ep, &what("before any send"))?;
        send_ok(&f.sender, 1000)?;
        one_err(&next_epoll(&ep)?, &what("the first completion"))?;
        no_event(&ep, &what("no new completion"))?;
        send_ok(&f.sender, 1000)?;
        one_err(
            &next_epoll(&ep)?,
            &what("a second completion while the first notification is unread"),
        )?;
        no_event(&ep, &what("no new completion after the second"))?;
        let got = completions(&await_ids(&f.sender, 2)?);
        check(IdWindow::new(0, 2), &got, true)
            .map_err(|viol| fail_with(what(&viol.to_string()), show(&got)))?;
        seen.push(format!("{name}: {}", show(&got)));
    }
    ctx.observe_timing("notifications", &seen);
    Ok(Verdict::pass(format!(
        "one EPOLLERR per completion ({})",
        seen.join("; ")
    )))
}

/// R6.8 with EPOLLONESHOT.
fn epoll_oneshot(ctx: &mut Ctx, v: Variant) -> Result<Verdict> {
    let net = v.build()?;
    let f = net.flow(true)?;
    let _sink = Sink::start(f.receiver.try_clone()?, false)?;
    let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create1")?;
    let oneshot = || EpollEvent::new(EpollFlags::EPOLLONESHOT, 1);
    ep.add(&f.sender, oneshot()).context("EPOLL_CTL_ADD")?;
    send_ok(&f.sender, 1000)?;
    one_err(&next_epoll(&ep)?, "the first completion")?;
    send_ok(&f.sender, 1000)?;
    send_ok(&f.sender, 1000)?;
    // Let both complete: loopback takes microseconds.
    std::thread::sleep(Duration::from_millis(20));
    no_event(&ep, "completions while disarmed")?;
    ep.modify(&f.sender, &mut oneshot())
        .context("EPOLL_CTL_MOD")?;
    one_err(&next_epoll(&ep)?, "re-armed with notifications pending")?;
    no_event(&ep, "disarmed again")?;
    let got = completions(&await_ids(&f.sender, 3)?);
    check(IdWindow::new(0, 3), &got, true)
        .map_err(|viol| fail_with(viol.to_string(), show(&got)))?;
    ctx.observe_timing("notifications", show_each(&got));
    Ok(Verdict::pass(format!(
        "one EPOLLERR, none while disarmed, one on re-arm ({} read)",
        show(&got)
    )))
}

/// What a reset or abort case saw.
#[derive(Debug, Default, Serialize)]
struct Aftermath {
    sends: Vec<String>,
    pending_before: u64,
    revents: String,
    so_error: String,
    notifications: String,
    later_send: String,
}

/// Fills the connection with non-blocking zero-copy sends until EAGAIN; returns how many ids
/// they took (through the model).
fn fill(sock: &Socket, model: &mut IdModel, log: &mut Vec<String>) -> Result<()> {
    sock.set_nonblocking(true)?;
    let buf = vec![0x21u8; 64 * 1024];
    for _ in 0..256 {
        let r = errno_result(zc_send(sock, &buf, false));
        log.push(match r {
            Ok(n) => n.to_string(),
            Err(e) => errno_name(e),
        });
        model
            .send(
                SendCall {
                    len: buf.len(),
                    more: false,
                },
                r,
            )
            .map_err(|d| fail_with(d.to_string(), log.join(" ")))?;
        if r == Err(libc::EAGAIN) {
            break;
        }
    }
    sock.set_nonblocking(false)?;
    Ok(())
}

/// After the connection died: every id reported, SO_ERROR recorded, later sends EPIPE.
fn after_death(
    sock: &Socket,
    model: &mut IdModel,
    early: Vec<Completion>,
    seen: &mut Aftermath,
) -> Result<()> {
    let fd = sock.as_fd();
    let started = Instant::now();
    let mut revents = PollFlags::empty();
    while started.elapsed() < Duration::from_secs(5) && !revents.contains(PollFlags::POLLHUP) {
        revents = poll_now(fd, PollFlags::empty(), 100)?;
    }
    seen.revents = format!("{revents:?}");
    anyhow::ensure!(
        revents.contains(PollFlags::POLLHUP),
        "the connection did not die within 5 s (revents {revents:?})"
    );
    let owed = model.issued() - super::flow::covered_of(&early);
    let mut got = early;
    got.extend(completions(&await_ids(sock, owed)?));
    seen.notifications = show(&got);
    let evidence = |seen: &Aftermath| serde_json::to_string_pretty(seen).unwrap_or_default();
    model
        .observe(&got)
        .and_then(|_| model.finish())
        .map_err(|d| fail_with(format!("after the connection died: {d}"), evidence(seen)))?;
    seen.so_error = errno_name(so_error(fd)?);
    model.shutdown();
    let r = errno_result(zc_send(sock, &[1u8; 100], false));
    seen.later_send = match r {
        Ok(n) => n.to_string(),
        Err(e) => errno_name(e),
    };
    model
        .send(
            SendCall {
                len: 100,
                more: false,
            },
            r,
        )
        .map_err(|d| fail_with(d.to_string(), evidence(seen)))?;
    errqueue::wait_err(fd, Duration::from_millis(NO_EVENT as u64))?;
    let late = completions(&errqueue::drain(fd)?);
    model
        .observe(&late)
        .map_err(|d| fail_with(format!("after the failed send: {d}"), evidence(seen)))?;
    Ok(())
}

/// R6.7, reset by the peer: the receiver stops reading with a small window, the sender
/// fills its buffer (the last sends wait unsent, their pages still pinned), and the receiver
/// closes with unread data, which sends a reset.
fn reset(ctx: &mut Ctx, v: Variant) -> Result<Verdict> {
    let net = v.build()?;
    let host = net.topo.receiver();
    let listener = sockets::socket_in(&host.ns, v.family, Proto::Tcp)?;
    listener.set_recv_buffer_size(4096)?;
    listener.bind(&std::net::SocketAddr::new(host.ip(v.family), 0).into())?;
    listener.listen(1)?;
    let to = sockets::local_addr(&listener)?;
    let client = sockets::tcp_connect(&net.topo.sender().ns, to, |c| {
        c.set_send_buffer_size(64 * 1024)
    })?;
    let server = sockets::accept(&listener, sockets::IO_TIMEOUT)?;
    zerocopy::set_so_zerocopy(client.as_fd(), true)?;
    let mut m = model(v);
    let mut seen = Aftermath::default();
    fill(&client, &mut m, &mut seen.sends)?;
    let early = completions(&errqueue::drain(client.as_fd())?);
    seen.pending_before = m.issued() - super::flow::covered_of(&early);
    anyhow::ensure!(
        seen.pending_before > 0,
        "every send completed before the reset; nothing was pending to test"
    );
    drop(server); // unread data: the close sends a reset
    after_death(&client, &mut m, early, &mut seen)?;
    expect(seen.later_send.starts_with("EPIPE"), || {
        format!("a send after the reset gave {}", seen.later_send)
    })?;
    let pending = seen.pending_before;
    ctx.observe("aftermath", seen);
    Ok(Verdict::pass(format!(
        "{pending} pending ids reported after the reset; the next send EPIPE, no id"
    )))
}

/// R6.7, aborted by TCP_USER_TIMEOUT: the receiver's link goes down with zero-copy data
/// unacknowledged; the sender gives up after the user timeout.
fn abort(ctx: &mut Ctx, v: Variant) -> Result<Verdict> {
    let net = v.build()?;
    let f = net.flow(true)?;
    let _sink = Sink::start(f.receiver.try_clone()?, false)?;
    f.sender
        .set_tcp_user_timeout(Some(Duration::from_millis(100)))
        .context("TCP_USER_TIMEOUT")?;
    let mut m = model(v);
    let mut seen = Aftermath::default();
    let send = |m: &mut IdModel, seen: &mut Aftermath| -> Result<()> {
        let r = errno_result(zc_send(&f.sender, &[0x44u8; 4096], false));
        seen.sends.push(format!("{r:?}"));
        m.send(
            SendCall {
                len: 4096,
                more: false,
            },
            r,
        )
        .map_err(|d| fail_with(d.to_string(), seen.sends.join(" ")))
    };
    send(&mut m, &mut seen)?;
    let mut early = completions(&await_ids(&f.sender, 1)?);
    // The far link goes down behind the router: the sender's own link keeps its carrier, so
    // TCP retransmits on its timer and the user timeout ends the connection within about a
    // second (with the sender's carrier lost, it would wait in slower probing).
    let r = net.topo.receiver();
    netlink::set_down(&r.ns, &r.ifname)?;
    for _ in 0..3 {
        send(&mut m, &mut seen)?;
    }
    early.extend(completions(&errqueue::drain(f.sender.as_fd())?));
    seen.pending_before = m.issued() - super::flow::covered_of(&early);
    anyhow::ensure!(
        seen.pending_before > 0,
        "every send completed with the link down; nothing was pending to test"
    );
    after_death(&f.sender, &mut m, early, &mut seen)?;
    expect(seen.later_send.starts_with("EPIPE"), || {
        format!("a send after the abort gave {}", seen.later_send)
    })?;
    let pending = seen.pending_before;
    ctx.observe("aftermath", seen);
    Ok(Verdict::pass(format!(
        "{pending} unacknowledged ids reported after the abort; the next send EPIPE, no id"
    )))
}

/// R6.6 (f859a4484703 "tcp: allow zerocopy with fastopen", ~5.0).
fn tfo(ctx: &mut Ctx, v: Variant) -> Result<Verdict> {
    let net = v.build()?;
    let host = net.topo.sender();
    // Client and server on; a cookie is required (the default).
    let _tfo = sysctl::set_in(&host.ns, "net.ipv4.tcp_fastopen", "3")?;
    let listener = sockets::socket_in(&host.ns, v.family, Proto::Tcp)?;
    zerocopy::set_so_zerocopy(listener.as_fd(), true)?;
    sockopt::set_int(listener.as_fd(), libc::IPPROTO_TCP, libc::TCP_FASTOPEN, 16)
        .context("TCP_FASTOPEN on the listener")?;
    listener.bind(&std::net::SocketAddr::new(host.ip(v.family), 0).into())?;
    listener.listen(4)?;
    let to = sockets::local_addr(&listener)?;
    let data = [0x46u8; 100];
    let mut answers = Vec::new();
    let fastopen =
        |what: &str, answers: &mut Vec<String>| -> Result<(Socket, Result<usize, i32>)> {
            let s = sockets::socket_in(&host.ns, v.family, Proto::Tcp)?;
            zerocopy::set_so_zerocopy(s.as_fd(), true)?;
            s.set_nonblocking(true)?;
            let r = errno_result(s.send_to_with_flags(
                &data,
                &to.into(),
                libc::MSG_FASTOPEN | MSG_ZEROCOPY | libc::MSG_NOSIGNAL,
            ));
            answers.push(format!(
                "{what}: {}",
                r.map(|n| n.to_string()).unwrap_or_else(errno_name)
            ));
            if r == Err(libc::EINVAL) {
                return Err(unsupported(
                    "sendto(MSG_FASTOPEN | MSG_ZEROCOPY) on an unconnected TCP socket: EINVAL \
                 (zero-copy with Fast Open needs f859a4484703, ~5.0)",
                ));
            }
            Ok((s, r))
        };
    let wait_connected = |s: &Socket| -> Result<()> {
        let revents = poll_now(s.as_fd(), PollFlags::POLLOUT, 3000)?;
        anyhow::ensure!(
            revents.contains(PollFlags::POLLOUT) && so_error(s.as_fd())? == 0,
            "the Fast Open connection was not established (revents {revents:?})"
        );
        s.set_nonblocking(false)?;
        Ok(())
    };
    // 1. No cookie yet: the SYN asks for one and carries no data.
    let (first, r1) = fastopen("without a cookie", &mut answers)?;
    let mut m1 = model(v);
    let call = SendCall {
        len: data.len(),
        more: false,
    };
    if r1 != Err(libc::EINPROGRESS) {
        // Data in the SYN without a cookie, or a hard error: take the answer as it is.
        m1.send(call, r1)
            .map_err(|d| fail_with(d.to_string(), answers.join("; ")))?;
    }
    wait_connected(&first)?;
    let child1 = sockets::accept(&listener, sockets::IO_TIMEOUT)?;
    let _sink1 = Sink::start(child1, false)?;
    m1.send(call, errno_result(zc_send(&first, &data, false)))
        .map_err(|d| fail_with(d.to_string(), answers.join("; ")))?;
    let got1 = completions(&await_ids(&first, m1.issued())?);
    m1.observe(&got1).and_then(|_| m1.finish()).map_err(|d| {
        fail_with(
            format!("after a Fast Open attempt without a cookie: {d}"),
            format!("{}; notifications {}", answers.join("; "), show(&got1)),
        )
    })?;
    // 2. With the cookie from the first connection: the data rides in the SYN.
    let (second, r2) = fastopen("with a cookie", &mut answers)?;
    let mut m2 = model(v);
    if r2 != Err(libc::EINPROGRESS) {
        m2.send(call, r2)
            .map_err(|d| fail_with(d.to_string(), answers.join("; ")))?;
    }
    wait_connected(&second)?;
    let child2 = sockets::accept(&listener, sockets::IO_TIMEOUT)?;
    let inherited = zerocopy::get_so_zerocopy(child2.as_fd())?;
    expect(inherited == 1, || {
        format!("the Fast Open child reports SO_ZEROCOPY={inherited}")
    })?;
    // The child sends too (fastopen-server.pkt): its own ids start at 0.
    let _sink_back = Sink::start(second.try_clone()?, false)?;
    zc_send(&child2, &data, false).context("zero-copy send from the Fast Open child")?;
    let child_got = completions(&await_ids(&child2, 1)?);
    check(IdWindow::new(0, 1), &child_got, true).map_err(|viol| {
        fail_with(
            format!("the Fast Open child's first send: {viol}"),
            show(&child_got),
        )
    })?;
    let _sink2 = Sink::start(child2, false)?;
    let got2 = completions(&await_ids(&second, m2.issued())?);
    m2.observe(&got2).and_then(|_| m2.finish()).map_err(|d| {
        fail_with(
            format!("after a Fast Open send with a cookie: {d}"),
            format!("{}; notifications {}", answers.join("; "), show(&got2)),
        )
    })?;
    let in_syn = matches!(r2, Ok(n) if n > 0);
    // The firm part of the contract (packetdrill fastopen-client.pkt), judged in one place.
    super::closed::judge_fastopen(r1, r2, data.len(), &got2)
        .map_err(|m| fail_with(m, answers.join("; ")))?;
    ctx.observe("answers", &answers);
    ctx.observe("data_in_syn", in_syn);
    ctx.observe("syn_notification", show(&got2));
    Ok(Verdict::pass(format!(
        "no cookie: {}; with a cookie: {} ({})",
        answers[0],
        answers[1],
        if in_syn {
            "data in the SYN took id 0"
        } else {
            "no data in the SYN"
        }
    )))
}
