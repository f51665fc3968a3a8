//! PNG plots of how cost grows with size, drawn with `plotters` on its bitmap backend. Text uses
//! DejaVu Sans embedded in the binary (the `dejavu` crate) through plotters' `ab_glyph` feature,
//! so no fontconfig or system font is needed.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::FontStyle;

use super::report_error::ReportError;
use super::table::{Row, Section};

const FAMILY: &str = "sans-serif";

/// Distinct colours that read on white (the "tab10" set); plotters' own palette has yellows.
const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn register_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // A font that fails to parse only costs the labels; the error surfaces when drawing.
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font(FAMILY, FontStyle::Bold, dejavu::sans::bold());
    });
}

/// One line of a plot: a tool's medians at each size.
struct Line {
    tool: String,
    points: Vec<(f64, f64)>,
}

fn lines(rows: &[Row], section: Section) -> Vec<Line> {
    let mut out: Vec<Line> = Vec::new();
    for row in rows.iter().filter(|r| r.section == section) {
        let (Some(x), Some(y)) = (row.x, row.median()) else {
            continue;
        };
        let point = (x / (1024.0 * 1024.0), y);
        match out.iter_mut().find(|l| l.tool == row.tool) {
            Some(line) => line.points.push(point),
            None => out.push(Line {
                tool: row.tool.clone(),
                points: vec![point],
            }),
        }
    }
    for line in &mut out {
        line.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

/// Draw median seconds against size (MiB) for every tool of `section` that has points.
pub fn scaling(
    path: &Path,
    title: &str,
    x_label: &str,
    rows: &[Row],
    section: Section,
) -> Result<(), ReportError> {
    register_fonts();
    let err = |e: &dyn std::fmt::Display| ReportError::Plot {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let lines = lines(rows, section);
    let x_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .fold(1.0_f64, f64::max)
        * 1.05;
    let y_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.01_f64, f64::max)
        * 1.1;

    let root = BitMapBackend::new(path, (1000, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 26))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc("median seconds")
        .label_style((FAMILY, 15))
        .axis_desc_style((FAMILY, 17))
        .draw()
        .map_err(|e| err(&e))?;
    if lines.is_empty() {
        chart
            .draw_series(std::iter::once(Text::new(
                "no measured points in this run (see the table)",
                (x_max * 0.1, y_max * 0.5),
                (FAMILY, 20),
            )))
            .map_err(|e| err(&e))?;
    }
    for (index, line) in lines.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        let style = ShapeStyle::from(&color).stroke_width(3);
        chart
            .draw_series(LineSeries::new(line.points.iter().copied(), style))
            .map_err(|e| err(&e))?
            .label(line.tool.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        chart
            .draw_series(
                line.points
                    .iter()
                    .map(|p| Circle::new(*p, 5, ShapeStyle::from(&color).filled())),
            )
            .map_err(|e| err(&e))?;
    }
    if !lines.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FAMILY, 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::bench::measure::Sample;

    #[test]
    fn a_plot_with_labels_renders_without_system_fonts() {
        let sample = |secs| Sample {
            secs,
            max_rss_kib: 1,
        };
        let mut rows = Vec::new();
        for (size, secs) in [(1.0, 0.5), (50.0, 2.0), (300.0, 9.0)] {
            let mut row =
                Row::from_runs(Section::ColdPull, "img", "scar pull", &[sample(secs)], None);
            row.x = Some(size * 1024.0 * 1024.0);
            rows.push(row);
        }
        let path = std::env::temp_dir().join(format!("scar-bench-plot-{}.png", std::process::id()));
        scaling(&path, "title", "size (MiB)", &rows, Section::ColdPull).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
        assert!(
            bytes.len() > 5_000,
            "suspiciously small plot: {} bytes",
            bytes.len()
        );
        std::fs::remove_file(&path).unwrap();
    }
}
