//! The daemon in production: socket activation, readiness notification,
//! the SIGUSR2 hitless upgrade, `--pid-file`, `metrics://`, and the
//! systemd unit files. Tests that need a system tool are ignored by
//! default and run by `scripts/test-all`.

mod support;

/// The harness's one check for a tool (a missing one fails under scripts/test-all).
use support::have_tool as have;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use support::{bin, pattern, temp_dir, unique_name, wait_until, Daemon, WAIT};

// ---------------------------------------------------------------------------
// A daemon whose stdout and stderr outlive it (an upgrade's successor
// inherits both), stopped by pid: support::Daemon, spawned with info logs.

/// Spawns `command` (an `echoplex serve`) with info logs; not yet ready.
fn served(mut command: Command) -> Daemon {
    command.env("RUST_LOG", "info");
    Daemon::spawn(command)
}

/// `echoplex serve ARGS`, not yet ready.
fn serve(args: &[&str]) -> Daemon {
    let mut command = Command::new(bin());
    command.arg("serve").args(args);
    served(command)
}

fn signal(pid: i32, signal: i32) {
    // SAFETY: kill(2) on a daemon this test started (directly or by upgrade).
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill {pid}: {}", std::io::Error::last_os_error());
}

/// True while `pid` runs (a zombie waiting for its reaper has ended).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rfind(')')
                .and_then(|at| stat[at + 1..].split_whitespace().next())
                .unwrap_or("X");
            state != "Z" && state != "X"
        }
        Err(_) => false,
    }
}

/// Stops a daemon we did not fork ourselves (an upgrade's successor).
struct ByPid(i32);

impl Drop for ByPid {
    fn drop(&mut self) {
        if alive(self.0) {
            // SAFETY: the successor of a daemon this test started.
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn inet(endpoint: &str) -> SocketAddr {
    let (_, rest) = endpoint.split_once("://").expect("inet endpoint");
    rest.parse().expect("address")
}

fn tcp_echo(addr: SocketAddr, message: &[u8]) -> Vec<u8> {
    let mut conn = TcpStream::connect_timeout(&addr, WAIT).expect("connect");
    conn.set_read_timeout(Some(WAIT)).expect("timeout");
    conn.write_all(message).expect("write");
    let mut echo = vec![0; message.len()];
    conn.read_exact(&mut echo).expect("read echo");
    echo
}

fn udp_echo(addr: SocketAddr, message: &[u8]) -> Vec<u8> {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.set_read_timeout(Some(WAIT)).expect("timeout");
    socket.send_to(message, addr).expect("send");
    let mut buf = [0u8; 2048];
    let (n, _) = socket.recv_from(&mut buf).expect("udp echo");
    buf[..n].to_vec()
}

// ---------------------------------------------------------------------------
// Socket activation

/// Moves `fds` to 3, 4, ... in the child and sets LISTEN_PID to the
/// child's own pid (a shell's `$$`, then `exec`: the pid stays the same).
fn activated(fds: &[RawFd], names: &str, args: &[&str]) -> Daemon {
    activated_as(fds, fds.len(), names, args)
}

/// Like `activated`, with `LISTEN_FDS` saying `listen_fds` (a wrong count).
fn activated_as(fds: &[RawFd], listen_fds: usize, names: &str, args: &[&str]) -> Daemon {
    // Above the target numbers, so no dup2 clobbers one still to move.
    let high: Vec<OwnedFd> = fds
        .iter()
        .map(|&fd| {
            // SAFETY: duplicating a descriptor we own.
            let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 64) };
            assert!(dup >= 0, "dup: {}", std::io::Error::last_os_error());
            // SAFETY: a fresh descriptor.
            unsafe { OwnedFd::from_raw_fd(dup) }
        })
        .collect();
    let sources: Vec<RawFd> = high.iter().map(AsRawFd::as_raw_fd).collect();
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg("export LISTEN_PID=$$; exec \"$0\" serve \"$@\"")
        .arg(bin())
        .args(args)
        .env("LISTEN_FDS", listen_fds.to_string())
        .env("LISTEN_FDNAMES", names);
    // SAFETY: only dup2, which is async-signal-safe, between fork and exec.
    unsafe {
        command.pre_exec(move || {
            for (index, &fd) in sources.iter().enumerate() {
                if libc::dup2(fd, 3 + index as RawFd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let served = served(command);
    drop(high);
    served
}

#[test]
fn passed_sockets_alone_are_served_by_name_or_by_type_and_their_files_stay() {
    let dir = temp_dir("activation");
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("tcp");
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let metrics = std::net::TcpListener::bind("127.0.0.1:0").expect("metrics");
    let path = dir.join("passed.sock");
    let unix = std::os::unix::net::UnixListener::bind(&path).expect("unix");
    let fds = [
        tcp.as_raw_fd(),
        udp.as_raw_fd(),
        unix.as_raw_fd(),
        metrics.as_raw_fd(),
    ];
    // Names: a scheme, unnamed (the socket decides), a non-scheme name.
    let mut daemon = activated(&fds, "tcp:unknown:web:metrics", &[]);
    let endpoints = daemon.ready();
    let tcp_addr = tcp.local_addr().expect("addr");
    let udp_addr = udp.local_addr().expect("addr");
    assert_eq!(
        endpoints,
        vec![
            format!("tcp://{tcp_addr}"),
            format!("udp://{udp_addr}"),
            format!("unix:{}", path.display()),
            format!("metrics://{}", metrics.local_addr().expect("addr")),
        ],
        "only the passed sockets, not the defaults"
    );
    // Our copies close: the daemon alone holds the sockets now.
    drop((tcp, udp, unix));
    let message = pattern(0, 1024);
    assert_eq!(tcp_echo(tcp_addr, &message), message);
    assert_eq!(udp_echo(udp_addr, b"datagram"), b"datagram");
    let mut conn = UnixStream::connect(&path).expect("unix connect");
    conn.set_read_timeout(Some(WAIT)).expect("timeout");
    conn.write_all(b"over unix").expect("write");
    let mut echo = [0u8; 9];
    conn.read_exact(&mut echo).expect("echo");
    assert_eq!(&echo, b"over unix");
    drop(conn);
    signal(daemon.pid(), libc::SIGTERM);
    assert!(daemon.wait().success(), "stderr:\n{}", daemon.stderr());
    assert!(
        path.exists(),
        "a passed socket file must never be removed by the daemon"
    );
}

#[test]
fn listen_fds_counting_past_the_passed_sockets_is_a_startup_error_naming_it() {
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("tcp");
    // One socket passed, five claimed: 4..7 are not ours to take, and
    // whatever the daemon opens itself must never be adopted as passed.
    for args in [&[][..], &["tcp://127.0.0.1:0"][..]] {
        let mut daemon = activated_as(&[tcp.as_raw_fd()], 5, "", args);
        let status = daemon.wait();
        let stderr = daemon.stderr();
        assert_eq!(status.code(), Some(1), "{stderr}");
        let line = support::assert_one_error_line(&stderr, &["LISTEN_FDS"]);
        assert!(line.contains("descriptor 4"), "{line}");
    }
}

#[test]
fn an_endpoint_on_the_command_line_adopts_the_passed_socket_at_its_address() {
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("tcp");
    let addr = tcp.local_addr().expect("addr");
    let endpoint = format!("binary://{addr}");
    let mut daemon = activated(&[tcp.as_raw_fd()], "", &[&endpoint, "udp://127.0.0.1:0"]);
    let endpoints = daemon.ready();
    assert_eq!(
        endpoints[0], endpoint,
        "adopted, not bound again (EADDRINUSE)"
    );
    assert!(endpoints[1].starts_with("udp://127.0.0.1:"));
    signal(daemon.pid(), libc::SIGTERM);
    assert!(daemon.wait().success());
}

#[test]
fn an_upgrade_of_an_activated_daemon_never_removes_the_passed_file() {
    let dir = temp_dir("activation-upgrade");
    let pid_file = dir.join("echoplex.pid");
    let path = dir.join("passed.sock");
    let unix = std::os::unix::net::UnixListener::bind(&path).expect("unix");
    let pid_arg = pid_file.display().to_string();
    let mut old = activated(&[unix.as_raw_fd()], "", &["--pid-file", &pid_arg]);
    let endpoints = old.ready();
    drop(unix);
    signal(old.pid(), libc::SIGUSR2);
    assert_eq!(old.ready(), endpoints);
    assert!(old.wait().success(), "stderr:\n{}", old.stderr());
    let new_pid = read_pid(&pid_file).expect("pid file");
    let _successor = ByPid(new_pid);
    let mut conn = UnixStream::connect(&path).expect("connect after the upgrade");
    conn.set_read_timeout(Some(WAIT)).expect("timeout");
    conn.write_all(b"abc").expect("write");
    let mut echo = [0u8; 3];
    conn.read_exact(&mut echo).expect("echo");
    assert_eq!(&echo, b"abc");
    drop(conn);
    signal(new_pid, libc::SIGTERM);
    wait_until("the new process exits", || !alive(new_pid));
    assert!(
        path.exists(),
        "a file systemd passed stays after an upgrade and the successor's exit"
    );
}

#[test]
#[ignore = "needs systemd-socket-activate: scripts/test-all"]
fn systemd_socket_activate_starts_a_daemon_that_echoes() {
    if !have("systemd-socket-activate") {
        return;
    }
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        probe.local_addr().expect("addr").port()
    };
    let mut command = Command::new("systemd-socket-activate");
    command
        .arg("-l")
        .arg(format!("127.0.0.1:{port}"))
        .arg(bin())
        .arg("serve");
    // systemd-socket-activate execs the daemon (same pid) on the first connection.
    let mut daemon = served(command);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut conn = None;
    wait_until("systemd-socket-activate listens", || {
        conn = TcpStream::connect(addr).ok();
        conn.is_some()
    });
    let mut conn = conn.expect("connected");
    conn.set_read_timeout(Some(WAIT)).expect("timeout");
    let message = pattern(7, 1024);
    conn.write_all(&message).expect("write");
    let mut echo = vec![0; message.len()];
    conn.read_exact(&mut echo)
        .expect("echo through the activated daemon");
    assert_eq!(echo, message);
    assert_eq!(daemon.ready(), vec![format!("tcp://{addr}")]);
    drop(conn);
    signal(daemon.pid(), libc::SIGTERM);
    assert!(daemon.wait().success(), "stderr:\n{}", daemon.stderr());
}

// ---------------------------------------------------------------------------
// Readiness notification

fn notify_listener(tag: &str) -> (UnixDatagram, String) {
    let name = unique_name(tag);
    let socket =
        UnixDatagram::bind_addr(&UnixAddr::from_abstract_name(name.as_bytes()).expect("addr"))
            .expect("bind the notify socket");
    socket.set_read_timeout(Some(WAIT)).expect("timeout");
    (socket, format!("@{name}"))
}

fn next_message(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 1024];
    let n = socket.recv(&mut buf).expect("a notification in time");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The next notification that has `line` among its lines (skipping plain
/// STATUS= updates); each wait is bounded by the socket's read timeout.
fn message_with(socket: &UnixDatagram, line: &str) -> String {
    for _ in 0..16 {
        let message = next_message(socket);
        if message.lines().any(|l| l == line) {
            return message;
        }
    }
    panic!("no notification with {line:?}");
}

#[test]
fn a_notify_listener_sees_ready_then_stopping() {
    let (listener, address) = notify_listener("notify");
    let mut command = Command::new(bin());
    command
        .args(["serve", "tcp://127.0.0.1:0"])
        .env("NOTIFY_SOCKET", &address);
    let mut daemon = served(command);
    daemon.ready();
    let ready = next_message(&listener);
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(
        ready
            .lines()
            .any(|l| l == format!("MAINPID={}", daemon.pid())),
        "{ready:?}"
    );
    assert!(ready.lines().any(|l| l.starts_with("STATUS=")), "{ready:?}");
    signal(daemon.pid(), libc::SIGTERM);
    let stopping = next_message(&listener);
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    assert!(daemon.wait().success());
}

// ---------------------------------------------------------------------------
// The hitless upgrade

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
    let mut old = served(command);
    let endpoints = old.ready();
    let old_pid = old.pid();
    assert_eq!(read_pid(&pid_file), Some(old_pid));
    message_with(&notify, "READY=1");
    let tcp = inet(&endpoints[0]);
    let udp = inet(&endpoints[1]);

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
    signal(old_pid, libc::SIGUSR2);
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
    let _successor = ByPid(new_pid);
    // systemd hears the new main pid.
    message_with(&notify, &format!("MAINPID={new_pid}"));

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
    signal(new_pid, libc::SIGTERM);
    message_with(&notify, "STOPPING=1");
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
    let mut old = served(command);
    let endpoints = old.ready();
    let old_pid = old.pid();
    signal(old_pid, libc::SIGUSR2);
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
    let _successor = ByPid(new_pid);
    // Both of the new reactors' sockets were adopted: nothing was left
    // over to serve as an endpoint of its own, and every connect works.
    for round in 0..40 {
        let message = pattern(round * 100, 100);
        assert_eq!(tcp_echo(inet(&endpoints[0]), &message), message);
    }
    assert_eq!(udp_echo(inet(&endpoints[1]), b"after"), b"after");
    signal(new_pid, libc::SIGTERM);
    wait_until("the new process exits", || !alive(new_pid));
}

#[test]
fn only_the_new_process_itself_can_say_it_is_ready() {
    let dir = temp_dir("upgrade-forged");
    let exe = copy_of_binary(&dir);
    let pid_file = dir.join("echoplex.pid");
    let mut command = Command::new(&exe);
    command
        .args(["serve", "tcp://127.0.0.1:0", "--pid-file"])
        .arg(&pid_file);
    let mut old = served(command);
    let tcp = inet(&old.ready()[0]);
    // A "new build" that never becomes ready.
    std::fs::remove_file(&exe).expect("remove");
    install(&exe, |exe| {
        std::fs::write(
            exe,
            "#!/bin/sh\n[ \"$1\" = --version ] && exit 0\nexec sleep 20\n",
        )
    });
    signal(old.pid(), libc::SIGUSR2);
    let mut child = None;
    wait_until("the old process names its successor", || {
        let stderr = old.stderr();
        child = stderr
            .split_once(" as pid ")
            .and_then(|(_, rest)| rest.split_whitespace().next()?.parse::<i32>().ok());
        child.is_some()
    });
    let child = child.expect("child pid");
    let _child = ByPid(child);
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
    assert_eq!(tcp_echo(tcp, &message), message);
    assert!(
        !old.stderr().contains("is ready and serves"),
        "{}",
        old.stderr()
    );
    assert_eq!(read_pid(&pid_file), Some(old.pid()));
    // A shutdown during the upgrade stops the would-be successor too.
    signal(old.pid(), libc::SIGTERM);
    assert!(old.wait().success());
    wait_until("the would-be successor is stopped", || !alive(child));
}

#[test]
fn a_failed_upgrade_leaves_the_old_process_serving() {
    let dir = temp_dir("upgrade-fails");
    let exe = copy_of_binary(&dir);
    let pid_file = dir.join("echoplex.pid");
    let mut command = Command::new(&exe);
    command
        .args(["serve", "tcp://127.0.0.1:0", "--pid-file"])
        .arg(&pid_file);
    let mut old = served(command);
    let endpoints = old.ready();
    let tcp = inet(&endpoints[0]);
    // The "new build" is broken: it exits at once.
    std::fs::remove_file(&exe).expect("remove");
    install(&exe, |exe| {
        std::fs::write(
            exe,
            // It writes the pid file (its last argument), then fails.
            "#!/bin/sh\n[ \"$1\" = --version ] && exit 0\nfor a; do last=$a; done\necho $$ > \"$last\"\necho 'broken build' >&2\nexit 3\n",
        )
    });
    signal(old.pid(), libc::SIGUSR2);
    wait_until("the old process logs the failure", || {
        old.stderr().contains("upgrade failed")
    });
    let stderr = old.stderr();
    assert!(stderr.contains("exited with status 3"), "{stderr}");
    assert!(stderr.contains("broken build"), "{stderr}");
    assert_eq!(read_pid(&pid_file), Some(old.pid()));
    let message = pattern(3, 1024);
    assert_eq!(tcp_echo(tcp, &message), message, "still serving");
    signal(old.pid(), libc::SIGTERM);
    assert!(old.wait().success());
    assert!(!pid_file.exists());
}

// ---------------------------------------------------------------------------
// metrics://

fn http(addr: SocketAddr, request: &str) -> (String, String) {
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(WAIT)).expect("timeout");
    conn.write_all(request.as_bytes()).expect("write");
    read_response(&mut conn)
}

/// One response: status line and body (by Content-Length).
fn read_response(conn: &mut TcpStream) -> (String, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        conn.read_exact(&mut byte).expect("response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).expect("utf8 head");
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .expect("Content-Length")
        .trim()
        .parse()
        .expect("length");
    let mut body = vec![0; length];
    conn.read_exact(&mut body).expect("body");
    (
        head.lines().next().unwrap_or_default().to_string(),
        String::from_utf8(body).expect("utf8 body"),
    )
}

#[test]
fn metrics_health_and_status_over_keep_alive_and_errors() {
    let mut daemon = serve(&["metrics://127.0.0.1:0", "tcp://127.0.0.1:0"]);
    let endpoints = daemon.ready();
    let addr = inet(&endpoints[0]);
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(WAIT)).expect("timeout");
    // Two requests on one connection (keep-alive), the second pipelined.
    conn.write_all(
        b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /status HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .expect("write");
    let (status, body) = read_response(&mut conn);
    assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 200 OK", "ok"));
    let (status, body) = read_response(&mut conn);
    assert_eq!(status, "HTTP/1.1 200 OK");
    let json: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
    assert!(
        json["handlers"].as_array().is_some_and(|h| h.len() >= 2),
        "{json}"
    );
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    let (status, body) = read_response(&mut conn);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.contains("# TYPE echoplex_connections_accepted_total counter"));
    assert!(body.contains(&format!(
        "echoplex_endpoint_info{{endpoint=\"{}\"",
        endpoints[1]
    )));
    let (status, _) = http(addr, "GET /nothing HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    // A head that never ends is cut at the bound (16 KiB, the one HTTP
    // parser's, shared with http://): 431, then close.
    let mut endless = TcpStream::connect(addr).expect("connect");
    endless.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut head = b"GET / HTTP/1.1\r\nX: ".to_vec();
    head.resize(17 * 1024, b'a');
    endless.write_all(&head).expect("write");
    assert_eq!(
        read_response(&mut endless).0,
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    // Malformed: 400, then the server closes.
    let mut bad = TcpStream::connect(addr).expect("connect");
    bad.set_read_timeout(Some(WAIT)).expect("timeout");
    bad.write_all(b"HELLO\r\n\r\n").expect("write");
    let (status, _) = read_response(&mut bad);
    assert_eq!(status, "HTTP/1.1 400 Bad Request");
    let mut rest = Vec::new();
    assert_eq!(
        bad.read_to_end(&mut rest).map(|_| rest.len()).unwrap_or(0),
        0
    );
}

#[test]
fn healthz_says_503_once_a_shutdown_has_begun() {
    let (notify, address) = notify_listener("healthz");
    let mut command = Command::new(bin());
    command
        .args(["serve", "metrics://127.0.0.1:0", "--grace", "10"])
        .env("NOTIFY_SOCKET", &address);
    let mut daemon = served(command);
    let addr = inet(&daemon.ready()[0]);
    message_with(&notify, "READY=1");
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(WAIT)).expect("timeout");
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    assert_eq!(read_response(&mut conn).0, "HTTP/1.1 200 OK");
    // Half a request: the connection is busy, so the shutdown serves it.
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        .expect("write");
    signal(daemon.pid(), libc::SIGTERM);
    message_with(&notify, "STOPPING=1");
    conn.write_all(b"\r\n").expect("the rest of the request");
    let (status, body) = read_response(&mut conn);
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("HTTP/1.1 503 Service Unavailable", "stopping\n")
    );
    drop(conn);
    assert!(daemon.wait().success(), "stderr:\n{}", daemon.stderr());
}

#[test]
#[ignore = "needs promtool: scripts/test-all"]
fn metrics_pass_promtool_check_metrics() {
    if !have("promtool") {
        return;
    }
    let mut daemon = serve(&[
        "metrics://127.0.0.1:0",
        "tcp://127.0.0.1:0",
        "udp://127.0.0.1:0",
    ]);
    let endpoints = daemon.ready();
    let message = pattern(1, 1024);
    assert_eq!(tcp_echo(inet(&endpoints[1]), &message), message);
    assert_eq!(udp_echo(inet(&endpoints[2]), b"x"), b"x");
    let (status, body) = http(
        inet(&endpoints[0]),
        "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(status, "HTTP/1.1 200 OK");
    // Figures that belong to one endpoint carry its label.
    for line in [
        format!(
            "echoplex_bytes_received_total{{endpoint=\"{}\"}} 1024\n",
            endpoints[1]
        ),
        format!(
            "echoplex_connections_accepted_total{{endpoint=\"{}\"}} 1\n",
            endpoints[1]
        ),
        format!(
            "echoplex_datagrams_received_total{{endpoint=\"{}\"}} 1\n",
            endpoints[2]
        ),
        format!(
            "echoplex_datagrams_sent_total{{endpoint=\"{}\"}} 1\n",
            endpoints[2]
        ),
        format!(
            "echoplex_connections_open{{endpoint=\"{}\"}} 1\n",
            endpoints[0]
        ),
    ] {
        assert!(body.contains(&line), "no {line:?} in\n{body}");
    }
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("feed promtool");
    let out = promtool.wait_with_output().expect("promtool output");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "needs prometheus: scripts/test-all"]
fn a_real_prometheus_scrapes_the_daemon() {
    if !have("prometheus") {
        return;
    }
    let dir = temp_dir("prometheus");
    let mut daemon = serve(&["metrics://127.0.0.1:0"]);
    let target = inet(&daemon.ready()[0]);
    let web_port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        probe.local_addr().expect("addr").port()
    };
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: echoplex\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .expect("config");
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{web_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus");
    let api: SocketAddr = format!("127.0.0.1:{web_port}").parse().expect("addr");
    let query = "GET /api/v1/query?query=echoplex_reactors HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let mut answer = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(mut conn) = TcpStream::connect(api) {
            let _ = conn.set_read_timeout(Some(WAIT));
            let mut text = String::new();
            if conn.write_all(query.as_bytes()).is_ok()
                && conn.read_to_string(&mut text).is_ok()
                && text.contains("\"value\"")
            {
                answer = text;
                break;
            }
        }
        thread::sleep(Duration::from_millis(200));
    }
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    assert!(
        answer.contains("\"job\":\"echoplex\"") && answer.contains("\"1\"]"),
        "Prometheus never stored a scraped sample: {answer}"
    );
}

// ---------------------------------------------------------------------------
// systemd unit files

#[test]
#[ignore = "needs systemd-analyze: scripts/test-all"]
fn the_unit_files_pass_systemd_analyze_verify() {
    if !have("systemd-analyze") {
        return;
    }
    let dir = temp_dir("units");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    for name in ["echoplex.service", "echoplex.socket"] {
        let text = std::fs::read_to_string(repo.join(name)).expect("unit file");
        // verify checks that ExecStart's binary exists: point it at the one built.
        std::fs::write(
            dir.join(name),
            text.replace("/usr/local/bin/echoplex", bin()),
        )
        .expect("copy");
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.join("echoplex.socket"))
        .arg(dir.join("echoplex.service"))
        .output()
        .expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("echoplex"))
        .collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "systemd-analyze verify: {stderr}"
    );
}
