//! `paxbench`: the benchmark harness's command line.
//!
//! Subcommands so far:
//!
//! - `paxbench sim`: the deterministic simulator (crates/sim) over a range of seeds, or its
//!   self-test against deliberately broken protocol variants.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod sim_cmd;

/// A benchmark harness for consensus protocols.
#[derive(Debug, Parser)]
#[command(name = "paxbench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the deterministic simulator and its safety checkers over a range of seeds.
    Sim(sim_cmd::SimArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sim(args) => sim_cmd::run(&args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
