//! The simulation proper: a virtual clock, an event queue, the nodes (each with its durable state
//! and its writes in flight), the simulated clients, the fault schedule, and the checkers run
//! after every step.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::fmt;
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;
use std::time::Duration;

use bytes::Bytes;
use paxos::{
    Action, Backoff, BackoffSpan, Ballot, Bug, ClientId, Command, Config, Durable, Message, Node,
    NodeId, Op, Outcome, PersistToken, Protocol, ReadMode, Record, Reply, RequestId, Role, Slot,
    Stats, Time, Value,
};

use crate::checker::{Check, Checkers, Verdict, Violation};
use crate::clock::Clock;
use crate::faults::{FaultEvent, FaultPlan, FaultProfile};
use crate::fingerprint::Fingerprint;
use crate::network::{Endpoint, Fate, Network};
use crate::rng::SimRng;
use crate::trace::{MsgBrief, Trace, TraceEvent, ValueBrief};

/// How long, after the heal, every outstanding command has to complete (the liveness bound).
///
/// Multi-Paxos needs an election (timeouts of 0.5-1 s by default, backoff between failed
/// campaigns) and a round of recovery: 30 s is more than an order of magnitude of slack. Basic Paxos proposers back off
/// exponentially (capped at 100 ms) and every command runs its own two phases, so it gets 60 s.
/// The unreplicated node answers at once: 5 s.
pub fn default_liveness_bound(protocol: Protocol) -> Duration {
    match protocol {
        Protocol::MultiPaxos => Duration::from_secs(30),
        Protocol::BasicPaxos => Duration::from_secs(60),
        Protocol::Unreplicated => Duration::from_secs(5),
    }
}

/// What the simulated clients do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// Number of clients.
    pub clients: usize,
    /// Commands each client issues (it stops earlier if the heal time comes first).
    pub commands_per_client: usize,
    /// Each client keeps between one and this many requests outstanding (drawn per client).
    pub max_outstanding: usize,
    /// Size of the key space (small, so that commands conflict).
    pub keys: usize,
    /// Longest pause between a reply and the next command. `None`: spread each client's commands
    /// over the fault window.
    pub think: Option<Duration>,
    /// A client re-sends a request (same id) to another node after this long without a reply.
    pub client_timeout: Duration,
    /// Client `i` starts at node `i mod n` and every client issues its first command at time
    /// zero (the contention scenario). Otherwise Multi-Paxos clients start at a random node and
    /// Basic Paxos clients are spread over the nodes anyway.
    pub pinned: bool,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            clients: 3,
            commands_per_client: 20,
            max_outstanding: 3,
            keys: 4,
            think: None,
            client_timeout: Duration::from_millis(300),
            pinned: false,
        }
    }
}

/// Everything one simulated run depends on. The same `SimConfig` always produces the same run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimConfig {
    /// The protocol under test.
    pub protocol: Protocol,
    /// Voting nodes (1 for `Unreplicated`).
    pub nodes: usize,
    /// Learners beyond the voters (`paxos::Config::learners`): `None` draws them from the seed
    /// (none on most seeds, one or two on a quarter of the replicated ones, at least one for
    /// `Bug::LearnerVotes`); `Some(k)` is exactly `k`.
    pub learners: Option<usize>,
    /// Membership changes (Multi-Paxos): one client now and then asks to swap a voter for a
    /// non-voter, add one or remove one. `None` draws it from the seed (on about a third of
    /// the Multi-Paxos seeds, always for `Bug::ReconfigNextSlot`), with at least one node
    /// beyond the voters to swap in.
    pub reconfigs: Option<bool>,
    /// The one seed everything random is drawn from.
    pub seed: u64,
    /// Which faults to draw.
    pub faults: FaultProfile,
    /// A deliberately broken protocol variant (self-test only).
    pub bug: Option<Bug>,
    /// The clients.
    pub workload: Workload,
    /// Faults happen in `[0, heal_after)`; after that the network is reliable, crashed nodes are
    /// back and clients issue no new commands.
    pub heal_after: Duration,
    /// Outstanding commands must complete this long after the heal.
    pub liveness_bound: Duration,
    /// Events kept for a failure's trace.
    pub trace_len: usize,
    /// Draw protocol knobs (window, batch size, snapshot interval, catch-up batch, reply cache,
    /// explicit commits, phase-1 skipping) from the seed, so the sweep covers them; otherwise use
    /// the core's defaults.
    pub vary_knobs: bool,
    /// Overrides the core's backoff.
    pub backoff: Option<Backoff>,
    /// A run that takes more steps than this fails as `stuck`.
    pub max_steps: u64,
    /// Run the lease-overlap check (on by default). Off only to show that real-time-reads
    /// catches a stale lease read by itself: an overlap always comes first.
    pub check_lease_overlap: bool,
}

impl SimConfig {
    /// Defaults for one seed: 2 s of faults and load, the protocol's liveness bound, a 20-event
    /// trace, knobs drawn from the seed.
    pub fn new(protocol: Protocol, nodes: usize, seed: u64, faults: FaultProfile) -> Self {
        SimConfig {
            protocol,
            nodes,
            learners: None,
            reconfigs: None,
            seed,
            faults,
            bug: None,
            workload: Workload::default(),
            heal_after: Duration::from_secs(2),
            liveness_bound: default_liveness_bound(protocol),
            trace_len: 20,
            vary_knobs: true,
            backoff: None,
            max_steps: 5_000_000,
            check_lease_overlap: true,
        }
    }

    /// The same configuration with another seed.
    pub fn with_seed(&self, seed: u64) -> Self {
        SimConfig {
            seed,
            ..self.clone()
        }
    }
}

/// One invocation by a client and, if it came, the response that completed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The client.
    pub client: ClientId,
    /// Its request id.
    pub request: RequestId,
    /// What it asked.
    pub op: Op,
    /// When it was first sent.
    pub invoked: Time,
    /// When the client got its answer, and the answer.
    pub response: Option<(Time, Outcome)>,
}

/// Counters of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Events processed.
    pub steps: u64,
    /// Virtual time when the run ended.
    pub end: Time,
    /// When faults stopped.
    pub heal: Time,
    /// Commands issued by clients.
    pub issued: u64,
    /// Commands that got their answer.
    pub completed: u64,
    /// Slots chosen (by the acceptors' durable state).
    pub slots_chosen: u64,
    /// Messages between nodes put on the network (a broadcast counts once per peer).
    pub messages: u64,
    /// Of those, dropped (lost, partitioned, or the receiver was down).
    pub dropped: u64,
    /// Node crashes.
    pub crashes: u64,
    /// Of those, leaders (or Basic Paxos proposers) killed right after sending a batch.
    pub mid_batch_kills: u64,
    /// Client re-sends after a timeout.
    pub client_retries: u64,
    /// Times a client began a new session after an `Expired` answer.
    pub sessions_renewed: u64,
    /// Membership changes answered `Done` (see [`SimConfig::reconfigs`]).
    pub reconfigs_done: u64,
    /// Membership changes answered `Refused`.
    pub reconfigs_refused: u64,
    /// The latest time a command completed.
    pub last_completion: Time,
    /// Each node's counters at the end (of its current incarnation).
    pub node_stats: Vec<Stats>,
}

/// A failed run: the seed, the checker, what it saw, and the last events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The seed that replays it.
    pub seed: u64,
    /// The protocol.
    pub protocol: Protocol,
    /// The fault profile.
    pub faults: FaultProfile,
    /// Cluster size.
    pub nodes: usize,
    /// The checker that failed.
    pub check: Check,
    /// Virtual time of the failure.
    pub at: Time,
    /// What the checker saw.
    pub detail: String,
    /// The protocol knobs this seed drew.
    pub knobs: String,
    /// The last events before the failure, oldest first.
    pub trace: Vec<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "FAIL seed {} ({}, {} nodes, faults {}): {} at {}",
            self.seed,
            self.protocol.name(),
            self.nodes,
            self.faults,
            self.check,
            self.at
        )?;
        writeln!(f, "  {}", self.detail)?;
        writeln!(f, "  knobs: {}", self.knobs)?;
        writeln!(f, "  last {} events:", self.trace.len())?;
        for line in &self.trace {
            writeln!(f, "    {line}")?;
        }
        Ok(())
    }
}

/// The outcome of one run.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// `None` if every checker passed.
    pub failure: Option<Failure>,
    /// Counters.
    pub stats: RunStats,
    /// Every client invocation and its response.
    pub history: Vec<HistoryEntry>,
    /// A hash of every action and executed slot of every node, in order, and of the counters and
    /// history ([`crate::fingerprint`]): equal for two runs that behaved the same.
    pub fingerprint: u64,
}

/// Runs one seed to the end and reports. Never panics on a protocol failure: a panic inside the
/// core becomes a [`Check::Panic`] failure with the trace up to it.
pub fn run(config: &SimConfig) -> RunReport {
    install_panic_hook();
    let mut sim = Simulation::new(config.clone());
    IN_RUN.with(|r| r.set(true));
    let outcome = catch_unwind(AssertUnwindSafe(|| sim.run_to_end()));
    IN_RUN.with(|r| r.set(false));
    let violation = match outcome {
        Ok(result) => result.err(),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic".to_string());
            let at = PANIC_AT.with(|p| p.borrow_mut().take()).unwrap_or_default();
            Some(Violation {
                check: Check::Panic,
                detail: format!("the core panicked at {at}: {msg}"),
            })
        }
    };
    sim.report(violation)
}

thread_local! {
    /// Whether this thread is inside [`run`]: its panics are reported as failures, not printed.
    static IN_RUN: Cell<bool> = const { Cell::new(false) };
    /// Where the last panic inside a run happened.
    static PANIC_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once per process) a panic hook that, inside [`run`], records the panic's location
/// for the failure report instead of printing it; elsewhere it defers to the previous hook.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_RUN.with(|r| r.get()) {
                let at = info
                    .location()
                    .map_or_else(|| "?".to_string(), |l| l.to_string());
                PANIC_AT.with(|p| *p.borrow_mut() = Some(at));
            } else {
                previous(info);
            }
        }));
    });
}

/// A scheduled event.
#[derive(Debug)]
enum Event {
    Deliver {
        from: NodeId,
        to: NodeId,
        msg: Message,
    },
    Request {
        client: usize,
        to: NodeId,
        cmd: Command,
    },
    Reply {
        from: NodeId,
        reply: Reply,
    },
    PersistDone {
        node: usize,
        incarnation: u64,
        token: PersistToken,
    },
    ClientIssue {
        client: usize,
    },
    ClientTimeout {
        client: usize,
        request: RequestId,
        attempt: u32,
    },
    ClientResend {
        client: usize,
        request: RequestId,
        attempt: u32,
    },
    Fault(FaultEvent),
    PartitionEnd {
        id: u64,
    },
    Restart {
        node: usize,
        incarnation: u64,
    },
    Heal,
}

/// An event in the queue, ordered by time and then by when it was scheduled (so same-time
/// events run in a fixed order).
#[derive(Debug)]
struct Queued {
    at: Time,
    seq: u64,
    event: Event,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// One simulated node: the core (absent while crashed), what it has made durable, and the writes
/// it has in flight.
struct SimNode {
    id: NodeId,
    config: Config,
    node: Option<Node>,
    durable: Durable,
    pending: VecDeque<(PersistToken, Vec<Record>)>,
    /// Writes complete in token order: none before this time.
    last_persist_done: Time,
    incarnation: u64,
    /// When its core asked to be woken, in true time.
    deadline: Option<Time>,
    shown: Option<(Role, Ballot, Option<NodeId>)>,
    /// Its own clock: every time it is given is this clock's reading.
    clock: Clock,
    /// `Get`s its current incarnation has answered from its own state (`Stats::local_reads`).
    local_reads: u64,
}

/// A request a client awaits.
#[derive(Debug)]
struct Pending {
    cmd: Command,
    target: usize,
    attempt: u32,
    history: usize,
}

/// A simulated client.
#[derive(Debug)]
struct Client {
    id: ClientId,
    /// Where it sends new requests: the node it believes leads, or its own node.
    home: usize,
    next_request: u64,
    issued: usize,
    depth: usize,
    think: Duration,
    outstanding: BTreeMap<RequestId, Pending>,
    /// Issue attempts held back because the oldest outstanding request would fall out of the
    /// core's reply-cache window; retried when a request completes.
    stalled: usize,
}

/// Random streams of a run, one per purpose.
const STREAM_NETWORK: u64 = 1;
const STREAM_CLIENTS: u64 = 2;
const STREAM_FAULTS: u64 = 3;
const STREAM_PERSIST: u64 = 4;
const STREAM_KNOBS: u64 = 5;
const STREAM_CLOCKS: u64 = 6;
const STREAM_LEARNERS: u64 = 7;
const STREAM_RECONFIG: u64 = 8;
const STREAM_NODES: u64 = 100;

/// A running simulation.
struct Simulation {
    cfg: SimConfig,
    now: Time,
    seq: u64,
    same_instant: u64,
    queue: BinaryHeap<Reverse<Queued>>,
    ids: Vec<NodeId>,
    nodes: Vec<SimNode>,
    clients: Vec<Client>,
    network: Network,
    plan: FaultPlan,
    checkers: Checkers,
    trace: Trace,
    rng_clients: SimRng,
    /// Draws membership changes (`None`: this run has none).
    rng_reconfig: Option<SimRng>,
    rng_faults: SimRng,
    rng_persist: SimRng,
    kill_armed: Option<Duration>,
    knobs: String,
    actions: Vec<Action>,
    executed: Vec<(Slot, Value)>,
    history: Vec<HistoryEntry>,
    stats: RunStats,
    keys: Vec<Bytes>,
    fingerprint: Fingerprint,
    /// How many of `ids` (the last ones) are learners.
    learners: usize,
}

impl Simulation {
    fn new(cfg: SimConfig) -> Self {
        let nodes_n = if cfg.protocol == Protocol::Unreplicated {
            1
        } else {
            cfg.nodes.max(1)
        };
        let learners_n = learner_count(&cfg);
        let ids: Vec<NodeId> = (0..(nodes_n + learners_n) as u32).map(NodeId).collect();
        let learners = ids[nodes_n..].to_vec();
        let heal = Time::ZERO + cfg.heal_after;
        let mut rng_faults = SimRng::stream(cfg.seed, STREAM_FAULTS);
        // The unreplicated baseline keeps nothing durable: a crash would lose acknowledged writes
        // by design, so it is never crashed.
        let crashes = cfg.protocol != Protocol::Unreplicated;
        let plan = FaultPlan::draw(cfg.faults, &ids, heal, crashes, &mut rng_faults);
        let network = Network::new(
            plan.network.clone(),
            SimRng::stream(cfg.seed, STREAM_NETWORK),
        );
        let (configs, mut knobs) = node_configs(&cfg, &ids, &learners);
        let window = configs[0].window as u64;
        let session_timeout = configs[0].session_timeout;
        let reads = configs[0].reads;
        let mut rng_clocks = SimRng::stream(cfg.seed, STREAM_CLOCKS);
        let clocks =
            Clock::draw_cluster(configs[0].clock_drift_ppm, configs.len(), &mut rng_clocks);
        let shown: Vec<String> = clocks.iter().map(|c| format!("{:+}", c.ppm())).collect();
        let _ = write!(knobs, " clocks_ppm=[{}]", shown.join(","));
        let nodes = ids
            .iter()
            .zip(configs)
            .zip(clocks)
            .map(|((&id, config), clock)| SimNode {
                id,
                config,
                node: None,
                durable: Durable::default(),
                pending: VecDeque::new(),
                last_persist_done: Time::ZERO,
                incarnation: 0,
                deadline: None,
                shown: None,
                clock,
                local_reads: 0,
            })
            .collect();
        let keys = (0..cfg.workload.keys.max(1))
            .map(|k| Bytes::from(format!("k{k}")))
            .collect();
        let mut checkers =
            Checkers::new(ids.clone(), Slot(0), cfg.protocol == Protocol::Unreplicated);
        checkers.set_session_timeout(session_timeout);
        if cfg.protocol == Protocol::MultiPaxos {
            checkers.track_membership(window);
        }
        checkers.set_learners(&learners);
        if reads == ReadMode::Lease {
            checkers.allow_local_reads();
        }
        Simulation {
            learners: learners.len(),
            trace: Trace::new(cfg.trace_len),
            rng_clients: SimRng::stream(cfg.seed, STREAM_CLIENTS),
            rng_reconfig: reconfigs(&cfg).then(|| SimRng::stream(cfg.seed, STREAM_RECONFIG ^ 1)),
            rng_persist: SimRng::stream(cfg.seed, STREAM_PERSIST),
            rng_faults,
            now: Time::ZERO,
            seq: 0,
            same_instant: 0,
            queue: BinaryHeap::new(),
            ids,
            nodes,
            clients: Vec::new(),
            network,
            plan,
            checkers,
            kill_armed: None,
            knobs,
            actions: Vec::new(),
            executed: Vec::new(),
            history: Vec::new(),
            stats: RunStats {
                heal,
                ..RunStats::default()
            },
            keys,
            fingerprint: Fingerprint::default(),
            cfg,
        }
    }

    fn heal(&self) -> Time {
        self.plan.heal
    }

    fn schedule(&mut self, at: Time, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Queued {
            at,
            seq: self.seq,
            event,
        }));
    }

    fn report(mut self, violation: Option<Violation>) -> RunReport {
        self.stats.end = self.now;
        self.stats.slots_chosen = self.checkers.chosen().len() as u64;
        self.stats.node_stats = self
            .nodes
            .iter()
            .filter_map(|n| n.node.as_ref().map(|n| n.stats().clone()))
            .collect();
        let failure = violation.map(|v| Failure {
            seed: self.cfg.seed,
            protocol: self.cfg.protocol,
            faults: self.cfg.faults,
            nodes: self.ids.len() - self.learners,
            check: v.check,
            at: self.now,
            detail: v.detail,
            knobs: self.knobs.clone(),
            trace: self.trace.lines(),
        });
        let mut fingerprint = self.fingerprint;
        fingerprint.add(&self.stats);
        fingerprint.add(&self.history);
        fingerprint.add(&failure);
        RunReport {
            seed: self.cfg.seed,
            failure,
            stats: self.stats,
            history: self.history,
            fingerprint: fingerprint.value(),
        }
    }

    /// Starts the nodes, clients and fault schedule, then runs until every client is done after
    /// the heal, or a checker fails.
    fn run_to_end(&mut self) -> Verdict {
        self.start()?;
        loop {
            let (heal, quota) = (self.heal(), self.cfg.workload.commands_per_client);
            if self
                .clients
                .iter()
                .all(|c| c.outstanding.is_empty() && (c.issued >= quota || self.now >= heal))
            {
                return Ok(());
            }
            let queue_at = self.queue.peek().map(|Reverse(q)| q.at);
            let deadline = self
                .nodes
                .iter()
                .enumerate()
                .filter_map(|(i, n)| n.deadline.map(|d| (d, i)))
                .min();
            let (at, timer) = match (queue_at, deadline) {
                (None, None) => return Err(self.liveness("nothing is scheduled any more")),
                (Some(q), Some((d, i))) if d <= q => (d, Some(i)),
                (None, Some((d, i))) => (d, Some(i)),
                (Some(q), _) => (q, None),
            };
            let at = at.max(self.now);
            if at > self.heal() + self.cfg.liveness_bound {
                return Err(self.liveness("the liveness bound passed"));
            }
            self.same_instant = if at == self.now {
                self.same_instant + 1
            } else {
                0
            };
            self.now = at;
            self.stats.steps += 1;
            if self.same_instant > 100_000 || self.stats.steps > self.cfg.max_steps {
                return Err(Violation {
                    check: Check::Stuck,
                    detail: format!(
                        "{} steps, {} of them at {} without time advancing",
                        self.stats.steps, self.same_instant, self.now
                    ),
                });
            }
            match timer {
                Some(i) => self.timeout(i)?,
                None => {
                    let Reverse(q) = self.queue.pop().expect("peeked");
                    self.handle(q.event)?;
                }
            }
        }
    }

    fn liveness(&self, why: &str) -> Violation {
        let mut waiting: Vec<String> = Vec::new();
        for c in &self.clients {
            for (r, p) in &c.outstanding {
                let invoked = self.history[p.history].invoked;
                waiting.push(format!(
                    "c{}r{} (since {invoked}, {} sends, last to {})",
                    c.id.0,
                    r.0,
                    p.attempt + 1,
                    self.ids[p.target]
                ));
            }
        }
        let shown = waiting.len().min(5);
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| match &n.node {
                None => format!("{} down", n.id),
                Some(node) => format!(
                    "{} {:?} b={} leader={} executed<{} queued={}{}",
                    n.id,
                    node.role(),
                    node.ballot(),
                    node.leader().map_or_else(|| "?".into(), |l| l.to_string()),
                    node.executed(),
                    node.queued(),
                    node.membership().map_or_else(String::new, |m| {
                        let show = |v: &[NodeId]| {
                            v.iter()
                                .map(|n| n.to_string())
                                .collect::<Vec<_>>()
                                .join(",")
                        };
                        let epochs: Vec<String> = m
                            .epochs()
                            .map(|(from, v)| format!("{from}:{{{}}}", show(v)))
                            .collect();
                        format!(" voters {}", epochs.join(" "))
                    })
                ),
            })
            .collect();
        Violation {
            check: Check::Liveness,
            detail: format!(
                "{why} ({}s after the heal at {}): {} commands outstanding: {}{}; nodes: {}",
                self.cfg.liveness_bound.as_secs_f64(),
                self.heal(),
                waiting.len(),
                waiting[..shown].join(", "),
                if waiting.len() > shown { ", ..." } else { "" },
                nodes.join("; ")
            ),
        }
    }

    fn start(&mut self) -> Verdict {
        for i in 0..self.nodes.len() {
            let node = Node::new(self.nodes[i].config.clone()).map_err(|e| Violation {
                check: Check::Panic,
                detail: format!("the core rejected its config: {e}"),
            })?;
            let id = self.nodes[i].id;
            self.checkers.started(
                id,
                node.executed(),
                node.promised(),
                node.stats().snapshots_installed,
                false,
            )?;
            self.nodes[i].node = Some(node);
        }
        for i in 0..self.nodes.len() {
            self.after_input(i)?;
        }
        let w = self.cfg.workload.clone();
        let n = self.nodes.len();
        for c in 0..w.clients {
            let depth = 1 + self.rng_clients.below(w.max_outstanding.max(1) as u64) as usize;
            let home = if w.pinned || self.cfg.protocol == Protocol::BasicPaxos {
                c % n
            } else {
                self.rng_clients.below(n as u64) as usize
            };
            // Spread a client's commands over the fault window unless told otherwise.
            let think = w.think.unwrap_or_else(|| {
                let per_stream = (w.commands_per_client / depth).max(1) as u32;
                self.cfg.heal_after * 2 / per_stream
            });
            self.clients.push(Client {
                id: ClientId::new(Time::ZERO, c as u64 + 1),
                home,
                next_request: 1,
                issued: 0,
                depth,
                think,
                outstanding: BTreeMap::new(),
                stalled: 0,
            });
            for _ in 0..depth {
                let at = if w.pinned {
                    Time::ZERO
                } else {
                    Time::ZERO
                        + self
                            .rng_clients
                            .duration(Duration::ZERO, think.max(Duration::from_millis(1)))
                };
                self.schedule(at, Event::ClientIssue { client: c });
            }
        }
        let events = self.plan.events.clone();
        for (at, e) in events {
            self.schedule(at, Event::Fault(e));
        }
        let heal = self.heal();
        self.schedule(heal, Event::Heal);
        Ok(())
    }

    fn handle(&mut self, event: Event) -> Verdict {
        match event {
            Event::Deliver { from, to, msg } => {
                let i = to.0 as usize;
                if self.nodes[i].node.is_none() {
                    self.stats.dropped += 1;
                    self.trace.push(
                        self.now,
                        TraceEvent::Dropped {
                            from,
                            to,
                            msg: MsgBrief::of(&msg),
                            reason: None,
                        },
                    );
                    return Ok(());
                }
                self.trace.push(
                    self.now,
                    TraceEvent::Deliver {
                        from,
                        to,
                        msg: MsgBrief::of(&msg),
                    },
                );
                let now = self.local_now(i);
                self.node_mut(i).handle_message(now, from, msg);
                self.after_input(i)
            }
            Event::Request { client, to, cmd } => {
                let i = to.0 as usize;
                if self.nodes[i].node.is_none() {
                    return Ok(());
                }
                self.trace.push(
                    self.now,
                    TraceEvent::Request {
                        client: self.clients[client].id,
                        request: cmd.request,
                        to,
                    },
                );
                let now = self.local_now(i);
                self.node_mut(i).handle_request(now, cmd);
                self.after_input(i)
            }
            Event::Reply { from, reply } => self.client_reply(from, reply),
            Event::PersistDone {
                node,
                incarnation,
                token,
            } => self.persisted(node, incarnation, token),
            Event::ClientIssue { client } => self.client_issue(client),
            Event::ClientTimeout {
                client,
                request,
                attempt,
            } => {
                let n = self.nodes.len() as u64;
                let next = self.rng_clients.below(n) as usize;
                let c = &mut self.clients[client];
                match c.outstanding.get_mut(&request) {
                    Some(p) if p.attempt == attempt => {
                        // The node may be down or cut off: try another, with the same request id.
                        p.attempt += 1;
                        p.target = next;
                        c.home = next;
                        self.stats.client_retries += 1;
                        self.client_send(client, request);
                    }
                    _ => {}
                }
                Ok(())
            }
            Event::ClientResend {
                client,
                request,
                attempt,
            } => {
                if self.clients[client]
                    .outstanding
                    .get(&request)
                    .is_some_and(|p| p.attempt == attempt)
                {
                    self.client_send(client, request);
                }
                Ok(())
            }
            Event::Fault(f) => self.fault(f),
            Event::PartitionEnd { id } => {
                self.network.end_partition(id);
                self.trace
                    .push(self.now, TraceEvent::Fault(format!("partition {id} ends")));
                Ok(())
            }
            Event::Restart { node, incarnation } => {
                if self.nodes[node].node.is_none() && self.nodes[node].incarnation == incarnation {
                    self.restart(node)?;
                }
                Ok(())
            }
            Event::Heal => {
                self.network.heal();
                self.kill_armed = None;
                self.trace
                    .push(self.now, TraceEvent::Fault("heal: faults stop".into()));
                for i in 0..self.nodes.len() {
                    if self.nodes[i].node.is_none() {
                        self.restart(i)?;
                    }
                }
                Ok(())
            }
        }
    }

    /// What node `i`'s clock reads now.
    fn local_now(&self, i: usize) -> Time {
        self.nodes[i].clock.local(self.now)
    }

    fn node_mut(&mut self, i: usize) -> &mut Node {
        self.nodes[i].node.as_mut().expect("node is up")
    }

    fn timeout(&mut self, i: usize) -> Verdict {
        let id = self.nodes[i].id;
        self.trace.push(self.now, TraceEvent::Timeout { node: id });
        // Cleared now, set again by `after_input` from `next_deadline()`.
        self.nodes[i].deadline = None;
        let now = self.local_now(i);
        self.node_mut(i).handle_timeout(now);
        self.after_input(i)
    }

    fn persisted(&mut self, i: usize, incarnation: u64, token: PersistToken) -> Verdict {
        if self.nodes[i].node.is_none() || self.nodes[i].incarnation != incarnation {
            return Ok(());
        }
        let id = self.nodes[i].id;
        let mut kinds = String::new();
        while self.nodes[i]
            .pending
            .front()
            .is_some_and(|(t, _)| *t <= token)
        {
            let (_, records) = self.nodes[i].pending.pop_front().expect("front exists");
            for record in &records {
                self.checkers.durable(id, &self.nodes[i].durable, record)?;
                self.nodes[i].durable.apply(record);
                if !kinds.is_empty() {
                    kinds.push(' ');
                }
                let _ = match record {
                    Record::Promise(b) => write!(kinds, "P{b}"),
                    Record::SlotPromise(slot, b) => write!(kinds, "P{slot}@{b}"),
                    Record::Accept { slot, ballot, .. } => write!(kinds, "A{slot}@{ballot}"),
                    Record::Snapshot { upto, .. } => write!(kinds, "Snap<{upto}"),
                };
            }
        }
        self.trace.push(
            self.now,
            TraceEvent::Persisted {
                node: id,
                token: token.0,
                records: kinds,
            },
        );
        let now = self.local_now(i);
        self.node_mut(i).handle_persisted(now, token);
        self.after_input(i)
    }

    /// After an input to node `i`: carries out its actions in order, feeds what it executed to
    /// the checkers, checks its promise and state, and reads its next deadline.
    fn after_input(&mut self, i: usize) -> Verdict {
        let Some(mut node) = self.nodes[i].node.take() else {
            return Ok(());
        };
        let result = self.carry_out(i, &mut node);
        let kill = match result {
            Ok(kill) => kill,
            Err(v) => {
                self.nodes[i].node = Some(node);
                return Err(v);
            }
        };
        let local_reads = node.stats().local_reads;
        if local_reads > self.nodes[i].local_reads && self.cfg.check_lease_overlap {
            let reads = local_reads - self.nodes[i].local_reads;
            self.nodes[i].local_reads = local_reads;
            let verdict = self
                .checkers
                .lease_reads(self.nodes[i].id, node.ballot(), reads);
            if verdict.is_err() {
                self.nodes[i].node = Some(node);
                return verdict;
            }
        }
        let clock = self.nodes[i].clock;
        self.nodes[i].deadline = node.next_deadline().map(|d| clock.true_time(d));
        let shown = (node.role(), node.ballot(), node.leader());
        if self.nodes[i].shown != Some(shown) {
            self.nodes[i].shown = Some(shown);
            self.trace.push(
                self.now,
                TraceEvent::Role {
                    node: self.nodes[i].id,
                    role: shown.0,
                    ballot: shown.1,
                    leader: shown.2,
                },
            );
        }
        self.nodes[i].node = Some(node);
        if kill {
            let downtime = self.kill_armed.take().unwrap_or_default();
            self.stats.mid_batch_kills += 1;
            self.crash(i, downtime, "leader killed mid-batch")?;
        }
        Ok(())
    }

    /// The body of `after_input`; returns whether the armed mid-batch kill should fire now.
    fn carry_out(&mut self, i: usize, node: &mut Node) -> Result<bool, Violation> {
        let id = self.nodes[i].id;
        let mut actions = std::mem::take(&mut self.actions);
        node.drain_actions(self.local_now(i), &mut actions);
        if !actions.is_empty() {
            self.fingerprint.add(&(self.now, id));
            for action in &actions {
                self.fingerprint.add(action);
            }
        }
        let proposer = matches!(node.role(), Role::Leader | Role::Proposer);
        let mut kill = false;
        for action in actions.drain(..) {
            match action {
                Action::Send { to, msg } => {
                    self.checkers.outgoing(id, &self.nodes[i].durable, &msg)?;
                    kill |= self.kill_armed.is_some() && proposer && carries_commands(&msg);
                    if to != id {
                        self.send(id, to, msg);
                    }
                }
                Action::Broadcast { msg } => {
                    self.checkers.outgoing(id, &self.nodes[i].durable, &msg)?;
                    kill |= self.kill_armed.is_some() && proposer && carries_commands(&msg);
                    for k in 0..self.ids.len() {
                        let to = self.ids[k];
                        if to != id {
                            self.send(id, to, msg.clone());
                        }
                    }
                }
                Action::Reply(reply) => self.reply(id, reply),
                Action::Persist { token, records } => {
                    let delay = self
                        .rng_persist
                        .duration(Duration::from_micros(20), self.plan.persist_max);
                    let sn = &mut self.nodes[i];
                    let done = (self.now + delay).max(sn.last_persist_done);
                    sn.last_persist_done = done;
                    sn.pending.push_back((token, records));
                    let incarnation = sn.incarnation;
                    self.schedule(
                        done,
                        Event::PersistDone {
                            node: i,
                            incarnation,
                            token,
                        },
                    );
                }
            }
        }
        self.actions = actions;

        let mut executed = std::mem::take(&mut self.executed);
        node.drain_executed(&mut executed);
        for e in &executed {
            self.fingerprint.add(&(id, e));
        }
        let installed = node.stats().snapshots_installed;
        let mut verdict = Ok(());
        for (slot, value) in &executed {
            verdict = self.checkers.executed(id, *slot, value, installed);
            if verdict.is_err() {
                self.trace.push(
                    self.now,
                    TraceEvent::Executed {
                        node: id,
                        first: *slot,
                        last: *slot,
                        value: ValueBrief::of(value),
                    },
                );
                break;
            }
        }
        if verdict.is_ok() {
            if let (Some((first, _)), Some((last, value))) = (executed.first(), executed.last()) {
                self.trace.push(
                    self.now,
                    TraceEvent::Executed {
                        node: id,
                        first: *first,
                        last: *last,
                        value: ValueBrief::of(value),
                    },
                );
            }
        }
        executed.clear();
        self.executed = executed;
        verdict?;
        self.checkers.promise_now(id, node.promised())?;
        self.checkers
            .compare_state(id, node.executed(), node.kv())?;
        Ok(kill)
    }

    fn send(&mut self, from: NodeId, to: NodeId, msg: Message) {
        if to.0 as usize >= self.ids.len() {
            self.trace.push(
                self.now,
                TraceEvent::Fault(format!("{from} sent to unknown node {to}: ignored")),
            );
            return;
        }
        self.stats.messages += 1;
        match self
            .network
            .route(Endpoint::Node(from), Endpoint::Node(to), self.now)
        {
            Fate::Dropped(reason) => {
                self.stats.dropped += 1;
                self.trace.push(
                    self.now,
                    TraceEvent::Dropped {
                        from,
                        to,
                        msg: MsgBrief::of(&msg),
                        reason: Some(reason),
                    },
                );
            }
            Fate::Deliver(times) => {
                let last = times.len() - 1;
                let mut msg = Some(msg);
                for (k, at) in times.into_iter().enumerate() {
                    let m = if k == last {
                        msg.take().expect("moved once")
                    } else {
                        msg.clone().expect("still here")
                    };
                    self.schedule(at, Event::Deliver { from, to, msg: m });
                }
            }
        }
    }

    fn reply(&mut self, from: NodeId, reply: Reply) {
        let client = reply.client.nonce().wrapping_sub(1) as usize;
        if client >= self.clients.len() {
            // A reply for a client that does not exist is caught when it "arrives".
            self.schedule(self.now, Event::Reply { from, reply });
            return;
        }
        if let Fate::Deliver(times) = self.network.route(
            Endpoint::Node(from),
            Endpoint::Client(reply.client),
            self.now,
        ) {
            for at in times {
                self.schedule(
                    at,
                    Event::Reply {
                        from,
                        reply: reply.clone(),
                    },
                );
            }
        }
    }

    /// Now and then (runs with [`SimConfig::reconfigs`]), a membership change instead of a
    /// key-value command: swap a voter for a non-voter, or add or remove one to come back to
    /// the configured number of voters, judged by the voters the reference replayed so far
    /// (which may lag, so some changes are refused: that is tested too).
    fn draw_reconfig(&mut self) -> Option<Op> {
        let rng = self.rng_reconfig.as_mut()?;
        if !rng.chance(0.25) {
            return None;
        }
        let voters = self.checkers.reference().latest_voters()?;
        let others: Vec<NodeId> = self
            .ids
            .iter()
            .copied()
            .filter(|n| !voters.contains(n))
            .collect();
        let wanted = self.ids.len() - self.learners;
        let pick = |rng: &mut SimRng, from: &[NodeId]| from[rng.below(from.len() as u64) as usize];
        let add = if voters.len() <= wanted && !others.is_empty() {
            vec![pick(rng, &others)]
        } else {
            Vec::new()
        };
        let remove = if voters.len() >= wanted {
            vec![pick(rng, &voters)]
        } else {
            Vec::new()
        };
        Some(Op::Reconfigure { add, remove })
    }

    fn client_issue(&mut self, c: usize) -> Verdict {
        let quota = self.cfg.workload.commands_per_client;
        let client = &self.clients[c];
        if client.issued >= quota
            || self.now >= self.heal()
            || client.outstanding.len() >= client.depth
        {
            return Ok(());
        }
        // The core keeps replies for a window of `reply_cache_per_client` request ids and treats
        // anything older than the window as abandoned (answered `Expired`, never executed). A
        // client that still waits for a request must not run that far ahead of it.
        let window = self.nodes[0].config.reply_cache_per_client as u64;
        if let Some(oldest) = client.outstanding.keys().next() {
            if client.next_request >= oldest.0 + window {
                self.clients[c].stalled += 1;
                return Ok(());
            }
        }
        let change = if c == 0 { self.draw_reconfig() } else { None };
        let key = match change {
            Some(_) => Bytes::new(),
            None => self.keys[self.rng_clients.below(self.keys.len() as u64) as usize].clone(),
        };
        let client = &mut self.clients[c];
        let request = RequestId(client.next_request);
        client.next_request += 1;
        client.issued += 1;
        let op = match change {
            Some(op) => op,
            None => match self.rng_clients.below(10) {
                0..=3 => Op::Put {
                    key,
                    value: Bytes::from(format!("c{}r{}", client.id.0, request.0)),
                },
                4..=7 => Op::Get { key },
                _ => Op::Delete { key },
            },
        };
        let cmd = Command {
            client: client.id,
            request,
            op: op.clone(),
        };
        self.checkers.issued_at(&cmd, self.now);
        self.history.push(HistoryEntry {
            client: client.id,
            request,
            op,
            invoked: self.now,
            response: None,
        });
        let pending = Pending {
            cmd,
            target: client.home,
            attempt: 0,
            history: self.history.len() - 1,
        };
        client.outstanding.insert(request, pending);
        self.stats.issued += 1;
        self.client_send(c, request);
        Ok(())
    }

    /// Sends (or re-sends) an outstanding request to its target and arms its timeout.
    fn client_send(&mut self, c: usize, request: RequestId) {
        let client = &self.clients[c];
        let p = &client.outstanding[&request];
        let (to, cmd, attempt, id) = (self.ids[p.target], p.cmd.clone(), p.attempt, client.id);
        if let Fate::Deliver(times) =
            self.network
                .route(Endpoint::Client(id), Endpoint::Node(to), self.now)
        {
            for at in times {
                self.schedule(
                    at,
                    Event::Request {
                        client: c,
                        to,
                        cmd: cmd.clone(),
                    },
                );
            }
        }
        let timeout = self.now + self.cfg.workload.client_timeout;
        self.schedule(
            timeout,
            Event::ClientTimeout {
                client: c,
                request,
                attempt,
            },
        );
    }

    fn client_reply(&mut self, from: NodeId, reply: Reply) -> Verdict {
        let c = reply.client.nonce().wrapping_sub(1) as usize;
        self.trace.push(
            self.now,
            TraceEvent::Reply {
                client: reply.client,
                request: reply.request,
                from,
                outcome: reply.outcome.clone(),
            },
        );
        if c >= self.clients.len() {
            return Err(Violation {
                check: Check::ExactlyOnceReplies,
                detail: format!(
                    "{from} replied to client {}, which does not exist",
                    reply.client.0
                ),
            });
        }
        let outstanding = self.clients[c].outstanding.contains_key(&reply.request);
        self.checkers
            .reply(reply.client, reply.request, &reply.outcome, self.now)?;
        if !outstanding {
            return Ok(());
        }
        let from_index = from.0 as usize;
        let n = self.nodes.len();
        match reply.outcome {
            Outcome::NotLeader { .. } | Outcome::Overloaded => {
                let p = self.clients[c]
                    .outstanding
                    .get_mut(&reply.request)
                    .expect("outstanding");
                if p.target != from_index {
                    // An answer to an earlier send; the client has moved on already.
                    return Ok(());
                }
                let (next, pause) = match reply.outcome {
                    // Not taken: ask the same node again a little later.
                    Outcome::Overloaded => (from_index, Duration::from_millis(20)),
                    Outcome::NotLeader { leader: Some(l) } if (l.0 as usize) < n && l != from => {
                        (l.0 as usize, Duration::from_millis(1))
                    }
                    // No idea who leads (an election is going on): wait a little, try another.
                    _ => (
                        (from_index + 1 + self.rng_clients.below(n.max(2) as u64 - 1) as usize) % n,
                        Duration::from_millis(20),
                    ),
                };
                p.attempt += 1;
                p.target = next;
                let attempt = p.attempt;
                self.clients[c].home = next;
                self.schedule(
                    self.now + pause,
                    Event::ClientResend {
                        client: c,
                        request: reply.request,
                        attempt,
                    },
                );
            }
            outcome => {
                let now = self.now;
                let client = &mut self.clients[c];
                let p = client
                    .outstanding
                    .remove(&reply.request)
                    .expect("outstanding");
                client.home = from_index;
                if outcome == Outcome::Expired && p.cmd.client == client.id {
                    // The session may have been dropped: later requests go in a new one (its
                    // request ids keep counting, so they never meet the old session's).
                    client.id = ClientId::new(now, c as u64 + 1);
                    self.stats.sessions_renewed += 1;
                }
                let think = client.think;
                if let Op::Reconfigure { .. } = p.cmd.op {
                    match outcome {
                        Outcome::Done => self.stats.reconfigs_done += 1,
                        Outcome::Refused(_) => self.stats.reconfigs_refused += 1,
                        _ => {}
                    }
                }
                self.history[p.history].response = Some((self.now, outcome));
                self.stats.completed += 1;
                self.stats.last_completion = self.now;
                let pause = self
                    .rng_clients
                    .duration(Duration::ZERO, think.max(Duration::from_nanos(1)));
                self.schedule(self.now + pause, Event::ClientIssue { client: c });
                // Streams that stalled on the reply-cache window may go on now.
                for _ in 0..std::mem::take(&mut self.clients[c].stalled) {
                    self.schedule(self.now + pause, Event::ClientIssue { client: c });
                }
            }
        }
        Ok(())
    }

    /// The node that leads now (the highest ballot among nodes in the Leader role), if any.
    fn leader(&self) -> Option<usize> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                n.node
                    .as_ref()
                    .filter(|node| node.role() == Role::Leader)
                    .map(|node| (node.ballot(), i))
            })
            .max()
            .map(|(_, i)| i)
    }

    fn fault(&mut self, fault: FaultEvent) -> Verdict {
        match fault {
            FaultEvent::Partition {
                id,
                shape,
                duration,
            } => {
                let leader = self.leader().map(|i| self.ids[i]);
                let fallback = *self.rng_faults.pick(&self.ids);
                let cut = shape.resolve(&self.ids, leader, fallback);
                let links: Vec<String> = cut.iter().map(|(a, b)| format!("{a}->{b}")).collect();
                self.trace.push(
                    self.now,
                    TraceEvent::Fault(format!("partition {id} cuts {}", links.join(" "))),
                );
                self.network.start_partition(id, cut);
                let end = (self.now + duration).min(self.heal());
                self.schedule(end, Event::PartitionEnd { id });
            }
            FaultEvent::Crash { node, downtime } => {
                let target = match node {
                    Some(n) => Some(n.0 as usize),
                    None => self.leader(),
                };
                let target = target
                    .unwrap_or_else(|| self.rng_faults.below(self.nodes.len() as u64) as usize);
                if self.nodes[target].node.is_some() {
                    self.crash(target, downtime, "crash")?;
                }
            }
            FaultEvent::KillLeaderMidBatch { downtime } => {
                self.trace.push(
                    self.now,
                    TraceEvent::Fault("armed: kill the leader mid-batch".into()),
                );
                self.kill_armed = Some(downtime);
            }
        }
        Ok(())
    }

    fn crash(&mut self, i: usize, downtime: Duration, why: &str) -> Verdict {
        let id = self.ids[i];
        // Writes in flight are an append-only log's unsynced tail: some prefix of it may have
        // reached the disk. The core was never told, so it must cope with any prefix surviving.
        let in_flight: Vec<Record> = std::mem::take(&mut self.nodes[i].pending)
            .into_iter()
            .flat_map(|(_, records)| records)
            .collect();
        let kept = if in_flight.is_empty() || !self.rng_faults.chance(0.5) {
            0
        } else {
            self.rng_faults.range(0, in_flight.len() as u64 + 1) as usize
        };
        for record in &in_flight[..kept] {
            self.checkers.durable(id, &self.nodes[i].durable, record)?;
            self.nodes[i].durable.apply(record);
        }
        let sn = &mut self.nodes[i];
        sn.node = None;
        sn.incarnation += 1;
        sn.deadline = None;
        sn.shown = None;
        sn.local_reads = 0;
        sn.last_persist_done = self.now;
        let incarnation = sn.incarnation;
        self.stats.crashes += 1;
        self.trace.push(
            self.now,
            TraceEvent::Fault(format!(
                "{why}: {id} down ({kept} of {} records in flight survive)",
                in_flight.len()
            )),
        );
        let at = (self.now + downtime).min(self.heal()).max(self.now);
        self.schedule(
            at,
            Event::Restart {
                node: i,
                incarnation,
            },
        );
        Ok(())
    }

    fn restart(&mut self, i: usize) -> Verdict {
        let sn = &self.nodes[i];
        let node = Node::recover(sn.config.clone(), sn.durable.clone()).map_err(|e| Violation {
            check: Check::Panic,
            detail: format!("recover rejected its config: {e}"),
        })?;
        let id = sn.id;
        self.trace.push(
            self.now,
            TraceEvent::Fault(format!(
                "{id} restarts: durable promise {}, {} accepted, log start {}; promised() = {}",
                sn.durable.promised,
                sn.durable.accepted.len(),
                sn.durable.log_start(),
                node.promised()
            )),
        );
        self.checkers.started(
            id,
            node.executed(),
            node.promised(),
            node.stats().snapshots_installed,
            true,
        )?;
        self.nodes[i].node = Some(node);
        self.after_input(i)
    }
}

/// Whether a message is an Accept of client commands (what "mid-batch" means).
fn carries_commands(msg: &Message) -> bool {
    matches!(msg, Message::Accept(a) if !a.value.commands().is_empty())
}

/// How many learners a run has beyond its voters (see [`SimConfig::learners`]).
fn learner_count(cfg: &SimConfig) -> usize {
    if cfg.protocol == Protocol::Unreplicated {
        return 0;
    }
    if let Some(k) = cfg.learners {
        return k;
    }
    let mut rng = SimRng::stream(cfg.seed, STREAM_LEARNERS);
    let drawn = cfg.vary_knobs && rng.chance(0.25);
    if drawn || cfg.bug == Some(Bug::LearnerVotes) {
        rng.range(1, 3) as usize
    } else {
        usize::from(reconfigs(cfg))
    }
}

/// Whether a run changes membership (see [`SimConfig::reconfigs`]).
fn reconfigs(cfg: &SimConfig) -> bool {
    if cfg.protocol != Protocol::MultiPaxos {
        return false;
    }
    if let Some(r) = cfg.reconfigs {
        return r;
    }
    let drawn = cfg.vary_knobs && SimRng::stream(cfg.seed, STREAM_RECONFIG).chance(0.33);
    drawn || cfg.bug == Some(Bug::ReconfigNextSlot)
}

/// The node configurations of a run, and a one-line description of the drawn knobs.
fn node_configs(cfg: &SimConfig, ids: &[NodeId], learners: &[NodeId]) -> (Vec<Config>, String) {
    let mut base = Config::new(cfg.protocol, ids[0], ids.to_vec());
    base.learners = learners.to_vec();
    base.trace_execution = true;
    base.bug = cfg.bug;
    if cfg.bug.is_some_and(Bug::needs_lease) {
        base.reads = ReadMode::Lease;
    }
    if let Some(b) = cfg.backoff {
        base.backoff = b;
    }
    if cfg.vary_knobs {
        let mut rng = SimRng::stream(cfg.seed, STREAM_KNOBS);
        if cfg.protocol == Protocol::MultiPaxos {
            base.window = *rng.pick(&[1, 2, 4, 32]);
            base.max_batch = *rng.pick(&[1, 3, 100]);
            base.explicit_commit = rng.chance(0.3);
            base.skip_phase1 = !rng.chance(0.2);
        } else if cfg.protocol == Protocol::BasicPaxos {
            base.max_batch = *rng.pick(&[1, 1, 2]);
        }
        base.snapshot_interval = *rng.pick(&[3, 10, 10_000]);
        base.log_retain_slots = base.snapshot_interval * rng.pick(&[1, 3, 10]);
        base.catch_up_batch = *rng.pick(&[2, 256]);
        base.reply_cache_per_client = *rng.pick(&[8, 4096]);
        // Drawn last, from the knob stream only, so earlier draws (and seeds) are unchanged.
        base.durable_snapshots = !rng.chance(0.3);
        base.partial_batches = *rng.pick(&[1, 2, 32]);
        base.max_queue = *rng.pick(&[3, 10_000]);
        base.session_timeout = *rng.pick(&[
            paxos::DEFAULT_SESSION_TIMEOUT,
            Duration::from_secs(2),
            Duration::from_millis(300),
        ]);
        if cfg.protocol == Protocol::MultiPaxos && rng.chance(0.5) {
            // Leases, sometimes longer than the election timeout so that followers wait them out.
            base.reads = ReadMode::Lease;
            base.lease_duration = *rng.pick(&[
                Duration::from_millis(100),
                Duration::from_millis(500),
                Duration::from_millis(1500),
            ]);
        }
        if cfg.backoff.is_none() {
            // Backoff fixed (the default) or in measured phase-1 round trips.
            base.backoff.base = *rng.pick(&[
                base.backoff.base,
                BackoffSpan::Rtts { milli: 2000 },
                BackoffSpan::Rtts { milli: 500 },
            ]);
        }
        // The drift bound the nodes are configured with (and their clocks drawn within):
        // sometimes none, sometimes far beyond real clocks, so that a lease margin matters.
        base.clock_drift_ppm = *rng.pick(&[0, 1000, 1000, 200_000]);
        // Sometimes a short election timeout, below the lease: followers then wait out the lease
        // they granted rather than their own timer, which is where a lease margin is tested.
        base.election_timeout = *rng.pick(&[
            base.election_timeout,
            base.election_timeout,
            Duration::from_millis(120),
        ]);
        // Without durable snapshots the log is truncated every `truncate_interval` slots when
        // that is sooner than `snapshot_interval`.
        base.truncate_interval = *rng.pick(&[2, 1_000]);
    }
    if cfg.bug == Some(Bug::LeaseWithoutDriftMargin) {
        // That variant is exact on perfect clocks: only drift makes its lease outlast a grant.
        base.clock_drift_ppm = base.clock_drift_ppm.max(200_000);
    }
    let knobs = format!(
        "window={} max_batch={} skip_phase1={} explicit_commit={} snapshot_interval={} truncate_interval={} log_retain_slots={} catch_up_batch={} reply_cache={} durable_snapshots={} partial_batches={} max_queue={} session_timeout={:?} backoff={:?} base={} reads={} lease={:?} drift_bound_ppm={} election_timeout={:?}{}{}{}",
        base.window,
        base.max_batch,
        base.skip_phase1,
        base.explicit_commit,
        base.snapshot_interval,
        base.truncate_interval,
        base.log_retain_slots,
        base.catch_up_batch,
        base.reply_cache_per_client,
        base.durable_snapshots,
        base.partial_batches,
        base.max_queue,
        base.session_timeout,
        base.backoff.mode,
        base.backoff.base,
        base.reads,
        base.lease_duration,
        base.clock_drift_ppm,
        base.election_timeout,
        if learners.is_empty() {
            String::new()
        } else {
            format!(" learners={learners:?}")
        },
        if reconfigs(cfg) { " reconfigs" } else { "" },
        cfg.bug.map_or_else(String::new, |b| format!(" bug={b:?}"))
    );
    let configs = ids
        .iter()
        .enumerate()
        .map(|(k, &id)| {
            let mut c = base.clone();
            c.id = id;
            c.seed = SimRng::stream(cfg.seed, STREAM_NODES + k as u64).next_u64();
            c
        })
        .collect();
    (configs, knobs)
}
