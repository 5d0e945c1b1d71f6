//! The first property: over random sequences of zero-copy sends, drains and pauses, every id
//! a successful call took is reported exactly once, ranges are well formed, never overlap,
//! and merges cover only adjacent ids (SEMANTICS.md R2.3, R3.1, R3.2). Checked after every
//! drain (ids may still be in flight) and once more after the final wait (none may be).

use std::fmt;
use std::os::fd::AsFd;
use std::time::Duration;

use anyhow::Result;
use harness::sockets::{Proto, Sink};
use harness::sys::errqueue::{self, Completion};
use harness::sys::zerocopy;
use proptest::collection::vec;
use proptest::prelude::*;

use super::flow::{await_ids, completions, show, Net, Variant};
use crate::case::{Area, Case, Ctx};
use crate::model::completions::{check, check_format, Coalescing, IdWindow};
use crate::outcome::{fail, fail_with, Verdict};
use crate::probes::io_errno;
use crate::property;

pub fn cases() -> Vec<Case> {
    Variant::all()
        .into_iter()
        .map(|v| {
            Case::new(
                format!("send.ids.{}", v.tag()),
                Area::Send,
                "random sends and drains: every id reported exactly once, in well-formed, \
                 non-overlapping ranges (msg_zerocopy.c's gap check, generalised)",
                v.requires(),
                move |ctx| run(ctx, v),
            )
        })
        .collect()
}

/// One step of a random sequence.
#[derive(Clone)]
pub enum Op {
    Send(usize),
    Drain,
    Pause(u64),
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Send(n) => write!(f, "send({n})"),
            Op::Drain => write!(f, "drain"),
            Op::Pause(ms) => write!(f, "pause({ms}ms)"),
        }
    }
}

/// Sizes: TCP from 1 byte to 256 KiB; UDP up to 1400 bytes, below every path MTU, so that no
/// datagram is fragmented (fragmented datagrams complete only when read, see OBSERVED C3).
fn op(proto: Proto) -> impl Strategy<Value = Op> {
    let max = if proto == Proto::Tcp {
        256 * 1024
    } else {
        1400
    };
    prop_oneof![
        6 => prop_oneof![1usize..=64, 65usize..=4096, 4097..=max.max(4097)]
            .prop_map(move |n| Op::Send(n.min(max))),
        2 => Just(Op::Drain),
        1 => (0u64..=3).prop_map(Op::Pause),
    ]
}

fn run(ctx: &mut Ctx, v: Variant) -> Result<Verdict> {
    let net = v.build()?;
    let tally = std::cell::RefCell::new((Coalescing::default(), 0u32));
    property::check(ctx, vec(op(v.proto), 1..48), |ops| {
        let s = run_sequence(&net, ops)?;
        let (t, n) = &mut *tally.borrow_mut();
        t.notifications += s.notifications;
        t.ids += s.ids;
        t.merged += s.merged;
        t.largest = t.largest.max(s.largest);
        t.out_of_order += s.out_of_order;
        t.copied += s.copied;
        *n += 1;
        Ok(())
    })?;
    let (total, sequences) = tally.into_inner();
    ctx.observe("coalescing", &total);
    Ok(Verdict::pass(format!(
        "{sequences} random sequences: {} ids in {} notifications, {} merged, {} out of order",
        total.ids, total.notifications, total.merged, total.out_of_order
    )))
}

/// Runs one sequence on a fresh connection (so ids start at 0) and checks it.
fn run_sequence(net: &Net, ops: &[Op]) -> Result<Coalescing> {
    let f = net.flow(true)?;
    let sink = Sink::start(f.receiver.try_clone()?, false)?;
    let fd = f.sender.as_fd();
    let mut issued = 0u64;
    let mut got: Vec<Completion> = Vec::new();
    let mut calls = Vec::new();
    let buf = vec![
        0xa5u8;
        ops.iter()
            .map(|o| if let Op::Send(n) = o { *n } else { 0 })
            .max()
            .unwrap_or(1)
    ];
    let evidence = |calls: &[String], got: &[Completion]| {
        format!(
            "sequence: {ops:?}\ncalls: {}\ncompletions: {}",
            calls.join(" "),
            show(got)
        )
    };
    for op in ops {
        match op {
            Op::Send(n) => match zerocopy::send_zc(fd, &buf[..*n], 0) {
                Ok(sent) => {
                    issued += 1;
                    calls.push(format!("{sent}"));
                }
                // A full buffer or optmem: the call failed, so it took no id.
                Err(e) => calls.push(io_errno(&e)),
            },
            Op::Drain => {
                for e in errqueue::drain(fd)? {
                    if let Some(ee) = e.ee {
                        check_format(&ee)
                            .map_err(|m| fail_with(m.to_string(), evidence(&calls, &got)))?;
                    }
                    got.extend(e.completion());
                }
                check(IdWindow::new(0, issued), &got, false)
                    .map_err(|viol| fail_with(viol.to_string(), evidence(&calls, &got)))?;
            }
            Op::Pause(ms) => std::thread::sleep(Duration::from_millis(*ms)),
        }
    }
    let before = got.len();
    let rest = await_ids(
        &f.sender,
        issued.saturating_sub(super::flow::covered_of(&got)),
    )?;
    got.extend(completions(&rest));
    drop(f);
    sink.finish()?;
    let stats = check(IdWindow::new(0, issued), &got, true).map_err(|viol| {
        let mut ev = evidence(&calls, &got);
        ev.push_str(&format!(
            "\n({} completions read during the sequence)",
            before
        ));
        fail_with(viol.to_string(), ev)
    })?;
    if got.iter().any(|c| c.lo > c.hi) {
        return Err(fail("a range wrapped on a fresh socket"));
    }
    Ok(stats)
}
