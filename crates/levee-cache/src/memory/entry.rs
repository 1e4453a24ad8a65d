//! What a [`MemoryCache`](super::MemoryCache) hands back about an entry.

use std::time::{Duration, Instant};

/// When an entry stops being fresh, and when it stops being kept as stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    /// Until this moment the entry is fresh.
    pub fresh_until: Instant,
    /// Until this moment an expired entry is kept, and served as stale by
    /// [`get_entry`](super::MemoryCache::get_entry).
    pub stale_until: Instant,
}

/// Whether a value read by [`get_entry`](super::MemoryCache::get_entry) is
/// fresh or stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryFreshness {
    /// Within its fresh time.
    Fresh,
    /// Past its fresh time by `age`, but within its stale retention.
    Stale {
        /// Time since the entry stopped being fresh.
        age: Duration,
    },
}

/// A value with its expiry and freshness.
#[derive(Debug, Clone)]
pub struct MemoryEntry<V> {
    /// The value.
    pub value: V,
    /// Its expiry.
    pub expiry: Expiry,
    /// Fresh or stale, at the moment it was read.
    pub freshness: EntryFreshness,
}

/// Why an entry left the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EvictionCause {
    /// Its stale retention ran out.
    Expired,
    /// Removed to respect the capacity.
    Evicted,
    /// Removed by `invalidate` or `invalidate_all`.
    Invalidated,
    /// Overwritten by a new value for the same key.
    Replaced,
}

/// Which entries make room when the cache is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EvictionPolicy {
    /// S3-FIFO: a small FIFO for new entries, a main FIFO for entries seen
    /// again, a ghost FIFO remembering recent evictions. Scan resistant.
    #[default]
    S3Fifo,
    /// Evict in insertion order, ignoring reads (FIFO). For comparison.
    Fifo,
    /// Evict the least recently used entry. For comparison: every hit takes
    /// the shard's write lock to move the key to the back of the queue.
    Lru,
}
