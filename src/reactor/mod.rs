//! The reactor: one `mio::Poll` and one `Slab` of handlers on one thread
//! (`serve --reactors N` runs N of them, each on its own thread).
//!
//! [`Reactor::run`] loops over [`Reactor::turn`]; a test (or a thread of
//! `--reactors`) may call `turn` itself, with a [`ManualClock`]. One turn:
//! 1. choose the poll timeout: zero if a handler asked to run again, else
//!    until the nearest timer (or the shutdown deadline), else forever
//!    (capped by the caller's `max_wait`);
//! 2. `poll` once, then hand each event to the handler its token names;
//! 3. call back the handlers that yielded at their fairness budget;
//! 4. fire the timers that are due, each with the reason it was set for;
//! 5. begin a drain (an upgrade handed over: stop accepting, keep serving
//!    every connection) or a graceful shutdown if one was asked for.
//!
//! When a shutdown (or a drain) finishes, every handler still in the slab
//! is closed and counted before `turn` says `Finished`, so the final
//! counters add up.
//!
//! Handlers a call spawns (accepted connections) are inserted after it,
//! first in first out, by a loop: never by recursion. The reactor owns the
//! connection count: `Context::spawn` admits or refuses against
//! `--max-connections`, and a closed connection is counted here.
//!
//! A token is the slab key in its low bits and a generation in its high
//! bits: an event fetched for a connection that closed earlier in the same
//! turn names an old generation and is dropped, never delivered to the new
//! connection that reuses the key.

pub mod board;
pub mod buffer;
mod clock;
pub mod handler;
pub mod sample;
pub mod sampler;
pub mod stats;
pub mod timer;
mod token;
pub mod turns;

use clock::Clock;
pub use clock::ManualClock;
use token::{generation_of, key_of, make_token, KEY_BITS, KEY_MASK};

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, trace, warn};
use mio::{Events, Poll, Registry, Token};
use slab::Slab;

pub use board::{each_json, totals, Board};
pub use buffer::BufferPool;
pub use handler::{
    Admission, Context, Flow, Handler, HandlerInfo, Limits, Readiness, CONTROL_RESERVE,
};
pub use stats::{EndpointStats, Stat, StatKind, Stats};
pub use timer::{Reason, Timers};

/// Events fetched per poll: enough to amortise the syscall, small enough
/// that one turn stays short.
const EVENTS_PER_POLL: usize = 1024;

/// The descriptor held in reserve for the EMFILE trick (see `Context::with_reserve_fd`).
pub(crate) fn open_reserve_fd() -> Option<File> {
    File::open("/dev/null").ok()
}

/// A handler and the generation of the token it was registered under. The
/// handler is taken out while it runs, so its `Context` may read the rest
/// of the slab (for `status`) without aliasing it.
struct Slot {
    generation: usize,
    handler: Option<Box<dyn Handler>>,
    /// Index in `stats.endpoints` of the endpoint this handler serves (a
    /// listener's or datagram socket's own, a connection's listener's), or
    /// `NO_ENDPOINT`.
    origin: usize,
    /// `Handler::is_control`, read once: its bytes move to the control figures.
    control: bool,
}

/// A handler that belongs to no endpoint (signals, timers of the daemon).
const NO_ENDPOINT: usize = usize::MAX;

/// The index in `LoopParts::control_tokens` of `origin`'s list (the first
/// list is for connections of no endpoint).
fn control_list(origin: usize) -> usize {
    origin.wrapping_add(1)
}

/// Which handler method a dispatch calls.
#[derive(Clone, Copy, Debug)]
enum Call {
    Started,
    Ready(Readiness),
    Timeout(Reason),
    Shutdown,
    Drain,
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Call::Started => f.write_str("started"),
            Call::Ready(readiness) => write!(f, "ready {readiness}"),
            Call::Timeout(reason) => write!(f, "timeout {}", reason.0),
            Call::Shutdown => f.write_str("shutdown"),
            Call::Drain => f.write_str("drain"),
        }
    }
}

/// What a [`Reactor::turn`] left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Turn {
    /// Keep turning.
    Running,
    /// A shutdown has finished (nothing owed, or the grace period over).
    Finished,
}

/// The event loop. Build it, [`add`](Reactor::add) handlers, then
/// [`run`](Reactor::run) it until shutdown (or [`turn`](Reactor::turn) it
/// step by step).
pub struct Reactor {
    poll: Poll,
    events: Events,
    clock: Clock,
    core: Core,
}

/// Everything but the poller, so events can be iterated while handlers run.
struct Core {
    slots: Slab<Slot>,
    generation: usize,
    stats: Stats,
    limits: Limits,
    parts: LoopParts,
    trace: bool,
}

/// What a running handler may touch through its `Context`, besides the
/// counters, the limits and (read-only) the other slots.
pub(crate) struct LoopParts {
    registry: Registry,
    timers: Timers,
    pool: BufferPool,
    scratch: Box<[u8]>,
    /// Handlers spawned and not yet inserted, first in first out, with the
    /// endpoint of the handler that spawned them.
    spawned: VecDeque<(Box<dyn Handler>, usize)>,
    /// The endpoint of the handler being called (what it spawns inherits it).
    origin: usize,
    /// How many of `spawned` are connections (they count against the limit).
    spawned_connections: usize,
    /// How many of `spawned` are control connections (against their reserve).
    spawned_control: usize,
    /// The open control connections of each endpoint (`control_list`):
    /// where one is found to close when its reserve is full.
    control_tokens: Vec<Vec<Token>>,
    /// Control connections chosen this call to make room for newcomers
    /// (`Context::spawn`); closed before the spawned are inserted.
    evicting: Vec<Token>,
    run_again: Vec<Token>,
    /// The tokens being called back this turn; kept to reuse its allocation.
    running_again: Vec<Token>,
    shutdown_requested: bool,
    shutdown_deadline: Option<Instant>,
    /// A second request cut the grace period short (not "grace over").
    hurried: bool,
    drain_requested: bool,
    /// Listeners closed, connections served on to their peers' close.
    draining: bool,
    reserve_fd: Option<File>,
    /// Open connections of every reactor (`--reactors N`): one limit.
    all_connections: Option<Arc<AtomicUsize>>,
    /// What the daemon's reactors share (`Context::every_reactor`), and
    /// this reactor's index among them.
    board: Board,
    index: usize,
    /// Texts built once per turn (`Context::once_per_turn`).
    memo: Memo,
    /// The last turns, for the page's strip (`Context::recent_turns`).
    turns: turns::TurnLog,
    /// A handler asleep until the loop has work (`Context::sleep_until_work`):
    /// its timer is set again, due at once, by the next turn with events.
    sleeper: Option<(Token, Reason)>,
}

/// What `Context::once_per_turn` built in the turn numbered `turn`.
#[derive(Default)]
pub(crate) struct Memo {
    turn: u64,
    texts: Vec<(&'static str, Rc<str>)>,
}

/// Spare send buffers the pool may keep, in bytes.
const SPARE_BUFFER_BYTES: usize = 16 << 20;

/// Least scratch size: any UDP datagram is read whole (jumbograms aside).
const DATAGRAM_SCRATCH: usize = 65_536;

impl Reactor {
    /// A reactor with no handlers yet, on the system clock.
    pub fn new(limits: Limits) -> io::Result<Reactor> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let scratch_len = limits.max_buffer.max(DATAGRAM_SCRATCH);
        Ok(Reactor {
            poll,
            events: Events::with_capacity(EVENTS_PER_POLL),
            clock: Clock::System,
            core: Core {
                slots: Slab::new(),
                generation: 0,
                stats: Stats::new(Instant::now()),
                parts: LoopParts {
                    registry,
                    timers: Timers::new(),
                    pool: BufferPool::new(
                        limits.max_buffer,
                        SPARE_BUFFER_BYTES / limits.max_buffer.max(1),
                    ),
                    scratch: vec![0; scratch_len].into_boxed_slice(),
                    spawned: VecDeque::new(),
                    origin: NO_ENDPOINT,
                    spawned_connections: 0,
                    spawned_control: 0,
                    control_tokens: Vec::new(),
                    evicting: Vec::new(),
                    all_connections: None,
                    board: Board::new(1),
                    index: 0,
                    memo: Memo::default(),
                    turns: turns::TurnLog::default(),
                    sleeper: None,
                    run_again: Vec::new(),
                    running_again: Vec::new(),
                    shutdown_requested: false,
                    shutdown_deadline: None,
                    hurried: false,
                    drain_requested: false,
                    draining: false,
                    reserve_fd: open_reserve_fd(),
                },
                limits,
                trace: log::log_enabled!(log::Level::Trace),
            },
        })
    }

    /// A reactor whose time is `clock`'s (for tests: timers fire when the
    /// test advances it).
    pub fn with_clock(limits: Limits, clock: ManualClock) -> io::Result<Reactor> {
        let mut reactor = Reactor::new(limits)?;
        reactor.core.stats.started = clock.now();
        reactor.clock = Clock::Manual(clock);
        Ok(reactor)
    }

    /// Inserts and registers a handler; returns its token.
    pub fn add(&mut self, handler: Box<dyn Handler>) -> io::Result<Token> {
        let now = self.clock.now();
        let token = self.core.insert(handler, now, NO_ENDPOINT)?;
        self.core.insert_spawned(now);
        Ok(token)
    }

    /// Like `add`, for the handler that serves `endpoint` (its `listening`
    /// text): what it and the connections it accepts move is also counted
    /// for that endpoint (`Stats::endpoints`, labelled in `/metrics`).
    pub fn add_endpoint(
        &mut self,
        handler: Box<dyn Handler>,
        endpoint: String,
    ) -> io::Result<Token> {
        let now = self.clock.now();
        let origin = self.core.stats.endpoints.len();
        self.core.stats.endpoints.push(EndpointStats::new(endpoint));
        let token = self.core.insert(handler, now, origin)?;
        self.core.insert_spawned(now);
        Ok(token)
    }

    /// Counts this reactor's connections in `counter` too, shared with the
    /// other reactors, so that `--max-connections` is one limit for all.
    pub fn count_connections_in(&mut self, counter: Arc<AtomicUsize>) {
        self.core.parts.all_connections = Some(counter);
    }

    /// Makes this reactor number `index` of those sharing `board`: its
    /// handlers see every reactor's counters (`Context::every_reactor`).
    pub fn join_board(&mut self, board: Board, index: usize) {
        self.core.parts.board = board;
        self.core.parts.index = index;
    }

    /// Publishes this reactor's counters on its board (its last figures).
    pub fn publish(&self) {
        let parts = &self.core.parts;
        parts.board.publish(parts.index, &self.core.stats, None);
    }

    /// The counters so far.
    pub fn stats(&self) -> &Stats {
        &self.core.stats
    }

    /// Asks for a graceful shutdown, as a signal does: it begins at the end
    /// of the next turn (a second request ends it at once).
    pub fn request_shutdown(&mut self) {
        self.core.parts.shutdown_requested = true;
    }

    /// True once a shutdown has begun (its grace period running).
    pub fn is_shutting_down(&self) -> bool {
        self.core.parts.shutdown_deadline.is_some()
    }

    /// Asks for a drain, as an upgrade's handover does: at the end of the
    /// next turn every handler but the connections is shut down (listeners
    /// close), and the loop finishes once no connection is left. A
    /// shutdown may still follow (a signal, the `--drain` limit).
    pub fn request_drain(&mut self) {
        self.core.parts.drain_requested = true;
    }

    /// True once a drain has begun.
    pub fn is_draining(&self) -> bool {
        self.core.parts.draining
    }

    /// A `status` row for every handler, by slab key.
    pub fn describe_all(&self) -> Vec<(usize, HandlerInfo)> {
        let now = self.clock.now();
        describe_slots(&self.core.slots, now)
    }

    /// Runs the loop until a shutdown has finished (every handler closed,
    /// or the grace period over).
    pub fn run(&mut self) -> io::Result<()> {
        while self.turn(None)? == Turn::Running {}
        Ok(())
    }

    /// One turn of the loop: poll once (waiting at most `max_wait`, if
    /// given, besides the loop's own timeout), dispatch the events, call
    /// back the handlers that yielded, fire the timers that are due.
    pub fn turn(&mut self, max_wait: Option<Duration>) -> io::Result<Turn> {
        let now = self.clock.now();
        let parts = &self.core.parts;
        if let Some(deadline) = parts.shutdown_deadline {
            let owed = self.core.owed();
            if now >= deadline || owed == 0 {
                if owed > 0 && !parts.hurried {
                    warn!("grace period over; closing the {owed} handlers still open (a connection still owed bytes is reset)");
                }
                self.core.close_all();
                return Ok(Turn::Finished);
            }
        } else if parts.draining && self.core.owed() == 0 {
            self.core.close_all();
            return Ok(Turn::Finished);
        }
        let timeout = match (self.core.poll_timeout(now), max_wait) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            // A signal landed: its handler wrote to our pipe, so go round.
            Err(err) if err.kind() == io::ErrorKind::Interrupted => return Ok(Turn::Running),
            Err(err) => return Err(err),
        }
        let now = self.clock.now();
        let core = &mut self.core;
        let events = self.events.iter().count();
        core.stats.loop_iterations += 1;
        core.stats.events += events as u64;
        core.stats.turn_events[turns::bucket(events)] += 1;
        if core.trace {
            trace!("turn {}: {events} events", core.stats.loop_iterations);
        }
        for event in self.events.iter() {
            core.dispatch(event.token(), now, Call::Ready(Readiness::from(event)));
        }
        // Handlers that yield again while called back land in the
        // fresh `run_again` list, for the next turn.
        let mut running = std::mem::take(&mut core.parts.running_again);
        std::mem::swap(&mut running, &mut core.parts.run_again);
        for &token in &running {
            core.dispatch(token, now, Call::Ready(Readiness::RESUME));
        }
        let resumed = running.len();
        running.clear();
        if events > 0 {
            if let Some((token, reason)) = core.parts.sleeper.take() {
                core.parts.timers.insert(now, token, reason);
            }
        }
        core.parts.running_again = running;
        let fired_before = core.stats.timers_fired;
        while let Some((token, reason)) = core.parts.timers.pop_expired(now) {
            core.stats.timers_fired += 1;
            core.dispatch(token, now, Call::Timeout(reason));
        }
        // The page's strip, while a page is open: one record per turn,
        // nothing per call; otherwise one test of a flag.
        if core.parts.turns.on {
            core.parts.turns.record(
                core.stats.loop_iterations,
                events,
                self.events.iter().map(|event| key_of(event.token())),
                resumed,
                (core.stats.timers_fired - fired_before) as u32,
            );
        }
        core.sweep_stale_timers();
        if core.parts.drain_requested {
            core.begin_drain(now);
        }
        if core.parts.shutdown_requested {
            core.begin_shutdown(now);
        }
        Ok(Turn::Running)
    }
}

fn describe_slots(slots: &Slab<Slot>, now: Instant) -> Vec<(usize, HandlerInfo)> {
    slots
        .iter()
        .filter_map(|(key, slot)| Some((key, slot.handler.as_ref()?.describe(now))))
        .collect()
}

/// `describe_slots` for the connections only (control ones included).
fn describe_connections(slots: &Slab<Slot>, now: Instant) -> Vec<(usize, HandlerInfo)> {
    slots
        .iter()
        .filter_map(|(key, slot)| {
            let handler = slot.handler.as_ref()?;
            (slot.control || handler.is_connection()).then(|| (key, handler.describe(now)))
        })
        .collect()
}

impl Core {
    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        let parts = &self.parts;
        if !parts.run_again.is_empty() {
            if self.trace {
                trace!("poll timeout 0: handlers yielded at their budget");
            }
            return Some(Duration::ZERO);
        }
        let timer = parts.timers.poll_timeout(now);
        let grace = parts
            .shutdown_deadline
            .map(|deadline| deadline.saturating_duration_since(now));
        let timeout = match (timer, grace) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if self.trace {
            match timeout {
                Some(t) => trace!(
                    "poll timeout {t:?}: nearest of {} timers (token {}){}",
                    parts.timers.len(),
                    parts.timers.next_token().map_or(0, key_of),
                    if grace.is_some() {
                        " or the grace period"
                    } else {
                        ""
                    }
                ),
                None => trace!("poll timeout none: no timer pending"),
            }
        }
        timeout
    }

    /// Keeps the timer heap proportional to the live handlers (see
    /// `Timers::retain_live`): a sweep only when stale entries dominate.
    fn sweep_stale_timers(&mut self) {
        if self.parts.timers.len() > 2 * self.slots.len() + 1024 {
            let slots = &self.slots;
            self.parts.timers.retain_live(|token| {
                slots
                    .get(key_of(token))
                    .is_some_and(|slot| slot.generation == generation_of(token))
            });
        }
    }

    /// Registers a handler and puts it in the slab, then calls `started`.
    /// Whatever that spawns waits in `spawned` for `insert_spawned`.
    fn insert(
        &mut self,
        mut handler: Box<dyn Handler>,
        now: Instant,
        origin: usize,
    ) -> io::Result<Token> {
        if self.slots.vacant_key() > KEY_MASK {
            return Err(io::Error::other("too many handlers for the token space"));
        }
        self.generation = self.generation.wrapping_add(1) & (usize::MAX >> KEY_BITS);
        let entry = self.slots.vacant_entry();
        let token = make_token(entry.key(), self.generation);
        handler.register(&self.parts.registry, token)?;
        let control = handler.is_control();
        if control || handler.is_connection() {
            // Every connection shows on its endpoint's row; a control one
            // (admin, metrics) stays out of the echo totals.
            if let Some(endpoint) = self.stats.endpoints.get_mut(origin) {
                endpoint.connections += 1;
            }
        }
        if control {
            self.stats.control_connections += 1;
        } else if handler.is_connection() {
            self.stats.connections += 1;
            if let Some(all) = &self.parts.all_connections {
                all.fetch_add(1, Ordering::Relaxed);
            }
        }
        if control {
            let list = control_list(origin);
            let lists = &mut self.parts.control_tokens;
            if lists.len() <= list {
                lists.resize_with(list + 1, Vec::new);
            }
            lists[list].push(token);
        }
        entry.insert(Slot {
            generation: self.generation,
            handler: Some(handler),
            origin,
            control,
        });
        self.call(token, now, Call::Started);
        Ok(token)
    }

    /// Inserts the spawned handlers in the order they were spawned; those
    /// their `started` spawns join the end of the queue.
    fn insert_spawned(&mut self, now: Instant) {
        let mut evicting = std::mem::take(&mut self.parts.evicting);
        for token in evicting.drain(..) {
            self.evict(token, now);
        }
        self.parts.evicting = evicting;
        while let Some((new, origin)) = self.parts.spawned.pop_front() {
            let control = new.is_control();
            let is_connection = !control && new.is_connection();
            if control {
                self.parts.spawned_control -= 1;
            } else if is_connection {
                self.parts.spawned_connections -= 1;
            }
            if let Err(err) = self.insert(new, now, origin) {
                warn!("could not register a new handler: {err}");
                if is_connection {
                    self.stats.closed += 1; // it was counted as accepted
                }
            }
        }
    }

    /// One call from the loop: the handler, then what it spawned.
    fn dispatch(&mut self, token: Token, now: Instant, call: Call) {
        self.call(token, now, call);
        self.insert_spawned(now);
    }

    fn call(&mut self, token: Token, now: Instant, call: Call) {
        let key = key_of(token);
        let (handler, origin, control) = match self.slots.get_mut(key) {
            Some(slot) if slot.generation == generation_of(token) => {
                (slot.handler.take(), slot.origin, slot.control)
            }
            _ => (None, NO_ENDPOINT, false),
        };
        let Some(mut handler) = handler else {
            if self.trace {
                trace!(
                    "token {key}/{}: stale {call:?}, dropped",
                    generation_of(token)
                );
            }
            return;
        };
        // A control connection's bytes are on its own figures (see
        // `Context::count_received`); its endpoint row counts them all the same.
        let moved_before = if control {
            (self.stats.control_bytes_in, self.stats.control_bytes_out)
        } else {
            (self.stats.bytes_in, self.stats.bytes_out)
        };
        let datagrams_before = (self.stats.datagrams_in, self.stats.datagrams_out);
        let accepted_before = self.stats.accepted;
        self.parts.origin = origin;
        let yielded_before = self.parts.run_again.len();
        let mut cx = Context {
            token,
            now,
            stats: &mut self.stats,
            limits: &self.limits,
            parts: &mut self.parts,
            slots: &self.slots,
            control,
        };
        let flow = match call {
            Call::Started => handler.started(&mut cx),
            Call::Ready(readiness) => handler.ready(readiness, &mut cx),
            Call::Timeout(reason) => handler.timeout(reason, &mut cx),
            Call::Shutdown => handler.shutdown(&mut cx),
            Call::Drain => handler.drain(&mut cx),
        };
        if self.trace {
            // "budget": it yielded and will be called again next turn;
            // "drained": it stopped at WouldBlock, a short read, or backpressure.
            let stop = if self.parts.run_again.len() > yielded_before {
                "budget"
            } else {
                "drained"
            };
            trace!(
                "token {key}/{} {} {call}: in={} out={} stop={stop} -> {flow:?}",
                generation_of(token),
                handler.describe(now).kind,
                self.stats.bytes_in - moved_before.0,
                self.stats.bytes_out - moved_before.1,
            );
        }
        // The endpoint's share: a few subtractions per call, next to the
        // syscalls the call made.
        let stats = &mut self.stats;
        let moved = if control {
            (stats.control_bytes_in, stats.control_bytes_out)
        } else {
            (stats.bytes_in, stats.bytes_out)
        };
        let moved = (moved.0 - moved_before.0, moved.1 - moved_before.1);
        if let Some(endpoint) = stats.endpoints.get_mut(origin) {
            endpoint.bytes_in += moved.0;
            endpoint.bytes_out += moved.1;
            endpoint.datagrams_in += stats.datagrams_in - datagrams_before.0;
            endpoint.datagrams_out += stats.datagrams_out - datagrams_before.1;
            endpoint.accepted += stats.accepted - accepted_before;
        }
        match flow {
            Flow::Continue => {
                if let Some(slot) = self.slots.get_mut(key) {
                    slot.handler = Some(handler);
                }
            }
            Flow::Close => {
                self.slots.remove(key);
                if control {
                    self.forget_control(origin, token);
                }
                if control || handler.is_connection() {
                    self.count_closed(origin, control);
                }
                drop(handler);
            }
        }
    }

    /// How many handlers must finish before exit: those not just waiting
    /// for signals.
    fn owed(&self) -> usize {
        self.slots
            .iter()
            .filter(|(_, slot)| slot.handler.as_ref().is_some_and(|h| h.keeps_alive()))
            .count()
    }

    /// The end of the loop: every handler left is closed here, through the
    /// same accounting as a `Flow::Close`, so the last counters add up
    /// (a connection reset when grace ran out is counted closed).
    fn close_all(&mut self) {
        self.parts.control_tokens.clear();
        let keys: Vec<usize> = self.slots.iter().map(|(key, _)| key).collect();
        for key in keys {
            let slot = self.slots.remove(key);
            if let Some(handler) = slot.handler {
                if slot.control || handler.is_connection() {
                    self.count_closed(slot.origin, slot.control);
                }
            }
        }
    }

    /// Closes a quiet control connection to make room for a newcomer on
    /// its endpoint (chosen by `Context::spawn`, in this same call).
    fn evict(&mut self, token: Token, now: Instant) {
        let key = key_of(token);
        if self
            .slots
            .get(key)
            .is_none_or(|slot| slot.generation != generation_of(token) || slot.handler.is_none())
        {
            return;
        }
        let slot = self.slots.remove(key);
        self.forget_control(slot.origin, token);
        self.count_closed(slot.origin, slot.control);
        if let Some(handler) = slot.handler {
            let info = handler.describe(now);
            debug!(
                "{} {} closed: idle, to make room for a new control connection",
                info.kind, info.peer
            );
        }
    }

    /// Drops `token` from its endpoint's list of control connections.
    fn forget_control(&mut self, origin: usize, token: Token) {
        if let Some(list) = self.parts.control_tokens.get_mut(control_list(origin)) {
            if let Some(at) = list.iter().position(|&t| t == token) {
                list.swap_remove(at);
            }
        }
    }

    /// A connection closed: a control one on its own figure, any other
    /// on the daemon's and its endpoint's.
    fn count_closed(&mut self, origin: usize, control: bool) {
        if let Some(endpoint) = self.stats.endpoints.get_mut(origin) {
            endpoint.connections = endpoint.connections.saturating_sub(1);
        }
        if control {
            self.stats.control_connections -= 1;
            return;
        }
        self.stats.connections -= 1;
        if let Some(all) = &self.parts.all_connections {
            all.fetch_sub(1, Ordering::Relaxed);
        }
        self.stats.closed += 1;
    }

    fn begin_drain(&mut self, now: Instant) {
        self.parts.drain_requested = false;
        if self.parts.draining || self.parts.shutdown_deadline.is_some() {
            return;
        }
        debug!("draining: {} handlers", self.slots.len());
        self.parts.draining = true;
        let tokens: Vec<Token> = self
            .slots
            .iter()
            .map(|(key, slot)| make_token(key, slot.generation))
            .collect();
        for token in tokens {
            self.dispatch(token, now, Call::Drain);
        }
    }

    fn begin_shutdown(&mut self, now: Instant) {
        self.parts.shutdown_requested = false;
        if self.parts.shutdown_deadline.is_some() {
            // The signal handler said so already, once.
            debug!("second request: ending the grace period now");
            self.parts.shutdown_deadline = Some(now);
            self.parts.hurried = true;
            return;
        }
        debug!(
            "shutting down: {} handlers, grace {:?}",
            self.slots.len(),
            self.limits.grace
        );
        self.parts.shutdown_deadline = Some(now + self.limits.grace);
        let tokens: Vec<Token> = self
            .slots
            .iter()
            .map(|(key, slot)| make_token(key, slot.generation))
            .collect();
        for token in tokens {
            self.dispatch(token, now, Call::Shutdown);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    #[test]
    fn tokens_round_trip_key_and_generation() {
        let token = make_token(12345, 678);
        assert_eq!(key_of(token), 12345);
        assert_eq!(generation_of(token), 678);
        assert_ne!(make_token(1, 1), make_token(1, 2));
    }

    /// Counts the calls it gets and closes on the first event.
    struct Probe(Rc<Cell<u32>>);

    impl Handler for Probe {
        fn register(&mut self, _: &Registry, _: Token) -> io::Result<()> {
            Ok(())
        }
        fn ready(&mut self, _: Readiness, _: &mut Context) -> Flow {
            self.0.set(self.0.get() + 1);
            Flow::Close
        }
        fn describe(&self, _: Instant) -> HandlerInfo {
            HandlerInfo::default()
        }
    }

    #[test]
    fn a_stale_event_never_reaches_the_slot_s_new_owner() {
        let mut reactor = Reactor::new(Limits::default()).expect("poll");
        let (old_calls, new_calls) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
        let old = reactor
            .add(Box::new(Probe(old_calls.clone())))
            .expect("add");
        let now = Instant::now();
        let event = Call::Ready(Readiness::RESUME);
        reactor.core.call(old, now, event);
        assert_eq!(
            old_calls.get(),
            1,
            "the first event reaches its handler, which closes"
        );
        let new = reactor
            .add(Box::new(Probe(new_calls.clone())))
            .expect("add");
        assert_eq!(key_of(new), key_of(old), "the slab reuses the key");
        // A second event for the old token, fetched in the same turn.
        reactor.core.call(old, now, event);
        assert_eq!(
            new_calls.get(),
            0,
            "stale event delivered to the new handler"
        );
        reactor.core.call(new, now, event);
        assert_eq!(new_calls.get(), 1);
    }

    /// Spawns the next link of a chain from `started`, `left` more times.
    struct Chain {
        left: u32,
        started: Rc<Cell<u32>>,
    }

    impl Handler for Chain {
        fn register(&mut self, _: &Registry, _: Token) -> io::Result<()> {
            Ok(())
        }
        fn started(&mut self, cx: &mut Context) -> Flow {
            self.started.set(self.started.get() + 1);
            if self.left > 0 {
                let next = Chain {
                    left: self.left - 1,
                    started: self.started.clone(),
                };
                assert_eq!(cx.spawn(Box::new(next)), Admission::Admitted);
            }
            Flow::Close
        }
        fn ready(&mut self, _: Readiness, _: &mut Context) -> Flow {
            Flow::Continue
        }
        fn describe(&self, _: Instant) -> HandlerInfo {
            HandlerInfo::default()
        }
    }

    #[test]
    fn spawned_handlers_are_inserted_by_a_loop_not_by_recursion() {
        // Recursion (insert -> started -> spawn -> insert ...) this deep
        // would overflow the test thread's stack.
        let mut reactor = Reactor::new(Limits::default()).expect("poll");
        let started = Rc::new(Cell::new(0));
        let chain = Chain {
            left: 200_000,
            started: started.clone(),
        };
        reactor.add(Box::new(chain)).expect("add");
        assert_eq!(started.get(), 200_001);
        assert!(reactor.describe_all().is_empty());
    }

    /// Sets two timers with two reasons when started; records what fires.
    struct Alarm(Rc<std::cell::RefCell<Vec<Reason>>>);

    impl Handler for Alarm {
        fn register(&mut self, _: &Registry, _: Token) -> io::Result<()> {
            Ok(())
        }
        fn started(&mut self, cx: &mut Context) -> Flow {
            cx.set_timer(cx.now + Duration::from_secs(20), Reason(2));
            cx.set_timer(cx.now + Duration::from_secs(10), Reason(1));
            Flow::Continue
        }
        fn ready(&mut self, _: Readiness, _: &mut Context) -> Flow {
            Flow::Continue
        }
        fn timeout(&mut self, reason: Reason, _: &mut Context) -> Flow {
            self.0.borrow_mut().push(reason);
            Flow::Continue
        }
        fn describe(&self, _: Instant) -> HandlerInfo {
            HandlerInfo::default()
        }
    }

    #[test]
    fn timers_fire_on_the_manual_clock_with_their_reason() {
        let clock = ManualClock::new();
        let mut reactor = Reactor::with_clock(Limits::default(), clock.clone()).expect("poll");
        let fired = Rc::new(std::cell::RefCell::new(Vec::new()));
        reactor.add(Box::new(Alarm(fired.clone()))).expect("add");
        let zero = Some(Duration::ZERO);
        reactor.turn(zero).expect("turn");
        assert!(fired.borrow().is_empty(), "fired before its time");
        clock.advance(Duration::from_secs(10));
        reactor.turn(zero).expect("turn");
        assert_eq!(*fired.borrow(), [Reason(1)]);
        clock.advance(Duration::from_secs(10));
        reactor.turn(zero).expect("turn");
        assert_eq!(*fired.borrow(), [Reason(1), Reason(2)]);
    }

    #[test]
    fn a_requested_shutdown_finishes_when_nothing_is_owed() {
        let mut reactor = Reactor::new(Limits::default()).expect("poll");
        let fired = Rc::new(std::cell::RefCell::new(Vec::new()));
        reactor.add(Box::new(Alarm(fired))).expect("add");
        reactor.request_shutdown();
        let zero = Some(Duration::ZERO);
        assert_eq!(reactor.turn(zero).expect("turn"), Turn::Running);
        assert_eq!(reactor.turn(zero).expect("turn"), Turn::Finished);
    }
}
