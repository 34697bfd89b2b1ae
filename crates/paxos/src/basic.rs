//! Basic Paxos: every node is a proposer. Each batch of commands (one command by default) is
//! decided in its own slot, the first one the proposer does not know to be chosen, by a full
//! phase 1 + phase 2 under a fresh ballot. A proposer that is preempted (a Nack with a higher
//! ballot, or its slot chosen for another value) puts its commands back and retries after
//! `uniform(0, min(cap, base * 2^attempt))`; with `BackoffMode::None` it retries at once, which
//! is what lets dueling proposers livelock. `base` and `cap` may be given in round trips
//! ([`crate::BackoffSpan::Rtts`]): each attempt measures its phase-1 round trip (Prepare to a
//! quorum of Promises, or to a Nack) into `Stats::phase1_rtt`, and each command decided in our
//! own batch is counted under the attempt that decided it (`Stats::attempts`).

use std::collections::HashMap;

use crate::command::Value;
use crate::messages::{
    Accept, Accepted, ChosenEntry, Learn, Message, Nack, Prepare, PrepareScope, Promise,
};
use crate::node::Node;
use crate::quorum::Votes;
use crate::stats::ATTEMPT_BUCKETS;
use crate::types::{Ballot, ClientId, NodeId, RequestId, Slot, Time};

#[derive(Debug, Default)]
pub(crate) struct BasicState {
    attempt: Option<Attempt>,
    /// Backing off until then.
    retry_at: Option<Time>,
    /// Preemptions in a row (drives the backoff).
    failures: u32,
    /// Since when this node has seen a hole it cannot fill by asking peers.
    hole_since: Option<Time>,
    /// Attempts so far of each command queued or in flight here (`Stats::attempts` counts
    /// them once the command is chosen in our batch). An entry lives while its command is in
    /// the queue or the attempt, and goes when it is chosen or the queue is dropped.
    pub(crate) tries: HashMap<(ClientId, RequestId), u32>,
}

#[derive(Debug)]
struct Attempt {
    slot: Slot,
    ballot: Ballot,
    /// Our own batch, or `None` when filling a hole with a no-op.
    own: Option<Value>,
    phase: Phase,
    /// Give up and retry if no quorum answered by then (messages may be lost).
    deadline: Time,
    /// When the Prepare went out: the phase-1 round trip is measured from here.
    started: Time,
}

#[derive(Debug)]
enum Phase {
    Preparing {
        votes: Votes,
        best: Option<(Ballot, Value)>,
    },
    Accepting {
        votes: Votes,
        value: Value,
    },
}

impl Node {
    pub(crate) fn basic_deadline(&self) -> Option<Time> {
        let b = &self.basic;
        if let Some(a) = &b.attempt {
            return Some(a.deadline);
        }
        // The next attempt starts once the backoff is over, and (with nothing queued) once a hole
        // has waited `retry_timeout` for a peer to fill it; never report a moment at which the
        // pump would still refuse to start, or the shell would spin on it.
        let after_backoff = |t: Time| b.retry_at.map_or(t, |r| r.max(t));
        if !self.queue.is_empty() {
            return b.retry_at;
        }
        b.hole_since
            .map(|t| after_backoff(t + self.config.retry_timeout))
    }

    pub(crate) fn basic_timeout(&mut self) {
        if self
            .basic
            .attempt
            .as_ref()
            .is_some_and(|a| a.deadline <= self.now)
        {
            // No quorum in time: the messages were lost or a peer is down. Try again later.
            self.abandon(false);
        }
    }

    /// Called when outputs are drained: start the next attempt if there is work and no backoff.
    pub(crate) fn basic_pump(&mut self) {
        let slot = self.log.first_unchosen();
        let hole = self.log.highest_chosen().is_some_and(|h| h > slot);
        if !hole {
            self.basic.hole_since = None;
        } else if self.basic.hole_since.is_none() {
            self.basic.hole_since = Some(self.now);
            self.maybe_catch_up(None);
        }
        if self.basic.attempt.is_some() || self.basic.retry_at.is_some_and(|t| t > self.now) {
            return;
        }
        self.basic.retry_at = None;
        let own = if !self.queue.is_empty() {
            Some(Value::stamped(self.now, self.cut_batch()))
        } else if self
            .basic
            .hole_since
            .is_some_and(|t| t + self.config.retry_timeout <= self.now)
        {
            // Nobody told us what fills this hole: run Paxos on it with a no-op, which adopts
            // whatever value may already be chosen there.
            None
        } else {
            return;
        };
        self.max_round += 1;
        let ballot = Ballot::new(self.max_round, self.config.id);
        self.stats.phase1_rounds += 1;
        if let Some(own) = &own {
            for cmd in own.commands().iter() {
                *self
                    .basic
                    .tries
                    .entry((cmd.client, cmd.request))
                    .or_insert(0) += 1;
            }
        }
        self.basic.attempt = Some(Attempt {
            started: self.now,
            slot,
            ballot,
            own,
            phase: Phase::Preparing {
                votes: Votes::default(),
                best: None,
            },
            deadline: self.now + self.config.retry_timeout,
        });
        self.broadcast_prepare(Prepare {
            ballot,
            scope: PrepareScope::Only(slot),
        });
    }

    pub(crate) fn basic_message(&mut self, from: NodeId, msg: Message) {
        match msg {
            Message::Promise(m) => self.basic_promise(from, m),
            Message::Accepted(m) => self.basic_accepted(from, m),
            Message::Nack(m) => self.basic_nack(m),
            _ => self.stats.ignored += 1,
        }
    }

    fn basic_promise(&mut self, from: NodeId, m: Promise) {
        self.heard_executed(from, m.executed);
        let quorum = self.quorum();
        let truncate = self.truncation_point();
        let Some(index) = self.node_index(from) else {
            return;
        };
        let Some(a) = &mut self.basic.attempt else {
            return;
        };
        let Phase::Preparing { votes, best } = &mut a.phase else {
            return;
        };
        if a.ballot != m.ballot || m.scope != PrepareScope::Only(a.slot) || !votes.insert(index) {
            self.stats.ignored += 1;
            return;
        }
        for e in m.accepted {
            if best.as_ref().is_none_or(|(b, _)| e.ballot > *b) {
                *best = Some((e.ballot, e.value));
            }
        }
        if votes.count() < quorum {
            return;
        }
        let started = a.started;
        // Phase 2 with the highest-ballot value reported, or our own.
        let value = match best.take() {
            Some((_, v)) => v,
            None => a.own.clone().unwrap_or(Value::Noop),
        };
        a.phase = Phase::Accepting {
            votes: Votes::default(),
            value: value.clone(),
        };
        a.deadline = self.now + self.config.retry_timeout;
        let (ballot, slot) = (a.ballot, a.slot);
        self.note_phase1_rtt(started);
        self.broadcast_all(Message::Accept(Accept {
            ballot,
            slot,
            value,
            commit: Slot(0),
            truncate,
        }));
    }

    fn basic_accepted(&mut self, from: NodeId, m: Accepted) {
        self.heard_executed(from, m.executed);
        let quorum = self.quorum();
        let Some(index) = self.node_index(from) else {
            return;
        };
        let Some(a) = &mut self.basic.attempt else {
            return;
        };
        let Phase::Accepting { votes, value } = &mut a.phase else {
            return;
        };
        if a.ballot != m.ballot || a.slot != m.slot || !votes.insert(index) {
            self.stats.ignored += 1;
            return;
        }
        if votes.count() < quorum {
            return;
        }
        let (slot, value) = (a.slot, value.clone());
        self.broadcast(Message::Learn(Learn {
            entries: vec![ChosenEntry {
                slot,
                value: value.clone(),
            }],
        }));
        self.basic_learned(slot, &value);
        self.learn(slot, value);
        self.execute_ready();
    }

    fn basic_nack(&mut self, m: Nack) {
        self.max_round = self.max_round.max(m.promised.round);
        if let Some(a) = self.basic.attempt.as_ref().filter(|a| a.ballot == m.ballot) {
            if matches!(a.phase, Phase::Preparing { .. }) {
                // A Nack to a Prepare ends a phase-1 round trip too.
                let started = a.started;
                self.note_phase1_rtt(started);
            }
            self.stats.nacks_received += 1;
            self.abandon(true);
        } else {
            self.stats.ignored += 1;
        }
    }

    /// `value` is chosen in `slot`: if that ends our attempt, see whether we won.
    pub(crate) fn basic_learned(&mut self, slot: Slot, value: &Value) {
        let Some(a) = &self.basic.attempt else { return };
        if a.slot != slot {
            return;
        }
        match &a.own {
            // Our commands chosen, under whichever attempt's stamp (a proposer that found our
            // earlier attempt accepted re-proposed it): that is our win, not a preemption.
            Some(own) if own.commands() != value.commands() => self.abandon(true),
            own => {
                for cmd in own.iter().flat_map(|v| v.commands()) {
                    let tries = self.basic.tries.remove(&(cmd.client, cmd.request));
                    let k = tries.unwrap_or(1).clamp(1, ATTEMPT_BUCKETS as u32);
                    self.stats.attempts[k as usize - 1] += 1;
                }
                self.basic.attempt = None;
                self.basic.failures = 0;
            }
        }
    }

    /// Gives up the current attempt: our commands go back to the front of the queue and we
    /// retry after a backoff. `preempted`: another proposer won (not a timeout).
    fn abandon(&mut self, preempted: bool) {
        let Some(a) = self.basic.attempt.take() else {
            return;
        };
        if preempted {
            self.stats.preemptions += 1;
        }
        if let Some(own) = a.own {
            for cmd in own.commands().iter().rev() {
                self.queue.push_front(cmd.clone());
            }
        }
        self.basic.failures += 1;
        let delay = self.backoff(self.basic.failures);
        self.basic.retry_at = Some(self.now + delay);
    }
}
