//! What happened over time during one point's measured window: completions, failures and
//! latency per time bucket, and markers for faults and leader changes.
//!
//! On disk, per point (the stem is the point id, as for `hist/<point_id>.hlog`):
//!
//! ```text
//! timeline/<point_id>.csv           t_ms,width_ms,completions,errors,timeouts,p50_us,p99_us
//! timeline/<point_id>.markers.csv   t_ms,kind,label
//! ```
//!
//! Two files rather than two sections in one, so that each is a plain CSV any tool reads. An
//! empty `p50_us`/`p99_us` cell means the bucket had no completions to take a percentile of.
//! `kind` is `fault_start`, `fault_end` or `leader_change`; a label with a comma is quoted
//! (RFC 4180). Columns are found by their header name, so a writer may add columns.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::summary::csv_line;

/// The directory of a run that holds the timelines.
pub const TIMELINE_DIR: &str = "timeline";

/// Header of `timeline/<point_id>.csv`.
pub const ROWS_HEADER: [&str; 7] = [
    "t_ms",
    "width_ms",
    "completions",
    "errors",
    "timeouts",
    "p50_us",
    "p99_us",
];
/// Header of `timeline/<point_id>.markers.csv`.
pub const MARKERS_HEADER: [&str; 3] = ["t_ms", "kind", "label"];

/// One time bucket of a measured window.
///
/// A completion is counted in the bucket in which it completed; a failure (error or timeout)
/// in the bucket in which the request was meant to be sent, so the failures a fault caused
/// line up with the fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineRow {
    /// Start of the bucket, ms from the start of the measured window.
    pub t_ms: u64,
    /// Length of the bucket (ms); the last bucket of a window may be shorter.
    pub width_ms: u64,
    /// Operations that completed in the bucket.
    pub completions: u64,
    /// Operations answered with an error in the bucket.
    pub errors: u64,
    /// Operations whose timeout expired in the bucket.
    pub timeouts: u64,
    /// Median latency of the bucket's completions (µs); `None` when it had none.
    #[serde(default)]
    pub p50_us: Option<u64>,
    /// 99th percentile latency of the bucket's completions (µs); `None` when it had none.
    #[serde(default)]
    pub p99_us: Option<u64>,
}

impl TimelineRow {
    /// End of the bucket (ms from the start of the measured window).
    pub fn end_ms(&self) -> u64 {
        self.t_ms.saturating_add(self.width_ms)
    }

    /// Completions per second over the bucket (0 for a bucket of no width).
    pub fn completions_per_s(&self) -> f64 {
        per_s(self.completions, self.width_ms)
    }

    /// Errors and timeouts per second over the bucket (0 for a bucket of no width).
    pub fn failures_per_s(&self) -> f64 {
        per_s(self.errors + self.timeouts, self.width_ms)
    }
}

fn per_s(count: u64, width_ms: u64) -> f64 {
    if width_ms == 0 {
        0.0
    } else {
        count as f64 * 1000.0 / width_ms as f64
    }
}

/// What a [`Marker`] marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkerKind {
    /// A fault was injected (node killed, paused, partitioned...).
    FaultStart,
    /// A fault was undone (node restarted, resumed, partition healed...).
    FaultEnd,
    /// A new leader or ballot was observed.
    LeaderChange,
}

impl MarkerKind {
    /// The name used in files: `fault_start`, `fault_end`, `leader_change`.
    pub fn as_str(self) -> &'static str {
        match self {
            MarkerKind::FaultStart => "fault_start",
            MarkerKind::FaultEnd => "fault_end",
            MarkerKind::LeaderChange => "leader_change",
        }
    }

    /// The kind named `name` (see [`MarkerKind::as_str`]).
    pub fn parse(name: &str) -> Option<MarkerKind> {
        [
            MarkerKind::FaultStart,
            MarkerKind::FaultEnd,
            MarkerKind::LeaderChange,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }
}

/// Something that happened at one instant of a measured window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    /// When, ms from the start of the measured window (negative: before it).
    pub t_ms: f64,
    /// What.
    pub kind: MarkerKind,
    /// Shown beside the marker in plots, e.g. `kill node 2`, `leader 2, ballot 7.2`.
    #[serde(default)]
    pub label: String,
}

/// A point's measured window over time: buckets in time order, and markers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    /// The buckets, in time order. A stretch of time with no row had no outcomes at all.
    #[serde(default)]
    pub rows: Vec<TimelineRow>,
    /// Faults and leader changes, in the order they were recorded.
    #[serde(default)]
    pub markers: Vec<Marker>,
}

impl Timeline {
    /// Whether there is neither a bucket nor a marker.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.markers.is_empty()
    }

    /// The rows as `timeline/<point_id>.csv`.
    pub fn rows_csv(&self) -> String {
        let header: Vec<String> = ROWS_HEADER.iter().map(|h| h.to_string()).collect();
        let mut s = csv_line(&header);
        let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        for r in &self.rows {
            s.push_str(&csv_line(&[
                r.t_ms.to_string(),
                r.width_ms.to_string(),
                r.completions.to_string(),
                r.errors.to_string(),
                r.timeouts.to_string(),
                opt(r.p50_us),
                opt(r.p99_us),
            ]));
        }
        s
    }

    /// The markers as `timeline/<point_id>.markers.csv`.
    pub fn markers_csv(&self) -> String {
        let header: Vec<String> = MARKERS_HEADER.iter().map(|h| h.to_string()).collect();
        let mut s = csv_line(&header);
        for m in &self.markers {
            // f64's Display is the shortest text that parses back to the same number.
            s.push_str(&csv_line(&[
                m.t_ms.to_string(),
                m.kind.as_str().to_string(),
                m.label.clone(),
            ]));
        }
        s
    }

    /// The timeline read back from [`Timeline::rows_csv`] and, if there is one,
    /// [`Timeline::markers_csv`] text. Columns are found by name; `t_ms`, `width_ms` and
    /// `completions` are required, a missing `errors`/`timeouts` reads as 0 and a missing
    /// `p50_us`/`p99_us` as none.
    pub fn parse(rows_csv: &str, markers_csv: Option<&str>) -> Result<Timeline> {
        let mut rows = Vec::new();
        let table = Table::parse(rows_csv)?;
        for (line, record) in table.records() {
            let ctx = |col: &str| format!("line {line}, column {col}");
            let num = |col: &str, required: bool| -> Result<Option<u64>> {
                match table.get(record, col) {
                    None if required => bail!("line {line}: no column {col}"),
                    None | Some("") if !required => Ok(None),
                    None | Some("") => bail!("{}: empty", ctx(col)),
                    Some(v) => v.trim().parse().map(Some).with_context(|| ctx(col)),
                }
            };
            rows.push(TimelineRow {
                t_ms: num("t_ms", true)?.unwrap_or_default(),
                width_ms: num("width_ms", true)?.unwrap_or_default(),
                completions: num("completions", true)?.unwrap_or_default(),
                errors: num("errors", false)?.unwrap_or_default(),
                timeouts: num("timeouts", false)?.unwrap_or_default(),
                p50_us: num("p50_us", false)?,
                p99_us: num("p99_us", false)?,
            });
        }
        let mut markers = Vec::new();
        if let Some(text) = markers_csv {
            let table = Table::parse(text)?;
            for (line, record) in table.records() {
                let field = |col: &str| {
                    table
                        .get(record, col)
                        .ok_or_else(|| anyhow!("line {line}: no column {col}"))
                };
                let t_ms = field("t_ms")?
                    .trim()
                    .parse()
                    .with_context(|| format!("line {line}, column t_ms"))?;
                let kind = field("kind")?;
                let kind = MarkerKind::parse(kind.trim())
                    .ok_or_else(|| anyhow!("line {line}: unknown marker kind {kind:?}"))?;
                let label = table.get(record, "label").unwrap_or_default().to_string();
                markers.push(Marker { t_ms, kind, label });
            }
        }
        Ok(Timeline { rows, markers })
    }
}

/// `timeline/<point_id>.csv` under the run directory `run_dir`.
pub fn timeline_path(run_dir: &Path, point_id: &str) -> PathBuf {
    run_dir.join(TIMELINE_DIR).join(format!("{point_id}.csv"))
}

/// `timeline/<point_id>.markers.csv` under the run directory `run_dir`.
pub fn markers_path(run_dir: &Path, point_id: &str) -> PathBuf {
    run_dir
        .join(TIMELINE_DIR)
        .join(format!("{point_id}.markers.csv"))
}

/// Writes `timeline/<point_id>.csv` and `timeline/<point_id>.markers.csv` (the latter with
/// only its header when there are no markers) under `run_dir`.
pub fn write_timeline(run_dir: &Path, point_id: &str, timeline: &Timeline) -> Result<()> {
    let dir = run_dir.join(TIMELINE_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::write(&timeline_path(run_dir, point_id), &timeline.rows_csv())?;
    crate::write(&markers_path(run_dir, point_id), &timeline.markers_csv())
}

/// The timeline of `point_id` in `run_dir`, or `None` when it has no `timeline/<point_id>.csv`.
/// A missing markers file means no markers.
pub fn read_timeline(run_dir: &Path, point_id: &str) -> Result<Option<Timeline>> {
    let path = timeline_path(run_dir, point_id);
    let Some(rows) = read_if_exists(&path)? else {
        return Ok(None);
    };
    let mpath = markers_path(run_dir, point_id);
    let markers = read_if_exists(&mpath)?;
    Timeline::parse(&rows, markers.as_deref())
        .with_context(|| format!("parsing {} / {}", path.display(), mpath.display()))
        .map(Some)
}

fn read_if_exists(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// A CSV text: its header's column positions and its records with their line numbers.
struct Table {
    columns: HashMap<String, usize>,
    records: Vec<(usize, Vec<String>)>,
}

impl Table {
    fn parse(text: &str) -> Result<Table> {
        let mut records = parse_csv(text)?.into_iter();
        let Some((_, header)) = records.next() else {
            bail!("no header line");
        };
        let columns = header
            .iter()
            .enumerate()
            .map(|(i, name)| (name.trim().to_string(), i))
            .collect();
        Ok(Table {
            columns,
            records: records.collect(),
        })
    }

    fn records(&self) -> impl Iterator<Item = (usize, &[String])> {
        self.records.iter().map(|(line, r)| (*line, r.as_slice()))
    }

    fn get<'a>(&self, record: &'a [String], column: &str) -> Option<&'a str> {
        self.columns
            .get(column)
            .and_then(|&i| record.get(i))
            .map(String::as_str)
    }
}

/// RFC 4180 records (quoted fields may hold commas, quotes as `""`, and line breaks), each
/// with the line it starts on; blank lines are skipped.
fn parse_csv(text: &str) -> Result<Vec<(usize, Vec<String>)>> {
    let mut records = Vec::new();
    let mut record: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut line = 1;
    let mut start_line = 1;
    let mut chars = text.chars().peekable();
    let mut end_record = |record: &mut Vec<String>, field: &mut String, start: usize| {
        record.push(std::mem::take(field));
        let r = std::mem::take(record);
        if !(r.len() == 1 && r[0].is_empty()) {
            records.push((start, r));
        }
    };
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => {
                if c == '\n' {
                    line += 1;
                }
                field.push(c);
            }
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {}
            (false, '\n') => {
                end_record(&mut record, &mut field, start_line);
                line += 1;
                start_line = line;
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        bail!("line {start_line}: unterminated quoted field");
    }
    end_record(&mut record, &mut field, start_line);
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_may_hold_commas_quotes_and_line_breaks() {
        let text = "a,b\r\n\"x, \"\"y\"\"\",\"two\nlines\"\n\n1,\n";
        let records = parse_csv(text).unwrap();
        assert_eq!(
            records,
            vec![
                (1, vec!["a".to_string(), "b".to_string()]),
                (2, vec!["x, \"y\"".to_string(), "two\nlines".to_string()]),
                (5, vec!["1".to_string(), String::new()]),
            ]
        );
        assert!(parse_csv("a,\"b\n").is_err());
    }

    #[test]
    fn columns_are_found_by_name() {
        let t = Timeline::parse(
            "completions,width_ms,t_ms,extra\n5,100,0,z\n",
            Some("kind,t_ms\nleader_change,12.5\n"),
        )
        .unwrap();
        assert_eq!(
            t.rows,
            vec![TimelineRow {
                t_ms: 0,
                width_ms: 100,
                completions: 5,
                errors: 0,
                timeouts: 0,
                p50_us: None,
                p99_us: None,
            }]
        );
        assert_eq!(t.markers[0].kind, MarkerKind::LeaderChange);
        assert_eq!((t.markers[0].t_ms, t.markers[0].label.as_str()), (12.5, ""));
        assert!(Timeline::parse("t_ms,width_ms\n0,100\n", None).is_err());
        assert!(Timeline::parse(
            "t_ms,width_ms,completions\n0,100,1\n",
            Some("t_ms,kind\n1,boom\n")
        )
        .is_err());
    }

    #[test]
    fn marker_kinds_are_snake_case_in_json_and_csv() {
        for k in [
            MarkerKind::FaultStart,
            MarkerKind::FaultEnd,
            MarkerKind::LeaderChange,
        ] {
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
            assert_eq!(MarkerKind::parse(k.as_str()), Some(k));
        }
    }
}
