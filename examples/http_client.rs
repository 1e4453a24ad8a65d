//! `LeveeLayer` around a real HTTP client (hyper-util's), calling
//! levee-testkit's MockIdp on loopback (Auth0's per-user limits: 10 burst,
//! 5 a minute, 429 with `x-ratelimit-*`).
//!
//! Run: `cargo run -p levee-examples --example http_client` (no Redis or
//! network needed; with `REDIS_URL=redis://...` the cache gets a Redis L2
//! and the upstream quota is shared through Redis).
//!
//! What it shows: a page load's 5 concurrent requests make one upstream
//! call; another user gets their own; during an outage the cached response
//! is served stale, labelled with its tier and age in `x-levee-cache`; a
//! POST always goes to the upstream.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use levee::RetryPolicy;
use levee::breaker::CircuitBreaker;
use levee::cache::{RedisL2, TieredCache};
use levee::client::{Credential, LeveeLayer, PerCredential};
use levee::core::{KeyHasher, ManualClock};
use levee::limit::UpstreamQuota;
use levee::redis::RedisClient;
use levee_testkit::MockIdp;
use tower::{ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The IdP's buckets and the pipeline's TTLs run on one manual clock: the
    // example moves time by hand instead of waiting.
    let clock = ManualClock::new();
    let idp = MockIdp::start(clock.shared()).await?;

    let redis = match std::env::var("REDIS_URL") {
        Ok(url) => Some(RedisClient::standalone(url).build()?),
        Err(_) => None,
    };
    let mut cache = TieredCache::builder("userinfo")
        .ttl(Duration::from_secs(300))
        .stale_tiers([
            ("secondary", Duration::from_secs(15 * 60)),
            ("emergency", Duration::from_secs(60 * 60)),
        ])
        .failure_backoff(Duration::from_secs(10))
        .clock(clock.shared());
    if let Some(redis) = &redis {
        cache = cache
            .l2(RedisL2::builder(redis.clone()).build()?)
            .l1_ttl(Duration::from_secs(30))
            .load_lock(Duration::from_secs(2));
    }
    let quota = UpstreamQuota::<Credential>::builder()
        .clock(clock.shared())
        .build();
    let pipeline = LeveeLayer::pipeline("userinfo").cache(cache.build()?);
    let pipeline = match &redis {
        Some(redis) => {
            pipeline.upstream_quota(PerCredential::new(quota.redis(redis.clone(), "idp-hold")))
        }
        None => pipeline.upstream_quota(PerCredential::new(quota)),
    };
    let pipeline = pipeline
        .circuit_breaker(
            CircuitBreaker::builder()
                .name("idp")
                .consecutive_failures(5)
                .clock(clock.shared())
                .build()?,
        )
        // Retried at once: a backoff would wait for a clock nobody advances.
        .retry(RetryPolicy::new(2).base_delay(Duration::ZERO))
        .attempt_timeout(Duration::from_secs(2))
        .clock(clock.shared())
        .build()?;
    let hasher = KeyHasher::new(b"deployment secret from your vault".as_slice());
    let client = ServiceBuilder::new()
        .layer(LeveeLayer::new(pipeline, hasher))
        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());

    let request = |method: Method, user: &str| {
        Request::builder()
            .method(method)
            .uri(idp.userinfo_url())
            .header("authorization", format!("Bearer token-{user}"))
            .body(Full::<Bytes>::default())
    };
    let show = |label: &str, got: Result<Response<Full<Bytes>>, levee::Error<_>>| {
        let label = label.to_string();
        async move {
            match got {
                Ok(r) => {
                    let from = r.headers().get("x-levee-cache").cloned();
                    let status = r.status();
                    let body = r
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    println!(
                        "   {label}: {status} [{}] {}",
                        from.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("-"),
                        String::from_utf8_lossy(&body)
                    );
                }
                Err(e) => println!("   {label}: error: {e}"),
            }
        }
    };

    println!("1. alice's page load sends 5 requests at once:");
    let page: Vec<_> = (0..5)
        .map(|_| request(Method::GET, "alice").map(|r| tokio::spawn(client.clone().oneshot(r))))
        .collect::<Result<_, _>>()?;
    for (i, r) in page.into_iter().enumerate() {
        show(&format!("request {}", i + 1), r.await?).await;
    }
    println!("   IdP calls for alice: {}", idp.calls("alice"));

    println!("\n2. bob, another token, gets his own call:");
    show(
        "bob",
        client.clone().oneshot(request(Method::GET, "bob")?).await,
    )
    .await;
    println!("   IdP calls for bob: {}", idp.calls("bob"));

    println!("\n3. ten minutes later the IdP is down:");
    clock.advance(Duration::from_secs(600));
    idp.set_outage(true);
    for user in ["alice", "bob"] {
        show(
            user,
            client.clone().oneshot(request(Method::GET, user)?).await,
        )
        .await;
    }
    // A POST is sent once, never answered from the cache (MockIdp serves
    // only GET, so the IdP's own answer is a 405).
    show(
        "alice POST",
        client
            .clone()
            .oneshot(request(Method::POST, "alice")?)
            .await,
    )
    .await;
    // Carol was never cached: nothing stale to serve; her 503s (retried
    // once) come back as the pipeline's error.
    show(
        "carol",
        client.clone().oneshot(request(Method::GET, "carol")?).await,
    )
    .await;
    println!(
        "   IdP calls: alice {}, bob {}, carol {}",
        idp.calls("alice"),
        idp.calls("bob"),
        idp.calls("carol")
    );
    Ok(())
}
