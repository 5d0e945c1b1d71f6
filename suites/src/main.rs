//! The `zccheck` command line.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use harness::privileges::{self, Privileges};
use zccheck::outcome::Outcome;
use zccheck::registry;
use zccheck::report::{junit, ktap, terminal, Report};
use zccheck::run::{execute, probe_all, requirements_of};
use zccheck::runner::{self, RunOptions};

/// Property-test cases per property unless --cases says otherwise: enough to find the
/// common deviations, small enough that a whole run stays well under 20 seconds.
const DEFAULT_CASES: u32 = 64;

#[derive(Parser)]
#[command(
    name = "zccheck",
    version,
    about = "Conformance suite for Linux zero-copy networking"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the suite on this kernel (needs root or CAP_NET_ADMIN, or rootless mode).
    Run(RunArgs),
    /// List the cases, their areas and requirements.
    List {
        /// Only cases matching these patterns (area, id, id prefix, or glob with *).
        #[arg(long, value_delimiter = ',')]
        filter: Vec<String>,
    },
    /// Show what this kernel supports, as one table.
    Probe {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Merge reports (one per kernel) into the compatibility matrix (Markdown, and HTML).
    Matrix {
        /// Report files (`zccheck run --json`, or the VM runner's).
        #[arg(required = true)]
        reports: Vec<PathBuf>,
        /// Write the Markdown matrix here.
        #[arg(short, long)]
        out: PathBuf,
        /// Also write a static HTML page of the matrix here.
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// What changed from report A to report B: new passes, new failures, changed observed
    /// facts and probe answers. Exits 1 when B has new failures.
    Diff { a: PathBuf, b: PathBuf },
    /// Internal: run one case in this process and print its result.
    #[command(name = "__case", hide = true)]
    Case {
        id: String,
        #[arg(long)]
        seed: u64,
        #[arg(long)]
        cases: u32,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Only cases matching these patterns (area, id, id prefix, or glob with *); repeat or
    /// separate with commas.
    #[arg(long, value_delimiter = ',')]
    filter: Vec<String>,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Print KTAP (kselftest format) on stdout instead of the human summary.
    #[arg(long)]
    ktap: bool,
    /// Write a JUnit XML report here.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Random cases per property test.
    #[arg(long, default_value_t = DEFAULT_CASES, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    cases: u32,
    /// Seed of the random cases (default: a fresh one, printed in the report).
    #[arg(long)]
    seed: Option<u64>,
    /// Time limit of one case, in seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,
    /// Fail instead of entering a user namespace when not privileged.
    #[arg(long)]
    no_rootless: bool,
    /// Cases at a time, each in its own process (default: the CPUs available). Cases marked
    /// serial in `zccheck list` always run alone.
    #[arg(long, short = 'j', value_parser = clap::value_parser!(u16).range(1..=1024))]
    jobs: Option<u16>,
}

fn main() -> ExitCode {
    // Behave like a Unix filter when stdout is closed early (`zccheck list | head`).
    // SAFETY: restoring the default disposition of SIGPIPE before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // One line, naming what is wrong; clap's usage hint follows `--help`.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!(
                "zccheck: {} (see `zccheck --help`)",
                first.trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Cmd::Run(args) => cmd_run(args),
        Cmd::List { filter } => cmd_list(&filter).map(|_| ExitCode::SUCCESS),
        Cmd::Probe { json } => cmd_probe(json).map(|_| ExitCode::SUCCESS),
        Cmd::Matrix { reports, out, html } => {
            cmd_matrix(&reports, &out, html.as_deref()).map(|_| ExitCode::SUCCESS)
        }
        Cmd::Diff { a, b } => cmd_diff(&a, &b),
        Cmd::Case { id, seed, cases } => cmd_case(&id, seed, cases).map(|_| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("zccheck: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Opens an output file before the run, so a bad path fails in a second, not after it.
fn open_output(path: &Option<PathBuf>, flag: &str) -> Result<Option<(PathBuf, File)>> {
    path.as_ref()
        .map(|p| {
            File::create(p)
                .with_context(|| format!("cannot write the {flag} output '{}'", p.display()))
                .map(|f| (p.clone(), f))
        })
        .transpose()
}

/// Makes sure we may build namespaces: natively, or by entering a user namespace.
fn ensure_privileges(no_rootless: bool) -> Result<()> {
    let p = Privileges::detect()?;
    if p.cap_net_admin {
        return Ok(());
    }
    let need = "zccheck run needs root or CAP_NET_ADMIN to build network namespaces \
                (try `sudo zccheck run`)";
    if no_rootless {
        bail!("{need}; rootless mode was turned off with --no-rootless");
    }
    if let Err(why) = privileges::userns_allowed() {
        bail!("{need}; rootless mode is not possible here: {why}");
    }
    privileges::enter_rootless().with_context(|| format!("{need}; rootless mode failed"))?;
    eprintln!(
        "zccheck: not privileged; running rootless in a user namespace of its own \
         (cases that need machine-wide privileges are skipped)"
    );
    Ok(())
}

fn cmd_run(args: RunArgs) -> Result<ExitCode> {
    // Entering a user namespace requires a single-threaded process: do it first.
    ensure_privileges(args.no_rootless)?;
    let selected = registry::select(registry::all(), &args.filter)?;
    let json_out = open_output(&args.json, "--json")?;
    let junit_out = open_output(&args.junit, "--junit")?;
    let restored = harness::sysctl::recover().context("restoring sysctls a killed run left")?;
    for (k, v) in &restored {
        eprintln!("zccheck: restored {k}={v}, left changed by an earlier run that was killed");
    }
    let seed = args.seed.unwrap_or_else(fresh_seed);
    let opts = RunOptions {
        exe: std::env::current_exe().context("locating the zccheck binary")?,
        seed,
        cases: args.cases,
        timeout: Duration::from_secs(args.timeout),
        replay_exe: std::env::args().next().unwrap_or_else(|| "zccheck".into()),
    };
    let jobs = args
        .jobs
        .map_or_else(zccheck::run::default_jobs, usize::from);
    eprintln!(
        "zccheck: running {} cases, {jobs} at a time (seed {seed}, {} random cases per \
         property)",
        selected.len(),
        args.cases
    );
    let report = execute(&selected, &opts, &args.filter, restored, true, jobs)?;
    if let Some((path, mut f)) = json_out {
        f.write_all(report.to_json().as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some((path, mut f)) = junit_out {
        f.write_all(junit::render(&report)?.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if args.ktap {
        print!("{}", ktap::render(&report));
        eprint!("{}", terminal::summary(&report));
    } else {
        print!("{}", terminal::summary(&report));
    }
    let bad = report.count(Outcome::Fail) + report.count(Outcome::Error);
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn fresh_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    runner::case_seed(t, "seed") % 1_000_000_000
}

fn cmd_list(filter: &[String]) -> Result<()> {
    let cases = registry::select(registry::all(), filter)?;
    let width = cases.iter().map(|c| c.id.len()).max().unwrap_or(0);
    for c in &cases {
        let reqs: Vec<&str> = c.requires.iter().map(|r| r.name).collect();
        let serial = c
            .serial
            .map(|why| format!("  (serial: {why})"))
            .unwrap_or_default();
        println!(
            "{:<width$}  {}  [{}]{serial}",
            c.id,
            c.title,
            reqs.join(", ")
        );
    }
    eprintln!("{} cases", cases.len());
    Ok(())
}

fn cmd_probe(json: bool) -> Result<()> {
    let kernel = harness::kernel::KernelInfo::detect()?;
    let records = probe_all(&requirements_of(&registry::all()));
    if json {
        println!("{}", serde_json::to_string_pretty(&records)?);
        return Ok(());
    }
    println!("Linux {} ({})", kernel.release, kernel.arch);
    let width = records.iter().map(|r| r.name.len()).max().unwrap_or(0);
    for r in &records {
        let (word, detail) = match &r.answer {
            zccheck::probes::Answer::Present(d) => ("yes", d),
            zccheck::probes::Answer::Absent(d) => ("no", d),
            zccheck::probes::Answer::Blocked(d) => ("blocked", d),
        };
        println!("{:<width$}  {word:<7}  {detail}", r.name);
    }
    Ok(())
}

fn cmd_matrix(reports: &[PathBuf], out: &Path, html: Option<&Path>) -> Result<()> {
    let m = zccheck::report::matrix::Matrix::load(reports)?;
    let folder = |p: &Path| match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::write(out, m.markdown(&folder(out)))
        .with_context(|| format!("writing {}", out.display()))?;
    if let Some(h) = html {
        std::fs::write(h, zccheck::report::html::render(&m, &folder(h)))
            .with_context(|| format!("writing {}", h.display()))?;
    }
    eprintln!(
        "zccheck: matrix of {} kernels x {} cases written to {}{}",
        m.columns.len(),
        m.rows.len(),
        out.display(),
        html.map(|h| format!(" and {}", h.display()))
            .unwrap_or_default()
    );
    Ok(())
}

fn cmd_diff(a: &Path, b: &Path) -> Result<ExitCode> {
    let (ra, rb) = (Report::load(a)?, Report::load(b)?);
    let d = zccheck::report::diff::diff(&ra, &rb);
    print!("{}", d.render());
    Ok(if d.has_new_failures() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn cmd_case(id: &str, seed: u64, cases: u32) -> Result<()> {
    let case = registry::all()
        .into_iter()
        .find(|c| c.id == id)
        .with_context(|| format!("no case with id '{id}'"))?;
    runner::child_main(&case, seed, cases, Privileges::detect()?)
}
