//! Multi-Paxos: a stable leader runs phase 1 once for every slot from its first unchosen one,
//! re-proposes the highest-ballot values it learns, fills holes with no-ops, and then runs only
//! phase 2 (Accept/Accepted) while it stays leader. Commands are batched into slots, up to
//! `window` slots are in flight, and commands that arrive while the window is full join the next
//! batch. Followers learn what is chosen from commit points carried by Accepts, heartbeats and
//! Commit messages, and campaign when the leader goes quiet.
//!
//! [`Engine`] owns all of it: the role (follower, candidate with its campaign, leader with its
//! window of proposals and heartbeat timer), the election timer and the commit point followers
//! learned. The acceptor, log, queue and outbox are the shared [`Replica`]'s.
//!
//! # Leases (`reads = "lease"`)
//!
//! The leader's heartbeats carry their send time on its clock and go out every
//! `heartbeat_interval` however busy it is. A voting follower that takes a heartbeat (its ballot
//! is at least the one it promised) grants the leader of that ballot a lease until its own
//! receipt time plus `lease_duration`, and answers with a [`HeartbeatAck`] echoing the send time.
//! Until a grant runs out the follower refuses to promise any other ballot (the Prepare goes
//! unanswered, counted in `Stats::lease_refusals`) and does not campaign; the leader grants
//! itself the same lease at each heartbeat. A node that starts or restarts promises nothing for
//! one `lease_duration`: it may have granted a lease it no longer remembers.
//!
//! The leader counts the lease from each acknowledgement as the echoed send time plus
//! [`crate::Config::lease_span`], the duration shortened by the clock-drift bound, and answers a
//! `Get` from its own state while the leases of a quorum (itself included) are in force and it
//! has executed every slot below the point where its phase 1 ended (everything chosen before it
//! was elected). Otherwise the `Get` goes through the log, as with `reads = "log"`.
//!
//! Why no other leader can have chosen a write the lease holder has not seen: a new ballot needs
//! promises from a quorum, which shares a node with the quorum whose leases the holder counts.
//! That node promised either before it granted the lease (then the grant, which needs the
//! heartbeat's ballot to be at least its promise, was refused, unless the new ballot is lower
//! and so elected before the holder, whose phase 1 found its writes) or after its grant ran out.
//! In true time, its grant lasts at least `lease_duration / (1 + drift)` from the heartbeat's
//! receipt, and the holder's count lasts at most `lease_span / (1 - drift)` from its sending,
//! which is no longer; so the holder stopped counting it first.
//!
//! # Membership change
//!
//! The rule and why it is safe are in [`crate::membership`]. Three things make a change quick
//! under this engine. A leader that proposed a change and has no command queued fills the slots
//! up to the one the change governs from with no-ops, so the change takes effect on an idle
//! cluster too. A leader that is no voter of its next slot announces its commit point once its
//! last slots are chosen, then steps down. And the follower that executes those slots and is the
//! lowest-numbered voter of the configuration governing the next one campaigns at once instead
//! of after an election timeout (inside a lease it granted it still waits the lease out): a
//! leader handed over in about one round of phase 1, with no message of its own for it.

use std::collections::BTreeMap;

use crate::command::{Command, Op, Outcome, Value};
use crate::config::{Bug, ReadMode};
use crate::engine::ProtocolEngine;
use crate::messages::{
    Accept, Accepted, Commit, Heartbeat, HeartbeatAck, Message, Nack, Prepare, PrepareScope,
    Promise,
};
use crate::node::Role;
use crate::quorum::Votes;
use crate::replica::Replica;
use crate::types::{Ballot, NodeId, Slot, Time};

/// A Multi-Paxos node's protocol state.
#[derive(Debug, Default)]
pub(crate) struct Engine {
    role: MultiRole,
    /// Follower/candidate: when to (re)campaign.
    election_deadline: Time,
    /// Campaigns lost in a row (drives the backoff).
    failed_campaigns: u32,
    /// Every slot below this is chosen, as announced by a leader.
    known_commit: Slot,
    /// The ballot of that announcement: an accepted value at this ballot is the chosen one.
    commit_ballot: Ballot,
    /// `reads = "lease"`: the lease this node granted last (to a leader's ballot, maybe its
    /// own), and until when on its own clock.
    grant: Option<(Ballot, Time)>,
    /// `reads = "lease"`: a node that (re)started promises nothing before this.
    quiet_until: Time,
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
    /// `reads = "lease"`: until when each node's lease is in force, on this node's clock
    /// (`Time::ZERO`: never granted at this ballot), by node index.
    lease_expiry: Vec<Time>,
    /// Every slot below this was chosen before this node was elected, or is being recovered by
    /// it: no local read until it has executed them.
    read_fence: Slot,
    /// Phase 1 covered every slot from here.
    from: Slot,
    /// Nodes that promised this ballot (the election's quorum, and any later promise).
    promised: Votes,
    /// Highest-ballot value reported per slot not proposed yet.
    recovered: BTreeMap<Slot, (Ballot, Value)>,
    /// Slots below this that phase 1 found values beyond are re-proposed (or filled with
    /// no-ops) before any new batch.
    recover_upto: Slot,
    /// The next slot's voters have no majority among `promised`: the Prepare is re-sent.
    awaiting_promises: bool,
    /// When the Prepare last went out.
    prepare_sent: Time,
    /// The highest slot this leader proposed a membership change in.
    last_reconfig: Option<Slot>,
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

impl ProtocolEngine for Engine {
    const WHOLE_LOG: bool = true;

    fn start(&mut self, r: &mut Replica) {
        if r.config.reads == ReadMode::Lease {
            self.quiet_until = r.now + r.config.lease_duration;
        }
        self.reset_election_deadline(r);
    }

    fn role(&self) -> Role {
        match self.role {
            MultiRole::Follower => Role::Follower,
            MultiRole::Candidate(_) => Role::Candidate,
            MultiRole::Leader(_) => Role::Leader,
        }
    }

    fn leader(&self, r: &Replica) -> Option<NodeId> {
        match &self.role {
            MultiRole::Leader(_) => Some(r.config.id),
            MultiRole::Candidate(_) => None,
            MultiRole::Follower => {
                let b = self.commit_ballot;
                // Believe in the leader we last heard from, unless we promised a newer ballot.
                // Not ourselves: a leader that stepped down (removed, or superseded) is no
                // longer one.
                (b != Ballot::ZERO && b >= r.acceptor.promised() && b.node != r.config.id)
                    .then_some(b.node)
            }
        }
    }

    fn own_ballot(&self) -> Option<Ballot> {
        match &self.role {
            MultiRole::Leader(l) => Some(l.ballot),
            MultiRole::Candidate(c) => Some(c.ballot),
            MultiRole::Follower => None,
        }
    }

    fn known_commit(&self) -> Slot {
        self.known_commit
    }

    fn takes_requests(&self) -> bool {
        matches!(self.role, MultiRole::Leader(_))
    }

    fn deadline(&self, r: &Replica) -> Option<Time> {
        match &self.role {
            MultiRole::Leader(l) => {
                let prepare = l.awaiting_promises.then_some(l.prepare_sent);
                let retry = l
                    .inflight
                    .values()
                    .map(|p| p.sent_at)
                    .chain(prepare)
                    .min()
                    .map(|t| t + r.config.retry_timeout);
                Some(retry.map_or(l.next_heartbeat, |t| t.min(l.next_heartbeat)))
            }
            MultiRole::Follower | MultiRole::Candidate(_) => Some(self.election_deadline),
        }
    }

    fn timeout(&mut self, r: &mut Replica) {
        let now = r.now;
        match &mut self.role {
            MultiRole::Leader(l) => {
                let ballot = l.ballot;
                if l.next_heartbeat <= now {
                    l.next_heartbeat = now + r.config.heartbeat_interval;
                    if r.config.reads == ReadMode::Lease {
                        // The leader grants itself the lease it asks the others for.
                        self.grant = Some((ballot, now + r.config.lease_duration));
                        l.lease_expiry[r.index] = now + r.config.lease_span();
                    }
                    let truncate = r.truncation_point();
                    let commit = r.log.executed();
                    r.broadcast(Message::Heartbeat(Heartbeat {
                        ballot,
                        commit,
                        truncate,
                        sent: now,
                    }));
                }
                self.retransmit(r);
            }
            MultiRole::Candidate(_) if self.election_deadline <= now => {
                // Lost (or never finished) the campaign: back off, then try again.
                self.failed_campaigns += 1;
                let delay = r.backoff(self.failed_campaigns);
                self.role = MultiRole::Follower;
                self.reset_election_deadline(r);
                self.election_deadline = self.election_deadline + delay;
            }
            MultiRole::Follower if self.election_deadline <= now => {
                if !r.votes() {
                    // A non-voting node never leads: it would need its own forgotten vote.
                    self.reset_election_deadline(r);
                } else if let Some(until) = self.lease_held_until(r) {
                    // Campaigning inside a lease this node granted would break it.
                    self.election_deadline = until;
                } else {
                    self.campaign(r);
                }
            }
            _ => {}
        }
    }

    /// Called when outputs are drained: propose into free slots and announce commits.
    fn pump(&mut self, r: &mut Replica) {
        self.fill(r);
        self.announce_commit(r);
    }

    fn message(&mut self, r: &mut Replica, from: NodeId, msg: Message) {
        match msg {
            Message::Promise(m) => self.on_promise(r, from, m),
            Message::Accepted(m) => self.on_accepted(r, from, m),
            Message::Nack(m) => self.on_nack(r, m),
            Message::Commit(m) => {
                self.on_leader_news(r, m.ballot, m.up_to, m.truncate);
            }
            Message::Heartbeat(m) => self.on_heartbeat(r, from, m),
            Message::HeartbeatAck(m) => self.on_heartbeat_ack(r, from, m),
            _ => r.stats.ignored += 1,
        }
    }

    /// A client command: a `Get` the leader may answer under its lease, or a learner under
    /// `reads = "learner"`, is answered at once from its state; everything else is queued for a slot (or answered NotLeader).
    fn request(&mut self, r: &mut Replica, cmd: Command) {
        if let Op::Get { key } = &cmd.op {
            if self.reads_locally(r) || self.learner_reads(r) {
                let value = r.log.kv.get(key).cloned();
                r.stats.local_reads += 1;
                r.reply(cmd.client, cmd.request, Outcome::Value(value));
                return;
            }
        }
        let (takes, leader) = (self.takes_requests(), self.leader(r));
        r.take_request(cmd, takes, leader);
    }

    /// Inside a lease this node granted to another ballot, or less than a lease after it
    /// started, it promises nothing.
    fn refuses_promise(&mut self, r: &mut Replica, ballot: Ballot) -> bool {
        if r.config.reads != ReadMode::Lease || r.config.bug == Some(Bug::PromiseInsideLease) {
            return false;
        }
        let granted_other = self
            .grant
            .is_some_and(|(b, until)| b != ballot && r.now < until);
        granted_other || r.now < self.quiet_until
    }

    /// The acceptor promised `ballot` to a candidate: a higher ballot ends this node's own
    /// leadership or campaign, and the candidate gets time to win.
    fn promised(&mut self, r: &mut Replica, ballot: Ballot) {
        if self.own_ballot().is_some_and(|own| ballot > own) {
            self.step_down(r, None);
        }
        if self.own_ballot().is_none() {
            self.reset_election_deadline(r);
        }
    }

    /// An Accept from the leader of `ballot` was accepted: follow it and learn its commit point.
    fn accepted(&mut self, r: &mut Replica, ballot: Ballot, commit: Slot) {
        if self.own_ballot().is_some_and(|own| ballot > own) {
            self.step_down(r, Some(ballot.node));
        }
        if self.own_ballot().is_none() {
            self.reset_election_deadline(r);
            self.heard_commit(r, ballot, commit);
        }
    }

    /// `slot` is known chosen with `value` (by our quorum, a peer's Learn, or a catch-up). A
    /// leader stops proposing there. If another value won one of its slots, or a slot beyond its
    /// proposals was chosen, a newer ballot is at work: it steps down. It must, because followers
    /// take the value they accepted at the leader's ballot to be the chosen one for every slot
    /// below its commit point, which is only true while its own proposals are the ones chosen.
    fn chosen(&mut self, r: &mut Replica, slot: Slot, value: &Value) {
        let MultiRole::Leader(l) = &mut self.role else {
            return;
        };
        let superseded = match l.inflight.remove(&slot) {
            Some(p) => &p.value != value,
            None => slot >= l.next_slot,
        };
        if superseded {
            r.stats.preemptions += 1;
            self.step_down(r, None);
        }
    }

    /// A snapshot covered every slot below `upto`. A leader that needed one was behind and may
    /// have proposals there that lost: it steps down (see [`Engine::chosen`]).
    fn installed(&mut self, r: &mut Replica, _upto: Slot) {
        if matches!(self.role, MultiRole::Leader(_)) {
            r.stats.preemptions += 1;
            self.step_down(r, None);
        }
    }
}

impl Engine {
    /// `reads = "lease"`: until when this node may neither promise another ballot nor campaign
    /// (a grant in force, or the quiet time after a start), if that is later than now.
    fn lease_held_until(&self, r: &Replica) -> Option<Time> {
        if r.config.reads != ReadMode::Lease {
            return None;
        }
        let grant = self.grant.map_or(Time::ZERO, |(_, until)| until);
        let until = grant.max(self.quiet_until);
        (until > r.now).then_some(until)
    }

    /// Whether this node answers a `Get` from its own state now: it leads, it has executed
    /// everything chosen before its election, and a quorum's leases (its own included) are in
    /// force on its clock.
    fn reads_locally(&self, r: &Replica) -> bool {
        let MultiRole::Leader(l) = &self.role else {
            return false;
        };
        if r.config.reads != ReadMode::Lease || r.log.executed() < l.read_fence {
            return false;
        }
        // While a membership change is decided but not in force, or proposed by this leader
        // and not executed, another configuration may govern slots this leader has not
        // executed: its lease quorum proves nothing about them.
        let executed = r.log.executed();
        let Some(m) = r.log.kv.membership() else {
            return false;
        };
        if !m.settled_from(executed) || l.last_reconfig.is_some_and(|s| s >= executed) {
            return false;
        }
        let in_force = if r.config.bug == Some(Bug::ReadsAfterLeaseExpiry) {
            // The broken variant: a lease once held is held forever.
            Time(1)
        } else {
            r.now + std::time::Duration::from_nanos(1)
        };
        let voters = m.voters_at(executed);
        let held = voters
            .iter()
            .filter(|v| {
                r.node_index(**v)
                    .is_some_and(|i| l.lease_expiry[i] >= in_force)
            })
            .count();
        held > voters.len() / 2
    }

    /// `reads = "learner"`: a learner answers a `Get` from its own state, however far behind.
    fn learner_reads(&self, r: &Replica) -> bool {
        r.config.reads == ReadMode::Learner && r.config.is_learner(r.config.id)
    }

    /// A heartbeat: news of the leader, and (`reads = "lease"`) a lease to grant.
    fn on_heartbeat(&mut self, r: &mut Replica, from: NodeId, m: Heartbeat) {
        if !self.on_leader_news(r, m.ballot, m.commit, m.truncate) {
            return;
        }
        if r.config.reads == ReadMode::Lease && r.votes() && self.own_ballot().is_none() {
            self.grant = Some((m.ballot, r.now + r.config.lease_duration));
            let ack = HeartbeatAck {
                ballot: m.ballot,
                sent: m.sent,
            };
            r.send(from, Message::HeartbeatAck(ack));
        }
    }

    /// A follower granted this leader a lease from the heartbeat it sent at `m.sent`.
    fn on_heartbeat_ack(&mut self, r: &mut Replica, from: NodeId, m: HeartbeatAck) {
        let span = r.config.lease_span();
        let (now, index) = (r.now, r.node_index(from));
        match (&mut self.role, index) {
            // A send time from the future is no heartbeat of ours: ignore it.
            (MultiRole::Leader(l), Some(i)) if l.ballot == m.ballot && m.sent <= now => {
                let t = &mut l.lease_expiry[i];
                *t = (*t).max(m.sent + span);
            }
            _ => r.stats.ignored += 1,
        }
    }

    fn reset_election_deadline(&mut self, r: &mut Replica) {
        let t = r.config.election_timeout;
        self.election_deadline = r.now + t + r.rng.duration_below(t);
    }

    /// Phase 1 for every slot from the first one this node has not executed.
    fn campaign(&mut self, r: &mut Replica) {
        r.stats.campaigns += 1;
        r.stats.phase1_rounds += 1;
        r.max_round += 1;
        let ballot = Ballot::new(r.max_round, r.config.id);
        let from = r.log.executed();
        self.role = MultiRole::Candidate(Campaign {
            ballot,
            from,
            votes: Votes::default(),
            recovered: BTreeMap::new(),
            started: r.now,
        });
        self.election_deadline = r.now + r.config.election_timeout;
        r.broadcast_prepare(
            self,
            Prepare {
                ballot,
                scope: PrepareScope::From(from),
            },
        );
    }

    /// Re-sends Accepts (and per-slot Prepares) that have not reached a quorum in time.
    fn retransmit(&mut self, r: &mut Replica) {
        let now = r.now;
        let retry = r.config.retry_timeout;
        let commit = r.log.executed();
        let truncate = r.truncation_point();
        let MultiRole::Leader(l) = &mut self.role else {
            return;
        };
        let ballot = l.ballot;
        let mut resend = Vec::new();
        if l.awaiting_promises && l.prepare_sent + retry <= now {
            // A configuration whose voters have not all heard this ballot governs the next slot.
            l.prepare_sent = now;
            r.stats.phase1_rounds += 1;
            let from = l.from;
            r.broadcast(Message::Prepare(Prepare {
                ballot,
                scope: PrepareScope::From(from),
            }));
        }
        let MultiRole::Leader(l) = &mut self.role else {
            return;
        };
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
            r.stats.retransmits += 1;
            // Our own acceptor has the value already (or will answer the re-sent Prepare again).
            r.broadcast_all(msg);
        }
    }

    /// Gives up leadership or candidacy; the requests this node took go elsewhere.
    fn step_down(&mut self, r: &mut Replica, leader: Option<NodeId>) {
        if matches!(self.role, MultiRole::Follower) {
            return;
        }
        self.role = MultiRole::Follower;
        r.fail_pending(leader);
        self.reset_election_deadline(r);
    }

    /// Learns that every slot below `up_to` is chosen under `ballot`'s leader.
    fn heard_commit(&mut self, r: &mut Replica, ballot: Ballot, up_to: Slot) {
        if ballot < self.commit_ballot {
            return;
        }
        if ballot > self.commit_ballot {
            self.commit_ballot = ballot;
        }
        if up_to > self.known_commit {
            self.known_commit = up_to;
        }
        // A value this node accepted at the announcing ballot is the chosen one: a ballot
        // proposes one value per slot.
        let mut slot = r.log.executed();
        while slot < self.known_commit {
            if r.log.chosen(slot).is_none() {
                match r.acceptor.accepted(slot) {
                    Some((b, v)) if *b == self.commit_ballot => {
                        let v = v.clone();
                        r.learn(self, slot, v);
                    }
                    _ => break,
                }
            }
            slot = slot.next();
        }
        r.execute_ready();
        r.maybe_catch_up(self, Some(ballot.node));
        self.take_over(r);
    }

    /// A follower whose leader the membership removed does not wait an election timeout for a
    /// successor: once it has executed every slot below the first one the leader is no voter
    /// of, the leader can propose nothing more (it steps down once they are chosen), and the
    /// lowest-numbered voter of the configuration governing the next slot campaigns at once.
    /// The others wait for it as after any election. Its campaign is the usual one: inside a
    /// lease it granted it still waits the lease out (see [`Engine::timeout`]).
    fn take_over(&mut self, r: &mut Replica) {
        if !matches!(self.role, MultiRole::Follower) || self.commit_ballot == Ballot::ZERO {
            return;
        }
        let voters = r.voters_at(r.log.executed());
        let successor = voters.iter().min() == Some(&r.config.id);
        if successor && !voters.contains(&self.commit_ballot.node) {
            self.election_deadline = self.election_deadline.min(r.now);
        }
    }

    /// News from the leader of `ballot`; false if it is stale (below this node's promise).
    fn on_leader_news(
        &mut self,
        r: &mut Replica,
        ballot: Ballot,
        commit: Slot,
        truncate: Slot,
    ) -> bool {
        r.max_round = r.max_round.max(ballot.round);
        if ballot < r.acceptor.promised() {
            r.stats.ignored += 1;
            return false;
        }
        if self.own_ballot().is_some_and(|own| ballot > own) {
            self.step_down(r, Some(ballot.node));
        }
        if self.own_ballot().is_none() {
            self.reset_election_deadline(r);
            self.heard_commit(r, ballot, commit);
        }
        r.heard_truncate(truncate);
        true
    }

    fn on_nack(&mut self, r: &mut Replica, m: Nack) {
        r.max_round = r.max_round.max(m.promised.round);
        if self.own_ballot() == Some(m.ballot) && m.promised > m.ballot {
            r.stats.nacks_received += 1;
            r.stats.preemptions += 1;
            if matches!(self.role, MultiRole::Candidate(_)) {
                self.failed_campaigns += 1;
            }
            self.step_down(r, None);
            // Let the higher ballot's owner lead; campaign only after a backoff.
            let delay = r.backoff(self.failed_campaigns.max(1));
            self.election_deadline = self.election_deadline + delay;
        } else {
            r.stats.ignored += 1;
        }
    }

    fn on_promise(&mut self, r: &mut Replica, from: NodeId, m: Promise) {
        r.heard_executed(from, m.executed);
        let Some(index) = r.node_index(from) else {
            return;
        };
        match (&mut self.role, m.scope) {
            (MultiRole::Candidate(c), PrepareScope::From(_)) if c.ballot == m.ballot => {
                if m.log_start > c.from {
                    // This acceptor truncated slots we never learned: catch up first.
                    self.role = MultiRole::Follower;
                    self.reset_election_deadline(r);
                    r.maybe_catch_up(self, Some(from));
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
                if r.is_quorum(c.votes, c.from) {
                    self.become_leader(r);
                }
            }
            (MultiRole::Leader(l), PrepareScope::From(_)) if l.ballot == m.ballot => {
                // A promise after the election: the voters of a later configuration may need it.
                if m.log_start > l.next_slot {
                    // It truncated slots this leader never learned: it is behind.
                    r.stats.preemptions += 1;
                    self.step_down(r, None);
                    r.maybe_catch_up(self, Some(from));
                    return;
                }
                if !l.promised.insert(index) {
                    return;
                }
                for e in m.accepted.into_iter().filter(|e| e.slot >= l.next_slot) {
                    l.recover_upto = l.recover_upto.max(e.slot.next());
                    l.read_fence = l.read_fence.max(e.slot.next());
                    match l.recovered.get(&e.slot) {
                        Some((b, _)) if *b >= e.ballot => {}
                        _ => {
                            l.recovered.insert(e.slot, (e.ballot, e.value));
                        }
                    }
                }
            }
            (MultiRole::Leader(l), PrepareScope::Only(slot)) if l.ballot == m.ballot => {
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
                if r.is_quorum(*votes, slot) {
                    let adopted = best.take();
                    self.start_accept(r, slot, adopted);
                }
            }
            _ => r.stats.ignored += 1,
        }
    }

    /// Phase 1 succeeded: lead, re-proposing what was found and filling holes with no-ops.
    fn become_leader(&mut self, r: &mut Replica) {
        let MultiRole::Candidate(c) = std::mem::take(&mut self.role) else {
            return;
        };
        r.stats.elections_won += 1;
        self.failed_campaigns = 0;
        r.note_phase1_rtt(c.started);
        let last = [
            c.recovered.keys().next_back().copied(),
            r.log.highest_chosen(),
        ]
        .into_iter()
        .flatten()
        .max();
        let recover_upto = last.map_or(c.from, Slot::next).max(c.from);
        // Slots this node already executed are chosen; proposing them again is needless and, once
        // truncated, their values are gone. Peers that miss them catch up from us.
        self.role = MultiRole::Leader(Leadership {
            ballot: c.ballot,
            next_slot: c.from.max(r.log.executed()),
            inflight: BTreeMap::new(),
            commit_sent: Slot(0),
            next_heartbeat: r.now,
            lease_expiry: vec![Time::ZERO; r.config.nodes.len()],
            read_fence: recover_upto,
            from: c.from,
            promised: c.votes,
            recovered: c.recovered,
            recover_upto,
            awaiting_promises: false,
            prepare_sent: c.started,
            last_reconfig: None,
        });
        self.commit_ballot = c.ballot;
        self.fill(r);
        // Announce leadership at once so followers stop campaigning.
        self.timeout(r);
    }

    /// Proposes in the next slots as far as the membership rule lets it: a slot only once its
    /// voters are decided (this node executed the slot `window` below it) and a majority of
    /// them promised this ballot. Slots where phase 1 found values get those (or a no-op);
    /// after them, batches cut from the queue, into free window slots. A leader that is not a
    /// voter of its next slot steps down once its earlier slots are chosen.
    fn fill(&mut self, r: &mut Replica) {
        let skip_recovery = r.config.bug == Some(Bug::SkipRecovery);
        loop {
            let MultiRole::Leader(l) = &mut self.role else {
                return;
            };
            let slot = l.next_slot;
            let window = r.log.kv.membership().map_or(u64::MAX, |m| m.window());
            if slot.0 >= r.log.executed().0.saturating_add(window) {
                return;
            }
            if !r.voters_at(slot).contains(&r.config.id) {
                if l.inflight.is_empty() {
                    // Its last slots are chosen: say so before it falls silent, so the new
                    // voters execute them, learn they govern, and one takes over.
                    self.announce_commit(r);
                    self.step_down(r, None);
                }
                return;
            }
            if !r.is_quorum(l.promised, slot) {
                l.awaiting_promises = true;
                return;
            }
            l.awaiting_promises = false;
            if slot < l.recover_upto {
                let recovered = l.recovered.remove(&slot);
                let value = match (r.log.chosen(slot), recovered) {
                    (Some(v), _) => v.clone(),
                    (None, Some((_, v))) if !skip_recovery => v,
                    _ => Value::Noop,
                };
                l.next_slot = slot.next();
                self.propose(r, slot, value, true, false);
                continue;
            }
            if l.inflight.len() >= r.config.window {
                return;
            }
            if r.queue.is_empty() {
                // After a membership change this leader proposed, no-ops fill the slots up to
                // the one the change governs from: it takes effect without waiting for more
                // commands (and a leader it removes steps down).
                if l.last_reconfig
                    .is_some_and(|s| slot.0 < s.0.saturating_add(window))
                {
                    l.next_slot = slot.next();
                    let skip = r.config.skip_phase1;
                    self.propose(r, slot, Value::Noop, skip, false);
                    continue;
                }
                return;
            }
            // Would this batch be partial: the queue runs out before either limit is reached?
            let short = r.queue.len() < r.config.max_batch
                && r.queue.iter().map(|c| c.op.payload_len()).sum::<usize>()
                    < r.config.max_batch_bytes;
            let partial = l.inflight.values().filter(|p| p.partial).count();
            if short && partial >= r.config.partial_batches {
                return;
            }
            let batch = r.cut_batch();
            l.next_slot = slot.next();
            let skip = r.config.skip_phase1;
            self.propose(r, slot, Value::stamped(r.now, batch), skip, short);
        }
    }

    /// Puts `value` in `slot`: straight to phase 2 when phase 1 already covers it.
    /// `partial`: a batch cut short because the queue ran out (see `Config::partial_batches`).
    fn propose(
        &mut self,
        r: &mut Replica,
        slot: Slot,
        value: Value,
        phase1_done: bool,
        partial: bool,
    ) {
        let now = r.now;
        let commit = r.log.executed();
        let (explicit, heartbeat) = (r.config.explicit_commit, r.config.heartbeat_interval);
        let lease = r.config.reads == ReadMode::Lease;
        let MultiRole::Leader(l) = &mut self.role else {
            return;
        };
        let ballot = l.ballot;
        if value
            .commands()
            .iter()
            .any(|c| matches!(c.op, Op::Reconfigure { .. }))
        {
            l.last_reconfig = Some(slot);
        }
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
            if !lease {
                // The Accept tells followers the leader is alive; a lease needs heartbeats.
                l.next_heartbeat = now + heartbeat;
            }
            let accept = accept(r, ballot, slot, value);
            r.broadcast_all(accept);
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
            r.stats.phase1_rounds += 1;
            r.broadcast_prepare(
                self,
                Prepare {
                    ballot,
                    scope: PrepareScope::Only(slot),
                },
            );
        }
    }

    /// Per-slot phase 1 finished: propose the adopted value (our own commands go back to the
    /// queue if another value must win this slot).
    fn start_accept(&mut self, r: &mut Replica, slot: Slot, adopted: Option<(Ballot, Value)>) {
        let MultiRole::Leader(l) = &mut self.role else {
            return;
        };
        let Some(p) = l.inflight.get_mut(&slot) else {
            return;
        };
        if let Some((_, v)) = adopted {
            if v != p.value {
                let own = std::mem::replace(&mut p.value, v);
                for cmd in own.commands().iter().rev() {
                    r.queue.push_front(cmd.clone());
                }
            }
        }
        p.phase = Phase::Accepting {
            votes: Votes::default(),
        };
        p.sent_at = r.now;
        let (ballot, value) = (l.ballot, p.value.clone());
        let accept = accept(r, ballot, slot, value);
        r.broadcast_all(accept);
    }

    fn on_accepted(&mut self, r: &mut Replica, from: NodeId, m: Accepted) {
        r.heard_executed(from, m.executed);
        let Some(index) = r.node_index(from) else {
            return;
        };
        let MultiRole::Leader(l) = &mut self.role else {
            r.stats.ignored += 1;
            return;
        };
        if l.ballot != m.ballot {
            r.stats.ignored += 1;
            return;
        }
        let Some(p) = l.inflight.get_mut(&m.slot) else {
            return;
        };
        let Phase::Accepting { votes } = &mut p.phase else {
            return;
        };
        if !votes.insert(index) || !r.is_quorum(*votes, m.slot) {
            return;
        }
        let p = l.inflight.remove(&m.slot).expect("present above");
        r.learn(self, m.slot, p.value);
        r.execute_ready();
    }

    /// Tells followers about newly chosen slots, unless an Accept in this step carried it or
    /// one still in flight will: while slots are in flight, the Accept of the next batch (or
    /// the heartbeat, at the latest) carries the commit point, so a loaded leader sends no
    /// Commit messages at all. Followers do not answer clients, so learning a little later
    /// costs no latency, and it saves every node two packets per round.
    fn announce_commit(&mut self, r: &mut Replica) {
        let commit = r.log.executed();
        let truncate = r.truncation_point();
        let explicit = r.config.explicit_commit;
        let MultiRole::Leader(l) = &mut self.role else {
            return;
        };
        if commit > l.commit_sent && (explicit || l.inflight.is_empty()) {
            l.commit_sent = commit;
            if r.config.reads != ReadMode::Lease {
                l.next_heartbeat = r.now + r.config.heartbeat_interval;
            }
            let ballot = l.ballot;
            r.broadcast(Message::Commit(Commit {
                ballot,
                up_to: commit,
                truncate,
            }));
        }
    }
}

/// An Accept for `slot`, carrying the current commit point and truncation point.
fn accept(r: &mut Replica, ballot: Ballot, slot: Slot, value: Value) -> Message {
    let commit = r.log.executed();
    let truncate = r.truncation_point();
    Message::Accept(Accept {
        ballot,
        slot,
        value,
        commit,
        truncate,
    })
}
