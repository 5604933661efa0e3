//! `echoplex ping`: ping(8) over an echo service (tcp, udp, unix, unix-dgram).
//!
//! Probes go out every `-i` seconds whether or not the last one came back,
//! as ping(8) sends them. Each is a marker followed by the verified
//! payload every client tool uses (`probe::payload`: the sequence number
//! mixed with a per-run nonce, then a pattern), so a reply is matched by
//! what it says, never by arrival order: a reply later than `-W` is reported as
//! late (it was already counted lost), not mistaken for the next one. On a
//! stream, probes are cut back out of the byte stream by length, and bytes
//! that are not a probe of ours are skipped up to the next probe start.

mod http;

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::client::say;
use crate::endpoint::{Endpoint, Tool};
use crate::error::Failure;
use crate::error::{self, Exit, Outcome};
use crate::probe::duration::{positive_secs, show as secs};
use crate::probe::interrupt;
use crate::probe::payload::{nonce, Pattern, SEQ_BYTES};
use crate::probe::socket::BoundedConn;
use crate::probe::{DATAGRAM_BUFFER, MAX_UDP_PAYLOAD};

/// Marks the start of a probe: what resync looks for on a stream, where
/// foreign bytes may come first (bench needs none: its streams carry only
/// its own messages, in order).
const MAGIC: [u8; 4] = *b"EPNG";

/// Smallest probe: the marker and the payload's sequence header.
const HEADER: usize = MAGIC.len() + SEQ_BYTES;

/// Command-line arguments of `echoplex ping`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Exit status:
  0  at least one reply came
  1  no reply came (connected, or sent on a datagram kind)
  2  usage error
  3  could not connect (stream kinds: refused, no such socket, no route, timed out)")]
pub struct Args {
    /// Endpoint to ping: tcp://HOST:PORT, udp://HOST:PORT, unix:PATH, unix-dgram:PATH,
    /// http://HOST:PORT[/PATH] (a GET per probe) or ws://HOST:PORT[/PATH] (ping frames).
    #[arg(value_name = "ENDPOINT")]
    pub endpoint: Endpoint,
    /// Stop after sending this many probes (default: until Ctrl-C).
    #[arg(short = 'c', long = "count", value_name = "COUNT",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Seconds between probes (fractions allowed).
    #[arg(short = 'i', long = "interval", value_name = "SECS", default_value = "1",
          value_parser = positive_secs)]
    pub interval: Duration,
    /// Seconds to wait for each reply; a later one is reported late and counted lost.
    #[arg(short = 'W', long = "timeout", value_name = "SECS", default_value = "2",
          value_parser = positive_secs)]
    pub timeout: Duration,
    /// Probe size in bytes (at least 12: a marker, then the sequence number
    /// mixed with a per-run nonce; the rest is a pattern).
    #[arg(short = 's', long = "size", value_name = "BYTES", default_value_t = 56,
          value_parser = clap::value_parser!(u32).range(HEADER as i64..=MAX_UDP_PAYLOAD as i64))]
    pub size: u32,
    /// Print only the first line and the summary.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// tls://: how the server is verified.
    #[command(flatten)]
    pub tls: crate::probe::tls::TlsArgs,
}

/// Runs `echoplex ping`; returns the process exit code.
pub fn run(args: Args) -> Outcome {
    let endpoint = &args.endpoint;
    endpoint
        .check_tool(Tool::Ping)
        .map_err(error::Failure::usage)?;
    if let Err(failure) = interrupt::stop_on(&[signal_hook::consts::SIGINT], false) {
        return Err(error::Failure::usage(failure.message));
    }
    if endpoint.kind.info().answer == crate::endpoint::ServerAnswer::HttpEcho {
        return http::run(&args);
    }
    say(format_args!("PING {endpoint}: {} data bytes", args.size));
    let started = Instant::now();
    let tls = args
        .tls
        .client(endpoint, false)
        .map_err(|failure| error::Failure::usage(failure.message))?;
    let conn = match BoundedConn::connect(endpoint, args.timeout, tls.as_ref()) {
        Ok(conn) => conn,
        Err(failure) if failure.exit == Exit::Interrupted => return Ok(Exit::Failed),
        // The contract's table: a stream that cannot be connected is
        // unreachable (3), whatever the reason; a datagram socket that
        // cannot even be set up stays 1 (nothing was sent).
        Err(failure) if endpoint.kind.is_stream() => {
            return Err(Failure::new(Exit::Unreachable, failure.message))
        }
        Err(failure) => return Err(error::Failure::failed(failure.message)),
    };
    if conn.is_stream() && !args.quiet {
        let ms = started.elapsed().as_secs_f64() * 1e3;
        match conn.sock().negotiated() {
            Some(tls) => say(format_args!(
                "connected to {endpoint}: time={ms:.3} ms ({tls})"
            )),
            None => say(format_args!("connected to {endpoint}: time={ms:.3} ms")),
        }
    }
    let mut pinger = Pinger::new(&args, conn);
    if let Err(failure) = pinger.run() {
        eprintln!("echoplex: {failure}");
    }
    pinger.summary();
    Ok(if pinger.stats.received > 0 {
        Exit::Ok
    } else {
        Exit::Failed
    })
}

/// Builds and checks probes of one run: the marker, then message `seq`
/// of the run's [`Pattern`].
#[derive(Debug, Clone)]
struct Probe {
    pattern: Pattern,
}

impl Probe {
    fn new(size: usize, nonce: u64) -> Probe {
        Probe {
            pattern: Pattern::new(size - MAGIC.len(), nonce),
        }
    }

    /// Bytes per probe.
    fn size(&self) -> usize {
        MAGIC.len() + self.pattern.size()
    }

    fn build(&self, seq: u64) -> Vec<u8> {
        let mut frame = Vec::with_capacity(self.size());
        frame.extend_from_slice(&MAGIC);
        self.pattern.write(seq, &mut frame);
        frame
    }

    /// The sequence number of a probe of ours that came back intact.
    fn check(&self, frame: &[u8]) -> Option<u64> {
        let payload = frame.strip_prefix(&MAGIC)?;
        let seq = self.pattern.seq_of(payload)?;
        (frame.len() == self.size() && self.pattern.check(seq, 0, payload)).then_some(seq)
    }
}

/// What a stream yields next.
#[derive(Debug, PartialEq, Eq)]
enum Piece {
    /// An intact probe: its sequence number.
    Probe(u64),
    /// Bytes that are not a probe of ours, dropped to find the next one.
    Skipped(usize),
}

/// Cuts probes back out of a byte stream.
#[derive(Debug, Default)]
struct Reassembly {
    buf: Vec<u8>,
}

impl Reassembly {
    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next probe or skipped run, or `None` until more bytes come.
    fn next(&mut self, probe: &Probe) -> Option<Piece> {
        let start = MAGIC;
        let size = probe.size();
        let found = self.buf.windows(start.len()).position(|w| w == start);
        let skip = match found {
            Some(0) if self.buf.len() < size => return None,
            Some(0) => match probe.check(&self.buf[..size]) {
                Some(seq) => {
                    self.buf.drain(..size);
                    return Some(Piece::Probe(seq));
                }
                // A damaged probe: step past its start and look again.
                None => 1,
            },
            Some(at) => at,
            // Keep a tail that may be the beginning of a probe start.
            None => self.buf.len().saturating_sub(start.len() - 1),
        };
        if skip == 0 {
            return None;
        }
        self.buf.drain(..skip);
        Some(Piece::Skipped(skip))
    }
}

/// What became of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Waiting,
    Replied,
    Lost,
}

/// Counters for the summary, in ping's terms.
#[derive(Debug, Default)]
struct Stats {
    transmitted: u64,
    received: u64,
    min_ms: f64,
    max_ms: f64,
    sum_ms: f64,
    sum_sq_ms: f64,
}

impl Stats {
    fn record(&mut self, ms: f64) {
        if self.received == 0 || ms < self.min_ms {
            self.min_ms = ms;
        }
        if ms > self.max_ms {
            self.max_ms = ms;
        }
        self.received += 1;
        self.sum_ms += ms;
        self.sum_sq_ms += ms * ms;
    }

    /// `N packets transmitted, M received, X% packet loss, time Tms`.
    fn counts_line(&self, elapsed: Duration) -> String {
        let lost = self.transmitted.saturating_sub(self.received);
        let loss = if self.transmitted == 0 {
            0.0
        } else {
            lost as f64 * 100.0 / self.transmitted as f64
        };
        format!(
            "{} packets transmitted, {} received, {}% packet loss, time {}ms",
            self.transmitted,
            self.received,
            format_g(loss),
            (elapsed.as_secs_f64() * 1e3).round() as u64
        )
    }

    /// `rtt min/avg/max/mdev = ...`; mdev is the population standard
    /// deviation, as ping computes it. `None` when nothing came back.
    fn rtt_line(&self) -> Option<String> {
        if self.received == 0 {
            return None;
        }
        let n = self.received as f64;
        let avg = self.sum_ms / n;
        let mdev = (self.sum_sq_ms / n - avg * avg).max(0.0).sqrt();
        Some(format!(
            "rtt min/avg/max/mdev = {:.3}/{avg:.3}/{:.3}/{mdev:.3} ms",
            self.min_ms, self.max_ms
        ))
    }
}

/// C's `%g`, as ping prints its loss: six significant digits, no trailing zeros.
fn format_g(value: f64) -> String {
    if value == 0.0 {
        return "0".into();
    }
    let digits = 6 - 1 - value.abs().log10().floor() as i32;
    let text = format!("{value:.*}", digits.max(0) as usize);
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// One ping run over a connected endpoint.
struct Pinger {
    conn: BoundedConn,
    probe: Probe,
    count: Option<u64>,
    interval: Duration,
    timeout: Duration,
    quiet: bool,
    name: String,
    start: Instant,
    /// `status[seq - 1]`, and when it was sent.
    status: Vec<(Status, Instant)>,
    /// Probes in send order with their send time; the front is the next to expire.
    waiting: VecDeque<(u64, Instant)>,
    stream: Reassembly,
    stats: Stats,
}

impl Pinger {
    fn new(args: &Args, conn: BoundedConn) -> Pinger {
        Pinger {
            probe: Probe::new(args.size as usize, nonce()),
            count: args.count,
            interval: args.interval,
            timeout: args.timeout,
            quiet: args.quiet,
            name: conn.name().to_string(),
            conn,
            start: Instant::now(),
            status: Vec::new(),
            waiting: VecDeque::new(),
            stream: Reassembly::default(),
            stats: Stats::default(),
        }
    }

    fn line(&self, line: fmt::Arguments) {
        if !self.quiet {
            say(line);
        }
    }

    /// Sends on schedule and takes replies until the count is done and
    /// every probe is answered or expired, or Ctrl-C. An error that ends the
    /// run early (a broken stream) is returned for one stderr line.
    fn run(&mut self) -> Result<(), Failure> {
        let mut buf = vec![0u8; DATAGRAM_BUFFER];
        let mut next_send = Instant::now();
        while !interrupt::stopped() {
            let now = Instant::now();
            self.expire(now);
            let more = self
                .count
                .is_none_or(|count| self.stats.transmitted < count);
            if !more && self.waiting.is_empty() {
                break;
            }
            if more && now >= next_send {
                self.send_next()?;
                // After a stall, go on from now rather than bursting to catch up.
                next_send = (next_send + self.interval).max(now);
                continue;
            }
            let expiry = self.waiting.front().map(|&(_, sent)| sent + self.timeout);
            let deadline = match (more, expiry) {
                (true, Some(expiry)) => expiry.min(next_send),
                (true, None) => next_send,
                (false, Some(expiry)) => expiry,
                (false, None) => now,
            };
            match self.conn.recv_until(&mut buf, deadline) {
                Ok(Some(n)) => self.take(&buf[..n]),
                Ok(None) => {}
                Err(failure) if failure.exit == Exit::Interrupted => {}
                // ICMP port unreachable: lost probes will expire and say so.
                Err(failure) if failure.exit == Exit::Unreachable && !self.conn.is_stream() => {
                    let why = failure.message;
                    self.line(format_args!("{why}"));
                }
                Err(failure) => return Err(failure),
            }
        }
        Ok(())
    }

    fn send_next(&mut self) -> Result<(), Failure> {
        let seq = self.stats.transmitted + 1;
        let now = Instant::now();
        let frame = self.probe.build(seq);
        self.stats.transmitted = seq;
        self.status.push((Status::Waiting, now));
        self.waiting.push_back((seq, now));
        match self.conn.send(&frame) {
            Err(failure) if failure.exit == Exit::Unreachable && !self.conn.is_stream() => {
                let why = failure.message;
                self.line(format_args!("{why}"));
                Ok(())
            }
            other => other,
        }
    }

    /// Reports probes whose `-W` ran out; forgets answered ones at the front.
    fn expire(&mut self, now: Instant) {
        while let Some(&(seq, sent)) = self.waiting.front() {
            let index = (seq - 1) as usize;
            if self.status[index].0 == Status::Waiting {
                if now < sent + self.timeout {
                    break;
                }
                self.status[index].0 = Status::Lost;
                let within = secs(self.timeout);
                self.line(format_args!("no reply for seq={seq} within {within}"));
            }
            self.waiting.pop_front();
        }
    }

    /// Handles received bytes: one datagram, or more of the stream.
    fn take(&mut self, bytes: &[u8]) {
        if !self.conn.is_stream() {
            match self.probe.check(bytes) {
                Some(seq) => self.reply(seq),
                None => self.line(format_args!(
                    "{} bytes from {}: not a probe of ours, ignored",
                    bytes.len(),
                    self.name
                )),
            }
            return;
        }
        self.stream.push(bytes);
        let mut skipped = 0;
        while let Some(piece) = self.stream.next(&self.probe) {
            match piece {
                Piece::Probe(seq) => self.reply(seq),
                Piece::Skipped(n) => skipped += n,
            }
        }
        if skipped > 0 {
            self.line(format_args!(
                "skipped {skipped} bytes from {} that are not a probe of ours",
                self.name
            ));
        }
    }

    /// Matches an intact probe to what was sent, by its sequence number.
    fn reply(&mut self, seq: u64) {
        let (size, name) = (self.probe.size(), &self.name);
        let status = seq
            .checked_sub(1)
            .and_then(|index| self.status.get(index as usize).copied());
        let ms = status.map_or(0.0, |(_, sent)| sent.elapsed().as_secs_f64() * 1e3);
        match status.map(|(status, _)| status) {
            Some(Status::Waiting) => {
                self.line(format_args!(
                    "{size} bytes from {name}: seq={seq} time={ms:.3} ms"
                ));
                // Some(_) above means seq >= 1.
                self.status[(seq - 1) as usize].0 = Status::Replied;
                self.stats.record(ms);
            }
            Some(Status::Lost) => self.line(format_args!(
                "late reply from {name}: seq={seq} time={ms:.3} ms (already counted lost)"
            )),
            Some(Status::Replied) => self.line(format_args!(
                "{size} bytes from {name}: seq={seq} time={ms:.3} ms (DUP!)"
            )),
            None => self.line(format_args!(
                "reply from {name} for seq={seq}, never sent: ignored"
            )),
        }
    }

    /// ping's closing lines.
    fn summary(&self) {
        say(format_args!("\n--- {} ping statistics ---", self.name));
        say(format_args!(
            "{}",
            self.stats.counts_line(self.start.elapsed())
        ));
        if let Some(rtt) = self.stats.rtt_line() {
            say(format_args!("{rtt}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe() -> Probe {
        Probe::new(40, 0xdead_beef)
    }

    #[test]
    fn a_probe_checks_out_and_a_damaged_one_does_not() {
        let probe = probe();
        let frame = probe.build(7);
        assert_eq!(frame.len(), 40);
        assert_eq!(probe.check(&frame), Some(7));
        let mut bad = frame.clone();
        bad[30] ^= 1;
        assert_eq!(probe.check(&bad), None);
        let other = Probe::new(40, 1);
        assert_eq!(other.check(&frame), None);
    }

    #[test]
    fn the_stream_resyncs_after_garbage_and_split_reads() {
        let probe = &probe();
        let mut stream = Reassembly::default();
        let one = probe.build(1);
        let two = probe.build(2);
        stream.push(b"junk!");
        stream.push(&one[..10]);
        assert_eq!(stream.next(probe), Some(Piece::Skipped(5)));
        assert_eq!(stream.next(probe), None);
        stream.push(&one[10..]);
        let mut damaged = two.clone();
        damaged[39] ^= 0xff;
        stream.push(&damaged);
        stream.push(&two);
        assert_eq!(stream.next(probe), Some(Piece::Probe(1)));
        // The damaged copy is stepped over byte by byte, up to the next start.
        let mut skipped = 0;
        let found = loop {
            match stream.next(probe) {
                Some(Piece::Skipped(n)) => skipped += n,
                other => break other,
            }
        };
        assert_eq!(found, Some(Piece::Probe(2)));
        assert_eq!(skipped, 40);
        assert_eq!(stream.next(probe), None);
    }

    #[test]
    fn summary_lines_read_like_ping() {
        let mut stats = Stats {
            transmitted: 3,
            ..Stats::default()
        };
        for ms in [1.0, 2.0, 3.0] {
            stats.record(ms);
        }
        assert_eq!(
            stats.counts_line(Duration::from_millis(2002)),
            "3 packets transmitted, 3 received, 0% packet loss, time 2002ms"
        );
        assert_eq!(
            stats.rtt_line().as_deref(),
            Some("rtt min/avg/max/mdev = 1.000/2.000/3.000/0.816 ms")
        );
        let none = Stats {
            transmitted: 2,
            ..Stats::default()
        };
        assert!(none
            .counts_line(Duration::ZERO)
            .contains("100% packet loss"));
        assert_eq!(none.rtt_line(), None);
    }

    #[test]
    fn loss_is_printed_as_c_prints_percent_g() {
        assert_eq!(format_g(0.0), "0");
        assert_eq!(format_g(100.0), "100");
        assert_eq!(format_g(50.0), "50");
        assert_eq!(format_g(200.0 / 3.0), "66.6667");
        assert_eq!(format_g(100.0 / 3.0), "33.3333");
        assert_eq!(format_g(12.5), "12.5");
    }
}
