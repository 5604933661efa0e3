//! `serve --reactors N|auto` runs N loops that share the work
//! (TCP, UDP and binary:// over SO_REUSEPORT), one shutdown for all, and
//! `status` shows each reactor and the totals.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use support::{status_json, Daemon, WAIT};

fn echo(stream: &mut impl ReadWrite, payload: &[u8]) {
    stream.write_all(payload).expect("write");
    let mut back = vec![0; payload.len()];
    stream.read_exact(&mut back).expect("echo");
    assert_eq!(back, payload);
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn connections_per_reactor(stats: &serde_json::Value) -> Vec<u64> {
    stats["reactors"]
        .as_array()
        .expect("a reactors array")
        .iter()
        .map(|r| r["connections"].as_u64().expect("connections"))
        .collect()
}

#[test]
fn two_reactors_share_the_connections_and_status_shows_each() {
    let dir = support::temp_dir("reactors-status");
    let admin = dir.join("admin.sock");
    let daemon = Daemon::start(&[
        "--reactors",
        "2",
        "tcp://127.0.0.1:0",
        "--admin",
        admin.to_str().expect("utf-8"),
    ]);
    let addr = daemon.addr("tcp://");
    let mut conns: Vec<TcpStream> = (0..40)
        .map(|i| {
            let mut conn = TcpStream::connect(addr).expect("connect");
            conn.set_read_timeout(Some(WAIT)).expect("timeout");
            echo(&mut conn, format!("hello {i}").as_bytes());
            conn
        })
        .collect();
    // Each reactor publishes its counters every 100 ms: wait for both.
    let deadline = Instant::now() + WAIT;
    let per_reactor = loop {
        let stats = status_json(&admin);
        let per_reactor = connections_per_reactor(&stats);
        if per_reactor.iter().sum::<u64>() == 40 {
            assert_eq!(stats["connections"], 40, "the totals: {stats}");
            break per_reactor;
        }
        assert!(Instant::now() < deadline, "status never showed 40: {stats}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(per_reactor.len(), 2);
    // The kernel hashes each connection to one of the two listeners: all
    // 40 on one reactor has a chance of 2^-39.
    assert!(
        per_reactor.iter().all(|&n| n > 0),
        "one reactor got nothing: {per_reactor:?}"
    );
    for conn in &mut conns {
        echo(conn, b"still here");
    }
    let (status, _) = daemon.stop();
    assert!(status.success());
}

#[test]
fn one_signal_stops_every_reactor_and_removes_the_socket_file_once() {
    let dir = support::temp_dir("reactors-stop");
    let path = dir.join("r.sock");
    let unix = format!("unix:{}", path.display());
    let daemon = Daemon::start(&[
        "--reactors",
        "3",
        "tcp://127.0.0.1:0",
        "udp://127.0.0.1:0",
        &unix,
    ]);
    let tcp = daemon.addr("tcp://");
    let udp = daemon.addr("udp://");
    let mut conns: Vec<TcpStream> = (0..12)
        .map(|_| {
            let mut conn = TcpStream::connect(tcp).expect("connect");
            conn.set_read_timeout(Some(WAIT)).expect("timeout");
            echo(&mut conn, b"tcp");
            conn
        })
        .collect();
    let mut local = UnixStream::connect(&path).expect("unix connect");
    local.set_read_timeout(Some(WAIT)).expect("timeout");
    echo(&mut local, b"unix");
    let socket = support::udp_client(udp);
    support::udp_round_trip(&socket, udp, b"udp");
    // Every connection closes when the daemon stops, whichever reactor holds it.
    let (status, err) = daemon.stop();
    assert!(status.success(), "{err}");
    assert_eq!(
        err.matches("signal received").count(),
        1,
        "one shutdown, logged once:\n{err}"
    );
    for conn in &mut conns {
        let mut rest = Vec::new();
        conn.read_to_end(&mut rest).expect("a clean close");
        assert!(rest.is_empty());
    }
    assert!(!path.exists(), "the socket file outlived the daemon");
}

#[test]
fn reactors_auto_serves_every_kind() {
    let dir = support::temp_dir("reactors-auto");
    let stream = format!("unix:{}", dir.join("s.sock").display());
    let dgram = format!("unix-dgram:{}", dir.join("d.sock").display());
    let daemon = Daemon::start(&[
        "--reactors",
        "auto",
        "tcp://127.0.0.1:0",
        "udp://127.0.0.1:0",
        "binary://127.0.0.1:0",
        &stream,
        &dgram,
    ]);
    let mut tcp = TcpStream::connect(daemon.addr("tcp://")).expect("connect");
    tcp.set_read_timeout(Some(WAIT)).expect("timeout");
    echo(&mut tcp, b"tcp");
    let mut binary = TcpStream::connect(daemon.addr("binary://")).expect("connect");
    binary.set_read_timeout(Some(WAIT)).expect("timeout");
    let record = [1, 0, 0, 0, b'a', b'b', 0, 0, 0xcd, 0xcc, 0x2c, 0x40];
    echo(&mut binary, &record);
    let udp = daemon.addr("udp://");
    support::udp_round_trip(&support::udp_client(udp), udp, b"udp");
    let mut unix = UnixStream::connect(dir.join("s.sock")).expect("connect");
    unix.set_read_timeout(Some(WAIT)).expect("timeout");
    echo(&mut unix, b"unix");
    let target = support::Target::of(&dgram);
    let client = support::unix_dgram_client(&support::Target::of(&format!(
        "unix-dgram:{}",
        dir.join("client.sock").display()
    )));
    support::unix_dgram_round_trip(&client, &target, b"unix-dgram");
    let (status, _) = daemon.stop();
    assert!(status.success());
}

#[test]
fn a_bad_reactor_count_is_a_usage_error() {
    for bad in ["0", "many", "100000"] {
        let (status, _, err) = support::run(&["serve", "--reactors", bad, "tcp://127.0.0.1:0"]);
        assert_eq!(status.code(), Some(2), "--reactors {bad}: {err}");
        assert!(err.contains("reactors"), "{err}");
    }
}

/// A listener passed by socket activation was bound without SO_REUSEPORT;
/// with several reactors it gets it, so the others can bind beside it
/// (before, `serve --reactors 2` under systemd failed: address in use).
#[test]
fn a_passed_listener_is_shared_by_every_reactor() {
    use std::io::{BufRead, BufReader};
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let fd = listener.as_raw_fd();
    let mut command = Command::new("sh");
    command
        .arg("-c")
        // The pid of the shell is the daemon's after `exec`.
        .arg(format!(
            "LISTEN_PID=$$ LISTEN_FDS=1 exec {} serve --reactors 2 tcp://{addr}",
            support::bin()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: dup2 and fcntl are async-signal-safe; descriptor 3 ends up
    // without CLOEXEC.
    unsafe {
        command.pre_exec(move || {
            // dup2 onto itself would keep CLOEXEC: clear it instead.
            let moved = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if moved < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    loop {
        match rx.recv_timeout(WAIT) {
            Ok(line) if line == "ready" => break,
            Ok(line) => lines.push(line),
            Err(_) => {
                let _ = child.kill();
                let mut err = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    let _ = stderr.read_to_string(&mut err);
                }
                panic!("never ready; stderr:\n{err}");
            }
        }
    }
    assert_eq!(lines, vec![format!("listening tcp://{addr}")]);
    drop(listener);
    for i in 0..20 {
        let mut conn = TcpStream::connect(addr).expect("connect");
        conn.set_read_timeout(Some(WAIT)).expect("timeout");
        echo(&mut conn, format!("passed {i}").as_bytes());
    }
    // SAFETY: a signal to the child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().expect("wait").success());
}

/// SO_REUSEPORT lets a bind join any group of the same user at that
/// address: `serve --reactors 2` on a port another process holds with it
/// (another `serve --reactors 2`, HAProxy's default) silently shared it and
/// took part of that process's connections (before: it started). Now it is
/// "address in use", as with one reactor.
#[test]
fn an_address_another_process_shares_is_in_use_with_several_reactors() {
    use socket2::{Domain, Socket, Type};

    for (ty, scheme) in [(Type::STREAM, "tcp"), (Type::DGRAM, "udp")] {
        let held = Socket::new(Domain::IPV4, ty, None).expect("socket");
        held.set_reuse_port(true).expect("SO_REUSEPORT");
        let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("address");
        held.bind(&any.into()).expect("bind");
        if ty == Type::STREAM {
            held.listen(16).expect("listen");
        }
        let addr = held.local_addr().expect("addr").as_socket().expect("inet");
        let endpoint = format!("{scheme}://{addr}");
        let (status, out, err) = support::run(&["serve", "--reactors", "2", &endpoint]);
        assert_eq!(status.code(), Some(1), "{endpoint}: {out}\n{err}");
        assert!(err.contains("in use"), "{endpoint}: {err}");
    }
}

/// The scheduling policy of every thread of `pid` named `reactor-*` (and
/// of the main thread, reactor 0): field 41 of /proc/PID/task/TID/stat.
fn reactor_policies(pid: i32) -> Vec<(String, i64)> {
    let mut policies = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks") {
        let path = task.expect("task").path();
        let comm = std::fs::read_to_string(path.join("comm")).expect("comm");
        let comm = comm.trim().to_string();
        let tid: i32 = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse().ok())
            .expect("tid");
        if tid != pid && !comm.starts_with("reactor-") {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).expect("stat");
        // Fields after the parenthesised name start at field 3.
        let after = &stat[stat.rfind(')').expect("comm end") + 2..];
        let policy = after
            .split_whitespace()
            .nth(41 - 3)
            .and_then(|f| f.parse().ok())
            .expect("policy");
        policies.push((comm, policy));
    }
    policies
}

/// Two reactors confined to one CPU woke and preempted each
/// other (1.13–1.5× one reactor's CPU per message at the same load); when
/// the loops outnumber the CPUs they run SCHED_BATCH, so a woken loop
/// waits for its sibling's turn instead. With a CPU each, nothing changes.
#[test]
fn reactors_that_outnumber_their_cpus_wait_for_each_other() {
    const SCHED_OTHER: i64 = 0;
    const SCHED_BATCH: i64 = 3;
    let on_cpus = |cpus: &'static [usize]| {
        move |command: &mut std::process::Command| {
            use std::os::unix::process::CommandExt;
            // SAFETY: sched_setaffinity in the child between fork and exec,
            // on a set we own.
            unsafe {
                command.pre_exec(move || {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    for &cpu in cpus {
                        libc::CPU_SET(cpu, &mut set);
                    }
                    libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
                    Ok(())
                });
            }
        }
    };
    let crowded = Daemon::start_with(&["--reactors", "2", "tcp://127.0.0.1:0"], on_cpus(&[0]));
    let policies = reactor_policies(crowded.pid());
    assert_eq!(policies.len(), 2, "two reactor threads: {policies:?}");
    assert!(
        policies.iter().all(|(_, policy)| *policy == SCHED_BATCH),
        "two reactors on one CPU: {policies:?}"
    );
    let mut stream = TcpStream::connect(crowded.addr("tcp")).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    echo(&mut stream, b"still served");
    let (status, _) = crowded.stop();
    assert!(status.success());

    let one = Daemon::start_with(&["--reactors", "1", "tcp://127.0.0.1:0"], on_cpus(&[0]));
    assert!(
        reactor_policies(one.pid())
            .iter()
            .all(|(_, policy)| *policy == SCHED_OTHER),
        "one reactor keeps the default policy"
    );
    let _ = one.stop();
    if std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2 {
        let spread =
            Daemon::start_with(&["--reactors", "2", "tcp://127.0.0.1:0"], on_cpus(&[0, 1]));
        let policies = reactor_policies(spread.pid());
        assert!(
            policies.iter().all(|(_, policy)| *policy == SCHED_OTHER),
            "two reactors on two CPUs: {policies:?}"
        );
        let _ = spread.stop();
    }
}

/// A policy someone chose is kept; one inherited through an upgrade (the
/// old process's, perhaps our own SCHED_BATCH for loops that no longer
/// outnumber their CPUs) is not: the new process decides by its own count.
#[test]
fn a_chosen_policy_is_kept_and_an_upgrade_does_not_inherit_batch() {
    const SCHED_OTHER: i64 = 0;
    const SCHED_BATCH: i64 = 3;
    let batch = |upgrade: bool| {
        move |command: &mut std::process::Command| {
            use std::os::unix::process::CommandExt;
            if upgrade {
                // As the upgrade starts its successor; nobody listens there,
                // so the new process only warns when it is ready.
                command.env("ECHOPLEX_UPGRADE_NOTIFY", "/nonexistent/echoplex-notify");
            }
            // SAFETY: sched_setscheduler in the child between fork and exec.
            unsafe {
                command.pre_exec(|| {
                    let param = libc::sched_param { sched_priority: 0 };
                    libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
                    Ok(())
                });
            }
        }
    };
    let chosen = Daemon::start_with(&["--reactors", "1", "tcp://127.0.0.1:0"], batch(false));
    let policies = reactor_policies(chosen.pid());
    assert!(
        policies.iter().all(|(_, policy)| *policy == SCHED_BATCH),
        "chrt -b is the user's choice: {policies:?}"
    );
    let _ = chosen.stop();
    let upgraded = Daemon::start_with(&["--reactors", "1", "tcp://127.0.0.1:0"], batch(true));
    let policies = reactor_policies(upgraded.pid());
    assert!(
        policies.iter().all(|(_, policy)| *policy == SCHED_OTHER),
        "an upgraded process with one reactor: {policies:?}"
    );
    let _ = upgraded.stop();
}

/// Each log line names the reactor whose thread wrote it, reactor 1's
/// included (its shutdown is logged on its own thread).
#[test]
fn log_lines_name_the_reactor_that_wrote_them() {
    let daemon = Daemon::start_env(
        &["--reactors", "2", "tcp://127.0.0.1:0"],
        &[("RUST_LOG", "debug")],
    );
    let (status, stderr) = daemon.stop();
    assert!(status.success(), "exit: {status}\n{stderr}");
    for reactor in ["reactor 0]", "reactor 1]"] {
        assert!(
            stderr.lines().any(|line| line.contains(reactor)),
            "no line from {reactor}\n{stderr}"
        );
    }
}
