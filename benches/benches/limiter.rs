//! SlidingWindow and Gcra beside governor's keyed limiter: one check with
//! keys drawn Zipf(1.0) from 10k (all far below their limit) at 1 and 2
//! threads, on a single key (far below its limit too), and on a single key
//! over its limit (every check refused).
//!
//! Run: `cargo bench -p levee-benches --bench limiter`
#![allow(missing_docs)] // criterion_main! generates an undocumented `main`

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use levee_limit::{Gcra, Quota, SlidingWindow, WindowMode};

const KEYS: u64 = 10_000;
/// High enough that no check in the run is denied (about 16.7 M per
/// second per key), and within levee's lock-free counter (below 2^24).
const LIMIT: u32 = (1 << 24) - 1;

fn parallel<F: Fn(u64) + Sync>(threads: usize, iters: u64, op: F) -> Duration {
    static TRACE: std::sync::OnceLock<Vec<u64>> = std::sync::OnceLock::new();
    let trace =
        TRACE.get_or_init(|| levee_benches::Zipf::new(KEYS as usize, 1.0).trace(1 << 20, 5));
    let half = trace.len() / 2;
    levee_benches::run_threads(threads, iters, |t, i| {
        op(trace[(t * half + i as usize) & (trace.len() - 1)])
    })
}

fn check(c: &mut Criterion) {
    let mut g = c.benchmark_group("limiter/check");
    g.measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(20);
    let quota = Quota::per_second(NonZeroU32::new(LIMIT).unwrap());
    let counter = SlidingWindow::<u64>::builder(quota).build().unwrap();
    let log = SlidingWindow::<u64>::builder(Quota::per_second(NonZeroU32::new(1_000_000).unwrap()))
        .mode(WindowMode::Log)
        .build()
        .unwrap();
    let gcra = Gcra::<u64>::new(NonZeroU32::new(LIMIT).unwrap(), Duration::from_nanos(1)).unwrap();
    let governor = governor::RateLimiter::<u64, _, _>::keyed(governor::Quota::per_second(
        NonZeroU32::new(LIMIT).unwrap(),
    ));
    // The keys the Zipf trace draws (its ranks, scrambled), so every bench
    // runs on resident keys.
    for k in 0..KEYS {
        let k = levee_benches::scramble(k);
        let _ = counter.check(&k);
        let _ = log.check(&k);
        let _ = gcra.check(&k);
        let _ = governor.check_key(&k);
    }
    for threads in [1usize, 2] {
        g.throughput(Throughput::Elements(threads as u64));
        g.bench_function(format!("levee_sliding_counter/{threads}t"), |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, |k| {
                    let _ = black_box(counter.check(&k));
                })
            })
        });
        g.bench_function(format!("levee_gcra/{threads}t"), |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, |k| {
                    let _ = black_box(gcra.check(&k));
                })
            })
        });
        g.bench_function(format!("governor_keyed/{threads}t"), |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, |k| {
                    let _ = black_box(governor.check_key(&k));
                })
            })
        });
    }
    g.throughput(Throughput::Elements(1));
    // One key checked back to back runs at 15-30 M checks a second, past
    // `LIMIT` a second: the single key's own limiters admit `LIMIT` per
    // 100 ms (the same rate on both sides), so that every check is admitted
    // as the row's name says; the refused rows below measure the other path.
    let fast = Quota::new(LIMIT, Duration::from_millis(100)).unwrap();
    let one_counter = SlidingWindow::<u64>::builder(fast).build().unwrap();
    let one_governor = governor::RateLimiter::<u64, _, _>::keyed(
        governor::Quota::with_period(Duration::from_millis(100) / LIMIT)
            .unwrap()
            .allow_burst(NonZeroU32::new(LIMIT).unwrap()),
    );
    g.bench_function("levee_sliding_counter/single_key", |b| {
        b.iter(|| black_box(one_counter.check(&7)))
    });
    g.bench_function("governor_keyed/single_key", |b| {
        b.iter(|| black_box(one_governor.check_key(&7).is_ok()))
    });
    // One key over its quota (1 an hour): every check is refused. levee
    // computes the decision's retry time with each refusal; governor's
    // `check_key` leaves it to the caller (`NotUntil::wait_time_from`).
    let hour = Duration::from_secs(3600);
    let refusing = SlidingWindow::<u64>::builder(Quota::new(1, hour).unwrap())
        .build()
        .unwrap();
    let governor_refusing = governor::RateLimiter::<u64, _, _>::keyed(
        governor::Quota::with_period(hour)
            .unwrap()
            .allow_burst(NonZeroU32::new(1).unwrap()),
    );
    let _ = refusing.check(&7);
    let _ = governor_refusing.check_key(&7);
    g.bench_function("levee_sliding_counter/refused", |b| {
        b.iter(|| black_box(refusing.check(&7)))
    });
    g.bench_function("governor_keyed/refused", |b| {
        b.iter(|| black_box(governor_refusing.check_key(&7).is_ok()))
    });
    g.bench_function("levee_sliding_log/1t", |b| {
        b.iter_custom(|iters| {
            parallel(1, iters, |k| {
                let _ = black_box(log.check(&k));
            })
        })
    });
    g.finish();
}

criterion_group!(benches, check);
criterion_main!(benches);
