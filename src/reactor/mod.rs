//! The reactor: one thread, one `mio::Poll`, one `Slab` of handlers.
//!
//! Each turn of [`Reactor::run`]:
//! 1. choose the poll timeout: zero if a handler asked to run again, else
//!    until the nearest timer (or the shutdown deadline), else forever;
//! 2. `poll`, then hand each event to the handler its token names;
//! 3. call back the handlers that yielded at their fairness budget;
//! 4. fire the timers that are due;
//! 5. begin a graceful shutdown if a signal asked for one.
//!
//! A token is the slab key in its low bits and a generation in its high
//! bits: an event fetched for a connection that closed earlier in the same
//! turn names an old generation and is dropped, never delivered to the new
//! connection that reuses the key.

pub mod buffer;
pub mod handler;
pub mod stats;
pub mod timer;

use std::fs::File;
use std::io;
use std::time::{Duration, Instant};

use log::{debug, trace, warn};
use mio::{Events, Poll, Registry, Token};
use slab::Slab;

pub use buffer::BufferPool;
pub use handler::{Context, Flow, Handler, HandlerInfo, Limits, Readiness};
pub use stats::Stats;
pub use timer::Timers;

/// Events fetched per poll: enough to amortise the syscall, small enough
/// that one turn stays short.
const EVENTS_PER_POLL: usize = 1024;

/// Low bits of a token: the slab key. High bits: the generation.
const KEY_BITS: u32 = usize::BITS / 2;
const KEY_MASK: usize = (1 << KEY_BITS) - 1;

fn make_token(key: usize, generation: usize) -> Token {
    Token((generation << KEY_BITS) | (key & KEY_MASK))
}

fn key_of(token: Token) -> usize {
    token.0 & KEY_MASK
}

fn generation_of(token: Token) -> usize {
    token.0 >> KEY_BITS
}

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
}

/// Which handler method a dispatch calls.
#[derive(Clone, Copy, Debug)]
enum Call {
    Started,
    Ready(Readiness),
    Timeout,
    Shutdown,
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Call::Started => f.write_str("started"),
            Call::Ready(readiness) => write!(f, "ready {readiness}"),
            Call::Timeout => f.write_str("timeout"),
            Call::Shutdown => f.write_str("shutdown"),
        }
    }
}

/// The event loop. Build it, [`add`](Reactor::add) handlers, then
/// [`run`](Reactor::run) it until shutdown.
pub struct Reactor {
    poll: Poll,
    events: Events,
    core: Core,
}

/// Everything but the poller, so events can be iterated while handlers run.
struct Core {
    registry: Registry,
    slots: Slab<Slot>,
    generation: usize,
    timers: Timers,
    pool: BufferPool,
    scratch: Box<[u8]>,
    stats: Stats,
    limits: Limits,
    spawned: Vec<Box<dyn Handler>>,
    run_again: Vec<Token>,
    /// The tokens being called back this turn; kept to reuse its allocation.
    running_again: Vec<Token>,
    shutdown_requested: bool,
    shutdown_deadline: Option<Instant>,
    reserve_fd: Option<File>,
    trace: bool,
}

/// Spare send buffers the pool may keep, in bytes.
const SPARE_BUFFER_BYTES: usize = 16 << 20;

/// Largest datagram the scratch buffer must hold (UDP over IPv6 jumbograms aside).
const MAX_DATAGRAM: usize = 65_536;

impl Reactor {
    /// A reactor with no handlers yet.
    pub fn new(limits: Limits) -> io::Result<Reactor> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let scratch_len = limits.max_buffer.max(MAX_DATAGRAM);
        Ok(Reactor {
            poll,
            events: Events::with_capacity(EVENTS_PER_POLL),
            core: Core {
                registry,
                slots: Slab::new(),
                generation: 0,
                timers: Timers::new(),
                pool: BufferPool::new(
                    limits.max_buffer,
                    SPARE_BUFFER_BYTES / limits.max_buffer.max(1),
                ),
                scratch: vec![0; scratch_len].into_boxed_slice(),
                stats: Stats::new(Instant::now()),
                limits,
                spawned: Vec::new(),
                run_again: Vec::new(),
                running_again: Vec::new(),
                shutdown_requested: false,
                shutdown_deadline: None,
                reserve_fd: open_reserve_fd(),
                trace: log::log_enabled!(log::Level::Trace),
            },
        })
    }

    /// Inserts and registers a handler; returns its token.
    pub fn add(&mut self, handler: Box<dyn Handler>) -> io::Result<Token> {
        self.core.insert(handler, Instant::now())
    }

    /// The counters so far.
    pub fn stats(&self) -> &Stats {
        &self.core.stats
    }

    /// Runs the loop until a shutdown has finished (every handler closed,
    /// or the grace period over).
    pub fn run(&mut self) -> io::Result<()> {
        loop {
            let now = Instant::now();
            if let Some(deadline) = self.core.shutdown_deadline {
                if now >= deadline || !self.core.anything_owed() {
                    if now >= deadline {
                        warn!("grace period over; closing what is still open");
                    }
                    return Ok(());
                }
            }
            let timeout = self.core.poll_timeout(now);
            match self.poll.poll(&mut self.events, timeout) {
                Ok(()) => {}
                // A signal landed: its handler wrote to our pipe, so go round.
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
            let now = Instant::now();
            let events = self.events.iter().count();
            self.core.stats.loop_iterations += 1;
            self.core.stats.events += events as u64;
            if self.core.trace {
                trace!("turn {}: {events} events", self.core.stats.loop_iterations);
            }
            for event in self.events.iter() {
                self.core
                    .call(event.token(), now, Call::Ready(Readiness::from(event)));
            }
            // Handlers that yield again while called back land in the
            // fresh `run_again` list, for the next turn.
            let mut running = std::mem::take(&mut self.core.running_again);
            std::mem::swap(&mut running, &mut self.core.run_again);
            for &token in &running {
                self.core.call(token, now, Call::Ready(Readiness::RESUME));
            }
            running.clear();
            self.core.running_again = running;
            while let Some(token) = self.core.timers.pop_expired(now) {
                self.core.call(token, now, Call::Timeout);
            }
            self.core.sweep_stale_timers();
            if self.core.shutdown_requested {
                self.core.begin_shutdown(now);
            }
        }
    }
}

impl Core {
    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.run_again.is_empty() {
            if self.trace {
                trace!("poll timeout 0: handlers yielded at their budget");
            }
            return Some(Duration::ZERO);
        }
        let timer = self.timers.poll_timeout(now);
        let grace = self
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
                    self.timers.len(),
                    self.timers.next_token().map_or(0, key_of),
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
        if self.timers.len() > 2 * self.slots.len() + 1024 {
            let slots = &self.slots;
            self.timers.retain_live(|token| {
                slots
                    .get(key_of(token))
                    .is_some_and(|slot| slot.generation == generation_of(token))
            });
        }
    }

    fn insert(&mut self, mut handler: Box<dyn Handler>, now: Instant) -> io::Result<Token> {
        if self.slots.vacant_key() > KEY_MASK {
            return Err(io::Error::other("too many handlers for the token space"));
        }
        self.generation = self.generation.wrapping_add(1) & (usize::MAX >> KEY_BITS);
        let entry = self.slots.vacant_entry();
        let token = make_token(entry.key(), self.generation);
        handler.register(&self.registry, token)?;
        if handler.is_connection() {
            self.stats.connections += 1;
        }
        entry.insert(Slot {
            generation: self.generation,
            handler: Some(handler),
        });
        self.call(token, now, Call::Started);
        Ok(token)
    }

    fn call(&mut self, token: Token, now: Instant, call: Call) {
        let key = key_of(token);
        let handler = match self.slots.get_mut(key) {
            Some(slot) if slot.generation == generation_of(token) => slot.handler.take(),
            _ => None,
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
        let moved_before = (self.stats.bytes_in, self.stats.bytes_out);
        let yielded_before = self.run_again.len();
        let mut cx = Context {
            token,
            now,
            stats: &mut self.stats,
            limits: &self.limits,
            registry: &self.registry,
            timers: &mut self.timers,
            pool: &mut self.pool,
            scratch: &mut self.scratch,
            spawned: &mut self.spawned,
            run_again: &mut self.run_again,
            shutdown_requested: &mut self.shutdown_requested,
            shutting_down: self.shutdown_deadline.is_some(),
            reserve_fd: &mut self.reserve_fd,
            slots: &self.slots,
        };
        let flow = match call {
            Call::Started => handler.started(&mut cx),
            Call::Ready(readiness) => handler.ready(readiness, &mut cx),
            Call::Timeout => handler.timeout(&mut cx),
            Call::Shutdown => handler.shutdown(&mut cx),
        };
        if self.trace {
            // "budget": it yielded and will be called again next turn;
            // "drained": it stopped at WouldBlock, a short read, or backpressure.
            let stop = if self.run_again.len() > yielded_before {
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
        match flow {
            Flow::Continue => {
                if let Some(slot) = self.slots.get_mut(key) {
                    slot.handler = Some(handler);
                }
            }
            Flow::Close => {
                self.slots.remove(key);
                if handler.is_connection() {
                    self.stats.connections -= 1;
                    self.stats.closed += 1;
                }
                drop(handler);
            }
        }
        while let Some(new) = self.spawned.pop() {
            let is_connection = new.is_connection();
            if let Err(err) = self.insert(new, now) {
                warn!("could not register a new handler: {err}");
                if is_connection {
                    self.stats.closed += 1; // it was counted as accepted
                }
            }
        }
    }

    /// Anything that must finish before exit: a handler that is not just
    /// waiting for signals.
    fn anything_owed(&self) -> bool {
        self.slots
            .iter()
            .any(|(_, slot)| slot.handler.as_ref().is_some_and(|h| h.keeps_alive()))
    }

    fn begin_shutdown(&mut self, now: Instant) {
        self.shutdown_requested = false;
        if self.shutdown_deadline.is_some() {
            warn!("second signal: exiting now");
            self.shutdown_deadline = Some(now);
            return;
        }
        debug!(
            "shutting down: {} handlers, grace {:?}",
            self.slots.len(),
            self.limits.grace
        );
        self.shutdown_deadline = Some(now + self.limits.grace);
        let tokens: Vec<Token> = self
            .slots
            .iter()
            .map(|(key, slot)| make_token(key, slot.generation))
            .collect();
        for token in tokens {
            self.call(token, now, Call::Shutdown);
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
}
