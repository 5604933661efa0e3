//! HTTP/1.1 and WebSocket, the client's side, over a probe connection
//! ([`BoundedConn`]): what `client` and `ping` speak on `http://` and `ws://`, and
//! what `bench` asks once before a run (is this echoplex?). Every format is
//! `wire`'s (response heads, chunked bodies, frames); this file only waits
//! for bytes, bounded by the connection's timeout. TLS lives below, in
//! the socket, so `https://`/`wss://` are this same code over another
//! session.

use std::io;
use std::time::Instant;

use super::duration::show;
use super::payload::nonce;
use super::socket::{wait, BoundedConn};
use super::tls::TlsClient;
use crate::endpoint::{Endpoint, Target};
use crate::error::{Exit, Failure};
use crate::wire::http::{self as wire, ChunkedDecoder, Framing, ResponseHead};
use crate::wire::websocket::{self as ws, Event, Role};

/// Largest body a client keeps (`client`, `ping`): an answer bigger than
/// this is an error, not an unbounded buffer.
pub const MAX_BODY: usize = 64 << 20;

/// The `Host` header for an endpoint: `host:port`, IPv6 in brackets.
pub fn host_header(endpoint: &Endpoint) -> String {
    match &endpoint.target {
        Target::Inet { host, port } if host.contains(':') => format!("[{host}]:{port}"),
        Target::Inet { host, port } => format!("{host}:{port}"),
        _ => "localhost".to_string(),
    }
}

/// True for an answer from echoplex (`Server: echoplex`): its echoes can
/// be verified byte for byte.
pub fn is_echoplex(head: &ResponseHead) -> bool {
    head.header("server")
        .is_some_and(|value| value.trim_ascii().eq_ignore_ascii_case(b"echoplex"))
}

/// One answer: its head and its whole body.
#[derive(Debug)]
pub struct Answer {
    /// The head, headers in order.
    pub head: ResponseHead,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Answer {
    /// `HTTP/1.1 200 OK`.
    pub fn status_line(&self) -> String {
        format!(
            "HTTP/1.{} {} {}",
            self.head.minor, self.head.status, self.head.reason
        )
    }
}

/// An HTTP/1.1 client connection: requests go out one at a time, answers
/// are read whole (keep-alive, chunked, or until close).
#[derive(Debug)]
pub struct HttpConn {
    conn: BoundedConn,
    /// Bytes received and not yet consumed.
    buf: Vec<u8>,
    /// The `Host` header.
    host: String,
    /// The server closed after its last answer.
    closed: bool,
}

impl HttpConn {
    /// Connects; every wait afterwards is bounded by `timeout`.
    /// `tls`: the session for `https://` (see `TlsArgs::client`).
    pub fn connect(
        endpoint: &Endpoint,
        timeout: std::time::Duration,
        tls: Option<&TlsClient>,
    ) -> Result<HttpConn, Failure> {
        Ok(HttpConn {
            conn: BoundedConn::connect(endpoint, timeout, tls)?,
            buf: Vec::new(),
            host: host_header(endpoint),
            closed: false,
        })
    }

    /// The endpoint as written.
    pub fn name(&self) -> &str {
        self.conn.name()
    }

    /// False once the server said it closes (or closed).
    pub fn reusable(&self) -> bool {
        !self.closed
    }

    /// Sends one request and reads its answer (interim 1xx skipped).
    pub fn request(
        &mut self,
        method: &str,
        target: &str,
        extra: &[(&str, &[u8])],
        body: Option<&[u8]>,
    ) -> Result<Answer, Failure> {
        let mut out = Vec::with_capacity(256 + body.map_or(0, <[u8]>::len));
        wire::write_request_head(
            &mut out,
            method,
            target,
            &self.host,
            extra,
            body.map(<[u8]>::len),
        );
        if let Some(body) = body {
            out.extend_from_slice(body);
        }
        self.conn.send(&out)?;
        loop {
            let answer = self.read_answer(method == "HEAD")?;
            // 100 Continue and other interim answers precede the real one.
            if !(100..200).contains(&answer.head.status) || answer.head.status == 101 {
                return Ok(answer);
            }
        }
    }

    /// Reads more bytes; `Ok(false)` at the server's EOF.
    fn fill(&mut self) -> Result<bool, Failure> {
        let mut chunk = [0u8; 16 * 1024];
        let deadline = Instant::now() + self.conn.timeout();
        loop {
            match self.conn.sock().recv(&mut chunk) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(true);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    if wait(self.conn.as_raw_fd(), libc::POLLIN, deadline)? == 0 {
                        return Err(Failure::new(
                            Exit::Timeout,
                            format!(
                                "no answer from {} within {}",
                                self.conn.name(),
                                show(self.conn.timeout())
                            ),
                        ));
                    }
                }
                Err(err) => return Err(self.conn.failure(&err)),
            }
        }
    }

    fn closed_early(&self, what: &str) -> Failure {
        Failure::new(
            Exit::Io,
            format!("{}: connection closed by peer {what}", self.conn.name()),
        )
    }

    fn bad(&self, why: &str) -> Failure {
        Failure::failed(format!("{}: not an HTTP answer: {why}", self.conn.name()))
    }

    /// Reads one answer, head and body.
    fn read_answer(&mut self, head_request: bool) -> Result<Answer, Failure> {
        let head = loop {
            match wire::parse_response(&self.buf, head_request) {
                Ok(Some(head)) => break head,
                Ok(None) => {
                    if !self.fill()? {
                        return Err(if self.buf.is_empty() {
                            self.closed_early("before answering")
                        } else {
                            self.bad("the connection ended inside the head")
                        });
                    }
                }
                Err(refusal) => return Err(self.bad(refusal.why)),
            }
        };
        self.buf.drain(..head.len);
        let mut body = Vec::new();
        match head.framing {
            Framing::Empty => {}
            Framing::Length(n) => {
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                if n > MAX_BODY {
                    return Err(self.bad("a body over 64 MiB"));
                }
                while self.buf.len() < n {
                    if !self.fill()? {
                        return Err(self.closed_early("inside the body"));
                    }
                }
                body = self.buf.drain(..n).collect();
            }
            Framing::Chunked => {
                let mut decoder = ChunkedDecoder::default();
                loop {
                    let used = decoder
                        .decode(&self.buf, &mut body, MAX_BODY)
                        .map_err(|refusal| self.bad(refusal.why))?;
                    self.buf.drain(..used);
                    if decoder.is_done() {
                        break;
                    }
                    if !self.fill()? {
                        return Err(self.closed_early("inside a chunked body"));
                    }
                }
            }
            Framing::UntilClose => {
                while self.fill()? {
                    if self.buf.len() > MAX_BODY {
                        return Err(self.bad("a body over 64 MiB"));
                    }
                }
                body = std::mem::take(&mut self.buf);
            }
        }
        self.closed |= !head.keep_alive;
        Ok(Answer { head, body })
    }
}

/// A message or control frame from a WebSocket server.
#[derive(Debug, PartialEq, Eq)]
pub enum WsEvent {
    /// A whole message: its opcode and payload.
    Message(u8, Vec<u8>),
    /// A pong and its payload.
    Pong(Vec<u8>),
    /// The server closed: its code and reason.
    Close(Option<u16>, String),
}

/// A WebSocket client connection (RFC 6455): masked frames out, the
/// server's frames reassembled into messages; a server's ping is answered.
#[derive(Debug)]
pub struct WsConn {
    http: HttpConn,
    assembler: ws::Assembler,
    /// Masking keys (xorshift): a client must mask, unpredictably enough
    /// that a cache in the path cannot be poisoned by chosen bytes.
    mask_state: u64,
}

/// Largest message a tool takes back.
const MAX_MESSAGE: usize = 16 << 20;

impl WsConn {
    /// Connects and upgrades on `endpoint`'s path: `101` with the right
    /// `Sec-WebSocket-Accept`, else an error naming what came instead.
    pub fn connect(
        endpoint: &Endpoint,
        timeout: std::time::Duration,
        tls: Option<&TlsClient>,
    ) -> Result<WsConn, Failure> {
        let mut http = HttpConn::connect(endpoint, timeout, tls)?;
        let mut state = nonce() | 1;
        let mut key_bytes = [0u8; 16];
        for byte in &mut key_bytes {
            *byte = xorshift(&mut state) as u8;
        }
        let key = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(key_bytes)
        };
        let answer = http.request(
            "GET",
            &endpoint.resource.target(),
            &[
                ("Upgrade", b"websocket"),
                ("Connection", b"Upgrade"),
                ("Sec-WebSocket-Key", key.as_bytes()),
                ("Sec-WebSocket-Version", b"13"),
            ],
            None,
        )?;
        if answer.head.status != 101 {
            return Err(Failure::failed(format!(
                "{}: no WebSocket upgrade: {}",
                http.name(),
                answer.status_line()
            )));
        }
        let accepted = answer
            .head
            .header("sec-websocket-accept")
            .is_some_and(|accept| ws::accept_matches(key.as_bytes(), accept));
        if !accepted {
            return Err(Failure::failed(format!(
                "{}: the upgrade's Sec-WebSocket-Accept is wrong",
                http.name()
            )));
        }
        Ok(WsConn {
            http,
            assembler: ws::Assembler::default(),
            mask_state: state,
        })
    }

    /// The endpoint as written.
    pub fn name(&self) -> &str {
        self.http.name()
    }

    /// Sends one frame (masked), whole.
    pub fn send(&mut self, op: u8, payload: &[u8]) -> Result<(), Failure> {
        let key = (xorshift(&mut self.mask_state) as u32).to_ne_bytes();
        let mut frame = Vec::with_capacity(payload.len() + ws::MAX_HEADER);
        ws::encode_frame(&mut frame, true, op, payload, Some(key));
        self.http.conn.send(&frame)
    }

    /// Sends a close with `code` (no reason).
    pub fn close(&mut self, code: u16) -> Result<(), Failure> {
        self.send(ws::opcode::CLOSE, &ws::close_payload(code, ""))
    }

    /// The next message, pong or close; a ping is answered on the way.
    pub fn recv(&mut self) -> Result<WsEvent, Failure> {
        loop {
            let parsed = ws::parse_frame(&self.http.buf, Role::Client, MAX_MESSAGE as u64)
                .map_err(|v| Failure::failed(format!("{}: bad frame: {}", self.name(), v.why)))?;
            let Some((head, payload)) = parsed else {
                if !self.http.fill()? {
                    return Err(self.http.closed_early("without a close frame"));
                }
                continue;
            };
            let payload = payload.to_vec();
            self.http.buf.drain(..head.header_len + payload.len());
            let name = self.http.name().to_string();
            let event = match self
                .assembler
                .frame(&head, &payload, MAX_MESSAGE)
                .map_err(|v| Failure::failed(format!("{name}: bad frame: {}", v.why)))?
            {
                Event::Message(op, data) => WsEvent::Message(op, data.to_vec()),
                Event::Pong(data) => WsEvent::Pong(data.to_vec()),
                Event::Close(code, reason) => WsEvent::Close(code, reason.to_string()),
                Event::Ping(data) => {
                    let data = data.to_vec();
                    self.send(ws::opcode::PONG, &data)?;
                    continue;
                }
                Event::Fragment => continue,
            };
            return Ok(event);
        }
    }
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

impl BoundedConn {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.sock().as_raw_fd()
    }
}
