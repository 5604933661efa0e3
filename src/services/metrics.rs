//! `metrics://HOST:PORT`: HTTP/1.1 served by the reactor itself, on the
//! same `StreamConn` as every stream kind (buffers, backpressure, idle
//! timeout, shutdown), never a server thread of its own.
//!
//! | request         | answer                                                   |
//! |-----------------|----------------------------------------------------------|
//! | `GET /metrics`  | Prometheus text format 0.0.4                             |
//! | `GET /healthz`  | `200 ok` while serving, `503 stopping` once shutdown began |
//! | `GET /status`   | the JSON object of `echoplex status --json`              |
//! | `GET /`         | the page that shows the loop live (`page.rs`)            |
//! | other paths     | `404`; another method on a known path: `405`             |
//! | malformed       | `400` and close                                          |
//!
//! Requests are parsed by `wire::http`, the one HTTP parser of the daemon
//! (shared with `http://`), with its bounds and its smuggling checks.
//! Here a request may carry a `Content-Length` body up to [`MAX_BODY`]
//! bytes (read and ignored); a chunked body is refused (501). Keep-alive
//! follows HTTP/1.1 and HTTP/1.0; pipelined requests are answered in order,
//! and only while the answers owed stay under `--max-buffer` (the rule of
//! `stream::Sender::backlogged`): a scraper that does not read cannot make
//! the daemon build answers for it. Metrics connections are control
//! connections (`Handler::is_control`).

use std::fmt::Write as _;
use std::io::{self, Write};

use super::listener::Listener;
use super::stream::{Protocol, Sender, StreamConn};
use super::{Bound, ServeConfig};
use crate::endpoint::Endpoint;
use crate::reactor::stats::{Stat, StatKind};
use crate::reactor::{Context, Stats};
use crate::sock;
use crate::wire::http::{self, Framing, HeadScan, Refusal};

/// Longest request body accepted (and discarded).
pub const MAX_BODY: usize = 64 * 1024;

/// Binds the metrics listener.
pub fn bind(endpoint: &Endpoint, config: &ServeConfig) -> io::Result<Bound> {
    let listener = sock::tcp_listener(endpoint.socket_addr()?, &config.binder)?;
    let local = listener.local_addr()?;
    let handler = Listener::new(
        listener,
        "metrics-listener",
        local.to_string(),
        Box::new(|stream: mio::net::TcpStream, peer| {
            Box::new(StreamConn::new(
                stream,
                "metrics-conn",
                peer,
                Http::default(),
            ))
        }),
        None,
    );
    Ok(Bound {
        handler: Box::new(handler),
        endpoint: endpoint.with_addr(local),
        detail: "HTTP: / (the page) /metrics /healthz /status".to_string(),
    })
}

// ---------------------------------------------------------------------------
// ---------------------------------------------------------------------------
// Requests

/// A request, as routing needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// Keep the connection open after answering.
    pub keep_alive: bool,
    /// Bytes of the head and body together.
    pub length: usize,
}

/// Parses one request from the front of `buf` with the daemon's HTTP
/// parser: `Ok(None)` while it is incomplete, else the request and how
/// many bytes it used (its body is skipped).
pub fn parse(buf: &[u8], scan: &mut HeadScan) -> Result<Option<Request>, Refusal> {
    let Some(head) = http::parse_request(buf, scan)? else {
        return Ok(None);
    };
    let body = match head.framing {
        Framing::Empty | Framing::UntilClose => 0,
        Framing::Length(n) if n > MAX_BODY as u64 => {
            return Err(Refusal {
                status: 413,
                why: "request body too large",
            })
        }
        Framing::Length(n) => n as usize,
        Framing::Chunked => {
            return Err(Refusal {
                status: 501,
                why: "chunked bodies are not taken here",
            })
        }
    };
    let length = head.len + body;
    if buf.len() < length {
        return Ok(None); // the body is still coming
    }
    Ok(Some(Request {
        method: head.method().to_string(),
        path: head.path().to_string(),
        keep_alive: head.keep_alive,
        length,
    }))
}

// ---------------------------------------------------------------------------
// Answers

/// A whole response: status line, headers, and the body unless `head_only`.
pub fn response(
    status: u16,
    content_type: &str,
    body: &str,
    keep_alive: bool,
    head_only: bool,
    extra: &str,
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{extra}{}\r\n",
        http::reason(status),
        body.len(),
        if keep_alive { "" } else { "Connection: close\r\n" }
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// The Content-Type of the Prometheus text format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Routes one request.
fn answer(request: &Request, cx: &mut Context) -> Vec<u8> {
    let head_only = request.method == "HEAD";
    let keep = request.keep_alive;
    let text = "text/plain; charset=utf-8";
    if super::page::serves(&request.path) {
        let (status, content_type, body, extra) =
            super::page::answer(&request.path, &request.method, cx);
        return response(status, content_type, &body, keep, head_only, &extra);
    }
    let (status, content_type, body) = match request.path.as_str() {
        "/metrics" | "/healthz" | "/status"
            if request.method != "GET" && request.method != "HEAD" =>
        {
            return response(
                405,
                text,
                "method not allowed\n",
                keep,
                false,
                "Allow: GET, HEAD\r\n",
            );
        }
        // Built once per turn of the loop, however many requests ask.
        "/metrics" => (
            200,
            PROMETHEUS_TEXT,
            cx.once_per_turn("metrics", exposition),
        ),
        "/healthz" if cx.is_shutting_down() => (503, text, "stopping\n".into()),
        "/healthz" => (200, text, "ok".into()),
        "/status" => (
            200,
            "application/json",
            cx.once_per_turn("status json", super::admin::status_json_text),
        ),
        _ => (
            404,
            text,
            "not found: try /, /metrics, /healthz or /status\n".into(),
        ),
    };
    response(status, content_type, &body, keep, head_only, "")
}

/// A label value, escaped as the text format wants.
pub fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The Prometheus text exposition of the daemon's counters.
pub fn exposition(cx: &Context) -> String {
    let reactors = cx.every_reactor();
    // The endpoints served are those the answering reactor counts for
    // (every endpoint is served by reactor 0), the admin socket aside.
    let endpoints: Vec<String> = cx
        .stats
        .endpoints
        .iter()
        .map(|one| one.endpoint.clone())
        .filter(|endpoint| !endpoint.starts_with("admin:"))
        .collect();
    render(&reactors, &endpoints, cx.stats.uptime_s(cx.now))
}

/// The family a figure of the declared list (`Stats::LIST`) belongs to,
/// and its label (name, value) when several figures share one family.
/// Figures not named here get `echoplex_NAME` (`_total` for counters), so
/// a counter added to the list shows up with no edit here.
fn family_of(stat: &Stat) -> (String, Option<(&'static str, &'static str)>) {
    const DROPPED: &str = "echoplex_dropped_total";
    const HTTP: &str = "echoplex_http_requests_total";
    let named = |name: &str| (name.to_string(), None);
    let dropped = |reason| (DROPPED.to_string(), Some(("reason", reason)));
    let http = |class| (HTTP.to_string(), Some(("class", class)));
    match stat.name {
        "connections" => named("echoplex_connections_open"),
        "accepted" => named("echoplex_connections_accepted_total"),
        "closed" => named("echoplex_connections_closed_total"),
        "timeouts" => named("echoplex_idle_timeouts_total"),
        "bytes_in" => named("echoplex_bytes_received_total"),
        "bytes_out" => named("echoplex_bytes_sent_total"),
        "datagrams_in" => named("echoplex_datagrams_received_total"),
        "datagrams_out" => named("echoplex_datagrams_sent_total"),
        "tls_handshake_us" => named("echoplex_tls_handshake_seconds_total"),
        "rejected_max_connections" => dropped("max_connections"),
        "rejected_no_fds" => dropped("no_fds"),
        "dropped_datagrams" => dropped("queue_full"),
        "filtered_datagrams" => dropped("looping_port"),
        "rate_limited" => dropped("rate_limited"),
        "http_1xx" => http("1xx"),
        "http_2xx" => http("2xx"),
        "http_3xx" => http("3xx"),
        "http_4xx" => http("4xx"),
        "http_5xx" => http("5xx"),
        "ws_upgrades" => named("echoplex_websocket_upgrades_total"),
        "ws_messages" => named("echoplex_websocket_messages_total"),
        "ws_errors" => named("echoplex_websocket_errors_total"),
        "rejected_control" => dropped("control_reserve"),
        name => match stat.kind {
            StatKind::Counter => (format!("echoplex_{name}_total"), None),
            StatKind::Gauge => (format!("echoplex_{name}"), None),
        },
    }
}

/// How many of a figure's units make the family's base unit: Prometheus
/// names carry base units (seconds), the counters count microseconds.
fn units_per_base(stat: &Stat) -> u64 {
    match stat.name {
        "tls_handshake_us" => 1_000_000,
        _ => 1,
    }
}

/// One family being written: its samples in the order they come.
struct Family {
    name: String,
    kind: &'static str,
    help: String,
    /// See `units_per_base`.
    units_per_base: u64,
    samples: Vec<(String, u64)>,
}

/// The exposition of the counters of every reactor (`reactors[i]`): with
/// one reactor the samples carry no `reactor` label; with several, each
/// reactor's sample has `reactor="i"` and PromQL's `sum` gives the total.
pub fn render(reactors: &[Stats], endpoints: &[String], uptime: f64) -> String {
    let mut families: Vec<Family> = Vec::new();
    for stat in Stats::LIST {
        let (name, label) = family_of(stat);
        let index = match families.iter().position(|f| f.name == name) {
            Some(index) => index,
            None => {
                families.push(Family {
                    help: match label {
                        Some(("reason", _)) => {
                            "Connections and datagrams dropped, by reason.".to_string()
                        }
                        Some(("class", _)) => {
                            "HTTP answers (http:// and metrics://), by status class.".to_string()
                        }
                        _ => stat.help().replace('\n', " "),
                    },
                    kind: match stat.kind {
                        StatKind::Counter => "counter",
                        StatKind::Gauge => "gauge",
                    },
                    name,
                    units_per_base: units_per_base(stat),
                    samples: Vec::new(),
                });
                families.len() - 1
            }
        };
        for (number, stats) in reactors.iter().enumerate() {
            let mut labels = Vec::new();
            if let Some((label, value)) = label {
                labels.push(format!("{label}=\"{value}\""));
            }
            if reactors.len() > 1 {
                labels.push(format!("reactor=\"{number}\""));
            }
            // A figure endpoints have a share of is shown per endpoint
            // (the shares add up to the reactor's total).
            let shares: Vec<(String, u64)> = stats
                .endpoints
                .iter()
                .filter_map(|share| {
                    let value = share.get(stat.name)?;
                    let endpoint = format!("endpoint=\"{}\"", escape(&share.endpoint));
                    Some((label_set(&[&[endpoint], &labels[..]].concat()), value))
                })
                .collect();
            if shares.is_empty() {
                families[index]
                    .samples
                    .push((label_set(&labels), (stat.get)(stats)));
            } else {
                families[index].samples.extend(shares);
            }
        }
    }
    let mut out = String::with_capacity(4096);
    for family in &families {
        let _ = writeln!(out, "# HELP {} {}", family.name, escape_help(&family.help));
        let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind);
        for (labels, value) in &family.samples {
            if family.units_per_base == 1 {
                let _ = writeln!(out, "{}{labels} {value}", family.name);
            } else {
                let base = *value as f64 / family.units_per_base as f64;
                let _ = writeln!(out, "{}{labels} {base}", family.name);
            }
        }
    }
    let _ = writeln!(out, "# HELP echoplex_reactors Event loops serving.");
    let _ = writeln!(out, "# TYPE echoplex_reactors gauge");
    let _ = writeln!(out, "echoplex_reactors {}", reactors.len());
    let _ = writeln!(
        out,
        "# HELP echoplex_uptime_seconds Seconds since the event loop started."
    );
    let _ = writeln!(out, "# TYPE echoplex_uptime_seconds gauge");
    let _ = writeln!(out, "echoplex_uptime_seconds {:.3}", uptime);
    let _ = writeln!(
        out,
        "# HELP echoplex_endpoint_info The endpoints served, as their listening lines print them."
    );
    let _ = writeln!(out, "# TYPE echoplex_endpoint_info gauge");
    for endpoint in endpoints {
        let kind = endpoint.split(':').next().unwrap_or_default();
        let _ = writeln!(
            out,
            "echoplex_endpoint_info{{endpoint=\"{}\",kind=\"{}\"}} 1",
            escape(endpoint),
            escape(kind)
        );
    }
    out
}

/// `{a,b}`, or nothing for no labels.
fn label_set(labels: &[String]) -> String {
    if labels.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", labels.join(","))
    }
}

/// A help text, escaped as the text format wants (backslash, newline).
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

// ---------------------------------------------------------------------------
// The protocol on a connection

/// HTTP on one connection: the requests received and not yet answered
/// (`buf[start..]`), answered in order while the answers owed stay under
/// `--max-buffer` (`Sender::backlogged`).
#[derive(Debug, Default)]
pub struct Http {
    buf: Vec<u8>,
    /// Where the first request not yet answered begins in `buf`.
    start: usize,
    /// How far the head at `start` has been scanned.
    scan: HeadScan,
    close: bool,
    /// It asked for the page's summary: dropped, not paused, once the
    /// answers it owes reach `--max-buffer` (`page::is_viewer`).
    viewer: bool,
}

impl Protocol for Http {
    fn received<S: Write>(
        &mut self,
        data: &[u8],
        out: &mut Sender<'_, S>,
        cx: &mut Context,
    ) -> io::Result<()> {
        if self.close {
            return Ok(()); // answered with a close: the rest is ignored
        }
        self.buf.extend_from_slice(data);
        self.answer_held(out, cx)
    }

    fn resume<S: Write>(&mut self, out: &mut Sender<'_, S>, cx: &mut Context) -> io::Result<()> {
        self.answer_held(out, cx)
    }

    fn done(&self) -> bool {
        self.close
    }

    /// Requests not yet answered: the connection is not quiet (a shutdown
    /// serves it to its answer, `503` from `/healthz`), and they count
    /// against `--max-buffer`, so reading stops while they wait.
    fn held(&self) -> usize {
        self.buf.len() - self.start
    }

    fn is_control(&self) -> bool {
        true
    }
}

impl Http {
    /// Answers the complete requests held, in order, until the answers
    /// owed reach `--max-buffer`; the rest waits for `resume`.
    fn answer_held<S: Write>(
        &mut self,
        out: &mut Sender<'_, S>,
        cx: &mut Context,
    ) -> io::Result<()> {
        while !self.close && !out.backlogged() {
            match parse(&self.buf[self.start..], &mut self.scan) {
                Ok(Some(mut request)) => {
                    // Draining after an upgrade, or shutting down: answer,
                    // then close, so a keep-alive client (a page polling, a
                    // scraper) comes back to the new process, not this one.
                    request.keep_alive &= !cx.is_stopping();
                    self.viewer |= super::page::is_viewer(&request.path);
                    let reply = answer(&request, cx);
                    self.start += request.length;
                    self.scan.reset();
                    if !request.keep_alive {
                        self.close = true;
                    }
                    out.send(&reply, cx)?;
                }
                // Held input counts against --max-buffer (a connection stops
                // reading at that much): a request that cannot fit is refused.
                Ok(None) if self.held() >= cx.limits.max_buffer => {
                    let bad = Refusal {
                        status: 431,
                        why: "request larger than --max-buffer",
                    };
                    self.refuse(&bad, out, cx)?;
                }
                Ok(None) => break,
                Err(bad) => self.refuse(&bad, out, cx)?,
            }
        }
        if self.viewer && out.backlogged() {
            // A page polls once a second: answers piling up mean nobody
            // reads them. Dropped (and reset: bytes are owed), not kept.
            cx.stats.page_clients_dropped += 1;
            return Err(io::Error::other(
                "page viewer dropped: the answers it owes reached --max-buffer",
            ));
        }
        if self.close {
            self.buf = Vec::new();
            self.start = 0;
        } else if self.start > 0 {
            // Once per call, not once per request: a burst of pipelined
            // requests is not moved down the buffer again for each answer.
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Ok(())
    }

    /// Answers a malformed request with its status and closes.
    fn refuse<S: Write>(
        &mut self,
        bad: &Refusal,
        out: &mut Sender<'_, S>,
        cx: &mut Context,
    ) -> io::Result<()> {
        log::debug!("metrics: bad request ({}): {}", bad.status, bad.why);
        let body = format!("{}\n", bad.why);
        let reply = response(
            bad.status,
            "text/plain; charset=utf-8",
            &body,
            false,
            false,
            "",
        );
        self.close = true;
        out.send(&reply, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn ok(text: &str) -> Request {
        parse(text.as_bytes(), &mut HeadScan::default())
            .unwrap_or_else(|bad| panic!("{text:?}: {bad:?}"))
            .unwrap_or_else(|| panic!("{text:?}: incomplete"))
    }

    fn bad(text: &str) -> u16 {
        parse(text.as_bytes(), &mut HeadScan::default())
            .err()
            .unwrap_or_else(|| panic!("{text:?} was accepted"))
            .status
    }

    #[test]
    fn requests_and_keep_alive() {
        let get = ok("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(get.method, "GET");
        assert_eq!(get.path, "/metrics");
        assert!(get.keep_alive);
        assert_eq!(get.length, 34);
        assert!(!ok("GET /healthz?x=1 HTTP/1.0\r\n\r\n").keep_alive);
        assert_eq!(ok("GET /healthz?x=1 HTTP/1.0\r\n\r\n").path, "/healthz");
        assert!(ok("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(!ok("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").keep_alive);
        // A body is read past, not taken for the next request.
        let post = ok("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET");
        assert_eq!(post.length, 51);
    }

    #[test]
    fn incomplete_requests_wait() {
        for text in [
            "",
            "GET /metrics HTTP/1.1\r\n",
            "GET /metrics HTTP/1.1\r\nHost: x\r\n",
            "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab",
        ] {
            assert_eq!(
                parse(text.as_bytes(), &mut HeadScan::default()),
                Ok(None),
                "{text:?}"
            );
        }
    }

    /// The parser is wire::http's (its own tests cover the grammar); here,
    /// what metrics:// adds: bounded bodies, no chunked, and the shared
    /// strictness (bare LF is refused now, as on http://).
    #[test]
    fn malformed_requests_are_refused() {
        assert_eq!(bad("GET /metrics\r\n\r\n"), 400);
        assert_eq!(bad("GET /status HTTP/1.1\nHost: x\n\n"), 400);
        assert_eq!(bad("GET metrics HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
        assert_eq!(bad("GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n"), 505);
        assert_eq!(bad("GET /metrics HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(
            bad("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            400
        );
        assert_eq!(
            bad("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n\r\n"),
            413
        );
        assert_eq!(
            bad("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"),
            501
        );
        let huge = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
            "a".repeat(http::MAX_HEAD)
        );
        assert_eq!(bad(&huge), 431);
    }

    #[test]
    fn responses_have_length_and_close() {
        let reply =
            String::from_utf8(response(200, "text/plain", "ok", false, false, "")).expect("utf8");
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        assert!(reply.contains("Content-Length: 2\r\n"));
        assert!(reply.contains("Connection: close\r\n"));
        assert!(reply.ends_with("\r\n\r\nok"));
        let head = response(200, "text/plain", "ok", true, true, "");
        assert!(head.ends_with(b"\r\n\r\n"));
        assert!(!String::from_utf8_lossy(&head).contains("Connection"));
    }

    #[test]
    fn exposition_declares_every_family_once() {
        let mut stats = Stats::new(Instant::now());
        stats.accepted = 3;
        stats.dropped_datagrams = 2;
        let text = render(
            std::slice::from_ref(&stats),
            &["tcp://127.0.0.1:1".to_string(), "unix:/a\"b".to_string()],
            1.5,
        );
        for family in [
            "echoplex_connections_open",
            "echoplex_connections_accepted_total",
            "echoplex_bytes_received_total",
            "echoplex_bytes_sent_total",
            "echoplex_datagrams_received_total",
            "echoplex_datagrams_sent_total",
            "echoplex_dropped_total",
            "echoplex_proxy_errors_total",
            "echoplex_loop_iterations_total",
            "echoplex_events_total",
            "echoplex_reactors",
        ] {
            assert_eq!(
                text.matches(&format!("# TYPE {family} ")).count(),
                1,
                "{family}"
            );
            assert_eq!(
                text.matches(&format!("# HELP {family} ")).count(),
                1,
                "{family}"
            );
        }
        assert!(text.contains("echoplex_connections_accepted_total 3\n"));
        assert!(text.contains("echoplex_dropped_total{reason=\"queue_full\"} 2\n"));
        assert!(text.contains("endpoint=\"unix:/a\\\"b\""), "{text}");
        // Endpoints: their shares replace the total.
        let mut shared = Stats::new(Instant::now());
        shared.bytes_in = 10;
        let mut one = crate::reactor::EndpointStats::new("tcp://127.0.0.1:1".into());
        one.bytes_in = 4;
        let mut other = crate::reactor::EndpointStats::new("udp://127.0.0.1:2".into());
        other.bytes_in = 6;
        shared.endpoints = vec![one, other];
        let text = render(std::slice::from_ref(&shared), &[], 1.0);
        assert!(text.contains("echoplex_bytes_received_total{endpoint=\"tcp://127.0.0.1:1\"} 4\n"));
        assert!(text.contains("echoplex_bytes_received_total{endpoint=\"udp://127.0.0.1:2\"} 6\n"));
        assert!(!text.contains("echoplex_bytes_received_total 10"));
        assert!(
            text.contains("echoplex_events_total 0\n"),
            "no endpoint share: the total"
        );
        // Several reactors: one sample each, labelled.
        let two = render(&[stats.clone(), stats], &[], 1.0);
        assert!(two.contains("echoplex_connections_accepted_total{reactor=\"1\"} 3\n"));
        assert!(two.contains("echoplex_dropped_total{reason=\"queue_full\",reactor=\"0\"} 2\n"));
        assert!(two.contains("echoplex_reactors 2\n"));
    }
}
