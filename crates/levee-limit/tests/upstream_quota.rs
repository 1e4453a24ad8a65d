//! UpstreamQuota: holds learned from headers, timed with a ManualClock, and
//! shared between replicas through a real Redis.

use std::time::{Duration, UNIX_EPOCH};

use http::{HeaderMap, StatusCode};
use levee_core::ManualClock;
use levee_limit::{QuotaState, UpstreamQuota};

fn h(pairs: &[(&'static str, String)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (k, v) in pairs {
        m.insert(*k, v.parse().unwrap());
    }
    m
}

#[test]
fn auth0_remaining_zero_holds_until_the_unix_reset_then_releases() {
    let clock = ManualClock::starting_at(UNIX_EPOCH + Duration::from_secs(1_800_000_000));
    let q = UpstreamQuota::<&str>::builder()
        .clock(clock.shared())
        .build();
    let reset = (1_800_000_000u64 + 24).to_string();
    q.observe(
        &"alice",
        StatusCode::OK,
        &h(&[
            ("x-ratelimit-remaining", "0".into()),
            ("x-ratelimit-reset", reset),
        ]),
    );
    assert_eq!(
        q.check(&"alice"),
        QuotaState::HoldBack {
            retry_after: Duration::from_secs(24)
        }
    );
    assert_eq!(q.check(&"bob"), QuotaState::Ready, "holds are per key");
    clock.advance(Duration::from_secs(24));
    assert_eq!(q.check(&"alice"), QuotaState::Ready);
}

#[test]
fn retry_after_takes_precedence_over_the_reset() {
    let clock = ManualClock::starting_at(UNIX_EPOCH + Duration::from_secs(1_800_000_000));
    let q = UpstreamQuota::<&str>::builder()
        .clock(clock.shared())
        .build();
    let reset = (1_800_000_000u64 + 60).to_string();
    q.observe(
        &"k",
        StatusCode::TOO_MANY_REQUESTS,
        &h(&[
            ("retry-after", "5".into()),
            ("x-ratelimit-remaining", "0".into()),
            ("x-ratelimit-reset", reset),
        ]),
    );
    assert_eq!(
        q.check(&"k"),
        QuotaState::HoldBack {
            retry_after: Duration::from_secs(5)
        }
    );
}

#[test]
fn bare_429_holds_for_the_default_and_remaining_lifts_it() {
    let clock = ManualClock::new();
    let q = UpstreamQuota::<&str>::builder()
        .clock(clock.shared())
        .default_hold(Duration::from_secs(2))
        .build();
    q.observe(&"k", StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new());
    assert_eq!(
        q.check(&"k"),
        QuotaState::HoldBack {
            retry_after: Duration::from_secs(2)
        }
    );
    q.observe(
        &"k",
        StatusCode::OK,
        &h(&[("x-ratelimit-remaining", "4".into())]),
    );
    assert_eq!(q.check(&"k"), QuotaState::Ready);
}

#[test]
fn draft_11_ratelimit_zero_remaining_holds() {
    let clock = ManualClock::new();
    let q = UpstreamQuota::<&str>::builder()
        .clock(clock.shared())
        .build();
    q.observe(
        &"k",
        StatusCode::OK,
        &h(&[("ratelimit", "\"default\";r=0;t=30".into())]),
    );
    assert_eq!(
        q.check(&"k"),
        QuotaState::HoldBack {
            retry_after: Duration::from_secs(30)
        }
    );
}

#[test]
fn ended_holds_are_dropped_as_new_ones_arrive() {
    let clock = ManualClock::new();
    let q = UpstreamQuota::<u32>::builder()
        .clock(clock.shared())
        .build();
    for k in 0..5_000 {
        q.hold(&k, Duration::from_secs(1));
    }
    clock.advance(Duration::from_secs(2));
    for k in 5_000..10_000 {
        q.hold(&k, Duration::from_secs(1));
    }
    assert!(q.len() <= 5_000 + 2_048, "{} holds kept", q.len());
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn a_hold_learned_by_one_replica_holds_back_the_other() {
    use levee_limit::SharedUpstreamQuota;
    use levee_redis::RedisClient;
    let server = levee_testkit::RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let replica = || {
        SharedUpstreamQuota::new(
            UpstreamQuota::<String>::builder()
                .clock(clock.shared())
                .build(),
            RedisClient::standalone(server.url()).build().unwrap(),
            "idp",
        )
    };
    let (a, b) = (replica(), replica());
    connected(&a).await;
    connected(&b).await;
    let user = "alice".to_string();
    assert_eq!(b.check(&user).await, QuotaState::Ready);
    a.observe(
        &user,
        StatusCode::TOO_MANY_REQUESTS,
        &h(&[("retry-after", "30".into())]),
    )
    .await;
    match b.check(&user).await {
        QuotaState::HoldBack { retry_after } => {
            assert!(retry_after <= Duration::from_secs(30) && retry_after > Duration::from_secs(28))
        }
        QuotaState::Ready => panic!("the other replica must be held back"),
    }
    clock.advance(Duration::from_secs(31));
    assert_eq!(b.check(&user).await, QuotaState::Ready);
}

/// Opens `quota`'s Redis connection before a test counts on it: its calls
/// have 50 ms, and on a loaded machine a first connect can take longer (the
/// connect then goes on by itself; this waits for it).
#[cfg(feature = "redis")]
async fn connected(quota: &levee_limit::SharedUpstreamQuota<String>) {
    let _ = quota.check(&"warm-up".to_string()).await;
    for _ in 0..100 {
        if quota.client().is_connected() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no Redis connection within 2 s");
}

/// One request as a careful client makes it: wait out any hold, call the
/// IdP, learn from the answer. Returns whether the answer was a 429.
#[cfg(feature = "redis")]
async fn careful_call(
    quota: &levee_limit::SharedUpstreamQuota<String>,
    idp: &levee_testkit::MockIdp,
    clock: &ManualClock,
    user: &str,
) -> bool {
    if let QuotaState::HoldBack { retry_after } = quota.check(&user.to_string()).await {
        clock.advance(retry_after);
    }
    let (status, headers, _) = idp.userinfo(&format!("token-{user}")).await.unwrap();
    quota.observe(&user.to_string(), status, &headers).await;
    status == StatusCode::TOO_MANY_REQUESTS
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn against_the_mock_idp_one_and_two_replicas_never_get_a_429() {
    use levee_redis::RedisClient;
    let server = levee_testkit::RedisServer::start().unwrap();
    let clock = ManualClock::starting_at(UNIX_EPOCH + Duration::from_secs(1_800_000_000));
    let idp = levee_testkit::MockIdp::start(clock.shared()).await.unwrap();
    let replica = |prefix: &str| {
        UpstreamQuota::<String>::builder()
            .clock(clock.shared())
            .build()
            .redis(
                RedisClient::standalone(server.url()).build().unwrap(),
                prefix,
            )
    };
    let alone = replica("solo");
    connected(&alone).await;
    let mut throttled = 0;
    for _ in 0..100 {
        throttled += u32::from(careful_call(&alone, &idp, &clock, "alice").await);
    }
    assert_eq!(
        throttled, 0,
        "one replica never spends a request that would be refused"
    );
    assert_eq!(idp.calls("alice"), 100);
    assert_eq!(idp.rate_limited("alice"), 0);

    let (a, b) = (replica("fleet"), replica("fleet"));
    connected(&a).await;
    connected(&b).await;
    for i in 0..100 {
        let r = if i % 2 == 0 { &a } else { &b };
        throttled += u32::from(careful_call(r, &idp, &clock, "bob").await);
    }
    assert_eq!(
        throttled, 0,
        "two replicas sharing holds through Redis never get a 429"
    );
    assert_eq!(idp.rate_limited("bob"), 0);
}

/// A hold on a Cluster slot that is being migrated, its key already moved
/// to the importing master: the old master answers a check's `GET` with
/// `ASK`, and the client sends `ASKING` and the `GET` again to the new one,
/// three round trips in all. Every round trip crosses a proxy that delays
/// each chunk by 25 ms (so at least 150 ms in all): within the quota's
/// timeout (1 s here), the other replica is held back and nothing times
/// out. Its default 50 ms could not cover even one such round trip.
#[cfg(feature = "cluster")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_follows_ask_to_a_migrating_hold_within_the_quota_timeout() {
    use levee_redis::RedisClient;
    use levee_testkit::{FaultMode, RedisCluster};
    let cluster = RedisCluster::start_proxied(3, 0).await.unwrap();
    let clock = ManualClock::new();
    let replica = || {
        UpstreamQuota::<String>::builder()
            .clock(clock.shared())
            .build()
            .redis(RedisClient::cluster(cluster.urls()).build().unwrap(), "idp")
            .timeout(Duration::from_secs(1))
    };
    let (a, b) = (replica(), replica());
    connected(&a).await;
    connected(&b).await;
    let user = "alice".to_string();
    a.observe(
        &user,
        StatusCode::TOO_MANY_REQUESTS,
        &h(&[("retry-after", "30".into())]),
    )
    .await;
    // The hold's key (`idp:{alice}`) moves; its slot stays MIGRATING on the
    // old master and IMPORTING on the new one.
    let slot = cluster.slot_of(b"alice").unwrap();
    let from = cluster.owner_of_slot(slot).unwrap();
    let to = cluster.master_other_than(from).unwrap();
    let cluster = tokio::task::spawn_blocking(move || {
        assert_eq!(cluster.begin_slot_migration(slot, to).unwrap(), from);
        assert_eq!(
            cluster.move_slot_keys(slot, from, to).unwrap(),
            1,
            "the hold's key moved"
        );
        cluster
    })
    .await
    .unwrap();
    cluster.set_fault(FaultMode::Delay(Duration::from_millis(25)));
    let before = b.client().stats();
    let began = std::time::Instant::now();
    let state = b.check(&user).await;
    let took = began.elapsed();
    let after = b.client().stats();
    assert!(
        matches!(state, QuotaState::HoldBack { .. }),
        "the hold on the importing master holds the other replica back: {state:?} after {took:?}, {after:?}"
    );
    assert_eq!(after.timeouts, before.timeouts, "no command timed out");
    assert!(
        took >= Duration::from_millis(150),
        "the GET went through ASK (three delayed round trips), took {took:?}"
    );
}
