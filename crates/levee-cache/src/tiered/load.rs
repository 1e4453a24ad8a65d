//! One load of a key: L2 first, then (under the optional cross-replica
//! lock) the loader on a task of its own, its result shared with every
//! caller that asked meanwhile.

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::flight::{FlightResult, FlightRx, NewFlight};
use super::remote::Waited;
use super::tasks::AbortOnDrop;
use super::{CacheError, Freshness, Loaded, Shared, Source, TieredCache};

pub(crate) static LOADS: AtomicU64 = AtomicU64::new(0);

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
    ) -> FlightRx<V, E>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Loaded<V>, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        let NewFlight { tx, rx, token } = match self.shared.flights.join_or_register::<V, E>(&key) {
            Ok(rx) => return rx,
            Err(registered) => registered,
        };
        let shared = self.shared.clone();
        let task = tokio::spawn(async move {
            let result = shared.fly(&key, load, &token, newer_than).await;
            shared.flights.finish(&key, &token);
            let _ = tx.send(Some(result));
        });
        self.guard.track(task.abort_handle());
        rx
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
        token: &Arc<AtomicBool>,
        newer_than: Option<u64>,
    ) -> FlightResult<V, E>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Loaded<V>, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        let mut lock = None;
        if self.l2.is_some() {
            if let Some(found) = self.ask_l2(key, newer_than, token).await {
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
        LOADS.fetch_add(1, Ordering::Relaxed);
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
            Err(_) => return Err(self.failed(key, CacheError::LoaderPanicked)),
        };
        self.backoff.lock().remove(key);
        let slot = self.new_slot(loaded, load_time);
        tracing::trace!(cache = %self.name, ?load_time, "load finished");
        self.keep(key, &slot, token).await;
        Ok(slot.cached(Freshness::Fresh, Source::Loader))
    }

    /// Stores a loaded slot in both tiers, unless `invalidate` was called
    /// for the key since the load started (checked again after each write,
    /// since an `invalidate` may land between the check and the write).
    async fn keep(&self, key: &K, slot: &super::Stored<V>, token: &AtomicBool) {
        if token.load(Ordering::SeqCst) {
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

    fn failed<E>(&self, key: &K, err: CacheError<E>) -> CacheError<E> {
        self.stats.load_failed();
        let until = self.clock.now() + self.cfg.failure_backoff;
        self.backoff.lock().insert(key.clone(), until);
        err
    }
}
