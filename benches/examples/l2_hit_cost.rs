//! Instructions per L2 hit, for callgrind on a noisy machine (issue 21):
//! runs `N` gets that miss L1 and hit Redis through
//! `TieredCache::get_or_load` with the JSON codec (`json`) or the binary
//! one (`binary`), or `N` raw `redis` GETs of the same bytes (`raw`), after
//! the same setup (the `tiered` bench's L2-hit case: a 16-entry L1, 1,000
//! keys, a 200-byte `/userinfo` JSON string). Redis runs in its own process,
//! so callgrind counts the client only. Instructions per get are
//! `(Ir(N) - Ir(0)) / N`:
//!
//! ```sh
//! cargo build --release -p levee-benches --example l2_hit_cost
//! for what in json binary raw; do for n in 0 5000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$what.$n \
//!     target/release/examples/l2_hit_cost $what $n 2>&1 | grep refs
//! done; done
//! ```

use std::hint::black_box;
use std::time::Duration;

use levee_cache::{Codec, Loaded, MemoryCache, RedisL2, TieredCache};
use levee_redis::RedisClient;

const HOT: u64 = 1_000;

async fn never(_: u64) -> Result<Loaded<String>, String> {
    Err("the run expected a hit".into())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "json".into());
    let n: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(5_000);
    let server = levee_testkit::RedisServer::start().expect("redis-server on the PATH");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let client = RedisClient::standalone(server.url())
        .build()
        .expect("a client");
    let codec = if what == "binary" {
        Codec::Binary
    } else {
        Codec::Json
    };
    let cache = rt.block_on(async {
        let cache = TieredCache::<String, String>::builder("bench")
            .l1(MemoryCache::builder().max_capacity(16).shards(1))
            .ttl(Duration::from_secs(3600))
            .backplane(false)
            // valgrind slows the client 50x: no read may time out
            .l2(RedisL2::builder(client.clone())
                .timeout(Duration::from_secs(5))
                .build()
                .expect("an L2"))
            .codec(codec)
            .build()
            .expect("a cache");
        for k in 0..HOT {
            cache
                .insert(format!("user-{k}"), levee_benches::userinfo(k))
                .await;
        }
        cache
    });
    let mut raw = levee_benches::raw_connection(&rt, &server.url());
    rt.block_on(async {
        let before = cache.stats().l2_hits;
        let start = std::time::Instant::now();
        for i in 1..=n {
            let k = (i * 7) % HOT;
            if what == "raw" {
                let v: Vec<u8> = redis::cmd("GET")
                    .arg(format!("levee:bench:v1:user-{k}"))
                    .query_async(&mut raw)
                    .await
                    .expect("a GET");
                black_box(v);
            } else {
                let got = cache
                    .get_or_load(format!("user-{k}"), move || never(i))
                    .await;
                black_box(got.ok());
            }
        }
        if n > 0 {
            let hits = cache.stats().l2_hits - before;
            println!(
                "{what}: {:?} per get, {hits} L2 hits",
                start.elapsed() / n as u32
            );
        }
    });
}
