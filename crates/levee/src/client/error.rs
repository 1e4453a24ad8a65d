//! [`UpstreamError`]: why the wrapped HTTP client gave no response.

use std::fmt;

/// A boxed error of the wrapped service or of a response body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why one call of the wrapped HTTP client gave no usable response: the
/// `E` of the layer's [`Error`](crate::Error). The pipeline counts a
/// transport or body error as a retryable failure, and a body over
/// [`max_body_bytes`](super::LeveeLayerBuilder::max_body_bytes) as an
/// answer retrying cannot change.
#[derive(Debug)]
pub struct UpstreamError {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Service(BoxError),
    Body(BoxError),
    BodyTooLarge { limit: usize },
    RequestGone,
}

impl UpstreamError {
    pub(crate) fn service(e: impl Into<BoxError>) -> Self {
        UpstreamError {
            kind: Kind::Service(e.into()),
        }
    }

    /// A body error; a length-limit error becomes `BodyTooLarge`.
    pub(crate) fn body(e: BoxError, limit: usize) -> Self {
        let kind = if e.is::<http_body_util::LengthLimitError>() {
            Kind::BodyTooLarge { limit }
        } else {
            Kind::Body(e)
        };
        UpstreamError { kind }
    }

    pub(crate) fn request_gone() -> Self {
        UpstreamError {
            kind: Kind::RequestGone,
        }
    }

    /// Whether the response body was longer than the layer collects.
    pub fn is_body_too_large(&self) -> bool {
        matches!(self.kind, Kind::BodyTooLarge { .. })
    }

    /// Whether the wrapped service itself failed (a refused connection, a
    /// timeout of the client's own).
    pub fn is_service(&self) -> bool {
        matches!(self.kind, Kind::Service(_))
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Service(_) => f.write_str("the HTTP client failed (see the source)"),
            Kind::Body(_) => f.write_str("reading the response body failed (see the source)"),
            Kind::BodyTooLarge { limit } => write!(
                f,
                "the response body is over {limit} bytes; raise LeveeLayerBuilder::max_body_bytes if it is expected"
            ),
            Kind::RequestGone => f.write_str(
                "the request body was already sent once and cannot be sent again (a bug in levee)",
            ),
        }
    }
}

impl std::error::Error for UpstreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            Kind::Service(e) | Kind::Body(e) => Some(&**e),
            Kind::BodyTooLarge { .. } | Kind::RequestGone => None,
        }
    }
}
