//! Quota classes: one limiter per class, and the choice of class per
//! request.

use std::hash::Hash;
use std::sync::Arc;

use http::{HeaderValue, Request};
use levee_limit::{Decision, Gcra, LimitError, Quota, RateLimiter, SlidingWindow};

/// Chooses the quota class of a request by name.
///
/// Implemented for every `Fn(&Request<B>) -> &'static str`. A name that
/// matches no configured class falls back to the first class, with a
/// warning in the log.
///
/// ```
/// use http::Request;
/// use levee::rate_limit::ClassifyRequest;
///
/// #[derive(Clone)]
/// struct User(String);
///
/// let classify = |req: &Request<()>| {
///     if req.extensions().get::<User>().is_some() { "authenticated" } else { "anonymous" }
/// };
/// let req = Request::get("/").body(()).unwrap();
/// assert_eq!(classify.classify(&req), Some("anonymous"));
/// ```
pub trait ClassifyRequest<B>: Send + Sync + 'static {
    /// The class name, or `None` for the first configured class.
    fn classify(&self, req: &Request<B>) -> Option<&str>;
}

impl<B, F> ClassifyRequest<B> for F
where
    F: Fn(&Request<B>) -> &'static str + Send + Sync + 'static,
{
    fn classify(&self, req: &Request<B>) -> Option<&str> {
        Some(self(req))
    }
}

/// Every request in the first configured class: the layer's classifier
/// until [`classify`](super::RateLimitLayerBuilder::classify) sets one.
#[derive(Debug, Clone, Copy, Default)]
pub struct FirstClass;

impl<B> ClassifyRequest<B> for FirstClass {
    fn classify(&self, _req: &Request<B>) -> Option<&str> {
        None
    }
}

/// A limiter that decides at once, without I/O: the layer asks it inside
/// `call` and, when it admits, calls the inner service right there, so a
/// request costs no allocation or task switch beyond the response fields.
/// Implemented for the local [`SlidingWindow`] and [`Gcra`]; add a class
/// with one through
/// [`local_class`](super::RateLimitLayerBuilder::local_class).
pub trait LocalLimiter<K>: Send + Sync + 'static {
    /// Spends one permit for `key`.
    fn check_now(&self, key: &K) -> Result<Decision, LimitError>;
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> LocalLimiter<K> for SlidingWindow<K> {
    fn check_now(&self, key: &K) -> Result<Decision, LimitError> {
        Ok(self.check(key))
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> LocalLimiter<K> for Gcra<K> {
    fn check_now(&self, key: &K) -> Result<Decision, LimitError> {
        Ok(self.check(key))
    }
}

/// How a class's limiter is asked.
pub(crate) enum ClassLimiter<K> {
    /// In `call`, at once.
    Local(Box<dyn LocalLimiter<K>>),
    /// Awaited (Redis, or any other [`RateLimiter`]); an `Arc`, so the
    /// request's future can own a handle.
    Awaited(Arc<dyn RateLimiter<K>>),
}

/// A configured class: its name, its quota (for `RateLimit-Policy`) and
/// its limiter.
pub(crate) struct QuotaClass<K> {
    pub(crate) name: Box<str>,
    pub(crate) quota: Quota,
    pub(crate) limiter: ClassLimiter<K>,
    /// `"name";q=..;w=..`, serialized once.
    pub(crate) policy: HeaderValue,
}

impl<K> std::fmt::Debug for QuotaClass<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = match self.limiter {
            ClassLimiter::Local(_) => "local",
            ClassLimiter::Awaited(_) => "awaited",
        };
        f.debug_struct("QuotaClass")
            .field("name", &self.name)
            .field("quota", &self.quota)
            .field("limiter", &how)
            .finish()
    }
}

/// The index of the class named `name` (the first when `None` or unknown).
pub(crate) fn class_index<K>(classes: &[QuotaClass<K>], name: Option<&str>) -> usize {
    let Some(name) = name else { return 0 };
    match classes.iter().position(|c| &*c.name == name) {
        Some(i) => i,
        None => {
            tracing::warn!(
                class = name,
                "levee: the rate-limit classifier chose an unknown class; using the first class"
            );
            0
        }
    }
}
