//! The open-loop schedule: when each request is *meant* to be sent, fixed before the run starts
//! and independent of how the system answers (the rate never adapts to the backlog).

use std::time::Duration;

/// How requests arrive in an open-loop run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arrivals {
    /// Evenly spaced: request `i` is due at `i / rate`.
    Constant,
    /// A Poisson process: exponentially distributed gaps with mean `1 / rate` (seeded).
    Poisson,
}

/// A small, fast, seeded generator (SplitMix64). The load generator needs reproducible streams,
/// not cryptographic ones, and owning it keeps the schedule independent of `rand`'s API churn.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// The intended send offsets (from the start of the run) of an open-loop run, in order.
#[derive(Clone, Debug)]
pub struct Schedule {
    arrivals: Arrivals,
    /// Mean gap between requests, in seconds.
    gap_s: f64,
    rng: SplitMix64,
    /// Requests handed out so far.
    issued: u64,
    /// The next request's offset in seconds.
    next_s: f64,
}

impl Schedule {
    /// A schedule at `rate` requests per second (must be positive and finite).
    pub fn new(rate: f64, arrivals: Arrivals, seed: u64) -> Self {
        debug_assert!(rate > 0.0 && rate.is_finite(), "validated by LoadConfig");
        let mut s = Schedule {
            arrivals,
            gap_s: 1.0 / rate,
            rng: SplitMix64::new(seed ^ 0x5eed_5c4e_d01e),
            issued: 0,
            next_s: 0.0,
        };
        if arrivals == Arrivals::Poisson {
            s.next_s = s.poisson_gap();
        }
        s
    }

    fn poisson_gap(&mut self) -> f64 {
        // Inverse transform: -ln(U) * mean, with U in (0, 1] so ln never sees zero.
        -(1.0 - self.rng.next_f64()).ln() * self.gap_s
    }

    /// The offset of the next request, without consuming it.
    pub fn peek(&self) -> Duration {
        Duration::from_secs_f64(self.next_s)
    }

    /// Consumes and returns the next request's offset.
    pub fn next_offset(&mut self) -> Duration {
        let at = self.peek();
        self.issued += 1;
        self.next_s = match self.arrivals {
            // Computed from the index rather than accumulated, so rounding never drifts.
            Arrivals::Constant => self.issued as f64 * self.gap_s,
            Arrivals::Poisson => self.next_s + self.poisson_gap(),
        };
        at
    }

    /// Consumes every request due at or before `now` (an offset) and before `end`; returns
    /// their intended offsets (what a sender waking at `now` would send).
    pub fn due(&mut self, now: Duration, end: Duration, out: &mut Vec<Duration>) {
        while self.peek() <= now && self.peek() < end {
            out.push(self.next_offset());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count_in(rate: f64, arrivals: Arrivals, seed: u64, window: Duration) -> Vec<Duration> {
        let mut s = Schedule::new(rate, arrivals, seed);
        let mut out = Vec::new();
        // Virtual ticks of 1 ms, as the driver's timer would fire.
        let mut now = Duration::ZERO;
        while now <= window {
            s.due(now, window, &mut out);
            now += Duration::from_millis(1);
        }
        out
    }

    #[test]
    fn constant_arrivals_give_exactly_rate_times_window() {
        let sends = count_in(10_000.0, Arrivals::Constant, 1, Duration::from_secs(3));
        assert_eq!(sends.len(), 30_000);
        assert!(sends
            .windows(2)
            .all(|w| w[1] - w[0] == Duration::from_micros(100)));
        assert_eq!(sends[0], Duration::ZERO);
    }

    #[test]
    fn poisson_arrivals_give_about_rate_times_window() {
        // 50 000 expected arrivals: the standard deviation is ~224, so ±1 500 is > 6 sigma.
        let sends = count_in(10_000.0, Arrivals::Poisson, 7, Duration::from_secs(5));
        let n = sends.len() as i64;
        assert!((n - 50_000).abs() < 1_500, "{n} arrivals");
        assert!(sends.windows(2).all(|w| w[0] <= w[1]), "in order");
        // Exponential gaps: about e^-1 of them exceed the mean gap.
        let long = sends
            .windows(2)
            .filter(|w| w[1] - w[0] > Duration::from_micros(100))
            .count() as f64;
        let share = long / (sends.len() - 1) as f64;
        assert!((share - (-1f64).exp()).abs() < 0.02, "{share}");
    }

    #[test]
    fn a_seed_reproduces_its_schedule_and_another_seed_does_not() {
        let w = Duration::from_secs(1);
        let a = count_in(5_000.0, Arrivals::Poisson, 3, w);
        let b = count_in(5_000.0, Arrivals::Poisson, 3, w);
        let c = count_in(5_000.0, Arrivals::Poisson, 4, w);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
