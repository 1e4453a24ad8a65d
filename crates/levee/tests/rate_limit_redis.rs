//! RateLimitLayer on RedisSlidingWindow: replicas share one limit through
//! a real redis-server (levee-testkit); with Redis killed or frozen the
//! fail-open / fail-closed settings hold and no request waits past the
//! limiter's timeout.
#![cfg(all(feature = "axum", feature = "redis"))]

mod support;

use std::time::{Duration, Instant};

use http::StatusCode;
use levee::core::ManualClock;
use levee::limit::{OnRedisError, Quota, RedisSlidingWindow, TimeSource, WindowMode};
use levee::rate_limit::{OnLimiterError, PeerIp, RateLimitLayer};
use levee::redis::RedisClient;
use levee_testkit::RedisServer;
use support::{Client, counted_app, field, serve};

const TIMEOUT: Duration = Duration::from_millis(200);

fn per_minute(limit: u32) -> Quota {
    Quota::new(limit, Duration::from_secs(60)).unwrap()
}

/// One replica: its own connection and limiter, keyed by the peer IP.
async fn replica(
    redis: &RedisServer,
    clock: &ManualClock,
    on_redis_error: OnRedisError,
    on_limiter_error: OnLimiterError,
) -> Client {
    let conn = RedisClient::standalone(redis.url())
        .clock(clock.shared())
        .build()
        .unwrap();
    let limiter = RedisSlidingWindow::builder(conn, per_minute(10))
        .mode(WindowMode::Log)
        .time_source(TimeSource::Clock)
        .clock(clock.shared())
        .timeout(TIMEOUT)
        .on_redis_error(on_redis_error)
        .prefix("layer-test")
        .build()
        .unwrap();
    let layer = RateLimitLayer::builder(PeerIp::new())
        .class("anonymous", per_minute(10), limiter)
        .on_limiter_error(on_limiter_error)
        .build()
        .unwrap();
    Client::connect(serve(counted_app().0.layer(layer)).await).await
}

#[tokio::test]
async fn two_servers_on_one_redis_share_one_limit() {
    let redis = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let (redis_err, limiter_err) = (OnRedisError::FailClosed, OnLimiterError::FailClosed);
    let mut a = replica(&redis, &clock, redis_err, limiter_err).await;
    let mut b = replica(&redis, &clock, redis_err, limiter_err).await;
    let mut seen = Vec::new();
    for i in 0..20 {
        let client = if i % 2 == 0 { &mut a } else { &mut b };
        let resp = client.get(&[]).await;
        seen.push((resp.status().as_u16(), field(&resp, "ratelimit").get("r")));
    }
    let expected: Vec<(u16, i64)> = (0..20)
        .map(|i| if i < 10 { (200, 9 - i) } else { (429, 0) })
        .collect();
    assert_eq!(seen, expected);
}

/// Sends one request and checks it is answered with `status` well within
/// the limiter's timeout budget.
async fn answered_quickly(
    client: &mut Client,
    status: StatusCode,
) -> http::Response<hyper::body::Incoming> {
    let start = Instant::now();
    let resp = tokio::time::timeout(Duration::from_secs(3), client.get(&[]))
        .await
        .expect("a request hung");
    assert_eq!(resp.status(), status);
    assert!(start.elapsed() < TIMEOUT * 5, "took {:?}", start.elapsed());
    resp
}

#[tokio::test]
async fn redis_killed_follows_the_fail_open_or_closed_setting_without_hanging() {
    let mut redis = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let (closed, open) = (OnRedisError::FailClosed, OnRedisError::FailOpen);
    let mut closed_closed = replica(&redis, &clock, closed, OnLimiterError::FailClosed).await;
    let mut closed_open = replica(&redis, &clock, closed, OnLimiterError::FailOpen).await;
    let mut limiter_open = replica(&redis, &clock, open, OnLimiterError::FailClosed).await;
    for c in [&mut closed_closed, &mut closed_open, &mut limiter_open] {
        answered_quickly(c, StatusCode::OK).await;
    }

    redis.kill();
    for _ in 0..3 {
        let resp = answered_quickly(&mut closed_closed, StatusCode::SERVICE_UNAVAILABLE).await;
        assert_eq!(field(&resp, "ratelimit-policy").get("q"), 10);
        let resp = answered_quickly(&mut closed_open, StatusCode::OK).await;
        assert!(!resp.headers().contains_key("ratelimit"));
        // The limiter's own fail-open is a decision: the layer reports it.
        let resp = answered_quickly(&mut limiter_open, StatusCode::OK).await;
        assert_eq!(field(&resp, "ratelimit").get("r"), 9);
    }

    // Back up: decisions come from Redis again (the reconnect may take a
    // few attempts), and the count made before the outage still holds.
    redis.restart().unwrap();
    // The client's breaker opened during the outage (5 s, on the manual
    // clock): one open period later its probe reaches the new server.
    clock.advance(Duration::from_secs(5));
    let mut remaining = None;
    for _ in 0..40 {
        let resp = closed_closed.get(&[]).await;
        if resp.status() == StatusCode::OK {
            remaining = Some(field(&resp, "ratelimit").get("r"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The restarted server kept nothing (no persistence): a fresh count.
    assert_eq!(remaining, Some(9));
}

#[tokio::test]
async fn frozen_redis_costs_at_most_the_limiter_timeout() {
    let redis = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let mut client = replica(
        &redis,
        &clock,
        OnRedisError::FailClosed,
        OnLimiterError::FailClosed,
    )
    .await;
    answered_quickly(&mut client, StatusCode::OK).await;
    redis.pause();
    let start = Instant::now();
    answered_quickly(&mut client, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(
        start.elapsed() >= TIMEOUT,
        "the answer waited for the timeout"
    );
    redis.resume();
}
