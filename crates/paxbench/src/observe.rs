//! What a point records beyond its latencies when it has faults (or asks for a timeline or a
//! history): each fault as it happened, a 100 ms timeline with fault and leader-change
//! markers, and the linearizability verdict on the history the clients saw.

use std::time::{Duration, SystemTime};

use loadgen::history::History;
use results::{FaultRecord, LinearizabilityResult, Marker, MarkerKind, Timeline, TimelineRow};

use crate::faults::{Fault, LeaderSeen, Outcome};

/// Seconds from `origin` to `t` (negative before it).
fn secs_since(origin: SystemTime, t: SystemTime) -> f64 {
    match t.duration_since(origin) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// Each fault of a point as it happened, its times from the measured window's start.
pub fn fault_records(
    faults: &[Fault],
    outcomes: &[Outcome],
    window_start: SystemTime,
) -> Vec<FaultRecord> {
    faults
        .iter()
        .zip(outcomes)
        .map(|(f, o)| FaultRecord {
            action: o.action.name().to_string(),
            target: o.target.clone(),
            node: o.node,
            at_s: o
                .started
                .map_or(f.at.as_secs_f64(), |t| secs_since(window_start, t)),
            end_s: o.ended.map(|t| secs_since(window_start, t)),
            applied: o.started.is_some(),
            error: o.error.clone(),
        })
        .collect()
}

/// The point's timeline: the generator's 100 ms buckets, with a marker at each fault's start
/// and end and at every leader change seen while the load ran.
pub fn timeline(
    buckets: &loadgen::timeline::Timeline,
    records: &[FaultRecord],
    leaders: &[LeaderSeen],
    window_start: SystemTime,
) -> Timeline {
    let width = loadgen::timeline::TIMELINE_BUCKET.as_millis() as u64;
    let rows = buckets
        .buckets
        .iter()
        .enumerate()
        .map(|(i, b)| TimelineRow {
            t_ms: i as u64 * width,
            width_ms: width,
            completions: b.completed,
            errors: b.errors,
            timeouts: b.timeouts,
            p50_us: b.p50_us(),
            p99_us: b.p99_us(),
        })
        .collect();
    let mut markers = Vec::new();
    for r in records.iter().filter(|r| r.applied) {
        let whom = r.node.map_or(r.target.clone(), |n| format!("node {n}"));
        markers.push(Marker {
            t_ms: r.at_s * 1000.0,
            kind: MarkerKind::FaultStart,
            label: format!("{} {whom}", r.action),
        });
        if let Some(end) = r.end_s {
            let undo = match r.action.as_str() {
                "kill" => "restart",
                "pause" => "resume",
                _ => "heal",
            };
            markers.push(Marker {
                t_ms: end * 1000.0,
                kind: MarkerKind::FaultEnd,
                label: format!("{undo} {whom}"),
            });
        }
    }
    for l in leaders {
        markers.push(Marker {
            t_ms: secs_since(window_start, l.at) * 1000.0,
            kind: MarkerKind::LeaderChange,
            label: format!("leader {}, ballot {}", l.leader.0, l.ballot),
        });
    }
    markers.sort_by(|a, b| a.t_ms.total_cmp(&b.t_ms));
    Timeline { rows, markers }
}

/// Checks a history for linearizability within `budget`.
pub fn check_history(history: &History, budget: Duration) -> LinearizabilityResult {
    let truncated = history.truncated;
    match lincheck::check(&history.ops, budget) {
        Ok(report) => {
            let (verdict, detail) = match &report.verdict {
                lincheck::Verdict::Linearizable => (results::LINEARIZABLE, String::new()),
                v @ lincheck::Verdict::Violation { .. } => (results::VIOLATION, v.to_string()),
                v @ lincheck::Verdict::Unknown { .. } => (results::UNKNOWN, v.to_string()),
            };
            LinearizabilityResult {
                verdict: verdict.to_string(),
                detail,
                operations: report.operations as u64,
                elapsed_ms: report.elapsed_ms,
                history_truncated: truncated,
            }
        }
        Err(e) => LinearizabilityResult {
            verdict: results::UNKNOWN.to_string(),
            detail: format!("the history is malformed: {e}"),
            operations: history.ops.len() as u64,
            elapsed_ms: 0.0,
            history_truncated: truncated,
        },
    }
}
