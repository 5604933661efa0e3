//! The datagram side of the load generator (udp, unix-dgram): each socket
//! keeps `depth` datagrams in flight in slots. A reply is matched to its
//! slot by the sequence number in its header and checked whole; a slot not
//! answered within the timeout counts as lost and is re-sent under a new
//! sequence number, so a lossy server slows the run but never hangs it.

use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};

use super::types::{WorkerJob, WorkerResult};
use super::worker::{Ctx, Traffic};
use crate::error::describe;
use crate::probe::socket::{ClientBind, Sock};

/// Open loop: datagrams unanswered on one socket beyond which it takes no
/// new one.
const MAX_SLOTS: usize = 4096;

/// With nothing at all echoed for this many timeouts (and at least
/// `DEAD_MIN`), the server is taken for gone and the worker stops.
const DEAD_TIMEOUTS: u32 = 5;
const DEAD_MIN: Duration = Duration::from_secs(2);

/// Registers (`writable` None) or re-registers the socket: writable only
/// while a send would block, so freed buffer space does not wake the loop.
fn register(
    sock: &Sock,
    registry: &Registry,
    token: Token,
    writable: Option<bool>,
) -> io::Result<()> {
    let interest = if writable == Some(true) {
        Interest::READABLE | Interest::WRITABLE
    } else {
        Interest::READABLE
    };
    let fd = sock.as_raw_fd();
    if writable.is_some() {
        registry.reregister(&mut SourceFd(&fd), token, interest)
    } else {
        registry.register(&mut SourceFd(&fd), token, interest)
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
    /// When it was due (open loop; else its send time).
    due: Instant,
    sent: Instant,
    measured: bool,
    state: SlotState,
}

/// One datagram socket of a worker, and the messages it has out.
struct DgramLink {
    id: usize,
    sock: Sock,
    next_seq: u64,
    slots: Vec<Slot>,
    dead: bool,
    replied: bool,
    write_interest: bool,
    /// The highest sequence number echoed so far: an echo below it came
    /// back after a later message's (reordered).
    highest: Option<u64>,
    /// The previous echo's round trip, µs, and RFC 3550's running
    /// interarrival jitter over the round trips (J += (|D| - J) / 16).
    last_rtt: Option<f64>,
    jitter: f64,
    /// Round trips the jitter has seen beyond the first.
    jitter_samples: u64,
}

/// A worker's datagram sockets.
pub struct Datagrams {
    conns: Vec<DgramLink>,
    /// Open loop: the socket the next due datagram tries first.
    next_conn: usize,
    last_reply: Instant,
    /// One received datagram (one byte more than a message, so a longer
    /// echo shows).
    buf: Vec<u8>,
    /// One message being sent.
    out: Vec<u8>,
}

impl Traffic for Datagrams {
    const HOUSEKEEPING: Duration = Duration::from_millis(10);

    fn open(
        job: &WorkerJob,
        poll: &mut Poll,
        _events: &mut Events,
        result: &mut WorkerResult,
    ) -> Datagrams {
        let mut conns = Vec::with_capacity(job.conns);
        for i in 0..job.conns {
            let id = job.first_conn + i;
            // The server answers to our address: an abstract name needs
            // no file and vanishes with the socket.
            let name = format!(
                "echoplex-bench-{}-{:x}-{id}",
                std::process::id(),
                job.pattern.nonce()
            );
            let opened = Sock::begin(job.dest.kind, &job.dest.addr, ClientBind::Abstract(&name))
                .and_then(|sock| {
                    register(&sock, poll.registry(), Token(conns.len()), None)?;
                    Ok(sock)
                });
            match opened {
                Ok(sock) => conns.push(DgramLink {
                    id,
                    sock,
                    next_seq: 0,
                    slots: Vec::with_capacity(job.config.depth),
                    dead: false,
                    replied: false,
                    write_interest: false,
                    highest: None,
                    last_rtt: None,
                    jitter: 0.0,
                    jitter_samples: 0,
                }),
                Err(err) => result.connect_failed(|| format!("socket {id}: {}", describe(&err))),
            }
        }
        Datagrams {
            conns,
            next_conn: 0,
            last_reply: Instant::now(),
            buf: vec![0; job.config.size + 1],
            out: Vec::with_capacity(job.config.size),
        }
    }

    /// A datagram socket counts as connected once it hears back; until
    /// then the coordinator learns how many sockets are open.
    fn connected(&self) -> u64 {
        self.conns.len() as u64
    }

    fn start(&mut self, ctx: &mut Ctx, now: Instant) {
        self.last_reply = now;
        let depth = ctx.job.config.depth;
        for i in 0..self.conns.len() {
            for _ in 0..depth {
                self.conns[i].slots.push(Slot {
                    seq: 0,
                    due: now,
                    sent: now,
                    measured: false,
                    state: SlotState::Idle,
                });
            }
            for s in 0..depth {
                self.launch(ctx, i, s, now);
            }
        }
    }

    fn event(&mut self, ctx: &mut Ctx, event: &Event) {
        let i = event.token().0;
        if i >= self.conns.len() || self.conns[i].dead {
            return;
        }
        if event.is_readable() || event.is_error() {
            self.receive(ctx, i);
        }
        if event.is_writable() {
            let now = Instant::now();
            for s in 0..self.conns[i].slots.len() {
                if self.conns[i].slots[s].state == SlotState::Unsent {
                    self.transmit(ctx, i, s, now);
                }
            }
            let conn = &mut self.conns[i];
            let blocked = conn.slots.iter().any(|s| s.state == SlotState::Unsent);
            if conn.write_interest && !blocked && !conn.dead {
                match register(&conn.sock, &ctx.registry, Token(i), Some(false)) {
                    Ok(()) => conn.write_interest = false,
                    Err(err) => self.fail(ctx, i, err),
                }
            }
        }
    }

    fn resume(&mut self, ctx: &mut Ctx, now: Instant) {
        if ctx.open_loop() {
            return self.send_due(ctx, now);
        }
        for i in 0..self.conns.len() {
            for s in 0..self.conns[i].slots.len() {
                if !self.conns[i].dead && self.conns[i].slots[s].state == SlotState::Idle {
                    self.launch(ctx, i, s, now);
                }
            }
        }
    }

    /// Counts as lost every slot older than the timeout, and re-sends it;
    /// gives up when nothing at all came back for long.
    fn housekeeping(&mut self, ctx: &mut Ctx, now: Instant) {
        let timeout = ctx.job.config.timeout;
        let dead_after = (timeout * DEAD_TIMEOUTS).max(DEAD_MIN);
        if now.saturating_duration_since(self.last_reply) >= dead_after {
            ctx.result
                .error(|| format!("no echo at all for {dead_after:?}: the server seems gone"));
            ctx.give_up();
            return;
        }
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
                        ctx.result.counters.lost += 1;
                    }
                    self.launch(ctx, i, s, now);
                }
            }
        }
    }

    /// Nothing alive, or (`-n`) the quota used up and every slot settled.
    fn done(&self, ctx: &Ctx) -> bool {
        self.conns
            .iter()
            .filter(|c| !c.dead)
            .all(|c| ctx.quota_used() && c.slots.iter().all(|s| s.state == SlotState::Idle))
    }

    /// A socket that heard nothing back while others did only lost its
    /// datagrams (a lossy server can drop one socket's every time); if no
    /// socket heard anything, the report's `connected` is 0 and the run
    /// says nothing could be reached.
    /// Waits for the window's datagrams still in flight, each until its
    /// own timeout (then lost) or the wait's end.
    fn drain(&mut self, ctx: &mut Ctx, poll: &mut Poll, events: &mut Events) {
        let deadline = ctx.wait_deadline(Instant::now());
        let timeout = ctx.job.config.timeout;
        loop {
            let now = Instant::now();
            let mut pending = false;
            for conn in self.conns.iter_mut().filter(|c| !c.dead) {
                for slot in conn.slots.iter_mut() {
                    if slot.state != SlotState::InFlight {
                        continue;
                    }
                    if now.saturating_duration_since(slot.sent) >= timeout {
                        if slot.measured {
                            ctx.result.counters.lost += 1;
                        }
                        slot.state = SlotState::Idle;
                    } else if slot.measured {
                        pending = true;
                    }
                }
            }
            if !pending || now >= deadline || ctx.interrupted() {
                return;
            }
            let wait = (deadline - now).min(Self::HOUSEKEEPING);
            if super::worker::poll_once(poll, events, Some(wait)).is_err() {
                return;
            }
            for event in events.iter() {
                let i = event.token().0;
                if i < self.conns.len() && !self.conns[i].dead && event.is_readable() {
                    self.receive(ctx, i);
                }
            }
        }
    }

    /// What is still unanswered (or never left the socket) is lost.
    fn settle(&mut self, ctx: &mut Ctx, now: Instant) {
        for conn in &mut self.conns {
            for slot in conn.slots.iter_mut() {
                if slot.measured && slot.state != SlotState::Idle {
                    ctx.owed(slot.due, now, slot.state == SlotState::InFlight);
                }
                slot.state = SlotState::Idle;
            }
        }
    }

    fn close(self, ctx: &mut Ctx) {
        for conn in &self.conns {
            // Jitter needs two round trips: a socket with fewer says nothing.
            if conn.jitter_samples > 0 {
                ctx.result.jitter.0 += conn.jitter;
                ctx.result.jitter.1 += 1;
            }
        }
        let result = &mut ctx.result;
        result.counters.connected = self.conns.iter().filter(|c| c.replied).count() as u64;
        result.counters.answered = result.counters.connected;
        if result.counters.connected == 0 && result.first_error.is_none() {
            result.first_error = Some("no echo ever came back".into());
        }
    }
}

impl Datagrams {
    /// Open loop: every datagram due by now goes out, each on the next
    /// live socket (round robin), in a free slot or a new one: as many in
    /// flight as the schedule makes. Answered or lost slots become free
    /// (in open loop `launch` only frees: `admit` says no).
    fn send_due(&mut self, ctx: &mut Ctx, now: Instant) {
        let n = self.conns.len();
        loop {
            // A socket with MAX_SLOTS datagrams unanswered (the server is
            // far behind) takes no more until some are answered or lost:
            // memory stays bounded, and the wait is counted as held back.
            let room = |c: &DgramLink| {
                c.slots.len() < MAX_SLOTS || c.slots.iter().any(|s| s.state == SlotState::Idle)
            };
            let live = (0..n)
                .map(|k| (self.next_conn + k) % n)
                .filter(|&i| !self.conns[i].dead);
            let mut any_live = false;
            let mut pick = None;
            for i in live {
                any_live = true;
                if room(&self.conns[i]) {
                    pick = Some(i);
                    break;
                }
            }
            let Some(i) = pick else {
                if any_live && ctx.next_wake().is_some_and(|due| due <= now) {
                    ctx.set_held(true);
                }
                return;
            };
            let Some((due, measured)) = ctx.due(now) else {
                ctx.set_held(false);
                return;
            };
            self.next_conn = (i + 1) % n;
            let conn = &mut self.conns[i];
            let slot = Slot {
                seq: conn.next_seq,
                due,
                sent: now,
                measured,
                state: SlotState::Unsent,
            };
            conn.next_seq += 1;
            let s = match conn.slots.iter().position(|s| s.state == SlotState::Idle) {
                Some(s) => {
                    conn.slots[s] = slot;
                    s
                }
                None => {
                    conn.slots.push(slot);
                    conn.slots.len() - 1
                }
            };
            self.transmit(ctx, i, s, now);
        }
    }

    /// Gives slot `s` a new message and sends it, if the run wants more.
    fn launch(&mut self, ctx: &mut Ctx, i: usize, s: usize, now: Instant) {
        let conn = &mut self.conns[i];
        conn.slots[s].state = SlotState::Idle;
        let Some(measured) = ctx.admit(now) else {
            return;
        };
        conn.slots[s] = Slot {
            seq: conn.next_seq,
            due: now,
            sent: now,
            measured,
            state: SlotState::Unsent,
        };
        conn.next_seq += 1;
        self.transmit(ctx, i, s, now);
    }

    fn transmit(&mut self, ctx: &mut Ctx, i: usize, s: usize, now: Instant) {
        let conn = &mut self.conns[i];
        let slot = &mut conn.slots[s];
        self.out.clear();
        ctx.pattern.write(slot.seq, &mut self.out);
        match conn.sock.send(&self.out) {
            Ok(_) => {
                slot.sent = now;
                slot.state = SlotState::InFlight;
            }
            // Stays Unsent; the writable edge brings it back.
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                if !conn.write_interest {
                    match register(&conn.sock, &ctx.registry, Token(i), Some(true)) {
                        Ok(()) => conn.write_interest = true,
                        Err(err) => self.fail(ctx, i, err),
                    }
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => self.fail(ctx, i, err),
        }
    }

    /// A socket error: refused before any echo means nobody listens.
    fn fail(&mut self, ctx: &mut Ctx, i: usize, err: io::Error) {
        let conn = &mut self.conns[i];
        let id = conn.id;
        if err.kind() == io::ErrorKind::ConnectionRefused && conn.replied {
            // A refusal after echoes: the server went away mid-run.
            ctx.result
                .error(|| format!("socket {id}: {}", describe(&err)));
        } else if err.kind() == io::ErrorKind::ConnectionRefused {
            ctx.result
                .connect_failed(|| format!("socket {id}: refused: nobody listens"));
        } else {
            ctx.result
                .error(|| format!("socket {id}: {}", describe(&err)));
        }
        conn.dead = true;
    }

    fn receive(&mut self, ctx: &mut Ctx, i: usize) {
        loop {
            let received = self.conns[i].sock.recv(&mut self.buf);
            let n = match received {
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return self.fail(ctx, i, err),
            };
            // Fresh per datagram: the echo of a message sent in this very
            // loop may already be waiting.
            let now = Instant::now();
            self.conns[i].replied = true;
            self.last_reply = now;
            self.match_reply(ctx, i, n, now);
        }
    }

    fn match_reply(&mut self, ctx: &mut Ctx, i: usize, n: usize, now: Instant) {
        let pattern = ctx.pattern;
        let size = pattern.size();
        let mask = pattern.seq_mask();
        let data = &self.buf[..n];
        let conn = &self.conns[i];
        let id = conn.id;
        let Some(claimed) = pattern.seq_of(data) else {
            return ctx
                .result
                .error(|| format!("socket {id}: a {n}-byte datagram came back, {size} were sent"));
        };
        let slot = conn
            .slots
            .iter()
            .position(|s| s.state == SlotState::InFlight && s.seq & mask == claimed);
        match slot {
            Some(s) if n == size && pattern.check(conn.slots[s].seq, 0, data) => {
                let slot = conn.slots[s];
                let conn = &mut self.conns[i];
                match conn.highest {
                    Some(highest) if slot.seq < highest => {
                        if slot.measured {
                            ctx.result.counters.reordered += 1;
                        }
                    }
                    _ => conn.highest = Some(slot.seq),
                }
                let rtt = now.saturating_duration_since(slot.sent).as_nanos() as f64 / 1e3;
                if let Some(last) = conn.last_rtt {
                    conn.jitter += ((rtt - last).abs() - conn.jitter) / 16.0;
                    conn.jitter_samples += 1;
                }
                conn.last_rtt = Some(rtt);
                ctx.echoed(slot.due, slot.sent, slot.measured, now);
                self.launch(ctx, i, s, now);
            }
            Some(s) => {
                let seq = conn.slots[s].seq;
                let why = if n != size {
                    format!("socket {id}: echo of message {seq} has {n} bytes, {size} were sent")
                } else {
                    pattern.mismatch(seq, 0, data, &format!("socket {id}: echo of message {seq}"))
                };
                ctx.result.error(|| why);
                // The slot's message was answered, wrongly: move on.
                self.launch(ctx, i, s, now);
            }
            None => {
                // Not outstanding: a late echo of a message already counted
                // lost is fine; anything else is an error.
                let mut seq = (conn.next_seq & !mask) | claimed;
                if seq >= conn.next_seq {
                    seq = seq.wrapping_sub(mask.wrapping_add(1));
                }
                if n == size && seq < conn.next_seq && pattern.check(seq, 0, data) {
                    ctx.result.counters.late += 1;
                } else {
                    ctx.result.error(|| {
                        format!("socket {id}: a datagram came back that matches nothing sent (corrupt or duplicated)")
                    });
                }
            }
        }
    }
}
