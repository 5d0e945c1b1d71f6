//! A run under a limit too tight to start threads or processes reports the cases it could
//! not run as `error`, with the reason; it never panics, and still writes its report.
//!
//! RLIMIT_NPROC does not bind root, so the run is made as an unprivileged user (rootless
//! mode) with setpriv and prlimit. Needs root for that; otherwise it says so and returns.

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
    // 1: the case process cannot be forked: `error`. 2: it runs, but cannot start a thread:
    // `error` when the case body needed it, `skipped` when the probe of the environment did
    // (the environment's limit, like a missing privilege), with the limit named either way.
    for (nproc, says) in [(1, "starting"), (2, "start a thread")] {
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
