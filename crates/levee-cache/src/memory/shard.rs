//! One shard: a hash table plus the S3-FIFO queues, under one lock.
//!
//! The table is looked up with the hash the cache computed to choose the
//! shard, so a get hashes its key once.
//!
//! Reads take the shard's read lock and bump the entry's 2-bit frequency
//! with a relaxed atomic; inserts and evictions take the write lock. Queue
//! slots carry the entry's insertion id, so slots left behind by
//! invalidations or replacements are skipped when they reach the head.

use std::borrow::Borrow;
use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU8, Ordering};

use hashbrown::HashTable;

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
    /// Entries, keyed by the cache's hash of `K` (the same `hasher`).
    pub(crate) map: HashTable<(K, Slot<V>)>,
    hasher: Hasher,
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

/// The slot of `key` (hashed to `hash`) in `map`.
#[inline]
fn find<'a, K, V, Q>(map: &'a HashTable<(K, Slot<V>)>, hash: u64, key: &Q) -> Option<&'a Slot<V>>
where
    K: Borrow<Q>,
    Q: Eq + ?Sized,
{
    map.find(hash, |(k, _)| k.borrow() == key).map(|(_, s)| s)
}

impl<K: Hash + Eq + Clone, V> Shard<K, V> {
    pub(crate) fn new(hasher: Hasher) -> Self {
        Shard {
            map: HashTable::new(),
            hasher: hasher.clone(),
            small: VecDeque::new(),
            main: VecDeque::new(),
            ghost: VecDeque::new(),
            ghost_set: HashSet::with_hasher(hasher),
            small_weight: 0,
            weight: 0,
            next_id: 0,
        }
    }

    /// The slot of `key`, whose hash (by the cache's hasher) is `hash`.
    #[inline]
    pub(crate) fn get<Q>(&self, hash: u64, key: &Q) -> Option<&Slot<V>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        find(&self.map, hash, key)
    }

    /// The stored key equal to `key`.
    pub(crate) fn key_of<Q>(&self, hash: u64, key: &Q) -> Option<&K>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.map
            .find(hash, |(k, _)| k.borrow() == key)
            .map(|(k, _)| k)
    }

    fn slot(&self, key: &K) -> Option<&Slot<V>> {
        find(&self.map, self.hasher.hash_one(key), key)
    }

    fn slot_mut(&mut self, key: &K) -> Option<&mut Slot<V>> {
        self.map
            .find_mut(self.hasher.hash_one(key), |(k, _)| k == key)
            .map(|(_, s)| s)
    }

    /// Inserts or replaces `key` (whose hash is `hash`), then evicts until
    /// within `capacity`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert(
        &mut self,
        hash: u64,
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
        if let Some((_, slot)) = self.map.find_mut(hash, |(k, _)| *k == key) {
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
            let to_main = policy == EvictionPolicy::S3Fifo && self.ghost_set.remove(&hash);
            if to_main {
                self.main.push_back((key.clone(), id));
            } else {
                self.small.push_back((key.clone(), id));
                self.small_weight += u64::from(weight);
            }
            self.weight += u64::from(weight);
            let freq = AtomicU8::new(0);
            let slot = Slot {
                value,
                fresh_until,
                stale_until,
                weight,
                freq,
                id,
                in_main: to_main,
            };
            let hasher = &self.hasher;
            self.map
                .insert_unique(hash, (key, slot), |(k, _)| hasher.hash_one(k));
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
            let Some(slot) = self.slot(&key).filter(|s| s.id == id) else {
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
        let Some(slot) = self.slot_mut(&key).filter(|s| s.id == id) else {
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
            let tag = self.hasher.hash_one(&key);
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
        let hash = self.hasher.hash_one(key);
        let ((_, slot), _) = self.map.find_entry(hash, |(k, _)| k == key).ok()?.remove();
        self.weight -= u64::from(slot.weight);
        if !slot.in_main {
            self.small_weight -= u64::from(slot.weight);
        }
        Some(slot)
    }

    /// LRU: moves `key` to the back of the queue (its older queue slot is
    /// skipped later, as its stamp no longer matches).
    pub(crate) fn record_access<Q>(&mut self, hash: u64, key: &Q)
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let stamp = self.next_id;
        let Some((k, slot)) = self.map.find_mut(hash, |(k, _)| k.borrow() == key) else {
            return;
        };
        slot.id = stamp;
        let k = k.clone();
        self.next_id += 1;
        self.small.push_back((k, stamp));
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
            let (map, hasher) = (&self.map, &self.hasher);
            let live = |k: &K| find(map, hasher.hash_one(k), k);
            self.small
                .retain(|(k, id)| live(k).is_some_and(|s| s.id == *id && !s.in_main));
            self.main
                .retain(|(k, id)| live(k).is_some_and(|s| s.id == *id && s.in_main));
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
