//! What a handler is, and what it may touch while it runs.
//!
//! A handler never sees the reactor: it gets a [`Context`] that lends it the
//! counters, the limits, and (through methods) the registry, the timers, the
//! buffer pool, the scratch buffer and a queue for new handlers. The slab is
//! therefore never borrowed twice.

use std::fmt;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mio::{Registry, Token};

use super::stats::Stats;
use super::timer::Reason;
use super::LoopParts;

/// What the loop does with a handler after calling it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep the handler in the slab.
    Continue,
    /// Remove and drop the handler (which closes its sockets).
    Close,
}

/// The readiness of one event, decoupled from `mio::event::Event` so the
/// loop can also call a handler back with nothing new (after its fairness
/// budget ran out) and so tests can build one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Readiness {
    /// Data (or a new connection) can be read.
    pub readable: bool,
    /// The socket has room to send.
    pub writable: bool,
    /// The peer closed its sending side (or the socket hung up).
    pub read_closed: bool,
    /// Our sending side is closed (the peer reset or hung up).
    pub write_closed: bool,
    /// The socket has a pending error; the next syscall will return it.
    pub error: bool,
    /// TCP urgent data arrived (EPOLLPRI).
    pub priority: bool,
}

impl Readiness {
    /// Nothing new from the kernel: the handler was asked to come back.
    pub const RESUME: Readiness = Readiness {
        readable: false,
        writable: false,
        read_closed: false,
        write_closed: false,
        error: false,
        priority: false,
    };
}

impl From<&mio::event::Event> for Readiness {
    fn from(event: &mio::event::Event) -> Self {
        Readiness {
            readable: event.is_readable(),
            writable: event.is_writable(),
            read_closed: event.is_read_closed(),
            write_closed: event.is_write_closed(),
            error: event.is_error(),
            priority: event.is_priority(),
        }
    }
}

impl fmt::Display for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flags = [
            (self.readable, "readable"),
            (self.writable, "writable"),
            (self.read_closed, "read-closed"),
            (self.write_closed, "write-closed"),
            (self.error, "error"),
            (self.priority, "priority"),
        ];
        let mut first = true;
        for (set, name) in flags {
            if set {
                f.write_str(if first { "" } else { "|" })?;
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("resume")?;
        }
        Ok(())
    }
}

/// One row of `echoplex status`.
#[derive(Clone, Debug, Default)]
pub struct HandlerInfo {
    /// `tcp-listener`, `tcp-conn`, `udp`, `unix-listener`, ...
    pub kind: &'static str,
    /// The local address or path.
    pub local: String,
    /// The peer address, where there is one.
    pub peer: String,
    /// `listening`, `open`, `half-closed`, `draining`, `paused-by-backpressure`, ...
    pub state: &'static str,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Bytes received and not yet sent back.
    pub pending: usize,
    /// Time since the last traffic, for connections.
    pub idle: Option<Duration>,
    /// What else `status` shows of it (a TLS connection's version and cipher).
    pub detail: Option<String>,
}

impl HandlerInfo {
    /// The row of a handler with no peer that is always open: the daemon's
    /// own (signals, the publisher), `local` naming what it listens to.
    pub fn internal(kind: &'static str, local: impl Into<String>) -> HandlerInfo {
        HandlerInfo {
            kind,
            local: local.into(),
            peer: "-".into(),
            state: "open",
            ..HandlerInfo::default()
        }
    }
}

/// The limits every handler honours, fixed at start-up.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Close a connection after this long without traffic either way.
    pub idle_timeout: Duration,
    /// Connections beyond this are accepted and closed at once.
    pub max_connections: usize,
    /// Bytes a connection may hold unsent before we stop reading from it.
    pub max_buffer: usize,
    /// How long a shutdown may spend flushing what is owed.
    pub grace: Duration,
    /// Control connections (admin, metrics: `Handler::is_control`) open at
    /// once, beyond `max_connections`: health checks and `status` are
    /// answered while echo connections are at their limit.
    pub control_reserve: usize,
}

/// The default `Limits::control_reserve`: a few scrapers, balancers' health
/// checks and `status` clients at once, not a second pool to flood.
pub const CONTROL_RESERVE: usize = 16;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            idle_timeout: Duration::from_secs(300),
            max_connections: 1024,
            max_buffer: 64 * 1024,
            grace: Duration::from_secs(2),
            control_reserve: CONTROL_RESERVE,
        }
    }
}

/// A non-blocking handler in the reactor's slab: a listener, a connection,
/// a datagram socket, the signal pipe.
pub trait Handler {
    /// Registers this handler's sources under `token` (once, on insertion).
    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()>;

    /// Called right after registration, e.g. to arm a timer.
    fn started(&mut self, _cx: &mut Context) -> Flow {
        Flow::Continue
    }

    /// Called for every readiness event on this handler's token, and with
    /// [`Readiness::RESUME`] when it asked to run again.
    fn ready(&mut self, readiness: Readiness, cx: &mut Context) -> Flow;

    /// Called when a deadline this handler set has passed, with the reason
    /// it gave `Context::set_timer`. Deadlines are not cancelled: a handler
    /// checks whether the deadline still matters.
    fn timeout(&mut self, _reason: Reason, _cx: &mut Context) -> Flow {
        Flow::Continue
    }

    /// Shutdown has begun: stop taking new work, and return `Close` once
    /// nothing is owed (or `Continue` and close later from `ready`).
    fn shutdown(&mut self, _cx: &mut Context) -> Flow {
        Flow::Close
    }

    /// An upgrade handed over: stop taking new work, but keep serving.
    /// A connection carries on as before (its peer decides when it ends,
    /// or its idle limit); anything else shuts down as at a shutdown.
    fn drain(&mut self, cx: &mut Context) -> Flow {
        if self.is_connection() {
            Flow::Continue
        } else {
            self.shutdown(cx)
        }
    }

    /// False for handlers that only wait (the signal pipe): the loop ends
    /// its shutdown once no handler that keeps it alive is left.
    fn keeps_alive(&self) -> bool {
        true
    }

    /// True for accepted connections: they count against `max_connections`.
    fn is_connection(&self) -> bool {
        false
    }

    /// True for a connection of the daemon's own control plane (admin,
    /// metrics): admitted against `Limits::control_reserve` instead of
    /// `max_connections`, and counted on the control figures only (its
    /// bytes are not echo traffic: `status` must not measure itself).
    fn is_control(&self) -> bool {
        false
    }

    /// For a control connection with no request in progress (nothing
    /// buffered, nothing owed): when it last moved bytes. When its
    /// endpoint's reserve is full, the one quiet longest is closed to make
    /// room for a newcomer (as web servers drop idle keep-alive clients),
    /// so idle clients cannot hold `/healthz` or `status` shut. None while
    /// busy: a request in progress is never cut. `now` for one accepted
    /// in this very turn, not started yet.
    fn quiet_since(&self, _now: Instant) -> Option<Instant> {
        None
    }

    /// One row of `echoplex status`.
    fn describe(&self, now: Instant) -> HandlerInfo;
}

/// What [`Context::spawn`] did with a handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Admission {
    /// Queued: it is inserted after the current call.
    Admitted,
    /// A connection over `--max-connections`: dropped (its socket closed)
    /// and counted as `rejected_max_connections`.
    OverLimit,
    /// A control connection over `Limits::control_reserve`, none of its
    /// endpoint's open ones quiet enough to close for it: dropped and
    /// counted as `rejected_control`.
    OverReserve,
}

/// What a handler may touch while it runs: lent by the reactor per call.
pub struct Context<'a> {
    /// The token of the handler being called.
    pub token: Token,
    /// The time the loop woke up; one clock read per turn.
    pub now: Instant,
    /// The daemon's counters.
    pub stats: &'a mut Stats,
    /// The daemon's limits.
    pub limits: &'a Limits,
    pub(super) parts: &'a mut LoopParts,
    /// The handler is a control connection (`Handler::is_control`).
    pub(super) control: bool,
    /// The other handlers (the running one is out of its slot), for `status`.
    pub(super) slots: &'a slab::Slab<super::Slot>,
}

impl Context<'_> {
    /// The registry, to change interest or register a new source.
    pub fn registry(&self) -> &Registry {
        &self.parts.registry
    }

    /// Calls this handler's `timeout` with `reason` at (or soon after) `deadline`.
    pub fn set_timer(&mut self, deadline: Instant, reason: Reason) {
        self.parts.timers.insert(deadline, self.token, reason);
    }

    /// Counts bytes received: echo traffic, or the control plane's own
    /// (admin, metrics), which `status` must not count as echo.
    pub fn count_received(&mut self, n: usize) {
        if self.control {
            self.stats.control_bytes_in += n as u64;
        } else {
            self.stats.bytes_in += n as u64;
        }
    }

    /// Counts bytes sent, as `count_received`.
    pub fn count_sent(&mut self, n: usize) {
        if self.control {
            self.stats.control_bytes_out += n as u64;
        } else {
            self.stats.bytes_out += n as u64;
        }
    }

    /// Queues a new handler; it is inserted after the current call, in the
    /// order of spawning. A connection (`is_connection`) is admitted only
    /// under `--max-connections`, and counted as accepted; the reactor
    /// counts it closed when it closes. A control connection (`is_control`)
    /// is admitted under its own reserve instead.
    pub fn spawn(&mut self, handler: Box<dyn Handler>) -> Admission {
        if handler.is_control() {
            // Each control endpoint has a reserve of its own: idle clients of
            // a network-facing `metrics://` must not lock the owner out of
            // the admin socket. What is spawned and not yet inserted came
            // from this call's endpoint (the queue is emptied after each).
            let open = self
                .stats
                .endpoints
                .get(self.parts.origin)
                .map_or(self.stats.control_connections, |endpoint| {
                    usize::try_from(endpoint.connections).unwrap_or(usize::MAX)
                })
                + self.parts.spawned_control;
            // Those already chosen to make room this call are going.
            let open = open.saturating_sub(self.parts.evicting.len());
            if open >= self.limits.control_reserve {
                if let Some(victim) = self.quietest_control() {
                    // Closed by the loop right after this call, before
                    // the newcomer is inserted.
                    self.parts.evicting.push(victim);
                } else if let Some(at) = self.quiet_spawned_control() {
                    // A burst of connections in one accept call: the
                    // first quiet one of the burst makes room.
                    drop(self.parts.spawned.remove(at));
                    self.parts.spawned_control -= 1;
                } else {
                    self.stats.rejected_control += 1;
                    return Admission::OverReserve;
                }
                self.stats.evicted_control += 1;
            }
            self.parts.spawned_control += 1;
        } else if handler.is_connection() {
            if self.connections() >= self.limits.max_connections {
                self.stats.rejected_max_connections += 1;
                return Admission::OverLimit; // dropping it closes its socket
            }
            self.stats.accepted += 1;
            self.parts.spawned_connections += 1;
        }
        let origin = self.parts.origin;
        self.parts.spawned.push_back((handler, origin));
        Admission::Admitted
    }

    /// The control connection of this call's endpoint quiet longest (see
    /// `Handler::quiet_since`), not already chosen: O(reserve), and only
    /// when the reserve is full.
    fn quietest_control(&self) -> Option<Token> {
        let parts = &*self.parts;
        parts
            .control_tokens
            .get(super::control_list(parts.origin))?
            .iter()
            .filter(|token| !parts.evicting.contains(token))
            .filter_map(|&token| {
                let slot = self.slots.get(super::key_of(token))?;
                if slot.generation != super::generation_of(token) {
                    return None;
                }
                Some((slot.handler.as_ref()?.quiet_since(self.now)?, token))
            })
            .min_by_key(|&(since, _)| since)
            .map(|(_, token)| token)
    }

    /// The first control connection spawned in this call (so of this
    /// endpoint) that is quiet: it has sent nothing yet.
    fn quiet_spawned_control(&self) -> Option<usize> {
        self.parts.spawned.iter().position(|(handler, _)| {
            handler.is_control() && handler.quiet_since(self.now).is_some()
        })
    }

    /// Calls this handler again, with [`Readiness::RESUME`], on the next
    /// turn of the loop: how a handler that hit its fairness budget yields.
    pub fn run_again(&mut self) {
        self.parts.run_again.push(self.token);
    }

    /// Asks the loop to begin a graceful shutdown.
    pub fn request_shutdown(&mut self) {
        self.parts.shutdown_requested = true;
    }

    /// True once shutdown has begun: accept nothing new.
    pub fn is_shutting_down(&self) -> bool {
        self.parts.shutdown_deadline.is_some()
    }

    /// True once the loop takes no new work: a shutdown or a drain began.
    pub fn is_stopping(&self) -> bool {
        self.is_shutting_down() || self.is_draining()
    }

    /// Asks the loop to begin a drain (see `Reactor::request_drain`).
    pub fn request_drain(&mut self) {
        self.parts.drain_requested = true;
    }

    /// True once a drain has begun: listeners are closed, connections
    /// served on.
    pub fn is_draining(&self) -> bool {
        self.parts.draining
    }

    /// Open connections (of every reactor, when there are several),
    /// counting those accepted in this turn.
    pub fn connections(&self) -> usize {
        let open = match &self.parts.all_connections {
            Some(all) => all.load(std::sync::atomic::Ordering::Relaxed),
            None => self.stats.connections,
        };
        open + self.parts.spawned_connections
    }

    /// Lends the shared read buffer to `f` together with the context:
    /// reads land there, so an idle or flushed connection owns no buffer.
    // Always inlined: left to the heuristics it stayed a call on every
    // read once LoopParts grew, +15 instructions per echo (callgrind).
    #[inline(always)]
    pub fn with_scratch<T>(&mut self, f: impl FnOnce(&mut [u8], &mut Self) -> T) -> T {
        let mut scratch = std::mem::take(&mut self.parts.scratch);
        let result = f(&mut scratch, self);
        self.parts.scratch = scratch;
        result
    }

    /// A buffer with capacity for `limits.max_buffer` bytes, from the pool.
    pub fn take_buffer(&mut self) -> Vec<u8> {
        self.parts.pool.take()
    }

    /// Returns a buffer to the pool.
    pub fn give_buffer(&mut self, buffer: Vec<u8>) {
        self.parts.pool.give(buffer);
    }

    /// The text `build` makes, built at most once per turn of the loop
    /// under `name` and shared by every handler that asks for it in that
    /// turn: what costs O(handlers) to build (`status`, `/status`) is not
    /// built again for each request of a pipelined burst.
    pub fn once_per_turn(
        &mut self,
        name: &'static str,
        build: impl FnOnce(&Context) -> String,
    ) -> Rc<str> {
        let turn = self.stats.loop_iterations;
        let memo = &mut self.parts.memo;
        if memo.turn != turn {
            memo.turn = turn;
            memo.texts.clear();
        }
        if let Some((_, text)) = memo.texts.iter().find(|(n, _)| *n == name) {
            return text.clone();
        }
        let text: Rc<str> = build(self).into();
        self.parts.memo.texts.push((name, text.clone()));
        text
    }

    /// A row for every other handler in the slab, by slab key: what
    /// `echoplex status` shows.
    pub fn describe_all(&self) -> Vec<(usize, HandlerInfo)> {
        super::describe_slots(self.slots, self.now)
    }

    /// `describe_all` for the connections only (the page's sample).
    pub fn describe_connections(&self) -> Vec<(usize, HandlerInfo)> {
        super::describe_connections(self.slots, self.now)
    }

    /// This reactor's index among the daemon's (0 with one).
    pub fn reactor_index(&self) -> usize {
        self.parts.index
    }

    /// How many reactors the daemon runs.
    pub fn reactor_count(&self) -> usize {
        self.parts.board.count()
    }

    /// Every reactor's counters, by index: this one's live, the others' as
    /// last published (with one reactor, this one's alone).
    pub fn every_reactor(&self) -> Vec<Stats> {
        self.parts.board.every_reactor(self.parts.index, self.stats)
    }

    /// The handlers of every reactor as (reactor, slab key, row): this
    /// one's live, the others' as last published.
    pub fn every_handler(&self) -> Vec<(usize, usize, HandlerInfo)> {
        self.parts
            .board
            .every_handler(self.parts.index, self.describe_all())
    }

    /// Publishes this reactor's counters for the others and, with several
    /// reactors, its handlers' rows: O(handlers), off any message's path.
    pub fn publish(&self) {
        let rows = (self.reactor_count() > 1).then(|| self.describe_all());
        self.parts.board.publish(self.parts.index, self.stats, rows);
    }

    /// Someone watches the loop at `now` (the page): every reactor records
    /// its last turns for a while (`board::WATCHED_FOR`).
    pub fn watch(&self) {
        self.parts.board.watch(self.now);
    }

    /// Whether someone watched the loop lately (see [`Context::watch`]).
    pub fn is_watched(&self) -> bool {
        self.parts.board.is_watched(self.now)
    }

    /// Timers pending in the loop's heap (lazily cancelled ones included).
    pub fn timers_pending(&self) -> usize {
        self.parts.timers.len()
    }

    /// Sets no timer for now: the loop calls this handler's `timeout`
    /// with `reason` in the first turn that has events. An idle loop thus
    /// sleeps in `poll` (the sampler of a daemon nobody uses).
    pub fn sleep_until_work(&mut self, reason: Reason) {
        self.parts.sleeper = Some((self.token, reason));
    }

    /// Records the last turns (for the page's strip) or stops.
    pub fn record_turns(&mut self, on: bool) {
        self.parts.turns.on = on;
    }

    /// The last turns of the loop, oldest first (the page's strip).
    pub fn recent_turns(&self) -> Vec<super::turns::TurnRecord> {
        self.parts.turns.recent()
    }

    /// The reserve-descriptor trick for EMFILE: closes the spare descriptor
    /// kept for this moment, runs `f` (which may now open one), then takes
    /// the spare back. Returns None when there was no spare to give up.
    pub fn with_reserve_fd<T>(&mut self, f: impl FnOnce() -> T) -> Option<T> {
        // A spare lost earlier (the reopen raced another descriptor) is
        // taken again whenever one is free.
        self.parts
            .reserve_fd
            .take()
            .or_else(super::open_reserve_fd)?;
        let result = f();
        self.parts.reserve_fd = super::open_reserve_fd();
        Some(result)
    }
}
