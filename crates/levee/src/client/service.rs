//! [`LeveeService`]: the service the layer wraps around an HTTP client,
//! and the shared state every clone serves requests with.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderName, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use levee_cache::Cached;
use tower::Service;

use super::cached::{CacheStatus, CachedResponse, Store, VaryMark, store_rule};
use super::error::{BoxError, UpstreamError};
use super::key::{KeyMaker, Vary, VaryTable};
use super::layer::ClientPipeline;
use crate::Error;

/// The response future of a [`LeveeService`] (boxed: it awaits the
/// pipeline).
pub type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, Error<UpstreamError>>> + Send>>;

/// A boxed future of one collected upstream answer.
type Answer = Pin<Box<dyn Future<Output = Result<Response<Bytes>, UpstreamError>> + Send>>;

/// Everything the layer and every service it made share, behind one `Arc`.
pub(crate) struct Shared {
    pub(crate) levee: ClientPipeline,
    pub(crate) keys: KeyMaker,
    pub(crate) vary: VaryTable,
    pub(crate) header: Option<HeaderName>,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_uri_bytes: usize,
    pub(crate) max_vary_headers: usize,
    pub(crate) shared_cache: bool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeveeService")
            .field("pipeline", &self.levee)
            .field("header", &self.header)
            .field("shared_cache", &self.shared_cache)
            .finish_non_exhaustive()
    }
}

/// The service made by [`LeveeLayer`](super::LeveeLayer).
///
/// `poll_ready` is the inner service's; the work happens in the response
/// future, which takes the inner service that was polled ready and leaves
/// a clone in its place (the usual tower pattern), so it works in any
/// `ServiceBuilder` stack and with `ServiceExt::oneshot`. A retry polls a
/// clone of the inner service ready before calling it. Clones share the
/// layer's state.
pub struct LeveeService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> LeveeService<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        LeveeService { inner, shared }
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

impl<S: Clone> Clone for LeveeService<S> {
    fn clone(&self) -> Self {
        LeveeService {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for LeveeService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeveeService")
            .field("inner", &self.inner)
            .field("shared", &self.shared)
            .finish()
    }
}

impl<S, B, RB> Service<Request<B>> for LeveeService<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Default + Send + 'static,
    RB: http_body::Body + Send + 'static,
    RB::Data: Send,
    RB::Error: Into<BoxError>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Error<UpstreamError>;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| Error::Upstream(Arc::new(UpstreamError::service(e))))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The service polled ready serves the first attempt; the clone left
        // behind is polled before the next request.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        Box::pin(async move { shared.serve(inner, req).await })
    }
}

/// What the layer needs of the inner HTTP client, named once: the bounds
/// of the `Service` impl above.
pub(crate) trait HttpClient<B>:
    Service<
        Request<B>,
        Response = Response<Self::Body>,
        Future: Send + 'static,
        Error: Into<BoxError>,
    > + Clone
    + Send
    + 'static
{
    /// The client's response body.
    type Body: http_body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static;
}

impl<S, B, RB> HttpClient<B> for S
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    RB: http_body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static,
{
    type Body = RB;
}

/// Calls the inner service: the one polled ready first, clones after.
struct Caller<S> {
    ready: Mutex<Option<S>>,
    template: Mutex<S>,
    max_body_bytes: usize,
}

impl<S> Caller<S> {
    /// One call: readiness, the request, the body collected up to the cap.
    async fn send<B, RB>(&self, req: Request<B>) -> Result<Response<Bytes>, UpstreamError>
    where
        S: Service<Request<B>, Response = Response<RB>> + Clone,
        S::Error: Into<BoxError>,
        RB: http_body::Body,
        RB::Error: Into<BoxError>,
    {
        let taken = self
            .ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let mut svc = match taken {
            Some(svc) => svc,
            None => self
                .template
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        };
        std::future::poll_fn(|cx| svc.poll_ready(cx))
            .await
            .map_err(UpstreamError::service)?;
        let (parts, body) = svc
            .call(req)
            .await
            .map_err(UpstreamError::service)?
            .into_parts();
        let body = Limited::new(body, self.max_body_bytes)
            .collect()
            .await
            .map_err(|e| UpstreamError::body(e, self.max_body_bytes))?
            .to_bytes();
        Ok(Response::from_parts(parts, body))
    }
}

impl Shared {
    async fn serve<S: HttpClient<B>, B: Default + Send + 'static>(
        self: Arc<Self>,
        inner: S,
        req: Request<B>,
    ) -> Result<Response<Full<Bytes>>, Error<UpstreamError>> {
        let caller = Arc::new(Caller {
            template: Mutex::new(inner.clone()),
            ready: Mutex::new(Some(inner)),
            max_body_bytes: self.max_body_bytes,
        });
        let uri = req.uri().to_string();
        let cached = matches!(*req.method(), Method::GET | Method::HEAD);
        if !cached || uri.len() > self.max_uri_bytes {
            return self.bypass(&caller, req, &uri).await;
        }
        // A GET or HEAD is sent with an empty body on every attempt.
        let parts = Arc::new(req.into_parts().0);
        let mut vary = self.vary.get(&uri);
        // A response found under the key may vary on headers this request
        // has other values for (a Vary list not known when the key was
        // built): look again under the key built with that list, once.
        for _ in 0..2 {
            let key = self.keys.key(&parts.method, &uri, &parts.headers, &vary);
            let loader = self.loader(&caller, &parts, &uri, &vary);
            let Some(got) = self.levee.get(key, loader).await? else {
                // Only a fallback says "absent".
                return Ok(self.absent());
            };
            match got.value.vary() {
                Some((names, hash)) if !self.same_vary(&parts.headers, names, hash) => {
                    vary = Arc::from(names);
                }
                _ => return Ok(self.respond(&got)),
            }
        }
        let req = Request::from_parts((*parts).clone(), B::default());
        self.bypass(&caller, req, &uri).await
    }

    /// The loader of one cached request: each attempt sends the request
    /// again and marks whether the answer may be stored.
    fn loader<S: HttpClient<B>, B: Default + Send + 'static>(
        self: &Arc<Self>,
        caller: &Arc<Caller<S>>,
        parts: &Arc<Parts>,
        uri: &str,
        vary: &Arc<[HeaderName]>,
    ) -> impl Fn() -> Answer + Send + Sync + 'static {
        let (shared, caller, parts) = (Arc::clone(self), Arc::clone(caller), Arc::clone(parts));
        let (uri, vary): (Arc<str>, _) = (Arc::from(uri), Arc::clone(vary));
        move || {
            let (shared, caller, parts) = (shared.clone(), caller.clone(), parts.clone());
            let (uri, vary) = (uri.clone(), vary.clone());
            Box::pin(async move {
                let req = Request::from_parts((*parts).clone(), B::default());
                let mut resp = caller.send(req).await?;
                shared.mark(&mut resp, &parts.headers, &uri, &vary);
                Ok(resp)
            })
        }
    }

    /// Marks a loaded response with its [`Store`] rule and its `Vary`
    /// hash; learns the URI's `Vary` list from a successful one.
    fn mark(&self, resp: &mut Response<Bytes>, req: &HeaderMap, uri: &str, used: &[HeaderName]) {
        let vary_ok = match Vary::of(resp.headers(), self.max_vary_headers) {
            Vary::Names(names) => {
                // Only a success teaches the URI's list: an error page's
                // Vary (or its lack) says little of the resource.
                let known = !resp.status().is_success() || self.vary.learn(uri, &names);
                if let Some(hash) = self.keys.vary_hash(req, &names) {
                    resp.extensions_mut().insert(VaryMark(names.to_vec(), hash));
                }
                known && names[..] == *used
            }
            Vary::Uncacheable => false,
        };
        let store = store_rule(resp.status(), resp.headers(), self.shared_cache, vary_ok);
        resp.extensions_mut().insert::<Store>(store);
    }

    /// Whether a request with `headers` has the values a stored response
    /// was loaded with for the headers it varies on.
    fn same_vary(&self, headers: &HeaderMap, names: &[HeaderName], hash: &[u8; 32]) -> bool {
        self.keys
            .vary_hash(headers, names)
            .is_some_and(|h| h.hash_bytes() == hash)
    }

    fn respond(&self, got: &Cached<CachedResponse>) -> Response<Full<Bytes>> {
        let mut r = got.value.to_response();
        CacheStatus::of(got).mark(&mut r, self.header.as_ref());
        r
    }

    fn absent(&self) -> Response<Full<Bytes>> {
        let mut r = Response::new(Full::default());
        *r.status_mut() = StatusCode::NOT_FOUND;
        r
    }

    /// Sends `req` once through the pipeline's parts below the cache.
    async fn bypass<S: HttpClient<B>, B: Send>(
        &self,
        caller: &Caller<S>,
        req: Request<B>,
        uri: &str,
    ) -> Result<Response<Full<Bytes>>, Error<UpstreamError>> {
        let key = self.keys.key(req.method(), uri, req.headers(), &[]);
        let req = Mutex::new(Some(req));
        let call = || {
            let req = req.lock().unwrap_or_else(PoisonError::into_inner).take();
            async move {
                match req {
                    Some(req) => caller.send(req).await,
                    None => Err(UpstreamError::request_gone()),
                }
            }
        };
        match self.levee.call_once(&key, call).await? {
            Ok(resp) => {
                let mut r = resp.map(Full::new);
                CacheStatus::Bypass.mark(&mut r, self.header.as_ref());
                Ok(r)
            }
            Err(e) => Err(Error::Upstream(Arc::new(e))),
        }
    }
}
