//! Probes of io_uring zero-copy send: can a ring be made here, does the kernel know the
//! opcodes (`IORING_REGISTER_PROBE`), does it accept `IORING_SEND_ZC_REPORT_USAGE`.
//!
//! A ring that cannot be made is classified by why: `kernel.io_uring_disabled` or a seccomp
//! filter make it `Blocked` (the environment), a kernel built without io_uring `Absent`.

use std::os::fd::AsFd;
use std::time::Duration;

use harness::sys::uring::{
    Mapping, Payload, Ring, RingKind, SendOp, SendRequest, SetupBlockers, OP_SENDMSG_ZC,
    OP_SEND_ZC, SEND_ZC_REPORT_USAGE,
};
use socket2::{Domain, Socket, Type};

use crate::probes::{errno_name, Answer, Requirement};

/// io_uring_setup works here.
pub const RING: Requirement = Requirement {
    name: "io_uring.ring",
    probe: || match ring() {
        Ok(_) => Answer::Present("io_uring_setup: a ring was created".into()),
        Err(a) => a,
    },
};

/// `IORING_OP_SEND_ZC` (6.0).
pub const SEND_ZC: Requirement = Requirement {
    name: "io_uring.send_zc",
    probe: || opcode(OP_SEND_ZC, "IORING_OP_SEND_ZC"),
};

/// `IORING_OP_SENDMSG_ZC` (6.1).
pub const SENDMSG_ZC: Requirement = Requirement {
    name: "io_uring.sendmsg_zc",
    probe: || opcode(OP_SENDMSG_ZC, "IORING_OP_SENDMSG_ZC"),
};

/// `IORING_SEND_ZC_REPORT_USAGE` (6.2) is accepted on `SEND_ZC`.
pub const REPORT_USAGE: Requirement = Requirement {
    name: "io_uring.report_usage",
    probe: report_usage,
};

/// `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN` rings (6.1).
pub const DEFER_TASKRUN: Requirement = Requirement {
    name: "io_uring.defer_taskrun",
    probe: || ring_kind(RingKind::DeferTaskrun),
};

/// `IORING_SETUP_SQPOLL` rings, where the environment allows a polling thread.
pub const SQPOLL: Requirement = Requirement {
    name: "io_uring.sqpoll",
    probe: || ring_kind(RingKind::Sqpoll),
};

/// `IORING_SEND_VECTORIZED` (6.17) is accepted on `SEND_ZC`.
pub const SEND_VECTORIZED: Requirement = Requirement {
    name: "io_uring.send_vectorized",
    probe: || {
        flag_probe(
            "SEND_ZC with IORING_SEND_VECTORIZED",
            SendOp::SendZc,
            Payload::Vectored {
                data: vec![0u8; 2].into(),
                segments: vec![(0, 1), (1, 1)],
            },
        )
    },
};

/// `SENDMSG_ZC` with `IORING_RECVSEND_FIXED_BUF` (registered buffers imported through an
/// iovec array, 6.15).
pub const SENDMSG_ZC_FIXED: Requirement = Requirement {
    name: "io_uring.sendmsg_zc_fixed",
    probe: || match opcode(OP_SENDMSG_ZC, "IORING_OP_SENDMSG_ZC") {
        Answer::Present(_) => flag_probe(
            "SENDMSG_ZC with IORING_RECVSEND_FIXED_BUF",
            SendOp::SendMsgZc,
            Payload::FixedVectored {
                index: 0,
                segments: vec![(0, 1)],
            },
        ),
        other => other,
    },
};

/// Environment: a 2 MiB hugetlb page can be mapped (`vm.nr_hugepages` > 0).
pub const HUGETLB: Requirement = Requirement {
    name: "env.hugetlb",
    probe: || match Mapping::new(2 << 20, true) {
        Ok(_) => Answer::Present("mmap(MAP_HUGETLB, 2 MiB) succeeded".into()),
        Err(e) => Answer::Blocked(format!(
            "mmap(MAP_HUGETLB, 2 MiB): {} (no huge pages reserved: vm.nr_hugepages is {})",
            crate::probes::io_errno(&e),
            std::fs::read_to_string("/proc/sys/vm/nr_hugepages")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into())
        )),
    },
};

/// Whether a ring of `kind` can be created: EINVAL means the kernel lacks the setup flags,
/// anything else (EPERM for SQPOLL) that the environment refuses it.
pub fn ring_kind(kind: RingKind) -> Answer {
    if let Err(a) = ring() {
        return a;
    }
    match Ring::with_kind(8, kind) {
        Ok(_) => Answer::Present(format!("io_uring_setup with the {} flags: ok", kind.tag())),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Answer::Absent(format!(
            "io_uring_setup with the {} flags: EINVAL (flags unknown to this kernel)",
            kind.tag()
        )),
        Err(e) => Answer::Blocked(format!(
            "io_uring_setup with the {} flags: {}",
            kind.tag(),
            crate::probes::io_errno(&e)
        )),
    }
}

/// Sends `payload` with `op` from an unconnected UDP socket: a kernel that accepts the form
/// fails the send itself (EDESTADDRREQ, nothing leaves the host); one that does not refuses
/// it with EINVAL.
fn flag_probe(what: &str, op: SendOp, payload: Payload) -> Answer {
    match opcode(OP_SEND_ZC, "IORING_OP_SEND_ZC") {
        Answer::Present(_) => {}
        other => return other,
    }
    let mut ring = match ring() {
        Ok(r) => r,
        Err(a) => return a,
    };
    if payload.is_fixed() {
        if let Err(e) = ring.register_buffers(&[4096]) {
            return Answer::Blocked(format!("cannot register a buffer: {e}"));
        }
    }
    let sock = match Socket::new(Domain::IPV4, Type::DGRAM, None) {
        Ok(s) => s,
        Err(e) => return Answer::Blocked(format!("cannot create a UDP socket: {e}")),
    };
    let req = SendRequest::new(op, payload, 1);
    if let Err(e) = ring.push(sock.as_fd(), &req) {
        return Answer::Blocked(format!("cannot queue the request: {e}"));
    }
    let cqes = match ring.wait(Duration::from_secs(2), |c| {
        crate::model::uring_notif::owed(
            &[crate::model::uring_notif::Issued {
                user_data: 1,
                kind: crate::model::uring_notif::Kind::ZeroCopy {
                    report_usage: false,
                },
            }],
            c,
        ) == 0
    }) {
        Ok(c) => c,
        Err(e) => return Answer::Blocked(format!("waiting for the completion: {e}")),
    };
    let Some(first) = cqes.iter().find(|c| !c.notif()) else {
        return Answer::Blocked("no completion within 2 s".into());
    };
    let errno = match -first.res {
        libc::EDESTADDRREQ => "EDESTADDRREQ (89)".to_string(),
        e => errno_name(e),
    };
    let what = format!("{what} on an unconnected UDP socket: {errno}");
    if first.res == -libc::EINVAL {
        Answer::Absent(format!("{what} (refused)"))
    } else {
        Answer::Present(format!("{what} (accepted)"))
    }
}

/// A ring, or the answer that explains why there is none.
pub fn ring() -> Result<Ring, Answer> {
    Ring::new(8).map_err(|e| classify_setup(e.raw_os_error().unwrap_or(0), &SetupBlockers::read()))
}

/// Why `io_uring_setup` failed with `errno`, given what procfs says about the sysctl and
/// seccomp.
pub fn classify_setup(errno: i32, b: &SetupBlockers) -> Answer {
    let what = format!("io_uring_setup: {}", errno_name(errno));
    let seccomp = b.seccomp_mode.is_some_and(|m| m > 0);
    match errno {
        libc::EPERM => Answer::Blocked(match b.io_uring_disabled {
            Some(2) => format!("{what}: kernel.io_uring_disabled=2 disables io_uring for everyone"),
            Some(1) => format!(
                "{what}: kernel.io_uring_disabled=1 and this process is not in kernel.io_uring_group"
            ),
            _ if seccomp => format!("{what}: a seccomp filter refuses io_uring"),
            _ => format!("{what}: refused by a security policy (LSM or container)"),
        }),
        libc::ENOSYS if seccomp => Answer::Blocked(format!(
            "{what} with a seccomp filter active: the filter hides io_uring"
        )),
        libc::ENOSYS => Answer::Absent(format!("{what}: the kernel is built without io_uring")),
        libc::ENOMEM => Answer::Blocked(format!(
            "{what}: RLIMIT_MEMLOCK too small for a ring on this kernel"
        )),
        _ => Answer::Blocked(what),
    }
}

fn opcode(op: u8, name: &str) -> Answer {
    let ring = match ring() {
        Ok(r) => r,
        Err(a) => return a,
    };
    match ring.supports(op) {
        Ok(true) => Answer::Present(format!("IORING_REGISTER_PROBE: {name} ({op}) supported")),
        Ok(false) => Answer::Absent(format!(
            "IORING_REGISTER_PROBE: {name} ({op}) not supported"
        )),
        Err(e) => Answer::Absent(format!(
            "IORING_REGISTER_PROBE itself failed ({}), so no {name} either",
            crate::probes::io_errno(&e)
        )),
    }
}

/// Sends one byte with REPORT_USAGE from an unconnected UDP socket: a kernel that knows the
/// flag fails the send itself (EDESTADDRREQ, nothing leaves the host); one that does not
/// refuses the flag with EINVAL.
fn report_usage() -> Answer {
    match opcode(OP_SEND_ZC, "IORING_OP_SEND_ZC") {
        Answer::Present(_) => {}
        other => return other,
    }
    let mut ring = match ring() {
        Ok(r) => r,
        Err(a) => return a,
    };
    let sock = match Socket::new(Domain::IPV4, Type::DGRAM, None) {
        Ok(s) => s,
        Err(e) => return Answer::Blocked(format!("cannot create a UDP socket: {e}")),
    };
    let mut req = SendRequest::new(
        SendOp::SendZc,
        Payload::Owned {
            data: vec![0u8; 1].into(),
            start: 0,
            len: 1,
        },
        1,
    );
    req.ioprio = SEND_ZC_REPORT_USAGE;
    if let Err(e) = ring.push(sock.as_fd(), &req) {
        return Answer::Blocked(format!("cannot queue a SEND_ZC: {e}"));
    }
    let cqes = match ring.wait(Duration::from_secs(2), |c| c.iter().any(|c| !c.notif())) {
        Ok(c) => c,
        Err(e) => return Answer::Blocked(format!("waiting for the SEND_ZC completion: {e}")),
    };
    let Some(first) = cqes.iter().find(|c| !c.notif()) else {
        return Answer::Blocked("no completion for a SEND_ZC within 2 s".into());
    };
    // EDESTADDRREQ is the expected answer but not in the shared errno table.
    let errno = match -first.res {
        libc::EDESTADDRREQ => "EDESTADDRREQ (89)".to_string(),
        e => errno_name(e),
    };
    let what =
        format!("SEND_ZC with IORING_SEND_ZC_REPORT_USAGE on an unconnected UDP socket: {errno}");
    if first.res == -libc::EINVAL {
        Answer::Absent(format!("{what} (the flag is refused)"))
    } else {
        Answer::Present(format!("{what} (the flag is accepted)"))
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn blockers(disabled: Option<u32>, seccomp: Option<u32>) -> SetupBlockers {
        SetupBlockers {
            io_uring_disabled: disabled,
            seccomp_mode: seccomp,
        }
    }

    #[rstest]
    #[case(libc::EPERM, Some(2), Some(0), "blocked", "io_uring_disabled=2")]
    #[case(libc::EPERM, Some(1), Some(0), "blocked", "io_uring_group")]
    #[case(libc::EPERM, Some(0), Some(2), "blocked", "seccomp")]
    #[case(libc::EPERM, None, Some(0), "blocked", "security policy")]
    #[case(libc::ENOSYS, Some(0), Some(2), "blocked", "seccomp")]
    #[case(libc::ENOSYS, None, Some(0), "absent", "without io_uring")]
    #[case(libc::ENOMEM, None, None, "blocked", "MEMLOCK")]
    fn setup_errors_are_classified(
        #[case] errno: i32,
        #[case] disabled: Option<u32>,
        #[case] seccomp: Option<u32>,
        #[case] answer: &str,
        #[case] detail: &str,
    ) {
        let a = classify_setup(errno, &blockers(disabled, seccomp));
        let kind = match &a {
            Answer::Present(_) => "present",
            Answer::Absent(_) => "absent",
            Answer::Blocked(_) => "blocked",
        };
        assert_eq!(kind, answer, "{a:?}");
        assert!(a.detail().contains(detail), "{a:?}");
    }
}
