//! MSG_ZEROCOPY completion ids (SEMANTICS.md R2, R3).
//!
//! Every successful zero-copy send call takes the next id of a per-socket u32 counter. The
//! kernel reports finished ids as inclusive ranges `[lo, hi]`, merging adjacent ones, possibly
//! out of order, possibly across the u32 wrap. The checker maps each range onto offsets in the
//! window of ids the suite issued and demands: every range inside the window, none running
//! backwards, none overlapping another, and, once everything has completed, no gap.

use std::fmt;

use harness::sys::errqueue::{Completion, ExtendedErr, SO_EE_ORIGIN_ZEROCOPY};
use serde::Serialize;

/// The ids the suite expects: `count` consecutive ids from `start` (mod 2^32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IdWindow {
    pub start: u32,
    pub count: u64,
}

impl IdWindow {
    pub const MAX: u64 = 1 << 32;

    pub fn new(start: u32, count: u64) -> Self {
        assert!(count <= Self::MAX, "a window holds at most 2^32 ids");
        IdWindow { start, count }
    }

    /// Position of `id` in the window, if it is in it.
    pub fn offset(&self, id: u32) -> Option<u64> {
        let off = id.wrapping_sub(self.start) as u64;
        (off < self.count).then_some(off)
    }

    fn id_at(&self, off: u64) -> u32 {
        self.start.wrapping_add(off as u32)
    }
}

/// A way the completions break the contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Violation {
    /// A range names ids the suite never got from a successful send.
    OutsideWindow { index: usize, lo: u32, hi: u32 },
    /// `hi` comes before `lo` within the window (not a wrap-around).
    Backwards { index: usize, lo: u32, hi: u32 },
    /// Two ranges share ids (a duplicate is the same range twice).
    Overlap {
        first: usize,
        second: usize,
        lo: u32,
        hi: u32,
    },
    /// Some issued ids were never reported.
    Gap {
        missing: Vec<(u32, u32)>,
        missing_ids: u64,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::OutsideWindow { index, lo, hi } => write!(
                f,
                "notification #{index} [{lo}, {hi}] names ids that no successful send took"
            ),
            Violation::Backwards { index, lo, hi } => {
                write!(f, "notification #{index} [{lo}, {hi}] runs backwards")
            }
            Violation::Overlap {
                first,
                second,
                lo,
                hi,
            } => write!(
                f,
                "notifications #{first} and #{second} both cover ids [{lo}, {hi}]"
            ),
            Violation::Gap {
                missing,
                missing_ids,
            } => {
                let shown: Vec<String> = missing
                    .iter()
                    .take(8)
                    .map(|(a, b)| format!("[{a}, {b}]"))
                    .collect();
                write!(f, "{missing_ids} ids never reported: {}", shown.join(" "))?;
                if missing.len() > 8 {
                    write!(f, " and {} more ranges", missing.len() - 8)?;
                }
                Ok(())
            }
        }
    }
}

/// What the completions looked like, for the report's observed facts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Coalescing {
    pub notifications: usize,
    pub ids: u64,
    /// Notifications that cover more than one id.
    pub merged: usize,
    /// Largest number of ids in one notification.
    pub largest: u64,
    /// Notifications that arrived after one covering later ids.
    pub out_of_order: usize,
    /// Notifications with the COPIED code.
    pub copied: usize,
}

/// Checks `completions` (in arrival order) against `window`. With `complete`, every id of
/// the window must be covered; without, the ids may still be in flight.
pub fn check(
    window: IdWindow,
    completions: &[Completion],
    complete: bool,
) -> Result<Coalescing, Violation> {
    let mut spans = Vec::with_capacity(completions.len());
    let mut stats = Coalescing {
        notifications: completions.len(),
        ..Default::default()
    };
    let mut furthest: Option<u64> = None;
    for (index, c) in completions.iter().enumerate() {
        let (Some(a), Some(b)) = (window.offset(c.lo), window.offset(c.hi)) else {
            return Err(Violation::OutsideWindow {
                index,
                lo: c.lo,
                hi: c.hi,
            });
        };
        if b < a {
            return Err(Violation::Backwards {
                index,
                lo: c.lo,
                hi: c.hi,
            });
        }
        let len = b - a + 1;
        stats.ids += len;
        stats.largest = stats.largest.max(len);
        stats.merged += (len > 1) as usize;
        stats.copied += c.copied as usize;
        if furthest.is_some_and(|f| a < f) {
            stats.out_of_order += 1;
        }
        furthest = Some(furthest.map_or(b, |f| f.max(b)));
        spans.push((a, b, index));
    }
    spans.sort_unstable();
    for w in spans.windows(2) {
        let ((_, b1, i1), (a2, b2, i2)) = (w[0], w[1]);
        if a2 <= b1 {
            let (first, second) = (i1.min(i2), i1.max(i2));
            return Err(Violation::Overlap {
                first,
                second,
                lo: window.id_at(a2),
                hi: window.id_at(b1.min(b2)),
            });
        }
    }
    if complete {
        let mut missing = Vec::new();
        let mut next = 0u64;
        for &(a, b, _) in &spans {
            if a > next {
                missing.push((next, a - 1));
            }
            next = b + 1;
        }
        if next < window.count {
            missing.push((next, window.count - 1));
        }
        if !missing.is_empty() {
            let missing_ids = missing.iter().map(|(a, b)| b - a + 1).sum();
            let missing = missing
                .into_iter()
                .map(|(a, b)| (window.id_at(a), window.id_at(b)))
                .collect();
            return Err(Violation::Gap {
                missing,
                missing_ids,
            });
        }
    }
    Ok(stats)
}

/// A field of a zero-copy notification that is not what R2.2 promises.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MalformedField {
    pub field: &'static str,
    pub got: i64,
    pub want: i64,
}

impl fmt::Display for MalformedField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is {}, the contract says {}",
            self.field, self.got, self.want
        )
    }
}

/// Checks the fixed fields of a zero-copy `sock_extended_err`: errno 0, origin ZEROCOPY,
/// type 0, pad 0, code 0 or COPIED.
pub fn check_format(ee: &ExtendedErr) -> Result<(), MalformedField> {
    let fixed = [
        ("ee_errno", ee.errno as i64, 0),
        ("ee_origin", ee.origin as i64, SO_EE_ORIGIN_ZEROCOPY as i64),
        ("ee_type", ee.kind as i64, 0),
        ("ee_pad", ee.pad as i64, 0),
    ];
    for (field, got, want) in fixed {
        if got != want {
            return Err(MalformedField { field, got, want });
        }
    }
    if ee.code > 1 {
        return Err(MalformedField {
            field: "ee_code",
            got: ee.code as i64,
            want: 1,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn c(lo: u32, hi: u32) -> Completion {
        Completion {
            lo,
            hi,
            copied: false,
        }
    }

    #[rstest]
    #[case::one_each(vec![c(0, 0), c(1, 1), c(2, 2), c(3, 3)])]
    #[case::merged(vec![c(0, 3)])]
    #[case::out_of_order(vec![c(1, 3), c(0, 0)])]
    #[case::mixed(vec![c(0, 1), c(3, 3), c(2, 2)])]
    fn accepts_exact_covers(#[case] stream: Vec<Completion>) {
        let stats = check(IdWindow::new(0, 4), &stream, true).expect("valid stream");
        assert_eq!(stats.ids, 4);
    }

    #[test]
    fn counts_coalescing_pattern() {
        let s = check(IdWindow::new(0, 6), &[c(2, 4), c(0, 1), c(5, 5)], true).unwrap();
        assert_eq!(
            (s.notifications, s.merged, s.largest, s.out_of_order),
            (3, 2, 3, 1)
        );
    }

    #[test]
    fn rejects_a_gap() {
        let err = check(IdWindow::new(0, 4), &[c(0, 1), c(3, 3)], true).unwrap_err();
        assert_eq!(
            err,
            Violation::Gap {
                missing: vec![(2, 2)],
                missing_ids: 1
            }
        );
    }

    #[test]
    fn rejects_missing_tail() {
        let err = check(IdWindow::new(10, 4), &[c(10, 11)], true).unwrap_err();
        assert_eq!(
            err,
            Violation::Gap {
                missing: vec![(12, 13)],
                missing_ids: 2
            }
        );
    }

    #[test]
    fn incomplete_window_allows_ids_in_flight() {
        assert!(check(IdWindow::new(0, 4), &[c(0, 1)], false).is_ok());
    }

    #[test]
    fn rejects_overlap() {
        let err = check(IdWindow::new(0, 4), &[c(0, 2), c(2, 3)], true).unwrap_err();
        assert!(
            matches!(err, Violation::Overlap { lo: 2, hi: 2, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn rejects_duplicate() {
        let err = check(IdWindow::new(0, 2), &[c(0, 0), c(1, 1), c(1, 1)], true).unwrap_err();
        assert!(
            matches!(
                err,
                Violation::Overlap {
                    first: 1,
                    second: 2,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn rejects_backwards_range() {
        let err = check(IdWindow::new(0, 4), &[c(3, 1)], false).unwrap_err();
        assert_eq!(
            err,
            Violation::Backwards {
                index: 0,
                lo: 3,
                hi: 1
            }
        );
    }

    #[test]
    fn rejects_ids_never_issued() {
        let err = check(IdWindow::new(0, 2), &[c(0, 2)], false).unwrap_err();
        assert_eq!(
            err,
            Violation::OutsideWindow {
                index: 0,
                lo: 0,
                hi: 2
            }
        );
        let err = check(IdWindow::new(5, 2), &[c(4, 4)], false).unwrap_err();
        assert!(matches!(err, Violation::OutsideWindow { .. }));
    }

    #[test]
    fn empty_window_accepts_nothing_but_silence() {
        assert!(check(IdWindow::new(0, 0), &[], true).is_ok());
        assert!(check(IdWindow::new(0, 0), &[c(0, 0)], false).is_err());
    }

    #[test]
    fn handles_wrap_around() {
        let w = IdWindow::new(u32::MAX - 1, 4); // ids MAX-1, MAX, 0, 1
        let stats = check(w, &[c(u32::MAX - 1, 0), c(1, 1)], true).unwrap();
        assert_eq!(stats.ids, 4);
        // A range straddling the wrap is not "backwards"...
        assert!(check(w, &[c(u32::MAX, 1), c(u32::MAX - 1, u32::MAX - 1)], true).is_ok());
        // ...but one running from after the wrap to before it is.
        let err = check(w, &[c(1, u32::MAX - 1)], false).unwrap_err();
        assert!(matches!(err, Violation::Backwards { .. }));
        // A gap across the wrap is named with real ids.
        let err = check(w, &[c(u32::MAX - 1, u32::MAX - 1), c(1, 1)], true).unwrap_err();
        assert_eq!(
            err,
            Violation::Gap {
                missing: vec![(u32::MAX, 0)],
                missing_ids: 2
            }
        );
    }

    #[test]
    fn full_u32_window_is_one_range() {
        let w = IdWindow::new(7, IdWindow::MAX);
        let stats = check(w, &[c(7, 6)], true).unwrap();
        assert_eq!(stats.ids, IdWindow::MAX);
    }

    fn ee(errno: u32, origin: u8, kind: u8, code: u8, pad: u8) -> ExtendedErr {
        ExtendedErr {
            errno,
            origin,
            kind,
            code,
            pad,
            info: 0,
            data: 0,
        }
    }

    #[rstest]
    #[case(ee(0, 5, 0, 0, 0), None)]
    #[case(ee(0, 5, 0, 1, 0), None)]
    #[case(ee(11, 5, 0, 0, 0), Some("ee_errno"))]
    #[case(ee(0, 4, 0, 0, 0), Some("ee_origin"))]
    #[case(ee(0, 5, 1, 0, 0), Some("ee_type"))]
    #[case(ee(0, 5, 0, 2, 0), Some("ee_code"))]
    #[case(ee(0, 5, 0, 0, 9), Some("ee_pad"))]
    fn format_checker(#[case] e: ExtendedErr, #[case] bad: Option<&str>) {
        assert_eq!(check_format(&e).err().map(|m| m.field), bad);
    }
}
