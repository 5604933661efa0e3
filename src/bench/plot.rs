//! `--plot FILE.svg`: latency by percentile, drawn the way HdrHistogram's
//! plotter does (x is `1/(1-p)` on a log scale, so the tail gets room).
//! Written by hand: a polyline and some text do not justify a plotting
//! crate and its compile time.

use std::fmt::Write as _;

use super::report::{bytes, group};
use super::types::Report;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 48.0;
const BOTTOM: f64 = 56.0;
const SAMPLES: usize = 400;

/// Height of the over-time panel, drawn below when the run has intervals.
const TIME_HEIGHT: f64 = 300.0;

/// The SVG document for a report: the percentile curve and, when the run
/// was recorded interval by interval, throughput and p99 over time.
pub fn svg(report: &Report) -> String {
    let mut svg = percentiles(report);
    if report.intervals.len() >= 2 {
        let panel = over_time(report);
        let total = HEIGHT + TIME_HEIGHT;
        svg = svg
            .replacen(
                &format!(r#"height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}""#),
                &format!(r#"height="{total}" viewBox="0 0 {WIDTH} {total}""#),
                1,
            )
            .replace("</svg>\n", &panel);
        svg.push_str("</svg>\n");
    }
    svg
}

/// Throughput (left axis) and p99 (right axis) per interval, below the
/// percentile curve.
fn over_time(report: &Report) -> String {
    let intervals = &report.intervals;
    let top = HEIGHT + 30.0;
    let plot_h = TIME_HEIGHT - 30.0 - BOTTOM;
    let right = RIGHT + 56.0;
    let plot_w = WIDTH - LEFT - right;
    let end = intervals
        .iter()
        .map(|i| (i.offset + i.length).as_secs_f64())
        .fold(0.0, f64::max)
        .max(1e-3);
    let max_rate = intervals
        .iter()
        .map(|i| i.msgs_per_sec())
        .fold(1.0, f64::max);
    let max_p99 = intervals
        .iter()
        .map(|i| i.latency.value_at_quantile(0.99) as f64)
        .fold(1.0, f64::max);
    let (rate_step, p99_step) = (nice_step(max_rate / 4.0), nice_step(max_p99 / 4.0));
    let (rate_top, p99_top) = (
        (max_rate / rate_step).ceil() * rate_step,
        (max_p99 / p99_step).ceil() * p99_step,
    );
    let x_of = |t: f64| LEFT + t / end * plot_w;
    let y_of = |v: f64, top_v: f64| top + plot_h - v / top_v * plot_h;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{:.1}" text-anchor="middle" font-size="14">over time: throughput (blue, msgs/s) and p99 (red, µs) per interval</text>"#,
        WIDTH / 2.0,
        top - 10.0
    );
    // Each axis ticks at whole multiples of its own 1-2-5 step (never a
    // quarter of a rounded top, which gave 37 and 112).
    let ticks =
        |top_v: f64, step: f64| (0..=(top_v / step).round() as u64).map(move |k| k as f64 * step);
    for v in ticks(rate_top, rate_step) {
        let py = y_of(v, rate_top);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#1f77b4">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            py + 4.0,
            group(v as u64),
        );
    }
    for v in ticks(p99_top, p99_step) {
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" fill="#d62728">{}</text>"##,
            LEFT + plot_w + 6.0,
            y_of(v, p99_top) + 4.0,
            group(v as u64),
        );
    }
    let t_step = nice_step_f(end / 4.0);
    let mut t = 0.0;
    while t <= end + t_step * 1e-6 {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="{}">{}</text>"#,
            x_of(t),
            top + plot_h + 16.0,
            if x_of(t) > LEFT + plot_w - 20.0 {
                "end"
            } else {
                "middle"
            },
            trim_number(t),
        );
        t += t_step;
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">seconds into the measured window</text>"#,
        LEFT + plot_w / 2.0,
        top + plot_h + 34.0
    );
    let mut rate = String::new();
    let mut p99 = String::new();
    for i in intervals {
        let mid = (i.offset + i.length / 2).as_secs_f64();
        let _ = write!(
            rate,
            "{:.1},{:.1} ",
            x_of(mid),
            y_of(i.msgs_per_sec(), rate_top)
        );
        let _ = write!(
            p99,
            "{:.1},{:.1} ",
            x_of(mid),
            y_of(i.latency.value_at_quantile(0.99) as f64, p99_top)
        );
    }
    let _ = writeln!(
        svg,
        r##"<polyline class="throughput" fill="none" stroke="#1f77b4" stroke-width="2" points="{}"/>"##,
        rate.trim_end()
    );
    let _ = writeln!(
        svg,
        r##"<polyline class="p99" fill="none" stroke="#d62728" stroke-width="2" points="{}"/>"##,
        p99.trim_end()
    );
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{top:.1}" width="{plot_w:.1}" height="{plot_h:.1}" fill="none" stroke="#888"/>"##
    );
    svg
}

/// The percentile curve.
fn percentiles(report: &Report) -> String {
    let hist = &report.latency;
    // Decades of the x axis: as many nines as the sample count supports.
    let decades = ((hist.len().max(1) as f64).log10().ceil()).clamp(2.0, 6.0);
    let max = hist.max().max(1) as f64;
    let step = nice_step(max / 5.0);
    let y_top = (max / step).ceil() * step;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x_of = |d: f64| LEFT + d / decades * plot_w;
    let y_of = |us: f64| TOP + plot_h - us / y_top * plot_h;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let config = &report.config;
    let title = format!(
        "{} — {} × {} B, {}: {} msgs/s, {}/s",
        config.endpoint,
        config.connections,
        config.size,
        match config.modes.rate {
            Some(rate) => format!("open loop {}/s", group(rate as u64)),
            None => format!("depth {}", config.depth),
        },
        group(report.msgs_per_sec().round() as u64),
        bytes(report.bytes_per_sec())
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="14">{}</text>"#,
        WIDTH / 2.0,
        escape(&title)
    );

    // Grid and axis labels.
    let mut y = 0.0;
    while y <= y_top + step / 2.0 {
        let py = y_of(y);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            py + 4.0,
            group(y as u64)
        );
        y += step;
    }
    for d in 0..=decades as usize {
        let px = x_of(d as f64);
        let label = match d {
            0 => "0%".to_string(),
            1 => "90%".to_string(),
            _ => format!("99.{}%", "9".repeat(d - 2)).replace("99.%", "99%"),
        };
        let _ = writeln!(
            svg,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#ddd"/><text x="{px:.1}" y="{:.1}" text-anchor="{}">{label}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0,
            // The rightmost label ends at the edge instead of past it.
            if d == decades as usize {
                "end"
            } else {
                "middle"
            },
        );
    }
    axis_titles(&mut svg, "percentile", plot_w, plot_h);

    // The curve.
    let mut points = String::new();
    if !hist.is_empty() {
        for i in 0..=SAMPLES {
            let d = decades * i as f64 / SAMPLES as f64;
            let q = if i == SAMPLES {
                1.0
            } else {
                1.0 - 10f64.powf(-d)
            };
            let us = hist.value_at_quantile(q) as f64;
            let _ = write!(points, "{:.1},{:.1} ", x_of(d), y_of(us));
        }
    }
    let _ = writeln!(
        svg,
        r##"<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{}"/>"##,
        points.trim_end()
    );
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888"/>"##
    );
    svg.push_str("</svg>\n");
    svg
}

/// A number without trailing zeros: 0.5, 1, 2.5.
fn trim_number(x: f64) -> String {
    let text = format!("{x:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The 1-2-5 step at or above `raw`, for axes that go below 1.
fn nice_step_f(raw: f64) -> f64 {
    let raw = raw.max(1e-3);
    let magnitude = 10f64.powf(raw.log10().floor());
    for factor in [1.0, 2.0, 5.0, 10.0] {
        if factor * magnitude >= raw * (1.0 - 1e-9) {
            return factor * magnitude;
        }
    }
    10.0 * magnitude
}

/// One step of `--sweep`: the offered rate and its latency.
pub struct SweepPoint {
    /// Messages per second asked.
    pub rate: f64,
    /// p50, p99, p99.9, µs.
    pub latency: [u64; 3],
    /// This step is the knee.
    pub knee: bool,
}

/// `--sweep --plot`: p50, p99 and p99.9 against the offered load, the
/// SLO as a line and the knee marked.
pub fn sweep_svg(title: &str, points: &[SweepPoint], slo_us: f64) -> String {
    let plot_w = WIDTH - LEFT - RIGHT - 30.0;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let max_rate = points.iter().map(|p| p.rate).fold(1.0, f64::max);
    let max_us = points
        .iter()
        .map(|p| p.latency[2] as f64)
        .fold(slo_us, f64::max)
        .max(1.0);
    let (x_step, y_step) = (nice_step(max_rate / 5.0), nice_step(max_us / 5.0));
    let (x_top, y_top) = (
        (max_rate / x_step).ceil() * x_step,
        (max_us / y_step).ceil() * y_step,
    );
    let x_of = |r: f64| LEFT + r / x_top * plot_w;
    let y_of = |us: f64| TOP + plot_h - us / y_top * plot_h;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="14">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    let mut y = 0.0;
    while y <= y_top + y_step / 2.0 {
        let py = y_of(y);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            py + 4.0,
            group(y as u64)
        );
        y += y_step;
    }
    let mut x = 0.0;
    while x <= x_top + x_step / 2.0 {
        let px = x_of(x);
        let _ = writeln!(
            svg,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#eee"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0,
            group(x as u64)
        );
        x += x_step;
    }
    axis_titles(&mut svg, "offered load (msgs/s)", plot_w, plot_h);
    let _ = writeln!(
        svg,
        r##"<line class="slo" x1="{LEFT}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#2ca02c" stroke-dasharray="6 4"/><text x="{1:.1}" y="{2:.1}" text-anchor="end" fill="#2ca02c">SLO {3} µs</text>"##,
        y_of(slo_us),
        LEFT + plot_w,
        y_of(slo_us) - 4.0,
        group(slo_us as u64)
    );
    for (k, (name, color)) in [("p50", "#1f77b4"), ("p99", "#d62728"), ("p99.9", "#9467bd")]
        .into_iter()
        .enumerate()
    {
        let line: Vec<String> = points
            .iter()
            .map(|p| format!("{:.1},{:.1}", x_of(p.rate), y_of(p.latency[k] as f64)))
            .collect();
        let _ = writeln!(
            svg,
            r##"<polyline class="{name}" fill="none" stroke="{color}" stroke-width="2" points="{}"/><text x="{:.1}" y="{:.1}" fill="{color}">{name}</text>"##,
            line.join(" "),
            LEFT + plot_w + 4.0,
            TOP + 14.0 + 16.0 * k as f64,
        );
    }
    if let Some(knee) = points.iter().find(|p| p.knee) {
        let _ = writeln!(
            svg,
            r##"<line class="knee" x1="{0:.1}" y1="{TOP}" x2="{0:.1}" y2="{1:.1}" stroke="#ff7f0e" stroke-width="2"/><text x="{0:.1}" y="{2:.1}" text-anchor="middle" fill="#ff7f0e">knee {3}/s</text>"##,
            x_of(knee.rate),
            TOP + plot_h,
            TOP - 6.0,
            group(knee.rate as u64)
        );
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888"/>"##
    );
    svg.push_str("</svg>\n");
    svg
}

/// The 1-2-5 step at or above `raw`.
fn nice_step(raw: f64) -> f64 {
    let raw = raw.max(1.0);
    let magnitude = 10f64.powf(raw.log10().floor());
    for factor in [1.0, 2.0, 5.0, 10.0] {
        if factor * magnitude >= raw {
            return factor * magnitude;
        }
    }
    10.0 * magnitude
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The two axis titles of a plot: `x_title` under the x axis, latency up
/// the y axis (both plots show latency).
fn axis_titles(svg: &mut String, x_title: &str, plot_w: f64, plot_h: f64) {
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{x_title}</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 12.0
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">latency (µs)</text>"#,
        TOP + plot_h / 2.0
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_one_two_five() {
        assert_eq!(nice_step(0.3), 1.0);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(18.0), 20.0);
        assert_eq!(nice_step(450.0), 500.0);
        assert_eq!(nice_step_f(0.3), 0.5);
        assert_eq!(nice_step_f(1.25), 2.0);
    }
}
