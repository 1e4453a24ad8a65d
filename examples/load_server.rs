//! The server side of `scripts/load-test`: an axum hello-world on loopback,
//! bare or behind a rate limiter, for `wrk` to hit.
//!
//! ```text
//! load_server MODE [--key ip|header] [--port N] [--window-secs S]
//!   MODE:  bare      no limiter
//!          bare-fields   no limiter, but the two fields levee writes,
//!                    as constants (what the bytes alone cost)
//!          bare-layer    no limiter, a layer that does nothing (what
//!                    axum charges for any layer)
//!          local     levee RateLimitLayer on a local SlidingWindow
//!          redis     levee RateLimitLayer on RedisSlidingWindow (REDIS_URL,
//!                    or a private redis-server on a free port)
//!          governor  tower_governor (GCRA, x-ratelimit headers on)
//!   --key ip       the peer address (default; under wrk, one key)
//!   --key header   the `x-key` request header (wrk's Lua script sends 1M
//!                  distinct values)
//! ```
//!
//! Every limiter gets a quota far above what the run can send (10 million
//! per window; below 2^24, so the local counter stays lock-free), so
//! nothing is denied and the figures measure the limiter's cost alone.
//! Prints `ready on ADDR pid PID` once it accepts connections.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{HeaderName, Request};
use levee::limit::{LimitError, OnRedisError, Quota, RedisSlidingWindow, SlidingWindow};
use levee::rate_limit::{HeaderKey, KeyExtractor, PeerIp, RateLimitLayer, RateLimitLayerBuilder};
use levee::redis::RedisClient;
use levee_testkit::RedisServer;
use tower::util::MapRequestLayer;
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::{KeyExtractor as GovernorKey, PeerIpKeyExtractor};

/// Far above any run's request count, below the local counter's 2^24.
const QUOTA: u32 = 10_000_000;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Bare,
    /// Bare, with the two fields levee writes as constant strings: the
    /// cost of the bytes alone (server writing, wrk parsing).
    BareFields,
    /// Bare behind a layer that does nothing: what axum charges for any
    /// layer on a route (a boxed, cloned service per request).
    BareLayer,
    Local,
    Redis,
    Governor,
}

#[derive(Debug)]
struct Args {
    mode: Mode,
    by_header: bool,
    port: u16,
    window: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mode = match args.next().as_deref() {
        Some("bare") => Mode::Bare,
        Some("bare-fields") => Mode::BareFields,
        Some("bare-layer") => Mode::BareLayer,
        Some("local") => Mode::Local,
        Some("redis") => Mode::Redis,
        Some("governor") => Mode::Governor,
        other => {
            return Err(format!(
                "unknown mode {other:?}: bare, local, redis or governor"
            ));
        }
    };
    let mut parsed = Args {
        mode,
        by_header: false,
        port: 8077,
        window: Duration::from_secs(60),
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--key" => parsed.by_header = value == "header",
            "--port" => parsed.port = value.parse().map_err(|e| format!("--port: {e}"))?,
            "--window-secs" => {
                let secs = value.parse().map_err(|e| format!("--window-secs: {e}"))?;
                parsed.window = Duration::from_secs(secs);
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(parsed)
}

fn x_key() -> HeaderKey {
    HeaderKey::new(HeaderName::from_static("x-key"))
}

/// tower_governor keyed by the `x-key` header, like [`x_key`].
#[derive(Debug, Clone)]
struct GovernorHeaderKey;

impl GovernorKey for GovernorHeaderKey {
    type Key = String;

    fn extract<T>(&self, req: &Request<T>) -> Result<String, tower_governor::GovernorError> {
        req.headers()
            .get("x-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or(tower_governor::GovernorError::UnableToExtractKey)
    }
}

/// tower_governor keyed by `key`: one cell every nanosecond and a burst of
/// QUOTA, so it never denies; `x-ratelimit-*` headers on, as levee writes
/// its own.
fn governor<K>(app: Router, key: K) -> Result<Router, String>
where
    K: GovernorKey + Send + Sync + 'static,
    K::Key: Send + Sync + 'static,
{
    let config = GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(QUOTA)
        .key_extractor(key)
        .use_headers()
        .finish()
        .ok_or("tower_governor rejected the configuration")?;
    Ok(app.layer(GovernorLayer::new(config)))
}

/// levee's layer keyed by `extractor`, with the one class `add` adds.
fn levee<K, X>(
    app: Router,
    extractor: X,
    add: impl FnOnce(RateLimitLayerBuilder<K, X>) -> RateLimitLayerBuilder<K, X>,
) -> Result<Router, LimitError>
where
    K: Send + Sync + 'static,
    X: KeyExtractor<Body, Key = K>,
{
    Ok(app.layer(add(RateLimitLayer::builder(extractor)).build()?))
}

/// `GET /keys`: how many keys the local limiter holds, so the script can
/// watch idle eviction (RSS alone does not show it: the allocator keeps
/// freed memory).
fn keys_held<K>(window: SlidingWindow<K>) -> axum::routing::MethodRouter
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
{
    get(move || {
        let held = window.len();
        async move { held.to_string() }
    })
}

/// levee on a local limiter, or on Redis when `redis` is set.
fn levee_app(
    app: Router,
    args: &Args,
    redis: Option<&str>,
) -> Result<Router, Box<dyn std::error::Error>> {
    let quota = Quota::new(QUOTA, args.window)?;
    let Some(url) = redis else {
        return Ok(match args.by_header {
            true => {
                let window = SlidingWindow::<String>::builder(quota).build()?;
                let app = app.route("/keys", keys_held(window.clone()));
                levee(app, x_key(), |b| b.local_class("load", quota, window))?
            }
            false => {
                let window = SlidingWindow::builder(quota).build()?;
                let app = app.route("/keys", keys_held(window.clone()));
                levee(app, PeerIp::new(), |b| b.local_class("load", quota, window))?
            }
        });
    };
    let conn = RedisClient::standalone(url).build()?;
    let limiter = RedisSlidingWindow::builder(conn, quota)
        .prefix("levee-load")
        .on_redis_error(OnRedisError::FailOpen)
        .build()?;
    Ok(match args.by_header {
        true => levee(app, x_key(), |b| b.class("load", quota, limiter))?,
        false => levee(app, PeerIp::new(), |b| b.class("load", quota, limiter))?,
    })
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    // Kept alive for the whole run when the example starts its own Redis.
    let mut private_redis = None;
    let redis_url = match (args.mode, std::env::var("REDIS_URL")) {
        (Mode::Redis, Ok(url)) => Some(url),
        (Mode::Redis, Err(_)) => {
            let server = RedisServer::start()?;
            let url = server.url();
            private_redis = Some(server);
            Some(url)
        }
        _ => None,
    };
    let app = Router::new().route("/", get(|| async { "hello" }));
    let app = match args.mode {
        Mode::Bare => app,
        Mode::BareLayer => app.layer(MapRequestLayer::new(|req: Request<Body>| req)),
        Mode::BareFields => Router::new().route(
            "/",
            get(|| async {
                (
                    [
                        ("ratelimit-policy", r#""load";q=10000000;w=60"#),
                        ("ratelimit", r#""load";r=9999999;t=120"#),
                    ],
                    "hello",
                )
            }),
        ),
        Mode::Governor if args.by_header => governor(app, GovernorHeaderKey)?,
        Mode::Governor => governor(app, PeerIpKeyExtractor)?,
        Mode::Local | Mode::Redis => levee_app(app, &args, redis_url.as_deref())?,
    };
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], args.port))).await?;
    println!(
        "ready on {} pid {} ({:?}, key {}{})",
        listener.local_addr()?,
        std::process::id(),
        args.mode,
        if args.by_header {
            "x-key header"
        } else {
            "peer ip"
        },
        match &private_redis {
            Some(r) => format!(", private redis-server pid {:?}", r.pid()),
            None => String::new(),
        }
    );
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(terminated())
    .await?;
    // Stops the private redis-server, if any.
    drop(private_redis);
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C, so a private redis-server is stopped.
async fn terminated() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("load_server: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load_server: {e}");
            ExitCode::FAILURE
        }
    }
}
