//! The `zcrx` area: io_uring zero-copy receive (6.15), SEMANTICS.md R10.2.
//!
//! Where the kernel has the device-less mode (`ZCRX_REG_NODEV`, 7.1; probed by registering
//! one), the area runs end to end without a NIC: [`register`] (registration and its error
//! answers), [`recv`] (RECV_ZC over loopback and veth against the area model), [`lifecycle`]
//! and [`property`]. The hardware path below stays detection:
//!
//! Registering an interface queue (`IORING_REGISTER_ZCRX_IFQ`) needs CAP_NET_ADMIN, a ring
//! with `DEFER_TASKRUN` and 32-byte CQEs, and a NIC with header split, flow steering and
//! queue restart. The kernel checks them in that order before it touches hardware, so the
//! suite can tell a kernel without zcrx (the register opcode unknown: EINVAL on a ring set
//! up as required; built without it: EOPNOTSUPP before the interface is even looked up)
//! from one whose devices here cannot (EOPNOTSUPP on loopback and veth), and can check the
//! ring requirement itself.

pub mod facts;

use anyhow::Result;
use harness::sys::uring::SetupBlockers;
use harness::sys::zcrx::{self, RingShape, ZcrxError};
use harness::topology::{Loopback, Pair, PairConfig};
use harness::NetNs;

use crate::case::{Area, Case, Ctx};
use crate::outcome::{fail, skipped, Verdict};
use crate::probes::{errno_name, io_errno, Answer, Requirement, NET_ADMIN, VETH};

pub mod lifecycle;
pub mod property;
pub mod recv;
pub mod register;
pub mod transfer;

/// An interface index no namespace has: the kernel looks it up only after every check that
/// needs no hardware.
const BOGUS_IFINDEX: u32 = 0x7fff_0000;

/// The kernel has zcrx: a registration on a ring set up as required reaches the interface
/// lookup (ENODEV for a missing interface).
pub const REGISTER: Requirement = Requirement {
    name: "zcrx.register",
    probe: || classify_probe(zcrx::try_register(RingShape::Required, BOGUS_IFINDEX, 0)),
};

/// The probe's answer for what a registration with a missing interface returned.
pub fn classify_probe(r: Result<(), ZcrxError>) -> Answer {
    let what = "IORING_REGISTER_ZCRX_IFQ (DEFER_TASKRUN|CQE32 ring, missing interface)";
    match r {
        Err(ZcrxError::Register(e)) => match e.raw_os_error() {
            Some(libc::ENODEV) => Answer::Present(format!(
                "{what}: ENODEV (the checks before the device passed)"
            )),
            Some(libc::EINVAL) => Answer::Absent(format!(
                "{what}: EINVAL (the register opcode is unknown to this kernel)"
            )),
            Some(libc::EOPNOTSUPP) => Answer::Absent(format!(
                "{what}: EOPNOTSUPP before any interface lookup (built without \
                 CONFIG_IO_URING_ZCRX)"
            )),
            Some(libc::EPERM) => Answer::Blocked(format!(
                "{what}: EPERM (needs CAP_NET_ADMIN in the initial user namespace)"
            )),
            _ => Answer::Blocked(format!("{what}: {}", io_errno(&e))),
        },
        Err(ZcrxError::Setup(e)) => match e.raw_os_error() {
            Some(libc::EINVAL) => Answer::Absent(
                "io_uring_setup(SINGLE_ISSUER|DEFER_TASKRUN|CQE32): EINVAL (the ring zcrx \
                 needs cannot be made)"
                    .into(),
            ),
            Some(errno) => crate::uring::probes::classify_setup(errno, &SetupBlockers::read()),
            None => Answer::Blocked(format!("io_uring_setup: {e}")),
        },
        Ok(()) => Answer::Present(format!("{what}: accepted")),
    }
}

pub fn cases() -> Vec<Case> {
    let mut all = hardware_cases();
    all.extend(register::cases());
    all.extend(recv::cases());
    all.extend(lifecycle::cases());
    all.extend(property::cases());
    all
}

/// The hardware path: detection only.
fn hardware_cases() -> Vec<Case> {
    vec![
        Case::new(
            "zcrx.register.lo",
            Area::Zcrx,
            "registering loopback's queue: the kernel has zcrx but the device cannot \
             (EOPNOTSUPP: skipped, needs a NIC with header split)",
            vec![NET_ADMIN, REGISTER],
            |ctx| register_on(ctx, false),
        ),
        Case::new(
            "zcrx.register.veth",
            Area::Zcrx,
            "registering a veth queue: the kernel has zcrx but the device cannot \
             (EOPNOTSUPP: skipped, needs a NIC with header split)",
            vec![NET_ADMIN, VETH, REGISTER],
            |ctx| register_on(ctx, true),
        ),
        Case::new(
            "zcrx.ring_flags",
            Area::Zcrx,
            "registration needs DEFER_TASKRUN and CQE32: a ring without either gives EINVAL",
            vec![REGISTER],
            ring_flags,
        ),
    ]
}

fn show(r: &Result<(), ZcrxError>) -> String {
    match r {
        Ok(()) => "0".into(),
        Err(ZcrxError::Setup(e)) => format!("io_uring_setup: {}", io_errno(e)),
        Err(ZcrxError::Register(e)) => io_errno(e),
    }
}

/// What a registration on a device without zcrx support answered, as an outcome.
pub fn classify_register(r: Result<(), ZcrxError>, device: &str) -> Result<Verdict> {
    match r {
        Ok(()) => Ok(Verdict::pass(format!(
            "the kernel attached receive queue 0 of {device}"
        ))),
        Err(ZcrxError::Register(e)) => match e.raw_os_error() {
            Some(libc::EOPNOTSUPP) => Err(skipped(format!(
                "needs a NIC with header split, flow steering and queue restart: \
                 IORING_REGISTER_ZCRX_IFQ on {device} answered EOPNOTSUPP (the kernel has \
                 zcrx; this device cannot)"
            ))),
            Some(libc::EPERM) => Err(skipped(
                "zcrx needs CAP_NET_ADMIN in the initial user namespace: EPERM".to_string(),
            )),
            Some(errno) => Err(anyhow::anyhow!(
                "IORING_REGISTER_ZCRX_IFQ on {device} answered {}, which the suite cannot \
                 classify",
                errno_name(errno)
            )),
            None => Err(anyhow::anyhow!("IORING_REGISTER_ZCRX_IFQ: {e}")),
        },
        Err(ZcrxError::Setup(e)) => Err(anyhow::anyhow!(
            "io_uring_setup of the ring zcrx needs failed after the probe made one: {e}"
        )),
    }
}

fn register_on(ctx: &mut Ctx, veth: bool) -> Result<Verdict> {
    let attempt = |ns: &NetNs, ifname: &str| -> Result<Result<(), ZcrxError>> {
        let idx = harness::netlink::link_index(ns, ifname)?;
        ns.run(move || zcrx::try_register(RingShape::Required, idx, 0))
    };
    let (r, device) = if veth {
        let pair = Pair::new(PairConfig::default())?;
        (attempt(&pair.a.ns, &pair.a.ifname)?, "veth")
    } else {
        let lo = Loopback::new(None)?;
        (attempt(&lo.host.ns, "lo")?, "loopback")
    };
    ctx.observe("register", show(&r));
    classify_register(r, device)
}

/// Each ring lacking a requirement is refused with EINVAL, where the required ring reaches
/// the interface lookup (the probe's ENODEV).
fn ring_flags(ctx: &mut Ctx) -> Result<Verdict> {
    let mut seen = Vec::new();
    for (label, shape) in [
        ("plain", RingShape::Plain),
        ("defer_taskrun_only", RingShape::DeferTaskrunOnly),
        ("cqe32_only", RingShape::Cqe32Only),
    ] {
        let r = zcrx::try_register(shape, BOGUS_IFINDEX, 0);
        let shown = show(&r);
        ctx.observe(label, &shown);
        match r {
            Err(ZcrxError::Register(e)) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(ZcrxError::Setup(e)) => {
                return Err(anyhow::anyhow!(
                    "io_uring_setup of a {label} ring failed: {}",
                    io_errno(&e)
                ))
            }
            _ => {
                return Err(fail(format!(
                    "registration on a {label} ring (missing DEFER_TASKRUN or CQE32) answered \
                     {shown} instead of EINVAL"
                )))
            }
        }
        seen.push(format!("{label}: EINVAL"));
    }
    Ok(Verdict::pass(format!(
        "{}; the required ring reaches the device lookup",
        seen.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use std::io;

    use rstest::rstest;

    use super::*;
    use crate::outcome::{verdict_of_error, Outcome};

    fn reg(errno: i32) -> Result<(), ZcrxError> {
        Err(ZcrxError::Register(io::Error::from_raw_os_error(errno)))
    }

    #[rstest]
    #[case(libc::ENODEV, "present")]
    #[case(libc::EINVAL, "absent")]
    #[case(libc::EOPNOTSUPP, "absent")]
    #[case(libc::EPERM, "blocked")]
    fn probe_answers_are_classified(#[case] errno: i32, #[case] want: &str) {
        let kind = match classify_probe(reg(errno)) {
            Answer::Present(_) => "present",
            Answer::Absent(_) => "absent",
            Answer::Blocked(_) => "blocked",
        };
        assert_eq!(kind, want);
    }

    #[rstest]
    #[case(libc::EOPNOTSUPP, Outcome::Skipped, "header split")]
    #[case(libc::EPERM, Outcome::Skipped, "CAP_NET_ADMIN")]
    #[case(libc::EINVAL, Outcome::Error, "cannot classify")]
    fn register_answers_are_classified(
        #[case] errno: i32,
        #[case] outcome: Outcome,
        #[case] reason: &str,
    ) {
        let v = match classify_register(reg(errno), "veth") {
            Ok(v) => v,
            Err(e) => verdict_of_error(e),
        };
        assert_eq!(v.outcome, outcome, "{v:?}");
        assert!(v.reason.contains(reason), "{v:?}");
    }
}
