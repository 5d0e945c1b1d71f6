//! The `zccheck bench` command: options, the run, and its outputs (terminal tables, a JSON
//! report with a `bench` section, an SVG plot).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use harness::kernel::KernelInfo;
use harness::privileges::Privileges;

use super::modes::{Mode, ZCRX_NODEV};
use super::{render, run, svg, Options};
use crate::probes::ProbeRecord;
use crate::report::{Environment, Report, Settings, Tool};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Fewer sizes and repetitions: under 10 seconds.
    #[arg(long)]
    pub quick: bool,
    /// Write a JSON report with a `bench` section here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the plot (SVG) here.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Only these paths (loopback, veth, deadend); repeat or separate with commas.
    #[arg(long, value_delimiter = ',', value_parser = ["loopback", "veth", "deadend"])]
    pub path: Vec<String>,
}

/// Runs the benchmark and writes its outputs. The caller has made sure namespaces can be
/// built (root, or a user namespace of its own).
pub fn main(args: &BenchArgs) -> Result<()> {
    // Fail on a bad output path now, not after the run.
    let check = |p: &Option<PathBuf>, flag: &str| -> Result<()> {
        if let Some(p) = p {
            std::fs::File::create(p)
                .with_context(|| format!("cannot write the {flag} output '{}'", p.display()))?;
        }
        Ok(())
    };
    check(&args.json, "--json")?;
    check(&args.svg, "--svg")?;
    let mut opts = if args.quick {
        Options::quick()
    } else {
        Options::standard()
    };
    if !args.path.is_empty() {
        opts.paths.retain(|p| args.path.iter().any(|a| a == p.id()));
    }
    let started = Instant::now();
    let kernel = KernelInfo::detect()?;
    let bench = run(&opts)?;
    print!("{}", render::terminal(&bench));
    if let Some(p) = &args.svg {
        std::fs::write(p, svg::plot(&bench)).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &args.json {
        let mut probes: Vec<ProbeRecord> = Vec::new();
        for m in Mode::ALL {
            let mut reqs = m.requirements(false);
            if m == Mode::MsgZerocopy {
                reqs.extend(m.requirements(true));
            }
            for r in reqs {
                if !probes.iter().any(|p| p.name == r.name) {
                    probes.push(ProbeRecord {
                        name: r.name.to_string(),
                        answer: r.answer(),
                    });
                }
            }
        }
        debug_assert!(probes.iter().any(|p| p.name == ZCRX_NODEV.name));
        let mut report = Report {
            schema_version: crate::report::SCHEMA_VERSION,
            tool: Tool {
                name: "zccheck".into(),
                version: env!("CARGO_PKG_VERSION").into(),
            },
            kernel,
            environment: Environment {
                kind: bench.context.environment.clone(),
                privileges: Privileges::detect()?,
                cpus: bench.context.cpus,
                restored_sysctls: vec![],
                extra: Default::default(),
            },
            settings: Settings {
                filter: vec![],
                seed: 0,
                cases: 0,
                timeout_s: 0,
                extra: Default::default(),
            },
            probes,
            cases: vec![],
            totals: BTreeMap::new(),
            duration_ms: started.elapsed().as_millis() as u64,
            extra: Default::default(),
            bench: Some(bench),
        };
        report.tally();
        std::fs::write(p, report.to_json()).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}
