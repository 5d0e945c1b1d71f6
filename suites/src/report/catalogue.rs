//! What the matrix knows about facts and features, gathered from the areas.
//!
//! Each area keeps, next to the cases that observe them, a `facts` module with two tables:
//! `FACTS` explains what an observed fact means for a program (and whether its value depends
//! on timing, for reports written before cases marked such facts themselves), and `FEATURES`
//! names the features a user asks about and the cases and probes that answer for them. The
//! matrix derives every mark from the reports; these tables only say where to look.

use serde_json::Value;

/// How a difference in a fact between two kernels should be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A behaviour a program can notice: where it differs from the newest kernel, the
    /// feature works with a quirk there.
    Behaviour,
    /// A detail worth seeing (the calls made, a size, an errno text), not a quirk by itself.
    Detail,
    /// Depends on timing (how notifications coalesced, counts from random runs): kept in the
    /// report, never a difference between kernels.
    Timing,
}

/// One entry of an area's catalogue of facts.
#[derive(Debug, Clone, Copy)]
pub struct FactNote {
    /// Case ids it applies to (`*` matches any run of characters).
    pub cases: &'static str,
    /// Fact keys it applies to (`*` as above).
    pub key: &'static str,
    pub kind: Kind,
    /// One line: what the fact means for a program.
    pub means: &'static str,
}

/// When a feature works only if a fact has a given value (zero-copy kept when forwarding).
#[derive(Debug, Clone, Copy)]
pub struct Gate {
    pub key: &'static str,
    /// The value (as compact JSON) that means the feature works; any other means missing.
    pub works_when: &'static str,
}

/// A feature of the summary: a row in plain words.
#[derive(Debug, Clone, Copy)]
pub struct Feature {
    /// Plain words: `MSG_ZEROCOPY on TCP`.
    pub name: &'static str,
    /// Case ids that answer for it (globs); new cases matching them join automatically.
    pub cases: &'static [&'static str],
    /// Case ids among those left out (globs).
    pub except: &'static [&'static str],
    /// Probes that must answer yes; cases needing one of them (by the registry, or by the
    /// probe an `unsupported` reason names) answer for the feature too.
    pub probes: &'static [&'static str],
    pub gate: Option<Gate>,
}

impl Feature {
    /// Whether case `id` answers for this feature by its id.
    pub fn selects(&self, id: &str) -> bool {
        self.cases.iter().any(|p| glob(p, id)) && !self.except.iter().any(|p| glob(p, id))
    }
}

/// Every area's facts, in area order.
pub fn facts() -> impl Iterator<Item = &'static FactNote> {
    [
        crate::send::facts::FACTS,
        crate::receive::facts::FACTS,
        crate::uring::facts::FACTS,
        crate::devmem::facts::FACTS,
        crate::zcrx::facts::FACTS,
    ]
    .into_iter()
    .flatten()
}

/// Every area's features, in area order: the rows of the summary.
pub fn features() -> Vec<&'static Feature> {
    [
        crate::send::facts::FEATURES,
        crate::receive::facts::FEATURES,
        crate::uring::facts::FEATURES,
        crate::devmem::facts::FEATURES,
        crate::zcrx::facts::FEATURES,
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The catalogue entry for fact `key` of case `id`: the first that matches.
pub fn note(id: &str, key: &str) -> Option<&'static FactNote> {
    facts().find(|n| glob(n.cases, id) && glob(n.key, key))
}

/// Whether fact `key` of case `id` depends on timing by the catalogue.
pub fn is_timing(id: &str, key: &str) -> bool {
    note(id, key).is_some_and(|n| n.kind == Kind::Timing)
}

/// Whether `v` is the gate's working value.
pub fn gate_holds(g: &Gate, v: &Value) -> bool {
    super::matrix::compact(v) == g.works_when
}

pub use crate::registry::glob;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("send.ids.*", "send.ids.tcp4.lo"));
        assert!(glob("send.*.tcp*", "send.copied.tcp4.lo"));
        assert!(!glob("send.*.tcp*", "send.copied.udp4.lo"));
        assert!(glob("bit*.f_more", "bit15.f_more"));
        assert!(glob("calls", "calls"));
        assert!(!glob("calls", "calls2"));
    }

    #[test]
    fn every_pattern_of_the_catalogue_names_its_area() {
        for n in facts() {
            assert!(!n.means.is_empty() && !n.means.contains('\n'), "{n:?}");
            let area = n.cases.split('.').next().unwrap_or_default();
            assert!(
                ["send", "receive", "uring", "devmem", "zcrx"].contains(&area),
                "{n:?}"
            );
        }
        for f in features() {
            assert!(!f.cases.is_empty() || !f.probes.is_empty(), "{f:?}");
        }
    }
}
