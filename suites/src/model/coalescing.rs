//! The reference state machine of one MSG_ZEROCOPY socket (SEMANTICS.md R2.3–R2.8, R3).
//!
//! The property in `send::coalescing` drives a real socket through random operations and
//! hands every step to this model: a send and what the kernel answered, a drain and the
//! notifications it read, a shutdown. The model keeps the state the contract talks about
//! (how many ids were handed out, whether a UDP datagram is corked, whether the socket was
//! shut down) and says after every step whether the kernel's answer is one the contract
//! allows:
//!
//! * a send takes exactly one id when it sends something and none when it fails; a
//!   zero-length TCP send takes none; a zero-length UDP send takes one on every kernel seen
//!   so far, against the documentation (R2.4), so the suite observes the kernel's answer
//!   once and then holds the kernel to it;
//! * after `shutdown(SHUT_WR)` every send fails with EPIPE and takes no id, so no
//!   notification may name an id past the shutdown;
//! * after every drain: every range names only ids handed out so far, runs forwards (u32
//!   wrap allowed), covers fewer than 2^32 ids, and shares no id with another range (a
//!   duplicate, or a merge across an id that is reported again later);
//! * at the end: every id handed out was reported, exactly once.
//!
//! Out-of-order notifications are allowed (R3.2) and only counted. A merged range is by
//! construction a run of adjacent ids; a merge that jumped over an id still in flight shows
//! up as an overlap when that id's own notification arrives.
//!
//! [`Mutation`] makes the model deliberately wrong, so the suite can show that the kernel
//! refutes a wrong model and that each rule is load-bearing.

use std::fmt;

use harness::sockets::Proto;
use harness::sys::errqueue::Completion;
use serde::Serialize;

use super::completions::{check, Coalescing, IdWindow, Violation};

/// The largest UDP payload of one IPv4 datagram (65535 - 20 - 8). IPv6 allows 20 bytes more;
/// the property never sends more than this on either family.
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// What this kernel does where the contract leaves room, observed before the property runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Behaviour {
    /// R2.4: a zero-length UDP send takes an id (and completes).
    pub zero_length_udp_takes_id: bool,
}

impl Behaviour {
    /// For sequences without a zero-length UDP send, where the rule never applies.
    pub const NO_EMPTY_UDP_SENDS: Behaviour = Behaviour {
        zero_length_udp_takes_id: false,
    };
}

/// Whether every completion on the path must carry the COPIED code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyRule {
    /// Every byte is copied on this path (local delivery: loopback, a veth into a receiving
    /// namespace), so every notification, merged or not, says COPIED (R4, R3.3).
    Always,
    /// The path mixes copied and zero-copied sends; the code is only counted.
    Unknown,
}

/// Deliberate errors in the model, for the proofs that the property can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mutation {
    /// Believes the opposite of the observed zero-length UDP rule (the documentation's rule,
    /// on kernels that take an id).
    FlipZeroLengthUdp,
    /// Believes every call takes an id: zero-length TCP sends and failed sends included.
    EveryCallTakesAnId,
    /// Believes a corked UDP datagram takes one id however many appends built it.
    CorkedDatagramTakesOneId,
    /// Accepts ids that are never reported (the gap rule switched off).
    AllowGaps,
}

/// One send call as the property made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SendCall {
    pub len: usize,
    /// MSG_MORE (UDP cork).
    pub more: bool,
}

/// A way the kernel's answers leave the contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Deviation {
    /// The ids of the notifications break R2/R3.
    Ids(Violation),
    /// A range of 2^32 ids: merges stop below that (R3.2, `skb_zerocopy_notify_extend`).
    TooLong { index: usize, lo: u32, hi: u32 },
    /// A notification names an id past the shutdown, when no send could succeed.
    AfterShutdown { index: usize, lo: u32, hi: u32 },
    /// A path that always copies reported a notification without COPIED.
    NotCopied { index: usize, lo: u32, hi: u32 },
    /// A send succeeded after `shutdown(SHUT_WR)`.
    SentAfterShutdown { len: usize, sent: usize },
    /// A send failed with an errno the contract does not explain in this state.
    UnexpectedError { len: usize, errno: i32 },
    /// A datagram was sent in part, or a send claims more bytes than it was given, or a
    /// non-empty send returned 0.
    BadCount { len: usize, sent: usize },
}

impl fmt::Display for Deviation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Deviation::Ids(v) => v.fmt(f),
            Deviation::TooLong { index, lo, hi } => write!(
                f,
                "notification #{index} [{lo}, {hi}] covers 2^32 ids; merges stop below that"
            ),
            Deviation::AfterShutdown { index, lo, hi } => write!(
                f,
                "notification #{index} [{lo}, {hi}] names ids past the shutdown"
            ),
            Deviation::NotCopied { index, lo, hi } => write!(
                f,
                "notification #{index} [{lo}, {hi}] lacks COPIED on a path that always copies"
            ),
            Deviation::SentAfterShutdown { len, sent } => write!(
                f,
                "a {len}-byte send after shutdown(SHUT_WR) sent {sent} bytes instead of EPIPE"
            ),
            Deviation::UnexpectedError { len, errno } => write!(
                f,
                "a {len}-byte send failed with {}",
                crate::probes::errno_name(*errno)
            ),
            Deviation::BadCount { len, sent } => {
                write!(f, "a {len}-byte send returned {sent}")
            }
        }
    }
}

/// The model of one socket's ids.
#[derive(Debug, Clone)]
pub struct IdModel {
    proto: Proto,
    behaviour: Behaviour,
    copy_rule: CopyRule,
    mutation: Option<Mutation>,
    start: u32,
    issued: u64,
    shut_at: Option<u64>,
    corked: bool,
    reported: Vec<Completion>,
}

impl IdModel {
    /// A fresh socket: its first id is 0.
    pub fn new(proto: Proto, behaviour: Behaviour, copy_rule: CopyRule) -> Self {
        IdModel {
            proto,
            behaviour,
            copy_rule,
            mutation: None,
            start: 0,
            issued: 0,
            shut_at: None,
            corked: false,
            reported: Vec::new(),
        }
    }

    pub fn with_mutation(mut self, mutation: Option<Mutation>) -> Self {
        self.mutation = mutation;
        self
    }

    /// A socket whose next id is `start` (for tests near the u32 wrap).
    pub fn starting_at(mut self, start: u32) -> Self {
        self.start = start;
        self
    }

    /// Ids handed out so far.
    pub fn issued(&self) -> u64 {
        self.issued
    }

    /// Ids reported so far.
    pub fn covered(&self) -> u64 {
        self.reported
            .iter()
            .map(|c| c.hi.wrapping_sub(c.lo) as u64 + 1)
            .sum()
    }

    /// A UDP datagram is being built with MSG_MORE and has not been sent yet.
    pub fn corked(&self) -> bool {
        self.corked
    }

    pub fn reported(&self) -> &[Completion] {
        &self.reported
    }

    /// A send was made and the kernel answered `result` (bytes sent, or an errno).
    pub fn send(&mut self, call: SendCall, result: Result<usize, i32>) -> Result<(), Deviation> {
        let takes = self.takes_id(call, result)?;
        if takes {
            self.issued += 1;
        }
        if self.proto == Proto::Udp {
            // A failed append discards the whole corked datagram (udp_flush_pending_frames);
            // its earlier appends keep their ids.
            let append = self.corked;
            self.corked = result.is_ok() && call.more;
            if takes
                && append
                && self.mutation == Some(Mutation::CorkedDatagramTakesOneId)
                && result.is_ok()
            {
                self.issued -= 1;
            }
        }
        if result.is_err() && self.mutation == Some(Mutation::EveryCallTakesAnId) {
            // The naive counter: one id per call, whatever the call did.
            self.issued += 1;
        }
        Ok(())
    }

    fn takes_id(&self, call: SendCall, result: Result<usize, i32>) -> Result<bool, Deviation> {
        if self.shut_at.is_some() {
            return match result {
                // tcp_sendmsg_locked charges the zero-copy state (optmem, locked memory)
                // before it looks at the socket state, so a limit can answer first.
                Err(libc::EPIPE) | Err(libc::ENOBUFS) => Ok(false),
                Ok(sent) => Err(Deviation::SentAfterShutdown {
                    len: call.len,
                    sent,
                }),
                Err(errno) => Err(Deviation::UnexpectedError {
                    len: call.len,
                    errno,
                }),
            };
        }
        match result {
            Ok(sent) if sent > call.len => Err(Deviation::BadCount {
                len: call.len,
                sent,
            }),
            Ok(0) if call.len == 0 => Ok(match self.proto {
                Proto::Tcp => self.mutation == Some(Mutation::EveryCallTakesAnId),
                // Only the first part of a datagram carries the UDP header, the bytes that
                // make an empty payload count (R2.4); an empty append to a corked datagram
                // adds nothing.
                Proto::Udp if self.corked => false,
                Proto::Udp => {
                    self.behaviour.zero_length_udp_takes_id
                        != (self.mutation == Some(Mutation::FlipZeroLengthUdp))
                }
            }),
            Ok(0) => Err(Deviation::BadCount {
                len: call.len,
                sent: 0,
            }),
            Ok(sent) if self.proto == Proto::Udp && sent != call.len => Err(Deviation::BadCount {
                len: call.len,
                sent,
            }),
            Ok(_) => Ok(true),
            Err(errno) if self.explains(call, errno) => Ok(false),
            Err(errno) => Err(Deviation::UnexpectedError {
                len: call.len,
                errno,
            }),
        }
    }

    /// Errors a send may meet in the middle of a sequence without anything being wrong: a
    /// full send buffer, option memory or locked memory exhausted (R5), and for UDP a
    /// datagram that outgrew 64 KiB or the fragment limit while corked (OBSERVED B).
    fn explains(&self, call: SendCall, errno: i32) -> bool {
        match errno {
            libc::EAGAIN | libc::ENOBUFS => true,
            libc::EMSGSIZE => {
                self.proto == Proto::Udp && (call.more || self.corked || call.len > MAX_UDP_PAYLOAD)
            }
            _ => false,
        }
    }

    /// `shutdown(SHUT_WR)` on a TCP socket: from now on sends fail with EPIPE.
    pub fn shutdown(&mut self) {
        self.shut_at.get_or_insert(self.issued);
    }

    fn window(&self) -> IdWindow {
        IdWindow::new(self.start, self.issued)
    }

    /// Notifications read by one drain, in arrival order. Checks everything that can be
    /// checked while ids may still be in flight.
    pub fn observe(&mut self, completions: &[Completion]) -> Result<(), Deviation> {
        for c in completions {
            let index = self.reported.len();
            let (lo, hi) = (c.lo, c.hi);
            if hi.wrapping_add(1) == lo {
                return Err(Deviation::TooLong { index, lo, hi });
            }
            if let Some(shut) = self.shut_at {
                let past = |id: u32| id.wrapping_sub(self.start) as u64 >= shut;
                if past(lo) || past(hi) {
                    return Err(Deviation::AfterShutdown { index, lo, hi });
                }
            }
            if self.copy_rule == CopyRule::Always && !c.copied {
                return Err(Deviation::NotCopied { index, lo, hi });
            }
            self.reported.push(*c);
        }
        check(self.window(), &self.reported, false).map_err(Deviation::Ids)?;
        Ok(())
    }

    /// Once everything has had time to complete: every id reported exactly once.
    pub fn finish(&self) -> Result<Coalescing, Deviation> {
        let complete = self.mutation != Some(Mutation::AllowGaps);
        check(self.window(), &self.reported, complete).map_err(Deviation::Ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OBSERVED: Behaviour = Behaviour {
        zero_length_udp_takes_id: true,
    };

    fn c(lo: u32, hi: u32) -> Completion {
        Completion {
            lo,
            hi,
            copied: true,
        }
    }

    fn send(len: usize) -> SendCall {
        SendCall { len, more: false }
    }

    fn more(len: usize) -> SendCall {
        SendCall { len, more: true }
    }

    fn tcp() -> IdModel {
        IdModel::new(Proto::Tcp, OBSERVED, CopyRule::Unknown)
    }

    fn udp() -> IdModel {
        IdModel::new(Proto::Udp, OBSERVED, CopyRule::Unknown)
    }

    #[test]
    fn one_id_per_successful_call_and_none_for_failures() {
        let mut m = tcp();
        m.send(send(100), Ok(100)).unwrap();
        m.send(send(1 << 20), Ok(4096)).unwrap(); // partial: one id (R2.5)
        m.send(send(100), Err(libc::EAGAIN)).unwrap();
        m.send(send(100), Err(libc::ENOBUFS)).unwrap();
        m.send(send(0), Ok(0)).unwrap(); // zero-length TCP: no id (R2.3)
        assert_eq!(m.issued(), 2);
        m.observe(&[c(0, 1)]).unwrap();
        assert_eq!(m.finish().unwrap().ids, 2);
    }

    #[test]
    fn after_shutdown_a_limit_may_answer_before_the_state() {
        let mut m = tcp();
        m.send(send(100), Ok(100)).unwrap();
        m.shutdown();
        m.send(send(8 << 20), Err(libc::ENOBUFS)).unwrap();
        assert!(m.send(send(100), Err(libc::EAGAIN)).is_err());
        assert_eq!(m.issued(), 1);
    }

    #[test]
    fn zero_length_udp_follows_the_observed_behaviour() {
        let mut m = udp();
        m.send(send(0), Ok(0)).unwrap();
        assert_eq!(m.issued(), 1);
        let mut doc = IdModel::new(
            Proto::Udp,
            Behaviour {
                zero_length_udp_takes_id: false,
            },
            CopyRule::Unknown,
        );
        doc.send(send(0), Ok(0)).unwrap();
        assert_eq!(doc.issued(), 0);
    }

    #[test]
    fn an_empty_append_to_a_corked_datagram_takes_no_id() {
        let mut m = udp();
        m.send(more(0), Ok(0)).unwrap(); // starts a datagram: the header counts
        m.send(more(0), Ok(0)).unwrap();
        m.send(send(0), Ok(0)).unwrap();
        assert_eq!(m.issued(), 1);
    }

    #[test]
    fn corked_appends_each_take_an_id_and_a_failed_append_uncorks() {
        let mut m = udp();
        m.send(more(10), Ok(10)).unwrap();
        assert!(m.corked());
        m.send(more(10), Ok(10)).unwrap();
        m.send(more(60_000), Err(libc::EMSGSIZE)).unwrap();
        assert!(!m.corked());
        assert_eq!(m.issued(), 2);
        m.observe(&[c(0, 1)]).unwrap();
        m.finish().unwrap();
    }

    #[test]
    fn rejects_unexplained_errors_and_short_datagrams() {
        let mut m = udp();
        assert_eq!(
            m.send(send(100), Err(libc::EMSGSIZE)),
            Err(Deviation::UnexpectedError {
                len: 100,
                errno: libc::EMSGSIZE
            })
        );
        assert_eq!(
            m.send(send(100), Ok(50)),
            Err(Deviation::BadCount { len: 100, sent: 50 })
        );
        let mut t = tcp();
        assert!(matches!(
            t.send(send(100), Err(libc::EPIPE)),
            Err(Deviation::UnexpectedError { .. })
        ));
        assert!(matches!(
            t.send(send(100), Ok(101)),
            Err(Deviation::BadCount { .. })
        ));
        assert!(matches!(
            t.send(send(100), Ok(0)),
            Err(Deviation::BadCount { .. })
        ));
    }

    #[test]
    fn after_shutdown_sends_fail_with_epipe_and_take_no_id() {
        let mut m = tcp();
        m.send(send(10), Ok(10)).unwrap();
        m.shutdown();
        m.send(send(10), Err(libc::EPIPE)).unwrap();
        assert_eq!(m.issued(), 1);
        assert!(matches!(
            m.send(send(10), Ok(10)),
            Err(Deviation::SentAfterShutdown { .. })
        ));
        m.observe(&[c(0, 0)]).unwrap();
        m.finish().unwrap();
    }

    #[test]
    fn a_notification_past_the_shutdown_is_named() {
        let mut m = tcp();
        m.send(send(10), Ok(10)).unwrap();
        m.shutdown();
        assert!(matches!(
            m.observe(&[c(0, 1)]),
            Err(Deviation::AfterShutdown { .. })
        ));
    }

    #[test]
    fn checks_after_every_drain_and_completeness_only_at_the_end() {
        let mut m = tcp();
        for _ in 0..4 {
            m.send(send(1), Ok(1)).unwrap();
        }
        m.observe(&[c(2, 3)]).unwrap(); // out of order, 0 and 1 in flight
        assert!(matches!(
            m.finish(),
            Err(Deviation::Ids(Violation::Gap { .. }))
        ));
        m.observe(&[c(0, 1)]).unwrap();
        let stats = m.finish().unwrap();
        assert_eq!((stats.notifications, stats.out_of_order), (2, 1));
        assert!(matches!(
            m.observe(&[c(1, 1)]),
            Err(Deviation::Ids(Violation::Overlap { .. }))
        ));
    }

    #[test]
    fn a_merge_over_an_id_reported_again_is_an_overlap() {
        // [0,2] claims id 1 completed inside the merge; its own notification later
        // proves the merge spanned an id still in flight.
        let mut m = tcp();
        for _ in 0..3 {
            m.send(send(1), Ok(1)).unwrap();
        }
        m.observe(&[c(0, 2)]).unwrap();
        assert!(matches!(
            m.observe(&[c(1, 1)]),
            Err(Deviation::Ids(Violation::Overlap { .. }))
        ));
    }

    #[test]
    fn ids_not_yet_handed_out_are_outside_the_window() {
        let mut m = tcp();
        m.send(send(1), Ok(1)).unwrap();
        assert!(matches!(
            m.observe(&[c(0, 1)]),
            Err(Deviation::Ids(Violation::OutsideWindow { .. }))
        ));
    }

    #[test]
    fn wraps_across_u32_and_refuses_a_range_of_2_pow_32_ids() {
        let mut m = tcp().starting_at(u32::MAX - 1);
        for _ in 0..4 {
            m.send(send(1), Ok(1)).unwrap();
        }
        m.observe(&[c(u32::MAX - 1, 0), c(1, 1)]).unwrap();
        assert_eq!(m.finish().unwrap().ids, 4);
        // [7, 6] would be every id of the u32 space: no merge may grow that far.
        let mut big = tcp().starting_at(7);
        assert!(matches!(
            big.observe(&[c(7, 6)]),
            Err(Deviation::TooLong { .. })
        ));
    }

    #[test]
    fn an_always_copy_path_refuses_a_code_0_notification() {
        let mut m = IdModel::new(Proto::Tcp, OBSERVED, CopyRule::Always);
        m.send(send(1), Ok(1)).unwrap();
        let zero = Completion {
            lo: 0,
            hi: 0,
            copied: false,
        };
        assert!(matches!(
            m.observe(&[zero]),
            Err(Deviation::NotCopied { .. })
        ));
    }

    /// Each mutation makes the model accept or expect something the real model does not:
    /// the kernel-driven proofs live in `send::coalescing` (selftest cases).
    #[test]
    fn mutations_change_the_verdict_on_the_same_stream() {
        // A lost notification: the real model names the gap, the gap-tolerant one does not.
        let lost = |mutation| {
            let mut m = tcp().with_mutation(mutation);
            for _ in 0..3 {
                m.send(send(1), Ok(1)).unwrap();
            }
            m.observe(&[c(0, 0), c(2, 2)]).unwrap();
            m.finish()
        };
        assert!(matches!(
            lost(None),
            Err(Deviation::Ids(Violation::Gap { .. }))
        ));
        assert!(lost(Some(Mutation::AllowGaps)).is_ok());

        // A zero-length UDP send, as the kernel answers it (one id, reported).
        let empty_udp = |mutation| {
            let mut m = udp().with_mutation(mutation);
            m.send(send(0), Ok(0)).unwrap();
            m.send(send(5), Ok(5)).unwrap();
            m.observe(&[c(0, 1)])?;
            m.finish()
        };
        assert!(empty_udp(None).is_ok());
        assert!(empty_udp(Some(Mutation::FlipZeroLengthUdp)).is_err());

        // A zero-length TCP send, as the kernel answers it (no id).
        let empty_tcp = |mutation| {
            let mut m = tcp().with_mutation(mutation);
            m.send(send(0), Ok(0)).unwrap();
            m.send(send(5), Ok(5)).unwrap();
            m.observe(&[c(0, 0)])?;
            m.finish()
        };
        assert!(empty_tcp(None).is_ok());
        assert!(empty_tcp(Some(Mutation::EveryCallTakesAnId)).is_err());

        // Two corked appends and the datagram's last part: three ids.
        let cork = |mutation| {
            let mut m = udp().with_mutation(mutation);
            m.send(more(5), Ok(5)).unwrap();
            m.send(more(5), Ok(5)).unwrap();
            m.send(send(5), Ok(5)).unwrap();
            m.observe(&[c(0, 2)])?;
            m.finish()
        };
        assert!(cork(None).is_ok());
        assert!(cork(Some(Mutation::CorkedDatagramTakesOneId)).is_err());
    }
}
