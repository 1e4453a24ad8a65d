//! [`ResponseFuture`]: the future a [`RateLimit`](super::RateLimit)
//! service returns.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The response of a [`RateLimit`](super::RateLimit) service: the inner
/// service's, with the rate-limit fields added, or the layer's own 429,
/// 401 or 503.
///
/// Boxed, because the limiter's decision is itself a boxed future (the
/// `RateLimiter` trait is object-safe, so classes can mix limiter types).
pub struct ResponseFuture<T, E> {
    inner: Pin<Box<dyn Future<Output = Result<T, E>> + Send>>,
}

impl<T, E> ResponseFuture<T, E> {
    pub(crate) fn new(fut: impl Future<Output = Result<T, E>> + Send + 'static) -> Self {
        ResponseFuture {
            inner: Box::pin(fut),
        }
    }
}

impl<T, E> Future for ResponseFuture<T, E> {
    type Output = Result<T, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<T, E> std::fmt::Debug for ResponseFuture<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
