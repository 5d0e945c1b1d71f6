//! The crossover: the smallest message size from which a zero-copy mode costs less CPU per
//! byte than its copy baseline, and how sure the measurement is of it.
//!
//! At each size the repetitions of the mode and of its baseline are compared with a one-sided
//! rank test in both directions: the mode is `cheaper`, `dearer`, or neither (`tie`: the
//! repetitions overlap too much to tell). The crossover is the smallest size where the mode
//! is cheaper and from which it is never dearer again. "No crossover" is a finding in its
//! own right and says why: dearer (or no different) at every size, or cheaper somewhere but
//! dearer again at a larger size.

use serde::{Deserialize, Serialize};

use super::stats::{median, p_smaller};

/// The significance a difference at one size needs (one-sided).
pub const ALPHA: f64 = 0.05;

/// How the mode compares with its baseline at one size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Cheaper,
    Dearer,
    Tie,
}

/// The comparison at one size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub size: u64,
    pub verdict: Verdict,
    /// Median cost of the mode over the median cost of the baseline (below 1: cheaper).
    pub ratio: f64,
    /// One-sided p-value of "the mode is cheaper".
    pub p_cheaper: f64,
    /// One-sided p-value of "the mode is dearer".
    pub p_dearer: f64,
}

/// How much to trust a crossover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// Significantly cheaper at the crossover (p < 0.01) and at every larger size.
    High,
    /// Significantly cheaper at the crossover and at every larger size (p < ALPHA).
    Medium,
    /// Cheaper at the crossover, but some larger sizes could not be told apart.
    Low,
}

/// The finding for one mode on one path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "finding", rename_all = "snake_case")]
pub enum Crossover {
    /// From `size` on, the mode costs less CPU per byte than its baseline. The true
    /// crossover lies above `below` (the next smaller size measured, where it was not yet
    /// cheaper) and at most `size`.
    At {
        size: u64,
        below: Option<u64>,
        confidence: Confidence,
        p_value: f64,
        /// The mode's cost over the baseline's at the largest size measured.
        ratio_at_largest: f64,
    },
    /// The mode is never cheaper from some size on: `why` says how.
    None { why: String },
    /// No comparison was made: `why` says why (TCG timings, a mode that did not run).
    NotCompared { why: String },
}

impl Crossover {
    /// A one-line description for tables.
    pub fn describe(&self) -> String {
        match self {
            Crossover::At {
                size,
                below,
                confidence,
                p_value,
                ratio_at_largest,
            } => {
                let range = match below {
                    Some(b) => format!("{} < x <= {}", human_size(*b), human_size(*size)),
                    None => format!("at or below {}", human_size(*size)),
                };
                format!(
                    "{} ({range}; confidence {}, p = {:.3}; {:.0}% of the baseline's cost at the largest size)",
                    human_size(*size),
                    match confidence {
                        Confidence::High => "high",
                        Confidence::Medium => "medium",
                        Confidence::Low => "low",
                    },
                    p_value,
                    ratio_at_largest * 100.0
                )
            }
            Crossover::None { why } => format!("no crossover: {why}"),
            Crossover::NotCompared { why } => format!("not compared: {why}"),
        }
    }
}

/// `256 B`, `4 KiB`, `1 MiB`.
pub fn human_size(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} B")
    }
}

/// Compares the repetitions of a mode with those of its baseline at one size.
pub fn compare(size: u64, mode: &[f64], baseline: &[f64]) -> Option<Point> {
    let (m, b) = (median(mode)?, median(baseline)?);
    if b <= 0.0 || m < 0.0 {
        // A clock that did not advance: nothing to compare (and no NaN in the report).
        return None;
    }
    let p_cheaper = p_smaller(mode, baseline);
    let p_dearer = p_smaller(baseline, mode);
    let verdict = if p_cheaper <= ALPHA && m < b {
        Verdict::Cheaper
    } else if p_dearer <= ALPHA && m > b {
        Verdict::Dearer
    } else {
        Verdict::Tie
    };
    Some(Point {
        size,
        verdict,
        ratio: m / b,
        p_cheaper,
        p_dearer,
    })
}

/// The crossover over a series of sizes: `(size, mode repetitions, baseline repetitions)`,
/// in any order. Sizes without repetitions on either side are left out.
pub fn find(series: &[(u64, Vec<f64>, Vec<f64>)]) -> (Crossover, Vec<Point>) {
    let mut points: Vec<Point> = series
        .iter()
        .filter_map(|(size, mode, base)| compare(*size, mode, base))
        .collect();
    points.sort_by_key(|p| p.size);
    (decide(&points), points)
}

/// The crossover from per-size comparisons sorted by size.
pub fn decide(points: &[Point]) -> Crossover {
    if points.is_empty() {
        return Crossover::NotCompared {
            why: "no size was measured for both the mode and its baseline".into(),
        };
    }
    let start = (0..points.len()).find(|&i| {
        points[i].verdict == Verdict::Cheaper
            && points[i..].iter().all(|p| p.verdict != Verdict::Dearer)
    });
    if let Some(i) = start {
        let rest = &points[i..];
        let all_cheaper = rest.iter().all(|p| p.verdict == Verdict::Cheaper);
        let confidence = if all_cheaper && points[i].p_cheaper < 0.01 {
            Confidence::High
        } else if all_cheaper {
            Confidence::Medium
        } else {
            Confidence::Low
        };
        return Crossover::At {
            size: points[i].size,
            below: i.checked_sub(1).map(|j| points[j].size),
            confidence,
            p_value: points[i].p_cheaper,
            ratio_at_largest: points.last().expect("non-empty").ratio,
        };
    }
    let sizes = |v: Verdict| -> Vec<String> {
        points
            .iter()
            .filter(|p| p.verdict == v)
            .map(|p| human_size(p.size))
            .collect()
    };
    let (cheaper, dearer) = (sizes(Verdict::Cheaper), sizes(Verdict::Dearer));
    let range = format!(
        "{} to {}",
        human_size(points[0].size),
        human_size(points[points.len() - 1].size)
    );
    let why = if !cheaper.is_empty() {
        // Some size was cheaper, and a larger one dearer (else it would be a crossover).
        let first_cheaper = points
            .iter()
            .find(|p| p.verdict == Verdict::Cheaper)
            .map_or(0, |p| p.size);
        let dearer_above: Vec<String> = points
            .iter()
            .filter(|p| p.verdict == Verdict::Dearer && p.size > first_cheaper)
            .map(|p| human_size(p.size))
            .collect();
        format!(
            "cheaper at {} but dearer again at {}",
            cheaper.join(", "),
            dearer_above.join(", ")
        )
    } else if dearer.is_empty() {
        format!("no size from {range} where the repetitions could be told apart")
    } else if dearer.len() == points.len() {
        format!("dearer at every size from {range}")
    } else {
        format!(
            "never cheaper from {range}; dearer at {}, indistinguishable elsewhere",
            dearer.join(", ")
        )
    };
    Crossover::None { why }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZES: [u64; 6] = [256, 1024, 4096, 16384, 65536, 262144];

    /// Five repetitions around `centre`, spread by `jitter` (relative).
    fn reps(centre: f64, jitter: f64) -> Vec<f64> {
        [-1.0, -0.5, 0.0, 0.5, 1.0]
            .iter()
            .map(|k| centre * (1.0 + k * jitter))
            .collect()
    }

    /// A baseline at constant cost 1.0 per byte and a mode whose cost is `mode(size)`.
    fn series(mode: impl Fn(u64) -> f64, jitter: f64) -> Vec<(u64, Vec<f64>, Vec<f64>)> {
        SIZES
            .iter()
            .map(|&s| (s, reps(mode(s), jitter), reps(1.0, jitter)))
            .collect()
    }

    #[test]
    fn a_clean_crossover_is_found_with_high_confidence() {
        // Fixed per-call overhead: dearer when small, cheaper from 16 KiB on.
        let (c, points) = find(&series(|s| 0.5 + 6000.0 / s as f64, 0.02));
        assert_eq!(points[0].verdict, Verdict::Dearer);
        match c {
            Crossover::At {
                size,
                below,
                confidence,
                p_value,
                ratio_at_largest,
            } => {
                assert_eq!(size, 16384);
                assert_eq!(below, Some(4096));
                assert_eq!(confidence, Confidence::High);
                assert!(p_value < 0.01);
                assert!(ratio_at_largest < 0.55);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cheaper_everywhere_crosses_at_the_smallest_size() {
        let (c, _) = find(&series(|_| 0.5, 0.02));
        assert!(
            matches!(
                c,
                Crossover::At {
                    size: 256,
                    below: None,
                    ..
                }
            ),
            "{c:?}"
        );
    }

    #[test]
    fn dearer_everywhere_is_no_crossover() {
        // Loopback: the kernel copies anyway, and zero-copy adds pinning and notifications.
        let (c, _) = find(&series(|_| 1.3, 0.02));
        match c {
            Crossover::None { why } => assert!(why.contains("dearer at every size"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn noisy_overlap_is_no_crossover_not_a_false_one() {
        // The mode is 3% cheaper, but the repetitions spread by 40%: nothing can be told.
        let (c, points) = find(&series(|_| 0.97, 0.4));
        assert!(points.iter().all(|p| p.verdict == Verdict::Tie));
        match c {
            Crossover::None { why } => assert!(why.contains("told apart"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cheaper_then_dearer_again_is_no_crossover() {
        let (c, _) = find(&series(|s| if s <= 4096 { 0.5 } else { 1.5 }, 0.02));
        match c {
            Crossover::None { why } => assert_eq!(
                why,
                "cheaper at 256 B, 1 KiB, 4 KiB but dearer again at 16 KiB, 64 KiB, 256 KiB"
            ),
            other => panic!("{other:?}"),
        }
        // Only the dearer sizes above the cheaper one are named.
        let (c, _) = find(&series(
            |s| match s {
                256 => 1.5,
                1024 => 0.5,
                _ => 1.5,
            },
            0.02,
        ));
        match c {
            Crossover::None { why } => assert_eq!(
                why,
                "cheaper at 1 KiB but dearer again at 4 KiB, 16 KiB, 64 KiB, 256 KiB"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_tie_above_the_crossover_lowers_the_confidence() {
        // Cheaper from 4 KiB on, but indistinguishable at 64 KiB.
        let data: Vec<_> = SIZES
            .iter()
            .map(|&s| {
                let mode = if s < 4096 {
                    reps(1.5, 0.02)
                } else if s == 65536 {
                    reps(0.98, 0.4)
                } else {
                    reps(0.6, 0.02)
                };
                (s, mode, reps(1.0, if s == 65536 { 0.4 } else { 0.02 }))
            })
            .collect();
        let (c, _) = find(&data);
        assert!(
            matches!(
                c,
                Crossover::At {
                    size: 4096,
                    confidence: Confidence::Low,
                    ..
                }
            ),
            "{c:?}"
        );
    }

    #[test]
    fn a_single_noisy_win_among_losses_is_not_a_crossover() {
        // Dearer everywhere except one size where a lucky run made it look cheaper, followed
        // by a dearer size: the crossover must not start there.
        let data: Vec<_> = SIZES
            .iter()
            .map(|&s| {
                let mode = if s == 1024 {
                    reps(0.7, 0.02)
                } else {
                    reps(1.4, 0.02)
                };
                (s, mode, reps(1.0, 0.02))
            })
            .collect();
        assert!(matches!(find(&data).0, Crossover::None { .. }));
    }

    #[test]
    fn no_data_is_not_compared() {
        assert!(matches!(find(&[]).0, Crossover::NotCompared { .. }));
        let only_mode = vec![(256, reps(1.0, 0.1), vec![])];
        assert!(matches!(find(&only_mode).0, Crossover::NotCompared { .. }));
    }

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(human_size(256), "256 B");
        assert_eq!(human_size(4096), "4 KiB");
        assert_eq!(human_size(1 << 20), "1 MiB");
        assert_eq!(human_size(1500), "1500 B");
    }
}
