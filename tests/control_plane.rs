//! The daemon's control plane (the admin socket, `metrics://`) beside the
//! echo it reports on: a scraper that never reads its answers cannot make
//! the daemon buffer or compute without bound, health checks and `status`
//! are answered while echo connections are at `--max-connections`, `status`
//! lists every reactor's handlers, and its own traffic is not echo traffic.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use support::{status_json, Daemon, WAIT};

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream.set_write_timeout(Some(WAIT)).expect("timeout");
    stream
}

fn echo(stream: &mut TcpStream, payload: &[u8]) {
    stream.write_all(payload).expect("write");
    let mut back = vec![0; payload.len()];
    stream.read_exact(&mut back).expect("echo");
    assert_eq!(back, payload);
}

/// Reads one HTTP response (head and `Content-Length` body); its status
/// line and body.
fn read_response(reader: &mut impl BufRead) -> (String, Vec<u8>) {
    let mut status = String::new();
    reader.read_line(&mut status).expect("status line");
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header line");
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().expect("Content-Length");
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("body");
    (status.trim_end().to_string(), body)
}

/// One `GET PATH` on a fresh connection: the status line and body.
fn get(addr: SocketAddr, path: &str) -> (String, Vec<u8>) {
    let mut conn = connect(addr);
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    read_response(&mut BufReader::new(conn))
}

/// True once the server has closed `stream` (EOF or reset) within `WAIT`.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Ok(0) | Err(_))
}

fn admin_arg(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[test]
fn a_scraper_that_pipelines_status_without_reading_is_paused_and_answered_in_full_later() {
    let dir = support::temp_dir("scraper");
    let admin = dir.join("admin.sock");
    let daemon = Daemon::start(&[
        "tcp://127.0.0.1:0",
        "metrics://127.0.0.1:0",
        "--admin",
        admin_arg(&admin),
    ]);
    let tcp = daemon.addr("tcp://");
    // Idle echo connections make each /status answer large (~150 B a row).
    let mut idle: Vec<TcpStream> = (0..300).map(|_| connect(tcp)).collect();
    for conn in &mut idle {
        echo(conn, b"x");
    }
    let rss_before = daemon.rss_kib();
    // 64 KiB of pipelined requests, and no read.
    let request = b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n";
    let count = 65_536 / request.len();
    let mut scraper = connect(daemon.addr("metrics://"));
    scraper
        .write_all(&request.repeat(count))
        .expect("send the requests");
    // Everyone else is served meanwhile.
    let mut fresh = connect(tcp);
    echo(&mut fresh, b"still served");
    // The daemon owes the scraper at most about --max-buffer (64 KiB) and
    // one answer (~45 KB here), not 2,000 answers.
    let deadline = Instant::now() + WAIT;
    let pending = loop {
        let status = status_json(&admin);
        let rows = status["handlers"].as_array().expect("handlers").clone();
        let scraper_row = rows.iter().find(|row| row["kind"] == "metrics-conn");
        if let Some(row) = scraper_row.filter(|row| row["bytes_in"].as_u64() > Some(0)) {
            break row["pending"].as_u64().expect("pending");
        }
        assert!(Instant::now() < deadline, "no scraper row: {status}");
    };
    assert!(
        pending <= 256 * 1024,
        "the daemon holds {pending} bytes for a client that reads nothing"
    );
    let grown = daemon.rss_kib().saturating_sub(rss_before);
    assert!(
        grown < 10 * 1024,
        "RSS grew {grown} KiB for one scraper that does not read"
    );
    echo(&mut fresh, b"and still");
    // Nothing is lost: once it reads, every request gets its answer, in order.
    let mut reader = BufReader::new(scraper);
    for index in 0..count {
        let (status, body) = read_response(&mut reader);
        assert_eq!(status, "HTTP/1.1 200 OK", "answer {index}");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("a JSON status");
        assert!(json["handlers"].is_array(), "answer {index}: {json}");
    }
    drop(idle);
    let (status, err) = daemon.stop();
    assert!(status.success(), "{err}");
}

#[test]
fn an_admin_client_that_sends_commands_without_reading_is_paused_not_cut() {
    let dir = support::temp_dir("admin-pipeline");
    let admin = dir.join("admin.sock");
    let daemon = Daemon::start(&["tcp://127.0.0.1:0", "--admin", admin_arg(&admin)]);
    let client = std::os::unix::net::UnixStream::connect(&admin).expect("connect");
    client.set_read_timeout(Some(WAIT)).expect("timeout");
    client.set_write_timeout(Some(WAIT)).expect("timeout");
    let count = 60_000 / "status json\n".len();
    // Written from a thread: the daemon stops reading while it owes
    // --max-buffer, so this write completes only as we read.
    let mut writer = client.try_clone().expect("clone");
    let sending = std::thread::spawn(move || {
        writer
            .write_all(&b"status json\n".repeat(count))
            .expect("send the commands");
    });
    std::thread::sleep(Duration::from_millis(500));
    let mut answers = 0;
    for line in BufReader::new(client).lines() {
        let line = line.expect("an answer line, not a cut connection");
        if line == "." {
            answers += 1;
            if answers == count {
                break;
            }
        } else {
            let json: serde_json::Value = serde_json::from_str(&line).expect("JSON");
            assert!(json["handlers"].is_array());
        }
    }
    sending.join().expect("sender");
    assert_eq!(answers, count);
    let (status, err) = daemon.stop();
    assert!(status.success(), "{err}");
}

#[test]
fn status_and_slash_status_list_the_handlers_of_every_reactor() {
    let dir = support::temp_dir("every-reactor");
    let admin = dir.join("admin.sock");
    let daemon = Daemon::start(&[
        "--reactors",
        "2",
        "tcp://127.0.0.1:0",
        "metrics://127.0.0.1:0",
        "--admin",
        admin_arg(&admin),
    ]);
    let tcp = daemon.addr("tcp://");
    let mut conns: Vec<TcpStream> = (0..40).map(|_| connect(tcp)).collect();
    for conn in &mut conns {
        echo(conn, b"hello");
    }
    let tcp_rows = |status: &serde_json::Value| -> Vec<serde_json::Value> {
        status["handlers"]
            .as_array()
            .expect("handlers")
            .iter()
            .filter(|row| row["kind"] == "tcp-conn")
            .cloned()
            .collect()
    };
    // Each reactor publishes every 100 ms: wait for both.
    let deadline = Instant::now() + WAIT;
    let rows = loop {
        let status = status_json(&admin);
        let rows = tcp_rows(&status);
        if rows.len() == 40 || Instant::now() > deadline {
            break rows;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        rows.len(),
        40,
        "status lists {} of 40 connections",
        rows.len()
    );
    let reactors: std::collections::BTreeSet<u64> = rows
        .iter()
        .filter_map(|row| row["reactor"].as_u64())
        .collect();
    assert_eq!(reactors.len(), 2, "rows of both reactors: {reactors:?}");
    // The table too: one row per connection.
    let (ok, text, err) = support::run(&["status", "--admin", admin_arg(&admin)]);
    assert!(ok.success(), "{err}");
    assert_eq!(text.matches("tcp-conn").count(), 40, "{text}");
    // And /status.
    let (status, body) = get(daemon.addr("metrics://"), "/status");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(tcp_rows(&json).len(), 40, "{json}");
    drop(conns);
    let (status, err) = daemon.stop();
    assert!(status.success(), "{err}");
}

#[test]
fn health_checks_and_status_are_answered_while_echo_connections_are_at_the_limit() {
    let dir = support::temp_dir("control-reserve");
    let admin = dir.join("admin.sock");
    let daemon = Daemon::start(&[
        "tcp://127.0.0.1:0",
        "metrics://127.0.0.1:0",
        "--admin",
        admin_arg(&admin),
        "--max-connections",
        "3",
    ]);
    let tcp = daemon.addr("tcp://");
    let metrics = daemon.addr("metrics://");
    let mut full: Vec<TcpStream> = (0..3).map(|_| connect(tcp)).collect();
    for conn in &mut full {
        echo(conn, b"in");
    }
    let mut extra = connect(tcp);
    let _ = extra.write_all(b"over the limit");
    assert!(
        closed_by_server(&mut extra),
        "a 4th echo connection was served"
    );
    // The control plane is served all the same.
    assert_eq!(
        get(metrics, "/healthz"),
        ("HTTP/1.1 200 OK".into(), b"ok".to_vec())
    );
    let (status, body) = get(metrics, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let body = String::from_utf8_lossy(&body).into_owned();
    let open = body
        .lines()
        .find(|line| line.starts_with("echoplex_connections_open{endpoint=\"tcp://"))
        .unwrap_or_else(|| panic!("{body}"));
    assert!(open.ends_with(" 3"), "{open}");
    let status = status_json(&admin);
    assert_eq!(status["connections"], 3, "{status}");
    // The reserve is small and its own: a flood of scrapers, each in the
    // middle of a request (so none may be closed to make room), fills it
    // and is turned away, and echo connections are not touched.
    let held: Vec<TcpStream> = (0..16).map(|_| mid_request(metrics)).collect();
    let mut over = connect(metrics);
    let _ = write!(over, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        closed_by_server(&mut over),
        "the 17th control connection was served"
    );
    for conn in &mut full {
        echo(conn, b"still in");
    }
    drop(held);
    support::wait_until("the reserve frees up", || {
        std::panic::catch_unwind(|| get(metrics, "/healthz")).is_ok_and(|(s, _)| s.contains("200"))
    });
    let status = status_json(&admin);
    assert!(status["rejected_control"].as_u64() >= Some(1), "{status}");
    drop(full);
    let (status, err) = daemon.stop();
    assert!(status.success(), "{err}");
}

#[test]
fn status_traffic_is_counted_on_the_admin_line_not_in_the_echo_totals() {
    let dir = support::temp_dir("status-self");
    let admin = dir.join("admin.sock");
    let daemon = Daemon::start(&[
        "tcp://127.0.0.1:0",
        "metrics://127.0.0.1:0",
        "--admin",
        admin_arg(&admin),
    ]);
    for _ in 0..5 {
        status_json(&admin);
        get(daemon.addr("metrics://"), "/metrics");
    }
    let mut conn = connect(daemon.addr("tcp://"));
    echo(&mut conn, &[7; 100]);
    let status = status_json(&admin);
    assert_eq!(status["bytes_in"], 100, "echo bytes only: {status}");
    assert_eq!(status["bytes_out"], 100, "echo bytes only: {status}");
    assert!(
        status["control_bytes_out"].as_u64() > Some(1000),
        "its own line counts it: {status}"
    );
    let (ok, text, err) = support::run(&["status", "--admin", admin_arg(&admin)]);
    assert!(ok.success(), "{err}");
    assert!(text.contains("bytes in 100 out 100\n"), "{text}");
    assert!(
        text.contains("control (admin, metrics) connections"),
        "{text}"
    );
    drop(conn);
    let (status, err) = daemon.stop();
    assert!(status.success(), "{err}");
}

/// A connection to `addr` holding half a request (its head not ended).
fn mid_request(addr: SocketAddr) -> TcpStream {
    let mut conn = connect(addr);
    write!(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n").expect("write");
    conn
}

#[test]
fn scrapers_that_fill_the_metrics_reserve_do_not_lock_out_the_admin_socket() {
    let dir = support::temp_dir("control-reserve-apart");
    let admin = dir.join("admin.sock");
    let daemon = Daemon::start(&["metrics://127.0.0.1:0", "--admin", admin_arg(&admin)]);
    let metrics = daemon.addr("metrics://");
    // Anyone who reaches metrics:// (a network peer) fills its reserve
    // with connections that start a request and never end it...
    let held: Vec<TcpStream> = (0..16).map(|_| mid_request(metrics)).collect();
    let mut over = connect(metrics);
    let _ = write!(over, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        closed_by_server(&mut over),
        "metrics:// served past its reserve"
    );
    // ...and the owner's `status` on the admin socket is answered all the same.
    let status = status_json(&admin);
    assert!(status["rejected_control"].as_u64() >= Some(1), "{status}");
    drop(held);
    let (status, err) = daemon.stop();
    assert!(status.success(), "{err}");
}

#[test]
fn idle_connections_that_fill_the_metrics_reserve_make_room_for_a_health_check() {
    let dir = support::temp_dir("control-evict");
    let admin = dir.join("admin.sock");
    let daemon = Daemon::start(&["metrics://127.0.0.1:0", "--admin", admin_arg(&admin)]);
    let metrics = daemon.addr("metrics://");
    // Idle clients that never send a byte (a port scan, a stuck scraper)
    // fill the reserve twice over...
    let mut idle: Vec<TcpStream> = (0..32).map(|_| connect(metrics)).collect();
    // ...and a balancer's health check is answered at once, each time:
    // the longest idle make room for it.
    for _ in 0..3 {
        assert_eq!(
            get(metrics, "/healthz"),
            ("HTTP/1.1 200 OK".into(), b"ok".to_vec())
        );
    }
    assert!(
        closed_by_server(&mut idle[0]),
        "the longest idle connection is still open"
    );
    let status = status_json(&admin);
    assert_eq!(status["rejected_control"], 0, "{status}");
    assert!(status["evicted_control"].as_u64() >= Some(17), "{status}");
    drop(idle);
    let (status, err) = daemon.stop();
    assert!(status.success(), "{err}");
}

#[test]
fn a_metrics_request_in_progress_is_not_closed_to_make_room() {
    let daemon = Daemon::start(&["metrics://127.0.0.1:0"]);
    let metrics = daemon.addr("metrics://");
    // The oldest connection is in the middle of a request: it is the
    // longest idle, but not quiet, so the newcomers pass it by.
    let mut busy = mid_request(metrics);
    let idle: Vec<TcpStream> = (0..32).map(|_| connect(metrics)).collect();
    assert_eq!(
        get(metrics, "/healthz"),
        ("HTTP/1.1 200 OK".into(), b"ok".to_vec())
    );
    write!(busy, "\r\n").expect("the request's end");
    assert_eq!(
        read_response(&mut BufReader::new(busy)),
        ("HTTP/1.1 200 OK".into(), b"ok".to_vec())
    );
    drop(idle);
    let (status, err) = daemon.stop();
    assert!(status.success(), "{err}");
}

#[test]
fn idle_clients_that_fill_the_admin_reserve_make_room_for_status() {
    let dir = support::temp_dir("admin-evict");
    let admin = dir.join("admin.sock");
    let daemon = Daemon::start(&["tcp://127.0.0.1:0", "--admin", admin_arg(&admin)]);
    // One client mid-command (not quiet: never closed for a newcomer),
    // then more idle ones than the reserve holds.
    let mut busy = UnixStream::connect(&admin).expect("connect");
    busy.set_read_timeout(Some(WAIT)).expect("timeout");
    busy.write_all(b"sta").expect("write");
    let idle: Vec<UnixStream> = (0..32)
        .map(|_| UnixStream::connect(&admin).expect("connect"))
        .collect();
    let status = status_json(&admin);
    assert_eq!(status["rejected_control"], 0, "{status}");
    assert!(status["evicted_control"].as_u64() >= Some(16), "{status}");
    busy.write_all(b"tus json\n").expect("the command's end");
    let mut line = String::new();
    BufReader::new(busy).read_line(&mut line).expect("answer");
    let answer: serde_json::Value = serde_json::from_str(&line).expect("JSON");
    assert!(answer["evicted_control"].as_u64() >= Some(16), "{answer}");
    drop(idle);
    let (status, err) = daemon.stop();
    assert!(status.success(), "{err}");
}
