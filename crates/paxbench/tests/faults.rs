//! Faults during a measured run, end to end: `paxbench run` kills the Multi-Paxos leader under
//! load and restarts it, pauses a follower, partitions a node through the emulated link, and the
//! results say what happened: every fault applied at its time, a timeline with the faults and
//! the leader change marked, availability figures, and a linearizability verdict on what the
//! clients saw. A fault that cannot be applied is an error in the results, not a silence.
//!
//! Loopback only; `paxbench run` starts and stops every node process by pid.

use std::path::{Path, PathBuf};
use std::process::Command;

fn paxbench(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_paxbench"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// Runs `experiment` in a fresh directory and returns the directory and the run's results.
fn run(experiment: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("e.toml"), experiment).unwrap();
    let out = paxbench(&["run", "e.toml", "--out", "res"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let run = std::fs::read_dir(dir.path().join("res"))
        .unwrap()
        .flatten()
        .next()
        .expect("a results directory")
        .path();
    (dir, run)
}

fn points(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("points.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const FAILOVER: &str = r#"
name = "failover-test"
protocols = ["multi-paxos"]
warmup_s = 0.5
duration_s = 5.0

[cluster]
nodes = 3
durability = "fsync"

[workload]
keys = 1000
read_fraction = 0.5
hot_keys = 8
hot_fraction = 0.5

[load]
mode = "open"
rates = [400]
timeout_ms = 1500

[[faults]]
at_s = 1.0
action = "kill"
target = "leader"
restart_after_s = 1.5

[[faults]]
at_s = 3.0
action = "pause"
target = "follower"
for_s = 0.5

[[faults]]
at_s = 3.8
action = "partition"
target = 2
for_s = 0.6
"#;

#[test]
fn a_killed_leader_is_replaced_and_the_run_says_how_long_it_took() {
    let (_dir, run) = run(FAILOVER);
    let points = points(&run);
    assert_eq!(points.len(), 1);
    let p = &points[0];
    let faults = p["faults"].as_array().expect("faults recorded");
    assert_eq!(faults.len(), 3);
    for f in faults {
        assert_eq!(f["applied"], true, "{f}");
        assert!(f["error"].is_null(), "{f}");
        assert!(f["end_s"].as_f64().is_some(), "each fault was lifted: {f}");
    }
    // Applied when due: never early, and not long after (the schedule is checked every
    // 50 ms; a loaded machine may add to that).
    let at = faults[0]["at_s"].as_f64().unwrap();
    assert!((0.99..1.5).contains(&at), "kill at {at} s");
    assert_eq!(faults[0]["action"], "kill");
    assert!(
        faults[0]["node"].as_u64().is_some(),
        "the leader was resolved to a node"
    );
    assert_eq!(p["leader_changed"], true);
    let a = &p["availability"];
    let gap = a["longest_gap_ms"].as_f64().expect("availability figures");
    assert!(
        gap >= 100.0,
        "a leader kill stalls commits: longest gap {gap} ms"
    );
    let recovery = a["to_new_leader_ms"]
        .as_f64()
        .expect("a new leader took over");
    assert!(
        recovery > 0.0 && recovery < 4_000.0,
        "recovered in {recovery} ms"
    );
    // What the clients saw is linearizable.
    let lin = &p["linearizable"];
    assert_eq!(lin["verdict"], "linearizable", "{lin}");
    assert!(lin["operations"].as_u64().unwrap() > 500, "{lin}");
    // The timeline, its markers and its plot.
    let id = p["point_id"].as_str().unwrap();
    let rows = std::fs::read_to_string(run.join("timeline").join(format!("{id}.csv"))).unwrap();
    assert!(rows.lines().count() > 40, "100 ms buckets over 5 s");
    let markers =
        std::fs::read_to_string(run.join("timeline").join(format!("{id}.markers.csv"))).unwrap();
    for kind in ["fault_start", "fault_end", "leader_change"] {
        assert!(markers.contains(kind), "{kind} missing:\n{markers}");
    }
    assert!(run
        .join("plots")
        .join(format!("timeline-{id}.svg"))
        .exists());
    let summary = std::fs::read_to_string(run.join("summary.md")).unwrap();
    assert!(summary.contains("## Availability"), "{summary}");
    // The restarted node's second life has its own log.
    let logs = walk(&run.join("logs"));
    assert!(
        logs.iter().any(|l| l.contains(".restart-1.log")),
        "{logs:?}"
    );
}

#[test]
fn a_fault_that_cannot_be_applied_is_an_error_in_the_results() {
    // Unreplicated has one node: there is no follower to pause.
    let (_dir, run) = run(r#"
name = "unapplied"
protocols = ["unreplicated"]
warmup_s = 0.3
duration_s = 1.5

[workload]
read_fraction = 0.5

[load]
mode = "open"
rates = [200]

[[faults]]
at_s = 0.5
action = "pause"
target = "follower"
for_s = 0.5
"#);
    let points = points(&run);
    let f = &points[0]["faults"][0];
    assert_eq!(f["action"], "pause");
    assert_eq!(f["applied"], false, "{f}");
    let error = f["error"].as_str().unwrap_or_default();
    assert!(error.contains("no follower"), "{f}");
    let summary = std::fs::read_to_string(run.join("summary.md")).unwrap();
    assert!(summary.contains("NOT applied"), "{summary}");
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

#[test]
fn a_follower_and_then_the_leader_are_replaced_during_a_run() {
    // Three voters and two learners; a follower gives way to learner 3, then the leader to
    // learner 4, under open-loop load.
    let (_dir, run) = run(r#"
name = "reconfig-test"
protocols = ["multi-paxos"]
warmup_s = 0.5
duration_s = 4.0

[cluster]
nodes = 3
learners = 2

[workload]
keys = 1000
read_fraction = 0.5
hot_keys = 8
hot_fraction = 0.5

[load]
mode = "open"
rates = [400]
timeout_ms = 1500

[[faults]]
at_s = 1.0
action = "reconfigure"
remove = "follower"
add = 3

[[faults]]
at_s = 2.5
action = "reconfigure"
remove = "leader"
add = 4
"#);
    let points = points(&run);
    let p = &points[0];
    let faults = p["faults"].as_array().expect("faults recorded");
    for f in faults {
        assert_eq!(f["applied"], true, "{f}");
        assert!(f["error"].is_null(), "{f}");
        let (at, end) = (f["at_s"].as_f64().unwrap(), f["end_s"].as_f64().unwrap());
        assert!(end >= at, "chosen after it was sent: {f}");
    }
    let leader0 = faults[1]["node"].as_u64().expect("the leader was resolved");
    assert_eq!(faults[0]["added"], 3);
    assert_eq!(faults[1]["added"], 4);
    let follower = faults[0]["node"].as_u64().unwrap();
    assert_ne!(follower, leader0, "the follower is not the leader");
    assert_eq!(p["leader_changed"], true, "the removed leader stepped down");
    // The new leader is a voter of the new configuration.
    let id = p["point_id"].as_str().unwrap();
    let markers =
        std::fs::read_to_string(run.join("timeline").join(format!("{id}.markers.csv"))).unwrap();
    let last_leader: u64 = markers
        .lines()
        .rfind(|l| l.contains("leader_change"))
        .and_then(|l| l.split("\"leader ").nth(1))
        .and_then(|l| l.split(',').next())
        .and_then(|n| n.parse().ok())
        .expect("a leader change marked");
    let voters: Vec<u64> = (0..5).filter(|n| *n != follower && *n != leader0).collect();
    assert!(
        voters.contains(&last_leader),
        "leader {last_leader}: {markers}"
    );
    assert!(markers.contains("chosen: remove node"), "{markers}");
    // What the clients saw through both changes is linearizable, and nothing acknowledged
    // was lost.
    let lin = &p["linearizable"];
    assert_eq!(lin["verdict"], "linearizable", "{lin}");
    assert_eq!(lin["final_reads"]["lost"], 0, "{lin}");
    let summary = std::fs::read_to_string(run.join("summary.md")).unwrap();
    let table = summary
        .split("## Membership changes")
        .nth(1)
        .expect("a Membership changes section");
    assert!(
        table.contains(&format!("remove node {follower}, add node 3"))
            && table.contains(&format!("remove node {leader0}, add node 4")),
        "{table}"
    );
}
