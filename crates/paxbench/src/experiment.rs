//! Experiment files (`bench-configs/NAME.toml`): the cluster, the protocols and their knobs, the
//! workload, the load levels, the axes to sweep as a grid, warm-up, duration and repetitions.
//! Unknown keys and bad values are errors that name the file, the line and the key; `--set
//! key=value` overrides any key (dotted paths, TOML values).
//!
//! ```toml
//! name = "quick"
//! description = "Unreplicated, Multi-Paxos and Basic Paxos on 3 nodes"
//! protocols = ["unreplicated", "multi-paxos", "basic-paxos"]
//! slo_p99_us = 10000        # saturation = highest throughput whose p99 stays under this
//! warmup_s = 1.0            # discarded before every measured window
//! duration_s = 3.0          # measured window per point
//! repetitions = 1
//!
//! [cluster]
//! nodes = 3                 # unreplicated always runs on 1
//! durability = "none"       # none | fsync
//! node_threads = 1          # each node's runtime threads (1 = one thread)
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
//!
//! [load]
//! mode = "open"             # open (rates, ops/s) | closed (clients x depth)
//! rates = [1000, 5000, 20000]
//! rates_by_protocol = { basic-paxos = [200, 1000] }   # replaces `rates` for one protocol
//! poisson = false
//! clients = [1, 4, 16]
//! depth = 1
//! timeout_ms = 2000
//! pacing_us = 200           # open loop: the generator wakes at most this often
//!
//! [sweep]                   # a grid: every combination of these values
//! max_batch = [1, 100]
//! window = [1, 32]
//! ```
//!
//! Sweepable keys: every `[paxos]` knob, `nodes`, `durability`, and the `[workload]` keys
//! `keys`, `zipf_theta`, `read_fraction`, `value_size`, `target`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, Context};
use serde::{Deserialize, Serialize};

/// Knobs a `[paxos]` table (or `[overrides.<protocol>]`) may set.
pub const PAXOS_KNOBS: &[&str] = &[
    "max_batch",
    "max_batch_bytes",
    "window",
    "partial_batches",
    "max_queue",
    "skip_phase1",
    "heartbeat_interval_us",
    "election_timeout_us",
    "retry_timeout_us",
    "backoff",
    "backoff_base_us",
    "backoff_cap_us",
    "explicit_commit",
    "reply_cache_per_client",
    "snapshot_interval",
    "log_retain_slots",
    "seed",
];

/// Non-paxos keys a sweep may vary.
pub const OTHER_SWEEP_KEYS: &[&str] = &[
    "nodes",
    "durability",
    "keys",
    "zipf_theta",
    "read_fraction",
    "value_size",
    "target",
];

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
    pub protocols: Vec<String>,
    /// The latency objective that defines saturation.
    #[serde(default = "default_slo")]
    pub slo_p99_us: u64,
    /// Warm-up before each measured window, seconds.
    #[serde(default = "default_warmup")]
    pub warmup_s: f64,
    /// Measured window per point, seconds.
    #[serde(default = "default_duration")]
    pub duration_s: f64,
    /// How many times every point is measured.
    #[serde(default = "one")]
    pub repetitions: u32,
    /// The cluster.
    #[serde(default)]
    pub cluster: ClusterSpec,
    /// Knobs for every protocol.
    #[serde(default)]
    pub paxos: BTreeMap<String, toml::Value>,
    /// Knobs per protocol.
    #[serde(default)]
    pub overrides: BTreeMap<String, BTreeMap<String, toml::Value>>,
    /// The workload.
    #[serde(default)]
    pub workload: WorkloadSpec,
    /// The load levels.
    pub load: LoadSpec,
    /// Grid axes.
    #[serde(default)]
    pub sweep: BTreeMap<String, Vec<toml::Value>>,
}

/// `[cluster]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// Nodes of a replicated cluster.
    #[serde(default = "three")]
    pub nodes: u32,
    /// `none` or `fsync`.
    #[serde(default = "none")]
    pub durability: String,
    /// Threads of each node's async runtime (`[transport] threads` in cluster.toml).
    #[serde(default = "one")]
    pub node_threads: u32,
}

/// `[workload]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// Distinct keys.
    #[serde(default = "default_keys")]
    pub keys: u64,
    /// `uniform` or `zipf`.
    #[serde(default = "uniform")]
    pub distribution: String,
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
    #[serde(default = "leader")]
    pub target: toml::Value,
}

/// `[load]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoadSpec {
    /// `open` or `closed`.
    pub mode: String,
    /// Open loop: offered rates, ops/s.
    #[serde(default)]
    pub rates: Vec<f64>,
    /// Open loop: rates for one protocol instead of `rates` (Basic Paxos saturates far lower).
    #[serde(default)]
    pub rates_by_protocol: BTreeMap<String, Vec<f64>>,
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
    /// latencies; coarser pacing costs the generator and the nodes fewer packets.
    #[serde(default = "default_pacing")]
    pub pacing_us: u64,
}

fn default_slo() -> u64 {
    10_000
}
fn default_warmup() -> f64 {
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

fn none() -> String {
    "none".into()
}
fn default_keys() -> u64 {
    100_000
}
fn uniform() -> String {
    "uniform".into()
}
fn default_theta() -> f64 {
    0.99
}
fn default_value_size() -> usize {
    64
}
fn leader() -> toml::Value {
    toml::Value::String("leader".into())
}
fn default_timeout() -> u64 {
    2_000
}
fn default_pacing() -> u64 {
    loadgen::DEFAULT_PACING.as_micros() as u64
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            nodes: 3,
            durability: none(),
            node_threads: 1,
        }
    }
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        WorkloadSpec {
            keys: default_keys(),
            distribution: uniform(),
            zipf_theta: default_theta(),
            read_fraction: 0.0,
            value_size: default_value_size(),
            seed: 1,
            target: leader(),
        }
    }
}

/// One cluster configuration of the grid: a protocol and a value for every swept key. Load
/// levels and repetitions run against it.
#[derive(Clone, Debug, PartialEq)]
pub struct GridPoint {
    /// The protocol.
    pub protocol: String,
    /// Every swept key and its value here (in sweep order).
    pub params: BTreeMap<String, toml::Value>,
    /// The resolved cluster.
    pub nodes: u32,
    /// `none` or `fsync`.
    pub durability: String,
    /// The resolved `[paxos]` knobs (global, then per-protocol, then swept).
    pub paxos: BTreeMap<String, toml::Value>,
    /// The resolved workload.
    pub workload: WorkloadSpec,
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
        plain
            .validate()
            .map_err(|(key, why)| anyhow!("{file}:{}: `{key}`: {why}", line_of(text, &key)))?;
        if sets.is_empty() {
            return Ok(plain);
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
            .map_err(|(key, why)| anyhow!("{file} with --set: `{key}`: {why}"))?;
        Ok(merged)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, why: String| Err((k.to_string(), why));
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return bad(
                "name",
                format!("{:?} must be letters, digits, - or _", self.name),
            );
        }
        if self.protocols.is_empty() {
            return bad("protocols", "name at least one protocol".into());
        }
        for p in &self.protocols {
            if node::config::parse_protocol(p).is_none() {
                return bad(
                    "protocols",
                    format!("unknown protocol {p:?}: use multi-paxos, basic-paxos or unreplicated"),
                );
            }
        }
        for p in self.overrides.keys() {
            if !self.protocols.contains(p) {
                return bad(
                    "overrides",
                    format!("[overrides.{p}] names a protocol not in `protocols`"),
                );
            }
        }
        for table in std::iter::once(&self.paxos).chain(self.overrides.values()) {
            if let Some(k) = table.keys().find(|k| !PAXOS_KNOBS.contains(&k.as_str())) {
                return bad(
                    k,
                    format!("unknown knob; knobs are {}", PAXOS_KNOBS.join(", ")),
                );
            }
        }
        for (k, values) in &self.sweep {
            if !PAXOS_KNOBS.contains(&k.as_str()) && !OTHER_SWEEP_KEYS.contains(&k.as_str()) {
                return bad(
                    k,
                    "not a sweepable key (see the experiment file docs)".into(),
                );
            }
            if values.is_empty() {
                return bad(k, "a sweep axis needs at least one value".into());
            }
        }
        if !(finite_at_least(self.warmup_s, 0.0) && positive(self.duration_s))
            || self.duration_s > 3600.0
        {
            return bad(
                "duration_s",
                format!(
                    "warm-up {} s and duration {} s must be >= 0 and in (0, 3600]",
                    self.warmup_s, self.duration_s
                ),
            );
        }
        if self.repetitions == 0 {
            return bad("repetitions", "must be at least 1".into());
        }
        if !(1..=64).contains(&self.cluster.node_threads) {
            return bad(
                "node_threads",
                format!("{}: use 1 to 64", self.cluster.node_threads),
            );
        }
        if !(1..=9).contains(&self.cluster.nodes) {
            return bad(
                "nodes",
                format!("{} nodes: use 1 to 9 on one machine", self.cluster.nodes),
            );
        }
        if !["none", "fsync"].contains(&self.cluster.durability.as_str()) {
            return bad(
                "durability",
                format!("{:?}: use none or fsync", self.cluster.durability),
            );
        }
        match self.load.mode.as_str() {
            "open"
                if self.load.rates.is_empty() || self.load.rates.iter().any(|r| !positive(*r)) =>
            {
                return bad("rates", "open loop needs positive rates".into())
            }
            "closed"
                if self.load.clients.is_empty()
                    || self.load.clients.contains(&0)
                    || self.load.depth == 0 =>
            {
                return bad(
                    "clients",
                    "closed loop needs client counts and a depth of at least 1".into(),
                )
            }
            "open" | "closed" => {}
            other => return bad("mode", format!("{other:?}: use open or closed")),
        }
        for (p, rates) in &self.load.rates_by_protocol {
            if !self.protocols.contains(p)
                || rates.is_empty()
                || rates.iter().any(|r| !positive(*r))
            {
                return bad(
                    "rates_by_protocol",
                    format!("{p}: a protocol of this experiment with positive rates"),
                );
            }
        }
        let w = &self.workload;
        if !["uniform", "zipf"].contains(&w.distribution.as_str()) {
            return bad(
                "distribution",
                format!("{:?}: use uniform or zipf", w.distribution),
            );
        }
        if !(0.0..=1.0).contains(&w.read_fraction) {
            return bad(
                "read_fraction",
                format!("{} is not in [0, 1]", w.read_fraction),
            );
        }
        if w.keys == 0 || w.value_size > 16 << 20 {
            return bad(
                "keys",
                "need at least one key and values of at most 16 MiB".into(),
            );
        }
        Ok(())
    }

    /// Every cluster configuration of the grid, protocol by protocol. A swept knob that one
    /// protocol ignores (e.g. `window` for Unreplicated) is still listed for it, so tables line up.
    pub fn grid(&self) -> Vec<GridPoint> {
        let axes: Vec<(&String, &Vec<toml::Value>)> = self.sweep.iter().collect();
        let mut combos: Vec<BTreeMap<String, toml::Value>> = vec![BTreeMap::new()];
        for (key, values) in &axes {
            combos = combos
                .into_iter()
                .flat_map(|c| {
                    values.iter().map(move |v| {
                        let mut c = c.clone();
                        c.insert((*key).clone(), v.clone());
                        c
                    })
                })
                .collect();
        }
        let mut out = Vec::new();
        for protocol in &self.protocols {
            for params in &combos {
                let mut paxos = self.paxos.clone();
                if let Some(o) = self.overrides.get(protocol) {
                    paxos.extend(o.clone());
                }
                let mut workload = self.workload.clone();
                let mut nodes = self.cluster.nodes;
                let mut durability = self.cluster.durability.clone();
                for (k, v) in params {
                    match k.as_str() {
                        "nodes" => nodes = v.as_integer().unwrap_or(3) as u32,
                        "durability" => durability = v.as_str().unwrap_or("none").to_string(),
                        "keys" => workload.keys = v.as_integer().unwrap_or(1) as u64,
                        "zipf_theta" => workload.zipf_theta = v.as_float().unwrap_or(0.99),
                        "read_fraction" => workload.read_fraction = as_f64(v),
                        "value_size" => workload.value_size = v.as_integer().unwrap_or(64) as usize,
                        "target" => workload.target = v.clone(),
                        knob => {
                            paxos.insert(knob.to_string(), v.clone());
                        }
                    }
                }
                if protocol == "unreplicated" {
                    nodes = 1;
                }
                out.push(GridPoint {
                    protocol: protocol.clone(),
                    params: params.clone(),
                    nodes,
                    durability,
                    paxos,
                    workload,
                });
            }
        }
        out
    }
}

/// A finite number above zero (NaN is not).
fn positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

/// A finite number of at least `min` (NaN is not).
fn finite_at_least(x: f64, min: f64) -> bool {
    x.is_finite() && x >= min
}

fn as_f64(v: &toml::Value) -> f64 {
    v.as_float()
        .or_else(|| v.as_integer().map(|i| i as f64))
        .unwrap_or(0.0)
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

/// The 1-based line where `key` is first assigned (or its table starts), or 0.
fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
                || l.starts_with(&format!("[{key}]"))
                || l.starts_with(&format!("[overrides.{key}]"))
        })
        .map_or(0, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn the_grid_is_every_combination_per_protocol() {
        let e = Experiment::parse(Path::new("t.toml"), QUICKISH, &[]).unwrap();
        let grid = e.grid();
        assert_eq!(grid.len(), 2 * 2 * 2);
        let mp: Vec<_> = grid
            .iter()
            .filter(|g| g.protocol == "multi-paxos")
            .collect();
        assert!(mp
            .iter()
            .all(|g| g.nodes == 3 && g.paxos["window"].as_integer() == Some(8)));
        // The sweep wins over the per-protocol override.
        assert!(mp
            .iter()
            .any(|g| g.paxos["max_batch"].as_integer() == Some(1)));
        assert!(grid
            .iter()
            .filter(|g| g.protocol == "unreplicated")
            .all(|g| g.nodes == 1));
        assert!(grid.iter().any(|g| g.workload.value_size == 16));
    }

    #[test]
    fn mistakes_name_file_line_and_key() {
        let e = Experiment::parse(
            Path::new("t.toml"),
            &QUICKISH.replace("window = 8", "windw = 8"),
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("t.toml:7: `windw`"), "{e}");
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
        assert!(e.to_string().contains("`mode`"), "{e}");
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
        assert_eq!(e.load.rates, vec![5.0]);
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
}
