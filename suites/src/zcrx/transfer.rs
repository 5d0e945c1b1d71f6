//! One zero-copy receive end to end: a TCP connection (loopback or a veth pair), a sender
//! thread writing the test pattern, a device-less instance, one `RECV_ZC` request, and every
//! completion checked against the area model as it arrives. Buffers go back on the refill
//! ring by a chosen policy.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use harness::sockets::{self, Family};
use harness::sys::zcrx_ring::{page_size, Mapping, ZcCqe, ZcrxRing};
use harness::topology::{Loopback, Pair, PairConfig};
use std::net::Shutdown;

use socket2::Socket;

use crate::model::zcrx_area::{pattern, pattern_byte, AreaModel, End, Violation};

/// How long one transfer may take before the suite calls the request stuck.
pub const TRANSFER_DEADLINE: Duration = Duration::from_secs(4);

/// Where the stream goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Net {
    Loopback,
    Veth,
}

impl Net {
    pub fn name(self) -> &'static str {
        match self {
            Net::Loopback => "loopback",
            Net::Veth => "a veth pair",
        }
    }
}

/// When buffers go back to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returns {
    /// Never: the area runs out.
    Never,
    /// Each buffer at once, with a flush.
    Eager,
    /// On the refill ring at once, flushed only every `n` buffers (or when the ring is full).
    Lazy(u32),
}

/// One transfer.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Bytes the sender writes.
    pub total: usize,
    /// Sizes of the sender's writes, cycled.
    pub writes: Vec<usize>,
    /// The request's length limit (0: none).
    pub limit: u32,
    /// Whether the sender closes its side after `total`.
    pub eof: bool,
    pub returns: Returns,
    pub area_pages: usize,
    pub rq_entries: u32,
    pub seed: u64,
    /// Most bytes the sender lets run ahead of what the receiver has seen (`None`: no
    /// pacing). A device-less instance lends a buffer per copied chunk, so data arriving
    /// faster than buffers come back exhausts the area whatever the return policy; pacing
    /// keeps the cases that expect a clean end from depending on scheduling.
    pub window: Option<usize>,
}

/// What the sender and the receiver share: bytes seen by the receiver, and whether it is
/// done (a paced sender stops waiting then).
#[derive(Default)]
struct Progress {
    received: AtomicU64,
    done: AtomicBool,
}

/// What happened.
#[derive(Debug)]
pub struct Report {
    pub model: AreaModel,
    /// `None`: no final CQE before the deadline.
    pub end: Option<End>,
    /// The first broken rule, if any.
    pub violation: Option<Violation>,
    pub cqes: usize,
    pub flushes: usize,
    pub elapsed: Duration,
    /// What the sender managed (bytes, or its error).
    pub sent: std::result::Result<usize, String>,
}

impl Report {
    /// One line for reasons and evidence.
    pub fn summary(&self) -> String {
        format!(
            "{} bytes in {} data CQEs ({} CQEs, {} reused buffers, {} flushes), end {:?}, \
             sender {:?}, {:?}",
            self.model.delivered,
            self.model.data_cqes,
            self.cqes,
            self.model.reused,
            self.flushes,
            self.end,
            self.sent,
            self.elapsed
        )
    }
}

/// A connected pair on `net` and the topology that keeps it alive.
pub struct Conn {
    pub sender: Socket,
    pub receiver: Socket,
    _keep: Box<dyn std::any::Any>,
}

pub fn connect(net: Net) -> Result<Conn> {
    match net {
        Net::Loopback => {
            let lo = Loopback::new(None)?;
            let ip = lo.host.ip(Family::V4);
            let p = sockets::tcp_pair(&lo.host.ns, &lo.host.ns, ip)?;
            Ok(Conn {
                sender: p.client,
                receiver: p.server,
                _keep: Box::new(lo),
            })
        }
        Net::Veth => {
            let pair = Pair::new(PairConfig::default())?;
            let ip = pair.b.ip(Family::V4);
            let p = sockets::tcp_pair(&pair.a.ns, &pair.b.ns, ip)?;
            Ok(Conn {
                sender: p.client,
                receiver: p.server,
                _keep: Box::new(pair),
            })
        }
    }
}

/// Writes the plan's stream on `s`, then closes the write side if asked.
fn send_stream(
    s: Socket,
    plan: Plan,
    progress: Arc<Progress>,
) -> std::result::Result<usize, String> {
    let deadline = Instant::now() + TRANSFER_DEADLINE;
    let mut sent = 0usize;
    let mut i = 0usize;
    while sent < plan.total {
        if let Some(window) = plan.window {
            while sent as u64 > progress.received.load(Ordering::Acquire) + window as u64 {
                if progress.done.load(Ordering::Acquire) || Instant::now() >= deadline {
                    return Ok(sent);
                }
                thread::sleep(Duration::from_micros(200));
            }
        }
        let want = plan.writes[i % plan.writes.len()].clamp(1, plan.total - sent);
        i += 1;
        let chunk = pattern(plan.seed, sent as u64, want);
        let mut off = 0;
        while off < chunk.len() {
            match s.send_with_flags(&chunk[off..], libc::MSG_NOSIGNAL) {
                Ok(n) => off += n,
                Err(e) => return Err(format!("after {} bytes: {e}", sent + off)),
            }
        }
        sent += want;
    }
    if plan.eof {
        s.shutdown(Shutdown::Write)
            .map_err(|e| format!("shutdown(SHUT_WR): {e}"))?;
    }
    Ok(sent)
}

/// Registers a device-less instance on a fresh ring.
pub fn ring_with_instance(area_pages: usize, rq_entries: u32) -> Result<ZcrxRing> {
    let mut ring = ZcrxRing::new(1024, false).map_err(|e| anyhow::anyhow!("{e}"))?;
    let area = Mapping::anon(area_pages * page_size()).context("mmap area")?;
    ring.register_nodev(area, rq_entries)
        .context("device-less registration (the probe's was accepted)")?;
    Ok(ring)
}

/// Registers a device-less instance whose refill ring the kernel allocates.
pub fn ring_with_kernel_region(area_pages: usize, rq_entries: u32) -> Result<ZcrxRing> {
    let mut ring = ZcrxRing::new(1024, false).map_err(|e| anyhow::anyhow!("{e}"))?;
    let area = Mapping::anon(area_pages * page_size()).context("mmap area")?;
    ring.register_nodev_kernel_region(area, rq_entries)
        .context("device-less registration with a kernel-allocated refill region")?;
    Ok(ring)
}

/// Runs `plan` on `net`.
pub fn run(net: Net, plan: &Plan) -> Result<Report> {
    let conn = connect(net)?;
    let mut ring = ring_with_instance(plan.area_pages, plan.rq_entries)?;
    run_on(&mut ring, None, conn, plan)
}

/// Runs `plan` with `ring`'s instance, or with `id` on `ring` (an imported instance whose
/// area is `area`).
pub fn run_on(
    ring: &mut ZcrxRing,
    imported: Option<(u32, &Mapping)>,
    conn: Conn,
    plan: &Plan,
) -> Result<Report> {
    let start = Instant::now();
    let reg = ring.instance();
    let (id, area_len) = match (imported, reg) {
        (Some((id, m)), _) => (id, m.len() as u64),
        (None, Some(r)) => (r.zcrx_id, ring.area().expect("registered").len() as u64),
        (None, None) => bail!("the ring has no instance"),
    };
    let mut model = AreaModel::new(
        area_len,
        page_size() as u64,
        (plan.limit > 0).then_some(plan.limit as u64),
    );
    let Conn {
        sender,
        receiver,
        _keep,
    } = conn;
    let p = plan.clone();
    let progress = Arc::new(Progress::default());
    let shared = progress.clone();
    let tx = thread::Builder::new()
        .name("zcrx-sender".into())
        .spawn(move || send_stream(sender, p, shared))
        .context("spawning the sender")?;

    ring.push_recv(receiver.as_raw_fd(), plan.limit, id, 1, 0)?;
    let deadline = start + TRANSFER_DEADLINE;
    let mut end = None;
    let mut violation = None;
    let mut cqes = 0usize;
    let mut flushes = 0usize;
    let mut unflushed = 0u32;
    'outer: while Instant::now() < deadline {
        let batch = ring.wait(deadline - Instant::now(), |c| !c.is_empty())?;
        model.begin_batch();
        for c in batch {
            cqes += 1;
            if let Err(v) = feed(ring, imported.map(|(_, m)| m), &mut model, plan.seed, &c) {
                violation = Some(v);
                break 'outer;
            }
            if !c.more() {
                end = model.end();
                continue;
            }
            let off = c.area_offset();
            match plan.returns {
                Returns::Never => {}
                Returns::Eager => {
                    give_back(ring, &mut model, off, c.res as u32)?;
                    flush(ring, &mut model, id)?;
                    flushes += 1;
                }
                Returns::Lazy(n) => {
                    if !ring_has_room(ring) {
                        flush(ring, &mut model, id)?;
                        flushes += 1;
                        unflushed = 0;
                    }
                    give_back(ring, &mut model, off, c.res as u32)?;
                    unflushed += 1;
                    if unflushed >= n {
                        flush(ring, &mut model, id)?;
                        flushes += 1;
                        unflushed = 0;
                    }
                }
            }
        }
        progress.received.store(model.delivered, Ordering::Release);
        if end.is_some() {
            // Anything after the final CQE is a violation: give stragglers a moment.
            let late = ring.wait(Duration::from_millis(20), |_| false)?;
            model.begin_batch();
            for c in late {
                cqes += 1;
                if let Err(v) = feed(ring, imported.map(|(_, m)| m), &mut model, plan.seed, &c) {
                    violation = Some(v);
                }
            }
            break;
        }
    }
    progress.done.store(true, Ordering::Release);
    // Closing the receiver (unread data: a reset) wakes a sender blocked on a full window.
    let _ = receiver.shutdown(Shutdown::Both);
    drop(receiver);
    let sent = tx
        .join()
        .map_err(|_| anyhow::anyhow!("the sender thread panicked"))?;
    Ok(Report {
        model,
        end,
        violation,
        cqes,
        flushes,
        elapsed: start.elapsed(),
        sent,
    })
}

fn flush(ring: &ZcrxRing, model: &mut AreaModel, id: u32) -> Result<()> {
    ring.flush(id).context("ZCRX_CTRL_FLUSH_RQ")?;
    model.on_flush();
    Ok(())
}

fn ring_has_room(ring: &ZcrxRing) -> bool {
    ring.instance()
        .is_some_and(|r| ring.rq_pending() < r.rq_entries)
}

fn give_back(ring: &mut ZcrxRing, model: &mut AreaModel, off: u64, len: u32) -> Result<()> {
    if !model.on_return(off) {
        bail!("the suite returned a buffer at {off:#x} it did not hold");
    }
    if !ring.give_back(off, len) {
        bail!("the refill ring was full after a flush");
    }
    Ok(())
}

/// Checks one CQE against the model, reading the bytes it points at.
fn feed(
    ring: &ZcrxRing,
    imported_area: Option<&Mapping>,
    model: &mut AreaModel,
    seed: u64,
    c: &ZcCqe,
) -> std::result::Result<(), Violation> {
    if !c.more() {
        return model.on_final(c.res).map(drop);
    }
    let area = imported_area.or(ring.area()).expect("an area");
    let off = c.area_offset();
    let in_area = c.res > 0 && off.saturating_add(c.res as u64) <= area.len() as u64;
    let bytes = if in_area {
        area.read(off as usize, c.res as usize)
    } else {
        Vec::new()
    };
    model.on_data(off, c.res, &bytes, |pos| pattern_byte(seed, pos))
}
