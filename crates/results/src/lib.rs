//! Turns a paxbench results directory into the tables and plots people publish.
//!
//! `paxbench run` writes `results/<timestamp>-<name>/` with the raw measurements:
//!
//! ```text
//! config.toml      the resolved experiment (name, description, slo_p99_us)
//! env.json         host, CPU, cores, kernel, rustc, git revision, start/end
//! points.jsonl     one Point per line (see Point for the schema)
//! hist/<point_id>.hlog   HdrHistogram interval log (µs, 3 significant digits, 1 s intervals)
//! ```
//!
//! [`render`] reads those and (re)writes what is derived from them:
//!
//! ```text
//! summary.md       header, headline table, per-point table
//! summary.csv      the per-point table, machine-readable
//! plots/throughput-latency.svg   p50 and p99 vs throughput, one line per protocol/config
//! plots/latency-cdf.svg          latency by percentile at each protocol's saturation point
//! ```
//!
//! Definitions used throughout:
//!
//! - A *group* is one protocol with one *configuration*: every swept parameter except the load
//!   level. The load level is `offered_ops` for open loop, else the first of
//!   [`CLOSED_LOOP_LOAD_PARAMS`] among the parameters.
//! - *Saturation throughput* of a repetition is the highest throughput among its points whose
//!   p99 is below the SLO (`slo_p99_us` in config.toml, default 10 000 µs).
//! - *Low-load p50* of a repetition is the p50 at its lowest load level.
//! - Across repetitions each is reported as the median with [min–max]; ratios to Unreplicated
//!   divide medians, taking the Unreplicated group with the same (or the most similar)
//!   configuration.
//!
//! [`compare`] puts two runs' headline tables side by side.

mod compare;
mod headline;
mod hist;
mod plot;
mod point;
mod run;
mod summary;

use std::path::Path;

use anyhow::{Context, Result};

pub use headline::{fixed_params, groups, headlines, Group, Headline, Stat};
pub use hist::{read_interval_log, read_intervals, read_merged};
pub use plot::{LATENCY_CDF, THROUGHPUT_LATENCY};
pub use point::{LinkRtt, NodeStats, Point, CLOSED_LOOP_LOAD_PARAMS, OPEN_LOOP_LOAD_PARAMS};
pub use run::{Run, DEFAULT_SLO_P99_US};
pub use summary::{csv, headline_table, markdown};

/// Reads the raw files of the results directory `dir` and writes `summary.md`, `summary.csv`
/// and `plots/*.svg` into it. Returns the loaded run.
pub fn render(dir: &Path) -> Result<Run> {
    let run = Run::load(dir)?;
    write(&dir.join("summary.md"), &markdown(&run))?;
    write(&dir.join("summary.csv"), &csv(&run))?;
    plot::render(&run, &dir.join("plots"))?;
    Ok(run)
}

/// Both runs' headline tables side by side, with B/A ratios and `~` marking differences
/// within the run-to-run spread (see [`compare::compare`]).
pub fn compare(dir_a: &Path, dir_b: &Path) -> Result<String> {
    let a = Run::load(dir_a)?;
    let b = Run::load(dir_b)?;
    Ok(compare::compare(&a, &b))
}

pub use compare::within_spread;

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
