//! The compatibility matrix: many reports (one per kernel) side by side, rendered as
//! Markdown (REPORT.md) here and as a static page in [`super::html`].
//!
//! Columns are reports, ordered by kernel version; rows are case ids grouped by area. A cell
//! is the outcome plus the observed facts that carry news. Which facts those are is decided
//! from the data, so no area has to register anything: a scalar fact (a string, number or
//! boolean, such as an errno or a struct size) whose value differs between kernels is news
//! and is shown in the cells; a fact that is the same everywhere is shown once per row; a
//! structured fact (an object or list, typically counts from a random run) stays in the
//! report and in the page's tooltips, because its variation is mostly timing. A case can
//! name facts that are always shown by observing `matrix.headline` with a key or a list of
//! keys.

use std::collections::{BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::{CaseRecord, Report};
use crate::case::Area;
use crate::outcome::Outcome;

mod changes;
mod compare;
pub mod html;
mod markdown;
mod summary;

pub use changes::{differing_parts, FactChange, Part};
pub use compare::OutcomeChange;
pub use summary::{Cell, FeatureRow, Mark, Summary};

/// The key under which a report carries its [`Provenance`].
pub const PROVENANCE_KEY: &str = "provenance";

/// Observed by a case to name the facts the matrix always shows in its cells.
pub const HEADLINE_KEY: &str = "matrix.headline";

/// Where a report came from, written by the VM runner next to the report's own fields: the
/// column label, the packages the kernel came from, how it was booted, and, when the kernel
/// produced no report, why (with the console's last lines).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The column's name (`5.10`, `native`); it also names the report file.
    pub label: String,
    /// `debian` (a Debian cloud kernel in a VM), `custom` (a user's kernel in a VM) or
    /// `native` (the machine's own kernel).
    pub source: String,
    /// `name=version` of the packages the kernel came from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
    /// `kvm` or `tcg` for VMs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accel: Option<String>,
    /// `report`, or `no-report` when the kernel did not produce one.
    pub status: String,
    /// Why there is no report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// The console's last lines, kept when there is no report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub console_tail: Vec<String>,
    /// From starting the VM (or the native run) to having the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_to_report_ms: Option<u64>,
    /// From starting the VM to the init's first line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_to_init_ms: Option<u64>,
    /// Modules loaded into the VM, and modules the suite wanted that this kernel lacks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_modules: Vec<String>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

pub const STATUS_REPORT: &str = "report";
pub const STATUS_NO_REPORT: &str = "no-report";

impl Provenance {
    /// The provenance a report carries, if any.
    pub fn of(report: &Report) -> Result<Option<Provenance>> {
        report
            .extra
            .get(PROVENANCE_KEY)
            .map(|v| {
                serde_json::from_value(v.clone())
                    .with_context(|| format!("at field `{PROVENANCE_KEY}`"))
            })
            .transpose()
    }

    pub fn attach(&self, report: &mut Report) {
        report.extra.insert(
            PROVENANCE_KEY.into(),
            serde_json::to_value(self).expect("provenance serialises"),
        );
    }
}

/// One report: one kernel.
#[derive(Debug, Clone)]
pub struct Column {
    pub label: String,
    /// The report file, as given.
    pub file: PathBuf,
    pub report: Report,
    pub provenance: Option<Provenance>,
    index: HashMap<String, usize>,
}

impl Column {
    pub fn cell(&self, id: &str) -> Option<&CaseRecord> {
        self.index.get(id).map(|&i| &self.report.cases[i])
    }

    /// Why this kernel has no report, if it has none.
    pub fn no_report(&self) -> Option<&str> {
        self.provenance
            .as_ref()
            .filter(|p| p.status == STATUS_NO_REPORT)
            .map(|p| p.cause.as_deref().unwrap_or("no report"))
    }

    /// `vm (tcg)`, `native`.
    pub fn how(&self) -> String {
        let accel = self.provenance.as_ref().and_then(|p| p.accel.as_deref());
        match accel {
            Some(a) => format!("{} ({a})", self.report.environment.kind),
            None => self.report.environment.kind.clone(),
        }
    }

    /// The column in words: what machine ran which kernel, and how.
    pub fn describe(&self) -> String {
        let r = &self.report;
        let k = &r.kernel;
        let p = self.provenance.as_ref();
        let source = p.map(|p| p.source.as_str()).unwrap_or("");
        let accel = p
            .and_then(|p| p.accel.as_deref())
            .map(|a| format!(", {}", a.to_uppercase()))
            .unwrap_or_default();
        let packages = p
            .filter(|p| !p.packages.is_empty())
            .map(|p| format!(" ({})", p.packages.join(", ")))
            .unwrap_or_default();
        match (r.environment.kind.as_str(), source) {
            ("native", _) | (_, "native") => format!(
                "the machine that made the matrix, natively: Linux {} {} ({}), {}, {} CPU{}",
                k.release,
                k.arch,
                k.version,
                match r.environment.privileges.mode {
                    harness::privileges::Mode::Native => "with real privileges",
                    harness::privileges::Mode::Rootless => "rootless (in a user namespace)",
                },
                r.environment.cpus,
                if r.environment.cpus == 1 { "" } else { "s" },
            ),
            (_, "debian") => format!(
                "Debian cloud kernel Linux {} {}{packages}, in a qemu VM{accel}",
                k.release, k.arch
            ),
            (_, "custom") => format!(
                "a kernel built by the user, Linux {} {}, in a qemu VM{accel}",
                k.release, k.arch
            ),
            (kind, _) => format!("Linux {} {}, run in: {kind}{accel}", k.release, k.arch),
        }
    }

    /// The Debian version the kernel came from, else the kernel's `uname -v`.
    pub fn build(&self) -> String {
        self.provenance
            .as_ref()
            .and_then(|p| p.packages.first())
            .and_then(|p| p.split_once('='))
            .map(|(_, v)| v.to_string())
            .unwrap_or_else(|| self.report.kernel.version.clone())
    }
}

/// One case id.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: String,
    pub area: Area,
    pub title: String,
}

/// The reason shared by one or more cells that did not pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Footnote {
    pub number: usize,
    pub outcome: Outcome,
    pub reason: String,
    pub evidence: Option<String>,
    /// (column label, case id) of every cell with this reason.
    pub cells: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct Matrix {
    pub columns: Vec<Column>,
    pub rows: Vec<Row>,
    pub footnotes: Vec<Footnote>,
    /// (row index, column index) -> footnote number.
    cell_notes: HashMap<(usize, usize), usize>,
    /// Per row: the fact keys shown in its cells.
    cell_keys: Vec<Vec<String>>,
}

impl Matrix {
    /// Indices of the rows of `area`, in matrix order.
    pub fn rows_in(&self, area: Area) -> Vec<usize> {
        (0..self.rows.len())
            .filter(|&r| self.rows[r].area == area)
            .collect()
    }

    /// Loads reports; an unreadable, malformed or truncated one is an error naming the file
    /// and the problem.
    pub fn load(files: &[PathBuf]) -> Result<Matrix> {
        if files.is_empty() {
            bail!("no reports given");
        }
        let mut reports = Vec::new();
        for f in files {
            let r = Report::load(f)?;
            let p =
                Provenance::of(&r).with_context(|| format!("malformed report {}", f.display()))?;
            reports.push((f.clone(), r, p));
        }
        Self::from_reports(reports)
    }

    pub fn from_reports(reports: Vec<(PathBuf, Report, Option<Provenance>)>) -> Result<Matrix> {
        let mut columns: Vec<Column> = reports
            .into_iter()
            .map(|(file, report, provenance)| {
                let label = provenance
                    .as_ref()
                    .map(|p| p.label.clone())
                    .filter(|l| !l.is_empty())
                    .unwrap_or_else(|| report.kernel.release.clone());
                let index = report
                    .cases
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.id.clone(), i))
                    .collect();
                Column {
                    label,
                    file,
                    report,
                    provenance,
                    index,
                }
            })
            .collect();
        for (i, c) in columns.iter().enumerate() {
            if let Some(d) = columns[..i].iter().find(|d| d.label == c.label) {
                bail!(
                    "two reports are labelled {:?}: {} and {}",
                    c.label,
                    d.file.display(),
                    c.file.display()
                );
            }
        }
        // Oldest kernel first; a report without a parseable version goes last.
        columns.sort_by(|a, b| {
            let key = |c: &Column| (c.report.kernel.numeric.is_none(), c.report.kernel.numeric);
            key(a).cmp(&key(b)).then_with(|| a.label.cmp(&b.label))
        });
        let mut rows: Vec<Row> = Vec::new();
        let mut seen = BTreeSet::new();
        for c in &columns {
            for case in &c.report.cases {
                if seen.insert(case.id.clone()) {
                    rows.push(Row {
                        id: case.id.clone(),
                        area: case.area,
                        title: case.title.clone(),
                    });
                }
            }
        }
        // Grouped by area in the areas' own order; the suite's order within an area.
        rows.sort_by_key(|r| Area::ALL.iter().position(|a| *a == r.area));
        let mut m = Matrix {
            columns,
            rows,
            footnotes: vec![],
            cell_notes: HashMap::new(),
            cell_keys: vec![],
        };
        m.number_footnotes();
        m.cell_keys = (0..m.rows.len()).map(|r| m.pick_cell_keys(r)).collect();
        Ok(m)
    }

    fn number_footnotes(&mut self) {
        let mut by_reason: HashMap<(Outcome, String), usize> = HashMap::new();
        for (r, row) in self.rows.iter().enumerate() {
            for (c, col) in self.columns.iter().enumerate() {
                let Some(rec) = col.cell(&row.id) else {
                    continue;
                };
                if rec.outcome == Outcome::Pass {
                    continue;
                }
                let key = (rec.outcome, rec.reason.clone());
                let n = *by_reason.entry(key).or_insert_with(|| {
                    self.footnotes.push(Footnote {
                        number: self.footnotes.len() + 1,
                        outcome: rec.outcome,
                        reason: rec.reason.clone(),
                        evidence: rec.evidence.clone(),
                        cells: vec![],
                    });
                    self.footnotes.len()
                });
                self.footnotes[n - 1]
                    .cells
                    .push((col.label.clone(), row.id.clone()));
                self.cell_notes.insert((r, c), n);
            }
        }
    }

    pub fn footnote_of(&self, row: usize, col: usize) -> Option<&Footnote> {
        self.cell_notes
            .get(&(row, col))
            .map(|n| &self.footnotes[n - 1])
    }

    /// The Markdown page; links are relative to `base` (the folder the page is written to).
    pub fn markdown(&self, base: &Path) -> String {
        markdown::render(self, base, &[])
    }

    /// The Markdown page with `extra` sections appended after the matrix's own.
    pub fn markdown_with(&self, base: &Path, extra: &[Section]) -> String {
        markdown::render(self, base, extra)
    }
}

/// A section another part of zccheck appends to the pages (a benchmark table, a chart): the
/// same content as Markdown and as an HTML fragment, under its own heading.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Section {
    pub title: String,
    pub markdown: String,
    pub html: String,
}

/// A fact's value in one short line: strings bare, everything else as compact JSON.
pub fn compact(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `s` cut to `max` characters, with an ellipsis when cut.
pub fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// `path` relative to the folder `base`, for links in pages written there.
pub fn relative(path: &Path, base: &Path) -> String {
    let abs = |p: &Path| {
        p.canonicalize().unwrap_or_else(|_| {
            std::env::current_dir()
                .map(|d| d.join(p))
                .unwrap_or_else(|_| p.to_path_buf())
        })
    };
    let (p, b) = (abs(path), abs(base));
    let pc: Vec<Component> = p.components().collect();
    let bc: Vec<Component> = b.components().collect();
    let common = pc.iter().zip(&bc).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<String> = vec!["..".into(); bc.len() - common];
    parts.extend(
        pc[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts.join("/")
}

/// `a, b, c and 4 more`.
pub fn list_some(items: &[String], max: usize) -> String {
    if items.len() <= max {
        items.join(", ")
    } else {
        format!("{} and {} more", items[..max].join(", "), items.len() - max)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::report::{Environment, Settings, Tool};

    /// The matrix of `reports`, each named after its kernel release.
    pub(crate) fn matrix(reports: Vec<Report>) -> Matrix {
        Matrix::from_reports(
            reports
                .into_iter()
                .map(|r| {
                    let p = Provenance::of(&r).unwrap();
                    (
                        std::path::PathBuf::from(format!("{}.json", r.kernel.release)),
                        r,
                        p,
                    )
                })
                .collect(),
        )
        .unwrap()
    }

    /// A small report: `cases` are (id, outcome, reason, observed).
    pub(crate) fn report(
        label: &str,
        release: &str,
        cases: &[(&str, Outcome, &str, serde_json::Value)],
    ) -> Report {
        let mut r = Report {
            schema_version: 1,
            tool: Tool {
                name: "zccheck".into(),
                version: "0".into(),
            },
            kernel: harness::kernel::KernelInfo {
                release: release.into(),
                version: "#1".into(),
                arch: "x86_64".into(),
                numeric: harness::kernel::parse_release(release),
                config_source: Some("test".into()),
                config: BTreeMap::new(),
                page_size: 4096,
            },
            environment: Environment {
                kind: "vm".into(),
                privileges: harness::privileges::Privileges {
                    mode: harness::privileges::Mode::Native,
                    uid: 0,
                    in_initial_user_ns: true,
                    cap_net_admin: true,
                    cap_ipc_lock: true,
                    cap_sys_admin: true,
                    cap_sys_resource: true,
                },
                cpus: 1,
                restored_sysctls: vec![],
                extra: Default::default(),
            },
            settings: Settings {
                filter: vec![],
                seed: 1,
                cases: 8,
                timeout_s: 60,
                extra: Default::default(),
            },
            probes: vec![],
            cases: cases
                .iter()
                .map(|(id, outcome, reason, observed)| CaseRecord {
                    id: id.to_string(),
                    area: if id.starts_with("uring") {
                        Area::Uring
                    } else {
                        Area::Send
                    },
                    title: format!("title of {id}"),
                    outcome: *outcome,
                    reason: reason.to_string(),
                    evidence: (*outcome == Outcome::Fail).then(|| "got [0,2] want [0,1]".into()),
                    observed: observed
                        .as_object()
                        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                        .unwrap_or_default(),
                    timing_facts: vec![],
                    property: None,
                    replay: format!("zccheck run --filter {id}"),
                    duration_ms: 1,
                    extra: Default::default(),
                })
                .collect(),
            totals: BTreeMap::new(),
            duration_ms: 1,
            bench: None,
            extra: Default::default(),
        };
        Provenance {
            label: label.into(),
            source: "debian".into(),
            status: STATUS_REPORT.into(),
            ..Default::default()
        }
        .attach(&mut r);
        r.tally();
        r
    }

    pub(crate) fn two_kernels() -> Matrix {
        use Outcome::*;
        let old = report(
            "5.10",
            "5.10.0-46-cloud-amd64",
            &[
                (
                    "send.errno.tcp",
                    Pass,
                    "ok",
                    json!({"errno": "EINVAL (22)", "calls": ["a", "b"], "copied": true}),
                ),
                (
                    "uring.send_zc.tcp",
                    Unsupported,
                    "probe uring.send_zc: EINVAL",
                    json!({}),
                ),
                (
                    "send.stats.tcp",
                    Pass,
                    "ok",
                    json!({"coalescing": {"merged": 3}}),
                ),
            ],
        );
        let new = report(
            "6.1",
            "6.1.0-56-cloud-amd64",
            &[
                (
                    "send.errno.tcp",
                    Pass,
                    "ok",
                    json!({"errno": "EPIPE (32)", "calls": ["a", "b"], "copied": true}),
                ),
                (
                    "uring.send_zc.tcp",
                    Fail,
                    "a notification went missing",
                    json!({}),
                ),
                (
                    "send.stats.tcp",
                    Pass,
                    "ok",
                    json!({"coalescing": {"merged": 5}}),
                ),
            ],
        );
        // Given newest first: the matrix orders by version.
        Matrix::from_reports(vec![
            (
                "r/6.1.json".into(),
                new.clone(),
                Provenance::of(&new).unwrap(),
            ),
            (
                "r/5.10.json".into(),
                old.clone(),
                Provenance::of(&old).unwrap(),
            ),
        ])
        .unwrap()
    }

    #[test]
    fn columns_by_version_rows_by_area() {
        let m = two_kernels();
        let labels: Vec<&str> = m.columns.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(labels, ["5.10", "6.1"]);
        let ids: Vec<&str> = m.rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            ["send.errno.tcp", "send.stats.tcp", "uring.send_zc.tcp"]
        );
    }

    #[test]
    fn scalar_facts_that_differ_are_news_and_structured_ones_are_not() {
        let m = two_kernels();
        assert_eq!(m.cell_keys(0), ["errno"]);
        assert_eq!(
            m.common_facts(0),
            [
                ("calls".to_string(), "[\"a\",\"b\"]".to_string()),
                ("copied".to_string(), "true".to_string())
            ]
        );
        // Timing-dependent counts in an object are not put in the cells.
        assert!(m.cell_keys(1).is_empty());
        let md = m.markdown(Path::new("."));
        assert!(
            md.contains(
                "| `send.errno.tcp` | pass · errno=EINVAL (22) | pass · errno=EPIPE (32) |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "- `errno` in `send.errno.tcp`: recorded by the case for reference\n  \
                 - `EINVAL (22)` on 5.10; `EPIPE (32)` on 6.1\n"
            ),
            "{md}"
        );
    }

    #[test]
    fn a_headline_fact_is_always_shown() {
        use Outcome::*;
        let mk = |label: &str, rel: &str| {
            report(
                label,
                rel,
                &[(
                    "send.x",
                    Pass,
                    "ok",
                    json!({"matrix.headline": "size", "size": 64}),
                )],
            )
        };
        let (a, b) = (mk("a", "6.1.0"), mk("b", "6.2.0"));
        let m = Matrix::from_reports(vec![
            ("a.json".into(), a.clone(), Provenance::of(&a).unwrap()),
            ("b.json".into(), b.clone(), Provenance::of(&b).unwrap()),
        ])
        .unwrap();
        assert_eq!(m.cell_keys(0), ["size"]);
        assert!(m
            .markdown(Path::new("."))
            .contains("| pass · size=64 | pass · size=64 |"));
    }

    #[test]
    fn every_non_pass_cell_has_a_footnote_with_its_reason_and_file() {
        let m = two_kernels();
        let md = m.markdown(Path::new("r"));
        assert!(
            md.contains("| `uring.send_zc.tcp` | unsupported[^1] | **FAIL**[^2] |"),
            "{md}"
        );
        assert!(md.contains("[^1]: **unsupported**: probe uring.send_zc: EINVAL In 5.10 (`5.10.json`: uring.send_zc.tcp)."), "{md}");
        assert!(
            md.contains(
                "[^2]: **fail**: a notification went missing Evidence: `got [0,2] want [0,1]`"
            ),
            "{md}"
        );
        assert!(
            md.contains("- `uring.send_zc.tcp` (1 case): unsupported on 5.10; fail on 6.1"),
            "{md}"
        );
        assert!(md.contains("[5.10.json](5.10.json)"), "{md}");
    }

    #[test]
    fn a_kernel_without_a_report_is_a_column_of_dashes_with_its_cause() {
        let m = two_kernels();
        let mut dead = report("7.3", "7.3.4+deb13-cloud-amd64", &[]);
        Provenance {
            label: "7.3".into(),
            source: "debian".into(),
            status: STATUS_NO_REPORT.into(),
            cause: Some("the kernel crashed: Kernel panic - not syncing".into()),
            console_tail: vec!["[ 1.0] Kernel panic - not syncing".into()],
            ..Default::default()
        }
        .attach(&mut dead);
        let mut reports: Vec<_> = m
            .columns
            .iter()
            .map(|c| (c.file.clone(), c.report.clone(), c.provenance.clone()))
            .collect();
        reports.push((
            "r/7.3.json".into(),
            dead.clone(),
            Provenance::of(&dead).unwrap(),
        ));
        let m = Matrix::from_reports(reports).unwrap();
        let md = m.markdown(Path::new("r"));
        assert!(
            md.contains(
                "| `send.errno.tcp` | pass · errno=EINVAL (22) | pass · errno=EPIPE (32) | — |"
            ),
            "{md}"
        );
        assert!(
            md.contains("**7.3: no report.** the kernel crashed"),
            "{md}"
        );
        assert!(
            md.contains("```text\n[ 1.0] Kernel panic - not syncing\n```"),
            "{md}"
        );
    }

    #[test]
    fn columns_say_in_words_what_they_are() {
        let m = two_kernels();
        let vm = m.columns[0].describe();
        assert!(
            vm.starts_with("Debian cloud kernel Linux 5.10.0-46-cloud-amd64 x86_64"),
            "{vm}"
        );
        let mut native = report("native", "6.18.44-fc-v657", &[]);
        native.environment.kind = "native".into();
        let m = Matrix::from_reports(vec![(
            "native.json".into(),
            native.clone(),
            Provenance::of(&native).unwrap(),
        )])
        .unwrap();
        assert_eq!(
            m.columns[0].describe(),
            "the machine that made the matrix, natively: Linux 6.18.44-fc-v657 x86_64 (#1), \
             with real privileges, 1 CPU"
        );
    }

    #[test]
    fn duplicate_labels_are_refused() {
        let r = report("x", "6.1.0", &[]);
        let p = Provenance::of(&r).unwrap();
        let e = Matrix::from_reports(vec![
            ("a.json".into(), r.clone(), p.clone()),
            ("b.json".into(), r, p),
        ])
        .unwrap_err();
        assert!(
            e.to_string().contains("two reports are labelled \"x\""),
            "{e}"
        );
    }

    #[test]
    fn malformed_and_truncated_reports_are_named() {
        let dir = std::env::temp_dir().join(format!("zccheck-matrix-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = report(
            "6.1",
            "6.1.0",
            &[("send.a", Outcome::Pass, "ok", json!({}))],
        );
        let text = good.to_json();
        let truncated = dir.join("truncated.json");
        std::fs::write(&truncated, &text[..text.len() / 2]).unwrap();
        let e = format!(
            "{:#}",
            Matrix::load(std::slice::from_ref(&truncated)).unwrap_err()
        );
        assert!(
            e.contains("truncated.json") && e.contains("EOF while parsing"),
            "{e}"
        );
        let malformed = dir.join("malformed.json");
        std::fs::write(
            &malformed,
            text.replace("\"outcome\": \"pass\"", "\"outcome\": \"passed\""),
        )
        .unwrap();
        let e = format!("{:#}", Matrix::load(&[malformed]).unwrap_err());
        assert!(
            e.contains("malformed.json") && e.contains("cases[0].outcome"),
            "{e}"
        );
        let bad_prov = dir.join("provenance.json");
        std::fs::write(
            &bad_prov,
            text.replace("\"status\": \"report\"", "\"status\": 5"),
        )
        .unwrap();
        let e = format!("{:#}", Matrix::load(&[bad_prov]).unwrap_err());
        assert!(
            e.contains("provenance.json") && e.contains("provenance"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn relative_links() {
        assert_eq!(
            relative(Path::new("/a/b/c.json"), Path::new("/a")),
            "b/c.json"
        );
        assert_eq!(
            relative(Path::new("/a/b/c.json"), Path::new("/a/d")),
            "../b/c.json"
        );
    }

    #[test]
    fn shortening_counts_characters() {
        assert_eq!(shorten("ééééé", 3), "éé…");
        assert_eq!(shorten("abc", 3), "abc");
    }
}
