//! What the reactors of one daemon share, off the path of any message:
//! each publishes its counters (and, with several, its handlers' `status`
//! rows) every 100 ms, and `status`, `/metrics` and the page, served by one
//! reactor, read every reactor's here through `Context::every_reactor` and
//! `Context::every_handler`. The page also marks here that someone watches
//! the loop, so that every reactor records its last turns.
//!
//! A `Board` is a value: `serve` makes one for its reactors and hands each
//! a clone (`Reactor::join_board`); a reactor made alone has its own.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::handler::HandlerInfo;
use super::stats::Stats;

/// How long the reactors keep recording their last turns after the
/// page's last request (it asks once a second).
pub const WATCHED_FOR: Duration = Duration::from_secs(5);

/// One daemon's shared board; clones share it.
#[derive(Clone)]
pub struct Board {
    /// How many reactors share it (fixed when it is made).
    count: usize,
    inner: Arc<Inner>,
}

struct Inner {
    /// Each reactor's counters as last published, by index.
    published: Mutex<Vec<Stats>>,
    /// Each reactor's `status` rows (slab key, row) as last published, by
    /// index (only with several reactors: one alone answers with its own).
    rows: Mutex<Vec<Vec<(usize, HandlerInfo)>>>,
    /// When the page last asked for a summary.
    watched: Mutex<Option<Instant>>,
}

impl fmt::Debug for Board {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Board")
            .field("reactors", &self.count())
            .finish_non_exhaustive()
    }
}

/// A lock that a panicking holder cannot poison for the others: what it
/// guards is a snapshot, whole at every point.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Board {
    /// A board for `count` reactors (at least one), each at zero.
    pub fn new(count: usize) -> Board {
        let count = count.max(1);
        Board {
            count,
            inner: Arc::new(Inner {
                published: Mutex::new(vec![Stats::new(Instant::now()); count]),
                rows: Mutex::new(vec![Vec::new(); count]),
                watched: Mutex::new(None),
            }),
        }
    }

    /// How many reactors share this board.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Reactor `index` publishes its counters and, when there are several
    /// reactors, its handlers' rows.
    pub fn publish(&self, index: usize, stats: &Stats, rows: Option<Vec<(usize, HandlerInfo)>>) {
        if let Some(slot) = lock(&self.inner.published).get_mut(index) {
            slot.clone_from(stats);
        }
        if let Some(rows) = rows {
            if let Some(slot) = lock(&self.inner.rows).get_mut(index) {
                *slot = rows;
            }
        }
    }

    /// Every reactor's counters, by index: `own` (live) at `index`, the
    /// others as last published.
    pub fn every_reactor(&self, index: usize, own: &Stats) -> Vec<Stats> {
        let published = lock(&self.inner.published);
        (0..self.count.max(index + 1))
            .map(|reactor| match published.get(reactor) {
                Some(one) if reactor != index => one.clone(),
                _ => own.clone(),
            })
            .collect()
    }

    /// The handlers of every reactor as (reactor, slab key, row): `own`
    /// (live) at `index`, the others' as last published.
    pub fn every_handler(
        &self,
        index: usize,
        own: Vec<(usize, HandlerInfo)>,
    ) -> Vec<(usize, usize, HandlerInfo)> {
        let others = lock(&self.inner.rows);
        let mut all = Vec::with_capacity(own.len());
        let mut own = Some(own);
        for reactor in 0..self.count.max(index + 1) {
            if reactor == index {
                let rows = own.take().unwrap_or_default();
                all.extend(rows.into_iter().map(|(key, row)| (reactor, key, row)));
            } else if let Some(rows) = others.get(reactor) {
                all.extend(rows.iter().map(|(key, row)| (reactor, *key, row.clone())));
            }
        }
        all
    }

    /// The page asked for a summary at `now`: every reactor records its
    /// last turns for the next [`WATCHED_FOR`].
    pub fn watch(&self, now: Instant) {
        *lock(&self.inner.watched) = Some(now);
    }

    /// Whether the page asked within [`WATCHED_FOR`] of `now`.
    pub fn is_watched(&self, now: Instant) -> bool {
        lock(&self.inner.watched).is_some_and(|at| now.saturating_duration_since(at) < WATCHED_FOR)
    }
}

/// The sum of every reactor's counters (the earliest start).
pub fn totals(all: &[Stats]) -> Stats {
    let mut sum = all
        .first()
        .cloned()
        .unwrap_or_else(|| Stats::new(Instant::now()));
    for one in all.iter().skip(1) {
        sum.add(one);
    }
    sum
}

/// `status --json`'s and the page's `reactors` array: each reactor's
/// figures, as the totals show them, and its index.
pub fn each_json(each: &[Stats], now: Instant) -> Value {
    each.iter()
        .enumerate()
        .map(|(index, one)| {
            let mut object = one.json(now);
            object.insert("reactor".into(), index.into());
            Value::Object(object)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reactor_sees_its_own_figures_live_and_the_others_as_published() {
        let board = Board::new(2);
        let mut first = Stats::new(Instant::now());
        first.accepted = 5;
        board.publish(1, &first, None);
        let mut own = Stats::new(Instant::now());
        own.accepted = 7;
        let all = board.every_reactor(0, &own);
        assert_eq!(all.len(), 2);
        assert_eq!((all[0].accepted, all[1].accepted), (7, 5));
        assert_eq!(totals(&all).accepted, 12);
    }

    #[test]
    fn clones_share_one_board() {
        let board = Board::new(2);
        let other = board.clone();
        let now = Instant::now();
        assert!(!board.is_watched(now));
        other.watch(now);
        assert!(board.is_watched(now));
        assert!(!board.is_watched(now + WATCHED_FOR));
    }
}
