//! Two runs side by side: for every figure they share, both medians with their 95% intervals,
//! the ratio B/A of the medians, and whether the difference is real.
//!
//! The test is the two-sided Mann–Whitney U test ([`crate::stats::mann_whitney`]) at a level
//! the caller picks (0.05 by default), over:
//!
//! - the repetitions' figures, one value per repetition, when each side has at least two;
//! - else the per-second values of the points' interval logs ([`crate::Seconds`]), pooled over
//!   each side's repetitions, when both sides have at least two seconds. Consecutive seconds of
//!   one run share its conditions (its cluster, its placement, a stall that spans seconds), so
//!   they are not independent draws and the p-value is optimistic: such a verdict is marked
//!   `per-second` and is weaker;
//! - else there is no test: a difference is never called real on one sample.
//!
//! When the repetitions are too few for any outcome to reach the level (3 against 3 cannot go
//! below p = 0.1), the verdict says so ("cannot tell") rather than "no significant
//! difference", and the pooled seconds are tested as well, labelled as such.

use std::fmt::{self, Write as _};

use crate::headline::{groups, headlines, Headline, Stat};
use crate::point::Point;
use crate::run::Run;
use crate::seconds::Seconds;
use crate::stats::{mann_whitney, MannWhitney};
use crate::summary::{config_text, fmt_ci, fmt_num};

/// The level `paxbench compare` tests at unless told otherwise.
pub const DEFAULT_LEVEL: f64 = 0.05;

/// One side's values of one figure.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// The figure of each repetition.
    pub repetitions: Vec<f64>,
    /// The per-second values behind the figure, pooled over the repetitions; `None` unless
    /// every repetition has an interval log.
    pub seconds: Option<Vec<f64>>,
}

/// What a test compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// One value per repetition.
    Repetitions,
    /// The per-second values, pooled over the repetitions.
    Seconds,
}

/// One Mann–Whitney test at a level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Test {
    /// What was compared.
    pub basis: Basis,
    /// The outcome.
    pub mw: MannWhitney,
    /// The level it was judged at.
    pub level: f64,
}

/// Whether two samples differ.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// p ≤ level.
    Differs(Test),
    /// p > level, and the sizes could have reached the level.
    NoDifference(Test),
    /// No outcome with these sizes reaches the level (`min_p > level`), so the test cannot
    /// tell; for repetitions, with the verdict over the pooled seconds when there are any.
    CannotTell {
        /// The test that could not reach the level.
        test: Test,
        /// The pooled per-second verdict, if both sides have seconds.
        pooled: Option<Box<Verdict>>,
    },
    /// No test, and why (one sample on a side with no seconds, or no value at all).
    NoTest(&'static str),
}

impl Verdict {
    /// True only for [`Verdict::Differs`]: a test at the level found a difference.
    pub fn differs(&self) -> bool {
        matches!(self, Verdict::Differs(_))
    }
}

/// The verdict on `a` against `b` at `level` (module docs for which values are compared).
pub fn verdict(a: &Sample, b: &Sample, level: f64) -> Verdict {
    let (n_a, n_b) = (finite(&a.repetitions), finite(&b.repetitions));
    if n_a == 0 || n_b == 0 {
        return Verdict::NoTest("no value on one side: no test");
    }
    if n_a >= 2 && n_b >= 2 {
        let Some(mw) = mann_whitney(&a.repetitions, &b.repetitions) else {
            // Unreachable: two finite values a side always give a test.
            return Verdict::NoTest("no test");
        };
        let test = Test {
            basis: Basis::Repetitions,
            mw,
            level,
        };
        return match judge(test) {
            Verdict::CannotTell { test, .. } => Verdict::CannotTell {
                test,
                pooled: seconds_verdict(a, b, level).map(Box::new),
            },
            v => v,
        };
    }
    seconds_verdict(a, b, level).unwrap_or(Verdict::NoTest("one sample: no test"))
}

/// The verdict over the pooled seconds, if both sides have at least two.
fn seconds_verdict(a: &Sample, b: &Sample, level: f64) -> Option<Verdict> {
    let (sa, sb) = (a.seconds.as_ref()?, b.seconds.as_ref()?);
    if finite(sa) < 2 || finite(sb) < 2 {
        return None;
    }
    Some(judge(Test {
        basis: Basis::Seconds,
        mw: mann_whitney(sa, sb)?,
        level,
    }))
}

fn judge(test: Test) -> Verdict {
    if test.mw.p <= test.level {
        Verdict::Differs(test)
    } else if test.mw.min_p() > test.level {
        Verdict::CannotTell { test, pooled: None }
    } else {
        Verdict::NoDifference(test)
    }
}

fn finite(values: &[f64]) -> usize {
    values.iter().filter(|x| x.is_finite()).count()
}

impl fmt::Display for Test {
    /// `p=0.0079, 5 vs 5 reps` or `p=0.0079, 3 vs 9 s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.basis {
            Basis::Repetitions => "reps",
            Basis::Seconds => "s",
        };
        write!(
            f,
            "{}, {} vs {} {unit}",
            p_text(self.mw.p),
            self.mw.n_a,
            self.mw.n_b
        )
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = |t: &Test| match t.basis {
            Basis::Repetitions => "",
            Basis::Seconds => "per-second: ",
        };
        match self {
            Verdict::Differs(t) => write!(f, "{}differs ({t})", prefix(t)),
            Verdict::NoDifference(t) => {
                write!(f, "{}no significant difference ({t})", prefix(t))
            }
            Verdict::CannotTell { test: t, pooled } => {
                let unit = match t.basis {
                    Basis::Repetitions => "reps",
                    Basis::Seconds => "s",
                };
                write!(
                    f,
                    "{}cannot tell ({}): {} vs {} {unit} cannot reach p ≤ {}",
                    prefix(t),
                    p_text(t.mw.p),
                    t.mw.n_a,
                    t.mw.n_b,
                    t.level
                )?;
                if let Some(pooled) = pooled {
                    write!(f, "; pooled {pooled}")?;
                }
                Ok(())
            }
            Verdict::NoTest(why) => f.write_str(why),
        }
    }
}

/// A p-value with the digits that matter: `p=0.42`, `p=0.053`, `p=0.0079`, `p<0.0001`.
fn p_text(p: f64) -> String {
    if p >= 0.1 {
        format!("p={p:.2}")
    } else if p >= 0.01 {
        format!("p={p:.3}")
    } else if p >= 0.0001 {
        format!("p={p:.4}")
    } else {
        "p<0.0001".into()
    }
}

/// The values of figure `f` over `points`, with the per-second series `seconds` of each.
fn sample(run: &Run, points: &[&Point], f: fn(&Point) -> f64, seconds: PerSecond) -> Sample {
    let pooled: Option<Vec<Vec<f64>>> = points
        .iter()
        .map(|p| run.seconds.get(&p.point_id).map(|s| seconds(s).to_vec()))
        .collect();
    Sample {
        repetitions: points
            .iter()
            .map(|p| f(p))
            .filter(|x| x.is_finite())
            .collect(),
        seconds: pooled.map(|v| v.concat()),
    }
}

/// Which per-second series goes with a figure.
type PerSecond = fn(&Seconds) -> &[f64];

/// A figure of a point: its name, its value and its per-second series.
type Figure = (&'static str, fn(&Point) -> f64, PerSecond);

/// The points of `run` with these ids.
fn points_by_id<'a>(run: &'a Run, ids: &[String]) -> Vec<&'a Point> {
    ids.iter()
        .filter_map(|id| run.points.iter().find(|p| &p.point_id == id))
        .collect()
}

/// One figure of one shared row: both samples, and the verdict.
struct Row {
    figure: &'static str,
    a: Sample,
    b: Sample,
}

impl Row {
    /// `| A | B | B/A | verdict |`.
    fn cells(&self, level: f64) -> String {
        let (sa, sb) = (Stat::of(&self.a.repetitions), Stat::of(&self.b.repetitions));
        let ratio = match (sa, sb) {
            (Some(a), Some(b)) if a.median > 0.0 => format!("{:.2}×", b.median / a.median),
            _ => "—".into(),
        };
        format!(
            "{} | {} | {ratio} | {} |",
            fmt_ci(sa),
            fmt_ci(sb),
            verdict(&self.a, &self.b, level)
        )
    }
}

/// The headline rows of one configuration: saturation and low-load p50.
fn headline_rows(run_a: &Run, a: &Headline, run_b: &Run, b: &Headline) -> [Row; 2] {
    let side = |run: &Run, ids: &[String], f: fn(&Point) -> f64, s: PerSecond| {
        sample(run, &points_by_id(run, ids), f, s)
    };
    [
        Row {
            figure: "saturation (ops/s)",
            a: side(
                run_a,
                &a.saturation_points,
                |p| p.throughput_ops,
                |s| &s.throughput_ops,
            ),
            b: side(
                run_b,
                &b.saturation_points,
                |p| p.throughput_ops,
                |s| &s.throughput_ops,
            ),
        },
        Row {
            figure: "low-load p50 (µs)",
            a: side(run_a, &a.low_load_points, |p| p.p50_us, |s| &s.p50_us),
            b: side(run_b, &b.low_load_points, |p| p.p50_us, |s| &s.p50_us),
        },
    ]
}

/// The figures compared at every shared load level.
const LEVEL_FIGURES: [Figure; 3] = [
    (
        "throughput (ops/s)",
        |p| p.throughput_ops,
        |s| &s.throughput_ops,
    ),
    ("p50 (µs)", |p| p.p50_us, |s| &s.p50_us),
    ("p99 (µs)", |p| p.p99_us, |s| &s.p99_us),
];

/// Both runs side by side as markdown: a Headline table (saturation and low-load p50 per
/// protocol and configuration) and a Load levels table (throughput, p50 and p99 at every load
/// level both runs measured for the same protocol and configuration), each figure with both
/// medians and their 95% intervals, the ratio B/A and the verdict at `level` (module docs).
pub fn compare(a: &Run, b: &Run, level: f64) -> String {
    let mut s = String::new();
    for (tag, run) in [("A", a), ("B", b)] {
        let reps: std::collections::BTreeSet<u32> =
            run.points.iter().map(|p| p.repetition).collect();
        let _ = writeln!(
            s,
            "{tag}: {} ({}; git {}; SLO p99 < {} µs; {} repetition(s))",
            run.name,
            run.dir.display(),
            run.env_fact("git revision").unwrap_or("?"),
            run.slo_p99_us,
            reps.len()
        );
    }
    if a.slo_p99_us != b.slo_p99_us {
        s.push_str(
            "\n⚠ The runs have different SLOs, so their saturation throughputs are not measured \
             against the same bar.\n",
        );
    }

    let header = format!("verdict (level {level})");
    let _ = write!(
        s,
        "\n## Headline\n\n| protocol | config | figure | A | B | B/A | {header} |\n\
         |---|---|---|---:|---:|---:|---|\n"
    );
    let rows_a = headlines(a);
    let rows_b = headlines(b);
    let key = |h: &Headline| (h.protocol.clone(), h.config.clone());
    let mut keys: Vec<_> = rows_a.iter().map(key).collect();
    for h in &rows_b {
        if !keys.contains(&key(h)) {
            keys.push(key(h));
        }
    }
    for k in keys {
        let ha = rows_a.iter().find(|h| key(h) == k);
        let hb = rows_b.iter().find(|h| key(h) == k);
        let config = config_text(&ha.or(hb).map_or(k.1.clone(), |h| h.varying.clone()));
        match (ha, hb) {
            (Some(ha), Some(hb)) => {
                for row in headline_rows(a, ha, b, hb) {
                    let _ = writeln!(
                        s,
                        "| {} | {config} | {} | {}",
                        k.0,
                        row.figure,
                        row.cells(level)
                    );
                }
            }
            (Some(_), None) => {
                let _ = writeln!(s, "| {} | {config} | all | | | — | only in A |", k.0);
            }
            _ => {
                let _ = writeln!(s, "| {} | {config} | all | | | — | only in B |", k.0);
            }
        }
    }

    let _ = write!(
        s,
        "\n## Load levels\n\n| protocol | config | load | figure | A | B | B/A | {header} |\n\
         |---|---|---:|---|---:|---:|---:|---|\n"
    );
    let groups_b = groups(b);
    let (mut only_a, mut shared) = (0, 0);
    for ga in groups(a) {
        let gb = groups_b
            .iter()
            .find(|g| g.protocol == ga.protocol && g.config == ga.config);
        let levels_b = gb.map(|g| g.by_load()).unwrap_or_default();
        for (load, ps_a) in ga.by_load() {
            let Some((_, ps_b)) = levels_b.iter().find(|(l, _)| *l == load) else {
                only_a += 1;
                continue;
            };
            shared += 1;
            for (figure, f, per_second) in LEVEL_FIGURES {
                let row = Row {
                    figure,
                    a: sample(a, &ps_a, f, per_second),
                    b: sample(b, ps_b, f, per_second),
                };
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {figure} | {}",
                    ga.protocol,
                    config_text(&ga.varying),
                    fmt_num(load),
                    row.cells(level)
                );
            }
        }
    }
    let levels = |run: &Run| -> usize { groups(run).iter().map(|g| g.by_load().len()).sum() };
    let only_b = levels(b) - shared;
    if only_a + only_b > 0 {
        let _ = writeln!(
            s,
            "\nNot shared: {only_a} load level(s) only in A, {only_b} only in B."
        );
    }

    let _ = write!(
        s,
        "\nA, B: the median over repetitions, with [lo–hi] its 95% percentile-bootstrap interval \
         (with 2 to 5 repetitions, their min–max) and (range min–max) where they spread wider. \
         B/A: the ratio of the medians. Verdict: the two-sided Mann–Whitney U test at level \
         {level} over the repetitions' figures, one value per repetition (\"differs\" when \
         p ≤ {level}). \"cannot tell\": with so few repetitions no outcome reaches the level \
         (3 against 3 cannot go below p = 0.1), so no difference could be called real; the \
         per-second values are then tested too, pooled over the repetitions. \"per-second\": a \
         side has one repetition (or the pooled test above), so the test is over the \
         1-second intervals of the interval logs; seconds of one run share its conditions and \
         are not independent, so that p-value is optimistic and the verdict weaker. \"one \
         sample: no test\": a side has one value and no per-second data. Over many rows, about \
         one in {} differs at this level by chance alone.\n",
        fmt_num(1.0 / level)
    );
    s
}

/// Whether B differs from A by no more than either run's spread across repetitions (max −
/// min): the rough test `compare` used before it had a real one, kept for callers.
pub fn within_spread(a: Stat, b: Stat) -> bool {
    (b.median - a.median).abs() <= a.spread().max(b.spread())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reps(values: &[f64]) -> Sample {
        Sample {
            repetitions: values.to_vec(),
            seconds: None,
        }
    }

    fn with_seconds(values: &[f64], seconds: &[f64]) -> Sample {
        Sample {
            repetitions: values.to_vec(),
            seconds: Some(seconds.to_vec()),
        }
    }

    #[test]
    fn five_separated_repetitions_a_side_differ() {
        let a = reps(&[100.0, 101.0, 102.0, 103.0, 104.0]);
        let b = reps(&[200.0, 201.0, 202.0, 203.0, 204.0]);
        let v = verdict(&a, &b, 0.05);
        // Exact: 2 / C(10, 5) = 2/252 = 0.0079.
        assert!(v.differs(), "{v}");
        assert_eq!(v.to_string(), "differs (p=0.0079, 5 vs 5 reps)");
        // At level 0.005 no outcome of 5 against 5 is enough: min_p = 0.0079.
        let v = verdict(&a, &b, 0.005);
        assert_eq!(
            v.to_string(),
            "cannot tell (p=0.0079): 5 vs 5 reps cannot reach p ≤ 0.005"
        );
    }

    #[test]
    fn interleaved_repetitions_do_not_differ() {
        // The ranks of a, 1 + 4 + 5 + 8 = 18, sum to their mean 4 · 9 / 2: p = 1.
        let a = reps(&[1.0, 4.0, 5.0, 8.0]);
        let b = reps(&[2.0, 3.0, 6.0, 7.0]);
        let v = verdict(&a, &b, 0.05);
        assert!(matches!(v, Verdict::NoDifference(_)), "{v}");
        assert_eq!(
            v.to_string(),
            "no significant difference (p=1.00, 4 vs 4 reps)"
        );
    }

    #[test]
    fn three_repetitions_a_side_cannot_tell_and_test_the_pooled_seconds() {
        let a = with_seconds(&[1.0, 2.0, 3.0], &[1.0, 1.1, 1.2, 2.0, 2.1, 2.2]);
        let b = with_seconds(&[4.0, 5.0, 6.0], &[4.0, 4.1, 4.2, 5.0, 5.1, 5.2]);
        let v = verdict(&a, &b, 0.05);
        assert!(!v.differs(), "{v}");
        // Separated 6 vs 6 seconds: 2 / C(12, 6) = 2/924 = 0.0022.
        assert_eq!(
            v.to_string(),
            "cannot tell (p=0.10): 3 vs 3 reps cannot reach p ≤ 0.05; \
             pooled per-second: differs (p=0.0022, 6 vs 6 s)"
        );
        // Without seconds, only the first part.
        assert_eq!(
            verdict(&reps(&[1.0, 2.0, 3.0]), &reps(&[4.0, 5.0, 6.0]), 0.05).to_string(),
            "cannot tell (p=0.10): 3 vs 3 reps cannot reach p ≤ 0.05"
        );
    }

    #[test]
    fn one_repetition_is_tested_over_its_seconds_or_not_at_all() {
        let a = with_seconds(&[10.0], &[10.0, 10.5, 11.0, 9.5, 10.2]);
        let b = with_seconds(&[20.0], &[20.0, 20.5, 21.0, 19.5, 20.2]);
        let v = verdict(&a, &b, 0.05);
        assert!(v.differs(), "{v}");
        assert_eq!(v.to_string(), "per-second: differs (p=0.0079, 5 vs 5 s)");
        // No seconds on one side: however far apart, one value is no test.
        for (a, b) in [
            (reps(&[10.0]), reps(&[1e9])),
            (reps(&[10.0]), reps(&[1e9, 2e9, 3e9, 4e9, 5e9, 6e9])),
            (a.clone(), reps(&[1e9])),
        ] {
            let v = verdict(&a, &b, 0.05);
            assert_eq!(v, Verdict::NoTest("one sample: no test"), "{v}");
        }
        // One second on a side is one sample too.
        let one_second = with_seconds(&[10.0], &[10.0]);
        let v = verdict(&one_second, &b, 0.05);
        assert_eq!(v, Verdict::NoTest("one sample: no test"), "{v}");
        assert_eq!(
            verdict(&reps(&[]), &b, 0.05),
            Verdict::NoTest("no value on one side: no test")
        );
    }

    #[test]
    fn p_values_keep_their_significant_digits() {
        assert_eq!(p_text(0.4242), "p=0.42");
        assert_eq!(p_text(0.0532), "p=0.053");
        assert_eq!(p_text(0.00794), "p=0.0079");
        assert_eq!(p_text(0.00001), "p<0.0001");
    }
}
