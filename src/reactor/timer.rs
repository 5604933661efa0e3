//! Deadlines without threads: the nearest one becomes the poll timeout.
//!
//! A binary min-heap of `(deadline, token, reason)` with lazy cancellation, as in
//! redis's `ae.c` or libuv. Why not a timing wheel: the heap needs no tick,
//! so an idle daemon sleeps until the one deadline that matters, and its
//! cost is O(log n) per arm with nothing to tune. Cancelling is free: an
//! entry is never removed early; when it pops, the handler checks whether
//! its deadline still holds (a connection re-arms only then, from its
//! last-activity time), and an entry whose token no longer exists is
//! skipped because tokens carry a generation. Recording activity on every
//! byte is therefore O(1): one `Instant` store in the handler.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use mio::Token;

/// Why a handler set a timer: its own tag, handed back to
/// `Handler::timeout` so it knows which of its deadlines fired (a
/// connection's idle limit, its lingering close, a retry...).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reason(pub u32);

/// The deadline heap.
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, usize, Reason)>>,
}

impl Timers {
    /// An empty heap.
    pub fn new() -> Self {
        Self::default()
    }

    /// Schedules `token`'s handler to be called at `deadline`, told `reason`.
    pub fn insert(&mut self, deadline: Instant, token: Token, reason: Reason) {
        self.heap.push(Reverse((deadline, token.0, reason)));
    }

    /// The earliest deadline, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((deadline, _, _))| *deadline)
    }

    /// The token whose deadline is nearest, if any.
    pub fn next_token(&self) -> Option<Token> {
        self.heap.peek().map(|Reverse((_, token, _))| Token(*token))
    }

    /// How long poll may sleep: until the nearest deadline, or forever.
    pub fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        self.next_deadline()
            .map(|deadline| deadline.saturating_duration_since(now))
    }

    /// Pops one entry whose deadline is at or before `now`.
    pub fn pop_expired(&mut self, now: Instant) -> Option<(Token, Reason)> {
        match self.heap.peek() {
            Some(Reverse((deadline, _, _))) if *deadline <= now => self
                .heap
                .pop()
                .map(|Reverse((_, token, reason))| (Token(token), reason)),
            _ => None,
        }
    }

    /// Entries in the heap, live or stale.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when no deadline is pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Drops the entries whose token is no longer `live`. Lazy
    /// cancellation leaves a closed connection's entry until its deadline;
    /// under heavy churn those would pile up, so the loop calls this when
    /// stale entries outnumber live handlers (amortised O(1) per entry).
    pub fn retain_live(&mut self, live: impl Fn(Token) -> bool) {
        self.heap
            .retain(|Reverse((_, token, _))| live(Token(*token)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_deadline_order_and_only_when_due() {
        let start = Instant::now();
        let mut timers = Timers::new();
        timers.insert(start + Duration::from_millis(30), Token(3), Reason(0));
        timers.insert(start + Duration::from_millis(10), Token(1), Reason(7));
        timers.insert(start + Duration::from_millis(20), Token(2), Reason(0));
        assert_eq!(timers.poll_timeout(start), Some(Duration::from_millis(10)));
        assert_eq!(timers.pop_expired(start), None);
        let later = start + Duration::from_millis(25);
        assert_eq!(timers.pop_expired(later), Some((Token(1), Reason(7))));
        assert_eq!(timers.pop_expired(later), Some((Token(2), Reason(0))));
        assert_eq!(timers.pop_expired(later), None);
        assert_eq!(timers.len(), 1);
    }

    #[test]
    fn stale_entries_can_be_swept() {
        let start = Instant::now();
        let mut timers = Timers::new();
        for token in 0..10 {
            timers.insert(start + Duration::from_secs(300), Token(token), Reason(0));
        }
        timers.retain_live(|token| token.0 % 2 == 0);
        assert_eq!(timers.len(), 5);
        assert_eq!(timers.next_token().map(|t| t.0 % 2), Some(0));
    }

    #[test]
    fn a_past_deadline_means_do_not_sleep() {
        let start = Instant::now();
        let mut timers = Timers::new();
        timers.insert(start, Token(7), Reason(0));
        assert_eq!(
            timers.poll_timeout(start + Duration::from_secs(1)),
            Some(Duration::ZERO)
        );
    }
}
