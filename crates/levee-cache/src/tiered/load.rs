//! One load of a key: L2 first, then (under the optional cross-replica
//! lock) the loader on a task of its own, its result shared with every
//! caller that asked meanwhile.

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::flight::{FlightResult, FlightRx, FlightTx};
use super::remote::Waited;
use super::tasks::AbortOnDrop;
use super::{CacheError, Freshness, Loaded, Shared, Source, TieredCache};

impl<K, V> TieredCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Joins the load of `key`, or starts one. `newer_than` (unix ms): an
    /// early refresh takes an L2 value only if it was written after the
    /// one it refreshes.
    pub(super) fn start_load<F, Fut, E>(
        &self,
        key: K,
        load: F,
        newer_than: Option<u64>,
    ) -> FlightRx<K, V, E>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Loaded<V>, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        match self.shared.flights.join_or_lead::<V, E>(key) {
            Ok((rx, _)) => rx,
            Err(flight) => self.spawn_flight(load, flight, newer_than, false),
        }
    }

    /// For a caller that waits for the answer: joins the load of `key`, or
    /// leads a new one. A leader reads L2 on its own task first (a task
    /// spawn and a wake-up less on an L2 hit) and starts the load task only
    /// on a miss. A leader dropped during that read hands the whole load to
    /// a task, so callers that joined meanwhile still get their answer.
    /// The key is moved into the flight (an L2 hit copies it only for L1)
    /// and handed back to a caller that waits.
    pub(super) async fn lead_or_join<F, Fut, E>(&self, key: K, load: F) -> Led<K, V, E>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Loaded<V>, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        let flight = match self.shared.flights.join_or_lead::<V, E>(key) {
            Ok((rx, key)) => return Led::Waiting(rx, key),
            Err(flight) => flight,
        };
        // The caller missed L1 before registering; a load that finished in
        // between has put its value there (before ending its flight), so
        // look again rather than load the key a second time.
        if let super::InL1::Fresh(cached, _) = self.shared.look_in_l1(flight.key()) {
            self.shared.flights.finish(&flight);
            if flight.joined() {
                flight.send(Ok(cached.clone()));
            }
            return Led::Answered(cached);
        }
        if self.shared.l2.is_none() {
            let key = flight.key().clone();
            let rx = self.spawn_flight(load, flight, None, false);
            return Led::Waiting(rx, key);
        }
        let mut handoff = Handoff {
            cache: self,
            parts: Some((load, flight)),
        };
        let flight = &handoff.parts.as_ref().expect("armed until taken below").1;
        let found = self.shared.ask_l2(flight.key(), None, flight.token()).await;
        self.resend_pending();
        let (load, flight) = handoff.parts.take().expect("armed until here");
        match found {
            Some(found) => {
                self.shared.flights.finish(&flight);
                // Only callers that joined meanwhile need a copy.
                if flight.joined() {
                    flight.send(Ok(found.clone()));
                }
                Led::Answered(found)
            }
            None => {
                let key = flight.key().clone();
                let rx = self.spawn_flight(load, flight, None, true);
                Led::Waiting(rx, key)
            }
        }
    }

    /// Runs `flight` on a task of its own; `l2_asked`: its leader already
    /// found nothing fresh on L2.
    fn spawn_flight<F, Fut, E>(
        &self,
        load: F,
        flight: FlightTx<K, V, E>,
        newer_than: Option<u64>,
        l2_asked: bool,
    ) -> FlightRx<K, V, E>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Loaded<V>, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        let tx = flight;
        let rx = tx.subscribe();
        let shared = self.shared.clone();
        let task = tokio::spawn(async move {
            let result = shared
                .fly(tx.key(), load, tx.token(), newer_than, l2_asked)
                .await;
            shared.flights.finish(&tx);
            tx.send(result);
        });
        self.guard.track(task.abort_handle());
        rx
    }
}

/// What leading or joining a load gave a waiting caller.
pub(super) enum Led<K, V, E> {
    /// The leader found the answer on L2 (and gave it to any joiners).
    Answered(Option<super::Cached<V>>),
    /// The load runs on its own task: wait for it here (the key back).
    Waiting(FlightRx<K, V, E>, K),
}

/// A leader's load while it reads L2 on the caller's task: if the caller
/// is dropped before it is taken back, the load goes on on a task.
struct Handoff<'a, K, V, F, Fut, E>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<Loaded<V>, E>> + Send + 'static,
    E: Send + Sync + 'static,
{
    cache: &'a TieredCache<K, V>,
    parts: Option<(F, FlightTx<K, V, E>)>,
}

impl<K, V, F, Fut, E> Drop for Handoff<'_, K, V, F, Fut, E>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<Loaded<V>, E>> + Send + 'static,
    E: Send + Sync + 'static,
{
    fn drop(&mut self) {
        let Some((load, flight)) = self.parts.take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            drop(self.cache.spawn_flight(load, flight, None, false));
        } else {
            // No runtime to run the load on: end the flight; its waiters
            // see it ended and get an error.
            self.cache.shared.flights.finish(&flight);
        }
    }
}

impl<K, V> Shared<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    async fn fly<F, Fut, E>(
        &self,
        key: &K,
        load: F,
        token: &AtomicBool,
        newer_than: Option<u64>,
        l2_asked: bool,
    ) -> FlightResult<V, E>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Loaded<V>, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        let mut lock = None;
        if self.l2.is_some() {
            if !l2_asked && let Some(found) = self.ask_l2(key, newer_than, token).await {
                return Ok(found);
            }
            match self.await_other_replica(key, newer_than, token).await {
                Waited::Found(found) => return Ok(found),
                Waited::Locked(t) => lock = Some(t),
                Waited::Load => {}
            }
        }
        let result = self.run_loader(key, load, token).await;
        if let (Some(t), Some(l2)) = (lock, &self.l2) {
            l2.unlock(key, t).await;
        }
        result
    }

    async fn run_loader<F, Fut, E>(
        &self,
        key: &K,
        load: F,
        token: &AtomicBool,
    ) -> FlightResult<V, E>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Loaded<V>, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        self.stats.load();
        let started = self.clock.now();
        // The loader runs on a task of its own so that its panic is caught
        // here and becomes an error for every waiter.
        let outcome = AbortOnDrop(tokio::spawn(async move { load().await }))
            .join()
            .await;
        let load_time = self.clock.now().saturating_duration_since(started);
        let loaded = match outcome {
            Ok(Ok(loaded)) => loaded,
            Ok(Err(e)) => return Err(self.failed(key, CacheError::Load(Arc::new(e)))),
            Err(_) => {
                // A panic is a bug in the loader, not an upstream failure:
                // no backoff, so the next call loads again (as documented).
                self.stats.load_failed();
                return Err(CacheError::LoaderPanicked);
            }
        };
        self.backoff.clear(key);
        let slot = self.new_slot(loaded, load_time);
        tracing::trace!(cache = %self.name, ?load_time, "load finished");
        self.keep(key, &slot, token).await;
        Ok(slot.cached(Freshness::Fresh, Source::Loader))
    }

    /// Stores a loaded slot in both tiers, unless `invalidate` was called
    /// for the key since the load started (checked again after each write,
    /// since an `invalidate` may land between the check and the write).
    /// A slot usable for no time at all (`Loaded::ValueUntil(v, ZERO)`)
    /// answers its waiters and is stored nowhere: it would displace a value
    /// that can still serve stale, and Redis refuses an expiry of zero.
    async fn keep(&self, key: &K, slot: &super::slot::Slot<V>, token: &AtomicBool) {
        if token.load(Ordering::SeqCst) || slot.stale_until_ms <= slot.written_at_ms {
            return;
        }
        self.put_l1(key, slot.clone());
        if token.load(Ordering::SeqCst) {
            self.l1.invalidate(key);
            return;
        }
        self.put_l2(key, slot).await;
        if token.load(Ordering::SeqCst) {
            self.l1.invalidate(key);
            if let Some(l2) = &self.l2 {
                l2.delete(key).await;
            }
        }
    }

    pub(super) fn failed<E>(&self, key: &K, err: CacheError<E>) -> CacheError<E> {
        self.stats.load_failed();
        self.backoff.start(key, self.clock.now());
        err
    }
}
