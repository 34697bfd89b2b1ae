//! `cluster.toml`: every node (id, address, certificate), the protocol and its knobs, durability,
//! data directory and certificate paths. Parsed once into a validated [`ClusterConfig`]; unknown
//! keys and bad values are errors that name the file, the line and the key.
//!
//! ```toml
//! protocol = "multi-paxos"        # multi-paxos | basic-paxos | unreplicated
//! durability = "none"             # none | fsync
//! data_dir = "data"               # relative paths are relative to this file's directory
//! wal_segment_bytes = 67108864    # fsync: segment size of the write-ahead log
//!
//! [tls]
//! ca = "ca.pem"
//! client_cert = "client.pem"      # used by `paxbench kv` and load generators
//! client_key = "client-key.pem"
//!
//! [paxos]                         # every key optional; defaults in crates/paxos Config
//! max_batch = 100
//! window = 32
//! backoff_base = "2rtt"           # or "500us", "1ms"; or backoff_base_us = 500 (not both)
//! # self_test_bug = "local-reads" # SELF-TEST ONLY: a deliberately broken node (SelfTestBug)
//!
//! [transport]                     # every key optional
//! transport = "quic"              # quic | tcp (TLS 1.3 over TCP; no [emulation], mtu or
//!                                 # udp_buffer_bytes with it)
//! mtu = 4096                      # QUIC: loopback; use 1200..1452 on real networks
//! threads = 1                     # runtime threads: 1 = one thread; more = a multi-thread pool
//!
//! [[nodes]]
//! id = 0
//! addr = "127.0.0.1:7000"
//! cert = "node-0.pem"
//! key = "node-0-key.pem"
//!
//! [emulation]                     # optional; even empty, it gives every node an emulated
//!                                 # socket on which faults can be imposed during a run
//! [[emulation.links]]             # optional: emulated WAN links, one per directed pair
//! from = 0                        # (see crate::emulation for every key)
//! to = 1
//! delay_us = 20000                # one-way; also jitter_us, loss (0..=1), rate_bytes_per_s
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::fmt;
use std::str::FromStr;

use paxos::{BackoffMode, BackoffSpan, NodeId, Protocol, ReadMode};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::emulation::LinkEmulation;
use crate::transport::Transport;

/// A cluster file that cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed, a key is unknown, or a value has the wrong type. The message from
    /// the parser names the line, the column and the key.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said, with line and key.
        message: String,
    },
    /// A value parses but cannot work.
    #[error("{path}:{line}: `{key}`: {why}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The line the key is on (0 if it could not be found).
        line: usize,
        /// The key.
        key: String,
        /// What is wrong with it.
        why: String,
    },
}

/// How a node keeps its acceptor state (`none` or `fsync` in files).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Memory only: writes are acknowledged at once. A restarted node rejoins without a vote.
    #[default]
    None,
    /// A write-ahead log, fsynced once per loop turn (group commit) before anything that reports
    /// the write leaves the node.
    Fsync,
}

impl Durability {
    /// The name in files.
    pub fn name(self) -> &'static str {
        match self {
            Durability::None => "none",
            Durability::Fsync => "fsync",
        }
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Durability {
    type Err = paxos::UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Durability::None, Durability::Fsync]
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| paxos::UnknownName {
                what: "durability",
                given: s.to_string(),
                choices: "none or fsync",
            })
    }
}

/// A cluster file as it is on disk: what `paxbench certs` and the launchers write (serialized
/// from this type, never assembled as text) and what a node reads. [`ClusterConfig::parse`]
/// turns it into a validated [`ClusterConfig`]; [`ClusterFile::write`] writes one and reads it
/// back through that same path.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// The protocol every node runs.
    pub protocol: Protocol,
    /// How acceptor state is kept.
    #[serde(default)]
    pub durability: Durability,
    /// Each node keeps its files in `data_dir/node-<id>/` (default `data`, next to the file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// With `fsync`: the write-ahead log's segment size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_segment_bytes: Option<u64>,
    /// Certificate paths.
    pub tls: TlsFiles,
    /// Protocol knobs.
    #[serde(default, skip_serializing_if = "PaxosKnobs::is_empty")]
    pub paxos: PaxosKnobs,
    /// Transport knobs.
    #[serde(default, skip_serializing_if = "TransportKnobs::is_empty")]
    pub transport: TransportKnobs,
    /// Every node.
    pub nodes: Vec<NodeFile>,
    /// Emulated links between nodes (`[[emulation.links]]`; see [`crate::emulation`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emulation: Option<LinkEmulation>,
}

/// `[tls]` of a cluster file: paths relative to the file's directory.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The cluster CA certificate.
    pub ca: PathBuf,
    /// The client certificate (load generators, `paxbench kv`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<PathBuf>,
    /// Its key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PathBuf>,
}

/// One `[[nodes]]` entry of a cluster file.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    /// The node id (bound into its certificate).
    pub id: u32,
    /// `ip:port` it binds and peers dial.
    pub addr: String,
    /// Its certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// `voter` (the default) or `learner`: a learner receives and executes chosen values and
    /// answers status, but never votes or campaigns (`paxos::Config::learners`).
    #[serde(default, skip_serializing_if = "NodeRole::is_voter")]
    pub role: NodeRole,
}

/// What a node does in the protocol (`role` of a `[[nodes]]` entry).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// Votes in quorums and may lead.
    #[default]
    Voter,
    /// Learns chosen values; never votes, never leads.
    Learner,
}

impl NodeRole {
    /// Whether this is the default, `voter`.
    pub fn is_voter(&self) -> bool {
        *self == NodeRole::Voter
    }
}

impl ClusterFile {
    /// Serializes the file to `path` and reads it back with [`ClusterConfig::load`], so what
    /// was written is exactly what a node will accept.
    pub fn write(&self, path: &Path) -> Result<ClusterConfig, ConfigError> {
        self.write_with_header(path, "")
    }

    /// [`ClusterFile::write`] with `header` (comment lines) before the TOML.
    pub fn write_with_header(
        &self,
        path: &Path,
        header: &str,
    ) -> Result<ClusterConfig, ConfigError> {
        let text = toml::to_string(self).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: format!("cannot serialize: {e}"),
        })?;
        std::fs::write(path, format!("{header}{text}")).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        ClusterConfig::load(path)
    }
}

/// The protocol knobs a cluster file's `[paxos]` (and an experiment's `[paxos]`,
/// `[overrides.<protocol>]` and sweep axes) may set, units in the names. This type is the one
/// definition of the knobs: unset keys keep the core's defaults (see `paxos::Config`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PaxosKnobs {
    /// Most commands per slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch: Option<usize>,
    /// Most payload bytes per slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_bytes: Option<usize>,
    /// Most slots in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<usize>,
    /// Most slots in flight holding a partial batch (Multi-Paxos).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_batches: Option<usize>,
    /// Most commands waiting for a slot before requests are refused as overloaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue: Option<usize>,
    /// Skip phase 1 while leader (Multi-Paxos).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_phase1: Option<bool>,
    /// Heartbeat period, microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_us: Option<u64>,
    /// Election timeout, microseconds (randomized up to twice this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub election_timeout_us: Option<u64>,
    /// Retry timeout, microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_timeout_us: Option<u64>,
    /// `none`, `full` or `equal` jitter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<BackoffMode>,
    /// Backoff base, microseconds (or give `backoff_base`, not both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_base_us: Option<u64>,
    /// Backoff cap, microseconds (or give `backoff_cap`, not both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_cap_us: Option<u64>,
    /// Backoff base with its unit: `"500us"`, `"1ms"`, or `"2rtt"` for twice the proposer's
    /// measured phase-1 round trip (`paxos::BackoffSpan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_base: Option<BackoffSpan>,
    /// Backoff cap with its unit, as `backoff_base`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_cap: Option<BackoffSpan>,
    /// Commit announcements always in their own message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explicit_commit: Option<bool>,
    /// Reply-cache window per client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_cache_per_client: Option<usize>,
    /// A client session silent this long is dropped, milliseconds (default 60 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_timeout_ms: Option<u64>,
    /// Slots between snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_interval: Option<u64>,
    /// Slots between truncations when snapshots are not durable (`durability = "none"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate_interval: Option<u64>,
    /// How far a lagging node may fall behind before it is left to a snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_retain_slots: Option<u64>,
    /// Seed of the node RNGs (mixed with each node id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// How a Multi-Paxos node answers a `Get`: `"log"` (the default), `"lease"` (the leader,
    /// from its own state while a quorum's leases are in force) or `"learner"` (a learner, from
    /// its own state at once: **not linearizable**); `paxos::ReadMode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reads: Option<ReadMode>,
    /// `reads = "lease"`: how long a follower's grant lasts from its receipt of a heartbeat,
    /// milliseconds (default 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_duration_ms: Option<u64>,
    /// `reads = "lease"`: the clock-rate error every node's clock stays within, parts per
    /// million (default 1000); the leader shortens its count of a lease by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_drift_ppm: Option<u32>,
    /// **Self-test only**: run a deliberately broken node ([`SelfTestBug`]), so that the
    /// linearizability checker can be shown to catch it. Never set by default; never set it in
    /// a benchmark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_test_bug: Option<SelfTestBug>,
}

/// A deliberately broken node, for the checker's self-test (`[paxos] self_test_bug`): what the
/// clients of such a cluster see must be reported as a violation. Names are kebab-case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SelfTestBug {
    /// `local-reads`: every node answers a `Get` at once from its own state, leader or not, with
    /// no lease and without going through the log (`paxos::Bug::LocalReads`). A lagging
    /// follower or a deposed leader answers with stale values.
    LocalReads,
    /// `ack-before-durable`: a node sends Promises and Accepteds before their writes are durable
    /// (`paxos::Bug::AckBeforeDurable`), and its write-ahead log holds every write back in memory
    /// for [`crate::runtime::ACK_BEFORE_DURABLE_HOLD`] before it writes and syncs it, so that a
    /// SIGKILL loses state the cluster has acknowledged. Needs `durability = "fsync"`.
    AckBeforeDurable,
}

impl SelfTestBug {
    /// The name in files.
    pub fn name(self) -> &'static str {
        match self {
            SelfTestBug::LocalReads => "local-reads",
            SelfTestBug::AckBeforeDurable => "ack-before-durable",
        }
    }

    /// The core's broken variant.
    pub fn core_bug(self) -> paxos::Bug {
        match self {
            SelfTestBug::LocalReads => paxos::Bug::LocalReads,
            SelfTestBug::AckBeforeDurable => paxos::Bug::AckBeforeDurable,
        }
    }

    /// Why it cannot run on a cluster of `protocol` with `durability`, if it cannot: either
    /// setting would make the bug a no-op, and a self-test that cannot fail proves nothing.
    pub fn unusable(self, protocol: Protocol, durability: Durability) -> Option<String> {
        match self {
            SelfTestBug::LocalReads if protocol == Protocol::Unreplicated => Some(
                "`local-reads` needs a replicated protocol: the unreplicated node reads its own state correctly"
                    .into(),
            ),
            SelfTestBug::AckBeforeDurable if durability != Durability::Fsync => Some(format!(
                "`ack-before-durable` needs durability = \"fsync\": with \"{durability}\" nothing is durable, and every write is acknowledged at once anyway"
            )),
            _ => None,
        }
    }
}

impl PaxosKnobs {
    /// Sets every knob this sets in a core configuration (units converted).
    pub fn apply(&self, c: &mut paxos::Config) {
        let p = self;
        let us = Duration::from_micros;
        macro_rules! set {
            ($field:ident) => {
                if let Some(v) = p.$field {
                    c.$field = v;
                }
            };
            ($field:ident, $key:ident, $f:expr) => {
                if let Some(v) = p.$key {
                    c.$field = $f(v);
                }
            };
        }
        set!(max_batch);
        set!(max_batch_bytes);
        set!(window);
        set!(partial_batches);
        set!(max_queue);
        set!(skip_phase1);
        set!(explicit_commit);
        set!(reply_cache_per_client);
        set!(snapshot_interval);
        set!(truncate_interval);
        set!(log_retain_slots);
        set!(seed);
        set!(reads);
        set!(clock_drift_ppm);
        set!(lease_duration, lease_duration_ms, Duration::from_millis);
        set!(heartbeat_interval, heartbeat_interval_us, us);
        set!(election_timeout, election_timeout_us, us);
        set!(retry_timeout, retry_timeout_us, us);
        set!(session_timeout, session_timeout_ms, Duration::from_millis);
        if let Some(mode) = p.backoff {
            c.backoff.mode = mode;
        }
        if let Some(v) = p.backoff_base_us {
            c.backoff.base = us(v).into();
        }
        if let Some(v) = p.backoff_cap_us {
            c.backoff.cap = us(v).into();
        }
        if let Some(v) = p.backoff_base {
            c.backoff.base = v;
        }
        if let Some(v) = p.backoff_cap {
            c.backoff.cap = v;
        }
        if let Some(bug) = p.self_test_bug {
            c.bug = Some(bug.core_bug());
        }
    }

    /// Two knobs of one layer that set the same thing (`backoff_base` and `backoff_base_us`),
    /// as (key, why): which one was meant cannot be known.
    pub fn conflict(&self) -> Option<(&'static str, String)> {
        if self.backoff_base.is_some() && self.backoff_base_us.is_some() {
            return Some((
                "backoff_base",
                "give backoff_base or backoff_base_us, not both".into(),
            ));
        }
        if self.backoff_cap.is_some() && self.backoff_cap_us.is_some() {
            return Some((
                "backoff_cap",
                "give backoff_cap or backoff_cap_us, not both".into(),
            ));
        }
        None
    }

    /// True when no knob is set.
    pub fn is_empty(&self) -> bool {
        *self == PaxosKnobs::default()
    }

    /// Sets every knob that `over` sets (later layers win: an experiment's `[paxos]`, then
    /// `[overrides.<protocol>]`, then a swept value).
    pub fn overlay(&mut self, over: &PaxosKnobs) {
        // Destructured without `..`, so a new knob that is not overlaid does not compile.
        macro_rules! take {
            ($($field:ident),*) => {
                let PaxosKnobs { $($field),* } = over;
                $(if $field.is_some() {
                    self.$field = *$field;
                })*
            };
        }
        // One backoff base (and cap) per layer: a later layer's, in either form, replaces an
        // earlier one's in both.
        if over.backoff_base.is_some() || over.backoff_base_us.is_some() {
            self.backoff_base = None;
            self.backoff_base_us = None;
        }
        if over.backoff_cap.is_some() || over.backoff_cap_us.is_some() {
            self.backoff_cap = None;
            self.backoff_cap_us = None;
        }
        take!(
            max_batch,
            max_batch_bytes,
            window,
            partial_batches,
            max_queue,
            skip_phase1,
            heartbeat_interval_us,
            election_timeout_us,
            retry_timeout_us,
            backoff,
            backoff_base_us,
            backoff_cap_us,
            backoff_base,
            backoff_cap,
            explicit_commit,
            reply_cache_per_client,
            session_timeout_ms,
            snapshot_interval,
            truncate_interval,
            log_retain_slots,
            seed,
            reads,
            lease_duration_ms,
            clock_drift_ppm,
            self_test_bug
        );
    }
}

/// Transport knobs (see `tls::TransportTuning` for what each does and why its default).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TransportKnobs {
    /// What carries peers' and clients' traffic: `quic` (the default) or `tcp`. Nodes,
    /// `paxbench kv` and load generators all follow it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<Transport>,
    /// QUIC's UDP payload size: ~4096 on loopback, 1200..1452 on real networks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    /// SO_RCVBUF / SO_SNDBUF of QUIC's UDP socket, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_buffer_bytes: Option<usize>,
    /// Threads of the node's async runtime: 1 (the default) runs everything on one thread;
    /// more gives quinn's connection tasks their own workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
}

impl TransportKnobs {
    /// True when no knob is set.
    pub fn is_empty(&self) -> bool {
        *self == TransportKnobs::default()
    }
}

/// One node of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEntry {
    /// Its id.
    pub id: NodeId,
    /// Where it listens (peers and clients).
    pub addr: SocketAddr,
    /// Its certificate (PEM), bound to its id.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// Voter or learner.
    pub role: NodeRole,
}

/// A validated cluster file. Paths are absolute (resolved against the file's directory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Where it was read from.
    pub path: PathBuf,
    /// The protocol every node runs.
    pub protocol: Protocol,
    /// How acceptor state is kept.
    pub durability: Durability,
    /// Each node keeps its files in `data_dir/node-<id>/`.
    pub data_dir: PathBuf,
    /// With `fsync`: roll to a new write-ahead log segment after this many bytes (default
    /// 64 MiB); segments below a snapshot are deleted.
    pub wal_segment_bytes: Option<u64>,
    /// The cluster CA (PEM).
    pub ca: PathBuf,
    /// The client certificate and key, if configured.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Protocol knobs as written.
    pub paxos: PaxosKnobs,
    /// Transport knobs as written.
    pub transport: TransportKnobs,
    /// Every node, in file order.
    pub nodes: Vec<NodeEntry>,
    /// Emulated links (`[emulation]`), validated against `nodes`; `None` if the file has none.
    /// `Some` with no links still wraps every node's socket, so that faults can be imposed
    /// ([`crate::emulation`], "Faults").
    pub emulation: Option<LinkEmulation>,
}

impl ClusterConfig {
    /// Reads and validates a cluster file.
    pub fn load(path: &Path) -> Result<ClusterConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates cluster-file text; `path` names it in errors and anchors relative
    /// paths.
    pub fn parse(path: &Path, text: &str) -> Result<ClusterConfig, ConfigError> {
        let raw: ClusterFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', "\n    "),
        })?;
        let invalid = |key: &str, why: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: line_of(text, key),
            key: key.to_string(),
            why,
        };
        let protocol = raw.protocol;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        if raw.nodes.is_empty() {
            return Err(invalid("nodes", "the cluster has no [[nodes]]".into()));
        }
        let mut nodes = Vec::with_capacity(raw.nodes.len());
        for n in &raw.nodes {
            let addr: SocketAddr = n.addr.parse().map_err(|e| {
                invalid(
                    "addr",
                    format!("node {}: {:?} is not ip:port ({e})", n.id, n.addr),
                )
            })?;
            if nodes.iter().any(|m: &NodeEntry| m.id == NodeId(n.id)) {
                return Err(invalid("id", format!("node id {} appears twice", n.id)));
            }
            if nodes.iter().any(|m: &NodeEntry| m.addr == addr) {
                return Err(invalid("addr", format!("address {addr} appears twice")));
            }
            nodes.push(NodeEntry {
                id: NodeId(n.id),
                addr,
                cert: resolve(&n.cert),
                key: resolve(&n.key),
                role: n.role,
            });
        }
        if protocol == Protocol::Unreplicated && nodes.len() != 1 {
            return Err(invalid(
                "protocol",
                format!("unreplicated runs on exactly one node, not {}", nodes.len()),
            ));
        }
        if raw.wal_segment_bytes.is_some_and(|b| b < 4096) {
            return Err(invalid("wal_segment_bytes", "must be at least 4096".into()));
        }
        if let Some(mtu) = raw.transport.mtu {
            if !(1200..=6000).contains(&mtu) {
                return Err(invalid(
                    "mtu",
                    format!(
                        "{mtu} is outside 1200..=6000 (MTU x 10 must stay under 64 KiB with GSO)"
                    ),
                ));
            }
        }
        if raw
            .transport
            .threads
            .is_some_and(|t| !(1..=256).contains(&t))
        {
            return Err(invalid("threads", "must be 1..=256".into()));
        }
        if raw.transport.transport == Some(Transport::Tcp) {
            // QUIC-socket settings would be silently ignored on TCP: refuse them instead.
            let quic_only = [
                ("mtu", raw.transport.mtu.is_some()),
                ("udp_buffer_bytes", raw.transport.udp_buffer_bytes.is_some()),
            ];
            if let Some((key, _)) = quic_only.iter().find(|(_, set)| *set) {
                return Err(invalid(
                    key,
                    "a QUIC setting, with no use on transport = \"tcp\": remove it".into(),
                ));
            }
            if raw.emulation.is_some() {
                return Err(invalid(
                    "transport",
                    "\"tcp\" cannot run with [emulation]: emulated links and link faults \
                     (partition, delay, loss) live in the QUIC node's UDP socket; use \
                     transport = \"quic\" or remove [emulation]"
                        .into(),
                ));
            }
        }
        if let Some(e) = &raw.emulation {
            let ids: Vec<NodeId> = nodes.iter().map(|n| n.id).collect();
            e.validate(&ids).map_err(|e| ConfigError::Invalid {
                path: path.to_path_buf(),
                line: e.line_in(text),
                key: e.key.to_string(),
                why: e.why,
            })?;
        }
        let client_cert = match (&raw.tls.client_cert, &raw.tls.client_key) {
            (Some(c), Some(k)) => Some((resolve(c), resolve(k))),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "client_cert",
                    "client_cert and client_key go together".into(),
                ))
            }
        };
        let config = ClusterConfig {
            path: path.to_path_buf(),
            protocol,
            durability: raw.durability,
            data_dir: resolve(raw.data_dir.as_deref().unwrap_or(Path::new("data"))),
            wal_segment_bytes: raw.wal_segment_bytes,
            ca: resolve(&raw.tls.ca),
            client_cert,
            paxos: raw.paxos,
            transport: raw.transport,
            nodes,
            emulation: raw.emulation,
        };
        if let Some((key, why)) = config.paxos.conflict() {
            return Err(invalid(key, why));
        }
        if let Some(why) = config
            .paxos
            .self_test_bug
            .and_then(|bug| bug.unusable(protocol, config.durability))
        {
            return Err(invalid("self_test_bug", why));
        }
        // Cross-field checks of the core (e.g. heartbeat shorter than the election timeout).
        let first = config.nodes[0].id;
        config
            .core_config(first)
            .validate()
            .map_err(|e| invalid("paxos", e.to_string()))?;
        Ok(config)
    }

    /// What carries the cluster's traffic (`[transport] transport`, QUIC if unset).
    pub fn transport(&self) -> Transport {
        self.transport.transport.unwrap_or_default()
    }

    /// The entry of node `id`, if it is in the cluster.
    pub fn node(&self, id: NodeId) -> Option<&NodeEntry> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The core configuration of node `id`.
    pub fn core_config(&self, id: NodeId) -> paxos::Config {
        let ids = self.nodes.iter().map(|n| n.id).collect();
        let mut c = paxos::Config::new(self.protocol, id, ids);
        c.learners = self
            .nodes
            .iter()
            .filter(|n| n.role == NodeRole::Learner)
            .map(|n| n.id)
            .collect();
        self.paxos.apply(&mut c);
        // Only a write-ahead log needs a copy of the state at every truncation.
        c.durable_snapshots = self.durability == Durability::Fsync;
        c
    }

    /// The nodes that answer a `Get` sent to them from their own state, so a load generator
    /// sends its reads there: the learners under `reads = "learner"` (**not linearizable**);
    /// none otherwise.
    pub fn learner_readers(&self) -> Vec<NodeId> {
        if self.paxos.reads != Some(ReadMode::Learner) {
            return Vec::new();
        }
        self.nodes
            .iter()
            .filter(|n| n.role == NodeRole::Learner)
            .map(|n| n.id)
            .collect()
    }

    /// Node `id`'s own data directory.
    pub fn node_dir(&self, id: NodeId) -> PathBuf {
        self.data_dir.join(format!("node-{}", id.0))
    }
}

/// The 1-based line where `key` is first assigned, or 0.
fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
                || l == format!("[[{key}]]")
        })
        .map_or(0, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
protocol = "multi-paxos"
durability = "fsync"

[tls]
ca = "ca.pem"

[paxos]
max_batch = 10
election_timeout_us = 300000

[[nodes]]
id = 0
addr = "127.0.0.1:7000"
cert = "node-0.pem"
key = "node-0-key.pem"

[[nodes]]
id = 1
addr = "127.0.0.1:7001"
cert = "node-1.pem"
key = "node-1-key.pem"
"#;

    #[test]
    fn a_good_file_resolves_paths_and_knobs() {
        let c = ClusterConfig::parse(Path::new("/etc/px/cluster.toml"), GOOD).unwrap();
        assert_eq!(c.durability, Durability::Fsync);
        assert_eq!(c.ca, Path::new("/etc/px/ca.pem"));
        assert_eq!(c.data_dir, Path::new("/etc/px/data"));
        let core = c.core_config(NodeId(1));
        assert_eq!(core.max_batch, 10);
        assert_eq!(core.election_timeout, Duration::from_millis(300));
        assert_eq!(core.nodes, vec![NodeId(0), NodeId(1)]);
    }

    #[test]
    fn a_node_can_be_a_learner_but_not_every_node_and_not_an_unknown_role() {
        let learner = GOOD.replace(
            "key = \"node-1-key.pem\"",
            "key = \"node-1-key.pem\"\nrole = \"learner\"",
        );
        let c = ClusterConfig::parse(Path::new("c.toml"), &learner).unwrap();
        assert_eq!(c.nodes[1].role, NodeRole::Learner);
        let core = c.core_config(NodeId(0));
        assert_eq!(core.learners, vec![NodeId(1)]);
        assert_eq!(core.quorum(), 1);
        // Reads go to the learners only under reads = "learner".
        assert_eq!(c.learner_readers(), Vec::<NodeId>::new());
        let reads = learner.replace("max_batch = 10", "max_batch = 10\nreads = \"learner\"");
        let c = ClusterConfig::parse(Path::new("c.toml"), &reads).unwrap();
        assert_eq!(c.learner_readers(), vec![NodeId(1)]);
        let e = ClusterConfig::parse(
            Path::new("c.toml"),
            &reads.replace("reads = \"learner\"", "reads = \"learners\""),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("`reads`") || e.contains("reads = \"learners\""),
            "{e}"
        );
        assert!(e.contains("`learners`") && e.contains("`learner`"), "{e}");
        let text = learner.replace(
            "key = \"node-0-key.pem\"",
            "key = \"node-0-key.pem\"\nrole = \"learner\"",
        );
        let e = ClusterConfig::parse(Path::new("c.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("c.toml") && e.contains("at least one must vote"),
            "{e}"
        );
        let text = learner.replace("\"learner\"", "\"observer\"");
        let e = ClusterConfig::parse(Path::new("c.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 23") && e.contains("observer") && e.contains("learner"),
            "{e}"
        );
    }

    #[test]
    fn an_unknown_key_names_file_line_and_key() {
        let text = GOOD.replace("max_batch = 10", "max_batch = 10\nwindw = 4");
        let e = ClusterConfig::parse(Path::new("c.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("c.toml") && e.contains("line 10") && e.contains("windw"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_the_key_and_line() {
        let text = GOOD.replace("addr = \"127.0.0.1:7001\"", "addr = \"localhost\"");
        let e = ClusterConfig::parse(Path::new("c.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("c.toml:") && e.contains("`addr`") && e.contains("localhost"),
            "{e}"
        );
        let text = GOOD.replace("multi-paxos", "raft");
        let e = ClusterConfig::parse(Path::new("c.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("c.toml: ")
                && e.contains("line 2")
                && e.contains(r#"protocol = "raft""#)
                && e.contains("multi-paxos"),
            "{e}"
        );
        let text = GOOD.replace("max_batch = 10", "backoff = \"fast\"");
        let e = ClusterConfig::parse(Path::new("c.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 9") && e.contains("fast") && e.contains("equal"),
            "{e}"
        );
        // Backoff spans: with their unit, typed; a layer that gives both forms is refused.
        let text = GOOD.replace(
            "max_batch = 10",
            "backoff_base = \"2rtt\"\nbackoff_cap = \"5ms\"",
        );
        let c = ClusterConfig::parse(Path::new("c.toml"), &text).unwrap();
        let b = c.core_config(NodeId(0)).backoff;
        assert_eq!(b.base, BackoffSpan::Rtts { milli: 2000 });
        assert_eq!(b.cap, BackoffSpan::Fixed(Duration::from_millis(5)));
        let text = GOOD.replace("max_batch = 10", "backoff_base = \"2 furlongs\"");
        let e = ClusterConfig::parse(Path::new("c.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 9") && e.contains("furlongs") && e.contains("2rtt"),
            "{e}"
        );
        let text = GOOD.replace(
            "max_batch = 10",
            "backoff_base = \"2rtt\"\nbackoff_base_us = 500",
        );
        let e = ClusterConfig::parse(Path::new("c.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`backoff_base`") && e.contains("not both"),
            "{e}"
        );
        let text = GOOD.replace("election_timeout_us = 300000", "election_timeout_us = 10");
        let e = ClusterConfig::parse(Path::new("c.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("heartbeat_interval must be shorter"), "{e}");
        let text = GOOD.replace("id = 1", "id = 0");
        let e = ClusterConfig::parse(Path::new("c.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("appears twice"), "{e}");
        for (threads, ok) in [(0, false), (1, true), (4, true), (1000, false)] {
            let text = format!("{GOOD}\n[transport]\nthreads = {threads}\n");
            match ClusterConfig::parse(Path::new("c.toml"), &text) {
                Ok(c) => {
                    assert!(ok, "threads = {threads} accepted");
                    assert_eq!(c.transport.threads, Some(threads));
                }
                Err(e) => {
                    assert!(!ok, "threads = {threads} refused: {e}");
                    assert!(e.to_string().contains("`threads`"), "{e}");
                }
            }
        }
    }

    #[test]
    fn the_transport_is_typed_and_tcp_refuses_what_only_quic_can_do() {
        let c = ClusterConfig::parse(Path::new("c.toml"), GOOD).unwrap();
        assert_eq!(c.transport(), Transport::Quic);
        for (name, transport) in [("quic", Transport::Quic), ("tcp", Transport::Tcp)] {
            let text = format!("{GOOD}\n[transport]\ntransport = \"{name}\"\n");
            let c = ClusterConfig::parse(Path::new("c.toml"), &text).unwrap();
            assert_eq!(c.transport(), transport);
        }
        let text = format!("{GOOD}\n[transport]\ntransport = \"udp\"\n");
        let e = ClusterConfig::parse(Path::new("c.toml"), &text)
            .unwrap_err()
            .to_string();
        let line = 1 + text.lines().position(|l| l.contains("udp")).unwrap();
        assert!(
            e.contains(&format!("line {line}")) && e.contains("udp") && e.contains("quic"),
            "{e}"
        );
        // With tcp: [emulation] (links or faults) and the QUIC socket's knobs are refused,
        // naming the line of the key at fault.
        let tcp = format!("{GOOD}\n[transport]\ntransport = \"tcp\"\n");
        let line = 1 + tcp.lines().position(|l| l.contains("\"tcp\"")).unwrap();
        let e = ClusterConfig::parse(Path::new("c.toml"), &format!("{tcp}\n[emulation]\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("c.toml:{line}: `transport`:")) && e.contains("[emulation]"),
            "{e}"
        );
        for knob in ["mtu = 4096", "udp_buffer_bytes = 1048576"] {
            let text = tcp.replace(
                "transport = \"tcp\"",
                &format!("transport = \"tcp\"\n{knob}"),
            );
            let e = ClusterConfig::parse(Path::new("c.toml"), &text)
                .unwrap_err()
                .to_string();
            let key = knob.split(' ').next().unwrap();
            assert!(
                e.starts_with(&format!("c.toml:{}: `{key}`:", line + 1)) && e.contains("QUIC"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_written_cluster_file_reads_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut file: ClusterFile = toml::from_str(GOOD).unwrap();
        file.paxos.backoff = Some(BackoffMode::Equal);
        file.transport.threads = Some(2);
        file.transport.transport = Some(Transport::Tcp);
        let path = dir.path().join("cluster.toml");
        let config = file.write(&path).unwrap();
        let again: ClusterFile = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(again, file);
        assert_eq!(config.protocol, Protocol::MultiPaxos);
        assert_eq!(
            config.core_config(NodeId(0)).backoff.mode,
            BackoffMode::Equal
        );
        assert_eq!(config.ca, dir.path().join("ca.pem"));
    }

    #[test]
    fn overlays_set_only_what_they_name() {
        let mut base = PaxosKnobs {
            window: Some(8),
            max_batch: Some(10),
            ..PaxosKnobs::default()
        };
        base.overlay(&PaxosKnobs {
            max_batch: Some(1),
            backoff: Some(BackoffMode::None),
            ..PaxosKnobs::default()
        });
        assert_eq!(base.window, Some(8));
        assert_eq!(base.max_batch, Some(1));
        assert_eq!(base.backoff, Some(BackoffMode::None));
        assert!(!base.is_empty() && PaxosKnobs::default().is_empty());
    }

    #[test]
    fn a_self_test_bug_reaches_the_core_and_refuses_settings_that_would_hide_it() {
        assert_eq!(
            ClusterConfig::parse(Path::new("c.toml"), GOOD)
                .unwrap()
                .core_config(NodeId(0))
                .bug,
            None
        );
        for (name, bug) in [
            ("local-reads", paxos::Bug::LocalReads),
            ("ack-before-durable", paxos::Bug::AckBeforeDurable),
        ] {
            let text = GOOD.replace("max_batch = 10", &format!("self_test_bug = \"{name}\""));
            let c = ClusterConfig::parse(Path::new("c.toml"), &text).unwrap();
            assert_eq!(c.core_config(NodeId(1)).bug, Some(bug));
            assert_eq!(c.paxos.self_test_bug.map(SelfTestBug::name), Some(name));
        }
        let text = GOOD
            .replace("max_batch = 10", "self_test_bug = \"ack-before-durable\"")
            .replace("durability = \"fsync\"", "durability = \"none\"");
        let e = ClusterConfig::parse(Path::new("c.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("c.toml:9: `self_test_bug`") && e.contains("fsync"),
            "{e}"
        );
        let text = GOOD.replace("max_batch = 10", "self_test_bug = \"lazy\"");
        let e = ClusterConfig::parse(Path::new("c.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("local-reads") && e.contains("ack-before-durable"),
            "{e}"
        );
    }

    #[test]
    fn emulated_links_parse_and_bad_entries_name_file_line_and_key() {
        let links = "\n[[emulation.links]]\nfrom = 0\nto = 1\ndelay_us = 20000\n\n\
                     [[emulation.links]]\nfrom = 1\nto = 0\ndelay_us = 20000\nloss = 0.05\n";
        let c = ClusterConfig::parse(Path::new("c.toml"), &format!("{GOOD}{links}")).unwrap();
        let e = c.emulation.expect("an [emulation] section");
        assert_eq!(e.links.len(), 2);
        assert_eq!(
            (e.links[1].from, e.links[1].to, e.links[1].loss),
            (1, 0, 0.05)
        );
        assert_eq!(
            ClusterConfig::parse(Path::new("c.toml"), GOOD)
                .unwrap()
                .emulation,
            None
        );
        // An empty section is a section: the nodes get emulated sockets, for faults.
        let c = ClusterConfig::parse(Path::new("c.toml"), &format!("{GOOD}\n[emulation]\n"));
        assert_eq!(c.unwrap().emulation, Some(LinkEmulation::default()));

        // The second entry's loss.
        let text = format!("{GOOD}{links}").replace("loss = 0.05", "loss = 1.5");
        let line = 1 + text.lines().position(|l| l == "loss = 1.5").unwrap();
        let e = ClusterConfig::parse(Path::new("c.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!(
                "c.toml:{line}: `loss`: [[emulation.links]] #2 (1 -> 0)"
            )),
            "{e}"
        );
        // A node that is not in the cluster.
        let text = format!("{GOOD}{links}").replace("to = 0", "to = 5");
        let line = 1 + text.lines().position(|l| l == "to = 5").unwrap();
        let e = ClusterConfig::parse(Path::new("c.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(&format!("c.toml:{line}: `to`:")), "{e}");
        assert!(e.contains("node 5 is not in [[nodes]]"), "{e}");
        // A misspelt key: the parser names its line.
        let text = format!("{GOOD}{links}").replace("loss = 0.05", "los = 0.05");
        let line = 1 + text.lines().position(|l| l == "los = 0.05").unwrap();
        let e = ClusterConfig::parse(Path::new("c.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("c.toml") && e.contains(&format!("line {line}")) && e.contains("los"),
            "{e}"
        );
    }
}
