//! The ways of moving bytes that the benchmark compares, which side of the connection each
//! one is about, the copy baseline it is compared with, and whether this kernel has it.

use serde::{Deserialize, Serialize};

use crate::probes::{Answer, Requirement};

/// Which thread a mode is about: the one whose cost per byte decides its crossover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Send,
    Receive,
}

/// One way of sending or receiving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Mode {
    /// `send()`: the kernel copies the buffer.
    #[serde(rename = "send.copy")]
    SendCopy,
    /// `send(MSG_ZEROCOPY)` on an `SO_ZEROCOPY` socket, notifications read from the error
    /// queue as they come (and all of them awaited before a repetition ends).
    #[serde(rename = "send.msg_zerocopy")]
    MsgZerocopy,
    /// io_uring `IORING_OP_SEND`: a copying send, the baseline of the io_uring modes.
    #[serde(rename = "uring.send")]
    UringSend,
    /// io_uring `IORING_OP_SEND_ZC`, each request's notification awaited.
    #[serde(rename = "uring.send_zc")]
    UringSendZc,
    /// `IORING_OP_SEND_ZC` from a registered buffer (`IORING_RECVSEND_FIXED_BUF`): no page
    /// pinning per request.
    #[serde(rename = "uring.send_zc_fixed")]
    UringSendZcFixed,
    /// `recv()` into a buffer of the message size.
    #[serde(rename = "recv.copy")]
    RecvCopy,
    /// `TCP_ZEROCOPY_RECEIVE` into a socket mapping, `recv()` for what the kernel says to
    /// skip (tcp_mmap's loop).
    #[serde(rename = "recv.tcp_zerocopy")]
    TcpZerocopyReceive,
    /// io_uring zero-copy receive in its device-less mode (`ZCRX_REG_NODEV`).
    #[serde(rename = "recv.zcrx_nodev")]
    ZcrxNodev,
}

impl Mode {
    pub const ALL: [Mode; 8] = [
        Mode::SendCopy,
        Mode::MsgZerocopy,
        Mode::UringSend,
        Mode::UringSendZc,
        Mode::UringSendZcFixed,
        Mode::RecvCopy,
        Mode::TcpZerocopyReceive,
        Mode::ZcrxNodev,
    ];

    /// The stable name used in reports and tables.
    pub fn id(self) -> &'static str {
        match self {
            Mode::SendCopy => "send.copy",
            Mode::MsgZerocopy => "send.msg_zerocopy",
            Mode::UringSend => "uring.send",
            Mode::UringSendZc => "uring.send_zc",
            Mode::UringSendZcFixed => "uring.send_zc_fixed",
            Mode::RecvCopy => "recv.copy",
            Mode::TcpZerocopyReceive => "recv.tcp_zerocopy",
            Mode::ZcrxNodev => "recv.zcrx_nodev",
        }
    }

    pub fn side(self) -> Side {
        match self {
            Mode::RecvCopy | Mode::TcpZerocopyReceive | Mode::ZcrxNodev => Side::Receive,
            _ => Side::Send,
        }
    }

    /// The copying mode a zero-copy mode is compared with; `None` for the baselines.
    pub fn baseline(self) -> Option<Mode> {
        match self {
            Mode::MsgZerocopy => Some(Mode::SendCopy),
            Mode::UringSendZc | Mode::UringSendZcFixed => Some(Mode::UringSend),
            Mode::TcpZerocopyReceive | Mode::ZcrxNodev => Some(Mode::RecvCopy),
            Mode::SendCopy | Mode::UringSend | Mode::RecvCopy => None,
        }
    }

    pub fn is_zero_copy(self) -> bool {
        self.baseline().is_some()
    }

    /// What the kernel must have for this mode; the first answer that is not `Present`
    /// says why the mode is not measured.
    pub fn requirements(self, udp: bool) -> Vec<Requirement> {
        use crate::send::flow::{SO_ZEROCOPY_TCP, SO_ZEROCOPY_UDP};
        use crate::uring::probes::{RING, SEND_ZC};
        match self {
            Mode::SendCopy | Mode::RecvCopy => vec![],
            Mode::MsgZerocopy if udp => vec![SO_ZEROCOPY_UDP],
            Mode::MsgZerocopy => vec![SO_ZEROCOPY_TCP],
            Mode::UringSend => vec![RING],
            Mode::UringSendZc | Mode::UringSendZcFixed => vec![RING, SEND_ZC],
            Mode::TcpZerocopyReceive => {
                vec![SO_ZEROCOPY_TCP, crate::receive::probes::ZC_RECEIVE]
            }
            Mode::ZcrxNodev => vec![ZCRX_NODEV],
        }
    }

    /// `Ok(())` when every requirement is present, else the probe's name and answer.
    pub fn available(self, udp: bool) -> Result<(), String> {
        for r in self.requirements(udp) {
            match r.answer() {
                Answer::Present(_) => {}
                Answer::Absent(d) => return Err(format!("absent (probe {}: {d})", r.name)),
                Answer::Blocked(d) => return Err(format!("blocked (probe {}: {d})", r.name)),
            }
        }
        Ok(())
    }
}

/// The kernel registers a device-less zcrx queue: `IORING_REGISTER_ZCRX_IFQ` with
/// `ZCRX_REG_NODEV`, interface 0, queue 0, on a `DEFER_TASKRUN|CQE32` ring.
pub const ZCRX_NODEV: Requirement = Requirement {
    name: "zcrx.nodev",
    probe: probe_zcrx_nodev,
};

fn probe_zcrx_nodev() -> Answer {
    use harness::sys::zcrx::{try_register_with_flags, RingShape, ZcrxError, ZCRX_REG_NODEV};
    let what = "IORING_REGISTER_ZCRX_IFQ with ZCRX_REG_NODEV (interface 0, queue 0)";
    classify_nodev(
        what,
        try_register_with_flags(RingShape::Required, 0, 0, ZCRX_REG_NODEV).map_err(|e| match e {
            ZcrxError::Setup(e) => (true, e),
            ZcrxError::Register(e) => (false, e),
        }),
    )
}

/// The answer for what a device-less registration returned (`(true, e)`: the ring itself
/// could not be set up).
pub fn classify_nodev(what: &str, r: Result<(), (bool, std::io::Error)>) -> Answer {
    use crate::probes::io_errno;
    match r {
        Ok(()) => Answer::Present(format!("{what}: 0")),
        Err((true, e)) => Answer::Absent(format!(
            "io_uring_setup(SINGLE_ISSUER|DEFER_TASKRUN|CQE32): {}",
            io_errno(&e)
        )),
        Err((false, e)) => match e.raw_os_error() {
            Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) | Some(libc::ENODEV) => {
                Answer::Absent(format!(
                    "{what}: {} (the kernel has no device-less zcrx)",
                    io_errno(&e)
                ))
            }
            Some(libc::EPERM) => Answer::Blocked(format!(
                "{what}: EPERM (needs CAP_NET_ADMIN in the initial user namespace)"
            )),
            _ => Answer::Blocked(format!("{what}: {}", io_errno(&e))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_zero_copy_mode_has_a_copying_baseline_on_its_side() {
        for m in Mode::ALL {
            if let Some(b) = m.baseline() {
                assert_eq!(b.side(), m.side(), "{m:?}");
                assert!(b.baseline().is_none(), "{b:?} is itself a baseline");
            }
        }
    }

    #[test]
    fn ids_match_the_serialised_names() {
        for m in Mode::ALL {
            assert_eq!(serde_json::to_value(m).unwrap(), m.id());
        }
    }

    #[test]
    fn nodev_answers_are_classified() {
        let e = |n| std::io::Error::from_raw_os_error(n);
        assert!(matches!(classify_nodev("x", Ok(())), Answer::Present(_)));
        assert!(matches!(
            classify_nodev("x", Err((false, e(libc::EINVAL)))),
            Answer::Absent(_)
        ));
        assert!(matches!(
            classify_nodev("x", Err((false, e(libc::EPERM)))),
            Answer::Blocked(_)
        ));
        assert!(matches!(
            classify_nodev("x", Err((true, e(libc::EINVAL)))),
            Answer::Absent(_)
        ));
    }
}
