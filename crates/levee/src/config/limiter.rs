//! A `[limiters]` entry built with the builder of its `kind`:
//! `SlidingWindow::builder`, `Gcra::new`, `RedisSlidingWindow::builder`,
//! `RedisGcra::builder`.

use levee_limit::{Gcra, LimitError, Quota, SlidingWindow, WindowMode};

use super::ConfigKey;
use super::build::{Components, at};
use super::error::ConfigFileError;
use super::file::{LimiterConfig, LimiterKind, WindowModeName};
use super::parts::AnyLimiter;

/// A limiter's problem at `path`, the builder's setting named as the key.
pub(crate) fn limit_err(path: &str, e: LimitError) -> ConfigFileError {
    match e {
        LimitError::InvalidSetting { setting, reason } => {
            let key = match setting {
                "quota.limit" => "limit",
                "quota.window" | "replenish_every" => "window",
                other => other,
            };
            at(path, key, reason)
        }
        other => ConfigFileError::one(path, other.to_string()),
    }
}

pub(crate) fn build<K: ConfigKey>(
    parts: &Components,
    name: &str,
    c: &LimiterConfig,
) -> Result<AnyLimiter<K>, ConfigFileError> {
    let path = format!("limiters.{name}");
    let window = c
        .window
        .ok_or_else(|| at(&path, "window", "missing; this key is required"))?;
    let quota = Quota::new(c.limit, window).map_err(|e| limit_err(&path, e))?;
    let mode = match c.mode {
        Some(WindowModeName::Log) => WindowMode::Log,
        _ => WindowMode::Counter,
    };
    match c.kind.unwrap_or_default() {
        LimiterKind::SlidingWindow => {
            let mut b = SlidingWindow::builder(quota).mode(mode);
            if let Some(d) = c.idle_timeout {
                b = b.idle_timeout(d);
            }
            if let Some(clock) = parts.clock_ref() {
                b = b.clock(clock.clone());
            }
            b.build()
                .map(AnyLimiter::SlidingWindow)
                .map_err(|e| limit_err(&path, e))
        }
        LimiterKind::Gcra => {
            let (burst, every) = gcra_shape(c, &quota, window);
            let g = match parts.clock_ref() {
                Some(clock) => Gcra::with_clock(burst, every, clock.clone()),
                None => Gcra::new(burst, every),
            };
            g.map(AnyLimiter::Gcra).map_err(|e| limit_err(&path, e))
        }
        LimiterKind::RedisSlidingWindow | LimiterKind::RedisGcra => {
            redis_limiter(parts, &path, c, quota, mode)
        }
    }
}

/// A GCRA's burst (`burst`, else `limit`) and interval (`window / limit`).
fn gcra_shape(
    c: &LimiterConfig,
    quota: &Quota,
    window: std::time::Duration,
) -> (std::num::NonZeroU32, std::time::Duration) {
    let burst = c
        .burst
        .and_then(std::num::NonZeroU32::new)
        .unwrap_or(quota.limit_nonzero());
    (burst, window / c.limit.max(1))
}

/// Applies a `[limiters]` entry's Redis settings to a Redis limiter's
/// builder (both have the same setters).
#[cfg(feature = "redis")]
macro_rules! redis_settings {
    ($b:ident, $c:expr, $parts:expr) => {{
        use super::file::{OnRedisErrorName, TimeSourceName};
        use levee_limit::{OnRedisError, TimeSource};
        if let Some(p) = &$c.prefix {
            $b = $b.prefix(p.clone());
        }
        $b = $b.on_redis_error(match $c.on_redis_error {
            Some(OnRedisErrorName::FailClosed) => OnRedisError::FailClosed,
            Some(OnRedisErrorName::Local) => OnRedisError::Local {
                replicas: $c.replicas.unwrap_or(1),
            },
            _ => OnRedisError::FailOpen,
        });
        if $c.time_source == Some(TimeSourceName::Clock) {
            $b = $b.time_source(TimeSource::Clock);
        }
        if let Some(d) = $c.timeout {
            $b = $b.timeout(d);
        }
        if let Some(clock) = $parts.clock_ref() {
            $b = $b.clock(clock.clone());
        }
    }};
}

#[cfg(feature = "redis")]
fn redis_limiter<K: ConfigKey>(
    parts: &Components,
    path: &str,
    c: &LimiterConfig,
    quota: Quota,
    mode: WindowMode,
) -> Result<AnyLimiter<K>, ConfigFileError> {
    use levee_limit::{RedisGcra, RedisSlidingWindow};
    let redis = c
        .redis
        .as_deref()
        .ok_or_else(|| at(path, "redis", "missing: a [redis] entry is needed"))?;
    let client = parts.redis(redis)?;
    if c.kind == Some(LimiterKind::RedisGcra) {
        let (burst, every) = gcra_shape(c, &quota, quota.window());
        let mut b = RedisGcra::builder(client, burst, every);
        redis_settings!(b, c, parts);
        return b
            .build()
            .map(AnyLimiter::RedisGcra)
            .map_err(|e| limit_err(path, e));
    }
    let mut b = RedisSlidingWindow::builder(client, quota)
        .mode(mode)
        .batch_concurrent(c.batch.unwrap_or(false));
    redis_settings!(b, c, parts);
    b.build()
        .map(AnyLimiter::Redis)
        .map_err(|e| limit_err(path, e))
}

#[cfg(not(feature = "redis"))]
fn redis_limiter<K: ConfigKey>(
    _: &Components,
    path: &str,
    _: &LimiterConfig,
    _: Quota,
    _: WindowMode,
) -> Result<AnyLimiter<K>, ConfigFileError> {
    Err(ConfigFileError::one(
        format!("{path}.kind"),
        "this build of levee has no `redis` feature",
    ))
}
