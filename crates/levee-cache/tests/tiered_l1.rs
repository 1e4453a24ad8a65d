//! The tiered cache's L1 as configured through `l1(MemoryCacheBuilder)`:
//! the weigher sees the values, the listener hears of them, and time
//! settings are left to the tiered cache.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use levee_cache::{EvictionCause, Loaded, MemoryCache, Source, TieredCache};

type Cache = TieredCache<u32, Vec<u8>>;

async fn load(cache: &Cache, key: u32, len: usize) -> Source {
    cache
        .get_or_load(key, move || async move {
            Ok::<_, String>(Loaded::Value(vec![0u8; len]))
        })
        .await
        .unwrap()
        .unwrap()
        .source
}

#[tokio::test]
async fn the_weigher_bounds_l1_by_value_size_and_the_listener_hears_evictions() {
    let evicted = Arc::new(Mutex::new(Vec::new()));
    let seen = evicted.clone();
    let cache = Cache::builder("blobs")
        .l1(MemoryCache::builder()
            .weigher(|_k, v: &Vec<u8>| v.len() as u32)
            .max_weight(10_000)
            .shards(1)
            .eviction_listener(move |k: &u32, v: &Vec<u8>, cause| {
                seen.lock().unwrap().push((*k, v.len(), cause));
            }))
        .build()
        .unwrap();
    for key in 0..20 {
        assert_eq!(load(&cache, key, 1_000).await, Source::Loader);
    }
    // 20 values of 1,000 bytes under a 10,000 bound: at most 10 are held.
    let held = (0..20).filter(|k| cache.get(k).is_some()).count();
    assert!(
        (1..=10).contains(&held),
        "{held} values of 1,000 B held under a 10,000 B bound"
    );
    let evicted = evicted.lock().unwrap();
    assert!(
        evicted.len() >= 10,
        "the listener heard {} evictions",
        evicted.len()
    );
    assert!(
        evicted
            .iter()
            .all(|&(_, len, cause)| len == 1_000 && cause == EvictionCause::Evicted)
    );
}

#[tokio::test]
async fn a_cached_absence_is_not_reported_to_the_listener() {
    let heard = Arc::new(Mutex::new(0));
    let count = heard.clone();
    let cache = Cache::builder("absent")
        .l1(MemoryCache::builder()
            .max_capacity(1)
            .shards(1)
            .eviction_listener(move |_: &u32, _: &Vec<u8>, _| *count.lock().unwrap() += 1))
        .build()
        .unwrap();
    let absent = cache
        .get_or_load(1, || async { Ok::<_, String>(Loaded::Absent) })
        .await
        .unwrap();
    assert!(absent.is_none());
    // Evicts the absence marker: nothing for a listener that takes values.
    load(&cache, 2, 10).await;
    load(&cache, 3, 10).await;
    assert_eq!(
        *heard.lock().unwrap(),
        1,
        "only the evicted value of key 2 is reported"
    );
}

#[test]
fn time_settings_on_the_l1_builder_are_refused_with_the_reason() {
    let err = Cache::builder("t")
        .l1(MemoryCache::builder()
            .max_capacity(10)
            .time_to_live(Duration::from_secs(5)))
        .build()
        .unwrap_err();
    assert_eq!(err.setting, "l1");
    assert!(err.to_string().contains("expiry"), "{err}");
    let err = Cache::builder("t")
        .l1(MemoryCache::builder())
        .build()
        .unwrap_err();
    assert_eq!(
        err.setting, "max_capacity",
        "an unbounded L1 is refused: {err}"
    );
}
