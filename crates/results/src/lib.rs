//! Turns a paxbench results directory into the tables and plots people publish.
//!
//! `paxbench run` writes `results/<timestamp>-<name>/` with the raw measurements:
//!
//! ```text
//! config.toml      the resolved experiment (name, description, slo_p99_us)
//! env.json         host, CPU, cores, kernel, rustc, git revision, start/end
//! points.jsonl     one Point per line (see Point for the schema)
//! hist/<point_id>.hlog   HdrHistogram interval log (µs, 3 significant digits, 1 s intervals)
//! timeline/<point_id>.csv           runs with faults: the measured window in buckets
//!                                   (t_ms,width_ms,completions,errors,timeouts,p50_us,p99_us)
//! timeline/<point_id>.markers.csv   its fault starts/ends and leader changes (t_ms,kind,label)
//! search.jsonl       rate searches (`rates = "auto"`): one bracket per configuration and
//!                    repetition (see [`SearchRecord`]); each level searched is also a point,
//!                    whose `search` field says its step
//! repetitions.jsonl  `repetitions = "auto"`: why each configuration's repetitions stopped
//!                    (see [`RepetitionRecord`])
//! ```
//!
//! A point with faults also carries, in points.jsonl, `faults` (every fault tried, applied or
//! not, with its error), `availability` (see [`Availability`]) and `linearizable` (the
//! checker's verdict, see [`LinearizabilityResult`]). All three are optional, so older files
//! load unchanged. See [`timeline`] for the CSV formats.
//!
//! A point of a replicated cluster also carries `counters` (what its nodes counted while the load
//! ran, and the figures per command: see [`Contention`]) and every point `stall` (its longest
//! stretch without a completion and whether it counts as a livelock: see [`Stall`]); both are
//! optional too. With counters, `summary.md` gains a Contention section and `summary.csv` its
//! columns.
//!
//! [`render`] reads those and (re)writes what is derived from them:
//!
//! ```text
//! summary.md       header, headline table, load levels (when repeated), per-point table;
//!                  with search.jsonl or repetitions.jsonl, the Saturation search and
//!                  Repetitions sections
//! summary.csv      the per-point table, machine-readable
//! plots/throughput-latency.svg   p50 and p99 vs throughput, one line per protocol/config
//! plots/latency-cdf.svg          latency by percentile at each protocol's saturation point
//! plots/proposers.svg            runs that sweep `target` over node lists: peak throughput and
//!                                p99 against the number of proposing nodes, per configuration
//! plots/timeline-<point_id>.svg  per point with a timeline and a fault (or a marker):
//!                                completions and failures per second, p99/p50, markers
//! ```
//!
//! With faults, `summary.md` gains an Availability section (per protocol, configuration and
//! load level: longest gap, recovery, p99 before → after, failed requests, linearizability,
//! links to the timeline plots) with a warning line for each fault that was not applied (or
//! not undone cleanly), and
//! `summary.csv` the same figures per point. `availability` is recomputed from `timeline/`
//! whenever that is there, so `paxbench report` re-derives it from the raw files. A point with
//! `reconfigure` faults and a timeline also gets a row per change in a Membership changes
//! section (see [`ChangeFigures`]), computed from the timeline alone.
//!
//! Definitions used throughout:
//!
//! - A *group* is one protocol with one *configuration*: every swept parameter except the load
//!   level. The load level is `offered_ops` for open loop, else the first of
//!   [`CLOSED_LOOP_LOAD_PARAMS`] among the parameters.
//! - *Saturation throughput* of a repetition is the highest throughput among its points whose
//!   p99 is below the SLO (`slo_p99_us` in config.toml, default 10 000 µs).
//! - *Low-load p50* of a repetition is the p50 at its lowest load level.
//! - Across repetitions each, and throughput, p50 and p99 at each load level (the Load levels
//!   table), is reported as the median with its 95% percentile-bootstrap interval
//!   ([`Stat::ci`], [`stats::median_ci`]); ratios to Unreplicated divide medians, taking the
//!   Unreplicated group with the same (or the most similar) configuration. `summary.csv`
//!   carries the same per level (`*_median`, `*_ci_lo`, `*_ci_hi`).
//! - *Per-second* figures come from a point's interval log ([`Seconds`], loaded into
//!   [`Run::seconds`]): the points table and `summary.csv` give the median and nearest-rank
//!   p5–p95 of its per-second throughput and p99 ([`Spread`]).
//!
//! [`compare()`] puts two runs side by side and tests every shared figure for a difference
//! ([`verdict`]: the Mann–Whitney U test over repetitions, or over seconds when a side has
//! one repetition).

mod availability;
mod compare;
pub mod contention;
mod headline;
mod hist;
mod plot;
mod point;
mod proposers_plot;
mod run;
pub mod search;
mod seconds;
pub mod stats;
mod summary;
pub mod timeline;
mod timeline_plot;

use std::path::Path;

use anyhow::{Context, Result};

pub use availability::{
    fault_windows, membership_changes, Availability, ChangeFigures, FaultWindow, CHANGE_SPAN_MS,
};
pub use contention::{Contention, CounterValues, NodeCounters, PerCommand, Stall, TrafficValues};
pub use headline::{fixed_params, groups, headlines, Group, Headline, Stat};
pub use hist::{read_interval_log, read_intervals, read_merged, read_timed_intervals};
pub use plot::{LATENCY_CDF, THROUGHPUT_LATENCY};
pub use point::{
    FaultRecord, FinalReads, LinearizabilityResult, LinkRtt, NodeStats, Point, Staleness,
    CLOSED_LOOP_LOAD_PARAMS, LINEARIZABLE, NOT_CHECKED, OPEN_LOOP_LOAD_PARAMS, UNKNOWN, VIOLATION,
};
pub use proposers_plot::PROPOSERS;
pub use run::{Run, DEFAULT_SLO_P99_US};
pub use search::{
    Interval, PointInterval, RepetitionOutcome, RepetitionRecord, SearchOutcome, SearchPhase,
    SearchRecord, SearchStep, REPETITIONS_FILE, SEARCH_FILE,
};
pub use seconds::{Seconds, Spread};
pub use summary::{csv, headline_table, markdown};
pub use timeline::{
    read_timeline, write_timeline, Marker, MarkerKind, Timeline, TimelineRow, TIMELINE_DIR,
};
pub use timeline_plot::{timeline_plot_name, timeline_svg};

/// Reads the raw files of the results directory `dir` (points.jsonl, config.toml, env.json,
/// hist/, timeline/) and writes `summary.md`, `summary.csv` and `plots/*.svg` into it. Returns
/// the loaded run.
pub fn render(dir: &Path) -> Result<Run> {
    let run = Run::load(dir)?;
    write(&dir.join("summary.md"), &markdown(&run))?;
    write(&dir.join("summary.csv"), &csv(&run))?;
    plot::render(&run, &dir.join("plots"))?;
    Ok(run)
}

/// Both runs side by side: per shared figure both medians with their 95% intervals, the ratio
/// B/A and a Mann–Whitney verdict at `level` (see [`verdict`] for which values are tested).
pub fn compare(dir_a: &Path, dir_b: &Path, level: f64) -> Result<String> {
    let a = Run::load(dir_a)?;
    let b = Run::load(dir_b)?;
    Ok(compare::compare(&a, &b, level))
}

pub use compare::{verdict, within_spread, Basis, Sample, Test, Verdict, DEFAULT_LEVEL};

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
