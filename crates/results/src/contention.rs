//! What a point's nodes counted while its load ran (`counters` in points.jsonl): each node's
//! counter deltas, the cluster's totals, and the figures per command that show contention,
//! livelock and backoff; and whether completions stalled long enough to call it a livelock
//! (`stall`).
//!
//! The counters come from each node's status (the core's `paxos::Stats`, and the runtime's wire
//! counters: peer messages received by kind, bytes, datagrams and writes of its peer and client
//! connections), read just before the point's load starts and just after it ends: they cover
//! the warm-up, the measured window and the drain. The per-command figures therefore divide by commands counted over the same span
//! (see [`Contention::commands_from`]), not by the window's completions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::availability::FaultWindow;
use crate::timeline::TimelineRow;

/// How many attempt buckets a node reports: attempts 1 to 7 each, then 8 or more.
pub const ATTEMPT_BUCKETS: usize = 8;

/// One node's counters: a cumulative reading, or the difference of two.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterValues {
    /// Messages sent, by kind name (`prepare`, `promise`, `accept`, `accepted`, `commit`,
    /// `nack`, `heartbeat`, `learn`, `catch_up`, `snapshot`); a broadcast counts once per peer.
    #[serde(default)]
    pub sent: BTreeMap<String, u64>,
    /// Phase-1 rounds started (Multi-Paxos campaigns and per-slot prepares, Basic Paxos
    /// attempts).
    #[serde(default)]
    pub phase1_rounds: u64,
    /// Nacks received for the node's own ballots.
    #[serde(default)]
    pub nacks_received: u64,
    /// Times the node's proposal was preempted (a Nack, or its slot chosen for another value).
    #[serde(default)]
    pub preemptions: u64,
    /// Time the node waited in backoff before retries, µs.
    #[serde(default)]
    pub backoff_us: u64,
    /// Slots the node proposed with a batch of commands.
    #[serde(default)]
    pub batches: u64,
    /// Commands in those batches.
    #[serde(default)]
    pub batched_commands: u64,
    /// Largest batch proposed since the node started (a high-water mark: never differenced).
    #[serde(default)]
    pub max_batch_seen: u64,
    /// Slots the node learned as chosen.
    #[serde(default)]
    pub slots_chosen: u64,
    /// No-op slots executed.
    #[serde(default)]
    pub noops: u64,
    /// Commands executed (duplicates excluded).
    #[serde(default)]
    pub commands_executed: u64,
    /// Elections won (Multi-Paxos).
    #[serde(default)]
    pub elections_won: u64,
    /// Campaigns started (Multi-Paxos).
    #[serde(default)]
    pub campaigns: u64,
    /// Accepts re-sent after the retry timeout.
    #[serde(default)]
    pub retransmits: u64,
    /// Snapshots taken.
    #[serde(default)]
    pub snapshots_taken: u64,
    /// Snapshots installed from a peer.
    #[serde(default)]
    pub snapshots_installed: u64,
    /// Messages ignored (stale ballots, unknown senders, duplicates).
    #[serde(default)]
    pub ignored: u64,
    /// Requests refused because the node's queue was full.
    #[serde(default)]
    pub overloaded: u64,
    /// `Get`s the leader answered from its own state under a lease (`reads = "lease"`).
    #[serde(default)]
    pub local_reads: u64,
    /// Prepares refused inside a lease the node granted (`reads = "lease"`).
    #[serde(default)]
    pub lease_refusals: u64,
    /// Basic Paxos: commands the node got decided in its own batch, by the attempt that got
    /// them chosen: index k-1 for attempt k = 1..=7, index 7 for 8 or more.
    #[serde(default)]
    pub attempts: Vec<u64>,
    /// A gauge: the node's smoothed phase-1 round trip at the reading (µs); `None` before its
    /// first phase 1 (or when the core does not measure it).
    #[serde(default)]
    pub phase1_rtt_us: Option<u64>,
    /// Peer messages received, by kind name (the names of `sent`), counted by the node's
    /// runtime as it decoded them; empty from a node that does not report them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub received: BTreeMap<String, u64>,
    /// What the node's connections to and from other nodes carried; `None` from a node that
    /// does not report it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_traffic: Option<TrafficValues>,
    /// What its connections from clients (load generators, status reads) carried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_traffic: Option<TrafficValues>,
}

/// What one class of a node's connections carried (`wire::Traffic`): on QUIC UDP payload bytes
/// and datagrams, and quinn's send operations; on TCP the TLS record bytes the kernel counted
/// and the stream writes, with no datagrams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficValues {
    /// Bytes sent.
    #[serde(default)]
    pub bytes_sent: u64,
    /// Bytes received.
    #[serde(default)]
    pub bytes_received: u64,
    /// Write operations (QUIC: UDP send operations; TCP: stream writes).
    #[serde(default)]
    pub writes: u64,
    /// UDP datagrams sent; `None` on TCP.
    #[serde(default)]
    pub datagrams_sent: Option<u64>,
    /// UDP datagrams received; `None` on TCP.
    #[serde(default)]
    pub datagrams_received: Option<u64>,
}

impl TrafficValues {
    fn counts(&self) -> [u64; 5] {
        [
            self.bytes_sent,
            self.bytes_received,
            self.writes,
            self.datagrams_sent.unwrap_or(0),
            self.datagrams_received.unwrap_or(0),
        ]
    }

    /// Whether some count is below `before`'s.
    fn went_down(&self, before: &TrafficValues) -> bool {
        self.counts()
            .iter()
            .zip(before.counts())
            .any(|(a, b)| *a < b)
    }

    /// `self - before`, for a later reading that did not go down.
    fn minus(&self, before: &TrafficValues) -> TrafficValues {
        let d = |a: Option<u64>, b: Option<u64>| a.map(|a| a.saturating_sub(b.unwrap_or(0)));
        TrafficValues {
            bytes_sent: self.bytes_sent.saturating_sub(before.bytes_sent),
            bytes_received: self.bytes_received.saturating_sub(before.bytes_received),
            writes: self.writes.saturating_sub(before.writes),
            datagrams_sent: d(self.datagrams_sent, before.datagrams_sent),
            datagrams_received: d(self.datagrams_received, before.datagrams_received),
        }
    }

    /// The sum (saturating); a datagram count is `None` only where both are.
    fn plus(&self, other: &TrafficValues) -> TrafficValues {
        let s = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.saturating_add(b)),
            (a, None) => a,
            (None, b) => b,
        };
        TrafficValues {
            bytes_sent: self.bytes_sent.saturating_add(other.bytes_sent),
            bytes_received: self.bytes_received.saturating_add(other.bytes_received),
            writes: self.writes.saturating_add(other.writes),
            datagrams_sent: s(self.datagrams_sent, other.datagrams_sent),
            datagrams_received: s(self.datagrams_received, other.datagrams_received),
        }
    }
}

/// `a + b` where either may be missing.
fn plus_traffic(a: Option<TrafficValues>, b: Option<TrafficValues>) -> Option<TrafficValues> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.plus(&b)),
        (a, None) => a,
        (None, b) => b,
    }
}

impl CounterValues {
    /// The scalar counters, by name, for the arithmetic below (`max_batch_seen` and the gauge
    /// excluded).
    fn counters_mut(&mut self) -> [&mut u64; 18] {
        [
            &mut self.phase1_rounds,
            &mut self.nacks_received,
            &mut self.preemptions,
            &mut self.backoff_us,
            &mut self.batches,
            &mut self.batched_commands,
            &mut self.slots_chosen,
            &mut self.noops,
            &mut self.commands_executed,
            &mut self.elections_won,
            &mut self.campaigns,
            &mut self.retransmits,
            &mut self.snapshots_taken,
            &mut self.snapshots_installed,
            &mut self.ignored,
            &mut self.overloaded,
            &mut self.local_reads,
            &mut self.lease_refusals,
        ]
    }

    fn counters(&self) -> [u64; 18] {
        let mut c = self.clone();
        c.counters_mut().map(|v| *v)
    }

    /// Every message sent, of any kind.
    pub fn sent_total(&self) -> u64 {
        self.sent.values().fold(0, |a, &b| a.saturating_add(b))
    }

    /// Every peer message received, of any kind.
    pub fn received_total(&self) -> u64 {
        self.received.values().fold(0, |a, &b| a.saturating_add(b))
    }

    /// Commands decided in the node's own batches: the sum of `attempts`.
    pub fn decided_own(&self) -> u64 {
        self.attempts.iter().fold(0, |a, &b| a.saturating_add(b))
    }

    /// What the node counted from `before` to `self` (a later reading). The second member is
    /// true when some counter went down: the node restarted in between, so its counters started
    /// again from zero, and the delta is then `self` alone (what it counted since the restart;
    /// what it counted before is lost). `max_batch_seen` and `phase1_rtt_us` are `self`'s.
    pub fn since(&self, before: &CounterValues) -> (CounterValues, bool) {
        let went_down = self
            .counters()
            .iter()
            .zip(before.counters())
            .any(|(a, b)| *a < b)
            || before
                .sent
                .iter()
                .any(|(k, b)| self.sent.get(k).copied().unwrap_or(0) < *b)
            || before
                .attempts
                .iter()
                .enumerate()
                .any(|(i, b)| self.attempts.get(i).copied().unwrap_or(0) < *b)
            || before
                .received
                .iter()
                .any(|(k, b)| self.received.get(k).copied().unwrap_or(0) < *b)
            || [
                (&self.peer_traffic, &before.peer_traffic),
                (&self.client_traffic, &before.client_traffic),
            ]
            .iter()
            .any(|(a, b)| match (a, b) {
                (Some(a), Some(b)) => a.went_down(b),
                _ => false,
            });
        if went_down {
            return (self.clone(), true);
        }
        let mut d = self.clone();
        for (v, b) in d.counters_mut().into_iter().zip(before.counters()) {
            *v -= b;
        }
        for (k, v) in d.sent.iter_mut() {
            *v -= before.sent.get(k).copied().unwrap_or(0);
        }
        for (i, v) in d.attempts.iter_mut().enumerate() {
            *v -= before.attempts.get(i).copied().unwrap_or(0);
        }
        for (k, v) in d.received.iter_mut() {
            *v -= before.received.get(k).copied().unwrap_or(0);
        }
        // A class the earlier reading lacks is counted from zero, like a missing kind above.
        let minus = |a: Option<TrafficValues>, b: Option<TrafficValues>| {
            a.map(|a| a.minus(&b.unwrap_or_default()))
        };
        d.peer_traffic = minus(self.peer_traffic, before.peer_traffic);
        d.client_traffic = minus(self.client_traffic, before.client_traffic);
        (d, false)
    }

    /// Adds `other`'s counters to these (saturating); `max_batch_seen` is the larger, the
    /// gauge is dropped (a sum of round trips means nothing).
    fn add(&mut self, other: &CounterValues) {
        for (v, o) in self.counters_mut().into_iter().zip(other.counters()) {
            *v = v.saturating_add(o);
        }
        for (k, o) in &other.sent {
            let v = self.sent.entry(k.clone()).or_insert(0);
            *v = v.saturating_add(*o);
        }
        if self.attempts.len() < other.attempts.len() {
            self.attempts.resize(other.attempts.len(), 0);
        }
        for (v, o) in self.attempts.iter_mut().zip(&other.attempts) {
            *v = v.saturating_add(*o);
        }
        self.max_batch_seen = self.max_batch_seen.max(other.max_batch_seen);
        self.phase1_rtt_us = None;
        for (k, o) in &other.received {
            let v = self.received.entry(k.clone()).or_insert(0);
            *v = v.saturating_add(*o);
        }
        self.peer_traffic = plus_traffic(self.peer_traffic, other.peer_traffic);
        self.client_traffic = plus_traffic(self.client_traffic, other.client_traffic);
    }
}

/// One node's part of a point's [`Contention`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeCounters {
    /// The node's id.
    pub id: u32,
    /// What it counted during the point (the later reading minus the earlier); `None` when
    /// either status could not be read (see `error`): such a node is left out of the totals,
    /// never counted as zero.
    #[serde(default)]
    pub delta: Option<CounterValues>,
    /// Why the node's counters are missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// True when a counter went down between the readings (the node restarted): `delta` is
    /// then what it counted since the restart.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restarted: bool,
}

/// The figures per command of a point (each `None` when there were no commands to divide
/// by, or, for the attempt figures, when no node reported attempts).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PerCommand {
    /// Phase-1 rounds started, over every node, per command.
    pub phase1_rounds: Option<f64>,
    /// Nacks received, over every node, per command.
    pub nacks: Option<f64>,
    /// Preemptions, over every node, per command.
    pub preemptions: Option<f64>,
    /// Backoff waited, over every node, per command (µs).
    pub backoff_us: Option<f64>,
    /// Messages of every kind sent by every node, per command.
    pub messages_sent: Option<f64>,
    /// Share of the commands decided in their proposer's own batch that took more than one
    /// attempt (0..=1).
    pub retried_fraction: Option<f64>,
    /// Median attempts of those commands (8 means 8 or more).
    pub attempts_p50: Option<u32>,
    /// 99th percentile of their attempts (8 means 8 or more).
    pub attempts_p99: Option<u32>,
    /// The most attempts any of them took (8 means 8 or more).
    pub attempts_max: Option<u32>,
    /// Messages sent by every node, per command, by kind name (kinds never sent left out).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sent_by_kind: BTreeMap<String, f64>,
    /// Peer messages received by every node, per command (`None` when no node reported
    /// what it received).
    #[serde(default)]
    pub messages_received: Option<f64>,
    /// The same by kind name (kinds never received left out).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub received_by_kind: BTreeMap<String, f64>,
    /// Bytes every node sent to its peers, per command (each byte counted once: what one
    /// node sends another receives).
    #[serde(default)]
    pub peer_bytes: Option<f64>,
    /// UDP datagrams every node sent to its peers, per command; `None` on TCP.
    #[serde(default)]
    pub peer_datagrams: Option<f64>,
    /// Peer write operations of every node (QUIC: UDP sends; TCP: stream writes), per command.
    #[serde(default)]
    pub peer_writes: Option<f64>,
    /// Bytes between the nodes and their clients, both ways (requests in, replies out, and
    /// the status reads), summed over nodes, per command.
    #[serde(default)]
    pub client_bytes: Option<f64>,
}

/// What a point's nodes counted while its load ran: `counters` in points.jsonl.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contention {
    /// Each node's deltas, by id.
    pub nodes: Vec<NodeCounters>,
    /// Nodes whose counters could not be read (their ids); the totals leave them out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<u32>,
    /// The sum of the readable nodes' deltas (`max_batch_seen` the largest, no round trip).
    pub total: CounterValues,
    /// The denominator of `per_command`.
    pub commands: u64,
    /// Where `commands` comes from: `decided_own` (the sum over nodes of the commands decided
    /// in their proposer's own batch: Basic Paxos), else `executed` (the most commands any node
    /// executed: every replica executes every command), else `completed` (the point's completed
    /// operations, which cover the measured window only), else `none`. The first two cover the
    /// same span as the numerators (warm-up, window and drain).
    pub commands_from: String,
    /// The figures per command.
    pub per_command: PerCommand,
    /// The attempts distribution summed over nodes (index k-1: attempt k; index 7: 8 or more).
    pub attempts: Vec<u64>,
    /// Each node's phase-1 round-trip estimate at the end of the point (µs), by node id, for
    /// the nodes that had one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub phase1_rtt_us: BTreeMap<String, u64>,
}

/// One node's readings before and after a point's load, or why they could not be had.
pub type Readings = Result<(CounterValues, CounterValues), String>;

impl Contention {
    /// The figures of one point from each node's two readings (an error: they could not be
    /// had, and why) and its completed operations.
    pub fn compute(readings: Vec<(u32, Readings)>, completed: u64) -> Contention {
        let mut nodes = Vec::new();
        for (id, r) in readings {
            nodes.push(match r {
                Ok((before, after)) => {
                    let (delta, restarted) = after.since(&before);
                    NodeCounters {
                        id,
                        delta: Some(delta),
                        error: None,
                        restarted,
                    }
                }
                Err(why) => NodeCounters {
                    id,
                    delta: None,
                    error: Some(why),
                    restarted: false,
                },
            });
        }
        nodes.sort_by_key(|n| n.id);
        let unreadable = nodes
            .iter()
            .filter(|n| n.delta.is_none())
            .map(|n| n.id)
            .collect();
        let mut total = CounterValues::default();
        let mut phase1_rtt_us = BTreeMap::new();
        let mut executed = 0;
        for n in &nodes {
            if let Some(d) = &n.delta {
                total.add(d);
                executed = executed.max(d.commands_executed);
                if let Some(rtt) = d.phase1_rtt_us {
                    phase1_rtt_us.insert(n.id.to_string(), rtt);
                }
            }
        }
        let decided = total.decided_own();
        let (commands, commands_from) = if decided > 0 {
            (decided, "decided_own")
        } else if executed > 0 {
            (executed, "executed")
        } else if completed > 0 {
            (completed, "completed")
        } else {
            (0, "none")
        };
        let per = |x: u64| (commands > 0).then(|| x as f64 / commands as f64);
        let attempts = total.attempts.clone();
        let per_command = PerCommand {
            phase1_rounds: per(total.phase1_rounds),
            nacks: per(total.nacks_received),
            preemptions: per(total.preemptions),
            backoff_us: per(total.backoff_us),
            messages_sent: per(total.sent_total()),
            retried_fraction: (decided > 0).then(|| {
                (decided - attempts.first().copied().unwrap_or(0)) as f64 / decided as f64
            }),
            attempts_p50: attempts_quantile(&attempts, 0.5),
            attempts_p99: attempts_quantile(&attempts, 0.99),
            attempts_max: attempts.iter().rposition(|&n| n > 0).map(|i| i as u32 + 1),
            sent_by_kind: by_kind(&total.sent, commands),
            messages_received: if total.received.is_empty() {
                None
            } else {
                per(total.received_total())
            },
            received_by_kind: by_kind(&total.received, commands),
            peer_bytes: total.peer_traffic.and_then(|t| per(t.bytes_sent)),
            peer_datagrams: total
                .peer_traffic
                .and_then(|t| t.datagrams_sent)
                .and_then(per),
            peer_writes: total.peer_traffic.and_then(|t| per(t.writes)),
            client_bytes: total
                .client_traffic
                .and_then(|t| per(t.bytes_sent.saturating_add(t.bytes_received))),
        };
        Contention {
            nodes,
            unreadable,
            total,
            commands,
            commands_from: commands_from.into(),
            per_command,
            attempts,
            phase1_rtt_us,
        }
    }
}

/// Each kind's count per command, for the kinds counted at least once; empty without commands.
fn by_kind(counts: &BTreeMap<String, u64>, commands: u64) -> BTreeMap<String, f64> {
    if commands == 0 {
        return BTreeMap::new();
    }
    counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| (k.clone(), *n as f64 / commands as f64))
        .collect()
}

/// The attempts at quantile `q` of a distribution by attempt bucket: the smallest attempt
/// count k with at least `q` of the commands at k attempts or fewer; `None` when it is empty.
fn attempts_quantile(attempts: &[u64], q: f64) -> Option<u32> {
    let total: u64 = attempts.iter().fold(0, |a, &b| a.saturating_add(b));
    if total == 0 {
        return None;
    }
    let need = (q * total as f64).ceil().max(1.0);
    let mut seen = 0u64;
    for (i, &n) in attempts.iter().enumerate() {
        seen = seen.saturating_add(n);
        if seen as f64 >= need {
            return Some(i as u32 + 1);
        }
    }
    Some(attempts.len() as u32)
}

/// Whether a point's completions stalled: `stall` in points.jsonl.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stall {
    /// The longest run of 100 ms timeline buckets with no completion, anywhere in the measured
    /// window (ms).
    pub longest_ms: u64,
    /// Where it starts (ms from the start of the window); `None` when nothing stalled.
    #[serde(default)]
    pub longest_start_ms: Option<u64>,
    /// The longest such run that overlaps no fault (ms): what the livelock rule looks at.
    pub longest_outside_faults_ms: u64,
    /// The experiment's `livelock_after_s`, in ms.
    pub threshold_ms: u64,
    /// True when completions stopped for at least `threshold_ms` outside any fault while load
    /// was offered, and the point is not already marked as an election (`leader_changed`).
    pub livelock: bool,
}

impl Stall {
    /// The stall figures of a timeline. `load_offered`: whether the point offered load through
    /// its window (an open-loop rate above 0, or closed-loop clients); `election`: whether the
    /// point is already marked as an election, which then explains the stall.
    pub fn compute(
        rows: &[TimelineRow],
        faults: &[FaultWindow],
        threshold_ms: u64,
        load_offered: bool,
        election: bool,
    ) -> Stall {
        let mut rows: Vec<&TimelineRow> = rows.iter().collect();
        rows.sort_by_key(|r| r.t_ms);
        let mut gaps: Vec<(u64, u64)> = Vec::new();
        let mut open: Option<(u64, u64)> = None;
        for r in &rows {
            if r.completions == 0 {
                open = Some(match open {
                    Some((start, _)) => (start, r.end_ms()),
                    None => (r.t_ms, r.end_ms()),
                });
            } else if let Some(g) = open.take() {
                gaps.push(g);
            }
        }
        gaps.extend(open);
        let len = |g: &(u64, u64)| g.1.saturating_sub(g.0);
        let longest = gaps.iter().max_by_key(|g| (len(g), std::cmp::Reverse(g.0)));
        let overlaps_fault = |g: &(u64, u64)| {
            faults.iter().any(|f| {
                (g.0 as f64) < f.end_ms.unwrap_or(f64::INFINITY) && (g.1 as f64) > f.start_ms
            })
        };
        let longest_outside_faults_ms = gaps
            .iter()
            .filter(|g| !overlaps_fault(g))
            .map(len)
            .max()
            .unwrap_or(0);
        Stall {
            longest_ms: longest.map_or(0, len),
            longest_start_ms: longest.map(|g| g.0),
            longest_outside_faults_ms,
            threshold_ms,
            livelock: load_offered
                && !election
                && threshold_ms > 0
                && longest_outside_faults_ms >= threshold_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(phase1: u64, nacks: u64, attempts: [u64; 8], executed: u64) -> CounterValues {
        CounterValues {
            sent: [("prepare".to_string(), phase1 * 2), ("accept".into(), 10)]
                .into_iter()
                .collect(),
            phase1_rounds: phase1,
            nacks_received: nacks,
            preemptions: nacks / 2,
            backoff_us: nacks * 1000,
            commands_executed: executed,
            attempts: attempts.to_vec(),
            phase1_rtt_us: Some(400 + phase1),
            max_batch_seen: 3,
            ..CounterValues::default()
        }
    }

    #[test]
    fn deltas_and_figures_per_command_use_the_decided_commands() {
        // Node 0: 100 phase-1 rounds, 20 nacks, 60 commands decided (40 first try, 15 on the
        // second, 5 on the 8th or later) during the point; node 1: 50 rounds, 0 nacks, 40
        // decided at once; node 2 unreadable.
        let n0 = (
            reading(10, 4, [1, 1, 0, 0, 0, 0, 0, 0], 5),
            reading(110, 24, [41, 16, 0, 0, 0, 0, 0, 5], 105),
        );
        let n1 = (
            reading(0, 0, [0; 8], 0),
            reading(50, 0, [40, 0, 0, 0, 0, 0, 0, 0], 100),
        );
        let c = Contention::compute(
            vec![(1, Ok(n1)), (0, Ok(n0)), (2, Err("timed out".into()))],
            7,
        );
        assert_eq!(c.nodes.iter().map(|n| n.id).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(c.unreadable, [2]);
        assert_eq!(c.nodes[2].error.as_deref(), Some("timed out"));
        assert!(c.nodes[2].delta.is_none(), "missing, not zero");
        let d0 = c.nodes[0].delta.as_ref().unwrap();
        assert_eq!((d0.phase1_rounds, d0.nacks_received), (100, 20));
        assert_eq!(d0.sent["prepare"], 200);
        assert_eq!(d0.attempts, [40, 15, 0, 0, 0, 0, 0, 5]);
        assert_eq!(
            d0.phase1_rtt_us,
            Some(510),
            "the gauge is the later reading"
        );
        assert_eq!(d0.max_batch_seen, 3, "a high-water mark is not differenced");
        assert_eq!(c.total.phase1_rounds, 150);
        assert_eq!((c.commands, c.commands_from.as_str()), (100, "decided_own"));
        let p = &c.per_command;
        assert_eq!(p.phase1_rounds, Some(1.5));
        assert_eq!(p.nacks, Some(0.2));
        assert_eq!(p.preemptions, Some(0.1));
        assert_eq!(p.backoff_us, Some(200.0));
        assert_eq!(
            p.messages_sent,
            Some(3.0),
            "200 + 100 prepares, 0 more accepts"
        );
        assert_eq!(p.retried_fraction, Some(0.2));
        assert_eq!(c.attempts, [80, 15, 0, 0, 0, 0, 0, 5]);
        assert_eq!(p.attempts_p50, Some(1));
        assert_eq!(p.attempts_p99, Some(8));
        assert_eq!(p.attempts_max, Some(8));
        assert_eq!(c.phase1_rtt_us["0"], 510);
        assert_eq!(c.phase1_rtt_us["1"], 450);
    }

    #[test]
    fn without_attempts_the_commands_are_the_executed_ones_then_the_completed() {
        let r = |p1, ex| (reading(0, 0, [0; 8], 0), reading(p1, 0, [0; 8], ex));
        let c = Contention::compute(vec![(0, Ok(r(4, 200))), (1, Ok(r(2, 180)))], 150);
        assert_eq!((c.commands, c.commands_from.as_str()), (200, "executed"));
        assert_eq!(c.per_command.phase1_rounds, Some(0.03));
        assert_eq!(c.per_command.retried_fraction, None);
        assert_eq!(c.per_command.attempts_p50, None);
        let c = Contention::compute(vec![(0, Ok(r(4, 0)))], 8);
        assert_eq!((c.commands, c.commands_from.as_str()), (8, "completed"));
        assert_eq!(c.per_command.phase1_rounds, Some(0.5));
        let c = Contention::compute(vec![(0, Err("down".into()))], 0);
        assert_eq!((c.commands, c.commands_from.as_str()), (0, "none"));
        assert_eq!(c.per_command, PerCommand::default());
    }

    #[test]
    fn a_counter_that_went_down_means_a_restart() {
        let before = reading(10, 4, [5, 0, 0, 0, 0, 0, 0, 0], 50);
        let after = reading(3, 0, [2, 0, 0, 0, 0, 0, 0, 0], 8);
        let (d, restarted) = after.since(&before);
        assert!(restarted);
        assert_eq!(d, after, "what it counted since the restart");
        let (d, restarted) = before.since(&before);
        assert!(!restarted);
        assert_eq!((d.phase1_rounds, d.decided_own()), (0, 0));
    }

    fn rows(completions: &[u64]) -> Vec<TimelineRow> {
        completions
            .iter()
            .enumerate()
            .map(|(i, &c)| TimelineRow {
                t_ms: i as u64 * 100,
                width_ms: 100,
                completions: c,
                errors: 0,
                timeouts: 0,
                p50_us: None,
                p99_us: None,
            })
            .collect()
    }

    /// 3 s of 100 ms buckets with completions, but none in the 12 buckets from 1.0 s.
    fn gap_of_1200_ms() -> Vec<TimelineRow> {
        let mut c = vec![50u64; 30];
        for b in &mut c[10..22] {
            *b = 0;
        }
        rows(&c)
    }

    #[test]
    fn a_gap_of_1_2_s_under_load_is_a_livelock() {
        let s = Stall::compute(&gap_of_1200_ms(), &[], 1000, true, false);
        assert_eq!(s.longest_ms, 1200);
        assert_eq!(s.longest_start_ms, Some(1000));
        assert_eq!(s.longest_outside_faults_ms, 1200);
        assert!(s.livelock);
        // Without load, or with an election that explains it, it is not.
        assert!(!Stall::compute(&gap_of_1200_ms(), &[], 1000, false, false).livelock);
        assert!(!Stall::compute(&gap_of_1200_ms(), &[], 1000, true, true).livelock);
    }

    #[test]
    fn a_gap_during_a_fault_is_not_a_livelock() {
        let fault = FaultWindow {
            start_ms: 900.0,
            end_ms: Some(1500.0),
        };
        let s = Stall::compute(&gap_of_1200_ms(), &[fault], 1000, true, false);
        assert_eq!(s.longest_ms, 1200);
        assert_eq!(s.longest_outside_faults_ms, 0);
        assert!(!s.livelock);
        // A fault never undone covers the rest of the window.
        let open = FaultWindow {
            start_ms: 2100.0,
            end_ms: None,
        };
        assert!(!Stall::compute(&gap_of_1200_ms(), &[open], 1000, true, false).livelock);
        // A fault elsewhere does not excuse it.
        let elsewhere = FaultWindow {
            start_ms: 2500.0,
            end_ms: Some(2600.0),
        };
        assert!(Stall::compute(&gap_of_1200_ms(), &[elsewhere], 1000, true, false).livelock);
    }

    #[test]
    fn a_gap_shorter_than_the_threshold_is_not_a_livelock() {
        let s = Stall::compute(&gap_of_1200_ms(), &[], 1300, true, false);
        assert_eq!(s.longest_outside_faults_ms, 1200);
        assert!(!s.livelock);
        let s = Stall::compute(&rows(&[5; 30]), &[], 1000, true, false);
        assert_eq!((s.longest_ms, s.longest_start_ms), (0, None));
        assert!(!s.livelock);
        // A stall at the very end of the window counts too.
        let mut c = vec![5u64; 10];
        c.extend([0; 10]);
        let s = Stall::compute(&rows(&c), &[], 1000, true, false);
        assert_eq!((s.longest_ms, s.longest_start_ms), (1000, Some(1000)));
        assert!(s.livelock);
    }

    fn traffic(bytes: u64, datagrams: Option<u64>) -> TrafficValues {
        TrafficValues {
            bytes_sent: bytes,
            bytes_received: bytes / 2,
            writes: bytes / 100,
            datagrams_sent: datagrams,
            datagrams_received: datagrams.map(|d| d / 2),
        }
    }

    /// A node's cumulative reading with wire counters: `accepts` Accepts sent, `received`
    /// Accepteds received, `bytes` of peer traffic sent and a tenth of that of client traffic.
    fn wire_reading(accepts: u64, received: u64, bytes: u64, quic: bool) -> CounterValues {
        let datagrams = |b: u64| quic.then_some(b / 1000);
        CounterValues {
            sent: [("accept".to_string(), accepts)].into_iter().collect(),
            received: [("accepted".to_string(), received), ("commit".into(), 0)]
                .into_iter()
                .collect(),
            peer_traffic: Some(traffic(bytes, datagrams(bytes))),
            client_traffic: Some(traffic(bytes / 10, datagrams(bytes / 10))),
            commands_executed: accepts / 2,
            ..CounterValues::default()
        }
    }

    #[test]
    fn wire_counters_are_differenced_summed_and_divided_per_command() {
        // A leader (node 0) and a follower (node 1) over QUIC; 100 commands executed.
        let leader = (
            wire_reading(20, 20, 10_000, true),
            wire_reading(220, 220, 210_000, true),
        );
        let follower = (
            CounterValues {
                commands_executed: 10,
                ..wire_reading(0, 0, 4_000, true)
            },
            CounterValues {
                commands_executed: 110,
                ..wire_reading(0, 0, 54_000, true)
            },
        );
        let c = Contention::compute(vec![(0, Ok(leader)), (1, Ok(follower))], 90);
        let d0 = c.nodes[0].delta.as_ref().unwrap();
        assert_eq!(d0.received["accepted"], 200);
        assert_eq!(d0.peer_traffic, Some(traffic(200_000, Some(200))));
        assert_eq!(
            d0.client_traffic.unwrap().bytes_sent,
            20_000,
            "client traffic apart"
        );
        assert_eq!((c.commands, c.commands_from.as_str()), (100, "executed"));
        let total = c.total.peer_traffic.unwrap();
        assert_eq!(total.bytes_sent, 250_000);
        assert_eq!(total.datagrams_sent, Some(250));
        let p = &c.per_command;
        let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-9);
        assert!(close(p.messages_sent, 200.0 / 100.0), "{p:?}");
        assert!(close(p.messages_received, 200.0 / 100.0), "{p:?}");
        assert!(close(p.peer_bytes, 250_000.0 / 100.0), "{p:?}");
        assert!(close(p.peer_datagrams, 250.0 / 100.0), "{p:?}");
        assert!(close(p.peer_writes, 2_500.0 / 100.0), "{p:?}");
        // Client bytes both ways: 20 000 + 10 000 from the leader, 5 000 + 2 500 from the
        // follower.
        assert!(close(p.client_bytes, 37_500.0 / 100.0), "{p:?}");
        assert_eq!(p.sent_by_kind.keys().collect::<Vec<_>>(), ["accept"]);
        assert!(close(p.sent_by_kind.get("accept").copied(), 200.0 / 100.0));
        assert_eq!(
            p.received_by_kind.keys().collect::<Vec<_>>(),
            ["accepted"],
            "kinds never received are left out"
        );
    }

    #[test]
    fn tcp_has_no_datagrams_and_older_nodes_no_wire_figures() {
        let tcp = (
            wire_reading(0, 0, 1_000, false),
            wire_reading(100, 100, 51_000, false),
        );
        let c = Contention::compute(vec![(0, Ok(tcp))], 50);
        let p = &c.per_command;
        assert_eq!(c.total.peer_traffic.unwrap().datagrams_sent, None);
        assert_eq!(p.peer_datagrams, None, "None on TCP, not 0");
        assert!(p.peer_bytes.is_some_and(|b| b == 1_000.0));
        // Counters from a node that reports no wire counters: no wire figures, no zeros.
        let old = (reading(0, 0, [0; 8], 0), reading(5, 0, [0; 8], 10));
        let c = Contention::compute(vec![(0, Ok(old))], 10);
        let p = &c.per_command;
        assert_eq!(
            (p.messages_received, p.peer_bytes, p.client_bytes),
            (None, None, None)
        );
        assert!(p.received_by_kind.is_empty());
        let text = serde_json::to_string(&c).unwrap();
        assert!(!text.contains("peer_traffic"), "{text}");
    }

    #[test]
    fn wire_counters_that_went_down_mean_a_restart() {
        let before = wire_reading(50, 50, 100_000, true);
        let mut after = before.clone();
        after.peer_traffic = Some(traffic(2_000, Some(2)));
        let (d, restarted) = after.since(&before);
        assert!(restarted, "bytes went down");
        assert_eq!(d, after);
        let mut after = before.clone();
        after.received.insert("accepted".into(), 3);
        assert!(after.since(&before).1, "received went down");
        // Equal readings: zero deltas, datagram counts kept as counts.
        let (d, restarted) = before.since(&before);
        assert!(!restarted);
        assert_eq!(d.peer_traffic, Some(traffic(0, Some(0))));
    }

    #[test]
    fn counters_read_back_from_json_and_old_points_have_none() {
        let c = Contention::compute(
            vec![(
                0,
                Ok((
                    reading(0, 0, [0; 8], 0),
                    reading(3, 1, [2, 1, 0, 0, 0, 0, 0, 0], 3),
                )),
            )],
            3,
        );
        let text = serde_json::to_string(&c).unwrap();
        let back: Contention = serde_json::from_str(&text).unwrap();
        assert_eq!(back, c);
    }
}
