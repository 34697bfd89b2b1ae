//! Multi-Paxos: a stable leader runs phase 1 once for every slot from its first unchosen one,
//! re-proposes the highest-ballot values it learns, fills holes with no-ops, and then runs only
//! phase 2 (Accept/Accepted) while it stays leader. Commands are batched into slots, up to
//! `window` slots are in flight, and commands that arrive while the window is full join the next
//! batch. Followers learn what is chosen from commit points carried by Accepts, heartbeats and
//! Commit messages, and campaign when the leader goes quiet.

use std::collections::BTreeMap;

use crate::command::Value;
use crate::config::Bug;
use crate::messages::{
    Accept, Accepted, Commit, Heartbeat, Message, Nack, Prepare, PrepareScope, Promise,
};
use crate::node::{Node, Role};
use crate::quorum::Votes;
use crate::types::{Ballot, NodeId, Slot, Time};

#[derive(Debug, Default)]
pub(crate) struct MultiState {
    role: MultiRole,
    /// Follower/candidate: when to (re)campaign.
    election_deadline: Time,
    /// Campaigns lost in a row (drives the backoff).
    failed_campaigns: u32,
    /// Every slot below this is chosen, as announced by a leader.
    pub(crate) known_commit: Slot,
    /// The ballot of that announcement: an accepted value at this ballot is the chosen one.
    commit_ballot: Ballot,
}

#[derive(Debug, Default)]
enum MultiRole {
    #[default]
    Follower,
    Candidate(Campaign),
    Leader(Leadership),
}

#[derive(Debug)]
struct Campaign {
    ballot: Ballot,
    /// Phase 1 covers every slot from here.
    from: Slot,
    votes: Votes,
    /// Highest-ballot value reported per slot.
    recovered: BTreeMap<Slot, (Ballot, Value)>,
    /// When the Prepare went out (the phase-1 round trip is measured from here).
    started: Time,
}

#[derive(Debug)]
struct Leadership {
    ballot: Ballot,
    next_slot: Slot,
    inflight: BTreeMap<Slot, Proposal>,
    /// Commit point last announced to followers.
    commit_sent: Slot,
    next_heartbeat: Time,
}

#[derive(Debug)]
struct Proposal {
    value: Value,
    phase: Phase,
    /// When the last Prepare/Accept for it left (for retransmission).
    sent_at: Time,
    /// A batch cut before reaching `max_batch` or `max_batch_bytes` (see
    /// `Config::partial_batches`).
    partial: bool,
}

#[derive(Debug)]
enum Phase {
    /// `skip_phase1 = false`: collecting promises for this slot.
    Preparing {
        votes: Votes,
        best: Option<(Ballot, Value)>,
    },
    /// Collecting Accepted votes.
    Accepting { votes: Votes },
}

impl Node {
    pub(crate) fn multi_start(&mut self) {
        self.reset_election_deadline();
    }

    pub(crate) fn multi_role(&self) -> Role {
        match self.multi.role {
            MultiRole::Follower => Role::Follower,
            MultiRole::Candidate(_) => Role::Candidate,
            MultiRole::Leader(_) => Role::Leader,
        }
    }

    pub(crate) fn multi_leader(&self) -> Option<NodeId> {
        match &self.multi.role {
            MultiRole::Leader(_) => Some(self.config.id),
            MultiRole::Candidate(_) => None,
            MultiRole::Follower => {
                let b = self.multi.commit_ballot;
                // Believe in the leader we last heard from, unless we promised a newer ballot.
                (b != Ballot::ZERO && b >= self.acceptor.promised()).then_some(b.node)
            }
        }
    }

    pub(crate) fn multi_own_ballot(&self) -> Option<Ballot> {
        match &self.multi.role {
            MultiRole::Leader(l) => Some(l.ballot),
            MultiRole::Candidate(c) => Some(c.ballot),
            MultiRole::Follower => None,
        }
    }

    pub(crate) fn multi_deadline(&self) -> Option<Time> {
        match &self.multi.role {
            MultiRole::Leader(l) => {
                let retry = l
                    .inflight
                    .values()
                    .map(|p| p.sent_at)
                    .min()
                    .map(|t| t + self.config.retry_timeout);
                Some(retry.map_or(l.next_heartbeat, |r| r.min(l.next_heartbeat)))
            }
            MultiRole::Follower | MultiRole::Candidate(_) => Some(self.multi.election_deadline),
        }
    }

    fn reset_election_deadline(&mut self) {
        let t = self.config.election_timeout;
        self.multi.election_deadline = self.now + t + self.rng.duration_below(t);
    }

    pub(crate) fn multi_timeout(&mut self) {
        let now = self.now;
        match &mut self.multi.role {
            MultiRole::Leader(l) => {
                let ballot = l.ballot;
                if l.next_heartbeat <= now {
                    l.next_heartbeat = now + self.config.heartbeat_interval;
                    let truncate = self.truncation_point();
                    let commit = self.log.executed();
                    self.broadcast(Message::Heartbeat(Heartbeat {
                        ballot,
                        commit,
                        truncate,
                    }));
                }
                self.retransmit();
            }
            MultiRole::Candidate(_) if self.multi.election_deadline <= now => {
                // Lost (or never finished) the campaign: back off, then try again.
                self.multi.failed_campaigns += 1;
                let delay = self.backoff(self.multi.failed_campaigns);
                self.multi.role = MultiRole::Follower;
                self.reset_election_deadline();
                self.multi.election_deadline = self.multi.election_deadline + delay;
            }
            MultiRole::Follower if self.multi.election_deadline <= now => {
                if self.voting() {
                    self.campaign();
                } else {
                    // A non-voting node never leads: it would need its own forgotten vote.
                    self.reset_election_deadline();
                }
            }
            _ => {}
        }
    }

    /// Phase 1 for every slot from the first one this node has not executed.
    fn campaign(&mut self) {
        self.stats.campaigns += 1;
        self.stats.phase1_rounds += 1;
        self.max_round += 1;
        let ballot = Ballot::new(self.max_round, self.config.id);
        let from = self.log.executed();
        self.multi.role = MultiRole::Candidate(Campaign {
            ballot,
            from,
            votes: Votes::default(),
            recovered: BTreeMap::new(),
            started: self.now,
        });
        self.multi.election_deadline = self.now + self.config.election_timeout;
        self.broadcast_prepare(Prepare {
            ballot,
            scope: PrepareScope::From(from),
        });
    }

    /// Re-sends Accepts (and per-slot Prepares) that have not reached a quorum in time.
    fn retransmit(&mut self) {
        let now = self.now;
        let retry = self.config.retry_timeout;
        let commit = self.log.executed();
        let truncate = self.truncation_point();
        let MultiRole::Leader(l) = &mut self.multi.role else {
            return;
        };
        let ballot = l.ballot;
        let mut resend = Vec::new();
        for (slot, p) in l.inflight.iter_mut() {
            if p.sent_at + retry <= now {
                p.sent_at = now;
                resend.push(match &p.phase {
                    Phase::Preparing { .. } => Message::Prepare(Prepare {
                        ballot,
                        scope: PrepareScope::Only(*slot),
                    }),
                    Phase::Accepting { .. } => Message::Accept(Accept {
                        ballot,
                        slot: *slot,
                        value: p.value.clone(),
                        commit,
                        truncate,
                    }),
                });
            }
        }
        for msg in resend {
            self.stats.retransmits += 1;
            // Our own acceptor has the value already (or will answer the re-sent Prepare again).
            self.broadcast_all(msg);
        }
    }

    /// The acceptor promised `ballot` to a candidate: a higher ballot ends this node's own
    /// leadership or campaign, and the candidate gets time to win.
    pub(crate) fn multi_promised(&mut self, ballot: Ballot) {
        if self.multi_own_ballot().is_some_and(|own| ballot > own) {
            self.step_down(None);
        }
        if self.multi_own_ballot().is_none() {
            self.reset_election_deadline();
        }
    }

    /// An Accept from the leader of `ballot` was accepted: follow it and learn its commit point.
    pub(crate) fn multi_heard_leader(&mut self, ballot: Ballot, commit: Slot) {
        if self.multi_own_ballot().is_some_and(|own| ballot > own) {
            self.step_down(Some(ballot.node));
        }
        if self.multi_own_ballot().is_none() {
            self.reset_election_deadline();
            self.heard_commit(ballot, commit);
        }
    }

    /// Gives up leadership or candidacy; the requests this node took go elsewhere.
    fn step_down(&mut self, leader: Option<NodeId>) {
        if matches!(self.multi.role, MultiRole::Follower) {
            return;
        }
        self.multi.role = MultiRole::Follower;
        self.fail_pending(leader);
        self.reset_election_deadline();
    }

    /// Learns that every slot below `up_to` is chosen under `ballot`'s leader.
    fn heard_commit(&mut self, ballot: Ballot, up_to: Slot) {
        if ballot < self.multi.commit_ballot {
            return;
        }
        if ballot > self.multi.commit_ballot {
            self.multi.commit_ballot = ballot;
        }
        if up_to > self.multi.known_commit {
            self.multi.known_commit = up_to;
        }
        // A value this node accepted at the announcing ballot is the chosen one: a ballot
        // proposes one value per slot.
        let mut slot = self.log.executed();
        while slot < self.multi.known_commit {
            if self.log.chosen(slot).is_none() {
                match self.acceptor.accepted(slot) {
                    Some((b, v)) if *b == self.multi.commit_ballot => {
                        let v = v.clone();
                        self.learn(slot, v);
                    }
                    _ => break,
                }
            }
            slot = slot.next();
        }
        self.execute_ready();
        self.maybe_catch_up(Some(ballot.node));
    }

    /// `slot` is known chosen with `value` (by our quorum, a peer's Learn, or a catch-up). A
    /// leader stops proposing there. If another value won one of its slots, or a slot beyond its
    /// proposals was chosen, a newer ballot is at work: it steps down. It must, because followers
    /// take the value they accepted at the leader's ballot to be the chosen one for every slot
    /// below its commit point, which is only true while its own proposals are the ones chosen.
    pub(crate) fn multi_chosen(&mut self, slot: Slot, value: &Value) {
        let MultiRole::Leader(l) = &mut self.multi.role else {
            return;
        };
        let superseded = match l.inflight.remove(&slot) {
            Some(p) => &p.value != value,
            None => slot >= l.next_slot,
        };
        if superseded {
            self.stats.preemptions += 1;
            self.step_down(None);
        }
    }

    /// A snapshot covered every slot below `upto`. A leader that needed one was behind and may
    /// have proposals there that lost: it steps down (see [`Node::multi_chosen`]).
    pub(crate) fn multi_installed(&mut self, _upto: Slot) {
        if matches!(self.multi.role, MultiRole::Leader(_)) {
            self.stats.preemptions += 1;
            self.step_down(None);
        }
    }

    pub(crate) fn multi_message(&mut self, from: NodeId, msg: Message) {
        match msg {
            Message::Promise(m) => self.on_promise(from, m),
            Message::Accepted(m) => self.on_accepted(from, m),
            Message::Nack(m) => self.on_nack(m),
            Message::Commit(m) => self.on_leader_news(m.ballot, m.up_to, m.truncate),
            Message::Heartbeat(m) => self.on_leader_news(m.ballot, m.commit, m.truncate),
            _ => self.stats.ignored += 1,
        }
    }

    fn on_leader_news(&mut self, ballot: Ballot, commit: Slot, truncate: Slot) {
        self.max_round = self.max_round.max(ballot.round);
        if ballot < self.acceptor.promised() {
            self.stats.ignored += 1;
            return;
        }
        if self.multi_own_ballot().is_some_and(|own| ballot > own) {
            self.step_down(Some(ballot.node));
        }
        if self.multi_own_ballot().is_none() {
            self.reset_election_deadline();
            self.heard_commit(ballot, commit);
        }
        self.heard_truncate(truncate);
    }

    fn on_nack(&mut self, m: Nack) {
        self.max_round = self.max_round.max(m.promised.round);
        if self.multi_own_ballot() == Some(m.ballot) && m.promised > m.ballot {
            self.stats.nacks_received += 1;
            self.stats.preemptions += 1;
            if matches!(self.multi.role, MultiRole::Candidate(_)) {
                self.multi.failed_campaigns += 1;
            }
            self.step_down(None);
            // Let the higher ballot's owner lead; campaign only after a backoff.
            let delay = self.backoff(self.multi.failed_campaigns.max(1));
            self.multi.election_deadline = self.multi.election_deadline + delay;
        } else {
            self.stats.ignored += 1;
        }
    }

    fn on_promise(&mut self, from: NodeId, m: Promise) {
        self.heard_executed(from, m.executed);
        let Some(index) = self.node_index(from) else {
            return;
        };
        match (&mut self.multi.role, m.scope) {
            (MultiRole::Candidate(c), PrepareScope::From(_)) if c.ballot == m.ballot => {
                if m.log_start > c.from {
                    // This acceptor truncated slots we never learned: catch up first.
                    self.multi.role = MultiRole::Follower;
                    self.reset_election_deadline();
                    self.maybe_catch_up(Some(from));
                    return;
                }
                if !c.votes.insert(index) {
                    return;
                }
                for e in m.accepted {
                    match c.recovered.get(&e.slot) {
                        Some((b, _)) if *b >= e.ballot => {}
                        _ => {
                            c.recovered.insert(e.slot, (e.ballot, e.value));
                        }
                    }
                }
                if c.votes.count() >= self.quorum() {
                    self.become_leader();
                }
            }
            (MultiRole::Leader(l), PrepareScope::Only(slot)) if l.ballot == m.ballot => {
                let quorum = self.config.quorum();
                let Some(p) = l.inflight.get_mut(&slot) else {
                    return;
                };
                let Phase::Preparing { votes, best } = &mut p.phase else {
                    return;
                };
                if !votes.insert(index) {
                    return;
                }
                for e in m.accepted {
                    if best.as_ref().is_none_or(|(b, _)| e.ballot > *b) {
                        *best = Some((e.ballot, e.value));
                    }
                }
                if votes.count() >= quorum {
                    let adopted = best.take();
                    self.start_accept(slot, adopted);
                }
            }
            _ => self.stats.ignored += 1,
        }
    }

    /// Phase 1 succeeded: re-propose what was found, fill holes with no-ops, lead.
    fn become_leader(&mut self) {
        let MultiRole::Candidate(c) = std::mem::take(&mut self.multi.role) else {
            return;
        };
        self.stats.elections_won += 1;
        self.multi.failed_campaigns = 0;
        self.note_phase1_rtt(c.started);
        let skip_recovery = self.config.bug == Some(Bug::SkipRecovery);
        let last = [
            c.recovered.keys().next_back().copied(),
            self.log.highest_chosen(),
        ]
        .into_iter()
        .flatten()
        .max();
        let next_slot = last.map_or(c.from, Slot::next).max(c.from);
        self.multi.role = MultiRole::Leader(Leadership {
            ballot: c.ballot,
            next_slot,
            inflight: BTreeMap::new(),
            commit_sent: Slot(0),
            next_heartbeat: self.now,
        });
        self.multi.commit_ballot = c.ballot;
        // Slots this node already executed are chosen; proposing them again is needless and, once
        // truncated, their values are gone. Peers that miss them catch up from us.
        let mut slot = c.from.max(self.log.executed());
        while slot < next_slot {
            let value = if let Some(v) = self.log.chosen(slot) {
                v.clone()
            } else {
                match c.recovered.get(&slot) {
                    Some((_, v)) if !skip_recovery => v.clone(),
                    _ => Value::Noop,
                }
            };
            self.propose(slot, value, true, false);
            slot = slot.next();
        }
        // Announce leadership at once so followers stop campaigning.
        self.multi_timeout();
    }

    /// An Accept for `slot`, carrying the current commit point and truncation point.
    fn accept(&mut self, ballot: Ballot, slot: Slot, value: Value) -> Message {
        let commit = self.log.executed();
        let truncate = self.truncation_point();
        Message::Accept(Accept {
            ballot,
            slot,
            value,
            commit,
            truncate,
        })
    }

    /// Puts `value` in `slot`: straight to phase 2 when phase 1 already covers it.
    /// `partial`: a batch cut short because the queue ran out (see `Config::partial_batches`).
    fn propose(&mut self, slot: Slot, value: Value, phase1_done: bool, partial: bool) {
        let now = self.now;
        let commit = self.log.executed();
        let (explicit, heartbeat) = (self.config.explicit_commit, self.config.heartbeat_interval);
        let MultiRole::Leader(l) = &mut self.multi.role else {
            return;
        };
        let ballot = l.ballot;
        if phase1_done {
            let phase = Phase::Accepting {
                votes: Votes::default(),
            };
            l.inflight.insert(
                slot,
                Proposal {
                    value: value.clone(),
                    phase,
                    sent_at: now,
                    partial,
                },
            );
            if !explicit {
                // The Accept carries the commit point: no separate Commit needed for it.
                l.commit_sent = l.commit_sent.max(commit);
            }
            l.next_heartbeat = now + heartbeat;
            let accept = self.accept(ballot, slot, value);
            self.broadcast_all(accept);
        } else {
            let phase = Phase::Preparing {
                votes: Votes::default(),
                best: None,
            };
            l.inflight.insert(
                slot,
                Proposal {
                    value,
                    phase,
                    sent_at: now,
                    partial,
                },
            );
            self.stats.phase1_rounds += 1;
            self.broadcast_prepare(Prepare {
                ballot,
                scope: PrepareScope::Only(slot),
            });
        }
    }

    /// Per-slot phase 1 finished: propose the adopted value (our own commands go back to the
    /// queue if another value must win this slot).
    fn start_accept(&mut self, slot: Slot, adopted: Option<(Ballot, Value)>) {
        let MultiRole::Leader(l) = &mut self.multi.role else {
            return;
        };
        let Some(p) = l.inflight.get_mut(&slot) else {
            return;
        };
        if let Some((_, v)) = adopted {
            if v != p.value {
                let own = std::mem::replace(&mut p.value, v);
                for cmd in own.commands().iter().rev() {
                    self.queue.push_front(cmd.clone());
                }
            }
        }
        let MultiRole::Leader(l) = &mut self.multi.role else {
            return;
        };
        let p = l.inflight.get_mut(&slot).expect("present above");
        p.phase = Phase::Accepting {
            votes: Votes::default(),
        };
        p.sent_at = self.now;
        let (ballot, value) = (l.ballot, p.value.clone());
        let accept = self.accept(ballot, slot, value);
        self.broadcast_all(accept);
    }

    fn on_accepted(&mut self, from: NodeId, m: Accepted) {
        self.heard_executed(from, m.executed);
        let quorum = if self.config.bug == Some(Bug::CommitWithoutQuorum) {
            1
        } else {
            self.quorum()
        };
        let Some(index) = self.node_index(from) else {
            return;
        };
        let MultiRole::Leader(l) = &mut self.multi.role else {
            self.stats.ignored += 1;
            return;
        };
        if l.ballot != m.ballot {
            self.stats.ignored += 1;
            return;
        }
        let Some(p) = l.inflight.get_mut(&m.slot) else {
            return;
        };
        let Phase::Accepting { votes } = &mut p.phase else {
            return;
        };
        if !votes.insert(index) || votes.count() < quorum {
            return;
        }
        let p = l.inflight.remove(&m.slot).expect("present above");
        self.learn(m.slot, p.value);
        self.execute_ready();
    }

    /// Called when outputs are drained: cut batches into free window slots and announce commits.
    pub(crate) fn multi_pump(&mut self) {
        let MultiRole::Leader(l) = &self.multi.role else {
            return;
        };
        let mut room = self.config.window.saturating_sub(l.inflight.len());
        let mut partial = l.inflight.values().filter(|p| p.partial).count();
        while room > 0 && !self.queue.is_empty() {
            // Would this batch be partial: the queue runs out before either limit is reached?
            let short = self.queue.len() < self.config.max_batch
                && self.queue.iter().map(|c| c.op.payload_len()).sum::<usize>()
                    < self.config.max_batch_bytes;
            if short && partial >= self.config.partial_batches {
                break;
            }
            partial += usize::from(short);
            let batch = self.cut_batch();
            let MultiRole::Leader(l) = &mut self.multi.role else {
                return;
            };
            let slot = l.next_slot;
            l.next_slot = slot.next();
            let skip = self.config.skip_phase1;
            self.propose(slot, Value::stamped(self.now, batch), skip, short);
            room -= 1;
        }
        self.announce_commit();
    }

    /// Tells followers about newly chosen slots, unless an Accept in this step carried it or
    /// one still in flight will: while slots are in flight, the Accept of the next batch (or
    /// the heartbeat, at the latest) carries the commit point, so a loaded leader sends no
    /// Commit messages at all. Followers do not answer clients, so learning a little later
    /// costs no latency, and it saves every node two packets per round.
    fn announce_commit(&mut self) {
        let commit = self.log.executed();
        let truncate = self.truncation_point();
        let explicit = self.config.explicit_commit;
        let MultiRole::Leader(l) = &mut self.multi.role else {
            return;
        };
        if commit > l.commit_sent && (explicit || l.inflight.is_empty()) {
            l.commit_sent = commit;
            l.next_heartbeat = self.now + self.config.heartbeat_interval;
            let ballot = l.ballot;
            self.broadcast(Message::Commit(Commit {
                ballot,
                up_to: commit,
                truncate,
            }));
        }
    }
}
