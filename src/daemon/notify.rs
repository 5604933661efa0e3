//! Readiness notification, systemd's `sd_notify` protocol without
//! libsystemd: one datagram of `KEY=VALUE` lines to the Unix socket named
//! by `NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace).
//!
//! The daemon says `READY=1` once every endpoint is served, `STOPPING=1`
//! when a shutdown begins, `STATUS=...` for `systemctl status`, and
//! `MAINPID=` when an upgrade hands the sockets to a new process. Sends
//! never block the loop: the socket is non-blocking, and a full queue
//! only costs that one message (logged).

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// A notification socket: where to send, and an unbound datagram socket
/// to send from.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    shown: String,
}

/// The address in `NOTIFY_SOCKET` syntax: `@name` is abstract, anything
/// else a file-system path.
pub fn parse_address(text: &str) -> io::Result<SocketAddr> {
    let invalid =
        |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{text:?}: {why}"));
    match text.strip_prefix('@') {
        Some("") => Err(invalid("empty abstract name")),
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        None if text.is_empty() => Err(invalid("empty path")),
        // systemd only ever passes absolute paths; a relative one is
        // accepted as written (tests and hand-run listeners use them).
        None => SocketAddr::from_pathname(text),
    }
}

impl Notifier {
    /// A notifier for `address` (`/run/systemd/notify`, `@name`).
    pub fn new(address: &str) -> io::Result<Notifier> {
        let addr = parse_address(address)?;
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        Ok(Notifier {
            socket,
            addr,
            shown: address.to_string(),
        })
    }

    /// Sends one message (newline-separated assignments).
    pub fn send(&self, message: &str) -> io::Result<()> {
        self.socket
            .send_to_addr(message.as_bytes(), &self.addr)
            .map(drop)
    }

    /// The address as given.
    pub fn address(&self) -> &str {
        &self.shown
    }
}

/// The service manager's socket from `NOTIFY_SOCKET`. Made for each
/// message (a handful per run: ready, stopping, an upgrade's steps)
/// rather than kept in a process-wide static.
fn manager() -> Option<Notifier> {
    let address = std::env::var(NOTIFY_SOCKET).ok()?;
    match Notifier::new(&address) {
        Ok(notifier) => Some(notifier),
        Err(err) => {
            log::warn!("{NOTIFY_SOCKET}={address}: {err}; not notifying");
            None
        }
    }
}

/// Sends `message` to the service manager, if there is one. A failure is
/// logged, never fatal: the daemon serves with or without systemd.
pub fn notify(message: &str) {
    let Some(manager) = manager() else {
        return;
    };
    match manager.send(message) {
        Ok(()) => log::debug!(
            "notified {}: {}",
            manager.address(),
            message.replace('\n', " ")
        ),
        Err(err) => log::warn!(
            "could not notify {} ({}): {err}",
            manager.address(),
            message.replace('\n', " ")
        ),
    }
}

/// `READY=1` with a status line and our pid.
pub fn ready(status: &str) {
    notify(&format!(
        "READY=1\nSTATUS={}\nMAINPID={}",
        one_line(status),
        std::process::id()
    ));
}

/// `STOPPING=1` with a status line.
pub fn stopping(status: &str) {
    notify(&format!("STOPPING=1\nSTATUS={}", one_line(status)));
}

/// `STATUS=...` alone.
pub fn status(status: &str) {
    notify(&format!("STATUS={}", one_line(status)));
}

/// A status must stay one line: a newline would start a new assignment.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abstract_and_path_addresses() {
        let addr = parse_address("@echoplex-test").expect("abstract");
        assert_eq!(addr.as_abstract_name(), Some(&b"echoplex-test"[..]));
        let addr = parse_address("/run/systemd/notify").expect("path");
        assert_eq!(
            addr.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        assert!(parse_address("@").is_err());
        assert!(parse_address("").is_err());
    }

    #[test]
    fn a_message_arrives_whole_at_an_abstract_listener() {
        let name = format!("echoplex-notify-unit-{}", std::process::id());
        let listener = UnixDatagram::bind_addr(
            &SocketAddr::from_abstract_name(name.as_bytes()).expect("addr"),
        )
        .expect("bind");
        let notifier = Notifier::new(&format!("@{name}")).expect("notifier");
        notifier.send("READY=1\nSTATUS=up").expect("send");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=up");
        assert_eq!(one_line("a\nb"), "a b");
    }

    #[test]
    fn nobody_listening_is_an_error_not_a_hang() {
        let notifier =
            Notifier::new(&format!("@echoplex-nobody-{}", std::process::id())).expect("notifier");
        assert!(notifier.send("READY=1").is_err());
    }
}
