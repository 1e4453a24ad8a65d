//! What L1 holds for a key: the value (or a cached absence) with the times
//! that decide its freshness and what early refresh needs to know.

use std::time::{Duration, Instant, SystemTime};

use levee_core::duration::instant_after;

use super::{Cached, Freshness, Source};

/// Milliseconds since the unix epoch (0 for times before it).
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).map_or(0, millis)
}

/// `d` in whole milliseconds, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// An L1 entry. The L1's own expiry may end sooner (`l1_ttl`); these times
/// are the value's. Held inline in L1 (not behind an `Arc`), so that a hit
/// reads the same memory as a plain memory-cache hit.
#[derive(Debug, Clone)]
pub(crate) struct Slot<V> {
    /// The value; `None`: known absent.
    pub(crate) value: Option<V>,
    /// The value is fresh until then.
    pub(crate) fresh_until: Instant,
    /// The value may be served as stale until then.
    pub(crate) stale_until: Instant,
    /// The same three times on the wall clock (unix ms), as stored on L2.
    pub(crate) written_at_ms: u64,
    pub(crate) fresh_until_ms: u64,
    pub(crate) stale_until_ms: u64,
    /// How long the load that produced it took (XFetch's delta).
    pub(crate) load_time: Duration,
    /// Read from L2 (rather than loaded by this replica).
    pub(crate) from_l2: bool,
}

/// A moment read from both clocks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    pub(crate) mono: Instant,
    pub(crate) wall_ms: u64,
}

impl Now {
    pub(crate) fn of(clock: &dyn levee_core::Clock) -> Self {
        Now {
            mono: clock.now(),
            wall_ms: unix_ms(clock.system_now()),
        }
    }

    /// The monotonic instant of wall time `ms`.
    fn instant_of(&self, ms: u64) -> Instant {
        if ms >= self.wall_ms {
            instant_after(self.mono, Duration::from_millis(ms - self.wall_ms))
        } else {
            self.mono
                .checked_sub(Duration::from_millis(self.wall_ms - ms))
                .unwrap_or(self.mono)
        }
    }
}

impl<V> Slot<V> {
    /// A value loaded at `now`, fresh for `ttl`, then kept `keep` as stale.
    pub(crate) fn new(
        value: Option<V>,
        now: Now,
        ttl: Duration,
        keep: Duration,
        load_time: Duration,
    ) -> Self {
        let fresh_until_ms = now.wall_ms.saturating_add(millis(ttl));
        Slot {
            value,
            fresh_until: instant_after(now.mono, ttl),
            stale_until: instant_after(now.mono, ttl.saturating_add(keep)),
            written_at_ms: now.wall_ms,
            fresh_until_ms,
            stale_until_ms: fresh_until_ms.saturating_add(millis(keep)),
            load_time,
            from_l2: false,
        }
    }

    /// A value read from L2, keeping the times it was stored with.
    pub(crate) fn from_wall(
        value: Option<V>,
        now: Now,
        [written_at_ms, fresh_until_ms, stale_until_ms]: [u64; 3],
        load_time: Duration,
    ) -> Self {
        Slot {
            value,
            fresh_until: now.instant_of(fresh_until_ms),
            stale_until: now.instant_of(stale_until_ms),
            written_at_ms,
            fresh_until_ms,
            stale_until_ms,
            load_time,
            from_l2: true,
        }
    }

    /// Whether `other` holds the same write of the value (same origin and
    /// write time).
    pub(crate) fn same_as(&self, other: &Slot<V>) -> bool {
        self.from_l2 == other.from_l2 && self.written_at_ms == other.written_at_ms
    }

    /// Whether the value is fresh at `now`.
    pub(crate) fn is_fresh(&self, now: Instant) -> bool {
        now < self.fresh_until
    }

    /// Time past its fresh end at `now` (zero while fresh).
    pub(crate) fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.fresh_until)
    }
}

impl<V: Clone> Slot<V> {
    /// What a caller gets: `None` for a cached absence.
    pub(crate) fn cached(&self, freshness: Freshness, source: Source) -> Option<Cached<V>> {
        self.value.clone().map(|value| Cached {
            value,
            freshness,
            source,
        })
    }
}
