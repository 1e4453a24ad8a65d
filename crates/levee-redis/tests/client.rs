//! `RedisClient` against real redis-server processes: lazy connect,
//! recovery after restarts, the breaker, timeouts, slow connects, AUTH,
//! TLS, Cluster, scripts and a user's own ConnectionManager. (Moved from
//! levee-core's tests/redis_connection.rs and extended.)

use std::time::{Duration, Instant};

use levee_breaker::State;
use levee_core::ManualClock;
use levee_redis::{Command, Keyspace, RedisClient, RedisClientBuilder, Reply, Script};
use levee_testkit::{FaultMode, FaultProxy, RedisServer, RedisServerOptions};

/// A client whose breaker runs on `clock` (so a test moves through an open
/// period without sleeping).
fn client(builder: RedisClientBuilder, clock: &ManualClock) -> RedisClient {
    builder.clock(clock.shared()).build().unwrap()
}

async fn ping(client: &RedisClient) -> Result<Reply, levee_redis::RedisError> {
    client.command(&Command::new("PING")).await
}

async fn client_id(client: &RedisClient) -> i64 {
    client
        .command(&Command::new("CLIENT").arg("ID"))
        .await
        .unwrap()
        .into_int()
        .unwrap()
}

/// Kills the server until the breaker opens, restarts it after `down`,
/// moves the breaker's clock through one open period (5 s): the first
/// probe must succeed.
async fn first_probe_after_restart_succeeds(
    server: &mut RedisServer,
    c: &RedisClient,
    clock: &ManualClock,
) {
    server.kill();
    for _ in 0..3 {
        assert!(c.get(b"k").await.unwrap_err().is_transport());
    }
    assert_eq!(c.breaker().state(), State::Open);
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.restart().unwrap();
    clock.advance(Duration::from_secs(5));
    let attempts = c.stats().attempts;
    let first = c.get(b"k").await;
    assert_eq!(
        first.unwrap(),
        None,
        "the first probe reaches the restarted Redis"
    );
    assert_eq!(c.stats().attempts, attempts + 1, "it was the probe");
    assert_eq!(c.breaker().state(), State::Closed);
}

#[tokio::test]
async fn after_a_restart_the_first_probe_succeeds() {
    let mut server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let c = client(RedisClient::standalone(server.url()), &clock);
    c.set_px(b"k", b"v", Duration::from_secs(60)).await.unwrap();
    first_probe_after_restart_succeeds(&mut server, &c, &clock).await;
    assert!(c.stats().retries >= 1, "the stale connection was retried");
}

#[tokio::test]
async fn a_users_connection_manager_recovers_on_the_first_probe_too() {
    let mut server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    // Few reconnect retries, as `from_connection_manager` advises: while a
    // manager's own reconnect backs off, commands wait on it.
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(200));
    let manager = redis::Client::open(server.url())
        .unwrap()
        .get_connection_manager_with_config(config)
        .await
        .unwrap();
    let c = client(
        RedisClient::from_connection_manager(manager).command_timeout(Duration::from_millis(500)),
        &clock,
    );
    assert_eq!(c.get(b"k").await.unwrap(), None);
    first_probe_after_restart_succeeds(&mut server, &c, &clock).await;
}

#[tokio::test]
async fn while_the_breaker_is_open_no_call_reaches_redis() {
    let mut server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let c = client(RedisClient::standalone(server.url()), &clock);
    server.kill();
    for _ in 0..3 {
        assert!(c.get(b"k").await.unwrap_err().is_transport());
    }
    let attempts = c.stats().attempts;
    for _ in 0..100 {
        let err = c.get(b"k").await.unwrap_err();
        assert!(err.is_breaker_open(), "{err}");
    }
    assert_eq!(c.stats().attempts, attempts, "no call went to Redis");
    assert_eq!(c.stats().rejected, 100);
}

#[tokio::test]
async fn get_in_reads_the_key_that_keyspace_key_names() {
    let server = RedisServer::start().unwrap();
    let c = RedisClient::standalone(server.url()).build().unwrap();
    let space = Keyspace::new(["levee", "users", "v1"]);
    for (i, k) in ["user-1", "", "ü:{tag}", &"k".repeat(5000)]
        .iter()
        .enumerate()
    {
        let value = format!("value {i}");
        c.set_px(&space.key(*k), value.as_bytes(), Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            c.get_in(&space, *k).await.unwrap(),
            Some(value.into_bytes())
        );
    }
    assert_eq!(c.get_in(&space, "absent").await.unwrap(), None);
}

#[tokio::test]
async fn connect_while_redis_is_down_then_works_once_it_starts() {
    let mut server = RedisServer::start().unwrap();
    let url = server.url();
    server.kill();
    let clock = ManualClock::new();
    let c = client(
        RedisClient::standalone(&url)
            .connect_timeout(Duration::from_millis(200))
            .command_timeout(Duration::from_millis(200)),
        &clock,
    );
    let started = Instant::now();
    assert!(ping(&c).await.unwrap_err().is_unreachable());
    // A generous bound: a down Redis must fail the call, not hang it.
    assert!(started.elapsed() < Duration::from_secs(3));
    server.restart().unwrap();
    assert_eq!(ping(&c).await.unwrap(), Reply::Status("PONG".into()));
}

#[tokio::test]
async fn paused_redis_gives_timeouts_then_recovers_after_resume() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let c = client(
        RedisClient::standalone(server.url()).command_timeout(Duration::from_millis(100)),
        &clock,
    );
    ping(&c).await.unwrap();
    server.pause();
    for _ in 0..3 {
        let err = ping(&c).await.unwrap_err();
        assert!(err.is_timeout(), "expected a timeout, got {err}");
    }
    assert_eq!(c.breaker().state(), State::Open, "timeouts count");
    server.resume();
    clock.advance(Duration::from_secs(5));
    ping(&c).await.unwrap();
}

/// A client (50 ms command timeout) through a proxy that is then set to
/// `mode` and made to time out 3 times, which opens the breaker. Returns
/// what the test needs, and the connection's client id from before.
async fn three_timeouts_through(
    mode: FaultMode,
) -> (RedisServer, FaultProxy, ManualClock, RedisClient, i64) {
    let server = RedisServer::start().unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let clock = ManualClock::new();
    let c = client(
        RedisClient::standalone(proxy.url()).command_timeout(Duration::from_millis(50)),
        &clock,
    );
    let before = client_id(&c).await;
    proxy.set_mode(mode);
    for _ in 0..3 {
        assert!(ping(&c).await.unwrap_err().is_timeout());
    }
    assert_eq!(c.breaker().state(), State::Open);
    (server, proxy, clock, c, before)
}

/// A burst of slow replies (each past the timeout) must not reopen the
/// connection: a multiplexed connection stays in step.
#[tokio::test]
async fn a_burst_of_slow_replies_keeps_the_connection() {
    let (_server, proxy, clock, c, before) =
        three_timeouts_through(FaultMode::Delay(Duration::from_millis(150))).await;
    proxy.set_mode(FaultMode::Pass);
    // Let the late replies arrive (and be discarded), then close the
    // breaker with a probe.
    tokio::time::sleep(Duration::from_millis(400)).await;
    clock.advance(Duration::from_secs(5));
    assert_eq!(client_id(&c).await, before, "the same connection");
    assert_eq!(c.stats().connects, 1);
    assert_eq!(c.stats().connections_lost, 0);
}

/// A connect through `proxy` (which delays new connections by 200 ms)
/// under a 50 ms command timeout: the first command times out, the connect
/// goes on by itself with no caller waiting, and a later command uses it.
async fn a_slow_connect_completes(proxy: &FaultProxy, builder: RedisClientBuilder) {
    proxy.set_mode(FaultMode::DelayConnect(Duration::from_millis(200)));
    let clock = ManualClock::new();
    let c = client(
        builder
            .connect_timeout(Duration::from_secs(3))
            .command_timeout(Duration::from_millis(50)),
        &clock,
    );
    assert!(ping(&c).await.unwrap_err().is_timeout());
    for _ in 0..150 {
        if c.is_connected() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(c.is_connected(), "the connect completed on its own");
    c.set_px(b"k", b"v", Duration::from_secs(5)).await.unwrap();
    assert_eq!(c.stats().connects, 1);
}

#[tokio::test]
async fn a_connect_slower_than_the_command_timeout_still_completes() {
    let server = RedisServer::start().unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    a_slow_connect_completes(&proxy, RedisClient::standalone(proxy.url())).await;
}

#[tokio::test]
async fn error_replies_never_open_the_breaker() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let c = client(RedisClient::standalone(server.url()), &clock);
    c.command(&Command::new("LPUSH").arg("list").arg("x"))
        .await
        .unwrap();
    for _ in 0..10 {
        let err = c.get(b"list").await.unwrap_err();
        assert_eq!(err.code(), Some("WRONGTYPE"), "{err}");
        let err = c
            .eval(&Script::new("return redis.error_reply('boom')").call())
            .await
            .unwrap_err();
        assert!(err.is_server(), "{err}");
    }
    assert_eq!(c.breaker().state(), State::Closed);
    assert_eq!(c.stats().server_errors, 20);
}

#[tokio::test]
async fn scripts_run_by_sha_and_come_back_after_a_script_flush() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let c = client(RedisClient::standalone(server.url()), &clock);
    let script = Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1])");
    let incr = |n: u64| script.call().key(b"counter".as_slice()).arg(n);
    assert_eq!(c.eval(&incr(5)).await.unwrap().into_int().unwrap(), 5);
    c.command(&Command::new("SCRIPT").arg("FLUSH"))
        .await
        .unwrap();
    assert_eq!(c.eval(&incr(2)).await.unwrap().into_int().unwrap(), 7);
    assert_eq!(c.breaker().state(), State::Closed, "NOSCRIPT is no failure");
}

#[tokio::test]
async fn typed_commands_round_trip() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    let c = client(RedisClient::standalone(server.url()), &clock);
    c.set_px(b"a", b"1", Duration::from_secs(10)).await.unwrap();
    assert_eq!(c.get(b"a").await.unwrap().as_deref(), Some(&b"1"[..]));
    assert!(
        !c.set_nx_px(b"a", b"2", Duration::from_secs(10))
            .await
            .unwrap()
    );
    assert!(
        c.set_nx_px(b"b", b"2", Duration::from_secs(10))
            .await
            .unwrap()
    );
    assert_eq!(c.del(b"a").await.unwrap(), 1);
    assert_eq!(c.publish("nobody", b"x").await.unwrap(), 0);
}

#[tokio::test]
async fn auth_with_password_in_url() {
    let server =
        RedisServer::start_with(RedisServerOptions::default().password("pa55word")).unwrap();
    let clock = ManualClock::new();
    let c = client(RedisClient::standalone(server.url()), &clock);
    ping(&c).await.unwrap();
    let wrong = client(
        RedisClient::standalone(format!("redis://:nope@127.0.0.1:{}", server.port())),
        &clock,
    );
    let err = ping(&wrong).await.unwrap_err();
    assert!(
        err.is_unreachable(),
        "a wrong password fails the connect: {err}"
    );
}

/// A Cluster connection the application already has serves the client.
#[cfg(feature = "cluster")]
#[tokio::test]
async fn a_users_cluster_connection_serves_the_client() {
    let cluster = tokio::task::spawn_blocking(|| levee_testkit::RedisCluster::start(3))
        .await
        .unwrap()
        .unwrap();
    let conn = redis::cluster::ClusterClient::new(cluster.urls())
        .unwrap()
        .get_async_connection()
        .await
        .unwrap();
    let clock = ManualClock::new();
    let c = client(RedisClient::from_cluster_connection(conn), &clock);
    assert!(c.is_cluster());
    for i in 0..10u64 {
        let key = format!("theirs:{i}");
        c.set_px(key.as_bytes(), b"v", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(
            c.get(key.as_bytes()).await.unwrap().as_deref(),
            Some(&b"v"[..])
        );
    }
}

#[cfg(feature = "cluster")]
#[tokio::test]
async fn cluster_routes_keys_to_their_slots_and_tagged_keys_share_one() {
    let cluster = tokio::task::spawn_blocking(|| levee_testkit::RedisCluster::start(3))
        .await
        .unwrap()
        .unwrap();
    let clock = ManualClock::new();
    let c = client(RedisClient::cluster(cluster.urls()), &clock);
    assert!(c.is_cluster());
    for i in 0..20u64 {
        let key = format!("user:{i}");
        c.set_px(
            key.as_bytes(),
            i.to_string().as_bytes(),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        let v = c.get(key.as_bytes()).await.unwrap().unwrap();
        assert_eq!(v, i.to_string().as_bytes());
    }
    // One script, two keys: hash tags put them in one slot.
    let space = levee_redis::Keyspace::new(["t"]);
    let script = Script::new("redis.call('SET', KEYS[1], 1) return redis.call('SET', KEYS[2], 2)");
    let call = script
        .call()
        .key(space.tagged("u1"))
        .key(levee_redis::Keyspace::new(["t", "other"]).tagged("u1"));
    c.eval(&call).await.unwrap();
}

/// A Cluster handshake slower than the command timeout (the old code ran
/// it inside each command's timeout, so it never completed).
#[cfg(feature = "cluster")]
#[tokio::test]
async fn a_slow_cluster_handshake_completes_under_a_short_command_timeout() {
    let cluster = tokio::task::spawn_blocking(|| levee_testkit::RedisCluster::start(3))
        .await
        .unwrap()
        .unwrap();
    let seed: std::net::SocketAddr = cluster.urls()[0]
        .trim_start_matches("redis://")
        .parse()
        .unwrap();
    let proxy = FaultProxy::start(seed).await.unwrap();
    a_slow_connect_completes(&proxy, RedisClient::cluster([proxy.url()])).await;
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn tls_with_a_private_ca_and_auth() {
    let server =
        RedisServer::start_with(RedisServerOptions::default().tls().password("tls-pw")).unwrap();
    assert!(server.url().starts_with("rediss://"));
    let clock = ManualClock::new();
    let c = client(
        RedisClient::standalone(server.url()).tls_root_cert_pem(server.ca_cert_pem().unwrap()),
        &clock,
    );
    c.set_px(b"k", b"over tls", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        c.get(b"k").await.unwrap().as_deref(),
        Some(&b"over tls"[..])
    );
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn tls_refuses_a_server_certificate_it_does_not_trust() {
    let server = RedisServer::start_with(RedisServerOptions::default().tls()).unwrap();
    let other = RedisServer::start_with(RedisServerOptions::default().tls()).unwrap();
    let clock = ManualClock::new();
    let c = client(
        RedisClient::standalone(server.url()).tls_root_cert_pem(other.ca_cert_pem().unwrap()),
        &clock,
    );
    assert!(
        ping(&c).await.is_err(),
        "a certificate from another CA must be refused"
    );
}

/// A connection that died silently (here: blackholed) is replaced: a
/// half-open probe that times out drops it, and the next probe opens a new
/// one. Timeouts while the breaker is closed keep it (see
/// `a_burst_of_slow_replies_keeps_the_connection`).
#[tokio::test]
async fn a_probe_that_times_out_replaces_the_connection() {
    let (_server, proxy, clock, c, before) = three_timeouts_through(FaultMode::Blackhole).await;
    assert_eq!(c.stats().connections_replaced, 0, "closed: kept");
    clock.advance(Duration::from_secs(5));
    assert!(ping(&c).await.unwrap_err().is_timeout(), "the probe");
    assert_eq!(c.stats().connections_replaced, 1);
    proxy.set_mode(FaultMode::Pass);
    clock.advance(Duration::from_secs(5));
    assert_ne!(client_id(&c).await, before, "a new connection");
    assert_eq!(c.breaker().state(), State::Closed);
    assert_eq!(c.stats().connects, 2);
}

/// `MGET` answers in key order; a pipeline answers each command in order,
/// its server errors apart; both count as one call each.
async fn mget_and_pipeline_answer_in_order(c: &RedisClient) {
    let keys: Vec<Vec<u8>> = (0..40).map(|i| format!("batch:{i}").into_bytes()).collect();
    let mut pipe = levee_redis::Pipeline::new();
    for k in keys.iter().step_by(2) {
        pipe.set_px(k, k, Duration::from_secs(60));
    }
    pipe.set_nx_px(&keys[0], b"again", Duration::from_secs(60));
    pipe.set_nx_px(&keys[1], b"first", Duration::from_secs(60));
    let before = c.stats().attempts;
    let replies = c.pipeline(&pipe).await;
    assert_eq!(replies.len(), 22);
    assert!(
        replies[..20]
            .iter()
            .all(|r| r.as_ref().unwrap() == &Reply::Status("OK".into()))
    );
    assert!(
        replies[20].as_ref().unwrap().is_nil(),
        "NX: the key existed"
    );
    assert!(!replies[21].as_ref().unwrap().is_nil(), "NX: set");
    if !c.is_cluster() {
        assert_eq!(c.stats().attempts - before, 1, "one round trip");
    }
    let values = c.mget(&keys).await.unwrap();
    for (i, (k, v)) in keys.iter().zip(&values).enumerate() {
        let want = match i {
            1 => Some(b"first".to_vec()),
            _ if i % 2 == 0 => Some(k.clone()),
            _ => None,
        };
        assert_eq!(v, &want, "key {i}");
    }
    assert!(c.mget(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn mget_and_pipeline_answer_in_order_standalone() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new();
    mget_and_pipeline_answer_in_order(&client(RedisClient::standalone(server.url()), &clock)).await;
}

#[cfg(feature = "cluster")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mget_and_pipeline_answer_in_order_across_cluster_slots() {
    let cluster = tokio::task::spawn_blocking(|| levee_testkit::RedisCluster::start(3))
        .await
        .unwrap()
        .unwrap();
    let clock = ManualClock::new();
    mget_and_pipeline_answer_in_order(&client(RedisClient::cluster(cluster.urls()), &clock)).await;
}
