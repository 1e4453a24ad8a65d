//! What a pipeline tells: a `tracing` span per call, `metrics` counters
//! and a load-latency histogram (feature `metrics`), and [`LeveeStats`].
//!
//! Names and labels are listed in the repository's `docs/metrics.md`.

use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};

use levee_breaker::BreakerStats;
use levee_cache::{Cached, Freshness, Source, TieredStats};

use super::Error;

/// The span of one call: the pipeline, a hash of the key (never the key:
/// it may be a token), and, once known, where the answer came from.
pub(super) fn span<K: Hash>(pipeline: &str, key: &K) -> tracing::Span {
    let span = tracing::debug_span!(
        "levee",
        pipeline,
        key_hash = tracing::field::Empty,
        source = tracing::field::Empty,
        freshness = tracing::field::Empty,
        error = tracing::field::Empty,
    );
    if !span.is_disabled() {
        // A fixed seed: the same key hashes alike across calls and replicas.
        let h = foldhash::fast::FixedState::with_seed(0x1e7ee).hash_one(key);
        span.record("key_hash", format_args!("{h:016x}"));
    }
    span
}

/// Records a fresh L1 hit (the hot path: no match on the result).
#[inline]
pub(super) fn hit(span: &tracing::Span, metrics: &Metrics) {
    metrics.call(0);
    if !span.is_disabled() {
        span.record("source", "hit_l1");
    }
}

/// Records the call's outcome on its span and in the metrics; returns it.
pub(super) fn finish<V, E>(
    span: &tracing::Span,
    metrics: &Metrics,
    result: Result<Option<Cached<V>>, Error<E>>,
) -> Result<Option<Cached<V>>, Error<E>> {
    let (label, index) = match &result {
        Ok(Some(c)) => match (&c.freshness, c.source) {
            (_, Source::Fallback) => ("fallback", 4),
            (Freshness::Stale { .. }, _) => ("stale", 3),
            (_, Source::L1) => ("hit_l1", 0),
            (_, Source::L2) => ("hit_l2", 1),
            _ => ("loaded", 2),
        },
        Ok(None) => ("absent", 5),
        Err(_) => ("error", 6),
    };
    metrics.call(index);
    if !span.is_disabled() {
        span.record("source", label);
        match &result {
            Ok(Some(Cached {
                freshness: Freshness::Stale { tier, age },
                ..
            })) => {
                span.record("freshness", format_args!("stale tier={tier} age={age:?}"));
            }
            Err(e) => {
                span.record("error", format_args!("{e}"));
            }
            _ => {}
        }
    }
    result
}

/// `metrics` handles, registered once at build time so that a call costs
/// no label allocation.
pub(crate) struct Metrics {
    #[cfg(feature = "metrics")]
    /// By result, in the order `finish` indexes them.
    calls: [metrics::Counter; 7],
    #[cfg(feature = "metrics")]
    load_seconds: [metrics::Histogram; 2],
    #[cfg(feature = "metrics")]
    limit_decisions: [metrics::Counter; 2],
}

impl Metrics {
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn new(pipeline: &str) -> Self {
        #[cfg(feature = "metrics")]
        {
            let p = pipeline.to_string();
            let call = |r: &'static str| metrics::counter!("levee_pipeline_calls_total", "pipeline" => p.clone(), "result" => r);
            let hist = |o: &'static str| metrics::histogram!("levee_pipeline_load_seconds", "pipeline" => p.clone(), "outcome" => o);
            Metrics {
                calls: [
                    call("hit_l1"),
                    call("hit_l2"),
                    call("loaded"),
                    call("stale"),
                    call("fallback"),
                    call("absent"),
                    call("error"),
                ],
                load_seconds: [hist("ok"), hist("error")],
                limit_decisions: [
                    metrics::counter!("levee_limit_decisions_total", "pipeline" => p.clone(), "decision" => "allowed"),
                    metrics::counter!("levee_limit_decisions_total", "pipeline" => p.clone(), "decision" => "denied"),
                ],
            }
        }
        #[cfg(not(feature = "metrics"))]
        Metrics {}
    }

    /// One call, by its result's index in `calls`.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    fn call(&self, index: usize) {
        #[cfg(feature = "metrics")]
        if let Some(c) = self.calls.get(index) {
            c.increment(1);
        }
    }

    /// One decision of the pipeline's rate limiter.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn limit_decision(&self, allowed: bool) {
        #[cfg(feature = "metrics")]
        self.limit_decisions[usize::from(!allowed)].increment(1);
    }

    /// A load that began at `start` (a reading of `clock`) ended.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn load_finished(
        &self,
        clock: &dyn levee_core::Clock,
        start: std::time::Instant,
        ok: bool,
    ) {
        #[cfg(feature = "metrics")]
        self.load_seconds[usize::from(!ok)]
            .record(clock.now().saturating_duration_since(start).as_secs_f64());
    }
}

/// A snapshot of a pipeline's counters and of its parts'.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct LeveeStats {
    /// Loads started below the cache (one per cache miss or refresh).
    pub loads: u64,
    /// Attempts made (calls to the loader, or refused by the breaker).
    pub attempts: u64,
    /// Retries made.
    pub retries: u64,
    /// Retries the budget refused.
    pub budget_exhausted: u64,
    /// Loads refused by the upstream quota or the rate limiter.
    pub rate_limited: u64,
    /// Attempts refused by an open breaker.
    pub circuit_open: u64,
    /// Loads refused by a full bulkhead.
    pub bulkhead_full: u64,
    /// Calls answered by (or handed to) the fallback.
    pub fallbacks: u64,
    /// The cache's own counters, when there is one.
    pub cache: Option<TieredStats>,
    /// The breaker's, when there is one for all calls.
    pub breaker: Option<BreakerStats>,
    /// Loads in the bulkhead now, when there is one.
    pub in_flight: Option<usize>,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    loads: AtomicU64,
    attempts: AtomicU64,
    retries: AtomicU64,
    budget_exhausted: AtomicU64,
    rate_limited: AtomicU64,
    circuit_open: AtomicU64,
    bulkhead_full: AtomicU64,
    fallbacks: AtomicU64,
}

macro_rules! bump {
    ($($name:ident => $field:ident),* $(,)?) => {
        $(pub(crate) fn $name(&self) { self.$field.fetch_add(1, Ordering::Relaxed); })*
    };
}

impl Counters {
    bump! {
        load => loads,
        attempt => attempts,
        retry => retries,
        budget_exhausted => budget_exhausted,
        rate_limited => rate_limited,
        circuit_open => circuit_open,
        bulkhead_full => bulkhead_full,
        fallback => fallbacks,
    }

    pub(crate) fn snapshot(
        &self,
        cache: Option<TieredStats>,
        breaker: Option<BreakerStats>,
        in_flight: Option<usize>,
    ) -> LeveeStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LeveeStats {
            loads: get(&self.loads),
            attempts: get(&self.attempts),
            retries: get(&self.retries),
            budget_exhausted: get(&self.budget_exhausted),
            rate_limited: get(&self.rate_limited),
            circuit_open: get(&self.circuit_open),
            bulkhead_full: get(&self.bulkhead_full),
            fallbacks: get(&self.fallbacks),
            cache,
            breaker,
            in_flight,
        }
    }
}
