//! Alignment and length as a property: random calls (address in the socket's own mapping,
//! its MAP_PRIVATE twin, another connection's mapping, the heap, a guard page, page 0, beyond
//! user space; aligned or not; any length) interleaved with random recv()s that shift the
//! stream's position, on a connection with a random stream fully queued. Every answer is
//! checked by the oracle of `model::zc_receive` (EINVAL exactly when the address is
//! misaligned or not in a socket mapping while a page is queued; length in whole pages,
//! clamped to the request, the mapping and the queue; hints that lead on; `inq` exact), and
//! every byte taken is checked against the stream: never more mapped than was sent.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::os::fd::AsFd;
use std::sync::Arc;

use anyhow::{Context, Result};
use harness::sockets::Family;
use harness::sys::socket_mmap::{self, Sharing, SocketMapping};
use harness::sys::tcp_zc_receive::{self, field_end, ZcCall};
use proptest::collection::vec;
use proptest::prelude::*;

use super::fixture::{answer, show, ARRIVAL};
use super::integrity::{pattern, size};
use super::net::{aligned_mtu, ConnOpts, Path, RxNet};
use super::probes::struct_len;
use super::sender::{self, Ending, SendPlan};
use crate::case::{Area, Case, Ctx};
use crate::model::stream::{Pattern, Source, StreamCheck};
use crate::model::zc_receive::{check, Call, CopyBuf, Region, Seen};
use crate::outcome::{fail_with, Verdict};
use crate::property;

pub fn cases() -> Vec<Case> {
    vec![Case::new(
        "receive.alignment.lo",
        Area::Receive,
        "random addresses and lengths: EINVAL exactly off-page or outside socket mappings; \
         length in whole pages, clamped to request, mapping and queue; never more than sent",
        Path::Loopback.requires(),
        run,
    )]
}

/// Where a call points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    Own,
    OwnPrivate,
    OtherConnection,
    Heap,
    GuardPage,
    PageZero,
    BeyondUserSpace,
}

#[derive(Clone)]
pub enum Op {
    Call {
        target: Target,
        page: u32,
        misalign: u64,
        len: u32,
    },
    Recv(usize),
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Call {
                target,
                page,
                misalign,
                len,
            } => write!(f, "call({target:?} page {page} +{misalign}, len {len})"),
            Op::Recv(n) => write!(f, "recv({n})"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub family: Family,
    pub pattern: Pattern,
    pub size: usize,
    pub chunk: usize,
    pub map_pages: u32,
    pub ops: Vec<Op>,
}

const MAX_SIZE: usize = 1 << 20;

/// The largest stream of `chunk`-byte sends that surely fits the receive queue unread: each
/// MSG_ZEROCOPY send may cost a fresh page plus skb overhead at the receiver, so small sends
/// fill the queue's memory long before its byte count.
fn fits(chunk: usize) -> usize {
    const BUDGET: usize = 3 << 20;
    const COST_PER_SEND: usize = 4096 + 512;
    (BUDGET / (chunk + COST_PER_SEND)).max(1) * chunk
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        8 => Just(Target::Own),
        2 => Just(Target::OwnPrivate),
        2 => Just(Target::OtherConnection),
        1 => Just(Target::Heap),
        1 => Just(Target::GuardPage),
        1 => Just(Target::PageZero),
        1 => Just(Target::BeyondUserSpace),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let len = prop_oneof![
        2 => 0u32..=8192,
        3 => (1u32..=64).prop_map(|p| p * 4096),
        1 => any::<u32>(),
    ];
    let misalign = prop_oneof![5 => Just(0u64), 1 => 1u64..4096];
    prop_oneof![
        5 => (target(), 0u32..32, misalign, len).prop_map(|(target, page, misalign, len)| {
            Op::Call { target, page, misalign, len }
        }),
        1 => prop_oneof![1usize..=4096, 4097usize..=65536].prop_map(Op::Recv),
    ]
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        prop_oneof![Just(Family::V4), Just(Family::V6)],
        pattern(),
        // Mostly streams of many pages, where mapping happens; some under a page or two.
        prop_oneof![1 => size(8192), 3 => size(MAX_SIZE).prop_map(|n| n.max(16384))],
        prop_oneof![(1usize..=16).prop_map(|p| p * 4096), 1usize..=65536],
        1u32..=32,
        vec(op(), 1..24),
    )
        .prop_map(|(family, pattern, size, chunk, map_pages, ops)| Scenario {
            family,
            pattern,
            size: size.min(fits(chunk)),
            chunk,
            map_pages,
            ops,
        })
}

/// What lives across scenarios: the network and another connection whose mapping serves as
/// a foreign target.
struct World {
    net: RxNet,
    _other: super::net::Conn,
    other_map: SocketMapping,
    heap: Vec<u8>,
}

fn run(ctx: &mut Ctx) -> Result<Verdict> {
    let net = RxNet::new(Path::Loopback)?;
    let other = net.connect(Family::V4, ConnOpts::default())?;
    let page = socket_mmap::page_size();
    let other_map = SocketMapping::readable(other.receiver.as_fd(), 4 * page, Sharing::Shared)?;
    let world = World {
        net,
        _other: other,
        other_map,
        heap: vec![0u8; 3 * page],
    };
    let tally: RefCell<BTreeMap<String, u32>> = RefCell::default();
    property::check(ctx, scenario(), |s| {
        let seen = one(&world, s)?;
        let mut t = tally.borrow_mut();
        for (k, v) in seen {
            *t.entry(k).or_default() += v;
        }
        Ok(())
    })?;
    let tally = tally.into_inner();
    let calls: u32 = tally.values().sum();
    ctx.observe("answers", &tally);
    Ok(Verdict::pass(format!(
        "{calls} calls on random streams, every answer within the rules"
    )))
}

fn one(w: &World, s: &Scenario) -> Result<BTreeMap<String, u32>> {
    let page = socket_mmap::page_size();
    w.net.set_mtu(aligned_mtu(s.family))?;
    let conn = w.net.connect(
        s.family,
        ConnOpts {
            zc_sender: true,
            maxseg: None,
        },
    )?;
    let data = Arc::new(s.pattern.bytes(s.size));
    let plan = SendPlan::whole(s.size, s.chunk, true, Ending::Open);
    let mut sent = sender::join(sender::spawn(conn.sender, data, plan))?;
    sender::wait_queued(&conn.receiver, s.size as u32, ARRIVAL)?;
    // Delivered over loopback (copied, so completed): every id is owed now.
    sender::settle(&mut sent)?;
    let _sender = sent.socket;
    let rx = &conn.receiver;
    let own = SocketMapping::readable(rx.as_fd(), s.map_pages as usize * page, Sharing::Shared)?;
    let private =
        SocketMapping::readable(rx.as_fd(), s.map_pages as usize * page, Sharing::Private)?;
    let heap_page = (w.heap.as_ptr() as u64).next_multiple_of(page as u64);
    let optlen = struct_len();
    let mut check_stream = StreamCheck::new(s.pattern, s.size as u64);
    let mut log: Vec<String> = Vec::new();
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    let fail = |msg: String, log: &[String]| {
        fail_with(msg, format!("scenario: {s:?}\ncalls:\n{}", log.join("\n")))
    };
    for op in &s.ops {
        let inq = tcp_zc_receive::queued_in(rx.as_fd())?;
        match *op {
            Op::Recv(n) => {
                let n = n.min(inq as usize);
                if n == 0 {
                    continue;
                }
                let mut buf = vec![0u8; n];
                (&*rx).read_exact(&mut buf).context("recv")?;
                log.push(format!("recv {n}"));
                check_stream
                    .accept(Source::Recv, &buf)
                    .map_err(|v| fail(v.to_string(), &log))?;
            }
            Op::Call {
                target,
                page: p,
                misalign,
                len,
            } => {
                let (mapped_at, region) = match target {
                    Target::Own => {
                        let (b, room) = at_page(&own, p, page);
                        (b, Region::Own { room })
                    }
                    Target::OwnPrivate => {
                        let (b, room) = at_page(&private, p, page);
                        (b, Region::Foreign { room })
                    }
                    Target::OtherConnection => {
                        let (b, room) = at_page(&w.other_map, p, page);
                        (b, Region::Foreign { room })
                    }
                    Target::Heap => (None, Region::Elsewhere),
                    Target::GuardPage => (None, Region::Elsewhere),
                    Target::PageZero => (None, Region::Elsewhere),
                    Target::BeyondUserSpace => (None, Region::Elsewhere),
                };
                let base = match target {
                    Target::Heap => heap_page,
                    Target::GuardPage => own.guard_above(),
                    Target::PageZero => 0,
                    Target::BeyondUserSpace => 1 << 47,
                    _ => mapped_at.expect("a mapping").0,
                };
                let addr = base + misalign;
                let r = ZcCall::new(addr, len).call(rx.as_fd(), optlen);
                log.push(format!(
                    "{target:?} page {p} +{misalign}, len {len}, {inq} queued: {}",
                    show(&r)
                ));
                let call = Call {
                    page: page as u32,
                    misalignment: addr % page as u64,
                    region,
                    requested: len,
                    copybuf: CopyBuf::NONE,
                    listening: false,
                    inq,
                    fin: false,
                };
                let verdict = check(&call, &answer(&r, optlen >= field_end::INQ as i32))
                    .map_err(|v| fail(v.to_string(), &log))?;
                *seen
                    .entry(format!("{target:?}: {}", seen_name(verdict)))
                    .or_default() += 1;
                let Ok(rep) = r else { continue };
                if rep.fields.length > 0 {
                    let (at, m) = mapped_at.expect("the oracle allows mapping only into a mapping");
                    let off = (at - m.addr()) as usize;
                    let bytes = m.read(off, rep.fields.length as usize)?;
                    if bytes.len() < rep.fields.length as usize {
                        return Err(fail(
                            format!(
                                "{} bytes reported mapped, {} readable",
                                rep.fields.length,
                                bytes.len()
                            ),
                            &log,
                        ));
                    }
                    check_stream
                        .accept(Source::Mapped, &bytes)
                        .map_err(|v| fail(v.to_string(), &log))?;
                }
                if rep.fields.recv_skip_hint > 0 {
                    let mut buf = vec![0u8; rep.fields.recv_skip_hint as usize];
                    (&*rx).read_exact(&mut buf).context("recv of the hint")?;
                    check_stream
                        .accept(Source::Recv, &buf)
                        .map_err(|v| fail(v.to_string(), &log))?;
                }
            }
        }
    }
    Ok(seen)
}

/// Page `p` (modulo its size) of `m`: the address and mapping, and the room to its end.
fn at_page(m: &SocketMapping, p: u32, page: usize) -> (Option<(u64, &SocketMapping)>, u64) {
    let pages = (m.len() / page) as u32;
    let off = (p % pages) as usize * page;
    (Some((m.addr() + off as u64, m)), (m.len() - off) as u64)
}

fn seen_name(s: Seen) -> &'static str {
    match s {
        Seen::Refused => "refused",
        Seen::ForeignRefused => "refused",
        Seen::ForeignAccepted => "accepted",
        Seen::CopiedAll => "copied",
        Seen::HintOnly => "hint only",
        Seen::MappedAll => "mapped all",
        Seen::MappedPart => "mapped part",
        Seen::Eof => "eof",
        Seen::NoFastPath => "general rules (no fast path)",
    }
}
