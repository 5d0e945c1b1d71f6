//! The two-completion protocol of io_uring zero-copy sends (SEMANTICS.md R8.2, R8.3).
//!
//! A zero-copy request (`SEND_ZC`, `SENDMSG_ZC`) first completes with `res` = bytes sent or
//! `-errno`; if that CQE carries `F_MORE`, exactly one notification CQE follows with the same
//! `user_data`, `F_NOTIF` set and `F_MORE` clear, whose `res` is 0, or with `REPORT_USAGE`
//! either 0 (zero-copied) or `IORING_NOTIF_USAGE_ZC_COPIED`. A first CQE without `F_MORE` is
//! the request's last word. An ordinary send completes once, never with `F_MORE`.
//! Notifications may arrive in any order relative to other requests, but never before their
//! own request's first CQE.
//!
//! The checker reads the CQEs in the order the ring posted them and says which promise, if
//! any, the stream breaks. With `complete`, everything must have arrived; without it,
//! requests may still be in flight.
//!
//! The rule holds on every ring kind, for every request form and flag, and on error paths
//! too: the rule is "a notification if and only if the first CQE carried `F_MORE`, exactly
//! once", not "never `F_MORE` on an error". A request cancelled before it ran (a linked
//! timeout, `IORING_OP_ASYNC_CANCEL`, a failed link) is a first CQE like any other.
//!
//! Chains (`IOSQE_IO_LINK`) add one promise, checked by [`check_chain`]: once a member fails,
//! every later member completes with `-ECANCELED` without being run.

use std::collections::HashMap;
use std::fmt;

use harness::sys::uring::{Cqe, CQE_F_MORE, CQE_F_NOTIF, NOTIF_USAGE_ZC_COPIED};
use serde::Serialize;

/// What kind of request the suite submitted under a `user_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Kind {
    ZeroCopy {
        report_usage: bool,
    },
    /// A request that completes once and never with `F_MORE`: an ordinary send, a timeout,
    /// a linked timeout, a cancellation.
    Plain,
}

/// One submitted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Issued {
    pub user_data: u64,
    pub kind: Kind,
}

/// A way a CQE stream breaks the protocol. `index` is the CQE's position in the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "violation", rename_all = "snake_case")]
pub enum Violation {
    /// A CQE for a `user_data` no request used.
    UnknownRequest { index: usize, user_data: u64 },
    /// A second non-notification CQE for one request.
    DuplicateCompletion { index: usize, user_data: u64 },
    /// `F_MORE` on the completion of an ordinary send.
    MoreOnPlainSend { index: usize, user_data: u64 },
    /// A notification that also carries `F_MORE`.
    MoreOnNotification {
        index: usize,
        user_data: u64,
        flags: u32,
    },
    /// A notification with flags besides `F_NOTIF` (checked after `F_MORE`).
    NotificationFlags {
        index: usize,
        user_data: u64,
        flags: u32,
    },
    /// A notification before its request's first CQE.
    NotificationBeforeCompletion { index: usize, user_data: u64 },
    /// A notification for a request whose first CQE did not announce one (no `F_MORE`),
    /// or for an ordinary send.
    UnannouncedNotification { index: usize, user_data: u64 },
    /// A second notification for one request.
    DuplicateNotification { index: usize, user_data: u64 },
    /// A notification `res` the request's flags do not allow.
    BadNotificationResult {
        index: usize,
        user_data: u64,
        res: i32,
        report_usage: bool,
    },
    /// (complete streams) a request never completed.
    MissingCompletion { user_data: u64 },
    /// (complete streams) a first CQE announced a notification that never came.
    MissingNotification { user_data: u64 },
    /// A chain member after a failed one was not cancelled.
    LinkNotCancelled {
        user_data: u64,
        res: i32,
        failed: u64,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Violation::*;
        match self {
            UnknownRequest { index, user_data } => {
                write!(f, "CQE #{index} names user_data {user_data}, which no request used")
            }
            DuplicateCompletion { index, user_data } => write!(
                f,
                "CQE #{index}: request {user_data} completed a second time"
            ),
            MoreOnPlainSend { index, user_data } => write!(
                f,
                "CQE #{index}: the single-completion request {user_data} (an ordinary send, \
                 a timeout or a cancellation) completed with F_MORE"
            ),
            MoreOnNotification {
                index,
                user_data,
                flags,
            } => write!(
                f,
                "CQE #{index}: the notification of {user_data} carries F_MORE (flags {flags:#x})"
            ),
            NotificationFlags {
                index,
                user_data,
                flags,
            } => write!(
                f,
                "CQE #{index}: the notification of {user_data} has flags {flags:#x}, only \
                 F_NOTIF ({CQE_F_NOTIF:#x}) is allowed"
            ),
            NotificationBeforeCompletion { index, user_data } => write!(
                f,
                "CQE #{index}: the notification of {user_data} came before its first completion"
            ),
            UnannouncedNotification { index, user_data } => write!(
                f,
                "CQE #{index}: a notification for {user_data}, whose completion did not carry F_MORE"
            ),
            DuplicateNotification { index, user_data } => write!(
                f,
                "CQE #{index}: a second notification for {user_data}"
            ),
            BadNotificationResult {
                index,
                user_data,
                res,
                report_usage,
            } => write!(
                f,
                "CQE #{index}: the notification of {user_data} has res {res:#x}, allowed: 0{}",
                if *report_usage {
                    " or ZC_COPIED (0x80000000)"
                } else {
                    " (REPORT_USAGE was not asked for)"
                }
            ),
            MissingCompletion { user_data } => {
                write!(f, "request {user_data} never completed")
            }
            MissingNotification { user_data } => write!(
                f,
                "request {user_data} completed with F_MORE but its notification never came"
            ),
            LinkNotCancelled {
                user_data,
                res,
                failed,
            } => write!(
                f,
                "request {user_data} is linked behind the failed request {failed} yet \
                 completed with {res}, not -ECANCELED"
            ),
        }
    }
}

/// What the stream said about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RequestOutcome {
    pub kind: Kind,
    /// `res` of the first CQE, once it came.
    pub res: Option<i32>,
    /// Whether that first CQE carried `F_MORE`.
    pub more: bool,
    /// `res` of the notification, once it came.
    pub notif: Option<i32>,
}

impl RequestOutcome {
    /// Whether the request expects no further CQE.
    pub fn finished(&self) -> bool {
        self.res.is_some() && (!self.more || self.notif.is_some())
    }

    /// With `REPORT_USAGE`: `Some(true)` when the notification said COPIED.
    pub fn copied(&self) -> Option<bool> {
        match (self.kind, self.notif) {
            (Kind::ZeroCopy { report_usage: true }, Some(res)) => {
                Some(res as u32 == NOTIF_USAGE_ZC_COPIED)
            }
            _ => None,
        }
    }
}

/// Counts over an accepted stream, for `observed` facts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub requests: u32,
    pub notifications: u32,
    /// Notifications that overtook the notification of a request announced before theirs.
    pub out_of_order: u32,
    /// Zero-copy first CQEs without `F_MORE` (no notification announced).
    pub zc_without_more: u32,
    pub copied: u32,
    pub zero_copied: u32,
}

/// The per-request outcomes of an accepted stream, in `user_data` order of submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub outcomes: HashMap<u64, RequestOutcome>,
    pub stats: Stats,
}

/// Checks `cqes` (in posting order) against the requests in `issued`.
pub fn check(issued: &[Issued], cqes: &[Cqe], complete: bool) -> Result<Accepted, Violation> {
    let mut outcomes: HashMap<u64, RequestOutcome> = issued
        .iter()
        .map(|i| {
            (
                i.user_data,
                RequestOutcome {
                    kind: i.kind,
                    res: None,
                    more: false,
                    notif: None,
                },
            )
        })
        .collect();
    let mut stats = Stats {
        requests: issued.len() as u32,
        ..Stats::default()
    };
    // Order in which notifications were announced (first CQEs with F_MORE).
    let mut announced: Vec<u64> = Vec::new();
    for (index, c) in cqes.iter().enumerate() {
        let user_data = c.user_data;
        let Some(o) = outcomes.get_mut(&user_data) else {
            return Err(Violation::UnknownRequest { index, user_data });
        };
        if c.flags & CQE_F_NOTIF != 0 {
            if c.flags & CQE_F_MORE != 0 {
                return Err(Violation::MoreOnNotification {
                    index,
                    user_data,
                    flags: c.flags,
                });
            }
            if c.flags != CQE_F_NOTIF {
                return Err(Violation::NotificationFlags {
                    index,
                    user_data,
                    flags: c.flags,
                });
            }
            if o.res.is_none() {
                return Err(Violation::NotificationBeforeCompletion { index, user_data });
            }
            if !o.more {
                return Err(Violation::UnannouncedNotification { index, user_data });
            }
            if o.notif.is_some() {
                return Err(Violation::DuplicateNotification { index, user_data });
            }
            let report_usage = matches!(o.kind, Kind::ZeroCopy { report_usage: true });
            let allowed = c.res == 0 || (report_usage && c.res as u32 == NOTIF_USAGE_ZC_COPIED);
            if !allowed {
                return Err(Violation::BadNotificationResult {
                    index,
                    user_data,
                    res: c.res,
                    report_usage,
                });
            }
            o.notif = Some(c.res);
            let copied = o.copied();
            stats.notifications += 1;
            match copied {
                Some(true) => stats.copied += 1,
                Some(false) => stats.zero_copied += 1,
                None => {}
            }
            // Overtaking: an earlier-announced notification is still outstanding.
            let overtakes = announced
                .iter()
                .take_while(|&&u| u != user_data)
                .any(|u| outcomes.get(u).is_some_and(|e| e.notif.is_none()));
            if overtakes {
                stats.out_of_order += 1;
            }
        } else {
            if o.res.is_some() {
                return Err(Violation::DuplicateCompletion { index, user_data });
            }
            let more = c.flags & CQE_F_MORE != 0;
            match o.kind {
                Kind::Plain if more => return Err(Violation::MoreOnPlainSend { index, user_data }),
                Kind::ZeroCopy { .. } if !more => stats.zc_without_more += 1,
                _ => {}
            }
            o.res = Some(c.res);
            o.more = more;
            if more {
                announced.push(user_data);
            }
        }
    }
    if complete {
        for i in issued {
            let o = &outcomes[&i.user_data];
            if o.res.is_none() {
                return Err(Violation::MissingCompletion {
                    user_data: i.user_data,
                });
            }
            if o.more && o.notif.is_none() {
                return Err(Violation::MissingNotification {
                    user_data: i.user_data,
                });
            }
        }
    }
    Ok(Accepted { outcomes, stats })
}

/// One member of an `IOSQE_IO_LINK` chain, in chain order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainMember {
    pub user_data: u64,
    /// `res` of its first CQE.
    pub res: i32,
    /// Whether that result breaks the chain: an error, or with `MSG_WAITALL` fewer bytes
    /// than asked (a short send without `MSG_WAITALL` does not break it).
    pub breaks: bool,
}

/// Checks that every member after the first breaking one completed with `-ECANCELED`.
pub fn check_chain(members: &[ChainMember]) -> Result<(), Violation> {
    let Some(first) = members.iter().position(|m| m.breaks) else {
        return Ok(());
    };
    for m in &members[first + 1..] {
        if m.res != -libc::ECANCELED {
            return Err(Violation::LinkNotCancelled {
                user_data: m.user_data,
                res: m.res,
                failed: members[first].user_data,
            });
        }
    }
    Ok(())
}

/// How many CQEs `issued` still owes after `cqes`, counting a notification only once its
/// request's first CQE announced it (before that, one CQE is owed).
pub fn owed(issued: &[Issued], cqes: &[Cqe]) -> usize {
    let mut first: HashMap<u64, bool> = HashMap::new();
    let mut notifs: HashMap<u64, u32> = HashMap::new();
    for c in cqes {
        if c.flags & CQE_F_NOTIF != 0 {
            *notifs.entry(c.user_data).or_default() += 1;
        } else {
            first
                .entry(c.user_data)
                .or_insert(c.flags & CQE_F_MORE != 0);
        }
    }
    issued
        .iter()
        .map(|i| match first.get(&i.user_data) {
            None => 1,
            Some(true) if notifs.get(&i.user_data).copied().unwrap_or(0) == 0 => 1,
            Some(_) => 0,
        })
        .sum()
}

/// `#3:41 M`, `#3:n C`: a stream as evidence lines show it (M: F_MORE, n: notification,
/// C: ZC_COPIED).
pub fn show(cqes: &[Cqe]) -> String {
    if cqes.is_empty() {
        return "(none)".into();
    }
    cqes.iter()
        .map(|c| {
            if c.flags & CQE_F_NOTIF != 0 {
                let usage = if c.res as u32 == NOTIF_USAGE_ZC_COPIED {
                    " C".to_string()
                } else if c.res != 0 {
                    format!(" res={:#x}", c.res)
                } else {
                    String::new()
                };
                let more = if c.flags & CQE_F_MORE != 0 { " M" } else { "" };
                format!("#{}:n{usage}{more}", c.user_data)
            } else {
                let more = if c.flags & CQE_F_MORE != 0 { " M" } else { "" };
                format!("#{}:{}{more}", c.user_data, c.res)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rstest::rstest;

    use super::*;

    const ZC: Kind = Kind::ZeroCopy {
        report_usage: false,
    };
    const ZC_USAGE: Kind = Kind::ZeroCopy { report_usage: true };
    const COPIED: i32 = NOTIF_USAGE_ZC_COPIED as i32;

    fn first(user_data: u64, res: i32) -> Cqe {
        Cqe {
            user_data,
            res,
            flags: CQE_F_MORE,
        }
    }
    fn only(user_data: u64, res: i32) -> Cqe {
        Cqe {
            user_data,
            res,
            flags: 0,
        }
    }
    fn notif(user_data: u64, res: i32) -> Cqe {
        Cqe {
            user_data,
            res,
            flags: CQE_F_NOTIF,
        }
    }
    fn issued(kinds: &[Kind]) -> Vec<Issued> {
        kinds
            .iter()
            .enumerate()
            .map(|(i, k)| Issued {
                user_data: i as u64 + 1,
                kind: *k,
            })
            .collect()
    }

    #[test]
    fn the_observed_stream_is_accepted() {
        // 6.18: F_MORE on every first CQE, then the notifications, in order.
        let req = issued(&[ZC, ZC, Kind::Plain]);
        let cqes = [
            first(1, 100),
            first(2, 200),
            only(3, 50),
            notif(1, 0),
            notif(2, 0),
        ];
        let a = check(&req, &cqes, true).unwrap();
        assert_eq!(a.stats.notifications, 2);
        assert_eq!(a.stats.out_of_order, 0);
        assert_eq!(owed(&req, &cqes), 0);
    }

    #[test]
    fn notifications_may_overtake_other_requests() {
        let req = issued(&[ZC, ZC]);
        let cqes = [first(1, 10), first(2, 10), notif(2, 0), notif(1, 0)];
        let a = check(&req, &cqes, true).unwrap();
        assert_eq!(a.stats.out_of_order, 1);
    }

    #[test]
    fn an_error_with_more_still_gets_its_notification() {
        let req = issued(&[ZC_USAGE]);
        let cqes = [first(1, -libc::EOPNOTSUPP), notif(1, COPIED)];
        let a = check(&req, &cqes, true).unwrap();
        assert_eq!(a.outcomes[&1].copied(), Some(true));
    }

    #[test]
    fn a_single_cqe_without_more_is_final() {
        // IOSQE_CQE_SKIP_SUCCESS refused at prep: one CQE, nothing after.
        let req = issued(&[ZC]);
        let a = check(&req, &[only(1, -libc::EINVAL)], true).unwrap();
        assert_eq!(a.stats.zc_without_more, 1);
    }

    #[test]
    fn in_flight_requests_are_fine_until_complete() {
        let req = issued(&[ZC, ZC]);
        let cqes = [first(1, 10)];
        check(&req, &cqes, false).unwrap();
        assert_eq!(owed(&req, &cqes), 2);
    }

    #[rstest]
    #[case::missing_notification(
        vec![ZC], vec![first(1, 10)],
        Violation::MissingNotification { user_data: 1 })]
    #[case::missing_completion(
        vec![ZC, ZC], vec![first(1, 10), notif(1, 0)],
        Violation::MissingCompletion { user_data: 2 })]
    #[case::duplicate_notification(
        vec![ZC], vec![first(1, 10), notif(1, 0), notif(1, 0)],
        Violation::DuplicateNotification { index: 2, user_data: 1 })]
    #[case::duplicate_completion(
        vec![ZC], vec![first(1, 10), first(1, 10), notif(1, 0)],
        Violation::DuplicateCompletion { index: 1, user_data: 1 })]
    #[case::more_on_notification(
        vec![ZC], vec![first(1, 10), Cqe { user_data: 1, res: 0, flags: CQE_F_NOTIF | CQE_F_MORE }],
        Violation::MoreOnNotification { index: 1, user_data: 1, flags: CQE_F_NOTIF | CQE_F_MORE })]
    #[case::notification_with_other_flags(
        vec![ZC], vec![first(1, 10), Cqe { user_data: 1, res: 0, flags: CQE_F_NOTIF | 1 }],
        Violation::NotificationFlags { index: 1, user_data: 1, flags: CQE_F_NOTIF | 1 })]
    #[case::notification_before_its_request(
        vec![ZC, ZC], vec![first(1, 10), notif(2, 0), first(2, 10)],
        Violation::NotificationBeforeCompletion { index: 1, user_data: 2 })]
    #[case::unannounced_notification(
        vec![ZC], vec![only(1, 10), notif(1, 0)],
        Violation::UnannouncedNotification { index: 1, user_data: 1 })]
    #[case::notification_for_a_plain_send(
        vec![Kind::Plain], vec![only(1, 10), notif(1, 0)],
        Violation::UnannouncedNotification { index: 1, user_data: 1 })]
    #[case::more_on_a_plain_send(
        vec![Kind::Plain], vec![first(1, 10)],
        Violation::MoreOnPlainSend { index: 0, user_data: 1 })]
    #[case::unknown_user_data(
        vec![ZC], vec![first(7, 10)],
        Violation::UnknownRequest { index: 0, user_data: 7 })]
    #[case::notification_after_a_cancelled_request_without_more(
        vec![ZC], vec![only(1, -libc::ECANCELED), notif(1, 0)],
        Violation::UnannouncedNotification { index: 1, user_data: 1 })]
    #[case::notification_without_more_after_an_error(
        vec![ZC], vec![only(1, -libc::EFAULT), notif(1, 0)],
        Violation::UnannouncedNotification { index: 1, user_data: 1 })]
    #[case::two_notifications_after_a_cancelled_request(
        vec![ZC], vec![first(1, -libc::ECANCELED), notif(1, 0), notif(1, 0)],
        Violation::DuplicateNotification { index: 2, user_data: 1 })]
    #[case::cancelled_request_with_more_but_no_notification(
        vec![ZC, Kind::Plain], vec![first(1, -libc::ECANCELED), only(2, -libc::ETIME)],
        Violation::MissingNotification { user_data: 1 })]
    #[case::linked_timeout_with_more(
        vec![ZC, Kind::Plain], vec![first(1, 10), first(2, -libc::ECANCELED), notif(1, 0)],
        Violation::MoreOnPlainSend { index: 1, user_data: 2 })]
    #[case::notification_for_a_timeout(
        vec![ZC, Kind::Plain], vec![first(1, 10), notif(1, 0), only(2, -libc::ETIME), notif(2, 0)],
        Violation::UnannouncedNotification { index: 3, user_data: 2 })]
    #[case::copied_without_report_usage(
        vec![ZC], vec![first(1, 10), notif(1, COPIED)],
        Violation::BadNotificationResult { index: 1, user_data: 1, res: COPIED, report_usage: false })]
    #[case::garbage_usage(
        vec![ZC_USAGE], vec![first(1, 10), notif(1, 1)],
        Violation::BadNotificationResult { index: 1, user_data: 1, res: 1, report_usage: true })]
    fn wrong_streams_are_rejected(
        #[case] kinds: Vec<Kind>,
        #[case] cqes: Vec<Cqe>,
        #[case] want: Violation,
    ) {
        assert_eq!(check(&issued(&kinds), &cqes, true), Err(want));
    }

    #[test]
    fn a_cancelled_request_keeps_the_rule_both_ways() {
        // With F_MORE: one notification follows; without: nothing.
        let req = issued(&[ZC, ZC]);
        let cqes = [
            first(1, -libc::ECANCELED),
            only(2, -libc::ECANCELED),
            notif(1, 0),
        ];
        let a = check(&req, &cqes, true).unwrap();
        assert_eq!(a.stats.zc_without_more, 1);
        assert_eq!(a.stats.notifications, 1);
    }

    /// uring.link.failed_head as 6.18 and 7.3 answer it (6.1 the same, reordered): the
    /// cancelled links complete without F_MORE and are still notified. The model must keep
    /// refusing it.
    #[test]
    fn a_notification_after_a_cancelled_link_without_more_is_refused() {
        let req = issued(&[ZC, ZC, ZC]);
        let cqes = [
            first(1, -libc::EFAULT),
            notif(1, 0),
            only(2, -libc::ECANCELED),
            only(3, -libc::ECANCELED),
            notif(2, 0),
            notif(3, 0),
        ];
        assert_eq!(
            check(&req, &cqes, true).unwrap_err(),
            Violation::UnannouncedNotification {
                index: 4,
                user_data: 2
            }
        );
    }

    fn member(user_data: u64, res: i32, breaks: bool) -> ChainMember {
        ChainMember {
            user_data,
            res,
            breaks,
        }
    }

    #[test]
    fn a_chain_after_a_failure_is_cancelled() {
        let ok = [
            member(1, 100, false),
            member(2, -libc::EFAULT, true),
            member(3, -libc::ECANCELED, true),
            member(4, -libc::ECANCELED, true),
        ];
        assert_eq!(check_chain(&ok), Ok(()));
        let healthy = [member(1, 100, false), member(2, 50, false)];
        assert_eq!(check_chain(&healthy), Ok(()));
    }

    #[test]
    fn a_chain_member_that_ran_after_a_failure_is_caught() {
        let bad = [
            member(1, -libc::EFAULT, true),
            member(2, -libc::ECANCELED, true),
            member(3, 100, false),
        ];
        assert_eq!(
            check_chain(&bad),
            Err(Violation::LinkNotCancelled {
                user_data: 3,
                res: 100,
                failed: 1
            })
        );
    }

    /// A valid stream for `kinds`: each request's first CQE in submission order, each
    /// notification somewhere after its own first CQE (positions from `slots`).
    fn valid_stream(kinds: &[Kind], slots: &[usize], copied: &[bool]) -> Vec<Cqe> {
        let mut out: Vec<Cqe> = Vec::new();
        let mut pending: Vec<Cqe> = Vec::new();
        for (i, k) in kinds.iter().enumerate() {
            let ud = i as u64 + 1;
            match k {
                Kind::Plain => out.push(only(ud, 1)),
                Kind::ZeroCopy { report_usage } => {
                    out.push(first(ud, 1));
                    let res = if *report_usage && copied[i % copied.len()] {
                        COPIED
                    } else {
                        0
                    };
                    pending.push(notif(ud, res));
                }
            }
            // Release some pending notifications, in an arbitrary order.
            while !pending.is_empty() && slots[(i + pending.len()) % slots.len()].is_multiple_of(3)
            {
                let pick = slots[i % slots.len()] % pending.len();
                out.push(pending.remove(pick));
            }
        }
        while !pending.is_empty() {
            let pick = slots[pending.len() % slots.len()] % pending.len();
            out.push(pending.remove(pick));
        }
        out
    }

    fn kind() -> impl Strategy<Value = Kind> {
        prop_oneof![
            Just(Kind::Plain),
            any::<bool>().prop_map(|report_usage| Kind::ZeroCopy { report_usage }),
        ]
    }

    proptest! {
        #[test]
        fn valid_streams_are_accepted(
            kinds in proptest::collection::vec(kind(), 1..24),
            slots in proptest::collection::vec(0usize..64, 1..16),
            copied in proptest::collection::vec(any::<bool>(), 1..8),
        ) {
            let req = issued(&kinds);
            let cqes = valid_stream(&kinds, &slots, &copied);
            prop_assert!(check(&req, &cqes, true).is_ok(), "{}", show(&cqes));
            prop_assert_eq!(owed(&req, &cqes), 0);
        }

        #[test]
        fn dropping_or_repeating_a_notification_is_caught(
            kinds in proptest::collection::vec(kind(), 1..24),
            slots in proptest::collection::vec(0usize..64, 1..16),
            pick in any::<prop::sample::Index>(),
            repeat in any::<bool>(),
        ) {
            let req = issued(&kinds);
            let mut cqes = valid_stream(&kinds, &slots, &[true]);
            let notifs: Vec<usize> = (0..cqes.len()).filter(|&i| cqes[i].notif()).collect();
            prop_assume!(!notifs.is_empty());
            let at = notifs[pick.index(notifs.len())];
            if repeat {
                let c = cqes[at];
                cqes.push(c);
            } else {
                cqes.remove(at);
            }
            prop_assert!(check(&req, &cqes, true).is_err(), "{}", show(&cqes));
        }
    }
}
