//! What a point records beyond its latencies when it has faults (or asks for a timeline or a
//! history): each fault as it happened, a 100 ms timeline with fault and leader-change
//! markers, the linearizability verdict on the history the clients saw, and the final reads
//! that count acknowledged writes lost.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use lincheck::{Call, Operation, Ret};
use loadgen::history::History;
use node::client::KvClient;
use node::config::ClusterConfig;
use paxos::{ClientId, Op};
use results::{
    FaultRecord, FinalReads, LinearizabilityResult, Marker, MarkerKind, Timeline, TimelineRow,
};

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
            added: o.added,
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
        let whom = r.whom();
        markers.push(Marker {
            t_ms: r.at_s * 1000.0,
            kind: MarkerKind::FaultStart,
            label: format!("{} {whom}", r.action),
        });
        if let Some(end) = r.end_s {
            let undo = match r.action.as_str() {
                "kill" => "restart",
                "pause" => "resume",
                "reconfigure" => "chosen:",
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
                final_reads: None,
            }
        }
        Err(e) => LinearizabilityResult {
            verdict: results::UNKNOWN.to_string(),
            detail: format!("the history is malformed: {e}"),
            operations: history.ops.len() as u64,
            elapsed_ms: 0.0,
            history_truncated: truncated,
            final_reads: None,
        },
    }
}

/// A client of the cluster in `file` with session `client`; `None` if the file or its client
/// certificate cannot be read. Must be called inside a tokio runtime.
pub fn cluster_client(file: &Path, client: ClientId) -> Option<KvClient> {
    client_of(file, client, false)
}

/// [`cluster_client`], or with `through_log` one that leaves out the nodes that answer a `Get`
/// from their own state (learners under `reads = "learner"`), so its reads go through the log.
fn client_of(file: &Path, client: ClientId, through_log: bool) -> Option<KvClient> {
    let cluster = ClusterConfig::load(file).ok()?;
    let certs = cluster.client_certs().ok()?;
    let (endpoint, mut nodes) = cluster.client_endpoint(&certs).ok()?;
    if through_log {
        let local = cluster.learner_readers();
        nodes.retain(|(n, _)| !local.contains(n));
    }
    Some(KvClient::new(endpoint, nodes, client))
}

/// How many clients read the keys back at once.
const READ_BACK_CLIENTS: usize = 16;

/// Reads every key `history` wrote once more, after the load and the faults are over: the
/// final reads of [`lincheck::lost_writes`]. They come from sessions of their own, numbered
/// past every client of the history, on the history's clock (ns from its `origin_unix_ns`, on
/// this machine's wall clock, which is the clock a remote history was shifted onto), and never
/// before the last instant the history holds. They go through the log, never to a learner that
/// answers from its own state. A key that could not be read within `budget`
/// (all of them, if the cluster cannot be reached) has an unknown outcome: it is counted as
/// unread, never as read.
pub async fn read_back(file: &Path, history: &History, budget: Duration) -> Vec<Operation> {
    let keys: BTreeSet<&Vec<u8>> = history
        .ops
        .iter()
        .filter(|o| matches!(o.call, Call::Put(_) | Call::Delete))
        .map(|o| &o.key)
        .collect();
    let first_client = history
        .ops
        .iter()
        .map(|o| o.client)
        .max()
        .map_or(0, |c| c + 1);
    let floor = history
        .ops
        .iter()
        .map(|o| o.returned_ns.unwrap_or(o.invoked_ns).max(o.invoked_ns))
        .max()
        .map_or(0, |t| t + 1);
    let origin = history.origin_unix_ns;
    let now_ns = move || {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        unix.saturating_sub(origin).max(floor)
    };
    let deadline = Instant::now() + budget;
    let keys: Vec<Vec<u8>> = keys.into_iter().cloned().collect();
    let workers = READ_BACK_CLIENTS.min(keys.len()).max(1);
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let mine: Vec<Vec<u8>> = keys.iter().skip(w).step_by(workers).cloned().collect();
        let id = first_client + w as u64;
        let client = client_of(file, node::client::new_session(id), true);
        tasks.spawn(async move {
            let mut client = client;
            let mut out = Vec::with_capacity(mine.len());
            for key in mine {
                let invoked_ns = now_ns();
                let left = deadline.saturating_duration_since(Instant::now());
                let outcome = match client.as_mut() {
                    Some(c) if !left.is_zero() => {
                        let get = c.call(Op::Get {
                            key: Bytes::from(key.clone()),
                        });
                        tokio::time::timeout(left, get).await.ok()
                    }
                    _ => None,
                };
                let (ret, returned_ns) = match outcome {
                    Some(Ok(paxos::Outcome::Value(v))) => {
                        (Ret::Read(v.map(|v| v.to_vec())), Some(now_ns()))
                    }
                    _ => (Ret::Unknown, None),
                };
                out.push(Operation {
                    client: id,
                    key,
                    call: Call::Get,
                    invoked_ns,
                    returned_ns,
                    ret,
                });
            }
            out
        });
    }
    let mut reads = Vec::with_capacity(keys.len());
    while let Some(done) = tasks.join_next().await {
        reads.extend(done.expect("a read-back task panicked"));
    }
    reads
}

/// Checks `history` with its final reads `finals` appended within `budget`, and counts the
/// acknowledged writes the final reads show were lost.
pub fn check_with_final_reads(
    history: &History,
    finals: Vec<Operation>,
    budget: Duration,
) -> LinearizabilityResult {
    let lost = final_reads(history, &finals);
    let mut whole = history.clone();
    whole.ops.extend(finals);
    let mut verdict = check_history(&whole, budget);
    verdict.final_reads = Some(lost);
    verdict
}

/// The history of a point whose Gets learners answered from their own state (`reads =
/// "learner"`), **not checked**: such reads are not linearizable by design (a learner answers
/// as of its last executed slot, behind the leader), so a check would report their staleness,
/// not a bug. The final reads (`finals`, through the voters' log), when there are some, still
/// count the acknowledged writes that were lost: the writes went through the log.
pub fn learner_reads_not_checked(
    history: &History,
    finals: Option<Vec<Operation>>,
) -> LinearizabilityResult {
    LinearizabilityResult {
        verdict: results::NOT_CHECKED.to_string(),
        detail: LEARNER_READS_NOT_CHECKED.to_string(),
        operations: history.ops.len() as u64,
        elapsed_ms: 0.0,
        history_truncated: history.truncated,
        final_reads: finals.map(|f| final_reads(history, &f)),
    }
}

/// Why a learner-read point's history is not checked (see [`learner_reads_not_checked`]).
pub const LEARNER_READS_NOT_CHECKED: &str =
    "reads = learner: learners answer Gets from their own state, not linearizable by design";

/// What the final reads `finals` of `history` show: the acknowledged writes that were lost.
fn final_reads(history: &History, finals: &[Operation]) -> FinalReads {
    let lost = lincheck::lost_writes(&history.ops, finals);
    FinalReads {
        keys: lost.keys,
        unread_keys: lost.unread_keys,
        acknowledged: lost.acknowledged,
        lost: lost.lost,
        examples: lost.examples.iter().map(describe).collect(),
    }
}

/// One write as a reader wants it: `put key-0042 by session 7, request 3, 4.263–4.268 s into the load`
/// (a generator's values name their session and request: [`loadgen::workload::value_id`]).
fn describe(op: &Operation) -> String {
    let key = String::from_utf8_lossy(&op.key);
    let what = match &op.call {
        Call::Put(v) => match loadgen::workload::value_id(v) {
            Some((session, request)) => {
                format!("put {key} by session {session}, request {request}")
            }
            None => format!("put {key} ({} bytes)", v.len()),
        },
        Call::Delete => format!("delete {key}"),
        Call::Get => format!("get {key}"),
    };
    let s = |ns: u64| ns as f64 / 1e9;
    match op.returned_ns {
        Some(r) => format!(
            "{what}, {:.3}–{:.3} s into the load",
            s(op.invoked_ns),
            s(r)
        ),
        None => format!("{what}, from {:.3} s into the load", s(op.invoked_ns)),
    }
}
