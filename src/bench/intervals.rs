//! Intervals while a run goes (`--interval`, `--json-stream`, `--hdr-log`,
//! `--plot` over time): each worker keeps the histograms of the interval
//! its echoes complete in and hands each finished interval to the
//! coordinator, which merges the workers' pieces and shows an interval
//! once every worker has handed it in.
//!
//! An echo belongs to the interval its completion falls in, so the
//! intervals' counts add up to the run's count exactly.

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;

use super::units::group;

/// Histogram bounds shared with the run's own histograms.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// One worker's share of one interval.
#[derive(Debug)]
pub struct Piece {
    /// Interval number, from 0 at the measured window's start.
    pub index: u64,
    /// Latencies completed in it (from the schedule, in open loop).
    pub latency: Histogram<u64>,
    /// Service times (open loop only).
    pub service: Option<Histogram<u64>>,
    /// Errors counted in it.
    pub errors: u64,
    /// Connections opened in it (churn).
    pub connects: u64,
}

/// The worker's side: where this interval's echoes go.
pub struct Recorder {
    start: Instant,
    length: Duration,
    current: Piece,
    tx: Sender<Piece>,
    /// The last interval: nothing is recorded past the window.
    last: u64,
    /// Errors and connects counted so far, and at the last hand-in.
    totals: (u64, u64),
    handed: (u64, u64),
}

impl Recorder {
    /// Intervals of `length` from `start`, `count` of them (the last may be
    /// shorter); finished pieces go to `tx`.
    pub fn new(
        start: Instant,
        length: Duration,
        count: u64,
        open_loop: bool,
        tx: Sender<Piece>,
    ) -> Recorder {
        Recorder {
            start,
            length,
            current: Piece {
                index: 0,
                latency: histogram(),
                service: open_loop.then(histogram),
                errors: 0,
                connects: 0,
            },
            tx,
            last: count.saturating_sub(1),
            totals: (0, 0),
            handed: (0, 0),
        }
    }

    fn index_of(&self, t: Instant) -> u64 {
        let since = t.saturating_duration_since(self.start);
        ((since.as_nanos() / self.length.as_nanos().max(1)) as u64).min(self.last)
    }

    /// Hands in every interval that ended before `now`.
    pub fn tick(&mut self, now: Instant) {
        let index = self.index_of(now);
        while self.current.index < index {
            self.hand_in();
        }
    }

    /// The worker's running totals of errors and connects: the growth
    /// since the last hand-in belongs to the interval handed in next.
    pub fn totals(&mut self, errors: u64, connects: u64) {
        self.totals = (errors, connects);
    }

    fn hand_in(&mut self) {
        self.current.errors += self.totals.0.saturating_sub(self.handed.0);
        self.current.connects += self.totals.1.saturating_sub(self.handed.1);
        self.handed = self.totals;
        let next = Piece {
            index: self.current.index + 1,
            latency: histogram(),
            service: self.current.service.as_ref().map(|_| histogram()),
            errors: 0,
            connects: 0,
        };
        let done = std::mem::replace(&mut self.current, next);
        // The coordinator gone means the run is over: nothing to tell.
        let _ = self.tx.send(done);
    }

    /// An echo completed at `now` with these times, in microseconds.
    pub fn record(&mut self, now: Instant, latency_us: u64, service_us: Option<u64>) {
        self.tick(now);
        self.current.latency.saturating_record(latency_us.max(1));
        if let (Some(h), Some(us)) = (self.current.service.as_mut(), service_us) {
            h.saturating_record(us.max(1));
        }
    }

    /// The window closed at `now`: hands in the rest, up to the interval
    /// of `now` (a timed run's last interval at most).
    pub fn finish(mut self, now: Instant) {
        let last = self.index_of(now);
        while self.current.index < last {
            self.hand_in();
        }
        self.current.errors += self.totals.0.saturating_sub(self.handed.0);
        self.current.connects += self.totals.1.saturating_sub(self.handed.1);
        let _ = self.tx.send(self.current);
    }
}

/// One interval, every worker's pieces merged.
#[derive(Clone, Debug)]
pub struct Interval {
    /// Interval number.
    pub index: u64,
    /// Offset of its start from the window's start.
    pub offset: Duration,
    /// Its length (the last may be shorter).
    pub length: Duration,
    /// Latencies.
    pub latency: Histogram<u64>,
    /// Service times (open loop).
    pub service: Option<Histogram<u64>>,
    /// Errors.
    pub errors: u64,
    /// Connections opened.
    pub connects: u64,
}

impl Interval {
    /// Echoes per second in this interval.
    pub fn msgs_per_sec(&self) -> f64 {
        let secs = self.length.as_secs_f64();
        if secs > 0.0 {
            self.latency.len() as f64 / secs
        } else {
            0.0
        }
    }

    /// The `--interval` line.
    pub fn line(&self, churn: bool) -> String {
        let end = self.offset + self.length;
        let mut line = format!(
            "[{:>6.1}-{:>6.1} s] {:>10} msgs/s  p50 {:>8} µs  p99 {:>8} µs  errors {}",
            self.offset.as_secs_f64(),
            end.as_secs_f64(),
            group(self.msgs_per_sec().round() as u64),
            group(self.latency.value_at_quantile(0.5)),
            group(self.latency.value_at_quantile(0.99)),
            self.errors,
        );
        if churn {
            line.push_str(&format!(
                "  connects/s {}",
                group((self.connects as f64 / self.length.as_secs_f64().max(1e-9)).round() as u64)
            ));
        }
        line
    }

    /// The `--json-stream` object.
    pub fn json(&self) -> serde_json::Value {
        let mut v = json!({
            "type": "interval",
            "start_s": round3(self.offset.as_secs_f64()),
            "end_s": round3((self.offset + self.length).as_secs_f64()),
            "messages": self.latency.len(),
            "msgs_per_sec": round3(self.msgs_per_sec()),
            "latency_us": quantiles(&self.latency),
            "errors": self.errors,
            "connects": self.connects,
        });
        if let Some(service) = &self.service {
            v["service_latency_us"] = quantiles(service);
        }
        v
    }
}

fn quantiles(h: &Histogram<u64>) -> serde_json::Value {
    json!({
        "p50": h.value_at_quantile(0.5),
        "p90": h.value_at_quantile(0.9),
        "p99": h.value_at_quantile(0.99),
        "p999": h.value_at_quantile(0.999),
        "max": h.max(),
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The coordinator's side: merges pieces into whole intervals.
pub struct Collector {
    workers: usize,
    length: Duration,
    window: Option<Duration>,
    rx: Receiver<Piece>,
    pending: BTreeMap<u64, (usize, Interval)>,
    next: u64,
}

impl Collector {
    /// Collects from `workers` recorders; `window` (when the run has a
    /// duration) shortens the last interval to the window's end.
    pub fn new(
        workers: usize,
        length: Duration,
        window: Option<Duration>,
        rx: Receiver<Piece>,
    ) -> Collector {
        Collector {
            workers,
            length,
            window,
            rx,
            pending: BTreeMap::new(),
            next: 0,
        }
    }

    /// Takes the pieces that arrived; returns the intervals now complete,
    /// in order.
    pub fn poll(&mut self) -> Vec<Interval> {
        while let Ok(piece) = self.rx.try_recv() {
            self.add(piece);
        }
        self.ready()
    }

    /// Waits (up to `wait`) for the workers' last pieces; returns every
    /// interval that is complete by then, in order, and the incomplete
    /// ones too (a worker that died hands in nothing more).
    pub fn finish(&mut self, wait: Duration, window: Duration) -> Vec<Interval> {
        let deadline = Instant::now() + wait;
        let mut out = Vec::new();
        loop {
            out.extend(self.poll());
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(piece) => self.add(piece),
                Err(_) => break,
            }
        }
        out.extend(self.ready());
        out.extend(
            std::mem::take(&mut self.pending)
                .into_values()
                .map(|(_, i)| i),
        );
        // The window as it really lasted (Ctrl-C cuts it): the last
        // interval's rate is over the time it covered, not its nominal
        // length.
        for interval in &mut out {
            let end = interval.offset + interval.length;
            if end > window && window > interval.offset {
                interval.length = window - interval.offset;
            }
        }
        out
    }

    fn add(&mut self, piece: Piece) {
        let (length, window) = (self.length, self.window);
        let entry = self.pending.entry(piece.index).or_insert_with(|| {
            let offset = length * piece.index as u32;
            let mut this = length;
            if let Some(window) = window {
                this = this.min(window.saturating_sub(offset));
            }
            (
                0,
                Interval {
                    index: piece.index,
                    offset,
                    length: this,
                    latency: histogram(),
                    service: piece.service.as_ref().map(|_| histogram()),
                    errors: 0,
                    connects: 0,
                },
            )
        });
        entry.0 += 1;
        let interval = &mut entry.1;
        let _ = interval.latency.add(&piece.latency);
        if let (Some(into), Some(from)) = (interval.service.as_mut(), piece.service.as_ref()) {
            let _ = into.add(from);
        }
        interval.errors += piece.errors;
        interval.connects += piece.connects;
    }

    fn ready(&mut self) -> Vec<Interval> {
        let mut out = Vec::new();
        while let Some((count, _)) = self.pending.get(&self.next) {
            if *count < self.workers {
                break;
            }
            if let Some((_, interval)) = self.pending.remove(&self.next) {
                out.push(interval);
            }
            self.next += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn pieces_of_two_workers_merge_into_whole_intervals() {
        let (tx, rx) = mpsc::channel();
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let mut a = Recorder::new(start, second, 3, true, tx.clone());
        let mut b = Recorder::new(start, second, 3, true, tx);
        let mut collector = Collector::new(2, second, Some(Duration::from_millis(2500)), rx);
        a.record(start + Duration::from_millis(100), 10, Some(5));
        a.record(start + Duration::from_millis(1100), 20, Some(5));
        assert!(
            collector.poll().is_empty(),
            "b has not handed in interval 0"
        );
        b.record(start + Duration::from_millis(900), 30, Some(5));
        b.totals(1, 0);
        b.tick(start + Duration::from_millis(1200));
        let done = collector.poll();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].latency.len(), 2);
        // Past the window: counted in the last interval, never a fourth.
        a.record(start + Duration::from_secs(7), 40, Some(5));
        a.finish(start + Duration::from_secs(9));
        b.finish(start + Duration::from_secs(9));
        let rest = collector.finish(Duration::from_millis(100), Duration::from_millis(2500));
        assert_eq!(rest.iter().map(|i| i.index).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(rest[0].latency.len(), 1);
        assert_eq!(
            done[0].errors, 1,
            "counted by the tick that handed interval 0 in"
        );
        assert_eq!(rest[1].latency.len(), 1);
        assert_eq!(rest[1].length, Duration::from_millis(500));
        assert_eq!(rest[1].msgs_per_sec(), 2.0);
        let total: u64 = done.iter().chain(&rest).map(|i| i.latency.len()).sum();
        assert_eq!(total, 4);
        assert_eq!(rest[0].json()["type"], "interval");
        assert!(done[0].line(false).contains("errors 1"));
    }

    #[test]
    fn an_interval_cut_short_is_as_long_as_it_lasted() {
        let (tx, rx) = mpsc::channel();
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let mut a = Recorder::new(start, second, 5, false, tx);
        let mut collector = Collector::new(1, second, Some(Duration::from_secs(5)), rx);
        for ms in [100, 1_010, 1_020] {
            a.record(start + Duration::from_millis(ms), 10, None);
        }
        // Ctrl-C 1.04 s in: the second interval lasted 40 ms, not 1 s.
        a.finish(start + Duration::from_millis(1_040));
        let all = collector.finish(Duration::from_millis(100), Duration::from_millis(1_040));
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].length, Duration::from_millis(40));
        assert_eq!(all[1].msgs_per_sec(), 50.0);
    }
}
