//! [`TieredStats`].

use crate::RedisL2Stats;
use crate::counted::Counted;

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
pub(crate) struct Counters {
    l2_hits: Counted,
    loads: Counted,
    load_failures: Counted,
    stale_served: Counted,
    early_refreshes: Counted,
    backplane_invalidations: Counted,
    backplane_resyncs: Counted,
}

impl Counters {
    pub(crate) fn new(cache: std::sync::Arc<str>) -> Self {
        let c = |result| {
            Counted::new(
                "levee_cache_requests_total",
                ("cache", &cache),
                ("result", result),
            )
        };
        Counters {
            l2_hits: c("hit_l2"),
            loads: c("miss"),
            load_failures: c("load_failed"),
            stale_served: c("stale"),
            early_refreshes: c("early_refresh"),
            backplane_invalidations: c("backplane_invalidation"),
            backplane_resyncs: c("backplane_resync"),
        }
    }

    /// Counts one event (never on the L1-hit path: hits are the memory
    /// cache's own count).
    fn bump(c: &Counted) {
        c.bump();
    }

    pub(crate) fn hit_l2(&self) {
        Self::bump(&self.l2_hits);
    }
    pub(crate) fn load(&self) {
        Self::bump(&self.loads);
    }
    pub(crate) fn load_failed(&self) {
        Self::bump(&self.load_failures);
    }
    pub(crate) fn stale(&self) {
        Self::bump(&self.stale_served);
    }
    pub(crate) fn early_refresh(&self) {
        Self::bump(&self.early_refreshes);
    }
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn backplane_invalidation(&self) {
        Self::bump(&self.backplane_invalidations);
    }
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn backplane_resync(&self) {
        Self::bump(&self.backplane_resyncs);
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
        TieredStats {
            l1_entries,
            l1_hits,
            l2_hits: self.l2_hits.get(),
            loads: self.loads.get(),
            load_failures: self.load_failures.get(),
            backoff_keys,
            stale_served: self.stale_served.get(),
            early_refreshes: self.early_refreshes.get(),
            backplane_invalidations: self.backplane_invalidations.get(),
            backplane_resyncs: self.backplane_resyncs.get(),
            backplane_subscribed,
            invalidations_pending,
            l2,
        }
    }
}
