//! HTTP/1.1 message heads and bodies, without I/O: request heads (the
//! server's side), response heads (the client's side), chunked bodies and
//! the lines we write. One parser for `http://` and `metrics://` and the
//! tools that speak to any HTTP server.
//!
//! The head grammar is `httparse`'s. Around it go the checks it leaves to
//! us, because they are where request smuggling lives: a bare LF line end,
//! obs-fold, both `Content-Length` and `Transfer-Encoding`, two different
//! `Content-Length`s, a transfer coding other than `chunked`, more than one
//! `Host`. Each is a [`Refusal`] with the status to answer (and then close).
//! Heads are bounded ([`MAX_HEAD`], [`MAX_HEADERS`]); a caller scans a head
//! that arrives in pieces once ([`HeadScan`]), not once per piece.

use std::ops::Range;

mod chunked;
pub use chunked::ChunkedDecoder;

/// Longest request or response head (start line, headers, blank line).
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header fields in one head.
pub const MAX_HEADERS: usize = 100;

/// Why a message is refused: the status to answer with, and one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// 400, 413, 431, 501, 505.
    pub status: u16,
    /// For the answer's body and a debug line.
    pub why: &'static str,
}

const fn refuse(status: u16, why: &'static str) -> Refusal {
    Refusal { status, why }
}

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked` ([`ChunkedDecoder`]).
    Chunked,
    /// A response without length: the body ends when the connection does.
    UntilClose,
}

/// Where the head in front of a buffer ends, found incrementally: feed the
/// same growing buffer again and only the new bytes are looked at.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HeadScan {
    checked: usize,
}

impl HeadScan {
    /// The head's length (through its blank line) once `buf` holds it all;
    /// `Ok(None)` while it is incomplete. Bare LF and obs-fold are refused
    /// as soon as they are seen; a head past [`MAX_HEAD`] is a 431.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, Refusal> {
        let end = buf.len().min(MAX_HEAD);
        let mut at = self.checked;
        while at < end {
            let byte = buf[at];
            if byte == b'\n' {
                if at == 0 || buf[at - 1] != b'\r' {
                    return Err(refuse(400, "bare LF line end"));
                }
                // The line after a CRLF: empty (end of head), folded, or next.
                match buf.get(at + 1) {
                    None => {
                        self.checked = at;
                        return Ok(None);
                    }
                    Some(b'\r') => match buf.get(at + 2) {
                        None => {
                            self.checked = at;
                            return Ok(None);
                        }
                        Some(b'\n') => return within(at + 3),
                        Some(_) => return Err(refuse(400, "CR without LF")),
                    },
                    Some(b' ' | b'\t') => return Err(refuse(400, "obsolete line folding")),
                    Some(_) => {}
                }
            }
            at += 1;
        }
        self.checked = at;
        if buf.len() >= MAX_HEAD {
            return Err(refuse(431, "request head over 16 KiB"));
        }
        Ok(None)
    }

    /// Forgets what was scanned (the buffer was consumed).
    pub fn reset(&mut self) {
        self.checked = 0;
    }
}

fn within(len: usize) -> Result<Option<usize>, Refusal> {
    if len > MAX_HEAD {
        Err(refuse(431, "request head over 16 KiB"))
    } else {
        Ok(Some(len))
    }
}

/// A span of the head's bytes (heads are at most 16 KiB).
type Span = Range<u16>;

fn span(base: &[u8], part: &[u8]) -> Span {
    // `part` is a sub-slice of `base` (httparse returns slices of its input).
    let start = part.as_ptr() as usize - base.as_ptr() as usize;
    let start = u16::try_from(start).unwrap_or(u16::MAX);
    let end = u16::try_from(usize::from(start) + part.len()).unwrap_or(u16::MAX);
    start..end
}

fn at<'a>(raw: &'a [u8], span: &Span) -> &'a [u8] {
    raw.get(usize::from(span.start)..usize::from(span.end))
        .unwrap_or_default()
}

fn text<'a>(raw: &'a [u8], span: &Span) -> &'a str {
    // Method, target and names passed httparse's token/URI checks: ASCII.
    std::str::from_utf8(at(raw, span)).unwrap_or_default()
}

/// A request head, over its bytes `B` (borrowed while parsing; owned with
/// [`RequestHead::into_owned`] when its body is still to come).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead<B> {
    raw: B,
    method: Span,
    target: Span,
    headers: Vec<(Span, Span)>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// Bytes of the head, blank line included.
    pub len: usize,
    /// How the body is delimited (never `UntilClose` for a request).
    pub framing: Framing,
    /// Keep the connection open after the answer.
    pub keep_alive: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
}

impl<B: AsRef<[u8]>> RequestHead<B> {
    fn raw(&self) -> &[u8] {
        self.raw.as_ref()
    }

    /// `GET`, `POST`, ... as sent.
    pub fn method(&self) -> &str {
        text(self.raw(), &self.method)
    }

    /// The request target as sent (`/path?query`).
    pub fn target(&self) -> &str {
        text(self.raw(), &self.target)
    }

    /// The target in origin form: an absolute-form target
    /// (`http://host/path?query`) without its scheme and authority.
    fn origin(&self) -> &str {
        let target = self.target();
        match absolute_rest(target) {
            Some(rest) => match rest.find(['/', '?']) {
                Some(at) => &rest[at..],
                None => "",
            },
            None => target,
        }
    }

    /// The path, without the query (`/` for `http://host?query`).
    pub fn path(&self) -> &str {
        let origin = self.origin();
        match origin.split_once('?').map_or(origin, |(path, _)| path) {
            "" => "/",
            path => path,
        }
    }

    /// The query, without `?` (raw, not decoded).
    pub fn query(&self) -> Option<&str> {
        self.origin().split_once('?').map(|(_, query)| query)
    }

    /// `HTTP/1.0` or `HTTP/1.1`.
    pub fn version(&self) -> &'static str {
        if self.minor == 0 {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        }
    }

    /// Every header as received: name as sent, value as bytes.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        let raw = self.raw();
        self.headers
            .iter()
            .map(move |(name, value)| (text(raw, name), at(raw, value)))
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// True if a comma-separated header `name` lists `token` (any case).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .any(|(_, value)| tokens(value).any(|t| t.eq_ignore_ascii_case(token.as_bytes())))
    }

    /// A WebSocket opening handshake (`GET`, `Upgrade: websocket`,
    /// `Connection: upgrade`, HTTP/1.1).
    pub fn is_websocket_upgrade(&self) -> bool {
        self.minor == 1
            && self.method() == "GET"
            && self.has_token("upgrade", "websocket")
            && self.has_token("connection", "upgrade")
    }

    /// The same head owning its bytes.
    pub fn into_owned(self) -> RequestHead<Vec<u8>> {
        let raw = self.raw.as_ref()[..self.len].to_vec();
        RequestHead {
            raw,
            method: self.method,
            target: self.target,
            headers: self.headers,
            minor: self.minor,
            len: self.len,
            framing: self.framing,
            keep_alive: self.keep_alive,
            expect_continue: self.expect_continue,
        }
    }
}

/// After `http://` or `https://` (any case): an absolute-form target's
/// authority and what follows it.
fn absolute_rest(target: &str) -> Option<&str> {
    let (scheme, rest) = target.split_once("://")?;
    (scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")).then_some(rest)
}

/// The comma-separated tokens of a header value, trimmed.
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

/// True when a request line ends in `HTTP/...`: a version we do not
/// speak (505), rather than something that is not HTTP at all (400).
fn names_http(head: &[u8]) -> bool {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    line.rsplit(|&b| b == b' ')
        .next()
        .is_some_and(|version| version.starts_with(b"HTTP/"))
}

/// What the headers say about framing and the connection, checked for
/// the smuggling shapes.
#[derive(Default)]
struct Semantics {
    content_length: Option<u64>,
    chunked: bool,
    transfer_encoding: bool,
    hosts: usize,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
}

impl Semantics {
    fn header(&mut self, name: &str, value: &[u8]) -> Result<(), Refusal> {
        if name.eq_ignore_ascii_case("content-length") {
            if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
                return Err(refuse(400, "bad Content-Length"));
            }
            let length = value.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            if self.content_length.is_some_and(|other| other != length) {
                return Err(refuse(400, "two different Content-Length headers"));
            }
            self.content_length = Some(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if self.transfer_encoding {
                return Err(refuse(400, "more than one Transfer-Encoding header"));
            }
            self.transfer_encoding = true;
            let mut codings = tokens(value);
            match (codings.next(), codings.next()) {
                (Some(coding), None) if coding.eq_ignore_ascii_case(b"chunked") => {
                    self.chunked = true;
                }
                _ if tokens(value).any(|t| t.eq_ignore_ascii_case(b"chunked")) => {
                    return Err(refuse(400, "chunked with another transfer coding"));
                }
                _ => return Err(refuse(501, "transfer coding other than chunked")),
            }
        } else if name.eq_ignore_ascii_case("host") {
            // RFC 9112 3.2: a Host that is not `uri-host [":" port]` is a 400.
            if !value
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:[]".contains(&b))
            {
                return Err(refuse(400, "bad Host header"));
            }
            self.hosts += 1;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in tokens(value) {
                if token.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    self.keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("expect") {
            self.expect_continue |= value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
        Ok(())
    }
}

/// Parses the request head at the front of `buf`: `Ok(None)` while it is
/// incomplete. `scan` carries what was already looked at between calls
/// with the same (growing) buffer; reset it once the head is consumed.
pub fn parse_request<'b>(
    buf: &'b [u8],
    scan: &mut HeadScan,
) -> Result<Option<RequestHead<&'b [u8]>>, Refusal> {
    let Some(len) = scan.scan(buf)? else {
        return Ok(None);
    };
    let head = &buf[..len];
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut fields);
    match request.parse(head) {
        Ok(httparse::Status::Complete(n)) if n == len => {}
        Ok(_) => return Err(refuse(400, "malformed request head")),
        Err(httparse::Error::TooManyHeaders) => return Err(refuse(431, "too many header fields")),
        Err(httparse::Error::Version) if names_http(head) => {
            return Err(refuse(505, "only HTTP/1.0 and HTTP/1.1"))
        }
        Err(_) => return Err(refuse(400, "malformed request head")),
    }
    let (Some(method), Some(target), Some(minor)) = (request.method, request.path, request.version)
    else {
        return Err(refuse(400, "malformed request line"));
    };
    // RFC 9112 3.2.2: a server MUST accept the absolute form too.
    let absolute = absolute_rest(target).is_some_and(|rest| !rest.is_empty());
    if !(target.starts_with('/') || absolute || (target == "*" && method == "OPTIONS")) {
        return Err(refuse(
            400,
            "request target must be a path or an http(s) URI",
        ));
    }
    let mut semantics = Semantics::default();
    let mut headers = Vec::with_capacity(request.headers.len());
    for field in request.headers.iter() {
        if field
            .value
            .iter()
            .any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
        {
            return Err(refuse(400, "control character in a header value"));
        }
        semantics.header(field.name, field.value)?;
        headers.push((span(head, field.name.as_bytes()), span(head, field.value)));
    }
    let framing = match (semantics.content_length, semantics.transfer_encoding) {
        (Some(_), true) => {
            return Err(refuse(
                400,
                "both Content-Length and Transfer-Encoding (smuggling shape)",
            ))
        }
        (_, true) if minor == 0 => return Err(refuse(400, "Transfer-Encoding in HTTP/1.0")),
        (_, true) => Framing::Chunked,
        (Some(0) | None, false) => Framing::Empty,
        (Some(n), false) => Framing::Length(n),
    };
    if minor == 1 && semantics.hosts != 1 {
        return Err(refuse(400, "HTTP/1.1 needs exactly one Host header"));
    }
    if minor == 0 && semantics.hosts > 1 {
        return Err(refuse(400, "more than one Host header"));
    }
    let keep_alive = if minor == 1 {
        !semantics.close
    } else {
        semantics.keep_alive && !semantics.close
    };
    Ok(Some(RequestHead {
        raw: buf,
        method: span(head, method.as_bytes()),
        target: span(head, target.as_bytes()),
        headers,
        minor,
        len,
        framing,
        keep_alive,
        expect_continue: semantics.expect_continue && minor == 1,
    }))
}

// ---------------------------------------------------------------------------
// Writing

/// The reason phrase of a status code (empty for ones we do not name).
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        418 => "I'm a teapot",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// True for statuses whose answers never carry a body (RFC 9110 6.4.1).
pub fn bodiless(status: u16) -> bool {
    (100..200).contains(&status) || status == 204 || status == 304
}

/// Appends `HTTP/1.1 NNN Reason\r\n`.
pub fn write_status_line(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_number(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `Name: value\r\n`.
pub fn write_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends a decimal number without allocating.
pub fn push_number(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// A response head: status line, `extra` headers, `Content-Length` (unless
/// the status is bodiless), `Connection: close` when not `keep_alive`,
/// and the blank line.
pub fn write_response_head(
    out: &mut Vec<u8>,
    status: u16,
    extra: &[(&str, &[u8])],
    content_length: usize,
    keep_alive: bool,
) {
    write_status_line(out, status);
    for (name, value) in extra {
        write_header(out, name, value);
    }
    if !bodiless(status) {
        out.extend_from_slice(b"Content-Length: ");
        push_number(out, content_length as u64);
        out.extend_from_slice(b"\r\n");
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The client's side: a request head for `target` on `host`, with a body
/// of `content_length` bytes (`None`: no body, no header).
pub fn write_request_head(
    out: &mut Vec<u8>,
    method: &str,
    target: &str,
    host: &str,
    extra: &[(&str, &[u8])],
    content_length: Option<usize>,
) {
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in extra {
        write_header(out, name, value);
    }
    if let Some(length) = content_length {
        out.extend_from_slice(b"Content-Length: ");
        push_number(out, length as u64);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

// ---------------------------------------------------------------------------
// Responses (the client's side)

/// A response head, owned (clients keep it while the body comes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status code.
    pub status: u16,
    /// The reason phrase as sent.
    pub reason: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// Headers in order: name as sent, value as bytes.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Bytes of the head, blank line included.
    pub len: usize,
    /// How the body is delimited.
    pub framing: Framing,
    /// The server keeps the connection open after this answer.
    pub keep_alive: bool,
}

impl ResponseHead {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// True if a comma-separated header `name` lists `token` (any case).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .any(|(_, value)| tokens(value).any(|t| t.eq_ignore_ascii_case(token.as_bytes())))
    }

    /// The status class, `2` for 2xx and so on.
    pub fn class(&self) -> u16 {
        self.status / 100
    }
}

/// What a client needs of a response head to read on: no header kept, no
/// allocation (a load generator reads one per request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseSummary {
    /// The status code.
    pub status: u16,
    /// Bytes of the head, blank line included.
    pub len: usize,
    /// How the body is delimited.
    pub framing: Framing,
    /// The server keeps the connection open after this answer.
    pub keep_alive: bool,
}

/// Parses the response head at the front of `buf` (`Ok(None)` while
/// incomplete), handing each header to `each`. `head_request`: the
/// request was `HEAD`, so no body follows whatever the headers say. Bare
/// LF is accepted here (servers we only read from may send it);
/// conflicting lengths are not.
pub fn parse_response_with(
    buf: &[u8],
    head_request: bool,
    mut each: impl FnMut(&str, &[u8]),
) -> Result<Option<(ResponseSummary, u8, &str)>, Refusal> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut fields);
    let window = &buf[..buf.len().min(MAX_HEAD)];
    let len = match response.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(refuse(431, "response head over 16 KiB"))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(refuse(431, "too many header fields")),
        Err(_) => return Err(refuse(400, "malformed response head")),
    };
    let (Some(status), Some(minor)) = (response.code, response.version) else {
        return Err(refuse(400, "malformed status line"));
    };
    let mut semantics = Semantics::default();
    for field in response.headers.iter() {
        semantics.header(field.name, field.value)?;
        each(field.name, field.value);
    }
    let framing = if head_request || bodiless(status) {
        Framing::Empty
    } else if semantics.chunked {
        Framing::Chunked
    } else {
        match semantics.content_length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    let keep_alive = framing != Framing::UntilClose
        && if minor == 1 {
            !semantics.close
        } else {
            semantics.keep_alive && !semantics.close
        };
    let summary = ResponseSummary {
        status,
        len,
        framing,
        keep_alive,
    };
    Ok(Some((summary, minor, response.reason.unwrap_or_default())))
}

/// [`parse_response_with`], the summary alone.
pub fn parse_response_summary(
    buf: &[u8],
    head_request: bool,
) -> Result<Option<ResponseSummary>, Refusal> {
    Ok(parse_response_with(buf, head_request, |_, _| {})?.map(|(summary, ..)| summary))
}

/// Parses the response head at the front of `buf` (`Ok(None)` while
/// incomplete), headers kept: see [`parse_response_with`].
pub fn parse_response(buf: &[u8], head_request: bool) -> Result<Option<ResponseHead>, Refusal> {
    let mut headers = Vec::new();
    let parsed = parse_response_with(buf, head_request, |name, value| {
        headers.push((name.to_string(), value.to_vec()));
    })?;
    Ok(parsed.map(|(summary, minor, reason)| ResponseHead {
        status: summary.status,
        reason: reason.to_string(),
        minor,
        headers,
        len: summary.len,
        framing: summary.framing,
        keep_alive: summary.keep_alive,
    }))
}

/// Text for JSON and logs: valid UTF-8 as is, each byte of an invalid
/// sequence as U+FFFD (one per byte, so a reader can count them).
pub fn lossy(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        return text.into();
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for _ in chunk.invalid() {
            out.push('\u{FFFD}');
        }
    }
    out.into()
}

#[cfg(test)]
mod tests;
