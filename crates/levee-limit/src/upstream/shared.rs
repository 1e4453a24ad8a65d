//! [`SharedUpstreamQuota`]: holds learned by one replica reach all of them.

use std::hash::Hash;
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use levee_core::RedisKey;
use levee_core::redis::RedisConnection;

use levee_core::duration::millis;

use super::{Learned, QuotaState, UpstreamQuota, unix_millis_after};

/// An [`UpstreamQuota`] whose holds are also written to Redis (a key per
/// held-back key, expiring with the hold), so that what one replica learns
/// holds back every replica.
///
/// `check` answers from the local tracker first; only when nothing is held
/// locally does it read Redis (one `GET`, under `timeout`), and a hold found
/// there is copied locally so later checks skip the round trip. If Redis
/// fails, `check` answers from local knowledge alone (Ready when nothing is
/// known) and `observe` still records locally.
#[derive(Clone)]
pub struct SharedUpstreamQuota<K> {
    local: UpstreamQuota<K>,
    conn: RedisConnection,
    prefix: String,
}

impl<K: Hash + Eq> std::fmt::Debug for SharedUpstreamQuota<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedUpstreamQuota")
            .field("local", &self.local)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + RedisKey + 'static> SharedUpstreamQuota<K> {
    /// Shares `local`'s holds through `conn` under keys `{prefix}:{<key>}`.
    pub fn new(local: UpstreamQuota<K>, conn: RedisConnection, prefix: impl Into<String>) -> Self {
        SharedUpstreamQuota {
            local,
            // Every Redis call under 50 ms, with one timer (the handle's).
            conn: conn.with_response_timeout(Duration::from_millis(50)),
            prefix: prefix.into(),
        }
    }

    fn redis_key(&self, key: &K) -> Vec<u8> {
        let mut out = self.prefix.as_bytes().to_vec();
        out.extend_from_slice(b":{");
        key.write_redis_key(&mut out);
        out.push(b'}');
        out
    }

    /// Learns from a response, and shares a resulting hold through Redis.
    pub async fn observe(&self, key: &K, status: StatusCode, headers: &HeaderMap) -> Learned {
        let learned = self.local.observe(key, status, headers);
        if let Some(d) = self.local.hold_for(&learned) {
            let until = unix_millis_after(&self.local.inner.clock, d);
            let ms = millis(d).max(1);
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.redis_key(key)).arg(until).arg("PX").arg(ms);
            let mut conn = self.conn.clone();
            if let Err(e) = cmd.query_async::<()>(&mut conn).await {
                tracing::warn!(error = %e, "levee: could not share an upstream hold through Redis");
            }
        }
        learned
    }

    /// Whether a call for `key` should go out now, across replicas.
    pub async fn check(&self, key: &K) -> QuotaState {
        if let held @ QuotaState::HoldBack { .. } = self.local.check(key) {
            return held;
        }
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.redis_key(key));
        let get = cmd.query_async::<Option<u64>>(&mut conn);
        let until_ms = match get.await {
            Ok(Some(ms)) => ms,
            Ok(None) => return QuotaState::Ready,
            Err(e) => {
                tracing::debug!(error = %e, "levee: upstream quota read from Redis failed; answering locally");
                return QuotaState::Ready;
            }
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
