//! `binary://HOST:PORT`: fixed-layout records in Python `struct` syntax
//! (`--format`, default `I 2s f`). The stream is cut into records of exactly
//! the format's size whatever the segmentation; each whole record is
//! decoded, logged as Python would print the tuple, re-encoded and echoed.
//! A partial record waits for the rest and is never echoed half.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use log::{debug, info, warn};
use mio::{Interest, Registry, Token};

use super::listener::Listener;
use super::stream::{log_close, ConnState};
use super::{Bound, ServeConfig};
use crate::codec::structfmt::{self, Format};
use crate::endpoint::Endpoint;
use crate::reactor::{Context, Flow, Handler, HandlerInfo, Readiness};
use crate::sock;

/// Binds the record service.
pub fn bind(endpoint: &Endpoint, config: &ServeConfig) -> io::Result<Bound> {
    let format = Format::parse(&config.format)
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err.to_string()))?;
    let format = Rc::new(format);
    let listener = sock::tcp_listener(endpoint.socket_addr()?)?;
    let local = listener.local_addr()?;
    info!(
        "binary records at {local}: format '{}', {} bytes each",
        config.format,
        format.size()
    );
    let handler = Listener::new(
        listener,
        "binary-listener",
        local.to_string(),
        Box::new(move |stream: mio::net::TcpStream, peer| {
            if let Err(err) = stream.set_nodelay(true) {
                debug!("TCP_NODELAY on {peer}: {err}");
            }
            Box::new(RecordConn::new(stream, peer, Rc::clone(&format)))
        }),
        None,
    );
    Ok(Bound {
        handler: Box::new(handler),
        endpoint: endpoint.with_addr(local),
    })
}

/// A connection exchanging records.
pub struct RecordConn {
    stream: mio::net::TcpStream,
    peer: SocketAddr,
    format: Rc<Format>,
    /// The bytes of a record not yet complete (never a whole record).
    partial: Vec<u8>,
    conn: ConnState,
}

/// Reads per event before yielding to other connections.
const READS_PER_EVENT: usize = 16;

impl RecordConn {
    fn new(stream: mio::net::TcpStream, peer: SocketAddr, format: Rc<Format>) -> Self {
        RecordConn {
            stream,
            peer,
            format,
            partial: Vec::new(),
            conn: ConnState::new(),
        }
    }

    /// Decodes, logs and re-encodes every whole record in `partial ++ data`,
    /// keeping the incomplete tail in `partial`. Returns the replies.
    fn records(&mut self, data: &[u8]) -> Result<Vec<u8>, String> {
        let size = self.format.size();
        let mut replies = Vec::new();
        let mut rest = data;
        if size == 0 {
            return Ok(replies); // an empty format has no records to echo
        }
        if !self.partial.is_empty() {
            let need = size - self.partial.len();
            let take = need.min(rest.len());
            self.partial.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.partial.len() < size {
                return Ok(replies);
            }
            let record = std::mem::take(&mut self.partial);
            self.echo_record(&record, &mut replies)?;
        }
        let mut records = rest.chunks_exact(size);
        for record in &mut records {
            self.echo_record(record, &mut replies)?;
        }
        self.partial.extend_from_slice(records.remainder());
        Ok(replies)
    }

    fn echo_record(&self, record: &[u8], replies: &mut Vec<u8>) -> Result<(), String> {
        let values = self.format.decode(record).map_err(|err| err.to_string())?;
        info!("unpacked: {}", structfmt::repr(&values));
        let encoded = self.format.encode(&values).map_err(|err| err.to_string())?;
        replies.extend_from_slice(&encoded);
        Ok(())
    }

    fn pump(&mut self, cx: &mut Context) -> io::Result<()> {
        let limit = cx.limits.max_buffer.max(self.format.size());
        for _ in 0..READS_PER_EVENT {
            if !self.conn.read_ready || self.conn.peer_done || cx.is_shutting_down() {
                return Ok(());
            }
            let room = self.conn.outbox.room(limit);
            if room == 0 {
                return Ok(()); // backpressure: a flush resumes reading
            }
            let read = cx.with_scratch(|scratch, _| match self.stream.read(&mut scratch[..room]) {
                Ok(n) => Ok((n, self.records(&scratch[..n]))),
                Err(err) => Err(err),
            });
            let (n, replies) = match read {
                Ok((0, _)) => {
                    self.conn.peer_done = true;
                    if !self.partial.is_empty() {
                        warn!(
                            "binary {}: connection ended with {} bytes of a partial {}-byte record",
                            self.peer,
                            self.partial.len(),
                            self.format.size()
                        );
                    }
                    return Ok(());
                }
                Ok((n, replies)) => (n, replies),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.conn.read_ready = false;
                    return Ok(());
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            self.conn.received(n, cx);
            let replies = replies.map_err(|why| {
                io::Error::new(io::ErrorKind::InvalidData, format!("bad record: {why}"))
            })?;
            let written = self.conn.outbox.send(&mut self.stream, &replies, cx)?;
            self.conn.sent(written, cx);
            if n < room {
                self.conn.read_ready = false; // short read: the socket is empty
                return Ok(());
            }
        }
        cx.run_again();
        Ok(())
    }
}

impl Handler for RecordConn {
    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(
            &mut self.stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        )
    }

    fn started(&mut self, cx: &mut Context) -> Flow {
        debug!("binary {} accepted", self.peer);
        self.conn.start(cx);
        Flow::Continue
    }

    fn ready(&mut self, readiness: Readiness, cx: &mut Context) -> Flow {
        self.conn.note(readiness);
        let result = self
            .conn
            .flush(&mut self.stream, cx)
            .and_then(|_| self.pump(cx));
        if let Err(err) = result {
            log_close("binary", &self.peer, &err);
            self.conn.outbox.release(cx);
            return Flow::Close;
        }
        if self.conn.finished(cx) {
            debug!("binary {} closed", self.peer);
            return Flow::Close;
        }
        Flow::Continue
    }

    fn timeout(&mut self, cx: &mut Context) -> Flow {
        if self.conn.idle_expired(cx) {
            debug!("binary {} closed: idle", self.peer);
            self.conn.outbox.release(cx);
            return Flow::Close;
        }
        Flow::Continue
    }

    fn shutdown(&mut self, _cx: &mut Context) -> Flow {
        if self.conn.outbox.is_empty() {
            Flow::Close
        } else {
            Flow::Continue
        }
    }

    fn is_connection(&self) -> bool {
        true
    }

    fn describe(&self, now: Instant) -> HandlerInfo {
        self.conn
            .describe("binary-conn", self.peer.to_string(), now)
    }
}
