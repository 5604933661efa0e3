//! The bytes of message number `seq`: what the load generator sends and
//! expects back.
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
}
