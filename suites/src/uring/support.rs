//! What the io_uring cases share: their requirements, connected sockets on a topology, and
//! one exchange of requests checked against the two-completion model.

use std::fmt;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use harness::sockets::{self, Family, Proto};
use harness::sys::uring::{
    AuxOp, Cqe, Payload, Ring, SendOp, SendRequest, Sqe, SqeFlags, SEND_ZC_REPORT_USAGE,
};
use harness::topology::Topology;
use socket2::Socket;

use super::probes;
use crate::model::uring_notif::{self, Accepted, Issued, Kind};
use crate::outcome::fail_with;
use crate::probes::{errno_name, Requirement, NET_ADMIN, VETH};
use crate::send::flow::Path;

/// How long the kernel has to post every CQE it owes before they count as missing.
pub const COMPLETION_WAIT: Duration = Duration::from_secs(3);

/// The requirements of a case that sends on `path` (`None`: no topology needed).
pub fn requires(path: Option<Path>, extra: &[Requirement]) -> Vec<Requirement> {
    let mut r = Vec::new();
    if path.is_some() {
        r.push(NET_ADMIN);
    }
    if path == Some(Path::Pair) {
        r.push(VETH);
    }
    r.push(probes::SEND_ZC);
    r.extend_from_slice(extra);
    r
}

/// A ring for a case body (the probes already said rings work).
pub fn ring() -> Result<Ring> {
    Ring::new(64).context("io_uring_setup")
}

/// A ring of `kind` for a case body (its probe already said such rings work).
pub fn ring_of(kind: harness::sys::uring::RingKind, entries: u32) -> Result<Ring> {
    Ring::with_kind(entries, kind).with_context(|| format!("io_uring_setup ({})", kind.tag()))
}

/// Whether `req`'s probe answered present.
pub fn offered(req: Requirement) -> bool {
    matches!(req.answer(), crate::probes::Answer::Present(_))
}

/// Whether this kernel has `SENDMSG_ZC` (cases that could use it run without it otherwise).
pub fn has_sendmsg_zc() -> bool {
    matches!(
        probes::SENDMSG_ZC.answer(),
        crate::probes::Answer::Present(_)
    )
}

/// One protocol and family: `tcp4`, `udp6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conn {
    pub proto: Proto,
    pub family: Family,
}

impl Conn {
    pub const ALL: [Conn; 4] = [
        Conn {
            proto: Proto::Tcp,
            family: Family::V4,
        },
        Conn {
            proto: Proto::Tcp,
            family: Family::V6,
        },
        Conn {
            proto: Proto::Udp,
            family: Family::V4,
        },
        Conn {
            proto: Proto::Udp,
            family: Family::V6,
        },
    ];
}

impl fmt::Display for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = match self.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        };
        let v = match self.family {
            Family::V4 => "4",
            Family::V6 => "6",
        };
        write!(f, "{p}{v}")
    }
}

/// A connected sender and its receiver, across `topo`.
pub fn connect(topo: &dyn Topology, conn: Conn) -> Result<(Socket, Socket)> {
    let (s, r) = (topo.sender(), topo.receiver());
    let to = r.ip(conn.family);
    Ok(match conn.proto {
        Proto::Tcp => {
            let p = sockets::tcp_pair(&s.ns, &r.ns, to)?;
            (p.client, p.server)
        }
        Proto::Udp => {
            let p = sockets::udp_pair(&s.ns, &r.ns, to)?;
            (p.client, p.server)
        }
    })
}

/// `len` bytes of a recognisable pattern, shared by requests.
pub fn pattern(len: usize) -> Arc<[u8]> {
    (0..len)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// A request of `op` over `data[..len]` (or registered buffer 0 with `fixed`), with
/// REPORT_USAGE if `usage`.
pub fn request(
    op: SendOp,
    data: &Arc<[u8]>,
    len: usize,
    fixed: bool,
    usage: bool,
    user_data: u64,
) -> SendRequest {
    let payload = if fixed {
        Payload::Fixed {
            index: 0,
            offset: 0,
            len,
        }
    } else {
        Payload::Owned {
            data: data.clone(),
            start: 0,
            len,
        }
    };
    let mut r = SendRequest::new(op, payload, user_data);
    if usage {
        r.ioprio |= SEND_ZC_REPORT_USAGE;
    }
    r
}

/// The model's view of a request.
pub fn issued(req: &SendRequest) -> Issued {
    Issued {
        user_data: req.user_data,
        kind: if req.op.is_zc() {
            Kind::ZeroCopy {
                report_usage: req.ioprio & SEND_ZC_REPORT_USAGE != 0,
            }
        } else {
            Kind::Plain
        },
    }
}

/// One entry of a batch: a send on a socket, or a request that is not a send.
pub enum Item<'a> {
    Send(&'a Socket, SendRequest),
    Aux(AuxOp, SqeFlags, u64),
}

impl Item<'_> {
    fn issued(&self) -> Issued {
        match self {
            Item::Send(_, r) => issued(r),
            Item::Aux(_, _, ud) => Issued {
                user_data: *ud,
                kind: Kind::Plain,
            },
        }
    }

    /// The send request, if this is one.
    pub fn request(&self) -> Option<&SendRequest> {
        match self {
            Item::Send(_, r) => Some(r),
            Item::Aux(..) => None,
        }
    }
}

/// Submits `reqs` (each on its socket), waits until the kernel owes nothing or
/// [`COMPLETION_WAIT`] passes, then `linger`s for CQEs that should not come, and checks
/// the whole stream as complete. A protocol violation is a `fail` with the stream as
/// evidence.
pub fn exchange(
    ring: &mut Ring,
    reqs: &[(&Socket, SendRequest)],
    linger: Duration,
) -> Result<(Accepted, Vec<Cqe>)> {
    let items: Vec<Item<'_>> = reqs.iter().map(|(s, r)| Item::Send(s, r.clone())).collect();
    exchange_items(ring, &items, linger, |_| {})
}

/// [`exchange`] for a batch of sends and other requests, all made visible to the kernel at
/// once (so chains stay whole). `after_submit` runs right after the batch was submitted
/// (to overwrite what the kernel must already have copied).
pub fn exchange_items(
    ring: &mut Ring,
    items: &[Item<'_>],
    linger: Duration,
    after_submit: impl FnOnce(&mut Ring),
) -> Result<(Accepted, Vec<Cqe>)> {
    let issued: Vec<Issued> = items.iter().map(Item::issued).collect();
    let sqes: Vec<Sqe<'_>> = items
        .iter()
        .map(|i| match i {
            Item::Send(s, r) => Sqe::Send(s.as_fd(), r),
            Item::Aux(op, f, ud) => Sqe::Aux(*op, *f, *ud),
        })
        .collect();
    ring.push_all(&sqes).context("queueing requests")?;
    ring.submit().context("io_uring_enter (submit)")?;
    after_submit(ring);
    let mut cqes = ring
        .wait(COMPLETION_WAIT, |got| uring_notif::owed(&issued, got) == 0)
        .context("waiting for completions")?;
    if !linger.is_zero() {
        cqes.extend(ring.wait(linger, |_| false).context("lingering")?);
    }
    let accepted = uring_notif::check(&issued, &cqes, true).map_err(|v| {
        fail_with(
            v.to_string(),
            format!(
                "requests: {}\nCQEs: {}",
                describe(items.iter().filter_map(Item::request)),
                uring_notif::show(&cqes)
            ),
        )
    })?;
    Ok((accepted, cqes))
}

/// `#1 send_zc 4096 usage, #2 fixed ...`: requests as evidence shows them.
pub fn describe<'a>(reqs: impl Iterator<Item = &'a SendRequest>) -> String {
    reqs.map(|r| {
        let op = match (r.op, &r.payload) {
            (SendOp::SendZc, Payload::Fixed { index, .. }) => format!("send_zc fixed[{index}]"),
            (SendOp::SendZc, _) => "send_zc".into(),
            (SendOp::SendMsgZc, _) => "sendmsg_zc".into(),
            (SendOp::Send, _) => "send".into(),
        };
        let usage = if r.ioprio & SEND_ZC_REPORT_USAGE != 0 {
            " usage"
        } else {
            ""
        };
        format!(
            "#{} {op} {}B ioprio={:#x}{usage}",
            r.user_data,
            r.payload.len(),
            r.ioprio
        )
    })
    .collect::<Vec<_>>()
    .join(", ")
}

/// `res` as a report shows it: a byte count or an errno name.
pub fn show_res(res: i32) -> String {
    // The errnos io_uring adds to the shared table's.
    match -res {
        libc::ECANCELED => "ECANCELED (125)".into(),
        libc::ETIME => "ETIME (62)".into(),
        libc::EDESTADDRREQ => "EDESTADDRREQ (89)".into(),
        e if e > 0 => errno_name(e),
        _ => res.to_string(),
    }
}
