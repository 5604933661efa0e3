//! A datagram socket that answers every datagram to its sender: the whole
//! datagram back (UDP, Unix datagram echo) or `ack` (multicast).
//!
//! A reply that would block waits in a small bounded queue (the socket is
//! registered for writable once, edge-triggered); beyond it, replies are
//! dropped and counted, so the loop never blocks on a slow sender.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

use log::{debug, warn};
use mio::{Interest, Registry, Token};

use crate::reactor::{Context, Flow, Handler, HandlerInfo, Readiness, Reason};
use crate::sock::SocketFile;
use crate::sys::mmsg::{self, Batch};

pub use super::source_guard::{SourceGuard, Verdict};

/// Datagrams handled per event before yielding.
const DATAGRAMS_PER_EVENT: usize = 64;

/// Datagrams a wake-up reads one at a time (`recvfrom`, answered at once
/// by `sendto`) before it takes the rest by `recvmmsg`: as many as a
/// moderate load leaves queued (8 clients at depth 1, say), so each is
/// answered as it is read; more than that and the queue is deep.
const SINGLES_BEFORE_BATCH: usize = 8;

/// How often replies to a full Unix datagram peer are retried.
const PEER_FULL_RETRY: std::time::Duration = std::time::Duration::from_millis(10);

/// Pause after a receive error before trying again.
const RECEIVE_RETRY: std::time::Duration = std::time::Duration::from_millis(10);

/// Timer reasons: a retry of replies to a full peer, or of a receive.
const RETRY_PEER_FULL: Reason = Reason(0);
const RETRY_RECEIVE: Reason = Reason(1);

/// Replies that may wait for a full socket buffer to drain.
const QUEUE_DATAGRAMS: usize = 64;

/// At shutdown, receive passes (of `DATAGRAMS_PER_EVENT` each) spent on
/// the datagrams the socket already holds: more than its buffer holds.
const HELD_PASSES: usize = 64;

/// A datagram socket mio can poll.
pub trait DatagramSocket: mio::event::Source {
    /// A sender's address.
    type Addr: Clone + PartialEq + fmt::Display;
    /// Receives one datagram.
    fn recv_one(&self, buf: &mut [u8]) -> io::Result<(usize, Self::Addr)>;
    /// Sends one datagram; `Ok(false)` if the sender cannot be answered.
    fn send_one(&self, buf: &[u8], to: &Self::Addr) -> io::Result<bool>;
    /// The sender's IP address and port, for the source guard.
    fn inet(addr: &Self::Addr) -> Option<SocketAddr>;
    /// The descriptor for `recvmmsg`/`sendmmsg`, for sockets whose
    /// addresses are IP addresses; None keeps one syscall per datagram.
    fn batch_fd(&self) -> Option<RawFd> {
        None
    }
    /// An IP address as this socket's address type.
    fn from_inet(_addr: SocketAddr) -> Option<Self::Addr> {
        None
    }
    /// What `WouldBlock` on a send means. For UDP, our own send buffer is
    /// full: every reply waits, in order, for the writable edge that will
    /// come. For an unconnected Unix datagram socket, the *peer's* queue is
    /// full and no edge ever comes back to us: only that peer's replies
    /// wait, retried on a timer, so one slow reader blocks nobody else.
    const FULL_MEANS_PEER_FULL: bool = false;
}

impl DatagramSocket for mio::net::UdpSocket {
    type Addr = SocketAddr;
    fn recv_one(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.recv_from(buf)
    }
    fn send_one(&self, buf: &[u8], to: &SocketAddr) -> io::Result<bool> {
        self.send_to(buf, *to).map(|_| true)
    }
    fn inet(addr: &SocketAddr) -> Option<SocketAddr> {
        Some(*addr)
    }
    fn batch_fd(&self) -> Option<RawFd> {
        Some(self.as_raw_fd())
    }
    fn from_inet(addr: SocketAddr) -> Option<SocketAddr> {
        Some(addr)
    }
}

/// What a datagram gets back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyWith {
    /// The datagram itself (RFC 862).
    Echo,
    /// A fixed answer, logged with each datagram (the article's multicast receiver).
    Fixed(&'static [u8]),
}

/// What one receive of the batched path found.
enum Received {
    /// This many datagrams (0: interrupted, try again).
    Datagrams(usize),
    /// None: the socket is drained, or a receive error set a retry timer.
    Drained,
}

/// The datagram handler.
pub struct DatagramService<S: DatagramSocket> {
    socket: S,
    kind: &'static str,
    local: String,
    reply: ReplyWith,
    guard: Option<SourceGuard>,
    queue: VecDeque<(Box<[u8]>, S::Addr)>,
    queued_bytes: usize,
    read_ready: bool,
    /// In `shutdown`: still receiving, to answer what the socket holds.
    answering_held: bool,
    /// Registered for writable: only while replies wait in the queue.
    write_interest: bool,
    /// recvmmsg buffers, allocated on the first datagram.
    batch: Option<Box<Batch>>,
    /// The last `recvmmsg` filled its batch: the socket holds more than a
    /// batch (saturation), so a wake-up reads batches from the start. Else
    /// its first datagrams are read and answered one at a time (`recvfrom`,
    /// `sendto`), as a plain loop does (see `receive_some`).
    deep: bool,
    bytes_in: u64,
    bytes_out: u64,
    _socket_file: Option<SocketFile>,
}

impl<S: DatagramSocket> DatagramService<S> {
    /// A handler of `kind` (e.g. `udp`) shown at `local`.
    pub fn new(
        socket: S,
        kind: &'static str,
        local: String,
        reply: ReplyWith,
        guard: Option<SourceGuard>,
        socket_file: Option<SocketFile>,
    ) -> Self {
        DatagramService {
            socket,
            kind,
            local,
            reply,
            guard,
            queue: VecDeque::new(),
            queued_bytes: 0,
            read_ready: false,
            answering_held: false,
            write_interest: false,
            batch: None,
            deep: false,
            bytes_in: 0,
            bytes_out: 0,
            _socket_file: socket_file,
        }
    }

    fn flush_queue(&mut self, cx: &mut Context) {
        if S::FULL_MEANS_PEER_FULL {
            return self.flush_queue_per_peer(cx);
        }
        while let Some((datagram, to)) = self.queue.front() {
            let result = self.socket.send_one(datagram, to);
            if matches!(&result, Err(err) if err.kind() == io::ErrorKind::WouldBlock) {
                return;
            }
            if let Some((datagram, to)) = self.queue.pop_front() {
                self.queued_bytes -= datagram.len();
                self.count_send(result, datagram.len(), &to, cx);
            }
        }
    }

    /// One pass over the queue; a peer that is still full keeps its
    /// replies (in order) and the others go out.
    fn flush_queue_per_peer(&mut self, cx: &mut Context) {
        let mut still_full: Vec<S::Addr> = Vec::new();
        for _ in 0..self.queue.len() {
            let Some((datagram, to)) = self.queue.pop_front() else {
                break;
            };
            if !still_full.contains(&to) {
                let result = self.socket.send_one(&datagram, &to);
                if !matches!(&result, Err(err) if err.kind() == io::ErrorKind::WouldBlock) {
                    self.queued_bytes -= datagram.len();
                    self.count_send(result, datagram.len(), &to, cx);
                    continue;
                }
                still_full.push(to.clone());
            }
            self.queue.push_back((datagram, to));
        }
        if !self.queue.is_empty() {
            cx.set_timer(cx.now + PEER_FULL_RETRY, RETRY_PEER_FULL);
        }
    }

    fn count_sent(&mut self, len: usize, cx: &mut Context) {
        self.bytes_out += len as u64;
        cx.stats.bytes_out += len as u64;
        cx.stats.datagrams_out += 1;
    }

    fn count_send(&mut self, result: io::Result<bool>, len: usize, to: &S::Addr, cx: &mut Context) {
        match result {
            Ok(true) => self.count_sent(len, cx),
            Ok(false) => {
                debug!(
                    "{} {}: cannot answer an unnamed sender",
                    self.kind, self.local
                );
                cx.stats.dropped_datagrams += 1;
            }
            Err(err) => {
                debug!("{} {}: reply to {to} failed: {err}", self.kind, self.local);
                cx.stats.dropped_datagrams += 1;
            }
        }
    }

    /// Counts a received datagram and decides whether it gets an answer.
    fn admit(&mut self, len: usize, from: &S::Addr, cx: &mut Context) -> bool {
        self.bytes_in += len as u64;
        cx.stats.bytes_in += len as u64;
        cx.stats.datagrams_in += 1;
        let verdict = match (self.guard.as_mut(), S::inet(from)) {
            (Some(guard), Some(inet)) => guard.admit(inet, cx.now),
            _ => Verdict::Reply,
        };
        match verdict {
            Verdict::Reply => {
                // Logged only once admitted, and rate-limited: a flood must
                // not become a log flood.
                if let ReplyWith::Fixed(_) = self.reply {
                    crate::log_limited!(
                        log::Level::Info,
                        "{} {}: received {len} bytes from {from}",
                        self.kind,
                        self.local
                    );
                }
                true
            }
            Verdict::LoopingPort => {
                debug!(
                    "{} {}: dropped datagram from looping port {from}",
                    self.kind, self.local
                );
                cx.stats.filtered_datagrams += 1;
                false
            }
            Verdict::RateLimited => {
                cx.stats.rate_limited += 1;
                false
            }
        }
    }

    fn answer(&mut self, datagram: &[u8], from: S::Addr, cx: &mut Context) {
        if !self.admit(datagram.len(), &from, cx) {
            return;
        }
        let reply = match self.reply {
            ReplyWith::Echo => datagram,
            ReplyWith::Fixed(answer) => answer,
        };
        // Replies keep their order: behind the queue (UDP), or behind this
        // peer's own queued replies (Unix datagrams).
        let must_wait = if S::FULL_MEANS_PEER_FULL {
            self.queue.iter().any(|(_, to)| *to == from)
        } else {
            !self.queue.is_empty()
        };
        if !must_wait {
            match self.socket.send_one(reply, &from) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    if S::FULL_MEANS_PEER_FULL && self.queue.is_empty() {
                        cx.set_timer(cx.now + PEER_FULL_RETRY, RETRY_PEER_FULL);
                    }
                }
                result => return self.count_send(result, reply.len(), &from, cx),
            }
        }
        self.enqueue(reply, from, cx);
    }

    /// Keeps a reply for when the socket has room; drops it past the bound.
    fn enqueue(&mut self, reply: &[u8], to: S::Addr, cx: &mut Context) {
        if self.queue.len() >= QUEUE_DATAGRAMS
            || self.queued_bytes + reply.len() > cx.limits.max_buffer.max(reply.len())
        {
            cx.stats.dropped_datagrams += 1;
            return;
        }
        self.queued_bytes += reply.len();
        self.queue.push_back((reply.into(), to));
    }

    /// One receive (`recvfrom` of one datagram if `single`, else
    /// `recvmmsg` of up to a batch), the guard, one send (`sendto` for one
    /// reply, else `sendmmsg`).
    fn receive_batch(&mut self, fd: RawFd, single: bool, cx: &mut Context) -> Received {
        let mut batch = self.batch.take().unwrap_or_default();
        let received = self.exchange_batch(&mut batch, fd, single, cx);
        self.batch = Some(batch);
        received
    }

    fn exchange_batch(
        &mut self,
        batch: &mut Batch,
        fd: RawFd,
        single: bool,
        cx: &mut Context,
    ) -> Received {
        let result = if single {
            batch.recv_one(fd)
        } else {
            batch.recv(fd)
        };
        let received = match result {
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Received::Drained,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => return Received::Datagrams(0),
            Err(err) => {
                self.receive_failed(&err, cx);
                return Received::Drained;
            }
        };
        let fixed = match self.reply {
            ReplyWith::Echo => None,
            ReplyWith::Fixed(answer) => Some(answer),
        };
        // The common case (an echo, and a guard that needs no bucket for
        // this sender) reads the length and port straight from the
        // batch, and counts once per batch; the rest goes through `admit`.
        let mut bytes_in = 0;
        let mut quick = 0;
        for i in 0..received {
            let (len, source) = batch.peek(i);
            let Some(source) = source else {
                cx.stats.datagrams_in += 1;
                cx.stats.bytes_in += len as u64;
                self.bytes_in += len as u64;
                cx.stats.dropped_datagrams += 1;
                continue;
            };
            let verdict = match &self.guard {
                None => Some(Verdict::Reply),
                Some(guard) => guard.quick(source),
            };
            match verdict {
                Some(Verdict::Reply) if fixed.is_none() => {
                    bytes_in += len;
                    quick += 1;
                    batch.answer(i, None);
                    continue;
                }
                Some(Verdict::LoopingPort) => {
                    bytes_in += len;
                    quick += 1;
                    debug!(
                        "{} {}: dropped datagram from looping port {}",
                        self.kind, self.local, source.port
                    );
                    cx.stats.filtered_datagrams += 1;
                    continue;
                }
                _ => {}
            }
            let (datagram, from) = batch.get(i);
            let Some(from) = from.and_then(S::from_inet) else {
                cx.stats.dropped_datagrams += 1;
                continue;
            };
            if self.admit(datagram.len(), &from, cx) {
                batch.answer(i, fixed);
            }
        }
        self.bytes_in += bytes_in as u64;
        cx.stats.bytes_in += bytes_in as u64;
        cx.stats.datagrams_in += quick;
        let mut sent = 0;
        while self.queue.is_empty() && sent < batch.queued() {
            match batch.send(fd, sent) {
                Ok(n) => {
                    let bytes: usize = (sent..sent + n).map(|k| batch.queued_len(k)).sum();
                    self.bytes_out += bytes as u64;
                    cx.stats.bytes_out += bytes as u64;
                    cx.stats.datagrams_out += n as u64;
                    sent += n;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    // This reply cannot go (e.g. no route); skip it, not the rest.
                    debug!("{} {}: reply failed: {err}", self.kind, self.local);
                    cx.stats.dropped_datagrams += 1;
                    sent += 1;
                }
            }
        }
        for k in sent..batch.queued() {
            let (reply, to) = batch.queued_answer(k);
            match to.and_then(S::from_inet) {
                Some(to) => self.enqueue(reply, to, cx),
                None => cx.stats.dropped_datagrams += 1,
            }
        }
        Received::Datagrams(received)
    }

    /// Sends what waits, answers what came, and keeps the interest right.
    fn exchange(&mut self, cx: &mut Context) -> Flow {
        self.flush_queue(cx);
        self.receive_some(cx);
        if cx.is_stopping() && self.queue.is_empty() {
            return Flow::Close;
        }
        self.sync_write_interest(cx);
        Flow::Continue
    }

    /// Writable interest follows the queue; one epoll_ctl per transition.
    /// A full Unix datagram peer raises no writable edge for us: its
    /// replies are retried on a timer instead.
    fn sync_write_interest(&mut self, cx: &mut Context) {
        let want = !self.queue.is_empty() && !S::FULL_MEANS_PEER_FULL;
        if want == self.write_interest {
            return;
        }
        let interest = if want {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        match cx
            .registry()
            .reregister(&mut self.socket, cx.token, interest)
        {
            Ok(()) => self.write_interest = want,
            Err(err) => warn!("{} {}: reregister: {err}", self.kind, self.local),
        }
    }

    /// A receive error (a queued ICMP error, say) is no reason to close the
    /// socket, nor to spin on it: retry shortly, since datagrams queued
    /// behind it raise no new edge.
    fn receive_failed(&mut self, err: &io::Error, cx: &mut Context) {
        crate::log_limited!(
            log::Level::Warn,
            "{} {}: receive failed: {err}; retrying",
            self.kind,
            self.local
        );
        cx.set_timer(cx.now + RECEIVE_RETRY, RETRY_RECEIVE);
    }

    /// Whether to read now: the socket may hold datagrams, and a shutdown
    /// is not past answering what it held.
    fn may_receive(&self, cx: &Context) -> bool {
        self.read_ready && (!cx.is_stopping() || self.answering_held)
    }

    /// Reads and answers what the socket holds, up to the fairness budget.
    ///
    /// Batched sockets adapt to the load. Unless the last batch came back
    /// full, up to [`SINGLES_BEFORE_BATCH`] datagrams are read and answered
    /// one at a time, as tokio's and a plain loop's are: each reply leaves
    /// as soon as its datagram is read, so the client's next datagram can
    /// arrive while the loop is still busy, instead of the two sides
    /// trading whole batches and sleeping in between (issue 26: the batched
    /// path answered at half the plain loop's rate on a host where the
    /// loop idled between bursts). Past that, `recvmmsg` takes the rest; a
    /// batch that comes back full marks the socket deep, and later
    /// wake-ups read batches from the start (two syscalls per 32 at
    /// saturation, as before), until one comes back short. A short batch,
    /// or `WouldBlock`, says the socket is drained: no further probe.
    fn receive_some(&mut self, cx: &mut Context) {
        if let Some(fd) = self.socket.batch_fd() {
            let mut handled = 0;
            while handled < DATAGRAMS_PER_EVENT {
                if !self.may_receive(cx) {
                    return;
                }
                let single = !self.deep && handled < SINGLES_BEFORE_BATCH;
                match self.receive_batch(fd, single, cx) {
                    Received::Datagrams(n) if single => handled += n.max(1),
                    Received::Datagrams(n) if n == mmsg::BATCH => {
                        self.deep = true;
                        handled += n;
                    }
                    // EINTR: try again, counted against the budget.
                    Received::Datagrams(0) => handled += 1,
                    // Fewer than asked for: the socket is empty (a
                    // non-blocking recvmmsg returns what is queued).
                    Received::Datagrams(_) | Received::Drained => {
                        self.deep = false;
                        self.read_ready = false;
                        return;
                    }
                }
            }
            cx.run_again();
            return;
        }
        for _ in 0..DATAGRAMS_PER_EVENT {
            if !self.read_ready || (cx.is_stopping() && !self.answering_held) {
                return;
            }
            let received = cx.with_scratch(|scratch, cx| match self.socket.recv_one(scratch) {
                Ok((n, from)) => {
                    self.answer(&scratch[..n], from, cx);
                    true
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.read_ready = false;
                    false
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => true,
                Err(err) if err.kind() == io::ErrorKind::InvalidData => {
                    crate::log_limited!(log::Level::Warn, "{} {}: {err}", self.kind, self.local);
                    cx.stats.dropped_datagrams += 1;
                    true
                }
                Err(err) => {
                    self.receive_failed(&err, cx);
                    false
                }
            });
            if !received {
                return;
            }
        }
        cx.run_again();
    }
}

impl<S: DatagramSocket> Handler for DatagramService<S> {
    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        // Writable only while replies wait (see `ready`): every datagram
        // sent frees buffer space, and a standing writable interest would
        // wake the loop once per reply.
        registry.register(&mut self.socket, token, Interest::READABLE)
    }

    fn ready(&mut self, readiness: Readiness, cx: &mut Context) -> Flow {
        if readiness.readable || readiness.error {
            self.read_ready = true;
        }
        self.exchange(cx)
    }

    /// A retry timer: replies to a full peer, or a receive after an error;
    /// either way the same exchange retries both.
    fn timeout(&mut self, _reason: Reason, cx: &mut Context) -> Flow {
        self.exchange(cx)
    }

    fn shutdown(&mut self, cx: &mut Context) -> Flow {
        // Datagrams already in the socket's queue came before the shutdown:
        // answer them (bounded, so a flood cannot hold the exit up), then
        // stop receiving and flush the replies.
        self.read_ready = true;
        self.answering_held = true;
        for _ in 0..HELD_PASSES {
            if !self.read_ready {
                break;
            }
            self.receive_some(cx);
        }
        self.answering_held = false;
        self.flush_queue(cx);
        if self.queue.is_empty() {
            Flow::Close
        } else {
            Flow::Continue
        }
    }

    fn describe(&self, _now: Instant) -> HandlerInfo {
        HandlerInfo {
            kind: self.kind,
            local: self.local.clone(),
            peer: "*".into(),
            state: if self.queue.is_empty() {
                "open"
            } else {
                "draining"
            },
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            pending: self.queued_bytes,
            idle: None,
            detail: None,
        }
    }
}
