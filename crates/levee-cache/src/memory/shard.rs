//! One shard: a hash map plus the S3-FIFO queues, under one lock.
//!
//! Reads take the shard's read lock and bump the entry's 2-bit frequency
//! with a relaxed atomic; inserts and evictions take the write lock. Queue
//! slots carry the entry's insertion id, so slots left behind by
//! invalidations or replacements are skipped when they reach the head.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU8, Ordering};

use super::entry::{EvictionCause, EvictionPolicy};

pub(crate) type Hasher = foldhash::fast::RandomState;

#[derive(Debug)]
pub(crate) struct Slot<V> {
    pub(crate) value: V,
    pub(crate) fresh_until: u64,
    pub(crate) stale_until: u64,
    pub(crate) weight: u32,
    freq: AtomicU8,
    id: u64,
    in_main: bool,
}

impl<V> Slot<V> {
    /// Counts a read: the 2-bit frequency saturates at 3. A lost update
    /// under a race only undercounts one read, which S3-FIFO tolerates.
    #[inline]
    pub(crate) fn touch(&self) {
        let f = self.freq.load(Ordering::Relaxed);
        if f < 3 {
            self.freq.store(f + 1, Ordering::Relaxed);
        }
    }
}

pub(crate) struct Shard<K, V> {
    pub(crate) map: HashMap<K, Slot<V>, Hasher>,
    small: VecDeque<(K, u64)>,
    main: VecDeque<(K, u64)>,
    ghost: VecDeque<u64>,
    ghost_set: HashSet<u64, Hasher>,
    small_weight: u64,
    pub(crate) weight: u64,
    next_id: u64,
}

/// What an insert displaced, for the eviction listener.
pub(crate) type Removed<K, V> = Vec<(K, V, EvictionCause)>;

impl<K: Hash + Eq + Clone, V> Shard<K, V> {
    pub(crate) fn new(hasher: Hasher) -> Self {
        Shard {
            map: HashMap::with_hasher(hasher.clone()),
            small: VecDeque::new(),
            main: VecDeque::new(),
            ghost: VecDeque::new(),
            ghost_set: HashSet::with_hasher(hasher),
            small_weight: 0,
            weight: 0,
            next_id: 0,
        }
    }

    /// Inserts or replaces `key`, then evicts until within `capacity`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert(
        &mut self,
        key: K,
        value: V,
        fresh_until: u64,
        stale_until: u64,
        weight: u32,
        capacity: u64,
        policy: EvictionPolicy,
        now: u64,
        removed: &mut Removed<K, V>,
    ) {
        if let Some(slot) = self.map.get_mut(&key) {
            let old = std::mem::replace(&mut slot.value, value);
            self.weight = self.weight - u64::from(slot.weight) + u64::from(weight);
            if !slot.in_main {
                self.small_weight = self.small_weight - u64::from(slot.weight) + u64::from(weight);
            }
            slot.weight = weight;
            slot.fresh_until = fresh_until;
            slot.stale_until = stale_until;
            removed.push((key, old, EvictionCause::Replaced));
        } else {
            let id = self.next_id;
            self.next_id += 1;
            let tag = self.map.hasher().hash_one(&key);
            let to_main = policy == EvictionPolicy::S3Fifo && self.ghost_set.remove(&tag);
            if to_main {
                self.main.push_back((key.clone(), id));
            } else {
                self.small.push_back((key.clone(), id));
                self.small_weight += u64::from(weight);
            }
            self.weight += u64::from(weight);
            let freq = AtomicU8::new(0);
            self.map.insert(
                key,
                Slot {
                    value,
                    fresh_until,
                    stale_until,
                    weight,
                    freq,
                    id,
                    in_main: to_main,
                },
            );
        }
        while self.weight > capacity && !self.map.is_empty() {
            self.evict_one(capacity, policy, now, removed);
        }
        self.compact_queues();
    }

    fn evict_one(
        &mut self,
        capacity: u64,
        policy: EvictionPolicy,
        now: u64,
        removed: &mut Removed<K, V>,
    ) {
        let small_target = (capacity / 10).max(1);
        let from_small = policy == EvictionPolicy::Fifo
            || self.small_weight >= small_target
            || self.main.is_empty();
        if from_small && let Some((key, id)) = self.small.pop_front() {
            self.evict_from_small(key, id, policy, now, removed);
            return;
        }
        if let Some((key, id)) = self.main.pop_front() {
            let Some(slot) = self.map.get(&key).filter(|s| s.id == id) else {
                return;
            };
            let expired = slot.stale_until <= now;
            let f = slot.freq.load(Ordering::Relaxed);
            if f > 0 && !expired {
                slot.freq.store(f - 1, Ordering::Relaxed);
                self.main.push_back((key, id));
            } else {
                self.remove_evicted(key, expired, removed);
            }
        } else if let Some((key, id)) = self.small.pop_front() {
            self.evict_from_small(key, id, policy, now, removed);
        }
    }

    fn evict_from_small(
        &mut self,
        key: K,
        id: u64,
        policy: EvictionPolicy,
        now: u64,
        removed: &mut Removed<K, V>,
    ) {
        let Some(slot) = self.map.get_mut(&key).filter(|s| s.id == id) else {
            return;
        };
        let expired = slot.stale_until <= now;
        if policy == EvictionPolicy::S3Fifo && !expired && slot.freq.load(Ordering::Relaxed) > 0 {
            // Seen again while in the small queue: promote to main.
            slot.freq.store(0, Ordering::Relaxed);
            slot.in_main = true;
            self.small_weight -= u64::from(slot.weight);
            self.main.push_back((key, id));
            return;
        }
        if policy == EvictionPolicy::S3Fifo && !expired {
            let tag = self.map.hasher().hash_one(&key);
            if self.ghost_set.insert(tag) {
                self.ghost.push_back(tag);
            }
            // The ghost queue remembers about as many keys as the shard
            // holds entries (the paper sizes it like the main queue). Not
            // `capacity`: with a weigher that is a weight, and 64 MiB of
            // 1 KiB values would let it grow to 67 M hashes.
            // (`key` is still in the map: it leaves right below.)
            let entries = self.map.len().saturating_sub(1).max(1);
            while self.ghost.len() > entries {
                if let Some(old) = self.ghost.pop_front() {
                    self.ghost_set.remove(&old);
                }
            }
        }
        self.remove_evicted(key, expired, removed);
    }

    /// Removes `key` to make room: `Expired` if it was past its stale
    /// time, else `Evicted`.
    fn remove_evicted(&mut self, key: K, expired: bool, removed: &mut Removed<K, V>) {
        let cause = if expired {
            EvictionCause::Expired
        } else {
            EvictionCause::Evicted
        };
        if let Some(slot) = self.take(&key) {
            removed.push((key, slot.value, cause));
        }
    }

    /// Removes `key` from the map and its weight from the totals.
    fn take(&mut self, key: &K) -> Option<Slot<V>> {
        let slot = self.map.remove(key)?;
        self.weight -= u64::from(slot.weight);
        if !slot.in_main {
            self.small_weight -= u64::from(slot.weight);
        }
        Some(slot)
    }

    /// LRU: moves `key` to the back of the queue (its older queue slot is
    /// skipped later, as its stamp no longer matches).
    pub(crate) fn record_access<Q>(&mut self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let stamp = self.next_id;
        let Some(k) = self.map.get_key_value(key).map(|(k, _)| k.clone()) else {
            return;
        };
        self.next_id += 1;
        self.small.push_back((k, stamp));
        if let Some(slot) = self.map.get_mut(key) {
            slot.id = stamp;
        }
        self.compact_queues();
    }

    /// Removes `key`; its queue slot is skipped later.
    pub(crate) fn remove(&mut self, key: &K) -> Option<Slot<V>> {
        let slot = self.take(key)?;
        self.compact_queues();
        Some(slot)
    }

    pub(crate) fn clear(&mut self) -> impl Iterator<Item = (K, V)> + use<K, V> {
        self.small.clear();
        self.main.clear();
        self.small_weight = 0;
        self.weight = 0;
        std::mem::take(&mut self.map)
            .into_iter()
            .map(|(k, s)| (k, s.value))
    }

    /// Drops dead queue slots once they outnumber live entries, so queues
    /// stay within twice the map's size.
    fn compact_queues(&mut self) {
        if self.small.len() + self.main.len() > 2 * self.map.len() + 32 {
            let map = &self.map;
            self.small
                .retain(|(k, id)| map.get(k).is_some_and(|s| s.id == *id && !s.in_main));
            self.main
                .retain(|(k, id)| map.get(k).is_some_and(|s| s.id == *id && s.in_main));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::MemoryCache;

    #[test]
    fn ghost_queue_is_bounded_by_entries_not_by_weight() {
        // 1 KiB values in 1 MiB: about 1,000 entries, but a weight of 2^20.
        let cache = MemoryCache::<u64, u64>::builder()
            .weigher(|_, _| 1024)
            .max_weight(1 << 20)
            .shards(1)
            .build()
            .unwrap();
        for k in 0..200_000u64 {
            cache.insert(k, k);
        }
        let shard = cache.inner.shards[0].read();
        assert!(shard.map.len() <= 1024);
        assert!(
            shard.ghost.len() <= shard.map.len() && shard.ghost_set.len() == shard.ghost.len(),
            "{} ghosts for {} entries",
            shard.ghost.len(),
            shard.map.len()
        );
    }
}
