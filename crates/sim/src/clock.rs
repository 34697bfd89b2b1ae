//! Node clocks that drift.
//!
//! Every simulated node reads its own clock, not the simulator's: a [`Clock`] runs at
//! `1 + ppm / 10⁶` times true (virtual) time, from zero at the start of the run, and keeps
//! running across the node's crashes. Each input handed to a node carries its local time, and the
//! deadline it asks for is turned back into true time to schedule it. The simulator draws each
//! node's rate within the configured bound (`paxos::Config::clock_drift_ppm`), often at its
//! extremes and on half the seeds one slow clock among fast ones ([`Clock::draw_cluster`]), so a lease that is only safe on perfect clocks (no drift margin) is caught: a leader
//! whose clock runs slow holds its lease longer, in true time, than a fast follower keeps the
//! promise it granted.

use paxos::Time;

use crate::rng::SimRng;

/// One part in a million, the unit of drift.
const MILLION: i128 = 1_000_000;

/// A clock that runs `ppm` parts per million fast (negative: slow) against true time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Clock {
    ppm: i64,
}

impl Clock {
    /// A clock `ppm` parts per million fast (negative: slow); clamped to ±500 000, beyond which
    /// no node configuration is valid anyway.
    pub fn new(ppm: i64) -> Self {
        Clock {
            ppm: ppm.clamp(-500_000, 500_000),
        }
    }

    /// A clock drawn within `bound` ppm either way: on a third of draws the fast extreme, on a
    /// third the slow one, otherwise anywhere between (the extremes are where lease bugs hide).
    pub fn draw(bound: u32, rng: &mut SimRng) -> Self {
        let bound = i64::from(bound);
        if bound == 0 {
            return Clock::default();
        }
        let ppm = match rng.below(3) {
            0 => bound,
            1 => -bound,
            _ => rng.range(0, 2 * bound as u64 + 1) as i64 - bound,
        };
        Clock::new(ppm)
    }

    /// The clocks of an `n`-node cluster within `bound` ppm: on half the draws one node, picked
    /// at random, runs slow by the whole bound and the others fast by it (the worst case for a
    /// lease: a slow leader's lease outlasts its fast followers' grants by the most); otherwise
    /// each node is drawn on its own ([`Clock::draw`]).
    pub fn draw_cluster(bound: u32, n: usize, rng: &mut SimRng) -> Vec<Clock> {
        if bound == 0 {
            return vec![Clock::default(); n];
        }
        if rng.chance(0.5) {
            let slow = rng.below(n as u64) as usize;
            let b = i64::from(bound);
            (0..n)
                .map(|k| Clock::new(if k == slow { -b } else { b }))
                .collect()
        } else {
            (0..n).map(|_| Clock::draw(bound, rng)).collect()
        }
    }

    /// Its drift in parts per million.
    pub fn ppm(self) -> i64 {
        self.ppm
    }

    /// What this clock reads at true time `t`: `t · (1 + ppm/10⁶)`, rounded down. Monotone in
    /// `t`.
    pub fn local(self, t: Time) -> Time {
        let scaled = i128::from(t.as_nanos()) * (MILLION + i128::from(self.ppm)) / MILLION;
        Time(u64::try_from(scaled).unwrap_or(u64::MAX))
    }

    /// The earliest true time at which this clock reads `local` or more (what a node's
    /// deadline on its own clock means in true time).
    pub fn true_time(self, local: Time) -> Time {
        let rate = MILLION + i128::from(self.ppm);
        let target = i128::from(local.as_nanos());
        // The ceiling of target / rate · 10⁶, then corrected for the rounding in `local`.
        let mut t = (target * MILLION + rate - 1) / rate;
        while t > 0 && self.local_i128(t - 1) >= target {
            t -= 1;
        }
        while self.local_i128(t) < target {
            t += 1;
        }
        Time(u64::try_from(t).unwrap_or(u64::MAX))
    }

    fn local_i128(self, t: i128) -> i128 {
        t * (MILLION + i128::from(self.ppm)) / MILLION
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_runs_at_its_rate_from_zero() {
        let s = Time(1_000_000_000);
        assert_eq!(Clock::new(0).local(s), s);
        assert_eq!(Clock::new(1000).local(s), Time(1_001_000_000));
        assert_eq!(Clock::new(-100_000).local(s), Time(900_000_000));
        assert_eq!(Clock::new(250).local(Time::ZERO), Time::ZERO);
    }

    #[test]
    fn true_time_is_the_first_instant_the_clock_reaches_a_reading() {
        let mut rng = SimRng::new(7);
        for ppm in [0, 1, -1, 999, -999, 100_000, -100_000, 499_999, -499_999] {
            let c = Clock::new(ppm);
            for _ in 0..2000 {
                let l = Time(rng.below(10_000_000_000_000));
                let t = c.true_time(l);
                assert!(c.local(t) >= l, "ppm {ppm}: local({t:?}) < {l:?}");
                assert!(
                    t.as_nanos() == 0 || c.local(Time(t.as_nanos() - 1)) < l,
                    "ppm {ppm}: {t:?} is not the first instant reading {l:?}"
                );
                let a = Time(rng.below(10_000_000_000_000));
                let b = Time(a.as_nanos() + rng.below(1_000_000));
                assert!(c.local(a) <= c.local(b), "ppm {ppm}: not monotone");
            }
        }
    }

    #[test]
    fn drawn_clocks_stay_in_the_bound_and_reach_both_extremes() {
        let mut rng = SimRng::new(3);
        let drawn: Vec<i64> = (0..300)
            .map(|_| Clock::draw(1000, &mut rng).ppm())
            .collect();
        assert!(drawn.iter().all(|p| p.abs() <= 1000));
        assert!(drawn.contains(&1000) && drawn.contains(&-1000));
        assert!(drawn.iter().any(|p| p.abs() < 1000));
        assert_eq!(Clock::draw(0, &mut rng), Clock::default());
    }

    #[test]
    fn clusters_often_get_one_slow_clock_among_fast_ones() {
        let mut rng = SimRng::new(5);
        let mut adversarial = 0;
        for _ in 0..200 {
            let c: Vec<i64> = Clock::draw_cluster(500, 3, &mut rng)
                .iter()
                .map(|c| c.ppm())
                .collect();
            assert!(c.iter().all(|p| p.abs() <= 500), "{c:?}");
            let slow = c.iter().filter(|p| **p == -500).count();
            let fast = c.iter().filter(|p| **p == 500).count();
            adversarial += usize::from(slow == 1 && fast == 2);
        }
        assert!((60..=160).contains(&adversarial), "{adversarial} of 200");
        assert_eq!(
            Clock::draw_cluster(0, 2, &mut rng),
            vec![Clock::default(); 2]
        );
    }
}
