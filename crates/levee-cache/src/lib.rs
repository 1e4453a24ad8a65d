//! levee's caches: an in-process memory cache, and a tiered cache that puts
//! it in front of a shared Redis L2 with single-flight loads, stale-serve
//! tiers, refresh-ahead and a cross-replica invalidation backplane.
//!
//! - [`MemoryCache`]: a bounded, sharded in-process cache with TTLs, stale
//!   retention and S3-FIFO eviction (levee's L1; a cache on its own too).
//! - [`TieredCache`]: `get_or_load(key, loader)` answers from L1, then L2,
//!   then one load per key at a time (on its own task: cancel-safe, a panic
//!   becomes an error for every waiter). It serves stale values within
//!   `stale_while_revalidate` while refreshing in the background, refreshes
//!   hot keys early (XFetch), and while the upstream fails serves stale
//!   values labelled with the stale tier that covers their age. Every value
//!   says where it came from and how fresh it is ([`Cached`]). Batches:
//!   `get_many` and `get_or_load_many(keys, batch_loader)` take one `MGET`
//!   and one batch loader call ([`BatchLoaded`]) per batch, each key still
//!   its own single-flight; `batching` gives a [`Batching`] handle that
//!   collects single-key loads into batches (DataLoader's window).
//! - `RedisL2` (feature `redis`): the shared tier. Values are stored in a
//!   versioned envelope whose times (not Redis's expiry) decide freshness,
//!   encoded by a [`Codec`] (JSON or compact binary), optionally signed;
//!   every call goes through a `levee-redis` client: under a timeout and
//!   behind its circuit breaker, so a dead Redis costs nothing per request
//!   and is found again on its own.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use levee_cache::{Freshness, Loaded, Source, TieredCache};
//!
//! let cache = TieredCache::<String, String>::builder("userinfo")
//!     .ttl(Duration::from_secs(300))
//!     .stale_tiers([("secondary", Duration::from_secs(12 * 3600))])
//!     .build()?;
//! let got = cache
//!     .get_or_load("alice".to_string(), || async {
//!         Ok::<_, std::io::Error>(Loaded::Value("{\"sub\":\"alice\"}".to_string()))
//!     })
//!     .await?
//!     .expect("the loader returned a value");
//! assert_eq!((got.source, got.freshness), (Source::Loader, Freshness::Fresh));
//! assert_eq!(cache.get(&"alice".to_string()).map(|c| c.source), Some(Source::L1));
//!
//! let l1 = levee_cache::MemoryCache::<u64, String>::builder().max_capacity(100).build()?;
//! l1.insert(1, "one".to_string());
//! assert_eq!(l1.get(&1).as_deref(), Some("one"));
//! # Ok(()) }
//! ```
//!
//! With Redis (replicas share values and invalidations):
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use levee_cache::{RedisL2, TieredCache};
//! use levee_redis::RedisClient;
//!
//! let client = RedisClient::standalone("redis://127.0.0.1:6379").build()?;
//! let cache = TieredCache::<String, String>::builder("userinfo")
//!     .ttl(Duration::from_secs(300))
//!     .l1_ttl(Duration::from_secs(30))
//!     .l2(RedisL2::builder(client).build()?)
//!     .build()?;
//! cache.invalidate(&"alice".to_string()).await; // every replica drops it
//! # Ok(()) }
//! ```
//!
//! Features:
//! - `redis` (default): [`RedisL2`], the load lock and the backplane. `V`
//!   needs `Serialize + DeserializeOwned` and `K` needs
//!   [`RedisKey`](levee_core::RedisKey) only for caches given an L2.
//! - `tls`, `cluster`: `rediss://` and Redis Cluster for the L2 (levee-redis's
//!   features of the same names).
//! - `metrics`: counters through the `metrics` crate
//!   (`levee_cache_requests_total{result}`, `levee_cache_l2_events_total{event}`,
//!   and levee-redis's command metrics).
#![cfg_attr(docsrs, feature(doc_cfg))]

mod counted;
mod error;
// Without Redis the L2 plumbing is compiled (the cache is written against
// it) but nothing builds an L2.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
mod l2;
mod memory;
mod tiered;

pub use error::ConfigError;
pub use l2::RedisL2Stats;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use l2::{Codec, RedisL2, RedisL2Builder};
pub use memory::{
    EntryFreshness, EvictionCause, EvictionPolicy, Expiry, MemoryCache, MemoryCacheBuilder,
    MemoryCacheStats, MemoryEntry,
};
pub use tiered::{
    BatchLoaded, Batching, CacheError, Cached, Freshness, Loaded, Source, TieredCache,
    TieredCacheBuilder, TieredStats,
};
