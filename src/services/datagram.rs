//! A datagram socket that answers every datagram to its sender: the whole
//! datagram back (UDP, Unix datagram echo) or `ack` (multicast).
//!
//! A reply that would block waits in a small bounded queue (the socket is
//! registered for writable once, edge-triggered); beyond it, replies are
//! dropped and counted, so the loop never blocks on a slow sender.

use std::collections::VecDeque;
use std::fmt;
use std::hash::BuildHasher;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

use log::{debug, warn};
use mio::{Interest, Registry, Token};

use crate::mmsg::{self, Batch};
use crate::reactor::{Context, Flow, Handler, HandlerInfo, Readiness, Reason};
use crate::sock::SocketFile;

/// Datagrams handled per event before yielding.
const DATAGRAMS_PER_EVENT: usize = 64;

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
pub enum Reply {
    /// The datagram itself (RFC 862).
    Echo,
    /// A fixed answer, logged with each datagram (the article's multicast receiver).
    Fixed(&'static [u8]),
}

/// Well-known UDP services that answer any datagram: replying to one of
/// them starts an endless ping-pong (the Fraggle attack), so datagrams from
/// these source ports are dropped, as BSD inetd does: 0 (invalid), echo,
/// discard, daytime, qotd, chargen, time.
const LOOPING_PORTS: [u16; 7] = [0, 7, 9, 13, 17, 19, 37];

/// Keeps a UDP service from becoming a reflector: drops datagrams from
/// looping source ports, and limits replies per source address with a
/// token bucket (`rate` per second, bursts up to `rate`).
///
/// Loopback sources are not rate-limited unless asked: the kernel drops
/// 127/8 and ::1 sources arriving from the network, so they cannot be
/// spoofed from outside, and local load tests must not be throttled.
///
/// The buckets live in a fixed table of [`MAX_BUCKETS`] entries, hashed
/// into sets of [`WAYS`] (with a per-process random key, so nobody can aim
/// many sources at one set). A datagram looks at one set only: a new source
/// takes an empty way or evicts the way used least recently. So the work per
/// datagram is bounded by `WAYS` whatever arrives, and the memory by the
/// table, allocated on the first datagram that needs a bucket. A newcomer
/// inherits the evicted bucket's tokens (refilled for the time it sat
/// idle): sources that crowd one set share its budget, so no bucket ever
/// pays out more than `rate` per second and a spoofed victim's address can
/// draw on at most the `WAYS` buckets of its own set. A source idle for a
/// second finds a full bucket again, as it would in a table of its own.
#[derive(Debug)]
pub struct SourceGuard {
    rate: u32,
    limit_loopback: bool,
    /// `MAX_BUCKETS` entries once a bucket was needed; empty before.
    table: Vec<Bucket>,
    hasher: std::collections::hash_map::RandomState,
    /// Time zero of the `Bucket::used` stamps.
    epoch: Instant,
    /// Bucket entries compared so far: the work the table does (tests).
    probes: u64,
}

/// One source's bucket, 32 bytes.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// The source as an IPv6 address (IPv4 mapped).
    source: [u8; 16],
    /// Nanoseconds since `epoch` when last refilled, plus one; 0 = empty.
    used: u64,
    tokens: f64,
}

/// Source addresses tracked at most; an attacker spraying spoofed sources
/// cannot grow the table past this (2 MiB).
pub const MAX_BUCKETS: usize = 65_536;

/// Entries per set: a source looks at this many buckets, never more.
pub const WAYS: usize = 4;

/// The guard's verdict on one datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Answer it.
    Reply,
    /// From a looping port: drop.
    LoopingPort,
    /// Over the per-source rate: drop.
    RateLimited,
}

impl SourceGuard {
    /// A guard allowing `rate` replies per second per source (0 =
    /// unlimited), loopback sources included only if `limit_loopback`.
    pub fn new(rate: u32, limit_loopback: bool) -> Self {
        SourceGuard {
            rate,
            limit_loopback,
            table: Vec::new(),
            hasher: std::collections::hash_map::RandomState::new(),
            epoch: Instant::now(),
            probes: 0,
        }
    }

    /// True when a source needs no bucket: no rate, or a loopback source
    /// and those exempt.
    fn exempt(&self, loopback: bool) -> bool {
        self.rate == 0 || (!self.limit_loopback && loopback)
    }

    /// The verdict on a datagram from `source` when it needs no bucket (the
    /// common case: no rate, or loopback), without building its address;
    /// None when it needs [`admit`](Self::admit).
    #[inline]
    pub fn quick(&self, source: mmsg::Source) -> Option<Verdict> {
        if LOOPING_PORTS.contains(&source.port) {
            Some(Verdict::LoopingPort)
        } else if self.exempt(source.loopback) {
            Some(Verdict::Reply)
        } else {
            None
        }
    }

    /// Judges a datagram from `from` arriving at `now`.
    #[inline]
    pub fn admit(&mut self, from: SocketAddr, now: Instant) -> Verdict {
        if LOOPING_PORTS.contains(&from.port()) {
            return Verdict::LoopingPort;
        }
        if self.exempt(from.ip().is_loopback()) {
            return Verdict::Reply;
        }
        self.take_token(from.ip(), now)
    }

    fn take_token(&mut self, ip: IpAddr, now: Instant) -> Verdict {
        if self.table.is_empty() {
            self.table = vec![Bucket::default(); MAX_BUCKETS];
        }
        let source = match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        let stamp = u64::try_from(now.saturating_duration_since(self.epoch).as_nanos())
            .unwrap_or(u64::MAX - 1)
            + 1;
        let set = (self.hasher.hash_one(source) as usize % (MAX_BUCKETS / WAYS)) * WAYS;
        let ways = &mut self.table[set..set + WAYS];
        let capacity = f64::from(self.rate);
        // The source's own way if it has one, else an empty one, else the
        // one used least recently.
        let mut pick = 0;
        let mut found = false;
        for (i, way) in ways.iter().enumerate() {
            self.probes += 1;
            if way.used != 0 && way.source == source {
                pick = i;
                found = true;
                break;
            }
            if way.used < ways[pick].used {
                pick = i;
            }
        }
        let bucket = &mut ways[pick];
        if !found {
            // The newcomer takes over the evicted bucket's tokens (a full
            // bucket if it was empty or has refilled): sources that keep
            // evicting each other from a crowded set share one budget
            // instead of each getting a fresh burst per datagram.
            let tokens = if bucket.used == 0 {
                capacity
            } else {
                let idle = stamp.saturating_sub(bucket.used) as f64 * 1e-9;
                (bucket.tokens + idle * capacity).min(capacity)
            };
            *bucket = Bucket {
                source,
                used: stamp,
                tokens,
            };
        }
        let earned = stamp.saturating_sub(bucket.used) as f64 * 1e-9 * capacity;
        bucket.tokens = (bucket.tokens + earned).min(capacity);
        bucket.used = stamp.max(bucket.used);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Verdict::Reply
        } else {
            Verdict::RateLimited
        }
    }
}

/// The datagram handler.
pub struct DatagramService<S: DatagramSocket> {
    socket: S,
    kind: &'static str,
    local: String,
    reply: Reply,
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
        reply: Reply,
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
                if let Reply::Fixed(_) = self.reply {
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
            Reply::Echo => datagram,
            Reply::Fixed(answer) => answer,
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

    /// One `recvmmsg`, the guard, one `sendmmsg`; returns false when the
    /// socket is drained.
    fn receive_batch(&mut self, fd: RawFd, cx: &mut Context) -> bool {
        let mut batch = self.batch.take().unwrap_or_default();
        let more = self.exchange_batch(&mut batch, fd, cx);
        self.batch = Some(batch);
        more
    }

    fn exchange_batch(&mut self, batch: &mut Batch, fd: RawFd, cx: &mut Context) -> bool {
        let received = match batch.recv(fd) {
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return false,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => return true,
            Err(err) => {
                self.receive_failed(&err, cx);
                return false;
            }
        };
        let fixed = match self.reply {
            Reply::Echo => None,
            Reply::Fixed(answer) => Some(answer),
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
        // Fewer than asked for: the socket is empty (non-blocking recvmmsg
        // returns what is queued).
        received == mmsg::BATCH
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

    fn receive_some(&mut self, cx: &mut Context) {
        if let Some(fd) = self.socket.batch_fd() {
            for _ in 0..DATAGRAMS_PER_EVENT.div_ceil(mmsg::BATCH) {
                if !self.read_ready || (cx.is_stopping() && !self.answering_held) {
                    return;
                }
                if !self.receive_batch(fd, cx) {
                    self.read_ready = false;
                    return;
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn from(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn drops_looping_source_ports() {
        let mut guard = SourceGuard::new(0, true);
        let now = Instant::now();
        for port in LOOPING_PORTS {
            assert_eq!(guard.admit(from(port), now), Verdict::LoopingPort);
        }
        assert_eq!(guard.admit(from(40000), now), Verdict::Reply);
    }

    #[test]
    fn token_bucket_limits_and_refills() {
        let mut guard = SourceGuard::new(10, true);
        let now = Instant::now();
        let replied = (0..25)
            .filter(|_| guard.admit(from(40000), now) == Verdict::Reply)
            .count();
        assert_eq!(replied, 10);
        let later = now + Duration::from_millis(500);
        let replied = (0..25)
            .filter(|_| guard.admit(from(40000), later) == Verdict::Reply)
            .count();
        assert_eq!(replied, 5);
        // Another source has its own bucket.
        let other = SocketAddr::from(([127, 0, 0, 2], 40000));
        assert_eq!(guard.admit(other, later), Verdict::Reply);
    }

    /// Issue 10 B4: once the table was full, every datagram from a new
    /// source scanned all 65,536 buckets. Now each datagram compares at
    /// most `WAYS` buckets, whatever the number of sources, the table never
    /// grows past `MAX_BUCKETS`, and a spray cannot buy replies: with no
    /// time to refill, no bucket pays out twice.
    #[test]
    fn a_spray_of_sources_costs_a_bounded_look_up_each() {
        let mut guard = SourceGuard::new(1, true);
        let now = Instant::now();
        let sources = 4 * MAX_BUCKETS as u32;
        let mut replied = 0;
        for n in 0..sources {
            let before = guard.probes;
            let source = SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + n), 40000));
            if guard.admit(source, now) == Verdict::Reply {
                replied += 1;
            }
            assert!(
                guard.probes - before <= WAYS as u64,
                "source {n} compared {} buckets",
                guard.probes - before
            );
        }
        assert_eq!(guard.table.len(), MAX_BUCKETS);
        assert!(
            replied <= MAX_BUCKETS,
            "{replied} replies from one token per bucket"
        );
        assert!(
            replied > MAX_BUCKETS / 2,
            "only {replied} sources were answered"
        );
    }

    /// Two sources hashed into the same full set evict each other on
    /// every datagram; they share the set's budget, not a fresh burst each.
    #[test]
    fn sources_that_evict_each_other_share_one_budget() {
        let mut guard = SourceGuard::new(1, true);
        let now = Instant::now();
        // Fill one set, then find more sources that land in it.
        let first = SocketAddr::from(([192, 0, 2, 1], 40000));
        assert_eq!(guard.admit(first, now), Verdict::Reply);
        let set_of = |guard: &SourceGuard, addr: SocketAddr| {
            let ip = match addr.ip() {
                IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
                IpAddr::V6(v6) => v6.octets(),
            };
            guard.hasher.hash_one(ip) as usize % (MAX_BUCKETS / WAYS)
        };
        let target = set_of(&guard, first);
        let crowd: Vec<SocketAddr> = (0..u32::MAX)
            .map(|n| SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + n), 40000)))
            .filter(|&addr| set_of(&guard, addr) == target)
            .take(2 * WAYS)
            .collect();
        let replied = (0..10)
            .flat_map(|_| crowd.iter())
            .filter(|&&addr| guard.admit(addr, now) == Verdict::Reply)
            .count();
        // WAYS buckets, one token each, the first already spent.
        assert!(
            replied < WAYS,
            "{replied} replies from a set of {WAYS} buckets"
        );
    }

    /// A source that keeps sending keeps its bucket through a spray of
    /// one-off sources hashed into its set (LRU within the set), so its
    /// limit still holds.
    #[test]
    fn a_busy_source_keeps_its_bucket_through_a_spray() {
        let mut guard = SourceGuard::new(2, true);
        let start = Instant::now();
        let busy = SocketAddr::from(([192, 0, 2, 1], 40000));
        assert_eq!(guard.admit(busy, start), Verdict::Reply);
        assert_eq!(guard.admit(busy, start), Verdict::Reply);
        assert_eq!(guard.admit(busy, start), Verdict::RateLimited);
        for n in 0..(2 * MAX_BUCKETS as u32) {
            // The busy source sends every few datagrams of the spray, and
            // its bucket refills by less than one token over the spray.
            let t = start + Duration::from_nanos(u64::from(n));
            let source = SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + n), 40000));
            let _ = guard.admit(source, t);
            if n % (WAYS as u32 - 1) == 0 {
                assert_eq!(guard.admit(busy, t), Verdict::RateLimited, "at {n}");
            }
        }
    }

    #[test]
    fn loopback_is_exempt_from_the_rate_unless_asked() {
        let now = Instant::now();
        let mut guard = SourceGuard::new(1, false);
        assert!((0..10).all(|_| guard.admit(from(40000), now) == Verdict::Reply));
        assert_eq!(guard.admit(from(7), now), Verdict::LoopingPort);
        let remote = SocketAddr::from(([192, 0, 2, 1], 40000));
        assert_eq!(guard.admit(remote, now), Verdict::Reply);
        assert_eq!(guard.admit(remote, now), Verdict::RateLimited);
    }
}
