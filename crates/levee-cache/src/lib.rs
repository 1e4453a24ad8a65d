//! levee's caches.
//!
//! - [`MemoryCache`]: a bounded, sharded in-process cache with TTLs, stale
//!   retention and S3-FIFO eviction (levee's L1; a cache on its own too).
//!
//! The tiered cache (`TieredCache`, with a Redis L2, single-flight loads and
//! stale-serve tiers) is being built on top of it.
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

pub use error::ConfigError;
pub use memory::{
    EntryFreshness, EvictionCause, EvictionPolicy, Expiry, MemoryCache, MemoryCacheBuilder,
    MemoryCacheStats, MemoryEntry,
};
