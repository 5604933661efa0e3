//! A connection's buffer handling: the pool that lends a buffer only while
//! bytes are owed. The fast path owns no buffer at all (reads land in the
//! reactor's scratch and are written straight back); these benches price
//! the slow path, a write that could not take everything.
//!
//! `services::stream::Outbox` itself needs a reactor `Context`, which only
//! the reactor can build, so its borrow-fill-drain-return cycle is
//! reproduced here on the same `BufferPool` with the same operations
//! (extend, drain the sent prefix, give back).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use echoplex::reactor::BufferPool;

const MAX_BUFFER: usize = 64 * 1024;

fn pool(c: &mut Criterion) {
    let mut group = c.benchmark_group("buffer pool");
    group.bench_function("take + give (warm pool)", |b| {
        let mut pool = BufferPool::new(MAX_BUFFER, 256);
        let warm = pool.take();
        pool.give(warm);
        b.iter(|| {
            let buffer = pool.take();
            pool.give(black_box(buffer));
        })
    });
    group.bench_function("take from an empty pool (allocates 64 KiB)", |b| {
        b.iter_batched(
            || BufferPool::new(MAX_BUFFER, 0),
            |mut pool| black_box(pool.take()),
            BatchSize::SmallInput,
        )
    });
    for size in [64usize, 16 * 1024] {
        let chunk = vec![0x5a; size];
        group.bench_function(
            format!("partial write of {size} B: borrow, queue, drain in two, return"),
            |b| {
                let mut pool = BufferPool::new(MAX_BUFFER, 256);
                let warm = pool.take();
                pool.give(warm);
                b.iter(|| {
                    let mut buffer = pool.take();
                    buffer.extend_from_slice(black_box(&chunk));
                    // Half goes on the first writable edge, the rest on the next.
                    let half = buffer.len() / 2;
                    buffer.drain(..half);
                    black_box(&buffer);
                    buffer.clear();
                    pool.give(buffer);
                })
            },
        );
    }
    group.bench_function("1,000 connections each borrowing then returning", |b| {
        let mut pool = BufferPool::new(MAX_BUFFER, 256);
        let mut held = Vec::with_capacity(1000);
        b.iter(|| {
            for _ in 0..1000 {
                held.push(pool.take());
            }
            for buffer in held.drain(..) {
                pool.give(buffer);
            }
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = pool
}
criterion_main!(benches);
