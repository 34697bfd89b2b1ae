//! The ordered output queue, and the persist barrier.
//!
//! Records produced while handling inputs accumulate until the end of the step, when they leave
//! as one `Persist`. A message that reports durable state (a Promise, an Accepted) is *gated*: it
//! is held until the write that covers it is durable. Because tokens complete in order, a gated
//! message waits for the newest write outstanding when it was produced, which is always enough.

use std::collections::VecDeque;

use crate::messages::Message;
use crate::storage::{PersistToken, Record};
use crate::types::NodeId;
use crate::Action;

/// A gated output: a message to a peer, or to this node itself (its own vote goes through the
/// same barrier as its peers').
#[derive(Debug)]
pub(crate) enum Gated {
    Send(NodeId, Message),
    Broadcast(Message),
}

#[derive(Debug, Default)]
pub(crate) struct Outbox {
    /// Released actions, in order.
    pub(crate) ready: Vec<Action>,
    /// Records of the current step, not yet handed out.
    records: Vec<Record>,
    /// Outputs waiting for the current step's records.
    step_gated: Vec<Gated>,
    /// Handed-out writes that are not yet durable, oldest first, with what waits for each.
    waiting: VecDeque<(PersistToken, Vec<Gated>)>,
    next_token: u64,
}

impl Outbox {
    pub(crate) fn push(&mut self, action: Action) {
        self.ready.push(action);
    }

    pub(crate) fn persist(&mut self, record: Record) {
        self.records.push(record);
    }

    /// Queues `out` to leave once everything persisted so far is durable. Returns it back when
    /// nothing is outstanding, so the caller can release it at once.
    pub(crate) fn gate(&mut self, out: Gated) -> Option<Gated> {
        if !self.records.is_empty() {
            self.step_gated.push(out);
        } else if let Some((_, list)) = self.waiting.back_mut() {
            list.push(out);
        } else {
            return Some(out);
        }
        None
    }

    /// Ends a step: the step's records leave as one Persist.
    pub(crate) fn flush(&mut self) {
        if self.records.is_empty() {
            debug_assert!(
                self.step_gated.is_empty(),
                "gated outputs without records are attached to older writes"
            );
            return;
        }
        let token = PersistToken(self.next_token);
        self.next_token += 1;
        let records = std::mem::take(&mut self.records);
        self.ready.push(Action::Persist { token, records });
        self.waiting
            .push_back((token, std::mem::take(&mut self.step_gated)));
    }

    /// Every write up to `token` is durable: returns the outputs that waited for them.
    pub(crate) fn persisted(&mut self, token: PersistToken, released: &mut Vec<Gated>) {
        while let Some((t, _)) = self.waiting.front() {
            if *t > token {
                break;
            }
            let (_, list) = self.waiting.pop_front().expect("front exists");
            released.extend(list);
        }
    }
}
