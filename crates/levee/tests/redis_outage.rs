//! The five Redis users (L2, load lock, backplane, Redis limiter, shared
//! upstream quota) on one `RedisClient`, through a Redis kill and restart:
//! while the client's breaker is open none of them waits on Redis (counted
//! in the client's stats, no timing), each takes its own fallback, and
//! nothing is logged per request; after a restart 2 s later, with the
//! breaker's clock moved by one open period, the first probe succeeds,
//! whichever user sends it, and every user works again.
#![cfg(feature = "redis")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{HeaderMap, HeaderValue, StatusCode};
use levee::breaker::State;
use levee::cache::{Loaded, RedisL2, Source, TieredCache};
use levee::core::ManualClock;
use levee::limit::{
    OnRedisError, Quota, QuotaState, RateLimiter, RedisSlidingWindow, SharedUpstreamQuota,
    TimeSource, UpstreamQuota,
};
use levee::redis::RedisClient;
use levee_testkit::RedisServer;

type Cache = TieredCache<String, String>;

/// One replica's Redis users, all on one client.
struct Replica {
    client: RedisClient,
    cache: Cache,
    limiter: RedisSlidingWindow,
    quota: SharedUpstreamQuota<String>,
}

fn replica(url: &str, clock: &ManualClock) -> Replica {
    let client = RedisClient::standalone(url)
        .clock(clock.shared())
        .command_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let cache = TieredCache::builder("outage")
        .ttl(Duration::from_secs(60))
        .failure_backoff(Duration::from_millis(1))
        .load_lock(Duration::from_millis(500))
        .l2(RedisL2::builder(client.clone())
            .timeout(Duration::from_millis(200))
            .build()
            .unwrap())
        .clock(clock.shared())
        .build()
        .unwrap();
    let limiter = RedisSlidingWindow::builder(
        client.clone(),
        Quota::new(9, Duration::from_secs(3600)).unwrap(),
    )
    .time_source(TimeSource::Clock)
    .clock(clock.shared())
    .timeout(Duration::from_millis(200))
    .on_redis_error(OnRedisError::Local { replicas: 3 })
    .build()
    .unwrap();
    let quota = UpstreamQuota::<String>::builder()
        .clock(clock.shared())
        .build()
        .redis(client.clone(), "outage-quota");
    Replica {
        client,
        cache,
        limiter,
        quota,
    }
}

async fn load(cache: &Cache, key: &str) -> Source {
    cache
        .get_or_load(key.to_string(), || async {
            Ok::<_, String>(Loaded::Value("v".to_string()))
        })
        .await
        .unwrap()
        .unwrap()
        .source
}

fn too_many(retry_after_s: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("retry-after", HeaderValue::from(retry_after_s));
    h
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..100 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Counts log events at DEBUG and above (TRACE follows every load by
/// design) by the crate that emitted them.
#[derive(Default)]
struct Logs {
    /// The client (breaker, connection).
    redis: AtomicUsize,
    /// The client's pub/sub listeners (one per replica here).
    pubsub: AtomicUsize,
    /// The cache and the limiters.
    others: AtomicUsize,
}

struct Counting(Arc<Logs>);

impl tracing::Subscriber for Counting {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::TRACE {
            return;
        }
        let module = event.metadata().module_path().unwrap_or("");
        if module.starts_with("levee_redis::pubsub") {
            self.0.pubsub.fetch_add(1, Ordering::Relaxed);
        } else if module.starts_with("levee_redis") {
            self.0.redis.fetch_add(1, Ordering::Relaxed);
        } else if module.starts_with("levee") {
            self.0.others.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Which user sends the first command after the restart (the probe).
#[derive(Debug, Clone, Copy)]
enum First {
    L2Read,
    Invalidate,
    Limiter,
    Quota,
}

async fn outage_then_restart(first: First) {
    let logs = Arc::new(Logs::default());
    let _logging = tracing::subscriber::set_default(Counting(logs.clone()));
    let mut server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let a = replica(&server.url(), &clock);
    let b = replica(&server.url(), &clock);
    until("both subscribed", || {
        a.cache.stats().backplane_subscribed && b.cache.stats().backplane_subscribed
    })
    .await;
    assert_eq!(load(&a.cache, "warm").await, Source::Loader);
    assert!(a.limiter.check("warm").await.unwrap().allowed);
    assert_eq!(a.quota.check(&"warm".to_string()).await, QuotaState::Ready);

    server.kill();
    // Calls fail (each within its timeout) until the breaker opens.
    for i in 0..3 {
        load(&a.cache, &format!("down{i}")).await;
    }
    assert_eq!(a.client.breaker().state(), State::Open);
    until("the backplane noticed", || {
        !a.cache.stats().backplane_subscribed
    })
    .await;

    // The breaker is open: 100 rounds of every user.
    let attempts = a.client.stats().attempts;
    let rejected = a.client.stats().rejected;
    let (redis_logs, pubsub_logs, other_logs) = (
        logs.redis.load(Ordering::Relaxed),
        logs.pubsub.load(Ordering::Relaxed),
        logs.others.load(Ordering::Relaxed),
    );
    let mut admitted = 0;
    for i in 0..100 {
        let key = format!("open{i}");
        // L2 and load lock: a miss, so the loader answers.
        assert_eq!(load(&a.cache, &key).await, Source::Loader);
        // Backplane: the local copy goes, the publish is skipped.
        a.cache.invalidate(&key).await;
        assert!(a.cache.get(&key).is_none());
        // Limiter: decided locally, 9 / 3 replicas.
        admitted += u32::from(a.limiter.check("hot").await.unwrap().allowed);
        // Quota: answers from what this replica learned itself.
        assert_eq!(a.quota.check(&key).await, QuotaState::Ready);
        a.quota
            .observe(&key, StatusCode::TOO_MANY_REQUESTS, &too_many(30))
            .await;
        assert!(matches!(
            a.quota.check(&key).await,
            QuotaState::HoldBack { .. }
        ));
    }
    assert_eq!(admitted, 3, "the limiter's local fallback");
    assert_eq!(
        a.client.stats().attempts,
        attempts,
        "no call waited on Redis while the breaker was open"
    );
    assert!(a.client.stats().rejected >= rejected + 100 * 5);
    assert_eq!(
        logs.others.load(Ordering::Relaxed),
        other_logs,
        "the cache and the limiters log nothing per request"
    );
    assert_eq!(
        logs.redis.load(Ordering::Relaxed),
        redis_logs,
        "the client logs state changes only, and none happened here"
    );
    assert!(
        logs.pubsub.load(Ordering::Relaxed) <= pubsub_logs + 2,
        "each replica's listener logs its failing resubscription once, not per retry"
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    server.restart().unwrap();
    until("resubscribed", || {
        a.cache.stats().backplane_subscribed && b.cache.stats().backplane_subscribed
    })
    .await;
    assert_eq!(
        a.cache.stats().invalidations_pending,
        100,
        "kept while Redis was down"
    );
    clock.advance(Duration::from_secs(5));
    let before = a.client.stats();
    match first {
        First::L2Read => assert_eq!(load(&a.cache, "probe").await, Source::Loader),
        First::Invalidate => a.cache.invalidate(&"probe".to_string()).await,
        First::Limiter => assert!(a.limiter.check("probe").await.unwrap().allowed),
        First::Quota => assert_eq!(a.quota.check(&"probe".to_string()).await, QuotaState::Ready),
    }
    let after = a.client.stats();
    assert_eq!(
        a.client.breaker().state(),
        State::Closed,
        "{first:?}: the probe succeeded"
    );
    assert!(after.successes > before.successes, "{first:?}");
    assert_eq!(
        (after.unreachable, after.timeouts),
        (before.unreachable, before.timeouts),
        "{first:?}: no failure after the restart"
    );

    // The 100 invalidations made while Redis was down are sent again now
    // that it answers (the first cache call that finds it back starts it).
    let _ = load(&a.cache, "resend").await;
    until("the outage's invalidations were sent again", || {
        a.cache.stats().invalidations_pending == 0
    })
    .await;

    // Every user works again. L2 and the load lock: a cold key takes the
    // lock, loads, writes, unlocks (4 commands), and the other replica
    // reads it from L2.
    let attempts = a.client.stats().attempts;
    assert_eq!(load(&a.cache, "shared").await, Source::Loader);
    assert_eq!(
        a.client.stats().attempts - attempts,
        4,
        "GET, SET NX, SET, unlock"
    );
    assert_eq!(load(&b.cache, "shared").await, Source::L2);
    // Backplane: an invalidation reaches the other replica.
    a.cache.invalidate(&"shared".to_string()).await;
    until("b dropped its copy", || {
        b.cache.get(&"shared".to_string()).is_none()
    })
    .await;
    // Limiter: Redis decides again (9, not the local 3).
    let mut admitted = 0;
    for _ in 0..12 {
        admitted += u32::from(a.limiter.check("after").await.unwrap().allowed);
    }
    assert_eq!(admitted, 9, "decided by Redis");
    // Quota: a hold learned by one replica holds back the other.
    let user = "after".to_string();
    a.quota
        .observe(&user, StatusCode::TOO_MANY_REQUESTS, &too_many(30))
        .await;
    assert!(matches!(
        b.quota.check(&user).await,
        QuotaState::HoldBack { .. }
    ));
    let end = a.client.stats();
    assert_eq!(
        (end.unreachable, end.timeouts, end.rejected),
        (after.unreachable, after.timeouts, after.rejected)
    );
}

#[tokio::test]
async fn redis_killed_and_restarted_the_l2_read_probes_first() {
    outage_then_restart(First::L2Read).await;
}

#[tokio::test]
async fn redis_killed_and_restarted_an_invalidation_probes_first() {
    outage_then_restart(First::Invalidate).await;
}

#[tokio::test]
async fn redis_killed_and_restarted_the_limiter_probes_first() {
    outage_then_restart(First::Limiter).await;
}

#[tokio::test]
async fn redis_killed_and_restarted_the_quota_probes_first() {
    outage_then_restart(First::Quota).await;
}
