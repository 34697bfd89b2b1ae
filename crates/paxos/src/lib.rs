//! Multi-Paxos, Basic Paxos and an unreplicated baseline as sans-IO state machines.
//!
//! A [`Node`] is a value that takes inputs and produces outputs. It never blocks, sleeps, reads a
//! clock or touches a socket: time arrives as an argument and randomness comes from a seeded RNG
//! in its [`Config`]. The same code runs under the deterministic simulator (`crates/sim`) and
//! under the QUIC runtime (`crates/node`).
//!
//! # Driving a node
//!
//! Inputs, in any order, each with the current time:
//!
//! - [`Node::handle_message`]: a message from a peer (possibly lost, duplicated, reordered).
//! - [`Node::handle_request`]: a client command.
//! - [`Node::handle_timeout`]: call it once `now >= next_deadline()`.
//! - [`Node::handle_persisted`]: every Persist up to this token is durable.
//!
//! After a batch of inputs, call [`Node::drain_actions`] and carry out each [`Action`] in order:
//!
//! - [`Action::Send`] / [`Action::Broadcast`]: deliver to one peer / every other node. Delivery
//!   may fail; the core retries what it must.
//! - [`Action::Reply`]: answer the client that sent the request.
//! - [`Action::Persist`]: make the records durable, then call `handle_persisted(token)`. With no
//!   durability, call it at once. **Persist is a barrier**: messages that report a promise or an
//!   accepted value are held inside the core until the write is durable, so a shell can never
//!   send a Promise or Accepted early, whatever it does.
//!
//! Then sleep until [`Node::next_deadline`] or the next input. Draining is also when a Multi-Paxos
//! leader cuts batches: commands that arrive while the window is full, or while
//! [`Config::partial_batches`] not-full batches are in flight, wait and join the next batch, so
//! batching needs no timer; a shell that feeds every ready input before draining gets larger
//! batches under load.
//!
//! ```
//! use paxos::{Action, Command, ClientId, Config, Node, NodeId, Op, Protocol, RequestId, Time};
//!
//! let mut node = Node::new(Config::new(Protocol::Unreplicated, NodeId(0), vec![NodeId(0)])).unwrap();
//! let put = Op::Put { key: "k".into(), value: "v".into() };
//! node.handle_request(Time::ZERO, Command { client: ClientId(1), request: RequestId(1), op: put });
//! let mut actions = Vec::new();
//! node.drain_actions(Time::ZERO, &mut actions);
//! assert!(matches!(&actions[..], [Action::Reply(r)] if r.request == RequestId(1)));
//! ```
//!
//! # Inside: one replica, one engine per protocol
//!
//! A [`Node`] is a *replica* plus a protocol *engine*. The replica (`replica.rs`) is what every
//! protocol shares: the configuration, clock, RNG and [`Stats`], the acceptor (`acceptor.rs`),
//! the learner's log and the key-value state (`log.rs`, `kv.rs`), execution and replies, the
//! queue of commands waiting for a slot, the outbox with its persist barrier (`outbox.rs`), the
//! self-inbox, catch-up, truncation and snapshots. An engine owns its protocol's state and
//! nothing else: `multi::Engine` the Multi-Paxos follower, candidate or leader with its window,
//! heartbeats and phase-1 skipping; `basic::Engine` the Basic Paxos proposer's attempt and
//! backoff; `unreplicated::Engine` nothing at all. A node holds exactly one engine, so a Basic
//! Paxos proposer in a Multi-Paxos node cannot be represented.
//!
//! Every input (`handle_*`, `drain_actions`, `next_deadline`, `role`, ...) picks the engine with
//! one `match` and runs the step monomorphised for it. Engines implement one internal trait
//! (`engine.rs`): entry points (a client request, the protocol's own messages, a timeout, the
//! pump at each drain, the next deadline) and hooks the replica calls where a protocol must act
//! inside a shared step (the acceptor promised or accepted, a value was learned or chosen, a
//! snapshot was installed). Engines get `&mut Replica` for the shared parts and pass themselves
//! to the few shared operations that call hooks back.
//!
//! **Where things plug in.** A new protocol is a [`Protocol`] variant, a module with an engine, a
//! variant of the node's engine enum and an arm in [`Node::recover`]; the replica and the
//! simulator's checkers stay as they are. A feature of one protocol (leases and local reads for
//! Multi-Paxos, say) lives in its engine, and adds a hook only where it must act inside a shared
//! step. A feature of every protocol (membership change, learners) belongs to the replica.
//! Membership ([`membership`]) is replicated state in the key-value state machine (so snapshots
//! carry it); the replica answers who votes for a slot and whether votes make a majority of
//! them, and the Multi-Paxos engine applies the window rule when it proposes.
#![warn(missing_docs)]

mod acceptor;
mod basic;
mod command;
mod config;
mod engine;
mod kv;
mod log;
pub mod membership;
mod messages;
mod multi;
mod node;
mod outbox;
mod quorum;
mod replica;
mod rng;
mod stats;
mod storage;
pub mod testing;
mod types;
mod unreplicated;

pub use command::{Batch, Command, Op, Outcome, Reply, Value};
pub use config::{
    Backoff, BackoffMode, BackoffSpan, BadSpan, Bug, Config, ConfigError, Protocol, ReadMode,
    UnknownName,
};
pub use kv::{Applied, KvState, Session, SessionLimits, DEFAULT_SESSION_TIMEOUT};
pub use membership::{Membership, ReconfigError};
pub use messages::{
    Accept, Accepted, AcceptedEntry, CatchUp, ChosenEntry, Commit, Heartbeat, HeartbeatAck, Learn,
    Message, MessageKind, Nack, Prepare, PrepareScope, Promise, Snapshot,
};
pub use node::{Node, Role};
pub use stats::{Stats, ATTEMPT_BUCKETS};
pub use storage::{Durable, PersistToken, Record};
pub use types::{Ballot, ClientId, NodeId, RequestId, Slot, Time};

/// An output of the core, drained with [`Node::drain_actions`] and carried out in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send a message to one peer.
    Send {
        /// The peer.
        to: NodeId,
        /// The message.
        msg: Message,
    },
    /// Send a message to every other node of the cluster.
    Broadcast {
        /// The message.
        msg: Message,
    },
    /// Answer a client.
    Reply(Reply),
    /// Make these records durable, then call [`Node::handle_persisted`] with the token.
    Persist {
        /// Passed back to `handle_persisted`.
        token: PersistToken,
        /// What to write, in order.
        records: Vec<Record>,
    },
}
