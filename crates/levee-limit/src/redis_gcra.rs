//! [`RedisGcra`]: a burst plus a sustained rate (Auth0's "10 at once, then
//! 5 a minute") shared by every replica, through Redis.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use levee_core::{RedisKey, SharedClock, SystemClock};
use levee_redis::{Keyspace, RedisClient, RedisError, Script};

use crate::redis_window::{
    on_redis_error, redis_limiter_setters, script_decision, scripts, time_and_cost,
};
use crate::{Decision, Gcra, LimitError, OnRedisError, RateLimiter, TimeSource};

/// A keyed GCRA limiter whose state lives in Redis: `burst` calls at once,
/// then one more every `replenish_every`, for the whole fleet. The Redis
/// twin of [`Gcra`]; one round trip (a Lua script by `EVALSHA`) per
/// decision, one key per limited key (`{prefix}:{<key>}`, a Cluster hash
/// tag), which expires once its burst is whole again.
///
/// It costs Redis less per decision than [`RedisSlidingWindow`](crate::RedisSlidingWindow)
/// (one value read and written; a refusal writes nothing), and says what
/// an upstream such as Auth0 says ("10 burst, 5 a minute"), which a
/// sliding window cannot.
///
/// Calls go through a [`RedisClient`], as the sliding window's do: under
/// this limiter's timeout and behind the client's breaker, with the same
/// [`OnRedisError`] policies (`Local { replicas }` decides with a local
/// [`Gcra`] of `burst / replicas`, replenished `replicas` times slower).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::num::NonZeroU32;
/// use std::time::Duration;
/// use levee_limit::{RateLimiter, RedisGcra};
/// use levee_redis::RedisClient;
///
/// let client = RedisClient::standalone("redis://127.0.0.1:6379").build()?;
/// // The IdP's own limit, shared by every replica: 10 at once, 5 a minute.
/// let idp = RedisGcra::builder(client, NonZeroU32::new(10).unwrap(), Duration::from_secs(12))
///     .prefix("idp")
///     .build()?;
/// let decision = idp.check("user-42").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisGcra {
    client: RedisClient,
    burst: u32,
    keys: Keyspace,
    time: TimeSource,
    on_error: OnRedisError,
    clock: SharedClock,
    script: Arc<Script>,
    /// How the script packs an admission's answer.
    packing: scripts::Packing,
    fallback: Option<Gcra<Vec<u8>>>,
}

impl std::fmt::Debug for RedisGcra {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisGcra")
            .field("burst", &self.burst)
            .field("keys", &self.keys)
            .field("time", &self.time)
            .field("on_error", &self.on_error)
            .finish_non_exhaustive()
    }
}

/// Builds a [`RedisGcra`].
#[must_use]
#[derive(Debug)]
pub struct RedisGcraBuilder {
    client: RedisClient,
    burst: NonZeroU32,
    replenish_every: Duration,
    prefix: String,
    time: TimeSource,
    on_error: OnRedisError,
    timeout: Duration,
    clock: Option<SharedClock>,
}

impl RedisGcra {
    /// `burst` calls at once, then one more every `replenish_every`,
    /// shared through `client`.
    pub fn builder(
        client: RedisClient,
        burst: NonZeroU32,
        replenish_every: Duration,
    ) -> RedisGcraBuilder {
        RedisGcraBuilder {
            client,
            burst,
            replenish_every,
            prefix: "levee:gcra".into(),
            time: TimeSource::Server,
            on_error: OnRedisError::FailOpen,
            timeout: Duration::from_millis(50),
            clock: None,
        }
    }

    /// The client (with this limiter's timeout): its breaker and stats.
    pub fn client(&self) -> &RedisClient {
        &self.client
    }
}

impl RedisGcraBuilder {
    redis_limiter_setters!("levee:gcra");

    /// Checks the settings and builds the limiter.
    pub fn build(self) -> Result<RedisGcra, LimitError> {
        let invalid = |setting: &'static str, reason: &str| LimitError::InvalidSetting {
            setting,
            reason: reason.into(),
        };
        if self.timeout.is_zero() {
            return Err(invalid("timeout", "must be above zero"));
        }
        let emission = self.replenish_every.as_micros();
        if emission == 0 {
            return Err(invalid("replenish_every", "must be at least 1µs"));
        }
        // The script's arithmetic is in doubles: keep burst * T exact.
        let emission = i64::try_from(emission)
            .ok()
            .filter(|t| t.saturating_mul(i64::from(self.burst.get())) < 1 << 53)
            .ok_or_else(|| {
                invalid(
                    "replenish_every",
                    "burst * replenish_every must stay below 2^53 µs (about 285 years)",
                )
            })?;
        let clock = self.clock.unwrap_or_else(SystemClock::shared);
        let fallback = match self.on_error {
            OnRedisError::Local { replicas: 0 } => {
                return Err(invalid("on_redis_error", "replicas must be at least 1"));
            }
            OnRedisError::Local { replicas } => Some(Gcra::with_clock(
                NonZeroU32::new(self.burst.get() / replicas).unwrap_or(NonZeroU32::MIN),
                self.replenish_every.saturating_mul(replicas),
                clock.clone(),
            )?),
            _ => None,
        };
        Ok(RedisGcra {
            client: self.client.with_command_timeout(self.timeout),
            burst: self.burst.get(),
            keys: Keyspace::new([self.prefix]),
            time: self.time,
            on_error: self.on_error,
            script: Arc::new(Script::new(&scripts::gcra(emission, self.burst.get()))),
            packing: scripts::gcra_packing(emission, self.burst.get()),
            clock,
            fallback,
        })
    }
}

impl RedisGcra {
    async fn ask_redis(&self, key: &[u8], n: u32) -> Result<Decision, RedisError> {
        let call = self.script.call().key(key);
        let call = time_and_cost(call, self.time, &self.clock, n);
        script_decision(self.client.eval(&call).await?, self.packing, self.burst)
    }
}

#[async_trait::async_trait]
impl<K: RedisKey + ?Sized + Sync> RateLimiter<K> for RedisGcra {
    async fn check_n(&self, key: &K, n: NonZeroU32) -> Result<Decision, LimitError> {
        self.decide(key, n).await
    }

    // Not the default (which awaits `check_n`): one boxed future a
    // decision, not two.
    async fn check(&self, key: &K) -> Result<Decision, LimitError> {
        self.decide(key, NonZeroU32::MIN).await
    }
}

impl RedisGcra {
    async fn decide<K: RedisKey + ?Sized>(
        &self,
        key: &K,
        n: NonZeroU32,
    ) -> Result<Decision, LimitError> {
        if n.get() > self.burst {
            return Err(LimitError::InsufficientCapacity {
                requested: n.get(),
                limit: self.burst,
            });
        }
        let key = self.keys.tagged(key);
        match self.ask_redis(&key, n.get()).await {
            Ok(decision) => Ok(decision),
            Err(err) => {
                let local = || self.fallback.as_ref().map(|l| l.check_n(&key, n));
                on_redis_error(self.on_error, self.burst, n, local, err)
            }
        }
    }
}
