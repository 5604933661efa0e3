//! `echoplex ping` against the real daemon and against misbehaving servers
//! written here (silent, late, noisy), loopback only.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::Duration;
use support::{run, temp_dir, Daemon, WAIT};

fn code(status: ExitStatus) -> i32 {
    status.code().expect("exit code, not a signal")
}

/// The `time=T ms` of the reply line for `seq`, if there is one.
fn reply_ms(stdout: &str, endpoint: &str, seq: u64) -> Option<f64> {
    let prefix = format!("56 bytes from {endpoint}: seq={seq} time=");
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|rest| {
            rest.strip_suffix(" ms")
                .expect("ms")
                .parse()
                .expect("number")
        })
}

#[test]
fn three_pings_over_every_kind() {
    let dir = temp_dir("ping-kinds");
    let unix = format!("unix:{}", dir.join("s.sock").display());
    let unix_dgram = format!("unix-dgram:{}", dir.join("d.sock").display());
    let daemon = Daemon::start(&["tcp://127.0.0.1:0", "udp://127.0.0.1:0", &unix, &unix_dgram]);
    for endpoint in &daemon.endpoints {
        let (status, stdout, stderr) = run(&["ping", "-c", "3", "-i", "0.05", endpoint]);
        assert_eq!(code(status), 0, "{endpoint}: {stdout}{stderr}");
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines[0], format!("PING {endpoint}: 56 data bytes"));
        for seq in 1..=3 {
            assert!(
                reply_ms(&stdout, endpoint, seq).is_some(),
                "seq {seq}: {stdout}"
            );
        }
        let stream = endpoint.starts_with("tcp:") || endpoint.starts_with("unix:");
        let connected = format!("connected to {endpoint}: time=");
        assert_eq!(
            lines.iter().any(|l| l.starts_with(&connected)),
            stream,
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!("\n--- {endpoint} ping statistics ---\n")),
            "{stdout}"
        );
        assert!(
            stdout.contains("3 packets transmitted, 3 received, 0% packet loss, time "),
            "{stdout}"
        );
        let rtt = lines.last().expect("rtt line");
        assert!(rtt.starts_with("rtt min/avg/max/mdev = "), "{stdout}");
        let numbers: Vec<&str> = rtt[23..].trim_end_matches(" ms").split('/').collect();
        assert_eq!(numbers.len(), 4, "{rtt}");
        assert!(numbers
            .iter()
            .all(|n| n.split_once('.').expect("dot").1.len() == 3));
    }
    daemon.stop();
}

#[test]
fn a_silent_udp_target_is_100_percent_loss_and_exit_1() {
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("udp://{}", silent.local_addr().expect("addr"));
    let (status, stdout, stderr) = run(&["ping", "-c", "2", "-W", "0.2", "-i", "0.05", &endpoint]);
    assert_eq!(code(status), 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("no reply for seq=1 within 0.2 s"),
        "{stdout}"
    );
    assert!(
        stdout.contains("no reply for seq=2 within 0.2 s"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2 packets transmitted, 0 received, 100% packet loss"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("rtt "),
        "no rtt line without replies: {stdout}"
    );
}

/// Checks the output of a run where seq 1 came back only after seq 2 was
/// sent (and after -W), and seq 2 came back at once after it.
fn assert_late_first_reply(stdout: &str, endpoint: &str) {
    // -W 0.8 and -i 1.6: seq 2's reply has 0.8 s to come back (a loaded
    // machine may take far more than 0.2 s), and seq 1's is at least
    // 1.6 s old when it comes, so the two cannot be confused.
    let lost = stdout.find("no reply for seq=1 within 0.8 s");
    let late = stdout.find(&format!("late reply from {endpoint}: seq=1 time="));
    let second = stdout.find(&format!("56 bytes from {endpoint}: seq=2 time="));
    assert!(
        lost.is_some() && late.is_some() && second.is_some(),
        "{stdout}"
    );
    assert!(lost < late && late < second, "{stdout}");
    assert_eq!(
        reply_ms(stdout, endpoint, 1),
        None,
        "seq 1 is not a reply: {stdout}"
    );
    // Had the late seq-1 reply been taken for seq 2, seq 2 would show its age.
    let ms = reply_ms(stdout, endpoint, 2).expect("seq 2 replied");
    assert!(ms < 800.0, "seq 2 took {ms} ms: {stdout}");
    assert!(
        stdout.contains("2 packets transmitted, 1 received, 50% packet loss"),
        "{stdout}"
    );
}

#[test]
fn a_late_udp_reply_is_not_taken_for_the_next_one() {
    let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
    server.set_read_timeout(Some(WAIT)).expect("timeout");
    let endpoint = format!("udp://{}", server.local_addr().expect("addr"));
    // Holds probe 1 until probe 2 arrives, then answers both.
    let held = thread::spawn(move || {
        let mut one = [0u8; 56];
        let mut two = [0u8; 56];
        let (_, from) = server.recv_from(&mut one).expect("probe 1");
        server.recv_from(&mut two).expect("probe 2");
        server.send_to(&one, from).expect("late reply");
        server.send_to(&two, from).expect("reply");
    });
    let (status, stdout, stderr) = run(&["ping", "-c", "2", "-i", "1.6", "-W", "0.8", &endpoint]);
    held.join().expect("server");
    assert_eq!(code(status), 0, "{stdout}{stderr}");
    assert_late_first_reply(&stdout, &endpoint);
}

#[test]
fn a_tcp_stream_resyncs_past_a_late_reply_and_foreign_bytes() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("tcp://{}", listener.local_addr().expect("addr"));
    let held = thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        conn.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut one = [0u8; 56];
        let mut two = [0u8; 56];
        conn.read_exact(&mut one).expect("probe 1");
        conn.read_exact(&mut two).expect("probe 2");
        // Noise first, then the late probe split across writes, then probe 2.
        conn.write_all(b"line noise").expect("noise");
        conn.write_all(&one[..20]).expect("half");
        thread::sleep(Duration::from_millis(20));
        conn.write_all(&one[20..]).expect("rest");
        conn.write_all(&two).expect("reply");
        // Stay open until the client is done.
        let _ = conn.read(&mut one);
    });
    let (status, stdout, stderr) = run(&["ping", "-c", "2", "-i", "1.6", "-W", "0.8", &endpoint]);
    held.join().expect("server");
    assert_eq!(code(status), 0, "{stdout}{stderr}");
    // The noise may be reported in pieces, as the stream reveals it.
    let suffix = format!(" bytes from {endpoint} that are not a probe of ours");
    let skipped: usize = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("skipped ")?.strip_suffix(suffix.as_str()))
        .map(|n| n.parse::<usize>().expect("a count"))
        .sum();
    assert_eq!(skipped, 10, "{stdout}");
    assert_late_first_reply(&stdout, &endpoint);
}

#[test]
fn ctrl_c_prints_the_summary_and_exits_0() {
    let daemon = Daemon::start(&["tcp://127.0.0.1:0"]);
    let endpoint = daemon.endpoint("tcp://").to_string();
    let mut child = Command::new(support::bin())
        .args(["ping", "-i", "0.05", &endpoint])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ping");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    // Wait for two replies, so there is something to summarise.
    let mut replies = 0;
    while replies < 2 {
        line.clear();
        assert!(
            stdout.read_line(&mut line).expect("read") > 0,
            "ping ended early"
        );
        if line.contains(" bytes from ") {
            replies += 1;
        }
    }
    let _ = support::kill(child.id() as i32, libc::SIGINT);
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("rest");
    let status = support::wait_bounded(&mut child, WAIT, "ping, after SIGINT,");
    assert_eq!(code(status), 0, "{rest}");
    assert!(
        rest.contains(&format!("--- {endpoint} ping statistics ---")),
        "{rest}"
    );
    assert!(rest.contains(" packets transmitted, "), "{rest}");
    assert!(rest.contains("rtt min/avg/max/mdev = "), "{rest}");
    daemon.stop();
}

#[test]
fn refused_tcp_and_unpingable_kinds() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let (status, _, stderr) = run(&["ping", "-c", "1", &endpoint]);
    // Third wave: could not connect (a stream kind) is 3, no reply is 1.
    assert_eq!(code(status), 3, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("Connection refused"), "{stderr}");
    let (status, _, _) = run(&["ping", "multicast://224.10.10.10:1"]);
    assert_eq!(code(status), 2);
    let (status, _, _) = run(&["ping", "-s", "8", &endpoint]);
    assert_eq!(code(status), 2, "a probe needs room for its header");
}
