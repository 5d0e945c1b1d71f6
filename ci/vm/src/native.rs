//! The matrix's column for the machine's own kernel: the same static zccheck, run natively.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use zccheck::report::matrix::{Provenance, STATUS_NO_REPORT, STATUS_REPORT};
use zccheck::report::Report;

use crate::collect::{empty_report, RunSettings};
use crate::kernel::Kernel;

pub fn run(label: &str, zccheck: &Path, work: &Path, s: &RunSettings) -> Result<(Report, bool)> {
    std::fs::create_dir_all(work)?;
    let json = work.join("report.json");
    let log = work.join("output.log");
    let _ = std::fs::remove_file(&json);
    let started = Instant::now();
    let out = std::fs::File::create(&log)?;
    let mut child = Command::new(zccheck)
        .arg("run")
        .arg("--json")
        .arg(&json)
        .args(s.zccheck_args())
        .env("ZCCHECK_ENVIRONMENT", "native")
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("starting {}", zccheck.display()))?;
    let deadline = started + s.vm_timeout;
    let timed_out = loop {
        if child.try_wait()?.is_some() {
            break false;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break true;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = started.elapsed();
    let mut prov = Provenance {
        label: label.into(),
        source: "native".into(),
        status: STATUS_REPORT.into(),
        boot_to_report_ms: Some(took.as_millis() as u64),
        ..Default::default()
    };
    let loaded = if timed_out {
        Err(anyhow::anyhow!(
            "no report within {} s",
            s.vm_timeout.as_secs()
        ))
    } else {
        Report::load(&json)
    };
    match loaded {
        Ok(mut r) => {
            prov.attach(&mut r);
            Ok((r, true))
        }
        Err(e) => {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            prov.status = STATUS_NO_REPORT.into();
            prov.cause = Some(format!("{e:#}"));
            prov.console_tail = lines[lines.len().saturating_sub(crate::qemu::TAIL_LINES)..]
                .iter()
                .map(|l| l.to_string())
                .collect();
            let release = nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default();
            let k = Kernel {
                label: label.into(),
                release,
                image: Default::default(),
                config: None,
                modules: vec![],
                builtin: vec![],
                missing: vec![],
                source: "native".into(),
                packages: vec![],
                wanted: vec![],
            };
            let mut r = empty_report(&k, "native", s, took);
            prov.attach(&mut r);
            Ok((r, false))
        }
    }
}
