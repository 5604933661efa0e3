//! A reference echo server whose behaviour is known exactly, for checking
//! `bench`'s figures against derivations instead of against itself: a fixed
//! delay per message, whole-server stalls (periodic, or one from a given
//! time), every K-th datagram dropped or held back behind the next one,
//! and counters of its own. One thread runs everything, so a stall stops
//! every socket at once, as a stopped process would; the kernel keeps
//! accepting and buffering meanwhile, as it does for a stopped process.
//!
//! It speaks raw echo on a TCP port and a UDP port, and enough HTTP/1.1
//! (keep-alive `GET`, a fixed small answer) on another TCP port for `wrk`,
//! all under one schedule.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token};

/// Whether the load (and the reference server) may run at real-time
/// priority: root, with `chrt` present. Timing against ground truth is
/// less at the mercy of a busy machine then.
pub fn realtime() -> bool {
    super::offline::is_root()
        && std::process::Command::new("chrt")
            .args(["-f", "1", "true"])
            .status()
            .is_ok_and(|s| s.success())
}

/// A command for `program`, under `chrt -f 1` when `rt`.
pub fn command(program: &str, rt: bool) -> std::process::Command {
    if rt {
        let mut c = std::process::Command::new("chrt");
        c.args(["-f", "1", program]);
        c
    } else {
        std::process::Command::new(program)
    }
}

/// What the server does.
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    /// Every message (stream chunk, datagram, HTTP request) is answered
    /// this long after it was read.
    pub delay: Duration,
    /// Datagrams: odd-numbered ones get this much more delay (jitter).
    pub alternate_delay: Duration,
    /// Stall for `.1` at the start of every `.0`, from the clock's start.
    pub periodic_stall: Option<(Duration, Duration)>,
    /// Stall from this time after the clock's start, for `.1`.
    pub stall_at: Option<(Duration, Duration)>,
    /// Drop every K-th datagram (the K-th, 2K-th, ...).
    pub drop_every: Option<u64>,
    /// Hold every K-th datagram back and answer it right after the next.
    pub swap_every: Option<u64>,
    /// The clock starts at the first byte or datagram on an echo port
    /// (else when the server starts).
    pub clock_from_first_message: bool,
}

/// The server's own counters.
#[derive(Debug, Default)]
pub struct Counters {
    /// Bytes read on the stream echo port.
    pub stream_bytes_in: AtomicU64,
    /// Bytes written back on it.
    pub stream_bytes_out: AtomicU64,
    /// Datagrams received.
    pub datagrams_in: AtomicU64,
    /// Datagrams echoed.
    pub datagrams_out: AtomicU64,
    /// Datagrams dropped on purpose.
    pub dropped: AtomicU64,
    /// Datagrams answered after their successor.
    pub swapped: AtomicU64,
    /// HTTP requests answered.
    pub http_requests: AtomicU64,
    /// Stalls begun.
    pub stalls: AtomicU64,
    /// When each datagram was read (the first 100,000), for the
    /// schedule's gap statistics.
    pub arrivals: std::sync::Mutex<Vec<Instant>>,
}

/// A running reference server; stops when dropped.
pub struct RefServer {
    /// The raw echo port (TCP).
    pub tcp: SocketAddr,
    /// The UDP echo port.
    pub udp: SocketAddr,
    /// The HTTP port (for `wrk`).
    pub http: SocketAddr,
    /// Its counters.
    pub counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for RefServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

const TCP: Token = Token(0);
const UDP: Token = Token(1);
const HTTP: Token = Token(2);
const FIRST_CONN: usize = 3;

/// The answer to every HTTP request.
const HTTP_ANSWER: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok";

struct Conn {
    sock: TcpStream,
    http: bool,
    /// HTTP: bytes of a request not yet complete.
    input: Vec<u8>,
    /// Answers not yet due: when, what.
    pending: VecDeque<(Instant, Vec<u8>)>,
    /// Due answers the socket has not taken yet.
    out: Vec<u8>,
    closed: bool,
}

impl RefServer {
    /// Starts a server with `behaviour` on loopback ports chosen by the
    /// kernel. With `realtime`, its thread asks for SCHED_FIFO 1 (as the
    /// project's measurements run under `chrt -f 1`; ignored when not
    /// permitted), so a busy machine does not add stalls of its own.
    pub fn start(behaviour: Behaviour, realtime: bool) -> RefServer {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let tcp = TcpListener::bind(any).expect("bind tcp");
        let http = TcpListener::bind(any).expect("bind http");
        let udp = UdpSocket::bind(any).expect("bind udp");
        let addrs = (
            tcp.local_addr().expect("addr"),
            udp.local_addr().expect("addr"),
            http.local_addr().expect("addr"),
        );
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (counters, stop) = (Arc::clone(&counters), Arc::clone(&stop));
            thread::Builder::new()
                .name("refserver".into())
                .spawn(move || {
                    if realtime {
                        let param = libc::sched_param { sched_priority: 1 };
                        // SAFETY: sets this thread's own policy; no memory shared.
                        unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
                    }
                    serve(behaviour, tcp, udp, http, &counters, &stop)
                })
                .expect("spawn refserver")
        };
        RefServer {
            tcp: addrs.0,
            udp: addrs.1,
            http: addrs.2,
            counters,
            stop,
            thread: Some(thread),
        }
    }
}

/// Whether `t` (since the clock's start) falls in a stall; if so, when it ends.
fn stall_end(b: &Behaviour, t: Duration) -> Option<Duration> {
    if let Some((at, length)) = b.stall_at {
        if t >= at && t < at + length {
            return Some(at + length);
        }
    }
    if let Some((period, length)) = b.periodic_stall {
        let into = Duration::from_nanos((t.as_nanos() % period.as_nanos()) as u64);
        if into < length {
            return Some(t - into + length);
        }
    }
    None
}

/// When the next stall after `t` begins.
fn next_stall(b: &Behaviour, t: Duration) -> Option<Duration> {
    let mut next: Option<Duration> = None;
    if let Some((at, _)) = b.stall_at {
        if at > t {
            next = Some(at);
        }
    }
    if let Some((period, _)) = b.periodic_stall {
        let k = t.as_nanos() / period.as_nanos() + 1;
        let at = Duration::from_nanos((k * period.as_nanos()) as u64);
        next = Some(next.map_or(at, |n| n.min(at)));
    }
    next
}

fn serve(
    b: Behaviour,
    mut tcp: TcpListener,
    mut udp: UdpSocket,
    mut http: TcpListener,
    counters: &Counters,
    stop: &AtomicBool,
) {
    let mut poll = Poll::new().expect("poll");
    let mut events = Events::with_capacity(256);
    poll.registry()
        .register(&mut tcp, TCP, Interest::READABLE)
        .expect("register");
    poll.registry()
        .register(&mut udp, UDP, Interest::READABLE)
        .expect("register");
    poll.registry()
        .register(&mut http, HTTP, Interest::READABLE)
        .expect("register");
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut datagrams: VecDeque<(Instant, SocketAddr, Vec<u8>)> = VecDeque::new();
    let mut held: Option<(SocketAddr, Vec<u8>)> = None;
    let mut clock: Option<Instant> = (!b.clock_from_first_message).then(Instant::now);
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        // A stall: the whole server sleeps, as a stopped process would.
        if let Some(start) = clock {
            if let Some(end) = stall_end(&b, now - start) {
                counters.stalls.fetch_add(1, Ordering::Relaxed);
                let until = start + end;
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    thread::sleep((until - Instant::now()).min(Duration::from_millis(10)));
                }
                continue;
            }
        }
        let mut wake = now + Duration::from_millis(10);
        if let Some(start) = clock {
            if let Some(at) = next_stall(&b, now - start) {
                wake = wake.min(start + at);
            }
        }
        for conn in conns.iter().flatten() {
            if let Some((due, _)) = conn.pending.front() {
                wake = wake.min(*due);
            }
        }
        if let Some((due, _, _)) = datagrams.front() {
            wake = wake.min(*due);
        }
        let _ = poll.poll(&mut events, Some(wake.saturating_duration_since(now)));
        let now = Instant::now();
        for event in events.iter() {
            match event.token() {
                TCP | HTTP => {
                    let listener = if event.token() == TCP { &tcp } else { &http };
                    while let Ok((mut sock, _)) = listener.accept() {
                        let _ = sock.set_nodelay(true);
                        let slot = conns.iter().position(Option::is_none).unwrap_or_else(|| {
                            conns.push(None);
                            conns.len() - 1
                        });
                        let token = Token(FIRST_CONN + slot);
                        if poll
                            .registry()
                            .register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)
                            .is_ok()
                        {
                            conns[slot] = Some(Conn {
                                sock,
                                http: event.token() == HTTP,
                                input: Vec::new(),
                                pending: VecDeque::new(),
                                out: Vec::new(),
                                closed: false,
                            });
                        }
                    }
                }
                UDP => {
                    while let Ok((n, from)) = udp.recv_from(&mut buf) {
                        let read = Instant::now();
                        clock.get_or_insert(read);
                        if let Ok(mut arrivals) = counters.arrivals.lock() {
                            if arrivals.len() < 100_000 {
                                arrivals.push(read);
                            }
                        }
                        let k = counters.datagrams_in.fetch_add(1, Ordering::Relaxed) + 1;
                        if b.drop_every.is_some_and(|every| k.is_multiple_of(every)) {
                            counters.dropped.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        let data = buf[..n].to_vec();
                        if b.swap_every.is_some_and(|every| k.is_multiple_of(every)) {
                            held = Some((from, data));
                            continue;
                        }
                        let extra = if k % 2 == 1 {
                            b.alternate_delay
                        } else {
                            Duration::ZERO
                        };
                        datagrams.push_back((now + b.delay + extra, from, data));
                        if let Some((from, data)) = held.take() {
                            counters.swapped.fetch_add(1, Ordering::Relaxed);
                            datagrams.push_back((now + b.delay + extra, from, data));
                        }
                    }
                }
                Token(t) => {
                    let Some(Some(conn)) = conns.get_mut(t - FIRST_CONN) else {
                        continue;
                    };
                    loop {
                        match conn.sock.read(&mut buf) {
                            Ok(0) => {
                                conn.closed = true;
                                break;
                            }
                            Ok(n) => {
                                if !conn.http {
                                    clock.get_or_insert(now);
                                    counters
                                        .stream_bytes_in
                                        .fetch_add(n as u64, Ordering::Relaxed);
                                    conn.pending.push_back((now + b.delay, buf[..n].to_vec()));
                                    continue;
                                }
                                conn.input.extend_from_slice(&buf[..n]);
                                while let Some(end) =
                                    conn.input.windows(4).position(|w| w == b"\r\n\r\n")
                                {
                                    conn.input.drain(..end + 4);
                                    counters.http_requests.fetch_add(1, Ordering::Relaxed);
                                    conn.pending
                                        .push_back((now + b.delay, HTTP_ANSWER.to_vec()));
                                }
                            }
                            Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                            Err(_) => {
                                conn.closed = true;
                                break;
                            }
                        }
                    }
                }
            }
        }
        // Answers that fell due.
        let now = Instant::now();
        while datagrams.front().is_some_and(|(due, _, _)| *due <= now) {
            let Some((_, to, data)) = datagrams.pop_front() else {
                break;
            };
            if udp.send_to(&data, to).is_ok() {
                counters.datagrams_out.fetch_add(1, Ordering::Relaxed);
            }
        }
        for slot in conns.iter_mut() {
            let Some(conn) = slot else { continue };
            while conn.pending.front().is_some_and(|(due, _)| *due <= now) {
                let Some((_, data)) = conn.pending.pop_front() else {
                    break;
                };
                conn.out.extend_from_slice(&data);
            }
            while !conn.out.is_empty() {
                match conn.sock.write(&conn.out) {
                    Ok(n) => {
                        if !conn.http {
                            counters
                                .stream_bytes_out
                                .fetch_add(n as u64, Ordering::Relaxed);
                        }
                        conn.out.drain(..n);
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        conn.closed = true;
                        break;
                    }
                }
            }
            if conn.closed {
                let _ = poll.registry().deregister(&mut conn.sock);
                *slot = None;
            }
        }
    }
}
