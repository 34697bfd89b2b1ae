//! `paxbench load --cluster cluster.toml [--rate R | --clients C --depth D] ... --out DIR`: one
//! load generator (crates/loadgen) against a running cluster. Writes `DIR/hist.hlog` (an
//! HdrHistogram interval log, one histogram per second, µs) and `DIR/summary.json`, and prints a
//! one-line summary.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use loadgen::{Arrivals, KeyDistribution, LoadConfig, Mode, Target, Workload};
use node::config::ClusterConfig;
use paxos::NodeId;

/// Arguments of `paxbench load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The cluster file; its `[tls] client_cert` and `client_key` are used.
    #[arg(long)]
    pub cluster: PathBuf,
    /// Open loop: requests per second on a fixed schedule.
    #[arg(long, conflicts_with_all = ["clients", "depth"])]
    pub rate: Option<f64>,
    /// Closed loop: this many clients...
    #[arg(long, requires = "depth")]
    pub clients: Option<usize>,
    /// ...each keeping this many requests outstanding.
    #[arg(long, requires = "clients")]
    pub depth: Option<usize>,
    /// Open loop with Poisson arrivals (default: evenly spaced).
    #[arg(long, requires = "rate")]
    pub poisson: bool,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Discarded warm-up seconds.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Distinct keys.
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    /// Zipf-distributed keys with this skew (default: uniform).
    #[arg(long)]
    pub zipf: Option<f64>,
    /// Share of reads (Get); the rest are writes (Put).
    #[arg(long, default_value_t = 0.0)]
    pub read_fraction: f64,
    /// Bytes per written value.
    #[arg(long, default_value_t = 64)]
    pub value_size: usize,
    /// Where requests go: `leader`, `all`, or node ids such as `0,1,2`.
    #[arg(long, default_value = "leader")]
    pub target: String,
    /// Seeds the schedule and the key and operation choice.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// A request unanswered this long after its intended send time counts as a timeout.
    #[arg(long, default_value_t = 2_000)]
    pub timeout_ms: u64,
    /// Directory for hist.hlog and summary.json (created if needed).
    #[arg(long)]
    pub out: PathBuf,
}

fn parse_target(s: &str) -> anyhow::Result<Target> {
    Ok(match s {
        "leader" => Target::Leader,
        "all" => Target::All,
        list => Target::Nodes(
            list.split(',')
                .map(|id| id.trim().parse().map(NodeId))
                .collect::<Result<_, _>>()
                .with_context(|| {
                    format!("--target {list:?}: expected leader, all, or ids like 0,1,2")
                })?,
        ),
    })
}

fn seconds(name: &str, s: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s).with_context(|| format!("--{name} {s}: not a duration"))
}

pub fn run(args: &LoadArgs) -> anyhow::Result<bool> {
    let cluster = ClusterConfig::load(&args.cluster)?;
    let certs = cluster.client_certs()?;
    let mode = match (args.rate, args.clients, args.depth) {
        (Some(rate), None, None) => Mode::Open {
            rate,
            arrivals: if args.poisson {
                Arrivals::Poisson
            } else {
                Arrivals::Constant
            },
        },
        (None, Some(clients), Some(depth)) => Mode::Closed { clients, depth },
        _ => bail!("give either --rate R (open loop) or --clients C --depth D (closed loop)"),
    };
    let workload = Workload {
        keys: args.keys,
        distribution: match args.zipf {
            Some(theta) => KeyDistribution::Zipf { theta },
            None => KeyDistribution::Uniform,
        },
        read_fraction: args.read_fraction,
        value_size: args.value_size,
        seed: args.seed,
    };
    let target = parse_target(&args.target)?;
    let warmup = seconds("warmup", args.warmup)?;
    let duration = seconds("duration", args.duration)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;

    // One thread, as in `paxbench run` (see there for why).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let result = rt.block_on(async {
        let (endpoint, nodes) = cluster.client_endpoint(&certs)?;
        let mut config = LoadConfig::new(endpoint, nodes, mode);
        config.workload = workload;
        config.target = target;
        config.warmup = warmup;
        config.duration = duration;
        config.timeout = Duration::from_millis(args.timeout_ms);
        anyhow::Ok(loadgen::run(config).await?)
    })?;
    result.write_interval_log(&args.out.join("hist.hlog"))?;
    result.write_summary_json(&args.out.join("summary.json"))?;
    println!("{}", result.summary);
    Ok(result.summary.completed > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(parse_target("leader").unwrap(), Target::Leader);
        assert_eq!(parse_target("all").unwrap(), Target::All);
        assert_eq!(
            parse_target("0, 2").unwrap(),
            Target::Nodes(vec![NodeId(0), NodeId(2)])
        );
        assert!(parse_target("first").is_err());
    }
}
