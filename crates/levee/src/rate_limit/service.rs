//! [`RateLimit`]: the service the layer wraps around an inner service, and
//! the shared state every clone decides with.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use tower::Service;

use levee_limit::{Decision, LimitError, RateLimiter};

use super::class::{ClassLimiter, ClassifyRequest, FirstClass, QuotaClass, class_index};
use super::future::ResponseFuture;
use super::headers::DecisionFields;
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

/// What the layer does with a request once its limiter has answered.
enum Verdict<RB> {
    /// Call the inner service; put these fields on its response.
    Serve(DecisionFields),
    /// Answer with this response instead.
    Answer(Response<RB>),
}

impl<K: Sync, X, C> Shared<K, X, C> {
    /// The class (an index) and key a request counts under: its own key
    /// (`Some`), or the shared key of keyless requests (`None`). `None`
    /// when a keyless request is to be rejected.
    fn target<B>(&self, req: &Request<B>) -> Option<(usize, Option<K>)>
    where
        X: KeyExtractor<B, Key = K>,
        C: ClassifyRequest<B>,
    {
        match (self.extractor.extract(req), &self.missing) {
            (Some(key), _) => {
                let class = class_index(&self.classes, self.classify.classify(req));
                Some((class, Some(key)))
            }
            (None, MissingPlan::Shared { class, .. }) => Some((*class, None)),
            (None, MissingPlan::Reject) => None,
        }
    }

    /// The key to count: the request's own, or the keyless requests' one.
    fn key<'a>(&'a self, own: &'a Option<K>) -> Option<&'a K> {
        match (own, &self.missing) {
            (Some(key), _) => Some(key),
            (None, MissingPlan::Shared { key, .. }) => Some(key),
            (None, MissingPlan::Reject) => None,
        }
    }

    /// Turns the limiter's answer into fields to write or a response.
    fn verdict<RB: Default>(
        &self,
        class: &QuotaClass<K>,
        answered: Result<Decision, LimitError>,
    ) -> Verdict<RB> {
        match answered {
            Ok(d) => {
                let fields =
                    DecisionFields::new(&class.name, class.quota, &class.policy, &d, self.legacy);
                if d.allowed {
                    return Verdict::Serve(fields);
                }
                let mut resp = answer(StatusCode::TOO_MANY_REQUESTS);
                fields.write(resp.headers_mut());
                Verdict::Answer(resp)
            }
            Err(error) => {
                tracing::warn!(%error, class = &*class.name, policy = ?self.on_error,
                    "levee: rate limiter gave no decision");
                let fields = DecisionFields::policy_only(&class.policy);
                if self.on_error == OnLimiterError::FailOpen {
                    return Verdict::Serve(fields);
                }
                let mut resp = answer(StatusCode::SERVICE_UNAVAILABLE);
                fields.write(resp.headers_mut());
                Verdict::Answer(resp)
            }
        }
    }

    /// The class at `index`, which came from the class list (never empty).
    fn class(&self, index: usize) -> &QuotaClass<K> {
        &self.classes[index.min(self.classes.len() - 1)]
    }

    /// The awaited path: asks `limiter` (class `index`'s) for `own`'s key,
    /// then calls `inner` (already ready) if the request may proceed.
    async fn serve_awaited<S, B, RB>(
        &self,
        mut inner: S,
        req: Request<B>,
        index: usize,
        limiter: Arc<dyn RateLimiter<K>>,
        own: Option<K>,
    ) -> Result<Response<RB>, S::Error>
    where
        S: Service<Request<B>, Response = Response<RB>>,
        RB: Default,
    {
        let Some(key) = self.key(&own) else {
            return Ok(answer(StatusCode::UNAUTHORIZED));
        };
        let answered = limiter.check(key).await;
        match self.verdict(self.class(index), answered) {
            Verdict::Serve(fields) => {
                let mut resp = inner.call(req).await?;
                fields.write(resp.headers_mut());
                Ok(resp)
            }
            Verdict::Answer(resp) => Ok(resp),
        }
    }
}

/// The rate-limiting service made by [`RateLimitLayer`](super::RateLimitLayer).
///
/// `poll_ready` is the inner service's; the decision is made in `call` (a
/// local class) or in the response future (an awaited class), and either
/// way the inner service that was polled ready serves the request, so the
/// layer works under `Buffer` and in any `ServiceBuilder` stack. A denied
/// request never reaches the inner service. Clones share the layer's state.
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
    type Future = ResponseFuture<S::Future, RB, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let shared = &*self.shared;
        let Some((index, own)) = shared.target(&req) else {
            return ResponseFuture::answer(answer(StatusCode::UNAUTHORIZED));
        };
        let class = shared.class(index);
        match &class.limiter {
            ClassLimiter::Local(local) => {
                let answered = match shared.key(&own) {
                    Some(key) => local.check_now(key),
                    None => return ResponseFuture::answer(answer(StatusCode::UNAUTHORIZED)),
                };
                // Decided already: the service polled ready serves the
                // request at once, as in any synchronous middleware.
                match shared.verdict(class, answered) {
                    Verdict::Serve(fields) => ResponseFuture::inner(self.inner.call(req), fields),
                    Verdict::Answer(resp) => ResponseFuture::answer(resp),
                }
            }
            ClassLimiter::Awaited(limiter) => {
                let limiter = Arc::clone(limiter);
                // The service that was polled ready serves this request
                // after the await; the clone left behind is polled before
                // the next one.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                let shared = Arc::clone(&self.shared);
                ResponseFuture::awaiting(async move {
                    shared.serve_awaited(inner, req, index, limiter, own).await
                })
            }
        }
    }
}
