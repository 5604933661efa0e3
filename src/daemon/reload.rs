//! SIGHUP: read the TLS certificate and key again. New handshakes, on
//! every reactor, present the new certificate; established connections go
//! on with what they negotiated; a reload that fails keeps the old pair and
//! says why. (`--tls-cert-out` is written by `safe_file`, as the pid file.)

use std::io;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::Arc;
use std::time::Instant;

use log::{info, warn};
use mio::net::UnixStream;
use mio::{Interest, Registry, Token};

use crate::reactor::{Context, Flow, Handler, HandlerInfo, Readiness};
use crate::tls::{Certs, Source};

/// SIGHUP, turned into readiness (a self-pipe, as SIGINT and SIGUSR2).
pub struct Reloader {
    signal: UnixStream,
    certs: Arc<Certs>,
}

impl Reloader {
    /// Catches SIGHUP from now on (its default action would end the daemon).
    pub fn new(certs: Arc<Certs>) -> io::Result<Reloader> {
        let (reader, writer) = StdUnixStream::pair()?;
        reader.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        signal_hook::low_level::pipe::register_raw(signal_hook::consts::SIGHUP, writer.into())?;
        Ok(Reloader {
            signal: UnixStream::from_std(reader),
            certs,
        })
    }

    fn reload(&self) {
        if matches!(self.certs.source(), Source::SelfSigned { .. }) {
            info!("SIGHUP: the TLS certificate is self-signed (no --tls-cert): nothing to reload");
            return;
        }
        match self.certs.reload() {
            Ok(loaded) => {
                for warning in &loaded.warnings {
                    warn!("{warning}");
                }
                info!(
                    "SIGHUP: TLS certificate reloaded from {}: SHA-256 {}; new handshakes present it",
                    self.certs.source(),
                    loaded.fingerprint
                );
            }
            Err(err) => warn!(
                "SIGHUP: TLS reload failed, still presenting SHA-256 {}: {err}",
                self.certs.fingerprint()
            ),
        }
    }
}

impl Handler for Reloader {
    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.signal, token, Interest::READABLE)
    }

    fn ready(&mut self, _readiness: Readiness, _cx: &mut Context) -> Flow {
        if crate::sys::signal::drain_pipe(&mut self.signal) {
            self.reload();
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
        HandlerInfo::internal("signals", "SIGHUP")
    }
}
