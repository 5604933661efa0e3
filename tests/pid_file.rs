//! `--pid-file` as root in a directory others may write to: never written
//! through a symlink, never through a file the daemon did not create,
//! never blocked on a FIFO; a symlink or FIFO at the path is a startup
//! error that leaves what it points at untouched.

mod support;

use std::io::{Read, Write};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

use support::{bin, temp_dir, wait_ready, WAIT};

/// Runs `serve ARGS` expecting it to fail at start-up: its status and
/// stderr. A daemon still running after `WAIT` (it started, or hangs)
/// fails the test.
fn start_failure(args: &[&str]) -> (ExitStatus, String) {
    let mut child = Command::new(bin())
        .arg("serve")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let status = support::wait_bounded(&mut child, WAIT, format_args!("serve {args:?}"));
    let mut stderr = String::new();
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr);
    (status, stderr)
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().expect("utf-8")).expect("no NUL");
    // SAFETY: mkfifo reads the NUL-terminated path we own.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o666) };
    assert_eq!(rc, 0, "mkfifo: {}", std::io::Error::last_os_error());
}

#[test]
fn a_symlink_or_fifo_at_the_pid_path_is_a_startup_error_and_nothing_is_written() {
    let dir = temp_dir("pid-planted");
    let victim = dir.join("victim");
    std::fs::write(&victim, "precious\n").expect("victim");
    let link = dir.join("link.pid");
    symlink(&victim, &link).expect("symlink");
    let fifo = dir.join("fifo.pid");
    mkfifo(&fifo);
    for (path, what) in [(&link, "symbolic link"), (&fifo, "FIFO")] {
        let arg = path.display().to_string();
        let (status, stderr) = start_failure(&["tcp://127.0.0.1:0", "--pid-file", &arg]);
        assert_eq!(status.code(), Some(1), "{what}: {stderr}");
        let line = support::assert_one_error_line(&stderr, &["pid file", &arg]);
        assert!(line.contains(what), "{line}");
    }
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "precious\n"
    );
    let left: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(left.len(), 3, "a temporary was left: {left:?}");
}

#[test]
fn a_symlink_planted_at_a_guessable_temporary_name_is_never_written_through() {
    let dir = temp_dir("pid-temp");
    let victim = dir.join("victim");
    std::fs::write(&victim, "precious\n").expect("victim");
    let pid_file = dir.join("echoplex.pid");
    // The shell waits for our word, then becomes the daemon (same pid),
    // so we know the pid it will have and plant a link under every name
    // a pid-derived temporary could take.
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg("read go; exec \"$0\" serve tcp://127.0.0.1:0 --pid-file \"$1\"")
        .arg(bin())
        .arg(&pid_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    for name in [
        format!(".echoplex.pid.{pid}.tmp"),
        format!("echoplex.pid.{pid}.tmp"),
        format!(".echoplex.pid.{pid}"),
        "echoplex.pid.tmp".to_string(),
    ] {
        symlink(&victim, dir.join(name)).expect("plant");
    }
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"go\n").expect("go");
    drop(stdin);
    let ready = wait_ready(&mut child);
    let status = {
        let _ = support::kill(pid as i32, libc::SIGTERM);
        child.wait().expect("wait")
    };
    assert!(ready.is_some(), "the daemon did not start");
    assert!(status.success());
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "precious\n",
        "root wrote through a planted symlink"
    );
}
