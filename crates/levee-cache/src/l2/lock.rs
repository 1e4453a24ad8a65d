//! The cross-replica load lock: `SET NX PX` on a key of its own, so one
//! replica loads a missing value while the others wait for it on L2.

use std::time::Duration;

use super::RedisL2;
use crate::tiered::slot::millis;

/// Deletes the lock only if it still holds this replica's token (it may
/// have expired and been taken by another replica meanwhile).
const RELEASE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/// `Some(true)`: taken; `Some(false)`: held by someone else; `None`: Redis
/// unavailable.
pub(super) async fn acquire(l2: &RedisL2, key: &[u8], token: u64, hold: Duration) -> Option<bool> {
    let cmd = redis::cmd("SET")
        .arg(key)
        .arg(token.to_string())
        .arg("NX")
        .arg("PX")
        .arg(millis(hold).max(1))
        .clone();
    l2.run::<Option<String>>(cmd)
        .await
        .ok()
        .map(|r| r.is_some())
}

pub(super) async fn release(l2: &RedisL2, key: &[u8], token: u64) {
    let cmd = redis::cmd("EVAL")
        .arg(RELEASE)
        .arg(1)
        .arg(key)
        .arg(token.to_string())
        .clone();
    let _ = l2.run::<i64>(cmd).await;
}
