//! The availability timeline: what happened in each [`TIMELINE_BUCKET`] (100 ms) of the
//! measured window, so a fault injected mid-run shows up as the buckets in which nothing
//! completed, errors piled up, or latency rose.
//!
//! Unlike the per-second interval histograms (which assign a request to the interval of its
//! *intended* send time, so every request counts once), the timeline files a completion under
//! the bucket of the instant its reply *arrived*, and a failure (an error or a timeout) under
//! the bucket of its *intended send time*: the requests that a dead leader never answered show
//! up where the service stopped, not a request timeout later. A request meant for the warm-up
//! that completes in the window is therefore in the timeline, and one completing after the
//! window is not, so the timeline's totals need not equal the summary's counts. Latencies are
//! still measured from the intended send time.
//!
//! Each bucket keeps a small latency histogram (µs, 2 significant digits, auto-resizing, so a
//! bucket costs a few KB) rather than only its percentiles, so that the timelines of several
//! generators merge exactly ([`Timeline::add`]): bucket `i` of a merged timeline is bucket `i`
//! of each generator's own window (their starts differ by as much as the generators' start
//! times do; see [`crate::LoadResult::window_start`]).
//!
//! `timeline.json` ([`Timeline::write_json`], [`Timeline::read_json`]):
//!
//! ```json
//! { "bucket_ms": 100,
//!   "buckets": [ { "completed": 812, "errors": 0, "timeouts": 0,
//!                  "p50_us": 1031, "p99_us": 2431,
//!                  "latency_us": [[1007, 3], [1031, 9], ...] }, ... ] }
//! ```
//!
//! Bucket `i` covers `[i, i + 1) × bucket_ms` from the start of the measured window.
//! `latency_us` is the histogram: each non-empty recorded value (the highest value equivalent to
//! the recorded ones at 2 significant digits) with its count; re-recording the pairs rebuilds the
//! histogram exactly. `p50_us` and `p99_us` are derived from it (`null` for an empty bucket) and
//! ignored when the file is read.

use std::path::Path;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::LoadError;

/// The width of a timeline bucket: 100 ms.
pub const TIMELINE_BUCKET: Duration = Duration::from_millis(100);

/// What happened in one [`TIMELINE_BUCKET`] of the measured window.
#[derive(Clone, Debug)]
pub struct TimelineBucket {
    /// Requests whose successful reply arrived in this bucket (in time: not timeouts).
    pub completed: u64,
    /// Requests meant to be sent in this bucket that failed (`Expired`, `Overloaded`, too many
    /// `NotLeader`).
    pub errors: u64,
    /// Requests meant to be sent in this bucket that timed out.
    pub timeouts: u64,
    /// Latencies (µs, from the intended send time) of the requests completed in this bucket;
    /// 2 significant digits.
    pub latency: Histogram<u64>,
}

impl Default for TimelineBucket {
    fn default() -> Self {
        TimelineBucket {
            completed: 0,
            errors: 0,
            timeouts: 0,
            latency: Histogram::new(2).expect("2 significant digits is valid"),
        }
    }
}

impl PartialEq for TimelineBucket {
    /// Equal counts and equal recorded latencies (histograms of different allocated size that
    /// hold the same values are equal).
    fn eq(&self, other: &Self) -> bool {
        (self.completed, self.errors, self.timeouts)
            == (other.completed, other.errors, other.timeouts)
            && recorded(&self.latency) == recorded(&other.latency)
    }
}

/// A histogram's non-empty values (highest equivalent) and their counts, in order.
fn recorded(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

impl TimelineBucket {
    /// The median latency of this bucket's completions (µs); `None` if nothing completed.
    pub fn p50_us(&self) -> Option<u64> {
        self.quantile(0.5)
    }

    /// The 99th-percentile latency of this bucket's completions (µs); `None` if nothing
    /// completed.
    pub fn p99_us(&self) -> Option<u64> {
        self.quantile(0.99)
    }

    fn quantile(&self, q: f64) -> Option<u64> {
        (!self.latency.is_empty()).then(|| self.latency.value_at_quantile(q))
    }

    /// Adds `other`'s counts and latencies to this bucket's.
    pub fn add(&mut self, other: &TimelineBucket) {
        self.completed += other.completed;
        self.errors += other.errors;
        self.timeouts += other.timeouts;
        self.latency
            .add(&other.latency)
            .expect("auto-resizing histograms of one precision add");
    }
}

/// The measured window in [`TIMELINE_BUCKET`]s: `ceil(duration / 100 ms)` buckets, so its size
/// is bounded by the window's length.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timeline {
    /// Bucket `i` covers `[i × 100 ms, (i + 1) × 100 ms)` from the window's start.
    pub buckets: Vec<TimelineBucket>,
}

/// `timeline.json` as written.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TimelineFile {
    bucket_ms: u64,
    buckets: Vec<BucketFile>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BucketFile {
    completed: u64,
    errors: u64,
    timeouts: u64,
    /// Derived from `latency_us`; ignored when read.
    #[serde(default)]
    p50_us: Option<u64>,
    /// Derived from `latency_us`; ignored when read.
    #[serde(default)]
    p99_us: Option<u64>,
    latency_us: Vec<(u64, u64)>,
}

impl Timeline {
    /// A timeline of empty buckets covering a window of `duration`.
    pub fn new(duration: Duration) -> Self {
        let width = TIMELINE_BUCKET.as_nanos();
        let n = duration.as_nanos().div_ceil(width) as usize;
        Timeline {
            buckets: (0..n).map(|_| TimelineBucket::default()).collect(),
        }
    }

    /// The bucket of an event `since` after the window's start, if it is inside the window.
    pub fn bucket_mut(&mut self, since: Duration) -> Option<&mut TimelineBucket> {
        let i = since.as_nanos() / TIMELINE_BUCKET.as_nanos();
        self.buckets.get_mut(usize::try_from(i).ok()?)
    }

    /// Adds `other` bucket by bucket (by index from each one's own window start); a longer
    /// `other` extends this timeline.
    pub fn add(&mut self, other: &Timeline) {
        for (i, b) in other.buckets.iter().enumerate() {
            match self.buckets.get_mut(i) {
                Some(mine) => mine.add(b),
                None => self.buckets.push(b.clone()),
            }
        }
    }

    /// Writes `timeline.json` (the format is in the module docs).
    pub fn write_json(&self, path: &Path) -> Result<(), LoadError> {
        let file = TimelineFile {
            bucket_ms: TIMELINE_BUCKET.as_millis() as u64,
            buckets: self
                .buckets
                .iter()
                .map(|b| BucketFile {
                    completed: b.completed,
                    errors: b.errors,
                    timeouts: b.timeouts,
                    p50_us: b.p50_us(),
                    p99_us: b.p99_us(),
                    latency_us: recorded(&b.latency),
                })
                .collect(),
        };
        let mut text = serde_json::to_string(&file).expect("plain data serializes");
        text.push('\n');
        std::fs::write(path, text).map_err(|source| LoadError::Write {
            path: path.display().to_string(),
            source,
        })
    }

    /// Reads a `timeline.json` that [`Timeline::write_json`] wrote.
    pub fn read_json(path: &Path) -> Result<Timeline, LoadError> {
        let bad = |why: String| LoadError::Read {
            path: path.display().to_string(),
            why,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let file: TimelineFile = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if file.bucket_ms != TIMELINE_BUCKET.as_millis() as u64 {
            return Err(bad(format!(
                "buckets of {} ms, expected {} ms",
                file.bucket_ms,
                TIMELINE_BUCKET.as_millis()
            )));
        }
        let buckets = file
            .buckets
            .into_iter()
            .map(|b| {
                let mut bucket = TimelineBucket {
                    completed: b.completed,
                    errors: b.errors,
                    timeouts: b.timeouts,
                    ..TimelineBucket::default()
                };
                for (value, count) in b.latency_us {
                    bucket
                        .latency
                        .record_n(value, count)
                        .map_err(|e| bad(format!("latency {value} µs: {e:?}")))?;
                }
                Ok(bucket)
            })
            .collect::<Result<_, LoadError>>()?;
        Ok(Timeline { buckets })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_window_is_cut_into_100_ms_buckets() {
        assert_eq!(Timeline::new(ms(1_000)).buckets.len(), 10);
        assert_eq!(Timeline::new(ms(1_050)).buckets.len(), 11);
        assert_eq!(Timeline::new(Duration::ZERO).buckets.len(), 0);
        let mut t = Timeline::new(ms(300));
        assert!(t.bucket_mut(ms(99)).is_some());
        t.bucket_mut(ms(100)).unwrap().completed += 1;
        assert_eq!(t.buckets[1].completed, 1);
        assert!(t.bucket_mut(ms(300)).is_none(), "past the window");
    }

    #[test]
    fn merged_buckets_add_counts_and_histograms() {
        let mut a = Timeline::new(ms(200));
        let mut b = Timeline::new(ms(300));
        for _ in 0..99 {
            a.buckets[0].latency.record(1_000).unwrap();
        }
        a.buckets[0].completed = 99;
        b.buckets[0].latency.record(50_000).unwrap();
        b.buckets[0].completed = 1;
        b.buckets[0].timeouts = 2;
        b.buckets[2].errors = 5;
        a.add(&b);
        assert_eq!(a.buckets.len(), 3, "the longer timeline extends");
        let first = &a.buckets[0];
        assert_eq!((first.completed, first.timeouts), (100, 2));
        assert_eq!(first.latency.len(), 100);
        // 99 at 1 ms and one at 50 ms: the p99 is still 1 ms, the max 50 ms; neither part
        // alone has both.
        assert!((990..=1_010).contains(&first.p99_us().unwrap()));
        assert!(first.latency.max() >= 49_500);
        assert_eq!(a.buckets[2].errors, 5);
        assert_eq!(a.buckets[1].p50_us(), None);
    }

    #[test]
    fn timeline_json_reads_back_equal() {
        let mut t = Timeline::new(ms(250));
        for (i, us) in [3u64, 999, 1_234, 87_654, 1_900_000].iter().enumerate() {
            let b = &mut t.buckets[i % 3];
            b.latency.record_n(*us, i as u64 + 1).unwrap();
            b.completed += i as u64 + 1;
            b.timeouts += 1;
        }
        t.buckets[2].errors = 4;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("timeline.json");
        t.write_json(&path).unwrap();
        let back = Timeline::read_json(&path).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.buckets[1].p99_us(), t.buckets[1].p99_us());
        assert_ne!(back.buckets[0], back.buckets[1]);

        std::fs::write(&path, r#"{"bucket_ms": 1000, "buckets": []}"#).unwrap();
        assert!(Timeline::read_json(&path).is_err(), "another bucket width");
    }
}
