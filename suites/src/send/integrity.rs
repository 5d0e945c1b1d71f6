//! Data integrity (SEMANTICS.md §7): whatever the kernel does with the pages, the receiver
//! gets exactly the bytes sent. UDP datagrams arrive whole, each byte for byte one that was
//! sent, none twice, none lost on these loss-free paths; a TCP stream arrives intact.
//!
//! `send.integrity.{lo,pair,forward}` send a mix of sizes (1 byte to 300 KB on
//! TCP, 1 byte to 65000 bytes on UDP, so IPv4 fragments and IPv6 fragments too) over IPv4
//! and IPv6, once with MSG_ZEROCOPY and once copied, from the same kind of socket. The
//! zero-copy run must also report every id exactly once (msg_zerocopy.c's receiver counts
//! bytes and packets; here every byte is compared).

use std::time::Duration;

use anyhow::{Context, Result};
use harness::sockets::{Family, Proto};
use harness::sys::zerocopy;
use socket2::Socket;

use super::flow::{
    await_ids, pin_to_one_cpu, show, zc_send, Path, SO_ZEROCOPY_TCP, SO_ZEROCOPY_UDP,
};
use super::mapped::{self, Addressing};
use super::wire::{self, DatagramReader, StreamCollector};
use crate::case::{Area, Case, Ctx};
use crate::model::completions::{check, IdWindow};
use crate::outcome::{fail_with, Verdict};

const PATHS: [Path; 3] = [Path::Loopback, Path::Pair, Path::Forward];

pub fn cases() -> Vec<Case> {
    PATHS
        .into_iter()
        .map(|path| {
            let mut requires = path.requires();
            requires.extend([SO_ZEROCOPY_TCP, SO_ZEROCOPY_UDP]);
            Case::new(
                format!("send.integrity.{}", path.tag()),
                Area::Send,
                "the receiver gets exactly the bytes sent, TCP and UDP, IPv4 and IPv6, \
                 zero-copy and copied (UDP: each datagram whole; TCP: the stream intact)",
                requires,
                move |ctx| integrity(ctx, path),
            )
        })
        .collect()
}

/// Sizes of the sends of one run.
pub fn sizes(proto: Proto) -> &'static [usize] {
    match proto {
        Proto::Tcp => &[1, 1000, 65_536, 300_000, 7],
        Proto::Udp => &[1, 1000, 1472, 1500, 9000, 65_000],
    }
}

/// Sends `bufs` from `sender` (with MSG_ZEROCOPY if `zc`) to `receiver` and checks what
/// arrives; with `zc`, also that ids `0..bufs.len()` are each reported once. Returns the
/// completions.
pub fn send_and_check(
    proto: Proto,
    family: Family,
    sender: Socket,
    receiver: Socket,
    bufs: &[Vec<u8>],
    zc: bool,
) -> Result<Vec<harness::sys::errqueue::Completion>> {
    let what = format!(
        "{proto:?} over {family:?}, {}",
        if zc { "zero-copy" } else { "copied" }
    );
    let send = |b: &[u8]| -> Result<()> {
        let n = if zc {
            zc_send(&sender, b, false)
        } else {
            zerocopy::send_flags(std::os::fd::AsFd::as_fd(&sender), b, libc::MSG_NOSIGNAL)
        }
        .with_context(|| format!("send of {} bytes", b.len()))?;
        anyhow::ensure!(n == b.len(), "a blocking send sent {n} of {}", b.len());
        Ok(())
    };
    let ids = if zc { bufs.len() as u64 } else { 0 };
    let entries = match proto {
        Proto::Tcp => {
            let sink = StreamCollector::start(receiver);
            bufs.iter().try_for_each(|b| send(b))?;
            let entries = if zc { await_ids(&sender, ids)? } else { vec![] };
            sender.shutdown(std::net::Shutdown::Write)?;
            let got = sink.finish()?;
            wire::check_stream(&bufs.concat(), &got).map_err(|m| fail_with(m, what.clone()))?;
            entries
        }
        Proto::Udp => {
            let reader = DatagramReader::start(receiver, bufs.len(), Duration::from_secs(1))?;
            bufs.iter().try_for_each(|b| send(b))?;
            let entries = if zc { await_ids(&sender, ids)? } else { vec![] };
            let got = reader.finish()?;
            wire::check_datagrams(bufs, &got, false).map_err(|m| fail_with(m, what.clone()))?;
            entries
        }
    };
    let comps = mapped::judged(family, &entries)?;
    check(IdWindow::new(0, ids), &comps, true)
        .map_err(|v| fail_with(format!("{what}: {v}"), show(&comps)))?;
    Ok(comps)
}

fn integrity(ctx: &mut Ctx, path: Path) -> Result<Verdict> {
    // Datagrams beyond the MTU complete when their reader frees them; see pin_to_one_cpu.
    pin_to_one_cpu()?;
    let topo = path.topology()?;
    let (s, r) = (topo.sender(), topo.receiver());
    let mut copied = Vec::new();
    for (fi, (proto, family)) in [
        (Proto::Tcp, Family::V4),
        (Proto::Tcp, Family::V6),
        (Proto::Udp, Family::V4),
        (Proto::Udp, Family::V6),
    ]
    .into_iter()
    .enumerate()
    {
        let how = match family {
            Family::V4 => Addressing::V4,
            Family::V6 => Addressing::V6,
        };
        for zc in [true, false] {
            let bufs: Vec<Vec<u8>> = sizes(proto)
                .iter()
                .enumerate()
                .map(|(i, &n)| wire::payload(ctx.seed ^ (fi as u64 * 2 + zc as u64), i as u32, n))
                .collect();
            let (sender, receiver) = mapped::connect(&s.ns, r, proto, how)?;
            let comps = send_and_check(proto, family, sender, receiver, &bufs, zc)?;
            if zc {
                copied.push(format!("{proto:?} {family:?}: {}", show(&comps)));
            }
        }
    }
    ctx.observe_timing("zero_copy_notifications", &copied);
    Ok(Verdict::pass(
        "TCP and UDP, IPv4 and IPv6, zero-copy and copied: every byte arrived as sent",
    ))
}
