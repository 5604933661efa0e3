//! The daemon under hostile or careless use, by behaviour: its logs never
//! block the loop nor grow with what clients do; SIGTERM loses nothing the
//! kernel acknowledged; `--format` records are bounded by `--max-buffer`;
//! status, the admin socket and Unix socket paths stay usable when things
//! go wrong (out of descriptors, missing directories, unbound senders,
//! abstract names limited to one user). Figures are printed with
//! `--nocapture`.

mod support;

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use support::{
    assert_clean_exit, assert_one_error_line, pattern, read_pattern_until_closed, tcp_queues,
    unread_bytes, wait_until, Daemon, Ending, PatternCheck, Watched, IO_TIMEOUT,
};

/// The tutorial's record: `struct.pack('I 2s f', 1, b'ab', 2.7)`.
const RECORD: [u8; 12] = [
    0x01, 0x00, 0x00, 0x00, 0x61, 0x62, 0x00, 0x00, 0xcd, 0xcc, 0x2c, 0x40,
];

fn tcp(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream
}

/// Sends `records` tutorial records in one write and reads them all back.
fn echo_records(addr: SocketAddr, records: usize) {
    let mut stream = tcp(addr);
    let sent = RECORD.repeat(records);
    stream.write_all(&sent).expect("send records");
    let mut back = vec![0; sent.len()];
    stream.read_exact(&mut back).expect("records echoed");
    assert_eq!(back, sent);
}

fn kill(pid: u32, signal: i32) {
    support::signal_pid(pid as i32, signal);
}

/// Waits (bounded) for `child` to exit; panics (after killing it) if not.
fn wait_child(child: &mut Child) -> std::process::ExitStatus {
    support::wait_bounded(child, IO_TIMEOUT, "the daemon")
}

fn count(stderr: &str, needle: &str) -> usize {
    stderr.lines().filter(|line| line.contains(needle)).count()
}

// ---------------------------------------------------------------------------
// Logs never block the loop, and no client multiplies them

/// A pipe: (read end, write end).
fn pipe() -> (File, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two descriptors we own from here on.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2");
    // SAFETY: both descriptors are fresh and owned by nobody else.
    unsafe { (File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Starts `serve ARGS` with stderr going into `stderr`; returns the child
/// and its `listening` endpoints once `ready` came.
fn spawn_with_stderr(args: &[&str], env: &[(&str, &str)], stderr: OwnedFd) -> (Child, Vec<String>) {
    let mut child = Command::new(support::bin())
        .arg("serve")
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .spawn()
        .expect("spawn echoplex serve");
    match support::wait_ready(&mut child) {
        Some(endpoints) => (child, endpoints),
        None => panic!("serve {args:?} never became ready"),
    }
}

fn addr_of(endpoints: &[String], scheme: &str) -> SocketAddr {
    endpoints
        .iter()
        .find_map(|e| e.strip_prefix(scheme))
        .unwrap_or_else(|| panic!("no {scheme} in {endpoints:?}"))
        .parse()
        .expect("HOST:PORT")
}

#[test]
fn a_stderr_pipe_nobody_reads_never_stops_the_loop() {
    let (mut log_pipe, write_end) = pipe();
    // --trace logs every turn of the loop: the 64 KiB pipe fills at once.
    let (mut child, endpoints) = spawn_with_stderr(
        &["--trace", "tcp://127.0.0.1:0", "binary://127.0.0.1:0"],
        &[("RUST_LOG", "debug")],
        write_end,
    );
    let tcp_addr = addr_of(&endpoints, "tcp://");
    let binary_addr = addr_of(&endpoints, "binary://");

    // 2,000 records once froze the daemon. Then echo until
    // the pipe is full (every turn of the loop logs).
    echo_records(binary_addr, 2000);
    let mut stream = tcp(tcp_addr);
    // The pipe's real size: 64 KiB, or 8 KiB once the user has many pipe
    // pages in use (fs.pipe-user-pages-soft).
    // SAFETY: F_GETPIPE_SZ only reads the pipe's capacity.
    let capacity = unsafe { libc::fcntl(log_pipe.as_raw_fd(), libc::F_GETPIPE_SZ) };
    let capacity = usize::try_from(capacity).expect("F_GETPIPE_SZ");
    // Full: most of the capacity used (pages are not packed to the byte)
    // and no longer growing while the daemon keeps logging. Hundreds of
    // round trips: a loaded machine may need far more than IO_TIMEOUT.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut last, mut unchanged) = (0, 0);
    while unchanged < 100 || last < capacity * 3 / 4 {
        assert!(
            Instant::now() < deadline,
            "the stderr pipe never filled: {last} of {capacity} bytes"
        );
        stream.write_all(b"fill\n").expect("send");
        let mut back = [0u8; 5];
        stream
            .read_exact(&mut back)
            .expect("echo while filling the pipe");
        let now = unread_bytes(&log_pipe);
        unchanged = if now == last { unchanged + 1 } else { 0 };
        last = now;
    }

    // The pipe stays full (nobody reads it); the daemon keeps echoing, and
    // logs far more than its queue holds.
    const ECHOES: usize = 5000;
    let mut latencies = Vec::new();
    for i in 0..ECHOES {
        let message = format!("ping {i:>6}\n");
        let started = Instant::now();
        stream.write_all(message.as_bytes()).expect("send");
        let mut back = vec![0; message.len()];
        stream
            .read_exact(&mut back)
            .expect("echo while stderr is full");
        latencies.push(started.elapsed());
        assert_eq!(back, message.as_bytes());
    }
    echo_records(binary_addr, 2000);
    latencies.sort();
    eprintln!(
        "stderr pipe full ({} of {capacity} bytes unread): {ECHOES} TCP echoes, latency p50 {:?}, p99 {:?}, max {:?}",
        unread_bytes(&log_pipe),
        latencies[ECHOES / 2],
        latencies[ECHOES * 99 / 100],
        latencies[ECHOES - 1]
    );

    // Now read the pipe: the daemon says how many lines it dropped.
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = vec![0; 64 * 1024];
        while let Ok(n) = log_pipe.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut log = Vec::new();
    let deadline = Instant::now() + IO_TIMEOUT;
    let dropped_line = loop {
        if let Ok(chunk) = rx.recv_timeout(Duration::from_millis(50)) {
            log.extend_from_slice(&chunk);
        }
        let text = String::from_utf8_lossy(&log);
        if let Some(line) = text.lines().find(|l| l.contains("log lines (")) {
            break line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no 'log lines dropped' report once stderr was read"
        );
    };
    eprintln!("after the pipe was read: {dropped_line}");
    let dropped: u64 = dropped_line
        .split(" log lines (")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("a count of dropped lines");
    assert!(dropped > 0);

    // SIGTERM ends it, at once and cleanly.
    kill(child.id(), libc::SIGTERM);
    let status = wait_child(&mut child);
    assert!(status.success(), "exit status {status}");
}

#[test]
fn no_client_can_make_the_daemon_log_once_per_message() {
    let dir = support::temp_dir("per-message-logs");
    let dgram_path = dir.join("d.sock");
    let group_port = support::free_udp_port();
    let multicast = format!("multicast://224.10.10.10:{group_port}");
    let unix_dgram = format!("unix-dgram:{}", dgram_path.display());
    let started = Instant::now();
    let daemon = Watched::start_env(
        &[
            "tcp://127.0.0.1:0",
            "binary://127.0.0.1:0",
            &multicast,
            &unix_dgram,
            "--max-connections",
            "1",
        ],
        &[("RUST_LOG", "info")],
    );
    let binary = addr_of(&daemon.endpoints, "binary://");
    let tcp_addr = daemon.target("tcp").inet();
    // How long each flood took: the limit is per second, so a loaded
    // machine that spreads a flood over more seconds may show more lines.
    let mut spans = Vec::new();

    // 2,000 records: the tutorial's `unpacked:` line, 2,000 times before.
    let phase = Instant::now();
    echo_records(binary, 2000);
    spans.push(phase.elapsed());

    // 300 multicast datagrams: a `received` line each before.
    let sender = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
    sender.set_multicast_ttl_v4(1).expect("ttl");
    sender
        .set_multicast_if_v4(&Ipv4Addr::LOCALHOST)
        .expect("iface");
    let sender = UdpSocket::from(sender);
    sender
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let group = SocketAddrV4::new(Ipv4Addr::new(224, 10, 10, 10), group_port);
    let mut acks = 0;
    let mut buf = [0u8; 16];
    let phase = Instant::now();
    for _ in 0..300 {
        sender.send_to(b"data", group).expect("send to the group");
        if sender.recv_from(&mut buf).is_ok() {
            acks += 1;
        }
    }
    spans.push(phase.elapsed());
    assert!(acks > 0, "the multicast responder answered nothing");

    // 200 oversized Unix datagrams: a warning each before.
    let client_path = dir.join("c.sock");
    let client = UnixDatagram::bind(&client_path).expect("bind client");
    let big = vec![7u8; 70_000];
    let phase = Instant::now();
    for _ in 0..200 {
        client
            .send_to(&big, &dgram_path)
            .expect("send a big datagram");
    }
    client.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    client.send_to(b"small", &dgram_path).expect("send");
    let mut back = [0u8; 16];
    let n = client.recv(&mut back).expect("the small one is echoed");
    assert_eq!(&back[..n], b"small");
    spans.push(phase.elapsed());

    // --max-connections 1 under churn: the "once per burst" warning was
    // re-armed by every accepted connection.
    let admitted = |stream: &mut TcpStream| {
        stream.write_all(b"x").is_ok() && {
            let mut one = [0u8; 1];
            matches!(stream.read(&mut one), Ok(1))
        }
    };
    let phase = Instant::now();
    let mut holder = tcp(tcp_addr);
    assert!(admitted(&mut holder));
    for _ in 0..100 {
        let mut extra = tcp(tcp_addr);
        assert!(!admitted(&mut extra), "over --max-connections, yet served");
        drop(holder);
        let deadline = Instant::now() + IO_TIMEOUT;
        holder = loop {
            let mut next = tcp(tcp_addr);
            if admitted(&mut next) {
                break next;
            }
            assert!(Instant::now() < deadline, "never admitted again");
        };
    }
    drop(holder);
    spans.push(phase.elapsed());

    let exit = daemon.stop(libc::SIGTERM);
    assert_clean_exit(&exit);
    let secs = started.elapsed().as_secs() + 1;
    // The limit is per second and call site: 5 lines a second at most.
    let allowed = 5 * secs as usize + 5;
    for ((needle, sent), span) in [
        ("unpacked: (", 2000),
        ("received 4 bytes from", 300),
        ("larger than 65536 bytes", 200),
        ("--max-connections 1 reached", 100),
    ]
    .into_iter()
    .zip(spans)
    {
        let lines = count(&exit.stderr, needle);
        // The seconds the flood touched: its own, each started or ended
        // one whole, and one more (the daemon may log a moment after our
        // last reply).
        let seconds = span.as_secs() as usize + 3;
        let in_span = 5 * seconds;
        eprintln!("{needle:?}: {lines} lines for {sent} messages in {span:?}");
        assert!(lines >= 1, "no {needle:?} line at all:\n{}", exit.stderr);
        assert!(
            lines <= allowed && lines <= in_span,
            "{lines} {needle:?} lines for {sent} messages in {span:?} ({secs} s in all)"
        );
    }
    assert!(
        exit.stderr.contains("not shown"),
        "what was held back is counted:\n{}",
        exit.stderr
    );
}

// ---------------------------------------------------------------------------
// SIGTERM loses nothing the kernel acknowledged

#[test]
fn sigterm_after_a_stall_echoes_every_byte_sent_before_it() {
    const TOTAL: usize = 5_700_000;
    // The grace period bounds the wait for the whole echo (5.7 MB after
    // SIGCONT): a loaded machine may need more than a few seconds, and a
    // daemon that is done exits at once whatever the grace.
    let mut daemon = Watched::start(&["--grace", "30", "tcp://127.0.0.1:0"]);
    let server = daemon.target("tcp").inet();
    let mut client = tcp(server);
    let reader = client.try_clone().expect("clone");
    let me = client.local_addr().expect("local");
    // One byte there and back first: the daemon has accepted us (a
    // connection still in the kernel's backlog at SIGTERM is refused).
    client.write_all(&pattern(0, 1)).expect("send");
    let mut first = [0u8; 1];
    client.read_exact(&mut first).expect("first byte echoed");

    client
        .set_write_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    daemon.signal(libc::SIGSTOP);
    let (done_tx, done_rx) = mpsc::channel();
    let writer = thread::spawn(move || {
        let data = pattern(1, TOTAL - 1);
        let result = client.write_all(&data);
        let _ = client.shutdown(Shutdown::Write);
        let _ = done_tx.send(());
        result.is_ok()
    });
    // The daemon is stopped for as long as the kernel takes to queue our
    // bytes, which on a loaded machine can outlast IO_TIMEOUT: the reader
    // waits for the whole shutdown instead (bounded by the grace period).
    reader
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let reader = thread::spawn(move || {
        let mut reader = reader;
        let mut check = PatternCheck::default();
        check.feed(&first);
        let mut buf = vec![0; 64 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return (check.seen(), Ending::Eof),
                Ok(n) => check.feed(&buf[..n]),
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(err) if err.kind() == ErrorKind::ConnectionReset => {
                    return (check.seen(), Ending::Reset)
                }
                Err(err) => panic!("reading the echo: {err} after {}", check.seen()),
            }
        }
    });
    // While stopped the kernel buffers take what they can; the rest (and
    // the FIN) follows once the daemon runs again.
    wait_until("the stopped daemon's socket holds our bytes", || {
        tcp_queues(server, me).is_some_and(|queues| queues.unread > 0)
    });
    let _ = done_rx.recv_timeout(Duration::from_secs(2));
    daemon.signal(libc::SIGTERM);
    daemon.signal(libc::SIGCONT);

    let sent_all = writer.join().expect("writer");
    let (echoed, ending) = reader.join().expect("reader");
    let exit = daemon.wait_exit();
    eprintln!(
        "SIGTERM after {TOTAL} bytes and a FIN: {echoed} echoed, {} lost, ended by {ending:?}",
        TOTAL as u64 - echoed
    );
    assert!(sent_all, "the daemon stopped taking bytes");
    assert_eq!(echoed, TOTAL as u64, "bytes lost at shutdown");
    assert_eq!(ending, Ending::Eof);
    assert_clean_exit(&exit);
}

/// A TCP client with a tiny receive buffer: the daemon can hand it little.
fn small_window_client(server: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(&server.into()).expect("connect");
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream
}

#[test]
fn bytes_still_owed_when_grace_ends_are_a_reset_never_a_clean_close() {
    const TOTAL: usize = 4 << 20;
    // --max-buffer above TOTAL: the daemon reads everything, so its socket
    // holds nothing unread and the kernel alone would close it cleanly.
    let mut daemon = Watched::start(&[
        "--grace",
        "0.5",
        "--max-buffer",
        "16777216",
        "tcp://127.0.0.1:0",
    ]);
    let server = daemon.target("tcp").inet();
    let mut client = small_window_client(server);
    let me = client.local_addr().expect("local");
    client.write_all(&pattern(0, TOTAL)).expect("send");
    wait_until("the daemon has read all we sent", || {
        let theirs = tcp_queues(server, me).expect("the daemon's socket");
        let ours = tcp_queues(me, server).expect("our socket");
        theirs.unread == 0 && ours.unacked == 0
    });
    // We never read and never send our FIN: grace runs out with bytes owed.
    daemon.signal(libc::SIGTERM);
    let exit = daemon.wait_exit();
    assert_clean_exit(&exit);
    let (echoed, ending) = read_pattern_until_closed(&mut client);
    eprintln!("grace over with bytes owed: {echoed} of {TOTAL} echoed, then {ending:?}");
    assert!(echoed < TOTAL as u64);
    assert_eq!(
        ending,
        Ending::Reset,
        "a clean end of stream after {echoed} of {TOTAL} bytes hides the loss"
    );
}

#[test]
fn datagrams_held_at_sigterm_are_answered() {
    const DATAGRAMS: usize = 150;
    // A daemon that has answered everything exits at once; the grace only
    // bounds how long a loaded machine may take to.
    let mut daemon = Watched::start(&["--grace", "30", "udp://127.0.0.1:0"]);
    let server = daemon.target("udp").inet();
    let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
    // A gap between two answers is no sign the daemon is done (a loaded
    // machine stalls it): wait for each answer up to the grace period.
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    daemon.signal(libc::SIGSTOP);
    for i in 0..DATAGRAMS {
        client
            .send_to(format!("datagram {i:>5}").as_bytes(), server)
            .expect("send");
    }
    daemon.signal(libc::SIGTERM);
    daemon.signal(libc::SIGCONT);
    let mut answered = 0;
    let mut buf = [0u8; 64];
    while answered < DATAGRAMS && client.recv_from(&mut buf).is_ok() {
        answered += 1;
    }
    assert_clean_exit(&daemon.wait_exit());
    // The daemon is gone: anything more it sent is queued here already.
    client.set_nonblocking(true).expect("nonblocking");
    while client.recv_from(&mut buf).is_ok() {
        answered += 1;
    }
    eprintln!("{answered} of {DATAGRAMS} datagrams held at SIGTERM answered");
    assert_eq!(answered, DATAGRAMS);
}

// ---------------------------------------------------------------------------
// --format records are bounded by --max-buffer

#[test]
fn format_records_must_fit_max_buffer_and_not_be_empty() {
    for (format, mentions) in [
        ("1048576s", &["1048576 bytes", "--max-buffer 65536"][..]),
        ("", &["zero-length"][..]),
        ("0s", &["zero-length"][..]),
        // Checked even without a binary:// endpoint.
        ("Q Z", &["'Z'"][..]),
    ] {
        let (status, out, err) = support::run(&["serve", "--format", format, "tcp://127.0.0.1:0"]);
        assert_eq!(status.code(), Some(2), "--format {format:?}: {err}");
        assert!(out.is_empty(), "nothing served: {out}");
        assert_one_error_line(&err, mentions);
    }
    // A format that fits a raised --max-buffer is served.
    let daemon = Daemon::start(&[
        "--format",
        "100000s",
        "--max-buffer",
        "131072",
        "binary://127.0.0.1:0",
    ]);
    let mut stream = tcp(daemon.addr("binary://"));
    let record = pattern(0, 100_000);
    stream.write_all(&record).expect("send");
    let mut back = vec![0; record.len()];
    stream.read_exact(&mut back).expect("echo");
    assert!(back == record);
}

/// What a `binary://` connection holds (the echo it
/// owes plus a partial record) stays within `--max-buffer`, however the
/// records are cut, while the peer does not read. In-process, one turn at
/// a time.

#[test]
fn a_partial_record_counts_against_max_buffer() {
    use echoplex::endpoint::Endpoint;
    use echoplex::reactor::{Limits, ManualClock, Reactor, Turn};
    use echoplex::services::{self, ServeConfig};

    const MAX_BUFFER: usize = 65_536;
    const RECORD: usize = 40_000;
    let limits = Limits {
        max_buffer: MAX_BUFFER,
        ..Limits::default()
    };
    let mut reactor = Reactor::with_clock(limits, ManualClock::new()).expect("reactor");
    let config = ServeConfig {
        format: format!("{RECORD}s"),
        ..ServeConfig::default()
    };
    let endpoint: Endpoint = "binary://127.0.0.1:0".parse().expect("endpoint");
    let bound = services::bind(&endpoint, &config).expect("bind");
    let addr = bound.endpoint.socket_addr().expect("address");
    reactor.add(bound.handler).expect("add");

    let client = small_window_client(addr);
    client.set_nonblocking(true).expect("non-blocking");
    let mut client = client;
    // Odd-sized writes, so a partial record is held most of the time.
    let chunk = vec![0x5a; 65_521];
    let (mut sent, mut stalled_turns, mut most) = (0usize, 0, 0);
    let deadline = Instant::now() + IO_TIMEOUT;
    while stalled_turns < 50 {
        assert!(Instant::now() < deadline, "the connection never stalled");
        match client.write(&chunk) {
            Ok(n) => {
                sent += n;
                stalled_turns = 0;
            }
            Err(err) if err.kind() == ErrorKind::WouldBlock => stalled_turns += 1,
            Err(err) => panic!("write: {err}"),
        }
        assert_eq!(
            reactor.turn(Some(Duration::from_millis(5))).expect("turn"),
            Turn::Running
        );
        for (_, row) in reactor.describe_all() {
            if row.kind == "binary-conn" {
                most = most.max(row.pending);
                assert!(
                    row.pending <= MAX_BUFFER,
                    "the connection holds {} bytes, over --max-buffer {MAX_BUFFER}",
                    row.pending
                );
            }
        }
    }
    eprintln!("{sent} bytes sent to a peer that never reads; at most {most} held");
    assert!(
        sent > 2 * MAX_BUFFER,
        "the test must push past --max-buffer"
    );
    assert!(most > RECORD, "the test must fill the connection's budget");
}

// ---------------------------------------------------------------------------
// Status, the admin socket and socket paths when things go wrong

#[test]
fn status_answers_while_the_daemon_is_out_of_descriptors() {
    let dir = support::temp_dir("status-no-fds");
    let admin = dir.join("admin.sock");
    let admin_arg = admin.to_str().expect("utf-8 path");
    let daemon = Daemon::start_with(
        &[
            "tcp://127.0.0.1:0",
            "--max-connections",
            "1000",
            "--admin",
            admin_arg,
        ],
        |cmd| support::set_nofile(cmd, 40, 40),
    );
    let addr = daemon.addr("tcp://");
    // Take every descriptor the daemon has, and keep knocking.
    let clients: Vec<TcpStream> = (0..60).map(|_| tcp(addr)).collect();
    let mut probe = tcp(addr);
    let served = probe.write_all(b"?").is_ok() && {
        let mut one = [0u8; 1];
        matches!(probe.read(&mut one), Ok(1))
    };
    assert!(!served, "the test needs the daemon out of descriptors");
    let (status, out, err) = support::run(&["status", "--admin", admin_arg]);
    eprintln!("status while out of descriptors: {status}, {err}");
    assert!(status.success(), "status failed: {err}");
    assert!(out.contains("tcp-conn"), "the table: {out}");
    drop(clients);
    let (status, stderr) = daemon.stop();
    assert!(status.success(), "{stderr}");
}

#[test]
fn the_admin_socket_gets_its_listening_line_before_ready() {
    let dir = support::temp_dir("admin-line");
    let admin = dir.join("admin.sock");
    let admin_arg = admin.to_str().expect("utf-8 path");
    let daemon = Watched::start(&["tcp://127.0.0.1:0", "--admin", admin_arg]);
    assert_eq!(daemon.endpoints.len(), 2, "{:?}", daemon.endpoints);
    assert_eq!(daemon.endpoints[1], format!("admin:{admin_arg}"));
    assert_clean_exit(&daemon.stop(libc::SIGTERM));
}

#[test]
fn status_on_a_socket_that_is_not_an_admin_socket_says_so() {
    let dir = support::temp_dir("not-admin");
    let path = dir.join("echo.sock");
    let endpoint = format!("unix:{}", path.display());
    let daemon = Watched::start(&[&endpoint]);
    let (status, out, err) = support::run(&[
        "status",
        "--admin",
        path.to_str().expect("utf-8"),
        "--timeout",
        "0.5",
    ]);
    assert_eq!(status.code(), Some(3), "nothing ever answered: {err}");
    assert!(out.is_empty());
    assert_one_error_line(
        &err,
        &["no answer within 0.5 s: is this a `serve --admin` socket?"],
    );
    assert_clean_exit(&daemon.stop(libc::SIGTERM));
}

#[test]
fn a_missing_socket_directory_is_named() {
    let dir = support::temp_dir("missing-dir");
    let missing = dir.join("no/such");
    let endpoint = format!("unix:{}/e.sock", missing.display());
    let (status, _out, err) = support::run(&["serve", &endpoint]);
    assert!(!status.success());
    let shown = missing.display().to_string();
    assert_one_error_line(&err, &[&format!("the directory {shown} does not exist")]);
}

#[test]
fn a_relative_unix_dgram_path_is_bound_and_shown_absolute() {
    let dir = support::temp_dir("relative-dgram");
    let dir_path = dir.to_path_buf();
    let daemon = Daemon::start_with(&["unix-dgram:./rel.sock"], |cmd| {
        cmd.current_dir(&dir_path);
    });
    let absolute = dir.join("rel.sock");
    assert_eq!(
        daemon.endpoints,
        [format!("unix-dgram:{}", absolute.display())]
    );
    // A client that sends to the absolute path gets the reply from it (the
    // way socat's UNIX-SENDTO checks its peer).
    let client = UnixDatagram::bind(dir.join("client.sock")).expect("bind client");
    client.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    client.send_to(b"where from?", &absolute).expect("send");
    let mut buf = [0u8; 64];
    let (n, from) = client.recv_from(&mut buf).expect("reply");
    assert_eq!(&buf[..n], b"where from?");
    assert_eq!(from.as_pathname(), Some(absolute.as_path()));
    let (status, stderr) = daemon.stop();
    assert!(status.success(), "{stderr}");
}

#[test]
fn an_unbound_unix_dgram_sender_is_told_why_nothing_came_back() {
    let dir = support::temp_dir("unbound-sender");
    let path = dir.join("d.sock");
    let endpoint = format!("unix-dgram:{}", path.display());
    let daemon = Watched::start_env(&[&endpoint], &[("RUST_LOG", "info")]);
    let started = Instant::now();
    let unbound = UnixDatagram::unbound().expect("socket");
    for _ in 0..200 {
        match unbound.send_to(b"hello?", &path) {
            Ok(_) => {}
            Err(err) if err.kind() == ErrorKind::WouldBlock => break,
            Err(err) => panic!("send: {err}"),
        }
    }
    // The daemon has seen them once it answers a bound client.
    let client = UnixDatagram::bind(dir.join("c.sock")).expect("bind");
    client.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    client.send_to(b"bound", &path).expect("send");
    let mut buf = [0u8; 16];
    client.recv(&mut buf).expect("the bound client is answered");
    let exit = daemon.stop(libc::SIGTERM);
    assert_clean_exit(&exit);
    let lines = count(&exit.stderr, "did not bind its socket");
    let secs = started.elapsed().as_secs() as usize + 1;
    eprintln!("unbound sender: {lines} info lines for 200 datagrams");
    assert!(lines >= 1, "nothing says why:\n{}", exit.stderr);
    assert!(lines <= 5 * secs + 5, "{lines} lines for 200 datagrams");
}

#[test]
fn an_abstract_socket_can_be_limited_to_one_user() {
    // SAFETY: getuid cannot fail.
    let me = unsafe { libc::getuid() };
    let mine = support::unique_name("uid-mine");
    let theirs = support::unique_name("uid-theirs");
    let open = support::unique_name("uid-open");
    let daemon = Watched::start_env(
        &[
            &format!("unix:@{mine}?uid={me}"),
            &format!("unix:@{theirs}?uid={}", me + 4242),
            &format!("unix:@{open}"),
        ],
        &[("RUST_LOG", "info")],
    );
    let connect = |name: &str| {
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .expect("abstract address");
        let stream = std::os::unix::net::UnixStream::connect_addr(&addr).expect("connect");
        stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        stream
    };
    let served = |name: &str| {
        let mut stream = connect(name);
        let _ = stream.write_all(b"me?");
        let mut back = [0u8; 3];
        matches!(stream.read(&mut back), Ok(3))
    };
    assert!(served(&mine), "our own uid is served");
    assert!(!served(&theirs), "another uid's socket served us");
    assert!(served(&open));
    let exit = daemon.stop(libc::SIGTERM);
    assert_clean_exit(&exit);
    assert!(
        exit.stderr.contains("refused a connection: peer uid"),
        "{}",
        exit.stderr
    );
    assert!(
        exit.stderr.contains("--unix-mode does not apply"),
        "the unguarded abstract socket is pointed out:\n{}",
        exit.stderr
    );
    // ?uid is for unix: only.
    let (status, _out, err) = support::run(&["serve", "tcp://127.0.0.1:0?uid=0"]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("uid"), "{err}");
}
