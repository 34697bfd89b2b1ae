//! `repetitions = "auto"`: repeat a configuration until its figures are tight, or a maximum.
//!
//! After every repetition from the `min`-th on, each point of the configuration (each load
//! level; with a rate search, the knee: every repetition's highest passing level) gets the 95%
//! percentile-bootstrap interval ([`results::stats::median_ci`], the one the summary shows) of its median p50
//! and of its median throughput over the repetitions so far. The configuration stops when both
//! intervals of every point span at most `ci_width` of their median ([`RepetitionOutcome::
//! Converged`]), or after `max` repetitions ([`RepetitionOutcome::MaxReached`]). A point with
//! fewer than two figures (no completions, a search that found no passing level) has no
//! interval, so it never counts as tight.
//!
//! With few repetitions the bootstrap interval is about [min, max] of the figures, so the rule
//! then asks that the whole spread seen be within `ci_width`: strict, never optimistic.

use results::stats::{median, median_ci};
use results::{Interval, PointInterval, RepetitionOutcome};

/// The confidence of the intervals.
pub const CONFIDENCE: f64 = 0.95;

/// When to stop repeating a configuration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RepetitionRule {
    /// At least this many repetitions (at least 2: one figure has no interval).
    pub min: u32,
    /// At most this many.
    pub max: u32,
    /// Stop once every interval spans at most this share of its median.
    pub ci_width: f64,
}

/// One point's figures over the repetitions so far.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Samples {
    /// The load level, or `None` for a search's knee.
    pub level: Option<f64>,
    /// Each repetition's p50 (µs).
    pub p50_us: Vec<f64>,
    /// Each repetition's throughput (ops/s).
    pub throughput_ops: Vec<f64>,
}

/// Whether to run another repetition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Run another.
    Continue,
    /// Stop, for this reason.
    Stop(RepetitionOutcome),
}

impl RepetitionRule {
    /// Every point's intervals.
    pub fn intervals(samples: &[Samples]) -> Vec<PointInterval> {
        samples
            .iter()
            .map(|s| PointInterval {
                level: s.level,
                n: finite(&s.p50_us).min(finite(&s.throughput_ops)),
                p50_us: interval(&s.p50_us),
                throughput_ops: interval(&s.throughput_ops),
            })
            .collect()
    }

    /// The decision after `done` repetitions whose points have these intervals.
    pub fn decide(&self, done: u32, points: &[PointInterval]) -> Decision {
        if done < self.min {
            return Decision::Continue;
        }
        if !points.is_empty() && points.iter().all(|p| p.within(self.ci_width)) {
            return Decision::Stop(RepetitionOutcome::Converged);
        }
        if done >= self.max {
            return Decision::Stop(RepetitionOutcome::MaxReached);
        }
        Decision::Continue
    }
}

fn finite(values: &[f64]) -> usize {
    values.iter().filter(|x| x.is_finite()).count()
}

/// The bootstrap interval of the median of `values`; `None` with fewer than two finite ones.
fn interval(values: &[f64]) -> Option<Interval> {
    let (lo, hi) = median_ci(values, CONFIDENCE)?;
    Some(Interval {
        median: median(values)?,
        lo,
        hi,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: RepetitionRule = RepetitionRule {
        min: 3,
        max: 6,
        ci_width: 0.10,
    };

    fn samples(p50: &[f64], tput: &[f64]) -> Samples {
        Samples {
            level: Some(1000.0),
            p50_us: p50.to_vec(),
            throughput_ops: tput.to_vec(),
        }
    }

    fn decide(done: u32, points: &[Samples]) -> Decision {
        RULE.decide(done, &RepetitionRule::intervals(points))
    }

    #[test]
    fn tight_figures_stop_at_the_minimum_and_not_before() {
        let tight = samples(&[500.0, 510.0, 505.0], &[1000.0, 998.0, 1001.0]);
        assert_eq!(
            decide(2, std::slice::from_ref(&tight)),
            Decision::Continue,
            "below min"
        );
        assert_eq!(
            decide(3, &[tight]),
            Decision::Stop(RepetitionOutcome::Converged)
        );
    }

    #[test]
    fn one_wide_figure_of_one_point_keeps_repeating_until_the_maximum() {
        let tight = samples(&[500.0, 510.0, 505.0], &[1000.0, 998.0, 1001.0]);
        // p50 spread 500..700: an interval about 40% of the median.
        let wide_p50 = samples(&[500.0, 700.0, 600.0], &[2000.0, 2001.0, 1999.0]);
        assert_eq!(
            decide(3, &[tight.clone(), wide_p50.clone()]),
            Decision::Continue
        );
        let wide_tput = samples(&[500.0, 501.0, 502.0], &[1000.0, 1500.0, 1200.0]);
        assert_eq!(decide(4, &[tight.clone(), wide_tput]), Decision::Continue);
        assert_eq!(
            decide(6, &[tight, wide_p50]),
            Decision::Stop(RepetitionOutcome::MaxReached)
        );
    }

    #[test]
    fn more_repetitions_can_tighten_the_interval() {
        // One outlier among three makes the interval span it; among seven tight figures the
        // resampled medians rarely reach it.
        let mut p50 = vec![500.0, 505.0, 650.0];
        let tput = vec![1000.0; 7];
        let points = RepetitionRule::intervals(&[samples(&p50, &tput[..3])]);
        assert!(!points[0].within(0.10), "{points:?}");
        p50.extend([502.0, 498.0, 503.0, 501.0]);
        let points = RepetitionRule::intervals(&[samples(&p50, &tput)]);
        assert!(points[0].within(0.10), "{points:?}");
        assert_eq!(points[0].n, 7);
    }

    #[test]
    fn a_point_without_figures_never_counts_as_tight() {
        let tight = samples(&[500.0, 510.0, 505.0], &[1000.0, 998.0, 1001.0]);
        let empty = samples(&[f64::NAN, f64::NAN, 500.0], &[0.0, 0.0, 10.0]);
        let points = RepetitionRule::intervals(&[tight, empty]);
        assert!(points[1].p50_us.is_none(), "one finite p50 has no interval");
        assert_eq!(RULE.decide(4, &points), Decision::Continue);
        assert_eq!(
            RULE.decide(6, &points),
            Decision::Stop(RepetitionOutcome::MaxReached)
        );
        // No points at all (every search found nothing): the maximum, never "converged".
        assert_eq!(
            RULE.decide(6, &[]),
            Decision::Stop(RepetitionOutcome::MaxReached)
        );
        assert_eq!(RULE.decide(3, &[]), Decision::Continue);
    }
}
