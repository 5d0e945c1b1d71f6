//! Device-less registration (`ZCRX_REG_NODEV`): the probe, a well-formed instance (plain and
//! huge-page memory), refill ring sizing, and the answers to malformed requests.
//!
//! Each malformed request breaks exactly one thing of a well-formed one. Where the kernel's
//! contract leaves a choice between errnos (EINVAL or EFAULT for a missing pointer), the case
//! accepts the set and records which one came; a request the kernel accepts is a failure.

use anyhow::{Context, Result};
use harness::sys::uring::SetupBlockers;
use harness::sys::zcrx_ring::{
    self, nodev_spec, page_size, rq_region_size, Mapping, RegSpec, Registered, RingError,
};

use crate::case::{Area, Case, Ctx};
use crate::outcome::{fail_with, Verdict};
use crate::probes::{errno_name, io_errno, Answer, Requirement, NET_ADMIN};

/// Pages of the default area of registration cases.
pub const AREA_PAGES: usize = 32;
/// Entries of the default refill ring.
pub const RQ_ENTRIES: u32 = 64;

/// The kernel registers a zcrx instance without a device (7.1).
pub const NODEV: Requirement = Requirement {
    name: "zcrx.nodev",
    probe: probe_nodev,
};

const PROBE_WHAT: &str = "IORING_REGISTER_ZCRX_IFQ with ZCRX_REG_NODEV (16-page user area, \
                          16-entry refill ring in user memory)";

fn probe_nodev() -> Answer {
    let page = page_size();
    let (area, rq) = match (Mapping::anon(16 * page), Mapping::anon(rq_region_size(16))) {
        (Ok(a), Ok(r)) => (a, r),
        (Err(e), _) | (_, Err(e)) => return Answer::Blocked(format!("mmap for the probe: {e}")),
    };
    classify_nodev_probe(zcrx_ring::try_spec(&nodev_spec(&area, &rq, 16), false).map(drop))
}

/// The probe's answer for what a device-less registration returned.
pub fn classify_nodev_probe(r: Result<(), RingError>) -> Answer {
    match r {
        Ok(()) => Answer::Present(format!("{PROBE_WHAT}: accepted")),
        Err(RingError::Register(e)) => match e.raw_os_error() {
            Some(libc::EINVAL) => Answer::Absent(format!(
                "{PROBE_WHAT}: EINVAL (no device-less mode: the flag or the opcode is unknown)"
            )),
            Some(libc::EOPNOTSUPP) => Answer::Absent(format!(
                "{PROBE_WHAT}: EOPNOTSUPP (built without CONFIG_IO_URING_ZCRX)"
            )),
            Some(libc::EPERM) => Answer::Blocked(format!(
                "{PROBE_WHAT}: EPERM (needs CAP_NET_ADMIN in the initial user namespace)"
            )),
            _ => Answer::Blocked(format!("{PROBE_WHAT}: {}", io_errno(&e))),
        },
        Err(RingError::Setup(e)) => match e.raw_os_error() {
            Some(libc::EINVAL) => Answer::Absent(
                "io_uring_setup(SINGLE_ISSUER|DEFER_TASKRUN|CQE32|SUBMIT_ALL): EINVAL".into(),
            ),
            Some(errno) => crate::uring::probes::classify_setup(errno, &SetupBlockers::read()),
            None => Answer::Blocked(format!("io_uring_setup: {e}")),
        },
        Err(RingError::Memory(e)) => Answer::Blocked(format!("mmap for the probe: {e}")),
    }
}

pub fn cases() -> Vec<Case> {
    let req = || vec![NET_ADMIN, NODEV];
    vec![
        Case::new(
            "zcrx.nodev.register",
            Area::Zcrx,
            "a device-less instance over user memory (and huge pages where they can be had) \
             registers: an id, the refill ring's offsets, the area token, 4 KiB buffers",
            req(),
            register_ok,
        ),
        Case::new(
            "zcrx.nodev.ring_shapes",
            Area::Zcrx,
            "a device-less instance needs DEFER_TASKRUN and 32-byte CQEs (CQE32, or CQE_MIXED \
             where the kernel has it): other rings give EINVAL",
            req(),
            ring_shapes,
        ),
        Case::new(
            "zcrx.nodev.refill_sizes",
            Area::Zcrx,
            "refill ring sizes: rounded up to a power of two; 0, more than 32768 (without \
             CLAMP) or more than the region holds give EINVAL",
            req(),
            refill_sizes,
        ),
        Case::new(
            "zcrx.nodev.bad_region",
            Area::Zcrx,
            "refill region missing, NULL, zero-sized, unaligned or too small: refused \
             (EINVAL or EFAULT)",
            req(),
            bad_region,
        ),
        Case::new(
            "zcrx.nodev.bad_area",
            Area::Zcrx,
            "area NULL, zero-length, partly unmapped, unaligned or read-only: refused \
             (EFAULT for memory that cannot be pinned, EINVAL for bad sizes)",
            req(),
            bad_area,
        ),
        Case::new(
            "zcrx.nodev.bad_params",
            Area::Zcrx,
            "bad rx_buf_len, the registration in read-only memory, an interface index or \
             queue together with ZCRX_REG_NODEV: refused",
            req(),
            bad_params,
        ),
    ]
}

/// A well-formed request's memory, kept while the request is varied.
struct Base {
    area: Mapping,
    rq: Mapping,
}

impl Base {
    fn new(area_pages: usize, rq_entries: u32) -> Result<Base> {
        Ok(Base {
            area: Mapping::guarded(area_pages * page_size()).context("mmap area")?,
            rq: Mapping::anon(rq_region_size(rq_entries)).context("mmap refill region")?,
        })
    }

    fn spec(&self, rq_entries: u32) -> RegSpec {
        nodev_spec(&self.area, &self.rq, rq_entries)
    }
}

fn show(r: &Result<Registered, RingError>) -> String {
    match r {
        Ok(reg) => format!("0 (id {}, {} entries)", reg.zcrx_id, reg.rq_entries),
        Err(RingError::Register(e)) => io_errno(e),
        Err(e) => e.to_string(),
    }
}

/// One malformed request and the errnos its refusal may carry.
struct Refusal {
    label: &'static str,
    spec: RegSpec,
    clamp: bool,
    allowed: &'static [i32],
}

/// Sends each request; all must be refused with an allowed errno.
fn expect_refusals(ctx: &mut Ctx, what: &str, refusals: Vec<Refusal>) -> Result<Verdict> {
    let mut seen = Vec::new();
    let mut wrong = Vec::new();
    for r in refusals {
        let answer = zcrx_ring::try_spec(&r.spec, r.clamp);
        let shown = show(&answer);
        ctx.observe(r.label, &shown);
        match &answer {
            Err(RingError::Register(e))
                if e.raw_os_error().is_some_and(|c| r.allowed.contains(&c)) => {}
            Err(RingError::Setup(e)) | Err(RingError::Memory(e)) => {
                return Err(anyhow::anyhow!(
                    "{}: the ring could not be made: {e}",
                    r.label
                ))
            }
            _ => wrong.push(format!(
                "{}: {shown} (allowed: {})",
                r.label,
                r.allowed
                    .iter()
                    .map(|&c| errno_name(c))
                    .collect::<Vec<_>>()
                    .join(" or ")
            )),
        }
        seen.push(format!("{}: {shown}", r.label));
    }
    if !wrong.is_empty() {
        return Err(fail_with(
            format!("{what}: {}", wrong.join("; ")),
            seen.join("\n"),
        ));
    }
    Ok(Verdict::pass(seen.join(", ")))
}

const EINVAL: &[i32] = &[libc::EINVAL];
const EFAULT: &[i32] = &[libc::EFAULT];
const EINVAL_OR_EFAULT: &[i32] = &[libc::EINVAL, libc::EFAULT];

fn register_ok(ctx: &mut Ctx) -> Result<Verdict> {
    let page = page_size() as u64;
    let base = Base::new(AREA_PAGES, RQ_ENTRIES)?;
    let answer = zcrx_ring::try_spec(&base.spec(RQ_ENTRIES), false);
    ctx.observe("plain", show(&answer));
    let reg = match answer {
        Ok(reg) => reg,
        Err(e) => {
            return Err(fail_with(
                "a well-formed device-less registration was refused after the probe's was \
                 accepted",
                e.to_string(),
            ))
        }
    };
    ctx.observe("rx_buf_len", reg.rx_buf_len);
    ctx.observe("offsets", format!("{:?}", reg.offsets));
    let mut problems = Vec::new();
    if reg.rq_entries != RQ_ENTRIES {
        problems.push(format!(
            "rq_entries came back {} for a power of two {RQ_ENTRIES}",
            reg.rq_entries
        ));
    }
    if reg.area_token & zcrx_ring_offset_mask() != 0 {
        problems.push(format!(
            "the area token {:#x} has bits below IORING_ZCRX_AREA_SHIFT",
            reg.area_token
        ));
    }
    let rq_end = reg.offsets.rqes as u64 + RQ_ENTRIES as u64 * 16;
    if rq_end > base.rq.len() as u64
        || reg.offsets.head as u64 + 4 > base.rq.len() as u64
        || reg.offsets.tail as u64 + 4 > base.rq.len() as u64
        || reg.offsets.head == reg.offsets.tail
        || (reg.offsets.rqes as u64) < (reg.offsets.head.max(reg.offsets.tail) as u64 + 4)
    {
        problems.push(format!(
            "the refill ring offsets {:?} do not fit a {}-byte region",
            reg.offsets,
            base.rq.len()
        ));
    }
    if reg.rx_buf_len != 0 && reg.rx_buf_len as u64 != page {
        problems.push(format!(
            "a device-less instance reports {}-byte buffers (copies go into pages)",
            reg.rx_buf_len
        ));
    }
    // Huge pages: only where the machine has some to give.
    let huge = match Mapping::huge(2 << 20) {
        Ok(m) => {
            let rq = Mapping::anon(rq_region_size(RQ_ENTRIES)).context("mmap refill region")?;
            let r = zcrx_ring::try_spec(&nodev_spec(&m, &rq, RQ_ENTRIES), false);
            let shown = show(&r);
            ctx.observe("hugepage", &shown);
            if r.is_err() {
                problems.push(format!("a 2 MiB huge-page area was refused: {shown}"));
            }
            format!("2 MiB huge-page area: {shown}")
        }
        Err(e) => {
            ctx.observe("hugepage", format!("no huge page: {e}"));
            format!("no huge page to try ({e})")
        }
    };
    if !problems.is_empty() {
        return Err(fail_with(problems.join("; "), format!("{reg:?}")));
    }
    Ok(Verdict::pass(format!(
        "id {}, {} entries, token {:#x}, refill offsets head {} tail {} rqes {}; {huge}",
        reg.zcrx_id,
        reg.rq_entries,
        reg.area_token,
        reg.offsets.head,
        reg.offsets.tail,
        reg.offsets.rqes
    )))
}

fn ring_shapes(ctx: &mut Ctx) -> Result<Verdict> {
    use harness::sys::zcrx_ring::setup::{CQE32, CQE_MIXED, DEFER_TASKRUN, SINGLE_ISSUER};
    let base = Base::new(AREA_PAGES, RQ_ENTRIES)?;
    let spec = base.spec(RQ_ENTRIES);
    let deferred = SINGLE_ISSUER | DEFER_TASKRUN;
    let mut seen = Vec::new();
    let mut wrong = Vec::new();
    for (label, flags, must_accept) in [
        ("plain", 0, false),
        ("defer_taskrun_cqe16", deferred, false),
        ("cqe32_without_defer", CQE32, false),
        ("defer_taskrun_cqe32", deferred | CQE32, true),
        ("defer_taskrun_cqe_mixed", deferred | CQE_MIXED, true),
    ] {
        let r = zcrx_ring::try_spec_with_setup(&spec, flags);
        let shown = show(&r);
        ctx.observe(label, &shown);
        match (&r, must_accept) {
            (Ok(_), true) => {}
            (Err(RingError::Register(e)), false) if e.raw_os_error() == Some(libc::EINVAL) => {}
            // A kernel without mixed CQEs refuses the ring itself: nothing to judge.
            (Err(RingError::Setup(e)), true)
                if flags & CQE_MIXED != 0 && e.raw_os_error() == Some(libc::EINVAL) =>
            {
                seen.push(format!("{label}: no such ring here (setup EINVAL)"));
                continue;
            }
            (Err(RingError::Setup(e)), _) => {
                return Err(anyhow::anyhow!("io_uring_setup for {label}: {e}"))
            }
            _ => wrong.push(format!(
                "{label}: {shown} (want {})",
                if must_accept { "an instance" } else { "EINVAL" }
            )),
        }
        seen.push(format!("{label}: {shown}"));
    }
    if !wrong.is_empty() {
        return Err(fail_with(wrong.join("; "), seen.join("\n")));
    }
    Ok(Verdict::pass(seen.join(", ")))
}

fn zcrx_ring_offset_mask() -> u64 {
    harness::sys::zcrx_abi::AREA_OFFSET_MASK
}

fn refill_sizes(ctx: &mut Ctx) -> Result<Verdict> {
    // Rounding: 100 entries in a region sized for 128 come back as 128.
    let base = Base::new(AREA_PAGES, 128)?;
    let r = zcrx_ring::try_spec(&base.spec(100), false);
    ctx.observe("entries_100", show(&r));
    let rounded = match &r {
        Ok(reg) if reg.rq_entries == 128 => "100 entries: 128".to_string(),
        other => {
            return Err(fail_with(
                "a refill ring of 100 entries must be rounded up to 128",
                show(other),
            ))
        }
    };
    let small = Base::new(AREA_PAGES, RQ_ENTRIES)?;
    let region_entries = ((small.rq.len() - zcrx_ring::RQ_HEADER) / 16) as u32;
    let mut v = expect_refusals(
        ctx,
        "refill ring sizes",
        vec![
            Refusal {
                label: "entries_0",
                spec: small.spec(0),
                clamp: false,
                allowed: EINVAL,
            },
            Refusal {
                label: "entries_u32_max",
                spec: small.spec(u32::MAX),
                clamp: false,
                allowed: EINVAL,
            },
            Refusal {
                label: "entries_65536",
                spec: small.spec(65536),
                clamp: false,
                allowed: EINVAL,
            },
            Refusal {
                label: "entries_65536_clamped_small_region",
                spec: small.spec(65536),
                clamp: true,
                allowed: EINVAL,
            },
            Refusal {
                label: "entries_past_region",
                spec: small.spec(region_entries * 2),
                clamp: false,
                allowed: EINVAL,
            },
        ],
    )?;
    v.reason = format!("{rounded}; {}", v.reason);
    Ok(v)
}

fn bad_region(ctx: &mut Ctx) -> Result<Verdict> {
    let base = Base::new(AREA_PAGES, RQ_ENTRIES)?;
    let good = base.spec(RQ_ENTRIES);
    let region = good.region.expect("the well-formed spec has a region");
    let with = |f: &dyn Fn(&mut RegSpec)| {
        let mut s = good;
        f(&mut s);
        s
    };
    expect_refusals(
        ctx,
        "malformed refill regions",
        vec![
            Refusal {
                label: "region_ptr_null",
                spec: with(&|s| s.region = None),
                clamp: false,
                allowed: EINVAL_OR_EFAULT,
            },
            Refusal {
                label: "user_addr_null",
                spec: with(&|s| {
                    s.region = Some(harness::sys::zcrx_abi::RegionDesc {
                        user_addr: 0,
                        ..region
                    })
                }),
                clamp: false,
                allowed: EINVAL_OR_EFAULT,
            },
            Refusal {
                label: "size_0",
                spec: with(&|s| {
                    s.region = Some(harness::sys::zcrx_abi::RegionDesc { size: 0, ..region })
                }),
                clamp: false,
                allowed: EINVAL_OR_EFAULT,
            },
            Refusal {
                label: "size_unaligned",
                spec: with(&|s| {
                    s.region = Some(harness::sys::zcrx_abi::RegionDesc {
                        size: region.size - 8,
                        ..region
                    })
                }),
                clamp: false,
                allowed: EINVAL,
            },
            Refusal {
                label: "too_small",
                spec: with(&|s| s.rq_entries = RQ_ENTRIES * 2 * (region.size as u32 / 1024)),
                clamp: false,
                allowed: EINVAL,
            },
        ],
    )
}

fn bad_area(ctx: &mut Ctx) -> Result<Verdict> {
    let page = page_size() as u64;
    let base = Base::new(AREA_PAGES, RQ_ENTRIES)?;
    let good = base.spec(RQ_ENTRIES);
    let with = |f: &dyn Fn(&mut RegSpec)| {
        let mut s = good;
        f(&mut s);
        s
    };
    let ro = Mapping::read_only(AREA_PAGES * page_size()).context("mmap read-only area")?;
    let ro_addr = ro.addr();
    expect_refusals(
        ctx,
        "malformed areas",
        vec![
            Refusal {
                label: "area_ptr_null",
                spec: with(&|s| s.null_area_ptr = true),
                clamp: false,
                allowed: EINVAL_OR_EFAULT,
            },
            Refusal {
                label: "addr_null",
                spec: with(&|s| s.area.addr = 0),
                clamp: false,
                allowed: EINVAL_OR_EFAULT,
            },
            Refusal {
                label: "len_0",
                spec: with(&|s| s.area.len = 0),
                clamp: false,
                allowed: EINVAL_OR_EFAULT,
            },
            Refusal {
                label: "page_before_unmapped",
                spec: with(&|s| s.area.addr -= page),
                clamp: false,
                allowed: EFAULT,
            },
            Refusal {
                label: "page_after_unmapped",
                spec: with(&|s| s.area.len += page),
                clamp: false,
                allowed: EFAULT,
            },
            Refusal {
                label: "len_unaligned",
                spec: with(&|s| s.area.len -= page / 2),
                clamp: false,
                allowed: EINVAL_OR_EFAULT,
            },
            Refusal {
                label: "addr_unaligned",
                spec: with(&|s| {
                    s.area.addr += page / 2;
                    s.area.len /= 2;
                }),
                clamp: false,
                allowed: EINVAL_OR_EFAULT,
            },
            Refusal {
                label: "read_only",
                spec: with(&|s| s.area.addr = ro_addr),
                clamp: false,
                allowed: EFAULT,
            },
            Refusal {
                label: "token_preset",
                spec: with(&|s| s.area.rq_area_token = 1),
                clamp: false,
                allowed: EINVAL,
            },
        ],
    )
}

fn bad_params(ctx: &mut Ctx) -> Result<Verdict> {
    let base = Base::new(AREA_PAGES, RQ_ENTRIES)?;
    let good = base.spec(RQ_ENTRIES);
    let with = |f: &dyn Fn(&mut RegSpec)| {
        let mut s = good;
        f(&mut s);
        s
    };
    // A valid but non-page buffer size: device-less instances copy into pages; record.
    let two_pages = zcrx_ring::try_spec(&with(&|s| s.rx_buf_len = 2 * page_size() as u32), false);
    ctx.observe("rx_buf_len_2_pages", show(&two_pages));
    expect_refusals(
        ctx,
        "malformed parameters",
        vec![
            Refusal {
                label: "rx_buf_len_u32_max",
                spec: with(&|s| s.rx_buf_len = u32::MAX),
                clamp: false,
                allowed: &[
                    libc::EINVAL,
                    libc::ERANGE,
                    libc::EOVERFLOW,
                    libc::EOPNOTSUPP,
                ],
            },
            Refusal {
                label: "rx_buf_len_2g",
                spec: with(&|s| s.rx_buf_len = 1 << 31),
                clamp: false,
                allowed: &[
                    libc::EINVAL,
                    libc::ERANGE,
                    libc::EOVERFLOW,
                    libc::EOPNOTSUPP,
                ],
            },
            Refusal {
                label: "rx_buf_len_100",
                spec: with(&|s| s.rx_buf_len = 100),
                clamp: false,
                allowed: &[libc::EINVAL, libc::EOPNOTSUPP],
            },
            Refusal {
                label: "structs_read_only",
                spec: with(&|s| s.read_only_structs = true),
                clamp: false,
                allowed: EFAULT,
            },
            Refusal {
                label: "nodev_with_ifindex",
                spec: with(&|s| s.if_idx = 1),
                clamp: false,
                allowed: EINVAL,
            },
            Refusal {
                label: "nodev_with_queue",
                spec: with(&|s| s.if_rxq = 1),
                clamp: false,
                allowed: EINVAL,
            },
            Refusal {
                label: "unknown_flag",
                spec: with(&|s| s.flags |= 1 << 20),
                clamp: false,
                allowed: EINVAL,
            },
        ],
    )
}

#[cfg(test)]
mod tests {
    use std::io;

    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case(None, "present")]
    #[case(Some(libc::EINVAL), "absent")]
    #[case(Some(libc::EOPNOTSUPP), "absent")]
    #[case(Some(libc::EPERM), "blocked")]
    fn nodev_probe_answers_are_classified(#[case] errno: Option<i32>, #[case] want: &str) {
        let r = match errno {
            None => Ok(()),
            Some(e) => Err(RingError::Register(io::Error::from_raw_os_error(e))),
        };
        let kind = match classify_nodev_probe(r) {
            Answer::Present(_) => "present",
            Answer::Absent(_) => "absent",
            Answer::Blocked(_) => "blocked",
        };
        assert_eq!(kind, want);
    }
}
