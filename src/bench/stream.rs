//! The stream side of the load generator (tcp, unix): every connection
//! keeps `depth` messages in flight; echoes come back in order, so each
//! received byte is checked against the message it must belong to.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::event::Source;
use mio::{Events, Interest, Poll, Registry, Token};

use super::load::{Dest, Timeline, WorkerJob, WorkerResult};
use super::pattern::Pattern;
use crate::error::describe;

/// Bytes read per `read` call: enough for many echoes at once, so a worker
/// serving many connections makes few syscalls.
const READ_BUFFER: usize = 256 * 1024;

/// How often stalls are looked for and progress is published.
const HOUSEKEEPING: Duration = Duration::from_millis(20);

/// Longest wait for the echoes still owed when a timed run ends.
const DRAIN: Duration = Duration::from_millis(250);

/// A TCP or Unix stream.
enum Sock {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
}

impl Sock {
    fn connect(dest: &Dest) -> io::Result<Sock> {
        match dest {
            Dest::Tcp(addr) => mio::net::TcpStream::connect(*addr).map(Sock::Tcp),
            Dest::Unix(addr) => mio::net::UnixStream::connect_addr(addr).map(Sock::Unix),
            Dest::Udp(_) | Dest::UnixDgram(_) => Err(io::ErrorKind::InvalidInput.into()),
        }
    }

    /// After a writable event: Ok(true) once connected, Ok(false) while
    /// still connecting, Err if the connect failed.
    fn check_connected(&self) -> io::Result<bool> {
        let (error, peer) = match self {
            Sock::Tcp(s) => (s.take_error()?, s.peer_addr().map(drop)),
            Sock::Unix(s) => (s.take_error()?, s.peer_addr().map(drop)),
        };
        if let Some(err) = error {
            return Err(err);
        }
        match peer {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(err) => Err(err),
        }
    }

    fn opened(&self) {
        if let Sock::Tcp(s) = self {
            // Small echoes must not wait for Nagle.
            let _ = s.set_nodelay(true);
        }
    }
}

impl Read for Sock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.read(buf),
            Sock::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Sock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.write(buf),
            Sock::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Source for Sock {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => s.register(r, t, i),
            Sock::Unix(s) => s.register(r, t, i),
        }
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => s.reregister(r, t, i),
            Sock::Unix(s) => s.reregister(r, t, i),
        }
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => s.deregister(r),
            Sock::Unix(s) => s.deregister(r),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    Open,
    Dead,
}

/// One connection of the closed loop.
struct Conn {
    id: usize,
    sock: Sock,
    state: State,
    next_send: u64,
    next_recv: u64,
    /// Bytes of message `next_recv` already received.
    recv_off: usize,
    /// Send time of every message in flight, oldest first, and whether it
    /// belongs to the measured window.
    in_flight: VecDeque<(Instant, bool)>,
    /// Messages not yet taken by the socket: `out[out_pos..]`.
    out: Vec<u8>,
    out_pos: usize,
    /// Last time bytes came back (or the first message went out).
    last_progress: Instant,
    /// Registered for writable: only while a write was partial, so the
    /// kernel does not wake the loop each time send-buffer space frees.
    write_interest: bool,
}

/// A worker: its connections and what it has counted.
struct Worker<'a> {
    job: &'a WorkerJob,
    pattern: &'a Pattern,
    conns: Vec<Conn>,
    result: WorkerResult,
    timeline: Timeline,
    /// Measured messages still to send (`-n`).
    quota: Option<u64>,
    /// Echoes completed, warm-up included (for progress).
    completed: u64,
    live: usize,
    /// The read buffer, shared by all connections.
    scratch: Vec<u8>,
    /// The run is over: finish writing, send no new message.
    draining: bool,
}

/// Runs one stream worker to the end of its share of the run.
pub fn run(job: WorkerJob) -> WorkerResult {
    let mut result = WorkerResult::new();
    let mut poll = match Poll::new() {
        Ok(poll) => Some(poll),
        Err(err) => {
            result.connect_failed(|| format!("cannot create a poller: {}", describe(&err)));
            None
        }
    };
    let mut events = Events::with_capacity(1024);
    let conns = match &mut poll {
        Some(poll) => connect_all(&job, poll, &mut events, &mut result),
        None => Vec::new(),
    };
    let live = conns.iter().filter(|c| c.state == State::Open).count();
    result.counters.connected = live as u64;
    job.shared
        .connected
        .fetch_add(live as u64, Ordering::Relaxed);
    let timeline = job.shared.start();
    let Some(mut poll) = poll else {
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
        live,
        scratch: vec![0; READ_BUFFER],
        draining: false,
    };
    worker.run(&mut poll, &mut events);
    worker.result
}

/// Opens this worker's connections and waits (bounded) until each is
/// connected or has failed.
fn connect_all(
    job: &WorkerJob,
    poll: &mut Poll,
    events: &mut Events,
    result: &mut WorkerResult,
) -> Vec<Conn> {
    let start = Instant::now();
    let deadline = start + job.config.connect_timeout;
    let mut conns = Vec::with_capacity(job.conns);
    let mut pending = 0;
    // A Unix listener with a full backlog refuses at once with EAGAIN
    // (TCP would queue the SYN): try those again shortly.
    let mut retry: Vec<usize> = (0..job.conns).map(|i| job.first_conn + i).collect();
    loop {
        for id in std::mem::take(&mut retry) {
            let token = Token(conns.len());
            let sock = Sock::connect(&job.dest).and_then(|mut sock| {
                poll.registry().register(
                    &mut sock,
                    token,
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                Ok(sock)
            });
            match sock {
                Ok(sock) => {
                    conns.push(Conn {
                        id,
                        sock,
                        state: State::Connecting,
                        next_send: 0,
                        next_recv: 0,
                        recv_off: 0,
                        in_flight: VecDeque::with_capacity(job.config.depth),
                        out: Vec::new(),
                        out_pos: 0,
                        last_progress: start,
                        write_interest: true,
                    });
                    pending += 1;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => retry.push(id),
                Err(err) => result.connect_failed(|| {
                    format!("connection {id}: connect failed: {}", describe(&err))
                }),
            }
        }
        let now = Instant::now();
        if (pending == 0 && retry.is_empty()) || now >= deadline {
            break;
        }
        let mut wait = deadline - now;
        if !retry.is_empty() {
            wait = wait.min(Duration::from_millis(5));
        }
        if let Err(err) = poll_once(poll, events, Some(wait)) {
            result.connect_failed(|| format!("poll failed: {}", describe(&err)));
            break;
        }
        for event in events.iter() {
            let Some(conn) = conns.get_mut(event.token().0) else {
                continue;
            };
            if conn.state != State::Connecting {
                continue;
            }
            match conn.sock.check_connected() {
                Ok(true) => {
                    conn.sock.opened();
                    conn.state = State::Open;
                    pending -= 1;
                    // Writable was needed to see the connect complete; from
                    // now on only a partial write asks for it.
                    let token = event.token();
                    if poll
                        .registry()
                        .reregister(&mut conn.sock, token, Interest::READABLE)
                        .is_ok()
                    {
                        conn.write_interest = false;
                    }
                }
                Ok(false) => {}
                Err(err) => {
                    let id = conn.id;
                    result.connect_failed(|| {
                        format!("connection {id}: connect failed: {}", describe(&err))
                    });
                    conn.state = State::Dead;
                    pending -= 1;
                }
            }
        }
    }
    let timeout = job.config.connect_timeout;
    for id in retry {
        result.connect_failed(|| {
            format!("connection {id}: the listener's backlog stayed full for {timeout:?}")
        });
    }
    for conn in &mut conns {
        if conn.state == State::Connecting {
            let id = conn.id;
            result
                .connect_failed(|| format!("connection {id}: connect timed out after {timeout:?}"));
            conn.state = State::Dead;
        }
    }
    conns
}

fn poll_once(poll: &mut Poll, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
    match poll.poll(events, timeout) {
        Err(err) if err.kind() == io::ErrorKind::Interrupted => Ok(()),
        other => other,
    }
}

impl Worker<'_> {
    fn run(&mut self, poll: &mut Poll, events: &mut Events) {
        let now = Instant::now();
        for i in 0..self.conns.len() {
            if self.conns[i].state == State::Open {
                self.send_more(poll.registry(), i, now);
            }
        }
        let mut next_housekeeping = now + HOUSEKEEPING;
        loop {
            let now = Instant::now();
            if self.timeline.measure_end.is_some_and(|end| now >= end) || self.done() {
                break;
            }
            let mut wake = next_housekeeping;
            if let Some(end) = self.timeline.measure_end {
                wake = wake.min(end);
            }
            if let Err(err) = poll_once(poll, events, Some(wake.saturating_duration_since(now))) {
                self.result
                    .error(|| format!("poll failed: {}", describe(&err)));
                break;
            }
            for event in events.iter() {
                let i = event.token().0;
                if i >= self.conns.len() || self.conns[i].state != State::Open {
                    continue;
                }
                // A clock read per event (vDSO, tens of ns) keeps latencies
                // honest when one poll returns many events.
                let now = Instant::now();
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.receive(i, now);
                }
                if self.conns[i].state == State::Open {
                    self.send_more(poll.registry(), i, now);
                }
            }
            let now = Instant::now();
            if now >= next_housekeeping {
                next_housekeeping = now + HOUSEKEEPING;
                self.find_stalls(now);
                self.publish();
            }
        }
        self.publish();
        self.job.shared.finish();
        self.drain(poll, events);
    }

    /// After the window: send nothing more and take in the echoes still
    /// owed (briefly, uncounted), so closing does not reset connections
    /// under a server that is still writing to them.
    fn drain(&mut self, poll: &mut Poll, events: &mut Events) {
        self.draining = true;
        let deadline = Instant::now() + DRAIN.min(self.job.config.timeout);
        while self
            .conns
            .iter()
            .any(|c| c.state == State::Open && !c.in_flight.is_empty())
        {
            let now = Instant::now();
            if now >= deadline || poll_once(poll, events, Some(deadline - now)).is_err() {
                break;
            }
            for event in events.iter() {
                let i = event.token().0;
                if i < self.conns.len() && self.conns[i].state == State::Open {
                    self.receive(i, Instant::now());
                    if self.conns[i].state == State::Open {
                        self.send_more(poll.registry(), i, Instant::now());
                    }
                }
            }
        }
    }

    /// `-n`: all measured messages sent and echoed; or nothing left alive.
    fn done(&self) -> bool {
        if self.live == 0 {
            return true;
        }
        self.quota == Some(0)
            && self
                .conns
                .iter()
                .all(|c| c.state != State::Open || c.in_flight.is_empty())
    }

    fn publish(&self) {
        let progress = &self.job.shared.progress[self.job.index];
        progress[0].store(self.completed, Ordering::Relaxed);
        progress[1].store(self.result.counters.errors, Ordering::Relaxed);
    }

    fn kill(&mut self, i: usize, why: impl FnOnce() -> String) {
        let conn = &mut self.conns[i];
        if conn.state == State::Dead {
            return;
        }
        conn.state = State::Dead;
        self.live -= 1;
        self.result.error(why);
    }

    /// Reads until the socket is drained, checking every byte.
    fn receive(&mut self, i: usize, now: Instant) {
        // Taken out so `consume` can borrow the worker meanwhile.
        let mut scratch = std::mem::take(&mut self.scratch);
        loop {
            let conn = &mut self.conns[i];
            match conn.sock.read(&mut scratch) {
                Ok(0) => {
                    let id = conn.id;
                    let owed = conn.in_flight.len();
                    self.kill(i, || {
                        format!("connection {id}: closed by the server with {owed} echoes owed")
                    });
                    break;
                }
                Ok(n) => {
                    conn.last_progress = now;
                    if let Err(why) = self.consume(i, &scratch[..n], now) {
                        self.kill(i, || why);
                        break;
                    }
                    // A short read drained the socket; the next arrival
                    // raises a new edge, so skip the read that would only
                    // say WouldBlock.
                    if n < scratch.len() {
                        break;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    let id = conn.id;
                    self.kill(i, || {
                        format!("connection {id}: read failed: {}", describe(&err))
                    });
                    break;
                }
            }
        }
        self.scratch = scratch;
    }

    /// Checks received bytes against the messages in flight, in order.
    fn consume(&mut self, i: usize, mut data: &[u8], now: Instant) -> Result<(), String> {
        let size = self.pattern.size();
        let measure_end = self.timeline.measure_end;
        let conn = &mut self.conns[i];
        while !data.is_empty() {
            if conn.in_flight.is_empty() {
                return Err(format!(
                    "connection {}: {} bytes came back that were never sent",
                    conn.id,
                    data.len()
                ));
            }
            let take = (size - conn.recv_off).min(data.len());
            if !self
                .pattern
                .check(conn.next_recv, conn.recv_off, &data[..take])
            {
                return Err(describe_mismatch(
                    self.pattern,
                    conn.id,
                    conn.next_recv,
                    conn.recv_off,
                    &data[..take],
                ));
            }
            conn.recv_off += take;
            data = &data[take..];
            if conn.recv_off == size {
                conn.recv_off = 0;
                conn.next_recv += 1;
                self.completed += 1;
                if let Some((sent, measured)) = conn.in_flight.pop_front() {
                    if measured && measure_end.is_none_or(|end| now < end) {
                        self.result.record(sent, now);
                    }
                }
            }
        }
        Ok(())
    }

    /// Tops the connection up to `depth` messages in flight and writes what
    /// the socket takes.
    fn send_more(&mut self, registry: &Registry, i: usize, now: Instant) {
        let depth = self.job.config.depth;
        let measured = now >= self.timeline.measure_start;
        let conn = &mut self.conns[i];
        if conn.out_pos == conn.out.len() {
            conn.out.clear();
            conn.out_pos = 0;
        }
        while conn.in_flight.len() < depth && !self.draining {
            if measured {
                match &mut self.quota {
                    Some(0) => break,
                    Some(left) => *left -= 1,
                    None => {}
                }
            }
            if conn.in_flight.is_empty() {
                conn.last_progress = now;
            }
            self.pattern.write(conn.next_send, &mut conn.out);
            conn.next_send += 1;
            conn.in_flight.push_back((now, measured));
        }
        while conn.out_pos < conn.out.len() {
            match conn.sock.write(&conn.out[conn.out_pos..]) {
                Ok(0) => break,
                Ok(n) => conn.out_pos += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    let id = conn.id;
                    self.kill(i, || {
                        format!("connection {id}: write failed: {}", describe(&err))
                    });
                    return;
                }
            }
        }
        let blocked = conn.out_pos < conn.out.len();
        if blocked != conn.write_interest {
            let interest = if blocked {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            match registry.reregister(&mut conn.sock, Token(i), interest) {
                Ok(()) => conn.write_interest = blocked,
                Err(err) => {
                    let id = conn.id;
                    self.kill(i, || {
                        format!("connection {id}: reregister: {}", describe(&err))
                    });
                }
            }
        }
    }

    fn find_stalls(&mut self, now: Instant) {
        let timeout = self.job.config.timeout;
        for i in 0..self.conns.len() {
            let conn = &self.conns[i];
            if conn.state == State::Open
                && !conn.in_flight.is_empty()
                && now.saturating_duration_since(conn.last_progress) >= timeout
            {
                let (id, owed) = (conn.id, conn.in_flight.len());
                self.kill(i, || {
                    format!("connection {id}: no echo for {timeout:?} with {owed} messages owed")
                });
            }
        }
    }
}

/// Says where an echo first differs from what was sent.
pub fn describe_mismatch(
    pattern: &Pattern,
    conn: usize,
    seq: u64,
    offset: usize,
    got: &[u8],
) -> String {
    let mut want = Vec::with_capacity(pattern.size());
    pattern.write(seq, &mut want);
    let at = got
        .iter()
        .zip(&want[offset..])
        .position(|(a, b)| a != b)
        .unwrap_or(0);
    let what = if offset + at < pattern.header_len() {
        "sequence header (reordered, duplicated or corrupt)"
    } else {
        "payload (corrupt)"
    };
    format!(
        "connection {conn}: echo of message {seq} differs at byte {}: expected {:#04x}, got {:#04x} in the {what}",
        offset + at,
        want[offset + at],
        got[at]
    )
}
