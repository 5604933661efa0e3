//! The daemon under packet loss the loopback never shows. The
//! test builds two network namespaces joined by a veth pair (10.201.0.1 for
//! the daemon, 10.201.0.2 for the clients) and an nftables rule in each that
//! drops a random ~5 % of arriving packets (`numgen random`; this kernel has
//! no netem). TCP must stay byte-exact; UDP tools must count the loss and
//! finish on time. The namespaces are removed however the test ends (a Drop
//! guard). Needs root, `ip` and `nft`: run by scripts/test-all.

mod support;

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use support::{Daemon, PatternCheck};

const SERVER_IP: &str = "10.201.0.1";
const CLIENT_IP: &str = "10.201.0.2";
/// Percent of arriving packets dropped, in each namespace.
const LOSS_PERCENT: u32 = 5;

/// Two namespaces and the veth between them; deleted on drop, also when
/// the test fails (deleting a namespace deletes its veth end and rules).
struct Namespaces {
    server: String,
    client: String,
}

impl Namespaces {
    fn create() -> Namespaces {
        assert!(
            // SAFETY: geteuid(2) has no preconditions.
            unsafe { libc::geteuid() } == 0,
            "root_* tests need root (network namespaces): run scripts/test-all as root"
        );
        let pid = std::process::id();
        let nets = Namespaces {
            server: format!("echoplex-loss-s{pid}"),
            client: format!("echoplex-loss-c{pid}"),
        };
        ip(&["netns", "add", &nets.server]);
        ip(&["netns", "add", &nets.client]);
        // Both ends are created inside the namespaces: nothing touches the host's network.
        ip(&[
            "-n",
            &nets.server,
            "link",
            "add",
            "v0",
            "type",
            "veth",
            "peer",
            "name",
            "v1",
            "netns",
            &nets.client,
        ]);
        for (ns, dev, addr) in [
            (&nets.server, "v0", SERVER_IP),
            (&nets.client, "v1", CLIENT_IP),
        ] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
            // One segment per packet, as on a wire: otherwise the stack
            // hands the veth 64 KB super-packets and one drop loses 45 segments.
            ip(&["-n", ns, "link", "set", dev, "gso_max_segs", "1"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            let rules = format!(
                "table inet echoplex_loss {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n    \
                 iifname \"{dev}\" numgen random mod 100 < {LOSS_PERCENT} counter drop\n  }}\n}}\n"
            );
            let out = in_namespace(Command::new("nft").args(["-f", "-"]), ns)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .and_then(|mut child| {
                    child
                        .stdin
                        .take()
                        .expect("stdin")
                        .write_all(rules.as_bytes())?;
                    child.wait_with_output()
                })
                .unwrap_or_else(|err| panic!("nft not runnable ({err}): run scripts/test-all"));
            assert!(
                out.status.success(),
                "nft: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        nets
    }

    /// Packets the rule in `ns` dropped so far.
    fn dropped(&self, ns: &str) -> u64 {
        let out = in_namespace(
            Command::new("nft").args(["list", "table", "inet", "echoplex_loss"]),
            ns,
        )
        .output()
        .expect("nft list");
        let text = String::from_utf8_lossy(&out.stdout);
        text.split("counter packets ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no counter in: {text}"))
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in [&self.server, &self.client] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        let left = Command::new("ip").args(["netns", "list"]).output();
        if let Ok(left) = left {
            let left = String::from_utf8_lossy(&left.stdout);
            if left.contains(&self.server) || left.contains(&self.client) {
                eprintln!("!! network namespaces left behind: {left}");
            }
        }
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("ip not runnable ({err}): run scripts/test-all"));
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Moves the calling thread into network namespace `ns`.
fn enter(ns: &str) -> io::Result<()> {
    let file = File::open(format!("/run/netns/{ns}"))?;
    // SAFETY: setns(2) on a namespace file we hold open; it affects only
    // the calling thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `command` in namespace `ns` (its own PID: signals reach it, not `ip`).
fn in_namespace<'a>(command: &'a mut Command, ns: &str) -> &'a mut Command {
    let file = File::open(format!("/run/netns/{ns}")).expect("namespace file");
    // SAFETY: between fork and exec only setns(2) runs, on an open fd.
    unsafe {
        command.pre_exec(move || {
            if libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// Runs `echoplex ARGS` in `ns`, bounded by `limit`.
fn echoplex_in(ns: &str, args: &[&str], limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = in_namespace(&mut Command::new(support::bin()), ns)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn echoplex");
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("echoplex {args:?} did not finish within {limit:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
    (child.wait_with_output().expect("output"), started.elapsed())
}

fn port(daemon: &Daemon, scheme: &str) -> u16 {
    daemon.addr(scheme).port()
}

/// Sends `total` bytes of the pattern through one TCP connection and
/// checks the echo, a writer and a reader thread at once.
fn tcp_stream_through(server: SocketAddr, total: u64) -> Duration {
    let started = Instant::now();
    let stream = TcpStream::connect(server).expect("connect across the veth");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    stream
        .set_write_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let write = thread::spawn(move || {
        let mut at = 0u64;
        while at < total {
            let len = (total - at).min(64 * 1024) as usize;
            writer
                .write_all(&support::pattern(at, len))
                .expect("write under loss");
            at += len as u64;
        }
    });
    let mut reader = stream;
    let mut check = PatternCheck::default();
    let mut buf = vec![0; 64 * 1024];
    while check.seen() < total {
        let n = reader.read(&mut buf).expect("read under loss");
        assert!(n > 0, "EOF after {} of {total} bytes", check.seen());
        check.feed(&buf[..n]);
    }
    write.join().expect("writer");
    started.elapsed()
}

#[test]
#[ignore = "needs ip, nft and root: scripts/test-all"]
fn root_packet_loss_tcp_stays_exact_udp_counts_the_loss() {
    let nets = Namespaces::create();
    let server_ns = nets.server.clone();
    let daemon = Daemon::start_with(
        &[
            &format!("tcp://{SERVER_IP}:0"),
            &format!("udp://{SERVER_IP}:0"),
            "--udp-rate",
            "0",
        ],
        |command| {
            in_namespace(command, &server_ns);
        },
    );
    let tcp: SocketAddr = format!("{SERVER_IP}:{}", port(&daemon, "tcp://"))
        .parse()
        .expect("address");
    let udp = format!("udp://{SERVER_IP}:{}", port(&daemon, "udp://"));

    // The clients' threads live in the client namespace.
    let client_ns = nets.client.clone();
    let (ten_mb, small) = thread::spawn(move || {
        enter(&client_ns).expect("setns into the client namespace");
        let ten_mb = tcp_stream_through(tcp, 10 * 1024 * 1024);
        let started = Instant::now();
        let echoes: Vec<_> = (0..100u64)
            .map(|i| {
                thread::spawn(move || {
                    let mut conn = TcpStream::connect(tcp).expect("connect");
                    conn.set_read_timeout(Some(Duration::from_secs(20)))
                        .expect("timeout");
                    let message = support::pattern(i * 1000, 1000);
                    conn.write_all(&message).expect("write");
                    let mut back = vec![0; message.len()];
                    conn.read_exact(&mut back).expect("echo under loss");
                    assert_eq!(back, message, "echo {i} differs");
                })
            })
            .collect();
        for echo in echoes {
            echo.join().expect("a small echo failed");
        }
        (ten_mb, started.elapsed())
    })
    .join()
    .expect("TCP under loss");
    let dropped_tcp = nets.dropped(&nets.server) + nets.dropped(&nets.client);
    eprintln!(
        "TCP under {LOSS_PERCENT}% loss each way: 10 MiB through one connection byte-exact in {ten_mb:.2?} \
         ({:.1} MB/s); 100 concurrent 1000-byte echoes byte-exact in {small:.2?}; {dropped_tcp} packets dropped by the rules",
        10.0 * 1024.0 * 1024.0 / 1e6 / ten_mb.as_secs_f64()
    );
    assert!(dropped_tcp > 0, "the loss rule dropped nothing");

    // UDP: bench counts datagrams lost, ping counts probes lost; both finish.
    let (bench, took) = echoplex_in(
        &nets.client,
        &[
            "bench",
            &udp,
            "-c",
            "8",
            // Several datagrams in flight per socket: a loss does not stall
            // the socket, so the lost count follows the loss rate.
            "--depth",
            "16",
            "-d",
            "3",
            "--timeout",
            "0.2",
            "--json",
        ],
        Duration::from_secs(20),
    );
    let report: serde_json::Value = serde_json::from_slice(&bench.stdout).unwrap_or_else(|_| {
        panic!(
            "bench printed no JSON: {}{}",
            String::from_utf8_lossy(&bench.stdout),
            String::from_utf8_lossy(&bench.stderr)
        )
    });
    let (messages, lost) = (
        report["messages"].as_u64().expect("messages"),
        report["lost"].as_u64().expect("lost"),
    );
    eprintln!(
        "bench udp:// under loss: exit {:?} in {took:.2?}: {messages} echoes verified, {lost} lost ({:.1}%), {} errors",
        bench.status.code(),
        100.0 * lost as f64 / (messages + lost).max(1) as f64,
        report["errors"]
    );
    assert!(
        lost > 0,
        "bench counted no loss under {LOSS_PERCENT}% drop: {report}"
    );
    assert!(messages > 0 && report["errors"] == 0, "{report}");

    let (ping, took) = echoplex_in(
        &nets.client,
        &["ping", &udp, "-c", "100", "-i", "0.02", "-W", "0.5", "-q"],
        Duration::from_secs(20),
    );
    let summary = String::from_utf8_lossy(&ping.stdout).to_string();
    let line = summary
        .lines()
        .find(|line| line.contains("packet loss"))
        .unwrap_or_else(|| panic!("no loss line: {summary}"));
    eprintln!(
        "ping udp:// under loss: exit {:?} in {took:.2?}: {line}",
        ping.status.code()
    );
    assert!(ping.status.success(), "some replies came: {summary}");
    assert!(
        !line.contains(" 0% packet loss"),
        "ping counted no loss: {line}"
    );

    let dropped = nets.dropped(&nets.server) + nets.dropped(&nets.client);
    eprintln!("{dropped} packets dropped by the rules in all");
    let (status, stderr) = daemon.stop();
    assert!(status.success(), "{stderr}");
    support::assert_no_panic(&stderr);
    drop(nets);
}
