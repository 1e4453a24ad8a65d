//! [`TieredCacheBuilder`].

use std::sync::Arc;
use std::time::Duration;

use levee_core::{SharedClock, SystemClock};

use super::{Shared, TaskGuard, TieredCache};
use crate::{ConfigError, MemoryCache};

/// Builds a [`TieredCache`].
///
/// ```
/// use std::time::Duration;
/// use levee_cache::TieredCache;
///
/// let cache = TieredCache::<String, String>::builder("userinfo")
///     .l1_capacity(10_000)
///     .ttl(Duration::from_secs(300))
///     .stale_while_revalidate(Duration::from_secs(30))
///     .stale_tiers([("secondary", Duration::from_secs(12 * 3600)), ("emergency", Duration::from_secs(48 * 3600))])
///     .failure_backoff(Duration::from_secs(10))
///     .build()?;
/// # Ok::<(), levee_cache::ConfigError>(())
/// ```
#[must_use]
pub struct TieredCacheBuilder<K, V> {
    name: Arc<str>,
    l1_capacity: u64,
    ttl: Duration,
    swr: Duration,
    tiers: Vec<(Arc<str>, Duration)>,
    failure_backoff: Duration,
    negative_ttl: Duration,
    hard_timeout: Option<Duration>,
    soft_timeout: Option<Duration>,
    ttl_jitter: f64,
    clock: Option<SharedClock>,
    _types: std::marker::PhantomData<fn() -> (K, V)>,
}

impl<K, V> std::fmt::Debug for TieredCacheBuilder<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredCacheBuilder")
            .field("name", &self.name)
            .field("ttl", &self.ttl)
            .field("stale_while_revalidate", &self.swr)
            .field("stale_tiers", &self.tiers)
            .finish_non_exhaustive()
    }
}

impl<K, V> TieredCacheBuilder<K, V>
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub(crate) fn new(name: &str) -> Self {
        TieredCacheBuilder {
            name: Arc::from(name),
            l1_capacity: 10_000,
            ttl: Duration::from_secs(60),
            swr: Duration::ZERO,
            tiers: Vec::new(),
            failure_backoff: Duration::from_secs(5),
            negative_ttl: Duration::from_secs(30),
            hard_timeout: None,
            soft_timeout: None,
            ttl_jitter: 0.0,
            clock: None,
            _types: std::marker::PhantomData,
        }
    }

    /// Entries held in memory. Default: 10,000.
    pub fn l1_capacity(mut self, entries: u64) -> Self {
        self.l1_capacity = entries;
        self
    }

    /// How long a loaded value is fresh. Default: 60 s.
    pub fn ttl(mut self, d: Duration) -> Self {
        self.ttl = d;
        self
    }

    /// For this long after expiry, return the stale value at once and
    /// refresh it in the background (one refresh per key). Default: 0.
    pub fn stale_while_revalidate(mut self, d: Duration) -> Self {
        self.swr = d;
        self
    }

    /// Stale tiers, each the longest staleness (time past expiry) it serves
    /// when a load fails, in increasing order. Default: none.
    pub fn stale_tiers<I, S>(mut self, tiers: I) -> Self
    where
        I: IntoIterator<Item = (S, Duration)>,
        S: Into<String>,
    {
        self.tiers = tiers
            .into_iter()
            .map(|(s, d)| (Arc::from(s.into()), d))
            .collect();
        self
    }

    /// After a failed load, do not call the loader for that key again for
    /// this long (stale values are served meanwhile). Default: 5 s.
    pub fn failure_backoff(mut self, d: Duration) -> Self {
        self.failure_backoff = d;
        self
    }

    /// How long a loader's `Loaded::Absent` is cached. Default: 30 s.
    pub fn negative_ttl(mut self, d: Duration) -> Self {
        self.negative_ttl = d;
        self
    }

    /// Callers give up waiting for a load after this long (the load goes on
    /// and fills the cache when it ends). Default: wait for it.
    pub fn hard_timeout(mut self, d: Duration) -> Self {
        self.hard_timeout = Some(d);
        self
    }

    /// When a stale value is held: callers wait this long for a load, then
    /// get the stale value (if its age fits a tier) while the load goes on
    /// in the background and fills the cache. Default: wait for the load.
    pub fn soft_timeout(mut self, d: Duration) -> Self {
        self.soft_timeout = Some(d);
        self
    }

    /// Shortens each loaded value's TTL by a random fraction up to
    /// `fraction` (0..1), so replicas and keys loaded together do not expire
    /// together. Default: 0 (no jitter).
    pub fn ttl_jitter(mut self, fraction: f64) -> Self {
        self.ttl_jitter = fraction;
        self
    }

    /// The time source. Default: [`SystemClock`].
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Checks the settings and builds the cache.
    pub fn build(self) -> Result<TieredCache<K, V>, ConfigError> {
        if self.ttl.is_zero() {
            return Err(ConfigError::new(
                "ttl",
                "a TTL of 0 makes every value stale at once",
            ));
        }
        if self.tiers.windows(2).any(|w| w[0].1 >= w[1].1) {
            return Err(ConfigError::new(
                "stale_tiers",
                "tiers must be in increasing order of staleness",
            ));
        }
        if self.tiers.iter().any(|(n, d)| n.is_empty() || d.is_zero()) {
            return Err(ConfigError::new(
                "stale_tiers",
                "each tier needs a name and a staleness above zero",
            ));
        }
        if !(0.0..1.0).contains(&self.ttl_jitter) {
            return Err(ConfigError::new(
                "ttl_jitter",
                "must be in [0, 1): the fraction of the TTL to take off at most",
            ));
        }
        if let (Some(soft), Some(hard)) = (self.soft_timeout, self.hard_timeout) {
            if soft >= hard {
                return Err(ConfigError::new(
                    "soft_timeout",
                    "must be shorter than hard_timeout",
                ));
            }
        }
        let clock = self.clock.unwrap_or_else(SystemClock::shared);
        let keep = self
            .tiers
            .last()
            .map_or(Duration::ZERO, |t| t.1)
            .max(self.swr);
        let l1 = MemoryCache::builder()
            .max_capacity(self.l1_capacity)
            .stale_retention(keep)
            .clock(clock.clone())
            .build()?;
        Ok(TieredCache {
            shared: Arc::new(Shared {
                name: self.name,
                l1,
                clock,
                ttl: self.ttl,
                swr: self.swr,
                tiers: self.tiers,
                failure_backoff: self.failure_backoff,
                negative_ttl: self.negative_ttl,
                hard_timeout: self.hard_timeout,
                soft_timeout: self.soft_timeout,
                ttl_jitter: self.ttl_jitter,
                flights: super::flight::Flights::new(),
                backoff: parking_lot::Mutex::new(std::collections::HashMap::default()),
            }),
            guard: Arc::new(TaskGuard::default()),
        })
    }
}
