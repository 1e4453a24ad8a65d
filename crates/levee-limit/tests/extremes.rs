//! Values from outside (header values, durations) at their extremes: no
//! panic, no wrap-around; a hold is never longer than `max_hold` and never
//! shorter than asked below it.

use std::time::{Duration, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, StatusCode};
use levee_core::ManualClock;
use levee_limit::{QuotaState, UpstreamQuota};
use proptest::prelude::*;

const MAX_HOLD: Duration = Duration::from_secs(24 * 3600);

fn extreme_number() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_string()),
        Just("1".to_string()),
        Just("-1".to_string()),
        Just(u64::MAX.to_string()),
        Just("18446744074".to_string()),
        Just("1e30".to_string()),
        Just("1e308".to_string()),
        Just("NaN".to_string()),
        Just("inf".to_string()),
        Just("-inf".to_string()),
        Just("9".repeat(200)),
        Just("Mon, 01 Jan 0001 00:00:00 GMT".to_string()),
        Just("Fri, 31 Dec 9999 23:59:59 GMT".to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| n.to_string()),
    ]
}

fn quota(clock: &ManualClock) -> UpstreamQuota<&'static str> {
    UpstreamQuota::builder()
        .clock(clock.shared())
        .max_hold(MAX_HOLD)
        .build()
}

proptest! {
    #[test]
    fn every_quota_header_at_its_extremes_holds_at_most_max_hold(
        values in proptest::collection::vec(extreme_number(), 6),
        status in prop_oneof![Just(200u16), Just(429u16), Just(503u16)],
    ) {
        let clock = ManualClock::starting_at(UNIX_EPOCH + Duration::from_secs(1_800_000_000));
        let q = quota(&clock);
        let mut h = HeaderMap::new();
        let fields = [
            ("retry-after", values[0].clone()),
            ("x-ratelimit-reset", values[1].clone()),
            ("x-ratelimit-remaining", values[2].clone()),
            ("x-ratelimit-limit", values[3].clone()),
            ("ratelimit", format!("\"d\";r={};t={}", values[2], values[4])),
            ("ratelimit-policy", format!("\"d\";q={};w={}", values[3], values[5])),
        ];
        for (name, v) in fields {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(name, v);
            }
        }
        let status = StatusCode::from_u16(status).unwrap();
        q.observe(&"k", status, &h);
        if let QuotaState::HoldBack { retry_after } = q.check(&"k") {
            prop_assert!(retry_after <= MAX_HOLD, "{retry_after:?}");
        }
        // Below the cap a Retry-After in seconds holds exactly as long.
        if status == StatusCode::TOO_MANY_REQUESTS
            && let Ok(secs) = values[0].parse::<u64>() {
                let expected = Duration::from_secs(secs).min(MAX_HOLD);
                if !expected.is_zero() {
                    prop_assert_eq!(q.check(&"k"), QuotaState::HoldBack { retry_after: expected });
                }
            }
    }

    #[test]
    fn hold_of_any_duration_is_capped_and_never_shorter_below_the_cap(
        secs in prop_oneof![Just(u64::MAX), Just(18_446_744_074u64), any::<u64>(), 0u64..200_000],
        nanos in 0u32..1_000_000_000,
    ) {
        let clock = ManualClock::new();
        let q = quota(&clock);
        let d = Duration::new(secs, nanos);
        let applied = q.hold(&"k", d);
        prop_assert_eq!(applied, d.min(MAX_HOLD));
        match q.check(&"k") {
            QuotaState::HoldBack { retry_after } => prop_assert_eq!(retry_after, applied),
            QuotaState::Ready => prop_assert!(applied.is_zero()),
        }
    }
}

#[test]
fn a_huge_retry_after_holds_for_max_hold_not_a_wrapped_fraction_of_a_second() {
    let clock = ManualClock::new();
    let q = quota(&clock);
    let mut h = HeaderMap::new();
    // 2^64 ns + 0.29 s: a truncating cast would hold for 0.29 s.
    h.insert("retry-after", HeaderValue::from_static("18446744074"));
    q.observe(&"k", StatusCode::TOO_MANY_REQUESTS, &h);
    assert_eq!(
        q.check(&"k"),
        QuotaState::HoldBack {
            retry_after: MAX_HOLD
        }
    );
    clock.advance(MAX_HOLD);
    assert_eq!(q.check(&"k"), QuotaState::Ready);
}

#[test]
fn a_reset_of_1e30_unix_seconds_does_not_panic() {
    let clock = ManualClock::new();
    let q = quota(&clock);
    let mut h = HeaderMap::new();
    h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
    h.insert("x-ratelimit-reset", HeaderValue::from_static("1e30"));
    q.observe(&"k", StatusCode::OK, &h);
    assert_eq!(
        q.check(&"k"),
        QuotaState::HoldBack {
            retry_after: MAX_HOLD
        }
    );
}
