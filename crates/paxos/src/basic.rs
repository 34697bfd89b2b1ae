//! Basic Paxos: every node is a proposer. Each batch of commands (one command by default) is
//! decided in its own slot, the first one the proposer does not know to be chosen, by a full
//! phase 1 + phase 2 under a fresh ballot. A proposer that is preempted (a Nack with a higher
//! ballot, or its slot chosen for another value) puts its commands back and retries after
//! `uniform(0, min(cap, base * 2^attempt))`; with `BackoffMode::None` it retries at once, which
//! is what lets dueling proposers livelock. `base` and `cap` may be given in round trips
//! ([`crate::BackoffSpan::Rtts`]): each attempt measures its phase-1 round trip (Prepare to a
//! quorum of Promises, or to a Nack) into `Stats::phase1_rtt`, and each command decided in our
//! own batch is counted under the attempt that decided it (`Stats::attempts`).
//!
//! [`Engine`] owns the proposer: its current attempt, backoff and hole timer, and the attempt
//! counts per command. The acceptor, log, queue and outbox are the shared [`Replica`]'s.

use std::collections::HashMap;

use crate::command::Value;
use crate::engine::ProtocolEngine;
use crate::messages::{
    Accept, Accepted, ChosenEntry, Learn, Message, Nack, Prepare, PrepareScope, Promise,
};
use crate::node::Role;
use crate::quorum::Votes;
use crate::replica::Replica;
use crate::stats::ATTEMPT_BUCKETS;
use crate::types::{Ballot, ClientId, NodeId, RequestId, Slot, Time};

/// A Basic Paxos node's proposer state.
#[derive(Debug, Default)]
pub(crate) struct Engine {
    attempt: Option<Attempt>,
    /// Backing off until then.
    retry_at: Option<Time>,
    /// Preemptions in a row (drives the backoff).
    failures: u32,
    /// Since when this node has seen a hole it cannot fill by asking peers.
    hole_since: Option<Time>,
    /// Attempts so far of each command queued or in flight here (`Stats::attempts` counts
    /// them once the command is chosen in our batch). An entry lives while its command is in
    /// the queue or the attempt, and goes when it is chosen.
    tries: HashMap<(ClientId, RequestId), u32>,
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

impl ProtocolEngine for Engine {
    fn role(&self) -> Role {
        Role::Proposer
    }

    fn leader(&self, _r: &Replica) -> Option<NodeId> {
        None
    }

    fn deadline(&self, r: &Replica) -> Option<Time> {
        if let Some(a) = &self.attempt {
            return Some(a.deadline);
        }
        // The next attempt starts once the backoff is over, and (with nothing queued) once a hole
        // has waited `retry_timeout` for a peer to fill it; never report a moment at which the
        // pump would still refuse to start, or the shell would spin on it.
        let after_backoff = |t: Time| self.retry_at.map_or(t, |at| at.max(t));
        if !r.queue.is_empty() {
            return self.retry_at;
        }
        self.hole_since
            .map(|t| after_backoff(t + r.config.retry_timeout))
    }

    fn timeout(&mut self, r: &mut Replica) {
        if self.attempt.as_ref().is_some_and(|a| a.deadline <= r.now) {
            // No quorum in time: the messages were lost or a peer is down. Try again later.
            self.abandon(r, false);
        }
    }

    /// Called when outputs are drained: start the next attempt if there is work and no backoff.
    fn pump(&mut self, r: &mut Replica) {
        let slot = r.log.first_unchosen();
        let hole = r.log.highest_chosen().is_some_and(|h| h > slot);
        if !hole {
            self.hole_since = None;
        } else if self.hole_since.is_none() {
            self.hole_since = Some(r.now);
            r.maybe_catch_up(self, None);
        }
        if self.attempt.is_some() || self.retry_at.is_some_and(|t| t > r.now) {
            return;
        }
        self.retry_at = None;
        let own = if !r.queue.is_empty() {
            Some(Value::stamped(r.now, r.cut_batch()))
        } else if self
            .hole_since
            .is_some_and(|t| t + r.config.retry_timeout <= r.now)
        {
            // Nobody told us what fills this hole: run Paxos on it with a no-op, which adopts
            // whatever value may already be chosen there.
            None
        } else {
            return;
        };
        r.max_round += 1;
        let ballot = Ballot::new(r.max_round, r.config.id);
        r.stats.phase1_rounds += 1;
        if let Some(own) = &own {
            for cmd in own.commands().iter() {
                *self.tries.entry((cmd.client, cmd.request)).or_insert(0) += 1;
            }
        }
        self.attempt = Some(Attempt {
            started: r.now,
            slot,
            ballot,
            own,
            phase: Phase::Preparing {
                votes: Votes::default(),
                best: None,
            },
            deadline: r.now + r.config.retry_timeout,
        });
        r.broadcast_prepare(
            self,
            Prepare {
                ballot,
                scope: PrepareScope::Only(slot),
            },
        );
    }

    fn message(&mut self, r: &mut Replica, from: NodeId, msg: Message) {
        match msg {
            Message::Promise(m) => self.on_promise(r, from, m),
            Message::Accepted(m) => self.on_accepted(r, from, m),
            Message::Nack(m) => self.on_nack(r, m),
            _ => r.stats.ignored += 1,
        }
    }

    /// `value` is chosen in `slot`: if that ends our attempt, see whether we won.
    fn learned(&mut self, r: &mut Replica, slot: Slot, value: &Value) {
        let Some(a) = &self.attempt else { return };
        if a.slot != slot {
            return;
        }
        match &a.own {
            // Our commands chosen, under whichever attempt's stamp (a proposer that found our
            // earlier attempt accepted re-proposed it): that is our win, not a preemption.
            Some(own) if own.commands() != value.commands() => self.abandon(r, true),
            own => {
                for cmd in own.iter().flat_map(|v| v.commands()) {
                    let tries = self.tries.remove(&(cmd.client, cmd.request));
                    let k = tries.unwrap_or(1).clamp(1, ATTEMPT_BUCKETS as u32);
                    r.stats.attempts[k as usize - 1] += 1;
                }
                self.attempt = None;
                self.failures = 0;
            }
        }
    }
}

impl Engine {
    fn on_promise(&mut self, r: &mut Replica, from: NodeId, m: Promise) {
        r.heard_executed(from, m.executed);
        let quorum = r.quorum();
        let truncate = r.truncation_point();
        let Some(index) = r.node_index(from) else {
            return;
        };
        let Some(a) = &mut self.attempt else {
            return;
        };
        let Phase::Preparing { votes, best } = &mut a.phase else {
            return;
        };
        if a.ballot != m.ballot || m.scope != PrepareScope::Only(a.slot) || !votes.insert(index) {
            r.stats.ignored += 1;
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
        a.deadline = r.now + r.config.retry_timeout;
        let (ballot, slot) = (a.ballot, a.slot);
        r.note_phase1_rtt(started);
        r.broadcast_all(Message::Accept(Accept {
            ballot,
            slot,
            value,
            commit: Slot(0),
            truncate,
        }));
    }

    fn on_accepted(&mut self, r: &mut Replica, from: NodeId, m: Accepted) {
        r.heard_executed(from, m.executed);
        let quorum = r.quorum();
        let Some(index) = r.node_index(from) else {
            return;
        };
        let Some(a) = &mut self.attempt else {
            return;
        };
        let Phase::Accepting { votes, value } = &mut a.phase else {
            return;
        };
        if a.ballot != m.ballot || a.slot != m.slot || !votes.insert(index) {
            r.stats.ignored += 1;
            return;
        }
        if votes.count() < quorum {
            return;
        }
        let (slot, value) = (a.slot, value.clone());
        r.broadcast(Message::Learn(Learn {
            entries: vec![ChosenEntry {
                slot,
                value: value.clone(),
            }],
        }));
        self.learned(r, slot, &value);
        r.learn(self, slot, value);
        r.execute_ready();
    }

    fn on_nack(&mut self, r: &mut Replica, m: Nack) {
        r.max_round = r.max_round.max(m.promised.round);
        if let Some(a) = self.attempt.as_ref().filter(|a| a.ballot == m.ballot) {
            if matches!(a.phase, Phase::Preparing { .. }) {
                // A Nack to a Prepare ends a phase-1 round trip too.
                let started = a.started;
                r.note_phase1_rtt(started);
            }
            r.stats.nacks_received += 1;
            self.abandon(r, true);
        } else {
            r.stats.ignored += 1;
        }
    }

    /// Gives up the current attempt: our commands go back to the front of the queue and we
    /// retry after a backoff. `preempted`: another proposer won (not a timeout).
    fn abandon(&mut self, r: &mut Replica, preempted: bool) {
        let Some(a) = self.attempt.take() else {
            return;
        };
        if preempted {
            r.stats.preemptions += 1;
        }
        if let Some(own) = a.own {
            for cmd in own.commands().iter().rev() {
                r.queue.push_front(cmd.clone());
            }
        }
        self.failures += 1;
        let delay = r.backoff(self.failures);
        self.retry_at = Some(r.now + delay);
    }
}
