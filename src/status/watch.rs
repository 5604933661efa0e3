//! `echoplex status --watch [SECS]`: a live, top-like view of a running
//! daemon. Every SECS it asks the admin socket for `status json` and shows
//! each counter beside its rate per second since the previous answer, then
//! the handlers with their bytes per second. On a terminal the view is
//! redrawn in place; otherwise each view is a plain block followed by a
//! blank line, so a pipe or a log file gets one block per SECS. Ctrl-C ends
//! it with exit 130.
//!
//! The figures are the daemon's declared list (`Stats::LIST`), in its
//! order: a counter added there shows up here with its rate, a gauge with
//! its level. When the answer carries `reactors` (an array of per-reactor
//! objects) with more than one entry, a table with one row per reactor
//! follows the totals.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::error::{Exit, Failure, Outcome};
use crate::probe::interrupt;
use crate::reactor::{StatKind, Stats};

/// Clears the screen and homes the cursor (ANSI), before each redraw on a
/// terminal.
const CLEAR: &str = "\x1b[H\x1b[2J";

/// One answer of the daemon and when it came.
struct Sample {
    status: Map<String, Value>,
    /// The daemon's uptime when it answered, else our clock: rates use the
    /// daemon's own clock when it says it.
    at: f64,
}

/// Runs the watch loop until interrupted; `ask` fetches one `status json`
/// answer. Returns the outcome: interrupted (130), or the failed query.
pub(super) fn run(
    every: Duration,
    json: bool,
    admin: &str,
    mut ask: impl FnMut() -> Result<String, Failure>,
) -> Outcome {
    interrupt::stop_on(&[libc::SIGINT], true)?;
    let terminal = std::io::stdout().is_terminal();
    let started = Instant::now();
    let mut previous: Option<Sample> = None;
    let mut next = Instant::now();
    loop {
        let text = ask()?;
        let status = match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => map,
            _ => {
                return Err(Failure::new(
                    Exit::Io,
                    format!("admin socket {admin}: not a status object: {}", text.trim()),
                ))
            }
        };
        let at = status
            .get("uptime_s")
            .and_then(Value::as_f64)
            .unwrap_or_else(|| started.elapsed().as_secs_f64());
        let sample = Sample { status, at };
        let view = if json {
            json_line(previous.as_ref(), &sample)
        } else {
            let rows = if terminal { terminal_rows() } else { None };
            render(previous.as_ref(), &sample, every, admin, rows)
        };
        let mut out = std::io::stdout().lock();
        let written = if terminal && !json {
            write!(out, "{CLEAR}{view}")
        } else if json {
            write!(out, "{view}")
        } else {
            writeln!(out, "{view}")
        };
        if let Err(e) = written.and_then(|()| out.flush()) {
            let why = format!("cannot write output: {}", crate::error::describe(&e));
            return Err(Failure::new(Exit::Io, why));
        }
        drop(out);
        previous = Some(sample);
        // Sleep in short slices so Ctrl-C ends the wait at once.
        next += every;
        let now = Instant::now();
        if next < now {
            next = now;
        }
        while Instant::now() < next {
            if interrupt::stopped() {
                return Ok(Exit::Interrupted);
            }
            std::thread::sleep((next - Instant::now()).min(Duration::from_millis(50)));
        }
        if interrupt::stopped() {
            return Ok(Exit::Interrupted);
        }
    }
}

/// The terminal's height, to keep a long handler list from scrolling the
/// view away.
fn terminal_rows() -> Option<usize> {
    crate::sys::term::stdout_rows()
}

/// Rate of `name` per second between two objects, if it is a counter both
/// have and time has passed (None after a daemon restart, too).
fn rate(
    previous: Option<&Map<String, Value>>,
    current: &Map<String, Value>,
    name: &str,
    dt: f64,
) -> Option<f64> {
    let now = current.get(name)?.as_u64()?;
    let before = previous?.get(name)?.as_u64()?;
    (dt > 0.0 && now >= before).then(|| (now - before) as f64 / dt)
}

/// The counters of the declared list that `object` holds, in the list's
/// order (gauges are levels, shown without a rate).
fn counters(object: &Map<String, Value>) -> impl Iterator<Item = (&'static str, u64)> + '_ {
    Stats::LIST
        .iter()
        .filter(|stat| stat.kind == StatKind::Counter)
        .filter_map(|stat| Some((stat.name, object.get(stat.name)?.as_u64()?)))
}

fn show_rate(rate: Option<f64>) -> String {
    match rate {
        Some(r) if r >= 100.0 => format!("{r:.0}/s"),
        Some(r) => format!("{r:.1}/s"),
        None => "-".to_owned(),
    }
}

/// The text view of one sample.
fn render(
    previous: Option<&Sample>,
    sample: &Sample,
    every: Duration,
    admin: &str,
    rows: Option<usize>,
) -> String {
    let status = &sample.status;
    let before = previous.map(|p| &p.status);
    let dt = previous.map_or(0.0, |p| sample.at - p.at);
    let mut out = String::new();
    let uptime = status
        .get("uptime_s")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    let connections = status
        .get("connections")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "echoplex status --watch {}: {admin}  uptime {uptime:.1}s  connections {connections}",
        crate::probe::duration::show(every).replace(' ', "")
    );
    let reactors: Vec<&Map<String, Value>> = status
        .get("reactors")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter_map(Value::as_object)
        .collect();
    if reactors.len() > 1 {
        let old = before
            .and_then(|b| b.get("reactors"))
            .and_then(Value::as_array);
        render_per_reactor(&mut out, status, before, &reactors, old, dt);
    } else {
        // Two counters to a line: name, total, rate.
        let cells: Vec<String> = counters(status)
            .map(|(name, total)| {
                format!(
                    "{name:<25} {total:>12} {:>10}",
                    show_rate(rate(before, status, name, dt))
                )
            })
            .collect();
        for line in cells.chunks(2) {
            let _ = writeln!(out, "{}", line.join("   ").trim_end());
        }
    }
    let handlers = status
        .get("handlers")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let old: HashMap<String, &Map<String, Value>> = before
        .and_then(|b| b.get("handlers"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .map(|h| (handler_key(h), h))
        .collect();
    let used = out.lines().count() + 2;
    let room = rows.map_or(usize::MAX, |r| r.saturating_sub(used + 1));
    let _ = writeln!(
        out,
        "\n{:<6} {:<16} {:<32} {:<24} {:<14} {:>10} {:>10} {:>8} {:>8}",
        "TOKEN", "KIND", "LOCAL", "PEER", "STATE", "IN/s", "OUT/s", "PENDING", "IDLE"
    );
    for handler in handlers.iter().filter_map(Value::as_object).take(room) {
        let text = |k: &str| match handler.get(k) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => "-".to_owned(),
            Some(v) => v.to_string(),
        };
        let previous = old.get(&handler_key(handler)).copied();
        let idle = handler
            .get("idle_s")
            .and_then(Value::as_f64)
            .map_or("-".to_owned(), |s| format!("{s:.1}s"));
        let _ = writeln!(
            out,
            "{:<6} {:<16} {:<32} {:<24} {:<14} {:>10} {:>10} {:>8} {:>8}",
            text("token"),
            text("kind"),
            text("local"),
            text("peer"),
            text("state"),
            show_rate(rate(previous, handler, "bytes_in", dt)),
            show_rate(rate(previous, handler, "bytes_out", dt)),
            text("pending"),
            idle
        );
    }
    if handlers.len() > room {
        let _ = writeln!(out, "... and {} more handlers", handlers.len() - room);
    }
    out
}

/// Several reactors: one counter to a line, its total and rate, then its
/// rate in each reactor; the connections open in each come first.
fn render_per_reactor(
    out: &mut String,
    status: &Map<String, Value>,
    before: Option<&Map<String, Value>>,
    reactors: &[&Map<String, Value>],
    old: Option<&Vec<Value>>,
    dt: f64,
) {
    let _ = write!(out, "{:<25} {:>12} {:>10}", "", "TOTAL", "PER SEC");
    for index in 0..reactors.len() {
        let _ = write!(out, " {:>11}", format!("REACTOR {index}"));
    }
    let _ = write!(out, "\n{:<25} {:>12} {:>10}", "connections (open)", "", "");
    for reactor in reactors {
        let open = reactor.get("connections").and_then(Value::as_u64);
        let _ = write!(
            out,
            " {:>11}",
            open.map_or("-".to_owned(), |n| n.to_string())
        );
    }
    out.push('\n');
    for (name, total) in counters(status) {
        let _ = write!(
            out,
            "{name:<25} {total:>12} {:>10}",
            show_rate(rate(before, status, name, dt))
        );
        for (index, reactor) in reactors.iter().enumerate() {
            let previous = old.and_then(|o| o.get(index)).and_then(Value::as_object);
            let _ = write!(out, " {:>11}", show_rate(rate(previous, reactor, name, dt)));
        }
        out.push('\n');
    }
}

/// Identifies a handler across answers (a token is reused after a close).
fn handler_key(handler: &Map<String, Value>) -> String {
    ["reactor", "token", "kind", "local", "peer"]
        .iter()
        .map(|k| handler.get(*k).map_or(String::new(), Value::to_string))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `--watch --json`: the status object with a `rates` object beside it
/// (per second, counters only; empty in the first line), one per line.
fn json_line(previous: Option<&Sample>, sample: &Sample) -> String {
    let dt = previous.map_or(0.0, |p| sample.at - p.at);
    let before = previous.map(|p| &p.status);
    let rates: Map<String, Value> = counters(&sample.status)
        .filter_map(|(name, _)| {
            Some((
                name.to_owned(),
                Value::from(rate(before, &sample.status, name, dt)?),
            ))
        })
        .collect();
    let mut object = sample.status.clone();
    object.insert("rates".to_owned(), Value::Object(rates));
    format!("{}\n", Value::Object(object))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(json: &str) -> Sample {
        let status = match serde_json::from_str(json) {
            Ok(Value::Object(map)) => map,
            _ => panic!("test JSON"),
        };
        let at = status
            .get("uptime_s")
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        Sample { status, at }
    }

    #[test]
    fn rates_are_per_second_of_the_daemons_clock() {
        let a = sample(r#"{"uptime_s": 1.0, "connections": 5, "accepted": 10, "handlers": []}"#);
        let b = sample(r#"{"uptime_s": 3.0, "connections": 7, "accepted": 30, "handlers": []}"#);
        let view = render(Some(&a), &b, Duration::from_secs(2), "a.sock", None);
        assert!(view.contains("connections 7"), "{view}");
        let line = view
            .lines()
            .find(|l| l.starts_with("accepted"))
            .expect(&view);
        assert!(line.contains(" 30 ") && line.ends_with("10.0/s"), "{line}");
        // Gauges get no rate; the first view has none at all.
        assert!(
            !view.lines().any(|l| l.starts_with("connections")),
            "{view}"
        );
        let first = render(None, &a, Duration::from_secs(2), "a.sock", None);
        let line = first
            .lines()
            .find(|l| l.starts_with("accepted"))
            .expect(&first);
        assert!(line.ends_with('-'), "{line}");
        let json = json_line(Some(&a), &b);
        assert!(json.contains(r#""rates":{"accepted":10.0}"#), "{json}");
    }

    #[test]
    fn several_reactors_get_a_column_each() {
        let a = sample(
            r#"{"uptime_s": 1.0, "accepted": 5, "reactors": [{"connections": 1, "accepted": 1}, {"connections": 2, "accepted": 4}]}"#,
        );
        let b = sample(
            r#"{"uptime_s": 2.0, "accepted": 7, "reactors": [{"connections": 1, "accepted": 3}, {"connections": 2, "accepted": 4}]}"#,
        );
        let view = render(Some(&a), &b, Duration::from_secs(1), "a.sock", None);
        let header = view.lines().nth(1).expect(&view);
        assert!(header.ends_with("REACTOR 0   REACTOR 1"), "{view}");
        let open = view
            .lines()
            .find(|l| l.starts_with("connections (open)"))
            .expect(&view);
        assert_eq!(
            open.split_whitespace().collect::<Vec<_>>(),
            ["connections", "(open)", "1", "2"]
        );
        let accepted = view
            .lines()
            .find(|l| l.starts_with("accepted"))
            .expect(&view);
        assert_eq!(
            accepted.split_whitespace().collect::<Vec<_>>(),
            ["accepted", "7", "2.0/s", "2.0/s", "0.0/s"],
            "{view}"
        );
        // One reactor: no per-reactor columns.
        let one = sample(r#"{"uptime_s": 2.0, "reactors": [{"accepted": 3}]}"#);
        assert!(!render(None, &one, Duration::from_secs(1), "a.sock", None).contains("REACTOR"));
    }

    #[test]
    fn a_short_terminal_shows_how_many_handlers_are_hidden() {
        let handlers: Vec<String> = (0..50)
            .map(|t| format!(r#"{{"token": {t}, "kind": "tcp-conn", "bytes_in": 0}}"#))
            .collect();
        let s = sample(&format!(
            r#"{{"uptime_s": 1.0, "accepted": 1, "handlers": [{}]}}"#,
            handlers.join(",")
        ));
        let view = render(None, &s, Duration::from_secs(1), "a.sock", Some(24));
        assert!(view.lines().count() <= 24, "{view}");
        assert!(view.contains("more handlers"), "{view}");
    }
}
