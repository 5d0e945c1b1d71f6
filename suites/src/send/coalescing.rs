//! The stateful property of MSG_ZEROCOPY ids and their coalescing (SEMANTICS.md R2.3–R2.8,
//! R3.1–R3.3), over every path of the suite.
//!
//! proptest generates sequences of operations on one fresh socket: sends from 0 bytes to
//! 4 MiB (TCP) or to 64 KiB (UDP, some with MSG_MORE), drains of the error queue at random
//! points, pauses, and (TCP) a `shutdown(SHUT_WR)`. Every step goes through the reference
//! state machine [`IdModel`], which says after each send whether the kernel's answer was
//! allowed and after each drain whether the notifications read so far can still be right;
//! at the end, after the kernel has had time to complete everything, every id must have been
//! reported exactly once. A failing sequence is shrunk to a minimal one.
//!
//! This is msg_zerocopy.c's "gap" and "missing notifications" checks, and packetdrill's
//! `basic`, `batch`, `small` and `closed` scripts (ids 0, 1, ...; `[0,1]` for two unread
//! sends; 1-byte sends; no id after a failed send), generalised to random sequences they
//! cannot express. Coalescing is allowed, never required: the pattern is recorded.
//!
//! The model is not a generator-driven state machine crate (proptest-state-machine): every
//! operation is valid in every state, because the model defines the kernel's answer to a
//! send after a shutdown, to an append to a cork, and so on. Plain sequences then shrink
//! freely, and the reference state lives where the checking is.
//!
//! The selftest cases at the end prove the property can fail: a model that is wrong about
//! the kernel is refuted by the kernel, and a simulated kernel that loses or repeats a
//! notification is caught, unless the gap rule is switched off.

use std::cell::RefCell;
use std::fmt;
use std::os::fd::AsFd;
use std::time::Duration;

use anyhow::{Context, Result};
use harness::sockets::{self, Family, Proto, Sink};
use harness::sys::errqueue::{self, Completion, ErrQueueEntry};
use harness::sys::zerocopy;
use proptest::collection::vec;
use proptest::prelude::*;
use serde::Serialize;
use socket2::Socket;

use super::flow::{
    await_ids, completions, errno_result, pin_to_one_cpu, show, zc_send, Net, Path, StreamReader,
    Variant,
};
use crate::case::{Area, Case, Ctx};
use crate::model::coalescing::{Behaviour, CopyRule, IdModel, Mutation, SendCall, MAX_UDP_PAYLOAD};
use crate::model::completions::{check_format, Coalescing};
use crate::outcome::{fail, fail_with, Stop, Verdict};
use crate::property;

/// The variants the property runs over: every protocol, family and path of the base cases,
/// plus the paths where UDP is not delivered (dead end, forwarded out a dead link) and TCP
/// through a router.
fn variants() -> Vec<Variant> {
    let mut v = Variant::all();
    v.extend([
        Variant::new(Proto::Udp, Family::V4, Path::DeadEnd),
        Variant::new(Proto::Udp, Family::V6, Path::DeadEnd),
        Variant::new(Proto::Tcp, Family::V4, Path::Forward),
        Variant::new(Proto::Udp, Family::V4, Path::ForwardDead),
    ]);
    v
}

pub fn cases() -> Vec<Case> {
    let mut cases: Vec<Case> = variants()
        .into_iter()
        .map(|v| {
            Case::new(
                format!("send.ids.{}", v.tag()),
                Area::Send,
                "stateful property: random sends (0 B to MiB, MSG_MORE on UDP), drains, pauses, \
                 shutdown; every id reported exactly once, ranges well formed and merged only \
                 over adjacent ids (msg_zerocopy.c gap check; packetdrill basic/batch/small)",
                v.requires(),
                move |ctx| run(ctx, v, Tamper::default()),
            )
        })
        .collect();
    cases.extend(selftests());
    cases
}

/// One step of a random sequence.
#[derive(Clone, PartialEq)]
pub enum Op {
    Send { len: usize, more: bool },
    Drain,
    Pause(u64),
    Shutdown,
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Send { len, more: false } => write!(f, "send({len})"),
            Op::Send { len, more: true } => write!(f, "send({len}, MSG_MORE)"),
            Op::Drain => write!(f, "drain"),
            Op::Pause(ms) => write!(f, "pause({ms}ms)"),
            Op::Shutdown => write!(f, "shutdown(SHUT_WR)"),
        }
    }
}

const MIB: usize = 1 << 20;
const TCP_MAX: usize = 4 * MIB;

fn tcp_op() -> impl Strategy<Value = Op> {
    let len = prop_oneof![
        1 => Just(0usize),
        3 => 1usize..=64,
        3 => 65usize..=4096,
        3 => 4097usize..=256 * 1024,
        1 => 256 * 1024 + 1..=TCP_MAX,
    ];
    prop_oneof![
        44 => len.prop_map(|len| Op::Send { len, more: false }),
        12 => Just(Op::Drain),
        4 => (0u64..=3).prop_map(Op::Pause),
        1 => Just(Op::Shutdown),
    ]
}

/// UDP sizes: mostly below the MTU, some fragmented, some empty; a quarter corked.
fn udp_op() -> impl Strategy<Value = Op> {
    let len = prop_oneof![
        1 => Just(0usize),
        6 => 1usize..=1472,
        2 => 1473usize..=MAX_UDP_PAYLOAD,
    ];
    let send = (len, prop::bool::weighted(0.25)).prop_map(|(len, more)| Op::Send { len, more });
    prop_oneof![
        11 => send,
        3 => Just(Op::Drain),
        1 => (0u64..=3).prop_map(Op::Pause),
    ]
}

fn ops(proto: Proto) -> BoxedStrategy<Vec<Op>> {
    match proto {
        Proto::Tcp => vec(tcp_op(), 1..48).boxed(),
        Proto::Udp => vec(udp_op(), 1..48).boxed(),
    }
}

/// A simulated kernel bug, applied to what the real kernel reported before the model sees
/// it. Only the selftests use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The first notification of each sequence never reaches the model.
    LoseFirst,
    /// The first notification of each sequence reaches the model twice.
    RepeatFirst,
}

/// Deliberate wrongness for the proofs: in the model, or in the kernel's answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tamper {
    pub mutation: Option<Mutation>,
    pub fault: Option<Fault>,
}

/// The paths where every send is delivered to a local socket, so every notification says
/// COPIED (R4 item 2); elsewhere the code is only counted.
fn copy_rule(path: Path) -> CopyRule {
    match path {
        Path::Loopback | Path::Pair | Path::Forward => CopyRule::Always,
        _ => CopyRule::Unknown,
    }
}

/// What the report records: the coalescing pattern, summed over every sequence.
#[derive(Debug, Default, Serialize)]
struct Tally {
    sequences: u32,
    drains: u64,
    coalescing: Coalescing,
    /// Sends that failed and took no id, by errno (EPIPE after a shutdown; EAGAIN, ENOBUFS
    /// under memory pressure; EMSGSIZE for a corked datagram that outgrew its limits).
    failed_sends: std::collections::BTreeMap<String, u64>,
    shutdowns: u32,
}

impl Tally {
    fn add(&mut self, s: &Coalescing) {
        let t = &mut self.coalescing;
        t.notifications += s.notifications;
        t.ids += s.ids;
        t.merged += s.merged;
        t.largest = t.largest.max(s.largest);
        t.out_of_order += s.out_of_order;
        t.copied += s.copied;
    }
}

pub fn run(ctx: &mut Ctx, v: Variant, tamper: Tamper) -> Result<Verdict> {
    ctx.observe("cpu", pin_to_one_cpu()?);
    let net = v.build()?;
    let behaviour = observe_behaviour(&net)?;
    if v.proto == Proto::Udp {
        ctx.observe(
            "zero_length_udp_takes_id",
            behaviour.zero_length_udp_takes_id,
        );
    }
    if v.path == Path::Loopback {
        ctx.observe(
            "unread_8_sends_coalesce_into",
            unread_coalescing(&net, UNREAD_SENDS)?,
        );
    }
    let buf = vec![0xa5u8; TCP_MAX];
    let tally = RefCell::new(Tally::default());
    let udp_receiver = match (v.proto, v.path.delivers()) {
        (Proto::Udp, true) => {
            let r = net.topo.receiver();
            let sock = sockets::socket_in(&r.ns, v.family, Proto::Udp)?;
            sock.bind(&std::net::SocketAddr::new(r.ip(v.family), 0).into())
                .context("bind the UDP receiver")?;
            let to = sockets::local_addr(&sock)?;
            Some((to, Sink::start(sock, false)?))
        }
        _ => None,
    };
    let setup = Setup {
        net: &net,
        udp_receiver,
        buf: &buf,
        behaviour,
        copy_rule: copy_rule(v.path),
        tamper,
    };
    property::check(ctx, ops(v.proto), |ops| {
        setup.run_sequence(ops, &mut tally.borrow_mut())
    })?;
    let tally = tally.into_inner();
    ctx.observe("copy_rule", copy_rule(v.path));
    let c = &tally.coalescing;
    let reason = format!(
        "{} random sequences: {} ids in {} notifications ({} merged, largest {} ids, {} out \
         of order, {} COPIED)",
        tally.sequences, c.ids, c.notifications, c.merged, c.largest, c.out_of_order, c.copied
    );
    ctx.observe_timing("coalescing", tally);
    Ok(Verdict::pass(reason))
}

/// Sends in the deterministic coalescing scenario.
const UNREAD_SENDS: u64 = 8;

/// A deterministic scenario for the coalescing fact: `n` sends of 1000 bytes on a fresh
/// connection over loopback, nothing read until every one completed (the send queue is
/// empty, so every skb was freed and every completion queued), then one drain. Local
/// delivery completes in order, so what the notifications merge into is fixed by the rules
/// (R3.1: an unread tail notification absorbs the next adjacent range) and not by timing.
/// The ranges must cover exactly the ids; what they are is the fact.
fn unread_coalescing(net: &Net, n: u64) -> Result<String> {
    let conn = net.connect(true)?;
    let _sink = conn.sink()?;
    for _ in 0..n {
        let sent = zc_send(&conn.sender, &[0x5a; 1000], false).context("zero-copy send")?;
        anyhow::ensure!(sent == 1000, "sent {sent} of 1000 bytes");
    }
    let deadline = std::time::Instant::now() + super::flow::COMPLETION_WAIT;
    while harness::sys::tcp_zc_receive::queued_out(conn.sender_fd()).context("SIOCOUTQ")? > 0 {
        if std::time::Instant::now() > deadline {
            anyhow::bail!(
                "the send queue did not empty within {:?}",
                super::flow::COMPLETION_WAIT
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    // Completions are queued when the last reference to the data goes; give the receive
    // side a moment past the send queue.
    errqueue::wait_err(conn.sender_fd(), Duration::from_millis(500))?;
    std::thread::sleep(Duration::from_millis(20));
    let got = completions(&errqueue::drain(conn.sender_fd())?);
    crate::model::completions::check(crate::model::completions::IdWindow::new(0, n), &got, true)
        .map_err(|v| fail_with(format!("{n} unread sends on loopback: {v}"), show(&got)))?;
    Ok(show(&got))
}

/// Zero-length UDP sends take an id on the kernels seen so far, against the documentation
/// (R2.4). The property takes the kernel's answer once, records it, and then holds the kernel
/// to it in every sequence.
fn observe_behaviour(net: &Net) -> Result<Behaviour> {
    if net.variant.proto == Proto::Tcp {
        return Ok(Behaviour::NO_EMPTY_UDP_SENDS);
    }
    let conn = net.connect(true)?;
    let _sink = conn.sink()?;
    // A first datagram, completed before anything is measured (id 0).
    zc_send(&conn.sender, &[1], false).context("one-byte UDP send")?;
    let warm = await_ids(&conn.sender, 1)?;
    // A successful send is notified (R2): a missing or extra id is the kernel's, not ours.
    crate::model::completions::check(
        crate::model::completions::IdWindow::new(0, 1),
        &completions(&warm),
        true,
    )
    .map_err(|v| {
        fail_with(
            format!("the first one-byte UDP send (id 0): {v}"),
            format!("{warm:?}"),
        )
    })?;
    zc_send(&conn.sender, &[], false).context("zero-length UDP send")?;
    zc_send(&conn.sender, &[1], false).context("one-byte UDP send")?;
    // The last send is id 2 if the empty one took id 1, else id 1. Seeing id 2 settles it;
    // seeing only id 1, the answer is "no id" once id 2 has had time to show up.
    let mut got = completions(&await_ids(&conn.sender, 1)?);
    if !got.iter().any(|c| c.hi == 2) {
        errqueue::wait_err(conn.sender_fd(), Duration::from_millis(300))?;
        got.extend(completions(&errqueue::drain(conn.sender_fd())?));
    }
    let top = got.iter().map(|c| c.hi).max();
    match top {
        Some(2) => Ok(Behaviour {
            zero_length_udp_takes_id: true,
        }),
        Some(1) => Ok(Behaviour {
            zero_length_udp_takes_id: false,
        }),
        _ => Err(fail_with(
            "a zero-length and a one-byte UDP send were reported with unexpected ids",
            format!("after id 0: {}", show(&got)),
        )),
    }
}

struct Setup<'a> {
    net: &'a Net,
    /// UDP over a delivering path: one receiver, read by one sink, for the whole case.
    udp_receiver: Option<(std::net::SocketAddr, Sink)>,
    buf: &'a [u8],
    behaviour: Behaviour,
    copy_rule: CopyRule,
    tamper: Tamper,
}

/// One sequence's record, for the evidence of a failure.
struct Trace<'a> {
    ops: &'a [Op],
    calls: Vec<String>,
    read: Vec<Completion>,
}

impl Trace<'_> {
    fn evidence(&self, model: &IdModel) -> String {
        format!(
            "sequence: {:?}\ncalls: {}\nids handed out: {}\nnotifications read: {}",
            self.ops,
            self.calls.join(" "),
            model.issued(),
            show(&self.read)
        )
    }
}

impl Setup<'_> {
    /// A fresh sender (ids from 0): a new TCP connection with a reader of its own, or a UDP
    /// socket sending to the case's one receiver, or to nobody on a dead-end path.
    ///
    /// The TCP receiver is returned too: it must stay open until the sequence ends, or a
    /// shutdown followed by the reader's close would end the connection under the sender.
    fn connect(&self) -> Result<(Socket, Option<(StreamReader, Socket)>)> {
        match (&self.udp_receiver, self.net.variant.proto) {
            (Some((to, _)), _) => {
                let s = sockets::udp_to(&self.net.topo.sender().ns, *to)?;
                zerocopy::set_so_zerocopy(s.as_fd(), true).context("SO_ZEROCOPY")?;
                Ok((s, None))
            }
            (None, Proto::Tcp) => {
                let c = self.net.connect(true)?;
                let r = c
                    .receiver
                    .map(|r| Ok::<_, anyhow::Error>((StreamReader::start(r.try_clone()?), r)))
                    .transpose()?;
                Ok((c.sender, r))
            }
            (None, Proto::Udp) => Ok((self.net.connect(true)?.sender, None)),
        }
    }

    /// Runs one sequence on a fresh socket (so ids start at 0) and checks every step.
    fn run_sequence(&self, ops: &[Op], tally: &mut Tally) -> Result<()> {
        let proto = self.net.variant.proto;
        let (sender, reader) = self.connect()?;
        let mut model =
            IdModel::new(proto, self.behaviour, self.copy_rule).with_mutation(self.tamper.mutation);
        // An untampered copy decides how long to wait for completions, so that a mutated
        // model expecting ids that never come costs no timeout per shrinking step.
        let mut shadow = IdModel::new(proto, self.behaviour, self.copy_rule);
        let mut trace = Trace {
            ops,
            calls: Vec::new(),
            read: Vec::new(),
        };
        let mut faulted = false;
        for op in ops {
            match op {
                Op::Send { len, more } => {
                    let call = SendCall {
                        len: *len,
                        more: *more,
                    };
                    self.send(&sender, call, &mut model, &mut shadow, &mut trace, tally)?;
                }
                Op::Drain => {
                    tally.drains += 1;
                    let entries = errqueue::drain(sender.as_fd())?;
                    self.feed(&entries, &mut model, &mut trace, &mut faulted)?;
                }
                Op::Pause(ms) => std::thread::sleep(Duration::from_millis(*ms)),
                Op::Shutdown => {
                    if proto == Proto::Tcp {
                        sender
                            .shutdown(std::net::Shutdown::Write)
                            .context("shutdown(SHUT_WR)")?;
                        model.shutdown();
                        shadow.shutdown();
                        tally.shutdowns += 1;
                    }
                }
            }
        }
        if model.corked() {
            // Close the corked datagram, or its ids never complete.
            let call = SendCall {
                len: 1,
                more: false,
            };
            self.send(&sender, call, &mut model, &mut shadow, &mut trace, tally)?;
        }
        let owed = shadow
            .issued()
            .saturating_sub(super::flow::covered_of(&trace.read));
        let rest = await_ids(&sender, owed)?;
        self.feed(&rest, &mut model, &mut trace, &mut faulted)?;
        // Anything arriving after every id was reported is a duplicate or an invention.
        let late = errqueue::drain(sender.as_fd())?;
        self.feed(&late, &mut model, &mut trace, &mut faulted)?;
        drop(sender);
        if let Some((r, _receiver)) = reader {
            r.finish()?;
        }
        let stats = model
            .finish()
            .map_err(|d| fail_with(d.to_string(), trace.evidence(&model)))?;
        tally.add(&stats);
        tally.sequences += 1;
        Ok(())
    }

    fn send(
        &self,
        sock: &Socket,
        call: SendCall,
        model: &mut IdModel,
        shadow: &mut IdModel,
        trace: &mut Trace,
        tally: &mut Tally,
    ) -> Result<()> {
        let r = errno_result(zc_send(sock, &self.buf[..call.len], call.more));
        trace.calls.push(match r {
            Ok(n) => n.to_string(),
            Err(e) => crate::probes::errno_name(e),
        });
        if let Err(e) = r {
            *tally
                .failed_sends
                .entry(crate::probes::errno_name(e))
                .or_default() += 1;
        }
        let _ = shadow.send(call, r);
        model
            .send(call, r)
            .map_err(|d| fail_with(d.to_string(), trace.evidence(model)))
    }

    /// Hands what a drain read to the model, after checking each entry's fixed fields.
    fn feed(
        &self,
        entries: &[ErrQueueEntry],
        model: &mut IdModel,
        trace: &mut Trace,
        faulted: &mut bool,
    ) -> Result<()> {
        let mut got = Vec::new();
        for e in entries {
            let Some(ee) = e.ee else {
                return Err(fail_with(
                    "an error-queue entry without a RECVERR cmsg",
                    format!("{e:?}\n{}", trace.evidence(model)),
                ));
            };
            check_format(&ee).map_err(|m| {
                fail_with(m.to_string(), format!("{ee:?}\n{}", trace.evidence(model)))
            })?;
            got.extend(e.completion());
        }
        trace.read.extend(&got);
        if let (Some(fault), false, Some(&first)) = (self.tamper.fault, *faulted, got.first()) {
            *faulted = true;
            match fault {
                Fault::LoseFirst => {
                    got.remove(0);
                }
                Fault::RepeatFirst => got.insert(0, first),
            }
        }
        model
            .observe(&got)
            .map_err(|d| fail_with(d.to_string(), trace.evidence(model)))
    }
}

/// Proofs that the property can fail, as hidden cases (`zccheck run --filter
/// selftest.send_model`). Each runs the real property against this kernel with a wrong model
/// or a simulated kernel bug, and passes when the property's verdict is the one expected.
fn selftests() -> Vec<Case> {
    let tcp = Variant::new(Proto::Tcp, Family::V4, Path::Loopback);
    let udp = Variant::new(Proto::Udp, Family::V4, Path::Loopback);
    let mutant = |mutation| Tamper {
        mutation: Some(mutation),
        fault: None,
    };
    let table: Vec<(&str, &str, Variant, Tamper, bool)> = vec![
        (
            "flip_zero_length_udp",
            "a model with the opposite zero-length UDP rule is refuted by the kernel",
            udp,
            mutant(Mutation::FlipZeroLengthUdp),
            true,
        ),
        (
            "every_call_takes_an_id",
            "a model where every call takes an id (empty TCP sends too) is refuted",
            tcp,
            mutant(Mutation::EveryCallTakesAnId),
            true,
        ),
        (
            "corked_datagram_takes_one_id",
            "a model where a corked datagram takes one id is refuted",
            udp,
            mutant(Mutation::CorkedDatagramTakesOneId),
            true,
        ),
        (
            "lost_notification",
            "a simulated kernel that loses a notification is caught (a gap)",
            tcp,
            Tamper {
                mutation: None,
                fault: Some(Fault::LoseFirst),
            },
            true,
        ),
        (
            "repeated_notification",
            "a simulated kernel that repeats a notification is caught (an overlap)",
            udp,
            Tamper {
                mutation: None,
                fault: Some(Fault::RepeatFirst),
            },
            true,
        ),
        (
            "lost_notification_gaps_allowed",
            "with the gap rule switched off, a lost notification goes unnoticed: the gap \
             rule is what catches it",
            tcp,
            Tamper {
                mutation: Some(Mutation::AllowGaps),
                fault: Some(Fault::LoseFirst),
            },
            false,
        ),
    ];
    table
        .into_iter()
        .map(|(name, title, v, tamper, should_fail)| {
            Case::new(
                format!("selftest.send_model.{name}"),
                Area::Selftest,
                title,
                v.requires(),
                move |ctx| prove(ctx, v, tamper, should_fail),
            )
        })
        .collect()
}

fn prove(ctx: &mut Ctx, v: Variant, tamper: Tamper, should_fail: bool) -> Result<Verdict> {
    let outcome = run(ctx, v, tamper);
    ctx.observe("tamper", format!("{tamper:?}"));
    let failed = match outcome {
        Ok(_) => None,
        Err(e) => match e.downcast::<Stop>() {
            Ok(Stop::Fail { reason, .. }) => Some(reason),
            Ok(other) => return Err(other.into()),
            Err(e) => return Err(e),
        },
    };
    match (failed, should_fail) {
        (Some(reason), true) => Ok(Verdict::pass(format!("the property failed: {reason}"))),
        (None, false) => Ok(Verdict::pass(
            "the property passed, as a model without that rule must",
        )),
        (Some(reason), false) => Err(fail(format!(
            "the property was expected to pass with this tampering, but failed: {reason}"
        ))),
        (None, true) => Err(fail(
            "the tampering went unnoticed: the property cannot fail this way",
        )),
    }
}
