//! [`MemoryCacheBuilder`].

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crossbeam_utils::CachePadded;
use levee_core::SharedClock;
use parking_lot::RwLock;

use super::shard::{Hasher, Shard};
use super::stats::Stats;
use super::time::{self, TimeSource};
use super::{EvictionCause, EvictionPolicy, Inner, Listener, MemoryCache, Weigher};
use crate::ConfigError;

/// Builds a [`MemoryCache`]. Set a bound: `max_capacity`, or `weigher`
/// with `max_weight`.
#[must_use]
pub struct MemoryCacheBuilder<K, V> {
    max_capacity: Option<u64>,
    max_weight: Option<u64>,
    weigher: Option<Weigher<K, V>>,
    ttl: Option<Duration>,
    stale_retention: Duration,
    listener: Option<Listener<K, V>>,
    clock: Option<SharedClock>,
    shards: Option<usize>,
    policy: EvictionPolicy,
}

impl<K, V> std::fmt::Debug for MemoryCacheBuilder<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCacheBuilder")
            .field("max_capacity", &self.max_capacity)
            .field("max_weight", &self.max_weight)
            .field("ttl", &self.ttl)
            .field("stale_retention", &self.stale_retention)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Entries a shard makes room for when the cache is built, at most (a
/// cache of 16 shards: 65,536 entries). Memory the cache never fills is
/// reserved, not written, except the table's control bytes (one per slot).
const RESERVED: usize = 4096;
/// Entries a whole cache makes room for when it is built, at most: with
/// more than 64 shards (many cores), each reserves less.
const RESERVED_IN_ALL: usize = 64 * RESERVED;

/// The default shard count: four per core this process may run on, a power
/// of two from 16 to 256. Shards only need to outnumber the threads that
/// read at once; beyond that each one costs a get locality: on the 2-core
/// development VM, 16 shards against 64 took the one-thread get-hit from
/// 0.88x to 1.09x of quick_cache (interleaved in one process, medians of 5
/// runs; quick_cache also uses four shards per core), with a TTL 0.88x to
/// 1.01x, while two threads stayed ahead (get-hit 1.06x, first sight 1.14x).
fn default_shards() -> usize {
    static SHARDS: OnceLock<usize> = OnceLock::new();
    *SHARDS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores * 4).next_power_of_two().clamp(16, 256)
    })
}

impl<K, V> MemoryCacheBuilder<K, V>
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub(crate) fn new() -> Self {
        MemoryCacheBuilder {
            max_capacity: None,
            max_weight: None,
            weigher: None,
            ttl: None,
            stale_retention: Duration::ZERO,
            listener: None,
            clock: None,
            shards: None,
            policy: EvictionPolicy::default(),
        }
    }

    /// At most `entries` entries. No default: set this or a weight bound.
    ///
    /// The cache makes room for its entries when it is built (up to 4,096
    /// a shard, 65,536 with 16 shards), so that filling it
    /// does not copy and re-hash: address space, of which only the hash
    /// tables' control bytes (one byte a slot) are written before entries
    /// arrive.
    pub fn max_capacity(mut self, entries: u64) -> Self {
        self.max_capacity = Some(entries);
        self
    }

    /// Weighs each entry (at least 1); with [`max_weight`](Self::max_weight).
    pub fn weigher(mut self, f: impl Fn(&K, &V) -> u32 + Send + Sync + 'static) -> Self {
        self.weigher = Some(Arc::new(move |k, v| f(k, v).max(1)));
        self
    }

    /// At most this total weight. An entry heavier than a shard's share is
    /// refused (reported to the listener as `Evicted`).
    pub fn max_weight(mut self, w: u64) -> Self {
        self.max_weight = Some(w);
        self
    }

    /// How long an entry is fresh. Default: forever.
    pub fn time_to_live(mut self, d: Duration) -> Self {
        self.ttl = Some(d);
        self
    }

    /// How long an entry is kept as stale after its fresh time. Default: 0.
    pub fn stale_retention(mut self, d: Duration) -> Self {
        self.stale_retention = d;
        self
    }

    /// Called with each entry that leaves the cache, and why. Runs on the
    /// thread that caused it, after the shard lock is released.
    pub fn eviction_listener(
        mut self,
        f: impl Fn(&K, &V, EvictionCause) + Send + Sync + 'static,
    ) -> Self {
        self.listener = Some(Arc::new(f));
        self
    }

    /// The time source. Default: the system's coarse monotonic clock
    /// (1 to 4 ms resolution: an entry may read as fresh up to that long past
    /// its TTL). An injected clock is read exactly.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Number of shards, rounded up to a power of two. Default: four per
    /// core (`std::thread::available_parallelism`), from 16 to 256, fewer
    /// for small capacities (each shard holds at least 32 entries' worth).
    /// More shards let more threads write at once; fewer keep a get's
    /// memory closer together.
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = Some(n);
        self
    }

    /// The eviction policy. Default: S3-FIFO.
    pub fn policy(mut self, p: EvictionPolicy) -> Self {
        self.policy = p;
        self
    }

    /// This builder's bounds, policy, shards and listener for a cache whose
    /// values are `W`, each holding (or not: a cached absence) a `V`: the
    /// weigher weighs the inner `V` (an absence weighs 1), the listener hears
    /// of entries that hold one. Time settings are left out: the owner sets
    /// them. Errors: a TTL was set (the owner decides expiry).
    pub(crate) fn wrap_values<W>(
        self,
        inner: fn(&W) -> Option<&V>,
    ) -> Result<MemoryCacheBuilder<K, W>, ConfigError>
    where
        W: Clone + Send + Sync + 'static,
    {
        if self.ttl.is_some() || !self.stale_retention.is_zero() {
            return Err(ConfigError::new(
                "l1",
                "the tiered cache sets each L1 entry's expiry itself: leave out time_to_live and stale_retention (use the tiered builder's ttl, l1_ttl and stale_tiers)",
            ));
        }
        let weigher = self.weigher.map(|w| -> Weigher<K, W> {
            Arc::new(move |k: &K, v: &W| inner(v).map_or(1, |v| w(k, v)))
        });
        let listener = self.listener.map(|l| -> Listener<K, W> {
            Arc::new(move |k: &K, v: &W, cause| {
                if let Some(v) = inner(v) {
                    l(k, v, cause);
                }
            })
        });
        Ok(MemoryCacheBuilder {
            max_capacity: self.max_capacity,
            max_weight: self.max_weight,
            weigher,
            ttl: None,
            stale_retention: Duration::ZERO,
            listener,
            clock: self.clock,
            shards: self.shards,
            policy: self.policy,
        })
    }

    /// The eviction listener set so far, taken out (to be chained).
    pub(crate) fn take_listener(&mut self) -> Option<Listener<K, V>> {
        self.listener.take()
    }

    /// Checks the settings and builds the cache.
    pub fn build(self) -> Result<MemoryCache<K, V>, ConfigError> {
        let capacity = match (self.max_capacity, self.max_weight, self.weigher.is_some()) {
            (_, Some(_), false) => {
                return Err(ConfigError::new(
                    "max_weight",
                    "a weight bound needs a `weigher`",
                ));
            }
            (Some(_), _, true) => {
                return Err(ConfigError::new(
                    "max_capacity",
                    "with a `weigher`, bound the cache with `max_weight`",
                ));
            }
            (None, None, _) => {
                return Err(ConfigError::new(
                    "max_capacity",
                    "the cache needs a bound: set `max_capacity(entries)` or `weigher` + `max_weight`",
                ));
            }
            (None, Some(w), true) => w,
            (Some(c), None, _) => c,
        };
        if capacity == 0 {
            return Err(ConfigError::new(
                "max_capacity",
                "a capacity of 0 holds nothing; use at least 1",
            ));
        }
        if self.shards == Some(0) {
            return Err(ConfigError::new("shards", "use at least 1 shard"));
        }
        if self.ttl.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new(
                "time_to_live",
                "a TTL of 0 makes every entry stale at once",
            ));
        }
        let by_size = (capacity / 32).max(1) as usize;
        let shards = self
            .shards
            .unwrap_or_else(default_shards)
            .min(by_size)
            .next_power_of_two()
            .min(1 << 16);
        let base = capacity / shards as u64;
        let rem = capacity % shards as u64;
        let hasher = Hasher::default();
        // Bounded by entries, a shard fills to its capacity: room for it
        // (or the first `RESERVED` entries, fewer with over 64 shards) is
        // made once, not by doubling and copying the slab and re-hashing
        // the table as it fills. (A
        // shard holds `base + 1` at most, and one more for a moment while a
        // new entry bound for the main queue waits for its eviction.) By
        // weight, the number of entries is not known.
        let reserve = if self.weigher.is_none() {
            (base as usize + 2).min(RESERVED.min(RESERVED_IN_ALL / shards))
        } else {
            0
        };
        let inner = Inner {
            shards: (0..shards)
                .map(|_| CachePadded::new(RwLock::new(Shard::with_capacity(reserve))))
                .collect(),
            shard_capacity: (0..shards as u64)
                .map(|i| base + u64::from(i < rem))
                .collect(),
            shard_mask: shards - 1,
            hasher,
            time: self
                .clock
                .map_or_else(TimeSource::coarse, TimeSource::clock),
            ttl: self.ttl.map(time::nanos),
            stale_retention: time::nanos(self.stale_retention),
            weigher: self.weigher,
            listener: self.listener,
            policy: self.policy,
            stats: Stats::default(),
        };
        Ok(MemoryCache {
            inner: Arc::new(inner),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::default_shards;
    use crate::MemoryCache;

    #[test]
    fn the_default_shard_count_follows_the_cores_within_its_bounds() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let n = default_shards();
        assert!(n.is_power_of_two() && (16..=256).contains(&n), "{n}");
        assert!(n >= (cores * 4).min(256), "{n} shards for {cores} cores");
        let big = MemoryCache::<u64, u64>::builder()
            .max_capacity(1 << 20)
            .build()
            .unwrap();
        assert_eq!(big.inner.shards.len(), n);
        // A small cache keeps at least 32 entries' worth in each shard.
        let small = MemoryCache::<u64, u64>::builder()
            .max_capacity(100)
            .build()
            .unwrap();
        assert_eq!(small.inner.shards.len(), 4);
    }

    /// However many shards are asked for, a cache reserves room for at most
    /// 64 shards' worth of entries when it is built (1,024 shards each
    /// reserved 4,096 entries before: four million slots of address space
    /// and a million control bytes written for an empty cache).
    #[test]
    fn many_shards_share_the_reservation() {
        let c = MemoryCache::<u64, u64>::builder()
            .max_capacity(1 << 24)
            .shards(1024)
            .build()
            .unwrap();
        assert_eq!(c.inner.shards.len(), 1024);
        let reserved: usize = c.inner.shards.iter().map(|s| s.read().reserved()).sum();
        assert!(
            (super::RESERVED_IN_ALL..=super::RESERVED_IN_ALL + 2 * 1024).contains(&reserved),
            "{reserved}"
        );
    }
}
