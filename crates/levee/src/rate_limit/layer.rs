//! [`RateLimitLayer`]: the `tower::Layer` that wraps services in
//! [`RateLimit`].

use std::sync::Arc;

use tower::Layer;

use super::builder::RateLimitLayerBuilder;
use super::class::FirstClass;
use super::service::{RateLimit, Shared};

/// A tower layer that rate-limits requests by a key, with a quota per
/// class, and answers the ones over quota with `429 Too Many Requests`.
///
/// Cheap to clone: the layer and every service it makes share one state
/// (an `Arc`), so every clone of the service (axum clones it per request
/// and per connection) spends from the same limit. See the
/// [module docs](super) for the fields written and an example.
pub struct RateLimitLayer<K, X, C = FirstClass> {
    shared: Arc<Shared<K, X, C>>,
}

impl<K, X> RateLimitLayer<K, X> {
    /// A builder keyed by `extractor`: any `Fn(&Request<B>) -> Option<K>`,
    /// or [`PeerIp`](super::PeerIp), [`HeaderKey`](super::HeaderKey),
    /// [`ExtensionKey`](super::ExtensionKey).
    pub fn builder(extractor: X) -> RateLimitLayerBuilder<K, X> {
        RateLimitLayerBuilder::new(extractor)
    }
}

impl<K, X, C> RateLimitLayer<K, X, C> {
    pub(crate) fn from_shared(shared: Shared<K, X, C>) -> Self {
        RateLimitLayer {
            shared: Arc::new(shared),
        }
    }
}

impl<K, X, C> Clone for RateLimitLayer<K, X, C> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K, X, C> std::fmt::Debug for RateLimitLayer<K, X, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RateLimitLayer").field(&self.shared).finish()
    }
}

impl<S, K, X, C> Layer<S> for RateLimitLayer<K, X, C> {
    type Service = RateLimit<S, K, X, C>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, Arc::clone(&self.shared))
    }
}
