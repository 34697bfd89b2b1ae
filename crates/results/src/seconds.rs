//! What each second of a point's measured window looked like, from its interval log
//! (`hist/<point_id>.hlog`: one histogram per second, requests filed by their intended send
//! time): how steady the point was inside one repetition.
//!
//! - Per-second throughput: an interval's completions over its length (the last interval of a
//!   window that is not a whole number of seconds is shorter). A second whose requests all
//!   failed or timed out counts, as 0 ops/s.
//! - Per-second p50 and p99: each interval's own percentiles. A second with no completion has
//!   none and is left out of those two series (so they can be shorter than the first).
//!
//! [`Spread`] sums such a series up as its median and nearest-rank p5–p95.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;

use crate::hist::read_timed_intervals;
use crate::stats::{median, percentile};

/// The per-second figures of one point, in the order of its intervals.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Seconds {
    /// Completions per second of each interval (ops/s).
    pub throughput_ops: Vec<f64>,
    /// The p50 of each interval with a completion (µs).
    pub p50_us: Vec<f64>,
    /// The p99 of each interval with a completion (µs).
    pub p99_us: Vec<f64>,
}

impl Seconds {
    /// The figures of `intervals` (each with its length). An interval of length zero with no
    /// completion is skipped; one with completions is an error, as its rate means nothing.
    pub fn of(intervals: &[(Duration, Histogram<u64>)]) -> Result<Seconds> {
        let mut s = Seconds::default();
        for (i, (length, h)) in intervals.iter().enumerate() {
            if length.is_zero() {
                if !h.is_empty() {
                    bail!("interval {i} has length 0 but {} completions", h.len());
                }
                continue;
            }
            s.throughput_ops.push(h.len() as f64 / length.as_secs_f64());
            if !h.is_empty() {
                s.p50_us.push(h.value_at_quantile(0.5) as f64);
                s.p99_us.push(h.value_at_quantile(0.99) as f64);
            }
        }
        Ok(s)
    }

    /// The figures of the interval log at `path`, or `None` when there is no such file.
    pub fn read(path: &Path) -> Result<Option<Seconds>> {
        if !path.exists() {
            return Ok(None);
        }
        let intervals = read_timed_intervals(path)?;
        Seconds::of(&intervals)
            .with_context(|| path.display().to_string())
            .map(Some)
    }

    /// The spread of the per-second throughput, `None` without intervals.
    pub fn throughput_spread(&self) -> Option<Spread> {
        Spread::of(&self.throughput_ops)
    }

    /// The spread of the per-second p99, `None` when no second had a completion.
    pub fn p99_spread(&self) -> Option<Spread> {
        Spread::of(&self.p99_us)
    }
}

/// A series (of seconds) summed up: its median and its nearest-rank 5th and 95th percentiles,
/// which are values of the series (with fewer than 20 values, its min and max).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// The median (the mean of the middle two for an even count).
    pub median: f64,
    /// The nearest-rank 5th percentile.
    pub p5: f64,
    /// The nearest-rank 95th percentile.
    pub p95: f64,
    /// How many values.
    pub n: usize,
}

impl Spread {
    /// The spread of the finite `values`, `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Spread> {
        Some(Spread {
            median: median(values)?,
            p5: percentile(values, 0.05)?,
            p95: percentile(values, 0.95)?,
            n: values.iter().filter(|x| x.is_finite()).count(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A histogram of `n` latencies 1..=n µs.
    fn latencies(n: u64) -> Histogram<u64> {
        let mut h = Histogram::<u64>::new(3).unwrap();
        for v in 1..=n {
            h.record(v).unwrap();
        }
        h
    }

    #[test]
    fn throughput_is_completions_over_the_interval_length_and_latency_skips_empty_seconds() {
        let second = Duration::from_secs(1);
        let intervals = vec![
            (second, latencies(1000)),
            (second, Histogram::new(3).unwrap()),
            (Duration::from_millis(500), latencies(200)),
        ];
        let s = Seconds::of(&intervals).unwrap();
        // 1000 in 1 s, nothing, 200 in half a second.
        assert_eq!(s.throughput_ops, [1000.0, 0.0, 400.0]);
        // 1..=1000 µs: p50 500, p99 990; 1..=200 µs: p50 100, p99 198 (3 digits are exact here).
        assert_eq!(s.p50_us, [500.0, 100.0]);
        assert_eq!(s.p99_us, [990.0, 198.0]);
        let t = s.throughput_spread().unwrap();
        assert_eq!((t.median, t.p5, t.p95, t.n), (400.0, 0.0, 1000.0, 3));
        assert_eq!(s.p99_spread().unwrap().median, (990.0 + 198.0) / 2.0);
    }

    #[test]
    fn an_interval_of_no_length_with_completions_is_an_error() {
        let empty = (Duration::ZERO, Histogram::<u64>::new(3).unwrap());
        assert_eq!(Seconds::of(&[empty]).unwrap(), Seconds::default());
        let err = Seconds::of(&[(Duration::ZERO, latencies(5))]).unwrap_err();
        assert_eq!(err.to_string(), "interval 0 has length 0 but 5 completions");
    }

    #[test]
    fn a_spread_of_twenty_seconds_drops_one_at_the_top() {
        let v: Vec<f64> = (1..=20).map(|i| f64::from(i) * 10.0).collect();
        let s = Spread::of(&v).unwrap();
        // Nearest rank: ceil(0.05 * 20) = 1st, ceil(0.95 * 20) = 19th.
        assert_eq!((s.median, s.p5, s.p95, s.n), (105.0, 10.0, 190.0, 20));
        assert!(Spread::of(&[]).is_none());
    }

    #[test]
    fn a_missing_log_is_none_and_a_bad_one_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Seconds::read(&dir.path().join("p0.hlog")).unwrap(), None);
        let bad = dir.path().join("p1.hlog");
        std::fs::write(&bad, "not a log\n").unwrap();
        let err = format!("{:#}", Seconds::read(&bad).unwrap_err());
        assert!(err.contains("p1.hlog"), "{err}");
    }
}
