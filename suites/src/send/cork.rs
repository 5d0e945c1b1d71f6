//! Corking: one UDP datagram built from several appends under UDP_CORK, some with
//! MSG_ZEROCOPY and some copied (msg_zerocopy.c `-m`, "cork mixed").
//!
//! `send.cork.udp.{lo,pair}`, IPv4 and IPv6: two corked datagrams, zero-copy / copied /
//! zero-copy / copied, then copied / zero-copy / zero-copy. Every zero-copy append is a
//! successful send call with the flag, so it takes an id (the counter counts calls,
//! msg_zerocopy.rst; msg_zerocopy.c expects one completion per zero-copy call); each id is
//! reported exactly once, and each datagram arrives whole with the appends' bytes in order.
//! How the ids of one datagram are reported (one range or several), and COPIED, are
//! recorded per datagram.

use std::os::fd::AsFd;
use std::time::Duration;

use anyhow::{Context, Result};
use harness::sockets::{Family, Proto};
use harness::sys::errqueue::Completion;
use harness::sys::{sockopt, zerocopy};

use super::flow::{await_ids, pin_to_one_cpu, show, zc_send, Path, SO_ZEROCOPY_UDP};
use super::mapped::{self, Addressing};
use super::wire::{self, DatagramReader};
use crate::case::{Area, Case, Ctx};
use crate::model::completions::{check, IdWindow};
use crate::outcome::{expect, fail_with, Verdict};

/// The appends of each corked datagram: `true` for zero-copy.
const DATAGRAMS: [&[bool]; 2] = [&[true, false, true, false], &[false, true, true]];
const PIECE: usize = 300;

pub fn cases() -> Vec<Case> {
    [Path::Loopback, Path::Pair]
        .into_iter()
        .map(|path| {
            let mut req = path.requires();
            req.push(SO_ZEROCOPY_UDP);
            Case::new(
                format!("send.cork.udp.{}", path.tag()),
                Area::Send,
                "UDP_CORK with zero-copy and copied appends mixed (msg_zerocopy.c -m): one \
                 id per zero-copy append, each reported once, the datagram whole and exact",
                req,
                move |ctx| cork(ctx, path),
            )
        })
        .collect()
}

/// Ids the appends of `datagrams` take: one per zero-copy append.
pub fn ids_taken(datagrams: &[&[bool]]) -> u64 {
    datagrams
        .iter()
        .flat_map(|d| d.iter())
        .filter(|&&zc| zc)
        .count() as u64
}

fn cork(ctx: &mut Ctx, path: Path) -> Result<Verdict> {
    pin_to_one_cpu()?;
    let topo = path.topology()?;
    let (s, r) = (topo.sender(), topo.receiver());
    let mut seen = Vec::new();
    for (family, how) in [(Family::V4, Addressing::V4), (Family::V6, Addressing::V6)] {
        let (sender, receiver) = mapped::connect(&s.ns, r, Proto::Udp, how)?;
        let fd = sender.as_fd();
        let reader = DatagramReader::start(receiver, DATAGRAMS.len(), Duration::from_secs(1))?;
        let mut expected = Vec::new();
        let mut per_datagram: Vec<Vec<Completion>> = Vec::new();
        let mut next_id = 0u64;
        for (d, appends) in DATAGRAMS.iter().enumerate() {
            sockopt::set_int(fd, libc::SOL_UDP, libc::UDP_CORK, 1).context("UDP_CORK on")?;
            let mut whole = Vec::new();
            for (k, &zc) in appends.iter().enumerate() {
                let piece = wire::payload(ctx.seed ^ family as u64, (d * 8 + k) as u32, PIECE);
                let n = if zc {
                    zc_send(&sender, &piece, false)
                } else {
                    zerocopy::send_flags(fd, &piece, libc::MSG_NOSIGNAL)
                }
                .with_context(|| format!("append #{k} of corked datagram #{d}"))?;
                expect(n == PIECE, || format!("append #{k} sent {n} of {PIECE}"))?;
                whole.extend_from_slice(&piece);
            }
            sockopt::set_int(fd, libc::SOL_UDP, libc::UDP_CORK, 0).context("UDP_CORK off")?;
            expected.push(whole);
            let start = next_id;
            next_id += ids_taken(&[appends]);
            let comps = mapped::judged(family, &await_ids(&sender, next_id - start)?)?;
            check(IdWindow::new(start as u32, next_id - start), &comps, true).map_err(|v| {
                fail_with(
                    format!(
                        "{family:?}: corked datagram #{d} with appends {appends:?} (true: \
                         zero-copy): {v}"
                    ),
                    show(&comps),
                )
            })?;
            per_datagram.push(comps);
        }
        let got = reader.finish()?;
        wire::check_datagrams(&expected, &got, false)
            .map_err(|m| fail_with(m, format!("{family:?}: corked datagrams")))?;
        seen.push(format!(
            "{family:?}: {}",
            per_datagram
                .iter()
                .map(|c| show(c))
                .collect::<Vec<_>>()
                .join(" | ")
        ));
    }
    ctx.observe("notifications_per_datagram", &seen);
    Ok(Verdict::pass(format!(
        "{} zero-copy appends in {} corked datagrams: ids once each, datagrams exact",
        ids_taken(&DATAGRAMS),
        DATAGRAMS.len()
    )))
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_id_per_zero_copy_append() {
        assert_eq!(super::ids_taken(&super::DATAGRAMS), 4);
        assert_eq!(super::ids_taken(&[&[false, false]]), 0);
    }
}
