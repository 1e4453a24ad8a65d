//! The userinfo storm, small: 50 users on 2 replicas for one simulated
//! hour against the MockIdp (down from minute 20 to 30, 2 s slow from 40
//! to 45), on a real Redis. The full `Levee` pipeline makes no more calls
//! than the physical limit, spends no 429 and shows users no error; the
//! plain TTL cache with the same TTL makes more calls and shows errors.
//! The simulation is the one `examples/userinfo_storm.rs` runs.
#![cfg(all(feature = "http", feature = "redis"))]

#[allow(dead_code, unreachable_pub)]
#[path = "../../../examples/storm/mod.rs"]
mod storm;

use storm::{Config, Strategy, Summary};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn levee_full_stays_under_the_physical_limit_where_a_plain_ttl_cache_fails_users() {
    let config = Config {
        users: 50,
        replicas: 2,
        seed: 7,
        redis: None,
        strategies: vec![Strategy::PlainTtl, Strategy::LeveeFull],
    };
    let began = std::time::Instant::now();
    let report = storm::run(&config).await.unwrap();
    let of =
        |s: Strategy| -> &Summary { report.summaries.iter().find(|x| x.strategy == s).unwrap() };
    let (plain, full) = (of(Strategy::PlainTtl), of(Strategy::LeveeFull));
    let limit = report.physical_limit;
    assert_eq!(full.user_errors, 0, "levee full showed errors: {full:?}");
    assert_eq!(full.upstream_429s, 0, "levee full spent 429s: {full:?}");
    assert!(
        full.upstream_calls <= limit,
        "levee full made {} calls, over the physical limit {limit}",
        full.upstream_calls
    );
    assert!(
        full.stale_by_tier.values().sum::<u64>() > 0,
        "the outage was answered with stale values"
    );
    assert!(
        plain.upstream_calls > full.upstream_calls,
        "plain ttl {} calls, levee full {}",
        plain.upstream_calls,
        full.upstream_calls
    );
    assert!(plain.user_errors > 0, "the plain TTL cache hid the outage?");
    eprintln!(
        "limit {limit}; plain ttl {plain:?}; levee full {full:?}; {:?} real",
        began.elapsed()
    );
}
