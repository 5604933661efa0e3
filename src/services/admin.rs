//! The admin socket (`serve --admin PATH`): a Unix stream socket, mode 600,
//! served by the same loop as everything else, that answers `echoplex
//! status`: netstat for the daemon's own slab.
//!
//! Protocol, one command per line (try it with `nc -U PATH`):
//!
//! | command       | answer                                             |
//! |---------------|----------------------------------------------------|
//! | `status`      | the totals and one row per handler, as a table      |
//! | `status json` | the same as one JSON object on one line            |
//! | `help`        | the list of commands                               |
//! | `quit`        | closes the connection                              |
//!
//! Every answer ends with a line holding a single `.`; an unknown command
//! gets `error: ...` and the `.` line, and the connection stays open.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use serde_json::json;

use super::listener::Listener;
use super::stream::{Protocol, Sender, StreamConn};
use crate::endpoint::{Endpoint, Kind, Target};
use crate::reactor::{each_json, totals, Context, Handler, HandlerInfo, Stats};
use crate::sock;

/// The path `status` looks at, and `serve --admin` uses when given no path.
pub const DEFAULT_ADMIN_PATH: &str = "./echoplex-admin.sock";

/// Longest command line accepted; a longer one is an error, not a buffer.
const MAX_LINE: usize = 1024;

/// Binds the admin socket at `path` (always mode 600: it shows every peer).
pub fn bind(path: &std::path::Path, binder: &sock::Binder) -> io::Result<Box<dyn Handler>> {
    let target = Target::Path(path.to_path_buf());
    let (listener, socket_file) = sock::unix_listener(&target, 0o600, binder)?;
    let shown = Endpoint::new(Kind::Unix, target);
    Ok(Box::new(
        Listener::new(
            listener,
            "admin-listener",
            shown.to_string(),
            Box::new(|stream, peer| {
                Box::new(StreamConn::new(
                    stream,
                    "admin-conn",
                    peer,
                    Admin::default(),
                ))
            }),
            socket_file,
        )
        // `status` must answer even when the daemon is out of descriptors.
        .with_spare_fd(),
    ))
}

/// The admin line protocol of one client: the input not yet answered
/// (`input[start..]`) and the line being gathered.
#[derive(Default)]
struct Admin {
    input: Vec<u8>,
    start: usize,
    line: Vec<u8>,
    quit: bool,
}

impl Protocol for Admin {
    fn received<S: Write>(
        &mut self,
        data: &[u8],
        out: &mut Sender<'_, S>,
        cx: &mut Context,
    ) -> io::Result<()> {
        if self.quit {
            return Ok(()); // anything after `quit` is ignored
        }
        self.input.extend_from_slice(data);
        self.answer_held(out, cx)
    }

    fn resume<S: Write>(&mut self, out: &mut Sender<'_, S>, cx: &mut Context) -> io::Result<()> {
        self.answer_held(out, cx)
    }

    fn done(&self) -> bool {
        self.quit
    }

    /// Commands not yet answered count against `--max-buffer` (reading
    /// stops while they wait for the answers before them to be read).
    fn held(&self) -> usize {
        self.input.len() - self.start + self.line.len()
    }

    /// Admin clients have a reserve of their own: status must work
    /// precisely when the daemon is full.
    fn is_control(&self) -> bool {
        true
    }
}

impl Admin {
    /// Answers the complete lines held, in order, until the answers owed
    /// reach `--max-buffer`; the rest waits for `resume`.
    fn answer_held<S: Write>(
        &mut self,
        out: &mut Sender<'_, S>,
        cx: &mut Context,
    ) -> io::Result<()> {
        while self.start < self.input.len() && !self.quit && !out.backlogged() {
            let rest = &self.input[self.start..];
            let end = rest.iter().position(|&b| b == b'\n');
            let piece = &rest[..end.unwrap_or(rest.len())];
            // Past MAX_LINE the line is kept short and answered as an error.
            let keep = piece
                .len()
                .min((MAX_LINE + 1).saturating_sub(self.line.len()));
            self.line.extend_from_slice(&piece[..keep]);
            self.start += piece.len();
            if end.is_none() {
                break;
            }
            self.start += 1; // the newline
            let line = std::mem::take(&mut self.line);
            let answer = self.answer(&line, cx);
            out.send(answer.as_bytes(), cx)?;
        }
        if self.quit {
            self.input = Vec::new();
            self.line = Vec::new();
            self.start = 0;
        } else {
            self.input.drain(..self.start);
            self.start = 0;
        }
        Ok(())
    }

    fn answer(&mut self, line: &[u8], cx: &mut Context) -> String {
        let command = String::from_utf8_lossy(line);
        let words: Vec<&str> = command.split_whitespace().collect();
        // The status texts are built once per turn of the loop, however
        // many pipelined commands ask for them.
        let body = match words.as_slice() {
            _ if line.len() > MAX_LINE => format!("error: line longer than {MAX_LINE} bytes"),
            ["status"] => cx.once_per_turn("status", status_table).to_string(),
            ["status", "json"] => cx
                .once_per_turn("status json", status_json_text)
                .trim_end()
                .to_string(),
            ["help"] => "commands: status | status json | help | quit".to_string(),
            ["quit"] => {
                self.quit = true;
                "bye".to_string()
            }
            [] => "error: empty command (try help)".to_string(),
            _ => format!("error: unknown command '{}' (try help)", command.trim()),
        };
        format!("{body}\n.\n")
    }
}

/// Every reactor's handlers: (reactor, slab key, row).
fn rows(cx: &Context) -> Vec<(usize, usize, HandlerInfo)> {
    cx.every_handler()
}

fn secs(duration: Option<Duration>) -> String {
    duration.map_or("-".to_string(), |d| format!("{:.1}s", d.as_secs_f64()))
}

/// The five summary lines of `echoplex status` (connections, datagrams
/// and bytes, the loop, the control plane, HTTP and WebSocket), without a
/// final newline: each figure where its declaration (`stats!`: `line`,
/// `text`) puts it.
fn summary_lines(stats: &Stats, now: Instant) -> String {
    let mut lines = [
        format!("uptime {:.1}s", stats.uptime_s(now)),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    ];
    for (stat, value) in stats.values() {
        let line = &mut lines[usize::from(stat.line.clamp(1, 5)) - 1];
        line.push_str(&stat.text.replacen("{}", &value.to_string(), 1));
    }
    lines[2].push_str(&format!(
        "  events/iteration {:.2}",
        stats.events_per_iteration()
    ));
    lines.join("\n")
}

/// `status`'s per-reactor rows (shown when there are several).
fn reactor_table(each: &[Stats]) -> String {
    let mut out = format!(
        "{:<8} {:>11} {:>10} {:>12} {:>12} {:>12}\n",
        "REACTOR", "CONNECTIONS", "ACCEPTED", "DATAGRAMS", "EVENTS", "ITERATIONS"
    );
    for (index, one) in each.iter().enumerate() {
        out.push_str(&format!(
            "{:<8} {:>11} {:>10} {:>12} {:>12} {:>12}\n",
            index, one.connections, one.accepted, one.datagrams_in, one.events, one.loop_iterations
        ));
    }
    out
}

/// The netstat-like table.
fn status_table(cx: &Context) -> String {
    // With several reactors the figures are their totals, then a row each.
    let each = cx.every_reactor();
    let mut out = summary_lines(&totals(&each), cx.now);
    out.push('\n');
    if each.len() > 1 {
        out.push_str(&reactor_table(&each));
    }
    out.push_str(&format!(
        "{:<6} {:<16} {:<32} {:<24} {:<22} {:>10} {:>10} {:>8} {:>8}",
        "TOKEN", "KIND", "LOCAL", "PEER", "STATE", "IN", "OUT", "PENDING", "IDLE"
    ));
    for (reactor, key, info) in rows(cx) {
        // Slab keys are per reactor: with several, a token is REACTOR:KEY.
        let token = if each.len() > 1 {
            format!("{reactor}:{key}")
        } else {
            key.to_string()
        };
        out.push_str(&format!(
            "\n{:<6} {:<16} {:<32} {:<24} {:<22} {:>10} {:>10} {:>8} {:>8}",
            token,
            info.kind,
            if info.local.is_empty() {
                "-"
            } else {
                &info.local
            },
            info.peer,
            info.state,
            info.bytes_in,
            info.bytes_out,
            info.pending,
            secs(info.idle),
        ));
        if let Some(detail) = &info.detail {
            out.push_str("  ");
            out.push_str(detail);
        }
    }
    out
}

/// The JSON object as text, with a final newline (`/status`'s body).
pub(crate) fn status_json_text(cx: &Context) -> String {
    format!("{}\n", status_json(cx))
}

/// The same as one JSON object.
pub(crate) fn status_json(cx: &Context) -> serde_json::Value {
    let handlers: Vec<serde_json::Value> = rows(cx)
        .into_iter()
        .map(|(reactor, key, info)| {
            json!({
                "reactor": reactor,
                "token": key,
                "kind": info.kind,
                "local": info.local,
                "peer": info.peer,
                "state": info.state,
                "bytes_in": info.bytes_in,
                "bytes_out": info.bytes_out,
                "pending": info.pending,
                "idle_s": info.idle.map(|d| d.as_secs_f64()),
                "detail": info.detail,
            })
        })
        .collect();
    let each = cx.every_reactor();
    let mut object = totals(&each).json(cx.now);
    object.insert("handlers".into(), serde_json::Value::Array(handlers));
    object.insert("reactors".into(), each_json(&each, cx.now));
    serde_json::Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_has_every_figure_on_its_line() {
        let started = Instant::now();
        let mut stats = Stats::new(started);
        stats.connections = 1;
        stats.rejected_max_connections = 2;
        stats.rejected_no_fds = 3;
        stats.datagrams_out = 4;
        stats.bytes_out = 5;
        stats.loop_iterations = 4;
        stats.events = 6;
        assert_eq!(
            summary_lines(&stats, started),
            "uptime 0.0s  connections 1  accepted 0  closed 0  timeouts 0  rejected 2 (max-connections) 3 (no fds)  proxy errors 0  tls handshakes 0 (0us)  tls errors 0\n\
             datagrams in 0 out 4  dropped 0  filtered 0  rate-limited 0  bytes in 0 out 5\n\
             loop iterations 4  events 6  timers fired 0 pending 0  events/iteration 1.50\n\
             control (admin, metrics) connections 0  rejected 0  evicted 0  bytes in 0 out 0  page clients dropped 0\n\
             http answers 1xx 0 2xx 0 3xx 0 4xx 0 5xx 0  websocket upgrades 0 messages 0 errors 0"
        );
    }
}
