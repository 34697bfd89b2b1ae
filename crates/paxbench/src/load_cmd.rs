//! `paxbench load --cluster cluster.toml [--rate R | --clients C --depth D | --plan plan.toml]
//! ... --out DIR`: one load generator (crates/loadgen) against a running cluster. Writes
//! `DIR/hist.hlog` (an HdrHistogram interval log, one histogram per second, µs) and
//! `DIR/summary.json`, and prints a one-line summary. `--plan` takes the typed load that
//! `paxbench run` writes for a generator on its own host; the flags build the same type.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use node::config::ClusterConfig;

use crate::experiment::{Distribution, TargetSpec, WorkloadSpec};
use crate::plan::{LoadPlan, PlanLevel};

/// Arguments of `paxbench load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The cluster file; its `[tls] client_cert` and `client_key` are used.
    #[arg(long)]
    pub cluster: PathBuf,
    /// A load plan written by `paxbench run` (every other load flag is then ignored).
    #[arg(long, conflicts_with_all = ["rate", "clients", "depth"])]
    pub plan: Option<PathBuf>,
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
    /// Exit at once (status 3, nothing written) when stdin reaches end of file or fails:
    /// stdin is the lifeline of a controller that started this generator over ssh.
    #[arg(long)]
    pub exit_on_stdin_eof: bool,
    /// On that exit, also remove this directory (the generator's working directory).
    #[arg(long, value_name = "DIR", requires = "exit_on_stdin_eof")]
    pub remove_on_lifeline_loss: Option<PathBuf>,
}

fn parse_target(s: &str) -> anyhow::Result<TargetSpec> {
    Ok(match s {
        "leader" => TargetSpec::Leader,
        "all" => TargetSpec::All,
        list => TargetSpec::Nodes(
            list.split(',')
                .map(|id| id.trim().parse())
                .collect::<Result<_, _>>()
                .with_context(|| {
                    format!("--target {list:?}: expected leader, all, or ids like 0,1,2")
                })?,
        ),
    })
}

/// The load the flags describe, as the same type `paxbench run` hands a remote generator.
fn plan_from_flags(args: &LoadArgs, protocol: paxos::Protocol) -> anyhow::Result<LoadPlan> {
    let level = match (args.rate, args.clients, args.depth) {
        (Some(rate), None, None) => PlanLevel::Open {
            rate,
            poisson: args.poisson,
        },
        (None, Some(clients), Some(depth)) => PlanLevel::Closed {
            clients: u32::try_from(clients).context("--clients")?,
            depth: u32::try_from(depth).context("--depth")?,
        },
        _ => bail!("give either --rate R (open loop) or --clients C --depth D (closed loop)"),
    };
    Ok(LoadPlan {
        protocol,
        level,
        workload: WorkloadSpec {
            keys: args.keys,
            distribution: if args.zipf.is_some() {
                Distribution::Zipf
            } else {
                Distribution::Uniform
            },
            zipf_theta: args.zipf.unwrap_or(0.99),
            read_fraction: args.read_fraction,
            value_size: args.value_size,
            seed: args.seed,
            target: parse_target(&args.target)?,
        },
        level_index: 0,
        warmup_s: args.warmup,
        duration_s: args.duration,
        timeout_ms: args.timeout_ms,
        pacing_us: loadgen::DEFAULT_PACING.as_micros() as u64,
        session_base: None,
    })
}

pub fn run(args: &LoadArgs) -> anyhow::Result<bool> {
    if args.exit_on_stdin_eof {
        let remove = args
            .remove_on_lifeline_loss
            .as_deref()
            .map(crate::node_cmd::removable)
            .transpose()?;
        let lost = crate::node_cmd::watch_stdin(None);
        std::thread::spawn(move || {
            // A dropped sender (the watcher died) counts as a lost lifeline too.
            let _ = lost.blocking_recv();
            if let Some(dir) = remove {
                let _ = std::fs::remove_dir_all(dir);
            }
            eprintln!("stdin closed (the controller's lifeline): the load generator stops");
            std::process::exit(3);
        });
    }
    let cluster = ClusterConfig::load(&args.cluster)?;
    let certs = cluster.client_certs()?;
    let plan = match &args.plan {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            toml::from_str::<LoadPlan>(&text)
                .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?
        }
        None => plan_from_flags(args, cluster.protocol)?,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;

    // One thread, as in `paxbench run` (see there for why).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let result = rt.block_on(async {
        let (endpoint, nodes) = cluster.client_endpoint(&certs)?;
        anyhow::Ok(loadgen::run(plan.config(endpoint, nodes)?).await?)
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
        assert_eq!(parse_target("leader").unwrap(), TargetSpec::Leader);
        assert_eq!(parse_target("all").unwrap(), TargetSpec::All);
        assert_eq!(parse_target("0, 2").unwrap(), TargetSpec::Nodes(vec![0, 2]));
        assert!(parse_target("first").is_err());
    }
}
