//! The node: one value per cluster member, made of the shared [`Replica`] (acceptor, learner's
//! log, execution and replies, queue, outbox, catch-up, truncation and snapshots) and one
//! protocol engine that owns its protocol's state (the Multi-Paxos leader, candidate or follower
//! in `multi.rs`, the Basic Paxos proposer in `basic.rs`, the single unreplicated node in
//! `unreplicated.rs`). Each input picks the engine once, with one `match` on [`Engine`], and
//! runs the step for it (see `engine.rs` for the seam).

use crate::basic;
use crate::command::{Command, Value};
use crate::config::{Config, ConfigError, Protocol};
use crate::engine::ProtocolEngine;
use crate::kv::KvState;
use crate::messages::Message;
use crate::multi;
use crate::replica::Replica;
use crate::stats::Stats;
use crate::storage::{Durable, PersistToken};
use crate::types::{Ballot, NodeId, Slot, Time};
use crate::unreplicated;
use crate::Action;

/// What a node is doing now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Multi-Paxos: follows a leader (or waits to hear from one).
    Follower,
    /// Multi-Paxos: running phase 1 to become leader.
    Candidate,
    /// Multi-Paxos: the leader.
    Leader,
    /// Basic Paxos: every node is a proposer.
    Proposer,
    /// Unreplicated: the only node.
    Single,
}

/// The protocol a node runs, with that protocol's state and nothing else: a Multi-Paxos node
/// has no Basic Paxos proposer, and the reverse.
// One value per node, built once and never moved around: no need to box the larger variants.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Engine {
    Unreplicated(unreplicated::Engine),
    Multi(multi::Engine),
    Basic(basic::Engine),
}

/// Runs `$body` with `$r` the node's replica and `$e` its engine, monomorphised per engine: the
/// one place a step looks at which protocol runs.
macro_rules! dispatch {
    ($node:ident, $r:ident, $e:ident => $body:expr) => {
        match &mut $node.engine {
            Engine::Unreplicated($e) => {
                let $r = &mut $node.replica;
                $body
            }
            Engine::Multi($e) => {
                let $r = &mut $node.replica;
                $body
            }
            Engine::Basic($e) => {
                let $r = &mut $node.replica;
                $body
            }
        }
    };
}

/// [`dispatch!`] for reading only.
macro_rules! dispatch_ref {
    ($node:ident, $r:ident, $e:ident => $body:expr) => {
        match &$node.engine {
            Engine::Unreplicated($e) => {
                let $r = &$node.replica;
                $body
            }
            Engine::Multi($e) => {
                let $r = &$node.replica;
                $body
            }
            Engine::Basic($e) => {
                let $r = &$node.replica;
                $body
            }
        }
    };
}

/// One node of a cluster: a deterministic state machine driven by the `handle_*` inputs, whose
/// outputs are drained with [`Node::drain_actions`]. See the crate docs for the contract.
#[derive(Debug)]
pub struct Node {
    replica: Replica,
    engine: Engine,
}

impl Node {
    /// A fresh node with empty state.
    pub fn new(config: Config) -> Result<Node, ConfigError> {
        Node::recover(config, Durable::default())
    }

    /// A node restarted from what it persisted before a crash: its promises and accepted values,
    /// and its latest snapshot. Everything else (chosen values beyond the snapshot, leadership,
    /// client requests) is relearned from peers.
    pub fn recover(config: Config, durable: Durable) -> Result<Node, ConfigError> {
        let engine = match config.protocol {
            Protocol::Unreplicated => Engine::Unreplicated(unreplicated::Engine),
            Protocol::MultiPaxos => Engine::Multi(multi::Engine::default()),
            Protocol::BasicPaxos => Engine::Basic(basic::Engine::default()),
        };
        let replica = Replica::recover(config, durable)?;
        Ok(Node { replica, engine })
    }

    /// A node restarted *without* its durable state (`durability = "none"`). It may have promised
    /// ballots and accepted values before the crash that no one else knows of, so letting it vote
    /// again could choose two values for one slot; no fence learned from peers is safe, because
    /// the only node that knows a forgotten promise may be a candidate that is cut off. So it
    /// rejoins as a **non-voting learner**: it never sends a Promise or an Accepted and never
    /// campaigns, but it catches up, executes, and (Basic Paxos) still proposes through the
    /// others' quorum. The cluster keeps a quorum among the remaining voters. Restore its vote by
    /// running it with `fsync` durability.
    pub fn rejoin_without_state(config: Config) -> Result<Node, ConfigError> {
        let mut node = Node::new(config)?;
        node.replica.voting = false;
        Ok(node)
    }

    /// Whether this node votes now (see [`Node::rejoin_without_state`]; under Multi-Paxos also
    /// whether the membership lets it, see [`crate::membership`]).
    pub fn voting(&self) -> bool {
        self.replica.votes()
    }

    /// Who votes for which slot, as far as this node executed (Multi-Paxos).
    pub fn membership(&self) -> Option<&crate::membership::Membership> {
        self.replica.log.kv.membership()
    }

    /// A message from a peer. Messages from nodes outside the cluster are ignored and counted.
    pub fn handle_message(&mut self, now: Time, from: NodeId, msg: Message) {
        dispatch!(self, r, e => {
            r.begin(e, now);
            if from == r.config.id || !r.config.nodes.contains(&from) {
                r.stats.ignored += 1;
            } else {
                r.on_message(e, from, msg);
            }
            r.finish(e);
        })
    }

    /// A client command. The node queues it (leader, proposer), executes it (unreplicated), or
    /// answers NotLeader (follower, candidate). A retry of an executed request is answered from
    /// the reply cache; a retry of one still in flight waits for the first.
    pub fn handle_request(&mut self, now: Time, cmd: Command) {
        dispatch!(self, r, e => {
            r.begin(e, now);
            if let Some(outcome) = r.log.kv.cached(cmd.client, cmd.request) {
                r.reply(cmd.client, cmd.request, outcome);
            } else {
                e.request(r, cmd);
            }
            r.finish(e);
        })
    }

    /// Time has reached [`Node::next_deadline`].
    pub fn handle_timeout(&mut self, now: Time) {
        dispatch!(self, r, e => {
            r.begin(e, now);
            e.timeout(r);
            if r.catch_up_retry.is_some_and(|t| t <= now) {
                r.catch_up_retry = None;
                r.maybe_catch_up(e, None);
            }
            r.finish(e);
        })
    }

    /// Every Persist up to `token` is durable: releases the messages that waited for it.
    pub fn handle_persisted(&mut self, now: Time, token: PersistToken) {
        dispatch!(self, r, e => {
            r.begin(e, now);
            let mut released = Vec::new();
            r.out.persisted(token, &mut released);
            for g in released {
                r.release(g);
            }
            r.finish(e);
        })
    }

    /// Moves every output produced so far into `out`, in order. This is also when a Multi-Paxos
    /// leader cuts batches from queued commands and a Basic Paxos proposer starts its next
    /// attempt, so everything handled before a drain can share one batch.
    pub fn drain_actions(&mut self, now: Time, out: &mut Vec<Action>) {
        dispatch!(self, r, e => {
            r.begin(e, now);
            e.pump(r);
            r.finish(e);
            out.append(&mut r.out.ready);
        })
    }

    /// When the node next needs [`Node::handle_timeout`]. A node that has not seen an input yet
    /// asks to be woken at once, to arm its timers.
    pub fn next_deadline(&self) -> Option<Time> {
        if !self.replica.started {
            return Some(Time::ZERO);
        }
        let own = dispatch_ref!(self, r, e => e.deadline(r));
        [own, self.replica.catch_up_retry]
            .into_iter()
            .flatten()
            .min()
    }

    /// Every slot executed since the last call, in order (only with `trace_execution`).
    pub fn drain_executed(&mut self, out: &mut Vec<(Slot, Value)>) {
        out.append(&mut self.replica.executed_trace);
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.replica.config.id
    }

    /// Its configuration.
    pub fn config(&self) -> &Config {
        &self.replica.config
    }

    /// What it is doing now.
    pub fn role(&self) -> Role {
        dispatch_ref!(self, _r, e => e.role())
    }

    /// The leader this node believes in (itself when it leads; none for Basic Paxos).
    pub fn leader(&self) -> Option<NodeId> {
        dispatch_ref!(self, r, e => e.leader(r))
    }

    /// The ballot this node works under: its own while it leads or campaigns, else the highest it
    /// promised.
    pub fn ballot(&self) -> Ballot {
        let own = dispatch_ref!(self, _r, e => e.own_ballot());
        own.unwrap_or(self.replica.acceptor.promised())
    }

    /// The ballot promised for every slot.
    pub fn promised(&self) -> Ballot {
        self.replica.acceptor.promised()
    }

    /// The next slot to execute; every slot below it is executed.
    pub fn executed(&self) -> Slot {
        self.replica.log.executed()
    }

    /// Slots below this are truncated at the acceptor.
    pub fn log_start(&self) -> Slot {
        self.replica.acceptor.log_start()
    }

    /// The state machine.
    pub fn kv(&self) -> &KvState {
        &self.replica.log.kv
    }

    /// Counters since start.
    pub fn stats(&self) -> &Stats {
        &self.replica.stats
    }

    /// Commands waiting for a slot.
    pub fn queued(&self) -> usize {
        self.replica.queue.len()
    }

    /// Chosen values held in memory (bounded by truncation).
    pub fn log_len(&self) -> usize {
        self.replica.log.held()
    }

    /// The acceptor's accepted value in `slot`, if any (for tests and checkers).
    pub fn accepted(&self, slot: Slot) -> Option<(Ballot, &Value)> {
        self.replica.acceptor.accepted(slot).map(|(b, v)| (*b, v))
    }

    /// How many accepted values the acceptor holds.
    pub fn accepted_len(&self) -> usize {
        self.replica.acceptor.accepted_iter().count()
    }
}
