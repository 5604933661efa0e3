//! The PROXY protocol (HAProxy's `proxy-protocol.txt`, versions 1 and 2):
//! the header a load balancer puts in front of a connection to say whose it
//! really is. An endpoint with `?proxy` runs every accepted connection
//! through a [`Preamble`] before its `Protocol` sees a byte.
//!
//! The parser is fed whatever each read returned and takes the bytes one at
//! a time, so a header split anywhere over any number of reads parses the
//! same as one that came whole, and a wrong byte is refused as soon as it
//! arrives (a client speaking something else is closed at its first byte,
//! not after the 5 s timeout). It holds at most the fixed part of a header
//! (a v1 line of 107 bytes, or a v2 header's 16 bytes and 216 address
//! bytes); v2 TLVs are checked as they stream past, the CRC32c one
//! included, and never stored.
//!
//! Addresses in a header are only data to show: nothing is ever sent to
//! them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

/// How long a connection may take to send its whole header (the spec asks
/// for at least 3 s, to cover a TCP retransmission).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest v1 line, CRLF included (`PROXY UNKNOWN` with two full IPv6
/// addresses and ports).
pub const V1_MAX: usize = 107;

const V1_PREFIX: &[u8; 6] = b"PROXY ";

/// The 12 bytes that open a v2 header.
pub const V2_SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// Signature, version/command, family/transport, length.
const V2_FIXED: usize = 16;

const PP2_TYPE_CRC32C: u8 = 0x03;

/// The addresses a header carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addresses {
    /// A v2 `LOCAL` (a balancer's own health check), a v1 `UNKNOWN`, or a v2
    /// header with an unspecified family: the connection is served as a
    /// direct one, under its own addresses.
    Local,
    /// A proxied TCP connection: the client and the address it connected to.
    Inet {
        /// The client.
        source: SocketAddr,
        /// Where the client connected (the balancer's frontend).
        destination: SocketAddr,
    },
    /// A proxied Unix-domain connection (v2 only): the two 108-byte paths.
    Unix {
        /// The client's socket name.
        source: UnixName,
        /// The socket it connected to.
        destination: UnixName,
    },
}

/// A Unix socket name from a v2 header: up to 108 bytes, shown escaped
/// (it comes from the network and may hold any byte).
#[derive(Clone, PartialEq, Eq)]
pub struct UnixName(Vec<u8>);

impl UnixName {
    fn from_field(field: &[u8]) -> Self {
        // A leading NUL is an abstract name; otherwise the path ends at the first NUL.
        let name = match field.split_first() {
            Some((0, rest)) => {
                let end = rest.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                let mut name = vec![b'@'];
                name.extend_from_slice(&rest[..end]);
                name
            }
            _ => {
                let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
                field[..end].to_vec()
            }
        };
        UnixName(name)
    }
}

impl fmt::Display for UnixName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("-");
        }
        write!(f, "{}", self.0.escape_ascii())
    }
}

impl fmt::Debug for UnixName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// A complete, valid header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// 1 (text) or 2 (binary).
    pub version: u8,
    /// What it says about the connection.
    pub addresses: Addresses,
}

impl Header {
    /// The client to show in logs and `status`, if the header names one.
    pub fn client(&self) -> Option<String> {
        match &self.addresses {
            Addresses::Local => None,
            Addresses::Inet { source, .. } => Some(source.to_string()),
            Addresses::Unix { source, .. } => Some(source.to_string()),
        }
    }
}

/// Why a connection's header was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The first bytes are not a PROXY header at all.
    Missing,
    /// A PROXY header, but not a valid one.
    Malformed(&'static str),
    /// The connection ended (or was reset) before its header was complete.
    Incomplete,
    /// The header was not complete within [`HEADER_TIMEOUT`].
    Timeout,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Missing => f.write_str("no PROXY protocol header (expected one: ?proxy)"),
            Error::Malformed(why) => write!(f, "malformed PROXY protocol header: {why}"),
            Error::Incomplete => f.write_str("connection ended inside its PROXY protocol header"),
            Error::Timeout => write!(
                f,
                "PROXY protocol header not complete within {}s",
                HEADER_TIMEOUT.as_secs()
            ),
        }
    }
}

impl std::error::Error for Error {}

/// Where the parser is.
#[derive(Debug)]
enum Stage {
    /// Nothing read yet.
    Start,
    /// Inside a v1 line (bytes in `buf`).
    V1,
    /// Inside the 16 fixed bytes of a v2 header (in `buf`).
    V2Fixed,
    /// Collecting the address block (into `buf`, up to `addr_end`).
    V2Addresses,
    /// Skipping the rest of a block that is not interpreted (LOCAL, UNSPEC).
    V2Skip,
    /// Reading TLVs up to `end`.
    V2Tlvs,
}

/// The TLV being read: its 3 header bytes, then its value.
#[derive(Debug, Default)]
struct Tlv {
    head: [u8; 3],
    head_len: u8,
    value_left: usize,
    is_crc: bool,
    crc_got: u8,
}

/// An incremental PROXY v1/v2 header parser.
#[derive(Debug)]
pub struct Parser {
    stage: Stage,
    /// The v1 line, or the v2 fixed part and address block.
    buf: Vec<u8>,
    /// Header bytes taken so far.
    pos: usize,
    /// v2: the total header length (16 + the length field).
    end: usize,
    /// v2: where the address block ends.
    addr_end: usize,
    tlv: Tlv,
    /// v2: CRC32c of the header so far, with any checksum field as zeros.
    crc: u32,
    /// v2: the checksum the header carries, once read.
    crc_sent: Option<[u8; 4]>,
}

impl Default for Parser {
    fn default() -> Self {
        Self::new()
    }
}

/// What a fed chunk did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// All of it was header; more is needed.
    More,
    /// The header is complete; it took the first `consumed` bytes of this
    /// chunk and the rest belong to the connection.
    Done {
        /// The header.
        header: Header,
        /// Bytes of the chunk that were header.
        consumed: usize,
    },
}

impl Parser {
    /// A parser at the first byte of a connection.
    pub fn new() -> Self {
        Parser {
            stage: Stage::Start,
            buf: Vec::new(),
            pos: 0,
            end: 0,
            addr_end: 0,
            tlv: Tlv::default(),
            crc: !0,
            crc_sent: None,
        }
    }

    /// True once any byte has been taken.
    pub fn started(&self) -> bool {
        self.pos > 0
    }

    /// Takes the next bytes of the connection. After `Done` or an error the
    /// parser must not be fed again.
    pub fn feed(&mut self, data: &[u8]) -> Result<Step, Error> {
        for (i, &byte) in data.iter().enumerate() {
            if let Some(header) = self.byte(byte)? {
                return Ok(Step::Done {
                    header,
                    consumed: i + 1,
                });
            }
        }
        Ok(Step::More)
    }

    fn byte(&mut self, byte: u8) -> Result<Option<Header>, Error> {
        let at = self.pos;
        self.pos += 1;
        match self.stage {
            Stage::Start => match byte {
                b'P' => {
                    self.stage = Stage::V1;
                    self.buf.reserve_exact(V1_MAX);
                    self.buf.push(byte);
                    Ok(None)
                }
                0x0D => {
                    self.stage = Stage::V2Fixed;
                    self.buf.reserve_exact(V2_FIXED);
                    self.buf.push(byte);
                    self.crc = crc32c_byte(self.crc, byte);
                    Ok(None)
                }
                _ => Err(Error::Missing),
            },
            Stage::V1 => self.v1_byte(at, byte),
            Stage::V2Fixed => {
                self.crc = crc32c_byte(self.crc, byte);
                self.buf.push(byte);
                self.v2_fixed_byte(at, byte)
            }
            Stage::V2Addresses => {
                self.crc = crc32c_byte(self.crc, byte);
                self.buf.push(byte);
                if self.pos == self.addr_end {
                    return self.after_addresses();
                }
                Ok(None)
            }
            Stage::V2Skip => {
                self.crc = crc32c_byte(self.crc, byte);
                Ok(self.v2_end())
            }
            Stage::V2Tlvs => self.tlv_byte(byte),
        }
    }

    fn v1_byte(&mut self, at: usize, byte: u8) -> Result<Option<Header>, Error> {
        if at < V1_PREFIX.len() {
            if byte != V1_PREFIX[at] {
                // Only a first byte of `P` could have led here.
                return Err(if at < 5 {
                    Error::Missing
                } else {
                    Error::Malformed("'PROXY' not followed by one space")
                });
            }
            self.buf.push(byte);
            return Ok(None);
        }
        let after_cr = self.buf.last() == Some(&b'\r');
        match byte {
            b'\n' if after_cr => {
                self.buf.pop();
                parse_v1(&self.buf[V1_PREFIX.len()..]).map(Some)
            }
            b'\n' => Err(Error::Malformed("v1 line ends with LF without CR")),
            _ if after_cr => Err(Error::Malformed("CR inside the v1 line")),
            b'\r' | b' '..=b'~' => {
                if self.pos >= V1_MAX {
                    return Err(Error::Malformed("v1 line longer than 107 bytes"));
                }
                self.buf.push(byte);
                Ok(None)
            }
            _ => Err(Error::Malformed(
                "v1 line holds a byte that is not printable ASCII",
            )),
        }
    }

    fn v2_fixed_byte(&mut self, at: usize, byte: u8) -> Result<Option<Header>, Error> {
        if at < V2_SIGNATURE.len() {
            if byte != V2_SIGNATURE[at] {
                return Err(if at < 5 {
                    Error::Missing
                } else {
                    Error::Malformed("bad v2 signature")
                });
            }
            return Ok(None);
        }
        match at {
            12 => {
                if byte >> 4 != 2 {
                    return Err(Error::Malformed("v2 signature with a version other than 2"));
                }
                if byte & 0x0F > 1 {
                    return Err(Error::Malformed("v2 command neither LOCAL nor PROXY"));
                }
                Ok(None)
            }
            13 => {
                if byte >> 4 > 3 {
                    return Err(Error::Malformed("v2 address family unknown"));
                }
                if byte & 0x0F > 2 {
                    return Err(Error::Malformed("v2 transport unknown"));
                }
                Ok(None)
            }
            14 => Ok(None),
            _ => self.after_fixed(),
        }
    }

    /// The 16 fixed bytes are in: decide how the rest is read.
    fn after_fixed(&mut self) -> Result<Option<Header>, Error> {
        let command = self.buf[12] & 0x0F;
        let family = self.buf[13] >> 4;
        let transport = self.buf[13] & 0x0F;
        let len = usize::from(u16::from_be_bytes([self.buf[14], self.buf[15]]));
        self.end = V2_FIXED + len;
        let interpreted = command == 1 && family != 0 && transport != 0;
        if !interpreted {
            // LOCAL, or an unspecified family or transport: the spec says to
            // ignore the block and serve the connection under its own addresses.
            self.stage = Stage::V2Skip;
            return Ok(self.v2_end());
        }
        if transport == 2 {
            return Err(Error::Malformed(
                "v2 datagram transport on a stream connection",
            ));
        }
        let addr_len = match family {
            1 => 12,
            2 => 36,
            _ => 216,
        };
        if len < addr_len {
            return Err(Error::Malformed("v2 length shorter than its address block"));
        }
        self.addr_end = V2_FIXED + addr_len;
        self.buf.reserve_exact(addr_len);
        self.stage = Stage::V2Addresses;
        Ok(None)
    }

    fn after_addresses(&mut self) -> Result<Option<Header>, Error> {
        self.stage = Stage::V2Tlvs;
        if self.pos == self.end {
            return self.finish_v2().map(Some);
        }
        Ok(None)
    }

    fn tlv_byte(&mut self, byte: u8) -> Result<Option<Header>, Error> {
        let tlv = &mut self.tlv;
        if usize::from(tlv.head_len) < tlv.head.len() {
            tlv.head[usize::from(tlv.head_len)] = byte;
            tlv.head_len += 1;
            self.crc = crc32c_byte(self.crc, byte);
            if usize::from(tlv.head_len) == tlv.head.len() {
                tlv.value_left = usize::from(u16::from_be_bytes([tlv.head[1], tlv.head[2]]));
                tlv.is_crc = tlv.head[0] == PP2_TYPE_CRC32C;
                if tlv.is_crc && tlv.value_left != 4 {
                    return Err(Error::Malformed("v2 CRC32c TLV is not 4 bytes"));
                }
                if tlv.is_crc && self.crc_sent.is_some() {
                    return Err(Error::Malformed("v2 header with two CRC32c TLVs"));
                }
                if self.pos + tlv.value_left > self.end {
                    return Err(Error::Malformed("v2 TLV runs past the header's length"));
                }
                if tlv.value_left == 0 {
                    self.tlv = Tlv::default();
                }
            } else if self.pos == self.end {
                return Err(Error::Malformed("v2 TLV cut short by the header's length"));
            }
        } else {
            tlv.value_left -= 1;
            if tlv.is_crc {
                // The checksum is computed with its own field as zeros.
                let sent = self.crc_sent.get_or_insert([0; 4]);
                sent[usize::from(tlv.crc_got)] = byte;
                tlv.crc_got += 1;
                self.crc = crc32c_byte(self.crc, 0);
            } else {
                self.crc = crc32c_byte(self.crc, byte);
            }
            if tlv.value_left == 0 {
                self.tlv = Tlv::default();
            }
        }
        if self.pos == self.end {
            return self.finish_v2().map(Some);
        }
        Ok(None)
    }

    fn v2_end(&self) -> Option<Header> {
        (self.pos == self.end).then_some(Header {
            version: 2,
            addresses: Addresses::Local,
        })
    }

    fn finish_v2(&mut self) -> Result<Header, Error> {
        if let Some(sent) = self.crc_sent {
            if u32::from_be_bytes(sent) != !self.crc {
                return Err(Error::Malformed("v2 CRC32c does not match"));
            }
        }
        let family = self.buf[13] >> 4;
        let block = &self.buf[V2_FIXED..self.addr_end];
        let port = |at: usize| u16::from_be_bytes([block[at], block[at + 1]]);
        let addresses = match family {
            1 => {
                let ip = |at: usize| {
                    IpAddr::V4(Ipv4Addr::new(
                        block[at],
                        block[at + 1],
                        block[at + 2],
                        block[at + 3],
                    ))
                };
                Addresses::Inet {
                    source: SocketAddr::new(ip(0), port(8)),
                    destination: SocketAddr::new(ip(4), port(10)),
                }
            }
            2 => {
                let ip = |at: usize| {
                    let mut octets = [0; 16];
                    octets.copy_from_slice(&block[at..at + 16]);
                    IpAddr::V6(Ipv6Addr::from(octets))
                };
                Addresses::Inet {
                    source: SocketAddr::new(ip(0), port(32)),
                    destination: SocketAddr::new(ip(16), port(34)),
                }
            }
            _ => Addresses::Unix {
                source: UnixName::from_field(&block[..108]),
                destination: UnixName::from_field(&block[108..216]),
            },
        };
        self.buf = Vec::new();
        Ok(Header {
            version: 2,
            addresses,
        })
    }
}

/// Parses a v1 line after `PROXY `, without its CRLF.
fn parse_v1(line: &[u8]) -> Result<Header, Error> {
    // Only printable ASCII got this far, so this cannot fail.
    let line = std::str::from_utf8(line).map_err(|_| Error::Malformed("v1 line is not ASCII"))?;
    if line == "UNKNOWN" || line.starts_with("UNKNOWN ") {
        // The spec: ignore whatever follows UNKNOWN; use the real addresses.
        return Ok(Header {
            version: 1,
            addresses: Addresses::Local,
        });
    }
    let mut fields = line.split(' ');
    let (Some(proto), Some(src), Some(dst), Some(sport), Some(dport), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(Error::Malformed(
            "v1 line is not 'PROXY TCP4|TCP6 SRC DST SPORT DPORT' (one space apart)",
        ));
    };
    let (source, destination) = match proto {
        "TCP4" => (IpAddr::V4(v1_ipv4(src)?), IpAddr::V4(v1_ipv4(dst)?)),
        "TCP6" => (IpAddr::V6(v1_ipv6(src)?), IpAddr::V6(v1_ipv6(dst)?)),
        _ => return Err(Error::Malformed("v1 protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    Ok(Header {
        version: 1,
        addresses: Addresses::Inet {
            source: SocketAddr::new(source, v1_port(sport)?),
            destination: SocketAddr::new(destination, v1_port(dport)?),
        },
    })
}

/// Decimal, no leading zeros (they could be read as octal), at most 65535.
fn v1_number(text: &str, max: u32) -> Option<u32> {
    let digits_only =
        !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (text.len() > 1 && text.starts_with('0')) {
        return None;
    }
    text.parse().ok().filter(|&n| n <= max)
}

fn v1_port(text: &str) -> Result<u16, Error> {
    v1_number(text, 65535)
        .and_then(|n| u16::try_from(n).ok())
        .ok_or(Error::Malformed(
            "v1 port is not a decimal 0..65535 without leading zeros",
        ))
}

fn v1_ipv4(text: &str) -> Result<Ipv4Addr, Error> {
    const BAD: Error =
        Error::Malformed("v1 TCP4 address is not a dotted quad without leading zeros");
    let mut octets = [0u8; 4];
    let mut parts = text.split('.');
    for octet in &mut octets {
        let part = parts.next().ok_or(BAD)?;
        *octet = v1_number(part, 255)
            .and_then(|n| u8::try_from(n).ok())
            .ok_or(BAD)?;
    }
    if parts.next().is_some() {
        return Err(BAD);
    }
    Ok(Ipv4Addr::from(octets))
}

fn v1_ipv6(text: &str) -> Result<Ipv6Addr, Error> {
    // Hex groups and colons; a dotted IPv4 tail is accepted too, as
    // inet_ntop writes mapped addresses that way (HAProxy uses it).
    let chars_ok = text
        .bytes()
        .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
    text.parse()
        .ok()
        .filter(|_| chars_ok && text.contains(':'))
        .ok_or(Error::Malformed("v1 TCP6 address is not an IPv6 address"))
}

/// CRC32c (Castagnoli, reflected 0x82F63B78), one byte; start at `!0`,
/// finish with `!`. A 256-entry table would be faster, but headers are a
/// few hundred bytes, once per connection.
fn crc32c_byte(crc: u32, byte: u8) -> u32 {
    let mut crc = crc ^ u32::from(byte);
    for _ in 0..8 {
        crc = if crc & 1 == 1 {
            (crc >> 1) ^ 0x82F6_3B78
        } else {
            crc >> 1
        };
    }
    crc
}

/// CRC32c of `bytes` (what a sender puts in a `PP2_TYPE_CRC32C` TLV).
pub fn crc32c(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0, |crc, &b| crc32c_byte(crc, b))
}

/// A connection's PROXY state, kept by `StreamConn` for an endpoint with
/// `?proxy`: the parser until the header is complete, then what it said.
#[derive(Debug)]
pub struct Preamble {
    parser: Option<Parser>,
    header: Option<Header>,
    /// When the header must be complete.
    deadline: Option<Instant>,
}

impl Default for Preamble {
    fn default() -> Self {
        Self::new()
    }
}

impl Preamble {
    /// A connection waiting for its header.
    pub fn new() -> Self {
        Preamble {
            parser: Some(Parser::new()),
            header: None,
            deadline: None,
        }
    }

    /// True while the header is not complete.
    pub fn pending(&self) -> bool {
        self.parser.is_some()
    }

    /// Starts the 5 s clock; returns the deadline (for a timer).
    pub fn start(&mut self, now: Instant) -> Instant {
        let deadline = now + HEADER_TIMEOUT;
        self.deadline = Some(deadline);
        deadline
    }

    /// True if the header is still pending at `now`, past its deadline.
    pub fn expired(&self, now: Instant) -> bool {
        self.pending() && self.deadline.is_some_and(|deadline| now >= deadline)
    }

    /// Feeds bytes read while pending; returns how many were header (all of
    /// them while more is needed). Once complete, the rest of `data` is the
    /// connection's.
    pub fn feed(&mut self, data: &[u8]) -> Result<usize, Error> {
        let Some(parser) = self.parser.as_mut() else {
            return Ok(0);
        };
        match parser.feed(data) {
            Ok(Step::More) => Ok(data.len()),
            Ok(Step::Done { header, consumed }) => {
                self.parser = None;
                self.header = Some(header);
                Ok(consumed)
            }
            Err(err) => {
                self.parser = None;
                Err(err)
            }
        }
    }

    /// The header, once complete.
    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    /// The client the header names, if any (not for LOCAL/UNKNOWN).
    pub fn client(&self) -> Option<String> {
        self.header.as_ref().and_then(Header::client)
    }
}

/// Builders of headers, for tests and for `bench`-like senders.
pub mod build {
    use super::*;

    /// A v1 line for a TCP connection from `source` to `destination`.
    pub fn v1(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
        let proto = if source.is_ipv4() { "TCP4" } else { "TCP6" };
        format!(
            "PROXY {proto} {} {} {} {}\r\n",
            source.ip(),
            destination.ip(),
            source.port(),
            destination.port()
        )
        .into_bytes()
    }

    /// A v2 PROXY header for TCP from `source` to `destination` (same
    /// family), followed by `tlvs` (type, value), with a CRC32c TLV if asked.
    pub fn v2(
        source: SocketAddr,
        destination: SocketAddr,
        tlvs: &[(u8, &[u8])],
        crc: bool,
    ) -> Vec<u8> {
        let mut block = Vec::new();
        let family = match (source.ip(), destination.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                block.extend_from_slice(&s.octets());
                block.extend_from_slice(&d.octets());
                0x11
            }
            (s, d) => {
                let six = |ip: IpAddr| match ip {
                    IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                    IpAddr::V6(v6) => v6,
                };
                block.extend_from_slice(&six(s).octets());
                block.extend_from_slice(&six(d).octets());
                0x21
            }
        };
        block.extend_from_slice(&source.port().to_be_bytes());
        block.extend_from_slice(&destination.port().to_be_bytes());
        v2_raw(0x21, family, &block, tlvs, crc)
    }

    /// A v2 `LOCAL` header (a health check), with no address block.
    pub fn v2_local() -> Vec<u8> {
        v2_raw(0x20, 0x00, &[], &[], false)
    }

    /// Any v2 header: version/command byte, family/transport byte, the
    /// address block, TLVs, and an optional CRC32c TLV at the end.
    pub fn v2_raw(
        ver_cmd: u8,
        family: u8,
        block: &[u8],
        tlvs: &[(u8, &[u8])],
        crc: bool,
    ) -> Vec<u8> {
        let mut body = block.to_vec();
        for (kind, value) in tlvs {
            body.push(*kind);
            body.extend_from_slice(&(value.len() as u16).to_be_bytes());
            body.extend_from_slice(value);
        }
        let crc_at = if crc {
            body.extend_from_slice(&[PP2_TYPE_CRC32C, 0, 4]);
            let at = V2_FIXED + body.len();
            body.extend_from_slice(&[0; 4]);
            Some(at)
        } else {
            None
        };
        let mut header = V2_SIGNATURE.to_vec();
        header.push(ver_cmd);
        header.push(family);
        header.extend_from_slice(&(body.len() as u16).to_be_bytes());
        header.extend_from_slice(&body);
        if let Some(at) = crc_at {
            let sum = crc32c(&header);
            header[at..at + 4].copy_from_slice(&sum.to_be_bytes());
        }
        header
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("test address")
    }

    fn parse_whole(bytes: &[u8]) -> Result<(Header, usize), Error> {
        match Parser::new().feed(bytes)? {
            Step::Done { header, consumed } => Ok((header, consumed)),
            Step::More => Err(Error::Incomplete),
        }
    }

    /// Feeds `bytes` in the pieces `cuts` makes; the outcome and where the
    /// header ended (as an offset in the whole input).
    fn parse_split(bytes: &[u8], cuts: &[usize]) -> Result<(Header, usize), Error> {
        let mut parser = Parser::new();
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.push(0);
        cuts.push(bytes.len());
        cuts.sort_unstable();
        cuts.dedup();
        for pair in cuts.windows(2) {
            let (from, to) = (pair[0], pair[1]);
            if let Step::Done { header, consumed } = parser.feed(&bytes[from..to])? {
                assert!(consumed >= 1 && consumed <= to - from);
                return Ok((header, from + consumed));
            }
        }
        Err(Error::Incomplete)
    }

    #[test]
    fn v1_tcp4_and_the_bytes_after_it() {
        let mut input = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n".to_vec();
        let header_len = input.len();
        input.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let (header, consumed) = parse_whole(&input).expect("valid v1");
        assert_eq!(consumed, header_len);
        assert_eq!(
            header.addresses,
            Addresses::Inet {
                source: addr("192.168.0.1:56324"),
                destination: addr("192.168.0.11:443")
            }
        );
        assert_eq!(header.client().as_deref(), Some("192.168.0.1:56324"));
    }

    #[test]
    fn v1_tcp6_longest_line_is_accepted() {
        let full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let line = format!("PROXY TCP6 {full} {full} 65535 65535\r\n");
        assert_eq!(line.len(), 104);
        let (header, _) = parse_whole(line.as_bytes()).expect("valid v1 TCP6");
        assert_eq!(header.version, 1);
        let mapped = "PROXY TCP6 ::ffff:127.0.0.1 ::1 1 2\r\n";
        assert!(parse_whole(mapped.as_bytes()).is_ok());
    }

    #[test]
    fn v1_unknown_is_served_as_direct_up_to_107_bytes() {
        assert_eq!(
            parse_whole(b"PROXY UNKNOWN\r\n")
                .expect("short form")
                .0
                .addresses,
            Addresses::Local
        );
        let full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let line = format!("PROXY UNKNOWN {full} {full} 65535 65535\r\n");
        assert_eq!(line.len(), V1_MAX);
        assert_eq!(
            parse_whole(line.as_bytes()).expect("107 bytes").0.addresses,
            Addresses::Local
        );
        let too_long = format!("PROXY UNKNOWN {full} {full} 65535 655355\r\n");
        assert_eq!(
            parse_whole(too_long.as_bytes()),
            Err(Error::Malformed("v1 line longer than 107 bytes"))
        );
        // Refused at byte 107, before any CRLF arrives.
        let endless = vec![b'x'; 500];
        let mut input = b"PROXY UNKNOWN ".to_vec();
        input.extend_from_slice(&endless);
        assert!(matches!(parse_whole(&input), Err(Error::Malformed(_))));
    }

    #[test]
    fn v1_strictness() {
        let bad: &[&[u8]] = &[
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n",
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\r\n",
            b"PROXY  TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
            b"PROXY TCP4 192.168.0.1  192.168.0.11 56324 443\r\n",
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 \r\n",
            b"PROXY TCP4 192.168.000.1 192.168.0.11 56324 443\r\n",
            b"PROXY TCP4 192.168.0.1 192.168.0.11 056324 443\r\n",
            b"PROXY TCP4 192.168.0.1 192.168.0.11 65536 443\r\n",
            b"PROXY TCP4 256.168.0.1 192.168.0.11 1 443\r\n",
            b"PROXY TCP4 ::1 ::1 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n",
            b"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n",
            b"PROXY UNKNOWNX\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 1 +2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\x00\r\n",
            b"PROXY\r\n",
        ];
        for input in bad {
            let result = parse_whole(input);
            assert!(
                matches!(result, Err(Error::Malformed(_))),
                "{:?} gave {result:?}",
                input.escape_ascii().to_string()
            );
        }
        assert_eq!(parse_whole(b"PROXX"), Err(Error::Missing));
        assert_eq!(parse_whole(b"GET / HTTP/1.0\r\n"), Err(Error::Missing));
        assert_eq!(parse_whole(b"hello"), Err(Error::Missing));
    }

    #[test]
    fn v2_inet_inet6_unix_and_local() {
        let v4 = build::v2(addr("10.1.2.3:4567"), addr("127.0.0.1:8000"), &[], false);
        assert_eq!(v4.len(), 28);
        let (header, consumed) = parse_whole(&v4).expect("v2 IPv4");
        assert_eq!(consumed, 28);
        assert_eq!(header.client().as_deref(), Some("10.1.2.3:4567"));

        let v6 = build::v2(addr("[2001:db8::7]:9"), addr("[::1]:8000"), &[], false);
        let (header, _) = parse_whole(&v6).expect("v2 IPv6");
        assert_eq!(header.client().as_deref(), Some("[2001:db8::7]:9"));

        let mut block = vec![0u8; 216];
        block[..9].copy_from_slice(b"/run/a\nb\x01");
        block[108..114].copy_from_slice(b"\0echo1");
        let unix = build::v2_raw(0x21, 0x31, &block, &[], false);
        let (header, _) = parse_whole(&unix).expect("v2 unix");
        assert_eq!(header.client().as_deref(), Some("/run/a\\nb\\x01"));
        match header.addresses {
            Addresses::Unix { destination, .. } => assert_eq!(destination.to_string(), "@echo1"),
            other => panic!("{other:?}"),
        }

        let (local, consumed) = parse_whole(&build::v2_local()).expect("LOCAL");
        assert_eq!((local.addresses, consumed), (Addresses::Local, 16));
        // LOCAL with an address block anyway: skipped, still direct.
        let local_block = build::v2_raw(0x20, 0x11, &[9; 12], &[(4, b"pad")], false);
        assert_eq!(
            parse_whole(&local_block).expect("LOCAL").0.addresses,
            Addresses::Local
        );
        // PROXY with an unspecified family: the real addresses apply.
        let unspec = build::v2_raw(0x21, 0x00, &[1, 2, 3], &[], false);
        assert_eq!(
            parse_whole(&unspec).expect("UNSPEC").0.addresses,
            Addresses::Local
        );
    }

    #[test]
    fn v2_tlvs_and_crc() {
        let tlvs: &[(u8, &[u8])] = &[(0x01, b"h2"), (0x04, b""), (0x05, &[7; 128]), (0xE0, b"x")];
        let header = build::v2(addr("1.2.3.4:5"), addr("6.7.8.9:10"), tlvs, true);
        let mut input = header.clone();
        input.extend_from_slice(b"payload");
        let (parsed, consumed) = parse_whole(&input).expect("TLVs and CRC");
        assert_eq!(consumed, header.len());
        assert_eq!(parsed.client().as_deref(), Some("1.2.3.4:5"));

        // Any changed bit is caught (bar the CRC TLV's own type byte, which
        // turns it into an unknown TLV and the header into one without a CRC).
        let crc_type_at = header.len() - 7;
        for flip in (0..header.len()).filter(|&at| at != crc_type_at) {
            let mut bad = header.clone();
            bad[flip] ^= 0x40;
            assert!(parse_whole(&bad).is_err(), "bit flipped at {flip} accepted");
        }
    }

    #[test]
    fn v2_strictness() {
        let good = build::v2(addr("1.2.3.4:5"), addr("6.7.8.9:10"), &[(1, b"ab")], false);
        let with = |at: usize, byte: u8| {
            let mut bad = good.clone();
            bad[at] = byte;
            bad
        };
        assert_eq!(
            parse_whole(&with(12, 0x11)),
            Err(Error::Malformed("v2 signature with a version other than 2"))
        );
        assert_eq!(
            parse_whole(&with(12, 0x22)),
            Err(Error::Malformed("v2 command neither LOCAL nor PROXY"))
        );
        assert_eq!(
            parse_whole(&with(13, 0x41)),
            Err(Error::Malformed("v2 address family unknown"))
        );
        assert_eq!(
            parse_whole(&with(13, 0x13)),
            Err(Error::Malformed("v2 transport unknown"))
        );
        assert_eq!(
            parse_whole(&with(13, 0x12)),
            Err(Error::Malformed(
                "v2 datagram transport on a stream connection"
            ))
        );
        assert_eq!(
            parse_whole(&with(7, 0x00)),
            Err(Error::Malformed("bad v2 signature"))
        );
        // Length too short for the IPv4 block.
        let mut short = good.clone();
        short[14..16].copy_from_slice(&11u16.to_be_bytes());
        assert!(matches!(parse_whole(&short), Err(Error::Malformed(_))));
        // A TLV that claims more than the header holds.
        let mut over = good.clone();
        let last = over.len() - 1;
        over[last - 2] = 3; // TLV length 2 -> 3: past the end
        over.push(b'!');
        assert_eq!(
            parse_whole(&over),
            Err(Error::Malformed("v2 TLV runs past the header's length"))
        );
        // A TLV header cut by the length.
        let cut = build::v2_raw(0x21, 0x11, &[0; 14], &[], false);
        assert_eq!(
            parse_whole(&cut),
            Err(Error::Malformed("v2 TLV cut short by the header's length"))
        );
        // A wrong CRC.
        let mut crc = build::v2(addr("1.2.3.4:5"), addr("6.7.8.9:10"), &[], true);
        let last = crc.len() - 1;
        crc[last] ^= 1;
        assert_eq!(
            parse_whole(&crc),
            Err(Error::Malformed("v2 CRC32c does not match"))
        );
    }

    #[test]
    fn crc32c_known_value() {
        // RFC 3720 B.4: 32 bytes of zeros.
        assert_eq!(crc32c(&[0; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn preamble_times_out_and_hands_over_the_rest() {
        let now = Instant::now();
        let mut preamble = Preamble::new();
        let deadline = preamble.start(now);
        assert!(!preamble.expired(now));
        assert!(preamble.expired(deadline));
        let mut input = build::v1(addr("9.9.9.9:99"), addr("1.1.1.1:1"));
        let header_len = input.len();
        input.extend_from_slice(b"echo me");
        assert_eq!(preamble.feed(&input[..3]), Ok(3));
        assert_eq!(preamble.feed(&input[3..]), Ok(header_len - 3));
        assert!(!preamble.pending() && !preamble.expired(deadline));
        assert_eq!(preamble.client().as_deref(), Some("9.9.9.9:99"));
        assert_eq!(preamble.feed(b"more"), Ok(0));
    }

    fn any_valid_header() -> impl Strategy<Value = Vec<u8>> {
        let v4 = (
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            any::<u16>(),
            any::<u16>(),
        )
            .prop_map(|(s, d, sp, dp)| {
                (
                    SocketAddr::new(Ipv4Addr::from(s).into(), sp),
                    SocketAddr::new(Ipv4Addr::from(d).into(), dp),
                )
            });
        let v6 = (
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            any::<u16>(),
            any::<u16>(),
        )
            .prop_map(|(s, d, sp, dp)| {
                (
                    SocketAddr::new(Ipv6Addr::from(s).into(), sp),
                    SocketAddr::new(Ipv6Addr::from(d).into(), dp),
                )
            });
        let pair = prop_oneof![v4, v6];
        let tlvs = prop::collection::vec(
            (
                any::<u8>().prop_filter("not CRC", |t| *t != 3),
                prop::collection::vec(any::<u8>(), 0..40),
            ),
            0..4,
        );
        prop_oneof![
            pair.clone().prop_map(|(s, d)| build::v1(s, d)),
            (pair, tlvs, any::<bool>()).prop_map(|((s, d), tlvs, crc)| {
                let tlvs: Vec<(u8, &[u8])> = tlvs.iter().map(|(t, v)| (*t, v.as_slice())).collect();
                build::v2(s, d, &tlvs, crc)
            }),
            Just(build::v2_local()),
            Just(b"PROXY UNKNOWN\r\n".to_vec()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// A valid header parses the same whatever the reads look like, and
        /// ends exactly where it ends.
        #[test]
        fn any_split_of_a_valid_header_parses_the_same(
            header in any_valid_header(),
            payload in prop::collection::vec(any::<u8>(), 0..64),
            cuts in prop::collection::vec(any::<usize>(), 0..20),
        ) {
            let mut input = header.clone();
            input.extend_from_slice(&payload);
            let whole = parse_whole(&input);
            let split = parse_split(&input, &cuts);
            prop_assert_eq!(&whole, &split);
            let (_, consumed) = whole.expect("a valid header");
            prop_assert_eq!(consumed, header.len());
        }

        /// Arbitrary bytes, split anyhow: never a panic, the same verdict
        /// as the whole input, and a header never longer than the input.
        #[test]
        fn garbage_never_panics_and_split_does_not_matter(
            input in prop::collection::vec(any::<u8>(), 0..300),
            cuts in prop::collection::vec(any::<usize>(), 0..20),
        ) {
            let whole = parse_whole(&input);
            let split = parse_split(&input, &cuts);
            prop_assert_eq!(&whole, &split);
            if let Ok((_, consumed)) = whole {
                prop_assert!(consumed <= input.len());
            }
        }

        /// Fuzz-style: a valid header with bytes changed, cut or inserted.
        /// No panic, split-invariant, and a v1 line never goes past 107 bytes.
        #[test]
        fn mutated_headers_never_panic(
            header in any_valid_header(),
            edits in prop::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..6),
            cuts in prop::collection::vec(any::<usize>(), 0..10),
        ) {
            let mut input = header;
            for (at, byte, op) in edits {
                let at = at % (input.len() + 1);
                match op {
                    0 if at < input.len() => input[at] = byte,
                    1 => input.insert(at, byte),
                    _ => input.truncate(at.max(1)),
                }
            }
            let whole = parse_whole(&input);
            prop_assert_eq!(&whole, &parse_split(&input, &cuts));
            if let Ok((header, consumed)) = whole {
                if header.version == 1 {
                    prop_assert!(consumed <= V1_MAX);
                }
            }
        }
    }
}
