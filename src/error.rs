//! The one exit-code policy of every subcommand, and error text for people.
//!
//! A subcommand returns an [`Outcome`]: `Ok(exit)` when it has said all it
//! had to (a report, a summary), or `Err(Failure)` with the one line to
//! print; `main` prints that line as `echoplex: ...` and exits with the
//! code, ripgrep-style. [`EXIT_TABLE`] is what `echoplex --help` shows;
//! each subcommand's `--help` says what the codes mean for it.

use std::fmt;
use std::io;

/// An exit status from the one table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Exit {
    /// 0: done, as asked.
    Ok,
    /// 1: failed: an echo mismatch, verification errors, no reply to a
    /// ping, a failed look-up, `serve` could not start.
    Failed,
    /// 2: usage: a bad option, endpoint, endpoint option, `--format`, a
    /// message too large for the kind, a run refused by a pre-flight check.
    Usage,
    /// 3: unreachable: refused, no such socket, nothing ever answered.
    Unreachable,
    /// 4: a wait timed out.
    Timeout,
    /// 5: another I/O error.
    Io,
    /// 130: interrupted (128 + SIGINT, as shells report it).
    Interrupted,
}

impl Exit {
    /// Every status, in the order of the table.
    pub const ALL: [Exit; 7] = [
        Exit::Ok,
        Exit::Failed,
        Exit::Usage,
        Exit::Unreachable,
        Exit::Timeout,
        Exit::Io,
        Exit::Interrupted,
    ];

    /// The process exit code.
    pub const fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::Usage => 2,
            Exit::Unreachable => 3,
            Exit::Timeout => 4,
            Exit::Io => 5,
            Exit::Interrupted => 130,
        }
    }

    /// The status with this code; an unknown code counts as `Io` (5).
    pub fn from_code(code: u8) -> Exit {
        Exit::ALL
            .into_iter()
            .find(|exit| exit.code() == code)
            .unwrap_or(Exit::Io)
    }

    /// The class of an I/O error met while reaching or talking to a peer:
    /// refused, no such socket and unreachable networks are `Unreachable`,
    /// a timeout is `Timeout`, a message too large for the kind is `Usage`,
    /// an interrupted call is `Interrupted`, anything else `Io`.
    pub fn of_io(err: &io::Error) -> Exit {
        match err.raw_os_error() {
            Some(
                libc::ECONNREFUSED
                | libc::ENOENT
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::EHOSTDOWN
                | libc::ENETDOWN,
            ) => Exit::Unreachable,
            Some(libc::ETIMEDOUT) => Exit::Timeout,
            Some(libc::EMSGSIZE) => Exit::Usage,
            Some(libc::EINTR) => Exit::Interrupted,
            Some(_) => Exit::Io,
            None => match err.kind() {
                io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound => Exit::Unreachable,
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Exit::Timeout,
                io::ErrorKind::InvalidInput => Exit::Usage,
                io::ErrorKind::Interrupted => Exit::Interrupted,
                _ => Exit::Io,
            },
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit.code())
    }
}

/// The table as `echoplex --help` prints it (kept equal to [`Exit`] by a test).
pub const EXIT_TABLE: &str = "\
Exit status (every subcommand; its own --help says what each means for it):
  0    ok
  1    failed (echo mismatch, verification errors, no reply to ping, look-up \
failed, serve could not start)
  2    usage (bad option, endpoint, endpoint option, --format, a message too \
large for the kind, a run refused by a pre-flight check)
  3    unreachable (refused, no such socket, nothing ever answered)
  4    timeout
  5    other I/O error
  130  interrupted";

/// Why a command failed: the exit status and the one line to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The exit status.
    pub exit: Exit,
    /// The line, without the `echoplex: ` prefix.
    pub message: String,
}

impl Failure {
    /// A failure of class `exit`.
    pub fn new(exit: Exit, message: impl Into<String>) -> Failure {
        Failure {
            exit,
            message: message.into(),
        }
    }

    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::new(Exit::Usage, message)
    }

    /// A failure (exit 1).
    pub fn failed(message: impl Into<String>) -> Failure {
        Failure::new(Exit::Failed, message)
    }

    /// An I/O error, classed by [`Exit::of_io`], after `context: `.
    pub fn io(context: &str, err: &io::Error) -> Failure {
        Failure::new(Exit::of_io(err), format!("{context}: {}", describe(err)))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// What a subcommand returns.
pub type Outcome = Result<Exit, Failure>;

/// An I/O error in words for people: the system's text for its errno
/// (`strerror`), or the message it was built with; never `(os error N)`.
pub fn describe(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(code) => os_message(code),
        // A custom or kind-only error displays its own words, nothing more.
        None => err.to_string(),
    }
}

/// The system's text for `code`: "Address already in use". std's own
/// message (it calls strerror_r) without its ` (os error N)` suffix, so
/// this file needs no unsafe of its own.
fn os_message(code: i32) -> String {
    let text = io::Error::from_raw_os_error(code).to_string();
    match text.strip_suffix(&format!(" (os error {code})")) {
        Some(words) => words.to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_without_the_os_error_suffix() {
        let err = io::Error::from_raw_os_error(libc::EADDRINUSE);
        assert_eq!(describe(&err), "Address already in use");
        let custom = io::Error::other("plain words");
        assert_eq!(describe(&custom), "plain words");
        let kind_only = io::Error::from(io::ErrorKind::WriteZero);
        assert!(!describe(&kind_only).contains("os error"));
    }

    #[test]
    fn the_table_text_lists_every_status_once() {
        for exit in Exit::ALL {
            let code = format!("\n  {:<5}", exit.code());
            assert_eq!(
                EXIT_TABLE.matches(&code).count(),
                1,
                "{exit:?} ({}) in the table text",
                exit.code()
            );
            assert_eq!(Exit::from_code(exit.code()), exit);
        }
    }

    #[test]
    fn io_errors_map_to_the_table() {
        let os = io::Error::from_raw_os_error;
        assert_eq!(Exit::of_io(&os(libc::ECONNREFUSED)), Exit::Unreachable);
        assert_eq!(Exit::of_io(&os(libc::ENOENT)), Exit::Unreachable);
        assert_eq!(Exit::of_io(&os(libc::ETIMEDOUT)), Exit::Timeout);
        assert_eq!(Exit::of_io(&os(libc::EMSGSIZE)), Exit::Usage);
        assert_eq!(Exit::of_io(&os(libc::EPIPE)), Exit::Io);
        assert_eq!(Exit::of_io(&io::ErrorKind::TimedOut.into()), Exit::Timeout);
    }
}
