//! The matrix as Markdown (REPORT.md).

use std::fmt::Write;
use std::path::Path;

use std::collections::BTreeSet;

use super::{compact, list_some, relative, shorten, Column, Footnote, Mark, Matrix, Section};
use crate::case::Area;
use crate::outcome::Outcome;
use crate::probes::Answer;

/// A cell or heading in a Markdown table: no pipes, no line breaks.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn answer_word(a: Option<&Answer>) -> &'static str {
    match a {
        Some(Answer::Present(_)) => "yes",
        Some(Answer::Absent(_)) => "**no**",
        Some(Answer::Blocked(_)) => "blocked",
        None => "·",
    }
}

pub(super) fn render(m: &Matrix, base: &Path, extra: &[Section]) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# zccheck compatibility matrix\n");
    let _ = writeln!(
        o,
        "Can a program rely on zero-copy networking on kernel X, and what behaves differently \
         there? One row per feature, one column per kernel (oldest first), derived by \
         `zccheck matrix` from {} reports; every mark traces back to the cases and probes of the \
         report its column links to (see *Kernels*). Regenerate everything with \
         `cargo run -p zccheck-vm -- matrix` (see `ci/README.md`).\n",
        m.columns.len()
    );
    summary(m, &mut o);
    kernels(m, base, &mut o);
    changes(m, &mut o);
    features(m, &mut o);
    table(m, &mut o);
    notes(m, base, &mut o);
    // Sections other parts of zccheck append (benchmarks) go last.
    for x in extra {
        let _ = writeln!(o, "## {}\n\n{}\n", x.title, x.markdown.trim_end());
    }
    o
}

/// The feature summary: the first thing on the page.
fn summary(m: &Matrix, o: &mut String) {
    let s = m.summary();
    let _ = writeln!(o, "## Summary\n");
    let head: Vec<String> = m.columns.iter().map(|c| cell(&c.label)).collect();
    let _ = writeln!(o, "| feature | {} |", head.join(" | "));
    let _ = writeln!(o, "|---|{}", ":-:|".repeat(head.len()));
    for row in &s.rows {
        let marks: Vec<String> = row
            .cells
            .iter()
            .map(|c| {
                let sups: Vec<String> = c.notes.iter().map(|n| n.to_string()).collect();
                if sups.is_empty() {
                    c.mark.symbol().to_string()
                } else {
                    format!("{}<sup>{}</sup>", c.mark.symbol(), sups.join(","))
                }
            })
            .collect();
        let _ = writeln!(o, "| {} | {} |", cell(&row.name), marks.join(" | "));
    }
    let legend: Vec<String> = Mark::LEGEND
        .iter()
        .chain([&Mark::NoReport])
        .map(|k| format!("{} {}", k.symbol(), k.meaning()))
        .collect();
    let _ = writeln!(o, "\n{}.\n", legend.join("; "));
    for n in 1..=s.notes.len() {
        let _ = writeln!(o, "{n}. {}", one_line(&s.note_text(n)));
    }
    if !s.notes.is_empty() {
        o.push('\n');
    }
    for l in m.summary_lines() {
        let _ = writeln!(o, "- {}", cell(&l));
    }
    o.push('\n');
}

/// What changed between kernels: outcomes, then every differing fact in full.
fn changes(m: &Matrix, o: &mut String) {
    let _ = writeln!(o, "## What changed between kernels\n");
    let outcome_changes = m.outcome_changes();
    let facts = m.fact_changes();
    let fails: Vec<&Footnote> = m
        .footnotes
        .iter()
        .filter(|f| f.outcome == Outcome::Fail)
        .collect();
    if outcome_changes.is_empty() && facts.is_empty() && fails.is_empty() {
        let _ = writeln!(
            o,
            "Every case had the same outcome and the same observed facts on every kernel.\n"
        );
        return;
    }
    if !outcome_changes.is_empty() || !fails.is_empty() {
        let _ = writeln!(o, "### Outcomes\n");
    }
    for ch in &outcome_changes {
        let _ = writeln!(
            o,
            "- {} ({} case{}): {}",
            code_list(&ch.cases, 4),
            ch.cases.len(),
            if ch.cases.len() == 1 { "" } else { "s" },
            ch.describe()
        );
    }
    for f in fails {
        let _ = writeln!(
            o,
            "- **fail**[^{}] on {}: {}",
            f.number,
            f.cells
                .iter()
                .map(|(c, _)| c.as_str())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
                .join(", "),
            cell(&shorten(&f.reason, 160))
        );
    }
    if !facts.is_empty() {
        let _ = writeln!(
            o,
            "\n### Observed facts\n\nEvery fact whose value differs between the kernels that ran \
             its case to a verdict, with every differing part and its values in full; behaviours \
             a program can notice first. Facts that depend on timing are left out (they are in \
             the reports, marked ⏱ in the case table).\n"
        );
    }
    for f in &facts {
        let _ = writeln!(
            o,
            "- {}`{}` in {}: {}",
            if f.is_behaviour() {
                "**behaviour** "
            } else {
                ""
            },
            f.key,
            code_list(&f.cases, usize::MAX),
            one_line(f.means())
        );
        for (paths, values) in f.grouped() {
            let short = values.iter().all(|(v, _)| v.chars().count() <= 40);
            let label = if paths == [""] {
                String::new()
            } else {
                let p: Vec<String> = paths.iter().map(|p| code(p)).collect();
                format!("{}: ", p.join(", "))
            };
            if short {
                let vals: Vec<String> = values
                    .iter()
                    .map(|(v, cols)| format!("{} on {}", code(v), cols.join(", ")))
                    .collect();
                let _ = writeln!(o, "  - {label}{}", vals.join("; "));
            } else {
                let head = if label.is_empty() {
                    "values:".to_string()
                } else {
                    label.trim_end().to_string()
                };
                let _ = writeln!(o, "  - {head}");
                for (v, cols) in values {
                    let _ = writeln!(o, "    - {}: {}", cols.join(", "), code(v));
                }
            }
        }
    }
    o.push('\n');
}

/// Text on one line.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// An inline code span holding `s` whole (a longer fence when `s` has backticks).
fn code(s: &str) -> String {
    let s = one_line(s);
    if s.contains('`') {
        format!("`` {s} ``")
    } else {
        format!("`{s}`")
    }
}

fn kernels(m: &Matrix, base: &Path, o: &mut String) {
    let _ = writeln!(o, "## Kernels\n");
    let _ = writeln!(o, "| column | what it is | build | cases | pass | fail | unsupported | skipped | error | boot to report | report |");
    let _ = writeln!(o, "|---|---|---|--:|--:|--:|--:|--:|--:|--:|---|");
    for c in &m.columns {
        let r = &c.report;
        let n = |x: Outcome| r.count(x).to_string();
        let secs = c
            .provenance
            .as_ref()
            .and_then(|p| p.boot_to_report_ms)
            .map(|ms| format!("{:.1} s", ms as f64 / 1000.0))
            .unwrap_or_else(|| "·".into());
        let (cases, counts) = match c.no_report() {
            Some(_) => ("**no report**".to_string(), vec!["·".to_string(); 5]),
            None => (
                r.cases.len().to_string(),
                Outcome::ALL.iter().map(|x| n(*x)).collect(),
            ),
        };
        let _ = writeln!(
            o,
            "| **{}** | {} | {} | {} | {} | {} | [{}]({}) |",
            cell(&c.label),
            cell(&c.describe()),
            cell(&c.build()),
            cases,
            counts.join(" | "),
            secs,
            c.file
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            relative(&c.file, base)
        );
    }
    o.push('\n');
    for c in m.columns.iter().filter(|c| c.no_report().is_some()) {
        let _ = writeln!(
            o,
            "- **{}: no report.** {} (console's last lines below, under *Kernels without a report*).",
            c.label,
            c.no_report().unwrap_or_default()
        );
    }
    o.push('\n');
}

fn features(m: &Matrix, o: &mut String) {
    let names = m.probe_names();
    let head: Vec<String> = m.columns.iter().map(|c| cell(&c.label)).collect();
    let _ = writeln!(o, "## Probes and configuration\n");
    if !names.is_empty() {
        let _ = writeln!(
            o,
            "What each kernel's probes answered (`no`: the kernel lacks it, so cases needing it \
             are *unsupported*; `blocked`: the environment prevents it, so they are *skipped*).\n"
        );
        let _ = writeln!(o, "| probe | {} |", head.join(" | "));
        let _ = writeln!(o, "|---|{}", "---|".repeat(head.len()));
        for name in &names {
            let words: Vec<&str> = (0..m.columns.len())
                .map(|c| answer_word(m.probe(c, name)))
                .collect();
            let _ = writeln!(o, "| `{name}` | {} |", words.join(" | "));
        }
        o.push('\n');
    }
    let keys = m.config_keys();
    if !keys.is_empty() {
        let _ = writeln!(
            o,
            "Kernel configuration as each report recorded it (`·`: not set):\n"
        );
        let _ = writeln!(o, "| option | {} |", head.join(" | "));
        let _ = writeln!(o, "|---|{}", "---|".repeat(head.len()));
        for k in &keys {
            let vals: Vec<String> = m
                .columns
                .iter()
                .map(|c| {
                    match (
                        &c.report.kernel.config_source,
                        c.report.kernel.config.get(k),
                    ) {
                        (None, _) => "?".into(),
                        (_, Some(v)) => cell(v),
                        (_, None) => "·".into(),
                    }
                })
                .collect();
            let _ = writeln!(o, "| `{k}` | {} |", vals.join(" | "));
        }
        o.push('\n');
    }
}

fn code_list(ids: &[String], max: usize) -> String {
    let shown: Vec<String> = ids.iter().take(max).map(|i| format!("`{i}`")).collect();
    if ids.len() > max {
        format!("{} and {} more", shown.join(", "), ids.len() - max)
    } else {
        shown.join(", ")
    }
}

fn table(m: &Matrix, o: &mut String) {
    let head: Vec<String> = m
        .columns
        .iter()
        .map(|c| format!("**{}**", cell(&c.label)))
        .collect();
    let _ = writeln!(o, "## Cases\n");
    let _ = writeln!(
        o,
        "A cell is the outcome, then the observed facts that differ between kernels. Facts \
         that are the same on every kernel are in the last column. `·`: the case was not in \
         that report; `—`: the kernel produced no report. Footnotes give the reason of every \
         cell that did not pass.\n"
    );
    for area in Area::ALL {
        let rows = m.rows_in(area);
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(o, "### {area} ({} cases)\n", rows.len());
        let _ = writeln!(o, "| case | {} | same on every kernel |", head.join(" | "));
        let _ = writeln!(o, "|---|{}---|", "---|".repeat(head.len()));
        for r in rows {
            let cells: Vec<String> = (0..m.columns.len()).map(|c| cell_text(m, r, c)).collect();
            let common: Vec<String> = m
                .common_facts(r)
                .iter()
                .map(|(k, v)| format!("{k}={}", shorten(v, 40)))
                .collect();
            let _ = writeln!(
                o,
                "| `{}` | {} | {} |",
                m.rows[r].id,
                cells.join(" | "),
                cell(&shorten(&common.join("; "), 120))
            );
        }
        o.push('\n');
    }
}

fn cell_text(m: &Matrix, r: usize, c: usize) -> String {
    let col = &m.columns[c];
    if col.no_report().is_some() {
        return "—".into();
    }
    let Some(rec) = col.cell(&m.rows[r].id) else {
        return "·".into();
    };
    let mut s = match rec.outcome {
        Outcome::Fail => "**FAIL**".to_string(),
        Outcome::Error => "**error**".to_string(),
        o => o.to_string(),
    };
    if let Some(f) = m.footnote_of(r, c) {
        let _ = write!(s, "[^{}]", f.number);
    }
    for k in m.cell_keys(r) {
        if let Some(v) = rec.observed.get(k) {
            // Never cut a differing value: one too long for a cell is in full above.
            let v = compact(v);
            if v.chars().count() <= 32 {
                let _ = write!(s, " · {k}={v}");
            } else {
                let _ = write!(s, " · {k}: see *What changed*");
            }
        }
    }
    cell(&s)
}

fn notes(m: &Matrix, base: &Path, o: &mut String) {
    let without: Vec<&Column> = m
        .columns
        .iter()
        .filter(|c| c.no_report().is_some())
        .collect();
    if !without.is_empty() {
        let _ = writeln!(o, "## Kernels without a report\n");
        for c in without {
            let _ = writeln!(
                o,
                "**{}** ({}, [{}]({})): {}\n",
                c.label,
                c.report.kernel.release,
                relative(&c.file, base)
                    .rsplit('/')
                    .next()
                    .unwrap_or_default(),
                relative(&c.file, base),
                c.no_report().unwrap_or_default()
            );
            let tail = c
                .provenance
                .as_ref()
                .map(|p| p.console_tail.clone())
                .unwrap_or_default();
            if !tail.is_empty() {
                let _ = writeln!(
                    o,
                    "```text\n{}\n```\n",
                    tail[tail.len().saturating_sub(15)..].join("\n")
                );
            }
        }
    }
    for f in &m.footnotes {
        let mut by_col: Vec<(String, Vec<String>)> = Vec::new();
        for (col, id) in &f.cells {
            match by_col.iter_mut().find(|(c, _)| c == col) {
                Some((_, ids)) => ids.push(id.clone()),
                None => by_col.push((col.clone(), vec![id.clone()])),
            }
        }
        let wher: Vec<String> = by_col
            .iter()
            .map(|(col, ids)| {
                let file = m
                    .columns
                    .iter()
                    .find(|c| c.label == *col)
                    .map(|c| relative(&c.file, base))
                    .unwrap_or_default();
                format!("{col} (`{file}`: {})", list_some(ids, 3))
            })
            .collect();
        let evidence = f
            .evidence
            .as_deref()
            .and_then(|e| e.lines().next())
            .map(|l| format!(" Evidence: `{}`", shorten(l, 160).replace('`', "'")))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "[^{}]: **{}**: {}{} In {}.",
            f.number,
            f.outcome,
            cell(&f.reason),
            evidence,
            wher.join("; ")
        );
    }
}
