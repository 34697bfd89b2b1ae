//! `paxbench report DIR`: re-renders a results directory's summary.md, summary.csv and plots
//! from its raw files (points.jsonl, hist/, config.toml, env.json), then prints the headline
//! table.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

/// Arguments of `paxbench report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A results directory written by `paxbench run` (`results/<timestamp>-<name>/`).
    dir: PathBuf,
}

/// Renders the directory; `Ok(false)` when it holds no points.
pub fn run(args: &ReportArgs) -> Result<bool> {
    let run = results::render(&args.dir)?;
    let mut out = std::io::stdout().lock();
    // A closed stdout (e.g. piped into `head`) is not a failure: the files are written.
    let _ = writeln!(
        out,
        "{}: {} points\n\n{}\nwrote {}, {} and {}",
        run.name,
        run.points.len(),
        results::headline_table(&results::headlines(&run)),
        args.dir.join("summary.md").display(),
        args.dir.join("summary.csv").display(),
        args.dir.join("plots").display(),
    );
    Ok(!run.points.is_empty())
}
