//! `summary.md` and `summary.csv`.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::headline::{fixed_params, groups, headlines, Headline, Stat};
use crate::point::{label, value_text, LinearizabilityResult, Point, LINEARIZABLE, VIOLATION};
use crate::run::Run;
use crate::timeline_plot::{has_timeline_plot, timeline_plot_name};

/// The whole of `summary.md`: header, headline table, availability table (when a point had
/// faults or a linearizability check), per-point table.
pub fn markdown(run: &Run) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# {}\n", run.name);
    if let Some(d) = &run.description {
        let _ = writeln!(s, "{}\n", d.trim());
    }
    if !run.env.is_empty() {
        s.push_str("| | |\n|---|---|\n");
        for (label, value) in &run.env {
            let _ = writeln!(s, "| {label} | {} |", cell(value));
        }
        s.push('\n');
    }
    let reps: BTreeSet<u32> = run.points.iter().map(|p| p.repetition).collect();
    let _ = writeln!(
        s,
        "{} points, {} repetition(s) each; latency SLO: p99 < {} µs.\n",
        run.points.len(),
        reps.len(),
        fmt_num(run.slo_p99_us)
    );
    let fixed = fixed_params(&groups(run));
    if !fixed.is_empty() {
        let _ = writeln!(s, "Same in every configuration: {}.\n", config_text(&fixed));
    }

    s.push_str("## Headline\n\n");
    s.push_str(&headline_table(&headlines(run)));
    s.push('\n');
    s.push_str(
        "Saturation: the highest throughput whose p99 stays under the SLO. Low-load p50: the p50 \
         at the lowest load level. Each is the median over repetitions, with [min–max] when there \
         are several; ratios are medians over Unreplicated's in this run.\n\n",
    );

    s.push_str(&availability_section(run));

    s.push_str("## Points\n\n");
    s.push_str(&points_table(run));
    if run.points.iter().any(|p| p.generator_bound) {
        s.push_str(
            "\n⚠ generator-bound: the load generator fell behind its schedule, so this point \
             measures the generator rather than the system.\n",
        );
    }
    if run.points.iter().any(|p| p.leader_changed) {
        s.push_str(
            "\n⚠ election: the leader changed during this point, so its latencies include a \
             failover (see the node logs in `logs/`).\n",
        );
    }
    if run
        .points
        .iter()
        .any(|p| p.faults.iter().any(|f| f.failed()))
    {
        s.push_str(
            "\n⚠ fault failed: a fault of this point was not applied, or not undone (see \
             Availability).\n",
        );
    }
    if run.points.iter().any(|p| p.p99_us >= run.slo_p99_us) {
        s.push_str("\n¹ p99 at or over the SLO.\n");
    }
    s.push_str(&rtt_table(run));
    s
}

/// Configured against measured round trips between nodes, over every point that measured
/// them: so an emulation that did not take effect cannot go unnoticed. Empty when no point
/// measured any.
fn rtt_table(run: &Run) -> String {
    let mut pairs: std::collections::BTreeMap<(u32, u32), (Option<f64>, Vec<f64>)> =
        Default::default();
    for p in &run.points {
        for r in &p.rtt {
            let (a, b) = (r.from.min(r.to), r.from.max(r.to));
            let e = pairs.entry((a, b)).or_insert((r.configured_us, Vec::new()));
            e.1.push(r.measured_us);
        }
    }
    if pairs.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "\n## Round trips between nodes\n\n\
         Measured by each node's connection to its peer at the end of every point (both ends, \
         all points): median [min–max].\n\n\
         | nodes | configured (ms) | measured (ms) |\n|---|---:|---:|\n",
    );
    for ((a, b), (configured, mut measured)) in pairs {
        measured.sort_by(f64::total_cmp);
        let ms = |us: f64| format!("{:.1}", us / 1000.0);
        let median = measured[measured.len() / 2];
        let _ = writeln!(
            s,
            "| {a}–{b} | {} | {} [{}–{}] |",
            configured.map_or("—".to_string(), ms),
            ms(median),
            ms(measured[0]),
            ms(measured[measured.len() - 1]),
        );
    }
    s
}

/// The headline table as markdown (also used by `compare`'s callers for one run).
pub fn headline_table(rows: &[Headline]) -> String {
    let mut s = String::from(
        "| protocol | config | saturation (ops/s) | low-load p50 (µs) | saturation vs unreplicated | low-load p50 vs unreplicated |\n\
         |---|---|---:|---:|---:|---:|\n",
    );
    for h in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            h.protocol,
            config_text(&h.varying),
            fmt_stat(h.saturation_ops) + &missing(h.saturation_ops, h.repetitions),
            fmt_stat(h.low_load_p50_us),
            fmt_ratio(h.saturation_vs_unreplicated),
            fmt_ratio(h.p50_vs_unreplicated),
        );
    }
    s
}

/// ` (2 of 3 reps)` when only some repetitions had a point under the SLO.
fn missing(s: Option<Stat>, repetitions: usize) -> String {
    match s {
        Some(s) if s.n < repetitions => format!(" ({} of {repetitions} reps)", s.n),
        _ => String::new(),
    }
}

/// The per-point table as markdown, grouped like the headline table.
fn points_table(run: &Run) -> String {
    let params = param_names(run);
    let mut s = String::from("| point | protocol |");
    for p in &params {
        let _ = write!(s, " {p} |");
    }
    s.push_str(
        " rep | offered (ops/s) | throughput (ops/s) | p50 (µs) | p90 (µs) | p99 (µs) | p99.9 (µs) \
         | max (µs) | errors | timeouts | gen. lag p99 (µs) | CPU % per node | RSS MiB per node |\n|---|---|",
    );
    for _ in &params {
        s.push_str("---|");
    }
    s.push_str("---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n");
    for g in groups(run) {
        for p in &g.points {
            let swept = p.swept();
            let election = if p.leader_changed {
                " ⚠ election"
            } else {
                ""
            };
            let fault = if p.faults.iter().any(|f| f.failed()) {
                " ⚠ fault failed"
            } else {
                ""
            };
            let _ = write!(
                s,
                "| {}{election}{fault} | {} |",
                cell(&p.point_id),
                p.protocol
            );
            for name in &params {
                let _ = write!(
                    s,
                    " {} |",
                    cell(&swept.get(name).map(value_text).unwrap_or_default())
                );
            }
            let over = if p.p99_us >= run.slo_p99_us { "¹" } else { "" };
            let lag = if p.generator_bound {
                format!("{} ⚠ generator-bound", fmt_num(p.send_lag_p99_us))
            } else {
                fmt_num(p.send_lag_p99_us)
            };
            let _ = writeln!(
                s,
                " {} | {} | {} | {} | {} | {}{over} | {} | {} | {} | {} | {lag} | {} | {} |",
                p.repetition,
                p.offered_ops
                    .map(fmt_num)
                    .unwrap_or_else(|| "closed".into()),
                fmt_num(p.throughput_ops),
                fmt_num(p.p50_us),
                fmt_num(p.p90_us),
                fmt_num(p.p99_us),
                fmt_num(p.p999_us),
                fmt_num(p.max_us),
                p.errors,
                p.timeouts,
                nodes_text(p, |n| fmt_num(n.cpu_percent)),
                nodes_text(p, |n| fmt_num(n.rss_bytes as f64 / (1024.0 * 1024.0))),
            );
        }
    }
    s
}

/// The per-point table as CSV: one row per point, raw units (ops/s, µs, bytes), one pair of
/// columns per node id.
pub fn csv(run: &Run) -> String {
    let params = param_names(run);
    let node_ids: BTreeSet<String> = run
        .points
        .iter()
        .flat_map(|p| p.nodes.iter().map(|n| n.id_text()))
        .collect();
    let mut header: Vec<String> = vec!["point_id".into(), "protocol".into()];
    header.extend(params.iter().cloned());
    for h in [
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
        "send_lag_p99_us",
        "generator_bound",
        "leader_changed",
    ] {
        header.push(h.into());
    }
    let faulty = run.points.iter().any(Point::has_fault_data);
    if faulty {
        header.extend(AVAILABILITY_COLUMNS.iter().map(|c| c.to_string()));
    }
    for id in &node_ids {
        header.push(format!("node_{id}_cpu_percent"));
        header.push(format!("node_{id}_rss_bytes"));
    }
    let mut s = csv_line(&header);
    for g in groups(run) {
        for p in &g.points {
            let swept = p.swept();
            let mut row: Vec<String> = vec![p.point_id.clone(), p.protocol.clone()];
            row.extend(
                params
                    .iter()
                    .map(|n| swept.get(n).map(value_text).unwrap_or_default()),
            );
            row.extend([
                p.repetition.to_string(),
                p.offered_ops.map(csv_num).unwrap_or_default(),
                csv_num(p.throughput_ops),
                csv_num(p.p50_us),
                csv_num(p.p90_us),
                csv_num(p.p99_us),
                csv_num(p.p999_us),
                csv_num(p.max_us),
                csv_num(p.mean_us),
                p.completed.to_string(),
                p.errors.to_string(),
                p.timeouts.to_string(),
                csv_num(p.send_lag_p99_us),
                p.generator_bound.to_string(),
                p.leader_changed.to_string(),
            ]);
            if faulty {
                row.extend(availability_cells(run, p));
            }
            for id in &node_ids {
                match p.nodes.iter().find(|n| &n.id_text() == id) {
                    Some(n) => {
                        row.push(csv_num(n.cpu_percent));
                        row.push(n.rss_bytes.to_string());
                    }
                    None => row.extend([String::new(), String::new()]),
                }
            }
            s.push_str(&csv_line(&row));
        }
    }
    s
}

/// Columns of summary.csv present when any point has faults or a linearizability verdict.
const AVAILABILITY_COLUMNS: &[&str] = &[
    "faults",
    "faults_failed",
    "fault_errors",
    "longest_gap_ms",
    "to_new_leader_ms",
    "to_half_throughput_ms",
    "p99_before_us",
    "p99_after_us",
    "failed_during_fault",
    "linearizable",
    "linearizable_operations",
    "linearizable_history_truncated",
    "linearizable_detail",
    "timeline_plot",
];

/// The cells of [`AVAILABILITY_COLUMNS`] for `p`.
fn availability_cells(run: &Run, p: &Point) -> Vec<String> {
    let a = p.availability.as_ref();
    let l = p.linearizable.as_ref();
    let opt = |v: Option<f64>| v.map(csv_num).unwrap_or_default();
    let int = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    vec![
        p.faults
            .iter()
            .map(|f| f.describe())
            .collect::<Vec<_>>()
            .join("; "),
        p.faults.iter().filter(|f| f.failed()).count().to_string(),
        p.faults
            .iter()
            .filter_map(|f| f.error.as_deref())
            .collect::<Vec<_>>()
            .join("; "),
        int(a.and_then(|a| a.longest_gap_ms)),
        opt(a.and_then(|a| a.to_new_leader_ms)),
        opt(a.and_then(|a| a.to_half_throughput_ms)),
        int(a.and_then(|a| a.p99_before_us)),
        int(a.and_then(|a| a.p99_after_us)),
        int(a.map(|a| a.failed_during_fault)),
        l.map(|l| l.verdict.clone()).unwrap_or_default(),
        int(l.map(|l| l.operations)),
        l.map(|l| l.history_truncated.to_string())
            .unwrap_or_default(),
        l.map(|l| l.detail.clone()).unwrap_or_default(),
        if has_timeline_plot(run, p) {
            format!("plots/{}", timeline_plot_name(&p.point_id))
        } else {
            String::new()
        },
    ]
}

/// `## Availability`: per protocol, configuration and load level with a fault or a
/// linearizability verdict, the availability figures as median [min–max] over repetitions,
/// the linearizability verdicts, links to the timelines; above it a warning line per fault
/// that failed. Empty when no point has any of this.
fn availability_section(run: &Run) -> String {
    if !run.points.iter().any(Point::has_fault_data) {
        return String::new();
    }
    let mut s = String::from("## Availability\n\n");
    let mut warned = false;
    for g in groups(run) {
        for p in &g.points {
            for f in p.faults.iter().filter(|f| f.failed()) {
                let what = if f.applied {
                    "fault applied but not undone cleanly"
                } else {
                    "fault NOT applied"
                };
                let node = f.node.map(|n| format!(" (node {n})")).unwrap_or_default();
                let _ = writeln!(
                    s,
                    "- ⚠ {what}: point {} ({}, rep {}): {}{node}: {}",
                    cell(&p.point_id),
                    cell(&label(&p.protocol, &g.varying)),
                    p.repetition,
                    cell(&f.describe()),
                    cell(f.error.as_deref().unwrap_or("no error given")),
                );
                warned = true;
            }
        }
    }
    if warned {
        s.push('\n');
    }
    s.push_str(
        "| protocol | config | load | faults | longest gap (ms) | to new leader (ms) | to ½ throughput (ms) | p99 before → after (µs) | failed during fault | linearizability | timeline |\n\
         |---|---|---:|---|---:|---:|---:|---:|---:|---|---|\n",
    );
    for g in groups(run) {
        for (level, ps) in g.by_load() {
            if !ps.iter().any(|p| p.has_fault_data()) {
                continue;
            }
            // Repetitions whose fault was not applied have no figures; the faults column
            // says how many, and a figure says when it is missing from further ones.
            let with_figures = ps.iter().filter(|p| p.availability.is_some()).count();
            let figure = |f: &dyn Fn(&crate::availability::Availability) -> Option<f64>| {
                let values: Vec<f64> = ps
                    .iter()
                    .filter_map(|p| p.availability.as_ref().and_then(f))
                    .collect();
                let stat = Stat::of(&values);
                fmt_stat(stat) + &missing(stat, with_figures)
            };
            let mut faults: Vec<String> = Vec::new();
            for d in ps
                .iter()
                .flat_map(|p| p.faults.iter().map(|f| f.describe()))
            {
                if !faults.contains(&d) {
                    faults.push(d);
                }
            }
            let links: Vec<String> = ps
                .iter()
                .filter(|p| has_timeline_plot(run, p))
                .map(|p| {
                    format!(
                        "[rep {}](plots/{})",
                        p.repetition,
                        timeline_plot_name(&p.point_id)
                    )
                })
                .collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} → {} | {} | {} | {} |",
                g.protocol,
                config_text(&g.varying),
                fmt_num(level),
                faults_text(&faults, with_figures, ps.len()),
                figure(&|a| a.longest_gap_ms.map(|v| v as f64)),
                figure(&|a| a.to_new_leader_ms),
                figure(&|a| a.to_half_throughput_ms),
                figure(&|a| a.p99_before_us.map(|v| v as f64)),
                figure(&|a| a.p99_after_us.map(|v| v as f64)),
                figure(&|a| Some(a.failed_during_fault as f64)),
                cell(&linearizability_text(&ps)),
                if links.is_empty() {
                    "—".to_string()
                } else {
                    links.join(" ")
                },
            );
        }
    }
    s.push_str(
        "\nEach figure is the median over repetitions with [min–max], about the first fault of a \
         point, at the timeline's bucket resolution. Longest gap: the longest run of buckets \
         with no completion, anywhere in the window. To new leader: from the fault to the first \
         bucket with a completion that starts at or after the first leader change following \
         it. To ½ throughput: from the fault to the first bucket from it on whose completion \
         rate is at least half the median rate of the buckets before it (defined without a \
         leader, as for Basic Paxos). p99 before → after: the highest bucket p99 in the second \
         before the fault and in the second from it, an upper bound on each second's p99. \
         Failed during fault: errors and timeouts in the buckets from the fault to the \
         recovery (to new leader, else to ½ throughput, else the fault's end + 1 s, else the \
         window's end).\n\n",
    );
    s
}

/// The faults of a row, with how many repetitions have availability figures when not all do.
fn faults_text(faults: &[String], with_figures: usize, reps: usize) -> String {
    let mut s = if faults.is_empty() {
        "none".to_string()
    } else {
        cell(&faults.join("; "))
    };
    if with_figures < reps {
        let _ = write!(s, " (figures from {with_figures} of {reps} reps)");
    }
    s
}

/// The linearizability verdicts of one row's repetitions: `linearizable 5/5`,
/// `VIOLATION in rep 2`, `unknown (budget) 1/5`, joined by `; `.
fn linearizability_text(ps: &[&Point]) -> String {
    let n = ps.len();
    let checked: Vec<(u32, &LinearizabilityResult)> = ps
        .iter()
        .filter_map(|p| p.linearizable.as_ref().map(|l| (p.repetition, l)))
        .collect();
    if checked.is_empty() {
        return "—".into();
    }
    let mut parts = Vec::new();
    let violations: Vec<String> = checked
        .iter()
        .filter(|(_, l)| l.verdict == VIOLATION)
        .map(|(rep, _)| rep.to_string())
        .collect();
    if !violations.is_empty() {
        let reps = if violations.len() == 1 { "rep" } else { "reps" };
        parts.push(format!("VIOLATION in {reps} {}", violations.join(", ")));
    }
    let ok: Vec<&LinearizabilityResult> = checked
        .iter()
        .filter(|(_, l)| l.verdict == LINEARIZABLE)
        .map(|(_, l)| *l)
        .collect();
    if !ok.is_empty() {
        let truncated = ok.iter().filter(|l| l.history_truncated).count();
        let note = if truncated > 0 {
            format!(" ({truncated} on a truncated history)")
        } else {
            String::new()
        };
        parts.push(format!("linearizable {}/{n}{note}", ok.len()));
    }
    // Anything else is undecided; the checker's detail says why.
    let mut reasons: Vec<String> = Vec::new();
    let mut undecided = 0;
    for (_, l) in &checked {
        if l.verdict == VIOLATION || l.verdict == LINEARIZABLE {
            continue;
        }
        undecided += 1;
        let reason = if l.verdict == crate::point::UNKNOWN {
            short(&l.detail)
        } else {
            short(&format!("{}: {}", l.verdict, l.detail))
        };
        if !reason.is_empty() && !reasons.contains(&reason) {
            reasons.push(reason);
        }
    }
    if undecided > 0 {
        let why = if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", reasons.join("; "))
        };
        parts.push(format!("unknown{why} {undecided}/{n}"));
    }
    if checked.len() < n {
        parts.push(format!("not checked {}/{n}", n - checked.len()));
    }
    parts.join("; ")
}

/// `text` cut to 40 characters, with `…` when cut.
fn short(text: &str) -> String {
    let text = text.trim();
    if text.chars().count() <= 40 {
        text.to_string()
    } else {
        text.chars().take(39).collect::<String>() + "…"
    }
}

/// Every swept parameter name in the run, sorted: `params` first, then unknown fields.
fn param_names(run: &Run) -> Vec<String> {
    let params: BTreeSet<&String> = run.points.iter().flat_map(|p| p.params.keys()).collect();
    let extra: BTreeSet<&String> = run
        .points
        .iter()
        .flat_map(|p| p.extra.keys())
        .filter(|k| !params.contains(k))
        .collect();
    params.into_iter().chain(extra).cloned().collect()
}

/// A number for the CSV: empty when not measured (NaN).
fn csv_num(x: f64) -> String {
    if x.is_finite() {
        x.to_string()
    } else {
        String::new()
    }
}

/// One CSV line (RFC 4180 quoting), newline included.
pub(crate) fn csv_line(fields: &[String]) -> String {
    let mut line = fields
        .iter()
        .map(|f| {
            if f.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    line.push('\n');
    line
}

fn nodes_text(p: &Point, f: impl Fn(&crate::point::NodeStats) -> String) -> String {
    p.nodes
        .iter()
        .map(|n| format!("{}: {}", n.id_text(), f(n)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `name=value` pairs joined by spaces, or `—` when there are none.
pub fn config_text(config: &[(String, String)]) -> String {
    if config.is_empty() {
        return "—".into();
    }
    cell(
        &config
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// `median [min–max]`, the bare value for one repetition, `—` for none.
pub fn fmt_stat(s: Option<Stat>) -> String {
    match s {
        None => "—".into(),
        Some(s) if s.n == 1 || s.min == s.max => fmt_num(s.median),
        Some(s) => format!(
            "{} [{}–{}]",
            fmt_num(s.median),
            fmt_num(s.min),
            fmt_num(s.max)
        ),
    }
}

/// A ratio as `0.42×`, or `—`.
pub fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "—".into(), |r| format!("{r:.2}×"))
}

/// A number with no more precision than a measurement carries: one decimal below 10, none
/// above.
pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        "—".into()
    } else if x.abs() < 10.0 && x.fract() != 0.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.0}")
    }
}

/// Text safe inside a markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}
