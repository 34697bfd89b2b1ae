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
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use loadgen::LoadResult;
use node::config::{ClusterConfig, TransportKnobs};
use node::emulation::LinkEmulation;
use paxos::{NodeId, Protocol};
use results::{Contention, CounterValues, LinkRtt, NodeStats, Point, Stall};

use crate::env_info::{self, EnvInfo};
use crate::experiment::{params_text, Emulation, Experiment, GridPoint, LoadMode};
use crate::faults::Schedule;
use crate::launcher::{Cluster, ClusterSetup, Launcher, LocalBackend, Sample};
use crate::live::{LeaderWatch, LiveCluster, StatusPoller};
use crate::netem;
use crate::observe;
use crate::plan::{LoadPlan, PlanLevel};
use crate::remote::{RemotePlan, RemoteRun, SshBackend};

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
    /// Run on the hosts of this hosts file over ssh (overrides `[cluster] hosts`).
    #[arg(long)]
    pub hosts: Option<PathBuf>,
}

/// One load level: an open-loop rate or a closed-loop client count.
#[derive(Clone, Copy, Debug)]
enum Level {
    Rate(f64),
    Clients(u32),
}

pub fn run(args: &RunArgs) -> anyhow::Result<bool> {
    // --hosts is `[cluster] hosts` (absolute, so that it is not read relative to the
    // experiment file), so that config.toml records it and node counts are checked for hosts.
    let mut sets = args.sets.clone();
    if let Some(h) = &args.hosts {
        let h = std::path::absolute(h).with_context(|| format!("--hosts {}", h.display()))?;
        let path = toml::Value::String(h.display().to_string());
        sets.push(format!("cluster.hosts={path}"));
    }
    let exp = Experiment::load(&args.experiment, &sets)?;
    let grid = exp
        .grid()
        .map_err(|(_, key, why)| anyhow::anyhow!("`{key}`: {why}"))?;
    let levels_for = |protocol: Protocol| -> Vec<Level> {
        if exp.load.mode == LoadMode::Open {
            let rates = exp
                .load
                .rates_by_protocol
                .get(&protocol)
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
    // Resolved against the experiment file, as its other paths are.
    let hosts_file = exp.cluster.hosts.as_ref().map(|h| {
        args.experiment
            .parent()
            .map_or_else(|| h.clone(), |d| d.join(h))
    });
    let max_nodes = grid.iter().map(|g| g.nodes).max().unwrap_or(1);
    let remote_plan = match &hosts_file {
        Some(path) => Some(RemotePlan::new(path, &exp, max_nodes)?),
        None if exp.load.hosts.as_ref().is_some_and(|h| !h.is_empty()) => {
            bail!("`[load] hosts` names generator hosts, but the run has no hosts file: set `[cluster] hosts` or --hosts")
        }
        None => None,
    };
    // The region of each node: from the hosts file (node i on the i-th node host), or from
    // `[network] regions` for a local run.
    let regions: Vec<String> = match &remote_plan {
        Some(p) => p.node_regions(),
        None => {
            let mut r = exp
                .network
                .as_ref()
                .map(|n| n.regions.clone())
                .unwrap_or_default();
            r.resize(max_nodes as usize, String::new());
            r
        }
    };
    if args.dry_run {
        print!("{}", toml::to_string_pretty(&exp)?);
        if let Some(p) = &remote_plan {
            println!("# hosts: {} ({})", p.hosts.path.display(), p.describe());
        }
        for g in &grid {
            let n = levels_for(g.protocol).len() as u32 * exp.repetitions;
            println!(
                "# {} on {} node(s), {}: {n} point(s)",
                g.protocol,
                g.nodes,
                params_text(&g.params)
            );
        }
        return Ok(true);
    }
    // Every host is checked before anything is written under results/.
    let checked = match remote_plan {
        Some(p) => Some(p.check(&exp)?),
        None => None,
    };
    let dir = args.out.join(format!("{}-{}", env_info::stamp(), exp.name));
    std::fs::create_dir_all(dir.join("hist"))
        .with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("config.toml"), toml::to_string_pretty(&exp)?)?;
    let mut env = EnvInfo::capture();
    env.network = exp.network.as_ref().map(serde_json::to_value).transpose()?;
    std::fs::write(
        dir.join("env.json"),
        serde_json::to_string_pretty(&env)? + "\n",
    )?;
    let mut points = std::fs::File::create(dir.join("points.jsonl"))?;

    let total = grid
        .iter()
        .map(|g| levels_for(g.protocol).len() as u64)
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
    let mut netem = None;
    let (mut launcher, remote) = match checked {
        None => {
            let backend = LocalBackend::new(binary, workdir.path().join("hosts"));
            let launcher =
                Launcher::new(Box::new(backend), workdir.path().to_path_buf(), dir.clone());
            (launcher, None)
        }
        Some(checked) => {
            let run = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            bar.set_message("deploying paxbench to every host");
            let (remote, took) = RemoteRun::deploy(&checked, &binary, &run, exp.cluster.base_port)?;
            eprintln!(
                "deployed to {} host(s) in {:.1} s",
                checked.hosts.hosts.len(),
                took.as_secs_f64()
            );
            let emulation = exp.network.as_ref().map_or("none", |n| n.emulation.name());
            env.hosts = remote.host_envs(emulation);
            std::fs::write(
                dir.join("env.json"),
                serde_json::to_string_pretty(&env)? + "\n",
            )?;
            netem = match exp
                .network
                .as_ref()
                .filter(|n| n.emulation == Emulation::Netem)
            {
                Some(net) => {
                    let placed = checked.hosts.assign_nodes(max_nodes as usize)?;
                    let rules =
                        netem::rules_for(net, &placed, exp.cluster.base_port, &checked.needs_sudo);
                    Some(netem::Installed::install(&checked.ssh, rules)?)
                }
                None => None,
            };
            let remote = Arc::new(remote);
            let backend = SshBackend(remote.clone());
            let launcher =
                Launcher::new(Box::new(backend), workdir.path().to_path_buf(), dir.clone());
            (launcher, Some((remote, checked.generators)))
        }
    };
    let faults = exp.fault_list();
    let mut measured = 0u64;
    'outer: for g in &grid {
        for rep in 0..exp.repetitions {
            let setup = ClusterSetup {
                protocol: g.protocol,
                nodes: g.nodes,
                durability: g.durability,
                paxos: g.paxos.clone(),
                transport: TransportKnobs {
                    threads: Some(exp.cluster.node_threads as usize),
                    transport: Some(g.transport),
                    ..TransportKnobs::default()
                },
                emulation: exp
                    .network
                    .as_ref()
                    .filter(|n| n.emulation == Emulation::Node)
                    .map(|n| n.emulation(&regions[..g.nodes as usize]))
                    // Link faults go through the nodes' emulated links: give them one (with
                    // no configured delay) if the experiment does not.
                    .or_else(|| {
                        faults
                            .iter()
                            .any(|f| f.action.on_links())
                            .then(LinkEmulation::default)
                    }),
            };
            // One cluster serves the load levels in turn, until a level overloads it: requests
            // it never answered may still be queued inside, and would be the next level's
            // backlog. The level after that gets a fresh cluster.
            let mut current: Option<Cluster> = None;
            for (li, level) in levels_for(g.protocol).iter().enumerate() {
                if stop.load(Ordering::SeqCst) {
                    if let Some(c) = current.take() {
                        c.stop()?;
                    }
                    break 'outer;
                }
                let label = params_text(&g.params);
                if current.is_none() {
                    bar.set_message(format!("{} {label} rep {rep}: starting", g.protocol));
                    current = Some(launcher.start(&setup)?);
                }
                let cluster = current.as_mut().expect("started above");
                bar.set_message(format!("{} {label} rep {rep}: {level:?}", g.protocol));
                let point_id = format!("p{measured:04}");
                let file = cluster.client_file.clone();
                let multi = g.protocol == Protocol::MultiPaxos;
                let leader0 = if multi {
                    rt.block_on(leadership(&file))
                } else {
                    None
                };
                let before = cluster.sample();
                // Every node's counters just before the load starts (replicated clusters).
                let replicated = g.nodes > 1;
                let counters0 = replicated.then(|| rt.block_on(read_counters(&file, g.nodes)));
                let load_plan = plan(g, &exp, *level, li);
                // Faults need the cluster on this thread, so the load runs on another.
                let mut schedule = (!faults.is_empty()).then(|| {
                    let seed = exp.workload.seed ^ (u64::from(rep) << 32) ^ li as u64;
                    Schedule::new(&faults, g.nodes, multi, seed)
                });
                let watch = if exp.wants_timeline() && multi {
                    Some(LeaderWatch::start(&file)?)
                } else {
                    None
                };
                let t0 = Instant::now();
                let warmup = Duration::from_secs_f64(exp.warmup_s);
                // When the local generator's load began (after it connected); a remote one's
                // is not known here, and its faults count from when it was started.
                let started = Arc::new(OnceLock::new());
                let remote_load = matches!(&remote, Some((_, g)) if !g.is_empty());
                let result = std::thread::scope(|scope| -> anyhow::Result<_> {
                    let job = scope.spawn(|| match &remote {
                        Some((remote, generators)) if !generators.is_empty() => {
                            let client_dir = file.parent().unwrap_or(Path::new("."));
                            let keep = dir.join("generators").join(&point_id);
                            let r = remote.measure(
                                generators, client_dir, &load_plan, &point_id, &keep, &stop,
                            );
                            Ok((!stop.load(Ordering::SeqCst)).then_some(r))
                        }
                        _ => {
                            // The generator on one thread (see the runtime above).
                            let rt = tokio::runtime::Builder::new_current_thread()
                                .enable_all()
                                .build()?;
                            Ok(rt.block_on(async {
                                tokio::select! {
                                    r = measure(&file, &load_plan, started.clone()) => Some(r),
                                    _ = stopped(&stop) => None,
                                }
                            }))
                        }
                    });
                    let mut host = match schedule {
                        Some(_) => Some(LiveCluster {
                            poller: rt.block_on(async { StatusPoller::new(&file) })?,
                            cluster: &mut *cluster,
                            rt: &rt,
                        }),
                        None => None,
                    };
                    // This thread keeps the runtime turning (a Ctrl-C is seen) and applies each
                    // fault when it is due.
                    while !job.is_finished() {
                        let mut wait = Duration::from_millis(50);
                        let began = if remote_load {
                            Some(t0)
                        } else {
                            started.get().copied()
                        };
                        if let (Some(s), Some(h), Some(began)) =
                            (schedule.as_mut(), host.as_mut(), began)
                        {
                            let elapsed = began.elapsed().saturating_sub(warmup);
                            s.step(h, elapsed, SystemTime::now());
                            if let Some(due) = s.next_due() {
                                wait = wait.min(due.saturating_sub(elapsed));
                            }
                        }
                        let wait = wait.max(Duration::from_millis(1));
                        rt.block_on(async { tokio::time::sleep(wait).await });
                    }
                    if let (Some(s), Some(h)) = (schedule.as_mut(), host.as_mut()) {
                        s.finish(h, SystemTime::now());
                    }
                    job.join().expect("the load thread panicked")
                })?;
                let leaders = watch.map(LeaderWatch::finish).unwrap_or_default();
                let secs = t0.elapsed().as_secs_f64();
                let after = cluster.sample();
                // ...and just after it ended.
                let counters1 = replicated.then(|| rt.block_on(read_counters(&file, g.nodes)));
                let Some(result) = result else {
                    if let Some(c) = current.take() {
                        c.stop()?;
                    }
                    break 'outer;
                };
                let result = result?;
                // Same leader at the same ballot before and after, or an election ran during
                // the point (its latencies include the failover).
                let leader_changed =
                    multi && (leader0.is_none() || rt.block_on(leadership(&file)) != leader0);
                let rtt = if g.nodes > 1 {
                    rt.block_on(peer_rtts(&file, setup.emulation.as_ref()))
                } else {
                    Vec::new()
                };
                result.write_interval_log(&dir.join("hist").join(format!("{point_id}.hlog")))?;
                let window_start = result.window_start;
                let records = match &schedule {
                    Some(s) => observe::fault_records(&faults, s.outcomes(), window_start),
                    None => Vec::new(),
                };
                let availability = if exp.wants_timeline() {
                    let tl = observe::timeline(&result.timeline, &records, &leaders, window_start);
                    results::write_timeline(&dir, &point_id, &tl)?;
                    results::Availability::compute(&tl, &results::fault_windows(&records))
                } else {
                    None
                };
                let linearizable = match &result.history {
                    Some(history) => {
                        bar.set_message(format!(
                            "{} {label} rep {rep}: checking the history",
                            g.protocol
                        ));
                        let budget = Duration::from_secs_f64(exp.record.check_budget_s);
                        // Every written key read once more, now that the load and the faults
                        // are over (a truncated history is missing writes: no read-back).
                        let verdict = if history.truncated {
                            observe::check_history(history, budget)
                        } else {
                            let finals =
                                rt.block_on(observe::read_back(&file, history, READ_BACK_BUDGET));
                            observe::check_with_final_reads(history, finals, budget)
                        };
                        // Kept for a reader to look into when the check did not pass.
                        if verdict.verdict != results::LINEARIZABLE {
                            let histories = dir.join("history");
                            std::fs::create_dir_all(&histories)?;
                            history.write_jsonl(&histories.join(format!("{point_id}.jsonl")))?;
                        }
                        Some(verdict)
                    }
                    None => None,
                };
                let mut point = point(PointFacts {
                    point_id,
                    grid: g,
                    level: *level,
                    repetition: rep,
                    summary: &result.summary,
                    nodes: node_stats(&before, &after, secs),
                    leader_changed,
                    logs: cluster.logs(),
                    rtt,
                });
                point.counters = counters0
                    .zip(counters1)
                    .map(|(b, a)| contention(b, a, result.summary.completed));
                point.stall = Some(stall(
                    &result,
                    &records,
                    &exp,
                    g.protocol,
                    *level,
                    leader_changed,
                ));
                point.faults = records;
                point.availability = availability;
                point.linearizable = linearizable;
                writeln!(points, "{}", serde_json::to_string(&point)?)?;
                points.flush()?;
                measured += 1;
                bar.inc(1);
                // A fault changed the cluster; an overload may have left requests queued in it.
                if !faults.is_empty() || result.summary.timeouts + result.summary.errors > 0 {
                    current.take().expect("started above").stop()?;
                }
            }
            if let Some(c) = current.take() {
                c.stop()?;
            }
        }
    }
    if let Some(installed) = netem {
        let netem_logs = dir.join("logs").join("netem");
        std::fs::create_dir_all(&netem_logs)?;
        for (name, text) in installed.remove()? {
            std::fs::write(netem_logs.join(format!("{name}.txt")), text)?;
        }
    }
    if let Some((remote, _)) = &remote {
        remote.clean_up()?;
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

/// What one measured point is made of.
struct PointFacts<'a> {
    point_id: String,
    grid: &'a GridPoint,
    level: Level,
    repetition: u32,
    summary: &'a loadgen::LoadSummary,
    nodes: Vec<NodeStats>,
    leader_changed: bool,
    logs: PathBuf,
    rtt: Vec<LinkRtt>,
}

/// The line of `points.jsonl` for one point: the schema is `results::Point`'s.
fn point(f: PointFacts) -> Point {
    let s = f.summary;
    let mut params: std::collections::BTreeMap<String, serde_json::Value> = f
        .grid
        .params
        .iter()
        .map(|(k, v)| (k.clone(), toml_to_json(v)))
        .collect();
    match f.level {
        Level::Rate(r) => params.insert("rate".into(), r.into()),
        Level::Clients(c) => params.insert("clients".into(), c.into()),
    };
    Point {
        point_id: f.point_id,
        protocol: f.grid.protocol.to_string(),
        params,
        repetition: f.repetition,
        offered_ops: s.offered_ops,
        throughput_ops: s.throughput_ops,
        p50_us: s.p50_us as f64,
        p90_us: s.p90_us as f64,
        p99_us: s.p99_us as f64,
        p999_us: s.p999_us as f64,
        max_us: s.max_us as f64,
        mean_us: s.mean_us,
        completed: s.completed,
        errors: s.errors,
        timeouts: s.timeouts,
        send_lag_p99_us: s.send_lag_p99_us as f64,
        generator_bound: s.generator_bound,
        leader_changed: f.leader_changed,
        logs: Some(f.logs.display().to_string()),
        nodes: f.nodes,
        rtt: f.rtt,
        faults: Vec::new(),
        availability: None,
        linearizable: None,
        counters: None,
        stall: None,
        extra: [
            ("warmup_s".to_string(), s.warmup_s.into()),
            ("duration_s".to_string(), s.duration_s.into()),
        ]
        .into_iter()
        .collect(),
    }
}

/// Each node's CPU share over `secs` and its memory at the end, from samples taken before and
/// after the point on the node's own host.
fn node_stats(
    before: &[(NodeId, Option<Sample>)],
    after: &[(NodeId, Option<Sample>)],
    secs: f64,
) -> Vec<NodeStats> {
    before
        .iter()
        .zip(after)
        .map(|((id, b), (_, a))| NodeStats {
            id: id.0.into(),
            cpu_percent: match (b, a) {
                (Some(b), Some(a)) => (a.cpu_seconds - b.cpu_seconds) / secs * 100.0,
                _ => f64::NAN,
            },
            rss_bytes: a.map_or(0, |a| a.rss_bytes),
        })
        .collect()
}

/// A swept TOML value as JSON (TOML has nothing JSON cannot hold but dates, kept as text).
fn toml_to_json(v: &toml::Value) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_else(|_| v.to_string().into())
}

/// Every node's round trip to each of its peers, as its connections measure them, beside the
/// round trip `emulation` configures for the pair.
async fn peer_rtts(file: &Path, emulation: Option<&LinkEmulation>) -> Vec<LinkRtt> {
    let Some(mut client) = status_client(file) else {
        return Vec::new();
    };
    let one_way = |from: u32, to: u32| {
        emulation?
            .links
            .iter()
            .find(|l| l.from == from && l.to == to)
            .map(|l| l.delay_us as f64)
    };
    let mut out = Vec::new();
    let statuses = client.statuses().await;
    for status in statuses {
        for (peer, rtt_us) in status.peer_rtt_us {
            let (a, b) = (status.node.0, peer.0);
            let configured = match (one_way(a, b), one_way(b, a)) {
                (None, None) => None,
                (x, y) => Some(x.unwrap_or(0.0) + y.unwrap_or(0.0)),
            };
            out.push(LinkRtt {
                from: a,
                to: b,
                measured_us: rtt_us as f64,
                configured_us: configured,
            });
        }
    }
    out
}

/// Each of the `nodes` nodes of the cluster in `file` with its counters, or why they could not
/// be read (a node that does not answer is recorded as such, never as zeros).
async fn read_counters(file: &Path, nodes: u32) -> Vec<(u32, Result<CounterValues, String>)> {
    let Some(mut client) = status_client(file) else {
        let why = format!("cannot make a status client from {}", file.display());
        return (0..nodes).map(|n| (n, Err(why.clone()))).collect();
    };
    client
        .status_results()
        .await
        .into_iter()
        .map(|(node, r)| (node.0, r.map(|s| counter_values(&s.counters))))
        .collect()
}

/// A node's counters as points.jsonl keeps them: messages sent by kind name.
fn counter_values(c: &wire::NodeCounters) -> CounterValues {
    CounterValues {
        sent: c
            .sent_by_name()
            .map(|(name, n)| (name.to_string(), n))
            .collect(),
        phase1_rounds: c.phase1_rounds,
        nacks_received: c.nacks_received,
        preemptions: c.preemptions,
        backoff_us: c.backoff_us,
        batches: c.batches,
        batched_commands: c.batched_commands,
        max_batch_seen: c.max_batch_seen,
        slots_chosen: c.slots_chosen,
        noops: c.noops,
        commands_executed: c.commands_executed,
        elections_won: c.elections_won,
        campaigns: c.campaigns,
        retransmits: c.retransmits,
        snapshots_taken: c.snapshots_taken,
        snapshots_installed: c.snapshots_installed,
        ignored: c.ignored,
        overloaded: c.overloaded,
        attempts: c.attempts.to_vec(),
        phase1_rtt_us: c.phase1_rtt_us,
    }
}

/// The point's counters from the readings before and after its load: a node missing from
/// either reading is recorded with why.
fn contention(
    before: Vec<(u32, Result<CounterValues, String>)>,
    after: Vec<(u32, Result<CounterValues, String>)>,
    completed: u64,
) -> Contention {
    let mut readings = Vec::new();
    for (id, b) in before {
        let a = after
            .iter()
            .find(|(n, _)| *n == id)
            .map(|(_, a)| a.clone())
            .unwrap_or_else(|| Err("not in the second reading".into()));
        let r = match (b, a) {
            (Ok(b), Ok(a)) => Ok((b, a)),
            (Err(e), _) => Err(format!("before the load: {e}")),
            (_, Err(e)) => Err(format!("after the load: {e}")),
        };
        readings.push((id, r));
    }
    Contention::compute(readings, completed)
}

/// The point's longest stall, from the generator's 100 ms timeline (recorded for every point,
/// whether or not its files are written), and whether it counts as a livelock: at least
/// `livelock_after_s` with load offered, overlapping no fault, not an election. Only Basic
/// Paxos has proposers that contend: another protocol's stall (overload, a stalled generator)
/// is recorded, never marked.
fn stall(
    result: &LoadResult,
    records: &[results::FaultRecord],
    exp: &Experiment,
    protocol: Protocol,
    level: Level,
    election: bool,
) -> Stall {
    let rows = observe::timeline(&result.timeline, records, &[], result.window_start).rows;
    let offered = match level {
        Level::Rate(r) => r > 0.0,
        Level::Clients(c) => c > 0,
    };
    let threshold_ms = (exp.livelock_after_s * 1000.0).round() as u64;
    let mut s = Stall::compute(
        &rows,
        &results::fault_windows(records),
        threshold_ms,
        offered,
        election,
    );
    if protocol != Protocol::BasicPaxos {
        s.livelock = false;
    }
    s
}

/// The Multi-Paxos leader of the cluster in `file` and its ballot, if one node says it leads.
async fn leadership(file: &std::path::Path) -> Option<(NodeId, paxos::Ballot)> {
    status_client(file)?.leadership().await
}

/// A client of the cluster in `file` for status requests (it never issues a command, so its
/// session id does not matter). Must be called inside a tokio runtime.
fn status_client(file: &Path) -> Option<node::client::KvClient> {
    observe::cluster_client(file, paxos::ClientId(0))
}

/// How long reading every written key back after a point may take (see
/// [`observe::read_back`]); keys not read by then are reported as unread.
const READ_BACK_BUDGET: Duration = Duration::from_secs(30);

/// Returns once `stop` is set (checked every 50 ms).
async fn stopped(stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The load of one point: what a single generator would offer.
fn plan(g: &GridPoint, exp: &Experiment, level: Level, level_index: usize) -> LoadPlan {
    LoadPlan {
        protocol: g.protocol,
        level: match level {
            Level::Rate(rate) => PlanLevel::Open {
                rate,
                poisson: exp.load.poisson,
            },
            Level::Clients(clients) => PlanLevel::Closed {
                clients,
                depth: exp.load.depth,
            },
        },
        workload: g.workload.clone(),
        level_index,
        warmup_s: exp.warmup_s,
        duration_s: exp.duration_s,
        timeout_ms: exp.load.timeout_ms,
        pacing_us: exp.load.pacing_us,
        session_base: None,
        history: exp.wants_history().then_some(exp.record.history_max_ops),
    }
}

/// Runs the load generator in this process against the cluster in `file`; `started` is set
/// when its load begins.
async fn measure(
    file: &std::path::Path,
    plan: &LoadPlan,
    started: Arc<OnceLock<Instant>>,
) -> anyhow::Result<LoadResult> {
    let cluster = ClusterConfig::load(file)?;
    let certs = cluster.client_certs()?;
    let (endpoint, nodes) = cluster.client_endpoint(&certs)?;
    let mut config = plan.config(endpoint, nodes)?;
    config.started = Some(started);
    Ok(loadgen::run(config).await?)
}
