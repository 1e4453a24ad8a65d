//! [`RateLimiter`]: the trait that local and Redis-backed limiters share.

use std::num::NonZeroU32;

use crate::{Decision, LimitError};

/// A keyed rate limiter. Local ([`SlidingWindow`](crate::SlidingWindow),
/// [`Gcra`](crate::Gcra)) and shared (`RedisSlidingWindow`) limiters
/// implement it, so the facade can swap one for another.
#[async_trait::async_trait]
pub trait RateLimiter<K: ?Sized + Sync>: Send + Sync {
    /// Asks to spend `n` permits for `key`. A denial is `Ok` with
    /// `allowed == false`; `Err` means no decision could be made.
    async fn check_n(&self, key: &K, n: NonZeroU32) -> Result<Decision, LimitError>;

    /// Asks to spend one permit for `key`.
    async fn check(&self, key: &K) -> Result<Decision, LimitError> {
        self.check_n(key, NonZeroU32::MIN).await
    }

    /// The same decision as [`check_n`](Self::check_n) without a future,
    /// for limiters that decide in memory (`SlidingWindow`, `Gcra`);
    /// `None` (the default) for those that must wait (Redis). Callers on a
    /// hot path try it first and skip the boxed future.
    fn check_n_now(&self, key: &K, n: NonZeroU32) -> Option<Result<Decision, LimitError>> {
        let _ = (key, n);
        None
    }
}
