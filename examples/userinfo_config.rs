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

type Response = http::Response<String>;

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

    let fetch = |user: &'static str| {
        let (userinfo, idp) = (userinfo.clone(), idp.clone());
        let token = format!("token-{user}");
        let key = hasher.key(&token); // the raw token never becomes a key
        async move {
            userinfo
                .get(key, move || {
                    let (idp, token) = (idp.clone(), token.clone());
                    async move {
                        let (status, headers, body) = idp.userinfo(&token).await?;
                        let mut r = http::Response::new(body);
                        *r.status_mut() = status;
                        *r.headers_mut() = headers;
                        Ok(r)
                    }
                })
                .await
        }
    };

    println!("\n1. alice's page load fires 5 requests at once:");
    let page: Vec<_> = (0..5).map(|_| tokio::spawn(fetch("alice"))).collect();
    for request in page {
        let got = request.await??.ok_or("alice is unknown")?;
        println!("   {:?} from {:?}", got.freshness, got.source);
    }
    println!(
        "   IdP calls for alice: {} (5 requests)",
        idp.calls("alice")
    );

    println!("\n2. alice comes back every 6 minutes for an hour:");
    for _ in 0..10 {
        clock.advance(Duration::from_secs(360));
        fetch("alice").await?;
    }
    println!(
        "   IdP calls for alice: {}, 429s: {}",
        idp.calls("alice"),
        idp.rate_limited("alice")
    );

    println!("\n3. the IdP is down:");
    idp.set_outage(true);
    clock.advance(Duration::from_secs(360));
    for i in 1..=7 {
        match fetch("alice").await {
            Ok(Some(got)) => println!(
                "   request {i}: {:?} from {:?}: no error shown to the user",
                got.freshness, got.source
            ),
            other => println!("   request {i}: {other:?}"),
        }
        clock.advance(Duration::from_secs(31)); // past the failure backoff
    }
    println!("   breaker: {:?}", parts.breaker("idp")?.state());
    let stats = userinfo.stats();
    println!(
        "   pipeline: {} loads, {} attempts, {} retries, {} refused by the open breaker",
        stats.loads, stats.attempts, stats.retries, stats.circuit_open
    );
    Ok(())
}
