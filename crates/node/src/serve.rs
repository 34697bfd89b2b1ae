//! Running one node of a cluster file: certificates, endpoint, write-ahead log, event loop.

use std::net::SocketAddr;
use std::sync::Arc;

use paxos::NodeId;
use thiserror::Error;
use tokio::sync::watch;
use tracing::{info, warn};
use wire::Codec;

use crate::config::{ClusterConfig, Durability};
use crate::runtime::{self, Metrics, RuntimeConfig};
use crate::tls::{self, ClientCerts, Mtu, NodeCerts, TransportTuning};
use crate::transport::{self, ClientEndpoint, NodeEndpoint, Transport};
use crate::wal::{Wal, WalOptions};

/// Why a node could not start.
#[derive(Debug, Error)]
pub enum NodeError {
    /// The id is not in the cluster file.
    #[error("node {id} is not in {path}")]
    UnknownNode {
        /// The id asked for.
        id: NodeId,
        /// The cluster file.
        path: std::path::PathBuf,
    },
    /// Certificates or the endpoint.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The write-ahead log refused to open (for example, corruption before its tail).
    #[error(transparent)]
    Wal(#[from] crate::wal::WalError),
    /// The data directory.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The cluster file names no client certificate, which a client needs.
    #[error("{path}: [tls] needs client_cert and client_key for a client")]
    NoClientCert {
        /// The cluster file.
        path: std::path::PathBuf,
    },
    /// The core refused the configuration.
    #[error(transparent)]
    Core(#[from] paxos::ConfigError),
}

impl ClusterConfig {
    /// The client certificate the cluster file names (`[tls] client_cert` and `client_key`),
    /// loaded and checked against the cluster CA's identity rules.
    pub fn client_certs(&self) -> Result<ClientCerts, NodeError> {
        let (cert, key) = self
            .client_cert
            .as_ref()
            .ok_or_else(|| NodeError::NoClientCert {
                path: self.path.clone(),
            })?;
        Ok(ClientCerts::load(&self.ca, cert, key)?)
    }

    /// What a client of this cluster needs: an endpoint presenting `certs` (see
    /// [`ClusterConfig::client_certs`]) on the cluster's transport (QUIC: bound to loopback when
    /// every node is on loopback and to every interface otherwise; TCP: each connection from
    /// an ephemeral port), and each node's id and address. Must be called inside a tokio
    /// runtime.
    pub fn client_endpoint(
        &self,
        certs: &ClientCerts,
    ) -> Result<(ClientEndpoint, Vec<(NodeId, SocketAddr)>), NodeError> {
        let bind: SocketAddr = if self.nodes.iter().all(|n| n.addr.ip().is_loopback()) {
            (std::net::Ipv4Addr::LOCALHOST, 0).into()
        } else {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let tuning = TransportTuning::default();
        let endpoint = match self.transport() {
            Transport::Quic => tls::client_endpoint_on(bind, certs, &tuning)?.into(),
            Transport::Tcp => transport::tcp_client_endpoint(certs, &tuning)?.into(),
        };
        let nodes = self.nodes.iter().map(|n| (n.id, n.addr)).collect();
        Ok((endpoint, nodes))
    }
}

/// The transport tuning a cluster file asks for.
pub fn tuning(cluster: &ClusterConfig) -> TransportTuning {
    let mut t = TransportTuning::default();
    if let Some(mtu) = cluster.transport.mtu {
        t.mtu = Mtu::Fixed {
            initial: mtu.clamp(1200, 1452),
            max: mtu,
        };
    }
    if let Some(b) = cluster.transport.udp_buffer_bytes {
        t.socket_buffer_bytes = b;
    }
    t
}

/// Runs node `id` of `cluster` until `shutdown` turns true.
///
/// With `durability = "fsync"` the node replays its write-ahead log from
/// `data_dir/node-<id>/wal` and restarts where it stopped. With `"none"` it keeps a marker file
/// in `data_dir/node-<id>/`: if the marker is there at start, this is a restart that lost its
/// state, and the node rejoins as a non-voting learner (`paxos::Node::rejoin_without_state`).
pub async fn serve(
    cluster: &ClusterConfig,
    id: NodeId,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), NodeError> {
    let entry = cluster.node(id).ok_or_else(|| NodeError::UnknownNode {
        id,
        path: cluster.path.clone(),
    })?;
    let certs = NodeCerts::load(id, &cluster.ca, &entry.cert, &entry.key)?;
    // Only peer addresses get rules: clients and load generators are never emulated. With an
    // `[emulation]` section, even one without links, the socket is wrapped so that faults can
    // be imposed on it (`metrics.faults`).
    let nodes: Vec<(NodeId, SocketAddr)> = cluster.nodes.iter().map(|n| (n.id, n.addr)).collect();
    let emulation = cluster.emulation.as_ref().map(|e| {
        e.for_node(
            id,
            &nodes,
            metrics.emulation.clone(),
            metrics.faults.clone(),
        )
    });
    let emulated = emulation.is_some();
    // The cluster file refused [emulation] with TCP (`ClusterConfig::parse`).
    let endpoint: NodeEndpoint = match cluster.transport() {
        Transport::Quic => tls::endpoint(entry.addr, &certs, &tuning(cluster), emulation)?.into(),
        Transport::Tcp => transport::tcp_endpoint(entry.addr, &certs, &tuning(cluster))?.into(),
    };
    let dir = cluster.node_dir(id);
    std::fs::create_dir_all(&dir).map_err(|source| NodeError::DataDir {
        path: dir.clone(),
        source,
    })?;
    let (wal, recovered, rejoin) = match cluster.durability {
        Durability::Fsync => {
            let mut options = WalOptions::default();
            if let Some(b) = cluster.wal_segment_bytes {
                options.segment_bytes = b;
            }
            let (wal, durable) = Wal::open(&dir.join("wal"), options)?;
            info!(node = id.0, promised = %durable.promised, accepted = durable.accepted.len(), "write-ahead log replayed");
            (Some(wal), Some(durable), false)
        }
        Durability::None => {
            let marker = dir.join("started-without-durability");
            let restarted = marker.exists();
            std::fs::write(&marker, b"this node ran with durability = none\n").map_err(
                |source| NodeError::DataDir {
                    path: marker.clone(),
                    source,
                },
            )?;
            if restarted {
                warn!(
                    node = id.0,
                    "restarted without durable state: rejoining as a non-voting learner"
                );
            }
            (None, None, restarted)
        }
    };
    let addrs = cluster.nodes.iter().map(|n| (n.id, n.addr)).collect();
    let config = RuntimeConfig {
        core: cluster.core_config(id),
        addrs,
        wal,
        recovered,
        rejoin_without_state: rejoin,
        codec: Codec::default(),
    };
    info!(
        node = id.0, addr = %entry.addr, protocol = %cluster.protocol,
        transport = %cluster.transport(), "node starting"
    );
    runtime::run(endpoint, config, metrics.clone(), shutdown).await?;
    if emulated {
        let s = metrics.emulation.snapshot();
        info!(
            node = id.0,
            delayed = s.delayed,
            released = s.released,
            dropped_loss = s.dropped_loss,
            dropped_fault = s.dropped_fault,
            dropped_queue_full = s.dropped_queue_full,
            send_errors = s.send_errors,
            "emulated links at shutdown"
        );
    }
    Ok(())
}
