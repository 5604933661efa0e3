//! Why a client, ping or bench run failed, and the exit code of each class
//! (the one table of PLAN/README: 0 ok, 1 failed, 2 usage, 3 unreachable,
//! 4 timeout, 5 other I/O error, 130 interrupted); and Ctrl-C as a flag.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crate::error::describe;

/// Why a run failed; each class has its own exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The echo differed from what was sent, or nothing echoed (ping).
    Mismatch(String),
    /// Bad input the parser could not catch (a value, a group, a kind, a
    /// message too large for the kind).
    Usage(String),
    /// Refused, no such socket, unreachable, name not resolved, nothing
    /// ever answered.
    Unreachable(String),
    /// A wait ran out.
    Timeout(String),
    /// The connection broke or another I/O error happened.
    Io(String),
    /// Ctrl-C (or SIGTERM) arrived.
    Interrupted,
}

/// The exit codes, as every subcommand's `--help` documents them.
/// (The numbers are `crate::error::Exit`'s, the one table.)
pub mod exit {
    use crate::error::Exit;
    /// Success.
    pub const OK: u8 = Exit::Ok.code();
    /// Failed: the echo differed, verification errors, no reply.
    pub const FAILED: u8 = Exit::Failed.code();
    /// Usage error (also clap's code for bad options).
    pub const USAGE: u8 = Exit::Usage.code();
    /// Could not reach the endpoint; nothing ever answered.
    pub const UNREACHABLE: u8 = Exit::Unreachable.code();
    /// A wait timed out.
    pub const TIMEOUT: u8 = Exit::Timeout.code();
    /// Connection lost or another I/O error.
    pub const IO: u8 = Exit::Io.code();
    /// Interrupted by a signal (128 + SIGINT, as shells report it).
    pub const INTERRUPTED: u8 = Exit::Interrupted.code();
}

impl From<Failure> for crate::error::Failure {
    fn from(failure: Failure) -> Self {
        let exit = crate::error::Exit::from_code(failure.exit_code());
        crate::error::Failure::new(exit, failure.to_string())
    }
}

impl Failure {
    /// The exit code of this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Mismatch(_) => exit::FAILED,
            Failure::Usage(_) => exit::USAGE,
            Failure::Unreachable(_) => exit::UNREACHABLE,
            Failure::Timeout(_) => exit::TIMEOUT,
            Failure::Io(_) => exit::IO,
            Failure::Interrupted => exit::INTERRUPTED,
        }
    }

    /// Puts `prefix` before the reason.
    pub fn context(self, prefix: &str) -> Failure {
        let with = |why: String| format!("{prefix}: {why}");
        match self {
            Failure::Mismatch(why) => Failure::Mismatch(with(why)),
            Failure::Usage(why) => Failure::Usage(with(why)),
            Failure::Unreachable(why) => Failure::Unreachable(with(why)),
            Failure::Timeout(why) => Failure::Timeout(with(why)),
            Failure::Io(why) => Failure::Io(with(why)),
            Failure::Interrupted => Failure::Interrupted,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Mismatch(text)
            | Failure::Usage(text)
            | Failure::Unreachable(text)
            | Failure::Timeout(text)
            | Failure::Io(text) => f.write_str(text),
            Failure::Interrupted => f.write_str("interrupted"),
        }
    }
}

/// Classifies an I/O error met while talking to a peer: ICMP errors
/// surface on datagram sockets as refused or unreachable; a datagram too
/// large for the kind (`EMSGSIZE`) is a usage error, whichever kind.
pub fn classify(err: &io::Error, context: &str) -> Failure {
    let text = format!("{context}: {}", describe(err));
    match err.raw_os_error() {
        Some(
            libc::ECONNREFUSED
            | libc::ENOENT
            | libc::EHOSTUNREACH
            | libc::ENETUNREACH
            | libc::EHOSTDOWN
            | libc::ENETDOWN,
        ) => Failure::Unreachable(text),
        Some(libc::ETIMEDOUT) => Failure::Timeout(text),
        Some(libc::EMSGSIZE) => Failure::Usage(text),
        _ => Failure::Io(text),
    }
}

fn stop_flag() -> &'static Arc<AtomicBool> {
    static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    STOP.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Makes `signals` set the stop flag instead of killing the process, so a
/// run ends through its normal path: ping prints its summary, bench its
/// report, a client removes its temporary socket file. With `twice`, a
/// second signal while the flag is set ends the process at once, exit 130.
pub fn stop_on(signals: &[libc::c_int], twice: bool) -> Result<(), Failure> {
    for &signal in signals {
        let registered = if twice {
            // Registered first, so it sees the flag as the first signal left it.
            signal_hook::flag::register_conditional_shutdown(
                signal,
                i32::from(exit::INTERRUPTED),
                Arc::clone(stop_flag()),
            )
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(stop_flag())))
        } else {
            signal_hook::flag::register(signal, Arc::clone(stop_flag()))
        };
        registered.map_err(|err| {
            Failure::Io(format!("cannot handle signal {signal}: {}", describe(&err)))
        })?;
    }
    Ok(())
}

/// True once a signal registered with [`stop_on`] arrived.
pub fn stopped() -> bool {
    stop_flag().load(Ordering::Relaxed)
}
