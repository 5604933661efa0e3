//! What every stream connection keeps, whatever its protocol: the bytes
//! owed to the peer (a pooled buffer, only while the socket is full), the
//! idle clock, and the counters `status` shows.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use super::IDLE;
use crate::reactor::{Context, HandlerInfo, Readiness};

/// Bytes owed to the peer, in a pooled buffer: `buf[sent..]` is unsent.
#[derive(Debug, Default)]
pub struct Outbox {
    buf: Option<Vec<u8>>,
    sent: usize,
}

impl Outbox {
    /// Bytes still owed.
    pub fn len(&self) -> usize {
        self.buf.as_ref().map_or(0, |buf| buf.len() - self.sent)
    }

    /// True when nothing is owed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Room left before `limit` bytes are owed.
    pub fn room(&self, limit: usize) -> usize {
        limit.saturating_sub(self.len())
    }

    /// Queues `bytes` behind what is already owed.
    pub fn push(&mut self, bytes: &[u8], cx: &mut Context) {
        let buf = self.buf.get_or_insert_with(|| cx.take_buffer());
        // Reclaim the sent prefix rather than grow past the pooled capacity.
        if self.sent > 0 && buf.len() + bytes.len() > buf.capacity() {
            buf.drain(..self.sent);
            self.sent = 0;
        }
        buf.extend_from_slice(bytes);
    }

    /// Writes what is owed until done or `WouldBlock`; returns the bytes
    /// written. Once empty, the buffer goes back to the pool.
    pub fn flush(&mut self, stream: &mut impl Write, cx: &mut Context) -> io::Result<usize> {
        let Some(buf) = self.buf.as_mut() else {
            return Ok(0);
        };
        let written = write_some(stream, &buf[self.sent..])?;
        self.sent += written;
        if self.sent == buf.len() {
            self.release(cx);
        }
        Ok(written)
    }

    /// Writes `bytes` now if nothing is queued ahead of them and queues the
    /// rest; returns the bytes written now.
    pub fn send(
        &mut self,
        stream: &mut impl Write,
        bytes: &[u8],
        cx: &mut Context,
    ) -> io::Result<usize> {
        let written = if self.is_empty() {
            write_some(stream, bytes)?
        } else {
            0
        };
        if written < bytes.len() {
            self.push(&bytes[written..], cx);
        }
        Ok(written)
    }

    /// Gives the buffer back to the pool.
    pub fn release(&mut self, cx: &mut Context) {
        if let Some(buf) = self.buf.take() {
            cx.give_buffer(buf);
        }
        self.sent = 0;
    }
}

/// Writes until all of `bytes` is written or the socket would block.
fn write_some(stream: &mut impl Write, bytes: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < bytes.len() {
        match stream.write(&bytes[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(written)
}
/// Idle-timeout bookkeeping shared by every connection: O(1) per byte (one
/// store), one heap entry per connection at a time (see `reactor::timer`).
#[derive(Debug)]
pub struct IdleClock {
    pub(super) last_active: Instant,
}

impl IdleClock {
    /// Starts the clock and arms the first deadline.
    pub fn start(cx: &mut Context) -> Self {
        if !cx.limits.idle_timeout.is_zero() {
            cx.set_timer(cx.now + cx.limits.idle_timeout, IDLE);
        }
        IdleClock {
            last_active: cx.now,
        }
    }

    /// Records traffic.
    pub fn touch(&mut self, now: Instant) {
        self.last_active = now;
    }

    /// On a timer: true if the connection has been idle too long; else the
    /// deadline is re-armed from the last activity.
    pub fn expired(&mut self, cx: &mut Context) -> bool {
        if cx.limits.idle_timeout.is_zero() {
            return false;
        }
        let deadline = self.last_active + cx.limits.idle_timeout;
        if cx.now >= deadline {
            return true;
        }
        cx.set_timer(deadline, IDLE);
        false
    }

    /// Time since the last traffic.
    pub fn idle(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_active)
    }
}

/// Counters and state every stream connection keeps.
#[derive(Debug)]
pub struct ConnState {
    /// Bytes owed to the peer.
    pub outbox: Outbox,
    /// Idle timer; set once the connection has started.
    pub idle: Option<IdleClock>,
    /// The kernel said readable and we have not yet seen `WouldBlock`.
    pub read_ready: bool,
    /// The short-read shortcut is off: the kernel reported the peer's FIN,
    /// a hang-up, or TCP urgent data (a read stops short at the urgent
    /// mark with more data queued behind it, and no new edge will come).
    pub must_drain: bool,
    /// Shutdown: our FIN is sent; read and discard until the peer's EOF,
    /// for at most `LINGER_MAX` (and never past the grace period), so
    /// closing does not reset the connection under data still in flight.
    pub lingering: bool,
    /// The peer shut down its sending side; close once all is echoed.
    pub peer_done: bool,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// `--max-buffer`, remembered for `status`.
    pub max_buffer: usize,
}

impl ConnState {
    /// A fresh connection's state.
    pub fn new() -> Self {
        ConnState {
            outbox: Outbox::default(),
            idle: None,
            read_ready: false,
            must_drain: false,
            lingering: false,
            peer_done: false,
            bytes_in: 0,
            bytes_out: 0,
            max_buffer: usize::MAX,
        }
    }

    /// Starts the idle clock; called from the handler's `started`.
    pub fn start(&mut self, cx: &mut Context) {
        self.idle = Some(IdleClock::start(cx));
        self.max_buffer = cx.limits.max_buffer;
    }

    /// Counts bytes read and records activity.
    pub fn received(&mut self, n: usize, cx: &mut Context) {
        self.bytes_in += n as u64;
        cx.count_received(n);
        if let Some(idle) = &mut self.idle {
            idle.touch(cx.now);
        }
    }

    /// Counts bytes written and records activity.
    pub fn sent(&mut self, n: usize, cx: &mut Context) {
        if n > 0 {
            self.bytes_out += n as u64;
            cx.count_sent(n);
            if let Some(idle) = &mut self.idle {
                idle.touch(cx.now);
            }
        }
    }

    /// Folds an event into what we know is ready.
    pub fn note(&mut self, readiness: Readiness) {
        if readiness.readable || readiness.read_closed || readiness.error {
            self.read_ready = true;
        }
        if readiness.read_closed || readiness.error || readiness.priority {
            self.must_drain = true;
        }
    }

    /// The `status` state word.
    pub fn state(&self) -> &'static str {
        if self.lingering {
            "closing"
        } else if self.outbox.room(self.max_buffer) == 0 {
            "paused-by-backpressure"
        } else if self.peer_done {
            "half-closed"
        } else if !self.outbox.is_empty() {
            "draining"
        } else {
            "open"
        }
    }

    /// Writes what is owed, as far as the socket takes it.
    pub fn flush(&mut self, stream: &mut impl Write, cx: &mut Context) -> io::Result<()> {
        let written = self.outbox.flush(stream, cx)?;
        self.sent(written, cx);
        Ok(())
    }

    /// On a timer: true (and counted) if the idle limit has passed.
    pub fn idle_expired(&mut self, cx: &mut Context) -> bool {
        let expired = self.idle.as_mut().is_some_and(|idle| idle.expired(cx));
        if expired {
            cx.stats.timeouts += 1;
        }
        expired
    }

    /// The `status` row of a connection.
    pub fn describe(&self, kind: &'static str, peer: String, now: Instant) -> HandlerInfo {
        HandlerInfo {
            kind,
            local: String::new(),
            peer,
            state: self.state(),
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            pending: self.outbox.len(),
            idle: self.idle.as_ref().map(|idle| idle.idle(now)),
            detail: None,
        }
    }

    /// The epoll short-read shortcut, in this one place: after a read of
    /// `n` bytes into `room`, true if the socket is known empty. On Linux
    /// epoll (edge-triggered), a short stream read means the receive buffer
    /// was emptied and any new data raises a new edge, so the read that
    /// would only say `WouldBlock` is skipped (one syscall per echo saved).
    /// Not true of every poller (hence the crate's Linux gate), nor after a
    /// FIN, a hang-up or urgent data was reported (see `must_drain`).
    pub fn drained_by(&mut self, n: usize, room: usize) -> bool {
        if n < room && !self.must_drain {
            self.read_ready = false;
            return true;
        }
        false
    }

    /// After the work of one event: close when the peer is done and
    /// everything owed has been written.
    pub fn finished(&self) -> bool {
        self.peer_done && self.outbox.is_empty()
    }
}

impl Default for ConnState {
    fn default() -> Self {
        Self::new()
    }
}
