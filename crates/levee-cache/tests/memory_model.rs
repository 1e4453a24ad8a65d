//! MemoryCache against a reference model: random inserts, gets,
//! invalidations and clock advances.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use levee_cache::{EvictionCause, EvictionPolicy, MemoryCache};
use levee_core::ManualClock;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Insert(u8, u32),
    InsertTtl(u8, u32, u8),
    Get(u8),
    Invalidate(u8),
    Advance(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..40, any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
        2 => (0u8..40, any::<u32>(), 1u8..20).prop_map(|(k, v, t)| Op::InsertTtl(k, v, t)),
        6 => (0u8..40).prop_map(Op::Get),
        1 => (0u8..40).prop_map(Op::Invalidate),
        1 => (0u8..15).prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn cache_agrees_with_model(ops in prop::collection::vec(op(), 1..300), cap in 1u64..24, policy in 0u8..3) {
        let clock = ManualClock::new();
        let evicted: Arc<Mutex<Vec<(u8, EvictionCause)>>> = Arc::default();
        let sink = evicted.clone();
        let cache = MemoryCache::<u8, u32>::builder()
            .max_capacity(cap)
            .time_to_live(Duration::from_secs(10))
            .stale_retention(Duration::from_secs(5))
            .policy([EvictionPolicy::S3Fifo, EvictionPolicy::Fifo, EvictionPolicy::Lru][policy as usize])
            .eviction_listener(move |k, _, cause| sink.lock().unwrap().push((*k, cause)))
            .clock(clock.shared())
            .build()
            .unwrap();
        // Model: key -> (value, fresh_until secs). Evictions reported by the
        // listener remove keys from the model.
        let mut model: HashMap<u8, (u32, u64)> = HashMap::new();
        let mut now = 0u64;
        for op in ops {
            match op {
                Op::Insert(k, v) => { cache.insert(k, v); model.insert(k, (v, now + 10)); }
                Op::InsertTtl(k, v, t) => {
                    cache.insert_with_ttl(k, v, Duration::from_secs(u64::from(t)));
                    model.insert(k, (v, now + u64::from(t)));
                }
                Op::Get(k) => {
                    let got = cache.get(&k);
                    match model.get(&k) {
                        Some((v, fresh)) if *fresh > now => {
                            // Present unless evicted (which the listener said).
                            if let Some(g) = got { prop_assert_eq!(g, *v); }
                        }
                        _ => prop_assert_eq!(got, None, "an expired or absent key must not be returned"),
                    }
                }
                Op::Invalidate(k) => {
                    cache.invalidate(&k);
                    model.remove(&k);
                    prop_assert_eq!(cache.get(&k), None);
                }
                Op::Advance(s) => { clock.advance(Duration::from_secs(u64::from(s))); now += u64::from(s); }
            }
            for (k, cause) in evicted.lock().unwrap().drain(..) {
                if matches!(cause, EvictionCause::Evicted | EvictionCause::Expired) {
                    model.remove(&k);
                }
            }
            prop_assert!(cache.len() as u64 <= cap, "len {} over capacity {}", cache.len(), cap);
            prop_assert!(cache.weighted_size() <= cap);
            // Every key the model still holds as fresh is in the cache.
            for (k, (v, fresh)) in &model {
                if *fresh > now {
                    prop_assert_eq!(cache.get(k), Some(*v), "key {} lost without an eviction report", k);
                }
            }
        }
    }
}
