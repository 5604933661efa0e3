//! Datagram echo (UDP over IPv4 and IPv6, Unix datagrams to path and
//! abstract senders) against the real daemon: whole datagrams, to the
//! right sender, empty and maximal ones, bursts.

mod support;

use std::os::unix::net::UnixDatagram;

use support::{
    pattern, udp_client, udp_round_trip, unique_name, unix_dgram_client, unix_dgram_round_trip,
    Target, Watched,
};

/// The largest UDP payload over IPv4: 65,535 - 20 (IP) - 8 (UDP).
const MAX_UDP_PAYLOAD: usize = 65_507;

fn stop_clean(daemon: Watched) {
    support::assert_clean_exit(&daemon.stop(libc::SIGTERM));
}

// ---------------------------------------------------------------------------
// UDP

#[test]
fn udp_echoes_each_datagram_to_its_own_sender() {
    let daemon = Watched::start(&["udp://127.0.0.1:0"]);
    let server = daemon.target("udp").inet();
    let alice = udp_client(server);
    let bob = udp_client(server);
    for round in 0..20 {
        // Both send before either reads: replies must not cross.
        let a = format!("alice {round}");
        let b = format!("bob {round} {}", "x".repeat(round));
        alice.send_to(a.as_bytes(), server).expect("alice sends");
        bob.send_to(b.as_bytes(), server).expect("bob sends");
        let mut buf = [0u8; 256];
        let (n, from) = bob.recv_from(&mut buf).expect("bob's echo");
        assert_eq!((&buf[..n], from), (b.as_bytes(), server));
        let (n, from) = alice.recv_from(&mut buf).expect("alice's echo");
        assert_eq!((&buf[..n], from), (a.as_bytes(), server));
    }
    stop_clean(daemon);
}

#[test]
fn udp_echoes_over_ipv6_loopback() {
    let daemon = Watched::start(&["udp://[::1]:0"]);
    let server = daemon.target("udp").inet();
    assert!(server.is_ipv6(), "{:?}", daemon.endpoints);
    let client = udp_client(server);
    udp_round_trip(&client, server, b"hello over IPv6");
    udp_round_trip(&client, server, &pattern(0, 30_000));
    stop_clean(daemon);
}

#[test]
fn udp_echoes_the_largest_datagram_whole() {
    let daemon = Watched::start(&["udp://127.0.0.1:0"]);
    let server = daemon.target("udp").inet();
    let client = udp_client(server);
    udp_round_trip(&client, server, &pattern(7, MAX_UDP_PAYLOAD));
    udp_round_trip(&client, server, b"and a small one after it");
    stop_clean(daemon);
}

#[test]
fn udp_echoes_an_empty_datagram_as_an_empty_datagram() {
    // RFC 862 sends back what it got: nothing, in a datagram of its own.
    let daemon = Watched::start(&["udp://127.0.0.1:0"]);
    let server = daemon.target("udp").inet();
    let client = udp_client(server);
    udp_round_trip(&client, server, b"");
    // The empty one did not swallow or merge with the next.
    udp_round_trip(&client, server, b"after the empty one");
    stop_clean(daemon);
}

#[test]
fn udp_burst_sent_before_reading_is_echoed_in_full_and_in_order() {
    let daemon = Watched::start(&["udp://127.0.0.1:0"]);
    let server = daemon.target("udp").inet();
    let client = udp_client(server);
    let burst: Vec<Vec<u8>> = (0..40)
        .map(|i| format!("datagram {i}").into_bytes())
        .collect();
    for datagram in &burst {
        client.send_to(datagram, server).expect("send");
    }
    let mut buf = [0u8; 256];
    for datagram in &burst {
        let (n, from) = client.recv_from(&mut buf).expect("echo of the burst");
        assert_eq!(from, server);
        assert_eq!(&buf[..n], &datagram[..]);
    }
    stop_clean(daemon);
}

/// The UDP path adapts to the load. A lone datagram is read by
/// `recvfrom` and answered by `sendto`, as a plain loop does (the batch
/// path answered it with `recvmmsg` + `sendmmsg`, and its reply waited
/// for the batch); a queue deeper than a batch is still read 32 at a time
/// by `recvmmsg` and answered by `sendmmsg`. strace, attached to the
/// daemon, is the witness.
#[test]
#[ignore = "needs strace: scripts/test-all"]
fn udp_answers_a_lone_datagram_with_sendto_and_a_deep_queue_in_batches() {
    if !support::have_tool("strace") {
        return;
    }
    let dir = support::temp_dir("udp-strace");
    let trace = dir.join("trace");
    let daemon =
        support::Daemon::start(&["udp://127.0.0.1:0", "--udp-rate", "0", "--reactors", "1"]);
    let server = daemon.addr("udp");
    let mut strace = std::process::Command::new("strace")
        .args(["-f", "-e", "trace=recvfrom,sendto,recvmmsg,sendmmsg", "-o"])
        .arg(&trace)
        .args(["-p", &daemon.pid().to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn strace");
    // strace says "Process N attached" once per thread; the first is enough
    // to know the tracing has begun (the loop's thread is the main one).
    let mut attached = String::new();
    let mut stderr = std::io::BufReader::new(strace.stderr.take().expect("stderr"));
    std::io::BufRead::read_line(&mut stderr, &mut attached).expect("strace attached");
    assert!(attached.contains("attached"), "strace: {attached}");
    let drain = std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));

    let client = udp_client(server);
    let mut buf = [0u8; 256];
    const LONE: usize = 20;
    for i in 0..LONE {
        let datagram = format!("lone {i}");
        client.send_to(datagram.as_bytes(), server).expect("send");
        let (n, _) = client.recv_from(&mut buf).expect("echo of a lone datagram");
        assert_eq!(&buf[..n], datagram.as_bytes());
    }
    // A queue deeper than a batch: sent while the daemon is stopped.
    const DEEP: usize = 200;
    daemon.signal(libc::SIGSTOP);
    for i in 0..DEEP {
        client
            .send_to(format!("deep {i}").as_bytes(), server)
            .expect("send");
    }
    daemon.signal(libc::SIGCONT);
    for i in 0..DEEP {
        let (n, _) = client.recv_from(&mut buf).expect("echo of the deep queue");
        assert_eq!(&buf[..n], format!("deep {i}").as_bytes());
    }
    // A last exchange as a fence: strace may not print the call that
    // answered it before it is stopped, but it has printed the ones before.
    client.send_to(b"fence", server).expect("send");
    let (n, _) = client.recv_from(&mut buf).expect("echo of the fence");
    assert_eq!(&buf[..n], b"fence");
    // SAFETY: kill(2) on the pid of a child we own.
    unsafe { libc::kill(strace.id() as i32, libc::SIGINT) };
    let _ = strace.wait();
    let _ = drain.join();
    let text = std::fs::read_to_string(&trace).expect("strace output");
    let calls = |name: &str| -> Vec<i64> {
        // A call another thread interrupted is split in two lines: the
        // result is on its "<... NAME resumed>" line.
        let (call, resumed) = (format!("{name}("), format!("<... {name} resumed>"));
        text.lines()
            .filter(|line| line.contains(&call) || line.contains(&resumed))
            .filter_map(|line| line.rsplit_once(" = ")?.1.split(' ').next()?.parse().ok())
            .collect()
    };
    let sendto = calls("sendto");
    let (sendmmsg, recvmmsg) = (calls("sendmmsg"), calls("recvmmsg"));
    let batched: i64 = sendmmsg.iter().filter(|&&n| n > 0).sum();
    assert!(
        sendto.iter().filter(|&&n| n > 0).count() >= LONE,
        "lone datagrams answered by {} sendto calls (and {} sendmmsg); trace:\n{text}",
        sendto.len(),
        sendmmsg.len()
    );
    assert!(
        recvmmsg.contains(&32) && sendmmsg.contains(&32),
        "the deep queue was not read in full batches: recvmmsg {recvmmsg:?}, sendmmsg {sendmmsg:?}"
    );
    // sendto returns bytes, sendmmsg datagrams.
    let answered = sendto.iter().filter(|&&n| n > 0).count() as i64 + batched;
    assert!(
        answered == (LONE + DEEP) as i64 || answered == (LONE + DEEP + 1) as i64,
        "{answered} replies to {} datagrams (and a fence): sendto {sendto:?}, sendmmsg {sendmmsg:?}, recvmmsg {recvmmsg:?}",
        LONE + DEEP
    );
    let (status, stderr) = daemon.stop();
    assert!(status.success(), "daemon exit {status}: {stderr}");
}

// ---------------------------------------------------------------------------
// Unix datagrams

/// A daemon serving `unix-dgram:` at a path in a fresh directory.
fn serve_unix_dgram(tag: &str) -> (Watched, Target, support::ScratchDir) {
    let dir = support::ScratchDir::new(tag);
    let endpoint = format!("unix-dgram:{}", dir.join("server.sock").display());
    let daemon = Watched::start(&[&endpoint]);
    let server = daemon.target("unix-dgram");
    (daemon, server, dir)
}

#[test]
fn unix_dgram_echoes_to_a_client_bound_to_a_path() {
    let (daemon, server, dir) = serve_unix_dgram("udg-path");
    let client = unix_dgram_client(&Target::Path(dir.join("client.sock")));
    unix_dgram_round_trip(&client, &server, b"hello");
    unix_dgram_round_trip(&client, &server, b"");
    unix_dgram_round_trip(&client, &server, &pattern(3, MAX_UDP_PAYLOAD));
    unix_dgram_round_trip(&client, &server, b"after the big one");
    stop_clean(daemon);
}

#[test]
fn unix_dgram_echoes_to_a_client_bound_to_an_abstract_name() {
    let (daemon, server, _dir) = serve_unix_dgram("udg-abstract");
    let client = unix_dgram_client(&Target::Abstract(unique_name("client")));
    unix_dgram_round_trip(&client, &server, b"hello from the abstract namespace");
    unix_dgram_round_trip(&client, &server, b"");
    unix_dgram_round_trip(&client, &server, &pattern(5, MAX_UDP_PAYLOAD));
    stop_clean(daemon);
}

#[test]
fn unix_dgram_served_on_an_abstract_name_echoes() {
    let endpoint = format!("unix-dgram:@{}", unique_name("server"));
    let daemon = Watched::start(&[&endpoint]);
    assert_eq!(daemon.endpoints, [endpoint]);
    let server = daemon.target("unix-dgram");
    let client = unix_dgram_client(&Target::Abstract(unique_name("client")));
    unix_dgram_round_trip(&client, &server, b"abstract to abstract");
    stop_clean(daemon);
}

#[test]
fn unix_dgram_replies_go_to_the_right_client() {
    let (daemon, server, dir) = serve_unix_dgram("udg-two");
    let alice = unix_dgram_client(&Target::Path(dir.join("alice.sock")));
    let bob = unix_dgram_client(&Target::Abstract(unique_name("bob")));
    let addr = server.unix_addr();
    for round in 0..20 {
        let a = format!("alice {round}");
        let b = format!("bob {round}");
        alice
            .send_to_addr(a.as_bytes(), &addr)
            .expect("alice sends");
        bob.send_to_addr(b.as_bytes(), &addr).expect("bob sends");
        let mut buf = [0u8; 64];
        let n = bob.recv(&mut buf).expect("bob's echo");
        assert_eq!(&buf[..n], b.as_bytes());
        let n = alice.recv(&mut buf).expect("alice's echo");
        assert_eq!(&buf[..n], a.as_bytes());
    }
    stop_clean(daemon);
}

#[test]
fn unix_dgram_burst_within_the_reply_queue_is_echoed_in_full_and_in_order() {
    // A client's receive queue holds only net.unix.max_dgram_qlen (10)
    // datagrams: the rest of the replies wait in the server's queue (64)
    // until the client reads, then must all arrive.
    let (daemon, server, dir) = serve_unix_dgram("udg-burst");
    let client = unix_dgram_client(&Target::Path(dir.join("client.sock")));
    let addr = server.unix_addr();
    let burst: Vec<Vec<u8>> = (0..40)
        .map(|i| format!("datagram {i}").into_bytes())
        .collect();
    for datagram in &burst {
        client.send_to_addr(datagram, &addr).expect("send");
    }
    let mut buf = [0u8; 64];
    for datagram in &burst {
        let n = client.recv(&mut buf).expect("echo of the burst");
        assert_eq!(&buf[..n], &datagram[..]);
    }
    stop_clean(daemon);
}

#[test]
fn unix_dgram_from_an_unnamed_sender_does_not_disturb_the_service() {
    let (daemon, server, dir) = serve_unix_dgram("udg-unnamed");
    let unnamed = UnixDatagram::unbound().expect("unbound socket");
    unnamed
        .send_to_addr(b"nobody to answer", &server.unix_addr())
        .expect("send from an unnamed socket");
    let client = unix_dgram_client(&Target::Path(dir.join("client.sock")));
    unix_dgram_round_trip(&client, &server, b"named senders are still answered");
    stop_clean(daemon);
}

#[test]
fn unix_dgram_larger_than_64k_is_echoed_whole_or_not_at_all() {
    // Unix datagrams may exceed 64 KiB (up to the send buffer). The echo
    // must be the datagram, whole; a server that cannot hold it should drop
    // it, never answer with a piece of it.
    let (daemon, server, dir) = serve_unix_dgram("udg-huge");
    let client = unix_dgram_client(&Target::Path(dir.join("client.sock")));
    let addr = server.unix_addr();
    let huge = pattern(11, 100_000);
    client
        .send_to_addr(&huge, &addr)
        .expect("send 100,000 bytes");
    client.send_to_addr(b"marker", &addr).expect("send marker");
    let mut buf = vec![0u8; 200_000];
    let n = client.recv(&mut buf).expect("first reply");
    if &buf[..n] != b"marker" {
        assert_eq!(n, huge.len(), "the reply to a 100,000-byte datagram");
        assert!(buf[..n] == huge[..], "the reply differs from the datagram");
        let n = client.recv(&mut buf).expect("marker reply");
        assert_eq!(&buf[..n], b"marker");
    }
    stop_clean(daemon);
}
