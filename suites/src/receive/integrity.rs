//! Data integrity as a property: over random streams (payload pattern and size, MTU or MSS,
//! sender with or without MSG_ZEROCOPY, how the receiver asks, copies and unmaps), the bytes
//! read through the mapping, plus those read with recv() for `recv_skip_hint`, plus those
//! copied into `copybuf`, are exactly the bytes sent, in order, nothing lost or repeated; and
//! the stream ends with EIO after the FIN (SEMANTICS.md §7.4, §7.6).
//!
//! How much was mapped is not a promise (it depends on the path, the MTU and the sender's
//! pages), so it is recorded per class of stream as an observed fact.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use harness::sockets::Family;
use harness::sys::socket_mmap::{self, Sharing, SocketMapping};
use proptest::prelude::*;
use serde::Serialize;

use super::net::{aligned_mtu, ConnOpts, Path, RxNet, PAGE_MAXSEG};
use super::probes::struct_len;
use super::rx_loop::{self, End, RxConfig, Unmap};
use super::sender::{self, Ending, SendPlan};
use crate::case::{Area, Case, Ctx};
use crate::model::stream::{Pattern, Source, StreamCheck};
use crate::outcome::{fail_with, Verdict};
use crate::property;

pub fn cases() -> Vec<Case> {
    [Path::Loopback, Path::Pair]
        .into_iter()
        .map(|path| {
            Case::new(
                format!("receive.integrity.{}", path.tag()),
                Area::Receive,
                "random streams: mapped + skipped + copied bytes are exactly the bytes sent, \
                 in order, then EIO after the FIN (tcp_mmap.c's loop, checked byte for byte)",
                path.requires(),
                move |ctx| run(ctx, path),
            )
        })
        .collect()
}

/// How the segments are sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sizing {
    /// The MTU that carries 15 whole pages per segment.
    AlignedMtu,
    Mtu(u32),
    /// TCP_MAXSEG on both ends, with the path's largest MTU.
    MaxSeg(u32),
}

#[derive(Debug, Clone)]
pub struct Stream {
    pub family: Family,
    pub seg: Sizing,
    pub zc_sender: bool,
    pub pattern: Pattern,
    pub size: usize,
    pub chunk: usize,
    pub request_pages: u32,
    pub copybuf: usize,
    pub unmap: Unmap,
}

fn family() -> impl Strategy<Value = Family> {
    prop_oneof![Just(Family::V4), Just(Family::V6)]
}

fn sizing() -> impl Strategy<Value = Sizing> {
    prop_oneof![
        4 => Just(Sizing::AlignedMtu),
        1 => Just(Sizing::Mtu(1500)),
        1 => Just(Sizing::Mtu(9000)),
        1 => Just(Sizing::Mtu(65535)),
        2 => Just(Sizing::MaxSeg(PAGE_MAXSEG)),
        1 => (1024u32..=16384).prop_map(Sizing::MaxSeg),
    ]
}

pub fn pattern() -> impl Strategy<Value = Pattern> {
    prop_oneof![
        any::<u64>().prop_map(|seed| Pattern::Stamped { seed }),
        any::<u64>().prop_map(|seed| Pattern::Noise { seed }),
        any::<u64>().prop_map(|seed| Pattern::Sparse { seed }),
    ]
}

/// 1 byte to `max`, spread evenly over the powers of two, and often a whole number of pages.
pub fn size(max: usize) -> impl Strategy<Value = usize> {
    let bits = usize::BITS - max.leading_zeros() - 1;
    (0..=bits, any::<bool>()).prop_flat_map(move |(b, whole_pages)| {
        let lo = 1usize << b;
        let hi = (lo * 2).min(max);
        (lo..=hi).prop_map(move |n| {
            if whole_pages {
                n.next_multiple_of(4096).min(max)
            } else {
                n
            }
        })
    })
}

pub fn unmap() -> impl Strategy<Value = Unmap> {
    prop_oneof![
        2 => Just(Unmap::Kernel),
        2 => Just(Unmap::MadviseAndHint),
        1 => Just(Unmap::HintOnly),
    ]
}

/// Streams up to 4 MiB.
pub const MAX_STREAM: usize = 4 << 20;

fn stream() -> impl Strategy<Value = Stream> {
    (
        family(),
        sizing(),
        prop::bool::weighted(0.8),
        pattern(),
        size(MAX_STREAM),
        prop_oneof![(1usize..=64).prop_map(|p| p * 4096), 1usize..=256 * 1024],
        1u32..=512,
        prop_oneof![3 => Just(0usize), 1 => 1usize..=8192, 1 => Just(65536usize)],
        unmap(),
    )
        .prop_map(
            |(family, seg, zc_sender, pattern, size, chunk, request_pages, copybuf, unmap)| {
                Stream {
                    family,
                    seg,
                    zc_sender,
                    pattern,
                    size,
                    chunk,
                    request_pages,
                    copybuf,
                    unmap,
                }
            },
        )
}

/// Bytes received per class of stream.
#[derive(Debug, Default, Clone, Serialize)]
struct Share {
    streams: u32,
    bytes: u64,
    mapped: u64,
    copied: u64,
    fraction_mapped: f64,
}

fn class(path: Path, s: &Stream) -> String {
    let fam = match s.family {
        Family::V4 => "4",
        Family::V6 => "6",
    };
    let seg = match s.seg {
        Sizing::AlignedMtu => format!("mtu{}", aligned_mtu(s.family)),
        Sizing::Mtu(m) => format!("mtu{m}"),
        Sizing::MaxSeg(m) if m == PAGE_MAXSEG => format!("mss{m}"),
        Sizing::MaxSeg(_) => "mss-other".into(),
    };
    let sender = if s.zc_sender { "zc" } else { "plain" };
    format!("{}{fam}.{seg}.{sender}", path.tag())
}

fn run(ctx: &mut Ctx, path: Path) -> Result<Verdict> {
    let net = RxNet::new(path)?;
    let optlen = struct_len();
    let shares: RefCell<BTreeMap<String, Share>> = RefCell::default();
    property::check(ctx, stream(), |s| {
        let got = one_stream(&net, path, optlen, s)?;
        let mut all = shares.borrow_mut();
        let e = all.entry(class(path, s)).or_default();
        e.streams += 1;
        e.bytes += s.size as u64;
        e.mapped += got.received_by(Source::Mapped);
        e.copied += got.received_by(Source::Copybuf);
        Ok(())
    })?;
    let mut shares = shares.into_inner();
    let (mut bytes, mut mapped) = (0, 0);
    for s in shares.values_mut() {
        s.fraction_mapped = if s.bytes == 0 {
            0.0
        } else {
            (s.mapped as f64 / s.bytes as f64 * 1000.0).round() / 1000.0
        };
        bytes += s.bytes;
        mapped += s.mapped;
    }
    let streams: u32 = shares.values().map(|s| s.streams).sum();
    let predicted = mapping_predicted(&net, path, optlen)?;
    ctx.observe_timing("mapped_where_predicted", &predicted);
    ctx.observe_timing("mapped_by_class", &shares);
    ctx.observe("struct_optlen", optlen);
    Ok(Verdict::pass(format!(
        "{streams} random streams, {bytes} bytes, all received intact; {:.1} % of them mapped",
        if bytes == 0 {
            0.0
        } else {
            mapped as f64 * 100.0 / bytes as f64
        }
    )))
}

/// The stream where the model predicts mapping: a MSG_ZEROCOPY sender writing whole pages
/// from page-aligned memory, segments that carry whole pages (the aligned MTU), a receiver
/// that asks for 64 pages at a time with no copy buffer. At least half of it must come
/// through the mapping; otherwise the property could pass with nothing mapped at all.
const PREDICTED_MIN_PER_MILLE: u64 = 500;

fn mapping_predicted(net: &RxNet, path: Path, optlen: i32) -> Result<String> {
    require_mapped(net, path, optlen, &predicted_stream())
}

fn predicted_stream() -> Stream {
    Stream {
        family: Family::V4,
        seg: Sizing::AlignedMtu,
        zc_sender: true,
        pattern: Pattern::Stamped { seed: 0x5eed },
        size: 1 << 20,
        chunk: 64 * 4096,
        request_pages: 64,
        copybuf: 0,
        unmap: Unmap::Kernel,
    }
}

/// Receives `s` and demands that a real share of it was mapped; returns the share, in tens
/// of percent (the exact figure varies from run to run).
fn require_mapped(net: &RxNet, path: Path, optlen: i32, s: &Stream) -> Result<String> {
    let got = one_stream(net, path, optlen, s)?;
    let mapped = got.received_by(Source::Mapped);
    let per_mille = mapped * 1000 / s.size as u64;
    let shown = format!(
        "{mapped} of {} bytes mapped ({}.{} %) from a MSG_ZEROCOPY sender over the aligned MTU",
        s.size,
        per_mille / 10,
        per_mille % 10
    );
    if per_mille < PREDICTED_MIN_PER_MILLE {
        return Err(fail_with(
            format!("where the model predicts mapping, only {shown}"),
            format!("stream {s:?}"),
        ));
    }
    let decile = (per_mille / 100).min(9) * 10;
    Ok(format!("{decile}-{} % mapped", decile + 10))
}

/// Sends one stream and receives it through the reference loop; returns the checker.
fn one_stream(net: &RxNet, path: Path, optlen: i32, s: &Stream) -> Result<StreamCheck> {
    let (mtu, maxseg) = match s.seg {
        Sizing::AlignedMtu => (aligned_mtu(s.family), None),
        Sizing::Mtu(m) => (m, None),
        Sizing::MaxSeg(m) => (path.max_mtu(), Some(m)),
    };
    net.set_mtu(mtu)?;
    let conn = net.connect(
        s.family,
        ConnOpts {
            zc_sender: s.zc_sender,
            maxseg,
        },
    )?;
    let page = socket_mmap::page_size();
    let window = s.request_pages as usize * page;
    let map = SocketMapping::readable(conn.receiver.as_fd(), window, Sharing::Shared)?;
    let data = Arc::new(s.pattern.bytes(s.size));
    let supports_copybuf = optlen >= harness::sys::tcp_zc_receive::field_end::FLAGS as i32;
    let cfg = RxConfig {
        request: window as u32,
        copybuf: if supports_copybuf { s.copybuf } else { 0 },
        unmap: if supports_copybuf {
            s.unmap
        } else {
            Unmap::Kernel
        },
        optlen,
        spin_limit: 50,
        deadline: Duration::from_secs(10),
    };
    let plan = SendPlan::whole(s.size, s.chunk, s.zc_sender, Ending::Fin);
    let tx = sender::spawn(conn.sender, data, plan);
    let mut check = StreamCheck::new(s.pattern, s.size as u64);
    let received = rx_loop::receive(&conn.receiver, &map, &cfg, &mut check);
    let mut sent = sender::join(tx)?;
    let t = received?;
    anyhow::ensure!(
        sent.bytes == s.size as u64,
        "the sender sent {} of {} bytes",
        sent.bytes,
        s.size
    );
    if t.end != End::Eof {
        return Err(fail_with(
            format!(
                "after the FIN the receive loop ended with {:?} instead of EIO",
                t.end
            ),
            format!(
                "{} of {} bytes received; {}; last calls:\n{}",
                check.position(),
                s.size,
                rx_loop::recv_after(&conn.receiver),
                t.tail.join("\n")
            ),
        ));
    }
    check.finish().map_err(|v| {
        fail_with(
            format!("EIO came before the whole stream: {v}"),
            format!("last calls:\n{}", t.tail.join("\n")),
        )
    })?;
    sender::settle(&mut sent)?;
    Ok(check)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The requirement can fail: the same stream from a plain sender maps nothing.
    #[test]
    fn a_stream_that_maps_nothing_fails_the_requirement() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root for namespaces");
            return;
        }
        let net = RxNet::new(Path::Loopback).expect("net");
        let optlen = struct_len();
        let plain = Stream {
            zc_sender: false,
            ..predicted_stream()
        };
        let e = require_mapped(&net, Path::Loopback, optlen, &plain).unwrap_err();
        let v = crate::outcome::verdict_of_error(e);
        assert_eq!(v.outcome, crate::outcome::Outcome::Fail, "{v:?}");
        let shown = require_mapped(&net, Path::Loopback, optlen, &predicted_stream())
            .expect("the predicted stream maps");
        assert!(shown.ends_with("% mapped"), "{shown}");
    }
}
