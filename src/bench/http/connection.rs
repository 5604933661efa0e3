//! One connection of the HTTP and WebSocket traffic: its states, the connect
//! (and WebSocket upgrade) that opens it, and the messages it encodes.

use std::collections::VecDeque;
use std::io;
use std::time::Instant;

use mio::{Interest, Registry, Token};

use super::{Reader, Reading};
use crate::bench::link::{register, start_connecting};
use crate::bench::types::{Dest, Speech, Web};
use crate::bench::worker::Ctx;
use crate::error::describe;
use crate::probe::socket::Sock;
use crate::wire::http as wire;
use crate::wire::websocket::{self as ws, opcode};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum State {
    Connecting,
    /// WebSocket: the upgrade is sent, its answer awaited.
    Upgrading,
    Open,
    /// A reconnect failed; try again at the next housekeeping.
    Retry,
    Dead,
}

/// One HTTP or WebSocket connection of a worker.
pub(super) struct WebLink {
    pub(super) sock: Sock,
    pub(super) state: State,
    pub(super) reader: Reader,
    /// Bytes of an answer not yet whole.
    pub(super) inbuf: Vec<u8>,
    pub(super) next_send: u64,
    /// Messages sent on this connection (churn closes it after M).
    pub(super) sent: u64,
    pub(super) connect_started: Instant,
    pub(super) out: Vec<u8>,
    pub(super) out_pos: usize,
    pub(super) last_progress: Instant,
    pub(super) answered: bool,
    pub(super) write_interest: bool,
    /// WebSocket masking keys.
    pub(super) mask_state: u64,
}

pub(super) fn connect_one(
    dest: &Dest,
    registry: &Registry,
    id: usize,
    token: Token,
    now: Instant,
) -> io::Result<WebLink> {
    let sock = start_connecting(dest, registry, token)?;
    Ok(WebLink {
        sock,
        state: State::Connecting,
        reader: Reader {
            id,
            reading: Reading::Head,
            next_recv: 0,
            body_off: 0,
            body: Vec::new(),
            in_flight: VecDeque::new(),
            closing: false,
            gone: None,
        },
        inbuf: Vec::new(),
        next_send: 0,
        sent: 0,
        connect_started: now,
        out: Vec::new(),
        out_pos: 0,
        last_progress: now,
        answered: false,
        write_interest: true,
        mask_state: (id as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
    })
}

/// Appends message `seq` as a request or a masked frame.
pub(super) fn encode(web: &Web, ctx: &Ctx, seq: u64, mask_state: &mut u64, out: &mut Vec<u8>) {
    match web.speech {
        Speech::Echo => {
            out.extend_from_slice(&web.head);
            ctx.pattern.write(seq, out);
        }
        Speech::Get => out.extend_from_slice(&web.head),
        Speech::WebSocket => {
            let key = (xorshift(mask_state) as u32).to_ne_bytes();
            let (head, used) = ws::encode_head(true, opcode::BINARY, ctx.pattern.size(), Some(key));
            out.extend_from_slice(&head[..used]);
            let start = out.len();
            ctx.pattern.write(seq, out);
            ws::unmask(&mut out[start..], key, 0);
        }
    }
}

pub(super) fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

impl WebLink {
    /// Starts the output buffer over once everything in it was written.
    pub(super) fn reuse_written(&mut self) {
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
    }

    /// Queues the next request or frame, due at `due` and sent at `now`:
    /// the one place a message joins this connection's in-flight list.
    pub(super) fn queue(
        &mut self,
        web: &Web,
        ctx: &Ctx,
        due: Instant,
        now: Instant,
        measured: bool,
    ) {
        if self.reader.in_flight.is_empty() {
            self.last_progress = now;
        }
        encode(
            web,
            ctx,
            self.next_send,
            &mut self.mask_state,
            &mut self.out,
        );
        self.next_send += 1;
        self.sent += 1;
        self.reader.in_flight.push_back((due, now, measured));
    }

    /// The TCP connect finished (or failed): WebSocket sends its upgrade,
    /// HTTP is open.
    pub(super) fn finish_connect(
        &mut self,
        web: &Web,
        registry: &Registry,
        token: Token,
    ) -> Result<(), String> {
        match self.sock.connecting_done() {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(err) => return Err(format!("connect failed: {}", describe(&err))),
        }
        if web.speech == Speech::WebSocket {
            // The upgrade is a few hundred bytes on a fresh socket: one
            // write (over TLS, kept by the session until its handshake).
            match self.sock.send(&web.head) {
                Ok(n) if n == web.head.len() => {}
                Ok(_) => return Err("the upgrade request did not go out whole".into()),
                Err(err) => return Err(format!("write failed: {}", describe(&err))),
            }
        }
        // TLS: records the socket did not take (the ClientHello) keep
        // writable on; the handshake goes on inside recv and send.
        let pending = self.sock.wants_write();
        let interest = if pending {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        register(registry, &self.sock, token, interest, true)
            .map_err(|err| format!("reregister: {}", describe(&err)))?;
        self.write_interest = pending;
        self.state = if web.speech == Speech::WebSocket {
            State::Upgrading
        } else {
            State::Open
        };
        Ok(())
    }

    /// WebSocket: reads the upgrade's answer; open once it is a good 101.
    pub(super) fn upgrade_step(&mut self, web: &Web, scratch: &mut [u8]) -> Result<(), String> {
        loop {
            match self.sock.recv(scratch) {
                Ok(0) => return Err("closed by the server during the upgrade".into()),
                Ok(n) => self.inbuf.extend_from_slice(&scratch[..n]),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(format!("read failed: {}", describe(&err))),
            }
        }
        let mut accept_ok = false;
        let parsed = wire::parse_response_with(&self.inbuf, false, |name, value| {
            if name.eq_ignore_ascii_case("sec-websocket-accept") {
                accept_ok = value.trim_ascii() == web.accept.as_bytes();
            }
        })
        .map_err(|refusal| format!("not an HTTP answer to the upgrade: {}", refusal.why))?;
        let Some((summary, ..)) = parsed else {
            return Ok(());
        };
        if summary.status != 101 {
            return Err(format!("no WebSocket upgrade: status {}", summary.status));
        }
        if !accept_ok {
            return Err("the upgrade's Sec-WebSocket-Accept is wrong".into());
        }
        self.inbuf.drain(..summary.len);
        self.state = State::Open;
        Ok(())
    }
}
