//! What `SO_EE_CODE_ZEROCOPY_COPIED` must say on a given path (SEMANTICS.md §4, R4.1, R3.3).
//!
//! The flag is informational: the kernel may always fall back to copying, and must then say
//! so. A cell of the truth table is therefore one of:
//!
//! * a promise that the data was copied, where a copy is unavoidable (the bytes reach a local
//!   socket and are copied before they are queued; the device cannot scatter-gather; a TX
//!   timestamp clone would otherwise hold the user's pages): the flag must be set;
//! * a promise that the data was not copied, where nothing on the path touches the bytes (a
//!   datagram dropped at a veth whose peer is down, on every kernel);
//! * room in the contract, where kernels differ for reasons of implementation (a forwarded
//!   datagram, copied before 6.17 and not since; a fragmented or corked datagram): the code is
//!   recorded as an observed fact, never judged;
//! * a copy that kernels are known to misreport (TCP through a sender without scatter-gather,
//!   segments beyond the MSS, OBSERVED-6.18 A): a code 0 there is recorded as a quirk.
//!
//! Judgements apply only to a notification covering sends of one known path: the kernel
//! keeps the older entry's code when it merges two (R3.3), so the suite drains between
//! sends before it judges.

use harness::sockets::Proto;
use serde::Serialize;

/// Where the bytes of a send end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Queued to a socket on this machine (loopback, a veth into a receiving namespace, or
    /// through a router into one).
    LocalSocket,
    /// Dropped at transmit by a veth whose peer is down; nobody receives them.
    DroppedAtTransmit,
    /// Forwarded by a router namespace out of a dead link; never locally delivered.
    ForwardedOut,
}

/// One send's route, as far as copying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Route {
    pub proto: Proto,
    pub delivery: Delivery,
    /// Scatter-gather is on at the sending device.
    pub sender_sg: bool,
    /// SO_TIMESTAMPING asks for TX timestamps on the socket.
    pub tx_timestamps: bool,
    /// UDP: the datagram was built with MSG_MORE.
    pub corked: bool,
    /// UDP: the datagram is larger than the path MTU and is fragmented.
    pub fragmented: bool,
    /// TCP: the send is larger than one MSS (it leaves as more than one segment).
    pub beyond_mss: bool,
}

impl Route {
    pub fn new(proto: Proto, delivery: Delivery) -> Self {
        Route {
            proto,
            delivery,
            sender_sg: true,
            tx_timestamps: false,
            corked: false,
            fragmented: false,
            beyond_mss: false,
        }
    }
}

/// What the contract says the flag must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// A copy is unavoidable: COPIED must be set.
    Copied,
    /// A copy is unavoidable, but kernels are known to report code 0 for it: code 0 is a
    /// quirk to record, not a failure.
    CopiedQuirkAllowed,
    /// Nothing copies on this path: COPIED would mean an unexplained copy.
    NotCopied,
    /// The contract allows both; the answer is an observed fact.
    Either,
}

/// The expectation for `route`, and the reason, for reports.
pub fn expect(route: &Route) -> (Expect, &'static str) {
    if route.tx_timestamps {
        return (
            Expect::Copied,
            "a TX timestamp clone must not hold user pages: __skb_tstamp_tx copies them \
             (50749f2dd685; kernels without it leak, SEMANTICS B2)",
        );
    }
    match (route.delivery, route.proto) {
        (Delivery::LocalSocket, Proto::Tcp) if !route.sender_sg && route.beyond_mss => (
            Expect::CopiedQuirkAllowed,
            "delivered to a local socket, so copied; without scatter-gather, software GSO \
             copies segments beyond the MSS without clearing the zero-copy mark \
             (OBSERVED-6.18 A)",
        ),
        (Delivery::LocalSocket, _) => (
            Expect::Copied,
            "delivered to a local socket: copied before it is queued (skb_orphan_frags_rx)",
        ),
        (_, Proto::Udp) if !route.sender_sg => (
            Expect::Copied,
            "the device cannot scatter-gather: __ip_append_data copies the payload",
        ),
        (_, Proto::Udp) if route.corked => (
            Expect::Either,
            "a corked datagram is checksummed in software; current kernels copy it",
        ),
        (_, Proto::Udp) if route.fragmented => (
            Expect::Either,
            "a datagram beyond the MTU is fragmented; current kernels copy it",
        ),
        (Delivery::DroppedAtTransmit, _) => (
            Expect::NotCopied,
            "dropped at a veth whose peer is down: nothing on the path reads the bytes",
        ),
        (Delivery::ForwardedOut, _) => (
            Expect::Either,
            "forwarded and never locally delivered: copied before 6.17, not since \
             (d2527ad3a9e1 \"net: preserve MSG_ZEROCOPY with forwarding\")",
        ),
    }
}

/// How one notification's code compares with the expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Judgement {
    Holds,
    /// The kernel broke the promise.
    Violated,
    /// A known misreport, recorded.
    Quirk,
    /// No promise; the code is a fact about this kernel.
    Observed,
}

pub fn judge(expect: Expect, copied: bool) -> Judgement {
    match (expect, copied) {
        (Expect::Copied | Expect::CopiedQuirkAllowed, true) | (Expect::NotCopied, false) => {
            Judgement::Holds
        }
        (Expect::Copied, false) | (Expect::NotCopied, true) => Judgement::Violated,
        (Expect::CopiedQuirkAllowed, false) => Judgement::Quirk,
        (Expect::Either, _) => Judgement::Observed,
    }
}

/// What a merged notification reports when an uncopied and a copied completion meet in the
/// queue (R3.3), worked out from both orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MergePolicy {
    /// The entry queued first keeps its code (what 6.18 does: a COPIED flag can be lost).
    KeepsOlder,
    /// The entry queued last decides.
    KeepsNewer,
    /// COPIED if either was copied: nothing is misreported.
    Or,
    /// COPIED only if both were: a COPIED flag is always lost.
    And,
    /// At least one order was not merged, so there is nothing to classify.
    NotMerged,
}

/// Classifies the merge from the merged code of "uncopied, then copied" and of "copied, then
/// uncopied" (`None`: that order stayed two notifications).
pub fn merge_policy(uncopied_first: Option<bool>, copied_first: Option<bool>) -> MergePolicy {
    match (uncopied_first, copied_first) {
        (Some(false), Some(true)) => MergePolicy::KeepsOlder,
        (Some(true), Some(false)) => MergePolicy::KeepsNewer,
        (Some(true), Some(true)) => MergePolicy::Or,
        (Some(false), Some(false)) => MergePolicy::And,
        _ => MergePolicy::NotMerged,
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn route(proto: Proto, delivery: Delivery) -> Route {
        Route::new(proto, delivery)
    }

    #[rstest]
    #[case::tcp_local(route(Proto::Tcp, Delivery::LocalSocket), Expect::Copied)]
    #[case::udp_local(route(Proto::Udp, Delivery::LocalSocket), Expect::Copied)]
    #[case::udp_dead(route(Proto::Udp, Delivery::DroppedAtTransmit), Expect::NotCopied)]
    #[case::udp_forwarded(route(Proto::Udp, Delivery::ForwardedOut), Expect::Either)]
    #[case::udp_dead_fragmented(
        Route { fragmented: true, ..route(Proto::Udp, Delivery::DroppedAtTransmit) },
        Expect::Either
    )]
    #[case::udp_dead_corked(
        Route { corked: true, ..route(Proto::Udp, Delivery::DroppedAtTransmit) },
        Expect::Either
    )]
    #[case::udp_dead_no_sg(
        Route { sender_sg: false, ..route(Proto::Udp, Delivery::DroppedAtTransmit) },
        Expect::Copied
    )]
    #[case::udp_dead_tstamp(
        Route { tx_timestamps: true, ..route(Proto::Udp, Delivery::DroppedAtTransmit) },
        Expect::Copied
    )]
    #[case::tcp_no_sg_small(
        Route { sender_sg: false, ..route(Proto::Tcp, Delivery::LocalSocket) },
        Expect::Copied
    )]
    #[case::tcp_no_sg_big(
        Route { sender_sg: false, beyond_mss: true, ..route(Proto::Tcp, Delivery::LocalSocket) },
        Expect::CopiedQuirkAllowed
    )]
    fn truth_table(#[case] r: Route, #[case] want: Expect) {
        assert_eq!(expect(&r).0, want);
    }

    #[rstest]
    #[case(Expect::Copied, true, Judgement::Holds)]
    #[case(Expect::Copied, false, Judgement::Violated)]
    #[case(Expect::NotCopied, false, Judgement::Holds)]
    #[case(Expect::NotCopied, true, Judgement::Violated)]
    #[case(Expect::CopiedQuirkAllowed, true, Judgement::Holds)]
    #[case(Expect::CopiedQuirkAllowed, false, Judgement::Quirk)]
    #[case(Expect::Either, true, Judgement::Observed)]
    #[case(Expect::Either, false, Judgement::Observed)]
    fn judgements(#[case] e: Expect, #[case] copied: bool, #[case] want: Judgement) {
        assert_eq!(judge(e, copied), want);
    }

    #[rstest]
    #[case(Some(false), Some(true), MergePolicy::KeepsOlder)]
    #[case(Some(true), Some(false), MergePolicy::KeepsNewer)]
    #[case(Some(true), Some(true), MergePolicy::Or)]
    #[case(Some(false), Some(false), MergePolicy::And)]
    #[case(None, Some(true), MergePolicy::NotMerged)]
    fn merge_policies(
        #[case] uncopied_first: Option<bool>,
        #[case] copied_first: Option<bool>,
        #[case] want: MergePolicy,
    ) {
        assert_eq!(merge_policy(uncopied_first, copied_first), want);
    }
}
