//! Reading answers: a response head and its body (by length, chunked, or
//! until close), or a WebSocket frame; echoes checked against the pattern,
//! statuses counted by class, latencies recorded.

use std::collections::VecDeque;
use std::time::Instant;

use super::{xorshift, MAX_FOREIGN_BODY};
use crate::bench::types::{Speech, Web};
use crate::bench::worker::Ctx;
use crate::wire::http::{self as wire, ChunkedDecoder, Framing};
use crate::wire::websocket::{self as ws, opcode, Role};

/// Where the reader is in the current answer.
#[derive(Debug)]
pub(super) enum Reading {
    /// Waiting for a response head (or, WebSocket, a frame).
    Head,
    /// `left` body bytes to come.
    Body { left: u64 },
    /// A chunked body.
    Chunked(ChunkedDecoder),
    /// A body that ends with the connection.
    UntilClose,
}

/// What the reader hands back to `Requests`.
pub(super) enum Step {
    /// Consumed bytes; more are needed.
    More,
    /// The server will close after the answer just read: reconnect.
    Closing,
    /// WebSocket: the server sent a close (a drain, a shutdown): as a
    /// connection the server ended (`--reconnect` opens another).
    Gone(String),
}

/// The part of a connection the reader works on (apart from its buffer,
/// so the bytes can come from the shared read buffer or its own).
pub(super) struct Reader {
    pub(super) id: usize,
    pub(super) reading: Reading,
    /// Sequence number of the message the next answer belongs to.
    pub(super) next_recv: u64,
    /// Bytes of its echo already checked.
    pub(super) body_off: usize,
    /// Chunked echoes are collected before they are checked.
    pub(super) body: Vec<u8>,
    /// Every message in flight, oldest first: due, sent, measured.
    pub(super) in_flight: VecDeque<(Instant, Instant, bool)>,
    /// The current answer is the last of this connection.
    pub(super) closing: bool,
    /// WebSocket: the server's close frame came (why, for the error).
    pub(super) gone: Option<String>,
}

impl Reader {
    /// The answer to the oldest message in flight is whole.
    pub(super) fn complete(&mut self, ctx: &mut Ctx, now: Instant) {
        self.reading = Reading::Head;
        self.body_off = 0;
        self.body.clear();
        self.next_recv += 1;
        if let Some((due, sent, measured)) = self.in_flight.pop_front() {
            ctx.echoed(due, sent, measured, now);
        }
    }

    /// Takes received bytes: how many were used (the rest is an answer
    /// not yet whole), and whether the server closes now. `out` takes a
    /// pong owed to a server's ping.
    pub(super) fn feed(
        &mut self,
        ctx: &mut Ctx,
        web: &Web,
        data: &[u8],
        now: Instant,
        out: &mut Vec<u8>,
        mask_state: &mut u64,
    ) -> Result<(usize, Step), String> {
        let mut at = 0;
        while at < data.len() {
            if web.speech == Speech::WebSocket {
                match self.frame(ctx, &data[at..], now, out, mask_state)? {
                    Some(used) => at += used,
                    None => break,
                }
                if let Some(why) = self.gone.take() {
                    return Ok((at, Step::Gone(why)));
                }
                continue;
            }
            let rest = &data[at..];
            match &mut self.reading {
                Reading::Head => {
                    if self.in_flight.is_empty() {
                        return Err(format!(
                            "connection {}: {} bytes came that answer nothing sent",
                            self.id,
                            rest.len()
                        ));
                    }
                    let summary = match wire::parse_response_summary(rest, false) {
                        Ok(Some(summary)) => summary,
                        Ok(None) => break,
                        Err(refusal) => {
                            return Err(format!(
                                "connection {}: not an HTTP answer: {}",
                                self.id, refusal.why
                            ))
                        }
                    };
                    at += summary.len;
                    if (100..200).contains(&summary.status) {
                        continue; // 100 Continue: the real answer follows
                    }
                    self.count_status(ctx, summary.status);
                    if web.speech == Speech::Echo && summary.status / 100 != 2 {
                        return Err(format!(
                            "connection {}: echoplex answered {} to message {}",
                            self.id, summary.status, self.next_recv
                        ));
                    }
                    self.closing = !summary.keep_alive;
                    self.reading = match summary.framing {
                        Framing::Empty => Reading::Body { left: 0 },
                        Framing::Length(n) => Reading::Body { left: n },
                        Framing::Chunked => Reading::Chunked(ChunkedDecoder::default()),
                        Framing::UntilClose => Reading::UntilClose,
                    };
                    if web.speech == Speech::Echo {
                        let size = ctx.pattern.size() as u64;
                        if let Reading::Body { left } = self.reading {
                            if left != size {
                                return Err(format!(
                                    "connection {}: echo of message {}: {left} bytes, sent {size}",
                                    self.id, self.next_recv
                                ));
                            }
                        }
                    }
                    if matches!(self.reading, Reading::Body { left: 0 }) {
                        self.complete(ctx, now);
                        if self.closing {
                            return Ok((at, Step::Closing));
                        }
                    }
                }
                Reading::Body { left } => {
                    let take = usize::try_from(*left).unwrap_or(usize::MAX).min(rest.len());
                    *left -= take as u64;
                    let done = *left == 0;
                    if web.speech == Speech::Echo {
                        let piece = &rest[..take];
                        if !ctx.pattern.check(self.next_recv, self.body_off, piece) {
                            return Err(ctx.pattern.mismatch(
                                self.next_recv,
                                self.body_off,
                                piece,
                                &format!(
                                    "connection {}: echo of message {}",
                                    self.id, self.next_recv
                                ),
                            ));
                        }
                        self.body_off += take;
                    }
                    at += take;
                    if done {
                        self.complete(ctx, now);
                        if self.closing {
                            return Ok((at, Step::Closing));
                        }
                    }
                }
                Reading::Chunked(decoder) => {
                    let max = match web.speech {
                        Speech::Echo => ctx.pattern.size(),
                        _ => MAX_FOREIGN_BODY,
                    };
                    let used = decoder
                        .decode(rest, &mut self.body, max)
                        .map_err(|refusal| {
                            format!("connection {}: bad chunked body: {}", self.id, refusal.why)
                        })?;
                    at += used;
                    let done = decoder.is_done();
                    if web.speech == Speech::Get {
                        self.body.clear(); // read past, never kept
                    }
                    if done {
                        if web.speech == Speech::Echo
                            && (self.body.len() != ctx.pattern.size()
                                || !ctx.pattern.check(self.next_recv, 0, &self.body))
                        {
                            return Err(ctx.pattern.mismatch(
                                self.next_recv,
                                0,
                                &self.body,
                                &format!(
                                    "connection {}: echo of message {}",
                                    self.id, self.next_recv
                                ),
                            ));
                        }
                        self.complete(ctx, now);
                        if self.closing {
                            return Ok((at, Step::Closing));
                        }
                    }
                }
                Reading::UntilClose => {
                    if web.speech == Speech::Echo {
                        return Err(format!(
                            "connection {}: echoplex sent a body without a length",
                            self.id
                        ));
                    }
                    // Read past; the answer ends with the connection.
                    at = data.len();
                }
            }
        }
        Ok((at, Step::More))
    }

    pub(super) fn count_status(&mut self, ctx: &mut Ctx, status: u16) {
        // As `messages`: the measured window's answers only.
        if !self.in_flight.front().is_some_and(|m| m.2) {
            return;
        }
        if let Some(slot) = (status / 100)
            .checked_sub(2)
            .and_then(|k| ctx.result.counters.http_status.get_mut(usize::from(k)))
        {
            *slot += 1;
        }
    }

    /// WebSocket: one whole frame at the front of `data`, or `None`.
    pub(super) fn frame(
        &mut self,
        ctx: &mut Ctx,
        data: &[u8],
        now: Instant,
        out: &mut Vec<u8>,
        mask_state: &mut u64,
    ) -> Result<Option<usize>, String> {
        let size = ctx.pattern.size();
        let max = size.max(ws::MAX_CONTROL) as u64;
        let parsed = ws::parse_frame(data, Role::Client, max)
            .map_err(|v| format!("connection {}: bad frame: {}", self.id, v.why))?;
        let Some((head, payload)) = parsed else {
            return Ok(None);
        };
        let used = head.header_len + payload.len();
        match head.opcode {
            opcode::BINARY | opcode::CONTINUATION => {
                if self.in_flight.is_empty() {
                    return Err(format!(
                        "connection {}: a message came that echoes nothing sent",
                        self.id
                    ));
                }
                if !ctx.pattern.check(self.next_recv, self.body_off, payload) {
                    return Err(ctx.pattern.mismatch(
                        self.next_recv,
                        self.body_off,
                        payload,
                        &format!("connection {}: echo of message {}", self.id, self.next_recv),
                    ));
                }
                self.body_off += payload.len();
                if head.fin {
                    if self.body_off != size {
                        return Err(format!(
                            "connection {}: echo of message {}: {} bytes, sent {size}",
                            self.id, self.next_recv, self.body_off
                        ));
                    }
                    self.complete(ctx, now);
                }
            }
            opcode::PING => {
                let key = (xorshift(mask_state) as u32).to_ne_bytes();
                ws::encode_frame(out, true, opcode::PONG, payload, Some(key));
            }
            opcode::PONG => {}
            opcode::CLOSE => {
                let code = ws::parse_close(payload).ok().and_then(|(code, _)| code);
                self.gone = Some(format!(
                    "connection {}: closed by the server (code {}) with {} echoes owed",
                    self.id,
                    code.map_or("none".to_string(), |c| c.to_string()),
                    self.in_flight.len()
                ));
            }
            other => {
                return Err(format!(
                    "connection {}: a frame of opcode {other} where a binary echo was due",
                    self.id
                ))
            }
        }
        Ok(Some(used))
    }
}
