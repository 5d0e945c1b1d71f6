//! Run as an unprivileged user, `zccheck run` either works in rootless mode (a user namespace
//! of its own) or stops with one line saying what it needs; never a stack trace.
//!
//! Needs root to switch to an unprivileged uid (with setpriv); otherwise it says so and returns.

use std::process::Command;

const NOBODY: &str = "65534";

fn as_nobody(args: &[&str]) -> Option<std::process::Output> {
    if !nix::unistd::geteuid().is_root()
        || Command::new("setpriv").arg("--version").output().is_err()
    {
        eprintln!("skipped: needs root and setpriv to run as an unprivileged user");
        return None;
    }
    let exe = env!("CARGO_BIN_EXE_zccheck");
    let out = Command::new("setpriv")
        .args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups", exe])
        .args(args)
        .output()
        .expect("setpriv");
    if String::from_utf8_lossy(&out.stderr).contains("Permission denied") && out.stdout.is_empty() {
        eprintln!("skipped: the unprivileged user cannot execute {exe}");
        return None;
    }
    Some(out)
}

#[test]
fn unprivileged_run_is_rootless_or_one_clear_line() {
    let Some(out) = as_nobody(&[
        "run",
        "--filter",
        "send.format.tcp4.lo,send.counter.udp4.pair",
    ]) else {
        return;
    };
    let err = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !err.contains("panicked") && !err.contains("stack backtrace"),
        "{err}"
    );
    if err.contains("running rootless") {
        assert!(
            out.status.success(),
            "rootless run failed:\n{err}\n{stdout}"
        );
        assert!(stdout.contains("2 pass, 0 fail"), "{stdout}");
    } else {
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains("needs root or CAP_NET_ADMIN"), "{err}");
    }
}

#[test]
fn no_rootless_says_what_it_needs() {
    let Some(out) = as_nobody(&["run", "--no-rootless"]) else {
        return;
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("needs root or CAP_NET_ADMIN"), "{err}");
}
