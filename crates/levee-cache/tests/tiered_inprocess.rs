//! TieredCache without Redis: single-flight, cancellation, panics,
//! stale-while-revalidate, stale tiers, failure backoff, negative caching,
//! invalidation during a load, and ending background work on drop.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use levee_cache::{CacheError, Cached, Freshness, Loaded, Source, TieredCache};
use levee_core::ManualClock;

type Cache = TieredCache<String, String>;

fn counted_loader(
    calls: &Arc<AtomicU32>,
    value: &str,
) -> impl FnOnce() -> std::future::Ready<Result<Loaded<String>, String>> + Send + 'static {
    let calls = calls.clone();
    let value = value.to_string();
    move || {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(Loaded::Value(value)))
    }
}

fn failing_loader(
    calls: &Arc<AtomicU32>,
) -> impl FnOnce() -> std::future::Ready<Result<Loaded<String>, String>> + Send + 'static {
    let calls = calls.clone();
    move || {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Err("upstream 503".to_string()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_callers_cause_one_load() {
    let cache: Cache = TieredCache::builder("t").build().unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let gate = Arc::new(tokio::sync::Notify::new());
    let mut waiters = Vec::new();
    for _ in 0..10_000 {
        let (cache, calls, gate) = (cache.clone(), calls.clone(), gate.clone());
        waiters.push(tokio::spawn(async move {
            cache
                .get_or_load("user".to_string(), move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    gate.notified().await;
                    Ok::<_, String>(Loaded::Value("v".to_string()))
                })
                .await
        }));
    }
    // The one load has started (callers spawned later would find its value
    // in L1 and not load either; the assertion holds whatever the timing).
    while calls.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    gate.notify_waiters();
    gate.notify_one();
    for w in waiters {
        assert_eq!(w.await.unwrap().unwrap().unwrap().value, "v");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn dropped_first_caller_does_not_cancel_the_load() {
    let cache: Cache = TieredCache::builder("t").build().unwrap();
    let (release, wait) = tokio::sync::oneshot::channel::<()>();
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let first = tokio::spawn({
        let cache = cache.clone();
        async move {
            cache
                .get_or_load("k".to_string(), move || async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    let _ = wait.await;
                    Ok::<_, String>(Loaded::Value("loaded".to_string()))
                })
                .await
        }
    });
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
    first.abort();
    let second = tokio::spawn({
        let cache = cache.clone();
        let calls = calls.clone();
        async move {
            cache
                .get_or_load("k".to_string(), counted_loader(&calls, "second"))
                .await
        }
    });
    tokio::task::yield_now().await;
    release.send(()).unwrap();
    let got = second.await.unwrap().unwrap().unwrap();
    assert_eq!(
        got.value, "loaded",
        "the second caller joined the first load"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn panicking_loader_fails_every_waiter_and_the_next_call_loads_again() {
    // Default settings: a panic must not start the failure backoff.
    let cache: Cache = TieredCache::builder("t").build().unwrap();
    let (release, wait) = tokio::sync::oneshot::channel::<()>();
    let leader = tokio::spawn({
        let cache = cache.clone();
        async move {
            cache
                .get_or_load("k".to_string(), move || async move {
                    let _ = wait.await;
                    panic!("loader bug");
                    #[allow(unreachable_code)]
                    Ok::<Loaded<String>, String>(Loaded::Absent)
                })
                .await
        }
    });
    tokio::task::yield_now().await;
    let calls = Arc::new(AtomicU32::new(0));
    let follower = tokio::spawn({
        let (cache, calls) = (cache.clone(), calls.clone());
        async move {
            cache
                .get_or_load("k".to_string(), counted_loader(&calls, "x"))
                .await
        }
    });
    tokio::task::yield_now().await;
    release.send(()).unwrap();
    assert!(matches!(
        leader.await.unwrap(),
        Err(CacheError::LoaderPanicked)
    ));
    assert!(matches!(
        follower.await.unwrap(),
        Err(CacheError::LoaderPanicked)
    ));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "the follower joined the panicking load"
    );
    let next = cache
        .get_or_load("k".to_string(), counted_loader(&calls, "ok"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.value, "ok");
}

/// `get_or_load` of `key` with a loader that fails (counted in `calls`).
async fn load_failing(
    cache: &Cache,
    key: &str,
    calls: &Arc<AtomicU32>,
) -> Result<Option<Cached<String>>, CacheError<String>> {
    cache
        .get_or_load(key.to_string(), failing_loader(calls))
        .await
}

async fn load_ok(cache: &Cache, calls: &Arc<AtomicU32>, v: &str) -> Cached<String> {
    cache
        .get_or_load("k".to_string(), counted_loader(calls, v))
        .await
        .unwrap()
        .unwrap()
}

/// A cache fresh for 60 s, then served stale for `swr` while it refreshes,
/// holding "v1" loaded at the clock's start (one loader call counted).
async fn swr_cache(clock: &ManualClock, swr: Duration, calls: &Arc<AtomicU32>) -> Cache {
    let cache: Cache = TieredCache::builder("t")
        .ttl(Duration::from_secs(60))
        .stale_while_revalidate(swr)
        .failure_backoff(Duration::from_secs(30))
        .clock(clock.shared())
        .build()
        .unwrap();
    load_ok(&cache, calls, "v1").await;
    cache
}

/// Lets spawned background work run on the current-thread runtime.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn stale_while_revalidate_serves_stale_at_once_and_refreshes_once() {
    let clock = ManualClock::new();
    let calls = Arc::new(AtomicU32::new(0));
    let cache = swr_cache(&clock, Duration::from_secs(30), &calls).await;
    clock.advance(Duration::from_secs(70));
    let (gate_tx, gate_rx) = tokio::sync::oneshot::channel::<()>();
    let c = calls.clone();
    let got = cache
        .get_or_load("k".to_string(), move || async move {
            c.fetch_add(1, Ordering::SeqCst);
            let _ = gate_rx.await;
            Ok::<_, String>(Loaded::Value("v2".to_string()))
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.value, "v1");
    assert!(
        matches!(got.freshness, Freshness::Stale { age, .. } if age == Duration::from_secs(10))
    );
    let again = load_ok(&cache, &calls, "v3").await;
    assert_eq!(again.value, "v1", "still stale while the one refresh runs");
    gate_tx.send(()).unwrap();
    settle().await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "one initial load and exactly one refresh"
    );
    let fresh = cache.get(&"k".to_string()).expect("refreshed");
    assert_eq!(
        (fresh.value.as_str(), fresh.freshness),
        ("v2", Freshness::Fresh)
    );
}

#[tokio::test]
async fn failing_loader_serves_the_tier_that_covers_the_age_then_errors() {
    let clock = ManualClock::new();
    let h = 3600;
    let cache: Cache = TieredCache::builder("t")
        .ttl(Duration::from_secs(h))
        .stale_tiers([
            ("secondary", Duration::from_secs(12 * h)),
            ("emergency", Duration::from_secs(48 * h)),
            ("backup", Duration::from_secs(14 * 24 * h)),
        ])
        .failure_backoff(Duration::from_secs(60))
        .clock(clock.shared())
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    load_ok(&cache, &calls, "v1").await;
    // Written at 0 with a 1 h TTL: ages past expiry of 1 h, 13 h and 72 h.
    for (advance_h, age_h, tier) in [
        (2, 1, "secondary"),
        (12, 13, "emergency"),
        (59, 72, "backup"),
    ] {
        clock.advance(Duration::from_secs(advance_h * h));
        let got = load_failing(&cache, "k", &calls).await.unwrap().unwrap();
        assert_eq!(got.value, "v1");
        assert_eq!(got.source, Source::L1);
        match got.freshness {
            Freshness::Stale { tier: t, age } => {
                assert_eq!((&*t, age), (tier, Duration::from_secs(age_h * h)))
            }
            other => panic!("expected stale, got {other:?}"),
        }
    }
    clock.advance(Duration::from_secs(15 * 24 * h));
    let err = load_failing(&cache, "k", &calls).await.unwrap_err();
    assert_eq!(err.load_error().map(String::as_str), Some("upstream 503"));
}

#[tokio::test]
async fn failure_backoff_stops_calling_the_loader_and_serves_stale() {
    let clock = ManualClock::new();
    let cache: Cache = TieredCache::builder("t")
        .ttl(Duration::from_secs(10))
        .stale_tiers([("secondary", Duration::from_secs(3600))])
        .failure_backoff(Duration::from_secs(30))
        .clock(clock.shared())
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    load_ok(&cache, &calls, "v1").await;
    clock.advance(Duration::from_secs(20));
    assert!(
        load_failing(&cache, "k", &calls)
            .await
            .unwrap()
            .unwrap()
            .freshness
            .is_stale()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    clock.advance(Duration::from_secs(10));
    let got = load_failing(&cache, "k", &calls).await.unwrap().unwrap();
    assert!(got.freshness.is_stale());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "within the backoff the loader is not called"
    );
    let other = load_failing(&cache, "nothing-cached", &calls)
        .await
        .unwrap_err();
    assert!(matches!(other, CacheError::Load(_)));
    let again = load_failing(&cache, "nothing-cached", &calls)
        .await
        .unwrap_err();
    assert!(matches!(again, CacheError::Backoff { .. }));
    clock.advance(Duration::from_secs(21));
    load_ok(&cache, &calls, "v2").await;
    assert_eq!(cache.get(&"k".to_string()).unwrap().value, "v2");
}

#[tokio::test]
async fn absent_is_cached_for_the_negative_ttl_and_value_ttl_caps() {
    let clock = ManualClock::new();
    let cache: Cache = TieredCache::builder("t")
        .ttl(Duration::from_secs(300))
        .negative_ttl(Duration::from_secs(5))
        .clock(clock.shared())
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let absent = move || {
        c.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok::<_, String>(Loaded::<String>::Absent))
    };
    assert!(
        cache
            .get_or_load("gone".to_string(), absent.clone())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        cache
            .get_or_load("gone".to_string(), absent.clone())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    clock.advance(Duration::from_secs(6));
    assert!(
        cache
            .get_or_load("gone".to_string(), absent)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    let token = || {
        std::future::ready(Ok::<_, String>(Loaded::ValueWithTtl(
            "jwt".to_string(),
            Duration::from_secs(30),
        )))
    };
    cache.get_or_load("tok".to_string(), token).await.unwrap();
    clock.advance(Duration::from_secs(31));
    assert!(
        cache.get(&"tok".to_string()).is_none(),
        "the token's own TTL capped the configured one"
    );
}

/// A load gated until `invalidate` (one key, or all) has run: its waiter
/// still gets the value, but the cache does not keep it.
async fn invalidated_during_a_load(all: bool) {
    let cache: Cache = TieredCache::builder("t").build().unwrap();
    let (release, wait) = tokio::sync::oneshot::channel::<()>();
    let waiter = tokio::spawn({
        let cache = cache.clone();
        async move {
            cache
                .get_or_load("k".to_string(), move || async move {
                    let _ = wait.await;
                    Ok::<_, String>(Loaded::Value("old".to_string()))
                })
                .await
        }
    });
    tokio::task::yield_now().await;
    if all {
        cache.invalidate_all().await;
    } else {
        cache.invalidate(&"k".to_string()).await;
    }
    release.send(()).unwrap();
    assert_eq!(
        waiter.await.unwrap().unwrap().unwrap().value,
        "old",
        "the waiter still gets its result"
    );
    assert!(
        cache.get(&"k".to_string()).is_none(),
        "but it was not cached"
    );
}

#[tokio::test]
async fn invalidate_during_a_load_keeps_its_result_out_of_the_cache() {
    invalidated_during_a_load(false).await;
}

#[tokio::test]
async fn invalidate_all_during_a_load_keeps_its_result_out_of_the_cache() {
    invalidated_during_a_load(true).await;
}

#[tokio::test]
async fn dropping_the_cache_ends_its_loads() {
    struct Flag(Arc<AtomicU32>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicU32::new(0));
    let cache: Cache = TieredCache::builder("t")
        .stale_while_revalidate(Duration::from_secs(1))
        .build()
        .unwrap();
    let flag = Flag(dropped.clone());
    let pending = tokio::spawn({
        let cache = cache.clone();
        async move {
            cache
                .get_or_load("k".to_string(), move || async move {
                    let _keep = flag;
                    std::future::pending::<()>().await;
                    Ok::<_, String>(Loaded::Absent)
                })
                .await
        }
    });
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
    pending.abort();
    let _ = pending.await;
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        0,
        "the load outlives its caller"
    );
    drop(cache);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "dropping the cache ended the load"
    );
}

#[tokio::test(start_paused = true)]
async fn soft_timeout_serves_stale_and_the_load_fills_the_cache_later() {
    let cache: Cache = TieredCache::builder("t")
        .ttl(Duration::from_secs(10))
        .stale_tiers([("secondary", Duration::from_secs(3600))])
        .soft_timeout(Duration::from_secs(1))
        .clock(levee_core::TokioClock::new().shared())
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    load_ok(&cache, &calls, "v1").await;
    tokio::time::advance(Duration::from_secs(20)).await;
    let started = tokio::time::Instant::now();
    let got = cache
        .get_or_load("k".to_string(), || async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, String>(Loaded::Value("v2".to_string()))
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(1),
        "the caller waited the soft timeout only"
    );
    assert_eq!(got.value, "v1");
    assert!(got.freshness.is_stale());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        cache.get(&"k".to_string()).unwrap().value,
        "v2",
        "the load went on and filled the cache"
    );
}

#[tokio::test]
async fn ttl_jitter_spreads_expiry_within_the_ttl() {
    let clock = ManualClock::new();
    let cache: Cache = TieredCache::builder("t")
        .ttl(Duration::from_secs(100))
        .ttl_jitter(0.5)
        .clock(clock.shared())
        .build()
        .unwrap();
    for i in 0..100 {
        cache
            .get_or_load(format!("k{i}"), || async {
                Ok::<_, String>(Loaded::Value("v".to_string()))
            })
            .await
            .unwrap();
    }
    let fresh = |cache: &Cache| {
        (0..100)
            .filter(|i| cache.get(&format!("k{i}")).is_some())
            .count()
    };
    clock.advance(Duration::from_secs(49));
    assert_eq!(fresh(&cache), 100, "no TTL is cut by more than half");
    clock.advance(Duration::from_secs(26));
    let mid = fresh(&cache);
    assert!(
        mid > 0 && mid < 100,
        "expiries are spread: {mid} of 100 still fresh at 75 s"
    );
    clock.advance(Duration::from_secs(25));
    assert_eq!(fresh(&cache), 0, "no TTL is lengthened");
}

#[tokio::test]
async fn a_value_until_is_never_served_past_its_end_not_even_stale() {
    let clock = ManualClock::new();
    let cache: Cache = TieredCache::builder("t")
        .ttl(Duration::from_secs(60))
        .stale_tiers([("secondary", Duration::from_secs(12 * 3600))])
        .failure_backoff(Duration::from_millis(1))
        .clock(clock.shared())
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    for (key, until) in [("long", 90), ("short", 30)] {
        cache
            .get_or_load(key.to_string(), move || async move {
                Ok::<_, String>(Loaded::ValueUntil(
                    "jwt".to_string(),
                    Duration::from_secs(until),
                ))
            })
            .await
            .unwrap();
    }
    // At 61 s: "long" (fresh 60 s, usable to 90 s) is served stale;
    // "short" (usable to 30 s) is not served at all.
    clock.advance(Duration::from_secs(61));
    let got = load_failing(&cache, "long", &calls).await.unwrap().unwrap();
    assert!(got.freshness.is_stale());
    let short = load_failing(&cache, "short", &calls).await;
    assert!(matches!(short, Err(CacheError::Load(_))), "{short:?}");
    clock.advance(Duration::from_secs(30));
    let long = load_failing(&cache, "long", &calls).await;
    assert!(
        matches!(long, Err(CacheError::Load(_))),
        "past its end at 91 s: {long:?}"
    );
}

#[tokio::test]
async fn a_failed_background_refresh_is_not_retried_within_the_backoff() {
    let clock = ManualClock::new();
    let calls = Arc::new(AtomicU32::new(0));
    let cache = swr_cache(&clock, Duration::from_secs(600), &calls).await;
    clock.advance(Duration::from_secs(61));
    for _ in 0..5 {
        let got = load_failing(&cache, "k", &calls).await.unwrap().unwrap();
        assert_eq!(got.value, "v1");
        settle().await;
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the first load and one failed refresh; no refresh within the backoff"
    );
    clock.advance(Duration::from_secs(31));
    load_failing(&cache, "k", &calls).await.unwrap();
    settle().await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "refreshed again after the backoff"
    );
}

#[tokio::test]
async fn failed_loads_of_many_distinct_keys_keep_a_bounded_backoff() {
    let cache: Cache = TieredCache::builder("t")
        .l1(levee_cache::MemoryCache::builder().max_capacity(1_000))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    for i in 0..100_000u32 {
        let got = cache
            .get_or_load(format!("bad-token-{i}"), failing_loader(&calls))
            .await;
        assert!(got.is_err());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 100_000);
    let held = cache.stats().backoff_keys;
    assert!(held > 0 && held <= 1_000, "{held} backoff records");
    // The most recent failure is still backed off.
    let again = cache
        .get_or_load("bad-token-99999".to_string(), failing_loader(&calls))
        .await;
    assert!(
        matches!(again, Err(CacheError::Backoff { .. })),
        "{again:?}"
    );
}

#[tokio::test]
async fn insert_during_a_load_keeps_the_loads_result_out() {
    let cache: Cache = TieredCache::builder("t").build().unwrap();
    let (release, wait) = tokio::sync::oneshot::channel::<()>();
    let (started, has_started) = tokio::sync::oneshot::channel::<()>();
    let waiter = tokio::spawn({
        let cache = cache.clone();
        async move {
            cache
                .get_or_load("k".to_string(), move || async move {
                    let _ = started.send(());
                    let _ = wait.await;
                    Ok::<_, String>(Loaded::Value("old".to_string()))
                })
                .await
        }
    });
    has_started.await.unwrap();
    cache.insert("k".to_string(), "new".to_string()).await;
    release.send(()).unwrap();
    // The waiter gets what it waited for; the cache keeps the newer insert.
    assert_eq!(waiter.await.unwrap().unwrap().unwrap().value, "old");
    assert_eq!(cache.get(&"k".to_string()).unwrap().value, "new");
}

#[tokio::test]
async fn a_load_error_is_the_source_of_the_cache_error() {
    use std::error::Error as _;
    let cache: TieredCache<String, String> = TieredCache::builder("t").build().unwrap();
    let err = cache
        .get_or_load("k".to_string(), || async {
            Err::<Loaded<String>, _>(std::io::Error::other("upstream 503"))
        })
        .await
        .unwrap_err();
    let source = err.source().expect("the loader's error is chained");
    assert_eq!(source.to_string(), "upstream 503");
    assert!(
        !err.to_string().contains("upstream 503"),
        "not repeated: {err}"
    );
}

#[tokio::test]
async fn soft_and_hard_timeouts_run_on_the_caches_clock() {
    let clock = ManualClock::new();
    let cache: Cache = TieredCache::builder("t")
        .ttl(Duration::from_secs(10))
        .stale_tiers([("secondary", Duration::from_secs(3600))])
        .soft_timeout(Duration::from_secs(1))
        .hard_timeout(Duration::from_secs(30))
        .failure_backoff(Duration::ZERO)
        .clock(clock.shared())
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    load_ok(&cache, &calls, "v1").await;
    clock.advance(Duration::from_secs(20));
    let hang = || async {
        std::future::pending::<()>().await;
        Ok::<_, String>(Loaded::Value("never".to_string()))
    };
    // A stale value exists: the soft timeout (1 s of the clock) serves it.
    let waiting = tokio::spawn({
        let cache = cache.clone();
        async move { cache.get_or_load("k".to_string(), hang).await }
    });
    while clock.sleepers() == 0 {
        tokio::task::yield_now().await;
    }
    clock.advance(Duration::from_secs(1));
    let got = waiting.await.unwrap().unwrap().unwrap();
    assert!(got.freshness.is_stale(), "{got:?}");
    // No stale value: the hard timeout (30 s of the clock) ends the wait.
    let waiting = tokio::spawn({
        let cache = cache.clone();
        async move { cache.get_or_load("other".to_string(), hang).await }
    });
    while clock.sleepers() == 0 {
        tokio::task::yield_now().await;
    }
    clock.advance(Duration::from_secs(30));
    let err = waiting.await.unwrap().unwrap_err();
    assert!(matches!(err, CacheError::Timeout(_)), "{err:?}");
}

#[tokio::test]
async fn a_value_usable_for_no_time_answers_its_waiters_and_keeps_the_stored_one() {
    let clock = ManualClock::new();
    let cache: Cache = TieredCache::builder("t")
        .ttl(Duration::from_secs(60))
        .stale_tiers([("secondary", Duration::from_secs(3600))])
        .failure_backoff(Duration::from_millis(1))
        .clock(clock.shared())
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    cache
        .get_or_load("k".to_string(), counted_loader(&calls, "stored"))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(61));
    let transient = cache
        .get_or_load("k".to_string(), || async {
            Ok::<_, String>(Loaded::ValueUntil("transient".to_string(), Duration::ZERO))
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(transient.value, "transient");
    // Not stored: the earlier value still serves stale when a load fails.
    let got = load_failing(&cache, "k", &calls).await.unwrap().unwrap();
    assert_eq!(got.value, "stored");
    assert!(got.freshness.is_stale());
}
