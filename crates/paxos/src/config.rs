//! The core's configuration: which protocol, who the peers are, and every protocol knob.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use thiserror::Error;

use crate::types::NodeId;

/// Which protocol a node runs. Its name in files and on the command line is kebab-case
/// (`multi-paxos`, `basic-paxos`, `unreplicated`): see [`Protocol::name`] and its `FromStr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum Protocol {
    /// A stable leader runs phase 1 once and then only phase 2, batched and pipelined.
    MultiPaxos,
    /// Every node proposes; every slot is decided by its own phase 1 + phase 2.
    BasicPaxos,
    /// One node that executes at once: the baseline every result is normalised against.
    Unreplicated,
}

/// How a preempted proposer (or a candidate that lost a campaign) waits before retrying. Named
/// `none`, `full` and `equal` in files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum BackoffMode {
    /// Retry at once. Exists to show the livelock that backoff prevents.
    None,
    /// `uniform(0, min(cap, base * 2^attempt))` ("full jitter").
    Full,
    /// `d/2 + uniform(0, d/2)` with `d = min(cap, base * 2^attempt)` ("equal jitter").
    Equal,
}

/// Exponential backoff: `d = min(cap, base * 2^attempt)`, jittered by `mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Backoff {
    /// Jitter mode, or no backoff at all.
    pub mode: BackoffMode,
    /// Delay before the first retry (before jitter). Default two measured phase-1 round trips.
    pub base: BackoffSpan,
    /// Largest delay (before jitter). Default `max(100ms,25rtt)`: 100 ms where round trips are
    /// short (a cap of a few ms let proposers collide again on a loaded 2-core loopback), 25
    /// round trips across regions (100 ms is 2.5 round trips of a 40 ms link, too few for
    /// five proposers to spread out). The README's "What backoff buys" has the measurements.
    pub cap: BackoffSpan,
}

/// A length of time in a backoff: fixed, or a multiple of the proposer's own smoothed phase-1
/// round trip ([`crate::Stats::phase1_rtt`]), so that one setting fits loopback and WAN alike.
///
/// Written `"500us"`, `"1ms"`, `"0.2s"`, `"2rtt"` / `"0.5rtt"`, or `"max(100ms,25rtt)"` in
/// files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackoffSpan {
    /// A fixed duration.
    Fixed(Duration),
    /// `milli / 1000` of the measured phase-1 round trip (before the first measurement, of
    /// [`BackoffSpan::UNMEASURED_RTT`]).
    Rtts {
        /// Thousandths of a round trip.
        milli: u32,
    },
    /// The longer of a fixed duration and `milli / 1000` round trips: `max(100ms,25rtt)`.
    AtLeast {
        /// The fixed duration.
        floor: Duration,
        /// Thousandths of a round trip.
        milli: u32,
    },
}

impl BackoffSpan {
    /// The round trip a span in round trips assumes before the node has measured one: 1 ms.
    /// A proposer measures its first phase-1 round trip before it can be
    /// preempted (a Nack, or a quorum of Promises, ends the measurement), so this matters only
    /// after timeouts with nothing heard.
    pub const UNMEASURED_RTT: Duration = Duration::from_millis(1);

    /// The shortest round trip a span in round trips scales: below it (an in-memory test
    /// cluster measures 0), the backoff would vanish and dueling proposers would retry at once.
    pub const MIN_RTT: Duration = Duration::from_micros(10);

    /// The duration this span stands for, given the measured round trip (if any).
    pub fn resolve(self, rtt: Option<Duration>) -> Duration {
        match self {
            BackoffSpan::Fixed(d) => d,
            BackoffSpan::Rtts { milli } => {
                let rtt = rtt.unwrap_or(Self::UNMEASURED_RTT).max(Self::MIN_RTT);
                rtt.saturating_mul(milli) / 1000
            }
            BackoffSpan::AtLeast { floor, milli } => {
                floor.max(BackoffSpan::Rtts { milli }.resolve(rtt))
            }
        }
    }

    /// The default cap, `max(100ms,25rtt)` (see [`Backoff::cap`]).
    pub const DEFAULT_CAP: BackoffSpan = BackoffSpan::AtLeast {
        floor: Duration::from_millis(100),
        milli: 25_000,
    };
}

impl From<Duration> for BackoffSpan {
    fn from(d: Duration) -> Self {
        BackoffSpan::Fixed(d)
    }
}

impl fmt::Display for BackoffSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BackoffSpan::Fixed(d) if d.subsec_nanos() == 0 && d.as_secs() > 0 => {
                write!(f, "{}s", d.as_secs())
            }
            BackoffSpan::Fixed(d) if d.as_nanos() % 1_000_000 == 0 => {
                write!(f, "{}ms", d.as_millis())
            }
            BackoffSpan::Fixed(d) if d.as_nanos() % 1_000 == 0 => write!(f, "{}us", d.as_micros()),
            BackoffSpan::Fixed(d) => write!(f, "{}us", d.as_nanos() as f64 / 1e3),
            BackoffSpan::Rtts { milli } => write!(f, "{}rtt", f64::from(milli) / 1000.0),
            BackoffSpan::AtLeast { floor, milli } => write!(
                f,
                "max({},{})",
                BackoffSpan::Fixed(floor),
                BackoffSpan::Rtts { milli }
            ),
        }
    }
}

/// A backoff span that is not `<number>us`, `ms`, `s` or `rtt`.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error(
    "backoff span {given:?}: {why} (write a number and a unit: \"500us\", \"1ms\", \"0.2s\", or \"2rtt\" for twice the measured phase-1 round trip; or the longer of a fixed span and one in round trips, \"max(100ms,25rtt)\")"
)]
pub struct BadSpan {
    /// What was given.
    pub given: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl FromStr for BackoffSpan {
    type Err = BadSpan;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why| BadSpan {
            given: s.to_string(),
            why,
        };
        let t = s.trim();
        if let Some(inner) = t.strip_prefix("max(").and_then(|r| r.strip_suffix(')')) {
            let mut parts = inner.split(',');
            let (Some(a), Some(b), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(bad("max() takes two spans"));
            };
            return match (a.parse()?, b.parse()?) {
                (BackoffSpan::Fixed(floor), BackoffSpan::Rtts { milli })
                | (BackoffSpan::Rtts { milli }, BackoffSpan::Fixed(floor)) => {
                    Ok(BackoffSpan::AtLeast { floor, milli })
                }
                _ => Err(bad("max() takes one fixed span and one in round trips")),
            };
        }
        let split = t
            .find(|c: char| c.is_ascii_alphabetic())
            .ok_or_else(|| bad("no unit"))?;
        let (number, unit) = t.split_at(split);
        let x: f64 = number
            .trim()
            .parse()
            .map_err(|_| bad("not a number before the unit"))?;
        if !x.is_finite() || x < 0.0 {
            return Err(bad("must be a number of 0 or more"));
        }
        let fixed = |scale: f64| {
            let secs = x * scale;
            if secs > 3600.0 {
                return Err(bad("longer than an hour"));
            }
            Ok(BackoffSpan::Fixed(Duration::from_secs_f64(secs)))
        };
        match unit {
            "us" | "µs" => fixed(1e-6),
            "ms" => fixed(1e-3),
            "s" => fixed(1.0),
            "rtt" => {
                if x > 1e6 {
                    return Err(bad("more than a million round trips"));
                }
                let milli = (x * 1000.0).round() as u32;
                if milli == 0 && x > 0.0 {
                    return Err(bad("below the resolution of 0.001 round trips"));
                }
                Ok(BackoffSpan::Rtts { milli })
            }
            _ => Err(bad("unknown unit")),
        }
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for BackoffSpan {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for BackoffSpan {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A name that is not one of an enum's names; the message lists the ones that are.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("unknown {what} {given:?}: use {choices}")]
pub struct UnknownName {
    /// What kind of name it was (`protocol`, `backoff`).
    pub what: &'static str,
    /// The name given.
    pub given: String,
    /// The names that exist, comma-separated.
    pub choices: &'static str,
}

impl Protocol {
    /// Every protocol, in the order tables list them.
    pub const ALL: [Protocol; 3] = [
        Protocol::Unreplicated,
        Protocol::MultiPaxos,
        Protocol::BasicPaxos,
    ];

    /// The protocol's name in files, on the command line and in results.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::MultiPaxos => "multi-paxos",
            Protocol::BasicPaxos => "basic-paxos",
            Protocol::Unreplicated => "unreplicated",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Protocol {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Protocol::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownName {
                what: "protocol",
                given: s.to_string(),
                choices: "multi-paxos, basic-paxos or unreplicated",
            })
    }
}

impl BackoffMode {
    /// Every mode.
    pub const ALL: [BackoffMode; 3] = [BackoffMode::None, BackoffMode::Full, BackoffMode::Equal];

    /// The mode's name in files.
    pub fn name(self) -> &'static str {
        match self {
            BackoffMode::None => "none",
            BackoffMode::Full => "full",
            BackoffMode::Equal => "equal",
        }
    }
}

impl fmt::Display for BackoffMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackoffMode {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BackoffMode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| UnknownName {
                what: "backoff",
                given: s.to_string(),
                choices: "none, full or equal",
            })
    }
}

/// How a Multi-Paxos leader answers a `Get`. Named `log` and `lease` in files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum ReadMode {
    /// Every `Get` is a command in the log, like a write: linearizable by construction, one
    /// round of consensus per read batch. The default.
    #[default]
    Log,
    /// The leader answers a `Get` from its own state while it holds a lease from a quorum (see
    /// [`Config::lease_duration`]), and through the log otherwise. Followers that granted the
    /// lease promise no other ballot and do not campaign until it runs out, so no other leader
    /// can choose a write the lease holder has not seen.
    Lease,
    /// A learner ([`Config::learners`]) answers a `Get` sent to it from its own state, at once:
    /// **not linearizable** — the value may be as old as the learner's lag behind the leader —
    /// but reads scale out with learners. Gets at voters go through the log as with `log`.
    Learner,
}

impl ReadMode {
    /// Every mode.
    pub const ALL: [ReadMode; 3] = [ReadMode::Log, ReadMode::Lease, ReadMode::Learner];

    /// The mode's name in files.
    pub fn name(self) -> &'static str {
        match self {
            ReadMode::Log => "log",
            ReadMode::Lease => "lease",
            ReadMode::Learner => "learner",
        }
    }
}

impl fmt::Display for ReadMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ReadMode {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ReadMode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| UnknownName {
                what: "reads",
                given: s.to_string(),
                choices: "log, lease or learner",
            })
    }
}

/// A deliberately broken variant of the protocol, for the self-tests: each one must be caught by
/// a checker. Never set outside `paxbench sim --self-test` (and `--bug`) and the checker's
/// self-test experiments (`[paxos] self_test_bug`, see `node::config::SelfTestBug`).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bug {
    /// An acceptor that forgets its promise when it restarts.
    ForgetPromiseOnRestart,
    /// An acceptor that accepts values at ballots below its promise.
    AcceptLowerBallot,
    /// A new leader that ignores values reported in promises and fills every slot with no-ops.
    SkipRecovery,
    /// A leader that counts a value chosen after a single Accepted (no quorum).
    CommitWithoutQuorum,
    /// A state machine that starts any unknown session afresh, even one created longer than
    /// the session timeout ago (so a late retry of a dropped session runs again).
    ResurrectExpiredSessions,
    /// A replicated node that answers a `Get` at once from its own state machine, leader or not,
    /// with no lease and without going through the log: a follower that lags, or a deposed leader
    /// cut off from the new one, answers with stale values.
    LocalReads,
    /// A node that sends what reports a write (Promise, Accepted) without waiting for the write
    /// to be durable. In the simulator the persist barrier is simply skipped; a real node
    /// (`node::runtime`) also holds its write-ahead log writes back in memory for a while, so
    /// that a SIGKILL loses state it has acknowledged.
    AckBeforeDurable,
    /// `reads = "lease"` with no clock-drift margin: the leader counts a lease as the full
    /// [`Config::lease_duration`] from when it sent the heartbeat that earned it, so a follower
    /// whose clock runs fast lets its grant go (and promises a new leader) while the old leader,
    /// on a slow clock, still serves reads.
    LeaseWithoutDriftMargin,
    /// `reads = "lease"`, and a leader that keeps serving local reads after its lease ran out:
    /// once a quorum granted it a lease it never checks the expiry again.
    ReadsAfterLeaseExpiry,
    /// `reads = "lease"`, and a follower that promises a new ballot inside a lease it granted.
    PromiseInsideLease,
    /// A configured learner that votes like any other node: it sends Promises and Accepteds
    /// (quorums are still counted among the voters, so it can tip one that should not exist).
    LearnerVotes,
    /// A membership change that governs from the very next slot instead of `window` slots
    /// later, while slots proposed under the old voters are still in flight.
    ReconfigNextSlot,
}

impl Bug {
    /// Whether this variant breaks leases (and so needs `reads = "lease"` to do anything).
    pub fn needs_lease(self) -> bool {
        matches!(
            self,
            Bug::LeaseWithoutDriftMargin | Bug::ReadsAfterLeaseExpiry | Bug::PromiseInsideLease
        )
    }
}

/// Configuration of one node. Durations are `Duration`; the TOML layer above names units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This node.
    pub id: NodeId,
    /// Every node of the cluster, this one included (one node for `Unreplicated`).
    pub nodes: Vec<NodeId>,
    /// The nodes of `nodes` that are **learners**: they receive chosen values and execute them,
    /// but never send a Promise or an Accepted and never campaign, so quorums are majorities of
    /// the other nodes (the voters). Default none. Under Multi-Paxos these are the learners at
    /// start: an `Op::Reconfigure` can make a learner a voter and a voter a learner (see
    /// [`crate::membership`]), so `nodes` is every node the cluster may ever let vote.
    pub learners: Vec<NodeId>,
    /// The protocol.
    pub protocol: Protocol,
    /// Seeds this node's RNG (election timeouts, backoff jitter); mixed with the node id.
    pub seed: u64,
    /// Most commands per slot. Default 100 (Multi-Paxos), 1 means no batching.
    pub max_batch: usize,
    /// Most payload bytes (keys + values) per slot; a single larger command still gets a slot.
    /// Default 1 MiB.
    pub max_batch_bytes: usize,
    /// Most slots a Multi-Paxos leader has in flight (proposed, not yet chosen), and how far
    /// past its execution point it may propose: a membership change chosen in slot `s` governs
    /// from `s + window` (the window fixed when the cluster's state was created, see
    /// [`crate::membership`]). Default 32.
    pub window: usize,
    /// Most slots holding a *partial* batch (fewer than `max_batch` commands) a Multi-Paxos
    /// leader has in flight. While that many are out, queued commands wait for a full batch or
    /// for one of them to be chosen; full batches still use the whole `window`. So a light load
    /// is proposed at once, and a heavy one travels in full batches rather than in one small
    /// round per arrival, each of which costs every node its packets. `window` (or more) turns
    /// it off. Default 1.
    pub partial_batches: usize,
    /// Multi-Paxos: a stable leader skips phase 1 for new slots. `false` runs phase 1 for every
    /// slot, so a sweep can isolate what skipping it is worth. Default `true`.
    pub skip_phase1: bool,
    /// Multi-Paxos: how often an idle leader sends heartbeats. Default 20 ms.
    pub heartbeat_interval: Duration,
    /// Multi-Paxos: a follower campaigns after hearing nothing from a leader for a random time in
    /// `[election_timeout, 2 * election_timeout)`. Default 500 ms: at 200 ms, a loaded 2-core
    /// machine running three nodes, a client and fsyncs occasionally starved a leader long
    /// enough to trigger a needless election mid-measurement.
    pub election_timeout: Duration,
    /// Backoff of Basic Paxos proposers after a preemption, and of Multi-Paxos candidates after a
    /// failed campaign.
    pub backoff: Backoff,
    /// How long a proposer waits for a quorum before it re-sends (Multi-Paxos Accepts) or gives
    /// up on an attempt (Basic Paxos, campaigns). Default 50 ms.
    pub retry_timeout: Duration,
    /// Multi-Paxos: announce commits in a Commit message of their own as soon as they are
    /// known. Default `false`: the next Accept carries them while slots are in flight (or the
    /// next heartbeat), and a Commit goes out only when nothing is in flight.
    pub explicit_commit: bool,
    /// Replies remembered per client session for exactly-once execution, as a window of request
    /// ids. Default 4096. The contract with clients: number requests in increasing order and never
    /// issue id `n` while id `n - reply_cache_per_client` is unanswered. A request that falls
    /// below the window is answered [`crate::Outcome::Expired`] instead of being executed, because
    /// bounded memory cannot tell "executed long ago" from "never executed" there.
    pub reply_cache_per_client: usize,
    /// A client session silent this long (by the log's clock: the proposers' batch stamps) is
    /// dropped, and a late request of it is answered [`crate::Outcome::Expired`], never
    /// executed again (see [`crate::KvState`]). Default 60 s.
    pub session_timeout: Duration,
    /// Most commands a node holds waiting for a slot. A request that finds the queue full is
    /// answered [`crate::Outcome::Overloaded`] at once instead of waiting: under overload the
    /// excess is refused rather than every request queueing past its client's timeout, and a
    /// flood of requests cannot grow a node's memory without bound. Default 10,000.
    pub max_queue: usize,
    /// Snapshot and truncate the log once every node has executed this many slots beyond the last
    /// truncation point. Default 10 000.
    pub snapshot_interval: u64,
    /// Without durable snapshots (`durable_snapshots = false`), truncate the log once every
    /// node has executed this many slots beyond the last truncation point, or
    /// `snapshot_interval` if that is smaller. Default 1 000. Truncating is then only dropping
    /// entries, and the cost of a drop grows with the entries dropped: at 200 000 ops/s on 3
    /// nodes sharing 2 cores, truncating every 10 000 slots (~1 s of 70-command batches) made
    /// the second that held it reach 26-33 ms of latency where the others stayed at 3-8 ms,
    /// and held 160-200 MiB per node; every 1 000 slots, p99 over 3 s was 3.0-5.0 ms at
    /// 42-47 MiB. Durable snapshots copy the whole state, so they keep the longer interval.
    pub truncate_interval: u64,
    /// Copy the whole state into a [`crate::Record::Snapshot`] each time the log is truncated,
    /// so the write-ahead log can drop what the snapshot covers. Default `true`. With
    /// `durability = "none"` nothing is durable and the runtime sets it `false`: truncation
    /// then drops log entries without copying the state (a copy of 100 000 keys in the event
    /// loop was the p99 tail of a Multi-Paxos run), and a peer that fell behind gets a snapshot
    /// made on demand.
    pub durable_snapshots: bool,
    /// A node that lags more than this many slots behind is no longer waited for: the others
    /// truncate and it catches up from a snapshot. Default 100 000.
    pub log_retain_slots: u64,
    /// Most chosen values sent in one catch-up reply. Default 256.
    pub catch_up_batch: usize,
    /// Multi-Paxos: how the leader answers a `Get` ([`ReadMode`]). Default `log`.
    pub reads: ReadMode,
    /// `reads = "lease"`: a follower that hears the leader's heartbeat grants it a lease until
    /// its own receipt time plus this, and until then promises no other ballot and does not
    /// campaign. A node that (re)starts promises nothing for this long either, since it may have
    /// granted a lease before it went down. The leader renews it with every heartbeat
    /// (`heartbeat_interval`) and counts it from when it sent the heartbeat, shortened by
    /// `clock_drift_ppm`. Default 500 ms (the election timeout, so that a lease does not
    /// delay the election after a leader fails beyond what the timeout does already).
    pub lease_duration: Duration,
    /// `reads = "lease"`: the most any node's clock rate may differ from true time, in parts per
    /// million. The leader counts a lease of `d` as `d * (1 - drift) / (1 + drift)` on its own
    /// clock: the shortest the follower's grant can last, in true time, is `d / (1 + drift)`,
    /// and the longest the leader's count can last is `d' / (1 - drift)`. Default 1000 (0.1 %,
    /// ten times the tolerance of a common quartz clock).
    pub clock_drift_ppm: u32,
    /// Record every executed slot for [`crate::Node::drain_executed`] (simulator checkers).
    pub trace_execution: bool,
    /// A deliberate bug, for the simulator's self-test only.
    #[doc(hidden)]
    pub bug: Option<Bug>,
}

/// A configuration that cannot work.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// `id` is not one of `nodes`.
    #[error("node {id} is not in the cluster's node list")]
    UnknownSelf {
        /// The configured id.
        id: NodeId,
    },
    /// A node id appears twice.
    #[error("node {0} is listed twice")]
    DuplicateNode(NodeId),
    /// A learner that is not one of the nodes.
    #[error("learner {0} is not in the cluster's node list")]
    UnknownLearner(NodeId),
    /// The node list is empty, or the protocol needs a different number of nodes.
    #[error("{protocol:?} cannot run on {count} node(s): {why}")]
    ClusterSize {
        /// The protocol.
        protocol: Protocol,
        /// How many nodes were given.
        count: usize,
        /// What it needs.
        why: &'static str,
    },
    /// A knob that must be positive is zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    /// Two knobs that contradict each other.
    #[error("{0}")]
    Inconsistent(&'static str),
}

impl Config {
    /// How long a lease earned by a heartbeat sent at time `t` lasts on this node's own clock:
    /// [`Config::lease_duration`] shortened by the drift bound (see
    /// [`Config::clock_drift_ppm`]), rounded down.
    pub fn lease_span(&self) -> Duration {
        if self.bug == Some(Bug::LeaseWithoutDriftMargin) {
            return self.lease_duration;
        }
        let d = self.lease_duration.as_nanos();
        let ppm = u128::from(self.clock_drift_ppm);
        let span = d * (1_000_000 - ppm) / (1_000_000 + ppm);
        Duration::from_nanos(u64::try_from(span).unwrap_or(u64::MAX))
    }

    /// Defaults for `protocol` on `nodes`, as node `id`.
    pub fn new(protocol: Protocol, id: NodeId, nodes: Vec<NodeId>) -> Self {
        let basic = protocol == Protocol::BasicPaxos;
        Config {
            id,
            nodes,
            learners: Vec::new(),
            protocol,
            seed: 0,
            max_batch: if basic { 1 } else { 100 },
            max_batch_bytes: 1 << 20,
            window: 32,
            partial_batches: 1,
            skip_phase1: true,
            heartbeat_interval: Duration::from_millis(20),
            election_timeout: Duration::from_millis(500),
            backoff: Backoff {
                mode: BackoffMode::Full,
                // Two measured round trips: the same as the old fixed 1 ms on loopback, and
                // scaled to the link across regions (README, "What backoff buys").
                base: BackoffSpan::Rtts { milli: 2000 },
                cap: BackoffSpan::DEFAULT_CAP,
            },
            retry_timeout: Duration::from_millis(50),
            explicit_commit: false,
            reply_cache_per_client: 4096,
            session_timeout: crate::kv::DEFAULT_SESSION_TIMEOUT,
            max_queue: 10_000,
            snapshot_interval: 10_000,
            truncate_interval: 1_000,
            log_retain_slots: 100_000,
            durable_snapshots: true,
            catch_up_batch: 256,
            reads: ReadMode::Log,
            lease_duration: Duration::from_millis(500),
            clock_drift_ppm: 1000,
            trace_execution: false,
            bug: None,
        }
    }

    /// Checks cross-field rules; a node is only ever built from a validated config.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let count = self.nodes.len();
        if count == 0 {
            return Err(ConfigError::ClusterSize {
                protocol: self.protocol,
                count,
                why: "no nodes",
            });
        }
        if self.protocol == Protocol::Unreplicated && count != 1 {
            return Err(ConfigError::ClusterSize {
                protocol: self.protocol,
                count,
                why: "needs exactly one node",
            });
        }
        if count > 64 {
            return Err(ConfigError::ClusterSize {
                protocol: self.protocol,
                count,
                why: "at most 64 nodes",
            });
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if self.nodes[..i].contains(n) {
                return Err(ConfigError::DuplicateNode(*n));
            }
        }
        if !self.nodes.contains(&self.id) {
            return Err(ConfigError::UnknownSelf { id: self.id });
        }
        for (i, l) in self.learners.iter().enumerate() {
            if !self.nodes.contains(l) {
                return Err(ConfigError::UnknownLearner(*l));
            }
            if self.learners[..i].contains(l) {
                return Err(ConfigError::DuplicateNode(*l));
            }
        }
        if self.voters() == 0 {
            return Err(ConfigError::ClusterSize {
                protocol: self.protocol,
                count,
                why: "every node is a learner; at least one must vote",
            });
        }
        for (name, value) in [
            ("max_batch", self.max_batch as u64),
            ("max_batch_bytes", self.max_batch_bytes as u64),
            ("window", self.window as u64),
            ("partial_batches", self.partial_batches as u64),
            ("reply_cache_per_client", self.reply_cache_per_client as u64),
            ("max_queue", self.max_queue as u64),
            ("snapshot_interval", self.snapshot_interval),
            ("truncate_interval", self.truncate_interval),
            ("catch_up_batch", self.catch_up_batch as u64),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        for (name, value) in [
            ("heartbeat_interval", self.heartbeat_interval),
            ("election_timeout", self.election_timeout),
            ("retry_timeout", self.retry_timeout),
            ("session_timeout", self.session_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Zero(name));
            }
        }
        if self.heartbeat_interval >= self.election_timeout {
            return Err(ConfigError::Inconsistent(
                "heartbeat_interval must be shorter than election_timeout",
            ));
        }
        // Spans in different units are compared when they are used: the cap wins.
        let base_above_cap = match (self.backoff.base, self.backoff.cap) {
            (BackoffSpan::Fixed(base), BackoffSpan::Fixed(cap)) => base > cap,
            (BackoffSpan::Rtts { milli: base }, BackoffSpan::Rtts { milli: cap }) => base > cap,
            _ => false,
        };
        if self.backoff.mode != BackoffMode::None && base_above_cap {
            return Err(ConfigError::Inconsistent(
                "backoff base must not exceed backoff cap",
            ));
        }
        if self.reads == ReadMode::Learner && self.protocol != Protocol::MultiPaxos {
            return Err(ConfigError::Inconsistent(
                "reads = \"learner\" needs multi-paxos: learners follow a stable leader's log",
            ));
        }
        if self.reads == ReadMode::Lease {
            if self.protocol != Protocol::MultiPaxos {
                return Err(ConfigError::Inconsistent(
                    "reads = \"lease\" needs multi-paxos: only a stable leader holds a lease",
                ));
            }
            if self.lease_duration <= self.heartbeat_interval {
                return Err(ConfigError::Inconsistent(
                    "lease_duration must be longer than heartbeat_interval, which renews it",
                ));
            }
            if self.clock_drift_ppm >= 500_000 {
                return Err(ConfigError::Inconsistent(
                    "clock_drift_ppm must be below 500000 (a clock off by half or more leaves no lease)",
                ));
            }
        }
        if self.log_retain_slots < self.snapshot_interval {
            return Err(ConfigError::Inconsistent(
                "log_retain_slots must be at least snapshot_interval",
            ));
        }
        Ok(())
    }

    /// Votes needed for a quorum (a majority).
    pub fn quorum(&self) -> usize {
        self.voters() / 2 + 1
    }

    /// How many nodes vote: `nodes` less the learners.
    pub fn voters(&self) -> usize {
        self.nodes.len() - self.learners.len()
    }

    /// Whether `node` is a learner.
    pub fn is_learner(&self, node: NodeId) -> bool {
        self.learners.contains(&node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_choices() {
        for p in Protocol::ALL {
            assert_eq!(p.to_string().parse::<Protocol>(), Ok(p));
        }
        for m in BackoffMode::ALL {
            assert_eq!(m.to_string().parse::<BackoffMode>(), Ok(m));
        }
        let e = "raft".parse::<Protocol>().unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown protocol \"raft\": use multi-paxos, basic-paxos or unreplicated"
        );
        assert!(
            "Full".parse::<BackoffMode>().is_err(),
            "names are case-sensitive"
        );
    }

    #[test]
    fn learners_shrink_the_quorum_to_the_voters_and_must_be_members() {
        let ids = (0..5).map(NodeId).collect();
        let mut c = Config::new(Protocol::MultiPaxos, NodeId(0), ids);
        assert_eq!(c.quorum(), 3);
        c.learners = vec![NodeId(3), NodeId(4)];
        c.validate().unwrap();
        assert_eq!((c.voters(), c.quorum()), (3, 2));
        assert!(c.is_learner(NodeId(4)) && !c.is_learner(NodeId(0)));
        c.learners = vec![NodeId(3), NodeId(9)];
        assert_eq!(c.validate(), Err(ConfigError::UnknownLearner(NodeId(9))));
        c.learners = vec![NodeId(3), NodeId(3)];
        assert_eq!(c.validate(), Err(ConfigError::DuplicateNode(NodeId(3))));
        c.learners = (0..5).map(NodeId).collect();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("at least one must vote"), "{e}");
    }

    #[test]
    fn defaults_validate_and_mistakes_are_named() {
        let nodes = vec![NodeId(0), NodeId(1), NodeId(2)];
        let ok = Config::new(Protocol::MultiPaxos, NodeId(1), nodes.clone());
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(ok.quorum(), 2);
        let stranger = Config::new(Protocol::MultiPaxos, NodeId(7), nodes.clone());
        assert_eq!(
            stranger.validate(),
            Err(ConfigError::UnknownSelf { id: NodeId(7) })
        );
        let mut zero = ok.clone();
        zero.window = 0;
        assert_eq!(zero.validate(), Err(ConfigError::Zero("window")));
        let unrep = Config::new(Protocol::Unreplicated, NodeId(0), nodes);
        assert!(matches!(
            unrep.validate(),
            Err(ConfigError::ClusterSize { .. })
        ));
    }
}
