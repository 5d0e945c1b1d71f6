//! One JSON report per kernel run, and its other renderings (KTAP, JUnit, the terminal).
//!
//! The JSON document has a schema version. Fields this version does not know are kept on
//! load and written back, so older tools can merge newer reports. A malformed file is
//! rejected with its path and the offending field.

pub mod catalogue;
pub mod diff;
pub mod junit;
pub mod ktap;
pub mod matrix;
pub use matrix::html;
pub mod terminal;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use harness::kernel::KernelInfo;
use harness::privileges::Privileges;
use serde::{Deserialize, Serialize};

use crate::case::{Area, PropertyRecord};
use crate::outcome::Outcome;
use crate::probes::ProbeRecord;

/// Bumped when a field changes meaning or disappears (adding fields does not bump it).
pub const SCHEMA_VERSION: u32 = 1;

/// The schema versions this zccheck reads: 1, and 2 (which only adds optional fields).
pub const READABLE_SCHEMAS: std::ops::RangeInclusive<u32> = 1..=2;

type Extra = serde_json::Map<String, serde_json::Value>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    pub tool: Tool,
    pub kernel: KernelInfo,
    pub environment: Environment,
    pub settings: Settings,
    pub probes: Vec<ProbeRecord>,
    pub cases: Vec<CaseRecord>,
    pub totals: BTreeMap<Outcome, usize>,
    pub duration_ms: u64,
    #[serde(flatten)]
    pub extra: Extra,
    /// What zero-copy costs and saves on this kernel (`zccheck bench`), when measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bench: Option<crate::bench::BenchReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    /// "native" or "vm" (set by the VM runner's init through ZCCHECK_ENVIRONMENT).
    pub kind: String,
    pub privileges: Privileges,
    pub cpus: usize,
    /// Sysctls an earlier, killed run had left changed and this run restored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restored_sysctls: Vec<(String, String)>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub filter: Vec<String>,
    pub seed: u64,
    pub cases: u32,
    pub timeout_s: u64,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseRecord {
    pub id: String,
    pub area: Area,
    pub title: String,
    pub outcome: Outcome,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub observed: BTreeMap<String, serde_json::Value>,
    /// Keys of `observed` whose value depends on timing: kept, but not a difference between
    /// kernels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timing_facts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<PropertyRecord>,
    /// The command that reproduces this result.
    pub replay: String,
    pub duration_ms: u64,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Report {
    /// Counts outcomes into `totals`.
    pub fn tally(&mut self) {
        self.totals = Outcome::ALL.iter().map(|o| (*o, 0)).collect();
        for c in &self.cases {
            *self.totals.entry(c.outcome).or_default() += 1;
        }
    }

    pub fn count(&self, o: Outcome) -> usize {
        self.cases.iter().filter(|c| c.outcome == o).count()
    }

    /// Reads and validates a report, naming the file and the offending field on error.
    pub fn load(path: &Path) -> Result<Report> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read report {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("malformed report {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Report> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let report: Report = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
            let path = e.path().to_string();
            anyhow::anyhow!("at field `{path}`: {}", e.into_inner())
        })?;
        // Two reports pasted together must not read as the first one.
        de.end()
            .map_err(|e| anyhow::anyhow!("text after the end of the report ({e})"))?;
        report.validate()?;
        Ok(report)
    }

    /// What the types cannot say: a known schema version, one record per case id, ids that
    /// belong to their area and fit a Markdown row, totals that agree with the cases.
    fn validate(&self) -> Result<()> {
        match self.schema_version {
            0 => bail!("schema_version 0 is not a version any zccheck wrote"),
            v if v > *READABLE_SCHEMAS.end() => bail!(
                "schema_version {v} is newer than this zccheck understands ({}..={})",
                READABLE_SCHEMAS.start(),
                READABLE_SCHEMAS.end()
            ),
            _ => {}
        }
        let mut seen = std::collections::HashSet::new();
        for (i, c) in self.cases.iter().enumerate() {
            let at = || format!("at field `cases[{i}].id`");
            if !seen.insert(c.id.as_str()) {
                bail!("{}: case id {:?} appears twice", at(), c.id);
            }
            if c.id.contains('|') || c.id.chars().any(|ch| ch.is_control() || ch.is_whitespace()) {
                bail!(
                    "{}: case id {:?} holds a character an id never has ('|', a space or a \
                     control character)",
                    at(),
                    c.id
                );
            }
            let area = c.area.name();
            if !c.id.strip_prefix(area).is_some_and(|r| r.starts_with('.')) {
                bail!("{}: case id {:?} is not in its area `{area}`", at(), c.id);
            }
        }
        for o in Outcome::ALL {
            let said = self.totals.get(&o).copied().unwrap_or(0);
            let counted = self.count(o);
            if said != counted {
                bail!("at field `totals.{o}`: {said}, but {counted} cases have that outcome");
            }
        }
        if let Some(label) = self
            .extra
            .get(matrix::PROVENANCE_KEY)
            .and_then(|p| p.get("label"))
            .and_then(|l| l.as_str())
        {
            if label.chars().any(char::is_control) || label.contains('|') {
                bail!(
                    "at field `{}.label`: {label:?} holds a line break, a control character \
                     or '|'",
                    matrix::PROVENANCE_KEY
                );
            }
        }
        Ok(())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Report {
        let text = include_str!("../../../fixtures/samples/report-minimal.json");
        Report::parse(text).expect("the sample report parses")
    }

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let r = sample();
        assert_eq!(
            r.extra["from_the_future"],
            serde_json::json!({"kept": true})
        );
        assert_eq!(r.cases[0].extra["also_kept"], serde_json::json!(1));
        let again = Report::parse(&r.to_json()).unwrap();
        assert_eq!(again, r);
    }

    #[test]
    fn malformed_field_is_named() {
        let text = include_str!("../../../fixtures/samples/report-minimal.json")
            .replace("\"outcome\": \"pass\"", "\"outcome\": \"maybe\"");
        let err = format!("{:#}", Report::parse(&text).unwrap_err());
        assert!(err.contains("cases[0].outcome"), "{err}");
        assert!(err.contains("maybe"), "{err}");
    }

    #[test]
    fn truncated_report_is_rejected() {
        let text = include_str!("../../../fixtures/samples/report-minimal.json");
        let err = format!("{:#}", Report::parse(&text[..text.len() / 2]).unwrap_err());
        assert!(err.contains("EOF"), "{err}");
    }

    #[test]
    fn newer_schema_is_refused() {
        let text = include_str!("../../../fixtures/samples/report-minimal.json")
            .replace("\"schema_version\": 1", "\"schema_version\": 99");
        assert!(Report::parse(&text)
            .unwrap_err()
            .to_string()
            .contains("newer"));
    }

    fn minimal() -> String {
        include_str!("../../../fixtures/samples/report-minimal.json").to_string()
    }

    fn rejected(text: &str, needles: &[&str]) {
        let err = format!("{:#}", Report::parse(text).unwrap_err());
        for n in needles {
            assert!(err.contains(n), "{err:?} does not mention {n:?}");
        }
    }

    /// The report with its first case's id replaced.
    fn with_first_id(id: &str) -> String {
        let mut v: serde_json::Value = serde_json::from_str(&minimal()).unwrap();
        v["cases"][0]["id"] = serde_json::json!(id);
        serde_json::to_string_pretty(&v).unwrap()
    }

    #[test]
    fn duplicate_case_ids_are_rejected_by_name() {
        let mut v: serde_json::Value = serde_json::from_str(&minimal()).unwrap();
        v["cases"][0] = v["cases"][1].clone();
        v["totals"] = serde_json::json!({});
        let dup = v["cases"][1]["id"].as_str().unwrap().to_string();
        rejected(&v.to_string(), &[&dup, "twice"]);
    }

    #[test]
    fn trailing_data_is_rejected() {
        let one = minimal();
        rejected(&format!("{one}\n{one}"), &["text after the end"]);
        rejected(&format!("{one} x"), &["text after the end"]);
        // Trailing whitespace is not data.
        Report::parse(&format!("{one}\n\n")).unwrap();
    }

    #[test]
    fn schema_versions_read_are_1_and_2() {
        let v = |n: u32| {
            minimal().replace("\"schema_version\": 1", &format!("\"schema_version\": {n}"))
        };
        rejected(&v(0), &["schema_version 0"]);
        Report::parse(&v(1)).unwrap();
        Report::parse(&v(2)).unwrap();
        rejected(&v(3), &["schema_version 3", "newer"]);
    }

    #[test]
    fn totals_must_agree_with_the_cases() {
        let mut v: serde_json::Value = serde_json::from_str(&minimal()).unwrap();
        v["totals"]["pass"] = serde_json::json!(7);
        rejected(&v.to_string(), &["totals.pass", "7"]);
    }

    #[test]
    fn ids_outside_their_area_or_breaking_a_row_are_rejected() {
        let r = sample();
        let area = r.cases[0].area.name();
        rejected(
            &with_first_id("receive.something.else"),
            &["not in its area"],
        );
        rejected(&with_first_id(area), &["not in its area"]);
        rejected(&with_first_id(&format!("{area}.a|b")), &["'|'"]);
        rejected(&with_first_id(&format!("{area}.a\nb")), &["control"]);
    }

    #[test]
    fn labels_with_line_breaks_are_rejected() {
        let mut v: serde_json::Value = serde_json::from_str(&minimal()).unwrap();
        v["provenance"] =
            serde_json::json!({"label": "6.1\n| x |", "source": "native", "status": "report"});
        rejected(&v.to_string(), &["provenance.label"]);
        v["provenance"]["label"] = serde_json::json!("6.1");
        Report::parse(&v.to_string()).unwrap();
    }

    #[test]
    fn every_fixture_report_is_valid() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/reports");
        for f in std::fs::read_dir(dir).unwrap() {
            let f = f.unwrap().path();
            if f.extension() != Some("json".as_ref()) {
                continue;
            }
            Report::load(&f).unwrap_or_else(|e| panic!("{e:#}"));
        }
    }

    #[test]
    fn ktap_marks_skips_and_failures() {
        let text = ktap::render(&sample());
        assert!(text.starts_with("KTAP version 1\n"));
        assert!(text.contains("\n1..3\n"));
        assert!(text.contains("ok 1 send.format.tcp4.lo\n"));
        assert!(text.contains("ok 2 uring.send_zc.tcp4.lo # SKIP unsupported: "));
        assert!(text.contains("not ok 3 send.ids.udp4.pair\n"));
        assert!(text.contains("# Totals: pass:1 fail:1 xfail:0 xpass:0 skip:1 error:0"));
    }

    #[test]
    fn junit_has_a_failure_and_a_skip() {
        let xml = junit::render(&sample()).unwrap();
        assert!(xml.contains("<failure"), "{xml}");
        assert!(xml.contains("<skipped"), "{xml}");
    }
}
