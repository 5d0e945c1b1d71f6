//! The `zccheck` command line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
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
        /// Append the benchmark of this report (`zccheck bench --json`); repeatable.
        #[arg(long)]
        bench: Vec<PathBuf>,
    },
    /// What changed from report A to report B: new passes, new failures, changed observed
    /// facts and probe answers. Exits 1 when B has new failures.
    Diff {
        a: PathBuf,
        b: PathBuf,
        /// Also list facts that depend on timing (left out by default).
        #[arg(long)]
        all: bool,
    },
    /// What zero-copy costs and saves here: CPU per byte and throughput per mode, path and
    /// message size, and the crossover with the copy baseline (needs what `run` needs).
    Bench(zccheck::bench::cli::BenchArgs),
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
    #[arg(long, default_value_t = DEFAULT_CASES, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    cases: u32,
    /// Seed of the random cases (default: a fresh one, printed in the report).
    #[arg(long, allow_negative_numbers = true)]
    seed: Option<u64>,
    /// Time limit of one case, in seconds.
    #[arg(long, default_value_t = 60, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,
    /// Fail instead of entering a user namespace when not privileged.
    #[arg(long)]
    no_rootless: bool,
    /// Cases at a time, each in its own process (default: the CPUs available). Cases marked
    /// serial in `zccheck list` always run alone.
    #[arg(long, short = 'j', value_parser = clap::value_parser!(u16).range(1..=1024))]
    jobs: Option<u16>,
}

/// Exit code of a run that completed but whose report could not be written (or printed).
const EXIT_OUTPUT_LOST: u8 = 3;
/// Exit code when stdout was closed by its reader (`zccheck list | head`): what a shell
/// shows for a tool ended by SIGPIPE, without the noise.
const EXIT_STDOUT_CLOSED: u8 = 128 + libc::SIGPIPE as u8;

/// Writes to stderr; a failing stderr cannot be reported anywhere, so it is not.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

fn main() -> ExitCode {
    // SIGPIPE stays ignored (the Rust default): a closed stdout is an error the commands
    // handle (quietly), not a signal that would kill a run before its report is written.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            return match e.print() {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                    ExitCode::from(EXIT_STDOUT_CLOSED)
                }
                Err(e) => {
                    say!("zccheck: error: writing to standard output: {e}");
                    ExitCode::from(2)
                }
            };
        }
        Err(e) => {
            say!("zccheck: {} (see `zccheck --help`)", usage_error(&e));
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Cmd::Run(args) => cmd_run(args),
        Cmd::List { filter } => cmd_list(&filter).map(|_| ExitCode::SUCCESS),
        Cmd::Probe { json } => cmd_probe(json).map(|_| ExitCode::SUCCESS),
        Cmd::Matrix {
            reports,
            out,
            html,
            bench,
        } => cmd_matrix(&reports, &out, html.as_deref(), &bench).map(|_| ExitCode::SUCCESS),
        Cmd::Diff { a, b, all } => cmd_diff(&a, &b, all),
        Cmd::Bench(args) => ensure_privileges(false)
            .and_then(|()| zccheck::bench::cli::main(&args))
            .map(|()| ExitCode::SUCCESS),
        Cmd::Case { id, seed, cases } => {
            // A case process behaves as it always did: SIGPIPE kills it.
            // SAFETY: restoring the default disposition of SIGPIPE before any thread exists.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
            cmd_case(&id, seed, cases).map(|_| ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) if e.is::<StdoutClosed>() => ExitCode::from(EXIT_STDOUT_CLOSED),
        Err(e) => {
            say!("zccheck: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// One line saying what is wrong with the arguments, with the usage line when something is
/// missing, and any value it echoes shortened to one line.
fn usage_error(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand
    ) {
        let names: Vec<String> = Cli::command()
            .get_subcommands()
            .filter(|c| !c.is_hide_set())
            .map(|c| c.get_name().to_string())
            .collect();
        return format!(
            "no command given; usage: zccheck <COMMAND> (commands: {})",
            names.join(", ")
        );
    }
    let mut text = e.render().to_string();
    // A value clap echoes may be overlong or span lines: show it short, on one line.
    if let Some(ContextValue::String(v)) = e.get(ContextKind::InvalidValue) {
        text = text.replace(v.as_str(), &shorten(v));
    }
    let message = text.split("\n\n").next().unwrap_or_default();
    let message = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let message = message.trim_start_matches("error: ").to_string();
    let usage = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Usage: "))
        .map(str::to_string);
    match (e.kind(), usage) {
        (ErrorKind::MissingRequiredArgument, Some(u)) => format!("{message}; usage: {u}"),
        _ => message,
    }
}

/// A value echoed in a message: one line, at most about 60 characters.
fn shorten(v: &str) -> String {
    let one_line: String = v.escape_debug().collect();
    if one_line.chars().count() <= 60 {
        return one_line;
    }
    let head: String = one_line.chars().take(40).collect();
    format!("{head}… ({} characters)", v.chars().count())
}

/// Stdout was closed by its reader.
#[derive(Debug)]
struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Writes `text` to stdout. A closed pipe is [`StdoutClosed`] (callers end quietly); any
/// other failure (a full device) is an error naming stdout.
fn out(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(anyhow::Error::new(e).context("writing to standard output")),
    }
}

/// An output file, written only once complete: to a temporary file beside it, renamed over
/// it. Until then, whatever was there (an earlier report) is untouched, whatever happens to
/// the run.
struct OutputFile {
    path: PathBuf,
    flag: &'static str,
}

impl OutputFile {
    /// Checks now that `path` can be written, so a bad path fails in a second, not after
    /// the run; the file itself is not touched.
    fn check(path: &Option<PathBuf>, flag: &'static str) -> Result<Option<OutputFile>> {
        let Some(path) = path else { return Ok(None) };
        let f = OutputFile {
            path: path.clone(),
            flag,
        };
        anyhow::ensure!(
            !path.is_dir(),
            "cannot write the {flag} output '{}': it is a directory",
            path.display()
        );
        f.remove_stale_temps();
        let tmp = f.temp_path();
        std::fs::File::create(&tmp)
            .and_then(|_| std::fs::remove_file(&tmp))
            .with_context(|| format!("cannot write the {flag} output '{}'", path.display()))?;
        Ok(Some(f))
    }

    /// Removes the temporary files of earlier runs that were killed while writing here.
    fn remove_stale_temps(&self) {
        let Some(name) = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
        else {
            return;
        };
        let prefix = format!(".{name}.zccheck-");
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for e in entries.flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            let pid = file
                .strip_prefix(&prefix)
                .and_then(|r| r.strip_suffix(".tmp"))
                .and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    fn temp_path(&self) -> PathBuf {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "output".into());
        self.path
            .with_file_name(format!(".{name}.zccheck-{}.tmp", std::process::id()))
    }

    /// Writes `text` completely, then renames it into place.
    fn write(&self, text: &str) -> Result<()> {
        let tmp = self.temp_path();
        let done = (|| -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        if let Err(e) = done {
            let _ = std::fs::remove_file(&tmp);
            return Err(anyhow::Error::new(e).context(format!(
                "the {} output was not written to '{}'{}",
                self.flag,
                self.path.display(),
                if self.path.exists() {
                    " (the file there is the earlier one, untouched)"
                } else {
                    ""
                }
            )));
        }
        Ok(())
    }
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
    say!(
        "zccheck: not privileged; running rootless in a user namespace of its own \
         (cases that need machine-wide privileges are skipped)"
    );
    Ok(())
}

fn cmd_run(args: RunArgs) -> Result<ExitCode> {
    // Entering a user namespace requires a single-threaded process: do it first.
    ensure_privileges(args.no_rootless)?;
    let selected = select(&args.filter)?;
    let json_out = OutputFile::check(&args.json, "--json")?;
    let junit_out = OutputFile::check(&args.junit, "--junit")?;
    let restored = harness::sysctl::recover().context("restoring sysctls a killed run left")?;
    for (k, v) in &restored {
        say!("zccheck: restored {k}={v}, left changed by an earlier run that was killed");
    }
    let seed = args.seed.unwrap_or_else(fresh_seed);
    let opts = RunOptions {
        exe: std::env::current_exe().context("locating the zccheck binary")?,
        seed,
        cases: args.cases,
        timeout: Duration::from_secs(args.timeout),
        replay_exe: "zccheck".into(),
    };
    let jobs = args
        .jobs
        .map_or_else(zccheck::run::default_jobs, usize::from);
    say!(
        "zccheck: running {} cases, {jobs} at a time (seed {seed}, {} random cases per \
         property)",
        selected.len(),
        args.cases
    );
    let config_check = zccheck::kconfig::Check::running();
    match config_check {
        Some(check) => say!("zccheck: {}", check.summary(&selected)),
        None => say!(
            "zccheck: the kernel's configuration cannot be read (no /proc/config.gz or \
             /boot/config-*): cases are gated by probes only"
        ),
    }
    let mut report = execute(&selected, &opts, &args.filter, restored, true, jobs)?;
    if let Some(check) = config_check {
        report.environment.extra.insert(
            "kernel_config_off".into(),
            serde_json::json!(check.off_names()),
        );
    }
    let bad = report.count(Outcome::Fail) + report.count(Outcome::Error);
    let mut code = if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    // The summary first: whatever happens to the files, the person sees the result.
    let printed = if args.ktap {
        let p = out(&ktap::render(&report));
        say!("{}", terminal::summary(&report).trim_end());
        p
    } else {
        out(&terminal::summary(&report))
    };
    match printed {
        Ok(()) => {}
        // Nobody reads stdout any more: the files still get written.
        Err(e) if e.is::<StdoutClosed>() => {}
        Err(e) => {
            say!("zccheck: error: {e:#}; the run completed");
            code = ExitCode::from(EXIT_OUTPUT_LOST);
        }
    }
    let outputs = [
        json_out.map(|f| (f, Ok(report.to_json()))),
        junit_out.map(|f| (f, junit::render(&report))),
    ];
    for (file, text) in outputs.into_iter().flatten() {
        if let Err(e) = text.and_then(|t| file.write(&t)) {
            say!("zccheck: error: the run completed, but {e:#}");
            code = ExitCode::from(EXIT_OUTPUT_LOST);
        }
    }
    Ok(code)
}

/// The selected cases; a pattern echoed in an error is shortened to one line.
fn select(filter: &[String]) -> Result<Vec<zccheck::case::Case>> {
    if let Some(bad) = filter
        .iter()
        .find(|f| f.chars().count() > 100 || f.chars().any(char::is_control))
    {
        bail!(
            "unknown filter '{}': it matches no case id or area (`zccheck list` shows the ids)",
            shorten(bad)
        );
    }
    registry::select(registry::all(), filter)
}

fn fresh_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    runner::case_seed(t, "seed") % 1_000_000_000
}

fn cmd_list(filter: &[String]) -> Result<()> {
    let cases = select(filter)?;
    let width = cases.iter().map(|c| c.id.len()).max().unwrap_or(0);
    let mut text = String::new();
    for c in &cases {
        let reqs: Vec<&str> = c.requires.iter().map(|r| r.name).collect();
        let serial = c
            .serial
            .map(|why| format!("  (serial: {why})"))
            .unwrap_or_default();
        text.push_str(&format!(
            "{:<width$}  {}  [{}]{serial}\n",
            c.id,
            c.title,
            reqs.join(", ")
        ));
    }
    out(&text)?;
    say!("{} cases", cases.len());
    Ok(())
}

fn cmd_probe(json: bool) -> Result<()> {
    let kernel = harness::kernel::KernelInfo::detect()?;
    let records = probe_all(&requirements_of(&registry::all()));
    if json {
        return out(&format!("{}\n", serde_json::to_string_pretty(&records)?));
    }
    let mut text = format!("Linux {} ({})\n", kernel.release, kernel.arch);
    let width = records.iter().map(|r| r.name.len()).max().unwrap_or(0);
    for r in &records {
        let (word, detail) = match &r.answer {
            zccheck::probes::Answer::Present(d) => ("yes", d),
            zccheck::probes::Answer::Absent(d) => ("no", d),
            zccheck::probes::Answer::Blocked(d) => ("blocked", d),
        };
        text.push_str(&format!("{:<width$}  {word:<7}  {detail}\n", r.name));
    }
    out(&text)
}

/// Whether two paths name the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => (x.dev(), x.ino()) == (y.dev(), y.ino()),
        _ => false,
    }
}

fn cmd_matrix(
    reports: &[PathBuf],
    out_path: &Path,
    html: Option<&Path>,
    benches: &[PathBuf],
) -> Result<()> {
    for (flag, target) in [("-o", Some(out_path)), ("--html", html)] {
        let Some(target) = target else { continue };
        if let Some(input) = reports.iter().chain(benches).find(|r| same_file(r, target)) {
            bail!(
                "refusing to write the matrix ({flag} {}) over its input report {}",
                target.display(),
                input.display()
            );
        }
    }
    let m = zccheck::report::matrix::Matrix::load(reports)?;
    let folder = |p: &Path| match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let md = OutputFile {
        path: out_path.to_path_buf(),
        flag: "-o",
    };
    let sections = zccheck::bench::render::matrix_sections(benches)?;
    md.write(&m.markdown_with(&folder(out_path), &sections))?;
    if let Some(h) = html {
        let page = OutputFile {
            path: h.to_path_buf(),
            flag: "--html",
        };
        page.write(&zccheck::report::html::render_with(
            &m,
            &folder(h),
            &sections,
        ))?;
    }
    say!(
        "zccheck: matrix of {} kernels x {} cases written to {}{}",
        m.columns.len(),
        m.rows.len(),
        out_path.display(),
        html.map(|h| format!(" and {}", h.display()))
            .unwrap_or_default()
    );
    Ok(())
}

fn cmd_diff(a: &Path, b: &Path, all: bool) -> Result<ExitCode> {
    let (ra, rb) = (Report::load(a)?, Report::load(b)?);
    let d = zccheck::report::diff::diff_with(&ra, &rb, all);
    out(&d.render())?;
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
