//! SIGINT and SIGTERM as a handler of the loop: reactor 0 hears them and
//! passes each on; the other reactors hear reactor 0.

use std::io;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::Arc;
use std::time::Instant;

use log::info;
use mio::net::UnixStream;
use mio::{Interest, Registry, Token};

use super::{notify, reactors, upgrade};
use crate::reactor::{Context, Flow, Handler, HandlerInfo, Readiness};

/// SIGINT and SIGTERM, turned into readiness: signal-hook's handler writes
/// a byte into a socket pair, and the loop polls the other end like any
/// socket. The first signal starts a graceful shutdown, a second one ends it.
///
/// With `--reactors N`, reactor 0's pipe hears the signals (and
/// `Pipes::request_shutdown_all`) and passes each on to the others'
/// pipes (`follower`), so every reactor counts the same signals.
pub struct SignalPipe {
    reader: UnixStream,
    role: Role,
}

enum Role {
    /// Reactor 0: hears the signals, passes each on to the others, tells
    /// the service manager, lets the upgrade's inventory go.
    Leader {
        pipes: Arc<reactors::Pipes>,
        inventory: Arc<upgrade::Inventory>,
    },
    /// Reactors 1..N: do what reactor 0 writes.
    Follower,
}

impl SignalPipe {
    /// Reactor 0's: written by SIGINT and SIGTERM (and `Pipes::request_shutdown_all`).
    pub fn new(
        pipes: Arc<reactors::Pipes>,
        inventory: Arc<upgrade::Inventory>,
    ) -> io::Result<SignalPipe> {
        let (reader, writer) = nonblocking_pair()?;
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // Each registration owns a duplicate of the write end.
            signal_hook::low_level::pipe::register_raw(signal, writer.try_clone()?.into())?;
        }
        pipes.set_leader(writer);
        Ok(SignalPipe {
            reader,
            role: Role::Leader { pipes, inventory },
        })
    }

    /// The pipe of reactor 1, 2, ...: written by reactor 0, not by signals.
    pub fn follower(pipes: &reactors::Pipes) -> io::Result<SignalPipe> {
        let (reader, writer) = nonblocking_pair()?;
        pipes.add_follower(writer);
        Ok(SignalPipe {
            reader,
            role: Role::Follower,
        })
    }
}

/// A socket pair, both ends non-blocking: the loop polls the first, and
/// a signal handler or another thread writes the second without waiting.
fn nonblocking_pair() -> io::Result<(UnixStream, StdUnixStream)> {
    let (reader, writer) = StdUnixStream::pair()?;
    reader.set_nonblocking(true)?;
    writer.set_nonblocking(true)?;
    Ok((UnixStream::from_std(reader), writer))
}

impl Handler for SignalPipe {
    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.reader, token, Interest::READABLE)
    }

    fn ready(&mut self, _readiness: Readiness, cx: &mut Context) -> Flow {
        let Role::Leader { pipes, inventory } = &self.role else {
            // Reactor 0 writes what to do: a drain, or (each time) a shutdown.
            let (drain, shutdown) = reactors::read_orders(&mut self.reader);
            if drain {
                cx.request_drain();
            }
            if shutdown {
                cx.request_shutdown();
            }
            return Flow::Continue;
        };
        let got_signal = crate::sys::signal::drain_pipe(&mut self.reader);
        if got_signal {
            pipes.forward_shutdown();
            if !cx.is_shutting_down() && !inventory.handed_over() {
                notify::stopping("shutting down");
            }
            // The inventory's duplicates would keep closed listeners listening.
            inventory.release();
            if cx.is_shutting_down() {
                info!("second signal: exiting now, without waiting for the grace period");
            } else {
                info!(
                    "signal received: shutting down (grace {:?})",
                    cx.limits.grace
                );
            }
            cx.request_shutdown();
        }
        Flow::Continue
    }

    fn shutdown(&mut self, _cx: &mut Context) -> Flow {
        Flow::Continue
    }

    fn keeps_alive(&self) -> bool {
        false
    }

    fn describe(&self, _now: Instant) -> HandlerInfo {
        HandlerInfo::internal("signals", "SIGINT,SIGTERM")
    }
}
