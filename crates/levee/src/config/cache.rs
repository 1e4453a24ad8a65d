//! A `[caches]` entry built with `TieredCache::builder`, its L2 (if it
//! names a Redis connection) with `RedisL2::builder`.

use levee_cache::TieredCache;
use levee_core::SharedClock;

use super::build::Components;
use super::error::ConfigFileError;
use super::file::CacheConfig;
use super::{ConfigKey, ConfigValue};

pub(crate) fn build<K: ConfigKey, V: ConfigValue>(
    parts: &Components,
    name: &str,
    c: &CacheConfig,
    clock: Option<&SharedClock>,
) -> Result<TieredCache<K, V>, ConfigFileError> {
    let path = format!("caches.{name}");
    let mut b = TieredCache::<K, V>::builder(name);
    if let Some(n) = c.l1_capacity {
        b = b.l1_capacity(n);
    }
    if let Some(d) = c.ttl {
        b = b.ttl(d);
    }
    if let Some(d) = c.l1_ttl {
        b = b.l1_ttl(d);
    }
    if let Some(d) = c.stale_while_revalidate {
        b = b.stale_while_revalidate(d);
    }
    if !c.stale_tiers.is_empty() {
        // A table has no order: the tiers serve in increasing staleness.
        let mut tiers: Vec<(String, std::time::Duration)> =
            c.stale_tiers.iter().map(|(n, d)| (n.clone(), *d)).collect();
        tiers.sort_by_key(|(_, d)| *d);
        b = b.stale_tiers(tiers);
    }
    if let Some(d) = c.failure_backoff {
        b = b.failure_backoff(d);
    }
    if let Some(d) = c.negative_ttl {
        b = b.negative_ttl(d);
    }
    if let Some(d) = c.hard_timeout {
        b = b.hard_timeout(d);
    }
    if let Some(d) = c.soft_timeout {
        b = b.soft_timeout(d);
    }
    if let Some(x) = c.ttl_jitter {
        b = b.ttl_jitter(x);
    }
    if let Some(x) = c.early_refresh {
        b = b.early_refresh(x);
    }
    if let Some(d) = c.load_lock {
        b = b.load_lock(d);
    }
    if let Some(d) = c.load_lock_poll {
        b = b.load_lock_poll(d);
    }
    if let Some(p) = &c.prefix {
        b = b.prefix(p);
    }
    if let Some(v) = c.schema_version {
        b = b.schema_version(v);
    }
    if let Some(on) = c.backplane {
        b = b.backplane(on);
    }
    if let Some(clock) = clock {
        b = b.clock(clock.clone());
    }
    b = l2(parts, &path, b, c)?;
    b.build().map_err(|e| {
        let key = match e.setting {
            "stale_tiers" | "ttl" | "l1_ttl" | "failure_backoff" | "negative_ttl"
            | "hard_timeout" | "soft_timeout" | "ttl_jitter" | "early_refresh" | "load_lock"
            | "load_lock_poll" | "prefix" | "schema_version" | "backplane" => e.setting,
            "l1" | "max_capacity" => "l1_capacity",
            other => other,
        };
        ConfigFileError::one(format!("{path}.{key}"), e.reason)
    })
}

#[cfg(feature = "redis")]
fn l2<K: ConfigKey, V: ConfigValue>(
    parts: &Components,
    path: &str,
    mut b: levee_cache::TieredCacheBuilder<K, V>,
    c: &CacheConfig,
) -> Result<levee_cache::TieredCacheBuilder<K, V>, ConfigFileError> {
    use levee_cache::RedisL2;
    let Some(redis) = &c.redis else {
        return Ok(b);
    };
    let mut l2 = RedisL2::builder(parts.redis(redis)?).name(path.trim_start_matches("caches."));
    if let Some(d) = c.l2_timeout {
        l2 = l2.timeout(d);
    }
    if let Some(n) = c.max_value_bytes {
        l2 = l2.max_value_bytes(usize::try_from(n).unwrap_or(usize::MAX));
    }
    let secret = super::secret::read(
        &format!("{path}.signing_key"),
        c.signing_key_env.as_deref(),
        c.signing_key_file.as_deref(),
    )
    .map_err(|p| ConfigFileError::new(vec![p]))?;
    if let Some(s) = secret {
        l2 = l2.signing_key(s.expose());
    }
    let l2 = l2.build().map_err(|e| {
        let key = match e.setting {
            "timeout" => "l2_timeout",
            other => other,
        };
        ConfigFileError::one(format!("{path}.{key}"), e.reason)
    })?;
    b = b.l2(l2);
    match c.codec {
        #[cfg(feature = "cbor")]
        Some(super::file::CodecName::Cbor) => b = b.codec(levee_cache::Codec::Binary),
        #[cfg(not(feature = "cbor"))]
        Some(super::file::CodecName::Cbor) => {
            return Err(ConfigFileError::one(
                format!("{path}.codec"),
                "\"cbor\" needs levee's `cbor` feature",
            ));
        }
        _ => {}
    }
    Ok(b)
}

#[cfg(not(feature = "redis"))]
fn l2<K: ConfigKey, V: ConfigValue>(
    _: &Components,
    path: &str,
    b: levee_cache::TieredCacheBuilder<K, V>,
    c: &CacheConfig,
) -> Result<levee_cache::TieredCacheBuilder<K, V>, ConfigFileError> {
    match c.redis {
        None => Ok(b),
        Some(_) => Err(ConfigFileError::one(
            format!("{path}.redis"),
            "this build of levee has no `redis` feature",
        )),
    }
}
