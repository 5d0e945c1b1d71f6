//! What the zcrx area's observed facts mean, and the features it answers for (read by the
//! matrix: see `report::catalogue`).

use crate::report::catalogue::{FactNote, Feature, Kind};

pub const FACTS: &[FactNote] = &[FactNote {
    cases: "zcrx.*",
    key: "*",
    kind: Kind::Detail,
    means: "the kernel's answer to one zcrx call, recorded for reference",
}];

pub const FEATURES: &[Feature] = &[
    // Device-less zcrx is every zcrx case but those that need a NIC with header split (and
    // the ring-flag detection, which predates the device-less mode).
    Feature {
        name: "io_uring zero-copy receive (zcrx), device-less",
        cases: &["zcrx.*"],
        except: &["zcrx.register.*", "zcrx.ring_flags"],
        probes: &[],
        gate: None,
    },
    Feature {
        name: "io_uring zero-copy receive (zcrx) on a NIC",
        cases: &["zcrx.register.*", "zcrx.ring_flags"],
        except: &[],
        probes: &["zcrx.register"],
        gate: None,
    },
];
