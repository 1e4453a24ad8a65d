//! The test kit's own fixtures behave as their docs say.

use std::time::Duration;

use levee_core::ManualClock;
use levee_testkit::{
    FaultMode, FaultProxy, MockIdp, RedisCluster, RedisServer, RedisServerOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[test]
fn restart_keeps_the_port_and_answers_again() {
    let mut server = RedisServer::start().unwrap();
    let port = server.port();
    assert!(server.ping(Duration::from_millis(500)));
    server.kill();
    assert!(!server.ping(Duration::from_millis(200)));
    server.restart().unwrap();
    assert_eq!(server.port(), port);
    assert!(server.ping(Duration::from_millis(500)));
}

#[test]
fn paused_server_does_not_answer_until_resumed() {
    let server = RedisServer::start().unwrap();
    server.pause();
    assert!(!server.ping(Duration::from_millis(200)));
    server.resume();
    assert!(server.ping(Duration::from_millis(1000)));
}

#[test]
fn dropped_server_process_is_gone() {
    let server = RedisServer::start().unwrap();
    let addr = server.addr();
    drop(server);
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err());
}

#[test]
fn password_protected_server_needs_auth() {
    let opts = RedisServerOptions::default().password("s3cret");
    let server = RedisServer::start_with(opts).unwrap();
    assert!(server.url().contains(":s3cret@"));
    assert!(server.ping(Duration::from_millis(500)));
}

#[tokio::test]
async fn cluster_forms_and_serves_keys_on_every_slot_range() {
    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3))
        .await
        .unwrap()
        .unwrap();
    let client = redis::cluster::ClusterClient::new(cluster.urls()).unwrap();
    let mut conn = client.get_async_connection().await.unwrap();
    for i in 0..30 {
        let key = format!("key-{i}");
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(i)
            .query_async(&mut conn)
            .await
            .unwrap();
        let v: i64 = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(v, i);
    }
}

async fn echo_server() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

async fn round_trip(stream: &mut tokio::net::TcpStream, within: Duration) -> Option<Vec<u8>> {
    stream.write_all(b"ping").await.ok()?;
    let mut buf = [0u8; 4];
    match tokio::time::timeout(within, stream.read_exact(&mut buf)).await {
        Ok(Ok(_)) => Some(buf.to_vec()),
        _ => None,
    }
}

#[tokio::test]
async fn proxy_passes_blackholes_and_resumes() {
    let proxy = FaultProxy::start(echo_server().await).await.unwrap();
    let mut s = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(
        round_trip(&mut s, Duration::from_secs(1)).await.as_deref(),
        Some(&b"ping"[..])
    );
    proxy.set_mode(FaultMode::Blackhole);
    assert_eq!(round_trip(&mut s, Duration::from_millis(200)).await, None);
    proxy.set_mode(FaultMode::Pass);
    // The held bytes are delivered once the proxy passes again.
    let mut buf = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(1), s.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"ping");
}

#[tokio::test]
async fn proxy_drop_closes_open_connections() {
    let proxy = FaultProxy::start(echo_server().await).await.unwrap();
    let mut s = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    assert!(round_trip(&mut s, Duration::from_secs(1)).await.is_some());
    proxy.set_mode(FaultMode::Drop);
    let mut buf = [0u8; 4];
    let read = tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf))
        .await
        .unwrap();
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "connection should be closed: {read:?}"
    );
}

#[tokio::test]
async fn proxy_delay_adds_latency() {
    let proxy = FaultProxy::start(echo_server().await).await.unwrap();
    proxy.set_mode(FaultMode::Delay(Duration::from_millis(150)));
    let mut s = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut s, Duration::from_millis(100)).await, None);
}

async fn get_userinfo(idp: &MockIdp, user: &str) -> (u16, http::HeaderMap) {
    let (status, headers, _) = idp.userinfo(&format!("token-{user}")).await.unwrap();
    (status.as_u16(), headers)
}

#[tokio::test]
async fn idp_allows_burst_then_429_then_refills_one_per_12_seconds() {
    let clock = ManualClock::new();
    let idp = MockIdp::start(clock.shared()).await.unwrap();
    for i in 0..10 {
        let (status, h) = get_userinfo(&idp, "alice").await;
        assert_eq!(status, 200, "call {i}");
        assert_eq!(h["x-ratelimit-remaining"], (9 - i).to_string().as_str());
    }
    let (status, h) = get_userinfo(&idp, "alice").await;
    assert_eq!(status, 429);
    assert_eq!(h["retry-after"], "12");
    assert!(h.contains_key("x-ratelimit-reset"));
    // Another user has a bucket of their own.
    assert_eq!(get_userinfo(&idp, "bob").await.0, 200);
    clock.advance(Duration::from_secs(12));
    assert_eq!(get_userinfo(&idp, "alice").await.0, 200);
    assert_eq!(get_userinfo(&idp, "alice").await.0, 429);
    assert_eq!(idp.calls("alice"), 13);
    assert_eq!(idp.rate_limited("alice"), 2);
}

#[tokio::test]
async fn idp_outage_answers_503() {
    let idp = MockIdp::start(ManualClock::new().shared()).await.unwrap();
    idp.set_outage(true);
    assert_eq!(get_userinfo(&idp, "carol").await.0, 503);
    idp.set_outage(false);
    assert_eq!(get_userinfo(&idp, "carol").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_latency_waits_on_its_clock_and_counts_as_delayed_until_due() {
    let clock = ManualClock::new();
    let idp = std::sync::Arc::new(MockIdp::start(clock.shared()).await.unwrap());
    let notify = std::sync::Arc::new(tokio::sync::Notify::new());
    idp.notify_delayed(notify.clone());
    idp.set_latency(Duration::from_secs(2));
    let call = tokio::spawn({
        let idp = idp.clone();
        async move { get_userinfo(&idp, "dave").await.0 }
    });
    // The driver is told when the request starts waiting.
    tokio::time::timeout(Duration::from_secs(5), notify.notified())
        .await
        .unwrap();
    assert_eq!(idp.delayed(), 1);
    assert_eq!(clock.sleepers(), 1, "its deadline is on the clock already");
    clock.advance(Duration::from_millis(1999));
    assert_eq!(idp.delayed(), 1);
    clock.advance(Duration::from_millis(1));
    // Due: no longer counted, though its answer may still be on its way.
    assert_eq!(idp.delayed(), 0);
    assert_eq!(call.await.unwrap(), 200);
}

async fn proxied(proxy: &FaultProxy) -> redis::aio::MultiplexedConnection {
    redis::Client::open(proxy.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn ping(conn: &redis::aio::MultiplexedConnection, within: Duration) -> Option<String> {
    let mut c = conn.clone();
    let cmd = redis::cmd("PING");
    let ping = cmd.query_async::<String>(&mut c);
    tokio::time::timeout(within, ping).await.ok()?.ok()
}

#[tokio::test]
async fn blackholed_proxy_makes_a_redis_client_time_out_and_pass_restores_it() {
    let server = RedisServer::start().unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let conn = proxied(&proxy).await;
    let within = Duration::from_millis(150);
    assert_eq!(ping(&conn, within).await.as_deref(), Some("PONG"));
    proxy.set_mode(FaultMode::Blackhole);
    assert_eq!(
        ping(&conn, within).await,
        None,
        "no answer through a blackhole"
    );
    proxy.set_mode(FaultMode::Pass);
    let mut ok = false;
    for _ in 0..40 {
        if ping(&conn, within).await.is_some() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(ok, "the client works again once the proxy passes");
}

#[tokio::test]
async fn delay_connect_slows_new_connections_only() {
    let server = RedisServer::start().unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let open = proxied(&proxy).await;
    proxy.set_mode(FaultMode::DelayConnect(Duration::from_millis(300)));
    let started = std::time::Instant::now();
    assert_eq!(
        ping(&open, Duration::from_millis(150)).await.as_deref(),
        Some("PONG"),
        "an established connection passes at once"
    );
    let new = proxied(&proxy).await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "a new connection's handshake waited for the delay"
    );
    assert_eq!(
        ping(&new, Duration::from_millis(150)).await.as_deref(),
        Some("PONG")
    );
}

/// A synchronous `GET` on node `port` (no redirection followed).
fn get_on(port: u16, key: &str) -> redis::RedisResult<Option<String>> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
    redis::cmd("GET").arg(key).query(&mut conn)
}

fn set_on(port: u16, key: &str, value: &str) -> redis::RedisResult<()> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
    redis::cmd("SET").arg(key).arg(value).query(&mut conn)
}

#[tokio::test]
async fn a_failed_over_master_is_replaced_by_its_replica_which_kept_the_data() {
    let mut cluster = tokio::task::spawn_blocking(|| {
        let mut cluster = RedisCluster::start_with_replicas(3, 1)?;
        assert_eq!(cluster.masters()?.len(), 3);
        let master = cluster.master_of(b"k")?;
        let port = cluster.nodes_mut()[master].port();
        set_on(port, "k", "v").unwrap();
        // WAIT: the write reached the replica before the kill.
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
        let mut conn = client.get_connection().unwrap();
        let acked: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(2000)
            .query(&mut conn)
            .unwrap();
        assert_eq!(acked, 1);
        let promoted = cluster.fail_over(master)?;
        assert_ne!(promoted, master);
        assert_eq!(cluster.master_of(b"k")?, promoted);
        let port = cluster.nodes_mut()[promoted].port();
        assert_eq!(get_on(port, "k").unwrap().as_deref(), Some("v"));
        Ok::<_, levee_testkit::TestkitError>(cluster)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(cluster.masters().unwrap().len(), 3);
    cluster.kill_all();
}

#[tokio::test]
async fn a_migrated_slot_moves_its_keys_and_its_owner() {
    tokio::task::spawn_blocking(|| {
        let cluster = RedisCluster::start(3).unwrap();
        let slot = cluster.slot_of(b"{m}a").unwrap();
        let from = cluster.owner_of_slot(slot).unwrap();
        let to = (from + 1) % 3;
        let urls = cluster.urls();
        let port = |i: usize| urls[i].rsplit(':').next().unwrap().parse::<u16>().unwrap();
        for k in ["{m}a", "{m}b", "{m}c"] {
            set_on(port(from), k, k).unwrap();
        }
        assert_eq!(cluster.begin_slot_migration(slot, to).unwrap(), from);
        assert_eq!(cluster.move_slot_keys(slot, from, to).unwrap(), 3);
        // Mid-migration: the old owner redirects with ASK.
        let asked = get_on(port(from), "{m}a").unwrap_err();
        assert_eq!(
            asked.kind(),
            redis::ErrorKind::Server(redis::ServerErrorKind::Ask)
        );
        cluster.finish_slot_migration(slot, to).unwrap();
        assert_eq!(cluster.owner_of_slot(slot).unwrap(), to);
        assert_eq!(get_on(port(to), "{m}b").unwrap().as_deref(), Some("{m}b"));
        let moved = get_on(port(from), "{m}b").unwrap_err();
        assert_eq!(
            moved.kind(),
            redis::ErrorKind::Server(redis::ServerErrorKind::Moved)
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_proxied_cluster_announces_its_proxies_so_a_blackhole_reaches_every_connection() {
    let cluster = RedisCluster::start_proxied(3, 0).await.unwrap();
    let proxy_ports: Vec<u16> = cluster.proxies().iter().map(|p| p.addr().port()).collect();
    let client = redis::cluster::ClusterClient::builder(cluster.urls())
        .response_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let mut conn = client.get_async_connection().await.unwrap();
    let slots: Vec<redis::Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut conn)
        .await
        .unwrap();
    let announced = format!("{slots:?}");
    for p in &proxy_ports {
        assert!(
            announced.contains(&format!("int({p})")),
            "{p} in {announced}"
        );
    }
    for i in 0..20 {
        let _: () = redis::cmd("SET")
            .arg(format!("key-{i}"))
            .arg(i)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    cluster.set_fault(FaultMode::Blackhole);
    for i in 0..6 {
        let r: redis::RedisResult<Option<i64>> = tokio::time::timeout(
            Duration::from_secs(5),
            redis::cmd("GET")
                .arg(format!("key-{i}"))
                .query_async(&mut conn),
        )
        .await
        .unwrap_or_else(|_| panic!("key-{i}: the client's own timeout did not fire"));
        assert!(r.is_err(), "key-{i} answered through a blackholed proxy");
    }
}
