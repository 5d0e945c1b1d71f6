//! Comparing kernels: which observed facts differ between columns, which outcomes change,
//! what the probes answered.

use std::collections::{BTreeMap, BTreeSet};

use super::{compact, Column, Matrix, HEADLINE_KEY};
use crate::case::Area;
use crate::outcome::Outcome;
use crate::probes::Answer;
use crate::report::catalogue;
use crate::report::CaseRecord;

/// Cases whose outcome differs between kernels, grouped by the pattern they share.
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeChange {
    /// Each outcome and the columns that had it.
    pub outcomes: Vec<(Outcome, Vec<String>)>,
    pub cases: Vec<String>,
}

impl OutcomeChange {
    /// "unsupported on 5.10; pass on 6.1, 6.12": the outcomes and where each was seen.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .outcomes
            .iter()
            .map(|(out, cols)| format!("{out} on {}", cols.join(", ")))
            .collect();
        parts.join("; ")
    }
}

impl Matrix {
    /// Whether fact `key` of row `row` depends on timing: a report marks it so (the case
    /// recorded it with `observe_timing`), or, for reports written before cases did, the
    /// catalogue says so.
    pub fn is_timing(&self, row: usize, key: &str) -> bool {
        let id = &self.rows[row].id;
        catalogue::is_timing(id, key)
            || self
                .columns
                .iter()
                .filter_map(|c| c.cell(id))
                .any(|rec| rec.timing_facts.iter().any(|k| k == key))
    }

    /// Facts of a row: key -> value per column (None where the cell or the fact is absent).
    pub(super) fn facts_of(&self, row: usize) -> BTreeMap<&str, Vec<Option<&serde_json::Value>>> {
        let id = &self.rows[row].id;
        let mut facts: BTreeMap<&str, Vec<Option<&serde_json::Value>>> = BTreeMap::new();
        for (c, col) in self.columns.iter().enumerate() {
            let Some(rec) = col.cell(id) else { continue };
            for (k, v) in &rec.observed {
                if k == HEADLINE_KEY {
                    continue;
                }
                facts
                    .entry(k)
                    .or_insert_with(|| vec![None; self.columns.len()])[c] = Some(v);
            }
        }
        facts
    }

    fn headline_keys(&self, row: usize) -> Vec<String> {
        let id = &self.rows[row].id;
        let mut keys = Vec::new();
        for col in &self.columns {
            match col.cell(id).and_then(|r| r.observed.get(HEADLINE_KEY)) {
                Some(serde_json::Value::String(k)) => keys.push(k.clone()),
                Some(serde_json::Value::Array(ks)) => {
                    keys.extend(ks.iter().filter_map(|k| k.as_str().map(str::to_string)))
                }
                _ => {}
            }
        }
        keys.dedup();
        keys
    }

    /// Headline facts, then scalar facts whose value differs between the kernels that ran
    /// the case.
    pub(super) fn pick_cell_keys(&self, row: usize) -> Vec<String> {
        let mut keys = self.headline_keys(row);
        for (k, values) in self.facts_of(row) {
            if self.is_timing(row, k) {
                continue;
            }
            let ran: Vec<Option<String>> = self
                .columns
                .iter()
                .zip(&values)
                .filter(|(col, _)| col.cell(&self.rows[row].id).is_some_and(ran_to_the_end))
                .map(|(_, v)| v.map(compact))
                .collect();
            let scalar = values
                .iter()
                .flatten()
                .all(|v| !v.is_object() && !v.is_array());
            let distinct: BTreeSet<&Option<String>> = ran.iter().collect();
            if scalar && distinct.len() > 1 && !keys.iter().any(|x| x == k) {
                keys.push(k.to_string());
            }
        }
        keys
    }

    /// The fact keys shown in a row's cells.
    pub fn cell_keys(&self, row: usize) -> &[String] {
        &self.cell_keys[row]
    }

    /// Facts with the same value in every cell of the row that has them (and not shown in
    /// the cells): shown once per row.
    pub fn common_facts(&self, row: usize) -> Vec<(String, String)> {
        self.facts_of(row)
            .into_iter()
            .filter(|(k, _)| !self.cell_keys[row].iter().any(|x| x == k))
            .filter_map(|(k, values)| {
                let set: BTreeSet<String> = values.iter().flatten().map(|v| compact(v)).collect();
                // Timing-dependent facts are marked where they are shown.
                let shown = if self.is_timing(row, k) {
                    format!("⏱{k}")
                } else {
                    k.to_string()
                };
                (set.len() == 1).then(|| (shown, set.into_iter().next().unwrap_or_default()))
            })
            .collect()
    }

    /// Cases whose outcome differs between the kernels that reported them.
    pub fn outcome_changes(&self) -> Vec<OutcomeChange> {
        let mut out: Vec<OutcomeChange> = Vec::new();
        for row in &self.rows {
            let mut outcomes: Vec<(Outcome, Vec<String>)> = Vec::new();
            for col in &self.columns {
                let Some(rec) = col.cell(&row.id) else {
                    continue;
                };
                match outcomes.iter_mut().find(|(o, _)| *o == rec.outcome) {
                    Some((_, cols)) => cols.push(col.label.clone()),
                    None => outcomes.push((rec.outcome, vec![col.label.clone()])),
                }
            }
            if outcomes.len() < 2 {
                continue;
            }
            match out.iter_mut().find(|x| x.outcomes == outcomes) {
                Some(x) => x.cases.push(row.id.clone()),
                None => out.push(OutcomeChange {
                    outcomes,
                    cases: vec![row.id.clone()],
                }),
            }
        }
        out
    }

    /// Probe names of all reports, in first-seen order.
    pub fn probe_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for c in &self.columns {
            for p in &c.report.probes {
                if !names.contains(&p.name) {
                    names.push(p.name.clone());
                }
            }
        }
        names
    }

    pub fn probe(&self, col: usize, name: &str) -> Option<&Answer> {
        self.columns[col]
            .report
            .probes
            .iter()
            .find(|p| p.name == name)
            .map(|p| &p.answer)
    }

    /// Configuration options any report recorded.
    pub fn config_keys(&self) -> Vec<String> {
        let keys: BTreeSet<&String> = self
            .columns
            .iter()
            .flat_map(|c| c.report.kernel.config.keys())
            .collect();
        keys.into_iter().cloned().collect()
    }

    /// The short summary on top of the page: what was run, which features differ between
    /// kernels, and how many quirks the sections below list.
    pub fn summary_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let vms = self
            .columns
            .iter()
            .filter(|c| c.report.environment.kind == "vm")
            .count();
        let accels: BTreeSet<String> = self
            .columns
            .iter()
            .filter_map(|c| c.provenance.as_ref().and_then(|p| p.accel.clone()))
            .collect();
        let areas: BTreeSet<Area> = self.rows.iter().map(|r| r.area).collect();
        let totals: Vec<String> = Outcome::ALL
            .iter()
            .map(|o| {
                (
                    o,
                    self.columns
                        .iter()
                        .map(|c| c.report.count(*o))
                        .sum::<usize>(),
                )
            })
            .filter(|(_, n)| *n > 0)
            .map(|(o, n)| format!("{n} {o}"))
            .collect();
        lines.push(format!(
            "{} kernels ({vms} in VMs{}, {} native), {} cases in {} area{}: {}.",
            self.columns.len(),
            if accels.is_empty() {
                String::new()
            } else {
                format!(
                    " under {}",
                    accels.into_iter().collect::<Vec<_>>().join("/")
                )
            },
            self.columns.len() - vms,
            self.rows.len(),
            areas.len(),
            if areas.len() == 1 { "" } else { "s" },
            if totals.is_empty() {
                "no results".into()
            } else {
                totals.join(", ")
            }
        ));
        for c in self.columns.iter().filter(|c| c.no_report().is_some()) {
            lines.push(format!(
                "{}: no report: {}",
                c.label,
                c.no_report().unwrap_or_default()
            ));
        }
        let config: Vec<String> = self
            .config_keys()
            .into_iter()
            .filter_map(|k| {
                let known: Vec<&Column> = self
                    .columns
                    .iter()
                    .filter(|c| c.report.kernel.config_source.is_some())
                    .collect();
                let with: Vec<String> = known
                    .iter()
                    .filter(|c| c.report.kernel.config.contains_key(&k))
                    .map(|c| c.label.clone())
                    .collect();
                (!with.is_empty() && with.len() < known.len())
                    .then(|| format!("{k} on {}", with.join(", ")))
            })
            .collect();
        if !config.is_empty() {
            lines.push(format!(
                "Configuration that differs: {}.",
                config.join("; ")
            ));
        }
        let fails = self
            .footnotes
            .iter()
            .filter(|f| f.outcome == Outcome::Fail)
            .map(|f| f.cells.len())
            .sum::<usize>();
        lines.push(format!(
            "Below: {} case group{} with outcomes that differ between kernels, {} observed fact{} that differ (timing-dependent ones left out), {} failing cell{}.",
            self.outcome_changes().len(),
            if self.outcome_changes().len() == 1 { "" } else { "s" },
            self.fact_changes().len(),
            if self.fact_changes().len() == 1 { "" } else { "s" },
            fails,
            if fails == 1 { "" } else { "s" },
        ));
        lines
    }
}

/// A case that ran to a verdict about the kernel (its facts mean something).
pub(super) fn ran_to_the_end(rec: &CaseRecord) -> bool {
    matches!(rec.outcome, Outcome::Pass | Outcome::Fail)
}
