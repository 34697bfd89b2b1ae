//! `paxbench run bench-configs/NAME.toml [--out DIR] [--set key=value ...]`: turns an experiment
//! file into a results directory.
//!
//! For every configuration of the grid and every repetition it starts a fresh cluster (through a
//! [`Launcher`]; the local one starts `paxbench node` processes on loopback with throwaway
//! certificates), waits until it is ready, runs the load generator at every load level (warm-up
//! discarded, then the measured window), samples each node's CPU and memory, stops the cluster,
//! and moves on. A level that overloaded the cluster (any request timed out or failed) may have
//! left requests queued inside it, so the next level starts on a fresh cluster rather than
//! inherit that backlog. It writes `config.toml`, `env.json`, `points.jsonl` and `hist/` as it goes, then
//! renders `summary.md`, `summary.csv` and `plots/`. Ctrl-C stops the processes and leaves what
//! was measured readable (render it with `paxbench report DIR`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use loadgen::{Arrivals, KeyDistribution, LoadConfig, Mode, Target, Workload};
use node::config::ClusterConfig;
use paxos::NodeId;

use crate::env_info::{self, EnvInfo};
use crate::experiment::{Experiment, GridPoint};
use crate::launcher::{
    cpu_seconds, rss_bytes, ClusterSetup, Launcher, LocalLauncher, RunningCluster,
};

/// Arguments of `paxbench run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The experiment file.
    pub experiment: PathBuf,
    /// Where results directories go.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Override any key of the experiment file (`--set duration_s=2 --set load.rates=[100]`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Print the resolved experiment and its grid, then stop without starting anything.
    #[arg(long)]
    pub dry_run: bool,
}

/// One load level: an open-loop rate or a closed-loop client count.
#[derive(Clone, Copy, Debug)]
enum Level {
    Rate(f64),
    Clients(u32),
}

pub fn run(args: &RunArgs) -> anyhow::Result<bool> {
    let exp = Experiment::load(&args.experiment, &args.sets)?;
    let grid = exp.grid();
    let levels_for = |protocol: &str| -> Vec<Level> {
        if exp.load.mode == "open" {
            let rates = exp
                .load
                .rates_by_protocol
                .get(protocol)
                .unwrap_or(&exp.load.rates);
            rates.iter().map(|r| Level::Rate(*r)).collect()
        } else {
            exp.load
                .clients
                .iter()
                .map(|c| Level::Clients(*c))
                .collect()
        }
    };
    if args.dry_run {
        print!("{}", toml::to_string_pretty(&exp)?);
        for g in &grid {
            let n = levels_for(&g.protocol).len() as u32 * exp.repetitions;
            println!(
                "# {} on {} node(s), {}: {n} point(s)",
                g.protocol,
                g.nodes,
                params_label(g)
            );
        }
        return Ok(true);
    }
    let dir = args.out.join(format!("{}-{}", env_info::stamp(), exp.name));
    std::fs::create_dir_all(dir.join("hist"))
        .with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("config.toml"), toml::to_string_pretty(&exp)?)?;
    let mut env = EnvInfo::capture();
    std::fs::write(
        dir.join("env.json"),
        serde_json::to_string_pretty(&env)? + "\n",
    )?;
    let mut points = std::fs::File::create(dir.join("points.jsonl"))?;

    let total = grid
        .iter()
        .map(|g| levels_for(&g.protocol).len() as u64)
        .sum::<u64>()
        * u64::from(exp.repetitions);
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} points, ETA {eta}  {msg}",
        )
        .expect("valid template"),
    );
    let stop = Arc::new(AtomicBool::new(false));
    // The load generator runs on this thread: its driver and connection tasks hand batches to
    // each other at every send and reply, and on one thread that is a task switch rather than
    // a wake-up of another worker (measured: p99 at 200k ops/s 1.8-2.2 ms against 2.7-6.4 ms
    // on a two-worker pool, same total CPU).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    {
        let stop = stop.clone();
        rt.spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.store(true, Ordering::SeqCst);
            }
        });
    }
    let workdir = tempfile::tempdir()?;
    let binary = std::env::current_exe().context("finding the paxbench binary")?;
    let mut launcher = LocalLauncher::new(binary, workdir.path().to_path_buf());
    let mut measured = 0u64;
    'outer: for g in &grid {
        for rep in 0..exp.repetitions {
            let setup = ClusterSetup {
                protocol: g.protocol.clone(),
                nodes: g.nodes,
                durability: g.durability.clone(),
                paxos: g.paxos.clone(),
                threads: exp.cluster.node_threads,
            };
            // One cluster serves the load levels in turn, until a level overloads it: requests
            // it never answered may still be queued inside, and would be the next level's
            // backlog. The level after that gets a fresh cluster.
            let mut current: Option<Started> = None;
            for (li, level) in levels_for(&g.protocol).iter().enumerate() {
                if stop.load(Ordering::SeqCst) {
                    if let Some(c) = current.take() {
                        c.stop(&dir)?;
                    }
                    break 'outer;
                }
                if current.is_none() {
                    bar.set_message(format!(
                        "{} {} rep {rep}: starting",
                        g.protocol,
                        params_label(g)
                    ));
                    current = Some(Started::new(launcher.start(&setup)?));
                }
                let Started { cluster, logs, .. } = current.as_ref().expect("started above");
                bar.set_message(format!(
                    "{} {} rep {rep}: {level:?}",
                    g.protocol,
                    params_label(g)
                ));
                let point_id = format!("p{measured:04}");
                let pids = cluster.pids();
                let file = cluster.cluster_file().to_path_buf();
                let multi = g.protocol == "multi-paxos";
                let result = rt.block_on(async {
                    let leader0 = if multi { leadership(&file).await } else { None };
                    let cpu0: Vec<_> = pids.iter().map(|(_, p)| p.and_then(cpu_seconds)).collect();
                    let t0 = Instant::now();
                    let stopped = stop.clone();
                    let load = measure(&file, g, &exp, *level, li);
                    let r = tokio::select! {
                        r = load => Some(r),
                        _ = async { while !stopped.load(Ordering::SeqCst) { tokio::time::sleep(Duration::from_millis(50)).await } } => None,
                    };
                    let secs = t0.elapsed().as_secs_f64();
                    let nodes: Vec<serde_json::Value> = pids
                        .iter()
                        .zip(cpu0)
                        .map(|((id, pid), c0)| {
                            let cpu = match (c0, pid.and_then(cpu_seconds)) {
                                (Some(a), Some(b)) => (b - a) / secs * 100.0,
                                _ => f64::NAN,
                            };
                            serde_json::json!({ "id": id.0, "cpu_percent": cpu, "rss_bytes": pid.and_then(rss_bytes).unwrap_or(0) })
                        })
                        .collect();
                    // Same leader at the same ballot before and after, or an election ran
                    // during the point (its latencies include the failover).
                    let leader_changed = multi && (leader0.is_none() || leadership(&file).await != leader0);
                    r.map(|r| (r, nodes, leader_changed))
                });
                let Some((result, nodes, leader_changed)) = result else {
                    if let Some(c) = current.take() {
                        c.stop(&dir)?;
                    }
                    break 'outer;
                };
                let result = result?;
                result.write_interval_log(&dir.join("hist").join(format!("{point_id}.hlog")))?;
                let mut point = serde_json::to_value(&result.summary)?;
                let obj = point.as_object_mut().expect("a summary is an object");
                obj.insert("point_id".into(), point_id.clone().into());
                obj.insert("protocol".into(), g.protocol.clone().into());
                let mut params = serde_json::Map::new();
                for (k, v) in &g.params {
                    params.insert(k.clone(), serde_json::to_value(v)?);
                }
                match level {
                    Level::Rate(r) => params.insert("rate".into(), (*r).into()),
                    Level::Clients(c) => params.insert("clients".into(), (*c).into()),
                };
                obj.insert("params".into(), params.into());
                obj.insert("repetition".into(), rep.into());
                obj.insert("nodes".into(), nodes.into());
                obj.insert("leader_changed".into(), leader_changed.into());
                obj.insert("logs".into(), logs.display().to_string().into());
                writeln!(points, "{}", serde_json::to_string(&point)?)?;
                points.flush()?;
                measured += 1;
                bar.inc(1);
                if result.summary.timeouts + result.summary.errors > 0 {
                    current.take().expect("started above").stop(&dir)?;
                }
            }
            if let Some(c) = current.take() {
                c.stop(&dir)?;
            }
        }
    }
    let interrupted = stop.load(Ordering::SeqCst);
    bar.finish_and_clear();
    env.end = Some(env_info::now_utc());
    std::fs::write(
        dir.join("env.json"),
        serde_json::to_string_pretty(&env)? + "\n",
    )?;
    results::render(&dir)?;
    println!(
        "{measured} of {total} points measured; results in {}",
        dir.display()
    );
    if interrupted {
        bail!(
            "interrupted: the processes were stopped; what was measured is in {}",
            dir.display()
        );
    }
    let summary = std::fs::read_to_string(dir.join("summary.md")).unwrap_or_default();
    if let Some(headline) = summary.split("\n## ").find(|s| s.starts_with("Headline")) {
        println!("\n## {headline}");
    }
    Ok(true)
}

/// A running cluster and where its logs go in the results directory.
struct Started {
    cluster: Box<dyn RunningCluster>,
    /// Its working directory (cluster file, node logs).
    workdir: PathBuf,
    /// `logs/<cluster>`, relative to the results directory.
    logs: PathBuf,
}

impl Started {
    fn new(cluster: Box<dyn RunningCluster>) -> Started {
        let workdir = cluster
            .cluster_file()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let logs = Path::new("logs").join(workdir.file_name().unwrap_or_default());
        Started {
            cluster,
            workdir,
            logs,
        }
    }

    /// Stops every process of the cluster and keeps its logs under `results`.
    fn stop(self, results: &Path) -> anyhow::Result<()> {
        drop(self.cluster);
        keep_logs(&self.workdir, &results.join(&self.logs))
    }
}

/// Copies the node logs of a stopped cluster into the results directory.
fn keep_logs(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from)?.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "log") {
            std::fs::copy(&path, to.join(entry.file_name()))
                .with_context(|| format!("copying {}", path.display()))?;
        }
    }
    Ok(())
}

fn params_label(g: &GridPoint) -> String {
    g.params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The Multi-Paxos leader of the cluster in `file` and its ballot, if one node says it leads.
async fn leadership(file: &std::path::Path) -> Option<(NodeId, paxos::Ballot)> {
    let cluster = ClusterConfig::load(file).ok()?;
    let certs = cluster.client_certs().ok()?;
    let (endpoint, nodes) = cluster.client_endpoint(&certs).ok()?;
    node::client::KvClient::new(endpoint, nodes, paxos::ClientId(0))
        .leadership()
        .await
}

/// Runs the load generator against the cluster in `file` at one level.
async fn measure(
    file: &std::path::Path,
    g: &GridPoint,
    exp: &Experiment,
    level: Level,
    level_index: usize,
) -> anyhow::Result<loadgen::LoadResult> {
    let cluster = ClusterConfig::load(file)?;
    let certs = cluster.client_certs()?;
    let (endpoint, nodes) = cluster.client_endpoint(&certs)?;
    let arrivals = if exp.load.poisson {
        Arrivals::Poisson
    } else {
        Arrivals::Constant
    };
    let mode = match level {
        Level::Rate(rate) => Mode::Open { rate, arrivals },
        Level::Clients(clients) => Mode::Closed {
            clients: clients as usize,
            depth: exp.load.depth as usize,
        },
    };
    let mut config = LoadConfig::new(endpoint, nodes, mode);
    let w = &g.workload;
    config.workload = Workload {
        keys: w.keys,
        distribution: if w.distribution == "zipf" {
            KeyDistribution::Zipf {
                theta: w.zipf_theta,
            }
        } else {
            KeyDistribution::Uniform
        },
        read_fraction: w.read_fraction,
        value_size: w.value_size,
        seed: w.seed + level_index as u64,
    };
    config.target = match &w.target {
        toml::Value::String(s) if s == "all" => Target::All,
        toml::Value::Array(ids) => Target::Nodes(
            ids.iter()
                .filter_map(|v| v.as_integer())
                .map(|i| NodeId(i as u32))
                .collect(),
        ),
        // Basic Paxos has no leader: every node proposes, and spreading clients over all of
        // them is what makes the proposers contend.
        _ if g.protocol == "basic-paxos" => Target::All,
        _ => Target::Leader,
    };
    config.warmup = Duration::from_secs_f64(exp.warmup_s);
    config.duration = Duration::from_secs_f64(exp.duration_s);
    config.timeout = Duration::from_millis(exp.load.timeout_ms);
    config.pacing = Duration::from_micros(exp.load.pacing_us);
    Ok(loadgen::run(config).await?)
}
