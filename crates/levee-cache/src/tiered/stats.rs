//! [`TieredStats`].

use std::sync::atomic::{AtomicU64, Ordering};

use crate::RedisL2Stats;

/// A snapshot of a [`TieredCache`](super::TieredCache)'s counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TieredStats {
    /// Entries in L1 (stale and absent markers included).
    pub l1_entries: usize,
    /// Reads of L1 that found a fresh entry (the memory cache's own count,
    /// so that a hit costs no shared counter; reads made by loads included).
    pub l1_hits: u64,
    /// Fresh answers from L2 (promoted to L1).
    pub l2_hits: u64,
    /// Loads started (refreshes included).
    pub loads: u64,
    /// Loads that failed, panicked or were abandoned.
    pub load_failures: u64,
    /// Keys in their failure backoff (bounded: at most the L1's capacity,
    /// and at most 65,536; ended records not yet reclaimed included).
    pub backoff_keys: usize,
    /// Stale values served (stale-while-revalidate, soft timeout or a
    /// failed load).
    pub stale_served: u64,
    /// Early refreshes started (XFetch).
    pub early_refreshes: u64,
    /// L1 entries dropped because another replica invalidated them.
    pub backplane_invalidations: u64,
    /// Times the whole L1 was dropped after the backplane subscription came
    /// back from a gap.
    pub backplane_resyncs: u64,
    /// Whether the backplane subscription is up now.
    pub backplane_subscribed: bool,
    /// Invalidations that could not reach Redis and wait to be sent again
    /// (keys, plus one for an invalidate-all): sent once Redis answers.
    pub invalidations_pending: usize,
    /// The L2's counters, when there is one.
    pub l2: Option<RedisL2Stats>,
}

/// The counters of one cache; with the `metrics` feature each event is
/// also counted as `levee_cache_requests_total{cache, result}`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    cache: std::sync::Arc<str>,
    l2_hits: AtomicU64,
    loads: AtomicU64,
    load_failures: AtomicU64,
    stale_served: AtomicU64,
    early_refreshes: AtomicU64,
    backplane_invalidations: AtomicU64,
    backplane_resyncs: AtomicU64,
}

impl Counters {
    pub(crate) fn new(cache: std::sync::Arc<str>) -> Self {
        Counters {
            cache,
            ..Counters::default()
        }
    }

    /// Counts one event (never on the L1-hit path: hits are the memory
    /// cache's own count).
    fn bump(&self, c: &AtomicU64, result: &'static str) {
        c.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!("levee_cache_requests_total", "cache" => self.cache.to_string(), "result" => result)
            .increment(1);
        #[cfg(not(feature = "metrics"))]
        let _ = result;
    }

    pub(crate) fn hit_l2(&self) {
        self.bump(&self.l2_hits, "hit_l2");
    }
    pub(crate) fn load(&self) {
        self.bump(&self.loads, "miss");
    }
    pub(crate) fn load_failed(&self) {
        self.bump(&self.load_failures, "load_failed");
    }
    pub(crate) fn stale(&self) {
        self.bump(&self.stale_served, "stale");
    }
    pub(crate) fn early_refresh(&self) {
        self.bump(&self.early_refreshes, "early_refresh");
    }
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn backplane_invalidation(&self) {
        self.bump(&self.backplane_invalidations, "backplane_invalidation");
    }
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn backplane_resync(&self) {
        self.bump(&self.backplane_resyncs, "backplane_resync");
    }

    pub(crate) fn snapshot(
        &self,
        l1_entries: usize,
        l1_hits: u64,
        backoff_keys: usize,
        l2: Option<RedisL2Stats>,
        backplane_subscribed: bool,
        invalidations_pending: usize,
    ) -> TieredStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TieredStats {
            l1_entries,
            l1_hits,
            l2_hits: get(&self.l2_hits),
            loads: get(&self.loads),
            load_failures: get(&self.load_failures),
            backoff_keys,
            stale_served: get(&self.stale_served),
            early_refreshes: get(&self.early_refreshes),
            backplane_invalidations: get(&self.backplane_invalidations),
            backplane_resyncs: get(&self.backplane_resyncs),
            backplane_subscribed,
            invalidations_pending,
            l2,
        }
    }
}
