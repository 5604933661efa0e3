//! The SIGUSR2 hitless upgrade: under continuous connects and datagrams
//! nothing is refused or lost, every reactor's sockets are handed over,
//! only the new process itself can say it is ready, and a failed upgrade
//! leaves the old process serving. (The drain of the old process's
//! connections: tests/upgrade_drain.rs.)

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use support::{
    alive, bin, notification_with, notify_listener, pattern, read_pid, round_trip, signal_pid,
    temp_dir, udp_client, udp_round_trip, wait_until, Daemon, Successor, Target, WAIT,
};

/// Figures of the continuous connector.
#[derive(Default)]
struct Figures {
    attempted: AtomicU64,
    refused: AtomicU64,
    other_errors: AtomicU64,
    wrong_bytes: AtomicU64,
    verified: AtomicU64,
}

/// A new TCP connection every few ms, each echoing and verifying 1 KiB.
fn connector(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    figures: Arc<Figures>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut round = 0u64;
        while !stop.load(Ordering::Relaxed) {
            round += 1;
            figures.attempted.fetch_add(1, Ordering::Relaxed);
            let message = pattern(round * 1024, 1024);
            let result = (|| -> std::io::Result<Vec<u8>> {
                let mut conn = TcpStream::connect_timeout(&addr, WAIT)?;
                conn.set_read_timeout(Some(WAIT))?;
                conn.write_all(&message)?;
                let mut echo = vec![0; message.len()];
                conn.read_exact(&mut echo)?;
                Ok(echo)
            })();
            match result {
                Ok(echo) if echo == message => {
                    figures.verified.fetch_add(1024, Ordering::Relaxed);
                }
                Ok(_) => {
                    figures.wrong_bytes.fetch_add(1, Ordering::Relaxed);
                }
                Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
                    figures.refused.fetch_add(1, Ordering::Relaxed);
                }
                Err(err) => {
                    eprintln!("connect {round}: {err}");
                    figures.other_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            thread::sleep(Duration::from_millis(3));
        }
    })
}

/// A datagram every few ms; counts those answered and those not.
fn datagrams(addr: SocketAddr, stop: Arc<AtomicBool>) -> thread::JoinHandle<(u64, u64)> {
    thread::spawn(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let (mut answered, mut lost) = (0, 0);
        let mut seq = 0u64;
        let mut buf = [0u8; 64];
        while !stop.load(Ordering::Relaxed) {
            seq += 1;
            let message = seq.to_be_bytes();
            socket.send_to(&message, addr).expect("send");
            match socket.recv_from(&mut buf) {
                Ok((8, _)) if buf[..8] == message => answered += 1,
                _ => lost += 1,
            }
            thread::sleep(Duration::from_millis(5));
        }
        (answered, lost)
    })
}

/// Bytes verified so far by the `busy_connection` reader.
static EARLY_ROUNDS: AtomicU64 = AtomicU64::new(0);

/// One connection kept busy: a writer streams the pattern until `stop`,
/// then sends its EOF; a reader reads the echo slowly (so the server always
/// holds unread or unsent bytes of it, the contract's "busy"), faster once
/// stopping, until our EOF comes back. While `hold` is set the reader reads
/// nothing: the server's buffers fill and it surely holds unread bytes
/// (slow reading alone does not ensure it: on a loaded machine the writer
/// may sit unscheduled until the server has echoed everything, and the
/// connection would be quiet at the upgrade). Returns the bytes verified,
/// which must be every byte written, and our address.
fn busy_connection(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    hold: Arc<AtomicBool>,
) -> (thread::JoinHandle<u64>, SocketAddr) {
    let conn = TcpStream::connect(addr).expect("early connect");
    let me = conn.local_addr().expect("local address");
    conn.set_read_timeout(Some(WAIT)).expect("timeout");
    // The writer blocks for as long as the reader is held (the upgrade).
    conn.set_write_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut writer_conn = conn.try_clone().expect("clone");
    let writer_stop = Arc::clone(&stop);
    let writer = thread::spawn(move || {
        let mut written = 0u64;
        while !writer_stop.load(Ordering::Relaxed) {
            let chunk = pattern(written, 16 * 1024);
            writer_conn.write_all(&chunk).expect("early write");
            written += chunk.len() as u64;
        }
        writer_conn
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
        written
    });
    let mut reader_conn = conn;
    let reader = thread::spawn(move || {
        let mut check = support::PatternCheck::default();
        let mut buf = vec![0u8; 4096];
        loop {
            if hold.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(5));
                continue;
            }
            let n = reader_conn.read(&mut buf).unwrap_or_else(|err| {
                panic!("early connection cut after {} bytes: {err}", check.seen())
            });
            if n == 0 {
                break;
            }
            check.feed(&buf[..n]);
            EARLY_ROUNDS.store(check.seen(), Ordering::Relaxed);
            if !stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(1));
            }
        }
        let written = writer.join().expect("writer");
        assert_eq!(
            check.seen(),
            written,
            "every byte written came back before EOF"
        );
        written
    });
    (reader, me)
}

/// A copy of the binary, so the test can replace "the executable on disk"
/// as a new build would.
fn copy_of_binary(dir: &Path) -> PathBuf {
    let exe = dir.join("echoplex");
    install(&exe, |exe| std::fs::copy(bin(), exe).map(drop));
    exe
}

/// Writes an executable with `write`, then waits until it can be run.
/// Other test threads fork while the file is open for writing, and each
/// such child holds that descriptor until it execs: running the file
/// meanwhile fails with ETXTBSY. Once one run starts, no writer is left.
fn install(exe: &Path, write: impl FnOnce(&Path) -> std::io::Result<()>) {
    write(exe).expect("write the executable");
    std::fs::set_permissions(exe, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    wait_until(
        "the new executable can be run (no writer left)",
        || match Command::new(exe)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            Ok(_) => true,
            Err(err) if err.raw_os_error() == Some(libc::ETXTBSY) => false,
            Err(err) => panic!("cannot run {}: {err}", exe.display()),
        },
    );
}

/// Under continuous connects and datagrams, with a quiet and a busy
/// connection opened before it, SIGUSR2 hands everything over: no connect
/// refused, no byte wrong, UDP answered throughout, the quiet and the busy
/// connection served by the old process until their peers close them.
#[test]
fn sigusr2_upgrades_without_a_refused_connect_or_a_lost_byte() {
    let dir = temp_dir("upgrade");
    let exe = copy_of_binary(&dir);
    let pid_file = dir.join("echoplex.pid");
    let unix = dir.join("echo.sock");
    let admin = dir.join("admin.sock");
    let (notify, notify_address) = notify_listener("upgrade-notify");
    let mut command = Command::new(&exe);
    command
        .arg("serve")
        .arg("tcp://127.0.0.1:0")
        .arg("udp://127.0.0.1:0")
        .arg(format!("unix:{}", unix.display()))
        .arg("metrics://127.0.0.1:0")
        .arg("--admin")
        .arg(&admin)
        .arg("--pid-file")
        .arg(&pid_file)
        .args(["--grace", "10"])
        .env("NOTIFY_SOCKET", &notify_address);
    let mut old = Daemon::spawn_logged(command);
    let endpoints = old.ready();
    let old_pid = old.pid();
    assert_eq!(read_pid(&pid_file), Some(old_pid));
    notification_with(&notify, "READY=1");
    let tcp = Target::of(&endpoints[0]).inet();
    let udp = Target::of(&endpoints[1]).inet();

    // A quiet connection opened before the upgrade: the old process keeps
    // serving it after the handover, until we close it (the drain).
    let mut quiet = TcpStream::connect(tcp).expect("quiet connect");
    quiet.set_read_timeout(Some(WAIT)).expect("timeout");
    let hello = pattern(5, 1024);
    quiet.write_all(&hello).expect("write");
    let mut echo = vec![0; 1024];
    quiet.read_exact(&mut echo).expect("quiet echo");
    assert_eq!(echo, hello);
    // A busy one, echoing 1 KiB after 1 KiB all through the upgrade.
    let early_stop = Arc::new(AtomicBool::new(false));
    let early_hold = Arc::new(AtomicBool::new(false));
    let (early, early_addr) =
        busy_connection(tcp, Arc::clone(&early_stop), Arc::clone(&early_hold));

    let stop = Arc::new(AtomicBool::new(false));
    let figures = Arc::new(Figures::default());
    let connects = connector(tcp, Arc::clone(&stop), Arc::clone(&figures));
    let udp_thread = datagrams(udp, Arc::clone(&stop));
    thread::sleep(Duration::from_millis(300));

    // A new build lands on disk (a new inode at the same path), then SIGUSR2.
    std::fs::remove_file(&exe).expect("remove the old build");
    install(&exe, |exe| std::fs::copy(bin(), exe).map(drop));
    // The early connection is surely busy at the upgrade: its reader holds
    // off until the old process owes it bytes: paused by backpressure, it
    // owes --max-buffer and stays so while we do not read (a momentary
    // backlog could be gone at the upgrade).
    early_hold.store(true, Ordering::Relaxed);
    let peer = early_addr.to_string();
    let admin_path = admin.to_str().expect("utf-8");
    wait_until("the old process owes the early connection bytes", || {
        let (status, out, _) = support::run(&["status", "--json", "--admin", admin_path]);
        let json: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        status.success()
            && json["handlers"].as_array().is_some_and(|handlers| {
                handlers
                    .iter()
                    .any(|h| h["peer"] == peer.as_str() && h["state"] == "paused-by-backpressure")
            })
    });
    let before = figures.attempted.load(Ordering::Relaxed);
    signal_pid(old_pid, libc::SIGUSR2);
    let new_endpoints = old.ready();
    assert_eq!(
        new_endpoints[..4],
        endpoints[..4],
        "same sockets, same addresses"
    );
    let mut new_pid = None;
    wait_until("the pid file names the new process", || {
        new_pid = read_pid(&pid_file).filter(|&pid| pid != old_pid);
        new_pid.is_some()
    });
    let new_pid = new_pid.expect("new pid");
    let _successor = Successor(new_pid);
    // systemd hears the new main pid.
    notification_with(&notify, &format!("MAINPID={new_pid}"));

    // The busy early connection is still served by the old process, to its
    // end: it goes on a while, then ends with its own EOF.
    // It makes progress after the handover: waited for (bounded), not
    // assumed within a fixed 200 ms a loaded machine may not give it.
    let early_before = EARLY_ROUNDS.load(Ordering::Relaxed);
    early_hold.store(false, Ordering::Relaxed);
    wait_until("the early connection is served after the handover", || {
        EARLY_ROUNDS.load(Ordering::Relaxed) > early_before
    });
    early_stop.store(true, Ordering::Relaxed);
    let early_bytes = early.join().expect("early connection");
    assert!(
        early_bytes > early_before,
        "the early connection was served after the handover"
    );
    let again = pattern(11, 1024);
    quiet.write_all(&again).expect("write after the handover");
    quiet
        .read_exact(&mut echo)
        .expect("the quiet connection is still served");
    assert_eq!(echo, again);
    drop(quiet);
    assert!(
        old.wait().success(),
        "old process stderr:\n{}",
        old.stderr()
    );

    // Traffic goes on against the new process alone.
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    connects.join().expect("connector");
    let (answered, lost) = udp_thread.join().expect("udp");
    let attempted = figures.attempted.load(Ordering::Relaxed);
    let refused = figures.refused.load(Ordering::Relaxed);
    let verified = figures.verified.load(Ordering::Relaxed);
    eprintln!(
        "upgrade figures: {attempted} connects attempted ({} during and after the upgrade), {refused} refused, {} other errors, {} wrong echoes, {verified} bytes verified; early connection {early_bytes} bytes; UDP {answered} answered, {lost} lost",
        attempted - before,
        figures.other_errors.load(Ordering::Relaxed),
        figures.wrong_bytes.load(Ordering::Relaxed),
    );
    assert_eq!(refused, 0, "no connect may be refused");
    assert_eq!(figures.other_errors.load(Ordering::Relaxed), 0);
    assert_eq!(figures.wrong_bytes.load(Ordering::Relaxed), 0);
    assert!(
        attempted - before >= 20,
        "too few connects to mean anything"
    );
    assert_eq!(verified, attempted * 1024);
    assert_eq!(lost, 0, "every datagram answered");
    assert!(answered > 0);

    // Files were handed over, not removed; the successor serves them.
    let mut conn = UnixStream::connect(&unix).expect("unix after the upgrade");
    conn.set_read_timeout(Some(WAIT)).expect("timeout");
    conn.write_all(b"still here").expect("write");
    let mut echo = [0u8; 10];
    conn.read_exact(&mut echo).expect("echo");
    assert_eq!(&echo, b"still here");
    drop(conn);
    let status = Command::new(bin())
        .args(["status", "--json", "--admin"])
        .arg(&admin)
        .output()
        .expect("status");
    assert!(status.status.success(), "admin socket handed over too");

    // The successor ends like any daemon: files removed, pid file removed.
    signal_pid(new_pid, libc::SIGTERM);
    notification_with(&notify, "STOPPING=1");
    wait_until("the new process exits", || !alive(new_pid));
    assert!(!unix.exists(), "the last process removes the socket file");
    assert!(!admin.exists());
    assert!(!pid_file.exists());
}

#[test]
fn an_upgrade_hands_over_every_reactor_s_sockets() {
    let dir = temp_dir("upgrade-reactors");
    let pid_file = dir.join("echoplex.pid");
    let mut command = Command::new(bin());
    command
        .args([
            "serve",
            "tcp://127.0.0.1:0",
            "udp://127.0.0.1:0",
            "--reactors",
            "2",
            "--pid-file",
        ])
        .arg(&pid_file);
    let mut old = Daemon::spawn_logged(command);
    let endpoints = old.ready();
    let old_pid = old.pid();
    signal_pid(old_pid, libc::SIGUSR2);
    assert_eq!(
        old.ready(),
        endpoints,
        "the same endpoints, nothing bound anew"
    );
    assert!(old.wait().success(), "stderr:\n{}", old.stderr());
    let stderr = old.stderr();
    // Two reactors: a TCP and a UDP socket each.
    assert!(stderr.contains("with 4 sockets"), "{stderr}");
    let new_pid = read_pid(&pid_file).expect("pid file");
    assert_ne!(new_pid, old_pid);
    let _successor = Successor(new_pid);
    // Both of the new reactors' sockets were adopted: nothing was left
    // over to serve as an endpoint of its own, and every connect works.
    for round in 0..40 {
        let message = pattern(round * 100, 100);
        round_trip(&mut *Target::of(&endpoints[0]).connect(), &message);
    }
    let udp = Target::of(&endpoints[1]).inet();
    udp_round_trip(&udp_client(udp), udp, b"after");
    signal_pid(new_pid, libc::SIGTERM);
    wait_until("the new process exits", || !alive(new_pid));
}

/// A daemon on TCP with a pid file, run from a copy of the binary that the
/// test may then replace with a broken "new build": (its directory, the
/// copy, the pid file, the daemon).
fn serve_from_a_copy(tag: &str) -> (support::TempDir, PathBuf, PathBuf, Daemon) {
    let dir = temp_dir(tag);
    let exe = copy_of_binary(&dir);
    let pid_file = dir.join("echoplex.pid");
    let mut command = Command::new(&exe);
    command
        .args(["serve", "tcp://127.0.0.1:0", "--pid-file"])
        .arg(&pid_file);
    let old = Daemon::spawn_logged(command);
    (dir, exe, pid_file, old)
}

#[test]
fn only_the_new_process_itself_can_say_it_is_ready() {
    let (_dir, exe, pid_file, mut old) = serve_from_a_copy("upgrade-forged");
    let tcp = Target::of(&old.ready()[0]).inet();
    // A "new build" that never becomes ready.
    std::fs::remove_file(&exe).expect("remove");
    install(&exe, |exe| {
        std::fs::write(
            exe,
            "#!/bin/sh\n[ \"$1\" = --version ] && exit 0\nexec sleep 20\n",
        )
    });
    signal_pid(old.pid(), libc::SIGUSR2);
    let mut child = None;
    wait_until("the old process names its successor", || {
        let stderr = old.stderr();
        child = stderr
            .split_once(" as pid ")
            .and_then(|(_, rest)| rest.split_whitespace().next()?.parse::<i32>().ok());
        child.is_some()
    });
    let child = child.expect("child pid");
    let _child = Successor(child);
    // Anyone on the machine could find the abstract name; the kernel's
    // credentials say this message is ours, not the child's.
    let name = format!("echoplex-upgrade-{}-0", old.pid());
    let forger = UnixDatagram::unbound().expect("socket");
    forger
        .send_to_addr(
            format!("READY=1\nMAINPID={child}").as_bytes(),
            &UnixAddr::from_abstract_name(name.as_bytes()).expect("addr"),
        )
        .expect("send the forged READY=1");
    // A round trip after it: the loop has seen the forged message by then.
    let message = pattern(9, 512);
    round_trip(&mut *Target::Inet(tcp).connect(), &message);
    assert!(
        !old.stderr().contains("is ready and serves"),
        "{}",
        old.stderr()
    );
    assert_eq!(read_pid(&pid_file), Some(old.pid()));
    // A shutdown during the upgrade stops the would-be successor too.
    signal_pid(old.pid(), libc::SIGTERM);
    assert!(old.wait().success());
    wait_until("the would-be successor is stopped", || !alive(child));
}

#[test]
fn a_failed_upgrade_leaves_the_old_process_serving() {
    let (_dir, exe, pid_file, mut old) = serve_from_a_copy("upgrade-fails");
    let endpoints = old.ready();
    let tcp = Target::of(&endpoints[0]).inet();
    // The "new build" is broken: it exits at once.
    std::fs::remove_file(&exe).expect("remove");
    install(&exe, |exe| {
        std::fs::write(
            exe,
            // It writes the pid file (its last argument), then fails.
            "#!/bin/sh\n[ \"$1\" = --version ] && exit 0\nfor a; do last=$a; done\necho $$ > \"$last\"\necho 'broken build' >&2\nexit 3\n",
        )
    });
    signal_pid(old.pid(), libc::SIGUSR2);
    wait_until("the old process logs the failure", || {
        old.stderr().contains("upgrade failed")
    });
    let stderr = old.stderr();
    assert!(stderr.contains("exited with status 3"), "{stderr}");
    assert!(stderr.contains("broken build"), "{stderr}");
    assert_eq!(read_pid(&pid_file), Some(old.pid()));
    let message = pattern(3, 1024);
    round_trip(&mut *Target::Inet(tcp).connect(), &message);
    signal_pid(old.pid(), libc::SIGTERM);
    assert!(old.wait().success());
    assert!(!pid_file.exists());
}
