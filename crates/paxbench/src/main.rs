//! `paxbench`: the benchmark harness's command line.
//!
//! Subcommands so far:
//!
//! - `paxbench sim`: the deterministic simulator (crates/sim) over a range of seeds, or its
//!   self-test against deliberately broken protocol variants.
//! - `paxbench node`: one node of a cluster file, over QUIC or TCP (its `[transport]`).
//! - `paxbench kv`: put / get / del / status against a running cluster.
//! - `paxbench certs`: a cluster CA, node and client certificates, and a cluster.toml.
//! - `paxbench report`: re-render a results directory's tables and plots (crates/results).
//! - `paxbench compare`: two results directories side by side, each shared figure tested.
//! - `paxbench load`: one open- or closed-loop load generator (crates/loadgen).
//! - `paxbench hosts check`: whether every host of a hosts file is ready for a run over ssh.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod certs_cmd;
mod compare_cmd;
mod env_info;
mod experiment;
mod faults;
mod hosts_cmd;
mod kv_cmd;
mod launcher;
mod live;
mod load_cmd;
mod netem;
mod node_cmd;
mod observe;
mod plan;
mod remote;
mod repeat;
mod report_cmd;
mod run_cmd;
mod search;
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
    /// Run one node of a cluster file until SIGINT/SIGTERM (`RUST_LOG` sets the log level).
    Node(node_cmd::NodeArgs),
    /// Put, get or delete a key, or print every node's status, on a running cluster.
    Kv(kv_cmd::KvArgs),
    /// Write a cluster CA, node and client certificates, and a ready-to-use cluster.toml.
    Certs(certs_cmd::CertsArgs),
    /// Re-render summary.md, summary.csv and plots/ of a results directory from its raw files.
    Report(report_cmd::ReportArgs),
    /// Print two results directories side by side: medians with 95% intervals, ratios B/A,
    /// and whether each shared figure differs (Mann–Whitney U at --level).
    Compare(compare_cmd::CompareArgs),
    /// Run one load generator (open or closed loop) against a running cluster; write an
    /// HdrHistogram interval log and a JSON summary.
    Load(load_cmd::LoadArgs),
    /// Run an experiment file: start clusters, drive load, write a results directory.
    Run(run_cmd::RunArgs),
    /// Hosts files for runs over ssh: `paxbench hosts check hosts.toml`.
    Hosts(hosts_cmd::HostsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A node logs its progress; the client-side commands only what went wrong.
    let default_level = match cli.command {
        Command::Node(_) | Command::Sim(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: node logs written to files stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Sim(args) => sim_cmd::run(&args),
        Command::Node(args) => node_cmd::run(&args),
        Command::Kv(args) => kv_cmd::run(&args),
        Command::Certs(args) => certs_cmd::run(&args),
        Command::Report(args) => report_cmd::run(&args),
        Command::Compare(args) => compare_cmd::run(&args),
        Command::Load(args) => load_cmd::run(&args),
        Command::Run(args) => run_cmd::run(&args),
        Command::Hosts(args) => hosts_cmd::run(&args),
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
