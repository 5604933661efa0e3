//! WebSocket (RFC 6455) framing without I/O, for both ends: frames parsed
//! from the front of a buffer (`Ok(None)` until one is whole), masking,
//! frames encoded for the server (unmasked) and the client (masked),
//! fragments reassembled into messages ([`Assembler`]), close codes, and
//! the handshake's `Sec-WebSocket-Accept`.
//!
//! A frame is whole before it is handed out: the reader owns the buffer
//! and a message is bounded (`max`, else close 1009), so holding one frame
//! costs no more than holding the message it belongs to, and the parser
//! stays one function with no partial states to get wrong.

/// Longest frame header: 2 bytes, 8 of length, 4 of mask.
pub const MAX_HEADER: usize = 14;
/// Longest payload of a control frame (ping, pong, close).
pub const MAX_CONTROL: usize = 125;

/// Opcodes.
pub mod opcode {
    /// A later fragment of a message.
    pub const CONTINUATION: u8 = 0x0;
    /// A text message (UTF-8).
    pub const TEXT: u8 = 0x1;
    /// A binary message.
    pub const BINARY: u8 = 0x2;
    /// Close.
    pub const CLOSE: u8 = 0x8;
    /// Ping.
    pub const PING: u8 = 0x9;
    /// Pong.
    pub const PONG: u8 = 0xA;
}

/// Close codes (RFC 6455 7.4.1).
pub mod close {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// Going away (a server shutting down).
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error.
    pub const PROTOCOL: u16 = 1002;
    /// A close frame without a code (never sent on the wire).
    pub const NO_STATUS: u16 = 1005;
    /// Data inconsistent with the message type (text not UTF-8).
    pub const INVALID_DATA: u16 = 1007;
    /// Message too big.
    pub const TOO_BIG: u16 = 1009;
}

/// Which end reads the frames: a server reads masked frames, a client
/// unmasked ones (RFC 6455 5.1: anything else is a protocol error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We are the server: frames must be masked.
    Server,
    /// We are the client: frames must not be masked.
    Client,
}

/// A frame that breaks the protocol: the close code to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    /// 1002, 1007 or 1009.
    pub code: u16,
    /// For the close reason and a debug line.
    pub why: &'static str,
}

const fn violation(code: u16, why: &'static str) -> Violation {
    Violation { code, why }
}

/// A frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    /// The last fragment of its message.
    pub fin: bool,
    /// See [`opcode`].
    pub opcode: u8,
    /// The masking key of a client's frame.
    pub mask: Option<[u8; 4]>,
    /// Payload bytes.
    pub len: u64,
    /// Header bytes (2 to 14).
    pub header_len: usize,
}

impl FrameHead {
    /// Ping, pong or close.
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

/// Parses a frame header at the front of `buf`; `Ok(None)` while it is
/// incomplete. A payload over `max` is refused (1009) from the header
/// alone, before any of it is held.
pub fn parse_head(buf: &[u8], role: Role, max: u64) -> Result<Option<FrameHead>, Violation> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(violation(close::PROTOCOL, "reserved bits set"));
    }
    let fin = b0 & 0x80 != 0;
    let op = b0 & 0x0F;
    match op {
        opcode::CONTINUATION | opcode::TEXT | opcode::BINARY => {}
        opcode::CLOSE | opcode::PING | opcode::PONG => {
            if !fin {
                return Err(violation(close::PROTOCOL, "fragmented control frame"));
            }
        }
        _ => return Err(violation(close::PROTOCOL, "reserved opcode")),
    }
    let masked = b1 & 0x80 != 0;
    match (role, masked) {
        (Role::Server, false) => return Err(violation(close::PROTOCOL, "client frame not masked")),
        (Role::Client, true) => return Err(violation(close::PROTOCOL, "server frame masked")),
        _ => {}
    }
    let (len, mut at) = match b1 & 0x7F {
        126 => {
            let Some(bytes) = buf.get(2..4) else {
                return Ok(None);
            };
            let len = u64::from(u16::from_be_bytes([bytes[0], bytes[1]]));
            if len < 126 {
                return Err(violation(close::PROTOCOL, "length not minimally encoded"));
            }
            (len, 4)
        }
        127 => {
            let Some(bytes) = buf.get(2..10) else {
                return Ok(None);
            };
            let mut eight = [0u8; 8];
            eight.copy_from_slice(bytes);
            let len = u64::from_be_bytes(eight);
            if len >> 63 != 0 {
                return Err(violation(close::PROTOCOL, "length with its top bit set"));
            }
            if len <= 0xFFFF {
                return Err(violation(close::PROTOCOL, "length not minimally encoded"));
            }
            (len, 10)
        }
        short => (u64::from(short), 2),
    };
    if op & 0x8 != 0 && len > MAX_CONTROL as u64 {
        return Err(violation(close::PROTOCOL, "control frame over 125 bytes"));
    }
    if len > max {
        return Err(violation(close::TOO_BIG, "message too big"));
    }
    let mask = if masked {
        let Some(bytes) = buf.get(at..at + 4) else {
            return Ok(None);
        };
        at += 4;
        Some([bytes[0], bytes[1], bytes[2], bytes[3]])
    } else {
        None
    };
    Ok(Some(FrameHead {
        fin,
        opcode: op,
        mask,
        len,
        header_len: at,
    }))
}

/// A whole frame at the front of `buf`: its header and its payload, still
/// masked (see [`unmask`]); `Ok(None)` while incomplete.
pub fn parse_frame(
    buf: &[u8],
    role: Role,
    max: u64,
) -> Result<Option<(FrameHead, &[u8])>, Violation> {
    let Some(head) = parse_head(buf, role, max)? else {
        return Ok(None);
    };
    // `len <= max`, and `max` is a buffer size: it fits a usize.
    let len = usize::try_from(head.len).unwrap_or(usize::MAX);
    let end = head.header_len.saturating_add(len);
    match buf.get(head.header_len..end) {
        Some(payload) => Ok(Some((head, payload))),
        None => Ok(None),
    }
}

/// XORs `data` with the masking key, `offset` bytes into the payload
/// (masking is its own inverse: the same call masks and unmasks).
pub fn unmask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut key = [0u8; 4];
    for (i, k) in key.iter_mut().enumerate() {
        *k = mask[(offset + i) % 4];
    }
    // Eight bytes at a time: a 64 B message is 8 XORs, not 64.
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
}

/// A frame header for `len` payload bytes: the bytes and how many are used.
pub fn encode_head(
    fin: bool,
    op: u8,
    len: usize,
    mask: Option<[u8; 4]>,
) -> ([u8; MAX_HEADER], usize) {
    let mut head = [0u8; MAX_HEADER];
    head[0] = if fin { 0x80 } else { 0 } | (op & 0x0F);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut at = if len < 126 {
        head[1] = mask_bit | len as u8;
        2
    } else if let Ok(short) = u16::try_from(len) {
        head[1] = mask_bit | 126;
        head[2..4].copy_from_slice(&short.to_be_bytes());
        4
    } else {
        head[1] = mask_bit | 127;
        head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    if let Some(key) = mask {
        head[at..at + 4].copy_from_slice(&key);
        at += 4;
    }
    (head, at)
}

/// Appends a whole frame; with a `mask` (the client's role) the payload is
/// masked as it is copied.
pub fn encode_frame(out: &mut Vec<u8>, fin: bool, op: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    let (head, used) = encode_head(fin, op, payload.len(), mask);
    out.extend_from_slice(&head[..used]);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        unmask(&mut out[start..], key, 0);
    }
}

/// True for a code a peer may send in a close frame (RFC 6455 7.4).
pub fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A close frame's payload: its code (`None` when empty) and reason.
/// One byte, a code no peer may send, or a reason that is not UTF-8 are
/// violations.
pub fn parse_close(payload: &[u8]) -> Result<(Option<u16>, &str), Violation> {
    match payload {
        [] => Ok((None, "")),
        [_] => Err(violation(close::PROTOCOL, "close payload of one byte")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !valid_close_code(code) {
                return Err(violation(close::PROTOCOL, "invalid close code"));
            }
            let reason = std::str::from_utf8(reason)
                .map_err(|_| violation(close::INVALID_DATA, "close reason not UTF-8"))?;
            Ok((Some(code), reason))
        }
    }
}

/// A close frame's payload: `code` and a reason cut to fit 125 bytes.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    let mut end = reason.len().min(MAX_CONTROL - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    payload
}

// ---------------------------------------------------------------------------
// Messages

/// What one frame completes.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A whole message: its opcode (text or binary) and payload.
    Message(u8, &'a [u8]),
    /// A ping and its payload.
    Ping(&'a [u8]),
    /// A pong and its payload.
    Pong(&'a [u8]),
    /// A close: its code (none for an empty payload) and reason.
    Close(Option<u16>, &'a str),
    /// A fragment of a message still incomplete.
    Fragment,
}

/// Reassembles fragmented messages, checking the order of fragments, the
/// total size and the UTF-8 of text.
#[derive(Debug, Default)]
pub struct Assembler {
    /// The opcode of the message being reassembled, if one is.
    started: Option<u8>,
    /// Its payload so far (empty, no allocation, between messages).
    buf: Vec<u8>,
    /// `buf` held a message handed out: clear it before the next frame.
    handed_out: bool,
}

impl Assembler {
    /// Bytes of an incomplete message held.
    pub fn held(&self) -> usize {
        if self.handed_out {
            0
        } else {
            self.buf.len()
        }
    }

    /// True while a fragmented message is incomplete.
    pub fn in_message(&self) -> bool {
        self.started.is_some()
    }

    /// Lets go of the message last handed out, once its echo is sent: a
    /// quiet connection keeps no buffer the size of its largest message.
    pub fn release(&mut self) {
        if self.handed_out {
            self.handed_out = false;
            self.buf.clear();
            if self.buf.capacity() > 4096 {
                self.buf = Vec::new();
            }
        }
    }

    /// Takes one frame (`payload` unmasked); `max` bounds a message.
    pub fn frame<'a>(
        &'a mut self,
        head: &FrameHead,
        payload: &'a [u8],
        max: usize,
    ) -> Result<Event<'a>, Violation> {
        self.release();
        match head.opcode {
            opcode::PING => Ok(Event::Ping(payload)),
            opcode::PONG => Ok(Event::Pong(payload)),
            opcode::CLOSE => {
                let (code, reason) = parse_close(payload)?;
                Ok(Event::Close(code, reason))
            }
            opcode::CONTINUATION => {
                let Some(op) = self.started else {
                    return Err(violation(close::PROTOCOL, "continuation without a message"));
                };
                if self.buf.len() + payload.len() > max {
                    return Err(violation(close::TOO_BIG, "message too big"));
                }
                self.buf.extend_from_slice(payload);
                if !head.fin {
                    return Ok(Event::Fragment);
                }
                self.started = None;
                self.handed_out = true;
                check_text(op, &self.buf)?;
                Ok(Event::Message(op, &self.buf))
            }
            op => {
                if self.started.is_some() {
                    return Err(violation(
                        close::PROTOCOL,
                        "new message inside a fragmented one",
                    ));
                }
                if head.fin {
                    check_text(op, payload)?;
                    return Ok(Event::Message(op, payload));
                }
                if payload.len() > max {
                    return Err(violation(close::TOO_BIG, "message too big"));
                }
                self.started = Some(op);
                self.buf.extend_from_slice(payload);
                Ok(Event::Fragment)
            }
        }
    }
}

fn check_text(op: u8, payload: &[u8]) -> Result<(), Violation> {
    if op == opcode::TEXT && std::str::from_utf8(payload).is_err() {
        return Err(violation(close::INVALID_DATA, "text message not UTF-8"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The handshake

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &[u8]) -> String {
    use base64::Engine as _;
    let mut input = key.trim_ascii().to_vec();
    input.extend_from_slice(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha1(&input))
}

/// True for a valid `Sec-WebSocket-Key`: base64 of 16 bytes.
pub fn valid_key(key: &[u8]) -> bool {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(key.trim_ascii())
        .is_ok_and(|bytes| bytes.len() == 16)
}

/// SHA-1 (FIPS 180-4), used only for the handshake's accept key, where
/// RFC 6455 names it: one small input per upgrade, no secret involved.
/// Forty lines here instead of a crate (see Cargo.toml).
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut message = data.to_vec();
    let bits = (data.len() as u64).wrapping_mul(8);
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&bits.to_be_bytes());
    for block in message.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, word) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*word);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (state, add) in h.iter_mut().zip([a, b, c, d, e]) {
            *state = state.wrapping_add(add);
        }
    }
    let mut out = [0u8; 20];
    for (i, word) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// The client's side: checks a `101` answer's `Sec-WebSocket-Accept`.
pub fn accept_matches(key: &[u8], accept: &[u8]) -> bool {
    accept.trim_ascii() == accept_key(key).as_bytes()
}

#[cfg(test)]
mod tests;
