//! Faults in results: timeline files, timeline plots, availability figures in the summary, and
//! old results directories that have none of it.

use std::path::{Path, PathBuf};

use results::{
    Availability, FaultRecord, Marker, MarkerKind, Timeline, TimelineRow, LINEARIZABLE, UNKNOWN,
    VIOLATION,
};
use serde_json::json;

fn bucket(t_ms: u64, completions: u64) -> TimelineRow {
    TimelineRow {
        t_ms,
        width_ms: 100,
        completions,
        errors: 0,
        timeouts: 0,
        p50_us: (completions > 0).then_some(400),
        p99_us: (completions > 0).then_some(900),
    }
}

/// 5 s of 100 ms buckets at 100 completions each; a leader kill at 2 s, a leader change at
/// 2.5 s, nothing completes for `gap_ms`, then service is back; a restart at 4 s. A timeout
/// in every silent bucket.
fn leader_kill(gap_ms: u64) -> Timeline {
    let rows = (0..50)
        .map(|i| {
            let t = i * 100;
            let silent = (2000..2000 + gap_ms).contains(&t);
            let mut b = bucket(t, if silent { 0 } else { 100 });
            b.timeouts = u64::from(silent);
            b
        })
        .collect();
    Timeline {
        rows,
        markers: vec![
            Marker {
                t_ms: 2000.0,
                kind: MarkerKind::FaultStart,
                label: "kill node 1".into(),
            },
            Marker {
                t_ms: 2500.0,
                kind: MarkerKind::LeaderChange,
                label: "leader 2, ballot 7.2".into(),
            },
            Marker {
                t_ms: 4000.0,
                kind: MarkerKind::FaultEnd,
                label: "restart node 1".into(),
            },
        ],
    }
}

fn fault(action: &str, target: &str, applied: bool, error: Option<&str>) -> FaultRecord {
    FaultRecord {
        action: action.into(),
        target: target.into(),
        node: applied.then_some(1),
        added: None,
        at_s: 2.0,
        end_s: Some(4.0),
        applied,
        error: error.map(str::to_string),
    }
}

fn lin(verdict: &str, detail: &str) -> serde_json::Value {
    json!({"verdict": verdict, "detail": detail, "operations": 5000, "elapsed_ms": 12.5,
           "history_truncated": false})
}

/// A point line with the fields every writer has written so far.
fn base_point(id: &str, protocol: &str, rep: u32) -> serde_json::Value {
    json!({
        "point_id": id, "protocol": protocol, "params": {"rate": 1000}, "repetition": rep,
        "offered_ops": 1000.0, "throughput_ops": 990.0, "p50_us": 400, "p90_us": 600,
        "p99_us": 900, "p999_us": 2000, "max_us": 5000, "mean_us": 450.0, "completed": 4950,
        "errors": 0, "timeouts": 7, "send_lag_p99_us": 20, "generator_bound": false,
        "leader_changed": protocol == "multi-paxos",
    })
}

/// A run: Multi-Paxos with a leader kill in three repetitions (gaps of 600, 700 and 900 ms,
/// the last with a linearizability violation); Basic Paxos with a node kill whose second
/// repetition could not be applied and whose third check ran out of budget; Unreplicated
/// without faults. No point stores its availability: it must come from `timeline/`.
fn write_run(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let mut lines = String::new();
    for (rep, gap) in [600, 700, 900].into_iter().enumerate() {
        let id = format!("m-r{rep}");
        results::write_timeline(dir, &id, &leader_kill(gap)).unwrap();
        let mut p = base_point(&id, "multi-paxos", rep as u32);
        p["faults"] = json!([fault("kill", "leader", true, None)]);
        p["linearizable"] = if rep == 2 {
            lin(VIOLATION, "get k7 returned v3 after put k7 v4 completed")
        } else {
            lin(LINEARIZABLE, "")
        };
        lines.push_str(&format!("{p}\n"));
    }
    for rep in 0..3u32 {
        let id = format!("b-r{rep}");
        let applied = rep != 1;
        if applied {
            // No leader change: throughput halves while node 3 is down.
            let mut t = leader_kill(0);
            t.markers.retain(|m| m.kind != MarkerKind::LeaderChange);
            for r in t.rows.iter_mut().filter(|r| (2000..3000).contains(&r.t_ms)) {
                r.completions = if r.t_ms < 2300 { 20 } else { 60 };
            }
            results::write_timeline(dir, &id, &t).unwrap();
        }
        let mut p = base_point(&id, "basic-paxos", rep);
        p["faults"] = json!([fault(
            "kill",
            "3",
            applied,
            (!applied).then_some("ssh: node 3 unreachable")
        )]);
        p["linearizable"] = if rep == 2 {
            lin(UNKNOWN, "budget")
        } else {
            lin(LINEARIZABLE, "")
        };
        lines.push_str(&format!("{p}\n"));
    }
    lines.push_str(&format!("{}\n", base_point("u-r0", "unreplicated", 0)));
    std::fs::write(dir.join("points.jsonl"), lines).unwrap();
    std::fs::write(dir.join("config.toml"), "name = \"faults\"\n").unwrap();
}

#[test]
fn timeline_files_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let mut t = leader_kill(700);
    t.rows[3].errors = 2;
    t.rows[4].p50_us = None;
    t.markers.push(Marker {
        t_ms: 3210.25,
        kind: MarkerKind::LeaderChange,
        label: "odd \"label\", with\na line break".into(),
    });
    results::write_timeline(tmp.path(), "p0007", &t).unwrap();
    assert!(tmp.path().join("timeline/p0007.csv").is_file());
    assert!(tmp.path().join("timeline/p0007.markers.csv").is_file());
    let back = results::read_timeline(tmp.path(), "p0007")
        .unwrap()
        .unwrap();
    assert_eq!(back, t);

    let csv = std::fs::read_to_string(tmp.path().join("timeline/p0007.csv")).unwrap();
    assert!(csv.starts_with("t_ms,width_ms,completions,errors,timeouts,p50_us,p99_us\n"));
    assert!(csv.contains("\n2000,100,0,0,1,,\n"), "{csv}");

    // No markers file: no markers. No timeline at all: None.
    std::fs::remove_file(tmp.path().join("timeline/p0007.markers.csv")).unwrap();
    let rows_only = results::read_timeline(tmp.path(), "p0007")
        .unwrap()
        .unwrap();
    assert_eq!((rows_only.rows, rows_only.markers.len()), (t.rows, 0));
    assert_eq!(results::read_timeline(tmp.path(), "p0008").unwrap(), None);

    let empty = Timeline::default();
    results::write_timeline(tmp.path(), "empty", &empty).unwrap();
    assert_eq!(
        results::read_timeline(tmp.path(), "empty").unwrap(),
        Some(empty)
    );
}

fn svg(t: &Timeline) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("t.svg");
    results::timeline_svg("a timeline", t, &path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
    text
}

#[test]
fn the_timeline_plot_labels_every_marker() {
    let text = svg(&leader_kill(700));
    for label in [
        "kill node 1",
        "leader 2, ballot 7.2",
        "restart node 1",
        "completions/s",
        "errors + timeouts/s",
        "seconds into the measured window",
    ] {
        assert!(text.contains(label), "plot lacks {label:?}");
    }
}

#[test]
fn the_timeline_plot_draws_empty_and_gappy_timelines() {
    assert!(svg(&Timeline::default()).contains("no buckets in this timeline"));

    // Missing buckets, empty buckets, one isolated bucket, a zero-width bucket, p99 of 0,
    // no markers.
    let mut rows = vec![bucket(0, 0), bucket(100, 5), bucket(800, 0), bucket(900, 3)];
    rows.push(TimelineRow {
        width_ms: 0,
        ..bucket(1000, 1)
    });
    rows[1].p99_us = Some(0);
    svg(&Timeline {
        rows,
        markers: Vec::new(),
    });

    // Markers only, one before the window and one not a number.
    let text = svg(&Timeline {
        rows: Vec::new(),
        markers: vec![
            Marker {
                t_ms: -500.0,
                kind: MarkerKind::FaultStart,
                label: String::new(),
            },
            Marker {
                t_ms: f64::NAN,
                kind: MarkerKind::LeaderChange,
                label: "nan".into(),
            },
        ],
    });
    assert!(
        text.contains("fault_start"),
        "an unlabelled marker shows its kind"
    );
}

#[test]
fn summary_shows_availability_linearizability_and_failed_faults() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    write_run(&dir);
    let run = results::render(&dir).unwrap();

    // Availability was recomputed from timeline/: it is what compute() gives.
    for p in &run.points {
        let expect = results::read_timeline(&dir, &p.point_id)
            .unwrap()
            .and_then(|t| Availability::compute(&t, &results::fault_windows(&p.faults)));
        assert_eq!(p.availability, expect, "{}", p.point_id);
    }
    let m0 = run.points[0].availability.as_ref().unwrap();
    assert_eq!(m0.longest_gap_ms, Some(600));
    assert_eq!(m0.to_new_leader_ms, Some(600.0));

    let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    let section = md
        .split("## Availability")
        .nth(1)
        .and_then(|s| s.split("## Points").next())
        .expect("no Availability section");
    let row = |protocol: &str| -> Vec<String> {
        section
            .lines()
            .find(|l| l.starts_with(&format!("| {protocol} |")))
            .unwrap_or_else(|| panic!("no {protocol} row in\n{md}"))
            .split('|')
            .map(|c| c.trim().to_string())
            .collect()
    };
    // cells: "", protocol, config, load, faults, gap, to leader, to ½, p99, failed, lin, links
    let m = row("multi-paxos");
    assert_eq!(m[3], "1000");
    assert_eq!(m[4], "kill leader at 2.0 s–4.0 s");
    assert_eq!(m[5], "700 [600–900]", "{md}");
    assert_eq!(m[6], "700 [600–900]", "{md}");
    // Before: 900 µs everywhere; after: the second from 2 s has completions only past the gap.
    assert_eq!(m[8], "900 → 900", "{md}");
    // A timeout in each silent bucket: 6, 7 and 9.
    assert_eq!(m[9], "7 [6–9]", "{md}");
    assert_eq!(m[10], "VIOLATION in rep 2; linearizable 2/3");
    for rep in 0..3 {
        let link = format!("[rep {rep}](plots/timeline-m-r{rep}.svg)");
        assert!(m[11].contains(&link), "{}", m[11]);
        assert!(dir.join(format!("plots/timeline-m-r{rep}.svg")).is_file());
    }

    let b = row("basic-paxos");
    // Rep 1's fault was not applied: two figures of three.
    assert_eq!(
        b[4], "kill 3 at 2.0 s–4.0 s (figures from 2 of 3 reps)",
        "{md}"
    );
    assert_eq!(b[5], "0", "{md}");
    assert_eq!(b[6], "—", "no leader change, no figure: {md}");
    // From 2 s: 20 per bucket is under half of 100, 60 at 2.3 s is not.
    assert_eq!(b[7], "300", "{md}");
    assert_eq!(b[10], "linearizable 2/3; unknown (budget) 1/3");
    assert!(!b[11].contains("b-r1"), "no timeline, no plot: {}", b[11]);
    assert!(!dir.join("plots/timeline-b-r1.svg").exists());

    assert!(
        !section.contains("| unreplicated |"),
        "no faults, no row: {md}"
    );
    let warning = md
        .lines()
        .find(|l| l.contains("⚠ fault NOT applied"))
        .unwrap_or_else(|| panic!("no warning in\n{md}"));
    assert!(warning.contains("point b-r1"), "{warning}");
    assert!(warning.contains("ssh: node 3 unreachable"), "{warning}");
    assert!(md.contains("| b-r1 ⚠ fault failed |"), "{md}");

    let csv = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    let header: Vec<&str> = lines[0].split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let cells = |id: &str| -> Vec<&str> {
        lines
            .iter()
            .find(|l| l.starts_with(&format!("{id},")))
            .unwrap()
            .split(',')
            .collect()
    };
    assert!(lines.iter().all(|l| l.split(',').count() == header.len()));
    assert_eq!(cells("m-r2")[col("longest_gap_ms")], "900");
    assert_eq!(cells("m-r2")[col("to_new_leader_ms")], "900");
    assert_eq!(cells("m-r2")[col("linearizable")], VIOLATION);
    assert_eq!(
        cells("m-r2")[col("timeline_plot")],
        "plots/timeline-m-r2.svg"
    );
    assert_eq!(cells("b-r1")[col("faults_failed")], "1");
    assert_eq!(
        cells("b-r1")[col("fault_errors")],
        "ssh: node 3 unreachable"
    );
    assert_eq!(cells("b-r1")[col("longest_gap_ms")], "");
    assert_eq!(cells("u-r0")[col("faults")], "");
}

#[test]
fn availability_stored_in_points_stands_without_a_timeline() {
    let tmp = tempfile::tempdir().unwrap();
    let stored = Availability::compute(
        &leader_kill(800),
        &results::fault_windows(&[fault("kill", "leader", true, None)]),
    )
    .unwrap();
    let mut p = base_point("p0", "multi-paxos", 0);
    p["faults"] = json!([fault("kill", "leader", true, None)]);
    p["availability"] = serde_json::to_value(&stored).unwrap();
    std::fs::write(tmp.path().join("points.jsonl"), format!("{p}\n")).unwrap();
    let run = results::render(tmp.path()).unwrap();
    assert_eq!(run.points[0].availability.as_ref(), Some(&stored));
    let md = std::fs::read_to_string(tmp.path().join("summary.md")).unwrap();
    assert!(md.contains("| 800 | 800 |"), "{md}");
    // A fault but no timeline: no plot, and the row says so.
    assert!(!tmp.path().join("plots/timeline-p0.svg").exists());
}

#[test]
fn points_without_the_new_fields_parse_and_serialise_as_before() {
    let line = base_point("p0", "multi-paxos", 0).to_string();
    let p: results::Point = serde_json::from_str(&line).unwrap();
    assert!(p.faults.is_empty() && p.availability.is_none() && p.linearizable.is_none());
    assert!(p.extra.is_empty(), "{:?}", p.extra);
    let out = serde_json::to_value(&p).unwrap();
    for field in ["faults", "availability", "linearizable"] {
        assert!(out.get(field).is_none(), "{field} written for an old point");
    }
}

/// The committed reference runs under `results/` at the repository root.
fn committed_runs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../results");
    let mut runs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("points.jsonl").is_file())
        .collect();
    runs.sort();
    runs
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn committed_runs_still_render() {
    let runs = committed_runs();
    assert!(!runs.is_empty(), "no committed run under results/");
    for committed in runs {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(committed.file_name().unwrap());
        // Only the raw files: what render derives is rewritten in the copy, not the repo.
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["points.jsonl", "config.toml", "env.json"] {
            if committed.join(f).is_file() {
                std::fs::copy(committed.join(f), dir.join(f)).unwrap();
            }
        }
        for sub in ["hist", "timeline"] {
            if committed.join(sub).is_dir() {
                copy_dir(&committed.join(sub), &dir.join(sub));
            }
        }
        let run = results::render(&dir).unwrap();
        let lines = std::fs::read_to_string(dir.join("points.jsonl"))
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count();
        assert_eq!(run.points.len(), lines, "{}", committed.display());
        let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
        assert!(md.contains("## Headline"), "{md}");
        // The availability figures appear exactly for runs with faults or a check.
        let faulty = run.points.iter().any(|p| p.has_fault_data());
        assert_eq!(md.contains("## Availability"), faulty, "{md}");
        let csv = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
        assert_eq!(
            csv.lines().next().unwrap().contains("longest_gap_ms"),
            faulty,
            "{}",
            committed.display()
        );
    }
}
