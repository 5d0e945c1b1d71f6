//! The command line answers bad input with one line that names what is wrong, and a
//! non-zero exit.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The binary under test; ZCCHECK_TEST_BIN points the tests at another build (to show that
/// a test fails on an older one).
fn bin() -> String {
    std::env::var("ZCCHECK_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_zccheck").into())
}

fn zccheck(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .output()
        .expect("running zccheck")
}

fn root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("skipped: needs root");
    false
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("zccheck-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
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

#[test]
fn missing_arguments_are_named_with_the_usage_line() {
    let out = zccheck(&["diff", "a.json"]);
    one_line_error(&out, "<B>");
    one_line_error(&out, "usage: zccheck diff <A> <B>");
    let out = zccheck(&["matrix"]);
    one_line_error(&out, "--out");
    one_line_error(&out, "<REPORTS>");
    one_line_error(&out, "usage: zccheck matrix");
    // Bare `zccheck`: the usage line and the commands, not the description.
    let out = zccheck(&[]);
    one_line_error(&out, "usage: zccheck <COMMAND>");
    one_line_error(&out, "run, list, probe, matrix, diff");
}

#[test]
fn negative_numbers_are_invalid_values_not_unknown_arguments() {
    for (flag, v) in [("--cases", "-5"), ("--timeout", "-1"), ("--seed", "-1")] {
        let out = zccheck(&["run", flag, v]);
        one_line_error(&out, &format!("invalid value '{v}' for '{flag}"));
    }
}

#[test]
fn overlong_and_multiline_values_are_shortened() {
    let long = "x".repeat(5000);
    for args in [
        vec!["run", "--filter", "send.a\nsend.b\nsend.c"],
        vec!["list", "--filter", &long],
        vec!["run", "--cases", &long],
    ] {
        let out = zccheck(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        one_line_error(&out, "zccheck");
        assert!(err.len() < 300, "{} characters: {err}", err.len());
    }
}

#[test]
fn matrix_refuses_to_write_over_its_input() {
    let dir = tempdir("matrix-input");
    let input = dir.join("6.1.json");
    std::fs::copy(fixture("reports/6.1.json"), &input).unwrap();
    let before = std::fs::read(&input).unwrap();
    let other = fixture("reports/5.10.json");
    let again = dir.join("sub/../6.1.json");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    for (flag, target) in [("-o", &input), ("-o", &again)] {
        let out = zccheck(&[
            "matrix",
            flag,
            target.to_str().unwrap(),
            other.to_str().unwrap(),
            input.to_str().unwrap(),
        ]);
        one_line_error(&out, "refusing");
        assert_eq!(
            std::fs::read(&input).unwrap(),
            before,
            "the input was changed"
        );
    }
    let md = dir.join("m.md");
    let out = zccheck(&[
        "matrix",
        "-o",
        md.to_str().unwrap(),
        "--html",
        input.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    one_line_error(&out, "refusing");
    assert_eq!(
        std::fs::read(&input).unwrap(),
        before,
        "the input was changed"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Commands that print on stdout; `run` needs root.
fn printing_commands() -> Vec<Vec<&'static str>> {
    let mut cmds = vec![
        vec!["--help"],
        vec!["list"],
        vec!["probe"],
        vec!["probe", "--json"],
    ];
    if root() {
        cmds.push(vec![
            "run",
            "--filter",
            "send.format.tcp4.lo",
            "--cases",
            "2",
        ]);
        cmds.push(vec![
            "run",
            "--ktap",
            "--filter",
            "send.format.tcp4.lo",
            "--cases",
            "2",
        ]);
    }
    cmds
}

#[test]
fn a_full_stdout_is_one_error_line() {
    for args in printing_commands() {
        let out = Command::new(bin())
            .args(&args)
            .stdout(std::fs::File::create("/dev/full").unwrap())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        let errors: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with("zccheck: error"))
            .collect();
        assert_eq!(errors.len(), 1, "{args:?}: {err}");
        assert!(
            errors[0].contains("standard output") && errors[0].contains("No space left"),
            "{args:?}: {err}"
        );
        let code = out.status.code();
        if args[0] == "run" {
            assert_eq!(code, Some(3), "{args:?}: the output was lost; {err}");
        } else {
            assert_eq!(code, Some(2), "{args:?}: {err}");
        }
    }
}

#[test]
fn a_closed_stdout_ends_quietly_and_a_run_still_writes_its_report() {
    let dir = tempdir("closed-stdout");
    for args in printing_commands() {
        let json = dir.join("r.json");
        let _ = std::fs::remove_file(&json);
        let mut all: Vec<&str> = args.clone();
        if args[0] == "run" {
            all.extend(["--json", json.to_str().unwrap()]);
        }
        // A reader that is already gone; SIGPIPE blocked, as some launchers leave it, so
        // the write fails with EPIPE instead of killing the process.
        let (reader, writer) = nix::unistd::pipe().unwrap();
        drop(reader);
        let out = Command::new("env")
            .arg("--block-signal=PIPE")
            .arg(bin())
            .args(&all)
            .stdout(Stdio::from(writer))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("panicked") && !err.contains("zccheck: error"),
            "{args:?}: {err}"
        );
        if args[0] == "run" {
            assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
            let text = std::fs::read_to_string(&json).expect("the report was written");
            assert!(text.contains("send.format.tcp4.lo"));
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}
