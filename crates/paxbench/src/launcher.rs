//! Starting and stopping clusters for `paxbench run`, behind a seam ([`Launcher`]) so that a
//! later launcher can start nodes on other hosts over ssh. The local launcher starts
//! `paxbench node` processes on loopback with throwaway certificates and a temporary data
//! directory, waits until the cluster reports ready, and stops every process it started, by pid.

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use node::client::KvClient;
use node::config::ClusterConfig;
use paxos::{ClientId, NodeId};

/// What to start.
#[derive(Clone, Debug)]
pub struct ClusterSetup {
    /// `multi-paxos`, `basic-paxos` or `unreplicated`.
    pub protocol: String,
    /// Node count.
    pub nodes: u32,
    /// `none` or `fsync`.
    pub durability: String,
    /// `[paxos]` knobs.
    pub paxos: BTreeMap<String, toml::Value>,
    /// Threads of each node's runtime.
    pub threads: u32,
}

/// Starts clusters.
pub trait Launcher {
    /// Starts a cluster and returns once it is ready to serve.
    fn start(&mut self, setup: &ClusterSetup) -> anyhow::Result<Box<dyn RunningCluster>>;
}

/// A cluster that is up. Dropping it stops every process it started.
pub trait RunningCluster {
    /// The cluster file clients use.
    fn cluster_file(&self) -> &Path;
    /// Each node and the pid to sample its CPU and memory from (None if remote).
    fn pids(&self) -> Vec<(NodeId, Option<u32>)>;
}

/// Starts nodes as child processes on 127.0.0.1.
pub struct LocalLauncher {
    /// The `paxbench` binary to run as `paxbench node`.
    pub binary: PathBuf,
    /// Where each cluster's certificates, data and logs go (a fresh subdirectory per cluster).
    pub workdir: PathBuf,
    /// How long to wait for readiness.
    pub ready_timeout: Duration,
    started: u32,
}

impl LocalLauncher {
    /// A launcher running `binary`, keeping its files under `workdir`.
    pub fn new(binary: PathBuf, workdir: PathBuf) -> Self {
        LocalLauncher {
            binary,
            workdir,
            ready_timeout: Duration::from_secs(30),
            started: 0,
        }
    }
}

struct LocalCluster {
    file: PathBuf,
    children: Vec<(NodeId, Child)>,
}

impl RunningCluster for LocalCluster {
    fn cluster_file(&self) -> &Path {
        &self.file
    }

    fn pids(&self) -> Vec<(NodeId, Option<u32>)> {
        self.children
            .iter()
            .map(|(id, c)| (*id, Some(c.id())))
            .collect()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            // Only processes we started, by their pid.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A base port with `n` consecutive free UDP ports on 127.0.0.1.
fn free_ports(n: u16, salt: u32) -> anyhow::Result<u16> {
    let seed = (std::process::id() % 1000) as u16 * 20 + (salt % 997) as u16 * 7;
    for attempt in 0..500u16 {
        let base = 20_000 + (seed.wrapping_add(attempt.wrapping_mul(41))) % 30_000;
        let sockets: Vec<_> = (0..n)
            .map(|i| UdpSocket::bind(("127.0.0.1", base + i)))
            .collect();
        if sockets.iter().all(|s| s.is_ok()) {
            return Ok(base);
        }
    }
    bail!("no {n} consecutive free UDP ports on 127.0.0.1")
}

impl Launcher for LocalLauncher {
    fn start(&mut self, setup: &ClusterSetup) -> anyhow::Result<Box<dyn RunningCluster>> {
        self.started += 1;
        let dir = self.workdir.join(format!("cluster-{}", self.started));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let base = free_ports(setup.nodes as u16, self.started)?;
        node::write_cluster(&dir, setup.nodes, base)?;
        let file = dir.join("cluster.toml");
        let mut table: toml::Table = toml::from_str(&std::fs::read_to_string(&file)?)?;
        table.insert(
            "protocol".into(),
            toml::Value::String(setup.protocol.clone()),
        );
        table.insert(
            "durability".into(),
            toml::Value::String(setup.durability.clone()),
        );
        let mut transport = toml::Table::new();
        transport.insert("threads".into(), toml::Value::Integer(setup.threads.into()));
        table.insert("transport".into(), toml::Value::Table(transport));
        if !setup.paxos.is_empty() {
            table.insert(
                "paxos".into(),
                toml::Value::Table(setup.paxos.clone().into_iter().collect()),
            );
        }
        std::fs::write(&file, toml::to_string(&table)?)?;
        // Validate before starting anything, so a bad knob is one clear error.
        let config = ClusterConfig::load(&file)?;
        let mut cluster = LocalCluster {
            file: file.clone(),
            children: Vec::new(),
        };
        for n in &config.nodes {
            let log = std::fs::File::create(dir.join(format!("node-{}.log", n.id.0)))?;
            let child = Command::new(&self.binary)
                .args(["node", "--cluster"])
                .arg(&file)
                .args(["--id", &n.id.0.to_string()])
                .env(
                    "RUST_LOG",
                    std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
                )
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {} node", self.binary.display()))?;
            cluster.children.push((n.id, child));
        }
        wait_ready(&config, self.ready_timeout).with_context(|| {
            format!(
                "cluster in {} never became ready (see its node-*.log)",
                dir.display()
            )
        })?;
        Ok(Box::new(cluster))
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

/// CPU time (user + system) of a process, in seconds, from /proc.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Resident memory of a process, from /proc.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
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
