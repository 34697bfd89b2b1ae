//! One measured point of an experiment: a line of `points.jsonl`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::availability::{Availability, FaultWindow};
use crate::contention::{Contention, Stall};
use crate::search::SearchStep;

/// Names of swept parameters that set the load level of a closed-loop point, in order of
/// preference. An open-loop point's load level is its `offered_ops`.
pub const CLOSED_LOOP_LOAD_PARAMS: &[&str] = &["clients", "concurrency", "outstanding", "load"];

/// Names of swept parameters that restate an open-loop point's offered rate; they are part of
/// the load level, not of the configuration.
pub const OPEN_LOOP_LOAD_PARAMS: &[&str] =
    &["offered_ops", "rate", "rate_ops", "target_ops", "load"];

/// One measured point: a line of `points.jsonl`, written by `paxbench run`.
///
/// Latencies are in microseconds and cover the measured window only (after the warm-up).
/// Fields this struct does not know are kept in [`Point::extra`] and treated as swept
/// parameters, so a newer writer never breaks an older reader.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Unique id of the point within the run; also the stem of `hist/<point_id>.hlog`.
    pub point_id: String,
    /// `multi-paxos`, `basic-paxos` or `unreplicated`.
    pub protocol: String,
    /// Every swept parameter by name (e.g. `{"max_batch": 100, "window": 32, "clients": 4}`).
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
    /// Which repetition of the same point this is, from 0.
    #[serde(default)]
    pub repetition: u32,
    /// Target rate of an open-loop point in ops/s; `null` for closed loop.
    #[serde(default)]
    pub offered_ops: Option<f64>,
    /// Completed operations per second over the measured window.
    #[serde(deserialize_with = "nan_if_null")]
    pub throughput_ops: f64,
    /// Median latency (µs).
    #[serde(deserialize_with = "nan_if_null")]
    pub p50_us: f64,
    /// 90th percentile latency (µs).
    #[serde(deserialize_with = "nan_if_null")]
    pub p90_us: f64,
    /// 99th percentile latency (µs).
    #[serde(deserialize_with = "nan_if_null")]
    pub p99_us: f64,
    /// 99.9th percentile latency (µs).
    #[serde(deserialize_with = "nan_if_null")]
    pub p999_us: f64,
    /// Highest latency recorded (µs).
    #[serde(deserialize_with = "nan_if_null")]
    pub max_us: f64,
    /// Mean latency (µs).
    #[serde(deserialize_with = "nan_if_null")]
    pub mean_us: f64,
    /// Operations that completed in the measured window.
    pub completed: u64,
    /// Operations answered with an error.
    pub errors: u64,
    /// Operations that got no answer within the per-request timeout.
    pub timeouts: u64,
    /// 99th percentile of how far the load generator's sends fell behind schedule (µs).
    #[serde(default, deserialize_with = "nan_if_null")]
    pub send_lag_p99_us: f64,
    /// True when the load generator, not the system, limited this point.
    #[serde(default)]
    pub generator_bound: bool,
    /// The load generator's own CPU time (user plus system) per request it sent in the
    /// measured window, µs (`loadgen::LoadSummary::generator_cpu_us_per_request`); absent where
    /// it could not be read and in older results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_cpu_us_per_request: Option<f64>,
    /// True when the Multi-Paxos leader (or its ballot) differed before and after the point:
    /// an election ran during it, and its latencies include the failover.
    #[serde(default)]
    pub leader_changed: bool,
    /// Where the node logs of this point's cluster are kept, relative to the run directory.
    #[serde(default)]
    pub logs: Option<String>,
    /// Resource use of each node during the measured window.
    #[serde(default)]
    pub nodes: Vec<NodeStats>,
    /// Round trips between nodes at the end of the point, as each node's QUIC connection to
    /// each peer measured them, beside the round trip the emulated links were configured for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rtt: Vec<LinkRtt>,
    /// Every fault the run tried to inject during the measured window, applied or not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<FaultRecord>,
    /// Availability figures from the point's timeline (`timeline/<point_id>.csv`), when it had
    /// a fault. `paxbench report` recomputes them from the timeline when that file is there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<Availability>,
    /// The verdict of the linearizability check of the point's client history, if one ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linearizable: Option<LinearizabilityResult>,
    /// What the nodes counted while the point's load ran (phase-1 rounds, Nacks, backoff,
    /// attempts, messages sent and received, bytes and datagrams on the wire...) and the
    /// figures per command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counters: Option<Contention>,
    /// The longest stretch without a completion, and whether it counts as a livelock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall: Option<Stall>,
    /// How far the learners were behind the leader during the measured window, when the
    /// cluster had learners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staleness: Option<Staleness>,
    /// The point's step in a rate search (`rates = "auto"`), when it was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<SearchStep>,
    /// Fields not listed above (e.g. `warmup_s`, `duration_s`), kept and shown beside the swept
    /// parameters in the per-point tables. They do not split groups: a measured duration that
    /// differs by a millisecond between points must not make two configurations.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// Resource use of one node during a point's measured window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStats {
    /// The node's id (a number or a string).
    pub id: Value,
    /// CPU use in percent of one core (200 = two cores busy).
    #[serde(deserialize_with = "nan_if_null")]
    pub cpu_percent: f64,
    /// Resident set size in bytes at the end of the window.
    pub rss_bytes: u64,
}

/// One node's round trip to one peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkRtt {
    /// The node that measured it.
    pub from: u32,
    /// The peer.
    pub to: u32,
    /// What the node's connection to the peer measured (quinn's smoothed RTT), µs.
    pub measured_us: f64,
    /// The emulated delay there and back, µs (`None`: the link was not emulated).
    #[serde(default)]
    pub configured_us: Option<f64>,
}

/// One fault the run tried to inject during a point's measured window.
///
/// Times are seconds from the start of the measured window, the origin of the point's timeline
/// (negative: during the warm-up).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRecord {
    /// What was done, as configured: `kill`, `pause`, `partition`...
    pub action: String,
    /// Whom it was aimed at, as configured: `leader`, `follower`, `2`...
    #[serde(default)]
    pub target: String,
    /// The node the target resolved to (a `reconfigure`: the voter it removed); `None` when it
    /// did not resolve to one node.
    #[serde(default)]
    pub node: Option<u32>,
    /// A `reconfigure`: the node it made a voter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added: Option<u32>,
    /// When it was applied (or was to be).
    pub at_s: f64,
    /// When it was undone (restart, resume, heal); `None` when it was not undone in the window.
    #[serde(default)]
    pub end_s: Option<f64>,
    /// Whether it took effect. A record without this field counts as not applied, so that it
    /// is reported rather than trusted.
    #[serde(default)]
    pub applied: bool,
    /// What went wrong applying or undoing it.
    #[serde(default)]
    pub error: Option<String>,
}

impl FaultRecord {
    /// When it was in force (ms), or `None` if it was not applied.
    pub fn window(&self) -> Option<FaultWindow> {
        self.applied.then(|| FaultWindow {
            start_ms: self.at_s * 1000.0,
            end_ms: self.end_s.map(|e| e * 1000.0),
        })
    }

    /// Whom it hit, once resolved: `node 2`, or for a `reconfigure` `remove node 1, add node 3`;
    /// the target as configured when it did not resolve.
    pub fn whom(&self) -> String {
        if self.action == "reconfigure" && (self.node.is_some() || self.added.is_some()) {
            let remove = self.node.map(|n| format!("remove node {n}"));
            let add = self.added.map(|n| format!("add node {n}"));
            return [remove, add]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", ");
        }
        self.node
            .map_or(self.target.clone(), |n| format!("node {n}"))
    }

    /// `kill leader at 2.0 s–4.0 s`: what was configured (to 0.1 s), without the resolved node.
    pub fn describe(&self) -> String {
        let mut s = self.action.clone();
        if !self.target.is_empty() {
            let _ = write!(s, " {}", self.target);
        }
        let _ = write!(s, " at {} s", seconds(self.at_s));
        if let Some(end) = self.end_s {
            let _ = write!(s, "–{} s", seconds(end));
        }
        s
    }

    /// Whether it failed, wholly or in part: not applied, or an error undoing it.
    pub fn failed(&self) -> bool {
        !self.applied || self.error.is_some()
    }
}

fn seconds(s: f64) -> String {
    // To the tenth of a second: the schedule runs on a 50 ms tick, so the repetitions of one
    // fault read the same (the exact instants are in points.jsonl).
    format!("{s:.1}")
}

/// How far a point's learners were behind the leader: status polls every 100 ms over the
/// measured window, each learner's lag the leader's next slot to execute minus its own
/// (at least 0: the concurrent reads of one poll may catch a learner a slot ahead).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Staleness {
    /// The learners' ids.
    pub learners: Vec<u32>,
    /// Whether the learners answered Gets from their own state (`reads = "learner"`): the
    /// point's reads are then **not linearizable**.
    pub learner_reads: bool,
    /// Polls in the window that read the leader (each gives one lag per learner that answered).
    pub samples: u64,
    /// Median lag over every (poll, learner), slots.
    #[serde(deserialize_with = "nan_if_null")]
    pub lag_slots_p50: f64,
    /// Largest lag seen, slots.
    #[serde(deserialize_with = "nan_if_null")]
    pub lag_slots_max: f64,
    /// The leader's slots executed per second over the window (first to last poll).
    #[serde(deserialize_with = "nan_if_null")]
    pub leader_slots_per_s: f64,
    /// The median lag as time, an **estimate**: slots over the leader's mean slot rate, ms.
    #[serde(deserialize_with = "nan_if_null")]
    pub lag_ms_p50_est: f64,
    /// The largest lag as time, estimated the same way, ms.
    #[serde(deserialize_with = "nan_if_null")]
    pub lag_ms_max_est: f64,
}

impl Staleness {
    /// The staleness of `learners` from polls of (seconds into the window, the leader's next
    /// slot to execute, each answering learner's), or `None` with no poll.
    pub fn compute(
        learners: Vec<u32>,
        learner_reads: bool,
        polls: &[(f64, u64, Vec<u64>)],
    ) -> Option<Staleness> {
        let (first, last) = (polls.first()?, polls.last()?);
        let mut lags: Vec<f64> = polls
            .iter()
            .flat_map(|(_, leader, ls)| ls.iter().map(move |l| leader.saturating_sub(*l) as f64))
            .collect();
        lags.sort_by(f64::total_cmp);
        let pick = |q: f64| {
            lags.get(((lags.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        let span = last.0 - first.0;
        let rate = if span > 0.0 {
            last.1.saturating_sub(first.1) as f64 / span
        } else {
            f64::NAN
        };
        let ms = |slots: f64| {
            if rate > 0.0 {
                slots / rate * 1000.0
            } else {
                f64::NAN
            }
        };
        Some(Staleness {
            learners,
            learner_reads,
            samples: polls.len() as u64,
            lag_slots_p50: pick(0.5),
            lag_slots_max: pick(1.0),
            leader_slots_per_s: rate,
            lag_ms_p50_est: ms(pick(0.5)),
            lag_ms_max_est: ms(pick(1.0)),
        })
    }
}

/// `verdict` of a [`LinearizabilityResult`] whose history is linearizable.
pub const LINEARIZABLE: &str = "linearizable";
/// `verdict` of a [`LinearizabilityResult`] whose history is not.
pub const VIOLATION: &str = "violation";
/// `verdict` of a [`LinearizabilityResult`] that could not decide (budget exhausted...).
pub const UNKNOWN: &str = "unknown";
/// `verdict` of a [`LinearizabilityResult`] whose history was deliberately not checked: its
/// reads were not meant to be linearizable (`reads = "learner"`); `detail` says why.
pub const NOT_CHECKED: &str = "not checked";

/// The outcome of checking a point's client history for linearizability, as plain data (the
/// results crate does not depend on the checker).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearizabilityResult {
    /// [`LINEARIZABLE`], [`VIOLATION`] or [`UNKNOWN`].
    pub verdict: String,
    /// What the checker said: the offending operations of a violation, why it gave up.
    #[serde(default)]
    pub detail: String,
    /// Operations in the history checked.
    #[serde(default)]
    pub operations: u64,
    /// How long the check took (ms).
    #[serde(default, deserialize_with = "nan_if_null")]
    pub elapsed_ms: f64,
    /// True when the history was cut short (a recording limit), so only part was checked.
    #[serde(default)]
    pub history_truncated: bool,
    /// What reading every written key back after the load found (`None` in older files, or
    /// when the read-back was not run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_reads: Option<FinalReads>,
}

/// After the load and the faults, every key the history wrote is read once more; the reads are
/// checked with the history, and each acknowledged write they contradict is counted as lost
/// (the rule is `lincheck::lost_writes`'s).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalReads {
    /// Keys the history wrote.
    pub keys: u64,
    /// Keys whose final read got no definite answer (their writes are not judged).
    pub unread_keys: u64,
    /// Acknowledged writes of the keys read back.
    pub acknowledged: u64,
    /// Of those, writes the final reads show were lost.
    pub lost: u64,
    /// A few lost writes, as text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
}

impl Point {
    /// The nodes' CPU time per completed command (µs): the cores they kept busy while the
    /// load ran, summed over nodes, divided by the throughput. Both are rates over the load,
    /// so this is exact at a steady load and an approximation when the warm-up differs.
    /// `None` when nothing completed or a node's CPU is unknown.
    pub fn cpu_us_per_command(&self) -> Option<f64> {
        let cores: f64 = self.nodes.iter().map(|n| n.cpu_percent / 100.0).sum();
        (!self.nodes.is_empty() && cores.is_finite() && self.throughput_ops > 0.0)
            .then(|| cores * 1e6 / self.throughput_ops)
    }

    /// Whether the point counts toward saturation: p99 under `slo_p99_us`, and no request
    /// failed or timed out (a level that drops requests does not meet an SLO, whatever the
    /// latency of those that completed). A rate search passes a level by the same rule.
    pub fn meets_slo(&self, slo_p99_us: f64) -> bool {
        self.p99_us < slo_p99_us
            && self.throughput_ops.is_finite()
            && self.errors == 0
            && self.timeouts == 0
    }

    /// Whether the point is marked `⚠ livelock`: a Basic Paxos point (only its proposers
    /// contend) whose completions stalled for the threshold while load was offered and no
    /// fault was in force (an election is marked as such instead). Another protocol's stall is
    /// overload or a stalled generator, not a livelock: it stays in `stall`, unmarked.
    pub fn livelock(&self) -> bool {
        self.protocol == "basic-paxos"
            && self.stall.as_ref().is_some_and(|s| s.livelock)
            && !self.leader_changed
    }

    /// Whether the point has anything for the availability table: faults, availability
    /// figures or a linearizability verdict.
    pub fn has_fault_data(&self) -> bool {
        !self.faults.is_empty() || self.availability.is_some() || self.linearizable.is_some()
    }

    /// Every swept parameter: `params` plus unknown top-level fields, by name.
    pub fn swept(&self) -> BTreeMap<String, Value> {
        let mut all = self.params.clone();
        for (k, v) in &self.extra {
            all.entry(k.clone()).or_insert_with(|| v.clone());
        }
        all
    }

    /// Whether `name` is a parameter that sets this point's load level.
    pub fn is_load_param(&self, name: &str) -> bool {
        match self.offered_ops {
            Some(_) => OPEN_LOOP_LOAD_PARAMS.contains(&name),
            None => self.closed_loop_load_param() == Some(name),
        }
    }

    /// The load level: `offered_ops` for open loop, else the first of
    /// [`CLOSED_LOOP_LOAD_PARAMS`] present, else the measured throughput.
    pub fn load_level(&self) -> f64 {
        if let Some(offered) = self.offered_ops {
            return offered;
        }
        self.closed_loop_load_param()
            .and_then(|name| self.swept().get(name).and_then(Value::as_f64))
            .unwrap_or(self.throughput_ops)
    }

    /// The swept parameters (`params`) other than the load level, as `name=value` pairs: what
    /// tells one configuration from another.
    pub fn config(&self) -> Vec<(String, String)> {
        self.params
            .clone()
            .into_iter()
            .filter(|(k, _)| !self.is_load_param(k))
            .map(|(k, v)| (k, value_text(&v)))
            .collect()
    }

    fn closed_loop_load_param(&self) -> Option<&'static str> {
        let swept = self.swept();
        CLOSED_LOOP_LOAD_PARAMS
            .iter()
            .copied()
            .find(|name| swept.get(*name).and_then(Value::as_f64).is_some())
    }
}

impl NodeStats {
    /// The node id as text (`1`, `n1`).
    pub fn id_text(&self) -> String {
        value_text(&self.id)
    }
}

/// JSON writes a non-finite number (a CPU share over no samples) as `null`; read it back as NaN.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// A JSON value as a table cell: strings without quotes, everything else as JSON.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `protocol` followed by `name=value` pairs: the label of a series in tables and plots.
pub fn label(protocol: &str, config: &[(String, String)]) -> String {
    let mut s = protocol.to_string();
    for (k, v) in config {
        let _ = write!(s, " {k}={v}");
    }
    s
}

/// Sort rank of a protocol: the baseline first, then Multi-Paxos, Basic Paxos, then others.
pub fn protocol_rank(protocol: &str) -> usize {
    match protocol {
        "unreplicated" => 0,
        "multi-paxos" => 1,
        "basic-paxos" => 2,
        _ => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_kept_but_do_not_split_groups() {
        let line = r#"{"point_id":"p1","protocol":"multi-paxos","params":{"window":32},
            "repetition":1,"offered_ops":null,"throughput_ops":10.0,"p50_us":1,"p90_us":2,
            "p99_us":3,"p999_us":4,"max_us":5,"mean_us":1.5,"completed":10,"errors":0,
            "timeouts":0,"send_lag_p99_us":0,"generator_bound":false,
            "nodes":[{"id":1,"cpu_percent":null,"rss_bytes":1000}],
            "clients":8,"value_size":64}"#;
        let p: Point = serde_json::from_str(line).unwrap();
        assert_eq!(p.extra.len(), 2);
        assert_eq!(p.load_level(), 8.0);
        assert_eq!(p.config(), vec![("window".into(), "32".into())]);
        assert!(p.swept().contains_key("value_size"));
        assert_eq!(p.nodes[0].id_text(), "1");
        assert!(p.nodes[0].cpu_percent.is_nan());
    }
}
