//! `compare` and the statistics in `summary.md` over synthetic results directories whose
//! figures are set by hand, so every median, interval and verdict can be worked out on paper.

use std::path::Path;
use std::time::Duration;

use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use serde_json::json;

/// One point of a synthetic run.
struct Spec {
    load: f64,
    rep: u32,
    throughput: f64,
    p50: f64,
    p99: f64,
    /// Completions in each 1-second interval, every one at `p50` µs; no interval log when
    /// empty.
    seconds: Vec<u64>,
}

fn write_run(dir: &Path, points: &[Spec]) {
    std::fs::create_dir_all(dir.join("hist")).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        "name = \"synthetic\"\nslo_p99_us = 10000\n",
    )
    .unwrap();
    let mut lines = String::new();
    for (i, p) in points.iter().enumerate() {
        let id = format!("p{i:04}");
        if !p.seconds.is_empty() {
            write_log(&dir.join("hist").join(format!("{id}.hlog")), p);
        }
        let line = json!({
            "point_id": id, "protocol": "multi-paxos", "params": {"window": 8},
            "repetition": p.rep, "offered_ops": p.load, "throughput_ops": p.throughput,
            "p50_us": p.p50, "p90_us": p.p99, "p99_us": p.p99, "p999_us": p.p99,
            "max_us": p.p99, "mean_us": p.p50, "completed": 1000, "errors": 0, "timeouts": 0,
        });
        lines.push_str(&line.to_string());
        lines.push('\n');
    }
    std::fs::write(dir.join("points.jsonl"), lines).unwrap();
}

fn write_log(path: &Path, p: &Spec) {
    let mut buf = Vec::new();
    let mut ser = V2DeflateSerializer::new();
    let start = std::time::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let mut log = IntervalLogWriterBuilder::new()
        .with_start_time(start)
        .with_base_time(start)
        .begin_log_with(&mut buf, &mut ser)
        .unwrap();
    for (i, &count) in p.seconds.iter().enumerate() {
        let mut h = Histogram::<u64>::new(3).unwrap();
        h.record_n(p.p50 as u64, count).unwrap();
        log.write_histogram(
            &h,
            Duration::from_secs(i as u64),
            Duration::from_secs(1),
            None,
        )
        .unwrap();
    }
    drop(log);
    std::fs::write(path, buf).unwrap();
}

/// The line of `out` for `figure` at `load` (Load levels) or in the headline (`load` None),
/// split into trimmed cells.
fn cells(out: &str, load: Option<&str>, figure: &str) -> Vec<String> {
    let section = match load {
        Some(_) => out.split("## Load levels").nth(1).unwrap(),
        None => out.split("## Load levels").next().unwrap(),
    };
    section
        .lines()
        .map(|l| {
            l.split('|')
                .map(|c| c.trim().to_string())
                .collect::<Vec<_>>()
        })
        .find(|c| c.len() > 4 && c.contains(&figure.to_string()) && load.is_none_or(|l| c[3] == l))
        .unwrap_or_else(|| panic!("no {figure} row at {load:?} in\n{out}"))
}

/// The verdict cell (the last one before the closing `|`).
fn verdict(cells: &[String]) -> &str {
    &cells[cells.len() - 2]
}

/// Five repetitions at 1000 and 2000 ops/s. Throughput is `load × (percent + rep) / 100`;
/// p50 is 100 + 10 rep µs in A, the same values in another order in B; p99 is twice p50.
fn five_reps(percent: f64, p50_order: [u32; 5]) -> Vec<Spec> {
    let mut v = Vec::new();
    for load in [1000.0, 2000.0] {
        for rep in 0..5u32 {
            let p50 = 100.0 + 10.0 * f64::from(p50_order[rep as usize]);
            v.push(Spec {
                load,
                rep,
                throughput: load * (percent + f64::from(rep)) / 100.0,
                p50,
                p99: 2.0 * p50,
                seconds: Vec::new(),
            });
        }
    }
    v
}

#[test]
fn five_repetitions_a_side_tell_a_real_difference_from_none() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_run(&a, &five_reps(90.0, [0, 1, 2, 3, 4]));
    // B: 5 % more throughput in every repetition (0.95–0.99 against 0.90–0.94: separated);
    // p50 and p99 the same five values, shuffled.
    write_run(&b, &five_reps(95.0, [3, 0, 4, 1, 2]));
    let out = results::compare(&a, &b, 0.05).unwrap();

    // Separated 5 vs 5: exact two-sided p = 2 / C(10, 5) = 2/252.
    let row = cells(&out, Some("1000"), "throughput (ops/s)");
    // Medians 920 and 970; with five values the 95% interval is the range.
    assert_eq!(row[5], "920 [900–940]", "{out}");
    assert_eq!(row[6], "970 [950–990]", "{out}");
    assert_eq!(row[7], format!("{:.2}×", 970.0 / 920.0));
    assert_eq!(verdict(&row), "differs (p=0.0079, 5 vs 5 reps)", "{out}");
    // Equal sets of values: every pair tied, the rank sums equal their mean, p = 1.
    for figure in ["p50 (µs)", "p99 (µs)"] {
        for load in ["1000", "2000"] {
            let row = cells(&out, Some(load), figure);
            assert_eq!(row[7], "1.00×");
            assert_eq!(
                verdict(&row),
                "no significant difference (p=1.00, 5 vs 5 reps)",
                "{out}"
            );
        }
    }
    // The headline: saturation is the 2000 ops/s throughput (p99 is under the SLO), low-load
    // p50 the 1000 ops/s p50.
    let row = cells(&out, None, "saturation (ops/s)");
    assert_eq!(row[4], "1840 [1800–1880]", "{out}");
    assert_eq!(verdict(&row), "differs (p=0.0079, 5 vs 5 reps)", "{out}");
    let row = cells(&out, None, "low-load p50 (µs)");
    assert_eq!(row[4], "120 [100–140]", "{out}");
    assert_eq!(
        verdict(&row),
        "no significant difference (p=1.00, 5 vs 5 reps)"
    );
    assert!(out.contains("verdict (level 0.05)"), "{out}");
    assert!(!out.contains("Not shared"), "{out}");

    // A stricter level than 5 vs 5 can reach: no "differs" anywhere.
    let strict = results::compare(&a, &b, 0.001).unwrap();
    let row = cells(&strict, Some("1000"), "throughput (ops/s)");
    assert_eq!(
        verdict(&row),
        "cannot tell (p=0.0079): 5 vs 5 reps cannot reach p ≤ 0.001"
    );

    // summary.md: the Load levels table and the CSV carry the same intervals.
    results::render(&a).unwrap();
    let md = std::fs::read_to_string(a.join("summary.md")).unwrap();
    assert!(
        md.contains(
            "| multi-paxos | — | 1000 | 5 | 920 [900–940] | 120 [100–140] | 240 [200–280] |"
        ),
        "{md}"
    );
    assert!(
        md.contains("| multi-paxos | — | 1840 [1800–1880] | 120 [100–140] |"),
        "{md}"
    );
    let csv = std::fs::read_to_string(a.join("summary.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    let col = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
    assert_eq!(
        [
            "level_repetitions",
            "throughput_ops_median",
            "throughput_ops_ci_lo",
            "throughput_ops_ci_hi",
            "p99_us_ci_hi"
        ]
        .map(col),
        ["5", "920", "900", "940", "280"]
    );
}

/// Three repetitions at one load; each point has three seconds of `base + 3 rep + k`
/// completions (k = 0, 1, 2) at 500 µs, so its throughput is `base + 3 rep + 1`.
fn three_reps(base: u64) -> Vec<Spec> {
    (0..3u32)
        .map(|rep| {
            let first = base + 3 * u64::from(rep);
            Spec {
                load: 1000.0,
                rep,
                throughput: (first + 1) as f64,
                p50: 500.0,
                p99: 500.0,
                seconds: vec![first, first + 1, first + 2],
            }
        })
        .collect()
}

#[test]
fn three_repetitions_a_side_cannot_tell_and_the_pooled_seconds_are_tested_too() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_run(&a, &three_reps(900));
    write_run(&b, &three_reps(1000));
    let out = results::compare(&a, &b, 0.05).unwrap();
    // 3 vs 3 separated: p = 2/20 = 0.1, the least possible. The seconds, 900–908 against
    // 1000–1008, separate 9 vs 9: p = 2 / C(18, 9) = 2/48620 = 0.00004.
    let row = cells(&out, Some("1000"), "throughput (ops/s)");
    assert_eq!(
        verdict(&row),
        "cannot tell (p=0.10): 3 vs 3 reps cannot reach p ≤ 0.05; \
         pooled per-second: differs (p<0.0001, 9 vs 9 s)",
        "{out}"
    );
    // Every latency is 500 µs on both sides: nothing to tell by either test.
    let row = cells(&out, Some("1000"), "p99 (µs)");
    assert_eq!(
        verdict(&row),
        "cannot tell (p=1.00): 3 vs 3 reps cannot reach p ≤ 0.05; \
         pooled per-second: no significant difference (p=1.00, 9 vs 9 s)",
        "{out}"
    );
}

/// One repetition at one load with five seconds of `base + k` completions at 500 µs.
fn one_rep(base: u64, logs: bool) -> Vec<Spec> {
    vec![Spec {
        load: 1000.0,
        rep: 0,
        throughput: (base + 2) as f64,
        p50: 500.0,
        p99: 500.0,
        seconds: if logs {
            (base..base + 5).collect()
        } else {
            Vec::new()
        },
    }]
}

#[test]
fn one_repetition_is_tested_over_its_seconds_and_never_differs_without_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_run(&a, &one_rep(900, true));
    write_run(&b, &one_rep(1000, true));
    let out = results::compare(&a, &b, 0.05).unwrap();
    // 900–904 against 1000–1004 per second: 2/252 again.
    let row = cells(&out, Some("1000"), "throughput (ops/s)");
    assert_eq!(row[5], "902");
    assert_eq!(verdict(&row), "per-second: differs (p=0.0079, 5 vs 5 s)");
    let row = cells(&out, None, "saturation (ops/s)");
    assert_eq!(verdict(&row), "per-second: differs (p=0.0079, 5 vs 5 s)");
    let row = cells(&out, Some("1000"), "p50 (µs)");
    assert_eq!(
        verdict(&row),
        "per-second: no significant difference (p=1.00, 5 vs 5 s)"
    );
    assert!(out.contains("are not independent"), "{out}");

    // The per-second spread in summary.md and summary.csv: median 902, p5–p95 of five
    // values (nearest rank) their min–max; every second's p99 is 500 µs.
    results::render(&a).unwrap();
    let md = std::fs::read_to_string(a.join("summary.md")).unwrap();
    assert!(md.contains("| 902 (900–904) | 500 |"), "{md}");
    assert!(
        !md.contains("## Load levels"),
        "one repetition: no Load levels\n{md}"
    );
    let csv = std::fs::read_to_string(a.join("summary.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    let col = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
    assert_eq!(
        [
            "seconds",
            "per_sec_throughput_ops_median",
            "per_sec_throughput_ops_p5",
            "per_sec_throughput_ops_p95",
            "per_sec_p99_us_median",
            "throughput_ops_ci_lo",
        ]
        .map(col),
        ["5", "902", "900", "904", "500", ""]
    );

    // Without interval logs one repetition is one sample: however far apart, no test.
    let (c, d) = (tmp.path().join("c"), tmp.path().join("d"));
    write_run(&c, &one_rep(900, false));
    write_run(&d, &one_rep(100_000, false));
    let out = results::compare(&c, &d, 0.05).unwrap();
    for figure in ["throughput (ops/s)", "p50 (µs)", "p99 (µs)"] {
        let row = cells(&out, Some("1000"), figure);
        assert_eq!(verdict(&row), "one sample: no test", "{out}");
    }
    for figure in ["saturation (ops/s)", "low-load p50 (µs)"] {
        assert_eq!(verdict(&cells(&out, None, figure)), "one sample: no test");
    }
    let table_rows = out.lines().filter(|l| l.starts_with("| multi-paxos"));
    assert!(table_rows.clone().count() == 5);
    assert!(
        table_rows.into_iter().all(|l| !l.contains("differs")),
        "{out}"
    );
}

#[test]
fn levels_and_configurations_in_one_run_only_are_counted_not_tested() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_run(&a, &five_reps(90.0, [0, 1, 2, 3, 4]));
    // B measured only the 1000 ops/s level.
    let b_points: Vec<Spec> = five_reps(90.0, [0, 1, 2, 3, 4])
        .into_iter()
        .filter(|p| p.load == 1000.0)
        .collect();
    write_run(&b, &b_points);
    let out = results::compare(&a, &b, 0.05).unwrap();
    assert!(
        out.contains("Not shared: 1 load level(s) only in A, 0 only in B."),
        "{out}"
    );
    assert!(
        !out.lines().any(|l| l.contains("| 2000 |")),
        "only shared levels are rows\n{out}"
    );
}
