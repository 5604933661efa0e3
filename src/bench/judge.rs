//! The generator judges itself: its own CPU (getrusage), how far it fell
//! behind its schedule, and a plain verdict when it, not the server, set
//! the numbers. `--json` shows this as the `generator` object.

use std::time::{Duration, Instant};

use serde_json::json;

use super::schedule::Lag;

/// A worker thread that used this share of its wall time on the CPU was
/// saturated: it had no idle moment left to send on time or read echoes
/// as they came.
pub const SATURATED_CPU: f64 = 0.95;

/// Late sends above this share of all sends mean the schedule was not kept.
pub const LATE_SHARE: f64 = 0.001;

use crate::sys::cpu::cpu_time;

/// Measures a thread's (or the process's) CPU share between two points.
#[derive(Clone, Copy, Debug)]
pub struct CpuClock {
    thread_only: bool,
    cpu: Duration,
    wall: Instant,
}

impl CpuClock {
    /// Starts measuring now.
    pub fn start(thread_only: bool) -> CpuClock {
        CpuClock {
            thread_only,
            cpu: cpu_time(thread_only),
            wall: Instant::now(),
        }
    }

    /// CPU time used since the start, and the wall time that passed.
    pub fn read(&self) -> (Duration, Duration) {
        (
            cpu_time(self.thread_only).saturating_sub(self.cpu),
            self.wall.elapsed(),
        )
    }

    /// CPU time over wall time since the start (1.0 = one core busy).
    pub fn share(&self) -> f64 {
        let (cpu, wall) = self.read();
        if wall.is_zero() {
            0.0
        } else {
            cpu.as_secs_f64() / wall.as_secs_f64()
        }
    }
}

/// What the generator says about itself.
#[derive(Clone, Debug, Default)]
pub struct Verdict {
    /// Open loop: how the schedule was kept.
    pub lag: Option<Lag>,
    /// The process's CPU over the run, in percent of one core.
    pub cpu_percent: f64,
    /// The busiest worker thread's CPU share (1.0 = a whole core).
    pub busiest_thread: f64,
    /// CPU time of the process per echoed message, nanoseconds.
    pub cpu_ns_per_msg: f64,
}

impl Verdict {
    /// True when the generator could not keep up: sends late beyond
    /// [`LATE_SHARE`], or a worker thread busy beyond [`SATURATED_CPU`].
    pub fn saturated(&self) -> bool {
        self.late() || self.busiest_thread >= SATURATED_CPU
    }

    /// Open loop: sends left late beyond [`LATE_SHARE`].
    pub fn late(&self) -> bool {
        self.lag
            .as_ref()
            .is_some_and(|lag| lag.late as f64 > LATE_SHARE * lag.sends.max(1) as f64)
    }

    /// The `generator` object of `--json`.
    pub fn json(&self) -> serde_json::Value {
        let lag = self.lag.clone().unwrap_or_default();
        json!({
            "late_sends": lag.late,
            "held_sends": lag.held,
            "unsent": lag.unsent,
            "max_lag_us": lag.max_lag_us,
            "cpu_percent": (self.cpu_percent * 10.0).round() / 10.0,
            "busiest_thread_percent": (self.busiest_thread * 1000.0).round() / 10.0,
            "cpu_ns_per_msg": self.cpu_ns_per_msg.round(),
            "saturated": self.saturated(),
        })
    }

    /// The line for people, with the verdict in words when it matters.
    pub fn line(&self) -> String {
        let mut line = String::from("  generator ");
        if let Some(lag) = &self.lag {
            line.push_str(&format!(
                "late sends {} of {} ({:.3} %), max lag {} µs; ",
                super::units::group(lag.late),
                super::units::group(lag.sends),
                100.0 * lag.late as f64 / lag.sends.max(1) as f64,
                super::units::group(lag.max_lag_us),
            ));
            if lag.unsent > 0 {
                line.push_str(&format!("never sent {}; ", super::units::group(lag.unsent)));
            }
            if lag.held > 0 {
                line.push_str(&format!(
                    "held back by the server (not reading or not answering) {}; ",
                    super::units::group(lag.held)
                ));
            }
        }
        line.push_str(&format!(
            "cpu {:.0} % (busiest thread {:.0} %)",
            self.cpu_percent,
            self.busiest_thread * 100.0
        ));
        line.push('\n');
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_grows_with_work() {
        let clock = CpuClock::start(true);
        let mut x = 0u64;
        let until = Instant::now() + Duration::from_millis(30);
        while Instant::now() < until {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let (cpu, wall) = clock.read();
        assert!(cpu > Duration::ZERO, "cpu {cpu:?} over {wall:?}");
        assert!(cpu <= wall + Duration::from_millis(20));
    }

    #[test]
    fn the_verdict_follows_lateness_and_busy_threads() {
        let mut v = Verdict {
            lag: Some(Lag {
                sends: 100_000,
                late: 50,
                held: 70_000,
                unsent: 0,
                max_lag_us: 900,
            }),
            cpu_percent: 40.0,
            busiest_thread: 0.4,
            cpu_ns_per_msg: 1000.0,
        };
        assert!(!v.saturated());
        assert!(v.line().contains("held back by the server"));
        v.lag.as_mut().expect("lag").late = 500;
        assert!(v.saturated() && v.late());
        assert_eq!(v.json()["saturated"], true);
        v.lag = None;
        v.busiest_thread = 0.99;
        assert!(v.saturated(), "closed loop: a busy thread");
        assert_eq!(v.json()["late_sends"], 0);
    }
}
