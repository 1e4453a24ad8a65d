//! [`TieredCacheBuilder`].

use std::sync::Arc;
use std::time::Duration;

use levee_core::{SharedClock, SystemClock};

#[cfg(feature = "redis")]
use levee_redis::RedisClient;

use super::refresh::Rng;
use super::slot::Slot;
use super::{KeyIndex, Settings, Shared, TaskGuard, TieredCache};
use crate::l2::L2Port;
use crate::{ConfigError, EvictionCause, MemoryCache, MemoryCacheBuilder};

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
    l1: Option<MemoryCacheBuilder<K, V>>,
    /// The settings the cache runs with (`l1_ttl` is filled in at `build`).
    cfg: Settings,
    l1_ttl: Option<Duration>,
    clock: Option<SharedClock>,
    seed: Option<u64>,
    prefix: String,
    schema: u32,
    backplane: bool,
    #[cfg(feature = "redis")]
    codec: crate::Codec,
    #[cfg(feature = "redis")]
    l2: Option<L2Factory<K, V>>,
    _types: std::marker::PhantomData<fn() -> (K, V)>,
}

/// Binds an L2 to the cache's key layout once every setting is known.
#[cfg(feature = "redis")]
type L2Factory<K, V> = Box<
    dyn FnOnce(crate::Codec, &str, &str, u32) -> (Arc<dyn L2Port<K, V>>, String, RedisClient)
        + Send,
>;

impl<K, V> std::fmt::Debug for TieredCacheBuilder<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredCacheBuilder")
            .field("name", &self.name)
            .field("ttl", &self.cfg.ttl)
            .field("stale_while_revalidate", &self.cfg.swr)
            .field("stale_tiers", &self.cfg.tiers)
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
            l1: None,
            cfg: Settings {
                ttl: Duration::from_secs(60),
                l1_ttl: Duration::ZERO,
                swr: Duration::ZERO,
                tiers: Vec::new(),
                failure_backoff: Duration::from_secs(5),
                negative_ttl: Duration::from_secs(30),
                hard_timeout: None,
                soft_timeout: None,
                ttl_jitter: 0.0,
                early_refresh: 0.0,
                load_lock: None,
                load_lock_poll: Duration::from_millis(20),
            },
            l1_ttl: None,
            clock: None,
            seed: None,
            prefix: "levee".to_string(),
            schema: 1,
            backplane: true,
            #[cfg(feature = "redis")]
            codec: crate::Codec::default(),
            #[cfg(feature = "redis")]
            l2: None,
            _types: std::marker::PhantomData,
        }
    }

    /// Entries held in memory: a shortcut for
    /// `l1(MemoryCache::builder().max_capacity(entries))`. Default: 10,000.
    pub fn l1_capacity(self, entries: u64) -> Self {
        self.l1(MemoryCache::builder().max_capacity(entries))
    }

    /// The L1 memory cache's bound (`max_capacity`, or `weigher` with
    /// `max_weight`; the weigher sees each value), eviction policy, shards
    /// and eviction listener (called for entries that hold a value).
    /// Leave out `time_to_live` and `stale_retention`: the tiered cache sets
    /// each entry's expiry from `ttl`, `l1_ttl` and the stale tiers
    /// (`build` says so if they are set). Default: 10,000 entries, S3-FIFO.
    ///
    /// ```
    /// use levee_cache::{MemoryCache, TieredCache};
    ///
    /// let cache = TieredCache::<String, Vec<u8>>::builder("blobs")
    ///     .l1(MemoryCache::builder().weigher(|_k, v: &Vec<u8>| v.len() as u32).max_weight(64 << 20))
    ///     .build()?;
    /// # Ok::<(), levee_cache::ConfigError>(())
    /// ```
    pub fn l1(mut self, l1: MemoryCacheBuilder<K, V>) -> Self {
        self.l1 = Some(l1);
        self
    }

    /// How long a loaded value is fresh. Default: 60 s.
    pub fn ttl(mut self, d: Duration) -> Self {
        self.cfg.ttl = d;
        self
    }

    /// For this long after expiry, return the stale value at once and
    /// refresh it in the background (one refresh per key). Default: 0.
    pub fn stale_while_revalidate(mut self, d: Duration) -> Self {
        self.cfg.swr = d;
        self
    }

    /// Stale tiers, each the longest staleness (time past expiry) it serves
    /// when a load fails, in increasing order. Default: none.
    pub fn stale_tiers<I, S>(mut self, tiers: I) -> Self
    where
        I: IntoIterator<Item = (S, Duration)>,
        S: Into<String>,
    {
        self.cfg.tiers = tiers
            .into_iter()
            .map(|(s, d)| (Arc::from(s.into()), d))
            .collect();
        self
    }

    /// After a failed load, do not call the loader for that key again for
    /// this long (stale values are served meanwhile). Default: 5 s. A
    /// loader that panics starts no backoff (a panic is a bug, not an
    /// upstream failure). The records are bounded: at most the L1's
    /// capacity (and at most 65,536) keys are held back at once; beyond
    /// that the least recently failed keys are loaded again sooner.
    pub fn failure_backoff(mut self, d: Duration) -> Self {
        self.cfg.failure_backoff = d;
        self
    }

    /// How long a loader's `Loaded::Absent` is cached. Default: 30 s.
    pub fn negative_ttl(mut self, d: Duration) -> Self {
        self.cfg.negative_ttl = d;
        self
    }

    /// Callers give up waiting for a load after this long (the load goes on
    /// and fills the cache when it ends). The wait starts after the first
    /// caller's L2 read, which the L2's own timeout bounds. Default: wait
    /// for it.
    pub fn hard_timeout(mut self, d: Duration) -> Self {
        self.cfg.hard_timeout = Some(d);
        self
    }

    /// When a stale value is held: callers wait this long for a load, then
    /// get the stale value (if its age fits a tier) while the load goes on
    /// in the background and fills the cache. Default: wait for the load.
    pub fn soft_timeout(mut self, d: Duration) -> Self {
        self.cfg.soft_timeout = Some(d);
        self
    }

    /// Shortens each loaded value's TTL by a random fraction up to
    /// `fraction` (0..1), so replicas and keys loaded together do not expire
    /// together. Default: 0 (no jitter).
    pub fn ttl_jitter(mut self, fraction: f64) -> Self {
        self.cfg.ttl_jitter = fraction;
        self
    }

    /// How long an L1 copy is trusted before L2 is asked again, at most
    /// `ttl`. A shorter `l1_ttl` bounds how long a replica that missed an
    /// invalidation (backplane down) serves the old value. While L2 cannot
    /// be reached the L1 copy is served for the value's whole `ttl`.
    /// Default: `ttl`.
    pub fn l1_ttl(mut self, d: Duration) -> Self {
        self.l1_ttl = Some(d);
        self
    }

    /// Early refresh (XFetch) with weight `beta` (1.0 is the usual choice,
    /// larger refreshes earlier): a read of a fresh value starts a
    /// background refresh with a probability that rises as expiry nears,
    /// scaled by how long the value took to load, so a hot key is reloaded
    /// once before it expires instead of by every caller after. Default: 0
    /// (off).
    pub fn early_refresh(mut self, beta: f64) -> Self {
        self.cfg.early_refresh = beta;
        self
    }

    /// Seeds the random source of early refresh and TTL jitter, for
    /// repeatable tests. Default: a random seed.
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// With an L2: before loading a missing key, take a lock on Redis
    /// (`SET NX PX`) so that one replica loads while the others watch L2
    /// for its value, for at most `wait` (then they load themselves; the
    /// lock also expires after `wait`). Default: off (each replica loads).
    pub fn load_lock(mut self, wait: Duration) -> Self {
        self.cfg.load_lock = Some(wait);
        self
    }

    /// How often a replica waiting on another's load (see
    /// [`load_lock`](Self::load_lock)) looks at L2 for its value, in real
    /// time (the lock's expiry on Redis is real time too). Shorter finds
    /// the value sooner for one more Redis read each time. Default: 20 ms.
    pub fn load_lock_poll(mut self, every: Duration) -> Self {
        self.cfg.load_lock_poll = every;
        self
    }

    /// The first part of every Redis key and channel of this cache:
    /// `{prefix}:{name}:v{schema}:{key}`. Default: `levee`.
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_string();
        self
    }

    /// The schema version in Redis keys: raise it when `V` changes shape,
    /// so old values are never read as new ones. Default: 1.
    pub fn schema_version(mut self, v: u32) -> Self {
        self.schema = v;
        self
    }

    /// With an L2: publish invalidations on Redis and drop the keys other
    /// replicas invalidate (needs a tokio runtime at `build`). Default: on.
    pub fn backplane(mut self, on: bool) -> Self {
        self.backplane = on;
        self
    }

    /// The time source. Default: [`SystemClock`].
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Checks the settings and builds the cache.
    pub fn build(mut self) -> Result<TieredCache<K, V>, ConfigError> {
        self.validate()?;
        let (l2, backplane) = self.bind_l2()?;
        let keys = backplane.as_ref().map(|_| Arc::new(KeyIndex::default()));
        let injected = self.clock.is_some();
        let clock = self.clock.unwrap_or_else(SystemClock::shared);
        let mut cfg = self.cfg;
        cfg.l1_ttl = self.l1_ttl.unwrap_or(cfg.ttl);
        let keep = cfg.keep_stale();
        let l1 = l1_cache(self.l1, keep, injected.then_some(&clock), &l2, &keys)?;
        let backoff = super::backoff::Backoff::new(
            cfg.failure_backoff,
            l1.capacity(),
            injected.then_some(&clock),
        )?;
        let shared = Arc::new(Shared {
            name: self.name.clone(),
            l1,
            clock,
            cfg,
            flights: super::flight::Flights::new(),
            backoff,
            rng: Rng::new(self.seed),
            l2,
            keys,
            replica_id: rand::random(),
            stats: super::stats::Counters::new(self.name),
            subscribed: std::sync::atomic::AtomicBool::new(false),
            pending: super::pending::Pending::new(),
        });
        let guard = Arc::new(TaskGuard::default());
        if let Some(backplane) = backplane {
            start_backplane(&shared, &guard, backplane)?;
        }
        Ok(TieredCache { shared, guard })
    }

    /// The L2 bound to this cache's key layout, and where its backplane
    /// listener is to run (when it is on).
    #[cfg(feature = "redis")]
    fn bind_l2(&mut self) -> Result<BoundL2<K, V>, ConfigError> {
        let Some(bind) = self.l2.take() else {
            return Ok((None, None));
        };
        let (port, channel, client) = bind(self.codec, &self.prefix, &self.name, self.schema);
        let backplane = match (self.backplane, tokio::runtime::Handle::try_current()) {
            (false, _) => None,
            (true, Ok(rt)) => Some((rt, channel, client)),
            (true, Err(_)) => {
                return Err(ConfigError::new(
                    "backplane",
                    "the backplane listener needs a tokio runtime: build the cache inside one, or turn it off with backplane(false)",
                ));
            }
        };
        Ok((Some(port), backplane))
    }

    #[cfg(not(feature = "redis"))]
    fn bind_l2(&mut self) -> Result<BoundL2<K, V>, ConfigError> {
        Ok((None, None))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let err = |setting, reason: &str| Err(ConfigError::new(setting, reason));
        if self.cfg.ttl.is_zero() {
            return err("ttl", "a TTL of 0 makes every value stale at once");
        }
        if self.l1_ttl.is_some_and(|d| d.is_zero() || d > self.cfg.ttl) {
            return err("l1_ttl", "must be above zero and at most `ttl`");
        }
        if self.cfg.tiers.windows(2).any(|w| w[0].1 >= w[1].1) {
            return err(
                "stale_tiers",
                "tiers must be in increasing order of staleness",
            );
        }
        if self
            .cfg
            .tiers
            .iter()
            .any(|(n, d)| n.is_empty() || d.is_zero())
        {
            return err(
                "stale_tiers",
                "each tier needs a name and a staleness above zero",
            );
        }
        if !(0.0..1.0).contains(&self.cfg.ttl_jitter) {
            return err(
                "ttl_jitter",
                "must be in [0, 1): the fraction of the TTL to take off at most",
            );
        }
        if !(self.cfg.early_refresh.is_finite() && self.cfg.early_refresh >= 0.0) {
            return err(
                "early_refresh",
                "beta must be a finite number >= 0 (1.0 is usual; 0 turns it off)",
            );
        }
        if self.cfg.load_lock.is_some_and(|d| d.is_zero()) {
            return err("load_lock", "the wait must be above zero");
        }
        if self.cfg.load_lock_poll.is_zero() {
            return err(
                "load_lock_poll",
                "a zero interval would read L2 in a busy loop; 1 ms is the least",
            );
        }
        if self.prefix.is_empty() || self.name.is_empty() {
            return err(
                "prefix",
                "the prefix and the cache name must not be empty (they start every Redis key)",
            );
        }
        if let (Some(soft), Some(hard)) = (self.cfg.soft_timeout, self.cfg.hard_timeout)
            && soft >= hard
        {
            return err("soft_timeout", "must be shorter than hard_timeout");
        }
        Ok(())
    }
}

#[cfg(feature = "redis")]
impl<K, V> TieredCacheBuilder<K, V>
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + levee_core::RedisKey + 'static,
    V: Clone + Send + Sync + serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    /// Shares values with other replicas through `l2` (Redis), under
    /// `{prefix}:{name}:v{schema}:{key}`. Needs `K: RedisKey` (use
    /// [`KeyHasher`](levee_core::KeyHasher) keys for secrets) and serde
    /// for `V`. Default: no L2.
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn l2(mut self, l2: crate::RedisL2) -> Self {
        self.l2 = Some(Box::new(move |codec, prefix, name, schema| {
            let client = l2.client().clone();
            let bound = crate::l2::Bound::new(l2, codec, prefix, name, schema);
            let channel = bound.channel().to_string();
            (Arc::new(bound) as Arc<dyn L2Port<K, V>>, channel, client)
        }));
        self
    }

    /// How values are written to L2. Default: [`Codec::Json`](crate::Codec::Json).
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn codec(mut self, codec: crate::Codec) -> Self {
        self.codec = codec;
        self
    }
}

/// An L2 bound to a cache (if any), and its backplane (when on).
type BoundL2<K, V> = (Option<Arc<dyn L2Port<K, V>>>, Option<Backplane>);

/// Where a backplane listener runs: the runtime, the channel, the client
/// that subscribes.
#[cfg(feature = "redis")]
type Backplane = (tokio::runtime::Handle, String, RedisClient);
#[cfg(not(feature = "redis"))]
type Backplane = std::convert::Infallible;

/// Spawns the backplane listener; it holds the cache weakly and is ended
/// with it (through `guard`).
#[cfg(feature = "redis")]
fn start_backplane<K, V>(
    shared: &Arc<Shared<K, V>>,
    guard: &TaskGuard,
    (rt, channel, client): Backplane,
) -> Result<(), ConfigError>
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    let strong: Arc<dyn levee_redis::Subscriber> = shared.clone();
    let weak = Arc::downgrade(&strong);
    drop(strong);
    let listen = client.subscription(channel, weak).map_err(|e| {
        ConfigError::new(
            "backplane",
            format!("{e}; or turn it off with backplane(false)"),
        )
    })?;
    let task = rt.spawn(listen);
    guard.track(task.abort_handle());
    Ok(())
}

#[cfg(not(feature = "redis"))]
fn start_backplane<K, V>(
    _: &Arc<Shared<K, V>>,
    _: &TaskGuard,
    never: Backplane,
) -> Result<(), ConfigError> {
    match never {}
}

/// The L1 memory cache; with a backplane, it keeps the key index in step
/// with what it holds. Without an injected clock it keeps the memory
/// cache's own coarse clock, which is cheaper to read on every hit (an
/// entry may then read as fresh up to 4 ms past its end).
fn l1_cache<K, V>(
    l1: Option<MemoryCacheBuilder<K, V>>,
    keep: Duration,
    clock: Option<&SharedClock>,
    l2: &Option<Arc<dyn L2Port<K, V>>>,
    keys: &Option<Arc<KeyIndex<K>>>,
) -> Result<MemoryCache<K, Slot<V>>, ConfigError>
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    let l1 = l1.unwrap_or_else(|| MemoryCache::builder().max_capacity(10_000));
    let mut l1 = l1
        .wrap_values(|s: &Slot<V>| s.value.as_ref())?
        .stale_retention(keep);
    if let Some(clock) = clock {
        l1 = l1.clock(clock.clone());
    }
    if let (Some(l2), Some(keys)) = (l2, keys) {
        let (l2, keys) = (l2.clone(), keys.clone());
        let user = l1.take_listener();
        l1 = l1.eviction_listener(move |k, v, cause| {
            if cause != EvictionCause::Replaced {
                keys.remove(&*l2.key_bytes(k));
            }
            if let Some(user) = &user {
                user(k, v, cause);
            }
        });
    }
    l1.build()
}
