//! `echoplex status` shows the slab and the counters as they are.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use support::{status_json, Daemon, WAIT};

fn status(admin: &Path, json: bool) -> String {
    let mut args = vec!["status", "--admin", admin.to_str().expect("utf-8 path")];
    if json {
        args.push("--json");
    }
    let (ok, out, err) = support::run(&args);
    assert!(ok.success(), "status failed: {err}");
    out
}

fn echo(stream: &mut TcpStream, payload: &[u8]) {
    stream.write_all(payload).expect("write");
    let mut back = vec![0; payload.len()];
    stream.read_exact(&mut back).expect("echo");
    assert_eq!(back, payload);
}

/// Polls status until `ready` holds (the daemon notices closes a turn later).
fn wait_for(admin: &Path, ready: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let stats = status_json(admin);
        if ready(&stats) {
            return stats;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "status never settled: {stats}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn counters_and_rows_follow_known_connections() {
    let dir = support::temp_dir("status");
    let admin = dir.join("admin.sock");
    let daemon = Daemon::start(&[
        "tcp://127.0.0.1:0",
        "udp://127.0.0.1:0",
        "--admin",
        admin.to_str().expect("utf-8"),
    ]);
    let tcp = daemon.addr("tcp://");
    let mut streams: Vec<TcpStream> = (0..3)
        .map(|_| {
            let s = TcpStream::connect(tcp).expect("connect");
            s.set_read_timeout(Some(WAIT)).expect("timeout");
            s
        })
        .collect();
    for (i, stream) in streams.iter_mut().enumerate() {
        echo(stream, &vec![b'a' + i as u8; 100 * (i + 1)]);
    }
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind");
    udp.set_read_timeout(Some(WAIT)).expect("timeout");
    for _ in 0..4 {
        udp.send_to(b"datagram", daemon.addr("udp://"))
            .expect("send");
        let mut buf = [0u8; 16];
        udp.recv_from(&mut buf).expect("echo");
    }
    // Close the first two; the third stays open with 300 bytes each way.
    streams.drain(..2);
    let stats = wait_for(&admin, |s| s["closed"] == 2);
    assert_eq!(stats["accepted"], 3, "{stats}");
    assert_eq!(stats["connections"], 1, "{stats}");
    assert_eq!(stats["datagrams_in"], 4, "{stats}");
    assert_eq!(stats["datagrams_out"], 4, "{stats}");
    assert!(stats["loop_iterations"].as_u64().expect("number") > 0);
    let rows = stats["handlers"].as_array().expect("handlers");
    let conns: Vec<&serde_json::Value> = rows.iter().filter(|r| r["kind"] == "tcp-conn").collect();
    assert_eq!(conns.len(), 1, "{rows:?}");
    assert_eq!(conns[0]["bytes_in"], 300);
    assert_eq!(conns[0]["bytes_out"], 300);
    assert_eq!(conns[0]["state"], "open");
    assert_eq!(
        conns[0]["peer"],
        streams[0].local_addr().expect("addr").to_string()
    );
    let kinds: Vec<&str> = rows.iter().filter_map(|r| r["kind"].as_str()).collect();
    for kind in ["tcp-listener", "udp", "admin-listener", "signals"] {
        assert!(kinds.contains(&kind), "no {kind} row in {kinds:?}");
    }
    let udp_row = rows.iter().find(|r| r["kind"] == "udp").expect("udp row");
    assert_eq!(udp_row["bytes_in"], 32);

    // The table shows the same, as a person reads it.
    let table = status(&admin, false);
    assert!(table.contains("accepted 3  closed 2"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.contains("tcp-conn") && l.contains(" open ")),
        "{table}"
    );
}

#[test]
fn the_admin_protocol_answers_bad_commands_without_hanging_up() {
    let dir = support::temp_dir("admin");
    let admin = dir.join("admin.sock");
    let _daemon = Daemon::start(&[
        "tcp://127.0.0.1:0",
        "--admin",
        admin.to_str().expect("utf-8"),
    ]);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&admin)
            .expect("admin socket")
            .permissions(),
    );
    assert_eq!(
        mode & 0o777,
        0o600,
        "the admin socket shows every peer: 600 only"
    );
    let stream = UnixStream::connect(&admin).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    let mut answer = |command: &str| -> Vec<String> {
        writer.write_all(command.as_bytes()).expect("write");
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            assert!(reader.read_line(&mut line).expect("read") > 0, "hung up");
            let line = line.trim_end().to_string();
            if line == "." {
                return lines;
            }
            lines.push(line);
        }
    };
    assert_eq!(
        answer("frobnicate\n"),
        ["error: unknown command 'frobnicate' (try help)"]
    );
    assert_eq!(
        answer("help\n"),
        ["commands: status | status json | help | quit"]
    );
    let status = answer("status\n");
    assert!(status[0].starts_with("uptime "), "{status:?}");
    assert_eq!(
        answer(&format!("{}\n", "x".repeat(5000))),
        ["error: line longer than 1024 bytes"]
    );
    assert_eq!(answer("quit\n"), ["bye"]);
}

#[test]
fn status_without_a_daemon_says_how_to_start_one() {
    let dir = support::temp_dir("no-admin");
    let admin = dir.join("missing.sock");
    let (ok, out, err) = support::run(&["status", "--admin", admin.to_str().expect("utf-8")]);
    assert!(!ok.success());
    assert_eq!(ok.code(), Some(3), "no such socket is 'unreachable': {err}");
    assert!(out.is_empty());
    assert!(err.contains("echoplex serve --admin"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
