//! [`Decision`]: the one answer every limiter gives.

use std::time::Duration;

/// The outcome of a rate-limit check, shared by every limiter so a caller
/// (or the tower layer writing `RateLimit` headers) treats them alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a Decision may be a denial: check `allowed` before making the call"]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The quota's limit per window (or burst size, for GCRA).
    pub limit: u32,
    /// How many more requests the quota admits right now.
    pub remaining: u32,
    /// When denied: how long until a retry can succeed. `None` when allowed.
    pub retry_after: Option<Duration>,
    /// How long until the quota is fully available again.
    pub reset_after: Duration,
}

impl Decision {
    /// Whether the request may proceed.
    pub fn is_allowed(&self) -> bool {
        self.allowed
    }
}
