//! Draws `docs/verify-cost.png` from the criterion estimates of the peer benchmark:
//! time per verify against body size, log-log, one line per case.
//!
//! `cargo bench --manifest-path benches/peers/Cargo.toml` first, then
//! `cargo run --release --manifest-path benches/peers/Cargo.toml --bin chart`.
//! Optional arguments: the criterion directory and the output path.

use std::error::Error;
use std::path::{Path, PathBuf};

use mapping_webhooks_peers::CASES;
use mapping_webhooks_peers::support::SIZES;
use plotters::prelude::*;
use plotters::style::FontStyle;

/// A font with the glyphs the labels need; `CHART_FONT` overrides it.
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// The median time of one case at one size, in nanoseconds.
fn median_ns(criterion: &Path, case: &str, size: usize) -> Result<f64, Box<dyn Error>> {
    let path = criterion
        .join("peers")
        .join(case)
        .join(size.to_string())
        .join("new/estimates.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let estimates: serde_json::Value = serde_json::from_str(&text)?;
    estimates["median"]["point_estimate"]
        .as_f64()
        .ok_or_else(|| format!("{}: no median", path.display()).into())
}

fn label(case: &str) -> &'static str {
    match case {
        "floor" => "floor: one pre-keyed HMAC-SHA256",
        "signature" => "mapping-webhooks verify_signature",
        "full" => "mapping-webhooks verify (+ eventId)",
        "naive" => "naive: re-key, format!, hex strings",
        _ => "svix Webhook::verify",
    }
}

fn colour(case: &str) -> RGBColor {
    match case {
        "floor" => RGBColor(90, 90, 90),
        "signature" => RGBColor(80, 160, 230),
        "full" => RGBColor(20, 80, 180),
        "naive" => RGBColor(230, 140, 20),
        _ => RGBColor(200, 40, 40),
    }
}

fn size_label(bytes: f64) -> String {
    match bytes {
        b if b >= 1024.0 * 1024.0 => format!("{:.0} MiB", b / (1024.0 * 1024.0)),
        b if b >= 1024.0 => format!("{:.0} KiB", b / 1024.0),
        b => format!("{b:.0} B"),
    }
}

fn time_label(ns: f64) -> String {
    match ns {
        v if v >= 1e6 => format!("{:.0} ms", v / 1e6),
        v if v >= 1e3 => format!("{:.0} µs", v / 1e3),
        v => format!("{v:.0} ns"),
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut args = std::env::args().skip(1);
    let criterion = args
        .next()
        .map_or_else(|| here.join("target/criterion"), PathBuf::from);
    let output = args
        .next()
        .map_or_else(|| here.join("../../docs/verify-cost.png"), PathBuf::from);

    let font = std::env::var("CHART_FONT").unwrap_or_else(|_| FONT.to_string());
    let bytes: &'static [u8] = Vec::leak(std::fs::read(&font).map_err(|e| format!("{font}: {e}"))?);
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| format!("{font}: not a usable font"))?;

    let mut series = Vec::new();
    for case in CASES {
        let points = SIZES
            .iter()
            .map(|&size| {
                let ns = median_ns(&criterion, case.name(), size)?;
                Ok(((size as f64).log2(), ns))
            })
            .collect::<Result<Vec<_>, Box<dyn Error>>>()?;
        series.push((case.name(), points));
    }

    if let Some(dir) = output.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let root = BitMapBackend::new(&output, (1000, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Time per webhook verification by body size (log-log, lower is better)",
            ("sans-serif", 24),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80)
        // x is log2 of the size, so the ticks fall on powers of two (1 KiB, 4 KiB...).
        .build_cartesian_2d(7.8f64..20.6f64, (100f64..1e7f64).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("body size (criterion medians; floor = one HMAC-SHA256 pass with SHA extensions)")
        .y_desc("time per request")
        .x_labels(7)
        .x_label_formatter(&|v| size_label(v.exp2()))
        .y_label_formatter(&|v| time_label(*v))
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    for (case, points) in &series {
        let colour = colour(case);
        let width = if *case == "full" { 4 } else { 2 };
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                colour.stroke_width(width),
            ))?
            .label(label(case))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(width))
            });
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, colour.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(200, 200, 200))
        .label_font(("sans-serif", 16))
        .draw()?;
    root.present()?;
    println!("wrote {}", output.canonicalize()?.display());
    for (case, points) in &series {
        let row: Vec<String> = points.iter().map(|(_, ns)| format!("{ns:.0} ns")).collect();
        println!("{case:>10}: {}", row.join("  "));
    }
    Ok(())
}
