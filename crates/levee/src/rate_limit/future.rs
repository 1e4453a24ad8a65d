//! [`ResponseFuture`]: the future a [`RateLimit`](super::RateLimit)
//! service returns.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use super::headers::DecisionFields;

/// A boxed future of a response: what an awaited limiter's path runs.
type Awaiting<RB, E> = Pin<Box<dyn Future<Output = Result<Response<RB>, E>> + Send>>;

pin_project! {
    /// The response of a [`RateLimit`](super::RateLimit) service: the inner
    /// service's, with the rate-limit fields added, or the layer's own 429,
    /// 401 or 503.
    ///
    /// With a local limiter the decision is made in `call`, and this future
    /// is the inner service's future (or the answer) without allocation;
    /// with an awaited limiter (`RateLimiter`, e.g. Redis) it is boxed.
    pub struct ResponseFuture<F, RB, E> {
        #[pin]
        kind: Kind<F, RB, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, RB, E> {
        /// The layer's own answer.
        Answer { response: Option<Response<RB>> },
        /// The inner service's future; `fields` go on its response.
        Inner {
            #[pin]
            future: F,
            fields: Option<DecisionFields>,
        },
        /// Decision and inner call, awaited together.
        Awaiting { future: Awaiting<RB, E> },
    }
}

impl<F, RB, E> ResponseFuture<F, RB, E> {
    pub(crate) fn answer(response: Response<RB>) -> Self {
        ResponseFuture {
            kind: Kind::Answer {
                response: Some(response),
            },
        }
    }

    pub(crate) fn inner(future: F, fields: DecisionFields) -> Self {
        ResponseFuture {
            kind: Kind::Inner {
                future,
                fields: Some(fields),
            },
        }
    }

    pub(crate) fn awaiting(
        future: impl Future<Output = Result<Response<RB>, E>> + Send + 'static,
    ) -> Self {
        ResponseFuture {
            kind: Kind::Awaiting {
                future: Box::pin(future),
            },
        }
    }
}

impl<F, RB, E> Future for ResponseFuture<F, RB, E>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Answer { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => panic!("ResponseFuture polled after completion"),
            },
            KindProj::Inner { future, fields } => {
                let mut response = ready!(future.poll(cx))?;
                if let Some(fields) = fields.take() {
                    fields.write(response.headers_mut());
                }
                Poll::Ready(Ok(response))
            }
            KindProj::Awaiting { future } => future.as_mut().poll(cx),
        }
    }
}

impl<F, RB, E> std::fmt::Debug for ResponseFuture<F, RB, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
