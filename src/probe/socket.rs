//! The socket over any echo kind, and connecting with a deadline.
//!
//! [`addresses`] resolves an endpoint (names through the system resolver,
//! IPv4 first; Unix paths and `@abstract` names); [`Sock::begin`] opens a
//! non-blocking socket and starts connecting, [`Sock::connecting_done`] tells
//! when a stream's handshake is over. `client` and `ping` wrap a `Sock` in
//! a [`BoundedConn`] whose every wait is a `poll(2)` with a deadline; `bench`
//! registers many with its own `mio::Poll`.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket, Type};

use super::duration::show;
use super::interrupt::{interrupted, stopped};
use super::tls::{handshake_failure, Session, TlsClient};
use crate::endpoint::{Endpoint, Kind, ServerAnswer, Target};
use crate::error::describe;
use crate::error::{Exit, Failure};
use crate::sock::{self, SocketFile};
use std::cell::RefCell;

/// Resolves an endpoint to the addresses to try, in order. Network names
/// go through the system resolver, IPv4 first: the article's clients are
/// AF_INET, and `localhost` should reach a daemon on 127.0.0.1.
pub fn addresses(endpoint: &Endpoint) -> Result<Vec<SockAddr>, Failure> {
    match &endpoint.target {
        Target::Inet { .. } => {
            let mut addrs = endpoint
                .socket_addrs()
                .map_err(|err| Failure::new(Exit::Unreachable, describe(&err)))?;
            addrs.sort_by_key(SocketAddr::is_ipv6);
            Ok(addrs.into_iter().map(SockAddr::from).collect())
        }
        unix => Ok(vec![
            sock::unix_sockaddr(unix).map_err(|err| Failure::usage(describe(&err)))?
        ]),
    }
}

/// The same failure, its line after `prefix: `.
fn within(failure: Failure, prefix: &str) -> Failure {
    Failure::new(failure.exit, format!("{prefix}: {}", failure.message))
}

/// The IPv4 address of a `multicast://` endpoint's group.
pub fn multicast_group(endpoint: &Endpoint) -> Result<SocketAddr, Failure> {
    let group = addresses(endpoint)
        .map_err(|failure| within(failure, &endpoint.to_string()))?
        .into_iter()
        .filter_map(|addr| addr.as_socket())
        .find(|addr| addr.ip().is_multicast() && addr.is_ipv4());
    group.ok_or_else(|| {
        Failure::usage(format!(
            "{endpoint}: not an IPv4 multicast group (224.0.0.0/4)"
        ))
    })
}

/// Where a `unix-dgram:` client binds, so the server has an address to
/// answer to.
#[derive(Clone, Copy, Debug)]
pub enum ClientBind<'a> {
    /// A fresh file in the temporary directory, removed when the socket
    /// is dropped.
    TempFile,
    /// An abstract name: no file, gone with the socket.
    Abstract(&'a str),
}

/// A fresh path for a client's own Unix datagram socket.
fn temp_socket_path() -> PathBuf {
    // The pid and 64 random bits (std's per-hasher random keys): bench's
    // workers make theirs at once, on several threads. A clash would fail
    // the bind, never share a file.
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    std::env::temp_dir().join(format!(
        "echoplex-client-{}-{random:016x}.sock",
        std::process::id()
    ))
}

/// A non-blocking client socket of any connected kind (tcp, unix, udp,
/// unix-dgram, binary).
#[derive(Debug)]
pub struct Sock {
    socket: Socket,
    stream: bool,
    /// Removes a unix-dgram client's own socket file when dropped.
    _local: Option<SocketFile>,
    /// `?proxy`: a PROXY v2 header is owed as soon as the stream connects.
    proxy_header: std::cell::Cell<bool>,
    /// tls://: the session over the socket (behind a RefCell: the socket's
    /// own calls take `&self`, as `&Socket` reads and writes).
    tls: Option<Box<RefCell<Session>>>,
    /// The session's ClientHello has gone out (once connected).
    tls_started: std::cell::Cell<bool>,
}

impl Sock {
    /// Opens a socket for `kind` and starts connecting it to `addr`. A
    /// datagram socket is connected on return; a stream may still be
    /// connecting (see [`Sock::connecting_done`]). A Unix listener with a full
    /// backlog refuses at once with `WouldBlock`.
    pub fn begin(kind: Kind, addr: &SockAddr, local: ClientBind) -> io::Result<Sock> {
        if kind.info().answer == ServerAnswer::Ack {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "multicast is not a connected endpoint",
            ));
        }
        let stream = kind.is_stream();
        let ty = if stream { Type::STREAM } else { Type::DGRAM };
        let (socket, file) = match (addr.domain(), stream, local) {
            (Domain::UNIX, false, ClientBind::TempFile) => {
                let path = temp_socket_path();
                let (socket, file) = sock::unix_datagram_client(&path).map_err(|err| {
                    io::Error::new(
                        err.kind(),
                        format!("cannot bind {}: {}", path.display(), describe(&err)),
                    )
                })?;
                (socket, Some(file))
            }
            (Domain::UNIX, false, ClientBind::Abstract(name)) => {
                let socket = sock::client_socket(Domain::UNIX, ty)?;
                socket.bind(&sock::unix_sockaddr(&Target::Abstract(name.into()))?)?;
                (socket, None)
            }
            (domain, ..) => (sock::client_socket(domain, ty)?, None),
        };
        match socket.connect(addr) {
            Ok(()) => {}
            Err(err) if err.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(err) => return Err(err),
        }
        Ok(Sock {
            socket,
            stream,
            _local: file,
            proxy_header: std::cell::Cell::new(false),
            tls: None,
            tls_started: std::cell::Cell::new(false),
        })
    }

    /// tls://: runs a client session over the socket (`client` None: plain).
    pub fn with_tls(mut self, client: Option<&TlsClient>) -> io::Result<Self> {
        if let Some(client) = client {
            self.tls = Some(Box::new(RefCell::new(Session::new(client)?)));
        }
        Ok(self)
    }

    /// True for a TLS session: a short read proves nothing about the
    /// socket (one record at a time), and writes may leave records behind.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// TLS records wait for the socket: the caller waits for writable too.
    pub fn wants_write(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|tls| tls.borrow().wants_write())
    }

    /// Writes waiting TLS records as far as the socket takes them.
    pub fn flush_tls(&self) -> io::Result<()> {
        match &self.tls {
            Some(tls) => tls.borrow_mut().flush(&mut &self.socket),
            None => Ok(()),
        }
    }

    /// One step of the TLS handshake; true once it is done (or plain).
    pub fn handshake_step(&self) -> io::Result<bool> {
        match &self.tls {
            Some(tls) => tls.borrow_mut().handshake_step(&mut &self.socket),
            None => Ok(true),
        }
    }

    /// The TLS handshake's time and whether it resumed, once, when done.
    pub fn take_handshake(&self) -> Option<(Duration, bool)> {
        self.tls.as_ref()?.borrow_mut().take_handshake()
    }

    /// What the TLS session negotiated (`TLSv1.3 TLS13_...`).
    pub fn negotiated(&self) -> Option<String> {
        Some(self.tls.as_ref()?.borrow().negotiated())
    }

    /// For a `?proxy` endpoint: the stream begins with a PROXY v2 header
    /// naming this connection's own addresses, as a balancer would send
    /// (over Unix, a v2 `LOCAL`: no addresses to name). Sent by
    /// [`Sock::connecting_done`], before any message.
    pub fn with_proxy_header(self, on: bool) -> Self {
        self.proxy_header.set(on && self.stream);
        self
    }

    /// Sends the owed PROXY header: 28 or 52 bytes on a socket that has
    /// sent nothing yet, so one write takes it whole.
    fn send_proxy_header(&self) -> io::Result<()> {
        let addrs = (
            self.socket.local_addr()?.as_socket(),
            self.socket.peer_addr()?.as_socket(),
        );
        let header = match addrs {
            (Some(local), Some(peer)) => crate::wire::proxy::build::v2(local, peer, &[], false),
            _ => crate::wire::proxy::build::v2_local(),
        };
        if (&self.socket).write(&header)? != header.len() {
            return Err(io::Error::other("the PROXY header did not go out whole"));
        }
        self.proxy_header.set(false);
        Ok(())
    }

    /// After the socket turned writable: `Ok(true)` once connected,
    /// `Ok(false)` while still connecting, `Err` if connecting failed.
    pub fn connecting_done(&self) -> io::Result<bool> {
        if let Some(err) = self.socket.take_error()? {
            return Err(err);
        }
        match self.socket.peer_addr() {
            Ok(_) => {
                if self.proxy_header.get() {
                    self.send_proxy_header()?;
                }
                if let Some(tls) = self.tls.as_ref().filter(|_| !self.tls_started.get()) {
                    // The PROXY header first, then the ClientHello.
                    self.tls_started.set(true);
                    let mut tls = tls.borrow_mut();
                    tls.start_clock();
                    tls.flush(&mut &self.socket)?;
                }
                Ok(true)
            }
            Err(err) if err.raw_os_error() == Some(libc::ENOTCONN) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// True for byte-stream kinds (tcp, unix, binary).
    pub fn is_stream(&self) -> bool {
        self.stream
    }

    /// Sends one datagram, or what the stream takes of `buf`.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        match &self.tls {
            Some(tls) => tls.borrow_mut().send(&mut &self.socket, buf),
            None => (&self.socket).write(buf),
        }
    }

    /// Receives what is there (stream) or one datagram.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.tls {
            Some(tls) => tls.borrow_mut().recv(&mut &self.socket, buf),
            None => (&self.socket).read(buf),
        }
    }
}

impl AsRawFd for Sock {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

/// Longest single `poll`: a signal landing just before `poll` starts is
/// noticed at the next slice instead of at the deadline.
const SLICE: Duration = Duration::from_millis(100);

/// Waits until `fd` is ready for `events` (`POLLIN`, `POLLOUT`, or both);
/// returns the ready events, empty when `deadline` passed first.
pub fn wait(fd: RawFd, events: libc::c_short, deadline: Instant) -> Result<libc::c_short, Failure> {
    loop {
        if stopped() {
            return Err(interrupted());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(0);
        }
        // Round up, so a sub-millisecond remainder does not spin.
        let ms = left.min(SLICE).as_micros().div_ceil(1000) as libc::c_int;
        match crate::sys::socket::poll_one(fd, events, ms) {
            Ok(0) => {}
            Ok(revents) => return Ok(revents),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(Failure::new(Exit::Io, format!("poll: {}", describe(&err)))),
        }
    }
}

/// Connects to `endpoint`: each resolved address in turn, each handshake
/// bounded by `timeout`. Returns the socket and the address that answered.
/// With `tls`, the TLS handshake too (its failure: exit 3, why).
pub fn connect(
    endpoint: &Endpoint,
    timeout: Duration,
    local: ClientBind,
    tls: Option<&TlsClient>,
) -> Result<(Sock, SockAddr), Failure> {
    // A group's answers come from many members: no one peer to connect to.
    if endpoint.kind.info().answer == ServerAnswer::Ack {
        return Err(Failure::usage(format!(
            "{endpoint}: multicast is not a connected endpoint"
        )));
    }
    let mut last = Failure::new(Exit::Unreachable, "no address");
    for addr in addresses(endpoint)? {
        match connect_one(
            endpoint.kind,
            &addr,
            timeout,
            local,
            endpoint.options.proxy,
            tls,
        ) {
            Ok(sock) => return Ok((sock, addr)),
            Err(failure) if failure.exit == Exit::Interrupted => return Err(failure),
            Err(failure) => last = failure,
        }
    }
    Err(last)
}

fn connect_one(
    kind: Kind,
    addr: &SockAddr,
    timeout: Duration,
    local: ClientBind,
    proxy: bool,
    tls: Option<&TlsClient>,
) -> Result<Sock, Failure> {
    let sock = Sock::begin(kind, addr, local).map_err(|err| match err.kind() {
        // A Unix listener whose backlog is full answers EAGAIN at once.
        io::ErrorKind::WouldBlock => {
            Failure::new(Exit::Unreachable, "server busy (listen backlog full)")
        }
        _ if err.raw_os_error().is_none() => Failure::new(Exit::Io, describe(&err)),
        _ => Failure::new(Exit::Unreachable, describe(&err)),
    })?;
    let sock = sock
        .with_proxy_header(proxy)
        .with_tls(tls)
        .map_err(|err| Failure::new(Exit::Io, describe(&err)))?;
    if !sock.stream {
        return Ok(sock);
    }
    let deadline = Instant::now() + timeout;
    if wait(sock.as_raw_fd(), libc::POLLOUT, deadline)? == 0 {
        return Err(Failure::new(
            Exit::Timeout,
            format!("no answer within {}", show(timeout)),
        ));
    }
    if let Err(err) = sock.connecting_done() {
        return Err(Failure::new(Exit::Unreachable, describe(&err)));
    }
    // TLS: the handshake, each wait for what the state machine needs.
    loop {
        match sock.handshake_step() {
            Ok(true) => return Ok(sock),
            Ok(false) => {}
            Err(err) => return Err(handshake_failure(&err)),
        }
        let events = if sock.wants_write() {
            libc::POLLIN | libc::POLLOUT
        } else {
            libc::POLLIN
        };
        if wait(sock.as_raw_fd(), events, deadline)? == 0 {
            return Err(Failure::new(
                Exit::Timeout,
                format!("TLS handshake not done within {}", show(timeout)),
            ));
        }
    }
}

/// A connected client socket whose every wait is bounded: what `client`
/// and `ping` talk through.
#[derive(Debug)]
pub struct BoundedConn {
    sock: Sock,
    /// The endpoint as written, for messages.
    name: String,
    /// How long any one wait may take.
    timeout: Duration,
}

impl BoundedConn {
    /// Connects to `endpoint` (a unix-dgram client binds a temporary file,
    /// removed again on every path out); every wait is bounded by `timeout`.
    pub fn connect(
        endpoint: &Endpoint,
        timeout: Duration,
        tls: Option<&TlsClient>,
    ) -> Result<BoundedConn, Failure> {
        let name = endpoint.to_string();
        let (sock, _) = connect(endpoint, timeout, ClientBind::TempFile, tls)
            .map_err(|failure| within(failure, &format!("cannot connect to {name}")))?;
        Ok(BoundedConn {
            sock,
            name,
            timeout,
        })
    }

    /// True for byte-stream endpoints (tcp, unix, binary).
    pub fn is_stream(&self) -> bool {
        self.sock.stream
    }

    /// The endpoint as written.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long any one wait may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The socket, for a caller that waits on it itself.
    pub fn sock(&self) -> &Sock {
        &self.sock
    }

    /// Classifies an error met on this connection.
    pub fn failure(&self, err: &io::Error) -> Failure {
        Failure::io(&self.name, err)
    }

    /// Sends all of `data` (stream) or `data` as one datagram.
    pub fn send(&self, data: &[u8]) -> Result<(), Failure> {
        let mut sent = 0;
        loop {
            let blocked = match self.sock.send(&data[sent..]) {
                Ok(n) => {
                    sent += n;
                    if !self.sock.stream || (sent == data.len() && !self.sock.wants_write()) {
                        return Ok(());
                    }
                    // All given, TLS records still wait for the socket.
                    sent == data.len()
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => true,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => false,
                Err(err) => return Err(self.failure(&err)),
            };
            if blocked {
                {
                    let deadline = Instant::now() + self.timeout;
                    if wait(self.sock.as_raw_fd(), libc::POLLOUT, deadline)? == 0 {
                        return Err(Failure::new(
                            Exit::Timeout,
                            format!(
                                "{}: could not send within {}",
                                self.name,
                                show(self.timeout)
                            ),
                        ));
                    }
                }
            }
        }
    }

    /// Receives what is there (stream) or one datagram, waiting at most the
    /// timeout. A stream closed by the peer is an error.
    pub fn recv(&self, buf: &mut [u8]) -> Result<usize, Failure> {
        match self.recv_until(buf, Instant::now() + self.timeout)? {
            Some(n) => Ok(n),
            None => Err(Failure::new(
                Exit::Timeout,
                format!("no reply from {} within {}", self.name, show(self.timeout)),
            )),
        }
    }

    /// Like [`BoundedConn::recv`], but waits until `deadline`; `None` when it passed.
    pub fn recv_until(&self, buf: &mut [u8], deadline: Instant) -> Result<Option<usize>, Failure> {
        loop {
            match self.try_recv(buf)? {
                Some(n) => return Ok(Some(n)),
                None => {
                    let events = if self.sock.wants_write() {
                        libc::POLLIN | libc::POLLOUT
                    } else {
                        libc::POLLIN
                    };
                    if wait(self.sock.as_raw_fd(), events, deadline)? == 0 {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Sends `data` on a stream and reads `expected` bytes back at the
    /// same time, in pieces of at most `chunk`, handing each to `each` as
    /// it arrives. Sending and receiving together matters: a server that
    /// stops reading while its replies are not taken (echoplex at
    /// `--max-buffer`) would otherwise stall a large message for good.
    /// Every wait is bounded by the timeout since the last progress.
    pub fn exchange(
        &self,
        data: &[u8],
        expected: usize,
        chunk: usize,
        mut each: impl FnMut(&[u8]),
    ) -> Result<Vec<u8>, Failure> {
        let mut echo = Vec::with_capacity(expected);
        let mut buf = vec![0u8; chunk.max(1)];
        let mut sent = 0;
        let fd = self.sock.as_raw_fd();
        while echo.len() < expected || sent < data.len() {
            let mut progress = false;
            if sent < data.len() || self.sock.wants_write() {
                match self.sock.send(&data[sent..]) {
                    Ok(n) => {
                        sent += n;
                        progress = n > 0;
                    }
                    Err(err)
                        if matches!(
                            err.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) => {}
                    Err(err) => return Err(self.failure(&err)),
                }
            }
            if echo.len() < expected {
                let want = buf.len().min(expected - echo.len());
                let got = echo.len();
                let received =
                    self.try_recv(&mut buf[..want])
                        .map_err(|failure| match failure {
                            failure if failure.exit == Exit::Io => Failure::new(
                                Exit::Io,
                                format!("{} after {got} of {expected} bytes", failure.message),
                            ),
                            other => other,
                        })?;
                if let Some(n) = received {
                    each(&buf[..n]);
                    echo.extend_from_slice(&buf[..n]);
                    progress = true;
                }
            }
            if progress {
                continue;
            }
            let mut events = 0;
            if sent < data.len() || self.sock.wants_write() {
                events |= libc::POLLOUT;
            }
            if echo.len() < expected {
                events |= libc::POLLIN;
            }
            if wait(fd, events, Instant::now() + self.timeout)? == 0 {
                let (got, within) = (echo.len(), show(self.timeout));
                return Err(Failure::new(
                    Exit::Timeout,
                    if sent < data.len() {
                        format!(
                        "{}: could not send within {within} (sent {sent} of {} bytes, got {got} back)",
                        self.name,
                        data.len()
                    )
                    } else if got > 0 {
                        format!(
                            "no reply from {} within {within} (got {got} of {expected} bytes)",
                            self.name
                        )
                    } else {
                        format!("no reply from {} within {within}", self.name)
                    },
                ));
            }
        }
        Ok(echo)
    }

    /// Receives without waiting: `None` when nothing is there.
    pub fn try_recv(&self, buf: &mut [u8]) -> Result<Option<usize>, Failure> {
        loop {
            match self.sock.recv(buf) {
                Ok(0) if self.sock.stream && !buf.is_empty() => {
                    return Err(Failure::new(
                        Exit::Io,
                        format!("{}: connection closed by peer", self.name),
                    ))
                }
                Ok(n) => return Ok(Some(n)),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(self.failure(&err)),
            }
        }
    }
}
