//! What the send area's observed facts mean, and the features it answers for (read by the
//! matrix: see `report::catalogue`).

use crate::report::catalogue::{FactNote, Feature, Gate, Kind};

pub const FACTS: &[FactNote] = &[
    FactNote {
        cases: "send.ids.*",
        key: "coalescing",
        kind: Kind::Timing,
        means: "how random send sequences' notifications coalesced: depends on how fast the reader ran",
    },
    FactNote {
        cases: "send.*",
        key: "notifications",
        kind: Kind::Timing,
        means: "the notification ranges read: whether two sends share one depends on timing",
    },
    FactNote {
        cases: "send.copied.*",
        key: "forwarding_preserves_zerocopy",
        kind: Kind::Behaviour,
        means: "whether data a host forwards out of another interface stays zero-copy (not COPIED): a router or a namespace-based service keeps its zero-copy benefit only where true",
    },
    FactNote {
        cases: "send.copied.*",
        key: "unjudged",
        kind: Kind::Detail,
        means: "the COPIED answer of each send where either answer is allowed (forwarded traffic)",
    },
    FactNote {
        cases: "send.copied*",
        key: "cells",
        kind: Kind::Detail,
        means: "each send of the COPIED truth table: size, what the contract expects, the notification and the judgement",
    },
    FactNote {
        cases: "send.copied*",
        key: "quirk*",
        kind: Kind::Detail,
        means: "sends whose COPIED flag was wrong in a way the contract tolerates (see OBSERVED-6.18)",
    },
    FactNote {
        cases: "send.optmem.*",
        key: "optmem_scope",
        kind: Kind::Behaviour,
        means: "where net.core.optmem_max, which bounds pending notifications, applies: one value for the whole host (global) or one per network namespace",
    },
    FactNote {
        cases: "send.optmem.*",
        key: "optmem_max_in_new_namespace",
        kind: Kind::Detail,
        means: "net.core.optmem_max a fresh network namespace starts with (null: the sysctl is not per namespace)",
    },
    FactNote {
        cases: "send.optmem.*",
        key: "optmem_per_notification",
        kind: Kind::Detail,
        means: "bytes of socket option memory one pending notification costs: how many zero-copy sends can be pending before ENOBUFS",
    },
    FactNote {
        cases: "send.sockopt.*",
        key: "*",
        kind: Kind::Behaviour,
        means: "the errno SO_ZEROCOPY returns on socket types without zero-copy: a program that tests only for EOPNOTSUPP misses ENOTSUPP (524), which userspace headers lack",
    },
    FactNote {
        cases: "send.*",
        key: "aftermath",
        kind: Kind::Detail,
        means: "what a socket with pending zero-copy sends shows after the connection ends: send results, poll events, SO_ERROR, the notifications",
    },
    FactNote {
        cases: "send.*",
        key: "*",
        kind: Kind::Detail,
        means: "recorded by the case for reference",
    },
];

pub const FEATURES: &[Feature] = &[
    Feature {
        name: "MSG_ZEROCOPY on TCP",
        cases: &["send.*.tcp*"],
        except: &[],
        probes: &["so_zerocopy.tcp"],
        gate: None,
    },
    Feature {
        name: "MSG_ZEROCOPY on UDP",
        cases: &["send.*.udp*"],
        except: &["send.copied.*.forward_dead"],
        probes: &["so_zerocopy.udp"],
        gate: None,
    },
    Feature {
        name: "Zero-copy kept when forwarding",
        cases: &["send.copied.*.forward_dead"],
        except: &[],
        probes: &[],
        gate: Some(Gate {
            key: "forwarding_preserves_zerocopy",
            works_when: "true",
        }),
    },
];
