//! Page-cache pages are never mapped into a receiver (SEMANTICS.md §9.4 B3, "tcp: add sanity
//! checks to rx zerocopy", 6.8 and stable): a page-aligned file sent with sendfile() over
//! loopback arrives as page-cache pages, and a zero-copy receive must map none of them (it
//! answers length 0 with a hint to read them). A kernel that maps them hands the receiver
//! pages of a file it may not be allowed to see: a failure, with the mapped bytes as evidence.
//!
//! So that a pass means something, a control stream of the same bytes sent with MSG_ZEROCOPY
//! over the same path must map: otherwise the path could not have shown the difference and
//! the case is an error.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::PathBuf;

use anyhow::{Context, Result};
use harness::sockets::Family;
use harness::sys::sendfile::sendfile;
use harness::sys::socket_mmap;

use super::fields::step;
use super::fixture::{Queued, Spec, ARRIVAL, PATTERN};
use super::net::{aligned_loopback, ConnOpts, Path};
use super::sender::wait_queued;
use crate::case::{Area, Case, Ctx};
use crate::model::stream::StreamCheck;
use crate::outcome::{fail_with, Verdict};

pub fn cases() -> Vec<Case> {
    vec![Case::new(
        "receive.sendfile.page_cache",
        Area::Receive,
        "pages of a file sent with sendfile() are never mapped into the receiver (6.8 sanity checks)",
        Path::Loopback.requires(),
        page_cache,
    )]
}

/// A file in the temporary directory, removed on drop.
struct TempFile {
    path: PathBuf,
    file: File,
}

impl TempFile {
    fn with(bytes: &[u8]) -> Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "zccheck-sendfile-{}-{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .subsec_nanos()
        ));
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        let this = TempFile {
            path,
            file: file.try_clone()?,
        };
        file.write_all(bytes)
            .with_context(|| format!("writing {}", this.path.display()))?;
        Ok(this)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn page_cache(ctx: &mut Ctx) -> Result<Verdict> {
    let page = socket_mmap::page_size();
    let len = 64 * page;
    let data = PATTERN.bytes(len);
    let file = TempFile::with(&data)?;
    let net = aligned_loopback(Family::V4)?;
    let conn = net.connect(Family::V4, ConnOpts::default())?;
    let mut offset = 0i64;
    while (offset as usize) < len {
        let left = len - offset as usize;
        let n = sendfile(conn.sender.as_fd(), file.file.as_fd(), &mut offset, left)
            .context("sendfile")?;
        anyhow::ensure!(n > 0, "sendfile sent nothing at offset {offset}");
    }
    wait_queued(&conn.receiver, len as u32, ARRIVAL)?;
    // The file stays until everything is received: removing it would take its pages out of
    // the page cache and make them look like any other page.
    let mut q = Queued {
        net,
        receiver: conn.receiver,
        sender: Some(conn.sender),
        check: StreamCheck::new(PATTERN, len as u64),
        len,
    };
    let map = q.map(16)?;
    let mut log = Vec::new();
    let mut mapped = Vec::new();
    for _ in 0..10_000 {
        if q.inq()? == 0 {
            break;
        }
        let at = q.check.position();
        let (rep, _) = step(&mut q, &map, 0, map.len() as u32, 0, &mut log)?;
        if rep.fields.length > 0 {
            mapped.push((at, rep.fields.length));
        }
    }
    q.check
        .finish()
        .map_err(|v| fail_with(v.to_string(), log.join("\n")))?;
    if !mapped.is_empty() {
        let total: u32 = mapped.iter().map(|(_, l)| l).sum();
        return Err(fail_with(
            format!(
                "{total} bytes of a file sent with sendfile() were mapped into the receiver: \
                 page-cache pages reached user space through TCP_ZEROCOPY_RECEIVE"
            ),
            format!(
                "mapped (stream offset, length): {mapped:?}; the mapped bytes were the file's\n{}",
                log.join("\n")
            ),
        ));
    }
    drop(file);
    ctx.observe("sendfile_calls", &log);

    // Control: the same bytes from a MSG_ZEROCOPY sender on the same path do map.
    let mut control = Queued::on(aligned_loopback(Family::V4)?, Spec::mappable(len))?;
    let cmap = control.map(16)?;
    let mut clog = Vec::new();
    let mut cmapped = 0u64;
    for _ in 0..10_000 {
        if control.inq()? == 0 {
            break;
        }
        let (rep, _) = step(&mut control, &cmap, 0, cmap.len() as u32, 0, &mut clog)?;
        cmapped += rep.fields.length as u64;
    }
    ctx.observe("control_mapped", cmapped);
    anyhow::ensure!(
        cmapped > 0,
        "the control stream (MSG_ZEROCOPY) mapped nothing either, so this path cannot show \
         whether page-cache pages are refused:\n{}",
        clog.join("\n")
    );
    Ok(Verdict::pass(format!(
        "0 of {len} sendfile bytes mapped (read via hints); the MSG_ZEROCOPY control mapped {cmapped}"
    )))
}
