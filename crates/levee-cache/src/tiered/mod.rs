//! [`TieredCache`]: single-flight loads over an in-process L1 and an
//! optional shared Redis L2, with stale-while-revalidate, early refresh and
//! stale tiers that serve old values while the upstream fails.

mod backoff;
mod batch;
mod batch_flight;
mod batching;
mod builder;
mod cached;
mod error;
mod flight;
mod load;
mod pending;
mod refresh;
mod remote;
pub(crate) mod slot;
mod stale;
mod stats;
mod tasks;

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use levee_core::SharedClock;

pub use batch::BatchLoaded;
pub use batching::Batching;
pub use builder::TieredCacheBuilder;
pub use cached::{Cached, Freshness, Loaded, Source};
pub use error::CacheError;
pub use stats::TieredStats;

use crate::l2::L2Port;
use crate::{EntryFreshness, MemoryCache};
use flight::{FlightResult, FlightRx, Flights};
use refresh::Rng;
use slot::Slot;
use tasks::TaskGuard;

/// The settings a built cache runs with.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) ttl: Duration,
    pub(crate) l1_ttl: Duration,
    pub(crate) swr: Duration,
    pub(crate) tiers: Vec<(Arc<str>, Duration)>,
    pub(crate) failure_backoff: Duration,
    pub(crate) negative_ttl: Duration,
    pub(crate) hard_timeout: Option<Duration>,
    pub(crate) soft_timeout: Option<Duration>,
    pub(crate) ttl_jitter: f64,
    pub(crate) early_refresh: f64,
    pub(crate) load_lock: Option<Duration>,
    pub(crate) load_lock_poll: Duration,
}

impl Settings {
    /// How long a value is kept past its fresh time: the last stale tier,
    /// or the stale-while-revalidate window if longer.
    pub(crate) fn keep_stale(&self) -> Duration {
        self.tiers
            .last()
            .map_or(Duration::ZERO, |t| t.1)
            .max(self.swr)
    }
}

/// Maps the bytes of a key (as published on the backplane) back to the key.
pub(crate) type KeyIndex<K> = dashmap::DashMap<Box<[u8]>, K, foldhash::fast::RandomState>;

pub(crate) struct Shared<K, V> {
    pub(crate) name: Arc<str>,
    pub(crate) l1: MemoryCache<K, Slot<V>>,
    pub(crate) clock: SharedClock,
    pub(crate) cfg: Settings,
    pub(crate) flights: Flights<K>,
    pub(crate) backoff: backoff::Backoff<K>,
    pub(crate) rng: Rng,
    pub(crate) l2: Option<Arc<dyn L2Port<K, V>>>,
    /// Present when a backplane listens: keys of L1 entries by their bytes.
    pub(crate) keys: Option<Arc<KeyIndex<K>>>,
    pub(crate) replica_id: u64,
    pub(crate) stats: stats::Counters,
    pub(crate) subscribed: AtomicBool,
    /// Invalidations that could not reach Redis, sent again once it answers.
    pub(crate) pending: pending::Pending<K>,
}

/// A cache that loads missing values once per key, shares them with other
/// replicas through an optional Redis L2, serves stale values while an
/// upstream fails, and says where each value came from and how fresh it is.
///
/// Cheap to clone: clones share one cache. Dropping the last clone ends its
/// background loads, refreshes and backplane listener.
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
            .field("l2", &self.shared.l2.is_some())
            .finish_non_exhaustive()
    }
}

impl<K, V> TieredCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A builder for a cache named `name` (used in Redis keys, logs and
    /// metrics).
    pub fn builder(name: &str) -> TieredCacheBuilder<K, V> {
        TieredCacheBuilder::new(name)
    }

    /// The value for `key`, loading it with `load` when no fresh one is held.
    ///
    /// In order: a fresh L1 value; a fresh L2 value (promoted to L1 with the
    /// times it was stored with); otherwise one load per key at a time, on
    /// its own task: callers that ask meanwhile wait for it, and a caller
    /// that is dropped does not cancel it. Within `stale_while_revalidate`
    /// after expiry the stale value is returned at once and refreshed in the
    /// background. When the load fails (or is in its failure backoff), a
    /// stale value whose age fits a stale tier is returned, labelled with
    /// the tier. `Ok(None)`: the loader said the key is absent.
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
        self.get_or_load_with(key, move |_| load).await
    }

    /// The fresh L1 value of `key` (`Ok(None)`: known absent), starting an
    /// early refresh with the loader `make` gives when one is due; or
    /// `Err(make)` when L1 holds nothing fresh. Synchronous: for a caller
    /// that answers hits without entering its own slow path (the `levee`
    /// pipeline), then calls [`get_or_load_with`](Self::get_or_load_with)
    /// with the same `make` on `Err`. A refresh needs a tokio runtime.
    pub fn get_fresh_with<M, F, Fut, E>(&self, key: &K, make: M) -> Result<Option<Cached<V>>, M>
    where
        M: FnOnce(&K) -> F,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Loaded<V>, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        match self.shared.look_in_l1(key) {
            InL1::Fresh(cached, None) => Ok(cached),
            InL1::Fresh(cached, Some(written)) => {
                self.shared.stats.early_refresh();
                let load = make(key);
                self.refresh(key.clone(), load, Some(written));
                Ok(cached)
            }
            InL1::NotFresh(_) => Err(make),
        }
    }

    /// Like [`get_or_load`](Self::get_or_load), but the loader is made by
    /// `make` only when one is needed (a miss, a refresh): a fresh hit makes
    /// nothing, so a caller whose loader captures handles or a copy of the
    /// key pays for them only on a miss. `make` gets the key.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use levee_cache::TieredCache;
    ///
    /// let cache = TieredCache::<String, usize>::builder("lengths").build()?;
    /// let got = cache
    ///     .get_or_load_with("abc".to_string(), |key: &String| {
    ///         let key = key.clone(); // only on a miss
    ///         move || async move { Ok::<_, std::io::Error>(key.len().into()) }
    ///     })
    ///     .await?;
    /// assert_eq!(got.unwrap().value, 3);
    /// # Ok(()) }
    /// ```
    pub async fn get_or_load_with<M, F, Fut, E>(
        &self,
        key: K,
        make: M,
    ) -> Result<Option<Cached<V>>, CacheError<E>>
    where
        M: FnOnce(&K) -> F,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Loaded<V>, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        let sh = &*self.shared;
        let held = match sh.look_in_l1(&key) {
            InL1::Fresh(cached, refresh_newer_than) => {
                if let Some(written) = refresh_newer_than {
                    sh.stats.early_refresh();
                    let load = make(&key);
                    self.refresh(key, load, Some(written));
                }
                return Ok(cached);
            }
            InL1::NotFresh(held) => held,
        };
        if let Some(slot) = &held {
            let now = sh.clock.now();
            if !slot.is_fresh(now) && slot.value.is_some() && slot.age(now) < sh.cfg.swr {
                let load = make(&key);
                self.refresh(key, load, None);
                return Ok(sh.serve_stale(slot, now, true, Source::L1));
            }
        }
        if let Some(left) = sh.backoff_left(&key) {
            return sh.stale_or(
                held.as_ref(),
                Source::L1,
                CacheError::Backoff { retry_after: left },
            );
        }
        let load = make(&key);
        let (rx, key) = match self.lead_or_join(key, load).await {
            load::Led::Answered(found) => return Ok(found),
            load::Led::Waiting(rx, key) => (rx, key),
        };
        let has_stale = held.as_ref().is_some_and(|s| s.value.is_some());
        let result = match sh.cfg.soft_timeout.filter(|_| has_stale) {
            // The load goes on after the soft timeout: it is on its own task.
            Some(soft) => levee_core::sleep::timeout(&*sh.clock, soft, self.wait(rx))
                .await
                .unwrap_or(Err(CacheError::Timeout(soft))),
            None => self.wait(rx).await,
        };
        match result {
            Ok(v) => Ok(v),
            Err(err) => sh.stale_after_failed_load(&key, held, err),
        }
    }

    async fn wait<E>(&self, rx: FlightRx<K, V, E>) -> FlightResult<V, E> {
        // A load task ended without an answer (the cache was dropped)
        // answers `LoaderPanicked`.
        let waiting = rx.wait();
        match self.shared.cfg.hard_timeout {
            Some(t) => levee_core::sleep::timeout(&*self.shared.clock, t, waiting)
                .await
                .unwrap_or(Err(CacheError::Timeout(t))),
            None => waiting.await,
        }
    }

    /// Starts a background load of `key` unless one is running or a load
    /// of it failed within `failure_backoff`.
    fn refresh<F, Fut, E>(&self, key: K, load: F, newer_than: Option<u64>)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Loaded<V>, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        if !self.shared.flights.is_running(&key) && self.shared.backoff_left(&key).is_none() {
            drop(self.start_load(key, load, newer_than));
        }
    }

    /// The value for `key` if one is held fresh in L1; never loads and never
    /// asks L2.
    pub fn get(&self, key: &K) -> Option<Cached<V>> {
        let now = self.shared.clock.now();
        self.shared
            .l1
            .peek(key, |slot, _| {
                slot.is_fresh(now)
                    .then(|| slot.cached(Freshness::Fresh, Source::L1))
                    .flatten()
            })
            .flatten()
    }

    /// Stores `value` as freshly loaded, in L1 and L2.
    ///
    /// A load of `key` running now still answers its waiters, but its
    /// result is kept out of both tiers: the inserted value is newer.
    pub async fn insert(&self, key: K, value: V) {
        let sh = &*self.shared;
        sh.flights.invalidate(&key);
        let slot = sh.new_slot(Loaded::Value(value), Duration::ZERO);
        sh.put_l1(&key, slot.clone());
        sh.put_l2(&key, &slot).await;
    }

    /// Drops `key` from L1 and L2, and tells the other replicas to drop
    /// their L1 copies (when a backplane is on). A load running for `key`
    /// still answers its waiters, but its result is kept out of both tiers.
    ///
    /// When Redis cannot be reached (down, or its breaker open), the L2
    /// delete and the message are kept and sent again once Redis answers
    /// (the next invalidation or L1 miss that finds it back starts the
    /// re-send): up to 1,024 keys one by one, past that one invalidate-all
    /// message. [`stats`](Self::stats) counts what waits.
    pub async fn invalidate(&self, key: &K) {
        let sh = &*self.shared;
        sh.flights.invalidate(key);
        sh.l1.invalidate(key);
        if let Some(l2) = &sh.l2 {
            let sent = l2.delete(key).await
                && (sh.keys.is_none()
                    || l2
                        .publish(crate::l2::message::key_message(
                            sh.replica_id,
                            &l2.key_bytes(key),
                        ))
                        .await);
            if sent {
                self.resend_pending();
            } else {
                sh.pending.add(key.clone());
            }
        }
    }

    /// Starts sending the invalidations that could not reach Redis, on a
    /// task of the cache's (one at a time), if any wait.
    pub(crate) fn resend_pending(&self) {
        // `start` reads the waiting flag first: one atomic load when nothing waits.
        if let Some(batch) = self.shared.pending.start() {
            let shared = self.shared.clone();
            let task = tokio::spawn(async move {
                let unsent = shared.send_pending(batch).await;
                shared.pending.finish(unsent);
            });
            self.guard.track(task.abort_handle());
        }
    }

    /// Drops every L1 entry of this replica and, with a backplane, of the
    /// others (L2 entries end with their Redis expiry, or are overwritten
    /// by the next load). Loads running now still answer their waiters, but
    /// their results are kept out of both tiers.
    pub async fn invalidate_all(&self) {
        let sh = &*self.shared;
        sh.flights.invalidate_all();
        sh.l1.invalidate_all();
        if let (Some(l2), Some(_)) = (&sh.l2, &sh.keys) {
            if l2
                .publish(crate::l2::message::all_message(sh.replica_id))
                .await
            {
                self.resend_pending();
            } else {
                sh.pending.add_all();
            }
        }
    }

    /// A snapshot of the cache's counters (and of its L2's).
    pub fn stats(&self) -> TieredStats {
        let sh = &*self.shared;
        sh.stats.snapshot(
            sh.l1.len(),
            sh.l1.stats().hits,
            sh.backoff.len(),
            sh.l2.as_ref().map(|l2| l2.stats()),
            sh.subscribed.load(Ordering::Relaxed),
            sh.pending.len(),
        )
    }
}

/// What L1 holds for a key.
enum InL1<V> {
    /// A fresh value (`None`: known absent), and, when early refresh is
    /// due, the write time of the value to refresh.
    Fresh(Option<Cached<V>>, Option<u64>),
    /// A stale entry, or nothing.
    NotFresh(Option<Slot<V>>),
}

impl<K, V> Shared<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The hit path: a fresh value is cloned under L1's read lock; a stale
    /// entry hands out its slot.
    fn look_in_l1(&self, key: &K) -> InL1<V> {
        let found = self.l1.peek(key, |slot, freshness| {
            if freshness != EntryFreshness::Fresh {
                return InL1::NotFresh(Some(slot.clone()));
            }
            let due = self.cfg.early_refresh > 0.0
                && refresh::due(self.cfg.early_refresh, slot, self.clock.now(), &self.rng);
            InL1::Fresh(
                slot.cached(Freshness::Fresh, Source::L1),
                due.then_some(slot.written_at_ms),
            )
        });
        found.unwrap_or(InL1::NotFresh(None))
    }

    /// A slot for a value loaded now (its TTL capped and jittered).
    pub(crate) fn new_slot(&self, loaded: Loaded<V>, load_time: Duration) -> Slot<V> {
        let now = slot::Now::of(&*self.clock);
        let (value, ttl, keep) = match loaded {
            Loaded::Value(v) => (Some(v), self.jittered(self.cfg.ttl), self.cfg.keep_stale()),
            Loaded::ValueWithTtl(v, ttl) => (
                Some(v),
                self.jittered(ttl.min(self.cfg.ttl)),
                self.cfg.keep_stale(),
            ),
            Loaded::ValueUntil(v, until) => {
                let ttl = self.jittered(until.min(self.cfg.ttl));
                (
                    Some(v),
                    ttl,
                    until.saturating_sub(ttl).min(self.cfg.keep_stale()),
                )
            }
            Loaded::Absent => (None, self.cfg.negative_ttl, Duration::ZERO),
        };
        Slot::new(value, now, ttl, keep, load_time)
    }

    /// Puts `slot` in L1, trusted there for at most `l1_ttl`.
    pub(crate) fn put_l1(&self, key: &K, slot: Slot<V>) {
        self.put_l1_at(key, slot, self.clock.now());
    }

    /// [`put_l1`](Self::put_l1) with the time already read.
    pub(crate) fn put_l1_at(&self, key: &K, slot: Slot<V>, now: Instant) {
        let expiry = crate::Expiry {
            fresh_until: slot
                .fresh_until
                .min(levee_core::duration::instant_after(now, self.cfg.l1_ttl)),
            stale_until: slot.stale_until,
        };
        if let (Some(keys), Some(l2)) = (&self.keys, &self.l2) {
            keys.insert(l2.key_bytes(key).into_boxed_slice(), key.clone());
        }
        self.l1.insert_with_expiry(key.clone(), slot, expiry);
    }

    /// `ttl` shortened by a random fraction up to `ttl_jitter`.
    fn jittered(&self, ttl: Duration) -> Duration {
        if self.cfg.ttl_jitter == 0.0 {
            return ttl;
        }
        ttl.mul_f64(1.0 - self.cfg.ttl_jitter * self.rng.next_f64())
    }

    fn backoff_left(&self, key: &K) -> Option<Duration> {
        self.backoff.left(key, || self.clock.now())
    }
}
