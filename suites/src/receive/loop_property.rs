//! The loop of a real zero-copy receiver as a property over random stream shapes: bursts and
//! pauses, MSG_ZEROCOPY or plain, ended by a FIN or by a reset at a random point; the receiver
//! maps, reads the hint, copies, unmaps (or promises it did) and repeats.
//!
//! Checked: every byte received is the stream's next byte; a FIN-ended stream arrives whole
//! and ends with EIO (never a spin); a reset is reported exactly once, as -ECONNRESET, and
//! the loop then stops within a bounded number of calls. Recorded: how each kind of stream
//! ended (on 6.18 a reset leaves a state where a loop reading only the fields would spin).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use harness::sockets::Family;
use harness::sys::socket_mmap::{self, Sharing, SocketMapping};
use harness::sys::tcp_zc_receive::field_end;
use proptest::collection::vec;
use proptest::prelude::*;

use super::integrity::{pattern, unmap};
use super::net::{aligned_mtu, ConnOpts, Path, RxNet};
use super::probes::struct_len;
use super::rx_loop::{self, End, RxConfig, Unmap};
use super::sender::{self, Burst, Ending, SendPlan};
use crate::case::{Area, Case, Ctx};
use crate::model::stream::{Pattern, StreamCheck};
use crate::outcome::fail_with;
use crate::outcome::Verdict;
use crate::property;

pub fn cases() -> Vec<Case> {
    vec![Case::new(
        "receive.loop.lo",
        Area::Receive,
        "a zero-copy receive loop over random stream shapes: intact, EIO after a FIN, one \
         -ECONNRESET after a reset, never an endless spin",
        Path::Loopback.requires(),
        run,
    )]
}

#[derive(Debug, Clone)]
pub struct Shape {
    pub family: Family,
    pub pattern: Pattern,
    pub bursts: Vec<Burst>,
    pub chunk: usize,
    pub zc_sender: bool,
    pub ending: Ending,
    pub request_pages: u32,
    pub copybuf: usize,
    pub unmap: Unmap,
}

fn burst() -> impl Strategy<Value = Burst> {
    (
        prop_oneof![
            1usize..=4096,
            (1usize..=64).prop_map(|p| p * 4096),
            1usize..=262_144
        ],
        prop_oneof![3 => Just(0u64), 1 => 1u64..=3],
    )
        .prop_map(|(len, pause_ms)| Burst { len, pause_ms })
}

fn shape() -> impl Strategy<Value = Shape> {
    (
        prop_oneof![Just(Family::V4), Just(Family::V6)],
        pattern(),
        vec(burst(), 1..8),
        prop_oneof![(1usize..=16).prop_map(|p| p * 4096), 1usize..=65536],
        prop::bool::weighted(0.8),
        prop_oneof![3 => Just(Ending::Fin), 2 => Just(Ending::Reset)],
        1u32..=64,
        prop_oneof![3 => Just(0usize), 1 => 1usize..=16384],
        unmap(),
    )
        .prop_map(
            |(family, pattern, bursts, chunk, zc_sender, ending, request_pages, copybuf, unmap)| {
                Shape {
                    family,
                    pattern,
                    bursts,
                    chunk,
                    zc_sender,
                    ending,
                    request_pages,
                    copybuf,
                    unmap,
                }
            },
        )
}

fn run(ctx: &mut Ctx) -> Result<Verdict> {
    let net = RxNet::new(Path::Loopback)?;
    let optlen = struct_len();
    let ends: RefCell<BTreeMap<String, u32>> = RefCell::default();
    property::check(ctx, shape(), |s| {
        let end = one(&net, optlen, s)?;
        *ends.borrow_mut().entry(end).or_default() += 1;
        Ok(())
    })?;
    let ends = ends.into_inner();
    ctx.observe("ends", &ends);
    let streams: u32 = ends.values().sum();
    Ok(Verdict::pass(format!(
        "{streams} random stream shapes received intact and ended as they must: {}",
        ends.iter()
            .map(|(k, v)| format!("{v}× {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// Runs one shape; returns how it ended, for the tally.
fn one(net: &RxNet, optlen: i32, s: &Shape) -> Result<String> {
    net.set_mtu(aligned_mtu(s.family))?;
    let conn = net.connect(
        s.family,
        ConnOpts {
            zc_sender: s.zc_sender,
            maxseg: None,
        },
    )?;
    let page = socket_mmap::page_size();
    let window = s.request_pages as usize * page;
    let map = SocketMapping::readable(conn.receiver.as_fd(), window, Sharing::Shared)?;
    let plan = SendPlan {
        bursts: s.bursts.clone(),
        chunk: s.chunk,
        zc: s.zc_sender,
        ending: s.ending,
    };
    let total = plan.total();
    let data = Arc::new(s.pattern.bytes(total));
    let wide = optlen >= field_end::FLAGS as i32;
    let cfg = RxConfig {
        request: window as u32,
        copybuf: if wide { s.copybuf } else { 0 },
        unmap: if wide { s.unmap } else { Unmap::Kernel },
        optlen,
        spin_limit: 20,
        deadline: Duration::from_secs(10),
    };
    let tx = sender::spawn(conn.sender, data, plan);
    let mut check = StreamCheck::new(s.pattern, total as u64);
    let got = rx_loop::receive(&conn.receiver, &map, &cfg, &mut check);
    let mut sent = sender::join(tx)?;
    let t = got?;
    let received = check.position();
    let evidence = |what: &str| {
        format!(
            "{what}\nreceived {received} of {} sent; errors {:?}; {}\nlast calls:\n{}",
            sent.bytes,
            t.errors,
            rx_loop::recv_after(&conn.receiver),
            t.tail.join("\n")
        )
    };
    if received > sent.bytes {
        return Err(fail_with(
            "the receiver got more bytes than the sender sent",
            evidence(""),
        ));
    }
    let ending = match s.ending {
        Ending::Fin => "fin",
        Ending::Reset => "reset",
        Ending::Open => "open",
    };
    match s.ending {
        Ending::Fin => {
            if t.end != End::Eof {
                return Err(fail_with(
                    format!("after a FIN the loop ended with {:?}, not EIO", t.end),
                    evidence(""),
                ));
            }
            if !t.errors.is_empty() {
                return Err(fail_with(
                    "errors were reported on a stream that ended with a FIN",
                    evidence(""),
                ));
            }
            check.set_sent(sent.bytes);
            check.finish().map_err(|v| {
                fail_with(format!("EIO before the whole stream: {v}"), evidence(""))
            })?;
            sender::settle(&mut sent)?;
        }
        Ending::Reset | Ending::Open => {
            let resets = t
                .errors
                .iter()
                .filter(|e| e.err == -libc::ECONNRESET)
                .count();
            if resets != 1 || t.errors.len() != 1 {
                return Err(fail_with(
                    format!(
                        "a reset must be reported exactly once as -ECONNRESET; the loop saw {:?}",
                        t.errors
                    ),
                    evidence(""),
                ));
            }
        }
    }
    let how = match &t.end {
        End::Eof => "eio".to_string(),
        End::Spin { .. } => "spin (no progress, no EIO, socket ready)".to_string(),
        End::Error { errno } => crate::probes::errno_name(*errno),
        End::RecvEof => "recv eof".to_string(),
    };
    let via = t
        .errors
        .first()
        .map(|e| format!(", reported via {}", e.via))
        .unwrap_or_default();
    Ok(format!("{ending}: {how}{via}"))
}
