//! `plots/proposers.svg`: what contention costs, against the number of proposing nodes.
//!
//! Drawn for runs that sweep `target` over lists of nodes (`[0, 1]`, `[0, 1, 2]`, ...): the
//! x axis is how many nodes receive requests, and so propose (every Basic Paxos node that gets a
//! request proposes it). One line per remaining configuration (backoff, base, batch size, ...).
//! The left panel shows each configuration's peak throughput (the highest median over
//! repetitions among its load levels), the right one its p99 at one stated offered load. A
//! configuration that completed nothing at that load has no mark there: its p99 does not exist.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use plotters::coord::combinators::BindKeyPoints;
use plotters::prelude::*;

use crate::headline::{median_of, Group};
use crate::plot::{
    colour, draw_legend, fmt_latency, legend_width, log_ticks, plot_err, slo_line, Entry,
};
use crate::plot::{FONT, SIZE};
use crate::run::Run;
use crate::summary::fmt_num;

/// File name of the plot under `plots/`.
pub const PROPOSERS: &str = "proposers.svg";

/// One line: a configuration, and per proposer count its peak throughput and its p99 at the
/// reference load.
#[derive(Debug, PartialEq)]
pub(crate) struct Line {
    pub(crate) label: String,
    /// (proposers, peak throughput ops/s, p99 µs at the reference load if any completed).
    pub(crate) points: Vec<(usize, f64, Option<f64>)>,
}

/// How many nodes a `target` value names: `[0,1,2]` is 3; `leader` and `all` are not counts.
fn proposers(target: &str) -> Option<usize> {
    let inner = target.trim().strip_prefix('[')?.strip_suffix(']')?;
    let n = inner.split(',').filter(|s| !s.trim().is_empty()).count();
    (n > 0).then_some(n)
}

/// The lines of the plot and the reference load their p99 is read at, or None when no group
/// sweeps `target` over node lists. The reference is the second-lowest offered load (the
/// lowest when there is one): light enough that a working configuration keeps up, loaded
/// enough that contention shows.
pub(crate) fn lines(groups: &[Group<'_>]) -> Option<(Vec<Line>, f64)> {
    let swept: Vec<(&Group<'_>, usize)> = groups
        .iter()
        .filter_map(|g| {
            let (_, t) = g.config.iter().find(|(k, _)| k == "target")?;
            Some((g, proposers(t)?))
        })
        .collect();
    let mut counts: Vec<usize> = swept.iter().map(|(_, n)| *n).collect();
    counts.sort_unstable();
    counts.dedup();
    if counts.len() < 2 {
        return None;
    }
    let mut levels: Vec<f64> = swept
        .iter()
        .flat_map(|(g, _)| g.by_load().into_iter().map(|(l, _)| l))
        .collect();
    levels.sort_by(f64::total_cmp);
    levels.dedup();
    let reference = *levels.get(1).or(levels.first())?;
    let mut by_label: BTreeMap<String, Vec<(usize, f64, Option<f64>)>> = BTreeMap::new();
    for (g, n) in swept {
        let rest: Vec<String> = g
            .varying
            .iter()
            .filter(|(k, _)| k != "target")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let label = std::iter::once(g.protocol.clone())
            .chain(rest)
            .collect::<Vec<_>>();
        let by_load = g.by_load();
        let peak = by_load
            .iter()
            .map(|(_, ps)| median_of(ps, |p| p.throughput_ops))
            .filter(|t| t.is_finite())
            .fold(0.0, f64::max);
        let p99 = by_load
            .iter()
            .find(|(l, _)| *l == reference)
            .map(|(_, ps)| {
                let done: Vec<_> = ps
                    .iter()
                    .copied()
                    .filter(|p| p.throughput_ops > 0.0)
                    .collect();
                median_of(&done, |p| p.p99_us)
            })
            .filter(|v| v.is_finite() && *v > 0.0);
        by_label
            .entry(label.join(" "))
            .or_default()
            .push((n, peak, p99));
    }
    let lines = by_label
        .into_iter()
        .map(|(label, mut points)| {
            points.sort_by_key(|p| p.0);
            Line { label, points }
        })
        .collect();
    Some((lines, reference))
}

/// Writes the plot into `path` if `run` sweeps proposers; returns whether it did.
pub(crate) fn render(run: &Run, groups: &[Group<'_>], path: &Path) -> Result<bool> {
    let Some((lines, reference)) = lines(groups) else {
        return Ok(false);
    };
    let x_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .max()
        .unwrap_or(1) as f64
        + 0.5;
    let t_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 1.1;
    let p99s = || {
        lines
            .iter()
            .flat_map(|l| l.points.iter().filter_map(|p| p.2))
    };
    let y_lo = (p99s().fold(f64::INFINITY, f64::min).min(run.slo_p99_us) / 1.5).max(0.1);
    let y_hi = p99s().fold(run.slo_p99_us, f64::max) * 1.5;

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let root = root
        .titled(
            &format!("{}: contention against proposers", run.name),
            (FONT, 24),
        )
        .map_err(plot_err)?;
    let width = legend_width(lines.iter().map(|l| l.label.as_str())) + 30;
    let (plots, legend_area) = root.split_horizontally(SIZE.0 - width);
    let (left, right) = plots.split_horizontally((SIZE.0 - width) / 2);
    let mut throughput = ChartBuilder::on(&left)
        .caption("peak throughput", (FONT, 18))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(70)
        .build_cartesian_2d(0.5..x_max, 0.0..t_max)
        .map_err(plot_err)?;
    throughput
        .configure_mesh()
        .x_desc("proposing nodes")
        .y_desc("ops/s")
        .x_labels(x_max as usize + 1)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| fmt_num(*y))
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .light_line_style(RGBColor(240, 240, 240))
        .draw()
        .map_err(plot_err)?;
    let mut latency = ChartBuilder::on(&right)
        .caption(
            format!("p99 at {} ops/s offered", fmt_num(reference)),
            (FONT, 18),
        )
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(
            0.5..x_max,
            (y_lo..y_hi)
                .log_scale()
                .with_key_points(log_ticks(y_lo, y_hi)),
        )
        .map_err(plot_err)?;
    latency
        .configure_mesh()
        .x_desc("proposing nodes")
        .y_desc("p99 (log scale)")
        .x_labels(x_max as usize + 1)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| fmt_latency(*y))
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .light_line_style(RGBColor(240, 240, 240))
        .draw()
        .map_err(plot_err)?;
    let mut legend = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let style = colour(i).stroke_width(2);
        let t: Vec<(f64, f64)> = l.points.iter().map(|p| (p.0 as f64, p.1)).collect();
        throughput
            .draw_series(LineSeries::new(t.clone(), style))
            .map_err(plot_err)?;
        throughput
            .draw_series(t.iter().map(|&p| Circle::new(p, 3, colour(i).filled())))
            .map_err(plot_err)?;
        // A gap where nothing completed: draw only runs of consecutive existing p99s.
        for run in l.points.split(|p| p.2.is_none()) {
            let pts: Vec<(f64, f64)> = run
                .iter()
                .filter_map(|p| Some((p.0 as f64, p.2?)))
                .collect();
            latency
                .draw_series(LineSeries::new(pts.clone(), style))
                .map_err(plot_err)?;
            latency
                .draw_series(pts.iter().map(|&p| Circle::new(p, 3, colour(i).filled())))
                .map_err(plot_err)?;
        }
        legend.push(Entry {
            label: l.label.clone(),
            style,
            dashed: false,
        });
    }
    legend.push(slo_line(&mut latency, 0.5..x_max, run.slo_p99_us)?);
    legend.push(Entry {
        label: "no mark: nothing completed".into(),
        style: WHITE.stroke_width(1),
        dashed: false,
    });
    draw_legend(&legend_area, &legend)?;
    root.present().map_err(plot_err)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_node_lists_count_as_proposers() {
        assert_eq!(proposers("[0,1,2]"), Some(3));
        assert_eq!(proposers("[0]"), Some(1));
        assert_eq!(proposers("[]"), None);
        assert_eq!(proposers("leader"), None);
        assert_eq!(proposers("all"), None);
    }
}
