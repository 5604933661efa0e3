//! The datagram side of the load generator (udp, unix-dgram): each socket
//! keeps `depth` datagrams in flight in slots. A reply is matched to its
//! slot by the sequence number in its header and checked whole; a slot not
//! answered within the timeout counts as lost and is re-sent under a new
//! sequence number, so a lossy server slows the run but never hangs it.

use std::io;
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};

use super::load::{Dest, Timeline, WorkerJob, WorkerResult};
use super::pattern::Pattern;
use super::stream::describe_mismatch;
use crate::error::describe;

/// How often timeouts are looked for and progress is published.
const HOUSEKEEPING: Duration = Duration::from_millis(10);

/// With nothing at all echoed for this many timeouts (and at least
/// `DEAD_MIN`), the server is taken for gone and the worker stops.
const DEAD_TIMEOUTS: u32 = 5;
const DEAD_MIN: Duration = Duration::from_secs(2);

enum Sock {
    Udp(mio::net::UdpSocket),
    Unix(UnixDatagram),
}

impl Sock {
    /// A socket connected to `dest`, so it hears only the server.
    fn open(dest: &Dest, name: &str) -> io::Result<Sock> {
        match dest {
            Dest::Udp(addr) => {
                let any: std::net::SocketAddr = if addr.is_ipv4() {
                    (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let socket = mio::net::UdpSocket::bind(any)?;
                socket.connect(*addr)?;
                Ok(Sock::Udp(socket))
            }
            Dest::UnixDgram(addr) => {
                // The server answers to our address: an abstract name needs
                // no file and vanishes with the socket.
                let socket = UnixDatagram::bind_addr(&UnixAddr::from_abstract_name(name)?)?;
                socket.connect_addr(addr)?;
                socket.set_nonblocking(true)?;
                Ok(Sock::Unix(socket))
            }
            Dest::Tcp(_) | Dest::Unix(_) => Err(io::ErrorKind::InvalidInput.into()),
        }
    }

    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Udp(s) => s.send(buf),
            Sock::Unix(s) => s.send(buf),
        }
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Udp(s) => s.recv(buf),
            Sock::Unix(s) => s.recv(buf),
        }
    }

    /// Registers (`writable` None) or re-registers the socket: writable
    /// only while a send would block, so freed buffer space does not wake
    /// the loop.
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        writable: Option<bool>,
    ) -> io::Result<()> {
        let interest = if writable == Some(true) {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        match (self, writable.is_some()) {
            (Sock::Udp(s), false) => registry.register(s, token, interest),
            (Sock::Udp(s), true) => registry.reregister(s, token, interest),
            (Sock::Unix(s), false) => {
                registry.register(&mut SourceFd(&s.as_raw_fd()), token, interest)
            }
            (Sock::Unix(s), true) => {
                registry.reregister(&mut SourceFd(&s.as_raw_fd()), token, interest)
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SlotState {
    /// Nothing to send (the `-n` quota is used up).
    Idle,
    /// Built but the socket would block: send on the next writable event.
    Unsent,
    /// Sent, awaiting its echo.
    InFlight,
}

#[derive(Clone, Copy)]
struct Slot {
    seq: u64,
    sent: Instant,
    measured: bool,
    state: SlotState,
}

struct Conn {
    id: usize,
    sock: Sock,
    next_seq: u64,
    slots: Vec<Slot>,
    dead: bool,
    replied: bool,
    write_interest: bool,
}

struct Worker<'a> {
    job: &'a WorkerJob,
    pattern: &'a Pattern,
    conns: Vec<Conn>,
    result: WorkerResult,
    timeline: Timeline,
    quota: Option<u64>,
    completed: u64,
    last_reply: Instant,
    out: Vec<u8>,
    buf: Vec<u8>,
    /// To ask for writable from inside a send.
    registry: Registry,
}

/// Runs one datagram worker to the end of its share of the run.
pub fn run(job: WorkerJob) -> WorkerResult {
    let mut result = WorkerResult::new();
    let poll = Poll::new();
    let mut conns = Vec::with_capacity(job.conns);
    if let Ok(poll) = &poll {
        for i in 0..job.conns {
            let id = job.first_conn + i;
            let name = format!(
                "echoplex-bench-{}-{:x}-{id}",
                std::process::id(),
                job.pattern.nonce()
            );
            let opened = Sock::open(&job.dest, &name).and_then(|mut sock| {
                sock.register(poll.registry(), Token(conns.len()), None)?;
                Ok(sock)
            });
            match opened {
                Ok(sock) => conns.push(Conn {
                    id,
                    sock,
                    next_seq: 0,
                    slots: Vec::with_capacity(job.config.depth),
                    dead: false,
                    replied: false,
                    write_interest: false,
                }),
                Err(err) => result.connect_failed(|| format!("socket {id}: {}", describe(&err))),
            }
        }
    } else if let Err(err) = &poll {
        result.connect_failed(|| format!("cannot create a poller: {}", describe(err)));
    }
    // A datagram socket counts as connected once it hears back; until then
    // the coordinator learns how many sockets are open.
    job.shared
        .connected
        .fetch_add(conns.len() as u64, Ordering::Relaxed);
    let timeline = job.shared.start();
    let registry = poll
        .as_ref()
        .map_err(|_| ())
        .and_then(|p| p.registry().try_clone().map_err(|_| ()));
    let (Ok(mut poll), Ok(registry)) = (poll, registry) else {
        result.error(|| "cannot create a poller".into());
        job.shared.finish();
        return result;
    };
    let mut worker = Worker {
        job: &job,
        pattern: &job.pattern,
        conns,
        result,
        timeline,
        quota: job.quota,
        completed: 0,
        last_reply: Instant::now(),
        out: Vec::with_capacity(job.config.size),
        buf: vec![0; job.config.size + 1],
        registry,
    };
    worker.run(&mut poll);
    job.shared.finish();
    let mut result = worker.result;
    // A socket that heard nothing back while others did only lost its
    // datagrams (a lossy server can drop one socket's every time); if no
    // socket heard anything, the report's `connected` is 0 and the run
    // says nothing could be reached.
    result.counters.connected = worker.conns.iter().filter(|c| c.replied).count() as u64;
    if result.counters.connected == 0 && result.first_error.is_none() {
        result.first_error = Some("no echo ever came back".into());
    }
    result
}

impl Worker<'_> {
    fn run(&mut self, poll: &mut Poll) {
        let mut events = Events::with_capacity(1024);
        let now = Instant::now();
        self.last_reply = now;
        for i in 0..self.conns.len() {
            for _ in 0..self.job.config.depth {
                self.conns[i].slots.push(Slot {
                    seq: 0,
                    sent: now,
                    measured: false,
                    state: SlotState::Idle,
                });
            }
            for s in 0..self.job.config.depth {
                self.launch(i, s, now);
            }
        }
        let dead_after = (self.job.config.timeout * DEAD_TIMEOUTS).max(DEAD_MIN);
        let mut next_housekeeping = now + HOUSEKEEPING;
        loop {
            let now = Instant::now();
            if self.timeline.measure_end.is_some_and(|end| now >= end) || self.done() {
                break;
            }
            if now.saturating_duration_since(self.last_reply) >= dead_after {
                self.result
                    .error(|| format!("no echo at all for {dead_after:?}: the server seems gone"));
                break;
            }
            let mut wake = next_housekeeping;
            if let Some(end) = self.timeline.measure_end {
                wake = wake.min(end);
            }
            match poll.poll(&mut events, Some(wake.saturating_duration_since(now))) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    self.result
                        .error(|| format!("poll failed: {}", describe(&err)));
                    break;
                }
            }
            for event in events.iter() {
                let i = event.token().0;
                if i >= self.conns.len() || self.conns[i].dead {
                    continue;
                }
                if event.is_readable() || event.is_error() {
                    self.receive(i);
                }
                if event.is_writable() {
                    let now = Instant::now();
                    for s in 0..self.conns[i].slots.len() {
                        if self.conns[i].slots[s].state == SlotState::Unsent {
                            self.transmit(i, s, now);
                        }
                    }
                    let conn = &mut self.conns[i];
                    let blocked = conn.slots.iter().any(|s| s.state == SlotState::Unsent);
                    if conn.write_interest && !blocked && !conn.dead {
                        match conn.sock.register(poll.registry(), Token(i), Some(false)) {
                            Ok(()) => conn.write_interest = false,
                            Err(err) => self.fail(i, err),
                        }
                    }
                }
            }
            let now = Instant::now();
            if now >= next_housekeeping {
                next_housekeeping = now + HOUSEKEEPING;
                self.expire(now);
                self.publish();
            }
        }
        self.publish();
    }

    /// Nothing alive, or (`-n`) the quota used up and every slot settled.
    fn done(&self) -> bool {
        self.conns
            .iter()
            .filter(|c| !c.dead)
            .all(|c| self.quota == Some(0) && c.slots.iter().all(|s| s.state == SlotState::Idle))
    }

    fn publish(&self) {
        let progress = &self.job.shared.progress[self.job.index];
        progress[0].store(self.completed, Ordering::Relaxed);
        progress[1].store(self.result.counters.errors, Ordering::Relaxed);
        progress[2].store(self.result.counters.lost, Ordering::Relaxed);
    }

    /// Gives slot `s` a new message and sends it, if the run wants more.
    fn launch(&mut self, i: usize, s: usize, now: Instant) {
        let measured = now >= self.timeline.measure_start;
        let slot = &mut self.conns[i].slots[s];
        slot.state = SlotState::Idle;
        if self.timeline.measure_end.is_some_and(|end| now >= end) {
            return;
        }
        if measured {
            match &mut self.quota {
                Some(0) => return,
                Some(left) => *left -= 1,
                None => {}
            }
        }
        let conn = &mut self.conns[i];
        conn.slots[s] = Slot {
            seq: conn.next_seq,
            sent: now,
            measured,
            state: SlotState::Unsent,
        };
        conn.next_seq += 1;
        self.transmit(i, s, now);
    }

    fn transmit(&mut self, i: usize, s: usize, now: Instant) {
        let conn = &mut self.conns[i];
        let slot = &mut conn.slots[s];
        self.out.clear();
        self.pattern.write(slot.seq, &mut self.out);
        match conn.sock.send(&self.out) {
            Ok(_) => {
                slot.sent = now;
                slot.state = SlotState::InFlight;
            }
            // Stays Unsent; the writable edge brings it back.
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                if !conn.write_interest {
                    match conn.sock.register(&self.registry, Token(i), Some(true)) {
                        Ok(()) => conn.write_interest = true,
                        Err(err) => self.fail(i, err),
                    }
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => self.fail(i, err),
        }
    }

    /// A socket error: refused before any echo means nobody listens.
    fn fail(&mut self, i: usize, err: io::Error) {
        let conn = &mut self.conns[i];
        let id = conn.id;
        if err.kind() == io::ErrorKind::ConnectionRefused && conn.replied {
            // A refusal after echoes: the server went away mid-run.
            self.result
                .error(|| format!("socket {id}: {}", describe(&err)));
        } else if err.kind() == io::ErrorKind::ConnectionRefused {
            self.result
                .connect_failed(|| format!("socket {id}: refused: nobody listens"));
        } else {
            self.result
                .error(|| format!("socket {id}: {}", describe(&err)));
        }
        conn.dead = true;
    }

    fn receive(&mut self, i: usize) {
        loop {
            let received = self.conns[i].sock.recv(&mut self.buf);
            let n = match received {
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return self.fail(i, err),
            };
            // Fresh per datagram: the echo of a message sent in this very
            // loop may already be waiting.
            let now = Instant::now();
            self.conns[i].replied = true;
            self.last_reply = now;
            self.match_reply(i, n, now);
        }
    }

    fn match_reply(&mut self, i: usize, n: usize, now: Instant) {
        let size = self.pattern.size();
        let mask = self.pattern.seq_mask();
        let data = &self.buf[..n];
        let conn = &self.conns[i];
        let id = conn.id;
        let Some(claimed) = self.pattern.seq_of(data) else {
            return self
                .result
                .error(|| format!("socket {id}: a {n}-byte datagram came back, {size} were sent"));
        };
        let slot = conn
            .slots
            .iter()
            .position(|s| s.state == SlotState::InFlight && s.seq & mask == claimed);
        match slot {
            Some(s) if n == size && self.pattern.check(conn.slots[s].seq, 0, data) => {
                let slot = conn.slots[s];
                self.completed += 1;
                if slot.measured && self.timeline.measure_end.is_none_or(|end| now < end) {
                    self.result.record(slot.sent, now);
                }
                self.launch(i, s, now);
            }
            Some(s) => {
                let seq = conn.slots[s].seq;
                let why = if n != size {
                    format!("socket {id}: echo of message {seq} has {n} bytes, {size} were sent")
                } else {
                    describe_mismatch(self.pattern, id, seq, 0, data)
                };
                self.result.error(|| why);
                // The slot's message was answered, wrongly: move on.
                self.launch(i, s, now);
            }
            None => {
                // Not outstanding: a late echo of a message already counted
                // lost is fine; anything else is an error.
                let mut seq = (conn.next_seq & !mask) | claimed;
                if seq >= conn.next_seq {
                    seq = seq.wrapping_sub(mask.wrapping_add(1));
                }
                if n == size && seq < conn.next_seq && self.pattern.check(seq, 0, data) {
                    self.result.counters.late += 1;
                } else {
                    self.result.error(|| {
                        format!("socket {id}: a datagram came back that matches nothing sent (corrupt or duplicated)")
                    });
                }
            }
        }
    }

    /// Counts as lost every slot older than the timeout, and re-sends it.
    fn expire(&mut self, now: Instant) {
        let timeout = self.job.config.timeout;
        for i in 0..self.conns.len() {
            if self.conns[i].dead {
                continue;
            }
            for s in 0..self.conns[i].slots.len() {
                let slot = self.conns[i].slots[s];
                if slot.state == SlotState::InFlight
                    && now.saturating_duration_since(slot.sent) >= timeout
                {
                    if slot.measured {
                        self.result.counters.lost += 1;
                    }
                    self.launch(i, s, now);
                }
            }
        }
    }
}
