//! [`CacheError`].

use std::sync::Arc;
use std::time::Duration;

/// Why `get_or_load` has no value to give.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError<E> {
    /// The loader failed and no stale value fits a tier. Every caller
    /// coalesced onto that load gets the same error.
    /// The loader's error is this error's [`source`](std::error::Error::source).
    #[error("loading failed and no stale value fits any tier")]
    Load(#[source] Arc<E>),
    /// The loader panicked; the next call loads again.
    #[error("the loader panicked; the next call will load again")]
    LoaderPanicked,
    /// The load took longer than the hard timeout and was abandoned.
    #[error("the load took longer than {0:?} and was abandoned; no stale value fits any tier")]
    Timeout(Duration),
    /// A recent load failed, so this key is not loaded again until the
    /// backoff ends, and no stale value fits any tier.
    #[error("a recent load of this key failed; retry after {retry_after:?}")]
    Backoff {
        /// Time left in the failure backoff.
        retry_after: Duration,
    },
    /// The batch loader's answer had no entry for this key (neither a value,
    /// an absence nor an error), and no stale value fits any tier. Counted
    /// as a failed load (the failure backoff starts); return
    /// `Loaded::Absent` for keys the upstream does not know.
    #[error("the batch loader returned nothing for this key; no stale value fits any tier")]
    MissingFromBatch,
}

impl<E> Clone for CacheError<E> {
    fn clone(&self) -> Self {
        match self {
            CacheError::Load(e) => CacheError::Load(e.clone()),
            CacheError::LoaderPanicked => CacheError::LoaderPanicked,
            CacheError::Timeout(d) => CacheError::Timeout(*d),
            CacheError::Backoff { retry_after } => CacheError::Backoff {
                retry_after: *retry_after,
            },
            CacheError::MissingFromBatch => CacheError::MissingFromBatch,
        }
    }
}

impl<E> CacheError<E> {
    /// The loader's own error (`Err`), or this error without one (`Ok`):
    /// for a caller that wraps the cache and reports the loader's errors
    /// its own way.
    pub fn split(self) -> Result<CacheError<std::convert::Infallible>, Arc<E>> {
        match self {
            CacheError::Load(e) => Err(e),
            CacheError::LoaderPanicked => Ok(CacheError::LoaderPanicked),
            CacheError::Timeout(d) => Ok(CacheError::Timeout(d)),
            CacheError::Backoff { retry_after } => Ok(CacheError::Backoff { retry_after }),
            CacheError::MissingFromBatch => Ok(CacheError::MissingFromBatch),
        }
    }

    /// The loader's own error, when that is what happened.
    pub fn load_error(&self) -> Option<&E> {
        match self {
            CacheError::Load(e) => Some(e),
            _ => None,
        }
    }
}
