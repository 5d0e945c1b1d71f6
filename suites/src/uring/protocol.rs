//! The two-completion protocol as a property (SEMANTICS.md R8.2; io_uring_zerocopy_tx.c's
//! per-CQE checks, generalised): random sequences of SEND_ZC, SENDMSG_ZC, SEND_ZC from a
//! registered buffer and plain SENDs, over TCP and UDP, IPv4 and IPv6, with and without
//! REPORT_USAGE, submitted in random batches and reaped at random points. Every stream must
//! satisfy the model, and the bytes the completions report must be the bytes the receivers
//! got (TCP may complete short without MSG_WAITALL: the sum of `res` is what counts).

use std::fmt;
use std::io::ErrorKind;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use harness::sockets::{Proto, Sink};
use harness::sys::uring::{Cqe, SendOp, SendRequest};
use harness::topology::Topology;
use proptest::collection::vec;
use proptest::prelude::*;
use serde::Serialize;
use socket2::Socket;

use super::probes;
use super::support::{self, Conn, COMPLETION_WAIT};
use crate::case::{Area, Case, Ctx};
use crate::model::uring_notif::{self, Issued, Stats};
use crate::outcome::{fail_with, skipped, Verdict};
use crate::probes::Answer;
use crate::property;
use crate::send::flow::Path;

/// Size of the registered buffer; fixed-buffer sends are clamped to it.
const FIXED_LEN: usize = 1 << 20;
/// Largest TCP send: big enough that a send without MSG_WAITALL may complete short.
const TCP_MAX: usize = 4 << 20;
/// Largest UDP datagram: below every path MTU, so nothing is fragmented.
const UDP_MAX: usize = 1400;

pub fn cases() -> Vec<Case> {
    [Path::Loopback, Path::Pair]
        .into_iter()
        .map(|path| {
            let tag = path.tag();
            Case::new(
                format!("uring.protocol.{tag}"),
                Area::Uring,
                "random zero-copy and plain sends: every F_MORE is followed by exactly one \
                 F_NOTIF (never carrying F_MORE, never before its request), and the bytes \
                 completed are the bytes received",
                support::requires(Some(path), &[]),
                move |ctx| run(ctx, path),
            )
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    SendZc,
    SendMsgZc,
    Fixed,
    Plain,
}

/// One step of a random sequence.
#[derive(Clone)]
enum Step {
    Send {
        conn: usize,
        how: How,
        len: usize,
        usage: bool,
    },
    Submit,
    Reap,
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Send {
                conn,
                how,
                len,
                usage,
            } => {
                let how = match how {
                    How::SendZc => "send_zc",
                    How::SendMsgZc => "sendmsg_zc",
                    How::Fixed => "fixed",
                    How::Plain => "send",
                };
                let u = if *usage { " usage" } else { "" };
                write!(f, "{} {how} {len}{u}", Conn::ALL[*conn])
            }
            Step::Submit => write!(f, "submit"),
            Step::Reap => write!(f, "reap"),
        }
    }
}

fn step() -> impl Strategy<Value = Step> {
    let how = prop_oneof![
        3 => Just(How::SendZc),
        2 => Just(How::SendMsgZc),
        2 => Just(How::Fixed),
        2 => Just(How::Plain),
    ];
    let tcp_len = prop_oneof![
        1 => Just(0usize),
        4 => 1usize..=4096,
        3 => 4097usize..=65536,
        1 => 65537usize..=262_144,
        1 => (1usize << 20)..=TCP_MAX,
    ];
    let udp_len = prop_oneof![1 => Just(0usize), 6 => 1usize..=UDP_MAX];
    let send = (0usize..4, how, tcp_len, udp_len, any::<bool>()).prop_map(
        |(conn, how, tcp, udp, usage)| {
            let mut len = match Conn::ALL[conn].proto {
                Proto::Tcp => tcp,
                Proto::Udp => udp,
            };
            if how == How::Fixed {
                len = len.min(FIXED_LEN);
            }
            Step::Send {
                conn,
                how,
                len,
                usage,
            }
        },
    );
    prop_oneof![8 => send, 2 => Just(Step::Submit), 1 => Just(Step::Reap)]
}

/// What the kernel offers beyond SEND_ZC; requests it lacks are downgraded to SEND_ZC
/// without the flag.
#[derive(Debug, Clone, Copy)]
struct Offers {
    sendmsg_zc: bool,
    report_usage: bool,
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
}

fn run(ctx: &mut Ctx, path: Path) -> Result<Verdict> {
    let topo = path.topology()?;
    let offers = Offers {
        sendmsg_zc: support::has_sendmsg_zc(),
        report_usage: matches!(probes::REPORT_USAGE.answer(), Answer::Present(_)),
    };
    let data = support::pattern(TCP_MAX);
    let tally = std::cell::RefCell::new(Tally::default());
    property::check(ctx, vec(step(), 1..40), |steps| {
        let (stats, short, bytes) = run_sequence(topo.as_ref(), offers, &data, steps)?;
        let mut t = tally.borrow_mut();
        t.sequences += 1;
        t.requests += stats.requests;
        t.notifications += stats.notifications;
        t.out_of_order += stats.out_of_order;
        t.zc_without_more += stats.zc_without_more;
        t.copied += stats.copied;
        t.zero_copied += stats.zero_copied;
        t.short_tcp_completions += short;
        t.bytes += bytes;
        Ok(())
    })?;
    let t = tally.into_inner();
    ctx.observe_timing("protocol", &t);
    ctx.observe("sendmsg_zc_used", offers.sendmsg_zc);
    ctx.observe("report_usage_used", offers.report_usage);
    Ok(Verdict::pass(format!(
        "{} random sequences: {} requests, {} notifications ({} out of order), {} short TCP \
         completions, {} bytes delivered",
        t.sequences, t.requests, t.notifications, t.out_of_order, t.short_tcp_completions, t.bytes
    )))
}

/// Runs one sequence on fresh connections and a fresh ring, and checks it. Returns the
/// model's counts, the short TCP completions and the bytes delivered.
fn run_sequence(
    topo: &dyn Topology,
    offers: Offers,
    data: &Arc<[u8]>,
    steps: &[Step],
) -> Result<(Stats, u32, u64)> {
    let mut senders = Vec::new();
    let mut tcp_sinks: Vec<Option<Sink>> = Vec::new();
    let mut udp_receivers: Vec<Option<Socket>> = Vec::new();
    for conn in Conn::ALL {
        let (s, r) = support::connect(topo, conn)?;
        senders.push(s);
        match conn.proto {
            Proto::Tcp => {
                tcp_sinks.push(Some(Sink::start(r, true)?));
                udp_receivers.push(None);
            }
            Proto::Udp => {
                tcp_sinks.push(None);
                udp_receivers.push(Some(r));
            }
        }
    }
    let mut ring = support::ring()?;
    ring.register_buffers(&[FIXED_LEN])
        .context("registering a fixed buffer")?;
    ring.fixed_mut(0).copy_from_slice(&data[..FIXED_LEN]);

    let mut issued: Vec<Issued> = Vec::new();
    let mut reqs: Vec<(usize, SendRequest)> = Vec::new();
    let mut cqes: Vec<Cqe> = Vec::new();
    for s in steps {
        match s {
            Step::Send {
                conn,
                how,
                len,
                usage,
            } => {
                let (op, fixed) = match how {
                    How::SendZc => (SendOp::SendZc, false),
                    How::SendMsgZc if offers.sendmsg_zc => (SendOp::SendMsgZc, false),
                    How::SendMsgZc => (SendOp::SendZc, false),
                    How::Fixed => (SendOp::SendZc, true),
                    How::Plain => (SendOp::Send, false),
                };
                let usage = *usage && offers.report_usage && op.is_zc();
                let req = support::request(op, data, *len, fixed, usage, reqs.len() as u64 + 1);
                issued.push(support::issued(&req));
                ring.push(std::os::fd::AsFd::as_fd(&senders[*conn]), &req)
                    .context("queueing a send")?;
                reqs.push((*conn, req));
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
            "sequence: {steps:?}\nrequests: {}\nCQEs ({} reaped during the sequence): {}",
            support::describe(reqs.iter().map(|(_, r)| r)),
            before,
            uring_notif::show(cqes)
        )
    };
    let accepted = uring_notif::check(&issued, &cqes, true)
        .map_err(|v| fail_with(v.to_string(), evidence(&cqes)))?;

    // Per-request results, and the bytes each connection should have delivered.
    let mut expected = [0u64; 4];
    let mut short = 0u32;
    for (conn, req) in &reqs {
        let res = accepted.outcomes[&req.user_data]
            .res
            .expect("a complete stream has every first CQE");
        let len = req.payload.len();
        let proto = Conn::ALL[*conn].proto;
        if res == -libc::ENOMEM {
            // Pinned pages are charged to RLIMIT_MEMLOCK without CAP_IPC_LOCK (R8.3): the
            // environment, not the protocol.
            return Err(skipped(format!(
                "request #{} hit RLIMIT_MEMLOCK (ENOMEM): raise the limit or run with \
                 CAP_IPC_LOCK",
                req.user_data
            )));
        }
        if res < 0 {
            return Err(fail_with(
                format!(
                    "request #{} on a healthy {} connection failed with {}",
                    req.user_data,
                    Conn::ALL[*conn],
                    support::show_res(res)
                ),
                evidence(&cqes),
            ));
        }
        let res = res as usize;
        let ok = match proto {
            Proto::Udp => res == len,
            Proto::Tcp => res <= len,
        };
        if !ok {
            return Err(fail_with(
                format!(
                    "request #{} of {len} bytes on {} completed with res {res}",
                    req.user_data,
                    Conn::ALL[*conn]
                ),
                evidence(&cqes),
            ));
        }
        if proto == Proto::Tcp && res < len {
            short += 1;
        }
        expected[*conn] += res as u64;
    }
    drop(ring);
    drop(senders);
    let mut got = [0u64; 4];
    for (i, sink) in tcp_sinks.into_iter().enumerate() {
        if let Some(sink) = sink {
            got[i] = sink.finish()?.len() as u64;
        }
    }
    for (i, r) in udp_receivers.into_iter().enumerate() {
        if let Some(r) = r {
            got[i] = drain_udp(&r, expected[i])?;
        }
    }
    if got != expected {
        return Err(fail_with(
            format!("bytes completed per connection {expected:?} but received {got:?} (tcp4, tcp6, udp4, udp6)"),
            evidence(&cqes),
        ));
    }
    Ok((accepted.stats, short, expected.iter().sum()))
}

/// Reads datagrams until `want` bytes came, or nothing more came for 200 ms.
fn drain_udp(r: &Socket, want: u64) -> Result<u64> {
    r.set_nonblocking(true)?;
    let mut buf = vec![0u8; 65536];
    let mut got = 0u64;
    let mut last = Instant::now();
    loop {
        match std::io::Read::read(&mut &*r, &mut buf) {
            Ok(n) => {
                got += n as u64;
                last = Instant::now();
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if got >= want || last.elapsed() > Duration::from_millis(200) {
                    return Ok(got);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e).context("reading the UDP receiver"),
        }
    }
}
