//! `paxbench compare DIR_A DIR_B`: two runs' headline tables side by side, with B/A ratios;
//! `~` marks a difference within the run-to-run spread (min–max over repetitions).

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

/// Arguments of `paxbench compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The baseline results directory (A).
    dir_a: PathBuf,
    /// The results directory compared with it (B).
    dir_b: PathBuf,
}

/// Prints the comparison as a markdown table.
pub fn run(args: &CompareArgs) -> Result<bool> {
    let table = results::compare(&args.dir_a, &args.dir_b)?;
    let _ = std::io::stdout().lock().write_all(table.as_bytes());
    Ok(true)
}
