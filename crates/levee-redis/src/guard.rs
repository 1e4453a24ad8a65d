//! The circuit breaker in front of Redis: one per client, named after it,
//! logging each state change once.

use std::time::Duration;

use levee_breaker::{BreakerEvent, CircuitBreaker, CircuitBreakerBuilder, State};
use levee_core::SharedClock;

use crate::RedisError;

/// The default breaker: opens after 3 consecutive transport failures (or
/// half the calls failing over the last 100, at least 20) for 5 s, then
/// lets one probe through.
pub(crate) fn default_breaker() -> CircuitBreakerBuilder {
    CircuitBreaker::builder()
        .consecutive_failures(3)
        .open_duration(Duration::from_secs(5))
        .half_open_permits(1)
}

/// Builds the client's breaker from `template` (or the default), named
/// `name`, on `clock` when one is given.
pub(crate) fn build(
    name: &str,
    template: Option<CircuitBreakerBuilder>,
    clock: Option<SharedClock>,
) -> Result<CircuitBreaker, RedisError> {
    let mut builder = template.unwrap_or_else(default_breaker).name(name);
    if let Some(clock) = clock {
        builder = builder.clock(clock);
    }
    builder
        .on_event(log)
        .build()
        .map_err(|e| RedisError::setting("breaker", e.to_string()))
}

/// Logs a state change (never a rejection: those happen per request).
fn log(event: &BreakerEvent) {
    let BreakerEvent::StateChanged {
        name,
        from,
        to,
        open_for,
    } = event
    else {
        return;
    };
    match to {
        State::Open => tracing::warn!(
            client = %name, ?from, ?open_for,
            "levee-redis: Redis breaker opened; Redis is skipped (callers use their fallbacks) until a probe succeeds"
        ),
        State::Closed => {
            tracing::info!(client = %name, ?from, "levee-redis: Redis breaker closed; Redis is used again")
        }
        _ => {
            tracing::debug!(client = %name, ?from, ?to, "levee-redis: Redis breaker state changed")
        }
    }
}
