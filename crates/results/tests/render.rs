//! `render` over a synthetic results directory whose histograms come from known
//! latencies, so every headline number can be worked out by hand.

use std::path::Path;
use std::time::Duration;

use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use serde_json::json;

const SLO_US: f64 = 5000.0;
const LOADS: [f64; 4] = [1000.0, 2000.0, 4000.0, 8000.0];

/// Per protocol and load level: (throughput of repetition 0, latency base in µs). A point's
/// latencies are spread evenly over [base, 2 base), so its p99 is just under 2 base: a base
/// below 2 500 µs keeps p99 under the 5 000 µs SLO.
fn table(protocol: &str) -> [(f64, f64); 4] {
    match protocol {
        "unreplicated" => [
            (1000.0, 50.0),
            (2000.0, 60.0),
            (4000.0, 80.0),
            (8000.0, 100.0),
        ],
        "multi-paxos" => [
            (990.0, 100.0),
            (1980.0, 120.0),
            (3960.0, 200.0),
            (5000.0, 4000.0),
        ],
        "basic-paxos" => [
            (900.0, 300.0),
            (1500.0, 1000.0),
            (1600.0, 3000.0),
            (1400.0, 6000.0),
        ],
        _ => unreachable!(),
    }
}

const PROTOCOLS: [&str; 3] = ["unreplicated", "multi-paxos", "basic-paxos"];

/// Throughput of repetition `rep` is 2 % above repetition 0's per step; latencies 10 % above.
fn throughput(protocol: &str, level: usize, rep: u32) -> f64 {
    table(protocol)[level].0 * (1.0 + 0.02 * rep as f64)
}

fn histogram(protocol: &str, level: usize, rep: u32) -> Histogram<u64> {
    let base = table(protocol)[level].1 * (1.0 + 0.1 * rep as f64);
    let mut h = Histogram::<u64>::new(3).unwrap();
    for k in 0..1000 {
        h.record((base * (1.0 + k as f64 / 1000.0)) as u64).unwrap();
    }
    h
}

/// Writes a results directory; `scale` multiplies each protocol's throughput.
fn write_run(dir: &Path, scale: impl Fn(&str) -> f64) {
    std::fs::create_dir_all(dir.join("hist")).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "name = \"synthetic\"\ndescription = \"Made-up numbers.\"\nslo_p99_us = {SLO_US}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("env.json"),
        json!({"host": "testhost", "cpu": "Test CPU", "cores": 2, "kernel": "6.1",
               "rustc": "1.85", "git_revision": "abc123", "git_dirty": false,
               "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:02:00Z"})
        .to_string(),
    )
    .unwrap();
    let mut lines = String::new();
    for protocol in PROTOCOLS {
        for (level, load) in LOADS.iter().enumerate() {
            for rep in 0..2 {
                let id = format!("{protocol}-{load}-r{rep}");
                let h = histogram(protocol, level, rep);
                // Two one-second intervals, each with every other sample.
                let mut halves = [
                    Histogram::<u64>::new(3).unwrap(),
                    Histogram::new(3).unwrap(),
                ];
                for (i, v) in h.iter_recorded().enumerate() {
                    halves[i % 2]
                        .record_n(v.value_iterated_to(), v.count_at_value())
                        .unwrap();
                }
                let mut buf = Vec::new();
                let mut ser = V2DeflateSerializer::new();
                // The header loadgen writes: a comment, StartTime and BaseTime.
                let start = std::time::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
                let mut log = IntervalLogWriterBuilder::new()
                    .add_comment("paxbench loadgen: request latency in microseconds")
                    .with_start_time(start)
                    .with_base_time(start)
                    .begin_log_with(&mut buf, &mut ser)
                    .unwrap();
                for (i, half) in halves.iter().enumerate() {
                    log.write_histogram(
                        half,
                        Duration::from_secs(i as u64),
                        Duration::from_secs(1),
                        None,
                    )
                    .unwrap();
                }
                drop(log);
                std::fs::write(dir.join("hist").join(format!("{id}.hlog")), buf).unwrap();
                let nodes = if protocol == "unreplicated" { 1 } else { 3 };
                let point = json!({
                    "point_id": id,
                    "protocol": protocol,
                    "params": {"clients": 4},
                    "repetition": rep,
                    "offered_ops": load,
                    "throughput_ops": throughput(protocol, level, rep) * scale(protocol),
                    "p50_us": h.value_at_quantile(0.5),
                    "p90_us": h.value_at_quantile(0.9),
                    "p99_us": h.value_at_quantile(0.99),
                    "p999_us": h.value_at_quantile(0.999),
                    "max_us": h.max(),
                    "mean_us": h.mean(),
                    "completed": 1000, "errors": 0, "timeouts": 0,
                    "send_lag_p99_us": 20.0,
                    "generator_bound": protocol == "unreplicated" && level == 3,
                    "leader_changed": protocol == "multi-paxos" && level == 2 && rep == 1,
                    "nodes": (1..=nodes).map(|n| json!({"id": n, "cpu_percent": 50.0, "rss_bytes": 20 << 20})).collect::<Vec<_>>(),
                    "value_size": 64,
                });
                lines.push_str(&point.to_string());
                lines.push('\n');
            }
        }
    }
    std::fs::write(dir.join("points.jsonl"), lines).unwrap();
}

fn p50(protocol: &str, level: usize, rep: u32) -> f64 {
    histogram(protocol, level, rep).value_at_quantile(0.5) as f64
}

#[test]
fn render_writes_headline_tables_csv_and_plots() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("2026-01-01T000000-synthetic");
    write_run(&dir, |_| 1.0);
    let run = results::render(&dir).unwrap();
    assert_eq!(run.slo_p99_us, SLO_US);

    let rows = results::headlines(&run);
    let names: Vec<&str> = rows.iter().map(|h| h.protocol.as_str()).collect();
    assert_eq!(names, PROTOCOLS);
    let config = vec![("clients".to_string(), "4".to_string())];
    assert!(rows
        .iter()
        .all(|h| h.config == config && h.repetitions == 2));

    // Saturation: the highest throughput whose p99 (just under 2 base) is under 5 000 µs.
    let sat = |protocol: &str, level: usize| {
        let (a, b) = (
            throughput(protocol, level, 0),
            throughput(protocol, level, 1),
        );
        ((a + b) / 2.0, a, b)
    };
    let expect = [
        sat("unreplicated", 3),
        sat("multi-paxos", 2),
        sat("basic-paxos", 1),
    ];
    for (h, (median, min, max)) in rows.iter().zip(expect) {
        let s = h.saturation_ops.unwrap();
        assert_eq!(
            (s.median, s.min, s.max, s.n),
            (median, min, max, 2),
            "{}",
            h.protocol
        );
    }
    for (h, protocol) in rows.iter().zip(PROTOCOLS) {
        let s = h.low_load_p50_us.unwrap();
        let (a, b) = (p50(protocol, 0, 0), p50(protocol, 0, 1));
        assert_eq!(
            (s.median, s.min, s.max),
            ((a + b) / 2.0, a, b),
            "{protocol}"
        );
    }
    let unrep = &rows[0];
    assert_eq!(unrep.saturation_vs_unreplicated, Some(1.0));
    let mp = &rows[1];
    let mp_ratio = mp.saturation_ops.unwrap().median / unrep.saturation_ops.unwrap().median;
    assert_eq!(mp.saturation_vs_unreplicated, Some(mp_ratio));
    assert!((mp_ratio - 3999.6 / 8080.0).abs() < 1e-9);
    let p50_ratio = mp.low_load_p50_us.unwrap().median / unrep.low_load_p50_us.unwrap().median;
    assert_eq!(mp.p50_vs_unreplicated, Some(p50_ratio));

    let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(md.starts_with("# synthetic\n"), "{md}");
    for needle in [
        "| host | testhost |",
        "| git revision | abc123 |",
        "Same in every configuration: clients=4.",
        "| multi-paxos | — | 4000 [3960–4039] |",
        "| basic-paxos | — | 1515 [1500–1530] |",
        &format!("{:.2}×", mp_ratio),
        "⚠ generator-bound",
        "⚠ election |",
        "the leader changed during this point",
        "p99 < 5000 µs",
    ] {
        assert!(md.contains(needle), "summary.md lacks {needle:?}:\n{md}");
    }

    let csv = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + PROTOCOLS.len() * LOADS.len() * 2);
    assert!(lines[0].starts_with("point_id,protocol,clients,value_size,repetition,offered_ops,"));
    assert!(lines[0].ends_with("node_3_cpu_percent,node_3_rss_bytes"));
    let columns = lines[0].split(',').count();
    assert!(lines.iter().all(|l| l.split(',').count() == columns));

    let tl = std::fs::read_to_string(dir.join("plots").join(results::THROUGHPUT_LATENCY)).unwrap();
    assert!(tl.contains("<svg"));
    for series in ["unreplicated", "multi-paxos", "basic-paxos"] {
        for q in ["p50", "p99"] {
            let name = format!("{series} {q}");
            assert!(tl.contains(&name), "throughput-latency plot lacks {name}");
        }
    }
    assert!(tl.contains("throughput (kops/s)"));
    let cdf = std::fs::read_to_string(dir.join("plots").join(results::LATENCY_CDF)).unwrap();
    assert!(cdf.contains("<svg"));
    for series in ["unreplicated", "multi-paxos", "basic-paxos"] {
        assert!(cdf.contains(&format!("{series} @")), "cdf lacks {series}");
    }
    assert!(cdf.contains("99.9%"));
}

#[test]
fn an_unterminated_last_line_is_skipped_but_a_bad_line_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_run(dir, |_| 1.0);
    let mut text = std::fs::read_to_string(dir.join("points.jsonl")).unwrap();
    let complete = text.lines().count();
    text.push_str("{\"point_id\": \"p99\", \"prot");
    std::fs::write(dir.join("points.jsonl"), &text).unwrap();
    assert_eq!(results::Run::load(dir).unwrap().points.len(), complete);
    text.push('\n');
    std::fs::write(dir.join("points.jsonl"), &text).unwrap();
    let err = format!("{:#}", results::Run::load(dir).unwrap_err());
    assert!(
        err.contains(&format!("points.jsonl:{}", complete + 1)),
        "{err}"
    );
}

#[test]
fn a_point_where_nothing_completed_has_no_latency_and_never_meets_the_slo() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_run(dir, |_| 1.0);
    // The highest level of every protocol completed nothing; the generator wrote 0 µs.
    let text = std::fs::read_to_string(dir.join("points.jsonl")).unwrap();
    let mut lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let top = lines
        .iter()
        .map(|p| p["offered_ops"].as_f64().unwrap())
        .fold(0.0, f64::max);
    for p in lines.iter_mut().filter(|p| p["offered_ops"] == top) {
        for k in ["p50_us", "p90_us", "p99_us", "p999_us", "max_us", "mean_us"] {
            p[k] = 0.into();
        }
        p["completed"] = 0.into();
        p["throughput_ops"] = 0.into();
    }
    let text: String = lines.iter().map(|p| format!("{p}\n")).collect();
    std::fs::write(dir.join("points.jsonl"), text).unwrap();
    let run = results::Run::load(dir).unwrap();
    let empty: Vec<_> = run.points.iter().filter(|p| p.completed == 0).collect();
    assert!(!empty.is_empty());
    assert!(empty.iter().all(|p| p.p50_us.is_nan() && p.p99_us.is_nan()));
    for h in results::headlines(&run) {
        let sat = h.saturation_ops.map_or(0.0, |s| s.median);
        assert!(
            sat > 0.0,
            "{}: a level of nothing is no saturation",
            h.protocol
        );
    }
}

#[test]
fn a_level_that_timed_out_requests_is_not_saturation_however_low_its_p99() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_run(dir, |_| 1.0);
    let before = results::headlines(&results::Run::load(dir).unwrap());
    let text = std::fs::read_to_string(dir.join("points.jsonl")).unwrap();
    let saturating: Vec<String> = before
        .iter()
        .flat_map(|h| h.saturation_points.clone())
        .collect();
    let mut lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for p in lines
        .iter_mut()
        .filter(|p| saturating.contains(&p["point_id"].as_str().unwrap().to_string()))
    {
        p["timeouts"] = 3.into();
    }
    let text: String = lines.iter().map(|p| format!("{p}\n")).collect();
    std::fs::write(dir.join("points.jsonl"), text).unwrap();
    let after = results::headlines(&results::Run::load(dir).unwrap());
    for (b, a) in before.iter().zip(&after) {
        let (b, a) = (
            b.saturation_ops.unwrap().median,
            a.saturation_ops.map(|s| s.median),
        );
        assert!(
            a.is_none_or(|a| a < b),
            "{b} -> {a:?}: a level with timeouts still counted"
        );
    }
}

#[test]
fn cpu_per_command_is_the_busy_cores_over_the_throughput() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_run(dir, |_| 1.0);
    let run = results::Run::load(dir).unwrap();
    for p in &run.points {
        // Every synthetic node ran at 50%: 1 node for Unreplicated, 3 for the others.
        let cores = if p.protocol == "unreplicated" {
            0.5
        } else {
            1.5
        };
        let want = cores * 1e6 / p.throughput_ops;
        let got = p.cpu_us_per_command().unwrap();
        assert!((got - want).abs() < 1e-6, "{}: {got} vs {want}", p.point_id);
    }
    results::render(dir).unwrap();
    let csv = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    assert!(header.contains(&"cpu_us_per_cmd"), "{header:?}");
    let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(md.contains("node CPU µs / cmd"));
}
