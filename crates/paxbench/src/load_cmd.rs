//! `paxbench load --cluster cluster.toml [--rate R | --clients C --depth D | --plan plan.toml]
//! ... --out DIR`: one load generator (crates/loadgen) against a running cluster. Writes
//! `DIR/hist.hlog` (an HdrHistogram interval log, one histogram per second, µs),
//! `DIR/summary.json`, `DIR/timeline.json` (100 ms buckets: completions, errors, timeouts,
//! latency; see `loadgen::timeline`) and, with a history (`--history N` or the plan's
//! `history`), `DIR/history.jsonl` (what the clients saw; see `loadgen::history`), and prints a
//! one-line summary. `--plan` takes the typed load that `paxbench run` writes for a generator
//! on its own host; the flags build the same type.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use node::config::ClusterConfig;

use crate::experiment::{Distribution, Pacing, TargetSpec, WorkloadSpec};
use crate::plan::{LoadPlan, PlanLevel};

/// Arguments of `paxbench load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The cluster file; its `[tls] client_cert` and `client_key` are used.
    #[arg(long)]
    pub cluster: PathBuf,
    /// A load plan written by `paxbench run` (every other load flag is then ignored).
    #[arg(long, conflicts_with_all = ["rate", "clients", "depth", "history"])]
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
    /// Conflict: the first this many keys form a hot set...
    #[arg(long, default_value_t = 0)]
    pub hot_keys: u64,
    /// ...that this share of operations go to.
    #[arg(long, default_value_t = 0.0)]
    pub hot_fraction: f64,
    /// Where requests go: `leader`, `all`, or node ids such as `0,1,2`.
    #[arg(long, default_value = "leader")]
    pub target: String,
    /// Seeds the schedule and the key and operation choice.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Open loop: the generator wakes at most this often and sends everything due, one write
    /// per node (µs; `auto` picks it from the rate, as `pacing_us` in an experiment file).
    #[arg(long, default_value = "auto", value_name = "US|auto")]
    pub pacing_us: Pacing,
    /// A request unanswered this long after its intended send time counts as a timeout.
    #[arg(long, default_value_t = 2_000)]
    pub timeout_ms: u64,
    /// Record the clients' history, at most this many operations (warm-up included), into
    /// history.jsonl.
    #[arg(long, value_name = "N")]
    pub history: Option<usize>,
    /// Directory for hist.hlog, summary.json, timeline.json and history.jsonl (created if
    /// needed).
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
            hot_keys: args.hot_keys,
            hot_fraction: args.hot_fraction,
            self_test_bug: None,
        },
        level_index: 0,
        warmup_s: args.warmup,
        duration_s: args.duration,
        timeout_ms: args.timeout_ms,
        pacing_us: args.pacing_us.at(match level {
            PlanLevel::Open { rate, .. } => rate,
            PlanLevel::Closed { .. } => 0.0,
        }),
        session_base: None,
        history: args.history,
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
    let result = measure(args)?;
    println!("{}", result.summary);
    Ok(result.summary.completed > 0)
}

/// Runs the load the arguments describe and writes its files into `--out`.
fn measure(args: &LoadArgs) -> anyhow::Result<loadgen::LoadResult> {
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
        let mut config = plan.config(&cluster, &certs)?;
        // This process is only the generator: its CPU is every thread's.
        config.cpu_scope = loadgen::CpuScope::Process;
        anyhow::Ok(loadgen::run(config).await?)
    })?;
    result.write_files(&args.out)?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `paxbench load`'s flags as clap parses them.
    fn flags(extra: &[&str]) -> LoadArgs {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            load: LoadArgs,
        }
        let base = [
            "load",
            "--cluster",
            "c.toml",
            "--out",
            "o",
            "--rate",
            "200000",
        ];
        <Cli as clap::Parser>::parse_from(base.iter().chain(extra)).load
    }

    #[test]
    fn pacing_flag_is_auto_by_default_or_the_microseconds_given() {
        let multi = paxos::Protocol::MultiPaxos;
        let auto = plan_from_flags(&flags(&[]), multi).unwrap();
        assert_eq!(auto.pacing_us, Pacing::Auto.at(200_000.0));
        let fixed = plan_from_flags(&flags(&["--pacing-us", "350"]), multi).unwrap();
        assert_eq!(fixed.pacing_us, 350);
    }

    #[test]
    fn targets_parse() {
        assert_eq!(parse_target("leader").unwrap(), TargetSpec::Leader);
        assert_eq!(parse_target("all").unwrap(), TargetSpec::All);
        assert_eq!(parse_target("0, 2").unwrap(), TargetSpec::Nodes(vec![0, 2]));
        assert!(parse_target("first").is_err());
    }

    /// `paxbench load --plan` with a history, against a one-node Unreplicated cluster in this
    /// process: every file is written, and `read_result` (what the controller does with a
    /// remote generator's files) reads the timeline and the history back equal to what was
    /// measured; a clock offset moves the window start and nothing else.
    #[test]
    fn a_plan_with_a_history_writes_every_file_and_they_read_back_equal() {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        node::write_cluster(dir.path(), 1, port).unwrap();
        let file = dir.path().join("cluster.toml");
        let text = std::fs::read_to_string(&file).unwrap();
        let unreplicated =
            text.replace("protocol = \"multi-paxos\"", "protocol = \"unreplicated\"");
        assert_ne!(text, unreplicated, "{text}");
        std::fs::write(&file, unreplicated).unwrap();

        let cluster = ClusterConfig::load(&file).unwrap();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let node = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let metrics = std::sync::Arc::new(node::runtime::Metrics::default());
                    node::serve::serve(&cluster, paxos::NodeId(0), metrics, stopped).await
                })
        });
        let cluster = ClusterConfig::load(&file).unwrap();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let certs = cluster.client_certs().unwrap();
                let (ep, nodes) = cluster.client_endpoint(&certs).unwrap();
                let mut c = node::client::KvClient::new(ep, nodes, paxos::ClientId(1));
                c.wait_ready(1, std::time::Duration::from_secs(20))
                    .await
                    .unwrap();
            });

        let plan = LoadPlan {
            protocol: paxos::Protocol::Unreplicated,
            level: PlanLevel::Closed {
                clients: 2,
                depth: 2,
            },
            workload: WorkloadSpec {
                keys: 20,
                read_fraction: 0.5,
                ..WorkloadSpec::default()
            },
            level_index: 0,
            warmup_s: 0.2,
            duration_s: 0.5,
            timeout_ms: 1_000,
            pacing_us: 200,
            session_base: None,
            history: Some(1_000_000),
        };
        let plan_file = dir.path().join("plan.toml");
        std::fs::write(&plan_file, toml::to_string(&plan).unwrap()).unwrap();
        let out = dir.path().join("out");
        let args = LoadArgs {
            cluster: file,
            plan: Some(plan_file),
            rate: None,
            clients: None,
            depth: None,
            poisson: false,
            duration: 10.0,
            warmup: 2.0,
            keys: 100_000,
            zipf: None,
            read_fraction: 0.0,
            value_size: 64,
            hot_keys: 0,
            hot_fraction: 0.0,
            target: "leader".into(),
            seed: 1,
            timeout_ms: 2_000,
            pacing_us: Pacing::Auto,
            history: None,
            out: out.clone(),
            exit_on_stdin_eof: false,
            remove_on_lifeline_loss: None,
        };
        let measured = measure(&args).unwrap();
        stop.send_replace(true);
        node.join().unwrap().unwrap();

        for f in [
            "hist.hlog",
            "summary.json",
            "timeline.json",
            "history.jsonl",
        ] {
            assert!(out.join(f).is_file(), "{f} was not written");
        }
        assert!(measured.summary.completed > 0, "{}", measured.summary);
        let h = measured.history.as_ref().unwrap();
        assert!(h.ops.len() as u64 >= measured.summary.completed);
        assert!(h.ops.iter().any(|o| o.ret == loadgen::lincheck::Ret::Done));
        assert!(h
            .ops
            .iter()
            .any(|o| matches!(o.ret, loadgen::lincheck::Ret::Read(_))));
        assert_eq!(measured.timeline.buckets.len(), 5);
        assert!(measured.timeline.buckets.iter().any(|b| b.completed > 0));

        let back = crate::remote::read_result(&out, 0).unwrap();
        assert_eq!(back.summary, measured.summary);
        assert_eq!(back.timeline, measured.timeline);
        assert_eq!(back.history, measured.history);
        // Another host's clock, 5 s ahead: the window and the history's origin are 5 s earlier
        // on ours; the timeline and the history's instants (relative to them) are unchanged.
        let ahead = crate::remote::read_result(&out, 5_000_000_000).unwrap();
        assert_eq!(
            back.window_start
                .duration_since(ahead.window_start)
                .unwrap(),
            std::time::Duration::from_secs(5)
        );
        assert_eq!(ahead.timeline, measured.timeline);
        let (h, ahead_h) = (back.history.unwrap(), ahead.history.unwrap());
        assert_eq!(h.origin_unix_ns - ahead_h.origin_unix_ns, 5_000_000_000);
        assert_eq!(
            (h.ops, h.window_offset_ns),
            (ahead_h.ops, ahead_h.window_offset_ns)
        );
    }
}
