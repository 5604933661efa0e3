//! `metrics://`: /healthz, /status and /metrics over keep-alive, errors
//! and bounds, 503 once a shutdown has begun, and the exposition checked by
//! promtool and scraped by a real Prometheus (tools: ignored by default,
//! run by `scripts/test-all`).

mod support;

/// The harness's one check for a tool (a missing one fails under scripts/test-all).
use support::have_tool as have;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use support::{
    bin, notification_with, notify_listener, pattern, round_trip, signal_pid, temp_dir, udp_client,
    udp_round_trip, Daemon, Target, WAIT,
};

fn http(addr: SocketAddr, request: &str) -> (String, String) {
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(WAIT)).expect("timeout");
    conn.write_all(request.as_bytes()).expect("write");
    read_response(&mut conn)
}

/// One response: status line and body (by Content-Length).
fn read_response(conn: &mut TcpStream) -> (String, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        conn.read_exact(&mut byte).expect("response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).expect("utf8 head");
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .expect("Content-Length")
        .trim()
        .parse()
        .expect("length");
    let mut body = vec![0; length];
    conn.read_exact(&mut body).expect("body");
    (
        head.lines().next().unwrap_or_default().to_string(),
        String::from_utf8(body).expect("utf8 body"),
    )
}

#[test]
fn metrics_health_and_status_over_keep_alive_and_errors() {
    let daemon = Daemon::start(&["metrics://127.0.0.1:0", "tcp://127.0.0.1:0"]);
    let endpoints = daemon.endpoints.clone();
    let addr = Target::of(&endpoints[0]).inet();
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(WAIT)).expect("timeout");
    // Two requests on one connection (keep-alive), the second pipelined.
    conn.write_all(
        b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /status HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .expect("write");
    let (status, body) = read_response(&mut conn);
    assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 200 OK", "ok"));
    let (status, body) = read_response(&mut conn);
    assert_eq!(status, "HTTP/1.1 200 OK");
    let json: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
    assert!(
        json["handlers"].as_array().is_some_and(|h| h.len() >= 2),
        "{json}"
    );
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    let (status, body) = read_response(&mut conn);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.contains("# TYPE echoplex_connections_accepted_total counter"));
    assert!(body.contains(&format!(
        "echoplex_endpoint_info{{endpoint=\"{}\"",
        endpoints[1]
    )));
    let (status, _) = http(addr, "GET /nothing HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    // A head that never ends is cut at the bound (16 KiB, the one HTTP
    // parser's, shared with http://): 431, then close.
    let mut endless = TcpStream::connect(addr).expect("connect");
    endless.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut head = b"GET / HTTP/1.1\r\nX: ".to_vec();
    head.resize(17 * 1024, b'a');
    endless.write_all(&head).expect("write");
    assert_eq!(
        read_response(&mut endless).0,
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    // Malformed: 400, then the server closes.
    let mut bad = TcpStream::connect(addr).expect("connect");
    bad.set_read_timeout(Some(WAIT)).expect("timeout");
    bad.write_all(b"HELLO\r\n\r\n").expect("write");
    let (status, _) = read_response(&mut bad);
    assert_eq!(status, "HTTP/1.1 400 Bad Request");
    let mut rest = Vec::new();
    assert_eq!(
        bad.read_to_end(&mut rest).map(|_| rest.len()).unwrap_or(0),
        0
    );
}

#[test]
fn healthz_says_503_once_a_shutdown_has_begun() {
    let (notify, address) = notify_listener("healthz");
    let mut command = Command::new(bin());
    command
        .args(["serve", "metrics://127.0.0.1:0", "--grace", "10"])
        .env("NOTIFY_SOCKET", &address);
    let mut daemon = Daemon::spawn_logged(command);
    let addr = Target::of(&daemon.ready()[0]).inet();
    notification_with(&notify, "READY=1");
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(WAIT)).expect("timeout");
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    assert_eq!(read_response(&mut conn).0, "HTTP/1.1 200 OK");
    // Half a request: the connection is busy, so the shutdown serves it.
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        .expect("write");
    signal_pid(daemon.pid(), libc::SIGTERM);
    notification_with(&notify, "STOPPING=1");
    conn.write_all(b"\r\n").expect("the rest of the request");
    let (status, body) = read_response(&mut conn);
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("HTTP/1.1 503 Service Unavailable", "stopping\n")
    );
    drop(conn);
    assert!(daemon.wait().success(), "stderr:\n{}", daemon.stderr());
}

#[test]
#[ignore = "needs promtool: scripts/test-all"]
fn metrics_pass_promtool_check_metrics() {
    if !have("promtool") {
        return;
    }
    let daemon = Daemon::start(&[
        "metrics://127.0.0.1:0",
        "tcp://127.0.0.1:0",
        "udp://127.0.0.1:0",
    ]);
    let endpoints = daemon.endpoints.clone();
    let message = pattern(1, 1024);
    round_trip(&mut *Target::of(&endpoints[1]).connect(), &message);
    let udp = Target::of(&endpoints[2]).inet();
    udp_round_trip(&udp_client(udp), udp, b"x");
    let (status, body) = http(
        Target::of(&endpoints[0]).inet(),
        "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(status, "HTTP/1.1 200 OK");
    // Figures that belong to one endpoint carry its label.
    for line in [
        format!(
            "echoplex_bytes_received_total{{endpoint=\"{}\"}} 1024\n",
            endpoints[1]
        ),
        format!(
            "echoplex_connections_accepted_total{{endpoint=\"{}\"}} 1\n",
            endpoints[1]
        ),
        format!(
            "echoplex_datagrams_received_total{{endpoint=\"{}\"}} 1\n",
            endpoints[2]
        ),
        format!(
            "echoplex_datagrams_sent_total{{endpoint=\"{}\"}} 1\n",
            endpoints[2]
        ),
        format!(
            "echoplex_connections_open{{endpoint=\"{}\"}} 1\n",
            endpoints[0]
        ),
    ] {
        assert!(body.contains(&line), "no {line:?} in\n{body}");
    }
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("feed promtool");
    let out = promtool.wait_with_output().expect("promtool output");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "needs prometheus: scripts/test-all"]
fn a_real_prometheus_scrapes_the_daemon() {
    if !have("prometheus") {
        return;
    }
    let dir = temp_dir("prometheus");
    let daemon = Daemon::start(&["metrics://127.0.0.1:0"]);
    let target = daemon.addr("metrics");
    let web_port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        probe.local_addr().expect("addr").port()
    };
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: echoplex\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .expect("config");
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{web_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus");
    let api: SocketAddr = format!("127.0.0.1:{web_port}").parse().expect("addr");
    let query = "GET /api/v1/query?query=echoplex_reactors HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let mut answer = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(mut conn) = TcpStream::connect(api) {
            let _ = conn.set_read_timeout(Some(WAIT));
            let mut text = String::new();
            if conn.write_all(query.as_bytes()).is_ok()
                && conn.read_to_string(&mut text).is_ok()
                && text.contains("\"value\"")
            {
                answer = text;
                break;
            }
        }
        thread::sleep(Duration::from_millis(200));
    }
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    assert!(
        answer.contains("\"job\":\"echoplex\"") && answer.contains("\"1\"]"),
        "Prometheus never stored a scraped sample: {answer}"
    );
}
