//! Stream echo (TCP, Unix path, Unix abstract) against the real daemon:
//! byte-exact under any split, concurrency, backpressure, half-close,
//! resets, fairness, --max-connections and the idle timeout.

mod support;

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use support::Daemon;
use support::{
    join, pattern, read_exactly, read_pattern, read_until_closed, round_trip, spawn_pattern_reader,
    targets, unique_name, write_pattern, write_until_stalled, Conn, Ending, PatternCheck, Target,
    IO_TIMEOUT,
};

/// The three stream flavours, each served by its own daemon.
#[derive(Clone, Copy, Debug)]
enum Flavour {
    Tcp,
    UnixPath,
    UnixAbstract,
}

/// A daemon serving one stream endpoint of `flavour` (plus `extra` options),
/// and the target to connect to.
fn serve_one(flavour: Flavour, extra: &[&str]) -> (Daemon, Target, support::ScratchDir) {
    let dir = support::ScratchDir::new("stream");
    let endpoint = match flavour {
        Flavour::Tcp => "tcp://127.0.0.1:0".to_string(),
        Flavour::UnixPath => format!("unix:{}", dir.join("echo.sock").display()),
        Flavour::UnixAbstract => format!("unix:@{}", unique_name("stream")),
    };
    let mut args: Vec<&str> = extra.to_vec();
    args.push(&endpoint);
    let daemon = Daemon::start(&args);
    assert_eq!(daemon.endpoints.len(), 1, "{:?}", daemon.endpoints);
    let target = Target::of(&daemon.endpoints[0]);
    (daemon, target, dir)
}

/// Stops the daemon and asserts a clean exit.
fn stop_clean(daemon: Daemon) {
    let (status, stderr) = daemon.stop();
    assert!(status.success(), "exit status {status}; stderr:\n{stderr}");
    support::assert_no_panic(&stderr);
}

// ---------------------------------------------------------------------------
// Byte-exact echo under any split

/// 3000 writes of 1 to 7 bytes, read back concurrently, byte for byte.
fn tiny_writes_round_trip(flavour: Flavour) {
    let (daemon, target, _dir) = serve_one(flavour, &[]);
    let mut conn = target.connect();
    let sizes = [1usize, 3, 2, 7, 5, 1, 4, 6];
    let total: u64 = (0..3000).map(|i| sizes[i % sizes.len()] as u64).sum();
    let reader = spawn_pattern_reader(conn.handle(), total);
    write_pattern(&mut *conn, total, |n| sizes[n as usize % sizes.len()]);
    join(reader);
    stop_clean(daemon);
}

#[test]
fn tiny_writes_echo_byte_exact_over_tcp() {
    tiny_writes_round_trip(Flavour::Tcp);
}

#[test]
fn tiny_writes_echo_byte_exact_over_unix_path() {
    tiny_writes_round_trip(Flavour::UnixPath);
}

#[test]
fn tiny_writes_echo_byte_exact_over_unix_abstract() {
    tiny_writes_round_trip(Flavour::UnixAbstract);
}

/// One 8 MiB payload written in one call while a reader thread reads.
fn big_payload_round_trip(flavour: Flavour) {
    const TOTAL: usize = 8 * 1024 * 1024;
    let (daemon, target, _dir) = serve_one(flavour, &[]);
    let mut conn = target.connect();
    let reader = spawn_pattern_reader(conn.handle(), TOTAL as u64);
    conn.write_all(&pattern(0, TOTAL))
        .expect("write the whole payload");
    join(reader);
    // Nothing more than what was sent comes back.
    conn.shutdown_write();
    let (extra, ending) = read_until_closed(&mut *conn);
    assert!(extra.is_empty(), "{} bytes beyond the payload", extra.len());
    assert_eq!(ending, Ending::Eof);
    stop_clean(daemon);
}

#[test]
fn multi_megabyte_payload_is_echoed_exactly_over_tcp() {
    big_payload_round_trip(Flavour::Tcp);
}

#[test]
fn multi_megabyte_payload_is_echoed_exactly_over_unix_path() {
    big_payload_round_trip(Flavour::UnixPath);
}

#[test]
fn multi_megabyte_payload_is_echoed_exactly_over_unix_abstract() {
    big_payload_round_trip(Flavour::UnixAbstract);
}

/// `count` connections open at once, each sending its own message in
/// two parts interleaved with the others, each getting exactly its own back.
fn concurrent_connections(flavour: Flavour, count: usize) {
    let (daemon, target, _dir) = serve_one(flavour, &[]);
    let mut conns: Vec<Box<dyn Conn>> = (0..count).map(|_| target.connect()).collect();
    let message = |i: usize| {
        let mut text = format!("connection {i}: ").into_bytes();
        text.extend_from_slice(&pattern(i as u64 * 1000, 700 + i % 50));
        text
    };
    for (i, conn) in conns.iter_mut().enumerate() {
        let whole = message(i);
        conn.write_all(&whole[..whole.len() / 2])
            .expect("first half");
    }
    for (i, conn) in conns.iter_mut().enumerate().rev() {
        let whole = message(i);
        conn.write_all(&whole[whole.len() / 2..])
            .expect("second half");
    }
    for (i, conn) in conns.iter_mut().enumerate() {
        let whole = message(i);
        let echoed = read_exactly(&mut **conn, whole.len());
        assert!(echoed == whole, "connection {i} got someone else's bytes");
    }
    stop_clean(daemon);
}

#[test]
fn two_hundred_concurrent_tcp_connections_each_get_their_own_echo() {
    concurrent_connections(Flavour::Tcp, 200);
}

#[test]
fn two_hundred_concurrent_unix_connections_each_get_their_own_echo() {
    concurrent_connections(Flavour::UnixPath, 200);
}

#[test]
fn tcp_over_ipv6_loopback_echoes() {
    let daemon = Daemon::start(&["tcp://[::1]:0"]);
    let target = Target::of(&daemon.endpoints[0]);
    assert!(target.inet().is_ipv6(), "{:?}", daemon.endpoints);
    let mut conn = target.connect();
    round_trip(&mut *conn, b"over IPv6");
    stop_clean(daemon);
}

// ---------------------------------------------------------------------------
// Half-close and reset

/// The client writes 300 kB in pieces and half-closes while the echo is
/// still flowing back: it must get every byte, then a clean EOF.
fn half_close(flavour: Flavour) {
    const TOTAL: u64 = 300_000;
    let (daemon, target, _dir) = serve_one(flavour, &[]);
    let mut conn = target.connect();
    let mut writer = conn.handle();
    let sender = thread::spawn(move || {
        write_pattern(&mut *writer, TOTAL, |n| 1000 + (n as usize * 37) % 9000);
        writer.shutdown_write();
    });
    let (count, ending) = support::read_pattern_until_closed(&mut *conn);
    join(sender);
    assert_eq!(count, TOTAL, "bytes echoed after the half-close");
    assert_eq!(ending, Ending::Eof, "the server should close cleanly");
    stop_clean(daemon);
}

#[test]
fn half_closed_tcp_client_gets_all_its_bytes_then_eof() {
    half_close(Flavour::Tcp);
}

#[test]
fn half_closed_unix_client_gets_all_its_bytes_then_eof() {
    half_close(Flavour::UnixPath);
}

#[test]
fn tcp_half_close_after_the_echo_came_back_gets_eof() {
    // The FIN arrives on its own, after the server read everything.
    let (daemon, target, _dir) = serve_one(Flavour::Tcp, &[]);
    let mut conn = target.connect();
    round_trip(&mut *conn, &pattern(0, 100_000));
    conn.shutdown_write();
    let (rest, ending) = read_until_closed(&mut *conn);
    assert!(rest.is_empty(), "{} unexpected bytes", rest.len());
    assert_eq!(ending, Ending::Eof);
    stop_clean(daemon);
}

/// Twenty clients each connect, write a line and half-close at once, so
/// the line and the FIN are already queued when the server first reads.
fn data_and_fin_together(flavour: Flavour) {
    let (daemon, target, _dir) = serve_one(flavour, &[]);
    let mut conns: Vec<Box<dyn Conn>> = (0..20)
        .map(|i| {
            let mut conn = target.connect();
            conn.write_all(format!("line {i}").as_bytes())
                .expect("write");
            conn.shutdown_write();
            conn
        })
        .collect();
    for (i, conn) in conns.iter_mut().enumerate() {
        let (echo, ending) = read_until_closed(&mut **conn);
        assert_eq!(echo, format!("line {i}").as_bytes(), "echo of client {i}");
        assert_eq!(ending, Ending::Eof, "client {i}");
    }
    stop_clean(daemon);
}

#[test]
fn data_and_fin_arriving_together_are_echoed_then_closed_over_tcp() {
    data_and_fin_together(Flavour::Tcp);
}

#[test]
fn data_and_fin_arriving_together_are_echoed_then_closed_over_unix() {
    data_and_fin_together(Flavour::UnixPath);
}

/// A TCP connection the client will end with RST (SO_LINGER 0).
fn connect_resettable(addr: SocketAddr) -> Socket {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket.connect(&addr.into()).expect("connect");
    socket
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
    socket.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    socket
}

#[test]
fn client_reset_mid_stream_leaves_other_connections_served() {
    let daemon = Daemon::start(&["--max-buffer", "4096", "tcp://127.0.0.1:0"]);
    let target = Target::of(&daemon.endpoints[0]);
    let mut bystander = target.connect();
    round_trip(&mut *bystander, b"before");

    // Several clients write without reading (the server owes them bytes),
    // then reset, each at a different point.
    for size in [1usize, 70_000, 600_000] {
        let mut resetter = connect_resettable(target.inet());
        let sent = resetter
            .write(&pattern(0, size))
            .expect("write before reset");
        assert!(sent > 0);
        drop(resetter); // SO_LINGER 0: close sends RST
        round_trip(&mut *bystander, format!("after reset of {size}").as_bytes());
    }

    let mut newcomer = target.connect();
    round_trip(&mut *newcomer, b"new connection after the resets");
    round_trip(&mut *bystander, b"still here");
    let (status, stderr) = daemon.stop();
    assert!(status.success(), "exit {status}; stderr:\n{stderr}");
    support::assert_no_panic(&stderr);
    // A reset peer is routine: logged at debug, never as a warning or error.
    assert!(
        !stderr.contains(" WARN ") && !stderr.contains(" ERROR "),
        "a client reset was logged as a problem:\n{stderr}"
    );
}

// ---------------------------------------------------------------------------
// Backpressure

/// A client that writes and never reads stalls after a bounded amount
/// (kernel buffers plus --max-buffer); others are served meanwhile; then it
/// reads and gets every byte back, in order.
fn backpressure(flavour: Flavour, cap: u64) {
    let (daemon, target, _dir) = serve_one(flavour, &["--max-buffer", "4096"]);
    let rss_before = daemon.rss_kib();
    let mut hog = target.connect();
    let accepted = write_until_stalled(&mut *hog, Duration::from_millis(700), cap);
    assert!(accepted > 4096, "the server took only {accepted} bytes");

    let growth_kib = daemon.rss_kib().saturating_sub(rss_before);
    assert!(
        growth_kib < 16 * 1024,
        "daemon RSS grew by {growth_kib} KiB while a client did not read"
    );

    let mut other = target.connect();
    for round in 0..5 {
        round_trip(
            &mut *other,
            format!("round {round} while the hog stalls").as_bytes(),
        );
    }

    read_pattern(&mut *hog, accepted);
    // Reading resumed the flow: the connection works as before.
    let tail = pattern(accepted, 10_000);
    hog.write_all(&tail).expect("write after draining");
    assert!(
        read_exactly(&mut *hog, tail.len()) == tail,
        "echo after the stall"
    );
    stop_clean(daemon);
}

#[test]
fn backpressure_bounds_a_non_reading_tcp_client_and_others_still_echo() {
    // Loopback TCP buffers autotune up to tens of MB (tcp_rmem max); a
    // server without backpressure would take all 128 MiB.
    backpressure(Flavour::Tcp, 128 * 1024 * 1024);
}

#[test]
fn backpressure_bounds_a_non_reading_unix_client_and_others_still_echo() {
    // Unix stream buffers are fixed (wmem_default, ~208 KiB per side).
    backpressure(Flavour::UnixPath, 4 * 1024 * 1024);
}

// ---------------------------------------------------------------------------
// Fairness

/// Reads the flood's echo, counting progress in `echoed`, until it has
/// `sent` bytes (known once the writer stops). No half-close here: the
/// flood ends by count, so this test does not depend on EOF handling.
fn read_flood(mut conn: Box<dyn Conn>, echoed: Arc<AtomicU64>, sent: Arc<AtomicU64>) -> u64 {
    conn.set_timeouts(Some(Duration::from_millis(50)), Some(IO_TIMEOUT));
    let mut check = PatternCheck::default();
    let mut buf = vec![0; 256 * 1024];
    let mut progressed = Instant::now();
    while check.seen() < sent.load(Ordering::Acquire) {
        match conn.read(&mut buf) {
            Ok(0) => panic!("the server closed the flood after {} bytes", check.seen()),
            Ok(n) => {
                check.feed(&buf[..n]);
                echoed.store(check.seen(), Ordering::Relaxed);
                progressed = Instant::now();
            }
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                assert!(
                    progressed.elapsed() < IO_TIMEOUT,
                    "the flood's echo stopped after {} bytes",
                    check.seen()
                );
            }
            Err(err) => panic!("flood echo: {err} after {} bytes", check.seen()),
        }
    }
    check.seen()
}

#[test]
fn small_echoes_complete_while_another_client_floods() {
    const FLOOD_LIMIT: u64 = 1 << 30;
    const IN_FULL_SWING: u64 = 8 * 1024 * 1024;
    let (daemon, target, _dir) = serve_one(Flavour::Tcp, &[]);
    let flood = target.connect();
    let stop = Arc::new(AtomicBool::new(false));
    let echoed = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(u64::MAX));
    let writer = {
        let mut conn = flood.handle();
        let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
        thread::spawn(move || {
            const CHUNK: usize = 256 * 1024;
            let mut written = 0u64;
            while !stop.load(Ordering::Relaxed) && written < FLOOD_LIMIT {
                conn.write_all(&pattern(written, CHUNK))
                    .expect("flood write");
                written += CHUNK as u64;
            }
            sent.store(written, Ordering::Release);
            written
        })
    };
    let reader = {
        let (echoed, sent) = (Arc::clone(&echoed), Arc::clone(&sent));
        thread::spawn(move || read_flood(flood, echoed, sent))
    };
    support::wait_until("the flood is in full swing", || {
        echoed.load(Ordering::Relaxed) >= IN_FULL_SWING
    });

    let mut small = target.connect();
    for round in 0..50 {
        round_trip(&mut *small, format!("small echo {round}").as_bytes());
    }
    stop.store(true, Ordering::Relaxed);
    let written = join(writer);
    let echoed_total = join(reader);
    assert!(
        written < FLOOD_LIMIT,
        "the flood ran out before the small echoes were done"
    );
    assert_eq!(echoed_total, written, "the flooding client's echo");
    stop_clean(daemon);
}

// ---------------------------------------------------------------------------
// --max-connections

/// Asserts the server closes `conn` without echoing (EOF or reset).
fn assert_turned_away(conn: &mut dyn Conn, what: &str) {
    let _ = conn.write(b"anyone there?");
    let mut buf = [0u8; 64];
    match conn.read(&mut buf) {
        Ok(0) => {}
        Err(err) if err.kind() == io::ErrorKind::ConnectionReset => {}
        Ok(n) => panic!("{what}: over the limit, yet echoed {:?}", &buf[..n]),
        Err(err) => panic!("{what}: not closed by the server: {err}"),
    }
}

/// Half-closes `conn` and waits for the server's EOF: the server has then
/// dropped the connection and no longer counts it.
fn close_and_wait(mut conn: Box<dyn Conn>) {
    conn.shutdown_write();
    let (rest, ending) = read_until_closed(&mut *conn);
    assert!(rest.is_empty());
    assert_eq!(ending, Ending::Eof);
}

#[test]
fn max_connections_turns_away_the_extra_one_and_admits_after_a_close() {
    let dir = support::ScratchDir::new("maxconn");
    let unix = format!("unix:{}", dir.join("m.sock").display());
    let daemon = Daemon::start(&["--max-connections", "2", "tcp://127.0.0.1:0", &unix]);
    let tcp = targets(&daemon.endpoints, "tcp").remove(0);
    let unix = targets(&daemon.endpoints, "unix").remove(0);

    let mut first = tcp.connect();
    round_trip(&mut *first, b"first");
    let mut second = unix.connect();
    round_trip(&mut *second, b"second");

    // The limit is one count across every listener.
    assert_turned_away(&mut *tcp.connect(), "third over TCP");
    assert_turned_away(&mut *unix.connect(), "third over unix");
    round_trip(&mut *first, b"first still echoes");
    round_trip(&mut *second, b"second still echoes");

    close_and_wait(first);
    let mut fourth = tcp.connect();
    round_trip(&mut *fourth, b"admitted once a slot was free");
    round_trip(&mut *second, b"second unaffected");
    assert_turned_away(&mut *unix.connect(), "over the limit again");
    stop_clean(daemon);
}

// ---------------------------------------------------------------------------
// Idle timeout

#[test]
fn idle_connection_is_closed_after_the_idle_timeout() {
    let (daemon, target, _dir) = serve_one(Flavour::Tcp, &["--idle-timeout", "1"]);
    let mut idle = target.connect();
    // Silent from the start: the server must close it (the read timeout,
    // 10 s, bounds the wait).
    let (rest, _ending) = read_until_closed(&mut *idle);
    assert!(rest.is_empty());
    // The listener is not idle-closed, and a busy connection still echoes.
    let mut fresh = target.connect();
    round_trip(&mut *fresh, b"new connections still welcome");
    stop_clean(daemon);
}
