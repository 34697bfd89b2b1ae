//! What clients ask for and what the log holds: key-value commands, batches of them, no-ops.

use std::sync::Arc;

use bytes::Bytes;

use crate::types::{ClientId, NodeId, RequestId, Time};

/// One operation on the key-value state machine.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Read a key. Reads go through the log, so they are linearizable.
    Get {
        /// The key to read.
        key: Bytes,
    },
    /// Write a key.
    Put {
        /// The key to write.
        key: Bytes,
        /// The new value.
        value: Bytes,
    },
    /// Remove a key.
    Delete {
        /// The key to remove.
        key: Bytes,
    },
    /// Change the voting members (Multi-Paxos): add some of the cluster's nodes as voters and
    /// remove others, from `window` slots after the slot this is chosen in (see
    /// [`crate::membership`]). Answered `Done`, or `Refused` with the reason.
    Reconfigure {
        /// Nodes that start voting.
        add: Vec<NodeId>,
        /// Voters that stop voting.
        remove: Vec<NodeId>,
    },
}

/// A client's command: an operation tagged with the ids that make execution exactly-once.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Command {
    /// The client session that issued it.
    pub client: ClientId,
    /// Unique per client; a retry reuses the id, so a command is never executed twice.
    pub request: RequestId,
    /// What to do.
    pub op: Op,
}

/// What one log slot holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Value {
    /// Fills a hole that a new leader (or a Basic Paxos proposer) found with no value.
    Noop,
    /// Commands decided together in one slot, executed in order.
    Batch(Batch),
}

/// Commands decided together in one slot, and when their proposer cut them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Batch {
    /// The proposer's time when it cut the batch. Execution takes the highest stamp so far as
    /// the state machine's clock, so every replica expires client sessions at the same slot.
    pub stamp: Time,
    /// The commands, executed in order.
    pub commands: Arc<[Command]>,
}

impl std::ops::Deref for Batch {
    type Target = [Command];

    fn deref(&self) -> &[Command] {
        &self.commands
    }
}

/// The result of a command, as sent back to the client.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A `Get` found this value, or nothing.
    Value(Option<Bytes>),
    /// A `Put` or `Delete` was applied.
    Done,
    /// This node does not take requests; try the leader it believes in.
    NotLeader {
        /// The node this one thinks leads, if it knows.
        leader: Option<NodeId>,
    },
    /// The request id is older than the client's reply-cache window: it was executed long ago
    /// and its reply is gone, *or* it was abandoned and never executed; bounded memory cannot
    /// tell which. The outcome is unknown to the client, which must not retry it (a client that
    /// keeps its ids within `reply_cache_per_client` of its oldest unanswered request never sees
    /// this for a request it still awaits).
    Expired,
    /// The node's queue of commands waiting for a slot was full ([`crate::Config::max_queue`]):
    /// it did not take this request, which this attempt will never execute. The client may
    /// retry later (the same request id stays exactly-once).
    Overloaded,
    /// A command that executed and changed nothing, and why (a membership change that would
    /// add an unknown node or leave no voters).
    Refused(String),
}

/// A reply for one client request, released by the node that took the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The client that asked.
    pub client: ClientId,
    /// Which of its requests this answers.
    pub request: RequestId,
    /// The result.
    pub outcome: Outcome,
}

impl Op {
    /// The key this operation touches (none for a membership change).
    pub fn key(&self) -> Option<&Bytes> {
        match self {
            Op::Get { key } | Op::Put { key, .. } | Op::Delete { key } => Some(key),
            Op::Reconfigure { .. } => None,
        }
    }

    /// Bytes this operation adds to a batch (key plus value), used for the batch byte limit.
    pub fn payload_len(&self) -> usize {
        match self {
            Op::Get { key } | Op::Delete { key } => key.len(),
            Op::Put { key, value } => key.len() + value.len(),
            Op::Reconfigure { add, remove } => 4 * (add.len() + remove.len()),
        }
    }
}

impl Value {
    /// A batch of `commands` cut at `stamp`.
    pub fn stamped(stamp: Time, commands: Vec<Command>) -> Value {
        Value::Batch(Batch {
            stamp,
            commands: commands.into(),
        })
    }

    /// A batch of `commands` stamped with time zero (tests and tools; proposers use
    /// [`Value::stamped`]).
    pub fn batch(commands: Vec<Command>) -> Value {
        Value::stamped(Time::ZERO, commands)
    }

    /// The commands in this value (none for a no-op).
    pub fn commands(&self) -> &[Command] {
        match self {
            Value::Noop => &[],
            Value::Batch(cmds) => cmds,
        }
    }

    /// Whether this is a no-op.
    pub fn is_noop(&self) -> bool {
        matches!(self, Value::Noop)
    }
}
