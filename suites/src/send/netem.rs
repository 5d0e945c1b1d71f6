//! Loss, delay and reordering on the wire (`tc netem` on the sender's veth, set up through
//! netlink). msg_zerocopy.rst: "Notifications may arrive out of order on retransmission".
//!
//! `send.netem.pair` runs both over one impaired veth:
//!
//! * TCP, IPv4 and IPv6: forty 16 KiB zero-copy sends through a link that
//!   drops 5% of packets, delays the rest by 1 ms and sends 25% ahead of the delayed ones;
//!   the route's minimum RTO is 10 ms so retransmissions come fast. Every id is reported
//!   exactly once and the stream arrives intact. Whether notifications came out of order,
//!   how many there were, how long after the last send the last one came, and how often TCP
//!   retransmitted, are recorded (timing facts).
//! * UDP: sixty datagrams through the same link. Every id is reported
//!   exactly once, for the datagrams netem dropped too; every datagram that arrives is
//!   whole and exact (losses allowed). Loss, reordering and notification order recorded.
//!
//! Sends that fail with ENOBUFS while delayed packets hold the socket's option memory
//! (msg_zerocopy.rst) take no id; they are retried once completions came, and counted.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use anyhow::{Context, Result};
use harness::netem::{self, Netem};
use harness::sockets::{Family, Proto};
use harness::sys::errqueue;
use harness::sys::sockopt;
use harness::topology::{Pair, PairConfig};

use super::flow::{covered, pin_to_one_cpu, show, zc_send, SO_ZEROCOPY_TCP, SO_ZEROCOPY_UDP};
use super::mapped::{self, Addressing};
use super::wire::{self, DatagramReader, StreamCollector};
use crate::case::{Area, Case, Ctx};
use crate::model::completions::{check, IdWindow};
use crate::outcome::{fail_with, Verdict};
use crate::probes::{Answer, Requirement, NET_ADMIN, VETH};

const LINK: Netem = Netem {
    delay: Duration::from_millis(1),
    loss: 0.05,
    reorder: 0.25,
    limit: 10_000,
};
const RTO_MIN: Duration = Duration::from_millis(10);

/// The kernel has the netem qdisc (sch_netem): one is added to `lo` in a throwaway namespace.
const NETEM: Requirement = Requirement {
    name: "env.netem",
    probe: || {
        let ns = match harness::NetNs::new("netem-probe") {
            Ok(ns) => ns,
            Err(e) => return Answer::Blocked(format!("cannot create a namespace: {e:#}")),
        };
        match netem::add_netem(&ns, "lo", &LINK) {
            Ok(()) => Answer::Present(format!("`{}`: ok", LINK.tc_command("lo"))),
            Err(e) => Answer::Blocked(format!(
                "{e:#} (ENOENT: the kernel has no sch_netem, CONFIG_NET_SCH_NETEM)"
            )),
        }
    },
};

pub fn cases() -> Vec<Case> {
    vec![Case::new(
        "send.netem.pair",
        Area::Send,
        "TCP and UDP through loss, delay and reordering: every id reported exactly once \
         (dropped datagrams included), the stream intact, what arrives whole and exact; late \
         or out-of-order notifications recorded",
        vec![NET_ADMIN, VETH, NETEM, SO_ZEROCOPY_TCP, SO_ZEROCOPY_UDP],
        impaired,
    )]
}

/// TCP_INFO's `tcpi_total_retrans` (offset 100 of `struct tcp_info`).
fn total_retrans(fd: BorrowedFd<'_>) -> Result<u32> {
    let mut info = [0u8; 104];
    let n = sockopt::get_raw(fd, libc::IPPROTO_TCP, libc::TCP_INFO, &mut info, 104)
        .context("getsockopt(TCP_INFO)")?;
    anyhow::ensure!(n >= 104, "TCP_INFO returned {n} bytes");
    Ok(u32::from_ne_bytes(
        info[100..104].try_into().expect("4 bytes"),
    ))
}

/// A zero-copy send of `b`, then a drain of the error queue into `entries`. While the
/// delayed sends hold the socket's option memory, a send may fail with ENOBUFS (no id
/// taken, msg_zerocopy.rst): then wait for completions and retry. Returns the retries.
fn send_retrying(
    sender: &socket2::Socket,
    b: &[u8],
    entries: &mut Vec<harness::sys::errqueue::ErrQueueEntry>,
) -> Result<u32> {
    let fd = sender.as_fd();
    for retries in 0..200 {
        match zc_send(sender, b, false) {
            Ok(_) => {
                entries.extend(errqueue::drain(fd)?);
                return Ok(retries);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                errqueue::wait_err(fd, Duration::from_millis(20))?;
                entries.extend(errqueue::drain(fd)?);
            }
            Err(e) => return Err(e).context("zero-copy send"),
        }
    }
    anyhow::bail!("a zero-copy send still failed with ENOBUFS after 200 waits for completions")
}

fn impaired(ctx: &mut Ctx) -> Result<Verdict> {
    pin_to_one_cpu()?;
    let pair = Pair::new(PairConfig::default())?;
    netem::add_netem(&pair.a.ns, &pair.a.ifname, &LINK)?;
    for family in [Family::V4, Family::V6] {
        netem::add_host_route_rto_min(&pair.a.ns, &pair.a.ifname, pair.b.ip(family), RTO_MIN)?;
    }
    let mut done = Vec::new();
    for proto in [Proto::Tcp, Proto::Udp] {
        done.push(impaired_on(ctx, &pair, proto)?);
    }
    ctx.observe(
        "link",
        LINK.tc_command("zc-a") + &format!("; rto_min {}ms", RTO_MIN.as_millis()),
    );
    Ok(Verdict::pass(done.join("; ")))
}

fn impaired_on(ctx: &mut Ctx, pair: &Pair, proto: Proto) -> Result<String> {
    let (count, len) = match proto {
        Proto::Tcp => (40u32, 16 * 1024),
        Proto::Udp => (60u32, 1000),
    };
    let mut facts = Vec::new();
    // Whether the link did anything at all: a pass through a link that lost, delayed and
    // reordered nothing would be a pass of nothing.
    let mut impaired = 0u64;
    for (family, how) in [(Family::V4, Addressing::V4), (Family::V6, Addressing::V6)] {
        let (sender, receiver) = mapped::connect(&pair.a.ns, &pair.b, proto, how)?;
        let fd = sender.as_fd();
        let bufs: Vec<Vec<u8>> = (0..count)
            .map(|i| wire::payload(ctx.seed ^ family as u64, i, len))
            .collect();
        let what = format!(
            "{proto:?} over {family:?} through `{}`",
            LINK.tc_command("zc-a")
        );
        let mut entries = Vec::new();
        let mut last_send = std::time::Instant::now();
        let mut enobufs = 0u32;
        let (retrans, tally, settled) = match proto {
            Proto::Tcp => {
                let reader = StreamCollector::start(receiver);
                for b in &bufs {
                    enobufs += send_retrying(&sender, b, &mut entries)?;
                    last_send = std::time::Instant::now();
                }
                let (more, _) = errqueue::collect_until(fd, Duration::from_secs(5), |got| {
                    covered(&entries) + covered(got) >= count as u64
                })?;
                entries.extend(more);
                let settled = last_send.elapsed();
                let retrans = total_retrans(fd)?;
                sender.shutdown(std::net::Shutdown::Write)?;
                let got = reader.finish()?;
                wire::check_stream(&bufs.concat(), &got).map_err(|m| fail_with(m, what.clone()))?;
                (Some(retrans), None, settled)
            }
            Proto::Udp => {
                let reader =
                    DatagramReader::start(receiver, count as usize, Duration::from_millis(500))?;
                for b in &bufs {
                    enobufs += send_retrying(&sender, b, &mut entries)?;
                    last_send = std::time::Instant::now();
                }
                let (more, _) = errqueue::collect_until(fd, Duration::from_secs(3), |got| {
                    covered(&entries) + covered(got) >= count as u64
                })?;
                entries.extend(more);
                let settled = last_send.elapsed();
                let got = reader.finish()?;
                let tally = wire::check_datagrams(&bufs, &got, true)
                    .map_err(|m| fail_with(m, what.clone()))?;
                (None, Some(tally), settled)
            }
        };
        let comps = mapped::judged(family, &entries)?;
        let stats = check(IdWindow::new(0, count as u64), &comps, true)
            .map_err(|v| fail_with(format!("{what}: {v}"), show(&comps)))?;
        impaired += retrans.unwrap_or(0) as u64
            + tally.as_ref().map_or(0, |t| (t.lost + t.reordered) as u64);
        facts.push(serde_json::json!({
            "family": family,
            "notifications": stats.notifications,
            "out_of_order": stats.out_of_order,
            "tcp_retransmissions": retrans,
            "enobufs_retries": enobufs,
            "last_notification_after_last_send_ms": settled.as_millis() as u64,
            "datagrams": tally,
        }));
    }
    ctx.observe_timing(format!("{proto:?}").to_lowercase(), &facts);
    anyhow::ensure!(
        impaired > 0,
        "{proto:?}: no retransmission, loss or reordering happened: `{}` had no effect",
        LINK.tc_command("zc-a")
    );
    Ok(format!(
        "{proto:?}: {count} sends per family, every id once, data intact"
    ))
}
