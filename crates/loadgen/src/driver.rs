//! The network side: one task per node connection (owning the `Connection`, writing the
//! batches the driver encoded and forwarding the replies of each read, in one event, with their
//! arrival instant), and one driver loop that owns every request's state.
//!
//! The driver sleeps until the next thing it must do (or until a reply arrives): the next
//! open-loop send, the next request deadline, the next redirect retry, the start or the end of
//! the run. The wake-up is a precise [`Pacer`] (a timerfd on Linux), so an open-loop request
//! leaves within tens of µs of its intended instant instead of at the next 1 ms tick. At high
//! rates sends are coalesced: after a send the driver does not wake for the next one before
//! [`LoadConfig::pacing`] has passed, and then sends everything due (one write per connection).
//! Closed loop sends as soon as replies free slots, and wakes on the timer only for timeouts
//! and retries.
//!
//! Bookkeeping is per session: request ids of a session are sequential, so its unanswered
//! requests live in a ring indexed by `id - base` (sessions themselves are numbered from
//! `session_base`, so a reply finds its session by subtraction). Open-loop deadlines are
//! monotonic in issue order, so they are a FIFO; closed-loop ones nearly so, and a reply that
//! arrives after its deadline is counted as a timeout whatever the FIFO order, so timeouts are
//! exact.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use node::client::Connection;
use paxos::{ClientId, Command, NodeId, Outcome, Reply, RequestId, Role};
use tokio::sync::mpsc;
use wire::{ClientFrame, Codec, ResponseFrame};

use crate::cpu::{CpuSample, GeneratorCpu};
use crate::history::EntryId;
use crate::pacer::{earliest, Pacer};
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
/// The shortest time allowed for opening a connection (see `connect_timeout`).
const MIN_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

enum Event {
    /// Every reply one read of a connection brought, stamped with the instant they were
    /// decoded (one event and one wake-up of the driver per read, not per reply).
    Replies {
        replies: Vec<Reply>,
        at: Instant,
    },
    Lost {
        node: NodeId,
        why: String,
    },
    /// A connection attempt made in the background ended (see [`Driver::flush`]).
    Connected {
        /// Index into `cfg.nodes`.
        node: usize,
        result: Result<Connection, String>,
    },
}

/// When a batch's buffer has less room than this left, it gets [`BATCH_BUFFER`] more: requests
/// are encoded into one buffer and split off per write, so a write costs no allocation of its
/// own (the transport keeps each write until it is acknowledged, so the room is not reused at
/// once).
const BATCH_MIN_ROOM: usize = 4 * 1024;
const BATCH_BUFFER: usize = 64 * 1024;

/// A request in flight, kept until it is answered (even after it timed out, so the session
/// window keeps counting it) or the run ends.
struct Pending {
    cmd: Command,
    intended: Instant,
    /// Index into `cfg.nodes` of the node it was last sent to.
    node: usize,
    redirects: u32,
    timed_out: bool,
    /// Its entry in the history, if it is recorded.
    hist: Option<EntryId>,
    /// The self-test's broken client: how many fresh-id retries of the operation this one is
    /// (0: its first request).
    fresh_id_retries: u32,
}

/// One client session: its unanswered requests, by request id.
struct Session {
    lane: usize,
    /// The request id of `ring[0]`.
    base: u64,
    /// `None` once answered; the front is trimmed, so it is the oldest unanswered request.
    ring: VecDeque<Option<Pending>>,
}

/// A request's place: the session's index (its id minus `session_base`) and its request id.
type Key = (usize, u64);

/// How a read node ([`LoadConfig::read_nodes`]) is doing. One whose `Get` timed out, or that
/// cannot be connected to, is passed over for [`RECONNECT_BACKOFF`]; then one `Get` probes it,
/// and it gets no more until that one is answered, so a dead learner costs a timeout a second,
/// not its share of the reads. With every read node passed over, `Get`s go to the target.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Reader {
    Healthy,
    Shunned { until: Instant },
    Probing,
}

/// A stream of requests: open loop has one per target node, closed loop one per client.
struct Lane {
    /// Index into `cfg.nodes`.
    node: usize,
    /// Index into `Driver::sessions` of the current session.
    session: usize,
    /// The last request id issued in the current session.
    next: u64,
    /// Requests neither answered nor timed out.
    live: usize,
    /// Closed loop: when each slot freed since the last send (reply arrival, or the deadline
    /// of a timeout); the next request in that slot is timed from there, so the generator's
    /// own delay in reacting counts as latency and as send lag.
    freed: VecDeque<Instant>,
    ops: OpGenerator,
}

/// What to write to one node at the end of this wake-up.
#[derive(Default)]
struct Batch {
    /// The frames, encoded back to back.
    out: BytesMut,
    /// The intended send times of the first sends among them (re-sends after a redirect do
    /// not count toward the send lag), and their history entries: a first send is the
    /// operation's invocation.
    first_sends: Vec<(Instant, Option<EntryId>)>,
}

pub(crate) struct Driver {
    cfg: LoadConfig,
    start: Instant,
    end: Instant,
    pub(crate) rec: Recorder,
    /// Per node of `cfg.nodes`: its connection task, and until when it is not retried.
    conns: Vec<Option<mpsc::UnboundedSender<Bytes>>>,
    down_until: Vec<Option<Instant>>,
    /// Per node: a connection attempt is under way in the background.
    connecting: Vec<bool>,
    batches: Vec<Batch>,
    events_tx: mpsc::UnboundedSender<Event>,
    events_rx: mpsc::UnboundedReceiver<Event>,
    sessions: Vec<Session>,
    lanes: Vec<Lane>,
    /// Every request's deadline (intended time + timeout), in issue order.
    deadlines: VecDeque<(Instant, Key)>,
    retries: VecDeque<(Instant, Key)>,
    schedule: Option<Schedule>,
    /// Open loop: when the driver next sends (the next intended instant, but no sooner than
    /// `pacing` after the previous send); `None` when the schedule is done. Closed loop: the
    /// start, until the first requests are sent, then the deadline of a timeout that freed a
    /// slot (slots a reply frees are refilled on the wake-up the reply itself brings).
    next_send: Option<Instant>,
    round_robin: usize,
    /// Indexes into `cfg.nodes` of [`LoadConfig::read_nodes`], and the next one a `Get` goes to.
    read_nodes: Vec<usize>,
    next_reader: usize,
    /// Per node of `cfg.nodes`: how a read node is doing (see [`Reader`]).
    readers: Vec<Reader>,
    pacer: Pacer,
    /// Open loop at rates of two or more requests per pacing interval: the pacing interval,
    /// and sends happen on the grid `start + k * pacing`, which the pacer keeps as one
    /// periodic timer instead of setting a timer per send ([`crate::pacer`] says why).
    grid: Option<Duration>,
    cpu: CpuWindow,
    /// How requests are framed (the connections' codec).
    codec: Codec,
}

/// The generator's CPU reading over the measured window (see [`crate::cpu`]).
enum CpuWindow {
    /// Before the window: read at its start.
    Before,
    /// In it: the reading at its start, and the first sends flushed since.
    During(CpuSample, u64),
    /// After it (or unreadable: `None`).
    Done(Option<GeneratorCpu>),
}

impl Driver {
    /// Connects, finds the targets, and prepares the lanes; the schedule starts at `start`.
    pub(crate) async fn connect(cfg: LoadConfig) -> Result<Driver, LoadError> {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let mut opened: Vec<(NodeId, Connection)> = Vec::new();
        let targets: Vec<NodeId> = match &cfg.target {
            Target::All => cfg.nodes.iter().map(|n| n.0).collect(),
            Target::Nodes(ids) => ids.clone(),
            Target::Leader => {
                let mut leader = None;
                for &(id, addr) in &cfg.nodes {
                    let limit = connect_timeout(&cfg);
                    let Ok(mut c) = open_within(&cfg.endpoint, id, addr, limit).await else {
                        continue;
                    };
                    let status = tokio::time::timeout(Duration::from_secs(1), c.status()).await;
                    opened.push((id, c));
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
                // No leader known yet (or one outside the node list): start at the first node
                // and follow its redirects.
                let known = leader.filter(|l| cfg.nodes.iter().any(|n| n.0 == *l));
                vec![known.unwrap_or(cfg.nodes[0].0)]
            }
        };
        let targets: Vec<usize> = targets
            .iter()
            .map(|id| {
                cfg.nodes
                    .iter()
                    .position(|n| n.0 == *id)
                    .ok_or_else(|| LoadError::Invalid(format!("node {id} is not in the cluster")))
            })
            .collect::<Result<_, _>>()?;
        let read_nodes: Vec<usize> = cfg
            .read_nodes
            .iter()
            .map(|id| {
                cfg.nodes.iter().position(|n| n.0 == *id).ok_or_else(|| {
                    LoadError::Invalid(format!("read node {id} is not in the cluster"))
                })
            })
            .collect::<Result<_, _>>()?;
        let lane_count = match cfg.mode {
            Mode::Open { .. } => targets.len(),
            Mode::Closed { clients, .. } => clients,
        };
        // Connected before the load starts, so no request's latency holds a handshake; all at
        // once, so a node that does not answer delays the start by one connect timeout at most,
        // and before the start is fixed, so that delay is not a backlog.
        let mut opened: Vec<(usize, Connection)> = opened
            .into_iter()
            .filter_map(|(id, c)| Some((cfg.nodes.iter().position(|n| n.0 == id)?, c)))
            .collect();
        let mut wanted: Vec<usize> = targets.iter().chain(&read_nodes).copied().collect();
        wanted.sort_unstable();
        wanted.dedup();
        wanted.retain(|ix| opened.iter().all(|(o, _)| o != ix));
        let mut connects = tokio::task::JoinSet::new();
        for &ix in &wanted {
            let (id, addr) = cfg.nodes[ix];
            let (endpoint, limit) = (cfg.endpoint.clone(), connect_timeout(&cfg));
            connects.spawn(async move { (ix, open_within(&endpoint, id, addr, limit).await) });
        }
        let mut unreachable = Vec::new();
        while let Some(done) = connects.join_next().await {
            match done {
                Ok((ix, Ok(c))) => opened.push((ix, c)),
                Ok((ix, Err(why))) => unreachable.push((ix, why)),
                Err(e) => tracing::warn!(error = %e, "a connection attempt failed"),
            }
        }
        let pacer = Pacer::new().map_err(LoadError::Timer)?;
        let n = cfg.nodes.len();
        let start = Instant::now() + Duration::from_millis(1);
        let schedule = match cfg.mode {
            Mode::Open { rate, arrivals } => Some(Schedule::new(rate, arrivals, cfg.workload.seed)),
            Mode::Closed { .. } => None,
        };
        let mut rec = Recorder::new(start, cfg.warmup, cfg.duration);
        if let Some(started) = &cfg.started {
            let _ = started.set(start);
        }
        if let Some(cap) = cfg.history {
            rec = rec.with_history(cap, expected_requests(&cfg));
        }
        let grid = match cfg.mode {
            Mode::Open { rate, .. } if rate * cfg.pacing.as_secs_f64() >= 2.0 => Some(cfg.pacing),
            _ => None,
        };
        let mut d = Driver {
            grid,
            rec,
            end: start + cfg.warmup + cfg.duration,
            start,
            conns: vec![None; n],
            down_until: vec![None; n],
            connecting: vec![false; n],
            batches: (0..n).map(|_| Batch::default()).collect(),
            events_tx,
            events_rx,
            sessions: Vec::new(),
            lanes: Vec::new(),
            deadlines: VecDeque::new(),
            retries: VecDeque::new(),
            // Closed loop: only the first sends, at the start.
            next_send: Some(start + schedule.as_ref().map_or(Duration::ZERO, Schedule::peek)),
            schedule,
            round_robin: 0,
            read_nodes,
            next_reader: 0,
            readers: vec![Reader::Healthy; n],
            pacer,
            cpu: CpuWindow::Before,
            codec: Codec::default(),
            cfg,
        };
        d.next_send = d.next_send.map(|t| d.on_grid(t));
        for (ix, c) in opened {
            d.spawn_connection(ix, c);
        }
        for (ix, why) in unreachable {
            d.unreachable(ix, &why);
        }
        for i in 0..lane_count {
            let session = d.new_session(i);
            d.lanes.push(Lane {
                node: targets[i % targets.len()],
                session,
                next: 0,
                live: 0,
                freed: VecDeque::new(),
                ops: OpGenerator::new(&d.cfg.workload, i as u64),
            });
        }
        Ok(d)
    }

    /// The first point of the send grid at or after `t` (`t` itself without a grid).
    fn on_grid(&self, t: Instant) -> Instant {
        let Some(p) = self.grid else { return t };
        let since = t.saturating_duration_since(self.start).as_nanos();
        let p = p.as_nanos();
        let k = since.div_ceil(p);
        self.start + Duration::from_nanos(u64::try_from(k * p).unwrap_or(u64::MAX))
    }

    fn node_ix(&self, id: NodeId) -> Option<usize> {
        self.cfg.nodes.iter().position(|n| n.0 == id)
    }

    /// Starts a session for `lane`; returns its index.
    fn new_session(&mut self, lane: usize) -> usize {
        self.sessions.push(Session {
            lane,
            base: 1,
            ring: VecDeque::new(),
        });
        self.sessions.len() - 1
    }

    fn client_id(&self, session: usize) -> ClientId {
        ClientId::new(
            self.cfg.sessions_created,
            self.cfg.session_base.wrapping_add(session as u64),
        )
    }

    fn pending(&mut self, (s, id): Key) -> Option<&mut Pending> {
        let session = self.sessions.get_mut(s)?;
        let i = id.checked_sub(session.base)?;
        session.ring.get_mut(usize::try_from(i).ok()?)?.as_mut()
    }

    fn spawn_connection(&mut self, node: usize, conn: Connection) {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(connection_task(conn, rx, self.events_tx.clone()));
        self.conns[node] = Some(tx);
    }

    /// When the driver must next wake even if no reply arrives.
    fn next_wake(&self, now: Instant, hard_stop: Instant) -> Instant {
        let window_start = self.start + self.cfg.warmup;
        let cpu_due = matches!(self.cpu, CpuWindow::Before) && now < window_start;
        earliest([
            self.next_send,
            cpu_due.then_some(window_start),
            (now < self.end).then_some(self.end),
            self.deadlines.front().map(|d| d.0),
            self.retries.front().map(|r| r.0),
            Some(hard_stop),
        ])
        .expect("hard_stop is always there")
    }

    /// Runs the load to the end of the window, then waits (at most the timeout) for what is
    /// still in flight.
    pub(crate) async fn run(&mut self) {
        let hard_stop = self.end + self.cfg.timeout + Duration::from_millis(50);
        let mut now = Instant::now();
        loop {
            let wake = self.next_wake(now, hard_stop);
            if wake > now {
                match self.grid {
                    Some(p) if self.next_send == Some(wake) => self.pacer.arm_grid(wake, p),
                    _ => self.pacer.arm(wake),
                }
                tokio::select! {
                    ev = self.events_rx.recv() => {
                        if let Some(ev) = ev {
                            self.handle_event(ev);
                        }
                    }
                    _ = self.pacer.wait() => {}
                }
            }
            while let Ok(ev) = self.events_rx.try_recv() {
                self.handle_event(ev);
            }
            now = Instant::now();
            self.read_cpu(now);
            self.issue_due(now);
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

    /// Reads the CPU clock at the first turn at or after the start of the measured window, and
    /// at the first at or after its end.
    fn read_cpu(&mut self, now: Instant) {
        let scope = self.cfg.cpu_scope;
        match &self.cpu {
            CpuWindow::Before if now >= self.start + self.cfg.warmup => {
                self.cpu = match CpuSample::read(scope) {
                    Some(s) => CpuWindow::During(s, 0),
                    None => CpuWindow::Done(None),
                };
            }
            CpuWindow::During(start, sent) if now >= self.end => {
                let cpu = CpuSample::read(scope).and_then(|end| start.until(&end, scope, *sent));
                self.cpu = CpuWindow::Done(cpu);
            }
            _ => {}
        }
    }

    /// The generator's CPU over the measured window, once the run is over.
    pub(crate) fn cpu(&self) -> Option<GeneratorCpu> {
        match self.cpu {
            CpuWindow::Done(cpu) => cpu,
            _ => None,
        }
    }

    fn issue_due(&mut self, now: Instant) {
        if now < self.start {
            return;
        }
        match self.cfg.mode {
            Mode::Open { .. } => {
                if self.next_send.is_none_or(|t| t > now) {
                    return;
                };
                let (since, window) = (now - self.start, self.end - self.start);
                loop {
                    let sched = self.schedule.as_mut().expect("open loop has a schedule");
                    let next = sched.peek();
                    if next > since || next >= window {
                        break;
                    }
                    sched.next_offset();
                    let lane = self.round_robin % self.lanes.len();
                    self.round_robin += 1;
                    self.issue(lane, self.start + next, now);
                }
                let next = self.schedule.as_ref().expect("open loop").peek();
                self.next_send = (next < window).then(|| match self.grid {
                    // The grid point of the next request (after `now`: everything due was
                    // just sent). A late wake-up is followed by the next grid point, not by
                    // a burst of catch-up wake-ups.
                    Some(_) => self.on_grid(self.start + next),
                    // At least `pacing` after this send, counted from now: a late wake-up must
                    // not be followed by a burst of catch-up wake-ups sending a few each.
                    None => (self.start + next).max(now + self.cfg.pacing),
                });
            }
            Mode::Closed { depth, .. } => {
                self.next_send = None;
                if now >= self.end {
                    return;
                }
                // Closed loop has no schedule: a request is meant to go when its slot frees.
                for lane in 0..self.lanes.len() {
                    while self.lanes[lane].live < depth {
                        let freed = self.lanes[lane].freed.pop_front();
                        self.issue(lane, freed.map_or(now, |t| t.min(now)), now);
                    }
                    self.lanes[lane].freed.clear();
                }
            }
        }
    }

    /// The next request id of `lane_ix` (in a fresh session if the current one's window is
    /// full), counted as live.
    fn next_request(&mut self, lane_ix: usize) -> (ClientId, Key) {
        let lane = &self.lanes[lane_ix];
        // The current session's ring spans its oldest unanswered request to the last issued.
        if self.sessions[lane.session].ring.len() as u64 + 1 >= SESSION_WINDOW {
            // The session's window is full of unanswered requests: carry on in a fresh one
            // rather than slow the schedule down.
            let session = self.new_session(lane_ix);
            let lane = &mut self.lanes[lane_ix];
            lane.session = session;
            lane.next = 0;
        }
        let client = self.client_id(self.lanes[lane_ix].session);
        let lane = &mut self.lanes[lane_ix];
        lane.next += 1;
        lane.live += 1;
        (client, (lane.session, lane.next))
    }

    /// Puts a request in its session's ring.
    fn track(&mut self, key: Key, pending: Pending) {
        let session = &mut self.sessions[key.0];
        debug_assert_eq!(session.base + session.ring.len() as u64, key.1);
        session.ring.push_back(Some(pending));
    }

    /// Issues the next request of `lane_ix`, meant for `intended`, at `now` (it is sent at
    /// the next flush).
    /// The read node the next `Get` goes to, in turn, passing over those shunned (and sending
    /// a shunned one whose time is up its one probe); `None` when there is none to send to.
    fn next_reader(&mut self, now: Instant) -> Option<usize> {
        let n = self.read_nodes.len();
        for _ in 0..n {
            self.next_reader = (self.next_reader + 1) % n;
            let node = self.read_nodes[self.next_reader];
            match self.readers[node] {
                Reader::Healthy => return Some(node),
                Reader::Shunned { until } if until <= now => {
                    self.readers[node] = Reader::Probing;
                    return Some(node);
                }
                Reader::Shunned { .. } | Reader::Probing => {}
            }
        }
        None
    }

    /// A `Get` to read node `node` went unanswered, or it cannot be reached: pass it over.
    fn shun(&mut self, node: usize) {
        if self.read_nodes.contains(&node) {
            self.readers[node] = Reader::Shunned {
                until: Instant::now() + RECONNECT_BACKOFF,
            };
        }
    }

    fn issue(&mut self, lane_ix: usize, intended: Instant, now: Instant) {
        let (client, key) = self.next_request(lane_ix);
        let lane = &mut self.lanes[lane_ix];
        let cmd = Command {
            client,
            request: RequestId(key.1),
            op: lane.ops.next_op(client.nonce(), key.1),
        };
        let reader = match &cmd.op {
            paxos::Op::Get { .. } => self.next_reader(now),
            _ => None,
        };
        // `reads = "learner"`: the Gets to the learners in turn.
        let node = reader.unwrap_or(self.lanes[lane_ix].node);
        let hist = self
            .rec
            .history
            .as_mut()
            .and_then(|h| h.invoke(client.nonce(), &cmd.op, now));
        self.deadlines.push_back((intended + self.cfg.timeout, key));
        // Encoded where it is made: the frame borrows nothing and the command moves on into
        // its pending entry, uncloned.
        let frame = ClientFrame::Request(cmd);
        self.push_frame(node, &frame);
        let ClientFrame::Request(cmd) = frame else {
            unreachable!("built above")
        };
        self.batches[node].first_sends.push((intended, hist));
        self.track(
            key,
            Pending {
                cmd,
                intended,
                node,
                redirects: 0,
                timed_out: false,
                hist,
                fresh_id_retries: 0,
            },
        );
    }

    /// The self-test's broken client ([`LoadConfig::self_test_retry_fresh_id`]): `op`, whose
    /// request timed out, goes again to `node` under a fresh request id, as the same operation
    /// (`hist`, its history entry, stays pending and takes the retry's answer). The timed-out
    /// request's live slot passes to the retry.
    fn retry_fresh_id(
        &mut self,
        lane_ix: usize,
        op: paxos::Op,
        hist: Option<EntryId>,
        node: usize,
        tries: u32,
    ) {
        let (client, key) = self.next_request(lane_ix);
        self.lanes[lane_ix].live -= 1; // the timed-out request's slot, taken over
        let now = Instant::now();
        let cmd = Command {
            client,
            request: RequestId(key.1),
            op,
        };
        self.deadlines.push_back((now + self.cfg.timeout, key));
        // Not a first send: the operation was invoked when the original request went out.
        self.push_frame(node, &ClientFrame::Request(cmd.clone()));
        self.track(
            key,
            Pending {
                cmd,
                intended: now,
                node,
                redirects: 0,
                timed_out: false,
                hist,
                fresh_id_retries: tries,
            },
        );
    }

    /// Appends `frame` to what goes to `node` at the next flush. A frame the codec refuses (a
    /// request over its size limit, which [`LoadConfig::validate`] keeps workloads under) is
    /// not sent, and its request times out.
    fn push_frame(&mut self, node: usize, frame: &ClientFrame) {
        let out = &mut self.batches[node].out;
        if out.capacity() - out.len() < BATCH_MIN_ROOM {
            out.reserve(BATCH_BUFFER);
        }
        if let Err(e) = self.codec.encode(frame, out) {
            tracing::warn!(error = %e, "load generator cannot encode a request; it will time out");
        }
    }

    /// Drops what was to be written to `node`, unreachable: those requests stay pending and
    /// time out. (Their history entries keep the issue instant as their invocation: never
    /// sent, they cannot have taken effect, and an unknown outcome allows for that.)
    fn drop_batch(&mut self, node: usize) {
        let batch = &mut self.batches[node];
        batch.out.clear();
        batch.first_sends.clear();
    }

    /// Opens a connection to `node` on a task of its own, which reports with
    /// [`Event::Connected`].
    fn connect_in_background(&mut self, node: usize) {
        self.connecting[node] = true;
        let (id, addr) = self.cfg.nodes[node];
        let (endpoint, events) = (self.cfg.endpoint.clone(), self.events_tx.clone());
        let limit = connect_timeout(&self.cfg);
        tokio::spawn(async move {
            let result = open_within(&endpoint, id, addr, limit).await;
            let _ = events.send(Event::Connected { node, result });
        });
    }

    /// Node `node` could not be connected to: pass it over for [`RECONNECT_BACKOFF`], dropping
    /// what waited for it.
    fn unreachable(&mut self, node: usize, why: &str) {
        let id = self.cfg.nodes[node].0;
        tracing::warn!(node = id.0, %why, "load generator cannot connect");
        self.down_until[node] = Some(Instant::now() + RECONNECT_BACKOFF);
        self.drop_batch(node);
        self.shun(node);
    }

    async fn flush(&mut self) {
        for node in 0..self.batches.len() {
            if self.batches[node].out.is_empty() && self.batches[node].first_sends.is_empty() {
                continue;
            }
            if self.conns[node].is_none() {
                // Connected in the background, never awaited here: a node that does not
                // answer must not hold up the sends to the others. Until it is up the batch
                // waits (and goes out then, its send lag counting the wait).
                let now = Instant::now();
                if self.down_until[node].is_some_and(|t| now < t) {
                    self.drop_batch(node);
                } else if !self.connecting[node] {
                    self.connect_in_background(node);
                }
                continue;
            }
            let now = Instant::now();
            let batch = &mut self.batches[node];
            if let CpuWindow::During(_, sent) = &mut self.cpu {
                *sent += batch.first_sends.len() as u64;
            }
            for &(intended, hist) in &batch.first_sends {
                self.rec.record_send(intended, now);
                if let (Some(id), Some(h)) = (hist, self.rec.history.as_mut()) {
                    h.sent(id, now);
                }
            }
            batch.first_sends.clear();
            if batch.out.is_empty() {
                continue; // only requests the codec refused
            }
            let bytes = batch.out.split().freeze();
            let tx = self.conns[node].as_ref().expect("ensured above");
            if tx.send(bytes).is_err() {
                self.conns[node] = None;
            }
        }
    }

    fn handle_event(&mut self, ev: Event) {
        match ev {
            Event::Lost { node, why } => {
                tracing::warn!(node = node.0, %why, "load generator lost a connection");
                if let Some(ix) = self.node_ix(node) {
                    self.conns[ix] = None;
                }
            }
            Event::Replies { replies, at } => {
                for reply in replies {
                    self.handle_reply(reply, at);
                }
            }
            Event::Connected { node, result } => {
                self.connecting[node] = false;
                match result {
                    Ok(c) => self.spawn_connection(node, c),
                    Err(why) => self.unreachable(node, &why),
                }
            }
        }
    }

    /// Marks a live request as timed out at its deadline `deadline`, freeing its slot (the
    /// self-test's broken client instead hands the slot to a fresh-id retry).
    fn time_out(&mut self, key: Key, deadline: Instant) {
        let closed = matches!(self.cfg.mode, Mode::Closed { .. });
        let lane = self.sessions[key.0].lane;
        let retrying = self.cfg.self_test_retry_fresh_id && Instant::now() < self.end;
        let p = self.pending(key).expect("a live request");
        debug_assert!(!p.timed_out);
        p.timed_out = true;
        let (intended, hist, sent_to) = (p.intended, p.hist, p.node);
        // Writes only: a read sent again is harmless, and would only lengthen the history's
        // intervals (the checker's cost grows with the operations concurrent on a key).
        let write = !matches!(p.cmd.op, paxos::Op::Get { .. });
        let retry = (retrying && write && p.fresh_id_retries < crate::SELF_TEST_FRESH_ID_RETRIES)
            .then(|| (p.cmd.op.clone(), p.fresh_id_retries + 1));
        if !write {
            self.shun(sent_to);
        }
        if let Some((op, tries)) = retry {
            self.rec.record_timeout(intended, deadline);
            // This client gives up on a node that does not answer, whatever its target: the
            // retry and the lane's next requests go to the next node.
            let next = (sent_to + 1) % self.cfg.nodes.len();
            if self.lanes[lane].node == sent_to {
                self.lanes[lane].node = next;
            }
            self.retry_fresh_id(lane, op, hist, next, tries);
            return;
        }
        self.lanes[lane].live -= 1;
        // A leader that stops answering may be dead (its connection can look open for the
        // whole QUIC idle timeout, or TCP user timeout): send the lane's next requests to the next node, whose
        // NotLeader names the new leader. Only the first timeout of a request sent to the
        // lane's node moves it, so a burst of timeouts moves it once.
        if self.cfg.target == Target::Leader && self.lanes[lane].node == sent_to {
            self.lanes[lane].node = (sent_to + 1) % self.cfg.nodes.len();
        }
        if closed {
            self.lanes[lane].freed.push_back(deadline);
            // Wake to refill the slot: no reply will (when every request timed out, nothing
            // else would wake the driver before the end of the run).
            self.next_send = Some(self.next_send.map_or(deadline, |t| t.min(deadline)));
        }
        self.rec.record_timeout(intended, deadline);
        // Given up on when noticed, not at the deadline: a request can be sent after its
        // deadline (a flush that first waited for a connection to a dead node), and its history
        // entry must not return before it was invoked.
        self.record_gave_up(hist, deadline.max(Instant::now()));
    }

    /// The history's record of giving up on a request at `at` (its outcome is unknown).
    fn record_gave_up(&mut self, hist: Option<EntryId>, at: Instant) {
        if let (Some(id), Some(h)) = (hist, self.rec.history.as_mut()) {
            h.gave_up(id, at);
        }
    }

    /// Forgets a request answered at `at`, freeing its slot unless its timeout already did.
    fn finish(&mut self, key: Key, at: Instant) -> Option<Pending> {
        let closed = matches!(self.cfg.mode, Mode::Closed { .. });
        let session = self.sessions.get_mut(key.0)?;
        let i = usize::try_from(key.1.checked_sub(session.base)?).ok()?;
        let p = session.ring.get_mut(i)?.take()?;
        while session.ring.front().is_some_and(Option::is_none) {
            session.ring.pop_front();
            session.base += 1;
        }
        let lane = &mut self.lanes[session.lane];
        if session.ring.is_empty() && lane.session != key.0 {
            // A rotated-out session with nothing left to answer needs no memory.
            session.ring = VecDeque::new();
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
        let session = reply.client.nonce().wrapping_sub(self.cfg.session_base);
        let Ok(session) = usize::try_from(session) else {
            return; // Not one of ours.
        };
        let key = (session, reply.request.0);
        let timeout = self.cfg.timeout;
        let Some(p) = self.pending(key) else {
            return; // A duplicate, or an answer to a request from before a redirect.
        };
        // Exact timeouts: an answer at or after the deadline is a timeout even if the deadline
        // FIFO has not got to it yet.
        let deadline = p.intended + timeout;
        if !p.timed_out && at >= deadline {
            self.time_out(key, deadline);
        }
        let from = self.pending(key).expect("present above").node;
        // It answers: a read node passed over gets its share of the reads again.
        self.readers[from] = Reader::Healthy;
        let p = self.pending(key).expect("present above");
        if p.timed_out {
            self.finish(key, at);
            return;
        }
        match reply.outcome {
            Outcome::Value(_) | Outcome::Done => {
                let p = self.finish(key, at).expect("present above");
                self.rec.record_success(p.intended, at);
                if let (Some(id), Some(h)) = (p.hist, self.rec.history.as_mut()) {
                    h.answered(id, &reply.outcome, at);
                }
            }
            Outcome::NotLeader { leader } => {
                p.redirects += 1;
                let (redirects, from) = (p.redirects, p.node);
                if redirects > self.cfg.max_redirects {
                    let p = self.finish(key, at).expect("present above");
                    self.rec.record_error(p.intended, at);
                    self.record_gave_up(p.hist, at);
                    return;
                }
                let leader = leader.and_then(|l| self.node_ix(l));
                let n = self.cfg.nodes.len();
                let p = self.pending(key).expect("present above");
                match leader {
                    Some(l) if l != from => {
                        p.node = l;
                        let frame = ClientFrame::Request(p.cmd.clone());
                        if self.cfg.target == Target::Leader {
                            let lane = self.sessions[key.0].lane;
                            self.lanes[lane].node = l;
                        }
                        self.push_frame(l, &frame);
                    }
                    _ => {
                        // No leader known: try the next node after a short pause.
                        p.node = (from + 1) % n;
                        self.retries
                            .push_back((Instant::now() + NO_LEADER_BACKOFF, key));
                    }
                }
            }
            // Refused (the node's queue was full, or the command changed nothing) or of unknown
            // outcome: an error either way.
            Outcome::Expired | Outcome::Overloaded | Outcome::Refused(_) => {
                let p = self.finish(key, at).expect("present above");
                self.rec.record_error(p.intended, at);
                self.record_gave_up(p.hist, at);
            }
        }
    }

    fn retry_due(&mut self, now: Instant) {
        while self.retries.front().is_some_and(|(t, _)| *t <= now) {
            let (_, key) = self.retries.pop_front().expect("checked");
            if let Some(p) = self.pending(key) {
                if !p.timed_out {
                    let frame = ClientFrame::Request(p.cmd.clone());
                    let node = p.node;
                    self.push_frame(node, &frame);
                }
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        while self.deadlines.front().is_some_and(|(t, _)| *t <= now) {
            let (deadline, key) = self.deadlines.pop_front().expect("checked");
            if self.pending(key).is_some_and(|p| !p.timed_out) {
                self.time_out(key, deadline);
            }
        }
        // The deadlines of requests already answered go too, so the next wake-up is the
        // deadline of the oldest request still waiting: at 100,000 ops/s the front entry
        // otherwise belongs to a request answered a timeout ago, the next one 10 µs later, and
        // the driver woke (and re-set its timer) for each.
        while let Some(&(_, key)) = self.deadlines.front() {
            if self.pending(key).is_some_and(|p| !p.timed_out) {
                break;
            }
            self.deadlines.pop_front();
        }
    }
}

/// About how many requests a run issues, to reserve its history: the schedule's count for
/// open loop; for closed loop, which depends on the system's speed, a guess of 64 Ki (the
/// history grows past it as needed).
fn expected_requests(cfg: &LoadConfig) -> usize {
    match cfg.mode {
        Mode::Open { rate, .. } => {
            let s = (cfg.warmup + cfg.duration).as_secs_f64();
            (rate * s * 1.05 + 16.0).min(usize::MAX as f64 / 2.0) as usize
        }
        Mode::Closed { .. } => 1 << 16,
    }
}

/// How long opening a connection may take: the request timeout, but never so short that a
/// QUIC or TLS-over-TCP handshake cannot finish (a 100 µs request timeout must not make a node
/// unreachable).
fn connect_timeout(cfg: &LoadConfig) -> Duration {
    cfg.timeout.max(MIN_CONNECT_TIMEOUT)
}

/// Opens a connection to node `id` at `addr`, giving up after `limit`; the error says why.
async fn open_within(
    endpoint: &node::ClientEndpoint,
    id: NodeId,
    addr: std::net::SocketAddr,
    limit: Duration,
) -> Result<Connection, String> {
    match tokio::time::timeout(limit, Connection::open(endpoint, id, addr)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("connect timed out".into()),
    }
}

/// Owns one connection: writes what the driver hands it (one write per batch, the encoded
/// bytes passed on without a copy) and forwards the replies, all those one read brought in one
/// event, stamped with the instant they were decoded.
async fn connection_task(
    mut conn: Connection,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    events: mpsc::UnboundedSender<Event>,
) {
    let node = conn.node();
    loop {
        // `recv` is cancel-safe: it buffers partial frames in the connection and quinn's
        // `read_chunk` loses nothing when dropped. `send` is awaited outside the select.
        tokio::select! {
            biased;
            bytes = rx.recv() => {
                let Some(bytes) = bytes else {
                    conn.close();
                    return;
                };
                if let Err(e) = conn.send_encoded(bytes).await {
                    let _ = events.send(Event::Lost { node, why: e.to_string() });
                    return;
                }
            }
            r = conn.recv() => {
                let at = Instant::now();
                // One allocation per read (a packet carries tens of replies at high rates).
                let mut replies = Vec::with_capacity(32);
                let mut next = r.map(Some);
                // The first frame, then every whole frame the same read buffered.
                let lost = loop {
                    match next {
                        Ok(Some(ResponseFrame::Response(resp))) => replies.push(resp.reply),
                        Ok(Some(ResponseFrame::Status(_) | ResponseFrame::Impaired(_))) => {}
                        Ok(None) => break None,
                        Err(e) => break Some(e),
                    }
                    next = conn.try_recv();
                };
                if !replies.is_empty() && events.send(Event::Replies { replies, at }).is_err() {
                    return;
                }
                if let Some(e) = lost {
                    let _ = events.send(Event::Lost { node, why: e.to_string() });
                    return;
                }
            }
        }
    }
}
