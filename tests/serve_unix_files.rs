//! The socket files of `unix:` and `unix-dgram:` endpoints: their mode,
//! their removal on exit, stale files replaced, everything else refused
//! and left untouched, and no half-served state after a failed start.

mod support;

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, Type};

use support::{
    assert_clean_exit, assert_one_error_line, round_trip, taken_tcp_port, unix_dgram_client,
    unix_dgram_round_trip, Target, Watched, IO_TIMEOUT,
};

/// `echoplex serve ARGS...` expected to fail: asserts a non-zero exit,
/// nothing on stdout, and one error line naming `endpoint`; returns it.
fn serve_must_fail(args: &[&str], endpoint: &str) -> String {
    let mut full = vec!["serve"];
    full.extend_from_slice(args);
    let (status, stdout, stderr) = support::run(&full);
    assert!(
        !status.success(),
        "serve {args:?} should have failed; stderr:\n{stderr}"
    );
    assert_eq!(stdout, "", "nothing may be announced when a bind fails");
    assert_one_error_line(&stderr, &[endpoint]).to_string()
}

/// Asserts `line` gives one of the `causes` (case-insensitive).
fn assert_cause(line: &str, causes: &[&str]) {
    let lower = line.to_lowercase();
    assert!(
        causes.iter().any(|cause| lower.contains(cause)),
        "the error line gives none of the causes {causes:?}: {line}"
    );
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read temp dir")
        .map(|entry| {
            entry
                .expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into()
        })
        .collect();
    names.sort();
    names
}

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path)
        .expect("stat")
        .permissions()
        .mode()
        & 0o777
}

fn is_socket(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_socket())
}

fn unix(path: &Path) -> String {
    format!("unix:{}", path.display())
}

fn unix_dgram(path: &Path) -> String {
    format!("unix-dgram:{}", path.display())
}

/// Proves the listener at `listener` still serves: a client connects and
/// trades a line with whichever accepted connection carries it.
fn assert_listener_still_works(listener: &UnixListener, path: &Path) {
    let mut client = UnixStream::connect(path).expect("connect to the original listener");
    client.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    client.write_all(b"ping").expect("send ping");
    listener.set_nonblocking(true).expect("non-blocking");
    support::wait_until("the original listener hands over our connection", || {
        let Ok((mut conn, _)) = listener.accept() else {
            return false;
        };
        conn.set_nonblocking(false).expect("blocking");
        conn.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let mut buf = [0u8; 4];
        // Connections the daemon's probe left behind carry nothing.
        if conn.read_exact(&mut buf).is_ok() && &buf == b"ping" {
            conn.write_all(b"pong").expect("send pong");
            return true;
        }
        false
    });
    let mut reply = [0u8; 4];
    client.read_exact(&mut reply).expect("pong");
    assert_eq!(&reply, b"pong");
}

// ---------------------------------------------------------------------------
// Modes and removal

#[test]
fn socket_files_get_mode_600_by_default() {
    let dir = support::ScratchDir::new("mode600");
    let (stream, dgram) = (dir.join("s.sock"), dir.join("d.sock"));
    let daemon = Watched::start(&[&unix(&stream), &unix_dgram(&dgram)]);
    for path in [&stream, &dgram] {
        assert!(is_socket(path), "{} is not a socket", path.display());
        assert_eq!(mode_of(path), 0o600, "mode of {}", path.display());
    }
    assert_clean_exit(&daemon.stop(libc::SIGTERM));
}

#[test]
fn unix_mode_660_applies_to_stream_and_datagram_files() {
    let dir = support::ScratchDir::new("mode660");
    let (stream, dgram) = (dir.join("s.sock"), dir.join("d.sock"));
    let daemon = Watched::start(&[&unix(&stream), "--unix-mode", "660", &unix_dgram(&dgram)]);
    for path in [&stream, &dgram] {
        assert_eq!(mode_of(path), 0o660, "mode of {}", path.display());
    }
    // The mode does not get in the way of the owner.
    let mut conn = daemon.target("unix").connect();
    round_trip(&mut *conn, b"660 and serving");
    assert_clean_exit(&daemon.stop(libc::SIGTERM));
}

/// Starts `serve ARGS...` with the process umask set to `umask`.
fn start_with_umask(args: &[&str], umask: libc::mode_t) -> support::Daemon {
    support::Daemon::start_with(args, |command| {
        use std::os::unix::process::CommandExt;
        // SAFETY: umask is async-signal-safe and touches only the child.
        unsafe {
            command.pre_exec(move || {
                libc::umask(umask);
                Ok(())
            });
        }
    })
}

#[test]
fn unix_mode_is_exact_whatever_the_umask() {
    for (umask, mode_arg, expected) in [(0o077, "660", 0o660), (0o000, "600", 0o600)] {
        let dir = support::ScratchDir::new("umask");
        let (stream, dgram) = (dir.join("s.sock"), dir.join("d.sock"));
        let daemon = start_with_umask(
            &["--unix-mode", mode_arg, &unix(&stream), &unix_dgram(&dgram)],
            umask,
        );
        for path in [&stream, &dgram] {
            assert_eq!(
                mode_of(path),
                expected,
                "mode of {} with umask {umask:o}",
                path.display()
            );
        }
        let (status, stderr) = daemon.stop();
        assert!(status.success(), "exit {status}; stderr:\n{stderr}");
    }
}

fn files_removed_on(signal: i32, tag: &str) {
    let dir = support::ScratchDir::new(tag);
    let (stream, dgram) = (dir.join("s.sock"), dir.join("d.sock"));
    let daemon = Watched::start(&[&unix(&stream), &unix_dgram(&dgram)]);
    assert_eq!(entries(&dir), ["d.sock", "s.sock"]);
    let exit = daemon.stop(signal);
    assert_clean_exit(&exit);
    assert!(entries(&dir).is_empty(), "left behind: {:?}", entries(&dir));
}

#[test]
fn socket_files_are_removed_on_sigterm() {
    files_removed_on(libc::SIGTERM, "rm-term");
}

#[test]
fn socket_files_are_removed_on_sigint() {
    files_removed_on(libc::SIGINT, "rm-int");
}

#[test]
fn exit_leaves_a_socket_file_it_did_not_create() {
    // Daemon A serves PATH; its file is removed (an operator, a tmp
    // cleaner); daemon B then serves PATH. A's exit must not take B's file.
    let dir = support::ScratchDir::new("not-mine");
    let path = dir.join("shared.sock");
    let first = Watched::start(&[&unix(&path)]);
    fs::remove_file(&path).expect("unlink the first daemon's file");
    let second = Watched::start(&[&unix(&path)]);
    let inode = fs::metadata(&path).expect("second file").ino();
    assert_clean_exit(&first.stop(libc::SIGTERM));
    assert!(
        is_socket(&path),
        "the first daemon removed the second daemon's socket file"
    );
    assert_eq!(fs::metadata(&path).expect("stat").ino(), inode);
    let mut conn = Target::Path(path.clone()).connect();
    round_trip(&mut *conn, b"the second daemon is still reachable");
    assert_clean_exit(&second.stop(libc::SIGTERM));
    assert!(!path.exists(), "the second daemon removes its own file");
}

// ---------------------------------------------------------------------------
// What may already be at the path

#[test]
fn stale_stream_socket_file_is_replaced() {
    let dir = support::ScratchDir::new("stale-stream");
    let path = dir.join("s.sock");
    drop(UnixListener::bind(&path).expect("bind, then close: a stale file"));
    assert!(is_socket(&path));
    let daemon = Watched::start(&[&unix(&path)]);
    let mut conn = daemon.target("unix").connect();
    round_trip(&mut *conn, b"served on a replaced stale file");
    assert_eq!(mode_of(&path), 0o600, "the new file has the daemon's mode");
    assert_clean_exit(&daemon.stop(libc::SIGTERM));
    assert!(!path.exists(), "the replacement is the daemon's to remove");
}

#[test]
fn stale_datagram_socket_file_is_replaced() {
    let dir = support::ScratchDir::new("stale-dgram");
    let path = dir.join("d.sock");
    drop(UnixDatagram::bind(&path).expect("bind, then close: a stale file"));
    let daemon = Watched::start(&[&unix_dgram(&path)]);
    let client = unix_dgram_client(&Target::Path(dir.join("client.sock")));
    unix_dgram_round_trip(
        &client,
        &daemon.target("unix-dgram"),
        b"served on a stale file",
    );
    assert_clean_exit(&daemon.stop(libc::SIGTERM));
    assert!(!path.exists());
}

#[test]
fn live_stream_listener_at_the_path_is_refused_and_keeps_working() {
    let dir = support::ScratchDir::new("live-stream");
    let path = dir.join("s.sock");
    let listener = UnixListener::bind(&path).expect("the other server");
    let inode = fs::metadata(&path).expect("stat").ino();
    let endpoint = unix(&path);
    let line = serve_must_fail(&[&endpoint], &endpoint);
    assert_cause(&line, &["listening", "in use", "live"]);
    assert_eq!(fs::metadata(&path).expect("still there").ino(), inode);
    assert_listener_still_works(&listener, &path);
}

/// A Unix listener at `path` whose accept queue is full: every further
/// connect is refused with EAGAIN, as a stale file would refuse it.
fn listener_with_full_backlog(path: &Path) -> (Socket, Vec<Socket>) {
    let listener = Socket::new(Domain::UNIX, Type::STREAM, None).expect("socket");
    listener
        .bind(&SockAddr::unix(path).expect("address"))
        .expect("bind");
    listener.listen(0).expect("listen");
    let mut queued = Vec::new();
    loop {
        let client = Socket::new(Domain::UNIX, Type::STREAM, None).expect("socket");
        client.set_nonblocking(true).expect("non-blocking");
        match client.connect(&SockAddr::unix(path).expect("address")) {
            Ok(()) => queued.push(client),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return (listener, queued),
            Err(err) => panic!("filling the backlog: {err}"),
        }
        assert!(queued.len() < 1000, "the backlog never filled");
    }
}

#[test]
fn live_listener_with_a_full_backlog_is_not_mistaken_for_a_stale_file() {
    let dir = support::ScratchDir::new("full-backlog");
    let path = dir.join("busy.sock");
    let (listener, queued) = listener_with_full_backlog(&path);
    let inode = fs::metadata(&path).expect("stat").ino();
    let endpoint = unix(&path);
    let line = serve_must_fail(&[&endpoint], &endpoint);
    assert_cause(&line, &["listening", "in use", "live"]);
    assert_eq!(fs::metadata(&path).expect("still there").ino(), inode);
    // The busy server catches up (accepts what was queued) and serves
    // again at its own file.
    drop(queued);
    let listener: UnixListener = listener.into();
    listener.set_nonblocking(true).expect("non-blocking");
    while listener.accept().is_ok() {}
    assert_listener_still_works(&listener, &path);
}

#[test]
fn live_datagram_socket_at_the_path_is_refused_and_keeps_working() {
    let dir = support::ScratchDir::new("live-dgram");
    let path = dir.join("d.sock");
    let other = UnixDatagram::bind(&path).expect("the other server");
    other.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let inode = fs::metadata(&path).expect("stat").ino();
    let endpoint = unix_dgram(&path);
    let line = serve_must_fail(&[&endpoint], &endpoint);
    assert_cause(&line, &["listening", "in use", "live"]);
    assert_eq!(fs::metadata(&path).expect("still there").ino(), inode);
    let sender = UnixDatagram::unbound().expect("sender");
    sender.send_to(b"still yours", &path).expect("send");
    let mut buf = [0u8; 32];
    let n = other
        .recv(&mut buf)
        .expect("the other server still receives");
    assert_eq!(&buf[..n], b"still yours");
}

#[test]
fn live_stream_listener_is_refused_for_a_datagram_endpoint_too() {
    let dir = support::ScratchDir::new("live-other-type");
    let path = dir.join("s.sock");
    let listener = UnixListener::bind(&path).expect("the other server");
    let endpoint = unix_dgram(&path);
    let line = serve_must_fail(&[&endpoint], &endpoint);
    assert_cause(&line, &["listening", "in use", "live"]);
    assert_listener_still_works(&listener, &path);
}

#[test]
fn regular_file_at_the_path_is_refused_and_left_untouched() {
    let dir = support::ScratchDir::new("regular");
    let path = dir.join("data.sock");
    fs::write(&path, b"precious data").expect("write a regular file");
    for endpoint in [unix(&path), unix_dgram(&path)] {
        let line = serve_must_fail(&[&endpoint], &endpoint);
        assert_cause(&line, &["regular file", "exists", "not a socket"]);
        assert_eq!(fs::read(&path).expect("file still there"), b"precious data");
    }
}

#[test]
fn directory_at_the_path_is_refused_and_left_untouched() {
    let dir = support::ScratchDir::new("directory");
    let path = dir.join("sub.sock");
    fs::create_dir(&path).expect("mkdir");
    fs::write(path.join("inside"), b"keep").expect("file in the directory");
    for endpoint in [unix(&path), unix_dgram(&path)] {
        let line = serve_must_fail(&[&endpoint], &endpoint);
        assert_cause(&line, &["directory", "exists", "not a socket"]);
        assert!(path.is_dir());
        assert_eq!(fs::read(path.join("inside")).expect("kept"), b"keep");
    }
}

#[test]
fn symlink_at_the_path_is_refused_and_left_untouched() {
    let dir = support::ScratchDir::new("symlink");
    let target = dir.join("elsewhere");
    let path = dir.join("link.sock");
    std::os::unix::fs::symlink(&target, &path).expect("symlink");
    let endpoint = unix(&path);
    serve_must_fail(&[&endpoint], &endpoint);
    assert!(fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()));
    assert!(!target.exists(), "nothing was created through the link");
}

// ---------------------------------------------------------------------------
// A failed start leaves nothing behind

#[test]
fn later_bind_failure_removes_socket_files_made_for_earlier_endpoints() {
    let dir = support::ScratchDir::new("rollback-tcp");
    let taken = taken_tcp_port();
    let tcp = format!("tcp://{}", taken.local_addr().expect("addr"));
    let (a, b) = (dir.join("a.sock"), dir.join("b.sock"));
    let line = serve_must_fail(&[&unix(&a), &unix_dgram(&b), &tcp], &tcp);
    assert_cause(&line, &["in use"]);
    assert!(entries(&dir).is_empty(), "left behind: {:?}", entries(&dir));
}

#[test]
fn later_failure_on_a_regular_file_removes_earlier_sockets_but_not_the_file() {
    let dir = support::ScratchDir::new("rollback-file");
    let a = dir.join("a.sock");
    let file = dir.join("file.sock");
    fs::write(&file, b"not a socket").expect("regular file");
    let endpoint = unix(&file);
    serve_must_fail(&[&unix(&a), &endpoint], &endpoint);
    assert_eq!(entries(&dir), ["file.sock"]);
    assert_eq!(fs::read(&file).expect("kept"), b"not a socket");
}

#[test]
fn the_same_path_twice_is_refused_and_leaves_no_file() {
    let dir = support::ScratchDir::new("twice");
    let path = dir.join("s.sock");
    let endpoint = unix(&path);
    serve_must_fail(&[&endpoint, &endpoint], &endpoint);
    assert!(entries(&dir).is_empty(), "left behind: {:?}", entries(&dir));
}
