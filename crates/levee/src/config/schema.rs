//! The shape of a config file, key by key: what the first validation pass
//! walks the loose value tree against (so that every problem is found in
//! one pass, which serde's `deny_unknown_fields` cannot do). A unit test
//! checks it against the serde structs' fields, and `tests/config.rs`
//! against docs/config.md.

/// What a key holds.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// A humantime string: `"250ms"`, `"5m"`.
    Duration,
    /// An integer in `min..=max`; `expect` describes the range.
    Int {
        min: i128,
        max: i128,
        expect: &'static str,
    },
    /// A number (integer or float) that `ok` accepts; `expect` describes it.
    Number {
        ok: fn(f64) -> bool,
        expect: &'static str,
    },
    Bool,
    Str,
    /// A file path.
    Path,
    /// One of these strings.
    Choice(&'static [&'static str]),
    /// The name of an entry of this section.
    Ref(&'static str),
    /// A breaker window: a number of calls or a duration.
    Window,
    /// Names to durations (stale tiers).
    DurationMap,
    /// A table with these keys.
    Table(&'static [Field]),
    /// Named entries, each a table with these keys.
    Map(&'static [Field]),
}

/// One key of a table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    pub(crate) key: &'static str,
    pub(crate) kind: Kind,
    pub(crate) required: bool,
}

const fn opt(key: &'static str, kind: Kind) -> Field {
    Field {
        key,
        kind,
        required: false,
    }
}

const fn req(key: &'static str, kind: Kind) -> Field {
    Field {
        key,
        kind,
        required: true,
    }
}

const U32_MAX: i128 = u32::MAX as i128;
const U64_MAX: i128 = u64::MAX as i128;
const POSITIVE: Kind = Kind::Int {
    min: 1,
    max: U32_MAX,
    expect: "a positive integer",
};
const COUNT: Kind = Kind::Int {
    min: 0,
    max: U32_MAX,
    expect: "a non-negative integer",
};
const POSITIVE_U64: Kind = Kind::Int {
    min: 1,
    max: U64_MAX,
    expect: "a positive integer",
};
const D: Kind = Kind::Duration;

const REDIS: &[Field] = &[
    opt("url", Kind::Str),
    opt("url_env", Kind::Str),
    opt("url_file", Kind::Path),
    opt("username", Kind::Str),
    opt("password_env", Kind::Str),
    opt("password_file", Kind::Path),
    opt("name", Kind::Str),
    opt("connect_timeout", D),
    opt("command_timeout", D),
    opt("breaker", Kind::Ref("breakers")),
];

const CACHE: &[Field] = &[
    opt("ttl", D),
    opt("l1_capacity", POSITIVE_U64),
    opt("l1_ttl", D),
    opt("stale_while_revalidate", D),
    opt("stale_tiers", Kind::DurationMap),
    opt("failure_backoff", D),
    opt("negative_ttl", D),
    opt("hard_timeout", D),
    opt("soft_timeout", D),
    opt(
        "ttl_jitter",
        Kind::Number {
            ok: |x| (0.0..1.0).contains(&x),
            expect: "a number from 0 up to (not including) 1",
        },
    ),
    opt(
        "early_refresh",
        Kind::Number {
            ok: |x| x >= 0.0 && x.is_finite(),
            expect: "a number of 0 or more (0: off, 1: the usual weight)",
        },
    ),
    opt("load_lock", D),
    opt("load_lock_poll", D),
    opt("prefix", Kind::Str),
    opt("schema_version", COUNT),
    opt("backplane", Kind::Bool),
    opt("redis", Kind::Ref("redis")),
    opt("l2_timeout", D),
    opt("max_value_bytes", POSITIVE_U64),
    opt("codec", Kind::Choice(&["json", "cbor"])),
    opt("signing_key_env", Kind::Str),
    opt("signing_key_file", Kind::Path),
];

const LIMITER: &[Field] = &[
    opt(
        "kind",
        Kind::Choice(&[
            "sliding_window",
            "gcra",
            "redis_sliding_window",
            "redis_gcra",
        ]),
    ),
    req("limit", POSITIVE),
    req("window", D),
    opt("burst", POSITIVE),
    opt("mode", Kind::Choice(&["counter", "log"])),
    opt("idle_timeout", D),
    opt("redis", Kind::Ref("redis")),
    opt("prefix", Kind::Str),
    opt(
        "on_redis_error",
        Kind::Choice(&["fail_open", "fail_closed", "local"]),
    ),
    opt("replicas", POSITIVE),
    opt("time_source", Kind::Choice(&["server", "clock"])),
    opt("timeout", D),
    opt("batch", Kind::Bool),
];

const RATE: Kind = Kind::Number {
    ok: |x| x > 0.0 && x <= 1.0,
    expect: "a rate above 0 and at most 1 (0.5: half the calls)",
};

const BREAKER: &[Field] = &[
    opt(
        "failure_rate",
        Kind::Number {
            ok: |x| (0.0..=1.0).contains(&x),
            expect: "a rate from 0 (off) to 1 (0.5: half the calls)",
        },
    ),
    opt("window", Kind::Window),
    opt("minimum_calls", COUNT),
    opt("consecutive_failures", POSITIVE),
    opt("slow_call_threshold", D),
    opt("slow_call_rate", RATE),
    opt("open_duration", D),
    opt("max_open_duration", D),
    opt(
        "backoff_multiplier",
        Kind::Number {
            ok: |x| x >= 1.0 && x.is_finite(),
            expect: "a number of 1 or more (1: no backoff)",
        },
    ),
    opt(
        "jitter",
        Kind::Number {
            ok: |x| (0.0..1.0).contains(&x),
            expect: "a number from 0 up to (not including) 1",
        },
    ),
    opt("half_open_permits", POSITIVE),
];

const QUOTA: &[Field] = &[
    opt("default_hold", D),
    opt("max_hold", D),
    opt("redis", Kind::Ref("redis")),
    opt("prefix", Kind::Str),
    opt("timeout", D),
];

const RETRY: &[Field] = &[
    req("max_attempts", POSITIVE),
    opt("base_delay", D),
    opt("max_delay", D),
    opt("max_retry_after", D),
    opt("budget", Kind::Bool),
    opt(
        "budget_ratio",
        Kind::Number {
            ok: |x| x >= 0.0 && x.is_finite(),
            expect: "a number of 0 or more (0.2: a fifth of recent calls)",
        },
    ),
    opt("budget_min_per_second", COUNT),
    opt("budget_window", D),
];

const PIPELINE: &[Field] = &[
    opt("cache", Kind::Ref("caches")),
    opt("quota", Kind::Ref("quotas")),
    opt("limiter", Kind::Ref("limiters")),
    opt("breaker", Kind::Ref("breakers")),
    opt("max_in_flight", POSITIVE),
    opt("max_queue", COUNT),
    opt("queue_timeout", D),
    opt("timeout", D),
    opt("attempt_timeout", D),
    opt("retry", Kind::Table(RETRY)),
];

const KEY_HASHER: &[Field] = &[opt("secret_env", Kind::Str), opt("secret_file", Kind::Path)];

/// The top level of a config file.
pub(crate) const ROOT: &[Field] = &[
    opt("redis", Kind::Map(REDIS)),
    opt("caches", Kind::Map(CACHE)),
    opt("limiters", Kind::Map(LIMITER)),
    opt("breakers", Kind::Map(BREAKER)),
    opt("quotas", Kind::Map(QUOTA)),
    opt("pipelines", Kind::Map(PIPELINE)),
    opt("key_hashers", Kind::Map(KEY_HASHER)),
];

/// Every key path the schema knows, with `*` for an entry's name:
/// `limiters.*.limit`, `pipelines.*.retry.max_attempts`,
/// `caches.*.stale_tiers.*`.
pub(crate) fn key_paths() -> Vec<String> {
    fn walk(prefix: &str, fields: &[Field], out: &mut Vec<String>) {
        for f in fields {
            let path = if prefix.is_empty() {
                f.key.to_string()
            } else {
                format!("{prefix}.{}", f.key)
            };
            match f.kind {
                Kind::Table(inner) => walk(&path, inner, out),
                Kind::Map(inner) => walk(&format!("{path}.*"), inner, out),
                Kind::DurationMap => out.push(format!("{path}.*")),
                _ => out.push(path),
            }
        }
    }
    let mut out = Vec::new();
    walk("", ROOT, &mut out);
    out
}

/// The keys of the table at `path` (`*` for entry names), for tests.
#[cfg(test)]
pub(crate) fn keys_at(path: &[&str]) -> Vec<&'static str> {
    let mut fields = ROOT;
    let mut rest = path;
    while let [first, tail @ ..] = rest {
        let field = fields.iter().find(|f| f.key == *first);
        match field.map(|f| f.kind) {
            Some(Kind::Table(inner)) => {
                fields = inner;
                rest = tail;
            }
            Some(Kind::Map(inner)) => {
                fields = inner;
                rest = tail.get(1..).unwrap_or(&[]);
            }
            _ => return Vec::new(),
        }
    }
    fields.iter().map(|f| f.key).collect()
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde::de::{Deserializer, Error as _, Visitor};

    use super::keys_at;
    use crate::config::file::*;

    /// Asks serde for a struct's field names: its `Deserialize` hands them
    /// to `deserialize_struct`, where this deserializer keeps them and
    /// stops.
    struct Probe<'a>(&'a mut Option<&'static [&'static str]>);

    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(Self::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = Some(fields);
            Err(Self::Error::custom("probed"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
            enum identifier ignored_any
        }
    }

    fn fields_of<T: for<'de> Deserialize<'de>>() -> Vec<&'static str> {
        let mut fields = None;
        let _ = T::deserialize(Probe(&mut fields));
        let mut v = fields.expect("a struct").to_vec();
        v.sort_unstable();
        v
    }

    fn schema(path: &[&str]) -> Vec<&'static str> {
        let mut v = keys_at(path);
        v.sort_unstable();
        v
    }

    #[test]
    fn the_schema_has_exactly_the_serde_structs_fields() {
        assert_eq!(schema(&[]), fields_of::<Config>());
        assert_eq!(schema(&["redis", "*"]), fields_of::<RedisConfig>());
        assert_eq!(schema(&["caches", "*"]), fields_of::<CacheConfig>());
        assert_eq!(schema(&["limiters", "*"]), fields_of::<LimiterConfig>());
        assert_eq!(schema(&["breakers", "*"]), fields_of::<BreakerConfig>());
        assert_eq!(schema(&["quotas", "*"]), fields_of::<QuotaConfig>());
        assert_eq!(schema(&["pipelines", "*"]), fields_of::<PipelineConfig>());
        assert_eq!(
            schema(&["pipelines", "*", "retry"]),
            fields_of::<RetryConfig>()
        );
        assert_eq!(
            schema(&["key_hashers", "*"]),
            fields_of::<KeyHasherConfig>()
        );
    }
}
