//! `?proxy` endpoints over real sockets. A PROXY v1/v2 header,
//! however it is split, is taken off before the echo starts and never
//! echoed; the client it names is what `status` shows; a LOCAL health check
//! is served as a direct connection; a missing, malformed or late header
//! closes the connection with nothing echoed, and is counted.

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use echoplex::wire::proxy::{build, HEADER_TIMEOUT};
use support::{status_json, Conn, Daemon, Ending, WAIT};

/// A daemon with `?proxy` on tcp, unix and binary, and an admin socket.
struct Proxied {
    daemon: Daemon,
    dir: support::TempDir,
    tcp: SocketAddr,
    binary: SocketAddr,
}

impl Proxied {
    fn start() -> Proxied {
        let dir = support::temp_dir("proxy");
        let unix = format!("unix:{}?proxy", dir.join("echo.sock").display());
        let admin = dir.join("admin.sock");
        let daemon = Daemon::start(&[
            "tcp://127.0.0.1:0?proxy",
            &unix,
            "binary://127.0.0.1:0?proxy",
            "--admin",
            admin.to_str().expect("utf-8 path"),
        ]);
        let inet = |scheme: &str| -> SocketAddr {
            let endpoint = daemon.endpoint(scheme);
            let hostport = endpoint.split_once("://").expect("network endpoint").1;
            let hostport = hostport.strip_suffix("?proxy").expect("?proxy kept");
            hostport.parse().expect("HOST:PORT")
        };
        let (tcp, binary) = (inet("tcp://"), inet("binary://"));
        Proxied {
            daemon,
            dir,
            tcp,
            binary,
        }
    }

    fn admin(&self) -> std::path::PathBuf {
        self.dir.join("admin.sock")
    }

    fn tcp(&self) -> TcpStream {
        let stream = TcpStream::connect(self.tcp).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        stream
    }

    fn unix(&self) -> UnixStream {
        let stream = UnixStream::connect(self.dir.join("echo.sock")).expect("connect unix");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        stream
    }
}

fn peers(status: &serde_json::Value) -> Vec<String> {
    status["handlers"]
        .as_array()
        .expect("handlers")
        .iter()
        .map(|h| h["peer"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn wait_status(
    admin: &Path,
    what: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let status = status_json(admin);
        if ready(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: status never showed it: {status}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Writes `bytes` in pieces `sizes` gives (cycled), pausing so that the
/// server sees them as separate reads.
fn write_in_pieces(conn: &mut dyn Write, bytes: &[u8], sizes: &[usize]) {
    try_write_in_pieces(conn, bytes, sizes).expect("write a piece");
}

/// The same, stopping at the first failed write (a server that closed).
fn try_write_in_pieces(conn: &mut dyn Write, bytes: &[u8], sizes: &[usize]) -> std::io::Result<()> {
    let mut at = 0;
    for size in sizes.iter().cycle() {
        if at >= bytes.len() {
            break;
        }
        let end = (at + size.max(&1)).min(bytes.len());
        conn.write_all(&bytes[at..end])?;
        conn.flush()?;
        at = end;
        thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

fn client(addr: &str) -> SocketAddr {
    addr.parse().expect("address")
}

#[test]
fn headers_split_anyhow_are_taken_off_and_the_client_is_shown() {
    let p = Proxied::start();
    let backend = client("127.0.0.1:10000");
    // Byte by byte, then in odd pieces, v1 and v2 with TLVs and a CRC.
    let cases: Vec<(Vec<u8>, &[usize], &str)> = vec![
        (
            build::v1(client("203.0.113.7:4242"), backend),
            &[1],
            "203.0.113.7:4242",
        ),
        (
            build::v1(client("[2001:db8::5]:6"), client("[::1]:1")),
            &[3, 7, 1],
            "[2001:db8::5]:6",
        ),
        (
            build::v2(
                client("198.51.100.9:5151"),
                backend,
                &[(1, b"h2"), (4, &[0; 9])],
                true,
            ),
            &[1],
            "198.51.100.9:5151",
        ),
        (
            build::v2(client("192.0.2.1:1"), backend, &[], false),
            &[5, 2, 11],
            "192.0.2.1:1",
        ),
    ];
    let mut open = Vec::new();
    for (header, sizes, shown) in &cases {
        let mut conn = p.tcp();
        let mut input = header.clone();
        let payload = support::pattern(0, 3000);
        input.extend_from_slice(&payload);
        write_in_pieces(&mut conn, &input, sizes);
        let echoed = support::read_exactly(&mut conn, payload.len());
        assert_eq!(
            echoed, payload,
            "the echo after a header sent as {sizes:?} ({shown})"
        );
        open.push(conn);
    }
    let status = wait_status(&p.admin(), "proxied clients", |s| {
        let peers = peers(s);
        cases
            .iter()
            .all(|(_, _, shown)| peers.iter().any(|p| p == shown))
    });
    eprintln!("peers: {:?}", peers(&status));
    // Header bytes are not counted as received, so in == out for each.
    for h in status["handlers"].as_array().expect("rows") {
        if h["kind"] == "tcp-conn" {
            assert_eq!(h["bytes_in"], h["bytes_out"], "{h}");
            assert_eq!(h["bytes_in"], 3000, "{h}");
        }
    }
    assert_eq!(status["proxy_errors"], 0);
    drop(open);
    let (_, stderr) = p.daemon.stop();
    support::assert_no_panic(&stderr);
}

#[test]
fn unix_and_binary_take_a_header_too_and_local_is_direct() {
    let p = Proxied::start();
    // unix: a v2 header for a Unix client, then data.
    let mut block = vec![0u8; 216];
    block[..11].copy_from_slice(b"/run/client");
    let mut unix = p.unix();
    let mut input = build::v2_raw(0x21, 0x31, &block, &[], false);
    input.extend_from_slice(b"over unix");
    write_in_pieces(&mut unix, &input, &[17, 100]);
    assert_eq!(support::read_exactly(&mut unix, 9), b"over unix");

    // binary: one 12-byte record (`I 2s f`, native alignment) after a v1 header, in one write.
    let mut binary = TcpStream::connect(p.binary).expect("connect binary");
    binary.set_read_timeout(Some(WAIT)).expect("timeout");
    let record: Vec<u8> = [
        7u32.to_le_bytes().as_slice(),
        b"ab\0\0",
        &1.5f32.to_le_bytes(),
    ]
    .concat();
    let mut input = build::v1(client("10.9.8.7:65535"), client("10.0.0.1:80"));
    input.extend_from_slice(&record);
    binary.write_all(&input).expect("write");
    assert_eq!(support::read_exactly(&mut binary, 12), record);

    // A LOCAL health check: served under its real address.
    let mut check = p.tcp();
    let local_port = check.local_addr().expect("local").port();
    let mut input = build::v2_local();
    input.extend_from_slice(b"ping");
    check.write_all(&input).expect("write");
    assert_eq!(support::read_exactly(&mut check, 4), b"ping");
    // v1 UNKNOWN likewise.
    let mut unknown = p.tcp();
    unknown.write_all(b"PROXY UNKNOWN\r\nhi").expect("write");
    assert_eq!(support::read_exactly(&mut unknown, 2), b"hi");

    let status = wait_status(&p.admin(), "the three kinds", |s| {
        let peers = peers(s);
        peers.iter().any(|p| p == "/run/client")
            && peers.iter().any(|p| p == "10.9.8.7:65535")
            && peers
                .iter()
                .any(|p| p == &format!("127.0.0.1:{local_port}"))
    });
    assert_eq!(status["proxy_errors"], 0, "{status}");
    drop((unix, binary, check, unknown));
    let (_, stderr) = p.daemon.stop();
    support::assert_no_panic(&stderr);
}

/// Sends `input`, then reads until the server closes: nothing may come back.
fn refused(p: &Proxied, input: &[u8], sizes: &[usize]) -> Ending {
    let mut conn = p.tcp();
    // The server may close at the first wrong byte, failing later writes.
    let _ = try_write_in_pieces(&mut conn, input, sizes);
    let (got, ending) = support::read_until_closed(&mut conn);
    assert!(
        got.is_empty(),
        "{} bytes echoed on a refused connection ({:?})",
        got.len(),
        input.escape_ascii().to_string()
    );
    ending
}

#[test]
fn bad_headers_close_with_nothing_echoed_and_are_counted() {
    let p = Proxied::start();
    let backend = client("127.0.0.1:1");
    let mut too_long = b"PROXY UNKNOWN ".to_vec();
    too_long.extend_from_slice(&[b'a'; 120]);
    too_long.extend_from_slice(b"\r\nhello");
    let mut bad_crc = build::v2(client("1.2.3.4:5"), backend, &[], true);
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0xFF;
    bad_crc.extend_from_slice(b"hello");
    let cases: Vec<(Vec<u8>, &[usize])> = vec![
        (b"hello, no header\r\n".to_vec(), &[100]),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), &[1]),
        (too_long, &[1]),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\nhello".to_vec(), &[4]),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\nhello".to_vec(), &[100]),
        (bad_crc, &[3]),
        ([&support::pattern(0, 11)[..], b"hello"].concat(), &[100]),
    ];
    for (input, sizes) in &cases {
        refused(&p, input, sizes);
    }
    // The connection ends inside its header; and one that sends nothing.
    let mut half = p.tcp();
    half.write_all(&build::v1(client("1.2.3.4:5"), backend)[..10])
        .expect("write");
    half.shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    assert!(support::read_until_closed(&mut half).0.is_empty());
    let mut silent = p.tcp();
    silent
        .shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    assert!(support::read_until_closed(&mut silent).0.is_empty());

    let expected = cases.len() + 2;
    let status = wait_status(&p.admin(), "the refusals", |s| {
        s["proxy_errors"].as_u64() == Some(expected as u64)
    });
    assert_eq!(status["bytes_out"], 0, "nothing echoed: {status}");
    let (_, stderr) = p.daemon.stop();
    support::assert_no_panic(&stderr);
    assert!(stderr.contains("PROXY protocol header"), "{stderr}");
}

#[test]
fn a_header_not_complete_within_5s_is_closed_and_counted() {
    let p = Proxied::start();
    let mut slow = p.tcp();
    slow.set_read_timeout(Some(HEADER_TIMEOUT + WAIT))
        .expect("timeout");
    let started = Instant::now();
    slow.write_all(b"PROXY TCP4 1.2.").expect("write");
    let (got, _) = support::read_until_closed(&mut slow);
    let waited = started.elapsed();
    assert!(got.is_empty());
    assert!(
        waited >= HEADER_TIMEOUT - Duration::from_millis(100),
        "closed after {waited:?}, before the header timeout"
    );
    let status = wait_status(&p.admin(), "the timeout", |s| s["proxy_errors"] == 1);
    assert_eq!(status["bytes_out"], 0);
    let (_, stderr) = p.daemon.stop();
    assert!(stderr.contains("not complete within 5s"), "{stderr}");
}

/// Many random splits of a header and the data behind it, over a real
/// socket: the echo is the data, byte-exact, every time.
#[test]
fn random_splits_over_a_socket_echo_exactly_the_data() {
    let p = Proxied::start();
    let mut seed: u64 = 0x5EED_0015;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let backend = client("127.0.0.1:9");
    for round in 0..24 {
        let source = client(&format!(
            "10.0.{}.{}:{}",
            round,
            next() % 256,
            next() % 65536
        ));
        let header = match round % 3 {
            0 => build::v1(source, backend),
            1 => build::v2(
                source,
                backend,
                &[(0xE0, &[round as u8; 33])],
                round % 2 == 0,
            ),
            _ => build::v2_local(),
        };
        let payload = support::pattern(round * 1000, 1 + (next() % 5000) as usize);
        let sizes: Vec<usize> = (0..1 + next() % 6)
            .map(|_| 1 + (next() % 40) as usize)
            .collect();
        let mut conn: Box<dyn Conn> = Box::new(p.tcp());
        let input = [header.as_slice(), &payload].concat();
        write_in_pieces(&mut conn, &input, &sizes);
        conn.shutdown_write();
        let (got, ending) = support::read_until_closed(&mut *conn);
        assert_eq!(ending, Ending::Eof, "round {round}");
        assert_eq!(got, payload, "round {round}: header split as {sizes:?}");
    }
    let status = status_json(&p.admin());
    assert_eq!(status["proxy_errors"], 0, "{status}");
    let (_, stderr) = p.daemon.stop();
    support::assert_no_panic(&stderr);
}

/// The tools speak `?proxy` too: client, ping and bench begin each
/// connection with a v2 header naming their own addresses, so a backend can
/// be checked or loaded directly, past its balancer.
#[test]
fn client_ping_and_bench_send_a_header_on_proxy_endpoints() {
    let p = Proxied::start();
    let tcp = format!("tcp://{}?proxy", p.tcp);
    let unix = format!("unix:{}?proxy", p.dir.join("echo.sock").display());
    for endpoint in [&tcp, &unix] {
        let (status, out, err) = support::run(&["client", endpoint, "hello"]);
        assert!(status.success(), "client {endpoint}: {out}{err}");
        assert!(out.contains("received \"hello\""), "{out}");
        let (status, out, err) = support::run(&["ping", endpoint, "-c", "2", "-i", "0.05"]);
        assert!(status.success(), "ping {endpoint}: {out}{err}");
        assert!(out.contains(", 0% packet loss"), "{out}");
        let (status, out, err) = support::run(&[
            "bench",
            endpoint,
            "-c",
            "4",
            "-d",
            "1",
            "--json",
            // A loaded machine's stall is no lost echo (default 1 s).
            "--timeout",
            "30",
        ]);
        assert!(status.success(), "bench {endpoint}: {out}{err}");
        let report: serde_json::Value = serde_json::from_str(&out).expect("bench JSON");
        assert_eq!(report["errors"], 0, "{report}");
        assert!(report["messages"].as_u64() > Some(0), "{report}");
    }
    let status = status_json(&p.admin());
    assert_eq!(
        status["proxy_errors"], 0,
        "every tool's header was accepted: {status}"
    );
    let (_, stderr) = p.daemon.stop();
    support::assert_no_panic(&stderr);
}
