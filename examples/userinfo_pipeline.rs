//! The identity-provider story through one `Levee` pipeline, against
//! levee-testkit's MockIdp (a real HTTP server on loopback with Auth0's
//! per-user limits: 10 burst, 5 a minute, 429 with `x-ratelimit-*`).
//!
//! Run: `cargo run --example userinfo_pipeline` (no Redis needed; with
//! `REDIS_URL=redis://...` the shared tier is added: a Redis L2, the load
//! lock and an upstream quota shared by every replica). The settings are
//! the ones `docs/tuning.md` explains.
//!
//! What it shows: a page load's 5 concurrent requests make one upstream
//! call; the quota learns each user's remaining calls from the headers; an
//! outage is answered with stale values, labelled with their tier; the
//! breaker stops calling a provider that keeps failing.

use std::time::Duration;

use levee::breaker::CircuitBreaker;
use levee::cache::RedisL2;
use levee::cache::{Loaded, TieredCache};
use levee::core::{KeyHasher, ManualClock, SensitiveKey};
use levee::limit::UpstreamQuota;
use levee::redis::RedisClient;
use levee::{Levee, RetryPolicy};
use levee_testkit::MockIdp;

#[path = "story/mod.rs"]
mod story;

use story::Response;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The IdP's buckets and the pipeline's TTLs run on one manual clock: the
    // example moves time by hand instead of waiting.
    let clock = ManualClock::new();
    let idp = std::sync::Arc::new(MockIdp::start(clock.shared()).await?);
    let hasher = KeyHasher::new(b"deployment secret from your vault".as_slice());

    // One Redis client (one breaker) for every shared part, when asked for.
    let redis = match std::env::var("REDIS_URL") {
        Ok(url) => Some(RedisClient::standalone(url).build()?),
        Err(_) => None,
    };
    let mut cache = TieredCache::<SensitiveKey, String>::builder("userinfo")
        .ttl(Duration::from_secs(300))
        .ttl_jitter(0.1)
        .stale_while_revalidate(Duration::from_secs(5))
        .stale_tiers([
            ("secondary", Duration::from_secs(15 * 60)),
            ("emergency", Duration::from_secs(60 * 60)),
        ])
        .failure_backoff(Duration::from_secs(10))
        .negative_ttl(Duration::from_secs(30))
        .clock(clock.shared());
    if let Some(redis) = &redis {
        cache = cache
            .l2(RedisL2::builder(redis.clone()).build()?)
            .l1_ttl(Duration::from_secs(30))
            .load_lock(Duration::from_secs(2));
    }
    let breaker = CircuitBreaker::builder()
        .name("idp")
        .consecutive_failures(5)
        .open_duration(Duration::from_secs(30))
        .half_open_permits(1)
        .clock(clock.shared())
        .build()?;
    let quota = UpstreamQuota::builder()
        .clock(clock.shared())
        .default_hold(Duration::from_secs(60))
        .build();
    let userinfo = Levee::builder("userinfo").cache(cache.build()?);
    let userinfo = match &redis {
        Some(redis) => userinfo.upstream_quota(quota.redis(redis.clone(), "idp-hold")),
        None => userinfo.upstream_quota(quota),
    };
    let userinfo = userinfo
        .circuit_breaker(breaker.clone())
        // Retried at once: this example moves its clock by hand, and a
        // backoff would wait for a clock nobody advances.
        .retry(RetryPolicy::new(2).base_delay(Duration::ZERO))
        .clock(clock.shared())
        // The response becomes the cached body; a 401 means "no such user".
        .map(|r: Response| match r.status() {
            http::StatusCode::UNAUTHORIZED => Loaded::Absent,
            _ => Loaded::Value(r.into_body()),
        })
        .http() // status + rate-limit headers: the verdict, and the quota's lessons
        .build()?;

    story::tell(&userinfo, &idp, &hasher, &clock, Duration::from_secs(11)).await?;
    println!("   breaker: {:?}", breaker.state());
    let stats = userinfo.stats();
    println!(
        "   pipeline: {} loads, {} attempts, {} retries, {} refused by the open breaker",
        stats.loads, stats.attempts, stats.retries, stats.circuit_open
    );

    println!("\n4. bob, never seen, during the outage:");
    match story::fetch(&userinfo, &idp, &hasher, "bob").await {
        Ok(v) => println!("   {v:?}"),
        Err(e) => println!("   error: {e}"),
    }
    Ok(())
}
