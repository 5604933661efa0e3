//! The WebSocket side of `http://` (RFC 6455): the opening handshake on
//! any path, then every message echoed, pings answered, a close returned.

use std::io::{self, Write};

use log::{debug, trace, Level};

use super::{count, HttpEcho, State};
use crate::log_limited;
use crate::reactor::Context;
use crate::services::stream::Sender;
use crate::wire::http::{self as wire, Framing, Refusal, RequestHead};
use crate::wire::websocket::{self as ws, opcode, Event, Role, Violation};

/// WebSocket frames up to this size are echoed from a stack buffer (small:
/// it is zeroed on every message, which at 1 KiB cost more than the rest
/// of a 64 B echo's framing).
const STACK_FRAME: usize = 256;

impl HttpEcho {
    /// The WebSocket opening handshake: `101`, or a refusal.
    pub(super) fn upgrade<B: AsRef<[u8]>, S: Write>(
        &mut self,
        head: &RequestHead<B>,
        out: &mut Sender<'_, S>,
        cx: &mut Context,
    ) -> io::Result<()> {
        let refusal = |status, why| Refusal { status, why };
        if cx.is_shutting_down() {
            return self.refuse(refusal(503, "shutting down"), out, cx);
        }
        if head.framing != Framing::Empty {
            return self.refuse(refusal(400, "a WebSocket handshake has no body"), out, cx);
        }
        if head.header("sec-websocket-version").map(<[u8]>::trim_ascii) != Some(b"13") {
            // RFC 6455 4.4: say which version we speak.
            let mut answer = Vec::new();
            let body = b"WebSocket version 13 only\n";
            wire::write_response_head(
                &mut answer,
                426,
                &[("Server", b"echoplex"), ("Sec-WebSocket-Version", b"13")],
                body.len(),
                false,
            );
            answer.extend_from_slice(body);
            count(cx.stats, 426);
            self.close();
            return out.send(&answer, cx);
        }
        let Some(key) = head
            .header("sec-websocket-key")
            .filter(|key| ws::valid_key(key))
        else {
            return self.refuse(refusal(400, "missing or bad Sec-WebSocket-Key"), out, cx);
        };
        let accept = ws::accept_key(key);
        let mut answer = Vec::with_capacity(160);
        wire::write_status_line(&mut answer, 101);
        wire::write_header(&mut answer, "Server", b"echoplex");
        wire::write_header(&mut answer, "Upgrade", b"websocket");
        wire::write_header(&mut answer, "Connection", b"Upgrade");
        wire::write_header(&mut answer, "Sec-WebSocket-Accept", accept.as_bytes());
        answer.extend_from_slice(b"\r\n");
        cx.stats.http_1xx += 1;
        cx.stats.ws_upgrades += 1;
        debug!(
            "http {}: upgraded to WebSocket on {}",
            self.client,
            head.path()
        );
        self.state = State::WebSocket(Box::default());
        out.send(&answer, cx)
    }

    /// WebSocket frames from `input[at..]`; returns the bytes used.
    pub(super) fn frames<S: Write>(
        &mut self,
        input: &[u8],
        mut at: usize,
        out: &mut Sender<'_, S>,
        cx: &mut Context,
    ) -> io::Result<usize> {
        let max = cx.limits.max_buffer;
        while at < input.len() {
            if out.backlogged() {
                self.paused = true;
                return Ok(at);
            }
            let State::WebSocket(assembler) = &mut self.state else {
                return Ok(input.len());
            };
            let head = match ws::parse_head(&input[at..], Role::Server, max as u64) {
                Ok(Some(head)) => head,
                Ok(None) => return Ok(at),
                Err(violation) => {
                    self.violation(violation, out, cx)?;
                    return Ok(input.len());
                }
            };
            // Refused from its header: reading stops at --max-buffer held,
            // so a continuation that cannot fit would never arrive whole.
            if head.opcode == opcode::CONTINUATION
                && assembler.held() as u64 + head.len > max as u64
            {
                let too_big = Violation {
                    code: ws::close::TOO_BIG,
                    why: "message too big",
                };
                self.violation(too_big, out, cx)?;
                return Ok(input.len());
            }
            // `len <= max`, a buffer size: it fits a usize.
            let end = head.header_len + usize::try_from(head.len).unwrap_or(usize::MAX);
            let Some(payload) = input[at..].get(head.header_len..end) else {
                return Ok(at);
            };
            at += head.header_len + payload.len();
            match echo_frame(assembler, &head, payload, max, out, cx)? {
                Ok(Next::Go) => {}
                Ok(Next::Closed) => {
                    self.close();
                    return Ok(input.len());
                }
                Err(violation) => {
                    self.violation(violation, out, cx)?;
                    return Ok(input.len());
                }
            }
        }
        Ok(at)
    }

    /// A frame that breaks the protocol: close with its code.
    fn violation<S: Write>(
        &mut self,
        violation: Violation,
        out: &mut Sender<'_, S>,
        cx: &mut Context,
    ) -> io::Result<()> {
        log_limited!(
            Level::Info,
            "websocket {}: closed with {}: {}",
            self.client,
            violation.code,
            violation.why
        );
        cx.stats.ws_errors += 1;
        let mut frame = Vec::with_capacity(MAX_HEADER_AND_CONTROL);
        let payload = ws::close_payload(violation.code, violation.why);
        ws::encode_frame(&mut frame, true, opcode::CLOSE, &payload, None);
        self.close();
        out.send(&frame, cx)
    }
}

pub(super) const MAX_HEADER_AND_CONTROL: usize = ws::MAX_HEADER + ws::MAX_CONTROL;
/// Input of a WebSocket not counted against `--max-buffer` while frames
/// are parsed: a control frame, and a data frame's header.
pub(super) const WS_SLACK: usize = MAX_HEADER_AND_CONTROL + ws::MAX_HEADER;

/// What the connection does after a frame.
enum Next {
    Go,
    /// The peer's close was answered: the connection ends.
    Closed,
}

/// Echoes one frame: a whole message back with its opcode, a ping's pong,
/// a close with the same code.
fn echo_frame<S: Write>(
    assembler: &mut ws::Assembler,
    head: &ws::FrameHead,
    payload: &[u8],
    max: usize,
    out: &mut Sender<'_, S>,
    cx: &mut Context,
) -> io::Result<Result<Next, Violation>> {
    let mask = head.mask.unwrap_or_default();
    if head.fin && matches!(head.opcode, opcode::TEXT | opcode::BINARY) && !assembler.in_message() {
        // The common case, one frame per message: the echo is built in one
        // buffer (header, then the payload unmasked in place), sent once.
        let (frame_head, used) = ws::encode_head(true, head.opcode, payload.len(), None);
        let total = used + payload.len();
        let mut stack = [0u8; STACK_FRAME];
        let mut heap = Vec::new();
        let frame: &mut [u8] = if total <= STACK_FRAME {
            &mut stack[..total]
        } else {
            heap.resize(total, 0);
            &mut heap
        };
        frame[..used].copy_from_slice(&frame_head[..used]);
        frame[used..].copy_from_slice(payload);
        ws::unmask(&mut frame[used..], mask, 0);
        if head.opcode == opcode::TEXT && std::str::from_utf8(&frame[used..]).is_err() {
            return Ok(Err(Violation {
                code: ws::close::INVALID_DATA,
                why: "text message not UTF-8",
            }));
        }
        cx.stats.ws_messages += 1;
        trace!(
            "websocket: opcode {} message of {} B echoed",
            head.opcode,
            payload.len()
        );
        out.send(frame, cx)?;
        return Ok(Ok(Next::Go));
    }
    let mut data = payload.to_vec();
    ws::unmask(&mut data, mask, 0);
    let mut frame = Vec::new();
    let next = match assembler.frame(head, &data, max) {
        Err(violation) => return Ok(Err(violation)),
        Ok(Event::Fragment | Event::Pong(_)) => Next::Go,
        Ok(Event::Message(op, message)) => {
            cx.stats.ws_messages += 1;
            trace!(
                "websocket: opcode {op} message of {} B echoed (fragments)",
                message.len()
            );
            ws::encode_frame(&mut frame, true, op, message, None);
            Next::Go
        }
        Ok(Event::Ping(ping)) => {
            ws::encode_frame(&mut frame, true, opcode::PONG, ping, None);
            Next::Go
        }
        Ok(Event::Close(code, _)) => {
            let payload = code.map(u16::to_be_bytes);
            let payload: &[u8] = payload.as_ref().map_or(&[], |p| &p[..]);
            ws::encode_frame(&mut frame, true, opcode::CLOSE, payload, None);
            Next::Closed
        }
    };
    assembler.release();
    if !frame.is_empty() {
        out.send(&frame, cx)?;
    }
    Ok(Ok(next))
}
