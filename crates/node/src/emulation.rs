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
//! # How
//!
//! quinn sends every datagram through an [`AsyncUdpSocket`]. A node with rules wraps the socket
//! quinn's runtime would use in an [`EmulatedSocket`] ([`NodeEmulation::wrap`], called by
//! [`crate::endpoint`]). A datagram to an address that has no rule goes straight to the inner
//! socket (the only cost is comparing its destination with the few peer addresses that have
//! rules), so clients and load generators are never emulated: rules name peer addresses only,
//! and a node without rules is not wrapped at all. A datagram to a peer with a rule is decided
//! at once, in `try_send`, which never blocks or fails quinn's caller:
//!
//! 1. **Loss**: dropped with probability `loss` (counted in
//!    [`EmulationCounters::dropped_loss`]). A lost datagram takes no link time.
//! 2. **Queue bound**: if holding it would exceed `max_queued_datagrams` or `max_queued_bytes`
//!    (all links of the node together), it is dropped and counted separately, in
//!    [`EmulationCounters::dropped_queue_full`], like a router's tail drop. Memory cannot grow
//!    without bound however fast quinn sends.
//! 3. **Rate**: with `rate_bytes_per_s`, datagrams serialize one after another onto the link
//!    (their UDP payload only; headers are not counted): one finishes `len / rate` after the
//!    later of its arrival and the end of the previous one. There is no burst allowance beyond
//!    one datagram. A backlog builds up in the queue, bounded as above.
//! 4. **Delay**: it is released `delay_us ± jitter_us` (uniform, from a seeded RNG) after it
//!    arrived, or after it finished serializing with a rate limit.
//! 5. **Order**: without jitter, datagrams leave a link in the order they were sent. Jitter is
//!    drawn for every transmit independently, as `netem` does, so a datagram may overtake one
//!    sent up to `2 × jitter_us` before it: jitter reorders exactly as much as it implies, and
//!    nothing else does. QUIC copes with reordering, but takes a packet overtaken by three later
//!    ones for lost and slows down, so jitter on a busy link costs throughput too. (Keeping the
//!    order instead would make every datagram wait for the slowest draw before it, and on a busy
//!    link the delay would sit near `delay_us + jitter_us` rather than spread around
//!    `delay_us`.)
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

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::future::poll_fn;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use paxos::NodeId;
use quinn::udp::{EcnCodepoint, RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

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
    /// of its peer as `addr_of` gives it (links to a node `addr_of` does not know are left
    /// out), counting into `counters`.
    pub fn for_node(
        &self,
        me: NodeId,
        addr_of: impl Fn(NodeId) -> Option<SocketAddr>,
        counters: Arc<EmulationCounters>,
    ) -> NodeEmulation {
        NodeEmulation {
            node: me,
            links: self
                .links
                .iter()
                .filter(|l| l.from == me.0)
                .filter_map(|l| Some((addr_of(NodeId(l.to))?, l.clone())))
                .collect(),
            seed: self.seed,
            max_queued_datagrams: self.max_queued_datagrams,
            max_queued_bytes: self.max_queued_bytes,
            counters,
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
    /// Seed of the draws (this node's id is mixed in).
    pub seed: u64,
    /// Most datagrams held at once.
    pub max_queued_datagrams: usize,
    /// Most bytes held at once.
    pub max_queued_bytes: u64,
    /// Where it counts what it did.
    pub counters: Arc<EmulationCounters>,
}

impl NodeEmulation {
    /// Whether there is nothing to emulate.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// Wraps `inner` (the socket quinn's runtime made, `Runtime::wrap_udp_socket`) so that what
    /// it sends to these links is emulated, and spawns the task that releases held datagrams.
    /// Must be called inside a tokio runtime.
    pub fn wrap(self, inner: Arc<dyn AsyncUdpSocket>) -> io::Result<Arc<EmulatedSocket>> {
        let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let routes = self
            .links
            .iter()
            .enumerate()
            .map(|(i, (addr, _))| (canonical(*addr), i))
            .collect();
        let shapes = self.links.iter().map(|(_, l)| Shape::of(l)).collect();
        let shared = Arc::new(Shared {
            scheduler: Mutex::new(Scheduler::new(
                shapes,
                mix_seed(self.seed, self.node),
                self.max_queued_datagrams,
                self.max_queued_bytes,
            )),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            counters: self.counters,
        });
        runtime.spawn(release(shared.clone(), inner.clone()));
        for (addr, l) in &self.links {
            tracing::info!(
                node = self.node.0, to = l.to, %addr, link = %l.describe(),
                "emulated link"
            );
        }
        Ok(Arc::new(EmulatedSocket {
            inner,
            routes,
            shared,
        }))
    }
}

/// What a node's emulated links did, counted since it started. Datagrams, not transmits: a
/// GSO transmit of 10 segments counts 10.
#[derive(Debug, Default)]
pub struct EmulationCounters {
    /// Datagrams accepted onto an emulated link, to be released after their delay.
    pub delayed: AtomicU64,
    /// Datagrams handed to the socket after their delay.
    pub released: AtomicU64,
    /// Datagrams dropped by emulated loss.
    pub dropped_loss: AtomicU64,
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
    /// Wakes the release task when a datagram is due earlier than it sleeps, or on close.
    wake: Notify,
    closed: AtomicBool,
    counters: Arc<EmulationCounters>,
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
        let now = tokio::time::Instant::now().into_std();
        let (offered, earlier) = {
            let mut s = self
                .shared
                .scheduler
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let before = s.next_release();
            let offered = s.offer(now, link, transmit);
            let after = s.next_release();
            (
                offered,
                after.is_some() && (before.is_none() || after < before),
            )
        };
        let c = &self.shared.counters;
        c.delayed.fetch_add(offered.queued, Ordering::Relaxed);
        c.dropped_loss.fetch_add(offered.lost, Ordering::Relaxed);
        c.dropped_queue_full
            .fetch_add(offered.over_limit, Ordering::Relaxed);
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
        for held in due.drain(..) {
            send(&*inner, &mut poller, &held, &shared).await;
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
    fn of(l: &Link) -> Shape {
        Shape {
            delay: Duration::from_micros(l.delay_us),
            jitter: Duration::from_micros(l.jitter_us),
            loss: l.loss,
            rate_bytes_per_s: l.rate_bytes_per_s.filter(|&r| r > 0),
        }
    }
}

/// One link's state between datagrams.
struct LinkState {
    shape: Shape,
    /// When the datagram serializing last finishes (rate-limited links).
    busy_until: Option<Instant>,
}

/// A transmit (one or more datagrams) held until `at`.
struct Held {
    at: Instant,
    /// Ties in `at` leave in the order they arrived.
    seq: u64,
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Offered {
    queued: u64,
    lost: u64,
    over_limit: u64,
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
                    busy_until: None,
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
        let shape = self.links[link].shape;
        let segment = t.segment_size.unwrap_or(t.contents.len()).max(1);
        // One draw per transmit: its datagrams leave the sender back to back.
        let jitter = self.draw_jitter(shape.jitter);
        let mut out = Offered::default();
        match shape.rate_bytes_per_s {
            None => {
                let mut kept = Vec::with_capacity(t.contents.len());
                let mut n = 0u64;
                for datagram in t.contents.chunks(segment) {
                    if self.lose(shape.loss) {
                        out.lost += 1;
                    } else {
                        kept.extend_from_slice(datagram);
                        n += 1;
                    }
                }
                if n == 0 {
                    return out;
                }
                if !self.fits(n, kept.len()) {
                    out.over_limit += n;
                    return out;
                }
                let at = self.release_time(link, now, jitter);
                // The kept segments are full-size but possibly the last: still a valid batch.
                let segment_size = (n > 1).then_some(segment);
                self.hold(at, t, segment_size, n, kept);
                out.queued += n;
            }
            Some(rate) => {
                for datagram in t.contents.chunks(segment) {
                    if self.lose(shape.loss) {
                        out.lost += 1;
                        continue;
                    }
                    if !self.fits(1, datagram.len()) {
                        out.over_limit += 1;
                        continue;
                    }
                    let done = self.serialize(link, now, datagram.len(), rate);
                    let at = self.release_time(link, done, jitter);
                    self.hold(at, t, None, 1, datagram.to_vec());
                    out.queued += 1;
                }
            }
        }
        out
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

    /// `base + delay + jitter`, never before `base`.
    fn release_time(&self, link: usize, base: Instant, jitter_ns: i64) -> Instant {
        let delay = self.links[link].shape.delay;
        let offset = Duration::from_nanos(jitter_ns.unsigned_abs());
        // jitter <= delay (validated); saturating all the same.
        let d = if jitter_ns >= 0 {
            delay + offset
        } else {
            delay.saturating_sub(offset)
        };
        base + d
    }

    fn hold(
        &mut self,
        at: Instant,
        t: &Transmit<'_>,
        segment_size: Option<usize>,
        datagrams: u64,
        contents: Vec<u8>,
    ) {
        self.held_datagrams += datagrams as usize;
        self.held_bytes += contents.len() as u64;
        self.next_seq += 1;
        self.held.push(Reverse(Held {
            at,
            seq: self.next_seq,
            destination: t.destination,
            ecn: t.ecn,
            src_ip: t.src_ip,
            segment_size,
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

    fn drain(s: &mut Scheduler) -> Vec<Held> {
        let mut out = Vec::new();
        while let Some(h) = s.pop_due(Instant::now() + Duration::from_secs(3600)) {
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
                lost: 0,
                over_limit: 2
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
        let addr = |id: NodeId| Some(SocketAddr::from(([127, 0, 0, 1], 7000 + id.0 as u16)));
        let n0 = e.for_node(NodeId(0), addr, Arc::default());
        let to: Vec<_> = n0.links.iter().map(|(a, l)| (a.port(), l.to)).collect();
        assert_eq!(to, vec![(7001, 1), (7002, 2)]);
        assert!(e.for_node(NodeId(2), addr, Arc::default()).is_empty());
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
            seed: 0,
            max_queued_datagrams: 16,
            max_queued_bytes: MIN_MAX_QUEUED_BYTES,
            counters: counters.clone(),
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
}
