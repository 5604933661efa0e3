//! How a [`Report`] is shown: a few lines for people, one JSON object for
//! scripts.

use serde_json::json;

use super::types::Report;
pub use super::units::{bytes, group};

/// The latency percentiles every text report shows: (label, JSON key,
/// quantile).
pub const PERCENTILES: [(&str, &str, f64); 4] = [
    ("p50", "p50", 0.50),
    ("p90", "p90", 0.90),
    ("p99", "p99", 0.99),
    ("p99.9", "p999", 0.999),
];

/// Beyond those, in JSON (a closed loop's stall can sit at p99.998).
pub const DEEP_PERCENTILES: [(&str, &str, f64); 2] =
    [("p99.99", "p9999", 0.9999), ("p99.999", "p99999", 0.99999)];

/// `--percentiles`: the whole spectrum.
pub const SPECTRUM: [(&str, f64); 9] = [
    ("p50", 0.50),
    ("p75", 0.75),
    ("p90", 0.90),
    ("p99", 0.99),
    ("p99.9", 0.999),
    ("p99.99", 0.9999),
    ("p99.999", 0.99999),
    ("p99.9999", 0.999999),
    ("max", 1.0),
];

/// The report as one JSON object (the contract's fields and more).
pub fn json(report: &Report) -> serde_json::Value {
    let config = &report.config;
    let c = &report.counters;
    // Nothing measured, nothing to say about latency: null, not zeros.
    let latency = (!report.latency.is_empty()).then(|| quantiles(&report.latency));
    let mut out = json!({
        "endpoint": config.endpoint.to_string(),
        "mode": if config.modes.rate.is_some() { "open" } else { "closed" },
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
        "generator": report.verdict.json(),
        "owed_at_end": c.owed_at_end,
        "never_answered": c.never_answered,
        "after_end": c.after_end,
        "achieved": (report.achieved() * 10_000.0).round() / 10_000.0,
        "slo_us": config.modes.slo().as_micros() as u64,
        "verdict": verdict(report),
    });
    if let Some(corrected) = report.corrected.as_ref().filter(|h| !h.is_empty()) {
        out["latency_corrected_us"] = quantiles(corrected);
    }
    if !config.endpoint.kind.is_stream() {
        out["jitter_us"] = json!(report.jitter_us.map(|j| (j * 10.0).round() / 10.0));
        out["reordered"] = json!(c.reordered);
    }
    if config.modes.reconnect {
        out["reconnects"] = json!(c.reconnects);
    }
    if let Some(speech) = report.speech {
        let [s2, s3, s4, s5] = c.http_status;
        out["http"] = json!({
            "speech": speech.name(),
            "verified": speech.verifies(),
            "status": {"2xx": s2, "3xx": s3, "4xx": s4, "5xx": s5},
            "reconnects": c.reconnects,
        });
    }
    if let Some(rate) = config.modes.rate {
        out["rate"] = json!(rate);
        out["arrivals"] = json!(config.modes.arrivals.name());
    }
    if let Some(service) = report.service.as_ref().filter(|h| !h.is_empty()) {
        out["service_latency_us"] = quantiles(service);
    }
    if let Some(m) = config.modes.churn {
        out["churn"] = json!({
            "every": m,
            "connects": c.connects,
            "connects_per_sec": round3(report.connects_per_sec()),
            "connect_time_us": (c.connects > 0).then(|| quantiles(&report.connect_time)),
            "failures": report.connect_causes,
        });
    }
    if let Some(tls) = &config.modes.tls {
        out["tls"] = json!({
            "handshakes": c.handshakes,
            "handshakes_per_sec": round3(report.handshakes_per_sec()),
            "handshake_time_us": (c.handshakes > 0).then(|| quantiles(&report.handshake_time)),
            "resumption": tls.resumes(),
            "resumed": c.resumed,
        });
    }
    out
}

/// Percentiles of a histogram, as `latency_us` has them.
pub fn quantiles(h: &hdrhistogram::Histogram<u64>) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    out.insert("min".into(), json!(h.min()));
    out.insert("mean".into(), json!((h.mean() * 10.0).round() / 10.0));
    for (_, key, q) in PERCENTILES.iter().chain(&DEEP_PERCENTILES) {
        out.insert((*key).into(), json!(h.value_at_quantile(*q)));
    }
    out.insert("max".into(), json!(h.max()));
    serde_json::Value::Object(out)
}

/// One text line of a histogram's percentiles, as the bench report prints it
/// (`echoplex report` prints the same).
pub fn percentile_line(label: &str, h: &hdrhistogram::Histogram<u64>) -> String {
    let mut line = format!("  {label} min {} µs", group(h.min()));
    for (name, _, q) in PERCENTILES {
        line.push_str(&format!(", {name} {} µs", group(h.value_at_quantile(q))));
    }
    line.push_str(&format!(", max {} µs\n", group(h.max())));
    line
}

/// The verdict in one sentence: who fell behind, the server (echoes owed,
/// sends held back, messages never answered), the generator (late sends,
/// its CPU), both, or neither.
pub fn verdict(report: &Report) -> String {
    let c = &report.counters;
    let v = &report.verdict;
    let lag = v.lag.clone().unwrap_or_default();
    let mut server = Vec::new();
    if c.owed_at_end > 0 {
        server.push(format!("{} owed at the end", group(c.owed_at_end)));
    }
    if lag.held > 0 {
        server.push(format!("{} sends held back", group(lag.held)));
    }
    if c.never_answered > c.owed_at_end {
        server.push(format!("{} never answered", group(c.never_answered)));
    }
    let mut generator = Vec::new();
    if v.late() {
        generator.push(format!(
            "{} of {} sends late",
            group(lag.late),
            group(lag.sends)
        ));
    }
    if v.busiest_thread >= super::judge::SATURATED_CPU {
        generator.push(format!("a thread at {:.0} % CPU", v.busiest_thread * 100.0));
    }
    let open = report.config.modes.rate.is_some();
    match (server.is_empty(), generator.is_empty()) {
        (false, false) => format!(
            "Both fell behind: the server ({}) and the generator ({}); neither alone set these numbers.",
            server.join(", "),
            generator.join(", ")
        ),
        (false, true) => format!(
            "The server fell behind ({}){}.",
            server.join(", "),
            if open { "; the generator kept its schedule" } else { "" }
        ),
        (true, false) => format!(
            "The generator fell behind ({}): it, not the server, set these numbers (SATURATED).",
            generator.join(", ")
        ),
        (true, true) if open => "Neither fell behind: every send left on schedule and every \
             message due was answered."
            .to_string(),
        (true, true) => "Neither fell behind as far as a closed loop can tell: it sends only \
             when echoes are back (see the corrected line)."
            .to_string(),
    }
}

/// `--percentiles`: a line per point of the spectrum, with how many
/// messages were slower.
pub fn spectrum(label: &str, h: &hdrhistogram::Histogram<u64>) -> String {
    let mut text = format!("  {label}\n");
    for (name, q) in SPECTRUM {
        let value = if q >= 1.0 {
            h.max()
        } else {
            h.value_at_quantile(q)
        };
        let slower = h.len() - h.count_between(0, value);
        text.push_str(&format!(
            "    {name:<9} {:>12} µs  {:>12} slower\n",
            group(value),
            group(slower)
        ));
    }
    text
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The report for people.
pub fn human(report: &Report) -> String {
    let config = &report.config;
    let c = &report.counters;
    let mut text = format!(
        "{}: {} {}{} × {}, {}, {} thread{}; measured {:.2} s{}{}\n",
        config.endpoint,
        config.connections,
        if config.endpoint.kind.is_stream() {
            "connection"
        } else {
            "socket"
        },
        if config.connections == 1 { "" } else { "s" },
        // Any other HTTP server gets GETs: no payload of -s bytes.
        match report.speech {
            Some(speech) if !speech.verifies() => "GET".to_string(),
            _ => format!("{} B", config.size),
        },
        match config.modes.rate {
            Some(_) => "open loop".to_string(),
            None => format!("depth {}", config.depth),
        },
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
    match report.speech {
        Some(speech) if !speech.verifies() => {
            let [s2, s3, s4, s5] = c.http_status;
            text.push_str(&format!(
                "  requests  {} answered: {} requests/s (GET; not echoplex, so nothing to verify)\n  \
                 status    2xx {}, 3xx {}, 4xx {}, 5xx {}; reconnects {}\n",
                group(c.messages),
                group(report.msgs_per_sec().round() as u64),
                group(s2),
                group(s3),
                group(s4),
                group(s5),
                group(c.reconnects),
            ));
        }
        _ => text.push_str(&format!(
            "  messages  {} echoed and verified: {} msgs/s, {}/s\n",
            group(c.messages),
            group(report.msgs_per_sec().round() as u64),
            bytes(report.bytes_per_sec()),
        )),
    }
    let slo = super::units::duration(config.modes.slo());
    if let Some(rate) = config.modes.rate {
        text.push_str(&format!(
            "  open loop {} msgs/s asked ({}); achieved {:.1} % (answered within {slo} of \
             their due time); latency from the schedule\n",
            group(rate.round() as u64),
            config.modes.arrivals.name(),
            100.0 * report.achieved(),
        ));
    }
    if !report.latency.is_empty() {
        text.push_str(&percentile_line("latency  ", &report.latency));
        if let Some(service) = report.service.as_ref().filter(|h| !h.is_empty()) {
            text.push_str(&percentile_line("service  ", service));
        }
        if let Some(corrected) = report.corrected.as_ref().filter(|h| !h.is_empty()) {
            text.push_str(&percentile_line("corrected", corrected));
            text.push_str(
                "  closed loop: a connection sends only when its echo is back, so a stall \
                 delays sends instead of showing in latency (the raw line hides it); \
                 'corrected' applies wrk's expected-interval correction, --rate measures it\n",
            );
        }
    }
    if c.owed_at_end > 0 {
        let wait = config
            .modes
            .end_wait
            .map_or(config.timeout, |w| w.min(config.timeout));
        text.push_str(&format!(
            "  owed      {} answered after the window, {} still owed at the end (waited {}; \
             each recorded from its due time, the owed ones as the wait they had)\n",
            group(c.after_end),
            group(c.owed_at_end),
            super::units::duration(wait),
        ));
    }
    if c.never_answered > 0 {
        text.push_str(&format!(
            "  sent, never answered {}\n",
            group(c.never_answered)
        ));
    }
    if config.modes.spectrum && !report.latency.is_empty() {
        text.push_str(&spectrum("latency spectrum", &report.latency));
        if let Some(corrected) = report.corrected.as_ref().filter(|h| !h.is_empty()) {
            text.push_str(&spectrum("corrected spectrum", corrected));
        }
    }
    if let Some(m) = config.modes.churn {
        let mut line = format!(
            "  churn     every {m} echoes: {} connects, {} connects/s",
            group(c.connects),
            group(report.connects_per_sec().round() as u64),
        );
        if c.connects > 0 {
            let t = &report.connect_time;
            line.push_str(&format!(
                "; connect p50 {} µs, p99 {} µs, max {} µs",
                group(t.value_at_quantile(0.5)),
                group(t.value_at_quantile(0.99)),
                group(t.max())
            ));
        }
        for (cause, n) in &report.connect_causes {
            line.push_str(&format!("; {n} failed: {cause}"));
        }
        line.push('\n');
        text.push_str(&line);
    }
    if let Some(tls) = &config.modes.tls {
        let mut line = format!(
            "  tls       {} handshakes, {} handshakes/s ({})",
            group(c.handshakes),
            group(report.handshakes_per_sec().round() as u64),
            if tls.resumes() {
                format!("resumption offered: {} resumed", group(c.resumed))
            } else {
                "full handshakes, no resumption".to_string()
            }
        );
        if c.handshakes > 0 {
            let t = &report.handshake_time;
            line.push_str(&format!(
                "; handshake p50 {} µs, p90 {} µs, p99 {} µs, max {} µs",
                group(t.value_at_quantile(0.5)),
                group(t.value_at_quantile(0.9)),
                group(t.value_at_quantile(0.99)),
                group(t.max())
            ));
        }
        line.push('\n');
        text.push_str(&line);
    }
    text.push_str(&report.verdict.line());
    text.push_str(&format!(
        "  errors    {} (connect failures {}",
        c.errors, c.connect_failures
    ));
    if !config.endpoint.kind.is_stream() {
        text.push_str(&format!(", lost {}, late {}", c.lost, c.late));
    }
    if config.modes.reconnect {
        text.push_str(&format!(", reconnects {}", c.reconnects));
    }
    text.push_str(")\n");
    if !config.endpoint.kind.is_stream() {
        text.push_str(&format!(
            "  datagrams jitter {} µs (RFC 3550, over round trips), reordered {}\n",
            report
                .jitter_us
                .map_or("-".to_string(), |j| format!("{j:.1}")),
            group(c.reordered),
        ));
    }
    text.push_str(&format!("  verdict   {}\n", verdict(report)));
    text
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
