//! The tools on http:// and ws://: `client`, `ping` and `bench` against
//! echoplex's own HTTP and WebSocket echo, against small servers of the
//! test's own whose every answer is known in advance (a lying echo, a
//! sequence of status classes, chunked and closing answers), and against
//! nginx (status classes, side by side with wrk).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use support::{run, Daemon};

fn http_daemon() -> (Daemon, SocketAddr) {
    let daemon = Daemon::start(&["http://127.0.0.1:0"]);
    let addr = daemon.addr("http");
    (daemon, addr)
}

fn code(status: std::process::ExitStatus) -> i32 {
    status.code().unwrap_or(-1)
}

#[test]
fn client_http_posts_the_message_and_checks_echoplex_echoes_it() {
    let (_daemon, addr) = http_daemon();
    let (status, out, err) = run(&[
        "client",
        &format!("http://{addr}/some/path"),
        "hello",
        "world",
    ]);
    assert_eq!(code(status), 0, "{out}{err}");
    assert!(out.contains("HTTP/1.1 200 OK"), "{out}");
    assert!(out.contains(r#""method":"POST""#), "{out}");
    assert!(out.contains(r#""path":"/some/path""#), "{out}");
    assert!(out.contains(r#""body":"hello world""#), "{out}");

    // No message: a GET.
    let (status, out, _) = run(&["client", &format!("http://{addr}")]);
    assert_eq!(code(status), 0, "{out}");
    assert!(out.contains(r#""method":"GET""#), "{out}");

    // Query items that are no endpoint option go to the server.
    let (status, out, _) = run(&[
        "client",
        "-q",
        &format!("http://{addr}/x?echo_body=raw"),
        "raw",
        "bytes",
    ]);
    assert_eq!(code(status), 0, "{out}");
    assert_eq!(out, "raw bytes\n");

    // Not a 2xx: printed, and a failure.
    let (status, out, err) = run(&["client", &format!("http://{addr}/x?echo_code=404")]);
    assert_eq!(code(status), 1, "{out}{err}");
    assert!(out.contains("HTTP/1.1 404 Not Found"), "{out}");
    assert!(err.contains("404"), "{err}");
}

/// Answers every request on one connection with `answer(request_head)`,
/// for `conns` connections; the test's own truth.
fn fake_server(conns: usize, answer: fn(&str, &[u8]) -> Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    thread::spawn(move || {
        for _ in 0..conns {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            thread::spawn(move || serve_fake(stream, answer));
        }
    });
    addr
}

fn serve_fake(stream: TcpStream, answer: fn(&str, &[u8]) -> Vec<u8>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let length = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
            })
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let reply = answer(&head, &body);
        if writer.write_all(&reply).is_err() {
            return;
        }
        if String::from_utf8_lossy(&reply).contains("Connection: close") {
            return;
        }
    }
}

/// Says it is echoplex, echoes the body with its last byte changed.
fn lying_echo(_head: &str, body: &[u8]) -> Vec<u8> {
    let mut body = body.to_vec();
    if let Some(last) = body.last_mut() {
        *last ^= 0x20;
    }
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nServer: echoplex\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

#[test]
fn client_and_bench_catch_an_echo_that_differs() {
    let addr = fake_server(8, lying_echo);
    let (status, out, err) = run(&["client", &format!("http://{addr}/?echo_body=raw"), "abc"]);
    assert_eq!(code(status), 1, "{out}{err}");
    assert!(err.contains("first difference at byte 2"), "{err}");

    let (status, out, err) = run(&[
        "bench",
        &format!("http://{addr}/"),
        "-c",
        "1",
        "-n",
        "5",
        "--json",
    ]);
    assert_eq!(code(status), 1, "{out}{err}");
    let v = support::json_of(&out);
    assert_eq!(v["http"]["speech"], "echo", "{v}");
    assert!(v["errors"].as_u64() >= Some(1), "{v}");
    assert!(
        v["first_error"]
            .as_str()
            .is_some_and(|e| e.contains("echo of message 0")),
        "{v}"
    );
}

/// Not echoplex: the n-th answer on a connection cycles through the four
/// status classes and the three ways a body ends: a length, chunked, and
/// the connection's close (which ends the connection too).
fn classes(head: &str, _body: &[u8]) -> Vec<u8> {
    assert!(head.starts_with("GET /classes HTTP/1.1\r\n"), "{head}");
    thread_local!(static N: std::cell::Cell<u32> = const { std::cell::Cell::new(0) });
    let n = N.with(|n| {
        let v = n.get();
        n.set(v + 1);
        v
    });
    match n % 4 {
        0 => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        1 => b"HTTP/1.1 302 Found\r\nLocation: /\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nTrailer: 1\r\n\r\n".to_vec(),
        2 => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
        _ => b"HTTP/1.0 503 Service Unavailable\r\nConnection: close\r\n\r\nbody until the close".to_vec(),
    }
}

#[test]
fn bench_counts_any_server_s_answers_by_status_class() {
    // One connection, 12 requests: three rounds of the four answers, a
    // new connection after each 503 (its body ends with the connection).
    let addr = fake_server(8, classes);
    let (status, out, err) = run(&[
        "bench",
        &format!("http://{addr}/classes"),
        "-c",
        "1",
        "-n",
        "12",
        "--json",
    ]);
    assert_eq!(code(status), 0, "{out}{err}");
    let v = support::json_of(&out);
    assert_eq!(v["http"]["speech"], "get", "{v}");
    assert_eq!(v["http"]["verified"], false, "{v}");
    // The first GET (is it echoplex?) took the 200 of the first
    // connection; each later one starts its own cycle.
    let s = &v["http"]["status"];
    let total: u64 = ["2xx", "3xx", "4xx", "5xx"]
        .iter()
        .map(|k| s[k].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(total, 12, "{v}");
    assert_eq!(v["messages"], 12, "{v}");
    for class in ["2xx", "3xx", "4xx", "5xx"] {
        assert!(s[class].as_u64() >= Some(2), "{class}: {v}");
    }
    assert!(v["http"]["reconnects"].as_u64() >= Some(2), "{v}");
    assert_eq!(v["errors"], 0, "{v}");
}

/// Not HTTP at all.
fn not_http(_head: &str, _body: &[u8]) -> Vec<u8> {
    b"SSH-2.0-OpenSSH_9.2\r\n\r\n".to_vec()
}

#[test]
fn bench_ends_on_answers_that_are_not_http_and_ws_on_a_refused_upgrade() {
    let addr = fake_server(1, not_http);
    let started = Instant::now();
    let (status, out, err) = run(&["bench", &format!("http://{addr}/"), "-c", "2", "-d", "1"]);
    assert_ne!(code(status), 0, "{out}{err}");
    assert!(err.contains("not an HTTP answer"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "no hang");

    // A server that answers the upgrade with a 404: no connection opens.
    let addr = fake_server(4, |_, _| {
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec()
    });
    let (status, out, err) = run(&["bench", &format!("ws://{addr}/"), "-c", "2", "-d", "1"]);
    assert_eq!(code(status), 3, "{out}{err}");
    assert!(err.contains("no WebSocket upgrade: status 404"), "{err}");
    let (status, _, err) = run(&["client", &format!("ws://{addr}/"), "hi"]);
    assert_eq!(code(status), 1, "{err}");
}

#[test]
fn client_ws_sends_each_word_and_prints_each_echo() {
    let (_daemon, addr) = http_daemon();
    let (status, out, err) = run(&["client", &format!("ws://{addr}/chat"), "one", "two words"]);
    assert_eq!(code(status), 0, "{out}{err}");
    assert!(out.contains("upgraded to WebSocket"), "{out}");
    assert!(out.contains(r#"received "one""#), "{out}");
    assert!(out.contains(r#"received "two words""#), "{out}");
    let (status, out, _) = run(&["client", "-q", "--hex", &format!("ws://{addr}/"), "00ff10"]);
    assert_eq!(code(status), 0, "{out}");
}

#[test]
fn ping_http_and_ws_report_each_probe_and_exit_as_ping_does() {
    let (_daemon, addr) = http_daemon();
    let (status, out, err) = run(&[
        "ping",
        "-c",
        "3",
        "-i",
        "0.05",
        &format!("http://{addr}/hc"),
    ]);
    assert_eq!(code(status), 0, "{out}{err}");
    assert_eq!(out.matches("status=200").count(), 3, "{out}");
    assert!(out.contains("3 packets transmitted, 3 received"), "{out}");

    let (status, out, err) = run(&["ping", "-c", "2", "-i", "0.05", &format!("ws://{addr}/")]);
    assert_eq!(code(status), 0, "{out}{err}");
    assert_eq!(out.matches(" pong time=").count(), 2, "{out}");

    // Connected, but no answer within -W: 1.
    let slow = format!("http://{addr}/?echo_delay=5s");
    let (status, out, _) = run(&["ping", "-c", "1", "-W", "0.3", &slow]);
    assert_eq!(code(status), 1, "{out}");
    assert!(out.contains("no reply for seq=1"), "{out}");

    // Nothing listening: 3.
    let closed = support::taken_tcp_port();
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let (status, _, err) = run(&["ping", "-c", "1", &format!("http://127.0.0.1:{port}/")]);
    assert_eq!(code(status), 3, "{err}");
}

#[test]
fn bench_http_and_ws_verify_echoplex_s_echoes() {
    let (_daemon, addr) = http_daemon();
    for (endpoint, speech) in [
        (format!("http://{addr}/load"), "echo"),
        (format!("ws://{addr}/load"), "websocket"),
    ] {
        for extra in [
            &["--depth", "4", "-s", "3000"][..],
            &["--rate", "400"][..],
            &["--churn", "5"][..],
        ] {
            let mut args = vec!["bench", endpoint.as_str(), "-c", "2", "-d", "0.5", "--json"];
            args.extend_from_slice(extra);
            let (status, out, err) = run(&args);
            assert_eq!(code(status), 0, "{args:?}: {out}{err}");
            let v = support::json_of(&out);
            assert_eq!(v["http"]["speech"], speech, "{v}");
            assert_eq!(v["http"]["verified"], true, "{v}");
            assert!(v["messages"].as_u64() > Some(50), "{args:?}: {v}");
            assert_eq!(v["errors"], 0, "{v}");
        }
    }
}

// ---------------------------------------------------------------------------
// nginx and wrk

/// nginx from Debian on loopback: one worker, `return 200` with a body,
/// a 404, a chunked page (SSI) and a location that closes after 5
/// requests. Stopped (by its PID) and its directory removed on drop.
struct Nginx {
    child: Child,
    port: u16,
    _dir: support::TempDir,
}

impl Nginx {
    fn start() -> Nginx {
        let dir = support::temp_dir("nginx");
        let root = dir.to_path_buf();
        std::fs::create_dir_all(root.join("www")).expect("www");
        std::fs::write(
            root.join("www/page.html"),
            "<p>chunked <!--# echo var=\"uri\" --> body</p>\n",
        )
        .expect("page");
        let port = support::free_tcp_port();
        let r = root.display();
        let conf = format!(
            "worker_processes 1;\ndaemon off;\npid {r}/nginx.pid;\nerror_log {r}/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {r}/body;\n  proxy_temp_path {r}/proxy;\n\
             fastcgi_temp_path {r}/fastcgi;\n  uwsgi_temp_path {r}/uwsgi;\n  scgi_temp_path {r}/scgi;\n\
             keepalive_requests 1000000;\n  server {{\n    listen 127.0.0.1:{port};\n\
             location / {{ return 200 \"hello from nginx, a body of about the size of a small answer\\n\"; }}\n\
             location /missing {{ return 404 \"no\\n\"; }}\n\
             location /ssi/ {{ ssi on; alias {r}/www/; }}\n\
             location /few {{ keepalive_requests 5; return 200 \"few\\n\"; }}\n  }}\n}}\n"
        );
        let conf_path = root.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("conf");
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(&root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .or_else(|_| {
                Command::new("/usr/sbin/nginx")
                    .arg("-c")
                    .arg(&conf_path)
                    .arg("-p")
                    .arg(&root)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
            })
            .unwrap_or_else(|err| panic!("nginx not runnable ({err}): run scripts/test-all"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx never listened on {port}");
            thread::sleep(Duration::from_millis(20));
        }
        Nginx {
            child,
            port,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGQUIT: nginx's graceful stop; then reap it.
        let _ = support::kill(self.child.id() as i32, libc::SIGQUIT);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
#[ignore = "needs nginx: scripts/test-all"]
fn bench_counts_nginx_s_answers_by_class_through_length_chunked_and_close() {
    let nginx = Nginx::start();
    for (path, class, closes) in [
        ("/", "2xx", false),
        ("/missing", "4xx", false),
        ("/ssi/page.html", "2xx", false),
        ("/few", "2xx", true),
    ] {
        let (status, out, err) = run(&[
            "bench",
            &nginx.url(path),
            "-c",
            "3",
            "--depth",
            "2",
            "-n",
            "300",
            "--json",
        ]);
        assert_eq!(code(status), 0, "{path}: {out}{err}");
        let v = support::json_of(&out);
        assert_eq!(v["http"]["speech"], "get", "{v}");
        assert_eq!(v["http"]["status"][class], 300, "{path}: {v}");
        assert_eq!(v["messages"], 300, "{path}: {v}");
        assert_eq!(v["errors"], 0, "{path}: {v}");
        let reconnects = v["http"]["reconnects"].as_u64().unwrap_or(0);
        if closes {
            // keepalive_requests 5: a close after every 5th answer.
            assert!(reconnects >= 300 / 5 - 3, "{path}: {v}");
        } else {
            assert_eq!(reconnects, 0, "{path}: {v}");
        }
    }
}

/// The CPU a child used, user and system, read from wait4's rusage.
// Reaped by wait4 (which std's wait cannot do: it gives no rusage).
#[allow(clippy::zombie_processes)]
fn run_with_cpu(mut command: Command) -> (String, Duration) {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|err| panic!("{command:?} not runnable ({err}): run scripts/test-all"));
    let pid = child.id() as i32;
    let mut stdout = child.stdout.expect("stdout");
    let reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 on our own child's PID.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4");
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (
        reader.join().expect("stdout"),
        tv(usage.ru_utime) + tv(usage.ru_stime),
    )
}

/// wrk's `Requests/sec:` line.
fn wrk_rate(out: &str) -> Option<f64> {
    out.lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
}

/// bench and wrk, one after the other, on the same nginx with the same
/// connections (one thread each): both count nginx's answers, and the
/// requests each made per second of its own CPU are printed (the figure
/// for docs/PERFORMANCE.md; no timing is asserted on a shared machine:
/// benches/ and the figures in the doc carry the goal).
#[test]
#[ignore = "needs nginx and wrk: scripts/test-all"]
fn bench_and_wrk_load_the_same_nginx() {
    let nginx = Nginx::start();
    let url = nginx.url("/");
    let mut wrk = Command::new("wrk");
    wrk.args(["-t1", "-c50", "-d2s", &url]);
    let (wrk_out, wrk_cpu) = run_with_cpu(wrk);
    let wrk_rps = wrk_rate(&wrk_out).unwrap_or_else(|| panic!("no Requests/sec: {wrk_out}"));
    let mut bench = Command::new(support::bin());
    bench.args([
        "bench",
        &url,
        "-c",
        "50",
        "--threads",
        "1",
        "-d",
        "2",
        "--json",
    ]);
    let (bench_out, bench_cpu) = run_with_cpu(bench);
    let v = support::json_of(&bench_out);
    assert_eq!(v["errors"], 0, "{v}");
    let bench_rps = v["msgs_per_sec"].as_f64().unwrap_or(0.0);
    assert!(v["http"]["status"]["2xx"].as_u64() > Some(1000), "{v}");
    assert!(wrk_rps > 1000.0, "{wrk_out}");
    let per_cpu = |rps: f64, cpu: Duration| rps * 2.0 / cpu.as_secs_f64().max(1e-3);
    eprintln!(
        "requests/s: wrk {wrk_rps:.0} ({:.0} per CPU-second), bench {bench_rps:.0} ({:.0} per CPU-second)",
        per_cpu(wrk_rps, wrk_cpu),
        per_cpu(bench_rps, bench_cpu)
    );
}

#[test]
fn endpoints_with_paths_parse_and_serve_refuses_one() {
    let (status, _, err) = run(&["serve", "http://127.0.0.1:0/path"]);
    assert_ne!(code(status), 0, "{err}");
    assert!(err.contains("serve answers every path"), "{err}");
    let (status, _, err) = run(&["client", "http://127.0.0.1:1/a b"]);
    assert_eq!(code(status), 2, "{err}");
}
