//! Emulated WAN links: one-way delay, jitter, loss and a rate limit per directed node pair,
//! applied inside the node to the datagrams it sends.
//!
//! # Why
//!
//! A benchmark of consensus across regions needs the latencies of a WAN between its nodes, but
//! paxbench usually runs every node on one machine, on loopback, or on VMs whose kernel has no
//! `tc netem` (`sch_netem`; the development machine's kernel lacks it). So the node emulates
//! the links itself: the optional `[emulation]` section of `cluster.toml` ([`LinkEmulation`])
//! describes each directed link, and every node holds back what it sends to a peer as that
//! link says. With a symmetric matrix (a rule `0 -> 1` and a rule `1 -> 0`), each direction
//! gets its own one-way delay, and the round trip between two nodes is the sum of both.
//!
//! ```toml
//! [emulation]                        # optional
//! seed = 7                           # of the loss and jitter draws (mixed with each node id)
//! max_queued_datagrams = 65536       # per node, over all its links
//! max_queued_bytes = 67108864
//!
//! [[emulation.links]]                # node 0 -> node 1, one way
//! from = 0
//! to = 1
//! delay_us = 20000                   # one-way delay
//! jitter_us = 1000                   # uniform in [-jitter, +jitter] around the delay
//! loss = 0.01                        # probability a datagram is dropped, 0..=1
//! rate_bytes_per_s = 12500000        # optional: 100 Mbit/s of UDP payload
//!
//! [[emulation.links]]                # and back
//! from = 1
//! to = 0
//! delay_us = 20000
//! ```
//!
//! An `[emulation]` section with no links at all (just the header, or only `seed` and the
//! queue bounds) emulates nothing, but still gives every node its emulated socket, so that
//! faults can be imposed during a run ([Faults](#faults-impairments-at-run-time)) with zero
//! configured delay. A cluster file without the section is not emulated at all: its nodes send
//! through quinn's socket as it is, and refuse impairments.
//!
//! # How
//!
//! quinn sends every datagram through an [`AsyncUdpSocket`]. When the cluster file has an
//! `[emulation]` section, a node wraps the socket quinn's runtime would use in an
//! [`EmulatedSocket`] ([`NodeEmulation::wrap`], called by [`crate::endpoint`]). The socket knows
//! the address of every peer. A datagram to any other address (a client, a load generator) goes
//! straight to the inner socket: clients are never emulated. So does a datagram to a peer with
//! no rule and no impairment; the cost of either is comparing its destination with the few
//! peer addresses, plus, for a peer, one atomic load (see [Cost](#cost)). A datagram to a peer
//! with a rule or an impairment is decided at once, in `try_send`, which never blocks or fails
//! quinn's caller:
//!
//! 1. **Faults**: dropped if the peer is blocked (counted in
//!    [`EmulationCounters::dropped_fault`], as every datagram a fault drops).
//! 2. **Loss**: dropped with probability `loss` (counted in
//!    [`EmulationCounters::dropped_loss`]), else with the impairment's probability `loss`
//!    (counted in `dropped_fault`): two independent draws, so a link losing 0.1 with an
//!    impairment losing 0.5 drops 1 - 0.9 x 0.5 = 0.55. A lost datagram takes no link time.
//! 3. **Queue bound**: if holding it would exceed `max_queued_datagrams` or `max_queued_bytes`
//!    (all links of the node together), it is dropped and counted separately, in
//!    [`EmulationCounters::dropped_queue_full`], like a router's tail drop. Memory cannot grow
//!    without bound however fast quinn sends.
//! 4. **Rate**: with `rate_bytes_per_s`, datagrams serialize one after another onto the link
//!    (their UDP payload only; headers are not counted): one finishes `len / rate` after the
//!    later of its arrival and the end of the previous one. There is no burst allowance beyond
//!    one datagram. A backlog builds up in the queue, bounded as above.
//! 5. **Delay**: it is released `delay_us + extra_delay_us ± jitter_us` (uniform, from a seeded
//!    RNG) after it arrived, or after it finished serializing with a rate limit. A link whose
//!    delay, extra delay, jitter and rate are all zero holds nothing: what survives the loss
//!    draws goes to the inner socket at once (if it is not writable, the datagrams are held and
//!    the release task sends them as soon as it is), so a loss-only link or impairment adds no
//!    timer latency.
//! 6. **Order**: without jitter, datagrams leave a link in the order they were sent, even when
//!    its delay changes: a datagram is never released before one sent earlier on the same link,
//!    so lifting an extra delay drains what the delay holds first. Jitter is drawn for every
//!    transmit independently, as `netem` does, so a datagram may overtake one sent up to
//!    `2 × jitter_us` before it (or, right after an extra delay is lifted, one still held by it):
//!    jitter reorders exactly as much as it implies, and nothing else does. QUIC copes with
//!    reordering, but takes a packet overtaken by three later ones for lost and slows down, so
//!    jitter on a busy link costs throughput too. (Keeping the order instead would make every
//!    datagram wait for the slowest draw before it, and on a busy link the delay would sit near
//!    `delay_us + jitter_us` rather than spread around `delay_us`.)
//!
//! A tokio task per node ([`NodeEmulation::wrap`] spawns it) sleeps until the earliest held
//! datagram is due and hands everything due to the inner socket, waiting for it to become
//! writable if it must. tokio's timers work in whole milliseconds (a deadline is rounded up to
//! the next millisecond tick), so each datagram leaves 1–2 ms after its due time (a 20 ms delay
//! measured 21.7 ms in a debug build here) and an emulated round trip reads 2–4 ms more than the
//! sum of its two delays: right for WAN delays of tens of milliseconds, too coarse for emulating
//! sub-millisecond links. If the inner socket fails a send, the datagram is lost and counted in
//! [`EmulationCounters::send_errors`].
//!
//! **GSO.** A [`Transmit`] may carry several datagrams (`segment_size`), which the kernel sends
//! back to back. Without a rate limit its datagrams share one delay draw, each is lost on its own,
//! and the survivors stay one transmit: the kept segments are full-size except possibly the
//! last, as GSO requires. With a rate limit each datagram is held on its own, because each
//! finishes serializing at its own time.
//!
//! **Receiving** passes through untouched: each node emulates what it sends, so every directed
//! link is emulated exactly once.
//!
//! When the endpoint is dropped, the task ends and datagrams still held are discarded, as a host
//! that stops loses what its links still carried.
//!
//! # Faults: impairments at run time
//!
//! On top of the configured links, a node keeps an **impairment** per peer that can change
//! while it runs ([`wire::Impairment`], one [`wire::LinkImpairment`] per peer): `blocked` drops
//! everything to the peer, `extra_delay_us` adds to the link's one-way delay, `loss` drops a
//! share of the datagrams on top of the configured loss. A harness sets a node's impairment
//! with a [`wire::ClientFrame::Impair`] on the node's client connection (mutual TLS under the
//! cluster CA, like every client frame; [`crate::client::Connection::impair`]), which replaces
//! the node's whole impairment (an empty one lifts every fault), and reads it back, with the
//! [`EmulationCounters::dropped_fault`] counter, in the node's status. The runtime hands it to
//! [`LinkFaults::set`]; a node without an `[emulation]` section refuses it with an error that
//! says so. A restarted node starts unimpaired.
//!
//! **Each node impairs only what it sends**, like the configured links. A partition is
//! therefore imposed on *both* sides: to cut node 0 off from nodes 1 and 2, node 0 blocks 1 and
//! 2, and nodes 1 and 2 each block 0 ([`partition`] computes what every node must be told).
//! Telling only node 0 makes the cut one-way: 1 and 2 would still reach 0. The harness must send
//! the impairment to every affected node, at the fault's start, and the empty impairment to
//! each of them at its end. Datagrams already held on a link when it becomes blocked were
//! "in flight" and still arrive.
//!
//! # Cost
//!
//! A peer with neither rule nor impairment costs what it did without the wrapper, plus the scan
//! of the peer addresses (a few address compares) and one `Acquire` load of an [`AtomicBool`]
//! (a plain load on x86, a load-acquire on ARM); no lock, no allocation. Measured by the
//! ignored test `tests::cost_of_the_wrapper_on_a_passthrough_send` in a release build: 20 ns a
//! send to the last of 4 peers, against 1–2 ns for the bare call, into a socket that does
//! nothing; the `sendmsg` that follows for real takes microseconds. That flag is set while the
//! peer has an impairment or datagrams held for it, so that its datagrams go through the
//! scheduler (and its mutex, as every configured link's always do) exactly then, and keep
//! their order when a fault is lifted. Changing the impairment takes the scheduler's mutex
//! once.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::future::poll_fn;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use paxos::NodeId;
use quinn::udp::{EcnCodepoint, RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use wire::{Impairment, LinkImpairment};

/// Default of [`LinkEmulation::max_queued_datagrams`].
pub const DEFAULT_MAX_QUEUED_DATAGRAMS: usize = 65_536;
/// Default of [`LinkEmulation::max_queued_bytes`]: 64 MiB, a 40 ms link at 1.6 GB/s.
pub const DEFAULT_MAX_QUEUED_BYTES: u64 = 64 << 20;
/// Smallest [`LinkEmulation::max_queued_bytes`]: one full GSO batch (64 KiB), or whole batches
/// would always be dropped.
pub const MIN_MAX_QUEUED_BYTES: u64 = 64 << 10;
/// Longest `delay_us + jitter_us` of a link: 5 s, half the QUIC idle timeout, so that
/// handshakes and keep-alives still work across it.
pub const MAX_DELAY_US: u64 = 5_000_000;

/// The `[emulation]` section of `cluster.toml`: emulated links of one cluster. Every key is
/// optional; with no links nothing is emulated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkEmulation {
    /// Seed of the loss and jitter draws; each node mixes in its id, so nodes draw
    /// independently. Default 0. Timing still varies from run to run, so a seed makes the
    /// draws, not the run, repeatable.
    #[serde(default)]
    pub seed: u64,
    /// Most datagrams a node holds back at once, over all its links; past it, datagrams are
    /// dropped and counted in [`EmulationCounters::dropped_queue_full`].
    #[serde(default = "default_max_queued_datagrams")]
    pub max_queued_datagrams: usize,
    /// Most bytes (UDP payload) a node holds back at once, over all its links.
    #[serde(default = "default_max_queued_bytes")]
    pub max_queued_bytes: u64,
    /// One entry per directed link (`[[emulation.links]]`). A pair with no entry is not
    /// emulated.
    #[serde(default)]
    pub links: Vec<Link>,
}

/// `loss` is never NaN in a validated section ([`LinkEmulation::validate`] refuses it), and
/// only NaN breaks the reflexivity of `f64` equality; [`crate::config::ClusterConfig`], which
/// holds this section, is `Eq`.
impl Eq for LinkEmulation {}

fn default_max_queued_datagrams() -> usize {
    DEFAULT_MAX_QUEUED_DATAGRAMS
}

fn default_max_queued_bytes() -> u64 {
    DEFAULT_MAX_QUEUED_BYTES
}

impl Default for LinkEmulation {
    fn default() -> Self {
        LinkEmulation {
            seed: 0,
            max_queued_datagrams: DEFAULT_MAX_QUEUED_DATAGRAMS,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            links: Vec::new(),
        }
    }
}

/// One directed link (`[[emulation.links]]`): what node `from` does to the datagrams it sends
/// to node `to`. The way back is another entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    /// The sending node's id.
    pub from: u32,
    /// The receiving node's id.
    pub to: u32,
    /// One-way delay added to every datagram, microseconds. Default 0. At most
    /// [`MAX_DELAY_US`] with the jitter.
    #[serde(default)]
    pub delay_us: u64,
    /// Each datagram's delay is drawn uniformly from `delay_us ± jitter_us`; needs
    /// `jitter_us <= delay_us`. Default 0. Jitter may reorder datagrams (see the module docs).
    #[serde(default)]
    pub jitter_us: u64,
    /// Probability in `0..=1` that a datagram is dropped. Default 0.
    #[serde(default)]
    pub loss: f64,
    /// Bytes of UDP payload per second the link carries; absent means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_bytes_per_s: Option<u64>,
}

/// See the `Eq` of [`LinkEmulation`].
impl Eq for Link {}

impl Link {
    /// `delay ±jitter, loss, rate` for logs.
    fn describe(&self) -> String {
        let mut s = format!("{} us", self.delay_us);
        if self.jitter_us > 0 {
            s.push_str(&format!(" ±{} us", self.jitter_us));
        }
        if self.loss > 0.0 {
            s.push_str(&format!(", loss {}", self.loss));
        }
        if let Some(r) = self.rate_bytes_per_s {
            s.push_str(&format!(", {r} B/s"));
        }
        s
    }
}

/// Why an `[emulation]` section cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{why}")]
pub struct EmulationError {
    /// The `[[emulation.links]]` entry at fault (0-based, in file order), or `None` for a key
    /// of `[emulation]` itself.
    pub link: Option<usize>,
    /// The key at fault.
    pub key: &'static str,
    /// What is wrong, naming the entry.
    pub why: String,
}

impl EmulationError {
    /// The 1-based line of cluster-file `text` on which the key at fault is assigned: within the
    /// entry's `[[emulation.links]]` table (or `[emulation]`), else the table's header line, else
    /// 0. Finds tables written as headers, not inline tables.
    pub fn line_in(&self, text: &str) -> usize {
        let mut table: Option<Table> = None;
        let mut links_seen = 0;
        let mut header_line = 0;
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.starts_with('[') {
                let name: String = line.chars().filter(|c| !c.is_whitespace()).collect();
                table = match name.as_str() {
                    "[emulation]" => Some(Table::Emulation),
                    "[[emulation.links]]" => {
                        links_seen += 1;
                        Some(Table::Link(links_seen - 1))
                    }
                    _ => None,
                };
                if table == self.table() {
                    header_line = i + 1;
                }
                continue;
            }
            let assigns = line
                .strip_prefix(self.key)
                .is_some_and(|rest| rest.trim_start().starts_with('='));
            if assigns && table == self.table() {
                return i + 1;
            }
        }
        header_line
    }

    fn table(&self) -> Option<Table> {
        Some(self.link.map_or(Table::Emulation, Table::Link))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Table {
    Emulation,
    Link(usize),
}

impl LinkEmulation {
    /// Checks the section against the cluster's node ids: every link joins two different nodes
    /// of the cluster, at most one entry per directed pair, `loss` in `0..=1` (not NaN),
    /// `jitter_us <= delay_us`, `delay_us + jitter_us <= MAX_DELAY_US`, a rate above 0, and
    /// queue bounds that can hold anything.
    pub fn validate(&self, nodes: &[NodeId]) -> Result<(), EmulationError> {
        if self.max_queued_datagrams == 0 {
            return Err(EmulationError {
                link: None,
                key: "max_queued_datagrams",
                why: "max_queued_datagrams must be at least 1".into(),
            });
        }
        if self.max_queued_bytes < MIN_MAX_QUEUED_BYTES {
            return Err(EmulationError {
                link: None,
                key: "max_queued_bytes",
                why: format!(
                    "max_queued_bytes {} is below {MIN_MAX_QUEUED_BYTES}, one GSO batch",
                    self.max_queued_bytes
                ),
            });
        }
        for (i, l) in self.links.iter().enumerate() {
            let fail = |key: &'static str, why: String| EmulationError {
                link: Some(i),
                key,
                why: format!(
                    "[[emulation.links]] #{} ({} -> {}): {why}",
                    i + 1,
                    l.from,
                    l.to
                ),
            };
            for (key, id) in [("from", l.from), ("to", l.to)] {
                if !nodes.contains(&NodeId(id)) {
                    return Err(fail(key, format!("node {id} is not in [[nodes]]")));
                }
            }
            if l.from == l.to {
                return Err(fail("to", "a link joins two different nodes".into()));
            }
            if let Some(j) = self.links[..i]
                .iter()
                .position(|m| (m.from, m.to) == (l.from, l.to))
            {
                return Err(fail(
                    "to",
                    format!("entry #{} already describes this link", j + 1),
                ));
            }
            if !(0.0..=1.0).contains(&l.loss) {
                return Err(fail(
                    "loss",
                    format!("loss {} is not a probability in 0..=1", l.loss),
                ));
            }
            if l.jitter_us > l.delay_us {
                return Err(fail(
                    "jitter_us",
                    format!(
                        "jitter_us {} exceeds delay_us {}: a delay cannot go below 0",
                        l.jitter_us, l.delay_us
                    ),
                ));
            }
            if l.delay_us.saturating_add(l.jitter_us) > MAX_DELAY_US {
                return Err(fail(
                    "delay_us",
                    format!(
                        "delay_us + jitter_us = {} exceeds {MAX_DELAY_US} (5 s; the QUIC idle \
                         timeout is 10 s)",
                        l.delay_us.saturating_add(l.jitter_us)
                    ),
                ));
            }
            if l.rate_bytes_per_s == Some(0) {
                return Err(fail(
                    "rate_bytes_per_s",
                    "a rate of 0 carries nothing; leave the key out for no limit".into(),
                ));
            }
        }
        Ok(())
    }

    /// What node `me` applies to what it sends: its links (`from = me`), each with the address
    /// of its peer in `nodes` (every node of the cluster, `me` included or not; links to a node
    /// not in it are left out), counting into `counters`, impaired through `faults`.
    pub fn for_node(
        &self,
        me: NodeId,
        nodes: &[(NodeId, SocketAddr)],
        counters: Arc<EmulationCounters>,
        faults: Arc<LinkFaults>,
    ) -> NodeEmulation {
        let addr_of = |id: NodeId| nodes.iter().find(|(n, _)| *n == id).map(|&(_, a)| a);
        NodeEmulation {
            node: me,
            links: self
                .links
                .iter()
                .filter(|l| l.from == me.0)
                .filter_map(|l| Some((addr_of(NodeId(l.to))?, l.clone())))
                .collect(),
            peers: nodes.iter().copied().filter(|(n, _)| *n != me).collect(),
            seed: self.seed,
            max_queued_datagrams: self.max_queued_datagrams,
            max_queued_bytes: self.max_queued_bytes,
            counters,
            faults,
        }
    }
}

/// The emulated links of one node, by the address of the peer each leads to; built by
/// [`LinkEmulation::for_node`], handed to [`crate::endpoint`].
#[derive(Clone, Debug)]
pub struct NodeEmulation {
    /// The sending node.
    pub node: NodeId,
    /// Its links (all with `from` = this node), each with its peer's socket address.
    pub links: Vec<(SocketAddr, Link)>,
    /// Every peer, with its address: the links an impairment may name, configured or not.
    pub peers: Vec<(NodeId, SocketAddr)>,
    /// Seed of the draws (this node's id is mixed in).
    pub seed: u64,
    /// Most datagrams held at once.
    pub max_queued_datagrams: usize,
    /// Most bytes held at once.
    pub max_queued_bytes: u64,
    /// Where it counts what it did.
    pub counters: Arc<EmulationCounters>,
    /// Where the runtime sets its impairments; [`NodeEmulation::wrap`] attaches the socket to
    /// it.
    pub faults: Arc<LinkFaults>,
}

impl NodeEmulation {
    /// Whether no link is configured (the node still gets an emulated socket, for faults).
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// Wraps `inner` (the socket quinn's runtime made, `Runtime::wrap_udp_socket`) so that what
    /// it sends to these links is emulated, attaches it to [`NodeEmulation::faults`] (replacing
    /// the socket it had, with no impairment), and spawns the task that releases held
    /// datagrams. Must be called inside a tokio runtime.
    pub fn wrap(self, inner: Arc<dyn AsyncUdpSocket>) -> io::Result<Arc<EmulatedSocket>> {
        let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        // One scheduler link per destination: every peer (unconfigured ones with a zero shape,
        // used only while impaired), then configured links to addresses that are no peer's.
        let mut dests: Vec<(NodeId, SocketAddr, Option<&Link>)> = self
            .peers
            .iter()
            .map(|&(id, addr)| (id, addr, None))
            .collect();
        for (addr, l) in &self.links {
            match dests.iter_mut().find(|(id, _, _)| id.0 == l.to) {
                Some(d) => *d = (d.0, *addr, Some(l)),
                None => dests.push((NodeId(l.to), *addr, Some(l))),
            }
        }
        let routes = dests
            .iter()
            .enumerate()
            .map(|(i, (_, addr, _))| (canonical(*addr), i))
            .collect();
        let mut scheduler = Scheduler::new(
            dests
                .iter()
                .map(|(_, _, l)| l.map_or(Shape::ZERO, Shape::of))
                .collect(),
            mix_seed(self.seed, self.node),
            self.max_queued_datagrams,
            self.max_queued_bytes,
        );
        for (state, (_, _, l)) in scheduler.links.iter_mut().zip(&dests) {
            state.configured = l.is_some();
        }
        let routed = (0..dests.len())
            .map(|i| AtomicBool::new(scheduler.routed(i)))
            .collect();
        let shared = Arc::new(Shared {
            scheduler: Mutex::new(scheduler),
            routed,
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            counters: self.counters,
        });
        let peers = dests
            .iter()
            .enumerate()
            .map(|(i, (id, _, l))| LinkSlot {
                peer: *id,
                link: i,
                configured_delay_us: l.map_or(0, |l| l.delay_us + l.jitter_us),
            })
            .collect();
        self.faults.attach(self.node, peers, &shared);
        runtime.spawn(release(shared.clone(), inner.clone()));
        for (addr, l) in &self.links {
            tracing::info!(
                node = self.node.0, to = l.to, %addr, link = %l.describe(),
                "emulated link"
            );
        }
        if self.links.is_empty() {
            tracing::info!(
                node = self.node.0,
                "no emulated links from this node; its socket is wrapped for faults"
            );
        }
        Ok(Arc::new(EmulatedSocket {
            inner,
            routes,
            shared,
        }))
    }
}

/// Why a node refused an impairment ([`LinkFaults::set`]); it keeps the one it had.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImpairError {
    /// The cluster file has no `[emulation]` section, so the node sends through quinn's socket
    /// as it is and has nothing to impair with.
    #[error(
        "node {} has no emulated link: add an [emulation] section to the cluster file (it may \
         be empty) to impose faults",
        node.0
    )]
    NotEmulated {
        /// The node.
        node: NodeId,
    },
    /// A loss is not a probability, or a peer is listed twice ([`Impairment::check`]).
    #[error("node {}: {why}", node.0)]
    Invalid {
        /// The node.
        node: NodeId,
        /// What is wrong.
        why: String,
    },
    /// The impairment names the node itself.
    #[error("node {} cannot impair a link to itself", node.0)]
    SelfLink {
        /// The node.
        node: NodeId,
    },
    /// The impairment names a node that is not in the cluster.
    #[error("node {} has no peer {} (its peers: {peers})", node.0, peer.0)]
    UnknownPeer {
        /// The node.
        node: NodeId,
        /// The id it does not know.
        peer: NodeId,
        /// Its peers' ids, for the message.
        peers: String,
    },
    /// The extra delay would take the link past [`MAX_DELAY_US`].
    #[error(
        "node {}, link to node {}: extra_delay_us {extra_us} plus the configured delay and \
         jitter of {configured_us} us exceeds {MAX_DELAY_US} (5 s; the QUIC idle timeout is \
         10 s: block the link instead)",
        node.0,
        peer.0
    )]
    DelayTooLong {
        /// The node.
        node: NodeId,
        /// The peer.
        peer: NodeId,
        /// The extra delay asked for.
        extra_us: u64,
        /// The configured `delay_us + jitter_us` of the link.
        configured_us: u64,
    },
}

/// The runtime side of a node's impairments: the runtime hands every accepted
/// [`wire::ClientFrame::Impair`] to [`LinkFaults::set`], and reads back [`LinkFaults::current`]
/// for its status. It lives in [`crate::runtime::Metrics`]; the emulated socket attaches to it
/// when [`NodeEmulation::wrap`] builds it, so a node without `[emulation]` has an unattached
/// one and refuses impairments. Changing impairments takes a mutex; sending does not (see the
/// module docs, [Cost](self#cost)).
#[derive(Debug, Default)]
pub struct LinkFaults {
    attached: Mutex<Option<Attached>>,
}

#[derive(Debug)]
struct Attached {
    node: NodeId,
    /// Every link of the socket, by peer.
    peers: Vec<LinkSlot>,
    shared: Weak<Shared>,
    current: Impairment,
}

#[derive(Debug)]
struct LinkSlot {
    peer: NodeId,
    /// The scheduler's link index.
    link: usize,
    /// `delay_us + jitter_us` of the configured link, 0 for none.
    configured_delay_us: u64,
}

impl LinkFaults {
    fn attach(&self, node: NodeId, peers: Vec<LinkSlot>, shared: &Arc<Shared>) {
        *self.attached.lock().unwrap_or_else(|e| e.into_inner()) = Some(Attached {
            node,
            peers,
            shared: Arc::downgrade(shared),
            current: Impairment::none(),
        });
    }

    /// The impairment in force, or `None` if the node has no emulated socket (or it is gone).
    pub fn current(&self) -> Option<Impairment> {
        let attached = self.attached.lock().unwrap_or_else(|e| e.into_inner());
        let a = attached.as_ref()?;
        a.shared.upgrade()?;
        Some(a.current.clone())
    }

    /// Replaces node `me`'s whole impairment with `impairment` (empty: lift every fault), for
    /// the datagrams it sends from now on; what links already hold keeps its release time. On
    /// error nothing changes. `me` names the node in the error when it has no emulated socket.
    pub fn set(&self, me: NodeId, impairment: &Impairment) -> Result<(), ImpairError> {
        let mut attached = self.attached.lock().unwrap_or_else(|e| e.into_inner());
        let Some((a, shared)) = attached
            .as_mut()
            .and_then(|a| a.shared.upgrade().map(|s| (a, s)))
        else {
            return Err(ImpairError::NotEmulated { node: me });
        };
        let node = a.node;
        impairment
            .check()
            .map_err(|why| ImpairError::Invalid { node, why })?;
        for (peer, l) in &impairment.links {
            if *peer == node {
                return Err(ImpairError::SelfLink { node });
            }
            let Some(slot) = a.peers.iter().find(|s| s.peer == *peer) else {
                let ids: Vec<String> = a.peers.iter().map(|s| s.peer.0.to_string()).collect();
                return Err(ImpairError::UnknownPeer {
                    node,
                    peer: *peer,
                    peers: ids.join(", "),
                });
            };
            if l.extra_delay_us.saturating_add(slot.configured_delay_us) > MAX_DELAY_US {
                return Err(ImpairError::DelayTooLong {
                    node,
                    peer: *peer,
                    extra_us: l.extra_delay_us,
                    configured_us: slot.configured_delay_us,
                });
            }
        }
        {
            let mut s = shared.scheduler.lock().unwrap_or_else(|e| e.into_inner());
            for slot in &a.peers {
                let fault = impairment.link(slot.peer).map_or(Fault::NONE, Fault::of);
                s.links[slot.link].fault = fault;
                shared.refresh(&s, slot.link);
            }
        }
        if impairment.is_empty() {
            tracing::info!(node = node.0, "impairments lifted");
        } else {
            tracing::info!(node = node.0, impairment = %describe(impairment), "impairments set");
        }
        a.current = impairment.clone();
        Ok(())
    }
}

/// `1: blocked; 2: +20000 us, loss 0.1` for logs.
fn describe(imp: &Impairment) -> String {
    let links: Vec<String> = imp
        .links
        .iter()
        .filter(|(_, l)| !l.is_none())
        .map(|(peer, l)| {
            let mut parts = Vec::new();
            if l.blocked {
                parts.push("blocked".to_string());
            }
            if l.extra_delay_us > 0 {
                parts.push(format!("+{} us", l.extra_delay_us));
            }
            if l.loss > 0.0 {
                parts.push(format!("loss {}", l.loss));
            }
            format!("{}: {}", peer.0, parts.join(", "))
        })
        .collect();
    links.join("; ")
}

/// What every node must be told for the nodes to split into `groups`: each node blocks every
/// node of the other groups, and nothing else. Nodes in no group are left out (and stay
/// connected to everyone). To isolate node `n` from the rest: `partition(&[&[n], &rest])`.
/// Lift it by sending each of these nodes [`Impairment::none`].
pub fn partition(groups: &[&[NodeId]]) -> Vec<(NodeId, Impairment)> {
    let mut out = Vec::new();
    for (g, group) in groups.iter().enumerate() {
        let others: Vec<NodeId> = groups
            .iter()
            .enumerate()
            .filter(|&(h, _)| h != g)
            .flat_map(|(_, nodes)| nodes.iter().copied())
            .collect();
        for &node in group.iter() {
            out.push((
                node,
                Impairment::to_each(others.iter().copied(), LinkImpairment::BLOCKED),
            ));
        }
    }
    out
}

/// What a node's emulated links did, counted since it started. Datagrams, not transmits: a
/// GSO transmit of 10 segments counts 10. Datagrams to peers with neither rule nor impairment
/// are not counted.
#[derive(Debug, Default)]
pub struct EmulationCounters {
    /// Datagrams accepted onto an emulated link, to be released after their delay (zero
    /// included).
    pub delayed: AtomicU64,
    /// Datagrams handed to the socket after their delay.
    pub released: AtomicU64,
    /// Datagrams dropped by the configured (`[emulation]`) loss.
    pub dropped_loss: AtomicU64,
    /// Datagrams dropped by an impairment: all those to a blocked peer, and those the
    /// impairment's loss drew.
    pub dropped_fault: AtomicU64,
    /// Datagrams dropped because the queue of held datagrams was full (not emulated loss).
    pub dropped_queue_full: AtomicU64,
    /// Datagrams the socket refused when they were released (lost).
    pub send_errors: AtomicU64,
}

/// A copy of [`EmulationCounters`] at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EmulationStats {
    /// See [`EmulationCounters::delayed`].
    pub delayed: u64,
    /// See [`EmulationCounters::released`].
    pub released: u64,
    /// See [`EmulationCounters::dropped_loss`].
    pub dropped_loss: u64,
    /// See [`EmulationCounters::dropped_fault`].
    pub dropped_fault: u64,
    /// See [`EmulationCounters::dropped_queue_full`].
    pub dropped_queue_full: u64,
    /// See [`EmulationCounters::send_errors`].
    pub send_errors: u64,
}

impl EmulationCounters {
    /// The counters now.
    pub fn snapshot(&self) -> EmulationStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        EmulationStats {
            delayed: get(&self.delayed),
            released: get(&self.released),
            dropped_loss: get(&self.dropped_loss),
            dropped_fault: get(&self.dropped_fault),
            dropped_queue_full: get(&self.dropped_queue_full),
            send_errors: get(&self.send_errors),
        }
    }
}

/// An [`AsyncUdpSocket`] that emulates links on what it sends (see the module docs). Build it
/// with [`NodeEmulation::wrap`].
pub struct EmulatedSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    /// Peer address (canonical form) to link index. A few entries: a scan beats hashing.
    routes: Vec<(SocketAddr, usize)>,
    shared: Arc<Shared>,
}

struct Shared {
    scheduler: Mutex<Scheduler>,
    /// Per link, [`Scheduler::routed`]: whether its datagrams go through the scheduler. Written
    /// only with the scheduler locked, after every change of what it answers; read without the
    /// lock by `try_send`, so that an unconfigured, unimpaired peer costs one load.
    routed: Box<[AtomicBool]>,
    /// Wakes the release task when a datagram is due earlier than it sleeps, or on close.
    wake: Notify,
    closed: AtomicBool,
    counters: Arc<EmulationCounters>,
}

impl Shared {
    /// Publishes whether link `link` goes through the scheduler `s` (which must be this one's,
    /// locked).
    fn refresh(&self, s: &Scheduler, link: usize) {
        self.routed[link].store(s.routed(link), Ordering::Release);
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("links", &self.routed.len())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for EmulatedSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatedSocket")
            .field("inner", &self.inner)
            .field("links", &self.routes.len())
            .finish_non_exhaustive()
    }
}

impl Drop for EmulatedSocket {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.wake.notify_one();
    }
}

/// IPv4-mapped IPv6 addresses as IPv4, so either spelling of a peer matches its rule.
fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

impl EmulatedSocket {
    fn route(&self, destination: SocketAddr) -> Option<usize> {
        let destination = canonical(destination);
        self.routes
            .iter()
            .find(|(addr, _)| *addr == destination)
            .map(|&(_, link)| link)
    }

    /// What the links did so far.
    pub fn stats(&self) -> EmulationStats {
        self.shared.counters.snapshot()
    }
}

impl AsyncUdpSocket for EmulatedSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        // quinn polls before every send; emulated sends never wait, passthrough ones wait for
        // the inner socket.
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        let Some(link) = self.route(transmit.destination) else {
            return self.inner.try_send(transmit);
        };
        // A peer with no rule, no impairment and nothing held: as if unwrapped.
        if !self.shared.routed[link].load(Ordering::Acquire) {
            return self.inner.try_send(transmit);
        }
        let now = tokio::time::Instant::now().into_std();
        let (offered, sent, send_errors, earlier) = {
            let mut s = self
                .shared
                .scheduler
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let before = s.next_release();
            let mut offered = s.offer(now, link, transmit);
            let (mut sent, mut send_errors) = (0, 0);
            if let Some(direct) = offered.direct.take() {
                // Sent with the lock held, so that nothing offered to this link meanwhile can
                // leave before it.
                let contents = direct.contents.as_deref().unwrap_or(transmit.contents);
                let now_transmit = Transmit {
                    destination: transmit.destination,
                    ecn: transmit.ecn,
                    contents,
                    segment_size: direct.segment_size,
                    src_ip: transmit.src_ip,
                };
                match self.inner.try_send(&now_transmit) {
                    Ok(()) => sent = direct.datagrams,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        // Not writable: the release task sends it as soon as it is.
                        if s.fits(direct.datagrams, contents.len()) {
                            let at = s.release_time(link, now, 0);
                            let contents = contents.to_vec();
                            s.hold(at, link, &now_transmit, direct.datagrams, contents);
                            offered.queued += direct.datagrams;
                        } else {
                            offered.over_limit += direct.datagrams;
                        }
                    }
                    Err(e) => {
                        tracing::debug!(destination = %transmit.destination, error = %e, "emulated send failed");
                        send_errors = direct.datagrams;
                    }
                }
            }
            self.shared.refresh(&s, link);
            let after = s.next_release();
            (
                offered,
                sent,
                send_errors,
                after.is_some() && (before.is_none() || after < before),
            )
        };
        let c = &self.shared.counters;
        let add = |counter: &AtomicU64, n: u64| {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        };
        add(&c.delayed, offered.queued + sent + send_errors);
        add(&c.released, sent);
        add(&c.send_errors, send_errors);
        add(&c.dropped_loss, offered.lost);
        add(&c.dropped_fault, offered.faulted);
        add(&c.dropped_queue_full, offered.over_limit);
        if earlier {
            self.shared.wake.notify_one();
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_recv(cx, bufs, meta)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

/// Releases held datagrams when they are due, until the socket is dropped.
async fn release(shared: Arc<Shared>, inner: Arc<dyn AsyncUdpSocket>) {
    let mut poller = inner.clone().create_io_poller();
    let mut due = Vec::new();
    while !shared.closed.load(Ordering::Acquire) {
        let now = tokio::time::Instant::now().into_std();
        let next = {
            let mut s = shared.scheduler.lock().unwrap_or_else(|e| e.into_inner());
            while let Some(held) = s.pop_due(now) {
                due.push(held);
            }
            s.next_release()
        };
        if !due.is_empty() {
            for held in &due {
                send(&*inner, &mut poller, held, &shared).await;
            }
            // Only now are they gone: until here a new datagram to their link must queue
            // behind them rather than go straight out.
            let mut s = shared.scheduler.lock().unwrap_or_else(|e| e.into_inner());
            for held in due.drain(..) {
                s.done(held.link);
                shared.refresh(&s, held.link);
            }
        }
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = shared.wake.notified() => {}
                }
            }
            None => shared.wake.notified().await,
        }
    }
}

/// Sends one held transmit, waiting for the socket to be writable if it must.
async fn send(
    inner: &dyn AsyncUdpSocket,
    poller: &mut Pin<Box<dyn UdpPoller>>,
    held: &Held,
    shared: &Shared,
) {
    let transmit = Transmit {
        destination: held.destination,
        ecn: held.ecn,
        contents: &held.contents,
        segment_size: held.segment_size,
        src_ip: held.src_ip,
    };
    let counters = &shared.counters;
    loop {
        match inner.try_send(&transmit) {
            Ok(()) => {
                counters
                    .released
                    .fetch_add(held.datagrams, Ordering::Relaxed);
                return;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let writable = poll_fn(|cx| poller.as_mut().poll_writable(cx)).await;
                if writable.is_err() || shared.closed.load(Ordering::Acquire) {
                    counters
                        .send_errors
                        .fetch_add(held.datagrams, Ordering::Relaxed);
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(destination = %held.destination, error = %e, "emulated send failed");
                counters
                    .send_errors
                    .fetch_add(held.datagrams, Ordering::Relaxed);
                return;
            }
        }
    }
}

/// A link's parameters in the units the scheduler works in.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Shape {
    delay: Duration,
    jitter: Duration,
    loss: f64,
    rate_bytes_per_s: Option<u64>,
}

impl Shape {
    /// A peer with no configured link.
    const ZERO: Shape = Shape {
        delay: Duration::ZERO,
        jitter: Duration::ZERO,
        loss: 0.0,
        rate_bytes_per_s: None,
    };

    fn of(l: &Link) -> Shape {
        Shape {
            delay: Duration::from_micros(l.delay_us),
            jitter: Duration::from_micros(l.jitter_us),
            loss: l.loss,
            rate_bytes_per_s: l.rate_bytes_per_s.filter(|&r| r > 0),
        }
    }
}

/// An impairment of one link in the units the scheduler works in.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Fault {
    blocked: bool,
    extra_delay: Duration,
    loss: f64,
}

impl Fault {
    const NONE: Fault = Fault {
        blocked: false,
        extra_delay: Duration::ZERO,
        loss: 0.0,
    };

    fn of(l: &LinkImpairment) -> Fault {
        Fault {
            blocked: l.blocked,
            extra_delay: Duration::from_micros(l.extra_delay_us),
            loss: l.loss,
        }
    }

    fn is_none(&self) -> bool {
        *self == Fault::NONE
    }
}

/// One link's state between datagrams.
struct LinkState {
    shape: Shape,
    /// Whether `[emulation]` configures this link (else its shape is zero and only faults
    /// bring datagrams here).
    configured: bool,
    /// The impairment in force.
    fault: Fault,
    /// When the datagram serializing last finishes (rate-limited links).
    busy_until: Option<Instant>,
    /// The latest release time given out: without jitter none is earlier (order).
    last_release: Option<Instant>,
    /// Transmits held, or popped and not yet sent ([`Scheduler::done`]).
    held: usize,
}

/// A transmit (one or more datagrams) held until `at`.
struct Held {
    at: Instant,
    /// Ties in `at` leave in the order they arrived.
    seq: u64,
    /// The link's index.
    link: usize,
    destination: SocketAddr,
    ecn: Option<EcnCodepoint>,
    src_ip: Option<IpAddr>,
    segment_size: Option<usize>,
    datagrams: u64,
    contents: Vec<u8>,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Held {}

impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// What became of the datagrams of one transmit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Offered {
    /// Held, to be released later.
    queued: u64,
    /// Dropped by the configured loss.
    lost: u64,
    /// Dropped by the impairment: blocked, or its loss.
    faulted: u64,
    /// Dropped because the queue is full.
    over_limit: u64,
    /// To be sent at once by the caller: the link adds no time and holds nothing.
    direct: Option<Direct>,
}

/// Datagrams of a transmit to send now.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Direct {
    /// The survivors, or `None` for all of the transmit's contents.
    contents: Option<Vec<u8>>,
    segment_size: Option<usize>,
    datagrams: u64,
}

/// The decisions of [`EmulatedSocket`], with no socket and no clock (time is passed in): which
/// datagrams are lost, which exceed the queue, and when each of the others is released.
struct Scheduler {
    links: Vec<LinkState>,
    held: BinaryHeap<Reverse<Held>>,
    held_datagrams: usize,
    held_bytes: u64,
    max_datagrams: usize,
    max_bytes: u64,
    rng: SplitMix64,
    next_seq: u64,
}

impl Scheduler {
    fn new(shapes: Vec<Shape>, seed: u64, max_datagrams: usize, max_bytes: u64) -> Self {
        Scheduler {
            links: shapes
                .into_iter()
                .map(|shape| LinkState {
                    shape,
                    configured: true,
                    fault: Fault::NONE,
                    busy_until: None,
                    last_release: None,
                    held: 0,
                })
                .collect(),
            held: BinaryHeap::new(),
            held_datagrams: 0,
            held_bytes: 0,
            max_datagrams,
            max_bytes,
            rng: SplitMix64(seed),
            next_seq: 0,
        }
    }

    /// Decides the fate of every datagram of `t`, sent at `now` on link `link`.
    fn offer(&mut self, now: Instant, link: usize, t: &Transmit<'_>) -> Offered {
        let LinkState { shape, fault, .. } = self.links[link];
        let segment = t.segment_size.unwrap_or(t.contents.len()).max(1);
        let mut out = Offered::default();
        if fault.blocked {
            out.faulted = t.contents.chunks(segment).count() as u64;
            return out;
        }
        // One draw per transmit: its datagrams leave the sender back to back.
        let jitter = self.draw_jitter(shape.jitter);
        match shape.rate_bytes_per_s {
            None => {
                // The survivors, copied once the first datagram is lost; `None` while all are.
                let mut kept: Option<Vec<u8>> = None;
                let mut n = 0u64;
                for (i, datagram) in t.contents.chunks(segment).enumerate() {
                    if self.drop(shape, fault, &mut out) {
                        kept.get_or_insert_with(|| {
                            let mut k = Vec::with_capacity(t.contents.len());
                            k.extend_from_slice(&t.contents[..i * segment]);
                            k
                        });
                    } else {
                        if let Some(k) = &mut kept {
                            k.extend_from_slice(datagram);
                        }
                        n += 1;
                    }
                }
                if n == 0 {
                    return out;
                }
                // The kept segments are full-size but possibly the last: still a valid batch.
                let segment_size = (n > 1).then_some(segment);
                let instant = shape.delay.is_zero()
                    && shape.jitter.is_zero()
                    && fault.extra_delay.is_zero()
                    && self.links[link].held == 0;
                if instant {
                    out.direct = Some(Direct {
                        contents: kept,
                        segment_size,
                        datagrams: n,
                    });
                    return out;
                }
                let kept = kept.unwrap_or_else(|| t.contents.to_vec());
                if !self.fits(n, kept.len()) {
                    out.over_limit += n;
                    return out;
                }
                let at = self.release_time(link, now, jitter);
                let held = Transmit { segment_size, ..*t };
                self.hold(at, link, &held, n, kept);
                out.queued += n;
            }
            Some(rate) => {
                for datagram in t.contents.chunks(segment) {
                    if self.drop(shape, fault, &mut out) {
                        continue;
                    }
                    if !self.fits(1, datagram.len()) {
                        out.over_limit += 1;
                        continue;
                    }
                    let done = self.serialize(link, now, datagram.len(), rate);
                    let at = self.release_time(link, done, jitter);
                    let held = Transmit {
                        segment_size: None,
                        ..*t
                    };
                    self.hold(at, link, &held, 1, datagram.to_vec());
                    out.queued += 1;
                }
            }
        }
        out
    }

    /// Draws whether one datagram is lost: first to the configured loss, then, independently,
    /// to the impairment's; counts it in `out`.
    fn drop(&mut self, shape: Shape, fault: Fault, out: &mut Offered) -> bool {
        if self.lose(shape.loss) {
            out.lost += 1;
            true
        } else if self.lose(fault.loss) {
            out.faulted += 1;
            true
        } else {
            false
        }
    }

    /// Whether datagrams to `link` must come here: it is configured, impaired, or holds some
    /// (which later ones must not overtake).
    fn routed(&self, link: usize) -> bool {
        let l = &self.links[link];
        l.configured || !l.fault.is_none() || l.held > 0
    }

    /// A held transmit of `link`, popped by [`Scheduler::pop_due`], was sent (or given up).
    fn done(&mut self, link: usize) {
        let l = &mut self.links[link];
        l.held = l.held.saturating_sub(1);
    }

    /// The next held transmit due at `now`, if any.
    fn pop_due(&mut self, now: Instant) -> Option<Held> {
        if self.held.peek()?.0.at > now {
            return None;
        }
        let Reverse(held) = self.held.pop()?;
        self.held_datagrams -= held.datagrams as usize;
        self.held_bytes -= held.contents.len() as u64;
        Some(held)
    }

    /// When the earliest held transmit is due.
    fn next_release(&self) -> Option<Instant> {
        self.held.peek().map(|h| h.0.at)
    }

    fn fits(&self, datagrams: u64, bytes: usize) -> bool {
        self.held_datagrams + datagrams as usize <= self.max_datagrams
            && self.held_bytes + bytes as u64 <= self.max_bytes
    }

    fn lose(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.unit() < p
    }

    /// A signed offset uniform in `[-jitter, +jitter]`, in nanoseconds.
    fn draw_jitter(&mut self, jitter: Duration) -> i64 {
        let j = jitter.as_nanos().min(i64::MAX as u128 / 2) as u64;
        if j == 0 {
            return 0;
        }
        self.rng.below(2 * j + 1) as i64 - j as i64
    }

    /// When a datagram of `len` bytes arriving at `now` finishes serializing at `rate`.
    fn serialize(&mut self, link: usize, now: Instant, len: usize, rate: u64) -> Instant {
        let state = &mut self.links[link];
        let start = state.busy_until.map_or(now, |b| b.max(now));
        let nanos = (len as u128 * 1_000_000_000).div_ceil(u128::from(rate));
        let done = start + Duration::from_nanos(nanos.min(u64::MAX as u128) as u64);
        state.busy_until = Some(done);
        done
    }

    /// `base + delay + extra delay + jitter`, never before `base`; without jitter, never before
    /// the link's previous release either, so that a delay that shrinks (a lifted fault)
    /// reorders nothing.
    fn release_time(&mut self, link: usize, base: Instant, jitter_ns: i64) -> Instant {
        let l = &mut self.links[link];
        let delay = l.shape.delay + l.fault.extra_delay;
        let offset = Duration::from_nanos(jitter_ns.unsigned_abs());
        // jitter <= delay (validated); saturating all the same.
        let d = if jitter_ns >= 0 {
            delay + offset
        } else {
            delay.saturating_sub(offset)
        };
        let mut at = base + d;
        if l.shape.jitter.is_zero() {
            at = l.last_release.map_or(at, |last| at.max(last));
        }
        l.last_release = Some(l.last_release.map_or(at, |last| at.max(last)));
        at
    }

    /// Holds `contents` (`datagrams` of `t`'s segment size) for link `link` until `at`.
    fn hold(
        &mut self,
        at: Instant,
        link: usize,
        t: &Transmit<'_>,
        datagrams: u64,
        contents: Vec<u8>,
    ) {
        self.held_datagrams += datagrams as usize;
        self.held_bytes += contents.len() as u64;
        self.links[link].held += 1;
        self.next_seq += 1;
        self.held.push(Reverse(Held {
            at,
            seq: self.next_seq,
            link,
            destination: t.destination,
            ecn: t.ecn,
            src_ip: t.src_ip,
            segment_size: t.segment_size,
            datagrams,
            contents,
        }));
    }
}

/// Mixes a node id into the section's seed, so every node draws its own sequence.
fn mix_seed(seed: u64, node: NodeId) -> u64 {
    let mut m = SplitMix64(seed ^ u64::from(node.0).wrapping_mul(0xA24B_AED4_963E_E407));
    m.next()
}

/// splitmix64 (Steele, Lea and Flood): small, fast, and good enough for loss and jitter draws.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[0, n)` (`n > 0`), by multiply-and-shift; its bias is below 2^-64 · n.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEST: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 7001);

    fn shape(delay_ms: u64, jitter_ms: u64, loss: f64, rate: Option<u64>) -> Shape {
        Shape {
            delay: Duration::from_millis(delay_ms),
            jitter: Duration::from_millis(jitter_ms),
            loss,
            rate_bytes_per_s: rate,
        }
    }

    fn one(shape: Shape) -> Scheduler {
        Scheduler::new(vec![shape], 1, 1 << 20, 1 << 30)
    }

    fn transmit(contents: &[u8], segment_size: Option<usize>) -> Transmit<'_> {
        Transmit {
            destination: DEST,
            ecn: None,
            contents,
            segment_size,
            src_ip: None,
        }
    }

    /// Everything held, in release order, as the release task would send it.
    fn drain(s: &mut Scheduler) -> Vec<Held> {
        let mut out = Vec::new();
        while let Some(h) = s.pop_due(Instant::now() + Duration::from_secs(3600)) {
            s.done(h.link);
            out.push(h);
        }
        out
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_datagram_is_held_for_exactly_its_delay() {
        let mut s = one(shape(20, 0, 0.0, None));
        let t0 = Instant::now();
        let offered = s.offer(t0, 0, &transmit(b"hello", None));
        assert_eq!(
            offered,
            Offered {
                queued: 1,
                ..Offered::default()
            }
        );
        assert_eq!(s.next_release(), Some(t0 + 20 * MS));
        assert!(s.pop_due(t0 + 19 * MS).is_none(), "released early");
        let h = s.pop_due(t0 + 20 * MS).expect("due");
        assert_eq!(h.contents, b"hello");
        assert_eq!(
            (h.destination, h.segment_size, h.datagrams),
            (DEST, None, 1)
        );
        assert!(s.pop_due(t0 + 1000 * MS).is_none());
        assert_eq!((s.held_datagrams, s.held_bytes), (0, 0));
    }

    /// A GSO batch of 10 full segments and a short tail, half of them lost: the survivors stay
    /// one batch, in order, full-size but the last, all released at the same instant.
    #[test]
    fn survivors_of_a_gso_batch_stay_one_valid_batch() {
        let mut contents = Vec::new();
        for i in 0..10u8 {
            contents.extend(std::iter::repeat_n(i, 100));
        }
        contents.extend(std::iter::repeat_n(10u8, 40));
        for seed in 0..50 {
            let mut s = Scheduler::new(vec![shape(5, 0, 0.5, None)], seed, 1 << 20, 1 << 30);
            let t0 = Instant::now();
            let offered = s.offer(t0, 0, &transmit(&contents, Some(100)));
            assert_eq!(offered.queued + offered.lost, 11);
            let held = drain(&mut s);
            if offered.queued == 0 {
                assert!(held.is_empty());
                continue;
            }
            assert_eq!(held.len(), 1, "one transmit");
            let h = &held[0];
            assert_eq!(h.datagrams, offered.queued);
            assert_eq!(h.at, t0 + 5 * MS);
            assert_eq!(
                h.segment_size,
                (offered.queued > 1).then_some(100),
                "seed {seed}"
            );
            let segments: Vec<&[u8]> = h.contents.chunks(100).collect();
            assert_eq!(segments.len() as u64, offered.queued);
            let mut last_tag = None;
            for (k, seg) in segments.iter().enumerate() {
                let tag = seg[0];
                assert!(seg.iter().all(|&b| b == tag), "a segment was cut");
                assert!(last_tag < Some(tag), "segments reordered or repeated");
                last_tag = Some(tag);
                let full = seg.len() == 100;
                assert!(
                    full || (tag == 10 && k == segments.len() - 1),
                    "only the original tail may be short"
                );
            }
        }
    }

    #[test]
    fn a_rate_limit_paces_datagrams_one_serialization_time_apart() {
        // 1000 bytes at 1 MB/s: 1 ms each, then 5 ms of delay.
        let mut s = one(shape(5, 0, 0.0, Some(1_000_000)));
        let t0 = Instant::now();
        let batch = vec![0u8; 10_000];
        let offered = s.offer(t0, 0, &transmit(&batch, Some(1000)));
        assert_eq!(offered.queued, 10);
        let held = drain(&mut s);
        let times: Vec<Duration> = held.iter().map(|h| h.at - t0).collect();
        let expected: Vec<Duration> = (1..=10).map(|k| (5 + k) * MS).collect();
        assert_eq!(times, expected);
        assert!(held
            .iter()
            .all(|h| h.datagrams == 1 && h.segment_size.is_none()));
        // A link that went idle starts serializing at once: 8 ms after the backlog cleared.
        let later = t0 + 18 * MS;
        s.offer(later, 0, &transmit(&[0; 500], None));
        assert_eq!(s.next_release(), Some(later + 5 * MS + MS / 2));
    }

    #[test]
    fn jitter_spreads_delays_uniformly_and_reorders_only_within_its_span() {
        let mut s = one(shape(10, 5, 0.0, None));
        let t0 = Instant::now();
        let mut sent = Vec::new();
        for i in 0..2000u32 {
            let at = t0 + Duration::from_micros(100 * u64::from(i));
            s.offer(at, 0, &transmit(&i.to_be_bytes(), None));
            sent.push(at);
        }
        let held = drain(&mut s);
        assert_eq!(held.len(), 2000);
        let mut above = 0;
        let mut overtakes = 0;
        let mut highest = 0;
        for h in &held {
            let i = u32::from_be_bytes(h.contents[..].try_into().unwrap());
            let d = h.at - sent[i as usize];
            assert!(
                (5 * MS..=15 * MS).contains(&d),
                "delay {d:?} outside 10 ± 5 ms"
            );
            above += usize::from(d > 10 * MS);
            // A datagram leaving after a later one was sent at most 2 x jitter after it.
            if i < highest {
                overtakes += 1;
                let gap = sent[highest as usize] - sent[i as usize];
                assert!(gap <= 10 * MS, "overtaken by one sent {gap:?} later");
            }
            highest = highest.max(i);
        }
        assert!(
            (850..1150).contains(&above),
            "{above} of 2000 above the mean delay"
        );
        assert!(
            overtakes > 0,
            "jitter of ±5 ms, 0.1 ms apart: some must overtake"
        );
        // Without jitter, nothing is reordered.
        let mut s = one(shape(10, 0, 0.0, None));
        for (i, at) in sent.iter().enumerate() {
            s.offer(*at, 0, &transmit(&(i as u32).to_be_bytes(), None));
        }
        let order: Vec<_> = drain(&mut s).iter().map(|h| h.contents.clone()).collect();
        let sorted: Vec<_> = (0..2000u32).map(|i| i.to_be_bytes().to_vec()).collect();
        assert_eq!(order, sorted);
    }

    #[test]
    fn loss_drops_its_share_of_datagrams() {
        for p in [0.0, 0.05, 0.1, 1.0] {
            let mut s = Scheduler::new(vec![shape(1, 0, p, None)], 99, 1 << 30, 1 << 40);
            let t0 = Instant::now();
            let mut lost = 0;
            for _ in 0..20_000 {
                lost += s.offer(t0, 0, &transmit(b"x", None)).lost;
            }
            let share = lost as f64 / 20_000.0;
            assert!((share - p).abs() < 0.01, "loss {p}: dropped {share}");
        }
    }

    #[test]
    fn the_queue_is_bounded_and_its_drops_are_not_loss() {
        let mut s = Scheduler::new(vec![shape(10, 0, 0.0, Some(1000))], 1, 3, 1 << 20);
        let t0 = Instant::now();
        let mut total = Offered::default();
        for _ in 0..5 {
            let o = s.offer(t0, 0, &transmit(&[0; 100], None));
            total.queued += o.queued;
            total.lost += o.lost;
            total.over_limit += o.over_limit;
        }
        assert_eq!(
            total,
            Offered {
                queued: 3,
                over_limit: 2,
                ..Offered::default()
            }
        );
        // Dropped datagrams took no link time: the third finishes 300 ms in, the next 400.
        let held = drain(&mut s);
        assert_eq!(held.last().unwrap().at, t0 + 310 * MS);
        s.offer(t0, 0, &transmit(&[0; 100], None));
        assert_eq!(s.next_release(), Some(t0 + 410 * MS));

        // The byte bound: a batch that does not fit is dropped whole.
        let mut s = Scheduler::new(vec![shape(10, 0, 0.0, None)], 1, 100, 2500);
        assert_eq!(s.offer(t0, 0, &transmit(&[0; 2000], Some(1000))).queued, 2);
        let o = s.offer(t0, 0, &transmit(&[0; 1000], None));
        assert_eq!((o.queued, o.over_limit), (0, 1));
        assert_eq!(s.offer(t0, 0, &transmit(&[0; 500], None)).queued, 1);
        assert_eq!(s.held_bytes, 2500);
    }

    #[test]
    fn each_link_keeps_its_own_schedule() {
        let mut s = Scheduler::new(
            vec![shape(40, 0, 0.0, None), shape(5, 0, 0.0, None)],
            1,
            100,
            1 << 20,
        );
        let t0 = Instant::now();
        s.offer(t0, 0, &transmit(b"far", None));
        s.offer(t0, 1, &transmit(b"near", None));
        let held = drain(&mut s);
        let got: Vec<(&[u8], Duration)> =
            held.iter().map(|h| (&h.contents[..], h.at - t0)).collect();
        assert_eq!(got, vec![(&b"near"[..], 5 * MS), (&b"far"[..], 40 * MS)]);
    }

    fn link(from: u32, to: u32) -> Link {
        Link {
            from,
            to,
            delay_us: 20_000,
            jitter_us: 0,
            loss: 0.0,
            rate_bytes_per_s: None,
        }
    }

    #[test]
    fn validation_names_the_entry_and_key() {
        let nodes = [NodeId(0), NodeId(1), NodeId(2)];
        let check = |links: Vec<Link>| {
            LinkEmulation {
                links,
                ..LinkEmulation::default()
            }
            .validate(&nodes)
        };
        assert_eq!(check(vec![link(0, 1), link(1, 0), link(2, 0)]), Ok(()));
        let bad = |l: Link| check(vec![link(0, 1), l]).unwrap_err();
        let e = bad(Link {
            loss: 1.5,
            ..link(1, 0)
        });
        assert_eq!((e.link, e.key), (Some(1), "loss"));
        assert!(
            e.why.contains("#2 (1 -> 0)") && e.why.contains("1.5"),
            "{e}"
        );
        assert_eq!(
            bad(Link {
                loss: f64::NAN,
                ..link(1, 0)
            })
            .key,
            "loss"
        );
        assert_eq!(
            bad(Link {
                loss: -0.1,
                ..link(1, 0)
            })
            .key,
            "loss"
        );
        assert_eq!(bad(link(1, 3)).key, "to");
        assert_eq!(bad(link(7, 1)).key, "from");
        assert_eq!(bad(link(1, 1)).key, "to");
        let e = bad(link(0, 1));
        assert!(e.why.contains("#1 already"), "{e}");
        let e = bad(Link {
            jitter_us: 30_000,
            ..link(1, 0)
        });
        assert_eq!(e.key, "jitter_us");
        let e = bad(Link {
            delay_us: MAX_DELAY_US,
            jitter_us: 1,
            ..link(1, 0)
        });
        assert_eq!(e.key, "delay_us");
        let e = bad(Link {
            rate_bytes_per_s: Some(0),
            ..link(1, 0)
        });
        assert_eq!(e.key, "rate_bytes_per_s");
        let e = LinkEmulation {
            max_queued_bytes: 1000,
            ..LinkEmulation::default()
        }
        .validate(&nodes)
        .unwrap_err();
        assert_eq!((e.link, e.key), (None, "max_queued_bytes"));
    }

    #[test]
    fn errors_find_their_line_in_the_entry() {
        let text = "\
protocol = \"multi-paxos\"
loss = 3

[emulation]
seed = 1

[[emulation.links]]
from = 0
to = 1
loss = 0.5

[[ emulation.links ]]   # the second
from = 1
to = 0

[[nodes]]
id = 0
";
        let at = |link, key| EmulationError {
            link,
            key,
            why: String::new(),
        };
        assert_eq!(at(Some(0), "loss").line_in(text), 10);
        assert_eq!(at(Some(1), "to").line_in(text), 14);
        // A key the entry does not write: its header.
        assert_eq!(at(Some(1), "loss").line_in(text), 12);
        assert_eq!(at(None, "seed").line_in(text), 5);
        assert_eq!(at(None, "max_queued_bytes").line_in(text), 4);
        assert_eq!(at(Some(5), "to").line_in(text), 0);
    }

    #[test]
    fn the_section_parses_with_defaults_and_serializes_back() {
        let text = "[[links]]\nfrom = 0\nto = 1\ndelay_us = 20000\n\n\
                    [[links]]\nfrom = 1\nto = 0\nloss = 0.05\nrate_bytes_per_s = 1000000\n";
        let e: LinkEmulation = toml::from_str(text).unwrap();
        assert_eq!(e.seed, 0);
        assert_eq!(e.max_queued_datagrams, DEFAULT_MAX_QUEUED_DATAGRAMS);
        assert_eq!(e.links[0], link(0, 1));
        assert_eq!(e.links[1].delay_us, 0);
        assert_eq!(e.links[1].rate_bytes_per_s, Some(1_000_000));
        let back: LinkEmulation = toml::from_str(&toml::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
        let unknown = toml::from_str::<LinkEmulation>("[[links]]\nfrom = 0\nto = 1\ndelay = 5\n");
        assert!(unknown.unwrap_err().to_string().contains("delay"));
    }

    #[test]
    fn a_node_takes_only_its_own_links() {
        let e = LinkEmulation {
            links: vec![link(0, 1), link(1, 0), link(0, 2)],
            ..LinkEmulation::default()
        };
        let nodes: Vec<_> = (0..3u16)
            .map(|i| {
                (
                    NodeId(i.into()),
                    SocketAddr::from(([127, 0, 0, 1], 7000 + i)),
                )
            })
            .collect();
        let n0 = e.for_node(NodeId(0), &nodes, Arc::default(), Arc::default());
        let to: Vec<_> = n0.links.iter().map(|(a, l)| (a.port(), l.to)).collect();
        assert_eq!(to, vec![(7001, 1), (7002, 2)]);
        let peers: Vec<_> = n0.peers.iter().map(|(id, a)| (id.0, a.port())).collect();
        assert_eq!(
            peers,
            vec![(1, 7001), (2, 7002)],
            "every peer, itself left out"
        );
        let n2 = e.for_node(NodeId(2), &nodes, Arc::default(), Arc::default());
        assert!(n2.is_empty());
        assert_eq!(n2.peers.len(), 2, "no links, but peers to impair");
        // A link to a node the map does not know is left out.
        assert_eq!(
            e.for_node(NodeId(0), &nodes[..2], Arc::default(), Arc::default())
                .links
                .len(),
            1
        );
    }

    #[test]
    fn mapped_ipv6_addresses_match_their_ipv4_rule() {
        let v4: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:7001".parse().unwrap();
        assert_eq!(canonical(mapped), v4);
        let v6: SocketAddr = "[::1]:7001".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }

    /// Through real sockets on loopback: a datagram to the emulated address arrives after its
    /// delay, one to another address at once, and the counters say so.
    #[tokio::test]
    async fn the_socket_delays_ruled_destinations_and_passes_others() {
        let bind = || {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_nonblocking(true).unwrap();
            s
        };
        let far = tokio::net::UdpSocket::from_std(bind()).unwrap();
        let near = tokio::net::UdpSocket::from_std(bind()).unwrap();
        let sender = bind();
        let runtime = quinn::default_runtime().unwrap();
        let inner = runtime.wrap_udp_socket(sender).unwrap();
        let counters = Arc::new(EmulationCounters::default());
        let emulation = NodeEmulation {
            node: NodeId(0),
            links: vec![(far.local_addr().unwrap(), link(0, 1))],
            peers: Vec::new(),
            seed: 0,
            max_queued_datagrams: 16,
            max_queued_bytes: MIN_MAX_QUEUED_BYTES,
            counters: counters.clone(),
            faults: Arc::default(),
        };
        let socket = emulation.wrap(inner).unwrap();
        let mut poller = socket.clone().create_io_poller();
        // As quinn does: wait until writable, then send.
        let mut send = async |to: SocketAddr, what: &'static [u8]| loop {
            poll_fn(|cx| poller.as_mut().poll_writable(cx))
                .await
                .unwrap();
            let sent = socket.try_send(&Transmit {
                destination: to,
                ecn: None,
                contents: what,
                segment_size: None,
                src_ip: None,
            });
            match sent {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => break other.unwrap(),
            }
        };
        let start = Instant::now();
        send(far.local_addr().unwrap(), b"far").await;
        send(near.local_addr().unwrap(), b"near").await;
        let mut buf = [0u8; 16];
        let limit = Duration::from_secs(5);
        let n = tokio::time::timeout(limit, near.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], b"near");
        let near_after = start.elapsed();
        let n = tokio::time::timeout(limit, far.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], b"far");
        let far_after = start.elapsed();
        assert!(
            far_after >= 20 * MS,
            "the delayed datagram came after {far_after:?}"
        );
        assert!(near_after < far_after, "{near_after:?} vs {far_after:?}");
        assert_eq!(
            counters.snapshot(),
            EmulationStats {
                delayed: 1,
                released: 1,
                ..EmulationStats::default()
            }
        );
        eprintln!("near after {near_after:?}, far (20 ms rule) after {far_after:?}");
    }

    // ---- impairments -----------------------------------------------------------------------

    fn fault(blocked: bool, extra_ms: u64, loss: f64) -> Fault {
        Fault::of(&LinkImpairment {
            blocked,
            extra_delay_us: extra_ms * 1000,
            loss,
        })
    }

    /// Link 0 configured (5 ms), link 1 a peer without a rule.
    fn two_links() -> Scheduler {
        let mut s = Scheduler::new(
            vec![shape(5, 0, 0.0, None), Shape::ZERO],
            3,
            1 << 20,
            1 << 30,
        );
        s.links[1].configured = false;
        s
    }

    #[test]
    fn a_blocked_link_drops_everything_and_counts_it_apart() {
        let mut s = two_links();
        s.links[0].fault = fault(true, 0, 0.0);
        let t0 = Instant::now();
        let gso = vec![0u8; 1000];
        let o = s.offer(t0, 0, &transmit(&gso, Some(100)));
        assert_eq!(
            o,
            Offered {
                faulted: 10,
                ..Offered::default()
            },
            "every segment dropped, as a fault, not as loss"
        );
        assert_eq!(s.offer(t0, 0, &transmit(b"x", None)).faulted, 1);
        assert!(drain(&mut s).is_empty(), "nothing held");
        // The other peer is untouched: straight out, nothing counted against it.
        let o = s.offer(t0, 1, &transmit(b"y", None));
        assert_eq!((o.faulted, o.lost, o.queued), (0, 0, 0));
        assert_eq!(o.direct.map(|d| d.datagrams), Some(1));
        // Lifted: the configured link is itself again.
        s.links[0].fault = Fault::NONE;
        assert_eq!(s.offer(t0, 0, &transmit(b"z", None)).queued, 1);
        assert_eq!(s.next_release(), Some(t0 + 5 * MS));
    }

    #[test]
    fn an_extra_delay_adds_to_the_link_and_lifting_it_keeps_the_order() {
        let mut s = two_links();
        let t0 = Instant::now();
        s.links[0].fault = fault(false, 20, 0.0);
        s.links[1].fault = fault(false, 30, 0.0);
        s.offer(t0, 0, &transmit(b"a1", None));
        s.offer(t0, 1, &transmit(b"b1", None));
        // Lifted 2 ms later: later datagrams get the plain delay, but never leave before
        // those the extra delay holds.
        s.links[0].fault = Fault::NONE;
        s.links[1].fault = Fault::NONE;
        let t1 = t0 + 2 * MS;
        s.offer(t1, 0, &transmit(b"a2", None));
        let o = s.offer(t1, 1, &transmit(b"b2", None));
        assert!(o.direct.is_none(), "b1 is still held: b2 queues behind it");
        assert!(s.routed(1), "and link 1 still goes through the scheduler");
        let held = drain(&mut s);
        let got: Vec<(&[u8], Duration)> =
            held.iter().map(|h| (&h.contents[..], h.at - t0)).collect();
        assert_eq!(
            got,
            vec![
                (&b"a1"[..], 25 * MS),
                (&b"a2"[..], 25 * MS),
                (&b"b1"[..], 30 * MS),
                (&b"b2"[..], 30 * MS),
            ]
        );
        // Drained and lifted: link 1 is a plain peer again, link 0 its configured self.
        assert!(!s.routed(1));
        let later = t0 + 100 * MS;
        s.offer(later, 0, &transmit(b"a3", None));
        assert_eq!(s.next_release(), Some(later + 5 * MS));
        assert!(s.offer(later, 1, &transmit(b"b3", None)).direct.is_some());
    }

    #[test]
    fn an_extra_delay_on_a_rate_limited_link_adds_after_serialization() {
        let mut s = Scheduler::new(vec![shape(5, 0, 0.0, Some(1_000_000))], 1, 1 << 20, 1 << 30);
        s.links[0].fault = fault(false, 10, 0.0);
        let t0 = Instant::now();
        s.offer(t0, 0, &transmit(&[0; 1000], None));
        assert_eq!(s.next_release(), Some(t0 + 16 * MS), "1 ms + 5 ms + 10 ms");
    }

    #[test]
    fn an_impairment_loss_drops_its_share_independently_of_the_configured_one() {
        for (configured, extra) in [(0.0, 0.5), (0.1, 0.5), (0.0, 1.0)] {
            let mut s = Scheduler::new(vec![shape(1, 0, configured, None)], 5, 1 << 30, 1 << 40);
            s.links[0].fault = fault(false, 0, extra);
            let t0 = Instant::now();
            let (mut lost, mut faulted) = (0, 0);
            let n = 20_000;
            for _ in 0..n {
                let o = s.offer(t0, 0, &transmit(b"x", None));
                lost += o.lost;
                faulted += o.faulted;
            }
            let share = |k: u64| k as f64 / n as f64;
            let expect_faulted = (1.0 - configured) * extra;
            assert!(
                (share(lost) - configured).abs() < 0.015,
                "configured {configured}: lost {}",
                share(lost)
            );
            assert!(
                (share(faulted) - expect_faulted).abs() < 0.015,
                "{configured} + {extra}: faulted {}, expected {expect_faulted}",
                share(faulted)
            );
        }
    }

    #[test]
    fn a_zero_delay_link_sends_at_once_what_survives_its_loss() {
        let mut s = Scheduler::new(vec![Shape::ZERO], 9, 1 << 20, 1 << 30);
        s.links[0].configured = false;
        assert!(!s.routed(0), "a plain peer does not come here");
        s.links[0].fault = fault(false, 0, 0.5);
        assert!(s.routed(0));
        let t0 = Instant::now();
        let mut contents = Vec::new();
        for i in 0..20u8 {
            contents.extend(std::iter::repeat_n(i, 10));
        }
        let mut all_kept = 0;
        for _ in 0..20 {
            let o = s.offer(t0, 0, &transmit(&contents, Some(10)));
            assert_eq!(o.queued, 0, "nothing held");
            let Some(d) = o.direct else {
                assert_eq!(o.faulted, 20);
                continue;
            };
            assert_eq!(d.datagrams + o.faulted, 20);
            match &d.contents {
                None => {
                    all_kept += 1;
                    assert_eq!(d.datagrams, 20);
                }
                Some(kept) => {
                    assert_eq!(kept.len() as u64, 10 * d.datagrams);
                    let tags: Vec<u8> = kept.chunks(10).map(|c| c[0]).collect();
                    assert!(tags.windows(2).all(|w| w[0] < w[1]), "in order: {tags:?}");
                    assert!(kept.chunks(10).all(|c| c.iter().all(|&b| b == c[0])));
                }
            }
            assert_eq!(d.segment_size, (d.datagrams > 1).then_some(10));
        }
        assert!(all_kept < 2, "a copy is made only when something is lost");
        assert!(drain(&mut s).is_empty());
    }

    #[test]
    fn partition_tells_every_node_of_each_side_to_block_the_other() {
        let (a, b, c) = (NodeId(0), NodeId(1), NodeId(2));
        let plan = partition(&[&[a], &[b, c]]);
        let blocked = |n: NodeId| -> Vec<u32> {
            let (_, imp) = plan.iter().find(|(m, _)| *m == n).unwrap();
            assert!(imp.links.iter().all(|(_, l)| *l == LinkImpairment::BLOCKED));
            imp.links.iter().map(|(p, _)| p.0).collect()
        };
        assert_eq!(plan.len(), 3);
        assert_eq!(blocked(a), vec![1, 2]);
        assert_eq!(blocked(b), vec![0]);
        assert_eq!(blocked(c), vec![0]);
    }

    fn bind() -> std::net::UdpSocket {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_nonblocking(true).unwrap();
        s
    }

    /// A node 0 with two peers, 1 and 2, neither with a rule, wrapped around a real socket.
    fn unruled_node(
        p1: SocketAddr,
        p2: SocketAddr,
    ) -> (Arc<EmulatedSocket>, Arc<EmulationCounters>, Arc<LinkFaults>) {
        let runtime = quinn::default_runtime().unwrap();
        let inner = runtime.wrap_udp_socket(bind()).unwrap();
        let counters = Arc::new(EmulationCounters::default());
        let faults = Arc::new(LinkFaults::default());
        let nodes = [
            (NodeId(0), bind().local_addr().unwrap()),
            (NodeId(1), p1),
            (NodeId(2), p2),
        ];
        let emulation =
            LinkEmulation::default().for_node(NodeId(0), &nodes, counters.clone(), faults.clone());
        (emulation.wrap(inner).unwrap(), counters, faults)
    }

    /// Sends as quinn does: waits until writable, then `try_send`.
    async fn send_to(socket: &Arc<EmulatedSocket>, to: SocketAddr, what: &[u8]) {
        let mut poller = socket.clone().create_io_poller();
        loop {
            poll_fn(|cx| poller.as_mut().poll_writable(cx))
                .await
                .unwrap();
            let sent = socket.try_send(&Transmit {
                destination: to,
                ecn: None,
                contents: what,
                segment_size: None,
                src_ip: None,
            });
            match sent {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => break other.unwrap(),
            }
        }
    }

    /// The next datagram on `socket` within `limit`, if any.
    async fn recv_within(socket: &tokio::net::UdpSocket, limit: Duration) -> Option<Vec<u8>> {
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(limit, socket.recv(&mut buf))
            .await
            .ok()?
            .unwrap();
        Some(buf[..n].to_vec())
    }

    /// Through real sockets: with an empty `[emulation]` section, peers pass straight through;
    /// a blocked peer gets nothing while the other still does; an extra delay holds datagrams
    /// back; lifting restores the plain path; the impairment reads back as set.
    #[tokio::test]
    async fn impairments_through_the_socket_block_delay_and_lift() {
        let one = tokio::net::UdpSocket::from_std(bind()).unwrap();
        let two = tokio::net::UdpSocket::from_std(bind()).unwrap();
        let (a1, a2) = (one.local_addr().unwrap(), two.local_addr().unwrap());
        let (socket, counters, faults) = unruled_node(a1, a2);
        let limit = Duration::from_secs(5);

        send_to(&socket, a1, b"plain").await;
        assert_eq!(
            recv_within(&one, limit).await.as_deref(),
            Some(&b"plain"[..])
        );
        assert_eq!(
            counters.snapshot(),
            EmulationStats::default(),
            "passed through"
        );
        assert_eq!(faults.current(), Some(Impairment::none()));

        let cut = Impairment::to_each([NodeId(1)], LinkImpairment::BLOCKED);
        faults.set(NodeId(0), &cut).unwrap();
        assert_eq!(faults.current(), Some(cut));
        for _ in 0..3 {
            send_to(&socket, a1, b"cut").await;
        }
        send_to(&socket, a2, b"other").await;
        assert_eq!(
            recv_within(&two, limit).await.as_deref(),
            Some(&b"other"[..])
        );
        assert_eq!(
            recv_within(&one, Duration::from_millis(200)).await,
            None,
            "a blocked peer receives nothing"
        );
        assert_eq!(
            counters.snapshot(),
            EmulationStats {
                dropped_fault: 3,
                ..EmulationStats::default()
            }
        );

        // Now delay peer 2 by 30 ms instead (replacing the whole impairment lifts the block).
        let slow = Impairment::to_each([NodeId(2)], LinkImpairment::delay_us(30_000));
        faults.set(NodeId(0), &slow).unwrap();
        let start = Instant::now();
        send_to(&socket, a2, b"slow").await;
        send_to(&socket, a1, b"open").await;
        assert_eq!(
            recv_within(&one, limit).await.as_deref(),
            Some(&b"open"[..])
        );
        let open_after = start.elapsed();
        assert_eq!(
            recv_within(&two, limit).await.as_deref(),
            Some(&b"slow"[..])
        );
        let slow_after = start.elapsed();
        assert!(slow_after >= 30 * MS, "delayed only {slow_after:?}");
        assert!(open_after < slow_after, "{open_after:?} vs {slow_after:?}");
        let s = counters.snapshot();
        assert_eq!((s.delayed, s.released, s.dropped_fault), (1, 1, 3), "{s:?}");

        // Lifted: both plain again, counted nowhere.
        faults.set(NodeId(0), &Impairment::none()).unwrap();
        // The release task marks link 2 plain only after it sent what it held (it has).
        let deadline = Instant::now() + limit;
        while socket.shared.routed[1].load(Ordering::Acquire) {
            assert!(Instant::now() < deadline, "link 2 stays routed");
            tokio::time::sleep(MS).await;
        }
        send_to(&socket, a2, b"again").await;
        assert_eq!(
            recv_within(&two, limit).await.as_deref(),
            Some(&b"again"[..])
        );
        assert_eq!(counters.snapshot(), s, "no counter moved");
    }

    #[tokio::test]
    async fn bad_impairments_are_refused_and_change_nothing() {
        let (p1, p2) = (bind().local_addr().unwrap(), bind().local_addr().unwrap());
        let (_socket, _, faults) = unruled_node(p1, p2);
        let before = Impairment::to_each([NodeId(1)], LinkImpairment::loss(0.25));
        faults.set(NodeId(0), &before).unwrap();
        let refused = |imp: Impairment| faults.set(NodeId(0), &imp).unwrap_err();
        let e = refused(Impairment::to_each([NodeId(7)], LinkImpairment::BLOCKED));
        assert_eq!(e.to_string(), "node 0 has no peer 7 (its peers: 1, 2)");
        let e = refused(Impairment::to_each([NodeId(0)], LinkImpairment::BLOCKED));
        assert!(matches!(e, ImpairError::SelfLink { .. }), "{e}");
        let e = refused(Impairment::to_each(
            [NodeId(2)],
            LinkImpairment::loss(f64::NAN),
        ));
        assert!(e.to_string().contains("loss NaN"), "{e}");
        let e = refused(Impairment::to_each([NodeId(2)], LinkImpairment::loss(1.5)));
        assert!(e.to_string().contains("loss 1.5"), "{e}");
        let e = refused(Impairment::to_each(
            [NodeId(2), NodeId(2)],
            LinkImpairment::BLOCKED,
        ));
        assert!(e.to_string().contains("twice"), "{e}");
        let e = refused(Impairment::to_each(
            [NodeId(1)],
            LinkImpairment::delay_us(MAX_DELAY_US + 1),
        ));
        assert!(matches!(e, ImpairError::DelayTooLong { .. }), "{e}");
        assert_eq!(
            faults.current(),
            Some(before),
            "the impairment in force stays"
        );
        // Exactly the limit is fine.
        let limit = Impairment::to_each([NodeId(1)], LinkImpairment::delay_us(MAX_DELAY_US));
        faults.set(NodeId(0), &limit).unwrap();

        // A node whose socket is not wrapped (no [emulation] section) says so.
        let unwrapped = LinkFaults::default();
        assert_eq!(unwrapped.current(), None);
        let e = unwrapped.set(NodeId(2), &Impairment::none()).unwrap_err();
        assert_eq!(e, ImpairError::NotEmulated { node: NodeId(2) });
        assert!(
            e.to_string()
                .starts_with("node 2 has no emulated link: add an [emulation] section"),
            "{e}"
        );
    }

    /// An `AsyncUdpSocket` that accepts every datagram and does nothing: what the wrapper costs
    /// by itself.
    #[derive(Debug)]
    struct NullSocket;

    #[derive(Debug)]
    struct AlwaysWritable;

    impl UdpPoller for AlwaysWritable {
        fn poll_writable(self: Pin<&mut Self>, _: &mut Context) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncUdpSocket for NullSocket {
        fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
            Box::pin(AlwaysWritable)
        }
        fn try_send(&self, t: &Transmit<'_>) -> io::Result<()> {
            std::hint::black_box(t);
            Ok(())
        }
        fn poll_recv(
            &self,
            _: &mut Context,
            _: &mut [IoSliceMut<'_>],
            _: &mut [RecvMeta],
        ) -> Poll<io::Result<usize>> {
            Poll::Pending
        }
        fn local_addr(&self) -> io::Result<SocketAddr> {
            Ok(DEST)
        }
    }

    /// What a send to an unimpaired peer without a rule costs through the wrapper, against the
    /// bare socket, with no system call to hide it. `cargo test -p node --release --lib --
    /// --ignored cost_of --nocapture`.
    #[tokio::test]
    #[ignore = "a measurement; prints its numbers"]
    async fn cost_of_the_wrapper_on_a_passthrough_send() {
        let peers: Vec<(NodeId, SocketAddr)> = (1..=4u16)
            .map(|i| {
                (
                    NodeId(i.into()),
                    SocketAddr::from(([127, 0, 0, 1], 7000 + i)),
                )
            })
            .collect();
        let wrapped = NodeEmulation {
            node: NodeId(0),
            links: Vec::new(),
            peers: peers.clone(),
            seed: 0,
            max_queued_datagrams: 16,
            max_queued_bytes: MIN_MAX_QUEUED_BYTES,
            counters: Arc::default(),
            faults: Arc::default(),
        }
        .wrap(Arc::new(NullSocket))
        .unwrap();
        let bare: Arc<dyn AsyncUdpSocket> = Arc::new(NullSocket);
        let payload = [0u8; 1200];
        // The last peer: the longest scan.
        let to = peers[3].1;
        let t = Transmit {
            destination: to,
            ecn: None,
            contents: &payload,
            segment_size: None,
            src_ip: None,
        };
        let n = 10_000_000u32;
        let time = |socket: &dyn AsyncUdpSocket| {
            let start = Instant::now();
            for _ in 0..n {
                socket.try_send(std::hint::black_box(&t)).unwrap();
            }
            start.elapsed() / n
        };
        for _ in 0..2 {
            let (b, w) = (time(&*bare), time(&*wrapped));
            eprintln!("per send: bare {b:?}, wrapped (4 peers, none impaired) {w:?}");
        }
        assert_eq!(wrapped.stats(), EmulationStats::default());
    }
}
