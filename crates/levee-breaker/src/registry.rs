//! [`BreakerRegistry`]: one breaker per key, created on demand.

use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use levee_core::{SharedClock, SystemClock};

use crate::{BreakerConfigError, CircuitBreaker, CircuitBreakerBuilder, State};

type Map<K> = DashMap<K, Slot, foldhash::fast::RandomState>;

struct Slot {
    breaker: CircuitBreaker,
    last_used: AtomicU64,
}

/// One [`CircuitBreaker`] per key (host, endpoint, tenant), each built from
/// one template on first use. Closed breakers idle longer than
/// `idle_timeout` are evicted; an Open (or HalfOpen, ForcedOpen) one never
/// is, so a failing upstream stays blocked. Cheap to clone: clones share one
/// map.
///
/// ```
/// use levee_breaker::{BreakerRegistry, CircuitBreaker};
/// let registry = BreakerRegistry::new(CircuitBreaker::builder().consecutive_failures(3))?;
/// let a = registry.get(&"api.example.com");
/// assert_eq!(registry.len(), 1);
/// assert!(a.try_acquire().is_ok());
/// # Ok::<(), levee_breaker::BreakerConfigError>(())
/// ```
#[derive(Clone)]
pub struct BreakerRegistry<K> {
    inner: Arc<RegistryInner<K>>,
}

struct RegistryInner<K> {
    template: CircuitBreakerBuilder,
    map: Map<K>,
    clock: SharedClock,
    base: Instant,
    idle_timeout: Duration,
    gets: AtomicU64,
}

/// How many `get`s between two sweeps for idle breakers.
const SWEEP_EVERY: u64 = 4096;

impl<K: Hash + Eq + Clone + Send + Sync + 'static> BreakerRegistry<K> {
    /// A registry building breakers from `template`; idle Closed breakers
    /// are evicted after 10 minutes.
    pub fn new(template: CircuitBreakerBuilder) -> Result<Self, BreakerConfigError> {
        Self::with_idle_timeout(template, Duration::from_secs(600), SystemClock::shared())
    }

    /// A registry with its own idle timeout and clock (the template's
    /// breakers get the same clock).
    pub fn with_idle_timeout(
        template: CircuitBreakerBuilder,
        idle_timeout: Duration,
        clock: SharedClock,
    ) -> Result<Self, BreakerConfigError> {
        let template = template.clock(clock.clone());
        // Build once so a bad template fails here, not on first use.
        template.clone().build()?;
        Ok(BreakerRegistry {
            inner: Arc::new(RegistryInner {
                template,
                map: Map::default(),
                base: clock.now(),
                clock,
                idle_timeout,
                gets: AtomicU64::new(0),
            }),
        })
    }

    fn now(&self) -> u64 {
        levee_core::duration::nanos(
            self.inner
                .clock
                .now()
                .saturating_duration_since(self.inner.base),
        )
    }

    /// The breaker for `key`, created from the template if there is none.
    pub fn get(&self, key: &K) -> CircuitBreaker {
        let now = self.now();
        if self.inner.gets.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.evict_idle();
        }
        if let Some(slot) = self.inner.map.get(key) {
            slot.last_used.store(now, Ordering::Relaxed);
            return slot.breaker.clone();
        }
        let slot = self.inner.map.entry(key.clone()).or_insert_with(|| Slot {
            // The template was checked in `new`, so building cannot fail;
            // should it ever, a permissive breaker is the safe fallback.
            breaker: self.inner.template.clone().build().unwrap_or_else(|_| {
                CircuitBreaker::builder()
                    .consecutive_failures(u32::MAX)
                    .build()
                    .unwrap_or_else(|_| unreachable!())
            }),
            last_used: AtomicU64::new(now),
        });
        slot.breaker.clone()
    }

    /// Breakers held.
    pub fn len(&self) -> usize {
        self.inner.map.len()
    }

    /// Whether no breaker is held.
    pub fn is_empty(&self) -> bool {
        self.inner.map.is_empty()
    }

    /// Evicts Closed breakers idle longer than the idle timeout; returns how
    /// many were evicted. Runs on its own every few thousand `get`s.
    pub fn evict_idle(&self) -> usize {
        let now = self.now();
        let idle = levee_core::duration::nanos(self.inner.idle_timeout);
        let before = self.inner.map.len();
        self.inner.map.retain(|_, slot| {
            let fresh = now.saturating_sub(slot.last_used.load(Ordering::Relaxed)) < idle;
            fresh || slot.breaker.state() != State::Closed
        });
        before - self.inner.map.len()
    }
}
