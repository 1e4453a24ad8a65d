//! What the layer does when it cannot decide normally: a request with no
//! key, a limiter that fails.

/// What happens to a request whose extractor finds no key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MissingKey<K> {
    /// Answer `401 Unauthorized` (empty body, no rate-limit fields) without
    /// calling the inner service. The default: the usual missing key is a
    /// missing credential (an API key header, a user set by auth
    /// middleware), and 401 tells the client to authenticate, where 429
    /// would tell it to slow down, which cannot help.
    #[default]
    Reject,
    /// Count every keyless request against one shared `key` in `class`
    /// (e.g. a small "unidentified" quota), so they are served but cannot
    /// flood.
    Shared {
        /// The class whose quota applies; it must be configured.
        class: &'static str,
        /// The key all keyless requests share.
        key: K,
    },
}

/// What happens when a limiter returns an error instead of a decision
/// (its backend is down and it was built to fail closed, or it timed out).
///
/// A limiter that falls back by itself (`RedisSlidingWindow`'s default
/// `OnRedisError::FailOpen`, or its local fallback) returns a decision, not
/// an error, and never reaches this setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnLimiterError {
    /// Serve the request without a limit (availability over the limit).
    /// The response carries `RateLimit-Policy` but no `RateLimit` field,
    /// since nothing is known about the remaining quota. The default, as
    /// for `RedisSlidingWindow`.
    #[default]
    FailOpen,
    /// Answer `503 Service Unavailable` without calling the inner service.
    /// Not 429: the client did not exceed anything, and a 429 would make
    /// well-behaved clients back off for a quota they never spent.
    FailClosed,
}
