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
//!
//! With `rates = "auto"` the levels of a repetition are the probes of a [`RateSearch`]: each is
//! measured as a point like any other (its `search` field gives the step and the verdict), a
//! failing level is always followed by a fresh cluster (the search goes lower next, and must not
//! inherit the backlog), and the bracket goes to `search.jsonl`. Each repetition searches on
//! its own from `start_ops`. With `repetitions = "auto"` a configuration is repeated until the
//! rule of [`crate::repeat`] stops it, and `repetitions.jsonl` says why. Both make the run's
//! length a range: `--dry-run` gives it, and the progress bar counts the most points and takes
//! off those a search or a configuration did not need.

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
use results::{
    Contention, CounterValues, LinkRtt, NodeStats, Point, RepetitionRecord, SearchRecord,
    SearchStep, Stall,
};

use crate::env_info::{self, EnvInfo};
use crate::experiment::{
    params_text, Emulation, Experiment, GridPoint, LoadMode, Rates, RepetitionPlan,
};
use crate::faults::{Fault, Schedule};
use crate::launcher::{Cluster, ClusterSetup, Launcher, LocalBackend, Sample};
use crate::live::{LeaderWatch, LiveCluster, StatusPoller};
use crate::netem;
use crate::observe;
use crate::plan::{LoadPlan, PlanLevel};
use crate::remote::{RemotePlan, RemoteRun, SshBackend};
use crate::repeat::{Decision, RepetitionRule, Samples};
use crate::search::{self, RateSearch, SearchSpec};

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

impl Level {
    /// The rate or the client count, as a number.
    fn value(self) -> f64 {
        match self {
            Level::Rate(r) => r,
            Level::Clients(c) => f64::from(c),
        }
    }
}

/// How a configuration's load levels are chosen: a list, or a rate search.
enum Levels {
    /// These levels in turn.
    Fixed(Vec<Level>),
    /// `rates = "auto"`: as the search decides ([`crate::search`]).
    Search(SearchSpec),
}

impl Levels {
    /// The levels of `protocol`'s configurations (the experiment is validated: a protocol
    /// whose rates are `"auto"` has a search).
    fn of(exp: &Experiment, protocol: Protocol) -> Levels {
        if exp.load.mode == LoadMode::Closed {
            return Levels::Fixed(
                exp.load
                    .clients
                    .iter()
                    .map(|c| Level::Clients(*c))
                    .collect(),
            );
        }
        match (exp.load.rates_for(protocol), exp.load.search_for(protocol)) {
            (_, Some(spec)) => Levels::Search(spec.clone()),
            (Rates::List(rates), None) => {
                Levels::Fixed(rates.iter().map(|r| Level::Rate(*r)).collect())
            }
            (Rates::Auto, None) => unreachable!("checked when the experiment was loaded"),
        }
    }

    /// The fewest and the most levels one repetition measures.
    fn range(&self) -> (u64, u64) {
        match self {
            Levels::Fixed(ls) => (ls.len() as u64, ls.len() as u64),
            Levels::Search(spec) => (1, u64::from(spec.max_levels())),
        }
    }

    /// `3 level(s)`, or the search and its range of levels.
    fn describe(&self) -> String {
        match self {
            Levels::Fixed(ls) => format!("{} level(s)", ls.len()),
            Levels::Search(s) => format!(
                "rate search {} → {} ops/s (×{}, to {}%): {} level(s)",
                s.start_ops,
                s.max_ops,
                s.factor,
                s.resolution * 100.0,
                range_text(self.range().0, self.range().1)
            ),
        }
    }
}

/// `5`, or `3 to 12`.
fn range_text(lo: u64, hi: u64) -> String {
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo} to {hi}")
    }
}

/// `1 repetition(s)`, or the rule of `repetitions = "auto"`.
fn repetitions_text(plan: &RepetitionPlan) -> String {
    match plan {
        RepetitionPlan::Fixed(n) => format!("{n} repetition(s)"),
        RepetitionPlan::Auto(r) => format!(
            "{} to {} repetition(s) (until every 95% interval of p50 and throughput is within {}% of its median)",
            r.min,
            r.max,
            r.ci_width * 100.0
        ),
    }
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
    let plan = exp.repetition_plan();
    // Resolved against the experiment file, as its other paths are.
    let hosts_file = exp.cluster.hosts.as_ref().map(|h| {
        args.experiment
            .parent()
            .map_or_else(|| h.clone(), |d| d.join(h))
    });
    let max_nodes = grid.iter().map(GridPoint::total_nodes).max().unwrap_or(1);
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
        let (mut fewest, mut most) = (0u64, 0u64);
        for g in &grid {
            let levels = Levels::of(&exp, g.protocol);
            let (lo, hi) = levels.range();
            let (lo, hi) = (lo * u64::from(plan.min()), hi * u64::from(plan.max()));
            fewest += lo;
            most += hi;
            let learners = match g.learners {
                0 => String::new(),
                n => format!(" + {n} learner(s)"),
            };
            println!(
                "# {} on {} node(s){learners}, {}: {} × {} = {} point(s)",
                g.protocol,
                g.nodes,
                params_text(&g.params),
                levels.describe(),
                repetitions_text(&plan),
                range_text(lo, hi),
            );
        }
        let per_point = exp.warmup_s + exp.duration_s;
        let secs = |n: u64| format!("{:.0} s", n as f64 * per_point);
        let load = if fewest == most {
            secs(most)
        } else {
            format!("{} to {}", secs(fewest), secs(most))
        };
        println!(
            "# in all: {} point(s), {load} of load (warm-up and window), plus cluster starts",
            range_text(fewest, most)
        );
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
    let points = std::fs::File::create(dir.join("points.jsonl"))?;

    // The most points the run can take; searches and repetitions that end early take theirs
    // off as they end.
    let total = grid
        .iter()
        .map(|g| Levels::of(&exp, g.protocol).range().1)
        .sum::<u64>()
        * u64::from(plan.max());
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
    let (launcher, remote) = match checked {
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
    let mut runner = Runner {
        exp: &exp,
        dir: dir.clone(),
        rt,
        stop: stop.clone(),
        launcher,
        remote,
        faults: exp.fault_list(),
        bar: bar.clone(),
        points,
        measured: 0,
    };
    'outer: for g in &grid {
        let levels = Levels::of(&exp, g.protocol);
        let setup = runner.setup(g, &regions);
        // Each point's figures over the repetitions so far, for `repetitions = "auto"`: one
        // per level, or the knee of a search.
        let mut samples: Vec<Samples> = match &levels {
            Levels::Fixed(ls) => ls
                .iter()
                .map(|l| Samples {
                    level: Some(l.value()),
                    ..Samples::default()
                })
                .collect(),
            Levels::Search(_) => vec![Samples::default()],
        };
        for rep in 0..plan.max() {
            let measured = match &levels {
                Levels::Fixed(ls) => runner.run_levels(g, &setup, ls, rep)?,
                Levels::Search(spec) => runner.run_search(g, &setup, spec, rep)?,
            };
            let Some(measured) = measured else {
                break 'outer;
            };
            let RepetitionPlan::Auto(rule) = plan else {
                continue;
            };
            for (s, p) in samples.iter_mut().zip(measured) {
                if let Some(p) = p {
                    s.p50_us.push(p.p50_us);
                    s.throughput_ops.push(p.throughput_ops);
                }
            }
            let done = rep + 1;
            let intervals = RepetitionRule::intervals(&samples);
            if let Decision::Stop(outcome) = rule.decide(done, &intervals) {
                runner.append(
                    results::REPETITIONS_FILE,
                    &RepetitionRecord {
                        protocol: g.protocol.to_string(),
                        params: params_json(&g.params),
                        outcome,
                        repetitions: done,
                        min_repetitions: rule.min,
                        max_repetitions: rule.max,
                        ci_width: rule.ci_width,
                        points: intervals,
                    },
                )?;
                runner.unplan(u64::from(rule.max - done) * levels.range().1);
                break;
            }
        }
    }
    let measured = runner.measured;
    if let Some(installed) = netem {
        let netem_logs = dir.join("logs").join("netem");
        std::fs::create_dir_all(&netem_logs)?;
        for (name, text) in installed.remove()? {
            std::fs::write(netem_logs.join(format!("{name}.txt")), text)?;
        }
    }
    if let Some((remote, _)) = &runner.remote {
        remote.clean_up()?;
    }
    let interrupted = stop.load(Ordering::SeqCst);
    let planned = bar.length().unwrap_or(total);
    bar.finish_and_clear();
    env.end = Some(env_info::now_utc());
    std::fs::write(
        dir.join("env.json"),
        serde_json::to_string_pretty(&env)? + "\n",
    )?;
    results::render(&dir)?;
    println!(
        "{measured} of {planned} points measured; results in {}",
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

/// What every point of a run shares, and the files it writes: the experiment, the results
/// directory, the runtime that talks to the nodes, the launcher, the generators' hosts, the
/// faults, the progress bar and `points.jsonl`.
struct Runner<'a> {
    exp: &'a Experiment,
    dir: PathBuf,
    rt: tokio::runtime::Runtime,
    /// Set by Ctrl-C.
    stop: Arc<AtomicBool>,
    launcher: Launcher,
    /// Runs over ssh: the deployed hosts and the generator hosts (none: the generator runs
    /// here).
    remote: Option<(Arc<RemoteRun>, Vec<String>)>,
    faults: Vec<Fault>,
    bar: ProgressBar,
    points: std::fs::File,
    /// Points written so far (also numbers the next point's id).
    measured: u64,
}

impl Runner<'_> {
    /// The cluster of grid point `g` (node i of a local run in `regions[i]`).
    fn setup(&self, g: &GridPoint, regions: &[String]) -> ClusterSetup {
        let exp = self.exp;
        ClusterSetup {
            protocol: g.protocol,
            nodes: g.nodes,
            learners: g.learners,
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
                .map(|n| n.emulation(&regions[..g.total_nodes() as usize]))
                // Link faults go through the nodes' emulated links: give them one (with
                // no configured delay) if the experiment does not.
                .or_else(|| {
                    self.faults
                        .iter()
                        .any(|f| f.action.on_links())
                        .then(LinkEmulation::default)
                }),
        }
    }

    /// Measures one point: grid point `g` at `level` (the `level_index`-th level of
    /// repetition `rep`, which varies the workload's and the faults' seeds), on `current`, or
    /// on a cluster started for it when there is none (left in `current` for the next level).
    /// Writes the point's interval log, timeline and history files; the caller writes the
    /// point itself ([`Runner::write_point`]) and decides whether the cluster goes on. `None`:
    /// interrupted (Ctrl-C), with the cluster stopped.
    fn measure_point(
        &mut self,
        g: &GridPoint,
        setup: &ClusterSetup,
        current: &mut Option<Cluster>,
        level: Level,
        level_index: usize,
        rep: u32,
    ) -> anyhow::Result<Option<Point>> {
        let Runner {
            exp,
            dir,
            rt,
            stop,
            launcher,
            remote,
            faults,
            bar,
            measured,
            ..
        } = self;
        let (exp, faults) = (*exp, &*faults);
        if stop.load(Ordering::SeqCst) {
            if let Some(c) = current.take() {
                c.stop()?;
            }
            return Ok(None);
        }
        let label = params_text(&g.params);
        if current.is_none() {
            bar.set_message(format!("{} {label} rep {rep}: starting", g.protocol));
            *current = Some(launcher.start(setup)?);
        }
        let cluster = current.as_mut().expect("started above");
        bar.set_message(format!("{} {label} rep {rep}: {level:?}", g.protocol));
        let point_id = format!("p{measured:04}");
        let file = cluster.client_file.clone();
        let multi = g.protocol == Protocol::MultiPaxos;
        // What every node says just before the load starts: the leader, and its counters
        // (every cluster, the single Unreplicated node's too: its costs per command).
        let replicated = g.total_nodes() > 1;
        let reading0 = rt.block_on(Reading::take(&file, g.total_nodes()));
        let leader0 = if multi { reading0.leadership() } else { None };
        let counters0 = reading0.counters();
        let before = cluster.sample();
        let load_plan = plan(g, exp, level, level_index);
        // Faults need the cluster on this thread, so the load runs on another.
        let mut schedule = (!faults.is_empty()).then(|| {
            let seed = exp.workload.seed ^ (u64::from(rep) << 32) ^ level_index as u64;
            Schedule::new(faults, g.nodes, g.learners, multi, seed)
        });
        // With learners the watch also samples how far behind the leader they are.
        let watch = if (exp.wants_timeline() && multi) || g.learners > 0 {
            Some(LeaderWatch::start(&file, g.learner_ids())?)
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
                    let r =
                        remote.measure(generators, client_dir, &load_plan, &point_id, &keep, stop);
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
                            _ = stopped(stop) => None,
                        }
                    }))
                }
            });
            let mut host = match schedule {
                Some(_) => Some(LiveCluster {
                    poller: rt.block_on(async { StatusPoller::new(&file) })?,
                    cluster: &mut *cluster,
                    rt,
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
                if let (Some(s), Some(h), Some(began)) = (schedule.as_mut(), host.as_mut(), began) {
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
        let (leaders, lags) = watch.map(LeaderWatch::finish).unwrap_or_default();
        let secs = t0.elapsed().as_secs_f64();
        let after = cluster.sample();
        // ...and just after it ended (the same read gives the leader and the round trips).
        let reading1 = rt.block_on(Reading::take(&file, g.total_nodes()));
        let counters1 = reading1.counters();
        let Some(result) = result else {
            if let Some(c) = current.take() {
                c.stop()?;
            }
            return Ok(None);
        };
        let result = result?;
        // Same leader at the same ballot before and after, or an election ran during
        // the point (its latencies include the failover).
        let leader_changed = multi && (leader0.is_none() || reading1.leadership() != leader0);
        let rtt = if replicated {
            reading1.rtts(setup.emulation.as_ref())
        } else {
            Vec::new()
        };
        result.write_interval_log(&dir.join("hist").join(format!("{point_id}.hlog")))?;
        let window_start = result.window_start;
        let records = match &schedule {
            Some(s) => observe::fault_records(faults, s.outcomes(), window_start),
            None => Vec::new(),
        };
        let availability = if exp.wants_timeline() {
            let tl = observe::timeline(&result.timeline, &records, &leaders, window_start);
            results::write_timeline(dir, &point_id, &tl)?;
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
                let finals = (!history.truncated)
                    .then(|| rt.block_on(observe::read_back(&file, history, READ_BACK_BUDGET)));
                let verdict = match finals {
                    // Stale by design: the lost writes are still counted.
                    _ if g.learner_reads() => observe::learner_reads_not_checked(history, finals),
                    None => observe::check_history(history, budget),
                    Some(finals) => observe::check_with_final_reads(history, finals, budget),
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
            level,
            repetition: rep,
            summary: &result.summary,
            nodes: node_stats(&before, &after, secs),
            leader_changed,
            logs: cluster.logs(),
            rtt,
        });
        point.counters = Some(contention(counters0, counters1, result.summary.completed));
        point.stall = Some(stall(
            &result,
            &records,
            exp,
            g.protocol,
            level,
            leader_changed,
        ));
        point.staleness = (g.learners > 0)
            .then(|| staleness(g, &lags, &result))
            .flatten();
        point.faults = records;
        point.availability = availability;
        point.linearizable = linearizable;
        Ok(Some(point))
    }

    /// One repetition of grid point `g` at each of `levels` in turn: the points, one per
    /// level, or `None` when interrupted.
    fn run_levels(
        &mut self,
        g: &GridPoint,
        setup: &ClusterSetup,
        levels: &[Level],
        rep: u32,
    ) -> anyhow::Result<Option<Vec<Option<Point>>>> {
        // One cluster serves the load levels in turn, until a level overloads it: requests
        // it never answered may still be queued inside, and would be the next level's
        // backlog. The level after that gets a fresh cluster.
        let mut current: Option<Cluster> = None;
        let mut points = Vec::new();
        for (li, level) in levels.iter().enumerate() {
            let Some(point) = self.measure_point(g, setup, &mut current, *level, li, rep)? else {
                return Ok(None);
            };
            self.write_point(&point)?;
            // A fault changed the cluster; an overload may have left requests queued in it.
            if !self.faults.is_empty() || point.timeouts + point.errors > 0 {
                if let Some(c) = current.take() {
                    c.stop()?;
                }
            }
            points.push(Some(point));
        }
        if let Some(c) = current.take() {
            c.stop()?;
        }
        Ok(Some(points))
    }

    /// One repetition's rate search for grid point `g` ([`crate::search`]): every level it
    /// measures is written as a point with its step, and the bracket to search.jsonl. Returns
    /// the point at the knee (the highest passing level; `None` if none passed), or `None`
    /// when interrupted.
    fn run_search(
        &mut self,
        g: &GridPoint,
        setup: &ClusterSetup,
        spec: &SearchSpec,
        rep: u32,
    ) -> anyhow::Result<Option<Vec<Option<Point>>>> {
        let slo = self.exp.slo_p99_us as f64;
        let mut search = RateSearch::new(spec.clone());
        let mut current: Option<Cluster> = None;
        // Each rate comes up once: growth only rises, bisection stays inside the bracket.
        let mut measured: Vec<(f64, Point)> = Vec::new();
        while let Some(probe) = search.next_probe() {
            let level = Level::Rate(probe.rate);
            let step = probe.step as usize;
            let Some(mut point) = self.measure_point(g, setup, &mut current, level, step, rep)?
            else {
                return Ok(None);
            };
            let verdict = search::verdict(&point, slo);
            point.search = Some(SearchStep {
                phase: probe.phase,
                step: probe.step,
                passed: verdict.is_ok(),
                why: verdict.clone().err(),
            });
            self.write_point(&point)?;
            // A failed level may have left requests queued in the cluster, and the search
            // goes lower next: a fresh cluster, so that the lower level inherits no backlog.
            // A fault changed the cluster.
            if verdict.is_err() || !self.faults.is_empty() {
                if let Some(c) = current.take() {
                    c.stop()?;
                }
            }
            search.record(probe.rate, verdict.is_ok());
            measured.push((probe.rate, point));
        }
        if let Some(c) = current.take() {
            c.stop()?;
        }
        let outcome = search.outcome().expect("a search ends with an outcome");
        let (pass, fail) = search.bracket();
        let at = |rate: Option<f64>| {
            rate.and_then(|r| measured.iter().find(|(x, _)| *x == r).map(|(_, p)| p))
        };
        let (pass_point, fail_point) = (at(pass), at(fail));
        self.append(
            results::SEARCH_FILE,
            &SearchRecord {
                protocol: g.protocol.to_string(),
                params: params_json(&g.params),
                repetition: rep,
                outcome,
                pass_ops: pass,
                fail_ops: fail,
                pass_point: pass_point.map(|p| p.point_id.clone()),
                fail_point: fail_point.map(|p| p.point_id.clone()),
                fail_why: fail_point.and_then(|p| p.search.as_ref()?.why.clone()),
                pass_generator_bound: pass_point.is_some_and(|p| p.generator_bound),
                fail_generator_bound: fail_point.is_some_and(|p| p.generator_bound),
                levels: search.steps(),
                start_ops: spec.start_ops,
                max_ops: spec.max_ops,
                factor: spec.factor,
                resolution: spec.resolution,
                slo_p99_us: slo,
            },
        )?;
        self.unplan(u64::from(spec.max_levels().saturating_sub(search.steps())));
        Ok(Some(vec![pass_point.cloned()]))
    }

    /// Appends `record` as a line of `file` in the results directory.
    fn append(&self, file: &str, record: &impl serde::Serialize) -> anyhow::Result<()> {
        let path = self.dir.join(file);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        writeln!(f, "{}", serde_json::to_string(record)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Takes `points` the run will not measure off the progress bar's plan.
    fn unplan(&self, points: u64) {
        let len = self.bar.length().unwrap_or(0);
        self.bar.set_length(len.saturating_sub(points));
    }

    /// Appends `point` to points.jsonl and counts it.
    fn write_point(&mut self, point: &Point) -> anyhow::Result<()> {
        writeln!(self.points, "{}", serde_json::to_string(point)?)?;
        self.points.flush()?;
        self.measured += 1;
        self.bar.inc(1);
        Ok(())
    }
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
    let mut params = params_json(&f.grid.params);
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
        generator_cpu_us_per_request: s.generator_cpu_us_per_request,
        leader_changed: f.leader_changed,
        logs: Some(f.logs.display().to_string()),
        nodes: f.nodes,
        rtt: f.rtt,
        faults: Vec::new(),
        availability: None,
        linearizable: None,
        counters: None,
        stall: None,
        staleness: None,
        search: None,
        extra: [
            ("warmup_s".to_string(), s.warmup_s.into()),
            ("duration_s".to_string(), s.duration_s.into()),
            ("pacing_us".to_string(), s.pacing_us.into()),
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

/// Swept parameters as points.jsonl keeps them.
fn params_json(
    params: &std::collections::BTreeMap<String, toml::Value>,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    params
        .iter()
        .map(|(k, v)| (k.clone(), toml_to_json(v)))
        .collect()
}

/// A swept TOML value as JSON (TOML has nothing JSON cannot hold but dates, kept as text).
fn toml_to_json(v: &toml::Value) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_else(|_| v.to_string().into())
}

/// What every node of a cluster said at one moment, or why it could not be had: one status
/// read serves a point's counters, its leader and its round trips.
struct Reading(Vec<(NodeId, Result<wire::NodeStatus, String>)>);

impl Reading {
    /// Asks each of the `nodes` nodes of the cluster in `file` for its status.
    async fn take(file: &Path, nodes: u32) -> Reading {
        match status_client(file) {
            Some(mut client) => Reading(client.status_results().await),
            None => {
                let why = format!("cannot make a status client from {}", file.display());
                Reading((0..nodes).map(|n| (NodeId(n), Err(why.clone()))).collect())
            }
        }
    }

    fn statuses(&self) -> impl Iterator<Item = &wire::NodeStatus> {
        self.0.iter().filter_map(|(_, r)| r.as_ref().ok())
    }

    /// The node that says it leads at the highest ballot.
    fn leadership(&self) -> Option<(NodeId, paxos::Ballot)> {
        crate::live::leader_of(&self.statuses().cloned().collect::<Vec<_>>())
    }

    /// Each node with its counters, or why they could not be read (a node that does not
    /// answer is recorded as such, never as zeros).
    fn counters(&self) -> Vec<(u32, Result<CounterValues, String>)> {
        self.0
            .iter()
            .map(|(node, r)| {
                let values = r.as_ref().map(counter_values);
                (node.0, values.map_err(String::clone))
            })
            .collect()
    }

    /// Every node's round trip to each of its peers, as its connections measure them, beside
    /// the round trip `emulation` configures for the pair.
    fn rtts(&self, emulation: Option<&LinkEmulation>) -> Vec<LinkRtt> {
        let one_way = |from: u32, to: u32| {
            emulation?
                .links
                .iter()
                .find(|l| l.from == from && l.to == to)
                .map(|l| l.delay_us as f64)
        };
        let mut out = Vec::new();
        for status in self.statuses() {
            for &(peer, rtt_us) in &status.peer_rtt_us {
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
}

/// A node's counters as points.jsonl keeps them: messages sent and received by kind name,
/// the core's counters and the runtime's wire counters.
fn counter_values(s: &wire::NodeStatus) -> CounterValues {
    let c = &s.counters;
    let traffic = |t: &wire::Traffic| results::TrafficValues {
        bytes_sent: t.bytes_sent,
        bytes_received: t.bytes_received,
        writes: t.writes,
        datagrams_sent: t.datagrams_sent,
        datagrams_received: t.datagrams_received,
    };
    CounterValues {
        received: s
            .wire
            .received_by_name()
            .map(|(name, n)| (name.to_string(), n))
            .collect(),
        peer_traffic: Some(traffic(&s.wire.peer)),
        client_traffic: Some(traffic(&s.wire.client)),
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
        local_reads: c.local_reads,
        lease_refusals: c.lease_refusals,
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

/// The learners' lag behind the leader over the point's measured window, from the watch's
/// polls (`None`: no poll in the window read the leader).
fn staleness(
    g: &GridPoint,
    lags: &[crate::live::LagSample],
    result: &LoadResult,
) -> Option<results::Staleness> {
    let window = Duration::from_secs_f64(result.summary.duration_s);
    let polls: Vec<(f64, u64, Vec<u64>)> = lags
        .iter()
        .filter_map(|s| {
            let into = s.at.duration_since(result.window_start).ok()?;
            (into <= window).then(|| {
                let learners = s.learners.iter().map(|(_, e)| *e).collect();
                (into.as_secs_f64(), s.leader_executed, learners)
            })
        })
        .collect();
    let ids = g.learner_ids().iter().map(|n| n.0).collect();
    results::Staleness::compute(ids, g.learner_reads(), &polls)
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
        pacing_us: exp.load.pacing_us.at(match level {
            Level::Rate(rate) => rate,
            Level::Clients(_) => 0.0,
        }),
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
    let mut config = plan.config(&cluster, &certs)?;
    config.started = Some(started);
    Ok(loadgen::run(config).await?)
}
