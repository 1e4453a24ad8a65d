//! The invalidation backplane: `invalidate` publishes the key on the cache's
//! Redis channel and every replica drops its L1 copy. A replica that was not
//! subscribed for a while (Redis down, connection lost) may have missed
//! messages, so when it subscribes again it drops its whole L1.
//! Messages are laid out in [`message`](super::message).

use std::sync::Weak;
use std::time::Duration;

use futures_util::StreamExt;
use levee_core::redis::RedisConfig;

use super::message;

/// Retry delays while the subscription cannot be opened.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// How often a quiet subscription is checked with `PING`, and how long the
/// answer may take before the connection is taken for dead.
const PING_EVERY: Duration = Duration::from_secs(5);
const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// What a replica does with backplane messages.
pub(crate) trait Receiver: Send + Sync + 'static {
    /// This replica's id: its own messages are skipped.
    fn replica_id(&self) -> u64;
    /// Another replica invalidated the key with these bytes.
    fn drop_key(&self, key: &[u8]);
    /// Drop every L1 entry (after a gap, or on an `invalidate_all`).
    fn drop_all(&self, after_gap: bool);
    /// The subscription is up (`true`) or down.
    fn set_subscribed(&self, up: bool);
}

fn handle(receiver: &dyn Receiver, payload: &[u8]) {
    if payload.len() < 9 {
        tracing::debug!("ignoring a malformed backplane message");
        return;
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&payload[..8]);
    if u64::from_be_bytes(id) == receiver.replica_id() {
        return;
    }
    match payload[8] {
        message::KIND_KEY => receiver.drop_key(&payload[9..]),
        message::KIND_ALL => receiver.drop_all(false),
        _ => tracing::debug!("ignoring a backplane message of an unknown kind"),
    }
}

/// Listens on `channel` until `receiver` is gone, resubscribing after
/// losses and dropping the whole L1 after each gap.
pub(crate) async fn listen(config: RedisConfig, channel: String, receiver: Weak<dyn Receiver>) {
    let mut first = true;
    let mut delay = RETRY_MIN;
    while receiver.strong_count() > 0 {
        match subscribe(&config, &channel).await {
            Ok(pubsub) => {
                let Some(r) = receiver.upgrade() else { return };
                if !first {
                    r.drop_all(true);
                }
                r.set_subscribed(true);
                drop(r);
                first = false;
                delay = RETRY_MIN;
                pump(pubsub, &receiver).await;
                if let Some(r) = receiver.upgrade() {
                    r.set_subscribed(false);
                }
            }
            Err(e) => {
                first = false;
                tracing::debug!(error = %e, %channel, "backplane subscription failed; retrying");
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RETRY_MAX);
    }
}

async fn subscribe(
    config: &RedisConfig,
    channel: &str,
) -> Result<redis::aio::PubSub, redis::RedisError> {
    let mut pubsub = config.open_pubsub().await?;
    match tokio::time::timeout(PING_TIMEOUT, pubsub.subscribe(channel)).await {
        Ok(Ok(())) => Ok(pubsub),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "SUBSCRIBE timed out",
        ))),
    }
}

/// Hands messages to the receiver until the connection ends or stops
/// answering pings.
async fn pump(pubsub: redis::aio::PubSub, receiver: &Weak<dyn Receiver>) {
    let (mut sink, mut stream) = pubsub.split();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.reset();
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = msg else { return };
                let Some(r) = receiver.upgrade() else { return };
                handle(&*r, msg.get_payload_bytes());
            }
            _ = ping.tick() => {
                let answered = tokio::time::timeout(PING_TIMEOUT, sink.ping::<redis::Value>()).await;
                if !matches!(answered, Ok(Ok(_))) {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::l2::message::{all_message, key_message};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Seen(Mutex<Vec<String>>);

    impl Receiver for Seen {
        fn replica_id(&self) -> u64 {
            7
        }
        fn drop_key(&self, key: &[u8]) {
            self.0
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(key).into());
        }
        fn drop_all(&self, after_gap: bool) {
            self.0.lock().unwrap().push(format!("all {after_gap}"));
        }
        fn set_subscribed(&self, _: bool) {}
    }

    #[test]
    fn messages_from_others_are_applied_and_own_ones_skipped() {
        let seen = Seen::default();
        handle(&seen, &key_message(1, b"user:1"));
        handle(&seen, &key_message(7, b"mine"));
        handle(&seen, &all_message(2));
        handle(&seen, b"short");
        handle(&seen, &[0, 0, 0, 0, 0, 0, 0, 1, b'?']);
        assert_eq!(*seen.0.lock().unwrap(), ["user:1", "all false"]);
    }
}
