//! RedisSlidingWindow against real redis-server processes.
#![cfg(feature = "redis")]

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use levee_core::ManualClock;
use levee_limit::{
    LimitError, OnRedisError, Quota, RateLimiter, RedisSlidingWindow, TimeSource, WindowMode,
};
use levee_redis::RedisClient;
use levee_testkit::RedisServer;

/// A standalone client whose breaker runs on `clock`.
fn client(url: String, clock: &ManualClock) -> RedisClient {
    RedisClient::standalone(url)
        .clock(clock.shared())
        .build()
        .unwrap()
}

fn limiter(
    client: RedisClient,
    limit: u32,
    mode: WindowMode,
    clock: &ManualClock,
) -> RedisSlidingWindow {
    RedisSlidingWindow::builder(client, Quota::new(limit, Duration::from_secs(10)).unwrap())
        .mode(mode)
        .time_source(TimeSource::Clock)
        .clock(clock.shared())
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap()
}

/// Two clients, 16 tasks, one key, one instant: exactly `limit` admitted;
/// after the window, admissions resume.
async fn two_clients_never_exceed_the_limit(urls: Vec<String>, cluster: bool) {
    let clock = ManualClock::new();
    for mode in [WindowMode::Log, WindowMode::Counter] {
        let conf = |urls: &Vec<String>| {
            #[cfg(feature = "cluster")]
            if cluster {
                return RedisClient::cluster(urls.clone());
            }
            assert!(!cluster, "Cluster tests need the `cluster` feature");
            RedisClient::standalone(urls[0].clone())
        };
        let a = Arc::new(limiter(conf(&urls).build().unwrap(), 25, mode, &clock));
        let b = Arc::new(limiter(conf(&urls).build().unwrap(), 25, mode, &clock));
        let key = format!("user-{mode:?}");
        let mut tasks = Vec::new();
        for t in 0..16 {
            let l = if t % 2 == 0 { a.clone() } else { b.clone() };
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                let mut admitted = 0;
                for _ in 0..10 {
                    if l.check(key.as_str()).await.unwrap().allowed {
                        admitted += 1;
                    }
                }
                admitted
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        assert_eq!(total, 25, "{mode:?}: 160 requests in one instant, limit 25");
        let denied = a.check(key.as_str()).await.unwrap();
        assert!(!denied.allowed && denied.retry_after.is_some());
        clock.advance(Duration::from_secs(21));
        assert!(
            b.check(key.as_str()).await.unwrap().allowed,
            "{mode:?}: a new window admits again"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_two_clients_sixteen_tasks() {
    let server = RedisServer::start().unwrap();
    two_clients_never_exceed_the_limit(vec![server.url()], false).await;
}

#[cfg(feature = "cluster")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_two_clients_sixteen_tasks() {
    let cluster = tokio::task::spawn_blocking(|| levee_testkit::RedisCluster::start(3))
        .await
        .unwrap()
        .unwrap();
    two_clients_never_exceed_the_limit(cluster.urls(), true).await;
}

#[tokio::test]
async fn log_mode_retry_after_is_when_the_oldest_leaves() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let l = limiter(client(server.url(), &clock), 2, WindowMode::Log, &clock);
    let _ = l.check("k").await.unwrap();
    clock.advance(Duration::from_secs(4));
    let _ = l.check("k").await.unwrap();
    let d = l.check("k").await.unwrap();
    assert!(!d.allowed);
    assert_eq!(d.retry_after, Some(Duration::from_secs(6)));
    assert!(
        l.check_n("k", NonZeroU32::new(3).unwrap())
            .await
            .unwrap_err()
            .is_insufficient_capacity()
    );
}

#[tokio::test]
async fn server_time_mode_admits_the_limit_per_window() {
    let server = RedisServer::start().unwrap();
    let l = RedisSlidingWindow::builder(
        RedisClient::standalone(server.url()).build().unwrap(),
        Quota::new(5, Duration::from_secs(60)).unwrap(),
    )
    .mode(WindowMode::Log)
    // Room for the first call's connect on a loaded machine.
    .timeout(Duration::from_millis(500))
    .build()
    .unwrap();
    let mut admitted = 0;
    for _ in 0..20 {
        if l.check("srv").await.unwrap().allowed {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 5);
}

#[tokio::test]
async fn redis_down_follows_the_configured_policy_and_recovers() {
    let mut server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let conn = || {
        RedisClient::standalone(server.url())
            .connect_timeout(Duration::from_millis(200))
            .clock(clock.shared())
            .build()
            .unwrap()
    };
    let build = |policy| {
        RedisSlidingWindow::builder(conn(), Quota::new(9, Duration::from_secs(10)).unwrap())
            .time_source(TimeSource::Clock)
            .clock(clock.shared())
            .on_redis_error(policy)
            // Room for the first call's connect on a loaded machine.
            .timeout(Duration::from_millis(500))
            .build()
            .unwrap()
    };
    let open = build(OnRedisError::FailOpen);
    let closed = build(OnRedisError::FailClosed);
    let local = build(OnRedisError::Local { replicas: 3 });
    assert!(closed.check("k").await.unwrap().allowed, "Redis is up");
    server.kill();
    for _ in 0..20 {
        assert!(open.check("k").await.unwrap().allowed);
    }
    assert!(matches!(
        closed.check("k").await,
        Err(LimitError::Backend { .. })
    ));
    let mut admitted = 0;
    for _ in 0..20 {
        if local.check("k").await.unwrap().allowed {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 3, "9 / 3 replicas locally");
    server.restart().unwrap();
    // The breaker's open period is on the manual clock.
    clock.advance(Duration::from_secs(5));
    let mut recovered = false;
    for _ in 0..50 {
        if closed.check("k2").await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(recovered, "decisions come from Redis again once it is back");
}

/// Every key the limiter writes expires: a counter key within two windows
/// of its window's start (set once per window, kept by later writes), a
/// log key a window after its last admission.
#[tokio::test]
async fn keys_expire_after_their_windows() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let conn = client(server.url(), &clock);
    let mut admin = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for mode in [WindowMode::Counter, WindowMode::Log] {
        let l = limiter(conn.clone(), 100, mode, &clock);
        for _ in 0..3 {
            assert!(l.check("u").await.unwrap().allowed);
            clock.advance(Duration::from_secs(1));
        }
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut admin)
            .await
            .unwrap();
        assert_eq!(keys.len(), 1, "{mode:?}: {keys:?}");
        let pttl: i64 = redis::cmd("PTTL")
            .arg(&keys[0])
            .query_async(&mut admin)
            .await
            .unwrap();
        // Windows of 10 s: at most two windows (+1 ms rounding), and set.
        assert!(pttl > 0 && pttl <= 20_001, "{mode:?}: PTTL {pttl}");
        let _: () = redis::cmd("FLUSHALL")
            .query_async(&mut admin)
            .await
            .unwrap();
    }
}

/// Redis killed, restarted after 2 s: the first decision after the restart
/// comes from Redis, not from an error the connection stored while Redis
/// was down.
#[tokio::test]
async fn after_a_restart_the_first_check_reaches_redis() {
    let mut server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let limiter = RedisSlidingWindow::builder(
        client(server.url(), &clock),
        Quota::new(9, Duration::from_secs(10)).unwrap(),
    )
    .time_source(TimeSource::Clock)
    .clock(clock.shared())
    .on_redis_error(OnRedisError::FailClosed)
    .timeout(Duration::from_millis(200))
    .build()
    .unwrap();
    assert!(limiter.check("k").await.unwrap().allowed, "Redis is up");
    server.kill();
    for _ in 0..5 {
        assert!(limiter.check("k").await.is_err(), "fails closed");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.restart().unwrap();
    clock.advance(Duration::from_secs(5));
    let first = limiter.check("k").await;
    assert!(
        first.is_ok(),
        "the first check after the restart reaches Redis: {first:?}"
    );
}

/// A ConnectionManager the application already has works for the limiter,
/// sharing counts with a limiter on a client levee opened.
#[tokio::test]
async fn a_users_connection_manager_serves_the_limiter() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let manager = redis::Client::open(server.url())
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap();
    let theirs = limiter(
        RedisClient::from_connection_manager(manager)
            .clock(clock.shared())
            .build()
            .unwrap(),
        4,
        WindowMode::Log,
        &clock,
    );
    let ours = limiter(client(server.url(), &clock), 4, WindowMode::Log, &clock);
    let mut admitted = 0;
    for i in 0..8 {
        let l = if i % 2 == 0 { &theirs } else { &ours };
        admitted += u32::from(l.check("shared").await.unwrap().allowed);
    }
    assert_eq!(admitted, 4, "one limit across both connections");
}

/// The counter script answers an admission with one packed integer and a
/// refusal (or an admission too large to pack) with an array: both decode
/// to the same decision fields, for any cost, on both time sources.
#[tokio::test]
async fn counter_decisions_carry_remaining_reset_and_retry_for_any_cost() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let l = limiter(
        client(server.url(), &clock),
        10,
        WindowMode::Counter,
        &clock,
    );
    let three = NonZeroU32::new(3).unwrap();
    let d = l.check_n("c", three).await.unwrap();
    assert!(d.allowed && d.remaining == 7 && d.retry_after.is_none());
    assert!(d.reset_after > Duration::from_secs(10) && d.reset_after <= Duration::from_secs(20));
    assert_eq!(l.check("c").await.unwrap().remaining, 6);
    let d = l.check_n("c", NonZeroU32::new(6).unwrap()).await.unwrap();
    assert!(d.allowed && d.remaining == 0);
    let refused = l.check_n("c", three).await.unwrap();
    assert!(!refused.allowed && refused.remaining == 0);
    assert!(refused.retry_after.is_some_and(|r| r > Duration::ZERO));

    // The server's clock, a cost of 2: the limit per window, exactly.
    let l = RedisSlidingWindow::builder(
        RedisClient::standalone(server.url()).build().unwrap(),
        Quota::new(10, Duration::from_secs(3600)).unwrap(),
    )
    .timeout(Duration::from_millis(500))
    .build()
    .unwrap();
    let two = NonZeroU32::new(2).unwrap();
    let mut remaining = Vec::new();
    for _ in 0..5 {
        let d = l.check_n("srv-counter", two).await.unwrap();
        assert!(d.allowed);
        remaining.push(d.remaining);
    }
    assert_eq!(remaining, [8, 6, 4, 2, 0]);
    assert!(!l.check("srv-counter").await.unwrap().allowed);

    // A remaining count past 2^24 (packed since the split follows the
    // window), and one too large to pack beside a ten-year window's reset
    // (an array).
    let year = Duration::from_secs(365 * 86_400);
    for (limit, window) in [(50_000_000, Duration::from_secs(60)), (50_000, 10 * year)] {
        let l = RedisSlidingWindow::builder(
            RedisClient::standalone(server.url()).build().unwrap(),
            Quota::new(limit, window).unwrap(),
        )
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
        let key = format!("big-{limit}");
        let d = l.check(key.as_str()).await.unwrap();
        assert!(d.allowed && d.remaining == limit - 1, "{d:?}");
        assert!(
            d.reset_after > window && d.reset_after <= 2 * window,
            "{d:?}"
        );
        assert_eq!(l.check(key.as_str()).await.unwrap().remaining, limit - 2);
    }
}

/// `batch_concurrent`: 64 tasks check 4 keys at once through one limiter
/// (and a second, unbatched limiter on the same keys): each key admits
/// exactly its limit, and the batched limiter made fewer calls than
/// checks (they went out in batches).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_concurrent_checks_admit_exactly_the_limit_in_fewer_calls() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    for time in [TimeSource::Server, TimeSource::Clock] {
        let prefix = format!("batch-{time:?}");
        let build = |batch: bool| {
            RedisSlidingWindow::builder(
                client(server.url(), &clock),
                Quota::new(30, Duration::from_secs(3600)).unwrap(),
            )
            .prefix(prefix.clone())
            .time_source(time)
            .clock(clock.shared())
            .timeout(Duration::from_secs(2))
            .on_redis_error(OnRedisError::FailClosed)
            .batch_concurrent(batch)
            .build()
            .unwrap()
        };
        let batched = Arc::new(build(true));
        let single = Arc::new(build(false));
        let mut tasks = Vec::new();
        for t in 0..64u32 {
            let l = if t % 8 == 7 {
                single.clone()
            } else {
                batched.clone()
            };
            tasks.push(tokio::spawn(async move {
                let key = format!("k{}", t % 4);
                let mut admitted = 0u32;
                for i in 0..5u32 {
                    // Costs of 1 and 2: the batch carries each key's own.
                    let n = NonZeroU32::new(1 + i % 2).unwrap();
                    let d = l.check_n(key.as_str(), n).await.unwrap();
                    if d.allowed {
                        admitted += n.get();
                        assert!(d.retry_after.is_none() && d.remaining < 30, "{d:?}");
                    } else {
                        assert!(d.retry_after.is_some() && d.remaining <= 1, "{d:?}");
                    }
                }
                (t % 4, admitted)
            }));
        }
        let mut per_key = [0u32; 4];
        for task in tasks {
            let (k, admitted) = task.await.unwrap();
            per_key[k as usize] += admitted;
        }
        // 16 tasks a key, 7.5 permits each asked: far over 30; a refused
        // cost of 2 may leave 1 unspent.
        for admitted in per_key {
            assert!((29..=30).contains(&admitted), "{time:?}: {per_key:?}");
        }
        let calls = batched.client().stats().attempts;
        let checks = 56 * 5;
        assert!(
            calls < checks,
            "{time:?}: {calls} calls for {checks} checks: none was batched"
        );
    }
}

/// A batch whose call fails gives every check in it the error, and each
/// takes the limiter's policy (nothing hangs, nothing panics).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_gives_every_check_its_policy() {
    let mut server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let l = Arc::new(
        RedisSlidingWindow::builder(
            client(server.url(), &clock),
            Quota::new(1000, Duration::from_secs(3600)).unwrap(),
        )
        .timeout(Duration::from_millis(200))
        .on_redis_error(OnRedisError::FailClosed)
        .batch_concurrent(true)
        .build()
        .unwrap(),
    );
    assert!(l.check("warm").await.unwrap().allowed);
    server.kill();
    let tasks: Vec<_> = (0..32)
        .map(|t| {
            let l = l.clone();
            tokio::spawn(async move { l.check(format!("u{t}").as_str()).await })
        })
        .collect();
    for task in tasks {
        assert!(matches!(
            task.await.unwrap(),
            Err(LimitError::Backend { .. })
        ));
    }
}

#[test]
fn batch_concurrent_is_refused_where_a_batch_cannot_go() {
    let clock = ManualClock::new();
    let err = RedisSlidingWindow::builder(
        client("redis://127.0.0.1:1".into(), &clock),
        Quota::new(10, Duration::from_secs(1)).unwrap(),
    )
    .mode(WindowMode::Log)
    .batch_concurrent(true)
    .build()
    .unwrap_err();
    assert!(
        matches!(
            err,
            LimitError::InvalidSetting {
                setting: "batch_concurrent",
                ..
            }
        ),
        "{err}"
    );
}

/// A clock that jumps many windows at once (a manual clock: Redis keeps the
/// key meanwhile, as real time would not) starts the key over: its old
/// window is taken neither for the current one nor for the previous one,
/// 256 and 257 windows on included (the counter's packed state keeps the
/// window index modulo 2048).
#[tokio::test]
async fn a_clock_that_jumps_many_windows_starts_the_key_over() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let l = limiter(client(server.url(), &clock), 3, WindowMode::Counter, &clock);
    for windows in [256, 257, 300, 2047] {
        let key = format!("jump-{windows}");
        for _ in 0..3 {
            assert!(l.check(key.as_str()).await.unwrap().allowed);
        }
        assert!(!l.check(key.as_str()).await.unwrap().allowed, "the limit");
        clock.advance(Duration::from_secs(10 * windows));
        let d = l.check(key.as_str()).await.unwrap();
        assert!(
            d.allowed && d.remaining == 2,
            "{windows} windows later: {d:?}"
        );
    }
}
