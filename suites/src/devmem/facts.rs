//! What the devmem area's observed facts mean, and the feature it answers for (read by the
//! matrix: see `report::catalogue`).

use crate::report::catalogue::{FactNote, Feature, Kind};

pub const FACTS: &[FactNote] = &[FactNote {
    cases: "devmem.*",
    key: "*",
    kind: Kind::Detail,
    means: "the kernel's answer to one devmem call, recorded for reference",
}];

pub const FEATURES: &[Feature] = &[Feature {
    name: "devmem TCP",
    cases: &["devmem.*"],
    except: &[],
    probes: &["devmem.netdev_family"],
    gate: None,
}];
