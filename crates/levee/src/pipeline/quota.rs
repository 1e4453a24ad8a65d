//! [`UpstreamQuotaPort`]: what the pipeline needs of an upstream quota,
//! implemented by the local `UpstreamQuota` and the shared
//! `SharedUpstreamQuota`.

use std::hash::Hash;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, StatusCode};
use levee_limit::{QuotaState, UpstreamQuota};

/// An upstream quota a pipeline can consult and teach: an
/// [`UpstreamQuota`] (this process) or, with the `redis` feature, a
/// `SharedUpstreamQuota` (every replica).
#[async_trait::async_trait]
pub trait UpstreamQuotaPort<K: ?Sized + Sync>: Send + Sync + 'static {
    /// Whether a call for `key` should go out now.
    async fn check(&self, key: &K) -> QuotaState;

    /// Learns from one response's status and headers for `key`.
    async fn observe(&self, key: &K, status: StatusCode, headers: &HeaderMap);

    /// Holds `key` back for `d` (a classifier said "429" without headers
    /// the quota could read); shared the way an observed 429 would be.
    async fn hold(&self, key: &K, d: Option<Duration>) {
        let mut headers = HeaderMap::new();
        if let Some(d) = d {
            let secs = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        self.observe(key, StatusCode::TOO_MANY_REQUESTS, &headers)
            .await;
    }
}

#[async_trait::async_trait]
impl<K: Hash + Eq + Clone + Send + Sync + 'static> UpstreamQuotaPort<K> for UpstreamQuota<K> {
    async fn check(&self, key: &K) -> QuotaState {
        UpstreamQuota::check(self, key)
    }

    async fn observe(&self, key: &K, status: StatusCode, headers: &HeaderMap) {
        let _ = UpstreamQuota::observe(self, key, status, headers);
    }

    async fn hold(&self, key: &K, d: Option<Duration>) {
        match d {
            Some(d) => {
                UpstreamQuota::hold(self, key, d);
            }
            None => {
                let _ = UpstreamQuota::observe(
                    self,
                    key,
                    StatusCode::TOO_MANY_REQUESTS,
                    &HeaderMap::new(),
                );
            }
        }
    }
}

#[cfg(feature = "redis")]
#[async_trait::async_trait]
impl<K> UpstreamQuotaPort<K> for levee_limit::SharedUpstreamQuota<K>
where
    K: Hash + Eq + Clone + Send + Sync + levee_core::RedisKey + 'static,
{
    async fn check(&self, key: &K) -> QuotaState {
        levee_limit::SharedUpstreamQuota::check(self, key).await
    }

    async fn observe(&self, key: &K, status: StatusCode, headers: &HeaderMap) {
        let _ = levee_limit::SharedUpstreamQuota::observe(self, key, status, headers).await;
    }
}
