//! The safety checkers. They judge a run from what is *durable* and what clients *saw*, never from
//! what a node believes about itself.
//!
//! - **one-value-per-slot**: every durable `Record::Accept{slot, ballot, value}` of every acceptor
//!   is recorded for the whole run (truncation does not erase it here). A `(slot, ballot, value)`
//!   accepted by a majority is chosen; two different chosen values for one slot fail. Two
//!   different values accepted at the same ballot in one slot also fail (a ballot proposes one
//!   value per slot; the rest of Paxos's proof leans on it).
//! - **only-proposed-chosen**: every command in a chosen batch was issued by a client, with that
//!   exact operation; no-ops are always allowed.
//! - **executed-logs-agree**: each slot a node executes (from `drain_executed`) holds the chosen
//!   value of that slot, was chosen before it was executed, and comes after the node's previous
//!   one with no gap unless the node installed a snapshot (a restarted node starts again from its
//!   snapshot point).
//! - **exactly-once-replies**: the chosen log is replayed, as soon as a gap-free prefix exists,
//!   through an independent reference key-value model that deduplicates by (client, request).
//!   Every reply a client gets (other than `NotLeader`) must match it: a `Get` returns what the
//!   reference read at the command's first position in the log, a `Put`/`Delete` acknowledged is
//!   in the chosen log. A node whose next slot to execute equals the reference's must hold the
//!   same key-value map.
//! - **promise-monotonic**: a live node's `promised()` never goes down, and after a restart it is
//!   at least the highest `Record::Promise` that was durable before the crash. (A promise that was
//!   still being written when the node crashed may be forgotten: it was never revealed, since a
//!   Promise leaves the node only after its write.)
//! - **accept-below-promise**: no acceptor makes an Accept durable at a ballot below a promise it
//!   had already made durable (globally or for that slot).
//! - **persist-before-send**: a Promise leaves a node only once a promise at least that high is
//!   durable there, and an Accepted only once that (slot, ballot) accept is durable there.
//! - **real-time-reads** (runs with `reads = "lease"`): a `Get` answered from a leader's state,
//!   outside the log, must return the key's value after some prefix of the chosen log that holds
//!   every write whose reply a client had before the `Get` was invoked, and every write an earlier
//!   completed `Get` had seen. (Writes are numbered in log order; the check looks for the
//!   returned value among the key's values from that lower bound to the log's end.)
//! - **learners-never-vote**: a node configured as a learner never sends a Promise or an
//!   Accepted (and its accepts, had it any, never count towards a quorum, which is a majority of
//!   the voters).
//! - **lease-overlap** (runs with `reads = "lease"`): when a leader of ballot `b` answers a `Get`
//!   from its own state, fewer than a quorum of nodes may have made a promise above `b` durable.
//!   A quorum that did could have elected a newer leader and chosen writes the reader has not
//!   seen; this fails the moment two leases overlap, whether or not a write landed in the gap
//!   for real-time-reads to see.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use paxos::{
    Ballot, ClientId, Command, Durable, KvState, Message, NodeId, Op, Outcome, PrepareScope,
    ReconfigError, Record, RequestId, Slot, Time, Value,
};

/// Names a checker: what a failure is a failure of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Check {
    /// At most one value is chosen per slot (from the acceptors' durable state).
    OneValuePerSlot,
    /// Only proposed commands (or no-ops) are chosen.
    OnlyProposedChosen,
    /// Nodes execute chosen values, in slot order, and agree.
    ExecutedLogsAgree,
    /// Replies and state match a reference replay of the chosen log (exactly-once execution).
    ExactlyOnceReplies,
    /// A promise never goes backwards, across restarts too.
    PromiseMonotonic,
    /// No acceptor accepts below a ballot it promised.
    AcceptBelowPromise,
    /// Promise and Accepted messages leave a node only after what they report is durable.
    PersistBeforeSend,
    /// A `Get` answered outside the log (a lease read) sees every write that completed before it
    /// was invoked, and only values the log held.
    RealTimeReads,
    /// A leader answers a lease read only while no quorum has durably promised a newer ballot.
    LeaseOverlap,
    /// A learner never sends a Promise or an Accepted.
    LearnersNeverVote,
    /// Once faults stop, every outstanding command completes within the liveness bound.
    Liveness,
    /// Virtual time stopped advancing (a node asks to be woken at the same instant forever), or
    /// the run exceeded its step budget.
    Stuck,
    /// The core panicked (or rejected its configuration).
    Panic,
}

impl Check {
    /// Every check, in report order.
    pub const ALL: [Check; 13] = [
        Check::OneValuePerSlot,
        Check::OnlyProposedChosen,
        Check::ExecutedLogsAgree,
        Check::ExactlyOnceReplies,
        Check::PromiseMonotonic,
        Check::AcceptBelowPromise,
        Check::PersistBeforeSend,
        Check::RealTimeReads,
        Check::LeaseOverlap,
        Check::LearnersNeverVote,
        Check::Liveness,
        Check::Stuck,
        Check::Panic,
    ];

    /// The name printed in reports.
    pub fn name(self) -> &'static str {
        match self {
            Check::OneValuePerSlot => "one-value-per-slot",
            Check::OnlyProposedChosen => "only-proposed-chosen",
            Check::ExecutedLogsAgree => "executed-logs-agree",
            Check::ExactlyOnceReplies => "exactly-once-replies",
            Check::PromiseMonotonic => "promise-monotonic",
            Check::AcceptBelowPromise => "accept-below-promise",
            Check::PersistBeforeSend => "persist-before-send",
            Check::RealTimeReads => "real-time-reads",
            Check::LeaseOverlap => "lease-overlap",
            Check::LearnersNeverVote => "learners-never-vote",
            Check::Liveness => "liveness",
            Check::Stuck => "stuck",
            Check::Panic => "panic",
        }
    }

    /// Whether this is a safety property (as opposed to liveness, a stuck clock or a panic).
    pub fn is_safety(self) -> bool {
        !matches!(self, Check::Liveness | Check::Stuck | Check::Panic)
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A checker's verdict: which property broke and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The property.
    pub check: Check,
    /// What was seen, with the slots, ballots, nodes and requests involved.
    pub detail: String,
}

impl Violation {
    fn new(check: Check, detail: impl Into<String>) -> Self {
        Violation {
            check,
            detail: detail.into(),
        }
    }
}

/// Shorthand for a checker step.
pub type Verdict = Result<(), Violation>;

/// One `(ballot, value)` some acceptors accepted in a slot, and which (bit per node index).
#[derive(Clone, Debug)]
struct Vote {
    ballot: Ballot,
    value: Value,
    voters: u64,
}

/// What the checkers track about one node.
#[derive(Clone, Debug, Default)]
struct NodeView {
    /// The slot this node must execute next; `None` before it started.
    next_exec: Option<Slot>,
    /// Snapshots installed, as last seen (a gap in execution needs one more).
    snapshots_installed: u64,
    /// Highest `promised()` seen while it was alive (reset to the durable one on restart).
    promised_seen: Ballot,
    /// Highest `Record::Promise` made durable.
    durable_promise: Ballot,
}

/// Describes a value briefly: `noop` or the commands' (client, request) ids.
pub fn describe_value(value: &Value) -> String {
    match value {
        Value::Noop => "noop".to_string(),
        Value::Batch(cmds) => {
            let ids: Vec<String> = cmds
                .iter()
                .take(4)
                .map(|c| format!("c{}r{}", c.client.0, c.request.0))
                .collect();
            let more = if cmds.len() > 4 {
                format!(",+{}", cmds.len() - 4)
            } else {
                String::new()
            };
            format!("[{}{}]", ids.join(","), more)
        }
    }
}

/// An independent model of the replicated key-value store: a plain map, fed the chosen log in
/// slot order, deduplicating by (client, request) with no cache limit, and expiring client
/// sessions as `paxos::KvState` documents it: the clock is the highest batch stamp; at the
/// first batch at or past the next sweep time, every session silent for longer than the
/// timeout is dropped and the next sweep is a quarter timeout later; a command of an unknown
/// session created more than the timeout before the clock is answered `Expired` and not run.
#[derive(Clone, Debug)]
pub struct Reference {
    map: BTreeMap<Bytes, Bytes>,
    /// The outcome of each command at its first position in the log.
    results: HashMap<(ClientId, RequestId), (Slot, Outcome)>,
    next: Slot,
    /// Live sessions and when each was last active (never before its creation).
    sessions: HashMap<ClientId, Time>,
    session_timeout: Duration,
    clock: Time,
    next_sweep: Time,
    /// Writes (puts and deletes run, not duplicates) replayed so far: write `n` is the `n`th.
    writes: u64,
    /// Each write's number, by (client, request).
    write_no: HashMap<(ClientId, RequestId), u64>,
    /// Each key's values in log order: (number of the write that set it, the value after it).
    key_history: HashMap<Bytes, Vec<(u64, Option<Bytes>)>>,
    /// Multi-Paxos membership, modelled on its own: the cluster's nodes (a bit each, by index),
    /// the window, and the voters from each slot on. `None`: fixed voters.
    membership: Option<RefMembership>,
}

/// The reference's own model of who votes for which slot (see `paxos::membership`): a change
/// replayed in slot `s` governs from `s + window`.
#[derive(Clone, Debug)]
struct RefMembership {
    nodes: Vec<NodeId>,
    window: u64,
    /// `(from, voters as a bitmask)`, in slot order.
    configs: Vec<(Slot, u64)>,
    /// Every node that was a voter of any configuration so far.
    ever: u64,
}

impl RefMembership {
    /// The voters after `add` and `remove`, or why the change is refused (the core's reasons,
    /// checked in the same order, so the reply can be compared).
    fn changed(&self, add: &[NodeId], remove: &[NodeId]) -> Result<u64, ReconfigError> {
        let mut mask = self.configs.last().expect("never empty").1;
        for n in add {
            if remove.contains(n) {
                return Err(ReconfigError::Both(*n));
            }
            let Some(i) = self.nodes.iter().position(|x| x == n) else {
                return Err(ReconfigError::Unknown(*n));
            };
            if mask & (1 << i) != 0 {
                return Err(ReconfigError::AlreadyVoter(*n));
            }
            mask |= 1 << i;
        }
        for n in remove {
            match self.nodes.iter().position(|x| x == n) {
                Some(i) if mask & (1 << i) != 0 => mask &= !(1 << i),
                _ => return Err(ReconfigError::NotVoter(*n)),
            }
        }
        if mask == 0 {
            return Err(ReconfigError::NoVoters);
        }
        Ok(mask)
    }
}

impl Default for Reference {
    fn default() -> Self {
        Reference {
            map: BTreeMap::new(),
            results: HashMap::new(),
            next: Slot(0),
            sessions: HashMap::new(),
            session_timeout: paxos::DEFAULT_SESSION_TIMEOUT,
            clock: Time::ZERO,
            next_sweep: Time::ZERO,
            writes: 0,
            write_no: HashMap::new(),
            key_history: HashMap::new(),
            membership: None,
        }
    }
}

impl Reference {
    /// A reference whose log starts at `start`.
    pub fn new(start: Slot) -> Self {
        Reference {
            next: start,
            ..Reference::default()
        }
    }

    /// The next slot to replay.
    pub fn next(&self) -> Slot {
        self.next
    }

    /// The outcome a command got at its first position, and that slot.
    pub fn result(&self, client: ClientId, request: RequestId) -> Option<&(Slot, Outcome)> {
        self.results.get(&(client, request))
    }

    /// The voters of `slot` as a bitmask over the cluster's nodes, `all` if membership is fixed,
    /// or `None` while it is undecided (a change may still be replayed `window` slots below).
    fn voters_at(&self, slot: Slot, all: u64) -> Option<u64> {
        let Some(m) = &self.membership else {
            return Some(all);
        };
        if slot.0 >= self.next.0.saturating_add(m.window) {
            return None;
        }
        let i = m.configs.partition_point(|(from, _)| *from <= slot);
        Some(m.configs[i.saturating_sub(1)].1)
    }

    /// The voters after every change replayed so far (`None` if membership is fixed).
    pub fn latest_voters(&self) -> Option<Vec<NodeId>> {
        let m = self.membership.as_ref()?;
        let mask = m.configs.last().expect("never empty").1;
        Some(
            m.nodes
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, n)| *n)
                .collect(),
        )
    }

    /// Every node that was a voter of some configuration so far (`all` if membership is fixed).
    fn ever_voters(&self, all: u64) -> u64 {
        self.membership.as_ref().map_or(all, |m| m.ever)
    }

    /// The value of a key after every replayed slot.
    pub fn get(&self, key: &[u8]) -> Option<&Bytes> {
        self.map.get(key)
    }

    /// Replays every chosen slot from `next` on, as far as there is no gap.
    pub fn advance(&mut self, chosen: &BTreeMap<Slot, Value>) {
        while let Some(value) = chosen.get(&self.next) {
            if let Value::Batch(batch) = value {
                self.clock = self.clock.max(batch.stamp);
                if self.clock >= self.next_sweep {
                    let (clock, timeout) = (self.clock, self.session_timeout);
                    self.sessions
                        .retain(|_, last| clock.saturating_since(*last) <= timeout);
                    self.next_sweep = clock + (timeout / 4).max(Duration::from_millis(1));
                }
            }
            for cmd in value.commands() {
                let id = (cmd.client, cmd.request);
                if self.results.contains_key(&id) {
                    continue;
                }
                let known = self.sessions.contains_key(&cmd.client);
                if !known && cmd.client.created() + self.session_timeout < self.clock {
                    self.results.insert(id, (self.next, Outcome::Expired));
                    continue;
                }
                let last = self.sessions.entry(cmd.client).or_insert(Time::ZERO);
                *last = (*last).max(self.clock).max(cmd.client.created());
                let (key, after) = match &cmd.op {
                    Op::Reconfigure { add, remove } => {
                        let outcome = self.reconfigure(add, remove);
                        self.results.insert(id, (self.next, outcome));
                        continue;
                    }
                    Op::Get { key } => {
                        let value = self.map.get(key).cloned();
                        self.results.insert(id, (self.next, Outcome::Value(value)));
                        continue;
                    }
                    Op::Put { key, value } => {
                        self.map.insert(key.clone(), value.clone());
                        (key, Some(value.clone()))
                    }
                    Op::Delete { key } => {
                        self.map.remove(key);
                        (key, None)
                    }
                };
                self.writes += 1;
                self.write_no.insert(id, self.writes);
                self.key_history
                    .entry(key.clone())
                    .or_default()
                    .push((self.writes, after));
                let outcome = Outcome::Done;
                self.results.insert(id, (self.next, outcome));
            }
            self.next = self.next.next();
        }
    }

    /// A membership change replayed at `self.next`.
    fn reconfigure(&mut self, add: &[NodeId], remove: &[NodeId]) -> Outcome {
        let slot = self.next;
        let Some(m) = &mut self.membership else {
            return Outcome::Refused(ReconfigError::Unsupported.to_string());
        };
        match m.changed(add, remove) {
            Ok(mask) => {
                let from = Slot(slot.0 + m.window);
                m.configs.retain(|(f, _)| *f < from);
                m.configs.push((from, mask));
                m.ever |= mask;
                Outcome::Done
            }
            Err(e) => Outcome::Refused(e.to_string()),
        }
    }

    /// The values `key` held after any prefix of the replayed log with at least `from` writes.
    fn values_from(&self, key: &[u8], from: u64) -> Vec<Option<Bytes>> {
        let history = self.key_history.get(key).map_or(&[][..], Vec::as_slice);
        let before = history.partition_point(|(n, _)| *n <= from);
        let at_from = before.checked_sub(1).and_then(|i| history[i].1.clone());
        std::iter::once(at_from)
            .chain(history[before..].iter().map(|(_, v)| v.clone()))
            .collect()
    }

    /// The number of the write that put `value` under `key`, if one did (values are unique per
    /// write in the simulator's workload).
    fn writer_of(&self, key: &[u8], value: &Bytes) -> Option<u64> {
        self.key_history
            .get(key)?
            .iter()
            .find(|(_, v)| v.as_ref() == Some(value))
            .map(|(n, _)| *n)
    }

    /// Compares a node's state machine, taken after the same prefix, with the reference.
    fn differs_from(&self, kv: &KvState) -> Option<String> {
        if kv.len() != self.map.len() {
            return Some(format!(
                "node holds {} keys, the reference {}",
                kv.len(),
                self.map.len()
            ));
        }
        for (k, v) in &self.map {
            if kv.get(k) != Some(v) {
                return Some(format!(
                    "key {:?}: node has {:?}, the reference {:?}",
                    String::from_utf8_lossy(k),
                    kv.get(k).map(|b| String::from_utf8_lossy(b).into_owned()),
                    String::from_utf8_lossy(v)
                ));
            }
        }
        None
    }
}

/// Every checker's state for one run.
#[derive(Debug)]
pub struct Checkers {
    nodes: Vec<NodeId>,
    /// Every node, a bit per index.
    all: u64,
    /// The learners, a bit per node index: their votes never count.
    learners: u64,
    /// Unreplicated: the one node's execution defines the log (it has no acceptors).
    chosen_by_execution: bool,
    votes: BTreeMap<Slot, Vec<Vote>>,
    chosen: BTreeMap<Slot, Value>,
    /// The latest batch stamp of any chosen value.
    latest_stamp: Time,
    issued: HashMap<(ClientId, RequestId), Op>,
    /// When each command was invoked (`issued_at`).
    invoked: HashMap<(ClientId, RequestId), Time>,
    /// Whether `Get`s may be answered outside the log (`reads = "lease"`).
    local_reads: bool,
    /// Completions that bound later reads, in time order: (when, the highest write number that
    /// completed or was seen by then).
    completions: Vec<(Time, u64)>,
    views: Vec<NodeView>,
    reference: Reference,
}

impl Checkers {
    /// Checkers for a cluster of `nodes` whose log starts at `start`. With `chosen_by_execution`
    /// (the unreplicated baseline) a slot counts as chosen when the node executes it.
    pub fn new(nodes: Vec<NodeId>, start: Slot, chosen_by_execution: bool) -> Self {
        assert!(nodes.len() <= 64, "the vote bitmask holds 64 nodes");
        let all = if nodes.len() == 64 {
            u64::MAX
        } else {
            (1 << nodes.len()) - 1
        };
        let views = vec![NodeView::default(); nodes.len()];
        Checkers {
            nodes,
            all,
            learners: 0,
            chosen_by_execution,
            votes: BTreeMap::new(),
            chosen: BTreeMap::new(),
            issued: HashMap::new(),
            invoked: HashMap::new(),
            local_reads: false,
            completions: Vec::new(),
            views,
            reference: Reference::new(start),
            latest_stamp: Time::ZERO,
        }
    }

    /// Whether a session is expired by the rule of `paxos::KvState`, against the latest stamp
    /// of any chosen value (a node's clock is never past the stamps it executed, all chosen).
    fn session_expired(&self, client: ClientId) -> bool {
        client.created() + self.reference.session_timeout < self.latest_stamp
    }

    /// The nodes' session timeout, for the reference's model of session expiry.
    pub fn set_session_timeout(&mut self, timeout: Duration) {
        self.reference.session_timeout = timeout;
    }

    fn index(&self, node: NodeId) -> usize {
        self.nodes
            .iter()
            .position(|n| *n == node)
            .expect("checker asked about a node outside the cluster")
    }

    /// The chosen values known so far.
    pub fn chosen(&self) -> &BTreeMap<Slot, Value> {
        &self.chosen
    }

    /// The reference replay.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// These nodes are learners: quorums are majorities of the others, and a learner that sends
    /// a vote fails learners-never-vote.
    pub fn set_learners(&mut self, learners: &[NodeId]) {
        self.learners = learners.iter().fold(0, |m, l| m | 1 << self.index(*l));
        if let Some(m) = &mut self.reference.membership {
            let voters = self.all & !self.learners;
            m.configs = vec![(Slot(0), voters)];
            m.ever = voters;
        }
    }

    /// Multi-Paxos: the voters change by `Op::Reconfigure`, from `window` slots after the slot
    /// a change is chosen in. A slot's value is then chosen by a majority of *its* voters, and
    /// only a node that is a voter of some configuration may vote. Call before `set_learners`.
    pub fn track_membership(&mut self, window: u64) {
        let voters = self.all & !self.learners;
        self.reference.membership = Some(RefMembership {
            nodes: self.nodes.clone(),
            window,
            configs: vec![(Slot(0), voters)],
            ever: voters,
        });
    }

    /// Whether `voters` hold a majority of `slot`'s voters; `None` while those are undecided.
    fn majority_at(&self, slot: Slot, voters: u64) -> Option<bool> {
        let of = self.reference.voters_at(slot, self.all & !self.learners)?;
        Some((voters & of).count_ones() > of.count_ones() / 2)
    }

    /// `Get`s may be answered outside the log (`reads = "lease"`): check them by real time.
    pub fn allow_local_reads(&mut self) {
        self.local_reads = true;
    }

    /// `holder`, leader of `ballot`, answered `reads` more `Get`s from its own state: fewer than
    /// a quorum of nodes may have a durable promise above `ballot`.
    pub fn lease_reads(&self, holder: NodeId, ballot: Ballot, reads: u64) -> Verdict {
        // The voters of the reference's next slot (always decided).
        let next = self.reference.next();
        let mut mask = 0;
        let above: Vec<String> = self
            .nodes
            .iter()
            .zip(&self.views)
            .enumerate()
            .filter(|(_, (_, v))| v.durable_promise > ballot)
            .map(|(i, (n, v))| {
                mask |= 1 << i;
                format!("{n} promised {}", v.durable_promise)
            })
            .collect();
        if self.majority_at(next, mask) != Some(true) {
            return Ok(());
        }
        Err(Violation::new(
            Check::LeaseOverlap,
            format!(
                "{holder} answered {reads} lease read(s) at ballot {ballot} while a quorum had \
                 promised a newer ballot ({})",
                above.join(", ")
            ),
        ))
    }

    /// A client issued this command at `at` (so it may be chosen, and a read of it is bounded
    /// by what completed before).
    pub fn issued_at(&mut self, cmd: &Command, at: Time) {
        self.issued(cmd);
        self.invoked.insert((cmd.client, cmd.request), at);
    }

    /// A client issued this command (so it may be chosen).
    pub fn issued(&mut self, cmd: &Command) {
        self.issued
            .insert((cmd.client, cmd.request), cmd.op.clone());
    }

    /// A node (re)started and will execute `next` first: resets its execution order and checks
    /// that its promise is at least the highest durable one (`restart`: it crashed before).
    pub fn started(
        &mut self,
        node: NodeId,
        next: Slot,
        promised: Ballot,
        snapshots_installed: u64,
        restart: bool,
    ) -> Verdict {
        let i = self.index(node);
        let view = &mut self.views[i];
        view.next_exec = Some(next);
        view.snapshots_installed = snapshots_installed;
        if restart && promised < view.durable_promise {
            return Err(Violation::new(
                Check::PromiseMonotonic,
                format!(
                    "{node} restarted with promised() = {promised}, below its durable promise {}",
                    view.durable_promise
                ),
            ));
        }
        view.promised_seen = promised;
        Ok(())
    }

    /// A live node reports its promise after a step: it must not have gone down.
    pub fn promise_now(&mut self, node: NodeId, promised: Ballot) -> Verdict {
        let i = self.index(node);
        let view = &mut self.views[i];
        if promised < view.promised_seen {
            return Err(Violation::new(
                Check::PromiseMonotonic,
                format!(
                    "{node}'s promised() went down from {} to {promised}",
                    view.promised_seen
                ),
            ));
        }
        view.promised_seen = promised;
        Ok(())
    }

    /// A record of `node` became durable; `durable` is the node's durable state *before* it.
    pub fn durable(&mut self, node: NodeId, durable: &Durable, record: &Record) -> Verdict {
        let i = self.index(node);
        match record {
            Record::Promise(b) => {
                let view = &mut self.views[i];
                view.durable_promise = view.durable_promise.max(*b);
                Ok(())
            }
            Record::SlotPromise(..) | Record::Snapshot { .. } => Ok(()),
            Record::Accept {
                slot,
                ballot,
                value,
            } => {
                let slot_promise = durable
                    .slot_promises
                    .get(slot)
                    .copied()
                    .unwrap_or(Ballot::ZERO);
                let promise = durable.promised.max(slot_promise);
                if *ballot < promise && *slot >= durable.log_start() {
                    return Err(Violation::new(
                        Check::AcceptBelowPromise,
                        format!("{node} made Accept({slot} at {ballot} = {}) durable after promising {promise}", describe_value(value)),
                    ));
                }
                self.vote(i, *slot, *ballot, value)
            }
        }
    }

    /// `node` sends `msg`; `durable` is its durable state now. Promise and Accepted report
    /// durable state, so they must not overtake the write.
    pub fn outgoing(&self, node: NodeId, durable: &Durable, msg: &Message) -> Verdict {
        let vote = matches!(msg, Message::Promise(_) | Message::Accepted(_));
        let ever = self.reference.ever_voters(self.all & !self.learners);
        if vote && ever & (1 << self.index(node)) == 0 {
            return Err(Violation::new(
                Check::LearnersNeverVote,
                format!(
                    "learner {node}, a voter of no configuration, sent {}",
                    crate::trace::MsgBrief::of(msg)
                ),
            ));
        }
        match msg {
            Message::Promise(p) => {
                let promised = match p.scope {
                    PrepareScope::From(_) => durable.promised,
                    PrepareScope::Only(slot) => durable.promised.max(
                        durable
                            .slot_promises
                            .get(&slot)
                            .copied()
                            .unwrap_or(Ballot::ZERO),
                    ),
                };
                if promised < p.ballot {
                    return Err(Violation::new(
                        Check::PersistBeforeSend,
                        format!(
                            "{node} sent Promise({}) while its durable promise is {promised}",
                            p.ballot
                        ),
                    ));
                }
                Ok(())
            }
            Message::Accepted(a) => {
                let i = self.index(node);
                let durable_vote = self.votes.get(&a.slot).is_some_and(|votes| {
                    votes
                        .iter()
                        .any(|v| v.ballot == a.ballot && v.voters & (1 << i) != 0)
                });
                if !durable_vote {
                    return Err(Violation::new(
                        Check::PersistBeforeSend,
                        format!(
                            "{node} sent Accepted({} at {}) before that accept was durable",
                            a.slot, a.ballot
                        ),
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn vote(&mut self, voter: usize, slot: Slot, ballot: Ballot, value: &Value) -> Verdict {
        let votes = self.votes.entry(slot).or_default();
        if let Some(other) = votes
            .iter()
            .find(|v| v.ballot == ballot && v.value != *value)
        {
            return Err(Violation::new(
                Check::OneValuePerSlot,
                format!(
                    "two values accepted in {slot} at the same ballot {ballot}: {} (by {}) and {} (by {})",
                    describe_value(&other.value),
                    voters(&self.nodes, other.voters),
                    describe_value(value),
                    self.nodes[voter]
                ),
            ));
        }
        let vote = match votes.iter_mut().find(|v| v.ballot == ballot) {
            Some(v) => v,
            None => {
                votes.push(Vote {
                    ballot,
                    value: value.clone(),
                    voters: 0,
                });
                votes.last_mut().expect("just pushed")
            }
        };
        vote.voters |= 1 << voter;
        self.settle(slot)
    }

    /// Whether a value at `slot` reached a majority of the slot's voters, once those are
    /// decided: it is chosen, and must be the only value ever chosen there.
    fn settle(&mut self, slot: Slot) -> Verdict {
        let Some(votes) = self.votes.get(&slot) else {
            return Ok(());
        };
        let won: Vec<(Ballot, Value, u64)> = votes
            .iter()
            .filter(|v| self.majority_at(slot, v.voters) == Some(true))
            .map(|v| (v.ballot, v.value.clone(), v.voters))
            .collect();
        for (at, value, voted) in won {
            match self.chosen.get(&slot) {
                Some(existing) if *existing == value => {}
                Some(existing) => {
                    let earlier = self.votes[&slot]
                        .iter()
                        .find(|v| {
                            v.value == *existing && self.majority_at(slot, v.voters) == Some(true)
                        })
                        .map_or_else(
                            || "?".to_string(),
                            |v| format!("{} by {}", v.ballot, voters(&self.nodes, v.voters)),
                        );
                    return Err(Violation::new(
                        Check::OneValuePerSlot,
                        format!(
                            "{slot} chosen twice: {} (at {earlier}) and {} (at {at} by {})",
                            describe_value(existing),
                            describe_value(&value),
                            voters(&self.nodes, voted)
                        ),
                    ));
                }
                None => self.choose(slot, value)?,
            }
        }
        Ok(())
    }

    fn choose(&mut self, slot: Slot, value: Value) -> Verdict {
        for cmd in value.commands() {
            if self.issued.get(&(cmd.client, cmd.request)) != Some(&cmd.op) {
                return Err(Violation::new(
                    Check::OnlyProposedChosen,
                    format!(
                        "{slot} chose c{}r{} {:?}, which no client issued",
                        cmd.client.0, cmd.request.0, cmd.op
                    ),
                ));
            }
        }
        if let Value::Batch(b) = &value {
            self.latest_stamp = self.latest_stamp.max(b.stamp);
        }
        self.chosen.insert(slot, value);
        let before = self.reference.next();
        self.reference.advance(&self.chosen);
        let Some(window) = self.reference.membership.as_ref().map(|m| m.window) else {
            return Ok(());
        };
        // Replaying decided the voters of more slots: votes there may now make a majority.
        let (lo, hi) = (
            Slot(before.0 + window),
            Slot(self.reference.next().0 + window),
        );
        let undecided: Vec<Slot> = self.votes.range(lo..hi).map(|(s, _)| *s).collect();
        for s in undecided {
            self.settle(s)?;
        }
        Ok(())
    }

    /// `node` executed `value` in `slot`; `snapshots_installed` is its counter after the step.
    pub fn executed(
        &mut self,
        node: NodeId,
        slot: Slot,
        value: &Value,
        snapshots_installed: u64,
    ) -> Verdict {
        let i = self.index(node);
        if self.chosen_by_execution && !self.chosen.contains_key(&slot) {
            self.choose(slot, value.clone())?;
        }
        let view = &mut self.views[i];
        if let Some(expected) = view.next_exec {
            if slot < expected {
                return Err(Violation::new(
                    Check::ExecutedLogsAgree,
                    format!("{node} executed {slot} after it had reached {expected} (out of order or twice)"),
                ));
            }
            if slot > expected && snapshots_installed == view.snapshots_installed {
                return Err(Violation::new(
                    Check::ExecutedLogsAgree,
                    format!("{node} executed {slot} but skipped from {expected} without installing a snapshot"),
                ));
            }
        }
        view.next_exec = Some(slot.next());
        view.snapshots_installed = snapshots_installed;
        match self.chosen.get(&slot) {
            None => Err(Violation::new(
                Check::ExecutedLogsAgree,
                format!(
                    "{node} executed {slot} = {} before any value was chosen there",
                    describe_value(value)
                ),
            )),
            Some(chosen) if chosen != value => Err(Violation::new(
                Check::ExecutedLogsAgree,
                format!(
                    "{node} executed {slot} = {} but {} was chosen",
                    describe_value(value),
                    describe_value(chosen)
                ),
            )),
            Some(_) => Ok(()),
        }
    }

    /// A client received a reply at `now`.
    pub fn reply(
        &mut self,
        client: ClientId,
        request: RequestId,
        outcome: &Outcome,
        now: Time,
    ) -> Verdict {
        if let Err(v) = self.judge_reply(client, request, outcome) {
            match self.local_read(client, request, outcome) {
                None => return Err(v),
                Some(Err(v)) => return Err(v),
                Some(Ok(())) => {}
            }
        }
        self.completed(client, request, outcome, now);
        Ok(())
    }

    /// A `Get` answered with a value the log does not give it, when reads may be answered
    /// outside the log: the real-time check (`None` if it does not apply).
    fn local_read(
        &self,
        client: ClientId,
        request: RequestId,
        outcome: &Outcome,
    ) -> Option<Verdict> {
        let Some(Op::Get { key }) = self.issued.get(&(client, request)) else {
            return None;
        };
        if !self.local_reads {
            return None;
        }
        let seen = match outcome {
            Outcome::Value(seen) => seen,
            // A lease read leaves nothing in the reply cache, so a retry of one can find it
            // below the cache's window: `Expired` claims nothing about the value.
            Outcome::Expired => return Some(Ok(())),
            _ => return None,
        };
        let invoked = self
            .invoked
            .get(&(client, request))
            .copied()
            .unwrap_or_default();
        let before = self.completions.partition_point(|(t, _)| *t < invoked);
        let from = before.checked_sub(1).map_or(0, |i| self.completions[i].1);
        if self.reference.values_from(key, from).contains(seen) {
            return Some(Ok(()));
        }
        Some(Err(Violation::new(
            Check::RealTimeReads,
            format!(
                "c{}r{} Get({:?}) invoked at {invoked} answered {}, but {from} writes had completed (or been seen) by then, and after them the key held only {:?}",
                client.0,
                request.0,
                String::from_utf8_lossy(key),
                show_outcome(outcome),
                self.reference
                    .values_from(key, from)
                    .iter()
                    .map(|v| v.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()))
                    .collect::<Vec<_>>()
            ),
        )))
    }

    /// Records a completion that bounds later reads: an acknowledged write, or the write a read
    /// saw.
    fn completed(&mut self, client: ClientId, request: RequestId, outcome: &Outcome, now: Time) {
        let no = match (self.issued.get(&(client, request)), outcome) {
            (Some(Op::Put { .. } | Op::Delete { .. }), Outcome::Done) => {
                self.reference.write_no.get(&(client, request)).copied()
            }
            (Some(Op::Get { key }), Outcome::Value(Some(v))) => self.reference.writer_of(key, v),
            _ => None,
        };
        if let Some(no) = no {
            let high = self.completions.last().map_or(0, |(_, n)| *n).max(no);
            self.completions.push((now, high));
        }
    }

    /// The reply judged against the log alone.
    fn judge_reply(&self, client: ClientId, request: RequestId, outcome: &Outcome) -> Verdict {
        // Neither says anything about execution: the request was not taken.
        if matches!(outcome, Outcome::NotLeader { .. } | Outcome::Overloaded) {
            return Ok(());
        }
        let Some(op) = self.issued.get(&(client, request)) else {
            return Err(Violation::new(
                Check::ExactlyOnceReplies,
                format!(
                    "reply to c{}r{}, which was never issued",
                    client.0, request.0
                ),
            ));
        };
        let Some((slot, expected)) = self.reference.result(client, request) else {
            if *outcome == Outcome::Expired && self.session_expired(client) {
                // Answered from the node's own state: its session was created more than the
                // timeout before a stamp the node executed, so it is expired for good.
                return Ok(());
            }
            return Err(Violation::new(
                Check::ExactlyOnceReplies,
                format!(
                    "c{}r{} {op:?} answered {outcome:?}, but it is not in the chosen log (replayed up to {})",
                    client.0,
                    request.0,
                    self.reference.next()
                ),
            ));
        };
        // `Expired` means "executed long ago, reply evicted from the cache": fine for a command
        // that is in the chosen log (it is, or we would not be here), whether or not the client
        // still waits for it. A lie about a command never executed fails above.
        let good = matches!(outcome, Outcome::Expired) || outcome == expected;
        if good {
            Ok(())
        } else {
            Err(Violation::new(
                Check::ExactlyOnceReplies,
                format!(
                    "c{}r{} {op:?} answered {}, but the reference replay gives {} (first chosen in {slot})",
                    client.0,
                    request.0,
                    show_outcome(outcome),
                    show_outcome(expected)
                ),
            ))
        }
    }

    /// If `node` has executed exactly the prefix the reference has replayed, its key-value map
    /// must equal the reference's.
    pub fn compare_state(&self, node: NodeId, next: Slot, kv: &KvState) -> Verdict {
        if next != self.reference.next() {
            return Ok(());
        }
        match self.reference.differs_from(kv) {
            None => Ok(()),
            Some(diff) => Err(Violation::new(
                Check::ExactlyOnceReplies,
                format!(
                    "{node}'s state after slots below {next} differs from the reference: {diff}"
                ),
            )),
        }
    }
}

fn voters(nodes: &[NodeId], mask: u64) -> String {
    let names: Vec<String> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, n)| n.to_string())
        .collect();
    format!("{{{}}}", names.join(","))
}

/// A reply outcome in a few characters.
pub fn show_outcome(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Value(Some(v)) => format!("Value({:?})", String::from_utf8_lossy(v)),
        Outcome::Value(None) => "Value(none)".to_string(),
        Outcome::Done => "Done".to_string(),
        Outcome::NotLeader { leader: Some(l) } => format!("NotLeader({l})"),
        Outcome::NotLeader { leader: None } => "NotLeader(?)".to_string(),
        Outcome::Expired => "Expired".to_string(),
        Outcome::Overloaded => "Overloaded".to_string(),
        Outcome::Refused(why) => format!("Refused({why})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(i: u32) -> NodeId {
        NodeId(i)
    }

    fn b(round: u64, node: u32) -> Ballot {
        Ballot::new(round, NodeId(node))
    }

    fn put(client: u64, request: u64, key: &'static str, value: &'static str) -> Command {
        Command {
            client: ClientId(client.into()),
            request: RequestId(request),
            op: Op::Put {
                key: Bytes::from_static(key.as_bytes()),
                value: Bytes::from_static(value.as_bytes()),
            },
        }
    }

    fn get(client: u64, request: u64, key: &'static str) -> Command {
        Command {
            client: ClientId(client.into()),
            request: RequestId(request),
            op: Op::Get {
                key: Bytes::from_static(key.as_bytes()),
            },
        }
    }

    fn batch(cmds: &[Command]) -> Value {
        Value::batch(cmds.to_vec())
    }

    fn accept(slot: u64, ballot: Ballot, value: &Value) -> Record {
        Record::Accept {
            slot: Slot(slot),
            ballot,
            value: value.clone(),
        }
    }

    fn three() -> Checkers {
        Checkers::new(vec![n(0), n(1), n(2)], Slot(0), false)
    }

    /// Makes the record durable at these nodes, with empty durable state before.
    fn accept_at(
        c: &mut Checkers,
        nodes: &[u32],
        slot: u64,
        ballot: Ballot,
        value: &Value,
    ) -> Verdict {
        for &i in nodes {
            c.durable(n(i), &Durable::default(), &accept(slot, ballot, value))?;
        }
        Ok(())
    }

    #[test]
    fn a_majority_chooses_and_a_minority_does_not() {
        let mut c = three();
        let v = batch(&[put(1, 1, "k", "a")]);
        c.issued(&put(1, 1, "k", "a"));
        accept_at(&mut c, &[0], 0, b(1, 0), &v).unwrap();
        assert!(c.chosen().is_empty());
        // The same acceptor again does not make a majority.
        accept_at(&mut c, &[0], 0, b(1, 0), &v).unwrap();
        assert!(c.chosen().is_empty());
        accept_at(&mut c, &[2], 0, b(1, 0), &v).unwrap();
        assert_eq!(c.chosen().get(&Slot(0)), Some(&v));
    }

    #[test]
    fn two_chosen_values_in_one_slot_fail_but_the_same_value_at_higher_ballots_is_fine() {
        let mut c = three();
        let (x, y) = (put(1, 1, "k", "a"), put(2, 1, "k", "b"));
        c.issued(&x);
        c.issued(&y);
        let (vx, vy) = (batch(&[x]), batch(&[y]));
        accept_at(&mut c, &[0, 1], 3, b(1, 0), &vx).unwrap();
        // Re-proposing the chosen value at a higher ballot is what Paxos does.
        accept_at(&mut c, &[1, 2], 3, b(2, 1), &vx).unwrap();
        // A different value accepted by a minority is harmless...
        accept_at(&mut c, &[2], 3, b(3, 2), &vy).unwrap();
        // ...but by a majority it is a second chosen value.
        let err = accept_at(&mut c, &[0], 3, b(3, 2), &vy).unwrap_err();
        assert_eq!(err.check, Check::OneValuePerSlot);
        assert!(err.detail.contains("#3 chosen twice"), "{}", err.detail);
    }

    #[test]
    fn a_lease_read_fails_once_a_quorum_durably_promised_a_newer_ballot() {
        let mut c = three();
        let promise = Record::Promise;
        for i in 0..3 {
            c.durable(n(i), &Durable::default(), &promise(b(1, 0)))
                .unwrap();
        }
        c.lease_reads(n(0), b(1, 0), 1).unwrap();
        // One node promising a newer ballot is what a lease allows (it was outside the quorum).
        c.durable(n(2), &Durable::default(), &promise(b(2, 2)))
            .unwrap();
        c.lease_reads(n(0), b(1, 0), 1).unwrap();
        // A second one makes a quorum that could elect n2 while n0 still reads under its lease.
        c.durable(n(1), &Durable::default(), &promise(b(2, 2)))
            .unwrap();
        let err = c.lease_reads(n(0), b(1, 0), 3).unwrap_err();
        assert_eq!(err.check, Check::LeaseOverlap);
        assert!(
            err.detail
                .contains("n0 answered 3 lease read(s) at ballot 1.0"),
            "{}",
            err.detail
        );
        assert!(
            err.detail.contains("n1 promised 2.2, n2 promised 2.2"),
            "{}",
            err.detail
        );
        // The newer leader reading at its own ballot is fine.
        c.lease_reads(n(2), b(2, 2), 1).unwrap();
    }

    #[test]
    fn two_values_at_one_ballot_fail() {
        let mut c = three();
        let (x, y) = (put(1, 1, "k", "a"), put(2, 1, "k", "b"));
        accept_at(&mut c, &[0], 0, b(1, 0), &batch(&[x])).unwrap();
        let err = accept_at(&mut c, &[1], 0, b(1, 0), &batch(&[y])).unwrap_err();
        assert_eq!(err.check, Check::OneValuePerSlot);
    }

    #[test]
    fn only_issued_commands_and_noops_may_be_chosen() {
        let mut c = three();
        accept_at(&mut c, &[0, 1], 0, b(1, 0), &Value::Noop).unwrap();
        let forged = put(9, 9, "k", "forged");
        let err = accept_at(
            &mut c,
            &[0, 1],
            1,
            b(1, 0),
            &batch(std::slice::from_ref(&forged)),
        )
        .unwrap_err();
        assert_eq!(err.check, Check::OnlyProposedChosen);
        // The same ids with a different operation are not the issued command either.
        let mut c = three();
        c.issued(&put(9, 9, "k", "real"));
        let err = accept_at(&mut c, &[0, 1], 0, b(1, 0), &batch(&[forged])).unwrap_err();
        assert_eq!(err.check, Check::OnlyProposedChosen);
    }

    #[test]
    fn accepting_below_a_durable_promise_fails() {
        let mut c = three();
        let mut d = Durable::default();
        d.apply(&Record::Promise(b(5, 1)));
        let err = c
            .durable(n(0), &d, &accept(0, b(4, 2), &Value::Noop))
            .unwrap_err();
        assert_eq!(err.check, Check::AcceptBelowPromise);
        c.durable(n(0), &d, &accept(0, b(5, 1), &Value::Noop))
            .unwrap();
        let mut d = Durable::default();
        d.apply(&Record::SlotPromise(Slot(2), b(3, 0)));
        c.durable(n(1), &d, &accept(1, b(1, 0), &Value::Noop))
            .unwrap();
        assert_eq!(
            c.durable(n(1), &d, &accept(2, b(1, 0), &Value::Noop))
                .unwrap_err()
                .check,
            Check::AcceptBelowPromise
        );
    }

    #[test]
    fn executed_values_must_be_chosen_in_order_without_gaps() {
        let mut c = three();
        c.started(n(0), Slot(0), Ballot::ZERO, 0, false).unwrap();
        let err = c.executed(n(0), Slot(0), &Value::Noop, 0).unwrap_err();
        assert_eq!(
            err.check,
            Check::ExecutedLogsAgree,
            "executed before chosen"
        );

        let mut c = three();
        c.started(n(0), Slot(0), Ballot::ZERO, 0, false).unwrap();
        for s in 0..4 {
            accept_at(&mut c, &[1, 2], s, b(1, 1), &Value::Noop).unwrap();
        }
        c.executed(n(0), Slot(0), &Value::Noop, 0).unwrap();
        assert_eq!(
            c.executed(n(0), Slot(0), &Value::Noop, 0)
                .unwrap_err()
                .check,
            Check::ExecutedLogsAgree
        );
        assert!(c
            .executed(n(0), Slot(2), &Value::Noop, 0)
            .unwrap_err()
            .detail
            .contains("skipped"));
        // With a snapshot installed in between, jumping ahead is fine.
        c.executed(n(0), Slot(3), &Value::Noop, 1).unwrap();

        c.issued(&put(1, 1, "k", "v"));
        let wrong = batch(&[put(1, 1, "k", "v")]);
        c.started(n(1), Slot(0), Ballot::ZERO, 0, false).unwrap();
        assert!(c
            .executed(n(1), Slot(0), &wrong, 0)
            .unwrap_err()
            .detail
            .contains("was chosen"));
    }

    #[test]
    fn a_restart_starts_execution_again_from_its_snapshot_point() {
        let mut c = three();
        for s in 0..3 {
            accept_at(&mut c, &[0, 1], s, b(1, 0), &Value::Noop).unwrap();
        }
        c.started(n(2), Slot(0), Ballot::ZERO, 0, false).unwrap();
        for s in 0..3 {
            c.executed(n(2), Slot(s), &Value::Noop, 0).unwrap();
        }
        c.started(n(2), Slot(1), Ballot::ZERO, 0, true).unwrap();
        c.executed(n(2), Slot(1), &Value::Noop, 0).unwrap();
    }

    #[test]
    fn unreplicated_execution_defines_the_log() {
        let mut c = Checkers::new(vec![n(0)], Slot(0), true);
        let x = put(1, 1, "k", "a");
        c.issued(&x);
        c.started(n(0), Slot(0), Ballot::ZERO, 0, false).unwrap();
        c.executed(n(0), Slot(0), &batch(std::slice::from_ref(&x)), 0)
            .unwrap();
        c.reply(ClientId(1), RequestId(1), &Outcome::Done, Time::ZERO)
            .unwrap();
        // A restarted node that re-executes slot 0 with something else lost acknowledged state.
        c.started(n(0), Slot(0), Ballot::ZERO, 0, true).unwrap();
        assert_eq!(
            c.executed(n(0), Slot(0), &Value::Noop, 0)
                .unwrap_err()
                .check,
            Check::ExecutedLogsAgree
        );
    }

    #[test]
    fn replies_are_checked_against_the_reference_replay() {
        let mut c = three();
        let cmds = [
            put(1, 1, "k", "a"),
            get(2, 1, "k"),
            put(1, 2, "k", "b"),
            get(2, 2, "k"),
        ];
        for cmd in &cmds {
            c.issued(cmd);
        }
        // Slot 1 is chosen first: nothing replays until slot 0 is.
        accept_at(&mut c, &[0, 1], 1, b(1, 0), &batch(&cmds[2..])).unwrap();
        assert_eq!(
            c.reply(ClientId(1), RequestId(2), &Outcome::Done, Time::ZERO)
                .unwrap_err()
                .check,
            Check::ExactlyOnceReplies
        );
        // Slot 0 holds the first put and get; the put is retried inside slot 1 (a duplicate).
        accept_at(
            &mut c,
            &[0, 1],
            0,
            b(1, 0),
            &batch(&[cmds[0].clone(), cmds[1].clone(), cmds[0].clone()]),
        )
        .unwrap();
        assert_eq!(c.reference().next(), Slot(2));
        c.reply(ClientId(1), RequestId(1), &Outcome::Done, Time::ZERO)
            .unwrap();
        c.reply(
            ClientId(2),
            RequestId(1),
            &Outcome::Value(Some(Bytes::from_static(b"a"))),
            Time::ZERO,
        )
        .unwrap();
        c.reply(
            ClientId(2),
            RequestId(2),
            &Outcome::Value(Some(Bytes::from_static(b"b"))),
            Time::ZERO,
        )
        .unwrap();
        let stale = c
            .reply(
                ClientId(2),
                RequestId(2),
                &Outcome::Value(Some(Bytes::from_static(b"a"))),
                Time::ZERO,
            )
            .unwrap_err();
        assert_eq!(stale.check, Check::ExactlyOnceReplies);
        assert!(
            stale.detail.contains("reference replay gives"),
            "{}",
            stale.detail
        );
        c.reply(
            ClientId(2),
            RequestId(2),
            &Outcome::NotLeader { leader: None },
            Time::ZERO,
        )
        .unwrap();
        // Expired ("executed long ago, reply evicted") is fine for an executed command, and a
        // lie for one that is not in the chosen log.
        c.reply(ClientId(1), RequestId(1), &Outcome::Expired, Time::ZERO)
            .unwrap();
        c.issued(&put(3, 1, "k", "z"));
        let lie = c
            .reply(ClientId(3), RequestId(1), &Outcome::Expired, Time::ZERO)
            .unwrap_err();
        assert!(
            lie.detail.contains("not in the chosen log"),
            "{}",
            lie.detail
        );
        assert!(
            c.reply(ClientId(7), RequestId(1), &Outcome::Done, Time::ZERO)
                .is_err(),
            "never issued"
        );
    }

    #[test]
    fn the_reference_executes_a_duplicated_command_once() {
        let mut r = Reference::new(Slot(0));
        let mut chosen = BTreeMap::new();
        let a = put(1, 1, "k", "a");
        chosen.insert(Slot(0), batch(std::slice::from_ref(&a)));
        chosen.insert(Slot(1), batch(&[put(1, 2, "k", "b")]));
        // A late retry of request 1 must not bring "a" back.
        chosen.insert(Slot(2), batch(&[a, get(3, 1, "k")]));
        r.advance(&chosen);
        assert_eq!(r.next(), Slot(3));
        assert_eq!(r.get(b"k").map(|v| v.as_ref()), Some(&b"b"[..]));
        assert_eq!(
            r.result(ClientId(1), RequestId(1)).map(|(s, _)| *s),
            Some(Slot(0))
        );
        assert_eq!(
            r.result(ClientId(3), RequestId(1)).map(|(_, o)| o.clone()),
            Some(Outcome::Value(Some(Bytes::from_static(b"b"))))
        );
    }

    #[test]
    fn node_state_is_compared_when_it_is_at_the_reference_point() {
        let mut c = three();
        let x = put(1, 1, "k", "a");
        c.issued(&x);
        accept_at(
            &mut c,
            &[0, 1],
            0,
            b(1, 0),
            &batch(std::slice::from_ref(&x)),
        )
        .unwrap();
        let mut kv = KvState::new(16, paxos::DEFAULT_SESSION_TIMEOUT);
        // Behind the reference: not compared.
        c.compare_state(n(0), Slot(0), &kv).unwrap();
        assert_eq!(
            c.compare_state(n(0), Slot(1), &kv).unwrap_err().check,
            Check::ExactlyOnceReplies
        );
        kv.apply(&x);
        c.compare_state(n(0), Slot(1), &kv).unwrap();
    }

    #[test]
    fn promise_and_accepted_must_not_overtake_their_writes() {
        use paxos::{Accepted, Promise};
        let mut c = three();
        let promise = |scope| {
            Message::Promise(Promise {
                ballot: b(2, 1),
                scope,
                log_start: Slot(0),
                accepted: vec![],
                executed: Slot(0),
            })
        };
        let mut d = Durable::default();
        let early = c
            .outgoing(n(0), &d, &promise(PrepareScope::From(Slot(0))))
            .unwrap_err();
        assert_eq!(early.check, Check::PersistBeforeSend);
        d.apply(&Record::SlotPromise(Slot(4), b(2, 1)));
        c.outgoing(n(0), &d, &promise(PrepareScope::Only(Slot(4))))
            .unwrap();
        assert!(c
            .outgoing(n(0), &d, &promise(PrepareScope::Only(Slot(5))))
            .is_err());
        d.apply(&Record::Promise(b(3, 0)));
        c.outgoing(n(0), &d, &promise(PrepareScope::From(Slot(0))))
            .unwrap();

        let accepted = Message::Accepted(Accepted {
            ballot: b(2, 1),
            slot: Slot(1),
            executed: Slot(0),
        });
        assert_eq!(
            c.outgoing(n(1), &d, &accepted).unwrap_err().check,
            Check::PersistBeforeSend
        );
        accept_at(&mut c, &[2], 1, b(2, 1), &Value::Noop).unwrap();
        assert!(
            c.outgoing(n(1), &d, &accepted).is_err(),
            "another acceptor's write does not count"
        );
        accept_at(&mut c, &[1], 1, b(2, 1), &Value::Noop).unwrap();
        c.outgoing(n(1), &d, &accepted).unwrap();
    }

    #[test]
    fn promises_must_not_go_backwards() {
        let mut c = three();
        c.started(n(0), Slot(0), Ballot::ZERO, 0, false).unwrap();
        c.promise_now(n(0), b(2, 1)).unwrap();
        assert_eq!(
            c.promise_now(n(0), b(1, 2)).unwrap_err().check,
            Check::PromiseMonotonic
        );
        c.durable(n(1), &Durable::default(), &Record::Promise(b(3, 0)))
            .unwrap();
        c.durable(n(1), &Durable::default(), &Record::Promise(b(2, 0)))
            .unwrap();
        assert_eq!(
            c.started(n(1), Slot(0), b(2, 2), 0, true)
                .unwrap_err()
                .check,
            Check::PromiseMonotonic
        );
        c.started(n(1), Slot(0), b(3, 0), 0, true).unwrap();
    }
}
