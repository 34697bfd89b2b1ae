//! Counters a harness reports: what a node sent, how often it ran phase 1, how much contention
//! and backoff it saw, how it batched.

use std::time::Duration;

use crate::messages::MessageKind;

/// Counters of one node since it started. Cheap to copy; a harness diffs two copies.
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
    /// Requests refused because the queue was full ([`crate::Outcome::Overloaded`]).
    pub overloaded: u64,
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
}
