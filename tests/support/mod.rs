//! The one harness of the integration tests: start the real `echoplex
//! serve` and wait for its `ready` line (`Daemon`, or `Watched` when every
//! late stdout line and all of stderr matter), run a command to completion
//! (`run`), an upgrade's successor by pid (`Successor`, `read_pid`,
//! `alive`), a NOTIFY_SOCKET listener as systemd's (`notify_listener`),
//! endpoints parsed from `listening` lines, clients for every kind,
//! a byte pattern that catches loss, duplication and reordering, and the
//! kernel's view of socket queues (for "what has the server really read?").
#![allow(dead_code)]

pub mod offline;
pub mod refserver;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Processes: the binary, scratch directories, a daemon, a command run to the end

/// The binary under test: the one cargo built, or `ECHOPLEX_BIN=path` to
/// run a suite against another build (an older commit, a release binary).
/// The one place a test picks the binary.
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| match std::env::var("ECHOPLEX_BIN") {
        Ok(path) if !path.is_empty() => path,
        _ => env!("CARGO_BIN_EXE_echoplex").to_string(),
    })
}

/// Whether `tool` is on PATH; a missing tool fails under `scripts/test-all`
/// (ECHOPLEX_REQUIRE_TOOLS) and is a visible skip otherwise.
pub fn have_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    required(tool, found)
}

/// Whether python3 can import `module` (websockets, hdrhistogram), by the
/// same rule as [`have_tool`].
pub fn have_python_module(module: &str) -> bool {
    let found = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    required(&format!("python3 {module}"), found)
}

/// The one rule for what a test needs: missing under `scripts/test-all`
/// (ECHOPLEX_REQUIRE_TOOLS) fails, elsewhere it is a visible skip.
fn required(what: &str, found: bool) -> bool {
    if !found {
        assert!(
            std::env::var_os("ECHOPLEX_REQUIRE_TOOLS").is_none(),
            "{what} is missing (scripts/test-all installs it)"
        );
        eprintln!("skipped: {what} is not installed");
    }
    found
}

/// Polls `child` until it exits or `limit` passes: its status, or `None`
/// while it still runs (the caller decides what to do with it).
pub fn exit_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// The exit status of `child`, which must end within `limit`: past it the
/// child is killed and reaped, and the test fails naming `what`.
pub fn wait_bounded(
    child: &mut Child,
    limit: Duration,
    what: impl std::fmt::Display,
) -> ExitStatus {
    exit_within(child, limit).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{what} did not finish within {limit:?}")
    })
}

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// How long a daemon may take to say `ready`: starting a debug build on a
/// loaded machine (the whole suite running, a build beside it) once took
/// about 10 s before the daemon's own clock began.
pub const STARTUP: Duration = Duration::from_secs(60);

/// A fresh directory for socket files, unique per test and process, and
/// removed with everything in it when dropped.
pub fn temp_dir(tag: &str) -> TempDir {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "echoplex-test-{}-{}-{tag}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    TempDir(dir)
}

/// See `temp_dir`.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Same as `temp_dir(tag)`.
    pub fn new(tag: &str) -> TempDir {
        temp_dir(tag)
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for TempDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `echoplex serve`: the harness's one daemon runner. Its
/// stdout lines come through a channel (the `listening`/`ready` block,
/// and any line after it: an upgrade's successor inherits the pipe and
/// prints its own block), and all of its stderr is read as it comes, so a
/// daemon that logs more than a pipe holds never blocks on its log.
pub struct Daemon {
    pub child: Child,
    /// The endpoints from the last `listening` block, in order.
    pub endpoints: Vec<String>,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<JoinHandle<()>>,
}

/// Reads a just-spawned `serve`'s stdout (piped) until `ready`, within
/// STARTUP, and returns the endpoints of its `listening` lines. On a
/// timeout the daemon is killed and None returned, so the caller can say
/// why with what it holds (stderr). A thread keeps draining stdout.
pub fn wait_ready(child: &mut Child) -> Option<Vec<String>> {
    let lines = read_lines(child.stdout.take().expect("stdout"));
    match next_ready_block(&lines) {
        Ok(endpoints) => Some(endpoints),
        Err(_) => {
            let _ = child.kill();
            None
        }
    }
}

fn read_lines(stdout: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The `listening` endpoints up to the next `ready` line, within STARTUP;
/// Err says what came instead.
fn next_ready_block(lines: &mpsc::Receiver<String>) -> Result<Vec<String>, String> {
    let mut endpoints = Vec::new();
    let deadline = Instant::now() + STARTUP;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line == "ready" => return Ok(endpoints),
            Ok(line) => match line.strip_prefix("listening ") {
                Some(endpoint) => endpoints.push(endpoint.to_string()),
                None => panic!("unexpected stdout line: {line:?}"),
            },
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(format!("no ready line within {STARTUP:?}"))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err("stdout closed before ready".to_string())
            }
        }
    }
}

impl Daemon {
    /// Starts `echoplex serve ARGS...` and waits for `ready`.
    pub fn start(args: &[&str]) -> Daemon {
        Self::start_with(args, |_| {})
    }

    /// Like `start`, with a hook to adjust the command (env, pre_exec).
    pub fn start_with(args: &[&str], adjust: impl FnOnce(&mut Command)) -> Daemon {
        let mut command = Command::new(bin());
        command.arg("serve");
        // ECHOPLEX_TEST_REACTORS=N runs every daemon with N reactors
        // (scripts/test-all runs the stream and datagram suites with 2 too).
        if let Ok(reactors) = std::env::var("ECHOPLEX_TEST_REACTORS") {
            if !reactors.is_empty() && !args.contains(&"--reactors") {
                command.args(["--reactors", &reactors]);
            }
        }
        command.args(args).env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
        adjust(&mut command);
        let mut daemon = Daemon::spawn(command);
        daemon.ready();
        daemon
    }

    /// `echoplex serve ARGS...` with these environment variables and
    /// nothing of the harness's own (no RUST_LOG, no reactor count):
    /// for tests that read the daemon's logs as a user's shell would.
    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut command = Command::new(bin());
        command.arg("serve").args(args).envs(env.iter().copied());
        let mut daemon = Daemon::spawn(command);
        daemon.ready();
        daemon
    }

    /// Like [`Daemon::spawn`], with info logs (the upgrade's and the
    /// shutdown's lines some tests read).
    pub fn spawn_logged(mut command: Command) -> Daemon {
        command.env("RUST_LOG", "info");
        Daemon::spawn(command)
    }

    /// Spawns `command` (an `echoplex serve`, maybe behind a wrapper such
    /// as systemd-socket-activate) with stdout and stderr read as above;
    /// does not wait for `ready` (see [`Daemon::ready`]).
    pub fn spawn(mut command: Command) -> Daemon {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn echoplex serve");
        let lines = read_lines(child.stdout.take().expect("stdout"));
        let mut err = child.stderr.take().expect("stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let stderr_reader = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Daemon {
            child,
            endpoints: Vec::new(),
            lines,
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    /// Waits (STARTUP) for the next `listening`... `ready` block on stdout
    /// and returns (and keeps) its endpoints; kills the daemon and fails
    /// the test with its stderr if none comes.
    pub fn ready(&mut self) -> Vec<String> {
        match next_ready_block(&self.lines) {
            Ok(endpoints) => {
                self.endpoints = endpoints.clone();
                endpoints
            }
            Err(why) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.wait_for_stderr();
                panic!("echoplex serve: {why}; stderr:\n{}", self.stderr());
            }
        }
    }

    /// The endpoints of the next `listening`... `ready` block (an
    /// upgrade's successor's), without keeping them; fails the test if none
    /// comes within STARTUP.
    pub fn next_ready(&self) -> Vec<String> {
        next_ready_block(&self.lines).unwrap_or_else(|why| panic!("echoplex serve: {why}"))
    }

    /// The text of the first endpoint with this scheme.
    pub fn endpoint_text(&self, scheme: &str) -> String {
        self.endpoints
            .iter()
            .find(|e| e.split_once(':').is_some_and(|(s, _)| s == scheme))
            .unwrap_or_else(|| panic!("no {scheme} endpoint in {:?}", self.endpoints))
            .clone()
    }

    /// Everything the daemon (and any successor) wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits (bounded) until stderr is closed by every writer.
    fn wait_for_stderr(&mut self) {
        self.wait_for_stderr_within(WAIT);
    }

    /// As `wait_for_stderr`, for at most `bound`; a reader still running
    /// (a successor process may hold stderr open) is left to go on.
    fn wait_for_stderr_within(&mut self, bound: Duration) {
        let deadline = Instant::now() + bound;
        if let Some(reader) = &self.stderr_reader {
            while !reader.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            if reader.is_finished() {
                if let Some(reader) = self.stderr_reader.take() {
                    let _ = reader.join();
                }
            }
        }
    }

    /// The `listening` endpoint whose text starts with `scheme`.
    pub fn endpoint(&self, scheme: &str) -> &str {
        self.endpoints
            .iter()
            .find(|e| e.starts_with(scheme))
            .unwrap_or_else(|| panic!("no {scheme} endpoint in {:?}", self.endpoints))
    }

    /// HOST:PORT of the first endpoint with this scheme.
    pub fn addr(&self, scheme: &str) -> std::net::SocketAddr {
        let endpoint = self.endpoint(scheme);
        let hostport = endpoint.split_once("://").expect("network endpoint").1;
        hostport.parse().expect("socket address")
    }

    /// The first endpoint with this scheme (`tcp`, `unix-dgram`, ...).
    pub fn target(&self, scheme: &str) -> Target {
        targets(&self.endpoints, scheme)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no {scheme} endpoint in {:?}", self.endpoints))
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends a signal to the daemon (nothing if it is gone already).
    pub fn signal(&self, signal: i32) {
        let _ = kill(self.pid(), signal);
    }

    /// True while the daemon runs.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Waits (bounded) for our own child to exit; its status.
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // The reader thread may not have taken the last lines yet:
                // a caller reads stderr next (a successor process that
                // holds stderr open must not hold this up for long).
                self.wait_for_stderr_within(Duration::from_secs(2));
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "echoplex did not exit within {WAIT:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends SIGTERM and waits (bounded) for the exit; returns status and stderr.
    pub fn stop(mut self) -> (ExitStatus, String) {
        self.signal(libc::SIGTERM);
        self.wait_exit()
    }

    /// Waits (bounded) for the daemon to exit; returns status and stderr.
    pub fn wait_exit(&mut self) -> (ExitStatus, String) {
        let status = self.wait();
        self.wait_for_stderr();
        (status, self.stderr())
    }

    /// Waits (bounded) for the exit; status, stdout lines printed after
    /// the last `ready`, and all of stderr.
    pub fn exit(&mut self) -> Exit {
        let status = self.wait();
        let mut late_stdout = Vec::new();
        // The reader thread ends at end of file, which the exit brings.
        while let Ok(line) = self.lines.recv_timeout(IO_TIMEOUT) {
            late_stdout.push(line);
        }
        self.wait_for_stderr();
        Exit {
            status,
            late_stdout,
            stderr: self.stderr(),
        }
    }

    /// The daemon's resident memory, from /proc.
    pub fn rss_kib(&self) -> u64 {
        proc_status_field(self.pid(), "VmRSS:")
    }

    /// The daemon's user+system CPU time in clock ticks, from /proc.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("stat");
        // Fields after the parenthesised command name: utime is 14th, stime 15th overall.
        let after = &stat[stat.rfind(')').expect("comm") + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// Processes by pid: an upgrade's successor is not our child

/// kill(2): `signal` to `pid`, a daemon this test started (directly or by
/// an upgrade).
pub fn kill(pid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: kill(2) has no memory effects; the pid is a daemon this test
    // started (a child not yet reaped, or its successor).
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `signal` to `pid`, which must reach it.
pub fn signal_pid(pid: i32, signal: i32) {
    if let Err(err) = kill(pid, signal) {
        panic!("kill {pid}: {err}");
    }
}

/// True while `pid` runs (a zombie waiting for its reaper has ended).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rfind(')')
            .and_then(|at| stat[at + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// The pid a `--pid-file` names, if it names one.
pub fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Stops a daemon we did not fork ourselves (an upgrade's successor) when
/// the test ends, however it ends: SIGKILL, then a bounded wait until it
/// is gone.
pub struct Successor(pub i32);

impl Drop for Successor {
    fn drop(&mut self) {
        if self.0 > 0 && alive(self.0) {
            let _ = kill(self.0, libc::SIGKILL);
            let deadline = Instant::now() + WAIT;
            while alive(self.0) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Readiness notification: a NOTIFY_SOCKET listener, as systemd's

/// An abstract Unix datagram socket to pass as `NOTIFY_SOCKET` (the
/// returned `@name`), with bounded reads.
pub fn notify_listener(tag: &str) -> (UnixDatagram, String) {
    let name = unique_name(tag);
    let socket =
        UnixDatagram::bind_addr(&UnixAddr::from_abstract_name(name.as_bytes()).expect("addr"))
            .expect("bind the notify socket");
    socket.set_read_timeout(Some(WAIT)).expect("timeout");
    (socket, format!("@{name}"))
}

/// The next notification (bounded by the socket's read timeout).
pub fn next_notification(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 1024];
    let n = socket.recv(&mut buf).expect("a notification in time");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The next notification that has `line` among its lines (skipping plain
/// STATUS= updates); each wait is bounded by the socket's read timeout.
pub fn notification_with(socket: &UnixDatagram, line: &str) -> String {
    for _ in 0..16 {
        let message = next_notification(socket);
        if message.lines().any(|l| l == line) {
            return message;
        }
    }
    panic!("no notification with {line:?}");
}

fn proc_status_field(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Runs `echoplex ARGS...` to completion (bounded); returns status, stdout, stderr.
pub fn run(args: &[&str]) -> (ExitStatus, String, String) {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn echoplex");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let status = wait_bounded(
        &mut child,
        Duration::from_secs(30),
        format_args!("echoplex {args:?}"),
    );
    (
        status,
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    )
}

/// What a bounded run measured of itself.
pub struct Measured {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
    /// Its peak resident set (the kernel's `ru_maxrss`), KiB.
    pub max_rss_kib: u64,
    /// From spawn to exit.
    pub elapsed: Duration,
}

/// Runs `echoplex ARGS...` to completion within `limit` (killed after),
/// its address space capped at `address_space` bytes (so a build that
/// would take gigabytes fails fast instead of taking the machine), and
/// reports its own peak RSS from `wait4`, not a sample.
pub fn run_measured(args: &[&str], address_space: u64, limit: Duration) -> Measured {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let mut command = Command::new(bin());
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let cap = libc::rlimit {
        rlim_cur: address_space as libc::rlim_t,
        rlim_max: address_space as libc::rlim_t,
    };
    // SAFETY: between fork and exec only setrlimit, which is
    // async-signal-safe, runs; it touches no memory of the parent.
    unsafe {
        command.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_AS, &cap) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let started = Instant::now();
    let mut child = command.spawn().expect("spawn echoplex");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let pid = child.id() as libc::pid_t;
    let mut raw = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4 on our own child, with pointers to our locals.
        let got = unsafe { libc::wait4(pid, &mut raw, libc::WNOHANG, &mut usage) };
        if got == pid {
            break;
        }
        assert!(got == 0, "wait4: {}", io::Error::last_os_error());
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("echoplex {args:?} did not finish within {limit:?}");
        }
        thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed();
    // Reaped by wait4: the Child must not wait again.
    std::mem::forget(child);
    Measured {
        status: ExitStatus::from_raw(raw),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        max_rss_kib: usage.ru_maxrss as u64,
        elapsed,
    }
}

/// Every single read, write or wait in these tests gives up after this.
pub const IO_TIMEOUT: Duration = WAIT;

// ---------------------------------------------------------------------------
// The byte pattern

/// Byte `index` of an endless pattern in which every shift, drop or
/// duplicate of a chunk shows (a hash of the index, not a short cycle).
pub fn pattern_byte(index: u64) -> u8 {
    let mixed = (index ^ (index >> 17)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 56) as u8
}

/// `len` bytes of the pattern from `start`.
pub fn pattern(start: u64, len: usize) -> Vec<u8> {
    (start..start + len as u64).map(pattern_byte).collect()
}

/// Checks a stream of bytes against the pattern, chunk by chunk.
#[derive(Debug, Default)]
pub struct PatternCheck {
    next: u64,
}

impl PatternCheck {
    /// Checks `chunk`, the bytes that follow everything fed so far.
    pub fn feed(&mut self, chunk: &[u8]) {
        if let Some(at) = chunk
            .iter()
            .enumerate()
            .position(|(i, &byte)| byte != pattern_byte(self.next + i as u64))
        {
            panic!(
                "echoed byte {} differs from the byte sent at that offset",
                self.next + at as u64
            );
        }
        self.next += chunk.len() as u64;
    }

    /// Bytes checked so far.
    pub fn seen(&self) -> u64 {
        self.next
    }
}

// ---------------------------------------------------------------------------
// Endpoints and stream clients

/// Where a `listening` line says an endpoint is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Inet(SocketAddr),
    Path(PathBuf),
    Abstract(String),
}

impl Target {
    /// Parses the text of a `listening` line (without `listening `).
    pub fn of(endpoint: &str) -> Target {
        // Every network scheme (tcp://, udp://, metrics://, binary://, ...).
        if let Some((_, hostport)) = endpoint.split_once("://") {
            let addr = hostport
                .parse()
                .unwrap_or_else(|_| panic!("{endpoint:?} has no HOST:PORT address"));
            return Target::Inet(addr);
        }
        let path = endpoint
            .strip_prefix("unix-dgram:")
            .or_else(|| endpoint.strip_prefix("unix:"))
            .unwrap_or_else(|| panic!("unexpected endpoint {endpoint:?}"));
        match path.strip_prefix('@') {
            Some(name) => Target::Abstract(name.to_string()),
            None => Target::Path(PathBuf::from(path)),
        }
    }

    /// The IP address and port of a network endpoint.
    pub fn inet(&self) -> SocketAddr {
        match self {
            Target::Inet(addr) => *addr,
            other => panic!("{other:?} is not a network endpoint"),
        }
    }

    /// The Unix-domain address of a path or abstract endpoint.
    pub fn unix_addr(&self) -> UnixAddr {
        match self {
            Target::Path(path) => UnixAddr::from_pathname(path).expect("unix path address"),
            Target::Abstract(name) => {
                UnixAddr::from_abstract_name(name.as_bytes()).expect("abstract address")
            }
            Target::Inet(addr) => panic!("{addr} is not a Unix-domain endpoint"),
        }
    }

    /// A stream connection to this endpoint, with bounded reads and writes.
    pub fn connect(&self) -> Box<dyn Conn> {
        let conn: Box<dyn Conn> = match self {
            Target::Inet(addr) => {
                let stream = TcpStream::connect(addr).expect("connect over TCP");
                stream.set_nodelay(true).expect("TCP_NODELAY");
                Box::new(stream)
            }
            _ => Box::new(UnixStream::connect_addr(&self.unix_addr()).expect("connect unix")),
        };
        conn.set_timeouts(Some(IO_TIMEOUT), Some(IO_TIMEOUT));
        conn
    }
}

/// The endpoint texts a daemon printed, parsed.
pub fn targets(endpoints: &[String], scheme: &str) -> Vec<Target> {
    endpoints
        .iter()
        .filter(|e| e.split_once(':').is_some_and(|(s, _)| s == scheme))
        .map(|e| Target::of(e))
        .collect()
}

/// A byte stream to the daemon: TCP or Unix.
pub trait Conn: Read + Write + Send + 'static {
    /// A second handle on the same connection (for a reader thread).
    fn handle(&self) -> Box<dyn Conn>;
    /// Shuts down our sending side (half-close).
    fn shutdown_write(&self);
    /// Read and write timeouts.
    fn set_timeouts(&self, read: Option<Duration>, write: Option<Duration>);
    /// Non-blocking mode on or off.
    fn set_nonblocking(&self, on: bool);
}

impl Conn for TcpStream {
    fn handle(&self) -> Box<dyn Conn> {
        Box::new(self.try_clone().expect("clone TCP stream"))
    }
    fn shutdown_write(&self) {
        self.shutdown(Shutdown::Write).expect("shutdown(Write)");
    }
    fn set_timeouts(&self, read: Option<Duration>, write: Option<Duration>) {
        self.set_read_timeout(read).expect("read timeout");
        self.set_write_timeout(write).expect("write timeout");
    }
    fn set_nonblocking(&self, on: bool) {
        TcpStream::set_nonblocking(self, on).expect("non-blocking");
    }
}

impl Conn for UnixStream {
    fn handle(&self) -> Box<dyn Conn> {
        Box::new(self.try_clone().expect("clone unix stream"))
    }
    fn shutdown_write(&self) {
        self.shutdown(Shutdown::Write).expect("shutdown(Write)");
    }
    fn set_timeouts(&self, read: Option<Duration>, write: Option<Duration>) {
        self.set_read_timeout(read).expect("read timeout");
        self.set_write_timeout(write).expect("write timeout");
    }
    fn set_nonblocking(&self, on: bool) {
        UnixStream::set_nonblocking(self, on).expect("non-blocking");
    }
}

/// Sends `message` and asserts the same bytes come back.
pub fn round_trip(conn: &mut dyn Conn, message: &[u8]) {
    conn.write_all(message).expect("send to the echo server");
    let echoed = read_exactly(conn, message.len());
    assert_eq!(echoed, message, "the echo differs from what was sent");
}

/// Reads exactly `len` bytes (bounded by the read timeout).
pub fn read_exactly(conn: &mut dyn Conn, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    conn.read_exact(&mut buf)
        .unwrap_or_else(|err| panic!("reading {len} echoed bytes: {err}"));
    buf
}

/// How a connection ended, seen from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// A clean end of stream.
    Eof,
    /// The server reset the connection.
    Reset,
}

/// Reads until the server closes; the bytes, and how it closed. A read
/// timeout fails the test.
pub fn read_until_closed(conn: &mut dyn Conn) -> (Vec<u8>, Ending) {
    let mut got = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return (got, Ending::Eof),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) if err.kind() == io::ErrorKind::ConnectionReset => {
                return (got, Ending::Reset)
            }
            Err(err) => panic!(
                "waiting for the server to close: {err} (after {} bytes)",
                got.len()
            ),
        }
    }
}

/// Reads the pattern from `start` until the server closes, checking every
/// byte; returns how many bytes came and how it closed.
pub fn read_pattern_until_closed(conn: &mut dyn Conn) -> (u64, Ending) {
    let mut check = PatternCheck::default();
    let mut buf = vec![0; 64 * 1024];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return (check.seen(), Ending::Eof),
            Ok(n) => check.feed(&buf[..n]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) if err.kind() == io::ErrorKind::ConnectionReset => {
                return (check.seen(), Ending::Reset)
            }
            Err(err) => panic!("reading the echo: {err} after {} bytes", check.seen()),
        }
    }
}

/// Reads exactly `total` bytes of the pattern, checking every byte.
pub fn read_pattern(conn: &mut dyn Conn, total: u64) {
    let mut check = PatternCheck::default();
    let mut buf = vec![0; 64 * 1024];
    while check.seen() < total {
        let want = buf.len().min((total - check.seen()) as usize);
        match conn.read(&mut buf[..want]) {
            Ok(0) => panic!("end of stream after {} of {total} bytes", check.seen()),
            Ok(n) => check.feed(&buf[..n]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => panic!("reading the echo: {err} after {} of {total}", check.seen()),
        }
    }
}

/// A thread that reads exactly `total` bytes of the pattern from `conn`.
pub fn spawn_pattern_reader(mut conn: Box<dyn Conn>, total: u64) -> JoinHandle<()> {
    thread::spawn(move || read_pattern(&mut *conn, total))
}

/// Joins a test thread, re-raising its panic (with its message) here.
pub fn join<T>(handle: JoinHandle<T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Writes `total` bytes of the pattern in pieces whose sizes `piece` picks
/// (called with the piece number).
pub fn write_pattern(conn: &mut dyn Conn, total: u64, mut piece: impl FnMut(u64) -> usize) {
    let mut sent = 0u64;
    let mut number = 0;
    while sent < total {
        let len = piece(number).clamp(1, (total - sent) as usize);
        conn.write_all(&pattern(sent, len))
            .unwrap_or_else(|err| panic!("writing at offset {sent}: {err}"));
        sent += len as u64;
        number += 1;
    }
}

/// Writes the pattern until the connection stops taking bytes: a write
/// that times out (`stall`) after the socket buffers filled. Returns the
/// bytes the kernel accepted. Panics if more than `cap` bytes go through:
/// the server never pushed back.
pub fn write_until_stalled(conn: &mut dyn Conn, stall: Duration, cap: u64) -> u64 {
    conn.set_timeouts(Some(IO_TIMEOUT), Some(stall));
    let chunk = 64 * 1024;
    let mut sent = 0u64;
    let mut block = pattern(0, chunk);
    while sent <= cap {
        let mut at = 0;
        while at < block.len() {
            match conn.write(&block[at..]) {
                Ok(0) => panic!("write returned 0 after {sent} bytes"),
                Ok(n) => {
                    at += n;
                    sent += n as u64;
                }
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    conn.set_timeouts(Some(IO_TIMEOUT), Some(IO_TIMEOUT));
                    return sent;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => panic!("writing after {sent} bytes: {err}"),
            }
        }
        block = pattern(sent, chunk);
    }
    panic!("the server took {sent} bytes from a client that never reads: no backpressure");
}

// ---------------------------------------------------------------------------
// Datagram clients

/// A UDP socket on the loopback of `server`'s family, with bounded waits.
pub fn udp_client(server: SocketAddr) -> UdpSocket {
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::LOCALHOST, 0).into()
    } else {
        (std::net::Ipv6Addr::LOCALHOST, 0).into()
    };
    let socket = UdpSocket::bind(local).expect("bind UDP client");
    socket.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    socket
}

/// Sends `datagram` to `server` and asserts the reply is the same bytes,
/// from the server's address.
pub fn udp_round_trip(socket: &UdpSocket, server: SocketAddr, datagram: &[u8]) {
    socket.send_to(datagram, server).expect("send UDP datagram");
    let mut buf = vec![0; 70_000];
    let (n, from) = socket.recv_from(&mut buf).expect("UDP echo");
    assert_eq!(from, server, "the reply came from another address");
    assert_eq!(n, datagram.len(), "the echoed datagram has another length");
    assert!(buf[..n] == *datagram, "the echoed datagram differs");
}

/// A Unix datagram client bound to `local` (a path or an abstract name).
pub fn unix_dgram_client(local: &Target) -> UnixDatagram {
    let socket = UnixDatagram::bind_addr(&local.unix_addr()).expect("bind unix-dgram client");
    socket.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    socket
}

/// Sends `datagram` to `server` and asserts the reply is the same bytes.
pub fn unix_dgram_round_trip(socket: &UnixDatagram, server: &Target, datagram: &[u8]) {
    socket
        .send_to_addr(datagram, &server.unix_addr())
        .expect("send unix datagram");
    let mut buf = vec![0; 300_000];
    let n = socket.recv(&mut buf).expect("unix-dgram echo");
    assert_eq!(n, datagram.len(), "the echoed datagram has another length");
    assert!(buf[..n] == *datagram, "the echoed datagram differs");
}

// ---------------------------------------------------------------------------
// Names, waits, files

/// A fresh directory removed again when dropped.
pub type ScratchDir = TempDir;

/// An abstract-namespace name no other test or run uses.
pub fn unique_name(tag: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!(
        "echoplex-test-{}-{}-{tag}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `condition` until it holds; fails the test after `IO_TIMEOUT`.
/// For states no readiness line announces (kernel queues, files).
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + IO_TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// A TCP port on 127.0.0.1 that is taken (by the returned listener).
pub fn taken_tcp_port() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind a listener to occupy a port")
}

/// A TCP port on 127.0.0.1 that was free a moment ago (for a server
/// that is not ours and cannot be given port 0: nginx, HAProxy, podman).
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind a TCP listener to find a free port")
        .port()
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind a UDP socket to find a free port")
        .port()
}

/// A port on 127.0.0.1 that was free a moment ago for TCP and UDP both
/// (a port shared by a tcp:// and a udp:// endpoint).
pub fn free_tcp_udp_port() -> u16 {
    for _ in 0..100 {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a TCP listener");
        let port = tcp.local_addr().expect("local address").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both TCP and UDP in 100 tries");
}

/// Sets the child's RLIMIT_NOFILE (soft, hard) between fork and exec.
pub fn set_nofile(command: &mut Command, soft: u64, hard: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe; it runs in the child between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Runs `work` on a thread of its own inside a fresh network namespace
/// whose loopback is up (root only: `unshare(CLONE_NEWNET)` moves only the
/// calling thread). Every process it spawns is there too, so default
/// ports and the default multicast group cannot meet the machine's own
/// daemon. The namespace goes away with the thread and its children.
pub fn in_private_network<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let thread = thread::spawn(move || {
        // SAFETY: unshare affects only this thread, which ends after `work`.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWNET): {}",
            io::Error::last_os_error()
        );
        loopback_up();
        work()
    });
    match thread.join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// `ip link set lo up`, by ioctl (no iproute2 needed).
fn loopback_up() {
    let socket = UdpSocket::bind("0.0.0.0:0")
        .or_else(|_| UdpSocket::bind("[::]:0"))
        .expect("a socket for the interface ioctls");
    // SAFETY: ifreq is plain data; the ioctls read/write only that struct.
    unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        let fd = socket.as_raw_fd();
        assert_eq!(
            libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req),
            0,
            "SIOCGIFFLAGS lo"
        );
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        assert_eq!(
            libc::ioctl(fd, libc::SIOCSIFFLAGS, &req),
            0,
            "SIOCSIFFLAGS lo up"
        );
    }
}

/// A command's JSON output (bench --json, client http), parsed; the test
/// fails with the text if it is not JSON.
pub fn json_of(out: &str) -> serde_json::Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|err| panic!("{err}: {out}"))
}

/// `echoplex status --admin ADMIN --json`, parsed; panics if it fails.
pub fn status_json(admin: &Path) -> serde_json::Value {
    let (ok, out, err) = run(&[
        "status",
        "--admin",
        admin.to_str().expect("utf-8 path"),
        "--json",
    ]);
    assert!(ok.success(), "status failed: {err}");
    serde_json::from_str(&out).expect("status --json prints one JSON object")
}

// ---------------------------------------------------------------------------
// Error output

/// The stderr lines that are not `env_logger` records or clap's usage hint.
pub fn message_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .filter(|line| !is_log_record(line))
        .filter(|line| !line.starts_with("For more information, try '--help'"))
        .collect()
}

fn is_log_record(line: &str) -> bool {
    // `[2026-01-01T00:00:00Z INFO  echoplex::serve] ...`
    line.starts_with('[')
        && line
            .split_once(']')
            .is_some_and(|(head, _)| head.contains("Z "))
}

/// Asserts nothing in `stderr` looks like a panic or a backtrace.
pub fn assert_no_panic(stderr: &str) {
    for needle in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
        assert!(
            !stderr.contains(needle),
            "stderr shows a panic ({needle}):\n{stderr}"
        );
    }
}

/// Asserts a failed `serve` said exactly one thing on stderr, naming every
/// piece of `mentions`; returns that line.
pub fn assert_one_error_line<'a>(stderr: &'a str, mentions: &[&str]) -> &'a str {
    assert_no_panic(stderr);
    let lines = message_lines(stderr);
    assert_eq!(
        lines.len(),
        1,
        "expected one error line on stderr, got:\n{stderr}"
    );
    let line = lines[0];
    for mention in mentions {
        assert!(
            line.to_lowercase().contains(&mention.to_lowercase()),
            "the error line does not mention {mention:?}: {line}"
        );
    }
    line
}

// ---------------------------------------------------------------------------
// A daemon whose whole stdout and stderr we keep

/// How a `Watched` daemon ended.
#[derive(Debug)]
pub struct Exit {
    pub status: ExitStatus,
    /// Lines printed on stdout after `ready` (there should be none).
    pub late_stdout: Vec<String>,
    pub stderr: String,
}

/// A [`Daemon`] whose ending is judged whole: every stdout line after
/// `ready` and all of stderr (`Exit`). Started without the harness's
/// environment (as a user's shell would), with a signal that must reach it.
pub struct Watched(Daemon);

impl std::ops::Deref for Watched {
    type Target = Daemon;
    fn deref(&self) -> &Daemon {
        &self.0
    }
}

impl std::ops::DerefMut for Watched {
    fn deref_mut(&mut self) -> &mut Daemon {
        &mut self.0
    }
}

impl Watched {
    /// Starts `echoplex serve ARGS...` and waits (bounded) for `ready`.
    pub fn start(args: &[&str]) -> Watched {
        Self::start_env(args, &[])
    }

    /// Like `start`, with extra environment variables.
    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Watched {
        Watched(Daemon::start_env(args, env))
    }

    /// The `listening` endpoints up to the next `ready` line (bounded):
    /// those of an upgrade's successor, which shares our stdout.
    pub fn next_ready(&self) -> Vec<String> {
        self.0.next_ready()
    }

    /// Sends `signal`, which must reach the daemon.
    pub fn signal(&self, signal: i32) {
        signal_pid(self.pid(), signal);
    }

    /// Waits (bounded) for the daemon to exit on its own.
    pub fn wait_exit(&mut self) -> Exit {
        self.0.exit()
    }

    /// Sends `signal` and waits (bounded) for the exit.
    pub fn stop(mut self, signal: i32) -> Exit {
        self.signal(signal);
        self.wait_exit()
    }
}

/// Asserts a clean exit: status 0, nothing late on stdout, no panic.
pub fn assert_clean_exit(exit: &Exit) {
    assert!(
        exit.status.success(),
        "exit status {}; stderr:\n{}",
        exit.status,
        exit.stderr
    );
    assert!(
        exit.late_stdout.is_empty(),
        "stdout after ready: {:?}",
        exit.late_stdout
    );
    assert_no_panic(&exit.stderr);
}

// ---------------------------------------------------------------------------
// The kernel's socket queues

/// Bytes queued in a TCP socket, as /proc/net/tcp shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpQueues {
    /// Written by the owner and not yet acknowledged by the peer.
    pub unacked: u64,
    /// Received and not yet read by the owner.
    pub unread: u64,
    /// The TCP state (`TCP_CLOSE_WAIT`: the peer's FIN has come).
    pub state: u8,
}

/// /proc/net/tcp's state of a socket whose peer has sent its FIN.
pub const TCP_CLOSE_WAIT: u8 = 0x08;

/// The queues of the IPv4 TCP socket at `local` connected to `peer`.
pub fn tcp_queues(local: SocketAddr, peer: SocketAddr) -> Option<TcpQueues> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if parse_proc_addr(fields.get(1)?)? != local || parse_proc_addr(fields.get(2)?)? != peer {
            return None;
        }
        let (tx, rx) = fields.get(4)?.split_once(':')?;
        Some(TcpQueues {
            unacked: u64::from_str_radix(tx, 16).ok()?,
            unread: u64::from_str_radix(rx, 16).ok()?,
            state: u8::from_str_radix(fields.get(3)?, 16).ok()?,
        })
    })
}

/// `0100007F:9779` → 127.0.0.1:38777 (the address is the in-memory u32).
fn parse_proc_addr(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let ip = u32::from_str_radix(ip, 16).ok()?;
    let port = u16::from_str_radix(port, 16).ok()?;
    Some(SocketAddr::from((Ipv4Addr::from(ip.to_ne_bytes()), port)))
}

/// Bytes waiting to be read on a socket (FIONREAD).
pub fn unread_bytes(socket: &impl AsRawFd) -> usize {
    let mut count: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into `count`, which we own.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::FIONREAD, &mut count) };
    assert_eq!(rc, 0, "FIONREAD: {}", io::Error::last_os_error());
    count as usize
}
