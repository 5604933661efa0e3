//! What the coordinator ([`super::load`]) and the workers
//! ([`super::worker`]) share: the run's configuration, the report, the
//! timeline and the counters. Nothing here drives a socket.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use socket2::SockAddr;

use super::intervals::{Interval, Piece};
use super::judge::Verdict;
use super::schedule::{Arrivals, Lag};
use crate::endpoint::{Endpoint, Kind};
use crate::probe::payload::Pattern;

/// Largest latency the histogram holds, in microseconds (a minute).
const MAX_LATENCY_US: u64 = 60_000_000;

/// When a run stops.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stop {
    /// Measure for this long after the warm-up.
    Duration(Duration),
    /// Send this many messages after the warm-up, then wait for their echoes.
    Messages(u64),
}

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// The echo server to load: tcp, unix, udp or unix-dgram.
    pub endpoint: Endpoint,
    /// Connections (datagram sockets for udp and unix-dgram).
    pub connections: usize,
    /// Bytes per message.
    pub size: usize,
    /// Messages in flight per connection.
    pub depth: usize,
    /// Worker threads, each with its own poll loop.
    pub threads: usize,
    /// How long to measure, or how many messages.
    pub stop: Stop,
    /// Load applied but not measured before the measured window.
    pub warmup: Duration,
    /// A datagram not echoed within this is lost (and re-sent under a new
    /// sequence number); a stream connection owed an echo that sees no byte
    /// for this long is stalled (an error).
    pub timeout: Duration,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// Open loop, intervals, churn (issue 12); the default is the closed
    /// loop as before.
    pub modes: Modes,
}

/// The load generator's further modes; all off by default.
#[derive(Clone, Debug, Default)]
pub struct Modes {
    /// Open loop: messages per second in all, on a schedule, whether or
    /// not echoes came back (`--rate`).
    pub rate: Option<f64>,
    /// How the open loop spreads its sends.
    pub arrivals: Arrivals,
    /// Record the run interval by interval (`--interval`, `--json-stream`,
    /// `--hdr-log`, `--plot` over time).
    pub interval: Option<Duration>,
    /// Close a stream connection after this many echoes and open a new one
    /// (`--churn`).
    pub churn: Option<u64>,
    /// tls://: how every connection's session is started and verified
    /// (`--tls-ca`, `-k`, `--tls-sni`, `--tls-resume`).
    pub tls: Option<crate::probe::tls::TlsClient>,
    /// The longest wait, after the window, for messages still owed (beyond
    /// it they are owed at the end); `None` waits `timeout` (`--sweep`
    /// waits at most a second per step).
    pub end_wait: Option<Duration>,
    /// A stream connection the server closed is replaced, and the run goes
    /// on (`--reconnect`).
    pub reconnect: bool,
    /// What "on time" means for `achieved` and the knee (`--slo`).
    pub slo: Option<Duration>,
    /// The report shows the whole percentile spectrum (`--percentiles`).
    pub spectrum: bool,
}

/// The default of `--slo`.
pub const DEFAULT_SLO: Duration = Duration::from_millis(1);

impl Modes {
    /// `--slo`, or its default.
    pub fn slo(&self) -> Duration {
        self.slo.unwrap_or(DEFAULT_SLO)
    }
}

/// What the caller hears while a run goes on. Called from the thread that
/// called [`super::run_load`], never from the workers.
pub trait Observer {
    /// Every connection that could connect is connected; load begins.
    fn connected(&mut self, _connected: u64) {}
    /// The measured window opens (after the warm-up).
    fn measuring(&mut self) {}
    /// The measured window closed (or the last echo of `-n` came back).
    fn finished(&mut self) {}
    /// About once a second.
    fn progress(&mut self, _progress: &Progress) {}
    /// Asked about every millisecond: true ends the run early, and the
    /// report covers what was measured until then (Ctrl-C).
    fn interrupted(&mut self) -> bool {
        false
    }
    /// An interval is complete (when intervals were asked for), in order.
    fn interval(&mut self, _interval: &Interval) {}
}

/// An observer that hears nothing.
pub struct Quiet;
impl Observer for Quiet {}

/// A snapshot for the progress line.
#[derive(Clone, Debug)]
pub struct Progress {
    /// Since load began.
    pub elapsed: Duration,
    /// True during the warm-up.
    pub warming_up: bool,
    /// Echoes completed so far (warm-up included).
    pub completed: u64,
    /// Errors so far.
    pub errors: u64,
    /// Datagrams lost so far.
    pub lost: u64,
}

/// Counters a worker keeps; summed into the report.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// Echoes verified and counted (in the measured window).
    pub messages: u64,
    /// Connections established (datagram sockets: that got any reply).
    pub connected: u64,
    /// Connections or sockets that heard any echo back at all.
    pub answered: u64,
    /// Connections that could not be made (refused, timed out).
    pub connect_failures: u64,
    /// Corrupt, reordered, unexpected or missing echoes; connections
    /// closed or stalled by the server.
    pub errors: u64,
    /// Datagrams not echoed within the timeout.
    pub lost: u64,
    /// Datagram echoes that came back after being counted lost.
    pub late: u64,
    /// Connections opened in the measured window (`--churn`).
    pub connects: u64,
    /// TLS handshakes finished in the measured window.
    pub handshakes: u64,
    /// Of those, the ones that resumed a session (`--tls-resume`).
    pub resumed: u64,
    /// Stream kinds: messages due in the window still unanswered when the
    /// wait after it ended (datagram kinds count them `lost`).
    pub owed_at_end: u64,
    /// Messages sent in the window that no echo ever answered (owed at
    /// the end, lost, or on a connection the server closed).
    pub never_answered: u64,
    /// Echoes of the window's messages that came back after it closed, in
    /// the wait for what was owed.
    pub after_end: u64,
    /// Connections the server closed that were opened again
    /// (`--reconnect`).
    pub reconnects: u64,
    /// Datagram kinds: echoes that came back after the echo of a later
    /// message on the same socket.
    pub reordered: u64,
    /// http://: answers by status class, 2xx, 3xx, 4xx, 5xx.
    pub http_status: [u64; 4],
}

impl Counters {
    /// Adds another worker's counters.
    pub fn add(&mut self, other: &Counters) {
        self.messages += other.messages;
        self.connected += other.connected;
        self.answered += other.answered;
        self.connect_failures += other.connect_failures;
        self.errors += other.errors;
        self.lost += other.lost;
        self.late += other.late;
        self.connects += other.connects;
        self.handshakes += other.handshakes;
        self.resumed += other.resumed;
        self.owed_at_end += other.owed_at_end;
        self.never_answered += other.never_answered;
        self.after_end += other.after_end;
        self.reconnects += other.reconnects;
        self.reordered += other.reordered;
        for (sum, add) in self.http_status.iter_mut().zip(other.http_status) {
            *sum += add;
        }
    }
}

/// The result of a run.
#[derive(Clone, Debug)]
pub struct Report {
    /// The configuration run.
    pub config: LoadConfig,
    /// Summed counters.
    pub counters: Counters,
    /// Latency of every counted echo, in microseconds.
    pub latency: Histogram<u64>,
    /// The measured window, as it really lasted (a run that ended early,
    /// or was interrupted, is shorter than asked).
    pub duration: Duration,
    /// The first error seen, in words.
    pub first_error: Option<String>,
    /// The run was stopped early by its observer (Ctrl-C).
    pub interrupted: bool,
    /// Open loop: time from each message's actual send to its echo.
    pub service: Option<Histogram<u64>>,
    /// What the generator says about itself.
    pub verdict: Verdict,
    /// The run interval by interval (when intervals were asked for).
    pub intervals: Vec<Interval>,
    /// Churn: how long connects took, microseconds.
    pub connect_time: Histogram<u64>,
    /// Connects that failed, by cause.
    pub connect_causes: BTreeMap<String, u64>,
    /// tls://: how long handshakes took (from the TCP connect's end),
    /// microseconds.
    pub handshake_time: Histogram<u64>,
    /// Closed loop: the latency corrected for coordinated omission (the
    /// expected-interval correction `wrk` applies), beside the raw one.
    pub corrected: Option<Histogram<u64>>,
    /// Datagram kinds: RFC 3550 interarrival jitter of the round-trip
    /// times, averaged over the sockets, microseconds.
    pub jitter_us: Option<f64>,
    /// http:// and ws://: how the run spoke (verified echoes, or GETs
    /// counted by status class).
    pub speech: Option<Speech>,
}

impl Report {
    /// TLS handshakes per second in the measured window.
    pub fn handshakes_per_sec(&self) -> f64 {
        let secs = self.duration.as_secs_f64();
        if secs > 0.0 {
            self.counters.handshakes as f64 / secs
        } else {
            0.0
        }
    }

    /// Messages due in the window: echoed (also in the wait after it),
    /// owed at the end, or lost.
    pub fn due(&self) -> u64 {
        self.latency.len() + self.counters.lost
    }

    /// The share of the window's messages answered within `--slo` of their
    /// due time (their send time, in closed loop): whether the schedule
    /// was kept.
    pub fn achieved(&self) -> f64 {
        let due = self.due();
        if due == 0 {
            return 0.0;
        }
        let slo = u64::try_from(self.config.modes.slo().as_micros()).unwrap_or(u64::MAX);
        self.latency.count_between(0, slo) as f64 / due as f64
    }

    /// Echoes per second in the measured window.
    pub fn msgs_per_sec(&self) -> f64 {
        let secs = self.duration.as_secs_f64();
        if secs > 0.0 {
            self.counters.messages as f64 / secs
        } else {
            0.0
        }
    }

    /// Echoed bytes per second (one direction) in the measured window.
    pub fn bytes_per_sec(&self) -> f64 {
        self.msgs_per_sec() * self.config.size as f64
    }

    /// Churn: connections opened per second in the measured window.
    pub fn connects_per_sec(&self) -> f64 {
        let secs = self.duration.as_secs_f64();
        if secs > 0.0 {
            self.counters.connects as f64 / secs
        } else {
            0.0
        }
    }

    /// Latency at quantile `q` (0..=1), microseconds.
    pub fn quantile_us(&self, q: f64) -> u64 {
        self.latency.value_at_quantile(q)
    }
}

/// A resolved target: the kind says stream or datagram.
#[derive(Clone, Debug)]
pub struct Dest {
    /// tcp, unix, udp or unix-dgram.
    pub kind: Kind,
    /// The address every connection goes to.
    pub addr: SockAddr,
    /// `?proxy`: each connection begins with a PROXY v2 header.
    pub proxy: bool,
    /// tls://: each connection runs a TLS session.
    pub tls: Option<crate::probe::tls::TlsClient>,
    /// http:// and ws://: what every request or frame carries.
    pub web: Option<std::sync::Arc<Web>>,
}

/// When the measured window opens and (for `-d`) closes: set once every
/// worker has connected.
#[derive(Clone, Copy, Debug)]
pub struct Timeline {
    /// Load begins.
    pub load_start: Instant,
    /// The measured window opens.
    pub measure_start: Instant,
    /// The measured window closes (`-d`); `-n` ends when its echoes are in.
    pub measure_end: Option<Instant>,
}

/// What the coordinator shares with its workers.
pub struct Coordination {
    /// Every worker and the coordinator meet here once connected, and
    /// again once the timeline is set.
    barrier: Barrier,
    timeline: OnceLock<Timeline>,
    /// Connections established, added up by the workers before they meet.
    pub connected: AtomicU64,
    /// Workers whose load is over; they wait at the barrier until the
    /// coordinator has told its observer, so no connection closes (and no
    /// server thread exits) before the window's CPU time is read.
    finished: AtomicUsize,
    /// Set by the coordinator to end the load early (Ctrl-C).
    stop: AtomicBool,
    /// Per worker: echoes completed, errors, lost (for the progress line).
    pub progress: Vec<[AtomicU64; 3]>,
}

impl Coordination {
    /// For `workers` workers and one coordinator.
    pub fn new(workers: usize) -> Arc<Coordination> {
        Arc::new(Coordination {
            barrier: Barrier::new(workers + 1),
            timeline: OnceLock::new(),
            connected: AtomicU64::new(0),
            finished: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            progress: (0..workers)
                .map(|_| [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)])
                .collect(),
        })
    }

    /// Worker side: waits for the others, then returns the timeline.
    pub fn start(&self) -> Timeline {
        self.barrier.wait();
        self.barrier.wait();
        // The coordinator sets it between the two waits.
        *self.timeline.get().expect("timeline set between barriers")
    }

    /// Coordinator side: every worker has connected; sets the timeline and
    /// lets the load begin.
    pub fn begin(&self, timeline: impl FnOnce() -> Timeline) -> Timeline {
        self.barrier.wait();
        let timeline = *self.timeline.get_or_init(timeline);
        self.barrier.wait();
        timeline
    }

    /// Worker side: its load is over; waits until the coordinator has
    /// closed the window, before the worker drains and closes its
    /// connections.
    pub fn finish(&self) {
        self.finished.fetch_add(1, Ordering::AcqRel);
        self.barrier.wait();
    }

    /// Coordinator side: the window is closed; lets the workers go.
    pub fn release(&self) {
        self.barrier.wait();
    }

    /// Workers whose load is over.
    pub fn finished(&self) -> usize {
        self.finished.load(Ordering::Acquire)
    }

    /// Coordinator side: asks every worker to end its load now.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Worker side: the coordinator asked the load to end.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// What one worker is asked to do.
pub struct WorkerJob {
    /// Index of the worker, for progress.
    pub index: usize,
    /// Connection numbers this worker owns (for error messages).
    pub first_conn: usize,
    /// How many connections.
    pub conns: usize,
    /// Messages this worker sends in the measured window (`-n`).
    pub quota: Option<u64>,
    /// The target.
    pub dest: Dest,
    /// The run's configuration.
    pub config: LoadConfig,
    /// The bytes to send.
    pub pattern: Arc<Pattern>,
    /// What this worker shares with the coordinator.
    pub shared: Arc<Coordination>,
    /// Where finished intervals go (when intervals were asked for).
    pub intervals: Option<Sender<Piece>>,
}

/// What one worker brings back.
pub struct WorkerResult {
    /// Its counters.
    pub counters: Counters,
    /// Its latencies.
    pub latency: Histogram<u64>,
    /// When its last counted echo came back.
    pub last_completion: Option<Instant>,
    /// The first error it saw.
    pub first_error: Option<String>,
    /// Open loop: service times (from the actual send).
    pub service: Histogram<u64>,
    /// Open loop: how the schedule was kept.
    pub lag: Lag,
    /// The worker thread's CPU over its wall time (1.0 = a whole core).
    pub cpu_share: f64,
    /// Churn: connect times, microseconds.
    pub connect_time: Histogram<u64>,
    /// Connects that failed, by cause.
    pub connect_causes: BTreeMap<String, u64>,
    /// tls://: handshake times, microseconds.
    pub handshake_time: Histogram<u64>,
    /// Datagram kinds: the sum of the sockets' RFC 3550 jitter, µs, and
    /// how many sockets it sums.
    pub jitter: (f64, u64),
}

impl WorkerResult {
    /// An empty result.
    pub fn new() -> WorkerResult {
        WorkerResult {
            counters: Counters::default(),
            latency: new_histogram(),
            last_completion: None,
            first_error: None,
            service: new_histogram(),
            lag: Lag::default(),
            cpu_share: 0.0,
            connect_time: new_histogram(),
            connect_causes: BTreeMap::new(),
            handshake_time: new_histogram(),
            jitter: (0.0, 0),
        }
    }

    /// Counts an error, keeping the first description.
    pub fn error(&mut self, what: impl FnOnce() -> String) {
        self.counters.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what());
        }
    }

    /// Counts a connection that could not be made.
    pub fn connect_failed(&mut self, what: impl FnOnce() -> String) {
        self.counters.connect_failures += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what());
        }
    }

    /// Records one echo that came back at `now`, due at `due` (the
    /// schedule's time in open loop, else the send) and sent at `sent`;
    /// returns the latency and, in open loop, the service time (µs).
    // Inlined into the echo path: callgrind counts 20-50 instructions per
    // message less in a closed loop (tcp -c 10).
    #[inline]
    pub fn record(
        &mut self,
        due: Instant,
        sent: Instant,
        now: Instant,
        open: bool,
    ) -> (u64, Option<u64>) {
        let us = |from: Instant| {
            u64::try_from(now.saturating_duration_since(from).as_micros())
                .unwrap_or(u64::MAX)
                .max(1)
        };
        let latency = us(due);
        self.latency.saturating_record(latency);
        let service = open.then(|| {
            let service = us(sent);
            self.service.saturating_record(service);
            service
        });
        self.counters.messages += 1;
        self.last_completion = Some(now);
        (latency, service)
    }

    /// A message due at `due` in the window had no echo when the wait
    /// after it ended at `now`: recorded as the wait it had (a lower
    /// bound), so a server that stopped answering shows in the
    /// percentiles.
    pub fn record_owed(&mut self, due: Instant, now: Instant) {
        let us = u64::try_from(now.saturating_duration_since(due).as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.latency.saturating_record(us);
        self.counters.owed_at_end += 1;
    }

    /// Counts a connect that failed mid-run (churn), by cause.
    pub fn connect_cause(&mut self, err: &std::io::Error) {
        let cause = crate::error::describe(err).to_lowercase();
        *self.connect_causes.entry(cause).or_insert(0) += 1;
    }
}

impl Default for WorkerResult {
    fn default() -> Self {
        Self::new()
    }
}

/// An empty latency histogram.
pub fn new_histogram() -> Histogram<u64> {
    // 3 significant figures: 0.1 % resolution, the usual HdrHistogram setting.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// How the run speaks to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Speech {
    /// echoplex: `POST` with `echo_body=raw`, bodies verified.
    Echo,
    /// Any other HTTP server: `GET`, answers counted by status class.
    Get,
    /// WebSocket binary messages, verified.
    WebSocket,
}

impl Speech {
    /// Its name in JSON: `echo`, `get`, `websocket`.
    pub fn name(self) -> &'static str {
        match self {
            Speech::Echo => "echo",
            Speech::Get => "get",
            Speech::WebSocket => "websocket",
        }
    }

    /// True when every answer is checked byte for byte.
    pub fn verifies(self) -> bool {
        self != Speech::Get
    }
}

/// What every connection of a run sends, made once.
#[derive(Debug)]
pub struct Web {
    /// How the run speaks.
    pub speech: Speech,
    /// HTTP: the head in front of every request (with its
    /// `Content-Length`, the payload follows); WebSocket: the upgrade.
    pub head: Vec<u8>,
    /// WebSocket: the `Sec-WebSocket-Accept` the upgrade must carry.
    pub accept: String,
}
