//! The batch tests with a Redis L2: round trips counted on the test's own
//! servers (`INFO commandstats`) and by the client; replicas sharing L2;
//! the load lock; the same on a 3-node Cluster under feature `cluster`.

use super::*;
use levee_cache::RedisL2;
use levee_redis::{RedisClient, RedisClientBuilder};
use levee_testkit::RedisServer;

fn builder(urls: &[String]) -> RedisClientBuilder {
    #[cfg(feature = "cluster")]
    if urls.len() > 1 {
        return RedisClient::cluster(urls.to_vec());
    }
    assert_eq!(urls.len(), 1, "Cluster tests need the `cluster` feature");
    RedisClient::standalone(urls[0].clone())
}

fn l2(urls: &[String], clock: &ManualClock) -> RedisL2 {
    RedisL2::builder(builder(urls).clock(clock.shared()).build().unwrap())
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap()
}

fn replica(l2: RedisL2, clock: &ManualClock) -> Cache {
    TieredCache::builder("t")
        .ttl(Duration::from_secs(60))
        .stale_tiers([("secondary", Duration::from_secs(3600))])
        .failure_backoff(Duration::from_millis(1))
        .backplane(false)
        .l2(l2)
        .clock(clock.shared())
        .build()
        .unwrap()
}

async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn reset_command_stats(urls: &[String]) {
    for url in urls {
        let () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async(&mut raw(url).await)
            .await
            .unwrap();
    }
}

/// Calls of `command` on all of `urls` since the last reset.
async fn command_calls(urls: &[String], command: &str) -> u64 {
    let mut total = 0;
    for url in urls {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut raw(url).await)
            .await
            .unwrap();
        let prefix = format!("cmdstat_{command}:calls=");
        total += info
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse::<u64>().unwrap());
    }
    total
}

/// 100 keys: 50 in this replica's L1, 30 only on L2 (written by another
/// replica), 20 nowhere. `mgets`: the `MGET`s the servers should see for
/// the 50 L1 misses (1 standalone; one per slot on a Cluster, where the
/// driver splits the one call).
async fn hundred_keys_take_one_mget_and_one_load(
    urls: &[String],
    mgets: impl Fn(&[String]) -> u64,
) {
    let clock = ManualClock::new();
    let l2a = l2(urls, &clock);
    let a = replica(l2a.clone(), &clock);
    let b = replica(l2(urls, &clock), &clock);
    let ks = keys(0..100);
    for k in &ks[..50] {
        a.insert(k.clone(), format!("l1-{k}")).await;
    }
    for k in &ks[50..80] {
        b.insert(k.clone(), format!("l2-{k}")).await;
    }
    reset_command_stats(urls).await;
    let sent_before = l2a.client().stats().attempts;
    let up = Upstream::new();
    let got = a.get_or_load_many(ks.clone(), up.loader()).await;
    until_written(&a, 50 + 20).await;
    let sent = l2a.client().stats().attempts - sent_before;

    for (i, (k, g)) in ks.iter().zip(&got).enumerate() {
        let want = match i {
            0..50 => (format!("l1-{k}"), Source::L1),
            50..80 => (format!("l2-{k}"), Source::L2),
            _ => (format!("v-{k}"), Source::Loader),
        };
        assert_eq!(
            value(g),
            (want.0.as_str(), want.1, &Freshness::Fresh),
            "key {i}"
        );
    }
    let calls = up.calls();
    assert_eq!(calls.len(), 1, "one batch loader call");
    let mut asked = calls[0].clone();
    asked.sort();
    let mut missing = ks[80..].to_vec();
    missing.sort();
    assert_eq!(asked, missing, "exactly the 20 keys held nowhere");
    assert_eq!(command_calls(urls, "mget").await, mgets(&ks[50..]));
    assert_eq!(command_calls(urls, "get").await, 0, "no single GET");
    assert_eq!(command_calls(urls, "set").await, 20, "the 20 write-backs");
    if urls.len() == 1 {
        assert_eq!(
            sent, 2,
            "two round trips: the MGET and one pipeline of 20 SETs"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_keys_50_in_l1_30_in_l2_take_one_mget_and_one_load_of_the_20_others() {
    let server = RedisServer::start().unwrap();
    hundred_keys_take_one_mget_and_one_load(&[server.url()], |_| 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_many_reads_l1_then_one_mget_and_never_loads() {
    let server = RedisServer::start().unwrap();
    let urls = [server.url()];
    let clock = ManualClock::new();
    let (a, b) = (
        replica(l2(&urls, &clock), &clock),
        replica(l2(&urls, &clock), &clock),
    );
    a.insert("in-l1".to_string(), "1".to_string()).await;
    b.insert("in-l2".to_string(), "2".to_string()).await;
    reset_command_stats(&urls).await;
    let ks = ["in-l1", "in-l2", "nowhere"].map(String::from);
    let got = a.get_many(&ks).await;
    let found: Vec<_> = got
        .iter()
        .map(|g| g.as_ref().map(|c| (c.value.as_str(), c.source)))
        .collect();
    assert_eq!(
        found,
        [Some(("1", Source::L1)), Some(("2", Source::L2)), None]
    );
    assert_eq!(command_calls(&urls, "mget").await, 1);
    assert_eq!(
        a.get(&"in-l2".to_string()).map(|c| c.source),
        Some(Source::L1),
        "promoted to L1"
    );
}

async fn stale_on_l2(urls: &[String]) {
    let clock = ManualClock::new();
    let cache = replica(l2(urls, &clock), &clock);
    stale_for_failed_keys_fresh_for_the_others(&cache, &clock).await;
    panic_fails_every_key_then_loads_again(&cache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_l2_failed_keys_serve_stale_and_a_panic_fails_the_batch_once() {
    let server = RedisServer::start().unwrap();
    stale_on_l2(&[server.url()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_l2_value_serves_a_failed_key_of_a_fresh_replica_as_l2() {
    let server = RedisServer::start().unwrap();
    let urls = [server.url()];
    let clock = ManualClock::new();
    let a = replica(l2(&urls, &clock), &clock);
    let up = Upstream::new();
    a.get_or_load_many(keys(0..2), up.loader()).await;
    until_written(&a, 2).await;
    clock.advance(Duration::from_secs(90));
    let b = replica(l2(&urls, &clock), &clock);
    up.fail_all.store(true, Ordering::SeqCst);
    let got = b.get_or_load_many(keys(0..2), up.loader()).await;
    for g in &got {
        let (_, source, freshness) = value(g);
        assert_eq!(source, Source::L2);
        assert!(freshness.is_stale());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_is_loaded_twice_under_1000_mixed_callers_with_l2() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    mixed_callers_load_no_key_twice(&replica(l2(&[server.url()], &clock), &clock)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_locked_by_another_replica_are_waited_for_and_the_rest_loaded() {
    let server = RedisServer::start().unwrap();
    let urls = [server.url()];
    let clock = ManualClock::new();
    let locked = || {
        TieredCache::<String, String>::builder("t")
            .l2(l2(&urls, &clock))
            .load_lock(Duration::from_secs(5))
            .load_lock_poll(Duration::from_millis(10))
            .backplane(false)
            .clock(clock.shared())
            .build()
            .unwrap()
    };
    let (a, b) = (locked(), locked());
    // Replica A loads user-1 slowly, holding its lock.
    let (open, mut opened) = tokio::sync::watch::channel(false);
    let (started_tx, started) = tokio::sync::oneshot::channel();
    let leader = tokio::spawn(async move {
        a.get_or_load("user-1".to_string(), move || async move {
            let _ = started_tx.send(());
            let _ = opened.wait_for(|o| *o).await;
            Ok::<_, String>(Loaded::Value("from-a".to_string()))
        })
        .await
    });
    started.await.unwrap();
    let up = Upstream::new();
    let batch = tokio::spawn({
        let up = up.clone();
        async move { b.get_or_load_many(keys(0..3), up.loader()).await }
    });
    while up.calls().is_empty() {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    open.send_replace(true);
    let got = batch.await.unwrap();
    assert_eq!(value(&got[1]), ("from-a", Source::L2, &Freshness::Fresh));
    assert_eq!(value(&got[0]).1, Source::Loader);
    assert_eq!(
        up.calls(),
        [vec!["user-0".to_string(), "user-2".to_string()]]
    );
    leader.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_envelopes_written_by_a_batch_are_read_by_a_batch() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let signed = || {
        let l2 = RedisL2::builder(
            builder(&[server.url()])
                .clock(clock.shared())
                .build()
                .unwrap(),
        )
        .signing_key(b"secret".as_slice())
        .build()
        .unwrap();
        replica(l2, &clock)
    };
    let (a, b) = (signed(), signed());
    let up = Upstream::new();
    a.get_or_load_many(keys(0..5), up.loader()).await;
    until_written(&a, 5).await;
    let got = b.get_or_load_many(keys(0..5), up.loader()).await;
    assert!(got.iter().all(|g| value(g).1 == Source::L2), "{got:?}");
    assert_eq!(up.calls().len(), 1);
}

#[cfg(feature = "cluster")]
mod cluster {
    use super::*;

    fn slots(ks: &[String]) -> u64 {
        let space = levee_redis::Keyspace::new(["levee", "t", "v1"]);
        let slots: HashSet<_> = ks
            .iter()
            .map(|k| redis::cluster_routing::Slot::for_key(space.key(k.as_str())))
            .collect();
        slots.len() as u64
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_a_cluster_hundred_keys_take_one_mget_call_and_one_load() {
        let cluster = levee_testkit::RedisCluster::start(3).unwrap();
        hundred_keys_take_one_mget_and_one_load(&cluster.urls(), slots).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_a_cluster_failed_keys_serve_stale_and_a_panic_fails_the_batch_once() {
        let cluster = levee_testkit::RedisCluster::start(3).unwrap();
        stale_on_l2(&cluster.urls()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_a_cluster_no_key_is_loaded_twice_under_1000_mixed_callers() {
        let cluster = levee_testkit::RedisCluster::start(3).unwrap();
        let clock = ManualClock::new();
        mixed_callers_load_no_key_twice(&replica(l2(&cluster.urls(), &clock), &clock)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidate_right_after_a_batch_keeps_its_value_out_of_l2() {
    let server = RedisServer::start().unwrap();
    let urls = [server.url()];
    let clock = ManualClock::new();
    let a = replica(l2(&urls, &clock), &clock);
    let mut conn = raw(&urls[0]).await;
    let up = Upstream::new();
    for round in 0..20 {
        let ks = keys(round * 10..round * 10 + 10);
        a.get_or_load_many(ks.clone(), up.loader()).await;
        // The batch answered; its write-back may still be on its way.
        for k in &ks {
            a.invalidate(k).await;
        }
        // Redis itself, not a replica (whose L1 would keep what it read
        // in the moment between the write and its undoing).
        let redis_keys: Vec<String> = ks.iter().map(|k| format!("levee:t:v1:{k}")).collect();
        let mut left = 1;
        for _ in 0..200 {
            left = redis::cmd("EXISTS")
                .arg(&redis_keys)
                .query_async::<u64>(&mut conn)
                .await
                .unwrap();
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(left, 0, "round {round}: values left on L2");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_caller_dropped_during_its_mget_hands_its_keys_to_a_task() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let a = replica(l2(&[server.url()], &clock), &clock);
    let up = Upstream::new();
    // Connect first, then stop Redis: the batch's MGET hangs on the
    // caller's task.
    a.get_many(&keys(100..101)).await;
    server.pause();
    let batch = tokio::spawn({
        let (a, up) = (a.clone(), up.clone());
        async move { a.get_or_load_many(keys(0..3), up.loader()).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let joiner = tokio::spawn({
        let a = a.clone();
        async move {
            a.get_or_load("user-1".to_string(), || async {
                Ok::<_, String>(Loaded::Value("single".to_string()))
            })
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    batch.abort();
    assert!(batch.await.unwrap_err().is_cancelled());
    assert!(up.calls().is_empty(), "still reading L2 when dropped");
    server.resume();
    let got = tokio::time::timeout(Duration::from_secs(5), joiner)
        .await
        .expect("the joiner was not stranded")
        .unwrap();
    assert_eq!(value(&got), ("v-user-1", Source::Loader, &Freshness::Fresh));
    assert_eq!(up.calls().len(), 1, "the batch went on on a task");
}
