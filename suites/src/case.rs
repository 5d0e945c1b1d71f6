//! A conformance case: a stable id, what it needs, and a function that runs it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use harness::kernel::KernelInfo;
use harness::privileges::Privileges;
use serde::{Deserialize, Serialize};

use crate::outcome::Verdict;
use crate::probes::Requirement;

/// The feature areas; each is one module of the suite and one group of matrix rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Area {
    Send,
    Receive,
    Uring,
    Devmem,
    Zcrx,
    /// Cases that test the runner itself (a panic, a hang); hidden unless asked for.
    Selftest,
}

impl Area {
    pub const ALL: [Area; 6] = [
        Area::Send,
        Area::Receive,
        Area::Uring,
        Area::Devmem,
        Area::Zcrx,
        Area::Selftest,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Area::Send => "send",
            Area::Receive => "receive",
            Area::Uring => "uring",
            Area::Devmem => "devmem",
            Area::Zcrx => "zcrx",
            Area::Selftest => "selftest",
        }
    }
}

impl fmt::Display for Area {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a case body returns: a verdict, or an error. An error that is a [`crate::outcome::Stop`]
/// becomes that outcome (fail, unsupported, skipped); any other error means the suite could
/// not run the case (`error`).
pub type CaseResult = anyhow::Result<Verdict>;

pub type CaseFn = Arc<dyn Fn(&mut Ctx) -> CaseResult + Send + Sync>;

#[derive(Clone)]
pub struct Case {
    /// Stable: the row key of the matrix. `area.rule.variant`, lowercase, dot separated.
    pub id: String,
    pub area: Area,
    /// One line: the promise this case checks, and the reference it mirrors if any.
    pub title: String,
    pub requires: Vec<Requirement>,
    pub run: CaseFn,
}

impl Case {
    pub fn new(
        id: impl Into<String>,
        area: Area,
        title: impl Into<String>,
        requires: Vec<Requirement>,
        run: impl Fn(&mut Ctx) -> CaseResult + Send + Sync + 'static,
    ) -> Self {
        Case {
            id: id.into(),
            area,
            title: title.into(),
            requires,
            run: Arc::new(run),
        }
    }
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Case")
            .field("id", &self.id)
            .field("area", &self.area)
            .finish()
    }
}

/// A property test's record: how many random cases ran, with which seed, and on failure the
/// minimal counterexample and the command that replays it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PropertyRecord {
    pub cases_run: u32,
    pub seed: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub counterexample: Option<String>,
}

/// What a case can see and record while it runs.
pub struct Ctx {
    /// Seed of this case (derived from the run's seed and the case id).
    pub seed: u64,
    /// Random cases each property test runs.
    pub cases: u32,
    pub kernel: KernelInfo,
    pub privileges: Privileges,
    observed: BTreeMap<String, serde_json::Value>,
    pub(crate) property: Option<PropertyRecord>,
}

impl Ctx {
    pub fn new(seed: u64, cases: u32, kernel: KernelInfo, privileges: Privileges) -> Self {
        Ctx {
            seed,
            cases,
            kernel,
            privileges,
            observed: BTreeMap::new(),
            property: None,
        }
    }

    /// Records what the kernel did where the contract leaves room. Shown in reports and in
    /// the matrix; never a verdict by itself.
    pub fn observe(&mut self, key: impl Into<String>, value: impl Serialize) {
        let v = serde_json::to_value(value).unwrap_or_else(|e| format!("<{e}>").into());
        self.observed.insert(key.into(), v);
    }

    pub fn observed(&self) -> &BTreeMap<String, serde_json::Value> {
        &self.observed
    }

    pub(crate) fn into_parts(
        self,
    ) -> (BTreeMap<String, serde_json::Value>, Option<PropertyRecord>) {
        (self.observed, self.property)
    }
}
