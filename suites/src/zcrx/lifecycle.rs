//! Lifecycle of a device-less instance: closing a ring with a receive in flight, exporting
//! the instance into a second ring, flushing the refill ring by id, and `RECV_ZC` requests
//! the kernel must refuse (bad descriptor, the ring's own descriptor, a bad instance id).

use std::os::fd::AsRawFd;
use std::time::Duration;

use anyhow::{Context, Result};
use harness::sys::zcrx_ring::{page_size, ZcCqe, ZcrxRing};
use socket2::Socket;

use super::register::NODEV;
use super::transfer::{self, Net, Plan, Returns};
use crate::case::{Area, Case, Ctx};
use crate::model::zcrx_area::End;
use crate::outcome::{fail, fail_with, unsupported, Verdict};
use crate::probes::{errno_name, io_errno, NET_ADMIN};

const AREA_PAGES: usize = 16;
const RQ_ENTRIES: u32 = 16;

pub fn cases() -> Vec<Case> {
    let req = || vec![NET_ADMIN, NODEV];
    vec![
        Case::new(
            "zcrx.lifecycle.exit_inflight",
            Area::Zcrx,
            "closing the ring while RECV_ZC is armed and holds lent buffers is clean: no early \
             final CQE, and the kernel registers a new instance afterwards",
            req(),
            exit_inflight,
        ),
        Case::new(
            "zcrx.lifecycle.export_import",
            Area::Zcrx,
            "an instance exported with ZCRX_CTRL_EXPORT and imported into a second ring \
             receives there into the first ring's area; bad imports give EBADF",
            req(),
            export_import,
        ),
        Case::new(
            "zcrx.lifecycle.flush_ids",
            Area::Zcrx,
            "ZCRX_CTRL_FLUSH_RQ: the instance's id answers 0, an id with no instance is refused",
            req(),
            flush_ids,
        ),
        Case::new(
            "zcrx.lifecycle.bad_recv",
            Area::Zcrx,
            "RECV_ZC on fd -1 or the ring's own fd (EBADF or ENOTSOCK), or naming no instance \
             (EINVAL): one final CQE without F_MORE",
            req(),
            bad_recv,
        ),
    ]
}

fn exit_inflight(ctx: &mut Ctx) -> Result<Verdict> {
    let conn = transfer::connect(Net::Loopback)?;
    let mut ring = transfer::ring_with_instance(AREA_PAGES, RQ_ENTRIES)?;
    let id = ring.instance().expect("registered").zcrx_id;
    ring.push_recv(conn.receiver.as_raw_fd(), 0, id, 7, 0)?;
    ring.submit()?;
    let early = ring.wait(Duration::from_millis(20), |_| false)?;
    if let Some(c) = early.iter().find(|c| !c.more()) {
        return Err(fail(format!(
            "an armed RECV_ZC with nothing to receive ended at once: res {}",
            c.res
        )));
    }
    let bytes = crate::model::zcrx_area::pattern(1, 0, 3 * page_size());
    send_all(&conn.sender, &bytes)?;
    let got = ring.wait(Duration::from_secs(2), |c| {
        c.iter().any(|c| c.more() && c.res > 0)
    })?;
    let lent = got.iter().filter(|c| c.more() && c.res > 0).count();
    ctx.observe("data_cqes_before_exit", lent);
    if let Some(c) = got.iter().find(|c| !c.more()) {
        return Err(fail(format!(
            "RECV_ZC ended (res {}) while the connection was open",
            c.res
        )));
    }
    // Close with the request armed and buffers lent; more data queued behind it.
    send_all(&conn.sender, &bytes)?;
    drop(ring);
    drop(conn);
    let again = transfer::ring_with_instance(AREA_PAGES, RQ_ENTRIES)
        .context("a new instance after the exit")?;
    drop(again);
    Ok(Verdict::pass(format!(
        "ring closed with RECV_ZC armed and {lent} data CQEs' buffers lent; a new instance \
         registers afterwards"
    )))
}

fn send_all(s: &Socket, bytes: &[u8]) -> Result<()> {
    let mut off = 0;
    while off < bytes.len() {
        off += s
            .send_with_flags(&bytes[off..], libc::MSG_NOSIGNAL)
            .context("send")?;
    }
    Ok(())
}

fn export_import(ctx: &mut Ctx) -> Result<Verdict> {
    let exporter = transfer::ring_with_instance(AREA_PAGES, RQ_ENTRIES)?;
    let id = exporter.instance().expect("registered").zcrx_id;
    let box_fd = match exporter.export(id) {
        Ok(fd) => fd,
        Err(e) => {
            ctx.observe("export", io_errno(&e));
            return match e.raw_os_error() {
                Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => Err(unsupported(format!(
                    "IORING_REGISTER_ZCRX_CTRL(ZCRX_CTRL_EXPORT) of a registered instance: {}",
                    io_errno(&e)
                ))),
                _ => Err(fail(format!(
                    "exporting a registered instance answered {}",
                    io_errno(&e)
                ))),
            };
        }
    };
    let mut importer = ZcrxRing::new(1024, false).map_err(|e| anyhow::anyhow!("{e}"))?;
    // Bad imports first: not a descriptor, and a descriptor that is no zcrx instance.
    let (pipe_r, _pipe_w) = nix::unistd::pipe().context("pipe")?;
    let mut wrong = Vec::new();
    for (label, fd) in [("fd_minus_1", -1), ("pipe", pipe_r.as_raw_fd())] {
        let r = importer.import(fd);
        let shown = match &r {
            Ok(id) => format!("0 (id {id})"),
            Err(e) => io_errno(e),
        };
        ctx.observe(format!("import_{label}"), &shown);
        if !matches!(&r, Err(e) if e.raw_os_error() == Some(libc::EBADF)) {
            wrong.push(format!("import of {label}: {shown} instead of EBADF"));
        }
    }
    if !wrong.is_empty() {
        return Err(fail(wrong.join("; ")));
    }
    let imported = importer
        .import(box_fd.as_raw_fd())
        .map_err(|e| fail(format!("importing an exported instance: {}", io_errno(&e))))?;
    drop(box_fd);
    let plan = Plan {
        total: 3 * page_size() + 5,
        writes: vec![page_size()],
        limit: 0,
        eof: true,
        returns: Returns::Never,
        area_pages: AREA_PAGES,
        rq_entries: RQ_ENTRIES,
        seed: ctx.seed,
        window: None,
    };
    let conn = transfer::connect(Net::Loopback)?;
    let area = exporter.area().expect("registered");
    let r = transfer::run_on(&mut importer, Some((imported, area)), conn, &plan)?;
    if let Some(v) = &r.violation {
        return Err(fail_with(
            format!("RECV_ZC through the imported instance: {v}"),
            r.summary(),
        ));
    }
    if r.end != Some(End::Clean) || r.model.delivered != plan.total as u64 {
        return Err(fail_with(
            "RECV_ZC through the imported instance did not deliver the stream and end",
            r.summary(),
        ));
    }
    drop(importer);
    drop(exporter);
    Ok(Verdict::pass(format!(
        "imported as id {imported}: {}; bad imports EBADF",
        r.summary()
    )))
}

fn flush_ids(ctx: &mut Ctx) -> Result<Verdict> {
    let ring = transfer::ring_with_instance(AREA_PAGES, RQ_ENTRIES)?;
    let id = ring.instance().expect("registered").zcrx_id;
    let good = ring.flush(id);
    let bad = ring.flush(id + 1);
    let show = |r: &std::io::Result<()>| match r {
        Ok(()) => "0".to_string(),
        Err(e) => io_errno(e),
    };
    ctx.observe("good_id", show(&good));
    ctx.observe("bad_id", show(&bad));
    if let Err(e) = &good {
        if matches!(
            e.raw_os_error(),
            Some(libc::EINVAL) | Some(libc::EOPNOTSUPP)
        ) {
            return Err(unsupported(format!(
                "IORING_REGISTER_ZCRX_CTRL(ZCRX_CTRL_FLUSH_RQ) for a registered instance: {}",
                io_errno(e)
            )));
        }
        return Err(fail(format!(
            "flushing the refill ring of instance {id} answered {}",
            io_errno(e)
        )));
    }
    if bad.is_ok() {
        return Err(fail(format!(
            "flushing instance {} (none registered) answered 0",
            id + 1
        )));
    }
    Ok(Verdict::pass(format!(
        "id {id}: 0; id {}: {}",
        id + 1,
        show(&bad)
    )))
}

fn bad_recv(ctx: &mut Ctx) -> Result<Verdict> {
    let mut ring = transfer::ring_with_instance(AREA_PAGES, RQ_ENTRIES)?;
    let id = ring.instance().expect("registered").zcrx_id;
    let conn = transfer::connect(Net::Loopback)?;
    let ring_fd = ring.fd();
    let tries: [(&str, i32, u32, &[i32]); 3] = [
        ("fd_minus_1", -1, id, &[libc::EBADF, libc::ENOTSOCK]),
        ("ring_fd", ring_fd, id, &[libc::EBADF, libc::ENOTSOCK]),
        (
            "bad_zcrx_id",
            conn.receiver.as_raw_fd(),
            id + 1,
            &[libc::EINVAL],
        ),
    ];
    let mut seen = Vec::new();
    let mut wrong = Vec::new();
    for (n, (label, fd, zid, allowed)) in tries.into_iter().enumerate() {
        let ud = 100 + n as u64;
        ring.push_recv(fd, 0, zid, ud, 0)?;
        let got: Vec<ZcCqe> = ring
            .wait(Duration::from_secs(1), |c| {
                c.iter().any(|c| c.user_data == ud)
            })?
            .into_iter()
            .filter(|c| c.user_data == ud)
            .collect();
        let shown = match got.as_slice() {
            [] => "no CQE within 1 s".to_string(),
            [c] if !c.more() && c.res < 0 => errno_name(-c.res),
            other => format!("{other:?}"),
        };
        ctx.observe(label, &shown);
        let ok =
            matches!(got.as_slice(), [c] if !c.more() && c.res < 0 && allowed.contains(&-c.res));
        if !ok {
            wrong.push(format!(
                "{label}: {shown} (want one final CQE with {})",
                allowed
                    .iter()
                    .map(|&e| errno_name(e))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ));
        }
        seen.push(format!("{label}: {shown}"));
    }
    if !wrong.is_empty() {
        return Err(fail_with(wrong.join("; "), seen.join("\n")));
    }
    Ok(Verdict::pass(seen.join(", ")))
}
