//! An in-process cluster on a perfect network, for scenario tests, examples and benchmarks.
//!
//! Messages are delivered in rounds (everything sent in one round arrives in the next), writes
//! are durable at once (`durability = "none"`), and time moves only when asked. Nodes can be taken
//! down (their messages vanish) and brought back. The fault-injecting, seed-driven simulator is
//! `crates/sim`; this is the smallest driver that exercises the whole path.

use std::time::Duration;

use crate::command::{Command, Reply};
use crate::config::{Config, Protocol};
use crate::messages::Message;
use crate::node::{Node, Role};
use crate::storage::{Durable, PersistToken};
use crate::types::{NodeId, Time};
use crate::Action;

/// Nodes `0..n` wired together in memory.
#[derive(Debug)]
pub struct LocalCluster {
    /// The nodes, indexed by id.
    pub nodes: Vec<Node>,
    /// The current time.
    pub now: Time,
    /// Every reply released so far, in order.
    pub replies: Vec<Reply>,
    /// Which nodes are down (they neither send nor receive).
    pub down: Vec<bool>,
    /// Each node's durable state, built from the records it persisted.
    pub durable: Vec<Durable>,
    /// Keep `durable` up to date (costs a clone per record; off for benchmarks).
    pub track_durable: bool,
    messages: Vec<(NodeId, NodeId, Message)>,
    persisted: Vec<(usize, PersistToken)>,
    actions: Vec<Action>,
}

impl LocalCluster {
    /// `n` nodes of `protocol` with default knobs, adjusted by `tweak`.
    pub fn new(protocol: Protocol, n: u32, tweak: impl Fn(&mut Config)) -> Self {
        let ids: Vec<NodeId> = (0..n).map(NodeId).collect();
        let nodes = ids
            .iter()
            .map(|id| {
                let mut c = Config::new(protocol, *id, ids.clone());
                tweak(&mut c);
                Node::new(c).expect("valid test config")
            })
            .collect();
        LocalCluster {
            nodes,
            now: Time::ZERO,
            replies: Vec::new(),
            down: vec![false; n as usize],
            durable: vec![Durable::default(); n as usize],
            track_durable: true,
            messages: Vec::new(),
            persisted: Vec::new(),
            actions: Vec::new(),
        }
    }

    /// Hands a client command to node `to`.
    pub fn request(&mut self, to: NodeId, cmd: Command) {
        self.nodes[to.0 as usize].handle_request(self.now, cmd);
    }

    /// Delivers messages and completes writes until nothing moves.
    pub fn run(&mut self) {
        while self.round() {}
    }

    /// One round: drain every node, complete its writes, deliver its messages. Returns whether
    /// anything happened.
    pub fn round(&mut self) -> bool {
        let now = self.now;
        for i in 0..self.nodes.len() {
            if self.down[i] {
                continue;
            }
            self.nodes[i].drain_actions(now, &mut self.actions);
            let from = NodeId(i as u32);
            for action in self.actions.drain(..) {
                match action {
                    Action::Send { to, msg } => self.messages.push((from, to, msg)),
                    Action::Broadcast { msg } => {
                        for to in 0..self.nodes.len() as u32 {
                            if to as usize != i {
                                self.messages.push((from, NodeId(to), msg.clone()));
                            }
                        }
                    }
                    Action::Reply(r) => self.replies.push(r),
                    Action::Persist { token, records } => {
                        if self.track_durable {
                            for r in &records {
                                self.durable[i].apply(r);
                            }
                        }
                        self.persisted.push((i, token));
                    }
                }
            }
        }
        let busy = !self.persisted.is_empty() || !self.messages.is_empty();
        for (i, token) in std::mem::take(&mut self.persisted) {
            self.nodes[i].handle_persisted(now, token);
        }
        let mut messages = std::mem::take(&mut self.messages);
        for (from, to, msg) in messages.drain(..) {
            let t = to.0 as usize;
            if !self.down[t] && !self.down[from.0 as usize] {
                self.nodes[t].handle_message(now, from, msg);
            }
        }
        self.messages = messages;
        busy
    }

    /// Moves time forward by `d`, firing every deadline on the way and running to quiet after
    /// each.
    pub fn advance(&mut self, d: Duration) {
        let target = self.now + d;
        loop {
            self.run();
            let next = (0..self.nodes.len())
                .filter(|i| !self.down[*i])
                .filter_map(|i| self.nodes[i].next_deadline().map(|t| (t, i)))
                .min();
            match next {
                Some((t, i)) if t <= target => {
                    self.now = self.now.max(t);
                    self.nodes[i].handle_timeout(self.now);
                }
                _ => break,
            }
        }
        self.now = target;
        self.run();
    }

    /// Advances time until some up node leads (Multi-Paxos), at most `limit`; returns it.
    pub fn elect(&mut self, limit: Duration) -> Option<NodeId> {
        let step = Duration::from_millis(10);
        let mut waited = Duration::ZERO;
        while waited <= limit {
            if let Some(l) = self.leader() {
                return Some(l);
            }
            self.advance(step);
            waited += step;
        }
        self.leader()
    }

    /// The up node that currently leads, if exactly one does.
    pub fn leader(&self) -> Option<NodeId> {
        let mut leaders = (0..self.nodes.len())
            .filter(|i| !self.down[*i] && self.nodes[*i].role() == Role::Leader)
            .map(|i| NodeId(i as u32));
        let first = leaders.next();
        if leaders.next().is_some() {
            return None;
        }
        first
    }

    /// Crashes node `id` and restarts it from its durable state (memory lost).
    pub fn restart(&mut self, id: NodeId) {
        let i = id.0 as usize;
        let config = self.nodes[i].config().clone();
        self.nodes[i] = Node::recover(config, self.durable[i].clone()).expect("config was valid");
    }

    /// How many replies carry `request` ids from `client` so far.
    pub fn replies_for(&self, cmd: &Command) -> impl Iterator<Item = &Reply> {
        let (c, r) = (cmd.client, cmd.request);
        self.replies
            .iter()
            .filter(move |x| x.client == c && x.request == r)
    }
}

/// A put of `value` under `key` for `client`'s request `request` (test and bench helper).
pub fn put(client: u64, request: u64, key: &[u8], value: &[u8]) -> Command {
    use bytes::Bytes;
    Command {
        client: crate::ClientId(client.into()),
        request: crate::RequestId(request),
        op: crate::Op::Put {
            key: Bytes::copy_from_slice(key),
            value: Bytes::copy_from_slice(value),
        },
    }
}

/// A get of `key` for `client`'s request `request`.
pub fn get(client: u64, request: u64, key: &[u8]) -> Command {
    Command {
        client: crate::ClientId(client.into()),
        request: crate::RequestId(request),
        op: crate::Op::Get {
            key: bytes::Bytes::copy_from_slice(key),
        },
    }
}
