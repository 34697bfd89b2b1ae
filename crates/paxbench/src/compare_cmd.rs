//! `paxbench compare DIR_A DIR_B [--level 0.05]`: two runs side by side. For every figure they
//! share (saturation and low-load p50 per configuration; throughput, p50 and p99 per load
//! level), both medians with their 95% intervals, the ratio B/A and a Mann–Whitney verdict at
//! the level: over the repetitions, or over the per-second intervals when a side has one
//! repetition (a weaker verdict), never "differs" on one sample (see `results::verdict`).

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

/// Arguments of `paxbench compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The baseline results directory (A).
    dir_a: PathBuf,
    /// The results directory compared with it (B).
    dir_b: PathBuf,
    /// The significance level of the tests: a difference is called real when its two-sided
    /// p-value is at most this (between 0 and 1, exclusive).
    #[arg(long, default_value_t = results::DEFAULT_LEVEL)]
    level: f64,
}

/// Prints the comparison as markdown.
pub fn run(args: &CompareArgs) -> Result<bool> {
    check_level(args.level)?;
    let table = results::compare(&args.dir_a, &args.dir_b, args.level)?;
    // A closed stdout (e.g. piped into `head`) is not a failure.
    let _ = std::io::stdout().lock().write_all(table.as_bytes());
    Ok(true)
}

fn check_level(level: f64) -> Result<()> {
    if !(level > 0.0 && level < 1.0) {
        bail!("--level {level}: the significance level must be between 0 and 1 (exclusive)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_level_outside_zero_to_one_is_refused() {
        for bad in [0.0, 1.0, -0.05, 5.0, f64::NAN] {
            let err = check_level(bad).unwrap_err().to_string();
            assert!(err.starts_with("--level "), "{err}");
        }
        assert!(check_level(0.05).is_ok());
    }
}
