//! [`RateLimit`]: the service the layer wraps around an inner service, and
//! the shared state every clone decides with.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use tower::Service;

use super::class::{ClassifyRequest, FirstClass, QuotaClass, class_index};
use super::future::ResponseFuture;
use super::headers::{DecisionFields, RATELIMIT_POLICY};
use super::key::KeyExtractor;
use super::policy::OnLimiterError;

/// [`MissingKey`](super::MissingKey) with the class resolved to an index.
#[derive(Debug)]
pub(crate) enum MissingPlan<K> {
    Reject,
    Shared { class: usize, key: K },
}

/// Everything the layer and every service it made share, behind one `Arc`.
pub(crate) struct Shared<K, X, C> {
    pub(crate) extractor: X,
    pub(crate) classify: C,
    /// Never empty (the builder checks).
    pub(crate) classes: Box<[QuotaClass<K>]>,
    pub(crate) missing: MissingPlan<K>,
    pub(crate) on_error: OnLimiterError,
    pub(crate) legacy: bool,
}

impl<K, X, C> std::fmt::Debug for Shared<K, X, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("classes", &self.classes)
            .field("on_error", &self.on_error)
            .field("legacy_headers", &self.legacy)
            .finish_non_exhaustive()
    }
}

/// A response the layer makes itself, with an empty body.
fn answer<RB: Default>(status: StatusCode) -> Response<RB> {
    let mut resp = Response::new(RB::default());
    *resp.status_mut() = status;
    resp
}

impl<K: Sync, X, C> Shared<K, X, C> {
    /// Decides, then calls `inner` (already ready) if the request may
    /// proceed, and writes the rate-limit fields on the response.
    async fn serve<S, B, RB>(&self, mut inner: S, req: Request<B>) -> Result<Response<RB>, S::Error>
    where
        S: Service<Request<B>, Response = Response<RB>>,
        X: KeyExtractor<B, Key = K>,
        C: ClassifyRequest<B>,
        RB: Default,
    {
        let chosen = class_index(&self.classes, self.classify.classify(&req));
        let extracted = self.extractor.extract(&req);
        let (class, key) = match (&extracted, &self.missing) {
            (Some(key), _) => (chosen, key),
            (None, MissingPlan::Shared { class, key }) => (*class, key),
            (None, MissingPlan::Reject) => return Ok(answer(StatusCode::UNAUTHORIZED)),
        };
        let Some(class) = self.classes.get(class) else {
            // Unreachable: indices come from the class list itself.
            return inner.call(req).await;
        };
        let fields = match class.limiter.check(key).await {
            Ok(d) => {
                let fields = DecisionFields::new(&class.name, class.quota, &d, self.legacy);
                if !d.allowed {
                    let mut resp = answer(StatusCode::TOO_MANY_REQUESTS);
                    fields.write(&class.policy, resp.headers_mut());
                    return Ok(resp);
                }
                Some(fields)
            }
            Err(error) => {
                tracing::warn!(%error, class = &*class.name, policy = ?self.on_error,
                    "levee: rate limiter gave no decision");
                if self.on_error == OnLimiterError::FailClosed {
                    let mut resp = answer(StatusCode::SERVICE_UNAVAILABLE);
                    resp.headers_mut()
                        .insert(RATELIMIT_POLICY.clone(), class.policy.clone());
                    return Ok(resp);
                }
                None
            }
        };
        let mut resp = inner.call(req).await?;
        match fields {
            Some(fields) => fields.write(&class.policy, resp.headers_mut()),
            None => {
                resp.headers_mut()
                    .insert(RATELIMIT_POLICY.clone(), class.policy.clone());
            }
        }
        Ok(resp)
    }
}

/// The rate-limiting service made by [`RateLimitLayer`](super::RateLimitLayer).
///
/// `poll_ready` is the inner service's; the decision is made in `call`,
/// which takes the inner service that was polled ready and leaves a clone
/// in its place (the usual tower pattern), so the layer works under
/// `Buffer` and in any `ServiceBuilder` stack. A denied request never
/// reaches the inner service. Clones share the layer's state.
pub struct RateLimit<S, K, X, C = FirstClass> {
    inner: S,
    shared: Arc<Shared<K, X, C>>,
}

impl<S, K, X, C> RateLimit<S, K, X, C> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<K, X, C>>) -> Self {
        RateLimit { inner, shared }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, consuming this one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, K, X, C> Clone for RateLimit<S, K, X, C> {
    fn clone(&self) -> Self {
        RateLimit {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: std::fmt::Debug, K, X, C> std::fmt::Debug for RateLimit<S, K, X, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("shared", &self.shared)
            .finish()
    }
}

impl<S, K, X, C, B, RB> Service<Request<B>> for RateLimit<S, K, X, C>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: 'static,
    K: Send + Sync + 'static,
    X: KeyExtractor<B, Key = K>,
    C: ClassifyRequest<B>,
    B: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = ResponseFuture<Response<RB>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The service that was polled ready serves this request; the clone
        // left behind is polled before the next one.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        ResponseFuture::new(async move { shared.serve(inner, req).await })
    }
}
