//! levee's one way to Redis: a guarded client that every Redis user in
//! levee goes through (the cache's L2, its load lock and invalidation
//! backplane, the Redis rate limiter, the shared upstream quota).
//!
//! A [`RedisClient`] owns:
//! - the connection: standalone, Cluster (feature `cluster`), TLS (feature
//!   `tls`), AUTH in the URL, or a `ConnectionManager` / Cluster connection
//!   you already have. It opens on first use, on one shared connect task
//!   bounded by `connect_timeout`;
//! - a timeout on every command;
//! - a circuit breaker (levee-breaker's, one per client, named after it)
//!   that counts transport failures only: refused, reset, timed out,
//!   `CLUSTERDOWN`/`MASTERDOWN`; never an error reply such as `WRONGTYPE`
//!   or `NOSCRIPT`. While it is open no call waits on Redis;
//! - reconnects: a command that finds its connection gone is sent once
//!   more on a fresh one, so the first command after Redis comes back
//!   succeeds; timeouts do not drop the connection (no churn on a latency
//!   spike), except a timed-out half-open probe, so that a connection that
//!   died silently is replaced at the next probe;
//! - [`Keyspace`] for key names (hash tags for Cluster), [`Script`]
//!   (`EVALSHA`, `EVAL` on `NOSCRIPT`), pub/sub that resubscribes by itself
//!   ([`Subscriber`]);
//! - logs once per state change (breaker opened or closed, connection lost
//!   or back), never per request; [`RedisClientStats`]; metrics (feature
//!   `metrics`): `levee_redis_command_seconds`, `levee_redis_errors_total{kind}`,
//!   `levee_redis_rejected_total`, and the breaker's `levee_breaker_state`.
//!
//! Every caller keeps its own fallback: an error (a timeout, an unreachable
//! Redis, an open breaker) is returned at once, and the caller decides.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), levee_redis::RedisError> {
//! use std::time::Duration;
//! use levee_redis::{Keyspace, RedisClient};
//!
//! // Nothing listens on port 1: calls fail fast, and after three the
//! // breaker opens and Redis is not called at all.
//! let client = RedisClient::standalone("redis://127.0.0.1:1")
//!     .command_timeout(Duration::from_millis(200))
//!     .build()?;
//! let key = Keyspace::new(["app", "sessions"]).key("alice");
//! for _ in 0..3 {
//!     assert!(client.get(&key).await.unwrap_err().is_transport());
//! }
//! let err = client.get(&key).await.unwrap_err();
//! assert!(err.is_breaker_open());
//! assert_eq!(client.stats().attempts, 3, "the fourth call did not reach Redis");
//! # Ok(()) }
//! ```
//!
//! Features:
//! - `tls`: `rediss://` through rustls (ring provider).
//! - `cluster`: Redis Cluster.
//! - `metrics`: metrics through the `metrics` crate.
//!
//! Without `tls` and `cluster` no rustls, ring or Cluster code is compiled.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod client;
mod command;
mod connection;
mod endpoint;
mod error;
mod guard;
mod keys;
#[cfg(feature = "metrics")]
mod metrics;
mod pipeline;
mod pubsub;
mod script;
mod stats;

pub use builder::RedisClientBuilder;
pub use client::RedisClient;
pub use command::{Arg, Command, Reply};
pub use error::{Cause, RedisError};
pub use keys::Keyspace;
pub use pipeline::Pipeline;
pub use pubsub::Subscriber;
/// The driver's connection types a user may hand in (re-exported so that
/// the versions match).
pub use redis::aio::ConnectionManager;
/// The driver's Cluster connection type a user may hand in.
#[cfg(feature = "cluster")]
#[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
pub use redis::cluster_async::ClusterConnection;
pub use script::{Script, ScriptCall};
pub use stats::RedisClientStats;
