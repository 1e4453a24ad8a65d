//! Server-side rate limiting for tower and axum: [`RateLimitLayer`].
//!
//! Each request is counted against a key (the client IP, an API key, the
//! user an auth middleware identified: see [`KeyExtractor`]) in a quota
//! class (`"anonymous"` 100 a minute, `"authenticated"` 500: see
//! [`ClassifyRequest`]). Each class has its own limiter, any
//! [`RateLimiter`](levee_limit::RateLimiter): a local `SlidingWindow` or
//! `Gcra`, or a `RedisSlidingWindow` so that every replica shares one limit.
//!
//! ```
//! use std::net::SocketAddr;
//! use std::num::NonZeroU32;
//! use axum::{Router, body::Body, routing::get};
//! use http::{Request, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt};
//! use levee::limit::{Quota, SlidingWindow};
//! use levee::rate_limit::{PeerIp, RateLimitLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let quota = Quota::per_minute(NonZeroU32::new(2).unwrap());
//! let layer = RateLimitLayer::builder(PeerIp::new())
//!     .local_class("anonymous", quota, SlidingWindow::builder(quota).build()?)
//!     .build()?;
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(ServiceBuilder::new().layer(layer));
//!
//! // Served with `app.into_make_service_with_connect_info::<SocketAddr>()`
//! // (feature `axum`), the peer address is in every request; by hand:
//! let request = || {
//!     Request::get("/")
//!         .extension(SocketAddr::from(([192, 0, 2, 1], 40000)))
//!         .body(Body::empty())
//! };
//! let first = app.clone().oneshot(request()?).await?;
//! assert_eq!(first.status(), StatusCode::OK);
//! assert_eq!(first.headers()["ratelimit-policy"], r#""anonymous";q=2;w=60"#);
//! app.clone().oneshot(request()?).await?;
//! let third = app.oneshot(request()?).await?;
//! assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert!(third.headers().contains_key("retry-after"));
//! assert!(third.headers()["ratelimit"].to_str()?.starts_with(r#""anonymous";r=0;t="#));
//! # Ok(()) }
//! ```
//!
//! # What a response carries
//!
//! Every response of a rate-limited request carries the structured fields
//! of draft-ietf-httpapi-ratelimit-headers (drafts 9 to 11), written with
//! the `sfv` crate:
//!
//! - `RateLimit-Policy: "anonymous";q=100;w=60`: the class's quota `q`
//!   per `w` seconds (the quota given to the builder, rounded up to whole
//!   seconds);
//! - `RateLimit: "anonymous";r=42;t=17`: `r` requests remain; `t` is the
//!   seconds until the quota is whole again for an admitted request (the
//!   limiter's `reset_after`: with `SlidingWindow`'s counter mode up to two
//!   windows, as the previous window's count fades out over the next), and
//!   until a retry can succeed for a denied one (then equal to
//!   `Retry-After`).
//!
//! With [`legacy_headers`](RateLimitLayerBuilder::legacy_headers), also
//! `X-RateLimit-Limit` (q), `X-RateLimit-Remaining` (r) and
//! `X-RateLimit-Reset` (t, seconds from now, not a Unix time).
//!
//! A denied request gets `429 Too Many Requests` with `Retry-After` in
//! whole seconds, rounded up, and an empty body; it never reaches the inner
//! service. A request with no key gets `401` by default ([`MissingKey`]); a
//! limiter error lets the request through by default, or answers `503`
//! ([`OnLimiterError`]).
//!
//! # Local and awaited limiters
//!
//! [`local_class`](RateLimitLayerBuilder::local_class) takes a limiter that
//! decides at once ([`LocalLimiter`]: `SlidingWindow`, `Gcra`): the
//! decision is made inside `call`, and the response future is the inner
//! service's own, unboxed. [`class`](RateLimitLayerBuilder::class) takes
//! any `RateLimiter` (`RedisSlidingWindow`): its decision is awaited in a
//! boxed response future.
//!
//! # The tower contract
//!
//! `poll_ready` forwards the inner service's readiness. The inner service
//! that was polled ready is the one called: directly in `call` on the local
//! path, and on the awaited path by taking it into the future and leaving
//! a clone in its place (the usual tower pattern). So the layer behaves
//! under `tower::buffer::Buffer`, `ServiceBuilder` and axum's
//! `Router::layer`, on either side of a `Buffer`. A denied request leaves
//! the readiness it was polled for unused, reserved for the next request.
//! The service's error type is the inner service's: the layer answers with
//! responses, never errors, so an axum router's `Infallible` stays
//! infallible.

mod builder;
mod class;
mod future;
mod headers;
mod key;
mod layer;
mod policy;
mod service;

pub use builder::RateLimitLayerBuilder;
pub use class::{ClassifyRequest, FirstClass, LocalLimiter};
pub use future::ResponseFuture;
pub use headers::{
    RATELIMIT, RATELIMIT_POLICY, X_RATELIMIT_LIMIT, X_RATELIMIT_REMAINING, X_RATELIMIT_RESET,
};
pub use key::{
    Cidr, ClientIp, ExtensionKey, ForwardedHeader, HeaderKey, KeyExtractor, PeerIp, PeerIpBuilder,
};
pub use layer::RateLimitLayer;
pub use policy::{MissingKey, OnLimiterError};
pub use service::RateLimit;
