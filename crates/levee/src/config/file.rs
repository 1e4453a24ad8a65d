//! The sections of a config file, as serde structs. Every setting is
//! optional unless its doc says otherwise; an absent one takes the default
//! of the builder it sets (docs/config.md lists them).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration;
use super::secret::RedisUrl;

/// Every component of a service's resilience stack, by name: Redis
/// connections, caches, rate limiters, circuit breakers, upstream quotas
/// and the pipelines that compose them. Load it with
/// [`Config::from_path`](crate::Config::from_path) (a TOML file and the
/// `LEVEE_*` environment) or [`str::parse`]; build its parts with
/// [`Config::components`](crate::Config::components).
///
/// `Debug` never prints a secret: secrets are named (an environment
/// variable, a file), not held, and a URL's password is redacted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Redis connections (`[redis.main]`), shared by every part naming them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub redis: BTreeMap<String, RedisConfig>,
    /// Tiered caches (`[caches.userinfo]`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub caches: BTreeMap<String, CacheConfig>,
    /// Rate limiters (`[limiters.api]`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limiters: BTreeMap<String, LimiterConfig>,
    /// Circuit breakers (`[breakers.idp]`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub breakers: BTreeMap<String, BreakerConfig>,
    /// Upstream quotas learned from responses (`[quotas.idp]`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub quotas: BTreeMap<String, QuotaConfig>,
    /// Pipelines composing the parts above (`[pipelines.userinfo]`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pipelines: BTreeMap<String, PipelineConfig>,
    /// Deployment secrets that hash bearer tokens into cache keys
    /// (`[key_hashers.tokens]`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub key_hashers: BTreeMap<String, KeyHasherConfig>,
}

/// A Redis connection: `RedisClient::standalone(url)` and its builder.
/// Exactly one of `url`, `url_env`, `url_file`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://host:port/db` (or `rediss://`). Credentials belong in
    /// `password_env`/`password_file` (or `url_env`), not here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<RedisUrl>,
    /// The environment variable holding the URL (credentials included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_env: Option<String>,
    /// The file holding the URL (credentials included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_file: Option<PathBuf>,
    /// The ACL user name (Redis 6+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The environment variable holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// The file holding the password (a mounted secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// The client's name in metrics and logs. Default: the entry's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// How long opening a connection may take. Default: 1s.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub connect_timeout: Option<Duration>,
    /// How long one command may take. Default: 500ms.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub command_timeout: Option<Duration>,
    /// A `[breakers]` entry whose rules guard this client. Default: the
    /// client's own (3 consecutive failures, 5s open).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<String>,
}

/// A tiered cache: `TieredCache::builder(name)`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CacheConfig {
    /// How long a loaded value is fresh. Default: 60s.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub ttl: Option<Duration>,
    /// Entries held in memory. Default: 10000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l1_capacity: Option<u64>,
    /// How long an L1 copy is trusted before L2 is asked. Default: `ttl`.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub l1_ttl: Option<Duration>,
    /// Serve stale at once and refresh in the background this long after expiry.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub stale_while_revalidate: Option<Duration>,
    /// Stale tiers by name, each the longest staleness it serves.
    #[serde(
        default,
        with = "duration::map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub stale_tiers: BTreeMap<String, Duration>,
    /// No new load of a key for this long after one failed. Default: 5s.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub failure_backoff: Option<Duration>,
    /// How long an absent value is cached. Default: 30s.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub negative_ttl: Option<Duration>,
    /// Callers stop waiting for a load after this long. Default: wait.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub hard_timeout: Option<Duration>,
    /// Callers holding a stale value wait this long, then get it. Default: wait.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub soft_timeout: Option<Duration>,
    /// Random shortening of each TTL, a fraction in [0, 1). Default: 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_jitter: Option<f64>,
    /// XFetch early refresh weight; 0 is off. Default: 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_refresh: Option<f64>,
    /// With an L2: one replica loads while the others wait this long for it.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub load_lock: Option<Duration>,
    /// How often a waiting replica looks at L2. Default: 20ms.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub load_lock_poll: Option<Duration>,
    /// The first part of the cache's Redis keys. Default: `levee`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The value schema version in Redis keys. Default: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<u32>,
    /// With an L2: publish and follow invalidations. Default: true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backplane: Option<bool>,
    /// A `[redis]` entry: the L2 (shared by every replica). Default: no L2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<String>,
    /// Each L2 call fails after this long. Default: 50ms.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub l2_timeout: Option<Duration>,
    /// Larger values are not stored in L2. Default: 1048576.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_value_bytes: Option<u64>,
    /// How L2 values are encoded: `json` or `cbor`. Default: `json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<CodecName>,
    /// The environment variable holding the L2 signing secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key_env: Option<String>,
    /// The file holding the L2 signing secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key_file: Option<PathBuf>,
}

/// The L2 codec's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CodecName {
    /// JSON.
    Json,
    /// A binary header and CBOR (feature `cbor`).
    Cbor,
}

/// Which rate limiter a `[limiters]` entry builds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LimiterKind {
    /// `SlidingWindow`: local to this process.
    #[default]
    SlidingWindow,
    /// `Gcra`: a burst, then one call every `window / limit`.
    Gcra,
    /// `RedisSlidingWindow`: one limit for every replica.
    RedisSlidingWindow,
    /// `RedisGcra`: a burst, then one call every `window / limit`, for
    /// every replica.
    RedisGcra,
}

impl LimiterKind {
    /// Whether the limiter keeps its state in Redis.
    pub fn is_redis(self) -> bool {
        matches!(
            self,
            LimiterKind::RedisSlidingWindow | LimiterKind::RedisGcra
        )
    }

    /// Whether the limiter is a GCRA (has a burst, no window mode).
    pub fn is_gcra(self) -> bool {
        matches!(self, LimiterKind::Gcra | LimiterKind::RedisGcra)
    }
}

/// A rate limiter: `limit` calls per `window`, per key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LimiterConfig {
    /// The algorithm. Default: `sliding_window`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<LimiterKind>,
    /// Calls admitted per window (required).
    #[serde(default)]
    pub limit: u32,
    /// The window (required).
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub window: Option<Duration>,
    /// `gcra` and `redis_gcra` only: calls admitted at once. Default: `limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Window algorithm: `counter` or `log` (exact). Default: `counter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<WindowModeName>,
    /// `sliding_window` only: drop a key's state after this long unused.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub idle_timeout: Option<Duration>,
    /// Redis limiters only (required there): a `[redis]` entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<String>,
    /// Redis limiters only: key prefix. Default: `levee:rl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Redis limiters only: `fail_open`, `fail_closed` or `local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_redis_error: Option<OnRedisErrorName>,
    /// With `on_redis_error = "local"`: replicas sharing the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Redis limiters only: `server` (Redis TIME) or `clock`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_source: Option<TimeSourceName>,
    /// Redis limiters only: one decision's budget. Default: 50ms.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// `redis_sliding_window` in counter mode only: send concurrent checks
    /// as one script call (`batch_concurrent`). Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<bool>,
}

/// A window algorithm's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WindowModeName {
    /// Two weighted buckets.
    Counter,
    /// Every admission's timestamp (exact).
    Log,
}

/// What a Redis limiter does when Redis cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OnRedisErrorName {
    /// Admit.
    FailOpen,
    /// Refuse.
    FailClosed,
    /// Decide locally with `limit / replicas`.
    Local,
}

/// Where a Redis limiter reads "now".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TimeSourceName {
    /// The Redis server's TIME.
    Server,
    /// The limiter's clock.
    Clock,
}

/// A circuit breaker: `CircuitBreaker::builder().name(entry)`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Trip at this failure rate (0 < r <= 1); 0 turns the rule off. Default: 0.5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_rate: Option<f64>,
    /// The window rates are computed over: a number of calls (`100`) or a
    /// duration (`"60s"`). Default: 100 calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<BreakerWindow>,
    /// Calls the window must hold before a rate can trip. Default: 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_calls: Option<u32>,
    /// Trip after this many failures in a row. Default: no such rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
    /// Calls slower than this are slow (with `slow_call_rate`).
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub slow_call_threshold: Option<Duration>,
    /// Trip at this slow-call rate (with `slow_call_threshold`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_call_rate: Option<f64>,
    /// How long the breaker stays open. Default: 30s.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub open_duration: Option<Duration>,
    /// The cap on a backed-off open duration. Default: none.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_open_duration: Option<Duration>,
    /// Each reopening multiplies the open duration by this (>= 1). Default: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_multiplier: Option<f64>,
    /// Spread of each open duration, a fraction in [0, 1). Default: 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<f64>,
    /// Probe calls admitted half-open. Default: 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub half_open_permits: Option<u32>,
}

/// A breaker's window: calls or time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakerWindow {
    /// The last `n` calls.
    Calls(u32),
    /// The calls of the last duration.
    Time(Duration),
}

impl Serialize for BreakerWindow {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            BreakerWindow::Calls(n) => s.serialize_u32(*n),
            BreakerWindow::Time(d) => s.serialize_str(&duration::format(*d)),
        }
    }
}

impl<'de> Deserialize<'de> for BreakerWindow {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = BreakerWindow;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number of calls or a duration")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<BreakerWindow, E> {
                u32::try_from(n)
                    .map(BreakerWindow::Calls)
                    .map_err(|_| E::custom(format!("{n} calls is too many")))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<BreakerWindow, E> {
                u64::try_from(n)
                    .map_err(|_| E::custom(format!("expected a positive integer, got {n}")))
                    .and_then(|n| self.visit_u64(n))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<BreakerWindow, E> {
                duration::parse(s)
                    .map(BreakerWindow::Time)
                    .map_err(E::custom)
            }
        }
        d.deserialize_any(Visit)
    }
}

/// An upstream quota: `UpstreamQuota::builder()`, shared through Redis
/// when `redis` is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct QuotaConfig {
    /// How long a 429 without timing headers holds a key. Default: 1s.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub default_hold: Option<Duration>,
    /// The longest hold, whatever the upstream says. Default: 24h.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_hold: Option<Duration>,
    /// A `[redis]` entry: every replica sees the holds. Default: local.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<String>,
    /// With `redis`: the key prefix. Default: `levee:quota:<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// With `redis`: each Redis command's budget. Default: 50ms.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
}

/// A pipeline: `Levee::builder(name)` with the named parts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PipelineConfig {
    /// A `[caches]` entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
    /// A `[quotas]` entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<String>,
    /// A `[limiters]` entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limiter: Option<String>,
    /// A `[breakers]` entry (shared with every part naming it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<String>,
    /// Bulkhead: at most this many loads at once. Default: no bulkhead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// Bulkhead: callers waiting for a slot. Default: 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue: Option<u32>,
    /// How long a call waits in the bulkhead's queue. Default: 1s.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub queue_timeout: Option<Duration>,
    /// The longest a load may take, retries included. Default: none.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// The longest one attempt may take. Default: none.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub attempt_timeout: Option<Duration>,
    /// How failed attempts are retried. Default: no retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryConfig>,
}

/// A pipeline's retries: `RetryPolicy::new(max_attempts)`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RetryConfig {
    /// Attempts in all, the first included (required; 1: no retry).
    #[serde(default)]
    pub max_attempts: u32,
    /// The first retry's backoff bound. Default: 50ms.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub base_delay: Option<Duration>,
    /// The cap on the backoff. Default: 5s.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_delay: Option<Duration>,
    /// A longer Retry-After ends the call instead. Default: 30s.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_retry_after: Option<Duration>,
    /// Whether a retry budget applies. Default: true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<bool>,
    /// Budget: retries as a fraction of recent calls. Default: 0.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_ratio: Option<f64>,
    /// Budget: retries allowed a second anyway. Default: 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_min_per_second: Option<u32>,
    /// Budget: how far back calls count. Default: 10s.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub budget_window: Option<Duration>,
}

/// The deployment secret of `KeyHasher::new`: exactly one of the two.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct KeyHasherConfig {
    /// The environment variable holding the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// The file holding the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
}
