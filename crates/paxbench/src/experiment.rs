//! Experiment files (`bench-configs/NAME.toml`): the cluster, the protocols and their knobs, the
//! workload, the load levels, the axes to sweep as a grid, warm-up, duration and repetitions.
//! Unknown keys and bad values are errors that name the file, the line and the key; `--set
//! key=value` overrides any key (dotted paths, TOML values).
//!
//! ```toml
//! name = "quick"
//! description = "Unreplicated, Multi-Paxos and Basic Paxos on 3 nodes"
//! protocols = ["unreplicated", "multi-paxos", "basic-paxos"]
//! slo_p99_us = 10000        # saturation = highest throughput whose p99 stays under this (and no
//!                            # errors or timeouts)
//! warmup_s = 1.0            # discarded before every measured window
//! duration_s = 3.0          # measured window per point
//! repetitions = 1           # or "auto": until every point's figures are tight (see below)
//! # min_repetitions = 3     # "auto" only: at least 3 (>= 2), at most 10 (<= 100), and stop
//! # max_repetitions = 10    # once the 95% bootstrap interval of every point's median p50 and
//! # ci_width = 0.10         # median throughput spans at most 10% of that median
//! livelock_after_s = 1.0    # a point whose completions stop this long (load offered, no fault)
//!                           # is marked ⚠ livelock
//!
//! [cluster]
//! nodes = 3                 # unreplicated always runs on 1
//! learners = 0              # Multi-Paxos: this many non-voting learners too, ids after the
//!                           # voters (unreplicated runs none)
//! durability = "none"       # none | fsync
//! node_threads = 1          # each node's runtime threads (1 = one thread)
//! transport = "quic"        # quic | tcp (TLS 1.3 over TCP: no [network], no link faults)
//! hosts = "hosts.toml"      # run on these hosts over ssh (relative to this file); default: local
//! base_port = 7000          # remote nodes listen on base_port + node id (UDP, or TCP)
//!
//! [paxos]                   # knobs for every protocol (names and units as in cluster.toml)
//! window = 32
//!
//! [overrides.basic-paxos]   # knobs for one protocol only
//! max_batch = 1
//!
//! [workload]
//! keys = 100000
//! distribution = "uniform"  # uniform | zipf
//! zipf_theta = 0.99
//! read_fraction = 0.0
//! value_size = 64
//! seed = 1
//! target = "leader"         # leader | all | [0, 1, 2]; Basic Paxos has no leader: "leader" means all
//! hot_keys = 8              # conflict: the first 8 keys are a hot set...
//! hot_fraction = 0.5        # ...that half of all operations go to
//! # self_test_bug = "retry-with-fresh-id"   # SELF-TEST ONLY: broken clients (see below)
//!
//! [load]
//! mode = "open"             # open (rates, ops/s) | closed (clients x depth)
//! rates = [1000, 5000, 20000]   # or "auto": search for the knee, as `auto` says (below)
//! rates_by_protocol = { basic-paxos = [200, 1000] }   # replaces `rates` for one protocol
//! auto = { start_ops = 1000, max_ops = 400000, factor = 2.0, resolution = 0.05 }
//! auto_by_protocol = { basic-paxos = { start_ops = 50, max_ops = 5000 } }  # replaces `auto`
//! poisson = false
//! clients = [1, 4, 16]
//! depth = 1
//! timeout_ms = 2000
//! pacing_us = "auto"        # open loop: the generator wakes at most this often (µs, or
//!                           # "auto": 200 up to 80,000 ops/s, then growing with the rate)
//! hosts = ["c1"]            # generators on these hosts (default: every `client` host of the
//!                           # hosts file; none there, or a local run: one on this machine)
//!
//! [network]                 # emulated links between nodes (peer traffic only)
//! emulation = "node"        # node: inside each node, any kernel | netem: tc netem on the hosts
//! delay_ms = 0.0            # one way, every link the region matrix does not name
//! jitter_ms = 0.0           # each datagram's delay is uniform in delay ± jitter
//! loss = 0.0                # share of datagrams dropped
//! rate_mbit = 100.0         # per link (default: unlimited)
//! regions = ["eu", "us", "ap"]   # local runs: node i's region (else the hosts file's `region`)
//! region_delay_ms = { eu = { us = 40.0, ap = 75.0 }, us = { ap = 60.0 } }  # one way, symmetric
//!
//! [sweep]                   # a grid: every combination of these values
//! max_batch = [1, 100]
//! window = [1, 32]
//!
//! [sweep_by_protocol.basic-paxos]   # replaces [sweep] for one protocol ({} = no axes)
//! target = [[0, 1], [0, 1, 2]]
//! backoff = ["none", "full"]
//! backoff_base = ["1ms", "2rtt"]    # fixed, or in measured phase-1 round trips
//! ```
//!
//! Sweepable keys: every `[paxos]` knob, `nodes`, `learners`, `durability`, `transport`, and the `[workload]` keys
//! `keys`, `distribution`, `zipf_theta`, `read_fraction`, `value_size`, `target`, `hot_keys`,
//! `hot_fraction`.
//!
//! **Letting the measurements decide.** `rates = "auto"` (or a protocol's entry in
//! `rates_by_protocol`) runs a saturation search ([`crate::search`]) instead of a list: from
//! `start_ops`, the rate grows by `factor` (default 2) while levels pass (p99 under
//! `slo_p99_us`, no errors, no timeouts), up to `max_ops`; then the bracket between the last pass
//! and the first fail is bisected until `(fail − pass) / pass ≤ resolution` (default 0.05).
//! `start_ops` and `max_ops` have no default: a search needs its range. `repetitions = "auto"`
//! repeats each configuration until its intervals are tight ([`crate::repeat`]); with a search,
//! the point it judges is the knee. Both are open to `--set` (`--set load.auto.resolution=0.1`).
//!
//! **Self-test knobs.** `[paxos] self_test_bug = "local-reads" | "ack-before-durable"`
//! (`node::config::SelfTestBug`) runs deliberately broken nodes, and `[workload] self_test_bug =
//! "retry-with-fresh-id"` ([`ClientSelfTestBug`]) deliberately broken clients, so that a test
//! can show the linearizability check catching each (`tests/checker_selftest.rs`). They are never
//! set by default, and results measured with one say nothing about the protocols.
//!
//! Every knob has one definition (`node::config::PaxosKnobs` for the protocol knobs, the types
//! below for the rest). The file, each `--set` and every swept value deserialize into those
//! types when the experiment is loaded, so a value of the wrong type, swept or not, is an error
//! naming the file, the line and the key before anything starts (`--dry-run` shows them too);
//! range checks apply to every point of the grid.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use anyhow::{anyhow, Context};
use node::config::{Durability, PaxosKnobs};
use node::emulation::{Link, LinkEmulation};
use node::Transport;
use paxos::{NodeId, Protocol};
use serde::{Deserialize, Serialize};

use crate::faults::{ActionName, Fault, FaultSpec};
use crate::repeat::RepetitionRule;
use crate::search::SearchSpec;

/// Non-paxos keys a sweep may vary (every `[paxos]` knob may be swept too).
pub const OTHER_SWEEP_KEYS: &[&str] = &[
    "nodes",
    "learners",
    "durability",
    "transport",
    "keys",
    "distribution",
    "zipf_theta",
    "read_fraction",
    "value_size",
    "target",
    "hot_keys",
    "hot_fraction",
];

/// Most nodes of a cluster on one machine.
pub const MAX_LOCAL_NODES: u32 = 9;

/// Most nodes of a cluster on hosts (the hosts file must also have room for them).
pub const MAX_NODES: u32 = 64;

/// A parsed, validated experiment.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Short name; the results directory is `<timestamp>-<name>`.
    pub name: String,
    /// What the experiment shows.
    #[serde(default)]
    pub description: String,
    /// Protocols to run, each on its own cluster.
    pub protocols: Vec<Protocol>,
    /// The latency objective that defines saturation.
    #[serde(default = "default_slo")]
    pub slo_p99_us: u64,
    /// Warm-up before each measured window, seconds.
    #[serde(default = "default_warmup")]
    pub warmup_s: f64,
    /// Measured window per point, seconds.
    #[serde(default = "default_duration")]
    pub duration_s: f64,
    /// How many times every point is measured: a count, or `"auto"` (until the intervals are
    /// tight: `min_repetitions`, `max_repetitions`, `ci_width`; see [`crate::repeat`]).
    #[serde(default)]
    pub repetitions: Repetitions,
    /// `repetitions = "auto"`: at least this many repetitions (default 3, at least 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_repetitions: Option<u32>,
    /// `repetitions = "auto"`: at most this many (default 10, at most 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_repetitions: Option<u32>,
    /// `repetitions = "auto"`: stop once the 95% bootstrap interval of every point's median p50
    /// and median throughput spans at most this share of that median (default 0.10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_width: Option<f64>,
    /// A point whose completions stop for at least this long (seconds) while load is offered
    /// and no fault is in force is marked `⚠ livelock` (an election is marked as such).
    #[serde(default = "default_livelock_after")]
    pub livelock_after_s: f64,
    /// The cluster.
    #[serde(default)]
    pub cluster: ClusterSpec,
    /// Knobs for every protocol.
    #[serde(default)]
    pub paxos: PaxosKnobs,
    /// Knobs per protocol.
    #[serde(default)]
    pub overrides: BTreeMap<Protocol, PaxosKnobs>,
    /// The workload.
    #[serde(default)]
    pub workload: WorkloadSpec,
    /// The load levels.
    pub load: LoadSpec,
    /// Grid axes: each key's values, checked against the key's type when the file is loaded.
    #[serde(default)]
    pub sweep: BTreeMap<String, Vec<toml::Value>>,
    /// Grid axes for one protocol, replacing `sweep` for it (an empty table: no axes).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sweep_by_protocol: BTreeMap<Protocol, BTreeMap<String, Vec<toml::Value>>>,
    /// Emulated links between nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkSpec>,
    /// Faults applied during every measured window (`[[faults]]`, see [`crate::faults`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<FaultSpec>,
    /// What is recorded beyond the latency histograms.
    #[serde(default)]
    pub record: RecordSpec,
}

/// `[record]`: timelines and client histories.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RecordSpec {
    /// A 100 ms timeline for every point (points with faults always get one). Default false.
    #[serde(default)]
    pub timeline: bool,
    /// Record every operation the clients saw and check the history for linearizability:
    /// `auto` (points with faults), `on`, `off`. Default auto.
    #[serde(default)]
    pub history: HistoryMode,
    /// At most this many operations recorded per point (default 200 000).
    #[serde(default = "default_history_ops")]
    pub history_max_ops: usize,
    /// The checker gives up (verdict "unknown") after this long per point (default 30 s).
    #[serde(default = "default_check_budget")]
    pub check_budget_s: f64,
}

impl Default for RecordSpec {
    fn default() -> Self {
        RecordSpec {
            timeline: false,
            history: HistoryMode::Auto,
            history_max_ops: default_history_ops(),
            check_budget_s: default_check_budget(),
        }
    }
}

fn default_history_ops() -> usize {
    200_000
}

fn default_check_budget() -> f64 {
    30.0
}

/// When client histories are recorded and checked.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HistoryMode {
    /// For points with faults.
    #[default]
    Auto,
    /// For every point.
    On,
    /// Never.
    Off,
}

impl Experiment {
    /// The typed faults of every measured window.
    pub fn fault_list(&self) -> Vec<Fault> {
        self.faults
            .iter()
            .map(|f| f.fault().expect("checked when the experiment was loaded"))
            .collect()
    }

    /// Whether points get a timeline.
    pub fn wants_timeline(&self) -> bool {
        self.record.timeline || !self.faults.is_empty()
    }

    /// Whether points record and check client histories.
    pub fn wants_history(&self) -> bool {
        match self.record.history {
            HistoryMode::On => true,
            HistoryMode::Off => false,
            HistoryMode::Auto => !self.faults.is_empty(),
        }
    }
}

impl Experiment {
    /// How many repetitions each configuration gets.
    pub fn repetition_plan(&self) -> RepetitionPlan {
        match self.repetitions {
            Repetitions::Count(n) => RepetitionPlan::Fixed(n),
            Repetitions::Auto => RepetitionPlan::Auto(RepetitionRule {
                min: self.min_repetitions.unwrap_or(DEFAULT_MIN_REPETITIONS),
                max: self.max_repetitions.unwrap_or(DEFAULT_MAX_REPETITIONS),
                ci_width: self.ci_width.unwrap_or(DEFAULT_CI_WIDTH),
            }),
        }
    }

    /// `repetitions` and the keys of `"auto"`, as (key, why).
    fn check_repetitions(&self) -> Result<(), (&'static str, String)> {
        let rule = match self.repetition_plan() {
            RepetitionPlan::Fixed(0) => return Err(("repetitions", "must be at least 1".into())),
            RepetitionPlan::Fixed(_) => {
                let set = [
                    ("min_repetitions", self.min_repetitions.is_some()),
                    ("max_repetitions", self.max_repetitions.is_some()),
                    ("ci_width", self.ci_width.is_some()),
                ];
                return match set.into_iter().find(|(_, set)| *set) {
                    Some((key, _)) => Err((
                        key,
                        format!(
                            "only with repetitions = \"auto\" (here repetitions = {})",
                            self.repetitions_text()
                        ),
                    )),
                    None => Ok(()),
                };
            }
            RepetitionPlan::Auto(rule) => rule,
        };
        if rule.min < 2 {
            return Err((
                "min_repetitions",
                format!("{}: at least 2 (one figure has no interval)", rule.min),
            ));
        }
        if rule.max < rule.min {
            // Blame the key the file gave: a default is not a mistake.
            let (key, what) = match self.max_repetitions {
                Some(_) => ("max_repetitions", String::new()),
                None => ("min_repetitions", " (the default)".to_string()),
            };
            return Err((
                key,
                format!(
                    "max_repetitions {}{what} is below min_repetitions {}",
                    rule.max, rule.min
                ),
            ));
        }
        if rule.max > MOST_REPETITIONS {
            return Err((
                "max_repetitions",
                format!("{}: at most {MOST_REPETITIONS}", rule.max),
            ));
        }
        if !(rule.ci_width.is_finite() && rule.ci_width > 0.0 && rule.ci_width <= 1.0) {
            return Err((
                "ci_width",
                format!(
                    "{}: the widest interval allowed, as a share of the median, in (0, 1] (0.10 = 10%)",
                    rule.ci_width
                ),
            ));
        }
        Ok(())
    }

    fn repetitions_text(&self) -> String {
        match self.repetitions {
            Repetitions::Count(n) => n.to_string(),
            Repetitions::Auto => "\"auto\"".into(),
        }
    }

    /// Rate searches: every protocol whose rates are `"auto"` has a search, open loop, and
    /// every search is well formed. Errors are (key, why), keys dotted below `[load]`.
    fn check_search(&self) -> Result<(), (String, String)> {
        let load = &self.load;
        let key_of = |p: &Protocol| {
            if load.rates_by_protocol.contains_key(p) {
                "rates_by_protocol".to_string()
            } else {
                "rates".to_string()
            }
        };
        for p in &self.protocols {
            if *load.rates_for(*p) != Rates::Auto {
                continue;
            }
            if load.mode == LoadMode::Closed {
                return Err((
                    key_of(p),
                    format!("{p}: a rate search (\"auto\") offers rates: it needs mode = \"open\""),
                ));
            }
            if load.search_for(*p).is_none() {
                return Err((
                    key_of(p),
                    format!(
                        "{p}: rates = \"auto\" needs the search's range: `[load] auto = {{ start_ops = …, max_ops = … }}` (or `auto_by_protocol.{p}`)"
                    ),
                ));
            }
        }
        if let Some(auto) = &load.auto {
            auto.check()
                .map_err(|(k, why)| (format!("auto.{k}"), why))?;
        }
        for (p, auto) in &load.auto_by_protocol {
            if !self.protocols.contains(p) {
                return Err((
                    "auto_by_protocol".into(),
                    format!("{p} is not a protocol of this experiment"),
                ));
            }
            auto.check()
                .map_err(|(k, why)| (format!("auto_by_protocol.{p}.{k}"), why))?;
        }
        Ok(())
    }
}

/// `[network]`: delay, jitter, loss and rate on the links between nodes.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// Where the emulation runs.
    #[serde(default)]
    pub emulation: Emulation,
    /// One-way delay of every link the region matrix does not name, ms.
    #[serde(default)]
    pub delay_ms: f64,
    /// Each datagram's delay is uniform in `delay ± jitter_ms` (at most every link's delay), ms.
    #[serde(default)]
    pub jitter_ms: f64,
    /// Share of datagrams dropped, in [0, 1).
    #[serde(default)]
    pub loss: f64,
    /// Bandwidth of each link, Mbit/s (default: unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_mbit: Option<f64>,
    /// Local runs: the region of node i (a hosts file gives each host's own).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    /// One-way delay between two regions, ms, given once for either direction.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub region_delay_ms: BTreeMap<String, BTreeMap<String, f64>>,
}

/// Which implementation applies `[network]`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Emulation {
    /// Inside each node: a wrapper around its UDP socket holds back, drops and paces datagrams
    /// to each peer. Works on any kernel, locally and on hosts.
    #[default]
    Node,
    /// `tc netem` on each host (needs the kernel module and root or passwordless sudo).
    Netem,
}

impl Emulation {
    /// The name in experiment files and in `env.json`.
    pub fn name(self) -> &'static str {
        match self {
            Emulation::Node => "node",
            Emulation::Netem => "netem",
        }
    }
}

impl NetworkSpec {
    /// Range checks, as (key, why).
    fn check(&self) -> Result<(), (&'static str, String)> {
        let ms_ok = |x: f64| x.is_finite() && (0.0..=10_000.0).contains(&x);
        if !ms_ok(self.delay_ms) {
            return Err(("delay_ms", format!("{} ms: use 0 to 10000", self.delay_ms)));
        }
        if !ms_ok(self.jitter_ms) {
            return Err((
                "jitter_ms",
                format!("{} ms: use 0 to 10000", self.jitter_ms),
            ));
        }
        if !(self.loss.is_finite() && (0.0..1.0).contains(&self.loss)) {
            return Err(("loss", format!("{}: a share in [0, 1)", self.loss)));
        }
        if let Some(r) = self.rate_mbit {
            if !positive(r) {
                return Err(("rate_mbit", format!("{r}: must be > 0")));
            }
        }
        if self.jitter_ms > self.delay_ms && self.region_delay_ms.is_empty() {
            return Err((
                "jitter_ms",
                format!(
                    "{} ms of jitter on a {} ms delay: at most the delay",
                    self.jitter_ms, self.delay_ms
                ),
            ));
        }
        for (a, row) in &self.region_delay_ms {
            for (b, ms) in row {
                if *ms < self.jitter_ms {
                    return Err((
                        "jitter_ms",
                        format!(
                            "{} ms of jitter on the {ms} ms from {a} to {b}: at most the delay",
                            self.jitter_ms
                        ),
                    ));
                }
                if !ms_ok(*ms) {
                    return Err((
                        "region_delay_ms",
                        format!("{a} to {b}: {ms} ms: use 0 to 10000"),
                    ));
                }
                if self
                    .region_delay_ms
                    .get(b)
                    .and_then(|r| r.get(a))
                    .is_some_and(|other| a != b && other != ms)
                {
                    return Err((
                        "region_delay_ms",
                        format!(
                            "{a} to {b} is given twice, as {ms} and as {}",
                            self.region_delay_ms[b][a]
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The one-way delay between two regions, ms: the matrix's entry for the pair (either
    /// way round), else `delay_ms`.
    pub fn delay_between(&self, a: &str, b: &str) -> f64 {
        let entry = |x: &str, y: &str| self.region_delay_ms.get(x).and_then(|r| r.get(y));
        entry(a, b)
            .or_else(|| entry(b, a))
            .copied()
            .unwrap_or(self.delay_ms)
    }

    /// Every directed link between the nodes whose regions are `regions` (node i in
    /// `regions[i]`; an empty name is "no region": `delay_ms` applies).
    pub fn links(&self, regions: &[String]) -> Vec<Link> {
        let us = |ms: f64| (ms * 1000.0).round() as u64;
        let mut out = Vec::new();
        for (i, a) in regions.iter().enumerate() {
            for (j, b) in regions.iter().enumerate() {
                if i == j {
                    continue;
                }
                out.push(Link {
                    from: i as u32,
                    to: j as u32,
                    delay_us: us(self.delay_between(a, b)),
                    jitter_us: us(self.jitter_ms),
                    loss: self.loss,
                    rate_bytes_per_s: self.rate_mbit.map(|m| (m * 1e6 / 8.0) as u64),
                });
            }
        }
        out
    }

    /// The in-node emulation of a cluster whose node i is in `regions[i]`; links with nothing
    /// to emulate are left out.
    pub fn emulation(&self, regions: &[String]) -> LinkEmulation {
        LinkEmulation {
            links: self
                .links(regions)
                .into_iter()
                .filter(|l| {
                    l.delay_us > 0
                        || l.jitter_us > 0
                        || l.loss > 0.0
                        || l.rate_bytes_per_s.is_some()
                })
                .collect(),
            ..LinkEmulation::default()
        }
    }

    /// Regions named by the matrix that `known` does not contain.
    pub fn unknown_regions<'a>(&'a self, known: &[String]) -> Vec<&'a str> {
        let mut out: Vec<&str> = self
            .region_delay_ms
            .iter()
            .flat_map(|(a, row)| std::iter::once(a).chain(row.keys()))
            .map(String::as_str)
            .filter(|r| !known.iter().any(|k| k == r))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// `[cluster]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// Voting nodes of a replicated cluster.
    #[serde(default = "three")]
    pub nodes: u32,
    /// Multi-Paxos: non-voting learners besides the `nodes` voters, with the ids after theirs
    /// (`role = "learner"` in the cluster file). Default 0. Sweepable.
    #[serde(default)]
    pub learners: u32,
    /// How acceptors keep their state.
    #[serde(default)]
    pub durability: Durability,
    /// Threads of each node's async runtime (`[transport] threads` in cluster.toml).
    #[serde(default = "one")]
    pub node_threads: u32,
    /// What carries peers' and clients' traffic (`[transport] transport` in cluster.toml):
    /// `quic` or `tcp`. Sweepable.
    #[serde(default)]
    pub transport: Transport,
    /// A hosts file (relative to the experiment file): run over ssh on those hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<std::path::PathBuf>,
    /// Remote nodes listen on `base_port + node id` (UDP for QUIC, or TCP).
    #[serde(default = "default_base_port")]
    pub base_port: u16,
}

/// How keys are drawn.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    /// Every key equally likely.
    #[default]
    Uniform,
    /// Zipf with `zipf_theta`.
    Zipf,
}

/// Where the load generator sends requests: `"leader"`, `"all"` or a list of node ids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TargetSpec {
    /// The leader (found and followed by the generator). Basic Paxos has none: every node.
    #[default]
    Leader,
    /// Spread over every node.
    All,
    /// Spread over these nodes.
    Nodes(Vec<u32>),
}

/// `open` or `closed`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LoadMode {
    /// Offered rates on a fixed schedule.
    #[default]
    Open,
    /// Client counts, each with `depth` outstanding.
    Closed,
}

/// `[workload]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// Distinct keys.
    #[serde(default = "default_keys")]
    pub keys: u64,
    /// `uniform` or `zipf`.
    #[serde(default)]
    pub distribution: Distribution,
    /// Zipf skew.
    #[serde(default = "default_theta")]
    pub zipf_theta: f64,
    /// Fraction of gets.
    #[serde(default)]
    pub read_fraction: f64,
    /// Bytes per value.
    #[serde(default = "default_value_size")]
    pub value_size: usize,
    /// Workload seed.
    #[serde(default = "one_u64")]
    pub seed: u64,
    /// `leader`, `all`, or a list of node ids.
    #[serde(default)]
    pub target: TargetSpec,
    /// Conflict: how many keys (the first ones) form the hot set (default 0: none).
    #[serde(default)]
    pub hot_keys: u64,
    /// Conflict: the share of operations on a key drawn from the hot set, so reads and writes
    /// of one key overlap (default 0).
    #[serde(default)]
    pub hot_fraction: f64,
    /// **Self-test only**: deliberately broken clients ([`ClientSelfTestBug`]), so that the
    /// linearizability checker can be shown to catch them. Never set by default; never set it
    /// in a benchmark. (It lives here because the workload is what every generator's plan
    /// carries, local or remote.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_test_bug: Option<ClientSelfTestBug>,
}

/// A deliberately broken load generator, for the checker's self-test (`[workload]
/// self_test_bug`): what such clients record must be reported as a violation.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ClientSelfTestBug {
    /// `retry-with-fresh-id`: a request that times out is sent again under a fresh request id,
    /// and the client records the original operation as succeeded once a retry does
    /// (`loadgen::LoadConfig::self_test_retry_fresh_id`). A write whose first attempt executed
    /// but whose reply was lost runs twice.
    RetryWithFreshId,
}

/// `[load]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoadSpec {
    /// `open` or `closed`.
    pub mode: LoadMode,
    /// Open loop: offered rates, ops/s, or `"auto"`: search for the highest rate that meets
    /// the SLO (see [`crate::search`]), as `auto` says.
    #[serde(default)]
    pub rates: Rates,
    /// Open loop: rates for one protocol instead of `rates` (Basic Paxos saturates far lower).
    #[serde(default)]
    pub rates_by_protocol: BTreeMap<Protocol, Rates>,
    /// Open loop, rates `"auto"`: the search (`start_ops`, `max_ops`, `factor`, `resolution`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto: Option<SearchSpec>,
    /// The search of one protocol instead of `auto` (whole: keys it leaves out take their
    /// defaults, not `auto`'s).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub auto_by_protocol: BTreeMap<Protocol, SearchSpec>,
    /// Open loop: Poisson arrivals instead of a constant schedule.
    #[serde(default)]
    pub poisson: bool,
    /// Closed loop: client counts.
    #[serde(default)]
    pub clients: Vec<u32>,
    /// Closed loop: requests outstanding per client.
    #[serde(default = "one")]
    pub depth: u32,
    /// Per-request timeout.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Open loop: the load generator wakes at most this often and sends what is due, one
    /// write per connection (`loadgen::LoadConfig::pacing`). Finer pacing adds less waiting to
    /// latencies; coarser pacing costs the generator and the nodes fewer packets. Default
    /// `"auto"`: `loadgen::auto_pacing` of the point's offered rate.
    #[serde(default)]
    pub pacing_us: Pacing,
    /// Load generators on these hosts of the hosts file, each offering an equal share (default:
    /// every `client` host; with none, or in a local run, one generator on this machine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
}

/// `[load] rates` (or one protocol's in `rates_by_protocol`): a list of offered rates, or
/// `"auto"`.
#[derive(Clone, Debug, PartialEq)]
pub enum Rates {
    /// These rates in turn, ops/s.
    List(Vec<f64>),
    /// Search for the highest rate that meets the SLO (`[load] auto`, [`crate::search`]).
    Auto,
}

impl Default for Rates {
    fn default() -> Self {
        Rates::List(Vec::new())
    }
}

impl Serialize for Rates {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Rates::List(rates) => rates.serialize(s),
            Rates::Auto => s.serialize_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for Rates {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let why = "expected a list of rates in ops/s such as [1000, 5000], or \"auto\" (search)";
        Ok(deserialize_or_auto(d, why)?.map_or(Rates::Auto, Rates::List))
    }
}

/// Reads a `T`, or the string `"auto"` as `None`; anything else is an error that says `why`
/// (and names the string, if it was one). Every key that takes a value or `"auto"` is read
/// through it ([`Rates`], [`Pacing`], [`Repetitions`]).
fn deserialize_or_auto<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
    why: &str,
) -> Result<Option<T>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw<T> {
        Name(String),
        Value(T),
    }
    match Raw::<T>::deserialize(d).map_err(|_| serde::de::Error::custom(why))? {
        Raw::Name(n) if n == "auto" => Ok(None),
        Raw::Name(n) => Err(serde::de::Error::custom(format!("{n:?}: {why}"))),
        Raw::Value(v) => Ok(Some(v)),
    }
}

/// `[load] pacing_us`: microseconds, or `"auto"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pacing {
    /// This many µs at every rate.
    Fixed(u64),
    /// By the offered rate ([`loadgen::auto_pacing`]): 200 µs up to 80,000 ops/s, then in
    /// proportion to the rate, at most 1 ms.
    #[default]
    Auto,
}

impl Pacing {
    /// The pacing (µs) of a point offering `rate` ops/s in all.
    pub fn at(self, rate: f64) -> u64 {
        match self {
            Pacing::Fixed(us) => us,
            Pacing::Auto => loadgen::auto_pacing(rate).as_micros() as u64,
        }
    }
}

/// What [`Pacing`] accepts, for errors.
const PACING_WHY: &str = "expected microseconds such as 200, or \"auto\" (by the offered rate)";

/// `paxbench load --pacing-us`: the same values as the file's key.
impl std::str::FromStr for Pacing {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Pacing::Auto),
            us => us
                .parse()
                .map(Pacing::Fixed)
                .map_err(|_| format!("{us:?}: {PACING_WHY}")),
        }
    }
}

impl Serialize for Pacing {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Pacing::Fixed(us) => us.serialize(s),
            Pacing::Auto => s.serialize_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for Pacing {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(deserialize_or_auto(d, PACING_WHY)?.map_or(Pacing::Auto, Pacing::Fixed))
    }
}

/// `repetitions`: a count, or `"auto"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repetitions {
    /// Every point this many times.
    Count(u32),
    /// Until the intervals are tight, or the maximum ([`crate::repeat`]).
    Auto,
}

impl Default for Repetitions {
    fn default() -> Self {
        Repetitions::Count(1)
    }
}

impl Serialize for Repetitions {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Repetitions::Count(n) => n.serialize(s),
            Repetitions::Auto => s.serialize_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for Repetitions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let why = "expected a count such as 3, or \"auto\" (repeat until the intervals are tight)";
        Ok(deserialize_or_auto(d, why)?.map_or(Repetitions::Auto, Repetitions::Count))
    }
}

/// How many repetitions a configuration gets, resolved.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RepetitionPlan {
    /// Exactly this many.
    Fixed(u32),
    /// As the rule decides.
    Auto(RepetitionRule),
}

impl RepetitionPlan {
    /// The fewest repetitions a configuration can get.
    pub fn min(&self) -> u32 {
        match self {
            RepetitionPlan::Fixed(n) => *n,
            RepetitionPlan::Auto(r) => r.min,
        }
    }

    /// The most.
    pub fn max(&self) -> u32 {
        match self {
            RepetitionPlan::Fixed(n) => *n,
            RepetitionPlan::Auto(r) => r.max,
        }
    }
}

/// `repetitions = "auto"` defaults.
const DEFAULT_MIN_REPETITIONS: u32 = 3;
const DEFAULT_MAX_REPETITIONS: u32 = 10;
const DEFAULT_CI_WIDTH: f64 = 0.10;
/// The most repetitions `max_repetitions` may ask for.
const MOST_REPETITIONS: u32 = 100;

fn default_slo() -> u64 {
    10_000
}
fn default_warmup() -> f64 {
    1.0
}
fn default_livelock_after() -> f64 {
    1.0
}
fn default_duration() -> f64 {
    3.0
}
fn one() -> u32 {
    1
}
fn one_u64() -> u64 {
    1
}
fn three() -> u32 {
    3
}
fn default_keys() -> u64 {
    100_000
}
fn default_theta() -> f64 {
    0.99
}
fn default_value_size() -> usize {
    64
}
fn default_timeout() -> u64 {
    2_000
}
fn default_base_port() -> u16 {
    7000
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            nodes: 3,
            learners: 0,
            durability: Durability::None,
            node_threads: 1,
            transport: Transport::Quic,
            hosts: None,
            base_port: default_base_port(),
        }
    }
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        WorkloadSpec {
            keys: default_keys(),
            distribution: Distribution::Uniform,
            zipf_theta: default_theta(),
            read_fraction: 0.0,
            value_size: default_value_size(),
            seed: 1,
            target: TargetSpec::Leader,
            hot_keys: 0,
            hot_fraction: 0.0,
            self_test_bug: None,
        }
    }
}

impl fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetSpec::Leader => f.write_str("leader"),
            TargetSpec::All => f.write_str("all"),
            TargetSpec::Nodes(ids) => write!(f, "{ids:?}"),
        }
    }
}

impl Serialize for TargetSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            TargetSpec::Nodes(ids) => ids.serialize(s),
            named => s.serialize_str(&named.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for TargetSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Name(String),
            Ids(Vec<u32>),
        }
        let why = "expected \"leader\", \"all\" or a list of node ids such as [0, 1]";
        match Raw::deserialize(d).map_err(|_| serde::de::Error::custom(why))? {
            Raw::Name(n) if n == "leader" => Ok(TargetSpec::Leader),
            Raw::Name(n) if n == "all" => Ok(TargetSpec::All),
            Raw::Name(n) => Err(serde::de::Error::custom(format!("{n:?}: {why}"))),
            Raw::Ids(ids) if ids.is_empty() => Err(serde::de::Error::custom(why)),
            Raw::Ids(ids) => Ok(TargetSpec::Nodes(ids)),
        }
    }
}

impl TargetSpec {
    /// The load generator's target for `protocol`. Basic Paxos has no leader: every node
    /// proposes, and spreading clients over all of them is what makes the proposers contend.
    pub fn resolve(&self, protocol: Protocol) -> loadgen::Target {
        match self {
            TargetSpec::All => loadgen::Target::All,
            TargetSpec::Nodes(ids) => {
                loadgen::Target::Nodes(ids.iter().copied().map(NodeId).collect())
            }
            TargetSpec::Leader if protocol == Protocol::BasicPaxos => loadgen::Target::All,
            TargetSpec::Leader => loadgen::Target::Leader,
        }
    }
}

impl WorkloadSpec {
    /// The load generator's workload; `level` varies the seed from one load level to the next.
    pub fn resolve(&self, level: usize) -> loadgen::Workload {
        loadgen::Workload {
            keys: self.keys,
            distribution: match self.distribution {
                Distribution::Uniform => loadgen::KeyDistribution::Uniform,
                Distribution::Zipf => loadgen::KeyDistribution::Zipf {
                    theta: self.zipf_theta,
                },
            },
            read_fraction: self.read_fraction,
            value_size: self.value_size,
            seed: self.seed + level as u64,
            hot_keys: self.hot_keys,
            hot_fraction: self.hot_fraction,
        }
    }

    /// Range checks, as (key, why).
    fn check(&self) -> Result<(), (&'static str, String)> {
        if !(0.0..=1.0).contains(&self.read_fraction) {
            return Err((
                "read_fraction",
                format!("{} is not in [0, 1]", self.read_fraction),
            ));
        }
        if self.keys == 0 {
            return Err(("keys", "need at least one key".into()));
        }
        if self.value_size > 16 << 20 {
            return Err(("value_size", "values of at most 16 MiB".into()));
        }
        if self.distribution == Distribution::Zipf && !positive(self.zipf_theta) {
            return Err(("zipf_theta", format!("{} must be > 0", self.zipf_theta)));
        }
        let key = if self.hot_keys > 0 && self.hot_fraction == 0.0 {
            "hot_keys"
        } else {
            "hot_fraction"
        };
        self.resolve(0).validate().map_err(|why| (key, why))
    }
}

/// One cluster configuration of the grid: a protocol and a value for every swept key. Load
/// levels and repetitions run against it.
#[derive(Clone, Debug, PartialEq)]
pub struct GridPoint {
    /// The protocol.
    pub protocol: Protocol,
    /// Every swept key and its value here (in sweep order), as written: the point's label.
    pub params: BTreeMap<String, toml::Value>,
    /// The resolved number of voters.
    pub nodes: u32,
    /// The resolved number of learners (ids `nodes..nodes + learners`).
    pub learners: u32,
    /// How acceptors keep their state.
    pub durability: Durability,
    /// What carries the cluster's traffic.
    pub transport: Transport,
    /// The resolved protocol knobs (global, then per-protocol, then swept).
    pub paxos: PaxosKnobs,
    /// The resolved workload.
    pub workload: WorkloadSpec,
}

impl GridPoint {
    /// Every node of the cluster: the voters, then the learners.
    pub fn total_nodes(&self) -> u32 {
        self.nodes + self.learners
    }

    /// The learners' ids, after the voters'.
    pub fn learner_ids(&self) -> Vec<NodeId> {
        (self.nodes..self.total_nodes()).map(NodeId).collect()
    }

    /// Whether Gets are answered by learners from their own state (`reads = "learner"` with
    /// learners in the cluster, and reads in the workload): such a point's reads are **not
    /// linearizable**.
    pub fn learner_reads(&self) -> bool {
        self.learners > 0
            && self.paxos.reads == Some(paxos::ReadMode::Learner)
            && self.workload.read_fraction > 0.0
    }

    /// Sets one swept key to `value`, typed as that key is everywhere else.
    fn set(&mut self, key: &str, value: &toml::Value) -> Result<(), String> {
        fn typed<T: serde::de::DeserializeOwned>(v: &toml::Value) -> Result<T, String> {
            v.clone()
                .try_into()
                .map_err(|e: toml::de::Error| e.to_string().trim_end().replace('\n', " "))
        }
        let w = &mut self.workload;
        match key {
            "nodes" => self.nodes = typed(value)?,
            "learners" => self.learners = typed(value)?,
            "durability" => self.durability = typed(value)?,
            "transport" => self.transport = typed(value)?,
            "keys" => w.keys = typed(value)?,
            "distribution" => w.distribution = typed(value)?,
            "zipf_theta" => w.zipf_theta = typed(value)?,
            "read_fraction" => w.read_fraction = typed(value)?,
            "value_size" => w.value_size = typed(value)?,
            "target" => w.target = typed(value)?,
            "hot_keys" => w.hot_keys = typed(value)?,
            "hot_fraction" => w.hot_fraction = typed(value)?,
            knob => {
                let mut one = toml::Table::new();
                one.insert(knob.to_string(), value.clone());
                let knobs: PaxosKnobs = typed(&toml::Value::Table(one)).map_err(|e| {
                    if e.contains("unknown field") {
                        format!(
                            "not a sweepable key: sweep a [paxos] knob or one of {}",
                            OTHER_SWEEP_KEYS.join(", ")
                        )
                    } else {
                        e
                    }
                })?;
                self.paxos.overlay(&knobs);
            }
        }
        Ok(())
    }

    /// Range checks of the resolved point, as (key, why).
    fn check(&self, on_hosts: bool) -> Result<(), (&'static str, String)> {
        let (max, where_) = if on_hosts {
            (MAX_NODES, "on hosts")
        } else {
            (MAX_LOCAL_NODES, "on one machine")
        };
        if !(1..=max).contains(&self.nodes) {
            return Err((
                "nodes",
                format!("{} nodes: use 1 to {max} {where_}", self.nodes),
            ));
        }
        if self.learners > 0 && self.protocol != Protocol::MultiPaxos {
            return Err((
                "learners",
                format!(
                    "{} learner(s) on {}: learners run only with multi-paxos",
                    self.learners, self.protocol
                ),
            ));
        }
        if self.total_nodes() > max {
            return Err((
                "learners",
                format!(
                    "{} voters + {} learners = {} nodes: at most {max} {where_}",
                    self.nodes,
                    self.learners,
                    self.total_nodes()
                ),
            ));
        }
        self.workload.check()?;
        if let Some(why) = self
            .paxos
            .self_test_bug
            .and_then(|bug| bug.unusable(self.protocol, self.durability))
        {
            return Err(("self_test_bug", why));
        }
        // The core's own cross-field rules (heartbeat shorter than the election timeout, ...),
        // so a bad combination is found before a cluster refuses to start.
        let ids: Vec<NodeId> = (0..self.total_nodes()).map(NodeId).collect();
        let mut core = paxos::Config::new(self.protocol, ids[0], ids);
        core.learners = self.learner_ids();
        self.paxos.apply(&mut core);
        core.validate().map_err(|e| ("paxos", e.to_string()))
    }
}

impl Experiment {
    /// Reads `path`, applies `--set` overrides, validates.
    pub fn load(path: &Path, sets: &[String]) -> anyhow::Result<Experiment> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::parse(path, &text, sets)
    }

    /// Parses experiment text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str, sets: &[String]) -> anyhow::Result<Experiment> {
        let file = path.display();
        // Parse the file alone first, so its own mistakes come back with line numbers.
        let plain: Experiment =
            toml::from_str(text).map_err(|e| anyhow!("{file}: {}", e.to_string().trim_end()))?;
        plain.validate().map_err(|(table, key, why)| {
            anyhow!("{file}:{}: `{key}`: {why}", line_of(text, table, &key))
        })?;
        if sets.is_empty() {
            return Ok(plain.resolved());
        }
        let mut table: toml::Table = toml::from_str(text)?;
        for set in sets {
            apply_set(&mut table, set).with_context(|| format!("--set {set}"))?;
        }
        let merged: Experiment = table.try_into().map_err(|e: toml::de::Error| {
            anyhow!(
                "{file} with --set {}: {}",
                sets.join(" "),
                e.to_string().trim_end()
            )
        })?;
        merged
            .validate()
            .map_err(|(_, key, why)| anyhow!("{file} with --set: `{key}`: {why}"))?;
        Ok(merged.resolved())
    }

    /// The experiment with the defaults of `repetitions = "auto"` written out, so that
    /// config.toml records the rule that ran.
    fn resolved(mut self) -> Experiment {
        if let RepetitionPlan::Auto(rule) = self.repetition_plan() {
            self.min_repetitions = Some(rule.min);
            self.max_repetitions = Some(rule.max);
            self.ci_width = Some(rule.ci_width);
        }
        self
    }

    /// Checks everything, every grid point included; errors are (table, key, why).
    fn validate(&self) -> Result<(), (&'static str, String, String)> {
        let top = |k: &str, why: String| Err(("", k.to_string(), why));
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return top(
                "name",
                format!("{:?} must be letters, digits, - or _", self.name),
            );
        }
        if self.protocols.is_empty() {
            return top("protocols", "name at least one protocol".into());
        }
        for p in self.overrides.keys() {
            if !self.protocols.contains(p) {
                return top(
                    "overrides",
                    format!("[overrides.{p}] names a protocol not in `protocols`"),
                );
            }
        }
        let layers = std::iter::once(&self.paxos).chain(self.overrides.values());
        if let Some((key, why)) = layers.filter_map(PaxosKnobs::conflict).next() {
            return Err(("paxos", key.to_string(), why));
        }
        if !(finite_at_least(self.warmup_s, 0.0) && positive(self.duration_s))
            || self.duration_s > 3600.0
        {
            return top(
                "duration_s",
                format!(
                    "warm-up {} s and duration {} s must be >= 0 and in (0, 3600]",
                    self.warmup_s, self.duration_s
                ),
            );
        }
        self.check_repetitions()
            .map_err(|(k, why)| ("", k.to_string(), why))?;
        // The timeline that shows a stall has 100 ms buckets: a shorter threshold would call
        // any empty bucket a livelock.
        if !(self.livelock_after_s.is_finite() && (0.1..=3600.0).contains(&self.livelock_after_s)) {
            return top(
                "livelock_after_s",
                format!(
                    "{}: must be in [0.1, 3600] seconds (the timeline's buckets are 100 ms)",
                    self.livelock_after_s
                ),
            );
        }
        let in_table =
            |table: &'static str| move |(k, why): (&str, String)| (table, k.to_string(), why);
        if !(1..=64).contains(&self.cluster.node_threads) {
            return Err(in_table("cluster")((
                "node_threads",
                format!("{}: use 1 to 64", self.cluster.node_threads),
            )));
        }
        self.load.check().map_err(in_table("load"))?;
        self.check_search().map_err(|(k, why)| ("load", k, why))?;
        for p in self.load.rates_by_protocol.keys() {
            if !self.protocols.contains(p) {
                return Err(in_table("load")((
                    "rates_by_protocol",
                    format!("{p} is not a protocol of this experiment"),
                )));
            }
        }
        self.workload.check().map_err(in_table("workload"))?;
        if let Some(net) = &self.network {
            net.check().map_err(in_table("network"))?;
            if !net.regions.is_empty() && self.cluster.hosts.is_some() {
                return Err(in_table("network")((
                    "regions",
                    "with a hosts file, each host's `region` places its node; drop `regions`"
                        .into(),
                )));
            }
        }
        for p in self.sweep_by_protocol.keys() {
            if !self.protocols.contains(p) {
                return top(
                    "sweep_by_protocol",
                    format!("sweep_by_protocol names {p}, which is not in `protocols`"),
                );
            }
        }
        let sweeps = std::iter::once(&self.sweep).chain(self.sweep_by_protocol.values());
        for (k, values) in sweeps.flatten() {
            if values.is_empty() {
                return Err((
                    "sweep",
                    k.clone(),
                    "a sweep axis needs at least one value".into(),
                ));
            }
        }
        let grid = self.grid()?;
        if let Some(g) = grid.iter().find(|g| g.transport == Transport::Tcp) {
            if self.network.is_some() {
                let swept = g.params.contains_key("transport");
                return Err((
                    if swept { "sweep" } else { "cluster" },
                    "transport".into(),
                    format!(
                        "{} runs with \"tcp\", which cannot have [network]: emulated links live in the QUIC nodes' UDP sockets (and netem rules match the nodes' UDP ports); use quic, or drop [network]",
                        g.protocol
                    ),
                ));
            }
        }
        self.check_faults(&grid)?;
        if let Some(net) = self.network.as_ref().filter(|n| !n.regions.is_empty()) {
            let unknown = net.unknown_regions(&net.regions);
            if !unknown.is_empty() {
                return Err(in_table("network")((
                    "region_delay_ms",
                    format!("names regions no node is in: {}", unknown.join(", ")),
                )));
            }
            if let Some(g) = grid
                .iter()
                .find(|g| net.regions.len() < g.total_nodes() as usize)
            {
                return Err(in_table("network")((
                    "regions",
                    format!(
                        "{} region(s) for {} nodes ({}): name one per node",
                        net.regions.len(),
                        g.total_nodes(),
                        g.protocol
                    ),
                )));
            }
        }
        Ok(())
    }

    /// The fault schedule and the recording it needs, against every grid point. Errors name
    /// the fault by its place in the file, as key `faults[<n>].<key>` (1-based).
    fn check_faults(&self, grid: &[GridPoint]) -> Result<(), (&'static str, String, String)> {
        let r = &self.record;
        if !(r.check_budget_s.is_finite() && r.check_budget_s > 0.0 && r.check_budget_s <= 3600.0) {
            return Err((
                "record",
                "check_budget_s".into(),
                format!("{}: must be in (0, 3600]", r.check_budget_s),
            ));
        }
        if r.history_max_ops == 0 {
            return Err((
                "record",
                "history_max_ops".into(),
                "must be at least 1".into(),
            ));
        }
        let window = std::time::Duration::from_secs_f64(self.duration_s);
        for (i, spec) in self.faults.iter().enumerate() {
            let at = |(key, why): (String, String)| {
                let why = format!("({}) {why}", spec.action.name());
                ("faults", format!("faults[{}].{key}", i + 1), why)
            };
            let fault = spec.fault().map_err(at)?;
            for g in grid {
                fault.check(g.total_nodes(), window).map_err(|(k, why)| {
                    at((
                        k,
                        format!("{why} ({} on {} node(s))", g.protocol, g.total_nodes()),
                    ))
                })?;
                if fault.action.name() == ActionName::Reconfigure
                    && g.protocol != Protocol::MultiPaxos
                {
                    return Err(at((
                        "action".into(),
                        format!(
                            "a membership change runs only with multi-paxos, not {}",
                            g.protocol
                        ),
                    )));
                }
            }
            if fault.action.on_links()
                && self
                    .network
                    .as_ref()
                    .is_some_and(|n| n.emulation == Emulation::Netem)
            {
                return Err(at((
                    "action".into(),
                    "link faults go through the nodes' emulated links: use `[network] emulation = \"node\"`".into(),
                )));
            }
            if let Some(g) = grid
                .iter()
                .find(|g| fault.action.on_links() && g.transport == Transport::Tcp)
            {
                return Err(at((
                    "action".into(),
                    format!(
                        "link faults go through the QUIC nodes' emulated UDP sockets, and {} runs with transport = \"tcp\": use quic, or a kill or pause fault",
                        g.protocol
                    ),
                )));
            }
        }
        if self.wants_history() {
            if let Some(g) = grid.iter().find(|g| g.workload.read_fraction <= 0.0) {
                return Err((
                    "workload",
                    "read_fraction".into(),
                    format!(
                        "client histories are checked for linearizability, which needs reads: {} runs with read_fraction = {} (set it above 0, or `[record] history = \"off\"`)",
                        g.protocol, g.workload.read_fraction
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Every cluster configuration of the grid, protocol by protocol, each typed and checked.
    /// A swept knob that one protocol ignores (e.g. `window` for Unreplicated) is still listed
    /// for it, so tables line up. Errors are (table, key, why).
    pub fn grid(&self) -> Result<Vec<GridPoint>, (&'static str, String, String)> {
        let mut out = Vec::new();
        for &protocol in &self.protocols {
            let sweep = self.sweep_by_protocol.get(&protocol).unwrap_or(&self.sweep);
            for params in &combinations(sweep) {
                let mut paxos = self.paxos.clone();
                if let Some(o) = self.overrides.get(&protocol) {
                    paxos.overlay(o);
                }
                let mut g = GridPoint {
                    protocol,
                    params: params.clone(),
                    nodes: self.cluster.nodes,
                    learners: self.cluster.learners,
                    durability: self.cluster.durability,
                    transport: self.cluster.transport,
                    paxos,
                    workload: self.workload.clone(),
                };
                for (k, v) in params {
                    g.set(k, v)
                        .map_err(|why| ("sweep", k.clone(), format!("value {v}: {why}")))?;
                }
                if protocol == Protocol::Unreplicated {
                    g.nodes = 1;
                    g.learners = 0;
                }
                g.check(self.cluster.hosts.is_some()).map_err(|(k, why)| {
                    let table = if params.contains_key(k) { "sweep" } else { "" };
                    let label = params_text(params);
                    let at = if label.is_empty() {
                        String::new()
                    } else {
                        format!(" (at {label})")
                    };
                    (table, k.to_string(), format!("{protocol}{at}: {why}"))
                })?;
                out.push(g);
            }
        }
        Ok(out)
    }
}

/// Every combination of the axes' values, in axis order (one empty combination for no axes).
fn combinations(sweep: &BTreeMap<String, Vec<toml::Value>>) -> Vec<BTreeMap<String, toml::Value>> {
    let mut combos: Vec<BTreeMap<String, toml::Value>> = vec![BTreeMap::new()];
    for (key, values) in sweep {
        combos = combos
            .into_iter()
            .flat_map(|c| {
                values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.insert(key.clone(), v.clone());
                    c
                })
            })
            .collect();
    }
    combos
}

impl LoadSpec {
    /// The rates of `protocol`: its own in `rates_by_protocol`, else `rates`.
    pub fn rates_for(&self, protocol: Protocol) -> &Rates {
        self.rates_by_protocol.get(&protocol).unwrap_or(&self.rates)
    }

    /// The search of `protocol` when its rates are `"auto"`: its own in `auto_by_protocol`,
    /// else `auto`.
    pub fn search_for(&self, protocol: Protocol) -> Option<&SearchSpec> {
        match self.rates_for(protocol) {
            Rates::Auto => self.auto_by_protocol.get(&protocol).or(self.auto.as_ref()),
            Rates::List(_) => None,
        }
    }

    /// Range checks, as (key, why).
    fn check(&self) -> Result<(), (&'static str, String)> {
        let bad = |rates: &Rates| match rates {
            Rates::List(r) => r.is_empty() || r.iter().any(|r| !positive(*r)),
            Rates::Auto => false,
        };
        match self.mode {
            LoadMode::Open if bad(&self.rates) => Err((
                "rates",
                "open loop needs positive rates, or \"auto\"".into(),
            )),
            LoadMode::Closed
                if self.clients.is_empty() || self.clients.contains(&0) || self.depth == 0 =>
            {
                Err((
                    "clients",
                    "closed loop needs client counts and a depth of at least 1".into(),
                ))
            }
            _ => {
                for (p, rates) in &self.rates_by_protocol {
                    if bad(rates) {
                        return Err(("rates_by_protocol", format!("{p}: give positive rates")));
                    }
                }
                Ok(())
            }
        }
    }
}

/// `k=v k=v` of swept parameters.
pub fn params_text(params: &BTreeMap<String, toml::Value>) -> String {
    if params.is_empty() {
        return "no swept keys".into();
    }
    params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A finite number above zero (NaN is not).
fn positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

/// A finite number of at least `min` (NaN is not).
fn finite_at_least(x: f64, min: f64) -> bool {
    x.is_finite() && x >= min
}

/// Sets a dotted key in a TOML table; the value is parsed as TOML, or taken as a string.
fn apply_set(table: &mut toml::Table, set: &str) -> anyhow::Result<()> {
    let (key, raw) = set
        .split_once('=')
        .ok_or_else(|| anyhow!("expected key=value"))?;
    let value: toml::Value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").expect("just parsed"),
        Err(_) => toml::Value::String(raw.to_string()),
    };
    let parts: Vec<&str> = key.trim().split('.').collect();
    let (last, path) = parts.split_last().ok_or_else(|| anyhow!("empty key"))?;
    let mut cur = table;
    for p in path {
        cur = cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| anyhow!("`{p}` is not a table"))?;
    }
    cur.insert(last.to_string(), value);
    Ok(())
}

/// The 1-based line where `key` is assigned inside `[table]` (`""`: the top level, before any
/// table; then anywhere), or where a table named `key` starts; 0 if neither is found.
fn line_of(text: &str, table: &str, key: &str) -> usize {
    // `faults[<n>].<key>`: the key of the n-th `[[faults]]` entry (1-based).
    if let Some((n, key)) = key
        .strip_prefix("faults[")
        .and_then(|k| k.split_once("]."))
        .and_then(|(n, k)| Some((n.parse::<usize>().ok()?.checked_sub(1)?, k)))
    {
        return fault_line(text, n, key);
    }
    // `auto.factor`: `factor` in `[load.auto]`, else (an inline table) the line of `auto`.
    if let Some((inner, last)) = key.rsplit_once('.') {
        let sub = if table.is_empty() {
            inner.to_string()
        } else {
            format!("{table}.{inner}")
        };
        return match line_in_table(text, &sub, last) {
            Some(line) => line,
            None => line_of(text, table, inner),
        };
    }
    let mut current = String::new();
    let mut anywhere = 0;
    let headers = [
        format!("[{key}]"),
        format!("[{key}."),
        format!("[overrides.{key}]"),
    ];
    for (i, line) in text.lines().enumerate() {
        let l = line.trim_start();
        if l.starts_with('[') {
            if headers.iter().any(|h| l.starts_with(h.as_str())) && anywhere == 0 {
                anywhere = i + 1;
            }
            let name = l.trim_start_matches('[').split(']').next().unwrap_or("");
            current = name.trim().to_string();
            continue;
        }
        let assigns = l
            .strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with('='));
        if assigns {
            if current == table {
                return i + 1;
            }
            if anywhere == 0 {
                anywhere = i + 1;
            }
        }
    }
    anywhere
}

/// The 1-based line where `key` is assigned inside `[table]` itself, if it is.
fn line_in_table(text: &str, table: &str, key: &str) -> Option<usize> {
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim_start();
        if l.starts_with('[') {
            let name = l.trim_start_matches('[').split(']').next().unwrap_or("");
            current = name.trim().to_string();
            continue;
        }
        let assigns = l
            .strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with('='));
        if assigns && current == table {
            return Some(i + 1);
        }
    }
    None
}

/// The line of `key` in the `index`-th `[[faults]]` entry, else of that entry's header.
fn fault_line(text: &str, index: usize, key: &str) -> usize {
    let (mut seen, mut inside, mut header) = (0, false, 0);
    for (i, line) in text.lines().enumerate() {
        let l = line.trim_start();
        if l.starts_with('[') {
            inside = l.starts_with("[[faults]]") && {
                seen += 1;
                seen == index + 1
            };
            if inside {
                header = i + 1;
            }
            continue;
        }
        let assigns = l
            .strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with('='));
        if assigns && inside {
            return i + 1;
        }
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repeat::RepetitionRule;

    const QUICKISH: &str = r#"
name = "t"
protocols = ["unreplicated", "multi-paxos"]
duration_s = 2.0

[paxos]
window = 8

[overrides.multi-paxos]
max_batch = 50

[load]
mode = "open"
rates = [100, 200]

[sweep]
max_batch = [1, 10]
value_size = [16, 64]
"#;

    #[test]
    fn a_protocol_may_have_its_own_sweep() {
        let text = format!(
            "{QUICKISH}\n[sweep_by_protocol.multi-paxos]\ntarget = [[0, 1], [0, 1, 2]]\nbackoff = [\"none\", \"full\", \"equal\"]\n[sweep_by_protocol.unreplicated]\n"
        );
        let grid = Experiment::parse(Path::new("t.toml"), &text, &[])
            .unwrap()
            .grid()
            .unwrap();
        let of = |p| grid.iter().filter(move |g| g.protocol == p);
        assert_eq!(of(Protocol::MultiPaxos).count(), 2 * 3);
        assert!(of(Protocol::MultiPaxos)
            .all(|g| g.params.contains_key("backoff") && !g.params.contains_key("max_batch")));
        // An empty table: one point, no axes.
        assert_eq!(of(Protocol::Unreplicated).count(), 1);
        assert!(of(Protocol::Unreplicated).all(|g| g.params.is_empty()));
        let text = format!("{QUICKISH}\n[sweep_by_protocol.basic-paxos]\nwindow = [1]\n");
        let e = Experiment::parse(Path::new("t.toml"), &text, &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`sweep_by_protocol`") && e.contains("basic-paxos"),
            "{e}"
        );
        let text = format!("{QUICKISH}\n[sweep_by_protocol.multi-paxos]\nbackoff = [\"fast\"]\n");
        let e = Experiment::parse(Path::new("t.toml"), &text, &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("`backoff`") && e.contains("fast"), "{e}");
    }

    #[test]
    fn the_grid_is_every_combination_per_protocol() {
        let e = Experiment::parse(Path::new("t.toml"), QUICKISH, &[]).unwrap();
        let grid = e.grid().unwrap();
        assert_eq!(grid.len(), 2 * 2 * 2);
        let mp: Vec<_> = grid
            .iter()
            .filter(|g| g.protocol == Protocol::MultiPaxos)
            .collect();
        assert!(mp.iter().all(|g| g.nodes == 3 && g.paxos.window == Some(8)));
        // The sweep wins over the per-protocol override.
        assert!(mp.iter().any(|g| g.paxos.max_batch == Some(1)));
        assert!(grid
            .iter()
            .filter(|g| g.protocol == Protocol::Unreplicated)
            .all(|g| g.nodes == 1));
        assert!(grid.iter().any(|g| g.workload.value_size == 16));
    }

    #[test]
    fn the_livelock_threshold_is_typed_checked_and_named_with_its_line() {
        let e = Experiment::parse(Path::new("t.toml"), QUICKISH, &[]).unwrap();
        assert_eq!(e.livelock_after_s, 1.0, "the default");
        let text = QUICKISH.replace(
            "duration_s = 2.0",
            "duration_s = 2.0\nlivelock_after_s = 2.5",
        );
        let e = Experiment::parse(Path::new("t.toml"), &text, &[]).unwrap();
        assert_eq!(e.livelock_after_s, 2.5);
        for bad in ["0.05", "0", "-1", "1e9"] {
            let text = QUICKISH.replace(
                "duration_s = 2.0",
                &format!("duration_s = 2.0\nlivelock_after_s = {bad}"),
            );
            let msg = Experiment::parse(Path::new("t.toml"), &text, &[])
                .unwrap_err()
                .to_string();
            assert!(
                msg.starts_with("t.toml:5: `livelock_after_s`: ") && msg.contains("[0.1, 3600]"),
                "{bad}: {msg}"
            );
        }
        let text = QUICKISH.replace(
            "duration_s = 2.0",
            "duration_s = 2.0\nlivelock_after_s = \"soon\"",
        );
        let msg = Experiment::parse(Path::new("t.toml"), &text, &[])
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("line 5") && msg.contains("livelock_after_s"),
            "{msg}"
        );
        let msg = Experiment::parse(
            Path::new("t.toml"),
            QUICKISH,
            &["livelock_after_s=0.01".into()],
        )
        .unwrap_err()
        .to_string();
        assert!(msg.contains("`livelock_after_s`"), "{msg}");
    }

    #[test]
    fn rates_may_be_a_search_and_its_mistakes_name_the_key_and_line() {
        let parse = |text: &str| Experiment::parse(Path::new("t.toml"), text, &[]);
        let err = |text: &str| parse(text).unwrap_err().to_string();
        let with = |load: &str| QUICKISH.replace("rates = [100, 200]", load);
        let auto = with("rates = \"auto\"\nauto = { start_ops = 100, max_ops = 10000 }");
        let e = parse(&auto).unwrap();
        assert_eq!(e.load.rates, Rates::Auto);
        let s = e.load.search_for(Protocol::MultiPaxos).unwrap();
        assert_eq!(
            (s.start_ops, s.max_ops, s.factor, s.resolution),
            (100.0, 10000.0, 2.0, 0.05),
            "factor and resolution have defaults"
        );
        let again = parse(&toml::to_string_pretty(&e).unwrap()).unwrap();
        assert_eq!(again, e, "config.toml reads back the same");
        // One protocol searches on its own terms, another keeps a list.
        let text = with(
            "rates = \"auto\"\nrates_by_protocol = { unreplicated = [100] }\n\n[load.auto_by_protocol.multi-paxos]\nstart_ops = 50\nmax_ops = 800\nfactor = 1.5",
        );
        let e = parse(&text).unwrap();
        assert!(e.load.search_for(Protocol::Unreplicated).is_none());
        assert_eq!(
            e.load.rates_for(Protocol::Unreplicated),
            &Rates::List(vec![100.0])
        );
        let mp = e.load.search_for(Protocol::MultiPaxos).unwrap();
        assert_eq!((mp.start_ops, mp.factor, mp.resolution), (50.0, 1.5, 0.05));
        // Misspelt, missing, out of range, unknown: each names the key and its line.
        for (text, expect) in [
            (with("rates = \"atuo\""), vec!["line 14", "\"atuo\"", "\"auto\""]),
            (with("rates = [100, \"x\"]"), vec!["line 14", "list of rates"]),
            (with("rates = \"auto\""), vec!["t.toml:14: `rates`", "needs the search's range"]),
            (
                with("rates = \"auto\"\nauto = { start_ops = 100, max_ops = 50 }"),
                vec!["t.toml:15: `auto.max_ops`", "above start_ops"],
            ),
            (
                with("rates = \"auto\"\nauto = { start_ops = 100, max_ops = 500, factor = 1 }"),
                vec!["t.toml:15: `auto.factor`", "(1, 100]"],
            ),
            (
                with("rates = \"auto\"\n\n[load.auto]\nstart_ops = 100\nmax_ops = 900\nresolution = 0\n"),
                vec!["t.toml:19: `auto.resolution`", "(0, 1]"],
            ),
            (
                with("rates = \"auto\"\nauto = { start_ops = 100, max_ops = 500, fctor = 3 }"),
                vec!["line 15", "fctor"],
            ),
            (
                with("rates = \"auto\"\nauto = { start_ops = \"slow\", max_ops = 500 }"),
                vec!["line 15", "slow"],
            ),
            (
                with("rates = \"auto\"\nauto = { start_ops = 1, max_ops = 1e9, factor = 1.01 }"),
                vec!["`auto.factor`", "levels"],
            ),
            (
                with("rates = [100]\nauto_by_protocol = { basic-paxos = { start_ops = 1, max_ops = 9 } }"),
                vec!["t.toml:15: `auto_by_protocol`", "basic-paxos is not a protocol"],
            ),
            (
                with("rates = \"auto\"\nauto = { start_ops = 100, max_ops = 500 }")
                    .replace("mode = \"open\"", "mode = \"closed\"\nclients = [1]"),
                vec!["`rates`", "mode = \"open\""],
            ),
        ] {
            let msg = err(&text);
            assert!(expect.iter().all(|x| msg.contains(x)), "{expect:?}: {msg}");
        }
        let msg = Experiment::parse(
            Path::new("t.toml"),
            &auto,
            &["load.auto.resolution=2".into()],
        )
        .unwrap_err()
        .to_string();
        assert!(
            msg.contains("--set") && msg.contains("`auto.resolution`"),
            "{msg}"
        );
    }

    #[test]
    fn repetitions_may_be_auto_with_a_rule_whose_mistakes_are_named() {
        let parse = |text: &str| Experiment::parse(Path::new("t.toml"), text, &[]);
        let with =
            |top: &str| QUICKISH.replace("duration_s = 2.0", &format!("duration_s = 2.0\n{top}"));
        assert_eq!(
            parse(QUICKISH).unwrap().repetition_plan(),
            RepetitionPlan::Fixed(1)
        );
        let e = parse(&with("repetitions = \"auto\"")).unwrap();
        let rule = RepetitionRule {
            min: 3,
            max: 10,
            ci_width: 0.10,
        };
        assert_eq!(e.repetition_plan(), RepetitionPlan::Auto(rule));
        let written = toml::to_string_pretty(&e).unwrap();
        assert!(
            written.contains("repetitions = \"auto\"")
                && written.contains("max_repetitions = 10")
                && written.contains("ci_width = 0.1"),
            "config.toml records the rule: {written}"
        );
        assert_eq!(parse(&written).unwrap(), e);
        let e = parse(&with(
            "repetitions = \"auto\"\nmin_repetitions = 2\nmax_repetitions = 4\nci_width = 0.2",
        ))
        .unwrap();
        assert_eq!(
            e.repetition_plan(),
            RepetitionPlan::Auto(RepetitionRule {
                min: 2,
                max: 4,
                ci_width: 0.2
            })
        );
        for (top, expect) in [
            (
                "repetitions = \"atuo\"",
                vec!["line 5", "\"atuo\"", "\"auto\""],
            ),
            ("repetitions = 2.5", vec!["line 5", "a count"]),
            (
                "repetitions = 0",
                vec!["t.toml:5: `repetitions`", "at least 1"],
            ),
            (
                "repetitions = 3\nmax_repetitions = 5",
                vec![
                    "t.toml:6: `max_repetitions`",
                    "only with repetitions = \"auto\"",
                ],
            ),
            (
                "repetitions = \"auto\"\nmin_repetitions = 1",
                vec!["t.toml:6: `min_repetitions`", "at least 2"],
            ),
            (
                "repetitions = \"auto\"\nmax_repetitions = 2",
                vec!["t.toml:6: `max_repetitions`", "below min_repetitions 3"],
            ),
            (
                "repetitions = \"auto\"\nmin_repetitions = 12",
                vec!["t.toml:6: `min_repetitions`", "10 (the default)"],
            ),
            (
                "repetitions = \"auto\"\nmax_repetitions = 1000",
                vec!["`max_repetitions`", "at most 100"],
            ),
            (
                "repetitions = \"auto\"\nci_width = 0",
                vec!["t.toml:6: `ci_width`", "(0, 1]"],
            ),
            (
                "repetitions = \"auto\"\nci_width = \"10%\"",
                vec!["line 6", "ci_width"],
            ),
        ] {
            let msg = parse(&with(top)).unwrap_err().to_string();
            assert!(
                expect.iter().all(|x| msg.contains(x)),
                "{top}: {expect:?}: {msg}"
            );
        }
    }

    #[test]
    fn pacing_is_auto_by_default_or_fixed_and_a_wrong_value_is_named() {
        let parse = |text: &str| Experiment::parse(Path::new("t.toml"), text, &[]);
        let with = |line: &str| {
            QUICKISH.replace("rates = [100, 200]", &format!("rates = [100, 200]\n{line}"))
        };
        let e = parse(QUICKISH).unwrap();
        assert_eq!(e.load.pacing_us, Pacing::Auto);
        assert_eq!(
            (e.load.pacing_us.at(1_000.0), Pacing::Auto.at(200_000.0)),
            (200, 500)
        );
        let e = parse(&with("pacing_us = 350")).unwrap();
        assert_eq!(e.load.pacing_us.at(200_000.0), 350);
        let written = toml::to_string_pretty(&e).unwrap();
        assert!(written.contains("pacing_us = 350"), "{written}");
        assert_eq!(parse(&written).unwrap(), e);
        let e = parse(&with("pacing_us = \"auto\"")).unwrap();
        assert!(toml::to_string_pretty(&e)
            .unwrap()
            .contains("pacing_us = \"auto\""));
        assert_eq!("auto".parse(), Ok(Pacing::Auto));
        assert_eq!("350".parse(), Ok(Pacing::Fixed(350)));
        for bad in ["fast", "-1", "0.5", ""] {
            let msg = bad.parse::<Pacing>().unwrap_err();
            assert!(
                msg.contains(&format!("{bad:?}")) && msg.contains("\"auto\""),
                "{msg}"
            );
        }
        for bad in ["pacing_us = \"fast\"", "pacing_us = -1", "pacing_us = 0.5"] {
            let msg = parse(&with(bad)).unwrap_err().to_string();
            assert!(
                msg.contains("line 15") && msg.contains("microseconds") && msg.contains("\"auto\""),
                "{bad}: {msg}"
            );
        }
    }

    #[test]
    fn mistakes_name_file_line_and_key() {
        let e = Experiment::parse(
            Path::new("t.toml"),
            &QUICKISH.replace("window = 8", "windw = 8"),
            &[],
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("t.toml: ") && msg.contains("line 7") && msg.contains("`windw`"),
            "{msg}"
        );
        let e = Experiment::parse(
            Path::new("t.toml"),
            &QUICKISH.replace("duration_s", "duraton_s"),
            &[],
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("t.toml") && msg.contains("line 4") && msg.contains("duraton_s"),
            "{msg}"
        );
        let e = Experiment::parse(
            Path::new("t.toml"),
            &QUICKISH.replace("value_size = [16, 64]", "colour = [1]"),
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("`colour`"), "{e}");
        let e = Experiment::parse(
            Path::new("t.toml"),
            &QUICKISH.replace("\"open\"", "\"ajar\""),
            &[],
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("line 13") && msg.contains("mode = \"ajar\"") && msg.contains("closed"),
            "{msg}"
        );
    }

    #[test]
    fn set_overrides_any_key() {
        let sets = vec![
            "duration_s=0.5".to_string(),
            "load.rates=[5]".to_string(),
            "cluster.nodes=5".to_string(),
        ];
        let e = Experiment::parse(Path::new("t.toml"), QUICKISH, &sets).unwrap();
        assert_eq!(e.duration_s, 0.5);
        assert_eq!(e.load.rates, Rates::List(vec![5.0]));
        assert_eq!(e.cluster.nodes, 5);
        let err = Experiment::parse(Path::new("t.toml"), QUICKISH, &["cluster.nodes=99".into()])
            .unwrap_err();
        assert!(
            err.to_string().contains("--set") && err.to_string().contains("nodes"),
            "{err}"
        );
        let e = Experiment::parse(Path::new("t.toml"), QUICKISH, &[]).unwrap();
        assert_eq!(
            e.cluster.node_threads, 1,
            "one runtime thread per node by default"
        );
        let e = Experiment::parse(
            Path::new("t.toml"),
            QUICKISH,
            &["cluster.node_threads=2".into()],
        )
        .unwrap();
        assert_eq!(e.cluster.node_threads, 2);
        let err = Experiment::parse(
            Path::new("t.toml"),
            QUICKISH,
            &["cluster.node_threads=0".into()],
        )
        .unwrap_err();
        assert!(err.to_string().contains("node_threads"), "{err}");
    }

    #[test]
    fn swept_values_are_typed_and_range_checked_at_load() {
        let with_sweep = |sweep: &str| QUICKISH.replace("value_size = [16, 64]", sweep);
        // The wrong type is an error naming the line of the sweep, the key and the value,
        // never a default.
        for (sweep, expect) in [
            (r#"nodes = ["three", 5.5, 70]"#, "\"three\""),
            ("nodes = [3, 5.5]", "5.5"),
            ("nodes = [3, 70]", "70 nodes"),
            (r#"window = ["wide"]"#, "\"wide\""),
            (r#"backoff = ["fast"]"#, "fast"),
            (r#"durability = ["paper"]"#, "paper"),
            ("read_fraction = [0.5, 2.0]", "not in [0, 1]"),
            (r#"target = ["everyone"]"#, "everyone"),
            ("heartbeat_interval_us = [600000]", "heartbeat_interval"),
        ] {
            let e = Experiment::parse(Path::new("t.toml"), &with_sweep(sweep), &[])
                .unwrap_err()
                .to_string();
            let key = sweep.split(' ').next().unwrap();
            // The core's cross-field rules name the `[paxos]` table and the point.
            let (line, key) = match key {
                "heartbeat_interval_us" => (6, "paxos"),
                key => (18, key),
            };
            assert!(
                e.starts_with(&format!("t.toml:{line}: `{key}`")) && e.contains(expect),
                "{sweep}: {e}"
            );
        }
        let e = Experiment::parse(Path::new("t.toml"), &with_sweep("colour = [1]"), &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`colour`") && e.contains("not a sweepable key"),
            "{e}"
        );
        // Good values of every typed sweep key.
        let e = Experiment::parse(
            Path::new("t.toml"),
            &with_sweep(
                r#"durability = ["none", "fsync"]
target = ["all", [0, 1]]
backoff = ["none", "equal"]
distribution = ["uniform", "zipf"]"#,
            ),
            &[],
        )
        .unwrap();
        let grid = e.grid().unwrap();
        assert_eq!(grid.len(), 2 * 2 * 2 * 2 * 2 * 2);
        assert!(grid.iter().any(|g| g.durability == Durability::Fsync
            && g.workload.target == TargetSpec::Nodes(vec![0, 1])
            && g.paxos.backoff == Some(paxos::BackoffMode::Equal)
            && g.workload.distribution == Distribution::Zipf));
        // Backoff spans: a swept span replaces the file's base in either form; a layer that
        // gives both forms is refused, with the key and its line.
        let text = QUICKISH
            .replace("window = 8", "window = 8\nbackoff_base_us = 700")
            .replace("max_batch = [1, 10]", r#"backoff_base = ["2rtt", "1ms"]"#);
        let grid = Experiment::parse(Path::new("t.toml"), &text, &[])
            .unwrap()
            .grid()
            .unwrap();
        assert!(grid.iter().all(|g| g.paxos.backoff_base_us.is_none()));
        assert!(grid
            .iter()
            .any(|g| g.paxos.backoff_base == Some(paxos::BackoffSpan::Rtts { milli: 2000 })));
        let text = QUICKISH.replace(
            "window = 8",
            "window = 8\nbackoff_base_us = 700\nbackoff_base = \"2rtt\"",
        );
        let e = Experiment::parse(Path::new("t.toml"), &text, &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.toml:9:") && e.contains("not both"), "{e}");
        let text = QUICKISH.replace("max_batch = [1, 10]", r#"backoff_base = ["2rtt", "fast"]"#);
        let e = Experiment::parse(Path::new("t.toml"), &text, &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("fast") && e.contains("backoff_base"), "{e}");
        // --set values are typed the same way.
        let e = Experiment::parse(
            Path::new("t.toml"),
            QUICKISH,
            &["sweep.nodes=[\"x\"]".into()],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("--set") && e.contains("`nodes`") && e.contains("\"x\""),
            "{e}"
        );
    }

    #[test]
    fn an_override_for_a_protocol_not_run_names_its_header_line() {
        let text = QUICKISH.replace("[overrides.multi-paxos]", "[overrides.basic-paxos]");
        let msg = Experiment::parse(Path::new("t.toml"), &text, &[])
            .unwrap_err()
            .to_string();
        let line = text
            .lines()
            .position(|l| l.starts_with("[overrides.basic-paxos]"))
            .unwrap()
            + 1;
        assert!(
            msg.starts_with(&format!("t.toml:{line}: `overrides`")),
            "{msg}"
        );
    }

    #[test]
    fn faults_are_checked_at_load_and_their_mistakes_named_by_entry_and_line() {
        let with = |extra: &str| {
            let text = format!("{QUICKISH}\n[workload]\nread_fraction = 0.5\n{extra}");
            Experiment::parse(Path::new("t.toml"), &text, &[])
        };
        let ok = with(
            "[[faults]]\nat_s = 0.5\naction = \"kill\"\ntarget = \"leader\"\nrestart_after_s = 1.0\n",
        )
        .unwrap();
        assert_eq!(ok.fault_list().len(), 1);
        assert!(ok.wants_timeline() && ok.wants_history());
        let text = "[[faults]]\nat_s = 0.5\naction = \"kill\"\ntarget = 0\n\n[[faults]]\nat_s = 1.0\naction = \"loss\"\ntarget = 1\nloss = 3.0\nfor_s = 1.0\n";
        let msg = with(text).unwrap_err().to_string();
        let line = format!("{QUICKISH}\n[workload]\nread_fraction = 0.5\n{text}")
            .lines()
            .position(|l| l.starts_with("loss = 3.0"))
            .unwrap()
            + 1;
        assert!(
            msg.contains(&format!(
                "t.toml:{line}: `faults[2].loss`: (loss) 3: must be in (0, 1]"
            )),
            "{msg}"
        );
        // A fault past the window, or on a node the cluster lacks, names the grid point.
        let msg = with("[[faults]]\nat_s = 9.0\naction = \"kill\"\ntarget = 0\n")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("`faults[1].at_s`") && msg.contains("past the measured window"),
            "{msg}"
        );
        let msg = with("[[faults]]\nat_s = 1.0\naction = \"pause\"\ntarget = 4\nfor_s = 1\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("node 4 is not in a cluster of"), "{msg}");
        // Only Multi-Paxos changes membership.
        let msg = with("[[faults]]\nat_s = 1.0\naction = \"reconfigure\"\nremove = 0\n")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("`faults[1].action`") && msg.contains("runs only with multi-paxos"),
            "{msg}"
        );
        // A history of writes alone proves nothing: reads are required.
        let msg = Experiment::parse(
            Path::new("t.toml"),
            &format!("{QUICKISH}\n[[faults]]\nat_s = 0.5\naction = \"kill\"\ntarget = 0\n"),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            msg.contains("`read_fraction`") && msg.contains("needs reads"),
            "{msg}"
        );
    }

    #[test]
    fn self_test_knobs_are_typed_and_refuse_settings_that_would_hide_the_bug() {
        let parse = |text: &str| Experiment::parse(Path::new("t.toml"), text, &[]);
        let local = "max_batch = 50\nself_test_bug = \"local-reads\"";
        let e = parse(&QUICKISH.replace("max_batch = 50", local)).unwrap();
        for g in e.grid().unwrap() {
            let bug = (g.protocol == Protocol::MultiPaxos)
                .then_some(node::config::SelfTestBug::LocalReads);
            assert_eq!(g.paxos.self_test_bug, bug, "{}", g.protocol);
        }
        // Unreplicated reads its own state correctly: the knob would prove nothing there.
        let msg =
            parse(&QUICKISH.replace("window = 8", "window = 8\nself_test_bug = \"local-reads\""))
                .unwrap_err()
                .to_string();
        assert!(
            msg.starts_with("t.toml:8: `self_test_bug`: unreplicated")
                && msg.contains("replicated protocol"),
            "{msg}"
        );
        let ack = QUICKISH.replace("max_batch = 50", "self_test_bug = \"ack-before-durable\"");
        let msg = parse(&ack).unwrap_err().to_string();
        assert!(
            msg.contains("`self_test_bug`") && msg.contains("fsync"),
            "{msg}"
        );
        assert!(parse(&format!("{ack}\n[cluster]\ndurability = \"fsync\"\n")).is_ok());
        let e = parse(&format!(
            "{QUICKISH}\n[workload]\nread_fraction = 0.5\nself_test_bug = \"retry-with-fresh-id\"\n"
        ))
        .unwrap();
        assert_eq!(
            e.workload.self_test_bug,
            Some(ClientSelfTestBug::RetryWithFreshId)
        );
        assert_eq!(
            Experiment::parse(Path::new("t.toml"), QUICKISH, &[])
                .unwrap()
                .workload
                .self_test_bug,
            None
        );
        let msg = parse(&format!(
            "{QUICKISH}\n[workload]\nself_test_bug = \"retry\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(msg.contains("retry-with-fresh-id"), "{msg}");
    }

    #[test]
    fn learners_are_typed_sweepable_and_only_for_multi_paxos() {
        let parse = |text: &str| Experiment::parse(Path::new("t.toml"), text, &[]);
        let grid = parse(QUICKISH).unwrap().grid().unwrap();
        assert!(grid.iter().all(|g| g.learners == 0), "none by default");
        // [cluster] learners: Multi-Paxos gets them after its voters; Unreplicated none.
        let two = format!("{QUICKISH}\n[cluster]\nlearners = 2\n");
        let grid = parse(&two).unwrap().grid().unwrap();
        for g in &grid {
            match g.protocol {
                Protocol::MultiPaxos => {
                    assert_eq!((g.nodes, g.learners, g.total_nodes()), (3, 2, 5));
                    assert_eq!(g.learner_ids(), vec![NodeId(3), NodeId(4)]);
                }
                _ => assert_eq!((g.nodes, g.learners), (1, 0)),
            }
        }
        // Swept like nodes.
        let swept = QUICKISH.replace("value_size = [16, 64]", "learners = [0, 2, 4]");
        let grid = parse(&swept).unwrap().grid().unwrap();
        let mut seen: Vec<u32> = grid
            .iter()
            .filter(|g| g.protocol == Protocol::MultiPaxos)
            .map(|g| g.learners)
            .collect();
        seen.dedup();
        assert_eq!(seen, vec![0, 2, 4]);
        // The wrong type names the key, the line and the value, swept or set, never a default.
        for (text, line) in [
            (
                QUICKISH.replace("value_size = [16, 64]", r#"learners = ["two"]"#),
                18,
            ),
            (
                QUICKISH.replace("value_size = [16, 64]", "learners = [-1]"),
                18,
            ),
            (format!("{QUICKISH}\n[cluster]\nlearners = \"two\"\n"), 21),
            (format!("{QUICKISH}\n[cluster]\nlearners = 1.5\n"), 21),
        ] {
            let msg = parse(&text).unwrap_err().to_string();
            assert!(
                msg.contains(&format!("{line}")) && msg.contains("learners"),
                "{text}: {msg}"
            );
        }
        // Only Multi-Paxos runs learners.
        let basic = two.replace(
            r#"protocols = ["unreplicated", "multi-paxos"]"#,
            r#"protocols = ["basic-paxos"]"#,
        );
        let msg = parse(&basic.replace("[overrides.multi-paxos]\nmax_batch = 50\n", ""))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("`learners`") && msg.contains("only with multi-paxos"),
            "{msg}"
        );
        // Voters and learners together fit one machine.
        let msg = parse(&format!("{QUICKISH}\n[cluster]\nnodes = 5\nlearners = 5\n"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("`learners`") && msg.contains("10 nodes"),
            "{msg}"
        );
        // reads = "learner" is a multi-paxos read mode; its learners are the core's learners.
        let reads =
            format!("{two}\n[workload]\nread_fraction = 0.5\n[sweep_by_protocol.multi-paxos]\nreads = [\"log\", \"learner\"]\n");
        let grid = parse(&reads).unwrap().grid().unwrap();
        let learner_reads: Vec<bool> = grid
            .iter()
            .filter(|g| g.protocol == Protocol::MultiPaxos)
            .map(GridPoint::learner_reads)
            .collect();
        assert_eq!(learner_reads, vec![false, true]);
        let msg = parse(&QUICKISH.replace("value_size = [16, 64]", r#"reads = ["learners"]"#))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("learners") && msg.contains("learner"), "{msg}");
        let msg = parse(&QUICKISH.replace("window = 8", "window = 8\nreads = \"learner\""))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("needs multi-paxos"), "{msg}");
    }

    #[test]
    fn the_transport_is_typed_sweepable_and_tcp_refuses_what_only_quic_can_do() {
        let parse = |text: &str| Experiment::parse(Path::new("t.toml"), text, &[]);
        let e = parse(QUICKISH).unwrap();
        assert_eq!(e.cluster.transport, Transport::Quic, "QUIC by default");
        let tcp = format!("{QUICKISH}\n[cluster]\ntransport = \"tcp\"\n");
        assert!(parse(&tcp)
            .unwrap()
            .grid()
            .unwrap()
            .iter()
            .all(|g| g.transport == Transport::Tcp));
        let swept = QUICKISH.replace("value_size = [16, 64]", r#"transport = ["quic", "tcp"]"#);
        let grid = parse(&swept).unwrap().grid().unwrap();
        for t in [Transport::Quic, Transport::Tcp] {
            assert_eq!(grid.iter().filter(|g| g.transport == t).count(), 2 * 2);
        }
        let e = Experiment::parse(
            Path::new("t.toml"),
            QUICKISH,
            &["cluster.transport=\"tcp\"".into()],
        )
        .unwrap();
        assert_eq!(e.cluster.transport, Transport::Tcp);
        // A wrong value names its line and the choices.
        let msg = parse(&QUICKISH.replace("value_size = [16, 64]", r#"transport = ["udp"]"#))
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("t.toml:18: `transport`") && msg.contains("udp") && msg.contains("tcp"),
            "{msg}"
        );
        // [network] with tcp, set or swept: refused at the transport key.
        let network = "\n[network]\ndelay_ms = 1.0\n";
        let msg = parse(&format!("{tcp}{network}")).unwrap_err().to_string();
        let line = 1 + tcp.lines().position(|l| l.contains("\"tcp\"")).unwrap();
        assert!(
            msg.starts_with(&format!("t.toml:{line}: `transport`")) && msg.contains("[network]"),
            "{msg}"
        );
        let msg = parse(&format!("{swept}{network}")).unwrap_err().to_string();
        assert!(
            msg.starts_with("t.toml:18: `transport`") && msg.contains("[network]"),
            "{msg}"
        );
        assert!(parse(&format!("{QUICKISH}{network}")).is_ok());
        // Link faults with tcp: refused; a kill is fine.
        let fault = |action: &str| {
            format!("\n[[faults]]\nat_s = 0.5\naction = \"{action}\"\ntarget = \"follower\"\nfor_s = 0.5\n")
        };
        let tcp = tcp.replace(r#"["unreplicated", "multi-paxos"]"#, r#"["multi-paxos"]"#)
            + "\n[workload]\nread_fraction = 0.5\n";
        let msg = parse(&format!("{tcp}{}", fault("partition")))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("`faults[1].action`") && msg.contains("tcp"),
            "{msg}"
        );
        let kill = "\n[[faults]]\nat_s = 0.5\naction = \"kill\"\ntarget = \"follower\"\nrestart_after_s = 0.5\n";
        let e = parse(&format!("{tcp}{kill}"));
        assert!(e.is_ok(), "{:?}", e.err());
    }

    #[test]
    fn a_resolved_experiment_reads_back_the_same() {
        let e = Experiment::parse(Path::new("t.toml"), QUICKISH, &[]).unwrap();
        let text = toml::to_string_pretty(&e).unwrap();
        let again = Experiment::parse(Path::new("config.toml"), &text, &[]).unwrap();
        assert_eq!(again, e);
    }

    #[test]
    fn regions_resolve_to_symmetric_one_way_delays() {
        let text = QUICKISH.to_string()
            + r#"
[network]
delay_ms = 1.0
loss = 0.01
rate_mbit = 80.0
regions = ["eu", "us", "ap"]
region_delay_ms = { eu = { us = 40.0, ap = 75.0 }, ap = { us = 60.0 } }
"#;
        let e = Experiment::parse(Path::new("t.toml"), &text, &[]).unwrap();
        let net = e.network.as_ref().unwrap();
        let links = net.links(&net.regions);
        assert_eq!(links.len(), 6);
        let delay = |from, to| {
            links
                .iter()
                .find(|l| l.from == from && l.to == to)
                .unwrap()
                .delay_us
        };
        assert_eq!((delay(0, 1), delay(1, 0)), (40_000, 40_000));
        assert_eq!((delay(0, 2), delay(2, 1)), (75_000, 60_000));
        assert!(links
            .iter()
            .all(|l| l.loss == 0.01 && l.rate_bytes_per_s == Some(10_000_000)));
        // Same region, or no matrix entry: delay_ms.
        assert_eq!(net.delay_between("eu", "eu"), 1.0);
        for (bad, expect) in [
            ("loss = 0.01", "loss = 1.5"),
            (
                r#"regions = ["eu", "us", "ap"]"#,
                r#"regions = ["eu", "us"]"#,
            ),
            (r#"ap = { us = 60.0 }"#, r#"mars = { us = 60.0 }"#),
            (r#"ap = { us = 60.0 }"#, r#"us = { eu = 41.0 }"#),
        ] {
            let e = Experiment::parse(Path::new("t.toml"), &text.replace(bad, expect), &[])
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("t.toml:") && e.contains('`'), "{expect}: {e}");
        }
    }
}
