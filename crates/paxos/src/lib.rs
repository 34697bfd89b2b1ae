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
#![warn(missing_docs)]

mod acceptor;
mod basic;
mod command;
mod config;
mod kv;
mod log;
mod messages;
mod multi;
mod node;
mod outbox;
mod quorum;
mod rng;
mod stats;
mod storage;
pub mod testing;
mod types;

pub use command::{Batch, Command, Op, Outcome, Reply, Value};
pub use config::{
    Backoff, BackoffMode, BackoffSpan, BadSpan, Bug, Config, ConfigError, Protocol, UnknownName,
};
pub use kv::{Applied, KvState, Session, SessionLimits, DEFAULT_SESSION_TIMEOUT};
pub use messages::{
    Accept, Accepted, AcceptedEntry, CatchUp, ChosenEntry, Commit, Heartbeat, Learn, Message,
    MessageKind, Nack, Prepare, PrepareScope, Promise, Snapshot,
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
