//! The daemon's reactor driven in-process, one `turn` at a time, with a
//! clock the test moves: backpressure, shutdown (quiet peers linger to
//! their EOF, busy ones are served, the grace period), the datagram reply queue and first-in-first-out accepting, deterministically and
//! without sleeps. (Out of descriptors: `tests/reactor_fds.rs`, alone in
//! its process because it lowers RLIMIT_NOFILE.)

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::time::{Duration, Instant};

use echoplex::endpoint::Endpoint;
use echoplex::reactor::{HandlerInfo, Limits, ManualClock, Reactor, Turn};
use echoplex::services::{self, ServeConfig};
use support::{pattern, unique_name, PatternCheck, WAIT};

/// Longest a single poll may wait: events on loopback are already queued
/// when the test turns, so this only bounds a test that went wrong.
const POLL: Option<Duration> = Some(Duration::from_millis(20));

fn reactor_with(limits: Limits) -> (Reactor, ManualClock) {
    let clock = ManualClock::new();
    let reactor = Reactor::with_clock(limits, clock.clone()).expect("reactor");
    (reactor, clock)
}

/// Binds `endpoint` into the reactor; returns the endpoint as bound.
fn serve(reactor: &mut Reactor, endpoint: &str) -> Endpoint {
    let endpoint: Endpoint = endpoint.parse().expect("endpoint");
    let bound = services::bind(&endpoint, &ServeConfig::default()).expect("bind");
    reactor.add(bound.handler).expect("add");
    bound.endpoint
}

/// Turns the reactor until `done` holds; fails after `WAIT` of real time.
fn turn_until(reactor: &mut Reactor, what: &str, mut done: impl FnMut(&mut Reactor) -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done(reactor) {
        assert!(Instant::now() < deadline, "timed out turning until {what}");
        assert_eq!(reactor.turn(POLL).expect("turn"), Turn::Running);
    }
}

/// The rows of the handlers whose kind is `kind`.
fn rows(reactor: &Reactor, kind: &str) -> Vec<HandlerInfo> {
    reactor
        .describe_all()
        .into_iter()
        .map(|(_, info)| info)
        .filter(|info| info.kind == kind)
        .collect()
}

fn connect(endpoint: &Endpoint) -> TcpStream {
    let addr: SocketAddr = endpoint.socket_addr().expect("address");
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_nonblocking(true).expect("non-blocking");
    stream
}

/// Writes pattern bytes from `*sent` until the socket would block.
fn write_until_blocked(stream: &mut TcpStream, sent: &mut u64) -> usize {
    let chunk = 16 * 1024;
    let mut wrote = 0;
    loop {
        match stream.write(&pattern(*sent, chunk)) {
            Ok(n) => {
                *sent += n as u64;
                wrote += n;
            }
            Err(err) if err.kind() == ErrorKind::WouldBlock => return wrote,
            Err(err) => panic!("write: {err}"),
        }
    }
}

/// Reads what is there, checking it against the pattern; true at end of file.
fn read_available(stream: &mut TcpStream, check: &mut PatternCheck) -> bool {
    let mut buf = vec![0; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => check.feed(&buf[..n]),
            Err(err) if err.kind() == ErrorKind::WouldBlock => return false,
            Err(err) => panic!("read: {err}"),
        }
    }
}

#[test]
fn accepted_connections_are_inserted_first_in_first_out() {
    let (mut reactor, _clock) = reactor_with(Limits::default());
    let endpoint = serve(&mut reactor, "tcp://127.0.0.1:0");
    // All queued in the backlog before the reactor accepts any of them.
    let clients: Vec<TcpStream> = (0..40).map(|_| connect(&endpoint)).collect();
    turn_until(&mut reactor, "all are accepted", |r| {
        r.stats().accepted == 40
    });
    let peers: Vec<String> = rows(&reactor, "tcp-conn")
        .into_iter()
        .map(|info| info.peer)
        .collect();
    let expected: Vec<String> = clients
        .iter()
        .map(|c| c.local_addr().expect("addr").to_string())
        .collect();
    assert_eq!(peers, expected, "slab order is not accept order");
    assert_eq!(reactor.stats().connections, 40);
}

#[test]
fn a_peer_that_does_not_read_pauses_its_connection_and_loses_nothing() {
    let max_buffer = 64 * 1024;
    let (mut reactor, _clock) = reactor_with(Limits {
        max_buffer,
        ..Limits::default()
    });
    let endpoint = serve(&mut reactor, "tcp://127.0.0.1:0");
    let mut client = connect(&endpoint);
    let mut sent = 0;
    // Send without reading until the server owes --max-buffer and stops.
    turn_until(&mut reactor, "the connection is paused", |r| {
        write_until_blocked(&mut client, &mut sent);
        rows(r, "tcp-conn")
            .first()
            .is_some_and(|info| info.state == "paused-by-backpressure")
    });
    let info = rows(&reactor, "tcp-conn").remove(0);
    assert_eq!(
        info.pending, max_buffer,
        "owed bytes are capped at --max-buffer"
    );
    // Paused means not reading: more turns read nothing more.
    let read_before = reactor.stats().bytes_in;
    for _ in 0..3 {
        reactor.turn(Some(Duration::ZERO)).expect("turn");
    }
    assert_eq!(reactor.stats().bytes_in, read_before, "read while paused");
    // Reading resumes it; every byte comes back, in order.
    let mut check = PatternCheck::default();
    turn_until(&mut reactor, "everything is echoed", |_| {
        read_available(&mut client, &mut check);
        check.seen() == sent
    });
    assert_eq!(rows(&reactor, "tcp-conn")[0].state, "open");
}

/// A connection paused by backpressure, and the bytes its client sent.
fn paused_connection(reactor: &mut Reactor, endpoint: &Endpoint) -> (TcpStream, u64) {
    let mut client = connect(endpoint);
    let mut sent = 0;
    turn_until(reactor, "the connection is paused", |r| {
        write_until_blocked(&mut client, &mut sent);
        rows(r, "tcp-conn")
            .iter()
            .any(|info| info.state == "paused-by-backpressure")
    });
    (client, sent)
}

#[test]
fn a_shutdown_lingers_on_quiet_peers_and_serves_busy_ones_to_their_eof() {
    let (mut reactor, _clock) = reactor_with(Limits {
        max_buffer: 16 * 1024,
        ..Limits::default()
    });
    let endpoint = serve(&mut reactor, "tcp://127.0.0.1:0");
    let mut quiet = connect(&endpoint);
    turn_until(&mut reactor, "the quiet one is accepted", |r| {
        r.stats().accepted == 1
    });
    let (mut busy, mut sent) = paused_connection(&mut reactor, &endpoint);
    reactor.request_shutdown();
    reactor.turn(Some(Duration::ZERO)).expect("turn");
    assert!(rows(&reactor, "tcp-listener").is_empty(), "listener closed");
    let states: Vec<&str> = rows(&reactor, "tcp-conn").iter().map(|i| i.state).collect();
    assert_eq!(
        states,
        ["closing", "paused-by-backpressure"],
        "the quiet one lingers after our FIN, the busy one is served"
    );
    let mut nothing = PatternCheck::default();
    turn_until(&mut reactor, "the quiet peer reads its EOF", |_| {
        read_available(&mut quiet, &mut nothing)
    });
    // What it sends after our FIN is read and thrown away, never a reset;
    // its EOF ends the lingering close.
    quiet.write_all(b"late").expect("write after the FIN");
    quiet.shutdown(std::net::Shutdown::Write).expect("its EOF");
    turn_until(&mut reactor, "the quiet one is closed", |r| {
        rows(r, "tcp-conn").len() == 1
    });
    // The busy peer is still served: everything it sends comes back, up to
    // its EOF, then ours.
    let mut check = PatternCheck::default();
    turn_until(&mut reactor, "the busy peer's echo catches up", |_| {
        read_available(&mut busy, &mut check);
        check.seen() == sent
    });
    write_until_blocked(&mut busy, &mut sent);
    busy.shutdown(std::net::Shutdown::Write).expect("our EOF");
    turn_until(
        &mut reactor,
        "every byte is echoed and the server's EOF comes",
        |_| read_available(&mut busy, &mut check),
    );
    assert_eq!(check.seen(), sent, "bytes lost in the shutdown");
    turn_until(&mut reactor, "the shutdown finishes", |r| {
        rows(r, "tcp-conn").is_empty()
    });
    assert_eq!(reactor.turn(POLL).expect("turn"), Turn::Finished);
    assert_eq!(reactor.stats().closed, 2);
}

#[test]
fn a_lingering_close_ends_after_two_seconds_or_with_the_grace_period() {
    for (grace, lingers) in [(30, 2), (1, 1)] {
        let (mut reactor, clock) = reactor_with(Limits {
            grace: Duration::from_secs(grace),
            ..Limits::default()
        });
        let endpoint = serve(&mut reactor, "tcp://127.0.0.1:0");
        let mut quiet = connect(&endpoint);
        turn_until(&mut reactor, "it is accepted", |r| r.stats().accepted == 1);
        reactor.request_shutdown();
        reactor.turn(Some(Duration::ZERO)).expect("turn");
        assert_eq!(rows(&reactor, "tcp-conn")[0].state, "closing");
        let mut nothing = PatternCheck::default();
        turn_until(&mut reactor, "the peer reads our FIN", |_| {
            read_available(&mut quiet, &mut nothing)
        });
        // The peer never closes: the reactor's clock decides.
        clock.advance(Duration::from_millis(lingers * 1000 - 100));
        assert_eq!(reactor.turn(POLL).expect("turn"), Turn::Running);
        assert_eq!(rows(&reactor, "tcp-conn").len(), 1, "let go too early");
        clock.advance(Duration::from_millis(200));
        let mut finished = false;
        for _ in 0..3 {
            finished |= reactor.turn(POLL).expect("turn") == Turn::Finished;
        }
        assert!(
            finished,
            "grace {grace} s: still lingering after {lingers} s"
        );
        let stats = reactor.stats();
        assert_eq!((stats.connections, stats.closed), (0, 1), "grace {grace} s");
    }
}

#[test]
fn the_last_counters_count_what_the_end_of_grace_closed() {
    let (mut reactor, clock) = reactor_with(Limits {
        max_buffer: 16 * 1024,
        grace: Duration::from_secs(2),
        ..Limits::default()
    });
    let endpoint = serve(&mut reactor, "tcp://127.0.0.1:0");
    let (_busy, _) = paused_connection(&mut reactor, &endpoint);
    reactor.request_shutdown();
    reactor.turn(POLL).expect("turn");
    clock.advance(Duration::from_secs(3));
    assert_eq!(reactor.turn(POLL).expect("turn"), Turn::Finished);
    let stats = reactor.stats();
    assert_eq!(
        (stats.accepted, stats.closed, stats.connections),
        (1, 1, 0),
        "counted before the reactor is dropped"
    );
}

#[test]
fn the_grace_period_ends_on_the_reactor_s_clock_and_resets_what_is_owed() {
    let (mut reactor, clock) = reactor_with(Limits {
        max_buffer: 16 * 1024,
        grace: Duration::from_secs(2),
        ..Limits::default()
    });
    let endpoint = serve(&mut reactor, "tcp://127.0.0.1:0");
    let (mut busy, _) = paused_connection(&mut reactor, &endpoint);
    reactor.request_shutdown();
    for _ in 0..3 {
        assert_eq!(reactor.turn(POLL).expect("turn"), Turn::Running);
    }
    clock.advance(Duration::from_secs(3));
    assert_eq!(reactor.turn(POLL).expect("turn"), Turn::Finished);
    drop(reactor); // what is still open closes now
    let mut buf = vec![0; 1 << 20];
    let ending = loop {
        match busy.read(&mut buf) {
            Ok(0) => break "EOF",
            Ok(_) => {}
            Err(err) if err.kind() == ErrorKind::ConnectionReset => break "reset",
            Err(err) if err.kind() == ErrorKind::WouldBlock => {
                busy.set_nonblocking(false).expect("blocking");
                busy.set_read_timeout(Some(WAIT)).expect("timeout");
            }
            Err(err) => panic!("read: {err}"),
        }
    };
    assert_eq!(
        ending, "reset",
        "a peer still owed bytes must not see a clean EOF"
    );
}

#[test]
fn replies_to_a_full_unix_datagram_peer_wait_in_the_queue() {
    let (mut reactor, clock) = reactor_with(Limits::default());
    let name = unique_name("queue");
    let endpoint = serve(&mut reactor, &format!("unix-dgram:@{name}"));
    let server = UnixAddr::from_abstract_name(name.as_bytes()).expect("address");
    let client_name = unique_name("queue-client");
    let client = UnixDatagram::bind_addr(
        &UnixAddr::from_abstract_name(client_name.as_bytes()).expect("address"),
    )
    .expect("bind client");
    client.set_nonblocking(true).expect("non-blocking");
    // Send without reading until a reply has to wait for us.
    let mut sent: u32 = 0;
    turn_until(&mut reactor, "a reply waits in the queue", |r| {
        client
            .send_to_addr(&sent.to_be_bytes(), &server)
            .expect("send");
        sent += 1;
        r.turn(Some(Duration::ZERO)).expect("turn");
        rows(r, "unix-dgram")[0].state == "draining"
    });
    let queued = rows(&reactor, "unix-dgram")[0].pending;
    assert!(queued > 0, "{endpoint}: nothing queued");
    // Read what arrived; the queued rest goes out on the retry timer.
    let mut next: u32 = 0;
    let read_all = |next: &mut u32| {
        let mut buf = [0u8; 16];
        loop {
            match client.recv(&mut buf) {
                Ok(n) => {
                    assert_eq!(&buf[..n], &next.to_be_bytes(), "reply out of order");
                    *next += 1;
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => return,
                Err(err) => panic!("recv: {err}"),
            }
        }
    };
    read_all(&mut next);
    assert!(next < sent, "the queued replies came before the retry");
    clock.advance(Duration::from_millis(50));
    turn_until(&mut reactor, "the queue drains", |r| {
        read_all(&mut next);
        next == sent && rows(r, "unix-dgram")[0].state == "open"
    });
    assert_eq!(reactor.stats().dropped_datagrams, 0);
    assert_eq!(reactor.stats().datagrams_out, u64::from(sent));
}
