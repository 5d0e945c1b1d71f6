//! What the uring area's observed facts mean, and the features it answers for (read by the
//! matrix: see `report::catalogue`).

use crate::report::catalogue::{FactNote, Feature, Gate, Kind};

pub const FACTS: &[FactNote] = &[
    FactNote {
        cases: "uring.protocol.*",
        key: "protocol",
        kind: Kind::Timing,
        means: "counts from random request mixes (completions out of order, short sends): depend on timing",
    },
    FactNote {
        cases: "uring.error.*",
        key: "bit*",
        kind: Kind::Behaviour,
        means: "whether a SEND_ZC rejected for an unknown flag bit still sets IORING_CQE_F_MORE and posts a notification: a program must not wait for a notification that never comes",
    },
    FactNote {
        cases: "uring.*",
        key: "*",
        kind: Kind::Detail,
        means: "recorded by the case for reference",
    },
];

pub const FEATURES: &[Feature] = &[
    Feature {
        name: "io_uring SEND_ZC",
        cases: &["uring.*"],
        except: &["uring.*sendmsg*", "uring.usage.*"],
        probes: &["io_uring.send_zc"],
        gate: None,
    },
    Feature {
        name: "io_uring SENDMSG_ZC",
        cases: &["uring.*sendmsg*", "uring.protocol.*"],
        except: &[],
        probes: &["io_uring.sendmsg_zc", "io_uring.send_zc"],
        // The random request mixes use SENDMSG_ZC only where the kernel offers it.
        gate: Some(Gate {
            key: "sendmsg_zc_used",
            works_when: "true",
        }),
    },
    Feature {
        name: "io_uring zero-copy usage reports (REPORT_USAGE)",
        cases: &["uring.usage.*"],
        except: &[],
        probes: &["io_uring.report_usage"],
        gate: None,
    },
];
