//! The closed loop, independent of the command line: [`run_load`] takes a
//! [`LoadConfig`], drives the target from worker threads (each its own
//! `mio::Poll` and share of the connections) and returns a [`Report`].
//! `benches/compare.rs` calls it directly, with an [`Observer`] that reads
//! the server's CPU time exactly when the measured window opens and closes.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::SocketAddr as UnixAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::pattern::Pattern;
use super::{dgram, stream};
use crate::endpoint::{Endpoint, Kind, Target};

/// Largest latency the histogram holds, in microseconds (a minute).
const MAX_LATENCY_US: u64 = 60_000_000;

/// Largest datagram a bench sends: the UDP payload limit over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;

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
}

/// What the caller hears while a run goes on. Called from the thread that
/// called [`run_load`], never from the workers.
pub trait Observer {
    /// Every connection that could connect is connected; load begins.
    fn connected(&mut self, _connected: u64) {}
    /// The measured window opens (after the warm-up).
    fn measuring(&mut self) {}
    /// The measured window closed (or the last echo of `-n` came back).
    fn finished(&mut self) {}
    /// About once a second.
    fn progress(&mut self, _progress: &Progress) {}
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
    /// Connections that could not be made (refused, timed out).
    pub connect_failures: u64,
    /// Corrupt, reordered, unexpected or missing echoes; connections
    /// closed or stalled by the server.
    pub errors: u64,
    /// Datagrams not echoed within the timeout.
    pub lost: u64,
    /// Datagram echoes that came back after being counted lost.
    pub late: u64,
}

impl Counters {
    fn add(&mut self, other: &Counters) {
        self.messages += other.messages;
        self.connected += other.connected;
        self.connect_failures += other.connect_failures;
        self.errors += other.errors;
        self.lost += other.lost;
        self.late += other.late;
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
    /// The measured window.
    pub duration: Duration,
    /// The first error seen, in words.
    pub first_error: Option<String>,
}

impl Report {
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

    /// Latency at quantile `q` (0..=1), microseconds.
    pub fn quantile_us(&self, q: f64) -> u64 {
        self.latency.value_at_quantile(q)
    }
}

/// A resolved target.
#[derive(Clone, Debug)]
pub enum Dest {
    /// `tcp://`.
    Tcp(SocketAddr),
    /// `unix:`.
    Unix(UnixAddr),
    /// `udp://`.
    Udp(SocketAddr),
    /// `unix-dgram:`.
    UnixDgram(UnixAddr),
}

fn unix_addr(target: &Target) -> io::Result<UnixAddr> {
    match target {
        Target::Path(path) => UnixAddr::from_pathname(path),
        Target::Abstract(name) => UnixAddr::from_abstract_name(name.as_bytes()),
        Target::Inet { .. } => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a Unix-domain address",
        )),
    }
}

/// Resolves the endpoint. A TCP name with several addresses (`localhost`
/// is often `::1` and `127.0.0.1`) is probed in order, and the first that
/// accepts a connection is used, as `curl` does.
pub fn resolve(endpoint: &Endpoint, connect_timeout: Duration) -> io::Result<Dest> {
    match endpoint.kind {
        Kind::Tcp => {
            let addrs = endpoint.socket_addrs()?;
            if addrs.len() == 1 {
                return Ok(Dest::Tcp(addrs[0]));
            }
            let mut last = None;
            for addr in &addrs {
                match TcpStream::connect_timeout(addr, connect_timeout) {
                    Ok(_) => return Ok(Dest::Tcp(*addr)),
                    Err(err) => last = Some(err),
                }
            }
            Err(last.unwrap_or_else(|| io::ErrorKind::NotFound.into()))
        }
        Kind::Udp => Ok(Dest::Udp(endpoint.socket_addr()?)),
        Kind::Unix => Ok(Dest::Unix(unix_addr(&endpoint.target)?)),
        Kind::UnixDgram => Ok(Dest::UnixDgram(unix_addr(&endpoint.target)?)),
        Kind::Multicast | Kind::Binary => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "bench drives echo endpoints only (tcp, unix, udp, unix-dgram), not {}",
                endpoint.kind.scheme()
            ),
        )),
    }
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
pub struct Shared {
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
    /// Per worker: echoes completed, errors, lost (for the progress line).
    pub progress: Vec<[AtomicU64; 3]>,
}

impl Shared {
    /// Waits for the others, then returns the timeline.
    pub fn start(&self) -> Timeline {
        self.barrier.wait();
        self.barrier.wait();
        // The coordinator sets it between the two waits.
        *self.timeline.get().expect("timeline set between barriers")
    }

    /// The worker's load is over: waits until the coordinator has closed
    /// the window, before the worker drains and closes its connections.
    pub fn finish(&self) {
        self.finished.fetch_add(1, Ordering::AcqRel);
        self.barrier.wait();
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
    /// Shared with the coordinator.
    pub shared: Arc<Shared>,
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
}

impl WorkerResult {
    /// An empty result.
    pub fn new() -> WorkerResult {
        WorkerResult {
            counters: Counters::default(),
            latency: new_histogram(),
            last_completion: None,
            first_error: None,
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

    /// Records one echo that came back at `now`, sent at `sent`.
    pub fn record(&mut self, sent: Instant, now: Instant) {
        let micros = now.saturating_duration_since(sent).as_micros();
        self.latency
            .saturating_record(u64::try_from(micros).unwrap_or(u64::MAX).max(1));
        self.counters.messages += 1;
        self.last_completion = Some(now);
    }
}

impl Default for WorkerResult {
    fn default() -> Self {
        Self::new()
    }
}

fn new_histogram() -> Histogram<u64> {
    // 3 significant figures: 0.1 % resolution, the usual HdrHistogram setting.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// A nonce that differs between runs, so a late echo from an earlier run
/// (a reused port) cannot pass as one of ours.
fn nonce() -> u64 {
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    time ^ (u64::from(std::process::id()) << 32)
}

/// Runs the closed loop and returns its report. Fails only when the target
/// cannot be resolved or a worker cannot start; connection failures and
/// bad echoes are counted in the report.
pub fn run_load(config: &LoadConfig, observer: &mut dyn Observer) -> io::Result<Report> {
    let dest = resolve(&config.endpoint, config.connect_timeout)?;
    let threads = config.threads.clamp(1, config.connections.max(1));
    let pattern = Arc::new(Pattern::new(config.size, nonce()));
    let shared = Arc::new(Shared {
        barrier: Barrier::new(threads + 1),
        timeline: OnceLock::new(),
        connected: AtomicU64::new(0),
        finished: AtomicUsize::new(0),
        progress: (0..threads)
            .map(|_| [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)])
            .collect(),
    });

    let mut handles = Vec::with_capacity(threads);
    let mut first_conn = 0;
    for index in 0..threads {
        let share = |total: u64| {
            total / threads as u64 + u64::from((index as u64) < total % threads as u64)
        };
        let conns = share(config.connections as u64) as usize;
        let job = WorkerJob {
            index,
            first_conn,
            conns,
            quota: match config.stop {
                Stop::Messages(n) => Some(share(n)),
                Stop::Duration(_) => None,
            },
            dest: dest.clone(),
            config: config.clone(),
            pattern: Arc::clone(&pattern),
            shared: Arc::clone(&shared),
        };
        first_conn += conns;
        let is_stream = matches!(dest, Dest::Tcp(_) | Dest::Unix(_));
        let handle = thread::Builder::new()
            .name(format!("bench-{index}"))
            .spawn(move || {
                if is_stream {
                    stream::run(job)
                } else {
                    dgram::run(job)
                }
            })?;
        handles.push(handle);
    }

    // Connected: set the timeline and let the load begin.
    shared.barrier.wait();
    let load_start = Instant::now();
    let measure_start = load_start + config.warmup;
    let timeline = Timeline {
        load_start,
        measure_start,
        measure_end: match config.stop {
            Stop::Duration(d) => Some(measure_start + d),
            Stop::Messages(_) => None,
        },
    };
    let _ = shared.timeline.set(timeline);
    shared.barrier.wait();
    observer.connected(shared.connected.load(Ordering::Relaxed));

    let mut measuring = false;
    let mut next_tick = load_start + Duration::from_secs(1);
    loop {
        let now = Instant::now();
        if !measuring && now >= measure_start {
            measuring = true;
            observer.measuring();
        }
        if shared.finished.load(Ordering::Acquire) == threads {
            break;
        }
        if let Some(end) = timeline.measure_end {
            if now >= end {
                break;
            }
        }
        if now >= next_tick {
            next_tick += Duration::from_secs(1);
            let sum = |i: usize| -> u64 {
                shared
                    .progress
                    .iter()
                    .map(|p| p[i].load(Ordering::Relaxed))
                    .sum()
            };
            observer.progress(&Progress {
                elapsed: now - load_start,
                warming_up: !measuring,
                completed: sum(0),
                errors: sum(1),
                lost: sum(2),
            });
        }
        // Short naps keep the window's edges within a millisecond.
        let mut wake = next_tick.min(now + Duration::from_millis(1));
        if !measuring {
            wake = wake.min(measure_start);
        }
        thread::sleep(wake.saturating_duration_since(now));
    }
    if !measuring {
        observer.measuring();
    }
    observer.finished();
    shared.barrier.wait();

    let mut counters = Counters::default();
    let mut latency = new_histogram();
    let mut first_error = None;
    let mut last_completion: Option<Instant> = None;
    for handle in handles {
        let result = handle
            .join()
            .map_err(|_| io::Error::other("a bench worker panicked"))?;
        counters.add(&result.counters);
        latency
            .add(&result.latency)
            .map_err(|err| io::Error::other(format!("merging histograms: {err:?}")))?;
        if first_error.is_none() {
            first_error = result.first_error;
        }
        last_completion = last_completion.max(result.last_completion);
    }
    let duration = match timeline.measure_end {
        Some(end) => end.saturating_duration_since(measure_start),
        None => last_completion
            .unwrap_or(measure_start)
            .saturating_duration_since(measure_start),
    };
    Ok(Report {
        config: config.clone(),
        counters,
        latency,
        duration,
        first_error,
    })
}
