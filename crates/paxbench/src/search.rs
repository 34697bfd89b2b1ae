//! The saturation search of `[load] rates = "auto"`: the highest offered rate whose p99 meets
//! the SLO with no errors or timeouts, found by measuring rather than guessed from a list.
//!
//! [`RateSearch`] is the search as a pure state machine: it proposes the next rate
//! ([`RateSearch::next_probe`]), is told whether that level passed ([`RateSearch::record`]),
//! and once it has its answer says how it ended ([`RateSearch::outcome`]). `paxbench run`
//! measures each probe as an ordinary point; the tests drive it with a synthetic system.
//!
//! The search:
//!
//! 1. **Grow.** Measure `start_ops`, then multiply the rate by `factor` (rounded to whole
//!    ops/s, capped at `max_ops`) while levels pass. If `max_ops` passes, the search ends:
//!    the knee is at least `max_ops`, a bound only ([`SearchOutcome::ReachedMax`]). If
//!    `start_ops` fails, it ends too: the knee is below it ([`SearchOutcome::BelowStart`]).
//! 2. **Bisect.** Between the highest rate that passed and the lowest that failed, measure
//!    the midpoint (rounded to whole ops/s); it replaces the pass or the fail. Stop once
//!    `(fail − pass) / pass ≤ resolution`, or when the two are 1 ops/s apart
//!    ([`SearchOutcome::Bracketed`]).
//!
//! Each level is measured once; the search trusts a level's verdict and does not assume the
//! system is monotonic beyond that (a noisy level shows in the points). A level passes when
//! [`verdict`] finds nothing wrong: some requests completed, p99 under the SLO, no errors and no
//! timeouts.
//!
//! A *generator-bound* level (the generator's sends fell behind its schedule) is judged by the
//! same rule, not failed outright: every latency is measured from the request's intended send
//! time, so the generator's lag is already in the p99, and a pass despite it never flatters the
//! system. But a failure may then be the generator's rather than the system's, so the bracket
//! records whether its pass and its fail were generator-bound, and the summary says so.

use results::{Point, SearchOutcome, SearchPhase};
use serde::{Deserialize, Serialize};

/// `[load] auto` (or one protocol's entry of `auto_by_protocol`): how a search runs.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SearchSpec {
    /// The first rate measured, ops/s (at least 1).
    pub start_ops: f64,
    /// The highest rate measured, ops/s: if it passes, the knee is only known to be above it.
    pub max_ops: f64,
    /// Growth: each level's rate is the last one's times this (in (1, 100]; default 2).
    #[serde(default = "default_factor")]
    pub factor: f64,
    /// Bisection stops once `(fail − pass) / pass` is at most this (in (0, 1]; default 0.05).
    #[serde(default = "default_resolution")]
    pub resolution: f64,
}

fn default_factor() -> f64 {
    2.0
}

fn default_resolution() -> f64 {
    0.05
}

/// A search may measure at most this many levels (a typo in `factor` or `resolution` should
/// not plan a day of measurements).
pub const MAX_SEARCH_LEVELS: u32 = 60;

impl SearchSpec {
    /// Range checks, as (key, why).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !(self.start_ops.is_finite() && self.start_ops >= 1.0) {
            return Err(("start_ops", format!("{}: at least 1 ops/s", self.start_ops)));
        }
        if !(self.max_ops.is_finite() && self.max_ops > self.start_ops) {
            return Err((
                "max_ops",
                format!(
                    "{}: must be above start_ops ({})",
                    self.max_ops, self.start_ops
                ),
            ));
        }
        if !(self.factor.is_finite() && self.factor > 1.0 && self.factor <= 100.0) {
            return Err(("factor", format!("{}: must be in (1, 100]", self.factor)));
        }
        if !(self.resolution.is_finite() && self.resolution > 0.0 && self.resolution <= 1.0) {
            return Err((
                "resolution",
                format!(
                    "{}: a relative width (fail − pass) / pass in (0, 1], e.g. 0.05",
                    self.resolution
                ),
            ));
        }
        let most = self.max_levels();
        if most > MAX_SEARCH_LEVELS {
            return Err((
                "factor",
                format!(
                    "from {} to {} ops/s by ×{} to a resolution of {}, a search may measure {most} levels: at most {MAX_SEARCH_LEVELS} (raise factor or resolution, or narrow start_ops..max_ops)",
                    self.start_ops, self.max_ops, self.factor, self.resolution
                ),
            ));
        }
        Ok(())
    }

    /// The most levels one search can measure (growth up to `max_ops`, then the longest
    /// bisection), found by running the search against every place the knee could be.
    pub fn max_levels(&self) -> u32 {
        // Growth alone: every level passes up to max_ops.
        let mut most = run_against(self, |_| true);
        let mut s = RateSearch::new(self.clone());
        let mut growth = Vec::new();
        while let Some(p) = s.next_probe() {
            growth.push(p.rate);
            s.record(p.rate, true);
        }
        // The first failure at each growth level in turn, then every bisection step failing
        // (the pass stays put, so the relative width shrinks slowest) or every one passing.
        for &knee in &growth {
            for bisect_passes in [false, true] {
                let levels = run_against(self, |p| match p.phase {
                    SearchPhase::Grow => p.rate < knee,
                    SearchPhase::Bisect => bisect_passes,
                });
                most = most.max(levels);
            }
        }
        most
    }
}

/// How many levels the search measures when `passes` judges each probe.
fn run_against(spec: &SearchSpec, passes: impl Fn(&Probe) -> bool) -> u32 {
    let mut s = RateSearch::new(spec.clone());
    let mut n = 0;
    // The search always ends; the cap only keeps a broken one from hanging a dry run.
    while let Some(p) = s.next_probe().filter(|_| n < 10_000) {
        s.record(p.rate, passes(&p));
        n += 1;
    }
    n
}

/// The next level a search wants measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Probe {
    /// Offered rate, ops/s.
    pub rate: f64,
    /// Growth or bisection.
    pub phase: SearchPhase,
    /// Its index in the search, from 0 (also the level index that varies the seeds).
    pub step: u32,
}

/// One rate search in progress (module docs).
#[derive(Clone, Debug)]
pub struct RateSearch {
    spec: SearchSpec,
    /// The highest rate that passed so far.
    pass: Option<f64>,
    /// The lowest rate that failed so far (only ever above `pass`).
    fail: Option<f64>,
    /// Levels recorded.
    steps: u32,
    outcome: Option<SearchOutcome>,
}

impl RateSearch {
    /// A search that has measured nothing yet.
    pub fn new(spec: SearchSpec) -> RateSearch {
        RateSearch {
            spec,
            pass: None,
            fail: None,
            steps: 0,
            outcome: None,
        }
    }

    /// The level to measure next, or `None` once the search has ended.
    pub fn next_probe(&self) -> Option<Probe> {
        if self.outcome.is_some() {
            return None;
        }
        let (rate, phase) = match (self.pass, self.fail) {
            (None, _) => (self.spec.start_ops, SearchPhase::Grow),
            (Some(p), None) => {
                // At least 1 ops/s more, so that growth from a tiny start always moves.
                let grown = (p * self.spec.factor).round().max(p + 1.0);
                (grown.min(self.spec.max_ops), SearchPhase::Grow)
            }
            (Some(p), Some(f)) => (midpoint(p, f), SearchPhase::Bisect),
        };
        Some(Probe {
            rate,
            phase,
            step: self.steps,
        })
    }

    /// Records that the level at `rate` (the last probe's) passed or failed.
    pub fn record(&mut self, rate: f64, passed: bool) {
        debug_assert_eq!(self.next_probe().map(|p| p.rate), Some(rate));
        self.steps += 1;
        if passed {
            self.pass = Some(rate);
        } else {
            self.fail = Some(rate);
        }
        self.outcome = match (self.pass, self.fail) {
            (None, Some(_)) => Some(SearchOutcome::BelowStart),
            (Some(p), None) if p >= self.spec.max_ops => Some(SearchOutcome::ReachedMax),
            (Some(p), Some(f)) => {
                let mid = midpoint(p, f);
                let narrow = (f - p) / p <= self.spec.resolution;
                (narrow || mid <= p || mid >= f).then_some(SearchOutcome::Bracketed)
            }
            _ => None,
        };
    }

    /// How the search ended; `None` while it is still running.
    pub fn outcome(&self) -> Option<SearchOutcome> {
        self.outcome
    }

    /// The highest rate that passed and the lowest that failed so far.
    pub fn bracket(&self) -> (Option<f64>, Option<f64>) {
        (self.pass, self.fail)
    }

    /// Levels measured so far.
    pub fn steps(&self) -> u32 {
        self.steps
    }
}

/// Halfway between a passing and a failing rate, in whole ops/s.
fn midpoint(pass: f64, fail: f64) -> f64 {
    ((pass + fail) / 2.0).round()
}

/// Whether a measured level passes: `Ok`, or every reason it does not. The rule is the
/// module's: some completions, p99 under `slo_p99_us`, no errors, no timeouts. A failing level
/// that was also generator-bound says so (it is not a reason on its own: see the module docs).
pub fn verdict(point: &Point, slo_p99_us: f64) -> Result<(), String> {
    let mut why = Vec::new();
    if point.completed == 0 {
        why.push("no request completed".to_string());
    } else if point.p99_us.is_nan() || point.p99_us >= slo_p99_us {
        why.push(format!(
            "p99 {} µs is not under the SLO of {} µs",
            point.p99_us, slo_p99_us
        ));
    }
    if point.errors > 0 {
        why.push(format!("{} error(s)", point.errors));
    }
    if point.timeouts > 0 {
        why.push(format!("{} timeout(s)", point.timeouts));
    }
    if why.is_empty() {
        return Ok(());
    }
    if point.generator_bound {
        why.push(format!(
            "and the generator fell behind its schedule (send lag p99 {} µs): generator-bound",
            point.send_lag_p99_us
        ));
    }
    Err(why.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(start: f64, max: f64, factor: f64, resolution: f64) -> SearchSpec {
        SearchSpec {
            start_ops: start,
            max_ops: max,
            factor,
            resolution,
        }
    }

    /// Runs a search against a synthetic system whose p99 breaks above `knee` ops/s, and
    /// returns every probe with its verdict.
    fn against_knee(spec: &SearchSpec, knee: f64) -> (RateSearch, Vec<(Probe, bool)>) {
        let mut s = RateSearch::new(spec.clone());
        let mut seen = Vec::new();
        while let Some(p) = s.next_probe() {
            // A fake measurement: latency fine up to the knee, then far over the SLO.
            let point = fake_point(p.rate, if p.rate <= knee { 800.0 } else { 90_000.0 });
            let passed = verdict(&point, 10_000.0).is_ok();
            s.record(p.rate, passed);
            seen.push((p, passed));
            assert!(seen.len() < 100, "the search must end");
        }
        (s, seen)
    }

    fn fake_point(rate: f64, p99: f64) -> Point {
        serde_json::from_value(serde_json::json!({
            "point_id": "p", "protocol": "unreplicated", "offered_ops": rate,
            "throughput_ops": rate, "p50_us": p99 / 4.0, "p90_us": p99, "p99_us": p99,
            "p999_us": p99, "max_us": p99, "mean_us": p99 / 4.0, "completed": 10,
            "errors": 0, "timeouts": 0,
        }))
        .unwrap()
    }

    #[test]
    fn the_bracket_holds_the_knee_and_meets_the_resolution() {
        let sp = spec(1000.0, 1_000_000.0, 2.0, 0.05);
        for knee in [1000.0, 1500.0, 37_000.0, 100_000.0, 123_456.0, 999_999.0] {
            let (s, seen) = against_knee(&sp, knee);
            assert_eq!(s.outcome(), Some(SearchOutcome::Bracketed), "knee {knee}");
            let (Some(pass), Some(fail)) = s.bracket() else {
                panic!("knee {knee}: {:?}", s.bracket())
            };
            assert!(pass <= knee && knee < fail, "{pass} ≤ {knee} < {fail}");
            assert!((fail - pass) / pass <= 0.05, "{pass}..{fail}");
            // Growth: start, then ×2 until the first failure; bisection after.
            let grow: Vec<f64> = seen
                .iter()
                .take_while(|(p, _)| p.phase == SearchPhase::Grow)
                .map(|(p, _)| p.rate)
                .collect();
            assert_eq!(grow[0], 1000.0);
            for w in grow.windows(2) {
                assert_eq!(w[1], (w[0] * 2.0).min(1_000_000.0), "{grow:?}");
            }
            let first_fail = seen.iter().position(|(_, ok)| !ok).unwrap();
            assert_eq!(
                first_fail + 1,
                grow.len(),
                "growth stops at the first failure"
            );
            // Every bisection probe lies strictly inside the bracket of its time, which at
            // least halves each step.
            let (mut lo, mut hi) = (grow[grow.len() - 2], grow[grow.len() - 1]);
            for (p, ok) in &seen[grow.len()..] {
                assert_eq!(p.phase, SearchPhase::Bisect);
                assert!(lo < p.rate && p.rate < hi, "{lo} < {} < {hi}", p.rate);
                assert!((p.rate - (lo + hi) / 2.0).abs() <= 0.5, "the midpoint");
                if *ok {
                    lo = p.rate;
                } else {
                    hi = p.rate;
                }
            }
            assert_eq!((lo, hi), (pass, fail));
            assert!(
                seen.len() as u32 <= sp.max_levels(),
                "{} levels",
                seen.len()
            );
            assert_eq!(s.steps() as usize, seen.len());
            // Steps are numbered in order.
            assert!(seen
                .iter()
                .enumerate()
                .all(|(i, (p, _))| p.step == i as u32));
        }
    }

    #[test]
    fn a_knee_past_max_or_below_start_is_only_a_bound() {
        let sp = spec(1000.0, 50_000.0, 2.0, 0.05);
        let (s, seen) = against_knee(&sp, 80_000.0);
        assert_eq!(s.outcome(), Some(SearchOutcome::ReachedMax));
        assert_eq!(s.bracket(), (Some(50_000.0), None));
        let rates: Vec<f64> = seen.iter().map(|(p, _)| p.rate).collect();
        assert_eq!(
            rates,
            [1000.0, 2000.0, 4000.0, 8000.0, 16000.0, 32000.0, 50000.0],
            "growth is capped at max_ops"
        );
        let (s, seen) = against_knee(&sp, 500.0);
        assert_eq!(s.outcome(), Some(SearchOutcome::BelowStart));
        assert_eq!(s.bracket(), (None, Some(1000.0)));
        assert_eq!(seen.len(), 1);
        // A knee between the last growth level and max_ops is bisected as any other.
        let (s, _) = against_knee(&sp, 45_000.0);
        let (pass, fail) = s.bracket();
        assert_eq!(s.outcome(), Some(SearchOutcome::Bracketed));
        assert!(pass.unwrap() <= 45_000.0 && fail.unwrap() > 45_000.0);
    }

    #[test]
    fn tiny_rates_stop_at_one_op_per_second() {
        // 1 → 2 → 3 (growth of at least 1 ops/s), then no midpoint between 2 and 3.
        let sp = spec(1.0, 100.0, 1.2, 0.01);
        let (s, seen) = against_knee(&sp, 2.0);
        assert_eq!(s.outcome(), Some(SearchOutcome::Bracketed));
        assert_eq!(s.bracket(), (Some(2.0), Some(3.0)));
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn max_levels_bounds_every_search() {
        for sp in [
            spec(1000.0, 1_000_000.0, 2.0, 0.05),
            spec(100.0, 5000.0, 1.5, 0.02),
            spec(10.0, 20.0, 3.0, 0.5),
        ] {
            let most = sp.max_levels();
            let mut longest = 0;
            let mut knee = sp.start_ops * 0.5;
            while knee < sp.max_ops * 1.5 {
                longest = longest.max(against_knee(&sp, knee).1.len() as u32);
                knee *= 1.013;
            }
            assert!(longest <= most, "{sp:?}: {longest} > {most}");
            assert!(
                most <= longest + 1,
                "{sp:?}: the bound {most} is tight ({longest})"
            );
        }
        // ×2 from 1000 to 1e6: 11 growth levels, then up to 5 halvings from 100% to 5%.
        assert_eq!(spec(1000.0, 1_000_000.0, 2.0, 0.05).max_levels(), 16);
    }

    #[test]
    fn every_reason_a_level_fails_is_named() {
        let mut p = fake_point(1000.0, 800.0);
        assert_eq!(verdict(&p, 10_000.0), Ok(()));
        assert!(verdict(&p, 800.0)
            .unwrap_err()
            .contains("not under the SLO"));
        // A lagging generator's delay is in the latencies already: judged by them alone.
        p.generator_bound = true;
        assert_eq!(verdict(&p, 10_000.0), Ok(()));
        p.timeouts = 3;
        p.errors = 1;
        let why = verdict(&p, 10_000.0).unwrap_err();
        assert!(
            why.contains("1 error(s)")
                && why.contains("3 timeout(s)")
                && why.contains("generator-bound"),
            "{why}"
        );
        p = fake_point(1000.0, f64::NAN);
        p.completed = 0;
        assert_eq!(verdict(&p, 10_000.0).unwrap_err(), "no request completed");
    }

    #[test]
    fn bad_specs_name_their_key() {
        for (sp, key) in [
            (spec(0.5, 100.0, 2.0, 0.05), "start_ops"),
            (spec(100.0, 100.0, 2.0, 0.05), "max_ops"),
            (spec(100.0, 1000.0, 1.0, 0.05), "factor"),
            (spec(100.0, 1000.0, 2.0, 0.0), "resolution"),
            (spec(100.0, 1000.0, 2.0, f64::NAN), "resolution"),
            (spec(1.0, 1e12, 1.01, 0.001), "factor"),
        ] {
            assert_eq!(sp.check().unwrap_err().0, key, "{sp:?}");
        }
        assert!(spec(1000.0, 1e6, 2.0, 0.05).check().is_ok());
    }
}
