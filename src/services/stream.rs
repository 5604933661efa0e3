//! A connection over any non-blocking byte stream (TCP or Unix), and the
//! `Protocol` it speaks: `Echo` here, records and admin lines elsewhere.
//!
//! The fast path owns no memory: bytes are read into the reactor's shared
//! scratch buffer and written straight back. Only when the peer's receive
//! window is full does the connection take a buffer from the pool for the
//! bytes the write could not take, and it stops reading once that buffer
//! holds `--max-buffer` bytes (backpressure: TCP flow control then slows
//! the sender). The buffer goes back to the pool as soon as it drains.
//!
//! mio is edge-triggered, so the connection remembers what is still ready
//! (`read_ready`) whenever it stops before `WouldBlock`: at its fairness
//! budget, or when backpressure pauses reading.

use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use log::debug;
use mio::{Interest, Registry, Token};

use super::proxy::{self, Preamble};
use crate::reactor::{Context, Flow, Handler, HandlerInfo, Readiness, Reason};
use crate::tls::Negotiated;

mod protocol;
mod state;
pub use protocol::{Echo, Protocol, Sender, PROTOCOL_TIMERS};
pub use state::{ConnState, IdleClock, Outbox};

/// Reads per event before yielding to other connections.
const READS_PER_EVENT: usize = 16;

/// At shutdown, how long a quiet connection waits for its peer's EOF after
/// our FIN (see `StreamConn::start_linger`); the grace period may end it
/// sooner.
const LINGER_MAX: Duration = Duration::from_secs(2);

/// Timer reasons: the idle limit, the end of a lingering close, the
/// deadline of a PROXY header.
const IDLE: Reason = Reason(0);
const LINGER: Reason = Reason(1);
const PROXY_DEADLINE: Reason = Reason(2);
/// The transport's setup deadline (a TLS handshake).
const SETUP_DEADLINE: Reason = Reason(3);

/// A byte stream the reactor can poll: `mio::net::TcpStream` or
/// `UnixStream`, or a transport over one (`services::tls::TlsStream`),
/// which reads and writes the protocol's bytes and moves its own.
///
/// The defaults are a plain socket's answers; a transport overrides them.
pub trait Stream: Read + Write + mio::event::Source + AsFd + AsRawFd {
    /// Sends our FIN: the peer reads what is left, then EOF.
    fn shutdown_write(&mut self) -> io::Result<()>;

    /// Makes the coming close a reset (RST), so a peer we still owe bytes
    /// sees an error rather than a clean end of stream.
    fn reset_on_close(&self);

    /// Bytes the transport holds for the socket (TLS records it could not
    /// write yet), or an upper bound of them: while there are any the
    /// connection asks for writable, and they count against `--max-buffer`.
    fn held_out(&self) -> usize {
        0
    }

    /// Writes what the transport holds, as far as the socket takes it.
    fn flush_held(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// Everything is sent and the connection is about to close cleanly:
    /// a transport says goodbye its own way (TLS: close_notify), best
    /// effort (the close follows whatever happens).
    fn finish(&mut self) {}

    /// True if a read shorter than asked proves the socket empty (see
    /// `ConnState::drained_by`); not so for TLS, whose reads return one
    /// record's plaintext at a time.
    fn short_read_drains(&self) -> bool {
        true
    }

    /// Reads the socket itself, under any transport: the PROXY header
    /// comes before the TLS handshake.
    fn read_raw(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read(buf)
    }

    /// Bytes read raw after a PROXY header, in the same read: true if the
    /// transport took them as its own input (TLS: the ClientHello's
    /// start); false, and they are the protocol's.
    fn take_early(&mut self, _bytes: &[u8]) -> io::Result<bool> {
        Ok(false)
    }

    /// How long the transport may take to set up (a TLS handshake), from
    /// the connection's start.
    fn setup_deadline(&self) -> Option<Duration> {
        None
    }

    /// True while the transport is still setting up.
    fn setting_up(&self) -> bool {
        false
    }

    /// After each call into the connection: the transport counts what
    /// happened (a handshake done, a peer refused).
    fn account(&mut self, _kind: &str, _peer: &dyn fmt::Display, _cx: &mut Context) {}

    /// The setup deadline passed while still setting up: count it.
    fn setup_expired(&mut self, _cx: &mut Context) {}

    /// A few words for `status` (the TLS version and cipher).
    fn detail(&self) -> Option<String> {
        None
    }

    /// What the TLS handshake negotiated, once, as soon as it is done
    /// (before the protocol sees the first plaintext byte).
    fn take_negotiated(&mut self) -> Option<Negotiated> {
        None
    }
}

impl Stream for mio::net::TcpStream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }

    fn reset_on_close(&self) {
        // SO_LINGER with a zero timeout: close() sends RST and drops the
        // send queue instead of a FIN behind it.
        let _ = socket2::SockRef::from(self).set_linger(Some(Duration::ZERO));
    }
}

impl Stream for mio::net::UnixStream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }

    /// Unix streams have no reset: the kernel gives the peer ECONNRESET
    /// only if we close with unread bytes; otherwise it reads EOF.
    fn reset_on_close(&self) {}
}

/// Bytes in the socket's receive queue that we have not read (FIONREAD).
fn unread_bytes(fd: &impl AsRawFd) -> usize {
    crate::sys::socket::unread_bytes(fd.as_raw_fd())
}

/// True for the errors that mean "the peer went away", logged at debug.
pub fn is_disconnect(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::WriteZero
    )
}

/// What the loop owes a connection whose call failed: a line at the right
/// level (a client can cause this once per connection: rate-limited).
pub fn log_close(kind: &str, peer: &dyn fmt::Display, err: &io::Error) {
    if is_disconnect(err) {
        debug!("{kind} {peer} closed by peer: {err}");
    } else {
        crate::log_limited!(log::Level::Warn, "{kind} {peer} closed on error: {err}");
    }
}

/// A PROXY header refused, or never finished: counted; the connection
/// closes with nothing of it echoed.
fn proxy_error(err: proxy::Error, cx: &mut Context) -> io::Error {
    cx.stats.proxy_errors += 1;
    io::Error::new(io::ErrorKind::InvalidData, err)
}

/// The log line of a connection whose PROXY header is complete.
fn proxy_accepted(kind: &str, peer: &dyn fmt::Display, preamble: &Preamble) {
    let version = preamble.header().map_or(0, |h| h.version);
    match preamble.client() {
        Some(client) => debug!("{kind} {client} accepted (PROXY v{version} from {peer})"),
        None => {
            debug!("{kind} {peer}: PROXY v{version} LOCAL/UNKNOWN: served as a direct connection")
        }
    }
}

/// The interests of a stream connection; writable only while bytes are owed.
fn interest(writable: bool) -> Interest {
    let base = Interest::READABLE | Interest::PRIORITY;
    if writable {
        base | Interest::WRITABLE
    } else {
        base
    }
}

/// A connection over a stream, speaking protocol `R`.
///
/// Dropped while it still holds bytes unread or unsent (the grace period
/// of a shutdown ran out, an error), it resets the connection: the peer
/// must not mistake a clean end of stream for a complete echo.
pub struct StreamConn<S: Stream, P: fmt::Display, R: Protocol> {
    stream: S,
    kind: &'static str,
    peer: P,
    conn: ConnState,
    protocol: R,
    /// Registered for writable: only while bytes are owed.
    write_interest: bool,
    /// `?proxy`: the PROXY header to read before the protocol sees a byte,
    /// then the client it named. Boxed: other connections pay 8 bytes.
    proxy: Option<Box<Preamble>>,
}

/// How a connection's peer is shown: the client a PROXY header named, else
/// the socket's peer.
struct Shown<'a, P> {
    peer: &'a P,
    proxy: Option<&'a Preamble>,
}

impl<P: fmt::Display> fmt::Display for Shown<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.proxy.and_then(Preamble::client) {
            Some(client) => f.write_str(&client),
            None => self.peer.fmt(f),
        }
    }
}

/// The echo connection of `tcp://` and `unix:`.
pub type EchoConn<S, P> = StreamConn<S, P, Echo>;

impl<S: Stream, P: fmt::Display, R: Protocol> StreamConn<S, P, R> {
    /// Wraps an accepted, non-blocking stream; `kind` names it in logs and `status`.
    pub fn new(stream: S, kind: &'static str, peer: P, protocol: R) -> Self {
        StreamConn {
            stream,
            kind,
            peer,
            conn: ConnState::new(),
            protocol,
            write_interest: false,
            proxy: None,
        }
    }

    /// Every connection must begin with a PROXY protocol header (`?proxy`).
    pub fn with_proxy(mut self) -> Self {
        self.proxy = Some(Box::default());
        self
    }

    /// The peer as logs and `status` show it.
    fn shown(&self) -> Shown<'_, P> {
        Shown {
            peer: &self.peer,
            proxy: self.proxy.as_deref(),
        }
    }

    /// True while a PROXY header is still awaited.
    fn proxy_pending(&self) -> bool {
        self.proxy.as_ref().is_some_and(|p| p.pending())
    }

    /// Reads and hands bytes to the protocol until `WouldBlock`, a short
    /// read, EOF, the fairness budget, or backpressure. During a shutdown
    /// too: a busy connection is served until its peer's EOF.
    fn pump(&mut self, cx: &mut Context) -> io::Result<()> {
        let limit = cx.limits.max_buffer;
        let StreamConn {
            stream,
            kind,
            peer,
            conn,
            protocol,
            proxy,
            ..
        } = self;
        for _ in 0..READS_PER_EVENT {
            if !conn.read_ready || conn.peer_done || protocol.done() {
                return Ok(());
            }
            // What is held (a partial record, TLS records the socket has
            // not taken) counts like what is owed.
            let room = conn
                .outbox
                .room(limit)
                .saturating_sub(protocol.held())
                .saturating_sub(stream.held_out());
            if room == 0 {
                return Ok(()); // paused by backpressure; a flush resumes it
            }
            let drained = cx.with_scratch(|scratch, cx| -> io::Result<bool> {
                let room = room.min(scratch.len());
                let raw = proxy.as_ref().is_some_and(|p| p.pending());
                let read = if raw {
                    stream.read_raw(&mut scratch[..room])
                } else {
                    stream.read(&mut scratch[..room])
                };
                let n = match read {
                    Ok(0) if proxy.as_ref().is_some_and(|p| p.pending()) => {
                        return Err(proxy_error(proxy::Error::Incomplete, cx));
                    }
                    Ok(0) => {
                        conn.peer_done = true;
                        return Ok(true);
                    }
                    Ok(n) => n,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                        conn.read_ready = false;
                        return Ok(true);
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => return Ok(false),
                    Err(err) => {
                        if proxy.as_ref().is_some_and(|p| p.pending()) {
                            cx.stats.proxy_errors += 1; // reset inside the header
                        }
                        return Err(err);
                    }
                };
                let mut data = &scratch[..n];
                if let Some(preamble) = proxy.as_deref_mut().filter(|p| p.pending()) {
                    // Header bytes are the balancer's, not the client's:
                    // never echoed, not counted as received.
                    let header = preamble.feed(data).map_err(|err| proxy_error(err, cx))?;
                    data = &data[header..];
                    if let Some(idle) = &mut conn.idle {
                        idle.touch(cx.now);
                    }
                    if !preamble.pending() {
                        proxy_accepted(kind, peer, preamble);
                        protocol.proxied(preamble.header());
                    }
                    if !data.is_empty() && stream.take_early(data)? {
                        data = &[];
                    }
                }
                if let Some(tls) = stream.take_negotiated() {
                    protocol.secured(&tls);
                }
                if !data.is_empty() {
                    conn.received(data.len(), cx);
                    protocol.received(data, &mut Sender { stream, conn }, cx)?;
                }
                Ok(stream.short_read_drains() && conn.drained_by(n, room))
            })?;
            if conn.peer_done {
                let shown = Shown {
                    peer: &*peer,
                    proxy: proxy.as_deref(),
                };
                protocol.peer_closed(kind, &shown);
            }
            if drained {
                return Ok(());
            }
        }
        cx.run_again();
        Ok(())
    }

    /// Held input the protocol stopped at (its answers were backlogged):
    /// taken up again once the flush made room.
    fn resume(&mut self, cx: &mut Context) -> io::Result<()> {
        let StreamConn {
            stream,
            conn,
            protocol,
            ..
        } = self;
        let mut out = Sender { stream, conn };
        if protocol.held() > 0 && !out.backlogged() && !protocol.done() {
            protocol.resume(&mut out, cx)?;
        }
        Ok(())
    }

    /// After the work of a call: close when done and flushed, else keep
    /// writable interest in step with what is owed.
    fn settle(&mut self, cx: &mut Context) -> Flow {
        let finished = self.conn.finished() && !self.protocol.answer_due();
        if self.conn.outbox.is_empty()
            && self.stream.held_out() == 0
            && (finished || self.protocol.done())
        {
            if !self.conn.peer_done && !self.conn.lingering {
                // The protocol ended it (a refusal, `Connection: close`)
                // while the peer may still be sending (the body of a 413):
                // the lingering close, as web servers do, so our close is
                // not a reset that drops the answer at the peer unread.
                // (A transport's shutdown_write says goodbye its own way.)
                return self.start_linger(cx).unwrap_or_else(|_| self.release(cx));
            }
            self.stream.finish();
            debug!("{} {} closed: all sent", self.kind, self.shown());
            return Flow::Close;
        }
        // Writable interest follows the outbox: a standing one would wake
        // the loop each time the peer frees send-buffer space (on Unix
        // sockets, every echo it reads), for nothing. One epoll_ctl per
        // blocked/unblocked transition, never one per message. Records a
        // transport (TLS) holds for the socket are owed bytes too.
        let owed = !self.conn.outbox.is_empty() || self.stream.held_out() > 0;
        if owed != self.write_interest {
            if let Err(err) = cx
                .registry()
                .reregister(&mut self.stream, cx.token, interest(owed))
            {
                log_close(self.kind, &self.shown(), &err);
                return self.release(cx);
            }
            self.write_interest = owed;
        }
        Flow::Continue
    }

    fn release(&mut self, cx: &mut Context) -> Flow {
        self.conn.outbox.release(cx);
        Flow::Close
    }

    /// Nothing unread, nothing owed, nothing held: at shutdown such a
    /// connection gets the lingering close.
    fn is_quiet(&self) -> bool {
        self.conn.outbox.is_empty()
            && self.protocol.held() == 0
            && !self.conn.read_ready
            && unread_bytes(&self.stream) == 0
    }

    /// Shutdown of a quiet connection: the lingering close, as web servers
    /// do it. Closing at once would answer the peer's next bytes (sent
    /// before it saw our FIN) with RST, and RST makes its kernel discard
    /// echoes it has not read yet. So we send our FIN, read and discard
    /// until its EOF, and close only then, or after `LINGER_MAX`, or when
    /// the grace period ends (the loop closes what is left).
    fn start_linger(&mut self, cx: &mut Context) -> io::Result<Flow> {
        if self.conn.peer_done {
            return Ok(Flow::Close);
        }
        self.conn.lingering = true;
        self.stream.shutdown_write()?;
        cx.set_timer(cx.now + LINGER_MAX, LINGER);
        self.linger(cx)
    }

    /// Reads and discards what the peer sends after our FIN; `Close` at its EOF.
    fn linger(&mut self, cx: &mut Context) -> io::Result<Flow> {
        let stream = &mut self.stream;
        let mut discarded = 0;
        let mut drained = false;
        let mut result = Ok(Flow::Continue);
        for _ in 0..READS_PER_EVENT {
            match cx.with_scratch(|scratch, _| stream.read(scratch)) {
                Ok(0) => {
                    self.conn.peer_done = true;
                    result = Ok(Flow::Close);
                    drained = true;
                    break;
                }
                Ok(n) => discarded += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    drained = true;
                    break;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    result = Err(err);
                    drained = true;
                    break;
                }
            }
        }
        if discarded > 0 {
            self.conn.received(discarded, cx);
        }
        if !drained {
            cx.run_again();
        }
        result
    }
}

impl<S: Stream, P: fmt::Display, R: Protocol> Handler for StreamConn<S, P, R> {
    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        // Writable is asked for only while bytes are owed (see `ready`).
        // PRIORITY reports TCP urgent data (see `ConnState::must_drain`).
        registry.register(&mut self.stream, token, interest(false))
    }

    fn started(&mut self, cx: &mut Context) -> Flow {
        self.conn.start(cx);
        if let Some(limit) = self.stream.setup_deadline() {
            cx.set_timer(cx.now + limit, SETUP_DEADLINE);
        }
        if let Some(preamble) = &mut self.proxy {
            debug!(
                "{} {} connected; awaiting its PROXY header",
                self.kind, self.peer
            );
            let deadline = preamble.start(cx.now);
            cx.set_timer(deadline, PROXY_DEADLINE);
        } else {
            debug!("{} {} accepted", self.kind, self.peer);
        }
        Flow::Continue
    }

    fn ready(&mut self, readiness: Readiness, cx: &mut Context) -> Flow {
        self.conn.note(readiness);
        if self.conn.lingering {
            return self.linger(cx).unwrap_or_else(|_| self.release(cx));
        }
        let result = self
            .stream
            .flush_held()
            .and_then(|()| self.conn.flush(&mut self.stream, cx))
            .and_then(|()| self.resume(cx))
            .and_then(|()| self.pump(cx));
        let shown = Shown {
            peer: &self.peer,
            proxy: self.proxy.as_deref(),
        };
        self.stream.account(self.kind, &shown, cx);
        if let Err(err) = result {
            log_close(self.kind, &self.shown(), &err);
            return self.release(cx);
        }
        self.settle(cx)
    }

    fn timeout(&mut self, reason: Reason, cx: &mut Context) -> Flow {
        if reason.0 >= PROTOCOL_TIMERS {
            let StreamConn {
                stream,
                conn,
                protocol,
                ..
            } = self;
            let result = protocol
                .timer(reason, &mut Sender { stream, conn }, cx)
                .and_then(|()| self.pump(cx));
            if let Err(err) = result {
                log_close(self.kind, &self.shown(), &err);
                return self.release(cx);
            }
            return self.settle(cx);
        }
        if reason == PROXY_DEADLINE {
            if self.proxy.as_ref().is_some_and(|p| p.expired(cx.now)) && !cx.is_shutting_down() {
                let err = proxy_error(proxy::Error::Timeout, cx);
                log_close(self.kind, &self.peer, &err);
                return self.release(cx);
            }
        } else if reason == SETUP_DEADLINE {
            if self.stream.setting_up() {
                self.stream.setup_expired(cx);
                crate::log_limited!(
                    log::Level::Warn,
                    "{} {} closed: setup (handshake) not done within {:?}",
                    self.kind,
                    self.shown(),
                    self.stream.setup_deadline().unwrap_or_default()
                );
                return self.release(cx);
            }
        } else if reason == LINGER {
            if self.conn.lingering {
                debug!(
                    "{} {} closed: no EOF within {LINGER_MAX:?} of our FIN",
                    self.kind,
                    self.shown()
                );
                return Flow::Close;
            }
        } else if self.protocol.answer_due() {
            // Waiting on our own timer (`echo_delay`) is not the peer's
            // idleness: the clock starts again from now.
            if let Some(idle) = &mut self.conn.idle {
                idle.touch(cx.now);
                idle.expired(cx);
            }
        } else if self.conn.idle_expired(cx) {
            if self.proxy_pending() {
                cx.stats.proxy_errors += 1; // idle before its header was complete
            }
            debug!(
                "{} {} closed: idle for {:?}",
                self.kind,
                self.shown(),
                cx.limits.idle_timeout
            );
            return self.release(cx);
        }
        Flow::Continue
    }

    fn shutdown(&mut self, cx: &mut Context) -> Flow {
        let StreamConn {
            stream,
            conn,
            protocol,
            ..
        } = self;
        if let Err(err) = protocol.shutdown(&mut Sender { stream, conn }, cx) {
            log_close(self.kind, &self.shown(), &err);
            return self.release(cx);
        }
        // A quiet connection gets our FIN and lingers to its peer's EOF
        // (`start_linger`). A busy one is served from `ready` until its
        // peer's EOF; if the grace period ends first, dropping it resets
        // it (see `Drop`).
        if self.is_quiet() {
            self.start_linger(cx).unwrap_or_else(|_| self.release(cx))
        } else {
            self.settle(cx)
        }
    }

    fn is_connection(&self) -> bool {
        true
    }

    fn is_control(&self) -> bool {
        self.protocol.is_control()
    }

    fn quiet_since(&self, now: Instant) -> Option<Instant> {
        if !self.protocol.is_control() || self.conn.lingering || !self.is_quiet() {
            return None;
        }
        // Not started: accepted in this turn.
        Some(self.conn.idle.as_ref().map_or(now, |idle| idle.last_active))
    }

    fn describe(&self, now: Instant) -> HandlerInfo {
        let mut info = self.conn.describe(self.kind, self.shown().to_string(), now);
        if self.proxy_pending() && !self.conn.lingering {
            info.state = "proxy-header";
        }
        // Input held back (a partial record) is received and not yet sent
        // back too, and counts against --max-buffer like the outbox.
        info.pending += self.protocol.held();
        // Records the transport holds for the socket stop reading as the
        // outbox does (`pump`): the same backpressure, shown the same way.
        if self.stream.held_out() > 0 && info.state == "open" {
            info.state = "paused-by-backpressure";
        }
        info.detail = self.stream.detail();
        info
    }
}

impl<S: Stream, P: fmt::Display, R: Protocol> Drop for StreamConn<S, P, R> {
    fn drop(&mut self) {
        // After the peer's EOF with everything sent, close is clean. Else,
        // bytes the peer sent that were never answered mean a reset.
        let clean = self.conn.peer_done && self.conn.outbox.is_empty();
        let reset = !clean
            && (!self.conn.outbox.is_empty()
                || self.protocol.held() > 0
                || unread_bytes(&self.stream) > 0);
        if reset {
            self.stream.reset_on_close();
        }
        // One line whichever way the connection ended (tests and operators
        // match what a client received against what was sent to it).
        let shown = Shown {
            peer: &self.peer,
            proxy: self.proxy.as_deref(),
        };
        debug!(
            "{} {shown} gone: {} bytes in, {} out{}",
            self.kind,
            self.conn.bytes_in,
            self.conn.bytes_out,
            if reset {
                ", reset: bytes still owed"
            } else {
                ""
            }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle connection must stay small: its handler, its slab slot and
    /// one timer entry are all it costs (goal: under 256 bytes).
    #[test]
    fn an_idle_tcp_connection_is_small() {
        let handler = std::mem::size_of::<EchoConn<mio::net::TcpStream, std::net::SocketAddr>>();
        eprintln!("EchoConn<TcpStream, SocketAddr>: {handler} bytes");
        let slot_and_timer =
            2 * std::mem::size_of::<usize>() * 2 + std::mem::size_of::<(Instant, usize, Reason)>();
        assert!(
            handler + slot_and_timer <= 256,
            "handler {handler} B + slot/timer {slot_and_timer} B"
        );
    }
}
