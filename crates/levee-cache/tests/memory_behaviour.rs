//! TTL, per-entry TTL, stale retention, weights, listener causes, stats and
//! concurrency of MemoryCache.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use levee_cache::{EntryFreshness, EvictionCause, Expiry, MemoryCache};
use levee_core::{Clock, ManualClock};

#[test]
fn ttl_then_stale_retention_then_gone() {
    let clock = ManualClock::new();
    let c = MemoryCache::<&str, u32>::builder()
        .max_capacity(10)
        .time_to_live(Duration::from_secs(10))
        .stale_retention(Duration::from_secs(20))
        .clock(clock.shared())
        .build()
        .unwrap();
    c.insert("k", 1);
    clock.advance(Duration::from_secs(9));
    assert_eq!(c.get("k"), Some(1));
    assert_eq!(c.get_entry("k").unwrap().freshness, EntryFreshness::Fresh);
    clock.advance(Duration::from_secs(1));
    assert_eq!(c.get("k"), None, "expired exactly at the TTL");
    let e = c.get_entry("k").unwrap();
    assert_eq!(
        e.freshness,
        EntryFreshness::Stale {
            age: Duration::ZERO
        }
    );
    clock.advance(Duration::from_secs(19));
    assert_eq!(
        c.get_entry("k").unwrap().freshness,
        EntryFreshness::Stale {
            age: Duration::from_secs(19)
        }
    );
    clock.advance(Duration::from_secs(1));
    assert!(c.get_entry("k").is_none(), "past the stale retention");
    let s = c.stats();
    assert_eq!((s.hits, s.stale_hits), (2, 2));
}

#[test]
fn per_entry_ttl_and_absolute_expiry() {
    let clock = ManualClock::new();
    let c = MemoryCache::<u8, u8>::builder()
        .max_capacity(10)
        .time_to_live(Duration::from_secs(100))
        .clock(clock.shared())
        .build()
        .unwrap();
    c.insert_with_ttl(1, 1, Duration::from_secs(5));
    let now = clock.now();
    c.insert_with_expiry(
        2,
        2,
        Expiry {
            fresh_until: now + Duration::from_secs(3),
            stale_until: now + Duration::from_secs(8),
        },
    );
    assert_eq!(
        c.get_entry(&2).unwrap().expiry.fresh_until,
        now + Duration::from_secs(3)
    );
    clock.advance(Duration::from_secs(4));
    assert_eq!(c.get(&1), Some(1));
    assert_eq!(c.get(&2), None);
    assert!(matches!(
        c.get_entry(&2).unwrap().freshness,
        EntryFreshness::Stale { .. }
    ));
    clock.advance(Duration::from_secs(1));
    assert_eq!(c.get(&1), None);
}

#[test]
fn an_oversized_replacement_removes_the_old_value_too() {
    let c = MemoryCache::<u32, String>::builder()
        .weigher(|_, v: &String| v.len() as u32)
        .max_weight(100)
        .shards(1)
        .build()
        .unwrap();
    c.insert(1, "old".to_string());
    c.insert(1, "n".repeat(101)); // refused: heavier than the cache
    assert_eq!(
        c.get(&1),
        None,
        "the old value must not outlive its replacement"
    );
}

#[test]
fn weigher_bounds_total_weight_and_refuses_oversized() {
    let evicted = Arc::new(Mutex::new(Vec::new()));
    let sink = evicted.clone();
    let c = MemoryCache::<u32, String>::builder()
        .weigher(|_, v: &String| v.len() as u32)
        .max_weight(100)
        .shards(1)
        .eviction_listener(move |k, _, cause| sink.lock().unwrap().push((*k, cause)))
        .build()
        .unwrap();
    for i in 0..20 {
        c.insert(i, "x".repeat(10));
        assert!(c.weighted_size() <= 100);
    }
    c.insert(99, "y".repeat(101));
    assert_eq!(c.get(&99), None);
    assert!(
        evicted
            .lock()
            .unwrap()
            .contains(&(99, EvictionCause::Evicted))
    );
}

#[test]
fn listener_reports_replaced_and_invalidated() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let c = MemoryCache::<u8, u8>::builder()
        .max_capacity(10)
        .eviction_listener(move |k, v, cause| sink.lock().unwrap().push((*k, *v, cause)))
        .build()
        .unwrap();
    c.insert(1, 10);
    c.insert(1, 11);
    assert_eq!(c.invalidate(&1), Some(11));
    c.insert(2, 20);
    c.invalidate_all();
    assert!(c.is_empty());
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            (1, 10, EvictionCause::Replaced),
            (1, 11, EvictionCause::Invalidated),
            (2, 20, EvictionCause::Invalidated)
        ]
    );
}

#[test]
fn s3fifo_keeps_a_hot_key_through_a_scan() {
    let c = MemoryCache::<u64, u64>::builder()
        .max_capacity(100)
        .shards(1)
        .build()
        .unwrap();
    c.insert(0, 0);
    for round in 0..10u64 {
        assert_eq!(c.get(&0), Some(0), "round {round}");
        for k in 1..=50u64 {
            c.insert(round * 1000 + k, k); // one-time keys
        }
    }
}

#[test]
fn invalid_settings_are_named() {
    assert_eq!(
        MemoryCache::<u8, u8>::builder()
            .build()
            .unwrap_err()
            .setting,
        "max_capacity"
    );
    assert_eq!(
        MemoryCache::<u8, u8>::builder()
            .max_capacity(0)
            .build()
            .unwrap_err()
            .setting,
        "max_capacity"
    );
    assert_eq!(
        MemoryCache::<u8, u8>::builder()
            .max_weight(5)
            .build()
            .unwrap_err()
            .setting,
        "max_weight"
    );
}

#[test]
fn eight_threads_mixing_operations_keep_the_bounds() {
    let c = MemoryCache::<u64, u64>::builder()
        .max_capacity(500)
        .time_to_live(Duration::from_secs(60))
        .build()
        .unwrap();
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let c = c.clone();
            s.spawn(move || {
                let mut x = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                for _ in 0..20_000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let k = x % 2_000;
                    match x % 10 {
                        0..=5 => {
                            if let Some(v) = c.get(&k) {
                                assert_eq!(v, k * 3, "a value never written for this key");
                            }
                        }
                        6..=8 => c.insert(k, k * 3),
                        _ => {
                            c.invalidate(&k);
                        }
                    }
                    assert!(c.weighted_size() <= 500);
                }
            });
        }
    });
    assert!(c.len() <= 500);
    let s = c.stats();
    assert!(s.hits + s.misses > 0 && s.inserts > 0);
}

#[test]
fn lru_evicts_the_least_recently_used() {
    let c = MemoryCache::<u8, u8>::builder()
        .max_capacity(3)
        .shards(1)
        .policy(levee_cache::EvictionPolicy::Lru)
        .build()
        .unwrap();
    c.insert(1, 1);
    c.insert(2, 2);
    c.insert(3, 3);
    assert_eq!(c.get(&1), Some(1)); // 2 is now the least recently used
    c.insert(4, 4);
    assert_eq!(c.get(&2), None);
    assert_eq!(
        (c.get(&1), c.get(&3), c.get(&4)),
        (Some(1), Some(3), Some(4))
    );
}

/// Under LRU a get that finds a value past its TTL is a miss and leaves the
/// key where it was (the next to go); a fresh hit is counted and moves it.
#[test]
fn lru_counts_its_gets_and_moves_only_fresh_hits() {
    let clock = ManualClock::new();
    let c = MemoryCache::<u8, u8>::builder()
        .max_capacity(3)
        .shards(1)
        .policy(levee_cache::EvictionPolicy::Lru)
        .stale_retention(Duration::from_secs(60))
        .clock(clock.shared())
        .build()
        .unwrap();
    c.insert_with_ttl(1, 1, Duration::from_secs(1));
    c.insert(2, 2);
    c.insert(3, 3);
    clock.advance(Duration::from_secs(2));
    assert_eq!(c.get(&1), None); // stale: a miss, not moved
    assert_eq!(c.get(&2), Some(2)); // fresh: moved behind 3
    c.insert(4, 4); // evicts 1, the least recently used
    assert!(c.get_entry(&1).is_none());
    c.insert(5, 5); // evicts 3: 2 was used after it
    assert_eq!((c.get(&2), c.get(&3)), (Some(2), None));
    let s = c.stats();
    // Misses: the stale get, the `get_entry` of the evicted key, key 3.
    assert_eq!((s.hits, s.misses), (2, 3));
}

/// The removal counters of `stats()` agree with what the eviction listener
/// saw, cause by cause, through every path that removes an entry (an
/// insert's evictions and expiries in the shards, replacements, entries too
/// heavy to hold, `invalidate`, `invalidate_all`), from several threads,
/// and `inserts` counts every insert call.
#[test]
fn removal_counters_match_the_listener_on_every_path() {
    use std::sync::atomic::{AtomicU64, Ordering};

    let seen: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
    let slot = |cause| match cause {
        EvictionCause::Evicted => 0,
        EvictionCause::Expired => 1,
        EvictionCause::Replaced => 2,
        EvictionCause::Invalidated => 3,
        other => panic!("a cause this test does not know: {other:?}"),
    };
    let clock = ManualClock::new();
    let listener_seen = seen.clone();
    let c = MemoryCache::<u64, u64>::builder()
        // Weights 1..=4, a key of 999 weighs more than a shard holds.
        .weigher(|k, _| {
            if *k == 999 {
                1_000
            } else {
                (*k % 4) as u32 + 1
            }
        })
        .max_weight(256)
        .shards(4)
        .time_to_live(Duration::from_secs(10))
        .stale_retention(Duration::from_secs(10))
        .clock(clock.shared())
        .eviction_listener(move |_, _, cause| {
            listener_seen[slot(cause)].fetch_add(1, Ordering::Relaxed);
        })
        .build()
        .unwrap();
    let inserts = AtomicU64::new(0);
    for round in 0..4u64 {
        std::thread::scope(|s| {
            for t in 0..3u64 {
                let (c, inserts) = (&c, &inserts);
                s.spawn(move || {
                    let mut x = 0x9e37_79b9_7f4a_7c15 ^ (round * 3 + t);
                    for _ in 0..3_000 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        // The key from other bits than the choice of path.
                        let k = (x >> 8) % 500;
                        match x % 20 {
                            0 => {
                                c.invalidate(&k);
                            }
                            1 => {
                                c.insert(999, x);
                                inserts.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => {
                                c.insert(k, x);
                                inserts.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                });
            }
        });
        // Past the stale retention: the next round's evictions find
        // expired entries.
        clock.advance(Duration::from_secs(25));
    }
    c.invalidate_all();
    let s = c.stats();
    let seen: Vec<u64> = seen.iter().map(|a| a.load(Ordering::Relaxed)).collect();
    assert_eq!(
        [s.evicted, s.expired, s.replaced, s.invalidated],
        [seen[0], seen[1], seen[2], seen[3]],
        "stats {s:?} against the listener"
    );
    assert!(
        seen.iter().all(|&n| n > 0),
        "every cause occurred: {seen:?}"
    );
    assert_eq!(s.inserts, inserts.load(Ordering::Relaxed));
    assert_eq!(c.len(), 0);
}

/// The cache a [`ReadsOnDrop`] reads, once set.
type CacheSlot = Arc<Mutex<Option<MemoryCache<u64, Arc<ReadsOnDrop>>>>>;

/// A value whose destructor reads the cache it was held in: dropped under
/// the shard's write lock it would wait on that lock for ever.
struct ReadsOnDrop {
    cache: CacheSlot,
    drops: Arc<std::sync::atomic::AtomicUsize>,
}

impl Drop for ReadsOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.cache.lock().unwrap().as_ref() {
            let _ = c.get(&0);
        }
        self.drops
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn values_leaving_by_an_insert_are_dropped_after_the_lock_is_released() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    // No listener: what an insert displaces (a replaced value, evicted
    // entries) is still dropped only once the shard's lock is released, so
    // a value's destructor may use the cache.
    let c = MemoryCache::<u64, Arc<ReadsOnDrop>>::builder()
        .max_capacity(4)
        .shards(1)
        .build()
        .unwrap();
    let slot = Arc::new(Mutex::new(Some(c.clone())));
    let drops = Arc::new(AtomicUsize::new(0));
    let (done, finished) = std::sync::mpsc::channel();
    {
        let (c, slot, drops) = (c.clone(), slot.clone(), drops.clone());
        // Not scoped: if an insert deadlocks, the test fails on the
        // timeout below instead of waiting for the thread.
        std::thread::spawn(move || {
            let value = || {
                Arc::new(ReadsOnDrop {
                    cache: slot.clone(),
                    drops: drops.clone(),
                })
            };
            c.insert(0, value());
            c.insert(0, value());
            for k in 1..64 {
                c.insert(k, value());
            }
            done.send(()).unwrap();
        });
    }
    finished
        .recv_timeout(Duration::from_secs(20))
        .expect("an insert dropped a value under the shard's lock");
    // One replaced, and all but the four held of the 64 keys evicted.
    assert_eq!(drops.load(Ordering::Relaxed), 1 + 60);
    // Break the cycle (the cache holds values that hold the cache).
    slot.lock().unwrap().take();
    c.invalidate_all();
    assert_eq!(drops.load(Ordering::Relaxed), 65);
}
