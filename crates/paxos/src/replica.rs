//! The shared part of a node, whatever protocol drives it: configuration, clock and RNG, stats,
//! the acceptor, the learner's log, the outbox and self-inbox, execution and replies, the queue
//! of commands waiting for a slot, catch-up, truncation and snapshots.
//!
//! The protocol's proposer side is an engine ([`crate::engine::ProtocolEngine`]) that gets
//! `&mut Replica` on every call. The replica's message handlers (acceptor phases 1 and 2,
//! Learn, CatchUp, Snapshot) call the engine's hooks at the points where a protocol must react;
//! everything else here knows nothing of any protocol.

use std::collections::VecDeque;
use std::time::Duration;

use rustc_hash::FxHashSet;

use crate::acceptor::{AcceptOutcome, Acceptor, PrepareOutcome};
use crate::command::{Command, Op, Outcome, Reply, Value};
use crate::config::{BackoffMode, Bug, Config, ConfigError, Protocol};
use crate::engine::ProtocolEngine;
use crate::kv::{Applied, KvState};
use crate::log::Log;
use crate::membership::Membership;
use crate::messages::{
    Accept, Accepted, CatchUp, ChosenEntry, Learn, Message, Nack, Prepare, PrepareScope, Promise,
    Snapshot,
};
use crate::outbox::{Gated, Outbox};
use crate::quorum::Votes;
use crate::rng::Rng;
use crate::stats::Stats;
use crate::storage::{Durable, Record};
use crate::types::{ClientId, NodeId, RequestId, Slot, Time};
use crate::Action;

/// What every node holds, whatever its protocol.
#[derive(Debug)]
pub(crate) struct Replica {
    pub(crate) config: Config,
    /// This node's index in `config.nodes` (its bit in vote sets).
    pub(crate) index: usize,
    pub(crate) now: Time,
    /// Whether timers are armed (a fresh or recovered node arms them on its first input).
    pub(crate) started: bool,
    /// False for a node that lost its durable state, and for a configured learner of a protocol
    /// without membership change: it learns but never votes. (Multi-Paxos nodes vote while the
    /// membership says so: see [`Replica::votes`].)
    pub(crate) voting: bool,
    pub(crate) rng: Rng,
    pub(crate) stats: Stats,
    pub(crate) acceptor: Acceptor,
    pub(crate) log: Log,
    pub(crate) out: Outbox,
    /// Messages this node sent to itself, handled before the step ends.
    inbox: VecDeque<Message>,
    /// Requests this node took and must answer once they execute.
    pub(crate) pending: FxHashSet<(ClientId, RequestId)>,
    /// Commands waiting for a slot (leader or proposer), and their payload bytes.
    pub(crate) queue: VecDeque<Command>,
    /// Highest ballot round seen anywhere: a new ballot goes above it.
    pub(crate) max_round: u64,
    /// Each node's next slot to execute, as last reported (drives truncation).
    pub(crate) peer_executed: Vec<Slot>,
    /// Highest truncation point announced to this node.
    truncate_hint: Slot,
    /// Where the last snapshot was taken.
    last_snapshot: Slot,
    /// A catch-up request is outstanding until then.
    pub(crate) catch_up_retry: Option<Time>,
    /// When a snapshot last went to each peer.
    snapshot_sent: Vec<Option<Time>>,
    /// Executed slots for the simulator's checkers (`trace_execution`).
    pub(crate) executed_trace: Vec<(Slot, Value)>,
}

impl Replica {
    /// The shared state of a node restarted from what it persisted (see `Node::recover`).
    pub(crate) fn recover(config: Config, durable: Durable) -> Result<Replica, ConfigError> {
        config.validate()?;
        let index = config
            .nodes
            .iter()
            .position(|n| *n == config.id)
            .expect("validated");
        let accept_lower = config.bug == Some(Bug::AcceptLowerBallot);
        let forget = config.bug == Some(Bug::ForgetPromiseOnRestart);
        let acceptor = Acceptor::recover(&durable, accept_lower, forget);
        let mut kv = match &durable.snapshot {
            Some((_, state)) => (**state).clone(),
            None => KvState::new(config.reply_cache_per_client, config.session_timeout),
        };
        let tracks_membership = config.protocol == Protocol::MultiPaxos;
        if tracks_membership && kv.membership().is_none() {
            let voters = config
                .nodes
                .iter()
                .copied()
                .filter(|n| !config.is_learner(*n))
                .collect();
            kv.set_membership(Membership::new(voters, config.window as u64));
        }
        if config.bug == Some(Bug::ResurrectExpiredSessions) {
            kv.resurrect_expired_sessions();
        }
        let log = Log::new(kv, durable.snapshot.clone());
        let start = log.executed();
        let seed = config.seed ^ (u64::from(config.id.0) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Ok(Replica {
            index,
            now: Time::ZERO,
            started: false,
            voting: tracks_membership
                || !config.is_learner(config.id)
                || config.bug == Some(Bug::LearnerVotes),
            rng: Rng::new(seed),
            stats: Stats::default(),
            max_round: acceptor.max_round(),
            acceptor,
            log,
            out: Outbox::default(),
            inbox: VecDeque::new(),
            pending: FxHashSet::default(),
            queue: VecDeque::new(),
            peer_executed: vec![Slot(0); config.nodes.len()],
            truncate_hint: Slot(0),
            last_snapshot: start,
            catch_up_retry: None,
            snapshot_sent: vec![None; config.nodes.len()],
            executed_trace: Vec::new(),
            config,
        })
    }
}

// A step: how every input begins and ends.
impl Replica {
    /// Begins a step at `now`; a node's first step arms the engine's timers.
    pub(crate) fn begin<E: ProtocolEngine>(&mut self, e: &mut E, now: Time) {
        debug_assert!(
            now >= self.now || !self.started,
            "time never goes backwards"
        );
        self.now = self.now.max(now);
        if !self.started {
            self.started = true;
            e.start(self);
        }
    }

    /// Handles self-addressed messages, then hands the step's records out as one Persist.
    pub(crate) fn finish<E: ProtocolEngine>(&mut self, e: &mut E) {
        while let Some(msg) = self.inbox.pop_front() {
            self.on_message(e, self.config.id, msg);
        }
        self.log.free_some();
        self.out.flush();
    }

    /// A client command of a replicated protocol that the reply cache could not answer: queue
    /// it if this node `takes` requests, else point the client to `leader`.
    pub(crate) fn take_request(&mut self, cmd: Command, takes: bool, leader: Option<NodeId>) {
        if let (Some(Bug::LocalReads), Op::Get { key }) = (self.config.bug, &cmd.op) {
            // The self-test's broken variant: no log, no lease, whatever this node holds now.
            let value = self.log.kv.get(key).cloned();
            self.reply(cmd.client, cmd.request, Outcome::Value(value));
        } else if self.pending.contains(&(cmd.client, cmd.request)) {
            self.stats.ignored += 1;
        } else if takes && self.queue.len() >= self.config.max_queue {
            self.stats.overloaded += 1;
            self.reply(cmd.client, cmd.request, Outcome::Overloaded);
        } else if takes {
            self.pending.insert((cmd.client, cmd.request));
            self.queue.push_back(cmd);
        } else {
            self.reply(cmd.client, cmd.request, Outcome::NotLeader { leader });
        }
    }
}

// Outputs: messages, replies, records.
impl Replica {
    pub(crate) fn node_index(&self, id: NodeId) -> Option<usize> {
        self.config.nodes.iter().position(|n| *n == id)
    }

    pub(crate) fn quorum(&self) -> usize {
        self.config.quorum()
    }

    /// Whether this node sends votes (Promise, Accepted) now: it has its durable state and,
    /// under Multi-Paxos, it is a voter of its next slot to execute or of a later one decided
    /// so far. A node added by a membership change therefore votes only once it has executed
    /// the change, which it reaches by catching up (from a snapshot if it is far behind); a
    /// removed node stops once it has executed past the last slot it voted for.
    pub(crate) fn votes(&self) -> bool {
        let member = match self.log.kv.membership() {
            Some(m) => {
                m.votes_from(self.log.executed(), self.config.id)
                    || self.config.bug == Some(Bug::LearnerVotes)
            }
            None => true,
        };
        self.voting && member
    }

    /// The voters of `slot` (all but the learners without membership change).
    pub(crate) fn voters_at(&self, slot: Slot) -> std::borrow::Cow<'_, [NodeId]> {
        match self.log.kv.membership() {
            Some(m) => std::borrow::Cow::Borrowed(m.voters_at(slot)),
            None => std::borrow::Cow::Owned(
                self.config
                    .nodes
                    .iter()
                    .copied()
                    .filter(|n| !self.config.is_learner(*n))
                    .collect(),
            ),
        }
    }

    /// Whether `votes` hold a majority of `slot`'s voters (see [`crate::membership`]).
    pub(crate) fn is_quorum(&self, votes: Votes, slot: Slot) -> bool {
        if self.config.bug == Some(Bug::CommitWithoutQuorum) {
            return votes.count() >= 1;
        }
        let Some(m) = self.log.kv.membership() else {
            return votes.count() >= self.config.quorum();
        };
        let voters = m.voters_at(slot);
        let have = voters
            .iter()
            .filter(|v| self.node_index(**v).is_some_and(|i| votes.contains(i)))
            .count();
        have > voters.len() / 2
    }

    fn count_sent(&mut self, msg: &Message, copies: u64) {
        self.stats.sent[msg.kind() as usize] += copies;
    }

    /// Sends at once.
    pub(crate) fn send(&mut self, to: NodeId, msg: Message) {
        self.release(Gated::Send(to, msg));
    }

    /// Sends to every other node at once.
    pub(crate) fn broadcast(&mut self, msg: Message) {
        self.release(Gated::Broadcast(msg));
    }

    /// Sends to every node, this one included (its own acceptor votes like any other).
    pub(crate) fn broadcast_all(&mut self, msg: Message) {
        self.inbox.push_back(msg.clone());
        self.broadcast(msg);
    }

    /// A proposer's Prepare: its own acceptor promises first, and the Prepare reaches peers only
    /// once that promise is durable. Otherwise a proposer that won with its peers' votes and
    /// crashed before its own write landed could restart below its ballot and reuse it with a
    /// different value.
    pub(crate) fn broadcast_prepare<E: ProtocolEngine>(&mut self, e: &mut E, prepare: Prepare) {
        self.on_prepare(e, self.config.id, prepare.clone());
        self.release_after_persist(Gated::Broadcast(Message::Prepare(prepare)));
    }

    /// Sends once everything persisted so far is durable.
    pub(crate) fn send_after_persist(&mut self, to: NodeId, msg: Message) {
        self.release_after_persist(Gated::Send(to, msg));
    }

    fn release_after_persist(&mut self, g: Gated) {
        if self.config.bug == Some(Bug::AckBeforeDurable) {
            // The self-test's broken variant: no barrier at all.
            self.release(g);
        } else if let Some(g) = self.out.gate(g) {
            self.release(g);
        }
    }

    pub(crate) fn release(&mut self, g: Gated) {
        match g {
            Gated::Send(to, msg) if to == self.config.id => self.inbox.push_back(msg),
            Gated::Send(to, msg) => {
                self.count_sent(&msg, 1);
                self.out.push(Action::Send { to, msg });
            }
            Gated::Broadcast(msg) => {
                self.count_sent(&msg, self.config.nodes.len() as u64 - 1);
                self.out.push(Action::Broadcast { msg });
            }
        }
    }

    pub(crate) fn persist(&mut self, records: Vec<Record>) {
        for r in records {
            self.out.persist(r);
        }
    }

    pub(crate) fn reply(&mut self, client: ClientId, request: RequestId, outcome: Outcome) {
        self.out.push(Action::Reply(Reply {
            client,
            request,
            outcome,
        }));
    }
}

// Helpers for the proposer side of any protocol.
impl Replica {
    /// Takes the next batch off a non-empty queue: up to `max_batch` commands and
    /// `max_batch_bytes` (a single larger command still goes alone), and counts it. A command
    /// that was executed meanwhile (an earlier proposal of it won) is deduplicated at execution
    /// and answered from the cache.
    pub(crate) fn cut_batch(&mut self) -> Vec<Command> {
        debug_assert!(
            !self.queue.is_empty(),
            "callers cut only from a non-empty queue"
        );
        let mut batch = Vec::with_capacity(self.config.max_batch.min(self.queue.len()));
        let mut bytes = 0;
        while batch.len() < self.config.max_batch {
            let Some(next) = self.queue.front() else {
                break;
            };
            let len = next.op.payload_len();
            if !batch.is_empty() && bytes + len > self.config.max_batch_bytes {
                break;
            }
            bytes += len;
            batch.push(self.queue.pop_front().expect("front exists"));
        }
        let n = batch.len() as u64;
        self.stats.batches += 1;
        self.stats.batched_commands += n;
        self.stats.max_batch_seen = self.stats.max_batch_seen.max(n);
        batch
    }

    /// Answers every request this node took but has not executed: the client must go elsewhere.
    /// (A command already proposed may still be chosen; a retry elsewhere is deduplicated.)
    pub(crate) fn fail_pending(&mut self, leader: Option<NodeId>) {
        self.queue.clear();
        let mut pending: Vec<_> = self.pending.drain().collect();
        pending.sort_unstable();
        for (client, request) in pending {
            self.reply(client, request, Outcome::NotLeader { leader });
        }
    }

    /// Random exponential backoff before retry number `attempt` (1 = first retry).
    pub(crate) fn backoff(&mut self, attempt: u32) -> Duration {
        let b = self.config.backoff;
        let rtt = self.stats.phase1_rtt;
        let exp = b
            .base
            .resolve(rtt)
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let d = exp.min(b.cap.resolve(rtt));
        let delay = match b.mode {
            BackoffMode::None => Duration::ZERO,
            BackoffMode::Full => self.rng.duration_below(d),
            BackoffMode::Equal => d / 2 + self.rng.duration_below(d / 2),
        };
        self.stats.backoff_time += delay;
        delay
    }

    /// A phase-1 round trip ended `now`, begun at `sent`: fold it into the smoothed estimate
    /// (`7/8 old + 1/8 new`, as TCP's SRTT), which backoff in round trips scales with.
    pub(crate) fn note_phase1_rtt(&mut self, sent: Time) {
        let sample = self.now.saturating_since(sent);
        self.stats.phase1_rtt = Some(match self.stats.phase1_rtt {
            None => sample,
            Some(old) => (old * 7 + sample) / 8,
        });
    }
}

// The acceptor and the learner: messages every replicated protocol handles alike.
impl Replica {
    /// A message from a peer (or from this node itself): the acceptor's and learner's own, or
    /// the engine's.
    pub(crate) fn on_message<E: ProtocolEngine>(&mut self, e: &mut E, from: NodeId, msg: Message) {
        match msg {
            Message::Prepare(m) => self.on_prepare(e, from, m),
            Message::Accept(m) => self.on_accept(e, from, m),
            Message::Learn(m) => self.on_learn(e, from, m),
            Message::CatchUp(m) => self.on_catch_up(from, m),
            Message::Snapshot(m) => self.on_snapshot(e, m),
            other => e.message(self, from, other),
        }
    }

    /// Acceptor, phase 1. The Promise leaves only once the promise is durable.
    fn on_prepare<E: ProtocolEngine>(&mut self, e: &mut E, from: NodeId, m: Prepare) {
        self.max_round = self.max_round.max(m.ballot.round);
        if let PrepareScope::From(f) = m.scope {
            // Every slot below the candidate's `from` is chosen (it executed them). A node behind
            // it catches up from it; a node ahead of it that will not vote sends what it misses:
            // after a membership change, either may be what lets a quorum of the next slot's
            // voters form (a node votes only once it executed the change that made it a voter).
            if f > self.log.executed() && self.catch_up_retry.is_none() && from != self.config.id {
                let to = self.log.executed();
                self.send(from, Message::CatchUp(CatchUp { from: to }));
                self.catch_up_retry = Some(self.now + self.config.retry_timeout);
            } else if f < self.log.executed() && !self.votes() {
                self.on_catch_up(from, CatchUp { from: f });
            }
        }
        if !self.votes() {
            self.stats.ignored += 1;
            return;
        }
        if let PrepareScope::Only(slot) = m.scope {
            // A proposer working on a slot this node knows is chosen just needs the value.
            if let Some(value) = self.log.chosen(slot).cloned() {
                let entries = vec![ChosenEntry { slot, value }];
                self.send(from, Message::Learn(Learn { entries }));
                return;
            }
        }
        if e.refuses_promise(self, m.ballot) {
            self.stats.lease_refusals += 1;
            return;
        }
        let mut records = Vec::new();
        match self.acceptor.prepare(m.ballot, m.scope, &mut records) {
            PrepareOutcome::Promised(accepted) => {
                self.persist(records);
                e.promised(self, m.ballot);
                let promise = Promise {
                    ballot: m.ballot,
                    scope: m.scope,
                    log_start: self.acceptor.log_start(),
                    accepted,
                    executed: self.log.executed(),
                };
                self.send_after_persist(from, Message::Promise(promise));
            }
            PrepareOutcome::Rejected(promised) => {
                let slot = match m.scope {
                    PrepareScope::Only(s) => Some(s),
                    PrepareScope::From(_) => None,
                };
                self.send(
                    from,
                    Message::Nack(Nack {
                        ballot: m.ballot,
                        promised,
                        slot,
                    }),
                );
            }
            PrepareOutcome::Truncated => self.send_snapshot(from),
        }
    }

    /// Acceptor, phase 2. The Accepted leaves only once the value is durable.
    fn on_accept<E: ProtocolEngine>(&mut self, e: &mut E, from: NodeId, m: Accept) {
        self.max_round = self.max_round.max(m.ballot.round);
        let mut records = Vec::new();
        match self
            .acceptor
            .accept(m.ballot, m.slot, &m.value, E::WHOLE_LOG, &mut records)
        {
            AcceptOutcome::Accepted => {
                self.persist(records);
                let executed = self.log.executed();
                let ack = Accepted {
                    ballot: m.ballot,
                    slot: m.slot,
                    executed,
                };
                // A non-voting node keeps the value only to learn it once committed.
                if self.votes() {
                    self.send_after_persist(from, Message::Accepted(ack));
                }
                e.accepted(self, m.ballot, m.commit);
            }
            AcceptOutcome::Rejected(_) if !self.votes() => self.stats.ignored += 1,
            AcceptOutcome::Rejected(promised) => {
                let nack = Nack {
                    ballot: m.ballot,
                    promised,
                    slot: Some(m.slot),
                };
                self.send(from, Message::Nack(nack));
            }
            AcceptOutcome::Truncated => {
                // The slot is chosen and this node executed it: tell the proposer, which is
                // behind (a leader that lags its followers must not retransmit forever).
                match self.log.chosen(m.slot).cloned() {
                    Some(value) => {
                        let entries = vec![ChosenEntry {
                            slot: m.slot,
                            value,
                        }];
                        self.send(from, Message::Learn(Learn { entries }));
                    }
                    None => self.send_snapshot(from),
                }
            }
        }
        self.heard_truncate(m.truncate);
    }

    fn on_learn<E: ProtocolEngine>(&mut self, e: &mut E, from: NodeId, m: Learn) {
        for entry in m.entries {
            e.learned(self, entry.slot, &entry.value);
            self.learn(e, entry.slot, entry.value);
        }
        self.execute_ready();
        if self.catch_up_retry.is_some() {
            // An answer to our catch-up: ask for the next part at once if still behind.
            self.catch_up_retry = None;
            self.maybe_catch_up(e, Some(from));
        }
    }

    fn on_catch_up(&mut self, from: NodeId, m: CatchUp) {
        if m.from < self.log.start() {
            self.send_snapshot(from);
            return;
        }
        let entries = self.log.entries_from(m.from, self.config.catch_up_batch);
        if !entries.is_empty() {
            self.send(from, Message::Learn(Learn { entries }));
        }
    }

    /// Sends the latest snapshot, at most once per `retry_timeout` per peer (snapshots can be
    /// large, and a lagging peer may trigger many requests for one).
    fn send_snapshot(&mut self, to: NodeId) {
        let Some(i) = self.node_index(to) else { return };
        if self.snapshot_sent[i].is_some_and(|t| t + self.config.retry_timeout > self.now) {
            return;
        }
        // The state as of now is always a valid snapshot: every slot below `executed` is in it.
        let upto = self.log.executed();
        if upto == Slot(0) {
            return;
        }
        self.snapshot_sent[i] = Some(self.now);
        let state = match self.log.snapshot() {
            Some((at, state)) if *at == upto => state.clone(),
            _ => std::sync::Arc::new(self.log.kv.clone()),
        };
        self.send(to, Message::Snapshot(Snapshot { upto, state }));
    }

    fn on_snapshot<E: ProtocolEngine>(&mut self, e: &mut E, m: Snapshot) {
        if m.upto <= self.log.executed() {
            self.stats.ignored += 1;
            return;
        }
        self.stats.snapshots_installed += 1;
        self.log.install(m.upto, m.state.clone());
        self.truncate_acceptor(m.upto);
        self.last_snapshot = m.upto;
        self.persist(vec![Record::Snapshot {
            upto: m.upto,
            state: m.state,
        }]);
        e.installed(self, m.upto);
        // Requests this node took that the snapshot covers are answered from the reply cache.
        let mut done: Vec<_> = self
            .pending
            .iter()
            .filter_map(|&(c, r)| self.log.kv.cached(c, r).map(|o| (c, r, o)))
            .collect();
        done.sort_unstable_by_key(|(c, r, _)| (*c, *r));
        for (c, r, outcome) in done {
            self.pending.remove(&(c, r));
            self.reply(c, r, outcome);
        }
        self.execute_ready();
    }

    /// Records a chosen value (the engine hears of it first).
    pub(crate) fn learn<E: ProtocolEngine>(&mut self, e: &mut E, slot: Slot, value: Value) {
        e.chosen(self, slot, &value);
        if self.log.learn(slot, value) {
            self.stats.slots_chosen += 1;
        }
    }
}

// Execution, truncation, snapshots and catch-up.
impl Replica {
    /// Executes every chosen slot in order; the node that took a request answers it.
    pub(crate) fn execute_ready(&mut self) {
        while let Some((slot, value)) = self.log.next_to_execute() {
            match &value {
                Value::Noop => self.stats.noops += 1,
                Value::Batch(batch) => {
                    self.log.kv.tick(batch.stamp);
                    for cmd in batch.iter() {
                        let applied = if let Op::Reconfigure { .. } = cmd.op {
                            let after = match self.log.kv.membership() {
                                _ if self.config.bug == Some(Bug::ReconfigNextSlot) => 1,
                                Some(m) => m.window(),
                                None => 1,
                            };
                            self.stats.reconfigurations += 1;
                            self.log
                                .kv
                                .reconfigure(cmd, slot, &self.config.nodes, after)
                        } else {
                            self.log.kv.apply(cmd)
                        };
                        let outcome = match applied {
                            Applied::Fresh(o) => {
                                self.stats.commands_executed += 1;
                                o
                            }
                            Applied::Duplicate(o) => o,
                        };
                        if self.pending.remove(&(cmd.client, cmd.request)) {
                            self.reply(cmd.client, cmd.request, outcome);
                        }
                    }
                }
            }
            self.log.kv.forget_membership_before(slot.next());
            if self.config.trace_execution {
                self.executed_trace.push((slot, value));
            }
        }
        self.maybe_snapshot();
    }

    /// Unreplicated: the only node executes a command at once, in the next slot, and keeps no
    /// log of it (no peer will ever ask for it). Holding every executed command cost about
    /// 260 bytes of memory per command, without bound.
    pub(crate) fn execute_alone(&mut self, cmd: Command) {
        let slot = self.log.skip_executed();
        self.log.kv.tick(self.now);
        let outcome = match self.log.kv.apply(&cmd) {
            Applied::Fresh(o) => {
                self.stats.commands_executed += 1;
                o
            }
            Applied::Duplicate(o) => o,
        };
        self.reply(cmd.client, cmd.request, outcome);
        if self.config.trace_execution {
            self.executed_trace
                .push((slot, Value::stamped(self.now, vec![cmd])));
        }
    }

    /// A peer reported how far it executed.
    pub(crate) fn heard_executed(&mut self, from: NodeId, executed: Slot) {
        if let Some(i) = self.node_index(from) {
            self.peer_executed[i] = self.peer_executed[i].max(executed);
        }
    }

    /// Where every node may truncate: the lowest executed point of all nodes, unless one lags by
    /// more than `log_retain_slots` (it will catch up from a snapshot).
    pub(crate) fn truncation_point(&mut self) -> Slot {
        let own = self.log.executed();
        self.peer_executed[self.index] = own;
        let slowest = self.peer_executed.iter().copied().min().unwrap_or(own);
        slowest.max(Slot(own.0.saturating_sub(self.config.log_retain_slots)))
    }

    pub(crate) fn heard_truncate(&mut self, point: Slot) {
        if point > self.truncate_hint {
            self.truncate_hint = point;
            self.maybe_snapshot();
        }
    }

    /// Lets the acceptor forget every slot below `upto`; the values it held go to the log's
    /// graveyard, to be freed a few per step.
    fn truncate_acceptor(&mut self, upto: Slot) {
        let old = self.acceptor.truncate(upto);
        self.log.bury(old);
    }

    /// Once the cluster has executed `snapshot_interval` slots past the last snapshot, persist a
    /// snapshot of the state and drop the log below it; without durable snapshots, only drop
    /// the log, every `truncate_interval` slots if that is sooner.
    fn maybe_snapshot(&mut self) {
        let executed = self.log.executed();
        let safe = self.truncate_hint.min(executed);
        let interval = if self.config.durable_snapshots {
            self.config.snapshot_interval
        } else {
            self.config
                .snapshot_interval
                .min(self.config.truncate_interval)
        };
        if safe.0 < self.last_snapshot.0 + interval {
            return;
        }
        // The acceptor may forget everything this node executed (it is all chosen); the in-memory
        // log keeps what lagging peers may still ask for.
        self.stats.snapshots_taken += 1;
        if !self.config.durable_snapshots {
            self.log.drop_below(safe);
            self.truncate_acceptor(executed);
            self.last_snapshot = executed;
            return;
        }
        let (upto, state) = self.log.snapshot_and_truncate(safe);
        self.truncate_acceptor(upto);
        self.last_snapshot = upto;
        self.persist(vec![Record::Snapshot { upto, state }]);
    }

    /// Asks a peer for chosen values this node misses, if it misses any, at most once per
    /// `retry_timeout`. `hint` is the peer that announced them, if known; else the engine's
    /// leader, else a random peer.
    pub(crate) fn maybe_catch_up<E: ProtocolEngine>(&mut self, e: &E, hint: Option<NodeId>) {
        if self.catch_up_retry.is_some() || !self.behind(e) {
            return;
        }
        let leader = e.leader(self);
        let to = hint
            .or(leader)
            .filter(|n| *n != self.config.id)
            .unwrap_or_else(|| {
                let others: Vec<NodeId> = self
                    .config
                    .nodes
                    .iter()
                    .copied()
                    .filter(|n| *n != self.config.id)
                    .collect();
                others[self.rng.below(others.len() as u64) as usize]
            });
        self.send(
            to,
            Message::CatchUp(CatchUp {
                from: self.log.executed(),
            }),
        );
        self.catch_up_retry = Some(self.now + self.config.retry_timeout);
    }

    /// Whether this node knows of chosen slots it cannot execute yet.
    fn behind<E: ProtocolEngine>(&self, e: &E) -> bool {
        let known = self
            .log
            .highest_chosen()
            .map_or(Slot(0), Slot::next)
            .max(e.known_commit());
        known > self.log.executed()
    }
}
