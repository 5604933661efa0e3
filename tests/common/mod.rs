//! Shared by the integration tests: start the real `echoplex serve`, wait
//! for its `ready` line, stop it with SIGTERM when dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_echoplex")
}

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(10);

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

/// A running `echoplex serve`.
pub struct Daemon {
    pub child: Child,
    /// The endpoints from the `listening` lines, in order.
    pub endpoints: Vec<String>,
    stderr: Option<thread::JoinHandle<String>>,
}

impl Daemon {
    /// Starts `echoplex serve ARGS...` and waits for `ready`.
    pub fn start(args: &[&str]) -> Daemon {
        Self::start_with(args, |_| {})
    }

    /// Like `start`, with a hook to adjust the command (env, pre_exec).
    pub fn start_with(args: &[&str], adjust: impl FnOnce(&mut Command)) -> Daemon {
        let mut command = Command::new(bin());
        command
            .arg("serve")
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        adjust(&mut command);
        let mut child = command.spawn().expect("spawn echoplex serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut endpoints = Vec::new();
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line == "ready" => break,
                Ok(line) => {
                    let endpoint = line
                        .strip_prefix("listening ")
                        .unwrap_or_else(|| panic!("unexpected stdout line: {line:?}"));
                    endpoints.push(endpoint.to_string());
                }
                Err(_) => {
                    let _ = child.kill();
                    let mut err = String::new();
                    if let Some(mut stderr) = child.stderr.take() {
                        let _ = stderr.read_to_string(&mut err);
                    }
                    panic!("echoplex serve {args:?} never became ready; stderr:\n{err}");
                }
            }
        }
        // Drain stderr as it comes: a daemon that logs more than a pipe
        // holds would otherwise block on its own log.
        let stderr = child.stderr.take().map(|mut stderr| {
            thread::spawn(move || {
                let mut text = String::new();
                let _ = stderr.read_to_string(&mut text);
                text
            })
        });
        Daemon {
            child,
            endpoints,
            stderr,
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

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends a signal to the daemon.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the pid of a child we own.
        unsafe {
            libc::kill(self.pid(), signal);
        }
    }

    /// Sends SIGTERM and waits (bounded) for the exit; returns status and stderr.
    pub fn stop(mut self) -> (ExitStatus, String) {
        self.signal(libc::SIGTERM);
        self.wait_exit()
    }

    /// Waits (bounded) for the daemon to exit; returns status and stderr.
    pub fn wait_exit(&mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("echoplex did not exit within {WAIT:?}");
            }
            thread::sleep(Duration::from_millis(10));
        };
        let err = self
            .stderr
            .take()
            .and_then(|reader| reader.join().ok())
            .unwrap_or_default();
        (status, err)
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
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("echoplex {args:?} did not finish within 30 s");
        }
        thread::sleep(Duration::from_millis(5));
    };
    (
        status,
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    )
}
