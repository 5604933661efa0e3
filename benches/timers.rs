//! The timer heap at 100,000 entries: what 100k idle connections cost.
//! Deadlines are never cancelled (a connection re-arms from its last
//! activity when its entry pops), so "cancel" is priced as what it really
//! is: an expiry that finds the deadline moved and inserts it again.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use echoplex::reactor::{Reason, Timers};
use mio::Token;

const N: usize = 100_000;

/// Deadlines spread over 300 s in a scattered order, as idle timers are.
fn deadlines(start: Instant) -> Vec<Instant> {
    (0..N)
        .map(|i| start + Duration::from_micros(((i * 7919) % N) as u64 * 3000))
        .collect()
}

fn full_heap(start: Instant) -> Timers {
    let mut timers = Timers::new();
    for (i, deadline) in deadlines(start).into_iter().enumerate() {
        timers.insert(deadline, Token(i), Reason(0));
    }
    timers
}

fn timers(c: &mut Criterion) {
    let start = Instant::now();
    let mut group = c.benchmark_group("timers (100k)");
    group.sample_size(20);
    group.bench_function("insert 100k", |b| {
        let all = deadlines(start);
        b.iter(|| {
            let mut timers = Timers::new();
            for (i, deadline) in all.iter().enumerate() {
                timers.insert(*deadline, Token(i), Reason(0));
            }
            black_box(timers.len())
        })
    });
    group.bench_function("expire 100k", |b| {
        let end = start + Duration::from_secs(301);
        b.iter_batched(
            || full_heap(start),
            |mut timers| {
                let mut fired = 0;
                while timers.pop_expired(end).is_some() {
                    fired += 1;
                }
                fired
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function(
        "steady state: pop one, re-arm one (cancel by moving)",
        |b| {
            let mut timers = full_heap(start);
            let mut now = start;
            b.iter(|| {
                // The earliest entry is due; its connection was active since,
                // so it goes back in 300 s later.
                now += Duration::from_micros(3000);
                if let Some((token, reason)) = timers.pop_expired(now) {
                    timers.insert(now + Duration::from_secs(300), token, reason);
                }
                black_box(timers.next_deadline())
            })
        },
    );
    group.bench_function("poll timeout with 100k pending", |b| {
        let timers = full_heap(start);
        b.iter(|| black_box(timers.poll_timeout(black_box(start))))
    });
    group.finish();
}

criterion_group!(benches, timers);
criterion_main!(benches);
