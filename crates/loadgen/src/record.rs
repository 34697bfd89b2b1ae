//! Where latencies go: hdrhistogram in µs (3 significant digits), one per 1-second interval of
//! the measured window and one merged, after a discarded warm-up.
//!
//! A request belongs to the interval its *intended* send time falls in, so every request is
//! counted exactly once, whatever happens to it: completed (latency recorded, measured from the
//! intended time), failed (`errors`) or given up on (`timeouts`). A request that times out and is
//! answered later stays a timeout; its late latency is not recorded as a success (it is in
//! neither the histograms nor `completed`).
//!
//! Beside them, the [`Timeline`] files each completion under the 100 ms bucket of the instant
//! it completed, and each failure (error or timeout) under the bucket of the request's intended
//! send time: a request that times out 2 s after a leader died shows where the service stopped,
//! not 2 s later (see [`crate::timeline`]). When asked for, a [`HistoryRecorder`] keeps what the
//! clients saw (see [`crate::history`]).

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::history::HistoryRecorder;
use crate::timeline::Timeline;

/// Latency and send-lag accounting for one run.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    warmup: Duration,
    duration: Duration,
    /// One histogram per second of the measured window (the last one may be shorter).
    pub(crate) intervals: Vec<Histogram<u64>>,
    pub(crate) merged: Histogram<u64>,
    pub(crate) send_lag: Histogram<u64>,
    pub(crate) completed: u64,
    pub(crate) errors: u64,
    pub(crate) timeouts: u64,
    /// Events of the measured window by the 100 ms bucket they happened in.
    pub(crate) timeline: Timeline,
    /// What the clients saw, if asked for.
    pub(crate) history: Option<HistoryRecorder>,
}

/// Latencies up to an hour, 3 significant digits; longer ones saturate at an hour (`max_us`
/// then reads 3.6e9, which no one will mistake for a real latency).
fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

fn micros(d: Duration) -> u64 {
    d.as_micros().min(u64::MAX as u128) as u64
}

impl Recorder {
    /// A recorder for a run whose schedule starts at `start`; requests meant to be sent in the
    /// first `warmup` are discarded, then `duration` is measured.
    pub fn new(start: Instant, warmup: Duration, duration: Duration) -> Self {
        let n = duration.as_secs() as usize + usize::from(duration.subsec_nanos() > 0);
        Recorder {
            start,
            warmup,
            duration,
            intervals: (0..n).map(|_| hist()).collect(),
            merged: hist(),
            send_lag: hist(),
            completed: 0,
            errors: 0,
            timeouts: 0,
            timeline: Timeline::new(duration),
            history: None,
        }
    }

    /// Also records a history of at most `cap` operations from `start` on, with room
    /// reserved for `min(cap, expected)`.
    pub fn with_history(mut self, cap: usize, expected: usize) -> Self {
        self.history = Some(HistoryRecorder::new(self.start, cap, expected));
        self
    }

    /// The timeline bucket of an event at `at`, if it is inside the measured window.
    fn bucket(&mut self, at: Instant) -> Option<&mut crate::timeline::TimelineBucket> {
        let since = at.checked_duration_since(self.start + self.warmup)?;
        self.timeline.bucket_mut(since)
    }

    /// Which interval of the measured window a request intended at `intended` belongs to, or
    /// `None` during the warm-up and after the window.
    pub fn interval_of(&self, intended: Instant) -> Option<usize> {
        let since = intended.checked_duration_since(self.start + self.warmup)?;
        (since < self.duration).then_some(since.as_secs() as usize)
    }

    /// A request answered at `done` that was meant to be sent at `intended`.
    pub fn record_success(&mut self, intended: Instant, done: Instant) {
        let us = micros(done.saturating_duration_since(intended));
        if let Some(i) = self.interval_of(intended) {
            self.intervals[i].saturating_record(us);
            self.merged.saturating_record(us);
            self.completed += 1;
        }
        if let Some(b) = self.bucket(done) {
            b.completed += 1;
            // `record`, not `saturating_record`: the bucket's histogram grows to fit (saturating
            // would clamp to its current, small, range).
            if b.latency.record(us).is_err() {
                b.latency.saturating_record(us);
            }
        }
    }

    /// A request meant for `intended` that failed at `at` (e.g. `Expired`, or too many
    /// redirects).
    pub fn record_error(&mut self, intended: Instant, _at: Instant) {
        if self.interval_of(intended).is_some() {
            self.errors += 1;
        }
        if let Some(b) = self.bucket(intended) {
            b.errors += 1;
        }
    }

    /// A request meant for `intended` that got no answer by its deadline `deadline`.
    pub fn record_timeout(&mut self, intended: Instant, _deadline: Instant) {
        if self.interval_of(intended).is_some() {
            self.timeouts += 1;
        }
        if let Some(b) = self.bucket(intended) {
            b.timeouts += 1;
        }
    }

    /// A request handed to its connection at `sent`, meant for `intended`.
    pub fn record_send(&mut self, intended: Instant, sent: Instant) {
        if self.interval_of(intended).is_some() {
            self.send_lag
                .saturating_record(micros(sent.saturating_duration_since(intended)));
        }
    }

    /// The measured window's length.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// The discarded warm-up's length.
    pub fn warmup(&self) -> Duration {
        self.warmup
    }

    /// When the measured window begins.
    pub fn window_start_instant(&self) -> Instant {
        self.start + self.warmup
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{Arrivals, Schedule};

    /// A stalled sender: the schedule is drained at 1 ms ticks, except that nothing is sent
    /// between 200 ms and 300 ms; at 300 ms everything due is sent at once and answered at once.
    /// The stall shows up as latency: the request meant for 200 ms waited ≥ 100 ms.
    #[test]
    fn a_stall_is_charged_to_every_request_it_delays() {
        let start = Instant::now();
        let mut rec = Recorder::new(start, Duration::ZERO, Duration::from_secs(1));
        let mut sched = Schedule::new(1_000.0, Arrivals::Constant, 0);
        let end = Duration::from_secs(1);
        let mut due = Vec::new();
        let mut now = Duration::ZERO;
        while now < end {
            let stalled = now > Duration::from_millis(200) && now < Duration::from_millis(300);
            if !stalled {
                due.clear();
                sched.due(now, end, &mut due);
                for &offset in &due {
                    // Sent and answered instantly at the tick: all latency is schedule delay.
                    rec.record_send(start + offset, start + now);
                    rec.record_success(start + offset, start + now);
                }
            }
            now += Duration::from_millis(1);
        }
        assert_eq!(rec.completed, 1_000);
        // Requests meant for (200, 300) ms waited until 300 ms: 99 of them waited ≥ 1 ms, up
        // to 99 ms; at least 49 of them ≥ 50 ms.
        let at_least = |h: &Histogram<u64>, us: u64| h.count_between(us, u64::MAX);
        assert!(rec.merged.max() >= 99_000, "max {}", rec.merged.max());
        assert!(at_least(&rec.merged, 50_000) >= 49);
        assert!(at_least(&rec.merged, 1_000) >= 99);
        // Outside the stall the sends were on time: the median is 0.
        assert_eq!(rec.merged.value_at_quantile(0.5), 0);
        // The generator's own lag shows the same stall.
        assert!(rec.send_lag.max() >= 99_000);
    }

    #[test]
    fn warmup_is_discarded_and_each_request_counts_once() {
        let start = Instant::now();
        let mut rec = Recorder::new(start, Duration::from_secs(1), Duration::from_millis(2_500));
        assert_eq!(rec.intervals.len(), 3);
        let at = |ms| start + Duration::from_millis(ms);
        rec.record_success(at(500), at(501)); // warm-up
        rec.record_success(at(1_000), at(1_002)); // interval 0
        rec.record_timeout(at(2_100), at(2_200)); // interval 1
        rec.record_error(at(3_499), at(3_500)); // interval 2
        rec.record_success(at(3_500), at(3_501)); // after the window
        assert_eq!((rec.completed, rec.errors, rec.timeouts), (1, 1, 1));
        assert_eq!(rec.intervals[0].len(), 1);
        assert_eq!(rec.merged.max(), 2_000);
    }

    #[test]
    fn the_timeline_files_completions_when_they_happen_and_failures_when_they_were_meant() {
        let start = Instant::now();
        let mut rec = Recorder::new(start, Duration::from_secs(1), Duration::from_secs(1));
        assert_eq!(rec.timeline.buckets.len(), 10);
        let at = |ms| start + Duration::from_millis(ms);
        // Meant for the warm-up, answered 30 ms into the window: in bucket 0 of the timeline,
        // not in the summary's counts.
        rec.record_success(at(990), at(1_030));
        // Meant for bucket 1, answered in bucket 3.
        rec.record_success(at(1_150), at(1_350));
        rec.record_success(at(1_310), at(1_311));
        // A timeout and an error are filed under when the request was meant to be sent.
        rec.record_timeout(at(1_100), at(1_420));
        rec.record_error(at(1_950), at(1_999));
        // After the window: in the summary (by intended time), not in the timeline.
        rec.record_success(at(1_950), at(2_000));
        let b = &rec.timeline.buckets;
        assert_eq!(b[0].completed, 1);
        assert!(
            (39_500..=40_500).contains(&b[0].p50_us().unwrap()),
            "{:?}",
            b[0].p50_us()
        );
        assert_eq!(b[1].completed, 0);
        assert_eq!(b[3].completed, 2);
        assert!((195_000..=205_000).contains(&b[3].latency.max()));
        assert!(b[3].p50_us().unwrap() <= 1_010, "{:?}", b[3].p50_us());
        assert_eq!((b[1].timeouts, b[9].errors), (1, 1));
        let sum = |f: fn(&crate::timeline::TimelineBucket) -> u64| b.iter().map(f).sum::<u64>();
        assert_eq!(
            (sum(|b| b.completed), sum(|b| b.timeouts), sum(|b| b.errors)),
            (3, 1, 1)
        );
        assert_eq!((rec.completed, rec.timeouts, rec.errors), (3, 1, 1));
    }
}
