//! TieredCache with a Redis L2, against real redis-server processes from
//! levee-testkit: replicas sharing L2, the backplane, bad bytes in Redis,
//! Redis killed and blackholed, keys of secrets.
#![cfg(feature = "redis")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use levee_breaker::State;
use levee_cache::{Freshness, Loaded, RedisL2, Source, TieredCache};
use levee_core::{KeyHasher, ManualClock};
use levee_redis::{RedisClient, RedisClientBuilder};
use levee_testkit::{FaultMode, FaultProxy, RedisServer, RedisServerOptions};

type Cache = TieredCache<String, String>;

fn builder(urls: &[String]) -> RedisClientBuilder {
    #[cfg(feature = "cluster")]
    if urls.len() > 1 {
        return RedisClient::cluster(urls.to_vec());
    }
    assert_eq!(urls.len(), 1, "Cluster tests need the `cluster` feature");
    RedisClient::standalone(urls[0].clone())
}

/// A client whose breaker runs on `clock`.
fn client(urls: &[String], clock: &ManualClock) -> RedisClient {
    builder(urls).clock(clock.shared()).build().unwrap()
}

/// A plain driver connection, to look at Redis behind levee's back.
async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

fn l2(urls: &[String], clock: &ManualClock) -> RedisL2 {
    l2_on(builder(urls), clock)
}

fn l2_on(builder: RedisClientBuilder, clock: &ManualClock) -> RedisL2 {
    RedisL2::builder(builder.clock(clock.shared()).build().unwrap())
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap()
}

fn replica(l2: RedisL2, clock: &ManualClock) -> Cache {
    TieredCache::builder("t")
        .ttl(Duration::from_secs(60))
        .stale_tiers([("secondary", Duration::from_secs(3600))])
        .failure_backoff(Duration::from_millis(1))
        .l2(l2)
        .clock(clock.shared())
        .build()
        .unwrap()
}

async fn get(
    cache: &Cache,
    key: &str,
    calls: &Arc<AtomicU32>,
    value: &str,
) -> levee_cache::Cached<String> {
    let (calls, value) = (calls.clone(), value.to_string());
    cache
        .get_or_load(key.to_string(), move || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(Loaded::Value(value))
        })
        .await
        .unwrap()
        .unwrap()
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..400 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for: {what}");
}

async fn replicas_share_l2_and_invalidate_each_other(builder: impl Fn() -> RedisClientBuilder) {
    let clock = ManualClock::new();
    let a = replica(l2_on(builder(), &clock), &clock);
    let b = replica(l2_on(builder(), &clock), &clock);
    until("both subscribed", || {
        a.stats().backplane_subscribed && b.stats().backplane_subscribed
    })
    .await;
    let calls = Arc::new(AtomicU32::new(0));
    assert_eq!(get(&a, "k", &calls, "v1").await.source, Source::Loader);
    clock.advance(Duration::from_secs(20));
    let from_b = get(&b, "k", &calls, "unused").await;
    assert_eq!(
        (from_b.value.as_str(), from_b.source, &from_b.freshness),
        ("v1", Source::L2, &Freshness::Fresh)
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the second replica did not load"
    );
    assert_eq!(
        get(&b, "k", &calls, "unused").await.source,
        Source::L1,
        "promoted"
    );
    // Promoted with the times it was stored with: it expires when A's does.
    clock.advance(Duration::from_secs(41));
    assert!(
        b.get(&"k".to_string()).is_none(),
        "stale at 61 s after the load"
    );

    let key = "k2".to_string();
    get(&a, &key, &calls, "w1").await;
    get(&b, &key, &calls, "unused").await;
    assert!(b.get(&key).is_some());
    a.invalidate(&key).await;
    until("B dropped its copy", || b.get(&key).is_none()).await;
    assert_eq!(b.stats().backplane_invalidations, 1);
    assert_eq!(
        get(&b, &key, &calls, "w2").await.source,
        Source::Loader,
        "L2 was cleared too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_l2_and_invalidate_each_other_standalone() {
    let server = RedisServer::start().unwrap();
    replicas_share_l2_and_invalidate_each_other(|| RedisClient::standalone(server.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_l2_and_invalidate_each_other_with_auth() {
    let server =
        RedisServer::start_with(RedisServerOptions::default().password("l2-secret")).unwrap();
    replicas_share_l2_and_invalidate_each_other(|| RedisClient::standalone(server.url())).await;
    let refused = RedisClient::standalone(format!("redis://:wrong@{}", server.addr()));
    let cache = replica(l2_on(refused, &ManualClock::new()), &ManualClock::new());
    let calls = Arc::new(AtomicU32::new(0));
    assert_eq!(
        get(&cache, "k", &calls, "v").await.value,
        "v",
        "loaded without L2"
    );
    let stats = cache.stats().l2.unwrap();
    assert_eq!(
        stats.hits + stats.writes,
        0,
        "a wrong password gets nothing from Redis: {stats:?}"
    );
}

#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_l2_and_invalidate_each_other_over_tls() {
    let server =
        RedisServer::start_with(RedisServerOptions::default().tls().password("tls-secret"))
            .unwrap();
    assert!(server.url().starts_with("rediss://"));
    let ca = server.ca_cert_pem().expect("a TLS server has a CA");
    replicas_share_l2_and_invalidate_each_other(|| {
        RedisClient::standalone(server.url()).tls_root_cert_pem(ca.clone())
    })
    .await;
}

#[cfg(feature = "cluster")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_l2_and_invalidate_each_other_on_a_cluster() {
    let cluster = levee_testkit::RedisCluster::start(3).unwrap();
    replicas_share_l2_and_invalidate_each_other(|| RedisClient::cluster(cluster.urls())).await;
}

#[tokio::test]
async fn freshness_comes_from_the_envelope_and_the_clock_not_redis_ttl() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let a = replica(l2(&[server.url()], &clock), &clock);
    let calls = Arc::new(AtomicU32::new(0));
    get(&a, "k", &calls, "v1").await;
    // Past the fresh TTL on the injected clock (Redis still holds the key).
    clock.advance(Duration::from_secs(90));
    let b = replica(l2(&[server.url()], &clock), &clock);
    let failing = |c: &Arc<AtomicU32>| {
        let c = c.clone();
        move || async move {
            c.fetch_add(1, Ordering::SeqCst);
            Err::<Loaded<String>, _>("upstream down".to_string())
        }
    };
    let got = b
        .get_or_load("k".to_string(), failing(&calls))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "stale on L2: a load was tried"
    );
    assert_eq!(got.value, "v1");
    assert_eq!(
        got.freshness,
        Freshness::Stale {
            tier: "secondary".into(),
            age: Duration::from_secs(30)
        }
    );
}

#[tokio::test]
async fn bad_bytes_in_redis_are_a_miss_and_a_count_never_a_panic() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let raw = raw(&server.url()).await;
    let signed = RedisL2::builder(client(&[server.url()], &clock))
        .signing_key(b"secret")
        .build()
        .unwrap();
    let cache = replica(signed.clone(), &clock);
    let calls = Arc::new(AtomicU32::new(0));
    let json_v9 = br#"{"levee":9,"written_at":1}"#.to_vec();
    let cases: [(&str, Vec<u8>); 3] = [
        ("corrupt", b"\x00\xffnot an envelope".to_vec()),
        ("unknown_version", json_v9),
        (
            "tampered",
            b"forged value with a 32-byte tag: 0123456789abcdef0123".to_vec(),
        ),
    ];
    for (i, (name, bytes)) in cases.into_iter().enumerate() {
        let key = format!("k{i}");
        let _: () = redis::cmd("SET")
            .arg(format!("levee:t:v1:{key}"))
            .arg(bytes)
            .query_async(&mut raw.clone())
            .await
            .unwrap();
        let got = get(&cache, &key, &calls, "loaded").await;
        assert_eq!(
            (got.value.as_str(), got.source),
            ("loaded", Source::Loader),
            "{name}"
        );
    }
    let stats = signed.stats();
    assert_eq!(
        stats.bad_signature, 3,
        "unsigned bytes fail the MAC first: {stats:?}"
    );
    // Without signing, the same bytes are told apart.
    let plain = RedisL2::builder(client(&[server.url()], &clock))
        .build()
        .unwrap();
    let cache = replica(plain.clone(), &clock);
    for (i, bytes) in [b"garbage".to_vec(), br#"{"levee":9}"#.to_vec()]
        .into_iter()
        .enumerate()
    {
        let _: () = redis::cmd("SET")
            .arg(format!("levee:t:v1:p{i}"))
            .arg(bytes)
            .query_async(&mut raw.clone())
            .await
            .unwrap();
        get(&cache, &format!("p{i}"), &calls, "loaded").await;
    }
    let stats = plain.stats();
    assert_eq!((stats.corrupt, stats.unknown_version), (1, 1), "{stats:?}");
}

#[tokio::test]
async fn a_signed_value_is_read_back_by_a_replica_with_the_key_only() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let with_key = |secret: &[u8]| {
        RedisL2::builder(client(&[server.url()], &clock))
            .signing_key(secret)
            .build()
            .unwrap()
    };
    let calls = Arc::new(AtomicU32::new(0));
    let a = replica(with_key(b"secret"), &clock);
    get(&a, "k", &calls, "v").await;
    let b = replica(with_key(b"secret"), &clock);
    assert_eq!(get(&b, "k", &calls, "unused").await.source, Source::L2);
    let other = with_key(b"another secret");
    let c = replica(other.clone(), &clock);
    assert_eq!(get(&c, "k", &calls, "v").await.source, Source::Loader);
    assert_eq!(other.stats().bad_signature, 1);
}

// `Codec::Binary` is behind the `cbor` feature: without this gate
// `cargo test -p levee-cache` (default features) did not compile.
#[cfg(feature = "cbor")]
#[tokio::test]
async fn binary_codec_round_trips_through_redis() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let build = || {
        TieredCache::<u64, Vec<u32>>::builder("bin")
            .codec(levee_cache::Codec::Binary)
            .l2(l2(&[server.url()], &clock))
            .clock(clock.shared())
            .build()
            .unwrap()
    };
    let (a, b) = (build(), build());
    a.insert(7, vec![1, 2, 3]).await;
    let got = b
        .get_or_load(7, || async {
            Err::<Loaded<Vec<u32>>, _>("no load expected")
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got.value, got.source), (vec![1, 2, 3], Source::L2));
}

/// Waits (up to 5 s) for the backplane to be subscribed again after an
/// outage: it retries up to every 2 s, and then drops L1 and the writes of
/// loads in flight (it may have missed invalidations), which must not race
/// the loads a test makes next.
async fn resubscribed(cache: &Cache) {
    for _ in 0..100 {
        if cache.stats().backplane_subscribed {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// 1,000 gets while Redis is down: all answered, and once the breaker is
/// open no Redis command is sent; Redis back (and the breaker's open time
/// over) -> L2 used again, same cache.
async fn serves_through_an_outage(
    cache: &Cache,
    l2: &RedisL2,
    clock: &ManualClock,
    outage: impl FnOnce(),
    recover: impl FnOnce(),
) {
    let calls = Arc::new(AtomicU32::new(0));
    get(cache, "warm", &calls, "v").await;
    outage();
    for i in 0..1_000 {
        let key = format!("k{}", i % 50);
        assert_eq!(get(cache, &key, &calls, "v").await.value, "v");
        if i == 100 {
            assert_eq!(l2.breaker().state(), State::Open, "opened by the failures");
        }
    }
    let before = l2.stats().attempts;
    for i in 0..500 {
        get(cache, &format!("more{i}"), &calls, "v").await;
    }
    assert_eq!(
        l2.stats().attempts,
        before,
        "no Redis call while the breaker is open"
    );
    assert!(l2.stats().rejected >= 500);
    recover();
    resubscribed(cache).await;
    // The breaker's open time is on the manual clock; the first probe
    // opens a fresh connection.
    clock.advance(Duration::from_secs(6));
    let writes = l2.stats().writes;
    for i in 0..5 {
        get(cache, &format!("after{i}"), &calls, "v").await;
    }
    assert_eq!(l2.breaker().state(), State::Closed);
    assert_eq!(l2.stats().writes, writes + 5, "L2 used again");
}

#[tokio::test]
async fn redis_killed_and_restarted() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let l2 = l2(&[server.url()], &clock);
    let cache = replica(l2.clone(), &clock);
    let server = std::cell::RefCell::new(server);
    serves_through_an_outage(
        &cache,
        &l2,
        &clock,
        || server.borrow_mut().kill(),
        || server.borrow_mut().restart().unwrap(),
    )
    .await;
}

#[cfg(feature = "cluster")]
#[tokio::test]
async fn redis_cluster_killed_and_restarted() {
    let cluster = levee_testkit::RedisCluster::start(3).unwrap();
    let clock = ManualClock::new();
    let l2 = l2(&cluster.urls(), &clock);
    let cache = replica(l2.clone(), &clock);
    let cluster = std::cell::RefCell::new(cluster);
    serves_through_an_outage(
        &cache,
        &l2,
        &clock,
        || cluster.borrow_mut().kill_all(),
        || cluster.borrow_mut().restart_all().unwrap(),
    )
    .await;
}

#[tokio::test]
async fn redis_blackholed_and_back() {
    let server = RedisServer::start().unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let clock = ManualClock::new();
    let l2 = RedisL2::builder(client(&[proxy.url()], &clock))
        .timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let cache = replica(l2.clone(), &clock);
    serves_through_an_outage(
        &cache,
        &l2,
        &clock,
        || proxy.set_mode(FaultMode::Blackhole),
        || proxy.set_mode(FaultMode::Pass),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backplane_gap_drops_the_whole_l1() {
    let mut server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let cache = replica(l2(&[server.url()], &clock), &clock);
    until("subscribed", || cache.stats().backplane_subscribed).await;
    let calls = Arc::new(AtomicU32::new(0));
    get(&cache, "k", &calls, "v").await;
    server.restart().unwrap();
    until("resubscribed after the gap", || {
        cache.stats().backplane_resyncs == 1 && cache.stats().backplane_subscribed
    })
    .await;
    assert!(
        cache.get(&"k".to_string()).is_none(),
        "L1 dropped: it may have missed invalidations"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_lock_makes_one_replica_load_for_all() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let locked = || {
        TieredCache::<String, String>::builder("t")
            .l2(l2(&[server.url()], &clock))
            .load_lock(Duration::from_secs(5))
            .clock(clock.shared())
            .build()
            .unwrap()
    };
    let replicas: Vec<Cache> = (0..4).map(|_| locked()).collect();
    let calls = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for r in &replicas {
        let (r, calls) = (r.clone(), calls.clone());
        tasks.push(tokio::spawn(async move {
            r.get_or_load("k".to_string(), move || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok::<_, String>(Loaded::Value("v".to_string()))
            })
            .await
        }));
    }
    let mut sources = Vec::new();
    for t in tasks {
        let got = t.await.unwrap().unwrap().unwrap();
        assert_eq!(got.value, "v");
        sources.push(got.source);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one replica loaded: {sources:?}"
    );
    assert_eq!(sources.iter().filter(|s| **s == Source::L2).count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_replica_reads_l2_at_its_load_lock_poll() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let locked = |poll: Duration| {
        TieredCache::<String, String>::builder("t")
            .l2(l2(&[server.url()], &clock))
            .load_lock(Duration::from_secs(5))
            .load_lock_poll(poll)
            .clock(clock.shared())
            .build()
            .unwrap()
    };
    let (a, b) = (
        locked(Duration::from_millis(20)),
        locked(Duration::from_millis(400)),
    );
    let loading = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let started = loading.clone();
    let leader = tokio::spawn(async move {
        a.get_or_load("k".to_string(), move || async move {
            started.store(true, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<_, String>(Loaded::Value("v".to_string()))
        })
        .await
    });
    while !loading.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let began = std::time::Instant::now();
    let got = b
        .get_or_load("k".to_string(), || async {
            Ok::<_, String>(Loaded::Value("not loaded".to_string()))
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got.value.as_str(), got.source), ("v", Source::L2));
    // Its first look at L2 comes one poll after the lock was refused.
    assert!(
        began.elapsed() >= Duration::from_millis(390),
        "{:?}",
        began.elapsed()
    );
    leader.await.unwrap().unwrap();
}

#[tokio::test]
async fn keys_of_secrets_never_put_the_secret_in_redis() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let cache = TieredCache::<levee_core::SensitiveKey, String>::builder("userinfo")
        .l2(l2(&[server.url()], &clock))
        .clock(clock.shared())
        .build()
        .unwrap();
    let hasher = KeyHasher::new(b"a deployment secret".as_slice());
    let tokens: Vec<String> = (0..5)
        .map(|i| format!("eyJhbGciOiJSUzI1NiJ9.token-{i}"))
        .collect();
    for t in &tokens {
        cache
            .get_or_load(hasher.key(t), || async {
                Ok::<_, String>(Loaded::Value("{\"sub\":\"x\"}".into()))
            })
            .await
            .unwrap();
    }
    let mut raw = raw(&server.url()).await;
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(keys.len(), 5);
    for k in keys {
        let v: Vec<u8> = redis::cmd("GET")
            .arg(&k)
            .query_async(&mut raw)
            .await
            .unwrap();
        for t in &tokens {
            let (k, v) = (String::from_utf8_lossy(&k), String::from_utf8_lossy(&v));
            assert!(
                !k.contains(t.as_str()) && !v.contains(t.as_str()),
                "{k} {v}"
            );
            assert!(!k.contains("token-"), "{k}");
        }
    }
}

#[tokio::test]
async fn invalidate_during_a_load_keeps_its_result_out_of_l2() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let a = replica(l2(&[server.url()], &clock), &clock);
    let (release, wait) = tokio::sync::oneshot::channel::<()>();
    let (started, has_started) = tokio::sync::oneshot::channel::<()>();
    let waiter = tokio::spawn({
        let a = a.clone();
        async move {
            a.get_or_load("k".to_string(), move || async move {
                let _ = started.send(());
                let _ = wait.await;
                Ok::<_, String>(Loaded::Value("old".to_string()))
            })
            .await
        }
    });
    has_started.await.unwrap(); // the loader runs: the load is under way
    a.invalidate(&"k".to_string()).await;
    release.send(()).unwrap();
    assert_eq!(waiter.await.unwrap().unwrap().unwrap().value, "old");
    let b = replica(l2(&[server.url()], &clock), &clock);
    let calls = Arc::new(AtomicU32::new(0));
    assert_eq!(
        get(&b, "k", &calls, "new").await.source,
        Source::Loader,
        "not on L2"
    );
    assert!(a.get(&"k".to_string()).is_none(), "not on L1");
}

#[tokio::test]
async fn an_l1_copy_past_l1_ttl_is_checked_with_l2_and_kept_while_redis_is_down() {
    let mut server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let with_l1_ttl = |l2: RedisL2| {
        TieredCache::<String, String>::builder("t")
            .ttl(Duration::from_secs(60))
            .l1_ttl(Duration::from_secs(10))
            .l2(l2)
            .backplane(false)
            .clock(clock.shared())
            .build()
            .unwrap()
    };
    let (a, b) = (
        with_l1_ttl(l2(&[server.url()], &clock)),
        with_l1_ttl(l2(&[server.url()], &clock)),
    );
    let calls = Arc::new(AtomicU32::new(0));
    get(&a, "k", &calls, "v1").await;
    // B replaces the value on L2; A's L1 copy, past its l1_ttl, sees it.
    clock.advance(Duration::from_secs(11));
    b.insert("k".to_string(), "v2".to_string()).await;
    let got = get(&a, "k", &calls, "unused").await;
    assert_eq!((got.value.as_str(), got.source), ("v2", Source::L2));
    // Redis gone: the L1 copy is served for the value's whole TTL.
    server.kill();
    clock.advance(Duration::from_secs(11));
    let got = get(&a, "k", &calls, "unused").await;
    assert_eq!(
        (got.value.as_str(), got.source, got.freshness),
        ("v2", Source::L1, Freshness::Fresh)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_load_under_the_lock_hands_the_lock_to_a_waiting_replica() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let locked = || {
        TieredCache::<String, String>::builder("t")
            .l2(l2(&[server.url()], &clock))
            .load_lock(Duration::from_secs(60))
            .clock(clock.shared())
            .build()
            .unwrap()
    };
    let (a, b) = (locked(), locked());
    let a_loading = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let started = a_loading.clone();
    let failing = tokio::spawn(async move {
        a.get_or_load("k".to_string(), move || async move {
            started.store(true, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(200)).await;
            Err::<Loaded<String>, _>("upstream down".to_string())
        })
        .await
    });
    // A's loader runs only once A holds the lock.
    until("A holds the lock and loads", || {
        a_loading.load(Ordering::SeqCst)
    })
    .await;
    // B finds the lock taken and waits; when A's load fails, B takes the
    // lock and loads instead of waiting out the 60 s bound.
    let got = tokio::time::timeout(
        Duration::from_secs(20),
        b.get_or_load("k".to_string(), || async {
            Ok::<_, String>(Loaded::Value("from b".to_string()))
        }),
    )
    .await
    .expect("B waited out the lock although A had let it go")
    .unwrap()
    .unwrap();
    assert_eq!((got.value.as_str(), got.source), ("from b", Source::Loader));
    let a_got = failing.await.unwrap();
    assert_eq!(
        a_got.unwrap_err().load_error().map(String::as_str),
        Some("upstream down")
    );
}

#[tokio::test]
async fn a_stale_value_brought_from_l2_by_a_failed_load_is_labelled_l2() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let a = replica(l2(&[server.url()], &clock), &clock);
    let b = replica(l2(&[server.url()], &clock), &clock);
    let calls = Arc::new(AtomicU32::new(0));
    get(&a, "k", &calls, "v").await;
    clock.advance(Duration::from_secs(61));
    let fail = || async { Err::<Loaded<String>, _>("down".to_string()) };
    let got = b.get_or_load("k".to_string(), fail).await.unwrap().unwrap();
    assert_eq!(got.value, "v");
    assert_eq!(
        got.source,
        Source::L2,
        "B had no copy: the value came from L2"
    );
    assert!(matches!(got.freshness, Freshness::Stale { ref tier, .. } if &**tier == "secondary"));
    // Past the failure backoff, B's next failed load serves its own L1 copy.
    clock.advance(Duration::from_secs(1));
    let again = b.get_or_load("k".to_string(), fail).await.unwrap().unwrap();
    assert_eq!(again.source, Source::L1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_cache_ends_its_backplane_listener() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let cache = replica(l2(&[server.url()], &clock), &clock);
    until("subscribed", || cache.stats().backplane_subscribed).await;
    let admin = raw(&server.url()).await;
    let subscribers = || {
        let mut admin = admin.clone();
        async move {
            let (_, n): (String, i64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg("levee:t:invalidate")
                .query_async(&mut admin)
                .await
                .unwrap();
            n
        }
    };
    assert_eq!(subscribers().await, 1, "the listener is subscribed");
    drop(cache);
    for _ in 0..400 {
        if subscribers().await == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the backplane listener outlived its cache");
}

/// A leader reads L2 on its caller's task; dropped during that read, it
/// hands the load to a task, and a caller that joined still gets the value
/// (from L2 when another replica put it there, else from one load).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_dropped_during_its_l2_read_hands_the_load_on() {
    let server = RedisServer::start().unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let clock = ManualClock::new();
    let slow_l2 = RedisL2::builder(client(&[proxy.url()], &clock))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let cache = replica(slow_l2.clone(), &clock);
    let other = replica(l2(&[server.url()], &clock), &clock);
    let calls = Arc::new(AtomicU32::new(0));
    get(&other, "in-l2", &calls, "from other").await;
    // Warm the proxied connection, then slow every reply down.
    assert!(cache.get(&"warm".to_string()).is_none());
    get(&cache, "warm", &calls, "w").await;
    proxy.set_mode(FaultMode::Delay(Duration::from_millis(600)));
    for (key, want, loads) in [("in-l2", "from other", 0), ("cold", "loaded", 1)] {
        let before = calls.load(Ordering::SeqCst);
        // The client counts a call when it is sent (the L2 when it ends).
        let attempts = slow_l2.client().stats().attempts;
        let leader = {
            let (cache, calls) = (cache.clone(), calls.clone());
            tokio::spawn(async move { get(&cache, key, &calls, "loaded").await })
        };
        // The leader has registered its load and sent its (delayed) GET.
        until("the leader reads L2", || {
            slow_l2.client().stats().attempts > attempts
        })
        .await;
        let joiner = {
            let (cache, calls) = (cache.clone(), calls.clone());
            tokio::spawn(async move { get(&cache, key, &calls, "joiner's own").await })
        };
        tokio::time::sleep(Duration::from_millis(30)).await;
        leader.abort();
        assert!(leader.await.unwrap_err().is_cancelled(), "dropped mid-read");
        let got = tokio::time::timeout(Duration::from_secs(20), joiner)
            .await
            .expect("the joiner was stranded")
            .unwrap();
        assert_eq!(got.value, want, "{key}");
        assert_eq!(calls.load(Ordering::SeqCst) - before, loads, "{key}");
    }
}

/// Redis killed until the breaker opens, restarted after 2 s: once the
/// manual clock has moved one open period (5 s), the first half-open probe
/// must reach the restarted Redis and close the breaker, not be answered
/// with the error stored while Redis was down.
#[tokio::test]
async fn after_a_restart_the_first_probe_succeeds() {
    let mut server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let l2 = l2(&[server.url()], &clock);
    let cache = replica(l2.clone(), &clock);
    let calls = Arc::new(AtomicU32::new(0));
    get(&cache, "warm", &calls, "v").await;
    server.kill();
    for i in 0..10 {
        get(&cache, &format!("down{i}"), &calls, "v").await;
    }
    assert_eq!(l2.breaker().state(), State::Open, "opened by the failures");
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.restart().unwrap();
    resubscribed(&cache).await;
    clock.advance(Duration::from_secs(5));
    let writes = l2.stats().writes;
    get(&cache, "after", &calls, "v").await;
    assert_eq!(
        l2.breaker().state(),
        State::Closed,
        "the first probe after the restart succeeds"
    );
    assert_eq!(l2.stats().writes, writes + 1, "L2 used again at once");
}

/// A ConnectionManager the application already has serves as the L2's
/// connection; the backplane subscribes through `pubsub_url`, and without
/// one the cache says so at build.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_connection_manager_serves_as_l2() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let manager = || async {
        redis::Client::open(server.url())
            .unwrap()
            .get_connection_manager()
            .await
            .unwrap()
    };
    let client = RedisClient::from_connection_manager(manager().await)
        .pubsub_url(server.url())
        .clock(clock.shared())
        .build()
        .unwrap();
    let a = replica(RedisL2::builder(client).build().unwrap(), &clock);
    let b = replica(l2(&[server.url()], &clock), &clock);
    until("both subscribed", || {
        a.stats().backplane_subscribed && b.stats().backplane_subscribed
    })
    .await;
    let calls = Arc::new(AtomicU32::new(0));
    assert_eq!(get(&a, "k", &calls, "v").await.source, Source::Loader);
    assert_eq!(get(&b, "k", &calls, "unused").await.source, Source::L2);
    a.invalidate(&"k".to_string()).await;
    until("b dropped its copy", || b.get(&"k".to_string()).is_none()).await;

    let no_pubsub = RedisClient::from_connection_manager(manager().await)
        .build()
        .unwrap();
    let err = TieredCache::<String, String>::builder("t")
        .l2(RedisL2::builder(no_pubsub).build().unwrap())
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("pubsub_url"), "{err}");
}

/// A value that counts its copies.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Counted(String);

static COPIES: AtomicU32 = AtomicU32::new(0);

impl Clone for Counted {
    fn clone(&self) -> Self {
        COPIES.fetch_add(1, Ordering::SeqCst);
        Counted(self.0.clone())
    }
}

#[tokio::test]
async fn an_l2_hit_nobody_joined_copies_its_value_once() {
    let server = RedisServer::start().unwrap();
    let urls = [server.url()];
    let clock = ManualClock::new();
    let replica = || {
        TieredCache::<String, Counted>::builder("copies")
            .ttl(Duration::from_secs(60))
            .l2(l2(&urls, &clock))
            .clock(clock.shared())
            .backplane(false)
            .build()
            .unwrap()
    };
    let (writer, reader) = (replica(), replica());
    writer.insert("k".to_string(), Counted("v".into())).await;
    let before = COPIES.load(Ordering::SeqCst);
    let got = reader
        .get_or_load("k".to_string(), || async {
            Err::<Loaded<Counted>, _>("no load expected")
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got.value, got.source), (Counted("v".into()), Source::L2));
    // The caller's copy; L1 keeps the decoded value itself, and with no
    // caller waiting on the load there is nobody else to copy it for.
    assert_eq!(COPIES.load(Ordering::SeqCst) - before, 1);
}
