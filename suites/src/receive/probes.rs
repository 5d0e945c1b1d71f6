//! Does this kernel have TCP_ZEROCOPY_RECEIVE, and how much of its struct does it know?
//!
//! The struct grew over the years (16 bytes, then `inq`/`err` at 24, copy buffer and flags at
//! 40, cmsg and `reserved` at 64). Optional fields are gated by asking the kernel: an `optlen`
//! it keeps as given covers fields it knows; one it rewrites down, or refuses, does not.

use std::os::fd::AsFd;

use harness::sockets::{self, Family, Proto};
use harness::sys::socket_mmap::{self, Sharing, SocketMapping};
use harness::sys::tcp_zc_receive::{field_end, ZcCall, STRUCT_LEN};

use crate::probes::{io_errno, Answer, Requirement};

/// Asks an unconnected TCP socket for a zero-copy receive into a one-page mapping of that
/// socket, with a zeroed struct of `optlen` bytes. A kernel with the option answers 0 and keeps
/// the optlen when its struct reaches that far. The address must be a real socket mapping:
/// kernels before 5.11 look the mapping up before anything else, so a null address answers
/// EINVAL there even though the option exists. Only ENOPROTOOPT (or no mmap at all) means the
/// option is missing.
fn probe_optlen(optlen: usize, what: &str) -> Answer {
    let sock = match sockets::socket_here(Family::V4, Proto::Tcp) {
        Ok(s) => s,
        Err(e) => return Answer::Blocked(format!("cannot create a TCP socket: {e:#}")),
    };
    let page = socket_mmap::page_size();
    let map = match SocketMapping::readable(sock.as_fd(), page, Sharing::Shared) {
        Ok(m) => m,
        Err(e) => {
            return Answer::Absent(format!(
                "mmap of a TCP socket: {} (no TCP mmap, so no zero-copy receive)",
                io_errno(&e)
            ))
        }
    };
    let call = format!(
        "getsockopt(TCP_ZEROCOPY_RECEIVE) into a socket mapping with a zeroed {optlen}-byte \
         struct on an unconnected TCP socket"
    );
    match ZcCall::new(map.addr(), page as u32).call(sock.as_fd(), optlen as i32) {
        Ok(r) if r.optlen == optlen as i32 => Answer::Present(format!("{call}: 0 ({what})")),
        // A kernel that writes back more than it was given is broken, not lacking the
        // feature: the call was taken, so the cases run and receive.optlen.ladder fails it.
        Ok(r) if r.optlen > optlen as i32 => Answer::Present(format!(
            "{call}: 0 ({what}), but optlen written back as {}, larger than passed",
            r.optlen
        )),
        Ok(r) => Answer::Absent(format!(
            "{call}: 0 with optlen rewritten to {}: the kernel's struct ends before {what}",
            r.optlen
        )),
        Err(e) => Answer::Absent(format!("{call}: {}", io_errno(&e))),
    }
}

pub const ZC_RECEIVE: Requirement = Requirement {
    name: "tcp_zerocopy_receive",
    probe: || probe_optlen(field_end::RECV_SKIP_HINT, "address, length, recv_skip_hint"),
};

/// The struct has `inq` and `err` (5.6+).
pub const ZC_INQ_ERR: Requirement = Requirement {
    name: "tcp_zerocopy_receive.inq_err",
    probe: || probe_optlen(field_end::ERR, "inq and err"),
};

/// The struct has `copybuf_address`, `copybuf_len` and `flags` (5.11+).
pub const ZC_COPYBUF: Requirement = Requirement {
    name: "tcp_zerocopy_receive.copybuf",
    probe: || probe_optlen(field_end::FLAGS, "copybuf and flags"),
};

/// The struct has `msg_control`, `msg_flags` and `reserved` (5.12+).
pub const ZC_MSG_CONTROL: Requirement = Requirement {
    name: "tcp_zerocopy_receive.msg_control",
    probe: || probe_optlen(field_end::RESERVED, "msg_control and reserved"),
};

/// The largest struct this kernel takes as given, among the known sizes: the `optlen` a
/// receiver should pass.
pub fn struct_len() -> i32 {
    for (req, len) in [
        (ZC_MSG_CONTROL, STRUCT_LEN),
        (ZC_COPYBUF, field_end::FLAGS),
        (ZC_INQ_ERR, field_end::ERR),
    ] {
        if matches!(req.answer(), Answer::Present(_)) {
            return len as i32;
        }
    }
    field_end::RECV_SKIP_HINT as i32
}
