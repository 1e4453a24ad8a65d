//! levee's rate limiters.
//!
//! One [`Decision`] type and one [`RateLimiter`] trait for every limiter,
//! so a caller (or the facade) can swap a local limiter for a shared one.
//!
//! - [`SlidingWindow`]: keyed, local; a sliding-window counter by default,
//!   an exact sliding log as an option; quota classes, quotas changeable at
//!   run time, `acquire` that waits in arrival order, idle keys evicted as it
//!   goes.
//! - [`Gcra`]: the same trait over `governor`'s GCRA, for burst + sustained
//!   quotas such as "10 burst, 5 a minute".
//! - [`ConcurrencyLimit`]: at most N calls in flight, a bounded queue.
//! - [`UpstreamQuota`]: learns an upstream's own limits from its responses
//!   (`Retry-After`, `x-ratelimit-*`, IETF `RateLimit`/`RateLimit-Policy`)
//!   and holds calls back until its reset; `SharedUpstreamQuota` (feature
//!   `redis`) shares those holds with every replica.
//! - `RedisSlidingWindow` (feature `redis`): the same limits shared by
//!   every replica through Redis, one round trip per decision, with a
//!   policy for when Redis is down.
//!
//! Both Redis users go through a `levee-redis` client (timeout, breaker,
//! reconnects): while its breaker is open they answer at once from their
//! fallback. Features `tls` and `cluster` add `rediss://` and Redis Cluster.
//!
//! ```
//! use std::num::NonZeroU32;
//! use levee_limit::{Quota, SlidingWindow, WindowMode};
//!
//! let limiter = SlidingWindow::<u64>::builder(Quota::per_second(NonZeroU32::new(2).unwrap()))
//!     .mode(WindowMode::Log)
//!     .build()?;
//! assert!(limiter.check(&7).allowed);
//! assert!(limiter.check(&7).allowed);
//! assert!(!limiter.check(&7).allowed);
//! # Ok::<(), levee_limit::LimitError>(())
//! ```
//!
//! # Accuracy
//!
//! - [`WindowMode::Log`] admits at most `limit` requests in any window of
//!   the quota's length (property-tested with random arrival times).
//! - [`WindowMode::Counter`] admits at most `limit` per aligned window; in
//!   an unaligned window it can admit more, because it assumes the previous
//!   window's requests were spread evenly. The worst case is below `2 *
//!   limit` (the whole previous quota spent at its very end, the next spent
//!   at once); the property test measures it on random traffic and asserts
//!   that bound.
//!
//! # Speed
//!
//! A counter-mode check is lock-free for limits below 2^24 per window: the
//! key's two counts and window index share one atomic word, updated with a
//! compare-and-swap. Larger limits and the log mode take a per-key mutex.
//! Without an injected clock, [`SlidingWindow`] and [`Gcra`] read the CPU's
//! time-stamp counter (through `quanta`, as governor does). Measured
//! figures beside governor are in the repository's `docs/benchmarks.md`.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod concurrency;
mod decision;
mod error;
mod gcra;
mod limiter;
mod quota;
#[cfg(feature = "redis")]
mod redis_gcra;
#[cfg(feature = "redis")]
mod redis_window;
mod sliding_window;
mod time;
mod upstream;

pub use concurrency::{ConcurrencyLimit, ConcurrencyPermit};
pub use decision::Decision;
pub use error::LimitError;
pub use gcra::Gcra;
pub use limiter::RateLimiter;
pub use quota::Quota;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis_gcra::{RedisGcra, RedisGcraBuilder};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis_window::{OnRedisError, RedisSlidingWindow, RedisSlidingWindowBuilder, TimeSource};
pub use sliding_window::{SlidingWindow, SlidingWindowBuilder, WindowMode};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use upstream::SharedUpstreamQuota;
pub use upstream::{Learned, QuotaState, UpstreamQuota, UpstreamQuotaBuilder, parse_headers};
