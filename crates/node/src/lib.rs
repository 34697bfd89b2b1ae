//! The paxbench runtime: drives one `paxos` node over QUIC (quinn + rustls on tokio), with mutual
//! TLS under a cluster CA and, with `durability = "fsync"`, a write-ahead log.
//!
//! - [`config`]: `cluster.toml`, parsed into a validated [`config::ClusterConfig`].
#![warn(missing_docs)]

pub mod config;
