//! Single-flight: one load per key at a time, on its own task, its result
//! shared with every caller that asked meanwhile.

use std::any::Any;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use parking_lot::Mutex;
use tokio::sync::watch;

use super::{CacheError, Cached};

/// What a finished load hands its waiters: the value (`None`: absent).
pub(crate) type FlightResult<V, E> = Result<Option<Cached<V>>, CacheError<E>>;
pub(crate) type FlightRx<V, E> = watch::Receiver<Option<FlightResult<V, E>>>;

/// A load just registered: its sender, a receiver, and its invalidation
/// token.
pub(crate) struct NewFlight<V, E> {
    pub(crate) tx: watch::Sender<Option<FlightResult<V, E>>>,
    pub(crate) rx: FlightRx<V, E>,
    pub(crate) token: Arc<AtomicBool>,
}

pub(crate) struct Flight {
    /// A `FlightRx<V, E>`, type-erased because `E` is chosen per call.
    rx: Box<dyn Any + Send + Sync>,
    /// Set by `invalidate`: the load's result is given to its waiters but
    /// kept out of the cache.
    pub(crate) invalidated: Arc<AtomicBool>,
}

pub(crate) struct Flights<K> {
    map: Mutex<HashMap<K, Flight, foldhash::fast::RandomState>>,
}

impl<K: Hash + Eq + Clone> Flights<K> {
    pub(crate) fn new() -> Self {
        Flights {
            map: Mutex::new(HashMap::default()),
        }
    }

    /// Joins the load running for `key`, or registers a new one (returning
    /// its sender). Calls with another error type than the running load's
    /// start their own load.
    pub(crate) fn join_or_register<V, E>(&self, key: &K) -> Result<FlightRx<V, E>, NewFlight<V, E>>
    where
        V: Send + Sync + 'static,
        E: Send + Sync + 'static,
    {
        let mut map = self.map.lock();
        if let Some(rx) = map
            .get(key)
            .and_then(|f| f.rx.downcast_ref::<FlightRx<V, E>>())
        {
            return Ok(rx.clone());
        }
        let (tx, rx) = watch::channel(None);
        let invalidated = Arc::new(AtomicBool::new(false));
        map.insert(
            key.clone(),
            Flight {
                rx: Box::new(rx.clone()),
                invalidated: invalidated.clone(),
            },
        );
        Err(NewFlight {
            tx,
            rx,
            token: invalidated,
        })
    }

    /// Whether a load for `key` is running.
    pub(crate) fn is_running(&self, key: &K) -> bool {
        self.map.lock().contains_key(key)
    }

    /// Removes the flight of `key` if it is the one marked by `token`.
    pub(crate) fn finish(&self, key: &K, token: &Arc<AtomicBool>) {
        let mut map = self.map.lock();
        if map
            .get(key)
            .is_some_and(|f| Arc::ptr_eq(&f.invalidated, token))
        {
            map.remove(key);
        }
    }

    /// Marks every running load as invalidated.
    pub(crate) fn invalidate_all(&self) {
        for (_, f) in self.map.lock().drain() {
            f.invalidated
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Marks the running load of `key` (if any) as invalidated.
    pub(crate) fn invalidate(&self, key: &K) {
        if let Some(f) = self.map.lock().remove(key) {
            f.invalidated
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}
