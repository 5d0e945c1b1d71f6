//! A conformance case: a stable id, what it needs, and a function that runs it.

use std::collections::{BTreeMap, BTreeSet};
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
    /// Set when the case touches machine-wide state (a global sysctl, RLIMIT or uid games,
    /// timing that other cases would disturb): the reason, shown by `zccheck list`. Such cases
    /// never run alongside another case.
    pub serial: Option<&'static str>,
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
            serial: None,
            run: Arc::new(run),
        }
    }

    /// Declares that this case touches machine-wide state and must run alone; `why` says what.
    pub fn serial(mut self, why: &'static str) -> Self {
        self.serial = Some(why);
        self
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
    /// Keys of `observed` whose value depends on timing (scheduling, how fast a reader ran).
    timing_facts: BTreeSet<String>,
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
            timing_facts: BTreeSet::new(),
            property: None,
        }
    }

    /// Records what the kernel did where the contract leaves room. Shown in reports and in
    /// the matrix; never a verdict by itself.
    pub fn observe(&mut self, key: impl Into<String>, value: impl Serialize) {
        let v = serde_json::to_value(value).unwrap_or_else(|e| format!("<{e}>").into());
        self.observed.insert(key.into(), v);
    }

    /// Records a fact whose value depends on timing (how notifications coalesced while a
    /// reader was slow, a count from random runs). It is kept in the report but left out of
    /// the differences between kernels, like a flaky result.
    pub fn observe_timing(&mut self, key: impl Into<String>, value: impl Serialize) {
        let key = key.into();
        self.timing_facts.insert(key.clone());
        self.observe(key, value);
    }

    pub fn observed(&self) -> &BTreeMap<String, serde_json::Value> {
        &self.observed
    }

    pub(crate) fn into_parts(self) -> CtxParts {
        CtxParts {
            observed: self.observed,
            timing_facts: self.timing_facts.into_iter().collect(),
            property: self.property,
        }
    }
}

/// What a finished case leaves behind besides its verdict.
pub(crate) struct CtxParts {
    pub observed: BTreeMap<String, serde_json::Value>,
    pub timing_facts: Vec<String>,
    pub property: Option<PropertyRecord>,
}
