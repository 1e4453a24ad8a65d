//! [`UpstreamQuota`]: learn an upstream's own limits from its responses and
//! hold calls back until its reset, instead of spending requests that will
//! be refused.

mod builder;
mod headers;

use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use http::{HeaderMap, StatusCode};
use levee_core::SharedClock;
use levee_core::duration::nanos;

pub use builder::UpstreamQuotaBuilder;
pub use headers::{Learned, parse as parse_headers};

/// Whether a call to the upstream should go out now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "the upstream may be holding calls back: check before calling it"]
pub enum QuotaState {
    /// Nothing known holds calls back.
    Ready,
    /// The upstream said its quota is spent: wait this long.
    HoldBack {
        /// Time until the upstream's reset (or its `Retry-After`).
        retry_after: Duration,
    },
}

/// Learns per key (user, API key, endpoint) what an upstream allows from
/// the headers of its responses, and says when to hold calls back.
///
/// After a `429` (or a `503` with `Retry-After`) the hold lasts for the
/// `Retry-After`, else until the reset the headers give, else
/// `default_hold`. A response saying `remaining: 0` holds until its reset.
/// A response with requests remaining lifts the hold. No hold lasts longer
/// than `max_hold` (default 24 h), whatever a header says: a `Retry-After`
/// of 10^20 seconds, a reset in the year 9999 or a number too large for any
/// clock holds for `max_hold`, never for a wrapped-around shorter time. Cheap to clone:
/// clones share what they learned. Holds that ended are dropped as new ones
/// are recorded, so memory stays bounded by the keys currently held back.
///
/// ```
/// use std::time::Duration;
/// use http::{HeaderMap, StatusCode};
/// use levee_core::ManualClock;
/// use levee_limit::{QuotaState, UpstreamQuota};
///
/// let clock = ManualClock::new();
/// let quota = UpstreamQuota::<String>::builder().clock(clock.shared()).build();
/// let mut h = HeaderMap::new();
/// h.insert("retry-after", "12".parse().unwrap());
/// quota.observe(&"alice".to_string(), StatusCode::TOO_MANY_REQUESTS, &h);
/// assert_eq!(quota.check(&"alice".to_string()), QuotaState::HoldBack { retry_after: Duration::from_secs(12) });
/// clock.advance(Duration::from_secs(12));
/// assert_eq!(quota.check(&"alice".to_string()), QuotaState::Ready);
/// ```
pub struct UpstreamQuota<K> {
    inner: Arc<Inner<K>>,
}

struct Inner<K> {
    clock: SharedClock,
    base: Instant,
    holds: DashMap<K, u64, foldhash::fast::RandomState>,
    default_hold: Duration,
    max_hold: Duration,
    swept_at_len: AtomicU64,
}

impl<K> Clone for UpstreamQuota<K> {
    fn clone(&self) -> Self {
        UpstreamQuota {
            inner: self.inner.clone(),
        }
    }
}

impl<K: Hash + Eq> std::fmt::Debug for UpstreamQuota<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamQuota")
            .field("held_keys", &self.inner.holds.len())
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> Default for UpstreamQuota<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> UpstreamQuota<K> {
    /// An empty quota tracker on the system clock, with a 1 s default hold
    /// and a 24 h maximum hold. [`builder`](Self::builder) sets them.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder for the clock and the hold durations.
    pub fn builder() -> UpstreamQuotaBuilder<K> {
        UpstreamQuotaBuilder::default()
    }

    fn from_parts(clock: SharedClock, default_hold: Duration, max_hold: Duration) -> Self {
        UpstreamQuota {
            inner: Arc::new(Inner {
                base: clock.now(),
                clock,
                holds: DashMap::default(),
                default_hold: default_hold.min(max_hold),
                max_hold,
                swept_at_len: AtomicU64::new(1024),
            }),
        }
    }

    fn now(&self) -> u64 {
        nanos(
            self.inner
                .clock
                .now()
                .saturating_duration_since(self.inner.base),
        )
    }

    /// The longest hold this tracker applies.
    pub fn max_hold(&self) -> Duration {
        self.inner.max_hold
    }

    /// Learns from one response of the upstream for `key`; returns what it
    /// read.
    pub fn observe(&self, key: &K, status: StatusCode, headers: &HeaderMap) -> Learned {
        let learned = headers::parse(status, headers, self.inner.clock.system_now());
        match self.hold_for(&learned) {
            Some(d) => {
                self.hold(key, d);
            }
            None if learned.remaining.is_some_and(|r| r > 0) => {
                self.inner.holds.remove(key);
            }
            None => {}
        }
        learned
    }

    /// Holds calls for `key` back for `d` (e.g. told by another replica),
    /// at most [`max_hold`](Self::max_hold); returns the hold applied.
    pub fn hold(&self, key: &K, d: Duration) -> Duration {
        let d = d.min(self.inner.max_hold);
        let until = self.now().saturating_add(nanos(d));
        self.inner.holds.insert(key.clone(), until);
        self.sweep_if_grown();
        d
    }

    /// How long the learned headers say to hold calls back, if at all,
    /// capped at `max_hold`.
    fn hold_for(&self, l: &Learned) -> Option<Duration> {
        let told = l.retry_after.or(l.reset_after);
        (l.throttled || l.remaining == Some(0)).then(|| {
            told.unwrap_or(self.inner.default_hold)
                .min(self.inner.max_hold)
        })
    }

    /// Whether a call for `key` should go out now.
    pub fn check(&self, key: &K) -> QuotaState {
        let Some(until) = self.inner.holds.get(key).map(|u| *u) else {
            return QuotaState::Ready;
        };
        let now = self.now();
        if until > now {
            QuotaState::HoldBack {
                retry_after: Duration::from_nanos(until - now),
            }
        } else {
            self.inner.holds.remove_if(key, |_, u| *u <= now);
            QuotaState::Ready
        }
    }

    /// This tracker, sharing its holds with every replica through Redis
    /// (keys `{prefix}:{<key>}`).
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis(
        self,
        client: levee_redis::RedisClient,
        prefix: impl Into<String>,
    ) -> SharedUpstreamQuota<K>
    where
        K: levee_core::RedisKey,
    {
        SharedUpstreamQuota::new(self, client, prefix)
    }

    /// Keys currently held back (ended holds not yet dropped included).
    pub fn len(&self) -> usize {
        self.inner.holds.len()
    }

    /// Whether no key is held back.
    pub fn is_empty(&self) -> bool {
        self.inner.holds.is_empty()
    }

    fn sweep_if_grown(&self) {
        let len = self.inner.holds.len() as u64;
        if len >= 2 * self.inner.swept_at_len.load(Ordering::Relaxed) {
            let now = self.now();
            self.inner.holds.retain(|_, until| *until > now);
            self.inner
                .swept_at_len
                .store((self.inner.holds.len() as u64).max(1024), Ordering::Relaxed);
        }
    }
}

/// Wall-clock unix milliseconds of `now + d` (for sharing holds in Redis),
/// saturating at `u64::MAX`.
#[cfg(feature = "redis")]
fn unix_millis_after(clock: &SharedClock, d: Duration) -> u64 {
    let since_epoch = clock
        .system_now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    levee_core::duration::millis(since_epoch.saturating_add(d))
}

#[cfg(feature = "redis")]
mod shared;
#[cfg(feature = "redis")]
pub use shared::SharedUpstreamQuota;
