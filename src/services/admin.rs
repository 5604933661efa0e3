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

use std::io::{self, Read};
use std::time::{Duration, Instant};

use log::debug;
use mio::{Interest, Registry, Token};
use serde_json::json;

use super::listener::{Listener, UnixPeer};
use super::stream::{log_close, ConnState};
use crate::endpoint::{Endpoint, Kind, Target};
use crate::reactor::{Context, Flow, Handler, HandlerInfo, Readiness, Stats};
use crate::sock;

/// The path `status` looks at, and `serve --admin` uses when given no path.
pub const DEFAULT_ADMIN_PATH: &str = "./echoplex-admin.sock";

/// Longest command line accepted; a longer one is an error, not a buffer.
const MAX_LINE: usize = 1024;

/// Binds the admin socket at `path` (always mode 600: it shows every peer).
pub fn bind(path: &std::path::Path) -> io::Result<Box<dyn Handler>> {
    let target = Target::Path(path.to_path_buf());
    let (listener, socket_file) = sock::unix_listener(&target, 0o600)?;
    let shown = Endpoint {
        kind: Kind::Unix,
        target,
    };
    Ok(Box::new(Listener::new(
        listener,
        "admin-listener",
        shown.to_string(),
        Box::new(|stream, peer| Box::new(AdminConn::new(stream, peer))),
        socket_file,
    )))
}

/// One admin client.
struct AdminConn {
    stream: mio::net::UnixStream,
    peer: UnixPeer,
    line: Vec<u8>,
    conn: ConnState,
    quit: bool,
}

impl AdminConn {
    fn new(stream: mio::net::UnixStream, peer: UnixPeer) -> Self {
        AdminConn {
            stream,
            peer,
            line: Vec::new(),
            conn: ConnState::new(),
            quit: false,
        }
    }

    fn read_commands(&mut self, cx: &mut Context) -> io::Result<()> {
        let mut chunk = [0u8; 512];
        while self.conn.read_ready && !self.conn.peer_done && !self.quit {
            let n = match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.conn.peer_done = true;
                    break;
                }
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.conn.read_ready = false;
                    break;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            self.conn.received(n, cx);
            for &byte in &chunk[..n] {
                if byte != b'\n' {
                    // Past MAX_LINE the line is kept short and answered as an error.
                    if self.line.len() <= MAX_LINE {
                        self.line.push(byte);
                    }
                    continue;
                }
                let line = std::mem::take(&mut self.line);
                let answer = self.answer(&line, cx);
                let written = self
                    .conn
                    .outbox
                    .send(&mut self.stream, answer.as_bytes(), cx)?;
                self.conn.sent(written, cx);
                if self.quit {
                    break;
                }
            }
        }
        Ok(())
    }

    fn answer(&mut self, line: &[u8], cx: &Context) -> String {
        let command = String::from_utf8_lossy(line);
        let words: Vec<&str> = command.split_whitespace().collect();
        let body = match words.as_slice() {
            _ if line.len() > MAX_LINE => format!("error: line longer than {MAX_LINE} bytes"),
            ["status"] => status_table(cx),
            ["status", "json"] => status_json(cx).to_string(),
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

fn rows(cx: &Context) -> Vec<(usize, HandlerInfo)> {
    cx.describe_all()
}

fn events_per_iteration(stats: &Stats) -> f64 {
    if stats.loop_iterations == 0 {
        0.0
    } else {
        stats.events as f64 / stats.loop_iterations as f64
    }
}

fn secs(duration: Option<Duration>) -> String {
    duration.map_or("-".to_string(), |d| format!("{:.1}s", d.as_secs_f64()))
}

/// The netstat-like table.
fn status_table(cx: &Context) -> String {
    let stats = &*cx.stats;
    let mut out = format!(
        "uptime {:.1}s  connections {}  accepted {}  closed {}  timeouts {}  rejected {} (max-connections) {} (no fds)\n\
         datagrams in {} out {}  dropped {}  filtered {}  rate-limited {}  bytes in {} out {}\n\
         loop iterations {}  events {}  events/iteration {:.2}\n",
        cx.now.duration_since(stats.started).as_secs_f64(),
        stats.connections,
        stats.accepted,
        stats.closed,
        stats.timeouts,
        stats.rejected_max_connections,
        stats.rejected_no_fds,
        stats.datagrams_in,
        stats.datagrams_out,
        stats.dropped_datagrams,
        stats.filtered_datagrams,
        stats.rate_limited,
        stats.bytes_in,
        stats.bytes_out,
        stats.loop_iterations,
        stats.events,
        events_per_iteration(stats),
    );
    out.push_str(&format!(
        "{:<6} {:<16} {:<28} {:<24} {:<22} {:>10} {:>10} {:>8} {:>8}",
        "TOKEN", "KIND", "LOCAL", "PEER", "STATE", "IN", "OUT", "PENDING", "IDLE"
    ));
    for (key, info) in rows(cx) {
        out.push_str(&format!(
            "\n{:<6} {:<16} {:<28} {:<24} {:<22} {:>10} {:>10} {:>8} {:>8}",
            key,
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
    }
    out
}

/// The same as one JSON object.
fn status_json(cx: &Context) -> serde_json::Value {
    let stats = &*cx.stats;
    let handlers: Vec<serde_json::Value> = rows(cx)
        .into_iter()
        .map(|(key, info)| {
            json!({
                "token": key,
                "kind": info.kind,
                "local": info.local,
                "peer": info.peer,
                "state": info.state,
                "bytes_in": info.bytes_in,
                "bytes_out": info.bytes_out,
                "pending": info.pending,
                "idle_s": info.idle.map(|d| d.as_secs_f64()),
            })
        })
        .collect();
    json!({
        "uptime_s": cx.now.duration_since(stats.started).as_secs_f64(),
        "connections": stats.connections,
        "accepted": stats.accepted,
        "closed": stats.closed,
        "timeouts": stats.timeouts,
        "rejected_max_connections": stats.rejected_max_connections,
        "rejected_no_fds": stats.rejected_no_fds,
        "datagrams_in": stats.datagrams_in,
        "datagrams_out": stats.datagrams_out,
        "dropped_datagrams": stats.dropped_datagrams,
        "filtered_datagrams": stats.filtered_datagrams,
        "rate_limited": stats.rate_limited,
        "bytes_in": stats.bytes_in,
        "bytes_out": stats.bytes_out,
        "loop_iterations": stats.loop_iterations,
        "events": stats.events,
        "events_per_iteration": events_per_iteration(stats),
        "handlers": handlers,
    })
}

impl Handler for AdminConn {
    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(
            &mut self.stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        )
    }

    fn started(&mut self, cx: &mut Context) -> Flow {
        self.conn.start(cx);
        Flow::Continue
    }

    fn ready(&mut self, readiness: Readiness, cx: &mut Context) -> Flow {
        self.conn.note(readiness);
        let result = self
            .conn
            .flush(&mut self.stream, cx)
            .and_then(|_| self.read_commands(cx));
        if let Err(err) = result {
            log_close("admin", &self.peer, &err);
            self.conn.outbox.release(cx);
            return Flow::Close;
        }
        if (self.quit || self.conn.finished(cx)) && self.conn.outbox.is_empty() {
            debug!("admin {} closed", self.peer);
            return Flow::Close;
        }
        Flow::Continue
    }

    fn timeout(&mut self, cx: &mut Context) -> Flow {
        if self.conn.idle_expired(cx) {
            self.conn.outbox.release(cx);
            return Flow::Close;
        }
        Flow::Continue
    }

    fn describe(&self, now: Instant) -> HandlerInfo {
        self.conn.describe("admin-conn", self.peer.to_string(), now)
    }
}
