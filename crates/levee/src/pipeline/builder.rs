//! [`LeveeBuilder`]: the parts of a pipeline, outer to inner.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use levee_breaker::{BreakerRegistry, CircuitBreaker};
use levee_cache::{Loaded, TieredCache};
use levee_core::{SharedClock, SystemClock};
use levee_limit::{ConcurrencyLimit, RateLimiter};

use super::retry::BudgetAccount;
use super::{
    Breakers, Classifier, ConfigError, Fallback, HeadersOf, Inner, Levee, Mapper, PipelineKey,
    RetryPolicy, UpstreamQuotaPort, Verdict,
};

/// Builds a [`Levee`] pipeline; from [`Levee::builder`]. Every part is
/// optional; the order they run in is fixed (outer to inner): cache ->
/// upstream quota -> rate limit -> bulkhead -> total timeout -> retry ->
/// breaker -> attempt timeout -> the call.
///
/// `T` is what the loader returns on success, `E` its error, `V` what is
/// cached; by default `T` is `V`, [`map`](Self::map) changes it.
#[must_use]
pub struct LeveeBuilder<K, V, E, T = V> {
    /// The settings that do not depend on `T`: [`map`](Self::map) carries
    /// them over unchanged.
    pub(super) parts: Parts<K, V, E>,
    pub(super) classify: Classifier<T, E>,
    pub(super) headers_of: Option<HeadersOf<T, E>>,
    pub(super) map: Mapper<T, V>,
}

/// A builder's settings other than the classifier and the mapping.
pub(super) struct Parts<K, V, E> {
    pub(super) name: Arc<str>,
    pub(super) cache: Option<TieredCache<K, V>>,
    pub(super) quota: Option<Arc<dyn UpstreamQuotaPort<K>>>,
    pub(super) limiter: Option<Arc<dyn RateLimiter<K>>>,
    pub(super) bulkhead: Option<ConcurrencyLimit>,
    pub(super) queue_timeout: Duration,
    pub(super) timeout: Option<Duration>,
    pub(super) retry: Option<RetryPolicy>,
    pub(super) breakers: Option<Breakers<K>>,
    pub(super) attempt_timeout: Option<Duration>,
    pub(super) fallback: Option<Fallback<K, V, E>>,
    pub(super) clock: Option<SharedClock>,
    pub(super) batch_cost: super::BatchCost,
}

impl<K, V, E, T> std::fmt::Debug for LeveeBuilder<K, V, E, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeveeBuilder")
            .field("name", &self.parts.name)
            .field("cache", &self.parts.cache.is_some())
            .field("retry", &self.parts.retry)
            .finish_non_exhaustive()
    }
}

impl<K: PipelineKey, V, E> LeveeBuilder<K, V, E, V>
where
    V: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    pub(super) fn new(name: &str) -> Self {
        LeveeBuilder {
            parts: Parts {
                name: Arc::from(name),
                cache: None,
                quota: None,
                limiter: None,
                bulkhead: None,
                queue_timeout: Duration::from_secs(1),
                timeout: None,
                retry: None,
                breakers: None,
                attempt_timeout: None,
                fallback: None,
                clock: None,
                batch_cost: super::BatchCost::PerKey,
            },
            classify: Arc::new(Verdict::of::<V, E>),
            headers_of: None,
            map: Arc::new(Loaded::Value),
        }
    }
}

impl<K: PipelineKey, V, E, T> LeveeBuilder<K, V, E, T>
where
    V: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
    T: Send + 'static,
{
    /// How [`Levee::get_many`] spends the rate limiter: a permit per key
    /// loaded ([`BatchCost::PerKey`](super::BatchCost::PerKey), the
    /// default) or one per batch call
    /// ([`BatchCost::PerBatch`](super::BatchCost::PerBatch), for an
    /// upstream that counts a batch as one call).
    pub fn batch_cost(mut self, cost: super::BatchCost) -> Self {
        self.parts.batch_cost = cost;
        self
    }

    /// The cache at the top: single-flight per key, L1/L2, stale tiers.
    /// Without one, nothing is cached and no stale value can serve.
    pub fn cache(mut self, cache: TieredCache<K, V>) -> Self {
        self.parts.cache = Some(cache);
        self
    }

    /// The upstream's own limits, learned from its answers: a key it holds
    /// back is not called until its reset. An `UpstreamQuota` (this
    /// process) or a `SharedUpstreamQuota` (every replica).
    pub fn upstream_quota(mut self, quota: impl UpstreamQuotaPort<K>) -> Self {
        self.parts.quota = Some(Arc::new(quota));
        self
    }

    /// Our own rate limit per key (local `SlidingWindow`/`Gcra`, or
    /// `RedisSlidingWindow` shared by every replica).
    pub fn rate_limit(mut self, limiter: impl RateLimiter<K> + 'static) -> Self {
        self.parts.limiter = Some(Arc::new(limiter));
        self
    }

    /// A bulkhead: at most its `max_in_flight` loads at once; callers wait
    /// in its queue up to [`queue_timeout`](Self::queue_timeout).
    pub fn concurrency(mut self, limit: ConcurrencyLimit) -> Self {
        self.parts.bulkhead = Some(limit);
        self
    }

    /// How long a call waits in the bulkhead's queue. Default: 1 s.
    pub fn queue_timeout(mut self, d: Duration) -> Self {
        self.parts.queue_timeout = d;
        self
    }

    /// The longest a load may take in all, retries and their waits
    /// included. Default: none.
    pub fn timeout(mut self, total: Duration) -> Self {
        self.parts.timeout = Some(total);
        self
    }

    /// How failed attempts are retried. Default: no retry.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.parts.retry = Some(policy);
        self
    }

    /// One circuit breaker for every call.
    pub fn circuit_breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.parts.breakers = Some(Breakers::One(breaker));
        self
    }

    /// One breaker per upstream host or route, chosen from the key by
    /// `breaker_key` (per upstream, not per user: one user's failures say
    /// nothing of the upstream's health).
    pub fn breaker_per_key<BK, F>(mut self, registry: BreakerRegistry<BK>, breaker_key: F) -> Self
    where
        BK: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
        F: Fn(&K) -> BK + Send + Sync + 'static,
    {
        self.parts.breakers = Some(Breakers::PerKey(Arc::new(move |k: &K| {
            registry.get(&breaker_key(k))
        })));
        self
    }

    /// The longest one attempt may take; a timed-out attempt is a breaker
    /// failure and may be retried. Default: none.
    pub fn attempt_timeout(mut self, d: Duration) -> Self {
        self.parts.attempt_timeout = Some(d);
        self
    }

    /// Where a value comes from when the load failed and no stale value
    /// fits a tier (a default profile, a secondary source). Its value is
    /// labelled `Source::Fallback` and is not cached.
    pub fn fallback<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(K) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
    {
        self.parts.fallback = Some(Arc::new(move |k| Box::pin(f(k))));
        self
    }

    /// How each attempt's result counts. Default: [`Verdict::of`] (`Ok`
    /// succeeds, `Err` is a retryable failure).
    pub fn classify<C>(mut self, classify: C) -> Self
    where
        C: Fn(&Result<T, E>) -> Verdict + Send + Sync + 'static,
    {
        self.classify = Arc::new(classify);
        self
    }

    /// The status and headers of a result, for the upstream quota to learn
    /// from (the `http` feature's [`http`](Self::http) sets it for
    /// `http::Response`).
    pub fn response_headers<H>(mut self, headers_of: H) -> Self
    where
        H: for<'a> Fn(&'a Result<T, E>) -> Option<(http::StatusCode, &'a http::HeaderMap)>
            + Send
            + Sync
            + 'static,
    {
        self.headers_of = Some(Arc::new(headers_of));
        self
    }

    /// The time source of every wait and timeout. Default: the system
    /// clock (tokio's timers). A `ManualClock` runs a simulation.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.parts.clock = Some(clock);
        self
    }

    /// The loader returns `T2`; `map` makes the cached value of it (an
    /// `http::Response` is not `Clone`: here it becomes a value). Resets
    /// the classifier and response headers to their defaults, so call it
    /// before [`classify`](Self::classify).
    pub fn map<T2, M>(self, map: M) -> LeveeBuilder<K, V, E, T2>
    where
        T2: Send + 'static,
        M: Fn(T2) -> Loaded<V> + Send + Sync + 'static,
    {
        LeveeBuilder {
            parts: self.parts,
            classify: Arc::new(Verdict::of::<T2, E>),
            headers_of: None,
            map: Arc::new(map),
        }
    }

    /// The loader returns [`Loaded<V>`] itself (a TTL of its own, or
    /// `Absent`).
    pub fn loads_loaded(self) -> LeveeBuilder<K, V, E, Loaded<V>> {
        self.map(|l: Loaded<V>| l)
    }

    /// Checks the settings and builds the pipeline.
    pub fn build(self) -> Result<Levee<K, V, E, T>, ConfigError> {
        let bad = |setting: &'static str, reason: &str| {
            Err(ConfigError {
                setting,
                reason: reason.to_string(),
            })
        };
        if let Some(r) = &self.parts.retry
            && r.max_attempts == 0
        {
            return bad("retry", "max_attempts must be at least 1 (1: no retry)");
        }
        if self.parts.timeout.is_some_and(|d| d.is_zero()) {
            return bad(
                "timeout",
                "a zero total timeout fails every call; remove it instead",
            );
        }
        if self.parts.attempt_timeout.is_some_and(|d| d.is_zero()) {
            return bad(
                "attempt_timeout",
                "a zero attempt timeout fails every attempt; remove it instead",
            );
        }
        let clock = self.parts.clock.unwrap_or_else(SystemClock::shared);
        let budget = self
            .parts
            .retry
            .as_ref()
            .and_then(|r| r.budget.clone())
            .map(|b| BudgetAccount::new(b, clock.now()));
        let metrics = super::observe::Metrics::new(&self.parts.name);
        Ok(Levee {
            inner: Arc::new(Inner {
                name: self.parts.name,
                cache: self.parts.cache,
                quota: self.parts.quota,
                limiter: self.parts.limiter,
                bulkhead: self.parts.bulkhead,
                queue_timeout: self.parts.queue_timeout,
                timeout: self.parts.timeout,
                retry: self.parts.retry,
                budget,
                breakers: self.parts.breakers,
                attempt_timeout: self.parts.attempt_timeout,
                fallback: self.parts.fallback,
                batch_cost: self.parts.batch_cost,
                classify: self.classify,
                headers_of: self.headers_of,
                map: self.map,
                clock,
                stats: Default::default(),
                metrics,
            }),
        })
    }
}

#[cfg(feature = "http")]
impl<K: PipelineKey, V, E, B> LeveeBuilder<K, V, E, http::Response<B>>
where
    V: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
    B: Send + 'static,
{
    /// Classifies each response with [`crate::http::verdict_at`] (status and
    /// rate-limit headers, dates read on the pipeline's clock) and feeds its
    /// status and headers to the upstream quota: one call for an HTTP
    /// upstream. Call after [`map`](Self::map) and [`clock`](Self::clock)
    /// (it reads the clock set so far; the system clock if none).
    pub fn http(self) -> Self {
        let clock = self.parts.clock.clone().unwrap_or_else(SystemClock::shared);
        self.classify(move |r: &Result<http::Response<B>, E>| {
            crate::http::classify_at(r, clock.system_now())
        })
        .response_headers(crate::http::status_and_headers::<B, E>)
    }
}
