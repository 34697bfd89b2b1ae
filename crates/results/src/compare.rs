//! Two runs' headline tables side by side, with ratios B/A.

use std::fmt::Write as _;

use crate::headline::{headlines, Headline, Stat};
use crate::run::Run;
use crate::summary::{config_text, fmt_stat};

/// Both runs' headline tables side by side as markdown, rows matched by protocol and
/// configuration. Each B/A ratio is prefixed with `~` when the difference of the medians is no
/// larger than the run-to-run spread (max − min over repetitions) of either run, i.e. not
/// significant.
pub fn compare(a: &Run, b: &Run) -> String {
    let mut s = String::new();
    for (tag, run) in [("A", a), ("B", b)] {
        let _ = writeln!(
            s,
            "{tag}: {} ({}; git {}; SLO p99 < {} µs)",
            run.name,
            run.dir.display(),
            run.env_fact("git revision").unwrap_or("?"),
            run.slo_p99_us
        );
    }
    s.push('\n');
    s.push_str(
        "| protocol | config | saturation A (ops/s) | saturation B (ops/s) | B/A | low-load p50 A (µs) | low-load p50 B (µs) | B/A |\n\
         |---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    let rows_a = headlines(a);
    let rows_b = headlines(b);
    let key = |h: &Headline| (h.protocol.clone(), h.config.clone());
    let mut keys: Vec<_> = rows_a.iter().map(key).collect();
    for h in &rows_b {
        if !keys.contains(&key(h)) {
            keys.push(key(h));
        }
    }
    for k in keys {
        let ha = rows_a.iter().find(|h| key(h) == k);
        let hb = rows_b.iter().find(|h| key(h) == k);
        let sat = |h: Option<&Headline>| h.and_then(|h| h.saturation_ops);
        let p50 = |h: Option<&Headline>| h.and_then(|h| h.low_load_p50_us);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            k.0,
            config_text(&ha.or(hb).map_or(k.1.clone(), |h| h.varying.clone())),
            fmt_stat(sat(ha)),
            fmt_stat(sat(hb)),
            ratio_text(sat(ha), sat(hb)),
            fmt_stat(p50(ha)),
            fmt_stat(p50(hb)),
            ratio_text(p50(ha), p50(hb)),
        );
    }
    s.push_str("\n~: the difference is within the run-to-run spread (min–max over repetitions).\n");
    s
}

/// Whether B differs from A by no more than either run's spread across repetitions.
pub fn within_spread(a: Stat, b: Stat) -> bool {
    (b.median - a.median).abs() <= a.spread().max(b.spread())
}

fn ratio_text(a: Option<Stat>, b: Option<Stat>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if a.median > 0.0 => {
            let mark = if within_spread(a, b) { "~" } else { "" };
            format!("{mark}{:.2}×", b.median / a.median)
        }
        _ => "—".into(),
    }
}
