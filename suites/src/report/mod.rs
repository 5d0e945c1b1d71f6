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
        let report: Report = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            anyhow::anyhow!("at field `{path}`: {}", e.into_inner())
        })?;
        if report.schema_version > SCHEMA_VERSION {
            bail!(
                "schema_version {} is newer than this zccheck understands ({SCHEMA_VERSION})",
                report.schema_version
            );
        }
        Ok(report)
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
