//! The IdP story both `userinfo_pipeline` and `userinfo_config` tell: one
//! pipeline in front of levee-testkit's `MockIdp`, a page load of five
//! requests, an hour of visits, then an outage.

use std::sync::Arc;
use std::time::Duration;

use levee::Levee;
use levee::core::{KeyHasher, ManualClock, SensitiveKey};
use levee_testkit::{MockIdp, TestkitError};

pub(crate) type Response = http::Response<String>;
pub(crate) type Userinfo = Levee<SensitiveKey, String, TestkitError, Response>;

/// Tells the story on `userinfo`; `backoff_step` moves the clock past the
/// pipeline's failure backoff between outage requests. Returns the
/// `fetch` it used, for the caller's own last steps.
pub(crate) async fn tell(
    userinfo: &Userinfo,
    idp: &Arc<MockIdp>,
    hasher: &KeyHasher,
    clock: &ManualClock,
    backoff_step: Duration,
) -> Result<(), Box<dyn std::error::Error>> {
    println!("1. alice's page load fires 5 requests at once:");
    let page: Vec<_> = (0..5)
        .map(|_| tokio::spawn(fetch(userinfo, idp, hasher, "alice")))
        .collect();
    for request in page {
        let got = request.await??.ok_or("alice is unknown")?;
        println!("   {:?} from {:?}", got.freshness, got.source);
    }
    println!(
        "   IdP calls for alice: {} (5 requests)",
        idp.calls("alice")
    );

    println!("\n2. alice comes back every 6 minutes for an hour:");
    for _ in 0..10 {
        clock.advance(Duration::from_secs(360));
        fetch(userinfo, idp, hasher, "alice").await?;
    }
    println!(
        "   IdP calls for alice: {}, 429s: {}",
        idp.calls("alice"),
        idp.rate_limited("alice")
    );

    println!("\n3. the IdP is down:");
    idp.set_outage(true);
    clock.advance(Duration::from_secs(360));
    for i in 1..=7 {
        match fetch(userinfo, idp, hasher, "alice").await {
            Ok(Some(got)) => println!(
                "   request {i}: {:?} from {:?}: no error shown to the user",
                got.freshness, got.source
            ),
            other => println!("   request {i}: {other:?}"),
        }
        clock.advance(backoff_step); // past the failure backoff
    }
    Ok(())
}

/// `user`'s userinfo through the pipeline: keyed by the hashed token (the
/// raw token never becomes a key), loaded from the IdP on a miss.
pub(crate) fn fetch(
    userinfo: &Userinfo,
    idp: &Arc<MockIdp>,
    hasher: &KeyHasher,
    user: &'static str,
) -> impl std::future::Future<
    Output = Result<Option<levee::cache::Cached<String>>, levee::Error<TestkitError>>,
> + Send
+ 'static {
    let (userinfo, idp) = (userinfo.clone(), idp.clone());
    let token = format!("token-{user}");
    let key = hasher.key(&token);
    async move {
        userinfo
            .get(key, move || {
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
    }
}
