//! Runs cases, each in a child process of its own, under a time limit.
//!
//! A child process per case is what makes the promises of a run hold: a case that panics or
//! aborts cannot take the run down, a case that hangs is killed (SIGKILL) when its time is up
//! and recorded as `error: timeout`, and whatever the case built (namespaces, veths, sockets)
//! is freed by the kernel with the process. Each child leads a process group of its own and
//! dies with the run (the death signal is set before exec, so no kill of the run is too
//! early); the run reaps the whole group, whatever the case started. Several cases may run at
//! once: nothing here is global to the run. After every child the sysctl journal is
//! replayed, so a global sysctl a killed case had changed is restored at once.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use harness::kernel::KernelInfo;
use harness::privileges::Privileges;
use harness::sys::process;
use serde::{Deserialize, Serialize};

use crate::case::{Case, Ctx, PropertyRecord};
use crate::outcome::{verdict_of_error, Outcome, Verdict};
use crate::probes::Answer;
use crate::report::CaseRecord;

/// What the parent needs to run a list of cases.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The `zccheck` binary that runs one case with `__case`.
    pub exe: PathBuf,
    pub seed: u64,
    pub cases: u32,
    pub timeout: Duration,
    /// How the replay command names the binary (as the user invoked it).
    pub replay_exe: String,
}

/// The line a child prints its result on; anything else a case prints is ignored.
const RESULT_MARK: &str = "ZCCHECK-CASE-RESULT ";

#[derive(Debug, Serialize, Deserialize)]
pub struct ChildResult {
    pub verdict: Verdict,
    pub observed: std::collections::BTreeMap<String, serde_json::Value>,
    /// Keys of `observed` that depend on timing (see `Ctx::observe_timing`).
    #[serde(default)]
    pub timing_facts: Vec<String>,
    pub property: Option<PropertyRecord>,
}

/// The seed a case runs with: fixed by the run's seed and the case id, so that
/// `--filter ID --seed S` replays exactly what the full run did.
pub fn case_seed(run_seed: u64, id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = run_seed ^ h;
    z = (z ^ (z >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    z ^ (z >> 33)
}

pub fn replay_command(opts: &RunOptions, id: &str) -> String {
    format!(
        "{} run --filter {id} --seed {} --cases {}",
        opts.replay_exe, opts.seed, opts.cases
    )
}

/// Runs one case in a child process and turns whatever happened into a record.
pub fn run_one(opts: &RunOptions, case: &Case) -> CaseRecord {
    let started = Instant::now();
    let health = crate::health::Watch::start(&case.id);
    let child_result = spawn_and_wait(opts, case);
    let health = health.finish();
    let (verdict, observed, timing_facts, property) = match child_result {
        Ok(r) => (r.verdict, r.observed, r.timing_facts, r.property),
        Err(e) => (
            Verdict::error(format!("{e:#}")),
            Default::default(),
            Vec::new(),
            None,
        ),
    };
    let mut rec = CaseRecord {
        id: case.id.clone(),
        area: case.area,
        title: case.title.clone(),
        outcome: verdict.outcome,
        reason: verdict.reason,
        evidence: verdict.evidence,
        observed,
        timing_facts,
        property,
        replay: replay_command(opts, &case.id),
        duration_ms: started.elapsed().as_millis() as u64,
        extra: Default::default(),
    };
    crate::health::apply(&mut rec, &health);
    match harness::sysctl::recover() {
        Ok(restored) if !restored.is_empty() => {
            rec.observed.insert(
                "suite.restored_sysctls_after_case".into(),
                serde_json::to_value(&restored).unwrap_or_default(),
            );
        }
        Ok(_) => {}
        Err(e) => {
            rec.outcome = Outcome::Error;
            rec.reason = format!("could not restore sysctls after the case: {e:#}");
        }
    }
    rec
}

fn spawn_and_wait(opts: &RunOptions, case: &Case) -> Result<ChildResult> {
    // Orphans of a case become ours, so the case's group can always be reaped (see
    // harness::sys::process). Setting it again for every case is harmless.
    process::become_subreaper().context("becoming the reaper of the case processes")?;
    let mut cmd = Command::new(&opts.exe);
    cmd.arg("__case")
        .arg(&case.id)
        .arg("--seed")
        .arg(case_seed(opts.seed, &case.id).to_string())
        .arg("--cases")
        .arg(opts.cases.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    process::die_with_this_process(&mut cmd);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {} __case {}", opts.exe.display(), case.id))?;
    let pid = child.id();
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        unreachable!("both pipes were asked for");
    };
    let deadline = Instant::now() + opts.timeout;
    let collected = collect_output(pid, stdout, stderr, deadline);
    // Whatever happened, nothing of the case may outlive this function: kill its group (the
    // leader is ended or still unreaped, so its id cannot have been reused), reap the leader
    // through `child`, then every orphan left in the group.
    let _ = process::kill_group(pid);
    let status = child.wait().context("waiting for the case process")?;
    let (_, all_reaped) = process::reap_group(pid, Duration::from_secs(5));
    let out = collected?;
    let tail = tail_lines(&out.stderr, 8);
    let last_output = || {
        if tail.is_empty() {
            String::new()
        } else {
            format!("; its last output:\n{tail}")
        }
    };
    if out.timed_out {
        anyhow::bail!(
            "timeout: no result within {:?}; the case process was killed{}",
            opts.timeout,
            last_output()
        );
    }
    anyhow::ensure!(
        all_reaped,
        "processes the case started did not end within 5 s of being killed"
    );
    match out.result_line {
        Some(l) => serde_json::from_str(&l).context("the case process printed a malformed result"),
        None => anyhow::bail!(
            "the case process ended ({status}) without a result{}",
            last_output()
        ),
    }
}

/// What a case process printed, read until it ended or the deadline passed.
struct Output {
    /// The last result line on stdout.
    result_line: Option<String>,
    /// The end of stderr (at most [`STDERR_KEPT`] bytes).
    stderr: String,
    timed_out: bool,
}

/// The most of a case's stderr kept for the record.
const STDERR_KEPT: usize = 1 << 20;
/// The most of a case's stdout kept: far more than any result line.
const STDOUT_KEPT: usize = 64 << 20;

/// Reads both pipes of the case process `pid` on this thread (no reader threads: a run
/// that may not start one more thread still runs its cases) until it ends, or kills its
/// group at `deadline`.
fn collect_output(
    pid: u32,
    stdout: std::process::ChildStdout,
    stderr: std::process::ChildStderr,
    deadline: Instant,
) -> Result<Output> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut pipes = [
        Pipe::new(stdout.into(), STDOUT_KEPT)?,
        Pipe::new(stderr.into(), STDERR_KEPT)?,
    ];
    let mut timed_out = false;
    let mut ended_at: Option<Instant> = None;
    loop {
        if pipes.iter().all(|p| p.eof) {
            break;
        }
        let now = Instant::now();
        if ended_at.is_none() {
            if process::has_exited(pid).context("waiting for the case process")? {
                // Whatever still holds the pipes open belongs to the case: end it.
                process::kill_group(pid).context("killing the case's process group")?;
                ended_at = Some(now);
            } else if now >= deadline {
                timed_out = true;
                process::kill_group(pid).context("killing the timed-out case")?;
                ended_at = Some(now);
            }
        } else if ended_at.is_some_and(|t| now.duration_since(t) > Duration::from_secs(5)) {
            anyhow::bail!("the case's output pipes stayed open 5 s after it was killed");
        }
        let mut fds: Vec<PollFd> = pipes
            .iter()
            .filter(|p| !p.eof)
            .map(|p| PollFd::new(p.fd.as_fd(), PollFlags::POLLIN))
            .collect();
        match poll(&mut fds, PollTimeout::from(20u8)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).context("polling the case's output"),
        }
        for p in pipes.iter_mut().filter(|p| !p.eof) {
            p.read_available()?;
        }
    }
    let [out, err] = pipes;
    let result_line = String::from_utf8_lossy(&out.data)
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(RESULT_MARK).map(str::to_string));
    let stderr = String::from_utf8_lossy(&err.data[err.data.len().saturating_sub(STDERR_KEPT)..])
        .into_owned();
    Ok(Output {
        result_line,
        stderr,
        timed_out,
    })
}

/// One output pipe of a case process, read without blocking.
struct Pipe {
    fd: std::os::fd::OwnedFd,
    data: Vec<u8>,
    eof: bool,
    /// How much of the end of the output to keep.
    keep: usize,
}

impl Pipe {
    fn new(fd: std::os::fd::OwnedFd, keep: usize) -> Result<Self> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL)?);
        fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        Ok(Pipe {
            fd,
            data: Vec::new(),
            eof: false,
            keep,
        })
    }

    fn read_available(&mut self) -> Result<()> {
        let mut buf = [0u8; 64 * 1024];
        loop {
            match nix::unistd::read(&self.fd, &mut buf) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.data.extend_from_slice(&buf[..n]);
                    // Keep memory bounded: a chatty case keeps only its last output.
                    if self.data.len() > 2 * self.keep {
                        let cut = self.data.len() - self.keep;
                        let keep_from = self.data[..cut]
                            .iter()
                            .rposition(|b| *b == b'\n')
                            .map_or(cut, |i| i + 1);
                        self.data.drain(..keep_from);
                    }
                }
                Err(nix::errno::Errno::EAGAIN) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).context("reading the case's output"),
            }
        }
    }
}

fn tail_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The child side: runs `case` in this process and prints the result line.
pub fn child_main(case: &Case, seed: u64, cases: u32, privileges: Privileges) -> Result<()> {
    // The death signal was set before exec (harness::sys::process): this process dies with
    // the run, and did not start at all if the run was already gone.
    let kernel = KernelInfo::detect()?;
    let result = run_in_process(case, seed, cases, kernel, privileges);
    println!("{RESULT_MARK}{}", serde_json::to_string(&result)?);
    Ok(())
}

/// Checks requirements, runs the body, and turns panics and errors into verdicts.
pub fn run_in_process(
    case: &Case,
    seed: u64,
    cases: u32,
    kernel: KernelInfo,
    privileges: Privileges,
) -> ChildResult {
    // A probe may panic too (a thread it cannot start): that is an error of this case, and
    // the case process still prints its result.
    let unmet = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unmet_requirement(case)));
    let verdict = match unmet {
        Ok(None) => None,
        Ok(Some(v)) => Some(v),
        Err(panic) => Some(verdict_of_panic(panic)),
    };
    if let Some(verdict) = verdict {
        return ChildResult {
            verdict,
            observed: Default::default(),
            timing_facts: Vec::new(),
            property: None,
        };
    }
    let mut ctx = Ctx::new(seed, cases, kernel, privileges);
    let run = case.run.clone();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&mut ctx)));
    let verdict = match outcome {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => verdict_of_case_error(e),
        Err(panic) => verdict_of_panic(panic),
    };
    let parts = ctx.into_parts();
    ChildResult {
        verdict,
        observed: parts.observed,
        timing_facts: parts.timing_facts,
        property: parts.property,
    }
}

/// The verdict of the first requirement the kernel or the environment does not meet.
fn unmet_requirement(case: &Case) -> Option<Verdict> {
    if let Some(why) = crate::kconfig::Check::running().and_then(|c| c.gate(case)) {
        return Some(Verdict {
            outcome: Outcome::Skipped,
            reason: why,
            evidence: None,
        });
    }
    case.requires.iter().find_map(|req| match req.answer() {
        Answer::Present(_) => None,
        Answer::Absent(d) => Some(Verdict {
            outcome: Outcome::Unsupported,
            reason: format!("probe {}: {d}", req.name),
            evidence: None,
        }),
        Answer::Blocked(d) => Some(Verdict {
            outcome: Outcome::Skipped,
            reason: format!("{} ({})", d, req.name),
            evidence: None,
        }),
    })
}

/// A panic inside a case is an `error` of that case, saying what panicked.
fn verdict_of_panic(panic: Box<dyn std::any::Any + Send>) -> Verdict {
    let msg = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a non-string panic".into());
    if msg.starts_with("failed to spawn thread") {
        return Verdict::error(format!(
            "the case could not start a thread ({msg}): the limit on processes and threads \
             (RLIMIT_NPROC, a pids cgroup) is too tight for it"
        ));
    }
    Verdict::error(format!("the case panicked: {msg}"))
}

/// A case's error as a verdict. A machine-wide write the journal could not make undoable
/// (a read-only `/run`) is the environment's limit: `skipped`, with the reason.
fn verdict_of_case_error(e: anyhow::Error) -> Verdict {
    match e
        .chain()
        .find_map(|c| c.downcast_ref::<harness::sysctl::JournalUnavailable>())
    {
        Some(j) => Verdict {
            outcome: Outcome::Skipped,
            reason: j.to_string(),
            evidence: None,
        },
        None => verdict_of_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::Area;

    fn run(body: fn() -> Result<Verdict>) -> Verdict {
        let case = Case::new("selftest.unit", Area::Selftest, "unit", vec![], move |_| {
            body()
        });
        let kernel = KernelInfo::detect().unwrap();
        let privileges = Privileges::detect().unwrap();
        run_in_process(&case, 1, 1, kernel, privileges).verdict
    }

    #[test]
    fn a_thread_that_cannot_start_is_an_error_of_the_case() {
        let v = run(|| panic!("failed to spawn thread: Os {{ code: 11 }}"));
        assert_eq!(v.outcome, Outcome::Error);
        assert!(
            v.reason.contains("could not start a thread"),
            "{}",
            v.reason
        );
    }

    #[test]
    fn an_unwritable_journal_skips_the_case_with_the_reason() {
        let v = run(|| {
            Err(anyhow::Error::new(harness::sysctl::JournalUnavailable {
                path: "/run/zccheck/sysctl-journal.json".into(),
                why: "Read-only file system".into(),
            })
            .context("setting net.core.optmem_max"))
        });
        assert_eq!(v.outcome, Outcome::Skipped);
        assert!(v.reason.contains("Read-only file system"), "{}", v.reason);
    }
}
