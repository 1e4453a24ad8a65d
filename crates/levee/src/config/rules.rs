//! The second validation pass, on the typed config: rules across keys (a
//! key that applies to one limiter kind only, one URL source, a feature
//! this build lacks) and the breakers' own rules, checked by building them.

use super::build::Components;
use super::error::{ConfigFileError, Problem};
use super::file::{CacheConfig, Config, LimiterConfig, LimiterKind, QuotaConfig, RedisConfig};

/// Every problem found; empty if the config can be built.
pub(crate) fn check(config: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    for (name, r) in &config.redis {
        redis(&format!("redis.{name}"), r, &mut out);
    }
    // The local parts are built once here, so that the builders' own
    // rules (an `l1_ttl` above `ttl`, a window under 1 ms) are reported
    // with the others. Nothing is started: no L2, no Redis.
    let dry = Components::new(Config::default());
    let keep = |r: Result<(), ConfigFileError>, out: &mut Vec<Problem>| {
        if let Err(e) = r {
            out.extend(e.problems().iter().cloned());
        }
    };
    for (name, c) in &config.caches {
        let path = format!("caches.{name}");
        cache(&path, c, &mut out);
        let local = CacheConfig {
            redis: None,
            ..c.clone()
        };
        keep(
            super::cache::build::<String, String>(&dry, name, &local, None).map(drop),
            &mut out,
        );
    }
    for (name, l) in &config.limiters {
        limiter(&format!("limiters.{name}"), l, &mut out);
        if !l.kind.unwrap_or_default().is_redis() {
            keep(
                super::limiter::build::<String>(&dry, name, l).map(drop),
                &mut out,
            );
        }
    }
    for (name, q) in &config.quotas {
        quota(&format!("quotas.{name}"), q, &mut out);
    }
    for (name, b) in &config.breakers {
        if let Err(e) = super::breaker::breaker_rules(name, b).build() {
            out.push(super::breaker::breaker_problem(
                &format!("breakers.{name}"),
                e,
            ));
        }
    }
    for (name, p) in &config.pipelines {
        let path = format!("pipelines.{name}");
        for (key, d) in [
            ("timeout", p.timeout),
            ("attempt_timeout", p.attempt_timeout),
        ] {
            if d.is_some_and(|d| d.is_zero()) {
                out.push(Problem::new(
                    format!("{path}.{key}"),
                    "0s fails every call; remove the key instead",
                ));
            }
        }
        if p.max_queue.is_some() && p.max_in_flight.is_none() {
            out.push(Problem::new(
                format!("{path}.max_queue"),
                "a queue needs a bulkhead: set max_in_flight too",
            ));
        }
        if let Some(r) = &p.retry
            && r.budget == Some(false)
            && (r.budget_ratio.is_some()
                || r.budget_min_per_second.is_some()
                || r.budget_window.is_some())
        {
            out.push(Problem::new(
                format!("{path}.retry.budget"),
                "false, yet budget_* keys are set: remove them or the `budget = false`",
            ));
        }
    }
    for (name, k) in &config.key_hashers {
        one_of(
            &format!("key_hashers.{name}"),
            &[
                ("secret_env", k.secret_env.is_some()),
                ("secret_file", k.secret_file.is_some()),
            ],
            &mut out,
        );
    }
    out
}

/// Exactly one of `keys` is set.
fn one_of(path: &str, keys: &[(&str, bool)], out: &mut Vec<Problem>) {
    let set: Vec<&str> = keys.iter().filter(|(_, on)| *on).map(|(k, _)| *k).collect();
    let names = keys.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ");
    match set.len() {
        1 => {}
        0 => out.push(Problem::new(path, format!("set one of {names}"))),
        _ => out.push(Problem::new(
            path,
            format!("{} are set; keep exactly one of {names}", set.join(" and ")),
        )),
    }
}

/// `key` is set where it does not apply.
fn unused(path: &str, key: &str, set: bool, why: &str, out: &mut Vec<Problem>) {
    if set {
        out.push(Problem::new(
            format!("{path}.{key}"),
            format!("does not apply: {why}"),
        ));
    }
}

fn no_redis_feature(path: &str, out: &mut Vec<Problem>) {
    out.push(Problem::new(
        path,
        "this build of levee has no `redis` feature: enable it (levee = { features = [\"config\", \"redis\"] }) or remove the Redis setting",
    ));
}

fn redis(path: &str, r: &RedisConfig, out: &mut Vec<Problem>) {
    if cfg!(not(feature = "redis")) {
        no_redis_feature(path, out);
    }
    one_of(
        path,
        &[
            ("url", r.url.is_some()),
            ("url_env", r.url_env.is_some()),
            ("url_file", r.url_file.is_some()),
        ],
        out,
    );
    for (key, d) in [
        ("connect_timeout", r.connect_timeout),
        ("command_timeout", r.command_timeout),
    ] {
        if d.is_some_and(|d| d.is_zero()) {
            out.push(Problem::new(format!("{path}.{key}"), "must be above zero"));
        }
    }
    if r.password_env.is_some() && r.password_file.is_some() {
        out.push(Problem::new(
            format!("{path}.password_file"),
            "password_env is set too; keep one",
        ));
    }
}

fn cache(path: &str, c: &CacheConfig, out: &mut Vec<Problem>) {
    if let Some(r) = &c.redis
        && cfg!(not(feature = "redis"))
    {
        let _ = r;
        no_redis_feature(&format!("{path}.redis"), out);
    }
    if c.codec == Some(super::file::CodecName::Cbor) && cfg!(not(feature = "cbor")) {
        out.push(Problem::new(
            format!("{path}.codec"),
            "\"cbor\" needs levee's `cbor` feature; enable it or use \"json\"",
        ));
    }
    if c.l2_timeout.is_some_and(|d| d.is_zero()) {
        out.push(Problem::new(
            format!("{path}.l2_timeout"),
            "must be above zero",
        ));
    }
    let no_l2 = c.redis.is_none();
    let why = "the cache has no L2 (set `redis = \"<a [redis] entry>\"`)";
    unused(path, "load_lock", no_l2 && c.load_lock.is_some(), why, out);
    unused(
        path,
        "load_lock_poll",
        no_l2 && c.load_lock_poll.is_some(),
        why,
        out,
    );
    unused(
        path,
        "l2_timeout",
        no_l2 && c.l2_timeout.is_some(),
        why,
        out,
    );
    unused(
        path,
        "max_value_bytes",
        no_l2 && c.max_value_bytes.is_some(),
        why,
        out,
    );
    unused(path, "codec", no_l2 && c.codec.is_some(), why, out);
    let signing = c.signing_key_env.is_some() || c.signing_key_file.is_some();
    unused(path, "signing_key_env", no_l2 && signing, why, out);
    if c.signing_key_env.is_some() && c.signing_key_file.is_some() {
        out.push(Problem::new(
            format!("{path}.signing_key_file"),
            "signing_key_env is set too; keep one",
        ));
    }
}

fn limiter(path: &str, l: &LimiterConfig, out: &mut Vec<Problem>) {
    let kind = l.kind.unwrap_or_default();
    let redis = kind.is_redis();
    let only_redis = "only a Redis limiter (`redis_sliding_window`, `redis_gcra`) has it";
    unused(
        path,
        "burst",
        !kind.is_gcra() && l.burst.is_some(),
        "only a `gcra` or `redis_gcra` limiter has a burst",
        out,
    );
    unused(
        path,
        "mode",
        kind.is_gcra() && l.mode.is_some(),
        "a `gcra` limiter has no window mode",
        out,
    );
    unused(
        path,
        "idle_timeout",
        kind != LimiterKind::SlidingWindow && l.idle_timeout.is_some(),
        "only a `sliding_window` limiter has it",
        out,
    );
    unused(path, "redis", !redis && l.redis.is_some(), only_redis, out);
    unused(
        path,
        "prefix",
        !redis && l.prefix.is_some(),
        only_redis,
        out,
    );
    unused(
        path,
        "on_redis_error",
        !redis && l.on_redis_error.is_some(),
        only_redis,
        out,
    );
    unused(
        path,
        "time_source",
        !redis && l.time_source.is_some(),
        only_redis,
        out,
    );
    unused(
        path,
        "timeout",
        !redis && l.timeout.is_some(),
        only_redis,
        out,
    );
    unused(
        path,
        "batch",
        l.batch == Some(true)
            && (kind != LimiterKind::RedisSlidingWindow
                || l.mode == Some(super::file::WindowModeName::Log)),
        "only a `redis_sliding_window` limiter in counter mode sends batches",
        out,
    );
    unused(
        path,
        "replicas",
        l.replicas.is_some() && l.on_redis_error != Some(super::file::OnRedisErrorName::Local),
        "it sizes the local fallback of `on_redis_error = \"local\"`",
        out,
    );
    if redis && l.redis.is_none() {
        out.push(Problem::new(
            format!("{path}.redis"),
            "missing: a Redis limiter needs a [redis] entry",
        ));
    }
    if redis && cfg!(not(feature = "redis")) {
        no_redis_feature(&format!("{path}.kind"), out);
    }
}

fn quota(path: &str, q: &QuotaConfig, out: &mut Vec<Problem>) {
    if q.timeout.is_some_and(|d| d.is_zero()) {
        out.push(Problem::new(
            format!("{path}.timeout"),
            "must be above zero",
        ));
    }
    unused(
        path,
        "timeout",
        q.redis.is_none() && q.timeout.is_some(),
        "the quota is local (set `redis = \"<a [redis] entry>\"` to share it)",
        out,
    );
}

#[cfg(test)]
mod tests {
    use crate::Config;

    /// Run with `--no-default-features --features config`.
    #[test]
    #[cfg(not(feature = "redis"))]
    fn without_the_redis_feature_naming_redis_is_an_error_that_says_so() {
        let err = "[redis.main]\nurl = \"redis://127.0.0.1\"\n[caches.c]\nredis = \"main\"\n"
            .parse::<Config>()
            .unwrap_err();
        assert!(err.mentions("redis.main"), "{err}");
        assert!(err.mentions("caches.c.redis"), "{err}");
        assert!(err.to_string().contains("no `redis` feature"), "{err}");
    }

    #[test]
    fn a_url_source_must_be_given_exactly_once() {
        let err = "[redis.main]\nurl = \"redis://a\"\nurl_env = \"X\"\n"
            .parse::<Config>()
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("url and url_env are set; keep exactly one"),
            "{err}"
        );
        let err = "[redis.main]\nname = \"x\"\n"
            .parse::<Config>()
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("set one of url, url_env, url_file"),
            "{err}"
        );
    }
}
