//! [`CircuitBreaker`]: the state machine and its transitions.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use levee_core::SharedClock;
use levee_core::duration::nanos;
use parking_lot::Mutex;

use crate::builder::CircuitBreakerBuilder;
use crate::event::{BreakerEvent, Listener, State};
use crate::permit::{Outcome, OwnedPermit, Permit};
use crate::window::OutcomeWindow;
use crate::{BreakerError, Rejected};

#[derive(Clone)]
pub(crate) struct Rules {
    pub(crate) failure_rate: Option<f64>,
    pub(crate) slow_threshold: Option<Duration>,
    pub(crate) slow_rate: Option<f64>,
    pub(crate) consecutive_failures: Option<u32>,
    pub(crate) minimum_calls: u32,
    pub(crate) open_duration: Duration,
    pub(crate) max_open_duration: Option<Duration>,
    pub(crate) backoff_multiplier: f64,
    pub(crate) jitter: f64,
    pub(crate) half_open_permits: u32,
    pub(crate) classifier: Option<crate::builder::Classifier>,
}

/// State word layout: the low 3 bits are the [`State`], the rest is a
/// generation that grows on every transition. Permits carry the generation
/// they were issued in; an outcome from an older generation updates the
/// statistics only.
const STATE_BITS: u32 = 3;

pub(crate) struct Inner {
    pub(crate) name: Arc<str>,
    clock: SharedClock,
    base: Instant,
    pub(crate) rules: Rules,
    state: AtomicU64,
    /// Nanoseconds after `base` when Open ends; written before the state
    /// word is published (Release), read after it (Acquire).
    open_until: AtomicU64,
    open_level: AtomicU32,
    pub(crate) window: OutcomeWindow,
    consecutive: AtomicU32,
    /// HalfOpen probes issued and probes that succeeded, each packed with
    /// the generation of the HalfOpen state they belong to (see [`Tally`]):
    /// a late decrement or increment from an earlier HalfOpen can never
    /// touch the current one's counts.
    half_issued: Tally,
    half_successes: Tally,
    rejections: AtomicU64,
    transition: Mutex<()>,
    listeners: Vec<Listener>,
}

impl Inner {
    pub(crate) fn new(
        name: Arc<str>,
        clock: SharedClock,
        base: Instant,
        rules: Rules,
        window: OutcomeWindow,
        listeners: Vec<Listener>,
    ) -> Self {
        Inner {
            name,
            clock,
            base,
            rules,
            state: AtomicU64::new(State::Closed.bits()),
            open_until: AtomicU64::new(0),
            open_level: AtomicU32::new(0),
            window,
            consecutive: AtomicU32::new(0),
            half_issued: Tally::default(),
            half_successes: Tally::default(),
            rejections: AtomicU64::new(0),
            transition: Mutex::new(()),
            listeners,
        }
    }

    #[inline]
    pub(crate) fn now_nanos(&self) -> u64 {
        nanos(self.clock.now().saturating_duration_since(self.base))
    }

    #[inline]
    pub(crate) fn now(&self) -> Instant {
        self.clock.now()
    }

    #[inline]
    pub(crate) fn word(&self) -> u64 {
        self.state.load(Ordering::Acquire)
    }

    /// Moves from the state word `from` to `to`, unless another thread moved
    /// first. Returns whether this call made the transition.
    fn transition(&self, from: u64, to: State, open_for: Option<Duration>) -> bool {
        let guard = self.transition.lock();
        if self.state.load(Ordering::Acquire) != from {
            return false;
        }
        let now = self.now_nanos();
        match to {
            State::Open => {
                let d = open_for.unwrap_or(Duration::ZERO);
                self.open_until
                    .store(now.saturating_add(nanos(d)), Ordering::Relaxed);
            }
            State::HalfOpen => {
                let generation = (from >> STATE_BITS) + 1;
                self.half_issued.start(generation);
                self.half_successes.start(generation);
            }
            State::Closed => {
                self.window.reset();
                self.consecutive.store(0, Ordering::Relaxed);
                self.open_level.store(0, Ordering::Relaxed);
            }
            State::ForcedOpen | State::Disabled => {}
        }
        let generation = (from >> STATE_BITS) + 1;
        self.state
            .store((generation << STATE_BITS) | to.bits(), Ordering::Release);
        drop(guard);
        tracing::debug!(breaker = %self.name, from = ?State::from_bits(from), to = ?to, "circuit breaker state change");
        #[cfg(feature = "metrics")]
        {
            metrics::gauge!("levee_breaker_state", "breaker" => self.name.to_string())
                .set(to.bits() as f64);
            metrics::counter!("levee_breaker_transitions_total", "breaker" => self.name.to_string(), "to" => format!("{to:?}"))
                .increment(1);
        }
        self.emit(|| BreakerEvent::StateChanged {
            name: self.name.clone(),
            from: State::from_bits(from),
            to,
            open_for,
        });
        true
    }

    fn emit(&self, event: impl FnOnce() -> BreakerEvent) {
        if !self.listeners.is_empty() {
            let e = event();
            for l in &self.listeners {
                l(&e);
            }
        }
    }

    /// The open duration for the next opening, with backoff and jitter.
    fn next_open_duration(&self, reopening: bool) -> Duration {
        let r = &self.rules;
        let level = if reopening {
            self.open_level.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            0
        };
        let mut secs = r.open_duration.as_secs_f64() * r.backoff_multiplier.powi(level as i32);
        if let Some(max) = r.max_open_duration {
            secs = secs.min(max.as_secs_f64());
        }
        if r.jitter > 0.0 {
            secs *= 1.0 + r.jitter * (rand::random::<f64>() * 2.0 - 1.0);
        }
        Duration::from_secs_f64(secs.clamp(0.0, 1e9))
    }

    fn reject(&self, state: State, retry_after: Option<Duration>) -> Rejected {
        self.rejections.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!("levee_breaker_rejections_total", "breaker" => self.name.to_string())
            .increment(1);
        self.emit(|| BreakerEvent::Rejected {
            name: self.name.clone(),
            state,
        });
        Rejected { retry_after }
    }

    pub(crate) fn try_acquire(&self) -> Result<(u64, bool), Rejected> {
        loop {
            let w = self.word();
            match State::from_bits(w) {
                State::Closed | State::Disabled => return Ok((w, false)),
                State::Open => {
                    let now = self.now_nanos();
                    let until = self.open_until.load(Ordering::Relaxed);
                    if now < until {
                        let left = Duration::from_nanos(until - now);
                        return Err(self.reject(State::Open, Some(left)));
                    }
                    self.transition(w, State::HalfOpen, None);
                }
                State::HalfOpen => {
                    let limit = self.rules.half_open_permits;
                    match self.half_issued.increment(w >> STATE_BITS, limit) {
                        Some(_) => return Ok((w, true)),
                        None if self.word() == w => {
                            return Err(self.reject(State::HalfOpen, None));
                        }
                        None => {} // the state moved on: look again
                    }
                }
                State::ForcedOpen => return Err(self.reject(State::ForcedOpen, None)),
            }
        }
    }

    /// Frees a half-open probe slot whose permit recorded nothing.
    pub(crate) fn release_probe(&self, word: u64) {
        self.half_issued.decrement(word >> STATE_BITS);
    }

    pub(crate) fn record(
        &self,
        word: u64,
        half: bool,
        outcome: Outcome,
        elapsed: Option<Duration>,
    ) {
        if outcome == Outcome::Ignore {
            if half {
                self.release_probe(word);
            }
            return;
        }
        if State::from_bits(word) == State::Disabled {
            return;
        }
        let failed = outcome == Outcome::Failure;
        let slow = matches!((elapsed, self.rules.slow_threshold), (Some(e), Some(t)) if e >= t);
        // Only a time window needs the time; reading a clock costs more
        // than the rest of the closed path.
        let now = if self.window.needs_time() {
            self.now_nanos()
        } else {
            0
        };
        let filling = self
            .window
            .record(failed, slow, now, self.rules.minimum_calls);
        if self.word() != word {
            return; // issued before the last state change: statistics only
        }
        if half {
            if failed || slow {
                let d = self.next_open_duration(true);
                self.transition(word, State::Open, Some(d));
            } else if self
                .half_successes
                .increment(word >> STATE_BITS, u32::MAX)
                .is_some_and(|n| n >= self.rules.half_open_permits)
            {
                self.transition(word, State::Closed, None);
            }
            return;
        }
        if failed {
            let n = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
            if self.rules.consecutive_failures.is_some_and(|max| n >= max) || self.rate_tripped(now)
            {
                let d = self.next_open_duration(false);
                self.transition(word, State::Open, Some(d));
            }
        } else {
            if self.consecutive.load(Ordering::Relaxed) != 0 {
                self.consecutive.store(0, Ordering::Relaxed);
            }
            // A success can still complete `minimum_calls` over a window
            // whose rates are past their thresholds, and a slow one raises
            // the slow-call rate; any other success only lowers the rates,
            // so it folds no stripes (the closed path's common case).
            if (filling || slow) && self.rate_tripped(now) {
                let d = self.next_open_duration(false);
                self.transition(word, State::Open, Some(d));
            }
        }
    }

    fn rate_tripped(&self, now: u64) -> bool {
        let c = self.window.counts(now);
        if c.calls == 0 || c.calls < self.rules.minimum_calls {
            return false;
        }
        let calls = f64::from(c.calls);
        self.rules
            .failure_rate
            .is_some_and(|r| f64::from(c.failures) / calls >= r)
            || self
                .rules
                .slow_rate
                .is_some_and(|r| f64::from(c.slow) / calls >= r)
    }
}

/// A three-state circuit breaker (Closed, Open, HalfOpen, plus ForcedOpen
/// and Disabled). Cheap to clone: clones share one state.
///
/// See the [crate docs](crate) for the rules.
#[derive(Clone)]
pub struct CircuitBreaker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.inner.name)
            .field("state", &self.state())
            .finish()
    }
}

/// A snapshot of a breaker's statistics.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BreakerStats {
    /// The current state.
    pub state: State,
    /// Calls in the window.
    pub calls: u32,
    /// Failed calls in the window.
    pub failures: u32,
    /// Slow calls in the window.
    pub slow_calls: u32,
    /// Failures / calls over the window (0 when empty).
    pub failure_rate: f64,
    /// Slow calls / calls over the window (0 when empty).
    pub slow_call_rate: f64,
    /// Calls refused since the breaker was built.
    pub rejections: u64,
}

impl CircuitBreaker {
    /// A builder with the defaults documented on each setter.
    pub fn builder() -> CircuitBreakerBuilder {
        CircuitBreakerBuilder::default()
    }

    pub(crate) fn from_inner(inner: Inner) -> Self {
        CircuitBreaker {
            inner: Arc::new(inner),
        }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The current state. An Open breaker whose time is up reports Open
    /// until the next `try_acquire` moves it to HalfOpen.
    pub fn state(&self) -> State {
        State::from_bits(self.inner.word())
    }

    /// Asks to make one call: a [`Permit`] to record its outcome on, or
    /// [`Rejected`] with the time left in Open.
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit<'_>, Rejected> {
        let (word, half) = self.inner.try_acquire()?;
        let start = self.inner.rules.slow_threshold.map(|_| self.inner.now());
        Ok(Permit::new(&self.inner, word, half, start))
    }

    /// Like [`try_acquire`](Self::try_acquire), but the permit holds a
    /// handle on the breaker instead of borrowing it, so it can be moved
    /// into a spawned task or stored in a future. Same semantics.
    #[inline]
    pub fn try_acquire_owned(&self) -> Result<OwnedPermit, Rejected> {
        let (word, half) = self.inner.try_acquire()?;
        let start = self.inner.rules.slow_threshold.map(|_| self.inner.now());
        Ok(OwnedPermit::owned(self.inner.clone(), word, half, start))
    }

    /// Runs `f` if the breaker admits it; an `Err` counts as a failure, or
    /// as the builder's [`classifier`](CircuitBreakerBuilder::classifier)
    /// says.
    pub async fn call<F, Fut, T, E>(&self, f: F) -> Result<T, BreakerError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: 'static,
    {
        let classifier = self.inner.rules.classifier.clone();
        self.call_with(f, move |r: &Result<T, E>| match (r, &classifier) {
            (Ok(_), _) => Outcome::Success,
            (Err(e), Some(c)) => c(e),
            (Err(_), None) => Outcome::Failure,
        })
        .await
    }

    /// Runs `f` if the breaker admits it; `classify` says whether its result
    /// is a success, a failure or to be ignored (a 404 is no failure).
    pub async fn call_with<F, Fut, T, E, C>(&self, f: F, classify: C) -> Result<T, BreakerError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        C: Fn(&Result<T, E>) -> Outcome,
    {
        let permit = self.try_acquire().map_err(BreakerError::Rejected)?;
        let result = f().await;
        permit.record(classify(&result));
        result.map_err(BreakerError::Inner)
    }

    /// Opens the breaker for `d` now, whatever its state (but Disabled):
    /// for an upstream's `Retry-After`. A `d` past the clock's range (about
    /// 584 years) opens it until [`reset`](Self::reset); it never wraps to
    /// a shorter time.
    pub fn trip_for(&self, d: Duration) {
        loop {
            let w = self.inner.word();
            if State::from_bits(w) == State::Disabled
                || self.inner.transition(w, State::Open, Some(d))
            {
                return;
            }
        }
    }

    /// Refuses every call until [`reset`](Self::reset).
    pub fn force_open(&self) {
        self.move_to(State::ForcedOpen);
    }

    /// Admits every call and records nothing until [`reset`](Self::reset).
    pub fn disable(&self) {
        self.move_to(State::Disabled);
    }

    /// Closes the breaker and clears its window.
    pub fn reset(&self) {
        self.move_to(State::Closed);
    }

    fn move_to(&self, to: State) {
        loop {
            let w = self.inner.word();
            if self.inner.transition(w, to, None) {
                return;
            }
        }
    }

    /// A snapshot of the statistics.
    pub fn stats(&self) -> BreakerStats {
        let now = if self.inner.window.needs_time() {
            self.inner.now_nanos()
        } else {
            0
        };
        let c = self.inner.window.counts(now);
        let rate = |n: u32| {
            if c.calls == 0 {
                0.0
            } else {
                f64::from(n) / f64::from(c.calls)
            }
        };
        BreakerStats {
            state: self.state(),
            calls: c.calls,
            failures: c.failures,
            slow_calls: c.slow,
            failure_rate: rate(c.failures),
            slow_call_rate: rate(c.slow),
            rejections: self.inner.rejections.load(Ordering::Relaxed),
        }
    }
}

/// A count that belongs to one generation of the state word: the low 32
/// bits count, the high 32 bits are the generation (its low 32 bits; a
/// stale update would need 2^32 transitions between its load and its
/// compare-and-swap to be mistaken for a current one).
#[derive(Default)]
struct Tally(AtomicU64);

impl Tally {
    /// Starts a new generation at zero; called under the transition lock
    /// before the state word that names `generation` is published.
    fn start(&self, generation: u64) {
        self.0.store(generation << 32, Ordering::Release);
    }

    /// Adds one if the tally is in `generation` and below `limit`; returns
    /// the new count.
    fn increment(&self, generation: u64, limit: u32) -> Option<u32> {
        let tag = generation << 32;
        let mut cur = self.0.load(Ordering::Acquire);
        loop {
            let count = cur as u32; // the low half: the count
            if cur & !u64::from(u32::MAX) != tag || count >= limit {
                return None;
            }
            match self
                .0
                .compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(count + 1),
                Err(now) => cur = now,
            }
        }
    }

    /// Takes one back if the tally is still in `generation` and above zero.
    fn decrement(&self, generation: u64) {
        let tag = generation << 32;
        let mut cur = self.0.load(Ordering::Acquire);
        while cur & !u64::from(u32::MAX) == tag && cur as u32 > 0 {
            match self
                .0
                .compare_exchange_weak(cur, cur - 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(now) => cur = now,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Tally;

    #[test]
    fn a_late_update_from_an_earlier_generation_never_touches_the_current_count() {
        let t = Tally::default();
        t.start(7);
        assert_eq!(t.increment(7, 1), Some(1));
        assert_eq!(t.increment(7, 1), None, "at the limit");
        t.start(9); // the state moved on while a caller was between steps
        t.decrement(7); // its late release: ignored, no wrap below zero
        assert_eq!(t.increment(7, 5), None, "an old generation cannot add");
        assert_eq!(
            t.increment(9, 1),
            Some(1),
            "the new generation has its slot"
        );
        t.decrement(9);
        t.decrement(9); // more releases than issues: stays at zero
        assert_eq!(t.increment(9, 1), Some(1));
    }
}
