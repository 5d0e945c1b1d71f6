//! KTAP (the kernel's test output format, as kselftest prints it) for kernel CI systems.
//! `unsupported` and `skipped` cases are `ok ... # SKIP reason`; `fail` and `error` are
//! `not ok`, with the reason on a diagnostic line; the last line is kselftest's totals.

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
                let _ = writeln!(out, "not ok {n} {}", c.id);
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

/// KTAP result lines are single lines; a `#` in a reason would start a new directive.
fn one_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().replace('#', "no.")
}
