//! The HTTP and WebSocket traffic (`bench http://`, `bench ws://`): the
//! stream traffic's loop (depth in flight, open loop, churn, reconnect), with
//! messages framed as requests or frames and answers read by `wire`'s
//! parsers. Three ways to speak, chosen once before the run ([`learn`]):
//! - echoplex (`Server: echoplex`): `POST` the payload with
//!   `echo_body=raw`; every body is checked byte for byte;
//! - any other server: `GET` the path; answers are counted by status class
//!   as wrk counts them, bodies read past (`Content-Length`, chunked, or
//!   until the server closes) and not checked;
//! - WebSocket: after the upgrade, binary messages (masked), echoes
//!   checked byte for byte.
//!
//! A server that answers with `Connection: close` (or a body that ends
//! with the connection) gets a new connection, counted as a reconnect, and
//! the requests still owed on the old one are sent again on it.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::{Events, Poll, Token};

use super::link::{is_server_close, write_out, WriteFailed};
use super::types::{Speech, Web, WorkerJob, WorkerResult};
use super::worker::{poll_once, Ctx, Traffic};
use crate::endpoint::Endpoint;
use crate::error::describe;
use crate::probe::http::{host_header, is_echoplex, HttpConn};
use crate::probe::interrupt::stopped;
use crate::probe::tls::TlsClient;
use crate::wire::http::{self as wire};
use crate::wire::websocket::{self as ws};

mod connection;
mod reader;
use connection::{connect_one, encode, xorshift, State, WebLink};
use reader::{Reader, Reading, Step};

/// Bytes read per `read` call, shared by a worker's connections.
const READ_BUFFER: usize = 256 * 1024;

/// Open loop: a connection holding this many unsent bytes takes no new
/// message until it has written some (the server is not reading).
const MAX_UNSENT: usize = 256 * 1024;

/// Open loop: the most messages one connection may have in flight.
const MAX_IN_FLIGHT: usize = 1024;

/// Any other server: the longest body read past (chunked or until close).
const MAX_FOREIGN_BODY: usize = 64 << 20;

/// Asks the server once, before the run, what it is: a `GET` of the path;
/// `Server: echoplex` means echoes can be verified. WebSocket needs no
/// question: the upgrade of every connection tells.
pub fn learn(
    endpoint: &Endpoint,
    size: usize,
    timeout: Duration,
    tls: Option<&TlsClient>,
) -> io::Result<Web> {
    let host = host_header(endpoint);
    let target = endpoint.resource.target();
    let mut head = Vec::with_capacity(256);
    if endpoint.resource.websocket {
        let key = {
            use base64::Engine as _;
            let bytes = crate::probe::payload::nonce().to_le_bytes();
            let mut sixteen = [0u8; 16];
            sixteen[..8].copy_from_slice(&bytes);
            sixteen[8..].copy_from_slice(&bytes.map(|b| b.rotate_left(3)));
            base64::engine::general_purpose::STANDARD.encode(sixteen)
        };
        wire::write_request_head(
            &mut head,
            "GET",
            &target,
            &host,
            &[
                ("Upgrade", b"websocket"),
                ("Connection", b"Upgrade"),
                ("Sec-WebSocket-Key", key.as_bytes()),
                ("Sec-WebSocket-Version", b"13"),
            ],
            None,
        );
        return Ok(Web {
            speech: Speech::WebSocket,
            head,
            accept: ws::accept_key(key.as_bytes()),
        });
    }
    let fail = |failure: crate::probe::Failure| io::Error::other(failure.to_string());
    let mut conn = HttpConn::connect(endpoint, timeout, tls).map_err(fail)?;
    let answer = conn.request("GET", &target, &[], None).map_err(fail)?;
    let speech = if is_echoplex(&answer.head) {
        Speech::Echo
    } else {
        Speech::Get
    };
    match speech {
        Speech::Echo => {
            let sep = if target.contains('?') { '&' } else { '?' };
            wire::write_request_head(
                &mut head,
                "POST",
                &format!("{target}{sep}echo_body=raw"),
                &host,
                &[("Content-Type", b"application/octet-stream")],
                Some(size),
            );
        }
        _ => wire::write_request_head(&mut head, "GET", &target, &host, &[], None),
    }
    Ok(Web {
        speech,
        head,
        accept: String::new(),
    })
}

/// A worker's HTTP or WebSocket connections.
pub struct Requests {
    web: Arc<Web>,
    conns: Vec<WebLink>,
    live: usize,
    next_conn: usize,
    last_open: Instant,
    touched: Vec<usize>,
    scratch: Vec<u8>,
}

impl Traffic for Requests {
    const HOUSEKEEPING: Duration = Duration::from_millis(20);

    fn open(
        job: &WorkerJob,
        poll: &mut Poll,
        events: &mut Events,
        result: &mut WorkerResult,
    ) -> Requests {
        let web = job.dest.web.clone().unwrap_or_else(|| {
            Arc::new(Web {
                speech: Speech::Get,
                head: b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
                accept: String::new(),
            })
        });
        let start = Instant::now();
        let deadline = start + job.config.connect_timeout;
        let mut conns: Vec<WebLink> = Vec::with_capacity(job.conns);
        let mut pending = 0;
        for k in 0..job.conns {
            let id = job.first_conn + k;
            let token = Token(conns.len());
            match connect_one(&job.dest, poll.registry(), id, token, start) {
                Ok(conn) => {
                    conns.push(conn);
                    pending += 1;
                }
                Err(err) => result.connect_failed(|| {
                    format!("connection {id}: connect failed: {}", describe(&err))
                }),
            }
        }
        let mut scratch = vec![0u8; READ_BUFFER];
        while pending > 0 {
            let now = Instant::now();
            if now >= deadline || stopped() {
                break;
            }
            let wait = (deadline - now).min(Duration::from_millis(100));
            if let Err(err) = poll_once(poll, events, Some(wait)) {
                result.connect_failed(|| format!("poll failed: {}", describe(&err)));
                break;
            }
            for event in events.iter() {
                let i = event.token().0;
                let Some(conn) = conns.get_mut(i) else {
                    continue;
                };
                let outcome = match conn.state {
                    State::Connecting => conn.finish_connect(&web, poll.registry(), Token(i)),
                    State::Upgrading => conn.upgrade_step(&web, &mut scratch),
                    _ => continue,
                };
                match outcome {
                    Ok(()) if conn.state == State::Open => pending -= 1,
                    Ok(()) => {}
                    Err(why) => {
                        let id = conn.reader.id;
                        result.connect_failed(|| format!("connection {id}: {why}"));
                        conn.state = State::Dead;
                        pending -= 1;
                    }
                }
            }
        }
        let timeout = job.config.connect_timeout;
        for conn in &mut conns {
            if matches!(conn.state, State::Connecting | State::Upgrading) {
                let id = conn.reader.id;
                result.connect_failed(|| {
                    format!("connection {id}: connect timed out after {timeout:?}")
                });
                conn.state = State::Dead;
            }
        }
        let live = conns.iter().filter(|c| c.state == State::Open).count();
        Requests {
            web,
            conns,
            live,
            next_conn: 0,
            last_open: Instant::now(),
            touched: Vec::new(),
            scratch,
        }
    }

    fn connected(&self) -> u64 {
        self.live as u64
    }

    fn start(&mut self, ctx: &mut Ctx, now: Instant) {
        ctx.result.counters.connected = self.live as u64;
        self.resume(ctx, now);
    }

    fn event(&mut self, ctx: &mut Ctx, event: &Event) {
        let i = event.token().0;
        if i >= self.conns.len() {
            return;
        }
        let now = Instant::now();
        if matches!(self.conns[i].state, State::Connecting | State::Upgrading) {
            self.reconnecting(ctx, i, now);
        }
        if self.conns[i].state != State::Open {
            return;
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.receive(ctx, i, now, event.is_read_closed());
        }
        if self.conns[i].state == State::Open {
            self.send_more(ctx, i, now);
        }
    }

    fn resume(&mut self, ctx: &mut Ctx, now: Instant) {
        if ctx.open_loop() {
            return self.send_due(ctx, now);
        }
        for i in 0..self.conns.len() {
            if self.conns[i].state == State::Open {
                self.send_more(ctx, i, now);
            }
        }
    }

    fn housekeeping(&mut self, ctx: &mut Ctx, now: Instant) {
        let timeout = ctx.job.config.timeout;
        let connect_timeout = ctx.job.config.connect_timeout;
        if self.conns.iter().any(|c| c.state == State::Open) {
            self.last_open = now;
        } else if self.live > 0 && now.saturating_duration_since(self.last_open) > connect_timeout {
            ctx.result.error(|| {
                format!("no connection could be opened again for {connect_timeout:?}: the server seems gone")
            });
            ctx.give_up();
            return;
        }
        for i in 0..self.conns.len() {
            let conn = &self.conns[i];
            match conn.state {
                State::Retry => self.reconnect(ctx, i, now),
                State::Connecting | State::Upgrading
                    if now.saturating_duration_since(conn.connect_started) >= connect_timeout =>
                {
                    let id = conn.reader.id;
                    ctx.result
                        .connect_cause(&io::Error::from(io::ErrorKind::TimedOut));
                    ctx.result.connect_failed(|| {
                        format!("connection {id}: reconnect timed out after {connect_timeout:?}")
                    });
                    self.conns[i].state = State::Retry;
                }
                State::Open
                    if !conn.reader.in_flight.is_empty()
                        && now.saturating_duration_since(conn.last_progress) >= timeout =>
                {
                    let (id, owed) = (conn.reader.id, conn.reader.in_flight.len());
                    self.kill(ctx, i, || {
                        format!("connection {id}: no answer for {timeout:?} with {owed} owed")
                    });
                }
                _ => {}
            }
        }
    }

    fn done(&self, ctx: &Ctx) -> bool {
        if self.live == 0 {
            return true;
        }
        ctx.quota_used()
            && self
                .conns
                .iter()
                .all(|c| c.state != State::Open || c.reader.in_flight.is_empty())
    }

    fn drain(&mut self, ctx: &mut Ctx, poll: &mut Poll, events: &mut Events) {
        let deadline = ctx.wait_deadline(Instant::now());
        while self.conns.iter().any(|c| {
            matches!(c.state, State::Open | State::Connecting | State::Upgrading)
                && c.reader.in_flight.iter().any(|m| m.2)
        }) {
            let now = Instant::now();
            if now >= deadline || ctx.interrupted() {
                break;
            }
            let wait = (deadline - now).min(Duration::from_millis(100));
            if poll_once(poll, events, Some(wait)).is_err() {
                break;
            }
            for event in events.iter() {
                self.event(ctx, event);
            }
        }
    }

    fn settle(&mut self, ctx: &mut Ctx, now: Instant) {
        for conn in &mut self.conns {
            for (due, _, measured) in conn.reader.in_flight.drain(..) {
                if measured {
                    ctx.owed(due, now, true);
                }
            }
        }
    }

    fn close(self, ctx: &mut Ctx) {
        ctx.result.counters.answered = self.conns.iter().filter(|c| c.answered).count() as u64;
    }
}

impl Requests {
    fn kill(&mut self, ctx: &mut Ctx, i: usize, why: impl FnOnce() -> String) {
        let conn = &mut self.conns[i];
        if conn.state == State::Dead {
            return;
        }
        conn.state = State::Dead;
        self.live -= 1;
        if self.live == 0 {
            // The server took every connection down: what falls due from
            // now on is held back by it, not late by the generator.
            ctx.set_held(true);
        }
        ctx.result.error(why);
    }

    /// The server ended connection `i` without saying so first. With
    /// `--reconnect` another takes its place and what was owed counts
    /// never answered; without, it is an error.
    fn closed_by_server(
        &mut self,
        ctx: &mut Ctx,
        i: usize,
        now: Instant,
        why: impl FnOnce() -> String,
    ) {
        let idle = self.conns[i].reader.in_flight.is_empty();
        // An idle keep-alive connection closed (a server's idle timeout):
        // open another, as a browser would.
        if idle && !ctx.draining() {
            ctx.result.counters.reconnects += 1;
            return self.reconnect(ctx, i, now);
        }
        if !ctx.job.config.modes.reconnect {
            return self.kill(ctx, i, why);
        }
        drop(why);
        let conn = &mut self.conns[i];
        let lost = conn.reader.in_flight.iter().filter(|m| m.2).count() as u64;
        conn.reader.in_flight.clear();
        conn.reader.next_recv = conn.next_send;
        ctx.result.counters.never_answered += lost;
        // After the window nothing is left to send: `reconnect` only
        // retires the connection, and what it owed is never answered.
        if !ctx.draining() {
            ctx.result.counters.reconnects += 1;
        }
        self.reconnect(ctx, i, now);
    }

    /// Reads until the socket is drained. `to_end`: the peer's FIN came
    /// with this edge, so a short read does not mean no more is coming
    /// (the EOF that ends a body read until close).
    fn receive(&mut self, ctx: &mut Ctx, i: usize, now: Instant, to_end: bool) {
        let mut scratch = std::mem::take(&mut self.scratch);
        let web = Arc::clone(&self.web);
        loop {
            let conn = &mut self.conns[i];
            match conn.sock.recv(&mut scratch) {
                Ok(0) => {
                    // A body delimited by the close is complete now.
                    if matches!(conn.reader.reading, Reading::UntilClose) {
                        conn.reader.complete(ctx, now);
                        ctx.result.counters.reconnects += 1;
                        self.reconnect(ctx, i, now);
                        break;
                    }
                    let (id, owed) = (conn.reader.id, conn.reader.in_flight.len());
                    self.closed_by_server(ctx, i, now, || {
                        format!("connection {id}: closed by the server with {owed} answers owed")
                    });
                    break;
                }
                Ok(n) => {
                    if let Some((took, resumed)) = conn.sock.take_handshake() {
                        ctx.handshaked(took, resumed, now);
                    }
                    conn.last_progress = now;
                    conn.answered = true;
                    let step = if conn.inbuf.is_empty() {
                        let step = conn.reader.feed(
                            ctx,
                            &web,
                            &scratch[..n],
                            now,
                            &mut conn.out,
                            &mut conn.mask_state,
                        );
                        step.map(|(used, step)| {
                            conn.inbuf.extend_from_slice(&scratch[used..n]);
                            step
                        })
                    } else {
                        conn.inbuf.extend_from_slice(&scratch[..n]);
                        let step = conn.reader.feed(
                            ctx,
                            &web,
                            &conn.inbuf,
                            now,
                            &mut conn.out,
                            &mut conn.mask_state,
                        );
                        step.map(|(used, step)| {
                            conn.inbuf.drain(..used);
                            step
                        })
                    };
                    match step {
                        Err(why) => {
                            self.kill(ctx, i, || why);
                            break;
                        }
                        Ok(Step::Closing) => {
                            // The server closes after this answer: what
                            // is still owed goes out again on a new one.
                            ctx.result.counters.reconnects += 1;
                            self.reconnect(ctx, i, now);
                            break;
                        }
                        Ok(Step::Gone(why)) => {
                            self.closed_by_server(ctx, i, now, || why);
                            break;
                        }
                        Ok(Step::More) => {}
                    }
                    if ctx.retires(self.conns[i].sent) && self.conns[i].reader.in_flight.is_empty()
                    {
                        self.reconnect(ctx, i, now);
                        break;
                    }
                    // Over TLS a read is one record: only WouldBlock
                    // says the socket is drained.
                    if n < scratch.len() && !to_end && !self.conns[i].sock.is_tls() {
                        break;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    let id = conn.reader.id;
                    let why = || format!("connection {id}: read failed: {}", describe(&err));
                    if is_server_close(&err) {
                        self.closed_by_server(ctx, i, now, why);
                    } else {
                        self.kill(ctx, i, why);
                    }
                    break;
                }
            }
        }
        self.scratch = scratch;
    }

    /// Closes connection `i` and starts a new one under the same token;
    /// the messages still in flight are sent again once it is open.
    fn reconnect(&mut self, ctx: &mut Ctx, i: usize, now: Instant) {
        let id = self.conns[i].reader.id;
        if ctx.draining() && self.conns[i].reader.in_flight.is_empty() {
            let conn = &mut self.conns[i];
            if conn.state != State::Dead {
                conn.state = State::Dead;
                self.live -= 1;
            }
            return;
        }
        match connect_one(&ctx.job.dest, &ctx.registry, id, Token(i), now) {
            Ok(mut conn) => {
                let old = &mut self.conns[i];
                conn.answered = old.answered;
                // Owed messages keep their numbers and times.
                conn.reader.in_flight = std::mem::take(&mut old.reader.in_flight);
                conn.reader.next_recv = old.reader.next_recv;
                conn.next_send = old.next_send;
                if ctx.job.config.modes.churn.is_none() {
                    conn.sent = old.sent;
                }
                self.conns[i] = conn;
            }
            Err(err) => {
                ctx.result.connect_cause(&err);
                ctx.result.connect_failed(|| {
                    format!("connection {id}: reconnect failed: {}", describe(&err))
                });
                self.conns[i].state = State::Retry;
                self.conns[i].connect_started = now;
            }
        }
    }

    /// Connection `i` is connecting or upgrading (after a reconnect).
    fn reconnecting(&mut self, ctx: &mut Ctx, i: usize, now: Instant) {
        let web = Arc::clone(&self.web);
        let mut scratch = std::mem::take(&mut self.scratch);
        let conn = &mut self.conns[i];
        let outcome = match conn.state {
            State::Connecting => conn.finish_connect(&web, &ctx.registry, Token(i)),
            _ => conn.upgrade_step(&web, &mut scratch),
        };
        self.scratch = scratch;
        match outcome {
            Ok(()) if conn.state == State::Open => {
                conn.last_progress = now;
                let took = now.saturating_duration_since(conn.connect_started);
                ctx.reconnected(took, now);
                // Owed messages go out again, in order.
                conn.out.clear();
                conn.out_pos = 0;
                for seq in conn.reader.next_recv..conn.next_send {
                    encode(&web, ctx, seq, &mut conn.mask_state, &mut conn.out);
                }
                if !conn.inbuf.is_empty() {
                    // Frames that came with the 101.
                    self.receive_buffered(ctx, i, now);
                }
            }
            Ok(()) => {}
            Err(why) => {
                let id = conn.reader.id;
                ctx.result
                    .connect_failed(|| format!("connection {id}: {why}"));
                conn.state = State::Retry;
            }
        }
    }

    fn receive_buffered(&mut self, ctx: &mut Ctx, i: usize, now: Instant) {
        let web = Arc::clone(&self.web);
        let conn = &mut self.conns[i];
        match conn.reader.feed(
            ctx,
            &web,
            &conn.inbuf,
            now,
            &mut conn.out,
            &mut conn.mask_state,
        ) {
            Ok((used, _)) => {
                conn.inbuf.drain(..used);
            }
            Err(why) => self.kill(ctx, i, || why),
        }
    }

    /// Open loop: every message due by now goes out, each on the next
    /// connection that is open and has room.
    fn send_due(&mut self, ctx: &mut Ctx, now: Instant) {
        let n = self.conns.len();
        let web = Arc::clone(&self.web);
        loop {
            let mut pick = None;
            let mut full = false;
            for k in 0..n {
                let i = (self.next_conn + k) % n;
                let conn = &self.conns[i];
                if conn.state == State::Open && !ctx.retires(conn.sent) {
                    if conn.out.len() - conn.out_pos >= MAX_UNSENT
                        || conn.reader.in_flight.len() >= MAX_IN_FLIGHT
                    {
                        full = true;
                        continue;
                    }
                    pick = Some(i);
                    break;
                }
            }
            let Some(i) = pick else {
                if full && ctx.next_wake().is_some_and(|due| due <= now) {
                    ctx.set_held(true);
                }
                break;
            };
            let Some((due, measured)) = ctx.due(now) else {
                ctx.set_held(false);
                break;
            };
            self.next_conn = (i + 1) % n;
            let conn = &mut self.conns[i];
            conn.reuse_written();
            conn.queue(&web, ctx, due, now, measured);
            if !self.touched.contains(&i) {
                self.touched.push(i);
            }
        }
        for k in 0..self.touched.len() {
            let i = self.touched[k];
            if self.conns[i].state == State::Open {
                self.send_more(ctx, i, now);
            }
        }
        self.touched.clear();
    }

    /// Closed loop: tops the connection up to `depth` in flight; both
    /// loops: writes what the socket takes.
    fn send_more(&mut self, ctx: &mut Ctx, i: usize, now: Instant) {
        let depth = ctx.job.config.depth;
        let web = Arc::clone(&self.web);
        let conn = &mut self.conns[i];
        conn.reuse_written();
        while !ctx.open_loop() && conn.reader.in_flight.len() < depth && !ctx.retires(conn.sent) {
            let Some(measured) = ctx.admit(now) else {
                break;
            };
            conn.queue(&web, ctx, now, now, measured);
        }
        let written = write_out(
            &conn.sock,
            &conn.out,
            &mut conn.out_pos,
            &mut conn.write_interest,
            &ctx.registry,
            Token(i),
        );
        let id = conn.reader.id;
        match written {
            Ok(()) => {}
            Err(WriteFailed::ByServer(why)) => {
                self.closed_by_server(ctx, i, now, || format!("connection {id}: {why}"));
            }
            Err(WriteFailed::Other(why)) => self.kill(ctx, i, || format!("connection {id}: {why}")),
        }
    }
}
