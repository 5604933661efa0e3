//! The stream traffic (tcp, unix): every connection keeps `depth` messages in
//! flight; echoes come back in order, so each received byte is checked
//! against the message it must belong to.

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::{Events, Interest, Poll, Registry, Token};

use super::link::{is_server_close, register, start_connecting, write_out, WriteFailed};
use super::types::{Dest, WorkerJob, WorkerResult};
use super::worker::{poll_once, Ctx, Traffic};
use crate::error::describe;
use crate::probe::interrupt::stopped;
use crate::probe::socket::Sock;

/// Bytes read per `read` call: enough for many echoes at once, so a worker
/// serving many connections makes few syscalls.
const READ_BUFFER: usize = 256 * 1024;

/// Open loop: a connection holding this many unsent bytes (the server is
/// not reading) takes no new message until it has written some; the due
/// messages wait, counted as held back by the server, and memory stays
/// bounded at rates the server cannot sustain.
const MAX_UNSENT: usize = 256 * 1024;

/// Open loop: the most bytes of messages one connection may have sent and
/// not yet had echoed. A server that reads but never answers would
/// otherwise have the generator remember every message it sent (tens of
/// MB a second); past this the due messages wait, counted as held back.
const MAX_OUTSTANDING_BYTES: usize = 4 << 20;

/// The bounds of that cap in messages, whatever the message size: at
/// least a few in flight, and at most this many remembered per connection.
const OUTSTANDING_MESSAGES: (usize, usize) = (16, 16 * 1024);

/// Open loop: the most messages a worker remembers in flight over all its
/// connections (about 10 MB), however many connections it has.
const MAX_OUTSTANDING_WORKER: usize = 256 * 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    Open,
    /// Churn: a reconnect failed; try again at the next housekeeping.
    Retry,
    Dead,
}

/// One stream connection of a worker (tcp, unix, tls).
struct StreamLink {
    id: usize,
    sock: Sock,
    state: State,
    next_send: u64,
    next_recv: u64,
    /// Bytes of message `next_recv` already received.
    recv_off: usize,
    /// Every message in flight, oldest first: when it was due (open loop;
    /// else its send time), when it was sent, and whether it belongs to
    /// the measured window.
    in_flight: VecDeque<(Instant, Instant, bool)>,
    /// Messages sent on this connection (churn closes it after M).
    sent: u64,
    /// When the current connect began (churn's connect time).
    connect_started: Instant,
    /// Messages not yet taken by the socket: `out[out_pos..]`.
    out: Vec<u8>,
    out_pos: usize,
    /// Last time bytes came back (or the first message went out).
    last_progress: Instant,
    /// Any byte ever came back.
    answered: bool,
    /// Registered for writable: only while a write was partial, so the
    /// kernel does not wake the loop each time send-buffer space frees.
    write_interest: bool,
}

impl StreamLink {
    /// The connect completed. Writable was needed to see it; from now on
    /// only a partial write asks for it.
    fn connected(&mut self, registry: &Registry, token: Token) {
        // TLS: a ClientHello the socket did not take keeps writable on.
        let pending = self.sock.wants_write();
        let interest = if pending {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if register(registry, &self.sock, token, interest, true).is_ok() {
            self.write_interest = pending;
        }
    }

    /// Starts the output buffer over once everything in it was written.
    fn reuse_written(&mut self) {
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
    }

    /// Queues the next message, due at `due` and sent at `now`: the one
    /// place a message joins this connection's in-flight list.
    fn queue(&mut self, ctx: &Ctx, due: Instant, now: Instant, measured: bool) {
        if self.in_flight.is_empty() {
            self.last_progress = now;
        }
        ctx.pattern.write(self.next_send, &mut self.out);
        self.next_send += 1;
        self.sent += 1;
        self.in_flight.push_back((due, now, measured));
    }
}

/// A worker's stream connections.
pub struct Streams {
    conns: Vec<StreamLink>,
    /// Connections open, or reconnecting (churn).
    live: usize,
    /// Open loop: the connection the next due message tries first.
    next_conn: usize,
    /// Churn: the last time any connection was open; reconnects failing
    /// for longer than the connect timeout end the worker (no hang on a
    /// server that went away during a `-n` run).
    last_open: Instant,
    /// Open loop: connections written to in this turn.
    touched: Vec<usize>,
    /// The read buffer, shared by all connections.
    scratch: Vec<u8>,
    /// Open loop: messages in flight over all connections.
    outstanding: usize,
    /// Open loop: the most messages one connection may have in flight.
    max_outstanding: usize,
}

/// Starts connecting connection `id` as `token`, registered for writable
/// to see the handshake end. `WouldBlock`: a Unix listener's backlog is
/// full, try again shortly.
fn connect_one(
    dest: &Dest,
    registry: &Registry,
    id: usize,
    token: Token,
    now: Instant,
) -> io::Result<StreamLink> {
    let sock = start_connecting(dest, registry, token)?;
    Ok(StreamLink {
        id,
        sock,
        state: State::Connecting,
        next_send: 0,
        next_recv: 0,
        recv_off: 0,
        in_flight: VecDeque::new(),
        sent: 0,
        connect_started: now,
        out: Vec::new(),
        out_pos: 0,
        last_progress: now,
        answered: false,
        write_interest: true,
    })
}

impl Traffic for Streams {
    const HOUSEKEEPING: Duration = Duration::from_millis(20);

    fn open(
        job: &WorkerJob,
        poll: &mut Poll,
        events: &mut Events,
        result: &mut WorkerResult,
    ) -> Streams {
        let start = Instant::now();
        let deadline = start + job.config.connect_timeout;
        let mut conns: Vec<StreamLink> = Vec::with_capacity(job.conns);
        let mut pending = 0;
        // A Unix listener with a full backlog refuses at once with EAGAIN
        // (TCP would queue the SYN): try those again shortly.
        let mut retry: Vec<usize> = (0..job.conns).map(|i| job.first_conn + i).collect();
        loop {
            for id in std::mem::take(&mut retry) {
                let token = Token(conns.len());
                match connect_one(&job.dest, poll.registry(), id, token, start) {
                    Ok(mut conn) => {
                        conn.in_flight.reserve(job.config.depth);
                        conns.push(conn);
                        pending += 1;
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => retry.push(id),
                    Err(err) => result.connect_failed(|| {
                        format!("connection {id}: connect failed: {}", describe(&err))
                    }),
                }
            }
            let now = Instant::now();
            // Ctrl-C while connecting: stop waiting (a signal ends the
            // poll below early); the run then reports what it has.
            if (pending == 0 && retry.is_empty()) || now >= deadline || stopped() {
                break;
            }
            // Ctrl-C lands on the coordinator's thread, not this one: wake
            // at least every 100 ms to see it.
            let mut wait = (deadline - now).min(Duration::from_millis(100));
            if !retry.is_empty() {
                wait = wait.min(Duration::from_millis(5));
            }
            if let Err(err) = poll_once(poll, events, Some(wait)) {
                result.connect_failed(|| format!("poll failed: {}", describe(&err)));
                break;
            }
            for event in events.iter() {
                let Some(conn) = conns.get_mut(event.token().0) else {
                    continue;
                };
                if conn.state != State::Connecting {
                    continue;
                }
                match conn.sock.connecting_done() {
                    Ok(true) => {
                        conn.state = State::Open;
                        pending -= 1;
                        conn.connected(poll.registry(), event.token());
                    }
                    Ok(false) => {}
                    Err(err) => {
                        let id = conn.id;
                        result.connect_failed(|| {
                            format!("connection {id}: connect failed: {}", describe(&err))
                        });
                        conn.state = State::Dead;
                        pending -= 1;
                    }
                }
            }
        }
        let timeout = job.config.connect_timeout;
        for id in retry {
            result.connect_failed(|| {
                format!("connection {id}: the listener's backlog stayed full for {timeout:?}")
            });
        }
        let cut_short = stopped();
        for conn in &mut conns {
            if conn.state == State::Connecting {
                let id = conn.id;
                result.connect_failed(|| {
                    if cut_short {
                        format!("connection {id}: connecting was interrupted")
                    } else {
                        format!("connection {id}: connect timed out after {timeout:?}")
                    }
                });
                conn.state = State::Dead;
            }
        }
        let live = conns.iter().filter(|c| c.state == State::Open).count();
        Streams {
            conns,
            live,
            next_conn: 0,
            last_open: Instant::now(),
            touched: Vec::new(),
            scratch: vec![0; READ_BUFFER],
            outstanding: 0,
            max_outstanding: (MAX_OUTSTANDING_BYTES / job.config.size.max(1))
                .clamp(OUTSTANDING_MESSAGES.0, OUTSTANDING_MESSAGES.1),
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
        // A clock read per event (vDSO, tens of ns) keeps latencies
        // honest when one poll returns many events.
        let now = Instant::now();
        if self.conns[i].state == State::Connecting {
            // Churn: a new connection in place of a closed one.
            self.reconnecting(ctx, i, now);
        }
        if self.conns[i].state != State::Open {
            return;
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.receive(ctx, i, now);
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
            if conn.state == State::Retry {
                self.reconnect(ctx, i, now);
                continue;
            }
            if conn.state == State::Connecting
                && now.saturating_duration_since(conn.connect_started) >= connect_timeout
            {
                let err = io::Error::from(io::ErrorKind::TimedOut);
                let id = conn.id;
                ctx.result.connect_cause(&err);
                ctx.result.connect_failed(|| {
                    format!("connection {id}: reconnect timed out after {connect_timeout:?}")
                });
                self.conns[i].state = State::Retry;
                continue;
            }
            let conn = &self.conns[i];
            if conn.state == State::Open
                && !conn.in_flight.is_empty()
                && now.saturating_duration_since(conn.last_progress) >= timeout
            {
                let (id, owed) = (conn.id, conn.in_flight.len());
                self.kill(ctx, i, || {
                    format!("connection {id}: no echo for {timeout:?} with {owed} messages owed")
                });
            }
        }
    }

    /// `-n`: all measured messages sent and echoed; or nothing left alive.
    fn done(&self, ctx: &Ctx) -> bool {
        if self.live == 0 {
            return true;
        }
        ctx.quota_used()
            && self
                .conns
                .iter()
                .all(|c| c.state != State::Open || c.in_flight.is_empty())
    }

    fn drain(&mut self, ctx: &mut Ctx, poll: &mut Poll, events: &mut Events) {
        let deadline = ctx.wait_deadline(Instant::now());
        while self
            .conns
            .iter()
            .any(|c| c.state == State::Open && c.in_flight.iter().any(|m| m.2))
        {
            let now = Instant::now();
            if now >= deadline || ctx.interrupted() {
                break;
            }
            // Ctrl-C lands on the coordinator's thread: look every 100 ms.
            let wait = (deadline - now).min(Duration::from_millis(100));
            if poll_once(poll, events, Some(wait)).is_err() {
                break;
            }
            for event in events.iter() {
                let i = event.token().0;
                if i < self.conns.len() && self.conns[i].state == State::Open {
                    self.receive(ctx, i, Instant::now());
                    if self.conns[i].state == State::Open {
                        self.send_more(ctx, i, Instant::now());
                    }
                }
            }
        }
    }

    fn settle(&mut self, ctx: &mut Ctx, now: Instant) {
        for conn in &mut self.conns {
            for (due, _, measured) in conn.in_flight.drain(..) {
                if measured {
                    ctx.owed(due, now, true);
                }
            }
        }
        self.outstanding = 0;
    }

    fn close(self, ctx: &mut Ctx) {
        ctx.result.counters.answered = self.conns.iter().filter(|c| c.answered).count() as u64;
    }
}

impl Streams {
    /// The server closed connection `i`. With `--reconnect` (and the window
    /// still open) another takes its place, counted, and the messages owed
    /// on the old one are counted never answered (the verdict names the
    /// server); without it the connection is dead, an error.
    fn closed_by_server(
        &mut self,
        ctx: &mut Ctx,
        i: usize,
        now: Instant,
        why: impl FnOnce() -> String,
    ) {
        if !ctx.job.config.modes.reconnect {
            return self.kill(ctx, i, why);
        }
        let conn = &mut self.conns[i];
        if conn.state == State::Dead {
            return;
        }
        let owed = conn.in_flight.len();
        let lost = conn.in_flight.iter().filter(|m| m.2).count() as u64;
        conn.in_flight.clear();
        conn.recv_off = 0;
        self.outstanding = self.outstanding.saturating_sub(owed);
        ctx.result.counters.never_answered += lost;
        drop(why);
        if ctx.draining() {
            // The window is over: nothing left to send on a new
            // connection, and what the old one owed can never come (it is
            // counted never answered above, not waited for as owed).
            conn.state = State::Dead;
            self.live -= 1;
            return;
        }
        ctx.result.counters.reconnects += 1;
        self.reconnect(ctx, i, now);
    }

    fn kill(&mut self, ctx: &mut Ctx, i: usize, why: impl FnOnce() -> String) {
        let conn = &mut self.conns[i];
        if conn.state == State::Dead {
            return;
        }
        conn.state = State::Dead;
        self.live -= 1;
        self.outstanding = self.outstanding.saturating_sub(conn.in_flight.len());
        if self.live == 0 {
            // The server took every connection down: what falls due from
            // now on is held back by it, not late by the generator.
            ctx.set_held(true);
        }
        ctx.result.error(why);
    }

    /// Reads until the socket is drained, checking every byte.
    fn receive(&mut self, ctx: &mut Ctx, i: usize, now: Instant) {
        // Taken out so `consume` can borrow the connections meanwhile.
        let mut scratch = std::mem::take(&mut self.scratch);
        loop {
            let conn = &mut self.conns[i];
            match conn.sock.recv(&mut scratch) {
                Ok(0) => {
                    let id = conn.id;
                    let owed = conn.in_flight.len();
                    self.closed_by_server(ctx, i, now, || {
                        format!("connection {id}: closed by the server with {owed} echoes owed")
                    });
                    break;
                }
                Ok(n) => {
                    if let Some((took, resumed)) = conn.sock.take_handshake() {
                        ctx.handshaked(took, resumed, now);
                    }
                    conn.last_progress = now;
                    conn.answered = true;
                    if let Err(why) = consume(ctx, conn, &scratch[..n], now, &mut self.outstanding)
                    {
                        self.kill(ctx, i, || why);
                        break;
                    }
                    if ctx.retires(self.conns[i].sent) && self.conns[i].in_flight.is_empty() {
                        // Churn: M echoes done; a new connection takes its place.
                        self.reconnect(ctx, i, now);
                        break;
                    }
                    // A short read drained the socket; the next arrival
                    // raises a new edge, so skip the read that would only
                    // say WouldBlock. (Not so over TLS: one record a read.)
                    if n < scratch.len() && !self.conns[i].sock.is_tls() {
                        break;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    let id = conn.id;
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

    /// Churn: closes connection `i` (its M echoes are in) and starts a new
    /// one under the same token.
    fn reconnect(&mut self, ctx: &mut Ctx, i: usize, now: Instant) {
        let id = self.conns[i].id;
        if ctx.draining() {
            // The window is over: no new connection, the old one closes.
            let conn = &mut self.conns[i];
            if conn.state != State::Dead {
                conn.state = State::Dead;
                self.live -= 1;
            }
            return;
        }
        match connect_one(&ctx.job.dest, &ctx.registry, id, Token(i), now) {
            Ok(mut conn) => {
                conn.answered = self.conns[i].answered;
                // Dropping the old socket closes it (the generator closes
                // first, so TIME_WAIT is on this side).
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

    /// Churn: connection `i` is connecting; has it finished?
    fn reconnecting(&mut self, ctx: &mut Ctx, i: usize, now: Instant) {
        let conn = &mut self.conns[i];
        match conn.sock.connecting_done() {
            Ok(true) => {
                conn.state = State::Open;
                conn.last_progress = now;
                let took = now.saturating_duration_since(conn.connect_started);
                ctx.reconnected(took, now);
                conn.connected(&ctx.registry, Token(i));
            }
            Ok(false) => {}
            Err(err) => {
                let id = conn.id;
                ctx.result.connect_cause(&err);
                ctx.result.connect_failed(|| {
                    format!("connection {id}: reconnect failed: {}", describe(&err))
                });
                conn.state = State::Retry;
            }
        }
    }

    /// Open loop: every message due by now goes out, each on the next
    /// connection (round robin) that is open and has room.
    fn send_due(&mut self, ctx: &mut Ctx, now: Instant) {
        let n = self.conns.len();
        'due: loop {
            let mut pick = None;
            let mut full = false;
            for k in 0..n {
                let i = (self.next_conn + k) % n;
                let conn = &self.conns[i];
                if conn.state == State::Open && !ctx.retires(conn.sent) {
                    if conn.out.len() - conn.out_pos >= MAX_UNSENT
                        || conn.in_flight.len() >= self.max_outstanding
                        || self.outstanding >= MAX_OUTSTANDING_WORKER
                    {
                        full = true;
                        continue;
                    }
                    pick = Some(i);
                    break;
                }
            }
            // No connection can take a message now (all full, or all
            // reconnecting): the due ones wait, and count as late (or held
            // back by the server, when full) when they leave.
            let Some(i) = pick else {
                if full && ctx.next_wake().is_some_and(|due| due <= now) {
                    ctx.set_held(true);
                }
                break 'due;
            };
            let Some((due, measured)) = ctx.due(now) else {
                ctx.set_held(false);
                break 'due;
            };
            self.next_conn = (i + 1) % n;
            let conn = &mut self.conns[i];
            conn.reuse_written();
            conn.queue(ctx, due, now, measured);
            self.outstanding += 1;
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

    /// Closed loop: tops the connection up to `depth` messages in flight.
    /// Both loops: writes what the socket takes.
    fn send_more(&mut self, ctx: &mut Ctx, i: usize, now: Instant) {
        let depth = ctx.job.config.depth;
        let conn = &mut self.conns[i];
        conn.reuse_written();
        while conn.in_flight.len() < depth && !ctx.retires(conn.sent) {
            let Some(measured) = ctx.admit(now) else {
                break;
            };
            conn.queue(ctx, now, now, measured);
            self.outstanding += 1;
        }
        let written = write_out(
            &conn.sock,
            &conn.out,
            &mut conn.out_pos,
            &mut conn.write_interest,
            &ctx.registry,
            Token(i),
        );
        let id = conn.id;
        match written {
            Ok(()) => {}
            Err(WriteFailed::ByServer(why)) => {
                self.closed_by_server(ctx, i, now, || format!("connection {id}: {why}"));
            }
            Err(WriteFailed::Other(why)) => self.kill(ctx, i, || format!("connection {id}: {why}")),
        }
    }
}

/// Checks received bytes against the messages in flight, in order.
/// Each echo completed is one fewer of the worker's `outstanding`.
fn consume(
    ctx: &mut Ctx,
    conn: &mut StreamLink,
    mut data: &[u8],
    now: Instant,
    outstanding: &mut usize,
) -> Result<(), String> {
    let size = ctx.pattern.size();
    while !data.is_empty() {
        if conn.in_flight.is_empty() {
            return Err(format!(
                "connection {}: {} bytes came back that were never sent",
                conn.id,
                data.len()
            ));
        }
        let take = (size - conn.recv_off).min(data.len());
        if !ctx
            .pattern
            .check(conn.next_recv, conn.recv_off, &data[..take])
        {
            return Err(ctx.pattern.mismatch(
                conn.next_recv,
                conn.recv_off,
                &data[..take],
                &format!("connection {}: echo of message {}", conn.id, conn.next_recv),
            ));
        }
        conn.recv_off += take;
        data = &data[take..];
        if conn.recv_off == size {
            conn.recv_off = 0;
            conn.next_recv += 1;
            if let Some((due, sent, measured)) = conn.in_flight.pop_front() {
                *outstanding = outstanding.saturating_sub(1);
                ctx.echoed(due, sent, measured, now);
            }
        }
    }
    Ok(())
}
