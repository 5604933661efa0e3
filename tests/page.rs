//! The page on `metrics://` (`GET /`): its assets and policy, the derived
//! figures `status --json` names for it, what a viewer may cost (a viewer
//! that stops reading is dropped; viewers share the control reserve), and,
//! in headless Chromium over the DevTools protocol
//! (`tests/support/browser.py`), the live DOM against `/status` read just
//! before and just after, a screenshot, a phone's width, and a hostile
//! Unix peer path shown as text.

mod support;

/// The harness's one check for a tool (a missing one fails under scripts/test-all).
use support::have_tool as have;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{alive, status_json, wait_until, Daemon, Successor, Watched, WAIT};

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream.set_write_timeout(Some(WAIT)).expect("timeout");
    stream
}

/// One HTTP response: status line, headers (lower-case names), body.
struct Response {
    status: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

fn read_response(reader: &mut impl BufRead) -> Response {
    read_answer(reader, true)
}

fn read_answer(reader: &mut impl BufRead, with_body: bool) -> Response {
    let mut status = String::new();
    reader.read_line(&mut status).expect("status line");
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header line");
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length" && with_body)
        .map_or(0, |(_, v)| v.parse().expect("Content-Length"));
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("body");
    Response {
        status: status.trim_end().to_string(),
        headers,
        body,
    }
}

fn request(addr: SocketAddr, method: &str, path: &str) -> Response {
    let mut conn = connect(addr);
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .expect("write");
    read_answer(&mut BufReader::new(conn), method != "HEAD")
}

fn get_json(addr: SocketAddr, path: &str) -> Value {
    let answer = request(addr, "GET", path);
    assert_eq!(answer.status, "HTTP/1.1 200 OK", "{path}");
    serde_json::from_slice(&answer.body).expect("JSON")
}

/// The value at a dotted path, as the page's `data-stat` names it.
fn pick<'a>(object: &'a Value, name: &str) -> &'a Value {
    match name.split_once('.') {
        Some((outer, inner)) => &object[outer][inner],
        None => &object[name],
    }
}

#[test]
fn the_page_and_its_assets_come_from_the_daemon_under_a_policy_without_inline_script() {
    let daemon = Daemon::start(&["metrics://127.0.0.1:0"]);
    let addr = daemon.addr("metrics://");
    let page = request(addr, "GET", "/");
    assert_eq!(page.status, "HTTP/1.1 200 OK");
    assert!(page.header("content-type").starts_with("text/html"));
    let csp = page.header("content-security-policy").to_string();
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
    ] {
        assert!(csp.contains(part), "{part} not in {csp:?}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(page.header("x-content-type-options"), "nosniff");
    let html = String::from_utf8(page.body).expect("utf-8");
    // Everything it loads is on this origin, by path.
    for attribute in ["src=\"", "href=\""] {
        for (at, _) in html.match_indices(attribute) {
            let value = &html[at + attribute.len()..];
            assert!(value.starts_with('/'), "{attribute}{}", &value[..20]);
            let path = &value[..value.find('"').expect("quote")];
            if path != "/status" && path != "/page.json" {
                let asset = request(addr, "GET", path);
                assert_eq!(asset.status, "HTTP/1.1 200 OK", "{path}");
                assert!(!asset.body.is_empty(), "{path}");
                assert_eq!(asset.header("content-security-policy"), csp, "{path}");
            }
        }
    }
    assert!(html.contains("<script src=\"/page.js\" defer></script>"));
    assert_eq!(html.matches("<script").count(), 1, "one script, by src");
    let script = request(addr, "GET", "/page.js");
    assert!(script.header("content-type").starts_with("text/javascript"));
    assert!(request(addr, "GET", "/page.css")
        .header("content-type")
        .starts_with("text/css"));
    assert!(request(addr, "POST", "/")
        .status
        .starts_with("HTTP/1.1 405"));
    assert!(request(addr, "HEAD", "/").body.is_empty());
}

/// A client that sends and never reads: its connection ends up held by
/// backpressure (the daemon owes it `--max-buffer` bytes).
fn stalled_client(addr: SocketAddr) -> TcpStream {
    let stream = connect(addr);
    let mut writer = stream.try_clone().expect("clone");
    writer
        .set_write_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let chunk = vec![b'x'; 64 * 1024];
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline && writer.write(&chunk).is_ok() {}
    stream
}

/// Clients that echo `size` bytes every `every`, until told to stop.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, clients: usize, size: usize, every: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..clients)
            .map(|_| {
                let stop = stop.clone();
                let mut stream = connect(addr);
                thread::spawn(move || {
                    let message = vec![b'e'; size];
                    let mut back = vec![0; size];
                    let mut next = Instant::now();
                    while !stop.load(Ordering::Relaxed) {
                        stream.write_all(&message).expect("write");
                        stream.read_exact(&mut back).expect("echo");
                        next += every;
                        thread::sleep(next.saturating_duration_since(Instant::now()));
                    }
                })
            })
            .collect();
        Load { stop, threads }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            support::join(thread);
        }
    }
}

#[test]
fn status_names_the_page_s_figures_and_the_summary_has_a_minute_from_the_start() {
    let dir = support::temp_dir("page-figures");
    let admin = dir.join("admin.sock");
    let daemon = Daemon::start(&[
        "tcp://127.0.0.1:0",
        "metrics://127.0.0.1:0",
        "--admin",
        admin.to_str().expect("utf-8"),
        "--max-buffer",
        "65536",
    ]);
    let tcp = daemon.addr("tcp://");
    let metrics = daemon.addr("metrics://");
    let load = Load::start(tcp, 2, 100, Duration::from_millis(10));
    let _stalled = stalled_client(tcp);
    // Two samples after the connections settled: its states are theirs.
    let settled = |s: &Value| s["connections_by_state"]["backpressure"] == 1;
    wait_until("a sample with the stalled client held", || {
        settled(&status_json(&admin))
    });
    // The next sample's rates no longer count the stalled client's fill.
    thread::sleep(Duration::from_millis(2200));
    let status = status_json(&admin);
    // What the test made: three echo connections, one held.
    assert_eq!(status["connections"], 3, "{status}");
    assert_eq!(status["connections_by_kind"]["tcp-conn"], 3, "{status}");
    let states = &status["connections_by_state"];
    assert_eq!(states["backpressure"], 1, "{states}");
    assert!(states["reading"].as_u64().expect("n") >= 2, "{states}");
    for name in [
        "turns_per_s",
        "events_per_turn",
        "bytes_in_per_s",
        "bytes_out_per_s",
        "datagrams_in_per_s",
        "datagrams_out_per_s",
        "timers_pending",
        "timers_fired",
        "page_clients_dropped",
    ] {
        assert!(status[name].is_number(), "{name} missing: {status}");
    }
    // 2 clients × 100 B every 10 ms: about 20 kB/s in (the stalled one
    // sends nothing more once held).
    let rate = status["bytes_in_per_s"].as_u64().expect("rate");
    assert!((5_000..=40_000).contains(&rate), "bytes_in_per_s {rate}");
    let buckets: u64 = status["turn_events"]
        .as_object()
        .expect("histogram")
        .values()
        .map(|v| v.as_u64().expect("count"))
        .sum();
    let turns = status["loop_iterations"].as_u64().expect("turns");
    assert!(
        buckets <= turns && buckets + 10 >= turns,
        "{buckets} vs {turns}"
    );
    assert!(status["reactors"][0]["turns_per_s"].is_number());

    // The page's summary: the same names, and a history already there.
    // (The first request starts the recording of the last turns; the
    // next sample has them.)
    let first = get_json(metrics, "/page.json");
    let seq = first["views"][0]["seq"].as_u64().expect("seq");
    let mut summary = first;
    wait_until("a sample taken while the page is open", || {
        summary = get_json(metrics, "/page.json");
        summary["views"][0]["seq"].as_u64() > Some(seq)
    });
    let total = &summary["total"];
    for (name, value) in status.as_object().expect("object") {
        if name != "handlers" && name != "reactors" {
            assert!(
                !total[name].is_null(),
                "{name} ({value}) not in the summary"
            );
        }
    }
    let view = &summary["views"][0];
    let history = view["history"]["turns_per_s"].as_array().expect("history");
    assert!(history.len() >= 2, "{view}");
    assert!(history.len() <= 60);
    let listed = view["connections"].as_array().expect("list");
    assert!(listed.len() >= 3 && listed.len() <= 100, "{listed:?}");
    assert!(listed
        .iter()
        .any(|c| c["state"] == "backpressure" && c["kind"] == "tcp-conn"));
    let turns = view["turns"].as_array().expect("turns");
    assert!(!turns.is_empty() && turns.len() <= 32);
    assert!(turns
        .iter()
        .all(|t| t["tokens"].as_array().expect("keys").len() <= 4));
    assert!(
        summary.to_string().len() < 64 * 1024,
        "a compact summary, not /status"
    );
    load.stop();
}

#[test]
fn an_idle_daemon_sleeps_and_its_minute_shows_the_seconds_it_slept() {
    let dir = support::temp_dir("page-idle");
    let admin = dir.join("admin.sock");
    let daemon = Daemon::start(&[
        "metrics://127.0.0.1:0",
        "--admin",
        admin.to_str().expect("utf-8"),
    ]);
    thread::sleep(Duration::from_millis(3500));
    // Nothing woke the loop: no timer fired but the sampler's, which the
    // question itself woke (a timer each second would have fired 3 times).
    let status = status_json(&admin);
    assert!(status["timers_fired"].as_u64() <= Some(1), "{status}");
    let summary = get_json(daemon.addr("metrics://"), "/page.json");
    let history = &summary["views"][0]["history"];
    let seconds: Vec<f64> = history["uptime_s"]
        .as_array()
        .expect("history")
        .iter()
        .map(|v| v.as_f64().expect("secs"))
        .collect();
    // A point for every second slept through, none of them busy.
    assert!(seconds.len() >= 3, "{history}");
    assert!(seconds.windows(2).all(|w| w[1] > w[0]), "{seconds:?}");
    let turns: Vec<u64> = history["turns_per_s"]
        .as_array()
        .expect("turns")
        .iter()
        .map(|v| v.as_u64().expect("n"))
        .collect();
    assert!(turns.iter().all(|&t| t <= 3), "{turns:?}");
}

#[test]
fn a_connection_in_its_tls_handshake_is_counted_in_that_state() {
    let dir = support::temp_dir("page-tls");
    let admin = dir.join("admin.sock");
    let daemon = Daemon::start(&[
        "tls://127.0.0.1:0",
        "--admin",
        admin.to_str().expect("utf-8"),
    ]);
    // A client that connects and never sends its ClientHello.
    let _silent = connect(daemon.addr("tls://"));
    wait_until("a sample with the handshake pending", || {
        status_json(&admin)["connections_by_state"]["tls_handshake"] == 1
    });
    // Counted once: the connection list says the same of it.
    let status = status_json(&admin);
    assert_eq!(status["connections_by_kind"]["tls-conn"], 1, "{status}");
}

#[test]
fn a_viewer_that_stops_reading_is_dropped_at_max_buffer() {
    let dir = support::temp_dir("page-viewer");
    let admin = dir.join("admin.sock");
    let daemon = Daemon::start(&[
        "metrics://127.0.0.1:0",
        "--admin",
        admin.to_str().expect("utf-8"),
        "--max-buffer",
        "16384",
    ]);
    let metrics = daemon.addr("metrics://");
    let mut viewer = connect(metrics);
    // Requests pipelined, answers never read: once the kernel's buffers
    // are full, the answers owed reach --max-buffer.
    let burst = "GET /page.json HTTP/1.1\r\nHost: x\r\n\r\n".repeat(64);
    let mut sent = 0;
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline && viewer.write_all(burst.as_bytes()).is_ok() {
        sent += 64;
        if status_json(&admin)["page_clients_dropped"] == 1 {
            break;
        }
    }
    wait_until("the viewer to be dropped", || {
        status_json(&admin)["page_clients_dropped"] == 1
    });
    let status = status_json(&admin);
    // The admin connection asking is the only control connection left.
    assert_eq!(status["control_connections"], 1, "{status}");
    eprintln!("dropped after {sent} requests");
    // The viewer sees its connection end (reset: answers were owed).
    let mut rest = Vec::new();
    let ended = viewer.read_to_end(&mut rest);
    assert!(ended.is_err() || rest.len() < sent * 20_000, "{ended:?}");
    // A reading viewer is served as before.
    assert_eq!(get_json(metrics, "/page.json")["state"], "serving");
}

#[test]
fn viewers_count_against_the_control_reserve() {
    let dir = support::temp_dir("page-reserve");
    let admin = dir.join("admin.sock");
    let daemon = Daemon::start(&[
        "metrics://127.0.0.1:0",
        "--admin",
        admin.to_str().expect("utf-8"),
    ]);
    let metrics = daemon.addr("metrics://");
    // 16 viewers (the reserve), each served once on a kept-alive connection.
    let viewers: Vec<BufReader<TcpStream>> = (0..16)
        .map(|_| {
            let mut conn = connect(metrics);
            conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .expect("write");
            let mut reader = BufReader::new(conn);
            assert_eq!(read_response(&mut reader).status, "HTTP/1.1 200 OK");
            reader
        })
        .collect();
    // A 17th finds the reserve full of viewers that are idle between
    // polls: the longest-idle one is closed to make room (as nginx does
    // with keep-alive connections), so a page never locks out /healthz.
    let mut one_more = BufReader::new(connect(metrics));
    one_more
        .get_mut()
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    assert_eq!(read_response(&mut one_more).status, "HTTP/1.1 200 OK");
    assert!(
        status_json(&admin)["evicted_control"].as_u64().expect("n") >= 1,
        "the 17th viewer took an idle viewer's place"
    );
    drop(one_more);
    // The admin socket's `status` gets a slot too (it has the spare fd, not
    // a second reserve): ask over the admin socket once viewers leave.
    drop(viewers);
    wait_until("the viewers to be gone", || {
        status_json(&admin)["control_connections"] == 1
    });
}

#[test]
fn an_open_page_follows_an_upgrade_instead_of_keeping_the_old_process() {
    let dir = support::temp_dir("page-upgrade");
    let pid_file = dir.join("echoplex.pid");
    let old = Watched::start(&[
        "metrics://127.0.0.1:0",
        "--pid-file",
        pid_file.to_str().expect("utf-8"),
    ]);
    let old_pid = old.pid();
    let endpoint = old.endpoint_text("metrics");
    let addr: SocketAddr = endpoint
        .trim_start_matches("metrics://")
        .parse()
        .expect("address");
    // A page polling on one kept-alive connection.
    let mut page = BufReader::new(connect(addr));
    let ask = |page: &mut BufReader<TcpStream>| {
        page.get_mut()
            .write_all(b"GET /page.json HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        read_response(page)
    };
    assert_eq!(ask(&mut page).header("connection"), "");
    old.signal(libc::SIGUSR2);
    assert_eq!(
        old.next_ready()[0],
        endpoint,
        "the successor serves the port"
    );
    let mut new_pid = 0;
    wait_until("the pid file names the successor", || {
        new_pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(old_pid);
        new_pid != old_pid
    });
    let _successor = Successor(new_pid);
    // The old process, once draining, answers the page once more and
    // closes: a poller's next request goes to the successor.
    let mut answer = ask(&mut page);
    let deadline = Instant::now() + WAIT;
    while answer.header("connection") != "close" && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
        answer = ask(&mut page);
    }
    let summary: Value = serde_json::from_slice(&answer.body).expect("JSON");
    assert_eq!(summary["state"], "draining", "{summary}");
    assert_eq!(answer.header("connection"), "close");
    let mut rest = Vec::new();
    let _ = page.read_to_end(&mut rest);
    assert!(rest.is_empty());
    wait_until("the old process to end: nothing keeps it", || {
        !alive(old_pid)
    });
    assert_eq!(get_json(addr, "/page.json")["state"], "serving");
}

// ---------------------------------------------------------------------------
// In a real browser

/// Runs tests/support/browser.py against the page at `metrics`.
fn browse(metrics: SocketAddr, args: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/browser.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(format!("http://{metrics}/"))
        .args(["--status", &format!("http://{metrics}/status")])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("python3");
    assert!(output.status.success(), "browser.py failed");
    serde_json::from_slice(&output.stdout).expect("browser.py's JSON")
}

/// Figures that only grow: a page value read between two `/status`
/// reads lies between them.
fn grows(name: &str) -> bool {
    [
        "loop_iterations",
        "events",
        "timers_fired",
        "accepted",
        "closed",
        "bytes_in",
        "bytes_out",
        "datagrams_in",
        "datagrams_out",
    ]
    .contains(&name)
        || name.starts_with("turn_events.")
}

#[test]
#[ignore = "needs chromium: scripts/test-all"]
fn chromium_shows_the_figures_of_status_under_a_known_load() {
    if !have("chromium") {
        return;
    }
    let daemon = Daemon::start(&[
        "tcp://127.0.0.1:0",
        "metrics://127.0.0.1:0",
        "--reactors",
        "2",
    ]);
    let tcp = daemon.addr("tcp://");
    let metrics = daemon.addr("metrics://");
    let load = Load::start(tcp, 4, 500, Duration::from_millis(10));
    let _stalled = stalled_client(tcp);
    thread::sleep(Duration::from_millis(2500)); // two samples of the load
    let shots = support::temp_dir("page-shot");
    let shot = shots.join("page.png");
    let out = browse(
        metrics,
        &[
            "--samples",
            "2",
            "--screenshot",
            shot.to_str().expect("utf-8"),
            "--phone-width",
            "390",
        ],
    );
    load.stop();
    let mut checked = 0;
    for sample in out["samples"].as_array().expect("samples") {
        let (before, after) = (&sample["before"], &sample["after"]);
        let dom = sample["dom"].as_array().expect("dom");
        assert!(dom.len() > 60, "{} figures on the page", dom.len());
        for figure in dom {
            let name = figure["stat"].as_str().expect("name");
            let text = figure["text"].as_str().expect("text");
            let (low, high) = match figure["reactor"].as_u64() {
                Some(r) => (
                    pick(&before["reactors"][r as usize], name),
                    pick(&after["reactors"][r as usize], name),
                ),
                None => (pick(before, name), pick(after, name)),
            };
            if name.starts_with("connections_by_kind.") && (low.is_null() || high.is_null()) {
                // A kind a reactor has none of is absent from its object;
                // a gauge of its sample, it may come or go between reads.
                assert!(
                    text == "0" || !low.is_null() || !high.is_null(),
                    "{name} = {text} is in neither status read"
                );
                continue;
            }
            assert!(!low.is_null(), "data-stat={name} is not a status figure");
            let shown: f64 = text.parse().unwrap_or_else(|_| panic!("{name}: {text:?}"));
            let (low, high) = (
                low.as_f64().expect("number"),
                high.as_f64().expect("number"),
            );
            if grows(name) {
                assert!(
                    low <= shown && shown <= high,
                    "{name}: {low} <= {shown} <= {high}"
                );
                checked += 1;
            }
        }
        // What the test made, on the page: 4 echoing clients and a stalled
        // one, 4 × 500 B every 10 ms = 200 kB/s in.
        let total = |name: &str| -> f64 {
            let found = dom
                .iter()
                .find(|f| f["stat"] == name && f["reactor"].is_null())
                .unwrap_or_else(|| panic!("no {name} on the page"));
            found["text"]
                .as_str()
                .and_then(|t| t.parse().ok())
                .expect("number")
        };
        assert_eq!(total("connections"), 5.0);
        assert_eq!(total("connections_by_state.backpressure"), 1.0);
        assert_eq!(total("connections_by_kind.tcp-conn"), 5.0);
        let rate = total("bytes_in_per_s");
        assert!((100_000.0..=260_000.0).contains(&rate), "bytes in/s {rate}");
        assert!(total("turns_per_s") > 100.0);
        let per_reactor = dom
            .iter()
            .filter(|f| f["stat"] == "connections" && !f["reactor"].is_null())
            .count();
        assert_eq!(per_reactor, 2, "a column per reactor");
    }
    assert!(checked > 40, "{checked} growing figures compared");
    let screenshot = &out["screenshot"];
    assert_eq!(screenshot["width"], 1280);
    assert_eq!(screenshot["height"], 800);
    assert!(
        screenshot["distinct_rows"].as_u64().expect("rows") > 100,
        "a blank picture? {screenshot}"
    );
    let phone = &out["phone"];
    assert!(
        phone["scroll_width"].as_u64() <= phone["width"].as_u64(),
        "the page is wider than a phone: {phone}"
    );
    assert_eq!(out["errors"], serde_json::json!([]), "console errors");
}

#[test]
#[ignore = "needs chromium: scripts/test-all"]
fn chromium_shows_a_hostile_unix_peer_path_as_text() {
    if !have("chromium") {
        return;
    }
    let dir = support::temp_dir("page-hostile");
    let socket = dir.join("echo.sock");
    let daemon = Daemon::start(&[
        &format!("unix:{}", socket.display()),
        "metrics://127.0.0.1:0",
    ]);
    let metrics = daemon.addr("metrics://");
    let hostile = [
        "<img src=x onerror=window.pwned=true>",
        "<svg onload=window.pwned=true>",
        "&lt;b&gt;\"'x",
    ];
    let clients: Vec<UnixStream> = hostile
        .iter()
        .map(|name| {
            let local = dir.join(name);
            let client = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)
                .expect("socket");
            client
                .bind(&socket2::SockAddr::unix(&local).expect("path"))
                .expect("bind the hostile path");
            client
                .connect(&socket2::SockAddr::unix(&socket).expect("path"))
                .expect("connect");
            let mut stream = UnixStream::from(std::os::fd::OwnedFd::from(client));
            stream.write_all(b"hi").expect("write");
            let mut back = [0u8; 2];
            stream.read_exact(&mut back).expect("echo");
            stream
        })
        .collect();
    thread::sleep(Duration::from_millis(1500)); // a sample with them in it
    let out = browse(metrics, &["--samples", "1"]);
    drop(clients);
    let peers: Vec<&str> = out["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for name in hostile {
        assert!(
            peers.iter().any(|p| p.contains(name)),
            "{name:?} not shown as text in {peers:?}"
        );
    }
    assert_eq!(out["peer_children"], 0, "an element made from a peer");
    assert_eq!(out["elements"]["img"], 0);
    assert_eq!(out["elements"]["script"], 1, "only the page's own");
    assert_eq!(out["pwned"], false, "a hostile text ran");
    let svgs = out["elements"]["svg"].as_u64().unwrap_or(0);
    assert_eq!(svgs, 0);
}
