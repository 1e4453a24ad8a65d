//! levee quickstart: runs with no Redis.
//!
//! The story levee exists for: a backend calls an identity provider's
//! `/userinfo` for every request. Here the "provider" is a function that
//! counts its calls and can be switched to failing. One `Levee` pipeline
//! turns five concurrent page requests into one upstream call, serves the
//! cached value (labelled stale, with its tier) while the provider is down,
//! and its circuit breaker stops hammering a provider that keeps failing.
//!
//! Run: `cargo run --example quickstart`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use levee::breaker::CircuitBreaker;
use levee::cache::{Freshness, TieredCache};
use levee::core::{KeyHasher, ManualClock, SensitiveKey};
use levee::{Levee, RetryPolicy};

/// Stands in for the identity provider.
#[derive(Default)]
struct Provider {
    down: AtomicBool,
    calls: AtomicU32,
}

impl Provider {
    async fn userinfo(&self, user: &str) -> Result<String, std::io::Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await; // network time
        if self.down.load(Ordering::SeqCst) {
            Err(std::io::Error::other("503 Service Unavailable"))
        } else {
            Ok(format!(
                "{{\"sub\":\"{user}\",\"email\":\"{user}@example.com\"}}"
            ))
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Time is injected: the example moves it by hand instead of waiting.
    let clock = ManualClock::new();
    let provider = Arc::new(Provider::default());
    let breaker = CircuitBreaker::builder()
        .name("idp")
        .consecutive_failures(3)
        .open_duration(Duration::from_secs(30))
        .half_open_permits(1)
        .clock(clock.shared())
        .build()?;
    let userinfo = Levee::builder("userinfo")
        .cache(
            TieredCache::<SensitiveKey, String>::builder("userinfo")
                .ttl(Duration::from_secs(300))
                .stale_tiers([
                    ("secondary", Duration::from_secs(12 * 3600)),
                    ("emergency", Duration::from_secs(48 * 3600)),
                ])
                .failure_backoff(Duration::from_secs(10))
                .clock(clock.shared())
                .build()?,
        )
        .circuit_breaker(breaker.clone())
        // One immediate retry (the example's clock only moves by hand).
        .retry(RetryPolicy::new(2).base_delay(Duration::ZERO))
        .clock(clock.shared())
        .build()?;
    // Bearer tokens are keys only after a keyed hash: the raw token is never
    // stored, logged or sent to Redis.
    let hasher = KeyHasher::new(b"a 32-byte deployment secret here".as_slice());
    let key = hasher.key("eyJhbGciOiJSUzI1NiJ9.alice-token");

    let fetch = || {
        let (userinfo, provider) = (userinfo.clone(), provider.clone());
        async move {
            userinfo
                .get(key, move || {
                    let provider = provider.clone();
                    async move { provider.userinfo("alice").await }
                })
                .await
        }
    };

    println!("1. a page load fires 5 requests at once:");
    let page: Vec<_> = (0..5).map(|_| tokio::spawn(fetch())).collect();
    for request in page {
        let got = request.await??.ok_or("absent")?;
        println!(
            "   {:?} from {:?}: {}",
            got.freshness, got.source, got.value
        );
    }
    println!(
        "   upstream calls: {}",
        provider.calls.load(Ordering::SeqCst)
    );

    println!("\n2. six minutes later the provider is down:");
    clock.advance(Duration::from_secs(360));
    provider.down.store(true, Ordering::SeqCst);
    for i in 1..=3 {
        let got = fetch().await?.ok_or("absent")?;
        if let Freshness::Stale { tier, age } = &got.freshness {
            println!(
                "   request {i}: served stale from tier {tier:?}, {age:?} past its TTL, no error shown to the user"
            );
        }
        clock.advance(Duration::from_secs(11)); // past the failure backoff
    }
    println!(
        "   upstream calls: {} (each load tried twice; the breaker is {:?} after 3 failures, so the last load did not call it)",
        provider.calls.load(Ordering::SeqCst),
        breaker.state()
    );

    println!("\n3. the provider is back and the breaker's 30 s are over:");
    provider.down.store(false, Ordering::SeqCst);
    clock.advance(Duration::from_secs(30));
    let got = fetch().await?.ok_or("absent")?;
    println!(
        "   {:?} from {:?}; breaker {:?}",
        got.freshness,
        got.source,
        breaker.state()
    );
    Ok(())
}
