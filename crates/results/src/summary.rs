//! `summary.md` and `summary.csv`.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::headline::{fixed_params, groups, headlines, Headline, Stat};
use crate::point::{
    label, value_text, LinearizabilityResult, Point, LINEARIZABLE, NOT_CHECKED, VIOLATION,
};
use crate::run::Run;
use crate::seconds::{Seconds, Spread};
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
        "Saturation: the highest throughput whose p99 stays under the SLO with no errors or timeouts. Low-load p50: the p50 \
         at the lowest load level. Each is the median over repetitions; with several, [lo–hi] \
         after it is the 95% percentile-bootstrap interval of that median (with 2 to 5 \
         repetitions it is their min–max, which holds the true median less often than 95%: 75% \
         for 3), followed by (range min–max) where the repetitions spread wider. Ratios are \
         medians over Unreplicated's in this run.\n\n",
    );

    s.push_str(&load_levels_section(run));
    s.push_str(&crate::search::section(run));
    s.push_str(&availability_section(run));
    s.push_str(&membership_section(run));
    s.push_str(&contention_section(run));
    s.push_str(&costs_section(run));
    s.push_str(&learners_section(run));

    s.push_str("## Points\n\n");
    s.push_str(&points_table(run));
    if !run.seconds.is_empty() {
        s.push_str(
            "\nPer-second: over the 1-second intervals of the point's interval log (`hist/`), \
             the median (p5–p95) of the seconds, nearest rank (with fewer than 20 seconds, their \
             min–max). Throughput: an interval's completions over its length; p99: the \
             interval's own p99 (a second with no completion has none).\n",
        );
    }
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
    if let Some(p) = run.points.iter().find(|p| p.livelock()) {
        let threshold = p.stall.as_ref().map_or(0, |s| s.threshold_ms);
        let _ = writeln!(
            s,
            "\n⚠ livelock: completions stopped for at least {} s (`livelock_after_s`) while load \
             was offered and no fault was in force: the proposers kept preempting each other \
             (see Contention).",
            fmt_num(threshold as f64 / 1000.0)
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
    if run.points.iter().any(learner_reads) {
        s.push_str(
            "\n⚠ not linearizable: learners answered this point's Gets from their own state \
             (`reads = \"learner\"`), as stale as they were behind the leader (see Learners).\n",
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
            fmt_ci(h.saturation_ops) + &missing(h.saturation_ops, h.repetitions),
            fmt_ci(h.low_load_p50_us),
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

/// `## Load levels`: per protocol, configuration and load level, throughput, p50 and p99 as
/// the median over repetitions with its 95% interval. Empty when no level was measured more
/// than once (the points table then says it all).
fn load_levels_section(run: &Run) -> String {
    let groups = groups(run);
    let repeated = groups
        .iter()
        .any(|g| g.by_load().iter().any(|(_, ps)| ps.len() > 1));
    if !repeated {
        return String::new();
    }
    let mut s = String::from(
        "## Load levels\n\n\
         | protocol | config | load | reps | throughput (ops/s) | p50 (µs) | p99 (µs) |\n\
         |---|---|---:|---:|---:|---:|---:|\n",
    );
    for g in &groups {
        for (level, ps) in g.by_load() {
            let figures = LevelFigures::of(&ps);
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} |",
                g.protocol,
                config_text(&g.varying),
                fmt_num(level),
                ps.len(),
                fmt_ci(figures.throughput_ops),
                fmt_ci(figures.p50_us),
                fmt_ci(figures.p99_us),
            );
        }
    }
    s.push_str(
        "\nEach figure is the median over the repetitions of the level, with [lo–hi] its 95% \
         percentile-bootstrap interval (with 2 to 5 repetitions, their min–max) and (range \
         min–max) where they spread wider; a level measured once shows its value alone.\n\n",
    );
    s
}

/// Throughput, p50 and p99 over the repetitions of one load level.
#[derive(Clone, Copy)]
struct LevelFigures {
    throughput_ops: Option<Stat>,
    p50_us: Option<Stat>,
    p99_us: Option<Stat>,
}

impl LevelFigures {
    fn of(ps: &[&Point]) -> LevelFigures {
        let of = |f: fn(&Point) -> f64| Stat::of(&ps.iter().map(|p| f(p)).collect::<Vec<_>>());
        LevelFigures {
            throughput_ops: of(|p| p.throughput_ops),
            p50_us: of(|p| p.p50_us),
            p99_us: of(|p| p.p99_us),
        }
    }
}

/// The per-point table as markdown, grouped like the headline table.
fn points_table(run: &Run) -> String {
    let params = param_names(run);
    let mut s = String::from("| point | protocol |");
    for p in &params {
        let _ = write!(s, " {p} |");
    }
    let per_second = !run.seconds.is_empty();
    s.push_str(
        " rep | offered (ops/s) | throughput (ops/s) | p50 (µs) | p90 (µs) | p99 (µs) | p99.9 (µs) \
         | max (µs) |",
    );
    if per_second {
        s.push_str(" per-second throughput (ops/s) | per-second p99 (µs) |");
    }
    s.push_str(
        " errors | timeouts | gen. lag p99 (µs) | gen CPU µs/req | CPU % per node | node CPU µs / cmd | RSS MiB per node |\n|---|---|",
    );
    for _ in &params {
        s.push_str("---|");
    }
    s.push_str("---:|---:|---:|---:|---:|---:|---:|---:|");
    if per_second {
        s.push_str("---:|---:|");
    }
    s.push_str("---:|---:|---:|---:|---|---:|---|\n");
    for g in groups(run) {
        for p in &g.points {
            let swept = p.swept();
            let election = marker(p);
            let fault = if p.faults.iter().any(|f| f.failed()) {
                " ⚠ fault failed"
            } else {
                ""
            };
            let stale = if learner_reads(p) {
                " ⚠ not linearizable"
            } else {
                ""
            };
            let _ = write!(
                s,
                "| {}{election}{fault}{stale} | {} |",
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
            let _ = write!(
                s,
                " {} | {} | {} | {} | {} | {}{over} | {} | {} |",
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
            );
            if per_second {
                let seconds = run.seconds.get(&p.point_id);
                let _ = write!(
                    s,
                    " {} | {} |",
                    fmt_spread(seconds.and_then(Seconds::throughput_spread)),
                    fmt_spread(seconds.and_then(Seconds::p99_spread)),
                );
            }
            let _ = writeln!(
                s,
                " {} | {} | {lag} | {} | {} | {} | {} |",
                p.errors,
                p.timeouts,
                p.generator_cpu_us_per_request
                    .map_or("—".into(), |c| format!("{c:.2}")),
                nodes_text(p, |n| fmt_num(n.cpu_percent)),
                p.cpu_us_per_command().map_or("—".into(), fmt_num),
                nodes_text(p, |n| fmt_num(n.rss_bytes as f64 / (1024.0 * 1024.0))),
            );
        }
    }
    s
}

/// `## Membership changes`: one row per membership change (`reconfigure` fault) applied in a
/// point with a timeline: what changed, how long it took to be chosen, and the throughput
/// before and through it. Empty when no point had one.
fn membership_section(run: &Run) -> String {
    let mut rows = String::new();
    for g in groups(run) {
        for (level, ps) in g.by_load() {
            for p in ps {
                let Some(tl) = run.timelines.get(&p.point_id) else {
                    continue;
                };
                for c in crate::availability::membership_changes(tl, &p.faults) {
                    let ms = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.0}"));
                    let _ = writeln!(
                        rows,
                        "| {} | {} | {} | {} (rep {}) | {} | {:.1} | {} | {} | {} | {} | {} | {} |",
                        g.protocol,
                        config_text(&g.varying),
                        fmt_num(level),
                        cell(&p.point_id),
                        p.repetition,
                        cell(&c.change),
                        c.sent_ms / 1000.0,
                        ms(c.chosen_after_ms),
                        ms(c.before_ops),
                        ms(c.through_ops),
                        ms(c.lowest_ops),
                        c.gap_ms.map_or("–".into(), |g| g.to_string()),
                        ms(c.to_new_leader_ms),
                    );
                }
            }
        }
    }
    if rows.is_empty() {
        return String::new();
    }
    format!(
        "## Membership changes\n\n| protocol | config | load | point | change | sent at (s) | chosen after (ms) | ops/s, 1 s before | ops/s, {span} s from it | lowest 100 ms (ops/s) | longest gap (ms) | new leader after (ms) |\n\
         |---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|\n{rows}\n\
         A change is sent through the log when its fault is due and chosen when the cluster \
         acknowledges it; it governs the slots from `window` after the one it was chosen in. \
         Rates are completions over the timeline's whole 100 ms buckets in the span; a change \
         that removes the leader makes it step down, and the new voters elect one (new leader \
         after: the first leader change seen after the change was sent, before the next \
         fault).\n\n",
        span = crate::availability::CHANGE_SPAN_MS / 1000.0
    )
}

/// Whether learners answered the point's Gets from their own state: not linearizable.
fn learner_reads(p: &Point) -> bool {
    p.staleness.as_ref().is_some_and(|s| s.learner_reads)
}

/// `## Learners`: per configuration and load level of a cluster with learners, how many, whether
/// they answered the reads (**not linearizable**), throughput and p50, and how far they were
/// behind the leader in slots (and in ms, estimated from the leader's slot rate), each the
/// median [min–max] over repetitions. Empty when no point had learners.
fn learners_section(run: &Run) -> String {
    if !run.points.iter().any(|p| p.staleness.is_some()) {
        return String::new();
    }
    let mut s = String::from(
        "## Learners\n\n| protocol | config | load | points | learners | reads at learners | throughput (ops/s) | p50 (µs) | lag p50 (slots) | lag max (slots) | lag p50 (ms, est.) | lag max (ms, est.) |\n\
         |---|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for g in &groups(run) {
        for (level, ps) in g.by_load() {
            let ps: Vec<&Point> = ps.into_iter().filter(|p| p.staleness.is_some()).collect();
            let Some(first) = ps.first().and_then(|p| p.staleness.as_ref()) else {
                continue;
            };
            let of = |f: fn(&crate::point::Staleness) -> f64| {
                stat_of(&ps, |p| {
                    p.staleness.as_ref().map(f).filter(|x| x.is_finite())
                })
            };
            let ids: Vec<String> = ps.iter().map(|p| cell(&p.point_id)).collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                g.protocol,
                config_text(&g.varying),
                fmt_num(level),
                ids.join(", "),
                first.learners.len(),
                if learner_reads(ps[0]) {
                    "yes ⚠ not linearizable"
                } else {
                    "no"
                },
                stat_of(&ps, |p| Some(p.throughput_ops)),
                stat_of(&ps, |p| Some(p.p50_us)),
                of(|x| x.lag_slots_p50),
                of(|x| x.lag_slots_max),
                of(|x| x.lag_ms_p50_est),
                of(|x| x.lag_ms_max_est),
            );
        }
    }
    s.push_str(
        "\nLag: every node's status polled every 100 ms over the measured window; a learner's lag \
         is the leader's next slot to execute minus its own (a slot holds a batch of commands), \
         over every poll and learner. The polls of one round read the nodes concurrently, not at \
         one instant, so a lag of a slot or two can be the reading's own skew. The ms figures are \
         estimates: the lag in slots over the leader's mean slot rate in the window, not a \
         measured age. Reads at learners (`reads = \"learner\"`) are answered from the \
         learner's own state: **not linearizable**, as stale as its lag.\n\n",
    );
    s
}

/// ` ⚠ election` or ` ⚠ livelock` (never both: an election explains its stall), or nothing.
fn marker(p: &Point) -> &'static str {
    if p.leader_changed {
        " ⚠ election"
    } else if p.livelock() {
        " ⚠ livelock"
    } else {
        ""
    }
}

/// One column of the Contention table: its header, whether any point has its data, and its
/// cell for one row's repetitions.
struct Column {
    header: &'static str,
    present: fn(&Point) -> bool,
    cell: fn(&[&Point]) -> String,
}

/// The median [min–max] over repetitions of a figure of each point.
fn stat_of(ps: &[&Point], f: impl Fn(&Point) -> Option<f64>) -> String {
    let values: Vec<f64> = ps.iter().filter_map(|p| f(p)).collect();
    fmt_stat(Stat::of(&values))
}

fn per_command(p: &Point) -> Option<&crate::contention::PerCommand> {
    p.counters.as_ref().map(|c| &c.per_command)
}

/// A figure per command, with two decimals below 10 (0.04 Nacks per command matters).
fn stat_fine(ps: &[&Point], f: impl Fn(&Point) -> Option<f64>) -> String {
    let values: Vec<f64> = ps.iter().filter_map(|p| f(p)).collect();
    let fine = |x: f64| {
        if x.abs() < 10.0 {
            format!("{x:.2}")
        } else {
            fmt_num(x)
        }
    };
    match Stat::of(&values) {
        None => "—".into(),
        Some(s) if s.n == 1 || s.min == s.max => fine(s.median),
        Some(s) => format!("{} [{}–{}]", fine(s.median), fine(s.min), fine(s.max)),
    }
}

/// An attempt count, 8 as `8+`.
fn attempts_text(a: f64) -> String {
    if a >= crate::contention::ATTEMPT_BUCKETS as f64 {
        format!("{}+", crate::contention::ATTEMPT_BUCKETS)
    } else {
        fmt_num(a)
    }
}

const CONTENTION_COLUMNS: &[Column] = &[
    Column {
        header: "phase-1 / cmd",
        present: |p| per_command(p).is_some_and(|c| c.phase1_rounds.is_some()),
        cell: |ps| stat_fine(ps, |p| per_command(p)?.phase1_rounds),
    },
    Column {
        header: "Nacks / cmd",
        present: |p| per_command(p).is_some_and(|c| c.nacks.is_some()),
        cell: |ps| stat_fine(ps, |p| per_command(p)?.nacks),
    },
    Column {
        header: "preemptions / cmd",
        present: |p| per_command(p).is_some_and(|c| c.preemptions.is_some()),
        cell: |ps| stat_fine(ps, |p| per_command(p)?.preemptions),
    },
    Column {
        header: "backoff µs / cmd",
        present: |p| per_command(p).is_some_and(|c| c.backoff_us.is_some()),
        cell: |ps| stat_fine(ps, |p| per_command(p)?.backoff_us),
    },
    Column {
        header: "messages / cmd",
        present: |p| per_command(p).is_some_and(|c| c.messages_sent.is_some()),
        cell: |ps| stat_fine(ps, |p| per_command(p)?.messages_sent),
    },
    Column {
        header: "% >1 attempt",
        present: |p| per_command(p).is_some_and(|c| c.retried_fraction.is_some()),
        cell: |ps| stat_of(ps, |p| per_command(p)?.retried_fraction.map(|f| f * 100.0)),
    },
    Column {
        header: "attempts p50 / p99 / max",
        present: |p| per_command(p).is_some_and(|c| c.attempts_max.is_some()),
        cell: |ps| {
            let q = |f: fn(&crate::contention::PerCommand) -> Option<u32>| {
                let values: Vec<f64> = ps
                    .iter()
                    .filter_map(|p| per_command(p).and_then(f).map(f64::from))
                    .collect();
                match Stat::of(&values) {
                    None => "—".to_string(),
                    Some(s) if s.min == s.max => attempts_text(s.median),
                    Some(s) => format!(
                        "{} [{}–{}]",
                        attempts_text(s.median),
                        attempts_text(s.min),
                        attempts_text(s.max)
                    ),
                }
            };
            format!(
                "{} / {} / {}",
                q(|c| c.attempts_p50),
                q(|c| c.attempts_p99),
                q(|c| c.attempts_max)
            )
        },
    },
    Column {
        header: "phase-1 RTT (µs)",
        present: |p| {
            p.counters
                .as_ref()
                .is_some_and(|c| !c.phase1_rtt_us.is_empty())
        },
        cell: |ps| {
            stat_of(ps, |p| {
                let rtts = &p.counters.as_ref()?.phase1_rtt_us;
                let mut v: Vec<f64> = rtts.values().map(|&r| r as f64).collect();
                v.sort_by(f64::total_cmp);
                Stat::of(&v).map(|s| s.median)
            })
        },
    },
    Column {
        header: "longest stall (ms)",
        present: |p| p.stall.is_some(),
        cell: |ps| stat_of(ps, |p| p.stall.as_ref().map(|s| s.longest_ms as f64)),
    },
];

/// `## Contention`: per protocol, configuration and load level whose nodes reported counters
/// (Basic Paxos, with Multi-Paxos for contrast), throughput and p99 beside phase-1 rounds,
/// Nacks, preemptions, backoff and messages per command, the share of commands that needed
/// more than one attempt and the attempts distribution, each the median [min–max] over
/// repetitions. A column is shown only when some point has its data, so older results (with
/// no counters) render without the section. Empty when no point has counters.
fn contention_section(run: &Run) -> String {
    let with_counters = |p: &Point| p.counters.is_some() && p.protocol != "unreplicated";
    if !run.points.iter().any(with_counters) {
        return String::new();
    }
    let columns: Vec<&Column> = CONTENTION_COLUMNS
        .iter()
        .filter(|c| {
            run.points
                .iter()
                .filter(|p| with_counters(p))
                .any(c.present)
        })
        .collect();
    let mut s = String::from(
        "## Contention\n\n| protocol | config | load | points | throughput (ops/s) | p99 (µs) |",
    );
    for c in &columns {
        let _ = write!(s, " {} |", c.header);
    }
    s.push_str("\n|---|---|---:|---|---:|---:|");
    for _ in &columns {
        s.push_str("---:|");
    }
    s.push('\n');
    let mut groups = groups(run);
    // Basic Paxos first: the table is about its proposers; Multi-Paxos is the contrast.
    groups.sort_by_key(|g| g.protocol != "basic-paxos");
    for g in &groups {
        for (level, ps) in g.by_load() {
            let ps: Vec<&Point> = ps.into_iter().filter(|p| with_counters(p)).collect();
            if ps.is_empty() {
                continue;
            }
            let ids: Vec<String> = ps
                .iter()
                .map(|p| {
                    let unreadable = p.counters.as_ref().map_or(0, |c| c.unreadable.len());
                    let note = if unreadable > 0 {
                        format!(" ({unreadable} node(s) unreadable)")
                    } else {
                        String::new()
                    };
                    format!("{}{}{note}", cell(&p.point_id), marker(p))
                })
                .collect();
            let _ = write!(
                s,
                "| {} | {} | {} | {} | {} | {} |",
                g.protocol,
                config_text(&g.varying),
                fmt_num(level),
                ids.join(", "),
                stat_of(&ps, |p| Some(p.throughput_ops)),
                stat_of(&ps, |p| Some(p.p99_us)),
            );
            for c in &columns {
                let _ = write!(s, " {} |", (c.cell)(&ps));
            }
            s.push('\n');
        }
    }
    s.push_str(
        "\nCounted by every node from just before the point's load started to just after it \
         ended (warm-up included), summed over the nodes, and divided by the commands of the same \
         span: for Basic Paxos those decided in their proposer's own batch, else the most any \
         node executed (`counters.commands_from` in points.jsonl says which). % >1 attempt and \
         the attempts are over the commands decided in their proposer's own batch (8+: eight or \
         more). Phase-1 RTT: the median over proposers of each one's smoothed phase-1 round \
         trip at the end. Longest stall: the longest run of 100 ms buckets with no completion. \
         Each figure is the median over repetitions with [min–max].\n\n",
    );
    s
}

/// A figure per command: two decimals below 10, as [`stat_fine`].
fn fine_num(x: f64) -> String {
    if x.abs() < 10.0 {
        format!("{x:.2}")
    } else {
        fmt_num(x)
    }
}

/// The median over repetitions of a figure per command with its 95% interval, as the Load
/// levels table shows them ([`fmt_ci`]), two decimals below 10.
fn stat_ci_fine(ps: &[&Point], f: impl Fn(&Point) -> Option<f64>) -> String {
    let values: Vec<f64> = ps.iter().filter_map(|p| f(p)).collect();
    let Some(s) = Stat::of(&values) else {
        return "—".into();
    };
    match s.ci {
        _ if s.min == s.max => fine_num(s.median),
        None => fine_num(s.median),
        Some((lo, hi)) => {
            let mut text = format!("{} [{}–{}]", fine_num(s.median), fine_num(lo), fine_num(hi));
            if (lo, hi) != (s.min, s.max) {
                let _ = write!(text, " (range {}–{})", fine_num(s.min), fine_num(s.max));
            }
            text
        }
    }
}

/// How many message kinds the Costs table names per row, largest first.
const COST_KINDS_SHOWN: usize = 4;

/// The largest kinds of messages sent per command over a row's repetitions (each kind's median
/// over the repetitions that have counters), as `accept=2.00 accepted=2.00`, then `+n more`.
fn kinds_text(ps: &[&Point]) -> String {
    let kinds: BTreeSet<&String> = ps
        .iter()
        .filter_map(|p| per_command(p))
        .flat_map(|c| c.sent_by_kind.keys())
        .collect();
    let mut medians: Vec<(&String, f64)> = kinds
        .into_iter()
        .filter_map(|k| {
            // A repetition with counters that never sent the kind sent none of it.
            let values: Vec<f64> = ps
                .iter()
                .filter_map(|p| per_command(p))
                .map(|c| c.sent_by_kind.get(k).copied().unwrap_or(0.0))
                .collect();
            Stat::of(&values)
                .map(|s| (k, s.median))
                .filter(|(_, m)| *m > 0.0)
        })
        .collect();
    if medians.is_empty() {
        return "—".into();
    }
    medians.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    // A kind too rare to show at two decimals (heartbeats under load) is only counted.
    let shown: Vec<&(&String, f64)> = medians
        .iter()
        .filter(|(_, m)| *m >= 0.005)
        .take(COST_KINDS_SHOWN)
        .collect();
    let mut parts: Vec<String> = shown
        .iter()
        .map(|(k, m)| format!("{k}={}", fine_num(*m)))
        .collect();
    if medians.len() > shown.len() {
        parts.push(format!("+{} more", medians.len() - shown.len()));
    }
    parts.join(" ")
}

const COST_COLUMNS: &[Column] = &[
    Column {
        header: "node CPU µs / cmd",
        present: |p| p.cpu_us_per_command().is_some(),
        cell: |ps| stat_ci_fine(ps, Point::cpu_us_per_command),
    },
    Column {
        header: "messages sent / cmd",
        present: |p| per_command(p).is_some_and(|c| c.messages_sent.is_some()),
        cell: |ps| stat_ci_fine(ps, |p| per_command(p)?.messages_sent),
    },
    Column {
        header: "messages received / cmd",
        present: |p| per_command(p).is_some_and(|c| c.messages_received.is_some()),
        cell: |ps| stat_ci_fine(ps, |p| per_command(p)?.messages_received),
    },
    Column {
        header: "sent by kind / cmd",
        present: |p| per_command(p).is_some_and(|c| !c.sent_by_kind.is_empty()),
        cell: kinds_text,
    },
    Column {
        header: "peer bytes / cmd",
        present: |p| per_command(p).is_some_and(|c| c.peer_bytes.is_some()),
        cell: |ps| stat_ci_fine(ps, |p| per_command(p)?.peer_bytes),
    },
    Column {
        header: "peer datagrams / cmd",
        present: |p| per_command(p).is_some_and(|c| c.peer_datagrams.is_some()),
        cell: |ps| stat_ci_fine(ps, |p| per_command(p)?.peer_datagrams),
    },
    Column {
        header: "client bytes / cmd",
        present: |p| per_command(p).is_some_and(|c| c.client_bytes.is_some()),
        cell: |ps| stat_ci_fine(ps, |p| per_command(p)?.client_bytes),
    },
];

/// `## Costs per command`: per protocol (every one, Unreplicated included), configuration and
/// load level, what one command cost the nodes: CPU time, messages sent and received, the
/// largest kinds of messages sent, bytes and datagrams between the nodes, bytes to and from the
/// clients; each the median over repetitions with its 95% interval. A column is shown only when
/// some point has its data. Empty when no point has counters (older results).
fn costs_section(run: &Run) -> String {
    if !run.points.iter().any(|p| p.counters.is_some()) {
        return String::new();
    }
    let columns: Vec<&Column> = COST_COLUMNS
        .iter()
        .filter(|c| run.points.iter().any(c.present))
        .collect();
    let mut s = String::from(
        "## Costs per command\n\n| protocol | config | load | reps | throughput (ops/s) |",
    );
    for c in &columns {
        let _ = write!(s, " {} |", c.header);
    }
    s.push_str("\n|---|---|---:|---:|---:|");
    for c in &columns {
        s.push_str(if c.header == "sent by kind / cmd" {
            "---|"
        } else {
            "---:|"
        });
    }
    s.push('\n');
    for g in &groups(run) {
        for (level, ps) in g.by_load() {
            let _ = write!(
                s,
                "| {} | {} | {} | {} | {} |",
                g.protocol,
                config_text(&g.varying),
                fmt_num(level),
                ps.len(),
                fmt_ci(Stat::of(
                    &ps.iter().map(|p| p.throughput_ops).collect::<Vec<_>>()
                )),
            );
            for c in &columns {
                let _ = write!(s, " {} |", (c.cell)(&ps));
            }
            s.push('\n');
        }
    }
    s.push_str(
        "\nCPU: the nodes' busy cores over the measured window, summed over nodes, over the \
         throughput. The others are counted by every node from just before the point's load \
         started to just after it ended (warm-up included), summed over the nodes, and divided \
         by the commands of the same span (see Contention; `counters.commands_from` in \
         points.jsonl). Messages: peer messages, sent as the core counts them (a broadcast once \
         per peer) and received as the runtime decoded them; by kind, the largest few sent. \
         Peer bytes and datagrams: what the nodes sent each other (each counted once, by its \
         sender); on QUIC UDP payload bytes and datagrams (acknowledgements, keep-alives and RTT \
         probes included), on TCP the TLS record bytes the kernel saw acknowledged, with no \
         datagrams (—, as for a node with no peer). Client bytes: both ways between the nodes and their clients (the \
         launcher's status reads included). Each figure is the median over repetitions with \
         [lo–hi] its 95% interval (with 2 to 5 repetitions, their min–max).\n\n",
    );
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
        "cpu_us_per_cmd",
        "gen_cpu_us_per_req",
    ] {
        header.push(h.into());
    }
    let faulty = run.points.iter().any(Point::has_fault_data);
    if faulty {
        header.extend(AVAILABILITY_COLUMNS.iter().map(|c| c.to_string()));
    }
    let counted = run
        .points
        .iter()
        .any(|p| p.counters.is_some() || p.stall.is_some());
    if counted {
        header.extend(CONTENTION_CSV_COLUMNS.iter().map(|c| c.to_string()));
    }
    // The Costs per command figures, with a column per kind of message any point sent or
    // received.
    let costed = run.points.iter().any(|p| p.counters.is_some());
    let mut sent_kinds = BTreeSet::new();
    let mut received_kinds = BTreeSet::new();
    for c in run.points.iter().filter_map(per_command) {
        sent_kinds.extend(c.sent_by_kind.keys().cloned());
        received_kinds.extend(c.received_by_kind.keys().cloned());
    }
    if costed {
        header.extend(COST_CSV_COLUMNS.iter().map(|c| c.to_string()));
        header.extend(sent_kinds.iter().map(|k| format!("sent_{k}_per_cmd")));
        header.extend(
            received_kinds
                .iter()
                .map(|k| format!("received_{k}_per_cmd")),
        );
    }
    header.extend(LEVEL_CSV_COLUMNS.iter().map(|c| c.to_string()));
    let per_second = !run.seconds.is_empty();
    if per_second {
        header.extend(PER_SECOND_CSV_COLUMNS.iter().map(|c| c.to_string()));
    }
    // Each point's level: how many repetitions it has and their figures.
    let mut levels: std::collections::HashMap<String, (usize, LevelFigures)> = Default::default();
    for g in groups(run) {
        for (_, ps) in g.by_load() {
            let figures = LevelFigures::of(&ps);
            for p in &ps {
                levels.insert(p.point_id.clone(), (ps.len(), figures));
            }
        }
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
                p.cpu_us_per_command().map(csv_num).unwrap_or_default(),
                p.generator_cpu_us_per_request
                    .map(csv_num)
                    .unwrap_or_default(),
            ]);
            if faulty {
                row.extend(availability_cells(run, p));
            }
            if counted {
                row.extend(contention_cells(p));
            }
            if costed {
                row.extend(cost_cells(p, &sent_kinds, &received_kinds));
            }
            row.extend(level_cells(levels.get(&p.point_id).copied()));
            if per_second {
                row.extend(per_second_cells(run.seconds.get(&p.point_id)));
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
    "final_read_keys",
    "final_unread_keys",
    "acknowledged_writes",
    "acknowledged_writes_lost",
    "timeline_plot",
];

/// Columns of summary.csv present when any point has counters or a stall record.
const CONTENTION_CSV_COLUMNS: &[&str] = &[
    "phase1_per_cmd",
    "nacks_per_cmd",
    "preemptions_per_cmd",
    "backoff_us_per_cmd",
    "messages_per_cmd",
    "retried_fraction",
    "attempts_p50",
    "attempts_p99",
    "attempts_max",
    "counted_commands",
    "counters_unreadable",
    "longest_stall_ms",
    "livelock",
];

/// Columns of summary.csv over the repetitions of each point's protocol, configuration and
/// load level (the same on every repetition's row): their count, and per figure the median
/// and its 95% interval (empty for one repetition).
const LEVEL_CSV_COLUMNS: &[&str] = &[
    "level_repetitions",
    "throughput_ops_median",
    "throughput_ops_ci_lo",
    "throughput_ops_ci_hi",
    "p50_us_median",
    "p50_us_ci_lo",
    "p50_us_ci_hi",
    "p99_us_median",
    "p99_us_ci_lo",
    "p99_us_ci_hi",
];

/// The cells of [`LEVEL_CSV_COLUMNS`] for a point of a level with `reps` repetitions.
fn level_cells(level: Option<(usize, LevelFigures)>) -> Vec<String> {
    let Some((reps, f)) = level else {
        return vec![String::new(); LEVEL_CSV_COLUMNS.len()];
    };
    let mut cells = vec![reps.to_string()];
    for stat in [f.throughput_ops, f.p50_us, f.p99_us] {
        let ci = stat.and_then(|s| s.ci);
        cells.extend([
            stat.map(|s| csv_num(s.median)).unwrap_or_default(),
            ci.map(|c| csv_num(c.0)).unwrap_or_default(),
            ci.map(|c| csv_num(c.1)).unwrap_or_default(),
        ]);
    }
    cells
}

/// Columns of summary.csv from each point's interval log, present when any point has one:
/// how many intervals, and the median, p5 and p95 (nearest rank) of the per-second throughput
/// and p99.
const PER_SECOND_CSV_COLUMNS: &[&str] = &[
    "seconds",
    "per_sec_throughput_ops_median",
    "per_sec_throughput_ops_p5",
    "per_sec_throughput_ops_p95",
    "per_sec_p99_us_median",
    "per_sec_p99_us_p5",
    "per_sec_p99_us_p95",
];

/// The cells of [`PER_SECOND_CSV_COLUMNS`] for a point's per-second figures.
fn per_second_cells(seconds: Option<&Seconds>) -> Vec<String> {
    let Some(seconds) = seconds else {
        return vec![String::new(); PER_SECOND_CSV_COLUMNS.len()];
    };
    let mut cells = vec![seconds.throughput_ops.len().to_string()];
    for spread in [seconds.throughput_spread(), seconds.p99_spread()] {
        cells.extend(match spread {
            Some(s) => [csv_num(s.median), csv_num(s.p5), csv_num(s.p95)],
            None => Default::default(),
        });
    }
    cells
}

/// Columns of summary.csv present when any point has counters (then a column per message
/// kind, sent and received).
const COST_CSV_COLUMNS: &[&str] = &[
    "messages_received_per_cmd",
    "peer_bytes_per_cmd",
    "peer_datagrams_per_cmd",
    "peer_writes_per_cmd",
    "client_bytes_per_cmd",
];

/// The cells of [`COST_CSV_COLUMNS`] and of the kind columns for `p` (a kind the point has
/// counters for but never sent is 0; without counters every cell is empty).
fn cost_cells(
    p: &Point,
    sent_kinds: &BTreeSet<String>,
    received_kinds: &BTreeSet<String>,
) -> Vec<String> {
    let pc = per_command(p);
    let opt = |v: Option<f64>| v.map(csv_num).unwrap_or_default();
    let mut cells = vec![
        opt(pc.and_then(|c| c.messages_received)),
        opt(pc.and_then(|c| c.peer_bytes)),
        opt(pc.and_then(|c| c.peer_datagrams)),
        opt(pc.and_then(|c| c.peer_writes)),
        opt(pc.and_then(|c| c.client_bytes)),
    ];
    let by_kind = |map: Option<&std::collections::BTreeMap<String, f64>>, k: &String| match map {
        Some(m) => csv_num(m.get(k).copied().unwrap_or(0.0)),
        None => String::new(),
    };
    // Counters without a count of their kind: 0 only when the commands divide (else empty).
    let divides = pc.is_some_and(|c| c.messages_sent.is_some());
    let sent = pc.filter(|_| divides).map(|c| &c.sent_by_kind);
    let received = pc
        .filter(|c| c.messages_received.is_some())
        .map(|c| &c.received_by_kind);
    cells.extend(sent_kinds.iter().map(|k| by_kind(sent, k)));
    cells.extend(received_kinds.iter().map(|k| by_kind(received, k)));
    cells
}

/// The cells of [`CONTENTION_CSV_COLUMNS`] for `p`.
fn contention_cells(p: &Point) -> Vec<String> {
    let c = p.counters.as_ref();
    let pc = per_command(p);
    let opt = |v: Option<f64>| v.map(csv_num).unwrap_or_default();
    let int = |v: Option<u32>| v.map(|v| v.to_string()).unwrap_or_default();
    vec![
        opt(pc.and_then(|c| c.phase1_rounds)),
        opt(pc.and_then(|c| c.nacks)),
        opt(pc.and_then(|c| c.preemptions)),
        opt(pc.and_then(|c| c.backoff_us)),
        opt(pc.and_then(|c| c.messages_sent)),
        opt(pc.and_then(|c| c.retried_fraction)),
        int(pc.and_then(|c| c.attempts_p50)),
        int(pc.and_then(|c| c.attempts_p99)),
        int(pc.and_then(|c| c.attempts_max)),
        c.map(|c| c.commands.to_string()).unwrap_or_default(),
        c.map(|c| {
            c.unreadable
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default(),
        p.stall
            .as_ref()
            .map(|s| s.longest_ms.to_string())
            .unwrap_or_default(),
        p.stall
            .as_ref()
            .map(|_| p.livelock().to_string())
            .unwrap_or_default(),
    ]
}

/// The cells of [`AVAILABILITY_COLUMNS`] for `p`.
fn availability_cells(run: &Run, p: &Point) -> Vec<String> {
    let a = p.availability.as_ref();
    let l = p.linearizable.as_ref();
    let f = l.and_then(|l| l.final_reads.as_ref());
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
        int(f.map(|f| f.keys)),
        int(f.map(|f| f.unread_keys)),
        int(f.map(|f| f.acknowledged)),
        int(f.map(|f| f.lost)),
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
                let node = if f.node.is_some() || f.added.is_some() {
                    format!(" ({})", f.whom())
                } else {
                    String::new()
                };
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
         it (and before the next fault). To ½ throughput: from the fault to the first bucket from it on whose completion \
         rate is at least half the median rate of the buckets before it (defined without a \
         leader, as for Basic Paxos). p99 before → after: the highest bucket p99 in the second \
         before the fault and in the second from it, an upper bound on each second's p99. \
         Failed during fault: errors and timeouts in the buckets from the fault to the \
         recovery (to new leader, else to ½ throughput, else the fault's end + 1 s, else the \
         window's end). Lost acknowledged writes: after the load and the faults, every key the \
         history wrote is read once more (those reads are checked with the history too); an \
         acknowledged write is lost when the value read back could only have been written \
         before it, summed over repetitions.\n\n",
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
    // Learner reads: not linearizable by design, so deliberately not checked.
    let skipped = checked
        .iter()
        .filter(|(_, l)| l.verdict == NOT_CHECKED)
        .count();
    if skipped > 0 {
        parts.push(format!(
            "not checked (learner reads: not linearizable) {skipped}/{n}"
        ));
    }
    // Anything else is undecided; the checker's detail says why.
    let mut reasons: Vec<String> = Vec::new();
    let mut undecided = 0;
    for (_, l) in &checked {
        if [VIOLATION, LINEARIZABLE, NOT_CHECKED].contains(&l.verdict.as_str()) {
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
    if let Some(lost) = lost_writes_text(&checked) {
        parts.push(lost);
    }
    parts.join("; ")
}

/// The final reads of a row's repetitions, summed: `lost 0 of 96717 acknowledged writes`, with
/// the keys left unread, and in how many repetitions, when the read-back did not reach them all.
fn lost_writes_text(checked: &[(u32, &LinearizabilityResult)]) -> Option<String> {
    let finals: Vec<&crate::point::FinalReads> = checked
        .iter()
        .filter_map(|(_, l)| l.final_reads.as_ref())
        .collect();
    if finals.is_empty() {
        return None;
    }
    let sum = |f: fn(&crate::point::FinalReads) -> u64| finals.iter().map(|r| f(r)).sum::<u64>();
    let mut s = format!(
        "lost {} of {} acknowledged writes",
        sum(|r| r.lost),
        sum(|r| r.acknowledged)
    );
    let unread = sum(|r| r.unread_keys);
    if unread > 0 {
        let _ = write!(s, " ({unread} of {} keys not read back)", sum(|r| r.keys));
    }
    if finals.len() < checked.len() {
        let _ = write!(
            s,
            " (read back in {} of {} reps)",
            finals.len(),
            checked.len()
        );
    }
    Some(s)
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

/// `median [lo–hi]` with the 95% interval of the median, then ` (range min–max)` when the
/// values spread wider than it; the bare value for one value or equal values, `—` for none.
pub fn fmt_ci(s: Option<Stat>) -> String {
    let Some(s) = s else {
        return "—".into();
    };
    match s.ci {
        _ if s.min == s.max => fmt_num(s.median),
        None => fmt_num(s.median),
        Some((lo, hi)) => {
            let mut text = format!("{} [{}–{}]", fmt_num(s.median), fmt_num(lo), fmt_num(hi));
            if (lo, hi) != (s.min, s.max) {
                let _ = write!(text, " (range {}–{})", fmt_num(s.min), fmt_num(s.max));
            }
            text
        }
    }
}

/// `median (p5–p95)` of a per-second series, the median alone when the two agree, `—` for
/// none.
pub fn fmt_spread(s: Option<Spread>) -> String {
    match s {
        None => "—".into(),
        Some(s) if s.p5 == s.p95 => fmt_num(s.median),
        Some(s) => format!(
            "{} ({}–{})",
            fmt_num(s.median),
            fmt_num(s.p5),
            fmt_num(s.p95)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contention::{Contention, CounterValues, Stall, TrafficValues};
    use serde_json::json;

    fn point(id: &str, protocol: &str, rate: f64, rep: u32, tput: f64) -> Point {
        serde_json::from_value(json!({
            "point_id": id, "protocol": protocol, "params": {"rate": rate}, "repetition": rep,
            "offered_ops": rate, "throughput_ops": tput, "p50_us": 500.0, "p90_us": 900.0,
            "p99_us": 2000.0, "p999_us": 3000.0, "max_us": 4000.0, "mean_us": 600.0,
            "completed": 100, "errors": 0, "timeouts": 0,
        }))
        .unwrap()
    }

    /// Counters of a point whose nodes ran `phase1` phase-1 rounds and got `decided` commands
    /// decided, `retried` of them on the second attempt, the rest at once.
    fn counted(mut p: Point, phase1: u64, decided: u64, retried: u64) -> Point {
        let after = CounterValues {
            phase1_rounds: phase1,
            nacks_received: retried,
            preemptions: retried,
            backoff_us: retried * 500,
            attempts: vec![decided - retried, retried, 0, 0, 0, 0, 0, 0],
            phase1_rtt_us: Some(800),
            ..CounterValues::default()
        };
        let readings = vec![
            (0, Ok((CounterValues::default(), after))),
            (1, Err("no status".to_string())),
        ];
        p.counters = Some(Contention::compute(readings, p.completed));
        p
    }

    fn run(points: Vec<Point>) -> Run {
        Run {
            dir: "r".into(),
            name: "t".into(),
            description: None,
            slo_p99_us: 10_000.0,
            env: Vec::new(),
            points,
            timelines: Default::default(),
            seconds: Default::default(),
        }
    }

    fn stall(livelock: bool) -> Stall {
        Stall {
            longest_ms: 1200,
            longest_start_ms: Some(300),
            longest_outside_faults_ms: 1200,
            threshold_ms: 1000,
            livelock,
        }
    }

    #[test]
    fn an_interval_reads_median_lo_hi_and_the_range_only_when_wider() {
        assert_eq!(fmt_ci(None), "—");
        assert_eq!(fmt_ci(Stat::of(&[5.0])), "5");
        assert_eq!(fmt_ci(Stat::of(&[5.0, 5.0, 5.0])), "5");
        // Three values: the interval is the range, shown once.
        assert_eq!(fmt_ci(Stat::of(&[1.0, 5.0, 3.0])), "3 [1–5]");
        // Seven: the interval [x2, x6] is inside the range.
        let s = Stat::of(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 70.0]);
        assert_eq!(fmt_ci(s), "4 [2–6] (range 1–70)");
        assert_eq!(fmt_spread(None), "—");
        assert_eq!(
            fmt_spread(Spread::of(&[900.0, 904.0, 902.0])),
            "902 (900–904)"
        );
        assert_eq!(fmt_spread(Spread::of(&[1000.0, 1000.0])), "1000");
    }

    #[test]
    fn the_contention_table_aggregates_repetitions_per_load_level() {
        let mut p3 = counted(point("p3", "basic-paxos", 200.0, 1, 150.0), 300, 100, 50);
        p3.stall = Some(stall(true));
        let points = vec![
            counted(point("p0", "multi-paxos", 200.0, 0, 200.0), 2, 0, 0),
            counted(point("p1", "basic-paxos", 100.0, 0, 100.0), 110, 100, 10),
            counted(point("p2", "basic-paxos", 200.0, 0, 180.0), 200, 100, 30),
            p3,
            point("p4", "unreplicated", 200.0, 0, 200.0),
        ];
        let md = markdown(&run(points));
        let section = md
            .split("## Contention\n\n")
            .nth(1)
            .expect("a Contention section")
            .split("\n\n")
            .next()
            .unwrap();
        let lines: Vec<&str> = section.lines().collect();
        assert!(lines[0].contains("phase-1 / cmd") && lines[0].contains("% >1 attempt"));
        assert!(lines[0].contains("attempts p50 / p99 / max"));
        assert_eq!(lines.len(), 2 + 3, "a row per protocol and load: {section}");
        // Basic Paxos first, at 100 ops/s: 1.1 phase-1 rounds per command, 10 % retried.
        assert!(lines[2].starts_with("| basic-paxos |"), "{}", lines[2]);
        assert!(
            lines[2].contains("| 1.10 |") && lines[2].contains("| 10 |"),
            "{}",
            lines[2]
        );
        assert!(lines[2].contains("(1 node(s) unreadable)"), "{}", lines[2]);
        // At 200 ops/s two repetitions: 2 and 3 rounds per command, 30 and 50 % retried;
        // the second is marked as a livelock.
        let row = lines[3];
        assert!(
            row.contains("| p2 (1 node(s) unreadable), p3 ⚠ livelock (1 node(s) unreadable) |"),
            "{row}"
        );
        assert!(row.contains("| 2.50 [2.00–3.00] |"), "{row}");
        assert!(row.contains("| 40 [30–50] |"), "{row}");
        assert!(row.contains("| 165 [150–180] |"), "throughput: {row}");
        assert!(
            row.contains("| 1 / 2 / 2 |"),
            "attempts p50 / p99 / max: {row}"
        );
        // Multi-Paxos for contrast; unreplicated has no counters and no row.
        assert!(lines[4].starts_with("| multi-paxos |"), "{}", lines[4]);
        assert!(!section.contains("unreplicated"));
        // The marker and its note in the points table.
        assert!(md.contains("| p3 ⚠ livelock |"), "{md}");
        assert!(md.contains("⚠ livelock: completions stopped for at least 1 s"));
        let csv = csv(&run(vec![counted(
            point("p1", "basic-paxos", 100.0, 0, 100.0),
            110,
            100,
            10,
        )]));
        let header = csv.lines().next().unwrap();
        assert!(header.contains("phase1_per_cmd") && header.contains("livelock"));
        assert!(csv.lines().nth(1).unwrap().contains(",1.1,"), "{csv}");
    }

    #[test]
    fn the_points_table_and_csv_show_the_generators_cpu_per_request() {
        let mut measured = point("p0", "unreplicated", 100_000.0, 0, 99_000.0);
        measured.generator_cpu_us_per_request = Some(1.834);
        // An older point (or one whose generator could not read its CPU) has no figure.
        let older = point("p1", "unreplicated", 200_000.0, 0, 150_000.0);
        assert_eq!(older.generator_cpu_us_per_request, None);
        let r = run(vec![measured.clone(), older]);
        let md = markdown(&r);
        let header = md
            .lines()
            .find(|l| l.starts_with("| point | protocol |"))
            .expect("a points table");
        let cols: Vec<&str> = header.split('|').map(str::trim).collect();
        let at = cols
            .iter()
            .position(|c| *c == "gen CPU µs/req")
            .expect(header);
        let row = |id: &str| -> Vec<String> {
            let line = md
                .lines()
                .find(|l| l.starts_with(&format!("| {id} |")))
                .unwrap_or_else(|| panic!("no row {id}: {md}"));
            line.split('|').map(|c| c.trim().to_string()).collect()
        };
        assert_eq!(row("p0")[at], "1.83", "{md}");
        assert_eq!(row("p1")[at], "—", "{md}");
        assert_eq!(
            row("p0").len(),
            cols.len(),
            "every row has the column: {md}"
        );
        // The alignment row has one cell per column too.
        let align = md.lines().skip_while(|l| *l != header).nth(1).unwrap();
        assert_eq!(
            align.split('|').count(),
            header.split('|').count(),
            "{align}"
        );

        let csv = csv(&r);
        let mut lines = csv.lines();
        let names: Vec<&str> = lines.next().unwrap().split(',').collect();
        let at = names
            .iter()
            .position(|c| *c == "gen_cpu_us_per_req")
            .unwrap();
        let first: Vec<&str> = lines.next().unwrap().split(',').collect();
        let second: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert_eq!((first[at], second[at]), ("1.834", ""), "{csv}");
        // It goes through points.jsonl and back.
        let back: Point = serde_json::from_str(&serde_json::to_string(&measured).unwrap()).unwrap();
        assert_eq!(back.generator_cpu_us_per_request, Some(1.834));
    }

    #[test]
    fn older_results_render_without_the_section_and_an_election_is_not_a_livelock() {
        let md = markdown(&run(vec![point("p0", "basic-paxos", 100.0, 0, 100.0)]));
        assert!(!md.contains("Contention"));
        assert!(!csv(&run(vec![point("p0", "basic-paxos", 100.0, 0, 100.0)])).contains("livelock"));
        // Counters without attempts (a core that does not fill them): no attempt columns.
        let md = markdown(&run(vec![counted(
            point("p0", "basic-paxos", 100.0, 0, 100.0),
            5,
            0,
            0,
        )]));
        let header = md
            .lines()
            .find(|l| l.starts_with("| protocol | config | load | points |"))
            .expect("a Contention table");
        assert!(header.contains("phase-1 / cmd"), "{header}");
        assert!(
            !header.contains("% >1 attempt") && !header.contains("attempts p50"),
            "{header}"
        );
        // A stall during an election is marked once, as an election.
        let mut p = point("p0", "multi-paxos", 100.0, 0, 100.0);
        p.leader_changed = true;
        p.stall = Some(stall(true));
        assert!(!p.livelock());
        let md = markdown(&run(vec![p]));
        assert!(
            md.contains("| p0 ⚠ election |") && !md.contains("⚠ livelock"),
            "{md}"
        );
        // Only Basic Paxos proposers contend: another protocol's stall (an overloaded leader,
        // a stalled generator) stays in `stall`, unmarked.
        for (protocol, marked) in [("multi-paxos", false), ("basic-paxos", true)] {
            let mut p = point("p0", protocol, 100.0, 0, 100.0);
            p.stall = Some(stall(true));
            assert_eq!(p.livelock(), marked, "{protocol}");
        }
    }

    /// A point whose `nodes` nodes each executed `commands` commands, sent `accepts` Accepts
    /// and `commits` Commits (all of them received), and sent `bytes` peer bytes in `bytes /
    /// 1000` datagrams (`None` on TCP), with `bytes / 4` client bytes each way; each node busy
    /// at `cpu` % of a core.
    #[allow(clippy::too_many_arguments)]
    fn costly(
        mut p: Point,
        nodes: u32,
        commands: u64,
        accepts: u64,
        commits: u64,
        bytes: u64,
        quic: bool,
        cpu: f64,
    ) -> Point {
        let traffic = |b: u64| TrafficValues {
            bytes_sent: b,
            bytes_received: b,
            writes: b / 500,
            datagrams_sent: quic.then_some(b / 1000),
            datagrams_received: quic.then_some(b / 1000),
        };
        let kinds = |a: u64, c: u64| {
            [("accept".to_string(), a), ("commit".to_string(), c)]
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .collect()
        };
        let after = CounterValues {
            sent: kinds(accepts, commits),
            received: kinds(accepts, commits),
            commands_executed: commands,
            peer_traffic: Some(traffic(bytes)),
            client_traffic: Some(traffic(bytes / 4)),
            ..CounterValues::default()
        };
        let readings = (0..nodes)
            .map(|i| (i, Ok((CounterValues::default(), after.clone()))))
            .collect();
        p.counters = Some(Contention::compute(readings, p.completed));
        p.nodes = (0..nodes)
            .map(|i| crate::point::NodeStats {
                id: json!(i),
                cpu_percent: cpu,
                rss_bytes: 1 << 20,
            })
            .collect();
        p
    }

    #[test]
    fn the_costs_table_covers_every_protocol_with_medians_over_repetitions() {
        let points = vec![
            // Unreplicated: one node, no peers (so no messages, no peer bytes), 1000 commands.
            costly(
                point("u0", "unreplicated", 1000.0, 0, 1000.0),
                1,
                1000,
                0,
                0,
                0,
                true,
                50.0,
            ),
            // Multi-Paxos, two repetitions: per command 0.4 and 0.6 Accepts per node...
            costly(
                point("m0", "multi-paxos", 1000.0, 0, 1000.0),
                3,
                1000,
                400,
                100,
                900_000,
                true,
                20.0,
            ),
            costly(
                point("m1", "multi-paxos", 1000.0, 1, 1000.0),
                3,
                1000,
                600,
                100,
                1_500_000,
                true,
                40.0,
            ),
            // Basic Paxos over TCP: no datagrams.
            costly(
                point("b0", "basic-paxos", 1000.0, 0, 500.0),
                3,
                1000,
                3000,
                1,
                3_000_000,
                false,
                60.0,
            ),
        ];
        let md = markdown(&run(points.clone()));
        let section = md
            .split("## Costs per command\n\n")
            .nth(1)
            .expect("a Costs per command section")
            .split("\n\n")
            .next()
            .unwrap();
        let lines: Vec<&str> = section.lines().collect();
        for h in [
            "node CPU µs / cmd",
            "messages sent / cmd",
            "messages received / cmd",
            "sent by kind / cmd",
            "peer bytes / cmd",
            "peer datagrams / cmd",
            "client bytes / cmd",
        ] {
            assert!(lines[0].contains(h), "{h}: {}", lines[0]);
        }
        assert_eq!(lines.len(), 2 + 3, "a row per protocol and load: {section}");
        let row = |protocol: &str| {
            *lines
                .iter()
                .find(|l| l.starts_with(&format!("| {protocol} |")))
                .unwrap_or_else(|| panic!("no {protocol} row: {section}"))
        };
        let cells = |protocol: &str| -> Vec<String> {
            row(protocol)
                .split('|')
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect()
        };
        // protocol, config, load, reps, throughput, CPU, sent, received, kinds, peer bytes,
        // datagrams, client bytes.
        let u = cells("unreplicated");
        assert_eq!(u[3], "1", "{u:?}");
        assert_eq!(u[5], "500", "0.5 cores over 1000 ops/s: {u:?}");
        assert_eq!((u[6].as_str(), u[7].as_str()), ("0.00", "—"), "{u:?}");
        assert_eq!(u[8], "—", "{u:?}");
        assert_eq!(u[9], "0.00", "{u:?}");
        assert_eq!(u[11], "0.00", "{u:?}");
        let m = cells("multi-paxos");
        assert_eq!(m[3], "2");
        // CPU: 3 x 20 % and 3 x 40 % over 1000 ops/s: 600 and 1200 µs.
        assert_eq!(m[5], "900 [600–1200]", "{m:?}");
        // Sent: 3 x (400 + 100) and 3 x (600 + 100) over 1000 commands.
        assert_eq!(m[6], "1.80 [1.50–2.10]", "{m:?}");
        assert_eq!(m[7], "1.80 [1.50–2.10]", "{m:?}");
        // By kind, largest first: 3 x 0.4 and 3 x 0.6 Accepts, 3 x 0.1 Commits.
        assert_eq!(m[8], "accept=1.50 commit=0.30", "{m:?}");
        // Basic Paxos also sent one Commit in 1000 commands: too rare to show, counted.
        assert_eq!(cells("basic-paxos")[8], "accept=9.00 +1 more");
        // Peer bytes: 3 x 900 and 3 x 1500 per command; datagrams a thousandth of that.
        assert_eq!(m[9], "3600 [2700–4500]", "{m:?}");
        assert_eq!(m[10], "3.60 [2.70–4.50]", "{m:?}");
        // Client bytes: both ways, a quarter of the peer bytes each way.
        assert_eq!(m[11], "1800 [1350–2250]", "{m:?}");
        let b = cells("basic-paxos");
        assert_eq!(b[10], "—", "TCP has no datagrams: {b:?}");
        assert_eq!(b[9], "9000", "{b:?}");
        // summary.csv: the same figures per point, a column per kind.
        let table = csv(&run(points));
        let header: Vec<&str> = table.lines().next().unwrap().split(',').collect();
        let col = |name: &str| {
            header
                .iter()
                .position(|h| *h == name)
                .unwrap_or_else(|| panic!("no {name} column: {header:?}"))
        };
        let m0: Vec<&str> = table
            .lines()
            .find(|l| l.starts_with("m0,"))
            .unwrap()
            .split(',')
            .collect();
        assert_eq!(m0[col("peer_bytes_per_cmd")], "2700");
        assert_eq!(m0[col("peer_datagrams_per_cmd")], "2.7");
        assert_eq!(m0[col("messages_received_per_cmd")], "1.5");
        assert_eq!(m0[col("client_bytes_per_cmd")], "1350");
        assert_eq!(m0[col("sent_accept_per_cmd")], "1.2");
        assert_eq!(m0[col("received_commit_per_cmd")], "0.3");
        let b0: Vec<&str> = table
            .lines()
            .find(|l| l.starts_with("b0,"))
            .unwrap()
            .split(',')
            .collect();
        assert_eq!(b0[col("peer_datagrams_per_cmd")], "", "TCP: empty, not 0");
        assert_eq!(b0[col("sent_commit_per_cmd")], "0.003");
        let u0: Vec<&str> = table
            .lines()
            .find(|l| l.starts_with("u0,"))
            .unwrap()
            .split(',')
            .collect();
        assert_eq!(u0[col("sent_accept_per_cmd")], "0", "counted, never sent");
        // Older results, without counters, have neither the section nor the columns.
        let old = vec![point("p0", "multi-paxos", 100.0, 0, 100.0)];
        assert!(!markdown(&run(old.clone())).contains("Costs per command"));
        assert!(!csv(&run(old)).contains("peer_bytes_per_cmd"));
    }
}
