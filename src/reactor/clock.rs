//! The loop's time: the system clock, or a [`ManualClock`] a test moves
//! by hand so timers fire when it says so.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// A clock a test moves by hand: timers fire when it says so, not when the
/// wall clock does. Clones share the same time.
#[derive(Clone, Debug)]
pub struct ManualClock(Rc<Cell<Instant>>);

impl ManualClock {
    /// A clock standing at the real time now.
    pub fn new() -> ManualClock {
        ManualClock(Rc::new(Cell::new(Instant::now())))
    }

    /// The time it shows.
    pub fn now(&self) -> Instant {
        self.0.get()
    }

    /// Moves it forward.
    pub fn advance(&self, by: Duration) {
        self.0.set(self.0.get() + by);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

/// Where the loop reads the time: once after each poll.
#[derive(Clone, Debug)]
pub(super) enum Clock {
    System,
    Manual(ManualClock),
}

impl Clock {
    pub(super) fn now(&self) -> Instant {
        match self {
            Clock::System => Instant::now(),
            Clock::Manual(clock) => clock.now(),
        }
    }
}
