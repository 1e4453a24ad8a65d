//! The storm's chart: upstream calls per simulated minute by strategy, the
//! outage and the slow spell shaded (an SVG drawn with plotters).

use plotters::prelude::*;

use crate::storm::{OUTAGE, Report, SLOW};

const COLORS: [RGBColor; 5] = [
    RGBColor(214, 39, 40),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
];

/// Writes the chart of `report` to `path`.
pub(crate) fn write(
    path: &str,
    report: &Report,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    draw(path, report).map_err(|e| format!("drawing {path}: {e}").into())
}

fn draw(path: &str, report: &Report) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let minutes = report
        .summaries
        .iter()
        .map(|s| s.calls_per_minute.len())
        .max()
        .unwrap_or(60)
        .min(60) as u32;
    let top = report
        .summaries
        .iter()
        .flat_map(|s| s.calls_per_minute.iter().copied())
        .max()
        .unwrap_or(1)
        .max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "userinfo storm: upstream calls per minute",
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0u32..minutes, 0u64..top + top / 10)?;
    chart
        .configure_mesh()
        .x_desc("simulated minute")
        .y_desc("upstream calls")
        .draw()?;
    for ((from, to), label, color) in [
        (OUTAGE, "IdP down (503)", RGBColor(255, 200, 200)),
        (SLOW, "IdP slow (2 s)", RGBColor(255, 235, 170)),
    ] {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(from as u32, 0), (to as u32, top + top / 10)],
                color.mix(0.6).filled(),
            )))?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled()));
    }
    for (s, color) in report.summaries.iter().zip(COLORS.iter().cycle()) {
        let color = *color;
        let points = s
            .calls_per_minute
            .iter()
            .take(minutes as usize)
            .enumerate()
            .map(|(m, n)| (m as u32, *n));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(s.strategy.name())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}
