//! The network side: one task per node connection (owning the `Connection`, sending batches
//! and forwarding replies with their arrival instant), and one driver loop that owns every
//! request's state. The driver wakes on replies and on a 1 ms timer; at each tick it issues
//! everything the schedule says is due (one `send` per connection), expires timed-out requests
//! and re-sends redirected ones.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use node::client::Connection;
use paxos::{ClientId, Command, NodeId, Outcome, Reply, RequestId, Role};
use tokio::sync::mpsc;
use wire::{ClientFrame, ResponseFrame};

use crate::record::Recorder;
use crate::schedule::Schedule;
use crate::workload::OpGenerator;
use crate::{LoadConfig, LoadError, Mode, Target};

/// How many request ids a session may run ahead of its oldest unanswered request: the nodes'
/// reply-cache window is 4096; a little margin keeps us clear of its edge.
const SESSION_WINDOW: u64 = 4_000;
/// After a `NotLeader` that names no leader (an election is running), wait this long before
/// trying another node.
const NO_LEADER_BACKOFF: Duration = Duration::from_millis(20);
/// A node whose connection failed is not retried for this long (its requests time out).
const RECONNECT_BACKOFF: Duration = Duration::from_secs(1);

enum Event {
    Reply { reply: Reply, at: Instant },
    Lost { node: NodeId, why: String },
}

/// A request in flight, kept until it is answered (even after it timed out, so the session
/// window keeps counting it) or the run ends.
struct Pending {
    cmd: Command,
    intended: Instant,
    lane: usize,
    node: NodeId,
    redirects: u32,
    timed_out: bool,
}

/// A stream of requests: open loop has one per target node, closed loop one per client.
struct Lane {
    node: NodeId,
    session: u64,
    next: u64,
    /// Unanswered request ids of the current session (timed-out ones included).
    outstanding: BTreeSet<u64>,
    /// Requests neither answered nor timed out.
    live: usize,
    /// Closed loop: when each slot freed since the last tick (reply arrival, or the deadline
    /// of a timeout); the next request in that slot is timed from there, so the generator's
    /// own delay in reacting counts as latency and as send lag.
    freed: VecDeque<Instant>,
    ops: OpGenerator,
}

pub(crate) struct Driver {
    cfg: LoadConfig,
    start: Instant,
    end: Instant,
    pub(crate) rec: Recorder,
    conns: HashMap<NodeId, mpsc::UnboundedSender<Vec<ClientFrame>>>,
    down_until: HashMap<NodeId, Instant>,
    events_tx: mpsc::UnboundedSender<Event>,
    events_rx: mpsc::UnboundedReceiver<Event>,
    pending: HashMap<(u64, u64), Pending>,
    lanes: Vec<Lane>,
    next_session: u64,
    /// Every request's deadline (intended time + timeout), earliest first.
    deadlines: BinaryHeap<Reverse<(Instant, (u64, u64))>>,
    retries: VecDeque<(Instant, (u64, u64))>,
    /// Frames to send at the end of this tick, per node, each with its intended send time if
    /// it is a first send (re-sends after a redirect do not count toward the send lag).
    batches: HashMap<NodeId, Vec<(Option<Instant>, ClientFrame)>>,
    schedule: Option<Schedule>,
    round_robin: usize,
}

impl Driver {
    /// Connects, finds the targets, and prepares the lanes; the schedule starts at `start`.
    pub(crate) async fn connect(cfg: LoadConfig) -> Result<Driver, LoadError> {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let mut opened: HashMap<NodeId, Connection> = HashMap::new();
        let targets: Vec<NodeId> = match &cfg.target {
            Target::All => cfg.nodes.iter().map(|n| n.0).collect(),
            Target::Nodes(ids) => ids.clone(),
            Target::Leader => {
                let mut leader = None;
                for &(id, addr) in &cfg.nodes {
                    let open = Connection::open(&cfg.endpoint, id, addr);
                    let Ok(Ok(mut c)) = tokio::time::timeout(cfg.timeout, open).await else {
                        continue;
                    };
                    let status = tokio::time::timeout(Duration::from_secs(1), c.status()).await;
                    opened.insert(id, c);
                    if let Ok(Ok(s)) = status {
                        if matches!(s.role, Role::Leader | Role::Single) {
                            leader = Some(id);
                        } else if let Some(l) = s.leader {
                            leader = Some(l);
                        }
                    }
                    if leader.is_some() {
                        break;
                    }
                }
                // No leader known yet: start at the first node and follow its redirects.
                vec![leader.unwrap_or(cfg.nodes[0].0)]
            }
        };
        let lane_count = match cfg.mode {
            Mode::Open { .. } => targets.len(),
            Mode::Closed { clients, .. } => clients,
        };
        let start = Instant::now() + Duration::from_millis(1);
        let mut d = Driver {
            rec: Recorder::new(start, cfg.warmup, cfg.duration),
            end: start + cfg.warmup + cfg.duration,
            start,
            conns: HashMap::new(),
            down_until: HashMap::new(),
            events_tx,
            events_rx,
            pending: HashMap::new(),
            lanes: Vec::new(),
            next_session: cfg.session_base,
            deadlines: BinaryHeap::new(),
            retries: VecDeque::new(),
            batches: HashMap::new(),
            schedule: match cfg.mode {
                Mode::Open { rate, arrivals } => {
                    Some(Schedule::new(rate, arrivals, cfg.workload.seed))
                }
                Mode::Closed { .. } => None,
            },
            round_robin: 0,
            cfg,
        };
        for (id, c) in opened {
            d.spawn_connection(id, c);
        }
        for i in 0..lane_count {
            let session = d.new_session();
            d.lanes.push(Lane {
                node: targets[i % targets.len()],
                session,
                next: 0,
                outstanding: BTreeSet::new(),
                live: 0,
                freed: VecDeque::new(),
                ops: OpGenerator::new(&d.cfg.workload, i as u64),
            });
        }
        for &node in &targets {
            d.ensure_connection(node).await;
        }
        Ok(d)
    }

    fn new_session(&mut self) -> u64 {
        let s = self.next_session;
        self.next_session = self.next_session.wrapping_add(1);
        s
    }

    fn spawn_connection(&mut self, node: NodeId, conn: Connection) {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(connection_task(conn, rx, self.events_tx.clone()));
        self.conns.insert(node, tx);
    }

    /// Opens a connection to `node` unless one is open or it failed recently; false if there
    /// is none.
    async fn ensure_connection(&mut self, node: NodeId) -> bool {
        if self.conns.contains_key(&node) {
            return true;
        }
        let now = Instant::now();
        if self.down_until.get(&node).is_some_and(|&t| now < t) {
            return false;
        }
        let Some(&(_, addr)) = self.cfg.nodes.iter().find(|n| n.0 == node) else {
            return false;
        };
        match tokio::time::timeout(
            self.cfg.timeout,
            Connection::open(&self.cfg.endpoint, node, addr),
        )
        .await
        {
            Ok(Ok(c)) => {
                self.spawn_connection(node, c);
                true
            }
            other => {
                let why = match other {
                    Ok(Err(e)) => e.to_string(),
                    _ => "connect timed out".into(),
                };
                tracing::warn!(node = node.0, %why, "load generator cannot connect");
                self.down_until.insert(node, now + RECONNECT_BACKOFF);
                false
            }
        }
    }

    /// Runs the load to the end of the window, then waits (at most the timeout) for what is
    /// still in flight.
    pub(crate) async fn run(&mut self) {
        let mut tick = tokio::time::interval_at(self.start.into(), Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let hard_stop = self.end + self.cfg.timeout + Duration::from_millis(50);
        let mut due = Vec::new();
        loop {
            tokio::select! {
                ev = self.events_rx.recv() => {
                    if let Some(ev) = ev {
                        self.handle_event(ev);
                    }
                }
                _ = tick.tick() => {}
            }
            while let Ok(ev) = self.events_rx.try_recv() {
                self.handle_event(ev);
            }
            let now = Instant::now();
            if now >= self.start {
                self.issue_due(now, &mut due);
            }
            self.retry_due(now);
            self.expire(now);
            self.flush().await;
            let drained = || self.lanes.iter().all(|l| l.live == 0);
            if (now >= self.end && drained()) || now >= hard_stop {
                break;
            }
        }
        // Dropping the senders ends the connection tasks, which close their connections.
        self.conns.clear();
    }

    fn issue_due(&mut self, now: Instant, due: &mut Vec<Duration>) {
        match self.cfg.mode {
            Mode::Open { .. } => {
                let sched = self.schedule.as_mut().expect("open loop has a schedule");
                due.clear();
                sched.due(now - self.start, self.end - self.start, due);
                for &offset in due.iter() {
                    let lane = self.round_robin % self.lanes.len();
                    self.round_robin += 1;
                    self.issue(lane, self.start + offset);
                }
            }
            Mode::Closed { depth, .. } => {
                if now >= self.end {
                    return;
                }
                // Closed loop has no schedule: a request is meant to go when its slot frees.
                for lane in 0..self.lanes.len() {
                    while self.lanes[lane].live < depth {
                        let freed = self.lanes[lane].freed.pop_front();
                        self.issue(lane, freed.map_or(now, |t| t.min(now)));
                    }
                    self.lanes[lane].freed.clear();
                }
            }
        }
    }

    fn issue(&mut self, lane_ix: usize, intended: Instant) {
        let rotate = {
            let lane = &self.lanes[lane_ix];
            lane.outstanding
                .first()
                .is_some_and(|&oldest| lane.next + 1 - oldest >= SESSION_WINDOW)
        };
        if rotate {
            // The session's window is full of unanswered requests: carry on in a fresh one
            // rather than slow the schedule down.
            let session = self.new_session();
            let lane = &mut self.lanes[lane_ix];
            lane.session = session;
            lane.next = 0;
            lane.outstanding.clear();
        }
        let lane = &mut self.lanes[lane_ix];
        lane.next += 1;
        lane.live += 1;
        lane.outstanding.insert(lane.next);
        let cmd = Command {
            client: ClientId(lane.session),
            request: RequestId(lane.next),
            op: lane.ops.next_op(),
        };
        let key = (lane.session, lane.next);
        let node = lane.node;
        self.deadlines
            .push(Reverse((intended + self.cfg.timeout, key)));
        self.batches
            .entry(node)
            .or_default()
            .push((Some(intended), ClientFrame::Request(cmd.clone())));
        self.pending.insert(
            key,
            Pending {
                cmd,
                intended,
                lane: lane_ix,
                node,
                redirects: 0,
                timed_out: false,
            },
        );
    }

    async fn flush(&mut self) {
        if self.batches.values().all(Vec::is_empty) {
            return;
        }
        let nodes: Vec<NodeId> = self.batches.keys().copied().collect();
        for node in nodes {
            let batch = std::mem::take(self.batches.get_mut(&node).expect("listed above"));
            if batch.is_empty() || !self.ensure_connection(node).await {
                // Unreachable node: these requests stay pending and time out.
                continue;
            }
            let now = Instant::now();
            let frames = batch
                .into_iter()
                .map(|(intended, f)| {
                    if let Some(intended) = intended {
                        self.rec.record_send(intended, now);
                    }
                    f
                })
                .collect();
            let tx = &self.conns[&node];
            if tx.send(frames).is_err() {
                self.conns.remove(&node);
            }
        }
    }

    fn handle_event(&mut self, ev: Event) {
        match ev {
            Event::Lost { node, why } => {
                tracing::warn!(node = node.0, %why, "load generator lost a connection");
                self.conns.remove(&node);
            }
            Event::Reply { reply, at } => self.handle_reply(reply, at),
        }
    }

    /// Forgets a request answered at `at`, freeing its slot unless its timeout already did.
    fn finish(&mut self, key: (u64, u64), at: Instant) -> Option<Pending> {
        let p = self.pending.remove(&key)?;
        let closed = matches!(self.cfg.mode, Mode::Closed { .. });
        let lane = &mut self.lanes[p.lane];
        if lane.session == key.0 {
            lane.outstanding.remove(&key.1);
        }
        if !p.timed_out {
            lane.live -= 1;
            if closed {
                lane.freed.push_back(at);
            }
        }
        Some(p)
    }

    fn handle_reply(&mut self, reply: Reply, at: Instant) {
        let key = (reply.client.0, reply.request.0);
        let Some(p) = self.pending.get_mut(&key) else {
            return; // A duplicate, or an answer to a request from before a redirect.
        };
        match reply.outcome {
            Outcome::Value(_) | Outcome::Done => {
                let p = self.finish(key, at).expect("present above");
                if !p.timed_out {
                    self.rec.record_success(p.intended, at);
                }
            }
            Outcome::NotLeader { leader } => {
                if p.timed_out {
                    self.finish(key, at);
                    return;
                }
                p.redirects += 1;
                if p.redirects > self.cfg.max_redirects {
                    let p = self.finish(key, at).expect("present above");
                    self.rec.record_error(p.intended);
                    return;
                }
                match leader {
                    Some(l) if l != p.node => {
                        if self.cfg.target == Target::Leader {
                            self.lanes[p.lane].node = l;
                        }
                        p.node = l;
                        let frame = ClientFrame::Request(p.cmd.clone());
                        self.batches.entry(l).or_default().push((None, frame));
                    }
                    _ => {
                        // No leader known: try the next node after a short pause.
                        let i = self.cfg.nodes.iter().position(|n| n.0 == p.node);
                        p.node = self.cfg.nodes[i.map_or(0, |i| i + 1) % self.cfg.nodes.len()].0;
                        self.retries
                            .push_back((Instant::now() + NO_LEADER_BACKOFF, key));
                    }
                }
            }
            Outcome::Expired => {
                let p = self.finish(key, at).expect("present above");
                if !p.timed_out {
                    self.rec.record_error(p.intended);
                }
            }
        }
    }

    fn retry_due(&mut self, now: Instant) {
        while self.retries.front().is_some_and(|(t, _)| *t <= now) {
            let (_, key) = self.retries.pop_front().expect("checked");
            if let Some(p) = self.pending.get(&key) {
                if !p.timed_out {
                    let frame = ClientFrame::Request(p.cmd.clone());
                    self.batches.entry(p.node).or_default().push((None, frame));
                }
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        while self
            .deadlines
            .peek()
            .is_some_and(|Reverse((t, _))| *t <= now)
        {
            let Reverse((_, key)) = self.deadlines.pop().expect("checked");
            if let Some(p) = self.pending.get_mut(&key) {
                if !p.timed_out {
                    p.timed_out = true;
                    let (intended, lane) = (p.intended, p.lane);
                    self.lanes[lane].live -= 1;
                    if matches!(self.cfg.mode, Mode::Closed { .. }) {
                        self.lanes[lane].freed.push_back(now);
                    }
                    self.rec.record_timeout(intended);
                }
            }
        }
    }
}

/// Owns one connection: sends what the driver hands it (one write per batch) and forwards every
/// reply stamped with the instant it was decoded.
async fn connection_task(
    mut conn: Connection,
    mut rx: mpsc::UnboundedReceiver<Vec<ClientFrame>>,
    events: mpsc::UnboundedSender<Event>,
) {
    let node = conn.node();
    loop {
        // `recv` is cancel-safe: it buffers partial frames in the connection and quinn's
        // `read_chunk` loses nothing when dropped. `send` is awaited outside the select.
        tokio::select! {
            frames = rx.recv() => {
                let Some(frames) = frames else {
                    conn.close();
                    return;
                };
                if let Err(e) = conn.send(&frames).await {
                    let _ = events.send(Event::Lost { node, why: e.to_string() });
                    return;
                }
            }
            r = conn.recv() => match r {
                Ok(ResponseFrame::Response(resp)) => {
                    let at = Instant::now();
                    if events.send(Event::Reply { reply: resp.reply, at }).is_err() {
                        return;
                    }
                }
                Ok(ResponseFrame::Status(_)) => {}
                Err(e) => {
                    let _ = events.send(Event::Lost { node, why: e.to_string() });
                    return;
                }
            }
        }
    }
}
