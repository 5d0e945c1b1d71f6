//! JUnit XML for generic CI: one test suite per area, `fail` as a failure, `error` as an
//! error, `unsupported` and `skipped` as skipped with their reason.

use std::time::Duration;

use anyhow::Result;
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
        for c in cases {
            let mut status = match c.outcome {
                Outcome::Pass => TestCaseStatus::success(),
                Outcome::Fail => TestCaseStatus::non_success(NonSuccessKind::Failure),
                Outcome::Error => TestCaseStatus::non_success(NonSuccessKind::Error),
                Outcome::Unsupported | Outcome::Skipped => TestCaseStatus::skipped(),
            };
            if c.outcome != Outcome::Pass {
                status.set_message(format!("{}: {}", c.outcome, c.reason));
                status.set_type(c.outcome.name());
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
    Ok(junit.to_string()?)
}
