//! `serve http://`: the HTTP echo (a JSON description of each request, its
//! controls, keep-alive, pipelining, chunked bodies, 100-continue, HEAD, the
//! bounds and the smuggling shapes) and WebSocket echo on the same port.
//!
//! Truths from outside the code: curl and Python's `websockets` (strict
//! about RFC 6455) where a tool exists (ignored unless scripts/test-all,
//! which installs them), and raw sockets with bytes written here by hand
//! for what no good client sends.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use support::{Daemon, WAIT};

fn serve(extra: &[&str]) -> (Daemon, SocketAddr) {
    let mut args = vec!["http://127.0.0.1:0"];
    args.extend_from_slice(extra);
    let daemon = Daemon::start(&args);
    let addr = daemon.addr("http://");
    (daemon, addr)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(WAIT)).expect("timeout");
    conn
}

/// One response read off `conn`: status line, headers (lower-case names),
/// body by Content-Length (none for 1xx/204/304 or after HEAD).
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

fn read_response(conn: &mut TcpStream, head_request: bool) -> Response {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!(
                "response head cut short ({other:?}) after {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    let text = String::from_utf8(head).expect("ASCII head");
    let mut lines = text.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').expect("header line");
            (n.to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let length: usize = response
        .header("content-length")
        .map_or(0, |v| v.parse().expect("length"));
    if !head_request && !(100..200).contains(&status) && status != 204 && status != 304 {
        response.body = vec![0; length];
        conn.read_exact(&mut response.body).expect("body");
    }
    response
}

fn request(addr: SocketAddr, bytes: &[u8]) -> Response {
    let mut conn = connect(addr);
    conn.write_all(bytes).expect("write");
    read_response(&mut conn, false)
}

/// True once the server has closed (EOF or reset) within WAIT.
fn closed(conn: &mut TcpStream) -> bool {
    let mut rest = [0u8; 256];
    loop {
        match conn.read(&mut rest) {
            Ok(0) | Err(_) => return true,
            Ok(_) => continue,
        }
    }
}

#[test]
fn a_request_is_described_in_json_as_it_was_sent() {
    let (_daemon, addr) = serve(&[]);
    let mut conn = connect(addr);
    let local = conn.local_addr().expect("local");
    conn.write_all(
        b"PUT /some/path?a=1&b HTTP/1.1\r\nHost: example\r\nX-Second: two\r\nx-lower: \xffbad\xfe\r\nContent-Length: 5\r\n\r\nhello",
    )
    .expect("write");
    let response = read_response(&mut conn, false);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("server"), Some("echoplex"));
    assert_eq!(response.header("content-type"), Some("application/json"));
    let json = response.json();
    assert_eq!(json["method"], "PUT");
    assert_eq!(json["path"], "/some/path");
    assert_eq!(json["query"], "a=1&b");
    assert_eq!(json["version"], "HTTP/1.1");
    assert_eq!(
        json["headers"],
        serde_json::json!([
            ["Host", "example"],
            ["X-Second", "two"],
            ["x-lower", "\u{FFFD}bad\u{FFFD}"],
            ["Content-Length", "5"]
        ])
    );
    assert_eq!(json["body"], "hello");
    assert_eq!(json["body_bytes"], 5);
    assert_eq!(json["client"], local.to_string());
    assert_eq!(json["local"], addr.to_string());
    assert_eq!(json["request_on_connection"], 1);
    assert!(json["tls"].is_null());
    // A body that is not UTF-8: no "body", an exact count.
    conn.write_all(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n\xff\x00\xfe")
        .expect("write");
    let json = read_response(&mut conn, false).json();
    assert!(json.get("body").is_none(), "{json}");
    assert_eq!(json["body_bytes"], 3);
    assert_eq!(json["request_on_connection"], 2);
}

#[test]
fn controls_set_the_code_the_delay_and_a_raw_body() {
    let (_daemon, addr) = serve(&[]);
    let r = request(addr, b"GET /?echo_code=503 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(r.status, 503);
    let r = request(
        addr,
        b"GET / HTTP/1.1\r\nHost: h\r\nX-Echo-Code: 418\r\n\r\n",
    );
    assert_eq!(r.status, 418);
    for bad in ["100", "199", "600", "abc", "2000"] {
        let r = request(
            addr,
            format!("GET /?echo_code={bad} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes(),
        );
        assert_eq!(r.status, 400, "echo_code={bad}");
    }
    for code in [204u16, 304] {
        let mut conn = connect(addr);
        conn.write_all(format!("GET /?echo_code={code} HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes())
            .expect("write");
        let r = read_response(&mut conn, false);
        assert_eq!((r.status, r.header("content-length")), (code, None));
        // No body came between: the next answer starts right there.
        assert_eq!(read_response(&mut conn, false).status, 200);
    }
    let r = request(
        addr,
        b"POST /?echo_body=raw HTTP/1.1\r\nHost: h\r\nContent-Type: image/x-test\r\nContent-Length: 4\r\n\r\n\x00\x01\xfe\xff",
    );
    assert_eq!(r.body, b"\x00\x01\xfe\xff");
    assert_eq!(r.header("content-type"), Some("image/x-test"));
    let r = request(addr, b"GET /?echo_delay=61s HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(r.status, 400, "at most 60 s");
}

#[test]
fn echo_delay_is_a_timer_that_holds_nobody_else() {
    let (_daemon, addr) = serve(&[]);
    let started = Instant::now();
    let mut slow = connect(addr);
    slow.write_all(b"GET /slow?echo_delay=1500ms HTTP/1.1\r\nHost: h\r\n\r\nGET /after HTTP/1.1\r\nHost: h\r\n\r\n")
        .expect("write");
    // Meanwhile another client is answered at once.
    let other = request(addr, b"GET /fast HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(other.json()["path"], "/fast");
    let fast = started.elapsed();
    let first = read_response(&mut slow, false);
    let slow_took = started.elapsed();
    assert_eq!(first.json()["path"], "/slow");
    // Pipelined behind the delayed one, in order.
    assert_eq!(read_response(&mut slow, false).json()["path"], "/after");
    assert!(slow_took >= Duration::from_millis(1500), "{slow_took:?}");
    assert!(fast < slow_took, "fast {fast:?}, slow {slow_took:?}");
}

#[test]
fn keep_alive_pipelining_and_connection_close() {
    let (_daemon, addr) = serve(&[]);
    let mut conn = connect(addr);
    let mut pipelined = Vec::new();
    for i in 0..20 {
        pipelined.extend_from_slice(format!("GET /{i} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
    }
    pipelined.extend_from_slice(b"GET /last HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    pipelined.extend_from_slice(b"GET /never HTTP/1.1\r\nHost: h\r\n\r\n");
    conn.write_all(&pipelined).expect("write");
    for i in 0..20 {
        let json = read_response(&mut conn, false).json();
        assert_eq!(json["path"], format!("/{i}"));
        assert_eq!(json["request_on_connection"], i + 1);
    }
    let last = read_response(&mut conn, false);
    assert_eq!(last.header("connection"), Some("close"));
    assert_eq!(last.json()["path"], "/last");
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).expect("EOF after the close");
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    // HTTP/1.0 closes unless it asks to stay.
    let mut conn = connect(addr);
    conn.write_all(b"GET /a HTTP/1.0\r\n\r\n").expect("write");
    assert_eq!(
        read_response(&mut conn, false).header("connection"),
        Some("close")
    );
    assert!(closed(&mut conn));
    let mut conn = connect(addr);
    conn.write_all(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n")
        .expect("write");
    let first = read_response(&mut conn, false);
    assert_eq!(first.header("connection"), Some("keep-alive"));
    assert_eq!(read_response(&mut conn, false).json()["path"], "/b");
    // HEAD: the head of what GET would get, no body.
    let mut conn = connect(addr);
    conn.write_all(b"HEAD /h HTTP/1.1\r\nHost: h\r\n\r\nGET /g HTTP/1.1\r\nHost: h\r\n\r\n")
        .expect("write");
    let head = read_response(&mut conn, true);
    assert!(head.header("content-length").is_some_and(|n| n != "0"));
    assert_eq!(read_response(&mut conn, false).json()["path"], "/g");
}

#[test]
fn chunked_bodies_and_100_continue_over_a_raw_socket() {
    let (_daemon, addr) = serve(&[]);
    let mut conn = connect(addr);
    conn.write_all(
        b"POST /?echo_body=raw HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\nTrailer: x\r\n\r\n",
    )
    .expect("write");
    assert_eq!(read_response(&mut conn, false).body, b"hello world!");
    conn.write_all(
        b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
    )
    .expect("write");
    let go_on = read_response(&mut conn, false);
    assert_eq!(go_on.status, 100);
    conn.write_all(b"abc").expect("write");
    let r = read_response(&mut conn, false);
    assert_eq!((r.status, r.json()["body"].clone()), (200, "abc".into()));
}

#[test]
fn smuggling_shapes_and_oversized_requests_are_refused_and_closed() {
    let (_daemon, addr) = serve(&["--max-buffer", "4096"]);
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(), 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd".to_vec(), 400),
        (b"GET / HTTP/1.1\nHost: h\n\n".to_vec(), 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n folded\r\n\r\n".to_vec(), 400),
        (b"GET / HTTP/1.1\r\n\r\n".to_vec(), 400),
        (b"NOT HTTP AT ALL\r\n\r\n".to_vec(), 400),
        (format!("GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n", "a".repeat(17 * 1024)).into_bytes(), 431),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4097\r\n\r\n".to_vec(), 413),
    ];
    for (bytes, status) in cases {
        let mut conn = connect(addr);
        // The refusal may come before all is written: ignore a reset write.
        let _ = conn.write_all(&bytes);
        let r = read_response(&mut conn, false);
        assert_eq!(
            r.status,
            status,
            "{:?}",
            String::from_utf8_lossy(&bytes[..40.min(bytes.len())])
        );
        assert_eq!(r.header("connection"), Some("close"));
        assert!(closed(&mut conn), "closed after {status}");
    }
    // A chunked body over --max-buffer: 413 too.
    let mut conn = connect(addr);
    let mut body = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..5 {
        body.extend_from_slice(format!("400\r\n{}\r\n", "x".repeat(1024)).as_bytes());
    }
    let _ = conn.write_all(&body);
    assert_eq!(read_response(&mut conn, false).status, 413);
    // Everyone else is still served.
    assert_eq!(
        request(addr, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").status,
        200
    );
}

#[test]
fn a_client_that_pipelines_without_reading_is_held_at_max_buffer() {
    let dir = support::temp_dir("http-hold");
    let admin = dir.join("admin.sock");
    let (_daemon, addr) = serve(&[
        "--max-buffer",
        "16384",
        "--admin",
        admin.to_str().expect("path"),
    ]);
    let mut conn = connect(addr);
    conn.set_write_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let one = b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n";
    let block: Vec<u8> = one.repeat(1000);
    let mut sent = 0usize;
    let cap = 64 * 1024 * 1024;
    'write: while sent < cap {
        let mut at = 0;
        while at < block.len() {
            match conn.write(&block[at..]) {
                Ok(n) => at += n,
                Err(_) => {
                    sent += at;
                    break 'write;
                }
            }
        }
        sent += block.len();
    }
    assert!(
        sent < cap,
        "the daemon took {sent} bytes from a client that never reads"
    );
    // What the daemon holds for this connection (owed and held input) is
    // bounded by --max-buffer (plus one answer past the bound).
    let status = support::status_json(&admin);
    let pending = status["handlers"]
        .as_array()
        .expect("handlers")
        .iter()
        .filter(|h| h["kind"] == "http-conn")
        .map(|h| h["pending"].as_u64().unwrap_or(0))
        .max()
        .expect("the connection is listed");
    assert!(pending <= 2 * 16384 + 1024, "pending {pending}");
    // Nothing is lost: every whole request sent is answered, in order.
    let requests = sent / one.len();
    conn.shutdown(std::net::Shutdown::Write).expect("shutdown");
    for i in 0..requests {
        let r = read_response(&mut conn, false);
        assert_eq!(r.status, 200, "answer {i} of {requests}");
    }
}

#[test]
fn proxy_carried_client_is_the_one_described() {
    let daemon = Daemon::start(&["http://127.0.0.1:0?proxy"]);
    let endpoint = daemon.endpoint("http://");
    let addr: SocketAddr = endpoint
        .trim_start_matches("http://")
        .trim_end_matches("?proxy")
        .parse()
        .expect("address");
    let r = request(
        addr,
        b"PROXY TCP4 192.0.2.7 127.0.0.1 4567 80\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
    );
    assert_eq!(r.json()["client"], "192.0.2.7:4567");
}

#[test]
fn shutdown_answers_with_connection_close() {
    let (daemon, addr) = serve(&[]);
    let mut conn = connect(addr);
    conn.write_all(b"GET /?echo_delay=30s HTTP/1.1\r\nHost: h\r\n\r\n")
        .expect("write");
    // The delayed answer is owed when the shutdown begins: it goes at once
    // (not cut by the 2 s grace), with Connection: close.
    let mut idle = connect(addr);
    idle.write_all(b"GET /first HTTP/1.1\r\nHost: h\r\n\r\n")
        .expect("write");
    assert_eq!(read_response(&mut idle, false).status, 200);
    let mut ws = ws_connect(addr);
    std::thread::sleep(Duration::from_millis(300));
    let stopped = Instant::now();
    daemon.signal(libc::SIGTERM);
    let r = read_response(&mut conn, false);
    assert!(
        stopped.elapsed() < Duration::from_secs(10),
        "answered early"
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(closed(&mut conn));
    // An idle keep-alive connection is closed; a WebSocket gets 1001.
    assert!(closed(&mut idle));
    let (first, payload) = read_frame(&mut ws);
    assert_eq!((first, close_code(&payload)), (0x88, 1001));
}

// ---------------------------------------------------------------------------
// WebSocket over raw sockets: the frames a good client never sends

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn ws_connect(addr: SocketAddr) -> TcpStream {
    let mut conn = connect(addr);
    conn.write_all(
        format!(
            "GET /any/path HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .expect("write");
    let r = read_response(&mut conn, false);
    assert_eq!(r.status, 101);
    // RFC 6455's own example key and accept value.
    assert_eq!(
        r.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    conn
}

/// A client frame, masked with a fixed key, written by hand.
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x11, 0x22, 0x33, 0x44];
    let mut out = vec![first];
    if payload.len() < 126 {
        out.push(0x80 | payload.len() as u8);
    } else {
        out.push(0x80 | 126);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// A server frame: (first byte, payload); servers never mask.
fn read_frame(conn: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    conn.read_exact(&mut head).expect("frame head");
    assert_eq!(head[1] & 0x80, 0, "a server frame is not masked");
    let len = match head[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            conn.read_exact(&mut b).expect("len");
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            conn.read_exact(&mut b).expect("len");
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0; len];
    conn.read_exact(&mut payload).expect("payload");
    (head[0], payload)
}

fn close_code(payload: &[u8]) -> u16 {
    u16::from_be_bytes([payload[0], payload[1]])
}

#[test]
fn websocket_echoes_over_raw_frames_and_closes_with_the_same_code() {
    let (_daemon, addr) = serve(&[]);
    let mut conn = ws_connect(addr);
    conn.write_all(&frame(0x81, b"hi there")).expect("write");
    assert_eq!(read_frame(&mut conn), (0x81, b"hi there".to_vec()));
    // Fragmented binary, a ping in between, in one write split oddly.
    let mut bytes = frame(0x02, b"ab");
    bytes.extend(frame(0x89, b"pp"));
    bytes.extend(frame(0x80, &[0xff; 300]));
    for piece in bytes.chunks(3) {
        conn.write_all(piece).expect("write");
    }
    assert_eq!(read_frame(&mut conn), (0x8A, b"pp".to_vec()), "pong first");
    let mut whole = b"ab".to_vec();
    whole.extend([0xff; 300]);
    assert_eq!(read_frame(&mut conn), (0x82, whole));
    conn.write_all(&frame(0x88, &[0x0F, 0xA1, b'b']))
        .expect("write");
    let (first, payload) = read_frame(&mut conn);
    assert_eq!((first, close_code(&payload)), (0x88, 4001));
    assert!(closed(&mut conn));
}

#[test]
fn websocket_violations_close_with_their_codes() {
    let (_daemon, addr) = serve(&["--max-buffer", "1000"]);
    let unmasked = vec![0x81, 0x02, b'h', b'i'];
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked", unmasked, 1002),
        ("reserved bit", frame(0xC1, b"x"), 1002),
        ("reserved opcode", frame(0x83, b"x"), 1002),
        ("fragmented ping", frame(0x09, b"x"), 1002),
        ("continuation first", frame(0x80, b"x"), 1002),
        ("text not UTF-8", frame(0x81, b"\xc3\x28"), 1007),
        ("over --max-buffer", frame(0x82, &[0u8; 1001]), 1009),
        ("close code 1005", frame(0x88, &[0x03, 0xED]), 1002),
    ];
    for (what, bytes, code) in cases {
        let mut conn = ws_connect(addr);
        let _ = conn.write_all(&bytes);
        let (first, payload) = read_frame(&mut conn);
        assert_eq!((first, close_code(&payload)), (0x88, code), "{what}");
        assert!(closed(&mut conn), "{what}: closed");
    }
    // A message of exactly --max-buffer bytes still fits.
    let mut conn = ws_connect(addr);
    conn.write_all(&frame(0x82, &[7u8; 1000])).expect("write");
    assert_eq!(read_frame(&mut conn).1.len(), 1000);
    // A handshake with the wrong version: 426 and the version we speak.
    let r = request(
        addr,
        format!("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 8\r\n\r\n").as_bytes(),
    );
    assert_eq!(
        (r.status, r.header("sec-websocket-version")),
        (426, Some("13"))
    );
    let r = request(
        addr,
        b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert_eq!(r.status, 400);
}

#[test]
fn metrics_count_answers_by_class_and_websocket_messages() {
    let daemon = Daemon::start(&["http://127.0.0.1:0", "metrics://127.0.0.1:0"]);
    let addr = daemon.addr("http://");
    let metrics = daemon.addr("metrics://");
    request(addr, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    request(addr, b"GET /?echo_code=302 HTTP/1.1\r\nHost: h\r\n\r\n");
    request(addr, b"GET / HTTP/1.1\n\n");
    let mut conn = ws_connect(addr);
    conn.write_all(&frame(0x81, b"m")).expect("write");
    read_frame(&mut conn);
    conn.write_all(&frame(0x81, b"\xff")).expect("write");
    read_frame(&mut conn);
    let expected = [
        ("echoplex_http_requests_total", "class=\"2xx\"", 1),
        ("echoplex_http_requests_total", "class=\"3xx\"", 1),
        ("echoplex_http_requests_total", "class=\"4xx\"", 1),
        ("echoplex_http_requests_total", "class=\"1xx\"", 1),
        ("echoplex_websocket_upgrades_total", "", 1),
        ("echoplex_websocket_messages_total", "", 1),
        ("echoplex_websocket_errors_total", "", 1),
    ];
    // Summed over the samples (one per reactor with --reactors N, whose
    // figures are published every 100 ms: waited for).
    let total = |text: &str, family: &str, label: &str| -> u64 {
        text.lines()
            .filter(|l| {
                l.split(['{', ' ']).next() == Some(family)
                    && (label.is_empty() || l.contains(label))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let scrape = || {
        let body = request(metrics, b"GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n").body;
        String::from_utf8(body).expect("text")
    };
    let started = Instant::now();
    let mut text = scrape();
    while started.elapsed() < WAIT
        && !expected
            .iter()
            .all(|(family, label, want)| total(&text, family, label) == *want)
    {
        std::thread::sleep(Duration::from_millis(50));
        text = scrape();
    }
    for (family, label, want) in expected {
        assert_eq!(
            total(&text, family, label),
            want,
            "{family}{{{label}}} in:\n{text}"
        );
    }
    assert!(text.contains("# TYPE echoplex_http_requests_total counter"));
}

// ---------------------------------------------------------------------------
// Real clients: curl and Python's websockets

fn curl(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("run curl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
#[ignore = "needs curl: scripts/test-all"]
fn curl_keeps_alive_uploads_chunked_expects_continue_and_heads() {
    if !support::have_tool("curl") {
        return;
    }
    let (_daemon, addr) = serve(&[]);
    let base = format!("http://{addr}");
    // Two URLs, one connection.
    let (ok, out, err) = curl(&["-v", &format!("{base}/one"), &format!("{base}/two")]);
    assert!(ok, "{err}");
    assert!(err.contains("Re-using existing connection"), "{err}");
    let answers: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&out)
        .into_iter()
        .map(|v| v.expect("JSON"))
        .collect();
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[1]["path"], "/two");
    assert_eq!(answers[1]["request_on_connection"], 2);
    // A chunked upload of a file, back byte for byte.
    let dir = support::temp_dir("curl");
    let file = dir.join("upload.bin");
    let back = dir.join("back.bin");
    let data: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&file, &data).expect("write file");
    let (ok, _, err) = curl(&[
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &format!("@{}", file.display()),
        "-o",
        back.to_str().expect("path"),
        &format!("{base}/up?echo_body=raw"),
    ]);
    assert!(ok, "{err}");
    assert_eq!(std::fs::read(&back).expect("read back"), data);
    // Expect: 100-continue, answered before curl sends the body.
    let (ok, out, err) = curl(&[
        "-v",
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("{base}/expect"),
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("HTTP/1.1 100 Continue"), "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(json["body_bytes"], data.len());
    // HEAD: headers only.
    let (ok, out, err) = curl(&["-I", &format!("{base}/head")]);
    assert!(ok, "{err}");
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.contains("Server: echoplex\r\n"), "{out}");
    // HTTP/1.0 and a status of our choosing.
    let (ok, out, err) = curl(&[
        "--http1.0",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{base}/?echo_code=507"),
    ]);
    assert!(ok, "{err}");
    assert_eq!(out, "507");
}

const WEBSOCKETS_CLIENT: &str = r#"
import asyncio, sys, websockets
async def main(url):
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send("héllo")
        assert await ws.recv() == "héllo"
        await ws.send(b"\x00\x01\xfe\xff" * 1000)
        assert await ws.recv() == b"\x00\x01\xfe\xff" * 1000
        await ws.send(["frag", "men", "ted"])
        assert await ws.recv() == "fragmented"
        await ws.send([b"a", b"b"])
        assert await ws.recv() == b"ab"
        pong = await ws.ping(b"p1")
        await asyncio.wait_for(pong, 10)
        await ws.close(code=4001, reason="bye")
        assert ws.close_code == 4001, ws.close_code
    print("ok")
asyncio.run(main(sys.argv[1]))
"#;

#[test]
#[ignore = "needs python3 websockets: scripts/test-all"]
fn python_websockets_echoes_text_binary_fragments_ping_and_close() {
    if !support::have_tool("python3") || !support::have_python_module("websockets") {
        return;
    }
    let (_daemon, addr) = serve(&[]);
    let out = Command::new("python3")
        .args(["-c", WEBSOCKETS_CLIENT, &format!("ws://{addr}/chat")])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}

#[test]
fn trace_logs_a_line_per_request_and_message() {
    let (daemon, addr) = serve(&["--trace"]);
    request(addr, b"GET /traced?x HTTP/1.1\r\nHost: h\r\n\r\n");
    let mut conn = ws_connect(addr);
    conn.write_all(&frame(0x82, b"abc")).expect("write");
    read_frame(&mut conn);
    drop(conn);
    let (status, stderr) = daemon.stop();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("#1: GET /traced?x HTTP/1.1 -> 200"),
        "{stderr}"
    );
    assert!(
        stderr.contains("opcode 2 message of 3 B echoed"),
        "{stderr}"
    );
}

#[test]
fn a_websocket_client_that_never_reads_is_held_at_max_buffer() {
    let dir = support::temp_dir("ws-hold");
    let admin = dir.join("admin.sock");
    let (_daemon, addr) = serve(&[
        "--max-buffer",
        "16384",
        "--admin",
        admin.to_str().expect("path"),
    ]);
    let mut conn = ws_connect(addr);
    conn.set_write_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let one = frame(0x82, &[5u8; 100]);
    let block: Vec<u8> = one.repeat(500);
    let mut sent = 0usize;
    let cap = 64 * 1024 * 1024;
    'write: while sent < cap {
        let mut at = 0;
        while at < block.len() {
            match conn.write(&block[at..]) {
                Ok(n) => at += n,
                Err(_) => {
                    sent += at;
                    break 'write;
                }
            }
        }
        sent += block.len();
    }
    assert!(
        sent < cap,
        "the daemon took {sent} bytes from a client that never reads"
    );
    let status = support::status_json(&admin);
    let pending = status["handlers"]
        .as_array()
        .expect("handlers")
        .iter()
        .filter(|h| h["kind"] == "http-conn")
        .map(|h| h["pending"].as_u64().unwrap_or(0))
        .max()
        .expect("the connection is listed");
    assert!(pending <= 2 * 16384 + 1024, "pending {pending}");
    // Every whole frame sent is echoed, in order, nothing lost.
    let frames = sent / one.len();
    for i in 0..frames {
        let (first, payload) = read_frame(&mut conn);
        assert_eq!((first, payload.len()), (0x82, 100), "echo {i} of {frames}");
    }
}

#[test]
fn a_delayed_answer_outlives_the_clients_half_close() {
    let (_daemon, addr) = serve(&[]);
    let mut conn = connect(addr);
    conn.write_all(
        b"GET /late?echo_delay=300ms HTTP/1.1\r\nHost: h\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n",
    )
    .expect("write");
    // As `nc -N` does: our EOF right after the requests.
    conn.shutdown(std::net::Shutdown::Write).expect("shutdown");
    assert_eq!(read_response(&mut conn, false).json()["path"], "/late");
    assert_eq!(read_response(&mut conn, false).json()["path"], "/next");
    assert!(closed(&mut conn));
}

#[test]
fn a_continuation_past_max_buffer_is_refused_from_its_header() {
    // 900 bytes held of a fragmented message, then a continuation that
    // would take it past --max-buffer: 1009 at once, not a stall while the
    // frame's payload waits for room that never comes.
    let (_daemon, addr) = serve(&["--max-buffer", "1000"]);
    let mut conn = ws_connect(addr);
    let mut bytes = frame(0x02, &[1u8; 900]);
    bytes.extend(frame(0x80, &[2u8; 200]));
    conn.write_all(&bytes).expect("write");
    let (first, payload) = read_frame(&mut conn);
    assert_eq!((first, close_code(&payload)), (0x88, 1009));
    assert!(closed(&mut conn));
}

#[test]
fn a_ping_fits_beside_a_fragmented_message_of_max_buffer() {
    // A control frame may come between fragments (RFC 6455 5.4) even when
    // the message held is a byte short of --max-buffer.
    let (_daemon, addr) = serve(&["--max-buffer", "1000"]);
    let mut conn = ws_connect(addr);
    let mut bytes = frame(0x02, &[1u8; 999]);
    bytes.extend(frame(0x89, &[9u8; 125]));
    bytes.extend(frame(0x80, &[2u8; 1]));
    conn.write_all(&bytes).expect("write");
    assert_eq!(read_frame(&mut conn), (0x8A, vec![9u8; 125]), "the pong");
    let (first, message) = read_frame(&mut conn);
    assert_eq!((first, message.len()), (0x82, 1000));
}

#[test]
fn a_refused_body_still_sent_gets_its_413_not_a_reset() {
    // What Python's http.client does: the whole body written, then the
    // answer read. The 413 is sent at the head; closing at once under the
    // body still arriving would reset the connection, and the reset makes
    // the client's kernel drop the 413 (or fail its write) unread.
    let (_daemon, addr) = serve(&["--max-buffer", "65536"]);
    for _ in 0..3 {
        let mut conn = connect(addr);
        let body = vec![b'x'; 2 << 20];
        conn.write_all(
            format!(
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .expect("head");
        conn.write_all(&body)
            .expect("the body is read and dropped, not reset");
        let r = read_response(&mut conn, false);
        assert_eq!((r.status, r.header("connection")), (413, Some("close")));
        assert!(closed(&mut conn));
    }
}

#[test]
fn an_absolute_form_request_is_answered_for_its_path() {
    // RFC 9112 3.2.2: "A server MUST accept the absolute-form"; a proxy's
    // client (`curl -x`) sends it. Its path and query are the ones described
    // and obeyed.
    let (_daemon, addr) = serve(&[]);
    let r = request(
        addr,
        b"GET http://example.test/some/path?echo_code=202 HTTP/1.1\r\nHost: example.test\r\n\r\n",
    );
    assert_eq!(r.status, 202);
    let json = r.json();
    assert_eq!(
        (json["path"].as_str(), json["query"].as_str()),
        (Some("/some/path"), Some("echo_code=202"))
    );
}

#[test]
fn a_delayed_answer_outlasts_a_shorter_idle_timeout() {
    // The client waits on the daemon's own timer: that is not the client
    // being idle, and the answer owed is sent, not reset.
    let (_daemon, addr) = serve(&["--idle-timeout", "1"]);
    let started = Instant::now();
    let r = request(addr, b"GET /?echo_delay=2500ms HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(2500));
}

/// A 64-bit-length client frame (masked with a zero key: payload as is).
fn big_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first, 0x80 | 127];
    out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(payload);
    out
}

#[test]
fn quiet_websockets_keep_no_buffer_of_their_last_big_message() {
    // Each connection echoes one big message, fragmented or whole, then
    // sits on a byte of its next frame: what it holds is that byte, not a
    // buffer the size of the message (80 of them at 256 KiB: 20 MiB).
    let (daemon, addr) = serve(&["--max-buffer", "262144"]);
    let size = 250_000;
    let mut conns = Vec::new();
    let before = daemon.rss_kib();
    for i in 0..80 {
        let mut conn = ws_connect(addr);
        let mut bytes = if i % 2 == 0 {
            big_frame(0x82, &vec![1u8; size])
        } else {
            let mut b = big_frame(0x02, &vec![1u8; size - 10]);
            b.extend(frame(0x80, &[2u8; 10]));
            b
        };
        bytes.push(0x82); // the first byte of a next frame
        conn.write_all(&bytes).expect("write");
        assert_eq!(read_frame(&mut conn).1.len(), size);
        conns.push(conn);
    }
    std::thread::sleep(Duration::from_millis(200));
    let grown = daemon.rss_kib().saturating_sub(before);
    assert!(
        grown < 8 * 1024,
        "RSS grew {grown} KiB for 80 quiet connections"
    );
}
