//! The two-completion protocol as a property (SEMANTICS.md R8.2; io_uring_zerocopy_tx.c's
//! per-CQE checks and liburing send-zerocopy.c's `test_inet_send` matrix, generalised).
//!
//! Random sequences of requests over TCP and UDP, IPv4 and IPv6, submitted in random batches
//! and reaped at random points, each sequence on a ring kind drawn among those the kernel
//! offers (default, `SINGLE_ISSUER | DEFER_TASKRUN`, `SQPOLL`: probes `io_uring.defer_taskrun`
//! and `io_uring.sqpoll`; a kind that is absent falls back to the default ring, and the
//! sequences each kind ran are recorded). Each request draws its form (SEND_ZC, SENDMSG_ZC, either from a
//! registered buffer at a random offset inside it, SENDMSG_ZC with several iovecs and a
//! 1-byte first one, vectored SEND_ZC, a plain SEND), its flags (`IOSQE_ASYNC`,
//! `IORING_RECVSEND_POLL_FIRST`, `IOSQE_IO_LINK` to the next request, `MSG_WAITALL` on TCP,
//! a destination address on UDP, REPORT_USAGE) and its bytes from a random buffer. Each
//! sequence also draws whether the senders have `SO_ZEROCOPY` set and whether TCP sends from
//! the accepted socket. Forms the kernel lacks (by probe) fall back to SEND_ZC.
//!
//! Every stream must satisfy the model (a notification iff the first CQE had `F_MORE`,
//! exactly once, never before it), `MSG_WAITALL` must send everything, io_uring must leave
//! the socket's MSG_ZEROCOPY error queue alone, and each receiver must get exactly the bytes
//! the completions reported (content and datagram boundaries, see `model::uring_delivery`).
//! Receivers read until end of stream, so bytes still crossing the link when the last CQE
//! arrives are counted (the byte-count race of earlier versions).

use std::fmt;
use std::os::fd::AsFd;
use std::sync::Arc;

use anyhow::{Context, Result};
use harness::sockets::{self, Proto};
use harness::sys::errqueue;
use harness::sys::uring::{
    Cqe, Dest, DestSlot, Payload, Ring, RingKind, SendOp, SendRequest, Sqe, SqeFlags,
};
use harness::sys::uring::{RECVSEND_POLL_FIRST, SEND_ZC_REPORT_USAGE};
use harness::sys::zerocopy;
use harness::topology::Topology;
use proptest::collection::vec;
use proptest::prelude::*;
use serde::Serialize;

use super::collect;
use super::probes;
use super::support::{self, Conn, COMPLETION_WAIT};
use crate::case::{Area, Case, Ctx};
use crate::model::uring_delivery::{self, Run};
use crate::model::uring_notif::{self, Issued, Stats};
use crate::outcome::{fail_with, skipped, Verdict};
use crate::property;
use crate::send::flow::Path;

/// Size of the registered buffer; fixed-buffer sends are clamped to it.
const FIXED_LEN: usize = 1 << 20;
/// Largest TCP send: big enough that a send without MSG_WAITALL may complete short.
const TCP_MAX: usize = 4 << 20;
/// Largest UDP datagram: below every path MTU, so nothing is fragmented.
const UDP_MAX: usize = 1400;
/// Requests start at a random offset below this in the random buffer.
const OFFSETS: usize = 1 << 16;

pub fn cases() -> Vec<Case> {
    [Path::Loopback, Path::Pair]
        .into_iter()
        .map(|path| {
            let tag = path.tag();
            Case::new(
                format!("uring.protocol.{tag}"),
                Area::Uring,
                "random requests of every form and flag on every ring kind the kernel offers \
                 (default, DEFER_TASKRUN, SQPOLL): every F_MORE is followed by exactly one \
                 F_NOTIF (never carrying F_MORE, never before its request), MSG_WAITALL sends \
                 everything, and the receivers get exactly the bytes completed",
                support::requires(Some(path), &[]),
                move |ctx| run(ctx, path),
            )
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum How {
    SendZc,
    SendMsgZc,
    Fixed,
    FixedMsg,
    MultiIov,
    VectorZc,
    Plain,
}

/// Per-request flags.
#[derive(Debug, Clone, Copy, Default)]
struct Flags {
    async_: bool,
    poll_first: bool,
    link: bool,
    waitall: bool,
    dest: bool,
    usage: bool,
}

/// One request of a random sequence.
#[derive(Clone, Copy)]
struct Ask {
    conn: usize,
    how: How,
    len: usize,
    offset: usize,
    flags: Flags,
}

/// One step of a random sequence.
#[derive(Clone)]
enum Step {
    Send(Ask),
    Submit,
    Reap,
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Send(Ask {
                conn,
                how,
                len,
                offset,
                flags,
            }) => {
                let how = serde_json::to_value(how).unwrap_or_default();
                write!(
                    f,
                    "{} {} {len}@{offset}",
                    Conn::ALL[*conn],
                    how.as_str().unwrap_or("?")
                )?;
                for (on, name) in [
                    (flags.async_, "async"),
                    (flags.poll_first, "poll_first"),
                    (flags.link, "link"),
                    (flags.waitall, "waitall"),
                    (flags.dest, "dest"),
                    (flags.usage, "usage"),
                ] {
                    if on {
                        write!(f, " {name}")?;
                    }
                }
                Ok(())
            }
            Step::Submit => write!(f, "submit"),
            Step::Reap => write!(f, "reap"),
        }
    }
}

/// A sequence and the per-sequence choices.
#[derive(Clone)]
struct Seq {
    kind: RingKind,
    so_zerocopy: bool,
    accepted_sends: bool,
    steps: Vec<Step>,
}

impl fmt::Debug for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ring; ", self.kind.tag())?;
        if self.so_zerocopy {
            write!(f, "SO_ZEROCOPY set; ")?;
        }
        if self.accepted_sends {
            write!(f, "TCP sends from the accepted socket; ")?;
        }
        write!(f, "{:?}", self.steps)
    }
}

fn flags() -> impl Strategy<Value = Flags> {
    // Each flag on about one request in five.
    let bit = || prop::bool::weighted(0.2);
    (bit(), bit(), bit(), bit(), bit(), any::<bool>()).prop_map(
        |(async_, poll_first, link, waitall, dest, usage)| Flags {
            async_,
            poll_first,
            link,
            waitall,
            dest,
            usage,
        },
    )
}

fn step() -> impl Strategy<Value = Step> {
    let how = prop_oneof![
        3 => Just(How::SendZc),
        2 => Just(How::SendMsgZc),
        2 => Just(How::Fixed),
        1 => Just(How::FixedMsg),
        2 => Just(How::MultiIov),
        1 => Just(How::VectorZc),
        2 => Just(How::Plain),
    ];
    let tcp_len = prop_oneof![
        2 => Just(0usize),
        8 => 1usize..=4096,
        6 => 4097usize..=65536,
        2 => 65537usize..=262_144,
        1 => (1usize << 20)..=TCP_MAX,
    ];
    let udp_len = prop_oneof![1 => Just(0usize), 6 => 1usize..=UDP_MAX];
    let send = (0usize..4, how, tcp_len, udp_len, 0..OFFSETS, flags()).prop_map(
        |(conn, how, tcp, udp, offset, flags)| {
            let mut len = match Conn::ALL[conn].proto {
                Proto::Tcp => tcp,
                Proto::Udp => udp,
            };
            if matches!(how, How::Fixed | How::FixedMsg) {
                len = len.min(FIXED_LEN / 2);
            }
            Step::Send(Ask {
                conn,
                how,
                len,
                offset,
                flags,
            })
        },
    );
    prop_oneof![8 => send, 2 => Just(Step::Submit), 1 => Just(Step::Reap)]
}

fn seq() -> impl Strategy<Value = Seq> {
    let kind = prop_oneof![
        Just(RingKind::Default),
        Just(RingKind::DeferTaskrun),
        Just(RingKind::Sqpoll),
    ];
    (
        kind,
        prop::bool::weighted(0.3),
        prop::bool::weighted(0.3),
        vec(step(), 1..24),
    )
        .prop_map(|(kind, so_zerocopy, accepted_sends, steps)| Seq {
            kind,
            so_zerocopy,
            accepted_sends,
            steps,
        })
}

/// What the kernel offers beyond SEND_ZC; requests it lacks fall back to simpler forms.
#[derive(Debug, Clone, Copy, Serialize)]
struct Offers {
    sendmsg_zc: bool,
    report_usage: bool,
    sendmsg_zc_fixed: bool,
    send_vectorized: bool,
}

impl Offers {
    /// The operation and payload shape used for `how` on this kernel.
    fn resolve(&self, how: How) -> How {
        match how {
            How::SendMsgZc | How::MultiIov if !self.sendmsg_zc => How::SendZc,
            How::FixedMsg if !self.sendmsg_zc_fixed => How::Fixed,
            How::VectorZc if !self.send_vectorized => self.resolve(How::MultiIov),
            h => h,
        }
    }
}

/// Counts over all sequences, recorded as observed.
#[derive(Debug, Default, Serialize)]
struct Tally {
    sequences: u32,
    requests: u32,
    notifications: u32,
    out_of_order: u32,
    zc_without_more: u32,
    copied: u32,
    zero_copied: u32,
    short_tcp_completions: u32,
    bytes: u64,
    forms: std::collections::BTreeMap<String, u32>,
    ring_kinds: std::collections::BTreeMap<&'static str, u32>,
}

/// A deterministic random buffer: payloads drawn from it at random offsets have distinct
/// contents, so a receiver's bytes say which request they came from.
fn random_bytes(len: usize) -> Arc<[u8]> {
    let mut x: u64 = 0x5eed_2a11_c0ff_ee01;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

fn run(ctx: &mut Ctx, path: Path) -> Result<Verdict> {
    let topo = path.topology()?;
    let offers = Offers {
        sendmsg_zc: support::has_sendmsg_zc(),
        report_usage: support::offered(probes::REPORT_USAGE),
        sendmsg_zc_fixed: support::offered(probes::SENDMSG_ZC_FIXED),
        send_vectorized: support::offered(probes::SEND_VECTORIZED),
    };
    let data = random_bytes(TCP_MAX + OFFSETS);
    let tally = std::cell::RefCell::new(Tally::default());
    let kinds: Vec<RingKind> = [
        (RingKind::DeferTaskrun, probes::DEFER_TASKRUN),
        (RingKind::Sqpoll, probes::SQPOLL),
    ]
    .into_iter()
    .filter(|(_, probe)| support::offered(*probe))
    .map(|(k, _)| k)
    .collect();
    let spare: std::cell::RefCell<std::collections::HashMap<RingKind, Ring>> = Default::default();
    let next_user_data = std::cell::Cell::new(1u64);
    property::check(ctx, seq(), |s| {
        let kind = if kinds.contains(&s.kind) {
            s.kind
        } else {
            RingKind::Default
        };
        // One ring per kind serves every sequence that passes (its setup, an SQPOLL thread
        // and a 1 MiB registration, is the costly part); a failed sequence may leave
        // requests in flight, so its ring is dropped and the next one gets a fresh ring.
        let mut ring = match spare.borrow_mut().remove(&kind) {
            Some(r) => r,
            None => {
                let mut r = support::ring_of(kind, 64)?;
                r.register_buffers(&[FIXED_LEN])
                    .context("registering a fixed buffer")?;
                r.fixed_mut(0).copy_from_slice(&data[..FIXED_LEN]);
                r
            }
        };
        let base = next_user_data.get();
        next_user_data.set(base + 1000);
        let out = run_sequence(topo.as_ref(), &mut ring, base, offers, &data, s)?;
        spare.borrow_mut().insert(kind, ring);
        let mut t = tally.borrow_mut();
        *t.ring_kinds.entry(kind.tag()).or_default() += 1;
        t.sequences += 1;
        t.requests += out.stats.requests;
        t.notifications += out.stats.notifications;
        t.out_of_order += out.stats.out_of_order;
        t.zc_without_more += out.stats.zc_without_more;
        t.copied += out.stats.copied;
        t.zero_copied += out.stats.zero_copied;
        t.short_tcp_completions += out.short;
        t.bytes += out.bytes;
        for f in out.forms {
            *t.forms.entry(f).or_default() += 1;
        }
        Ok(())
    })?;
    let t = tally.into_inner();
    ctx.observe_timing("protocol", &t);
    ctx.observe("offers", offers);
    Ok(Verdict::pass(format!(
        "{} random sequences on rings {:?}: {} requests, {} notifications ({} out of order), \
         {} short TCP completions, {} bytes delivered byte-exact",
        t.sequences,
        t.ring_kinds,
        t.requests,
        t.notifications,
        t.out_of_order,
        t.short_tcp_completions,
        t.bytes
    )))
}

/// What one sequence gives the tally.
struct SeqOut {
    stats: Stats,
    short: u32,
    bytes: u64,
    forms: Vec<String>,
}

/// One request as the sequence issued it.
struct Sent {
    conn: usize,
    req: SendRequest,
    waitall: bool,
    /// The bytes the payload holds, in order.
    bytes: Vec<u8>,
}

/// The request for one step, and the bytes it carries.
fn build(
    offers: Offers,
    data: &Arc<[u8]>,
    ask: &Ask,
    user_data: u64,
    receiver: std::net::SocketAddr,
) -> (How, SendRequest, Vec<u8>) {
    let Ask {
        conn,
        how,
        len,
        offset,
        flags,
    } = *ask;
    let mut how = offers.resolve(how);
    if how == How::FixedMsg && len == 0 {
        // A registered-buffer iovec of zero bytes is refused at import (see
        // `fixed_msg_segments`): a zero-length fixed SENDMSG_ZC is not a delivery question.
        how = How::Fixed;
    }
    // Several iovecs, the first of one byte; the rest split in up to three pieces taken
    // from scattered places of the buffer.
    let segments = |len: usize| -> Vec<(usize, usize)> {
        if len == 0 {
            return vec![(offset, 0)];
        }
        let mut segs = vec![(offset, 1)];
        let rest = len - 1;
        let pieces = 1 + offset % 3;
        let mut done = 0;
        for i in 0..pieces {
            let n = if i + 1 == pieces {
                rest - done
            } else {
                rest / pieces
            };
            segs.push(((offset * (i + 3) + 4099 * (i + 1)) % OFFSETS, n));
            done += n;
        }
        segs
    };
    let fixed_offset = offset % (FIXED_LEN.saturating_sub(len) + 1);
    let (op, payload) = match how {
        How::SendZc | How::SendMsgZc | How::Plain => (
            match how {
                How::SendZc => SendOp::SendZc,
                How::SendMsgZc => SendOp::SendMsgZc,
                _ => SendOp::Send,
            },
            Payload::Owned {
                data: data.clone(),
                start: offset,
                len,
            },
        ),
        How::Fixed => (
            SendOp::SendZc,
            Payload::Fixed {
                index: 0,
                offset: fixed_offset,
                len,
            },
        ),
        How::FixedMsg => (
            SendOp::SendMsgZc,
            Payload::FixedVectored {
                index: 0,
                segments: fixed_msg_segments(segments(len)),
            },
        ),
        How::MultiIov | How::VectorZc => (
            if how == How::MultiIov {
                SendOp::SendMsgZc
            } else {
                SendOp::SendZc
            },
            Payload::Vectored {
                data: data.clone(),
                segments: segments(len),
            },
        ),
    };
    // The registered buffer holds the first FIXED_LEN bytes of `data`.
    let bytes: Vec<u8> = match &payload {
        Payload::Owned { start, len, .. } => data[*start..start + len].to_vec(),
        Payload::Fixed { offset, len, .. } => data[*offset..offset + len].to_vec(),
        Payload::Vectored { segments, .. } | Payload::FixedVectored { segments, .. } => {
            let mut v = Vec::with_capacity(len);
            for &(o, n) in segments {
                v.extend_from_slice(&data[o..o + n]);
            }
            v
        }
        Payload::Raw { .. } | Payload::FixedAt { .. } => {
            unreachable!("the property never sends raw memory")
        }
    };
    let mut req = SendRequest::new(op, payload, user_data);
    let proto = Conn::ALL[conn].proto;
    if flags.async_ {
        req.sqe_flags |= SqeFlags::ASYNC;
    }
    if flags.link {
        req.sqe_flags |= SqeFlags::IO_LINK;
    }
    if flags.poll_first {
        req.ioprio |= RECVSEND_POLL_FIRST;
    }
    if flags.waitall && proto == Proto::Tcp {
        req.msg_flags |= libc::MSG_WAITALL;
    }
    if op.is_zc() && flags.usage && offers.report_usage {
        req.ioprio |= SEND_ZC_REPORT_USAGE;
    }
    // A destination on a connected UDP socket (the receiver itself): SEND_ZC's addr2 or
    // SENDMSG_ZC's msg_name; plain SEND takes one only from 6.1 on, so it never gets one.
    if flags.dest && proto == Proto::Udp && op.is_zc() {
        req.dest = Dest::Slot(DestSlot::new(receiver));
    }
    (how, req, bytes)
}

/// The iovecs of a `fixed_msg` request: `segments` moved inside the registration, without
/// the empty pieces that short lengths give (`len - 1` split in up to three).
///
/// The kernel refuses an empty iovec of a registered buffer whatever the others hold:
/// `io_import_reg_vec` -> `io_vec_fill_bvec` (io_uring/rsrc.c, 6.15 to 7.3) returns `-EFAULT`
/// for `iov_len == 0`, at issue, after the notification was allocated (so the CQE carries
/// F_MORE). No man page promises empty registered iovecs work (liburing's vec-regbuf.c
/// accepts any result <= 0 for them), so such a request is not a healthy send; what the
/// kernel does with one among data is recorded by `uring.error.fixed_range`
/// (`empty_among_data`). Sending them here made `1@0` fail with EFAULT.
fn fixed_msg_segments(segments: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    segments
        .into_iter()
        .filter(|&(_, n)| n > 0)
        .map(|(o, n)| (o % (FIXED_LEN - n + 1), n))
        .collect()
}

/// Runs one sequence on fresh connections, with user_data from `base` on, and checks it.
/// The ring has room for every request of a sequence (64 entries): a flush forced by a full
/// queue would cut a chain.
fn run_sequence(
    topo: &dyn Topology,
    ring: &mut Ring,
    base: u64,
    offers: Offers,
    data: &Arc<[u8]>,
    seq: &Seq,
) -> Result<SeqOut> {
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    let mut tcp_rx: Vec<Option<collect::Stream>> = Vec::new();
    let mut udp_rx: Vec<Option<collect::Datagrams>> = Vec::new();
    for conn in Conn::ALL {
        let (mut s, mut r) = support::connect(topo, conn)?;
        if conn.proto == Proto::Tcp && seq.accepted_sends {
            std::mem::swap(&mut s, &mut r);
        }
        if seq.so_zerocopy {
            zerocopy::set_so_zerocopy(s.as_fd(), true).context("setsockopt(SO_ZEROCOPY, 1)")?;
        }
        receivers.push(sockets::local_addr(&r)?);
        senders.push(s);
        match conn.proto {
            Proto::Tcp => {
                tcp_rx.push(Some(collect::Stream::start(r)?));
                udp_rx.push(None);
            }
            Proto::Udp => {
                tcp_rx.push(None);
                udp_rx.push(Some(collect::Datagrams::start(r)?));
            }
        }
    }
    let kind = ring.kind();

    let mut issued: Vec<Issued> = Vec::new();
    let mut sent: Vec<Sent> = Vec::new();
    let mut forms = Vec::new();
    let mut cqes: Vec<Cqe> = Vec::new();
    let mut linked_behind = false;
    let mut queued = 0usize;
    for (i, s) in seq.steps.iter().enumerate() {
        match s {
            Step::Send(ask) => {
                let ud = base + sent.len() as u64;
                // A chain ends inside one submission: a link flag on the last request before
                // a submit, a reap or the end would leave the chain open, which the uAPI does
                // not define (uring.flags.poll_first records what it does).
                let mut ask = *ask;
                ask.flags.link &= matches!(seq.steps.get(i + 1), Some(Step::Send(_)));
                // A POLL_FIRST request that io-wq runs without IOSQE_ASYNC (a chain member
                // behind a request that went async) completes with EAGAIN on 6.18, a case the
                // man pages leave open (uring.flags.poll_first records it); the property
                // keeps POLL_FIRST to requests that are not behind a link.
                if linked_behind {
                    ask.flags.poll_first = false;
                }
                linked_behind = ask.flags.link;
                let (used, req, bytes) = build(offers, data, &ask, ud, receivers[ask.conn]);
                forms.push(
                    serde_json::to_value(used)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default(),
                );
                issued.push(support::issued(&req));
                let link = ask.flags.link;
                sent.push(Sent {
                    conn: ask.conn,
                    waitall: req.msg_flags & libc::MSG_WAITALL != 0,
                    req,
                    bytes,
                });
                // A chain is queued whole once its last member is known.
                if !link {
                    let batch: Vec<_> = sent[queued..]
                        .iter()
                        .map(|s| Sqe::Send(senders[s.conn].as_fd(), &s.req))
                        .collect();
                    ring.push_all(&batch).context("queueing sends")?;
                    queued = sent.len();
                }
            }
            Step::Submit => {
                ring.submit().context("io_uring_enter (submit)")?;
            }
            Step::Reap => cqes.extend(ring.reap()),
        }
    }
    let before = cqes.len();
    let rest = ring
        .wait(COMPLETION_WAIT, |got| {
            let all: Vec<Cqe> = cqes.iter().chain(got).copied().collect();
            uring_notif::owed(&issued, &all) == 0
        })
        .context("waiting for completions")?;
    cqes.extend(rest);
    let evidence = |cqes: &[Cqe]| {
        format!(
            "sequence ({} ring): {seq:?}\nrequests: {}\nCQEs ({} reaped during the sequence): {}",
            kind.tag(),
            support::describe(sent.iter().map(|s| &s.req)),
            before,
            uring_notif::show(cqes)
        )
    };
    let accepted = uring_notif::check(&issued, &cqes, true)
        .map_err(|v| fail_with(v.to_string(), evidence(&cqes)))?;

    // Per-request results, and what each receiver should have got.
    let mut runs: Vec<Vec<Run<'_>>> = vec![Vec::new(); 4];
    let mut short = 0u32;
    for s in &sent {
        let ud = s.req.user_data;
        let res = accepted.outcomes[&ud]
            .res
            .expect("a complete stream has every first CQE");
        let len = s.req.payload.len();
        let proto = Conn::ALL[s.conn].proto;
        if res == -libc::ENOMEM {
            // Pinned pages are charged to RLIMIT_MEMLOCK without CAP_IPC_LOCK (R8.3): the
            // environment, not the protocol (uring.error.memlock checks that path).
            return Err(skipped(format!(
                "request #{ud} hit RLIMIT_MEMLOCK (ENOMEM): raise the limit or run with \
                 CAP_IPC_LOCK"
            )));
        }
        if res < 0 {
            return Err(fail_with(
                format!(
                    "request #{ud} on a healthy {} connection failed with {}",
                    Conn::ALL[s.conn],
                    support::show_res(res)
                ),
                evidence(&cqes),
            ));
        }
        let res = res as usize;
        let ok = match proto {
            Proto::Udp => res == len,
            Proto::Tcp if s.waitall => res == len,
            Proto::Tcp => res <= len,
        };
        if !ok {
            return Err(fail_with(
                format!(
                    "request #{ud} of {len} bytes on {}{} completed with res {res}",
                    Conn::ALL[s.conn],
                    if s.waitall { " with MSG_WAITALL" } else { "" }
                ),
                evidence(&cqes),
            ));
        }
        if proto == Proto::Tcp && res < len {
            short += 1;
        }
        // Any TCP request may arrive in pieces: one that io-wq runs in blocking mode (behind
        // a request that went async) sleeps for socket memory with the socket unlocked, and
        // one with MSG_WAITALL retries; others send in between.
        runs[s.conn].push(Run {
            user_data: ud,
            bytes: &s.bytes[..res],
            may_split: proto == Proto::Tcp,
        });
    }
    for (i, s) in senders.iter().enumerate() {
        let queued = errqueue::drain(s.as_fd()).context("reading the error queue")?;
        if !queued.is_empty() {
            return Err(fail_with(
                format!(
                    "io_uring left {} MSG_ZEROCOPY notifications on the {} socket's error queue",
                    queued.len(),
                    Conn::ALL[i]
                ),
                evidence(&cqes),
            ));
        }
    }
    drop(senders);
    let mut bytes = 0u64;
    for (i, conn) in Conn::ALL.iter().enumerate() {
        let want = &runs[i];
        let verdict = match conn.proto {
            Proto::Tcp => {
                let got = tcp_rx[i].take().expect("a stream receiver").finish()?;
                bytes += got.len() as u64;
                uring_delivery::check_stream(want, &got)
            }
            Proto::Udp => {
                let got = udp_rx[i]
                    .take()
                    .expect("a datagram receiver")
                    .finish(want.len())?;
                bytes += got.iter().map(|d| d.len() as u64).sum::<u64>();
                uring_delivery::check_datagrams(want, &got)
            }
        };
        verdict.map_err(|m| fail_with(format!("{conn}: {m}"), evidence(&cqes)))?;
    }
    Ok(SeqOut {
        stats: accepted.stats,
        short,
        bytes,
        forms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offers() -> Offers {
        Offers {
            sendmsg_zc: true,
            report_usage: true,
            sendmsg_zc_fixed: true,
            send_vectorized: true,
        }
    }

    /// The counterexample of the EFAULT "failure" (`udp4 fixed_msg 1@0`) and every short
    /// length and offset class: no empty registered iovec, and the bytes add up.
    #[test]
    fn fixed_msg_never_sends_an_empty_registered_iovec() {
        let data = random_bytes(TCP_MAX + OFFSETS);
        let to: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
        for len in 1..=8 {
            for offset in [0, 1, 2, 3, 4099, OFFSETS - 1] {
                let ask = Ask {
                    conn: 2,
                    how: How::FixedMsg,
                    len,
                    offset,
                    flags: Flags::default(),
                };
                let (how, req, bytes) = build(offers(), &data, &ask, 1, to);
                assert_eq!(how, How::FixedMsg);
                let Payload::FixedVectored { segments, .. } = &req.payload else {
                    panic!("fixed_msg gives a FixedVectored payload");
                };
                assert!(
                    segments.iter().all(|&(o, n)| n > 0 && o + n <= FIXED_LEN),
                    "len {len} offset {offset}: {segments:?}"
                );
                assert_eq!(req.payload.len(), len);
                assert_eq!(bytes.len(), len);
                assert_eq!(segments[0].1, 1, "the first iovec is of one byte");
            }
        }
    }

    /// The filter is what keeps them out: the raw split of a 1-byte request has an empty piece.
    #[test]
    fn the_raw_split_of_a_short_request_has_empty_pieces() {
        let raw = vec![(0, 1), (4099, 0)];
        assert_eq!(fixed_msg_segments(raw), vec![(0, 1)]);
    }
}
