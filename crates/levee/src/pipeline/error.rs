//! [`Error`]: why a pipeline call has no value to give.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use levee_cache::CacheError;
use levee_limit::LimitError;

use super::Verdict;

/// Why [`Levee::get`](crate::Levee::get) returned no value.
///
/// Every failure below the cache is first answered with a stale value that
/// fits a stale tier, then with the fallback's value; this error reaches
/// the caller only when neither exists. [`stale_servable`](Self::stale_servable)
/// says whether the kind of failure is one a stale value would have
/// covered (so a caller can tell "nothing cached yet" from "misconfigured").
///
/// Cheap to clone: callers coalesced onto one load share one error.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error<E> {
    /// The upstream quota holds this key back, the rate limiter denied the
    /// call, or the upstream answered 429 with a wait longer than the retry
    /// policy allows. The upstream was not called (again).
    RateLimited {
        /// When a call may succeed, if known.
        retry_after: Option<Duration>,
    },
    /// The circuit breaker is open: the upstream is failing and is not
    /// being called.
    CircuitOpen {
        /// Time left in Open, if known.
        retry_after: Option<Duration>,
    },
    /// The call (or one attempt) took longer than its timeout.
    Timeout(Duration),
    /// The bulkhead's slots were all busy and its queue full (or the wait
    /// in its queue timed out).
    BulkheadFull,
    /// The upstream's own error, after the retries the policy and budget
    /// allowed.
    Upstream(Arc<E>),
    /// The upstream answered, but the classifier judged the answer a
    /// failure (e.g. an HTTP 503 response) after the retries allowed.
    Unsuccessful {
        /// The last attempt's verdict.
        verdict: Verdict,
        /// Attempts made.
        attempts: u32,
    },
    /// The rate limiter could not decide (its Redis is down and it is set
    /// to fail closed).
    Limiter(Arc<LimitError>),
    /// The cache refused: a recent load of this key failed (failure
    /// backoff), or the loader panicked.
    Cache(CacheError<Infallible>),
}

impl<E> Clone for Error<E> {
    fn clone(&self) -> Self {
        match self {
            Error::RateLimited { retry_after } => Error::RateLimited {
                retry_after: *retry_after,
            },
            Error::CircuitOpen { retry_after } => Error::CircuitOpen {
                retry_after: *retry_after,
            },
            Error::Timeout(d) => Error::Timeout(*d),
            Error::BulkheadFull => Error::BulkheadFull,
            Error::Upstream(e) => Error::Upstream(e.clone()),
            Error::Unsuccessful { verdict, attempts } => Error::Unsuccessful {
                verdict: *verdict,
                attempts: *attempts,
            },
            Error::Limiter(e) => Error::Limiter(e.clone()),
            Error::Cache(e) => Error::Cache(e.clone()),
        }
    }
}

impl<E> Error<E> {
    /// Whether this is a kind of failure that a stale value covers (every
    /// kind but a loader panic): when the caller sees it, no stale value
    /// fitted a tier (or no cache is configured).
    pub fn stale_servable(&self) -> bool {
        !matches!(self, Error::Cache(CacheError::LoaderPanicked))
    }

    /// When a retry may succeed, if known.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after } | Error::CircuitOpen { retry_after } => *retry_after,
            Error::Cache(CacheError::Backoff { retry_after }) => Some(*retry_after),
            _ => None,
        }
    }

    /// Whether the call was refused by a rate limit (ours or the upstream's).
    pub fn is_rate_limited(&self) -> bool {
        matches!(self, Error::RateLimited { .. })
    }

    /// Whether the circuit breaker refused the call.
    pub fn is_circuit_open(&self) -> bool {
        matches!(self, Error::CircuitOpen { .. })
    }

    /// Whether a timeout ended the call.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            Error::Timeout(_) | Error::Cache(CacheError::Timeout(_))
        )
    }

    /// The upstream's own error, when that is what happened.
    pub fn upstream(&self) -> Option<&E> {
        match self {
            Error::Upstream(e) => Some(e),
            _ => None,
        }
    }

    /// The error of a cache whose loads fail with this error.
    pub(crate) fn from_cache(e: CacheError<Error<E>>) -> Self {
        match e.split() {
            Ok(CacheError::Timeout(d)) => Error::Timeout(d),
            Ok(other) => Error::Cache(other),
            Err(ours) => (*ours).clone(),
        }
    }
}

impl<E> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let after = |f: &mut fmt::Formatter<'_>, d: &Option<Duration>| match d {
            Some(d) => write!(f, "retry after {d:?}"),
            None => f.write_str("retry later"),
        };
        match self {
            Error::RateLimited { retry_after } => {
                f.write_str("rate limited, the upstream was not called and no stale value could serve; ")?;
                after(f, retry_after)
            }
            Error::CircuitOpen { retry_after } => {
                f.write_str("the circuit breaker is open (the upstream keeps failing) and no stale value could serve; ")?;
                after(f, retry_after)
            }
            Error::Timeout(d) => write!(
                f,
                "no answer from the upstream within {d:?} and no stale value could serve; retry, or raise the timeout"
            ),
            Error::BulkheadFull => f.write_str(
                "too many calls to the upstream in flight (bulkhead full); shed this call or retry shortly",
            ),
            Error::Upstream(_) => f.write_str(
                "the upstream failed and no stale value could serve (its error is the source)",
            ),
            Error::Unsuccessful { verdict, attempts } => write!(
                f,
                "the upstream's answer was judged `{}` after {attempts} attempt(s) and no stale value could serve",
                verdict.as_str()
            ),
            Error::Limiter(_) => f.write_str(
                "the rate limiter could not decide (see the source); check Redis or the limiter's on_redis_error",
            ),
            Error::Cache(_) => f.write_str("the cache refused to load (see the source)"),
        }
    }
}

impl<E: std::error::Error + Send + Sync + 'static> std::error::Error for Error<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Upstream(e) => Some(&**e),
            Error::Limiter(e) => Some(&**e),
            Error::Cache(e) => Some(e),
            _ => None,
        }
    }
}
