//! [`TieredCache`]: single-flight loads over the memory cache, with
//! stale-while-revalidate and stale tiers that serve old values while the
//! upstream fails.
//!
//! This is the in-process part of levee's tiered cache; the Redis L2, the
//! backplane and early refresh are not built yet.

mod builder;
mod cached;
mod error;
mod flight;

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use levee_core::SharedClock;
use parking_lot::Mutex;

pub use builder::TieredCacheBuilder;
pub use cached::{Cached, Freshness, Loaded, Source};
pub use error::CacheError;

use crate::{EntryFreshness, Expiry, MemoryCache, MemoryEntry};
use flight::{FlightResult, FlightRx, Flights, NewFlight};

/// What L1 holds for a key: a value, or a cached absence.
type Stored<V> = Arc<Option<V>>;

pub(crate) struct Shared<K, V> {
    name: Arc<str>,
    l1: MemoryCache<K, Stored<V>>,
    clock: SharedClock,
    ttl: Duration,
    swr: Duration,
    tiers: Vec<(Arc<str>, Duration)>,
    failure_backoff: Duration,
    negative_ttl: Duration,
    hard_timeout: Option<Duration>,
    soft_timeout: Option<Duration>,
    ttl_jitter: f64,
    flights: Flights<K>,
    backoff: Mutex<HashMap<K, Instant, foldhash::fast::RandomState>>,
}

/// Ends the cache's background tasks when the last handle is dropped.
#[derive(Default)]
pub(crate) struct TaskGuard {
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl TaskGuard {
    fn track(&self, handle: tokio::task::AbortHandle) {
        let mut tasks = self.tasks.lock();
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle);
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        for t in self.tasks.get_mut().drain(..) {
            t.abort();
        }
    }
}

static LOADS: AtomicU64 = AtomicU64::new(0);

/// A task handle that aborts the task when dropped, so that ending a load's
/// outer task also ends the loader it is waiting on.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    async fn join(mut self) -> Result<T, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A cache that loads missing values once per key, serves stale values
/// while an upstream fails, and says where each value came from and how
/// fresh it is.
///
/// Cheap to clone: clones share one cache. Dropping the last clone ends its
/// background loads and refreshes.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use levee_cache::{Freshness, Source, TieredCache};
///
/// let cache = TieredCache::<String, String>::builder("userinfo").ttl(Duration::from_secs(300)).build()?;
/// let got = cache
///     .get_or_load("alice".to_string(), || async { Ok::<_, std::io::Error>("{\"sub\":\"alice\"}".to_string().into()) })
///     .await?
///     .expect("the loader returned a value");
/// assert_eq!((got.freshness, got.source), (Freshness::Fresh, Source::Loader));
/// let again = cache.get_or_load("alice".to_string(), || async { unreachable!() as Result<_, std::io::Error> }).await?;
/// assert_eq!(again.unwrap().source, Source::L1);
/// # Ok(()) }
/// ```
pub struct TieredCache<K, V> {
    shared: Arc<Shared<K, V>>,
    guard: Arc<TaskGuard>,
}

impl<K, V> Clone for TieredCache<K, V> {
    fn clone(&self) -> Self {
        TieredCache {
            shared: self.shared.clone(),
            guard: self.guard.clone(),
        }
    }
}

impl<K, V> std::fmt::Debug for TieredCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredCache")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl<K, V> TieredCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A builder for a cache named `name` (used in logs and metrics).
    pub fn builder(name: &str) -> TieredCacheBuilder<K, V> {
        TieredCacheBuilder::new(name)
    }

    /// The value for `key`, loading it with `load` when no fresh one is held.
    ///
    /// One load per key runs at a time, on its own task: callers that ask
    /// meanwhile wait for it, and a caller that is dropped does not cancel
    /// it. Within `stale_while_revalidate` after expiry the stale value is
    /// returned at once and refreshed in the background. When the load
    /// fails (or is in its failure backoff), a stale value whose age fits a
    /// stale tier is returned, labelled with the tier. `Ok(None)`: the
    /// loader said the key is absent.
    pub async fn get_or_load<F, Fut, E>(
        &self,
        key: K,
        load: F,
    ) -> Result<Option<Cached<V>>, CacheError<E>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Loaded<V>, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        let entry = self.shared.l1.get_entry(&key);
        if let Some(e) = &entry {
            match e.freshness {
                EntryFreshness::Fresh => return Ok(fresh(e, Source::L1)),
                EntryFreshness::Stale { age } if age < self.shared.swr && e.value.is_some() => {
                    if !self.shared.flights.is_running(&key) {
                        drop(self.start_load(key, load));
                    }
                    let tier = self
                        .shared
                        .tier_for(age)
                        .unwrap_or_else(|| Arc::from("stale-while-revalidate"));
                    return Ok(stale(e, tier, age));
                }
                EntryFreshness::Stale { .. } => {}
            }
        }
        if let Some(left) = self.shared.backoff_left(&key) {
            return self
                .shared
                .stale_or(entry.as_ref(), CacheError::Backoff { retry_after: left });
        }
        let rx = match self.shared.flights.join_or_register::<V, E>(&key) {
            Ok(rx) => rx,
            Err(registered) => self.spawn_load(key, load, registered),
        };
        let has_stale = entry.as_ref().is_some_and(|e| e.value.is_some());
        let result = match self.shared.soft_timeout.filter(|_| has_stale) {
            // The load goes on after the soft timeout: it is on its own task.
            Some(soft) => tokio::time::timeout(soft, self.wait(rx))
                .await
                .unwrap_or(Err(CacheError::Timeout(soft))),
            None => self.wait(rx).await,
        };
        match result {
            Ok(v) => Ok(v.map(|value| Cached {
                value,
                freshness: Freshness::Fresh,
                source: Source::Loader,
            })),
            Err(err) => self.shared.stale_or(entry.as_ref(), err),
        }
    }

    async fn wait<E>(&self, mut rx: FlightRx<V, E>) -> FlightResult<V, E> {
        let waiting = async {
            match rx.wait_for(Option::is_some).await {
                Ok(r) => r.clone().unwrap_or(Err(CacheError::LoaderPanicked)),
                // The load task was ended (the cache was dropped).
                Err(_) => Err(CacheError::LoaderPanicked),
            }
        };
        match self.shared.hard_timeout {
            Some(t) => tokio::time::timeout(t, waiting)
                .await
                .unwrap_or(Err(CacheError::Timeout(t))),
            None => waiting.await,
        }
    }

    fn start_load<F, Fut, E>(&self, key: K, load: F) -> FlightRx<V, E>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Loaded<V>, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        match self.shared.flights.join_or_register::<V, E>(&key) {
            Ok(rx) => rx,
            Err(registered) => self.spawn_load(key, load, registered),
        }
    }

    fn spawn_load<F, Fut, E>(
        &self,
        key: K,
        load: F,
        NewFlight { tx, rx, token }: NewFlight<V, E>,
    ) -> FlightRx<V, E>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Loaded<V>, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        LOADS.fetch_add(1, Ordering::Relaxed);
        let shared = self.shared.clone();
        let task = tokio::spawn(async move {
            let started = shared.clock.now();
            // The loader runs on a task of its own so that its panic is
            // caught here and becomes an error for every waiter.
            let inner = AbortOnDrop(tokio::spawn(async move { load().await }));
            let outcome = match inner.join().await {
                Ok(Ok(loaded)) => Ok(loaded),
                Ok(Err(e)) => Err(CacheError::Load(Arc::new(e))),
                Err(_) => Err(CacheError::LoaderPanicked),
            };
            let result = match outcome {
                Ok(loaded) => {
                    shared.backoff.lock().remove(&key);
                    let value = shared.store(&key, loaded, !token.load(Ordering::SeqCst));
                    tracing::trace!(cache = %shared.name, elapsed = ?shared.clock.now() - started, "load finished");
                    Ok(value)
                }
                Err(e) => {
                    let until = shared.clock.now() + shared.failure_backoff;
                    shared.backoff.lock().insert(key.clone(), until);
                    Err(e)
                }
            };
            shared.flights.finish(&key, &token);
            let _ = tx.send(Some(result));
        });
        self.guard.track(task.abort_handle());
        rx
    }

    /// The value for `key` if one is held fresh; never loads.
    pub fn get(&self, key: &K) -> Option<Cached<V>> {
        let e = self.shared.l1.get_entry(key)?;
        if e.freshness == EntryFreshness::Fresh {
            fresh(&e, Source::L1)
        } else {
            None
        }
    }

    /// Stores `value` as freshly loaded.
    pub fn insert(&self, key: K, value: V) {
        self.shared.store(&key, Loaded::Value(value), true);
    }

    /// Drops `key`; a load running for it still answers its waiters but
    /// its result is kept out of the cache.
    pub fn invalidate(&self, key: &K) {
        self.shared.flights.invalidate(key);
        self.shared.l1.invalidate(key);
    }

    /// Loads started by all tiered caches of this process.
    pub fn loads_started() -> u64 {
        LOADS.load(Ordering::Relaxed)
    }
}

impl<K, V> Shared<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn store(&self, key: &K, loaded: Loaded<V>, keep: bool) -> Option<V> {
        let now = self.clock.now();
        let (value, ttl) = match loaded {
            Loaded::Value(v) => (Some(v), self.jittered(self.ttl)),
            Loaded::ValueWithTtl(v, ttl) => (Some(v), self.jittered(ttl.min(self.ttl))),
            Loaded::Absent => (None, self.negative_ttl),
        };
        if keep {
            let keep_stale = if value.is_some() {
                self.tiers
                    .last()
                    .map_or(Duration::ZERO, |t| t.1)
                    .max(self.swr)
            } else {
                Duration::ZERO
            };
            let expiry = Expiry {
                fresh_until: now + ttl,
                stale_until: now + ttl + keep_stale,
            };
            self.l1
                .insert_with_expiry(key.clone(), Arc::new(value.clone()), expiry);
        }
        value
    }

    /// `ttl` shortened by a random fraction up to `ttl_jitter`.
    fn jittered(&self, ttl: Duration) -> Duration {
        if self.ttl_jitter == 0.0 {
            return ttl;
        }
        ttl.mul_f64(1.0 - self.ttl_jitter * rand::random::<f64>())
    }

    fn tier_for(&self, age: Duration) -> Option<Arc<str>> {
        self.tiers
            .iter()
            .find(|(_, max)| age <= *max)
            .map(|(n, _)| n.clone())
    }

    fn backoff_left(&self, key: &K) -> Option<Duration> {
        let until = *self.backoff.lock().get(key)?;
        until
            .checked_duration_since(self.clock.now())
            .filter(|d| !d.is_zero())
    }

    /// A stale value whose age fits a tier, or `err`.
    fn stale_or<E>(
        &self,
        entry: Option<&MemoryEntry<Stored<V>>>,
        err: CacheError<E>,
    ) -> Result<Option<Cached<V>>, CacheError<E>> {
        if let Some(e) = entry {
            if let (EntryFreshness::Stale { age }, Some(_)) = (e.freshness, e.value.as_ref()) {
                if let Some(tier) = self.tier_for(age) {
                    return Ok(stale(e, tier, age));
                }
            }
        }
        Err(err)
    }
}

fn fresh<V: Clone>(e: &MemoryEntry<Stored<V>>, source: Source) -> Option<Cached<V>> {
    e.value.as_ref().clone().map(|value| Cached {
        value,
        freshness: Freshness::Fresh,
        source,
    })
}

fn stale<V: Clone>(e: &MemoryEntry<Stored<V>>, tier: Arc<str>, age: Duration) -> Option<Cached<V>> {
    e.value.as_ref().clone().map(|value| Cached {
        value,
        freshness: Freshness::Stale { tier, age },
        source: Source::L1,
    })
}
