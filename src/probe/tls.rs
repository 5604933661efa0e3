//! The tools' side of `tls://`: the options (`--tls-ca`, `-k`,
//! `--tls-sni`), and a client session over a non-blocking socket, driven
//! the way the daemon drives its own: records in (`read_tls`), the state
//! machine run (`process_new_packets`), records out (`write_tls`), never
//! waiting inside. `Sock` holds one for TLS kinds; its callers wait for
//! readable, and for writable while `wants_write`.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

use crate::endpoint::{Endpoint, Target};
use crate::error::{Exit, Failure};
use crate::tls::{client_config, server_name, Verify};

/// What the tools send and buffer at most inside a session before the
/// socket takes it (a generous multiple of one 16 KiB record).
const BUFFER_LIMIT: usize = 256 * 1024;

/// The TLS options every tool takes.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// tls://, https://: trust the certificates in FILE (PEM) instead of the system's roots.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// tls://, https://: do not verify the server's certificate (as curl -k).
    #[arg(short = 'k', long)]
    pub insecure: bool,
    /// tls://, https://: the server name to send (SNI) and verify, instead of the endpoint's host.
    #[arg(long, value_name = "NAME")]
    pub tls_sni: Option<String>,
}

impl TlsArgs {
    /// The client settings for `endpoint`: None unless it is a TLS kind.
    /// `resume`: offer session resumption on reconnects.
    pub fn client(&self, endpoint: &Endpoint, resume: bool) -> Result<Option<TlsClient>, Failure> {
        if !endpoint.kind.is_tls() {
            return Ok(None);
        }
        let verify = Verify {
            ca: self.tls_ca.clone(),
            insecure: self.insecure,
            sni: self.tls_sni.clone(),
            resume,
        };
        let host = match &endpoint.target {
            Target::Inet { host, .. } => host.clone(),
            _ => String::new(),
        };
        // https://: offer HTTP/1.1 by ALPN, the one protocol spoken inside.
        let alpn: &[&[u8]] = match endpoint.kind {
            crate::endpoint::Kind::Https => &[b"http/1.1"],
            _ => &[],
        };
        let config = client_config(&verify, alpn).map_err(Failure::usage)?;
        let name = server_name(&verify, &host).map_err(Failure::usage)?;
        Ok(Some(TlsClient {
            config,
            name,
            resume,
        }))
    }
}

/// A verified way to start sessions with one server.
#[derive(Clone, Debug)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    /// Reconnects offer to resume (a shared session cache in `config`).
    resume: bool,
}

impl TlsClient {
    /// True if reconnects offer to resume the last session.
    pub fn resumes(&self) -> bool {
        self.resume
    }
}

/// A client session over a socket the caller owns.
#[derive(Debug)]
pub struct Session {
    tls: ClientConnection,
    started: Instant,
    handshake: Option<Duration>,
    /// Handed to `take_handshake` once.
    reported: bool,
    eof: bool,
}

impl Session {
    /// A new session (its ClientHello waits in `wants_write`).
    pub fn new(client: &TlsClient) -> io::Result<Session> {
        let mut tls = ClientConnection::new(client.config.clone(), client.name.clone())
            .map_err(io::Error::other)?;
        tls.set_buffer_limit(Some(BUFFER_LIMIT));
        Ok(Session {
            tls,
            started: Instant::now(),
            handshake: None,
            reported: false,
            eof: false,
        })
    }

    /// Restarts the handshake clock (at the TCP connect's end, so the
    /// figure is the TLS handshake's own).
    pub fn start_clock(&mut self) {
        self.started = Instant::now();
    }

    /// Records are waiting for the socket.
    pub fn wants_write(&self) -> bool {
        self.tls.wants_write()
    }

    /// True until the handshake is done.
    pub fn is_handshaking(&self) -> bool {
        self.tls.is_handshaking()
    }

    /// How long the handshake took and whether it resumed a session,
    /// once, when it is done.
    pub fn take_handshake(&mut self) -> Option<(Duration, bool)> {
        if self.reported {
            return None;
        }
        let took = self.handshake?;
        self.reported = true;
        let resumed = self.tls.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        Some((took, resumed))
    }

    /// `TLSv1.3 TLS13_AES_256_GCM_SHA384`, once negotiated.
    pub fn negotiated(&self) -> String {
        format!(
            "{} {} {}",
            crate::tls::version_name(self.tls.protocol_version()),
            crate::tls::cipher_name(self.tls.negotiated_cipher_suite()),
            crate::tls::group_name(self.tls.negotiated_key_exchange_group())
        )
    }

    /// Writes records until none wait or the socket would block.
    pub fn flush(&mut self, socket: &mut impl Write) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(socket) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Takes plaintext (buffered by rustls until the handshake is done),
    /// writes what records the socket takes. `WouldBlock` when full.
    pub fn send(&mut self, socket: &mut (impl Read + Write), buf: &[u8]) -> io::Result<usize> {
        self.flush(socket)?;
        let taken = self.tls.writer().write(buf)?;
        if taken == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.flush(socket)?;
        Ok(taken)
    }

    /// One step of the handshake: records out, what the socket has in,
    /// the state machine run, its answer out. True once done.
    pub fn handshake_step(&mut self, socket: &mut (impl Read + Write)) -> io::Result<bool> {
        self.flush(socket)?;
        if !self.tls.is_handshaking() {
            return Ok(true);
        }
        match self.tls.read_tls(socket) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                ))
            }
            Ok(_) => {}
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                return Ok(false)
            }
            Err(err) => return Err(err),
        }
        if let Err(err) = self.tls.process_new_packets() {
            let _ = self.flush(socket);
            return Err(io::Error::new(io::ErrorKind::InvalidData, err.to_string()));
        }
        if self.handshake.is_none() && !self.tls.is_handshaking() {
            self.handshake = Some(self.started.elapsed());
        }
        self.flush(socket)?;
        Ok(!self.tls.is_handshaking())
    }

    /// Plaintext from the server; drives the handshake on the way. 0 is
    /// the end of the session; `WouldBlock` when nothing is there yet.
    pub fn recv(&mut self, socket: &mut (impl Read + Write), buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(err) => return Err(err),
            }
            if self.eof {
                return Ok(0);
            }
            self.flush(socket)?;
            match self.tls.read_tls(socket) {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
            if let Err(err) = self.tls.process_new_packets() {
                // Send the alert rustls queued (the server learns why).
                let _ = self.flush(socket);
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("TLS: {err}"),
                ));
            }
            if self.handshake.is_none() && !self.tls.is_handshaking() {
                self.handshake = Some(self.started.elapsed());
            }
            self.flush(socket)?;
        }
    }
}

/// A handshake that failed, as a tool reports it: exit 3 (could not
/// connect), the reason rustls gave (an unknown issuer, a name mismatch).
pub fn handshake_failure(err: &io::Error) -> Failure {
    Failure::new(
        Exit::Unreachable,
        format!("TLS handshake failed: {}", crate::error::describe(err)),
    )
}
