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
struct State<K, V, E> {
    /// The key (the leader's own, moved in: the map of running flights
    /// holds no copy).
    key: K,
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
trait Erased<K>: Any + Send + Sync {
    fn invalidated(&self) -> &AtomicBool;
    fn key(&self) -> &K;
}

impl<K, V, E> Erased<K> for State<K, V, E>
where
    K: Send + Sync + 'static,
    V: Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    fn invalidated(&self) -> &AtomicBool {
        &self.invalidated
    }

    fn key(&self) -> &K {
        &self.key
    }
}

/// The leader's side of a flight: gives its answer once. Dropped without
/// giving one, it tells the waiters the load ended without an answer.
pub(crate) struct FlightTx<K, V, E> {
    state: Arc<State<K, V, E>>,
    /// Its key's hash in the map of running flights: `finish` finds it by
    /// this and its state, without the key.
    hash: u64,
}

impl<K, V, E> FlightTx<K, V, E> {
    /// The flight's key.
    pub(crate) fn key(&self) -> &K {
        &self.state.key
    }

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
    pub(crate) fn subscribe(&self) -> FlightRx<K, V, E> {
        FlightRx {
            state: self.state.clone(),
        }
    }

    /// Set when the key was invalidated during the load.
    pub(crate) fn token(&self) -> &AtomicBool {
        &self.state.invalidated
    }
}

impl<K, V, E> Drop for FlightTx<K, V, E> {
    fn drop(&mut self) {
        // Held by nobody else: nobody to tell (the common case, a load
        // nobody joined, ends here).
        if Arc::strong_count(&self.state) > 1 && self.state.answer.set(None).is_ok() {
            self.state.joined.notify_waiters();
        }
    }
}

/// A caller's side of a flight: waits for its answer.
pub(crate) struct FlightRx<K, V, E> {
    state: Arc<State<K, V, E>>,
}

impl<K, V, E> Clone for FlightRx<K, V, E> {
    fn clone(&self) -> Self {
        FlightRx {
            state: self.state.clone(),
        }
    }
}

impl<K, V: Clone, E> FlightRx<K, V, E> {
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
    map: Mutex<HashTable<Arc<dyn Erased<K>>>>,
    hasher: foldhash::fast::RandomState,
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> Flights<K> {
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
    /// its sender, which also holds its invalidation token and a copy of
    /// the key). Calls with another error type than the running load's
    /// start their own load.
    pub(crate) fn join_or_register<V, E>(
        &self,
        key: &K,
    ) -> Result<FlightRx<K, V, E>, FlightTx<K, V, E>>
    where
        V: Send + Sync + 'static,
        E: Send + Sync + 'static,
    {
        self.enter(key).map(|(rx, _)| rx)
    }

    /// As [`join_or_register`](Self::join_or_register), with the caller's
    /// own key: a new flight keeps it (no copy), a joiner gets it back.
    pub(crate) fn join_or_lead<V, E>(&self, key: K) -> Entered<K, V, E, K>
    where
        V: Send + Sync + 'static,
        E: Send + Sync + 'static,
    {
        self.enter(Owned(key)).map(|(rx, key)| (rx, key.0))
    }

    fn enter<V, E, Q: KeyIn<K>>(&self, key: Q) -> Entered<K, V, E, Q>
    where
        V: Send + Sync + 'static,
        E: Send + Sync + 'static,
    {
        let hash = self.hash(key.as_key());
        let mut map = self.map.lock();
        let slot = match map.entry(hash, |f| f.key() == key.as_key(), |f| self.hash(f.key())) {
            Entry::Occupied(running) => {
                let any: Arc<dyn Any + Send + Sync> = running.get().clone();
                if let Ok(state) = any.downcast::<State<K, V, E>>() {
                    return Ok((FlightRx { state }, key));
                }
                Ok(running)
            }
            Entry::Vacant(free) => Err(free),
        };
        let state = Arc::new(State {
            key: key.into_key(),
            invalidated: AtomicBool::new(false),
            answer: OnceLock::new(),
            joined: Notify::new(),
        });
        match slot {
            Ok(mut running) => *running.get_mut() = state.clone(),
            Err(free) => {
                free.insert(state.clone());
            }
        }
        Err(FlightTx { state, hash })
    }

    /// Whether a load for `key` is running.
    pub(crate) fn is_running(&self, key: &K) -> bool {
        let hash = self.hash(key);
        self.map.lock().find(hash, |f| f.key() == key).is_some()
    }

    /// Removes `flight` from the running ones, if it is still there (an
    /// `invalidate`, or another flight of the key, may have replaced it).
    pub(crate) fn finish<V, E>(&self, flight: &FlightTx<K, V, E>) {
        let token = flight.token();
        let mut map = self.map.lock();
        if let Ok(entry) = map.find_entry(flight.hash, |f| std::ptr::eq(f.invalidated(), token)) {
            entry.remove();
        }
    }

    /// Marks every running load as invalidated.
    pub(crate) fn invalidate_all(&self) {
        for f in self.map.lock().drain() {
            f.invalidated().store(true, Ordering::SeqCst);
        }
    }

    /// Marks the running load of `key` (if any) as invalidated.
    pub(crate) fn invalidate(&self, key: &K) {
        let hash = self.hash(key);
        let mut map = self.map.lock();
        if let Ok(entry) = map.find_entry(hash, |f| f.key() == key) {
            let (f, _) = entry.remove();
            f.invalidated().store(true, Ordering::SeqCst);
        }
    }
}

/// Joined (the flight's receiver, and the caller's key back) or leading a
/// new flight (its sender).
pub(crate) type Entered<K, V, E, Q> = Result<(FlightRx<K, V, E>, Q), FlightTx<K, V, E>>;

/// A key as a caller hands it to [`Flights::enter`]: borrowed (copied
/// only for a new flight) or owned (moved into a new flight).
trait KeyIn<K> {
    fn as_key(&self) -> &K;
    fn into_key(self) -> K;
}

impl<K: Clone> KeyIn<K> for &K {
    fn as_key(&self) -> &K {
        self
    }

    fn into_key(self) -> K {
        self.clone()
    }
}

struct Owned<K>(K);

impl<K> KeyIn<K> for Owned<K> {
    fn as_key(&self) -> &K {
        &self.0
    }

    fn into_key(self) -> K {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Rx = FlightRx<&'static str, u32, ()>;

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

    /// A key that counts its copies (compared and hashed by its number).
    #[derive(Debug)]
    struct Key(u32, std::sync::Arc<std::sync::atomic::AtomicUsize>);

    impl PartialEq for Key {
        fn eq(&self, other: &Self) -> bool {
            self.0 == other.0
        }
    }

    impl Eq for Key {}

    impl Hash for Key {
        fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
            self.0.hash(h);
        }
    }

    impl Clone for Key {
        fn clone(&self) -> Self {
            self.1.fetch_add(1, Ordering::SeqCst);
            Key(self.0, self.1.clone())
        }
    }

    #[test]
    fn a_leader_moves_its_key_in_and_a_joiner_gets_its_own_back() {
        let copies = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let key = |n| Key(n, copies.clone());
        let f: Flights<Key> = Flights::new();
        let lead = f.join_or_lead::<u32, ()>(key(7)).err().unwrap();
        assert_eq!(lead.key().0, 7);
        let (rx, back) = f.join_or_lead::<u32, ()>(key(7)).ok().unwrap();
        assert_eq!(back.0, 7);
        assert!(f.is_running(&key(7)));
        assert_eq!(copies.load(Ordering::SeqCst), 0, "no key was copied");
        lead.send(Ok(None));
        f.finish(&lead);
        assert!(!f.is_running(&key(7)));
        drop(rx);
        // The borrowing form copies the key for a new flight only.
        let other = f.join_or_register::<u32, ()>(&key(8)).err().unwrap();
        assert!(f.join_or_register::<u32, ()>(&key(8)).is_ok());
        assert_eq!(copies.load(Ordering::SeqCst), 1);
        f.finish(&other);
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
