//! The node's event loop and its connections.
//!
//! One task owns the protocol core and `select!`s over inbound peer messages, client requests,
//! persist completions and the core's next deadline; nothing wraps the core in a mutex. After
//! every turn it drains the core's actions: messages are encoded once and queued per peer, and
//! every frame a turn produces for one peer leaves in one write (the peer's writer task drains
//! its queue into one buffer and one write). Replies go to the client stream that sent the
//! request. Writes go to the write-ahead log thread (one fsync per batch) or, with
//! `durability = "none"`, are acknowledged at once.
//!
//! Connections come through the transport seam ([`crate::transport`]), so everything here is
//! the same on QUIC and on TCP: an endpoint that accepts and dials, authenticated connections,
//! ordered byte streams carrying `wire` frames.
//!
//! Frames for a peer are copied into one buffer per write (see `PeerLink::write` for why).
//!
//! Peers: one connection per pair, dialed by the lower id and re-dialed with backoff when lost.
//! A node that starts knocks at each lower-id peer (one short connection, closed at once), so a
//! peer still writing into its predecessor's dead connection redials instead of waiting for the
//! QUIC idle timeout (on TCP the predecessor's kernel ended that connection already; the knock
//! only saves the redial backoff); a newer connection from a lower-id peer replaces the one in
//! use; each side opens one stream on it (QUIC: unidirectional; TCP: its half of the one
//! stream), starting with a [`wire::PeerHello`] whose id must match the node id bound to the
//! sender's certificate. Clients: any certificate of the cluster CA, ALPN `paxbench-client/5`,
//! requests pipelined on long-lived streams (QUIC: bidirectional streams; TCP: one connection
//! each). A client's `Impair` frame is the socket's business, not the core's: the stream's
//! reader hands it to the emulated links ([`crate::emulation::LinkFaults`]) and answers at once.
//! Nothing in the core assumes delivery: frames queued for a peer that is down are dropped and
//! counted.
//!
//! Status answers carry the RTT measured on each peer connection: quinn's estimate, kept
//! current by a tiny QUIC datagram every [`RTT_PROBE_INTERVAL`] (see `transport::probe_rtt`
//! for why), or on TCP the kernel's (`TCP_INFO`). A connection whose RTT is unknown is not
//! listed.
//!
//! They also carry the node's wire counters ([`wire::WireCounters`], see
//! [`Metrics::wire_counters`]): every connection the node dials or accepts (knocks included) is
//! tracked as peer or client traffic from its handshake on; a status sums what the live ones
//! carried so far (quinn's UDP statistics, or the kernel's TCP byte counts) and the final
//! counts of those that closed, folded in when each closed. Peer messages are counted by kind
//! as the readers decode them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use paxos::{
    Action, ClientId, Command, Message, MessageKind, Node, NodeId, PersistToken, Record, Reply,
    Time,
};
use rustc_hash::FxHashMap;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn, Instrument};
use wire::{
    ClientFrame, ClientResponse, Codec, EmulationStatus, NodeStatus, PeerFrame, PeerHello,
    ResponseFrame, Traffic, WireCounters,
};

use crate::tls::Remote;
pub use crate::transport::RTT_PROBE_INTERVAL;
use crate::transport::{Conn, Dialer, NodeEndpoint, RecvStream, SendStream};

/// Error codes a node closes connections with.
pub mod close {
    /// A frame did not decode.
    pub const BAD_FRAME: u32 = 1;
    /// The peer's hello names another node than its certificate, or it is not in the cluster.
    pub const BAD_IDENTITY: u32 = 2;
    /// The ALPN is not one this node speaks, or a client used the peer ALPN.
    pub const BAD_ALPN: u32 = 3;
    /// The node is shutting down.
    pub const SHUTDOWN: u32 = 4;
    /// A knock (see `PeerLink::knock`) was heard: the knocking node is new.
    pub const KNOCKED: u32 = 5;
    /// The peer link stopped using this connection: a newer one replaced it, it closed, or
    /// writing on it failed.
    pub const REPLACED: u32 = 6;
}

/// Closes a connection that broke the rules, with a logged reason and a counter.
fn refuse(conn: &Conn, counter: &AtomicU64, code: u32, reason: &str) {
    counter.fetch_add(1, Ordering::Relaxed);
    warn!(remote = %conn.remote_address(), reason, "closing a connection");
    conn.close(code, reason.as_bytes());
}

/// Counters of what a node refused or dropped; shared with tests and the status log.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Connections whose TLS handshake failed (wrong CA, no certificate, wrong ALPN).
    pub handshakes_failed: AtomicU64,
    /// Connections closed because a frame did not decode.
    pub bad_frames: AtomicU64,
    /// Peer connections refused: unknown node, or a hello that contradicts the certificate.
    pub identities_refused: AtomicU64,
    /// Frames dropped because the peer was unreachable or its queue was full.
    pub frames_dropped: AtomicU64,
    /// Peer messages received.
    pub messages_in: AtomicU64,
    /// Peer messages received and decoded, by kind, in [`MessageKind::ALL`] order (counted
    /// where the frames are decoded, before they queue for the event loop).
    pub received: [AtomicU64; MessageKind::ALL.len()],
    /// Client requests received.
    pub requests_in: AtomicU64,
    /// Loop turns.
    pub turns: AtomicU64,
    /// What the emulated links did (all zero without `[emulation]`); the node's endpoint counts
    /// into it when [`crate::serve`] builds it.
    pub emulation: Arc<crate::emulation::EmulationCounters>,
    /// The impairments of the emulated links, set by clients' [`ClientFrame::Impair`] frames;
    /// the node's emulated socket attaches to it when [`crate::serve`] builds it (without
    /// `[emulation]` nothing does, and impairments are refused).
    pub faults: Arc<crate::emulation::LinkFaults>,
    /// Every connection the node made or accepted, by class, for the traffic counts of
    /// status answers ([`Metrics::wire_counters`]).
    wire: WireBook,
}

impl Metrics {
    /// What the node's connections carried and the peer messages it received, cumulative
    /// since it started: what its status answers report as [`NodeStatus::wire`].
    pub fn wire_counters(&self) -> WireCounters {
        let (peer, client) = self.wire.totals();
        WireCounters {
            peer,
            client,
            received: std::array::from_fn(|i| self.received[i].load(Ordering::Relaxed)),
        }
    }

    /// Counts the peer messages of one read, by kind.
    fn count_received(&self, kinds: &[u64; MessageKind::ALL.len()]) {
        for (counter, &n) in self.received.iter().zip(kinds) {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}

/// Whom a connection is with, for the traffic counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// Another node of the cluster (a knock included).
    Peer,
    /// A client: a load generator, `paxbench kv`, a launcher reading statuses.
    Client,
}

/// The node's connections for the traffic counts: those alive, whose counts are read when a
/// status is answered, and the final counts of those that closed, folded in once each closed,
/// so a reconnect never makes the totals go backwards.
#[derive(Default)]
struct WireBook(std::sync::Mutex<Book>);

#[derive(Default)]
struct Book {
    /// Live connections by [`Conn::id`] (unique while the connection is held here).
    live: HashMap<usize, (Class, Conn)>,
    /// What the closed connections carried, peer and client.
    closed: (Traffic, Traffic),
}

impl std::fmt::Debug for WireBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (peer, client) = self.totals();
        f.debug_struct("WireBook")
            .field("peer", &peer)
            .field("client", &client)
            .finish_non_exhaustive()
    }
}

impl WireBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Peer and client traffic: the closed connections' final counts plus the live ones' now.
    fn totals(&self) -> (Traffic, Traffic) {
        let book = self.lock();
        let mut totals = book.closed;
        for (class, conn) in book.live.values() {
            add(&mut totals, *class, conn.traffic());
        }
        totals
    }

    /// Retires every connection still listed: at shutdown, once the endpoint closed them all,
    /// so that no handle outlives the node (a watcher may not have run yet).
    fn retire_all(&self) {
        let ids: Vec<usize> = self.lock().live.keys().copied().collect();
        for id in ids {
            self.retire(id);
        }
    }

    /// Moves a closed connection's final counts into the totals (once: under the same lock
    /// as its removal, so a status answer counts it either live or closed, never both).
    fn retire(&self, id: usize) {
        let mut book = self.lock();
        if let Some((class, conn)) = book.live.remove(&id) {
            add(&mut book.closed, class, conn.traffic());
        }
    }
}

/// Adds `t` to the peer or the client side of `totals`, by `class`.
fn add(totals: &mut (Traffic, Traffic), class: Class, t: Traffic) {
    let side = match class {
        Class::Peer => &mut totals.0,
        Class::Client => &mut totals.1,
    };
    *side = side.plus(t);
}

/// Counts `conn`'s traffic in `metrics` from now on: live until it closes, then folded into
/// the totals by a task that waits for its end.
fn track(metrics: &Arc<Metrics>, class: Class, conn: &Conn) {
    let id = conn.id();
    let fresh = metrics
        .wire
        .lock()
        .live
        .insert(id, (class, conn.clone()))
        .is_none();
    if fresh {
        let metrics = metrics.clone();
        let conn = conn.clone();
        tokio::spawn(async move {
            conn.closed().await;
            // This task's handle goes first: a quinn connection handle keeps the endpoint's
            // socket open, and a stopped node's address must be free for its successor.
            drop(conn);
            metrics.wire.retire(id);
        });
    }
}

/// What the event loop receives from connection tasks. Client requests come in the batches
/// one stream read decoded, so a loaded node pays one channel hand-off per read, not per
/// request.
enum Input {
    Peer(NodeId, Vec<Message>),
    Requests(Vec<Command>, ReplyTo),
    Status(ReplyTo),
    /// A client stream's reader ended: forget the sessions that answered through it.
    StreamClosed(u64),
}

/// A client stream's reply queue. Each loop turn sends a stream all its replies as one batch.
#[derive(Clone)]
struct ReplyTo {
    /// Unique per stream within this node, to group a turn's replies.
    stream: u64,
    tx: mpsc::Sender<Vec<ResponseFrame>>,
}

/// How the runtime runs one node.
pub struct RuntimeConfig {
    /// The core's configuration (protocol, peers, knobs).
    pub core: paxos::Config,
    /// Every node's address, this one's included.
    pub addrs: HashMap<NodeId, SocketAddr>,
    /// `None` acknowledges writes at once; `Some` writes them through this log first.
    pub wal: Option<crate::wal::Wal>,
    /// The state to restart from: `Some` recovers (fsync), `None` starts empty.
    pub recovered: Option<paxos::Durable>,
    /// Start as a non-voting learner (restarted without its durable state).
    pub rejoin_without_state: bool,
    /// Frame size limit.
    pub codec: Codec,
}

/// Runs a node on `endpoint` (a quinn endpoint, or any [`NodeEndpoint`]) until `shutdown`
/// turns true.
pub async fn run(
    endpoint: impl Into<NodeEndpoint>,
    config: RuntimeConfig,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), paxos::ConfigError> {
    let endpoint: NodeEndpoint = endpoint.into();
    let me = config.core.id;
    let counted = metrics.clone();
    let node = if config.rejoin_without_state {
        Node::rejoin_without_state(config.core.clone())?
    } else {
        match config.recovered {
            Some(d) => Node::recover(config.core.clone(), d)?,
            None => Node::new(config.core.clone())?,
        }
    };
    let (input_tx, input_rx) = mpsc::channel::<Input>(4096);
    let codec = config.codec;
    // Peer links: a writer per peer; the dialer side for higher ids, the accepting side lower.
    let mut peers: HashMap<NodeId, mpsc::Sender<Vec<Bytes>>> = HashMap::new();
    let mut incoming_conns: HashMap<NodeId, Arc<watch::Sender<Option<Conn>>>> = HashMap::new();
    // The connection each link uses now, for the RTTs in status answers.
    let mut peer_conns = Vec::new();
    let mut tasks = Vec::new();
    for &peer in config.core.nodes.iter().filter(|p| **p != me) {
        let (tx, rx) = mpsc::channel::<Vec<Bytes>>(1024);
        peers.insert(peer, tx);
        let (conn_tx, conn_rx) = watch::channel(None);
        incoming_conns.insert(peer, Arc::new(conn_tx));
        let (current_tx, current_rx) = watch::channel(None);
        peer_conns.push((peer, current_rx));
        let link = PeerLink {
            me,
            peer,
            addr: config.addrs[&peer],
            dialer: endpoint.dialer(),
            dial: me < peer,
            accepted: conn_rx,
            current: current_tx,
            input: input_tx.clone(),
            metrics: metrics.clone(),
            codec,
        };
        let span = tracing::info_span!("peer", node = me.0, peer = peer.0);
        tasks.push(tokio::spawn(
            link.run(rx, shutdown.clone()).instrument(span),
        ));
    }
    let published = incoming_conns
        .keys()
        .map(|&id| (id, Arc::new(std::sync::Mutex::new(0))))
        .collect();
    let acceptor = Acceptor {
        me,
        cluster: config.core.nodes.clone(),
        incoming: incoming_conns,
        input: input_tx.clone(),
        metrics: metrics.clone(),
        codec,
        next_stream: AtomicU64::new(0),
        next_incoming: AtomicU64::new(0),
        published,
    };
    let span = tracing::info_span!("accept", node = me.0);
    tasks.push(tokio::spawn(
        acceptor
            .run(endpoint.clone(), shutdown.clone())
            .instrument(span),
    ));

    let (persisted_tx, persisted_rx) = mpsc::unbounded_channel::<PersistToken>();
    // The self-test's broken node: its core already sends without waiting for the log; the
    // log's writes are held back too, so that a kill loses what was acknowledged.
    let hold = (config.core.bug == Some(paxos::Bug::AckBeforeDurable)).then(|| {
        warn!(
            node = me.0,
            hold_ms = ACK_BEFORE_DURABLE_HOLD.as_millis() as u64,
            "SELF-TEST BUG ack-before-durable: acknowledging writes before they are durable"
        );
        ACK_BEFORE_DURABLE_HOLD
    });
    if config.core.bug == Some(paxos::Bug::LocalReads) {
        warn!(
            node = me.0,
            "SELF-TEST BUG local-reads: answering reads from local state"
        );
    }
    let wal = config
        .wal
        .map(|log| WalThread::start(log, persisted_tx, hold));
    let mut core = CoreLoop {
        node,
        start: Instant::now(),
        epoch: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        peers,
        peer_conns,
        addrs: config.addrs,
        clients: FxHashMap::default(),
        replies: FxHashMap::default(),
        actions: Vec::new(),
        outgoing: HashMap::new(),
        wal,
        metrics,
        codec,
        last_role: None,
    };
    core.run(input_rx, persisted_rx, &mut shutdown).await;
    // Drop-to-close: every task that holds the endpoint ends, connections are closed, and the
    // socket is released, so a restarted node can bind the same address at once.
    drop(core);
    endpoint.close(close::SHUTDOWN, b"shutdown");
    for t in tasks {
        let _ = t.await;
    }
    endpoint.wait_idle().await;
    counted.wire.retire_all();
    Ok(())
}

struct CoreLoop {
    node: Node,
    start: Instant,
    /// The wall clock at `start`, ns since the UNIX epoch: the core's time is this plus the
    /// monotonic time since `start`, so it never goes backwards and the batch stamps of
    /// different nodes are comparable (they expire client sessions; see `paxos::KvState`).
    epoch: u64,
    peers: HashMap<NodeId, mpsc::Sender<Vec<Bytes>>>,
    /// Each peer link's current connection, if it has one.
    peer_conns: Vec<(NodeId, watch::Receiver<Option<Conn>>)>,
    addrs: HashMap<NodeId, SocketAddr>,
    /// Where each client's replies go: the stream it last sent a request on.
    clients: FxHashMap<ClientId, ReplyTo>,
    /// Replies produced this turn, per client stream.
    replies: FxHashMap<u64, (mpsc::Sender<Vec<ResponseFrame>>, Vec<ResponseFrame>)>,
    actions: Vec<Action>,
    /// Frames produced this turn, per peer.
    outgoing: HashMap<NodeId, Vec<Bytes>>,
    wal: Option<WalThread>,
    metrics: Arc<Metrics>,
    codec: Codec,
    last_role: Option<(paxos::Role, Option<NodeId>)>,
}

impl CoreLoop {
    fn now(&self) -> Time {
        Time(self.epoch + self.start.elapsed().as_nanos() as u64)
    }

    fn instant(&self, t: Time) -> tokio::time::Instant {
        let since_start = t.as_nanos().saturating_sub(self.epoch);
        tokio::time::Instant::from_std(self.start + Duration::from_nanos(since_start))
    }

    async fn run(
        &mut self,
        mut inputs: mpsc::Receiver<Input>,
        mut persisted: mpsc::UnboundedReceiver<PersistToken>,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        loop {
            let deadline = self.node.next_deadline().map(|t| self.instant(t));
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = shutdown.changed() => return,
                Some(token) = persisted.recv() => {
                    let now = self.now();
                    self.node.handle_persisted(now, token);
                }
                Some(input) = inputs.recv() => self.handle(input),
                _ = sleep => {
                    let now = self.now();
                    self.node.handle_timeout(now);
                }
            }
            // Take everything else that is ready, so one turn batches as much as it can.
            for _ in 0..1024 {
                match inputs.try_recv() {
                    Ok(input) => self.handle(input),
                    Err(_) => break,
                }
            }
            while let Ok(token) = persisted.try_recv() {
                let now = self.now();
                self.node.handle_persisted(now, token);
            }
            if self.node.next_deadline().is_some_and(|t| t <= self.now()) {
                let now = self.now();
                self.node.handle_timeout(now);
            }
            self.flush();
            self.metrics.turns.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn handle(&mut self, input: Input) {
        let now = self.now();
        match input {
            Input::Peer(from, msgs) => {
                self.metrics
                    .messages_in
                    .fetch_add(msgs.len() as u64, Ordering::Relaxed);
                for m in msgs {
                    self.node.handle_message(now, from, m);
                }
            }
            Input::Requests(cmds, reply_to) => {
                self.metrics
                    .requests_in
                    .fetch_add(cmds.len() as u64, Ordering::Relaxed);
                for cmd in cmds {
                    if self
                        .clients
                        .get(&cmd.client)
                        .is_none_or(|r| r.stream != reply_to.stream)
                    {
                        self.clients.insert(cmd.client, reply_to.clone());
                    }
                    self.node.handle_request(now, cmd);
                }
            }
            Input::StreamClosed(stream) => {
                self.clients.retain(|_, r| r.stream != stream);
            }
            Input::Status(reply_to) => {
                let status = NodeStatus {
                    node: self.node.id(),
                    protocol: self.node.config().protocol,
                    role: self.node.role(),
                    ballot: self.node.ballot(),
                    leader: self.node.leader(),
                    executed: self.node.executed(),
                    voting: self.node.voting(),
                    peer_rtt_us: self.peer_rtts(),
                    emulation: self.emulation_status(),
                    counters: Box::new(self.node.stats().into()),
                    wire: Box::new(self.metrics.wire_counters()),
                };
                let _ = reply_to.tx.try_send(vec![ResponseFrame::Status(status)]);
            }
        }
    }

    /// The impairment in force and what it dropped, if the node has an emulated link.
    fn emulation_status(&self) -> Option<EmulationStatus> {
        let impairment = self.metrics.faults.current()?;
        let dropped_fault = self.metrics.emulation.dropped_fault.load(Ordering::Relaxed);
        Some(EmulationStatus {
            impairment,
            dropped_fault,
        })
    }

    /// The RTT measured on each live peer connection, by peer id.
    fn peer_rtts(&self) -> Vec<(NodeId, u64)> {
        let mut rtts: Vec<(NodeId, u64)> = self
            .peer_conns
            .iter()
            .filter_map(|(peer, conn)| {
                let conn = conn.borrow();
                let rtt = conn.as_ref().filter(|c| !c.is_closed())?.rtt()?;
                Some((*peer, rtt.as_micros().min(u64::MAX.into()) as u64))
            })
            .collect();
        rtts.sort_unstable();
        rtts
    }

    /// Drains the core and carries out its actions; with no durability, acknowledges writes at
    /// once and drains again until nothing is left.
    fn flush(&mut self) {
        loop {
            let now = self.now();
            self.node.drain_actions(now, &mut self.actions);
            if self.actions.is_empty() {
                break;
            }
            let mut acked = None;
            for action in std::mem::take(&mut self.actions) {
                match action {
                    Action::Send { to, msg } => {
                        if let Some(frame) = self.encode(&msg) {
                            self.outgoing.entry(to).or_default().push(frame);
                        }
                    }
                    Action::Broadcast { msg } => {
                        if let Some(frame) = self.encode(&msg) {
                            for peer in self.peers.keys() {
                                self.outgoing.entry(*peer).or_default().push(frame.clone());
                            }
                        }
                    }
                    Action::Reply(reply) => self.reply(reply),
                    Action::Persist { token, records } => match &self.wal {
                        Some(wal) => wal.submit(token, records),
                        None => acked = Some(token),
                    },
                }
            }
            if let Some(token) = acked {
                self.node.handle_persisted(now, token);
            }
        }
        self.send_replies();
        for (peer, frames) in self.outgoing.drain() {
            if frames.is_empty() {
                continue;
            }
            let n = frames.len() as u64;
            if let Some(tx) = self.peers.get(&peer) {
                if tx.try_send(frames).is_err() {
                    self.metrics.frames_dropped.fetch_add(n, Ordering::Relaxed);
                }
            }
        }
        let role = (self.node.role(), self.node.leader());
        if self.last_role != Some(role) {
            self.last_role = Some(role);
            info!(
                role = ?role.0,
                ballot = %self.node.ballot(),
                leader = ?role.1.map(|l| l.0),
                executed = self.node.executed().0,
                "status"
            );
        }
    }

    fn encode(&self, msg: &Message) -> Option<Bytes> {
        match self.codec.encode_to_bytes(msg) {
            Ok(b) => Some(b),
            Err(e) => {
                warn!(error = %e, kind = ?msg.kind(), "message not sent: it does not fit a frame");
                None
            }
        }
    }

    fn reply(&mut self, reply: Reply) {
        let Some(to) = self.clients.get(&reply.client) else {
            return;
        };
        let leader_addr = match reply.outcome {
            paxos::Outcome::NotLeader { leader: Some(l) } => self.addrs.get(&l).copied(),
            _ => None,
        };
        self.replies
            .entry(to.stream)
            .or_insert_with(|| (to.tx.clone(), Vec::new()))
            .1
            .push(ResponseFrame::Response(ClientResponse {
                reply,
                leader_addr,
            }));
    }

    /// Hands each client stream the replies of this turn, in one batch.
    fn send_replies(&mut self) {
        for (stream, (tx, batch)) in self.replies.drain() {
            match tx.try_send(batch) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    debug!(stream, "replies dropped: the client is not reading");
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    // The stream is gone: forget the clients that answered through it.
                    self.clients.retain(|_, r| r.stream != stream);
                }
            }
        }
    }
}

/// How long the self-test's `ack-before-durable` node (`paxos::Bug::AckBeforeDurable`) keeps
/// each write in memory before its write-ahead log writes and syncs it: a SIGKILL loses the
/// writes of about this long before it, although the node acknowledged them at once. Killing
/// every node "at once" loses acknowledged writes only if the last kill lands within this of
/// the first, and `paxbench run` applies the faults of one instant one after the other, each
/// kill waiting for its process to be reaped and asking the cluster who leads first (which
/// takes a while once a node is gone): 400 ms apart was seen on a loaded 2-core machine, so
/// 500 ms sometimes lost nothing. Two seconds covers that with room to spare.
pub const ACK_BEFORE_DURABLE_HOLD: Duration = Duration::from_secs(2);

/// The write-ahead log thread: group commit. It takes every batch queued since its last fsync,
/// appends them all, syncs once, and reports the highest token.
struct WalThread {
    tx: std::sync::mpsc::Sender<(PersistToken, Vec<Record>)>,
}

impl WalThread {
    /// `hold`: the self-test's broken log, which keeps each write in memory this long first.
    fn start(
        storage: crate::wal::Wal,
        done: mpsc::UnboundedSender<PersistToken>,
        hold: Option<Duration>,
    ) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<(PersistToken, Vec<Record>)>();
        std::thread::Builder::new()
            .name("wal".into())
            .spawn(move || match hold {
                None => group_commit(storage, rx, done),
                Some(hold) => held_back(storage, rx, done, hold),
            })
            .expect("spawn the wal thread");
        WalThread { tx }
    }

    fn submit(&self, token: PersistToken, records: Vec<Record>) {
        let _ = self.tx.send((token, records));
    }
}

/// The write-ahead log thread's loop: every batch queued since the last fsync is appended, then
/// synced once, then the highest token is reported.
fn group_commit(
    mut storage: crate::wal::Wal,
    rx: std::sync::mpsc::Receiver<(PersistToken, Vec<Record>)>,
    done: mpsc::UnboundedSender<PersistToken>,
) {
    while let Ok((mut token, records)) = rx.recv() {
        let mut result = storage.append(&records);
        while let Ok((t, more)) = rx.try_recv() {
            token = t;
            result = result.and_then(|_| storage.append(&more));
        }
        if let Err(e) = result.and_then(|_| storage.sync()) {
            // Nothing that depends on this write may leave: stop acknowledging.
            tracing::error!(error = %e, "write-ahead log failed; the node stops making progress");
            return;
        }
        if done.send(token).is_err() {
            return;
        }
    }
}

/// The self-test's broken log (`ack-before-durable`): each batch stays in memory for `hold`
/// after it was queued, and only then is appended and synced (in order, group-committed).
/// Tokens are still reported once durable, though the core has sent everything already.
fn held_back(
    mut storage: crate::wal::Wal,
    rx: std::sync::mpsc::Receiver<(PersistToken, Vec<Record>)>,
    done: mpsc::UnboundedSender<PersistToken>,
    hold: Duration,
) {
    use std::sync::mpsc::RecvTimeoutError;
    let mut held: std::collections::VecDeque<(Instant, PersistToken, Vec<Record>)> =
        std::collections::VecDeque::new();
    loop {
        let next = match held.front() {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some((due, _, _)) => rx.recv_timeout(due.saturating_duration_since(Instant::now())),
        };
        match next {
            Ok((token, records)) => held.push_back((Instant::now() + hold, token, records)),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        let mut last = None;
        let mut result = Ok(());
        while held.front().is_some_and(|(due, _, _)| *due <= now) {
            let (_, token, records) = held.pop_front().expect("checked");
            result = result.and_then(|_| storage.append(&records));
            last = Some(token);
        }
        let Some(token) = last else { continue };
        if let Err(e) = result.and_then(|_| storage.sync()) {
            tracing::error!(error = %e, "write-ahead log failed");
            return;
        }
        if done.send(token).is_err() {
            return;
        }
    }
}

/// Our side of one peer pair: the writer, and (on the dialing side) the connection manager.
struct PeerLink {
    me: NodeId,
    peer: NodeId,
    addr: SocketAddr,
    dialer: Dialer,
    dial: bool,
    accepted: watch::Receiver<Option<Conn>>,
    /// The connection in use, published for status answers.
    current: watch::Sender<Option<Conn>>,
    input: mpsc::Sender<Input>,
    metrics: Arc<Metrics>,
    codec: Codec,
}

impl PeerLink {
    async fn run(
        mut self,
        mut frames: mpsc::Receiver<Vec<Bytes>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut backoff = Duration::from_millis(10);
        let mut probed = None;
        if !self.dial {
            tokio::spawn(Self::knock(
                self.dialer.clone(),
                self.addr,
                self.peer,
                self.metrics.clone(),
            ));
        }
        loop {
            let conn = tokio::select! {
                _ = shutdown.changed() => return,
                conn = self.connection() => conn,
            };
            let Some(conn) = conn else {
                // Could not connect: drop what was queued (the core retries what it must).
                self.discard(&mut frames);
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            };
            backoff = Duration::from_millis(10);
            if probed != Some(conn.id()) {
                probed = Some(conn.id());
                tokio::spawn(conn.clone().probe_rtt());
            }
            self.current.send_replace(Some(conn.clone()));
            if self.dial {
                tokio::spawn(read_peer(
                    conn.clone(),
                    self.peer,
                    self.input.clone(),
                    self.metrics.clone(),
                    self.codec,
                    None,
                ));
            }
            // On the accepting side, a newer connection from the peer means it restarted: its
            // old connection is dead, though QUIC only notices after the idle timeout, and
            // writing on it until then would cut the restarted peer off (it then campaigns
            // again and again, deposing the leader each time). On the dialing side, the same
            // watch carries the peer's knock after it restarted: redial.
            if self.dial {
                // Knocks heard before this connection was dialed are answered by it.
                self.accepted.borrow_and_update();
            }
            let mut newer = self.accepted.clone();
            tokio::select! {
                _ = shutdown.changed() => return,
                r = self.write(&conn, &mut frames) => {
                    if let Err(e) = r {
                        debug!(error = %e, "peer link lost");
                    }
                }
                _ = newer.changed() => {
                    debug!(peer = self.peer.0, "the peer restarted: using a new connection");
                }
                // The connection ended (TCP: at once when the peer's process goes, since its
                // kernel closes the socket; QUIC: at the idle timeout): redial or wait for
                // the peer's next connection now, not at the next write.
                _ = conn.closed() => {
                    debug!(reason = ?conn.close_reason(), "peer connection closed");
                }
            }
            // Whatever ended its use, the old connection goes, so that no reader is left on it
            // (a TCP connection is both directions of the pair).
            conn.close(close::REPLACED, b"the link moved on");
        }
    }

    /// Tells the lower-id peer, which dials this pair, that this node is new. A restarted
    /// process cannot reset its predecessor's connections (its stateless-reset key is new), so
    /// the peer would write into a dead connection until the QUIC idle timeout, and this node
    /// would hear nothing from it. One short connection, which the peer closes at once and
    /// takes as the signal to redial; if it fails, the idle timeout still ends the old one.
    async fn knock(dialer: Dialer, addr: SocketAddr, peer: NodeId, metrics: Arc<Metrics>) {
        let knock = dialer.connect_node(addr, peer);
        match tokio::time::timeout(Duration::from_secs(2), knock).await {
            Ok(Ok(conn)) => {
                track(&metrics, Class::Peer, &conn);
                // Until the peer closes it: reading sees that on either transport (a TCP
                // connection learns of its end only by reading).
                let heard = async {
                    while let Some(mut recv) = conn.accept_recv().await {
                        let mut buf = BytesMut::new();
                        while let Ok(true) = recv.read_into(&mut buf).await {}
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(2), heard).await;
                conn.close(close::KNOCKED, b"knock done");
            }
            Ok(Err(e)) => debug!(error = %e, "knock failed"),
            Err(_) => debug!("knock unanswered"),
        }
    }

    /// The current connection: dialed (lower id), or the one the peer dialed to us.
    async fn connection(&mut self) -> Option<Conn> {
        if self.dial {
            match self.dialer.connect_node(self.addr, self.peer).await {
                Ok(c) => {
                    track(&self.metrics, Class::Peer, &c);
                    Some(c)
                }
                Err(e) => {
                    debug!(error = %e, addr = %self.addr, "dial failed");
                    None
                }
            }
        } else {
            loop {
                if let Some(c) = self.accepted.borrow_and_update().clone() {
                    if !c.is_closed() {
                        return Some(c);
                    }
                }
                if self.accepted.changed().await.is_err() {
                    return None;
                }
            }
        }
    }

    async fn write(
        &self,
        conn: &Conn,
        frames: &mut mpsc::Receiver<Vec<Bytes>>,
    ) -> Result<(), String> {
        let mut send = conn.open_send().await.map_err(|e| e.to_string())?;
        let hello = self
            .codec
            .encode_to_bytes(&PeerFrame::Hello(PeerHello { node: self.me }))
            .map_err(|e| e.to_string())?;
        send.write_all(&hello).await.map_err(|e| e.to_string())?;
        let mut buf = BytesMut::new();
        loop {
            let Some(first) = frames.recv().await else {
                return Ok(());
            };
            for f in first {
                buf.extend_from_slice(&f);
            }
            while let Ok(more) = frames.try_recv() {
                for f in more {
                    buf.extend_from_slice(&f);
                }
            }
            // One write of one buffer for everything queued. Handing quinn many small chunks is
            // ~90x slower (measured with examples/transport.rs: 0.04 M against 3.7 M 13-byte
            // messages/s to two peers): it keeps and scans a segment per chunk.
            send.write_chunk(buf.split().freeze())
                .await
                .map_err(|e| e.to_string())?;
        }
    }

    fn discard(&self, frames: &mut mpsc::Receiver<Vec<Bytes>>) {
        while let Ok(dropped) = frames.try_recv() {
            self.metrics
                .frames_dropped
                .fetch_add(dropped.len() as u64, Ordering::Relaxed);
        }
    }
}

/// Reads every stream a peer opens on `conn`: a hello naming `peer`, then messages, forwarded
/// to the event loop in per-read batches. On the accepting side, `publish` is where the
/// peer's link learns of the connection, once its hello matched the certificate.
async fn read_peer(
    conn: Conn,
    peer: NodeId,
    input: mpsc::Sender<Input>,
    metrics: Arc<Metrics>,
    codec: Codec,
    publish: Option<Publish>,
) {
    tokio::spawn(conn.clone().discard_probes());
    while let Some(mut recv) = conn.accept_recv().await {
        let conn = conn.clone();
        let input = input.clone();
        let metrics = metrics.clone();
        let publish = publish.clone();
        tokio::spawn(async move {
            let mut buf = BytesMut::new();
            let mut greeted = false;
            loop {
                match recv.read_into(&mut buf).await {
                    Ok(true) => {}
                    Ok(false) | Err(_) => return,
                }
                let mut msgs = Vec::new();
                let mut kinds = [0u64; MessageKind::ALL.len()];
                loop {
                    match codec.decode::<PeerFrame>(&mut buf) {
                        Ok(None) => break,
                        Ok(Some(PeerFrame::Hello(h))) if !greeted && h.node == peer => {
                            greeted = true;
                            if let Some(p) = &publish {
                                p.publish(&conn);
                            }
                        }
                        Ok(Some(PeerFrame::Hello(h))) => {
                            warn!(
                                claimed = h.node.0,
                                certificate = peer.0,
                                "peer hello contradicts its certificate"
                            );
                            refuse(
                                &conn,
                                &metrics.identities_refused,
                                close::BAD_IDENTITY,
                                "hello does not match certificate",
                            );
                            return;
                        }
                        Ok(Some(PeerFrame::Message(m))) if greeted => {
                            kinds[m.kind() as usize] += 1;
                            msgs.push(m);
                        }
                        Ok(Some(PeerFrame::Message(_))) => {
                            refuse(
                                &conn,
                                &metrics.bad_frames,
                                close::BAD_FRAME,
                                "bad frame: message before hello",
                            );
                            return;
                        }
                        Err(e) => {
                            warn!(peer = peer.0, error = %e, "bad frame from peer");
                            refuse(&conn, &metrics.bad_frames, close::BAD_FRAME, "bad frame");
                            return;
                        }
                    }
                }
                if msgs.is_empty() {
                    continue;
                }
                metrics.count_received(&kinds);
                if input.send(Input::Peer(peer, msgs)).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Accepts connections: peers (ALPN `paxbench-peer/3`, a node certificate of the cluster) and
/// clients (ALPN `paxbench-client/5`, any certificate of the cluster CA).
struct Acceptor {
    me: NodeId,
    cluster: Vec<NodeId>,
    /// Where each peer's link learns of a new connection from it: published once its hello
    /// matched its certificate (or at once for a knock, which sends none).
    incoming: HashMap<NodeId, Arc<watch::Sender<Option<Conn>>>>,
    input: mpsc::Sender<Input>,
    metrics: Arc<Metrics>,
    codec: Codec,
    /// Numbers client streams.
    next_stream: AtomicU64,
    /// Numbers incoming connections in the order they were accepted.
    next_incoming: AtomicU64,
    /// Per lower-id peer, the number of the connection last published to its link.
    published: HashMap<NodeId, Arc<std::sync::Mutex<u64>>>,
}

/// Publishes a peer's connection to its link once its hello is read, unless a connection the
/// peer dialed later was published first: hellos are read on tasks of their own, so the hello of
/// a redialed connection can be read before its predecessor's, and publishing the predecessor
/// then would leave the link on a connection the peer has closed, waiting for a newer one that
/// already came.
#[derive(Clone)]
struct Publish {
    slot: Arc<watch::Sender<Option<Conn>>>,
    last: Arc<std::sync::Mutex<u64>>,
    number: u64,
}

impl Publish {
    fn publish(&self, conn: &Conn) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if self.number > *last {
            *last = self.number;
            self.slot.send_replace(Some(conn.clone()));
        }
    }
}

impl Acceptor {
    async fn run(self, endpoint: NodeEndpoint, mut shutdown: watch::Receiver<bool>) {
        let this = Arc::new(self);
        loop {
            let incoming = tokio::select! {
                _ = shutdown.changed() => return,
                i = endpoint.accept() => match i { Some(i) => i, None => return },
            };
            let this = this.clone();
            // From 1: a link's first connection is newer than none.
            let number = this.next_incoming.fetch_add(1, Ordering::Relaxed) + 1;
            tokio::spawn(async move {
                let remote = incoming.remote_address();
                match incoming.handshake().await {
                    Ok((conn, Remote::Peer(id))) => {
                        track(&this.metrics, Class::Peer, &conn);
                        this.serve_peer(conn, id, number).await
                    }
                    Ok((conn, Remote::Client(_))) => {
                        track(&this.metrics, Class::Client, &conn);
                        this.serve_client(conn).await
                    }
                    Err(e) => {
                        // Wrong CA, no certificate, another node's certificate, or a client
                        // certificate on the peer ALPN: refused (accept_incoming closed it).
                        this.metrics
                            .handshakes_failed
                            .fetch_add(1, Ordering::Relaxed);
                        warn!(%remote, error = %e, "refused a connection");
                    }
                }
            });
        }
    }

    async fn serve_peer(&self, conn: Conn, id: NodeId, number: u64) {
        if id > self.me && self.cluster.contains(&id) {
            // A higher id never dials for real: this is its knock after a restart (see
            // `PeerLink::knock`). Our link to it redials, leaving its predecessor's connection.
            debug!(peer = id.0, "a restarted peer knocked: redialing it");
            if let Some(slot) = self.incoming.get(&id) {
                slot.send_replace(Some(conn.clone()));
            }
            conn.close(close::KNOCKED, b"knock heard");
            return;
        }
        if id == self.me || !self.cluster.contains(&id) {
            // Only lower ids dial us; anything else is a stranger or a confused peer.
            warn!(
                claimed = id.0,
                "peer is not a lower-id member of this cluster"
            );
            refuse(
                &conn,
                &self.metrics.identities_refused,
                close::BAD_IDENTITY,
                "unknown peer",
            );
            return;
        }
        // The link switches to this connection only once its hello proved the peer (see
        // `read_peer`): one that lies would otherwise replace the live link before it is
        // refused.
        read_peer(
            conn,
            id,
            self.input.clone(),
            self.metrics.clone(),
            self.codec,
            self.incoming
                .get(&id)
                .zip(self.published.get(&id))
                .map(|(slot, last)| Publish {
                    slot: slot.clone(),
                    last: last.clone(),
                    number,
                }),
        )
        .await;
    }

    async fn serve_client(&self, conn: Conn) {
        while let Some((send, recv)) = conn.accept_bi().await {
            let (tx, rx) = mpsc::channel::<Vec<ResponseFrame>>(1024);
            let reply_to = ReplyTo {
                stream: self.next_stream.fetch_add(1, Ordering::Relaxed),
                tx,
            };
            tokio::spawn(write_responses(send, rx, self.codec));
            let input = self.input.clone();
            let metrics = self.metrics.clone();
            let conn = conn.clone();
            let codec = self.codec;
            let me = self.me;
            let stream = reply_to.stream;
            let closed = self.input.clone();
            let read = async move {
                let mut recv: RecvStream = recv;
                let mut buf = BytesMut::new();
                loop {
                    match recv.read_into(&mut buf).await {
                        Ok(true) => {}
                        Ok(false) | Err(_) => return,
                    }
                    let mut requests = Vec::new();
                    let mut bad = None;
                    loop {
                        match codec.decode::<ClientFrame>(&mut buf) {
                            Ok(None) => break,
                            Ok(Some(ClientFrame::Request(cmd))) => requests.push(cmd),
                            Ok(Some(ClientFrame::StatusRequest)) => {
                                if input.send(Input::Status(reply_to.clone())).await.is_err() {
                                    return;
                                }
                            }
                            Ok(Some(ClientFrame::Impair(impairment))) => {
                                // The socket's business, not the core's: applied here.
                                let result = metrics.faults.set(me, &impairment);
                                if let Err(e) = &result {
                                    warn!(error = %e, "impairment refused");
                                }
                                let answer =
                                    ResponseFrame::Impaired(result.map_err(|e| e.to_string()));
                                // Awaited (this is the stream's reader, not the core): the
                                // answer is never dropped for a full queue.
                                if reply_to.tx.send(vec![answer]).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                bad = Some(e);
                                break;
                            }
                        }
                    }
                    // What decoded before a bad frame is still served, in order.
                    if !requests.is_empty()
                        && input
                            .send(Input::Requests(requests, reply_to.clone()))
                            .await
                            .is_err()
                    {
                        return;
                    }
                    if let Some(e) = bad {
                        warn!(error = %e, "bad frame from client");
                        // The client is told what was wrong in the close reason.
                        let reason = format!("bad frame: {e}");
                        refuse(&conn, &metrics.bad_frames, close::BAD_FRAME, &reason);
                        return;
                    }
                }
            };
            tokio::spawn(async move {
                read.await;
                // However the stream ended, the core forgets it, so a finished client leaves
                // nothing behind (its writer ends with it: see `write_responses`).
                let _ = closed.send(Input::StreamClosed(stream)).await;
            });
        }
    }
}

async fn write_responses(
    mut send: SendStream,
    mut rx: mpsc::Receiver<Vec<ResponseFrame>>,
    codec: Codec,
) {
    let mut buf = BytesMut::new();
    loop {
        // Ends when the client stops reading or its connection is gone, not only when the
        // core drops the stream: a writer waiting for replies that never come would keep the
        // whole connection alive (measured: about 0.25 MiB per finished generator per node).
        let first = tokio::select! {
            first = rx.recv() => first,
            _ = send.stopped() => None,
        };
        let Some(first) = first else { return };
        for frame in first {
            let _ = codec.encode(&frame, &mut buf);
        }
        while let Ok(more) = rx.try_recv() {
            for frame in more {
                let _ = codec.encode(&frame, &mut buf);
            }
        }
        if send.write_all(&buf).await.is_err() {
            return;
        }
        buf.clear();
    }
}
