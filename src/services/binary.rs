//! `binary://HOST:PORT`: fixed-layout records in Python `struct` syntax
//! (`--format`, default `I 2s f`). The stream is cut into records of exactly
//! the format's size whatever the segmentation; each whole record is
//! decoded, logged as Python would print the tuple, re-encoded and echoed.
//! A partial record waits for the rest and is never echoed half.

use std::fmt;
use std::io::{self, Write};
use std::rc::Rc;

use super::listener::Listener;
use super::stream::{Protocol, Sender, StreamConn};
use super::{Bound, ServeConfig};
use crate::codec::structfmt::{self, Format};
use crate::endpoint::Endpoint;
use crate::reactor::Context;
use crate::sock;

/// Checks `--format` at start-up, whether or not a `binary://` endpoint
/// uses it: it must parse, and its records must be at least one byte (an
/// empty record would swallow all input) and fit in `--max-buffer` (the
/// partial record a connection holds counts against that limit).
pub fn check_format(text: &str, max_buffer: u64) -> Result<Format, String> {
    let format = Format::parse(text).map_err(|err| format!("--format: {err}"))?;
    let size = format.size();
    if size == 0 {
        return Err(format!(
            "--format '{text}' describes zero-length records: binary:// could never echo anything"
        ));
    }
    if size as u64 > max_buffer {
        return Err(format!(
            "--format '{text}' records are {size} bytes, more than --max-buffer {max_buffer}: \
             raise --max-buffer or use a smaller format"
        ));
    }
    Ok(format)
}

/// Longest `unpacked:` line logged; a bigger record is shown cut.
const MAX_LOGGED_RECORD: usize = 1024;

/// Binds the record service.
pub fn bind(endpoint: &Endpoint, config: &ServeConfig) -> io::Result<Bound> {
    let format = Format::parse(&config.format)
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err.to_string()))?;
    let format = Rc::new(format);
    let listener = sock::tcp_listener(endpoint.socket_addr()?, &config.binder)?;
    let local = listener.local_addr()?;
    let proxy = endpoint.options.proxy;
    let detail = format!("format '{}', {}-byte records", config.format, format.size());
    let handler = Listener::new(
        listener,
        "binary-listener",
        local.to_string(),
        Box::new(move |stream: mio::net::TcpStream, peer| {
            let records = Records::new(Rc::clone(&format));
            let conn = StreamConn::new(stream, "binary-conn", peer, records);
            Box::new(if proxy { conn.with_proxy() } else { conn })
        }),
        None,
    );
    Ok(Bound {
        handler: Box::new(handler),
        endpoint: endpoint.with_addr(local),
        detail,
    })
}

/// The record protocol: whole records in, the same records out.
pub struct Records {
    format: Rc<Format>,
    /// The bytes of a record not yet complete (never a whole record).
    partial: Vec<u8>,
}

impl Records {
    /// A connection's framing state for `format`.
    pub fn new(format: Rc<Format>) -> Self {
        Records {
            format,
            partial: Vec::new(),
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
            let take = (size - self.partial.len()).min(rest.len());
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
        // The tutorial's line, but a client must not be able to make the
        // daemon log once per record, nor megabytes per line.
        if log::log_enabled!(log::Level::Info) {
            let mut repr = structfmt::repr(&values);
            if repr.len() > MAX_LOGGED_RECORD {
                let cut = (0..=MAX_LOGGED_RECORD)
                    .rev()
                    .find(|&at| repr.is_char_boundary(at))
                    .unwrap_or(0);
                repr.truncate(cut);
                repr.push_str("...");
            }
            crate::log_limited!(log::Level::Info, "unpacked: {repr}");
        }
        let encoded = self.format.encode(&values).map_err(|err| err.to_string())?;
        replies.extend_from_slice(&encoded);
        Ok(())
    }
}

impl Protocol for Records {
    fn received<S: Write>(
        &mut self,
        data: &[u8],
        out: &mut Sender<'_, S>,
        cx: &mut Context,
    ) -> io::Result<()> {
        let replies = self.records(data).map_err(|why| {
            io::Error::new(io::ErrorKind::InvalidData, format!("bad record: {why}"))
        })?;
        out.send(&replies, cx)
    }

    fn peer_closed(&mut self, kind: &str, peer: &dyn fmt::Display) {
        if !self.partial.is_empty() {
            crate::log_limited!(
                log::Level::Warn,
                "{kind} {peer}: connection ended with {} bytes of a partial {}-byte record",
                self.partial.len(),
                self.format.size()
            );
        }
    }

    fn held(&self) -> usize {
        self.partial.len()
    }
}
