//! The headline numbers of a run: saturation throughput and low-load p50 per protocol and
//! configuration, across repetitions, and as ratios to Unreplicated.

use std::collections::BTreeMap;

use crate::point::{label, protocol_rank, Point};
use crate::run::Run;

/// Median, range and the 95% interval of the median of one number across repetitions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    /// Median across repetitions (the mean of the middle two for an even count).
    pub median: f64,
    /// Lowest value.
    pub min: f64,
    /// Highest value.
    pub max: f64,
    /// How many repetitions contributed.
    pub n: usize,
    /// The 95% percentile-bootstrap interval of the median ([`crate::stats::median_ci`]):
    /// `None` for a single value. With 2 to 5 values it is `(min, max)`.
    pub ci: Option<(f64, f64)>,
}

/// The confidence of [`Stat::ci`].
pub const CONFIDENCE: f64 = 0.95;

impl Stat {
    /// The statistics of the finite `values`, or `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Stat> {
        let finite: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        let median = crate::stats::median(&finite)?;
        Some(Stat {
            median,
            min: finite.iter().copied().fold(f64::INFINITY, f64::min),
            max: finite.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            n: finite.len(),
            ci: crate::stats::median_ci(&finite, CONFIDENCE),
        })
    }

    /// The run-to-run spread, `max - min`.
    pub fn spread(&self) -> f64 {
        self.max - self.min
    }
}

/// All points of one protocol with one configuration (every swept parameter but the load).
#[derive(Debug, Clone)]
pub struct Group<'a> {
    /// The protocol.
    pub protocol: String,
    /// Swept parameters other than the load level, as `name=value`.
    pub config: Vec<(String, String)>,
    /// The part of `config` that differs between groups: what labels show.
    pub varying: Vec<(String, String)>,
    /// The points, sorted by load level and then repetition.
    pub points: Vec<&'a Point>,
}

impl Group<'_> {
    /// `protocol name=value ...` with the varying parameters: the series name in plots.
    pub fn label(&self) -> String {
        label(&self.protocol, &self.varying)
    }

    /// The points at each load level, lowest level first.
    pub fn by_load(&self) -> Vec<(f64, Vec<&Point>)> {
        let mut levels: Vec<(f64, Vec<&Point>)> = Vec::new();
        for p in &self.points {
            let level = p.load_level();
            match levels.iter_mut().find(|(l, _)| *l == level) {
                Some((_, ps)) => ps.push(p),
                None => levels.push((level, vec![p])),
            }
        }
        levels.sort_by(|a, b| a.0.total_cmp(&b.0));
        levels
    }

    /// The points of each repetition.
    pub fn by_repetition(&self) -> BTreeMap<u32, Vec<&Point>> {
        let mut reps: BTreeMap<u32, Vec<&Point>> = BTreeMap::new();
        for p in &self.points {
            reps.entry(p.repetition).or_default().push(p);
        }
        reps
    }

    /// The load level whose points best represent the protocol at saturation: the level with
    /// the highest median throughput among those whose median p99 is under the SLO, else the
    /// lowest level. The flag says whether it is under the SLO.
    pub fn saturation_level(&self, slo_p99_us: f64) -> Option<(f64, Vec<&Point>, bool)> {
        let levels = self.by_load();
        let under = levels
            .iter()
            .filter(|(_, ps)| median_of(ps, |p| p.p99_us) < slo_p99_us)
            .max_by(|a, b| {
                median_of(&a.1, |p| p.throughput_ops)
                    .total_cmp(&median_of(&b.1, |p| p.throughput_ops))
            });
        match under {
            Some((l, ps)) => Some((*l, ps.clone(), true)),
            None => levels.into_iter().next().map(|(l, ps)| (l, ps, false)),
        }
    }
}

/// The median of `f` over `points` (NaN when empty).
pub fn median_of(points: &[&Point], f: impl Fn(&Point) -> f64) -> f64 {
    let values: Vec<f64> = points.iter().map(|p| f(p)).collect();
    crate::stats::median(&values).unwrap_or(f64::NAN)
}

/// The points of `run` grouped by protocol and configuration, baseline first.
pub fn groups(run: &Run) -> Vec<Group<'_>> {
    let mut groups: Vec<Group<'_>> = Vec::new();
    for p in &run.points {
        let config = p.config();
        match groups
            .iter_mut()
            .find(|g| g.protocol == p.protocol && g.config == config)
        {
            Some(g) => g.points.push(p),
            None => groups.push(Group {
                protocol: p.protocol.clone(),
                config,
                varying: Vec::new(),
                points: vec![p],
            }),
        }
    }
    let fixed = fixed_params(&groups);
    for g in &mut groups {
        g.varying = g
            .config
            .iter()
            .filter(|kv| !fixed.contains(kv))
            .cloned()
            .collect();
    }
    for g in &mut groups {
        g.points.sort_by(|a, b| {
            a.load_level()
                .total_cmp(&b.load_level())
                .then(a.repetition.cmp(&b.repetition))
        });
    }
    groups.sort_by(|a, b| {
        protocol_rank(&a.protocol)
            .cmp(&protocol_rank(&b.protocol))
            .then_with(|| a.protocol.cmp(&b.protocol))
            .then_with(|| cmp_config(&a.config, &b.config))
    });
    groups
}

/// Orders configurations by name, then by value, numerically where both values are numbers
/// (so `window=8` comes before `window=32`).
fn cmp_config(a: &[(String, String)], b: &[(String, String)]) -> std::cmp::Ordering {
    for ((ka, va), (kb, vb)) in a.iter().zip(b) {
        let by_value = match (va.parse::<f64>(), vb.parse::<f64>()) {
            (Ok(x), Ok(y)) => x.total_cmp(&y),
            _ => va.cmp(vb),
        };
        let ord = ka.cmp(kb).then(by_value);
        if ord.is_ne() {
            return ord;
        }
    }
    a.len().cmp(&b.len())
}

/// The `name=value` pairs every group shares: parameters that were not really swept.
pub fn fixed_params(groups: &[Group<'_>]) -> Vec<(String, String)> {
    let Some((first, rest)) = groups.split_first() else {
        return Vec::new();
    };
    first
        .config
        .iter()
        .filter(|kv| rest.iter().all(|g| g.config.contains(kv)))
        .cloned()
        .collect()
}

/// One row of the headline table.
#[derive(Debug, Clone, PartialEq)]
pub struct Headline {
    /// The protocol.
    pub protocol: String,
    /// Swept parameters other than the load level, as `name=value`.
    pub config: Vec<(String, String)>,
    /// The part of `config` that differs between rows: what the table shows.
    pub varying: Vec<(String, String)>,
    /// How many repetitions the group has.
    pub repetitions: usize,
    /// Per repetition, the highest throughput (ops/s) whose p99 is under the SLO; repetitions
    /// with no point under the SLO do not count. `None` when no repetition has one.
    pub saturation_ops: Option<Stat>,
    /// Per repetition, the p50 (µs) at the lowest load level.
    pub low_load_p50_us: Option<Stat>,
    /// The point that gave each repetition's saturation throughput, by repetition.
    pub saturation_points: Vec<String>,
    /// The point that gave each repetition's low-load p50, by repetition.
    pub low_load_points: Vec<String>,
    /// Median saturation throughput over Unreplicated's in the same run.
    pub saturation_vs_unreplicated: Option<f64>,
    /// Median low-load p50 over Unreplicated's in the same run.
    pub p50_vs_unreplicated: Option<f64>,
}

impl Headline {
    /// `protocol name=value ...` with the varying parameters.
    pub fn label(&self) -> String {
        label(&self.protocol, &self.varying)
    }
}

/// The headline table of `run`: one row per protocol and configuration.
pub fn headlines(run: &Run) -> Vec<Headline> {
    let slo = run.slo_p99_us;
    let mut rows: Vec<Headline> = groups(run)
        .iter()
        .map(|g| {
            let reps = g.by_repetition();
            let saturation: Vec<&Point> = reps
                .values()
                .filter_map(|ps| {
                    ps.iter()
                        .filter(|p| p.meets_slo(slo))
                        .max_by(|a, b| a.throughput_ops.total_cmp(&b.throughput_ops))
                        .copied()
                })
                .collect();
            let low_load: Vec<&Point> = reps
                .values()
                .filter_map(|ps| {
                    ps.iter()
                        .min_by(|a, b| a.load_level().total_cmp(&b.load_level()))
                        .copied()
                })
                .collect();
            let figures = |ps: &[&Point], f: fn(&Point) -> f64| {
                Stat::of(&ps.iter().map(|p| f(p)).collect::<Vec<f64>>())
            };
            let ids = |ps: &[&Point]| ps.iter().map(|p| p.point_id.clone()).collect();
            Headline {
                protocol: g.protocol.clone(),
                config: g.config.clone(),
                varying: g.varying.clone(),
                repetitions: reps.len(),
                saturation_ops: figures(&saturation, |p| p.throughput_ops),
                low_load_p50_us: figures(&low_load, |p| p.p50_us),
                saturation_points: ids(&saturation),
                low_load_points: ids(&low_load),
                saturation_vs_unreplicated: None,
                p50_vs_unreplicated: None,
            }
        })
        .collect();

    let baselines: Vec<Headline> = rows
        .iter()
        .filter(|h| h.protocol == "unreplicated")
        .cloned()
        .collect();
    for row in &mut rows {
        let Some(base) = baseline_for(&baselines, &row.config) else {
            continue;
        };
        row.saturation_vs_unreplicated = ratio(row.saturation_ops, base.saturation_ops);
        row.p50_vs_unreplicated = ratio(row.low_load_p50_us, base.low_load_p50_us);
    }
    rows
}

/// The Unreplicated row to compare a configuration with: the one with the same configuration,
/// else the one sharing the most `name=value` pairs (the first on a tie).
fn baseline_for<'a>(
    baselines: &'a [Headline],
    config: &[(String, String)],
) -> Option<&'a Headline> {
    if let Some(same) = baselines.iter().find(|b| b.config == config) {
        return Some(same);
    }
    let shared = |b: &Headline| b.config.iter().filter(|kv| config.contains(kv)).count();
    baselines.iter().rev().max_by_key(|b| shared(b))
}

fn ratio(a: Option<Stat>, b: Option<Stat>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b.median > 0.0 => Some(a.median / b.median),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn point(protocol: &str, params: serde_json::Value, rate: f64, tput: f64, p99: f64) -> Point {
        serde_json::from_value(json!({
            "point_id": format!("{protocol}-{params}-{rate}"), "protocol": protocol,
            "params": params, "repetition": 0, "offered_ops": rate, "throughput_ops": tput,
            "p50_us": p99 / 2.0, "p90_us": p99, "p99_us": p99, "p999_us": p99, "max_us": p99,
            "mean_us": p99 / 2.0, "completed": 1, "errors": 0, "timeouts": 0,
        }))
        .unwrap()
    }

    #[test]
    fn configurations_are_compared_with_the_closest_unreplicated_run() {
        let points = vec![
            point("unreplicated", json!({"rate": 100}), 100.0, 100.0, 10.0),
            point("unreplicated", json!({"rate": 200}), 200.0, 200.0, 20.0),
            point(
                "multi-paxos",
                json!({"rate": 100, "max_batch": 1}),
                100.0,
                50.0,
                40.0,
            ),
            point(
                "multi-paxos",
                json!({"rate": 200, "max_batch": 1}),
                200.0,
                60.0,
                1e6,
            ),
            point(
                "multi-paxos",
                json!({"rate": 100, "max_batch": 100}),
                100.0,
                100.0,
                20.0,
            ),
            point(
                "multi-paxos",
                json!({"rate": 200, "max_batch": 100}),
                200.0,
                150.0,
                30.0,
            ),
        ];
        let run = Run {
            dir: "r".into(),
            name: "t".into(),
            description: None,
            slo_p99_us: 1000.0,
            env: Vec::new(),
            points,
            timelines: Default::default(),
            seconds: Default::default(),
        };
        let rows = headlines(&run);
        let labels: Vec<String> = rows.iter().map(Headline::label).collect();
        assert_eq!(
            labels,
            [
                "unreplicated",
                "multi-paxos max_batch=1",
                "multi-paxos max_batch=100"
            ]
        );
        let sat: Vec<f64> = rows
            .iter()
            .map(|h| h.saturation_ops.unwrap().median)
            .collect();
        assert_eq!(sat, [200.0, 50.0, 150.0]);
        assert_eq!(rows[1].saturation_vs_unreplicated, Some(0.25));
        assert_eq!(rows[2].saturation_vs_unreplicated, Some(0.75));
        // Low-load p50 at rate 100: 5 µs unreplicated, 20 and 10 µs replicated.
        assert_eq!(rows[1].p50_vs_unreplicated, Some(4.0));
        assert_eq!(rows[2].p50_vs_unreplicated, Some(2.0));
    }

    #[test]
    fn numeric_parameters_sort_as_numbers() {
        let c = |v: &str| vec![("window".to_string(), v.to_string())];
        assert!(cmp_config(&c("8"), &c("32")).is_lt());
        assert!(cmp_config(&c("b"), &c("a")).is_gt());
    }

    #[test]
    fn median_of_even_count_is_mean_of_middle_two() {
        let s = Stat::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.5, 1.0, 4.0, 4));
        assert_eq!(Stat::of(&[5.0, 1.0, 3.0]).unwrap().median, 3.0);
        assert!(Stat::of(&[]).is_none());
    }

    #[test]
    fn a_stat_carries_the_interval_of_its_median() {
        // Up to five values the 95% interval is the range; one value has none.
        let s = Stat::of(&[5.0, 1.0, f64::NAN, 3.0]).unwrap();
        assert_eq!((s.n, s.ci), (3, Some((1.0, 5.0))));
        assert_eq!(Stat::of(&[7.0]).unwrap().ci, None);
        // Seven: the ends move in by one (see stats::median_ci).
        let s = Stat::of(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 70.0]).unwrap();
        assert_eq!((s.min, s.max, s.ci), (1.0, 70.0, Some((2.0, 6.0))));
    }
}
