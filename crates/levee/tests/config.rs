//! `levee::Config`: the documented example against the code, loading,
//! every kind of invalid value, environment overrides, secrets, and the
//! parts it builds (with a real redis-server where Redis is named).
#![cfg(all(feature = "config", feature = "redis"))]
// figment::Jail's closures return figment's own (large) error type.
#![allow(clippy::result_large_err)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use figment::Jail;
use levee::Config;
use levee::cache::Source;
use levee::config::ConfigFileError;
use levee::core::SensitiveKey;
use levee_testkit::{MockIdp, RedisServer, RedisServerOptions};

fn repo_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// The ```toml block under "## Full example" in docs/config.md.
fn documented_example() -> String {
    let doc = std::fs::read_to_string(repo_file("docs/config.md")).unwrap();
    let (_, after) = doc.split_once("## Full example").expect("the heading");
    let (_, block) = after.split_once("```toml\n").expect("a toml block");
    let (toml, _) = block.split_once("```").expect("the block's end");
    toml.to_string()
}

/// Key paths of a TOML text, entry names as `*` (as `Config::key_paths`).
fn doc_key_paths(text: &str) -> BTreeSet<String> {
    fn walk(prefix: &str, t: &toml::Table, out: &mut BTreeSet<String>) {
        for (k, v) in t {
            let path = format!("{prefix}.{k}");
            match v {
                toml::Value::Table(inner) if k == "stale_tiers" => {
                    assert!(!inner.is_empty());
                    out.insert(format!("{path}.*"));
                }
                toml::Value::Table(inner) => walk(&path, inner, out),
                _ => {
                    out.insert(path);
                }
            }
        }
    }
    let root: toml::Table = toml::from_str(text).unwrap();
    let mut out = BTreeSet::new();
    for (section, entries) in &root {
        for entry in entries
            .as_table()
            .expect("sections hold named entries")
            .values()
        {
            walk(&format!("{section}.*"), entry.as_table().unwrap(), &mut out);
        }
    }
    out
}

fn problems(err: &ConfigFileError) -> Vec<String> {
    err.problems().iter().map(ToString::to_string).collect()
}

fn parse_err(text: &str) -> ConfigFileError {
    text.parse::<Config>().expect_err("the config is invalid")
}

#[test]
fn docs_full_example_sets_every_key_the_code_knows_and_no_other() {
    let documented = doc_key_paths(&documented_example());
    let known: BTreeSet<String> = Config::key_paths().into_iter().collect();
    let missing: Vec<_> = known.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&known).collect();
    assert!(
        missing.is_empty(),
        "keys the doc's example leaves out: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "keys the code does not know: {unknown:?}"
    );
}

#[test]
fn docs_reference_tables_list_every_key() {
    let doc = std::fs::read_to_string(repo_file("docs/config.md")).unwrap();
    for path in Config::key_paths() {
        let key = path.rsplit('.').find(|p| *p != "*").unwrap();
        assert!(
            doc.contains(&format!("| `{key}` |")),
            "no table row for `{key}` ({path})"
        );
    }
}

#[test]
fn docs_full_example_round_trips_through_toml() {
    let config: Config = documented_example().parse().unwrap();
    let written = config.to_toml().unwrap();
    let again: Config = written.parse().unwrap_or_else(|e| panic!("{e}\n{written}"));
    assert_eq!(again, config);
    assert_eq!(
        config.caches["userinfo"].ttl,
        Some(Duration::from_secs(300))
    );
    assert!(written.contains("ttl = \"5m\""), "{written}");
}

#[test]
fn docs_full_example_builds_every_part() {
    Jail::expect_with(|jail| {
        jail.set_env("REDIS_PASSWORD", "pw");
        jail.set_env("SESSIONS_REDIS_URL", "redis://127.0.0.1:1/2");
        jail.set_env("USERINFO_SIGNING_KEY", "signing");
        jail.set_env("TOKEN_HASH_SECRET", "tokens");
        jail.create_dir("secrets")?;
        jail.create_file("secrets/backup-redis-url", "redis://127.0.0.1:1/3\n")?;
        jail.create_file("secrets/backup-redis-password", "pw2\n")?;
        jail.create_file("secrets/profiles-signing-key", "profiles")?;
        jail.create_file("secrets/api-key-hash-secret", "api")?;
        let config = Config::from_toml_and_env(&documented_example(), "docs/config.md").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let parts = config.components();
            for name in config.pipelines.keys() {
                parts
                    .pipeline::<String, String, std::io::Error>(name)
                    .unwrap_or_else(|e| panic!("{name}: {e}"))
                    .build()
                    .unwrap();
            }
            for name in config.redis.keys() {
                parts.redis(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            let tokens = parts.key_hasher("tokens").unwrap();
            let api = parts.key_hasher("api_keys").unwrap();
            assert_ne!(tokens.key("t"), api.key("t"), "two secrets, two hashes");
            assert_eq!(parts.breaker("idp").unwrap().name(), "idp");
            assert_eq!(parts.redis("main").unwrap().breaker().name(), "main-redis");
        });
        Ok(())
    });
}

#[test]
fn userinfo_example_file_loads_and_builds() {
    Jail::expect_with(|jail| {
        jail.set_env("USERINFO_TOKEN_SECRET", "a deployment secret");
        let config = Config::from_path(repo_file("examples/userinfo.toml")).unwrap();
        assert!(config.redis.is_empty(), "in memory unless asked for Redis");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let clock = levee::core::ManualClock::new();
            let idp = std::sync::Arc::new(MockIdp::start(clock.shared()).await.unwrap());
            let parts = config.components().clock(clock.shared());
            let hasher = parts.key_hasher("tokens").unwrap();
            let userinfo = parts
                .pipeline::<SensitiveKey, String, levee_testkit::TestkitError>("userinfo")
                .unwrap()
                .build()
                .unwrap();
            let page: Vec<_> = (0..5)
                .map(|_| {
                    let (userinfo, idp, key) =
                        (userinfo.clone(), idp.clone(), hasher.key("token-alice"));
                    tokio::spawn(async move {
                        userinfo
                            .get(key, move || {
                                let idp = idp.clone();
                                async move {
                                    let (_, _, body) = idp.userinfo("token-alice").await?;
                                    Ok(body)
                                }
                            })
                            .await
                    })
                })
                .collect();
            for request in page {
                assert!(request.await.unwrap().unwrap().is_some());
            }
            assert_eq!(
                idp.calls("alice"),
                1,
                "a page load's 5 requests, one IdP call"
            );
        });
        Ok(())
    });
}

#[test]
fn a_negative_integer_names_the_path_and_the_value() {
    let err = parse_err("[pipelines.userinfo.retry]\nmax_attempts = -1\n");
    assert_eq!(
        problems(&err),
        ["pipelines.userinfo.retry.max_attempts: expected a positive integer, got -1"]
    );
}

#[test]
fn a_bad_duration_names_the_path_and_the_value() {
    let err = parse_err("[limiters.api]\nlimit = 5\nwindow = \"5 parsecs\"\n");
    assert_eq!(
        problems(&err),
        ["limiters.api.window: \"5 parsecs\" is not a duration (examples: 60s, 5m)"]
    );
    let err = parse_err("[caches.c]\nttl = 60\n");
    assert_eq!(
        problems(&err),
        ["caches.c.ttl: expected a duration in quotes (examples: 60s, 5m), got 60"]
    );
}

#[test]
fn each_kind_of_bad_value_names_the_path_and_the_value() {
    let cases = [
        (
            "[caches.c]\nttl_jitter = 1.5\n",
            "caches.c.ttl_jitter",
            "1.5",
        ),
        (
            "[caches.c]\nbackplane = \"yes\"\n",
            "caches.c.backplane",
            "\"yes\"",
        ),
        ("[caches.c]\ncodec = \"xml\"\n", "caches.c.codec", "\"xml\""),
        ("[caches.c]\nprefix = 3\n", "caches.c.prefix", "3"),
        (
            "[caches.c]\nstale_tiers = { old = \"forever\" }\n",
            "caches.c.stale_tiers.old",
            "\"forever\"",
        ),
        ("[breakers.b]\nwindow = 0\n", "breakers.b.window", "0"),
        (
            "[breakers.b]\nbackoff_multiplier = 0.5\n",
            "breakers.b.backoff_multiplier",
            "0.5",
        ),
        (
            "[limiters.l]\nlimit = 0\nwindow = \"1s\"\n",
            "limiters.l.limit",
            "0",
        ),
        (
            "[limiters.l]\nlimit = 5000000000\nwindow = \"1s\"\n",
            "limiters.l.limit",
            "5000000000",
        ),
        (
            "[limiters.l]\nkind = \"leaky\"\nlimit = 1\nwindow = \"1s\"\n",
            "limiters.l.kind",
            "\"leaky\"",
        ),
        ("[pipelines.p]\nretry = 3\n", "pipelines.p.retry", "3"),
        ("[pipelines.p]\ncache = 1\n", "pipelines.p.cache", "1"),
        ("limiters = 3\n", "limiters", "3"),
    ];
    for (text, path, value) in cases {
        let err = parse_err(text);
        let [p] = err.problems() else {
            panic!("{text}: one problem expected, got {err}")
        };
        assert_eq!(p.path, path, "{text}");
        assert!(p.message.contains(value), "{text}: {}", p.message);
    }
}

#[test]
fn a_missing_required_key_is_named() {
    let err = parse_err("[limiters.api]\nlimit = 5\n");
    assert_eq!(
        problems(&err),
        ["limiters.api.window: missing; this key is required"]
    );
}

#[test]
fn an_unknown_key_names_the_nearest_known_key() {
    let err = parse_err("[limiters.api]\nlimt = 5\nwindow = \"1m\"\nlimit = 5\n");
    assert_eq!(
        problems(&err),
        ["limiters.api.limt: unknown key \"limt\"; the nearest known key is \"limit\""]
    );
    let err = parse_err("[limiter.api]\nlimit = 5\n");
    assert!(
        problems(&err)[0].contains("the nearest known key is \"limiters\""),
        "{err}"
    );
}

#[test]
fn an_undefined_reference_names_the_key_and_the_missing_entry() {
    let err = parse_err(
        "[limiters.api]\nlimit = 5\nwindow = \"1m\"\n[pipelines.userinfo]\nlimiter = \"apii\"\n[caches.c]\nredis = \"main\"\n",
    );
    let all = problems(&err);
    assert!(all.contains(&"pipelines.userinfo.limiter: \"apii\" is not defined: no [limiters.apii] in the config (defined: api)".to_string()), "{err}");
    assert!(all.contains(&"caches.c.redis: \"main\" is not defined: no [redis.main] in the config (there is no [redis] section)".to_string()), "{err}");
}

#[test]
fn every_problem_is_reported_together() {
    let err = parse_err(
        r#"
        [limiters.api]
        limit = -3
        window = "5 parsecs"
        colour = "blue"
        [pipelines.userinfo]
        breaker = "nope"
        retry = { max_attempts = 0 }
        "#,
    );
    assert_eq!(err.problems().len(), 5, "{err}");
    for path in [
        "limiters.api.limit",
        "limiters.api.window",
        "limiters.api.colour",
        "pipelines.userinfo.breaker",
        "pipelines.userinfo.retry.max_attempts",
    ] {
        assert!(err.mentions(path), "{path} missing from:\n{err}");
    }
    assert_eq!(
        err.to_string().lines().count(),
        6,
        "a header, then one line each:\n{err}"
    );
}

#[test]
fn a_key_that_does_not_apply_is_an_error() {
    let err = parse_err("[limiters.api]\nlimit = 5\nwindow = \"1m\"\nburst = 10\n");
    assert_eq!(
        problems(&err),
        ["limiters.api.burst: does not apply: only a `gcra` or `redis_gcra` limiter has a burst"]
    );
    let err = parse_err("[caches.c]\nload_lock = \"2s\"\n");
    assert!(err.mentions("caches.c.load_lock"), "{err}");
    let err = parse_err("[limiters.api]\nlimit = 5\nwindow = \"1m\"\nbatch = true\n");
    assert_eq!(
        problems(&err),
        [
            "limiters.api.batch: does not apply: only a `redis_sliding_window` limiter in counter mode sends batches"
        ]
    );
}

#[test]
fn a_breaker_rule_the_builder_refuses_is_named_by_its_key() {
    let err = parse_err("[breakers.b]\nfailure_rate = 0\n");
    assert_eq!(err.problems().len(), 1, "{err}");
    assert_eq!(err.problems()[0].path, "breakers.b.failure_rate");
}

/// `[quotas.<name>] timeout` is the budget of a shared quota's Redis
/// commands (50 ms without it), whatever the connection's own
/// `command_timeout`.
#[cfg(feature = "redis")]
#[test]
fn a_shared_quota_takes_its_timeout_from_its_own_entry() {
    let config: Config =
        "[redis.main]\nurl = \"redis://127.0.0.1:6379\"\ncommand_timeout = \"2s\"\n\
         [quotas.idp]\nredis = \"main\"\ntimeout = \"300ms\"\n\
         [quotas.plain]\nredis = \"main\"\n"
            .parse()
            .unwrap();
    let parts = config.components();
    let timeout = |name: &str| match parts.quota::<String>(name).unwrap() {
        levee::config::AnyQuota::Shared(q) => q.client().command_timeout(),
        other => panic!("{name} is not shared: {other:?}"),
    };
    assert_eq!(timeout("idp"), Duration::from_millis(300));
    assert_eq!(timeout("plain"), Duration::from_millis(50));
}

/// `batch = true` on a `redis_sliding_window` reaches its builder: 64
/// concurrent checks take fewer Redis calls than checks.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_window_with_batch_sends_concurrent_checks_together() {
    use levee::limit::RateLimiter;
    let server = levee_testkit::RedisServer::start().unwrap();
    let config: Config = format!(
        "[redis.main]\nurl = \"{}\"\n\
         [limiters.api]\nkind = \"redis_sliding_window\"\nredis = \"main\"\n\
         limit = 1000\nwindow = \"1h\"\ntimeout = \"2s\"\nbatch = true\n",
        server.url()
    )
    .parse()
    .unwrap();
    let limiter = match config.components().limiter::<String>("api").unwrap() {
        levee::config::AnyLimiter::Redis(l) => std::sync::Arc::new(l),
        _ => panic!("not a Redis window"),
    };
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let l = limiter.clone();
            tokio::spawn(async move { l.check(format!("u{t}").as_str()).await })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().unwrap().allowed);
    }
    let calls = limiter.client().stats().attempts;
    assert!(calls < 64, "{calls} calls for 64 checks: none was batched");
}

#[cfg(feature = "redis")]
#[test]
fn a_quota_timeout_is_above_zero_and_only_on_a_shared_quota() {
    let err = parse_err(
        r#"
        [redis.main]
        url = "redis://127.0.0.1"
        [quotas.zero]
        redis = "main"
        timeout = "0s"
        [quotas.local]
        timeout = "100ms"
        "#,
    );
    for path in ["quotas.zero.timeout", "quotas.local.timeout"] {
        assert!(err.mentions(path), "{path} missing from:\n{err}");
    }
    assert_eq!(err.problems().len(), 2, "{err}");
}

#[test]
fn the_builders_own_rules_are_checked_at_load_with_the_rest() {
    let err = parse_err(
        r#"
        [caches.c]
        ttl = "1m"
        l1_ttl = "5m"
        [limiters.fast]
        limit = 5
        window = "100us"
        [pipelines.p]
        timeout = "0s"
        [redis.main]
        url = "redis://127.0.0.1"
        command_timeout = "0s"
        "#,
    );
    for path in [
        "caches.c.l1_ttl",
        "limiters.fast.window",
        "pipelines.p.timeout",
        "redis.main.command_timeout",
    ] {
        assert!(err.mentions(path), "{path} missing from:\n{err}");
    }
    assert_eq!(err.problems().len(), 4, "{err}");
}

const API: &str = "[limiters.api]\nlimit = 100\nwindow = \"1m\"\n[limiters.search]\nlimit = 10\nwindow = \"1s\"\n";

#[test]
fn an_env_override_changes_exactly_one_key() {
    Jail::expect_with(|jail| {
        let plain = Config::from_toml_and_env(API, "test").unwrap();
        jail.set_env("LEVEE_LIMITERS__API__LIMIT", "200");
        jail.set_env("LEVEE_LOG", "debug"); // no `__`: not a config path
        let layered = Config::from_toml_and_env(API, "test").unwrap();
        assert_eq!(layered.limiters["api"].limit, 200);
        let mut expected = plain.clone();
        expected.limiters.get_mut("api").unwrap().limit = 200;
        assert_eq!(layered, expected, "nothing else changed");
        assert_eq!(
            API.parse::<Config>().unwrap(),
            plain,
            "str::parse reads no environment"
        );
        Ok(())
    });
}

#[test]
fn env_overrides_reach_nested_keys_and_durations() {
    Jail::expect_with(|jail| {
        jail.set_env("LEVEE_PIPELINES__USERINFO__RETRY__MAX_ATTEMPTS", "3");
        jail.set_env("LEVEE_LIMITERS__SEARCH__WINDOW", "5m");
        let c = Config::from_toml_and_env(
            &format!("{API}[pipelines.userinfo]\nretry = {{ max_attempts = 2 }}\n"),
            "test",
        )
        .unwrap();
        assert_eq!(
            c.pipelines["userinfo"].retry.as_ref().unwrap().max_attempts,
            3
        );
        assert_eq!(c.limiters["search"].window, Some(Duration::from_secs(300)));
        Ok(())
    });
}

#[test]
fn a_bad_env_override_is_reported_like_a_bad_file_value_and_names_its_variable() {
    Jail::expect_with(|jail| {
        jail.set_env("LEVEE_LIMITERS__API__WINDOW", "5 parsecs");
        jail.set_env("LEVEE_LIMITERS__API__LIMT", "5");
        let err = Config::from_toml_and_env(API, "test").unwrap_err();
        assert_eq!(
            problems(&err),
            [
                "limiters.api.limt: unknown key \"limt\"; the nearest known key is \"limit\" \
                 (set by LEVEE_LIMITERS__API__LIMT)",
                "limiters.api.window: \"5 parsecs\" is not a duration (examples: 60s, 5m) \
                 (set by LEVEE_LIMITERS__API__WINDOW)",
            ]
        );
        Ok(())
    });
}

#[test]
fn a_rule_broken_by_an_env_override_names_its_variable() {
    Jail::expect_with(|jail| {
        jail.set_env("LEVEE_LIMITERS__API__BURST", "10");
        let err = Config::from_toml_and_env(API, "test").unwrap_err();
        assert_eq!(
            problems(&err),
            [
                "limiters.api.burst: does not apply: only a `gcra` or `redis_gcra` limiter has a burst \
              (set by LEVEE_LIMITERS__API__BURST)"
            ]
        );
        Ok(())
    });
}

#[test]
fn a_missing_secret_names_the_variable_or_file_it_looked_for() {
    Jail::expect_with(|_| {
        let config: Config = r#"
            [redis.main]
            url = "redis://127.0.0.1:6379"
            password_env = "LEVEE_TEST_UNSET_PASSWORD"
            [key_hashers.tokens]
            secret_file = "no/such/secret"
        "#
        .parse()
        .unwrap();
        let parts = config.components();
        let err = parts.redis("main").unwrap_err();
        assert_eq!(err.problems()[0].path, "redis.main.password_env");
        assert!(
            err.to_string().contains("LEVEE_TEST_UNSET_PASSWORD"),
            "{err}"
        );
        let err = parts.key_hasher("tokens").unwrap_err();
        assert_eq!(err.problems()[0].path, "key_hashers.tokens.secret_file");
        assert!(err.to_string().contains("no/such/secret"), "{err}");
        Ok(())
    });
}

#[test]
fn debug_never_prints_a_secret() {
    Jail::expect_with(|jail| {
        jail.set_env("LEVEE_TEST_REDIS_PASSWORD", "env-secret-4711");
        let config: Config = r#"
            [redis.inline]
            url = "redis://app:inline-secret-0815@127.0.0.1:6379"
            [redis.main]
            url = "redis://127.0.0.1:6379"
            password_env = "LEVEE_TEST_REDIS_PASSWORD"
        "#
        .parse()
        .unwrap();
        let parts = config.components();
        let client = parts.redis("main").unwrap();
        let shown = format!(
            "{config:?} {parts:?} {client:?} {:?}",
            parts.redis("inline").unwrap()
        );
        for secret in ["inline-secret-0815", "env-secret-4711"] {
            assert!(!shown.contains(secret), "{secret} printed: {shown}");
        }
        assert!(shown.contains("app:***@"), "{shown}");
        Ok(())
    });
}

#[test]
fn parts_are_shared_by_name() {
    let config: Config =
        "[breakers.idp]\nconsecutive_failures = 1\n[limiters.api]\nlimit = 1\nwindow = \"1m\"\n"
            .parse()
            .unwrap();
    let parts = config.components();
    let (a, b) = (parts.breaker("idp").unwrap(), parts.breaker("idp").unwrap());
    a.try_acquire().unwrap().failure();
    assert_eq!(a.state(), b.state(), "one breaker");
    assert_ne!(b.state(), levee::breaker::State::Closed);
    let (l1, l2) = (
        parts.limiter::<String>("api").unwrap(),
        parts.limiter::<String>("api").unwrap(),
    );
    let user = "u".to_string();
    assert!(
        levee::limit::RateLimiter::check_n_now(&l1, &user, std::num::NonZeroU32::MIN)
            .unwrap()
            .unwrap()
            .allowed
    );
    assert!(
        !levee::limit::RateLimiter::check_n_now(&l2, &user, std::num::NonZeroU32::MIN)
            .unwrap()
            .unwrap()
            .allowed,
        "one budget"
    );
    let err = parts.breaker("nope").unwrap_err();
    assert!(err.to_string().contains("breakers.nope"), "{err}");
}

#[tokio::test]
async fn a_configured_pipeline_shares_values_through_redis_with_a_password_from_the_environment() {
    let server = RedisServer::start_with(RedisServerOptions::default().password("s3cret")).unwrap();
    let text = format!(
        "[redis.main]\nurl = \"redis://127.0.0.1:{}\"\npassword_env = \"LEVEE_TEST_L2_PASSWORD\"\n\
         [caches.userinfo]\nttl = \"5m\"\nredis = \"main\"\nbackplane = false\n\
         [pipelines.userinfo]\ncache = \"userinfo\"\n",
        server.port()
    );
    let config: Config = text.parse().unwrap();
    // Two replicas: each its own components, one Redis. The secret is read
    // at build time, under the jail; the clients keep the URL they built.
    let (one, two) = {
        let mut out = None;
        Jail::expect_with(|jail| {
            jail.set_env("LEVEE_TEST_L2_PASSWORD", "s3cret");
            let build = || {
                let parts = config.components();
                parts.redis("main").unwrap();
                parts
            };
            out = Some((build(), build()));
            Ok(())
        });
        out.unwrap()
    };
    let first = one
        .pipeline::<String, String, std::io::Error>("userinfo")
        .unwrap()
        .build()
        .unwrap();
    let second = two
        .pipeline::<String, String, std::io::Error>("userinfo")
        .unwrap()
        .build()
        .unwrap();
    let got = first
        .get("alice".into(), || async { Ok("A".to_string()) })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.source, Source::Loader);
    let got = second
        .get("alice".into(), || async {
            Err(std::io::Error::other("must not load"))
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got.value.as_str(), got.source), ("A", Source::L2));
}

/// `kind = "redis_gcra"`: the IdP's own limit (10 at once, 5 a minute)
/// held in Redis for every replica that loads the file.
#[cfg(feature = "redis")]
#[tokio::test]
async fn a_redis_gcra_limiter_holds_a_burst_for_every_replica() {
    use levee::limit::RateLimiter;
    let server = RedisServer::start().unwrap();
    let text = format!(
        "[redis.main]\nurl = \"redis://127.0.0.1:{}\"\n\
         [limiters.idp]\nkind = \"redis_gcra\"\nredis = \"main\"\nlimit = 5\nwindow = \"1m\"\nburst = 10\ntimeout = \"500ms\"\n",
        server.port()
    );
    let config: Config = text.parse().unwrap();
    let (one, two) = (config.components(), config.components());
    let replicas = [
        one.limiter::<String>("idp").unwrap(),
        two.limiter::<String>("idp").unwrap(),
    ];
    let mut admitted = 0;
    for i in 0..20 {
        let d = replicas[i % 2].check(&"alice".to_string()).await.unwrap();
        admitted += u32::from(d.allowed);
    }
    assert_eq!(admitted, 10, "the burst, for both replicas together");
    let refused = replicas[0].check(&"alice".to_string()).await.unwrap();
    assert!(
        refused
            .retry_after
            .is_some_and(|r| r <= std::time::Duration::from_secs(12))
    );
}
