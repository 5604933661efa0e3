//! tcp://, unix:, udp:// and unix-dgram: clients: send the message, read
//! the echo back (a stream in `--chunk` pieces, a datagram whole), compare.
//!
//! A stream's message is sent as it is read while the echo is read and
//! checked, so a file of any size goes through in bounded memory: the
//! input is read only while less than [`WINDOW`] bytes wait for their
//! echo. A datagram's message is read whole first, at most one datagram
//! and one byte of it, and refused before sending if it is too long.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use super::input::Input;
use super::{compare, preview, quote, Args, Out, SHOWN};
use crate::endpoint::Kind;
use crate::probe::duration::show;
use crate::probe::interrupt::{interrupted, stopped};
use crate::probe::payload::Mismatch;
use crate::probe::socket::BoundedConn;
use crate::probe::{Exit, Failure, DATAGRAM_BUFFER, MAX_UDP_PAYLOAD};

/// Most bytes sent whose echo has not come back yet; past it the input
/// waits. Bounds memory whatever the file, and keeps far ahead of any
/// server's buffers.
const WINDOW: usize = 4 << 20;

/// Longest single `poll`, so Ctrl-C is seen promptly.
const SLICE: Duration = Duration::from_millis(100);

/// Runs one echo exchange.
pub(super) fn run(
    args: &Args,
    mut input: Input,
    timeout: Duration,
    out: &Out,
) -> Result<(), Failure> {
    if !args.endpoint.kind.is_stream() {
        // Refused before anything is sent, having read at most one byte
        // more than fits.
        let limit = datagram_limit(args.endpoint.kind);
        let message = input.read_datagram(limit, args.endpoint.kind.scheme())?;
        return datagram(args, &message, timeout, out);
    }
    // The first block before connecting: a file that cannot be read, or a
    // Ctrl-C at a terminal, ends the run before the server sees anything.
    let mut unsent = Vec::new();
    input.read_into(&mut unsent)?;
    out.say(format_args!("connecting to {}", args.endpoint));
    let tls = args.tls.client(&args.endpoint, false)?;
    let conn = BoundedConn::connect(&args.endpoint, timeout, tls.as_ref())?;
    if let Some(negotiated) = conn.sock().negotiated() {
        out.say(format_args!("TLS established: {negotiated}"));
    }
    if input.at_end() {
        out.say(format_args!("sending {}", preview(&unsent)));
    } else {
        let start = &unsent[..unsent.len().min(SHOWN)];
        out.say(format_args!(
            "sending {}... (more as it is read)",
            quote(start)
        ));
    }
    Stream::new(&conn, args.chunk as usize, out).run(&mut input, unsent)?;
    out.say(format_args!("closing socket"));
    Ok(())
}

/// The longest message one datagram of `kind` carries.
fn datagram_limit(kind: Kind) -> usize {
    if kind.is_path() {
        // What the client's receive buffer can tell apart from a longer echo.
        DATAGRAM_BUFFER - 1
    } else {
        MAX_UDP_PAYLOAD
    }
}

fn datagram(args: &Args, message: &[u8], timeout: Duration, out: &Out) -> Result<(), Failure> {
    out.say(format_args!("connecting to {}", args.endpoint));
    let conn = BoundedConn::connect(&args.endpoint, timeout, None)?;
    out.say(format_args!("sending {}", preview(message)));
    conn.send(message)?;
    let mut buf = vec![0u8; DATAGRAM_BUFFER];
    let n = conn.recv(&mut buf)?;
    buf.truncate(n);
    out.say(format_args!("received {}", preview(&buf)));
    out.payload(&buf);
    out.say(format_args!("closing socket"));
    compare(message, &buf)
}

/// One stream exchange in progress.
struct Stream<'a> {
    conn: &'a BoundedConn,
    out: &'a Out,
    /// Sent, echo not yet back: what the next echoed bytes must be.
    unechoed: VecDeque<u8>,
    sent: usize,
    echoed: usize,
    /// Echoed bytes past the first [`SHOWN`], counted instead of printed.
    not_shown: usize,
    buf: Vec<u8>,
    /// When the server last took or gave bytes: every wait on it is
    /// bounded by the timeout from there.
    last_progress: Instant,
}

impl<'a> Stream<'a> {
    fn new(conn: &'a BoundedConn, chunk: usize, out: &'a Out) -> Self {
        Stream {
            conn,
            out,
            unechoed: VecDeque::new(),
            sent: 0,
            echoed: 0,
            not_shown: 0,
            buf: vec![0u8; chunk.max(1)],
            last_progress: Instant::now(),
        }
    }

    fn run(mut self, input: &mut Input, mut unsent: Vec<u8>) -> Result<(), Failure> {
        let mut offset = 0;
        loop {
            if stopped() {
                return Err(interrupted());
            }
            let mut progress = false;
            // tls://: records the socket did not take yet go first.
            self.conn
                .sock()
                .flush_tls()
                .map_err(|err| self.conn.failure(&err))?;
            if offset < unsent.len() {
                let n = self.send(&unsent[offset..])?;
                offset += n;
                progress |= n > 0;
            }
            if !self.unechoed.is_empty() {
                progress |= self.receive()?;
            }
            if offset == unsent.len() {
                unsent.clear();
                offset = 0;
            }
            let wants_input = unsent.is_empty() && !input.at_end() && self.unechoed.len() < WINDOW;
            if unsent.is_empty() && input.at_end() && self.unechoed.is_empty() {
                break;
            }
            if progress {
                self.last_progress = Instant::now();
                continue;
            }
            let mut events = 0;
            if !unsent.is_empty() || self.conn.sock().wants_write() {
                events |= libc::POLLOUT;
            }
            if !self.unechoed.is_empty() {
                events |= libc::POLLIN;
            }
            let input_fd = input.fd().filter(|_| wants_input);
            if wants_input && input_fd.is_none() {
                input.read_into(&mut unsent)?;
                continue;
            }
            // POLLRDHUP: a server that ends the connection while we wait
            // for input is noticed now, not at the next write.
            let (revents, input_ready) = poll2(
                self.conn.sock().as_raw_fd(),
                events | libc::POLLRDHUP,
                input_fd,
            )?;
            if events == 0 && revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0 {
                return Err(self.hung_up());
            }
            if input_ready {
                if events == 0 {
                    // Nothing was owed: the server's clock starts now.
                    self.last_progress = Instant::now();
                }
                input.read_into(&mut unsent)?;
                if unsent.is_empty() && !input.at_end() {
                    continue;
                }
            }
            if events != 0 && self.last_progress.elapsed() >= self.conn.timeout() {
                return Err(self.timed_out(!unsent.is_empty()));
            }
        }
        self.out.payload_end();
        if self.not_shown > 0 {
            self.out.say(format_args!(
                "received {} bytes more, all as sent (-q prints the echo)",
                self.not_shown
            ));
        }
        Ok(())
    }

    /// Sends what the socket takes of `data`; the sent bytes then wait
    /// for their echo.
    fn send(&mut self, data: &[u8]) -> Result<usize, Failure> {
        match self.conn.sock().send(data) {
            Ok(n) => {
                self.unechoed.extend(&data[..n]);
                self.sent += n;
                Ok(n)
            }
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) =>
            {
                Ok(0)
            }
            Err(err) => Err(self.conn.failure(&err)),
        }
    }

    /// Reads one piece of echo, if there is one, and checks it against
    /// what was sent.
    fn receive(&mut self) -> Result<bool, Failure> {
        let want = self.buf.len().min(self.unechoed.len());
        let (echoed, sent) = (self.echoed, self.sent);
        let received =
            self.conn
                .try_recv(&mut self.buf[..want])
                .map_err(|failure| match failure {
                    failure if failure.exit == Exit::Io => Failure::new(
                        Exit::Io,
                        format!("{} after {echoed} of {sent} bytes", failure.message),
                    ),
                    other => other,
                })?;
        let Some(n) = received else {
            return Ok(false);
        };
        let piece = &self.buf[..n];
        if self.echoed < SHOWN {
            self.out.say(format_args!("received {}", quote(piece)));
        } else {
            self.not_shown += n;
        }
        self.out.payload_part(piece);
        let differs = self
            .unechoed
            .iter()
            .zip(piece)
            .position(|(sent, got)| sent != got);
        if let Some(at) = differs {
            let mismatch = Mismatch {
                at: self.echoed + at,
                expected: self.unechoed.get(at).copied(),
                got: Some(piece[at]),
                sent: self.sent,
                received: self.echoed + n,
                header: 0,
            };
            self.out.payload_end();
            return Err(Failure::failed(mismatch.describe("echo")));
        }
        self.unechoed.drain(..n);
        self.echoed += n;
        Ok(true)
    }

    /// The failure of a connection the server ended while nothing was
    /// owed: its error, or "closed by peer", or bytes it was never sent.
    fn hung_up(&self) -> Failure {
        let mut byte = [0u8; 1];
        let sent = self.sent;
        match self.conn.try_recv(&mut byte) {
            Err(failure) => Failure::new(
                failure.exit,
                format!("{} after {sent} bytes were echoed", failure.message),
            ),
            Ok(Some(_)) => Failure::failed(format!(
                "{}: more echo than the {sent} bytes sent",
                self.conn.name()
            )),
            Ok(None) => Failure::new(
                Exit::Io,
                format!("{}: connection lost after {sent} bytes", self.conn.name()),
            ),
        }
    }

    fn timed_out(&self, sending: bool) -> Failure {
        let (name, within) = (self.conn.name(), show(self.conn.timeout()));
        let (sent, got) = (self.sent, self.echoed);
        Failure::new(
            Exit::Timeout,
            if sending {
                format!(
                    "{name}: could not send within {within} (sent {sent} bytes, got {got} back)"
                )
            } else if got > 0 {
                format!("no reply from {name} within {within} (got {got} of {sent} bytes)")
            } else {
                format!("no reply from {name} within {within}")
            },
        )
    }
}

/// Waits up to [`SLICE`] for the socket (`events`) or the input (readable);
/// returns the socket's ready events and whether the input is ready.
fn poll2(
    sock: RawFd,
    events: libc::c_short,
    input: Option<RawFd>,
) -> Result<(libc::c_short, bool), Failure> {
    let mut fds = [
        libc::pollfd {
            fd: sock,
            events,
            revents: 0,
        },
        libc::pollfd {
            // A negative descriptor is skipped by poll(2).
            fd: input.unwrap_or(-1),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let ms = SLICE.as_millis() as libc::c_int;
    if let Err(err) = crate::sys::socket::poll(&mut fds, ms) {
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(Failure::new(
                Exit::Io,
                format!("poll: {}", crate::error::describe(&err)),
            ));
        }
        return Ok((0, false));
    }
    Ok((fds[0].revents, input.is_some() && fds[1].revents != 0))
}
