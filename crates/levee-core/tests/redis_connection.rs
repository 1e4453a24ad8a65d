//! `RedisConnection` against real redis-server processes: lazy connect,
//! recovery after restarts, timeouts while paused, AUTH and Cluster.
#![cfg(feature = "redis")]

use std::time::{Duration, Instant};

use levee_core::redis::{RedisConfig, RedisConnection, is_timeout};
use levee_testkit::{RedisCluster, RedisServer, RedisServerOptions};

async fn ping(conn: &RedisConnection) -> redis::RedisResult<String> {
    redis::cmd("PING").query_async(&mut conn.clone()).await
}

async fn eventually_pong(conn: &RedisConnection) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(p) = ping(conn).await {
            assert_eq!(p, "PONG");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Redis connection never recovered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn connect_while_redis_is_down_then_works_once_it_starts() {
    let mut server = RedisServer::start().unwrap();
    let url = server.url();
    server.kill();
    let conn = RedisConfig::standalone(&url)
        .connect_timeout(Duration::from_millis(200))
        .response_timeout(Duration::from_millis(200))
        .connect()
        .expect("connect() does no I/O, so a down server is fine");
    let started = Instant::now();
    assert!(ping(&conn).await.is_err());
    // A generous bound: the point is that a down Redis fails the call
    // instead of hanging it, not how fast (speed is not asserted in tests).
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a down Redis must fail, not hang"
    );
    server.restart().unwrap();
    eventually_pong(&conn).await;
}

#[tokio::test]
async fn recovers_after_redis_is_killed_and_restarted() {
    let mut server = RedisServer::start().unwrap();
    let conn = RedisConfig::standalone(server.url())
        .response_timeout(Duration::from_millis(200))
        .connect()
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v1")
        .query_async(&mut conn.clone())
        .await
        .unwrap();
    server.kill();
    assert!(ping(&conn).await.is_err());
    server.restart().unwrap();
    eventually_pong(&conn).await;
    let v: Option<String> = redis::cmd("GET")
        .arg("k")
        .query_async(&mut conn.clone())
        .await
        .unwrap();
    assert_eq!(v, None, "nothing is persisted across restarts");
}

#[tokio::test]
async fn paused_redis_gives_timeouts_then_recovers_after_resume() {
    let server = RedisServer::start().unwrap();
    let conn = RedisConfig::standalone(server.url())
        .response_timeout(Duration::from_millis(100))
        .connect()
        .unwrap();
    eventually_pong(&conn).await;
    server.pause();
    for _ in 0..4 {
        let started = Instant::now();
        let err = ping(&conn).await.unwrap_err();
        assert!(is_timeout(&err), "expected a timeout, got {err}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the timeout must end the call"
        );
    }
    server.resume();
    eventually_pong(&conn).await;
}

#[tokio::test]
async fn auth_with_password_in_url() {
    let server =
        RedisServer::start_with(RedisServerOptions::default().password("pa55word")).unwrap();
    let conn = RedisConfig::standalone(server.url()).connect().unwrap();
    eventually_pong(&conn).await;
    let wrong = RedisConfig::standalone(format!("redis://:nope@127.0.0.1:{}", server.port()))
        .connect()
        .unwrap();
    assert!(
        ping(&wrong).await.is_err(),
        "a wrong password must not be accepted"
    );
}

#[tokio::test]
async fn cluster_connection_routes_keys_to_their_slots() {
    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3))
        .await
        .unwrap()
        .unwrap();
    let conn = RedisConfig::cluster(cluster.urls()).connect().unwrap();
    assert!(conn.is_cluster());
    for i in 0..20 {
        let key = format!("user:{i}");
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(i)
            .query_async(&mut conn.clone())
            .await
            .unwrap();
        let v: i64 = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn.clone())
            .await
            .unwrap();
        assert_eq!(v, i);
    }
}

#[tokio::test]
async fn scripts_run_through_the_connection() {
    let server = RedisServer::start().unwrap();
    let conn = RedisConfig::standalone(server.url()).connect().unwrap();
    let script = redis::Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1])");
    let n: i64 = script
        .key("counter")
        .arg(5)
        .invoke_async(&mut conn.clone())
        .await
        .unwrap();
    assert_eq!(n, 5);
}

#[tokio::test]
async fn three_consecutive_timeouts_reopen_the_connection() {
    let server = RedisServer::start().unwrap();
    let conn = RedisConfig::standalone(server.url())
        .response_timeout(Duration::from_millis(100))
        .connect()
        .unwrap();
    eventually_pong(&conn).await;
    let before: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut conn.clone())
        .await
        .unwrap();
    server.pause();
    for _ in 0..3 {
        assert!(is_timeout(&ping(&conn).await.unwrap_err()));
    }
    server.resume();
    eventually_pong(&conn).await;
    let after: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut conn.clone())
        .await
        .unwrap();
    assert_ne!(
        before, after,
        "a new connection (new client id) is expected after 3 timeouts"
    );
}

#[tokio::test]
async fn two_timeouts_keep_the_connection() {
    let server = RedisServer::start().unwrap();
    let conn = RedisConfig::standalone(server.url())
        .response_timeout(Duration::from_millis(100))
        .connect()
        .unwrap();
    eventually_pong(&conn).await;
    let before: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut conn.clone())
        .await
        .unwrap();
    server.pause();
    for _ in 0..2 {
        assert!(is_timeout(&ping(&conn).await.unwrap_err()));
    }
    server.resume();
    eventually_pong(&conn).await;
    let after: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut conn.clone())
        .await
        .unwrap();
    assert_eq!(before, after);
}

#[tokio::test]
async fn tls_with_a_private_ca_and_auth() {
    let server =
        RedisServer::start_with(RedisServerOptions::default().tls().password("tls-pw")).unwrap();
    assert!(server.url().starts_with("rediss://"));
    let conn = RedisConfig::standalone(server.url())
        .tls_root_cert_pem(server.ca_cert_pem().unwrap())
        .connect()
        .unwrap();
    eventually_pong(&conn).await;
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("over tls")
        .query_async(&mut conn.clone())
        .await
        .unwrap();
    let v: String = redis::cmd("GET")
        .arg("k")
        .query_async(&mut conn.clone())
        .await
        .unwrap();
    assert_eq!(v, "over tls");
}

#[tokio::test]
async fn tls_refuses_a_server_certificate_it_does_not_trust() {
    let server = RedisServer::start_with(RedisServerOptions::default().tls()).unwrap();
    let other = RedisServer::start_with(RedisServerOptions::default().tls()).unwrap();
    let conn = RedisConfig::standalone(server.url())
        .tls_root_cert_pem(other.ca_cert_pem().unwrap())
        .connect()
        .unwrap();
    assert!(
        ping(&conn).await.is_err(),
        "a certificate from another CA must be refused"
    );
}
