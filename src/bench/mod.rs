//! `echoplex bench ENDPOINT`: a closed-loop load generator for any echo
//! server, with every echoed byte verified.
//!
//! Layers, each using only those below it:
//! - this file: the command line (options, progress line, Ctrl-C, exit codes);
//! - [`load`]: the coordinator (resolve, start workers, the window, the sum);
//! - [`worker`]: the one worker loop, generic over a [`worker::Traffic`];
//! - [`stream`] and [`dgram`]: the two kinds of traffic (tcp/unix, udp/unix-dgram);
//! - [`types`]: what they share (config, report, timeline, counters).
//!
//! The bytes and the sockets come from [`crate::probe`]; [`report`] and
//! [`plot`] show the result.

pub mod churn;
pub mod dgram;
pub mod hdrlog;
pub mod http;
pub mod intervals;
pub mod judge;
mod link;
pub mod load;
pub mod multicast;
pub mod plot;
pub mod report;
pub mod schedule;
pub mod stream;
pub mod sweep;
pub mod types;
pub mod units;
pub mod worker;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::endpoint::{Endpoint, Kind, Tool};
use crate::error::{describe, Exit, Failure, Outcome};
use crate::probe::duration::{positive_secs, secs};
use crate::probe::{interrupt, MAX_UDP_PAYLOAD};
pub use load::run_load;
use schedule::Arrivals;
pub use types::{LoadConfig, Observer, Progress, Quiet, Report, Stop};

/// Command-line arguments of `echoplex bench`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Every echoed byte is checked against what was sent: each message carries \
its sequence number and a pattern derived from it, so a corrupt, reordered \
or duplicated echo is an error. A datagram not echoed within --timeout is \
counted lost and re-sent under a new sequence number (a lossy server never \
hangs the run); a stream connection owed an echo that hears nothing for \
--timeout is an error. `echoplex serve` limits UDP replies per source \
address (--udp-rate, default 1000/s) except from loopback: to load it from \
another host, serve with --udp-rate 0.

Ctrl-C ends the run early and prints the report of what was measured, \
marked interrupted (exit 130); a second Ctrl-C exits at once.

Exit status:
  0    every echo verified, no error
  1    errors: corrupt, reordered or missing echoes, connections closed or \
refused (some connected)
  2    bad usage
  3    nothing could connect, or no echo ever came back
  130  interrupted (Ctrl-C): the partial report is printed

Without --rate the loop is closed: each connection sends again when its \
echoes are back. With --rate R it is open: R messages per second leave on \
a schedule whether or not the server keeps up, latency is measured from \
each message's scheduled time (a stall shows; no coordinated omission) and \
service time from its actual send. The generator judges itself (late \
sends, lag, CPU) and says SATURATED when it, not the server, set the \
numbers. Every run first checks that its connections fit under \
RLIMIT_NOFILE; --churn M also checks the port range and TIME_WAIT build-up; \
a run that would exhaust them is refused (exit 2). \
multicast://GROUP:PORT sends rounds to the group (TTL 1, --iface) and \
reports every responder's acks, loss and latency (exit 3: no ack).

Examples:
  echoplex bench tcp://127.0.0.1:10000 -c 100 -d 10 --rate 50000 --interval 1
  echoplex bench tcp://127.0.0.1:10000 --rate 2000 --hdr-log gen1.hlog
  echoplex bench tcp://127.0.0.1:10000 --churn 100 -c 20 --json-stream
  echoplex bench multicast://224.1.1.1:5000 -d 5 --timeout 0.5
  echoplex bench tcp://127.0.0.1:10000 -c 100 -d 10
  echoplex bench udp://127.0.0.1:10000 -c 8 -s 64 --json
  echoplex bench unix:./echoplex.sock -s 16384 -c 10 --plot latency.svg")]
pub struct Args {
    /// The echo server: tcp://HOST:PORT, udp://HOST:PORT, unix:PATH or unix-dgram:PATH;
    /// or multicast://GROUP:PORT (rounds to the group, a row per responder);
    /// http://HOST:PORT[/PATH] (echoplex: POSTs, every echo verified; any other
    /// server: GETs counted by status class) or ws://HOST:PORT[/PATH].
    #[arg(value_name = "ENDPOINT")]
    pub endpoint: Endpoint,
    /// Connections (sockets, for udp and unix-dgram).
    #[arg(short = 'c', long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub connections: u64,
    /// Bytes per message.
    #[arg(short = 's', long, value_name = "BYTES", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..=64 * 1024 * 1024))]
    pub size: u64,
    /// Messages in flight per connection.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub depth: u64,
    /// Seconds to measure.
    #[arg(short = 'd', long, value_name = "SECS", default_value = "5",
          value_parser = positive_secs, conflicts_with = "messages")]
    pub duration: Duration,
    /// Measure this many messages instead of a duration (datagrams re-sent
    /// after a loss count again).
    #[arg(short = 'n', long = "messages", value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub messages: Option<u64>,
    /// Seconds of load before measuring starts.
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = secs)]
    pub warmup: Duration,
    /// Worker threads, each with its own poll loop and share of the connections.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=256))]
    pub threads: u64,
    /// Seconds after which a datagram is lost, or a silent connection stalled.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = positive_secs)]
    pub timeout: Duration,
    /// Seconds connecting may take.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = positive_secs)]
    pub connect_timeout: Duration,
    /// Print one JSON object instead of the human report.
    #[arg(long)]
    pub json: bool,
    /// Draw the latency percentile distribution into FILE.svg (and, with
    /// intervals, the throughput and p99 over time).
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Open loop: R messages per second in all, on a schedule, whether or
    /// not echoes came back; latency is measured from the scheduled time.
    #[arg(long, value_name = "R", value_parser = parse_rate, conflicts_with = "depth")]
    pub rate: Option<f64>,
    /// How the open loop spreads its sends in time.
    #[arg(long, value_name = "HOW", value_enum, default_value_t = Arrivals::Uniform,
          requires = "rate")]
    pub arrivals: Arrivals,
    /// Print a line per interval of SECS while the run goes.
    #[arg(long, value_name = "SECS", value_parser = positive_secs)]
    pub interval: Option<Duration>,
    /// JSON Lines on stdout: one object per interval, then the summary.
    #[arg(long, conflicts_with = "json")]
    pub json_stream: bool,
    /// Stream kinds: close a connection after M echoes and open a new one.
    #[arg(long, value_name = "M", value_parser = clap::value_parser!(u64).range(1..))]
    pub churn: Option<u64>,
    /// Write every interval's latency histogram to FILE (HdrHistogram
    /// interval-log format; merge several with `echoplex report`).
    #[arg(long, value_name = "FILE")]
    pub hdr_log: Option<PathBuf>,
    /// Stream kinds: when the server closes a connection (an upgrade's
    /// drain, a balancer's failover), open another and go on; reconnects
    /// are counted.
    #[arg(long)]
    pub reconnect: bool,
    /// What "on time" means: `achieved` counts the messages answered
    /// within it of their due time; `--sweep`'s knee is the highest rate
    /// whose p99 stays under it [default: 1ms].
    #[arg(long, value_name = "DURATION", value_parser = parse_slo)]
    pub slo: Option<Duration>,
    /// Print the full percentile spectrum (p50 ... p99.9999, max), with
    /// how many messages were slower than each.
    #[arg(long)]
    pub percentiles: bool,
    /// Open loop at each rate FROM, FROM+STEP, ... TO (messages per
    /// second), -d each: a table, the knee (the highest rate whose p99
    /// stays under --slo with 99 % answered on time), and with --plot
    /// latency against offered load.
    #[arg(long, value_name = "FROM:TO:STEP", conflicts_with_all = ["rate", "messages", "json_stream", "interval", "hdr_log", "churn"])]
    pub sweep: Option<String>,
    /// multicast://: the interface the rounds go out on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    pub iface: std::net::Ipv4Addr,
    /// tls://: how the server is verified.
    #[command(flatten)]
    pub tls: crate::probe::tls::TlsArgs,
    /// tls:// with --churn: offer session resumption on reconnects (by
    /// default every handshake is a full one).
    #[arg(long)]
    pub tls_resume: bool,
}

/// A duration with a unit (`500us`, `1ms`, `0.2s`), or seconds.
fn parse_slo(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix("us").or_else(|| t.strip_suffix("µs")) {
        (n, 1e-6)
    } else if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else {
        (t, 1.0)
    };
    match number.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 && x * scale <= 3600.0 => {
            Ok(Duration::from_secs_f64(x * scale))
        }
        _ => Err(format!(
            "'{text}' is not a duration (such as 500us, 1ms or 0.2s; more than 0)"
        )),
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 && rate <= 100_000_000.0 => Ok(rate),
        _ => Err(format!(
            "'{text}' is not a rate (messages per second, more than 0)"
        )),
    }
}

impl Args {
    /// The run these options describe, or why they make no sense.
    pub fn config(&self) -> Result<LoadConfig, String> {
        let size = usize::try_from(self.size).map_err(|_| "size too large".to_string())?;
        self.endpoint.check_tool(Tool::Bench)?;
        if self.churn.is_some() && !self.endpoint.kind.is_stream() {
            return Err(format!(
                "--churn closes and reopens stream connections; {} has none",
                self.endpoint.kind.scheme()
            ));
        }
        if self.interval.is_some() && self.json {
            return Err(
                "--interval prints a line per interval while the run goes, which \
                        --json (one object at the end) cannot; use --json-stream for JSON \
                        Lines: an object per interval, then the summary"
                    .into(),
            );
        }
        if self.reconnect && !self.endpoint.kind.is_stream() {
            return Err(format!(
                "--reconnect opens stream connections again; {} has none",
                self.endpoint.kind.scheme()
            ));
        }
        if !self.endpoint.kind.is_stream() && size > MAX_UDP_PAYLOAD {
            return Err(format!(
                "-s {size}: a datagram holds at most {MAX_UDP_PAYLOAD} bytes"
            ));
        }
        Ok(LoadConfig {
            endpoint: self.endpoint.clone(),
            connections: self.connections as usize,
            size,
            depth: self.depth as usize,
            threads: self.threads.min(self.connections) as usize,
            stop: match self.messages {
                Some(n) => Stop::Messages(n),
                None => Stop::Duration(self.duration),
            },
            warmup: self.warmup,
            timeout: self.timeout,
            connect_timeout: self.connect_timeout,
            modes: types::Modes {
                rate: self.rate,
                arrivals: self.arrivals,
                // Intervals are recorded when anything shows them.
                interval: self.interval.or_else(|| {
                    (self.json_stream || self.hdr_log.is_some() || self.plot.is_some())
                        .then_some(Duration::from_secs(1))
                }),
                churn: self.churn,
                tls: self
                    .tls
                    .client(&self.endpoint, self.tls_resume)
                    .map_err(|failure| failure.message)?,
                end_wait: None,
                reconnect: self.reconnect,
                slo: self.slo,
                spectrum: self.percentiles,
            },
        })
    }
}

/// Runs `echoplex bench`; returns the process exit code.
pub fn run(args: Args) -> Outcome {
    // The first Ctrl-C ends the run through its normal path (the report of
    // what was measured); a second one exits at once, 130.
    interrupt::stop_on(&[signal_hook::consts::SIGINT], true)?;
    if args.endpoint.kind == Kind::Multicast {
        return Ok(multicast::run(&args));
    }
    let config = match args.config() {
        Ok(config) => config,
        Err(why) => return Err(Failure::usage(why)),
    };
    let nofile = churn::raise_nofile();
    churn::descriptors(config.connections as u64, nofile)
        .map_err(|why| Failure::usage(format!("refused: {why}")))?;
    if let Some(m) = config.modes.churn {
        churn_preflight(&config, m).map_err(|why| Failure::usage(format!("refused: {why}")))?;
    }
    // Every output path is checked before the run, not after it.
    for path in [&args.hdr_log, &args.plot].into_iter().flatten() {
        writable(path).map_err(|err| {
            let why = format!("cannot write {}: {}", path.display(), describe(&err));
            Failure::new(Exit::Io, why)
        })?;
    }
    if let Some(sweep) = &args.sweep {
        let rates = sweep::parse(sweep).map_err(Failure::usage)?;
        return run_sweep(&args, &config, &rates);
    }
    let mut progress = ProgressLine::new(std::io::stderr().is_terminal());
    progress.lines = args.interval.is_some() && !args.json && !args.json_stream;
    progress.json_stream = args.json_stream;
    progress.churn = config.modes.churn.is_some();
    progress.hdr_path = args.hdr_log.clone();
    progress.command = std::env::args().collect::<Vec<_>>().join(" ");
    let report = match run_load(&config, &mut progress) {
        Ok(report) => report,
        Err(err) => {
            progress.clear();
            let why = format!("cannot reach {}: {}", config.endpoint, describe(&err));
            // Ctrl-C while resolving: nothing was measured.
            let exit = if interrupt::stopped() {
                Exit::Interrupted
            } else {
                Exit::Unreachable
            };
            return Err(Failure::new(exit, why));
        }
    };
    progress.clear();

    let mut plot_failed = false;
    if let Some(path) = &args.plot {
        if let Err(err) = std::fs::write(path, plot::svg(&report)) {
            eprintln!(
                "echoplex bench: cannot write {}: {}",
                path.display(),
                crate::error::describe(&err)
            );
            plot_failed = true;
        }
    }
    let summary = report::json(&report);
    if let Some(log) = &mut progress.hdr {
        if let Err(err) = log.summary(&summary) {
            progress.hdr_error = Some(err);
        }
    }
    if let (Some(path), Some(err)) = (&args.hdr_log, &progress.hdr_error) {
        eprintln!(
            "echoplex bench: cannot write {}: {}",
            path.display(),
            crate::error::describe(err)
        );
    }
    let out = if args.json_stream {
        let mut summary = summary;
        summary["type"] = serde_json::json!("summary");
        format!("{summary}\n")
    } else if args.json {
        format!("{summary}\n")
    } else {
        report::human(&report)
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush());

    // The paths were checked before the run; a write that still failed
    // (a full disk) is the run's failure, not a footnote.
    if plot_failed || progress.hdr_error.is_some() {
        return Ok(Exit::Io);
    }
    let c = &report.counters;
    if c.lost > 0 && config.endpoint.kind == Kind::Udp {
        // Whatever the server: a reply rate limit (such as echoplex's own
        // anti-reflection guard) is one possibility among several.
        eprintln!(
            "echoplex bench: {} datagrams lost: dropped by the network, the kernel's \
             buffers, or a server that limits replies per source (echoplex serve does, \
             except to loopback: --udp-rate 0 lifts it)",
            c.lost
        );
    }
    if report.interrupted {
        eprintln!("echoplex bench: interrupted; the report covers what was measured");
        return Ok(Exit::Interrupted);
    }
    if c.connected == 0 {
        let why = report
            .first_error
            .as_deref()
            .unwrap_or("no connection could be made");
        eprintln!(
            "echoplex bench: nothing echoed from {}: {why}",
            config.endpoint
        );
        return Ok(Exit::Unreachable);
    }
    if c.answered == 0 {
        let why = report
            .first_error
            .as_deref()
            .map_or(String::new(), |why| format!(" ({why})"));
        eprintln!(
            "echoplex bench: {} connected but no echo ever came back{why}",
            config.endpoint
        );
        return Ok(Exit::Unreachable);
    }
    if c.owed_at_end > 0 {
        eprintln!(
            "echoplex bench: {} messages due in the window were still unanswered {} after it \
             (owed at the end)",
            c.owed_at_end,
            units::duration(config.timeout)
        );
    }
    if c.errors > 0 || c.connect_failures > 0 || c.owed_at_end > 0 {
        if let Some(why) = report
            .first_error
            .as_ref()
            .filter(|_| c.errors + c.connect_failures > 0)
        {
            eprintln!(
                "echoplex bench: {} errors, {} connect failures; first: {why}",
                c.errors, c.connect_failures
            );
        }
        return Ok(Exit::Failed);
    }
    Ok(Exit::Ok)
}

/// Whether `path` can be written, without leaving a file behind that was
/// not there (nor truncating one that was).
fn writable(path: &std::path::Path) -> std::io::Result<()> {
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// `--sweep`: the runs, the table (or JSON array), the plot.
fn run_sweep(args: &Args, config: &LoadConfig, rates: &[f64]) -> Outcome {
    let mut progress = ProgressLine::new(std::io::stderr().is_terminal());
    let steps = sweep::run(config, rates, &mut progress);
    progress.clear();
    let steps = match steps {
        Ok(steps) => steps,
        Err(err) => {
            let why = format!("cannot reach {}: {}", config.endpoint, describe(&err));
            let exit = if interrupt::stopped() {
                Exit::Interrupted
            } else {
                Exit::Unreachable
            };
            return Err(Failure::new(exit, why));
        }
    };
    if let Some(path) = &args.plot {
        if let Err(err) = std::fs::write(path, sweep::svg(config, &steps)) {
            let why = format!("cannot write {}: {}", path.display(), describe(&err));
            return Err(Failure::new(Exit::Io, why));
        }
    }
    let out = if args.json {
        format!("{}\n", sweep::json(&steps))
    } else {
        sweep::human(config, &steps)
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush());
    if steps.iter().any(|s| s.report.interrupted) {
        eprintln!("echoplex bench: interrupted; the table covers the rates measured");
        return Ok(Exit::Interrupted);
    }
    if steps.iter().all(|s| s.report.counters.answered == 0) {
        eprintln!("echoplex bench: nothing echoed from {}", config.endpoint);
        return Ok(Exit::Unreachable);
    }
    // Passing the knee is what a sweep looks for: exit 0.
    Ok(Exit::Ok)
}

/// The churn pre-flight: the machine's limits against the planned run.
fn churn_preflight(config: &LoadConfig, m: u64) -> Result<(), String> {
    churn::raise_nofile();
    let limits = churn::Limits::read();
    let loopback = config
        .endpoint
        .socket_addrs()
        .map(|addrs| addrs.iter().all(|a| a.ip().is_loopback()))
        .unwrap_or(false);
    let plan = churn::Plan {
        connections: config.connections as u64,
        connects_per_sec: config.modes.rate.map(|r| r / m as f64),
        duration: match config.stop {
            Stop::Duration(d) => Some(d + config.warmup),
            Stop::Messages(_) => None,
        },
        tcp: config.endpoint.kind == Kind::Tcp,
        loopback,
    };
    for note in churn::check(&plan, &limits)? {
        eprintln!("echoplex bench: note: {note}");
    }
    Ok(())
}

/// stderr as the progress line's terminal, a few columns narrower than
/// it is: indicatif pads its line to the width, and the terminal's echo of
/// Ctrl-C (`^C`) would then wrap to a new row, so clearing the line at the
/// end cleared that row and left the spinner's on screen.
#[derive(Debug)]
struct Narrow;

impl Narrow {
    fn out(&self, text: &str) -> std::io::Result<()> {
        let mut err = std::io::stderr().lock();
        err.write_all(text.as_bytes())
    }
}

impl indicatif::TermLike for Narrow {
    fn width(&self) -> u16 {
        let cols = crate::sys::term::stderr_columns().unwrap_or(80);
        cols.saturating_sub(4).max(20)
    }

    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.out(&format!("\x1b[{n}A"))
    }

    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.out(&format!("\x1b[{n}B"))
    }

    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.out(&format!("\x1b[{n}C"))
    }

    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.out(&format!("\x1b[{n}D"))
    }

    fn write_line(&self, text: &str) -> std::io::Result<()> {
        self.out(&format!("{text}\n"))
    }

    fn write_str(&self, text: &str) -> std::io::Result<()> {
        self.out(text)
    }

    fn clear_line(&self) -> std::io::Result<()> {
        self.out("\r\x1b[2K")
    }

    fn flush(&self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The once-a-second progress line on stderr, only on a terminal; the
/// interval lines, JSON Lines and histogram log as intervals complete.
struct ProgressLine {
    bar: Option<ProgressBar>,
    last: u64,
    /// `--interval`: a line per interval on stdout.
    lines: bool,
    /// `--json-stream`: an object per interval on stdout.
    json_stream: bool,
    churn: bool,
    /// `--hdr-log`: opened when the window opens.
    hdr_path: Option<PathBuf>,
    hdr: Option<hdrlog::HdrLogWriter>,
    hdr_error: Option<std::io::Error>,
    command: String,
}

impl ProgressLine {
    fn new(enabled: bool) -> Self {
        let bar = enabled.then(|| {
            let bar = ProgressBar::with_draw_target(
                None,
                ProgressDrawTarget::term_like_with_hz(Box::new(Narrow), 20),
            );
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_message("connecting…");
            bar
        });
        ProgressLine {
            bar,
            last: 0,
            lines: false,
            json_stream: false,
            churn: false,
            hdr_path: None,
            hdr: None,
            hdr_error: None,
            command: String::new(),
        }
    }

    fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Observer for ProgressLine {
    fn interrupted(&mut self) -> bool {
        interrupt::stopped()
    }

    fn measuring(&mut self) {
        if let Some(path) = &self.hdr_path {
            match hdrlog::HdrLogWriter::create(path, &self.command, std::time::SystemTime::now()) {
                Ok(log) => self.hdr = Some(log),
                Err(err) => self.hdr_error = Some(err),
            }
        }
    }

    fn interval(&mut self, interval: &intervals::Interval) {
        if let Some(log) = &mut self.hdr {
            if let Err(err) = log.interval(
                interval.offset,
                interval.length,
                &interval.latency,
                interval.service.as_ref(),
            ) {
                self.hdr_error = Some(err);
                self.hdr = None;
            }
        }
        let line = if self.json_stream {
            interval.json().to_string()
        } else if self.lines {
            interval.line(self.churn)
        } else {
            return;
        };
        let print = || {
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
        };
        match &self.bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }

    fn connected(&mut self, connected: u64) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{connected} connected, loading…"));
        }
    }

    fn progress(&mut self, p: &Progress) {
        let Some(bar) = &self.bar else { return };
        let rate = p.completed.saturating_sub(self.last);
        self.last = p.completed;
        bar.set_message(format!(
            "{:>5.1} s{}  {} echoes  {} msgs/s  errors {}  lost {}",
            p.elapsed.as_secs_f64(),
            if p.warming_up { " (warm-up)" } else { "" },
            report::group(p.completed),
            report::group(rate),
            p.errors,
            p.lost
        ));
        bar.tick();
    }
}
