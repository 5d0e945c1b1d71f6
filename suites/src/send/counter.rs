//! The per-socket id counter (SEMANTICS.md R2.3–R2.5, R5.4, R6.7).
//!
//! * `send.counter.*`: ids start at 0 per socket, one per successful call; none for a send
//!   that fails (EFAULT, EMSGSIZE) or, on TCP, for an empty send or a send on an unconnected
//!   socket (EPIPE; EINVAL before ~5.0, packetdrill `closed.pkt`); a send of 64 one-byte
//!   iovecs is one call and one id (packetdrill `maxfrags.pkt`). A zero-length UDP send takes
//!   an id on the kernels seen so far, against the documentation (R2.4): recorded.
//! * `send.counter.sndbuf.*`: on a TCP socket whose buffers are full, a non-blocking send
//!   that queues part of its data returns a short count and takes one id; one that queues
//!   nothing fails with EAGAIN and takes none (R2.5).
//!
//! u32 wrap-around cannot be reached in a test (2^32 sends take hours, OBSERVED D); the
//! model's wrap arithmetic is unit-tested in `model::completions` and `model::coalescing`.

use std::io::IoSlice;
use std::os::fd::AsFd;
use std::time::Duration;

use anyhow::{Context, Result};
use harness::sockets::{self, Family, Proto, Sink};
use harness::sys::errqueue;
use harness::sys::zerocopy::{self, MSG_ZEROCOPY};
use socket2::Socket;

use super::flow::{
    await_ids, completions, covered, errno_result, show, show_each, zc_send, Net, Variant,
};
use crate::case::{Area, Case, Ctx};
use crate::model::coalescing::{Behaviour, CopyRule, IdModel, SendCall};
use crate::model::completions::{check, IdWindow};
use crate::outcome::{expect, fail, fail_with, Verdict};
use crate::probes::io_errno;

pub fn cases() -> Vec<Case> {
    let mut cases: Vec<Case> = Variant::all()
        .into_iter()
        .map(|v| {
            Case::new(
                format!("send.counter.{}", v.tag()),
                Area::Send,
                "ids start at 0 per socket, one per successful call (TCP: 64 iovecs, one id), \
                 none for failed sends or empty TCP sends; the empty UDP send's id recorded \
                 (packetdrill closed, maxfrags)",
                v.requires(),
                move |ctx| counter(ctx, v),
            )
        })
        .collect();
    for v in Variant::all().into_iter().filter(|v| v.proto == Proto::Tcp) {
        cases.push(Case::new(
            format!("send.counter.sndbuf.{}", v.tag()),
            Area::Send,
            "with the buffers full, a partial non-blocking send takes one id and an EAGAIN \
             send takes none",
            v.requires(),
            move |ctx| sndbuf(ctx, v),
        ));
    }
    cases
}

fn payload(v: Variant) -> Vec<u8> {
    vec![0x5a; if v.proto == Proto::Udp { 1000 } else { 4096 }]
}

/// The largest UDP payload: 65535 minus the IPv4 and UDP headers for IPv4; the IPv6 payload
/// length does not count the IPv6 header.
fn udp_limit(family: Family) -> usize {
    match family {
        Family::V4 => 65_507,
        Family::V6 => 65_527,
    }
}

/// R2.3: a fresh socket starts at 0; failed sends and (TCP) empty sends take no id.
fn counter(ctx: &mut Ctx, v: Variant) -> Result<Verdict> {
    let net = v.build()?;
    let f = net.flow(true)?;
    let _sink = Sink::start(f.receiver.try_clone()?, false)?;
    let fd = f.sender.as_fd();
    let data = payload(v);
    let mut log = Vec::new();
    let mut ids = 0u64;
    let mut send = |what: &str, r: std::io::Result<usize>, takes_id: bool| -> Result<()> {
        log.push(format!(
            "{what}: {}",
            r.as_ref().map(|n| n.to_string()).unwrap_or_else(io_errno)
        ));
        match (r, takes_id) {
            (Ok(_), true) => ids += 1,
            (Ok(n), false) if n > 0 => {
                return Err(fail(format!(
                    "{what} was expected to fail but sent {n} bytes"
                )))
            }
            (Err(e), true) => return Err(anyhow::Error::from(e).context(what.to_string())),
            _ => {}
        }
        Ok(())
    };
    send("zero-copy send", zc_send(&f.sender, &data, false), true)?;
    send(
        "send from an unreadable buffer (EFAULT)",
        zerocopy::send_from_inaccessible(fd, data.len(), MSG_ZEROCOPY),
        false,
    )?;
    match v.proto {
        Proto::Tcp => {
            send("zero-length send", zc_send(&f.sender, &[], false), false)?;
            // maxfrags.pkt: separate one-byte buffers become separate frags; still one call.
            let bytes = [0x33u8; 128];
            let iov: Vec<IoSlice> = bytes.chunks(2).map(|c| IoSlice::new(&c[..1])).collect();
            let r = f
                .sender
                .send_vectored_with_flags(&iov, MSG_ZEROCOPY | libc::MSG_NOSIGNAL);
            if let Ok(n) = &r {
                expect(*n == iov.len(), || {
                    format!("a send of {} one-byte iovecs sent {n} bytes", iov.len())
                })?;
            }
            send("send of 64 one-byte iovecs", r, true)?;
        }
        Proto::Udp => {
            let big = vec![0u8; udp_limit(v.family) + 1];
            send(
                "oversized datagram (EMSGSIZE)",
                zc_send(&f.sender, &big, false),
                false,
            )?;
        }
    }
    send("zero-copy send", zc_send(&f.sender, &data, false), true)?;
    let mut got = completions(&await_ids(&f.sender, ids)?);
    if v.proto == Proto::Udp {
        let (takes, more) = zero_length_udp(&f.sender, ids)?;
        ctx.observe("zero_length_udp_takes_id", takes);
        log.push(format!(
            "zero-length send: 0 ({})",
            if takes { "took an id" } else { "took no id" }
        ));
        ids += 1 + takes as u64;
        got.extend(more);
    }
    check(IdWindow::new(0, ids), &got, true).map_err(|viol| {
        fail_with(
            format!("ids after failed and empty sends: {viol}"),
            format!("calls: {}\ncompletions: {}", log.join("; "), show(&got)),
        )
    })?;
    if v.proto == Proto::Tcp {
        ctx.observe("unconnected_send_errno", unconnected_send(&net)?);
    }
    ctx.observe("calls", log);
    Ok(Verdict::pass(format!(
        "{ids} successful calls took ids 0..{}",
        ids - 1
    )))
}

/// R2.4: sends nothing, then one byte, on a socket whose `next` ids are all complete. The
/// one-byte send's id says whether the empty one took an id. Returns that and the
/// completions read.
fn zero_length_udp(
    sock: &Socket,
    next: u64,
) -> Result<(bool, Vec<harness::sys::errqueue::Completion>)> {
    let empty = zc_send(sock, &[], false).context("zero-length UDP send")?;
    if empty != 0 {
        return Err(crate::outcome::fail(format!(
            "a zero-length send returned {empty}, not 0"
        )));
    }
    zc_send(sock, &[1], false).context("one-byte UDP send")?;
    let (entries, _) = errqueue::collect_until(sock.as_fd(), Duration::from_millis(500), |got| {
        covered(got) >= 2
    })?;
    let got = completions(&entries);
    let top = got.iter().map(|c| c.hi as u64).max();
    let takes = match top {
        Some(t) if t == next + 1 => true,
        Some(t) if t == next => false,
        _ => {
            return Err(fail_with(
                "a zero-length send and a one-byte send were reported with unexpected ids",
                format!("next id {next}; notifications {}", show(&got)),
            ))
        }
    };
    Ok((takes, got))
}

/// packetdrill closed.pkt: a zero-copy send on an unconnected TCP socket fails (EPIPE on
/// modern kernels, EINVAL before ~5.0) and takes no id: after connecting, the first id is 0.
fn unconnected_send(net: &Net) -> Result<String> {
    let s = net.topo.sender();
    let r = net.topo.receiver();
    let listener = sockets::tcp_listener(&r.ns, r.ip(net.variant.family))?;
    let to = sockets::local_addr(&listener)?;
    let sock = sockets::socket_in(&s.ns, net.variant.family, Proto::Tcp)?;
    zerocopy::set_so_zerocopy(sock.as_fd(), true)?;
    let errno = match zc_send(&sock, &[1u8; 100], false) {
        Ok(n) => {
            return Err(fail(format!(
                "a send on an unconnected TCP socket sent {n} bytes"
            )))
        }
        Err(e) => io_errno(&e),
    };
    sock.connect_timeout(&to.into(), sockets::IO_TIMEOUT)?;
    let accepted = sockets::accept(&listener, sockets::IO_TIMEOUT)?;
    let _sink = Sink::start(accepted, false)?;
    zc_send(&sock, &[1u8; 100], false)?;
    let got = completions(&await_ids(&sock, 1)?);
    expect(got.len() == 1 && got[0].lo == 0 && got[0].hi == 0, || {
        format!(
            "after a failed unconnected send ({errno}), the first id was not 0: {}",
            show(&got)
        )
    })?;
    Ok(errno)
}

/// R2.5: a receiver that does not read and small buffers on both sides. Non-blocking
/// 256 KiB sends fill them: the first ones queue part of their data (a short count, one id
/// each), then EAGAIN (no id). Once the receiver reads, exactly the ids of the calls that
/// queued something are reported, and the next send takes the next id.
fn sndbuf(ctx: &mut Ctx, v: Variant) -> Result<Verdict> {
    let net = v.build()?;
    let (s, r) = (net.topo.sender(), net.topo.receiver());
    let listener = sockets::socket_in(&r.ns, v.family, Proto::Tcp)?;
    // Set before listen, so the window the receiver announces is small from the start.
    listener.set_recv_buffer_size(4096)?;
    listener.bind(&std::net::SocketAddr::new(r.ip(v.family), 0).into())?;
    listener.listen(1)?;
    let to = sockets::local_addr(&listener)?;
    let client = sockets::tcp_connect(&s.ns, to, |c| c.set_send_buffer_size(16 * 1024))?;
    let server = sockets::accept(&listener, sockets::IO_TIMEOUT)?;
    zerocopy::set_so_zerocopy(client.as_fd(), true)?;
    client.set_nonblocking(true)?;
    let behaviour = Behaviour::NO_EMPTY_UDP_SENDS;
    let mut model = IdModel::new(Proto::Tcp, behaviour, CopyRule::Unknown);
    let buf = vec![0x77u8; 256 * 1024];
    let (mut full, mut partial, mut eagain) = (0u32, 0u32, 0u32);
    let mut calls = Vec::new();
    for _ in 0..1000 {
        if eagain >= 3 {
            break;
        }
        let r = errno_result(zc_send(&client, &buf, false));
        match r {
            Ok(n) if n == buf.len() => full += 1,
            Ok(_) => partial += 1,
            Err(libc::EAGAIN) => eagain += 1,
            Err(_) => {}
        }
        calls.push(format!("{r:?}"));
        model
            .send(
                SendCall {
                    len: buf.len(),
                    more: false,
                },
                r,
            )
            .map_err(|d| fail_with(d.to_string(), calls.join(" ")))?;
    }
    anyhow::ensure!(
        partial > 0 && eagain > 0,
        "could not fill the buffers: {full} full, {partial} partial, {eagain} EAGAIN sends"
    );
    let _sink = Sink::start(server, false)?;
    client.set_nonblocking(false)?;
    let last =
        zc_send(&client, &buf[..1000], false).context("a send after the reader caught up")?;
    model
        .send(
            SendCall {
                len: 1000,
                more: false,
            },
            Ok(last),
        )
        .map_err(|d| fail_with(d.to_string(), calls.join(" ")))?;
    let got = completions(&await_ids(&client, model.issued())?);
    let evidence = || format!("calls: {}\nnotifications: {}", calls.join(" "), show(&got));
    model
        .observe(&got)
        .and_then(|_| model.finish())
        .map_err(|d| fail_with(d.to_string(), evidence()))?;
    ctx.observe("full_sends", full);
    ctx.observe("partial_sends", partial);
    ctx.observe("eagain_sends", eagain);
    ctx.observe_timing("notifications", show_each(&got));
    Ok(Verdict::pass(format!(
        "{partial} partial sends took one id each, {eagain} EAGAIN sends none"
    )))
}
