//! The seam between the shared replica and a protocol.
//!
//! A protocol is a module with one `Engine` type that owns everything only it needs (its roles,
//! ballots in flight, timers and counters) and implements [`ProtocolEngine`]. The shared part of
//! a node, the [`Replica`] (acceptor, learner's log, execution and replies, queue, outbox,
//! catch-up, truncation and snapshots), is handed to every call as `&mut Replica`; the engine
//! never holds it. [`crate::Node`] holds one replica and one engine, and each of its inputs picks
//! the engine once and runs the whole step monomorphised for it (no `dyn`, no match per helper).
//!
//! The calls come in two kinds:
//!
//! - **Entry points**, one per input of the node: [`ProtocolEngine::request`] (a client command
//!   the reply cache could not answer), [`ProtocolEngine::message`] (the messages the shared
//!   acceptor and learner do not handle: Promise, Accepted, Nack, Commit, Heartbeat),
//!   [`ProtocolEngine::timeout`], [`ProtocolEngine::pump`] (at every drain) and
//!   [`ProtocolEngine::deadline`].
//! - **Hooks**, called by the shared parts in the middle of their work, at the very point where the
//!   protocol must react: the acceptor promised a ballot, accepted an Accept, a Learn arrived, a
//!   slot became chosen, a snapshot was installed. Their defaults do nothing.
//!
//! Shared operations that call hooks themselves ([`Replica::learn`],
//! [`Replica::broadcast_prepare`], [`Replica::maybe_catch_up`], [`Replica::on_message`]) take
//! the engine as an argument, so an engine passes itself: `r.learn(self, slot, value)`.
//!
//! A new protocol is a new module with an `Engine`, one variant in `node::Engine` and one arm
//! where `Node::recover` picks it. A feature of one protocol goes into its engine, and into a
//! new hook only when it must act inside a shared step.

use crate::command::{Command, Value};
use crate::messages::Message;
use crate::node::Role;
use crate::replica::Replica;
use crate::types::{Ballot, NodeId, Slot, Time};

/// One protocol's proposer side, driven by a [`crate::Node`] over its shared [`Replica`].
pub(crate) trait ProtocolEngine {
    /// Whether an accepted Accept also promises its ballot for every slot (Multi-Paxos: a leader's
    /// phase 1 covers the whole log), rather than for its slot only.
    const WHOLE_LOG: bool = false;

    /// The node's first input: arm the timers.
    fn start(&mut self, _r: &mut Replica) {}

    /// What the node is doing now.
    fn role(&self) -> Role;

    /// The leader this node believes in, if the protocol has one.
    fn leader(&self, r: &Replica) -> Option<NodeId>;

    /// The ballot of this node's own leadership or campaign, if any.
    fn own_ballot(&self) -> Option<Ballot> {
        None
    }

    /// Every slot below this is chosen, as announced by a leader (beyond what the log holds).
    fn known_commit(&self) -> Slot {
        Slot(0)
    }

    /// Whether this node queues client commands now (otherwise it answers NotLeader).
    fn takes_requests(&self) -> bool {
        true
    }

    /// A client command the reply cache could not answer. By default it is queued for a slot
    /// while [`ProtocolEngine::takes_requests`], else answered NotLeader.
    fn request(&mut self, r: &mut Replica, cmd: Command) {
        let takes = self.takes_requests();
        let leader = self.leader(r);
        r.take_request(cmd, takes, leader);
    }

    /// When the engine next needs [`ProtocolEngine::timeout`].
    fn deadline(&self, _r: &Replica) -> Option<Time> {
        None
    }

    /// Time has reached the engine's deadline (or the replica's).
    fn timeout(&mut self, _r: &mut Replica) {}

    /// Outputs are being drained: start the work that waited for it (cut batches, attempts).
    fn pump(&mut self, _r: &mut Replica) {}

    /// A message the shared acceptor and learner do not handle.
    fn message(&mut self, r: &mut Replica, _from: NodeId, _msg: Message) {
        r.stats.ignored += 1;
    }

    /// Hook, before the acceptor sees a Prepare of `ballot`: whether this node refuses to promise
    /// it at all (Multi-Paxos with leases: inside a lease it granted to another ballot). A
    /// refused Prepare gets no answer; its proposer times out.
    fn refuses_promise(&mut self, _r: &mut Replica, _ballot: Ballot) -> bool {
        false
    }

    /// Hook: this node's acceptor promised `ballot` (the Promise is not sent yet).
    fn promised(&mut self, _r: &mut Replica, _ballot: Ballot) {}

    /// Hook: this node's acceptor accepted an Accept of `ballot` that carried commit point
    /// `commit` (the Accepted is not sent yet).
    fn accepted(&mut self, _r: &mut Replica, _ballot: Ballot, _commit: Slot) {}

    /// Hook: a Learn (or our own quorum) reports `value` chosen in `slot`, before the log
    /// records it.
    fn learned(&mut self, _r: &mut Replica, _slot: Slot, _value: &Value) {}

    /// Hook: `slot` is known chosen with `value`, however it was learned, before the log records
    /// it.
    fn chosen(&mut self, _r: &mut Replica, _slot: Slot, _value: &Value) {}

    /// Hook: a snapshot from a peer covered every slot below `upto`.
    fn installed(&mut self, _r: &mut Replica, _upto: Slot) {}
}
