//! A `[breakers]` entry as the `CircuitBreakerBuilder` it stands for, and a
//! builder's refusal as a problem at the entry's key.

use levee_breaker::{BreakerConfigError, CircuitBreaker, CircuitBreakerBuilder, Window};

use super::error::Problem;
use super::file::{BreakerConfig, BreakerWindow};

/// A breaker's problem at `path`, the builder's setting named as the key.
pub(crate) fn breaker_problem(path: &str, e: BreakerConfigError) -> Problem {
    let key = match e.setting {
        "failure_rate_threshold" => "failure_rate",
        "sliding_window" => "window",
        "slow_call" => "slow_call_threshold",
        other => other,
    };
    Problem::new(format!("{path}.{key}"), e.reason)
}

/// The builder a `[breakers]` entry stands for (no clock).
pub(crate) fn breaker_rules(name: &str, c: &BreakerConfig) -> CircuitBreakerBuilder {
    let mut b = CircuitBreaker::builder().name(name);
    match c.failure_rate {
        Some(0.0) => b = b.no_failure_rate(),
        Some(r) => b = b.failure_rate_threshold(r),
        None => {}
    }
    if let Some(w) = c.window {
        b = b.sliding_window(match w {
            BreakerWindow::Calls(n) => Window::Count(n),
            BreakerWindow::Time(d) => Window::Time(d),
        });
    }
    if let Some(n) = c.minimum_calls {
        b = b.minimum_calls(n);
    }
    if let Some(n) = c.consecutive_failures {
        b = b.consecutive_failures(n);
    }
    match (c.slow_call_threshold, c.slow_call_rate) {
        (Some(t), Some(r)) => b = b.slow_call(t, r),
        // One without the other: the builder's check names it.
        (Some(t), None) => b = b.slow_call(t, 0.0),
        (None, Some(r)) => b = b.slow_call(std::time::Duration::ZERO, r),
        (None, None) => {}
    }
    if let Some(d) = c.open_duration {
        b = b.open_duration(d);
    }
    if let Some(d) = c.max_open_duration {
        b = b.max_open_duration(d);
    }
    if let Some(m) = c.backoff_multiplier {
        b = b.backoff_multiplier(m);
    }
    if let Some(j) = c.jitter {
        b = b.jitter(j);
    }
    if let Some(n) = c.half_open_permits {
        b = b.half_open_permits(n);
    }
    b
}
