//! The cross-replica load lock: `SET NX PX` on a key of its own, so one
//! replica loads a missing value while the others wait for it on L2.

use std::sync::LazyLock;
use std::time::Duration;

use levee_redis::Script;

use super::RedisL2;

/// Deletes the lock only if it still holds this replica's token (it may
/// have expired and been taken by another replica meanwhile).
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
    )
});

/// `Some(true)`: taken; `Some(false)`: held by someone else; `None`: Redis
/// unavailable.
pub(super) async fn acquire(l2: &RedisL2, key: &[u8], token: u64, hold: Duration) -> Option<bool> {
    let token = token.to_string();
    let taken = l2.client().set_nx_px(key, token.as_bytes(), hold).await;
    l2.note(taken).ok()
}

pub(super) async fn release(l2: &RedisL2, key: &[u8], token: u64) {
    let call = RELEASE.call().key(key).arg(token.to_string());
    let _ = l2.note(l2.client().eval(&call).await);
}

/// The locks of `keys` with one pipeline (one per slot on a Cluster): per
/// key as [`acquire`].
pub(super) async fn acquire_many(
    l2: &RedisL2,
    keys: &[Vec<u8>],
    token: u64,
    hold: Duration,
) -> Vec<Option<bool>> {
    let token = token.to_string();
    let mut pipe = levee_redis::Pipeline::new();
    for k in keys {
        pipe.set_nx_px(k, token.as_bytes(), hold);
    }
    let replies = l2.client().pipeline(&pipe).await;
    l2.note_many(replies, |_| {})
        .into_iter()
        .map(|r| r.map(|reply| !reply.is_nil()))
        .collect()
}

/// Releases the locks of `keys` that `token` still holds, in one pipeline.
pub(super) async fn release_many(l2: &RedisL2, keys: &[Vec<u8>], token: u64) {
    let token = token.to_string();
    let mut pipe = levee_redis::Pipeline::new();
    for k in keys {
        pipe.eval(&RELEASE.call().key(k.as_slice()).arg(token.as_str()));
    }
    let replies = l2.client().pipeline(&pipe).await;
    l2.note_many(replies, |_| {});
}
