//! `http://HOST:PORT`: every request answered with a JSON description of
//! itself, and WebSocket (RFC 6455) upgrades on any path, messages echoed.
//!
//! A `Protocol` of the shared `StreamConn`, so the PROXY preamble, the
//! buffers, backpressure, the idle limit and shutdown are the ones every
//! stream kind has. Its states: a request head awaited, a body being read
//! (`Content-Length` or chunked), an answer held by `echo_delay` (a reactor
//! timer: the loop serves everyone else meanwhile), WebSocket frames, or
//! closing (answered with `Connection: close`; the rest is ignored).
//!
//! Answers owed bound parsing: the next pipelined request is parsed only
//! while what is owed to the peer is under `--max-buffer`; what is read
//! meanwhile is held and counts against the same bound, so a client that
//! pipelines without reading stops being read (`StreamConn::resume` goes
//! on once the answers drain: `Sender::backlogged`, `Protocol::resume`). An idle keep-alive connection holds no
//! buffer: its state is a few words (see `an_idle_http_connection_is_small`).

use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::Duration;

use log::{trace, Level};

use super::listener::Listener;
use super::proxy;
use super::stream::{Protocol, Sender, StreamConn, PROTOCOL_TIMERS};
use super::{Bound, ServeConfig};
use crate::endpoint::Endpoint;
use crate::log_limited;
use crate::reactor::{Context, Reason, Stats};
use crate::sock;
use crate::wire::http::{self as wire, ChunkedDecoder, Framing, HeadScan, Refusal, RequestHead};
use crate::wire::websocket::{self as ws, opcode};

mod websocket;
use websocket::{MAX_HEADER_AND_CONTROL, WS_SLACK};

/// The timer of an answer held by `echo_delay`.
const DELAY: Reason = Reason(PROTOCOL_TIMERS);
/// Longest `echo_delay`.
pub const MAX_DELAY: Duration = Duration::from_secs(60);

/// Input held between reads that is kept without shrinking its buffer.
const SMALL_HELD: usize = 4096;

/// Binds an HTTP echo listener.
pub fn bind(endpoint: &Endpoint, config: &ServeConfig) -> io::Result<Bound> {
    let listener = sock::tcp_listener(endpoint.socket_addr()?, &config.binder)?;
    let local = listener.local_addr()?;
    let proxy = endpoint.options.proxy;
    let handler = Listener::new(
        listener,
        "http-listener",
        local.to_string(),
        Box::new(move |stream: mio::net::TcpStream, peer| {
            // The address this connection reached (the listener's may be 0.0.0.0).
            let here = stream.local_addr().unwrap_or(local);
            let conn = StreamConn::new(stream, "http-conn", peer, HttpEcho::new(peer, here));
            Box::new(if proxy { conn.with_proxy() } else { conn })
        }),
        None,
    );
    Ok(Bound {
        handler: Box::new(handler),
        endpoint: endpoint.with_addr(local),
        detail: "HTTP/1.1 echo, WebSocket on any path".to_string(),
    })
}

/// What the JSON's `tls` says about a connection that came over TLS (the
/// hook for `https://`: the TLS layer hands it to [`HttpEcho::set_tls`]
/// once its handshake is done; plain `http://` shows `null`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.3`, ...
    pub version: String,
    /// The cipher suite's name.
    pub cipher: String,
    /// The server name the client asked for.
    pub sni: Option<String>,
    /// The protocol ALPN agreed on.
    pub alpn: Option<String>,
}

/// The HTTP echo (and WebSocket) protocol of one connection.
#[derive(Debug)]
pub struct HttpEcho {
    /// The client as the JSON shows it: the PROXY-carried one where `?proxy`.
    client: SocketAddr,
    /// The address the client reached.
    local: SocketAddr,
    /// Set by the TLS layer (`https://`).
    tls: Option<Box<TlsInfo>>,
    /// Bytes read and not yet used: a head in part, pipelined requests,
    /// a frame in part. Empty (no allocation) when idle.
    raw: Vec<u8>,
    /// How far into `raw` the head has been scanned.
    scan: HeadScan,
    /// Requests seen on this connection.
    requests: u32,
    /// Parsing stopped because answers owed reached `--max-buffer`.
    paused: bool,
    state: State,
}

#[derive(Debug, Default)]
enum State {
    /// Waiting for a request head.
    #[default]
    Head,
    /// A head parsed, its body being read.
    Body(Box<Pending>),
    /// An answer held until its `echo_delay` timer.
    Delayed(Box<Delayed>),
    /// Upgraded: WebSocket frames.
    WebSocket(Box<ws::Assembler>),
    /// Answered with a close: what follows is ignored.
    Closing,
}

/// A request whose body is still coming.
#[derive(Debug)]
struct Pending {
    head: RequestHead<Vec<u8>>,
    body: Vec<u8>,
    rest: BodyRest,
}

#[derive(Debug)]
enum BodyRest {
    /// Bytes still to come.
    Length(u64),
    Chunked(ChunkedDecoder),
}

/// An answer held by `echo_delay`.
#[derive(Debug)]
struct Delayed {
    answer: Vec<u8>,
    /// Where its head's blank line begins (a shutdown adds a header there).
    head_end: usize,
    /// Close after sending it.
    close: bool,
}

impl HttpEcho {
    /// The protocol of a connection from `peer` to `local`.
    pub fn new(peer: SocketAddr, local: SocketAddr) -> Self {
        HttpEcho {
            client: peer,
            local,
            tls: None,
            raw: Vec::new(),
            scan: HeadScan::default(),
            requests: 0,
            paused: false,
            state: State::Head,
        }
    }

    /// The TLS layer's hook: what the JSON's `tls` object says.
    pub fn set_tls(&mut self, info: TlsInfo) {
        self.tls = Some(Box::new(info));
    }

    /// Ends the connection after what is owed: nothing more is read.
    fn close(&mut self) {
        self.state = State::Closing;
        self.raw = Vec::new();
    }

    /// Uses what `raw` holds (after new bytes, a timer, or a drain).
    fn reprocess<S: Write>(&mut self, out: &mut Sender<'_, S>, cx: &mut Context) -> io::Result<()> {
        let mut raw = std::mem::take(&mut self.raw);
        let result = self.process(&raw, out, cx);
        if matches!(self.state, State::Closing) {
            return result.map(drop);
        }
        let used = *result.as_ref().unwrap_or(&raw.len());
        raw.drain(..used);
        // An idle connection keeps no buffer, and one waiting on a few
        // bytes of its next frame or head no room for the last big one.
        if raw.is_empty() {
            raw = Vec::new();
        } else if raw.capacity() > SMALL_HELD.max(2 * raw.len()) {
            raw.shrink_to(SMALL_HELD.max(raw.len()));
        }
        self.raw = raw;
        result.map(drop)
    }

    /// Uses `input` as far as it goes; returns the bytes used (the rest is
    /// a message in part, or held while answers owed are at the bound).
    fn process<S: Write>(
        &mut self,
        input: &[u8],
        out: &mut Sender<'_, S>,
        cx: &mut Context,
    ) -> io::Result<usize> {
        let limit = cx.limits.max_buffer;
        let mut at = 0;
        self.paused = false;
        loop {
            match &mut self.state {
                State::Closing => return Ok(input.len()),
                State::Delayed(_) => return Ok(at), // answers go in order
                State::WebSocket(_) => return self.frames(input, at, out, cx),
                State::Body(pending) => {
                    let (used, done) = match pending.feed(&input[at..], limit) {
                        Ok(progress) => progress,
                        Err(refusal) => {
                            self.refuse(refusal, out, cx)?;
                            return Ok(input.len());
                        }
                    };
                    at += used;
                    if !done {
                        return Ok(at);
                    }
                    if let State::Body(pending) = std::mem::take(&mut self.state) {
                        self.answer(&pending.head, &pending.body, out, cx)?;
                    }
                }
                State::Head => {
                    if at == input.len() {
                        return Ok(at);
                    }
                    if out.backlogged() {
                        self.paused = true;
                        return Ok(at);
                    }
                    let head = match wire::parse_request(&input[at..], &mut self.scan) {
                        Ok(Some(head)) => head,
                        Ok(None) if input.len() - at >= limit => {
                            let refusal = Refusal {
                                status: 431,
                                why: "request head over --max-buffer",
                            };
                            self.refuse(refusal, out, cx)?;
                            return Ok(input.len());
                        }
                        Ok(None) => return Ok(at),
                        Err(refusal) => {
                            self.refuse(refusal, out, cx)?;
                            return Ok(input.len());
                        }
                    };
                    self.scan.reset();
                    self.requests = self.requests.saturating_add(1);
                    let body_start = at + head.len;
                    let arrived = input.len() - body_start;
                    match head.framing {
                        _ if head.is_websocket_upgrade() => {
                            at = body_start;
                            self.upgrade(&head, out, cx)?;
                        }
                        Framing::Empty | Framing::UntilClose => {
                            at = body_start;
                            self.answer(&head, &[], out, cx)?;
                        }
                        Framing::Length(n) if n > limit as u64 => {
                            let refusal = Refusal {
                                status: 413,
                                why: "body over --max-buffer",
                            };
                            self.refuse(refusal, out, cx)?;
                            return Ok(input.len());
                        }
                        Framing::Length(n) if arrived as u64 >= n => {
                            // The whole body is here: answered without a copy.
                            at = body_start + n as usize;
                            self.answer(&head, &input[body_start..at], out, cx)?;
                        }
                        framing => {
                            if head.expect_continue && arrived == 0 {
                                out.send(b"HTTP/1.1 100 Continue\r\n\r\n", cx)?;
                                cx.stats.http_1xx += 1;
                            }
                            let rest = match framing {
                                Framing::Length(n) => BodyRest::Length(n),
                                _ => BodyRest::Chunked(ChunkedDecoder::default()),
                            };
                            self.state = State::Body(Box::new(Pending {
                                head: head.into_owned(),
                                body: Vec::new(),
                                rest,
                            }));
                            at = body_start;
                        }
                    }
                }
            }
        }
    }

    /// Answers one whole request.
    fn answer<B: AsRef<[u8]>, S: Write>(
        &mut self,
        head: &RequestHead<B>,
        body: &[u8],
        out: &mut Sender<'_, S>,
        cx: &mut Context,
    ) -> io::Result<()> {
        let controls = match Controls::of(head) {
            Ok(controls) => controls,
            Err(why) => Controls {
                status: 400,
                delay: Duration::ZERO,
                raw: false,
                error: Some(why),
            },
        };
        let keep_alive = head.keep_alive && !cx.is_shutting_down();
        let status = controls.status;
        let mut content = Vec::new();
        let content_type: &[u8] = if let Some(why) = controls.error {
            content.extend_from_slice(why.as_bytes());
            content.push(b'\n');
            b"text/plain; charset=utf-8"
        } else if controls.raw {
            content.extend_from_slice(body);
            head.header("content-type")
                .unwrap_or(b"application/octet-stream")
        } else {
            self.describe(head, body, &mut content);
            b"application/json"
        };
        if wire::bodiless(status) {
            content.clear();
        }
        let mut answer = Vec::with_capacity(160 + content.len());
        wire::write_status_line(&mut answer, status);
        wire::write_header(&mut answer, "Server", b"echoplex");
        if !wire::bodiless(status) {
            wire::write_header(&mut answer, "Content-Type", content_type);
            answer.extend_from_slice(b"Content-Length: ");
            wire::push_number(&mut answer, content.len() as u64);
            answer.extend_from_slice(b"\r\n");
        }
        if !keep_alive {
            answer.extend_from_slice(b"Connection: close\r\n");
        } else if head.minor == 0 {
            answer.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        let head_end = answer.len();
        answer.extend_from_slice(b"\r\n");
        if head.method() != "HEAD" {
            answer.extend_from_slice(&content);
        }
        count(cx.stats, status);
        trace!(
            "http {} #{}: {} {} {} -> {status}{}",
            self.client,
            self.requests,
            head.method(),
            head.target(),
            head.version(),
            if controls.delay.is_zero() {
                String::new()
            } else {
                format!(" after {:?}", controls.delay)
            }
        );
        if !controls.delay.is_zero() {
            cx.set_timer(cx.now + controls.delay, DELAY);
            self.state = State::Delayed(Box::new(Delayed {
                answer,
                head_end,
                close: !keep_alive,
            }));
            return Ok(());
        }
        out.send(&answer, cx)?;
        if !keep_alive {
            self.close();
        }
        Ok(())
    }

    /// The JSON description of a request.
    fn describe<B: AsRef<[u8]>>(&self, head: &RequestHead<B>, body: &[u8], out: &mut Vec<u8>) {
        out.reserve(256 + body.len());
        out.extend_from_slice(b"{\"method\":");
        json_string(out, head.method().as_bytes());
        out.extend_from_slice(b",\"path\":");
        json_string(out, head.path().as_bytes());
        out.extend_from_slice(b",\"query\":");
        json_string(out, head.query().unwrap_or_default().as_bytes());
        out.extend_from_slice(b",\"version\":\"");
        out.extend_from_slice(head.version().as_bytes());
        out.extend_from_slice(b"\",\"headers\":[");
        for (i, (name, value)) in head.headers().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'[');
            json_string(out, name.as_bytes());
            out.push(b',');
            json_string(out, wire::lossy(value).as_bytes());
            out.push(b']');
        }
        out.push(b']');
        if std::str::from_utf8(body).is_ok() {
            out.extend_from_slice(b",\"body\":");
            json_string(out, body);
        }
        out.extend_from_slice(b",\"body_bytes\":");
        wire::push_number(out, body.len() as u64);
        let _ = write!(
            out,
            ",\"client\":\"{}\",\"local\":\"{}\",\"request_on_connection\":{},\"tls\":",
            self.client, self.local, self.requests
        );
        match &self.tls {
            None => out.extend_from_slice(b"null"),
            Some(tls) => {
                out.extend_from_slice(b"{\"version\":");
                json_string(out, tls.version.as_bytes());
                out.extend_from_slice(b",\"cipher\":");
                json_string(out, tls.cipher.as_bytes());
                for (key, value) in [("sni", &tls.sni), ("alpn", &tls.alpn)] {
                    let _ = write!(out, ",\"{key}\":");
                    match value {
                        Some(value) => json_string(out, value.as_bytes()),
                        None => out.extend_from_slice(b"null"),
                    }
                }
                out.push(b'}');
            }
        }
        out.extend_from_slice(b"}\n");
    }

    /// A request refused: its status, a line saying why, and a close.
    fn refuse<S: Write>(
        &mut self,
        refusal: Refusal,
        out: &mut Sender<'_, S>,
        cx: &mut Context,
    ) -> io::Result<()> {
        log_limited!(
            Level::Info,
            "http {}: refused with {}: {}",
            self.client,
            refusal.status,
            refusal.why
        );
        let mut answer = Vec::with_capacity(160);
        let body = format!("{}\n", refusal.why);
        wire::write_response_head(
            &mut answer,
            refusal.status,
            &[
                ("Server", b"echoplex"),
                ("Content-Type", b"text/plain; charset=utf-8"),
            ],
            body.len(),
            false,
        );
        answer.extend_from_slice(body.as_bytes());
        count(cx.stats, refusal.status);
        self.close();
        out.send(&answer, cx)
    }
}

impl Pending {
    /// Feeds body bytes: the bytes used, and whether the body is complete.
    fn feed(&mut self, input: &[u8], limit: usize) -> Result<(usize, bool), Refusal> {
        match &mut self.rest {
            BodyRest::Length(left) => {
                let take = input
                    .len()
                    .min(usize::try_from(*left).unwrap_or(usize::MAX));
                self.body.extend_from_slice(&input[..take]);
                *left -= take as u64;
                Ok((take, *left == 0))
            }
            BodyRest::Chunked(decoder) => {
                let used = decoder.decode(input, &mut self.body, limit)?;
                Ok((used, decoder.is_done()))
            }
        }
    }
}

/// Counts an answer by its status class.
fn count(stats: &mut Stats, status: u16) {
    match status / 100 {
        1 => stats.http_1xx += 1,
        2 => stats.http_2xx += 1,
        3 => stats.http_3xx += 1,
        4 => stats.http_4xx += 1,
        _ => stats.http_5xx += 1,
    }
}

/// The echo controls of one request, from its query or its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Controls {
    status: u16,
    delay: Duration,
    raw: bool,
    /// A control that is not valid: answered with 400 and this line.
    error: Option<&'static str>,
}

impl Controls {
    fn of<B: AsRef<[u8]>>(head: &RequestHead<B>) -> Result<Controls, &'static str> {
        let mut controls = Controls {
            status: 200,
            delay: Duration::ZERO,
            raw: false,
            error: None,
        };
        let query = head.query().unwrap_or_default();
        let param = |key: &str| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
                .map(str::as_bytes)
        };
        let get = |key: &str, header: &str| param(key).or_else(|| head.header(header));
        if let Some(code) = get("echo_code", "x-echo-code") {
            controls.status = std::str::from_utf8(code.trim_ascii())
                .ok()
                .filter(|text| text.len() == 3)
                .and_then(|text| text.parse().ok())
                .filter(|code| (200..=599).contains(code))
                .ok_or("echo_code must be a status from 200 to 599")?;
        }
        if let Some(delay) = get("echo_delay", "x-echo-delay") {
            controls.delay = parse_delay(delay)
                .ok_or("echo_delay must be a duration up to 60s (250ms, 1.5s)")?;
        }
        if let Some(body) = get("echo_body", "x-echo-body") {
            if !body.trim_ascii().eq_ignore_ascii_case(b"raw") {
                return Err("echo_body takes only 'raw'");
            }
            controls.raw = true;
        }
        Ok(controls)
    }
}

/// `250ms`, `1.5s`, `2` (seconds), `100us`: at most [`MAX_DELAY`].
fn parse_delay(text: &[u8]) -> Option<Duration> {
    let text = std::str::from_utf8(text.trim_ascii()).ok()?;
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else {
        (text, 1.0)
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let secs = number.parse::<f64>().ok()? * scale;
    let delay = Duration::try_from_secs_f64(secs).ok()?;
    (delay <= MAX_DELAY).then_some(delay)
}

/// Appends `bytes` (UTF-8) as a JSON string.
fn json_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let mut start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1F | 0x7F => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{:04x}", byte);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

impl Protocol for HttpEcho {
    fn secured(&mut self, tls: &crate::tls::Negotiated) {
        self.set_tls(TlsInfo {
            version: tls.version.to_string(),
            cipher: tls.cipher.clone(),
            sni: tls.sni.clone(),
            alpn: tls.alpn.clone(),
        });
    }

    fn received<S: Write>(
        &mut self,
        data: &[u8],
        out: &mut Sender<'_, S>,
        cx: &mut Context,
    ) -> io::Result<()> {
        if self.raw.is_empty() {
            // Nothing held: parse straight from the read buffer.
            let used = self.process(data, out, cx)?;
            if used < data.len() && !matches!(self.state, State::Closing) {
                self.raw.extend_from_slice(&data[used..]);
            }
            return Ok(());
        }
        self.raw.extend_from_slice(data);
        self.reprocess(out, cx)
    }

    fn done(&self) -> bool {
        matches!(self.state, State::Closing)
    }

    /// An answer held by `echo_delay` is still owed after the client's EOF
    /// (`printf 'GET /?echo_delay=1s ...' | nc -N` half-closes at once).
    fn answer_due(&self) -> bool {
        matches!(self.state, State::Delayed(_))
    }

    /// Input held (counts against `--max-buffer`), a body being read, an
    /// answer held by its delay. A body or a WebSocket frame in part is
    /// counted a little short (one byte; a frame header and a control
    /// frame), so one of exactly `--max-buffer` bytes still leaves room to
    /// read its end, and a ping still fits between the fragments of one.
    fn held(&self) -> usize {
        match &self.state {
            State::Head | State::Closing => self.raw.len(),
            State::Body(pending) => self.raw.len() + pending.body.len().saturating_sub(1),
            State::Delayed(delayed) => self.raw.len() + delayed.answer.len(),
            State::WebSocket(assembler) => {
                let raw = if self.paused {
                    self.raw.len()
                } else {
                    self.raw.len().saturating_sub(WS_SLACK)
                };
                assembler.held() + raw
            }
        }
    }

    fn resume<S: Write>(&mut self, out: &mut Sender<'_, S>, cx: &mut Context) -> io::Result<()> {
        if self.paused && !self.raw.is_empty() {
            self.reprocess(out, cx)?;
        }
        Ok(())
    }

    fn timer<S: Write>(
        &mut self,
        reason: Reason,
        out: &mut Sender<'_, S>,
        cx: &mut Context,
    ) -> io::Result<()> {
        if reason != DELAY || !matches!(self.state, State::Delayed(_)) {
            return Ok(());
        }
        let State::Delayed(mut delayed) = std::mem::take(&mut self.state) else {
            return Ok(());
        };
        if cx.is_shutting_down() && !delayed.close {
            let at = delayed.head_end;
            delayed
                .answer
                .splice(at..at, b"Connection: close\r\n".iter().copied());
            delayed.close = true;
        }
        out.send(&delayed.answer, cx)?;
        if delayed.close {
            self.close();
            return Ok(());
        }
        if !self.raw.is_empty() {
            self.reprocess(out, cx)?;
        }
        Ok(())
    }

    fn proxied(&mut self, header: Option<&proxy::Header>) {
        if let Some(proxy::Addresses::Inet { source, .. }) = header.map(|h| &h.addresses) {
            self.client = *source;
        }
    }

    fn shutdown<S: Write>(&mut self, out: &mut Sender<'_, S>, cx: &mut Context) -> io::Result<()> {
        if matches!(self.state, State::Delayed(_)) {
            // The daemon is going away: the answer owed goes now (with
            // Connection: close) rather than be cut by the grace period.
            return self.timer(DELAY, out, cx);
        }
        if matches!(self.state, State::WebSocket(_)) {
            let mut frame = Vec::with_capacity(MAX_HEADER_AND_CONTROL);
            let payload = ws::close_payload(ws::close::GOING_AWAY, "shutting down");
            ws::encode_frame(&mut frame, true, opcode::CLOSE, &payload, None);
            self.close();
            out.send(&frame, cx)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_http_connection_is_small() {
        let tcp =
            std::mem::size_of::<super::super::stream::EchoConn<mio::net::TcpStream, SocketAddr>>();
        let http = std::mem::size_of::<StreamConn<mio::net::TcpStream, SocketAddr, HttpEcho>>();
        eprintln!("EchoConn {tcp} B, HTTP connection {http} B");
        assert!(http - tcp <= 160, "{http} - {tcp}");
    }

    #[test]
    fn delays_and_codes_parse_strictly() {
        assert_eq!(parse_delay(b"250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_delay(b"1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_delay(b"2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_delay(b"60s"), Some(MAX_DELAY));
        for bad in [&b"61s"[..], b"-1s", b"1e3", b"ms", b"", b"1h", b"inf"] {
            assert_eq!(parse_delay(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn json_strings_escape_what_json_needs() {
        let mut out = Vec::new();
        json_string(&mut out, "a\"b\\c\nd\u{1}é".as_bytes());
        assert_eq!(String::from_utf8_lossy(&out), "\"a\\\"b\\\\c\\nd\\u0001é\"");
        let parsed: String = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(parsed, "a\"b\\c\nd\u{1}é");
    }
}
