//! A `[redis]` entry built with `RedisClient::standalone` and its builder:
//! the URL and password read from where the entry names, the breaker rules
//! of the `[breakers]` entry it names.

use levee_redis::{RedisClient, RedisError};

use super::breaker::breaker_rules;
use super::build::{Components, at, undefined};
use super::error::{ConfigFileError, Problem};
use super::file::RedisConfig;
use super::secret;

pub(crate) fn build(
    parts: &Components,
    name: &str,
    c: &RedisConfig,
) -> Result<RedisClient, ConfigFileError> {
    let path = format!("redis.{name}");
    let one = |p: Problem| ConfigFileError::new(vec![p]);
    let url = match &c.url {
        Some(u) => u.expose().to_string(),
        None => secret::read(
            &format!("{path}.url"),
            c.url_env.as_deref(),
            c.url_file.as_deref(),
        )
        .map_err(one)?
        .map(|s| s.expose().to_string())
        .ok_or_else(|| ConfigFileError::one(&path, "set one of url, url_env, url_file"))?,
    };
    let password = secret::read(
        &format!("{path}.password"),
        c.password_env.as_deref(),
        c.password_file.as_deref(),
    )
    .map_err(one)?;
    let url = secret::with_credentials(
        &url,
        c.username.as_deref(),
        password.as_ref().map(|s| s.expose()),
    )
    .map_err(|e| ConfigFileError::one(format!("{path}.url"), e))?;
    let mut b =
        RedisClient::standalone(url).name(c.name.clone().unwrap_or_else(|| name.to_string()));
    if let Some(d) = c.connect_timeout {
        b = b.connect_timeout(d);
    }
    if let Some(d) = c.command_timeout {
        b = b.command_timeout(d);
    }
    if let Some(breaker) = &c.breaker {
        let rules = parts.config().breakers.get(breaker).ok_or_else(|| {
            undefined(
                "breakers",
                breaker,
                parts.config().breakers.keys().collect(),
            )
        })?;
        b = b.breaker(breaker_rules(breaker, rules));
    }
    if let Some(clock) = parts.clock_ref() {
        b = b.clock(clock.clone());
    }
    b.build().map_err(|e| match e {
        RedisError::InvalidSetting { setting, reason } => at(&path, setting, reason),
        other => ConfigFileError::one(&path, other.to_string()),
    })
}
