//! `echoplex bench ENDPOINT`: a closed-loop load generator for any echo
//! server, with every echoed byte verified.
//!
//! [`load`] runs the loop (workers in [`stream`] and [`dgram`], the bytes
//! in [`pattern`]); [`report`] and [`plot`] show the result. This file is
//! the command line: options, progress line, exit codes.

pub mod dgram;
pub mod hdrlog;
pub mod load;
pub mod pattern;
pub mod plot;
pub mod report;
pub mod stream;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::endpoint::{Endpoint, Kind, Tool};
pub use load::{run_load, LoadConfig, Observer, Progress, Report, Stop};

/// Exit code: every echo verified, no error.
pub const EXIT_OK: u8 = 0;
/// Exit code: errors (bad or missing echoes, connections lost or refused).
pub const EXIT_ERRORS: u8 = 1;
/// Exit code: bad usage (as for every clap error).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: nothing could connect, or no echo ever came back.
pub const EXIT_NO_CONNECTION: u8 = 3;

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

Exit status:
  0  every echo verified, no error
  1  errors: corrupt, reordered or missing echoes, connections closed or \
refused (some connected)
  2  bad usage
  3  nothing could connect, or no echo ever came back

Examples:
  echoplex bench tcp://127.0.0.1:10000 -c 100 -d 10
  echoplex bench udp://127.0.0.1:10000 -c 8 -s 64 --json
  echoplex bench unix:./echoplex.sock -s 16384 -c 10 --plot latency.svg")]
pub struct Args {
    /// The echo server: tcp://HOST:PORT, udp://HOST:PORT, unix:PATH or unix-dgram:PATH.
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
    /// Seconds to measure (default 5).
    #[arg(short = 'd', long, value_name = "SECS", value_parser = parse_secs,
          conflicts_with = "messages")]
    pub duration: Option<Duration>,
    /// Measure this many messages instead of a duration (datagrams re-sent
    /// after a loss count again).
    #[arg(short = 'n', long = "messages", value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub messages: Option<u64>,
    /// Seconds of load before measuring starts.
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = parse_secs)]
    pub warmup: Duration,
    /// Worker threads, each with its own poll loop and share of the connections.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=256))]
    pub threads: u64,
    /// Seconds after which a datagram is lost, or a silent connection stalled.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_secs)]
    pub timeout: Duration,
    /// Seconds connecting may take.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    pub connect_timeout: Duration,
    /// Print one JSON object instead of the human report.
    #[arg(long)]
    pub json: bool,
    /// Draw the latency percentile distribution into FILE.svg.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
}

fn parse_secs(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("'{text}' is not a duration"))
}

impl Args {
    /// The run these options describe, or why they make no sense.
    pub fn config(&self) -> Result<LoadConfig, String> {
        let size = usize::try_from(self.size).map_err(|_| "size too large".to_string())?;
        self.endpoint.check_tool(Tool::Bench)?;
        if !self.endpoint.kind.is_stream() && size > load::MAX_DATAGRAM {
            return Err(format!(
                "-s {size}: a datagram holds at most {} bytes",
                load::MAX_DATAGRAM
            ));
        }
        if self.timeout.is_zero() {
            return Err("--timeout must be more than 0".into());
        }
        Ok(LoadConfig {
            endpoint: self.endpoint.clone(),
            connections: self.connections as usize,
            size,
            depth: self.depth as usize,
            threads: self.threads.min(self.connections) as usize,
            stop: match (self.messages, self.duration) {
                (Some(n), _) => Stop::Messages(n),
                (None, Some(d)) => Stop::Duration(d),
                (None, None) => Stop::Duration(Duration::from_secs(5)),
            },
            warmup: self.warmup,
            timeout: self.timeout,
            connect_timeout: self.connect_timeout,
        })
    }
}

/// Runs `echoplex bench`; returns the process exit code.
pub fn run(args: Args) -> ExitCode {
    let config = match args.config() {
        Ok(config) => config,
        Err(why) => {
            eprintln!("echoplex bench: {why}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let mut progress = ProgressLine::new(std::io::stderr().is_terminal());
    let report = match run_load(&config, &mut progress) {
        Ok(report) => report,
        Err(err) => {
            progress.clear();
            eprintln!(
                "echoplex bench: cannot reach {}: {}",
                config.endpoint,
                crate::error::describe(&err)
            );
            return ExitCode::from(EXIT_NO_CONNECTION);
        }
    };
    progress.clear();

    if let Some(path) = &args.plot {
        if let Err(err) = std::fs::write(path, plot::svg(&report)) {
            eprintln!(
                "echoplex bench: cannot write {}: {}",
                path.display(),
                crate::error::describe(&err)
            );
        }
    }
    let out = if args.json {
        format!("{}\n", report::json(&report))
    } else {
        report::human(&report)
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush());

    let c = &report.counters;
    if c.lost > 0 && config.endpoint.kind == Kind::Udp {
        // The likeliest cause on loopback is a reply rate limit, such as
        // echoplex's own anti-reflection guard.
        eprintln!(
            "echoplex bench: {} datagrams lost; a server that limits replies per \
             source drops them on purpose (echoplex serve: --udp-rate 0 lifts its limit)",
            c.lost
        );
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
        return ExitCode::from(EXIT_NO_CONNECTION);
    }
    if c.errors > 0 || c.connect_failures > 0 {
        if let Some(why) = &report.first_error {
            eprintln!(
                "echoplex bench: {} errors, {} connect failures; first: {why}",
                c.errors, c.connect_failures
            );
        }
        return ExitCode::from(EXIT_ERRORS);
    }
    ExitCode::from(EXIT_OK)
}

/// The once-a-second progress line on stderr, only on a terminal.
struct ProgressLine {
    bar: Option<ProgressBar>,
    last: u64,
}

impl ProgressLine {
    fn new(enabled: bool) -> Self {
        let bar = enabled.then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_message("connecting…");
            bar
        });
        ProgressLine { bar, last: 0 }
    }

    fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Observer for ProgressLine {
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
