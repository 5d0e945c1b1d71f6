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
    // One count, in the suite's own five outcomes, closing the summary: an `error` is not
    // a `fail` (the suite could not run the case), and `unsupported` is not `skipped`.
    out.push_str(&format!("\nzccheck: {}\n", totals_line(report)));
    out
}

/// `3 pass, 1 fail, 0 unsupported, 2 skipped, 1 error`.
pub fn totals_line(report: &Report) -> String {
    Outcome::ALL
        .iter()
        .map(|o| format!("{} {}", report.count(*o), o))
        .collect::<Vec<_>>()
        .join(", ")
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_count_in_the_five_outcomes() {
        let mut r = crate::report::tests::sample();
        r.cases[0].outcome = Outcome::Error;
        let text = summary(&r);
        let counts: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(" pass") || l.contains("passed") || l.contains("failed"))
            .collect();
        assert_eq!(
            counts,
            ["zccheck: 0 pass, 1 fail, 1 unsupported, 0 skipped, 1 error"],
            "{text}"
        );
    }
}
