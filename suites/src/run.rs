//! A whole run: probes, every selected case, and the report.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Result;
use harness::kernel::KernelInfo;
use harness::privileges::Privileges;

use crate::case::Case;
use crate::probes::{ProbeRecord, Requirement};
use crate::report::{terminal, Environment, Report, Settings, Tool};
use crate::runner::{self, RunOptions};

/// Every distinct requirement of `cases`, in first-seen order.
pub fn requirements_of(cases: &[Case]) -> Vec<Requirement> {
    let mut seen: Vec<Requirement> = Vec::new();
    for r in cases.iter().flat_map(|c| &c.requires) {
        if !seen.contains(r) {
            seen.push(*r);
        }
    }
    seen
}

pub fn probe_all(reqs: &[Requirement]) -> Vec<ProbeRecord> {
    reqs.iter()
        .map(|r| ProbeRecord {
            name: r.name.to_string(),
            answer: r.answer(),
        })
        .collect()
}

/// Runs `cases` one after another, printing progress, and returns the report.
pub fn execute(
    cases: &[Case],
    opts: &RunOptions,
    filters: &[String],
    restored_sysctls: Vec<(String, String)>,
    progress: bool,
) -> Result<Report> {
    let started = Instant::now();
    let kernel = KernelInfo::detect()?;
    let privileges = Privileges::detect()?;
    let probes = probe_all(&requirements_of(cases));
    let health = crate::health::RunStart::detect();
    if let Some(notice) = health.notice() {
        eprintln!("{notice}");
    }
    let mut records = Vec::with_capacity(cases.len());
    for (i, case) in cases.iter().enumerate() {
        let rec = runner::run_one(opts, case);
        if progress {
            terminal::progress(i + 1, cases.len(), &rec);
        }
        records.push(rec);
    }
    let mut report = Report {
        schema_version: crate::report::SCHEMA_VERSION,
        tool: Tool {
            name: "zccheck".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        kernel,
        environment: Environment {
            kind: std::env::var("ZCCHECK_ENVIRONMENT").unwrap_or_else(|_| "native".into()),
            privileges,
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            restored_sysctls,
            extra: [(
                "kernel_health".to_string(),
                serde_json::to_value(&health).unwrap_or_default(),
            )]
            .into_iter()
            .collect(),
        },
        settings: Settings {
            filter: filters.to_vec(),
            seed: opts.seed,
            cases: opts.cases,
            timeout_s: opts.timeout.as_secs(),
            extra: Default::default(),
        },
        probes,
        cases: records,
        totals: BTreeMap::new(),
        duration_ms: started.elapsed().as_millis() as u64,
        extra: Default::default(),
    };
    report.tally();
    Ok(report)
}
