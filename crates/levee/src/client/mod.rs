//! The client side: [`LeveeLayer`] runs an HTTP client's requests through a
//! [`Levee`](crate::Levee) pipeline.
//!
//! Any `tower::Service<http::Request<B>>` whose responses have an
//! `http_body::Body` can be wrapped: hyper-util's legacy client, reqwest
//! through a tower adapter, a tonic channel. Responses come back as
//! `http::Response<http_body_util::Full<bytes::Bytes>>` whatever the inner
//! body type: the layer collects each body (up to
//! [`max_body_bytes`](LeveeLayerBuilder::max_body_bytes)) to cache it, and
//! serves cached and uncached responses alike.
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use levee::cache::TieredCache;
//! use levee::client::{CacheStatus, LeveeLayer};
//! use levee::core::KeyHasher;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pipeline = LeveeLayer::pipeline("idp")
//!     .cache(TieredCache::builder("idp").ttl(Duration::from_secs(300)).build()?)
//!     .attempt_timeout(Duration::from_secs(2))
//!     .build()?;
//! let layer = LeveeLayer::new(pipeline, KeyHasher::new("a deployment secret"));
//! // Any HTTP client; here a function answering every request.
//! let client = ServiceBuilder::new().layer(layer).service(service_fn(|_req: Request<Full<Bytes>>| async {
//!     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{\"sub\":\"alice\"}"))))
//! }));
//! let request = || {
//!     Request::get("http://idp.example/userinfo")
//!         .header("authorization", "Bearer token-alice")
//!         .body(Full::default())
//! };
//! let first = client.clone().oneshot(request()?).await?;
//! assert_eq!(first.headers()["x-levee-cache"], "fresh; source=upstream");
//! let second = client.oneshot(request()?).await?;
//! assert_eq!(second.headers()["x-levee-cache"], "fresh; source=l1");
//! assert!(matches!(second.extensions().get::<CacheStatus>(), Some(CacheStatus::Lookup { .. })));
//! # Ok(()) }
//! ```
//!
//! # The key
//!
//! A GET or HEAD is cached under its [`RequestKey`]: the method, the URI,
//! a keyed hash of its credential (the `Authorization` bearer token through
//! the layer's [`KeyHasher`](crate::core::KeyHasher); never the token
//! itself), and a keyed hash of the values of the request headers that the
//! URI's responses name in `Vary`. The layer remembers the last `Vary`
//! list of each URI (up to [`max_vary_uris`](LeveeLayerBuilder::max_vary_uris))
//! so that the next request builds its key with it; each stored response
//! also keeps the hash of the values it was loaded with, and a request
//! with other values never gets it (it looks again under the right key, or
//! goes to the upstream once). The rate limiter and per-key breakers are
//! keyed by the same [`RequestKey`]; so is the upstream quota, unless it
//! is wrapped in [`PerCredential`] (what an upstream counting calls per
//! token wants: one token's 429 holds back all its requests).
//!
//! # What is stored
//!
//! A response is stored when all hold:
//! - its status is cacheable by default in HTTP (200, 203, 204, 300, 301,
//!   308, 404, 410);
//! - its `Cache-Control` has neither `no-store` nor `no-cache` (the layer
//!   does not revalidate), nor `private` when the cache is shared (a Redis
//!   L2, or [`shared_cache(true)`](LeveeLayerBuilder::shared_cache));
//! - its `Vary` is not `*`, names at most
//!   [`max_vary_headers`](LeveeLayerBuilder::max_vary_headers) headers, and
//!   is the list the request's key was built with (the first response that
//!   teaches a URI its `Vary` list is served, not stored).
//!
//! `max-age` (and `s-maxage` for a shared cache) shorten the entry's TTL;
//! the pipeline's cache TTL and stale tiers apply otherwise. A response
//! that is not stored is still handed to every caller that waited on the
//! same load (same key). Hop-by-hop headers are never stored.
//!
//! # What is retried, and what a caller gets
//!
//! Only GET and HEAD are cached or retried. Any other method goes to the
//! upstream once ([`Levee::call_once`](crate::Levee::call_once)), still
//! under the upstream quota, rate limiter, bulkhead, timeouts and breaker,
//! and its response comes back as it is.
//!
//! A response's status and headers go to [`crate::http::verdict`] and to
//! the upstream quota. A 2xx or 3xx is served; a 4xx other than 408 and
//! 429 is served as it is, not retried and not stored (it counts as an
//! answer for the breaker); a 5xx, 408, 429 or transport error is retried
//! as the pipeline's policy allows, then answered with a stale response
//! that fits a stale tier, else the pipeline's [`Error`](crate::Error)
//! (`RateLimited`, `CircuitOpen`, `Unsuccessful`, `Upstream` with an
//! [`UpstreamError`], ...).
//!
//! Every response carries a [`CacheStatus`] extension and, by default, an
//! `x-levee-cache` header: `fresh; source=l1`, `fresh; source=l2`,
//! `fresh; source=upstream`, `stale; tier=secondary; age=3600`, `fallback`
//! or `bypass`.
//!
//! # The tower contract
//!
//! `poll_ready` forwards the inner service's readiness; the work happens
//! in the response future, with the inner service that was polled ready
//! (a clone is left in its place). A request body of a GET or HEAD is not
//! sent (each attempt sends `B::default()`). Give the pipeline an
//! `attempt_timeout`: the layer adds no timeout of its own.

mod cached;
mod error;
mod key;
mod layer;
mod quota;
mod service;

pub use cached::{CacheStatus, CachedResponse};
pub use error::{BoxError, UpstreamError};
pub use key::RequestKey;
pub use layer::{ClientPipeline, LeveeLayer, LeveeLayerBuilder, X_LEVEE_CACHE};
pub use quota::{Credential, PerCredential};
pub use service::{LeveeService, ResponseFuture};
