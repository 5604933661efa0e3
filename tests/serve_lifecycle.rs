//! The daemon's life: what it prints, every kind in one loop, bind errors,
//! and shutdown on SIGINT/SIGTERM (stop accepting, flush what is owed
//! within the grace period, exit 0).

mod support;

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::Duration;

use socket2::{Domain, Socket, Type};
use support::{
    assert_clean_exit, assert_one_error_line, pattern, read_pattern_until_closed, round_trip,
    taken_tcp_port, targets, tcp_queues, udp_client, udp_round_trip, unique_name,
    unix_dgram_client, unix_dgram_round_trip, unread_bytes, wait_until, write_until_stalled,
    Ending, Target, Watched, IO_TIMEOUT,
};

/// The endpoint arguments of a daemon serving every kind, several of each.
fn every_kind(dir: &std::path::Path) -> Vec<String> {
    vec![
        "tcp://127.0.0.1:0".into(),
        "tcp://127.0.0.1:0".into(),
        "tcp://[::1]:0".into(),
        "udp://127.0.0.1:0".into(),
        "udp://[::1]:0".into(),
        format!("unix:{}", dir.join("stream.sock").display()),
        format!("unix:@{}", unique_name("stream")),
        format!("unix-dgram:{}", dir.join("dgram.sock").display()),
        format!("unix-dgram:@{}", unique_name("dgram")),
    ]
}

/// One round trip with whatever kind of endpoint `endpoint` is.
fn echo_once(endpoint: &str, client_dir: &std::path::Path, message: &[u8]) {
    let target = Target::of(endpoint);
    match endpoint.split_once(':').map(|(scheme, _)| scheme) {
        Some("tcp" | "unix") => round_trip(&mut *target.connect(), message),
        Some("udp") => {
            let server = target.inet();
            udp_round_trip(&udp_client(server), server, message);
        }
        Some("unix-dgram") => {
            let me = Target::Path(client_dir.join(unique_name("c")));
            unix_dgram_round_trip(&unix_dgram_client(&me), &target, message);
        }
        _ => panic!("unexpected endpoint {endpoint}"),
    }
}

// ---------------------------------------------------------------------------
// stdout and serving everything at once

#[test]
fn stdout_is_one_listening_line_per_endpoint_then_ready_and_nothing_else() {
    let dir = support::ScratchDir::new("stdout");
    let args = every_kind(&dir);
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    // Debug logging on: none of it may reach stdout.
    let daemon = Watched::start_env(&arg_refs, &[("RUST_LOG", "debug")]);

    assert_eq!(
        daemon.endpoints.len(),
        args.len(),
        "one listening line per endpoint: {:?}",
        daemon.endpoints
    );
    for (asked, listening) in args.iter().zip(&daemon.endpoints) {
        if let Some(unresolved) = asked.strip_suffix(":0") {
            let (host, port) = listening.rsplit_once(':').expect("HOST:PORT");
            assert_eq!(host, unresolved, "endpoint order or host changed");
            let port: u16 = port.parse().expect("a numeric port");
            assert_ne!(port, 0, "port 0 must be resolved: {listening}");
        } else {
            assert_eq!(listening, asked, "path endpoints are printed as given");
        }
    }
    let tcp_ports: Vec<u16> = targets(&daemon.endpoints, "tcp")
        .iter()
        .map(|t| t.inet().port())
        .collect();
    assert_ne!(tcp_ports[0], tcp_ports[1], "two TCP endpoints, two ports");

    for endpoint in &daemon.endpoints {
        echo_once(endpoint, &dir, format!("hello {endpoint}").as_bytes());
    }
    let exit = daemon.stop(libc::SIGTERM);
    assert_clean_exit(&exit);
    assert!(
        exit.stderr.contains("DEBUG"),
        "RUST_LOG=debug is honoured on stderr:\n{}",
        exit.stderr
    );
}

#[test]
fn one_loop_serves_every_kind_concurrently() {
    let dir = support::ScratchDir::new("all-kinds");
    let args = every_kind(&dir);
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let daemon = Watched::start(&arg_refs);
    let workers: Vec<_> = daemon
        .endpoints
        .iter()
        .cloned()
        .map(|endpoint| {
            let dir = dir.to_path_buf();
            thread::spawn(move || {
                for round in 0..30 {
                    let message = format!("{endpoint} round {round}");
                    echo_once(&endpoint, &dir, message.as_bytes());
                }
            })
        })
        .collect();
    for worker in workers {
        support::join(worker);
    }
    assert_clean_exit(&daemon.stop(libc::SIGTERM));
}

/// Makes five TCP connections that each echo once and close cleanly;
/// returns the client addresses as the daemon sees them.
fn five_short_connections(server: SocketAddr) -> Vec<String> {
    (0..5)
        .map(|i| {
            let mut conn = TcpStream::connect(server).expect("connect");
            conn.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
            let me = conn.local_addr().expect("local addr").to_string();
            round_trip(&mut conn, format!("connection {i}").as_bytes());
            conn.shutdown(std::net::Shutdown::Write)
                .expect("half-close");
            let (rest, ending) = support::read_until_closed(&mut conn);
            assert!(rest.is_empty());
            assert_eq!(ending, Ending::Eof);
            me
        })
        .collect()
}

#[test]
fn connection_open_and_close_are_logged_at_debug_not_info() {
    for (level, expect_lines) in [("info", false), ("debug", true)] {
        let daemon = Watched::start_env(&["tcp://127.0.0.1:0"], &[("RUST_LOG", level)]);
        let clients = five_short_connections(daemon.target("tcp").inet());
        let exit = daemon.stop(libc::SIGTERM);
        assert_clean_exit(&exit);
        for client in &clients {
            let lines = exit.stderr.lines().filter(|l| l.contains(client)).count();
            if expect_lines {
                assert!(
                    lines >= 2,
                    "RUST_LOG=debug: {client} should be logged when accepted and closed:\n{}",
                    exit.stderr
                );
            } else {
                assert_eq!(
                    lines, 0,
                    "RUST_LOG=info: per-connection lines for {client}:\n{}",
                    exit.stderr
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Bind and syntax errors

/// `echoplex serve ARGS...` expected to fail with one line naming
/// `endpoint` and one of `causes`.
fn assert_refused(args: &[&str], endpoint: &str, causes: &[&str]) {
    let mut full = vec!["serve"];
    full.extend_from_slice(args);
    let (status, stdout, stderr) = support::run(&full);
    assert!(!status.success(), "serve {args:?} should fail:\n{stderr}");
    assert_eq!(stdout, "", "nothing may be announced when a bind fails");
    let line = assert_one_error_line(&stderr, &[endpoint]);
    let lower = line.to_lowercase();
    assert!(
        causes.iter().any(|cause| lower.contains(cause)),
        "the error line gives none of the causes {causes:?}: {line}"
    );
}

#[test]
fn tcp_address_in_use_is_one_clear_error() {
    let taken = taken_tcp_port();
    let endpoint = format!("tcp://{}", taken.local_addr().expect("addr"));
    assert_refused(&[&endpoint], &endpoint, &["in use"]);
    // Also when it is not the first endpoint.
    assert_refused(&["tcp://127.0.0.1:0", &endpoint], &endpoint, &["in use"]);
}

#[test]
fn udp_address_in_use_is_one_clear_error() {
    let taken = UdpSocket::bind("127.0.0.1:0").expect("occupy a UDP port");
    let endpoint = format!("udp://{}", taken.local_addr().expect("addr"));
    assert_refused(&[&endpoint], &endpoint, &["in use"]);
}

#[test]
fn ipv6_address_in_use_is_one_clear_error() {
    let taken = std::net::TcpListener::bind("[::1]:0").expect("occupy an IPv6 port");
    let endpoint = format!("tcp://{}", taken.local_addr().expect("addr"));
    assert!(endpoint.starts_with("tcp://[::1]:"), "{endpoint}");
    assert_refused(&[&endpoint], &endpoint, &["in use"]);
}

#[test]
fn unix_path_in_a_missing_directory_is_one_clear_error() {
    let dir = support::ScratchDir::new("missing");
    let endpoint = format!("unix:{}", dir.join("no/such/dir/x.sock").display());
    assert_refused(&[&endpoint], &endpoint, &["no such file", "not found"]);
}

#[test]
fn bad_endpoint_syntax_is_one_clear_error() {
    for (endpoint, causes) in [
        ("tcp:/x", &["expected", "bad endpoint"][..]),
        ("gopher://127.0.0.1:8080", &["unknown scheme"][..]),
        ("tcp://127.0.0.1:99999", &["port"][..]),
        ("udp://::1:7", &["bracket"][..]),
        ("unix:", &["empty"][..]),
    ] {
        assert_refused(&["tcp://127.0.0.1:0", endpoint], endpoint, causes);
    }
}

#[test]
fn a_bad_format_is_a_usage_error_even_without_a_binary_endpoint() {
    // The one exit-code table: a bad --format is usage (2), as for client.
    let (status, stdout, stderr) = support::run(&["serve", "--format", "Q Z", "tcp://127.0.0.1:0"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert_eq!(stdout, "");
    assert_one_error_line(&stderr, &["--format", "'Z'"]);
    let (status, _, stderr) = support::run(&["serve", "binary://127.0.0.1:0", "--format", "I 2y"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
}

#[test]
fn every_subcommand_s_help_gives_the_exit_status() {
    for sub in [
        "serve", "status", "client", "ping", "bench", "net", "report",
    ] {
        let (status, stdout, stderr) = support::run(&["help", sub]);
        assert!(status.success(), "{stderr}");
        assert!(stdout.contains("Exit status:"), "help {sub}:\n{stdout}");
    }
}

#[test]
fn a_bad_endpoint_option_is_a_usage_error_naming_it() {
    // Contract, "Endpoint options": unknown, or not for this kind.
    for (endpoint, option) in [
        ("tcp://127.0.0.1:0?nosuch", "nosuch"),
        ("udp://127.0.0.1:0?proxy", "proxy"),
    ] {
        assert_refused(&[endpoint], endpoint, &[option]);
        let (status, _, stderr) = support::run(&["serve", endpoint]);
        assert_eq!(status.code(), Some(2), "{stderr}");
        for tool in [
            &["client", endpoint, "x"][..],
            &["ping", endpoint],
            &["bench", endpoint],
        ] {
            let (status, _, stderr) = support::run(tool);
            assert_eq!(status.code(), Some(2), "{tool:?}: {stderr}");
            assert!(stderr.contains(option), "{tool:?}: {stderr}");
        }
    }
}

// ---------------------------------------------------------------------------
// Shutdown

#[test]
fn sigint_with_idle_connections_open_exits_zero_without_waiting_for_grace() {
    // Nothing is owed, so the 60 s grace period must not be waited out
    // (the exit wait is bounded by IO_TIMEOUT, 10 s).
    let daemon = Watched::start(&["--grace", "60", "tcp://127.0.0.1:0", "udp://127.0.0.1:0"]);
    let mut idle = daemon.target("tcp").connect();
    round_trip(&mut *idle, b"then idle");
    let exit = daemon.stop(libc::SIGINT);
    assert_clean_exit(&exit);
    let (rest, ending) = support::read_until_closed(&mut *idle);
    assert!(rest.is_empty());
    assert_eq!(ending, Ending::Eof);
}

/// True once nobody accepts at `path` (listener closed, file maybe gone).
fn refuses_connections(path: &std::path::Path) -> bool {
    matches!(
        UnixStream::connect(path),
        Err(err) if matches!(
            err.kind(),
            io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound
        )
    )
}

/// A TCP client with a tiny receive buffer, so the server cannot hand it
/// much of the echo at once.
fn connect_small_window(server: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(&server.into()).expect("connect");
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream
}

#[test]
fn sigterm_flushes_what_a_non_reading_client_is_owed_then_exits() {
    const TOTAL: usize = 128 * 1024;
    let mut daemon =
        Watched::start(&["--grace", "60", "--max-buffer", "4096", "tcp://127.0.0.1:0"]);
    let server = daemon.target("tcp").inet();
    let mut client = connect_small_window(server);
    let me = client.local_addr().expect("local addr");
    client
        .write_all(&pattern(0, TOTAL))
        .expect("send everything");
    // Wait until the daemon has read every byte (nothing unread on its
    // side, nothing unacknowledged on ours): all of it is now owed to us.
    wait_until("the daemon has read all we sent", || {
        let theirs = tcp_queues(server, me).expect("the daemon's socket");
        let ours = tcp_queues(me, server).expect("our socket");
        theirs.unread == 0 && ours.unacked == 0
    });

    daemon.signal(libc::SIGTERM);
    let (count, ending) = read_pattern_until_closed(&mut client);
    assert_eq!(count, TOTAL as u64, "bytes echoed after SIGTERM");
    assert_eq!(ending, Ending::Eof, "a clean close after the flush");
    // Done flushing: the daemon exits now, not after the 60 s grace.
    assert_clean_exit(&daemon.wait_exit());
}

#[test]
fn sigterm_stops_accepting_and_flushes_the_backlog_of_a_unix_client() {
    const MAX_BUFFER: u64 = 4096;
    let dir = support::ScratchDir::new("flush-unix");
    let path = dir.join("s.sock");
    let endpoint = format!("unix:{}", path.display());
    let mut daemon = Watched::start(&["--grace", "60", "--max-buffer", "4096", &endpoint]);
    let mut client = UnixStream::connect(&path).expect("connect");
    client.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    // Write until the daemon stops reading: it then holds --max-buffer
    // bytes it could not send, on top of what sits in our receive queue.
    let accepted = write_until_stalled(&mut client, Duration::from_millis(700), 4 << 20);
    let delivered = unread_bytes(&client) as u64;
    assert!(delivered + MAX_BUFFER <= accepted);

    daemon.signal(libc::SIGTERM);
    wait_until("the daemon stops accepting", || refuses_connections(&path));
    // A busy connection is served until its peer's EOF (within grace):
    // every byte we sent comes back, then a clean close.
    client
        .shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    let (count, ending) = read_pattern_until_closed(&mut client);
    assert_eq!(count, accepted, "bytes echoed after SIGTERM and our EOF");
    assert_eq!(ending, Ending::Eof);
    assert_clean_exit(&daemon.wait_exit());
    assert!(!path.exists(), "socket file removed at exit");
}

#[test]
fn sigterm_delivers_everything_the_daemon_read_even_with_input_left_unread() {
    let mut daemon =
        Watched::start(&["--grace", "60", "--max-buffer", "4096", "tcp://127.0.0.1:0"]);
    let server = daemon.target("tcp").inet();
    let mut client = connect_small_window(server);
    let me = client.local_addr().expect("local addr");
    let accepted = write_until_stalled(&mut client, Duration::from_millis(700), 256 << 20);
    // Bytes the daemon has read and written back but we have not read yet:
    // in its send queue, or already in our receive queue.
    let theirs = tcp_queues(server, me).expect("the daemon's socket");
    let ours = tcp_queues(me, server).expect("our socket");
    assert!(
        theirs.unread > 0,
        "the test needs input the daemon has not read"
    );
    let owed = theirs.unacked + ours.unread;
    assert!(owed <= accepted);

    daemon.signal(libc::SIGTERM);
    // Input the daemon had not read yet is read and echoed too, up to our
    // EOF: nothing the kernel acknowledged is thrown away.
    client
        .shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    let (count, ending) = read_pattern_until_closed(&mut client);
    assert_eq!(count, accepted, "bytes echoed after SIGTERM and our EOF");
    assert_eq!(ending, Ending::Eof);
    assert_clean_exit(&daemon.wait_exit());
}

#[test]
fn a_second_signal_ends_the_grace_period_at_once() {
    let dir = support::ScratchDir::new("second-signal");
    let path = dir.join("s.sock");
    let endpoint = format!("unix:{}", path.display());
    let mut daemon = Watched::start(&["--grace", "60", "--max-buffer", "4096", &endpoint]);
    let mut hog = daemon.target("unix").connect();
    write_until_stalled(&mut *hog, Duration::from_millis(700), 4 << 20);

    daemon.signal(libc::SIGTERM);
    // The first signal was handled once the listener is gone.
    wait_until("the daemon stops accepting", || refuses_connections(&path));
    assert!(
        daemon.running(),
        "still flushing to a client that does not read"
    );
    daemon.signal(libc::SIGTERM);
    // Bounded by IO_TIMEOUT (10 s), far below the 60 s grace.
    assert_clean_exit(&daemon.wait_exit());
    assert!(
        !path.exists(),
        "socket file removed even on the hurried exit"
    );
}

#[test]
fn grace_period_bounds_a_shutdown_when_the_client_never_reads() {
    let mut daemon = Watched::start(&[
        "--grace",
        "0.3",
        "--max-buffer",
        "4096",
        "tcp://127.0.0.1:0",
    ]);
    let mut hog = daemon.target("tcp").connect();
    let accepted = write_until_stalled(&mut *hog, Duration::from_millis(700), 256 << 20);
    daemon.signal(libc::SIGTERM);
    assert_clean_exit(&daemon.wait_exit());
    // What did come back is still an exact prefix of what was sent, and
    // the end is a reset: bytes were still owed when grace ran out.
    let (count, ending) = read_pattern_until_closed(&mut *hog);
    assert!(count < accepted);
    assert_eq!(
        ending,
        Ending::Reset,
        "never a clean FIN over missing bytes"
    );
}
