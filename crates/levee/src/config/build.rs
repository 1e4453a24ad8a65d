//! [`Components`]: the parts a [`Config`] names, built on demand with the
//! same builders a program would call. Breakers, Redis clients, caches,
//! limiters and quotas are built once per name and shared (a breaker named
//! by two pipelines is one breaker; one Redis client serves every part
//! naming it).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use levee_breaker::CircuitBreaker;
use levee_cache::TieredCache;
use levee_core::{KeyHasher, SharedClock};
use levee_limit::{ConcurrencyLimit, UpstreamQuota};

use crate::{Levee, LeveeBuilder, RetryBudget, RetryPolicy};

use super::breaker::{breaker_problem, breaker_rules};
use super::error::{ConfigFileError, Problem};
use super::file::{Config, RetryConfig};
use super::limiter::limit_err;
use super::parts::{AnyLimiter, AnyQuota};
use super::{ConfigKey, ConfigValue, secret};

/// The parts of a [`Config`], built on demand: from
/// [`Config::components`]. Cheap to share behind an `Arc`; every method
/// takes `&self`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config: levee::Config = r#"
///     [breakers.idp]
///     consecutive_failures = 5
///     open_duration = "30s"
///     [caches.userinfo]
///     ttl = "5m"
///     stale_tiers = { secondary = "15m", emergency = "1h" }
///     [pipelines.userinfo]
///     cache = "userinfo"
///     breaker = "idp"
///     retry = { max_attempts = 2 }
/// "#.parse()?;
/// let parts = config.components();
/// let userinfo = parts.pipeline::<String, String, std::io::Error>("userinfo")?.build()?;
/// let got = userinfo.get("alice".into(), || async { Ok("{}".to_string()) }).await?;
/// assert!(got.is_some());
/// assert_eq!(parts.breaker("idp")?.name(), "idp");
/// # Ok(()) }
/// ```
pub struct Components {
    config: Arc<Config>,
    clock: Option<SharedClock>,
    built: Mutex<HashMap<PartId, Box<dyn Any + Send + Sync>>>,
}

/// A built part: its section, its name, its type (a cache of `String`s and
/// one of `u64`s under one name are two caches).
type PartId = (&'static str, String, TypeId);

impl std::fmt::Debug for Components {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Components")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The part `r` built, if any; its problems added to `problems`.
fn take<T>(problems: &mut Vec<Problem>, r: Option<Result<T, ConfigFileError>>) -> Option<T> {
    match r? {
        Ok(t) => Some(t),
        Err(e) => {
            problems.extend(e.problems().iter().cloned());
            None
        }
    }
}

/// A problem at `path` from a builder's error about `setting`.
pub(crate) fn at(path: &str, setting: &str, reason: impl std::fmt::Display) -> ConfigFileError {
    ConfigFileError::one(format!("{path}.{setting}"), reason.to_string())
}

/// A part asked for by a name its section does not define.
pub(crate) fn undefined(section: &str, name: &str, defined: Vec<&String>) -> ConfigFileError {
    let list = match defined.as_slice() {
        [] => format!("the config has no [{section}] entries"),
        some => {
            let names: Vec<&str> = some.iter().map(|s| s.as_str()).collect();
            format!("defined: {}", names.join(", "))
        }
    };
    ConfigFileError::one(
        format!("{section}.{name}"),
        format!("not defined in the config ({list})"),
    )
}

impl Components {
    pub(crate) fn new(config: Config) -> Self {
        Components {
            config: Arc::new(config),
            clock: None,
            built: Mutex::new(HashMap::new()),
        }
    }

    /// The time source of every part built from here on (a `ManualClock`
    /// runs a simulation). Default: each builder's own (the system clock).
    #[must_use]
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The clock given to [`clock`](Self::clock), if any.
    pub(crate) fn clock_ref(&self) -> Option<&SharedClock> {
        self.clock.as_ref()
    }

    /// The configuration the parts come from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The part `section.name` of type `T`, built by `make` the first time.
    fn shared<T: Clone + Send + Sync + 'static>(
        &self,
        section: &'static str,
        name: &str,
        make: impl FnOnce() -> Result<T, ConfigFileError>,
    ) -> Result<T, ConfigFileError> {
        let id = (section, name.to_string(), TypeId::of::<T>());
        let lock = || self.built.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = lock().get(&id).and_then(|b| b.downcast_ref::<T>()) {
            return Ok(t.clone());
        }
        // Built without the lock held: `make` may build the parts it names.
        let t = make()?;
        lock()
            .entry(id)
            .or_insert_with(|| Box::new(t))
            .downcast_ref::<T>()
            .cloned()
            .ok_or_else(|| ConfigFileError::one(section, "internal: a part of another type"))
    }

    /// The circuit breaker `[breakers.<name>]`, one per name.
    pub fn breaker(&self, name: &str) -> Result<CircuitBreaker, ConfigFileError> {
        let c =
            self.config.breakers.get(name).ok_or_else(|| {
                undefined("breakers", name, self.config.breakers.keys().collect())
            })?;
        self.shared("breakers", name, || {
            let mut b = breaker_rules(name, c);
            if let Some(clock) = &self.clock {
                b = b.clock(clock.clone());
            }
            b.build().map_err(|e| {
                ConfigFileError::new(vec![breaker_problem(&format!("breakers.{name}"), e)])
            })
        })
    }

    /// The Redis client `[redis.<name>]`, one per name (one connection and
    /// one breaker for every part naming it). Reads its secrets; does no
    /// I/O: the connection opens on the first command.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis(&self, name: &str) -> Result<levee_redis::RedisClient, ConfigFileError> {
        let c = self
            .config
            .redis
            .get(name)
            .ok_or_else(|| undefined("redis", name, self.config.redis.keys().collect()))?;
        self.shared("redis", name, || super::connection::build(self, name, c))
    }

    /// The hasher `[key_hashers.<name>]`: bearer tokens become
    /// `SensitiveKey`s under the deployment secret it reads.
    pub fn key_hasher(&self, name: &str) -> Result<KeyHasher, ConfigFileError> {
        let c = self.config.key_hashers.get(name).ok_or_else(|| {
            undefined(
                "key_hashers",
                name,
                self.config.key_hashers.keys().collect(),
            )
        })?;
        let path = format!("key_hashers.{name}.secret");
        let secret = secret::read(&path, c.secret_env.as_deref(), c.secret_file.as_deref())
            .map_err(|p| ConfigFileError::new(vec![p]))?
            .ok_or_else(|| ConfigFileError::one(&path, "set secret_env or secret_file"))?;
        Ok(KeyHasher::new(secret.expose()))
    }

    /// The rate limiter `[limiters.<name>]`, one per name and key type.
    pub fn limiter<K: ConfigKey>(&self, name: &str) -> Result<AnyLimiter<K>, ConfigFileError> {
        let c =
            self.config.limiters.get(name).ok_or_else(|| {
                undefined("limiters", name, self.config.limiters.keys().collect())
            })?;
        self.shared("limiters", name, || super::limiter::build(self, name, c))
    }

    /// The upstream quota `[quotas.<name>]`, one per name and key type;
    /// shared through Redis when it names a connection.
    pub fn quota<K: ConfigKey>(&self, name: &str) -> Result<AnyQuota<K>, ConfigFileError> {
        let c = self
            .config
            .quotas
            .get(name)
            .ok_or_else(|| undefined("quotas", name, self.config.quotas.keys().collect()))?;
        self.shared("quotas", name, || {
            let mut b = UpstreamQuota::<K>::builder();
            if let Some(d) = c.default_hold {
                b = b.default_hold(d);
            }
            if let Some(d) = c.max_hold {
                b = b.max_hold(d);
            }
            if let Some(clock) = &self.clock {
                b = b.clock(clock.clone());
            }
            let local = b.build();
            match &c.redis {
                None => Ok(AnyQuota::Local(local)),
                #[cfg(feature = "redis")]
                Some(redis) => {
                    let prefix = c
                        .prefix
                        .clone()
                        .unwrap_or_else(|| format!("levee:quota:{name}"));
                    let mut shared = local.redis(self.redis(redis)?, prefix);
                    if let Some(d) = c.timeout {
                        shared = shared.timeout(d);
                    }
                    Ok(AnyQuota::Shared(shared))
                }
                #[cfg(not(feature = "redis"))]
                Some(_) => Err(at(
                    &format!("quotas.{name}"),
                    "redis",
                    "this build of levee has no `redis` feature",
                )),
            }
        })
    }

    /// The cache `[caches.<name>]`, one per name and key and value types.
    /// With `redis`, its L2 is on that connection (needs a tokio runtime
    /// for the backplane, as `TieredCacheBuilder::build` does).
    pub fn cache<K: ConfigKey, V: ConfigValue>(
        &self,
        name: &str,
    ) -> Result<TieredCache<K, V>, ConfigFileError> {
        let c = self
            .config
            .caches
            .get(name)
            .ok_or_else(|| undefined("caches", name, self.config.caches.keys().collect()))?;
        self.shared("caches", name, || {
            super::cache::build(self, name, c, self.clock.as_ref())
        })
    }

    /// A builder for the pipeline `[pipelines.<name>]` with every part it
    /// names; add what a file cannot say (`map`, `http`, `classify`,
    /// `fallback`) and `build()`. A new pipeline each call, over the same
    /// shared parts.
    pub fn pipeline<K: ConfigKey, V: ConfigValue, E: Send + Sync + 'static>(
        &self,
        name: &str,
    ) -> Result<LeveeBuilder<K, V, E>, ConfigFileError> {
        let p =
            self.config.pipelines.get(name).ok_or_else(|| {
                undefined("pipelines", name, self.config.pipelines.keys().collect())
            })?;
        let path = format!("pipelines.{name}");
        let mut problems = Vec::new();
        let cache = take(
            &mut problems,
            p.cache.as_deref().map(|n| self.cache::<K, V>(n)),
        );
        let quota = take(
            &mut problems,
            p.quota.as_deref().map(|n| self.quota::<K>(n)),
        );
        let limiter = take(
            &mut problems,
            p.limiter.as_deref().map(|n| self.limiter::<K>(n)),
        );
        let breaker = take(&mut problems, p.breaker.as_deref().map(|n| self.breaker(n)));
        let bulkhead = take(
            &mut problems,
            p.max_in_flight.map(|n| {
                let queue = p.max_queue.unwrap_or(0);
                ConcurrencyLimit::new(n as usize, queue as usize).map_err(|e| limit_err(&path, e))
            }),
        );
        if !problems.is_empty() {
            return Err(ConfigFileError::new(problems));
        }
        let mut b = Levee::<K, V, E>::builder(name);
        if let Some(clock) = &self.clock {
            b = b.clock(clock.clone());
        }
        if let Some(c) = cache {
            b = b.cache(c);
        }
        if let Some(q) = quota {
            b = b.upstream_quota(q);
        }
        if let Some(l) = limiter {
            b = b.rate_limit(l);
        }
        if let Some(c) = breaker {
            b = b.circuit_breaker(c);
        }
        if let Some(l) = bulkhead {
            b = b.concurrency(l);
        }
        if let Some(d) = p.queue_timeout {
            b = b.queue_timeout(d);
        }
        if let Some(d) = p.timeout {
            b = b.timeout(d);
        }
        if let Some(d) = p.attempt_timeout {
            b = b.attempt_timeout(d);
        }
        if let Some(r) = &p.retry {
            b = b.retry(retry_policy(r));
        }
        Ok(b)
    }
}

/// The `RetryPolicy` a `[pipelines.<name>.retry]` table stands for.
fn retry_policy(r: &RetryConfig) -> RetryPolicy {
    let mut policy = RetryPolicy::new(r.max_attempts);
    if let Some(d) = r.base_delay {
        policy = policy.base_delay(d);
    }
    if let Some(d) = r.max_delay {
        policy = policy.max_delay(d);
    }
    if let Some(d) = r.max_retry_after {
        policy = policy.max_retry_after(d);
    }
    policy = match r.budget {
        Some(false) => policy.no_budget(),
        _ if r.budget_ratio.is_some()
            || r.budget_min_per_second.is_some()
            || r.budget_window.is_some() =>
        {
            policy.budget(RetryBudget::new(
                r.budget_ratio.unwrap_or(0.2),
                r.budget_min_per_second.unwrap_or(10),
                r.budget_window
                    .unwrap_or(std::time::Duration::from_secs(10)),
            ))
        }
        _ => policy,
    };
    policy
}
