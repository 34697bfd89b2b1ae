//! Starting and stopping clusters for `paxbench run`.
//!
//! One [`Launcher`] does everything that does not depend on where processes run: it makes the
//! cluster's certificates on this machine (the controller), serializes a typed
//! [`ClusterFile`] for every node with its host's address, gives each node host only the CA
//! certificate and that node's own certificate and key (never the CA key), starts the nodes,
//! waits until the cluster reports ready, and on stop brings every host's logs back. What does
//! depend on it — how files get to a host, how a process is started, sampled and stopped — is
//! a [`Backend`]: [`LocalBackend`] starts child processes on 127.0.0.1; the ssh backend starts
//! them on other hosts.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use node::client::KvClient;
use node::config::{
    ClusterConfig, ClusterFile, Durability, NodeFile, PaxosKnobs, TlsFiles, TransportKnobs,
};
use node::emulation::LinkEmulation;
use paxos::{ClientId, NodeId, Protocol};

use crate::faults::Signal;

/// What to start: one typed description of a cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterSetup {
    /// The protocol every node runs.
    pub protocol: Protocol,
    /// Voting nodes.
    pub nodes: u32,
    /// Non-voting learners besides them, ids `nodes..nodes + learners` (`role = "learner"`).
    pub learners: u32,
    /// How acceptors keep their state.
    pub durability: Durability,
    /// Protocol knobs.
    pub paxos: PaxosKnobs,
    /// Transport knobs (QUIC or TCP, runtime threads, ...).
    pub transport: TransportKnobs,
    /// Emulated links between the nodes, applied inside each node.
    pub emulation: Option<LinkEmulation>,
}

/// A file to put into a node's working directory.
#[derive(Clone, Debug)]
pub struct Staged {
    /// Its name in the working directory.
    pub name: String,
    /// Where it is on this machine.
    pub from: PathBuf,
    /// Secret (a private key): mode 0600.
    pub secret: bool,
}

/// CPU time and memory of a process at one moment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// User + system CPU time so far, seconds.
    pub cpu_seconds: f64,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
}

/// A process started by a [`Backend`], known by its pid on its host.
pub trait Process {
    /// Its pid on its own host.
    fn pid(&self) -> u32;
    /// Its CPU time and memory now, read on its own host (`None` once it has exited).
    fn sample(&mut self) -> Option<Sample>;
    /// SIGTERM to its pid, a bounded wait, then SIGKILL to its pid.
    fn stop(&mut self) -> anyhow::Result<()>;
    /// Sends `signal` to its pid (a fault); after SIGKILL, waits until it is gone. An error if
    /// it had exited already.
    fn signal(&mut self, signal: Signal) -> anyhow::Result<()>;
}

/// Where the processes of a run go, and how: everything the local and the ssh launcher do
/// differently.
pub trait Backend {
    /// The host of each of `count` nodes, by name, and the address each node binds (which
    /// peers and clients dial).
    fn place_nodes(&mut self, count: u32) -> anyhow::Result<Vec<(String, SocketAddr)>>;
    /// A fresh working directory `name` on `host` holding `files`; returns its path there.
    fn stage(&mut self, host: &str, name: &str, files: &[Staged]) -> anyhow::Result<PathBuf>;
    /// Starts `paxbench <args>` on `host` in `dir`, its stderr in `dir/<log>`.
    fn spawn(
        &mut self,
        host: &str,
        dir: &Path,
        args: &[String],
        log: &str,
    ) -> anyhow::Result<Box<dyn Process>>;
    /// Copies the `*.log` files of `dir` on `host` into `to`, then removes `dir`.
    fn collect(&mut self, host: &str, dir: &Path, to: &Path) -> anyhow::Result<()>;
}

/// Starts clusters through a [`Backend`].
pub struct Launcher {
    backend: Rc<RefCell<Box<dyn Backend>>>,
    /// This machine's own files for the run: certificates (the CA key stays here) and each
    /// cluster's client file.
    workdir: PathBuf,
    /// The results directory: each cluster's logs come back to `logs/<cluster>/<host>/` in it.
    results: PathBuf,
    /// How long to wait for readiness.
    pub ready_timeout: Duration,
    started: u32,
}

/// One node of a running cluster.
struct NodeProcess {
    id: NodeId,
    host: String,
    dir: PathBuf,
    /// What it was started with, to start it again after a fault killed it.
    args: Vec<String>,
    /// How many times it was started again.
    restarts: u32,
    process: Box<dyn Process>,
}

/// A cluster that is up. [`Cluster::stop`] (or dropping it, on an error path) stops every
/// process it started and brings every host's logs back.
pub struct Cluster {
    /// `cluster-<n>`: names its logs directory.
    pub name: String,
    /// The cluster file clients on this machine use.
    pub client_file: PathBuf,
    nodes: Vec<NodeProcess>,
    backend: Rc<RefCell<Box<dyn Backend>>>,
    results: PathBuf,
}

impl Launcher {
    /// A launcher over `backend`, keeping this machine's files under `workdir` and bringing
    /// logs back into `results`.
    pub fn new(backend: Box<dyn Backend>, workdir: PathBuf, results: PathBuf) -> Self {
        Launcher {
            backend: Rc::new(RefCell::new(backend)),
            workdir,
            results,
            ready_timeout: Duration::from_secs(30),
            started: 0,
        }
    }

    /// Starts a cluster and returns once it is ready to serve.
    pub fn start(&mut self, setup: &ClusterSetup) -> anyhow::Result<Cluster> {
        self.started += 1;
        let name = format!("cluster-{}", self.started);
        let dir = self.workdir.join(&name);
        let count = setup.nodes + setup.learners;
        let placed = self.backend.borrow_mut().place_nodes(count)?;
        // Certificates name node ids, not addresses: the loopback file `write_cluster` writes
        // beside them is replaced by the files below.
        node::write_cluster(&dir, count, 0)
            .with_context(|| format!("making certificates in {}", dir.display()))?;
        let nodes: Vec<NodeFile> = placed
            .iter()
            .enumerate()
            .map(|(i, (_, addr))| NodeFile {
                id: i as u32,
                addr: addr.to_string(),
                cert: format!("node-{i}.pem").into(),
                key: format!("node-{i}-key.pem").into(),
                role: if i < setup.nodes as usize {
                    node::config::NodeRole::Voter
                } else {
                    node::config::NodeRole::Learner
                },
            })
            .collect();
        let file = |tls: TlsFiles| ClusterFile {
            protocol: setup.protocol,
            durability: setup.durability,
            data_dir: None,
            wal_segment_bytes: None,
            tls,
            paxos: setup.paxos.clone(),
            transport: setup.transport.clone(),
            nodes: nodes.clone(),
            emulation: setup.emulation.clone(),
        };
        // The controller's own file: every node's address and the client certificate.
        let client_file = dir.join("client.toml");
        let config = file(TlsFiles {
            ca: "ca.pem".into(),
            client_cert: Some("client.pem".into()),
            client_key: Some("client-key.pem".into()),
        })
        .write(&client_file)?;
        // What a node host gets: the CA certificate, its node's pair, and a cluster file with
        // no client certificate.
        let node_file = dir.join("node.toml");
        file(TlsFiles {
            ca: "ca.pem".into(),
            client_cert: None,
            client_key: None,
        })
        .write(&node_file)?;
        // From here on, however start ends, the processes started so far are stopped and
        // their logs come back (Cluster's Drop).
        let mut cluster = Cluster {
            name: name.clone(),
            client_file,
            nodes: Vec::new(),
            backend: self.backend.clone(),
            results: self.results.clone(),
        };
        for (i, (host, _)) in placed.iter().enumerate() {
            let staged = [
                Staged {
                    name: "ca.pem".into(),
                    from: dir.join("ca.pem"),
                    secret: false,
                },
                Staged {
                    name: format!("node-{i}.pem"),
                    from: dir.join(format!("node-{i}.pem")),
                    secret: false,
                },
                Staged {
                    name: format!("node-{i}-key.pem"),
                    from: dir.join(format!("node-{i}-key.pem")),
                    secret: true,
                },
                Staged {
                    name: "cluster.toml".into(),
                    from: node_file.clone(),
                    secret: false,
                },
            ];
            let node_dir =
                self.backend
                    .borrow_mut()
                    .stage(host, &format!("{name}-node-{i}"), &staged)?;
            let args = vec![
                "node".to_string(),
                "--cluster".into(),
                node_dir.join("cluster.toml").display().to_string(),
                "--id".into(),
                i.to_string(),
            ];
            let process = self
                .backend
                .borrow_mut()
                .spawn(host, &node_dir, &args, &format!("node-{i}.log"))
                .with_context(|| format!("starting node {i} on {host}"))?;
            tracing::debug!(node = i, host, pid = process.pid(), "node started");
            cluster.nodes.push(NodeProcess {
                id: NodeId(i as u32),
                host: host.clone(),
                dir: node_dir,
                args,
                restarts: 0,
                process,
            });
        }
        wait_ready(&config, self.ready_timeout).with_context(|| {
            format!(
                "{name} never became ready (its node logs are kept under logs/{name}/ in the results)"
            )
        })?;
        Ok(cluster)
    }
}

/// `logs/<cluster>/<host>`, relative to the results directory.
pub fn logs_dir(cluster: &str, host: &str) -> PathBuf {
    Path::new("logs").join(cluster).join(host)
}

impl Cluster {
    /// Stops every process and brings each host's logs back to `logs/<cluster>/<host>/` in
    /// the results directory. The logs come back even when a stop failed.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.stop_all()
    }

    fn stop_all(&mut self) -> anyhow::Result<()> {
        let mut first_error = None;
        for n in &mut self.nodes {
            if let Err(e) = n.process.stop() {
                first_error.get_or_insert(e.context(format!("stopping node {}", n.id.0)));
            }
        }
        for n in std::mem::take(&mut self.nodes) {
            let to = self.results.join(logs_dir(&self.name, &n.host));
            let fetched = std::fs::create_dir_all(&to)
                .with_context(|| format!("creating {}", to.display()))
                .and_then(|()| self.backend.borrow_mut().collect(&n.host, &n.dir, &to));
            if let Err(e) = fetched {
                first_error
                    .get_or_insert(e.context(format!("fetching the logs of node {}", n.id.0)));
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Each node's id and its CPU time and memory now, read on its own host.
    pub fn sample(&mut self) -> Vec<(NodeId, Option<Sample>)> {
        self.nodes
            .iter_mut()
            .map(|n| (n.id, n.process.sample()))
            .collect()
    }

    /// Sends `signal` to node `id`'s process, by its pid (a fault).
    pub fn signal(&mut self, id: NodeId, signal: Signal) -> anyhow::Result<()> {
        let n = self.node_mut(id)?;
        let pid = n.process.pid();
        n.process.signal(signal).with_context(|| {
            format!(
                "SIG{} to node {} (pid {pid} on {})",
                signal.name(),
                id.0,
                n.host
            )
        })
    }

    /// Starts node `id` again in its own directory, after a fault killed it: with `fsync` it
    /// replays its write-ahead log; with `none` it rejoins as a non-voting learner. Its log of
    /// this life is `node-<id>.restart-<n>.log`.
    pub fn restart(&mut self, id: NodeId) -> anyhow::Result<()> {
        let backend = self.backend.clone();
        let n = self.node_mut(id)?;
        if n.process.sample().is_some() {
            bail!("node {} (pid {}) is still running", id.0, n.process.pid());
        }
        n.restarts += 1;
        let log = format!("node-{}.restart-{}.log", id.0, n.restarts);
        n.process = backend
            .borrow_mut()
            .spawn(&n.host, &n.dir, &n.args, &log)
            .with_context(|| format!("restarting node {} on {}", id.0, n.host))?;
        tracing::debug!(node = id.0, pid = n.process.pid(), "node restarted");
        Ok(())
    }

    fn node_mut(&mut self, id: NodeId) -> anyhow::Result<&mut NodeProcess> {
        let count = self.nodes.len();
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .with_context(|| format!("node {} is not in this cluster of {count}", id.0))
    }

    /// Where the logs of this cluster go, relative to the results directory.
    pub fn logs(&self) -> PathBuf {
        Path::new("logs").join(&self.name)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // A cluster not stopped by `stop` (an error on the way): stop it all the same, by pid,
        // and bring back what logs can be had.
        if let Err(e) = self.stop_all() {
            tracing::warn!(cluster = %self.name, error = %format!("{e:#}"), "stopping a cluster");
        }
    }
}

/// Waits until every node answers and (where the protocol has one) all agree on one leader.
fn wait_ready(config: &ClusterConfig, limit: Duration) -> anyhow::Result<()> {
    let certs = config.client_certs()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (endpoint, nodes) = config.client_endpoint(&certs)?;
        let mut client = KvClient::new(endpoint, nodes, ClientId(0));
        client.wait_ready(config.nodes.len(), limit).await?;
        Ok(())
    })
}

/// Starts nodes as child processes on 127.0.0.1, each in its own directory under `workdir`.
pub struct LocalBackend {
    binary: PathBuf,
    workdir: PathBuf,
    placed: u32,
}

impl LocalBackend {
    /// The host name local processes are filed under in `logs/`.
    pub const HOST: &'static str = "local";

    /// Runs `binary` (this `paxbench`) with working directories under `workdir`.
    pub fn new(binary: PathBuf, workdir: PathBuf) -> Self {
        LocalBackend {
            binary,
            workdir,
            placed: 0,
        }
    }
}

impl Backend for LocalBackend {
    fn place_nodes(&mut self, count: u32) -> anyhow::Result<Vec<(String, SocketAddr)>> {
        self.placed += 1;
        let base = free_ports(count as u16, self.placed)?;
        Ok((0..count as u16)
            .map(|i| {
                let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), base + i);
                (Self::HOST.to_string(), addr)
            })
            .collect())
    }

    fn stage(&mut self, _host: &str, name: &str, files: &[Staged]) -> anyhow::Result<PathBuf> {
        let dir = self.workdir.join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for f in files {
            let to = dir.join(&f.name);
            std::fs::copy(&f.from, &to)
                .with_context(|| format!("copying {} to {}", f.from.display(), to.display()))?;
            #[cfg(unix)]
            if f.secret {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600))?;
            }
        }
        Ok(dir)
    }

    fn spawn(
        &mut self,
        _host: &str,
        dir: &Path,
        args: &[String],
        log: &str,
    ) -> anyhow::Result<Box<dyn Process>> {
        let log_path = dir.join(log);
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let child = Command::new(&self.binary)
            .args(args)
            .current_dir(dir)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        Ok(Box::new(LocalProcess { child }))
    }

    fn collect(&mut self, _host: &str, dir: &Path, to: &Path) -> anyhow::Result<()> {
        for entry in std::fs::read_dir(dir)?.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                std::fs::copy(&path, to.join(entry.file_name()))
                    .with_context(|| format!("copying {}", path.display()))?;
            }
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))
    }
}

/// A child process of this one.
struct LocalProcess {
    child: Child,
}

impl Process for LocalProcess {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn sample(&mut self) -> Option<Sample> {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return None;
        }
        let pid = self.child.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        Some(Sample {
            cpu_seconds: cpu_seconds(&stat, clock_ticks())?,
            rss_bytes: rss_bytes(&status)?,
        })
    }

    fn stop(&mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill has no memory preconditions; the pid is our own unreaped child, so it
        // cannot have been reused by another process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    fn signal(&mut self, signal: Signal) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("it had exited already ({status})");
        }
        let signum = match signal {
            Signal::Kill => libc::SIGKILL,
            Signal::Stop => libc::SIGSTOP,
            Signal::Cont => libc::SIGCONT,
        };
        // SAFETY: as in `stop`: our own unreaped child, so the pid is still its own.
        if unsafe { libc::kill(self.child.id() as libc::pid_t, signum) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        if signal == Signal::Kill {
            self.child.wait()?;
        }
        Ok(())
    }
}

/// How long a stopped node has to exit after SIGTERM before it gets SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// A base port with `n` consecutive free UDP ports on 127.0.0.1.
/// A base port with `n` consecutive ports on 127.0.0.1 free for UDP and TCP alike, since a
/// node listens on its port with the cluster's transport, QUIC or TCP.
fn free_ports(n: u16, salt: u32) -> anyhow::Result<u16> {
    let seed = (std::process::id() % 1000) as u16 * 20 + (salt % 997) as u16 * 7;
    for attempt in 0..500u16 {
        let base = 20_000 + (seed.wrapping_add(attempt.wrapping_mul(41))) % 30_000;
        let udp: Vec<_> = (0..n)
            .map(|i| UdpSocket::bind(("127.0.0.1", base + i)))
            .collect();
        let tcp: Vec<_> = (0..n)
            .map(|i| TcpListener::bind(("127.0.0.1", base + i)))
            .collect();
        if udp.iter().all(|s| s.is_ok()) && tcp.iter().all(|s| s.is_ok()) {
            return Ok(base);
        }
    }
    bail!("no {n} consecutive ports free for UDP and TCP on 127.0.0.1")
}

/// CPU time (user + system) in seconds, from the text of `/proc/<pid>/stat` and the clock
/// ticks per second of the host it was read on.
pub fn cpu_seconds(stat: &str, ticks: f64) -> Option<f64> {
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks)
}

/// This machine's clock ticks per second (`getconf CLK_TCK`).
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Resident memory in bytes, from the text of `/proc/<pid>/status`.
pub fn rss_bytes(status: &str) -> Option<u64> {
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        let stat = "1234 (paxbench node) S 1 1234 1234 0 -1 4194560 900 0 0 0 250 50 0 0 20 0";
        assert_eq!(cpu_seconds(stat, 100.0), Some(3.0));
        assert_eq!(cpu_seconds("garbage", 100.0), None);
        let status = "Name:\tpaxbench\nVmPeak:\t  9000 kB\nVmRSS:\t    2048 kB\n";
        assert_eq!(rss_bytes(status), Some(2048 * 1024));
        assert_eq!(rss_bytes("Name: x\n"), None);
    }
}
