//! `echoplex client` against the real daemon (and, for multicast and
//! binary, against small servers written here), loopback only.

mod support;

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use support::{run, temp_dir, Daemon, WAIT};

const MESSAGE: &str = "This is the message.  It will be repeated.";

/// A daemon serving every kind `client` echoes with.
fn daemon(dir: &Path, abstract_name: &str) -> Daemon {
    let unix = format!("unix:{}", dir.join("s.sock").display());
    let unix_dgram = format!("unix-dgram:{}", dir.join("d.sock").display());
    let abstract_unix = format!("unix:@{abstract_name}");
    Daemon::start(&[
        "tcp://127.0.0.1:0",
        "udp://127.0.0.1:0",
        &unix,
        &unix_dgram,
        &abstract_unix,
    ])
}

/// The payloads of the `received "..."` lines (ASCII messages only).
fn received(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|line| line.strip_prefix("received \""))
        .map(|rest| rest.strip_suffix('"').expect("closing quote").to_string())
        .collect()
}

fn code(status: ExitStatus) -> i32 {
    status.code().expect("exit code, not a signal")
}

/// Asserts one `echoplex: ...` line on stderr, and returns it.
fn one_error_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "want one stderr line, got {stderr:?}");
    assert!(lines[0].starts_with("echoplex: "), "{stderr:?}");
    lines[0]
}

#[test]
fn every_echo_kind_round_trips_and_prints_the_article_lines() {
    let dir = temp_dir("client-kinds");
    let name = format!("echoplex-client-test-{}", std::process::id());
    let daemon = daemon(&dir, &name);
    let endpoints: Vec<String> = daemon.endpoints.clone();
    assert_eq!(endpoints.len(), 5);
    for endpoint in &endpoints {
        let (status, stdout, stderr) = run(&["client", endpoint, MESSAGE]);
        assert_eq!(code(status), 0, "{endpoint}: {stdout}{stderr}");
        assert!(stderr.is_empty(), "{endpoint}: {stderr}");
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines[0], format!("connecting to {endpoint}"));
        assert_eq!(lines[1], format!("sending \"{MESSAGE}\""));
        assert_eq!(lines.last(), Some(&"closing socket"));
        assert_eq!(received(&stdout).concat(), MESSAGE, "{endpoint}");

        let (status, stdout, _) = run(&["client", "--quiet", endpoint, "hello", "world"]);
        assert_eq!(code(status), 0, "{endpoint}");
        assert_eq!(stdout, "hello world\n", "{endpoint}");
    }
    daemon.stop();
}

#[test]
fn streams_are_read_in_chunks_of_at_most_chunk_bytes() {
    let dir = temp_dir("client-chunks");
    let name = format!("echoplex-client-chunks-{}", std::process::id());
    let daemon = daemon(&dir, &name);
    let message = "0123456789abcdefghijklmnopqrstuvwxyzABCD";
    assert_eq!(message.len(), 40);
    for scheme in ["tcp://", "unix:/"] {
        let endpoint = daemon.endpoint(scheme);
        for (chunk, most) in [(None, 16), (Some("5"), 5)] {
            let mut args = vec!["client", endpoint, message];
            if let Some(chunk) = chunk {
                args.extend(["--chunk", chunk]);
            }
            let (status, stdout, _) = run(&args);
            assert_eq!(code(status), 0, "{endpoint}: {stdout}");
            let pieces = received(&stdout);
            assert!(pieces.len() >= 40 / most, "{pieces:?}");
            assert!(
                pieces.iter().all(|p| !p.is_empty() && p.len() <= most),
                "{pieces:?}"
            );
            assert_eq!(pieces.concat(), message);
        }
    }
    daemon.stop();
}

#[test]
fn refused_and_missing_endpoints_exit_3_with_one_line() {
    let dir = temp_dir("client-refused");
    // A port that was just free: nobody listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let tcp = format!("tcp://127.0.0.1:{port}");
    let unix = format!("unix:{}", dir.join("nobody.sock").display());
    let unix_dgram = format!("unix-dgram:{}", dir.join("nobody.sock").display());
    for endpoint in [&tcp, &unix, &unix_dgram] {
        let (status, _, stderr) = run(&["client", endpoint, "x"]);
        assert_eq!(code(status), 3, "{endpoint}: {stderr}");
        let line = one_error_line(&stderr);
        assert!(line.contains(endpoint.as_str()), "{line}");
    }
    let (_, _, stderr) = run(&["client", &tcp, "x"]);
    assert!(stderr.contains("Connection refused"), "{stderr}");
}

#[test]
fn udp_with_nobody_answering_times_out_with_exit_4() {
    // Bound, so no ICMP port-unreachable comes back: just silence.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("udp://{}", silent.local_addr().expect("addr"));
    let started = Instant::now();
    let (status, stdout, stderr) = run(&["client", "--timeout", "0.2", &endpoint, "hello?"]);
    assert_eq!(code(status), 4, "{stdout}{stderr}");
    assert!(started.elapsed() < WAIT);
    let line = one_error_line(&stderr);
    assert!(line.contains("within 0.2 s"), "{line}");
    let mut buf = [0u8; 16];
    silent.set_read_timeout(Some(WAIT)).expect("timeout");
    let (n, _) = silent.recv_from(&mut buf).expect("the datagram arrived");
    assert_eq!(&buf[..n], b"hello?");
}

#[test]
fn usage_errors_exit_2_and_help_documents_the_exit_codes() {
    let (status, _, _) = run(&["client", "metrics://127.0.0.1:1", "hi"]);
    assert_eq!(code(status), 2);
    let (status, _, _) = run(&["client", "tcp://127.0.0.1:1"]);
    assert_eq!(code(status), 2, "a message is required");
    let (status, stdout, _) = run(&["client", "--help"]);
    assert_eq!(code(status), 0);
    for needle in [
        "Exit status",
        "3    could not reach",
        "4    timed out",
        "--timeout",
    ] {
        assert!(stdout.contains(needle), "{needle}: {stdout}");
    }
}

/// Runs `echoplex ARGS...` with TMPDIR set (where a unix-dgram client
/// binds its own socket); bounded like `support::run`.
fn run_with_tmpdir(tmpdir: &Path, args: &[&str]) -> (i32, String) {
    let child = Command::new(support::bin())
        .args(args)
        .env("TMPDIR", tmpdir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut child = child;
    let status = support::wait_bounded(&mut child, WAIT, format_args!("{args:?}"));
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        use std::io::Read;
        let _ = pipe.read_to_string(&mut stderr);
    }
    (code(status), stderr)
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).expect("read_dir").next().is_none()
}

#[test]
fn unix_dgram_client_removes_its_own_socket_file_on_every_path() {
    let dir = temp_dir("client-dgram-cleanup");
    let tmp = temp_dir("client-dgram-tmp");
    let served = format!("unix-dgram:{}", dir.join("d.sock").display());
    let daemon = Daemon::start(&[&served]);

    // Success.
    let (status, stderr) = run_with_tmpdir(&tmp, &["client", &served, "hi"]);
    assert_eq!(status, 0, "{stderr}");
    assert!(is_empty_dir(&tmp));

    // Timeout: a bound socket that never answers.
    let silent_path = dir.join("silent.sock");
    let _silent = std::os::unix::net::UnixDatagram::bind(&silent_path).expect("bind");
    let silent = format!("unix-dgram:{}", silent_path.display());
    let (status, stderr) = run_with_tmpdir(&tmp, &["client", "--timeout", "0.2", &silent, "hi"]);
    assert_eq!(status, 4, "{stderr}");
    assert!(is_empty_dir(&tmp));

    // Error: nothing at the path.
    let missing = format!("unix-dgram:{}", dir.join("missing.sock").display());
    let (status, stderr) = run_with_tmpdir(&tmp, &["client", &missing, "hi"]);
    assert_eq!(status, 3, "{stderr}");
    assert!(is_empty_dir(&tmp));
    daemon.stop();
}

const GROUP: Ipv4Addr = Ipv4Addr::new(224, 10, 10, 10);

/// The article's multicast receiver: joins GROUP on loopback only and
/// answers every datagram with `ack`, until dropped.
struct Receiver {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<Vec<Vec<u8>>>>,
}

impl Receiver {
    fn start(port: u16) -> Receiver {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
        socket.set_reuse_address(true).expect("reuse addr");
        socket.set_reuse_port(true).expect("reuse port");
        socket
            .bind(&SocketAddr::from((GROUP, port)).into())
            .expect("bind group");
        socket
            .join_multicast_v4(&GROUP, &Ipv4Addr::LOCALHOST)
            .expect("join on loopback");
        socket
            .set_multicast_if_v4(&Ipv4Addr::LOCALHOST)
            .expect("multicast if");
        socket.set_multicast_ttl_v4(1).expect("ttl");
        let socket: UdpSocket = socket.into();
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("read timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut heard = Vec::new();
            let mut buf = [0u8; 1500];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    heard.push(buf[..n].to_vec());
                    let _ = socket.send_to(b"ack", from);
                }
            }
            heard
        });
        Receiver {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the receiver; returns what it heard.
    fn finish(mut self) -> Vec<Vec<u8>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("thread")
            .join()
            .expect("receiver")
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn multicast_collects_every_ack_until_quiet() {
    let port = support::free_udp_port();
    let endpoint = format!("multicast://{GROUP}:{port}");
    let first = Receiver::start(port);
    let second = Receiver::start(port);
    let (status, stdout, stderr) = run(&["client", &endpoint, "very important data"]);
    assert_eq!(code(status), 0, "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "sending \"very important data\"");
    let acks: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("received \"ack\" from 127.0.0.1:"))
        .collect();
    assert_eq!(acks.len(), 2, "{stdout}");
    assert!(lines.contains(&"timed out, no more responses"), "{stdout}");

    let (status, stdout, _) = run(&["client", "-q", &endpoint, "again"]);
    assert_eq!(code(status), 0);
    let senders: Vec<&str> = stdout.lines().collect();
    assert_eq!(senders.len(), 2, "{stdout}");
    assert!(
        senders.iter().all(|s| s.starts_with("127.0.0.1:")),
        "{stdout}"
    );

    for heard in [first.finish(), second.finish()] {
        assert_eq!(
            heard,
            vec![b"very important data".to_vec(), b"again".to_vec()]
        );
    }
}

#[test]
fn multicast_with_no_receiver_times_out() {
    let endpoint = format!("multicast://{GROUP}:{}", support::free_udp_port());
    let (status, stdout, stderr) = run(&["client", "--timeout", "0.1", &endpoint, "anyone?"]);
    assert_eq!(code(status), 4, "{stdout}{stderr}");
    assert!(stdout.contains("timed out, no more responses"), "{stdout}");
    one_error_line(&stderr);
    let (status, _, stderr) = run(&["client", "multicast://127.0.0.1:9", "x"]);
    assert_eq!(code(status), 2, "{stderr}");
}

/// A one-connection TCP server that reads `expect` bytes and answers with
/// `reply(bytes)`, then closes.
fn tcp_server(expect: usize, reply: fn(Vec<u8>) -> Vec<u8>) -> (String, thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("tcp://{}", listener.local_addr().expect("addr"));
    let thread = thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        conn.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut got = vec![0u8; expect];
        conn.read_exact(&mut got).expect("message");
        conn.write_all(&reply(got)).expect("reply");
    });
    (endpoint, thread)
}

#[test]
fn a_wrong_echo_exits_1_and_a_short_one_exits_5() {
    let (endpoint, server) = tcp_server(5, |mut got| {
        got[4] = b'O';
        got
    });
    let (status, stdout, stderr) = run(&["client", &endpoint, "hello"]);
    server.join().expect("server");
    assert_eq!(code(status), 1, "{stdout}{stderr}");
    assert_eq!(received(&stdout).concat(), "hellO");
    let line = one_error_line(&stderr);
    assert!(line.contains("first difference at byte 4"), "{line}");

    let (endpoint, server) = tcp_server(5, |got| got[..2].to_vec());
    let (status, _, stderr) = run(&["client", &endpoint, "hello"]);
    server.join().expect("server");
    assert_eq!(code(status), 5, "{stderr}");
    let line = one_error_line(&stderr);
    assert!(line.contains("closed by peer after 2 of 5 bytes"), "{line}");
}

#[test]
fn ctrl_c_still_removes_the_unix_dgram_socket_file() {
    let dir = temp_dir("client-dgram-sigint");
    let tmp = temp_dir("client-dgram-sigint-tmp");
    let silent_path = dir.join("silent.sock");
    let _silent = std::os::unix::net::UnixDatagram::bind(&silent_path).expect("bind");
    let endpoint = format!("unix-dgram:{}", silent_path.display());
    let mut child = Command::new(support::bin())
        .args(["client", "--timeout", "20", &endpoint, "hi"])
        .env("TMPDIR", &tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + WAIT;
    while is_empty_dir(&tmp) {
        assert!(
            Instant::now() < deadline,
            "the client never bound its socket"
        );
        thread::sleep(Duration::from_millis(5));
    }
    let _ = support::kill(child.id() as i32, libc::SIGINT);
    let status = support::wait_bounded(&mut child, WAIT, "the client, after SIGINT,");
    assert_eq!(code(status), 130);
    assert!(is_empty_dir(&tmp));
}

#[test]
fn binary_packs_sends_and_decodes_the_echo() {
    // A raw echo server, as the daemon is for whole records.
    let (tcp, server) = tcp_server(12, |got| got);
    let endpoint = tcp.replace("tcp://", "binary://");
    let (status, stdout, stderr) = run(&["client", &endpoint, "1", "ab", "2.7"]);
    server.join().expect("server");
    assert_eq!(code(status), 0, "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            format!("connecting to {endpoint}").as_str(),
            "values = (1, b'ab', 2.7)",
            "sending 0100000061620000cdcc2c40",
            "received 0100000061620000cdcc2c40",
            "unpacked: (1, b'ab', 2.700000047683716)",
            "closing socket",
        ]
    );

    let (tcp, server) = tcp_server(15, |got| got);
    let endpoint = tcp.replace("tcp://", "binary://");
    let args = [
        "client", "-q", "--format", "<hh3sd", &endpoint, "-1", "-2", "xyz", "-3.5",
    ];
    let (status, stdout, stderr) = run(&args);
    server.join().expect("server");
    assert_eq!(code(status), 0, "{stderr}");
    assert_eq!(stdout, "(-1, -2, b'xyz', -3.5)\n");
}

#[test]
fn binary_against_the_daemon_and_its_failures() {
    let daemon = Daemon::start(&["binary://127.0.0.1:0"]);
    let endpoint = daemon.endpoint("binary://").to_string();
    let (status, stdout, stderr) = run(&["client", &endpoint, "1", "ab", "2.7"]);
    assert_eq!(code(status), 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("sending 0100000061620000cdcc2c40\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("unpacked: (1, b'ab', 2.700000047683716)\n"),
        "{stdout}"
    );

    // Values that do not fit the format are a usage error, sent nowhere.
    for args in [
        vec!["client", &endpoint, "1", "ab"],
        vec!["client", &endpoint, "x", "ab", "2.7"],
        vec!["client", "--format", "I 2z", &endpoint, "1"],
    ] {
        let (status, _, stderr) = run(&args);
        assert_eq!(code(status), 2, "{args:?}: {stderr}");
        one_error_line(&stderr);
    }
    // A format the daemon does not share: its record never completes.
    let args = [
        "client",
        "--timeout",
        "0.2",
        "--format",
        "<hh3sd",
        &endpoint,
        "1",
        "2",
        "xyz",
        "3",
    ];
    let (status, _, stderr) = run(&args);
    assert_eq!(code(status), 4, "{stderr}");
    assert!(
        one_error_line(&stderr).contains("same --format"),
        "{stderr}"
    );
    daemon.stop();

    // A server that changes a byte.
    let (tcp, server) = tcp_server(12, |mut got| {
        got[0] = 2;
        got
    });
    let endpoint = tcp.replace("tcp://", "binary://");
    let (status, stdout, stderr) = run(&["client", &endpoint, "1", "ab", "2.7"]);
    server.join().expect("server");
    assert_eq!(code(status), 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("unpacked: (2, b'ab', 2.700000047683716)"),
        "{stdout}"
    );
    one_error_line(&stderr);
}

#[test]
fn multicast_hears_the_daemon_and_the_article_receiver_alike() {
    let port = support::free_udp_port();
    let endpoint = format!("multicast://{GROUP}:{port}");
    let daemon = Daemon::start(&[&endpoint]);
    let receiver = Receiver::start(port);
    let (status, stdout, stderr) = run(&["client", &endpoint, "very important data"]);
    assert_eq!(code(status), 0, "{stdout}{stderr}");
    let acks = stdout
        .lines()
        .filter(|l| l.starts_with("received \"ack\" from 127.0.0.1:"))
        .count();
    assert_eq!(acks, 2, "{stdout}");
    assert_eq!(receiver.finish().len(), 1);
    daemon.stop();
}

/// Runs `echoplex ARGS...` with `input` on stdin; returns the exit code,
/// stdout (raw) and stderr.
fn run_with_stdin(args: &[&str], input: &[u8]) -> (i32, Vec<u8>, String) {
    use std::io::{Read, Write};
    let mut child = Command::new(support::bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn echoplex");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr");
    let status = support::wait_bounded(&mut child, WAIT, format_args!("echoplex {args:?}"));
    writer.join().expect("writer");
    (code(status), reader.join().expect("reader"), stderr)
}

#[test]
fn a_message_from_a_file_stdin_or_hex_may_hold_any_byte() {
    let dir = temp_dir("client-file");
    let daemon = daemon(&dir, &support::unique_name("client-file"));
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let file = dir.join("message.bin");
    std::fs::write(&file, &all_bytes).expect("write message");
    let unix = format!("unix:{}", dir.join("s.sock").display());
    let unix_dgram = format!("unix-dgram:{}", dir.join("d.sock").display());
    for endpoint in [
        daemon.endpoint("tcp://").to_string(),
        daemon.endpoint("udp://").to_string(),
        unix.clone(),
        unix_dgram,
    ] {
        // -q with -f prints the echoed bytes alone: a file copied through
        // the echo comes out the same.
        let (status, stdout, stderr) = run_with_stdin(
            &[
                "client",
                "-q",
                "-f",
                file.to_str().expect("utf-8 path"),
                &endpoint,
            ],
            b"",
        );
        assert_eq!(status, 0, "{endpoint}: {stderr}");
        assert_eq!(stdout, all_bytes, "{endpoint}");
        let (status, stdout, stderr) =
            run_with_stdin(&["client", "-q", "-f", "-", &endpoint], &all_bytes);
        assert_eq!(status, 0, "{endpoint}: {stderr}");
        assert_eq!(stdout, all_bytes, "{endpoint}");
    }
    let (status, stdout, stderr) =
        run_with_stdin(&["client", "-q", "--hex", &unix, "00 ff 0d0A", "7f"], b"");
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(stdout, b"\x00\xff\x0d\x0a\x7f");
    // Hex from a file, too.
    std::fs::write(&file, "68 69\n").expect("write hex");
    let (status, stdout, stderr) = run_with_stdin(
        &[
            "client",
            "-q",
            "--hex",
            "-f",
            file.to_str().expect("utf-8"),
            &unix,
        ],
        b"",
    );
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(stdout, b"hi");
    // Bad input is a usage error, in one line.
    for args in [
        vec!["client", "--hex", &unix, "abc"],
        vec!["client", "--hex", &unix, "zz"],
        vec!["client", "-f", "/nonexistent/echoplex-message", &unix],
        vec!["client", "-f", "-", &unix, "and words"],
    ] {
        let (status, _, stderr) = run_with_stdin(&args, b"");
        assert_eq!(status, 2, "{args:?}: {stderr}");
    }
    let (status, _, stderr) = run_with_stdin(&["client", "--hex", &unix, "zz"], b"");
    assert_eq!(status, 2);
    assert!(one_error_line(&stderr).contains("--hex"), "{stderr}");
    daemon.stop();
}

#[test]
fn a_megabyte_to_unix_goes_through_a_daemon_that_caps_its_buffer() {
    let dir = temp_dir("client-megabyte");
    let path = dir.join("big.sock");
    let endpoint = format!("unix:{}", path.display());
    // The daemon stops reading a connection that owes this much: a client
    // that sent everything before reading would stall for good.
    let daemon = Daemon::start(&[&endpoint, "--max-buffer", "65536"]);
    let message: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let file = dir.join("megabyte.bin");
    std::fs::write(&file, &message).expect("write message");
    let (status, stdout, stderr) = run_with_stdin(
        &[
            "client",
            "-q",
            "--chunk",
            "65536",
            "--timeout",
            "5",
            "-f",
            file.to_str().expect("utf-8 path"),
            &endpoint,
        ],
        b"",
    );
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(stdout.len(), message.len());
    assert!(stdout[..message.len()] == message[..], "the echo differs");
    daemon.stop();
}

#[test]
fn a_datagram_too_long_is_a_usage_error_on_udp_and_multicast_alike() {
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let udp = format!("udp://{}", silent.local_addr().expect("addr"));
    let port = support::free_udp_port();
    let multicast = format!("multicast://224.10.10.10:{port}");
    let dir = temp_dir("client-too-long");
    let file = dir.join("huge.bin");
    std::fs::write(&file, vec![b'x'; 70_000]).expect("write message");
    for endpoint in [&udp, &multicast] {
        let (status, _, stderr) =
            run(&["client", "-f", file.to_str().expect("utf-8 path"), endpoint]);
        assert_eq!(code(status), 2, "{endpoint}: {stderr}");
        let line = one_error_line(&stderr);
        assert!(line.contains("Message too long"), "{line}");
    }
}

/// The peak resident memory of a running process, in KiB, from /proc.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("VmHWM")
}

/// Kills a child we spawned (by its pid, through the handle) and reaps it.
fn end(mut child: std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn an_endless_file_streams_to_a_stream_kind_in_bounded_memory() {
    use std::io::Read;
    let daemon = Daemon::start(&["tcp://127.0.0.1:0"]);
    let endpoint = daemon.endpoint("tcp://").to_string();
    let mut child = Command::new(support::bin())
        .args(["client", "-q", "-f", "/dev/zero", &endpoint])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // Bounded in bytes and time: the echo must start flowing (a client
    // that reads everything first never sends), and memory must stay low.
    const ENOUGH: u64 = 16 << 20;
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        while total < ENOUGH {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    assert!(buf[..n].iter().all(|&b| b == 0), "an echo byte not zero");
                    total += n as u64;
                }
            }
        }
        total
    });
    let deadline = Instant::now() + WAIT;
    while !reader.is_finished() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    let peak = peak_rss_kib(child.id());
    end(child);
    let echoed = reader.join().expect("reader");
    assert!(
        echoed >= ENOUGH,
        "only {echoed} bytes echoed in {WAIT:?}: the file was not streamed"
    );
    assert!(peak < 64 * 1024, "client peak RSS {peak} KiB");
    daemon.stop();
}

#[test]
fn a_big_file_without_quiet_prints_a_short_report() {
    let dir = temp_dir("client-big-report");
    let daemon = Daemon::start(&["tcp://127.0.0.1:0"]);
    let endpoint = daemon.endpoint("tcp://").to_string();
    let file = dir.join("big.bin");
    let message: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &message).expect("write");
    let (status, stdout, stderr) = run(&["client", "-f", file.to_str().expect("utf-8"), &endpoint]);
    assert_eq!(code(status), 0, "{stderr}");
    assert!(stdout.len() < 8192, "{} bytes of report", stdout.len());
    assert!(stdout.ends_with("closing socket\n"), "{stdout}");
    // One escape style: no Rust `\u{..}` or `\0` beside `\xNN`.
    assert!(
        !stdout.contains("\\u{") && !stdout.contains("\\0"),
        "{stdout}"
    );
    assert!(stdout.contains("\\x00\\x01\\x02"), "{stdout}");
    daemon.stop();
}

#[test]
fn a_datagram_input_is_refused_after_one_datagram_and_a_byte() {
    use std::io::Write;
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let udp = format!("udp://{}", silent.local_addr().expect("addr"));
    silent.set_nonblocking(true).expect("nonblocking");
    // An endless file, and a pipe that never ends: both are refused
    // without waiting for an end.
    let started = Instant::now();
    let (status, _, stderr) = run(&["client", "-f", "/dev/zero", &udp]);
    assert_eq!(code(status), 2, "{stderr}");
    assert!(
        one_error_line(&stderr).contains("Message too long"),
        "{stderr}"
    );
    let mut child = Command::new(support::bin())
        .args(["client", "-f", "-", &udp])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    // One byte more than a UDP datagram carries; the pipe stays open.
    let _ = stdin.write_all(&[b'x'; 65_508]);
    let status = support::exit_within(&mut child, WAIT);
    drop(stdin);
    let Some(status) = status else {
        end(child);
        panic!("the client waited for the end of its input");
    };
    assert_eq!(code(status), 2);
    assert!(started.elapsed() < 2 * WAIT);
    let mut buf = [0u8; 16];
    assert!(silent.recv(&mut buf).is_err(), "a datagram was sent");
}

#[test]
fn ctrl_c_while_waiting_for_standard_input_ends_the_client_at_once() {
    let mut child = Command::new(support::bin())
        .args(["client", "-f", "-", "tcp://127.0.0.1:9"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Its stdin stays open and empty, as a terminal nobody types at.
    let stdin = child.stdin.take().expect("stdin");
    thread::sleep(Duration::from_millis(300));
    let _ = support::kill(child.id() as i32, libc::SIGINT);
    let status = support::exit_within(&mut child, WAIT);
    drop(stdin);
    let Some(status) = status else {
        end(child);
        panic!("the first Ctrl-C did not end the client");
    };
    let output = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(code(status), 130, "{stderr}");
    // It never tried to connect, so it does not say it could not.
    assert!(!stderr.contains("connect"), "{stderr}");
    assert!(output.stdout.is_empty(), "{:?}", output.stdout);
}

#[test]
fn binary_says_when_the_format_changes_a_value() {
    let (tcp, server) = tcp_server(12, |got| got);
    let endpoint = tcp.replace("tcp://", "binary://");
    let (status, stdout, stderr) = run(&["client", &endpoint, "1", "abc", "2.7"]);
    server.join().expect("server");
    assert_eq!(code(status), 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("note: value 2 is b'abc', which 'I 2s f' packs as b'ab'\n"),
        "{stdout}"
    );
}

#[test]
fn metrics_healthz_is_a_client_request_for_health_checks() {
    let daemon = Daemon::start(&["metrics://127.0.0.1:0"]);
    let endpoint = daemon.endpoint("metrics://").to_string();
    let (status, stdout, stderr) = run(&["client", &endpoint, "/healthz"]);
    assert_eq!(code(status), 0, "{stdout}{stderr}");
    assert!(stdout.contains("received HTTP/1.1 200 OK"), "{stdout}");
    let (status, stdout, stderr) = run(&["client", &endpoint, "/no-such-page"]);
    assert_eq!(code(status), 1, "{stdout}{stderr}");
    assert!(one_error_line(&stderr).contains("404"), "{stderr}");
    let (status, _, stderr) = run(&["client", &endpoint, "healthz"]);
    assert_eq!(code(status), 2, "{stderr}");
    daemon.stop();
}

#[test]
fn a_server_that_hangs_up_while_input_is_awaited_ends_the_client() {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("tcp://{}", listener.local_addr().expect("addr"));
    // Bounded even against a client that never connects (one that reads
    // all its input first).
    listener.set_nonblocking(true).expect("nonblocking");
    let server = thread::spawn(move || {
        let deadline = Instant::now() + WAIT;
        let mut conn = loop {
            match listener.accept() {
                Ok((conn, _)) => break conn,
                Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                Err(_) => return false,
            }
        };
        conn.set_nonblocking(false).expect("blocking");
        conn.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut buf = [0u8; 5];
        conn.read_exact(&mut buf).expect("message");
        conn.write_all(&buf).expect("echo");
        // Then it ends the connection while the client's input is open.
        true
    });
    let mut child = Command::new(support::bin())
        .args(["client", "-f", "-", &endpoint])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"hello").expect("input");
    if !server.join().expect("server") {
        end(child);
        panic!("the client never connected");
    }
    let status = support::exit_within(&mut child, WAIT);
    drop(stdin);
    let Some(status) = status else {
        end(child);
        panic!("the client went on waiting for input after the server hung up");
    };
    let output = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(code(status), 5, "{stderr}");
    assert!(
        one_error_line(&stderr).contains("closed by peer"),
        "{stderr}"
    );
}

/// A FIFO at `path` (nobody has it open yet).
fn make_fifo(path: &Path) {
    let name = std::ffi::CString::new(path.to_str().expect("utf-8 path")).expect("no NUL");
    // SAFETY: a valid C string for the duration of the call.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0, "mkfifo");
}

#[test]
fn sigterm_ends_a_client_waiting_on_a_fifo_nobody_writes_to() {
    let dir = temp_dir("client-fifo-term");
    let fifo = dir.join("in.fifo");
    make_fifo(&fifo);
    let daemon = Daemon::start(&["tcp://127.0.0.1:0"]);
    let endpoint = format!("tcp://{}", daemon.addr("tcp://"));
    let mut child = Command::new(support::bin())
        .args(["client", "-f", fifo.to_str().expect("utf-8"), &endpoint])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    thread::sleep(Duration::from_millis(300));
    let _ = support::kill(child.id() as i32, libc::SIGTERM);
    let status = support::exit_within(&mut child, WAIT);
    let Some(status) = status else {
        end(child);
        panic!("SIGTERM did not end a client waiting for a FIFO's writer");
    };
    assert!(!status.success(), "{status:?}");
    drop(daemon);
}

#[test]
fn a_fifo_whose_writer_comes_later_is_read_and_echoed() {
    let dir = temp_dir("client-fifo-late");
    let fifo = dir.join("in.fifo");
    make_fifo(&fifo);
    let daemon = Daemon::start(&["tcp://127.0.0.1:0"]);
    let endpoint = format!("tcp://{}", daemon.addr("tcp://"));
    let child = Command::new(support::bin())
        .args(["client", "-f", fifo.to_str().expect("utf-8"), &endpoint])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    thread::sleep(Duration::from_millis(300));
    std::fs::write(&fifo, MESSAGE).expect("write the FIFO");
    let output = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(MESSAGE), "{stdout}");
    drop(daemon);
}
