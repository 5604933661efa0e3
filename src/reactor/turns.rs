//! The last turns of the loop, kept for the page's "last turns" strip
//! (`--trace` made visible): a fixed ring of [`TURNS_KEPT`] records, each
//! a few counters and the first [`TOKENS_KEPT`] slab keys the turn called.
//!
//! Its cost is bounded by design: no allocation, no clock read, no string;
//! per turn one record reset, per handler call one compare and at most one
//! store, per timer one increment (measured in docs/PERFORMANCE.md).

/// Turns the ring remembers.
pub const TURNS_KEPT: usize = 32;

/// Handler keys kept per turn (the calls after these are only counted).
pub const TOKENS_KEPT: usize = 4;

/// The buckets of the events-per-turn histogram: the lowest event count
/// of each (`Stats::turn_events`), and their names in `status --json`.
pub const EVENT_BUCKETS: [(u64, &str); 6] = [
    (0, "0"),
    (1, "1"),
    (2, "2-3"),
    (4, "4-15"),
    (16, "16-63"),
    (64, "64+"),
];

/// The histogram bucket of a turn that handled `events` events.
pub fn bucket(events: usize) -> usize {
    match events {
        0 => 0,
        1 => 1,
        2..=3 => 2,
        4..=15 => 3,
        16..=63 => 4,
        _ => 5,
    }
}

/// One turn: what it handled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TurnRecord {
    /// The turn's number (`loop_iterations` after it began).
    pub turn: u64,
    /// Readiness events `poll` returned.
    pub events: u32,
    /// Handler calls (events, handlers called back, timers, spawned starts).
    pub calls: u32,
    /// Timers that fired.
    pub timers: u32,
    /// The slab keys of the first `TOKENS_KEPT` calls (`calls` says how many are set).
    pub tokens: [u32; TOKENS_KEPT],
}

/// The ring of the last turns.
#[derive(Clone, Debug)]
pub struct TurnLog {
    ring: [TurnRecord; TURNS_KEPT],
    /// Index of the current turn's record.
    at: usize,
}

impl Default for TurnLog {
    fn default() -> Self {
        TurnLog {
            ring: [TurnRecord::default(); TURNS_KEPT],
            at: 0,
        }
    }
}

impl TurnLog {
    /// A new turn begins: its record replaces the oldest.
    #[inline]
    pub fn begin(&mut self, turn: u64, events: usize) {
        self.at = (self.at + 1) % TURNS_KEPT;
        self.ring[self.at] = TurnRecord {
            turn,
            events: u32::try_from(events).unwrap_or(u32::MAX),
            ..TurnRecord::default()
        };
    }

    /// The turn called the handler at slab key `key`.
    #[inline]
    pub fn call(&mut self, key: usize) {
        let record = &mut self.ring[self.at];
        if let Some(slot) = record.tokens.get_mut(record.calls as usize) {
            *slot = key as u32;
        }
        record.calls = record.calls.saturating_add(1);
    }

    /// A timer fired in this turn.
    #[inline]
    pub fn timer(&mut self) {
        let record = &mut self.ring[self.at];
        record.timers = record.timers.saturating_add(1);
    }

    /// The turns kept, oldest first (turns never begun left out).
    pub fn recent(&self) -> Vec<TurnRecord> {
        (1..=TURNS_KEPT)
            .map(|back| self.ring[(self.at + back) % TURNS_KEPT])
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
            log.begin(turn, turn as usize);
            for key in 0..turn as usize % 7 {
                log.call(key + 10);
            }
            log.timer();
        }
        let recent = log.recent();
        assert_eq!(recent.len(), TURNS_KEPT);
        assert_eq!(recent[0].turn, 6);
        let last = recent[TURNS_KEPT - 1];
        assert_eq!(last.turn, TURNS_KEPT as u64 + 5);
        assert_eq!(last.calls as u64, last.turn % 7);
        assert_eq!(last.timers, 1);
        // 37 % 7 = 2 calls: two keys kept, the rest zero.
        assert_eq!(last.tokens, [10, 11, 0, 0]);
        let busy = recent
            .iter()
            .find(|r| r.calls == 6)
            .expect("a turn of 6 calls");
        assert_eq!(
            busy.tokens,
            [10, 11, 12, 13],
            "only the first keys are kept"
        );
    }

    #[test]
    fn buckets_cover_every_count() {
        let names: Vec<usize> = [0, 1, 2, 3, 4, 15, 16, 63, 64, 100_000]
            .into_iter()
            .map(bucket)
            .collect();
        assert_eq!(names, [0, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
        for (index, (low, _)) in EVENT_BUCKETS.iter().enumerate() {
            assert_eq!(bucket(*low as usize), index);
        }
    }
}
