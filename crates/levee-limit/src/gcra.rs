//! [`Gcra`]: the [`RateLimiter`] trait over `governor`'s keyed GCRA.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock as GovernorClock;
use governor::middleware::{StateInformationMiddleware, StateSnapshot};
use governor::nanos::Nanos;
use governor::state::keyed::DashMapStateStore;
use levee_core::SharedClock;

use crate::time::LimiterTime;

use crate::{Decision, LimitError, RateLimiter};

/// governor reads time through this adapter, so an injected clock (a
/// `ManualClock` in tests) drives it; by default the TSC clock.
#[derive(Clone)]
struct LeveeClock(Arc<LimiterTime>);

impl std::fmt::Debug for LeveeClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LeveeClock")
    }
}

impl GovernorClock for LeveeClock {
    type Instant = Nanos;
    fn now(&self) -> Nanos {
        Nanos::from(self.0.elapsed())
    }
}

type Limiter<K> =
    governor::RateLimiter<K, DashMapStateStore<K>, LeveeClock, StateInformationMiddleware>;

/// A keyed GCRA limiter (burst plus sustained rate, e.g. Auth0's "10 burst,
/// then 5 a minute") over `governor`. Cheap to clone: clones share state.
///
/// ```
/// use std::num::NonZeroU32;
/// use std::time::Duration;
/// use levee_limit::Gcra;
///
/// let auth0 = Gcra::<String>::new(NonZeroU32::new(10).unwrap(), Duration::from_secs(12))?;
/// let user = "alice".to_string();
/// for _ in 0..10 {
///     assert!(auth0.check(&user).allowed);
/// }
/// let d = auth0.check(&user);
/// assert!(!d.allowed);
/// assert!(d.retry_after.unwrap() <= Duration::from_secs(12));
/// # Ok::<(), levee_limit::LimitError>(())
/// ```
pub struct Gcra<K: Hash + Eq + Clone> {
    limiter: Arc<Limiter<K>>,
    clock: LeveeClock,
    burst: u32,
    replenish: Duration,
}

impl<K: Hash + Eq + Clone> Clone for Gcra<K> {
    fn clone(&self) -> Self {
        Gcra {
            limiter: self.limiter.clone(),
            clock: self.clock.clone(),
            burst: self.burst,
            replenish: self.replenish,
        }
    }
}

impl<K: Hash + Eq + Clone> std::fmt::Debug for Gcra<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gcra")
            .field("burst", &self.burst)
            .field("replenish", &self.replenish)
            .finish()
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> Gcra<K> {
    /// `burst` calls at once, then one more every `replenish_every`.
    /// Time is read from the CPU's time-stamp counter (as governor does).
    pub fn new(burst: NonZeroU32, replenish_every: Duration) -> Result<Self, LimitError> {
        Self::build(burst, replenish_every, None)
    }

    /// Like [`Gcra::new`], reading time from `clock`.
    pub fn with_clock(
        burst: NonZeroU32,
        replenish_every: Duration,
        clock: SharedClock,
    ) -> Result<Self, LimitError> {
        Self::build(burst, replenish_every, Some(clock))
    }

    fn build(
        burst: NonZeroU32,
        replenish_every: Duration,
        clock: Option<SharedClock>,
    ) -> Result<Self, LimitError> {
        let quota = governor::Quota::with_period(replenish_every)
            .ok_or_else(|| LimitError::InvalidSetting {
                setting: "replenish_every",
                reason: "must be above zero".into(),
            })?
            .allow_burst(burst);
        let clock = LeveeClock(Arc::new(LimiterTime::new(clock)));
        let limiter: Limiter<K> = governor::RateLimiter::<
            K,
            _,
            _,
            governor::middleware::NoOpMiddleware<Nanos>,
        >::new(quota, DashMapStateStore::default(), clock.clone())
        .with_middleware::<StateInformationMiddleware>();
        Ok(Gcra {
            limiter: Arc::new(limiter),
            clock,
            burst: burst.get(),
            replenish: replenish_every,
        })
    }

    fn allowed(&self, snap: StateSnapshot) -> Decision {
        let remaining = snap.remaining_burst_capacity();
        Decision {
            allowed: true,
            limit: self.burst,
            remaining,
            retry_after: None,
            reset_after: self.replenish * (self.burst - remaining.min(self.burst)),
        }
    }

    /// Spends one permit for `key`.
    pub fn check(&self, key: &K) -> Decision {
        match self.limiter.check_key(key) {
            Ok(snap) => self.allowed(snap),
            Err(not_until) => self.denied(not_until.wait_time_from(self.clock.now())),
        }
    }

    fn denied(&self, wait: Duration) -> Decision {
        Decision {
            allowed: false,
            limit: self.burst,
            remaining: 0,
            retry_after: Some(wait),
            reset_after: self.replenish * self.burst,
        }
    }

    /// Spends `n` permits for `key`; `InsufficientCapacity` when `n` is
    /// above the burst.
    pub fn check_n(&self, key: &K, n: NonZeroU32) -> Result<Decision, LimitError> {
        match self.limiter.check_key_n(key, n) {
            Ok(Ok(snap)) => Ok(self.allowed(snap)),
            Ok(Err(not_until)) => Ok(self.denied(not_until.wait_time_from(self.clock.now()))),
            Err(_) => Err(LimitError::InsufficientCapacity {
                requested: n.get(),
                limit: self.burst,
            }),
        }
    }

    /// Drops the state of keys whose bucket is full again (governor's
    /// `retain_recent`).
    pub fn evict_idle(&self) {
        self.limiter.retain_recent();
    }

    /// Keys currently held.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }
}

#[async_trait::async_trait]
impl<K: Hash + Eq + Clone + Send + Sync + 'static> RateLimiter<K> for Gcra<K> {
    async fn check_n(&self, key: &K, n: NonZeroU32) -> Result<Decision, LimitError> {
        Gcra::check_n(self, key, n)
    }

    fn check_n_now(&self, key: &K, n: NonZeroU32) -> Option<Result<Decision, LimitError>> {
        Some(Gcra::check_n(self, key, n))
    }
}
