//! What changed between two reports (two kernels, or two runs of one kernel): new passes,
//! new failures, other outcome changes, cases only in one of them, changed observed facts and
//! changed probe answers. For regression hunting: `zccheck diff old.json new.json`.

use std::collections::BTreeSet;
use std::fmt::Write;

use super::catalogue;
use super::matrix::{differing_parts, Provenance};
use super::{CaseRecord, Report};
use crate::outcome::Outcome;
use crate::probes::Answer;

#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeChange {
    pub id: String,
    pub from: Outcome,
    pub to: Outcome,
    /// The reason in B.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FactChange {
    pub id: String,
    /// The fact's key, then the part that changed (`answers.udp`, `calls[1]`).
    pub key: String,
    pub from: Option<String>,
    pub to: Option<String>,
    /// The fact depends on timing (listed only with `--all`).
    pub timing: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Diff {
    pub a: String,
    pub b: String,
    /// Not pass in A, pass in B.
    pub new_passes: Vec<OutcomeChange>,
    /// Not fail/error in A, fail or error in B.
    pub new_failures: Vec<OutcomeChange>,
    /// Any other change of outcome (pass -> unsupported, skipped -> unsupported, ...).
    pub other_changes: Vec<OutcomeChange>,
    pub only_in_a: Vec<String>,
    pub only_in_b: Vec<String>,
    pub facts: Vec<FactChange>,
    /// Facts that depend on timing and differ, left out of `facts`.
    pub timing_left_out: usize,
    /// (probe, answer in A, answer in B).
    pub probes: Vec<(String, String, String)>,
}

fn is_bad(o: Outcome) -> bool {
    matches!(o, Outcome::Fail | Outcome::Error)
}

/// How a report is named in the diff: its column label and kernel release.
fn name(r: &Report) -> String {
    match Provenance::of(r).ok().flatten().map(|p| p.label) {
        Some(l) if !l.is_empty() && l != r.kernel.release => {
            format!("{l} (Linux {})", r.kernel.release)
        }
        _ => format!("Linux {}", r.kernel.release),
    }
}

fn answer(a: &Answer) -> String {
    match a {
        Answer::Present(d) => format!("yes ({d})"),
        Answer::Absent(d) => format!("no ({d})"),
        Answer::Blocked(d) => format!("blocked ({d})"),
    }
}

/// What changed, leaving out facts that depend on timing.
pub fn diff(a: &Report, b: &Report) -> Diff {
    diff_with(a, b, false)
}

/// Whether fact `key` of a case depends on timing: either report marks it, or the catalogue
/// does (reports written before cases marked such facts).
fn is_timing(ca: &CaseRecord, cb: &CaseRecord, key: &str) -> bool {
    ca.timing_facts
        .iter()
        .chain(&cb.timing_facts)
        .any(|k| k == key)
        || catalogue::is_timing(&ca.id, key)
}

/// What changed; with `all`, facts that depend on timing too (marked).
pub fn diff_with(a: &Report, b: &Report, all: bool) -> Diff {
    let mut d = Diff {
        a: name(a),
        b: name(b),
        ..Default::default()
    };
    let find = |r: &'_ Report, id: &str| -> Option<CaseRecord> {
        r.cases.iter().find(|c| c.id == id).cloned()
    };
    for ca in &a.cases {
        let Some(cb) = find(b, &ca.id) else {
            d.only_in_a.push(ca.id.clone());
            continue;
        };
        if ca.outcome != cb.outcome {
            let ch = OutcomeChange {
                id: ca.id.clone(),
                from: ca.outcome,
                to: cb.outcome,
                reason: cb.reason.clone(),
            };
            if cb.outcome == Outcome::Pass {
                d.new_passes.push(ch);
            } else if is_bad(cb.outcome) && !is_bad(ca.outcome) {
                d.new_failures.push(ch);
            } else {
                d.other_changes.push(ch);
            }
        }
        let keys: BTreeSet<&String> = ca.observed.keys().chain(cb.observed.keys()).collect();
        let labels = ["A".to_string(), "B".to_string()];
        for k in keys {
            let parts = differing_parts(&labels, &[ca.observed.get(k), cb.observed.get(k)]);
            if parts.is_empty() {
                continue;
            }
            let timing = is_timing(ca, &cb, k);
            if timing && !all {
                d.timing_left_out += 1;
                continue;
            }
            for p in parts {
                let side = |l: &str| {
                    p.values
                        .iter()
                        .find(|(_, cols)| cols.iter().any(|c| c == l))
                        .map(|(v, _)| v.clone())
                        .filter(|v| v != "(absent)")
                };
                d.facts.push(FactChange {
                    id: ca.id.clone(),
                    key: format!("{k}{}", p.path),
                    from: side("A"),
                    to: side("B"),
                    timing,
                });
            }
        }
    }
    d.only_in_b = b
        .cases
        .iter()
        .filter(|c| find(a, &c.id).is_none())
        .map(|c| c.id.clone())
        .collect();
    for pb in &b.probes {
        let pa = a.probes.iter().find(|p| p.name == pb.name);
        let (wa, wb) = (
            pa.map(|p| answer(&p.answer))
                .unwrap_or_else(|| "not probed".into()),
            answer(&pb.answer),
        );
        if pa.map(|p| std::mem::discriminant(&p.answer)) != Some(std::mem::discriminant(&pb.answer))
        {
            d.probes.push((pb.name.clone(), wa, wb));
        }
    }
    d
}

impl Diff {
    pub fn has_new_failures(&self) -> bool {
        !self.new_failures.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.new_passes.is_empty()
            && self.new_failures.is_empty()
            && self.other_changes.is_empty()
            && self.only_in_a.is_empty()
            && self.only_in_b.is_empty()
            && self.facts.is_empty()
            && self.probes.is_empty()
    }

    fn timing_note(&self, o: &mut String) {
        if self.timing_left_out > 0 {
            let _ = writeln!(
                o,
                "\n{} fact{} that depend{} on timing differ too (left out; --all lists them)",
                self.timing_left_out,
                if self.timing_left_out == 1 { "" } else { "s" },
                if self.timing_left_out == 1 { "s" } else { "" },
            );
        }
    }

    pub fn render(&self) -> String {
        let mut o = format!("A: {}\nB: {}\n", self.a, self.b);
        if self.is_empty() {
            o.push_str("\nno change: same outcomes, same observed facts, same probe answers\n");
            self.timing_note(&mut o);
            return o;
        }
        let outcome_section = |o: &mut String, title: &str, list: &[OutcomeChange]| {
            if list.is_empty() {
                return;
            }
            let _ = writeln!(o, "\n{title} ({}):", list.len());
            for c in list {
                let _ = writeln!(
                    o,
                    "  {}: {} -> {}: {}",
                    c.id,
                    c.from,
                    c.to,
                    c.reason.lines().next().unwrap_or("")
                );
            }
        };
        outcome_section(&mut o, "new failures", &self.new_failures);
        outcome_section(&mut o, "new passes", &self.new_passes);
        outcome_section(&mut o, "other outcome changes", &self.other_changes);
        if !self.facts.is_empty() {
            let _ = writeln!(o, "\nchanged observed facts ({}):", self.facts.len());
            for f in &self.facts {
                let _ = writeln!(
                    o,
                    "  {} {}{}: {} -> {}",
                    f.id,
                    f.key,
                    if f.timing { " (depends on timing)" } else { "" },
                    f.from.as_deref().unwrap_or("(absent)"),
                    f.to.as_deref().unwrap_or("(absent)")
                );
            }
        }
        self.timing_note(&mut o);
        if !self.probes.is_empty() {
            let _ = writeln!(o, "\nchanged probe answers ({}):", self.probes.len());
            for (n, a, b) in &self.probes {
                let _ = writeln!(o, "  {n}: {a} -> {b}");
            }
        }
        for (title, ids) in [
            ("only in A", &self.only_in_a),
            ("only in B", &self.only_in_b),
        ] {
            if !ids.is_empty() {
                let _ = writeln!(o, "\n{title} ({}): {}", ids.len(), ids.join(", "));
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::report::matrix::tests::report;

    #[test]
    fn sorts_changes_into_passes_failures_and_facts() {
        use Outcome::*;
        let a = report(
            "5.10",
            "5.10.0",
            &[
                ("uring.zc", Unsupported, "probe: EINVAL", json!({})),
                ("send.a", Pass, "ok", json!({"errno": "EINVAL (22)"})),
                ("send.b", Pass, "ok", json!({})),
                ("send.gone", Pass, "ok", json!({})),
            ],
        );
        let b = report(
            "6.1",
            "6.1.0",
            &[
                ("uring.zc", Pass, "ok", json!({})),
                ("send.a", Pass, "ok", json!({"errno": "EPIPE (32)"})),
                ("send.b", Fail, "id 3 reported twice", json!({})),
                ("send.new", Skipped, "no veth", json!({})),
            ],
        );
        let d = diff(&a, &b);
        assert_eq!(d.new_passes.len(), 1);
        assert_eq!(d.new_passes[0].id, "uring.zc");
        assert_eq!(d.new_failures[0].id, "send.b");
        assert!(d.has_new_failures());
        assert_eq!(
            d.facts,
            [FactChange {
                id: "send.a".into(),
                key: "errno".into(),
                from: Some("EINVAL (22)".into()),
                to: Some("EPIPE (32)".into()),
                timing: false,
            }]
        );
        assert_eq!(d.only_in_a, ["send.gone"]);
        assert_eq!(d.only_in_b, ["send.new"]);
        let text = d.render();
        assert!(text.contains("A: 5.10 (Linux 5.10.0)"), "{text}");
        assert!(
            text.contains("new failures (1):\n  send.b: pass -> fail: id 3 reported twice"),
            "{text}"
        );
        assert!(
            text.contains("send.a errno: EINVAL (22) -> EPIPE (32)"),
            "{text}"
        );
    }

    #[test]
    fn timing_facts_are_left_out_unless_all_are_asked_for() {
        use Outcome::Pass;
        let mk = |n: u32, copied: bool| {
            let mut r = report(
                "x",
                "6.1.0",
                &[
                    (
                        "send.a",
                        Pass,
                        "ok",
                        json!({"pattern": [n], "copied": copied}),
                    ),
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
        let d = diff(&mk(1, true), &mk(2, true));
        assert!(d.facts.is_empty() && d.timing_left_out == 2, "{d:?}");
        assert!(d
            .render()
            .contains("2 facts that depend on timing differ too"));
        let d = diff(&mk(1, true), &mk(2, false));
        assert_eq!(d.facts.len(), 1, "{d:?}");
        assert_eq!(d.facts[0].key, "copied");
        let all = diff_with(&mk(1, true), &mk(2, true), true);
        let keys: Vec<&str> = all.facts.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(keys, ["pattern[0]", "coalescing.merged"]);
        assert!(all
            .render()
            .contains("send.a pattern[0] (depends on timing): 1 -> 2"));
    }

    #[test]
    fn identical_reports_have_no_change() {
        let a = report(
            "x",
            "6.1.0",
            &[("send.a", Outcome::Pass, "ok", json!({"copied": true}))],
        );
        let d = diff(&a, &a.clone());
        assert!(d.is_empty() && !d.has_new_failures());
        assert!(d.render().contains("no change"));
    }
}
