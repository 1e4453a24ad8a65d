//! RedisGcra on a real Redis: the burst, then one per interval, for every
//! replica together; the same decisions as the local `Gcra`; the Redis
//! error policies.
#![cfg(feature = "redis")]

use std::num::NonZeroU32;
use std::time::Duration;

use levee_core::ManualClock;
use levee_limit::{Gcra, LimitError, OnRedisError, RateLimiter, RedisGcra, TimeSource};
use levee_redis::RedisClient;
use levee_testkit::RedisServer;

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

fn gcra(url: &str, clock: &ManualClock, burst: u32, every: Duration) -> RedisGcra {
    RedisGcra::builder(
        RedisClient::standalone(url)
            .clock(clock.shared())
            .build()
            .unwrap(),
        nz(burst),
        every,
    )
    .prefix("t-gcra")
    .time_source(TimeSource::Clock)
    .clock(clock.shared())
    .timeout(Duration::from_millis(500))
    .build()
    .unwrap()
}

/// Auth0's limit, held by two replicas together: 10 at once, then one
/// every 12 s.
#[tokio::test]
async fn two_replicas_share_a_burst_of_10_then_one_every_12_seconds() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let every = Duration::from_secs(12);
    let replicas = [
        gcra(&server.url(), &clock, 10, every),
        gcra(&server.url(), &clock, 10, every),
    ];
    let mut admitted = 0;
    for i in 0..30 {
        admitted += u32::from(replicas[i % 2].check("alice").await.unwrap().allowed);
    }
    assert_eq!(admitted, 10);
    let refused = replicas[0].check("alice").await.unwrap();
    assert!(!refused.allowed);
    assert_eq!(refused.retry_after, Some(every));
    assert_eq!(refused.remaining, 0);
    clock.advance(every);
    assert!(replicas[1].check("alice").await.unwrap().allowed);
    assert!(!replicas[0].check("alice").await.unwrap().allowed);
    clock.advance(Duration::from_secs(60));
    let mut admitted = 0;
    for i in 0..10 {
        admitted += u32::from(replicas[i % 2].check("alice").await.unwrap().allowed);
    }
    assert_eq!(admitted, 5, "5 a minute");
    // Another key has its own burst.
    assert!(replicas[0].check("bob").await.unwrap().allowed);
}

#[tokio::test]
async fn decisions_carry_remaining_reset_and_capacity_errors() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let l = gcra(&server.url(), &clock, 10, Duration::from_secs(12));
    let d = l.check_n("k", nz(3)).await.unwrap();
    assert!(d.allowed && d.remaining == 7 && d.limit == 10 && d.retry_after.is_none());
    assert_eq!(
        d.reset_after,
        Duration::from_secs(36),
        "until the burst is whole"
    );
    let d = l.check_n("k", nz(7)).await.unwrap();
    assert!(d.allowed && d.remaining == 0);
    let refused = l.check_n("k", nz(2)).await.unwrap();
    assert!(!refused.allowed);
    assert_eq!(refused.retry_after, Some(Duration::from_secs(24)));
    assert!(matches!(
        l.check_n("k", nz(11)).await,
        Err(LimitError::InsufficientCapacity {
            requested: 11,
            limit: 10
        })
    ));
}

/// The same sequence of costs and clock moves gives the same admissions
/// as the local (governor-backed) `Gcra`.
#[tokio::test]
async fn admits_exactly_what_the_local_gcra_admits() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let every = Duration::from_millis(1500);
    let redis = gcra(&server.url(), &clock, 5, every);
    let local = Gcra::<String>::with_clock(nz(5), every, clock.shared()).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut admitted = 0;
    for step in 0..400 {
        let cost = nz(1 + (next() % 3) as u32);
        let r = redis.check_n("u", cost).await.unwrap();
        let l = local.check_n(&"u".to_string(), cost).unwrap();
        assert_eq!(r.allowed, l.allowed, "step {step}: cost {cost}");
        admitted += u32::from(r.allowed);
        if next() % 3 == 0 {
            clock.advance(Duration::from_millis(250 * (next() % 8)));
        }
    }
    assert!(
        (50..350).contains(&admitted),
        "a mix of both: {admitted} of 400"
    );
}

#[tokio::test]
async fn the_server_clock_admits_the_burst() {
    let server = RedisServer::start().unwrap();
    let l = RedisGcra::builder(
        RedisClient::standalone(server.url()).build().unwrap(),
        nz(5),
        Duration::from_secs(3600),
    )
    .timeout(Duration::from_millis(500))
    .build()
    .unwrap();
    let mut admitted = 0;
    for _ in 0..12 {
        admitted += u32::from(l.check("srv").await.unwrap().allowed);
    }
    assert_eq!(admitted, 5);
    let d = l.check_n("srv2", nz(2)).await.unwrap();
    assert!(d.allowed && d.remaining == 3);
}

#[tokio::test]
async fn redis_down_follows_the_policy() {
    let mut server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let build = |policy| {
        RedisGcra::builder(
            RedisClient::standalone(server.url())
                .clock(clock.shared())
                .build()
                .unwrap(),
            nz(9),
            Duration::from_secs(60),
        )
        .time_source(TimeSource::Clock)
        .clock(clock.shared())
        .on_redis_error(policy)
        .build()
        .unwrap()
    };
    let (open, closed, local) = (
        build(OnRedisError::FailOpen),
        build(OnRedisError::FailClosed),
        build(OnRedisError::Local { replicas: 3 }),
    );
    server.kill();
    assert!(open.check("k").await.unwrap().allowed);
    assert!(matches!(
        closed.check("k").await,
        Err(LimitError::Backend { .. })
    ));
    let mut admitted = 0;
    for _ in 0..10 {
        admitted += u32::from(local.check("k").await.unwrap().allowed);
    }
    assert_eq!(admitted, 3, "9 / 3 replicas, locally");
}
