//! The struct codec on the `binary://` hot path: every record is decoded,
//! logged (repr), re-encoded. Written against `Format::parse`, `decode`,
//! `encode` and `repr` only, so it runs on the interim stub and on the real
//! codec alike.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use echoplex::codec::structfmt::{repr, Format};

/// The contract's default record: (1, b'ab', 2.7) packed as `I 2s f`.
const DEFAULT_RECORD: [u8; 12] = [
    0x01, 0x00, 0x00, 0x00, 0x61, 0x62, 0x00, 0x00, 0xcd, 0xcc, 0x2c, 0x40,
];

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("structfmt");
    for (name, text) in [
        ("default `I 2s f`", "I 2s f"),
        ("wide `<HhIiqQ 16s d ?`", "<HhIiqQ 16s d ?"),
    ] {
        group.bench_function(format!("parse {name}"), |b| {
            b.iter(|| Format::parse(black_box(text)).expect("format parses"))
        });
        let format = Format::parse(text).expect("format parses");
        let record: Vec<u8> = if text == "I 2s f" {
            DEFAULT_RECORD.to_vec()
        } else {
            // All zeros is a valid record of any layout.
            vec![0; format.size()]
        };
        let values = format.decode(&record).expect("record decodes");
        group.bench_function(format!("decode {name}"), |b| {
            b.iter(|| format.decode(black_box(&record)).expect("decodes"))
        });
        group.bench_function(format!("encode {name}"), |b| {
            b.iter(|| format.encode(black_box(&values)).expect("encodes"))
        });
        group.bench_function(format!("repr {name}"), |b| {
            b.iter(|| repr(black_box(&values)))
        });
        group.bench_function(format!("round trip {name}"), |b| {
            b.iter(|| {
                let values = format.decode(black_box(&record)).expect("decodes");
                format.encode(&values).expect("encodes")
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = codec
}
criterion_main!(benches);
