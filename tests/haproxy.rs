//! echoplex behind a real HAProxy on loopback. One frontend, two
//! echoplex backends on `tcp://…?proxy`, `send-proxy-v2` and
//! `check check-send-proxy` (v2 LOCAL health checks). The test starts and
//! stops HAProxy itself, by PID; the configuration is the one in
//! docs/DEPLOY.md.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::{status_json, Daemon, WAIT};

/// HAProxy's health-check interval and the failures that mark a server down.
const CHECK_INTER_MS: u64 = 300;
const CHECK_FALL: u64 = 2;

/// The HAProxy configuration printed in docs/DEPLOY.md (its ```haproxy
/// block), with this test's ports and directory: the page cannot drift from
/// what is tested.
fn haproxy_config(dir: &Path, frontend: SocketAddr, backends: &[SocketAddr]) -> String {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/DEPLOY.md"))
        .expect("docs/DEPLOY.md");
    let block = page
        .split("```haproxy\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a ```haproxy block in docs/DEPLOY.md");
    let printed = [
        (
            "/tmp/haproxy.sock",
            dir.join("haproxy.sock").display().to_string(),
        ),
        ("127.0.0.1:7000", frontend.to_string()),
        ("127.0.0.1:7001", backends[0].to_string()),
        ("127.0.0.1:7002", backends[1].to_string()),
    ];
    // The frontend's port was free a moment ago (free_port); without
    // SO_REUSEPORT, HAProxy fails loudly if someone took it since, instead
    // of joining another server's listening group on a busy machine.
    let mut config = block.replacen("global\n", "global\n    noreuseport\n", 1);
    for (doc, here) in printed {
        assert!(config.contains(doc), "DEPLOY.md's configuration lost {doc}");
        config = config.replace(doc, &here);
    }
    for setting in [
        format!("inter {CHECK_INTER_MS}ms fall {CHECK_FALL}"),
        "send-proxy-v2 check check-send-proxy".into(),
    ] {
        assert!(
            config.contains(&setting),
            "DEPLOY.md's configuration lacks {setting}"
        );
    }
    config
}

/// HAProxy, started by this test and stopped by PID when dropped.
struct Haproxy {
    child: Child,
    stats: PathBuf,
    log: PathBuf,
}

impl Haproxy {
    fn start(dir: &Path, config: &str) -> Haproxy {
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config).expect("write haproxy.cfg");
        let log = dir.join("haproxy.log");
        let out = std::fs::File::create(&log).expect("haproxy log file");
        let child = Command::new("haproxy")
            .arg("-db") // foreground: the PID we hold is HAProxy's
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup log"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|err| panic!("haproxy not runnable ({err}): run scripts/test-all"));
        let haproxy = Haproxy {
            child,
            stats: dir.join("haproxy.sock"),
            log,
        };
        support::wait_until("HAProxy's stats socket", || haproxy.stats.exists());
        haproxy
    }

    /// `show stat` on the stats socket: server name -> status (`UP`, `DOWN`, ...).
    fn servers(&self) -> HashMap<String, String> {
        let Ok(mut socket) = UnixStream::connect(&self.stats) else {
            return HashMap::new();
        };
        socket.set_read_timeout(Some(WAIT)).expect("timeout");
        socket.write_all(b"show stat\n").expect("ask for stats");
        let mut csv = String::new();
        socket.read_to_string(&mut csv).expect("read stats");
        let mut lines = csv.lines();
        let head: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let col = |name: &str| head.iter().position(|h| *h == name).expect("stat column");
        let (sv, status) = (col("svname"), col("status"));
        lines
            .map(|line| line.split(',').collect::<Vec<_>>())
            .filter(|f| f.len() > status && f[sv].starts_with("echo"))
            .map(|f| (f[sv].to_string(), f[status].to_string()))
            .collect()
    }

    fn wait_status(&self, server: &str, status: &str) -> Duration {
        let started = Instant::now();
        loop {
            let servers = self.servers();
            if servers.get(server).is_some_and(|s| s == status) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < WAIT,
                "HAProxy never showed {server} {status}: {servers:?}\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = support::kill(self.child.id() as i32, libc::SIGTERM);
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], support::free_tcp_port()))
}

fn backend(dir: &Path, name: &str) -> (Daemon, SocketAddr, PathBuf) {
    let admin = dir.join(format!("{name}.admin"));
    let daemon = Daemon::start_with(
        &[
            "tcp://127.0.0.1:0?proxy",
            "--admin",
            admin.to_str().expect("utf-8"),
        ],
        // Debug lines name every proxied client: which connection went where.
        |command| {
            command.env("RUST_LOG", "echoplex=debug");
        },
    );
    let endpoint = daemon.endpoint("tcp://");
    let addr = endpoint["tcp://".len()..]
        .trim_end_matches("?proxy")
        .parse()
        .expect("HOST:PORT");
    (daemon, addr, admin)
}

fn shown_ports(admin: &Path) -> BTreeSet<u16> {
    status_json(admin)["handlers"]
        .as_array()
        .expect("handlers")
        .iter()
        .filter(|h| h["kind"] == "tcp-conn")
        .filter_map(|h| h["peer"].as_str()?.parse::<SocketAddr>().ok())
        .map(|peer| peer.port())
        .collect()
}

/// The client ports a backend's debug log says it accepted through PROXY.
fn logged_clients(stderr: &str) -> BTreeSet<u16> {
    stderr
        .lines()
        .filter(|line| line.contains("accepted (PROXY v2 from"))
        .filter_map(|line| {
            let conn = line.split("tcp-conn ").nth(1)?;
            conn.split_whitespace().next()?.parse::<SocketAddr>().ok()
        })
        .map(|addr| addr.port())
        .collect()
}

/// Client port -> bytes sent to it, from a backend's `gone` debug lines
/// (one per connection, whichever way it ended).
fn sent_to_clients(stderr: &str) -> Vec<(u16, u64)> {
    stderr
        .lines()
        .filter_map(|line| {
            let rest = line.split("tcp-conn ").nth(1)?;
            let (peer, counts) = rest.split_once(" gone: ")?;
            let port = peer.parse::<SocketAddr>().ok()?.port();
            let out = counts
                .split(", ")
                .nth(1)?
                .strip_suffix(" out")?
                .parse()
                .ok()?;
            Some((port, out))
        })
        .collect()
}

fn connect(frontend: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(frontend)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(WAIT))?;
    stream.set_write_timeout(Some(WAIT))?;
    Ok(stream)
}

/// What one client connection saw.
#[derive(Debug, Default, Clone)]
struct Seen {
    port: u16,
    sent: u64,
    received: u64,
    /// How it ended, if not as planned: `eof`, `reset`, an error.
    broke: Option<String>,
}

/// Closed loop: `chunk` bytes of the pattern out, the same back, until
/// `rounds` are done or `stop` is set; every byte checked.
fn echo_loop(mut stream: TcpStream, chunk: usize, rounds: u64, stop: &AtomicBool) -> Seen {
    let mut seen = Seen {
        port: stream.local_addr().map_or(0, |a| a.port()),
        ..Seen::default()
    };
    let mut check = support::PatternCheck::default();
    let mut buf = vec![0; chunk];
    for round in 0..rounds {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let out = support::pattern(round * chunk as u64, chunk);
        if let Err(err) = stream.write_all(&out) {
            seen.broke = Some(format!("write: {err}"));
            return seen;
        }
        seen.sent += chunk as u64;
        let mut got = 0;
        while got < chunk {
            match stream.read(&mut buf[..chunk - got]) {
                Ok(0) => {
                    seen.broke = Some("eof".into());
                    return seen;
                }
                Ok(n) => {
                    check.feed(&buf[..n]);
                    got += n;
                    seen.received += n as u64;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    seen.broke = Some(format!("read: {err}"));
                    return seen;
                }
            }
        }
    }
    seen
}

#[test]
#[ignore = "needs haproxy: scripts/test-all"]
fn haproxy_balances_two_proxied_backends_and_drains_one() {
    let dir = support::temp_dir("haproxy");
    let (daemon_a, addr_a, admin_a) = backend(&dir, "a");
    let (daemon_b, addr_b, admin_b) = backend(&dir, "b");
    let frontend = free_port();
    let haproxy = Haproxy::start(&dir, &haproxy_config(&dir, frontend, &[addr_a, addr_b]));
    let up_a = haproxy.wait_status("echo1", "UP");
    let up_b = haproxy.wait_status("echo2", "UP");
    eprintln!(
        "HAProxy: both backends UP ({up_a:?}, {up_b:?}): {:?}",
        haproxy.servers()
    );

    // 1. Byte-exact echoes through HAProxy, 16 connections at once.
    let never = AtomicBool::new(false);
    let seen: Vec<Seen> = thread::scope(|s| {
        let runs: Vec<_> = (0..16)
            .map(|_| s.spawn(|| echo_loop(connect(frontend).expect("connect"), 8192, 16, &never)))
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("client"))
            .collect()
    });
    for one in &seen {
        assert_eq!(
            (one.broke.as_deref(), one.received),
            (None, 8192 * 16),
            "{one:?}"
        );
    }
    eprintln!("16 connections x 128 KiB echoed byte-exact through HAProxy");

    // 2. Long-lived connections: each daemon's status shows their real ports.
    let long: Vec<TcpStream> = (0..8)
        .map(|_| connect(frontend).expect("connect"))
        .collect();
    for mut conn in long.iter() {
        conn.write_all(b"hello").expect("write");
        let mut back = [0; 5];
        conn.read_exact(&mut back).expect("echo");
        assert_eq!(&back, b"hello");
    }
    let ports: BTreeSet<u16> = long
        .iter()
        .map(|c| c.local_addr().expect("local").port())
        .collect();
    let (on_a, on_b) = (shown_ports(&admin_a), shown_ports(&admin_b));
    eprintln!("client ports {ports:?}; status of a shows {on_a:?}, of b {on_b:?}");
    assert!(on_a.is_disjoint(&on_b));
    let shown: BTreeSet<u16> = on_a.union(&on_b).copied().collect();
    assert_eq!(shown, ports, "status shows the clients' own ports");
    assert!(
        !on_a.is_empty() && !on_b.is_empty(),
        "round robin used both"
    );
    for admin in [&admin_a, &admin_b] {
        assert_eq!(
            status_json(admin)["proxy_errors"],
            0,
            "health checks are LOCAL"
        );
    }

    // 3. Load, then SIGTERM to backend a mid-load.
    let stop = Arc::new(AtomicBool::new(false));
    let records = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let mut workers = Vec::new();
    for conn in long {
        let (stop, records) = (Arc::clone(&stop), Arc::clone(&records));
        workers.push(thread::spawn(move || {
            let mut seen = echo_loop(conn, 16 * 1024, u64::MAX, &stop);
            seen.sent += 5; // the hello above
            seen.received += 5;
            records.lock().expect("records").push(seen);
        }));
    }
    let churned = Arc::new(Mutex::new(Vec::<(Instant, Seen)>::new()));
    for _ in 0..4 {
        let (stop, churned) = (Arc::clone(&stop), Arc::clone(&churned));
        workers.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let seen = match connect(frontend) {
                    Ok(conn) => echo_loop(conn, 4096, 4, &AtomicBool::new(false)),
                    Err(err) => Seen {
                        broke: Some(format!("connect: {err}")),
                        ..Seen::default()
                    },
                };
                churned.lock().expect("churn").push((started, seen));
            }
        }));
    }
    thread::sleep(Duration::from_millis(500));
    let stopped_at = Instant::now();
    daemon_a.signal(libc::SIGTERM);
    let down_after = haproxy.wait_status("echo1", "DOWN");
    let marked_down = Instant::now();
    eprintln!("backend a marked DOWN {down_after:?} after SIGTERM (inter {CHECK_INTER_MS} ms, fall {CHECK_FALL})");
    assert!(
        down_after
            <= Duration::from_millis(CHECK_INTER_MS * (CHECK_FALL + 1)) + Duration::from_secs(1),
        "HAProxy took {down_after:?} to mark the stopped backend down"
    );
    let mut daemon_a = daemon_a;
    let (exit_a, stderr_a) = daemon_a.wait_exit();
    assert!(exit_a.success(), "backend a exited {exit_a:?}:\n{stderr_a}");
    thread::sleep(Duration::from_millis(1000)); // load on b alone
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().expect("worker");
    }
    let (exit_b, stderr_b) = daemon_b.stop();
    assert!(exit_b.success());
    support::assert_no_panic(&stderr_a);
    support::assert_no_panic(&stderr_b);

    // 4. Verdicts.
    let via_a = logged_clients(&stderr_a);
    // The logs name the clients too (the debug `accepted` lines).
    assert!(
        on_a.is_subset(&via_a),
        "a's log lacks clients of its status"
    );
    assert!(
        on_b.is_subset(&logged_clients(&stderr_b)),
        "b's log lacks clients of its status"
    );
    let long_seen = records.lock().expect("records").clone();
    let churn_seen = churned.lock().expect("churn").clone();
    let all: Vec<&Seen> = seen
        .iter()
        .chain(long_seen.iter())
        .chain(churn_seen.iter().map(|(_, s)| s))
        .collect();
    // Every connection that got bytes: what its backend sent it (from the
    // backends' `gone` lines) is exactly what the client received, the
    // connections cut short by a's SIGTERM included. Matched as multisets
    // of (client port, bytes): ports get reused over 2000 connections.
    let sent_by_a = sent_to_clients(&stderr_a);
    // Connections still busy when a's grace period ended are reset (its
    // clients never stopped sending); even those got back every byte a had
    // read from them: nothing read was left unanswered.
    let cut_by_grace: Vec<&str> = stderr_a
        .lines()
        .filter(|line| line.contains(" gone: ") && line.contains("reset"))
        .collect();
    for line in &cut_by_grace {
        let counts = line.split(" gone: ").nth(1).expect("counts");
        let number = |at: usize| -> u64 {
            counts
                .split(", ")
                .nth(at)
                .and_then(|f| f.split(' ').next())
                .and_then(|n| n.parse().ok())
                .expect("a count")
        };
        assert_eq!(
            number(0),
            number(1),
            "a reset connection had read bytes it never sent back: {line}"
        );
    }
    let mut sent: Vec<(u16, u64)> = sent_by_a
        .iter()
        .chain(sent_to_clients(&stderr_b).iter())
        .filter(|(_, out)| *out > 0)
        .copied()
        .collect();
    let mut received: Vec<(u16, u64)> = all
        .iter()
        .filter(|s| s.received > 0)
        .map(|s| (s.port, s.received))
        .collect();
    sent.sort_unstable();
    received.sort_unstable();
    assert_eq!(
        sent.len(),
        received.len(),
        "connections with bytes, backend vs client side"
    );
    assert_eq!(
        sent, received,
        "bytes sent by the backends vs received by the clients"
    );
    let a_out: u64 = sent_by_a.iter().map(|(_, out)| out).sum();
    for one in &long_seen {
        // Where each long connection went is known from step 2's status
        // (ports in the logs may have served other connections before).
        if on_b.contains(&one.port) {
            assert_eq!(one.broke, None, "a connection on b broke: {one:?}");
        }
    }
    let mut after_down = 0;
    let mut churn_to_a = 0;
    for (started, one) in &churn_seen {
        if via_a.contains(&one.port) {
            churn_to_a += 1;
            continue; // reached the stopping backend: judged by the byte count above
        }
        assert_eq!(one.broke, None, "a new connection failed: {one:?}");
        if *started > marked_down {
            after_down += 1;
        }
    }
    assert!(
        after_down > 0,
        "new connections ran after a was marked down"
    );
    let long_on_a: Vec<&Seen> = long_seen
        .iter()
        .filter(|s| on_a.contains(&s.port))
        .collect();
    eprintln!(
        "after SIGTERM to a ({:?} before it was marked down): a sent {a_out} bytes over {} connections, each received in full by its client; \
         long connections on a ended as {:?} ({} cut by the grace period, each after echoing all it read); {} churn connections ({churn_to_a} reached a, {after_down} started after a was down), all others whole",
        marked_down - stopped_at,
        sent_by_a.len(),
        long_on_a.iter().map(|s| s.broke.clone()).collect::<Vec<_>>(),
        cut_by_grace.len(),
        churn_seen.len(),
    );
    drop(haproxy);
}

// ---------------------------------------------------------------------------
// mode http: two `http://…?proxy` daemons, checks on their metrics:// ports

/// DEPLOY.md's `mode http` configuration, with this test's ports.
fn haproxy_http_config(
    dir: &Path,
    frontend: SocketAddr,
    backends: &[(SocketAddr, SocketAddr)],
) -> String {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/DEPLOY.md"))
        .expect("docs/DEPLOY.md");
    let block = page
        .split("```haproxy\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .find(|block| block.contains("mode http"))
        .expect("a mode http ```haproxy block in docs/DEPLOY.md");
    let printed = [
        (
            "/tmp/haproxy-http.sock",
            dir.join("haproxy.sock").display().to_string(),
        ),
        ("127.0.0.1:8000", frontend.to_string()),
        ("127.0.0.1:8001", backends[0].0.to_string()),
        ("127.0.0.1:8002", backends[1].0.to_string()),
        ("port 9101", format!("port {}", backends[0].1.port())),
        ("port 9102", format!("port {}", backends[1].1.port())),
    ];
    let mut config = block.replacen("global\n", "global\n    noreuseport\n", 1);
    for (doc, here) in printed {
        assert!(config.contains(doc), "DEPLOY.md's configuration lost {doc}");
        config = config.replace(doc, &here);
    }
    for setting in [
        "option httpchk GET /healthz",
        "send-proxy-v2",
        "retry-on",
        "option redispatch",
    ] {
        assert!(
            config.contains(setting),
            "DEPLOY.md's configuration lacks {setting}"
        );
    }
    config
}

fn http_backend() -> (Daemon, SocketAddr, SocketAddr) {
    let daemon = Daemon::start(&[
        "http://127.0.0.1:0?proxy",
        "metrics://127.0.0.1:0",
        "--grace",
        "10",
    ]);
    let http = daemon.endpoint("http://")["http://".len()..]
        .trim_end_matches("?proxy")
        .parse()
        .expect("HOST:PORT");
    let metrics = daemon.addr("metrics://");
    (daemon, http, metrics)
}

/// One answer off a keep-alive connection: status and body (by length).
fn http_answer(conn: &mut TcpStream) -> io::Result<(u16, Vec<u8>)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let length = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    conn.read_exact(&mut body)?;
    Ok((status, body))
}

#[derive(Default, Debug)]
struct HttpTally {
    ok: u64,
    not_2xx: Vec<u16>,
    errors: Vec<String>,
    wrong_client: Vec<String>,
}

#[test]
#[ignore = "needs haproxy: scripts/test-all"]
fn haproxy_mode_http_loses_no_request_when_a_backend_stops() {
    let dir = support::temp_dir("haproxy-http");
    let (mut daemon_a, http_a, metrics_a) = http_backend();
    let (daemon_b, http_b, metrics_b) = http_backend();
    let frontend = free_port();
    let haproxy = Haproxy::start(
        &dir,
        &haproxy_http_config(&dir, frontend, &[(http_a, metrics_a), (http_b, metrics_b)]),
    );
    haproxy.wait_status("echo1", "UP");
    haproxy.wait_status("echo2", "UP");
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(HttpTally::default()));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, tally) = (stop.clone(), tally.clone());
            thread::spawn(move || {
                let mut conn: Option<TcpStream> = None;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) && n < 100_000 {
                    n += 1;
                    let c = match conn.take() {
                        Some(c) => c,
                        None => match TcpStream::connect(frontend) {
                            Ok(c) => {
                                c.set_read_timeout(Some(WAIT)).expect("timeout");
                                c
                            }
                            Err(err) => {
                                tally.lock().unwrap().errors.push(format!("connect: {err}"));
                                continue;
                            }
                        },
                    };
                    let mut c = c;
                    let me = c.local_addr().expect("local").to_string();
                    let sent =
                        c.write_all(format!("GET /{n} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
                    let answer = sent.and_then(|()| http_answer(&mut c));
                    let mut t = tally.lock().unwrap();
                    match answer {
                        Ok((status, body)) if (200..300).contains(&status) => {
                            t.ok += 1;
                            let json: serde_json::Value =
                                serde_json::from_slice(&body).unwrap_or_default();
                            if json["client"] != me.as_str() {
                                t.wrong_client.push(format!("{} != {me}", json["client"]));
                            }
                            conn = Some(c);
                        }
                        Ok((status, _)) => t.not_2xx.push(status),
                        Err(err) => t.errors.push(format!("request {n}: {err}")),
                    }
                }
            })
        })
        .collect();
    support::wait_until("requests flowing", || tally.lock().unwrap().ok > 200);
    let before = tally.lock().unwrap().ok;
    daemon_a.signal(libc::SIGTERM);
    let down = haproxy.wait_status("echo1", "DOWN");
    support::wait_until("more requests after the stop", || {
        tally.lock().unwrap().ok > before + 500
    });
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("client thread");
    }
    let (status, stderr) = daemon_a.wait_exit();
    assert!(status.success(), "backend a: {status}\n{stderr}");
    let t = tally.lock().unwrap();
    eprintln!(
        "mode http: {} answers, echo1 DOWN {down:?} after SIGTERM; {:?}",
        t.ok,
        haproxy.servers()
    );
    assert!(t.errors.is_empty(), "errors at the client: {:?}", t.errors);
    assert!(
        t.not_2xx.is_empty(),
        "non-2xx at the client: {:?}",
        t.not_2xx
    );
    assert!(
        t.wrong_client.is_empty(),
        "JSON client: {:?}",
        &t.wrong_client[..t.wrong_client.len().min(5)]
    );
    drop(daemon_b);
}
