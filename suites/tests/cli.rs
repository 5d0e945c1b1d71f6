//! The command line answers bad input with one line that names what is wrong, and a
//! non-zero exit.

use std::process::{Command, Output};

fn zccheck(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zccheck"))
        .args(args)
        .output()
        .expect("running zccheck")
}

fn one_line_error(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit code; stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(err.contains(needle), "{err:?} does not mention {needle:?}");
}

#[test]
fn unknown_filter() {
    one_line_error(
        &zccheck(&["run", "--filter", "no.such.case"]),
        "unknown filter 'no.such.case'",
    );
    one_line_error(
        &zccheck(&["list", "--filter", "nope"]),
        "unknown filter 'nope'",
    );
}

#[test]
fn bad_cases_budget() {
    one_line_error(&zccheck(&["run", "--cases", "abc"]), "--cases");
    one_line_error(&zccheck(&["run", "--cases", "0"]), "--cases");
}

#[test]
fn bad_timeout() {
    one_line_error(&zccheck(&["run", "--timeout", "0"]), "--timeout");
}

#[test]
fn unwritable_outputs_fail_before_the_run() {
    one_line_error(
        &zccheck(&["run", "--json", "/nonexistent/dir/r.json"]),
        "--json output",
    );
    one_line_error(
        &zccheck(&["run", "--junit", "/nonexistent/dir/r.xml"]),
        "--junit output",
    );
}

#[test]
fn unknown_subcommand() {
    one_line_error(&zccheck(&["frobnicate"]), "frobnicate");
}

#[test]
fn list_names_every_default_case() {
    let out = zccheck(&["list"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l.starts_with("send.ids.tcp4.lo ")),
        "{text}"
    );
    assert!(
        !text.contains("selftest."),
        "selftests are hidden by default"
    );
}

#[test]
fn bench_refuses_unknown_paths_and_unwritable_outputs_before_measuring() {
    one_line_error(&zccheck(&["bench", "--path", "nowhere"]), "nowhere");
    one_line_error(
        &zccheck(&["bench", "--quick", "--svg", "/nonexistent/dir/b.svg"]),
        "--svg output",
    );
    one_line_error(
        &zccheck(&["bench", "--quick", "--json", "/nonexistent/dir/b.json"]),
        "--json output",
    );
}
