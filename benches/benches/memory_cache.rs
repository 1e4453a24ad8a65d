//! MemoryCache beside moka::sync::Cache and quick_cache::sync::Cache:
//! get-hit throughput with Zipf(1.0) keys over 100k resident entries at 1
//! and 2 threads, a 90% get / 10% insert mix, an insert-heavy run with
//! far more keys than capacity, and first sight: plain `rand_distr::Zipf`
//! u64 keys over 1M ranks into an empty 100k cache, a get and an insert on
//! each miss (the key's first sight and the evictions in the loop).
//!
//! Run: `cargo bench -p levee-benches --bench memory_cache`
#![allow(missing_docs)] // criterion_main! generates an undocumented `main`

use std::hint::black_box;
use std::time::Duration;

use criterion::{
    BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main, measurement::WallTime,
};
use levee_benches::{Zipf, scramble};
use levee_cache::MemoryCache;

const RESIDENT: u64 = 100_000;
const TRACE: usize = 1 << 20;

trait Cache: Sync {
    fn get(&self, k: &u64) -> Option<u64>;
    fn insert(&self, k: u64, v: u64);
}

impl Cache for MemoryCache<u64, u64> {
    fn get(&self, k: &u64) -> Option<u64> {
        MemoryCache::get(self, k)
    }
    fn insert(&self, k: u64, v: u64) {
        MemoryCache::insert(self, k, v)
    }
}

impl Cache for moka::sync::Cache<u64, u64> {
    fn get(&self, k: &u64) -> Option<u64> {
        moka::sync::Cache::get(self, k)
    }
    fn insert(&self, k: u64, v: u64) {
        moka::sync::Cache::insert(self, k, v)
    }
}

impl Cache for quick_cache::sync::Cache<u64, u64> {
    fn get(&self, k: &u64) -> Option<u64> {
        quick_cache::sync::Cache::get(self, k)
    }
    fn insert(&self, k: u64, v: u64) {
        quick_cache::sync::Cache::insert(self, k, v)
    }
}

fn caches(capacity: u64) -> Vec<(&'static str, Box<dyn Cache>)> {
    vec![
        (
            "levee",
            Box::new(
                MemoryCache::<u64, u64>::builder()
                    .max_capacity(capacity)
                    .time_to_live(Duration::from_secs(3600))
                    .build()
                    .unwrap(),
            ),
        ),
        (
            "levee_no_ttl",
            Box::new(
                MemoryCache::<u64, u64>::builder()
                    .max_capacity(capacity)
                    .build()
                    .unwrap(),
            ),
        ),
        (
            "moka",
            Box::new(
                moka::sync::Cache::builder()
                    .max_capacity(capacity)
                    .time_to_live(Duration::from_secs(3600))
                    .build(),
            ),
        ),
        (
            "quick_cache",
            Box::new(quick_cache::sync::Cache::new(capacity as usize)),
        ),
    ]
}

/// Each of `threads` threads walks the trace from its own offset for `iters` operations.
fn run(threads: usize, iters: u64, trace: &[u64], op: &(dyn Fn(u64, u64) + Sync)) -> Duration {
    let half = trace.len() / 2;
    levee_benches::run_threads(threads, iters, |t, n| {
        op(trace[(t * half + n as usize) & (trace.len() - 1)], n)
    })
}

fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(15);
    g
}

fn get_hit(c: &mut Criterion) {
    let trace = Zipf::new(RESIDENT as usize, 1.0).trace(TRACE, 7);
    let mut g = group(c, "memory_cache/get_hit_zipf1.0");
    for (name, cache) in caches(RESIDENT * 2) {
        for k in 0..RESIDENT {
            cache.insert(scramble(k), k);
        }
        for threads in [1usize, 2] {
            g.throughput(Throughput::Elements(threads as u64));
            g.bench_function(format!("{name}/{threads}t"), |b| {
                b.iter_custom(|iters| {
                    run(threads, iters, &trace, &|k, _| {
                        black_box(cache.get(&k));
                    })
                })
            });
        }
    }
    g.finish();
}

fn mixed(c: &mut Criterion) {
    let trace = Zipf::new(RESIDENT as usize, 1.0).trace(TRACE, 11);
    let mut g = group(c, "memory_cache/mixed_90get_10insert");
    for (name, cache) in caches(RESIDENT) {
        for k in 0..RESIDENT {
            cache.insert(scramble(k), k);
        }
        g.throughput(Throughput::Elements(2));
        g.bench_function(format!("{name}/2t"), |b| {
            b.iter_custom(|iters| {
                run(2, iters, &trace, &|k, n| {
                    if n % 10 == 0 {
                        cache.insert(k, n);
                    } else {
                        black_box(cache.get(&k));
                    }
                })
            })
        });
    }
    g.finish();
}

fn insert_heavy(c: &mut Criterion) {
    let mut g = group(c, "memory_cache/insert_10x_capacity");
    for (name, cache) in caches(10_000) {
        g.throughput(Throughput::Elements(1));
        let trace: Vec<u64> = (0..TRACE as u64).map(scramble).collect();
        g.bench_function(format!("{name}/1t"), |b| {
            b.iter_custom(|iters| run(1, iters, &trace, &|k, n| cache.insert(k, n)))
        });
    }
    g.finish();
}

fn first_sight(c: &mut Criterion) {
    use rand::SeedableRng;
    use rand_distr::Distribution;
    let zipf = rand_distr::Zipf::new(1_000_000.0, 1.0).expect("a valid Zipf");
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    let trace: Vec<u64> = (0..TRACE).map(|_| zipf.sample(&mut rng) as u64).collect();
    let mut g = group(c, "memory_cache/get_or_insert_first_sight");
    for threads in [1usize, 2] {
        for (name, cache) in caches(RESIDENT) {
            g.throughput(Throughput::Elements(threads as u64));
            g.bench_function(format!("{name}/{threads}t"), |b| {
                b.iter_custom(|iters| {
                    run(threads, iters, &trace, &|k, _| {
                        if black_box(cache.get(&k)).is_none() {
                            cache.insert(k, k);
                        }
                    })
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, get_hit, mixed, insert_heavy, first_sight);
criterion_main!(benches);
