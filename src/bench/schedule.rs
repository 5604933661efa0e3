//! The open loop's clock (`--rate R`): when each message is due, whether
//! or not earlier echoes came back, and how far behind the generator fell.
//!
//! Each connection has its own schedule at R/C messages per second; the
//! connections' schedules are offset by a fraction of the period, so the
//! sum of them is R evenly spread (uniform) or a Poisson process of rate R
//! (the sum of independent Poisson processes is one). Due times are
//! computed from the start, never by adding to the previous send, so a
//! late send does not push the schedule back (which is what hides a stall
//! from a closed loop: coordinated omission).

use std::time::{Duration, Instant};

/// How sends are spread in time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Arrivals {
    /// Evenly spaced.
    #[default]
    Uniform,
    /// Exponentially distributed gaps (a Poisson process), as independent
    /// users arrive.
    Poisson,
}

impl Arrivals {
    /// The name `--arrivals` takes.
    pub fn name(self) -> &'static str {
        match self {
            Arrivals::Uniform => "uniform",
            Arrivals::Poisson => "poisson",
        }
    }
}

/// A send that leaves later than this after its due time counts as late:
/// the poller sleeps in whole milliseconds, so sends within one of their
/// due time are on schedule.
pub const LATE_AFTER: Duration = Duration::from_millis(1);

/// One connection's schedule.
#[derive(Clone, Debug)]
pub struct Schedule {
    start: Instant,
    /// Nanoseconds between sends, on average.
    period: f64,
    /// Nanoseconds from `start` to the next due send.
    next: f64,
    arrivals: Arrivals,
    rng: u64,
}

impl Schedule {
    /// Connection `index` of `of`, sharing `rate` messages per second in
    /// all, from `start`. `seed` makes Poisson gaps differ between runs.
    pub fn new(
        start: Instant,
        rate: f64,
        index: usize,
        of: usize,
        arrivals: Arrivals,
        seed: u64,
    ) -> Schedule {
        let of = of.max(1);
        let period = 1e9 * of as f64 / rate.max(1e-9);
        let mut schedule = Schedule {
            start,
            period,
            next: 0.0,
            arrivals,
            rng: seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03,
        };
        schedule.next = match arrivals {
            // Connection i starts i/C of a period in: the sum is even.
            Arrivals::Uniform => period * index as f64 / of as f64,
            Arrivals::Poisson => schedule.gap(),
        };
        schedule
    }

    /// When the next message is due.
    pub fn due(&self) -> Instant {
        self.start + Duration::from_nanos(self.next as u64)
    }

    /// The next message was sent (or given up on): move to the following.
    pub fn advance(&mut self) {
        self.next += match self.arrivals {
            Arrivals::Uniform => self.period,
            Arrivals::Poisson => self.gap(),
        };
    }

    /// An exponential gap with mean `period` (inverse transform sampling).
    fn gap(&mut self) -> f64 {
        // splitmix64: small, fast, and good enough for arrival times.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // A uniform in (0, 1]: never 0, whose logarithm is infinite.
        let u = ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        -u.ln() * self.period
    }
}

/// How well the generator kept to its schedule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lag {
    /// Messages sent (attempted) on the schedule.
    pub sends: u64,
    /// Sends that left more than [`LATE_AFTER`] after their due time
    /// because the generator was behind.
    pub late: u64,
    /// Sends that left late because the server held them back: every
    /// connection's unsent bytes were at the cap (it was not reading).
    /// Their latency counts from the schedule all the same.
    pub held: u64,
    /// Of the sends, those still unsent when the window closed (counted
    /// late or held as of the window's end).
    pub unsent: u64,
    /// The largest lag behind schedule, microseconds.
    pub max_lag_us: u64,
}

impl Lag {
    /// A message due at `due` was sent at `now`; `held` when the server's
    /// backpressure, not the generator, kept it back.
    pub fn sent(&mut self, due: Instant, now: Instant, held: bool) {
        self.sends += 1;
        let lag = now.saturating_duration_since(due);
        if lag > LATE_AFTER {
            if held {
                self.held += 1;
            } else {
                self.late += 1;
            }
        }
        let us = u64::try_from(lag.as_micros()).unwrap_or(u64::MAX);
        self.max_lag_us = self.max_lag_us.max(us);
    }

    /// Adds another worker's figures.
    pub fn add(&mut self, other: &Lag) {
        self.sends += other.sends;
        self.late += other.late;
        self.held += other.held;
        self.unsent += other.unsent;
        self.max_lag_us = self.max_lag_us.max(other.max_lag_us);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(mut s: Schedule, start: Instant, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| {
                let at = s.due().duration_since(start).as_secs_f64();
                s.advance();
                at
            })
            .collect()
    }

    #[test]
    fn uniform_connections_interleave_into_one_even_rate() {
        let start = Instant::now();
        // 1000/s over 4 connections: each every 4 ms, offset by 1 ms.
        let mut all: Vec<f64> = (0..4)
            .flat_map(|i| {
                offsets(
                    Schedule::new(start, 1000.0, i, 4, Arrivals::Uniform, 1),
                    start,
                    250,
                )
            })
            .collect();
        all.sort_by(f64::total_cmp);
        assert_eq!(all.len(), 1000);
        for (k, at) in all.iter().enumerate() {
            assert!((at - k as f64 / 1000.0).abs() < 1e-6, "send {k} at {at}");
        }
    }

    #[test]
    fn poisson_has_the_asked_rate_and_exponential_gaps() {
        let start = Instant::now();
        let s = Schedule::new(start, 10_000.0, 0, 1, Arrivals::Poisson, 42);
        let times = offsets(s, start, 100_000);
        let span = times[times.len() - 1];
        let rate = times.len() as f64 / span;
        assert!((rate - 10_000.0).abs() < 200.0, "rate {rate}");
        // Exponential: the share of gaps above the mean is e^-1 (36.8 %).
        let mean = span / times.len() as f64;
        let above = times.windows(2).filter(|w| w[1] - w[0] > mean).count() as f64
            / (times.len() - 1) as f64;
        assert!((above - (-1f64).exp()).abs() < 0.01, "{above}");
    }

    #[test]
    fn a_late_send_does_not_move_the_schedule() {
        let start = Instant::now();
        let mut s = Schedule::new(start, 100.0, 0, 1, Arrivals::Uniform, 0);
        let mut lag = Lag::default();
        // The generator stalls for 55 ms: five sends are due meanwhile and
        // all leave at once, each as late as it was.
        let woke = start + Duration::from_millis(55);
        while s.due() <= woke {
            lag.sent(s.due(), woke, false);
            s.advance();
        }
        assert_eq!(lag.sends, 6);
        assert_eq!(lag.late, 6);
        assert_eq!(lag.max_lag_us, 55_000);
        assert_eq!(s.due(), start + Duration::from_millis(60));
        lag.sent(s.due(), s.due() + Duration::from_micros(300), false);
        assert_eq!(lag.late, 6, "300 µs is on time");
        s.advance();
        lag.sent(s.due(), s.due() + Duration::from_millis(30), true);
        assert_eq!((lag.late, lag.held), (6, 1), "held back by the server");
    }
}
