//! The two SVG plots: throughput against concurrency (ceiling, minimal
//! pair, ours, reference; and ours per connection strategy), and wake-up
//! latency (against the number of waiters on one
//! transition, and its distribution with many sandboxes in flight).

use std::path::Path as FsPath;

use plotters::prelude::*;

use crate::conns::Strategy;
use crate::report::{Point, Results};
use crate::result::Result;
use crate::side::Side;
use crate::stats::ms;
use crate::wakeup::Path;

const LIMIT: RGBColor = RGBColor(120, 120, 120);
const OURS: RGBColor = RGBColor(0, 114, 178);
const BASELINE: RGBColor = RGBColor(213, 94, 0);
const POLL: RGBColor = RGBColor(0, 158, 115);
const MINIMAL: RGBColor = RGBColor(204, 121, 167);

fn err(e: impl std::fmt::Display) -> crate::result::BoxError {
    format!("plot: {e}").into()
}

/// Left: throughput (transitions/s) of the four sides against concurrency
/// on the library's default connection. Right: ours on each connection
/// strategy. Log-scaled x.
pub fn throughput(results: &Results, file: &FsPath) -> Result<()> {
    let default: Vec<&Point> = results
        .points
        .iter()
        .filter(|p| p.strategy == Strategy::DEFAULT)
        .collect();
    if default.is_empty() {
        return Ok(());
    }
    let max_c = results
        .points
        .iter()
        .map(|p| p.concurrency)
        .max()
        .unwrap_or(1) as f64;
    let max_y = results
        .points
        .iter()
        .flat_map(|p| Side::ALL.map(|s| p.rate(s)))
        .fold(0.0, f64::max)
        * 1.15;
    let root = SVGBackend::new(file, (1200, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (left, right) = root.split_horizontally(600);

    let mut chart = ChartBuilder::on(&left)
        .caption(
            format!(
                "Transitions/s vs concurrency, {}",
                Strategy::DEFAULT.label(1)
            ),
            ("sans-serif", 20),
        )
        .margin(14)
        .x_label_area_size(48)
        .y_label_area_size(70)
        .build_cartesian_2d((0.8f64..max_c * 1.25).log_scale(), 0f64..max_y)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("concurrency (tasks)")
        .y_desc("transitions / s")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{:.0}k", y / 1000.0))
        .draw()
        .map_err(err)?;
    let series: [(&str, RGBColor, Side); 4] = [
        ("ceiling: ½ × raw EVALSHA return 1/s", LIMIT, Side::Ceiling),
        ("minimal begin/finish pair (floor)", MINIMAL, Side::Minimal),
        ("ours (sandbox-coordinator)", OURS, Side::Ours),
        ("reference lock protocol", BASELINE, Side::Reference),
    ];
    for (label, color, side) in series {
        let data: Vec<(f64, f64)> = default
            .iter()
            .map(|p| (p.concurrency as f64, p.rate(side)))
            .collect();
        line(&mut chart, data, label.to_string(), color)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(err)?;

    // Its own scale: ours only (next to the ceiling its lines are flat).
    let max_ours = results
        .points
        .iter()
        .map(|p| p.rate(Side::Ours))
        .fold(0.0, f64::max)
        * 1.3;
    let mut chart = ChartBuilder::on(&right)
        .caption("Ours by connection strategy", ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(48)
        .y_label_area_size(70)
        .build_cartesian_2d((0.8f64..max_c * 1.25).log_scale(), 0f64..max_ours)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("concurrency (tasks)")
        .y_desc("transitions / s")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{:.0}k", y / 1000.0))
        .draw()
        .map_err(err)?;
    let mut strategies: Vec<Strategy> = Vec::new();
    for p in &results.points {
        if !strategies.contains(&p.strategy) {
            strategies.push(p.strategy);
        }
    }
    let colors = [OURS, MINIMAL, BASELINE, POLL, LIMIT];
    for (i, strategy) in strategies.into_iter().enumerate() {
        // At concurrency 1 only the default is measured; every strategy's
        // line starts from it.
        let data: Vec<(f64, f64)> = results
            .points
            .iter()
            .filter(|p| {
                p.strategy == strategy || (p.concurrency == 1 && p.strategy == Strategy::DEFAULT)
            })
            .map(|p| (p.concurrency as f64, p.rate(Side::Ours)))
            .collect();
        let label = match strategy {
            Strategy::Pooled => "Pooled(c)".to_string(),
            s => s.label(1),
        };
        line(&mut chart, data, label, colors[i % colors.len()])?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<
        plotters::coord::combinators::LogCoord<f64>,
        plotters::coord::types::RangedCoordf64,
    >,
>;

/// One labelled line with its points and values.
fn line(
    chart: &mut Chart<'_, '_>,
    data: Vec<(f64, f64)>,
    label: String,
    color: RGBColor,
) -> Result<()> {
    chart
        .draw_series(LineSeries::new(data.clone(), color.stroke_width(3)))
        .map_err(err)?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3)));
    chart
        .draw_series(
            data.iter()
                .map(|&(x, y)| Circle::new((x, y), 4, color.filled())),
        )
        .map_err(err)?;
    chart
        .draw_series(data.iter().map(|&(x, y)| {
            Text::new(
                format!("{:.1}k", y / 1000.0),
                (x, y),
                ("sans-serif", 12).into_font().color(&color),
            )
        }))
        .map_err(err)?;
    Ok(())
}

/// Left: p50/p99/max wake-up against K waiters on one transition. Right:
/// the distribution (CDF) with many sandboxes in flight, pub/sub vs poll.
pub fn wakeup(results: &Results, file: &FsPath) -> Result<()> {
    if results.wake.is_empty() {
        return Ok(());
    }
    let floor = 0.01; // ms: zero (woke before succeed returned) plots here
    let root = SVGBackend::new(file, (1100, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (left, right) = root.split_horizontally(540);

    let on_one: Vec<_> = results.wake.iter().filter(|c| !c.many).collect();
    let max_ms = results
        .wake
        .iter()
        .map(|c| ms(c.summary().max))
        .fold(floor, f64::max)
        * 2.0;
    let max_k = on_one.iter().map(|c| c.per_transition).max().unwrap_or(1) as f64;
    let mut chart = ChartBuilder::on(&left)
        .caption("Wake-up vs waiters on one transition", ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (0.8f64..max_k * 1.5).log_scale(),
            (floor..max_ms).log_scale(),
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("waiters joined on one transition (K)")
        .y_desc("ms after succeed returned")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y}"))
        .draw()
        .map_err(err)?;
    for (path, color) in [(Path::PubSub, OURS), (Path::PollOnly, POLL)] {
        let mut cases: Vec<_> = on_one.iter().filter(|c| c.path == path).collect();
        cases.sort_by_key(|c| c.per_transition);
        if cases.is_empty() {
            continue;
        }
        for (q, dash) in [("p50", 1u32), ("p99", 2), ("max", 3)] {
            let data: Vec<(f64, f64)> = cases
                .iter()
                .map(|c| {
                    let s = c.summary();
                    let v = match q {
                        "p50" => s.p50,
                        "p99" => s.p99,
                        _ => s.max,
                    };
                    (c.per_transition as f64, ms(v).max(floor))
                })
                .collect();
            let style = color
                .mix(1.0 - 0.25 * (dash - 1) as f64)
                .stroke_width(4 - dash);
            chart
                .draw_series(LineSeries::new(data.clone(), style))
                .map_err(err)?
                .label(format!("{path} {q}"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            chart
                .draw_series(data.iter().map(|&p| Circle::new(p, 4, color.filled())))
                .map_err(err)?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(err)?;

    let many: Vec<_> = results.wake.iter().filter(|c| c.many).collect();
    let title = many
        .first()
        .map(|c| format!("CDF: {}", c.scenario))
        .unwrap_or_else(|| "CDF".into());
    let mut chart = ChartBuilder::on(&right)
        .caption(title, ("sans-serif", 18))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d((floor..max_ms).log_scale(), 0f64..1.0)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("ms after succeed returned (log)")
        .y_desc("fraction of waiters woken")
        .x_label_formatter(&|x| format!("{x}"))
        .draw()
        .map_err(err)?;
    for c in many {
        let color = if c.path == Path::PubSub { OURS } else { POLL };
        let mut v: Vec<f64> = c.latencies.iter().map(|d| ms(*d).max(floor)).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len().max(1) as f64;
        let data: Vec<(f64, f64)> = v
            .iter()
            .enumerate()
            .map(|(i, &x)| (x, (i + 1) as f64 / n))
            .collect();
        chart
            .draw_series(LineSeries::new(data, color.stroke_width(3)))
            .map_err(err)?
            .label(format!("{}", c.path))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
    }
    chart
        .draw_series(LineSeries::new(
            vec![(2.0, 0.0), (2.0, 1.0)],
            RED.mix(0.6).stroke_width(1),
        ))
        .map_err(err)?
        .label("2 ms target (p99)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.mix(0.6)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
