//! The L2 side of a load: reading L2 (and promoting what it holds to L1
//! with the times it was stored with), writing loaded values to it, and
//! waiting for another replica that holds the load lock.

use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::slot::{Now, Slot};
use super::{Cached, Freshness, Shared, Source};
use crate::l2::envelope::EnvelopeAge;
use crate::l2::{Envelope, L2Read};

/// What waiting on the cross-replica load lock gave.
pub(crate) enum Waited<V> {
    /// Another replica's value appeared on L2 (or L1 could answer).
    Found(Option<Cached<V>>),
    /// This replica holds the lock (with this token): it loads.
    Locked(u64),
    /// No lock (none configured, Redis unavailable, or the wait ran out):
    /// load anyway.
    Load,
}

impl<K, V> Shared<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Sends invalidations that could not reach Redis before: each key's
    /// L2 delete and backplane message, or one invalidate-all. Stops at
    /// the first failure and returns what is still unsent.
    pub(crate) async fn send_pending(
        &self,
        batch: super::pending::Batch<K>,
    ) -> super::pending::Batch<K> {
        use super::pending::Batch;
        let Some(l2) = &self.l2 else {
            return Batch {
                keys: Vec::new(),
                all: false,
            };
        };
        let backplane = self.keys.is_some();
        if batch.all
            && backplane
            && !l2
                .publish(crate::l2::message::all_message(self.replica_id))
                .await
        {
            return batch;
        }
        let mut keys = batch.keys.into_iter();
        while let Some(key) = keys.next() {
            let sent = l2.delete(&key).await
                && (!backplane
                    || l2
                        .publish(crate::l2::message::key_message(
                            self.replica_id,
                            &l2.key_bytes(&key),
                        ))
                        .await);
            if !sent {
                return Batch {
                    keys: std::iter::once(key).chain(keys).collect(),
                    all: false,
                };
            }
        }
        Batch {
            keys: Vec::new(),
            all: false,
        }
    }

    /// A fresh answer from L2, or from an L1 copy that was only due for a
    /// check with an L2 that cannot answer. A stale L2 value is put in L1
    /// so that it can be served if the load fails.
    pub(crate) async fn ask_l2(
        &self,
        key: &K,
        newer_than: Option<u64>,
        token: &AtomicBool,
    ) -> Option<Option<Cached<V>>> {
        let l2 = self.l2.as_ref()?;
        let req = l2.read_request(key);
        let got = req.send().await;
        let read = l2.read_decode(&req, got);
        self.take_l2_read(key, read, newer_than, token)
    }

    /// What an L2 read of `key` gives (see [`ask_l2`](Self::ask_l2)).
    pub(crate) fn take_l2_read(
        &self,
        key: &K,
        read: L2Read<V>,
        newer_than: Option<u64>,
        token: &AtomicBool,
    ) -> Option<Option<Cached<V>>> {
        let now = Now::of(&*self.clock);
        match read {
            L2Read::Hit(env) => {
                let age = env.age_at(now.wall_ms);
                let newer = newer_than.is_none_or(|t| env.written_at > t);
                let slot = slot_of(env, now);
                match age {
                    EnvelopeAge::Fresh(_) if newer => {
                        let cached = slot.cached(Freshness::Fresh, Source::L2);
                        self.promote(key, slot, now.mono, token);
                        self.stats.hit_l2();
                        return Some(cached);
                    }
                    EnvelopeAge::Stale(_) if slot.value.is_some() => {
                        let newer_than_held = self
                            .l1
                            .peek(key, |held, _| held.fresh_until < slot.fresh_until)
                            .unwrap_or(true);
                        if newer_than_held {
                            self.promote(key, slot, now.mono, token);
                        }
                    }
                    _ => {}
                }
                None
            }
            L2Read::Unavailable if newer_than.is_none() => {
                let held = self.l1.get_entry(key)?;
                if !held.value.is_fresh(now.mono) {
                    return None;
                }
                self.put_l1(key, held.value.clone());
                Some(held.value.cached(Freshness::Fresh, Source::L1))
            }
            L2Read::Unavailable | L2Read::Miss => None,
        }
    }

    fn promote(&self, key: &K, slot: Slot<V>, now: Instant, token: &AtomicBool) {
        if !token.load(Ordering::SeqCst) {
            self.put_l1_at(key, slot, now);
            if token.load(Ordering::SeqCst) {
                self.l1.invalidate(key);
            }
        }
    }

    /// Writes `slot` to L2, expiring when its last stale tier ends.
    pub(crate) async fn put_l2(&self, key: &K, slot: &Slot<V>) {
        let Some(l2) = &self.l2 else { return };
        let (env, expire) = envelope_of(slot);
        l2.write(key, &env, expire).await;
    }

    /// Writes each slot to L2 like [`put_l2`](Self::put_l2), in one
    /// pipeline.
    pub(crate) async fn put_l2_many(&self, items: &[(&K, &Slot<V>)]) {
        let Some(l2) = &self.l2 else { return };
        if items.is_empty() {
            return;
        }
        let envs: Vec<_> = items
            .iter()
            .map(|(k, slot)| {
                let (env, expire) = envelope_of(slot);
                (*k, env, expire)
            })
            .collect();
        l2.write_many(&envs).await;
    }

    /// With `load_lock` set: takes the lock, or waits (bounded) for the
    /// replica holding it to put its value on L2. If that replica lets the
    /// lock go without a value (its load failed) or dies (the lock expires),
    /// this replica takes the lock and loads: loads stay one at a time
    /// across replicas, and nobody waits out the whole bound for nothing.
    pub(crate) async fn await_other_replica(
        &self,
        key: &K,
        newer_than: Option<u64>,
        token: &AtomicBool,
    ) -> Waited<V> {
        let (Some(l2), Some(wait)) = (&self.l2, self.cfg.load_lock) else {
            return Waited::Load;
        };
        let id = self.rng.next_u64();
        match l2.lock(key, id, wait).await {
            Some(true) => return Waited::Locked(id),
            None => return Waited::Load,
            Some(false) => {}
        }
        let deadline = tokio::time::Instant::from_std(levee_core::duration::instant_after(
            tokio::time::Instant::now().into_std(),
            wait,
        ));
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Waited::Load;
            }
            tokio::time::sleep(self.cfg.load_lock_poll.min(left)).await;
            if let Some(found) = self.ask_l2(key, newer_than, token).await {
                return Waited::Found(found);
            }
            if l2.lock(key, id, wait).await == Some(true) {
                return Waited::Locked(id);
            }
        }
    }
}

/// The envelope `slot` is stored in on L2, and its Redis expiry.
fn envelope_of<V: Clone>(slot: &Slot<V>) -> (Envelope<V>, Duration) {
    let env = Envelope {
        written_at: slot.written_at_ms,
        fresh_until: slot.fresh_until_ms,
        stale_until: slot.stale_until_ms,
        load_ms: u32::try_from(slot.load_time.as_millis()).unwrap_or(u32::MAX),
        value: slot.value.clone(),
    };
    let expire = Duration::from_millis(slot.stale_until_ms.saturating_sub(slot.written_at_ms));
    (env, expire)
}

fn slot_of<V>(env: Envelope<V>, now: Now) -> Slot<V> {
    Slot::from_wall(
        env.value,
        now,
        [env.written_at, env.fresh_until, env.stale_until],
        Duration::from_millis(u64::from(env.load_ms)),
    )
}

#[cfg(feature = "redis")]
impl<K, V> crate::l2::backplane::Receiver for Shared<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn replica_id(&self) -> u64 {
        self.replica_id
    }

    fn drop_key(&self, key: &[u8]) {
        let Some(keys) = &self.keys else { return };
        // The index's guard must be gone before L1 reports the removal to
        // the listener that edits the index.
        let found = keys.get(key).map(|e| e.value().clone());
        if let Some(k) = found {
            // Counted first: whoever sees the copy gone sees it counted.
            self.stats.backplane_invalidation();
            self.flights.invalidate(&k);
            self.l1.invalidate(&k);
        }
    }

    fn drop_all(&self, after_gap: bool) {
        self.flights.invalidate_all();
        self.l1.invalidate_all();
        if after_gap {
            self.stats.backplane_resync();
        }
    }

    fn set_subscribed(&self, up: bool) {
        self.subscribed.store(up, Ordering::Relaxed);
    }
}

#[cfg(feature = "redis")]
impl<K, V> levee_redis::Subscriber for Shared<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn on_message(&self, payload: &[u8]) {
        crate::l2::backplane::handle(self, payload);
    }

    fn on_subscribed(&self, after_gap: bool) {
        crate::l2::backplane::subscribed(self, after_gap);
    }

    fn on_lost(&self) {
        use crate::l2::backplane::Receiver;
        self.set_subscribed(false);
    }
}
