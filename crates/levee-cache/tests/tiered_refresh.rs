//! Early refresh (XFetch) and the L1 TTL, in process.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use levee_cache::{Freshness, Loaded, Source, TieredCache};
use levee_core::ManualClock;

type Cache = TieredCache<String, String>;

/// A loader that takes `took` of the manual clock and counts its calls.
fn timed_loader(
    clock: &ManualClock,
    calls: &Arc<AtomicU32>,
    took: Duration,
) -> impl FnOnce() -> std::future::Ready<Result<Loaded<String>, String>> + Send + 'static {
    let (clock, calls) = (clock.clone(), calls.clone());
    move || {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        clock.advance(took);
        std::future::ready(Ok(Loaded::Value(format!("v{n}"))))
    }
}

async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_hot_key_is_refreshed_once_before_it_expires() {
    let clock = ManualClock::new();
    let cache: Cache = TieredCache::builder("t")
        .ttl(Duration::from_secs(60))
        .early_refresh(1.0)
        .rng_seed(42)
        .clock(clock.shared())
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let load = || timed_loader(&clock, &calls, Duration::from_secs(1));
    cache.get_or_load("k".to_string(), load()).await.unwrap();
    // Far from expiry (59 s left, loads take 1 s): never refreshed.
    for _ in 0..1_000 {
        let got = cache
            .get_or_load("k".to_string(), load())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.source, Source::L1);
    }
    settle().await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // 0.5 s before expiry each read refreshes with probability e^-0.5.
    clock.advance(Duration::from_millis(58_500));
    let mut reads = 0;
    while calls.load(Ordering::SeqCst) == 1 {
        let got = cache
            .get_or_load("k".to_string(), load())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (got.value.as_str(), got.freshness),
            ("v1", Freshness::Fresh)
        );
        reads += 1;
        assert!(reads < 100, "no early refresh after {reads} reads");
        settle().await;
    }
    assert_eq!(cache.stats().early_refreshes, 1);
    let got = cache
        .get(&"k".to_string())
        .expect("refreshed before expiry");
    assert_eq!(got.value, "v2");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one refresh");
}

#[tokio::test]
async fn values_without_a_load_time_are_not_refreshed_early() {
    let clock = ManualClock::new();
    let cache: Cache = TieredCache::builder("t")
        .ttl(Duration::from_secs(60))
        .early_refresh(1.0)
        .clock(clock.shared())
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    cache
        .get_or_load(
            "k".to_string(),
            timed_loader(&clock, &calls, Duration::ZERO),
        )
        .await
        .unwrap();
    clock.advance(Duration::from_millis(59_999));
    for _ in 0..100 {
        cache
            .get_or_load(
                "k".to_string(),
                timed_loader(&clock, &calls, Duration::ZERO),
            )
            .await
            .unwrap();
    }
    settle().await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn without_l2_an_l1_copy_past_l1_ttl_is_reloaded() {
    let clock = ManualClock::new();
    let cache: Cache = TieredCache::builder("t")
        .ttl(Duration::from_secs(60))
        .l1_ttl(Duration::from_secs(10))
        .clock(clock.shared())
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let load = || timed_loader(&clock, &calls, Duration::ZERO);
    cache.get_or_load("k".to_string(), load()).await.unwrap();
    clock.advance(Duration::from_secs(11));
    assert!(
        cache.get(&"k".to_string()).is_some(),
        "the value itself is fresh"
    );
    let got = cache
        .get_or_load("k".to_string(), load())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got.value.as_str(), got.source), ("v2", Source::Loader));
}

#[test]
fn bad_settings_name_themselves() {
    let err = |b: levee_cache::TieredCacheBuilder<String, String>| b.build().unwrap_err().setting;
    let b = || Cache::builder("t").ttl(Duration::from_secs(10));
    assert_eq!(err(b().l1_ttl(Duration::from_secs(11))), "l1_ttl");
    assert_eq!(err(b().early_refresh(f64::NAN)), "early_refresh");
    assert_eq!(err(b().load_lock(Duration::ZERO)), "load_lock");
    assert_eq!(err(b().load_lock_poll(Duration::ZERO)), "load_lock_poll");
    assert_eq!(err(b().prefix("")), "prefix");
}
