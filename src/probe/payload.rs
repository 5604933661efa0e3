//! The verified payload: the bytes of message number `seq`, what bench and
//! ping send and expect back, and the one description of an echo that
//! differs from what was sent (client, ping and bench all use it).
//!
//! A message opens with its sequence number (little-endian, as many of its
//! 8 bytes as the message has room for) mixed with a per-run nonce, and
//! continues with a window of a fixed pseudo-random block whose start
//! depends on `seq`. So consecutive messages differ everywhere, a reordered
//! echo fails on its header and a corrupted one on its body, and checking
//! a body is one `memcmp` against a slice: no per-byte arithmetic on the
//! hot path, which matters when the generator shares two cores with the
//! server it measures.

/// Bytes of the header that carries the sequence number.
pub const SEQ_BYTES: usize = 8;

/// Distinct body windows: prime, so consecutive sequence numbers never
/// share a window.
const PERIOD: usize = 4093;

/// The pattern of one run.
#[derive(Clone, Debug)]
pub struct Pattern {
    size: usize,
    nonce: u64,
    block: Vec<u8>,
}

impl Pattern {
    /// The pattern of `size`-byte messages for a run with this `nonce`.
    pub fn new(size: usize, nonce: u64) -> Pattern {
        let mut state = nonce | 1;
        let block = (0..PERIOD + size)
            .map(|_| {
                // xorshift64: cheap and good enough to make every byte count.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        Pattern { size, nonce, block }
    }

    /// Bytes per message.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The run's nonce, e.g. to name the run's sockets.
    pub fn nonce(&self) -> u64 {
        self.nonce
    }

    /// Header bytes per message: the sequence number, truncated to the size.
    pub fn header_len(&self) -> usize {
        self.size.min(SEQ_BYTES)
    }

    fn header(&self, seq: u64) -> [u8; SEQ_BYTES] {
        (seq ^ self.nonce).to_le_bytes()
    }

    fn body(&self, seq: u64) -> &[u8] {
        let start = (seq % PERIOD as u64) as usize;
        &self.block[start..start + self.size]
    }

    /// Appends message `seq` to `out`.
    pub fn write(&self, seq: u64, out: &mut Vec<u8>) {
        let header = self.header_len();
        out.extend_from_slice(&self.header(seq)[..header]);
        out.extend_from_slice(&self.body(seq)[header..]);
    }

    /// True when `data` equals the bytes of message `seq` from `offset` on.
    pub fn check(&self, seq: u64, offset: usize, data: &[u8]) -> bool {
        let end = offset + data.len();
        if end > self.size {
            return false;
        }
        let header_len = self.header_len();
        let (head, tail) = data.split_at(header_len.saturating_sub(offset).min(data.len()));
        if !head.is_empty() && head != &self.header(seq)[offset..offset + head.len()] {
            return false;
        }
        let from = offset + head.len();
        tail == &self.body(seq)[from..end]
    }

    /// The sequence number a datagram claims, modulo what its header holds,
    /// for matching it to an outstanding message.
    pub fn seq_of(&self, datagram: &[u8]) -> Option<u64> {
        let header = self.header_len();
        if datagram.len() < header || header == 0 {
            return None;
        }
        let mut bytes = [0u8; SEQ_BYTES];
        bytes[..header].copy_from_slice(&datagram[..header]);
        Some((u64::from_le_bytes(bytes) ^ self.nonce) & self.seq_mask())
    }

    /// The bits of a sequence number that survive in the header.
    pub fn seq_mask(&self) -> u64 {
        match self.header_len() {
            SEQ_BYTES => u64::MAX,
            n => (1u64 << (8 * n)) - 1,
        }
    }
}

/// A nonce that differs between runs, so a late echo from an earlier run
/// (a reused port) cannot pass as one of ours.
pub fn nonce() -> u64 {
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    time ^ (u64::from(std::process::id()) << 32)
}

/// Where an echo first differs from what was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// Offset of the first differing byte, from the start of the message.
    pub at: usize,
    /// The byte sent there (None: the echo is longer than the message).
    pub expected: Option<u8>,
    /// The byte echoed there (None: the echo is shorter).
    pub got: Option<u8>,
    /// Bytes of the message.
    pub sent: usize,
    /// Bytes of the echo.
    pub received: usize,
    /// Header bytes at the start of the message (0: none), to say whether
    /// the damage is in the header (reordered or duplicated) or the body.
    pub header: usize,
}

impl Mismatch {
    /// Compares an echo with the message it answers, `got` standing for the
    /// echo's bytes from `offset` on; None when they agree (as far as
    /// `got` reaches, if `partial`).
    pub fn find(expected: &[u8], offset: usize, got: &[u8], partial: bool) -> Option<Mismatch> {
        let want = expected.get(offset..).unwrap_or_default();
        let common = want.len().min(got.len());
        let at = want[..common]
            .iter()
            .zip(&got[..common])
            .position(|(a, b)| a != b);
        let at = match at {
            Some(at) => at,
            None if got.len() == want.len() || (partial && got.len() < want.len()) => return None,
            None => common,
        };
        Some(Mismatch {
            at: offset + at,
            expected: want.get(at).copied(),
            got: got.get(at).copied(),
            sent: expected.len(),
            received: offset + got.len(),
            header: 0,
        })
    }

    /// The one description of a bad echo: `subject` names what differs
    /// ("echo", "connection 3: echo of message 7").
    pub fn describe(&self, subject: &str) -> String {
        let byte = |b: Option<u8>| b.map_or_else(|| "nothing".to_string(), |b| format!("{b:#04x}"));
        let region = if self.header == 0 {
            ""
        } else if self.at < self.header {
            " in the sequence header (reordered, duplicated or corrupt)"
        } else {
            " in the payload (corrupt)"
        };
        format!(
            "{subject} differs at byte {}: expected {}, got {}{region}; {} bytes sent, {} received, first difference at byte {}",
            self.at,
            byte(self.expected),
            byte(self.got),
            self.sent,
            self.received,
            self.at
        )
    }
}

impl Pattern {
    /// Describes how `got` (message `seq` from `offset` on) differs from
    /// what was sent; call it only once [`Pattern::check`] said no.
    pub fn mismatch(&self, seq: u64, offset: usize, got: &[u8], subject: &str) -> String {
        let mut want = Vec::with_capacity(self.size);
        self.write(seq, &mut want);
        let mut found = Mismatch::find(&want, offset, got, true).unwrap_or(Mismatch {
            at: offset,
            expected: want.get(offset).copied(),
            got: got.first().copied(),
            sent: self.size,
            received: offset + got.len(),
            header: 0,
        });
        found.header = self.header_len();
        found.describe(subject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_checks_whole_and_in_pieces() {
        let pattern = Pattern::new(100, 0xdead_beef);
        let mut msg = Vec::new();
        pattern.write(42, &mut msg);
        assert_eq!(msg.len(), 100);
        assert!(pattern.check(42, 0, &msg));
        for split in [1, 3, 8, 9, 50, 99] {
            assert!(pattern.check(42, 0, &msg[..split]));
            assert!(pattern.check(42, split, &msg[split..]));
        }
        assert!(!pattern.check(43, 0, &msg), "another seq must not match");
        assert!(!pattern.check(42, 1, &msg), "running past the end");
        assert_eq!(pattern.seq_of(&msg), Some(42));
    }

    #[test]
    fn a_flipped_byte_anywhere_is_caught() {
        let pattern = Pattern::new(64, 7);
        let mut msg = Vec::new();
        pattern.write(9, &mut msg);
        for at in 0..msg.len() {
            let mut bad = msg.clone();
            bad[at] ^= 1;
            assert!(!pattern.check(9, 0, &bad), "flip at {at}");
        }
    }

    #[test]
    fn consecutive_messages_differ_in_body() {
        let pattern = Pattern::new(32, 1);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        pattern.write(1, &mut a);
        pattern.write(2, &mut b);
        assert_ne!(a[8..], b[8..]);
    }

    #[test]
    fn tiny_messages_carry_a_truncated_seq() {
        let pattern = Pattern::new(2, 5);
        let mut msg = Vec::new();
        pattern.write(0x1_2345, &mut msg);
        assert_eq!(msg.len(), 2);
        assert_eq!(pattern.seq_of(&msg), Some(0x2345));
        assert!(pattern.check(0x1_2345, 0, &msg));
        assert_eq!(pattern.seq_mask(), 0xffff);
    }

    #[test]
    fn a_mismatch_names_the_first_difference() {
        assert_eq!(Mismatch::find(b"abc", 0, b"abc", false), None);
        let m = Mismatch::find(b"abc", 0, b"abd", false).unwrap();
        assert_eq!((m.at, m.expected, m.got), (2, Some(b'c'), Some(b'd')));
        let text = m.describe("echo");
        assert!(text.contains("echo differs at byte 2"), "{text}");
        assert!(text.contains("first difference at byte 2"), "{text}");
        let short = Mismatch::find(b"abc", 0, b"ab", false).unwrap();
        assert!(short.describe("echo").contains("3 bytes sent, 2 received"));
        assert_eq!(Mismatch::find(b"abc", 0, b"ab", true), None);
        let pattern = Pattern::new(64, 3);
        let mut msg = Vec::new();
        pattern.write(5, &mut msg);
        msg[20] ^= 1;
        let text = pattern.mismatch(5, 16, &msg[16..], "connection 0: echo of message 5");
        assert!(text.contains("differs at byte 20"), "{text}");
        assert!(text.contains("in the payload"), "{text}");
    }
}
