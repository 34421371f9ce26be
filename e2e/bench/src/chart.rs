//! The converge-time chart (SVG, plotters). The SVG backend writes `<text>` elements, so no
//! font files are needed.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

use crate::stats::Summary;

/// One line of the chart: a contender's summaries by N.
pub struct Series<'a> {
    /// Legend label.
    pub label: &'a str,
    /// (N, summary of seconds).
    pub points: Vec<(f64, Summary)>,
}

/// Draws median converge time against N, with min–max bars, one line per contender.
pub fn converge_chart(path: &Path, title: &str, series: &[Series<'_>]) -> anyhow::Result<()> {
    let colors = [
        RGBColor(0x1f, 0x77, 0xb4),
        RGBColor(0xd6, 0x27, 0x28),
        RGBColor(0x2c, 0xa0, 0x2c),
    ];
    let xmax = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0f64, f64::max)
        * 1.08;
    let ymax = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1.max))
        .fold(0.1f64, f64::max)
        * 1.12;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    let e = |e: DrawingAreaErrorKind<std::io::Error>| anyhow!("draw {}: {e:?}", path.display());
    root.fill(&WHITE).map_err(e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(18)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..xmax, 0f64..ymax)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("containers (N)")
        .y_desc("seconds (median; bars: min to max)")
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(e)?;
    for (i, s) in series.iter().enumerate() {
        let color = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(
                s.points.iter().map(|(n, m)| (*n, m.median)),
                color.stroke_width(2),
            ))
            .map_err(e)?
            .label(s.label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
            });
        chart
            .draw_series(
                s.points
                    .iter()
                    .map(|(n, m)| Circle::new((*n, m.median), 4, color.filled())),
            )
            .map_err(e)?;
        // Bars nudged sideways per contender so that they do not hide each other.
        let dx = (i as f64 - 1.0) * xmax * 0.006;
        chart
            .draw_series(s.points.iter().map(|(n, m)| {
                ErrorBar::new_vertical(*n + dx, m.min, m.median, m.max, color.stroke_width(1), 10)
            }))
            .map_err(e)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_renders_text_without_fonts() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("c.svg");
        let s = |m: f64| Summary {
            n: 3,
            min: m * 0.9,
            median: m,
            p95: m * 1.1,
            max: m * 1.1,
        };
        converge_chart(
            &p,
            "test",
            &[Series {
                label: "berth apply",
                points: vec![(10.0, s(0.5)), (50.0, s(2.0))],
            }],
        )?;
        let svg = std::fs::read_to_string(&p)?;
        assert!(
            svg.contains("<text") && svg.contains("berth apply") && svg.contains("containers (N)")
        );
        Ok(())
    }
}
