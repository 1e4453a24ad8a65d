//! [`RetryPolicy`] and [`RetryBudget`]: exponential backoff with full
//! jitter, `Retry-After` honoured up to a cap, and a budget that keeps a
//! down upstream from being hit by a retry storm.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How failed attempts are retried.
///
/// ```
/// use std::time::Duration;
/// use levee::RetryPolicy;
///
/// let policy = RetryPolicy::new(3)
///     .base_delay(Duration::from_millis(100))
///     .max_delay(Duration::from_secs(2))
///     .max_retry_after(Duration::from_secs(10));
/// assert_eq!(policy.max_attempts(), 3);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct RetryPolicy {
    pub(crate) max_attempts: u32,
    pub(crate) base_delay: Duration,
    pub(crate) max_delay: Duration,
    pub(crate) max_retry_after: Duration,
    pub(crate) budget: Option<RetryBudget>,
}

impl RetryPolicy {
    /// At most `max_attempts` attempts in all (the first included; 1 means
    /// no retry). Defaults: base delay 50 ms, max delay 5 s, max
    /// `Retry-After` 30 s, and the default [`RetryBudget`].
    pub fn new(max_attempts: u32) -> Self {
        RetryPolicy {
            max_attempts,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(30),
            budget: Some(RetryBudget::default()),
        }
    }

    /// The delay before the first retry is drawn from `[0, base]`, the
    /// next from `[0, 2 * base]`, and so on ("full jitter"). Default: 50 ms.
    pub fn base_delay(mut self, d: Duration) -> Self {
        self.base_delay = d;
        self
    }

    /// The cap on the backoff's upper bound. Default: 5 s.
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }

    /// An upstream's `Retry-After` up to this long is waited out and the
    /// call retried; a longer one ends the call with `RateLimited` (the
    /// caller, or a stale value, does better than waiting). Default: 30 s.
    pub fn max_retry_after(mut self, d: Duration) -> Self {
        self.max_retry_after = d;
        self
    }

    /// The retry budget. Default: [`RetryBudget::default`].
    pub fn budget(mut self, b: RetryBudget) -> Self {
        self.budget = Some(b);
        self
    }

    /// No budget: every failed call may retry up to `max_attempts`.
    pub fn no_budget(mut self) -> Self {
        self.budget = None;
        self
    }

    /// The attempts allowed in all.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The backoff before retry number `retry` (1 for the first retry):
    /// uniform in `[0, min(max_delay, base * 2^(retry-1))]`.
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        let exp = retry.saturating_sub(1).min(31);
        let ceiling = self
            .base_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay);
        ceiling.mul_f64(rand::random::<f64>())
    }
}

/// Retries allowed as a fraction of recent calls, plus a floor per second,
/// as Finagle and linkerd budget them: with the upstream down, the calls
/// it sees stay near `(1 + ratio)` times the callers' calls instead of
/// `max_attempts` times.
///
/// ```
/// use std::time::Duration;
/// use levee::RetryBudget;
///
/// let budget = RetryBudget::new(0.1, 5, Duration::from_secs(10));
/// assert_eq!(budget.ratio(), 0.1);
/// ```
#[derive(Debug, Clone)]
pub struct RetryBudget {
    ratio: f64,
    min_per_second: u32,
    window: Duration,
}

impl Default for RetryBudget {
    /// 20 % of the calls of the last 10 s, plus 10 retries a second.
    fn default() -> Self {
        RetryBudget::new(0.2, 10, Duration::from_secs(10))
    }
}

impl RetryBudget {
    /// Retries may be `ratio` of the calls made within `window`, plus
    /// `min_per_second` a second of it. `ratio` is clamped to `0..=1000`.
    pub fn new(ratio: f64, min_per_second: u32, window: Duration) -> Self {
        let ratio = if ratio.is_finite() {
            ratio.clamp(0.0, 1000.0)
        } else {
            0.0
        };
        RetryBudget {
            ratio,
            min_per_second,
            window: window.max(Duration::from_secs(1)),
        }
    }

    /// The fraction of recent calls that may be retried.
    pub fn ratio(&self) -> f64 {
        self.ratio
    }

    /// The floor of retries allowed within the window.
    pub(crate) fn floor(&self) -> f64 {
        f64::from(self.min_per_second) * self.window.as_secs_f64()
    }
}

/// The running account of a [`RetryBudget`]: calls and retries per second
/// of the pipeline's clock, in a ring of one slot per second of the window.
/// Lock-free: a call costs one compare and one add. Two threads that start
/// a new second at once may each count a call the other's reset drops, so
/// the account is approximate by a call or two per second (the budget is a
/// bound on storms, not an exact count).
#[derive(Debug)]
pub(crate) struct BudgetAccount {
    budget: RetryBudget,
    start: Instant,
    slots: Box<[Second]>,
}

#[derive(Debug, Default)]
struct Second {
    /// Which second since `start` this slot counts (+1; 0: never used).
    tag: AtomicU64,
    calls: AtomicU64,
    retries: AtomicU64,
}

impl BudgetAccount {
    pub(crate) fn new(budget: RetryBudget, start: Instant) -> Self {
        let n = usize::try_from(budget.window.as_secs())
            .unwrap_or(usize::MAX)
            .clamp(1, 3600);
        BudgetAccount {
            budget,
            start,
            slots: (0..n).map(|_| Second::default()).collect(),
        }
    }

    /// The slot of `now`, reset if it last counted an older second.
    fn slot(&self, now: Instant) -> (&Second, u64) {
        let second = now.saturating_duration_since(self.start).as_secs() + 1;
        let slot = &self.slots[(second % self.slots.len() as u64) as usize];
        let seen = slot.tag.load(Ordering::Acquire);
        if seen != second
            && slot
                .tag
                .compare_exchange(seen, second, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            slot.calls.store(0, Ordering::Relaxed);
            slot.retries.store(0, Ordering::Relaxed);
        }
        (slot, second)
    }

    /// A call was made (its first attempt).
    pub(crate) fn deposit(&self, now: Instant) {
        self.slot(now).0.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// Asks to spend one retry; `false` when the budget is spent.
    pub(crate) fn withdraw(&self, now: Instant) -> bool {
        let (slot, second) = self.slot(now);
        let oldest = second.saturating_sub(self.slots.len() as u64 - 1);
        let (calls, retries) = self
            .slots
            .iter()
            .filter(|s| s.tag.load(Ordering::Acquire) >= oldest.max(1))
            .fold((0u64, 0u64), |(c, r), s| {
                (
                    c + s.calls.load(Ordering::Relaxed),
                    r + s.retries.load(Ordering::Relaxed),
                )
            });
        let room = self.budget.ratio * calls as f64 + self.budget.floor();
        if (retries as f64) < room {
            slot.retries.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_full_jitter_up_to_the_cap() {
        let p = RetryPolicy::new(5)
            .base_delay(Duration::from_millis(100))
            .max_delay(Duration::from_millis(350));
        for _ in 0..200 {
            assert!(p.backoff(1) <= Duration::from_millis(100));
            assert!(p.backoff(2) <= Duration::from_millis(200));
            assert!(p.backoff(3) <= Duration::from_millis(350));
            assert!(p.backoff(40) <= Duration::from_millis(350));
        }
    }

    #[test]
    fn budget_allows_the_ratio_of_calls_plus_the_floor_within_its_window() {
        let start = Instant::now();
        let a = BudgetAccount::new(RetryBudget::new(0.1, 1, Duration::from_secs(10)), start);
        for _ in 0..100 {
            a.deposit(start);
        }
        // 0.1 * 100 + 1 * 10 = 20 retries.
        let granted = (0..100).filter(|_| a.withdraw(start)).count();
        assert_eq!(granted, 20);
        // Ten seconds on, the old calls and retries have left the window.
        let later = start + Duration::from_secs(10);
        let granted = (0..100).filter(|_| a.withdraw(later)).count();
        assert_eq!(granted, 10, "the floor alone");
    }
}
