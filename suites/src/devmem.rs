//! The `devmem` area: detection of devmem TCP (6.12), SEMANTICS.md R10.1.
//!
//! Receiving into device memory needs a NIC with header split, flow steering and queue
//! restart, plus a dma-buf exporter; no veth or loopback has them. What the suite can learn
//! without hardware is what the kernel offers (the `netdev` generic-netlink family and its
//! bind-rx operation, the `SO_DEVMEM_DONTNEED` socket option), how it answers a bind on a
//! device that cannot do it, and the argument checks of `SO_DEVMEM_DONTNEED`. Each answer is
//! classified by its errno: the kernel lacks it (`unsupported`), this device or these
//! privileges cannot (`skipped`), or the kernel broke a rule (`fail`).

pub mod facts;

use std::os::fd::{AsFd, AsRawFd};

use anyhow::{Context, Result};
use harness::sys::genl::{self, Nack, NETDEV_CMD_BIND_RX, NETDEV_CMD_BIND_TX};
use harness::sys::sockopt;
use harness::sys::udmabuf::{self, UdmabufError};
use harness::topology::{Loopback, Pair, PairConfig};
use harness::NetNs;
use socket2::{Domain, Socket, Type};

use crate::case::{Area, Case, Ctx};
use crate::outcome::{expect, fail, fail_with, skipped, Verdict};
use crate::probes::{errno_name, io_errno, Answer, Requirement, NET_ADMIN, VETH};

/// `SO_DEVMEM_DONTNEED` (asm-generic; the `libc` crate does not have it yet).
pub const SO_DEVMEM_DONTNEED: i32 = 80;
/// Most tokens one `SO_DEVMEM_DONTNEED` call takes (`MAX_DONTNEED_TOKENS`).
const MAX_TOKENS: usize = 128;
/// `sizeof(struct dmabuf_token)`: `token_start` and `token_count`, two u32.
const TOKEN_LEN: usize = 8;
/// An interface index no namespace of the suite has.
const BOGUS_IFINDEX: u32 = 0x7fff_0000;

/// The controller knows the `netdev` family (6.3).
pub const NETDEV_FAMILY: Requirement = Requirement {
    name: "devmem.netdev_family",
    probe: || match genl::netdev_family() {
        Ok(Some(f)) => Answer::Present(format!(
            "CTRL_CMD_GETFAMILY netdev: id {}, {} operations",
            f.id,
            f.ops.len()
        )),
        Ok(None) => Answer::Absent("CTRL_CMD_GETFAMILY netdev: ENOENT (no such family)".into()),
        Err(e) => Answer::Blocked(format!(
            "generic netlink unusable: CTRL_CMD_GETFAMILY netdev: {}",
            io_errno(&e)
        )),
    },
};

/// The `netdev` family registers `NETDEV_CMD_BIND_RX` (6.12).
pub const BIND_RX_OP: Requirement = Requirement {
    name: "devmem.bind_rx_op",
    probe: || match genl::netdev_family() {
        Ok(Some(f)) if f.has_op(NETDEV_CMD_BIND_RX) => Answer::Present(format!(
            "the netdev family lists bind-rx ({NETDEV_CMD_BIND_RX})"
        )),
        Ok(Some(f)) => Answer::Absent(format!(
            "the netdev family lists no bind-rx ({NETDEV_CMD_BIND_RX}) among ops {:?}",
            f.ops
        )),
        Ok(None) => Answer::Absent("CTRL_CMD_GETFAMILY netdev: ENOENT (no such family)".into()),
        Err(e) => Answer::Blocked(format!(
            "generic netlink unusable: CTRL_CMD_GETFAMILY netdev: {}",
            io_errno(&e)
        )),
    },
};

/// The `netdev` family registers `NETDEV_CMD_BIND_TX` (6.15).
pub const BIND_TX_OP: Requirement = Requirement {
    name: "devmem.bind_tx_op",
    probe: || match genl::netdev_family() {
        Ok(Some(f)) if f.has_op(NETDEV_CMD_BIND_TX) => Answer::Present(format!(
            "the netdev family lists bind-tx ({NETDEV_CMD_BIND_TX})"
        )),
        Ok(Some(f)) => Answer::Absent(format!(
            "the netdev family lists no bind-tx ({NETDEV_CMD_BIND_TX}) among ops {:?}",
            f.ops
        )),
        Ok(None) => Answer::Absent("CTRL_CMD_GETFAMILY netdev: ENOENT (no such family)".into()),
        Err(e) => Answer::Blocked(format!(
            "generic netlink unusable: CTRL_CMD_GETFAMILY netdev: {}",
            io_errno(&e)
        )),
    },
};

/// Pages of the dma-buf the bind cases offer.
const DMABUF_PAGES: usize = 16;

/// A real dma-buf can be made here (`/dev/udmabuf`, the `udmabuf` module).
pub const UDMABUF: Requirement = Requirement {
    name: "devmem.udmabuf",
    probe: || classify_udmabuf(udmabuf::create(DMABUF_PAGES * 4096).map(drop)),
};

/// The probe's answer for an attempt to make a dma-buf.
pub fn classify_udmabuf(r: Result<(), UdmabufError>) -> Answer {
    match r {
        Ok(()) => Answer::Present(format!(
            "UDMABUF_CREATE of a {DMABUF_PAGES}-page sealed memfd: a dma-buf"
        )),
        Err(UdmabufError::Device(e)) if e.raw_os_error() == Some(libc::ENOENT) => {
            Answer::Blocked(format!(
                "needs the udmabuf module (CONFIG_UDMABUF): {} does not exist",
                udmabuf::DEVICE
            ))
        }
        Err(e) => Answer::Blocked(format!("needs a usable udmabuf module: {e}")),
    }
}

/// The kernel knows `SO_DEVMEM_DONTNEED` (6.12): anything but ENOPROTOOPT.
pub const DONTNEED: Requirement = Requirement {
    name: "devmem.dontneed",
    probe: || {
        let s = match Socket::new(Domain::IPV4, Type::STREAM, None) {
            Ok(s) => s,
            Err(e) => return Answer::Blocked(format!("cannot create a TCP socket: {e}")),
        };
        let what = "setsockopt(SO_DEVMEM_DONTNEED, 1 token) on a TCP socket";
        match dontneed(&s, &tokens(1)) {
            Ok(()) => Answer::Present(format!("{what}: 0")),
            Err(e) if e == libc::ENOPROTOOPT => {
                Answer::Absent(format!("{what}: ENOPROTOOPT (unknown option)"))
            }
            Err(e) => Answer::Present(format!("{what}: {} (the option is known)", errno_name(e))),
        }
    },
};

pub fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "devmem.bind_rx.lo",
            Area::Devmem,
            "bind-rx on loopback: the kernel has devmem but the device cannot (EOPNOTSUPP: \
             skipped, needs a NIC with header split)",
            vec![NET_ADMIN, NETDEV_FAMILY, BIND_RX_OP],
            |ctx| bind_rx_on(ctx, Device::Loopback),
        ),
        Case::new(
            "devmem.bind_rx.veth",
            Area::Devmem,
            "bind-rx on a veth: the kernel has devmem but the device cannot (EOPNOTSUPP: \
             skipped, needs a NIC with header split)",
            vec![NET_ADMIN, VETH, NETDEV_FAMILY, BIND_RX_OP],
            |ctx| bind_rx_on(ctx, Device::Veth),
        ),
        Case::new(
            "devmem.dmabuf.bind_rx.lo",
            Area::Devmem,
            "bind-rx of a real dma-buf (udmabuf) on loopback: refused for the device              (EOPNOTSUPP and the extended ack's reason: skipped, needs a NIC)",
            vec![NET_ADMIN, NETDEV_FAMILY, BIND_RX_OP, UDMABUF],
            |ctx| bind_dmabuf(ctx, Device::Loopback, Direction::Rx),
        ),
        Case::new(
            "devmem.dmabuf.bind_rx.veth",
            Area::Devmem,
            "bind-rx of a real dma-buf (udmabuf) on a veth: refused for the device              (EOPNOTSUPP and the extended ack's reason: skipped, needs a NIC)",
            vec![NET_ADMIN, VETH, NETDEV_FAMILY, BIND_RX_OP, UDMABUF],
            |ctx| bind_dmabuf(ctx, Device::Veth, Direction::Rx),
        ),
        Case::new(
            "devmem.dmabuf.bind_tx.lo",
            Area::Devmem,
            "bind-tx of a real dma-buf (udmabuf) on loopback: refused for the device              (EOPNOTSUPP, \"Driver does not support netmem TX\": skipped, needs a NIC)",
            vec![NET_ADMIN, NETDEV_FAMILY, BIND_TX_OP, UDMABUF],
            |ctx| bind_dmabuf(ctx, Device::Loopback, Direction::Tx),
        ),
        Case::new(
            "devmem.dmabuf.bind_tx.veth",
            Area::Devmem,
            "bind-tx of a real dma-buf (udmabuf) on a veth: refused for the device              (EOPNOTSUPP, \"Driver does not support netmem TX\": skipped, needs a NIC)",
            vec![NET_ADMIN, VETH, NETDEV_FAMILY, BIND_TX_OP, UDMABUF],
            |ctx| bind_dmabuf(ctx, Device::Veth, Direction::Tx),
        ),
        Case::new(
            "devmem.bind_rx.bad_ifindex",
            Area::Devmem,
            "bind-rx names an interface that does not exist: ENODEV",
            vec![NET_ADMIN, NETDEV_FAMILY, BIND_RX_OP],
            bad_ifindex,
        ),
        Case::new(
            "devmem.dontneed.token_limit",
            Area::Devmem,
            "SO_DEVMEM_DONTNEED takes at most 128 tokens: 129 give EINVAL",
            vec![DONTNEED],
            token_limit,
        ),
        Case::new(
            "devmem.dontneed.optlen",
            Area::Devmem,
            "SO_DEVMEM_DONTNEED wants whole tokens: an optlen not a multiple of 8 gives EINVAL",
            vec![DONTNEED],
            optlen,
        ),
        Case::new(
            "devmem.dontneed.non_tcp",
            Area::Devmem,
            "SO_DEVMEM_DONTNEED on a UDP or AF_UNIX socket gives EBADF",
            vec![DONTNEED],
            non_tcp,
        ),
    ]
}

/// `n` zeroed `struct dmabuf_token`s.
fn tokens(n: usize) -> Vec<u8> {
    vec![0u8; n * TOKEN_LEN]
}

/// `setsockopt(SOL_SOCKET, SO_DEVMEM_DONTNEED, bytes)`; the errno on failure.
fn dontneed(s: &Socket, bytes: &[u8]) -> Result<(), i32> {
    sockopt::set_raw(s.as_fd(), libc::SOL_SOCKET, SO_DEVMEM_DONTNEED, bytes)
        .map_err(|e| e.raw_os_error().unwrap_or(0))
}

fn show(r: Result<(), i32>) -> String {
    match r {
        Ok(()) => "0".into(),
        Err(e) => errno_name(e),
    }
}

#[derive(Debug, Clone, Copy)]
enum Device {
    Loopback,
    Veth,
}

/// What a bind-rx attempt on a device that has no devmem support answered, as an outcome.
/// `Ok` only when the kernel bound a descriptor that is not a dma-buf, which is a failure.
pub fn classify_bind(answer: Result<(), i32>, device: &str) -> anyhow::Error {
    match answer {
        Ok(()) => fail(format!(
            "bind-rx on {device} succeeded with a descriptor that is not a dma-buf"
        )),
        Err(libc::EOPNOTSUPP) => skipped(format!(
            "needs a NIC with header split and flow steering: bind-rx on {device} answered \
             EOPNOTSUPP (the kernel has devmem TCP; this device cannot)"
        )),
        Err(libc::EPERM) => {
            skipped("bind-rx needs CAP_NET_ADMIN in the initial user namespace: EPERM".to_string())
        }
        Err(e @ (libc::EINVAL | libc::EBADF)) => skipped(format!(
            "needs a NIC with header split and a dma-buf exporter: this kernel checks the \
             dma-buf before the device and answered {} for a descriptor that is not one",
            errno_name(e)
        )),
        Err(e) => anyhow::anyhow!(
            "bind-rx on {device} answered {}, which the suite cannot classify",
            errno_name(e)
        ),
    }
}

/// Attempts bind-rx of queue 0 on `ifname` inside `ns` with a pipe as the "dma-buf".
fn attempt_bind(ns: &NetNs, ifindex: u32) -> Result<Result<(), i32>> {
    let family = ns
        .run(genl::netdev_family)?
        .context("looking up the netdev family")?
        .context("the netdev family vanished")?;
    let (rd, _wr) = nix::unistd::pipe().context("pipe")?;
    let fd = rd.as_raw_fd();
    let r = ns.run(move || genl::bind_rx(family.id, ifindex, 0, fd))?;
    Ok(r.map_err(|e| e.raw_os_error().unwrap_or(0)))
}

fn bind_rx_on(ctx: &mut Ctx, device: Device) -> Result<Verdict> {
    let (answer, name) = match device {
        Device::Loopback => {
            let lo = Loopback::new(None)?;
            let idx = harness::netlink::link_index(&lo.host.ns, "lo")?;
            (attempt_bind(&lo.host.ns, idx)?, "loopback")
        }
        Device::Veth => {
            let pair = Pair::new(PairConfig::default())?;
            let idx = harness::netlink::link_index(&pair.a.ns, &pair.a.ifname)?;
            (attempt_bind(&pair.a.ns, idx)?, "veth")
        }
    };
    ctx.observe("bind_rx", show(answer));
    Err(classify_bind(answer, name))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Rx,
    Tx,
}

impl Direction {
    fn name(self) -> &'static str {
        match self {
            Direction::Rx => "bind-rx",
            Direction::Tx => "bind-tx",
        }
    }
}

/// What a bind of a real dma-buf on a device without devmem support answered, as an outcome.
pub fn classify_dmabuf_bind(answer: &Result<(), Nack>, what: &str) -> anyhow::Error {
    let reason = |n: &Nack| match &n.message {
        Some(m) => format!("{} (\"{m}\")", errno_name(n.errno)),
        None => format!("{} (no extended-ack message)", errno_name(n.errno)),
    };
    match answer {
        Ok(()) => fail(format!(
            "{what} succeeded: the kernel bound a dma-buf to a device with no DMA and no \
             queue API"
        )),
        Err(n) if n.errno == libc::EOPNOTSUPP => skipped(format!(
            "needs a NIC with devmem support (queue API, DMA): {what} answered {}",
            reason(n)
        )),
        Err(n) if n.errno == libc::EPERM => skipped(format!(
            "{what} needs CAP_NET_ADMIN in the initial user namespace: EPERM"
        )),
        // 6.12–6.14 attach the dma-buf to the device's parent before any device check; a
        // device with no DMA parent fails there, and the extended ack says so.
        Err(Nack {
            errno: libc::EINVAL,
            message: Some(m),
        }) if m.contains("bind dmabuf to device") => skipped(format!(
            "needs a NIC with devmem support (a DMA device to attach the dma-buf to): {what} \
             answered EINVAL (\"{m}\")"
        )),
        Err(n) => anyhow::anyhow!(
            "{what} answered {}, which the suite cannot classify",
            reason(n)
        ),
    }
}

fn bind_dmabuf(ctx: &mut Ctx, device: Device, dir: Direction) -> Result<Verdict> {
    let buf = udmabuf::create(DMABUF_PAGES * 4096)
        .map_err(|e| anyhow::anyhow!("making a dma-buf after the probe made one: {e}"))?;
    let fd = buf.fd.as_raw_fd();
    let attempt = |ns: &NetNs, ifname: &str| -> Result<Result<(), Nack>> {
        let idx = harness::netlink::link_index(ns, ifname)?;
        let family = ns
            .run(genl::netdev_family)?
            .context("looking up the netdev family")?
            .context("the netdev family vanished")?;
        let r = ns.run(move || match dir {
            Direction::Rx => genl::bind_rx_ext(family.id, idx, 0, fd),
            Direction::Tx => genl::bind_tx(family.id, idx, fd),
        })?;
        r.with_context(|| format!("{} over netlink", dir.name()))
    };
    let (answer, name) = match device {
        Device::Loopback => {
            let lo = Loopback::new(None)?;
            (attempt(&lo.host.ns, "lo")?, "loopback")
        }
        Device::Veth => {
            let pair = Pair::new(PairConfig::default())?;
            (attempt(&pair.a.ns, &pair.a.ifname)?, "veth")
        }
    };
    match &answer {
        Ok(()) => ctx.observe(dir.name(), "0"),
        Err(n) => {
            ctx.observe(dir.name(), errno_name(n.errno));
            ctx.observe("extack", n.message.clone().unwrap_or_default());
        }
    }
    drop(buf);
    Err(classify_dmabuf_bind(
        &answer,
        &format!("{} of a udmabuf dma-buf on {name}", dir.name()),
    ))
}

fn bad_ifindex(ctx: &mut Ctx) -> Result<Verdict> {
    let ns = NetNs::new("devmem")?;
    let answer = attempt_bind(&ns, BOGUS_IFINDEX)?;
    ctx.observe("bind_rx", show(answer));
    match answer {
        Err(libc::ENODEV) => Ok(Verdict::pass("bind-rx on a missing interface: ENODEV")),
        Err(libc::EPERM) => Err(skipped(
            "bind-rx needs CAP_NET_ADMIN in the initial user namespace: EPERM",
        )),
        other => Err(fail(format!(
            "bind-rx on interface index {BOGUS_IFINDEX}, which does not exist, answered {} \
             instead of ENODEV",
            show(other)
        ))),
    }
}

/// The baseline every DONTNEED rule is measured against: one token on a TCP socket that
/// holds no devmem frags. 6.12–6.18 answer 0 (nothing freed). A kernel that refuses any
/// DONTNEED on a socket without a dma-buf binding answers EINVAL, and then the limits below
/// cannot be told apart from that refusal.
fn baseline(ctx: &mut Ctx, s: &Socket) -> Result<()> {
    let r = dontneed(s, &tokens(1));
    ctx.observe("one_token", show(r));
    match r {
        Ok(()) => Ok(()),
        Err(libc::EINVAL) => Err(skipped(
            "this kernel refuses SO_DEVMEM_DONTNEED on a socket without a dma-buf binding \
             (1 token: EINVAL), so its argument limits are only observable with a NIC with \
             header split",
        )),
        Err(e) => Err(fail(format!(
            "SO_DEVMEM_DONTNEED with one well-formed token on a TCP socket answered {}",
            errno_name(e)
        ))),
    }
}

fn tcp_socket() -> Result<Socket> {
    Socket::new(Domain::IPV4, Type::STREAM, None).context("socket(AF_INET, SOCK_STREAM)")
}

fn token_limit(ctx: &mut Ctx) -> Result<Verdict> {
    let s = tcp_socket()?;
    baseline(ctx, &s)?;
    let at_limit = dontneed(&s, &tokens(MAX_TOKENS));
    let over = dontneed(&s, &tokens(MAX_TOKENS + 1));
    let far_over = dontneed(&s, &tokens(1024));
    ctx.observe("tokens_128", show(at_limit));
    ctx.observe("tokens_129", show(over));
    ctx.observe("tokens_1024", show(far_over));
    let evidence = format!(
        "1 token: 0; 128: {}; 129: {}; 1024: {}",
        show(at_limit),
        show(over),
        show(far_over)
    );
    if at_limit.is_err() || over != Err(libc::EINVAL) || far_over != Err(libc::EINVAL) {
        return Err(fail_with(
            "SO_DEVMEM_DONTNEED must take 128 tokens and refuse 129 or more with EINVAL",
            evidence,
        ));
    }
    Ok(Verdict::pass(evidence))
}

fn optlen(ctx: &mut Ctx) -> Result<Verdict> {
    let s = tcp_socket()?;
    baseline(ctx, &s)?;
    let whole = dontneed(&s, &tokens(2));
    ctx.observe("optlen_16", show(whole));
    expect(whole.is_ok(), || {
        format!("two whole tokens (optlen 16) answered {}", show(whole))
    })?;
    let mut seen = vec!["8: 0".to_string(), "16: 0".to_string()];
    for len in [4usize, 12, 15] {
        let r = dontneed(&s, &vec![0u8; len]);
        ctx.observe(format!("optlen_{len}"), show(r));
        expect(r == Err(libc::EINVAL), || {
            format!(
                "optlen {len} (not a whole number of 8-byte tokens) answered {} instead of \
                 EINVAL",
                show(r)
            )
        })?;
        seen.push(format!("{len}: EINVAL"));
    }
    // An empty call: the contract does not say; record it.
    ctx.observe("optlen_0", show(dontneed(&s, &[])));
    Ok(Verdict::pass(format!("optlen {}", seen.join(", "))))
}

fn non_tcp(ctx: &mut Ctx) -> Result<Verdict> {
    let udp = Socket::new(Domain::IPV4, Type::DGRAM, None).context("socket(AF_INET, DGRAM)")?;
    let (unix, _peer) = Socket::pair(Domain::UNIX, Type::STREAM, None).context("socketpair")?;
    let mut seen = Vec::new();
    for (label, s) in [("udp", &udp), ("unix", &unix)] {
        let r = dontneed(s, &tokens(1));
        ctx.observe(label, show(r));
        expect(r == Err(libc::EBADF), || {
            format!(
                "SO_DEVMEM_DONTNEED on a {label} socket answered {} instead of EBADF",
                show(r)
            )
        })?;
        seen.push(format!("{label}: EBADF"));
    }
    Ok(Verdict::pass(seen.join(", ")))
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;
    use crate::outcome::{verdict_of_error, Outcome};

    #[test]
    fn dmabuf_bind_answers_keep_the_extack_reason() {
        let n = |errno, m: Option<&str>| Nack {
            errno,
            message: m.map(str::to_string),
        };
        let v = verdict_of_error(classify_dmabuf_bind(
            &Err(n(
                libc::EOPNOTSUPP,
                Some("Driver does not support netmem TX"),
            )),
            "bind-tx",
        ));
        assert_eq!(v.outcome, Outcome::Skipped, "{v:?}");
        assert!(v.reason.contains("netmem TX"), "{v:?}");
        let v = verdict_of_error(classify_dmabuf_bind(&Ok(()), "bind-rx"));
        assert_eq!(v.outcome, Outcome::Fail, "{v:?}");
        let v = verdict_of_error(classify_dmabuf_bind(
            &Err(n(libc::EINVAL, Some("Failed to bind dmabuf to device"))),
            "bind-rx",
        ));
        assert_eq!(v.outcome, Outcome::Skipped, "{v:?}");
        // EINVAL for another reason is not the device's refusal.
        let v = verdict_of_error(classify_dmabuf_bind(
            &Err(n(libc::EINVAL, Some("rx-page-size must be a power of 2"))),
            "bind-rx",
        ));
        assert_eq!(v.outcome, Outcome::Error, "{v:?}");
        let v = verdict_of_error(classify_dmabuf_bind(&Err(n(libc::ENOMEM, None)), "bind-rx"));
        assert_eq!(v.outcome, Outcome::Error, "{v:?}");
        assert!(v.reason.contains("no extended-ack message"), "{v:?}");
    }

    #[test]
    fn a_missing_udmabuf_names_the_module() {
        let e = std::io::Error::from_raw_os_error(libc::ENOENT);
        match classify_udmabuf(Err(UdmabufError::Device(e))) {
            Answer::Blocked(d) => assert!(d.contains("udmabuf module"), "{d}"),
            other => panic!("{other:?}"),
        }
    }

    #[rstest]
    #[case(Ok(()), Outcome::Fail, "succeeded")]
    #[case(Err(libc::EOPNOTSUPP), Outcome::Skipped, "header split")]
    #[case(Err(libc::EPERM), Outcome::Skipped, "CAP_NET_ADMIN")]
    #[case(Err(libc::EINVAL), Outcome::Skipped, "dma-buf before the device")]
    #[case(Err(libc::EBADF), Outcome::Skipped, "EBADF")]
    #[case(Err(libc::ENOMEM), Outcome::Error, "cannot classify")]
    fn bind_answers_are_classified(
        #[case] answer: Result<(), i32>,
        #[case] outcome: Outcome,
        #[case] reason: &str,
    ) {
        let v = verdict_of_error(classify_bind(answer, "veth"));
        assert_eq!(v.outcome, outcome, "{v:?}");
        assert!(v.reason.contains(reason), "{v:?}");
    }
}
