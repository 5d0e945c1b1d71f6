//! "What changed between kernels": every observed fact whose value differs between the
//! kernels that ran its case to a verdict, of any shape, with every differing part and its
//! values in full, and what the catalogue says it means. Facts that depend on timing are left
//! out (they stay in the reports and the case table).

use serde_json::Value;

use super::compare::ran_to_the_end;
use super::{compact, Matrix, HEADLINE_KEY};
use crate::report::catalogue::{self, FactNote, Kind};

/// One differing part of a fact: the whole value (`path` empty), a field of an object
/// (`.name`) or an element of a list (`[3]`), with each value and the columns that had it.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub path: String,
    pub values: Vec<(String, Vec<String>)>,
}

/// A fact that differs between kernels, with the cases that show the same difference.
#[derive(Debug, Clone)]
pub struct FactChange {
    pub key: String,
    pub cases: Vec<String>,
    pub parts: Vec<Part>,
    pub note: Option<&'static FactNote>,
}

impl FactChange {
    /// What the catalogue says the fact means, or that it says nothing yet.
    pub fn means(&self) -> &'static str {
        self.note
            .map(|n| n.means)
            .unwrap_or("not in the catalogue of facts yet")
    }

    /// Whether the catalogue calls it a behaviour a program can notice.
    pub fn is_behaviour(&self) -> bool {
        self.note.is_some_and(|n| n.kind == Kind::Behaviour)
    }
}

const ABSENT: &str = "(absent)";

/// The parts in which `values` (one per column, `None` where the column lacks the fact)
/// differ, found by walking objects by field and lists of one length by element.
pub fn differing_parts(labels: &[String], values: &[Option<&Value>]) -> Vec<Part> {
    let mut out = Vec::new();
    walk(labels, values, String::new(), &mut out);
    out
}

fn walk(labels: &[String], values: &[Option<&Value>], path: String, out: &mut Vec<Part>) {
    let present: Vec<&Value> = values.iter().flatten().copied().collect();
    if present.is_empty() {
        return;
    }
    if present.len() == values.len() && present.iter().all(|v| v.is_object()) {
        let mut keys: Vec<&String> = Vec::new();
        for v in &present {
            for k in v.as_object().into_iter().flat_map(|o| o.keys()) {
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
        for k in keys {
            let sub: Vec<Option<&Value>> = present.iter().map(|v| v.get(k)).collect();
            walk(labels, &sub, format!("{path}.{k}"), out);
        }
        return;
    }
    let len = present[0].as_array().map(Vec::len);
    if len.is_some()
        && present.len() == values.len()
        && present.iter().all(|v| v.as_array().map(Vec::len) == len)
    {
        for i in 0..len.unwrap_or(0) {
            let sub: Vec<Option<&Value>> = present.iter().map(|v| v.get(i)).collect();
            walk(labels, &sub, format!("{path}[{i}]"), out);
        }
        return;
    }
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for (label, v) in labels.iter().zip(values) {
        let shown = v.map(compact).unwrap_or_else(|| ABSENT.to_string());
        match groups.iter_mut().find(|(x, _)| *x == shown) {
            Some((_, cols)) => cols.push(label.clone()),
            None => groups.push((shown, vec![label.clone()])),
        }
    }
    if groups.len() > 1 {
        out.push(Part {
            path,
            values: groups,
        });
    }
}

impl Matrix {
    /// Every fact that differs between kernels (timing-dependent ones left out), grouped
    /// where several cases show the same difference.
    pub fn fact_changes(&self) -> Vec<FactChange> {
        let mut out: Vec<FactChange> = Vec::new();
        for (r, row) in self.rows.iter().enumerate() {
            let ran: Vec<usize> = (0..self.columns.len())
                .filter(|&c| self.columns[c].cell(&row.id).is_some_and(ran_to_the_end))
                .collect();
            if ran.len() < 2 {
                continue;
            }
            let labels: Vec<String> = ran.iter().map(|&c| self.columns[c].label.clone()).collect();
            for (key, values) in self.facts_of(r) {
                if key == HEADLINE_KEY || self.is_timing(r, key) {
                    continue;
                }
                let vals: Vec<Option<&Value>> = ran.iter().map(|&c| values[c]).collect();
                let parts = differing_parts(&labels, &vals);
                if parts.is_empty() {
                    continue;
                }
                match out.iter_mut().find(|x| x.key == key && x.parts == parts) {
                    Some(x) => x.cases.push(row.id.clone()),
                    None => out.push(FactChange {
                        key: key.to_string(),
                        cases: vec![row.id.clone()],
                        parts,
                        note: catalogue::note(&row.id, key),
                    }),
                }
            }
        }
        // Behaviours first: they are what a program notices.
        out.sort_by_key(|x| !x.is_behaviour());
        out
    }
}
