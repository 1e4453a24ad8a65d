//! [`SharedUpstreamQuota`]: holds learned by one replica reach all of them.

use std::hash::Hash;
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use levee_core::RedisKey;
use levee_redis::{Keyspace, RedisClient};

use super::{Learned, QuotaState, UpstreamQuota, unix_millis_after};

/// A Redis command's budget unless [`SharedUpstreamQuota::timeout`] sets
/// another: a check sits on the caller's path.
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);

/// An [`UpstreamQuota`] whose holds are also written to Redis (a key per
/// held-back key, expiring with the hold), so that what one replica learns
/// holds back every replica.
///
/// `check` answers from the local tracker first; only when nothing is held
/// locally does it read Redis (one `GET`, under the quota's
/// [`timeout`](Self::timeout), 50 ms by default), and a hold found there is
/// copied locally so later checks skip the round trip. If Redis
/// fails, or the client's breaker is open (then Redis is not asked at all),
/// `check` answers from local knowledge alone (Ready when nothing is known)
/// and `observe` still records locally. Nothing is logged per call.
#[derive(Clone)]
pub struct SharedUpstreamQuota<K> {
    local: UpstreamQuota<K>,
    client: RedisClient,
    keys: Keyspace,
}

impl<K: Hash + Eq> std::fmt::Debug for SharedUpstreamQuota<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedUpstreamQuota")
            .field("local", &self.local)
            .field("keys", &self.keys)
            .finish()
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + RedisKey + 'static> SharedUpstreamQuota<K> {
    /// Shares `local`'s holds through `client` under keys `{prefix}:{<key>}`,
    /// each Redis command under 50 ms (see [`timeout`](Self::timeout)).
    pub fn new(local: UpstreamQuota<K>, client: RedisClient, prefix: impl Into<String>) -> Self {
        SharedUpstreamQuota {
            local,
            // One timer per Redis call: the handle's.
            client: client.with_command_timeout(DEFAULT_TIMEOUT),
            keys: Keyspace::new([prefix.into()]),
        }
    }

    /// The budget for each Redis command (`check`'s `GET`, `observe`'s
    /// `SET`), on a handle on the client with this timeout; the client's
    /// other users keep theirs. A zero `d` keeps the current one. Default:
    /// 50 ms.
    ///
    /// On a Redis Cluster a redirected command takes more than one round
    /// trip within this budget: while its slot migrates, a `GET` of a key
    /// the old node no longer holds is answered `ASK`, then sent again as
    /// `ASKING` and `GET` to the new node (three round trips); after the
    /// move, a `MOVED` holds the client's commands while it reloads the
    /// slot map. A command that runs out of time answers from local
    /// knowledge, like any Redis failure.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use levee_limit::UpstreamQuota;
    /// use levee_redis::RedisClient;
    ///
    /// let client = RedisClient::standalone("redis://127.0.0.1:6379").build()?;
    /// let quota = UpstreamQuota::<String>::builder()
    ///     .build()
    ///     .redis(client, "idp")
    ///     .timeout(Duration::from_millis(200));
    /// assert_eq!(quota.client().command_timeout(), Duration::from_millis(200));
    /// # Ok::<(), levee_redis::RedisError>(())
    /// ```
    #[must_use]
    pub fn timeout(mut self, d: Duration) -> Self {
        self.client = self.client.with_command_timeout(d);
        self
    }

    /// The client (with this quota's timeout): its breaker and stats.
    pub fn client(&self) -> &RedisClient {
        &self.client
    }

    /// Learns from a response, and shares a resulting hold through Redis.
    pub async fn observe(&self, key: &K, status: StatusCode, headers: &HeaderMap) -> Learned {
        let learned = self.local.observe(key, status, headers);
        if let Some(d) = self.local.hold_for(&learned) {
            let until = unix_millis_after(&self.local.inner.clock, d).to_string();
            // A hold Redis could not take stays local (already recorded);
            // the client logs its own state changes, not each call.
            let _ = self
                .client
                .set_px(&self.keys.tagged(key), until.as_bytes(), d)
                .await;
        }
        learned
    }

    /// Whether a call for `key` should go out now, across replicas.
    pub async fn check(&self, key: &K) -> QuotaState {
        if let held @ QuotaState::HoldBack { .. } = self.local.check(key) {
            return held;
        }
        let stored = self.client.get(&self.keys.tagged(key)).await;
        let until_ms = match stored.map(|v| v.and_then(|b| parse_u64(&b))) {
            Ok(Some(ms)) => ms,
            // Nothing shared, something unreadable, or Redis unavailable:
            // answer from local knowledge.
            Ok(None) | Err(_) => return QuotaState::Ready,
        };
        let now_ms = unix_millis_after(&self.local.inner.clock, Duration::ZERO);
        if until_ms <= now_ms {
            return QuotaState::Ready;
        }
        // A value written by another replica: capped like a local hold.
        let d = self
            .local
            .hold(key, Duration::from_millis(until_ms - now_ms));
        QuotaState::HoldBack { retry_after: d }
    }
}

fn parse_u64(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}
