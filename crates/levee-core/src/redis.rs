//! Redis connection setup shared by levee's crates (feature `redis`).
//!
//! [`RedisConfig`] describes where Redis is (one URL, or the nodes of a
//! Cluster) and how long to wait; [`RedisConfig::connect`] returns a
//! [`RedisConnection`] at once, without I/O, so an application starts while
//! Redis is down. The connection opens on first use, every command is bounded
//! by the response timeout, and after three consecutive timeouts the
//! connection is dropped and reopened, since a reply that arrives after its
//! caller gave up would leave a connection out of step.
//!
//! `RedisConnection` implements [`redis::aio::ConnectionLike`], so the `redis`
//! crate's commands, pipelines and scripts run on it directly:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use levee_core::redis::RedisConfig;
//!
//! let conn = RedisConfig::standalone("redis://127.0.0.1:6379")
//!     .response_timeout(Duration::from_millis(50))
//!     .connect()?;
//! let _: () = redis::cmd("SET").arg("k").arg("v").query_async(&mut conn.clone()).await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};

/// Consecutive timeouts after which a connection is reopened.
const TIMEOUTS_BEFORE_RECONNECT: u32 = 3;
/// After a failed connect, commands fail at once for this long instead of
/// each waiting for the connect timeout.
const CONNECT_BACKOFF: Duration = Duration::from_millis(250);

/// Where Redis is and how long to wait for it.
#[derive(Clone)]
pub struct RedisConfig {
    nodes: Vec<String>,
    cluster: bool,
    connect_timeout: Duration,
    response_timeout: Duration,
    root_cert: Option<Vec<u8>>,
}

impl RedisConfig {
    /// A single Redis server: `redis://[user:password@]host:port[/db]`, or
    /// `rediss://` for TLS (trusting the system's roots, or the CA given to
    /// [`tls_root_cert_pem`](Self::tls_root_cert_pem)).
    pub fn standalone(url: impl Into<String>) -> Self {
        RedisConfig {
            nodes: vec![url.into()],
            cluster: false,
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_millis(500),
            root_cert: None,
        }
    }

    /// A Redis Cluster, reached through any of `nodes` (URLs as above).
    pub fn cluster<I, S>(nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisConfig {
            nodes: nodes.into_iter().map(Into::into).collect(),
            cluster: true,
            ..Self::standalone(String::new())
        }
    }

    /// How long opening a connection may take. Default: 1 s.
    #[must_use]
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// How long one command may take before it fails with a timeout.
    /// Default: 500 ms (components such as the L2 cache set their own,
    /// shorter, budget on top).
    #[must_use]
    pub fn response_timeout(mut self, d: Duration) -> Self {
        self.response_timeout = d;
        self
    }

    /// For `rediss://`: trust this CA certificate (PEM) instead of the
    /// system's roots (a private CA, or a test certificate).
    #[must_use]
    pub fn tls_root_cert_pem(mut self, pem: Vec<u8>) -> Self {
        self.root_cert = Some(pem);
        self
    }

    fn tls_certs(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: None,
            root_cert: self.root_cert.clone(),
        }
    }

    fn client(&self, url: &str) -> Result<redis::Client, RedisError> {
        match &self.root_cert {
            Some(_) => redis::Client::build_with_tls(url, self.tls_certs()),
            None => redis::Client::open(url),
        }
    }

    /// Whether this describes a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// The configured response timeout.
    pub fn response_timeout_value(&self) -> Duration {
        self.response_timeout
    }

    /// Checks the settings and returns a connection handle without any I/O:
    /// the connection opens on first use.
    pub fn connect(&self) -> Result<RedisConnection, RedisSetupError> {
        self.validate()?;
        let conn = RedisConnection {
            inner: Arc::new(Inner {
                config: self.clone(),
                conn: parking_lot::Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                failed_at: parking_lot::Mutex::new(None),
                consecutive_timeouts: AtomicU32::new(0),
            }),
            timeout: self.response_timeout,
        };
        Ok(conn)
    }

    /// Opens a plain pub/sub connection to the first node that answers. In a
    /// Cluster any node will do: `PUBLISH` reaches every node.
    pub async fn open_pubsub(&self) -> Result<redis::aio::PubSub, RedisError> {
        let mut last = None;
        for node in &self.nodes {
            let client = self.client(node)?;
            match tokio::time::timeout(self.connect_timeout, client.get_async_pubsub()).await {
                Ok(Ok(pubsub)) => return Ok(pubsub),
                Ok(Err(e)) => last = Some(e),
                Err(_) => last = Some(timeout_error("opening a pub/sub connection")),
            }
        }
        Err(last.unwrap_or_else(|| timeout_error("opening a pub/sub connection: no nodes")))
    }

    fn validate(&self) -> Result<(), RedisSetupError> {
        if self.nodes.is_empty() || self.nodes.iter().all(|n| n.is_empty()) {
            return Err(RedisSetupError::NoNodes);
        }
        for node in &self.nodes {
            let info: redis::ConnectionInfo =
                redis::IntoConnectionInfo::into_connection_info(node.as_str()).map_err(|e| {
                    RedisSetupError::InvalidUrl {
                        url: redact(node),
                        reason: e.to_string(),
                    }
                })?;
            drop(info);
        }
        if self.connect_timeout.is_zero() || self.response_timeout.is_zero() {
            return Err(RedisSetupError::InvalidTimeout);
        }
        Ok(())
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field(
                "nodes",
                &self.nodes.iter().map(|n| redact(n)).collect::<Vec<_>>(),
            )
            .field("cluster", &self.cluster)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("tls_root_cert", &self.root_cert.is_some())
            .finish()
    }
}

/// A URL with its password replaced by `***`.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme + 3 => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Why a [`RedisConfig`] cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisSetupError {
    /// No URL was given.
    #[error("no Redis URL given: pass `redis://host:port` (or Cluster node URLs)")]
    NoNodes,
    /// A URL does not parse.
    #[error(
        "invalid Redis URL `{url}`: {reason}; expected `redis://[user:password@]host:port[/db]`"
    )]
    InvalidUrl {
        /// The URL, password redacted.
        url: String,
        /// What the parser said.
        reason: String,
    },
    /// `rediss://` was asked for but TLS is not compiled in.
    #[error(
        "`{url}` asks for TLS, which this build of levee does not support yet; use `redis://` (e.g. through a TLS-terminating sidecar)"
    )]
    TlsUnsupported {
        /// The URL, password redacted.
        url: String,
    },
    /// A timeout of zero.
    #[error("invalid setting `connect_timeout`/`response_timeout`: a timeout must be above zero")]
    InvalidTimeout,
}

/// Whether `err` is a timeout (of a command or of opening a connection).
pub fn is_timeout(err: &RedisError) -> bool {
    err.is_timeout()
}

fn timeout_error(what: &str) -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("Redis timed out {what}"),
    ))
}

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

struct Inner {
    config: RedisConfig,
    conn: parking_lot::Mutex<Option<Conn>>,
    /// Serialises connection attempts so a burst of callers opens one.
    connecting: tokio::sync::Mutex<()>,
    failed_at: parking_lot::Mutex<Option<Instant>>,
    consecutive_timeouts: AtomicU32,
}

/// A lazily opened, self-healing Redis connection (standalone or Cluster).
///
/// Cheap to clone: clones share one connection. Implements
/// [`redis::aio::ConnectionLike`].
#[derive(Clone)]
pub struct RedisConnection {
    inner: Arc<Inner>,
    /// This handle's response timeout (the config's unless changed with
    /// `with_response_timeout`).
    timeout: Duration,
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConnection")
            .field("config", &self.inner.config)
            .field("connected", &self.inner.conn.lock().is_some())
            .field("response_timeout", &self.timeout)
            .finish()
    }
}

impl RedisConnection {
    /// Whether this talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.inner.config.cluster
    }

    /// The configuration this connection was made from.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// A handle on the same connection whose commands time out after `d`
    /// instead of the configured response timeout (e.g. a cache that must
    /// answer within a few milliseconds, beside a limiter that may wait
    /// longer). Timeouts on any handle count toward reopening the shared
    /// connection. A zero `d` keeps the current timeout.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use levee_core::redis::RedisConfig;
    ///
    /// let conn = RedisConfig::standalone("redis://127.0.0.1:6379").connect()?;
    /// let fast = conn.with_response_timeout(Duration::from_millis(20));
    /// assert_eq!(fast.response_timeout(), Duration::from_millis(20));
    /// assert_eq!(conn.response_timeout(), Duration::from_millis(500));
    /// # Ok::<(), levee_core::redis::RedisSetupError>(())
    /// ```
    pub fn with_response_timeout(&self, d: Duration) -> RedisConnection {
        RedisConnection {
            inner: self.inner.clone(),
            timeout: if d.is_zero() { self.timeout } else { d },
        }
    }

    /// How long a command on this handle may take.
    pub fn response_timeout(&self) -> Duration {
        self.timeout
    }

    async fn current(&self) -> Result<Conn, RedisError> {
        if let Some(c) = self.inner.conn.lock().clone() {
            return Ok(c);
        }
        let _guard = self.inner.connecting.lock().await;
        if let Some(c) = self.inner.conn.lock().clone() {
            return Ok(c);
        }
        if let Some(at) = *self.inner.failed_at.lock() {
            if at.elapsed() < CONNECT_BACKOFF {
                return Err(RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    "Redis is unreachable (last connect attempt failed moments ago)",
                )));
            }
        }
        match self.open().await {
            Ok(c) => {
                *self.inner.failed_at.lock() = None;
                *self.inner.conn.lock() = Some(c.clone());
                Ok(c)
            }
            Err(e) => {
                *self.inner.failed_at.lock() = Some(Instant::now());
                Err(e)
            }
        }
    }

    async fn open(&self) -> Result<Conn, RedisError> {
        let cfg = &self.inner.config;
        if cfg.cluster {
            let mut builder = ClusterClientBuilder::new(cfg.nodes.iter().map(String::as_str))
                .connection_timeout(cfg.connect_timeout)
                .response_timeout(cfg.response_timeout)
                .retries(1);
            if cfg.root_cert.is_some() {
                builder = builder.certs(cfg.tls_certs());
            }
            let client = builder.build()?;
            match tokio::time::timeout(cfg.connect_timeout * 2, client.get_async_connection()).await
            {
                Ok(r) => r.map(Conn::Cluster),
                Err(_) => Err(timeout_error("connecting to the cluster")),
            }
        } else {
            let client = cfg.client(&cfg.nodes[0])?;
            // No response timeout here: every command goes through this
            // handle's own (`command`, `pipeline`), and a second timer per
            // command costs a driver wake-up (an eventfd write) each.
            let mgr_cfg = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(cfg.connect_timeout))
                .set_response_timeout(None)
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(500));
            ConnectionManager::new_lazy_with_config(client, mgr_cfg).map(Conn::Single)
        }
    }

    /// Bookkeeping after each command: reopen after a run of timeouts.
    fn note<T>(&self, result: &Result<T, RedisError>) {
        match result {
            Err(e) if e.is_timeout() => {
                let n = self
                    .inner
                    .consecutive_timeouts
                    .fetch_add(1, Ordering::AcqRel)
                    + 1;
                if n >= TIMEOUTS_BEFORE_RECONNECT {
                    self.inner.consecutive_timeouts.store(0, Ordering::Release);
                    *self.inner.conn.lock() = None;
                    tracing::debug!(
                        "levee: reopening the Redis connection after {n} consecutive timeouts"
                    );
                }
            }
            Err(_) => {}
            Ok(_) => self.inner.consecutive_timeouts.store(0, Ordering::Release),
        }
    }

    async fn command(&self, cmd: &Cmd) -> Result<Value, RedisError> {
        let result = tokio::time::timeout(self.timeout, async {
            self.current().await?.req_packed_command(cmd).await
        })
        .await
        .unwrap_or_else(|_| Err(timeout_error("waiting for a reply")));
        self.note(&result);
        result
    }

    async fn pipeline(
        &self,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
    ) -> Result<Vec<Value>, RedisError> {
        let result = tokio::time::timeout(self.timeout, async {
            let mut conn = self.current().await?;
            conn.req_packed_commands(pipeline, offset, count).await
        })
        .await
        .unwrap_or_else(|_| Err(timeout_error("waiting for pipeline replies")));
        self.note(&result);
        result
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(self.command(cmd))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(self.pipeline(pipeline, offset, count))
    }

    fn get_db(&self) -> i64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_url_is_rejected_with_the_url_redacted() {
        let err = RedisConfig::standalone("redis://:hunter2@host:notaport")
            .connect()
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("invalid Redis URL"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn empty_cluster_is_rejected() {
        let err = RedisConfig::cluster(Vec::<String>::new())
            .connect()
            .unwrap_err();
        assert!(matches!(err, RedisSetupError::NoNodes));
    }

    #[test]
    fn debug_redacts_password() {
        let cfg = RedisConfig::standalone("redis://user:s3cret@localhost:6379");
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("user:***@localhost"), "{shown}");
    }

    #[test]
    fn zero_timeout_is_rejected() {
        let err = RedisConfig::standalone("redis://localhost")
            .response_timeout(Duration::ZERO)
            .connect()
            .unwrap_err();
        assert!(matches!(err, RedisSetupError::InvalidTimeout));
    }

    #[test]
    fn connect_does_no_io() {
        // Port 1 on loopback has no Redis; connect() must still succeed.
        assert!(
            RedisConfig::standalone("redis://127.0.0.1:1")
                .connect()
                .is_ok()
        );
    }
}
