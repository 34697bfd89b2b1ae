//! The unreplicated baseline: one node, no acceptor votes, no log. It executes every command at
//! once when it arrives (see [`Replica::execute_alone`]) and never sends a message; its engine
//! holds no state.

use crate::command::Command;
use crate::engine::ProtocolEngine;
use crate::node::Role;
use crate::replica::Replica;
use crate::types::NodeId;

/// The single node's engine.
#[derive(Debug, Default)]
pub(crate) struct Engine;

impl ProtocolEngine for Engine {
    fn role(&self) -> Role {
        Role::Single
    }

    fn leader(&self, r: &Replica) -> Option<NodeId> {
        Some(r.config.id)
    }

    fn request(&mut self, r: &mut Replica, cmd: Command) {
        r.execute_alone(cmd);
    }
}
