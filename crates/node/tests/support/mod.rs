//! A cluster served in this process (`node::serve::serve` per node, each in its own tracing
//! span, on 127.0.0.1 over the transport its cluster file names), for the tests that drive real
//! nodes from a cluster file.
#![allow(dead_code)] // each test file uses its own part

use std::net::{TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use node::client::{Connection, KvClient};
use node::config::{ClusterConfig, ClusterFile};
use node::runtime::Metrics;
use paxos::{NodeId, Protocol};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

/// A base port with `n` consecutive ports on 127.0.0.1 free for both UDP and TCP (free when
/// checked: the nodes bind them a moment later), so one cluster file serves either transport.
pub fn free_ports(n: u16) -> u16 {
    // Tests of one binary run at once: each call starts its search elsewhere, so two clusters
    // being set up together do not both find (and then fight over) the same free ports.
    static CALLS: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id() % 3000 * 7 + CALLS.fetch_add(1, Ordering::Relaxed) * 211;
    for attempt in 0..500u32 {
        let base = (30_000 + (seed + attempt * 53) % 25_000) as u16;
        let udp: Vec<_> = (0..n)
            .map(|i| UdpSocket::bind(("127.0.0.1", base + i)))
            .collect();
        let tcp: Vec<_> = (0..n)
            .map(|i| TcpListener::bind(("127.0.0.1", base + i)))
            .collect();
        if udp.iter().all(|s| s.is_ok()) && tcp.iter().all(|s| s.is_ok()) {
            return base;
        }
    }
    panic!("no {n} consecutive free ports on 127.0.0.1");
}

/// A node serving, and how to stop it.
struct Running {
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The nodes of one cluster file.
pub struct Cluster {
    _dir: tempfile::TempDir,
    pub config: ClusterConfig,
    pub metrics: Vec<Arc<Metrics>>,
    running: Vec<Option<Running>>,
}

impl Cluster {
    /// Certificates and a cluster file for 3 Multi-Paxos nodes with `extra` appended, and the
    /// nodes serving it.
    pub fn start(extra: &str) -> Cluster {
        Self::start_with(Protocol::MultiPaxos, 3, extra)
    }

    /// Certificates and a cluster file for `n` nodes of `protocol` with `extra` (TOML text)
    /// appended, and the nodes serving it.
    pub fn start_with(protocol: Protocol, n: u32, extra: &str) -> Cluster {
        Self::start_configured(n, |file| file.protocol = protocol, extra)
    }

    /// Certificates and a cluster file for `n` nodes (Multi-Paxos, durability none, loopback)
    /// as `configure` changes it, with `extra` (TOML text) appended; and the nodes serving it.
    pub fn start_configured(
        n: u32,
        configure: impl FnOnce(&mut ClusterFile),
        extra: &str,
    ) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        node::write_cluster(dir.path(), n, free_ports(n as u16)).unwrap();
        let path = dir.path().join("cluster.toml");
        let mut file: ClusterFile =
            toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        configure(&mut file);
        file.write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap() + extra;
        std::fs::write(&path, text).unwrap();
        let config = ClusterConfig::load(&path).unwrap();
        let mut cluster = Cluster {
            _dir: dir,
            config,
            metrics: (0..n).map(|_| Arc::new(Metrics::default())).collect(),
            running: (0..n).map(|_| None).collect(),
        };
        for i in 0..n {
            cluster.launch(NodeId(i));
        }
        cluster
    }

    /// Starts node `id` (again, after [`Cluster::stop_node`]: with `durability = "none"` it
    /// then rejoins as a learner, since its data directory says it ran before).
    fn launch(&mut self, id: NodeId) {
        let (shutdown, rx) = watch::channel(false);
        let config = self.config.clone();
        let metrics = self.metrics[id.0 as usize].clone();
        let task = tokio::spawn(
            async move {
                node::serve::serve(&config, id, metrics, rx).await.unwrap();
            }
            .instrument(tracing::info_span!("node", id = id.0)),
        );
        self.running[id.0 as usize] = Some(Running { shutdown, task });
    }

    /// Stops node `id` and waits (bounded) until it has released its sockets.
    pub async fn stop_node(&mut self, id: NodeId) {
        let r = self.running[id.0 as usize].take().expect("node is running");
        r.shutdown.send_replace(true);
        tokio::time::timeout(Duration::from_secs(20), r.task)
            .await
            .expect("a node did not stop")
            .unwrap();
    }

    /// Starts a node stopped by [`Cluster::stop_node`] on its old address, with a fresh
    /// metrics record.
    pub fn restart_node(&mut self, id: NodeId) {
        assert!(
            self.running[id.0 as usize].is_none(),
            "node {id} is running"
        );
        self.metrics[id.0 as usize] = Arc::new(Metrics::default());
        self.launch(id);
    }

    /// A client of the nodes in `only` (all of them if empty).
    pub fn client(&self, session: u64, only: &[NodeId]) -> KvClient {
        let certs = self.config.client_certs().unwrap();
        let (endpoint, nodes) = self.config.client_endpoint(&certs).unwrap();
        let nodes = nodes
            .into_iter()
            .filter(|(n, _)| only.is_empty() || only.contains(n))
            .collect();
        KvClient::new(endpoint, nodes, node::client::new_session(session))
    }

    /// A connection of its own to node `id`.
    pub async fn connection(&self, id: u32) -> Connection {
        let certs = self.config.client_certs().unwrap();
        let (endpoint, _) = self.config.client_endpoint(&certs).unwrap();
        let addr = self.config.nodes[id as usize].addr;
        Connection::open(&endpoint, NodeId(id), addr).await.unwrap()
    }

    /// Stops every node and waits (bounded) for each to end.
    pub async fn stop(self) {
        for r in self.running.iter().flatten() {
            r.shutdown.send_replace(true);
        }
        for r in self.running.into_iter().flatten() {
            tokio::time::timeout(Duration::from_secs(20), r.task)
                .await
                .expect("a node did not stop")
                .unwrap();
        }
    }
}
