//! Readiness notification: a NOTIFY_SOCKET listener, as systemd's, hears
//! READY=1 with the main pid, then STOPPING=1 on SIGTERM.

mod support;

use std::process::Command;

use support::{bin, next_notification, notify_listener, signal_pid, Daemon};

#[test]
fn a_notify_listener_sees_ready_then_stopping() {
    let (listener, address) = notify_listener("notify");
    let mut command = Command::new(bin());
    command
        .args(["serve", "tcp://127.0.0.1:0"])
        .env("NOTIFY_SOCKET", &address);
    let mut daemon = Daemon::spawn_logged(command);
    daemon.ready();
    let ready = next_notification(&listener);
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(
        ready
            .lines()
            .any(|l| l == format!("MAINPID={}", daemon.pid())),
        "{ready:?}"
    );
    assert!(ready.lines().any(|l| l.starts_with("STATUS=")), "{ready:?}");
    signal_pid(daemon.pid(), libc::SIGTERM);
    let stopping = next_notification(&listener);
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    assert!(daemon.wait().success());
}
