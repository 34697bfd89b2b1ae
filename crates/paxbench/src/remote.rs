//! Runs across machines: the ssh [`Backend`] of the launcher, load generators on their own
//! hosts, and what each host says about itself for `env.json`.
//!
//! Everything goes through [`paxbench::ssh::Ssh`] (the system's OpenSSH, one master
//! connection per host). A run's remote files live in `~/.paxbench/runs/<run>-*/` on each
//! host: one directory per node (the CA certificate, that node's pair, its cluster file, its
//! data and its log) and one per generator and point (the client pair, the client cluster
//! file, the load plan, and what the generator wrote). Every remote process is started by one
//! ssh session whose stdin is its lifeline (`--exit-on-stdin-eof --remove-on-lifeline-loss
//! DIR`): a controller that dies leaves neither a process nor its directory behind.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use loadgen::LoadResult;
use paxbench::hosts::{Host, Hosts};
use paxbench::hosts_check::{self, CheckRequest};
use paxbench::shell::quote;
use paxbench::ssh::{RemoteProcess, Ssh};

use crate::env_info::HostEnv;
use crate::faults::Signal;
use crate::launcher::{cpu_seconds, rss_bytes, Backend, Process, Sample, Staged};
use crate::plan::LoadPlan;

/// How often the controller beats on a remote node's lifeline.
const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(1);
/// A remote node that hears no heartbeat for this long stops (the link dropped, and its sshd
/// may not notice for hours).
const LIFELINE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// One run's hosts: connections, the deployed binary, the run's directory on each host.
/// Shared by the launcher's [`SshBackend`] and the load generators.
pub struct RemoteRun {
    ssh: Ssh,
    hosts: Hosts,
    /// Where `paxbench` is on each host (content-addressed, deployed once).
    binaries: HashMap<String, String>,
    /// `~/.paxbench/runs` on every host, absolute per host.
    run_dirs: HashMap<String, String>,
    /// The run's name: every remote directory of the run is `<runs>/<run>-<what>`.
    run: String,
    /// Each host's clock minus this machine's, and the error bound, ns (from the check).
    offsets: HashMap<String, (i64, u64)>,
    base_port: u16,
}

impl RemoteRun {
    /// Deploys `binary` to every host of `hosts` (skipped where that exact binary is already
    /// there) and makes `~/.paxbench/runs` on each. Returns the
    /// backend and how long the deployment took.
    pub fn deploy(
        checked: &Checked,
        binary: &Path,
        run: &str,
        base_port: u16,
    ) -> anyhow::Result<(RemoteRun, std::time::Duration)> {
        let (ssh, hosts) = (checked.ssh.clone(), checked.hosts.clone());
        let t0 = Instant::now();
        let results = in_parallel(&hosts.hosts, |_, h| {
            let deployed = ssh.deploy_binary(h, binary)?;
            let home = ssh.remote_home(h)?;
            let dir = format!("{}/.paxbench/runs", home.trim_end_matches('/'));
            ssh.run(h, &format!("mkdir -p {}", quote(&dir)))?.check()?;
            anyhow::Ok((h.name.clone(), deployed.path, dir))
        });
        let mut binaries = HashMap::new();
        let mut run_dirs = HashMap::new();
        for r in results {
            let (name, bin, dir) = r.context("deploying paxbench")?;
            binaries.insert(name.clone(), bin);
            run_dirs.insert(name, dir);
        }
        let took = t0.elapsed();
        Ok((
            RemoteRun {
                ssh,
                hosts,
                binaries,
                run_dirs,
                run: run.to_string(),
                offsets: checked.offsets.clone(),
                base_port,
            },
            took,
        ))
    }

    fn host(&self, name: &str) -> anyhow::Result<&Host> {
        self.hosts
            .get(name)
            .with_context(|| format!("no host {name} in {}", self.hosts.path.display()))
    }

    /// Copies `files` into a fresh directory `name` under the run's directory on `host`.
    fn put(&self, host: &str, name: &str, files: &[Staged]) -> anyhow::Result<String> {
        let h = self.host(host)?;
        let dir = format!("{}/{}-{name}", self.run_dirs[host], self.run);
        self.ssh
            .run(h, &format!("mkdir -p {}", quote(&dir)))?
            .check()?;
        for f in files {
            let mode = if f.secret { 0o600 } else { 0o644 };
            self.ssh
                .copy_to(h, &f.from, &format!("{dir}/{}", f.name), mode)
                .with_context(|| format!("copying {} to {host}", f.name))?;
        }
        Ok(dir)
    }

    /// Removes `dir` and everything in it from `host`.
    fn remove(&self, host: &Host, dir: &str) -> anyhow::Result<()> {
        self.ssh
            .run(host, &format!("rm -rf -- {}", quote(dir)))?
            .check()?;
        Ok(())
    }

    /// Removes the run's directory from every host (best effort: a host that cannot be
    /// reached is named in the error).
    pub fn clean_up(&self) -> anyhow::Result<()> {
        let mut failed = Vec::new();
        for h in &self.hosts.hosts {
            let prefix = format!("{}/{}-", self.run_dirs[&h.name], self.run);
            if let Err(e) = self
                .ssh
                .run(h, &format!("rm -rf -- {}*", quote(&prefix)))
                .and_then(|o| o.check())
            {
                failed.push(format!("{}: {e}", h.name));
            }
        }
        if !failed.is_empty() {
            bail!(
                "could not remove the run's directories: {}",
                failed.join("; ")
            );
        }
        Ok(())
    }

    /// What every host says about itself, with its clock offset from the check.
    pub fn host_envs(&self, emulation: &str) -> Vec<HostEnv> {
        self.hosts
            .hosts
            .iter()
            .map(|h| {
                let script = "uname -a; uname -r; getconf _NPROCESSORS_ONLN; \
                              grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-";
                let out = self
                    .ssh
                    .probe(h, script)
                    .map(|o| o.stdout)
                    .unwrap_or_default();
                let mut lines = out.lines().map(str::trim);
                let mut next = || lines.next().unwrap_or("unknown").to_string();
                let (uname, kernel, cores, cpu_model) = (next(), next(), next(), next());
                let (offset_ns, error_ns) = self.offsets.get(&h.name).copied().unwrap_or((0, 0));
                HostEnv {
                    name: h.name.clone(),
                    uname,
                    cpu_model,
                    cores: cores.parse().unwrap_or(0),
                    kernel,
                    clock_offset_us: offset_ns / 1000,
                    clock_error_us: error_ns.div_ceil(1000),
                    network_emulation: emulation.to_string(),
                }
            })
            .collect()
    }

    /// Runs `plan` split over the generator hosts `generators`, each against the client
    /// cluster file `client_file` with the client pair beside it, and merges what they
    /// measured. Each generator's `hist.hlog`, `summary.json`, `timeline.json` and (when the
    /// plan asks for a history) `history.jsonl` come back under `keep/<host>/`.
    pub fn measure(
        &self,
        generators: &[String],
        client_dir: &Path,
        plan: &LoadPlan,
        point_id: &str,
        keep: &Path,
        abort: &AtomicBool,
    ) -> anyhow::Result<LoadResult> {
        let n = match plan.level {
            crate::plan::PlanLevel::Closed { clients, .. } => {
                generators.len().min(clients as usize)
            }
            crate::plan::PlanLevel::Open { .. } => generators.len(),
        };
        // Sessions of one point must differ across generators (the nodes deduplicate by
        // session and request id); the clock keeps points and runs apart.
        let base = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            & !0xff_ffff;
        let parts = in_parallel(&generators[..n], |i, host| {
            self.measure_one(
                host,
                client_dir,
                &plan.share(i, n, base),
                point_id,
                keep,
                abort,
            )
        });
        let parts = parts.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
        LoadResult::merge(parts).context("no load generator ran")
    }

    fn measure_one(
        &self,
        host: &str,
        client_dir: &Path,
        plan: &LoadPlan,
        point_id: &str,
        keep: &Path,
        abort: &AtomicBool,
    ) -> anyhow::Result<LoadResult> {
        let h = self.host(host)?;
        let local = keep.join(host);
        std::fs::create_dir_all(&local)?;
        let plan_file = local.join("plan.toml");
        std::fs::write(&plan_file, toml::to_string(plan)?)?;
        let staged = |name: &str, secret| Staged {
            name: name.into(),
            from: client_dir.join(name),
            secret,
        };
        let files = [
            staged("ca.pem", false),
            staged("client.pem", false),
            staged("client-key.pem", true),
            Staged {
                name: "cluster.toml".into(),
                from: client_dir.join("client.toml"),
                secret: false,
            },
            Staged {
                name: "plan.toml".into(),
                from: plan_file,
                secret: false,
            },
        ];
        let dir = self.put(host, &format!("load-{point_id}"), &files)?;
        let cmd = format!(
            "{} load --cluster {d}/cluster.toml --plan {d}/plan.toml --out {d}/out \
             --exit-on-stdin-eof --remove-on-lifeline-loss {d} 2>{d}/load.log",
            quote(&self.binaries[host]),
            d = quote(&dir)
        );
        // Not retried: a generator that ran must not run twice. Its ssh session is its
        // lifeline, as a node's is.
        let mut generator = self.ssh.spawn(h, &cmd)?;
        let limit = std::time::Duration::from_secs_f64(
            plan.warmup_s + plan.duration_s + plan.timeout_ms as f64 / 1000.0 + 60.0,
        );
        let deadline = Instant::now() + limit;
        let code = loop {
            if let Some(code) = generator.wait_timeout(std::time::Duration::from_millis(100)) {
                break code;
            }
            if abort.load(Ordering::SeqCst) {
                let _ = generator.stop();
                let _ = self.remove(h, &dir);
                bail!("interrupted: the load generator on {host} was stopped");
            }
            if Instant::now() > deadline {
                let _ = generator.stop();
                bail!("the load generator on {host} did not finish within {limit:?}");
            }
        };
        let _ = self.ssh.fetch(h, &format!("{dir}/load.log"), &local);
        // `paxbench load` exits 1 when nothing completed: its files still tell what happened.
        let fetched = if matches!(code, 0 | 1) {
            generator_files(plan).iter().try_for_each(|file| {
                self.ssh
                    .fetch(h, &format!("{dir}/out/{file}"), &local)
                    .map(|_| ())
                    .with_context(|| format!("fetching {file} from {host}"))
            })
        } else {
            Err(anyhow::anyhow!(
                "the load generator on {host} failed (exit {code}): {}",
                std::fs::read_to_string(local.join("load.log")).unwrap_or_default()
            ))
        };
        self.remove(h, &dir)?;
        fetched?;
        read_result(&local, self.offsets.get(host).map_or(0, |o| o.0))
    }
}

impl Drop for RemoteRun {
    fn drop(&mut self) {
        // An error on the way out: remove what the run left on the hosts all the same.
        if let Err(e) = self.clean_up() {
            tracing::warn!(error = %format!("{e:#}"), "cleaning up the hosts");
        }
    }
}

/// `f(i, item)` for every item, each on a thread of its own, the results in order.
fn in_parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(usize, &T) -> R + Sync) -> Vec<R> {
    std::thread::scope(|s| {
        let f = &f;
        let jobs: Vec<_> = items
            .iter()
            .enumerate()
            .map(|(i, item)| s.spawn(move || f(i, item)))
            .collect();
        jobs.into_iter()
            .map(|j| j.join().expect("a worker thread panicked"))
            .collect()
    })
}

/// The files a remote generator running `plan` writes, which the controller fetches.
fn generator_files(plan: &LoadPlan) -> Vec<&'static str> {
    let mut files = vec![
        loadgen::INTERVAL_LOG_FILE,
        loadgen::SUMMARY_FILE,
        loadgen::TIMELINE_FILE,
    ];
    if plan.history.is_some() {
        files.push(loadgen::HISTORY_FILE);
    }
    files
}

/// A generator's result from the `hist.hlog`, `summary.json`, `timeline.json` and (if it is
/// there) `history.jsonl` it wrote; `offset_ns` (its host's clock minus this machine's) puts
/// the window's start and the history's origin on this machine's clock. The timeline needs no
/// shift (its buckets count from the window's start), nor do the history's instants (they count
/// from its origin, which moves; `LoadResult::merge` applies the shift when it puts several
/// generators on one origin).
pub(crate) fn read_result(dir: &Path, offset_ns: i64) -> anyhow::Result<LoadResult> {
    let summary_path = dir.join(loadgen::SUMMARY_FILE);
    let summary: loadgen::LoadSummary = serde_json::from_str(
        &std::fs::read_to_string(&summary_path)
            .with_context(|| format!("reading {}", summary_path.display()))?,
    )
    .with_context(|| format!("parsing {}", summary_path.display()))?;
    let (start, intervals) = results::read_interval_log(&dir.join(loadgen::INTERVAL_LOG_FILE))?;
    let (timeline, mut history) = LoadResult::read_timeline_and_history(dir)?;
    if let Some(h) = &mut history {
        h.shift_origin(offset_ns);
    }
    let offset = std::time::Duration::from_nanos(offset_ns.unsigned_abs());
    let window_start = start.map(|t| {
        if offset_ns >= 0 {
            t - offset
        } else {
            t + offset
        }
    });
    let mut merged = hdrhistogram::Histogram::<u64>::new(3).expect("3 digits is valid");
    for h in &intervals {
        merged.add(h).context("adding intervals")?;
    }
    Ok(LoadResult {
        merged,
        intervals,
        // The generator kept only its send lag's p99 (in the summary).
        send_lag: hdrhistogram::Histogram::new(3).expect("3 digits is valid"),
        window_start: window_start.unwrap_or_else(|| {
            std::time::SystemTime::now() - std::time::Duration::from_secs_f64(summary.duration_s)
        }),
        summary,
        timeline,
        history,
    })
}

/// The launcher's [`Backend`] over ssh: nodes on the node hosts of the hosts file.
pub struct SshBackend(pub Arc<RemoteRun>);

impl Backend for SshBackend {
    fn place_nodes(&mut self, count: u32) -> anyhow::Result<Vec<(String, SocketAddr)>> {
        let hosts = self.0.hosts.assign_nodes(count as usize)?;
        hosts
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let port = u32::from(self.0.base_port) + i as u32;
                let port = u16::try_from(port).context("base_port + node id is past 65535")?;
                Ok((h.name.clone(), SocketAddr::new(h.addr, port)))
            })
            .collect()
    }

    fn stage(&mut self, host: &str, name: &str, files: &[Staged]) -> anyhow::Result<PathBuf> {
        self.0.put(host, name, files).map(PathBuf::from)
    }

    fn spawn(
        &mut self,
        host: &str,
        dir: &Path,
        args: &[String],
        log: &str,
    ) -> anyhow::Result<Box<dyn Process>> {
        let h = self.0.host(host)?.clone();
        let dir = dir.to_string_lossy().into_owned();
        let rust_log = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
        let cmd = format!(
            "env RUST_LOG={} {} {} --exit-on-stdin-eof --lifeline-timeout {} \
             --remove-on-lifeline-loss {d} 2>{d}/{}",
            quote(&rust_log),
            quote(&self.0.binaries[host]),
            paxbench::shell::join(args.iter().map(String::as_str)),
            LIFELINE_TIMEOUT.as_secs(),
            quote(log),
            d = quote(&dir),
        );
        let process = self.0.ssh.spawn(&h, &cmd)?;
        process.keep_alive(HEARTBEAT);
        Ok(Box::new(SshProcess {
            ssh: self.0.ssh.clone(),
            host: h,
            process,
        }))
    }

    fn collect(&mut self, host: &str, dir: &Path, to: &Path) -> anyhow::Result<()> {
        let h = self.0.host(host)?.clone();
        let dir = dir.to_string_lossy().into_owned();
        let logs = self
            .0
            .ssh
            .probe(&h, &format!("cd {} && ls -1 -- *.log", quote(&dir)))?;
        for name in logs.stdout.lines().filter(|l| !l.is_empty()) {
            self.0.ssh.fetch(&h, &format!("{dir}/{name}"), to)?;
        }
        self.0.remove(&h, &dir)
    }
}

/// A node on another host.
struct SshProcess {
    ssh: Ssh,
    host: Host,
    process: RemoteProcess,
}

impl Process for SshProcess {
    fn pid(&self) -> u32 {
        self.process.pid()
    }

    fn sample(&mut self) -> Option<Sample> {
        if self.process.try_wait().is_some() {
            return None;
        }
        let pid = self.process.pid();
        let out = self
            .ssh
            .probe(
                &self.host,
                &format!("getconf CLK_TCK; cat /proc/{pid}/stat; cat /proc/{pid}/status"),
            )
            .ok()?;
        let mut lines = out.stdout.splitn(3, '\n');
        let ticks: f64 = lines.next()?.trim().parse().ok()?;
        let stat = lines.next()?;
        let status = lines.next()?;
        Some(Sample {
            cpu_seconds: cpu_seconds(stat, ticks)?,
            rss_bytes: rss_bytes(status)?,
        })
    }

    fn stop(&mut self) -> anyhow::Result<()> {
        self.process
            .stop()
            .map(|_| ())
            .with_context(|| format!("stopping pid {} on {}", self.process.pid(), self.host.name))
    }

    fn signal(&mut self, signal: Signal) -> anyhow::Result<()> {
        if let Some(code) = self.process.try_wait() {
            bail!("it had exited already (status {code})");
        }
        self.process.signal(signal.name())?;
        if signal == Signal::Kill {
            let limit = Duration::from_secs(5);
            if self.process.wait_timeout(limit).is_none() {
                bail!("its session outlived SIGKILL by {limit:?}");
            }
        }
        Ok(())
    }
}

/// A run's hosts as the experiment uses them, checked for consistency but not yet contacted.
pub struct RemotePlan {
    /// The hosts file.
    pub hosts: Hosts,
    /// The hosts the load generators run on (empty: one generator on this machine).
    pub generators: Vec<String>,
    /// The most nodes any cluster of the run has.
    pub max_nodes: u32,
}

/// A run's hosts after `paxbench hosts check` passed on every one of them.
pub struct Checked {
    /// Connections (masters open).
    pub ssh: Ssh,
    /// The hosts file.
    pub hosts: Hosts,
    /// Generator hosts.
    pub generators: Vec<String>,
    /// Each host's clock offset to this machine and its error bound, ns.
    pub offsets: HashMap<String, (i64, u64)>,
    /// Hosts on which root commands need `sudo -n` (the others log in as root).
    pub needs_sudo: HashMap<String, bool>,
}

impl RemotePlan {
    /// Reads the hosts file and checks it against the experiment: enough node hosts for the
    /// largest cluster, and generator hosts that exist and have the `client` role.
    pub fn new(
        path: &Path,
        exp: &crate::experiment::Experiment,
        max_nodes: u32,
    ) -> anyhow::Result<Self> {
        let hosts = Hosts::load(path)?;
        hosts.assign_nodes(max_nodes as usize)?;
        let generators = match &exp.load.hosts {
            Some(names) => {
                for name in names {
                    match hosts.get(name) {
                        None => bail!(
                            "`[load] hosts`: {name:?} is not a host of {}",
                            path.display()
                        ),
                        Some(h) if !h.is_client() => bail!(
                            "`[load] hosts`: host {name} of {} does not have the client role",
                            path.display()
                        ),
                        Some(_) => {}
                    }
                }
                names.clone()
            }
            None => hosts
                .client_hosts()
                .iter()
                .map(|h| h.name.clone())
                .collect(),
        };
        let plan = RemotePlan {
            hosts,
            generators,
            max_nodes,
        };
        if let Some(net) = &exp.network {
            let unknown = net.unknown_regions(&plan.node_regions());
            if !unknown.is_empty() {
                bail!(
                    "`[network] region_delay_ms` names regions no node host of {} is in: {}",
                    path.display(),
                    unknown.join(", ")
                );
            }
        }
        Ok(plan)
    }

    /// The region of each node of the largest cluster: its host's (empty for none).
    pub fn node_regions(&self) -> Vec<String> {
        self.hosts
            .assign_nodes(self.max_nodes as usize)
            .expect("checked when the plan was made")
            .iter()
            .map(|h| h.region.clone().unwrap_or_default())
            .collect()
    }

    /// One line for `--dry-run`.
    pub fn describe(&self) -> String {
        let gens = if self.generators.is_empty() {
            "one load generator on this machine".to_string()
        } else {
            format!("load generators on {}", self.generators.join(", "))
        };
        format!(
            "{} node host(s) for up to {} node(s), {gens}",
            self.hosts.node_hosts().len(),
            self.max_nodes
        )
    }

    /// Runs `paxbench hosts check` on every host, prints its table, and refuses (naming each
    /// host and reason) unless every host passed.
    pub fn check(self, exp: &crate::experiment::Experiment) -> anyhow::Result<Checked> {
        let ssh = Ssh::new(&self.hosts)?;
        let base = exp.cluster.base_port;
        let ports = (0..self.max_nodes)
            .map(|i| u16::try_from(u32::from(base) + i))
            .collect::<Result<Vec<u16>, _>>()
            .context("`[cluster] base_port` + node id is past 65535")?;
        // The transports of every configuration the run will start (a sweep may use both).
        let mut transports: Vec<node::Transport> = exp
            .grid()
            .map_err(|(section, key, why)| anyhow::anyhow!("[{section}] {key}: {why}"))?
            .iter()
            .map(|g| g.transport)
            .collect();
        transports.sort_by_key(|t| t.name());
        transports.dedup();
        let req = CheckRequest {
            ports,
            transports,
            nodes: Some(self.max_nodes as usize),
            require_netem: exp
                .network
                .as_ref()
                .is_some_and(|n| n.emulation == crate::experiment::Emulation::Netem),
            ..CheckRequest::default()
        };
        let report = hosts_check::check(&self.hosts, &ssh, &req);
        eprint!("{}", report.table());
        if !report.ok() {
            bail!(
                "{}: the hosts check failed, so nothing was started or written:\n  {}",
                self.hosts.path.display(),
                report.failures().join("\n  ")
            );
        }
        let offsets = report
            .hosts
            .iter()
            .filter_map(|h| {
                let c = h.clock.as_ref().ok()?;
                Some((h.name.clone(), (c.offset_ns, c.error_ns)))
            })
            .collect();
        let needs_sudo = report
            .hosts
            .iter()
            .map(|h| {
                (
                    h.name.clone(),
                    h.privilege != Some(hosts_check::Privilege::Root),
                )
            })
            .collect();
        Ok(Checked {
            ssh,
            hosts: self.hosts,
            generators: self.generators,
            offsets,
            needs_sudo,
        })
    }
}
