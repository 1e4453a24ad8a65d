//! The invalidation backplane: `invalidate` publishes the key on the cache's
//! Redis channel and every replica drops its L1 copy. A replica that was not
//! subscribed for a while (Redis down, connection lost) may have missed
//! messages, so when it subscribes again it drops its whole L1. The
//! subscription itself (resubscribing after losses) is `levee-redis`'s.
//! Messages are laid out in [`message`](super::message).

use super::message;

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

pub(crate) fn handle(receiver: &dyn Receiver, payload: &[u8]) {
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

/// Hands a pub/sub event to a receiver (the cache's `Subscriber` impl).
pub(crate) fn subscribed(receiver: &dyn Receiver, after_gap: bool) {
    if after_gap {
        receiver.drop_all(true);
    }
    receiver.set_subscribed(true);
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
