//! levee's caches.
//!
//! - [`MemoryCache`]: a bounded, sharded in-process cache with TTLs, stale
//!   retention and S3-FIFO eviction (levee's L1; a cache on its own too).
//!
//! - [`TieredCache`]: single-flight loads over the memory cache,
//!   stale-while-revalidate, stale tiers served while the upstream fails,
//!   failure backoff and negative caching. Every value says where it came
//!   from and how fresh it is ([`Cached`]). The Redis L2 and the
//!   invalidation backplane are not built yet.
//!
//! ```
//! let cache = levee_cache::MemoryCache::<u64, String>::builder().max_capacity(100).build()?;
//! cache.insert(1, "one".to_string());
//! assert_eq!(cache.get(&1).as_deref(), Some("one"));
//! # Ok::<(), levee_cache::ConfigError>(())
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
mod memory;
mod tiered;

pub use error::ConfigError;
pub use memory::{
    EntryFreshness, EvictionCause, EvictionPolicy, Expiry, MemoryCache, MemoryCacheBuilder,
    MemoryCacheStats, MemoryEntry,
};
pub use tiered::{CacheError, Cached, Freshness, Loaded, Source, TieredCache, TieredCacheBuilder};
