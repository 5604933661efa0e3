//! The upgrade drains, it does not cut: after SIGUSR2 hands over, the old
//! process serves every established connection, quiet or busy, until its
//! peer closes it (or `--drain SECS` passes), then exits as on SIGTERM;
//! load generators running through it see no connection closed.

mod support;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use support::{
    alive, bin, pattern, read_pid, round_trip, signal_pid, status_json, temp_dir, wait_until, Conn,
    Successor, Watched, WAIT,
};

/// `echoplex bench ARGS` in the background.
fn bench(args: &[&str]) -> Child {
    Command::new(bin())
        .arg("bench")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bench")
}

/// Waits (bounded) for a bench run: its status and all it printed.
fn finish(mut run: Child) -> (std::process::ExitStatus, String) {
    let mut out = String::new();
    let mut err = String::new();
    let mut stdout = run.stdout.take().expect("stdout");
    let mut stderr = run.stderr.take().expect("stderr");
    let reader = thread::spawn(move || {
        let _ = stderr.read_to_string(&mut err);
        err
    });
    let _ = stdout.read_to_string(&mut out);
    let status = support::wait_bounded(&mut run, Duration::from_secs(60), "bench");
    (status, out + &reader.join().unwrap_or_default())
}

#[test]
fn an_upgrade_keeps_every_connection_until_its_peer_closes_it() {
    let dir = temp_dir("drain");
    let pid_file = dir.join("echoplex.pid");
    let admin = dir.join("admin.sock");
    let unix = dir.join("echo.sock");
    let (pid_arg, admin_arg, unix_arg) = (
        pid_file.display().to_string(),
        admin.display().to_string(),
        format!("unix:{}", unix.display()),
    );
    let mut old = Watched::start(&[
        "tcp://127.0.0.1:0",
        &unix_arg,
        "--pid-file",
        &pid_arg,
        "--admin",
        &admin_arg,
    ]);
    let old_pid = old.pid();
    let tcp = old.endpoint_text("tcp");
    // Streaming clients that happen to be idle at the upgrade.
    let mut idle: Vec<Box<dyn Conn>> = Vec::new();
    for round in 0..4 {
        let mut conn = old.target("tcp").connect();
        round_trip(&mut *conn, &pattern(round * 100, 100));
        idle.push(conn);
    }
    let mut unix_idle = old.target("unix").connect();
    round_trip(&mut *unix_idle, b"before");
    // Load through the upgrade: closed loop and open loop.
    let closed_loop = bench(&[&tcp, "-c", "10", "-d", "4"]);
    let open_loop = bench(&[&tcp, "-c", "10", "--rate", "1000", "-d", "4"]);
    wait_until("both benches are connected", || {
        status_json(&admin)["connections"].as_u64().unwrap_or(0) >= 25
    });

    old.signal(libc::SIGUSR2);
    assert_eq!(
        old.next_ready()[0],
        tcp,
        "the successor serves the same socket"
    );
    let mut new_pid = None;
    wait_until("the pid file names the successor", || {
        new_pid = read_pid(&pid_file).filter(|&pid| pid != old_pid);
        new_pid.is_some()
    });
    let new_pid = new_pid.expect("new pid");
    let _successor = Successor(new_pid);

    for (name, run) in [("closed loop", closed_loop), ("--rate 1000", open_loop)] {
        let (status, output) = finish(run);
        assert!(
            status.success(),
            "bench {name} through the upgrade:\n{output}"
        );
        assert!(
            !output.contains("closed by the server"),
            "{name}:\n{output}"
        );
    }
    // The idle ones are still served, by the old process.
    assert!(
        alive(old_pid),
        "the old process ended while connections were open"
    );
    for (round, conn) in idle.iter_mut().enumerate() {
        round_trip(&mut **conn, &pattern(round as u64 * 7, 1000));
    }
    round_trip(&mut *unix_idle, b"after the upgrade");
    // New connections go to the successor.
    round_trip(&mut *old.target("tcp").connect(), b"new");

    drop(idle);
    drop(unix_idle);
    wait_until("the old process exits once its peers are gone", || {
        !old.running()
    });
    assert!(alive(new_pid));
    assert!(unix.exists(), "the successor's socket file stays");
    signal_pid(new_pid, libc::SIGTERM);
    wait_until("the successor exits", || !alive(new_pid));
    assert!(!unix.exists());
    // Both logged to the same stderr, which ends with the successor.
    let exit = old.wait_exit();
    support::assert_clean_exit(&exit);
    assert!(exit.stderr.contains("draining our"), "{}", exit.stderr);
    assert!(exit.stderr.contains("drain over"), "{}", exit.stderr);
}

#[test]
fn after_the_drain_limit_what_is_left_ends_as_on_sigterm() {
    let dir = temp_dir("drain-limit");
    let pid_file = dir.join("echoplex.pid");
    let pid_arg = pid_file.display().to_string();
    let mut old = Watched::start(&["tcp://127.0.0.1:0", "--pid-file", &pid_arg, "--drain", "1"]);
    let old_pid = old.pid();
    let mut quiet = old.target("tcp").connect();
    round_trip(&mut *quiet, b"hello");
    old.signal(libc::SIGUSR2);
    old.next_ready();
    let mut new_pid = None;
    wait_until("the pid file names the successor", || {
        new_pid = read_pid(&pid_file).filter(|&pid| pid != old_pid);
        new_pid.is_some()
    });
    let new_pid = new_pid.expect("new pid");
    let _successor = Successor(new_pid);
    round_trip(&mut *quiet, b"still served while draining");
    // Then --drain passes: our FIN, a clean end (we owe and are owed nothing).
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = quiet.read_to_end(&mut rest);
    assert!(read.is_ok() && rest.is_empty(), "{read:?} {rest:?}");
    assert!(started.elapsed() < WAIT);
    drop(quiet);
    wait_until("the old process exits", || !old.running());
    signal_pid(new_pid, libc::SIGTERM);
    wait_until("the successor exits", || !alive(new_pid));
    let exit = old.wait_exit();
    support::assert_clean_exit(&exit);
    assert!(exit.stderr.contains("--drain passed"), "{}", exit.stderr);
}

#[test]
fn with_several_reactors_the_drain_waits_for_every_reactor_s_connections() {
    let dir = temp_dir("drain-reactors");
    let pid_file = dir.join("echoplex.pid");
    let pid_arg = pid_file.display().to_string();
    let mut old = Watched::start(&[
        "tcp://127.0.0.1:0",
        "--reactors",
        "2",
        "--pid-file",
        &pid_arg,
    ]);
    let old_pid = old.pid();
    // SO_REUSEPORT spreads these over both reactors.
    let mut conns: Vec<Box<dyn Conn>> = (0..8)
        .map(|round| {
            let mut conn = old.target("tcp").connect();
            round_trip(&mut *conn, &pattern(round * 10, 10));
            conn
        })
        .collect();
    old.signal(libc::SIGUSR2);
    old.next_ready();
    let mut new_pid = None;
    wait_until("the pid file names the successor", || {
        new_pid = read_pid(&pid_file).filter(|&pid| pid != old_pid);
        new_pid.is_some()
    });
    let new_pid = new_pid.expect("new pid");
    let _successor = Successor(new_pid);
    // Close them one by one: every one is served until its own close.
    while let Some(mut conn) = conns.pop() {
        round_trip(&mut *conn, b"still served");
        assert!(alive(old_pid), "{} connections left", conns.len() + 1);
        drop(conn);
    }
    wait_until("the old process exits", || !old.running());
    signal_pid(new_pid, libc::SIGTERM);
    wait_until("the successor exits", || !alive(new_pid));
    support::assert_clean_exit(&old.wait_exit());
}
