//! A run killed with SIGKILL at any moment leaves nothing behind: no case process, no
//! namespace or interface (they die with the processes), no journal entry and no changed
//! sysctl once the next run has started, and an earlier report file is either untouched or
//! replaced by a complete one.
//!
//! Two kinds of moments: random ones over the whole run (before, during and after a case
//! that changes a global sysctl, while the report is written), and the moment the run's
//! first case process appears, before it can have set anything up (the race PR_SET_PDEATHSIG
//! set after exec loses).
//!
//! Needs root (the cases build namespaces and write a global sysctl); without it the test
//! says so and returns. It uses a journal of its own (ZCCHECK_STATE_DIR), so other runs on
//! the machine neither see nor touch its entries.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test; ZCCHECK_TEST_BIN points the test at another build.
fn bin() -> String {
    std::env::var("ZCCHECK_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_zccheck").into())
}

const RANDOM_KILLS: usize = 50;
const CHILD_MOMENT_KILLS: usize = 20;
/// A case that changes a global sysctl for a moment, then one that builds two namespaces
/// joined by a veth pair.
const RANDOM_FILTER: &str = "selftest.global_sysctl,send.format.tcp4.pair";
/// A case that builds a veth pair and never returns: a survivor is plain to see.
const CHILD_FILTER: &str = "selftest.hang";
/// The global sysctl selftest.global_sysctl nudges.
const KNOB: &str = "/proc/sys/net/core/netdev_max_backlog";

/// Processes running this binary (zombies have no command line and are not counted).
fn processes_of_binary() -> Vec<(i32, String)> {
    let me = bin();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.first().is_some_and(|a| *a == me) {
            found.push((pid, args.join(" ")));
        }
    }
    found
}

/// Waits up to `bound` for every process of this binary to be gone; returns survivors
/// (after killing them, so one failure does not pollute the machine).
fn survivors_after(bound: Duration) -> Vec<String> {
    let deadline = Instant::now() + bound;
    loop {
        let left = processes_of_binary();
        if left.is_empty() {
            return Vec::new();
        }
        if Instant::now() >= deadline {
            for (pid, _) in &left {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            return left.into_iter().map(|(p, c)| format!("{p}: {c}")).collect();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether the process `pid` (any of its threads) has a child yet.
fn has_child(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|t| {
        std::fs::read_to_string(t.path().join("children")).is_ok_and(|c| !c.trim().is_empty())
    })
}

fn start_run(state: &Path, json: &Path, filter: &str) -> Child {
    Command::new(bin())
        .args(["run", "--cases", "1", "--timeout", "5", "--filter", filter])
        .arg("--json")
        .arg(json)
        .env("ZCCHECK_STATE_DIR", state)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting zccheck run")
}

/// The report at `json` is `earlier` (untouched) or a complete report of `cases` cases.
fn check_report(json: &Path, earlier: &mut String, cases: usize, when: &str) {
    let now = std::fs::read_to_string(json).unwrap_or_default();
    if now == *earlier {
        return;
    }
    let v: serde_json::Value = serde_json::from_str(&now).unwrap_or_else(|e| {
        panic!("{when}: the report is neither the earlier one nor complete ({e}): {now:?}")
    });
    assert_eq!(
        v["cases"].as_array().map(Vec::len),
        Some(cases),
        "{when}: a report without every case"
    );
    *earlier = now;
}

/// A tiny deterministic generator (xorshift), seeded from the clock and printed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn machine() -> (String, Vec<String>, String) {
    let sh = |c: &str| {
        String::from_utf8_lossy(&Command::new("sh").arg("-c").arg(c).output().unwrap().stdout)
            .into_owned()
    };
    (
        sh("ip netns list"),
        sh("ip -o link show")
            .lines()
            .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
            .collect(),
        std::fs::read_to_string(KNOB).unwrap(),
    )
}

fn root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("skipped: the kill test needs root");
    false
}

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("zccheck-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn sigkill_at_any_moment_leaves_nothing_and_loses_no_report() {
    if !root() {
        return;
    }
    assert!(
        processes_of_binary().is_empty(),
        "this binary is already running"
    );
    let started = Instant::now();
    let dir = tempdir();
    let state = dir.join("state");
    let json = dir.join("r.json");
    let before = machine();

    // A complete run first: the earlier report, and how long a run takes.
    let t0 = Instant::now();
    let status = start_run(&state, &json, RANDOM_FILTER).wait().unwrap();
    let full = t0.elapsed();
    let mut earlier = std::fs::read_to_string(&json).unwrap_or_default();
    assert!(
        status.code() == Some(0) && !earlier.is_empty(),
        "the first run failed ({status})"
    );

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("kill moments from seed {seed}; a full run takes {full:?}");
    let mut rng = Rng(seed);
    let span = (full.as_micros() as u64) * 6 / 5;
    for i in 0..RANDOM_KILLS {
        let at = Duration::from_micros(rng.below(span));
        let mut run = start_run(&state, &json, RANDOM_FILTER);
        std::thread::sleep(at);
        let _ = run.kill();
        run.wait().unwrap();
        let when = format!("kill {i} at {at:?} (seed {seed})");
        let left = survivors_after(Duration::from_secs(2));
        assert!(left.is_empty(), "{when}: processes survived: {left:?}");
        check_report(&json, &mut earlier, 2, &when);
    }

    for i in 0..CHILD_MOMENT_KILLS {
        let mut run = start_run(&state, &json, CHILD_FILTER);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !has_child(run.id()) {
            assert!(Instant::now() < deadline, "the run never started a case");
            std::hint::spin_loop();
        }
        let _ = run.kill();
        run.wait().unwrap();
        // Long enough for a surviving child to have exec'd and built its namespaces.
        std::thread::sleep(Duration::from_millis(150));
        let left = survivors_after(Duration::from_secs(1));
        assert!(
            left.is_empty(),
            "kill {i} at the first case process: processes survived: {left:?}"
        );
        check_report(&json, &mut earlier, 2, "a kill at the first case process");
    }

    // The next run restores what the killed ones left; then nothing differs.
    let status = start_run(&state, &json, "send.format.tcp4.lo")
        .wait()
        .unwrap();
    assert_eq!(status.code(), Some(0), "the run after the kills failed");
    let journal = state.join("sysctl-journal.json");
    let entries = std::fs::read_to_string(&journal).unwrap_or_default();
    assert!(
        entries.trim().is_empty() || entries.trim() == "{}",
        "journal entries survived: {entries}"
    );
    assert_eq!(
        before,
        machine(),
        "the machine differs after the killed runs"
    );
    // A run killed while writing its report may leave its temporary file; the next run
    // writing there removes it.
    let temps: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(temps.is_empty(), "temporary files left: {temps:?}");
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "{RANDOM_KILLS} random and {CHILD_MOMENT_KILLS} child-moment kills in {:?}",
        started.elapsed()
    );
}
