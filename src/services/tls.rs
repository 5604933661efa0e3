//! `tls://HOST:PORT`: RFC 862 echo inside TLS, and the TLS transport any
//! stream protocol can run over (`https://` is the HTTP protocol over it).
//!
//! [`TlsStream`] sits between `StreamConn` and the socket. rustls is a
//! state machine without I/O: it is handed the bytes the socket gave
//! (`read_tls`), told to process them (`process_new_packets`), and asked for
//! the bytes it wants sent (`write_tls`). Nothing in it blocks, so the
//! handshake runs in the reactor like any read or write: a readable event
//! feeds the ClientHello in and writes the server's flight out; if the
//! socket takes only part of that flight, the connection asks for writable
//! (`held_out`) and the rest goes out on the next event. The protocol above
//! sees plaintext only, and only once the handshake is done.
//!
//! Bounded like every connection: rustls holds at most `--max-buffer`
//! bytes of records for the socket (`set_buffer_limit`) and the
//! connection counts them against `--max-buffer` before it reads more; what
//! it decrypts is handed on before more is read from the socket.

use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, trace};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::{ServerConfig, ServerConnection};
use std::net::SocketAddr;

use super::listener::Listener;
use super::stream::{Echo, Protocol, Stream, StreamConn};
use super::{Bound, ServeConfig};
use crate::endpoint::Endpoint;
use crate::reactor::{Context, Flow, Handler, HandlerInfo, Readiness};
use crate::sock;
use crate::tls::{cipher_name, group_name, version_name, HANDSHAKE_TIMEOUT};

pub use crate::tls::Negotiated;

/// Where a connection's handshake is.
#[derive(Debug)]
enum Phase {
    /// Waiting for, or in the middle of, the handshake.
    Handshaking,
    /// Done; counted once by `account`, told once to the protocol
    /// (`take_negotiated`).
    Done { counted: bool, told: bool },
    /// rustls refused what the peer sent (garbage for a ClientHello, a bad
    /// record); counted once by `account`.
    Failed { counted: bool },
}

/// A socket with a server-side TLS session over it: reads and writes
/// plaintext, moves records.
pub struct TlsStream<S> {
    socket: S,
    tls: Box<ServerConnection>,
    phase: Phase,
    /// The socket said end of stream: no more records will come.
    eof: bool,
    /// The most rustls may hold for the socket (`set_buffer_limit`).
    limit: usize,
    accepted: Instant,
    negotiated: Option<Box<Negotiated>>,
}

impl<S: Stream> TlsStream<S> {
    /// A TLS server session over an accepted socket; `limit` bounds what
    /// rustls buffers (`--max-buffer`).
    pub fn new(
        socket: S,
        config: Arc<ServerConfig>,
        limit: usize,
    ) -> Result<Self, (S, rustls::Error)> {
        let mut tls = match ServerConnection::new(config) {
            Ok(tls) => tls,
            Err(err) => return Err((socket, err)),
        };
        let limit = limit.max(1);
        tls.set_buffer_limit(Some(limit));
        Ok(TlsStream {
            socket,
            tls: Box::new(tls),
            phase: Phase::Handshaking,
            eof: false,
            limit,
            accepted: Instant::now(),
            negotiated: None,
        })
    }

    /// What the handshake negotiated, once it is done.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_deref()
    }

    /// rustls refused the peer: remembered for `account`, the alert it
    /// queued is sent if the socket takes it, and the call fails.
    fn refused(&mut self, err: rustls::Error) -> io::Error {
        self.phase = Phase::Failed { counted: false };
        let _ = self.write_records();
        io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {err}"))
    }

    /// Writes the records rustls holds until it holds none or the socket
    /// would block (then the connection asks for writable).
    fn write_records(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.socket) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    trace!("tls: socket full, records held: want write");
                    break;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Feeds records to rustls and runs its state machine; whatever it
    /// answers (the server's handshake flight, alerts) is written out.
    fn process(&mut self) -> io::Result<()> {
        if let Err(err) = self.tls.process_new_packets() {
            return Err(self.refused(err));
        }
        if matches!(self.phase, Phase::Handshaking) && !self.tls.is_handshaking() {
            self.finish_handshake();
        }
        self.write_records()
    }

    fn finish_handshake(&mut self) {
        let tls = &self.tls;
        self.negotiated = Some(Box::new(Negotiated {
            version: version_name(tls.protocol_version()),
            cipher: cipher_name(tls.negotiated_cipher_suite()),
            group: group_name(tls.negotiated_key_exchange_group()),
            sni: tls.server_name().map(str::to_string),
            alpn: tls
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            handshake: self.accepted.elapsed(),
        }));
        self.phase = Phase::Done {
            counted: false,
            told: false,
        };
    }
}

impl<S: Stream> Read for TlsStream<S> {
    /// Plaintext, once the handshake is done. `WouldBlock` only when rustls
    /// holds no plaintext and the socket is empty: a short read proves
    /// nothing about the socket here (see `short_read_drains`).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => return Ok(n), // 0: the peer's close_notify
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                // The socket ended without close_notify: for an echo that
                // is the peer's EOF all the same.
                Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(err) => return Err(err),
            }
            if self.eof {
                return Ok(0);
            }
            // No plaintext is held here (it was handed out above), so the
            // socket is read even while records wait to go out: a
            // `WouldBlock` must mean the socket is empty, or the edge is
            // lost (the caller stops reading until a new one).
            match self.tls.read_tls(&mut self.socket) {
                Ok(0) => self.eof = true,
                Ok(n) => trace!("tls: {n} record bytes in"),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    trace!("tls: socket empty: want read");
                    return Err(err);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) if err.kind() == io::ErrorKind::InvalidData => {
                    // rustls's own input buffer refused more (a record
                    // larger than any legal one).
                    self.phase = Phase::Failed { counted: false };
                    return Err(err);
                }
                Err(err) => return Err(err),
            }
            self.process()?;
        }
    }
}

impl<S: Stream> Write for TlsStream<S> {
    /// Takes plaintext as far as rustls's buffer limit, encrypts it and
    /// writes the records as far as the socket takes them. `WouldBlock`
    /// when rustls already holds its limit: the caller keeps the rest.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_records()?;
        let taken = self.tls.writer().write(buf)?;
        if taken == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.write_records()?;
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_records()
    }
}

impl<S: Stream> mio::event::Source for TlsStream<S> {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.socket.register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.socket.reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.socket.deregister(registry)
    }
}

impl<S: Stream> AsFd for TlsStream<S> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl<S: Stream> AsRawFd for TlsStream<S> {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl<S: Stream> Stream for TlsStream<S> {
    /// Our close_notify, then our FIN.
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.tls.send_close_notify();
        self.write_records()?;
        self.socket.shutdown_write()
    }

    fn reset_on_close(&self) {
        self.socket.reset_on_close();
    }

    fn held_out(&self) -> usize {
        if self.tls.wants_write() {
            self.limit
        } else {
            0
        }
    }

    fn flush_held(&mut self) -> io::Result<()> {
        self.write_records()
    }

    /// close_notify, so the peer can tell our end from a cut connection.
    fn finish(&mut self) {
        if matches!(self.phase, Phase::Done { .. }) {
            self.tls.send_close_notify();
            let _ = self.write_records();
        }
    }

    fn short_read_drains(&self) -> bool {
        false
    }

    fn read_raw(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.socket.read(buf)
    }

    fn take_early(&mut self, mut bytes: &[u8]) -> io::Result<bool> {
        // What followed the PROXY header in the same read: the start of
        // the ClientHello. rustls's input buffer is bounded, so feed it in
        // pieces, processing between them.
        while !bytes.is_empty() {
            let n = self.tls.read_tls(&mut bytes).inspect_err(|_| {
                self.phase = Phase::Failed { counted: false };
            })?;
            if n == 0 {
                break;
            }
            self.process()?;
        }
        Ok(true)
    }

    fn setup_deadline(&self) -> Option<Duration> {
        Some(HANDSHAKE_TIMEOUT)
    }

    fn setting_up(&self) -> bool {
        matches!(self.phase, Phase::Handshaking)
    }

    fn account(&mut self, kind: &str, peer: &dyn fmt::Display, cx: &mut Context) {
        match &mut self.phase {
            Phase::Done { counted, .. } if !*counted => {
                *counted = true;
                cx.stats.tls_handshakes += 1;
                if let Some(done) = &self.negotiated {
                    let micros = u64::try_from(done.handshake.as_micros()).unwrap_or(u64::MAX);
                    cx.stats.tls_handshake_us += micros;
                    debug!("{kind} {peer} TLS established: {done}");
                }
            }
            Phase::Failed { counted } if !*counted => {
                *counted = true;
                cx.stats.tls_errors += 1;
            }
            _ => {}
        }
    }

    fn setup_expired(&mut self, cx: &mut Context) {
        if matches!(self.phase, Phase::Handshaking) {
            self.phase = Phase::Failed { counted: true };
            cx.stats.tls_errors += 1;
        }
    }

    fn take_negotiated(&mut self) -> Option<Negotiated> {
        match &mut self.phase {
            Phase::Done { told, .. } if !*told => {
                *told = true;
                self.negotiated.as_deref().cloned()
            }
            _ => None,
        }
    }

    fn detail(&self) -> Option<String> {
        Some(match &self.negotiated {
            Some(done) => done.to_string(),
            None => "TLS handshaking".into(),
        })
    }
}

/// Binds a `tls://` listener: every connection is echo over TLS.
pub fn bind(endpoint: &Endpoint, config: &ServeConfig) -> io::Result<Bound> {
    let Some(tls) = config.tls.clone() else {
        return Err(io::Error::other(
            "tls:// needs a certificate (serve sets one up)",
        ));
    };
    let server = tls.echo.clone();
    // A session the config cannot start would fail every connection alike:
    // find out now, as a bind error, not once per client.
    ServerConnection::new(server.clone()).map_err(io::Error::other)?;
    let listener = sock::tcp_listener(endpoint.socket_addr()?, &config.binder)?;
    let local = listener.local_addr()?;
    let proxy = endpoint.options.proxy;
    let limit = config.max_buffer;
    let handler = Listener::new(
        listener,
        "tls-listener",
        local.to_string(),
        Box::new(move |stream, peer| {
            tls_conn(stream, peer, &server, limit, proxy, Echo, "tls-conn")
        }),
        None,
    );
    Ok(Bound {
        handler: Box::new(handler),
        endpoint: endpoint.with_addr(local),
        detail: format!("TLS 1.2/1.3, certificate {}", tls.certs.fingerprint()),
    })
}

/// Binds an `https://` listener: the HTTP echo and WebSocket of `http://`
/// over the TLS transport, ALPN `http/1.1`.
pub fn bind_https(endpoint: &Endpoint, config: &ServeConfig) -> io::Result<Bound> {
    let Some(tls) = config.tls.clone() else {
        return Err(io::Error::other(
            "https:// needs a certificate (serve sets one up)",
        ));
    };
    let server = tls.http.clone();
    ServerConnection::new(server.clone()).map_err(io::Error::other)?;
    let listener = sock::tcp_listener(endpoint.socket_addr()?, &config.binder)?;
    let local = listener.local_addr()?;
    let proxy = endpoint.options.proxy;
    let limit = config.max_buffer;
    let handler = Listener::new(
        listener,
        "https-listener",
        local.to_string(),
        Box::new(move |stream: TcpStream, peer| {
            // The address this connection reached (the listener's may be 0.0.0.0).
            let here = stream.local_addr().unwrap_or(local);
            let protocol = super::http::HttpEcho::new(peer, here);
            tls_conn(stream, peer, &server, limit, proxy, protocol, "https-conn")
        }),
        None,
    );
    Ok(Bound {
        handler: Box::new(handler),
        endpoint: endpoint.with_addr(local),
        detail: format!(
            "HTTP/1.1 echo and WebSocket over TLS 1.2/1.3 (ALPN http/1.1), certificate {}",
            tls.certs.fingerprint()
        ),
    })
}

/// The handler of an accepted connection: `protocol` over TLS over the
/// socket, the PROXY header first with `proxy`.
pub fn tls_conn<R: Protocol + 'static>(
    stream: TcpStream,
    peer: SocketAddr,
    server: &Arc<ServerConfig>,
    limit: usize,
    proxy: bool,
    protocol: R,
    kind: &'static str,
) -> Box<dyn Handler> {
    match TlsStream::new(stream, server.clone(), limit) {
        Ok(stream) => {
            let conn = StreamConn::new(stream, kind, peer, protocol);
            Box::new(if proxy { conn.with_proxy() } else { conn })
        }
        Err((stream, err)) => {
            log::warn!("{kind} {peer}: cannot start a TLS session: {err}");
            Box::new(Refused(stream))
        }
    }
}

/// A connection closed as soon as the loop has it (a TLS session that
/// could not start; bind checks the config, so this is not expected).
struct Refused(TcpStream);

impl Handler for Refused {
    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.0, token, Interest::READABLE)
    }

    fn started(&mut self, _cx: &mut Context) -> Flow {
        Flow::Close
    }

    fn ready(&mut self, _readiness: Readiness, _cx: &mut Context) -> Flow {
        Flow::Close
    }

    fn describe(&self, _now: Instant) -> HandlerInfo {
        HandlerInfo {
            kind: "tls-conn",
            state: "closing",
            ..HandlerInfo::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The handler of an idle TLS connection stays as small as a TCP one's
    /// plus one pointer-sized field set: the rustls session is boxed (its
    /// own size and heap are measured in PERFORMANCE.md, about 8 KiB).
    #[test]
    fn an_idle_tls_connection_handler_is_small() {
        let handler = std::mem::size_of::<StreamConn<TlsStream<TcpStream>, SocketAddr, Echo>>();
        let session = std::mem::size_of::<ServerConnection>();
        eprintln!("StreamConn<TlsStream<TcpStream>>: {handler} bytes; ServerConnection (boxed): {session} bytes");
        assert!(handler <= 256, "handler {handler} B");
    }
}
