//! [`LeveeLayer`] and its builder: the `tower::Layer` that wraps an HTTP
//! client in [`LeveeService`].

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderName;
use levee_core::KeyHasher;
use tower::Layer;

use super::cached::{CachedResponse, to_loaded};
use super::error::UpstreamError;
use super::key::{KeyMaker, RequestKey, VaryTable};
use super::service::{LeveeService, Shared};
use crate::{ConfigError, Levee, LeveeBuilder, Verdict};

/// The pipeline a [`LeveeLayer`] runs requests through: keyed by
/// [`RequestKey`], caching [`CachedResponse`]s, loading collected
/// responses. Make one with [`LeveeLayer::pipeline`].
pub type ClientPipeline = Levee<RequestKey, CachedResponse, UpstreamError, http::Response<Bytes>>;

/// The default name of the header that says where a response came from.
pub const X_LEVEE_CACHE: HeaderName = HeaderName::from_static("x-levee-cache");

/// A tower layer that runs the requests of an HTTP client (any
/// `Service<http::Request<B>>`: hyper-util's client, reqwest through a
/// tower adapter) through a [`Levee`] pipeline: cache, upstream quota, rate
/// limit, bulkhead, timeouts, retry, breaker, stale values. See the
/// [module docs](super) for the rules and an example.
///
/// Cheap to clone: the layer and every service it makes share one state
/// (the pipeline, its cache and the `Vary` lists learned), so every clone
/// of the service spends from the same limits and reads the same cache.
#[derive(Clone)]
pub struct LeveeLayer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LeveeLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("LeveeLayer").field(&self.shared).finish()
    }
}

impl LeveeLayer {
    /// A pipeline builder set up for the layer: a collected response is
    /// classified with [`crate::http::verdict`] (except that a 4xx other
    /// than 408 and 429 counts as an answer, handed to the caller, never
    /// stored), its status and headers teach the upstream quota, and it
    /// becomes a [`CachedResponse`] stored by the layer's rules. Add the
    /// cache, quota, limiter, retry and breaker, then `build()`.
    pub fn pipeline(
        name: &str,
    ) -> LeveeBuilder<RequestKey, CachedResponse, UpstreamError, http::Response<Bytes>> {
        Levee::builder(name)
            .map(to_loaded)
            .classify(classify)
            .response_headers(crate::http::status_and_headers::<Bytes, UpstreamError>)
    }

    /// A builder around `pipeline`; `hasher` hashes the credential and the
    /// `Vary`'d header values of each request into its key (the same
    /// secret on every replica that shares an L2).
    pub fn builder(pipeline: ClientPipeline, hasher: KeyHasher) -> LeveeLayerBuilder {
        let shared_cache = pipeline.stats().cache.is_some_and(|c| c.l2.is_some());
        LeveeLayerBuilder {
            pipeline,
            hasher,
            header: Some(X_LEVEE_CACHE),
            max_body_bytes: 4 << 20,
            max_uri_bytes: 8 << 10,
            max_vary_headers: 8,
            max_vary_uris: 10_000,
            shared_cache,
        }
    }

    /// The layer with every default: `LeveeLayer::builder(pipeline,
    /// hasher).build()`.
    pub fn new(pipeline: ClientPipeline, hasher: KeyHasher) -> Self {
        LeveeLayer::from_builder(LeveeLayer::builder(pipeline, hasher))
    }

    fn from_builder(b: LeveeLayerBuilder) -> Self {
        LeveeLayer {
            shared: Arc::new(Shared {
                levee: b.pipeline,
                keys: KeyMaker { hasher: b.hasher },
                vary: VaryTable::new(b.max_vary_uris),
                header: b.header,
                max_body_bytes: b.max_body_bytes,
                max_uri_bytes: b.max_uri_bytes,
                max_vary_headers: b.max_vary_headers,
                shared_cache: b.shared_cache,
            }),
        }
    }

    /// The pipeline the layer runs requests through (its stats, its cache).
    pub fn pipeline_ref(&self) -> &ClientPipeline {
        &self.shared.levee
    }
}

impl<S> Layer<S> for LeveeLayer {
    type Service = LeveeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LeveeService::new(inner, Arc::clone(&self.shared))
    }
}

/// The layer's verdict: [`crate::http::classify`], except that an answer
/// retrying cannot change (a 401, a 404) is handed to the caller as it is.
/// A body over the size limit cannot change either.
fn classify(result: &Result<http::Response<Bytes>, UpstreamError>) -> Verdict {
    match (result, crate::http::classify(result)) {
        (Ok(_), Verdict::DoNotRetry) => Verdict::Success,
        (Err(e), _) if e.is_body_too_large() => Verdict::DoNotRetry,
        (_, v) => v,
    }
}

/// Builds a [`LeveeLayer`]; from [`LeveeLayer::builder`].
#[must_use]
pub struct LeveeLayerBuilder {
    pipeline: ClientPipeline,
    hasher: KeyHasher,
    header: Option<HeaderName>,
    max_body_bytes: usize,
    max_uri_bytes: usize,
    max_vary_headers: usize,
    max_vary_uris: usize,
    shared_cache: bool,
}

impl std::fmt::Debug for LeveeLayerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeveeLayerBuilder")
            .field("pipeline", &self.pipeline)
            .field("header", &self.header)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("shared_cache", &self.shared_cache)
            .finish_non_exhaustive()
    }
}

impl LeveeLayerBuilder {
    /// The response header that says where a response came from (see
    /// [`CacheStatus`](super::CacheStatus)); `None` writes only the
    /// response extension. Default: [`X_LEVEE_CACHE`].
    ///
    /// ```
    /// use levee::client::LeveeLayer;
    /// use levee::core::KeyHasher;
    ///
    /// let pipeline = LeveeLayer::pipeline("idp").build()?;
    /// let layer = LeveeLayer::builder(pipeline, KeyHasher::new("a secret from the vault"))
    ///     .cache_header(None)
    ///     .build()?;
    /// # Ok::<(), levee::ConfigError>(())
    /// ```
    pub fn cache_header(mut self, name: Option<HeaderName>) -> Self {
        self.header = name;
        self
    }

    /// The longest response body collected; a longer one is an
    /// [`UpstreamError`] that is not retried. Default: 4 MiB.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// A GET or HEAD with a longer URI goes to the upstream once, without
    /// the cache. Default: 8 KiB.
    pub fn max_uri_bytes(mut self, bytes: usize) -> Self {
        self.max_uri_bytes = bytes;
        self
    }

    /// A response whose `Vary` names more headers than this (or `*`) is
    /// never stored. Default: 8.
    pub fn max_vary_headers(mut self, names: usize) -> Self {
        self.max_vary_headers = names;
        self
    }

    /// How many URIs' `Vary` lists are remembered; past it, responses of
    /// new URIs that name a `Vary` are not stored. Default: 10 000.
    pub fn max_vary_uris(mut self, uris: usize) -> Self {
        self.max_vary_uris = uris;
        self
    }

    /// Whether the cache is shared between users' requests beyond this
    /// process, so that `Cache-Control: private` responses must not be
    /// stored in it. Default: whether the pipeline's cache has a Redis L2.
    pub fn shared_cache(mut self, shared: bool) -> Self {
        self.shared_cache = shared;
        self
    }

    /// Checks the settings and builds the layer.
    pub fn build(self) -> Result<LeveeLayer, ConfigError> {
        if self.max_body_bytes == 0 {
            return Err(ConfigError {
                setting: "max_body_bytes",
                reason: "0 refuses every response with a body; use at least its size".into(),
            });
        }
        Ok(LeveeLayer::from_builder(self))
    }
}
