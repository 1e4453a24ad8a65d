//! levee quickstart: runs with no Redis.
//!
//! A flaky upstream sits behind a circuit breaker: after three failures in a
//! row the breaker opens and callers get an immediate "retry after" instead
//! of waiting on a dead service; after the open duration one probe call
//! decides whether it closes again. Bearer tokens used as keys are hashed
//! with a deployment secret first, so they never reach logs or Redis.
//!
//! Run: `cargo run --example quickstart`

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use levee::breaker::{BreakerError, CircuitBreaker, State};
use levee::core::{KeyHasher, ManualClock, RedisKey};

/// Stands in for an upstream that fails while `down` is set.
struct Upstream {
    down: std::sync::atomic::AtomicBool,
    calls: AtomicU32,
}

impl Upstream {
    async fn userinfo(&self, user: &str) -> Result<String, String> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if self.down.load(Ordering::Relaxed) {
            Err("503 Service Unavailable".into())
        } else {
            Ok(format!("{{\"sub\":\"{user}\"}}"))
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Time is injected: this example moves it by hand instead of sleeping.
    let clock = ManualClock::new();
    let breaker = CircuitBreaker::builder()
        .name("userinfo")
        .consecutive_failures(3)
        .open_duration(Duration::from_secs(30))
        .half_open_permits(1)
        .clock(clock.shared())
        .on_event(|e| println!("  event: {e:?}"))
        .build()?;
    let upstream = Upstream {
        down: true.into(),
        calls: AtomicU32::new(0),
    };

    let hasher = KeyHasher::new(b"a 32-byte deployment secret here".as_slice());
    let key = hasher.key("eyJhbGciOiJSUzI1NiJ9.user-token");
    println!(
        "cache key for a bearer token: {key} (in Redis: {}...)",
        &key.redis_key_string()[..12]
    );

    println!("\nthe upstream is down; 6 calls:");
    for i in 1..=6 {
        match breaker.call(|| upstream.userinfo("alice")).await {
            Ok(body) => println!("call {i}: ok {body}"),
            Err(BreakerError::Rejected(r)) => println!("call {i}: rejected at once, {r}"),
            Err(e) => println!("call {i}: upstream error: {e}"),
        }
    }
    println!(
        "upstream calls made: {} (3 failed, then the breaker shielded it)",
        upstream.calls.load(Ordering::Relaxed)
    );

    println!("\n30 s later the upstream is back:");
    upstream.down.store(false, Ordering::Relaxed);
    clock.advance(Duration::from_secs(30));
    let body = breaker.call(|| upstream.userinfo("alice")).await?;
    println!("probe call: ok {body}; breaker is {:?}", breaker.state());
    assert_eq!(breaker.state(), State::Closed);
    println!("stats: {:?}", breaker.stats());
    Ok(())
}
