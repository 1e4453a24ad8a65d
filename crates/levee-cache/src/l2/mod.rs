//! The shared second tier on Redis: [`RedisL2`], the envelope its values
//! are stored in, their [`Codec`], signing, the cross-replica load lock and
//! the invalidation backplane.
//!
//! A `TieredCache` reaches its L2 through [`L2Port`], a trait object, so
//! that the serde and [`RedisKey`] bounds are asked only of caches that have
//! an L2.

#[cfg(feature = "redis")]
pub(crate) mod backplane;
#[cfg(feature = "redis")]
mod canonical;
#[cfg(feature = "redis")]
mod codec;
pub(crate) mod envelope;
#[cfg(feature = "redis")]
mod lock;
pub(crate) mod message;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
mod signing;
mod stats;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

#[cfg(feature = "redis")]
pub use self::redis::{RedisL2, RedisL2Builder};
#[cfg(feature = "redis")]
pub(crate) use bound::Bound;
#[cfg(feature = "redis")]
pub use codec::Codec;
pub(crate) use envelope::Envelope;
pub use stats::RedisL2Stats;

/// A boxed, sendable future (what [`L2Port`]'s methods return).
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a read of L2 found.
#[derive(Debug)]
pub(crate) enum L2Read<V> {
    /// A usable envelope.
    Hit(Envelope<V>),
    /// Nothing usable (absent, corrupt, unknown version, bad signature).
    Miss,
    /// Redis could not be asked (error, timeout, breaker open).
    Unavailable,
}

/// A read of one key's envelope, ready to send ([`L2Port::read_request`]).
#[cfg(feature = "redis")]
pub(crate) struct ReadRequest<'a> {
    client: &'a levee_redis::RedisClient,
    get: levee_redis::Command,
    /// The Redis key, when a signature (which covers it) is to be checked.
    signed_key: Option<Vec<u8>>,
}

/// What sending a [`ReadRequest`] got.
#[cfg(feature = "redis")]
pub(crate) type Got = Result<levee_redis::Reply, levee_redis::RedisError>;

#[cfg(feature = "redis")]
impl ReadRequest<'_> {
    /// Sends the read.
    pub(crate) async fn send(&self) -> Got {
        self.client.command(&self.get).await
    }
}

/// Without the `redis` feature there is no L2 to read (no `L2Port`
/// exists to make a request).
#[cfg(not(feature = "redis"))]
pub(crate) struct ReadRequest<'a>(std::marker::PhantomData<&'a ()>);

/// Without the `redis` feature nothing is ever got.
#[cfg(not(feature = "redis"))]
pub(crate) type Got = ();

#[cfg(not(feature = "redis"))]
impl ReadRequest<'_> {
    pub(crate) async fn send(&self) -> Got {}
}

/// One cache's view of L2: its key space, its codec, its channel.
pub(crate) trait L2Port<K, V>: Send + Sync + 'static {
    /// The bytes `key` contributes to Redis keys (and backplane messages).
    fn key_bytes(&self, key: &K) -> Vec<u8>;
    /// The read of `key`'s envelope, to [`send`](ReadRequest::send) and
    /// then [`read_decode`](Self::read_decode): a read in three steps, of
    /// which only the send waits, and its future is the same type for
    /// every cache (no boxed future per read).
    fn read_request(&self, key: &K) -> ReadRequest<'_>;
    /// What the sent `req` found.
    fn read_decode(&self, req: &ReadRequest<'_>, got: Got) -> L2Read<V>;
    /// Writes the envelope of `key`, expiring after `expire`.
    fn write<'a>(
        &'a self,
        key: &'a K,
        env: &'a Envelope<V>,
        expire: Duration,
    ) -> BoxFuture<'a, bool>;
    /// Deletes `key`.
    fn delete<'a>(&'a self, key: &'a K) -> BoxFuture<'a, bool>;
    /// Tries to take the cross-replica load lock of `key` for `hold`:
    /// `Some(true)` taken, `Some(false)` held by another replica, `None`
    /// Redis unavailable.
    fn lock<'a>(&'a self, key: &'a K, token: u64, hold: Duration) -> BoxFuture<'a, Option<bool>>;
    /// Releases the lock of `key` if `token` still holds it.
    fn unlock<'a>(&'a self, key: &'a K, token: u64) -> BoxFuture<'a, ()>;
    /// Publishes `payload` on the cache's backplane channel.
    fn publish(&self, payload: Vec<u8>) -> BoxFuture<'_, bool>;
    /// Reads the envelopes of `keys` in one round trip (`MGET`), in order.
    fn read_many<'a>(&'a self, keys: &'a [&'a K]) -> BoxFuture<'a, Vec<L2Read<V>>>;
    /// Writes each `(key, envelope, expire)` in one pipeline (one per slot
    /// on a Cluster).
    fn write_many<'a>(&'a self, items: &'a [(&'a K, Envelope<V>, Duration)]) -> BoxFuture<'a, ()>;
    /// Tries to take the load locks of `keys` in one pipeline: per key as
    /// [`lock`](Self::lock).
    fn lock_many<'a>(
        &'a self,
        keys: &'a [&'a K],
        token: u64,
        hold: Duration,
    ) -> BoxFuture<'a, Vec<Option<bool>>>;
    /// Releases the locks of `keys` that `token` still holds, in one
    /// pipeline.
    fn unlock_many<'a>(&'a self, keys: &'a [&'a K], token: u64) -> BoxFuture<'a, ()>;
    /// The L2's counters.
    fn stats(&self) -> RedisL2Stats;
}

#[cfg(feature = "redis")]
mod bound {

    use std::time::Duration;

    use levee_core::RedisKey;
    use levee_redis::Keyspace;
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    use super::{
        BoxFuture, Codec, Envelope, Got, L2Port, L2Read, ReadRequest, RedisL2, RedisL2Stats, lock,
    };

    /// [`L2Port`] over a [`RedisL2`]: keys `{prefix}:{cache}:v{schema}:{key}`.
    pub(crate) struct Bound {
        l2: RedisL2,
        codec: Codec,
        values: Keyspace,
        locks: Keyspace,
        channel: String,
    }

    impl Bound {
        /// The backplane channel.
        pub(crate) fn channel(&self) -> &str {
            &self.channel
        }

        pub(crate) fn new(
            l2: RedisL2,
            codec: Codec,
            prefix: &str,
            cache: &str,
            schema: u32,
        ) -> Self {
            let schema = format!("v{schema}");
            Bound {
                l2,
                codec,
                values: Keyspace::new([prefix, cache, &schema]),
                locks: Keyspace::new([prefix, cache, "lock", &schema]),
                channel: Keyspace::new([prefix, cache]).name("invalidate"),
            }
        }
    }

    impl<K, V> L2Port<K, V> for Bound
    where
        K: RedisKey + Send + Sync + 'static,
        V: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        fn key_bytes(&self, key: &K) -> Vec<u8> {
            key.redis_key_bytes()
        }

        fn read_request(&self, key: &K) -> ReadRequest<'_> {
            self.l2.read_request(&self.values, key)
        }

        fn read_decode(&self, req: &ReadRequest<'_>, got: Got) -> L2Read<V> {
            self.l2.read_decode(req, got)
        }

        fn write<'a>(
            &'a self,
            key: &'a K,
            env: &'a Envelope<V>,
            expire: Duration,
        ) -> BoxFuture<'a, bool> {
            Box::pin(async move {
                let k = self.values.key(key);
                self.l2.write(&k, env, self.codec, expire).await.is_ok()
            })
        }

        fn delete<'a>(&'a self, key: &'a K) -> BoxFuture<'a, bool> {
            Box::pin(async move {
                let k = self.values.key(key);
                self.l2.delete(&k).await.is_ok()
            })
        }

        fn lock<'a>(
            &'a self,
            key: &'a K,
            token: u64,
            hold: Duration,
        ) -> BoxFuture<'a, Option<bool>> {
            Box::pin(async move {
                let k = self.locks.key(key);
                lock::acquire(&self.l2, &k, token, hold).await
            })
        }

        fn unlock<'a>(&'a self, key: &'a K, token: u64) -> BoxFuture<'a, ()> {
            Box::pin(async move {
                let k = self.locks.key(key);
                lock::release(&self.l2, &k, token).await;
            })
        }

        fn publish(&self, payload: Vec<u8>) -> BoxFuture<'_, bool> {
            Box::pin(async move {
                let published = self.l2.client().publish(&self.channel, &payload).await;
                self.l2.note(published).is_ok()
            })
        }

        fn stats(&self) -> RedisL2Stats {
            self.l2.stats()
        }

        fn read_many<'a>(&'a self, keys: &'a [&'a K]) -> BoxFuture<'a, Vec<L2Read<V>>> {
            Box::pin(async move {
                let ks: Vec<Vec<u8>> = keys.iter().map(|k| self.values.key(*k)).collect();
                self.l2.read_many(&ks).await
            })
        }

        fn write_many<'a>(
            &'a self,
            items: &'a [(&'a K, Envelope<V>, Duration)],
        ) -> BoxFuture<'a, ()> {
            Box::pin(async move {
                let items: Vec<_> = items
                    .iter()
                    .map(|(k, env, expire)| (self.values.key(*k), env, *expire))
                    .collect();
                self.l2.write_many(&items, self.codec).await;
            })
        }

        fn lock_many<'a>(
            &'a self,
            keys: &'a [&'a K],
            token: u64,
            hold: Duration,
        ) -> BoxFuture<'a, Vec<Option<bool>>> {
            Box::pin(async move {
                let ks: Vec<Vec<u8>> = keys.iter().map(|k| self.locks.key(*k)).collect();
                lock::acquire_many(&self.l2, &ks, token, hold).await
            })
        }

        fn unlock_many<'a>(&'a self, keys: &'a [&'a K], token: u64) -> BoxFuture<'a, ()> {
            Box::pin(async move {
                let ks: Vec<Vec<u8>> = keys.iter().map(|k| self.locks.key(*k)).collect();
                lock::release_many(&self.l2, &ks, token).await;
            })
        }
    }
}
