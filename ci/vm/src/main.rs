//! `zccheck-vm`: runs the zccheck suite in VMs across kernel versions and publishes the matrix.
//!
//! ```text
//! cargo run -p zccheck-vm -- matrix          # every kernel of ci/kernels.toml -> fixtures/reports, REPORT.md
//! cargo run -p zccheck-vm -- run 5.10        # one kernel -> target/vm-reports/5.10.json
//! cargo run -p zccheck-vm -- run --kernel bzImage --modules DIR --label mine
//! ```

mod apt;
mod build;
mod collect;
mod config;
mod debver;
mod initramfs;
mod kernel;
mod modules;
mod native;
mod paths;
mod qemu;
mod run;
mod setup;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use crate::collect::RunSettings;
use crate::config::KernelList;
use crate::qemu::Accel;

#[derive(Parser)]
#[command(
    name = "zccheck-vm",
    version,
    about = "Runs zccheck in VMs across kernel versions and builds the matrix"
)]
struct Cli {
    /// The kernel list.
    #[arg(long, global = true)]
    kernels: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the host tools the runner needs (qemu), or print how with --print.
    Setup {
        #[arg(long)]
        print: bool,
    },
    /// Show which package and version each kernel of the list resolves to.
    List {
        /// Refresh the package lists first.
        #[arg(long)]
        refresh: bool,
        /// Print the list's entries as JSON (label, line, pins; `native` for the machine's
        /// own kernel) without resolving packages: what a CI engine fans out over.
        #[arg(long, conflicts_with = "refresh")]
        json: bool,
    },
    /// Run the suite on some kernels (default: all of the list); one report per kernel.
    Run {
        /// Labels from the kernel list (`native` is the machine's own kernel).
        labels: Vec<String>,
        /// Where the reports go (LABEL.json).
        #[arg(long, default_value = "target/vm-reports")]
        out: PathBuf,
        #[command(flatten)]
        args: RunArgs,
    },
    /// Print the kernel configuration fragment the suite needs (ci/config), to merge into a
    /// tree with scripts/kconfig/merge_config.sh.
    Config,
    /// Run every kernel of the list into fixtures/reports, then write REPORT.md and the
    /// HTML page from those reports: the one command that regenerates everything.
    Matrix {
        #[command(flatten)]
        args: RunArgs,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Boot this kernel image (bzImage) instead of, or besides (with labels), the list's.
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// Its modules: a folder holding lib/modules/RELEASE, or RELEASE, or the modules
    /// themselves.
    #[arg(long, requires = "kernel")]
    modules: Option<PathBuf>,
    /// Its configuration file (else MODULES/config if there).
    #[arg(long, requires = "kernel")]
    config: Option<PathBuf>,
    /// The column label of --kernel.
    #[arg(long, default_value = "custom", requires = "kernel")]
    label: String,
    /// VMs at a time (default: the host's CPUs).
    #[arg(long, default_value_t = host_cpus())]
    jobs: usize,
    /// Seconds a kernel has from boot to report before it is stopped and reported as hung.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    #[arg(long, value_enum, default_value_t = Accel::Auto)]
    accel: Accel,
    /// vCPUs per VM. One, with as many VMs as CPUs, makes the matrix fastest: on 2 cores
    /// under TCG, 2 VMs x 1 CPU ran 6.1 and 6.12 in 84 s, 1 VM x 2 CPUs in 189 s (ci/README.md).
    /// A single kernel on a KVM runner does better with all its CPUs (`--smp $(nproc)`).
    #[arg(long, default_value_t = 1)]
    smp: u32,
    /// Memory per VM in MiB.
    #[arg(long, default_value_t = 512)]
    memory: u32,
    /// Random cases per property test (the same on every kernel, so columns compare).
    #[arg(long, default_value_t = 64)]
    cases: u32,
    /// Seed of every run (fixed, so a regenerated matrix runs the same random cases).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Time limit of one case, in seconds.
    #[arg(long, default_value_t = 60)]
    case_timeout: u64,
    /// Only cases matching these patterns (as `zccheck run --filter`).
    #[arg(long, value_delimiter = ',')]
    filter: Vec<String>,
    /// Refresh the package lists even if they are less than a day old.
    #[arg(long)]
    refresh: bool,
    /// Install missing host tools first (qemu; root only).
    #[arg(long)]
    setup: bool,
    /// Extra words for every guest's kernel command line (e.g. `acpi=off`).
    #[arg(long, value_delimiter = ' ', allow_hyphen_values = true)]
    append: Vec<String>,
    /// Echo every VM's console, prefixed with its label.
    #[arg(long, short)]
    verbose: bool,
    /// Also exit 1 when a report shows the runner did not give the suite what it needs: an
    /// `error` outcome, a blocked `env.*` probe, or a wanted module the kernel lacks (a
    /// `fail` is the kernel's, not the runner's, and does not count).
    #[arg(long)]
    strict: bool,
    /// Cargo profile of the static binaries it builds (`vm`: quicker to build, for CI).
    #[arg(long, default_value = "release", conflicts_with = "zccheck")]
    build_profile: String,
    /// Use these static binaries instead of building them.
    #[arg(long, requires = "init")]
    zccheck: Option<PathBuf>,
    #[arg(long, requires = "zccheck")]
    init: Option<PathBuf>,
}

fn host_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("zccheck-vm: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    let list_path = cli
        .kernels
        .clone()
        .unwrap_or_else(paths::default_kernel_list);
    match cli.command {
        Cmd::Config => {
            print!("{}", zccheck::kconfig::FRAGMENT);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Setup { print } => {
            let steps = setup::plan()?;
            if steps.is_empty() {
                eprintln!("zccheck-vm: the host has everything the runner needs");
            } else if print {
                steps.iter().for_each(|s| println!("{s}"));
            } else {
                setup::run(&steps)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::List { json: true, .. } => {
            let list = KernelList::load(&list_path)?;
            println!("{}", serde_json::to_string(&list_entries(&list))?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::List { refresh, .. } => {
            let list = KernelList::load(&list_path)?;
            let apt = apt::Apt::new(&paths::cache_dir(), &list.suites)?;
            apt.update(refresh)?;
            for k in &list.kernels {
                match apt.resolve(k) {
                    Ok(r) => println!(
                        "{:<8} {} {}  (uname -r {})",
                        k.label,
                        r.packages.join(" + "),
                        r.version,
                        r.release
                    ),
                    Err(e) => println!("{:<8} unresolved: {e:#}", k.label),
                }
            }
            if let Some(n) = &list.native {
                println!("{:<8} this machine's kernel, run natively", n.label);
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run { labels, out, args } => {
            let out = absolute(out);
            let strict = args.strict;
            let needed = config::KernelList::load(&list_path)?.modules;
            let done = run_kernels(&list_path, labels, out, args)?;
            Ok(exit_code(&done, strict, &needed))
        }
        Cmd::Matrix { args } => {
            let strict = args.strict;
            let ws = paths::workspace();
            let out = ws.join("fixtures/reports");
            let needed = config::KernelList::load(&list_path)?.modules;
            let done = run_kernels(&list_path, vec![], out, args)?;
            let files: Vec<PathBuf> = done.iter().map(|d| d.file.clone()).collect();
            let matrix = zccheck::report::matrix::Matrix::load(&files)?;
            // Benchmarks (`zccheck bench --json fixtures/bench/LABEL.json`) are appended.
            let mut benches: Vec<PathBuf> = std::fs::read_dir(ws.join("fixtures/bench"))
                .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            benches.retain(|p| p.extension().is_some_and(|e| e == "json"));
            benches.sort();
            let sections = zccheck::bench::render::matrix_sections(&benches)?;
            let md = ws.join("REPORT.md");
            let html = ws.join("docs/matrix.html");
            std::fs::write(&md, matrix.markdown_with(&ws, &sections))
                .with_context(|| format!("writing {}", md.display()))?;
            std::fs::create_dir_all(ws.join("docs"))?;
            std::fs::write(
                &html,
                zccheck::report::html::render_with(&matrix, &ws.join("docs"), &sections),
            )
            .with_context(|| format!("writing {}", html.display()))?;
            eprintln!("zccheck-vm: wrote {} and {}", md.display(), html.display());
            Ok(exit_code(&done, strict, &needed))
        }
    }
}

/// One entry of `list --json`: a job of a fanned-out matrix.
#[derive(Debug, serde::Serialize, PartialEq)]
struct ListEntry {
    label: String,
    /// `MAJOR.MINOR` of a Debian kernel; absent for the machine's own kernel.
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    package: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    /// True for the kernel of the machine the job runs on (no VM).
    native: bool,
}

fn list_entries(list: &KernelList) -> Vec<ListEntry> {
    let mut out: Vec<ListEntry> = list
        .kernels
        .iter()
        .map(|k| ListEntry {
            label: k.label.clone(),
            line: Some(k.line.clone()),
            package: k.package.clone(),
            version: k.version.clone(),
            native: false,
        })
        .collect();
    out.extend(list.native.iter().map(|n| ListEntry {
        label: n.label.clone(),
        line: None,
        package: None,
        version: None,
        native: true,
    }));
    out
}

fn run_kernels(
    list_path: &std::path::Path,
    labels: Vec<String>,
    out: PathBuf,
    a: RunArgs,
) -> Result<Vec<run::Done>> {
    let list = KernelList::load(list_path)?;
    let steps = setup::plan()?;
    if !steps.is_empty() {
        if !a.setup {
            let shown: Vec<String> = steps.iter().map(|s| format!("  {s}")).collect();
            bail!(
                "{} is missing; add --setup to install it, or run:\n{}",
                setup::QEMU,
                shown.join("\n")
            );
        }
        setup::run(&steps)?;
    }
    let binaries = match (a.zccheck, a.init) {
        (Some(zccheck), Some(init)) => {
            let (zccheck, init) = (absolute(zccheck), absolute(init));
            build::ensure_static(&zccheck)?;
            build::ensure_static(&init)?;
            build::StaticBinaries { zccheck, init }
        }
        _ => build::build(&paths::workspace(), &a.build_profile)?,
    };
    let custom = a.kernel.map(|image| run::Custom {
        label: a.label.clone(),
        image: absolute(image),
        modules: a.modules.map(absolute),
        config: a.config.map(absolute),
    });
    if let Some(c) = &custom {
        if !config::is_label(&c.label) {
            bail!("--label {:?} must be [A-Za-z0-9._-]", c.label);
        }
    }
    let opts = run::Options {
        list,
        labels,
        custom,
        out,
        cache: paths::cache_dir(),
        jobs: a.jobs,
        accel: a.accel,
        smp: a.smp,
        memory_mb: a.memory,
        settings: RunSettings {
            filter: a.filter,
            seed: a.seed,
            cases: a.cases,
            case_timeout_s: a.case_timeout,
            vm_timeout: Duration::from_secs(a.timeout),
        },
        refresh: a.refresh,
        verbose: a.verbose,
        append: a.append,
        binaries,
    };
    run::run(&opts)
}

/// 0 when every kernel produced its report (whatever its verdicts), 1 otherwise; with
/// `strict`, also 1 when a report shows the suite lacked something the runner provides.
fn exit_code(done: &[run::Done], strict: bool, needed_modules: &[String]) -> ExitCode {
    let bad: Vec<&str> = done
        .iter()
        .filter(|d| !d.ok)
        .map(|d| d.label.as_str())
        .collect();
    if !bad.is_empty() {
        eprintln!("zccheck-vm: no report from {}", bad.join(", "));
        return ExitCode::from(1);
    }
    if strict {
        let problems: Vec<String> = done
            .iter()
            .flat_map(|d| {
                runner_problems(&d.file, needed_modules)
                    .into_iter()
                    .map(move |p| format!("{}: {p}", d.label))
            })
            .collect();
        if !problems.is_empty() {
            eprintln!(
                "zccheck-vm: the runner left the suite short:\n  {}",
                problems.join("\n  ")
            );
            return ExitCode::from(1);
        }
    }
    eprintln!("zccheck-vm: all {} kernels reported", done.len());
    ExitCode::SUCCESS
}

/// What in a report points at the runner rather than the kernel.
fn runner_problems(file: &std::path::Path, needed_modules: &[String]) -> Vec<String> {
    let report = match zccheck::report::Report::load(file) {
        Ok(r) => r,
        Err(e) => return vec![format!("{e:#}")],
    };
    let mut out: Vec<String> = report
        .cases
        .iter()
        .filter(|c| c.outcome == zccheck::outcome::Outcome::Error)
        .map(|c| {
            format!(
                "error in {}: {}",
                c.id,
                c.reason.lines().next().unwrap_or("")
            )
        })
        .collect();
    out.extend(
        report
            .probes
            .iter()
            .filter(|p| {
                p.name.starts_with("env.")
                    && matches!(p.answer, zccheck::probes::Answer::Blocked(_))
            })
            .map(|p| format!("probe {} blocked: {}", p.name, p.answer.detail())),
    );
    if let Ok(Some(p)) = zccheck::report::matrix::Provenance::of(&report) {
        out.extend(
            p.missing_modules
                .iter()
                .filter(|m| needed_modules.iter().any(|n| n.replace('-', "_") == **m))
                .map(|m| format!("module {m} is missing")),
        );
    }
    out
}

fn absolute(p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        p
    } else {
        std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_json_has_every_kernel_then_native() {
        let list = KernelList::load(&paths::default_kernel_list()).unwrap();
        let entries = list_entries(&list);
        assert_eq!(entries.len(), list.kernels.len() + 1);
        assert_eq!(entries[0].label, list.kernels[0].label);
        assert!(entries.last().unwrap().native);
        let json = serde_json::to_string(&entries).unwrap();
        assert!(json.starts_with("[{\"label\":"), "{json}");
        assert!(!json.contains("null"), "{json}");
    }
}
