//! [`RedisL2`]: the shared second tier, on a `levee-redis` client (every
//! call under a timeout and behind the client's circuit breaker).

use std::sync::Arc;
use std::time::Duration;

use levee_breaker::CircuitBreaker;
use levee_core::RedisKey;
use levee_redis::{Keyspace, RedisClient, RedisError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::codec::{Codec, DecodeError};
use super::envelope::Envelope;
use super::signing::Signer;
use super::{Got, L2Read, ReadRequest, RedisL2Stats};
use crate::ConfigError;
use crate::counted::Counted;

/// A Redis-backed second cache tier, shared by every replica.
///
/// Give it to [`TieredCacheBuilder::l2`](crate::TieredCacheBuilder::l2).
/// Every Redis call is bounded by [`timeout`](RedisL2Builder::timeout) and
/// goes through the [`RedisClient`]'s circuit breaker: when Redis is down
/// the breaker opens and the cache stops calling it (serving from L1 and
/// the loader) until a probe finds it back. A value that does not decode, has an unknown format
/// version, is too large or fails its signature is a miss, counted in
/// [`stats`](Self::stats), never a panic.
///
/// Cheap to clone: clones share one client (connection and breaker) and
/// statistics; one `RedisL2` may serve several caches (each keeps its own
/// key space), and its client may serve other Redis users too (a limiter).
///
/// ```no_run
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use levee_cache::RedisL2;
/// use levee_redis::RedisClient;
///
/// let client = RedisClient::standalone("redis://127.0.0.1:6379").build()?;
/// let l2 = RedisL2::builder(client)
///     .timeout(Duration::from_millis(50))
///     .signing_key(b"a deployment secret from the vault".as_slice())
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisL2 {
    inner: Arc<Inner>,
}

struct Inner {
    /// Carries this L2's timeout (`RedisClient::with_command_timeout`).
    client: RedisClient,
    max_value_bytes: usize,
    signer: Option<Signer>,
    stats: Counters,
}

impl std::fmt::Debug for RedisL2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisL2")
            .field("name", &self.inner.stats.l2)
            .field("client", &self.inner.client)
            .field("timeout", &self.inner.client.command_timeout())
            .field("signed", &self.inner.signer.is_some())
            .finish_non_exhaustive()
    }
}

/// Builds a [`RedisL2`].
#[must_use]
pub struct RedisL2Builder {
    name: Arc<str>,
    client: RedisClient,
    timeout: Duration,
    max_value_bytes: usize,
    signer: Option<Signer>,
}

impl std::fmt::Debug for RedisL2Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisL2Builder")
            .field("timeout", &self.timeout)
            .field("max_value_bytes", &self.max_value_bytes)
            .finish_non_exhaustive()
    }
}

impl RedisL2Builder {
    /// The name in this L2's metrics (label `l2`). Default:
    /// `levee-cache-l2`; name each L2 when several run in one process. (The
    /// breaker is the client's, named after the client.)
    ///
    /// ```
    /// use levee_cache::RedisL2;
    /// use levee_redis::RedisClient;
    ///
    /// // Connections open lazily: nothing is asked of Redis here.
    /// let client = RedisClient::standalone("redis://127.0.0.1:6379").name("cache-redis").build()?;
    /// let l2 = RedisL2::builder(client).name("userinfo-l2").build()?;
    /// assert_eq!(l2.breaker().name(), "cache-redis");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn name(mut self, name: &str) -> Self {
        self.name = Arc::from(name);
        self
    }

    /// Each Redis call fails after this long (a handle on the client with
    /// this timeout; other users of the client keep theirs). Default: 50 ms.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// Larger values are neither written nor read (a miss). Default: 1 MiB.
    pub fn max_value_bytes(mut self, n: usize) -> Self {
        self.max_value_bytes = n;
        self
    }

    /// Signs every envelope with a MAC keyed by (a key derived from)
    /// `secret`, and rejects values whose MAC does not verify: a value
    /// written by anyone without the secret, or copied to another key, is a
    /// miss. The MAC is a keyed BLAKE3 hash over the Redis key and the
    /// envelope, appended as 32 raw bytes. Default: unsigned.
    pub fn signing_key(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.signer = Some(Signer::new(secret.as_ref()));
        self
    }

    /// Checks the settings and builds the L2.
    pub fn build(self) -> Result<RedisL2, ConfigError> {
        if self.timeout.is_zero() {
            return Err(ConfigError::new("timeout", "must be above zero"));
        }
        if self.max_value_bytes == 0 {
            return Err(ConfigError::new("max_value_bytes", "must be above zero"));
        }
        Ok(RedisL2 {
            inner: Arc::new(Inner {
                client: self.client.with_command_timeout(self.timeout),
                max_value_bytes: self.max_value_bytes,
                signer: self.signer,
                stats: Counters::new(&self.name),
            }),
        })
    }
}

/// The L2's counters; with the `metrics` feature each event is also counted
/// as `levee_cache_l2_events_total{l2, event}`.
pub(crate) struct Counters {
    /// The L2's name (`RedisL2Builder::name`).
    l2: Arc<str>,
    pub(crate) attempts: Counted,
    pub(crate) hits: Counted,
    pub(crate) misses: Counted,
    pub(crate) writes: Counted,
    pub(crate) errors: Counted,
    pub(crate) timeouts: Counted,
    pub(crate) rejected: Counted,
    pub(crate) corrupt: Counted,
    pub(crate) unknown_version: Counted,
    pub(crate) oversized: Counted,
    pub(crate) bad_signature: Counted,
}

impl Counters {
    /// Counters at zero for the L2 named `l2`.
    fn new(l2: &Arc<str>) -> Self {
        let c = |event| Counted::new("levee_cache_l2_events_total", ("l2", l2), ("event", event));
        Counters {
            l2: Arc::clone(l2),
            attempts: c("attempt"),
            hits: c("hit"),
            misses: c("miss"),
            writes: c("write"),
            errors: c("error"),
            timeouts: c("timeout"),
            rejected: c("rejected"),
            corrupt: c("corrupt"),
            unknown_version: c("unknown_version"),
            oversized: c("oversized"),
            bad_signature: c("bad_signature"),
        }
    }
}

/// Redis could not be asked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unavailable;

impl RedisL2 {
    /// A builder over `client` (its breaker, shared with the client's
    /// other users, guards this L2).
    pub fn builder(client: RedisClient) -> RedisL2Builder {
        RedisL2Builder {
            name: Arc::from("levee-cache-l2"),
            client,
            timeout: Duration::from_millis(50),
            max_value_bytes: 1 << 20,
            signer: None,
        }
    }

    /// The breaker in front of Redis (the client's).
    pub fn breaker(&self) -> &CircuitBreaker {
        self.inner.client.breaker()
    }

    /// The client, with this L2's timeout.
    pub fn client(&self) -> &RedisClient {
        &self.inner.client
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> RedisL2Stats {
        let s = &self.inner.stats;
        RedisL2Stats {
            attempts: s.attempts.get(),
            hits: s.hits.get(),
            misses: s.misses.get(),
            writes: s.writes.get(),
            errors: s.errors.get(),
            timeouts: s.timeouts.get(),
            rejected: s.rejected.get(),
            corrupt: s.corrupt.get(),
            unknown_version: s.unknown_version.get(),
            oversized: s.oversized.get(),
            bad_signature: s.bad_signature.get(),
        }
    }

    /// Counts how a call through the client ended; `Unavailable` for
    /// every error (the L2's fallback is a miss).
    pub(crate) fn note<T>(&self, result: Result<T, RedisError>) -> Result<T, Unavailable> {
        let s = &self.inner.stats;
        match result {
            Ok(v) => {
                s.attempts.bump();
                Ok(v)
            }
            Err(e) => {
                if e.is_breaker_open() {
                    s.rejected.bump();
                } else {
                    s.attempts.bump();
                    if e.is_timeout() {
                        s.timeouts.bump();
                    } else {
                        s.errors.bump();
                    }
                }
                Err(Unavailable)
            }
        }
    }

    /// The read of `key` in `space` (see [`L2Port::read_request`]): the
    /// key is written straight into the `GET`; a signed L2 also keeps it,
    /// for the signature.
    pub(crate) fn read_request<K: RedisKey + ?Sized>(
        &self,
        space: &Keyspace,
        key: &K,
    ) -> ReadRequest<'_> {
        ReadRequest {
            client: &self.inner.client,
            get: levee_redis::Command::get_in(space, key),
            signed_key: self.inner.signer.as_ref().map(|_| space.key(key)),
        }
    }

    /// What the sent `req` found.
    pub(crate) fn read_decode<V: DeserializeOwned>(
        &self,
        req: &ReadRequest<'_>,
        got: Got,
    ) -> L2Read<V> {
        let got = got.and_then(levee_redis::Reply::into_bytes);
        match self.note(got) {
            // Unsigned: `decode` reads no key.
            Ok(stored) => self.decode(req.signed_key.as_deref().unwrap_or_default(), stored),
            Err(Unavailable) => L2Read::Unavailable,
        }
    }

    /// Reads and decodes the envelopes under `keys` with one `MGET`.
    pub(crate) async fn read_many<V: DeserializeOwned>(&self, keys: &[Vec<u8>]) -> Vec<L2Read<V>> {
        if keys.is_empty() {
            return Vec::new();
        }
        match self.note(self.inner.client.mget(keys).await) {
            Ok(stored) => keys
                .iter()
                .zip(stored)
                .map(|(k, v)| self.decode(k, v))
                .collect(),
            Err(Unavailable) => keys.iter().map(|_| L2Read::Unavailable).collect(),
        }
    }

    /// What the bytes stored under `key` hold.
    fn decode<V: DeserializeOwned>(&self, key: &[u8], stored: Option<Vec<u8>>) -> L2Read<V> {
        let s = &self.inner.stats;
        let Some(stored) = stored else {
            s.misses.bump();
            return L2Read::Miss;
        };
        if stored.len() > self.inner.max_value_bytes {
            s.oversized.bump();
            return L2Read::Miss;
        }
        let payload = match &self.inner.signer {
            Some(signer) => match signer.verify(key, &stored) {
                Some(p) => p,
                None => {
                    s.bad_signature.bump();
                    return L2Read::Miss;
                }
            },
            None => &stored[..],
        };
        match Codec::decode(payload) {
            Ok(env) => {
                s.hits.bump();
                L2Read::Hit(env)
            }
            Err(DecodeError::Corrupt) => {
                s.corrupt.bump();
                L2Read::Miss
            }
            Err(DecodeError::UnknownVersion) => {
                s.unknown_version.bump();
                L2Read::Miss
            }
        }
    }

    /// Encodes (and signs) `env` and stores it under `key`, expiring after
    /// `expire` (Redis's expiry only collects garbage: freshness is read
    /// from the envelope).
    pub(crate) async fn write<V: Serialize>(
        &self,
        key: &[u8],
        env: &Envelope<V>,
        codec: Codec,
        expire: Duration,
    ) -> Result<(), Unavailable> {
        let Some(bytes) = self.encode(key, env, codec) else {
            return Ok(());
        };
        self.note(self.inner.client.set_px(key, &bytes, expire).await)?;
        let s = &self.inner.stats;
        s.writes.bump();
        Ok(())
    }

    /// Writes each `(key, envelope, expire)` like [`write`](Self::write),
    /// all in one pipeline (one per slot on a Cluster).
    pub(crate) async fn write_many<V: Serialize>(
        &self,
        items: &[(Vec<u8>, &Envelope<V>, Duration)],
        codec: Codec,
    ) {
        let mut pipe = levee_redis::Pipeline::new();
        for (key, env, expire) in items {
            if let Some(bytes) = self.encode(key, env, codec) {
                pipe.set_px(key, &bytes, *expire);
            }
        }
        let replies = self.inner.client.pipeline(&pipe).await;
        self.note_many(replies, |s| s.writes.bump());
    }

    /// Counts the replies of a pipeline as one call (its first error, if
    /// any), and `each` success; the replies, or `None` per failed command.
    pub(crate) fn note_many(
        &self,
        replies: Vec<Result<levee_redis::Reply, RedisError>>,
        each: impl Fn(&Counters),
    ) -> Vec<Option<levee_redis::Reply>> {
        if replies.is_empty() {
            return Vec::new();
        }
        let first_err = replies.iter().find_map(|r| r.as_ref().err()).cloned();
        let _ = self.note(first_err.map_or(Ok(()), Err));
        replies
            .into_iter()
            .map(|r| r.ok().inspect(|_| each(&self.inner.stats)))
            .collect()
    }

    /// `env` encoded and signed for `key`; `None` (and counted) when it
    /// cannot be encoded or is too large to store.
    fn encode<V: Serialize>(&self, key: &[u8], env: &Envelope<V>, codec: Codec) -> Option<Vec<u8>> {
        let s = &self.inner.stats;
        let mut bytes = match codec.encode(env) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "a value could not be encoded for L2; not stored");
                return None;
            }
        };
        if let Some(signer) = &self.inner.signer {
            signer.sign(key, &mut bytes);
        }
        if bytes.len() > self.inner.max_value_bytes {
            s.oversized.bump();
            return None;
        }
        Some(bytes)
    }

    /// Deletes `key`.
    pub(crate) async fn delete(&self, key: &[u8]) -> Result<(), Unavailable> {
        self.note(self.inner.client.del(key).await).map(drop)
    }
}
