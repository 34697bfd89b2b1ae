//! `plots/timeline-<point_id>.svg`: one point's measured window over time, with its faults
//! and leader changes.
//!
//! Top panel: completions and failures (errors + timeouts) per second, one step per bucket,
//! with a triangle on every bucket that had a failure so that a few are not lost on the axis.
//! Bottom panel: each bucket's p99 and p50 (log scale), broken where a bucket had no
//! completion. Both: a vertical line per marker, solid black for a fault's start or end, dashed
//! purple for a leader change, labelled in the top panel; fault windows are shaded.

use std::path::Path;

use anyhow::Result;
use plotters::coord::combinators::BindKeyPoints;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::plot::{
    colour, draw_legend, fmt_latency, legend_width, log_ticks, plot_err, Entry, FONT, SIZE,
};
use crate::point::Point;
use crate::run::Run;
use crate::summary::fmt_num;
use crate::timeline::{MarkerKind, Timeline, TimelineRow};

/// File name under `plots/` of the timeline plot of `point_id`.
pub fn timeline_plot_name(point_id: &str) -> String {
    format!("timeline-{point_id}.svg")
}

/// Whether `render` draws a timeline plot for `p`: it has a timeline, and a fault or a marker.
pub(crate) fn has_timeline_plot(run: &Run, p: &Point) -> bool {
    run.timelines
        .get(&p.point_id)
        .is_some_and(|t| !p.faults.is_empty() || !t.markers.is_empty())
}

const FAULT: RGBColor = RGBColor(0, 0, 0);
const LEADER: RGBColor = RGBColor(136, 34, 85);
const HEIGHT: u32 = 720;

/// Draws `timeline` as an SVG at `path` with `title`. Any timeline draws, an empty one too.
pub fn timeline_svg(title: &str, timeline: &Timeline, path: &Path) -> Result<()> {
    let mut rows: Vec<&TimelineRow> = timeline.rows.iter().collect();
    rows.sort_by_key(|r| r.t_ms);
    let mut markers: Vec<_> = timeline
        .markers
        .iter()
        .filter(|m| m.t_ms.is_finite())
        .collect();
    markers.sort_by(|a, b| a.t_ms.total_cmp(&b.t_ms));

    // x: seconds into the measured window, covering every bucket and marker.
    let times = rows
        .iter()
        .flat_map(|r| [r.t_ms as f64, r.end_ms() as f64])
        .chain(markers.iter().map(|m| m.t_ms))
        .map(|ms| ms / 1000.0);
    let x_lo = times.clone().fold(0.0, f64::min);
    let x_hi = times.fold(x_lo + 1.0, f64::max);
    let x_hi = x_hi + (x_hi - x_lo) * 0.02;

    let rate_max = rows
        .iter()
        .map(|r| r.completions_per_s().max(r.failures_per_s()))
        .fold(0.0, f64::max);
    let rate_hi = (rate_max * 1.15).max(1.0);

    let latencies = rows
        .iter()
        .flat_map(|r| r.p50_us.into_iter().chain(r.p99_us))
        .filter(|v| *v > 0);
    let (lat_lo, lat_hi) = match (latencies.clone().min(), latencies.max()) {
        (Some(lo), Some(hi)) => {
            let lo = (lo as f64 / 1.5).max(1.0);
            (lo, (hi as f64 * 1.5).max(lo * 10.0))
        }
        _ => (1.0, 1000.0),
    };

    let root = SVGBackend::new(path, (SIZE.0, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let root = root.titled(title, (FONT, 22)).map_err(plot_err)?;
    let legend: Vec<Entry> = vec![
        entry("completions/s", colour(0).stroke_width(2), false),
        entry("errors + timeouts/s", colour(1).stroke_width(2), false),
        entry("p99 per bucket", colour(2).stroke_width(2), false),
        entry("p50 per bucket", colour(2).stroke_width(2), true),
        entry("fault start / end", FAULT.stroke_width(2), false),
        entry("leader change", LEADER.stroke_width(2), true),
    ];
    let width = legend_width(legend.iter().map(|e| e.label.as_str()));
    let (plot_area, legend_area) = root.split_horizontally(SIZE.0 - width);
    let (top, bottom) = plot_area.split_vertically(plot_area.dim_in_pixel().1 * 11 / 20);

    let secs = move |x: &f64| {
        if x_hi - x_lo >= 10.0 {
            format!("{x:.0}")
        } else {
            format!("{x:.1}")
        }
    };
    let fault_windows = fault_windows(&markers, x_hi);

    // Top: rates.
    let mut chart = ChartBuilder::on(&top)
        .margin(16)
        .margin_bottom(4)
        .x_label_area_size(36)
        .y_label_area_size(90)
        .build_cartesian_2d(x_lo..x_hi, 0.0..rate_hi)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .y_desc("per second")
        .x_label_formatter(&secs)
        .y_label_formatter(&|y| fmt_num(*y))
        .label_style((FONT, 16))
        .axis_desc_style((FONT, 18))
        .x_max_light_lines(1)
        .y_max_light_lines(1)
        .light_line_style(RGBColor(240, 240, 240))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()
        .map_err(plot_err)?;
    chart
        .draw_series(fault_windows.iter().map(|&(a, b)| {
            Rectangle::new([(a, 0.0), (b, rate_hi)], RGBAColor(0, 0, 0, 0.06).filled())
        }))
        .map_err(plot_err)?;
    chart
        .draw_series(LineSeries::new(
            steps(&rows, TimelineRow::completions_per_s),
            colour(0).stroke_width(2),
        ))
        .map_err(plot_err)?;
    chart
        .draw_series(LineSeries::new(
            steps(&rows, TimelineRow::failures_per_s),
            colour(1).stroke_width(2),
        ))
        .map_err(plot_err)?;
    chart
        .draw_series(
            rows.iter().filter(|r| r.errors + r.timeouts > 0).map(|r| {
                TriangleMarker::new((mid_s(r), r.failures_per_s()), 6, colour(1).filled())
            }),
        )
        .map_err(plot_err)?;
    for m in &markers {
        marker_line(&mut chart, m.kind, m.t_ms / 1000.0, 0.0, rate_hi)?;
    }
    let label_style = |kind: MarkerKind| {
        TextStyle::from((FONT, 14).into_font())
            .color(match kind {
                MarkerKind::LeaderChange => &LEADER,
                _ => &FAULT,
            })
            .pos(Pos::new(HPos::Left, VPos::Top))
    };
    // Labels in staggered rows from the top, so that markers close together stay legible.
    for (i, m) in markers.iter().enumerate() {
        let text = if m.label.is_empty() {
            m.kind.as_str().to_string()
        } else {
            m.label.clone()
        };
        let y = rate_hi * (0.98 - 0.07 * (i % 5) as f64);
        chart
            .draw_series(std::iter::once(
                EmptyElement::at((m.t_ms / 1000.0, y))
                    + Text::new(text, (4, 0), label_style(m.kind)),
            ))
            .map_err(plot_err)?;
    }
    if rows.is_empty() {
        chart
            .draw_series(std::iter::once(Text::new(
                "no buckets in this timeline".to_string(),
                ((x_lo + x_hi) / 2.0, rate_hi / 2.0),
                TextStyle::from((FONT, 18).into_font()).pos(Pos::new(HPos::Center, VPos::Center)),
            )))
            .map_err(plot_err)?;
    }

    // Bottom: latency.
    let mut chart = ChartBuilder::on(&bottom)
        .margin(16)
        .margin_top(4)
        .x_label_area_size(56)
        .y_label_area_size(90)
        .build_cartesian_2d(
            x_lo..x_hi,
            (lat_lo..lat_hi)
                .log_scale()
                .with_key_points(log_ticks(lat_lo, lat_hi)),
        )
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("seconds into the measured window")
        .y_desc("latency (log scale)")
        .x_label_formatter(&secs)
        .y_label_formatter(&|y| fmt_latency(*y))
        .label_style((FONT, 16))
        .axis_desc_style((FONT, 18))
        .x_max_light_lines(1)
        .light_line_style(RGBColor(240, 240, 240))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()
        .map_err(plot_err)?;
    chart
        .draw_series(fault_windows.iter().map(|&(a, b)| {
            Rectangle::new(
                [(a, lat_lo), (b, lat_hi)],
                RGBAColor(0, 0, 0, 0.06).filled(),
            )
        }))
        .map_err(plot_err)?;
    let style = colour(2).stroke_width(2);
    for segment in segments(&rows, |r| r.p99_us) {
        chart
            .draw_series(
                segment
                    .iter()
                    .map(|&p| Circle::new(p, 2, colour(2).filled())),
            )
            .map_err(plot_err)?;
        chart
            .draw_series(LineSeries::new(segment, style))
            .map_err(plot_err)?;
    }
    for segment in segments(&rows, |r| r.p50_us) {
        // A dashed line of one point draws nothing.
        if let [p] = segment[..] {
            chart
                .draw_series(std::iter::once(Circle::new(
                    p,
                    2,
                    colour(2).stroke_width(1),
                )))
                .map_err(plot_err)?;
        }
        chart
            .draw_series(DashedLineSeries::new(segment, 6, 4, style))
            .map_err(plot_err)?;
    }
    for m in &markers {
        marker_line(&mut chart, m.kind, m.t_ms / 1000.0, lat_lo, lat_hi)?;
    }

    draw_legend(&legend_area, &legend)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

fn entry(label: &str, style: ShapeStyle, dashed: bool) -> Entry {
    Entry {
        label: label.to_string(),
        style,
        dashed,
    }
}

fn marker_colour(kind: MarkerKind) -> RGBColor {
    match kind {
        MarkerKind::FaultStart | MarkerKind::FaultEnd => FAULT,
        MarkerKind::LeaderChange => LEADER,
    }
}

/// A vertical line at `x` from `y0` to `y1` in the style of `kind`.
fn marker_line<Y>(
    chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<RangedCoordf64, Y>>,
    kind: MarkerKind,
    x: f64,
    y0: f64,
    y1: f64,
) -> Result<()>
where
    Y: Ranged<ValueType = f64>,
{
    let style = marker_colour(kind).stroke_width(2);
    let line = vec![(x, y0), (x, y1)];
    match kind {
        MarkerKind::FaultStart | MarkerKind::FaultEnd => {
            chart.draw_series(LineSeries::new(line, style))
        }
        MarkerKind::LeaderChange => chart.draw_series(DashedLineSeries::new(line, 6, 4, style)),
    }
    .map_err(plot_err)?;
    Ok(())
}

/// Each fault start paired with the first unused fault end at or after it (else `x_end`), in
/// seconds.
fn fault_windows(markers: &[&crate::timeline::Marker], x_end: f64) -> Vec<(f64, f64)> {
    let mut ends: Vec<f64> = markers
        .iter()
        .filter(|m| m.kind == MarkerKind::FaultEnd)
        .map(|m| m.t_ms / 1000.0)
        .collect();
    markers
        .iter()
        .filter(|m| m.kind == MarkerKind::FaultStart)
        .map(|m| {
            let start = m.t_ms / 1000.0;
            let end = match ends.iter().position(|&e| e >= start) {
                Some(i) => ends.remove(i),
                None => x_end,
            };
            (start, end)
        })
        .collect()
}

/// The middle of a bucket (s).
fn mid_s(r: &TimelineRow) -> f64 {
    (r.t_ms as f64 + r.width_ms as f64 / 2.0) / 1000.0
}

/// A step line of `rate` over the buckets (s, per second), at 0 where there is no bucket.
fn steps(rows: &[&TimelineRow], rate: impl Fn(&TimelineRow) -> f64) -> Vec<(f64, f64)> {
    let mut line = Vec::new();
    let mut prev_end: Option<u64> = None;
    for r in rows {
        if let Some(end) = prev_end.filter(|&e| r.t_ms > e) {
            line.push((end as f64 / 1000.0, 0.0));
            line.push((r.t_ms as f64 / 1000.0, 0.0));
        }
        let y = rate(r);
        line.push((r.t_ms as f64 / 1000.0, y));
        line.push((r.end_ms() as f64 / 1000.0, y));
        prev_end = Some(r.end_ms());
    }
    line
}

/// Runs of consecutive buckets that have a `value`, as (middle s, value) points: a line is
/// broken wherever a bucket has none or buckets are missing.
fn segments(
    rows: &[&TimelineRow],
    value: impl Fn(&TimelineRow) -> Option<u64>,
) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    // End of the previous bucket if it had a value.
    let mut prev_end: Option<u64> = None;
    for r in rows {
        let follows = prev_end == Some(r.t_ms);
        // Zero cannot be shown on a log scale; it is as good as none.
        let Some(v) = value(r).filter(|v| *v > 0) else {
            prev_end = None;
            continue;
        };
        prev_end = Some(r.end_ms());
        let point = (mid_s(r), v as f64);
        match out.last_mut() {
            Some(seg) if follows => seg.push(point),
            _ => out.push(vec![point]),
        }
    }
    out
}
