//! The pipeline's HTTP classifier against levee-testkit's MockIdp (a real
//! HTTP server on loopback with Auth0's per-user limits): the quota learns
//! from the answers' headers and holds a user back before the IdP refuses.
#![cfg(feature = "http")]

use std::sync::Arc;
use std::time::Duration;

use levee::cache::Loaded;
use levee::core::ManualClock;
use levee::limit::UpstreamQuota;
use levee::{Levee, Verdict};
use levee_testkit::MockIdp;

type Pipeline = Levee<String, String, levee_testkit::TestkitError, http::Response<String>>;

async fn call(p: &Pipeline, idp: &Arc<MockIdp>, user: &str) -> Result<Option<String>, String> {
    let idp = idp.clone();
    let token = format!("token-{user}");
    p.get(user.to_string(), move || {
        let (idp, token) = (idp.clone(), token.clone());
        async move {
            let (status, headers, body) = idp.userinfo(&token).await?;
            let mut r = http::Response::new(body);
            *r.status_mut() = status;
            *r.headers_mut() = headers;
            Ok(r)
        }
    })
    .await
    .map(|c| c.map(|c| c.value))
    .map_err(|e| e.to_string())
}

#[tokio::test]
async fn the_quota_learns_remaining_zero_and_holds_the_user_before_any_429() {
    let clock = ManualClock::new();
    let idp = Arc::new(MockIdp::start(clock.shared()).await.unwrap());
    let p: Pipeline = Levee::builder("idp")
        .upstream_quota(UpstreamQuota::builder().clock(clock.shared()).build())
        .clock(clock.shared())
        .map(|r: http::Response<String>| Loaded::Value(r.into_body()))
        .http()
        .build()
        .unwrap();
    // No cache: every call is a load. The burst is 10.
    for _ in 0..10 {
        assert!(call(&p, &idp, "carol").await.unwrap().is_some());
    }
    // The 10th answer said `x-ratelimit-remaining: 0`: carol is held back.
    let err = call(&p, &idp, "carol").await.unwrap_err();
    assert!(err.contains("rate limited"), "{err}");
    assert_eq!(idp.calls("carol"), 10, "the IdP was not called again");
    assert_eq!(idp.rate_limited("carol"), 0, "no 429 was spent");
    // Dave is not affected.
    assert!(call(&p, &idp, "dave").await.unwrap().is_some());
    // The hold lasts until the reset the IdP announced (its bucket full
    // again, at most 120 s away, in unix seconds rounded up); then carol is
    // served again.
    clock.advance(Duration::from_secs(121));
    assert!(call(&p, &idp, "carol").await.unwrap().is_some());
}

#[tokio::test]
async fn an_outage_is_a_retryable_failure_and_a_401_is_not_retried() {
    let clock = ManualClock::new();
    let idp = Arc::new(MockIdp::start(clock.shared()).await.unwrap());
    let p: Pipeline = Levee::builder("idp")
        .retry(
            levee::RetryPolicy::new(3)
                .base_delay(Duration::ZERO)
                .no_budget(),
        )
        .clock(clock.shared())
        .map(|r: http::Response<String>| Loaded::Value(r.into_body()))
        .http()
        .build()
        .unwrap();
    idp.set_outage(true);
    let err = call(&p, &idp, "erin").await.unwrap_err();
    assert!(err.contains("failure"), "{err}");
    assert_eq!(idp.calls("erin"), 3, "503 retried up to max_attempts");
    idp.set_outage(false);
    let err = call(&p, &idp, "").await.unwrap_err(); // no user: 401
    assert!(err.contains("do_not_retry"), "{err}");
    assert_eq!(
        levee::http::verdict(http::StatusCode::UNAUTHORIZED, &http::HeaderMap::new()),
        Verdict::DoNotRetry
    );
}

#[tokio::test]
async fn the_http_classifier_reads_dates_on_the_pipelines_clock() {
    // The pipeline's clock is far from the system's: a Retry-After date 10 s
    // after the pipeline's now must mean 10 s.
    let start = std::time::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    let clock = ManualClock::starting_at(start);
    let date = httpdate_string(start + Duration::from_secs(10));
    let p: Pipeline = Levee::builder("idp")
        .clock(clock.shared())
        .map(|r: http::Response<String>| Loaded::Value(r.into_body()))
        .http()
        .build()
        .unwrap();
    let err = p
        .get("u".to_string(), move || {
            let date = date.clone();
            async move {
                let mut r = http::Response::new(String::new());
                *r.status_mut() = http::StatusCode::TOO_MANY_REQUESTS;
                r.headers_mut().insert("retry-after", date.parse().unwrap());
                Ok::<_, levee_testkit::TestkitError>(r)
            }
        })
        .await
        .unwrap_err();
    assert!(err.is_rate_limited(), "{err}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(10)));
}

/// An IMF-fixdate (RFC 9110) for `t`.
fn httpdate_string(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let days = secs / 86_400;
    let (h, m, s) = ((secs % 86_400) / 3600, (secs % 3600) / 60, secs % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let mn = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(mo - 1) as usize];
    format!("{wd}, {d:02} {mn} {y} {h:02}:{m:02}:{s:02} GMT")
}
