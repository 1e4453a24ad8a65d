//! [`Levee`]: cache, upstream quota, rate limit, bulkhead, timeouts, retry,
//! circuit breaker and fallback in one pipeline.

mod attempt;
mod batch;
mod builder;
mod error;
#[cfg(feature = "http")]
pub(crate) mod http_verdict;
mod observe;
mod quota;
mod retry;
mod verdict;

use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use levee_breaker::CircuitBreaker;
use levee_cache::{Cached, Freshness, Loaded, Source, TieredCache};
use levee_core::SharedClock;
use levee_limit::{ConcurrencyLimit, RateLimiter};
use tracing::Instrument;

pub use batch::BatchCost;
pub use builder::LeveeBuilder;
pub use error::Error;
pub use observe::LeveeStats;
pub use quota::UpstreamQuotaPort;
pub use retry::{RetryBudget, RetryPolicy};
pub use verdict::Verdict;

/// What a pipeline key must be: hashable, cloneable, shareable.
pub trait PipelineKey: Hash + Eq + Clone + Send + Sync + 'static {}
impl<K: Hash + Eq + Clone + Send + Sync + 'static> PipelineKey for K {}

pub(crate) type Classifier<T, E> = Arc<dyn Fn(&Result<T, E>) -> Verdict + Send + Sync>;
pub(crate) type Mapper<T, V> = Arc<dyn Fn(T) -> Loaded<V> + Send + Sync>;
pub(crate) type HeadersOf<T, E> = Arc<
    dyn for<'a> Fn(&'a Result<T, E>) -> Option<(http::StatusCode, &'a http::HeaderMap)>
        + Send
        + Sync,
>;
pub(crate) type BoxFuture<O> = Pin<Box<dyn Future<Output = O> + Send>>;
pub(crate) type Fallback<K, V, E> = Arc<dyn Fn(K) -> BoxFuture<Result<Option<V>, E>> + Send + Sync>;

/// One breaker for all calls, or one per upstream host or route.
pub(crate) enum Breakers<K> {
    One(CircuitBreaker),
    PerKey(Arc<dyn Fn(&K) -> CircuitBreaker + Send + Sync>),
}

impl<K> Breakers<K> {
    fn for_key(&self, key: &K) -> std::borrow::Cow<'_, CircuitBreaker> {
        match self {
            Breakers::One(b) => std::borrow::Cow::Borrowed(b),
            Breakers::PerKey(f) => std::borrow::Cow::Owned(f(key)),
        }
    }
}

/// A pipeline setting has a value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pipeline setting `{setting}`: {reason}")]
#[non_exhaustive]
pub struct ConfigError {
    /// The setting, as its builder method is named.
    pub setting: &'static str,
    /// What is wrong and what to do instead.
    pub reason: String,
}

/// A resilience pipeline around calls to one upstream: outer to inner,
/// cache (single-flight, stale tiers) -> upstream quota -> rate limit ->
/// bulkhead -> total timeout -> retry -> circuit breaker -> attempt timeout
/// -> the call. Any failure below the cache is answered with a stale value
/// that fits a tier, else with the fallback's value, else with the
/// [`Error`].
///
/// Cheap to clone: clones share every part.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use levee::{Levee, RetryPolicy};
/// use levee::cache::{Source, TieredCache};
/// use levee::breaker::CircuitBreaker;
///
/// let userinfo = Levee::builder("userinfo")
///     .cache(TieredCache::<String, String>::builder("userinfo").ttl(Duration::from_secs(300)).build()?)
///     .retry(RetryPolicy::new(3))
///     .circuit_breaker(CircuitBreaker::builder().name("idp").build()?)
///     .attempt_timeout(Duration::from_secs(2))
///     .build()?;
/// let got = userinfo
///     .get("alice".to_string(), || async { Ok::<_, std::io::Error>("{\"sub\":\"alice\"}".to_string()) })
///     .await?
///     .expect("present");
/// assert_eq!(got.source, Source::Loader);
/// # Ok(()) }
/// ```
pub struct Levee<K, V, E, T = V> {
    inner: Arc<Inner<K, V, E, T>>,
}

impl<K, V, E, T> Clone for Levee<K, V, E, T> {
    fn clone(&self) -> Self {
        Levee {
            inner: self.inner.clone(),
        }
    }
}

impl<K, V, E, T> std::fmt::Debug for Levee<K, V, E, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Levee")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner<K, V, E, T> {
    name: Arc<str>,
    cache: Option<TieredCache<K, V>>,
    quota: Option<Arc<dyn UpstreamQuotaPort<K>>>,
    limiter: Option<Arc<dyn RateLimiter<K>>>,
    bulkhead: Option<ConcurrencyLimit>,
    queue_timeout: Duration,
    timeout: Option<Duration>,
    retry: Option<RetryPolicy>,
    budget: Option<retry::BudgetAccount>,
    breakers: Option<Breakers<K>>,
    attempt_timeout: Option<Duration>,
    fallback: Option<Fallback<K, V, E>>,
    batch_cost: BatchCost,
    classify: Classifier<T, E>,
    headers_of: Option<HeadersOf<T, E>>,
    map: Mapper<T, V>,
    clock: SharedClock,
    stats: observe::Counters,
    metrics: observe::Metrics,
}

impl<K: PipelineKey, V, E> Levee<K, V, E, V>
where
    V: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    /// A builder; `name` labels the pipeline's logs and metrics.
    pub fn builder(name: &str) -> LeveeBuilder<K, V, E, V> {
        LeveeBuilder::new(name)
    }
}

impl<K: PipelineKey, V, E, T> Levee<K, V, E, T>
where
    V: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
    T: Send + 'static,
{
    /// The value for `key`: from the cache when fresh, else from `loader`
    /// through the pipeline's parts. `loader` is called once per attempt
    /// and returns the upstream's raw result; the builder's mapping makes
    /// the cached value of a success. `Ok(None)`: the upstream says the key
    /// is absent (cached for the negative TTL).
    ///
    /// A load runs on a task of its own when a cache is set: a caller that
    /// is dropped does not cancel it (the other callers of the key wait
    /// for it). Without a cache the load runs in the caller's future, and
    /// dropping it frees every permit it held.
    pub async fn get<F, Fut>(&self, key: K, loader: F) -> Result<Option<Cached<V>>, Error<E>>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let inner = &self.inner;
        let span = observe::span(&inner.name, &key);
        let Some(cache) = &inner.cache else {
            let uncached = async {
                match inner.load(&key, &loader).await {
                    Ok(loaded) => Ok(loaded_value(loaded).map(|value| Cached {
                        value,
                        freshness: Freshness::Fresh,
                        source: Source::Loader,
                    })),
                    Err(e) => inner.fall_back(key, e).await,
                }
            };
            let result = if span.is_disabled() {
                uncached.await
            } else {
                uncached.instrument(span.clone()).await
            };
            return observe::finish(&span, &inner.metrics, result);
        };
        let make = |k: &K| {
            let (inner, k) = (inner.clone(), k.clone());
            move || async move { inner.load(&k, &loader).await }
        };
        // A fresh L1 hit is answered here, synchronously: no future of the
        // slow path is built or moved, no span entered.
        let make = match cache.get_fresh_with(&key, make) {
            Ok(hit) => {
                observe::hit(&span, &inner.metrics);
                return Ok(hit);
            }
            Err(make) => make,
        };
        let cached = async {
            match cache.get_or_load_with(key.clone(), make).await {
                Ok(v) => Ok(v),
                Err(e) => inner.fall_back(key, Error::from_cache(e)).await,
            }
        };
        let result = if span.is_disabled() {
            cached.await
        } else {
            cached.instrument(span.clone()).await
        };
        observe::finish(&span, &inner.metrics, result)
    }

    /// Calls `call` once through the parts below the cache (upstream
    /// quota, rate limit, bulkhead, timeouts, breaker), never retried and
    /// never cached: for a call that must not repeat (an HTTP `POST`).
    ///
    /// `Ok` holds the upstream's own result, whatever the classifier made
    /// of it; the verdict still counts for the breaker and the result's
    /// headers still teach the upstream quota. `Err` says why the call was
    /// not made (`RateLimited`, `CircuitOpen`, `BulkheadFull`, `Limiter`)
    /// or did not finish in time (`Timeout`). No stale value and no
    /// fallback answer for it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use levee::Levee;
    ///
    /// let pipeline = Levee::<String, String, std::io::Error>::builder("orders").build()?;
    /// let answer = pipeline
    ///     .call_once(&"alice".to_string(), || async { Ok("created".to_string()) })
    ///     .await?;
    /// assert_eq!(answer?, "created");
    /// # Ok(()) }
    /// ```
    pub async fn call_once<F, Fut>(&self, key: &K, call: F) -> Result<Result<T, E>, Error<E>>
    where
        F: Fn() -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, E>> + Send,
    {
        self.inner.once(key, &call).await
    }

    /// Stores `value` in the cache as freshly loaded (no-op without one).
    pub async fn insert(&self, key: K, value: V) {
        if let Some(c) = &self.inner.cache {
            c.insert(key, value).await;
        }
    }

    /// Drops `key` from the cache (both tiers, every replica's L1).
    pub async fn invalidate(&self, key: &K) {
        if let Some(c) = &self.inner.cache {
            c.invalidate(key).await;
        }
    }

    /// Drops every cached value.
    pub async fn invalidate_all(&self) {
        if let Some(c) = &self.inner.cache {
            c.invalidate_all().await;
        }
    }

    /// A snapshot of the pipeline's counters and of its parts.
    pub fn stats(&self) -> LeveeStats {
        let i = &self.inner;
        i.stats.snapshot(
            i.cache.as_ref().map(TieredCache::stats),
            match &i.breakers {
                Some(Breakers::One(b)) => Some(b.stats()),
                _ => None,
            },
            i.bulkhead.as_ref().map(ConcurrencyLimit::in_flight),
        )
    }

    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }
}

impl<K: PipelineKey, V, E, T> Inner<K, V, E, T>
where
    V: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
    T: Send + 'static,
{
    /// No value from the cache or the load: the fallback's, else `err`.
    async fn fall_back(&self, key: K, err: Error<E>) -> Result<Option<Cached<V>>, Error<E>> {
        let Some(fallback) = &self.fallback else {
            return Err(err);
        };
        self.stats.fallback();
        match fallback(key).await {
            Ok(Some(value)) => Ok(Some(Cached {
                value,
                freshness: Freshness::Fresh,
                source: Source::Fallback,
            })),
            Ok(None) => Ok(None),
            Err(_) => Err(err),
        }
    }
}

fn loaded_value<V>(l: Loaded<V>) -> Option<V> {
    match l {
        Loaded::Value(v) | Loaded::ValueWithTtl(v, _) | Loaded::ValueUntil(v, _) => Some(v),
        Loaded::Absent => None,
    }
}
