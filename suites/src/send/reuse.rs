//! The buffer-reuse promise (msg_zerocopy.rst: "The kernel returns a notification when it is
//! safe to modify data"): once a send's id is reported, the process may overwrite the buffer
//! at once, and the receiver still gets the bytes as they were at the send.
//!
//! `send.reuse.pair` sends, over TCP and UDP, from one buffer again and again: fill it, send it with
//! MSG_ZEROCOPY, wait for that send's notification, refill it at once for the next send, and
//! scribble over it after the last. The receiver reads nothing until all of that is over, so
//! a notification that came before the kernel let go of the pages would show as scribbled
//! or later bytes. The copied run overwrites right after each send returns, as a plain send
//! allows. A dead-end path cannot show this (nothing receives), a delayed receiver can.

use std::os::fd::AsFd;
use std::time::Duration;

use anyhow::{Context, Result};
use harness::sockets::{Family, Proto};
use harness::sys::errqueue::{self, ErrQueueEntry};
use harness::sys::zerocopy;
use harness::topology::{Pair, PairConfig};

use super::flow::{covered, show, zc_send, COMPLETION_WAIT, SO_ZEROCOPY_TCP, SO_ZEROCOPY_UDP};
use super::mapped::{self, Addressing};
use super::wire::{self, DatagramReader, StreamCollector};
use crate::case::{Area, Case, Ctx};
use crate::model::completions::{check, IdWindow};
use crate::outcome::{fail_with, Verdict};
use crate::probes::{NET_ADMIN, VETH};

pub fn cases() -> Vec<Case> {
    vec![Case::new(
        "send.reuse.pair",
        Area::Send,
        "a buffer overwritten as soon as its notification arrives: a receiver that reads only \
         afterwards still gets the original bytes (TCP and UDP, zero-copy and copied)",
        vec![NET_ADMIN, VETH, SO_ZEROCOPY_TCP, SO_ZEROCOPY_UDP],
        reuse,
    )]
}

fn reuse(ctx: &mut Ctx) -> Result<Verdict> {
    let pair = Pair::new(PairConfig::default())?;
    let mut done = Vec::new();
    for proto in [Proto::Tcp, Proto::Udp] {
        done.push(reuse_on(ctx, &pair, proto)?);
    }
    Ok(Verdict::pass(done.join("; ")))
}

/// Sends and buffer size: small enough that everything fits the receiver's queue unread.
fn shape(proto: Proto) -> (u32, usize) {
    match proto {
        Proto::Tcp => (4, 8192),
        Proto::Udp => (4, 1000),
    }
}

fn reuse_on(ctx: &mut Ctx, pair: &Pair, proto: Proto) -> Result<String> {
    let (n, len) = shape(proto);
    let mut seen = Vec::new();
    for family in [Family::V4, Family::V6] {
        let how = match family {
            Family::V4 => Addressing::V4,
            Family::V6 => Addressing::V6,
        };
        for zc in [true, false] {
            let seed = ctx.seed ^ ((family == Family::V6) as u64) << 1 ^ zc as u64;
            let expected: Vec<Vec<u8>> = (0..n).map(|i| wire::payload(seed, i, len)).collect();
            let (sender, receiver) = mapped::connect(&pair.a.ns, &pair.b, proto, how)?;
            let mut buf = vec![0u8; len];
            let mut entries: Vec<ErrQueueEntry> = Vec::new();
            for (i, bytes) in expected.iter().enumerate() {
                buf.copy_from_slice(bytes);
                let sent = if zc {
                    zc_send(&sender, &buf, false)
                } else {
                    zerocopy::send_flags(sender.as_fd(), &buf, libc::MSG_NOSIGNAL)
                }
                .context("send from the reused buffer")?;
                anyhow::ensure!(sent == len, "a blocking send sent {sent} of {len}");
                if zc {
                    let (more, done) =
                        errqueue::collect_until(sender.as_fd(), COMPLETION_WAIT, |got| {
                            covered(&entries) + covered(got) > i as u64
                        })?;
                    entries.extend(more);
                    if !done {
                        return Err(fail_with(
                            format!("send #{i} was never reported as done"),
                            format!("entries so far: {entries:?}"),
                        ));
                    }
                }
            }
            // The last notification is in: scribble over the buffer, then let the receiver
            // read.
            buf.fill(0xee);
            let what = format!(
                "{proto:?} over {family:?}, {}",
                if zc { "zero-copy" } else { "copied" }
            );
            match proto {
                Proto::Tcp => {
                    sender.shutdown(std::net::Shutdown::Write)?;
                    let got = StreamCollector::start(receiver).finish()?;
                    wire::check_stream(&expected.concat(), &got)
                        .map_err(|m| fail_with(m, what.clone()))?;
                }
                Proto::Udp => {
                    let got = DatagramReader::start(receiver, n as usize, Duration::from_secs(1))?
                        .finish()?;
                    wire::check_datagrams(&expected, &got, false)
                        .map_err(|m| fail_with(m, what.clone()))?;
                }
            }
            let comps = mapped::judged(family, &entries)?;
            check(
                IdWindow::new(0, if zc { n as u64 } else { 0 }),
                &comps,
                true,
            )
            .map_err(|v| fail_with(format!("{what}: {v}"), show(&comps)))?;
            if zc {
                seen.push(format!("{family:?}: {}", show(&comps)));
            }
        }
    }
    let tag = format!("{proto:?}").to_lowercase();
    ctx.observe(
        format!("{tag}_copied"),
        seen.iter().all(|s| s.contains('c')),
    );
    ctx.observe_timing(format!("{tag}_notifications"), &seen);
    Ok(format!(
        "{proto:?}: {n} sends of {len} bytes from one buffer, refilled after each \
         notification, all received intact"
    ))
}
