//! [`CircuitBreakerBuilder`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use levee_core::{SharedClock, SystemClock};

use crate::{BreakerConfigError, Outcome};

/// How `call` counts an error.
pub(crate) type Classifier = Arc<dyn Fn(&dyn std::any::Any) -> Outcome + Send + Sync>;
use crate::breaker::{CircuitBreaker, Inner, Rules};
use crate::event::{BreakerEvent, Listener};
use crate::window::{OutcomeWindow, Window};

/// Builds a [`CircuitBreaker`]. Every setting has a default; `build()`
/// checks them and names the one that is wrong.
///
/// ```
/// use std::time::Duration;
/// use levee_breaker::{CircuitBreaker, Window};
///
/// let breaker = CircuitBreaker::builder()
///     .name("userinfo")
///     .failure_rate_threshold(0.5)
///     .sliding_window(Window::Count(20))
///     .minimum_calls(10)
///     .open_duration(Duration::from_secs(5))
///     .build()?;
/// # Ok::<(), levee_breaker::BreakerConfigError>(())
/// ```
#[must_use]
#[derive(Clone)]
pub struct CircuitBreakerBuilder {
    name: Arc<str>,
    failure_rate: Option<f64>,
    slow_call: Option<(Duration, f64)>,
    consecutive_failures: Option<u32>,
    window: Window,
    minimum_calls: u32,
    open_duration: Duration,
    max_open_duration: Option<Duration>,
    backoff_multiplier: f64,
    jitter: f64,
    half_open_permits: u32,
    clock: Option<SharedClock>,
    listeners: Vec<Listener>,
    classifier: Option<Classifier>,
}

impl std::fmt::Debug for CircuitBreakerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreakerBuilder")
            .field("name", &self.name)
            .field("failure_rate", &self.failure_rate)
            .field("slow_call", &self.slow_call)
            .field("consecutive_failures", &self.consecutive_failures)
            .field("window", &self.window)
            .field("minimum_calls", &self.minimum_calls)
            .field("open_duration", &self.open_duration)
            .field("half_open_permits", &self.half_open_permits)
            .finish_non_exhaustive()
    }
}

impl Default for CircuitBreakerBuilder {
    fn default() -> Self {
        CircuitBreakerBuilder {
            name: Arc::from("default"),
            failure_rate: Some(0.5),
            slow_call: None,
            consecutive_failures: None,
            window: Window::Count(100),
            minimum_calls: 20,
            open_duration: Duration::from_secs(30),
            max_open_duration: None,
            backoff_multiplier: 1.0,
            jitter: 0.0,
            half_open_permits: 5,
            clock: None,
            listeners: Vec::new(),
            classifier: None,
        }
    }
}

impl CircuitBreakerBuilder {
    /// The name used in events and metrics. Default: `"default"`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Arc::from(name.into());
        self
    }

    /// Trip when the failure rate over the window reaches `rate` (0 < rate
    /// <= 1), once `minimum_calls` calls are in it. Default: 0.5.
    pub fn failure_rate_threshold(mut self, rate: f64) -> Self {
        self.failure_rate = Some(rate);
        self
    }

    /// Never trip on the failure rate (use consecutive failures or slow
    /// calls instead).
    pub fn no_failure_rate(mut self) -> Self {
        self.failure_rate = None;
        self
    }

    /// Count calls slower than `threshold` as slow, and trip when the slow
    /// rate reaches `rate`. Default: no slow-call rule.
    pub fn slow_call(mut self, threshold: Duration, rate: f64) -> Self {
        self.slow_call = Some((threshold, rate));
        self
    }

    /// Trip after `n` failures in a row, whatever the window holds.
    /// Default: no such rule.
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.consecutive_failures = Some(n);
        self
    }

    /// The window rates are computed over. Default: `Window::Count(100)`.
    ///
    /// A count window of `n` calls can never hold more than `n`, so with
    /// `Window::Count(n)` the effective [`minimum_calls`](Self::minimum_calls)
    /// is at most `n` (as resilience4j does).
    pub fn sliding_window(mut self, w: Window) -> Self {
        self.window = w;
        self
    }

    /// Calls the window must hold before a rate can trip. Default: 20.
    ///
    /// With a [`Window::Count`] smaller than `n`, the window's size is used
    /// instead: a full window can always trip.
    pub fn minimum_calls(mut self, n: u32) -> Self {
        self.minimum_calls = n;
        self
    }

    /// How long the breaker stays open. Default: 30 s.
    pub fn open_duration(mut self, d: Duration) -> Self {
        self.open_duration = d;
        self
    }

    /// With a backoff multiplier above 1, the cap on the open duration.
    /// Default: none.
    pub fn max_open_duration(mut self, d: Duration) -> Self {
        self.max_open_duration = Some(d);
        self
    }

    /// Each reopening from HalfOpen multiplies the open duration by `m`
    /// (>= 1). Default: 1 (no backoff).
    pub fn backoff_multiplier(mut self, m: f64) -> Self {
        self.backoff_multiplier = m;
        self
    }

    /// Spread each open duration by up to `fraction` (0..1) either way, so
    /// breakers that tripped together don't probe together. Default: 0.
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction;
        self
    }

    /// Probe calls admitted in HalfOpen, in total; that many successes close
    /// the breaker. Default: 5.
    pub fn half_open_permits(mut self, n: u32) -> Self {
        self.half_open_permits = n;
        self
    }

    /// The time source. Default: [`SystemClock`].
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Decides how [`call`](CircuitBreaker::call) counts an `Err`: the error
    /// is passed as `&dyn Any` (the breaker is not generic over error types),
    /// so downcast it. Default: every `Err` is a failure.
    ///
    /// ```
    /// use levee_breaker::{CircuitBreaker, Outcome};
    /// let breaker = CircuitBreaker::builder()
    ///     .consecutive_failures(1)
    ///     .classifier(|err| match err.downcast_ref::<u16>() {
    ///         Some(404) => Outcome::Ignore, // not found is an answer, not a failure
    ///         _ => Outcome::Failure,
    ///     })
    ///     .build()?;
    /// # Ok::<(), levee_breaker::BreakerConfigError>(())
    /// ```
    pub fn classifier(
        mut self,
        f: impl Fn(&dyn std::any::Any) -> Outcome + Send + Sync + 'static,
    ) -> Self {
        self.classifier = Some(Arc::new(f));
        self
    }

    /// Calls `f` on every event (state change, rejection).
    pub fn on_event(mut self, f: impl Fn(&BreakerEvent) + Send + Sync + 'static) -> Self {
        self.listeners.push(Arc::new(f));
        self
    }

    fn check(&self) -> Result<(), BreakerConfigError> {
        let rate_ok = |r: f64| r > 0.0 && r <= 1.0;
        if let Some(r) = self.failure_rate
            && !rate_ok(r)
        {
            return Err(BreakerConfigError::new(
                "failure_rate_threshold",
                format!("{r} is not in (0, 1]; 0.5 means half the calls failed"),
            ));
        }
        if let Some((t, r)) = self.slow_call
            && (!rate_ok(r) || t.is_zero())
        {
            return Err(BreakerConfigError::new(
                "slow_call",
                "the threshold must be above zero and the rate in (0, 1]",
            ));
        }
        if self.consecutive_failures == Some(0) {
            return Err(BreakerConfigError::new(
                "consecutive_failures",
                "0 would trip on nothing; use at least 1",
            ));
        }
        match self.window {
            Window::Count(0) => {
                return Err(BreakerConfigError::new(
                    "sliding_window",
                    "a count window of 0 calls holds nothing; use at least 1",
                ));
            }
            Window::Time(d) if d < Duration::from_millis(10) => {
                return Err(BreakerConfigError::new(
                    "sliding_window",
                    "a time window must be at least 10ms",
                ));
            }
            _ => {}
        }
        if self.open_duration.is_zero() {
            return Err(BreakerConfigError::new(
                "open_duration",
                "must be above zero",
            ));
        }
        if self.half_open_permits == 0 {
            return Err(BreakerConfigError::new(
                "half_open_permits",
                "0 probes could never close the breaker; use at least 1",
            ));
        }
        if !(self.backoff_multiplier >= 1.0 && self.backoff_multiplier.is_finite()) {
            return Err(BreakerConfigError::new(
                "backoff_multiplier",
                "must be a finite number >= 1",
            ));
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return Err(BreakerConfigError::new("jitter", "must be in [0, 1)"));
        }
        if self.failure_rate.is_none()
            && self.slow_call.is_none()
            && self.consecutive_failures.is_none()
        {
            return Err(BreakerConfigError::new(
                "failure_rate_threshold",
                "no trip rule is set: set a failure rate, a slow-call rule or consecutive failures",
            ));
        }
        Ok(())
    }

    /// Checks the settings and builds the breaker.
    pub fn build(self) -> Result<CircuitBreaker, BreakerConfigError> {
        self.check()?;
        let clock = self.clock.unwrap_or_else(SystemClock::shared);
        let base: Instant = clock.now();
        let rules = Rules {
            failure_rate: self.failure_rate,
            slow_threshold: self.slow_call.map(|(t, _)| t),
            slow_rate: self.slow_call.map(|(_, r)| r),
            consecutive_failures: self.consecutive_failures,
            minimum_calls: match self.window {
                Window::Count(n) => self.minimum_calls.min(n),
                Window::Time(_) => self.minimum_calls,
            },
            open_duration: self.open_duration,
            max_open_duration: self.max_open_duration,
            backoff_multiplier: self.backoff_multiplier,
            jitter: self.jitter,
            half_open_permits: self.half_open_permits,
            classifier: self.classifier,
        };
        Ok(CircuitBreaker::from_inner(Inner::new(
            self.name,
            clock,
            base,
            rules,
            OutcomeWindow::new(self.window),
            self.listeners,
        )))
    }
}
