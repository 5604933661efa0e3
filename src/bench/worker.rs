//! The one worker loop. Each worker thread owns a `mio::Poll` and its share
//! of the connections; [`run`] drives them through the run's timeline. What
//! differs between a byte stream and datagrams (how messages are matched
//! to echoes, what a loss is) lives behind [`Traffic`], implemented by
//! [`super::stream::Streams`] and [`super::dgram::Datagrams`]; what every
//! worker does the same way (admitting a send, recording an echo, the
//! window, progress, stopping) lives in [`Ctx`].
//!
//! Hooks for what comes next (issue 12, the load generator's new modes):
//! - a send schedule: every new message goes through [`Ctx::admit`]; an
//!   open loop decides there by its schedule, asks the loop to wake at the
//!   next due send ([`Ctx::next_wake`]) and has [`Traffic::resume`] send what
//!   the schedule allows;
//! - per-interval histograms: every counted echo goes through
//!   [`Ctx::echoed`], the one place a latency is recorded;
//! - churn: each kind of traffic opens its connections by one function
//!   (`connect_one` in `stream.rs`), usable mid-run; its
//!   [`Traffic::event`] already ignores connections that are not open.

use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::{Events, Poll, Registry};

use super::intervals::Recorder;
use super::judge::CpuClock;
use super::schedule::Schedule;
use super::types::{Stop, Timeline, WorkerJob, WorkerResult};
use crate::error::describe;
use crate::probe::payload::Pattern;

/// Events taken per `poll`.
const EVENTS: usize = 1024;

/// The traffic of one kind (stream, datagram, HTTP) that a worker drives
/// under the one loop: what differs between kinds.
pub trait Traffic: Sized {
    /// How often [`Traffic::housekeeping`] runs and progress is published.
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

    /// Every [`Traffic::HOUSEKEEPING`]: stalls, losses.
    fn housekeeping(&mut self, ctx: &mut Ctx, now: Instant);

    /// Nothing more to do: no connection alive, or the `-n` quota used up
    /// and every message settled.
    fn done(&self, ctx: &Ctx) -> bool;

    /// The window closed: wait (until [`Ctx::wait_deadline`]) for the
    /// echoes of messages due in it, each recorded by its due time
    /// through [`Ctx::echoed`]; no new message is sent.
    fn drain(&mut self, _ctx: &mut Ctx, _poll: &mut Poll, _events: &mut Events) {}

    /// The wait is over: every message due in the window and still
    /// unanswered goes to [`Ctx::owed`] (sent or not).
    fn settle(&mut self, _ctx: &mut Ctx, _now: Instant) {}

    /// The last word on the counters (connected, answered).
    fn close(self, ctx: &mut Ctx);
}

/// What every worker keeps the same way, whatever its traffic.
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
    /// The traffic gave up (the server seems gone).
    given_up: bool,
    /// Open loop: this worker's share of the schedule.
    schedule: Option<Schedule>,
    /// Open loop: the schedule has nothing more to send (window or quota).
    schedule_over: bool,
    /// Open loop: due messages are waiting because no connection could
    /// take more (the server is not reading).
    held: bool,
    /// Intervals: where this worker's echoes go, interval by interval.
    recorder: Option<Recorder>,
}

impl Ctx<'_> {
    /// Closed loop: whether a new message may go out at `now`, and if so
    /// whether it belongs to the measured window. The one place a send is
    /// admitted. In open loop it is always None: only [`Ctx::due`] sends.
    #[inline]
    pub fn admit(&mut self, now: Instant) -> Option<bool> {
        if self.schedule.is_some() {
            return None;
        }
        self.window_admits(now)
    }

    /// Open loop: whether due messages are waiting on the server's
    /// backpressure (set by the traffic when no connection has room).
    pub fn set_held(&mut self, held: bool) {
        self.held = held;
    }

    /// `--churn M`: a connection that has sent `sent` messages is done
    /// (it closes once its echoes are in, and a new one takes its place).
    pub fn retires(&self, sent: u64) -> bool {
        self.job.config.modes.churn.is_some_and(|m| sent >= m)
    }

    /// True in open loop (`--rate`).
    pub fn open_loop(&self) -> bool {
        self.schedule.is_some()
    }

    /// Open loop: the next message due by `now`, if any, as its due time
    /// and whether it is measured; the schedule moves on. The traffic sends
    /// it at once (or, when no connection can take it, does not ask).
    #[inline]
    pub fn due(&mut self, now: Instant) -> Option<(Instant, bool)> {
        let due = self.schedule.as_ref()?.due();
        if due > now || self.schedule_over {
            return None;
        }
        // Judged by its due time: a message due in the window is measured
        // however late it leaves.
        let Some(measured) = self.window_admits(due) else {
            self.schedule_over = true;
            return None;
        };
        if let Some(schedule) = self.schedule.as_mut() {
            schedule.advance();
        }
        if measured {
            self.result.lag.sent(due, now, self.held);
        }
        Some((due, measured))
    }

    fn window_admits(&mut self, now: Instant) -> Option<bool> {
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

    /// The echo of a message due at `due` (open loop; else its send
    /// time) and sent at `sent` came back whole at `now`. The one place a
    /// latency is recorded.
    #[inline]
    pub fn echoed(&mut self, due: Instant, sent: Instant, measured: bool, now: Instant) {
        self.completed += 1;
        // A message due in the window counts however late its echo: the
        // wait after the window exists for it.
        if measured {
            if self.draining {
                self.result.counters.after_end += 1;
            }
            let open = self.schedule.is_some();
            let (latency, service) = self.result.record(due, sent, now, open);
            if let Some(recorder) = &mut self.recorder {
                recorder.record(now, latency, service);
            }
        }
    }

    /// A connection opened mid-run (churn) in `took`, at `now`.
    pub fn reconnected(&mut self, took: Duration, now: Instant) {
        if now >= self.timeline.measure_start
            && self.timeline.measure_end.is_none_or(|end| now < end)
        {
            self.result.counters.connects += 1;
            let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
            self.result.connect_time.saturating_record(us);
        }
    }

    /// A TLS handshake finished in `took` (from the TCP connect's end).
    pub fn handshaked(&mut self, took: Duration, resumed: bool, now: Instant) {
        if now >= self.timeline.measure_start
            && self.timeline.measure_end.is_none_or(|end| now < end)
        {
            self.result.counters.handshakes += 1;
            self.result.counters.resumed += u64::from(resumed);
            let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
            self.result.handshake_time.saturating_record(us);
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
    /// housekeeping tick: an open loop's next due send.
    pub fn next_wake(&self) -> Option<Instant> {
        // Held back, the loop waits for the server (an event, or the
        // housekeeping tick) instead of spinning on a send it cannot make.
        if self.schedule_over || self.draining || self.held {
            return None;
        }
        self.schedule.as_ref().map(Schedule::due)
    }

    /// When the wait after the window for owed messages ends, counted
    /// from `now`: `--timeout`, or less (`--sweep`); none after Ctrl-C.
    pub fn wait_deadline(&self, now: Instant) -> Instant {
        if self.interrupted() {
            return now;
        }
        let timeout = self.job.config.timeout;
        now + self
            .job
            .config
            .modes
            .end_wait
            .map_or(timeout, |w| w.min(timeout))
    }

    /// True when Ctrl-C ended the run.
    pub fn interrupted(&self) -> bool {
        self.job.shared.stopping() || crate::probe::interrupt::stopped()
    }

    /// A message due at `due` in the window had no echo when the wait
    /// ended at `now` (`sent`: it left; else the schedule never got it
    /// out). Stream kinds: owed at the end, recorded as the wait it had;
    /// datagram kinds: lost.
    pub fn owed(&mut self, due: Instant, now: Instant, sent: bool) {
        if sent {
            self.result.counters.never_answered += 1;
        }
        // Ctrl-C cut the wait short: what it did not wait for is not owed
        // (and its wait of nothing would only pull the percentiles down).
        if self.interrupted() {
            return;
        }
        if self.job.dest.kind.is_stream() {
            self.result.record_owed(due, now);
        } else {
            self.result.counters.lost += 1;
        }
    }

    /// Open loop, at the end: messages that fell due in the window but
    /// never left count as sent at the window's end, late (or held back by
    /// the server), so a generator or server that fell behind cannot hide
    /// it; and as owed at `now`, when the wait for echoes ended.
    fn count_unsent(&mut self, now: Instant) {
        // Taken out, so each due message can be counted through `owed`.
        let Some(mut schedule) = self.schedule.take() else {
            return;
        };
        let end = self.timeline.measure_end.map_or(now, |end| end.min(now));
        let start = self.timeline.measure_start;
        // One pass per message the schedule never sent: a rate far past
        // what the generator can send leaves hundreds of millions, seconds
        // of work, so Ctrl-C ends it (what it skips is not owed, as in `owed`).
        let mut counted = 0u32;
        while schedule.due() < end && self.quota != Some(0) {
            counted = counted.wrapping_add(1);
            if counted.is_multiple_of(4096) && self.interrupted() {
                break;
            }
            let due = schedule.due();
            schedule.advance();
            if due < start {
                continue;
            }
            if let Some(left) = self.quota.as_mut() {
                *left -= 1;
            }
            self.result.lag.sent(due, end, self.held);
            self.result.lag.unsent += 1;
            self.owed(due, now, false);
        }
        self.schedule = Some(schedule);
    }

    fn tick_intervals(&mut self, now: Instant) {
        if let Some(recorder) = &mut self.recorder {
            let c = &self.result.counters;
            recorder.totals(c.errors + c.connect_failures, c.connects);
            recorder.tick(now);
        }
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
pub fn run<T: Traffic>(job: WorkerJob) -> WorkerResult {
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
    let mut traffic = T::open(&job, &mut poll, &mut events, &mut result);
    job.shared
        .connected
        .fetch_add(traffic.connected(), Ordering::Relaxed);
    let timeline = job.shared.start();
    let modes = &job.config.modes;
    let schedule = modes.rate.map(|rate| {
        // This worker's share of the rate: its share of the connections.
        // Workers are offset by a fraction of their period, so the sum of
        // their schedules stays even.
        let share = rate * job.conns as f64 / job.config.connections.max(1) as f64;
        let workers = job.shared.progress.len();
        Schedule::new(
            timeline.load_start,
            share * workers as f64,
            job.index,
            workers,
            modes.arrivals,
            job.pattern.nonce(),
        )
    });
    let recorder = match (&job.intervals, modes.interval) {
        (Some(tx), Some(length)) => {
            let count = match job.config.stop {
                Stop::Duration(d) => (d.as_nanos().div_ceil(length.as_nanos().max(1))) as u64,
                Stop::Messages(_) => u64::MAX,
            };
            Some(Recorder::new(
                timeline.measure_start,
                length,
                count,
                schedule.is_some(),
                tx.clone(),
            ))
        }
        _ => None,
    };
    let cpu = CpuClock::start(true);
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
        schedule,
        schedule_over: false,
        held: false,
        recorder,
    };
    turn_until_done(&mut traffic, &mut ctx, &mut poll, &mut events);
    // Nothing owed is dropped: the echoes of the window's messages are
    // waited for (and recorded by their due time), then what is still
    // unanswered is counted, before the coordinator hears the load is over.
    ctx.draining = true;
    traffic.drain(&mut ctx, &mut poll, &mut events);
    let now = Instant::now();
    ctx.count_unsent(now);
    traffic.settle(&mut ctx, now);
    ctx.result.cpu_share = cpu.share();
    ctx.tick_intervals(now);
    if let Some(recorder) = ctx.recorder.take() {
        recorder.finish(now);
    }
    ctx.publish();
    job.shared.finish();
    traffic.close(&mut ctx);
    ctx.result
}

/// The open loop's shortest sleep: see its use in `turn_until_done`.
const MIN_SLEEP: Duration = Duration::from_micros(100);

/// The token of the open loop's timer: beyond any connection's, so a
/// traffic that sees it ignores it.
const TIMER: mio::Token = mio::Token(usize::MAX - 1);

/// The open loop's clock: a timerfd, because `epoll_wait` sleeps in whole
/// milliseconds (rounded up), which would make every send up to a
/// millisecond late; a timerfd wakes within tens of microseconds.
struct Timer {
    fd: crate::sys::timerfd::TimerFd,
    armed: Option<Instant>,
}

impl Timer {
    fn new(registry: &Registry) -> io::Result<Timer> {
        use std::os::fd::AsRawFd;
        let fd = crate::sys::timerfd::TimerFd::new()?;
        registry.register(
            &mut mio::unix::SourceFd(&fd.as_raw_fd()),
            TIMER,
            mio::Interest::READABLE,
        )?;
        Ok(Timer { fd, armed: None })
    }

    /// Fires once at `at`, or keeps an earlier setting that is still ahead.
    fn arm(&mut self, at: Instant, now: Instant) {
        // Already set to fire by then (and not in the past): keep it, one
        // syscall fewer per turn.
        if self.armed.is_some_and(|armed| armed >= now && armed <= at) {
            return;
        }
        let after = at
            .saturating_duration_since(now)
            .max(Duration::from_nanos(1));
        self.fd.fire_after(after);
        self.armed = Some(at);
    }

    /// It fired: read its count so the next expiry raises a new edge.
    fn fired(&mut self) {
        self.fd.clear();
        self.armed = None;
    }
}

fn turn_until_done<T: Traffic>(
    traffic: &mut T,
    ctx: &mut Ctx,
    poll: &mut Poll,
    events: &mut Events,
) {
    let now = Instant::now();
    traffic.start(ctx, now);
    let mut next_housekeeping = now + T::HOUSEKEEPING;
    let mut timer = match ctx.schedule.is_some() {
        true => match Timer::new(&ctx.registry) {
            Ok(timer) => Some(timer),
            Err(err) => {
                ctx.result
                    .error(|| format!("cannot create the schedule's timer: {}", describe(&err)));
                return;
            }
        },
        false => None,
    };
    loop {
        let now = Instant::now();
        if ctx.timeline.measure_end.is_some_and(|end| now >= end)
            || ctx.given_up
            || traffic.done(ctx)
            || ctx.job.shared.stopping()
        {
            break;
        }
        let mut wake = next_housekeeping;
        if let Some(end) = ctx.timeline.measure_end {
            wake = wake.min(end);
        }
        if let Some(due) = ctx.next_wake() {
            match &mut timer {
                // Sleeping at least MIN_SLEEP gathers the sends due
                // meanwhile into one wake-up (at 100,000/s, ten of them):
                // each wake costs three syscalls. A send is then up to
                // MIN_SLEEP behind schedule, well inside LATE_AFTER, and
                // the latency from the schedule shows it.
                Some(timer) if due > now => timer.arm(due.max(now + MIN_SLEEP), now),
                _ => wake = wake.min(due),
            }
        }
        if let Err(err) = poll_once(poll, events, Some(wake.saturating_duration_since(now))) {
            ctx.result
                .error(|| format!("poll failed: {}", describe(&err)));
            break;
        }
        for event in events.iter() {
            if event.token() == TIMER {
                if let Some(timer) = &mut timer {
                    timer.fired();
                }
                continue;
            }
            traffic.event(ctx, event);
        }
        let now = Instant::now();
        if ctx.held || ctx.next_wake().is_some_and(|due| now >= due) {
            traffic.resume(ctx, now);
        }
        if now >= next_housekeeping {
            next_housekeeping = now + T::HOUSEKEEPING;
            if ctx.held {
                traffic.resume(ctx, now);
            }
            traffic.housekeeping(ctx, now);
            ctx.tick_intervals(now);
            ctx.publish();
        }
    }
}
