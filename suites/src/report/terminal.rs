//! What a person sees: a progress line per case while the run goes, then a summary with every
//! failure's reason and replay command.

use std::io::Write;

use super::{CaseRecord, Report};
use crate::outcome::Outcome;

/// Prints one finished case (to stderr, so stdout stays free for `--ktap`).
pub fn progress(done: usize, total: usize, rec: &CaseRecord) {
    progress_running(done, total, rec, &[])
}

/// Prints one finished case, and the cases still running alongside it.
pub fn progress_running(done: usize, total: usize, rec: &CaseRecord, running: &[&str]) {
    let mark = match rec.outcome {
        Outcome::Pass => "pass",
        Outcome::Fail => "FAIL",
        Outcome::Unsupported => "unsupported",
        Outcome::Skipped => "skipped",
        Outcome::Error => "ERROR",
    };
    let width = total.to_string().len();
    let mut line = format!(
        "[{done:>width$}/{total}] {mark:<11} {} ({} ms)",
        rec.id, rec.duration_ms
    );
    if rec.outcome != Outcome::Pass {
        line.push_str(&format!(": {}", first_line(&rec.reason)));
    }
    if !running.is_empty() {
        line.push_str(&format!("  [running: {}]", running.join(", ")));
    }
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Says what is running when nothing has finished for a while.
pub fn still_running(running: &[(&str, std::time::Duration)]) {
    let what: Vec<String> = running
        .iter()
        .map(|(id, t)| format!("{id} ({} s)", t.as_secs()))
        .collect();
    let _ = writeln!(std::io::stderr(), "  still running: {}", what.join(", "));
}

/// The closing summary.
pub fn summary(report: &Report) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "\nzccheck {} on Linux {} ({}, {}): {} cases in {:.1} s\n",
        report.tool.version,
        report.kernel.release,
        report.environment.kind,
        match report.environment.privileges.mode {
            harness::privileges::Mode::Native => "native privileges",
            harness::privileges::Mode::Rootless => "rootless",
        },
        report.cases.len(),
        report.duration_ms as f64 / 1000.0
    ));
    let counts: Vec<String> = Outcome::ALL
        .iter()
        .map(|o| format!("{} {}", report.count(*o), o))
        .collect();
    out.push_str(&format!("  {}\n", counts.join(", ")));
    for c in report
        .cases
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Fail | Outcome::Error))
    {
        out.push_str(&format!(
            "\n{} {}: {}\n",
            c.outcome.name().to_uppercase(),
            c.id,
            c.reason
        ));
        if let Some(ev) = &c.evidence {
            for l in ev.lines().take(30) {
                out.push_str(&format!("    {l}\n"));
            }
        }
        out.push_str(&format!("  replay: {}\n", c.replay));
    }
    // `N passed, N failed` is the plain closing line generic CI log readers recognise.
    out.push_str(&format!(
        "\nzccheck: {} passed, {} failed, {} skipped\n",
        report.count(Outcome::Pass),
        report.count(Outcome::Fail) + report.count(Outcome::Error),
        report.count(Outcome::Skipped) + report.count(Outcome::Unsupported),
    ));
    out
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}
