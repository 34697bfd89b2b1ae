//! Counters a harness reports: what a node sent, how often it ran phase 1, how much contention
//! and backoff it saw, how it batched.

use std::time::Duration;

use crate::messages::MessageKind;

/// How many buckets [`Stats::attempts`] has: attempts 1 to 7 each, and 8 or more.
pub const ATTEMPT_BUCKETS: usize = 8;

/// Counters of one node since it started, and one gauge ([`Stats::phase1_rtt`]). Cheap to
/// copy; a harness diffs two copies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages sent, by kind, in [`MessageKind::ALL`] order (a broadcast counts once per peer).
    pub sent: [u64; MessageKind::ALL.len()],
    /// Phase-1 rounds started (Multi-Paxos campaigns and per-slot prepares, Basic Paxos attempts).
    pub phase1_rounds: u64,
    /// Nacks received for this node's own ballots.
    pub nacks_received: u64,
    /// Times this node's proposal was preempted (Nack, or its slot chosen for another value).
    pub preemptions: u64,
    /// Total backoff this node waited before retries.
    pub backoff_time: Duration,
    /// Slots this node proposed with a batch of commands.
    pub batches: u64,
    /// Commands in those batches (mean batch size = `batched_commands / batches`).
    pub batched_commands: u64,
    /// Largest batch proposed.
    pub max_batch_seen: u64,
    /// Slots this node learned as chosen.
    pub slots_chosen: u64,
    /// No-op slots this node executed.
    pub noops: u64,
    /// Commands executed (duplicates excluded).
    pub commands_executed: u64,
    /// Elections this node won (Multi-Paxos).
    pub elections_won: u64,
    /// Campaigns this node started (Multi-Paxos).
    pub campaigns: u64,
    /// Accepts re-sent after `retry_timeout`.
    pub retransmits: u64,
    /// Snapshots taken (log truncations).
    pub snapshots_taken: u64,
    /// Snapshots installed from a peer.
    pub snapshots_installed: u64,
    /// Messages ignored: stale ballots, unknown senders, duplicates.
    pub ignored: u64,
    /// Multi-Paxos with `reads = "lease"`: `Get`s the leader answered from its own state under a
    /// lease, without a slot.
    pub local_reads: u64,
    /// Membership changes (`Op::Reconfigure`) this node executed, refused ones included.
    pub reconfigurations: u64,
    /// Multi-Paxos with `reads = "lease"`: Prepares this node refused to promise because it
    /// granted a lease to another ballot (or restarted less than a lease ago).
    pub lease_refusals: u64,
    /// Requests refused because the queue was full ([`crate::Outcome::Overloaded`]).
    pub overloaded: u64,
    /// Basic Paxos: commands this node proposed that were chosen in its own batch, by the
    /// attempt that got them chosen: `attempts[k - 1]` for attempt k = 1..=7, and
    /// `attempts[7]` for 8 or more. A command retried after a preemption or a timeout takes one
    /// more attempt; the sum is the commands this node got decided.
    pub attempts: [u64; ATTEMPT_BUCKETS],
    /// A gauge, not a counter: the node's smoothed phase-1 round trip (from sending a Prepare
    /// to its quorum of Promises, or to the first Nack), `None` before the first one. Backoff
    /// given in round trips (`BackoffSpan::Rtts`) scales with it.
    pub phase1_rtt: Option<Duration>,
}

impl Stats {
    /// Messages sent of one kind.
    pub fn sent_of(&self, kind: MessageKind) -> u64 {
        self.sent[kind as usize]
    }

    /// All messages sent.
    pub fn sent_total(&self) -> u64 {
        self.sent.iter().sum()
    }

    /// Commands this node got decided in its own batches (the sum of [`Stats::attempts`]).
    pub fn decided_own(&self) -> u64 {
        self.attempts.iter().sum()
    }
}
