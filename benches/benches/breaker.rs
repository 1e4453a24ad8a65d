//! CircuitBreaker beside failsafe: closed-path acquire + record at 1 and 2
//! threads, open-path rejection, registry lookup over 10k keys, and the
//! time-window and slow-call configurations.
//!
//! Run: `cargo bench -p levee-benches --bench breaker`
#![allow(missing_docs)] // criterion_main! generates an undocumented `main`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use failsafe::CircuitBreaker as _;
use levee_breaker::{BreakerRegistry, CircuitBreaker, Window};

fn levee_count() -> CircuitBreaker {
    CircuitBreaker::builder()
        .failure_rate_threshold(0.5)
        .sliding_window(Window::Count(100))
        .build()
        .unwrap()
}

/// Runs `op` `iters` times on each of `threads` threads; returns the wall time.
fn parallel<F: Fn() + Sync>(threads: usize, iters: u64, op: F) -> Duration {
    levee_benches::run_threads(threads, iters, |_, _| op())
}

fn closed_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("breaker/closed");
    g.measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(20);
    for threads in [1usize, 2] {
        g.throughput(Throughput::Elements(threads as u64));
        let b = levee_count();
        g.bench_function(format!("levee_count_window/{threads}t"), |bench| {
            bench.iter_custom(|iters| {
                parallel(threads, iters, || {
                    b.try_acquire().map(|p| p.success()).unwrap_or(())
                })
            })
        });
        let b = CircuitBreaker::builder()
            .failure_rate_threshold(0.5)
            .sliding_window(Window::Time(Duration::from_secs(10)))
            .build()
            .unwrap();
        g.bench_function(format!("levee_time_window/{threads}t"), |bench| {
            bench.iter_custom(|iters| {
                parallel(threads, iters, || {
                    b.try_acquire().map(|p| p.success()).unwrap_or(())
                })
            })
        });
        let b = CircuitBreaker::builder()
            .slow_call(Duration::from_secs(1), 0.5)
            .sliding_window(Window::Count(100))
            .build()
            .unwrap();
        g.bench_function(format!("levee_slow_call_rule/{threads}t"), |bench| {
            bench.iter_custom(|iters| {
                parallel(threads, iters, || {
                    b.try_acquire().map(|p| p.success()).unwrap_or(())
                })
            })
        });
        let f = failsafe::Config::new().build();
        g.bench_function(format!("failsafe_call/{threads}t"), |bench| {
            bench.iter_custom(|iters| {
                parallel(threads, iters, || {
                    let _ = black_box(f.call(|| Ok::<(), ()>(())));
                })
            })
        });
    }
    g.finish();
}

fn open_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("breaker/open");
    g.measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(20);
    let b = levee_count();
    b.trip_for(Duration::from_secs(3600));
    g.bench_function("levee_rejection", |bench| {
        bench.iter(|| black_box(b.try_acquire().is_err()))
    });
    let f = failsafe::Config::new().build();
    while f.is_call_permitted() {
        let _ = f.call(|| Err::<(), ()>(()));
    }
    g.bench_function("failsafe_rejection", |bench| {
        bench.iter(|| black_box(f.call(|| Ok::<(), ()>(())).is_err()))
    });
    g.finish();
}

fn registry(c: &mut Criterion) {
    let mut g = c.benchmark_group("breaker/registry");
    g.measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(20);
    let reg = BreakerRegistry::new(CircuitBreaker::builder()).unwrap();
    for k in 0..10_000u64 {
        reg.get(&k);
    }
    let mut k = 0u64;
    g.bench_function("levee_get_10k_keys", |bench| {
        bench.iter(|| {
            k = (k + 7919) % 10_000;
            black_box(reg.get(&k));
        })
    });
    g.finish();
}

criterion_group!(benches, closed_path, open_path, registry);
criterion_main!(benches);
