//! What `client` and `ping` share: connecting to an endpoint, sending and
//! receiving with bounded waits, Ctrl-C, and the failure classes behind the
//! exit codes.
//!
//! Every socket is non-blocking and every wait is a `poll(2)` with a
//! deadline, so no call can hang: the article's `setblocking(0)` plus
//! `select`, on one descriptor.

use std::fmt;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket, Type};

use crate::endpoint::{Endpoint, Kind, Target};
use crate::error::describe;
use crate::sock::{self, SocketFile};

/// Why a client or ping run failed; each class has its own exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The echo differed from what was sent.
    Mismatch(String),
    /// Bad input the parser could not catch (a value, a group, a kind).
    Usage(String),
    /// Refused, no such socket, unreachable, name not resolved.
    Unreachable(String),
    /// A wait ran out.
    Timeout(String),
    /// The connection broke or another I/O error happened.
    Io(String),
    /// Ctrl-C (or SIGTERM) arrived.
    Interrupted,
}

/// Exit codes of `echoplex client`, as documented in its `--help`.
pub mod exit {
    /// The echo matched (multicast: at least one ack).
    pub const OK: u8 = 0;
    /// The echo differed from what was sent.
    pub const MISMATCH: u8 = 1;
    /// Usage error (also clap's code for bad options).
    pub const USAGE: u8 = 2;
    /// Could not reach the endpoint.
    pub const UNREACHABLE: u8 = 3;
    /// A wait timed out.
    pub const TIMEOUT: u8 = 4;
    /// Connection lost or another I/O error.
    pub const IO: u8 = 5;
    /// Interrupted by a signal (128 + SIGINT, as shells report it).
    pub const INTERRUPTED: u8 = 130;
}

impl Failure {
    /// The `client` exit code of this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Mismatch(_) => exit::MISMATCH,
            Failure::Usage(_) => exit::USAGE,
            Failure::Unreachable(_) => exit::UNREACHABLE,
            Failure::Timeout(_) => exit::TIMEOUT,
            Failure::Io(_) => exit::IO,
            Failure::Interrupted => exit::INTERRUPTED,
        }
    }

    /// Puts `prefix` before the reason.
    fn context(self, prefix: &str) -> Failure {
        let with = |why: String| format!("{prefix}: {why}");
        match self {
            Failure::Mismatch(why) => Failure::Mismatch(with(why)),
            Failure::Usage(why) => Failure::Usage(with(why)),
            Failure::Unreachable(why) => Failure::Unreachable(with(why)),
            Failure::Timeout(why) => Failure::Timeout(with(why)),
            Failure::Io(why) => Failure::Io(with(why)),
            Failure::Interrupted => Failure::Interrupted,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Mismatch(text)
            | Failure::Usage(text)
            | Failure::Unreachable(text)
            | Failure::Timeout(text)
            | Failure::Io(text) => f.write_str(text),
            Failure::Interrupted => f.write_str("interrupted"),
        }
    }
}

/// Classifies an I/O error met while talking to a peer (after connecting):
/// ICMP errors surface on datagram sockets as refused or unreachable.
fn classify(err: &io::Error, context: &str) -> Failure {
    let text = format!("{context}: {}", describe(err));
    match err.raw_os_error() {
        Some(
            libc::ECONNREFUSED
            | libc::ENOENT
            | libc::EHOSTUNREACH
            | libc::ENETUNREACH
            | libc::EHOSTDOWN
            | libc::ENETDOWN,
        ) => Failure::Unreachable(text),
        Some(libc::ETIMEDOUT) => Failure::Timeout(text),
        _ => Failure::Io(text),
    }
}

/// Seconds for people: `0.2 s`, `5 s`.
pub fn secs(duration: Duration) -> String {
    format!("{} s", duration.as_secs_f64())
}

/// Parses a positive number of seconds (fractions allowed), for clap.
pub fn parse_secs(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    if secs.is_nan() || secs <= 0.0 {
        return Err(format!("'{text}' must be more than 0 seconds"));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("'{text}' is too long"))
}

fn stop_flag() -> &'static Arc<AtomicBool> {
    static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    STOP.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Makes `signals` set the stop flag instead of killing the process, so a
/// run ends through its normal path: ping prints its summary, a client
/// removes its temporary socket file.
pub fn stop_on(signals: &[libc::c_int]) -> Result<(), Failure> {
    for &signal in signals {
        signal_hook::flag::register(signal, Arc::clone(stop_flag())).map_err(|err| {
            Failure::Io(format!("cannot handle signal {signal}: {}", describe(&err)))
        })?;
    }
    Ok(())
}

/// True once a signal registered with [`stop_on`] arrived.
pub fn stopped() -> bool {
    stop_flag().load(Ordering::Relaxed)
}

/// Longest single `poll`: a signal landing just before `poll` starts is
/// noticed at the next slice instead of at the deadline.
const SLICE: Duration = Duration::from_millis(100);

/// Waits until `fd` is ready for `events` (`POLLIN`, `POLLOUT`). `Ok(false)`
/// when `deadline` passed first.
pub fn wait(fd: RawFd, events: libc::c_short, deadline: Instant) -> Result<bool, Failure> {
    loop {
        if stopped() {
            return Err(Failure::Interrupted);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        // Round up, so a sub-millisecond remainder does not spin.
        let ms = left.min(SLICE).as_micros().div_ceil(1000) as libc::c_int;
        let mut pollfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd, for the duration of the call.
        let ready = unsafe { libc::poll(&mut pollfd, 1, ms) };
        if ready > 0 {
            return Ok(true);
        }
        if ready < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(Failure::Io(format!("poll: {}", describe(&err))));
            }
        }
    }
}

/// Resolves a network endpoint, IPv4 addresses first: the article's clients
/// are AF_INET, and `localhost` should reach a daemon on 127.0.0.1.
fn resolve(endpoint: &Endpoint) -> Result<Vec<SocketAddr>, Failure> {
    let mut addrs = endpoint
        .socket_addrs()
        .map_err(|err| Failure::Unreachable(describe(&err)))?;
    addrs.sort_by_key(SocketAddr::is_ipv6);
    Ok(addrs)
}

/// The IPv4 address of a `multicast://` endpoint's group.
pub fn multicast_group(endpoint: &Endpoint) -> Result<SocketAddr, Failure> {
    let group = resolve(endpoint)
        .map_err(|failure| failure.context(&endpoint.to_string()))?
        .into_iter()
        .find(|addr| addr.ip().is_multicast() && addr.is_ipv4());
    group.ok_or_else(|| {
        Failure::Usage(format!(
            "{endpoint}: not an IPv4 multicast group (224.0.0.0/4)"
        ))
    })
}

/// A fresh path for a client's own Unix datagram socket.
fn temp_socket_path() -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "echoplex-client-{}-{}.sock",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A connected client socket for any endpoint kind but multicast.
#[derive(Debug)]
pub struct Conn {
    socket: Socket,
    stream: bool,
    /// The endpoint as written, for messages.
    name: String,
    /// How long any one wait may take.
    timeout: Duration,
    /// Removes a unix-dgram client's own socket file when dropped.
    _local: Option<SocketFile>,
}

impl Conn {
    /// Connects to `endpoint`, trying each resolved address in turn; every
    /// wait is bounded by `timeout`.
    pub fn connect(endpoint: &Endpoint, timeout: Duration) -> Result<Conn, Failure> {
        let name = endpoint.to_string();
        if endpoint.kind == Kind::Multicast {
            return Err(Failure::Usage(format!(
                "{name}: multicast is not a connected endpoint"
            )));
        }
        let stream = endpoint.kind.is_stream();
        let ty = if stream { Type::STREAM } else { Type::DGRAM };
        let (socket, local) = open_endpoint(endpoint, ty, timeout)
            .map_err(|failure| failure.context(&format!("cannot connect to {name}")))?;
        Ok(Conn {
            socket,
            stream,
            name,
            timeout,
            _local: local,
        })
    }

    /// True for byte-stream endpoints (tcp, unix, binary).
    pub fn is_stream(&self) -> bool {
        self.stream
    }

    /// The endpoint as written.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends all of `data` (stream) or `data` as one datagram.
    pub fn send(&self, data: &[u8]) -> Result<(), Failure> {
        let mut sent = 0;
        loop {
            match self.socket.send(&data[sent..]) {
                Ok(n) => {
                    sent += n;
                    if !self.stream || sent == data.len() {
                        return Ok(());
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    let deadline = Instant::now() + self.timeout;
                    if !wait(self.socket.as_raw_fd(), libc::POLLOUT, deadline)? {
                        return Err(Failure::Timeout(format!(
                            "{}: could not send within {}",
                            self.name,
                            secs(self.timeout)
                        )));
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(classify(&err, &self.name)),
            }
        }
    }

    /// Receives what is there (stream) or one datagram, waiting at most the
    /// timeout. A stream closed by the peer is an error.
    pub fn recv(&self, buf: &mut [u8]) -> Result<usize, Failure> {
        match self.recv_until(buf, Instant::now() + self.timeout)? {
            Some(n) => Ok(n),
            None => Err(Failure::Timeout(format!(
                "no reply from {} within {}",
                self.name,
                secs(self.timeout)
            ))),
        }
    }

    /// Like [`Conn::recv`], but waits until `deadline`; `None` when it passed.
    pub fn recv_until(&self, buf: &mut [u8], deadline: Instant) -> Result<Option<usize>, Failure> {
        loop {
            match (&self.socket).read(buf) {
                Ok(0) if self.stream && !buf.is_empty() => {
                    return Err(Failure::Io(format!(
                        "{}: connection closed by peer",
                        self.name
                    )))
                }
                Ok(n) => return Ok(Some(n)),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    if !wait(self.socket.as_raw_fd(), libc::POLLIN, deadline)? {
                        return Ok(None);
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(classify(&err, &self.name)),
            }
        }
    }
}

/// Opens a connected socket for a network or Unix endpoint. A unix-dgram
/// client first binds its own temporary path, so the server can answer;
/// the guard removes it again, on every path out.
fn open_endpoint(
    endpoint: &Endpoint,
    ty: Type,
    timeout: Duration,
) -> Result<(Socket, Option<SocketFile>), Failure> {
    match &endpoint.target {
        Target::Inet { .. } => {
            let mut last = Failure::Unreachable("no address".into());
            for addr in resolve(endpoint)? {
                match open(Domain::for_address(addr), ty, &addr.into(), None, timeout) {
                    Ok(socket) => return Ok((socket, None)),
                    Err(Failure::Interrupted) => return Err(Failure::Interrupted),
                    Err(failure) => last = failure,
                }
            }
            Err(last)
        }
        unix => {
            let addr = sock::unix_sockaddr(unix).map_err(|err| Failure::Usage(describe(&err)))?;
            if ty == Type::STREAM {
                return Ok((open(Domain::UNIX, ty, &addr, None, timeout)?, None));
            }
            let path = temp_socket_path();
            let (socket, guard) = sock::unix_datagram_client(&path).map_err(|err| {
                Failure::Io(format!(
                    "cannot bind {}: {}",
                    path.display(),
                    describe(&err)
                ))
            })?;
            Ok((
                open(Domain::UNIX, ty, &addr, Some(socket), timeout)?,
                Some(guard),
            ))
        }
    }
}

/// Creates (unless given) and connects one socket, waiting at most
/// `timeout` for a stream's handshake. Failures carry only the reason.
fn open(
    domain: Domain,
    ty: Type,
    addr: &SockAddr,
    socket: Option<Socket>,
    timeout: Duration,
) -> Result<Socket, Failure> {
    let reason = |err: &io::Error| Failure::Unreachable(describe(err));
    let socket = match socket {
        Some(socket) => socket,
        None => sock::client_socket(domain, ty).map_err(|err| Failure::Io(describe(&err)))?,
    };
    match socket.connect(addr) {
        Ok(()) => return Ok(socket),
        Err(err) if err.raw_os_error() == Some(libc::EINPROGRESS) => {}
        // A Unix listener whose backlog is full answers EAGAIN at once.
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
            return Err(Failure::Unreachable(
                "server busy (listen backlog full)".into(),
            ))
        }
        Err(err) => return Err(reason(&err)),
    }
    if !wait(socket.as_raw_fd(), libc::POLLOUT, Instant::now() + timeout)? {
        return Err(Failure::Timeout(format!(
            "no answer within {}",
            secs(timeout)
        )));
    }
    match socket.take_error() {
        Ok(None) => Ok(socket),
        Ok(Some(err)) | Err(err) => Err(reason(&err)),
    }
}
