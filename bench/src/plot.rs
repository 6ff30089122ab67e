//! The PNGs. `report.png`: throughput, p50 and p99 per operation, SKM
//! (gRPC and REST) beside each peer, one column of panels per concurrency.
//! `report-cpu.png`: the servers' and the load generator's CPU time per
//! call, laid out the same way. Horizontal bars on log scales, one colour
//! per system. Text uses DejaVu Sans Mono embedded in the binary (no
//! system fonts needed).

use std::path::Path;

use anyhow::anyhow;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::report::{Report, Row};

static FONT: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");

/// One colour per system, in legend order; more systems reuse them.
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(140, 190, 230),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
];

/// Pixels per bar, and between two operations.
const BAR: usize = 9;
const GAP: usize = 10;
/// Pixels of one panel's width (the first column also holds the names).
const PANEL_WIDTH: usize = 520;

fn fail<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plot: {e:?}")
}

/// Log range covering `values` with some room.
fn span(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.filter(|v| *v > 0.0).fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    // Room on the right for the figure written after the longest bar.
    if hi <= 0.0 { (0.1, 10.0) } else { (lo / 2.0, hi * 3.0) }
}

/// A panel's caption and the figure it plots (`None`: no bar).
type Metric = (&'static str, fn(&Row) -> Option<f64>);

/// What a grid of panels shows: operations top to bottom, systems within
/// each operation, concurrency levels left to right.
struct Layout<'a> {
    rows: Vec<&'a Row>,
    ops: Vec<String>,
    systems: Vec<String>,
    levels: Vec<usize>,
}

impl<'a> Layout<'a> {
    fn of(report: &'a Report) -> Self {
        let rows: Vec<&Row> = report.results.iter().filter(|r| r.status == "ok").collect();
        let (mut ops, mut systems, mut levels) = (Vec::new(), Vec::new(), Vec::new());
        for r in &rows {
            if !ops.contains(&r.op) {
                ops.push(r.op.clone());
            }
            if !systems.contains(&r.system) {
                systems.push(r.system.clone());
            }
            if !levels.contains(&r.concurrency) {
                levels.push(r.concurrency);
            }
        }
        levels.sort_unstable();
        Self { rows, ops, systems, levels }
    }

    /// Units of the y axis per operation: a bar per system and a gap.
    fn per_op(&self) -> i32 {
        self.systems.len().max(1) as i32 + 1
    }

    fn panel_height(&self) -> usize {
        80 + self.ops.len().max(1) * (self.systems.len().max(1) * BAR + GAP)
    }
}

fn label(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// A bar's figure: `12.3k`, `850`, `4.56`, `0.123`.
fn figure(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1}k", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Title, the machine line and the legend, in `top`.
fn heading(
    top: &DrawingArea<BitMapBackend, Shift>,
    report: &Report,
    title: &str,
    systems: &[String],
) -> anyhow::Result<()> {
    let title = format!("{title}{}", if report.smoke { " — SMOKE RUN, figures meaningless" } else { "" });
    top.draw(&Text::new(title, (20, 10), ("sans-serif", 22).into_font().color(&BLACK))).map_err(fail)?;
    let cores = report
        .settings
        .pin_cores
        .as_ref()
        .map_or_else(|| "load generator and servers share the cores".to_owned(), |p| format!("pinned: {}", p.line()));
    let machine = format!(
        "{} — {} s per figure after {} s warm-up — {cores}",
        report.machine.line(),
        report.settings.duration_s,
        report.settings.warmup_s
    );
    top.draw(&Text::new(machine, (20, 40), ("sans-serif", 15).into_font().color(&BLACK))).map_err(fail)?;
    let legend_y = 68;
    let mut x = 20;
    for (i, system) in systems.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        top.draw(&Rectangle::new([(x, legend_y), (x + 24, legend_y + 14)], colour.filled())).map_err(fail)?;
        top.draw(&Text::new(system.clone(), (x + 30, legend_y), ("sans-serif", 16).into_font())).map_err(fail)?;
        x += 40 + 10 * system.len() as i32 + 20;
    }
    Ok(())
}

/// Draws one panel per metric (top to bottom) and concurrency (left to
/// right) into `path`.
fn grid(report: &Report, path: &Path, title: &str, metrics: &[Metric]) -> anyhow::Result<()> {
    plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).map_err(|_| anyhow!("bad font"))?;
    let layout = Layout::of(report);
    let columns = layout.levels.len().max(1);
    let label_width = 170;
    let width = (label_width + PANEL_WIDTH * columns).max(1300) as u32;
    let height = (96 + metrics.len() * layout.panel_height()).clamp(400, 8000) as u32;
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(fail)?;
    let (top, body) = root.split_vertically(96);
    heading(&top, report, title, &layout.systems)?;
    let per_op = layout.per_op();
    let y_max = layout.ops.len().max(1) as i32 * per_op;
    let metric_areas = body.split_evenly((metrics.len().max(1), 1));
    let names = layout.ops.clone();
    let op_label = |v: &i32| {
        let from_top = y_max - *v;
        if from_top >= 0 && from_top % per_op == per_op / 2 {
            names.get((from_top / per_op) as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    for (area, (caption, metric)) in metric_areas.iter().zip(metrics) {
        let (lo, hi) = span(layout.rows.iter().filter_map(|r| metric(r)));
        // The first column also holds the operation names.
        let first_width = (width as usize - PANEL_WIDTH * (columns - 1)) as u32;
        let (first, rest) = area.split_horizontally(first_width);
        let mut columns_areas = vec![first];
        columns_areas.extend(rest.split_evenly((1, columns.saturating_sub(1).max(1))));
        for (n, (column, &level)) in columns_areas.iter().zip(&layout.levels).enumerate() {
            let mut chart = ChartBuilder::on(column)
                .caption(format!("{caption}, {level} in flight"), ("sans-serif", 17))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(if n == 0 { label_width as u32 } else { 4 })
                .build_cartesian_2d((lo..hi).log_scale(), 0..y_max)
                .map_err(fail)?;
            // Only the first column names the operations.
            let no_label = |_: &i32| String::new();
            let y_label: &dyn Fn(&i32) -> String = if n == 0 { &op_label } else { &no_label };
            chart
                .configure_mesh()
                .y_labels(y_max as usize + 1)
                .y_label_formatter(y_label)
                .y_label_style(("sans-serif", 14))
                .x_label_formatter(&|v: &f64| label(*v))
                .x_labels(6)
                .x_label_style(("sans-serif", 13))
                .disable_y_mesh()
                .draw()
                .map_err(fail)?;
            for r in layout.rows.iter().filter(|r| r.concurrency == level) {
                let (Some(i), Some(j), Some(value)) = (
                    layout.ops.iter().position(|o| *o == r.op),
                    layout.systems.iter().position(|s| *s == r.system),
                    metric(r),
                ) else {
                    continue;
                };
                // Top to bottom in report order, systems in legend order.
                let unit = y_max - (i as i32) * per_op - 1 - j as i32;
                let colour = COLOURS[j % COLOURS.len()];
                let mut bar = Rectangle::new([(lo, unit), (value.max(lo), unit + 1)], colour.filled());
                bar.set_margin(1, 1, 0, 0);
                chart.plotting_area().draw(&bar).map_err(fail)?;
                // The figure itself after the bar: log axes are hard to read off.
                let figure = Text::new(format!(" {}", figure(value)), (value.max(lo), unit + 1), ("sans-serif", 11));
                chart.plotting_area().draw(&figure).map_err(fail)?;
            }
        }
    }
    root.present().map_err(fail)?;
    Ok(())
}

/// Draws report.png: throughput and latency of every system.
pub(crate) fn draw(report: &Report, path: &Path) -> anyhow::Result<()> {
    let metrics: [Metric; 3] = [
        ("ops/s (log)", |r| Some(r.throughput)),
        ("p50 ms (log)", |r| Some(r.p50_us / 1e3)),
        ("p99 ms (log)", |r| Some(r.p99_us / 1e3)),
    ];
    grid(
        report,
        path,
        "SKM (mTLS, keystore policy, every call audited) beside its peers (plain HTTP, no audit)",
        &metrics,
    )
}

/// Draws report-cpu.png: CPU time per call of the servers and of the load
/// generator.
pub(crate) fn draw_cpu(report: &Report, path: &Path) -> anyhow::Result<()> {
    let metrics: [Metric; 2] = [
        ("server CPU µs/call (log)", |r| r.cpu.server_cpu_us_per_call),
        ("load generator CPU µs/call (log)", |r| r.cpu.client_cpu_us_per_call),
    ];
    grid(report, path, "CPU time per call, read from /proc (SKM: kms-api + root-keyd + system-keyd)", &metrics)
}
