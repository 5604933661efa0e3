//! `?proxy` in the daemon's reactor, driven in-process one turn at
//! a time over real loopback sockets. A property test writes valid, mutated
//! and random headers with data behind them, split arbitrarily (the reactor
//! turns between pieces, so each piece is a read of its own): the client
//! gets back exactly the bytes after a valid header, and nothing at all
//! when the header is refused. The 5 s deadline is checked on a clock the
//! test moves.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use echoplex::endpoint::Endpoint;
use echoplex::reactor::{Limits, ManualClock, Reactor, Turn};
use echoplex::services::{self, ServeConfig};
use echoplex::wire::proxy::{build, Parser, Step, HEADER_TIMEOUT};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use support::WAIT;

const POLL: Option<Duration> = Some(Duration::from_millis(20));

fn reactor() -> (Reactor, ManualClock, SocketAddr) {
    let clock = ManualClock::new();
    let mut reactor = Reactor::with_clock(Limits::default(), clock.clone()).expect("reactor");
    let endpoint: Endpoint = "tcp://127.0.0.1:0?proxy".parse().expect("endpoint");
    let bound = services::bind(&endpoint, &ServeConfig::default()).expect("bind");
    reactor.add(bound.handler).expect("add");
    let addr = bound.endpoint.socket_addr().expect("address");
    (reactor, clock, addr)
}

fn connections(reactor: &Reactor) -> usize {
    reactor
        .describe_all()
        .into_iter()
        .filter(|(_, info)| info.kind == "tcp-conn")
        .count()
}

fn turn(reactor: &mut Reactor) {
    assert_eq!(reactor.turn(POLL).expect("turn"), Turn::Running);
}

/// Reads whatever is there without blocking; true once the server closed.
fn drain(stream: &mut TcpStream, into: &mut Vec<u8>) -> bool {
    let mut buf = [0; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => into.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == ErrorKind::WouldBlock => return false,
            Err(err) if err.kind() == ErrorKind::ConnectionReset => return true,
            Err(err) => panic!("read: {err}"),
        }
    }
}

/// Sends `input` in the pieces `cuts` makes, turning the reactor between
/// them; half-closes; returns every byte the server sent back.
fn exchange(reactor: &mut Reactor, addr: SocketAddr, input: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream.set_nonblocking(true).expect("non-blocking");
    turn(reactor); // accept
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.extend([0, input.len()]);
    cuts.sort_unstable();
    cuts.dedup();
    let mut back = Vec::new();
    let mut closed = false;
    for piece in cuts.windows(2) {
        // A refused connection may be gone already: later writes can fail.
        if stream.write_all(&input[piece[0]..piece[1]]).is_err() {
            break;
        }
        turn(reactor);
        closed |= drain(&mut stream, &mut back);
    }
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + WAIT;
    while !closed {
        assert!(Instant::now() < deadline, "the server never closed");
        turn(reactor);
        closed = drain(&mut stream, &mut back);
    }
    let deadline = Instant::now() + WAIT;
    while connections(reactor) > 0 {
        assert!(
            Instant::now() < deadline,
            "the connection stayed in the slab"
        );
        turn(reactor);
    }
    back
}

/// What the parser says of `input`: the length of a valid header, or none.
fn header_len(input: &[u8]) -> Option<usize> {
    match Parser::new().feed(input) {
        Ok(Step::Done { consumed, .. }) => Some(consumed),
        _ => None,
    }
}

fn inputs() -> impl Strategy<Value = Vec<u8>> {
    let client =
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port)));
    let backend: SocketAddr = "127.0.0.1:10000".parse().expect("address");
    let header = prop_oneof![
        client.clone().prop_map(move |c| build::v1(c, backend)),
        (client, any::<bool>()).prop_map(move |(c, crc)| build::v2(
            c,
            backend,
            &[(0xE1, b"tlv")],
            crc
        )),
        Just(build::v2_local()),
    ];
    let payload = prop::collection::vec(any::<u8>(), 0..3000);
    let mutations = prop::collection::vec((any::<usize>(), any::<u8>()), 0..3);
    prop_oneof![
        // Valid headers, and the same with a byte or two changed.
        (header, payload.clone(), mutations).prop_map(|(header, payload, mutations)| {
            let mut input = [header, payload].concat();
            for (at, byte) in mutations {
                let at = at % input.len();
                input[at] = byte;
            }
            input
        }),
        // No header at all.
        payload,
    ]
}

#[test]
fn any_split_echoes_exactly_the_data_after_a_valid_header_and_nothing_else() {
    let (reactor, _clock, addr) = reactor();
    let reactor = std::cell::RefCell::new(reactor);
    let refused = std::cell::Cell::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    });
    let cases = (inputs(), prop::collection::vec(any::<usize>(), 0..12));
    runner
        .run(&cases, |(input, cuts)| {
            let back = exchange(&mut reactor.borrow_mut(), addr, &input, &cuts);
            match header_len(&input) {
                Some(len) => prop_assert_eq!(&back[..], &input[len..]),
                None => {
                    refused.set(refused.get() + 1);
                    prop_assert!(
                        back.is_empty(),
                        "{} bytes echoed on a refused connection",
                        back.len()
                    );
                }
            }
            Ok(())
        })
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(refused.get() > 0, "the cases included refused headers");
    assert_eq!(
        reactor.borrow().stats().proxy_errors,
        refused.get(),
        "every refused connection counted once"
    );
}

#[test]
fn a_header_not_complete_by_the_deadline_is_closed_and_counted() {
    let (mut reactor, clock, addr) = reactor();
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_nonblocking(true).expect("non-blocking");
    turn(&mut reactor);
    stream.write_all(b"PROXY TCP4 1.2.3.4 ").expect("write");
    turn(&mut reactor);
    clock.advance(HEADER_TIMEOUT - Duration::from_millis(1));
    turn(&mut reactor);
    assert_eq!(
        connections(&reactor),
        1,
        "still waiting just before the deadline"
    );
    clock.advance(Duration::from_millis(1));
    let deadline = Instant::now() + WAIT;
    while connections(&reactor) > 0 {
        assert!(Instant::now() < deadline, "not closed at the deadline");
        turn(&mut reactor);
    }
    assert_eq!(reactor.stats().proxy_errors, 1);
    let mut back = Vec::new();
    while !drain(&mut stream, &mut back) {
        turn(&mut reactor);
    }
    assert!(back.is_empty());
}
