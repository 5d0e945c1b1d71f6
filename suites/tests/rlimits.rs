//! Runs under tight resource limits. A limit too tight to start threads or processes makes
//! the cases it stops an outcome with the reason, never a panic of the run, and the report
//! is still written. A hard RLIMIT_MEMLOCK below what a case needs is the environment's:
//! `skipped`, not `error`.
//!
//! RLIMIT_NPROC does not bind root, so that run is made as an unprivileged user (rootless
//! mode) with setpriv and prlimit. Needs root; otherwise each test says so and returns.

use std::process::Command;

const NOBODY: &str = "65534";

fn bin() -> String {
    std::env::var("ZCCHECK_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_zccheck").into())
}

#[test]
fn a_thread_or_process_that_cannot_start_is_an_error_of_its_case() {
    if !nix::unistd::geteuid().is_root()
        || Command::new("prlimit").arg("--version").output().is_err()
    {
        eprintln!("skipped: needs root, setpriv and prlimit");
        return;
    }
    let dir = std::env::temp_dir().join(format!("zccheck-threads-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The unprivileged user must be able to write the report there.
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let json = dir.join("r.json");
    // 1: no worker thread can start either, so the case runs on the run's own thread, and
    // the case process cannot be forked: `error`. 3 (the run, its worker thread, the case
    // process): the case runs, but cannot start a thread: `error` when the case body needed
    // it, `skipped` when the probe of the environment did (the environment's limit, like a
    // missing privilege), with the limit named either way.
    for (nproc, says) in [(1, "starting"), (3, "start a thread")] {
        let _ = std::fs::remove_file(&json);
        let out = Command::new("setpriv")
            .args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups"])
            .args(["prlimit", &format!("--nproc={nproc}")])
            .arg(bin())
            .args([
                "run",
                "--cases",
                "2",
                "--filter",
                "send.format.tcp4.lo",
                "--json",
            ])
            .arg(&json)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("Permission denied") || !err.contains("running rootless") {
            eprintln!("skipped: rootless mode is not available to the unprivileged user: {err}");
            break;
        }
        assert!(!err.contains("panicked"), "nproc {nproc}: {err}");
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap_or_default())
                .unwrap_or_else(|e| panic!("nproc {nproc}: no report ({e}): {err}"));
        let case = &report["cases"][0];
        let outcome = case["outcome"].as_str().unwrap();
        let reason = case["reason"].as_str().unwrap();
        assert!(reason.contains(says), "nproc {nproc}: {reason}");
        match outcome {
            "error" => assert_eq!(out.status.code(), Some(1), "{err}"),
            "skipped" if nproc > 1 => {
                assert!(reason.contains("RLIMIT_NPROC"), "{reason}");
                assert_eq!(out.status.code(), Some(0), "{err}");
            }
            _ => panic!("nproc {nproc}: {outcome}: {reason}"),
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_hard_memlock_limit_below_the_need_is_skipped() {
    if !nix::unistd::geteuid().is_root()
        || Command::new("prlimit").arg("--version").output().is_err()
    {
        eprintln!("skipped: needs root and prlimit");
        return;
    }
    let out = Command::new("prlimit")
        .arg("--memlock=4096:4096")
        .arg(bin())
        .args(["run", "--cases", "2", "--filter", "send.memlock"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("send.memlock."))
        .collect();
    assert_eq!(lines.len(), 2, "{err}");
    for l in lines {
        assert!(l.contains(" skipped "), "{l}");
        assert!(l.contains("hard RLIMIT_MEMLOCK (4096)"), "{l}");
    }
    assert!(out.status.success(), "{err}");
}
