//! How a [`Report`] is shown: a few lines for people, one JSON object for
//! scripts.

use serde_json::json;

use super::types::Report;

/// The latency percentiles every report shows: (label, JSON key, quantile).
pub const PERCENTILES: [(&str, &str, f64); 4] = [
    ("p50", "p50", 0.50),
    ("p90", "p90", 0.90),
    ("p99", "p99", 0.99),
    ("p99.9", "p999", 0.999),
];

/// The report as one JSON object (the contract's fields and more).
pub fn json(report: &Report) -> serde_json::Value {
    let config = &report.config;
    let c = &report.counters;
    // Nothing measured, nothing to say about latency: null, not zeros.
    let latency = (c.messages > 0).then(|| {
        let mut latency = serde_json::Map::new();
        latency.insert("min".into(), json!(report.latency.min()));
        latency.insert(
            "mean".into(),
            json!((report.latency.mean() * 10.0).round() / 10.0),
        );
        for (_, key, q) in PERCENTILES {
            latency.insert(key.into(), json!(report.quantile_us(q)));
        }
        latency.insert("max".into(), json!(report.latency.max()));
        latency
    });
    json!({
        "endpoint": config.endpoint.to_string(),
        "connections": config.connections,
        "connected": c.connected,
        "threads": config.threads,
        "size": config.size,
        "depth": config.depth,
        "warmup_s": config.warmup.as_secs_f64(),
        "duration_s": round3(report.duration.as_secs_f64()),
        "messages": c.messages,
        "bytes": c.messages * config.size as u64,
        "msgs_per_sec": round3(report.msgs_per_sec()),
        "bytes_per_sec": round3(report.bytes_per_sec()),
        "latency_us": latency,
        "errors": c.errors,
        "connect_failures": c.connect_failures,
        "lost": c.lost,
        "late": c.late,
        "first_error": report.first_error,
        "interrupted": report.interrupted,
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The report for people.
pub fn human(report: &Report) -> String {
    let config = &report.config;
    let c = &report.counters;
    let mut text = format!(
        "{}: {} {}{} × {} B, depth {}, {} thread{}; measured {:.2} s{}{}\n",
        config.endpoint,
        config.connections,
        if config.endpoint.kind.is_stream() {
            "connection"
        } else {
            "socket"
        },
        if config.connections == 1 { "" } else { "s" },
        config.size,
        config.depth,
        config.threads,
        if config.threads == 1 { "" } else { "s" },
        report.duration.as_secs_f64(),
        if config.warmup.is_zero() {
            String::new()
        } else {
            format!(" after {:.2} s warm-up", config.warmup.as_secs_f64())
        },
        if report.interrupted {
            " (interrupted)"
        } else {
            ""
        },
    );
    text.push_str(&format!(
        "  messages  {} echoed and verified: {} msgs/s, {}/s\n",
        group(c.messages),
        group(report.msgs_per_sec().round() as u64),
        bytes(report.bytes_per_sec()),
    ));
    if c.messages > 0 {
        let mut line = format!("  latency   min {} µs", group(report.latency.min()));
        for (label, _, q) in PERCENTILES {
            line.push_str(&format!(", {label} {} µs", group(report.quantile_us(q))));
        }
        line.push_str(&format!(", max {} µs\n", group(report.latency.max())));
        text.push_str(&line);
    }
    text.push_str(&format!(
        "  errors    {} (connect failures {}",
        c.errors, c.connect_failures
    ));
    if !config.endpoint.kind.is_stream() {
        text.push_str(&format!(", lost {}, late {}", c.lost, c.late));
    }
    text.push_str(")\n");
    text
}

/// 1234567 → "1,234,567".
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Bytes in decimal units, as network rates are given.
pub fn bytes(n: f64) -> String {
    if n >= 1e9 {
        format!("{:.2} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.2} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} kB", n / 1e3)
    } else {
        format!("{n:.0} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
    }

    #[test]
    fn scales_bytes() {
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(15_800_000.0), "15.80 MB");
        assert_eq!(bytes(1_592_000_000.0), "1.59 GB");
    }
}
