//! Messages between nodes. One vocabulary for both protocols: Prepare (1a) / Promise (1b) /
//! Accept (2a) / Accepted (2b) / Commit / Nack, plus heartbeats, learning of chosen values and
//! catch-up, and the acknowledgement that grants a read lease. The core never assumes a message arrives, arrives once, or arrives in order.

use std::sync::Arc;

use crate::command::Value;
use crate::kv::KvState;
use crate::types::{Ballot, Slot, Time};

/// A message from one node to another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// 1a: asks acceptors to promise a ballot.
    Prepare(Prepare),
    /// 1b: an acceptor's promise, with what it has accepted.
    Promise(Promise),
    /// 2a: asks acceptors to accept a value in a slot.
    Accept(Accept),
    /// 2b: an acceptor accepted a value.
    Accepted(Accepted),
    /// Multi-Paxos: the leader announces that every slot below a point is chosen.
    Commit(Commit),
    /// An acceptor refuses a ballot because it promised a higher one.
    Nack(Nack),
    /// Multi-Paxos: the leader is alive (and how far the log is chosen).
    Heartbeat(Heartbeat),
    /// Multi-Paxos with `reads = "lease"`: a follower granted the heartbeat's sender a lease.
    HeartbeatAck(HeartbeatAck),
    /// Chosen values, announced (Basic Paxos) or sent to a node that asked to catch up.
    Learn(Learn),
    /// A node that misses chosen values asks a peer for them.
    CatchUp(CatchUp),
    /// The state a node needs when the values it misses were truncated: the key-value state as
    /// of a slot.
    Snapshot(Snapshot),
}

/// Which slots a Prepare covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PrepareScope {
    /// Multi-Paxos phase 1: every slot from this one onward.
    From(Slot),
    /// Basic Paxos (and Multi-Paxos with `skip_phase1 = false`): this slot only.
    Only(Slot),
}

/// 1a: "promise not to accept ballots below `ballot` in `scope`".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepare {
    /// The proposer's ballot.
    pub ballot: Ballot,
    /// The slots it covers.
    pub scope: PrepareScope,
}

/// 1b: the acceptor promised `ballot` for `scope` and reports what it accepted there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Promise {
    /// The ballot promised (that of the Prepare).
    pub ballot: Ballot,
    /// The scope of the Prepare this answers.
    pub scope: PrepareScope,
    /// The acceptor has truncated every slot below this one; a proposer whose scope starts below
    /// it is behind and must catch up before it can lead.
    pub log_start: Slot,
    /// Values accepted in the scope, with the ballot they were accepted at.
    pub accepted: Vec<AcceptedEntry>,
    /// The sender's next slot to execute (drives log truncation).
    pub executed: Slot,
}

/// A value an acceptor accepted, as reported in a Promise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptedEntry {
    /// The slot.
    pub slot: Slot,
    /// The ballot it was accepted at.
    pub ballot: Ballot,
    /// The value.
    pub value: Value,
}

/// 2a: "accept `value` in `slot` at `ballot`".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accept {
    /// The proposer's ballot.
    pub ballot: Ballot,
    /// The slot.
    pub slot: Slot,
    /// The proposed value.
    pub value: Value,
    /// Piggybacked commit point (Multi-Paxos): every slot below it is chosen. `Slot(0)` if none.
    pub commit: Slot,
    /// Every node may truncate its log below this slot (once it has executed that far).
    pub truncate: Slot,
}

/// 2b: the acceptor accepted the value of `slot` at `ballot`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The ballot accepted.
    pub ballot: Ballot,
    /// The slot.
    pub slot: Slot,
    /// The sender's next slot to execute (drives log truncation).
    pub executed: Slot,
}

/// Multi-Paxos: every slot below `up_to` is chosen; for each such slot where the receiver
/// accepted a value at `ballot`, that value is the chosen one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    /// The leader's ballot.
    pub ballot: Ballot,
    /// Every slot below this one is chosen.
    pub up_to: Slot,
    /// Every node may truncate its log below this slot.
    pub truncate: Slot,
}

/// The acceptor refused `ballot` because it promised `promised`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nack {
    /// The refused ballot.
    pub ballot: Ballot,
    /// The higher ballot the acceptor promised.
    pub promised: Ballot,
    /// The slot of the refused Accept or single-slot Prepare, if any.
    pub slot: Option<Slot>,
}

/// Multi-Paxos: the leader of `ballot` is alive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// The leader's ballot.
    pub ballot: Ballot,
    /// Every slot below this one is chosen.
    pub commit: Slot,
    /// Every node may truncate its log below this slot.
    pub truncate: Slot,
    /// When the leader sent it, on the leader's own clock: a follower that grants a lease for
    /// it echoes this back, and the leader counts the lease from here.
    pub sent: Time,
}

/// Multi-Paxos with `reads = "lease"`: the sender granted the leader of `ballot` a lease, on
/// receipt of the heartbeat the leader sent at `sent` (echoed from [`Heartbeat::sent`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatAck {
    /// The leader's ballot the lease is for.
    pub ballot: Ballot,
    /// The heartbeat's send time, on the leader's clock.
    pub sent: Time,
}

/// Chosen values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Learn {
    /// Chosen values, in slot order.
    pub entries: Vec<ChosenEntry>,
}

/// A chosen value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChosenEntry {
    /// The slot.
    pub slot: Slot,
    /// The value chosen there.
    pub value: Value,
}

/// "Send me the chosen values from `from` onward."
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatchUp {
    /// The first slot the sender misses.
    pub from: Slot,
}

/// The key-value state after executing every slot below `upto`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The first slot not included.
    pub upto: Slot,
    /// The state machine, reply cache included (exactly-once survives a snapshot).
    pub state: Arc<KvState>,
}

/// Kinds of message, for counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// [`Message::Prepare`]
    Prepare,
    /// [`Message::Promise`]
    Promise,
    /// [`Message::Accept`]
    Accept,
    /// [`Message::Accepted`]
    Accepted,
    /// [`Message::Commit`]
    Commit,
    /// [`Message::Nack`]
    Nack,
    /// [`Message::Heartbeat`]
    Heartbeat,
    /// [`Message::HeartbeatAck`]
    HeartbeatAck,
    /// [`Message::Learn`]
    Learn,
    /// [`Message::CatchUp`]
    CatchUp,
    /// [`Message::Snapshot`]
    Snapshot,
}

impl MessageKind {
    /// Every kind, in counter order.
    pub const ALL: [MessageKind; 11] = [
        MessageKind::Prepare,
        MessageKind::Promise,
        MessageKind::Accept,
        MessageKind::Accepted,
        MessageKind::Commit,
        MessageKind::Nack,
        MessageKind::Heartbeat,
        MessageKind::HeartbeatAck,
        MessageKind::Learn,
        MessageKind::CatchUp,
        MessageKind::Snapshot,
    ];

    /// A short lowercase name, for reports.
    pub fn name(self) -> &'static str {
        match self {
            MessageKind::Prepare => "prepare",
            MessageKind::Promise => "promise",
            MessageKind::Accept => "accept",
            MessageKind::Accepted => "accepted",
            MessageKind::Commit => "commit",
            MessageKind::Nack => "nack",
            MessageKind::Heartbeat => "heartbeat",
            MessageKind::HeartbeatAck => "heartbeat_ack",
            MessageKind::Learn => "learn",
            MessageKind::CatchUp => "catch_up",
            MessageKind::Snapshot => "snapshot",
        }
    }
}

impl Message {
    /// This message's kind.
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Prepare(_) => MessageKind::Prepare,
            Message::Promise(_) => MessageKind::Promise,
            Message::Accept(_) => MessageKind::Accept,
            Message::Accepted(_) => MessageKind::Accepted,
            Message::Commit(_) => MessageKind::Commit,
            Message::Nack(_) => MessageKind::Nack,
            Message::Heartbeat(_) => MessageKind::Heartbeat,
            Message::HeartbeatAck(_) => MessageKind::HeartbeatAck,
            Message::Learn(_) => MessageKind::Learn,
            Message::CatchUp(_) => MessageKind::CatchUp,
            Message::Snapshot(_) => MessageKind::Snapshot,
        }
    }
}
