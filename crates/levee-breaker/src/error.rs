//! Errors of `levee-breaker`.

use std::fmt;
use std::time::Duration;

/// A call was refused because the breaker is open (or half-open with every
/// probe slot taken, or forced open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// Time left in Open; `None` in HalfOpen and ForcedOpen, where no time
    /// can be promised.
    pub retry_after: Option<Duration>,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.retry_after {
            Some(d) => write!(f, "circuit breaker is open; retry after {d:?}"),
            None => f.write_str("circuit breaker is not admitting calls now; retry later"),
        }
    }
}

impl std::error::Error for Rejected {}

/// The error of [`CircuitBreaker::call`](crate::CircuitBreaker::call): either
/// the breaker refused the call, or the call itself failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BreakerError<E> {
    /// The breaker refused the call; it was not made.
    #[error(transparent)]
    Rejected(Rejected),
    /// The call was made and returned this error (also its
    /// [`source`](std::error::Error::source)).
    #[error("the call through the circuit breaker failed")]
    Inner(#[source] E),
}

impl<E> BreakerError<E> {
    /// Whether the breaker refused the call.
    pub fn is_rejected(&self) -> bool {
        matches!(self, BreakerError::Rejected(_))
    }

    /// The call's own error, if the call was made.
    pub fn into_inner(self) -> Option<E> {
        match self {
            BreakerError::Inner(e) => Some(e),
            BreakerError::Rejected(_) => None,
        }
    }
}

/// A builder setting has a value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid circuit breaker setting `{setting}`: {reason}")]
#[non_exhaustive]
pub struct BreakerConfigError {
    /// The name of the setting, as its builder method is named.
    pub setting: &'static str,
    /// What is wrong and what to do instead.
    pub reason: String,
}

impl BreakerConfigError {
    pub(crate) fn new(setting: &'static str, reason: impl Into<String>) -> Self {
        BreakerConfigError {
            setting,
            reason: reason.into(),
        }
    }
}
