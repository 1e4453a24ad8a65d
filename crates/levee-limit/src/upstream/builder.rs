//! [`UpstreamQuotaBuilder`]: the clock and hold durations of an
//! [`UpstreamQuota`], set before it learns anything.

use std::hash::Hash;
use std::marker::PhantomData;
use std::time::Duration;

use levee_core::{SharedClock, SystemClock};

use super::UpstreamQuota;

/// Settings of an [`UpstreamQuota`]; from [`UpstreamQuota::builder`].
///
/// ```
/// use std::time::Duration;
/// use levee_limit::UpstreamQuota;
///
/// let quota = UpstreamQuota::<String>::builder()
///     .default_hold(Duration::from_secs(2))
///     .max_hold(Duration::from_secs(3600))
///     .build();
/// assert_eq!(quota.max_hold(), Duration::from_secs(3600));
/// ```
#[must_use]
pub struct UpstreamQuotaBuilder<K> {
    clock: Option<SharedClock>,
    default_hold: Duration,
    max_hold: Duration,
    _key: PhantomData<fn(K)>,
}

impl<K> Default for UpstreamQuotaBuilder<K> {
    fn default() -> Self {
        UpstreamQuotaBuilder {
            clock: None,
            default_hold: Duration::from_secs(1),
            max_hold: Duration::from_secs(24 * 3600),
            _key: PhantomData,
        }
    }
}

impl<K> std::fmt::Debug for UpstreamQuotaBuilder<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamQuotaBuilder")
            .field("default_hold", &self.default_hold)
            .field("max_hold", &self.max_hold)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> UpstreamQuotaBuilder<K> {
    /// The clock: its monotonic time for holds, its wall time for unix
    /// resets and HTTP dates. Default: the system clock.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// How long a `429` (or `remaining: 0`) without any timing header holds
    /// calls back. Default: 1 s. Never more than `max_hold`.
    pub fn default_hold(mut self, d: Duration) -> Self {
        self.default_hold = d;
        self
    }

    /// The longest any hold lasts, whatever the upstream's headers say (a
    /// misconfigured or hostile upstream cannot stop calls for years).
    /// Default: 24 h.
    pub fn max_hold(mut self, d: Duration) -> Self {
        self.max_hold = d;
        self
    }

    /// The tracker, empty.
    pub fn build(self) -> UpstreamQuota<K> {
        let clock = self.clock.unwrap_or_else(SystemClock::shared);
        UpstreamQuota::from_parts(clock, self.default_hold, self.max_hold)
    }
}
