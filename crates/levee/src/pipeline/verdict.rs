//! [`Verdict`]: how one attempt's result counts.

use std::time::Duration;

/// What a classifier says of one attempt's result.
///
/// The default classifier says `Success` for every `Ok` and `Failure` for
/// every `Err`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// A usable answer: cached and returned.
    Success,
    /// The upstream failed (a 503, a reset connection): counts against the
    /// breaker, and is retried while the retry policy and budget allow.
    Failure,
    /// The upstream refused this key for now (a 429): the key is held back
    /// in the upstream quota, the breaker is not told (one user's limit is
    /// not the upstream's health), and the call is retried after
    /// `retry_after` if that fits the retry policy's `max_retry_after`.
    RateLimited {
        /// How long the upstream asked to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// An answer that retrying cannot change (a 400, a 401, a 404 that is an
    /// error): returned at once, not retried, not a breaker failure.
    DoNotRetry,
}

impl Verdict {
    /// Whether the result is a usable answer.
    pub fn is_success(&self) -> bool {
        matches!(self, Verdict::Success)
    }

    /// The default: `Ok` succeeds, `Err` is a retryable failure.
    pub fn of<T, E>(result: &Result<T, E>) -> Verdict {
        match result {
            Ok(_) => Verdict::Success,
            Err(_) => Verdict::Failure,
        }
    }

    /// A label for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Success => "success",
            Verdict::Failure => "failure",
            Verdict::RateLimited { .. } => "rate_limited",
            Verdict::DoNotRetry => "do_not_retry",
        }
    }
}
