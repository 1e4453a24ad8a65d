//! [`PerCredential`]: an upstream quota kept per credential rather than
//! per request key, as upstreams count calls per token.

use std::time::Duration;

use http::{HeaderMap, StatusCode};
use levee_core::{RedisKey, SensitiveKey};
use levee_limit::QuotaState;

use super::key::RequestKey;
use crate::UpstreamQuotaPort;

/// The credential of a request: the keyed hash of its `Authorization`
/// (see [`RequestKey`]), or none. Its Redis encoding is the hash in hex,
/// or `-` without one, so a `SharedUpstreamQuota<Credential>` works too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Credential(pub Option<SensitiveKey>);

impl RedisKey for Credential {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        match &self.0 {
            Some(hash) => hash.write_redis_key(out),
            None => out.push(b'-'),
        }
    }
}

/// An upstream quota consulted and taught per [`Credential`]: a 429 (or
/// `x-ratelimit-remaining: 0`) for one token holds back every request with
/// that token, whatever its URI, and no request with another token. Give
/// it to [`LeveeBuilder::upstream_quota`](crate::LeveeBuilder::upstream_quota)
/// of a [`LeveeLayer::pipeline`](super::LeveeLayer::pipeline).
///
/// ```
/// use levee::client::{Credential, LeveeLayer, PerCredential};
/// use levee::limit::UpstreamQuota;
///
/// let pipeline = LeveeLayer::pipeline("idp")
///     .upstream_quota(PerCredential::new(UpstreamQuota::<Credential>::builder().build()))
///     .build()?;
/// # Ok::<(), levee::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct PerCredential<Q>(Q);

impl<Q> PerCredential<Q> {
    /// Keys `quota` by each request's credential.
    pub fn new(quota: Q) -> Self {
        PerCredential(quota)
    }
}

#[async_trait::async_trait]
impl<Q: UpstreamQuotaPort<Credential>> UpstreamQuotaPort<RequestKey> for PerCredential<Q> {
    async fn check(&self, key: &RequestKey) -> QuotaState {
        self.0.check(&Credential(key.credential().copied())).await
    }

    async fn observe(&self, key: &RequestKey, status: StatusCode, headers: &HeaderMap) {
        self.0
            .observe(&Credential(key.credential().copied()), status, headers)
            .await
    }

    async fn hold(&self, key: &RequestKey, d: Option<Duration>) {
        self.0.hold(&Credential(key.credential().copied()), d).await
    }
}
