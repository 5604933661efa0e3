//! Logging that never blocks the loop, and log lines no client can multiply.
//!
//! **The sink.** `env_logger` writes each formatted record into a bounded
//! in-memory queue ([`Sink`]); a writer thread drains it to stderr. If
//! stderr stops being read (a stalled supervisor, `serve 2>&1 | slow`), the
//! writer thread blocks in `write(2)`, the queue fills, and further lines
//! are dropped and counted instead of stopping the loop. Once the writer
//! gets through again, it logs how many lines were lost. [`flush`] waits
//! (bounded) for the queue at exit.
//!
//! **The rate limit.** Anything a client can trigger once per message or
//! per connection goes through [`log_limited!`](crate::log_limited): at
//! most [`LINES_PER_SECOND`] lines per second per call site; the first line
//! shown after a quiet spell says how many were not shown.

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// Bytes of log the queue holds while stderr is not being read: a few
/// thousand lines, so a short stall of the reader loses nothing.
pub const QUEUE_BYTES: usize = 256 * 1024;

/// Lines per second and call site that [`log_limited!`](crate::log_limited) lets through.
pub const LINES_PER_SECOND: u32 = 5;

/// How long [`flush`] waits for a writer that makes no progress at all.
const FLUSH_PATIENCE: Duration = Duration::from_millis(1000);

#[derive(Default)]
struct Queue {
    bytes: Vec<u8>,
    /// Lines (and bytes) dropped since the writer last reported them.
    dropped_lines: u64,
    dropped_bytes: u64,
    /// All lines dropped since start, for tests and the exit summary.
    dropped_total: u64,
    /// The writer holds a batch it has not finished writing.
    writing: bool,
    /// Batches written so far: the progress [`flush`] waits on.
    batches: u64,
}

struct Handoff {
    queue: Mutex<Queue>,
    /// Signals the writer: something to write.
    work: Condvar,
    /// Signals `flush`: a batch was written.
    progress: Condvar,
}

impl Handoff {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock leaves a queue of bytes that is
        // still usable: logging must go on.
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The writing end of the queue, handed to `env_logger` as its target.
/// `write` never blocks on I/O: it appends, or drops and counts.
#[derive(Clone)]
pub struct Sink(Arc<Handoff>);

impl Sink {
    /// A queue and the thread that drains it into `out`.
    pub fn start(out: impl Write + Send + 'static) -> io::Result<Sink> {
        let shared = Arc::new(Handoff {
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            progress: Condvar::new(),
        });
        let writer = Arc::clone(&shared);
        thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || drain(&writer, out))?;
        Ok(Sink(shared))
    }

    /// Lines dropped since start because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.0.lock().dropped_total
    }

    /// Waits until everything queued is written, or until the writer has
    /// made no progress for `patience` (stderr is not being read).
    pub fn flush_within(&self, patience: Duration) {
        let mut queue = self.0.lock();
        let mut batches = queue.batches;
        let mut since = Instant::now();
        while !queue.bytes.is_empty() || queue.writing || queue.dropped_lines > 0 {
            let left = patience.saturating_sub(since.elapsed());
            if left.is_zero() {
                return;
            }
            queue = match self.0.progress.wait_timeout(queue, left) {
                Ok((queue, _)) => queue,
                Err(poisoned) => poisoned.into_inner().0,
            };
            if queue.batches != batches {
                batches = queue.batches;
                since = Instant::now();
            }
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut queue = self.0.lock();
        if queue.bytes.len() + buf.len() <= QUEUE_BYTES {
            queue.bytes.extend_from_slice(buf);
            drop(queue);
            self.0.work.notify_one();
        } else {
            let lines = buf.iter().filter(|&&b| b == b'\n').count().max(1) as u64;
            queue.dropped_lines += lines;
            queue.dropped_total += lines;
            queue.dropped_bytes += buf.len() as u64;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(()) // the writer thread flushes; the loop never waits for it
    }
}

/// The writer thread: takes the whole queue at once, writes it blocking
/// (this thread may wait on stderr; the loop never does), reports drops.
fn drain(shared: &Handoff, mut out: impl Write) {
    let mut batch = Vec::with_capacity(QUEUE_BYTES);
    loop {
        let mut queue = shared.lock();
        while queue.bytes.is_empty() && queue.dropped_lines == 0 {
            queue = match shared.work.wait(queue) {
                Ok(queue) => queue,
                Err(poisoned) => poisoned.into_inner(),
            };
        }
        std::mem::swap(&mut batch, &mut queue.bytes);
        let dropped = (
            std::mem::take(&mut queue.dropped_lines),
            std::mem::take(&mut queue.dropped_bytes),
        );
        queue.writing = true;
        drop(queue);
        if dropped.0 > 0 {
            // The queue was just emptied, so this line has room; it goes
            // out with the next batch, right after the lines that waited.
            log::warn!(
                "{} log lines ({} bytes) dropped: stderr was not being read",
                dropped.0,
                dropped.1
            );
        }
        // A write error (stderr closed) loses the batch: nobody can read it.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        let mut queue = shared.lock();
        queue.writing = false;
        queue.batches += 1;
        drop(queue);
        shared.progress.notify_all();
    }
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// Sets up `env_logger` (`RUST_LOG`, default `info`) on stderr. With
/// `queued` (the daemon), records go through the non-blocking [`Sink`];
/// the other subcommands write to stderr directly. `trace` turns on the
/// reactor's trace log and the HTTP echo's (a line per request, message).
/// `name_reactors` (`serve --reactors N`, N > 1): each line names the
/// reactor whose thread wrote it.
pub fn init(queued: bool, trace: bool, name_reactors: bool) {
    let colour = if io::stderr().is_terminal() {
        "always"
    } else {
        "never"
    };
    let env = env_logger::Env::default()
        .default_filter_or("info")
        .default_write_style_or(colour);
    let mut logger = env_logger::Builder::from_env(env);
    if trace {
        logger.filter_module("echoplex::reactor", log::LevelFilter::Trace);
        // Each TLS connection's want-read/want-write steps and handshake.
        logger.filter_module("echoplex::services::tls", log::LevelFilter::Trace);
        // One line per HTTP request and WebSocket message.
        logger.filter_module("echoplex::services::http", log::LevelFilter::Trace);
    }
    if name_reactors {
        // Trace lines too. Reactor N's thread is named "reactor-N"; reactor
        // 0 runs on the main thread, which also logs start-up and the end.
        logger.format(|buf, record| {
            let thread = std::thread::current();
            let reactor = thread
                .name()
                .and_then(|name| name.strip_prefix("reactor-"))
                .unwrap_or("0");
            writeln!(
                buf,
                "[{} {:<5} {} reactor {reactor}] {}",
                buf.timestamp(),
                record.level(),
                record.target(),
                record.args()
            )
        });
    }
    let sink = if queued {
        Sink::start(io::stderr()).ok()
    } else {
        None
    };
    match sink {
        Some(sink) => {
            logger.target(env_logger::Target::Pipe(Box::new(sink.clone())));
            let _ = SINK.set(sink);
        }
        None => {
            logger.target(env_logger::Target::Stderr);
        }
    }
    // Only fails if a logger is already set (tests): keep that one.
    let _ = logger.try_init();
}

/// Writes out what the sink still holds (bounded: a stderr nobody reads
/// cannot hold the exit up for long). A no-op without a sink.
pub fn flush() {
    report_hidden();
    if let Some(sink) = SINK.get() {
        sink.flush_within(FLUSH_PATIENCE);
    }
}

/// Lines the sink has dropped since start (0 without a sink).
pub fn dropped_lines() -> u64 {
    SINK.get().map_or(0, Sink::dropped)
}

// --- the rate limit ---

fn clock_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// One call site's budget: [`LINES_PER_SECOND`] lines per second, and a
/// count of the lines it held back. Atomics, so it can live in a `static`
/// and serve several reactor threads; a race costs at most a line.
pub struct RateLimit {
    /// The format string, for the exit summary.
    what: &'static str,
    second: AtomicU64,
    shown: AtomicU32,
    hidden: AtomicU64,
    registered: AtomicU32,
}

/// Call sites that have held lines back, for the summary at exit.
static HIDING: Mutex<Vec<&'static RateLimit>> = Mutex::new(Vec::new());

impl RateLimit {
    /// A budget for the call site whose format string is `what`.
    pub const fn new(what: &'static str) -> Self {
        RateLimit {
            what,
            second: AtomicU64::new(u64::MAX),
            shown: AtomicU32::new(0),
            hidden: AtomicU64::new(0),
            registered: AtomicU32::new(0),
        }
    }

    /// `Some(lines held back since the last one shown)` if this line may be
    /// shown now, `None` (and counted) if not.
    pub fn admit(&'static self) -> Option<u64> {
        let second = clock_ms() / 1000;
        if self.second.swap(second, Ordering::Relaxed) != second {
            self.shown.store(0, Ordering::Relaxed);
        }
        if self.shown.fetch_add(1, Ordering::Relaxed) < LINES_PER_SECOND {
            return Some(self.hidden.swap(0, Ordering::Relaxed));
        }
        self.hidden.fetch_add(1, Ordering::Relaxed);
        if self.registered.swap(1, Ordering::Relaxed) == 0 {
            if let Ok(mut hiding) = HIDING.lock() {
                hiding.push(self);
            }
        }
        None
    }
}

/// Logs, once, the lines every call site held back and never got to
/// report (the daemon is stopping).
pub fn report_hidden() {
    let Ok(hiding) = HIDING.lock() else { return };
    for site in hiding.iter() {
        let hidden = site.hidden.swap(0, Ordering::Relaxed);
        if hidden > 0 {
            log::info!("{hidden} more lines like {:?} were not shown", site.what);
        }
    }
}

/// `log!` with a per-call-site budget of [`LINES_PER_SECOND`] lines per
/// second; the next line shown says how many were held back. For every
/// line a client can cause once per message or per connection.
#[macro_export]
macro_rules! log_limited {
    ($level:expr, $fmt:literal $($rest:tt)*) => {{
        if log::log_enabled!($level) {
            static LIMIT: $crate::log::RateLimit = $crate::log::RateLimit::new($fmt);
            if let Some(hidden) = LIMIT.admit() {
                if hidden == 0 {
                    log::log!($level, $fmt $($rest)*);
                } else {
                    log::log!(
                        $level,
                        "{} ({hidden} more like this not shown)",
                        format_args!($fmt $($rest)*)
                    );
                }
            }
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that blocks until released, like a pipe nobody reads.
    struct Stalled(Arc<(Mutex<bool>, Condvar)>, Arc<Mutex<Vec<u8>>>);

    impl Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let (open, cv) = &*self.0;
            let mut open = open.lock().expect("lock");
            while !*open {
                open = cv.wait(open).expect("wait");
            }
            self.1.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_writer_never_blocks_the_logger_and_drops_are_counted() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let written = Arc::new(Mutex::new(Vec::new()));
        let mut sink =
            Sink::start(Stalled(Arc::clone(&gate), Arc::clone(&written))).expect("thread");
        let line = [b'x'; 99].iter().chain(b"\n").copied().collect::<Vec<u8>>();
        let started = Instant::now();
        // Ten times what the queue holds: must return at once, every time.
        for _ in 0..(10 * QUEUE_BYTES / line.len()) {
            sink.write_all(&line).expect("never fails");
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "writing to a stalled sink blocked"
        );
        let dropped = sink.dropped();
        assert!(dropped > 0, "a full queue must drop lines");
        *gate.0.lock().expect("lock") = true;
        gate.1.notify_all();
        sink.flush_within(Duration::from_secs(5));
        let written = written.lock().expect("lock");
        assert!(!written.is_empty());
        // The batch the writer held when it stalled, plus one full queue.
        assert!(written.len() <= 2 * QUEUE_BYTES);
        assert_eq!(
            written.len() as u64 + dropped * line.len() as u64,
            (10 * QUEUE_BYTES / line.len() * line.len()) as u64,
            "every line is either written or counted as dropped"
        );
    }

    #[test]
    fn the_rate_limit_shows_a_few_lines_per_second_and_counts_the_rest() {
        static LIMIT: RateLimit = RateLimit::new("test {}");
        let shown = (0..100).filter(|_| LIMIT.admit().is_some()).count();
        // All 100 fall in at most two seconds of the clock.
        assert!(shown <= 2 * LINES_PER_SECOND as usize, "{shown} shown");
        assert!(LIMIT.hidden.load(Ordering::Relaxed) >= 100 - 2 * LINES_PER_SECOND as u64);
    }
}
