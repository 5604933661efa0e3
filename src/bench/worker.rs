//! The one worker loop. Each worker thread owns a `mio::Poll` and its share
//! of the connections; [`run`] drives them through the run's timeline. What
//! differs between a byte stream and datagrams (how messages are matched
//! to echoes, what a loss is) lives behind [`Flow`], implemented by
//! [`super::stream::Streams`] and [`super::dgram::Datagrams`]; what every
//! worker does the same way (admitting a send, recording an echo, the
//! window, progress, stopping) lives in [`Ctx`].
//!
//! Hooks for what comes next (issue 12, the load generator's new modes):
//! - a send schedule: every new message goes through [`Ctx::admit`]; an
//!   open loop decides there by its schedule, asks the loop to wake at the
//!   next due send ([`Ctx::next_wake`]) and has [`Flow::resume`] send what
//!   the schedule allows;
//! - per-interval histograms: every counted echo goes through
//!   [`Ctx::echoed`], the one place a latency is recorded;
//! - churn: a flow's connections are opened by one function per kind
//!   (`connect_one` in `stream.rs`), usable mid-run; a flow's `event`
//!   already ignores connections that are not open.

use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::{Events, Poll, Registry};

use super::types::{Timeline, WorkerJob, WorkerResult};
use crate::error::describe;
use crate::probe::payload::Pattern;

/// Events taken per `poll`.
const EVENTS: usize = 1024;

/// What a kind of connection does under the one loop.
pub trait Flow: Sized {
    /// How often [`Flow::housekeeping`] runs and progress is published.
    const HOUSEKEEPING: Duration;

    /// Opens the worker's connections and waits (bounded) until each is
    /// usable or has failed; failures are counted in `result`.
    fn open(
        job: &WorkerJob,
        poll: &mut Poll,
        events: &mut Events,
        result: &mut WorkerResult,
    ) -> Self;

    /// How many connections to report as connected before load begins.
    fn connected(&self) -> u64;

    /// Load begins: every connection gets its first messages.
    fn start(&mut self, ctx: &mut Ctx, now: Instant);

    /// One readiness event from the poll.
    fn event(&mut self, ctx: &mut Ctx, event: &Event);

    /// The schedule allows sends that no echo will trigger (open loop):
    /// send on every connection that has room. The closed loop never calls it.
    fn resume(&mut self, ctx: &mut Ctx, now: Instant);

    /// Every [`Flow::HOUSEKEEPING`]: stalls, losses.
    fn housekeeping(&mut self, ctx: &mut Ctx, now: Instant);

    /// Nothing more to do: no connection alive, or the `-n` quota used up
    /// and every message settled.
    fn done(&self, ctx: &Ctx) -> bool;

    /// After the window closed and the coordinator was told: take in what
    /// is still owed, uncounted, so closing resets nothing under a server
    /// that is still writing.
    fn drain(&mut self, _ctx: &mut Ctx, _poll: &mut Poll, _events: &mut Events) {}

    /// The last word on the counters (connected, answered).
    fn close(self, ctx: &mut Ctx);
}

/// What every worker keeps the same way, whatever its flow.
pub struct Ctx<'a> {
    /// The job.
    pub job: &'a WorkerJob,
    /// The run's bytes.
    pub pattern: &'a Pattern,
    /// The run's window.
    pub timeline: Timeline,
    /// What the worker counted.
    pub result: WorkerResult,
    /// To change a socket's interest from inside a handler.
    pub registry: Registry,
    /// Measured messages still to send (`-n`).
    quota: Option<u64>,
    /// Echoes completed, warm-up included (for progress).
    completed: u64,
    /// The window is over: send no new message.
    draining: bool,
    /// The flow gave up (the server seems gone).
    given_up: bool,
}

impl Ctx<'_> {
    /// Whether a new message may go out at `now`, and if so whether it
    /// belongs to the measured window. The one place a send is admitted.
    #[inline]
    pub fn admit(&mut self, now: Instant) -> Option<bool> {
        if self.draining || self.timeline.measure_end.is_some_and(|end| now >= end) {
            return None;
        }
        let measured = now >= self.timeline.measure_start;
        if measured {
            match &mut self.quota {
                Some(0) => return None,
                Some(left) => *left -= 1,
                None => {}
            }
        }
        Some(measured)
    }

    /// The echo of a message sent at `sent` came back whole at `now`. The
    /// one place a latency is recorded.
    #[inline]
    pub fn echoed(&mut self, sent: Instant, measured: bool, now: Instant) {
        self.completed += 1;
        if measured && self.timeline.measure_end.is_none_or(|end| now < end) {
            self.result.record(sent, now);
        }
    }

    /// The `-n` quota is used up.
    pub fn quota_used(&self) -> bool {
        self.quota == Some(0)
    }

    /// The window is over (only draining sends are left).
    pub fn draining(&self) -> bool {
        self.draining
    }

    /// Ends this worker's load: the server seems gone.
    pub fn give_up(&mut self) {
        self.given_up = true;
    }

    /// When the loop must wake next regardless of events, beyond the
    /// housekeeping tick (an open loop's next due send). None today.
    pub fn next_wake(&self) -> Option<Instant> {
        None
    }

    fn publish(&self) {
        let progress = &self.job.shared.progress[self.job.index];
        let counters = &self.result.counters;
        progress[0].store(self.completed, Ordering::Relaxed);
        progress[1].store(counters.errors, Ordering::Relaxed);
        progress[2].store(counters.lost, Ordering::Relaxed);
    }
}

/// Waits for events; an interrupted wait is an empty one.
pub fn poll_once(
    poll: &mut Poll,
    events: &mut Events,
    timeout: Option<Duration>,
) -> io::Result<()> {
    match poll.poll(events, timeout) {
        Err(err) if err.kind() == io::ErrorKind::Interrupted => {
            events.clear();
            Ok(())
        }
        other => other,
    }
}

/// Runs one worker to the end of its share of the run.
pub fn run<F: Flow>(job: WorkerJob) -> WorkerResult {
    let mut result = WorkerResult::new();
    let mut events = Events::with_capacity(EVENTS);
    let setup = Poll::new().and_then(|poll| {
        let registry = poll.registry().try_clone()?;
        Ok((poll, registry))
    });
    let (mut poll, registry) = match setup {
        Ok(setup) => setup,
        Err(err) => {
            result.connect_failed(|| format!("cannot create a poller: {}", describe(&err)));
            job.shared.start();
            job.shared.finish();
            return result;
        }
    };
    let mut flow = F::open(&job, &mut poll, &mut events, &mut result);
    job.shared
        .connected
        .fetch_add(flow.connected(), Ordering::Relaxed);
    let timeline = job.shared.start();
    let mut ctx = Ctx {
        job: &job,
        pattern: &job.pattern,
        timeline,
        result,
        registry,
        quota: job.quota,
        completed: 0,
        draining: false,
        given_up: false,
    };
    turn_until_done(&mut flow, &mut ctx, &mut poll, &mut events);
    ctx.publish();
    job.shared.finish();
    ctx.draining = true;
    flow.drain(&mut ctx, &mut poll, &mut events);
    flow.close(&mut ctx);
    ctx.result
}

fn turn_until_done<F: Flow>(flow: &mut F, ctx: &mut Ctx, poll: &mut Poll, events: &mut Events) {
    let now = Instant::now();
    flow.start(ctx, now);
    let mut next_housekeeping = now + F::HOUSEKEEPING;
    loop {
        let now = Instant::now();
        if ctx.timeline.measure_end.is_some_and(|end| now >= end)
            || ctx.given_up
            || flow.done(ctx)
            || ctx.job.shared.stopping()
        {
            break;
        }
        let mut wake = next_housekeeping;
        if let Some(end) = ctx.timeline.measure_end {
            wake = wake.min(end);
        }
        if let Some(due) = ctx.next_wake() {
            wake = wake.min(due);
        }
        if let Err(err) = poll_once(poll, events, Some(wake.saturating_duration_since(now))) {
            ctx.result
                .error(|| format!("poll failed: {}", describe(&err)));
            break;
        }
        for event in events.iter() {
            flow.event(ctx, event);
        }
        let now = Instant::now();
        if ctx.next_wake().is_some_and(|due| now >= due) {
            flow.resume(ctx, now);
        }
        if now >= next_housekeeping {
            next_housekeeping = now + F::HOUSEKEEPING;
            flow.housekeeping(ctx, now);
            ctx.publish();
        }
    }
}
