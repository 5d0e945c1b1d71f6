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

/// Each value of a part and the columns that had it.
pub type Values = [(String, Vec<String>)];

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

    /// The differing parts, those with the same values on the same kernels together (every
    /// field of an object that changed the same way is one line).
    pub fn grouped(&self) -> Vec<(Vec<&str>, &Values)> {
        let mut out: Vec<(Vec<&str>, &Values)> = Vec::new();
        for p in &self.parts {
            match out.iter_mut().find(|(_, v)| *v == p.values.as_slice()) {
                Some((paths, _)) => paths.push(&p.path),
                None => out.push((vec![&p.path], &p.values)),
            }
        }
        out
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;
    use crate::outcome::Outcome::Pass;
    use crate::report::matrix::tests::{matrix, report};

    const LONG_A: &str = "asked 32768, 12388 queued: 0: length 12288 skip 0 inq 100 err 0 \
                          copybuf_len -14 msg_flags 0x0 (optlen 40)";
    const LONG_B: &str = "asked 32768, 12388 queued: 0: length 12288 skip 0 inq 100 err 0 \
                          copybuf_len -14 msg_flags 0x0 (optlen 64)";

    fn shaped() -> Matrix {
        let mk = |label: &str, rel: &str, long: &str, mode: &str, extra: serde_json::Value| {
            report(
                label,
                rel,
                &[(
                    "receive.shapes",
                    Pass,
                    "ok",
                    json!({
                        "calls": ["first call", long],
                        "answers": {"udp": "EOPNOTSUPP (95)", "unix": mode, "extra": extra},
                        "lengths": [1, 2],
                    }),
                )],
            )
        };
        matrix(vec![
            mk("old", "5.10.0", LONG_A, "ENOTSUPP (524)", json!([1])),
            mk("new", "6.1.0", LONG_B, "EOPNOTSUPP (95)", json!([1, 2])),
        ])
    }

    #[test]
    fn list_and_object_differences_are_found_part_by_part() {
        let m = shaped();
        let ch = m.fact_changes();
        let calls = ch
            .iter()
            .find(|c| c.key == "calls")
            .expect("the list differs");
        assert_eq!(
            calls.parts,
            [Part {
                path: "[1]".into(),
                values: vec![
                    (LONG_A.into(), vec!["old".into()]),
                    (LONG_B.into(), vec!["new".into()])
                ]
            }]
        );
        let answers = ch
            .iter()
            .find(|c| c.key == "answers")
            .expect("the object differs");
        let paths: Vec<&str> = answers.parts.iter().map(|p| p.path.as_str()).collect();
        // A list of another length inside is shown whole.
        assert_eq!(paths, [".unix", ".extra"]);
        assert_eq!(answers.parts[1].values[1].0, "[1,2]");
        assert!(
            ch.iter().all(|c| c.key != "lengths"),
            "equal lists are no news"
        );
    }

    #[test]
    fn list_and_object_differences_appear_in_full_in_the_markdown() {
        let md = shaped().markdown(Path::new("."));
        let section = &md[md.find("## What changed").unwrap()..md.find("## Probes").unwrap()];
        assert!(
            section.contains("- `calls` in `receive.shapes`"),
            "{section}"
        );
        assert!(
            section.contains(&format!("    - old: `{LONG_A}`")),
            "{section}"
        );
        assert!(
            section.contains(&format!("    - new: `{LONG_B}`")),
            "{section}"
        );
        assert!(
            section.contains("  - `.unix`: `ENOTSUPP (524)` on old; `EOPNOTSUPP (95)` on new"),
            "{section}"
        );
        assert!(
            section.contains("  - `.extra`: `[1]` on old; `[1,2]` on new"),
            "{section}"
        );
        let html = super::super::html::render(&shaped(), Path::new("."));
        assert!(
            html.contains(&format!("<code>{}</code> on old", LONG_A)),
            "{html}"
        );
    }

    #[test]
    fn timing_facts_are_kept_but_are_no_difference() {
        let mk = |label: &str, rel: &str, n: u32| {
            let mut r = report(
                label,
                rel,
                &[
                    (
                        "send.x",
                        Pass,
                        "ok",
                        json!({"pattern": ["[0,1]", n], "size": 1}),
                    ),
                    // Marked by the catalogue only (an old report).
                    (
                        "send.ids.tcp4.lo",
                        Pass,
                        "ok",
                        json!({"coalescing": {"merged": n}}),
                    ),
                ],
            );
            r.cases[0].timing_facts = vec!["pattern".into()];
            r
        };
        let m = matrix(vec![mk("a", "6.1.0", 1), mk("b", "6.2.0", 2)]);
        assert!(m.fact_changes().is_empty(), "{:?}", m.fact_changes());
        assert!(m.cell_keys(0).is_empty() && m.cell_keys(1).is_empty());
        assert!(m.is_timing(0, "pattern") && m.is_timing(1, "coalescing"));
        assert!(!m.is_timing(0, "size"));
        // Kept in the report, and shown (marked) where equal.
        let m = matrix(vec![mk("a", "6.1.0", 1), mk("b", "6.2.0", 1)]);
        assert!(m
            .common_facts(0)
            .contains(&("⏱pattern".to_string(), "[\"[0,1]\",1]".to_string())));
    }

    #[test]
    fn a_wrong_walk_would_be_caught() {
        // Objects with different keys: the missing side is named, not skipped.
        let labels = ["a".to_string(), "b".to_string()];
        let (x, y) = (json!({"k": 1}), json!({"k": 1, "new": true}));
        let parts = differing_parts(&labels, &[Some(&x), Some(&y)]);
        assert_eq!(
            parts,
            [Part {
                path: ".new".into(),
                values: vec![
                    ("(absent)".into(), vec!["a".into()]),
                    ("true".into(), vec!["b".into()])
                ]
            }]
        );
        assert!(differing_parts(&labels, &[Some(&x), Some(&x.clone())]).is_empty());
    }
}

#[cfg(test)]
mod committed {
    use std::path::{Path, PathBuf};

    use super::super::compare::ran_to_the_end;
    use super::*;

    /// On the committed reports: every non-timing fact that differs between two columns is in
    /// the Markdown page, with every differing value in full.
    #[test]
    fn every_differing_fact_of_the_committed_reports_is_on_the_page() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/reports");
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        let m = Matrix::load(&files).unwrap();
        let md = m.markdown(Path::new("."));
        let changed = &md[md.find("### Observed facts").unwrap()..md.find("## Probes").unwrap()];
        let mut checked = 0;
        for (r, row) in m.rows.iter().enumerate() {
            for (key, values) in m.facts_of(r) {
                if m.is_timing(r, key) || key == HEADLINE_KEY {
                    continue;
                }
                let ran: Vec<String> = m
                    .columns
                    .iter()
                    .zip(&values)
                    .filter(|(c, _)| c.cell(&row.id).is_some_and(ran_to_the_end))
                    .map(|(_, v)| v.map(compact).unwrap_or_default())
                    .collect();
                if ran.iter().all(|v| *v == ran[0]) {
                    continue;
                }
                let line = format!("`{key}` in ");
                let at = changed
                    .match_indices(&line)
                    .find(|(i, _)| {
                        let end = changed[*i..].find('\n').map_or(changed.len(), |e| i + e);
                        changed[*i..end].contains(&format!("`{}`", row.id))
                    })
                    .unwrap_or_else(|| panic!("{} {key} is not on the page", row.id));
                let entry = &changed[at.0..];
                let entry = &entry[..entry[1..].find("\n- ").map_or(entry.len(), |e| e + 1)];
                for ch in m
                    .fact_changes()
                    .iter()
                    .filter(|c| c.key == key && c.cases.contains(&row.id))
                {
                    for p in &ch.parts {
                        for (v, _) in &p.values {
                            assert!(
                                entry.contains(v.as_str()),
                                "{v} of {} {key} missing:\n{entry}",
                                row.id
                            );
                        }
                    }
                }
                checked += 1;
            }
        }
        assert!(
            checked >= 20,
            "only {checked} differing facts in the committed reports"
        );
    }
}
