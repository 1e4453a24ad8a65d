//! Single-flight: one load per key at a time, its result shared with every
//! caller that asked meanwhile.
//!
//! A flight is one allocation: its invalidation flag, its answer (set
//! once) and a [`Notify`] for the callers that joined. A leader whose load
//! nobody joined (the common case: an L2 hit) pays for that allocation,
//! two map operations and nothing else: no channel, no waking of waiters
//! that are not there.

use std::any::Any;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::{CacheError, Cached};

/// What a finished load hands its waiters: the value (`None`: absent).
pub(crate) type FlightResult<V, E> = Result<Option<Cached<V>>, CacheError<E>>;

/// One load's shared state.
struct State<V, E> {
    /// Set by `invalidate`: the load's result is given to its waiters but
    /// kept out of the cache.
    invalidated: AtomicBool,
    /// The answer, set once; `Some(None)`: the load ended without one (its
    /// task was ended, e.g. the cache was dropped).
    answer: OnceLock<Option<FlightResult<V, E>>>,
    /// Wakes the callers that joined when `answer` is set.
    joined: Notify,
}

/// A [`State`] with its value and error types erased, as the map of
/// running flights holds it (`E` is chosen per call).
trait Erased: Any + Send + Sync {
    fn invalidated(&self) -> &AtomicBool;
}

impl<V, E> Erased for State<V, E>
where
    V: Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    fn invalidated(&self) -> &AtomicBool {
        &self.invalidated
    }
}

/// The leader's side of a flight: gives its answer once. Dropped without
/// giving one, it tells the waiters the load ended without an answer.
pub(crate) struct FlightTx<V, E> {
    state: Arc<State<V, E>>,
    /// Its key's hash in the map of running flights: `finish` finds it by
    /// this and its state, without the key.
    hash: u64,
}

impl<V, E> FlightTx<V, E> {
    /// Gives `result` to every caller that joined, and to any that joins
    /// from now on. Only the first answer counts.
    pub(crate) fn send(&self, result: FlightResult<V, E>) {
        if self.state.answer.set(Some(result)).is_ok() {
            self.state.joined.notify_waiters();
        }
    }

    /// Whether anyone else holds this flight: a caller that joined it, or
    /// the running-flights map (so: call after `finish`). A leader answers
    /// with a copy only when this is true.
    pub(crate) fn joined(&self) -> bool {
        Arc::strong_count(&self.state) > 1
    }

    /// A receiver for this flight's answer.
    pub(crate) fn subscribe(&self) -> FlightRx<V, E> {
        FlightRx {
            state: self.state.clone(),
        }
    }

    /// Set when the key was invalidated during the load.
    pub(crate) fn token(&self) -> &AtomicBool {
        &self.state.invalidated
    }

    /// A handle on the invalidation flag that outlives this sender.
    pub(crate) fn token_handle(&self) -> FlightToken<V, E> {
        FlightToken(self.state.clone())
    }
}

impl<V, E> Drop for FlightTx<V, E> {
    fn drop(&mut self) {
        // Held by nobody else: nobody to tell (the common case, a load
        // nobody joined, ends here).
        if Arc::strong_count(&self.state) > 1 && self.state.answer.set(None).is_ok() {
            self.state.joined.notify_waiters();
        }
    }
}

/// A flight's invalidation flag, held apart from its sender.
pub(crate) struct FlightToken<V, E>(Arc<State<V, E>>);

impl<V, E> std::ops::Deref for FlightToken<V, E> {
    type Target = AtomicBool;

    fn deref(&self) -> &AtomicBool {
        &self.0.invalidated
    }
}

/// A caller's side of a flight: waits for its answer.
pub(crate) struct FlightRx<V, E> {
    state: Arc<State<V, E>>,
}

impl<V, E> Clone for FlightRx<V, E> {
    fn clone(&self) -> Self {
        FlightRx {
            state: self.state.clone(),
        }
    }
}

impl<V: Clone, E> FlightRx<V, E> {
    /// The load's answer, once it has one; a load that ended without one
    /// answers [`CacheError::LoaderPanicked`].
    pub(crate) async fn wait(&self) -> FlightResult<V, E> {
        loop {
            let notified = self.state.joined.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the answer is read: a `send` between the
            // read and the await still wakes this caller.
            notified.as_mut().enable();
            if let Some(answer) = self.state.answer.get() {
                return answer.clone().unwrap_or(Err(CacheError::LoaderPanicked));
            }
            notified.await;
        }
    }
}

/// The running flights: each key with its flight's state, found by the
/// key's hash (kept by the flight's sender, so that ending a flight hashes
/// nothing and needs no key).
pub(crate) struct Flights<K> {
    map: Mutex<HashTable<(K, Arc<dyn Erased>)>>,
    hasher: foldhash::fast::RandomState,
}

impl<K: Hash + Eq + Clone> Flights<K> {
    pub(crate) fn new() -> Self {
        Flights {
            map: Mutex::new(HashTable::new()),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    fn hash(&self, key: &K) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Joins the load running for `key`, or registers a new one (returning
    /// its sender, which also holds its invalidation token). Calls with another error type than the running load's
    /// start their own load.
    pub(crate) fn join_or_register<V, E>(&self, key: &K) -> Result<FlightRx<V, E>, FlightTx<V, E>>
    where
        V: Send + Sync + 'static,
        E: Send + Sync + 'static,
    {
        let hash = self.hash(key);
        let state = || {
            Arc::new(State {
                invalidated: AtomicBool::new(false),
                answer: OnceLock::new(),
                joined: Notify::new(),
            })
        };
        let mut map = self.map.lock();
        let state = match map.entry(hash, |(k, _)| k == key, |(k, _)| self.hash(k)) {
            Entry::Occupied(mut running) => {
                let any: Arc<dyn Any + Send + Sync> = running.get().1.clone();
                if let Ok(state) = any.downcast::<State<V, E>>() {
                    return Ok(FlightRx { state });
                }
                let state = state();
                running.get_mut().1 = state.clone();
                state
            }
            Entry::Vacant(free) => {
                let state = state();
                free.insert((key.clone(), state.clone()));
                state
            }
        };
        Err(FlightTx { state, hash })
    }

    /// Whether a load for `key` is running.
    pub(crate) fn is_running(&self, key: &K) -> bool {
        let hash = self.hash(key);
        self.map.lock().find(hash, |(k, _)| k == key).is_some()
    }

    /// Removes `flight` from the running ones, if it is still there (an
    /// `invalidate`, or another flight of the key, may have replaced it).
    pub(crate) fn finish<V, E>(&self, flight: &FlightTx<V, E>) {
        let token = flight.token();
        let mut map = self.map.lock();
        if let Ok(entry) =
            map.find_entry(flight.hash, |(_, f)| std::ptr::eq(f.invalidated(), token))
        {
            entry.remove();
        }
    }

    /// Marks every running load as invalidated.
    pub(crate) fn invalidate_all(&self) {
        for (_, f) in self.map.lock().drain() {
            f.invalidated().store(true, Ordering::SeqCst);
        }
    }

    /// Marks the running load of `key` (if any) as invalidated.
    pub(crate) fn invalidate(&self, key: &K) {
        let hash = self.hash(key);
        let mut map = self.map.lock();
        if let Ok(entry) = map.find_entry(hash, |(k, _)| k == key) {
            let ((_, f), _) = entry.remove();
            f.invalidated().store(true, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Rx = FlightRx<u32, ()>;

    fn flights() -> Flights<&'static str> {
        Flights::new()
    }

    fn join(f: &Flights<&'static str>) -> Rx {
        match f.join_or_register(&"k") {
            Ok(rx) => rx,
            Err(_) => panic!("a flight of the same types runs: joined, not registered"),
        }
    }

    #[tokio::test]
    async fn a_joiner_gets_the_leaders_answer_and_a_late_joiner_too() {
        let f = flights();
        let lead = f.join_or_register::<u32, ()>(&"k").err().unwrap();
        let rx = join(&f);
        let waiting = tokio::spawn(async move { rx.wait().await });
        tokio::task::yield_now().await;
        let late = join(&f);
        assert!(lead.joined(), "joiners hold the flight");
        lead.send(Ok(None));
        f.finish(&lead);
        assert!(matches!(waiting.await.unwrap(), Ok(None)));
        assert!(matches!(late.wait().await, Ok(None)));
        assert!(!f.is_running(&"k"));
    }

    #[tokio::test]
    async fn a_leader_dropped_without_an_answer_ends_its_waiters_with_an_error() {
        let f = flights();
        let lead = f.join_or_register::<u32, ()>(&"k").err().unwrap();
        let rx = join(&f);
        let waiting = tokio::spawn(async move { rx.wait().await });
        tokio::task::yield_now().await;
        drop(lead);
        assert!(matches!(
            waiting.await.unwrap(),
            Err(CacheError::LoaderPanicked)
        ));
    }

    #[test]
    fn nobody_joined_a_finished_flight_that_nobody_asked_for() {
        let f = flights();
        let lead = f.join_or_register::<u32, ()>(&"k").err().unwrap();
        assert!(lead.joined(), "the map holds it while it runs");
        f.finish(&lead);
        assert!(!lead.joined());
    }

    #[test]
    fn finishing_flights_among_many_removes_each_its_own() {
        let f: Flights<u32> = Flights::new();
        let leads: Vec<_> = (0..1000u32)
            .map(|k| f.join_or_register::<u32, ()>(&k).err().unwrap())
            .collect();
        for (k, lead) in leads.iter().enumerate().filter(|(k, _)| k % 2 == 0) {
            f.finish(lead);
            assert!(!f.is_running(&(k as u32)));
        }
        for k in 0..1000u32 {
            assert_eq!(f.is_running(&k), k % 2 == 1, "key {k}");
        }
        f.invalidate(&1);
        assert!(leads[1].token().load(Ordering::SeqCst));
        assert!(!leads[3].token().load(Ordering::SeqCst));
    }

    #[test]
    fn finish_with_another_flights_token_leaves_the_running_one() {
        let f = flights();
        let first = f.join_or_register::<u32, ()>(&"k").err().unwrap();
        // Another error type starts its own flight, which replaces the map's.
        let second = f.join_or_register::<u32, String>(&"k").err().unwrap();
        f.finish(&first);
        assert!(f.is_running(&"k"));
        f.invalidate(&"k");
        assert!(second.token().load(Ordering::SeqCst));
        assert!(!first.token().load(Ordering::SeqCst));
        assert!(!f.is_running(&"k"));
    }
}
