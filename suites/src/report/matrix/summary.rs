//! The feature summary: one row per feature in plain words, one mark per kernel, and numbered
//! notes saying what differs and since which kernel of the list.
//!
//! Everything is derived from the reports: the probes' answers, the outcomes of the cases
//! that answer for a feature (by id pattern, by the probes the registry says they need, or by
//! the probe an `unsupported` reason names), and the observed facts the catalogue calls a
//! behaviour. The catalogue only says where to look (`report::catalogue`).

use std::collections::{BTreeMap, BTreeSet};

use super::{compact, Matrix};
use crate::outcome::Outcome;
use crate::probes::Answer;
use crate::report::catalogue::{self, Feature, Kind};
use crate::report::CaseRecord;

/// How a feature fares on one kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mark {
    Works,
    /// Works, but a behaviour a program can notice differs from the newest kernel.
    Quirk,
    Missing,
    /// A case broke a promise.
    Broken,
    /// The feature is there but this run could not exercise it (no NIC, no privilege).
    Untested,
    /// No case or probe of this report answers for it.
    NotRun,
    /// The kernel produced no report.
    NoReport,
}

impl Mark {
    pub const LEGEND: [Mark; 6] = [
        Mark::Works,
        Mark::Quirk,
        Mark::Missing,
        Mark::Broken,
        Mark::Untested,
        Mark::NotRun,
    ];

    pub fn symbol(self) -> &'static str {
        match self {
            Mark::Works => "✓",
            Mark::Quirk => "⚠",
            Mark::Missing => "✗",
            Mark::Broken => "‼",
            Mark::Untested => "?",
            Mark::NotRun => "·",
            Mark::NoReport => "—",
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Mark::Works => "works",
            Mark::Quirk => "quirk",
            Mark::Missing => "missing",
            Mark::Broken => "broken",
            Mark::Untested => "untested",
            Mark::NotRun => "not run",
            Mark::NoReport => "no report",
        }
    }

    pub fn class(self) -> &'static str {
        match self {
            Mark::Works => "works",
            Mark::Quirk => "quirk",
            Mark::Missing => "missing",
            Mark::Broken => "broken",
            Mark::Untested => "untested",
            Mark::NotRun | Mark::NoReport => "none",
        }
    }

    pub fn meaning(self) -> &'static str {
        match self {
            Mark::Works => "works: every case that answers for it passed",
            Mark::Quirk => "works with a quirk: a behaviour a program can notice differs from the newest kernel (see the note)",
            Mark::Missing => "missing: the kernel lacks it (a probe said no, or its cases are unsupported)",
            Mark::Broken => "broken: a case failed, the kernel broke a promise (see the note)",
            Mark::Untested => "untested: present, but this run could not exercise it (see the note)",
            Mark::NotRun => "not run: no case of this report answers for it",
            Mark::NoReport => "no report: the kernel produced none",
        }
    }
}

/// One kernel's answer for one feature.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub mark: Mark,
    /// Numbers of the summary's notes.
    pub notes: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FeatureRow {
    pub name: String,
    pub cells: Vec<Cell>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Summary {
    pub rows: Vec<FeatureRow>,
    /// Notes, numbered from 1: the text (Markdown code spans in backticks) and the columns it
    /// speaks of when the text does not name them itself.
    pub notes: Vec<(String, Vec<String>)>,
}

impl Summary {
    /// The number of the note with `text`, added if new.
    fn note(&mut self, text: String) -> usize {
        match self.notes.iter().position(|(n, _)| *n == text) {
            Some(i) => i + 1,
            None => {
                self.notes.push((text, vec![]));
                self.notes.len()
            }
        }
    }

    /// The number of the note with `text`, which also applies to column `label`.
    fn note_on(&mut self, text: String, label: &str) -> usize {
        let n = self.note(text);
        let cols = &mut self.notes[n - 1].1;
        if !cols.iter().any(|c| c == label) {
            cols.push(label.to_string());
        }
        n
    }

    /// Note `n` (from 1) as one line of text.
    pub fn note_text(&self, n: usize) -> String {
        let (text, cols) = &self.notes[n - 1];
        if cols.is_empty() {
            text.clone()
        } else {
            format!("{text} (on {})", and_list(cols))
        }
    }
}

/// The probes each case of this build needs, by case id.
fn requirements() -> BTreeMap<String, Vec<&'static str>> {
    crate::registry::all()
        .into_iter()
        .map(|c| (c.id, c.requires.iter().map(|r| r.name).collect()))
        .collect()
}

/// The probe an `unsupported` reason names (`probe NAME: …`).
fn blocking_probe(rec: &CaseRecord) -> Option<&str> {
    rec.reason
        .strip_prefix("probe ")
        .and_then(|r| r.split_once(':'))
        .map(|(name, _)| name)
}

/// `a, b and c`.
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

impl Matrix {
    /// The feature summary of the catalogue's features.
    pub fn summary(&self) -> Summary {
        self.summary_of(&catalogue::features())
    }

    pub(crate) fn summary_of(&self, features: &[&Feature]) -> Summary {
        let needs = requirements();
        let mut s = Summary::default();
        for f in features {
            let row = self.feature_row(f, &needs, &mut s);
            s.rows.push(row);
        }
        s
    }

    /// Case ids (rows) that answer for `f` in any column.
    fn feature_cases(
        &self,
        f: &Feature,
        needs: &BTreeMap<String, Vec<&'static str>>,
    ) -> Vec<usize> {
        (0..self.rows.len())
            .filter(|&r| {
                let id = &self.rows[r].id;
                // Rows named by probe alone take the cases that need the probe.
                f.selects(id)
                    || (f.cases.is_empty()
                        && needs
                            .get(id)
                            .is_some_and(|ps| ps.iter().any(|p| f.probes.contains(p))))
                    || self.columns.iter().any(|c| {
                        c.cell(id)
                            .and_then(blocking_probe)
                            .is_some_and(|p| f.probes.contains(&p))
                    })
            })
            .collect()
    }

    fn feature_row(
        &self,
        f: &Feature,
        needs: &BTreeMap<String, Vec<&'static str>>,
        s: &mut Summary,
    ) -> FeatureRow {
        let rows = self.feature_cases(f, needs);
        let mut cells: Vec<Cell> = Vec::new();
        for (c, col) in self.columns.iter().enumerate() {
            cells.push(if col.no_report().is_some() {
                Cell {
                    mark: Mark::NoReport,
                    notes: vec![],
                }
            } else {
                self.judge(f, c, &rows, s)
            });
        }
        self.add_quirks(f, &rows, &mut cells, s);
        FeatureRow {
            name: f.name.to_string(),
            cells,
        }
    }

    /// The mark of feature `f` on column `c`, before quirks.
    fn judge(&self, f: &Feature, c: usize, rows: &[usize], s: &mut Summary) -> Cell {
        let col = &self.columns[c];
        let mut notes = Vec::new();
        for p in f.probes {
            match self.probe(c, p) {
                Some(Answer::Absent(_)) => {
                    return Cell {
                        mark: Mark::Missing,
                        notes,
                    }
                }
                Some(Answer::Blocked(d)) => {
                    notes.push(s.note_on(format!("`{p}` could not be probed: {d}"), &col.label));
                    return Cell {
                        mark: Mark::Untested,
                        notes,
                    };
                }
                _ => {}
            }
        }
        // Cases unsupported for another feature's probe say nothing about this one.
        let recs: Vec<&CaseRecord> = rows
            .iter()
            .filter_map(|&r| col.cell(&self.rows[r].id))
            .filter(|rec| {
                f.probes.is_empty()
                    || rec.outcome != Outcome::Unsupported
                    || blocking_probe(rec).is_some_and(|p| f.probes.contains(&p))
            })
            .collect();
        let with = |o: Outcome| -> Vec<&CaseRecord> {
            recs.iter().copied().filter(|r| r.outcome == o).collect()
        };
        let probed = f
            .probes
            .iter()
            .any(|p| matches!(self.probe(c, p), Some(Answer::Present(_))));
        let (fails, errors, unsupported, skipped, passes) = (
            with(Outcome::Fail),
            with(Outcome::Error),
            with(Outcome::Unsupported),
            with(Outcome::Skipped),
            with(Outcome::Pass),
        );
        let ids = |v: &[&CaseRecord]| -> String {
            let ids: Vec<String> = v.iter().map(|r| format!("`{}`", r.id)).collect();
            super::list_some(&ids, 3)
        };
        if !fails.is_empty() {
            notes.push(s.note_on(
                format!(
                    "{} failed: {}",
                    ids(&fails),
                    fails[0].reason.lines().next().unwrap_or_default()
                ),
                &col.label,
            ));
            return Cell {
                mark: Mark::Broken,
                notes,
            };
        }
        if recs.is_empty() {
            return Cell {
                mark: if probed { Mark::Works } else { Mark::NotRun },
                notes,
            };
        }
        if passes.is_empty() {
            if !unsupported.is_empty() && skipped.is_empty() && errors.is_empty() {
                return Cell {
                    mark: Mark::Missing,
                    notes,
                };
            }
            let why = skipped.first().or(errors.first()).copied();
            if let Some(r) = why {
                notes.push(s.note_on(
                    format!(
                        "not exercised ({}): {}",
                        ids(&[skipped.as_slice(), errors.as_slice()].concat()),
                        r.reason.lines().next().unwrap_or_default()
                    ),
                    &col.label,
                ));
            }
            return Cell {
                mark: Mark::Untested,
                notes,
            };
        }
        if let Some(g) = &f.gate {
            let closed: Vec<&CaseRecord> = passes
                .iter()
                .copied()
                .filter(|r| {
                    r.observed
                        .get(g.key)
                        .is_some_and(|v| !catalogue::gate_holds(g, v))
                })
                .collect();
            if !closed.is_empty() {
                let means = catalogue::note(&closed[0].id, g.key)
                    .map(|n| format!(" ({})", n.means))
                    .unwrap_or_default();
                notes.push(s.note_on(
                    format!(
                        "`{}` is `{}`, not `{}`, in {}{means}",
                        g.key,
                        closed[0].observed.get(g.key).map(compact).unwrap_or_default(),
                        g.works_when,
                        ids(&closed)
                    ),
                    &col.label,
                ));
                return Cell {
                    mark: Mark::Missing,
                    notes,
                };
            }
        }
        let mut mark = Mark::Works;
        if !unsupported.is_empty() && f.probes.is_empty() {
            mark = Mark::Quirk;
            notes.push(s.note_on(
                format!(
                    "partly: {} unsupported: {}",
                    ids(&unsupported),
                    unsupported[0].reason.lines().next().unwrap_or_default()
                ),
                &col.label,
            ));
        }
        if !skipped.is_empty() || !errors.is_empty() {
            let r = skipped
                .first()
                .or(errors.first())
                .copied()
                .unwrap_or(passes[0]);
            notes.push(s.note_on(
                format!(
                    "partly untested: {} not exercised: {}",
                    ids(&[skipped.as_slice(), errors.as_slice()].concat()),
                    r.reason.lines().next().unwrap_or_default()
                ),
                &col.label,
            ));
        }
        Cell { mark, notes }
    }

    /// Marks `Works` cells whose behaviour facts differ from the newest kernel's as quirks,
    /// with a note per fact saying what differs and since which kernel.
    fn add_quirks(&self, f: &Feature, rows: &[usize], cells: &mut [Cell], s: &mut Summary) {
        for &r in rows {
            let id = &self.rows[r].id;
            let keys: BTreeSet<String> = self
                .columns
                .iter()
                .filter_map(|c| c.cell(id))
                .flat_map(|rec| rec.observed.keys().cloned())
                .collect();
            for key in keys {
                if f.gate.is_some_and(|g| g.key == key) || self.is_timing(r, &key) {
                    continue;
                }
                let Some(note) = catalogue::note(id, &key).filter(|n| n.kind == Kind::Behaviour)
                else {
                    continue;
                };
                // (column, value) where the case passed.
                let values: Vec<(usize, String)> = self
                    .columns
                    .iter()
                    .enumerate()
                    .filter_map(|(c, col)| {
                        let rec = col.cell(id).filter(|r| r.outcome == Outcome::Pass)?;
                        Some((c, rec.observed.get(&key).map(compact)?))
                    })
                    .collect();
                let Some((_, newest)) = values.last().cloned() else {
                    continue;
                };
                let differ: Vec<usize> = values
                    .iter()
                    .filter(|(_, v)| *v != newest)
                    .map(|(c, _)| *c)
                    .collect();
                if differ.is_empty() {
                    continue;
                }
                let text = self.since_text(&key, &values, note.means);
                let n = s.note(text);
                for c in differ {
                    let cell = &mut cells[c];
                    if matches!(cell.mark, Mark::Works | Mark::Quirk) {
                        cell.mark = Mark::Quirk;
                        if !cell.notes.contains(&n) {
                            cell.notes.push(n);
                        }
                    }
                }
            }
        }
        // One note per fact pattern: cases with the same text were merged by `note`; keep
        // the numbers in order.
        for c in cells.iter_mut() {
            c.notes.sort_unstable();
        }
    }

    /// "`key`: `a` on 5.10, 6.1; `b` since 6.12. What it means."
    fn since_text(&self, key: &str, values: &[(usize, String)], means: &str) -> String {
        let newest = &values[values.len() - 1].1;
        // The first column from which every later one has the newest value.
        let from = values
            .iter()
            .rposition(|(_, v)| v != newest)
            .map(|i| i + 1)
            .unwrap_or(0);
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for (c, v) in &values[..from] {
            let label = self.columns[*c].label.clone();
            match groups.iter_mut().find(|(x, _)| x == v) {
                Some((_, cols)) => cols.push(label),
                None => groups.push((v.clone(), vec![label])),
            }
        }
        let since = &self.columns[values[from].0].label;
        let short = values.iter().all(|(_, v)| v.chars().count() <= 40);
        if !short {
            let cols: Vec<String> = groups.iter().flat_map(|(_, c)| c.clone()).collect();
            return format!(
                "`{key}` on {} differs from the value it has since {since} (both under *What \
                 changed between kernels*). {}",
                and_list(&cols),
                capitalise(means)
            );
        }
        let before: Vec<String> = groups
            .iter()
            .map(|(v, cols)| format!("`{v}` on {}", and_list(cols)))
            .collect();
        format!(
            "`{key}`: {}; `{newest}` since {since}. {}",
            before.join("; "),
            capitalise(means)
        )
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::json;

    use super::*;
    use crate::outcome::Outcome::{Fail, Pass, Skipped, Unsupported};
    use crate::probes::ProbeRecord;
    use crate::report::matrix::tests::{matrix, report};

    use crate::report::Report;

    fn probe(r: &mut Report, name: &str, yes: bool) {
        r.probes.push(ProbeRecord {
            name: name.into(),
            answer: if yes {
                Answer::Present("ok".into())
            } else {
                Answer::Absent("EINVAL (22)".into())
            },
        });
    }

    const SEND: Feature = Feature {
        name: "MSG_ZEROCOPY on TCP",
        cases: &["send.*.tcp*"],
        except: &[],
        probes: &["so_zerocopy.tcp"],
        gate: None,
    };
    const FORWARD: Feature = Feature {
        name: "kept when forwarding",
        cases: &["send.fwd.*"],
        except: &[],
        probes: &[],
        gate: Some(catalogue::Gate {
            key: "forwarding_preserves_zerocopy",
            works_when: "true",
        }),
    };
    const DEVLESS: Feature = Feature {
        name: "zcrx device-less",
        cases: &["zcrx.*"],
        except: &["zcrx.register.*"],
        probes: &[],
        gate: None,
    };

    fn marks(s: &Summary, row: usize) -> Vec<Mark> {
        s.rows[row].cells.iter().map(|c| c.mark).collect()
    }

    #[test]
    fn marks_come_from_probes_outcomes_and_facts() {
        let mut old = report(
            "5.10",
            "5.10.0",
            &[
                (
                    "send.optmem.tcp4",
                    Pass,
                    "ok",
                    json!({"optmem_scope": "global"}),
                ),
                (
                    "send.fwd.udp4",
                    Pass,
                    "ok",
                    json!({"forwarding_preserves_zerocopy": false}),
                ),
            ],
        );
        probe(&mut old, "so_zerocopy.tcp", true);
        let mut none = report(
            "4.9",
            "4.9.0",
            &[(
                "send.optmem.tcp4",
                Unsupported,
                "probe so_zerocopy.tcp: no",
                json!({}),
            )],
        );
        probe(&mut none, "so_zerocopy.tcp", false);
        let mut bad = report(
            "6.1",
            "6.1.0",
            &[
                ("send.optmem.tcp4", Fail, "id 3 twice", json!({})),
                (
                    "send.fwd.udp4",
                    Pass,
                    "ok",
                    json!({"forwarding_preserves_zerocopy": true}),
                ),
            ],
        );
        probe(&mut bad, "so_zerocopy.tcp", true);
        let mut new = report(
            "6.12",
            "6.12.0",
            &[
                (
                    "send.optmem.tcp4",
                    Pass,
                    "ok",
                    json!({"optmem_scope": "per_namespace"}),
                ),
                (
                    "send.fwd.udp4",
                    Pass,
                    "ok",
                    json!({"forwarding_preserves_zerocopy": true}),
                ),
            ],
        );
        probe(&mut new, "so_zerocopy.tcp", true);
        let m = matrix(vec![old, none, bad, new]);
        let s = m.summary_of(&[&SEND, &FORWARD]);
        assert_eq!(
            marks(&s, 0),
            [Mark::Missing, Mark::Quirk, Mark::Broken, Mark::Works]
        );
        assert_eq!(
            marks(&s, 1),
            [Mark::NotRun, Mark::Missing, Mark::Works, Mark::Works]
        );
        let quirk = &s.rows[0].cells[1];
        let text = s.note_text(quirk.notes[0]);
        assert!(
            text.starts_with("`optmem_scope`: `global` on 5.10; `per_namespace` since 6.12."),
            "{text}"
        );
        let broken = s.note_text(s.rows[0].cells[2].notes[0]);
        assert_eq!(broken, "`send.optmem.tcp4` failed: id 3 twice (on 6.1)");
        let gate = s.note_text(s.rows[1].cells[1].notes[0]);
        assert!(
            gate.starts_with("`forwarding_preserves_zerocopy` is `false`, not `true`"),
            "{gate}"
        );
    }

    #[test]
    fn new_cases_join_their_feature_by_id() {
        let old = report(
            "6.18",
            "6.18.0",
            &[
                ("zcrx.register.lo", Skipped, "needs a NIC", json!({})),
                (
                    "zcrx.devless.lo",
                    Unsupported,
                    "probe zcrx.devless: EINVAL",
                    json!({}),
                ),
            ],
        );
        let new = report(
            "7.2",
            "7.2.0",
            &[
                ("zcrx.register.lo", Skipped, "needs a NIC", json!({})),
                ("zcrx.devless.lo", Pass, "ok", json!({})),
                ("zcrx.devless.pair", Pass, "ok", json!({})),
            ],
        );
        let before = report(
            "6.12",
            "6.12.0",
            &[("zcrx.register.lo", Skipped, "needs a NIC", json!({}))],
        );
        let s = matrix(vec![before, old, new]).summary_of(&[&DEVLESS]);
        assert_eq!(marks(&s, 0), [Mark::NotRun, Mark::Missing, Mark::Works]);
    }

    #[test]
    fn the_catalogue_summary_of_the_committed_reports_answers_each_feature() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/reports");
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        let m = Matrix::load(&files).unwrap();
        let s = m.summary();
        let row = |name: &str| {
            let r = s.rows.iter().find(|r| r.name == name).unwrap();
            m.columns
                .iter()
                .zip(&r.cells)
                .map(|(c, cell)| (c.label.clone(), cell.mark))
                .collect::<BTreeMap<_, _>>()
        };
        let fwd = row("Zero-copy kept when forwarding");
        assert_eq!(fwd["5.10"], Mark::Missing);
        assert_eq!(fwd["7.3"], Mark::Works);
        assert_eq!(row("io_uring SEND_ZC")["5.10"], Mark::Missing);
        assert_eq!(row("MSG_ZEROCOPY on TCP")["7.3"], Mark::Works);
        // The summary opens the page.
        let md = m.markdown(std::path::Path::new("."));
        let at = |s: &str| md.find(s).unwrap_or_else(|| panic!("{s} missing"));
        assert!(at("## Summary") < at("| MSG_ZEROCOPY on TCP |"));
        assert!(at("| MSG_ZEROCOPY on TCP |") < at("## Kernels"));
        assert!(at("## Kernels") < at("## What changed between kernels"));
        assert!(at("## What changed between kernels") < at("## Cases"));
    }
}
