//! Text renderings of a [`BenchReport`]: the full per-path tables the terminal shows, and a
//! compact Markdown table for REPORT.md. Pure functions of the report.

use std::fmt::Write;

use super::crossover::{human_size, Crossover};
use super::modes::{Mode, Side};
use super::paths::PathKind;
use super::{BenchReport, Series};

/// `0.123`, `12.3`, `123`: three significant digits.
pub fn sig3(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn side_word(side: Side) -> &'static str {
    match side {
        Side::Send => "sender",
        Side::Receive => "receiver",
    }
}

/// The paths that have at least one series, in the order measured.
fn paths_of(b: &BenchReport) -> Vec<PathKind> {
    let mut out: Vec<PathKind> = Vec::new();
    for s in &b.series {
        if !out.contains(&s.path) {
            out.push(s.path);
        }
    }
    out
}

fn cpu(c: Option<usize>) -> String {
    c.map(|c| c.to_string())
        .unwrap_or_else(|| "(not pinned)".into())
}

/// `0.412 ±6%` (median and spread of the side's cost), or why there is none.
fn cost_cell(s: &Series, size: u64) -> String {
    match s.point(size) {
        None => "".into(),
        Some(p) if p.error.is_some() => "error".into(),
        Some(p) => match p.cost_summary(s.mode.side()) {
            Some(c) => format!("{} ±{:.0}%", sig3(c.median), c.spread * 100.0),
            None => "n/a".into(),
        },
    }
}

/// The full result for a terminal: per path, the cost per byte of the thread each mode is
/// about (median ± relative spread of the repetitions) per size, then the crossovers.
pub fn terminal(b: &BenchReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "zccheck bench: {}", b.context.line());
    for r in &b.context.remarks {
        let _ = writeln!(out, "  note: {r}");
    }
    let _ = writeln!(
        out,
        "  {} repetitions per point after a warm-up; cost = CPU ns per byte of the thread \
         a mode is about (tx: sender, rx: receiver; ±: (max-min)/median of the repetitions); \
         sender on CPU {}, receiver on CPU {}",
        b.settings.repetitions,
        cpu(b.settings.sender_cpu),
        cpu(b.settings.receiver_cpu)
    );
    for path in paths_of(b) {
        let measured: Vec<&Series> = b
            .series
            .iter()
            .filter(|s| s.path == path && s.not_measured.is_none())
            .collect();
        let _ = writeln!(out, "\n{}", path.id());
        if measured.is_empty() {
            let _ = writeln!(out, "  nothing measured");
        } else {
            let _ = writeln!(out, "  {}", measured[0].setup);
            let _ = write!(out, "  {:>8}", "size");
            for s in &measured {
                let _ = write!(
                    out,
                    " {:>20}",
                    format!(
                        "{} {}",
                        s.mode.id(),
                        if s.mode.side() == Side::Send {
                            "tx"
                        } else {
                            "rx"
                        }
                    )
                );
            }
            let _ = writeln!(out);
            let mut sizes: Vec<u64> = measured
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.size))
                .collect();
            sizes.sort_unstable();
            sizes.dedup();
            for size in sizes {
                let _ = write!(out, "  {:>8}", human_size(size));
                for s in &measured {
                    let _ = write!(out, " {:>20}", cost_cell(s, size));
                }
                let _ = writeln!(out);
            }
            let largest = measured
                .iter()
                .flat_map(|s| s.points.iter())
                .filter(|p| p.throughput.is_some())
                .map(|p| p.size)
                .max();
            if let Some(size) = &largest {
                let _ = write!(out, "  MB/s at {}:", human_size(*size));
                for s in &measured {
                    if let Some(t) = s.point(*size).and_then(|p| p.throughput.as_ref()) {
                        let _ = write!(out, " {} {};", s.mode.id(), sig3(t.median));
                    }
                }
                let _ = writeln!(out);
            }
            for s in &measured {
                for p in s.points.iter().filter(|p| p.error.is_some()) {
                    let _ = writeln!(
                        out,
                        "  error: {} at {}: {}",
                        s.mode.id(),
                        human_size(p.size),
                        p.error.as_deref().unwrap_or("")
                    );
                }
            }
        }
        for c in b.crossovers.iter().filter(|c| c.path == path) {
            let _ = writeln!(
                out,
                "  crossover {} vs {} ({} CPU): {}",
                c.mode.id(),
                c.baseline.id(),
                side_word(c.side),
                c.finding.describe()
            );
        }
        if let Some(copied) = copied_summary(b, path) {
            let _ = writeln!(out, "  {copied}");
        }
        if let Some(mapped) = mapped_summary(b, path) {
            let _ = writeln!(out, "  {mapped}");
        }
    }
    let absent: Vec<String> = b
        .series
        .iter()
        .filter_map(|s| {
            s.not_measured
                .as_ref()
                .map(|w| format!("{} on {}: {w}", s.mode.id(), s.path.id()))
        })
        .collect();
    if !absent.is_empty() {
        let _ = writeln!(out, "\nnot measured:");
        for a in absent {
            let _ = writeln!(out, "  {a}");
        }
    }
    let _ = writeln!(out, "\n({:.1} s)", b.duration_ms as f64 / 1000.0);
    out
}

/// "the kernel reported copying: send.msg_zerocopy 100%, uring.send_zc 100%".
fn copied_summary(b: &BenchReport, path: PathKind) -> Option<String> {
    let parts: Vec<String> = b
        .series
        .iter()
        .filter(|s| s.path == path)
        .filter_map(|s| {
            let f: Vec<f64> = s.points.iter().filter_map(|p| p.copied_fraction).collect();
            if f.is_empty() || s.mode.side() == Side::Receive {
                return None;
            }
            let mean = f.iter().sum::<f64>() / f.len() as f64;
            Some(format!("{} {:.0}%", s.mode.id(), mean * 100.0))
        })
        .collect();
    (!parts.is_empty()).then(|| {
        format!(
            "zero-copy sends the kernel reported as copied (mean over sizes): {}",
            parts.join(", ")
        )
    })
}

/// "bytes recv.tcp_zerocopy received by mapping pages: 256 B 0%, ..., 1 MiB 98%".
fn mapped_summary(b: &BenchReport, path: PathKind) -> Option<String> {
    let s = b.series(path, Mode::TcpZerocopyReceive)?;
    let parts: Vec<String> = s
        .points
        .iter()
        .filter_map(|p| {
            p.mapped_fraction
                .map(|f| format!("{} {:.0}%", human_size(p.size), f * 100.0))
        })
        .collect();
    (!parts.is_empty()).then(|| {
        format!(
            "bytes {} received by mapping pages (the rest by recv()): {}",
            s.mode.id(),
            parts.join(", ")
        )
    })
}

/// Up to four sizes to show in the compact table: the smallest, about 4 KiB, about 64 KiB,
/// and the largest measured.
fn table_sizes(b: &BenchReport) -> Vec<u64> {
    let sizes = &b.settings.sizes;
    let (Some(&first), Some(&last)) = (sizes.first(), sizes.last()) else {
        return vec![];
    };
    let near = |t: u64| {
        *sizes
            .iter()
            .min_by_key(|&&s| (s as f64 / t as f64).ln().abs().to_bits())
            .expect("non-empty")
    };
    let mut out = vec![first, near(4096), near(65536), last];
    out.dedup();
    out
}

/// A compact Markdown table for REPORT.md: per path and mode, the cost per byte of the
/// thread the mode is about at a few sizes, the throughput at the largest size, and the
/// crossover. Starts with the machine context; TCG runs say their figures are not
/// meaningful.
pub fn markdown_table(b: &BenchReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Benchmark on {}.", b.context.line());
    if !b.context.timing_meaningful {
        let _ = writeln!(
            out,
            "\n**Timings taken under TCG are not meaningful; no comparison is made.**"
        );
    }
    let sizes = table_sizes(b);
    let _ = write!(out, "\n| path | mode | CPU of |");
    for s in &sizes {
        let _ = write!(out, " ns/B at {} |", human_size(*s));
    }
    let _ = writeln!(out, " MB/s (largest) | crossover |");
    let _ = write!(out, "|---|---|---|");
    for _ in &sizes {
        let _ = write!(out, "---:|");
    }
    let _ = writeln!(out, "---:|---|");
    for path in paths_of(b) {
        for s in b.series.iter().filter(|s| s.path == path) {
            let _ = write!(
                out,
                "| {} | `{}` | {} |",
                path.id(),
                s.mode.id(),
                side_word(s.mode.side())
            );
            if let Some(why) = &s.not_measured {
                for _ in &sizes {
                    let _ = write!(out, " – |");
                }
                let _ = writeln!(out, " – | {} |", md_escape(why));
                continue;
            }
            for &size in &sizes {
                let _ = write!(out, " {} |", cost_cell(s, size));
            }
            let largest = s.points.iter().rev().find_map(|p| p.throughput.as_ref());
            let _ = write!(
                out,
                " {} |",
                largest
                    .map(|t| sig3(t.median))
                    .unwrap_or_else(|| "–".into())
            );
            let cross = b
                .crossovers
                .iter()
                .find(|c| c.path == path && c.mode == s.mode)
                .map(|c| short_crossover(&c.finding, c.baseline))
                .unwrap_or_else(|| "baseline".into());
            let _ = writeln!(out, " {} |", md_escape(&cross));
        }
    }
    let _ = writeln!(
        out,
        "\n± is (max − min)/median over {} repetitions. A crossover is the smallest size from \
         which the mode costs significantly less CPU per byte than its baseline \
         (one-sided Mann-Whitney, p ≤ {}).",
        b.settings.repetitions,
        super::crossover::ALPHA
    );
    out
}

fn short_crossover(c: &Crossover, baseline: Mode) -> String {
    match c {
        Crossover::At {
            size,
            below,
            confidence,
            ..
        } => format!(
            "{} (vs {}; {}{})",
            human_size(*size),
            baseline.id(),
            format!("{confidence:?}").to_lowercase(),
            below
                .map(|b| format!("; above {}", human_size(b)))
                .unwrap_or_default()
        ),
        Crossover::None { why } => format!("none (vs {}): {why}", baseline.id()),
        Crossover::NotCompared { why } => format!("not compared: {why}"),
    }
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The matrix sections of benchmark reports (`zccheck bench --json`), one per file, each
/// labelled with the kernel it was measured on.
pub fn matrix_sections(
    files: &[std::path::PathBuf],
) -> anyhow::Result<Vec<crate::report::matrix::Section>> {
    use anyhow::Context;
    files
        .iter()
        .map(|file| {
            let report = crate::report::Report::load(file)?;
            let bench = report
                .bench
                .as_ref()
                .with_context(|| format!("{} has no bench section", file.display()))?;
            Ok(matrix_section(
                &format!("Linux {}", report.kernel.release),
                bench,
            ))
        })
        .collect()
}

/// The section a benchmark adds to the matrix pages: the compact table, and in HTML the plot
/// too (inline SVG, no script). `label` names where it was measured.
pub fn matrix_section(label: &str, b: &BenchReport) -> crate::report::matrix::Section {
    let table = markdown_table(b);
    crate::report::matrix::Section {
        title: format!("What zero-copy costs: {label}"),
        html: format!(
            "<div class=\"bench\">{}<pre>{}</pre></div>",
            super::svg::plot(b),
            html_escape(&table)
        ),
        markdown: table,
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::context::MachineContext;
    use super::super::stats::Summary;
    use super::super::{crossovers, BenchSettings, ModeStatus, SeriesPoint};
    use super::*;

    fn point(size: u64, cost: f64, side: Side) -> SeriesPoint {
        let reps = vec![cost * 0.98, cost, cost * 1.02, cost * 1.01, cost * 0.99];
        let (s, r) = match side {
            Side::Send => (reps.clone(), vec![]),
            Side::Receive => (vec![], reps.clone()),
        };
        SeriesPoint {
            size,
            messages: 100,
            sender: Summary::of(&s),
            receiver: Summary::of(&r),
            sender_ns_per_byte: s,
            receiver_ns_per_byte: r,
            throughput_mb_s: vec![1000.0; 5],
            throughput: Summary::of(&[1000.0; 5]),
            copied_fraction: None,
            mapped_fraction: None,
            error: None,
        }
    }

    /// A report with a crossover on the dead end, none on loopback, and zcrx absent.
    pub(crate) fn sample(tcg: bool) -> BenchReport {
        let sizes: Vec<u64> = (0..=6).map(|k| 256u64 << (2 * k)).collect();
        let series_of = |path: PathKind, mode: Mode, f: &dyn Fn(u64) -> f64| Series {
            path,
            mode,
            setup: "test".into(),
            not_measured: None,
            points: sizes.iter().map(|&s| point(s, f(s), mode.side())).collect(),
        };
        let series = vec![
            series_of(PathKind::Loopback, Mode::SendCopy, &|_| 1.0),
            series_of(PathKind::Loopback, Mode::MsgZerocopy, &|_| 1.4),
            series_of(PathKind::Deadend, Mode::SendCopy, &|_| 1.0),
            series_of(PathKind::Deadend, Mode::MsgZerocopy, &|s| {
                0.3 + 2000.0 / s as f64
            }),
            Series {
                path: PathKind::Loopback,
                mode: Mode::ZcrxNodev,
                setup: "test".into(),
                not_measured: Some("not measured: absent (probe zcrx.nodev: EINVAL)".into()),
                points: vec![],
            },
        ];
        let context = MachineContext::from_parts(
            "model name : Test CPU\n",
            if tcg { "vm" } else { "native" },
            None,
            "",
            None,
            Some("0.1 0.1 0.1".into()),
            Some(false),
            2,
        );
        BenchReport {
            crossovers: crossovers(&series, &context),
            context,
            settings: BenchSettings {
                quick: true,
                sizes,
                repetitions: 5,
                budget_s: 5.0,
                warmup: "w".into(),
                sender_cpu: Some(0),
                receiver_cpu: Some(1),
                metric: "m".into(),
            },
            modes: vec![ModeStatus {
                mode: Mode::ZcrxNodev,
                side: Side::Receive,
                baseline: Some(Mode::RecvCopy),
                available: false,
                detail: "absent".into(),
            }],
            series,
            duration_ms: 1234,
        }
    }

    #[test]
    fn the_markdown_table_names_crossovers_and_absences() {
        let md = markdown_table(&sample(false));
        assert!(
            md.starts_with("Benchmark on Test CPU, 2 CPUs, native"),
            "{md}"
        );
        assert!(
            md.contains("| deadend | `send.msg_zerocopy` | sender |"),
            "{md}"
        );
        assert!(
            md.contains("4 KiB (vs send.copy; high; above 1 KiB)"),
            "{md}"
        );
        assert!(
            md.contains("none (vs send.copy): dearer at every size"),
            "{md}"
        );
        assert!(md.contains("absent (probe zcrx.nodev: EINVAL)"), "{md}");
        assert!(md.contains("ns/B at 256 B"), "{md}");
        assert!(md.contains("ns/B at 1 MiB"), "{md}");
        assert!(!md.contains("not meaningful"));
    }

    #[test]
    fn a_tcg_run_compares_nothing_and_says_so() {
        let b = sample(true);
        assert!(b
            .crossovers
            .iter()
            .all(|c| matches!(c.finding, Crossover::NotCompared { .. })));
        let md = markdown_table(&b);
        assert!(md.contains("not meaningful"), "{md}");
        assert!(terminal(&b).contains("TCG"));
    }

    #[test]
    fn the_terminal_view_has_every_size_and_the_findings() {
        let t = terminal(&sample(false));
        for size in ["256 B", "1 KiB", "4 KiB", "64 KiB", "1 MiB"] {
            assert!(t.contains(size), "{size} missing:\n{t}");
        }
        assert!(t.contains("crossover send.msg_zerocopy vs send.copy (sender CPU): 4 KiB"));
        assert!(t.contains("recv.zcrx_nodev on loopback: not measured: absent"));
    }

    #[test]
    fn numbers_keep_three_significant_digits() {
        assert_eq!(sig3(0.12345), "0.123");
        assert_eq!(sig3(1.2345), "1.23");
        assert_eq!(sig3(12.345), "12.3");
        assert_eq!(sig3(1234.4), "1234");
        assert_eq!(sig3(f64::NAN), "n/a");
    }
}
