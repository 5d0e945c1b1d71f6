//! JUnit XML for generic CI: one test suite per area, `fail` as a failure, `error` as an
//! error, `unsupported` and `skipped` as skipped with their reason.
//!
//! The output is valid against the common JUnit XML schema (the one Jenkins and most CI
//! readers follow): every `<testsuite>` has a `time`, `<testsuites>` carries no `skipped`
//! count (the schema has none there), and `<skipped>` has a message but no `type`.

use std::time::Duration;

use anyhow::{Context, Result};
use quick_junit::{NonSuccessKind, Report as Junit, TestCase, TestCaseStatus, TestSuite};

use super::Report;
use crate::case::Area;
use crate::outcome::Outcome;

pub fn render(report: &Report) -> Result<String> {
    let mut junit = Junit::new(format!("zccheck on Linux {}", report.kernel.release));
    junit.set_time(Duration::from_millis(report.duration_ms));
    for area in Area::ALL {
        let cases: Vec<_> = report.cases.iter().filter(|c| c.area == area).collect();
        if cases.is_empty() {
            continue;
        }
        let mut suite = TestSuite::new(area.name());
        // Cases may run concurrently; the suite's time is the sum of its cases' times.
        suite.set_time(Duration::from_millis(
            cases.iter().map(|c| c.duration_ms).sum(),
        ));
        for c in cases {
            let mut status = match c.outcome {
                Outcome::Pass => TestCaseStatus::success(),
                Outcome::Fail => TestCaseStatus::non_success(NonSuccessKind::Failure),
                Outcome::Error => TestCaseStatus::non_success(NonSuccessKind::Error),
                Outcome::Unsupported | Outcome::Skipped => TestCaseStatus::skipped(),
            };
            if c.outcome != Outcome::Pass {
                status.set_message(format!("{}: {}", c.outcome, c.reason));
                if matches!(c.outcome, Outcome::Fail | Outcome::Error) {
                    status.set_type(c.outcome.name());
                }
                let mut description = c.evidence.clone().unwrap_or_default();
                description.push_str(&format!("\nreplay: {}", c.replay));
                status.set_description(description);
            }
            let mut tc = TestCase::new(c.id.clone(), status);
            tc.set_classname(format!("zccheck.{}", c.area));
            tc.set_time(Duration::from_millis(c.duration_ms));
            suite.add_test_case(tc);
        }
        junit.add_test_suite(suite);
    }
    without_root_skipped(&junit.to_string()?)
}

/// quick-junit always writes a `skipped` count on `<testsuites>`, which the schema does not
/// allow there; removes it from that one tag.
fn without_root_skipped(xml: &str) -> Result<String> {
    let start = xml
        .find("<testsuites")
        .context("the JUnit document has no <testsuites>")?;
    let end = start
        + xml[start..]
            .find('>')
            .context("<testsuites> is not closed")?;
    let tag = &xml[start..end];
    let Some(attr) = tag.find(" skipped=\"") else {
        return Ok(xml.to_string());
    };
    let value_end = tag[attr + 10..]
        .find('"')
        .context("unterminated skipped attribute")?;
    let cut = start + attr..start + attr + 10 + value_end + 1;
    Ok(format!("{}{}", &xml[..cut.start], &xml[cut.end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_xml() -> String {
        let text = include_str!("../../../fixtures/samples/report-minimal.json");
        render(&Report::parse(text).unwrap()).unwrap()
    }

    fn tags<'a>(xml: &'a str, name: &str) -> Vec<&'a str> {
        let open = format!("<{name} ");
        xml.match_indices(&open)
            .map(|(i, _)| &xml[i..i + xml[i..].find('>').unwrap()])
            .collect()
    }

    #[test]
    fn root_has_no_skipped_count() {
        let xml = sample_xml();
        let root = tags(&xml, "testsuites");
        assert_eq!(root.len(), 1, "{xml}");
        assert!(!root[0].contains("skipped="), "{}", root[0]);
        assert!(root[0].contains(" tests=\"3\""), "{}", root[0]);
    }

    #[test]
    fn every_suite_has_a_time() {
        let xml = sample_xml();
        let suites = tags(&xml, "testsuite");
        assert!(!suites.is_empty());
        for s in suites {
            assert!(s.contains(" time=\""), "{s}");
        }
    }

    #[test]
    fn skipped_has_a_message_and_no_type() {
        let xml = sample_xml();
        let skipped = tags(&xml, "skipped");
        assert!(!skipped.is_empty(), "{xml}");
        for s in skipped {
            assert!(s.contains("message=\""), "{s}");
            assert!(!s.contains("type="), "{s}");
        }
        assert!(tags(&xml, "failure")[0].contains("type=\"fail\""), "{xml}");
    }

    #[test]
    fn only_the_root_skipped_count_goes() {
        let xml = "<a/>\n<testsuites name=\"x\" tests=\"2\" skipped=\"1\" errors=\"0\">\n\
                   <testsuite name=\"s\" skipped=\"1\">";
        let out = without_root_skipped(xml).unwrap();
        assert_eq!(
            out,
            "<a/>\n<testsuites name=\"x\" tests=\"2\" errors=\"0\">\n\
             <testsuite name=\"s\" skipped=\"1\">"
        );
    }
}
