//! The paxbench runtime: drives one `paxos` node over QUIC (quinn + rustls on tokio) or TLS over
//! TCP (`[transport] transport = "tcp"`), with mutual TLS under a cluster CA and, with
//! `durability = "fsync"`, a write-ahead log.
//!
//! - [`config`]: `cluster.toml`, parsed into a validated [`config::ClusterConfig`].
//! - [`serve`]: runs one node of a cluster file; [`runtime`] is its event loop and connections.
//! - [`client`]: a pipelining client that follows `NotLeader` redirects (`paxbench kv`).
//! - [`emulation`]: emulated WAN links (delay, jitter, loss, rate per directed node pair), applied
//!   inside the node to what it sends, for machines without `tc netem`; and faults imposed on
//!   them during a run (partition, extra delay, extra loss), set over the client connection.
//! - [`transport`]: the seam between the runtime and what carries its bytes: endpoints that
//!   listen and dial, authenticated connections, ordered byte streams.
//! - `tls`: certificates, mutual TLS (one rustls configuration for both transports) and the
//!   tuned QUIC endpoints.
//! - `wal`: the write-ahead log behind `durability = "fsync"`.
#![warn(missing_docs)]

pub mod client;
pub mod config;
pub mod emulation;
pub mod runtime;
pub mod serve;
pub mod transport;
pub use transport::{
    tcp_client_endpoint, tcp_endpoint, ClientEndpoint, NodeEndpoint, TcpDialer, TcpEndpoint,
    Transport,
};

mod tls;
pub use tls::{
    accept_incoming, authorize, client_config, client_endpoint, client_endpoint_on, connect_node,
    endpoint, peer_identity, write_cluster, Alpn, ClientCerts, ClusterCerts, Identity, Mtu,
    NodeCerts, Remote, TlsError, TransportTuning, CLIENT_ACK_ELICITING_THRESHOLD, CLIENT_ALPN,
    DEFAULT_BASE_PORT, PEER_ALPN, REFUSED_CLOSE_CODE,
};

pub mod wal;
pub use wal::{Wal, WalError, WalMetrics, WalOptions};
