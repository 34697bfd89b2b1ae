//! `paxbench hosts check hosts.toml [--ports 7000,7001 | --base-port P --nodes N]`: whether
//! every host of a hosts file is ready for a run (see [`paxbench::hosts_check`]). Prints one
//! row per host, then every failure as `FAIL host NAME: reason`; exits non-zero if any.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use paxbench::hosts::Hosts;
use paxbench::hosts_check::{self, CheckRequest};
use paxbench::ssh::Ssh;

/// Arguments of `paxbench hosts`.
#[derive(Debug, Args)]
pub struct HostsArgs {
    #[command(subcommand)]
    pub command: HostsCommand,
}

/// `paxbench hosts` subcommands.
#[derive(Debug, Subcommand)]
pub enum HostsCommand {
    /// Check over ssh that every host can take part in a run: reachable, same OS and
    /// architecture as this binary, free disk, free node ports, clock offset, sudo and netem.
    Check(CheckArgs),
}

/// Arguments of `paxbench hosts check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The hosts file.
    pub hosts: PathBuf,
    /// Ports every node host must have free.
    #[arg(long, value_delimiter = ',', conflicts_with = "base_port")]
    pub ports: Vec<u16>,
    /// What the nodes will use, so which socket table the ports are checked against: `quic`
    /// (UDP) or `tcp` (listening TCP sockets); both with `--transport quic,tcp`.
    #[arg(long, value_delimiter = ',', default_value = "quic", value_parser = parse_transport)]
    pub transport: Vec<node::Transport>,
    /// With --nodes: the ports P..P+N-1 must be free on every node host.
    #[arg(long, requires = "nodes")]
    pub base_port: Option<u16>,
    /// Nodes the run will start: the node hosts must be able to take them.
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Fail hosts where netem cannot be used (WAN emulation needs it).
    #[arg(long)]
    pub require_netem: bool,
    /// Fail hosts with less free disk than this in the remote home, GiB.
    #[arg(long, default_value_t = 1.0)]
    pub min_free_gib: f64,
}

pub fn run(args: &HostsArgs) -> anyhow::Result<bool> {
    match &args.command {
        HostsCommand::Check(a) => check(a),
    }
}

fn check(args: &CheckArgs) -> anyhow::Result<bool> {
    let hosts = Hosts::load(&args.hosts)?;
    let mut ports = args.ports.clone();
    if let (Some(base), Some(n)) = (args.base_port, args.nodes) {
        for i in 0..n {
            let p = u16::try_from(usize::from(base) + i)
                .map_err(|_| anyhow::anyhow!("--base-port {base} + {n} nodes passes port 65535"))?;
            ports.push(p);
        }
    }
    if !(args.min_free_gib >= 0.0 && args.min_free_gib.is_finite()) {
        anyhow::bail!(
            "--min-free-gib must be a number of GiB, not {}",
            args.min_free_gib
        );
    }
    let req = CheckRequest {
        ports,
        transports: args.transport.clone(),
        nodes: args.nodes,
        require_netem: args.require_netem,
        min_free_bytes: (args.min_free_gib * (1u64 << 30) as f64) as u64,
        ..CheckRequest::default()
    };
    let ssh = Ssh::new(&hosts)?;
    let report = hosts_check::check(&hosts, &ssh, &req);
    print!("{}", report.table());
    for f in report.failures() {
        eprintln!("error: {f}");
    }
    Ok(report.ok())
}

fn parse_transport(s: &str) -> Result<node::Transport, String> {
    match s {
        "quic" => Ok(node::Transport::Quic),
        "tcp" => Ok(node::Transport::Tcp),
        other => Err(format!("`{other}` is not a transport: quic or tcp")),
    }
}
