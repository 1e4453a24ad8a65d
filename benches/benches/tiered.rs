//! TieredCache: what `get_or_load` costs over the memory cache on an L1
//! hit; an L2 hit (L1 too small to hold the keys, so every get reads Redis)
//! beside a raw `redis` GET of the same bytes on the same throwaway server;
//! and N callers coalesced onto one load of a cold key, beside moka's
//! `get_with`.
//!
//! Run: `cargo bench -p levee-benches --bench tiered`
#![allow(missing_docs)] // criterion_main! generates an undocumented `main`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use levee_cache::{Codec, Loaded, MemoryCache, RedisL2, TieredCache};
use levee_redis::RedisClient;

const KEYS: u64 = 10_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn never(_: u64) -> Result<Loaded<String>, String> {
    Err("the bench expected a hit".into())
}

/// Runs `a` and `b` (each: a batch of `n` operations, timed) alternately,
/// `rounds` times, and prints their mean times per operation and the
/// ratio: drift on a shared machine then hits both alike.
fn interleaved(
    what: &str,
    rounds: u32,
    n: u64,
    mut a: impl FnMut(u64) -> Duration,
    mut b: impl FnMut(u64) -> Duration,
) {
    if std::env::args().any(|a| a == "--profile-time") {
        return; // profiling one bench: skip the comparison
    }
    let (mut ta, mut tb) = (Duration::ZERO, Duration::ZERO);
    let (mut ca, mut cb) = (0u64, 0u64);
    for _ in 0..rounds {
        let c0 = thread_cpu_ns();
        ta += a(n);
        let c1 = thread_cpu_ns();
        tb += b(n);
        ca += c1 - c0;
        cb += thread_cpu_ns() - c1;
    }
    let ops = f64::from(rounds) * n as f64;
    let per = |t: Duration| t.as_secs_f64() * 1e9 / ops;
    println!(
        "{what}: interleaved {rounds} x {n} ops: {:.0} ns vs {:.0} ns per op, ratio {:.2}x; \
         this thread's CPU time {:.0} ns vs {:.0} ns per op",
        per(ta),
        per(tb),
        ta.as_secs_f64() / tb.as_secs_f64(),
        ca as f64 / ops,
        cb as f64 / ops,
    );
}

/// CPU time this thread has run, in ns (Linux: `/proc/thread-self/schedstat`;
/// 0 elsewhere). The benches here run their async side on the calling
/// thread (a current-thread runtime), so this is the client's CPU cost.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// An L1 hit through `get_or_load` beside `MemoryCache::get` of the same
/// keys (one thread).
fn l1_hit(c: &mut Criterion) {
    let rt = runtime();
    let tiered = rt.block_on(async {
        let cache = TieredCache::<u64, String>::builder("bench")
            .l1_capacity(2 * KEYS)
            .ttl(Duration::from_secs(3600))
            .build()
            .unwrap();
        for k in 0..KEYS {
            cache.insert(k, levee_benches::userinfo(k)).await;
        }
        cache
    });
    let memory = MemoryCache::<u64, String>::builder()
        .max_capacity(2 * KEYS)
        .build()
        .unwrap();
    for k in 0..KEYS {
        memory.insert(k, levee_benches::userinfo(k));
    }
    let memory_batch = |iters: u64| {
        let start = Instant::now();
        let mut k = 0;
        for _ in 0..iters {
            k = (k + 7919) % KEYS;
            black_box(memory.get(&k)).unwrap();
        }
        start.elapsed()
    };
    let tiered_batch = |iters: u64| {
        rt.block_on(async {
            let start = Instant::now();
            let mut k = 0;
            for _ in 0..iters {
                k = (k + 7919) % KEYS;
                let got = tiered.get_or_load(k, move || never(k)).await;
                black_box(got.unwrap().unwrap());
            }
            start.elapsed()
        })
    };
    interleaved(
        "tiered/l1_hit tiered vs memory",
        200,
        10_000,
        tiered_batch,
        memory_batch,
    );
    let mut g = c.benchmark_group("tiered/l1_hit");
    g.throughput(Throughput::Elements(1));
    g.bench_function("memory_cache_get", |b| b.iter_custom(memory_batch));
    g.bench_function("tiered_get_or_load", |b| b.iter_custom(tiered_batch));
    g.finish();
}

/// An L2 hit: the L1 holds 16 entries and the gets cycle over 1,000
/// keys, so each get misses L1, reads and decodes the envelope from Redis
/// and promotes it to L1. Beside: a raw GET of the same key's bytes with
/// the `redis` crate's multiplexed connection, and a GET through levee's
/// own client (`RedisClient::get`: breaker, timeout; to split the cost
/// between the client and the cache). Sequential, one connection each,
/// loopback.
fn l2_hit(c: &mut Criterion) {
    let server = levee_testkit::RedisServer::start().expect("redis-server on the PATH");
    let rt = runtime();
    const HOT: u64 = 1_000;
    let client = RedisClient::standalone(server.url()).build().unwrap();
    // One cache with the default JSON codec, one with the binary (CBOR) one.
    let [tiered, binary] =
        [("bench", Codec::Json), ("bench-cbor", Codec::Binary)].map(|(name, codec)| {
            rt.block_on(async {
                let cache = TieredCache::<String, String>::builder(name)
                    .l1(MemoryCache::builder().max_capacity(16).shards(1))
                    .ttl(Duration::from_secs(3600))
                    .backplane(false)
                    .l2(RedisL2::builder(client.clone()).build().unwrap())
                    .codec(codec)
                    .build()
                    .unwrap();
                for k in 0..HOT {
                    cache
                        .insert(format!("user-{k}"), levee_benches::userinfo(k))
                        .await;
                }
                cache
            })
        });
    let raw = levee_benches::raw_connection(&rt, &server.url());
    let redis_key = |k: u64| format!("levee:bench:v1:user-{k}");
    println!(
        "tiered/l2_hit: one envelope is {} bytes (JSON codec)",
        rt.block_on(async {
            let v: Vec<u8> = redis::cmd("GET")
                .arg(redis_key(0))
                .query_async(&mut raw.clone())
                .await
                .unwrap();
            v.len()
        })
    );
    // Keys go on from where the last batch stopped, so that no batch finds
    // the previous batch's last keys still in the 16-entry L1.
    let next = std::cell::Cell::new(0u64);
    // L2 hits and gets so far: the share of L2 hits is checked over at
    // least a thousand gets (a key now and then is still in the 16-entry
    // L1, so a batch of one get, as criterion's first warm-up call makes,
    // may hold no L2 hit at all).
    let seen = std::cell::Cell::new((0u64, 0u64));
    let batch_on = |cache: &TieredCache<String, String>, iters: u64| {
        rt.block_on(async {
            let before = cache.stats().l2_hits;
            let start = Instant::now();
            for _ in 0..iters {
                let i = next.get() + 1;
                next.set(i);
                let got = cache
                    .get_or_load(format!("user-{}", (i * 7) % HOT), move || never(i))
                    .await;
                // A read that times out (50 ms: a loaded 2-core machine
                // can stall that long) falls to the loader, which fails
                // here; the hit count below says whether that stayed rare.
                let _ = black_box(got);
            }
            let took = start.elapsed();
            let (hits, gets) = seen.get();
            let (hits, gets) = (hits + cache.stats().l2_hits - before, gets + iters);
            seen.set((hits, gets));
            assert!(
                gets < 1_000 || hits * 10 >= gets * 9,
                "{hits} L2 hits in {gets} gets: {:?} {:?}",
                cache.stats().l2,
                client.stats()
            );
            took
        })
    };
    let tiered_batch = |iters: u64| batch_on(&tiered, iters);
    let raw_batch = |iters: u64| get_loop(&rt, raw.clone(), iters, |i| redis_key((i * 7) % HOT));
    interleaved(
        "tiered/l2_hit tiered vs raw GET",
        20,
        2_000,
        tiered_batch,
        raw_batch,
    );
    interleaved(
        "tiered/l2_hit tiered (binary codec) vs raw GET",
        20,
        2_000,
        |iters| batch_on(&binary, iters),
        raw_batch,
    );
    let mut g = c.benchmark_group("tiered/l2_hit");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(20)
        .throughput(Throughput::Elements(1));
    g.bench_function("tiered_get_or_load", |b| b.iter_custom(tiered_batch));
    g.bench_function("tiered_get_or_load_binary_codec", |b| {
        b.iter_custom(|iters| batch_on(&binary, iters))
    });
    g.bench_function("raw_redis_get", |b| b.iter_custom(raw_batch));
    g.bench_function("levee_client_get", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    let key = redis_key((i * 7) % HOT);
                    black_box(client.get(key.as_bytes()).await.unwrap());
                }
                start.elapsed()
            })
        })
    });
    g.finish();
    drop(server);
}

/// `iters` sequential GETs of `key(i)` on `conn`, timed.
fn get_loop<C: redis::aio::ConnectionLike>(
    rt: &tokio::runtime::Runtime,
    mut conn: C,
    iters: u64,
    key: impl Fn(u64) -> String,
) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        for i in 0..iters {
            let v: Vec<u8> = redis::cmd("GET")
                .arg(key(i))
                .query_async(&mut conn)
                .await
                .unwrap();
            black_box(v);
        }
        start.elapsed()
    })
}

/// N tasks ask for one cold key at once: the time until all N have the
/// value (one load). Beside: moka's `future::Cache::get_with`, which also
/// coalesces. Two worker threads.
fn coalesced(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tiered = rt.block_on(async {
        TieredCache::<u64, String>::builder("bench")
            .l1_capacity(1 << 20)
            .build()
            .unwrap()
    });
    let mut g = c.benchmark_group("tiered/coalesced_load");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(20);
    let mut next = 0u64;
    for n in [1u64, 100, 1_000] {
        g.throughput(Throughput::Elements(n));
        g.bench_with_input(BenchmarkId::new("tiered", n), &n, |b, &n| {
            b.iter_custom(|iters| {
                time_coalesced(&rt, n, iters, &mut next, |key| {
                    let cache = tiered.clone();
                    tokio::spawn(async move {
                        let load = move || async move {
                            Ok::<_, String>(Loaded::Value(levee_benches::userinfo(key)))
                        };
                        cache.get_or_load(key, load).await.unwrap().unwrap().value
                    })
                })
            })
        });
        let moka = moka::future::Cache::<u64, String>::new(1 << 20);
        g.bench_with_input(BenchmarkId::new("moka_get_with", n), &n, |b, &n| {
            b.iter_custom(|iters| {
                time_coalesced(&rt, n, iters, &mut next, |key| {
                    let cache = moka.clone();
                    tokio::spawn(async move {
                        cache
                            .get_with(key, async move { levee_benches::userinfo(key) })
                            .await
                    })
                })
            })
        });
    }
    g.finish();
}

/// `iters` rounds of: `n` tasks made by `spawn` for one new key, timed
/// until all have answered.
fn time_coalesced(
    rt: &tokio::runtime::Runtime,
    n: u64,
    iters: u64,
    next: &mut u64,
    spawn: impl Fn(u64) -> tokio::task::JoinHandle<String>,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        *next += 1;
        let key = *next;
        total += rt.block_on(async {
            let start = Instant::now();
            let tasks: Vec<_> = (0..n).map(|_| spawn(key)).collect();
            for t in tasks {
                black_box(t.await.unwrap());
            }
            start.elapsed()
        });
    }
    total
}

criterion_group!(benches, l1_hit, l2_hit, coalesced);
criterion_main!(benches);
