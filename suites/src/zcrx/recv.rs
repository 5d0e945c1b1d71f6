//! Receiving with `IORING_OP_RECV_ZC` on a device-less instance, over loopback and a veth
//! pair: every data CQE points at exactly the bytes sent, the request ends with one final
//! CQE without `F_MORE`, buffers come back through the refill ring, and an area that is never
//! refilled runs out the documented way (a final CQE with a negative errno: ENOMEM in the
//! copy path) only once every buffer is lent.

use anyhow::Result;
use harness::sys::zcrx_ring::page_size;

use super::register::NODEV;
use super::transfer::{self, Net, Plan, Report, Returns};
use crate::case::{Area, Case, Ctx};
use crate::model::zcrx_area::End;
use crate::outcome::{fail_with, Verdict};
use crate::probes::{errno_name, NET_ADMIN, VETH};

/// Pages of the area of receive cases.
pub const AREA_PAGES: usize = 32;
/// Refill ring entries of receive cases.
pub const RQ_ENTRIES: u32 = 64;

fn requires(net: Net) -> Vec<crate::probes::Requirement> {
    match net {
        Net::Loopback => vec![NET_ADMIN, NODEV],
        Net::Veth => vec![NET_ADMIN, VETH, NODEV],
    }
}

fn tag(net: Net) -> &'static str {
    match net {
        Net::Loopback => "lo",
        Net::Veth => "veth",
    }
}

pub fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for net in [Net::Loopback, Net::Veth] {
        out.push(Case::new(
            format!("zcrx.recv.multishot.{}", tag(net)),
            Area::Zcrx,
            format!(
                "RECV_ZC multishot over TCP on {}: each CQE points at exactly the bytes sent; \
                 the stream's end gives a final CQE (0, no F_MORE)",
                net.name()
            ),
            requires(net),
            move |ctx| multishot(ctx, net),
        ));
        out.push(Case::new(
            format!("zcrx.recv.limit.{}", tag(net)),
            Area::Zcrx,
            format!(
                "RECV_ZC with a length limit on {}: exactly that many bytes, then a final CQE \
                 (0, no F_MORE) although more data waits",
                net.name()
            ),
            requires(net),
            move |ctx| limited(ctx, net),
        ));
    }
    out.push(Case::new(
        "zcrx.recv.refill_eager",
        Area::Zcrx,
        "twice the area's size goes through when each buffer is returned and flushed at once",
        requires(Net::Loopback),
        |ctx| twice_area(ctx, Returns::Eager),
    ));
    out.push(Case::new(
        "zcrx.recv.refill_lazy",
        Area::Zcrx,
        "twice the area's size goes through when buffers are returned at once but flushed \
         only every 16 (a 16-entry refill ring)",
        requires(Net::Loopback),
        |ctx| twice_area(ctx, Returns::Lazy(16)),
    ));
    out.push(Case::new(
        "zcrx.recv.kernel_region",
        Area::Zcrx,
        "a refill ring the kernel allocates (mapped through the ring at the offset it \
         answers) takes buffers back: twice the area's size goes through",
        requires(Net::Loopback),
        kernel_region,
    ));
    out.push(Case::new(
        "zcrx.recv.exhaustion",
        Area::Zcrx,
        "without returns the area runs out: a final CQE (no F_MORE) with a negative errno, \
         only after every buffer was lent, every byte before it intact",
        requires(Net::Loopback),
        exhaustion,
    ));
    out
}

/// The first broken rule or a missing end, as a failure.
fn check_protocol(what: &str, r: &Report) -> Result<()> {
    if let Some(v) = &r.violation {
        return Err(fail_with(format!("{what}: {v}"), r.summary()));
    }
    if r.end.is_none() {
        return Err(fail_with(
            format!(
                "{what}: no final CQE within {:?}",
                transfer::TRANSFER_DEADLINE
            ),
            r.summary(),
        ));
    }
    Ok(())
}

/// The request must end cleanly after exactly `want` bytes.
fn expect_clean(ctx: &mut Ctx, what: &str, r: &Report, want: u64) -> Result<Verdict> {
    ctx.observe("data_cqes", r.model.data_cqes);
    ctx.observe("reused_buffers", r.model.reused);
    judge_clean(what, r, want)
}

/// [`expect_clean`]'s judgement.
pub fn judge_clean(what: &str, r: &Report, want: u64) -> Result<Verdict> {
    check_protocol(what, r)?;
    match r.end {
        Some(End::Clean) if r.model.delivered == want => Ok(Verdict::pass(r.summary())),
        Some(End::Clean) => Err(fail_with(
            format!(
                "{what}: the request ended after {} of {want} bytes",
                r.model.delivered
            ),
            r.summary(),
        )),
        Some(End::Error(e)) => Err(fail_with(
            format!(
                "{what}: the request ended with {} after {} of {want} bytes",
                errno_name(e),
                r.model.delivered
            ),
            r.summary(),
        )),
        None => unreachable!("checked above"),
    }
}

fn plan(total: usize, returns: Returns, seed: u64) -> Plan {
    Plan {
        total,
        writes: vec![page_size(), 1000, 3 * page_size() + 17, 16 * 1024],
        limit: 0,
        eof: true,
        returns,
        area_pages: AREA_PAGES,
        rq_entries: RQ_ENTRIES,
        seed,
        window: Some(AREA_PAGES * page_size() / 8),
    }
}

fn multishot(ctx: &mut Ctx, net: Net) -> Result<Verdict> {
    let total = 5 * page_size() + 123;
    let p = plan(total, Returns::Eager, ctx.seed);
    let r = transfer::run(net, &p)?;
    expect_clean(ctx, &format!("RECV_ZC on {}", net.name()), &r, total as u64)
}

fn limited(ctx: &mut Ctx, net: Net) -> Result<Verdict> {
    let limit = 3 * page_size() as u32 + 1000;
    let mut p = plan(2 * limit as usize, Returns::Eager, ctx.seed);
    p.limit = limit;
    p.eof = false;
    let r = transfer::run(net, &p)?;
    expect_clean(
        ctx,
        &format!("RECV_ZC limited to {limit} bytes on {}", net.name()),
        &r,
        limit as u64,
    )
}

fn twice_area(ctx: &mut Ctx, returns: Returns) -> Result<Verdict> {
    let total = 2 * AREA_PAGES * page_size();
    let mut p = plan(total, returns, ctx.seed);
    if let Returns::Lazy(n) = returns {
        p.rq_entries = n;
    }
    let r = transfer::run(Net::Loopback, &p)?;
    let v = expect_clean(
        ctx,
        &format!("twice the area with {returns:?} returns"),
        &r,
        total as u64,
    )?;
    ctx.observe("flushes", r.flushes);
    Ok(v)
}

fn kernel_region(ctx: &mut Ctx) -> Result<Verdict> {
    let total = 2 * AREA_PAGES * page_size();
    let p = plan(total, Returns::Eager, ctx.seed);
    let conn = transfer::connect(Net::Loopback)?;
    let mut ring = match transfer::ring_with_kernel_region(AREA_PAGES, RQ_ENTRIES) {
        Ok(r) => r,
        Err(e) => {
            return Err(crate::outcome::fail(format!(
                "a device-less instance with a kernel-allocated refill region: {e:#}"
            )))
        }
    };
    if let Some(reg) = ring.instance() {
        ctx.observe("mmap_offset", format!("{:#x}", reg.region_mmap_offset));
    }
    let r = transfer::run_on(&mut ring, None, conn, &p)?;
    expect_clean(
        ctx,
        "twice the area through a kernel-allocated refill ring",
        &r,
        total as u64,
    )
}

fn exhaustion(ctx: &mut Ctx) -> Result<Verdict> {
    let total = 2 * AREA_PAGES * page_size();
    let mut p = plan(total, Returns::Never, ctx.seed);
    p.window = None;
    let r = transfer::run(Net::Loopback, &p)?;
    ctx.observe("data_cqes", r.model.data_cqes);
    check_protocol("an area never refilled", &r)?;
    judge_exhaustion(&r).inspect(|_| {
        if let Some(End::Error(e)) = r.end {
            ctx.observe("errno", errno_name(e));
        }
    })
}

/// An exhausted area must end the request with an error, and only once every buffer is lent.
pub fn judge_exhaustion(r: &Report) -> Result<Verdict> {
    let held = r.model.held_buffers();
    let all = r.model.buffers();
    match r.end {
        Some(End::Error(e)) if r.model.ended_exhausted() => Ok(Verdict::pass(format!(
            "after {} bytes in all {all} buffers: final CQE {} without F_MORE",
            r.model.delivered,
            errno_name(e)
        ))),
        Some(End::Error(e)) => Err(fail_with(
            format!(
                "the request ended with {} while only {held} of {all} buffers were lent",
                errno_name(e)
            ),
            r.summary(),
        )),
        Some(End::Clean) => Err(fail_with(
            "an area never refilled ended the request as if the stream were complete",
            r.summary(),
        )),
        None => Err(fail_with(
            "an exhausted area left the request without a final CQE",
            r.summary(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::zcrx_area::{pattern, pattern_byte, AreaModel};
    use crate::outcome::{verdict_of_error, Outcome};

    fn report(held: u64, end: Option<End>) -> Report {
        let page = 4096u64;
        let mut model = AreaModel::new(4 * page, page, None);
        model.begin_batch();
        for i in 0..held {
            let bytes = pattern(1, model.delivered, 100);
            model
                .on_data(i * page, 100, &bytes, |p| pattern_byte(1, p))
                .unwrap();
        }
        match end {
            Some(End::Clean) => drop(model.on_final(0)),
            Some(End::Error(e)) => drop(model.on_final(-e)),
            None => {}
        }
        Report {
            model,
            end,
            violation: None,
            cqes: held as usize + 1,
            flushes: 0,
            elapsed: Duration::ZERO,
            sent: Ok(0),
        }
    }

    fn outcome(r: Result<Verdict>) -> Outcome {
        match r {
            Ok(v) => v.outcome,
            Err(e) => verdict_of_error(e).outcome,
        }
    }

    #[test]
    fn exhaustion_passes_only_with_every_buffer_lent() {
        assert_eq!(
            outcome(judge_exhaustion(&report(4, Some(End::Error(libc::ENOMEM))))),
            Outcome::Pass
        );
        assert_eq!(
            outcome(judge_exhaustion(&report(2, Some(End::Error(libc::ENOMEM))))),
            Outcome::Fail
        );
        assert_eq!(
            outcome(judge_exhaustion(&report(4, Some(End::Clean)))),
            Outcome::Fail
        );
        assert_eq!(outcome(judge_exhaustion(&report(4, None))), Outcome::Fail);
    }

    #[test]
    fn a_short_or_failed_clean_transfer_fails() {
        let r = report(2, Some(End::Clean));
        assert_eq!(outcome(judge_clean("t", &r, 200)), Outcome::Pass);
        assert_eq!(outcome(judge_clean("t", &r, 300)), Outcome::Fail);
        let r = report(2, Some(End::Error(libc::ECONNRESET)));
        assert_eq!(outcome(judge_clean("t", &r, 200)), Outcome::Fail);
        let r = report(2, None);
        assert_eq!(outcome(judge_clean("t", &r, 200)), Outcome::Fail);
    }
}
