//! [`MemoryCache`]: a bounded, sharded, in-process cache with TTLs, stale
//! retention and S3-FIFO eviction: levee's L1.

mod builder;
mod entry;
mod shard;
mod stats;
mod ticker;
mod time;

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_utils::CachePadded;
use parking_lot::RwLock;

pub use builder::MemoryCacheBuilder;
pub use entry::{EntryFreshness, EvictionCause, EvictionPolicy, Expiry, MemoryEntry};
pub use stats::MemoryCacheStats;

use shard::{Hasher, Removed, Room, Shard};
use stats::Stats;
use time::{TimeSource, nanos};

type Weigher<K, V> = Arc<dyn Fn(&K, &V) -> u32 + Send + Sync>;
type Listener<K, V> = Arc<dyn Fn(&K, &V, EvictionCause) + Send + Sync>;

type Shards<K, V> = Box<[CachePadded<RwLock<Shard<K, V>>>]>;

struct Inner<K, V> {
    shards: Shards<K, V>,
    /// Capacity (entries, or weight with a weigher) of each shard.
    shard_capacity: Box<[u64]>,
    hasher: Hasher,
    /// Shards minus one (at most 2^16 shards); see `shard_of`.
    shard_mask: usize,
    time: TimeSource,
    /// The cache's TTL and stale retention, in ns (converted once here,
    /// not on every insert).
    ttl: Option<u64>,
    stale_retention: u64,
    weigher: Option<Weigher<K, V>>,
    listener: Option<Listener<K, V>>,
    policy: EvictionPolicy,
    stats: Stats,
}

/// The bits that choose a key's shard: bits 40 and up of its hash times an
/// odd constant. The shard's table takes a slot from the hash's low bits
/// and its tag from the top 7; bits of the hash itself (the top bits, then
/// bits 32 and up) left one shard's keys with half the tags for some seeds
/// (foldhash's output bits are not independent for small integer keys), so
/// that a probe compared many more keys. The product's middle bits mix
/// every bit below them.
#[inline]
fn shard_bits(hash: u64) -> usize {
    (hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as usize
}

/// A bounded in-process cache: levee's L1, and a cache of its own.
///
/// - Bounded by entry count ([`max_capacity`](MemoryCacheBuilder::max_capacity))
///   or by weight ([`weigher`](MemoryCacheBuilder::weigher) +
///   [`max_weight`](MemoryCacheBuilder::max_weight)); the bound holds at
///   every moment a caller can see.
/// - Entries are fresh for their TTL, then kept as stale for
///   `stale_retention`: [`get`](Self::get) returns fresh values only,
///   [`get_entry`](Self::get_entry) stale ones too, with their age.
/// - Eviction is S3-FIFO; reads take a shard read lock and touch no shared
///   counter.
/// - Cheap to clone: clones share one cache. Values are cloned on every
///   read, so store `Arc<V>` for values that are costly to clone.
///
/// ```
/// use std::time::Duration;
/// use levee_cache::{EntryFreshness, MemoryCache};
/// use levee_core::ManualClock;
///
/// let clock = ManualClock::new();
/// let cache = MemoryCache::<String, u32>::builder()
///     .max_capacity(10_000)
///     .time_to_live(Duration::from_secs(60))
///     .stale_retention(Duration::from_secs(3600))
///     .clock(clock.shared())
///     .build()?;
/// cache.insert("alice".to_string(), 42);
/// assert_eq!(cache.get("alice"), Some(42));
///
/// clock.advance(Duration::from_secs(90));
/// assert_eq!(cache.get("alice"), None); // not fresh any more...
/// let stale = cache.get_entry("alice").unwrap(); // ...but kept as stale
/// assert_eq!(stale.freshness, EntryFreshness::Stale { age: Duration::from_secs(30) });
/// # Ok::<(), levee_cache::ConfigError>(())
/// ```
pub struct MemoryCache<K, V> {
    inner: Arc<Inner<K, V>>,
}

impl<K, V> Clone for MemoryCache<K, V> {
    fn clone(&self) -> Self {
        MemoryCache {
            inner: self.inner.clone(),
        }
    }
}

impl<K, V> std::fmt::Debug for MemoryCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCache")
            .field("shards", &self.inner.shards.len())
            .field("capacity", &self.inner.shard_capacity.iter().sum::<u64>())
            .field("policy", &self.inner.policy)
            .finish()
    }
}

impl<K, V> MemoryCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A builder; see its setters for the defaults.
    pub fn builder() -> MemoryCacheBuilder<K, V> {
        MemoryCacheBuilder::new()
    }

    /// The key's hash: it chooses the shard (`shard_bits`), and the shard's
    /// table is looked up with the same hash.
    #[inline]
    fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.inner.hasher.hash_one(key)
    }

    #[inline]
    fn shard_of(&self, hash: u64) -> usize {
        shard_bits(hash) & self.inner.shard_mask
    }

    /// The value for `key` if it is fresh.
    #[inline(always)]
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let inner = &*self.inner;
        if inner.policy == EvictionPolicy::Lru {
            return self.get_lru(key);
        }
        let hash = self.hash(key);
        let guard = inner.shards[self.shard_of(hash)].read();
        // Counted before the unlock: after it only the value is live across
        // the unlock's out-of-line slow path.
        let found = match guard.get(hash, key) {
            Some(slot) if slot.fresh_until == u64::MAX || slot.fresh_until > inner.time.now() => {
                slot.touch();
                inner.stats.hit();
                Some(slot.value.clone())
            }
            _ => {
                inner.stats.miss();
                None
            }
        };
        drop(guard);
        found
    }

    /// [`get`](Self::get) under LRU: a hit moves `key` to the back of its
    /// shard's queue, so the lookup takes the write lock at once (one lock,
    /// and no other write between the lookup and the move). Out of line:
    /// the default policy's hit path never runs it.
    #[cold]
    #[inline(never)]
    fn get_lru<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let inner = &*self.inner;
        let hash = self.hash(key);
        let mut shard = inner.shards[self.shard_of(hash)].write();
        let found = shard
            .get(hash, key)
            .filter(|slot| slot.fresh_until > inner.time.now())
            .map(|slot| slot.value.clone());
        if found.is_some() {
            shard.record_access(hash, key);
        }
        drop(shard);
        if found.is_some() {
            inner.stats.hit();
        } else {
            inner.stats.miss();
        }
        found
    }

    /// LRU: a hit moves `key` to the back of its shard's queue, under the
    /// write lock. Out of line: the default policy's hit path never runs it.
    #[cold]
    #[inline(never)]
    fn record_access<Q>(&self, hash: u64, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner.shards[self.shard_of(hash)]
            .write()
            .record_access(hash, key);
    }

    /// The value for `key`, fresh or stale (within its stale retention),
    /// with its expiry and freshness.
    pub fn get_entry<Q>(&self, key: &Q) -> Option<MemoryEntry<V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let time = &self.inner.time;
        self.find(key, |slot, stale_until, freshness| MemoryEntry {
            value: slot.value.clone(),
            expiry: Expiry {
                fresh_until: time.nanos_to_instant(slot.fresh_until),
                stale_until: time.nanos_to_instant(stale_until),
            },
            freshness,
        })
    }

    /// `f` of the value for `key` (fresh or stale within its retention) and
    /// its freshness, run under the shard's read lock: no clone of the
    /// value unless `f` makes one. Counted like [`get_entry`](Self::get_entry).
    pub(crate) fn peek<Q, R>(&self, key: &Q, f: impl FnOnce(&V, EntryFreshness) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.find(key, |slot, _, freshness| f(&slot.value, freshness))
    }

    /// `f` of the slot of `key`, its stale time and its freshness, if it is
    /// fresh or stale within its retention.
    fn find<Q, R>(
        &self,
        key: &Q,
        f: impl FnOnce(&shard::Slot<V>, u64, EntryFreshness) -> R,
    ) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let inner = &*self.inner;
        let now = inner.time.now();
        let hash = self.hash(key);
        let shard = &inner.shards[self.shard_of(hash)];
        let guard = shard.read();
        let found = guard
            .get_with_stale(hash, key)
            .filter(|&(_, stale_until)| stale_until > now)
            .map(|(slot, stale_until)| {
                slot.touch();
                let freshness = if slot.fresh_until > now {
                    EntryFreshness::Fresh
                } else {
                    EntryFreshness::Stale {
                        age: Duration::from_nanos(now - slot.fresh_until),
                    }
                };
                let fresh = freshness == EntryFreshness::Fresh;
                (f(slot, stale_until, freshness), fresh)
            });
        drop(guard);
        if found.is_some() && inner.policy == EvictionPolicy::Lru {
            self.record_access(hash, key);
        }
        match found {
            Some((r, true)) => {
                inner.stats.hit();
                Some(r)
            }
            Some((r, false)) => {
                inner.stats.stale_hit();
                Some(r)
            }
            None => {
                inner.stats.miss();
                None
            }
        }
    }

    /// Inserts `value`, fresh for the cache's TTL (forever without one).
    pub fn insert(&self, key: K, value: V) {
        self.insert_for(key, value, self.inner.ttl);
    }

    /// Inserts `value`, fresh for `ttl`, then stale for the stale retention.
    pub fn insert_with_ttl(&self, key: K, value: V, ttl: Duration) {
        self.insert_for(key, value, Some(nanos(ttl)));
    }

    /// Inserts `value`, fresh for `ttl` ns (forever for `None`).
    fn insert_for(&self, key: K, value: V, ttl: Option<u64>) {
        let now = self.inner.time.now();
        let fresh = ttl.map_or(u64::MAX, |ttl| now.saturating_add(ttl));
        self.insert_at(
            key,
            value,
            now,
            fresh,
            fresh.saturating_add(self.inner.stale_retention),
        );
    }

    /// Inserts `value` with absolute times (a value promoted from L2 keeps
    /// the times it was stored with).
    pub fn insert_with_expiry(&self, key: K, value: V, expiry: Expiry) {
        let now = self.inner.time.now();
        let fresh = self.inner.time.instant_to_nanos(expiry.fresh_until);
        let stale = self
            .inner
            .time
            .instant_to_nanos(expiry.stale_until)
            .max(fresh);
        self.insert_at(key, value, now, fresh, stale);
    }

    fn insert_at(&self, key: K, value: V, now: u64, fresh_until: u64, stale_until: u64) {
        let inner = &*self.inner;
        let weight = inner.weigher.as_ref().map_or(1, |w| w(&key, &value));
        let hash = self.hash(&key);
        let i = self.shard_of(hash);
        let mut removed = Removed::<K, V>::new(inner.listener.is_some());
        if u64::from(weight) > inner.shard_capacity[i] {
            // Too heavy to ever fit: refuse it as an immediate eviction. The
            // caller meant to replace any older value, so that goes too.
            let mut shard = inner.shards[i].write();
            if let Some((_, old)) = shard.remove(&inner.hasher, hash, &key) {
                shard.counts.replaced += 1;
                removed.push((key.clone(), old, EvictionCause::Replaced));
            }
            shard.counts.inserts += 1;
            shard.counts.evicted += 1;
            drop(shard);
            removed.push((key, value, EvictionCause::Evicted));
        } else {
            let room = Room {
                hasher: &inner.hasher,
                capacity: inner.shard_capacity[i],
                policy: inner.policy,
                now,
            };
            inner.shards[i].write().insert(
                hash,
                key,
                value,
                fresh_until,
                stale_until,
                weight,
                &room,
                &mut removed,
            );
        }
        // Reported from where it lies (no move of the inline buffer), then
        // dropped with it.
        if self.inner.listener.is_some() {
            self.report(removed.drain());
        }
    }

    /// Hands what left the cache to the eviction listener (after the shard
    /// lock is released), then drops it. The shards count the causes.
    fn report(&self, removed: impl IntoIterator<Item = (K, V, EvictionCause)>) {
        if let Some(l) = &self.inner.listener {
            for (k, v, cause) in removed {
                l(&k, &v, cause);
            }
        }
    }

    /// Removes `key`; returns its value if it was held.
    pub fn invalidate<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let (owned, value) = {
            let mut shard = self.inner.shards[self.shard_of(hash)].write();
            let removed = shard.remove(&self.inner.hasher, hash, key)?;
            shard.counts.invalidated += 1;
            removed
        };
        if self.inner.listener.is_some() {
            self.report([(owned, value.clone(), EvictionCause::Invalidated)]);
        }
        Some(value)
    }

    /// Removes every entry.
    pub fn invalidate_all(&self) {
        for shard in self.inner.shards.iter() {
            let removed: Vec<_> = {
                let mut shard = shard.write();
                shard.counts.invalidated += shard.len() as u64;
                shard.clear().collect()
            };
            self.report(
                removed
                    .into_iter()
                    .map(|(k, v)| (k, v, EvictionCause::Invalidated)),
            );
        }
    }

    /// Entries held, stale ones and expired ones not yet reclaimed included.
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| s.read().len()).sum()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total weight held (the entry count without a weigher).
    pub fn weighted_size(&self) -> u64 {
        self.inner.shards.iter().map(|s| s.read().weight).sum()
    }

    /// The capacity (entries, or weight with a weigher).
    pub fn capacity(&self) -> u64 {
        self.inner.shard_capacity.iter().sum()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> MemoryCacheStats {
        let mut stats = self.inner.stats.snapshot();
        for shard in self.inner.shards.iter() {
            let c = shard.read().counts;
            stats.inserts += c.inserts;
            stats.replaced += c.replaced;
            stats.evicted += c.evicted;
            stats.expired += c.expired;
            stats.invalidated += c.invalidated;
        }
        stats
    }
}
