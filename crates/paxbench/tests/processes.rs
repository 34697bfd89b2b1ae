//! Real `paxbench node` processes with `durability = "fsync"`: under load the leader is killed
//! with SIGKILL and restarted; a new leader takes over, the restarted node catches up, and every
//! write acknowledged to a client before the kill is still readable. Then every node is killed
//! at once and restarted: acknowledged writes survive on disk alone.
//!
//! Loopback only; every process is started here and ended here, by pid.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use node::client::KvClient;
use node::config::ClusterConfig;
use node::{ClientCerts, TransportTuning};
use paxos::{ClientId, NodeId, Op, Outcome, Role};

struct Nodes {
    cluster: PathBuf,
    children: Vec<Option<Child>>,
    logs: PathBuf,
}

impl Nodes {
    fn start(&mut self, id: usize) {
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
    fn kill(&mut self, id: usize) {
        if let Some(mut c) = self.children[id].take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for id in 0..self.children.len() {
            self.kill(id);
        }
    }
}

/// A base port with `n` consecutive free UDP ports on 127.0.0.1.
fn free_ports(n: u16) -> u16 {
    let seed = (std::process::id() as u16 % 2000) * 10;
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

async fn wait_for_leader(client: &mut KvClient, nodes: usize, limit: Duration) -> NodeId {
    let start = Instant::now();
    loop {
        let statuses = client.statuses().await;
        let leaders: Vec<_> = statuses
            .iter()
            .filter(|s| s.role == Role::Leader)
            .map(|s| s.node)
            .collect();
        if statuses.len() == nodes {
            if let [l] = leaders[..] {
                if statuses.iter().all(|s| s.leader == Some(l)) {
                    return l;
                }
            }
        }
        assert!(
            start.elapsed() < limit,
            "no leader within {limit:?}: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn client(cluster: &Path, session: u64) -> KvClient {
    let c = ClusterConfig::load(cluster).unwrap();
    let (cert, key) = c.client_cert.clone().unwrap();
    let certs = ClientCerts::load(&c.ca, &cert, &key).unwrap();
    let ep = node::client_endpoint_on(
        "127.0.0.1:0".parse().unwrap(),
        &certs,
        &TransportTuning::default(),
    )
    .unwrap();
    KvClient::new(
        ep,
        c.nodes.iter().map(|n| (n.id, n.addr)).collect(),
        ClientId(session),
    )
}

async fn read_all(client: &mut KvClient, acked: &[u32]) {
    for &i in acked {
        let key = Bytes::from(format!("key-{i}"));
        let got = client.call(Op::Get { key }).await.unwrap();
        assert_eq!(
            got,
            Outcome::Value(Some(Bytes::from(format!("value-{i}")))),
            "acknowledged write {i} lost"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill_of_the_leader_and_of_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_ports(3);
    let status = Command::new(env!("CARGO_BIN_EXE_paxbench"))
        .args(["certs", "--out"])
        .arg(dir.path())
        .args(["--nodes", "3", "--base-port", &base.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let cluster = dir.path().join("cluster.toml");
    let text = std::fs::read_to_string(&cluster).unwrap();
    assert!(text.contains("durability = \"none\""), "{text}");
    std::fs::write(
        &cluster,
        text.replace("durability = \"none\"", "durability = \"fsync\""),
    )
    .unwrap();
    let mut nodes = Nodes {
        cluster: cluster.clone(),
        children: (0..3).map(|_| None).collect(),
        logs: dir.path().to_path_buf(),
    };
    for id in 0..3 {
        nodes.start(id);
    }
    let mut c = client(&cluster, 1);
    let leader = wait_for_leader(&mut c, 3, Duration::from_secs(20)).await;

    // Load; kill the leader mid-run; keep writing through the failover.
    let mut acked = Vec::new();
    let mut killed_at = None;
    for i in 0..600u32 {
        if i == 300 {
            nodes.kill(leader.0 as usize);
            killed_at = Some(Instant::now());
        }
        let op = Op::Put {
            key: Bytes::from(format!("key-{i}")),
            value: Bytes::from(format!("value-{i}")),
        };
        if let Ok(Outcome::Done) = c.call(op).await {
            acked.push(i);
            if i >= 300 && killed_at.is_some() {
                eprintln!(
                    "first write acknowledged {:?} after the leader was killed",
                    killed_at.take().unwrap().elapsed()
                );
            }
        }
    }
    assert!(
        acked.len() >= 550,
        "most writes go through: {} of 600",
        acked.len()
    );
    nodes.start(leader.0 as usize);
    let new_leader = wait_for_leader(&mut c, 3, Duration::from_secs(20)).await;
    read_all(&mut c, &acked).await;
    // The restarted node caught up with the leader.
    let start = Instant::now();
    loop {
        let s = c.statuses().await;
        let of = |id: NodeId| s.iter().find(|x| x.node == id).map(|x| x.executed);
        if of(leader).is_some() && of(leader) == of(new_leader) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "restarted node did not catch up: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Every node dies at once: only the write-ahead logs remain.
    for id in 0..3 {
        nodes.kill(id);
    }
    for id in 0..3 {
        nodes.start(id);
    }
    let mut c = client(&cluster, 2);
    wait_for_leader(&mut c, 3, Duration::from_secs(20)).await;
    read_all(&mut c, &acked).await;
    let log = std::fs::read_to_string(dir.path().join("node-0.log")).unwrap();
    assert!(log.contains("write-ahead log replayed"), "{log}");
}
