//! A soak. Every kind at once (tcp, tcp?proxy, unix, binary, udp,
//! unix-dgram, multicast, metrics, admin) under connection churn, with
//! well-behaved clients whose every byte is verified and misbehaving ones
//! (resetting, half-closing, not reading, sending garbage, stalling in a
//! PROXY header), for `--reactors 1` and 2. Prints a table: verified bytes
//! and errors per client kind (0 for the well-behaved), and the daemon's
//! RSS and descriptors at the start and the end (bounded growth).
//!
//! Ignored by default (it takes minutes): scripts/test-all runs it.
//! ECHOPLEX_SOAK_SECS sets the seconds per reactor count (default 80).

mod support;

use support::status_json;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use echoplex::wire::proxy::build;
use socket2::{Domain, Protocol, Socket, Type};
use support::Daemon;

const GROUP: Ipv4Addr = Ipv4Addr::new(224, 10, 15, 15);
const IO: Duration = Duration::from_secs(10);

/// One client kind's figures.
#[derive(Default)]
struct Tally {
    ops: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Tally {
    fn ok(&self, bytes: usize) {
        self.ops.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.first_error.lock().expect("tally").get_or_insert(what);
    }
}

/// A tiny xorshift: sizes and choices, reproducible per thread.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Where the daemon serves each kind.
#[derive(Clone)]
struct Targets {
    tcp: SocketAddr,
    proxy: SocketAddr,
    binary: SocketAddr,
    udp: SocketAddr,
    metrics: SocketAddr,
    unix: PathBuf,
    unix_dgram: PathBuf,
    admin: PathBuf,
    multicast_port: u16,
    dir: PathBuf,
}

fn inet(daemon: &Daemon, scheme: &str) -> SocketAddr {
    let endpoint = daemon.endpoint(scheme);
    let hostport = endpoint[scheme.len()..]
        .split('?')
        .next()
        .expect("HOST:PORT");
    hostport.parse().expect("socket address")
}

fn tcp(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IO))?;
    stream.set_write_timeout(Some(IO))?;
    Ok(stream)
}

/// Sends `message` and reads the same number of bytes back, checked.
fn echo(stream: &mut (impl Read + Write), message: &[u8]) -> Result<(), String> {
    stream
        .write_all(message)
        .map_err(|e| format!("write: {e}"))?;
    let mut back = vec![0; message.len()];
    stream
        .read_exact(&mut back)
        .map_err(|e| format!("read: {e}"))?;
    if back != message {
        return Err("echo differs from what was sent".into());
    }
    Ok(())
}

/// A client kind: name, whether its errors must be 0, and its loop body
/// (one operation; an error is counted against the kind).
type Body = fn(&Targets, &mut Rng, &Tally) -> Result<usize, String>;

fn stream_churn(conn: &mut (impl Read + Write), rng: &mut Rng) -> Result<usize, String> {
    let mut total = 0;
    for _ in 0..1 + rng.below(4) {
        let len = 1 + rng.below(32 * 1024) as usize;
        echo(conn, &support::pattern(rng.next() % 1_000_000, len))?;
        total += len;
    }
    Ok(total)
}

fn tcp_churn(t: &Targets, rng: &mut Rng, _: &Tally) -> Result<usize, String> {
    let mut conn = tcp(t.tcp).map_err(|e| format!("connect: {e}"))?;
    stream_churn(&mut conn, rng)
}

fn unix_churn(t: &Targets, rng: &mut Rng, _: &Tally) -> Result<usize, String> {
    let mut conn = UnixStream::connect(&t.unix).map_err(|e| format!("connect: {e}"))?;
    conn.set_read_timeout(Some(IO)).map_err(|e| e.to_string())?;
    stream_churn(&mut conn, rng)
}

fn proxy_churn(t: &Targets, rng: &mut Rng, _: &Tally) -> Result<usize, String> {
    let mut conn = tcp(t.proxy).map_err(|e| format!("connect: {e}"))?;
    let client = SocketAddr::from(([10, 0, rng.below(256) as u8, 1], rng.below(65536) as u16));
    let header = match rng.below(3) {
        0 => build::v1(client, t.proxy),
        1 => build::v2(client, t.proxy, &[(1, b"h2")], rng.below(2) == 0),
        _ => build::v2_local(),
    };
    conn.write_all(&header)
        .map_err(|e| format!("write header: {e}"))?;
    stream_churn(&mut conn, rng)
}

fn half_close(t: &Targets, rng: &mut Rng, _: &Tally) -> Result<usize, String> {
    let mut conn = tcp(t.tcp).map_err(|e| format!("connect: {e}"))?;
    let message = support::pattern(rng.next() % 1000, 1 + rng.below(100_000) as usize);
    conn.write_all(&message)
        .map_err(|e| format!("write: {e}"))?;
    conn.shutdown(std::net::Shutdown::Write)
        .map_err(|e| e.to_string())?;
    let mut back = Vec::new();
    conn.read_to_end(&mut back)
        .map_err(|e| format!("read to EOF: {e}"))?;
    if back != message {
        return Err(format!(
            "half-closed: {} of {} bytes back",
            back.len(),
            message.len()
        ));
    }
    Ok(message.len())
}

fn tcp_long(t: &Targets, rng: &mut Rng, _: &Tally) -> Result<usize, String> {
    // One connection kept for many echoes (a fresh one per 200).
    let mut conn = tcp(t.tcp).map_err(|e| format!("connect: {e}"))?;
    let mut total = 0;
    for _ in 0..200 {
        let message = support::pattern(rng.next() % 1000, 64 * 1024);
        echo(&mut conn, &message)?;
        total += message.len();
    }
    Ok(total)
}

fn binary_records(t: &Targets, rng: &mut Rng, _: &Tally) -> Result<usize, String> {
    let mut conn = tcp(t.binary).map_err(|e| format!("connect: {e}"))?;
    let mut records = Vec::new();
    for i in 0..1 + rng.below(50) {
        // `I 2s f`, native alignment: 4 + 2 + 2 padding + 4; a float that
        // round-trips exactly (never a NaN payload).
        records.extend_from_slice(&(rng.next() as u32).to_ne_bytes());
        records.extend_from_slice(b"ok\0\0");
        records.extend_from_slice(&(i as f32 * 0.5).to_ne_bytes());
    }
    echo(&mut conn, &records)?;
    Ok(records.len())
}

fn udp(t: &Targets, rng: &mut Rng, _: &Tally) -> Result<usize, String> {
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    socket
        .set_read_timeout(Some(IO))
        .map_err(|e| e.to_string())?;
    let mut total = 0;
    let mut buf = vec![0; 2048];
    for _ in 0..50 {
        let message = support::pattern(rng.next() % 1000, 1 + rng.below(1400) as usize);
        socket
            .send_to(&message, t.udp)
            .map_err(|e| format!("send: {e}"))?;
        let (n, _) = socket
            .recv_from(&mut buf)
            .map_err(|e| format!("no echo: {e}"))?;
        if buf[..n] != message[..] {
            return Err("datagram echo differs".into());
        }
        total += n;
    }
    Ok(total)
}

fn unix_dgram(t: &Targets, rng: &mut Rng, _: &Tally) -> Result<usize, String> {
    let me = t.dir.join(format!("c{}", rng.next() % 1_000_000_000));
    let socket = UnixDatagram::bind(&me).map_err(|e| e.to_string())?;
    let _cleanup = Remove(me);
    socket
        .set_read_timeout(Some(IO))
        .map_err(|e| e.to_string())?;
    let mut total = 0;
    let mut buf = vec![0; 70_000];
    for _ in 0..50 {
        let message = support::pattern(rng.next() % 1000, 1 + rng.below(8000) as usize);
        socket
            .send_to(&message, &t.unix_dgram)
            .map_err(|e| format!("send: {e}"))?;
        let n = socket.recv(&mut buf).map_err(|e| format!("no echo: {e}"))?;
        if buf[..n] != message[..] {
            return Err("unix datagram echo differs".into());
        }
        total += n;
    }
    Ok(total)
}

struct Remove(PathBuf);
impl Drop for Remove {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn multicast(t: &Targets, rng: &mut Rng, _: &Tally) -> Result<usize, String> {
    let socket =
        Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(|e| e.to_string())?;
    socket.set_multicast_ttl_v4(1).map_err(|e| e.to_string())?;
    socket
        .set_multicast_if_v4(&Ipv4Addr::LOCALHOST)
        .map_err(|e| e.to_string())?;
    let socket = UdpSocket::from(socket);
    socket
        .set_read_timeout(Some(IO))
        .map_err(|e| e.to_string())?;
    let message = support::pattern(rng.next() % 1000, 1 + rng.below(500) as usize);
    socket
        .send_to(&message, SocketAddrV4::new(GROUP, t.multicast_port))
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = [0; 16];
    let n = socket.recv(&mut buf).map_err(|e| format!("no ack: {e}"))?;
    if &buf[..n] != b"ack" {
        return Err(format!("answer {:?} is not ack", &buf[..n]));
    }
    thread::sleep(Duration::from_millis(20)); // a group, not a flood
    Ok(message.len())
}

fn metrics(t: &Targets, _: &mut Rng, _: &Tally) -> Result<usize, String> {
    // Keep-alive: /healthz then /metrics on one connection.
    let conn = tcp(t.metrics).map_err(|e| format!("connect: {e}"))?;
    let mut reader = BufReader::new(conn.try_clone().map_err(|e| e.to_string())?);
    let mut writer = conn;
    let mut total = 0;
    for (path, expect) in [
        ("/healthz", "ok"),
        ("/metrics", "echoplex_connections_open"),
    ] {
        write!(writer, "GET {path} HTTP/1.1\r\nHost: soak\r\n\r\n").map_err(|e| e.to_string())?;
        let mut status = String::new();
        reader
            .read_line(&mut status)
            .map_err(|e| format!("status line: {e}"))?;
        if !status.starts_with("HTTP/1.1 200") {
            return Err(format!("GET {path}: {status:?}"));
        }
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).map_err(|e| e.to_string())?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(n) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = n.trim().parse().map_err(|_| "bad content-length")?;
            }
        }
        let mut body = vec![0; length];
        reader
            .read_exact(&mut body)
            .map_err(|e| format!("body: {e}"))?;
        if !String::from_utf8_lossy(&body).contains(expect) {
            return Err(format!("GET {path}: body lacks {expect:?}"));
        }
        total += length;
    }
    thread::sleep(Duration::from_millis(50));
    Ok(total)
}

fn admin(t: &Targets, _: &mut Rng, _: &Tally) -> Result<usize, String> {
    let mut conn = UnixStream::connect(&t.admin).map_err(|e| format!("connect: {e}"))?;
    conn.set_read_timeout(Some(IO)).map_err(|e| e.to_string())?;
    conn.write_all(b"status json\n")
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    let status: serde_json::Value =
        serde_json::from_str(&line).map_err(|e| format!("status json: {e}: {line:?}"))?;
    if status["connections"].as_u64().is_none() {
        return Err(format!("no connections figure: {line}"));
    }
    thread::sleep(Duration::from_millis(200));
    Ok(line.len())
}

// The misbehaving: their "errors" are what the daemon did to them, shown but
// never a failure; the daemon must simply carry on.

fn resetter(t: &Targets, rng: &mut Rng, _: &Tally) -> Result<usize, String> {
    let conn = tcp(t.tcp).map_err(|e| format!("connect: {e}"))?;
    let socket = Socket::from(conn);
    let message = support::pattern(0, 1 + rng.below(200_000) as usize);
    let _ = socket.send(&message[..message.len().min(65536)]);
    socket
        .set_linger(Some(Duration::ZERO))
        .map_err(|e| e.to_string())?;
    drop(socket); // RST, with echoes in flight
    Ok(0)
}

fn non_reader(t: &Targets, rng: &mut Rng, _: &Tally) -> Result<usize, String> {
    let conn = tcp(t.tcp).map_err(|e| format!("connect: {e}"))?;
    conn.set_nonblocking(true).map_err(|e| e.to_string())?;
    let chunk = vec![7u8; 64 * 1024];
    let mut written = 0;
    let mut conn = conn;
    // Write until the daemon stops reading (backpressure), never reading.
    for _ in 0..400 {
        match conn.write(&chunk) {
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(format!("write: {e}")),
        }
    }
    thread::sleep(Duration::from_millis(500 + rng.below(1500)));
    Ok(written)
}

fn garbage(t: &Targets, rng: &mut Rng, _: &Tally) -> Result<usize, String> {
    let mut junk: Vec<u8> = (0..1 + rng.below(300)).map(|_| rng.next() as u8).collect();
    match rng.below(3) {
        0 => {
            // No PROXY header: closed with nothing echoed.
            let mut conn = tcp(t.proxy).map_err(|e| format!("connect: {e}"))?;
            junk[0] = b'x'; // never a header's first byte
            let _ = conn.write_all(&junk);
            let mut back = Vec::new();
            let _ = conn.read_to_end(&mut back);
            if !back.is_empty() {
                return Err(format!(
                    "{} bytes echoed to a connection without a PROXY header",
                    back.len()
                ));
            }
        }
        1 => {
            let mut conn = tcp(t.metrics).map_err(|e| format!("connect: {e}"))?;
            let _ = conn.write_all(&junk);
            let _ = conn.write_all(b"\r\n\r\n");
            let mut back = Vec::new();
            let _ = conn.read_to_end(&mut back);
        }
        _ => {
            let mut conn = UnixStream::connect(&t.admin).map_err(|e| format!("connect: {e}"))?;
            conn.set_read_timeout(Some(Duration::from_millis(500)))
                .map_err(|e| e.to_string())?;
            let _ = conn.write_all(&junk);
            let _ = conn.write_all(b"\nquit\n");
            let mut back = Vec::new();
            let _ = conn.read_to_end(&mut back);
        }
    }
    Ok(junk.len())
}

fn slow_header(t: &Targets, _: &mut Rng, _: &Tally) -> Result<usize, String> {
    // A header that never completes: closed after 5 s, nothing echoed.
    let mut conn = tcp(t.proxy).map_err(|e| format!("connect: {e}"))?;
    conn.write_all(b"PROXY TCP4 10.")
        .map_err(|e| e.to_string())?;
    let mut back = Vec::new();
    let _ = conn.read_to_end(&mut back);
    if !back.is_empty() {
        return Err("bytes echoed during a PROXY header".into());
    }
    Ok(0)
}

/// (name, well-behaved, threads, body)
const KINDS: &[(&str, bool, usize, Body)] = &[
    ("tcp churn", true, 2, tcp_churn),
    ("tcp long-lived", true, 1, tcp_long),
    ("tcp half-close", true, 1, half_close),
    ("tcp?proxy churn", true, 1, proxy_churn),
    ("unix churn", true, 1, unix_churn),
    ("binary records", true, 1, binary_records),
    ("udp", true, 1, udp),
    ("unix-dgram", true, 1, unix_dgram),
    ("multicast", true, 1, multicast),
    ("metrics (healthz+metrics)", true, 1, metrics),
    ("admin status json", true, 1, admin),
    ("tcp resetting", false, 1, resetter),
    ("tcp not reading", false, 2, non_reader),
    ("garbage (proxy/metrics/admin)", false, 1, garbage),
    ("PROXY header stalling", false, 1, slow_header),
];

/// Listening TCP sockets on `port` that are not the daemon's (another
/// process's SO_REUSEPORT listener joined the port: the kernel then hands
/// it some of the connections meant for the daemon).
fn foreign_listeners(pid: i32, port: u16) -> usize {
    let ours: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .map(|link| link.display().to_string())
                .collect()
        })
        .unwrap_or_default();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
            (local_port == port && *f.get(3)? == "0A")
                .then(|| f.get(9).map(|inode| format!("socket:[{inode}]")))?
        })
        .filter(|inode| !ours.contains(inode))
        .count()
}

fn fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count())
}

struct Run {
    reactors: usize,
    tallies: Vec<Tally>,
    rss: [u64; 3],
    fds: [usize; 3],
    proxy_errors: u64,
    /// Ports another process's listener joined (see `foreign_listeners`).
    foreign: Vec<String>,
}

fn soak(reactors: Option<usize>, secs: u64) -> Run {
    let dir = support::temp_dir("soak");
    let multicast_port = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port();
    let unix = dir.join("echo.sock");
    let unix_dgram = dir.join("echo.dgram");
    let admin_path = dir.join("admin.sock");
    let endpoints = [
        "tcp://127.0.0.1:0".to_string(),
        "tcp://127.0.0.1:0?proxy".to_string(),
        "binary://127.0.0.1:0".to_string(),
        "udp://127.0.0.1:0".to_string(),
        "metrics://127.0.0.1:0".to_string(),
        format!("unix:{}", unix.display()),
        format!("unix-dgram:{}", unix_dgram.display()),
        format!("multicast://{GROUP}:{multicast_port}"),
    ];
    let mut args: Vec<&str> = endpoints.iter().map(String::as_str).collect();
    args.extend(["--admin", admin_path.to_str().expect("utf-8")]);
    let count = reactors.map(|n| n.to_string());
    if let Some(count) = &count {
        args.extend(["--reactors", count]);
    }
    let daemon = Daemon::start_with(&args, |command| {
        command.env("RUST_LOG", "warn");
    });
    let proxy = daemon
        .endpoints
        .iter()
        .find(|e| e.ends_with("?proxy"))
        .expect("the ?proxy endpoint");
    let targets = Targets {
        tcp: inet(&daemon, "tcp://"),
        proxy: proxy["tcp://".len()..]
            .trim_end_matches("?proxy")
            .parse()
            .expect("addr"),
        binary: inet(&daemon, "binary://"),
        udp: inet(&daemon, "udp://"),
        metrics: inet(&daemon, "metrics://"),
        unix,
        unix_dgram,
        admin: admin_path.clone(),
        multicast_port,
        dir: dir.to_path_buf(),
    };
    let pid = daemon.pid();
    let mut rss = [daemon.rss_kib(), 0, 0];
    let mut fd = [fds(pid), 0, 0];

    let stop = Arc::new(AtomicBool::new(false));
    let tallies: Arc<Vec<Tally>> = Arc::new(KINDS.iter().map(|_| Tally::default()).collect());
    let mut workers = Vec::new();
    for (index, &(_, _, threads, body)) in KINDS.iter().enumerate() {
        for thread_no in 0..threads {
            let (stop, tallies, targets) =
                (Arc::clone(&stop), Arc::clone(&tallies), targets.clone());
            workers.push(thread::spawn(move || {
                let mut rng = Rng(0x9E37_79B9 ^ ((index as u64) << 32) ^ thread_no as u64 ^ 1);
                let tally = &tallies[index];
                while !stop.load(Ordering::Relaxed) {
                    match body(&targets, &mut rng, tally) {
                        Ok(bytes) => tally.ok(bytes),
                        Err(why) => tally.error(why),
                    }
                }
            }));
        }
    }
    let started = Instant::now();
    let run = Duration::from_secs(secs);
    let mut next_line = Duration::from_secs(10);
    while started.elapsed() < run {
        thread::sleep(Duration::from_millis(200));
        if started.elapsed() >= next_line {
            next_line += Duration::from_secs(10);
            let done: u64 = tallies.iter().map(|t| t.ops.load(Ordering::Relaxed)).sum();
            eprintln!(
                "soak, reactors {}: {:.0}s of {secs}s, {done} operations",
                reactors.unwrap_or(1),
                started.elapsed().as_secs_f64()
            );
        }
    }
    rss[1] = daemon.rss_kib();
    fd[1] = fds(pid);
    let ports = [targets.tcp, targets.proxy, targets.binary, targets.metrics];
    let foreign: Vec<String> = ports
        .iter()
        .filter_map(|addr| {
            let n = foreign_listeners(pid, addr.port());
            (n > 0).then(|| format!("{addr}: {n} other process's listener(s)"))
        })
        .collect();
    if !foreign.is_empty() {
        eprintln!("!! ports shared with other processes during the soak (their clients' failures are not the daemon's): {foreign:?}");
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().expect("a soak client panicked");
    }
    // Quiet again: every connection closed, then the end figures.
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        let status = status_json(&admin_path);
        if status["connections"] == 0 || Instant::now() > deadline {
            break status;
        }
        thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        status["connections"], 0,
        "connections left open after the soak: {status}"
    );
    rss[2] = daemon.rss_kib();
    fd[2] = fds(pid);
    let proxy_errors = status["proxy_errors"].as_u64().unwrap_or_default();
    let (exit, stderr) = daemon.stop();
    support::assert_no_panic(&stderr);
    assert!(exit.success(), "daemon exit {exit:?}: {stderr}");
    let tallies = Arc::try_unwrap(tallies).unwrap_or_else(|_| panic!("tallies still shared"));
    Run {
        reactors: reactors.unwrap_or(1),
        tallies,
        rss,
        fds: fd,
        proxy_errors,
        foreign,
    }
}

fn reactors_supported() -> bool {
    let (_, out, _) = support::run(&["serve", "--help"]);
    out.contains("--reactors")
}

#[test]
#[ignore = "a soak of minutes: scripts/test-all runs it (ECHOPLEX_SOAK_SECS)"]
fn soak_every_kind_with_churn_and_misbehaving_clients() {
    let secs: u64 = std::env::var("ECHOPLEX_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(80);
    let counts: Vec<Option<usize>> = if reactors_supported() {
        vec![Some(1), Some(2)]
    } else {
        eprintln!("!! serve has no --reactors yet: soaking with the single reactor only");
        vec![None]
    };
    let runs: Vec<Run> = counts.into_iter().map(|n| soak(n, secs)).collect();

    println!("\nsoak: {secs} s per run, every kind at once\n");
    println!("| reactors | client kind | well-behaved | operations | bytes (verified if well-behaved) | errors | first error |");
    println!("|---|---|---|---|---|---|---|");
    for run in &runs {
        for ((name, good, _, _), tally) in KINDS.iter().zip(&run.tallies) {
            println!(
                "| {} | {name} | {} | {} | {} | {} | {} |",
                run.reactors,
                if *good { "yes" } else { "no" },
                tally.ops.load(Ordering::Relaxed),
                tally.bytes.load(Ordering::Relaxed),
                tally.errors.load(Ordering::Relaxed),
                tally
                    .first_error
                    .lock()
                    .expect("tally")
                    .clone()
                    .unwrap_or_default(),
            );
        }
    }
    println!("\n| reactors | RSS start | RSS end of load | RSS end (idle) | fds start | fds end of load | fds end (idle) | proxy_errors |");
    println!("|---|---|---|---|---|---|---|---|");
    for run in &runs {
        println!(
            "| {} | {} KiB | {} KiB | {} KiB | {} | {} | {} | {} |",
            run.reactors,
            run.rss[0],
            run.rss[1],
            run.rss[2],
            run.fds[0],
            run.fds[1],
            run.fds[2],
            run.proxy_errors
        );
    }
    for run in &runs {
        for ((name, good, _, _), tally) in KINDS.iter().zip(&run.tallies) {
            assert!(
                tally.ops.load(Ordering::Relaxed) > 0,
                "{name} never completed an operation"
            );
            if *good {
                assert_eq!(
                    tally.errors.load(Ordering::Relaxed),
                    0,
                    "{name} (well-behaved) had errors: {:?}; ports shared with other processes: {:?}",
                    tally.first_error.lock().expect("tally"),
                    run.foreign
                );
            }
        }
        assert_eq!(
            run.fds[2], run.fds[0],
            "descriptors after the soak, back to idle"
        );
        // Buffers the pool keeps, allocator arenas: a bound, not a leak.
        assert!(
            run.rss[2] <= run.rss[0] + 16 * 1024,
            "RSS grew from {} to {} KiB",
            run.rss[0],
            run.rss[2]
        );
        assert!(
            run.proxy_errors > 0,
            "the garbage and stalling clients were counted"
        );
    }
}
