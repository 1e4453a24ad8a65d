//! Durations as integers, saturating instead of truncating.
//!
//! A `Duration` can hold about 584 billion years; a `u64` of nanoseconds
//! about 584 years. `d.as_nanos() as u64` keeps the low 64 bits, so a
//! `Retry-After` of 18446744074 seconds would become 0.29 s. Every place
//! where a `Duration` from outside (a header, a setting) becomes an integer
//! goes through these functions instead: past the range, the result is
//! `u64::MAX`, which every caller treats as "for ever".

use std::time::{Duration, Instant};

/// `d` in whole nanoseconds, or `u64::MAX` when it does not fit.
///
/// ```
/// use std::time::Duration;
/// use levee_core::duration::nanos;
///
/// assert_eq!(nanos(Duration::from_millis(3)), 3_000_000);
/// assert_eq!(nanos(Duration::from_secs(18_446_744_074)), u64::MAX);
/// assert_eq!(nanos(Duration::MAX), u64::MAX);
/// ```
#[inline]
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// `d` in whole milliseconds, or `u64::MAX` when it does not fit.
#[inline]
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `at + d`, or as far as an `Instant` reaches (at most a century on) when
/// that overflows: "for ever", never a panic.
///
/// ```
/// use std::time::{Duration, Instant};
/// use levee_core::duration::instant_after;
///
/// let now = Instant::now();
/// assert_eq!(instant_after(now, Duration::from_secs(5)), now + Duration::from_secs(5));
/// assert!(instant_after(now, Duration::MAX) > now + Duration::from_secs(3600 * 24 * 365));
/// ```
pub fn instant_after(at: Instant, d: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    at.checked_add(d)
        .or_else(|| at.checked_add(CENTURY.min(d)))
        .unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_range_values_are_exact_and_larger_ones_saturate() {
        assert_eq!(nanos(Duration::ZERO), 0);
        assert_eq!(nanos(Duration::from_nanos(u64::MAX)), u64::MAX);
        assert_eq!(
            nanos(Duration::from_nanos(u64::MAX) + Duration::from_nanos(1)),
            u64::MAX
        );
        assert_eq!(millis(Duration::from_secs(7)), 7_000);
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }
}
