//! Statistics of repeated measurements: the median, the spread around it, and a rank test of
//! whether one set of repetitions is smaller than another.
//!
//! Repetitions on a shared machine are few and their noise is not normal (a preempted run is
//! much slower, never much faster), so everything here is rank- or order-based: the median
//! rather than the mean, min/max and the median absolute deviation rather than a standard
//! deviation, and an exact Mann-Whitney test rather than a t-test.

use serde::{Deserialize, Serialize};

/// The median of `xs` (the mean of the two middle values for an even count). `None` when
/// empty or when a value is not a number.
pub fn median(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() || xs.iter().any(|x| x.is_nan()) {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The median absolute deviation from the median.
pub fn mad(xs: &[f64]) -> Option<f64> {
    let m = median(xs)?;
    let dev: Vec<f64> = xs.iter().map(|x| (x - m).abs()).collect();
    median(&dev)
}

/// What a set of repetitions of one measurement says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Median absolute deviation.
    pub mad: f64,
    /// (max - min) / median: how far apart the repetitions were, relative to the median.
    pub spread: f64,
    pub n: usize,
}

impl Summary {
    /// `None` for no samples (or a NaN among them).
    pub fn of(xs: &[f64]) -> Option<Summary> {
        let median = median(xs)?;
        let min = xs.iter().copied().fold(f64::INFINITY, f64::min);
        let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let spread = if median != 0.0 {
            (max - min) / median.abs()
        } else {
            0.0
        };
        Some(Summary {
            median,
            min,
            max,
            mad: mad(xs)?,
            spread,
            n: xs.len(),
        })
    }

    /// Whether `x` lies within this summary's range of repetitions.
    pub fn covers(&self, x: f64) -> bool {
        self.min <= x && x <= self.max
    }
}

/// The Mann-Whitney U statistic of `a` against `b`: the number of pairs (x from a, y from b)
/// with x < y, ties counting one half.
pub fn u_statistic(a: &[f64], b: &[f64]) -> f64 {
    let mut u = 0.0;
    for x in a {
        for y in b {
            if x < y {
                u += 1.0;
            } else if x == y {
                u += 0.5;
            }
        }
    }
    u
}

/// For sample sizes `n` and `m`, the number of arrangements of the pooled ranks that give
/// each U value 0..=n·m (the exact null distribution, without ties).
fn u_counts(n: usize, m: usize) -> Vec<f64> {
    // counts[i][j][u]: arrangements of i values of one sample and j of the other with U = u,
    // built by placing the largest value last: it is from the first sample (adds j pairs
    // where it is larger, so none to U of "first smaller") or from the second (adds i).
    let mut prev: Vec<Vec<f64>> = vec![vec![1.0]; m + 1];
    for i in 1..=n {
        let mut cur: Vec<Vec<f64>> = Vec::with_capacity(m + 1);
        cur.push(vec![1.0]);
        for j in 1..=m {
            let mut c = vec![0.0; i * j + 1];
            // Largest from the first sample: U unchanged.
            for (u, v) in prev[j].iter().enumerate() {
                c[u] += v;
            }
            // Largest from the second sample: each of the i first-sample values is smaller.
            for (u, v) in cur[j - 1].iter().enumerate() {
                c[u + i] += v;
            }
            cur.push(c);
        }
        prev = cur;
    }
    prev.pop().expect("m + 1 rows")
}

/// One-sided exact p-value that `a` tends to be smaller than `b` (Mann-Whitney). Ties are
/// handled conservatively (the half counts are rounded towards "less extreme"). Samples
/// larger than 12 use the normal approximation. Returns 1 for an empty sample.
pub fn p_smaller(a: &[f64], b: &[f64]) -> f64 {
    let (n, m) = (a.len(), b.len());
    if n == 0 || m == 0 {
        return 1.0;
    }
    let u = u_statistic(a, b);
    if n <= 12 && m <= 12 {
        let counts = u_counts(n, m);
        let total: f64 = counts.iter().sum();
        let at_least = u.floor() as usize;
        let tail: f64 = counts[at_least.min(counts.len() - 1)..].iter().sum();
        return (tail / total).min(1.0);
    }
    let (nf, mf) = (n as f64, m as f64);
    let mean = nf * mf / 2.0;
    let sd = (nf * mf * (nf + mf + 1.0) / 12.0).sqrt();
    let z = (u - 0.5 - mean) / sd;
    1.0 - normal_cdf(z)
}

/// The smallest one-sided p-value an exact test of samples of these sizes can reach.
pub fn best_possible_p(n: usize, m: usize) -> f64 {
    if n == 0 || m == 0 {
        return 1.0;
    }
    let counts = u_counts(n.min(12), m.min(12));
    1.0 / counts.iter().sum::<f64>()
}

fn normal_cdf(z: f64) -> f64 {
    0.5 * (1.0 + erf(z / std::f64::consts::SQRT_2))
}

/// Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7), enough for a p-value.
fn erf(x: f64) -> f64 {
    let sign = if x < 0.0 { -1.0 } else { 1.0 };
    let x = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    sign * (1.0 - poly * (-x * x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn an_outlier_moves_neither_the_median_nor_the_mad() {
        let calm = [10.0, 11.0, 9.0, 10.0, 10.5];
        let preempted = [10.0, 11.0, 9.0, 10.0, 500.0];
        assert_eq!(median(&calm), median(&preempted));
        assert_eq!(mad(&calm), Some(0.5));
        assert_eq!(mad(&preempted), Some(1.0));
    }

    #[test]
    fn spread_is_range_over_median() {
        let s = Summary::of(&[8.0, 10.0, 12.0]).unwrap();
        assert_eq!(s.median, 10.0);
        assert_eq!((s.min, s.max), (8.0, 12.0));
        assert!((s.spread - 0.4).abs() < 1e-12);
        assert!(s.covers(9.0) && !s.covers(12.5));
        assert_eq!(s.n, 3);
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn u_counts_are_the_binomial_coefficient() {
        // C(10, 5) = 252 arrangements of two samples of five.
        let c = u_counts(5, 5);
        assert_eq!(c.len(), 26);
        assert_eq!(c.iter().sum::<f64>(), 252.0);
        assert_eq!(c[0], 1.0);
        assert_eq!(c[25], 1.0);
        // Symmetric.
        for u in 0..=25 {
            assert_eq!(c[u], c[25 - u]);
        }
        assert_eq!(u_counts(3, 2).iter().sum::<f64>(), 10.0);
    }

    #[test]
    fn complete_separation_gives_the_smallest_p() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        let b = [6.0, 7.0, 8.0, 9.0, 10.0];
        assert!((p_smaller(&a, &b) - 1.0 / 252.0).abs() < 1e-12);
        assert!((best_possible_p(5, 5) - 1.0 / 252.0).abs() < 1e-12);
        // The other direction is as unlikely as can be.
        assert!((p_smaller(&b, &a) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn interleaved_samples_are_not_significant() {
        let a = [1.0, 3.0, 5.0, 7.0, 9.0];
        let b = [2.0, 4.0, 6.0, 8.0, 10.0];
        let p = p_smaller(&a, &b);
        assert!(p > 0.2 && p < 0.6, "{p}");
    }

    #[test]
    fn identical_samples_are_not_significant() {
        let a = [5.0; 5];
        assert!(p_smaller(&a, &a) > 0.4);
    }

    #[test]
    fn three_against_three_cannot_beat_one_in_twenty() {
        assert!((best_possible_p(3, 3) - 0.05).abs() < 1e-12);
    }

    #[test]
    fn large_samples_use_the_normal_approximation_sensibly() {
        let a: Vec<f64> = (0..20).map(|i| i as f64).collect();
        let b: Vec<f64> = (0..20).map(|i| i as f64 + 30.0).collect();
        assert!(p_smaller(&a, &b) < 1e-6);
        assert!(p_smaller(&b, &a) > 0.999);
        assert!((erf(0.0)).abs() < 1e-7);
        assert!((normal_cdf(1.96) - 0.975).abs() < 1e-3);
    }
}
