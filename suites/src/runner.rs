//! Runs cases, each in a child process of its own, under a time limit.
//!
//! A child process per case is what makes the promises of a run hold: a case that panics or
//! aborts cannot take the run down, a case that hangs is killed (SIGKILL) when its time is up
//! and recorded as `error: timeout`, and whatever the case built (namespaces, veths, sockets)
//! is freed by the kernel with the process. Children die with the parent (PR_SET_PDEATHSIG),
//! so killing a run leaves no case behind. After every child the sysctl journal is replayed,
//! so a global sysctl a killed case had changed is restored at once.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use harness::kernel::KernelInfo;
use harness::privileges::Privileges;
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
    let (verdict, observed, property) = match child_result {
        Ok(r) => (r.verdict, r.observed, r.property),
        Err(e) => (Verdict::error(format!("{e:#}")), Default::default(), None),
    };
    let mut rec = CaseRecord {
        id: case.id.clone(),
        area: case.area,
        title: case.title.clone(),
        outcome: verdict.outcome,
        reason: verdict.reason,
        evidence: verdict.evidence,
        observed,
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
    let mut child = Command::new(&opts.exe)
        .arg("__case")
        .arg(&case.id)
        .arg("--seed")
        .arg(case_seed(opts.seed, &case.id).to_string())
        .arg("--cases")
        .arg(opts.cases.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {} __case {}", opts.exe.display(), case.id))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || -> Option<String> {
        BufReader::new(stdout)
            .lines()
            .map_while(|l| l.ok())
            .filter_map(|l| l.strip_prefix(RESULT_MARK).map(str::to_string))
            .last()
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.take(1 << 20).read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    });
    let deadline = Instant::now() + opts.timeout;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for the case process")? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let line = out_reader.join().unwrap_or(None);
    let stderr_text = err_reader.join().unwrap_or_default();
    let tail = tail_lines(&stderr_text, 8);
    let Some(status) = status else {
        anyhow::bail!(
            "timeout: no result within {:?}; the case process was killed{}",
            opts.timeout,
            if tail.is_empty() {
                String::new()
            } else {
                format!("; its last output:\n{tail}")
            }
        );
    };
    match line {
        Some(l) => serde_json::from_str(&l).context("the case process printed a malformed result"),
        None => anyhow::bail!(
            "the case process ended ({status}) without a result{}",
            if tail.is_empty() {
                String::new()
            } else {
                format!("; its last output:\n{tail}")
            }
        ),
    }
}

fn tail_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The child side: runs `case` in this process and prints the result line.
pub fn child_main(case: &Case, seed: u64, cases: u32, privileges: Privileges) -> Result<()> {
    // Die with the parent, so a killed run leaves no case running. If the parent is already
    // gone (the race before prctl), stop at once.
    let parent = nix::unistd::getppid();
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and changes nothing else.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    if nix::unistd::getppid() != parent {
        std::process::exit(1);
    }
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
    for req in &case.requires {
        let verdict = match req.answer() {
            Answer::Present(_) => continue,
            Answer::Absent(d) => Verdict {
                outcome: Outcome::Unsupported,
                reason: format!("probe {}: {d}", req.name),
                evidence: None,
            },
            Answer::Blocked(d) => Verdict {
                outcome: Outcome::Skipped,
                reason: format!("{} ({})", d, req.name),
                evidence: None,
            },
        };
        return ChildResult {
            verdict,
            observed: Default::default(),
            property: None,
        };
    }
    let mut ctx = Ctx::new(seed, cases, kernel, privileges);
    let run = case.run.clone();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&mut ctx)));
    let verdict = match outcome {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => verdict_of_error(e),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a non-string panic".into());
            Verdict::error(format!("the case panicked: {msg}"))
        }
    };
    let (observed, property) = ctx.into_parts();
    ChildResult {
        verdict,
        observed,
        property,
    }
}
