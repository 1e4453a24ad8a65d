//! What the tiered cache returns, and what a loader returns.

use std::sync::Arc;
use std::time::Duration;

/// A value with where it came from and how fresh it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Cached<V> {
    /// The value.
    pub value: V,
    /// Fresh, or stale and by how much.
    pub freshness: Freshness,
    /// Which layer answered.
    pub source: Source,
}

/// How fresh a returned value is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Freshness {
    /// Within its TTL.
    Fresh,
    /// Past its TTL by `age`, served under stale tier `tier`.
    Stale {
        /// The name of the stale tier whose window covers `age`.
        tier: Arc<str>,
        /// Time since the value stopped being fresh.
        age: Duration,
    },
}

impl Freshness {
    /// Whether the value is stale.
    pub fn is_stale(&self) -> bool {
        matches!(self, Freshness::Stale { .. })
    }
}

/// Which layer a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// The in-process memory cache.
    L1,
    /// The shared Redis cache.
    L2,
    /// A load that this call started or joined.
    Loader,
    /// A pipeline's fallback source (the `levee` facade), used when the
    /// load failed and no stale value could serve.
    Fallback,
}

/// What a loader returns.
#[derive(Debug, Clone, PartialEq)]
pub enum Loaded<V> {
    /// A value, fresh for the cache's TTL.
    Value(V),
    /// A value with its own TTL, capped by the cache's TTL; past it the
    /// value may still be served stale under the stale tiers.
    ValueWithTtl(V, Duration),
    /// A value that must not be served after the given time from now, not
    /// even stale (e.g. what a token's `exp` allows): fresh for that time
    /// capped by the cache's TTL, stale-servable only up to it. With
    /// `Duration::ZERO` (under a millisecond) the value answers the callers
    /// waiting on this load and is stored in neither tier; a value stored
    /// earlier stays (an HTTP response marked `no-store`).
    ValueUntil(V, Duration),
    /// Known absent: cached for the negative TTL.
    Absent,
}

impl<V> From<V> for Loaded<V> {
    fn from(v: V) -> Self {
        Loaded::Value(v)
    }
}
