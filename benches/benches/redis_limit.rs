//! RedisSlidingWindow beside raw `redis` calls on the same throwaway
//! server (started by levee-testkit): one decision's round trip against a
//! raw `EVALSHA` of a one-line script and a raw `INCR`, sequential on one
//! connection.
//!
//! Run: `cargo bench -p levee-benches --bench redis_limit`
#![allow(missing_docs)] // criterion_main! generates an undocumented `main`

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use levee_limit::{Quota, RateLimiter, RedisSlidingWindow, WindowMode};
use levee_redis::RedisClient;

/// Runs `op(i)` for i in 0..iters on `rt`; returns the elapsed time.
macro_rules! timed {
    ($rt:expr, $iters:expr, |$i:ident| $body:expr) => {{
        $rt.block_on(async {
            let start = Instant::now();
            for $i in 0..$iters {
                let _ = $body;
            }
            start.elapsed()
        })
    }};
}

fn redis_limit(c: &mut Criterion) {
    let server = levee_testkit::RedisServer::start().expect("redis-server on the PATH");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = RedisClient::standalone(server.url()).build().unwrap();
    let conn = levee_benches::raw_connection(&rt, &server.url());
    // Never refuses at these rates, and below 2^21: the counter's one-integer
    // state (larger limits keep a hash; see `scripts::counter_body`).
    let quota = Quota::per_second(NonZeroU32::new((1 << 21) - 1).unwrap());
    let counter = RedisSlidingWindow::builder(client.clone(), quota)
        .build()
        .unwrap();
    let log = RedisSlidingWindow::builder(
        client.clone(),
        Quota::per_second(NonZeroU32::new(1_000_000).unwrap()),
    )
    .mode(WindowMode::Log)
    .build()
    .unwrap();
    let trivial = redis::Script::new("return 1");
    let keys: Vec<String> = (0..100).map(|i| format!("user-{i}")).collect();
    let mut g = c.benchmark_group("redis_limit/round_trip");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(20);
    g.bench_function("levee_counter_check", |b| {
        b.iter_custom(|iters| {
            timed!(rt, iters, |i| counter
                .check(keys[i as usize % 100].as_str())
                .await
                .unwrap())
        })
    });
    g.bench_function("levee_log_check", |b| {
        b.iter_custom(|iters| {
            timed!(rt, iters, |i| log
                .check(keys[i as usize % 100].as_str())
                .await
                .unwrap())
        })
    });
    g.bench_function("raw_evalsha_return_1", |b| {
        b.iter_custom(|iters| {
            let mut conn = conn.clone();
            timed!(rt, iters, |_i| {
                let _: i64 = trivial.invoke_async(&mut conn).await.unwrap();
            })
        })
    });
    g.bench_function("raw_incr", |b| {
        b.iter_custom(|iters| {
            let mut conn = conn.clone();
            timed!(rt, iters, |i| {
                let _: i64 = redis::cmd("INCR")
                    .arg(&keys[i as usize % 100])
                    .query_async(&mut conn)
                    .await
                    .unwrap();
            })
        })
    });
    g.finish();
}

/// Throughput: 64 tasks at once on a multi-threaded runtime, with a server,
/// runtime and connection of its own.
fn concurrent(c: &mut Criterion) {
    let server = levee_testkit::RedisServer::start().expect("redis-server on the PATH");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = RedisClient::standalone(server.url()).build().unwrap();
    let conn = levee_benches::raw_connection(&rt, &server.url());
    // Never refuses at these rates, and below 2^21: the counter's one-integer
    // state (larger limits keep a hash; see `scripts::counter_body`).
    let quota = Quota::per_second(NonZeroU32::new((1 << 21) - 1).unwrap());
    // A decision that timed out would count towards the breaker, and an
    // open breaker answers (fail-open) without Redis: on a loaded machine
    // the default 50 ms made the bench measure that instead. The stats
    // printed after the group show whether any call timed out or was
    // rejected.
    let counter = RedisSlidingWindow::builder(client.clone(), quota)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    // The same limiter sending concurrent checks as one call
    // (`batch_concurrent`), on its own key prefix.
    let batched = RedisSlidingWindow::builder(client.clone(), quota)
        .prefix("levee:rl:batched")
        .timeout(Duration::from_secs(2))
        .batch_concurrent(true)
        .build()
        .unwrap();
    let trivial = redis::Script::new("return 1");
    let mut g = c.benchmark_group("redis_limit/64_tasks");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(15);
    g.throughput(criterion::Throughput::Elements(64));
    for (name, limiter) in [
        ("levee_counter_check", &counter),
        ("levee_counter_check_batched", &batched),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| rt.block_on(sixty_four_tasks(limiter, iters)))
        });
    }
    g.bench_function("raw_evalsha_return_1", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                let tasks: Vec<_> = (0..64)
                    .map(|_| {
                        let (mut conn, script) = (conn.clone(), trivial.clone());
                        tokio::spawn(async move {
                            for _ in 0..iters {
                                let _: i64 = script.invoke_async(&mut conn).await.unwrap();
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
                start.elapsed()
            })
        })
    });
    g.finish();
    let stats = client.stats();
    eprintln!(
        "redis_limit/64_tasks client: {} calls, {} timed out, {} rejected by the breaker",
        stats.attempts, stats.timeouts, stats.rejected
    );
}

/// 64 tasks, each checking its own key `iters` times through `limiter`:
/// the time until all are done.
async fn sixty_four_tasks(limiter: &RedisSlidingWindow, iters: u64) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let l = limiter.clone();
            tokio::spawn(async move {
                let key = format!("user-{t}");
                for _ in 0..iters {
                    let _ = l.check(key.as_str()).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

criterion_group!(benches, redis_limit, concurrent);
criterion_main!(benches);
