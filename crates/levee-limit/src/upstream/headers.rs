//! Reading an upstream's rate-limit headers. Malformed values are ignored,
//! never an error or a panic.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};

/// What one response says about the upstream's quota.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Learned {
    /// `Retry-After` (seconds or HTTP-date), as a wait from now.
    pub retry_after: Option<Duration>,
    /// Requests left in the current window.
    pub remaining: Option<u32>,
    /// Time until the window resets.
    pub reset_after: Option<Duration>,
    /// The window's limit.
    pub limit: Option<u32>,
    /// Whether the status itself says "slow down" (429, or 503 with
    /// `Retry-After`).
    pub throttled: bool,
}

/// Reads `Retry-After`, `x-ratelimit-limit/remaining/reset` (a reset above
/// 10^9 is read as unix seconds, as Auth0 and GitHub send it; below, as
/// seconds from now) and the IETF draft-11 `RateLimit` / `RateLimit-Policy`
/// fields. Where both give a reset, the `RateLimit` field wins.
pub fn parse(status: StatusCode, headers: &HeaderMap, now: SystemTime) -> Learned {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let mut learned = Learned {
        retry_after: text("retry-after").and_then(|v| retry_after(v, now)),
        remaining: text("x-ratelimit-remaining").and_then(|v| v.parse().ok()),
        limit: text("x-ratelimit-limit").and_then(|v| v.parse().ok()),
        reset_after: text("x-ratelimit-reset").and_then(|v| reset(v, now)),
        throttled: false,
    };
    if let Some((r, t)) = text("ratelimit").and_then(ratelimit_field) {
        learned.remaining = r.or(learned.remaining);
        learned.reset_after = t.or(learned.reset_after);
    }
    if let Some(q) = text("ratelimit-policy").and_then(policy_quota) {
        learned.limit = Some(q);
    }
    learned.throttled = status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::SERVICE_UNAVAILABLE && learned.retry_after.is_some());
    learned
}

fn retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn reset(v: &str, now: SystemTime) -> Option<Duration> {
    let n: f64 = v
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n >= 0.0)?;
    // Past Duration's range (about 1.8e19 s) the value is "for ever": the
    // quota caps every hold at its `max_hold`.
    let d = Duration::try_from_secs_f64(n).unwrap_or(Duration::MAX);
    if n > 1e9 {
        let at = std::time::UNIX_EPOCH.checked_add(d);
        Some(at.map_or(Duration::MAX, |at| {
            at.duration_since(now).unwrap_or(Duration::ZERO)
        }))
    } else {
        Some(d)
    }
}

/// The first item of a draft-11 `RateLimit` field, e.g. `"default";r=0;t=30`:
/// its `r` (remaining) and `t` (seconds to reset) parameters.
fn ratelimit_field(v: &str) -> Option<(Option<u32>, Option<Duration>)> {
    let item = v.split(',').next()?;
    let mut parts = item.split(';');
    let name = parts.next()?.trim();
    if name.is_empty() {
        return None;
    }
    let (mut r, mut t) = (None, None);
    for p in parts {
        match p.trim().split_once('=') {
            Some(("r", x)) => r = x.trim().parse().ok(),
            Some(("t", x)) => t = x.trim().parse::<u64>().ok().map(Duration::from_secs),
            _ => {}
        }
    }
    (r.is_some() || t.is_some()).then_some((r, t))
}

/// The `q` (quota) of the first item of a `RateLimit-Policy` field.
fn policy_quota(v: &str) -> Option<u32> {
    v.split(',')
        .next()?
        .split(';')
        .skip(1)
        .find_map(|p| match p.trim().split_once('=') {
            Some(("q", x)) => x.trim().parse().ok(),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    const NOW: u64 = 1_800_000_000;

    fn now() -> SystemTime {
        std::time::UNIX_EPOCH + Duration::from_secs(NOW)
    }

    #[test]
    fn auth0_headers_with_unix_reset() {
        let reset = (NOW + 12).to_string();
        let h = headers(&[
            ("x-ratelimit-limit", "10"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", &reset),
        ]);
        let l = parse(StatusCode::OK, &h, now());
        assert_eq!(
            (l.limit, l.remaining, l.reset_after),
            (Some(10), Some(0), Some(Duration::from_secs(12)))
        );
        assert!(!l.throttled);
    }

    #[test]
    fn retry_after_seconds_and_http_date() {
        let l = parse(
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("retry-after", "7")]),
            now(),
        );
        assert_eq!(l.retry_after, Some(Duration::from_secs(7)));
        assert!(l.throttled);
        let date = httpdate::fmt_http_date(now() + Duration::from_secs(90));
        let l = parse(
            StatusCode::SERVICE_UNAVAILABLE,
            &headers(&[("retry-after", &date)]),
            now(),
        );
        assert_eq!(l.retry_after, Some(Duration::from_secs(90)));
        assert!(l.throttled);
    }

    #[test]
    fn draft_11_fields() {
        let h = headers(&[
            ("ratelimit", "\"default\";r=0;t=30"),
            ("ratelimit-policy", "\"default\";q=100;w=60"),
        ]);
        let l = parse(StatusCode::OK, &h, now());
        assert_eq!(
            (l.remaining, l.reset_after, l.limit),
            (Some(0), Some(Duration::from_secs(30)), Some(100))
        );
    }

    #[test]
    fn malformed_values_are_ignored() {
        let h = headers(&[
            ("retry-after", "soon"),
            ("x-ratelimit-remaining", "-3"),
            ("x-ratelimit-reset", "NaN"),
            ("ratelimit", ";;;="),
            ("ratelimit-policy", "q=abc"),
        ]);
        assert_eq!(parse(StatusCode::OK, &h, now()), Learned::default());
    }

    #[test]
    fn a_reset_past_the_duration_range_reads_as_for_ever() {
        for v in ["1e30", "1e308", "1e20"] {
            let l = parse(StatusCode::OK, &headers(&[("x-ratelimit-reset", v)]), now());
            assert_eq!(l.reset_after, Some(Duration::MAX), "{v}");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_header_values_never_panic(a in "\\PC*", b in "\\PC*", c in "\\PC*", d in "\\PC*") {
            let mut h = HeaderMap::new();
            for (name, v) in [("retry-after", &a), ("x-ratelimit-reset", &b), ("ratelimit", &c), ("ratelimit-policy", &d)] {
                if let Ok(v) = v.parse() {
                    h.insert(name, v);
                }
            }
            let _ = parse(StatusCode::TOO_MANY_REQUESTS, &h, now());
        }
    }
}
