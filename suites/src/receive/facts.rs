//! What the receive area's observed facts mean, and the features it answers for (read by the
//! matrix: see `report::catalogue`).

use crate::report::catalogue::{FactNote, Feature, Kind};

pub const FACTS: &[FactNote] = &[
    FactNote {
        cases: "receive.integrity.*",
        key: "mapped_by_class",
        kind: Kind::Timing,
        means: "how many bytes were mapped rather than copied: depends on how much was queued when the reader ran",
    },
    FactNote {
        cases: "receive.*",
        key: "timestamp_age_s",
        kind: Kind::Timing,
        means: "how old the receive timestamp was when read: depends on when the reader ran",
    },
    FactNote {
        cases: "receive.*",
        key: "struct_*",
        kind: Kind::Behaviour,
        means: "the size of struct tcp_zerocopy_receive the kernel knows: fields past it are neither read nor written, so a program must check the optlen it gets back",
    },
    FactNote {
        cases: "receive.copybuf.*",
        key: "whole_queue_copied",
        kind: Kind::Behaviour,
        means: "whether a large enough copy buffer takes the whole unmapped remainder in the same call",
    },
    FactNote {
        cases: "receive.copybuf.*",
        key: "whole_queue_fault",
        kind: Kind::Behaviour,
        means: "what a copy buffer that faults does: the call fails with EFAULT, or it succeeds with copybuf_len -EFAULT and the bytes stay queued",
    },
    FactNote {
        cases: "receive.optlen.*",
        key: "inq_err_at_non_boundaries",
        kind: Kind::Detail,
        means: "at optlens that end inside a field, whether inq and err are computed or the input echoed",
    },
    FactNote {
        cases: "receive.alignment.*",
        key: "answers",
        kind: Kind::Detail,
        means: "how random receive requests were answered, by target memory: before the 5.11 fast paths the general rules apply everywhere",
    },
    FactNote {
        cases: "receive.*",
        key: "*calls",
        kind: Kind::Detail,
        means: "every TCP_ZEROCOPY_RECEIVE call the case made and the kernel's answer (with the struct size used)",
    },
    FactNote {
        cases: "receive.*",
        key: "*",
        kind: Kind::Detail,
        means: "recorded by the case for reference",
    },
];

pub const FEATURES: &[Feature] = &[
    Feature {
        name: "TCP_ZEROCOPY_RECEIVE (mmap receive)",
        cases: &["receive.*"],
        except: &[],
        probes: &["tcp_zerocopy_receive"],
        gate: None,
    },
    Feature {
        name: "… with inq and err (struct of 24 bytes and more)",
        cases: &[],
        except: &[],
        probes: &["tcp_zerocopy_receive.inq_err"],
        gate: None,
    },
    Feature {
        name: "… with a copy buffer (copybuf_address, 40 bytes)",
        cases: &["receive.copybuf.*"],
        except: &[],
        probes: &["tcp_zerocopy_receive.copybuf"],
        gate: None,
    },
    Feature {
        name: "… with control messages and timestamps (msg_control, 64 bytes)",
        cases: &[],
        except: &[],
        probes: &["tcp_zerocopy_receive.msg_control"],
        gate: None,
    },
];
