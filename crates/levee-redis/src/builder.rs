//! [`RedisClientBuilder`].

use std::sync::Arc;
use std::time::Duration;

use levee_breaker::CircuitBreakerBuilder;
use levee_core::SharedClock;
use redis::aio::ConnectionManager;

use crate::client::Inner;
use crate::connection::{Conn, Link, Own};
use crate::endpoint::Endpoints;
use crate::stats::Counters;
use crate::{RedisClient, RedisError, guard};

/// Where the client's connection comes from.
enum Source {
    /// URLs: the client opens and reopens the connection.
    Endpoints(Endpoints),
    /// A connection the user opened.
    User { conn: Conn, cluster: bool },
}

/// Builds a [`RedisClient`]. `build()` does no I/O: the connection opens on
/// the first command, so an application starts while Redis is down.
///
/// ```
/// use std::time::Duration;
/// use levee_redis::RedisClient;
///
/// let client = RedisClient::standalone("redis://:secret@127.0.0.1:6379/0")
///     .name("sessions-redis")
///     .connect_timeout(Duration::from_millis(500))
///     .command_timeout(Duration::from_millis(50))
///     .build()?;
/// assert_eq!(client.breaker().name(), "sessions-redis");
/// # Ok::<(), levee_redis::RedisError>(())
/// ```
#[must_use]
pub struct RedisClientBuilder {
    source: Source,
    name: String,
    connect_timeout: Duration,
    command_timeout: Duration,
    breaker: Option<CircuitBreakerBuilder>,
    clock: Option<SharedClock>,
    pubsub_url: Option<String>,
    /// A CA (PEM) to trust for `rediss://` (the client's URLs and
    /// `pubsub_url`).
    root_cert: Option<Vec<u8>>,
}

impl std::fmt::Debug for RedisClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("RedisClientBuilder");
        if let Source::Endpoints(e) = &self.source {
            d.field("endpoints", e);
        }
        d.field("name", &self.name)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisClient {
    /// A single Redis server: `redis://[user:password@]host:port[/db]`, or
    /// `rediss://` for TLS (feature `tls`; the system's roots are trusted,
    /// or the CA given to `tls_root_cert_pem`).
    pub fn standalone(url: impl Into<String>) -> RedisClientBuilder {
        RedisClientBuilder::new(Source::Endpoints(Endpoints {
            urls: vec![url.into()],
            cluster: false,
            root_cert: None,
        }))
    }

    /// A Redis Cluster, reached through any of `nodes` (URLs as in
    /// [`standalone`](Self::standalone)).
    #[cfg(feature = "cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    pub fn cluster<I, S>(nodes: I) -> RedisClientBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisClientBuilder::new(Source::Endpoints(Endpoints {
            urls: nodes.into_iter().map(Into::into).collect(),
            cluster: true,
            root_cert: None,
        }))
    }

    /// Your own `ConnectionManager` (it reconnects by itself; levee adds
    /// the timeout, the breaker, and a retry of the first command after an
    /// outage, which a `ConnectionManager` answers with the error of its
    /// failed reconnect). `connect_timeout` then bounds only pub/sub
    /// connections, which need [`pubsub_url`](RedisClientBuilder::pubsub_url).
    ///
    /// Give the manager few reconnect retries and a short maximum delay
    /// (`ConnectionManagerConfig::set_number_of_retries(1)`,
    /// `set_max_delay(200 ms)`): while its own reconnect backs off,
    /// commands (a half-open probe too) wait on it until their timeout.
    pub fn from_connection_manager(manager: ConnectionManager) -> RedisClientBuilder {
        RedisClientBuilder::new(Source::User {
            conn: Conn::Manager(manager),
            cluster: false,
        })
    }

    /// Your own Cluster connection (as for
    /// [`from_connection_manager`](Self::from_connection_manager)).
    #[cfg(feature = "cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    pub fn from_cluster_connection(
        conn: redis::cluster_async::ClusterConnection,
    ) -> RedisClientBuilder {
        RedisClientBuilder::new(Source::User {
            conn: Conn::Cluster(conn),
            cluster: true,
        })
    }
}

impl RedisClientBuilder {
    fn new(source: Source) -> Self {
        RedisClientBuilder {
            source,
            name: "levee-redis".to_string(),
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_millis(500),
            breaker: None,
            clock: None,
            pubsub_url: None,
            root_cert: None,
        }
    }

    /// The client's name: its breaker's name and the `client` label of its
    /// metrics and logs. Default: `levee-redis`; name each client when a
    /// process has several.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// How long opening a connection (TCP, TLS, AUTH, and for a Cluster its
    /// slot map) may take. A connect runs on its own task: a command whose
    /// timeout ends first fails, and the connect goes on for the next one.
    /// Default: 1 s.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// How long one call may take, waiting for a connect included, before
    /// it fails with [`RedisError::Timeout`]. Default: 500 ms (levee's
    /// components take a handle with their own, shorter, timeout:
    /// [`RedisClient::with_command_timeout`]).
    pub fn command_timeout(mut self, d: Duration) -> Self {
        self.command_timeout = d;
        self
    }

    /// The breaker's rules (its name is set to the client's). Default:
    /// opens after 3 consecutive transport failures, or half of the last
    /// 100 calls (at least 20) failing, for 5 s; then one probe.
    ///
    /// ```
    /// use std::time::Duration;
    /// use levee_breaker::CircuitBreaker;
    /// use levee_redis::RedisClient;
    ///
    /// let client = RedisClient::standalone("redis://127.0.0.1:6379")
    ///     .breaker(CircuitBreaker::builder().consecutive_failures(5).open_duration(Duration::from_secs(2)))
    ///     .build()?;
    /// # Ok::<(), levee_redis::RedisError>(())
    /// ```
    pub fn breaker(mut self, rules: CircuitBreakerBuilder) -> Self {
        self.breaker = Some(rules);
        self
    }

    /// The breaker's clock (tests advance a `ManualClock` through an open
    /// period). Default: the breaker's own, the system clock.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// For `rediss://` (the client's URLs and `pubsub_url`): trust this CA
    /// certificate (PEM) instead of the system's roots (a private CA, or a
    /// test certificate). Default: the system's roots.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_root_cert_pem(mut self, pem: Vec<u8>) -> Self {
        self.root_cert = Some(pem);
        self
    }

    /// Where pub/sub connections go (the cache's invalidation backplane).
    /// Default: the client's own URL (the first node's, for a Cluster);
    /// none for a user's connection, whose client cannot subscribe without
    /// one.
    pub fn pubsub_url(mut self, url: impl Into<String>) -> Self {
        self.pubsub_url = Some(url.into());
        self
    }

    /// Checks the settings and builds the client (no I/O).
    pub fn build(self) -> Result<RedisClient, RedisError> {
        if self.connect_timeout.is_zero() {
            return Err(RedisError::setting("connect_timeout", "must be above zero"));
        }
        if self.command_timeout.is_zero() {
            return Err(RedisError::setting("command_timeout", "must be above zero"));
        }
        let name: Arc<str> = Arc::from(self.name.as_str());
        let breaker = guard::build(&name, self.breaker, self.clock)?;
        let stats = Arc::new(Counters::default());
        let mut source = self.source;
        if let Source::Endpoints(e) = &mut source {
            e.root_cert.clone_from(&self.root_cert);
        }
        let pubsub = match self.pubsub_url {
            Some(url) => Some(Endpoints {
                urls: vec![url],
                cluster: false,
                root_cert: self.root_cert,
            }),
            None => match &source {
                Source::Endpoints(e) => Some(e.clone()),
                Source::User { .. } => None,
            },
        };
        if let Some(p) = &pubsub {
            p.validate()
                .map_err(|e| RedisError::setting("pubsub_url", e.to_string()))?;
        }
        let (link, cluster) = match source {
            Source::Endpoints(e) => {
                e.validate()?;
                let cluster = e.cluster;
                let own = Own::new(e, self.connect_timeout, name.clone(), stats.clone());
                (Link::Own(own), cluster)
            }
            Source::User { conn, cluster } => (Link::User(conn), cluster),
        };
        Ok(RedisClient::from_parts(
            Inner {
                #[cfg(feature = "metrics")]
                metrics: crate::metrics::Metrics::new(&name),
                name,
                link,
                breaker,
                stats,
                pubsub,
                connect_timeout: self.connect_timeout,
                cluster,
            },
            self.command_timeout,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_timeouts_are_rejected_and_named() {
        let err = RedisClient::standalone("redis://localhost")
            .command_timeout(Duration::ZERO)
            .build()
            .unwrap_err();
        assert!(matches!(
            err,
            RedisError::InvalidSetting {
                setting: "command_timeout",
                ..
            }
        ));
    }

    #[test]
    fn build_does_no_io() {
        // Nothing listens on port 1: build() must still succeed.
        let client = RedisClient::standalone("redis://127.0.0.1:1")
            .build()
            .unwrap();
        assert!(!client.is_connected());
        assert_eq!(client.stats().attempts, 0);
    }
}
