//! The PNG: SKM's throughput, p50 and p99 per operation and concurrency,
//! as horizontal bars on log scales. Text uses DejaVu Sans Mono embedded
//! in the binary (no system fonts needed).

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::report::{Report, Row};

static FONT: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");

const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn fail<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plot: {e:?}")
}

/// Log range covering `values` with some room.
fn span(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.filter(|v| *v > 0.0).fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if hi <= 0.0 { (0.1, 10.0) } else { (lo / 2.0, hi * 2.0) }
}

/// Draws report.png for the SKM rows of `report`.
pub(crate) fn draw(report: &Report, path: &Path) -> anyhow::Result<()> {
    plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).map_err(|_| anyhow!("bad font"))?;
    let rows: Vec<&Row> = report.rows("skm").filter(|r| r.status == "ok").collect();
    let mut ops: Vec<String> = Vec::new();
    let mut levels: Vec<usize> = Vec::new();
    for r in &rows {
        if !ops.contains(&r.op) {
            ops.push(r.op.clone());
        }
        if !levels.contains(&r.concurrency) {
            levels.push(r.concurrency);
        }
    }
    levels.sort_unstable();
    // Each operation takes 2 units per concurrency level plus 1 of gap;
    // its label sits at its centre.
    let per_op = 2 * levels.len() as i32 + 1;
    let n = ops.len().max(1) as i32;
    let height = (140 + 26 * levels.len().max(1) * ops.len().max(1)).clamp(400, 4000) as u32;
    let root = BitMapBackend::new(path, (1800, height)).into_drawing_area();
    root.fill(&WHITE).map_err(fail)?;
    let (top, body) = root.split_vertically(96);
    let title = format!(
        "SKM over the user port (mTLS, keystore policy, every call audited){}",
        if report.smoke { " — SMOKE RUN, figures meaningless" } else { "" }
    );
    top.draw(&Text::new(title, (20, 10), ("sans-serif", 22).into_font().color(&BLACK))).map_err(fail)?;
    let machine = format!(
        "{} — {} s per figure after {} s warm-up",
        report.machine.line(),
        report.settings.duration_s,
        report.settings.warmup_s
    );
    top.draw(&Text::new(machine, (20, 40), ("sans-serif", 15).into_font().color(&BLACK))).map_err(fail)?;
    let legend_y = 68;
    let mut x = 20;
    top.draw(&Text::new("requests in flight:", (x, legend_y), ("sans-serif", 16).into_font())).map_err(fail)?;
    x += 210;
    for (i, c) in levels.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        top.draw(&Rectangle::new([(x, legend_y), (x + 24, legend_y + 14)], colour.filled())).map_err(fail)?;
        top.draw(&Text::new(c.to_string(), (x + 30, legend_y), ("sans-serif", 16).into_font())).map_err(fail)?;
        x += 90;
    }
    let panels = body.split_evenly((1, 3));
    type Metric = (&'static str, fn(&Row) -> f64);
    let metrics: [Metric; 3] = [
        ("throughput, ops/s (log)", |r| r.throughput),
        ("p50 latency, ms (log)", |r| r.p50_us / 1e3),
        ("p99 latency, ms (log)", |r| r.p99_us / 1e3),
    ];
    for (panel, (caption, metric)) in panels.iter().zip(metrics) {
        let (lo, hi) = span(rows.iter().map(|r| metric(r)));
        let y_max = n * per_op;
        let mut chart = ChartBuilder::on(panel)
            .caption(caption, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(150)
            .build_cartesian_2d((lo..hi).log_scale(), 0..y_max)
            .map_err(fail)?;
        let centre = levels.len() as i32;
        let names = ops.clone();
        chart
            .configure_mesh()
            .y_labels(y_max as usize + 1)
            .y_label_formatter(&|v: &i32| {
                let from_top = y_max - *v;
                if from_top >= 0 && from_top % per_op == centre {
                    names.get((from_top / per_op) as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .x_label_formatter(&|v: &f64| {
                if *v >= 1000.0 {
                    format!("{:.0}k", v / 1000.0)
                } else if *v >= 1.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.2}")
                }
            })
            .x_labels(6)
            .y_label_style(("sans-serif", 14))
            .x_label_style(("sans-serif", 14))
            .disable_y_mesh()
            .draw()
            .map_err(fail)?;
        for r in &rows {
            let (Some(i), Some(j)) =
                (ops.iter().position(|o| *o == r.op), levels.iter().position(|c| *c == r.concurrency))
            else {
                continue;
            };
            // Top to bottom in report order.
            let top_unit = y_max - (i as i32) * per_op - 1 - 2 * j as i32;
            let colour = COLOURS[j % COLOURS.len()];
            let value = metric(r).max(lo);
            let mut bar = Rectangle::new([(lo, top_unit - 1), (value, top_unit + 1)], colour.filled());
            bar.set_margin(1, 1, 0, 0);
            chart.plotting_area().draw(&bar).map_err(fail)?;
        }
    }
    root.present().map_err(fail)?;
    Ok(())
}
