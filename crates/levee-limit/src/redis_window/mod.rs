//! [`RedisSlidingWindow`]: one limit shared by every replica, through Redis.

mod batch;
pub(crate) mod scripts;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use levee_core::{RedisKey, SharedClock, SystemClock};
use levee_redis::{Keyspace, RedisClient, RedisError, Reply, Script};

use crate::{Decision, LimitError, Quota, RateLimiter, SlidingWindow, WindowMode};

/// Where a [`RedisSlidingWindow`] takes "now" from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeSource {
    /// The Redis server's `TIME`: one clock for every replica, immune to
    /// their skew. The default.
    #[default]
    Server,
    /// The limiter's injected [`Clock`](levee_core::Clock) (its wall time):
    /// for tests and simulated time. Replicas must have synchronised clocks.
    Clock,
}

/// What a [`RedisSlidingWindow`] does when Redis cannot answer in time (or
/// its client's breaker is open, when Redis is not asked at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRedisError {
    /// Admit the request (availability over the limit).
    FailOpen,
    /// Refuse with [`LimitError::Backend`] (the limit over availability).
    FailClosed,
    /// Decide locally with `limit / replicas` per window (at least 1), so
    /// the fleet together stays near the limit.
    Local {
        /// How many replicas share the limit.
        replicas: u32,
    },
}

/// A sliding-window limiter whose state lives in Redis, so every replica
/// shares one limit. One round trip (a Lua script through `EVALSHA`, sent
/// in full on `NOSCRIPT`) per decision; keys are `{prefix}:{<key>}` with the
/// key in a hash tag, so it works on Redis Cluster.
///
/// Calls go through a [`RedisClient`]: under this limiter's timeout and
/// behind the client's breaker, so while Redis is down the
/// [`OnRedisError`] policy answers at once, without waiting on Redis, and
/// nothing is logged per request (the client logs its state changes).
///
/// Modes ([`WindowMode`]): `Log` is exact (at most the limit in any window of
/// the quota's length; memory grows with the limit); `Counter` (the default)
/// admits at most the limit per aligned window, with the same bounded
/// over-admission in unaligned windows as the local counter.
///
/// In Redis, a counter-mode key holds one integer (window index and both
/// windows' counts, packed) for limits below 2^21: a decision reads it with
/// one `GET`, an admission adds its cost with one `INCRBY`, and a refusal
/// writes nothing. Larger limits keep a hash. A key in the other form (a
/// changed limit, or a levee from before this form) is converted, or starts
/// over, on its next check; while a fleet runs both versions, a replica
/// still on the hash form answers a check on a key already converted with
/// its [`OnRedisError`] policy (Redis says `WRONGTYPE`). A key expires two
/// windows after its last window began.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::num::NonZeroU32;
/// use levee_limit::{OnRedisError, Quota, RateLimiter, RedisSlidingWindow};
/// use levee_redis::RedisClient;
///
/// let client = RedisClient::standalone("redis://127.0.0.1:6379").build()?;
/// let limiter = RedisSlidingWindow::builder(client, Quota::per_minute(NonZeroU32::new(5).unwrap()))
///     .prefix("idp-quota")
///     .on_redis_error(OnRedisError::Local { replicas: 3 })
///     .build()?;
/// let decision = limiter.check("user-42").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisSlidingWindow {
    client: RedisClient,
    quota: Quota,
    keys: Keyspace,
    mode: WindowMode,
    time: TimeSource,
    on_error: OnRedisError,
    clock: SharedClock,
    script: Arc<Script>,
    /// How the script packs an admission's answer.
    packing: scripts::Packing,
    fallback: Option<SlidingWindow<Vec<u8>>>,
    /// Concurrent checks sent as one call (`batch_concurrent`).
    batcher: Option<Arc<batch::Batcher>>,
}

impl std::fmt::Debug for RedisSlidingWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSlidingWindow")
            .field("quota", &self.quota)
            .field("keys", &self.keys)
            .field("mode", &self.mode)
            .field("time", &self.time)
            .field("on_error", &self.on_error)
            .finish_non_exhaustive()
    }
}

/// Builds a [`RedisSlidingWindow`].
#[must_use]
#[derive(Debug)]
pub struct RedisSlidingWindowBuilder {
    client: RedisClient,
    quota: Quota,
    prefix: String,
    mode: WindowMode,
    time: TimeSource,
    on_error: OnRedisError,
    timeout: Duration,
    clock: Option<SharedClock>,
    batch: bool,
}

/// The settings every Redis limiter's builder has, with the same docs:
/// `prefix` (its default given), `time_source`, `on_redis_error`,
/// `timeout` and `clock`. Used inside the builder's `impl`.
macro_rules! redis_limiter_setters {
    ($default_prefix:literal) => {
        #[doc = concat!("Key prefix. Default: `\"", $default_prefix, "\"`.")]
        pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
            self.prefix = prefix.into();
            self
        }

        /// Where "now" comes from. Default: [`TimeSource::Server`].
        pub fn time_source(mut self, t: TimeSource) -> Self {
            self.time = t;
            self
        }

        /// What to do when Redis fails. Default: [`OnRedisError::FailOpen`].
        pub fn on_redis_error(mut self, e: OnRedisError) -> Self {
            self.on_error = e;
            self
        }

        /// The budget for one decision's round trip (a handle on the client
        /// with this timeout). Default: 50 ms.
        pub fn timeout(mut self, d: Duration) -> Self {
            self.timeout = d;
            self
        }

        /// The clock for [`TimeSource::Clock`] and the local fallback.
        /// Default: [`SystemClock`].
        pub fn clock(mut self, clock: SharedClock) -> Self {
            self.clock = Some(clock);
            self
        }
    };
}
pub(crate) use redis_limiter_setters;

impl RedisSlidingWindowBuilder {
    redis_limiter_setters!("levee:rl");

    /// The algorithm. Default: [`WindowMode::Counter`].
    pub fn mode(mut self, mode: WindowMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sends checks that arrive while a call to Redis is out as one script
    /// call when it ends (up to 64 keys a call), instead of one call each.
    /// Redis runs a script at a time, so under concurrency its time per
    /// decision is what caps a fleet's decisions: a batch shares the
    /// script's fixed cost (the call, `TIME`, the reply) among its keys.
    /// The decisions are the ones single calls would make; a lone check
    /// still makes its own call at once (nothing waits for a batch to
    /// fill). A queued check waits for a call out to end, then for its
    /// batch's call: up to about twice [`timeout`](Self::timeout) before its
    /// `on_redis_error` policy answers. Counter mode on a standalone Redis
    /// (or a proxy that takes multi-key scripts) only: a Cluster would need
    /// every key of a batch in one slot. Default: off.
    pub fn batch_concurrent(mut self, on: bool) -> Self {
        self.batch = on;
        self
    }

    /// Checks the settings and builds the limiter.
    pub fn build(self) -> Result<RedisSlidingWindow, LimitError> {
        if self.timeout.is_zero() {
            return Err(LimitError::InvalidSetting {
                setting: "timeout",
                reason: "must be above zero".into(),
            });
        }
        if self.quota.window() < Duration::from_millis(1) {
            return Err(LimitError::InvalidSetting {
                setting: "quota.window",
                reason: "must be at least 1ms".into(),
            });
        }
        let clock = self.clock.unwrap_or_else(SystemClock::shared);
        let fallback = match self.on_error {
            OnRedisError::Local { replicas: 0 } => {
                return Err(LimitError::InvalidSetting {
                    setting: "on_redis_error",
                    reason: "replicas must be at least 1".into(),
                });
            }
            OnRedisError::Local { replicas } => {
                let local =
                    Quota::new((self.quota.limit() / replicas).max(1), self.quota.window())?;
                Some(
                    SlidingWindow::builder(local)
                        .mode(self.mode)
                        .clock(clock.clone())
                        .build()?,
                )
            }
            _ => None,
        };
        if self.batch && (self.mode != WindowMode::Counter || self.client.is_cluster()) {
            return Err(LimitError::InvalidSetting {
                setting: "batch_concurrent",
                reason: "batches are sent in counter mode on a standalone Redis only (a Cluster would need every key of a batch in one slot); turn it off".into(),
            });
        }
        let window_us = i64::try_from(self.quota.window().as_micros()).unwrap_or(i64::MAX);
        let client = self.client.with_command_timeout(self.timeout);
        let packing = scripts::counter_packing(window_us);
        let batcher = self.batch.then(|| {
            Arc::new(batch::Batcher::new(
                client.clone(),
                Script::new(&scripts::counter_batch(window_us, self.quota.limit())),
                self.time,
                clock.clone(),
                packing,
                self.quota.limit(),
            ))
        });
        let script = match self.mode {
            WindowMode::Log => scripts::LOG.to_string(),
            WindowMode::Counter => scripts::counter(window_us, self.quota.limit()),
        };
        Ok(RedisSlidingWindow {
            // The handle carries this limiter's timeout: one timer per call.
            client,
            quota: self.quota,
            keys: Keyspace::new([self.prefix]),
            mode: self.mode,
            time: self.time,
            on_error: self.on_error,
            clock,
            script: Arc::new(Script::new(&script)),
            packing,
            fallback,
            batcher,
        })
    }
}

impl RedisSlidingWindow {
    /// A builder sharing `quota` through `client`.
    pub fn builder(client: RedisClient, quota: Quota) -> RedisSlidingWindowBuilder {
        RedisSlidingWindowBuilder {
            client,
            quota,
            prefix: "levee:rl".into(),
            mode: WindowMode::Counter,
            time: TimeSource::Server,
            on_error: OnRedisError::FailOpen,
            timeout: Duration::from_millis(50),
            clock: None,
            batch: false,
        }
    }

    /// The client (with this limiter's timeout): its breaker and stats.
    pub fn client(&self) -> &RedisClient {
        &self.client
    }

    fn now_micros(&self) -> i64 {
        match self.time {
            TimeSource::Server => -1,
            TimeSource::Clock => wall_micros(&self.clock),
        }
    }

    async fn ask_redis(&self, key: &[u8], n: u32) -> Result<Decision, RedisError> {
        let Some(batcher) = &self.batcher else {
            return self.ask_alone(key, n).await;
        };
        match batcher.turn(key, n) {
            batch::Turn::Alone(busy) => {
                let decision = self.ask_alone(key, n).await;
                drop(busy);
                decision
            }
            batch::Turn::Queued(answer) => answer.await.unwrap_or_else(|_| {
                Err(RedisError::UnexpectedReply(
                    "the batch call ended without an answer (its runtime shut down)".into(),
                ))
            }),
        }
    }

    /// One call of the one-key script.
    async fn ask_alone(&self, key: &[u8], n: u32) -> Result<Decision, RedisError> {
        let call = self.script.call().key(key);
        let call = match self.mode {
            WindowMode::Log => {
                let window = i64::try_from(self.quota.window().as_micros()).unwrap_or(i64::MAX);
                call.arg(self.now_micros())
                    .arg(window)
                    .arg(self.quota.limit())
                    .arg(n)
                    .arg(rand_seed())
            }
            // The counter script carries its quota; it reads `now` and the
            // cost only when given (see `scripts::counter`).
            WindowMode::Counter => time_and_cost(call, self.time, &self.clock, n),
        };
        script_decision(
            self.client.eval(&call).await?,
            self.packing,
            self.quota.limit(),
        )
    }

    fn on_failure(
        &self,
        key: Vec<u8>,
        n: NonZeroU32,
        err: RedisError,
    ) -> Result<Decision, LimitError> {
        let local = || self.fallback.as_ref().map(|l| l.check_n(&key, n));
        on_redis_error(self.on_error, self.quota.limit(), n, local, err)
    }
}

/// A counter or GCRA script call's arguments: `now` only with
/// [`TimeSource::Clock`] (`s` stands for the server's time when a cost
/// follows), the cost only when above 1 (see `scripts::counter`).
pub(crate) fn time_and_cost<'a>(
    call: levee_redis::ScriptCall<'a>,
    time: TimeSource,
    clock: &SharedClock,
    n: u32,
) -> levee_redis::ScriptCall<'a> {
    match (time, n) {
        (TimeSource::Server, 1) => call,
        (TimeSource::Server, n) => call.arg("s").arg(n),
        (TimeSource::Clock, 1) => call.arg(wall_micros(clock)),
        (TimeSource::Clock, n) => call.arg(wall_micros(clock)).arg(n),
    }
}

/// The clock's wall time in µs since the Unix epoch.
pub(crate) fn wall_micros(clock: &SharedClock) -> i64 {
    let wall = clock
        .system_now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(wall.as_micros()).unwrap_or(i64::MAX)
}

/// What a Redis limiter answers when Redis could not decide, by its
/// policy; `local` is the `Local` policy's own decision.
pub(crate) fn on_redis_error(
    policy: OnRedisError,
    limit: u32,
    n: NonZeroU32,
    local: impl FnOnce() -> Option<Result<Decision, LimitError>>,
    err: RedisError,
) -> Result<Decision, LimitError> {
    // No log here: this runs per request; the client logs its state
    // changes (breaker opened, connection lost) once each.
    match policy {
        OnRedisError::FailOpen => Ok(Decision {
            allowed: true,
            limit,
            remaining: limit.saturating_sub(n.get()),
            retry_after: None,
            reset_after: Duration::ZERO,
        }),
        OnRedisError::Local { .. } => local().unwrap_or_else(|| Err(backend(err))),
        OnRedisError::FailClosed => Err(backend(err)),
    }
}

fn backend(err: RedisError) -> LimitError {
    LimitError::Backend {
        message: format!("Redis did not decide: {err}"),
        source: Some(Box::new(err)),
    }
}

/// Decodes a limiter script's answer: one packed integer (an admission,
/// see [`scripts::Packing`]) or `{allowed, remaining, retry_us, reset_us}`.
pub(crate) fn script_decision(
    reply: Reply,
    packing: scripts::Packing,
    limit: u32,
) -> Result<Decision, RedisError> {
    match reply {
        Reply::Int(packed) => Ok(packed_admission(packed, packing, limit)),
        other => Ok(array_decision(&other.into_ints()?, limit)),
    }
}

/// Decodes a script's `{allowed, remaining, retry_us, reset_us}`.
fn array_decision(reply: &[i64], limit: u32) -> Decision {
    let at = |i: usize| reply.get(i).copied().unwrap_or(0).max(0) as u64;
    let allowed = at(0) == 1;
    Decision {
        allowed,
        limit,
        remaining: at(1).min(u64::from(limit)) as u32,
        retry_after: (!allowed).then(|| Duration::from_micros(at(2).max(1))),
        reset_after: Duration::from_micros(at(3)),
    }
}

/// Decodes a script's packed admission (see [`scripts::Packing`]).
fn packed_admission(packed: i64, packing: scripts::Packing, limit: u32) -> Decision {
    let (remaining, reset_ms) = packing.unpack(packed);
    Decision {
        allowed: true,
        limit,
        remaining: remaining.min(u64::from(limit)) as u32,
        retry_after: None,
        reset_after: Duration::from_millis(reset_ms),
    }
}

fn rand_seed() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // Unique per call: the process's start time and pid tell replicas
    // apart, the counter tells calls apart.
    static START: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    let start = START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    });
    format!(
        "{start:x}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl RedisSlidingWindow {
    async fn decide<K: RedisKey + ?Sized>(
        &self,
        key: &K,
        n: NonZeroU32,
    ) -> Result<Decision, LimitError> {
        if n.get() > self.quota.limit() {
            return Err(LimitError::InsufficientCapacity {
                requested: n.get(),
                limit: self.quota.limit(),
            });
        }
        let key = self.keys.tagged(key);
        match self.ask_redis(&key, n.get()).await {
            Ok(decision) => Ok(decision),
            Err(err) => self.on_failure(key, n, err),
        }
    }
}

#[async_trait::async_trait]
impl<K: RedisKey + ?Sized + Sync> RateLimiter<K> for RedisSlidingWindow {
    async fn check_n(&self, key: &K, n: NonZeroU32) -> Result<Decision, LimitError> {
        self.decide(key, n).await
    }

    // Not the default (which awaits `check_n`): one boxed future a
    // decision, not two.
    async fn check(&self, key: &K) -> Result<Decision, LimitError> {
        self.decide(key, NonZeroU32::MIN).await
    }
}
