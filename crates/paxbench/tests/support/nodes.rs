//! Real `paxbench node` processes on loopback: certificates and a cluster file on free ports,
//! nodes started and killed by pid (every one still running is killed when [`Nodes`] drops),
//! clients of the cluster, and what /proc says about a node.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use node::client::KvClient;
use node::config::ClusterConfig;
use node::TransportTuning;
use paxos::NodeId;

/// The node processes of one cluster, by id; their stderr goes to `logs/node-<id>.log`.
pub struct Nodes {
    pub cluster: PathBuf,
    pub children: Vec<Option<Child>>,
    pub logs: PathBuf,
}

impl Nodes {
    pub fn start(&mut self, id: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("node-{id}.log")))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_paxbench"))
            .args(["node", "--cluster"])
            .arg(&self.cluster)
            .args(["--id", &id.to_string()])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn paxbench node");
        self.children[id] = Some(child);
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self, id: usize) {
        if let Some(mut c) = self.children[id].take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// The pid of every node, in id order (every node must be running).
    pub fn pids(&self) -> Vec<u32> {
        self.children
            .iter()
            .map(|c| c.as_ref().expect("the node runs").id())
            .collect()
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for id in 0..self.children.len() {
            self.kill(id);
        }
    }
}

/// A base port with `n` consecutive free UDP ports on 127.0.0.1. Tests in one process run side
/// by side, so each call starts its search elsewhere.
pub fn free_ports(n: u16) -> u16 {
    static CALLS: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let seed = (std::process::id() as u16 % 2000) * 10 + call * 1009;
    for attempt in 0..200u16 {
        let base = 20_000 + (seed + attempt * 37) % 30_000;
        let sockets: Vec<_> = (0..n)
            .map(|i| UdpSocket::bind(("127.0.0.1", base + i)))
            .collect();
        if sockets.iter().all(|s| s.is_ok()) {
            return base;
        }
    }
    panic!("no free ports");
}

/// Writes certificates and a cluster file for three nodes on free loopback ports, lets `edit`
/// change the file, and starts the nodes.
pub fn start_cluster(edit: impl Fn(String) -> String) -> (tempfile::TempDir, PathBuf, Nodes) {
    start_cluster_of(3, edit)
}

/// [`start_cluster`] with `n` nodes (`paxbench certs` writes a Multi-Paxos cluster with
/// `durability = "none"` and no `[paxos]` table).
pub fn start_cluster_of(
    n: usize,
    edit: impl Fn(String) -> String,
) -> (tempfile::TempDir, PathBuf, Nodes) {
    let dir = tempfile::tempdir().unwrap();
    let base = free_ports(n as u16);
    let status = Command::new(env!("CARGO_BIN_EXE_paxbench"))
        .args(["certs", "--out"])
        .arg(dir.path())
        .args(["--nodes", &n.to_string(), "--base-port", &base.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let cluster = dir.path().join("cluster.toml");
    let text = std::fs::read_to_string(&cluster).unwrap();
    assert!(text.contains("durability = \"none\""), "{text}");
    std::fs::write(&cluster, edit(text)).unwrap();
    let mut nodes = Nodes {
        cluster: cluster.clone(),
        children: (0..n).map(|_| None).collect(),
        logs: dir.path().to_path_buf(),
    };
    for id in 0..n {
        nodes.start(id);
    }
    (dir, cluster, nodes)
}

pub async fn wait_for_leader(client: &mut KvClient, nodes: usize, limit: Duration) -> NodeId {
    let leader = client.wait_ready(nodes, limit).await.unwrap();
    leader.expect("a Multi-Paxos cluster has a leader")
}

/// A client of the cluster in `cluster`, its session numbered `session`.
pub fn client(cluster: &Path, session: u64) -> KvClient {
    let c = ClusterConfig::load(cluster).unwrap();
    let certs = c.client_certs().unwrap();
    let ep = node::client_endpoint_on(
        "127.0.0.1:0".parse().unwrap(),
        &certs,
        &TransportTuning::default(),
    )
    .unwrap();
    KvClient::new(
        ep,
        c.nodes.iter().map(|n| (n.id, n.addr)).collect(),
        node::client::new_session(session),
    )
}

/// Resident memory of a process, from /proc (0 if it is gone).
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Bytes of the files directly in `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
