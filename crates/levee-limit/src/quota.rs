//! [`Quota`]: how many requests a window admits.

use std::num::NonZeroU32;
use std::time::Duration;

use crate::LimitError;

/// A limit of `limit` requests per `window`.
///
/// ```
/// use std::num::NonZeroU32;
/// use std::time::Duration;
/// use levee_limit::Quota;
///
/// let q = Quota::per_minute(NonZeroU32::new(5).unwrap());
/// assert_eq!(q.limit(), 5);
/// assert_eq!(q.window(), Duration::from_secs(60));
/// assert!(Quota::new(5, Duration::ZERO).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    limit: NonZeroU32,
    window: Duration,
}

impl Quota {
    /// `limit` requests per second.
    pub const fn per_second(limit: NonZeroU32) -> Self {
        Quota {
            limit,
            window: Duration::from_secs(1),
        }
    }

    /// `limit` requests per minute.
    pub const fn per_minute(limit: NonZeroU32) -> Self {
        Quota {
            limit,
            window: Duration::from_secs(60),
        }
    }

    /// `limit` requests per hour.
    pub const fn per_hour(limit: NonZeroU32) -> Self {
        Quota {
            limit,
            window: Duration::from_secs(3600),
        }
    }

    /// `limit` requests per `window`; both must be non-zero, and the window
    /// at least one millisecond.
    pub fn new(limit: u32, window: Duration) -> Result<Self, LimitError> {
        let limit = NonZeroU32::new(limit).ok_or_else(|| LimitError::InvalidSetting {
            setting: "quota.limit",
            reason: "the limit is 0, which admits nothing; use at least 1".into(),
        })?;
        if window < Duration::from_millis(1) {
            return Err(LimitError::InvalidSetting {
                setting: "quota.window",
                reason: format!("the window is {window:?}; use at least 1ms"),
            });
        }
        Ok(Quota { limit, window })
    }

    /// Requests admitted per window.
    pub const fn limit(&self) -> u32 {
        self.limit.get()
    }

    /// Requests admitted per window, as a `NonZeroU32`.
    pub const fn limit_nonzero(&self) -> NonZeroU32 {
        self.limit
    }

    /// The window's length.
    pub const fn window(&self) -> Duration {
        self.window
    }
}
