//! UDP GSO (`UDP_SEGMENT`) with MSG_ZEROCOPY: one call is one id however many segments it
//! makes, every segment arrives as its own datagram with exactly its slice of the buffer,
//! and, delivered locally, the notification says COPIED (msg_zerocopy.rst, Loopback: every
//! packet looped to a local socket incurs a deferred copy).
//!
//! `send.gso.udp.{lo,pair}`, IPv4 and IPv6: gso_size 1000; sends of 10000 bytes (ten
//! segments), 4500 (four and a short one) and 1000 (one).

use std::os::fd::AsFd;
use std::time::Duration;

use anyhow::{Context, Result};
use harness::sockets::{Family, Proto};
use harness::sys::sockopt;

use super::flow::{await_ids, pin_to_one_cpu, show, zc_send, Path, SO_ZEROCOPY_UDP};
use super::mapped::{self, Addressing};
use super::wire::{self, DatagramReader};
use crate::case::{Area, Case, Ctx};
use crate::model::completions::{check, IdWindow};
use crate::outcome::{expect, fail_with, unsupported, Verdict};
use crate::probes::errno_name;

const GSO_SIZE: usize = 1000;
const SENDS: [usize; 3] = [10_000, 4500, 1000];

pub fn cases() -> Vec<Case> {
    [Path::Loopback, Path::Pair]
        .into_iter()
        .map(|path| {
            let mut req = path.requires();
            req.push(SO_ZEROCOPY_UDP);
            Case::new(
                format!("send.gso.udp.{}", path.tag()),
                Area::Send,
                "UDP_SEGMENT with MSG_ZEROCOPY: one id per call, each segment a whole \
                 datagram with its exact bytes, COPIED when delivered locally",
                req,
                move |ctx| gso(ctx, path),
            )
        })
        .collect()
}

/// The datagrams a GSO send of `buf` becomes.
pub fn segments(buf: &[u8], gso_size: usize) -> Vec<Vec<u8>> {
    buf.chunks(gso_size).map(|c| c.to_vec()).collect()
}

fn gso(ctx: &mut Ctx, path: Path) -> Result<Verdict> {
    pin_to_one_cpu()?;
    let topo = path.topology()?;
    let (s, r) = (topo.sender(), topo.receiver());
    let mut seen = Vec::new();
    for (family, how) in [(Family::V4, Addressing::V4), (Family::V6, Addressing::V6)] {
        let (sender, receiver) = mapped::connect(&s.ns, r, Proto::Udp, how)?;
        if let Err(e) = sockopt::set_int(
            sender.as_fd(),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            GSO_SIZE as i32,
        ) {
            return Err(unsupported(format!(
                "setsockopt(UDP_SEGMENT, {GSO_SIZE}): {}",
                e.raw_os_error()
                    .map(errno_name)
                    .unwrap_or_else(|| e.to_string())
            )));
        }
        let bufs: Vec<Vec<u8>> = SENDS
            .iter()
            .enumerate()
            .map(|(i, &n)| wire::payload(ctx.seed ^ family as u64, i as u32, n))
            .collect();
        let expected: Vec<Vec<u8>> = bufs.iter().flat_map(|b| segments(b, GSO_SIZE)).collect();
        let reader = DatagramReader::start(receiver, expected.len(), Duration::from_secs(1))?;
        for b in &bufs {
            let n = zc_send(&sender, b, false).context("zero-copy GSO send")?;
            expect(n == b.len(), || {
                format!("a GSO send of {} bytes sent {n}", b.len())
            })?;
        }
        let entries = await_ids(&sender, bufs.len() as u64)?;
        let comps = mapped::judged(family, &entries)?;
        check(IdWindow::new(0, bufs.len() as u64), &comps, true).map_err(|v| {
            fail_with(
                format!("{family:?}: {} GSO sends: {v}", bufs.len()),
                show(&comps),
            )
        })?;
        expect(comps.iter().all(|c| c.copied), || {
            format!(
                "{family:?}: GSO segments delivered to a local socket were reported without \
                 COPIED: {}",
                show(&comps)
            )
        })?;
        let got = reader.finish()?;
        wire::check_datagrams(&expected, &got, false)
            .map_err(|m| fail_with(m, format!("{family:?}: segments of GSO sends")))?;
        seen.push(format!("{family:?}: {}", show(&comps)));
    }
    ctx.observe_timing("notifications", &seen);
    Ok(Verdict::pass(format!(
        "3 GSO sends, 3 ids, {} segments intact, COPIED",
        SENDS.iter().map(|n| n.div_ceil(GSO_SIZE)).sum::<usize>()
    )))
}

#[cfg(test)]
mod tests {
    #[test]
    fn segments_cut_at_gso_size() {
        let s = super::segments(&[1u8; 4500], 1000);
        assert_eq!(
            s.iter().map(|x| x.len()).collect::<Vec<_>>(),
            [1000, 1000, 1000, 1000, 500]
        );
    }
}
