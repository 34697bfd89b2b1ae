//! What `paxbench run` records when an experiment lets the measurements decide: a rate search
//! (`[load] rates = "auto"`) and repetitions until the figures are tight (`repetitions =
//! "auto"`), and the summary section that reports both.
//!
//! ```text
//! search.jsonl       one SearchRecord per configuration and repetition: the bracket
//! repetitions.jsonl  one RepetitionRecord per configuration: why its repetitions stopped
//! ```
//!
//! Every level a search measures is also an ordinary line of `points.jsonl`, whose `search`
//! field ([`SearchStep`]) says which step it was and whether it passed.
//!
//! A search grows the offered rate geometrically from `start_ops` until a level fails, then
//! bisects between the last level that passed and the first that failed. A level *passes* when
//! requests completed, its p99 is under the SLO and no request failed or timed out. The *knee*
//! of a repetition is its highest passing rate (`pass_ops`); the section shows each
//! repetition's bracket and the median knee, and warns when a level of a bracket was
//! generator-bound (its failure may be the generator's).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::headline::Stat;
use crate::point::{label, protocol_rank, value_text, Point};
use crate::run::Run;
use crate::summary::{fmt_num, fmt_stat};

/// The file of [`SearchRecord`]s in a results directory.
pub const SEARCH_FILE: &str = "search.jsonl";

/// The file of [`RepetitionRecord`]s in a results directory.
pub const REPETITIONS_FILE: &str = "repetitions.jsonl";

/// Which part of a rate search measured a level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchPhase {
    /// Growing the rate geometrically from the start until a level fails.
    Grow,
    /// Halving the bracket between the highest passing and the lowest failing level.
    Bisect,
}

/// A point's place in a rate search: `points.jsonl`'s `search` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchStep {
    /// Growth or bisection.
    pub phase: SearchPhase,
    /// The level's index in its search, from 0.
    pub step: u32,
    /// Whether the level passed: completions, p99 under the SLO, no errors, no timeouts.
    pub passed: bool,
    /// Why it failed (every reason), when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// How a rate search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchOutcome {
    /// A passing and a failing level within the resolution (or 1 ops/s) of each other.
    Bracketed,
    /// `max_ops` passed: the knee is at least that, a bound only.
    ReachedMax,
    /// `start_ops` failed: the knee is below it, a bound only.
    BelowStart,
}

/// One repetition's rate search for one configuration: a line of `search.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchRecord {
    /// The protocol.
    pub protocol: String,
    /// The configuration: every swept parameter (the rate is what was searched).
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
    /// The repetition, from 0.
    pub repetition: u32,
    /// How the search ended.
    pub outcome: SearchOutcome,
    /// The highest rate that passed (ops/s): the knee. `None` when none did.
    pub pass_ops: Option<f64>,
    /// The lowest rate above `pass_ops` that failed (ops/s). `None` when none did.
    pub fail_ops: Option<f64>,
    /// The point measured at `pass_ops`.
    #[serde(default)]
    pub pass_point: Option<String>,
    /// The point measured at `fail_ops`.
    #[serde(default)]
    pub fail_point: Option<String>,
    /// Why the level at `fail_ops` failed.
    #[serde(default)]
    pub fail_why: Option<String>,
    /// Whether the level at `pass_ops` was generator-bound (its lag is in its latencies, so
    /// the pass stands, but the generator was at its limit).
    #[serde(default)]
    pub pass_generator_bound: bool,
    /// Whether the level at `fail_ops` was generator-bound: then the failure may be the
    /// generator's, and the system's knee is only known to be above `pass_ops`.
    #[serde(default)]
    pub fail_generator_bound: bool,
    /// How many levels the search measured.
    pub levels: u32,
    /// The search as configured: first rate (ops/s)...
    pub start_ops: f64,
    /// ...highest rate (ops/s)...
    pub max_ops: f64,
    /// ...growth factor...
    pub factor: f64,
    /// ...and the relative width `(fail − pass) / pass` at which bisection stops.
    pub resolution: f64,
    /// The SLO levels were judged by (µs).
    pub slo_p99_us: f64,
}

impl SearchRecord {
    /// `(fail − pass) / pass`, when both are known.
    pub fn width(&self) -> Option<f64> {
        match (self.pass_ops, self.fail_ops) {
            (Some(p), Some(f)) if p > 0.0 => Some((f - p) / p),
            _ => None,
        }
    }

    /// The configuration as `name=value` pairs.
    pub fn config(&self) -> Vec<(String, String)> {
        config_of(&self.params)
    }
}

/// Why a configuration's repetitions stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RepetitionOutcome {
    /// Every point's intervals were within the width (after at least the minimum).
    Converged,
    /// The maximum was reached with some interval still wider.
    MaxReached,
}

/// The 95% bootstrap interval of a median over repetitions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// The median.
    pub median: f64,
    /// The interval's low end.
    pub lo: f64,
    /// Its high end.
    pub hi: f64,
}

impl Interval {
    /// `(hi − lo) / median`: what the rule compares with `ci_width`. `None` for a median of 0.
    pub fn width(&self) -> Option<f64> {
        (self.median > 0.0).then(|| (self.hi - self.lo) / self.median)
    }
}

/// One point of a configuration (a load level, or a search's knee) over its repetitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointInterval {
    /// The load level (offered ops/s, or clients); `None`: the knee of a rate search, whose
    /// figures are those of each repetition's highest passing level.
    pub level: Option<f64>,
    /// Repetitions with a figure for it.
    pub n: usize,
    /// The interval of its p50 (µs); `None`: fewer than two figures.
    pub p50_us: Option<Interval>,
    /// The interval of its throughput (ops/s); `None`: fewer than two figures.
    pub throughput_ops: Option<Interval>,
}

impl PointInterval {
    /// Whether both intervals exist and are at most `ci_width` wide.
    pub fn within(&self, ci_width: f64) -> bool {
        let ok = |i: Option<Interval>| i.and_then(|i| i.width()).is_some_and(|w| w <= ci_width);
        ok(self.p50_us) && ok(self.throughput_ops)
    }
}

/// Why one configuration's repetitions stopped: a line of `repetitions.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepetitionRecord {
    /// The protocol.
    pub protocol: String,
    /// The configuration: every swept parameter.
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
    /// Converged or reached the maximum.
    pub outcome: RepetitionOutcome,
    /// How many repetitions ran.
    pub repetitions: u32,
    /// The rule: at least this many...
    pub min_repetitions: u32,
    /// ...at most this many...
    pub max_repetitions: u32,
    /// ...until every interval spans at most this share of its median.
    pub ci_width: f64,
    /// Every point's intervals after the last repetition.
    pub points: Vec<PointInterval>,
}

impl RepetitionRecord {
    /// The configuration as `name=value` pairs.
    pub fn config(&self) -> Vec<(String, String)> {
        config_of(&self.params)
    }

    /// The widest p50 and throughput intervals over its points (`None`: some point had none,
    /// or there were no points).
    pub fn widest(&self) -> (Option<f64>, Option<f64>) {
        let widest = |f: fn(&PointInterval) -> Option<Interval>| {
            if self.points.is_empty() {
                return None;
            }
            self.points
                .iter()
                .map(|p| f(p).and_then(|i| i.width()))
                .try_fold(0.0f64, |acc, w| w.map(|w| acc.max(w)))
        };
        (widest(|p| p.p50_us), widest(|p| p.throughput_ops))
    }
}

fn config_of(params: &BTreeMap<String, Value>) -> Vec<(String, String)> {
    params
        .iter()
        .map(|(k, v)| (k.clone(), value_text(v)))
        .collect()
}

/// The records of `dir/<file>` (none if the file is absent). A run killed mid-write leaves an
/// unterminated last line, which is skipped; any other bad line is an error naming it.
pub fn read_records<T: DeserializeOwned>(dir: &Path, file: &str) -> Result<Vec<T>> {
    let path = dir.join(file);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let count = text.lines().count();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(r) => out.push(r),
            Err(_) if i + 1 == count && !text.ends_with('\n') => {}
            Err(e) => return Err(e).with_context(|| format!("{}:{}", path.display(), i + 1)),
        }
    }
    Ok(out)
}

/// The "Saturation search" and "Repetitions" sections of `summary.md`, from `search.jsonl`
/// and `repetitions.jsonl` in the run's directory; empty when neither is there. A file that
/// cannot be read is reported in the section, never skipped silently.
pub fn section(run: &Run) -> String {
    let mut s = String::new();
    match read_records::<SearchRecord>(&run.dir, SEARCH_FILE) {
        Ok(records) if records.is_empty() => {}
        Ok(records) => s.push_str(&search_section(&records, &run.points)),
        Err(e) => {
            let _ = writeln!(s, "## Saturation search\n\n⚠ {e:#}\n");
        }
    }
    match read_records::<RepetitionRecord>(&run.dir, REPETITIONS_FILE) {
        Ok(records) if records.is_empty() => {}
        Ok(records) => s.push_str(&repetitions_section(&records)),
        Err(e) => {
            let _ = writeln!(s, "## Repetitions\n\n⚠ {e:#}\n");
        }
    }
    s
}

/// A protocol and a configuration (`name=value` pairs): what one row of a section is about.
type ConfigKey = (String, Vec<(String, String)>);

/// Records grouped by protocol and configuration, baseline first, in first-seen order else.
fn grouped<T>(records: &[T], key: impl Fn(&T) -> ConfigKey) -> Vec<(ConfigKey, Vec<&T>)> {
    let mut groups: Vec<(ConfigKey, Vec<&T>)> = Vec::new();
    for r in records {
        let k = key(r);
        match groups.iter_mut().find(|(g, _)| *g == k) {
            Some((_, rs)) => rs.push(r),
            None => groups.push((k, vec![r])),
        }
    }
    groups.sort_by_key(|((protocol, _), _)| protocol_rank(protocol));
    groups
}

fn search_section(records: &[SearchRecord], points: &[Point]) -> String {
    let mut s = String::from(
        "## Saturation search\n\n\
         | configuration | knee (ops/s) | per repetition: pass → fail (ops/s) | width | p99 at pass → fail (µs) | outcome |\n\
         |---|---:|---|---:|---|---|\n",
    );
    let p99_of = |id: &Option<String>| {
        id.as_ref()
            .and_then(|id| points.iter().find(|p| &p.point_id == id))
            .map_or("—".to_string(), |p| fmt_num(p.p99_us))
    };
    let mut generator_bound = false;
    for ((protocol, config), rs) in grouped(records, |r| (r.protocol.clone(), r.config())) {
        let knees: Vec<f64> = rs.iter().filter_map(|r| r.pass_ops).collect();
        let mut knee = fmt_stat(Stat::of(&knees));
        if knees.len() < rs.len() {
            let _ = write!(knee, " ({} of {} reps)", knees.len(), rs.len());
        }
        let opt = |x: Option<f64>| x.map_or("—".to_string(), fmt_num);
        let brackets: Vec<String> = rs
            .iter()
            .map(|r| {
                generator_bound |= r.pass_generator_bound || r.fail_generator_bound;
                let gen = match (r.pass_generator_bound, r.fail_generator_bound) {
                    (_, true) => " ⚠ generator-bound",
                    (true, false) => " ⚠ generator-bound pass",
                    (false, false) => "",
                };
                format!(
                    "{}: {} → {}{gen}",
                    r.repetition,
                    opt(r.pass_ops),
                    opt(r.fail_ops)
                )
            })
            .collect();
        let widths: Vec<String> = rs
            .iter()
            .map(|r| {
                r.width()
                    .map_or("—".into(), |w| format!("{:.1}%", w * 100.0))
            })
            .collect();
        let p99s: Vec<String> = rs
            .iter()
            .map(|r| format!("{} → {}", p99_of(&r.pass_point), p99_of(&r.fail_point)))
            .collect();
        let outcomes: Vec<String> = rs.iter().map(|r| outcome_text(r)).collect();
        let _ = writeln!(
            s,
            "| {} | {knee} | {} | {} | {} | {} |",
            label(&protocol, &config),
            brackets.join("; "),
            widths.join("; "),
            p99s.join("; "),
            dedup(outcomes).join("; "),
        );
    }
    s.push_str(
        "\nEach repetition searched on its own, on fresh clusters: the offered rate grew \
         geometrically from the start until a level failed, then the bracket between the last \
         pass and the first fail was halved until (fail − pass) / pass met the resolution. A \
         level passes when requests completed with p99 under the SLO and no errors or timeouts; \
         a cluster is replaced after every failing level. The knee is the highest passing rate: \
         the median over repetitions, [min–max].\n",
    );
    if generator_bound {
        s.push_str(
            "\n⚠ generator-bound: the load generator fell behind its schedule at the bracket's \
             failing level (with \"pass\": at its passing one). Its lag is in the latencies, so a \
             pass stands, but a failure may be the generator's: the system's knee is then only \
             known to be above the pass rate.\n",
        );
    }
    s.push('\n');
    s
}

fn outcome_text(r: &SearchRecord) -> String {
    match r.outcome {
        SearchOutcome::Bracketed => format!("bracketed to {}%", fmt_num(r.resolution * 100.0)),
        SearchOutcome::ReachedMax => format!(
            "max {} ops/s passed: knee ≥ max (a bound)",
            fmt_num(r.max_ops)
        ),
        SearchOutcome::BelowStart => format!(
            "start {} ops/s failed: knee < start (a bound)",
            fmt_num(r.start_ops)
        ),
    }
}

/// The distinct texts, in order (one outcome for every repetition that ended alike).
fn dedup(texts: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in texts {
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

fn repetitions_section(records: &[RepetitionRecord]) -> String {
    let mut s = String::from(
        "## Repetitions\n\n\
         | configuration | repetitions | stopped | widest p50 interval | widest throughput interval |\n\
         |---|---:|---|---:|---:|\n",
    );
    let pct = |w: Option<f64>| w.map_or("—".to_string(), |w| format!("{:.1}%", w * 100.0));
    for ((protocol, config), rs) in grouped(records, |r| (r.protocol.clone(), r.config())) {
        for r in rs {
            let stopped = match r.outcome {
                RepetitionOutcome::Converged => {
                    format!(
                        "converged: every interval ≤ {}%",
                        fmt_num(r.ci_width * 100.0)
                    )
                }
                RepetitionOutcome::MaxReached => format!(
                    "⚠ maximum ({}) reached, some interval > {}%",
                    r.max_repetitions,
                    fmt_num(r.ci_width * 100.0)
                ),
            };
            let (p50, tput) = r.widest();
            let _ = writeln!(
                s,
                "| {} | {} | {stopped} | {} | {} |",
                label(&protocol, &config),
                r.repetitions,
                pct(p50),
                pct(tput),
            );
        }
    }
    s.push_str(
        "\n`repetitions = \"auto\"`: a configuration was repeated (at least `min_repetitions`, at \
         most `max_repetitions` times) until, at every one of its points, the 95% bootstrap \
         interval of the median p50 and of the median throughput over repetitions each spanned at \
         most `ci_width` of that median; with a rate search the point is the knee (each \
         repetition's highest passing level). Widths are (high − low) / median; — means fewer \
         than two figures. With three repetitions the interval is about [min, max].\n\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(rep: u32, pass: Option<f64>, fail: Option<f64>, outcome: SearchOutcome) -> String {
        let r = SearchRecord {
            protocol: "unreplicated".into(),
            params: BTreeMap::new(),
            repetition: rep,
            outcome,
            pass_ops: pass,
            fail_ops: fail,
            pass_point: Some(format!("p{rep}a")),
            fail_point: None,
            fail_why: fail.map(|_| "p99 over the SLO".into()),
            pass_generator_bound: false,
            fail_generator_bound: false,
            levels: 6,
            start_ops: 1000.0,
            max_ops: 64000.0,
            factor: 2.0,
            resolution: 0.05,
            slo_p99_us: 10000.0,
        };
        serde_json::to_string(&r).unwrap()
    }

    fn run_in(dir: &Path) -> Run {
        Run {
            dir: dir.to_path_buf(),
            name: "t".into(),
            description: None,
            slo_p99_us: 10000.0,
            env: Vec::new(),
            points: Vec::new(),
            timelines: Default::default(),
            seconds: Default::default(),
        }
    }

    #[test]
    fn the_section_shows_each_bracket_and_the_median_knee() {
        let dir = tempfile::tempdir().unwrap();
        let lines = [
            search(0, Some(30000.0), Some(31000.0), SearchOutcome::Bracketed),
            search(1, Some(32000.0), Some(33000.0), SearchOutcome::Bracketed),
            search(2, None, Some(1000.0), SearchOutcome::BelowStart),
        ];
        std::fs::write(dir.path().join(SEARCH_FILE), lines.join("\n") + "\n").unwrap();
        let s = section(&run_in(dir.path()));
        let row = s
            .lines()
            .find(|l| l.starts_with("| unreplicated |"))
            .unwrap_or_else(|| panic!("{s}"));
        assert!(row.contains("31000 [30000–32000] (2 of 3 reps)"), "{row}");
        assert!(
            row.contains("0: 30000 → 31000; 1: 32000 → 33000; 2: — → 1000"),
            "{row}"
        );
        assert!(row.contains("3.3%; 3.1%; —"), "{row}");
        assert!(
            row.contains("bracketed to 5%; start 1000 ops/s failed"),
            "{row}"
        );
        assert!(!s.contains("## Repetitions"), "{s}");
    }

    #[test]
    fn a_bad_line_is_reported_not_skipped_and_no_file_is_no_section() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(section(&run_in(dir.path())), "");
        std::fs::write(dir.path().join(REPETITIONS_FILE), "{\"protocol\": 3}\n{}\n").unwrap();
        let s = section(&run_in(dir.path()));
        assert!(
            s.starts_with("## Repetitions\n\n⚠ ") && s.contains("repetitions.jsonl:1"),
            "{s}"
        );
    }

    #[test]
    fn widest_intervals_say_when_a_point_had_none() {
        let i = |median, lo, hi| Some(Interval { median, lo, hi });
        let mut r = RepetitionRecord {
            protocol: "multi-paxos".into(),
            params: BTreeMap::new(),
            outcome: RepetitionOutcome::MaxReached,
            repetitions: 5,
            min_repetitions: 3,
            max_repetitions: 5,
            ci_width: 0.1,
            points: vec![
                PointInterval {
                    level: Some(100.0),
                    n: 5,
                    p50_us: i(100.0, 95.0, 105.0),
                    throughput_ops: i(100.0, 99.0, 101.0),
                },
                PointInterval {
                    level: Some(200.0),
                    n: 5,
                    p50_us: i(200.0, 180.0, 230.0),
                    throughput_ops: i(200.0, 199.0, 201.0),
                },
            ],
        };
        let (p50, tput) = r.widest();
        assert!((p50.unwrap() - 0.25).abs() < 1e-9 && (tput.unwrap() - 0.02).abs() < 1e-9);
        assert!(r.points[0].within(0.1) && !r.points[1].within(0.1));
        r.points[0].p50_us = None;
        assert_eq!(r.widest().0, None);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(REPETITIONS_FILE),
            serde_json::to_string(&r).unwrap() + "\n",
        )
        .unwrap();
        let s = section(&run_in(dir.path()));
        assert!(
            s.contains(
                "| multi-paxos | 5 | ⚠ maximum (5) reached, some interval > 10% | — | 2.0% |"
            ),
            "{s}"
        );
    }
}
