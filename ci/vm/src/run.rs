//! One matrix run: choose the kernels, fetch and unpack them, build the static binaries,
//! decide the accelerator, then boot the kernels a few at a time and write one report each.
//! A kernel that fails in any way becomes a report that says so; the others go on.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use zccheck::outcome::Outcome;
use zccheck::report::matrix::Provenance;
use zccheck::report::Report;

use crate::apt::{Apt, Resolved};
use crate::build::StaticBinaries;
use crate::collect::{self, RunSettings};
use crate::config::KernelList;
use crate::kernel::{self, Kernel};
use crate::qemu::{self, Accel};

/// A user's own kernel.
#[derive(Debug, Clone)]
pub struct Custom {
    pub label: String,
    pub image: PathBuf,
    pub modules: Option<PathBuf>,
    pub config: Option<PathBuf>,
}

pub struct Options {
    pub list: KernelList,
    /// Labels to run; empty = the whole list (and the native column).
    pub labels: Vec<String>,
    pub custom: Option<Custom>,
    pub out: PathBuf,
    pub cache: PathBuf,
    pub jobs: usize,
    pub accel: Accel,
    pub smp: u32,
    pub memory_mb: u32,
    pub settings: RunSettings,
    pub refresh: bool,
    pub verbose: bool,
    /// Extra kernel command-line words for every guest.
    pub append: Vec<String>,
    pub binaries: StaticBinaries,
}

enum Job {
    Debian {
        label: String,
        resolved: Resolved,
        debs: Vec<PathBuf>,
    },
    Custom(Custom),
    Native {
        label: String,
    },
}

impl Job {
    fn label(&self) -> &str {
        match self {
            Job::Debian { label, .. } | Job::Native { label } => label,
            Job::Custom(c) => &c.label,
        }
    }
}

/// How one kernel went.
pub struct Done {
    pub label: String,
    pub file: PathBuf,
    pub ok: bool,
    pub line: String,
    pub took: Duration,
}

/// The jobs the options select, with Debian kernels resolved and downloaded.
fn plan(o: &Options) -> Result<Vec<Job>> {
    let native = o.list.native.as_ref().map(|n| n.label.clone());
    let wants = |l: &str| {
        if o.labels.is_empty() {
            o.custom.is_none()
        } else {
            o.labels.iter().any(|x| x == l)
        }
    };
    let known: Vec<&str> = o
        .list
        .kernels
        .iter()
        .map(|k| k.label.as_str())
        .chain(native.as_deref())
        .collect();
    for l in &o.labels {
        if !known.contains(&l.as_str()) {
            bail!(
                "no kernel labelled {l:?} in the list (labels: {})",
                known.join(", ")
            );
        }
    }
    let debian: Vec<_> = o.list.kernels.iter().filter(|k| wants(&k.label)).collect();
    let mut jobs = Vec::new();
    if !debian.is_empty() {
        let apt = Apt::new(&o.cache, &o.list.suites)?;
        let updated = apt.update(o.refresh)?;
        let mut resolved = Vec::new();
        for k in &debian {
            let r = match apt.resolve(k) {
                Ok(r) => r,
                // Lists a day old may lack a kernel named in a new list entry: refresh once.
                Err(_) if !updated => {
                    apt.update(true)?;
                    apt.resolve(k)?
                }
                Err(e) => return Err(e),
            };
            eprintln!(
                "zccheck-vm: {} -> {} {}",
                k.label,
                r.packages.join(" + "),
                r.version
            );
            resolved.push(r);
        }
        apt.download(&resolved.iter().collect::<Vec<_>>())?;
        for (k, r) in debian.iter().zip(resolved) {
            let debs = r.deb_files(&apt.debs);
            jobs.push(Job::Debian {
                label: k.label.clone(),
                resolved: r,
                debs,
            });
        }
    }
    if let Some(c) = &o.custom {
        jobs.push(Job::Custom(c.clone()));
    }
    if let Some(n) = native.filter(|n| wants(n)) {
        jobs.push(Job::Native { label: n });
    }
    Ok(jobs)
}

fn prepare(o: &Options, job: &Job) -> Result<(Kernel, PathBuf)> {
    let k = match job {
        Job::Debian {
            label,
            resolved,
            debs,
        } => kernel::from_debian(&o.cache, label, resolved, debs, &o.list.all_modules())?,
        Job::Custom(c) => kernel::custom(
            &o.cache,
            &c.label,
            &c.image,
            c.modules.as_deref(),
            c.config.as_deref(),
            &o.list.all_modules(),
        )?,
        Job::Native { .. } => unreachable!("the native column boots nothing"),
    };
    let work = work_dir(o, &k.label);
    std::fs::create_dir_all(&work)?;
    let initrd = work.join("initrd.gz");
    crate::initramfs::build(
        &initrd,
        &k,
        &o.binaries.init,
        &o.binaries.zccheck,
        &o.settings.zccheck_args(),
    )
    .with_context(|| format!("building the initramfs of {}", k.label))?;
    Ok((k, initrd))
}

fn work_dir(o: &Options, label: &str) -> PathBuf {
    o.cache.join("work").join(label)
}

fn vm<'a>(
    o: &'a Options,
    k: &'a Kernel,
    initrd: &'a Path,
    accel: Accel,
    append: &'a [&'a str],
    timeout: Duration,
    work: &'a Path,
) -> qemu::Vm<'a> {
    qemu::Vm {
        label: &k.label,
        image: &k.image,
        initrd,
        accel,
        smp: o.smp,
        memory_mb: o.memory_mb,
        timeout,
        append,
        work,
        echo: o.verbose,
    }
}

/// Runs every selected kernel; returns how each went, in list order.
pub fn run(o: &Options) -> Result<Vec<Done>> {
    let started = Instant::now();
    let jobs = plan(o)?;
    if jobs.is_empty() {
        bail!("no kernel selected");
    }
    std::fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
    let accel = match jobs.iter().find(|j| !matches!(j, Job::Native { .. })) {
        Some(first) if o.accel == Accel::Auto => {
            let (choice, why) = qemu::choose_accel(o.accel, |a| {
                let (k, initrd) = prepare(o, first)?;
                let work = work_dir(o, &k.label).join("probe");
                qemu::boot(&vm(
                    o,
                    &k,
                    &initrd,
                    a,
                    &[vm_init::PROBE_ARG],
                    Duration::from_secs(60),
                    &work,
                ))
            });
            eprintln!("zccheck-vm: accelerator {}: {why}", choice.name());
            choice
        }
        _ => o.accel,
    };
    let queue = Mutex::new(jobs.into_iter().enumerate().collect::<VecDeque<_>>());
    let done = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..o.jobs.max(1) {
            s.spawn(|| loop {
                let Some((i, job)) = queue.lock().expect("job queue").pop_front() else {
                    break;
                };
                let d = one(o, &job, accel);
                eprintln!("zccheck-vm: {}", d.line);
                done.lock().expect("results").push((i, d));
            });
        }
    });
    let mut done = done.into_inner().expect("results");
    done.sort_by_key(|(i, _)| *i);
    for (_, d) in &done {
        eprintln!(
            "zccheck-vm:   {:<8} {:>6.1} s  {}",
            d.label,
            d.took.as_secs_f64(),
            if d.ok { "report" } else { "NO REPORT" }
        );
    }
    eprintln!(
        "zccheck-vm: {} kernels in {:.1} s wall ({} at a time)",
        done.len(),
        started.elapsed().as_secs_f64(),
        o.jobs.max(1)
    );
    Ok(done.into_iter().map(|(_, d)| d).collect())
}

/// One kernel, start to report file. Never fails: a failure is the report's content.
fn one(o: &Options, job: &Job, accel: Accel) -> Done {
    let started = Instant::now();
    let label = job.label().to_string();
    let file = o.out.join(format!("{label}.json"));
    let result: Result<(Report, bool)> = match job {
        Job::Native { label } => {
            crate::native::run(label, &o.binaries.zccheck, &work_dir(o, label), &o.settings)
        }
        _ => prepare(o, job).and_then(|(k, initrd)| {
            let work = work_dir(o, &k.label);
            let append: Vec<&str> = o.append.iter().map(String::as_str).collect();
            let boot = qemu::boot(&vm(
                o,
                &k,
                &initrd,
                accel,
                &append,
                o.settings.vm_timeout,
                &work,
            ))?;
            Ok(collect::from_boot(&k, &boot, accel.name(), &o.settings))
        }),
    };
    let (report, ok) = match result {
        Ok(r) => r,
        Err(e) => {
            // The kernel could not even be prepared or booted: still a report, saying why.
            let k = Kernel {
                label: label.clone(),
                release: "unknown".into(),
                image: Default::default(),
                config: None,
                modules: vec![],
                builtin: vec![],
                missing: vec![],
                source: match job {
                    Job::Custom(_) => "custom".into(),
                    _ => "debian".into(),
                },
                packages: match job {
                    Job::Debian { resolved, .. } => resolved.pinned(),
                    _ => vec![],
                },
                wanted: vec![],
            };
            let mut r = collect::empty_report(&k, "vm", &o.settings, started.elapsed());
            Provenance {
                label: label.clone(),
                source: k.source.clone(),
                packages: k.packages.clone(),
                status: zccheck::report::matrix::STATUS_NO_REPORT.into(),
                cause: Some(format!("the VM could not be run: {e:#}")),
                ..Default::default()
            }
            .attach(&mut r);
            (r, false)
        }
    };
    let took = started.elapsed();
    let line = summary_line(&label, &report, took);
    let written = std::fs::write(&file, report.to_json() + "\n");
    let console = if ok || matches!(job, Job::Native { .. }) {
        String::new()
    } else {
        format!(
            " (console: {})",
            work_dir(o, &label).join("console.log").display()
        )
    };
    let (ok, line) = match written {
        Ok(()) => (ok, format!("{line}{console} -> {}", file.display())),
        Err(e) => (
            false,
            format!("{line}; cannot write {}: {e}", file.display()),
        ),
    };
    Done {
        label,
        file,
        ok,
        line,
        took,
    }
}

fn summary_line(label: &str, r: &Report, took: Duration) -> String {
    let p = Provenance::of(r).ok().flatten().unwrap_or_default();
    if let Some(cause) = &p.cause {
        return format!(
            "[{label}] NO REPORT after {:.1} s: {cause}",
            took.as_secs_f64()
        );
    }
    let counts: Vec<String> = Outcome::ALL
        .iter()
        .map(|o| (o, r.count(*o)))
        .filter(|(_, n)| *n > 0)
        .map(|(o, n)| format!("{n} {o}"))
        .collect();
    let secs = |key: &str| {
        p.extra
            .get(key)
            .and_then(|v| v.as_u64())
            .map(|ms| ms as f64 / 1000.0)
    };
    let phases = match (secs("boot_ms"), secs("run_ms"), secs("shutdown_ms")) {
        (Some(b), Some(r), Some(s)) => format!(
            " (boot {b:.1} s, run {r:.1} s, shutdown {s:.1} s: {})",
            p.extra
                .get("ended")
                .and_then(|v| v.as_str())
                .unwrap_or("ended")
        ),
        _ => p
            .boot_to_init_ms
            .map(|ms| format!(" (init at {:.1} s)", ms as f64 / 1000.0))
            .unwrap_or_default(),
    };
    format!(
        "[{label}] Linux {}: {} cases ({}), report after {:.1} s{phases}",
        r.kernel.release,
        r.cases.len(),
        counts.join(", "),
        p.boot_to_report_ms.unwrap_or(0) as f64 / 1000.0,
    )
}
