//! SVG plots: throughput–latency curves and latency CDFs.
//!
//! The SVG backend writes text as `<text>` elements, so no fonts are needed at render time;
//! the viewer picks a sans-serif face.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::coord::combinators::{BindKeyPoints, WithKeyPoints};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::headline::{groups, median_of, Group};
use crate::hist::read_merged;
use crate::proposers_plot::PROPOSERS;
use crate::run::Run;
use crate::summary::fmt_num;
use crate::timeline_plot::{has_timeline_plot, timeline_plot_name, timeline_svg};

/// File name of the throughput–latency plot under `plots/`.
pub const THROUGHPUT_LATENCY: &str = "throughput-latency.svg";
/// File name of the latency CDF plot under `plots/`.
pub const LATENCY_CDF: &str = "latency-cdf.svg";

pub(crate) const SIZE: (u32, u32) = (1200, 600);
/// Size of legend text (px).
const LEGEND_FONT: u32 = 16;

/// Width of the legend panel on the right of a plot, so that no legend hides a line: room for
/// the longest label (about 0.55 em per character in a sans-serif face).
pub(crate) fn legend_width<'a>(labels: impl Iterator<Item = &'a str>) -> u32 {
    let chars = labels.map(|l| l.chars().count()).max().unwrap_or(0) as u32;
    (48 + chars * LEGEND_FONT * 55 / 100).clamp(160, SIZE.0 / 2)
}
pub(crate) const FONT: &str = "sans-serif";

/// Okabe–Ito (without its yellow, too faint on white), then Paul Tol's darker muted colours:
/// distinguishable with the common colour-vision deficiencies.
const COLOURS: &[RGBColor] = &[
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
    RGBColor(136, 34, 85),
    RGBColor(51, 34, 136),
    RGBColor(153, 153, 51),
    RGBColor(68, 170, 153),
    RGBColor(102, 102, 102),
];

/// The colour of the `i`th line: [`COLOURS`], then plotters' 99-colour palette.
pub(crate) fn colour(i: usize) -> RGBColor {
    match COLOURS.get(i) {
        Some(c) => *c,
        None => {
            let RGBAColor(r, g, b, _) = Palette99::pick(i).to_rgba();
            RGBColor(r, g, b)
        }
    }
}

/// One line of the throughput–latency plot: per load level, the medians over repetitions.
struct Curve {
    label: String,
    /// (throughput kops/s, p50 µs, p99 µs), by load level.
    points: Vec<(f64, f64, f64)>,
}

fn curves(groups: &[Group<'_>]) -> Vec<Curve> {
    groups
        .iter()
        .map(|g| Curve {
            label: g.label(),
            points: g
                .by_load()
                .iter()
                .map(|(_, ps)| {
                    (
                        median_of(ps, |p| p.throughput_ops) / 1000.0,
                        median_of(ps, |p| p.p50_us),
                        median_of(ps, |p| p.p99_us),
                    )
                })
                .filter(|(x, a, b)| x.is_finite() && *a > 0.0 && *b > 0.0)
                .collect(),
        })
        .collect()
}

/// Key points 1, 2, 5 × 10^k inside `lo..hi`.
pub(crate) fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut ticks = Vec::new();
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi {
        for m in [1.0, 2.0, 5.0] {
            let t = decade * m;
            if t >= lo && t <= hi {
                ticks.push(t);
            }
        }
        decade *= 10.0;
    }
    ticks
}

/// A latency in µs as `850 µs`, `1.5 ms`, `2 s`.
pub(crate) fn fmt_latency(us: f64) -> String {
    if us >= 1e6 {
        format!("{} s", fmt_num(us / 1e6))
    } else if us >= 1e3 {
        format!("{} ms", fmt_num(us / 1e3))
    } else {
        format!("{} µs", fmt_num(us))
    }
}

/// Writes `plots/throughput-latency.svg`, `plots/latency-cdf.svg`, `plots/proposers.svg` when
/// the run sweeps proposers (`crate::proposers_plot`), and a
/// `plots/timeline-<point_id>.svg` per point with a timeline and a fault or a marker, for
/// `run`.
pub fn render(run: &Run, plots_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(plots_dir)?;
    let groups = groups(run);
    throughput_latency(run, &groups, &plots_dir.join(THROUGHPUT_LATENCY))?;
    latency_cdf(run, &groups, &plots_dir.join(LATENCY_CDF))?;
    crate::proposers_plot::render(run, &groups, &plots_dir.join(PROPOSERS))?;
    for g in &groups {
        for p in g.points.iter().filter(|p| has_timeline_plot(run, p)) {
            let title = format!(
                "{}: {} load {} rep {} ({})",
                run.name,
                g.label(),
                fmt_num(p.load_level()),
                p.repetition,
                p.point_id
            );
            let path = plots_dir.join(timeline_plot_name(&p.point_id));
            timeline_svg(&title, &run.timelines[&p.point_id], &path)?;
        }
    }
    Ok(())
}

fn throughput_latency(run: &Run, groups: &[Group<'_>], path: &Path) -> Result<()> {
    let curves = curves(groups);
    let all = curves.iter().flat_map(|c| c.points.iter());
    let x_max = all.clone().map(|p| p.0).fold(0.0, f64::max).max(1e-3) * 1.05;
    let y_lo = all
        .clone()
        .map(|p| p.1)
        .chain([run.slo_p99_us])
        .fold(f64::INFINITY, f64::min)
        / 1.5;
    let y_hi = all.map(|p| p.2).chain([run.slo_p99_us]).fold(1.0, f64::max) * 1.5;
    let y_lo = y_lo.max(0.1);

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let root = root
        .titled(&format!("{}: throughput vs latency", run.name), (FONT, 24))
        .map_err(plot_err)?;
    let width = legend_width(curves.iter().map(|c| c.label.as_str())) + 30;
    let (plot_area, legend_area) = root.split_horizontally(SIZE.0 - width);
    let mut legend = Vec::new();
    let mut chart = ChartBuilder::on(&plot_area)
        .margin(16)
        .x_label_area_size(56)
        .y_label_area_size(90)
        .build_cartesian_2d(
            0.0..x_max,
            (y_lo..y_hi)
                .log_scale()
                .with_key_points(log_ticks(y_lo, y_hi)),
        )
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("throughput (kops/s)")
        .y_desc("latency (log scale)")
        .y_label_formatter(&|y| fmt_latency(*y))
        .x_label_formatter(&|x| fmt_num(*x))
        .label_style((FONT, 16))
        .axis_desc_style((FONT, 18))
        .x_max_light_lines(1)
        .light_line_style(RGBColor(240, 240, 240))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()
        .map_err(plot_err)?;

    for (i, c) in curves.iter().enumerate() {
        let solid = colour(i).stroke_width(2);
        let p99: Vec<(f64, f64)> = c.points.iter().map(|p| (p.0, p.2)).collect();
        let p50: Vec<(f64, f64)> = c.points.iter().map(|p| (p.0, p.1)).collect();
        chart
            .draw_series(LineSeries::new(p99.clone(), solid))
            .map_err(plot_err)?;
        legend.push(Entry {
            label: format!("{} p99", c.label),
            style: solid,
            dashed: false,
        });
        chart
            .draw_series(p99.iter().map(|&p| Circle::new(p, 3, colour(i).filled())))
            .map_err(plot_err)?;
        chart
            .draw_series(DashedLineSeries::new(p50.clone(), 6, 4, solid))
            .map_err(plot_err)?;
        legend.push(Entry {
            label: format!("{} p50", c.label),
            style: solid,
            dashed: true,
        });
        chart
            .draw_series(
                p50.iter()
                    .map(|&p| Circle::new(p, 3, colour(i).stroke_width(1))),
            )
            .map_err(plot_err)?;
    }
    legend.push(slo_line(&mut chart, 0.0..x_max, run.slo_p99_us)?);
    draw_legend(&legend_area, &legend)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

/// The highest "nines" shown: 99.99 %.
const CDF_DECADES: f64 = 4.0;

fn latency_cdf(run: &Run, groups: &[Group<'_>], path: &Path) -> Result<()> {
    // x = 1 / (1 - q) on a log axis: 1 = 0 %, 10 = 90 %, 100 = 99 %, 1000 = 99.9 %.
    let mut lines: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for g in groups {
        let Some((_, points, under_slo)) = g.saturation_level(run.slo_p99_us) else {
            continue;
        };
        let mut merged: Option<hdrhistogram::Histogram<u64>> = None;
        for p in &points {
            let hist_path = run.dir.join("hist").join(format!("{}.hlog", p.point_id));
            if let Some(h) = read_merged(&hist_path)? {
                match &mut merged {
                    Some(m) => m.add(&h).map_err(|e| anyhow!("{e:?}"))?,
                    None => merged = Some(h),
                }
            }
        }
        let Some(h) = merged.filter(|h| !h.is_empty()) else {
            continue;
        };
        // Stop where the histogram runs out of samples: beyond 1/len the tail is one value.
        let x_end = (h.len() as f64).log10().min(CDF_DECADES);
        let steps = 200;
        let line: Vec<(f64, f64)> = (0..=steps)
            .map(|i| {
                let x = 10f64.powf(x_end * i as f64 / steps as f64);
                let q = 1.0 - 1.0 / x;
                (x, (h.value_at_quantile(q) as f64).max(1.0))
            })
            .collect();
        let tput = median_of(&points, |p| p.throughput_ops);
        let note = if under_slo { "" } else { ", over SLO" };
        lines.push((
            format!("{} @ {} kops/s{note}", g.label(), fmt_num(tput / 1000.0)),
            line,
        ));
    }

    let ys = lines.iter().flat_map(|(_, l)| l.iter().map(|p| p.1));
    let y_lo = (ys.clone().fold(f64::INFINITY, f64::min) / 1.5).max(0.1);
    let y_hi = ys.fold(1.0, f64::max) * 1.5;
    let y_lo = if y_lo.is_finite() { y_lo } else { 1.0 };

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let root = root
        .titled(
            &format!("{}: latency distribution at saturation", run.name),
            (FONT, 24),
        )
        .map_err(plot_err)?;
    let width = legend_width(lines.iter().map(|(l, _)| l.as_str()));
    let (plot_area, legend_area) = root.split_horizontally(SIZE.0 - width);
    let mut legend = Vec::new();
    let mut chart = ChartBuilder::on(&plot_area)
        .margin(16)
        .margin_right(40)
        .x_label_area_size(56)
        .y_label_area_size(90)
        .build_cartesian_2d(
            (1.0..10f64.powf(CDF_DECADES))
                .log_scale()
                .with_key_points(vec![1.0, 2.0, 10.0, 100.0, 1e3, 1e4]),
            (y_lo..y_hi)
                .log_scale()
                .with_key_points(log_ticks(y_lo, y_hi)),
        )
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (log scale)")
        .x_label_formatter(&|x| percentile_label(x.log10()))
        .y_label_formatter(&|y| fmt_latency(*y))
        .label_style((FONT, 16))
        .axis_desc_style((FONT, 18))
        .x_max_light_lines(1)
        .light_line_style(RGBColor(240, 240, 240))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()
        .map_err(plot_err)?;
    for (i, (label, line)) in lines.into_iter().enumerate() {
        let style = colour(i).stroke_width(2);
        chart
            .draw_series(LineSeries::new(line, style))
            .map_err(plot_err)?;
        legend.push(Entry {
            label,
            style,
            dashed: false,
        });
    }
    draw_legend(&legend_area, &legend)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

/// A latency chart: linear x, log-scale latency in µs with 1-2-5 ticks.
pub(crate) type LatencyChart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, WithKeyPoints<LogCoord<f64>>>>;

/// Draws the SLO as a dashed horizontal line across `x` and returns its legend entry.
pub(crate) fn slo_line(
    chart: &mut LatencyChart<'_, '_>,
    x: std::ops::Range<f64>,
    slo_p99_us: f64,
) -> Result<Entry> {
    let style = RGBColor(120, 120, 120).stroke_width(1);
    chart
        .draw_series(DashedLineSeries::new(
            vec![(x.start, slo_p99_us), (x.end, slo_p99_us)],
            2,
            4,
            style,
        ))
        .map_err(plot_err)?;
    Ok(Entry {
        label: format!("SLO: p99 < {}", fmt_latency(slo_p99_us)),
        style,
        dashed: true,
    })
}

/// One line of a legend.
pub(crate) struct Entry {
    pub(crate) label: String,
    pub(crate) style: ShapeStyle,
    pub(crate) dashed: bool,
}

/// Draws `entries` one per row in `area`, a panel beside the plot.
pub(crate) fn draw_legend(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    entries: &[Entry],
) -> Result<()> {
    let text =
        TextStyle::from((FONT, LEGEND_FONT).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    // Rows of 26 px, squeezed when there are so many lines that they would not fit.
    let height = area.dim_in_pixel().1 as i32;
    let row = ((height - 60) / (entries.len() as i32).max(1)).clamp(12, 26);
    for (i, e) in entries.iter().enumerate() {
        let y = 40 + row * i as i32;
        if e.dashed {
            area.draw(&PathElement::new(vec![(4, y), (13, y)], e.style))
                .map_err(plot_err)?;
            area.draw(&PathElement::new(vec![(19, y), (28, y)], e.style))
                .map_err(plot_err)?;
        } else {
            area.draw(&PathElement::new(vec![(4, y), (28, y)], e.style))
                .map_err(plot_err)?;
        }
        area.draw(&Text::new(e.label.clone(), (36, y), text.clone()))
            .map_err(plot_err)?;
    }
    Ok(())
}

/// `x = log10(1 / (1 - q))` as a percentile: 0 %, 50 %, 90 %, 99 %, 99.9 %.
fn percentile_label(x: f64) -> String {
    let q = 100.0 * (1.0 - 10f64.powf(-x));
    let digits = if x <= 1.0 {
        0
    } else {
        (x.round() as usize).saturating_sub(2)
    };
    format!("{q:.digits$}%")
}

pub(crate) fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotting: {e:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_labels_read_as_nines() {
        let labels: Vec<String> = [0.0, 2f64.log10(), 1.0, 2.0, 3.0, 4.0]
            .iter()
            .map(|x| percentile_label(*x))
            .collect();
        assert_eq!(labels, ["0%", "50%", "90%", "99%", "99.9%", "99.99%"]);
    }

    #[test]
    fn log_ticks_are_one_two_five() {
        assert_eq!(log_ticks(30.0, 600.0), vec![50.0, 100.0, 200.0, 500.0]);
    }
}
