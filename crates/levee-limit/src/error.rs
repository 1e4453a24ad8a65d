//! [`LimitError`]: the error type of `levee-limit`.

/// Why a limiter could not give a [`Decision`](crate::Decision).
///
/// A denial is not an error: it is a `Decision` with `allowed == false` and
/// a `retry_after`. These are the cases where no answer is possible.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// `n` is larger than the limit: this request can never be admitted,
    /// however long the caller waits. Split it, or raise the quota.
    #[error(
        "asked for {requested} permits but the limit is {limit}: this can never be admitted; split the request or raise the quota"
    )]
    InsufficientCapacity {
        /// Permits asked for.
        requested: u32,
        /// The quota's limit.
        limit: u32,
    },
    /// The named quota class is not configured.
    #[error("unknown quota class `{0}`: configure it with `classes(..)` or `set_quota(..)` first")]
    UnknownClass(String),
    /// A setting has a value that cannot work.
    #[error("invalid setting `{setting}`: {reason}")]
    InvalidSetting {
        /// The name of the setting, as its builder method is named.
        setting: &'static str,
        /// What is wrong and what to do instead.
        reason: String,
    },
    /// Every slot of a concurrency limit is taken and its queue is full.
    #[error(
        "all {max_in_flight} slots are busy and the queue of {max_queue} is full; shed this call or retry later"
    )]
    QueueFull {
        /// Calls allowed in flight.
        max_in_flight: usize,
        /// Callers allowed to wait.
        max_queue: usize,
    },
    /// Waiting for a permit took longer than the caller allowed.
    #[error("no permit within {0:?}: the limit stayed exhausted; retry later")]
    Timeout(std::time::Duration),
    /// The shared backend (Redis) failed and the limiter is configured to
    /// fail closed, or has no fallback.
    #[error("rate-limit backend failed: {message}; check Redis, or configure `on_redis_error`")]
    Backend {
        /// What failed.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl LimitError {
    /// Whether the request can never be admitted (as opposed to "not now").
    pub fn is_insufficient_capacity(&self) -> bool {
        matches!(self, LimitError::InsufficientCapacity { .. })
    }

    /// Whether the shared backend failed.
    pub fn is_backend(&self) -> bool {
        matches!(self, LimitError::Backend { .. })
    }

    /// Whether a wait for a permit timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, LimitError::Timeout(_))
    }
}
