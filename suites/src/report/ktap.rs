//! KTAP (the kernel's test output format, as kselftest prints it) for kernel CI systems.
//! `unsupported` and `skipped` cases are `ok ... # SKIP reason`; `fail` is `not ok`, with the
//! reason on a diagnostic line; `error` is `not ok ... # ERROR reason`, or `# TIMEOUT reason`
//! when the case ran out of time, the directives the KTAP specification has for a test that
//! could not run to a result, so dashboards do not count it as a kernel failure. The last
//! line is kselftest's totals.

use std::fmt::Write;

use super::Report;
use crate::outcome::Outcome;

pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "KTAP version 1");
    let _ = writeln!(
        out,
        "# zccheck {} on Linux {}",
        report.tool.version, report.kernel.release
    );
    let _ = writeln!(out, "1..{}", report.cases.len());
    for (i, c) in report.cases.iter().enumerate() {
        let n = i + 1;
        let reason = one_line(&c.reason);
        match c.outcome {
            Outcome::Pass => {
                let _ = writeln!(out, "ok {n} {}", c.id);
            }
            Outcome::Unsupported => {
                let _ = writeln!(out, "ok {n} {} # SKIP unsupported: {reason}", c.id);
            }
            Outcome::Skipped => {
                let _ = writeln!(out, "ok {n} {} # SKIP {reason}", c.id);
            }
            Outcome::Fail | Outcome::Error => {
                let _ = writeln!(out, "# {}: {reason}", c.outcome);
                if let Some(ev) = &c.evidence {
                    for line in ev.lines().take(40) {
                        let _ = writeln!(out, "# {line}");
                    }
                }
                let _ = writeln!(out, "# replay: {}", c.replay);
                let directive = match c.outcome {
                    Outcome::Error if is_timeout(&c.reason) => format!(" # TIMEOUT {reason}"),
                    Outcome::Error => format!(" # ERROR {reason}"),
                    _ => String::new(),
                };
                let _ = writeln!(out, "not ok {n} {}{directive}", c.id);
            }
        }
    }
    let skip = report.count(Outcome::Skipped) + report.count(Outcome::Unsupported);
    let _ = writeln!(
        out,
        "# Totals: pass:{} fail:{} xfail:0 xpass:0 skip:{skip} error:{}",
        report.count(Outcome::Pass),
        report.count(Outcome::Fail),
        report.count(Outcome::Error),
    );
    out
}

/// The runner words a case killed at its time limit as `timeout: ...`.
fn is_timeout(reason: &str) -> bool {
    reason.starts_with("timeout")
}

/// KTAP result lines are single lines; a `#` in a reason would start a new directive.
fn one_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().replace('#', "no.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Report;

    fn sample_with(outcome: &str, reason: &str) -> String {
        let text = include_str!("../../../fixtures/samples/report-minimal.json");
        let mut r = Report::parse(text).unwrap();
        r.cases[2].outcome = match outcome {
            "error" => Outcome::Error,
            _ => Outcome::Fail,
        };
        r.cases[2].reason = reason.into();
        render(&r)
    }

    #[test]
    fn error_and_timeout_carry_their_directive() {
        let e = sample_with("error", "building the pair: # no veth\nmore");
        assert!(
            e.contains("\nnot ok 3 send.ids.udp4.pair # ERROR building the pair: no. no veth\n"),
            "{e}"
        );
        let t = sample_with(
            "error",
            "timeout: no result within 60s; the case was killed",
        );
        assert!(
            t.contains("\nnot ok 3 send.ids.udp4.pair # TIMEOUT timeout: no result within 60s"),
            "{t}"
        );
        assert!(t.contains("error:1"), "{t}");
    }

    #[test]
    fn a_failure_has_no_directive() {
        let f = sample_with("fail", "the kernel said so");
        assert!(f.contains("\nnot ok 3 send.ids.udp4.pair\n"), "{f}");
        assert!(!f.contains("# ERROR") && !f.contains("# TIMEOUT"), "{f}");
    }
}
