//! Auto-batching (DataLoader's window): [`Batching`] collects single-key
//! loads for a short window and sends them as one batch.

use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::batch::{BatchLoaded, DynBatchLoader, dyn_loader};
use super::flight::FlightResult;
use super::{CacheError, Cached, InL1, TieredCache};
use crate::ConfigError;

/// A handle whose [`load`](Self::load) calls are collected for up to
/// `max_wait` (from the first key of a window) or `max_batch` keys, and
/// sent to the cache as one [`get_or_load_many`](TieredCache::get_or_load_many):
/// fresh L1 hits answer at once; the rest of a window takes one `MGET` and
/// one batch loader call.
///
/// Cheap to clone: clones share one window. The window's timer and the
/// batch's load run on tasks owned by the cache (ended when its last
/// handle is dropped). Made by [`TieredCache::batching`].
pub struct Batching<K, V, E> {
    inner: Arc<Inner<K, V, E>>,
}

impl<K, V, E> Clone for Batching<K, V, E> {
    fn clone(&self) -> Self {
        Batching {
            inner: self.inner.clone(),
        }
    }
}

impl<K, V, E> std::fmt::Debug for Batching<K, V, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batching")
            .field("max_batch", &self.inner.max_batch)
            .field("max_wait", &self.inner.max_wait)
            .finish_non_exhaustive()
    }
}

type Waiter<V, E> = oneshot::Sender<FlightResult<V, E>>;

struct Inner<K, V, E> {
    cache: TieredCache<K, V>,
    load: DynBatchLoader<K, V, E>,
    max_batch: usize,
    max_wait: Duration,
    window: Mutex<Window<K, V, E>>,
}

struct Window<K, V, E> {
    keys: Vec<(K, Waiter<V, E>)>,
    /// Counts windows, so that a timer ends only the window it was started
    /// for (a full window may have been sent before it fires).
    id: u64,
}

impl<K, V> TieredCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A [`Batching`] handle over this cache and `load` (a batch loader as
    /// [`get_or_load_many`](Self::get_or_load_many) takes): its `load(key)`
    /// calls are collected for up to `max_wait` or `max_batch` keys and
    /// sent as one batch. `max_batch` must be at least 1.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use levee_cache::{BatchLoaded, Loaded, TieredCache};
    ///
    /// let cache = TieredCache::<u32, u32>::builder("squares").build()?;
    /// let loader = cache.batching(
    ///     |ids: Vec<u32>| async move {
    ///         Ok::<_, std::io::Error>(ids.into_iter().map(|i| (i, Ok(Loaded::Value(i * i)))).collect::<BatchLoaded<_, _, _>>())
    ///     },
    ///     100,
    ///     Duration::from_millis(1),
    /// )?;
    /// // Both keys go to the batch loader in one call.
    /// let (a, b) = tokio::join!(loader.load(3), loader.load(4));
    /// assert_eq!((a?.unwrap().value, b?.unwrap().value), (9, 16));
    /// # Ok(()) }
    /// ```
    pub fn batching<F, Fut, E>(
        &self,
        load: F,
        max_batch: usize,
        max_wait: Duration,
    ) -> Result<Batching<K, V, E>, ConfigError>
    where
        F: Fn(Vec<K>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<BatchLoaded<K, V, E>, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        if max_batch == 0 {
            return Err(ConfigError::new("max_batch", "must be at least 1"));
        }
        Ok(Batching {
            inner: Arc::new(Inner {
                cache: self.clone(),
                load: dyn_loader(load),
                max_batch,
                max_wait,
                window: Mutex::new(Window {
                    keys: Vec::new(),
                    id: 0,
                }),
            }),
        })
    }
}

impl<K, V, E> Batching<K, V, E>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    /// The value of `key`, as [`get_or_load`](TieredCache::get_or_load)
    /// answers it, loaded (if it must be) in a batch with the other keys
    /// asked for within the window. A fresh L1 value answers at once.
    /// Dropping the future does not take the key out of its batch.
    pub async fn load(&self, key: K) -> Result<Option<Cached<V>>, CacheError<E>> {
        let inner = &*self.inner;
        if let InL1::Fresh(cached, None) = inner.cache.shared.look_in_l1(&key) {
            return Ok(cached);
        }
        let (tx, rx) = oneshot::channel();
        let (full, timer) = {
            let mut w = inner.window.lock();
            w.keys.push((key, tx));
            if w.keys.len() >= inner.max_batch {
                w.id += 1;
                (Some(std::mem::take(&mut w.keys)), None)
            } else {
                (None, (w.keys.len() == 1).then_some(w.id))
            }
        };
        if let Some(keys) = full {
            inner.send(keys);
        } else if let Some(id) = timer {
            self.start_timer(id);
        }
        // A dropped sender: the cache (and its tasks) is gone.
        rx.await.unwrap_or(Err(CacheError::LoaderPanicked))
    }

    /// Sends window `id` when `max_wait` has passed, unless it was sent
    /// full before.
    fn start_timer(&self, id: u64) {
        let weak: Weak<Inner<K, V, E>> = Arc::downgrade(&self.inner);
        let sleep = self.inner.cache.shared.clock.sleep(self.inner.max_wait);
        let task = tokio::spawn(async move {
            sleep.await;
            let Some(inner) = weak.upgrade() else { return };
            let keys = {
                let mut w = inner.window.lock();
                if w.id != id {
                    return;
                }
                w.id += 1;
                std::mem::take(&mut w.keys)
            };
            inner.send(keys);
        });
        self.inner.cache.guard.track(task.abort_handle());
    }
}

impl<K, V, E> Inner<K, V, E>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    /// Loads one window's keys as a batch, on a task owned by the cache.
    fn send(&self, window: Vec<(K, Waiter<V, E>)>) {
        if window.is_empty() {
            return;
        }
        let (cache, load) = (self.cache.clone(), self.load.clone());
        let task = tokio::spawn(async move {
            let (keys, waiters): (Vec<K>, Vec<Waiter<V, E>>) = window.into_iter().unzip();
            let results = cache.load_many(keys, &load).await;
            for (tx, r) in waiters.into_iter().zip(results) {
                let _ = tx.send(r);
            }
        });
        self.cache.guard.track(task.abort_handle());
    }
}
