//! A results directory loaded into memory: points, config and environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::availability::{fault_windows, Availability};
use crate::point::Point;
use crate::seconds::Seconds;
use crate::timeline::{read_timeline, Timeline};

/// The latency SLO when `config.toml` has no `slo_p99_us`.
pub const DEFAULT_SLO_P99_US: f64 = 10_000.0;

/// One results directory (`results/<timestamp>-<name>/`), as read from its raw files.
#[derive(Debug, Clone)]
pub struct Run {
    /// The directory.
    pub dir: PathBuf,
    /// The experiment's name (`name` in config.toml, else the directory name).
    pub name: String,
    /// The experiment's description, if config.toml has one.
    pub description: Option<String>,
    /// Saturation means the highest throughput whose p99 is below this (µs).
    pub slo_p99_us: f64,
    /// Host facts from env.json, as label/value pairs in display order.
    pub env: Vec<(String, String)>,
    /// Every line of points.jsonl, in file order.
    pub points: Vec<Point>,
    /// The timelines of the points that have one (`timeline/<point_id>.csv`), by point id.
    pub timelines: BTreeMap<String, Timeline>,
    /// The per-second figures of the points that have an interval log
    /// (`hist/<point_id>.hlog`), by point id.
    pub seconds: BTreeMap<String, Seconds>,
}

/// The env.json keys shown in headers, each with the spellings accepted for it.
const ENV_KEYS: &[(&str, &[&str])] = &[
    ("host", &["host", "hostname"]),
    ("cpu", &["cpu", "cpu_model"]),
    ("cores", &["cores", "cpu_cores", "ncpus"]),
    ("kernel", &["kernel", "kernel_version"]),
    ("rustc", &["rustc", "rustc_version"]),
    (
        "git revision",
        &["git_revision", "git_rev", "revision", "git_commit", "git"],
    ),
    ("dirty", &["git_dirty", "dirty"]),
    ("start", &["start", "started_at", "start_time", "start_utc"]),
    ("end", &["end", "ended_at", "end_time", "end_utc"]),
];

impl Run {
    /// Reads `points.jsonl`, `config.toml`, `env.json`, `timeline/` and `hist/` from `dir`.
    /// Only points.jsonl is required; a file that is there but does not parse is an error
    /// naming it.
    ///
    /// A point with a timeline and applied faults gets its [`Point::availability`] recomputed
    /// from them, so that `paxbench report` derives it from the raw files like every other
    /// figure; without a timeline the figures stored in points.jsonl stand.
    pub fn load(dir: &Path) -> Result<Run> {
        let points_path = dir.join("points.jsonl");
        let text = std::fs::read_to_string(&points_path)
            .with_context(|| format!("reading {}", points_path.display()))?;
        let mut points = Vec::new();
        let line_count = text.lines().count();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Point>(line) {
                Ok(point) => points.push(point),
                // A run killed mid-write leaves an unterminated last line; what came before
                // it is still a valid result.
                Err(_) if i + 1 == line_count && !text.ends_with('\n') => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("{}:{}", points_path.display(), i + 1))
                }
            }
        }

        // A point where nothing completed has no latency: the generator's empty histogram reads
        // 0 µs, which would pass any SLO and count as a real figure in a comparison.
        for p in points.iter_mut().filter(|p| p.completed == 0) {
            for x in [
                &mut p.p50_us,
                &mut p.p90_us,
                &mut p.p99_us,
                &mut p.p999_us,
                &mut p.max_us,
                &mut p.mean_us,
            ] {
                *x = f64::NAN;
            }
        }

        let mut timelines = BTreeMap::new();
        for p in &mut points {
            let Some(timeline) = read_timeline(dir, &p.point_id)? else {
                continue;
            };
            if let Some(a) = Availability::compute(&timeline, &fault_windows(&p.faults)) {
                p.availability = Some(a);
            }
            timelines.insert(p.point_id.clone(), timeline);
        }

        let mut seconds = BTreeMap::new();
        for p in &points {
            let path = dir.join("hist").join(format!("{}.hlog", p.point_id));
            if let Some(s) = Seconds::read(&path)? {
                seconds.insert(p.point_id.clone(), s);
            }
        }

        let config_path = dir.join("config.toml");
        let config: toml::Table = match std::fs::read_to_string(&config_path) {
            Ok(text) => toml::from_str(&text)
                .with_context(|| format!("parsing {}", config_path.display()))?,
            Err(_) => toml::Table::new(),
        };
        let dir_name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string());
        let name = config_key(&config, "name")
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or(dir_name);
        let description =
            config_key(&config, "description").and_then(|v| v.as_str().map(str::to_string));
        let slo_p99_us = config_key(&config, "slo_p99_us")
            .and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)))
            .unwrap_or(DEFAULT_SLO_P99_US);

        let env_path = dir.join("env.json");
        let env = match std::fs::read_to_string(&env_path) {
            Ok(text) => {
                let value: Value = serde_json::from_str(&text)
                    .with_context(|| format!("parsing {}", env_path.display()))?;
                env_facts(&value)
            }
            Err(_) => Vec::new(),
        };

        Ok(Run {
            dir: dir.to_path_buf(),
            name,
            description,
            slo_p99_us,
            env,
            points,
            timelines,
            seconds,
        })
    }

    /// The env.json fact shown as `label` (see the header of summary.md), if present.
    pub fn env_fact(&self, label: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, v)| v.as_str())
    }
}

/// `key` at the top level of config.toml, else in the first table that has it.
fn config_key<'a>(config: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    config.get(key).or_else(|| {
        config
            .values()
            .filter_map(toml::Value::as_table)
            .find_map(|t| t.get(key))
    })
}

fn env_facts(env: &Value) -> Vec<(String, String)> {
    let mut facts = Vec::new();
    for (label, keys) in ENV_KEYS {
        let found = keys.iter().find_map(|k| {
            env.get(*k)
                .or_else(|| env.get("git").and_then(|g| g.get(*k)))
        });
        if let Some(v) = found {
            if !v.is_null() && !v.is_object() {
                facts.push((label.to_string(), crate::point::value_text(v)));
            }
        }
    }
    facts
}
