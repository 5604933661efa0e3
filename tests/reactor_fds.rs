//! The out-of-descriptors path, in-process: the listener gives up its spare
//! descriptor to accept and close a connection it cannot keep, and accepts
//! again once descriptors free up. Alone in its test binary because it
//! lowers RLIMIT_NOFILE for the whole process.

mod support;

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use echoplex::endpoint::Endpoint;
use echoplex::reactor::{Limits, Reactor, Turn};
use echoplex::services::{self, ServeConfig};
use socket2::{Domain, Socket, Type};
use support::WAIT;

const POLL: Option<Duration> = Some(Duration::from_millis(20));

fn turn_until(reactor: &mut Reactor, what: &str, mut done: impl FnMut(&Reactor) -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done(reactor) {
        assert!(Instant::now() < deadline, "timed out turning until {what}");
        assert_eq!(reactor.turn(POLL).expect("turn"), Turn::Running);
    }
}

fn nofile() -> libc::rlimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    limit
}

fn set_own_nofile(limit: &libc::rlimit) {
    // SAFETY: setrlimit reads the struct we own.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, limit) }, 0);
}

#[test]
fn out_of_descriptors_a_connection_is_closed_at_once_and_accepting_resumes() {
    let mut reactor = Reactor::new(Limits::default()).expect("reactor");
    let endpoint: Endpoint = "tcp://127.0.0.1:0".parse().expect("endpoint");
    let bound = services::bind(&endpoint, &ServeConfig::default()).expect("bind");
    let addr: SocketAddr = bound.endpoint.socket_addr().expect("address");
    reactor.add(bound.handler).expect("add");
    // Both client sockets exist before descriptors run out.
    let mut refused = TcpStream::connect(addr).expect("connect");
    refused.set_read_timeout(Some(WAIT)).expect("timeout");
    let later = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");

    // Use up every descriptor below a lowered limit.
    let saved = nofile();
    let probe = File::open("/dev/null").expect("open");
    let lowest_free = {
        use std::os::fd::AsRawFd;
        probe.as_raw_fd() as u64
    };
    drop(probe);
    set_own_nofile(&libc::rlimit {
        rlim_cur: lowest_free + 16,
        rlim_max: saved.rlim_max,
    });
    let mut fillers = Vec::new();
    let filled = loop {
        match File::open("/dev/null") {
            Ok(file) => fillers.push(file),
            Err(err) => break err,
        }
    };

    let mut turns = 0;
    let deadline = Instant::now() + WAIT;
    while reactor.stats().rejected_no_fds == 0 && Instant::now() < deadline {
        reactor.turn(POLL).expect("turn");
        turns += 1;
    }
    let rejected = reactor.stats().rejected_no_fds;
    let accepted_while_out = reactor.stats().accepted;
    // Two descriptors back: one for the connection, one for the spare.
    fillers.truncate(fillers.len().saturating_sub(2));
    set_own_nofile(&saved);
    drop(fillers);

    assert_eq!(filled.raw_os_error(), Some(libc::EMFILE), "{filled}");
    assert_eq!(rejected, 1, "after {turns} turns");
    assert_eq!(accepted_while_out, 0);
    let mut buf = [0u8; 8];
    match refused.read(&mut buf) {
        Ok(0) => {}
        Err(err) if err.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("the refused client should see its connection closed: {other:?}"),
    }

    later.connect(&addr.into()).expect("connect again");
    let mut later: TcpStream = later.into();
    later.set_nonblocking(true).expect("non-blocking");
    turn_until(&mut reactor, "the next connection is accepted", |r| {
        r.stats().accepted == 1
    });
    later.write_all(b"back").expect("write");
    let mut echoed = Vec::new();
    turn_until(&mut reactor, "the echo comes back", |_| {
        let mut buf = [0u8; 8];
        match later.read(&mut buf) {
            Ok(n) => echoed.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == ErrorKind::WouldBlock => {}
            Err(err) => panic!("read: {err}"),
        }
        echoed.len() >= 4
    });
    assert_eq!(echoed, b"back");
}
