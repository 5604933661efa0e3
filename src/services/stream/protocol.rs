//! What a stream connection speaks ([`Protocol`]), and the way back to
//! its peer that the connection lends it ([`Sender`]).

use std::fmt;
use std::io::{self, Write};

use super::ConnState;
use crate::reactor::{Context, Reason};
use crate::services::proxy;
use crate::tls::Negotiated;

/// What a stream connection does with the bytes it reads: echo them
/// (`Echo`), frame them into records (`binary`), or answer commands
/// (`admin`). The connection around it owns the socket, the buffers, the
/// idle timer and the edge-triggered bookkeeping, once for all of them.
///
/// A request/response protocol (admin lines, metrics' HTTP) answers only
/// while `Sender::backlogged` is false, holds the requests it has not
/// answered (`held`), and goes on in `resume` once the answers drain: so
/// the answers owed to a client that does not read stay near
/// `--max-buffer`, however many requests one read brought.
pub trait Protocol {
    /// Handles bytes just read; answers go out through `out`.
    fn received<S: Write>(
        &mut self,
        data: &[u8],
        out: &mut Sender<'_, S>,
        cx: &mut Context,
    ) -> io::Result<()>;

    /// The peer shut down its sending side.
    fn peer_closed(&mut self, _kind: &str, _peer: &dyn fmt::Display) {}

    /// True once the protocol wants to close (after flushing).
    fn done(&self) -> bool {
        false
    }

    /// Bytes received and held, not yet answered (a partial record): they
    /// count against `--max-buffer`, and a connection holding some is not
    /// quiet at shutdown.
    fn held(&self) -> usize {
        0
    }

    /// Takes up held input again once the answers owed have drained below
    /// `--max-buffer` (see `Sender::backlogged`): a request/response
    /// protocol that stopped parsing goes on from where it stopped.
    fn resume<S: Write>(&mut self, _out: &mut Sender<'_, S>, _cx: &mut Context) -> io::Result<()> {
        Ok(())
    }

    /// True for the daemon's control plane (admin, metrics): a reserve of
    /// connections of its own, its bytes apart from the echo totals.
    fn is_control(&self) -> bool {
        false
    }

    /// The connection's TLS session is established (`https://` puts it in
    /// its JSON); called before the first plaintext byte arrives.
    fn secured(&mut self, _tls: &Negotiated) {}

    /// A timer the protocol set (`Reason(PROTOCOL_TIMERS + n)`) is due.
    fn timer<S: Write>(
        &mut self,
        _reason: Reason,
        _out: &mut Sender<'_, S>,
        _cx: &mut Context,
    ) -> io::Result<()> {
        Ok(())
    }

    /// True while the protocol will still answer by itself (an answer
    /// held for a timer): a peer's EOF does not end the connection then.
    fn answer_due(&self) -> bool {
        false
    }

    /// The connection's PROXY header is complete (`None`: LOCAL/UNKNOWN,
    /// served as a direct connection).
    fn proxied(&mut self, _header: Option<&proxy::Header>) {}

    /// A shutdown began: a protocol with a goodbye of its own (WebSocket's
    /// close 1001) sends it now; the connection is then served until done.
    fn shutdown<S: Write>(
        &mut self,
        _out: &mut Sender<'_, S>,
        _cx: &mut Context,
    ) -> io::Result<()> {
        Ok(())
    }
}

/// Timer reasons from here up belong to the connection's `Protocol`.
pub const PROTOCOL_TIMERS: u32 = 16;

/// Lends a protocol the way back to its peer.
pub struct Sender<'a, S> {
    pub(super) stream: &'a mut S,
    pub(super) conn: &'a mut ConnState,
}

impl<S: Write> Sender<'_, S> {
    /// Bytes still owed to the peer.
    pub fn pending(&self) -> usize {
        self.conn.outbox.len()
    }

    /// True while the answers owed reach `--max-buffer`. A request/response
    /// protocol answers no further request until they drain, keeping the
    /// rest of its input held (which stops reading: held input counts
    /// against the same limit) and going on in `Protocol::resume`: a client
    /// that sends requests without reading the answers costs at most one
    /// answer beyond `--max-buffer`, however cheap its requests are.
    pub fn backlogged(&self) -> bool {
        self.conn.outbox.len() >= self.conn.max_buffer
    }

    /// Sends `bytes` behind whatever is still owed.
    pub fn send(&mut self, bytes: &[u8], cx: &mut Context) -> io::Result<()> {
        let written = self.conn.outbox.send(self.stream, bytes, cx)?;
        self.conn.sent(written, cx);
        Ok(())
    }
}

/// RFC 862: every byte straight back.
#[derive(Debug, Default, Clone, Copy)]
pub struct Echo;

impl Protocol for Echo {
    fn received<S: Write>(
        &mut self,
        data: &[u8],
        out: &mut Sender<'_, S>,
        cx: &mut Context,
    ) -> io::Result<()> {
        out.send(data, cx)
    }
}
