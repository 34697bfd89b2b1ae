//! The linearizability checker's self-test, end to end: a checker that never fires proves
//! nothing. Each test runs `paxbench run` (three real nodes on loopback, an in-process load
//! generator, a fault schedule) with one deliberately broken setup, switched on by a self-test
//! knob, and the point's verdict in `points.jsonl` must be `violation`; the same experiment with
//! the knob off must be `linearizable`, so the violation is the bug's and not the harness's.
//!
//! - `[paxos] self_test_bug = "local-reads"`: every node answers reads from its own state. A
//!   follower is cut off for 0.6 s while clients spread over every node keep reading from it
//!   and writing through the leader.
//! - `[workload] self_test_bug = "retry-with-fresh-id"`: clients send a timed-out write again
//!   under a fresh request id and count it as one write. Killing the leader loses the replies of
//!   writes its successor still executes; their retries execute them again, after other clients
//!   had read them and seen them overwritten.
//! - `[paxos] self_test_bug = "ack-before-durable"`: nodes acknowledge writes two seconds
//!   before they are on disk. Every node is killed at once and restarted; reads after the restart
//!   see values older than acknowledged writes.
//!
//! The rates, keys and timings are chosen so that each bug shows in essentially every run, and
//! so that the histories stay cheap to check: the checker's cost grows with the operations
//! concurrent on one key, and operations that wait out an election or a timeout are long. A
//! broken run is still tried up to [`ATTEMPTS`] times, and so is a run whose fault could not be
//! applied (a fault aimed at "the leader" finds none during an election): a 2-core CI machine
//! under load can stretch any timing. Each attempt's verdict is printed, and for a violation the
//! minimal set of operations the checker found. The runs take turns (a mutex): three clusters
//! at once on two cores would measure the machine.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use loadgen::lincheck::{self, Call, Operation, Ret};

/// Runs of one setup before its test gives up on it.
const ATTEMPTS: usize = 3;

/// One `paxbench run` at a time.
static RUNS: Mutex<()> = Mutex::new(());

/// What one `paxbench run` of a one-point experiment said.
struct Run {
    /// Keeps the results until the run is dropped.
    _dir: tempfile::TempDir,
    /// The results directory.
    path: PathBuf,
    /// The point.
    point: serde_json::Value,
}

impl Run {
    fn verdict(&self) -> &serde_json::Value {
        &self.point["linearizable"]["verdict"]
    }

    /// Every fault was applied; else what went wrong.
    fn faults_applied(&self) -> Result<(), String> {
        let faults = self.point["faults"].as_array().expect("faults recorded");
        match faults.iter().find(|f| f["applied"] != true) {
            Some(f) => Err(f.to_string()),
            None => Ok(()),
        }
    }

    fn summary(&self) -> String {
        let lin = &self.point["linearizable"];
        format!(
            "{} over {} operations (checked in {:.0} ms; {} completed, {} timeouts)",
            lin["verdict"],
            lin["operations"],
            lin["elapsed_ms"].as_f64().unwrap_or(0.0),
            self.point["completed"],
            self.point["timeouts"],
        )
    }

    /// The violating operations, found again in the point's kept history (the key's own ops
    /// only, so this takes milliseconds), as lines to print.
    fn violating_operations(&self) -> Vec<String> {
        let detail = self.point["linearizable"]["detail"].as_str().unwrap_or("");
        let Some(key) = detail
            .strip_prefix("VIOLATION on key ")
            .and_then(|d| d.split(':').next())
        else {
            return vec![format!("(no key in {detail:?})")];
        };
        let id = self.point["point_id"].as_str().expect("a point id");
        let file = self.path.join("history").join(format!("{id}.jsonl"));
        let history = loadgen::History::read_jsonl(&file).expect("a violation keeps its history");
        let ops: Vec<Operation> = history
            .ops
            .into_iter()
            .filter(|o| o.key == key.as_bytes())
            .collect();
        let report = lincheck::check(&ops, Duration::from_secs(20)).expect("a valid history");
        match report.verdict {
            lincheck::Verdict::Violation { operations, .. } => operations
                .iter()
                .map(|o| show(o, history.window_offset_ns))
                .collect(),
            other => vec![format!("(checked again: {other})")],
        }
    }
}

/// One operation, its instants in ms from the start of the measured window.
fn show(o: &Operation, window_ns: u64) -> String {
    let ms = |ns: u64| (ns as f64 - window_ns as f64) / 1e6;
    let write = |v: &[u8]| match loadgen::value_id(v) {
        Some((client, request)) => format!("w{client:x}.{request}"),
        None => format!("{v:?}"),
    };
    let call = match &o.call {
        Call::Put(v) => format!("put {}", write(v)),
        Call::Get => "get".into(),
        Call::Delete => "delete".into(),
    };
    let ret = match &o.ret {
        Ret::Done => "done".into(),
        Ret::Read(Some(v)) => format!("read {}", write(v)),
        Ret::Read(None) => "read nothing".into(),
        Ret::Unknown => "unknown".into(),
    };
    let returned = o
        .returned_ns
        .map_or("?".into(), |r| format!("{:.1}", ms(r)));
    format!(
        "client {:x}: {call} [{:.1} ms, {returned} ms] -> {ret}",
        o.client,
        ms(o.invoked_ns)
    )
}

/// Runs `experiment` through `paxbench run` in a fresh directory.
fn run(experiment: &str) -> Run {
    let _turn = RUNS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("e.toml"), experiment).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_paxbench"))
        .args(["run", "e.toml", "--out", "res"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let path = std::fs::read_dir(dir.path().join("res"))
        .unwrap()
        .flatten()
        .next()
        .expect("a results directory")
        .path();
    let mut points = points(&path);
    assert_eq!(points.len(), 1, "one point");
    Run {
        _dir: dir,
        path,
        point: points.remove(0),
    }
}

fn points(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("points.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `experiment` with `knob` where `{bug}` stands (on), or nothing there (off).
fn with_bug(experiment: &str, knob: &str, on: bool) -> String {
    experiment.replace("{bug}", if on { knob } else { "" })
}

/// The broken setup is a violation (within [`ATTEMPTS`] runs) and the correct one is not.
fn caught(name: &str, experiment: &str, knob: &str) {
    let mut misses = Vec::new();
    let mut caught = None;
    for attempt in 1..=ATTEMPTS {
        let r = run(&with_bug(experiment, knob, true));
        println!("{name}, attempt {attempt}: {}", r.summary());
        if let Err(fault) = r.faults_applied() {
            println!("  a fault was not applied, so the run proves nothing: {fault}");
            misses.push(format!("fault not applied: {fault}"));
            continue;
        }
        if r.verdict() == "violation" {
            caught = Some(r);
            break;
        }
        misses.push(r.summary());
    }
    let r = caught.unwrap_or_else(|| {
        panic!("{name}: no violation in {ATTEMPTS} runs with `{knob}`: {misses:#?}")
    });
    println!("  {}", r.point["linearizable"]["detail"]);
    let ops = r.violating_operations();
    for op in &ops {
        println!("    {op}");
    }
    assert!(
        ops.len() >= 2 && !ops[0].starts_with('('),
        "{name}: the violation names its operations: {ops:?}"
    );

    for attempt in 1..=ATTEMPTS {
        let clean = run(&with_bug(experiment, knob, false));
        println!("{name}, without the bug: {}", clean.summary());
        if let Err(fault) = clean.faults_applied() {
            println!("  a fault was not applied, so the run proves nothing: {fault}");
            assert!(
                attempt < ATTEMPTS,
                "{name}: no clean run applied its faults"
            );
            continue;
        }
        assert_eq!(
            clean.verdict(),
            "linearizable",
            "{name}: the same run without `{knob}` must be linearizable: {}",
            clean.point["linearizable"]
        );
        let ops = clean.point["linearizable"]["operations"].as_u64().unwrap();
        assert!(ops > 300, "{name}: {ops} operations");
        return;
    }
}

/// Clients on every node, a hot set of two keys. From 1 s on, a follower is cut off for 0.6 s
/// (the election timeout of 1-2 s keeps it from campaigning, so the correct cluster runs on
/// without a hitch); its stale reads start with the first write to a hot key the leader takes
/// after the cut.
const LOCAL_READS: &str = r#"
name = "selftest-local-reads"
protocols = ["multi-paxos"]
warmup_s = 0.5
duration_s = 2.5

[cluster]
nodes = 3

[paxos]
election_timeout_us = 1000000
{bug}

[workload]
keys = 100
read_fraction = 0.5
hot_keys = 2
hot_fraction = 0.8
target = "all"

[load]
mode = "open"
rates = [300]
timeout_ms = 1000

[[faults]]
at_s = 1.0
action = "partition"
target = "follower"
for_s = 0.6
"#;

#[test]
fn stale_local_reads_are_a_violation() {
    caught(
        "local-reads",
        LOCAL_READS,
        r#"self_test_bug = "local-reads""#,
    );
}

/// The leader is killed at 1 s (and restarted a second later). Each link holds datagrams 40 ms,
/// and the leader proposes every arrival at once (`partial_batches = window`; by default it
/// would wait for the one partial batch in flight, and whether that one had reached the
/// followers when it died would be a coin toss), so the writes of some 40 ms, about seven, are
/// accepted by both followers when it dies: the next leader, elected within about a second,
/// executes them, but nobody answers. Their clients time out 2.5 s after sending them, after
/// the other clients have read those values and overwritten most of them, and the broken
/// clients send them again. 32 keys and 70% reads: each key sees reads around both executions,
/// and few long (retried) writes.
const RETRY_FRESH_ID: &str = r#"
name = "selftest-retry-fresh-id"
protocols = ["multi-paxos"]
warmup_s = 0.5
duration_s = 4.5

[cluster]
nodes = 3

[paxos]
partial_batches = 32

[network]
delay_ms = 40.0

[workload]
keys = 32
read_fraction = 0.7
target = "all"
{bug}

[load]
mode = "open"
rates = [600]
timeout_ms = 2500

[[faults]]
at_s = 1.0
action = "kill"
target = "leader"
restart_after_s = 1.0
"#;

#[test]
fn a_retry_under_a_fresh_request_id_is_a_violation() {
    caught(
        "retry-with-fresh-id",
        RETRY_FRESH_ID,
        r#"self_test_bug = "retry-with-fresh-id""#,
    );
}

/// Every node is killed at 2.5 s and restarted half a second later from what its log holds.
/// The kills of one instant land up to a few hundred ms apart (`paxbench run` applies them one
/// by one); with the bug each node's log lacks its last 2 s, so the writes acknowledged in the
/// last second or more before the first kill are gone from every node, and each of the 8 keys
/// had several. The clients' QUIC connections to the killed processes close only at their 3 s
/// idle timeout, so the load resumes 1.5 to 3 s after the kill, with a second or more to read.
const ACK_BEFORE_DURABLE: &str = r#"
name = "selftest-ack-before-durable"
protocols = ["multi-paxos"]
warmup_s = 0.5
duration_s = 7.0

[cluster]
nodes = 3
durability = "fsync"

[paxos]
{bug}

[workload]
keys = 8
read_fraction = 0.5

[load]
mode = "open"
rates = [300]
timeout_ms = 1000

[[faults]]
at_s = 2.5
action = "kill"
target = 0
restart_after_s = 0.5

[[faults]]
at_s = 2.5
action = "kill"
target = 1
restart_after_s = 0.5

[[faults]]
at_s = 2.5
action = "kill"
target = 2
restart_after_s = 0.5
"#;

#[test]
fn acknowledging_before_durable_then_losing_every_node_is_a_violation() {
    caught(
        "ack-before-durable",
        ACK_BEFORE_DURABLE,
        r#"self_test_bug = "ack-before-durable""#,
    );
}

/// The final reads count lost writes directly: every node acknowledging before durable is
/// killed 1 s before the window ends and restarted 0.5 s later, so no write is acknowledged
/// after the kill before the window ends (the clients' connections to the dead processes time
/// out first), and the last acknowledged write of every key, less than 2 s old, is gone from
/// every log. Reading each key back after the window must count them; the same run without the
/// bug must lose none, and read every key back.
#[test]
fn final_reads_count_the_writes_lost_by_acknowledging_before_durable() {
    let late = ACK_BEFORE_DURABLE
        .replace("duration_s = 7.0", "duration_s = 6.0")
        .replace("at_s = 2.5", "at_s = 5.0");
    let finals = |r: &Run| r.point["linearizable"]["final_reads"].clone();
    let mut seen = Vec::new();
    let mut counted = false;
    for attempt in 1..=ATTEMPTS {
        let r = run(&with_bug(
            &late,
            r#"self_test_bug = "ack-before-durable""#,
            true,
        ));
        let f = finals(&r);
        println!("final reads with the bug, attempt {attempt}: {f}");
        if r.faults_applied().is_ok() && f["lost"].as_u64().is_some_and(|n| n > 0) {
            counted = true;
            break;
        }
        seen.push(f);
    }
    assert!(
        counted,
        "no lost write counted in {ATTEMPTS} runs: {seen:?}"
    );

    let r = run(&with_bug(&late, "", false));
    let f = finals(&r);
    println!("final reads without the bug: {f}");
    r.faults_applied()
        .expect("the clean run applied its faults");
    assert_eq!(f["lost"], 0, "{f}");
    assert_eq!(f["unread_keys"], 0, "{f}");
    assert_eq!(f["keys"], 8, "{f}");
    assert!(f["acknowledged"].as_u64().unwrap() > 100, "{f}");
    assert_eq!(r.verdict(), "linearizable", "{}", r.point["linearizable"]);
}
