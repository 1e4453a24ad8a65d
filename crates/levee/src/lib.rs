//! levee: a resilience toolkit for services that call rate-limited,
//! sometimes-failing upstreams (identity providers, payment APIs, internal
//! services).
//!
//! The problem it solves, in one story: a backend calls an identity
//! provider's `/userinfo` on every request; the provider allows 10 calls
//! burst and 5 a minute per user and answers 429; a page load fires 5
//! requests at once; users see errors. With levee: one upstream call per
//! user per refresh period, no error a user can see while the upstream
//! rate-limits or is down (stale values served, and labelled as stale), and
//! replicas sharing one Redis L2 and one quota.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use levee::{Levee, RetryPolicy};
//! use levee::breaker::CircuitBreaker;
//! use levee::cache::{Freshness, TieredCache};
//!
//! let userinfo = Levee::builder("userinfo")
//!     .cache(
//!         TieredCache::<String, String>::builder("userinfo")
//!             .ttl(Duration::from_secs(300))
//!             .stale_tiers([("secondary", Duration::from_secs(12 * 3600))])
//!             .build()?,
//!     )
//!     .retry(RetryPolicy::new(3))
//!     .circuit_breaker(CircuitBreaker::builder().name("idp").build()?)
//!     .attempt_timeout(Duration::from_secs(2))
//!     .build()?;
//! let got = userinfo
//!     .get("alice".to_string(), || async {
//!         Ok::<_, std::io::Error>("{\"sub\":\"alice\"}".to_string()) // your HTTP call
//!     })
//!     .await?
//!     .expect("alice exists");
//! assert_eq!(got.freshness, Freshness::Fresh);
//! # Ok(()) }
//! ```
//!
//! # The parts, and which crate holds each
//!
//! | part | what it does | crate (re-exported as) | feature |
//! |---|---|---|---|
//! | [`Levee`] pipeline | cache -> upstream quota -> rate limit -> bulkhead -> timeouts -> retry with budget -> breaker -> fallback, typed [`Verdict`]s | `levee` | `pipeline` |
//! | `Config` | every cache, limiter, breaker, quota, Redis connection and pipeline from one TOML file, `LEVEE_*` environment overrides, secrets by name, every problem reported with its key's path | `levee` (`levee::config`) | `config` |
//! | HTTP classifier | status and rate-limit headers as a verdict, feeding the quota | `levee` (`levee::http`) | `http` |
//! | `RateLimitLayer` | server-side tower/axum rate limiting with IETF `RateLimit` headers | `levee` (`levee::rate_limit`) | `tower`, `axum` |
//! | `LeveeLayer` | the pipeline as a tower layer around any HTTP client: cached GETs keyed by hashed token and `Vary`, `Cache-Control` honoured, stale responses labelled | `levee` (`levee::client`) | `tower` + `http` |
//! | `TieredCache`, `MemoryCache`, `RedisL2` | single-flight loads, S3-FIFO L1, Redis L2, stale tiers, backplane, load lock | `levee-cache` (`levee::cache`) | `cache` (+ `redis`, `cbor`) |
//! | `CircuitBreaker`, `BreakerRegistry` | lock-free closed path, rate and consecutive rules, half-open probes | `levee-breaker` (`levee::breaker`) | `breaker` |
//! | `SlidingWindow`, `Gcra`, `RedisSlidingWindow`, `ConcurrencyLimit`, `UpstreamQuota` | local and fleet-wide limits, a bulkhead, the upstream's own limits learned from its headers | `levee-limit` (`levee::limit`) | `limit` (+ `redis`) |
//! | `RedisClient` | the one guarded path to Redis: timeouts, breaker, reconnect, scripts, pub/sub | `levee-redis` (`levee::redis`) | `redis` (+ `tls`, `cluster`) |
//! | `Clock`, `ManualClock`, `KeyHasher` | time every component reads (tests simulate hours in milliseconds), hashed secrets as keys | `levee-core` (`levee::core`) | always |
//!
//! Default features: `pipeline` and `redis`. `metrics` reports through the
//! `metrics` crate; `tracing` spans are always there. With
//! `default-features = false, features = ["breaker"]` only the breaker and
//! its needs are compiled.
//!
//! The repository's `docs/` holds the long form: architecture, tuning (the
//! settings for an identity provider, with the arithmetic), reliability
//! (what holds for bad input, and the test that shows it), metrics and
//! benchmarks beside moka, quick_cache, governor, failsafe and
//! tower-resilience.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "pipeline")]
mod pipeline;

#[cfg(feature = "config")]
#[cfg_attr(docsrs, doc(cfg(feature = "config")))]
pub mod config;
#[cfg(feature = "config")]
#[cfg_attr(docsrs, doc(cfg(feature = "config")))]
pub use config::Config;

/// The HTTP classifier: a response's status and rate-limit headers as a
/// [`Verdict`].
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http {
    pub use crate::pipeline::http_verdict::{
        classify, classify_at, status_and_headers, verdict, verdict_at,
    };
}

#[cfg(feature = "pipeline")]
pub use pipeline::{
    BatchCost, ConfigError, Error, Levee, LeveeBuilder, LeveeStats, PipelineKey, RetryBudget,
    RetryPolicy, UpstreamQuotaPort, Verdict,
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
