//! levee: a resilience toolkit for services that call rate-limited,
//! sometimes-failing upstreams.
//!
//! This facade re-exports the component crates:
//! - [`core`]: `Clock`, key encoding, Redis connection setup.
//! - [`cache`]: `MemoryCache` (L1), `RedisL2`, `TieredCache`.
//! - [`breaker`]: `CircuitBreaker`, `BreakerRegistry`.
//! - [`limit`]: `SlidingWindow`, `Gcra`, `RedisSlidingWindow`,
//!   `ConcurrencyLimit`, `UpstreamQuota`.
//! - [`rate_limit`] (feature `tower`): `RateLimitLayer`, server-side rate
//!   limiting for tower and axum with IETF `RateLimit` headers.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use levee_breaker as breaker;
pub use levee_cache as cache;
pub use levee_core as core;
pub use levee_limit as limit;

#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod rate_limit;

#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
