//! [`RedisClient`]: every levee call to Redis goes through one of these:
//! the breaker's permit, the command timeout, the connection, the
//! bookkeeping.

use std::sync::Arc;
use std::time::Duration;

use levee_breaker::CircuitBreaker;
use levee_core::RedisKey;

use crate::connection::{Link, Request};
use crate::endpoint::Endpoints;
use crate::stats::Counters;
use crate::{Command, Keyspace, RedisClientStats, RedisError, Reply};

/// A guarded Redis client: one connection (standalone or Cluster, opened
/// lazily and reopened by itself, or one the user hands in), a timeout on
/// every command, and a circuit breaker in front of Redis that counts only
/// transport failures (timeouts, refused or lost connections,
/// `CLUSTERDOWN`), never a server's error reply.
///
/// While the breaker is open every call fails at once with
/// [`RedisError::BreakerOpen`] without touching Redis; after the open
/// period one probe goes through, on a fresh connection if the old one is
/// gone, and its success closes the breaker.
///
/// Cheap to clone: clones share the connection, the breaker and the
/// statistics. [`with_command_timeout`](Self::with_command_timeout) gives a
/// handle with its own timeout on the same connection and breaker (an L2
/// cache at 50 ms beside a limiter at 100 ms).
///
/// Build one with [`standalone`](Self::standalone),
/// `cluster` (feature `cluster`),
/// [`from_connection_manager`](Self::from_connection_manager) or
/// `from_cluster_connection` (feature `cluster`).
#[derive(Clone)]
pub struct RedisClient {
    pub(crate) inner: Arc<Inner>,
    timeout: Duration,
}

pub(crate) struct Inner {
    pub(crate) name: Arc<str>,
    pub(crate) link: Link,
    pub(crate) breaker: CircuitBreaker,
    pub(crate) stats: Arc<Counters>,
    /// Where pub/sub connections go (`None`: a user's connection without a
    /// `pubsub_url`).
    pub(crate) pubsub: Option<Endpoints>,
    pub(crate) connect_timeout: Duration,
    pub(crate) cluster: bool,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: crate::metrics::Metrics,
}

impl std::fmt::Debug for RedisClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisClient")
            .field("name", &self.inner.name)
            .field("cluster", &self.inner.cluster)
            .field("connected", &self.inner.link.is_connected())
            .field("command_timeout", &self.timeout)
            .field("breaker", &self.inner.breaker)
            .finish_non_exhaustive()
    }
}

impl RedisClient {
    pub(crate) fn from_parts(inner: Inner, timeout: Duration) -> Self {
        RedisClient {
            inner: Arc::new(inner),
            timeout,
        }
    }

    /// The client's name (its breaker's name, the `client` label of its
    /// metrics and logs).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The breaker in front of Redis.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.inner.breaker
    }

    /// A snapshot of the counters (shared by every clone and handle).
    pub fn stats(&self) -> RedisClientStats {
        self.inner.stats.snapshot()
    }

    /// Whether this talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.inner.cluster
    }

    /// Whether a connection is open now (a user's connection always counts
    /// as open: it reconnects by itself).
    pub fn is_connected(&self) -> bool {
        self.inner.link.is_connected()
    }

    /// How long a command on this handle may take.
    pub fn command_timeout(&self) -> Duration {
        self.timeout
    }

    /// A handle on the same connection, breaker and statistics whose
    /// commands time out after `d`. A zero `d` keeps the current timeout.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use levee_redis::RedisClient;
    ///
    /// let client = RedisClient::standalone("redis://127.0.0.1:6379").build()?;
    /// let fast = client.with_command_timeout(Duration::from_millis(20));
    /// assert_eq!(fast.command_timeout(), Duration::from_millis(20));
    /// assert_eq!(client.command_timeout(), Duration::from_millis(500));
    /// # Ok::<(), levee_redis::RedisError>(())
    /// ```
    pub fn with_command_timeout(&self, d: Duration) -> RedisClient {
        RedisClient {
            inner: self.inner.clone(),
            timeout: if d.is_zero() { self.timeout } else { d },
        }
    }

    /// Sends `request` through the breaker, under the timeout.
    pub(crate) async fn exec(&self, request: Request<'_>) -> Result<redis::Value, RedisError> {
        let inner = &*self.inner;
        let permit = match inner.breaker.try_acquire() {
            Ok(p) => p,
            Err(rejected) => {
                inner.stats.rejected();
                #[cfg(feature = "metrics")]
                inner.metrics.rejected();
                return Err(RedisError::BreakerOpen {
                    retry_after: rejected.retry_after,
                });
            }
        };
        inner.stats.attempt();
        #[cfg(feature = "metrics")]
        let started = std::time::Instant::now();
        let result =
            match tokio::time::timeout(self.timeout, inner.link.send(&request, &inner.stats)).await
            {
                Ok(r) => r,
                Err(_) => Err(RedisError::Timeout {
                    after: self.timeout,
                }),
            };
        let outcome = result.as_ref().map(|_| ());
        inner.stats.outcome(outcome);
        #[cfg(feature = "metrics")]
        inner.metrics.call(started.elapsed(), outcome);
        let probe = permit.is_probe();
        match outcome {
            // Only the transport counts: an error reply means Redis is up.
            Err(e) if e.is_transport() => permit.failure(),
            _ => permit.success(),
        }
        if probe && result.as_ref().is_err_and(RedisError::is_timeout) {
            inner.link.probe_timed_out();
        }
        result
    }

    async fn cmd(&self, cmd: &redis::Cmd) -> Result<Reply, RedisError> {
        Reply::from_value(self.exec(Request::Cmd(cmd)).await?)
    }

    /// Runs any command. Like every call, it is sent once more on a fresh
    /// connection when the first send finds its connection gone; if the
    /// connection broke after Redis ran it, it runs twice, so prefer
    /// idempotent commands (or accept a rare duplicate).
    pub async fn command(&self, command: &Command) -> Result<Reply, RedisError> {
        Reply::from_value(self.exec(Request::Cmd(&command.cmd)).await?)
    }

    /// `GET key`.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, RedisError> {
        self.cmd(sized("GET", 2, key.len()).arg(key))
            .await?
            .into_bytes()
    }

    /// `GET` of `key` in `space` (the key [`Keyspace::key`] builds),
    /// written straight into the command: no key allocated.
    pub async fn get_in<K: RedisKey + Sync + ?Sized>(
        &self,
        space: &Keyspace,
        key: &K,
    ) -> Result<Option<Vec<u8>>, RedisError> {
        let cmd = Command::get_in(space, key);
        // `exec`, not `cmd`: one future less around the call.
        Reply::from_value(self.exec(Request::Cmd(&cmd.cmd)).await?)?.into_bytes()
    }

    /// `SET key value PX ttl` (the TTL in whole milliseconds, at least 1).
    pub async fn set_px(&self, key: &[u8], value: &[u8], ttl: Duration) -> Result<(), RedisError> {
        let mut cmd = sized("SET", 5, key.len() + value.len() + 2 + 20);
        cmd.arg(key).arg(value).arg("PX").arg(px(ttl));
        self.cmd(&cmd).await.map(drop)
    }

    /// `SET key value NX PX ttl`: whether the key was set (it did not
    /// exist).
    pub async fn set_nx_px(
        &self,
        key: &[u8],
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, RedisError> {
        let mut cmd = sized("SET", 6, key.len() + value.len() + 4 + 20);
        cmd.arg(key).arg(value).arg("NX").arg("PX").arg(px(ttl));
        Ok(!self.cmd(&cmd).await?.is_nil())
    }

    /// `DEL key`: how many keys were deleted.
    pub async fn del(&self, key: &[u8]) -> Result<i64, RedisError> {
        self.cmd(sized("DEL", 2, key.len()).arg(key))
            .await?
            .into_int()
    }

    /// `PUBLISH channel payload`: how many subscribers received it (on a
    /// Cluster, those of the node it went to).
    pub async fn publish(&self, channel: &str, payload: &[u8]) -> Result<i64, RedisError> {
        self.cmd(
            sized("PUBLISH", 3, channel.len() + payload.len())
                .arg(channel)
                .arg(payload),
        )
        .await?
        .into_int()
    }
}

/// The command `name` with room for `args` arguments (the name included)
/// and `bytes` bytes of them besides the name: `redis::cmd` starts from
/// empty buffers, and growing them costs two reallocations a command.
pub(crate) fn sized(name: &str, args: usize, bytes: usize) -> redis::Cmd {
    let mut cmd = redis::Cmd::with_capacity(args, name.len() + bytes);
    cmd.arg(name);
    cmd
}

/// `d` in whole milliseconds for `PX`: saturating, at least 1 (`PX 0` is an
/// error).
pub(crate) fn px(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sized_command_packs_as_the_drivers_own() {
        let mut set = sized("SET", 5, 0);
        set.arg(b"k".as_slice())
            .arg(b"v".as_slice())
            .arg("PX")
            .arg(7u64);
        let plain = redis::cmd("SET")
            .arg(b"k".as_slice())
            .arg(b"v".as_slice())
            .arg("PX")
            .arg(7u64)
            .clone();
        assert_eq!(set.get_packed_command(), plain.get_packed_command());
        let get = sized("GET", 2, 1).arg(b"k".as_slice()).get_packed_command();
        assert_eq!(
            get,
            redis::cmd("GET").arg(b"k".as_slice()).get_packed_command()
        );
    }

    #[test]
    fn px_is_at_least_one_millisecond() {
        assert_eq!(px(Duration::ZERO), 1);
        assert_eq!(px(Duration::from_micros(1500)), 1);
        assert_eq!(px(Duration::from_secs(2)), 2000);
    }
}
