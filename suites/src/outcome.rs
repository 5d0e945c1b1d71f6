//! The five outcomes, and the early exits a case body uses to reach them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Only `Fail` speaks about the kernel; `Error` speaks about the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The kernel kept the promise.
    Pass,
    /// The kernel broke the promise; the record carries the evidence.
    Fail,
    /// The kernel lacks the feature; the reason names the probe that said so.
    Unsupported,
    /// The environment lacks something (root, a module, hardware); the reason says what.
    Skipped,
    /// The suite could not run the case (set-up failure, timeout, panic).
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Pass,
        Outcome::Fail,
        Outcome::Unsupported,
        Outcome::Skipped,
        Outcome::Error,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Unsupported => "unsupported",
            Outcome::Skipped => "skipped",
            Outcome::Error => "error",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The result of one case: an outcome, a one-line reason, and for failures the evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub outcome: Outcome,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub evidence: Option<String>,
}

impl Verdict {
    pub fn pass(reason: impl Into<String>) -> Self {
        Verdict {
            outcome: Outcome::Pass,
            reason: reason.into(),
            evidence: None,
        }
    }

    pub fn error(reason: impl Into<String>) -> Self {
        Verdict {
            outcome: Outcome::Error,
            reason: reason.into(),
            evidence: None,
        }
    }
}

/// An early exit from a case body with a definite outcome. Return it through `?` as an
/// `anyhow::Error`; the runner recognises it.
#[derive(Debug, Clone, PartialEq)]
pub enum Stop {
    Fail {
        reason: String,
        evidence: Option<String>,
    },
    Unsupported {
        probe: String,
    },
    Skipped {
        reason: String,
    },
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Fail { reason, .. } => write!(f, "fail: {reason}"),
            Stop::Unsupported { probe } => write!(f, "unsupported: {probe}"),
            Stop::Skipped { reason } => write!(f, "skipped: {reason}"),
        }
    }
}

impl std::error::Error for Stop {}

impl Stop {
    pub fn into_verdict(self) -> Verdict {
        match self {
            Stop::Fail { reason, evidence } => Verdict {
                outcome: Outcome::Fail,
                reason,
                evidence,
            },
            Stop::Unsupported { probe } => Verdict {
                outcome: Outcome::Unsupported,
                reason: probe,
                evidence: None,
            },
            Stop::Skipped { reason } => Verdict {
                outcome: Outcome::Skipped,
                reason,
                evidence: None,
            },
        }
    }
}

/// The kernel broke a promise.
pub fn fail(reason: impl Into<String>) -> anyhow::Error {
    Stop::Fail {
        reason: reason.into(),
        evidence: None,
    }
    .into()
}

/// The kernel broke a promise; `evidence` is what it did (multi-line is fine).
pub fn fail_with(reason: impl Into<String>, evidence: impl Into<String>) -> anyhow::Error {
    Stop::Fail {
        reason: reason.into(),
        evidence: Some(evidence.into()),
    }
    .into()
}

/// The kernel lacks the feature; `probe` says which probe answered and how.
pub fn unsupported(probe: impl Into<String>) -> anyhow::Error {
    Stop::Unsupported {
        probe: probe.into(),
    }
    .into()
}

/// The environment lacks something.
pub fn skipped(reason: impl Into<String>) -> anyhow::Error {
    Stop::Skipped {
        reason: reason.into(),
    }
    .into()
}

/// `Err(fail(..))` unless `cond` holds: for a promise stated as one condition.
pub fn expect(cond: bool, reason: impl FnOnce() -> String) -> anyhow::Result<()> {
    if cond {
        Ok(())
    } else {
        Err(fail(reason()))
    }
}

/// Turns a case body's error into its verdict. A malformed error-queue notification found by
/// the checked reader (`harness::sys::errqueue`) is the kernel's fault wherever it surfaced,
/// so it is `fail` with the whole message as evidence, even under a `.context(..)`.
pub fn verdict_of_error(e: anyhow::Error) -> Verdict {
    if let Some(m) = e.chain().find_map(harness::sys::errqueue::malformed_in) {
        return Verdict {
            outcome: Outcome::Fail,
            reason: format!("{m} (while: {e:#})"),
            evidence: Some(m.evidence.clone()),
        };
    }
    match e.downcast::<Stop>() {
        Ok(stop) => stop.into_verdict(),
        Err(e) => Verdict::error(format!("{e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use anyhow::Context;
    use harness::sys::errqueue::Malformed;

    use super::*;

    #[test]
    fn a_malformed_notification_is_fail_even_under_context() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            Malformed {
                fault: "ee_pad is 3".into(),
                evidence: "cmsg level 0 type 11".into(),
            },
        );
        let e = Err::<(), _>(io)
            .context("draining the sender's error queue")
            .unwrap_err();
        let v = verdict_of_error(e);
        assert_eq!(v.outcome, Outcome::Fail, "{v:?}");
        assert!(v.reason.contains("ee_pad is 3"), "{}", v.reason);
        assert_eq!(v.evidence.as_deref(), Some("cmsg level 0 type 11"));
        let plain = verdict_of_error(anyhow::anyhow!("set-up broke"));
        assert_eq!(plain.outcome, Outcome::Error);
    }
}
