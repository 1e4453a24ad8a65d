//! [`Config`]: every cache, limiter, breaker, upstream quota, Redis
//! connection and pipeline of a service from one TOML file, with
//! environment overrides (feature `config`).
//!
//! ```toml
//! [redis.main]
//! url = "redis://cache:6379/0"
//! password_env = "REDIS_PASSWORD"       # secrets by name, never inline
//!
//! [caches.userinfo]
//! ttl = "5m"
//! stale_tiers = { secondary = "15m", emergency = "1h" }
//! redis = "main"
//!
//! [limiters.api]
//! limit = 100
//! window = "1m"
//!
//! [breakers.idp]
//! consecutive_failures = 5
//! open_duration = "30s"
//!
//! [pipelines.userinfo]
//! cache = "userinfo"
//! breaker = "idp"
//! retry = { max_attempts = 2 }
//! ```
//!
//! [`Config::from_path`] reads the file, then the environment over it:
//! `LEVEE_LIMITERS__API__LIMIT=200` sets `[limiters.api] limit` (the TOML
//! path in capitals, `__` between parts). Durations are strings: `"250ms"`,
//! `"5m"`, `"1h 30m"`.
//!
//! Loading checks everything at once and reports every problem with the
//! full path of its key: a bad value (`pipelines.userinfo.retry.max_attempts:
//! expected a positive integer, got -1`), an unknown key (with the nearest
//! known one), a missing one, a reference to an entry that is not defined,
//! a key that does not apply. [`Config::components`] then builds the parts
//! with the same builders a program calls: `pipeline::<K, V, E>("userinfo")`
//! gives a `LeveeBuilder` to finish with what a file cannot say (`map`,
//! `http`, `fallback`).
//!
//! Secrets (a Redis password or URL with credentials, an L2 signing key, a
//! `KeyHasher` secret) are named, never held: `password_env = "VAR"` or
//! `password_file = "/run/secrets/redis"`; they are read when the part is
//! built, and a missing one is an error naming the variable or file.
//! `Debug` of a config never prints a secret. Every key, its default and
//! meaning: docs/config.md in the repository.

mod breaker;
mod build;
mod cache;
#[cfg(feature = "redis")]
mod connection;
mod duration;
mod env;
mod error;
mod file;
mod limiter;
mod parts;
mod rules;
mod schema;
mod secret;
mod validate;

use std::path::Path;
use std::str::FromStr;

pub use build::Components;
pub use env::{ENV_PREFIX, env_provider};
pub use error::{ConfigFileError, Problem};
pub use file::{
    BreakerConfig, BreakerWindow, CacheConfig, CodecName, Config, KeyHasherConfig, LimiterConfig,
    LimiterKind, OnRedisErrorName, PipelineConfig, QuotaConfig, RedisConfig, RetryConfig,
    TimeSourceName, WindowModeName,
};
pub use parts::{AnyLimiter, AnyQuota};
pub use secret::RedisUrl;

/// What a key of a configured part must be: a pipeline key, and with the
/// `redis` feature a [`RedisKey`](levee_core::RedisKey) too (a config may
/// put it in Redis). `String` and `SensitiveKey` are.
#[cfg(feature = "redis")]
pub trait ConfigKey: crate::PipelineKey + levee_core::RedisKey {}
#[cfg(feature = "redis")]
impl<K: crate::PipelineKey + levee_core::RedisKey> ConfigKey for K {}
/// What a key of a configured part must be: a pipeline key, and with the
/// `redis` feature a `RedisKey` too (a config may put it in Redis).
#[cfg(not(feature = "redis"))]
pub trait ConfigKey: crate::PipelineKey {}
#[cfg(not(feature = "redis"))]
impl<K: crate::PipelineKey> ConfigKey for K {}

/// What a configured cache's value must be: shareable, and with the
/// `redis` feature serde too (a config may give the cache an L2).
#[cfg(feature = "redis")]
pub trait ConfigValue:
    Clone + Send + Sync + serde::Serialize + serde::de::DeserializeOwned + 'static
{
}
#[cfg(feature = "redis")]
impl<V> ConfigValue for V where
    V: Clone + Send + Sync + serde::Serialize + serde::de::DeserializeOwned + 'static
{
}
/// What a configured cache's value must be: shareable, and with the
/// `redis` feature serde too (a config may give the cache an L2).
#[cfg(not(feature = "redis"))]
pub trait ConfigValue: Clone + Send + Sync + 'static {}
#[cfg(not(feature = "redis"))]
impl<V: Clone + Send + Sync + 'static> ConfigValue for V {}

impl Config {
    /// Reads the TOML file at `path`, then the `LEVEE_*` environment over
    /// it, and checks the result.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Config, ConfigFileError> {
        env::load(&Config::figment_from_path(path)?)
    }

    /// The file at `path` and the `LEVEE_*` environment over it, as a
    /// figment to add layers to (merged over both) before
    /// [`from_figment`](Self::from_figment).
    ///
    /// ```
    /// # fn demo() -> Result<(), levee::config::ConfigFileError> {
    /// use figment::providers::Serialized;
    /// use levee::Config;
    ///
    /// let layers = Config::figment_from_path("levee.toml")?
    ///     .merge(Serialized::global("caches.userinfo.redis", "main"));
    /// let config = Config::from_figment(&layers)?;
    /// # Ok(()) }
    /// ```
    pub fn figment_from_path(path: impl AsRef<Path>) -> Result<figment::Figment, ConfigFileError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigFileError::one(
                path.display().to_string(),
                format!("cannot read the config file: {e}"),
            )
        })?;
        Ok(env::toml_layer(&text, &path.display().to_string())?.merge(env_provider()))
    }

    /// The TOML `text`, then the `LEVEE_*` environment over it; `source`
    /// names the text in errors (a file name).
    pub fn from_toml_and_env(text: &str, source: &str) -> Result<Config, ConfigFileError> {
        env::load(&env::toml_layer(text, source)?.merge(env_provider()))
    }

    /// The TOML `text` alone (no environment). `str::parse` does the same.
    pub fn from_toml(text: &str) -> Result<Config, ConfigFileError> {
        env::load(&env::toml_layer(text, "the config")?)
    }

    /// A config from any figment layering (several files, a profile, the
    /// [`env_provider`]), checked as the others are.
    pub fn from_figment(figment: &figment::Figment) -> Result<Config, ConfigFileError> {
        env::load(figment)
    }

    /// The config as TOML, durations written as humans write them; it
    /// parses back equal.
    pub fn to_toml(&self) -> Result<String, ConfigFileError> {
        toml::to_string(self)
            .map_err(|e| ConfigFileError::one("", format!("cannot write TOML: {e}")))
    }

    /// The parts this config names, built on demand and shared by name.
    pub fn components(&self) -> Components {
        Components::new(self.clone())
    }

    /// Every key path a config file may hold, `*` standing for an entry's
    /// name (`limiters.*.limit`, `caches.*.stale_tiers.*`), in schema order.
    pub fn key_paths() -> Vec<String> {
        schema::key_paths()
    }
}

impl FromStr for Config {
    type Err = ConfigFileError;

    fn from_str(text: &str) -> Result<Config, ConfigFileError> {
        Config::from_toml(text)
    }
}
