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
use std::time::Duration;

use serde_json::json;

use super::listener::Listener;
use super::stream::{Protocol, Sender, StreamConn};
use crate::daemon::reactors;
use crate::endpoint::{Endpoint, Kind, Target};
use crate::reactor::{Context, Handler, HandlerInfo};
use crate::sock;

/// The path `status` looks at, and `serve --admin` uses when given no path.
pub const DEFAULT_ADMIN_PATH: &str = "./echoplex-admin.sock";

/// Longest command line accepted; a longer one is an error, not a buffer.
const MAX_LINE: usize = 1024;

/// Answers an admin client may leave unread before it is cut off: one read
/// of `status` lines must not make the daemon build thousands of tables.
const MAX_UNREAD_ANSWERS: usize = 1 << 20;

/// Binds the admin socket at `path` (always mode 600: it shows every peer).
pub fn bind(path: &std::path::Path) -> io::Result<Box<dyn Handler>> {
    let target = Target::Path(path.to_path_buf());
    let (listener, socket_file) = sock::unix_listener(&target, 0o600)?;
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

/// The admin line protocol of one client.
#[derive(Default)]
struct Admin {
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
        for &byte in data {
            if self.quit {
                break; // anything after `quit` is ignored
            }
            if byte != b'\n' {
                // Past MAX_LINE the line is kept short and answered as an error.
                if self.line.len() <= MAX_LINE {
                    self.line.push(byte);
                }
                continue;
            }
            if out.pending() > MAX_UNREAD_ANSWERS {
                return Err(io::Error::other(format!(
                    "admin client left over {MAX_UNREAD_ANSWERS} bytes of answers unread"
                )));
            }
            let line = std::mem::take(&mut self.line);
            let answer = self.answer(&line, cx);
            out.send(answer.as_bytes(), cx)?;
        }
        Ok(())
    }

    fn done(&self) -> bool {
        self.quit
    }

    /// Admin clients do not count against the limit: status must work
    /// precisely when the daemon is full.
    fn is_connection(&self) -> bool {
        false
    }
}

impl Admin {
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

fn secs(duration: Option<Duration>) -> String {
    duration.map_or("-".to_string(), |d| format!("{:.1}s", d.as_secs_f64()))
}

/// The netstat-like table.
fn status_table(cx: &Context) -> String {
    // With several reactors the figures are their totals, then a row each.
    let each = reactors::snapshots(cx.stats);
    let mut out = reactors::totals(&each).text(cx.now);
    out.push('\n');
    if each.len() > 1 {
        out.push_str(&reactors::table(&each));
    }
    out.push_str(&format!(
        "{:<6} {:<16} {:<32} {:<24} {:<22} {:>10} {:>10} {:>8} {:>8}",
        "TOKEN", "KIND", "LOCAL", "PEER", "STATE", "IN", "OUT", "PENDING", "IDLE"
    ));
    for (key, info) in rows(cx) {
        out.push_str(&format!(
            "\n{:<6} {:<16} {:<32} {:<24} {:<22} {:>10} {:>10} {:>8} {:>8}",
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
        if let Some(detail) = &info.detail {
            out.push_str("  ");
            out.push_str(detail);
        }
    }
    out
}

/// The same as one JSON object.
pub(crate) fn status_json(cx: &Context) -> serde_json::Value {
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
                "detail": info.detail,
            })
        })
        .collect();
    let each = reactors::snapshots(cx.stats);
    let mut object = reactors::totals(&each).json(cx.now);
    object.insert("handlers".into(), serde_json::Value::Array(handlers));
    object.insert("reactors".into(), reactors::json(&each, cx.now));
    serde_json::Value::Object(object)
}
