//! The last turns of the loop, kept for the page's "last turns" strip
//! (`--trace` made visible): a fixed ring of [`TURNS_KEPT`] records, each
//! a few counters and the slab keys of the turn's first [`TOKENS_KEPT`]
//! events.
//!
//! Its cost is bounded by design and paid once per turn, never per call
//! or per message: one record written at the end of the turn (the keys
//! copied from the events `poll` returned), no allocation, no clock read,
//! no string. And only while a page is open (`TurnLog::on`, set by the
//! reactor's publisher): otherwise a turn pays one test of a flag
//! (measured in docs/PERFORMANCE.md).

/// Turns the ring remembers (a power of two: the index is a mask).
pub const TURNS_KEPT: usize = 32;

/// Handler keys kept per turn (the calls after these are only counted).
pub const TOKENS_KEPT: usize = 4;

/// The buckets of the events-per-turn histogram (`Stats::turn_events`),
/// by powers of two, and their names in `status --json`.
pub const EVENT_BUCKETS: [&str; 8] = ["0", "1", "2-3", "4-7", "8-15", "16-31", "32-63", "64+"];

/// The histogram bucket of a turn that handled `events` events: the bit
/// length of the count, capped (a few instructions, no branch).
#[inline]
pub fn bucket(events: usize) -> usize {
    ((usize::BITS - events.leading_zeros()) as usize).min(EVENT_BUCKETS.len() - 1)
}

/// One turn: what it handled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TurnRecord {
    /// The turn's number (`loop_iterations` after it began).
    pub turn: u64,
    /// Readiness events `poll` returned.
    pub events: u32,
    /// Handler calls: the events, the handlers called back, the timers.
    pub calls: u32,
    /// Timers that fired.
    pub timers: u32,
    /// The slab keys of the first events (`events` says how many are set).
    pub tokens: [u32; TOKENS_KEPT],
}

/// The ring of the last turns.
#[derive(Clone, Debug)]
pub struct TurnLog {
    /// Record turns (a page is open); off, the ring keeps what it had.
    pub on: bool,
    ring: [TurnRecord; TURNS_KEPT],
    /// Index of the newest record.
    at: usize,
}

impl Default for TurnLog {
    fn default() -> Self {
        TurnLog {
            on: false,
            ring: [TurnRecord::default(); TURNS_KEPT],
            at: 0,
        }
    }
}

impl TurnLog {
    /// Records a finished turn over the oldest record: its number, the
    /// slab keys of its events (`keys`, of which the first few are kept),
    /// how many handlers it called back and how many timers fired.
    #[inline]
    pub fn record(
        &mut self,
        turn: u64,
        events: usize,
        keys: impl Iterator<Item = usize>,
        resumed: usize,
        timers: u32,
    ) {
        self.at = (self.at + 1) & (TURNS_KEPT - 1);
        let record = &mut self.ring[self.at];
        record.turn = turn;
        record.events = events as u32;
        record.calls = (events + resumed) as u32 + timers;
        record.timers = timers;
        for (slot, key) in record.tokens.iter_mut().zip(keys) {
            *slot = key as u32;
        }
    }

    /// The turns kept, oldest first (turns never recorded left out).
    pub fn recent(&self) -> Vec<TurnRecord> {
        (1..=TURNS_KEPT)
            .map(|back| self.ring[(self.at + back) & (TURNS_KEPT - 1)])
            .filter(|record| record.turn > 0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_last_turns_oldest_first() {
        let mut log = TurnLog::default();
        assert!(log.recent().is_empty());
        for turn in 1..=(TURNS_KEPT as u64 + 5) {
            let events = turn as usize % 7;
            log.record(turn, events, (0..events).map(|k| k + 10), 2, 1);
        }
        let recent = log.recent();
        assert_eq!(recent.len(), TURNS_KEPT);
        assert_eq!(recent[0].turn, 6);
        let last = recent[TURNS_KEPT - 1];
        assert_eq!(last.turn, TURNS_KEPT as u64 + 5);
        assert_eq!(last.events as u64, last.turn % 7);
        assert_eq!(last.calls, last.events + 2 + 1);
        assert_eq!(last.timers, 1);
        assert_eq!(&last.tokens[..last.events as usize], [10, 11]);
        let busy = recent
            .iter()
            .find(|r| r.events == 6)
            .expect("a turn of 6 events");
        assert_eq!(
            busy.tokens,
            [10, 11, 12, 13],
            "only the first keys are kept"
        );
    }

    #[test]
    fn buckets_cover_every_count() {
        let buckets: Vec<usize> = [0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 63, 64, 100_000]
            .into_iter()
            .map(bucket)
            .collect();
        assert_eq!(buckets, [0, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7]);
    }
}
