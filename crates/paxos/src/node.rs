//! The node: public API (stub while the protocol logic is written).
#![allow(missing_docs, unused)]
use crate::*;

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

/// One node of a cluster.
pub struct Node { config: Config }

impl Node {
    pub fn new(config: Config) -> Result<Node, ConfigError> { config.validate()?; Ok(Node { config }) }
    pub fn recover(config: Config, durable: Durable) -> Result<Node, ConfigError> { todo!() }
    pub fn handle_message(&mut self, now: Time, from: NodeId, msg: Message) { todo!() }
    pub fn handle_request(&mut self, now: Time, cmd: Command) { todo!() }
    pub fn handle_timeout(&mut self, now: Time) { todo!() }
    pub fn handle_persisted(&mut self, now: Time, token: PersistToken) { todo!() }
    pub fn drain_actions(&mut self, now: Time, out: &mut Vec<Action>) { todo!() }
    pub fn next_deadline(&self) -> Option<Time> { todo!() }
    pub fn drain_executed(&mut self, out: &mut Vec<(Slot, Value)>) { todo!() }
    pub fn id(&self) -> NodeId { self.config.id }
    pub fn config(&self) -> &Config { &self.config }
    pub fn role(&self) -> Role { todo!() }
    pub fn leader(&self) -> Option<NodeId> { todo!() }
    pub fn ballot(&self) -> Ballot { todo!() }
    pub fn promised(&self) -> Ballot { todo!() }
    pub fn executed(&self) -> Slot { todo!() }
    pub fn log_start(&self) -> Slot { todo!() }
    pub fn kv(&self) -> &KvState { todo!() }
    pub fn stats(&self) -> &Stats { todo!() }
    pub fn queued(&self) -> usize { todo!() }
}
