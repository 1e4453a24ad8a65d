//! The identity-provider story from a config file: `examples/userinfo.toml`
//! builds the pipeline (cache, upstream quota, per-user limiter, breaker,
//! retry), which runs against levee-testkit's MockIdp (a real HTTP server on
//! loopback with Auth0's per-user limits: 10 burst, 5 a minute, 429 with
//! `x-ratelimit-*`).
//!
//! Run: `cargo run --example userinfo_config` (in memory, no Redis), or
//! `cargo run --example userinfo_config -- --redis redis://127.0.0.1:6379`
//! to give the cache an L2 and the quota shared holds on that Redis. Any key
//! can be overridden from the environment: `LEVEE_CACHES__USERINFO__TTL=10m`.
//! `--config PATH` reads another file.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use figment::providers::Serialized;
use levee::Config;
use levee::cache::Loaded;
use levee::core::{KeyHasher, ManualClock};
use levee_testkit::{MockIdp, TestkitError};

#[path = "story/mod.rs"]
mod story;

use story::Response;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("userinfo.toml");
    let mut redis_url = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--redis" => redis_url = Some(args.next().ok_or("--redis needs a URL")?),
            "--config" => path = args.next().ok_or("--config needs a path")?.into(),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }

    // The file, the environment over it, then this program's own layers.
    let mut layers = Config::figment_from_path(&path)?
        // The IdP and the pipeline share a manual clock that this program
        // moves by hand: a retry backoff would wait on a clock nobody
        // advances, so retries here go at once.
        .merge(Serialized::global(
            "pipelines.userinfo.retry.base_delay",
            "0s",
        ));
    if let Some(url) = &redis_url {
        layers = layers
            .merge(Serialized::global("redis.main.url", url))
            .merge(Serialized::global("caches.userinfo.redis", "main"))
            .merge(Serialized::global("caches.userinfo.l1_ttl", "30s"))
            .merge(Serialized::global("caches.userinfo.load_lock", "2s"))
            .merge(Serialized::global("quotas.idp.redis", "main"));
    }
    let config = match Config::from_figment(&layers) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    println!(
        "loaded {} ({} Redis connections)",
        path.display(),
        config.redis.len()
    );

    let clock = ManualClock::new();
    let idp = Arc::new(MockIdp::start(clock.shared()).await?);
    let parts = config.components().clock(clock.shared());
    let hasher = parts.key_hasher("tokens").unwrap_or_else(|e| {
        println!("{e}\n  (a demo secret is used instead; set it in production)");
        KeyHasher::new(b"demo secret, not for production".as_slice())
    });
    let userinfo = parts
        .pipeline::<_, String, TestkitError>("userinfo")?
        // The response becomes the cached body; a 401 means "no such user".
        .map(|r: Response| match r.status() {
            http::StatusCode::UNAUTHORIZED => Loaded::Absent,
            _ => Loaded::Value(r.into_body()),
        })
        .http()
        .build()?;

    println!();
    story::tell(&userinfo, &idp, &hasher, &clock, Duration::from_secs(31)).await?;
    println!("   breaker: {:?}", parts.breaker("idp")?.state());
    let stats = userinfo.stats();
    println!(
        "   pipeline: {} loads, {} attempts, {} retries, {} refused by the open breaker",
        stats.loads, stats.attempts, stats.retries, stats.circuit_open
    );
    Ok(())
}
