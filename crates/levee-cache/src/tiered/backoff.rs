//! The failure backoff: after a key's load fails, the loader is not called
//! again for that key until `failure_backoff` has passed.
//!
//! The records live in a bounded [`MemoryCache`] (sharded, S3-FIFO, expiring
//! with the backoff), not in a map: keys whose loads fail are often chosen
//! by an attacker (invalid bearer tokens never load), and each would
//! otherwise stay for ever. At most `capacity` records are kept; when more
//! keys fail at once, the least useful records are evicted, and an evicted
//! key is merely loaded again sooner.

use std::hash::Hash;
use std::time::{Duration, Instant};

use levee_core::SharedClock;

use crate::{ConfigError, MemoryCache};

/// The most records kept when the L1 is larger (or bounded by weight).
const MAX_RECORDS: u64 = 65_536;

pub(crate) struct Backoff<K> {
    period: Duration,
    /// `None` when the period is zero: nothing to remember.
    records: Option<MemoryCache<K, Instant>>,
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> Backoff<K> {
    /// Records for up to `l1_capacity` keys (at most [`MAX_RECORDS`]).
    pub(crate) fn new(
        period: Duration,
        l1_capacity: u64,
        clock: Option<&SharedClock>,
    ) -> Result<Self, ConfigError> {
        if period.is_zero() {
            return Ok(Backoff {
                period,
                records: None,
            });
        }
        let mut b = MemoryCache::builder()
            .max_capacity(l1_capacity.clamp(1, MAX_RECORDS))
            .time_to_live(period);
        if let Some(clock) = clock {
            b = b.clock(clock.clone());
        }
        Ok(Backoff {
            period,
            records: Some(b.build()?),
        })
    }

    /// A load of `key` failed at `now`.
    pub(crate) fn start(&self, key: &K, now: Instant) {
        if let Some(r) = &self.records {
            r.insert(
                key.clone(),
                levee_core::duration::instant_after(now, self.period),
            );
        }
    }

    /// A load of `key` succeeded.
    pub(crate) fn clear(&self, key: &K) {
        if let Some(r) = &self.records {
            r.invalidate(key);
        }
    }

    /// Time left in `key`'s backoff, if any; `now` is read only when the
    /// key has a record.
    pub(crate) fn left(&self, key: &K, now: impl FnOnce() -> Instant) -> Option<Duration> {
        let until = self.records.as_ref()?.get(key)?;
        until.checked_duration_since(now()).filter(|d| !d.is_zero())
    }

    /// Records held now (ended ones not yet reclaimed included).
    pub(crate) fn len(&self) -> usize {
        self.records.as_ref().map_or(0, MemoryCache::len)
    }
}
