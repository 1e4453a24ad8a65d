//! [`AnyLimiter`] and [`AnyQuota`]: whichever limiter or upstream quota a
//! config entry names, behind one type a pipeline takes.

use std::num::NonZeroU32;
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use levee_limit::{
    Decision, Gcra, LimitError, QuotaState, RateLimiter, SlidingWindow, UpstreamQuota,
};

use crate::UpstreamQuotaPort;

use super::ConfigKey;

/// The rate limiter a `[limiters]` entry builds (its `kind`). Cheap to
/// clone: clones share one state.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AnyLimiter<K: std::hash::Hash + Eq + Clone> {
    /// `kind = "sliding_window"`.
    SlidingWindow(SlidingWindow<K>),
    /// `kind = "gcra"`.
    Gcra(Gcra<K>),
    /// `kind = "redis_sliding_window"`.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    Redis(levee_limit::RedisSlidingWindow),
    /// `kind = "redis_gcra"`.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    RedisGcra(levee_limit::RedisGcra),
}

#[async_trait::async_trait]
impl<K: ConfigKey> RateLimiter<K> for AnyLimiter<K> {
    async fn check_n(&self, key: &K, n: NonZeroU32) -> Result<Decision, LimitError> {
        match self {
            AnyLimiter::SlidingWindow(l) => RateLimiter::check_n(l, key, n).await,
            AnyLimiter::Gcra(l) => RateLimiter::check_n(l, key, n).await,
            #[cfg(feature = "redis")]
            AnyLimiter::Redis(l) => RateLimiter::check_n(l, key, n).await,
            #[cfg(feature = "redis")]
            AnyLimiter::RedisGcra(l) => RateLimiter::check_n(l, key, n).await,
        }
    }

    fn check_n_now(&self, key: &K, n: NonZeroU32) -> Option<Result<Decision, LimitError>> {
        match self {
            AnyLimiter::SlidingWindow(l) => RateLimiter::check_n_now(l, key, n),
            AnyLimiter::Gcra(l) => RateLimiter::check_n_now(l, key, n),
            #[cfg(feature = "redis")]
            AnyLimiter::Redis(l) => RateLimiter::<K>::check_n_now(l, key, n),
            #[cfg(feature = "redis")]
            AnyLimiter::RedisGcra(l) => RateLimiter::<K>::check_n_now(l, key, n),
        }
    }
}

/// The upstream quota a `[quotas]` entry builds: local, or shared through
/// Redis when it names a connection. Cheap to clone.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AnyQuota<K: std::hash::Hash + Eq> {
    /// Holds learned by this process.
    Local(UpstreamQuota<K>),
    /// Holds every replica sees.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    Shared(levee_limit::SharedUpstreamQuota<K>),
}

#[async_trait::async_trait]
impl<K: ConfigKey> UpstreamQuotaPort<K> for AnyQuota<K> {
    async fn check(&self, key: &K) -> QuotaState {
        match self {
            AnyQuota::Local(q) => UpstreamQuotaPort::check(q, key).await,
            #[cfg(feature = "redis")]
            AnyQuota::Shared(q) => UpstreamQuotaPort::check(q, key).await,
        }
    }

    async fn observe(&self, key: &K, status: StatusCode, headers: &HeaderMap) {
        match self {
            AnyQuota::Local(q) => UpstreamQuotaPort::observe(q, key, status, headers).await,
            #[cfg(feature = "redis")]
            AnyQuota::Shared(q) => UpstreamQuotaPort::observe(q, key, status, headers).await,
        }
    }

    async fn hold(&self, key: &K, d: Option<Duration>) {
        match self {
            AnyQuota::Local(q) => UpstreamQuotaPort::hold(q, key, d).await,
            #[cfg(feature = "redis")]
            AnyQuota::Shared(q) => UpstreamQuotaPort::hold(q, key, d).await,
        }
    }
}
