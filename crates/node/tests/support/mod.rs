//! A three-node Multi-Paxos cluster served in this process (`node::serve::serve` per node, over
//! quinn on 127.0.0.1), for the tests that drive real nodes from a cluster file.
#![allow(dead_code)] // each test file uses its own part

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Duration;

use node::client::{Connection, KvClient};
use node::config::ClusterConfig;
use node::runtime::Metrics;
use paxos::NodeId;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A base port with `n` consecutive free UDP ports on 127.0.0.1 (free when checked: the nodes
/// bind them a moment later).
pub fn free_ports(n: u16) -> u16 {
    let seed = (std::process::id() % 3000) as u16 * 7;
    for attempt in 0..500u16 {
        let base = 30_000 + (seed + attempt * 53) % 25_000;
        let sockets: Vec<_> = (0..n)
            .map(|i| UdpSocket::bind(("127.0.0.1", base + i)))
            .collect();
        if sockets.iter().all(|s| s.is_ok()) {
            return base;
        }
    }
    panic!("no {n} consecutive free UDP ports on 127.0.0.1");
}

/// Three nodes serving one cluster file.
pub struct Cluster {
    _dir: tempfile::TempDir,
    pub config: ClusterConfig,
    pub metrics: Vec<Arc<Metrics>>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Cluster {
    /// Certificates and a cluster file for 3 Multi-Paxos nodes with `extra` appended, and the
    /// nodes serving it.
    pub fn start(extra: &str) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        node::write_cluster(dir.path(), 3, free_ports(3)).unwrap();
        let path = dir.path().join("cluster.toml");
        let text = std::fs::read_to_string(&path).unwrap() + extra;
        std::fs::write(&path, text).unwrap();
        let config = ClusterConfig::load(&path).unwrap();
        assert_eq!(config.protocol, paxos::Protocol::MultiPaxos);
        let metrics: Vec<_> = (0..3).map(|_| Arc::new(Metrics::default())).collect();
        let (shutdown, rx) = watch::channel(false);
        let tasks = (0..3)
            .map(|i| {
                let (config, metrics, rx) = (config.clone(), metrics[i].clone(), rx.clone());
                tokio::spawn(async move {
                    node::serve::serve(&config, NodeId(i as u32), metrics, rx)
                        .await
                        .unwrap();
                })
            })
            .collect();
        Cluster {
            _dir: dir,
            config,
            metrics,
            shutdown,
            tasks,
        }
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
        self.shutdown.send_replace(true);
        for t in self.tasks {
            tokio::time::timeout(Duration::from_secs(20), t)
                .await
                .expect("a node did not stop")
                .unwrap();
        }
    }
}
