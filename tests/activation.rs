//! Socket activation: sockets passed as systemd passes them (LISTEN_FDS,
//! LISTEN_FDNAMES, LISTEN_PID), alone or beside endpoints on the command
//! line, kept across an upgrade, and under systemd-socket-activate (a tool:
//! ignored by default, run by `scripts/test-all`).

mod support;

/// The harness's one check for a tool (a missing one fails under scripts/test-all).
use support::have_tool as have;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Command;

use support::{
    alive, bin, pattern, read_pid, round_trip, signal_pid, temp_dir, udp_client, udp_round_trip,
    wait_until, Daemon, Successor, Target, WAIT,
};

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
    let daemon = Daemon::spawn_logged(command);
    drop(high);
    daemon
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
    round_trip(&mut *Target::Inet(tcp_addr).connect(), &message);
    udp_round_trip(&udp_client(udp_addr), udp_addr, b"datagram");
    let mut conn = UnixStream::connect(&path).expect("unix connect");
    conn.set_read_timeout(Some(WAIT)).expect("timeout");
    conn.write_all(b"over unix").expect("write");
    let mut echo = [0u8; 9];
    conn.read_exact(&mut echo).expect("echo");
    assert_eq!(&echo, b"over unix");
    drop(conn);
    signal_pid(daemon.pid(), libc::SIGTERM);
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
    signal_pid(daemon.pid(), libc::SIGTERM);
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
    signal_pid(old.pid(), libc::SIGUSR2);
    assert_eq!(old.ready(), endpoints);
    assert!(old.wait().success(), "stderr:\n{}", old.stderr());
    let new_pid = read_pid(&pid_file).expect("pid file");
    let _successor = Successor(new_pid);
    let mut conn = UnixStream::connect(&path).expect("connect after the upgrade");
    conn.set_read_timeout(Some(WAIT)).expect("timeout");
    conn.write_all(b"abc").expect("write");
    let mut echo = [0u8; 3];
    conn.read_exact(&mut echo).expect("echo");
    assert_eq!(&echo, b"abc");
    drop(conn);
    signal_pid(new_pid, libc::SIGTERM);
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
    let mut daemon = Daemon::spawn_logged(command);
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
    signal_pid(daemon.pid(), libc::SIGTERM);
    assert!(daemon.wait().success(), "stderr:\n{}", daemon.stderr());
}
