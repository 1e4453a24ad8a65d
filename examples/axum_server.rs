//! An axum server behind levee's `RateLimitLayer`, as the seed service
//! would run it: anonymous callers get `RATE_LIMIT_REQUESTS` (default 100)
//! per `RATE_LIMIT_WINDOW` seconds (default 60), keyed by their IP;
//! authenticated users get five times that, keyed by user id. Every
//! response carries `RateLimit` / `RateLimit-Policy` (and the legacy
//! `X-RateLimit-*`); a caller over quota gets 429 with `Retry-After`.
//!
//! With `REDIS_URL` set, the classes' limits live in Redis
//! (`RedisSlidingWindow`), so every copy of this server shares them; without
//! it each process counts for itself.
//!
//! The "authentication" is a stand-in: `Authorization: Bearer NAME` makes
//! you user NAME. A real service puts its verified user in the request
//! extensions the same way.
//!
//! Run: `cargo run --example axum_server` (then try the curl commands it
//! prints), or `REDIS_URL=redis://127.0.0.1:6379 PORT=3001 cargo run
//! --example axum_server` twice to see two servers share one limit.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::Request;
use levee::limit::{OnRedisError, Quota, RedisSlidingWindow, SlidingWindow};
use levee::rate_limit::{KeyExtractor, PeerIp, RateLimitLayer, RateLimitLayerBuilder};
use levee::redis::RedisClient;
use tower::util::MapRequestLayer;

type Error = Box<dyn std::error::Error>;

/// Who the (stand-in) authentication found.
#[derive(Debug, Clone)]
struct User(String);

/// `Authorization: Bearer NAME` -> `User(NAME)`. Only a demo: a real
/// middleware verifies a token first.
fn authenticate(mut req: Request<Body>) -> Request<Body> {
    let user = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|name| !name.is_empty() && name.len() <= 64)
        .map(|name| User(name.to_owned()));
    if let Some(user) = user {
        req.extensions_mut().insert(user);
    }
    req
}

fn env_u64(name: &str, default: u64) -> Result<u64, Error> {
    match std::env::var(name) {
        Ok(v) => v.parse().map_err(|e| format!("{name}={v:?}: {e}").into()),
        Err(_) => Ok(default),
    }
}

/// Adds class `name`: in Redis when `redis` is set, else in this process.
fn add_class<X, C>(
    builder: RateLimitLayerBuilder<String, X, C>,
    name: &str,
    quota: Quota,
    redis: Option<&RedisClient>,
) -> Result<RateLimitLayerBuilder<String, X, C>, Error> {
    Ok(match redis {
        Some(conn) => {
            let limiter = RedisSlidingWindow::builder(conn.clone(), quota)
                .prefix(format!("levee-example:{name}"))
                // Redis down: each replica allows a tenth, as if 10 shared it.
                .on_redis_error(OnRedisError::Local { replicas: 10 })
                .build()?;
            builder.class(name, quota, limiter)
        }
        None => builder.local_class(name, quota, SlidingWindow::builder(quota).build()?),
    })
}

async fn run() -> Result<(), Error> {
    let limit = u32::try_from(env_u64("RATE_LIMIT_REQUESTS", 100)?)?;
    let window = Duration::from_secs(env_u64("RATE_LIMIT_WINDOW", 60)?);
    let port = u16::try_from(env_u64("PORT", 3000)?)?;
    let anonymous = Quota::new(limit, window)?;
    let authenticated = Quota::new(limit.saturating_mul(5), window)?;
    let redis = match std::env::var("REDIS_URL") {
        Ok(url) => Some(RedisClient::standalone(url).build()?),
        Err(_) => None,
    };

    // Users by id, everyone else by address; behind a reverse proxy, trust
    // it with `PeerIp::builder().trusted_proxies([...])`.
    let peer = PeerIp::new();
    let key = move |req: &Request<Body>| match req.extensions().get::<User>() {
        Some(user) => Some(format!("user:{}", user.0)),
        None => peer.extract(req).map(|ip| format!("ip:{ip}")),
    };
    let builder = RateLimitLayer::builder(key);
    let builder = add_class(builder, "anonymous", anonymous, redis.as_ref())?;
    let builder = add_class(builder, "authenticated", authenticated, redis.as_ref())?;
    let layer = builder
        .classify(|req: &Request<Body>| match req.extensions().get::<User>() {
            Some(_) => "authenticated",
            None => "anonymous",
        })
        .legacy_headers(true)
        .build()?;

    let app = Router::new()
        .route("/", get(|| async { "hello\n" }))
        // Layers added later run first: authentication, then the limit.
        .layer(layer)
        .layer(MapRequestLayer::new(authenticate));

    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let store = if redis.is_some() {
        "Redis (shared by every copy)"
    } else {
        "this process"
    };
    println!("listening on http://{addr}; limits kept in {store}");
    println!(
        "anonymous: {limit} per {window:?}; authenticated: {} per {window:?}",
        limit.saturating_mul(5)
    );
    println!("try:");
    println!("  curl -i http://{addr}/");
    println!("  curl -i -H 'Authorization: Bearer alice' http://{addr}/");
    println!(
        "  for i in $(seq {}); do curl -s -o /dev/null -w '%{{http_code}}\\n' http://{addr}/; done | sort | uniq -c",
        limit + 5
    );
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("axum_server: {e}");
            ExitCode::FAILURE
        }
    }
}
