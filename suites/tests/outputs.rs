//! What a run does with the machine's state directory and its output files when things go
//! wrong: a read-only /run, a corrupt sysctl journal, a disk that fills up after the run.
//! An earlier report is never destroyed: it is replaced only by a complete one.
//!
//! Needs root (mount namespaces, cases that build namespaces); without it each test says so
//! and returns.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary under test; ZCCHECK_TEST_BIN points the tests at another build.
fn bin() -> String {
    std::env::var("ZCCHECK_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_zccheck").into())
}

fn root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("skipped: needs root");
    false
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("zccheck-out-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `script` in a private mount namespace (`$ZCCHECK` is the binary), so mounts made
/// there vanish with it.
fn in_mount_ns(script: &str, env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-ec", script])
        .env("ZCCHECK", bin());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("unshare")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_read_only_run_skips_only_cases_that_change_the_machine() {
    if !root() {
        return;
    }
    let dir = tempdir("ro-run");
    let json = dir.join("r.json");
    // Per-namespace sysctl writes (accept_dad in a pair, ip_forward on a router) with /run
    // read-only: they need no journal. Then one machine-wide write: skipped, with the reason.
    for filter in [
        "send.format.tcp4.pair,send.copied.tcp4.forward",
        "selftest.global_sysctl",
    ] {
        let out = in_mount_ns(
            "mount -t tmpfs -o ro tmpfs /run
             exec \"$ZCCHECK\" run --cases 2 --json \"$JSON\" --filter \"$FILTER\"",
            &[("JSON", &json), ("FILTER", Path::new(filter))],
        );
        let err = text(&out.stderr);
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap_or_default())
                .unwrap_or_else(|e| panic!("no report ({e}): {err}"));
        for c in report["cases"].as_array().unwrap() {
            let (id, outcome) = (c["id"].as_str().unwrap(), c["outcome"].as_str().unwrap());
            let reason = c["reason"].as_str().unwrap();
            if id == "selftest.global_sysctl" {
                assert_eq!(outcome, "skipped", "{id}: {reason}");
                assert!(reason.contains("journal"), "{reason}");
                assert!(reason.contains("/run/zccheck"), "{reason}");
            } else {
                assert_eq!(outcome, "pass", "{id}: {reason}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_corrupt_journal_is_named_and_the_earlier_report_kept() {
    if !root() {
        return;
    }
    let dir = tempdir("corrupt");
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let journal = state.join("sysctl-journal.json");
    std::fs::write(&journal, "{\"net.core.optmem_max\": ").unwrap();
    let json = dir.join("r.json");
    let junit = dir.join("r.xml");
    std::fs::write(&json, "the earlier report").unwrap();
    std::fs::write(&junit, "the earlier junit").unwrap();
    let out = Command::new(bin())
        .args(["run", "--filter", "send.format.tcp4.lo", "--cases", "2"])
        .arg("--json")
        .arg(&json)
        .arg("--junit")
        .arg(&junit)
        .env("ZCCHECK_STATE_DIR", &state)
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains(&journal.display().to_string()), "{err}");
    assert!(err.contains("move it aside"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&json).unwrap(),
        "the earlier report"
    );
    assert_eq!(
        std::fs::read_to_string(&junit).unwrap(),
        "the earlier junit"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_full_disk_after_the_run_keeps_the_earlier_report_and_says_so() {
    if !root() {
        return;
    }
    let dir = tempdir("full");
    // One page of room, taken by the earlier report: the new one cannot be written.
    let out = in_mount_ns(
        "mount -t tmpfs -o size=4k tmpfs \"$DIR\"
         printf 'the earlier report' > \"$DIR/r.json\"
         head -c 4096 /dev/zero > \"$DIR/filler\" || true
         set +e
         \"$ZCCHECK\" run --cases 2 --filter send.format.tcp4.lo --json \"$DIR/r.json\"
         code=$?
         echo \"kept: $(cat \"$DIR/r.json\")\"
         ls -a \"$DIR\"
         exit $code",
        &[("DIR", &dir)],
    );
    let (stdout, err) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{err}");
    // The summary came first, the loss is said once, the earlier report is intact and no
    // temporary file is left.
    assert!(stdout.contains("1 pass, 0 fail"), "{stdout}");
    assert!(stdout.contains("kept: the earlier report"), "{stdout}");
    assert!(!stdout.contains(".tmp"), "{stdout}");
    let lost: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("zccheck: error"))
        .collect();
    assert_eq!(lost.len(), 1, "{err}");
    assert!(
        lost[0].contains("--json") && lost[0].contains("not written"),
        "{err}"
    );
    assert!(lost[0].contains("No space left"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
