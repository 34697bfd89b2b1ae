//! `paxbench run` end to end on a tiny experiment: real node processes on loopback, the load
//! generator, and a complete results directory; and a bad experiment file rejected with its
//! file, line and key.

use std::path::Path;
use std::process::Command;

const TINY: &str = r#"
name = "tiny"
description = "smoke test"
protocols = ["unreplicated", "multi-paxos"]
slo_p99_us = 50000
warmup_s = 0.3
duration_s = 1.0

[load]
mode = "open"
rates = [200, 400]
"#;

fn paxbench(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_paxbench"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn run_writes_a_complete_results_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tiny.toml"), TINY).unwrap();
    let out = paxbench(
        &[
            "run",
            "tiny.toml",
            "--out",
            "res",
            "--set",
            "load.rates=[200]",
        ],
        dir.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let runs: Vec<_> = std::fs::read_dir(dir.path().join("res"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(runs.len(), 1);
    let run = runs[0].path();
    assert!(run
        .file_name()
        .unwrap()
        .to_string_lossy()
        .ends_with("-tiny"));
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(
        config.contains("rates = [200.0]"),
        "the resolved config has the --set value: {config}"
    );
    let env: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("env.json")).unwrap()).unwrap();
    for key in [
        "host",
        "cpu_model",
        "cores",
        "kernel",
        "rustc",
        "git_revision",
        "git_dirty",
        "start",
        "end",
    ] {
        assert!(env.get(key).is_some(), "env.json lacks {key}");
    }
    let points: Vec<serde_json::Value> = std::fs::read_to_string(run.join("points.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(points.len(), 2, "one point per protocol");
    for p in &points {
        for key in [
            "protocol",
            "repetition",
            "offered_ops",
            "throughput_ops",
            "p50_us",
            "p90_us",
            "p99_us",
            "p999_us",
            "max_us",
            "mean_us",
            "completed",
            "errors",
            "timeouts",
            "nodes",
            "leader_changed",
            "logs",
        ] {
            assert!(p.get(key).is_some(), "point lacks {key}: {p}");
        }
        // logs/<cluster>/<host>/: a local run's one host is `local`.
        let logs = run.join(p["logs"].as_str().unwrap()).join("local");
        assert!(
            std::fs::read_to_string(logs.join("node-0.log"))
                .unwrap()
                .contains("status"),
            "node 0's log is kept in {}",
            logs.display()
        );
        assert!(p["completed"].as_u64().unwrap() > 0, "{p}");
        let nodes = p["nodes"].as_array().unwrap();
        let expected = if p["protocol"] == "unreplicated" {
            1
        } else {
            3
        };
        assert_eq!(nodes.len(), expected);
        assert!(nodes.iter().all(|n| n["rss_bytes"].as_u64().unwrap() > 0));
        let hist = run
            .join("hist")
            .join(format!("{}.hlog", p["point_id"].as_str().unwrap()));
        assert!(std::fs::metadata(&hist).unwrap().len() > 0);
    }
    let summary = std::fs::read_to_string(run.join("summary.md")).unwrap();
    assert!(
        summary.contains("Headline")
            && summary.contains("multi-paxos")
            && summary.contains("unreplicated")
    );
    let csv = std::fs::read_to_string(run.join("summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "a header and one row per point");
    for plot in std::fs::read_dir(run.join("plots")).unwrap().flatten() {
        assert!(std::fs::read_to_string(plot.path())
            .unwrap()
            .contains("<svg"));
    }
    // report re-renders from the raw files.
    std::fs::remove_file(run.join("summary.md")).unwrap();
    let out = paxbench(&["report", run.to_str().unwrap()], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(run.join("summary.md").exists());
}

#[test]
fn a_bad_experiment_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        TINY.replace("duration_s", "duraton_s"),
    )
    .unwrap();
    let out = paxbench(&["run", "bad.toml"], dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("bad.toml") && err.contains("line 7") && err.contains("duraton_s"),
        "{err}"
    );
    let out = paxbench(&["run", "bad.toml", "--set", "duraton_s=1"], dir.path());
    assert!(!out.status.success());
    // A swept value of the wrong type is an error at load time, even in a dry run.
    std::fs::write(
        dir.path().join("swept.toml"),
        format!("{TINY}\n[sweep]\nnodes = [\"three\", 5.5, 70]\n"),
    )
    .unwrap();
    let out = paxbench(&["run", "swept.toml", "--dry-run"], dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        err.contains("swept.toml:14: `nodes`") && err.contains("\"three\""),
        "{err}"
    );
    assert!(
        !dir.path().join("results").exists(),
        "nothing runs when the file is wrong"
    );
}

/// Every experiment file shipped in bench-configs/ parses, validates and expands to a grid.
#[test]
fn every_shipped_experiment_is_valid() {
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench-configs");
    let mut checked = 0;
    for entry in std::fs::read_dir(&configs).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = paxbench(&["run", path.to_str().unwrap(), "--dry-run"], &configs);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(stdout.contains("point(s)"), "{stdout}");
            checked += 1;
        }
    }
    assert!(
        checked >= 7,
        "quick, batching, contention, phase1, cluster-size, value-size, durability"
    );
}

/// `[network]` reaches the nodes through the typed path (experiment → cluster file → node),
/// and the run measures what it got: a 10 ms one-way delay between nodes 0 and 1 reads as a
/// round trip of about 20 ms in the points, while the other pairs stay fast.
#[test]
fn emulated_links_are_applied_and_their_round_trips_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let wan = r#"
name = "wan-tiny"
protocols = ["multi-paxos"]
slo_p99_us = 500000
warmup_s = 0.5
duration_s = 1.5

[paxos]
retry_timeout_us = 200000

[load]
mode = "open"
rates = [100]

[network]
regions = ["a", "b", "c"]
region_delay_ms = { a = { b = 10.0 } }
"#;
    std::fs::write(dir.path().join("wan.toml"), wan).unwrap();
    let out = paxbench(&["run", "wan.toml", "--out", "res"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = std::fs::read_dir(dir.path().join("res"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let points = std::fs::read_to_string(run.join("points.jsonl")).unwrap();
    let p: serde_json::Value = serde_json::from_str(points.lines().next().unwrap()).unwrap();
    let rtt = p["rtt"].as_array().expect("the point records round trips");
    assert_eq!(rtt.len(), 6, "each of 3 nodes to each of its 2 peers: {p}");
    for r in rtt {
        let (a, b) = (r["from"].as_u64().unwrap(), r["to"].as_u64().unwrap());
        let measured_ms = r["measured_us"].as_f64().unwrap() / 1000.0;
        if a + b == 1 {
            assert_eq!(r["configured_us"].as_f64(), Some(20_000.0), "{r}");
            // Tokio's timer makes each emulated delay read 1-2 ms long; a loaded machine adds
            // a little more.
            assert!(
                (19.0..40.0).contains(&measured_ms),
                "{a}-{b}: {measured_ms} ms"
            );
        } else {
            assert!(r["configured_us"].is_null(), "{r}");
            assert!(
                measured_ms < 10.0,
                "{a}-{b} is not emulated: {measured_ms} ms"
            );
        }
    }
    let summary = std::fs::read_to_string(run.join("summary.md")).unwrap();
    assert!(
        summary.contains("## Round trips between nodes") && summary.contains("| 0–1 | 20.0 |"),
        "{summary}"
    );
}

/// Every point records what its nodes counted while the load ran, and the summary shows it:
/// a tiny Basic Paxos run (Multi-Paxos for contrast) whose every node proposes, so every node
/// runs phase 1 and every command needs at least one round; and what every command cost on
/// the wire, Unreplicated included.
#[test]
fn basic_paxos_points_record_counters_and_the_summary_shows_contention() {
    let dir = tempfile::tempdir().unwrap();
    let exp = r#"
name = "contention-tiny"
protocols = ["basic-paxos", "multi-paxos", "unreplicated"]
slo_p99_us = 500000
warmup_s = 0.3
duration_s = 1.0

[workload]
target = "all"

[load]
mode = "open"
rates = [150]
"#;
    std::fs::write(dir.path().join("c.toml"), exp).unwrap();
    let out = paxbench(&["run", "c.toml", "--out", "res"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = std::fs::read_dir(dir.path().join("res"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let points: Vec<serde_json::Value> = std::fs::read_to_string(run.join("points.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(points.len(), 3);
    for p in &points {
        let c = &p["counters"];
        let nodes = c["nodes"]
            .as_array()
            .unwrap_or_else(|| panic!("no counters: {p}"));
        assert!(c.get("unreadable").is_none(), "every node answered: {c}");
        assert!(c["commands"].as_u64().unwrap() > 0, "{c}");
        // What the nodes' connections carried, per node and per command (QUIC: datagrams).
        let per = &c["per_command"];
        for n in nodes {
            let d = &n["delta"];
            let client = &d["client_traffic"];
            assert!(client["bytes_received"].as_u64().unwrap() > 0, "{n}");
            assert!(client["datagrams_sent"].as_u64().unwrap() > 0, "{n}");
            assert!(d["received"].is_object() || nodes.len() == 1, "{n}");
        }
        assert!(per["client_bytes"].as_f64().unwrap() > 0.0, "{c}");
        if p["protocol"] == "unreplicated" {
            // One node and no peer: nothing between nodes, at no cost per command.
            assert_eq!(nodes.len(), 1, "{c}");
            assert_eq!(per["messages_sent"].as_f64(), Some(0.0), "{c}");
            assert_eq!(per["peer_bytes"].as_f64(), Some(0.0), "{c}");
            continue;
        }
        assert_eq!(nodes.len(), 3, "{c}");
        let sent = per["messages_sent"].as_f64().unwrap();
        assert!(sent >= 2.0, "a replicated command costs messages: {c}");
        // On loopback every message sent is received; over the span of the point, give or
        // take the few heartbeats in flight when it was read.
        let received = per["messages_received"].as_f64().unwrap();
        assert!(
            (0.9 * sent..=1.1 * sent).contains(&received),
            "sent {sent}, received {received} per command: {c}"
        );
        assert!(per["peer_bytes"].as_f64().unwrap() > 0.0, "{c}");
        assert!(per["peer_datagrams"].as_f64().unwrap() > 0.0, "{c}");
        assert!(per["sent_by_kind"]["accept"].as_f64().unwrap() > 0.0, "{c}");
        assert!(
            per["received_by_kind"]["accept"].as_f64().unwrap() > 0.0,
            "{c}"
        );
        for n in nodes {
            let peer = &n["delta"]["peer_traffic"];
            assert!(peer["bytes_sent"].as_u64().unwrap() > 0, "{n}");
            assert!(peer["datagrams_received"].as_u64().unwrap() > 0, "{n}");
        }
        let stall = &p["stall"];
        assert_eq!(stall["threshold_ms"], 1000, "{stall}");
        assert_eq!(stall["livelock"], false, "{stall}");
        assert!(stall["longest_ms"].as_u64().is_some());
        if p["protocol"] != "basic-paxos" {
            continue;
        }
        for n in nodes {
            let d = &n["delta"];
            assert!(
                d["phase1_rounds"].as_u64().unwrap() > 0,
                "every Basic Paxos proposer ran phase 1: {n}"
            );
            assert!(d["sent"]["prepare"].as_u64().unwrap() > 0, "{n}");
        }
        let per = &c["per_command"];
        assert!(
            per["phase1_rounds"].as_f64().unwrap() >= 1.0,
            "one phase 1 at least per command (batches of 1): {c}"
        );
        // Every command decided in its proposer's own batch, under the attempt that decided it.
        assert_eq!(c["commands_from"], "decided_own", "{c}");
        let attempts: u64 = c["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_u64().unwrap())
            .sum();
        assert!(attempts > 0, "{c}");
        assert_eq!(attempts, c["commands"].as_u64().unwrap(), "{c}");
        let retried = per["retried_fraction"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&retried), "{c}");
        assert!(per["attempts_p50"].as_u64().unwrap() >= 1, "{c}");
        // Each proposer measured its phase-1 round trip: on loopback, above 0 and below 1 s.
        let rtts = c["phase1_rtt_us"].as_object().unwrap();
        assert_eq!(rtts.len(), 3, "{c}");
        for (id, rtt) in rtts {
            let rtt = rtt.as_u64().unwrap_or_else(|| panic!("node {id}: {c}"));
            assert!(rtt > 0 && rtt < 1_000_000, "node {id}: {rtt} µs");
        }
    }
    let summary = std::fs::read_to_string(run.join("summary.md")).unwrap();
    let section = summary
        .split("## Contention\n\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no Contention section: {summary}"));
    let table: Vec<&str> = section.lines().take_while(|l| l.starts_with('|')).collect();
    assert!(table[0].contains("phase-1 / cmd") && table[0].contains("Nacks / cmd"));
    assert_eq!(
        table.len(),
        4,
        "header, rule, one row per protocol: {section}"
    );
    assert!(table[2].starts_with("| basic-paxos |"), "{section}");
    assert!(table[3].starts_with("| multi-paxos |"), "{section}");
    // The costs of a command, for every protocol.
    let costs = summary
        .split("## Costs per command\n\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no Costs per command section: {summary}"));
    let table: Vec<&str> = costs.lines().take_while(|l| l.starts_with('|')).collect();
    for h in [
        "messages received / cmd",
        "peer bytes / cmd",
        "peer datagrams / cmd",
    ] {
        assert!(table[0].contains(h), "{h}: {}", table[0]);
    }
    assert_eq!(
        table.len(),
        5,
        "header, rule, one row per protocol: {costs}"
    );
    for protocol in ["basic-paxos", "multi-paxos", "unreplicated"] {
        assert!(
            table
                .iter()
                .any(|l| l.starts_with(&format!("| {protocol} |"))),
            "{protocol}: {costs}"
        );
    }
    let csv = std::fs::read_to_string(run.join("summary.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    assert!(header.contains("phase1_per_cmd"));
    assert!(header.contains("peer_bytes_per_cmd") && header.contains("sent_accept_per_cmd"));
}

/// The single results directory under `dir/res`.
fn only_run(dir: &Path) -> std::path::PathBuf {
    let runs: Vec<_> = std::fs::read_dir(dir.join("res"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(runs.len(), 1);
    runs[0].path()
}

fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `rates = "auto"` on Unreplicated over loopback: the search grows ×8 from 200 ops/s until a
/// level fails (1.6M ops/s, the cap, is far past what this generator can offer, so one does),
/// then bisects. Every level is a point with its step, and the bracket in search.jsonl is
/// consistent with them: the pass met the SLO, the fail broke it, pass < fail within the
/// resolution.
#[test]
fn a_rate_search_writes_its_levels_and_a_consistent_bracket() {
    let dir = tempfile::tempdir().unwrap();
    let exp = r#"
name = "search-tiny"
protocols = ["unreplicated"]
slo_p99_us = 50000
warmup_s = 0.3
duration_s = 0.5

[load]
mode = "open"
rates = "auto"
auto = { start_ops = 200, max_ops = 52428800, factor = 8.0, resolution = 1.0 }
timeout_ms = 500
"#;
    std::fs::write(dir.path().join("s.toml"), exp).unwrap();
    let out = paxbench(&["run", "s.toml", "--dry-run"], dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Growth 200, 1600, 12800, 102400, 819200, 6.6M, 52.4M; the longest search fails at
    // 52.4M and halves ×8 three times, to ×1.875: 7 + 3 levels. (A maximum a quiet machine can
    // reach would end the search "reached_max"; Unreplicated has passed 1.6M at this SLO.)
    assert!(
        stdout.contains("rate search 200 → 52428800 ops/s (×8, to 100%): 1 to 10 level(s)")
            && stdout.contains("= 1 to 10 point(s)")
            && stdout.contains("# in all: 1 to 10 point(s), 1 s to 8 s of load"),
        "the dry run gives the run length as a range: {stdout}"
    );
    let out = paxbench(&["run", "s.toml", "--out", "res"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = only_run(dir.path());
    let points = jsonl(&run.join("points.jsonl"));
    let searches = jsonl(&run.join("search.jsonl"));
    assert_eq!(
        searches.len(),
        1,
        "one search: one configuration, one repetition"
    );
    let s = &searches[0];
    assert_eq!(s["outcome"], "bracketed", "{s}");
    assert_eq!(s["levels"].as_u64().unwrap() as usize, points.len(), "{s}");
    let slo = 50000.0;
    let (pass, fail) = (
        s["pass_ops"].as_f64().unwrap(),
        s["fail_ops"].as_f64().unwrap(),
    );
    assert!(pass < fail && (fail - pass) / pass <= 1.0, "{s}");
    // Every point is a step of the search, in order, with its verdict.
    for (i, p) in points.iter().enumerate() {
        let step = &p["search"];
        assert_eq!(step["step"].as_u64(), Some(i as u64), "{p}");
        // Generator-bound or not: its lag is in its latencies.
        let met = p["p99_us"].as_f64().unwrap() < slo
            && p["errors"] == 0
            && p["timeouts"] == 0
            && p["completed"].as_u64().unwrap() > 0;
        assert_eq!(step["passed"].as_bool(), Some(met), "{p}");
        assert_eq!(
            step["why"].is_string(),
            !met,
            "a failed level says why: {p}"
        );
    }
    // Growth ×8 from the start until the first failure, bisection after.
    let rate = |p: &serde_json::Value| p["offered_ops"].as_f64().unwrap();
    assert_eq!(rate(&points[0]), 200.0);
    let grow = points
        .iter()
        .take_while(|p| p["search"]["phase"] == "grow")
        .count();
    for w in points[..grow].windows(2) {
        assert_eq!(rate(&w[1]), (rate(&w[0]) * 8.0).min(52_428_800.0));
        assert_eq!(w[0]["search"]["passed"], true);
    }
    assert_eq!(
        points[grow - 1]["search"]["passed"],
        false,
        "growth ends at a fail"
    );
    assert!(points[grow..]
        .iter()
        .all(|p| p["search"]["phase"] == "bisect"));
    // The bracket's points are the ones at its rates, and agree with it.
    let by_id = |id: &serde_json::Value| {
        points
            .iter()
            .find(|p| p["point_id"] == *id)
            .unwrap_or_else(|| panic!("no point {id}"))
    };
    let (p_pass, p_fail) = (by_id(&s["pass_point"]), by_id(&s["fail_point"]));
    assert_eq!((rate(p_pass), rate(p_fail)), (pass, fail));
    assert_eq!(p_pass["search"]["passed"], true, "{p_pass}");
    assert!(
        p_pass["p99_us"].as_f64().unwrap() < slo,
        "the pass met the SLO: {p_pass}"
    );
    assert_eq!(p_fail["search"]["passed"], false, "{p_fail}");
    assert_eq!(s["fail_why"], p_fail["search"]["why"]);
    // No passing level above the bracket's pass, no failing one between it and the fail.
    for p in &points {
        let r = rate(p);
        if p["search"]["passed"] == true {
            assert!(r <= pass, "{p}");
        } else {
            assert!(r >= fail, "{p}");
        }
    }
    let summary = std::fs::read_to_string(run.join("summary.md")).unwrap();
    let section = summary
        .split("## Saturation search\n\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no search section: {summary}"));
    let row = section
        .lines()
        .find(|l| l.starts_with("| unreplicated |"))
        .unwrap_or_else(|| panic!("{section}"));
    assert!(
        row.contains(&format!("0: {pass:.0} → {fail:.0}")) && row.contains("bracketed to 100%"),
        "{row}"
    );
}

/// `repetitions = "auto"`: a configuration repeats until its intervals are within the width
/// or the maximum, and repetitions.jsonl says which happened and why.
#[test]
fn auto_repetitions_stop_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let exp = r#"
name = "reps-tiny"
protocols = ["unreplicated"]
slo_p99_us = 50000
warmup_s = 0.2
duration_s = 0.3
repetitions = "auto"
min_repetitions = 2
max_repetitions = 3
ci_width = 0.5

[load]
mode = "open"
rates = [300]
"#;
    std::fs::write(dir.path().join("r.toml"), exp).unwrap();
    let out = paxbench(&["run", "r.toml", "--dry-run"], dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("1 level(s) × 2 to 3 repetition(s)")
            && stdout.contains("= 2 to 3 point(s)"),
        "{stdout}"
    );
    let out = paxbench(&["run", "r.toml", "--out", "res"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = only_run(dir.path());
    let points = jsonl(&run.join("points.jsonl"));
    let records = jsonl(&run.join("repetitions.jsonl"));
    assert_eq!(records.len(), 1, "one configuration");
    let r = &records[0];
    let n = r["repetitions"].as_u64().unwrap();
    assert_eq!(n as usize, points.len(), "{r}");
    assert!((2..=3).contains(&n), "{r}");
    let reps: Vec<u64> = points
        .iter()
        .map(|p| p["repetition"].as_u64().unwrap())
        .collect();
    assert_eq!(reps, (0..n).collect::<Vec<_>>());
    let point = &r["points"][0];
    assert_eq!(point["level"], 300.0, "{r}");
    let width = |k: &str| {
        let i = &point[k];
        (i["hi"].as_f64().unwrap() - i["lo"].as_f64().unwrap()) / i["median"].as_f64().unwrap()
    };
    let tight = width("p50_us") <= 0.5 && width("throughput_ops") <= 0.5;
    match r["outcome"].as_str().unwrap() {
        "converged" => assert!(tight, "{r}"),
        "max_reached" => assert!(!tight && n == 3, "{r}"),
        other => panic!("{other}"),
    }
    let summary = std::fs::read_to_string(run.join("summary.md")).unwrap();
    assert!(summary.contains("## Repetitions"), "{summary}");
}

/// `learners = 2` with `reads = "learner"`: the cluster gets two learner processes after its
/// three voters, the generator sends its Gets to them (their counters show the local reads, the
/// voters' none), the point records how far they were behind the leader, and its history is
/// reported "not checked" with why, never as a linearizability failure.
#[test]
fn learner_reads_go_to_the_learners_and_their_staleness_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("learners.toml"),
        r#"
name = "learners"
protocols = ["multi-paxos"]
warmup_s = 0.3
duration_s = 1.0

[cluster]
learners = 2

[paxos]
reads = "learner"

[workload]
read_fraction = 0.5
keys = 100

[load]
mode = "closed"
clients = [8]

[record]
history = "on"
"#,
    )
    .unwrap();
    let out = paxbench(&["run", "learners.toml", "--out", "res"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = only_run(dir.path());
    let points = jsonl(&run.join("points.jsonl"));
    assert_eq!(points.len(), 1);
    let p = &points[0];
    assert_eq!(
        p["nodes"].as_array().unwrap().len(),
        5,
        "3 voters + 2 learners"
    );
    let local_reads = |id: u64| {
        p["counters"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id)
            .unwrap_or_else(|| panic!("node {id} in {}", p["counters"]))["delta"]["local_reads"]
            .as_u64()
            .unwrap()
    };
    for learner in [3, 4] {
        assert!(
            local_reads(learner) > 0,
            "learner {learner} answered no Get: {p}"
        );
    }
    for voter in [0, 1, 2] {
        assert_eq!(local_reads(voter), 0, "voter {voter} read locally");
    }
    let s = &p["staleness"];
    assert_eq!(s["learners"], serde_json::json!([3, 4]));
    assert_eq!(s["learner_reads"], true);
    assert!(s["samples"].as_u64().unwrap() > 0, "{s}");
    let (p50, max) = (
        s["lag_slots_p50"].as_f64().unwrap(),
        s["lag_slots_max"].as_f64().unwrap(),
    );
    assert!(0.0 <= p50 && p50 <= max, "{s}");
    assert!(s["leader_slots_per_s"].as_f64().unwrap() > 0.0, "{s}");
    assert_eq!(p["linearizable"]["verdict"], "not checked", "{p}");
    assert!(p["linearizable"]["detail"]
        .as_str()
        .unwrap()
        .contains("learner"));
    let summary = std::fs::read_to_string(run.join("summary.md")).unwrap();
    assert!(
        summary.contains("## Learners")
            && summary.contains("⚠ not linearizable")
            && summary.contains("not checked (learner reads: not linearizable) 1/1"),
        "{summary}"
    );
}
