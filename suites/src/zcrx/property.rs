//! A property: random write sizes, stream lengths, length limits and refill timings, each run
//! end to end over loopback and checked against the area model (every buffer lent once until
//! returned, returned buffers reused, bytes intact, one final CQE). The only allowed endings
//! are a clean one after the expected bytes, or an error when the area was exhausted as the
//! kernel saw it: every buffer lent or unflushed while it produced that batch of CQEs (data
//! can arrive faster than any return policy hands buffers back).

use anyhow::Result;
use harness::sys::zcrx_ring::page_size;
use proptest::prelude::*;

use super::register::NODEV;
use super::transfer::{self, Net, Plan, Returns};
use crate::case::{Area, Case, Ctx};
use crate::model::zcrx_area::End;
use crate::outcome::{fail_with, Verdict};
use crate::probes::NET_ADMIN;

const AREA_PAGES: usize = 16;
/// Most random transfers per run: each is a connection and a ring.
const MAX_CASES: u32 = 24;

pub fn cases() -> Vec<Case> {
    vec![Case::new(
        "zcrx.property.random_streams",
        Area::Zcrx,
        "random write sizes, stream lengths, limits and refill timings over loopback match \
         the area model",
        vec![NET_ADMIN, NODEV],
        random_streams,
    )]
}

fn strategy() -> impl Strategy<Value = Plan> {
    let page = page_size();
    (
        prop::collection::vec(1usize..3 * page, 1..5),
        1usize..3 * AREA_PAGES * page,
        prop_oneof![Just(0u32), 1u32..(AREA_PAGES * page) as u32],
        prop_oneof![
            Just(Returns::Never),
            Just(Returns::Eager),
            (1u32..=16).prop_map(Returns::Lazy)
        ],
        any::<u64>(),
        prop_oneof![Just(None), Just(Some(AREA_PAGES * page / 8))],
    )
        .prop_map(move |(writes, total, limit, returns, seed, window)| Plan {
            total,
            writes,
            limit,
            eof: true,
            returns,
            area_pages: AREA_PAGES,
            rq_entries: 16,
            seed,
            window,
        })
}

fn random_streams(ctx: &mut Ctx) -> Result<Verdict> {
    ctx.cases = ctx.cases.min(MAX_CASES);
    crate::property::check(ctx, strategy(), |plan| {
        let r = transfer::run(Net::Loopback, plan)?;
        judge(plan, &r)
    })?;
    Ok(Verdict::pass(format!(
        "{} random transfers matched the model",
        ctx.cases
    )))
}

/// Whether one random transfer ended as the model allows.
pub fn judge(plan: &Plan, r: &transfer::Report) -> Result<()> {
    if let Some(v) = &r.violation {
        return Err(fail_with(v.to_string(), r.summary()));
    }
    let want = if plan.limit > 0 {
        (plan.limit as usize).min(plan.total)
    } else {
        plan.total
    } as u64;
    match r.end {
        Some(End::Clean) if r.model.delivered == want => Ok(()),
        Some(End::Error(_)) if r.model.ended_exhausted() => Ok(()),
        _ => Err(fail_with(
            format!("the transfer should have delivered {want} bytes and ended cleanly"),
            r.summary(),
        )),
    }
}
