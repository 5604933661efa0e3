//! Shutdown loses nothing: a quiet connection gets our FIN and the daemon
//! reads (and discards) until its peer's EOF, so a client between writes
//! reads every echo and never a reset; the last counters add up however
//! the shutdown ended; a second signal is told once, and truthfully.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use support::{
    assert_clean_exit, pattern, status_json, tcp_queues, wait_until, write_until_stalled, Watched,
    IO_TIMEOUT,
};

fn connect(server: SocketAddr) -> TcpStream {
    let conn = TcpStream::connect(server).expect("connect");
    conn.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    conn.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    conn
}

/// The figure `name` of the daemon's last line, `stopped: name value, ...`.
fn final_figure(stderr: &str, name: &str) -> u64 {
    let line = stderr
        .lines()
        .rev()
        .find(|line| line.contains("stopped: "))
        .unwrap_or_else(|| panic!("no 'stopped:' line in:\n{stderr}"));
    let after = line.split("stopped: ").nth(1).expect("figures");
    after
        .split(", ")
        .find_map(|part| part.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {line:?}"))
}

/// A TCP client with a tiny receive buffer: echoes wait in the daemon's
/// kernel send queue, out of its hands but not yet delivered.
fn connect_small_window(server: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(&server.into()).expect("connect");
    let conn: TcpStream = socket.into();
    conn.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    conn.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    conn
}

#[test]
fn a_client_between_writes_at_shutdown_reads_every_echo_and_no_reset() {
    const ECHOED: usize = 48 * 1024;
    let dir = support::temp_dir("linger");
    let admin = dir.join("admin.sock");
    let admin_arg = admin.display().to_string();
    let mut daemon = Watched::start(&["--grace", "5", "--admin", &admin_arg, "tcp://127.0.0.1:0"]);
    let server = daemon.target("tcp").inet();
    let mut client = connect_small_window(server);
    let me = client.local_addr().expect("local");
    client.write_all(&pattern(0, ECHOED)).expect("write");
    // The daemon has read it all and handed every echo to its kernel: it
    // owes nothing itself (a quiet connection), while most of the echo
    // still waits in its send queue behind our small window.
    let peer = me.to_string();
    wait_until(
        "the daemon owes nothing, its kernel still holds echoes",
        || {
            let json = status_json(&admin);
            let ours = json["handlers"]
                .as_array()
                .and_then(|all| all.iter().find(|h| h["peer"] == peer.as_str()).cloned());
            let theirs = tcp_queues(server, me);
            ours.is_some_and(|h| h["pending"] == 0 && h["state"] == "open")
                && theirs.is_some_and(|q| q.unread == 0 && q.unacked > 0)
        },
    );

    daemon.signal(libc::SIGTERM);
    thread::sleep(Duration::from_millis(300));
    // Our next request, sent before we could see the daemon's FIN (it
    // waits behind the echoes). A closed socket answers it with RST, and
    // RST throws away the echoes not yet delivered.
    client
        .write_all(&pattern(ECHOED as u64, 100))
        .expect("write after SIGTERM");
    let mut got = Vec::new();
    let read = client.read_to_end(&mut got);
    assert!(
        read.is_ok(),
        "reading the echoes owed before the shutdown: {read:?} after {} of {ECHOED} bytes",
        got.len()
    );
    assert_eq!(got.len(), ECHOED, "every echo, then EOF");
    assert_eq!(got, pattern(0, ECHOED));
    drop(client);
    let exit = daemon.wait_exit();
    assert_clean_exit(&exit);
}

#[test]
fn a_quiet_peer_that_never_closes_is_let_go_after_the_lingering_limit() {
    // The grace period is far longer than the lingering close's 2 s.
    let mut daemon = Watched::start(&["--grace", "30", "tcp://127.0.0.1:0"]);
    let server = daemon.target("tcp").inet();
    let mut client = connect(server);
    client.write_all(b"hello").expect("write");
    let mut echo = [0u8; 5];
    client.read_exact(&mut echo).expect("echo");
    let asked = Instant::now();
    daemon.signal(libc::SIGTERM);
    let exit = daemon.wait_exit();
    let took = asked.elapsed();
    assert_clean_exit(&exit);
    assert!(
        took < Duration::from_secs(10),
        "a quiet peer held the shutdown {took:?}"
    );
    let mut rest = Vec::new();
    assert_eq!(
        client.read_to_end(&mut rest).map(|_| rest.len()).ok(),
        Some(0)
    );
}

#[test]
fn final_counters_add_up_after_grace_ends_and_a_connection_is_reset() {
    let mut daemon = Watched::start(&[
        "--grace",
        "0.5",
        "--max-buffer",
        "4096",
        "tcp://127.0.0.1:0",
    ]);
    let mut hog = daemon.target("tcp").connect();
    write_until_stalled(&mut *hog, Duration::from_millis(500), 64 << 20);
    daemon.signal(libc::SIGTERM);
    let exit = daemon.wait_exit();
    assert_clean_exit(&exit);
    let (accepted, closed, open) = (
        final_figure(&exit.stderr, "accepted"),
        final_figure(&exit.stderr, "closed"),
        final_figure(&exit.stderr, "connections"),
    );
    assert_eq!(
        (accepted, closed, open),
        (1, 1, 0),
        "accepted, closed, open at the end:\n{}",
        exit.stderr
    );
}

#[test]
fn a_second_signal_is_told_once_and_never_as_the_grace_running_out() {
    let mut daemon =
        Watched::start(&["--grace", "60", "--max-buffer", "4096", "tcp://127.0.0.1:0"]);
    let server = daemon.target("tcp").inet();
    let mut hog = daemon.target("tcp").connect();
    write_until_stalled(&mut *hog, Duration::from_millis(500), 64 << 20);
    daemon.signal(libc::SIGINT);
    wait_until("the daemon stops accepting", || {
        TcpStream::connect(server).is_err()
    });
    assert!(
        daemon.running(),
        "still flushing to a client that does not read"
    );
    daemon.signal(libc::SIGINT);
    let exit = daemon.wait_exit();
    assert_clean_exit(&exit);
    let about_it: Vec<&str> = exit
        .stderr
        .lines()
        .filter(|line| line.contains("second") || line.contains("grace period over"))
        .collect();
    assert_eq!(about_it.len(), 1, "{about_it:#?}\n{}", exit.stderr);
    assert!(about_it[0].contains("second signal"), "{about_it:?}");
    // The probes of "stops accepting" may have been accepted too.
    assert_eq!(
        final_figure(&exit.stderr, "closed"),
        final_figure(&exit.stderr, "accepted"),
        "{}",
        exit.stderr
    );
}
