//! The HTTP classifier: a response's status and rate-limit headers as a
//! [`Verdict`](super::Verdict).

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};

use super::Verdict;

/// How an HTTP answer counts: 2xx and 3xx succeed; 429 (and 503 with a
/// `Retry-After`) is `RateLimited` with the wait its headers give
/// (`Retry-After`, else `x-ratelimit-reset` or the `RateLimit` field's
/// `t`); 408, 5xx are retryable failures; other 4xx are `DoNotRetry`
/// (retrying a 401 cannot help, and it says nothing of the upstream's
/// health).
///
/// ```
/// use http::{HeaderMap, StatusCode};
/// use levee::{Verdict, http::verdict};
///
/// let mut h = HeaderMap::new();
/// h.insert("retry-after", "7".parse().unwrap());
/// assert_eq!(
///     verdict(StatusCode::TOO_MANY_REQUESTS, &h),
///     Verdict::RateLimited { retry_after: Some(std::time::Duration::from_secs(7)) }
/// );
/// assert_eq!(verdict(StatusCode::BAD_GATEWAY, &HeaderMap::new()), Verdict::Failure);
/// assert_eq!(verdict(StatusCode::UNAUTHORIZED, &HeaderMap::new()), Verdict::DoNotRetry);
/// ```
pub fn verdict(status: StatusCode, headers: &HeaderMap) -> Verdict {
    verdict_at(status, headers, SystemTime::now())
}

/// [`verdict`] with the wall-clock time `now` against which an HTTP-date
/// `Retry-After` or a unix `x-ratelimit-reset` is read: the pipeline's
/// clock, so that a simulation on a `ManualClock` reads its own time.
pub fn verdict_at(status: StatusCode, headers: &HeaderMap, now: SystemTime) -> Verdict {
    if status.is_success() || status.is_redirection() || status.is_informational() {
        return Verdict::Success;
    }
    let learned = levee_limit::parse_headers(status, headers, now);
    if learned.throttled {
        let retry_after: Option<Duration> = learned.retry_after.or(learned.reset_after);
        return Verdict::RateLimited { retry_after };
    }
    if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        Verdict::Failure
    } else {
        Verdict::DoNotRetry
    }
}

/// [`verdict`] of a response; a transport error (`Err`) is a retryable
/// failure.
pub fn classify<B, E>(result: &Result<http::Response<B>, E>) -> Verdict {
    classify_at(result, SystemTime::now())
}

/// [`classify`] with dates read against `now` (see [`verdict_at`]).
pub fn classify_at<B, E>(result: &Result<http::Response<B>, E>, now: SystemTime) -> Verdict {
    match result {
        Ok(r) => verdict_at(r.status(), r.headers(), now),
        Err(_) => Verdict::Failure,
    }
}

/// The status and headers of a response, for the upstream quota.
pub fn status_and_headers<B, E>(
    result: &Result<http::Response<B>, E>,
) -> Option<(StatusCode, &HeaderMap)> {
    result.as_ref().ok().map(|r| (r.status(), r.headers()))
}
