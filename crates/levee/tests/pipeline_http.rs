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
