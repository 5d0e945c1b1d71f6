//! Memory limits of MSG_ZEROCOPY (SEMANTICS.md R5.1–R5.3, OBSERVED-6.18 C).
//!
//! * `send.optmem.*`: every pending notification lives in the socket's option memory. With
//!   `net.core.optmem_max` set to what one unread notification uses, the next zero-copy send
//!   fails with ENOBUFS and takes no id, a plain send still works, and once the queue is
//!   drained zero-copy works again with the next id. The knob is per namespace since 6.8
//!   (f5769faeec36) and written inside the case's namespace; before, it exists only in the
//!   initial namespace and the case changes it machine-wide, journalled and restored (needs
//!   root in the initial user namespace, else skipped).
//! * `send.memlock.*`: without CAP_IPC_LOCK, each send charges `(size >> PAGE_SHIFT) + 2`
//!   pages against RLIMIT_MEMLOCK (`model::limits`); the send whose charge does not fit fails
//!   with ENOBUFS at exactly the predicted size and takes no id, a plain send of the same size
//!   works, a limit of 0 refuses even one byte, and (UDP) corked appends are charged one by
//!   one. The sends run on a thread switched to an unused uid: it holds no capability, and
//!   the per-uid `locked_vm` counter it is charged to is shared with nothing else.
//!
//! Both cases put every limit back and check that they did.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use anyhow::{Context, Result};
use harness::sockets::{Family, Proto, Sink};
use harness::sys::errqueue;
use harness::sys::{creds, sockopt};
use harness::sysctl::{self, Scope};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use serde::Serialize;
use socket2::Socket;

use super::flow::{await_ids, completions, errno_result, show, zc_send, Path, Variant};
use crate::case::{Area, Case, Ctx};
use crate::model::coalescing::{Behaviour, CopyRule, IdModel, SendCall};
use crate::model::limits::{
    accounted_size, appends_within, largest_single_send, limit_pages, pages_charged,
};
use crate::outcome::{expect, fail_with, skipped, Verdict};
use crate::probes::errno_name;

const OPTMEM_MAX: &str = "net.core.optmem_max";

pub fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for proto in [Proto::Tcp, Proto::Udp] {
        let v = Variant::new(proto, Family::V4, Path::Loopback);
        cases.push(
            Case::new(
                format!("send.optmem.{}", v.tag()),
                Area::Send,
                "unread notifications fill optmem: ENOBUFS, no id; plain sends still work; \
             draining recovers (optmem_max restored)",
                v.requires(),
                move |ctx| optmem(ctx, v),
            )
            .serial(
                "sets net.core.optmem_max, which is global before 6.8: every socket's option \
             memory limit changes while it runs",
            ),
        );
        cases.push(
            Case::new(
                format!("send.memlock.{}", v.tag()),
                Area::Send,
                "without CAP_IPC_LOCK each send charges (size>>PAGE_SHIFT)+2 pages to \
             RLIMIT_MEMLOCK: ENOBUFS at the predicted size, no id (limit restored)",
                v.requires(),
                move |ctx| memlock(ctx, v),
            )
            .serial(
                "counts pages against a per-user locked_vm counter, which other cases' zero-copy \
             sends and rings share when rootless",
            ),
        );
    }
    cases
}

/// `SO_MEMINFO[SK_MEMINFO_OPTMEM]`: the option memory the socket holds now.
fn optmem_in_use(fd: BorrowedFd<'_>) -> Result<u32> {
    let mut buf = [0u8; 4 * (libc::SK_MEMINFO_DROPS as usize + 1)];
    let size = buf.len();
    let len = sockopt::get_raw(fd, libc::SOL_SOCKET, libc::SO_MEMINFO, &mut buf, size)
        .context("getsockopt(SO_MEMINFO)")?;
    let at = 4 * libc::SK_MEMINFO_OPTMEM as usize;
    anyhow::ensure!(len >= at + 4, "SO_MEMINFO returned {len} bytes");
    Ok(u32::from_ne_bytes(
        buf[at..at + 4].try_into().expect("4 bytes"),
    ))
}

/// One step of a limits case: what was done, what came back.
#[derive(Debug, Serialize)]
struct Step {
    what: String,
    result: String,
}

fn outcome(r: &Result<usize, i32>) -> String {
    match r {
        Ok(n) => n.to_string(),
        Err(e) => errno_name(*e),
    }
}

fn optmem(ctx: &mut Ctx, v: Variant) -> Result<Verdict> {
    let outer_before = sysctl::read_outer(OPTMEM_MAX)?;
    let net = v.build()?;
    let ns = &net.topo.sender().ns;
    // Per namespace since 6.8: the knob is visible inside a fresh namespace. Before, only
    // the initial namespace has it.
    let inner = sysctl::read_in(ns, OPTMEM_MAX).ok();
    ctx.observe("optmem_max_in_new_namespace", &inner);
    if inner.is_none() && !ctx.privileges.machine_wide() {
        return Err(skipped(
            "net.core.optmem_max is global on this kernel and changing it needs root in the \
             initial user namespace (env.machine_wide_privileges)",
        ));
    }
    let f = net.flow(true)?;
    let _sink = Sink::start(f.receiver.try_clone()?, false)?;
    let fd = f.sender.as_fd();
    let mut model = IdModel::new(v.proto, Behaviour::NO_EMPTY_UDP_SENDS, CopyRule::Unknown);
    let mut steps = Vec::new();
    let data = vec![0x11u8; 1000];
    let call = SendCall {
        len: data.len(),
        more: false,
    };
    let send = |what: &str, model: &mut IdModel, steps: &mut Vec<Step>| {
        let r = errno_result(zc_send(&f.sender, &data, false));
        steps.push(Step {
            what: what.into(),
            result: outcome(&r),
        });
        let evidence = serde_json::to_string_pretty(&*steps).unwrap_or_default();
        model
            .send(call, r)
            .map_err(|d| fail_with(d.to_string(), evidence))?;
        Ok::<_, anyhow::Error>(r)
    };
    let idle = optmem_in_use(fd)?;
    let _first = send("zero-copy send", &mut model, &mut steps)?;
    if !errqueue::wait_err(fd, super::flow::COMPLETION_WAIT)? {
        return Err(crate::outcome::fail(format!(
            "the first send was not notified within {:?}",
            super::flow::COMPLETION_WAIT
        )));
    }
    let pending = optmem_in_use(fd)?;
    let per_notification = pending.saturating_sub(idle);
    anyhow::ensure!(
        per_notification > 0,
        "an unread notification uses no option memory ({idle} -> {pending} bytes)"
    );
    // Room for exactly what is in use now: the next allocation cannot fit, and once the
    // notification is read, one allocation (never larger than the notification it becomes)
    // fits again.
    let limit = pending.to_string();
    let guard = match inner {
        Some(_) => sysctl::set_in(ns, OPTMEM_MAX, &limit)?,
        None => sysctl::set_global(OPTMEM_MAX, &limit)?,
    };
    let scope = guard.scope;
    let refused = send(
        "zero-copy send with one notification unread",
        &mut model,
        &mut steps,
    )?;
    let plain = zc_plain(&f.sender, &data);
    steps.push(Step {
        what: "plain send".into(),
        result: outcome(&plain),
    });
    let first = completions(&errqueue::drain(fd)?);
    let drained = optmem_in_use(fd)?;
    steps.push(Step {
        what: "drain".into(),
        result: show(&first),
    });
    let again = send("zero-copy send after the drain", &mut model, &mut steps)?;
    let second = completions(&await_ids(&f.sender, 1)?);
    drop(guard);
    let evidence = || serde_json::to_string_pretty(&steps).unwrap_or_default();
    expect(refused == Err(libc::ENOBUFS), || {
        format!(
            "with optmem_max at the {pending} bytes in use, a zero-copy send gave {}, not \
             ENOBUFS",
            outcome(&refused)
        )
    })
    .map_err(|e| e.context(evidence()))?;
    expect(plain == Ok(data.len()), || {
        format!(
            "a plain send failed while optmem was full: {}",
            outcome(&plain)
        )
    })?;
    expect(again.is_ok(), || {
        format!(
            "after draining, a zero-copy send still failed: {}",
            outcome(&again)
        )
    })?;
    model
        .observe(&first)
        .and_then(|_| model.observe(&second))
        .and_then(|_| model.finish())
        .map_err(|d| fail_with(d.to_string(), evidence()))?;
    let outer_after = sysctl::read_outer(OPTMEM_MAX)?;
    anyhow::ensure!(
        outer_after == outer_before,
        "{OPTMEM_MAX} was {outer_before} before the case and is {outer_after} after"
    );
    ctx.observe("optmem_scope", scope);
    ctx.observe("optmem_per_notification", per_notification);
    ctx.observe("optmem_after_drain", drained.saturating_sub(idle));
    ctx.observe("steps", &steps);
    Ok(Verdict::pass(format!(
        "ENOBUFS with one notification unread ({per_notification} bytes of optmem, {}), \
         no id taken; the next id after the drain was 1",
        match scope {
            Scope::PerNamespace => "per namespace",
            Scope::Global => "global, restored",
        }
    )))
}

/// A send without MSG_ZEROCOPY.
fn zc_plain(s: &Socket, data: &[u8]) -> Result<usize, i32> {
    errno_result(harness::sys::zerocopy::send_flags(
        s.as_fd(),
        data,
        libc::MSG_NOSIGNAL,
    ))
}

/// Restores RLIMIT_MEMLOCK on drop.
struct MemlockGuard {
    soft: libc::rlim_t,
    hard: libc::rlim_t,
}

impl Drop for MemlockGuard {
    fn drop(&mut self) {
        if let Err(e) = setrlimit(Resource::RLIMIT_MEMLOCK, self.soft, self.hard) {
            eprintln!("zccheck: could not restore RLIMIT_MEMLOCK: {e}");
        }
    }
}

/// A uid no account uses, unique to this process: the per-uid `locked_vm` counter it gets is
/// fresh and nobody else's sends are charged to it.
fn scratch_uid() -> u32 {
    2_000_000_000 + std::process::id()
}

fn memlock(ctx: &mut Ctx, v: Variant) -> Result<Verdict> {
    let page =
        nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)?.context("no page size")? as usize;
    let net = v.build()?;
    let f = net.flow(true)?;
    let _sink = Sink::start(f.receiver.try_clone()?, false)?;
    let (soft, hard) = getrlimit(Resource::RLIMIT_MEMLOCK).context("getrlimit")?;
    let limit_bytes = 16 * page as u64;
    let limit = limit_pages(limit_bytes, page);
    // A hard limit only a privileged process may raise: the environment's, not the kernel's.
    if hard < limit_bytes {
        return Err(skipped(format!(
            "the hard RLIMIT_MEMLOCK ({hard}) is below the {limit_bytes} bytes the case needs"
        )));
    }
    let guard = MemlockGuard { soft, hard };
    setrlimit(Resource::RLIMIT_MEMLOCK, limit_bytes, hard).context("setrlimit(MEMLOCK)")?;
    let work = || sends_under_limit(&f.sender, v.proto, page, limit, limit_bytes, hard);
    let (steps, model) = if ctx.privileges.machine_wide() {
        let uid = scratch_uid();
        ctx.observe("charged_to", "an unused uid with no capabilities");
        creds::run_as_uid(uid, work)??
    } else {
        // Rootless: CAP_IPC_LOCK in the initial namespace is already absent; the charges go
        // to the caller's own uid.
        ctx.observe("charged_to", "the caller's uid (rootless)");
        work()?
    };
    drop(guard);
    let now = getrlimit(Resource::RLIMIT_MEMLOCK)?;
    anyhow::ensure!(
        now == (soft, hard),
        "RLIMIT_MEMLOCK was {soft}/{hard} before the case and is {}/{} after",
        now.0,
        now.1
    );
    let evidence = || serde_json::to_string_pretty(&steps).unwrap_or_default();
    if let Some(bad) = steps.iter().find(|s| !s.as_predicted) {
        return Err(fail_with(
            format!(
                "{}: the kernel answered {}, the charge of {} pages against a limit of {} \
                 pages predicts {}",
                bad.what, bad.result, bad.pages, limit, bad.predicted
            ),
            evidence(),
        ));
    }
    let stats = model.map_err(|d| fail_with(d.to_string(), evidence()))?;
    ctx.observe("page_size", page);
    ctx.observe("limit_pages", limit);
    ctx.observe("steps", &steps);
    Ok(Verdict::pass(format!(
        "every send succeeded or failed with ENOBUFS as (size>>PAGE_SHIFT)+2 pages against \
         {limit} pages predicts; {} ids reported",
        stats.ids
    )))
}

/// One send under the limit and what the accounting predicted for it.
#[derive(Debug, Serialize)]
struct Charged {
    what: String,
    pages: u64,
    predicted: &'static str,
    result: String,
    as_predicted: bool,
}

type Finished = Result<crate::model::completions::Coalescing, crate::model::coalescing::Deviation>;

/// Runs on the unprivileged thread: single sends around the predicted boundary, a plain send,
/// a zero limit, and (UDP) corked appends until the limit refuses one.
fn sends_under_limit(
    sock: &Socket,
    proto: Proto,
    page: usize,
    limit: u64,
    limit_bytes: u64,
    hard: libc::rlim_t,
) -> Result<(Vec<Charged>, Finished)> {
    let mut model = IdModel::new(proto, Behaviour::NO_EMPTY_UDP_SENDS, CopyRule::Unknown);
    let largest = largest_single_send(proto, limit, page).context("the limit fits no send")?;
    let buf = vec![0x5au8; largest + 1];
    let mut steps = Vec::new();
    let mut read = Vec::new();
    let mut deviation = None;
    // `used`: pages already charged by this datagram's earlier appends; `cap`: the limit in
    // force, in pages.
    let mut shot = |what: String,
                    len: usize,
                    more: bool,
                    (used, cap): (u64, u64),
                    first_part: bool,
                    model: &mut IdModel,
                    steps: &mut Vec<Charged>| {
        let pages = pages_charged(accounted_size(proto, len, first_part), page);
        let fits = used + pages <= cap;
        let r = errno_result(zc_send(sock, &buf[..len], more));
        let as_predicted = if fits {
            r.is_ok()
        } else {
            r == Err(libc::ENOBUFS)
        };
        steps.push(Charged {
            what,
            pages,
            predicted: if fits { "success" } else { "ENOBUFS" },
            result: outcome(&r),
            as_predicted,
        });
        if let Err(d) = model.send(SendCall { len, more }, r) {
            deviation.get_or_insert(d);
        }
        r.is_ok()
    };
    // Each single send completes before the next, so its charge is released.
    let settle = |model: &mut IdModel, read: &mut Vec<_>| -> Result<()> {
        let owed = model.issued() - super::flow::covered_of(read);
        read.extend(completions(&await_ids(sock, owed)?));
        Ok(())
    };
    for (what, len) in [
        ("the largest send the limit allows", largest),
        ("one byte more", largest + 1),
        ("one byte", 1),
    ] {
        shot(
            what.into(),
            len,
            false,
            (0, limit),
            true,
            &mut model,
            &mut steps,
        );
        settle(&mut model, &mut read)?;
    }
    let plain = zc_plain(sock, &buf[..largest + 1]);
    steps.push(Charged {
        what: "a plain send of one byte more".into(),
        pages: 0,
        predicted: "success",
        result: outcome(&plain),
        as_predicted: plain.is_ok(),
    });
    setrlimit(Resource::RLIMIT_MEMLOCK, 0, hard).context("setrlimit(MEMLOCK, 0)")?;
    shot(
        "one byte under a zero limit".into(),
        1,
        false,
        (0, 0),
        true,
        &mut model,
        &mut steps,
    );
    setrlimit(Resource::RLIMIT_MEMLOCK, limit_bytes, hard).context("setrlimit(MEMLOCK)")?;
    settle(&mut model, &mut read)?;
    if proto == Proto::Udp {
        // Each append extends the corked datagram's notification and is charged on its own
        // (R3.1, R5.2); the one that does not fit fails, and the datagram is discarded.
        let len = 5000;
        let fit = appends_within(len, limit, page);
        let mut used = 0;
        for i in 0..=fit {
            let pages = pages_charged(accounted_size(proto, len, i == 0), page);
            let ok = shot(
                format!("corked append #{}", i + 1),
                len,
                true,
                (used, limit),
                i == 0,
                &mut model,
                &mut steps,
            );
            if !ok {
                break;
            }
            used += pages;
        }
        if model.corked() {
            shot(
                "the datagram's last part".into(),
                1,
                false,
                (used, limit),
                false,
                &mut model,
                &mut steps,
            );
        }
        settle(&mut model, &mut read)?;
    }
    // Nothing must remain charged: a send of the largest size fits again.
    shot(
        "the largest send again".into(),
        largest,
        false,
        (0, limit),
        true,
        &mut model,
        &mut steps,
    );
    settle(&mut model, &mut read)?;
    errqueue::wait_err(sock.as_fd(), Duration::from_millis(20))?;
    read.extend(completions(&errqueue::drain(sock.as_fd())?));
    let finished = match deviation {
        Some(d) => Err(d),
        None => model.observe(&read).and_then(|_| model.finish()),
    };
    Ok((steps, finished))
}
