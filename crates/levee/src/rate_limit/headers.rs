//! The fields a rate-limited response carries: the IETF `RateLimit` and
//! `RateLimit-Policy` structured fields (draft-ietf-httpapi-ratelimit-headers,
//! versions 9 to 11), `Retry-After`, and optionally the legacy
//! `X-RateLimit-*` trio. Structured fields are written with `sfv`.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use levee_limit::{Decision, LimitError, Quota};
use sfv::{Integer, KeyRef, ListSerializer, StringRef};

/// `RateLimit`: what is left of a policy's quota, e.g. `"anonymous";r=42;t=17`.
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// `RateLimit-Policy`: a policy's quota, e.g. `"anonymous";q=100;w=60`.
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// Legacy `X-RateLimit-Limit`: the quota (`q`).
pub static X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
/// Legacy `X-RateLimit-Remaining`: what is left (`r`).
pub static X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
/// Legacy `X-RateLimit-Reset`: seconds until the reset (`t`), a delta, not
/// a Unix time.
pub static X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

const Q: &KeyRef = KeyRef::constant("q");
const W: &KeyRef = KeyRef::constant("w");

/// Whole seconds in `d`, rounded up: a client that waits this long is never
/// early.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// An sfv integer from seconds; sfv integers stop at 15 digits, which no
/// real window reaches (31 million years), so larger values saturate.
fn sf_int(v: u64) -> Integer {
    Integer::try_from(v).unwrap_or(Integer::MAX)
}

/// `name` as a policy name: an sfv String (printable ASCII), not empty.
fn policy_name(name: &str) -> Result<&StringRef, LimitError> {
    let invalid = |reason: String| LimitError::InvalidSetting {
        setting: "class",
        reason,
    };
    if name.is_empty() {
        return Err(invalid("a class name must not be empty".into()));
    }
    StringRef::from_str(name).map_err(|e| {
        invalid(format!(
            "class name {name:?} cannot be a RateLimit policy name ({e}); use printable ASCII"
        ))
    })
}

/// `"name";q=<limit>;w=<window seconds>`, computed once per class.
pub(crate) fn policy_value(name: &str, quota: Quota) -> Result<HeaderValue, LimitError> {
    let mut list = ListSerializer::new();
    // The parameter serializer writes into `list`; nothing to keep.
    let _ = list
        .bare_item(policy_name(name)?)
        .parameter(Q, sf_int(u64::from(quota.limit())))
        .parameter(W, sf_int(ceil_secs(quota.window())));
    value(list.finish())
}

fn value(text: Option<String>) -> Result<HeaderValue, LimitError> {
    text.and_then(|t| HeaderValue::try_from(t).ok())
        .ok_or_else(|| LimitError::InvalidSetting {
            setting: "class",
            reason: "the policy does not serialize to a header value".into(),
        })
}

/// The fields for one response, computed before the inner service runs and
/// written onto whatever response goes back.
#[derive(Debug)]
pub(crate) struct DecisionFields {
    policy: HeaderValue,
    ratelimit: Option<HeaderValue>,
    retry_after: Option<HeaderValue>,
    legacy: Option<[HeaderValue; 3]>,
}

impl DecisionFields {
    /// The fields for decision `d` under the class `name` with `quota`.
    ///
    /// `t` is the time to the reset for an admission, and the time until a
    /// retry can succeed for a denial (the same figure as `Retry-After`),
    /// so a client reading only `RateLimit` waits the right time.
    pub(crate) fn new(
        name: &str,
        quota: Quota,
        policy: &HeaderValue,
        d: &Decision,
        legacy: bool,
    ) -> Self {
        let retry_secs = d.retry_after.filter(|_| !d.allowed).map(ceil_secs);
        let remaining = if d.allowed { d.remaining } else { 0 };
        let t = retry_secs.unwrap_or_else(|| ceil_secs(d.reset_after));
        DecisionFields {
            policy: own_copy(policy),
            ratelimit: ratelimit_value(name, remaining, t),
            retry_after: retry_secs.map(HeaderValue::from),
            legacy: legacy.then(|| {
                [
                    HeaderValue::from(quota.limit()),
                    HeaderValue::from(remaining),
                    HeaderValue::from(t),
                ]
            }),
        }
    }

    /// `RateLimit-Policy` alone, when there is no decision to report.
    pub(crate) fn policy_only(policy: &HeaderValue) -> Self {
        DecisionFields {
            policy: own_copy(policy),
            ratelimit: None,
            retry_after: None,
            legacy: None,
        }
    }

    /// Writes the fields onto `headers`.
    pub(crate) fn write(self, headers: &mut HeaderMap) {
        headers.insert(RATELIMIT_POLICY.clone(), self.policy);
        if let Some(v) = self.ratelimit {
            headers.insert(RATELIMIT.clone(), v);
        }
        if let Some(v) = self.retry_after {
            headers.insert(http::header::RETRY_AFTER, v);
        }
        if let Some([limit, remaining, reset]) = self.legacy {
            headers.insert(X_RATELIMIT_LIMIT.clone(), limit);
            headers.insert(X_RATELIMIT_REMAINING.clone(), remaining);
            headers.insert(X_RATELIMIT_RESET.clone(), reset);
        }
    }
}

/// A copy of `value` with its own buffer. A clone would share one reference
/// count among every response of every thread, a cache line that all cores
/// then fight over; a 30-byte copy costs less under load.
fn own_copy(value: &HeaderValue) -> HeaderValue {
    HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone())
}

/// `"name";r=<remaining>;t=<seconds>`, written on every response.
///
/// The name was checked as an sfv String when its class was built
/// ([`policy_name`]), so it only needs quoting and the escapes an sf-string
/// has (`\\"` and `\\\\`); the two integers are plain decimal digits, and
/// `t` saturates at sfv's 15-digit bound as [`sf_int`] does. Writing them
/// directly saves the serializer's per-call cost (about 130 ns on the
/// load-test machine); a property test checks the output is byte for byte
/// what sfv writes.
fn ratelimit_value(policy: &str, remaining: u32, t: u64) -> Option<HeaderValue> {
    let t = t.min(999_999_999_999_999);
    let mut digits = itoa::Buffer::new();
    let mut text = String::with_capacity(policy.len() + 40);
    text.push('"');
    for c in policy.chars() {
        if c == '"' || c == '\\' {
            text.push('\\');
        }
        text.push(c);
    }
    text.push_str("\";r=");
    text.push_str(digits.format(remaining));
    text.push_str(";t=");
    text.push_str(digits.format(t));
    HeaderValue::try_from(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: &KeyRef = KeyRef::constant("r");
    const T: &KeyRef = KeyRef::constant("t");

    /// What sfv itself writes for the `RateLimit` field.
    fn ratelimit_by_sfv(policy: &str, remaining: u32, t: u64) -> Option<HeaderValue> {
        let name = StringRef::from_str(policy).ok()?;
        let mut list = ListSerializer::new();
        let _ = list
            .bare_item(name)
            .parameter(R, sf_int(u64::from(remaining)))
            .parameter(T, sf_int(t));
        HeaderValue::try_from(list.finish()?).ok()
    }

    proptest::proptest! {
        #[test]
        fn ratelimit_field_is_byte_for_byte_what_sfv_writes(
            name in "[ -~]{1,24}",
            remaining in proptest::num::u32::ANY,
            t in proptest::prop_oneof![0u64..100_000, proptest::num::u64::ANY],
        ) {
            proptest::prop_assert_eq!(
                ratelimit_value(&name, remaining, t),
                ratelimit_by_sfv(&name, remaining, t)
            );
        }
    }

    #[test]
    fn ceil_secs_rounds_up_partial_seconds() {
        assert_eq!(ceil_secs(Duration::ZERO), 0);
        assert_eq!(ceil_secs(Duration::from_nanos(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(17)), 17);
        assert_eq!(ceil_secs(Duration::from_millis(16_001)), 17);
    }

    #[test]
    fn policy_is_a_list_with_q_and_w() {
        let q = Quota::new(100, Duration::from_secs(60)).unwrap();
        assert_eq!(
            policy_value("anonymous", q).unwrap(),
            "\"anonymous\";q=100;w=60"
        );
    }

    #[test]
    fn policy_names_must_be_printable_ascii() {
        let q = Quota::new(1, Duration::from_secs(1)).unwrap();
        for bad in ["", "caf\u{e9}", "tab\there"] {
            let err = policy_value(bad, q).unwrap_err();
            assert!(err.to_string().contains("`class`"), "{err}");
        }
    }
}
