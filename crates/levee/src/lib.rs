//! levee: a resilience toolkit for services that call rate-limited,
//! sometimes-failing upstreams.
//!
//! This facade re-exports the component crates:
//! - [`core`]: `Clock`, key encoding.
//! - `redis` (feature `redis`): `RedisClient`, the one guarded Redis client
//!   every Redis user goes through (features `tls` and `cluster` add
//!   `rediss://` and Redis Cluster).
//! - [`cache`]: `MemoryCache` (L1), `RedisL2`, `TieredCache`.
//! - [`breaker`]: `CircuitBreaker`, `BreakerRegistry`.
//! - [`limit`]: `SlidingWindow`, `Gcra`, `RedisSlidingWindow`,
//!   `ConcurrencyLimit`, `UpstreamQuota`.
//! - [`rate_limit`] (feature `tower`): `RateLimitLayer`, server-side rate
//!   limiting for tower and axum with IETF `RateLimit` headers.
//! - [`client`] (features `tower` and `http`): `LeveeLayer`, the pipeline
//!   as a tower layer around any HTTP client.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "pipeline")]
mod pipeline;

/// The HTTP classifier: a response's status and rate-limit headers as a
/// [`Verdict`].
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http {
    pub use crate::pipeline::http_verdict::{classify, status_and_headers, verdict};
}

#[cfg(feature = "pipeline")]
pub use pipeline::{
    ConfigError, Error, Levee, LeveeBuilder, LeveeStats, PipelineKey, RetryBudget, RetryPolicy,
    UpstreamQuotaPort, Verdict,
};

#[cfg(feature = "breaker")]
pub use levee_breaker as breaker;
#[cfg(feature = "cache")]
pub use levee_cache as cache;
pub use levee_core as core;
#[cfg(feature = "limit")]
pub use levee_limit as limit;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use levee_redis as redis;

#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod rate_limit;

#[cfg(all(feature = "tower", feature = "http"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "tower", feature = "http"))))]
pub mod client;

#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
