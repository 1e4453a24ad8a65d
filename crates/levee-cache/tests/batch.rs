//! Batch reads: `get_many`, `get_or_load_many` and the `batching` window,
//! with a real Redis L2 (standalone, and a 3-node Cluster under feature
//! `cluster`) from levee-testkit, and without L2 under paused tokio time.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use levee_cache::{BatchLoaded, CacheError, Cached, Freshness, Loaded, Source, TieredCache};
use levee_core::ManualClock;

type Cache = TieredCache<String, String>;
type Answer = Result<BatchLoaded<String, String, String>, String>;
type Got = Result<Option<Cached<String>>, CacheError<String>>;

/// A simulated upstream with a batch endpoint: records every call's keys,
/// answers `v-{key}`, fails the keys in `fail`, panics when told, and
/// holds its answers while `gate` is closed.
#[derive(Clone)]
struct Upstream {
    calls: Arc<Mutex<Vec<Vec<String>>>>,
    fail: Arc<Mutex<HashSet<String>>>,
    fail_all: Arc<AtomicBool>,
    panic: Arc<AtomicBool>,
    gate: tokio::sync::watch::Sender<bool>,
}

impl Upstream {
    fn new() -> Self {
        Upstream {
            calls: Arc::default(),
            fail: Arc::default(),
            fail_all: Arc::default(),
            panic: Arc::default(),
            gate: tokio::sync::watch::Sender::new(true),
        }
    }

    fn loader(&self) -> impl Fn(Vec<String>) -> BoxFuture<'static, Answer> + Send + Sync + 'static {
        let me = self.clone();
        move |keys: Vec<String>| {
            let me = me.clone();
            Box::pin(async move {
                me.calls.lock().unwrap().push(keys.clone());
                let mut open = me.gate.subscribe();
                let _ = open.wait_for(|o| *o).await;
                tokio::task::yield_now().await;
                if me.panic.load(Ordering::SeqCst) {
                    panic!("the batch loader panicked");
                }
                if me.fail_all.load(Ordering::SeqCst) {
                    return Err("upstream 503".to_string());
                }
                let fail = me.fail.lock().unwrap().clone();
                Ok(keys
                    .into_iter()
                    .map(|k| {
                        let r = if fail.contains(&k) {
                            Err(format!("no answer for {k}"))
                        } else {
                            Ok(Loaded::Value(format!("v-{k}")))
                        };
                        (k, r)
                    })
                    .collect())
            })
        }
    }

    fn calls(&self) -> Vec<Vec<String>> {
        self.calls.lock().unwrap().clone()
    }

    /// How many times each key was loaded.
    fn loads(&self) -> HashMap<String, usize> {
        let mut n = HashMap::new();
        for k in self.calls().into_iter().flatten() {
            *n.entry(k).or_default() += 1;
        }
        n
    }
}

fn keys(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("user-{i}")).collect()
}

fn value(got: &Got) -> (&str, Source, &Freshness) {
    let c = got.as_ref().expect("a value").as_ref().expect("present");
    (c.value.as_str(), c.source, &c.freshness)
}

/// Waits until `cache` has written `n` envelopes to L2 in all (a batch
/// answers before its write-back pipeline is done; callers that join its
/// keys meanwhile get its answer). At once without L2.
async fn until_written(cache: &Cache, n: u64) {
    for _ in 0..400 {
        if cache.stats().l2.is_none_or(|l2| l2.writes >= n) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{n} L2 writes never happened: {:?}", cache.stats().l2);
}

fn in_process(clock: &ManualClock) -> Cache {
    TieredCache::builder("t")
        .ttl(Duration::from_secs(60))
        .stale_tiers([("secondary", Duration::from_secs(3600))])
        .failure_backoff(Duration::from_millis(1))
        .clock(clock.shared())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_loaded_once_and_answered_in_input_order() {
    let cache = in_process(&ManualClock::new());
    let up = Upstream::new();
    let ks = ["b", "a", "b", "c", "a"].map(String::from);
    let got = cache.get_or_load_many(ks.clone(), up.loader()).await;
    assert_eq!(up.calls().len(), 1);
    let mut asked = up.calls()[0].clone();
    asked.sort();
    assert_eq!(asked, ["a", "b", "c"], "each key once");
    for (k, g) in ks.iter().zip(&got) {
        assert_eq!(
            value(g),
            (format!("v-{k}").as_str(), Source::Loader, &Freshness::Fresh)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_left_out_of_the_answer_fails_as_missing_from_batch() {
    let cache = in_process(&ManualClock::new());
    let got = cache
        .get_or_load_many(keys(0..2), |ks: Vec<String>| async move {
            let first = ks[0].clone();
            Ok::<_, String>(BatchLoaded::from([(
                first,
                Ok(Loaded::Value("x".to_string())),
            )]))
        })
        .await;
    assert_eq!(value(&got[0]).0, "x");
    assert!(
        matches!(got[1], Err(CacheError::MissingFromBatch)),
        "{:?}",
        got[1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absent_keys_are_cached_for_the_negative_ttl() {
    let cache = in_process(&ManualClock::new());
    let up = Upstream::new();
    let absent = |ks: Vec<String>| async move {
        Ok::<_, String>(
            ks.into_iter()
                .map(|k| (k, Ok(Loaded::Absent)))
                .collect::<BatchLoaded<_, _, _>>(),
        )
    };
    let got = cache.get_or_load_many(keys(0..3), absent).await;
    assert!(got.iter().all(|g| matches!(g, Ok(None))), "{got:?}");
    let again = cache.get_or_load_many(keys(0..3), up.loader()).await;
    assert!(again.iter().all(|g| matches!(g, Ok(None))));
    assert!(up.calls().is_empty(), "the absences were cached");
}

async fn stale_for_failed_keys_fresh_for_the_others(cache: &Cache, clock: &ManualClock) {
    let up = Upstream::new();
    let ks = keys(0..10);
    cache.get_or_load_many(ks.clone(), up.loader()).await;
    until_written(cache, 10).await;
    clock.advance(Duration::from_secs(120));
    up.fail.lock().unwrap().extend(ks[..3].iter().cloned());
    let got = cache.get_or_load_many(ks.clone(), up.loader()).await;
    assert_eq!(up.calls().len(), 2, "one call a batch");
    for (i, g) in got.iter().enumerate() {
        let (v, source, freshness) = value(g);
        assert_eq!(v, format!("v-{}", ks[i]));
        if i < 3 {
            assert_eq!(source, Source::L1, "key {i}");
            assert!(
                matches!(freshness, Freshness::Stale { tier, age } if &**tier == "secondary" && *age == Duration::from_secs(60)),
                "key {i}: {freshness:?}"
            );
        } else {
            assert_eq!(
                (source, freshness),
                (Source::Loader, &Freshness::Fresh),
                "key {i}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_loader_failing_three_keys_serves_those_stale_and_the_others_fresh() {
    let clock = ManualClock::new();
    stale_for_failed_keys_fresh_for_the_others(&in_process(&clock), &clock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_serves_stale_where_it_can_and_backs_off() {
    let clock = ManualClock::new();
    let cache: Cache = TieredCache::builder("t")
        .ttl(Duration::from_secs(60))
        .stale_tiers([("secondary", Duration::from_secs(3600))])
        .failure_backoff(Duration::from_secs(10))
        .clock(clock.shared())
        .build()
        .unwrap();
    let up = Upstream::new();
    cache.get_or_load_many(keys(0..2), up.loader()).await;
    clock.advance(Duration::from_secs(61));
    up.fail_all.store(true, Ordering::SeqCst);
    let got = cache.get_or_load_many(keys(0..4), up.loader()).await;
    assert!(value(&got[0]).2.is_stale() && value(&got[1]).2.is_stale());
    for g in &got[2..] {
        assert_eq!(
            g.as_ref().unwrap_err().load_error().map(String::as_str),
            Some("upstream 503")
        );
    }
    let again = cache.get_or_load_many(keys(0..4), up.loader()).await;
    assert_eq!(up.calls().len(), 2, "in backoff: the loader is not called");
    assert!(
        matches!(again[3], Err(CacheError::Backoff { .. })),
        "{:?}",
        again[3]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_answers_at_once_and_refreshes_in_one_background_batch() {
    let clock = ManualClock::new();
    let cache: Cache = TieredCache::builder("t")
        .ttl(Duration::from_secs(60))
        .stale_while_revalidate(Duration::from_secs(30))
        .clock(clock.shared())
        .build()
        .unwrap();
    let up = Upstream::new();
    cache.get_or_load_many(keys(0..3), up.loader()).await;
    clock.advance(Duration::from_secs(70));
    // The upstream hangs: the answers cannot have waited for it.
    up.gate.send_replace(false);
    let got = cache.get_or_load_many(keys(0..3), up.loader()).await;
    for g in &got {
        let (_, source, freshness) = value(g);
        assert_eq!(source, Source::L1);
        assert!(freshness.is_stale(), "{freshness:?}");
    }
    for _ in 0..200 {
        if up.calls().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(up.calls()[1], keys(0..3), "one call refreshes the three");
    up.gate.send_replace(true);
    for _ in 0..200 {
        if keys(0..3).iter().all(|k| cache.get(k).is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        keys(0..3).iter().all(|k| cache.get(k).is_some()),
        "refreshed"
    );
}

async fn panic_fails_every_key_then_loads_again(cache: &Cache) {
    let up = Upstream::new();
    up.panic.store(true, Ordering::SeqCst);
    // Keys no earlier step loaded: nothing stale to serve.
    let got = cache.get_or_load_many(keys(500..505), up.loader()).await;
    assert!(
        got.iter()
            .all(|g| matches!(g, Err(CacheError::LoaderPanicked))),
        "{got:?}"
    );
    up.panic.store(false, Ordering::SeqCst);
    let got = cache.get_or_load_many(keys(500..505), up.loader()).await;
    assert!(got.iter().all(|g| value(g).1 == Source::Loader), "{got:?}");
    assert_eq!(up.calls().len(), 2, "no backoff after a panic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_loader_panic_fails_every_key_and_the_next_call_loads_again() {
    panic_fails_every_key_then_loads_again(&in_process(&ManualClock::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_get_or_load_of_a_key_in_a_running_batch_gets_the_batch_value() {
    let cache = in_process(&ManualClock::new());
    let up = Upstream::new();
    up.gate.send_replace(false);
    let batch = tokio::spawn({
        let (cache, up) = (cache.clone(), up.clone());
        async move { cache.get_or_load_many(keys(0..10), up.loader()).await }
    });
    while up.calls().is_empty() {
        tokio::task::yield_now().await;
    }
    let single = tokio::spawn({
        let cache = cache.clone();
        async move {
            cache
                .get_or_load("user-4".to_string(), || async {
                    Ok::<_, String>(Loaded::Value("single".to_string()))
                })
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    up.gate.send_replace(true);
    let single = single.await.unwrap();
    assert_eq!(
        value(&single),
        ("v-user-4", Source::Loader, &Freshness::Fresh)
    );
    batch.await.unwrap();
    assert_eq!(up.calls().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_joins_a_running_single_load_instead_of_loading_it_again() {
    let cache = in_process(&ManualClock::new());
    let (open, mut opened) = tokio::sync::watch::channel(false);
    let single = tokio::spawn({
        let cache = cache.clone();
        async move {
            cache
                .get_or_load("user-1".to_string(), move || async move {
                    let _ = opened.wait_for(|o| *o).await;
                    Ok::<_, String>(Loaded::Value("single".to_string()))
                })
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let up = Upstream::new();
    let batch = tokio::spawn({
        let (cache, up) = (cache.clone(), up.clone());
        async move { cache.get_or_load_many(keys(0..3), up.loader()).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    open.send_replace(true);
    let got = batch.await.unwrap();
    assert_eq!(value(&got[1]).0, "single");
    assert_eq!(
        up.calls(),
        [vec!["user-0".to_string(), "user-2".to_string()]]
    );
    single.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_batch_caller_strands_nobody() {
    let cache = in_process(&ManualClock::new());
    let up = Upstream::new();
    up.gate.send_replace(false);
    let batch = tokio::spawn({
        let (cache, up) = (cache.clone(), up.clone());
        async move { cache.get_or_load_many(keys(0..3), up.loader()).await }
    });
    while up.calls().is_empty() {
        tokio::task::yield_now().await;
    }
    let joiner = tokio::spawn({
        let cache = cache.clone();
        async move {
            cache
                .get_or_load("user-2".to_string(), || async {
                    Ok::<_, String>(Loaded::Value("single".to_string()))
                })
                .await
        }
    });
    batch.abort();
    assert!(batch.await.unwrap_err().is_cancelled());
    up.gate.send_replace(true);
    assert_eq!(
        value(&joiner.await.unwrap()).0,
        "v-user-2",
        "the batch's load went on"
    );
    let again = cache.get_or_load_many(keys(0..3), up.loader()).await;
    assert!(again.iter().all(|g| value(g).1 == Source::L1), "{again:?}");
    assert_eq!(up.calls().len(), 1);
}

/// 1,000 callers, half single-key, half batches of 10, over 200 keys.
async fn mixed_callers_load_no_key_twice(cache: &Cache) {
    let up = Upstream::new();
    let single_loads = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for i in 0..1000usize {
        let (cache, up, single_loads) = (cache.clone(), up.clone(), single_loads.clone());
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                let key = format!("user-{}", (i * 7) % 200);
                let k = key.clone();
                let got = cache
                    .get_or_load(key, move || async move {
                        single_loads.lock().unwrap().push(k.clone());
                        tokio::task::yield_now().await;
                        Ok::<_, String>(Loaded::Value(format!("v-{k}")))
                    })
                    .await;
                assert!(got.unwrap().is_some());
            } else {
                let ks: Vec<String> = (0..10)
                    .map(|j| format!("user-{}", (i * 13 + j * 17) % 200))
                    .collect();
                let got = cache.get_or_load_many(ks.clone(), up.loader()).await;
                for (k, g) in ks.iter().zip(&got) {
                    assert_eq!(value(g).0, format!("v-{k}"));
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut loads = up.loads();
    for k in single_loads.lock().unwrap().iter() {
        *loads.entry(k.clone()).or_default() += 1;
    }
    let twice: Vec<_> = loads.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "loaded more than once: {twice:?}");
    assert_eq!(loads.len(), 200, "every key was loaded once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_is_loaded_twice_under_1000_mixed_single_and_batch_callers() {
    mixed_callers_load_no_key_twice(&in_process(&ManualClock::new())).await;
}

#[tokio::test(start_paused = true)]
async fn auto_batching_sends_200_loads_within_1ms_as_ceil_200_over_max_batch_batches() {
    let cache: Cache = TieredCache::builder("t")
        .clock(levee_core::TokioClock::new().shared())
        .build()
        .unwrap();
    let up = Upstream::new();
    let max_batch = 64;
    let loader = cache
        .batching(up.loader(), max_batch, Duration::from_millis(1))
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let loader = loader.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_micros(i * 4)).await;
            let got = loader.load(format!("user-{i}")).await;
            assert_eq!(value(&got).0, format!("v-user-{i}"));
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let calls = up.calls();
    assert_eq!(
        calls.len(),
        200usize.div_ceil(max_batch),
        "{:?}",
        calls.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert_eq!(up.loads().len(), 200);
    // Loaded keys answer from L1 without a window.
    let started = tokio::time::Instant::now();
    assert_eq!(
        value(&loader.load("user-7".to_string()).await).1,
        Source::L1
    );
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_window_that_is_not_full_is_sent_after_max_wait() {
    let cache: Cache = TieredCache::builder("t")
        .clock(levee_core::TokioClock::new().shared())
        .build()
        .unwrap();
    let up = Upstream::new();
    let loader = cache
        .batching(up.loader(), 100, Duration::from_millis(5))
        .unwrap();
    let started = tokio::time::Instant::now();
    let (a, b) = tokio::join!(loader.load("a".to_string()), loader.load("b".to_string()));
    assert_eq!((value(&a).0, value(&b).0), ("v-a", "v-b"));
    assert_eq!(up.calls().len(), 1);
    assert!(started.elapsed() >= Duration::from_millis(5));
    assert!(
        cache
            .batching(up.loader(), 0, Duration::from_millis(1))
            .is_err()
    );
}

#[cfg(feature = "redis")]
#[path = "batch/redis_l2.rs"]
mod redis_l2;
