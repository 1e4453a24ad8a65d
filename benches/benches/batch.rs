//! Batch reads (issue 22): 100 keys, 20 % in the reader's L1, 60 % only on
//! L2, 20 % nowhere (loaded by a loader whose cost is one real round trip:
//! a `PING` to a second loopback Redis standing in for the upstream).
//! `get_or_load_many` beside 100 concurrent `get_or_load` and 100
//! sequential ones, on one reader replica; each round uses new keys,
//! prepared (untimed) by a writer replica.
//!
//! Before criterion's runs it prints, per strategy, the Redis round trips
//! (the reader's client's commands, pipelines counted once), the upstream
//! calls and the mean time per 100 keys over 100 interleaved rounds.
//!
//! Run: `cargo bench -p levee-benches --bench batch`
#![allow(missing_docs)] // criterion_main! generates an undocumented `main`

use std::cell::Cell;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use levee_cache::{BatchLoaded, Loaded, RedisL2, TieredCache};
use levee_redis::RedisClient;

const N: usize = 100;

type Cache = TieredCache<String, String>;

/// A `/userinfo` answer of a realistic size (about 200 bytes of JSON).
fn userinfo(k: &str) -> String {
    format!(
        "{{\"sub\":\"auth0|{k:>24}\",\"email\":\"{k}@example.com\",\"email_verified\":true,\
         \"name\":\"User {k}\",\"picture\":\"https://cdn.example.com/avatars/{k}.png\",\
         \"updated_at\":\"2026-11-23T09:00:00.000Z\"}}"
    )
}

/// The simulated upstream: each call is one round trip to its own
/// loopback server; calls are counted.
#[derive(Clone)]
struct Upstream {
    conn: redis::aio::MultiplexedConnection,
    calls: Arc<AtomicU64>,
}

impl Upstream {
    async fn call(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let () = redis::cmd("PING")
            .query_async::<String>(&mut self.conn.clone())
            .await
            .map(drop)
            .expect("the upstream stand-in answers");
    }

    async fn one(self, key: String) -> Result<Loaded<String>, String> {
        self.call().await;
        Ok(Loaded::Value(userinfo(&key)))
    }

    async fn many(self, keys: Vec<String>) -> Result<BatchLoaded<String, String, String>, String> {
        self.call().await;
        Ok(keys
            .into_iter()
            .map(|k| {
                let v = userinfo(&k);
                (k, Ok(Loaded::Value(v)))
            })
            .collect())
    }
}

struct Bench {
    rt: tokio::runtime::Runtime,
    writer: Cache,
    reader: Cache,
    reader_client: RedisClient,
    upstream: Upstream,
    round: Cell<u64>,
    _servers: [levee_testkit::RedisServer; 2],
}

#[derive(Clone, Copy, Debug)]
enum Strategy {
    Batch,
    Concurrent,
    Sequential,
}

impl Bench {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let cache_server = levee_testkit::RedisServer::start().expect("redis-server on the PATH");
        let upstream_server =
            levee_testkit::RedisServer::start().expect("redis-server on the PATH");
        let (writer, reader, reader_client, upstream) = rt.block_on(async {
            let replica = |client: &RedisClient| {
                TieredCache::<String, String>::builder("bench")
                    .l1_capacity(1 << 20)
                    .ttl(Duration::from_secs(3600))
                    .backplane(false)
                    // A loaded 2-core VM can stall past the default 50 ms.
                    .l2(RedisL2::builder(client.clone())
                        .timeout(Duration::from_secs(1))
                        .build()
                        .unwrap())
                    .build()
                    .unwrap()
            };
            let reader_client = RedisClient::standalone(cache_server.url()).build().unwrap();
            let writer_client = RedisClient::standalone(cache_server.url()).build().unwrap();
            let conn = redis::Client::open(upstream_server.url())
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            let upstream = Upstream {
                conn,
                calls: Arc::default(),
            };
            (
                replica(&writer_client),
                replica(&reader_client),
                reader_client,
                upstream,
            )
        });
        Bench {
            rt,
            writer,
            reader,
            reader_client,
            upstream,
            round: Cell::new(0),
            _servers: [cache_server, upstream_server],
        }
    }

    /// New keys: the first 20 in the reader's L1 (and on L2), the next 60
    /// only on L2, the last 20 nowhere.
    fn prepare(&self) -> Vec<String> {
        let r = self.round.get() + 1;
        self.round.set(r);
        let keys: Vec<String> = (0..N).map(|i| format!("r{r}-user-{i}")).collect();
        let up = self.upstream.clone();
        let calls_before = up.calls.load(Ordering::Relaxed);
        let writes_before = written(&self.writer);
        self.rt.block_on(async {
            let seeded = self
                .writer
                .get_or_load_many(keys[..80].to_vec(), move |ks| up.clone().many(ks))
                .await;
            assert!(seeded.iter().all(|g| matches!(g, Ok(Some(_)))));
            // The batch answers before its write-back pipeline is done.
            until_written(&self.writer, writes_before + 80).await;
            let promoted = self.reader.get_many(&keys[..20]).await;
            assert!(promoted.iter().all(Option::is_some));
        });
        // Preparing is not the measured strategy's upstream traffic.
        self.upstream.calls.store(calls_before, Ordering::Relaxed);
        keys
    }

    /// One round of `strategy` on prepared `keys`, timed.
    fn run(&self, strategy: Strategy, keys: Vec<String>) -> Duration {
        let (reader, up) = (&self.reader, &self.upstream);
        self.rt.block_on(async {
            let start = Instant::now();
            match strategy {
                Strategy::Batch => {
                    let up = up.clone();
                    let got = reader
                        .get_or_load_many(keys, move |ks| up.clone().many(ks))
                        .await;
                    assert!(got.iter().all(|g| matches!(g, Ok(Some(_)))));
                    black_box(got);
                }
                Strategy::Concurrent => {
                    let tasks: Vec<_> = keys
                        .into_iter()
                        .map(|k| {
                            let (reader, up) = (reader.clone(), up.clone());
                            tokio::spawn(async move {
                                let key = k.clone();
                                reader.get_or_load(k, move || up.one(key)).await
                            })
                        })
                        .collect();
                    for t in tasks {
                        black_box(t.await.unwrap().unwrap().unwrap());
                    }
                }
                Strategy::Sequential => {
                    for k in keys {
                        let (up, key) = (up.clone(), k.clone());
                        let got = reader.get_or_load(k, move || up.one(key)).await;
                        black_box(got.unwrap().unwrap());
                    }
                }
            }
            start.elapsed()
        })
    }

    fn iter(&self, strategy: Strategy, iters: u64) -> Duration {
        (0..iters)
            .map(|_| {
                let keys = self.prepare();
                self.run(strategy, keys)
            })
            .sum()
    }
}

/// Envelopes `c` has written to L2.
fn written(c: &Cache) -> u64 {
    c.stats().l2.map_or(0, |l2| l2.writes)
}

/// Waits until `c` has written `n` envelopes in all.
async fn until_written(c: &Cache, n: u64) {
    let start = Instant::now();
    while written(c) < n {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "L2 writes did not happen: {:?}",
            c.stats().l2
        );
        tokio::task::yield_now().await;
    }
}

/// Round trips and mean times per 100 keys, the strategies interleaved
/// round by round (drift on a shared machine then hits all alike).
fn summary(b: &Bench) {
    if std::env::args().any(|a| a == "--profile-time") {
        return;
    }
    const ROUNDS: u32 = 100;
    let all = [Strategy::Batch, Strategy::Concurrent, Strategy::Sequential];
    let mut time = [Duration::ZERO; 3];
    let mut redis = [0u64; 3];
    let mut upstream = [0u64; 3];
    for _ in 0..ROUNDS {
        for (i, s) in all.into_iter().enumerate() {
            let keys = b.prepare();
            let (r0, u0, w0) = (
                b.reader_client.stats().attempts,
                b.upstream.calls.load(Ordering::Relaxed),
                written(&b.reader),
            );
            time[i] += b.run(s, keys);
            // The batch answers before its write-back pipeline is done:
            // count its round trip too.
            b.rt.block_on(until_written(&b.reader, w0 + 20));
            redis[i] += b.reader_client.stats().attempts - r0;
            upstream[i] += b.upstream.calls.load(Ordering::Relaxed) - u0;
        }
    }
    let per = |x: u64| x as f64 / f64::from(ROUNDS);
    for (i, s) in all.into_iter().enumerate() {
        println!(
            "batch/100_keys {s:?}: {:.0} µs per 100 keys, {:.1} Redis round trips, {:.1} upstream calls \
             ({:.2}x the batch's time, {:.1}x its round trips)",
            time[i].as_secs_f64() * 1e6 / f64::from(ROUNDS),
            per(redis[i]),
            per(upstream[i]),
            time[i].as_secs_f64() / time[0].as_secs_f64(),
            (redis[i] + upstream[i]) as f64 / (redis[0] + upstream[0]) as f64,
        );
    }
}

fn batch(c: &mut Criterion) {
    let b = Bench::new();
    summary(&b);
    let mut g = c.benchmark_group("batch/100_keys");
    g.throughput(Throughput::Elements(N as u64)).sample_size(20);
    g.bench_function("get_or_load_many", |x| {
        x.iter_custom(|iters| b.iter(Strategy::Batch, iters))
    });
    g.bench_function("concurrent_get_or_load", |x| {
        x.iter_custom(|iters| b.iter(Strategy::Concurrent, iters))
    });
    g.bench_function("sequential_get_or_load", |x| {
        x.iter_custom(|iters| b.iter(Strategy::Sequential, iters))
    });
    g.finish();
}

criterion_group!(benches, batch);
criterion_main!(benches);
