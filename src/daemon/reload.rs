//! SIGHUP: read the TLS certificate and key again. New handshakes, on
//! every reactor, present the new certificate; established connections go
//! on with what they negotiated; a reload that fails keeps the old pair and
//! says why. Also `--tls-cert-out`, written by the pid file's rules.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::Path;
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
        if crate::serve::drain_signal_pipe(&mut self.signal) {
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
        HandlerInfo {
            kind: "signals",
            local: "SIGHUP".into(),
            peer: "-".into(),
            state: "open",
            ..HandlerInfo::default()
        }
    }
}

/// Writes `bytes` to `path` for others to read (mode 644), as the pid
/// file is written: a file of our own made next to it (`O_EXCL`, so never
/// one someone placed there) renamed over it, so nothing is written through
/// a symlink or into a file we did not create. Something at `path` that is
/// not a plain file (a symlink, a FIFO, a device, a directory) is refused
/// rather than replaced.
pub fn write_public_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_file() => {}
        Ok(meta) => {
            let what = match meta.file_type() {
                t if t.is_symlink() => "a symbolic link",
                t if t.is_fifo() => "a FIFO",
                t if t.is_dir() => "a directory",
                t if t.is_socket() => "a socket",
                _ => "a device",
            };
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{what} is in the way"),
            ));
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "not a file name".to_string())
    })?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{}.tmp", std::process::id()));
    let temp = path.with_file_name(temp_name);
    let written = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cert_out_file_replaces_a_file_and_refuses_a_symlink_or_fifo() {
        let dir = std::env::temp_dir().join(format!("echoplex-certout-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        let out = dir.join("cert.pem");
        write_public_file(&out, b"one").expect("new file");
        write_public_file(&out, b"two").expect("replaced");
        assert_eq!(fs::read(&out).expect("read"), b"two");
        let target = dir.join("target");
        fs::write(&target, b"keep").expect("target");
        let link = dir.join("link.pem");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let err = write_public_file(&link, b"x").expect_err("symlink refused");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(fs::read(&target).expect("read"), b"keep");
        let fifo = dir.join("fifo.pem");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: mkfifo reads the NUL-terminated path we own.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(write_public_file(&fifo, b"x").is_err());
        let _ = fs::remove_dir_all(&dir);
    }
}
