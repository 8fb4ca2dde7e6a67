//! The run's plots, drawn in Rust with plotters' SVG backend (text as SVG `<text>`, so no font
//! files are needed): `resources.svg` (RSS and CPU over time), `rates.svg` (records in, out of each
//! sink, drops), `latency.svg` (percentiles over time per browser class, venue → engine p99, the
//! /health probe) and `latency_distribution.svg` (the measured phases' percentile spectrum).
//! Phase starts are grey vertical lines.

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

use super::report::RunRecord;

type Points = Vec<(f64, f64)>;

const SIZE: (u32, u32) = (1100, 820);

fn color(index: usize) -> RGBColor {
    const COLORS: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(255, 127, 14),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(23, 190, 207),
    ];
    COLORS[index % COLORS.len()]
}

/// One chart of lines over time in `area`.
fn line_chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    unit: &str,
    lines: &[(String, Points)],
    x_max: f64,
    phase_starts: &[(String, f64)],
) -> Result<(), String> {
    let y_max = lines
        .iter()
        .flat_map(|(_, points)| points.iter().map(|point| point.1))
        .fold(0.0f64, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
    let x_max = x_max.max(1.0);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(|error| error.to_string())?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc(unit)
        .draw()
        .map_err(|error| error.to_string())?;
    for (name, start) in phase_starts {
        let grey = RGBColor(170, 170, 170);
        chart
            .draw_series(LineSeries::new([(*start, 0.0), (*start, y_max)], grey))
            .map_err(|error| error.to_string())?;
        chart
            .draw_series(std::iter::once(Text::new(
                name.clone(),
                (*start, y_max * 0.97),
                ("sans-serif", 12).into_font().color(&grey),
            )))
            .map_err(|error| error.to_string())?;
    }
    for (index, (label, points)) in lines.iter().enumerate() {
        let stroke = color(index);
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                stroke.stroke_width(2),
            ))
            .map_err(|error| error.to_string())?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], stroke));
    }
    if !lines.is_empty() {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|error| error.to_string())?;
    }
    Ok(())
}

/// Like `line_chart`, with a logarithmic y axis (latencies span from milliseconds to seconds;
/// a slow class must not flatten the fast one). Values are clamped to the axis' floor.
fn log_line_chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    x_desc: &str,
    title: &str,
    unit: &str,
    lines: &[(String, Points)],
    x_max: f64,
    phase_starts: &[(String, f64)],
) -> Result<(), String> {
    let values = || {
        lines
            .iter()
            .flat_map(|(_, points)| points.iter().map(|point| point.1))
    };
    let y_max = values().fold(0.0f64, f64::max).max(1.0) * 1.5;
    let y_min = values()
        .filter(|value| *value > 0.0)
        .fold(f64::INFINITY, f64::min)
        .min(y_max / 10.0)
        .max(0.001)
        * 0.8;
    let x_max = x_max.max(1.0);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, (y_min..y_max).log_scale())
        .map_err(|error| error.to_string())?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(format!("{unit} (log)"))
        .draw()
        .map_err(|error| error.to_string())?;
    let grey = RGBColor(170, 170, 170);
    for (name, start) in phase_starts {
        chart
            .draw_series(LineSeries::new([(*start, y_min), (*start, y_max)], grey))
            .map_err(|error| error.to_string())?;
        chart
            .draw_series(std::iter::once(Text::new(
                name.clone(),
                (*start, y_max / 1.3),
                ("sans-serif", 12).into_font().color(&grey),
            )))
            .map_err(|error| error.to_string())?;
    }
    for (index, (label, points)) in lines.iter().enumerate() {
        let stroke = color(index);
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|(x, y)| (*x, y.max(y_min))),
                stroke.stroke_width(2),
            ))
            .map_err(|error| error.to_string())?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], stroke));
    }
    if !lines.is_empty() {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|error| error.to_string())?;
    }
    Ok(())
}

fn series_lines(
    record: &RunRecord,
    pick: impl Fn(&str) -> Option<String>,
) -> Vec<(String, Points)> {
    record
        .series
        .iter()
        .filter_map(|(name, series)| pick(name).map(|label| (label, series.all_points())))
        .collect()
}

/// Draws every plot into `dir`; returns the file names.
pub fn draw_all(record: &RunRecord, dir: &Path) -> Result<Vec<String>, String> {
    let x_max = record
        .series
        .values()
        .filter_map(|series| series.all_points().last().map(|point| point.0))
        .fold(record.duration_s, f64::max);
    let phase_starts: Vec<(String, f64)> = record
        .phases
        .iter()
        .map(|phase| (phase.name.clone(), phase.start_s))
        .collect();
    let mut names = Vec::new();

    let name = "resources.svg";
    {
        let path = dir.join(name);
        let root = SVGBackend::new(&path, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|error| error.to_string())?;
        let (top, bottom) = root.split_vertically(SIZE.1 / 2);
        let rss = series_lines(record, |name| (name == "rss_mib").then(|| "RSS".to_owned()));
        line_chart(&top, "engine RSS", "MiB", &rss, x_max, &phase_starts)?;
        let cpu = series_lines(record, |name| {
            if name == "cpu_pct" {
                Some("process".to_owned())
            } else if name == "harness_cpu_pct" {
                Some("harness (not the engine)".to_owned())
            } else {
                name.strip_prefix("cpu_pct.").map(str::to_owned)
            }
        });
        line_chart(
            &bottom,
            "engine CPU (process and thread groups)",
            "% of one core",
            &cpu,
            x_max,
            &phase_starts,
        )?;
        root.present().map_err(|error| error.to_string())?;
    }
    names.push(name.to_owned());

    let name = "rates.svg";
    {
        let path = dir.join(name);
        let root = SVGBackend::new(&path, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|error| error.to_string())?;
        let (top, bottom) = root.split_vertically(SIZE.1 / 2);
        let rates = series_lines(record, |name| match name {
            "records_in_per_s" => Some("records in".to_owned()),
            _ => name
                .strip_prefix("sink.")
                .and_then(|rest| rest.strip_suffix(".out_per_s"))
                .map(|sink| format!("{sink} out")),
        });
        line_chart(
            &top,
            "records per second",
            "records/s",
            &rates,
            x_max,
            &phase_starts,
        )?;
        let losses = series_lines(record, |name| match name {
            "ring_drops_per_s" => Some("ring drops".to_owned()),
            "reconnects_per_s" => Some("reconnects".to_owned()),
            _ => name
                .strip_prefix("sink.")
                .and_then(|rest| rest.strip_suffix(".lost_per_s"))
                .map(|sink| format!("{sink} lost")),
        });
        line_chart(
            &bottom,
            "drops, sink losses and reconnects per second",
            "1/s",
            &losses,
            x_max,
            &phase_starts,
        )?;
        root.present().map_err(|error| error.to_string())?;
    }
    names.push(name.to_owned());

    let name = "latency.svg";
    {
        let path = dir.join(name);
        let root = SVGBackend::new(&path, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|error| error.to_string())?;
        let (top, bottom) = root.split_vertically(SIZE.1 / 2);
        let browsers = series_lines(record, |name| {
            name.strip_prefix("latency.")
                .filter(|rest| !rest.ends_with("max_ms"))
                .map(|rest| rest.trim_end_matches("_ms").replace('.', " "))
        });
        log_line_chart(
            &top,
            "seconds",
            "venue → browser latency per second (browser classes)",
            "ms",
            &browsers,
            x_max,
            &phase_starts,
        )?;
        let engine = series_lines(record, |name| match name {
            "venue_to_engine_p99_ms" => Some("venue → engine p99 (≤)".to_owned()),
            "health_ms" => Some("/health response".to_owned()),
            _ => None,
        });
        log_line_chart(
            &bottom,
            "seconds",
            "venue → engine p99 and /health response time",
            "ms",
            &engine,
            x_max,
            &phase_starts,
        )?;
        root.present().map_err(|error| error.to_string())?;
    }
    names.push(name.to_owned());

    let name = "latency_distribution.svg";
    {
        let path = dir.join(name);
        let root = SVGBackend::new(&path, (SIZE.0, SIZE.1 / 2 + 60)).into_drawing_area();
        root.fill(&WHITE).map_err(|error| error.to_string())?;
        let mut histograms: Vec<(String, &Histogram<u64>)> = record
            .browsers
            .iter()
            .filter(|browser| !browser.latency_measured.is_empty())
            .map(|browser| {
                (
                    format!("{} browsers", browser.class),
                    &browser.latency_measured,
                )
            })
            .collect();
        if !record.measured_health_latency.is_empty() {
            histograms.push((
                "/health (CO-corrected)".to_owned(),
                &record.measured_health_latency,
            ));
        }
        let lines: Vec<(String, Points)> = histograms
            .into_iter()
            .map(|(label, histogram)| (label, spectrum(histogram)))
            .collect();
        let x_max = lines
            .iter()
            .flat_map(|(_, points)| points.iter().map(|point| point.0))
            .fold(3.0f64, f64::max);
        log_line_chart(
            &root,
            "nines: −log10(1 − quantile)",
            "latency by percentile, measured phases (x: nines, 1 = p90, 2 = p99, 3 = p99.9)",
            "ms",
            &lines,
            x_max,
            &[],
        )?;
        root.present().map_err(|error| error.to_string())?;
    }
    names.push(name.to_owned());
    Ok(names)
}

/// (nines, ms) points: x = −log10(1 − q).
fn spectrum(histogram: &Histogram<u64>) -> Points {
    let mut points = Vec::new();
    for step in 0..=50 {
        let nines = step as f64 * 0.1;
        let quantile = 1.0 - 10f64.powf(-nines);
        points.push((nines, histogram.value_at_quantile(quantile) as f64 / 1e3));
        if quantile * histogram.len() as f64 >= histogram.len() as f64 - 1.0 {
            break;
        }
    }
    points
}
