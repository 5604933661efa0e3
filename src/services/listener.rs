//! A listening socket (TCP or Unix stream) that accepts connections and
//! spawns a handler for each.
//!
//! Accepting is where a public daemon meets its limits: `--max-connections`
//! (accept and close at once, counted), and running out of descriptors
//! (EMFILE/ENFILE), where a naive edge-triggered loop either spins or stalls.
//! Here the reserve-descriptor trick sheds the waiting connection cleanly;
//! if no spare is left, accepting pauses on a timer and retries by itself.

use std::fmt;
use std::fs::File;
use std::io;
use std::time::{Duration, Instant};

use log::Level;
use mio::{Interest, Registry, Token};

use crate::log_limited;
use crate::reactor::open_reserve_fd;
use crate::reactor::{Admission, Context, Flow, Handler, HandlerInfo, Readiness, Reason};
use crate::sock::SocketFile;

/// Accepts per event before yielding, so a connection storm cannot starve
/// the connections already open.
const ACCEPTS_PER_EVENT: usize = 64;

/// How long accepting pauses when no descriptor can be had at all.
const NO_FD_RETRY: Duration = Duration::from_millis(100);

/// A listening socket mio can poll.
pub trait Acceptor: mio::event::Source {
    /// The accepted stream.
    type Stream;
    /// How the peer is shown in logs and `status`.
    type Peer: fmt::Display;
    /// Accepts one connection, non-blocking (`accept4(SOCK_NONBLOCK)`).
    fn accept_one(&self) -> io::Result<(Self::Stream, Self::Peer)>;
}

impl Acceptor for mio::net::TcpListener {
    type Stream = mio::net::TcpStream;
    type Peer = std::net::SocketAddr;
    /// Every TCP kind answers small writes at once (an echo, a record, an
    /// HTTP answer, a TLS record): Nagle would hold them back, so each
    /// accepted stream gets TCP_NODELAY here, once for all of them.
    fn accept_one(&self) -> io::Result<(Self::Stream, Self::Peer)> {
        let (stream, peer) = self.accept()?;
        if let Err(err) = stream.set_nodelay(true) {
            log::debug!("TCP_NODELAY on {peer}: {err}");
        }
        Ok((stream, peer))
    }
}

/// A Unix-domain peer: usually unnamed, shown as `-`.
#[derive(Debug)]
pub struct UnixPeer(String);

impl fmt::Display for UnixPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "-" } else { &self.0 })
    }
}

impl Acceptor for mio::net::UnixListener {
    type Stream = mio::net::UnixStream;
    type Peer = UnixPeer;
    fn accept_one(&self) -> io::Result<(Self::Stream, Self::Peer)> {
        let (stream, addr) = self.accept()?;
        let name = addr
            .as_pathname()
            .map(|path| path.display().to_string())
            .unwrap_or_default();
        Ok((stream, UnixPeer(name)))
    }
}

/// Builds the handler for an accepted connection.
pub type MakeConn<L> =
    Box<dyn Fn(<L as Acceptor>::Stream, <L as Acceptor>::Peer) -> Box<dyn Handler>>;

/// Decides whether an accepted connection may be served (`?uid=N`); the
/// error says why not.
pub type PeerCheck<L> = Box<dyn Fn(&<L as Acceptor>::Stream) -> Result<(), String>>;

/// A listener handler.
pub struct Listener<L: Acceptor> {
    listener: L,
    kind: &'static str,
    local: String,
    make_conn: MakeConn<L>,
    accept_ready: bool,
    paused: bool,
    /// Accept is failing for lack of descriptors: log once per burst.
    out_of_fds: bool,
    /// Removes the socket file when the listener goes.
    _socket_file: Option<SocketFile>,
    /// The admin listener's own spare descriptor (`with_spare_fd`): given
    /// up to *serve* one connection when the daemon is out of descriptors,
    /// so `status` can still answer; `Some(None)` while it is in use.
    spare: Option<Option<File>>,
    /// Refuses connections this check rejects (closed at once, logged).
    peer_check: Option<PeerCheck<L>>,
}

impl<L: Acceptor> Listener<L> {
    /// A listener of `kind` (e.g. `tcp-listener`) shown at `local`.
    pub fn new(
        listener: L,
        kind: &'static str,
        local: String,
        make_conn: MakeConn<L>,
        socket_file: Option<SocketFile>,
    ) -> Self {
        Listener {
            listener,
            kind,
            local,
            make_conn,
            accept_ready: false,
            paused: false,
            out_of_fds: false,
            _socket_file: socket_file,
            spare: None,
            peer_check: None,
        }
    }

    /// Serves only the connections `check` accepts; the others are closed
    /// at once.
    pub fn with_peer_check(mut self, check: PeerCheck<L>) -> Self {
        self.peer_check = Some(check);
        self
    }

    /// Keeps a descriptor in reserve for this listener alone, so one of its
    /// connections is still served when the daemon has run out (the admin
    /// socket: `status` matters most precisely then).
    pub fn with_spare_fd(mut self) -> Self {
        self.spare = Some(open_reserve_fd());
        self
    }

    /// Out of descriptors: spends the spare (if this listener has one) on
    /// accepting and serving a connection. True if one was taken.
    fn serve_with_spare(&mut self, cx: &mut Context) -> bool {
        let Some(spare) = self.spare.as_mut() else {
            return false;
        };
        if spare.take().is_none() {
            return false; // already spent on a connection still open
        }
        match self.listener.accept_one() {
            Ok((stream, peer)) => {
                log::info!(
                    "{} {}: out of file descriptors; serving this connection with the spare",
                    self.kind,
                    self.local
                );
                let conn = (self.make_conn)(stream, peer);
                let _ = cx.spawn(conn);
                true
            }
            Err(err) => {
                *spare = open_reserve_fd();
                if err.kind() == io::ErrorKind::WouldBlock {
                    self.accept_ready = false;
                    return true;
                }
                false
            }
        }
    }

    fn accept_some(&mut self, cx: &mut Context) {
        // Take the spare back once the connection it served has closed.
        if let Some(spare @ None) = self.spare.as_mut() {
            *spare = open_reserve_fd();
        }
        for _ in 0..ACCEPTS_PER_EVENT {
            if !self.accept_ready || self.paused {
                return;
            }
            match self.listener.accept_one() {
                Ok((stream, peer)) => self.admit(stream, peer, cx),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_ready = false;
                    return;
                }
                Err(err) if is_out_of_fds(&err) => self.out_of_fds(&err, cx),
                Err(err) if is_this_connections_error(&err) => {}
                Err(err) => {
                    log_limited!(
                        Level::Warn,
                        "{} {}: accept failed: {err}; retrying shortly",
                        self.kind,
                        self.local
                    );
                    self.pause(cx);
                    return;
                }
            }
        }
        cx.run_again();
    }

    fn admit(&mut self, stream: L::Stream, peer: L::Peer, cx: &mut Context) {
        if self.out_of_fds {
            self.out_of_fds = false;
            log_limited!(
                Level::Info,
                "{} {}: descriptors available again, accepting",
                self.kind,
                self.local
            );
        }
        if let Some(check) = &self.peer_check {
            if let Err(why) = check(&stream) {
                log_limited!(
                    Level::Info,
                    "{} {}: refused a connection: {why}",
                    self.kind,
                    self.local
                );
                return; // dropping `stream` closes it
            }
        }
        let conn = (self.make_conn)(stream, peer);
        // The reactor admits or refuses against --max-connections (admin
        // and metrics clients against a reserve of their own: status and
        // health checks must work when echo is full).
        // Rate-limited, not "once per burst": under churn a burst never
        // ends, and a flag re-armed by every accepted connection warned
        // once per connection.
        match cx.spawn(conn) {
            Admission::Admitted => {}
            Admission::OverLimit => log_limited!(
                Level::Warn,
                "{} {}: --max-connections {} reached; closing new connections",
                self.kind,
                self.local,
                cx.limits.max_connections
            ),
            Admission::OverReserve => log_limited!(
                Level::Warn,
                "{} {}: all {} control connections in use; closing new ones",
                self.kind,
                self.local,
                cx.limits.control_reserve
            ),
        }
    }

    fn out_of_fds(&mut self, err: &io::Error, cx: &mut Context) {
        if !self.out_of_fds {
            self.out_of_fds = true;
            log_limited!(
                Level::Warn,
                "{} {}: out of file descriptors ({err}); closing new connections until some free up",
                self.kind, self.local
            );
        }
        if self.serve_with_spare(cx) {
            return;
        }
        // Give up the spare descriptor, accept the waiting connection and
        // close it, so the client hears at once and the backlog drains.
        let listener = &self.listener;
        match cx.with_reserve_fd(|| listener.accept_one().map(drop)) {
            Some(Ok(())) => cx.stats.rejected_no_fds += 1,
            Some(Err(err)) if err.kind() == io::ErrorKind::WouldBlock => {
                self.accept_ready = false;
            }
            _ => self.pause(cx),
        }
    }

    fn pause(&mut self, cx: &mut Context) {
        self.paused = true;
        cx.set_timer(cx.now + NO_FD_RETRY, Reason::default());
    }
}

/// Errors accept(2) reports for the one connection it was taking (the peer
/// gave up while queued, a network error pending on it) or a signal: the
/// next connection may be fine, so try it at once.
fn is_this_connections_error(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::Interrupted
        || matches!(
            err.raw_os_error(),
            Some(
                libc::ECONNABORTED
                    | libc::EPROTO
                    | libc::ENETDOWN
                    | libc::ENOPROTOOPT
                    | libc::EHOSTDOWN
                    | libc::ENONET
                    | libc::EHOSTUNREACH
                    | libc::EOPNOTSUPP
                    | libc::ENETUNREACH
            )
        )
}

fn is_out_of_fds(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

impl<L: Acceptor> Handler for Listener<L> {
    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.listener, token, Interest::READABLE)
    }

    fn ready(&mut self, readiness: Readiness, cx: &mut Context) -> Flow {
        if readiness.readable || readiness.error {
            self.accept_ready = true;
        }
        self.accept_some(cx);
        Flow::Continue
    }

    /// Stop accepting. Deregister before the close: after an upgrade the
    /// socket lives on in the new process, and epoll keeps an entry until
    /// every descriptor of the socket is closed, so it would wake this
    /// draining process for each connection the new one accepts.
    fn shutdown(&mut self, cx: &mut Context) -> Flow {
        let _ = cx.registry().deregister(&mut self.listener);
        Flow::Close
    }

    /// The one timer a listener sets: the end of a pause.
    fn timeout(&mut self, _reason: Reason, cx: &mut Context) -> Flow {
        if self.paused {
            self.paused = false;
            // The edge may have come and gone while paused: try anyway.
            self.accept_ready = true;
            self.accept_some(cx);
        }
        Flow::Continue
    }

    fn describe(&self, _now: Instant) -> HandlerInfo {
        HandlerInfo {
            kind: self.kind,
            local: self.local.clone(),
            peer: "*".into(),
            state: if self.paused { "paused" } else { "listening" },
            bytes_in: 0,
            bytes_out: 0,
            pending: 0,
            idle: None,
            detail: None,
        }
    }
}
