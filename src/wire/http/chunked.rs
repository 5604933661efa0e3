//! Chunked bodies (RFC 9112 7.1): decoded in pieces of any size, bounded.

use super::{refuse, Refusal, MAX_HEAD};

/// Longest chunk-size line (size, extensions) of a chunked body.
const MAX_CHUNK_LINE: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Hex digits of the size so far.
    Size {
        value: u64,
        digits: u8,
    },
    /// `;extension` up to the CR, after a size.
    Extension {
        value: u64,
    },
    /// The LF after the size line's CR.
    SizeLf {
        value: u64,
    },
    /// Bytes of data still to come in this chunk.
    Data(u64),
    /// The CR, then the LF, after a chunk's data.
    DataCr,
    DataLf,
    /// Trailer fields: at a line's start, inside one, at the LF of one.
    TrailerStart,
    TrailerLine,
    TrailerLf {
        end: bool,
    },
    /// The body is complete.
    Done,
}

/// Decodes a chunked body fed in pieces of any size; the data goes to a
/// caller's buffer, bounded by `max` bytes (else 413). Trailers are read
/// past (bounded by [`MAX_HEAD`]) and dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkedDecoder {
    state: Chunk,
    line: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: Chunk::Size {
                value: 0,
                digits: 0,
            },
            line: 0,
        }
    }
}

impl ChunkedDecoder {
    /// True once the last chunk and the trailers are read.
    pub fn is_done(&self) -> bool {
        self.state == Chunk::Done
    }

    /// Feeds `input`; appends data to `body` (at most `max` bytes in all).
    /// Returns the bytes consumed: all of `input`, or fewer once done (what
    /// follows belongs to the next message).
    pub fn decode(
        &mut self,
        input: &[u8],
        body: &mut Vec<u8>,
        max: usize,
    ) -> Result<usize, Refusal> {
        let mut i = 0;
        while i < input.len() {
            let byte = input[i];
            self.state = match self.state {
                Chunk::Done => return Ok(i),
                Chunk::Data(left) => {
                    let take = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(input.len() - i);
                    if body.len() + take > max {
                        return Err(refuse(413, "body over --max-buffer"));
                    }
                    body.extend_from_slice(&input[i..i + take]);
                    i += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        Chunk::DataCr
                    } else {
                        Chunk::Data(left)
                    };
                    continue;
                }
                Chunk::Size { value, digits } => {
                    self.line += 1;
                    match byte {
                        b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                            if digits >= 15 {
                                return Err(refuse(400, "chunk size too large"));
                            }
                            let digit = (byte as char).to_digit(16).unwrap_or(0);
                            Chunk::Size {
                                value: value * 16 + u64::from(digit),
                                digits: digits + 1,
                            }
                        }
                        b';' if digits > 0 => Chunk::Extension { value },
                        b'\r' if digits > 0 => Chunk::SizeLf { value },
                        _ => return Err(refuse(400, "bad chunk size line")),
                    }
                }
                Chunk::Extension { value } => {
                    self.line += 1;
                    if self.line > MAX_CHUNK_LINE {
                        return Err(refuse(400, "chunk extension too long"));
                    }
                    match byte {
                        b'\r' => Chunk::SizeLf { value },
                        b'\n' => return Err(refuse(400, "bare LF in a chunk line")),
                        b if (b < 0x20 && b != b'\t') || b == 0x7f => {
                            return Err(refuse(400, "control character in a chunk line"))
                        }
                        _ => Chunk::Extension { value },
                    }
                }
                Chunk::SizeLf { value } => {
                    if byte != b'\n' {
                        return Err(refuse(400, "CR without LF in a chunk line"));
                    }
                    self.line = 0;
                    if value == 0 {
                        Chunk::TrailerStart
                    } else {
                        Chunk::Data(value)
                    }
                }
                Chunk::DataCr if byte == b'\r' => Chunk::DataLf,
                Chunk::DataLf if byte == b'\n' => Chunk::Size {
                    value: 0,
                    digits: 0,
                },
                Chunk::DataCr | Chunk::DataLf => {
                    return Err(refuse(400, "chunk data not followed by CRLF"))
                }
                Chunk::TrailerStart | Chunk::TrailerLine => {
                    self.line += 1;
                    if self.line > MAX_HEAD {
                        return Err(refuse(431, "trailers over 16 KiB"));
                    }
                    let start = self.state == Chunk::TrailerStart;
                    match byte {
                        b'\r' => Chunk::TrailerLf { end: start },
                        b'\n' => return Err(refuse(400, "bare LF in trailers")),
                        b' ' | b'\t' if start => {
                            return Err(refuse(400, "obsolete line folding in trailers"))
                        }
                        _ => Chunk::TrailerLine,
                    }
                }
                Chunk::TrailerLf { end } => {
                    if byte != b'\n' {
                        return Err(refuse(400, "CR without LF in trailers"));
                    }
                    if end {
                        Chunk::Done
                    } else {
                        Chunk::TrailerStart
                    }
                }
            };
            i += 1;
        }
        Ok(i)
    }
}
