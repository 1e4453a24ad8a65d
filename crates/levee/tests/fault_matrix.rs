//! The Redis fault matrix: each of levee's Redis users (L2 get, backplane
//! invalidation, Redis limiter check, shared quota check) through each
//! fault (Redis killed, paused, blackholed, slow, restarted after 2 s; on
//! a Cluster: a master failed over to its replica, a slot migrated under
//! traffic), on real `redis-server` processes. Each cell asserts:
//! - no call returns an error to its caller (the limiter's policy here is
//!   `OnRedisError::Local`, which answers from a local share);
//! - no call that began with the client's breaker open sent a command to
//!   Redis (counted in the client's stats, no timing);
//! - after the fault ends, with the `ManualClock` moved by one open
//!   period, the part works through Redis again (what one replica stores
//!   the other reads; an invalidation reaches the other replica; Redis
//!   decides the limit), and the real time that took is printed.
//!
//! Each cell prints one `MATRIX |` row (docs/reliability.md's table):
//! `cargo test -p levee --all-features --test fault_matrix -- --nocapture 2>&1 | grep MATRIX`
#![cfg(feature = "redis")]

#[path = "support/matrix.rs"]
mod fault_matrix;

use std::time::Duration;

use fault_matrix::{OPEN_PERIOD, Part, Tally, key, recover, replica, report};
use levee::breaker::State;
use levee::cache::Source;
use levee::core::ManualClock;
use levee::redis::RedisClient;
use levee_testkit::{FaultMode, FaultProxy, RedisServer};

/// What happens to a standalone Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// SIGKILL; started again when the fault ends.
    Killed,
    /// SIGSTOP: connections stay open, nothing answers; SIGCONT ends it.
    Paused,
    /// The proxy holds every byte; it passes them again when the fault ends.
    Blackholed,
    /// Every reply delayed 200 ms (commands time out at 100 ms).
    Slow,
    /// Killed, and started again 2 s later while the calls go on.
    Restarted,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Killed => "killed",
            Fault::Paused => "paused (SIGSTOP)",
            Fault::Blackholed => "blackholed",
            Fault::Slow => "slow (200 ms replies)",
            Fault::Restarted => "restarted after 2 s",
        }
    }
}

const TIMEOUT: Duration = Duration::from_millis(100);

async fn standalone_cell(part: Part, fault: Fault) {
    let mut server = RedisServer::start().unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let clock = ManualClock::new();
    let a = replica(
        RedisClient::standalone(proxy.url()).name("a"),
        &clock,
        "m",
        TIMEOUT,
    );
    let b = replica(
        RedisClient::standalone(proxy.url()).name("b"),
        &clock,
        "m",
        TIMEOUT,
    );
    assert!(
        recover(part, &a, &b, &clock, Duration::from_secs(10))
            .await
            .is_some(),
        "{part:?} works before the fault"
    );
    let resyncs = b.cache.stats().backplane_resyncs;
    // A value both tiers and replica b hold, invalidated during the fault.
    let during = "during".to_string();
    if part == Part::Backplane {
        fault_matrix::load(&a.cache, &during).await.unwrap();
        assert_eq!(fault_matrix::load(&b.cache, &during).await, Ok(Source::L2));
    }

    let mut restarting = None;
    match fault {
        Fault::Killed => server.kill(),
        Fault::Paused => server.pause(),
        Fault::Blackholed => proxy.set_mode(FaultMode::Blackhole),
        Fault::Slow => proxy.set_mode(FaultMode::Delay(Duration::from_millis(200))),
        Fault::Restarted => {
            server.kill();
            restarting = Some(std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(2));
                server.restart().unwrap();
                server
            }));
            // The server is the thread's until it is back.
            server = RedisServer::start().unwrap();
        }
    }
    let mut t = Tally::default();
    let mut i = 0;
    // Calls fail within their timeout until the breaker opens...
    while a.client.breaker().state() != State::Open && i < 20 {
        t.call(part, &a, &key(part, i, false)).await;
        i += 1;
    }
    // ...then none waits on Redis.
    for _ in 0..30 {
        t.call(part, &a, &key(part, i, false)).await;
        i += 1;
    }
    if part == Part::Backplane {
        t.call(part, &a, &during).await;
        assert!(
            a.cache.stats().invalidations_pending > 0,
            "kept to send again"
        );
    }
    match fault {
        Fault::Killed => server.restart().unwrap(),
        Fault::Paused => server.resume(),
        Fault::Blackholed => proxy.set_mode(FaultMode::Pass),
        Fault::Slow => {
            proxy.set_mode(FaultMode::Pass);
            // The fault is over once no delayed byte is left: a chunk each
            // way may already be held for its 200 ms, and a reply to a
            // request that timed out before the switch still arrives ahead
            // of the first probe's on the same connection (the probe then
            // timed out too and the recovery took two open periods, in
            // about one run in 20).
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Fault::Restarted => {
            let back = restarting.take().unwrap();
            while !back.is_finished() {
                t.call(part, &a, &key(part, i, false)).await;
                i += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            server = back.join().unwrap();
        }
    }
    let recovery = recover(part, &a, &b, &clock, Duration::from_secs(20)).await;
    report(part, fault.name(), &t, recovery);
    assert!(t.opened, "{part:?} / {fault:?}: the breaker opened: {t:?}");
    assert_eq!(
        t.errors, 0,
        "{part:?} / {fault:?}: errors reached callers: {t:?}"
    );
    assert_eq!(
        t.attempts_while_open, 0,
        "{part:?} / {fault:?}: calls waited on Redis with the breaker open: {t:?}"
    );
    assert!(
        matches!(recovery, Some((_, 1))),
        "{part:?} / {fault:?}: one open period after the fault, the part works again: {recovery:?}"
    );
    if part == Part::Backplane {
        // The invalidations made during the fault were sent once Redis
        // answered: b dropped its copy, and L2 no longer holds the value.
        assert!(
            fault_matrix::eventually(Duration::from_secs(5), || {
                a.cache.stats().invalidations_pending == 0
            })
            .await,
            "{fault:?}: every invalidation of the fault was sent"
        );
        assert!(
            fault_matrix::eventually(Duration::from_secs(5), || b.cache.get(&during).is_none())
                .await,
            "{fault:?}: b still serves the value invalidated during the fault"
        );
        assert_eq!(
            fault_matrix::load(&b.cache, &during).await,
            Ok(Source::Loader),
            "{fault:?}: L2 still held the value invalidated during the fault"
        );
    }
    if part == Part::Backplane && matches!(fault, Fault::Killed | Fault::Restarted) {
        assert!(
            b.cache.stats().backplane_resyncs > resyncs,
            "the subscription's gap dropped the other replica's L1"
        );
    }
    drop(server);
}

macro_rules! standalone_cells {
    ($($name:ident: $part:ident, $fault:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            standalone_cell(Part::$part, Fault::$fault).await;
        }
    )*};
}

standalone_cells! {
    l2_get_through_redis_killed: L2Get, Killed;
    l2_get_through_redis_paused: L2Get, Paused;
    l2_get_through_redis_blackholed: L2Get, Blackholed;
    l2_get_through_redis_slow: L2Get, Slow;
    l2_get_through_redis_restarted: L2Get, Restarted;
    backplane_through_redis_killed: Backplane, Killed;
    backplane_through_redis_paused: Backplane, Paused;
    backplane_through_redis_blackholed: Backplane, Blackholed;
    backplane_through_redis_slow: Backplane, Slow;
    backplane_through_redis_restarted: Backplane, Restarted;
    limiter_through_redis_killed: Limiter, Killed;
    limiter_through_redis_paused: Limiter, Paused;
    limiter_through_redis_blackholed: Limiter, Blackholed;
    limiter_through_redis_slow: Limiter, Slow;
    limiter_through_redis_restarted: Limiter, Restarted;
    quota_through_redis_killed: Quota, Killed;
    quota_through_redis_paused: Quota, Paused;
    quota_through_redis_blackholed: Quota, Blackholed;
    quota_through_redis_slow: Quota, Slow;
    quota_through_redis_restarted: Quota, Restarted;
}

/// The limiter's policy decides what a caller sees while Redis is down:
/// `Local` answered every call above; `FailClosed` refuses, as it says.
#[tokio::test]
async fn a_fail_closed_limiter_refuses_while_redis_is_down_and_decides_again_after() {
    use levee::limit::{OnRedisError, Quota, RateLimiter, RedisSlidingWindow};
    let mut server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let client = RedisClient::standalone(server.url())
        .clock(clock.shared())
        .command_timeout(TIMEOUT)
        .build()
        .unwrap();
    let limiter = RedisSlidingWindow::builder(
        client.clone(),
        Quota::new(9, Duration::from_secs(3600)).unwrap(),
    )
    .clock(clock.shared())
    .on_redis_error(OnRedisError::FailClosed)
    .build()
    .unwrap();
    assert!(limiter.check("u").await.unwrap().allowed);
    server.kill();
    for _ in 0..10 {
        let refused = match limiter.check("u").await {
            Ok(d) => !d.allowed,
            Err(_) => true,
        };
        assert!(refused, "FailClosed refuses while Redis is down");
    }
    server.restart().unwrap();
    clock.advance(OPEN_PERIOD + Duration::from_millis(1));
    assert!(
        limiter.check("u2").await.is_ok_and(|d| d.allowed),
        "the first probe after the restart is decided by Redis"
    );
}

#[cfg(feature = "cluster")]
mod cluster {
    use super::fault_matrix::works;
    use super::*;
    use levee_testkit::RedisCluster;

    fn replicas(
        urls: &[String],
        clock: &ManualClock,
        timeout: Duration,
    ) -> [fault_matrix::Replica; 2] {
        ["a", "b"].map(|name| {
            replica(
                RedisClient::cluster(urls.to_vec()).name(name),
                clock,
                "c",
                timeout,
            )
        })
    }

    /// The master serving the `{hot}` slot fails over to its replica while
    /// replica `a` keeps calling on that slot.
    async fn failover_cell(part: Part) {
        let cluster = tokio::task::spawn_blocking(|| RedisCluster::start_with_replicas(3, 1))
            .await
            .unwrap()
            .unwrap();
        let clock = ManualClock::new();
        let [a, b] = replicas(&cluster.urls(), &clock, TIMEOUT);
        assert!(
            recover(part, &a, &b, &clock, Duration::from_secs(10))
                .await
                .is_some()
        );
        // The backplane's subscription lives on the first node: fail that
        // one over, so the subscription has to move.
        let victim = match part {
            Part::Backplane => 0,
            _ => cluster.master_of(b"hot").unwrap(),
        };
        assert!(cluster.masters().unwrap().contains(&victim));
        let resyncs = b.cache.stats().backplane_resyncs;
        let mut cluster = cluster;
        let began = std::time::Instant::now();
        let failing = tokio::task::spawn_blocking(move || {
            let promoted = cluster.fail_over(victim);
            (cluster, promoted)
        });
        let mut t = Tally::default();
        let mut i = 0;
        while !failing.is_finished() {
            t.call(part, &a, &key(part, i, true)).await;
            i += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (cluster, promoted) = failing.await.unwrap();
        eprintln!("FAILOVER {part:?}: kill to promotion {:?}", began.elapsed());
        let promoted = promoted.unwrap();
        let masters = cluster.masters().unwrap();
        assert!(masters.contains(&promoted) && !masters.contains(&victim));
        let recovery = recover(part, &a, &b, &clock, Duration::from_secs(20)).await;
        report(part, "Cluster master failed over", &t, recovery);
        assert_eq!(t.errors, 0, "{part:?}: errors reached callers: {t:?}");
        assert_eq!(
            t.attempts_while_open, 0,
            "{part:?}: waited while open: {t:?}"
        );
        assert!(
            matches!(recovery, Some((_, 0 | 1))),
            "{part:?}: one open period after the promotion, the part works again: {recovery:?}"
        );
        if part == Part::Backplane {
            assert!(
                b.cache.stats().backplane_resyncs > resyncs,
                "the subscription moved to a live node and the gap dropped L1"
            );
        }
    }

    /// The `{hot}` slot moves to another master (IMPORTING/MIGRATING,
    /// MIGRATE, SETSLOT NODE, with pauses between the steps) while replica
    /// `a` keeps calling on it: MOVED and ASK are followed, no caller sees
    /// an error and no command fails.
    async fn migration_cell(part: Part) {
        let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3))
            .await
            .unwrap()
            .unwrap();
        let clock = ManualClock::new();
        let [a, b] = replicas(&cluster.urls(), &clock, Duration::from_millis(500));
        assert!(
            recover(part, &a, &b, &clock, Duration::from_secs(10))
                .await
                .is_some()
        );
        for i in 0..5 {
            fault_matrix::call(part, &a, &key(part, i, true))
                .await
                .unwrap();
        }
        let slot = cluster.slot_of(b"hot").unwrap();
        let from = cluster.owner_of_slot(slot).unwrap();
        let to = cluster.master_other_than(from).unwrap();
        let before = a.client.stats();
        let moving = tokio::task::spawn_blocking(move || {
            let pause = || std::thread::sleep(Duration::from_millis(300));
            cluster.begin_slot_migration(slot, to).unwrap();
            pause();
            let moved = cluster.move_slot_keys(slot, from, to).unwrap();
            pause();
            cluster.finish_slot_migration(slot, to).unwrap();
            pause();
            (cluster, moved)
        });
        let mut t = Tally::default();
        let mut i = 0;
        while !moving.is_finished() {
            t.call(part, &a, &key(part, i, true)).await;
            i += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (cluster, _moved) = moving.await.unwrap();
        assert_eq!(cluster.owner_of_slot(slot).unwrap(), to);
        let after = a.client.stats();
        let works_after = works(part, &a, &b, 1_000).await;
        fault_matrix::row(
            part,
            "Cluster slot migrated under traffic",
            &t,
            if works_after {
                "works on the new master"
            } else {
                "broken"
            },
        );
        assert_eq!(t.errors, 0, "{part:?}: errors reached callers: {t:?}");
        assert_eq!(
            (after.timeouts, after.unreachable),
            (before.timeouts, before.unreachable),
            "{part:?}: MOVED/ASK were followed without a failed command"
        );
        assert!(!t.opened);
        assert!(works_after, "{part:?} works on the slot's new master");
    }

    macro_rules! cluster_cells {
        ($($failover:ident, $migration:ident: $part:ident;)*) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $failover() {
                failover_cell(Part::$part).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $migration() {
                migration_cell(Part::$part).await;
            }
        )*};
    }

    cluster_cells! {
        l2_get_through_a_failover, l2_get_through_a_slot_migration: L2Get;
        backplane_through_a_failover, backplane_through_a_slot_migration: Backplane;
        limiter_through_a_failover, limiter_through_a_slot_migration: Limiter;
        quota_through_a_failover, quota_through_a_slot_migration: Quota;
    }

    /// Every node behind a proxy that delays new connections by 200 ms, and
    /// 50 ms command timeouts: the client connects (the connect goes on in
    /// the background past a command's timeout) and then serves every part
    /// without a timeout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cluster_behind_slow_connects_with_50ms_timeouts_connects_and_serves() {
        let cluster = RedisCluster::start_proxied(3, 0).await.unwrap();
        cluster.set_fault(FaultMode::DelayConnect(Duration::from_millis(200)));
        let clock = ManualClock::new();
        let [a, b] = replicas(&cluster.urls(), &clock, Duration::from_millis(50));
        for part in Part::ALL {
            let recovery = recover(part, &a, &b, &clock, Duration::from_secs(20)).await;
            report(
                part,
                "Cluster, 200 ms connects, 50 ms timeouts",
                &Tally::default(),
                recovery,
            );
            assert!(recovery.is_some(), "{part:?} never served");
        }
        let before = a.client.stats();
        for part in Part::ALL {
            for i in 0..20 {
                fault_matrix::call(part, &a, &key(part, i, false))
                    .await
                    .unwrap();
            }
        }
        let after = a.client.stats();
        assert_eq!(after.timeouts, before.timeouts, "served without a timeout");
        assert!(after.successes >= before.successes + 80);
    }
}
