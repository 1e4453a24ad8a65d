//! Batch reads: [`TieredCache::get_many`] and
//! [`TieredCache::get_or_load_many`]: per tier one round trip for the whole
//! batch (L1 lookups, one `MGET`, one batch loader call, one pipeline of
//! write-backs), with every key still its own single-flight.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::flight::{FlightResult, FlightRx, FlightTx};
use super::slot::Slot;
use super::{CacheError, Cached, Freshness, InL1, Loaded, Source, TieredCache};

/// What a batch loader returns for the keys it was given: per key a value,
/// an absence ([`Loaded::Absent`]) or that key's error. A key left out is
/// an error for that key ([`CacheError::MissingFromBatch`]).
pub type BatchLoaded<K, V, E> = HashMap<K, Result<Loaded<V>, E>>;

/// The future a batch loader returns, boxed.
pub(crate) type BatchFuture<K, V, E> = BoxFuture<'static, Result<BatchLoaded<K, V, E>, E>>;

/// A batch loader, type-erased so that the flight task is not generic over
/// the caller's closure.
pub(crate) type DynBatchLoader<K, V, E> = Arc<dyn Fn(Vec<K>) -> BatchFuture<K, V, E> + Send + Sync>;

/// Boxes `load` as a [`DynBatchLoader`].
pub(crate) fn dyn_loader<K, V, E, F, Fut>(load: F) -> DynBatchLoader<K, V, E>
where
    F: Fn(Vec<K>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<BatchLoaded<K, V, E>, E>> + Send + 'static,
{
    Arc::new(move |keys| load(keys).boxed())
}

/// A key of the batch whose load this batch leads (or refreshes).
pub(crate) struct Member<K, V, E> {
    pub(crate) key: K,
    pub(crate) flight: FlightTx<K, V, E>,
    /// Unix ms: an early refresh takes an L2 value only if written after.
    pub(crate) newer_than: Option<u64>,
    /// A background refresh: the caller has its answer already.
    pub(crate) refresh: bool,
}

/// One distinct key of a call: answered at once, or waiting for a flight.
enum Step<K, V, E> {
    Done(FlightResult<V, E>),
    Wait {
        rx: FlightRx<K, V, E>,
        held: Option<Slot<V>>,
    },
}

impl<K, V> TieredCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The fresh values of `keys`, in order, without loading: L1 first,
    /// then one `MGET` on L2 for the keys L1 holds nothing fresh for (fresh
    /// L2 values are promoted to L1). `None`: nothing fresh held (or a
    /// cached absence).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use levee_cache::{Source, TieredCache};
    ///
    /// let cache = TieredCache::<u32, String>::builder("users").build()?;
    /// cache.insert(1, "ada".to_string()).await;
    /// let got = cache.get_many(&[1, 2]).await;
    /// assert_eq!(got[0].as_ref().map(|c| (c.value.as_str(), c.source)), Some(("ada", Source::L1)));
    /// assert!(got[1].is_none());
    /// # Ok(()) }
    /// ```
    pub async fn get_many(&self, keys: &[K]) -> Vec<Option<Cached<V>>> {
        let sh = &*self.shared;
        let mut out: Vec<Option<Cached<V>>> = Vec::with_capacity(keys.len());
        let mut ask: Vec<usize> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            match sh.look_in_l1(key) {
                InL1::Fresh(cached, _) => out.push(cached),
                InL1::NotFresh(_) => {
                    out.push(None);
                    ask.push(i);
                }
            }
        }
        let Some(l2) = sh.l2.as_ref().filter(|_| !ask.is_empty()) else {
            return out;
        };
        let asked: Vec<&K> = ask.iter().map(|&i| &keys[i]).collect();
        let reads = l2.read_many(&asked).await;
        self.resend_pending();
        let token = AtomicBool::new(false);
        for (&i, read) in ask.iter().zip(reads) {
            out[i] = sh.take_l2_read(&keys[i], read, None, &token).flatten();
        }
        out
    }

    /// The values of `keys`, in order, loading the missing ones with one
    /// call of `load`.
    ///
    /// Each key is served as [`get_or_load`](Self::get_or_load) serves it
    /// (fresh L1, fresh L2, stale-while-revalidate, stale tiers when its
    /// load fails, failure backoff, negative caching, the load lock), but
    /// per tier the batch goes together: L1 lookups, then one `MGET` for
    /// the keys L1 could not answer, then one call of `load` with the keys
    /// still missing (and those due for a refresh), then one pipeline of L2
    /// write-backs (which the answer does not wait for: another replica may
    /// miss a value on L2 for that round trip; with the load lock it waits
    /// for it instead, the lock being released after the write). A key whose load is already running (a `get_or_load`,
    /// another batch) joins it; keys this batch loads are registered as
    /// loads, so single-key callers arriving meanwhile join the batch.
    /// Duplicate keys are loaded once.
    ///
    /// `load` gets the keys to load and returns per key a value, an absence
    /// or an error ([`BatchLoaded`]); an error for the whole batch fails
    /// every key of the call (each then served stale if it can be). A key it
    /// leaves out gets [`CacheError::MissingFromBatch`]. A panic in `load`
    /// fails every key with [`CacheError::LoaderPanicked`] (no backoff: the
    /// next call loads again). The load runs on a task of its own: a caller
    /// dropped meanwhile cancels nothing.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use levee_cache::{BatchLoaded, Loaded, Source, TieredCache};
    ///
    /// let cache = TieredCache::<u32, String>::builder("users").build()?;
    /// cache.insert(1, "ada".to_string()).await;
    /// let got = cache
    ///     .get_or_load_many([1, 2, 3], |ids: Vec<u32>| async move {
    ///         // One upstream call for ids 2 and 3; 3 does not exist.
    ///         let mut found = BatchLoaded::<u32, String, std::io::Error>::new();
    ///         for id in ids {
    ///             let v = if id == 2 { Loaded::Value("bob".to_string()) } else { Loaded::Absent };
    ///             found.insert(id, Ok(v));
    ///         }
    ///         Ok(found)
    ///     })
    ///     .await;
    /// let first = got[0].as_ref().unwrap().as_ref().unwrap();
    /// assert_eq!((first.value.as_str(), first.source), ("ada", Source::L1));
    /// let second = got[1].as_ref().unwrap().as_ref().unwrap();
    /// assert_eq!((second.value.as_str(), second.source), ("bob", Source::Loader));
    /// assert!(got[2].as_ref().unwrap().is_none(), "absent");
    /// # Ok(()) }
    /// ```
    pub async fn get_or_load_many<I, F, Fut, E>(
        &self,
        keys: I,
        load: F,
    ) -> Vec<Result<Option<Cached<V>>, CacheError<E>>>
    where
        I: IntoIterator<Item = K>,
        F: Fn(Vec<K>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<BatchLoaded<K, V, E>, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        self.load_many(keys.into_iter().collect(), &dyn_loader(load))
            .await
    }

    /// [`get_or_load_many`](Self::get_or_load_many) over a boxed loader.
    pub(crate) async fn load_many<E>(
        &self,
        keys: Vec<K>,
        load: &DynBatchLoader<K, V, E>,
    ) -> Vec<FlightResult<V, E>>
    where
        E: Send + Sync + 'static,
    {
        let sh = &*self.shared;
        let (uniq, pos) = distinct(keys);
        let mut members: Vec<Member<K, V, E>> = Vec::new();
        let steps: Vec<Step<K, V, E>> = uniq
            .iter()
            .map(|key| self.step(key, &mut members))
            .collect();
        if !members.is_empty() {
            self.lead_batch(members, load).await;
        }
        let waits = steps.into_iter().zip(&uniq).map(|(step, key)| async move {
            let (rx, held) = match step {
                Step::Done(r) => return r,
                Step::Wait { rx, held } => (rx, held),
            };
            let has_stale = held.as_ref().is_some_and(|s| s.value.is_some());
            let result = match sh.cfg.soft_timeout.filter(|_| has_stale) {
                Some(soft) => levee_core::sleep::timeout(&*sh.clock, soft, self.wait(rx))
                    .await
                    .unwrap_or(Err(CacheError::Timeout(soft))),
                None => self.wait(rx).await,
            };
            result.or_else(|err| sh.stale_after_failed_load(key, held, err))
        });
        let results = futures_util::future::join_all(waits).await;
        pos.into_iter().map(|i| results[i].clone()).collect()
    }

    /// What one distinct key of a batch needs; keys this batch loads (or
    /// refreshes) are registered as flights and pushed to `members`.
    fn step<E>(&self, key: &K, members: &mut Vec<Member<K, V, E>>) -> Step<K, V, E>
    where
        E: Send + Sync + 'static,
    {
        let sh = &*self.shared;
        let held = match sh.look_in_l1(key) {
            InL1::Fresh(cached, refresh_newer_than) => {
                if let Some(written) = refresh_newer_than {
                    sh.stats.early_refresh();
                    self.register_refresh(key, Some(written), members);
                }
                return Step::Done(Ok(cached));
            }
            InL1::NotFresh(held) => held,
        };
        if let Some(slot) = &held {
            let now = sh.clock.now();
            if !slot.is_fresh(now) && slot.value.is_some() && slot.age(now) < sh.cfg.swr {
                self.register_refresh(key, None, members);
                return Step::Done(Ok(sh.serve_stale(slot, now, true, Source::L1)));
            }
        }
        if let Some(left) = sh.backoff_left(key) {
            return Step::Done(sh.stale_or(
                held.as_ref(),
                Source::L1,
                CacheError::Backoff { retry_after: left },
            ));
        }
        match sh.flights.join_or_register::<V, E>(key) {
            Ok(rx) => Step::Wait { rx, held },
            Err(flight) => {
                let rx = flight.subscribe();
                members.push(Member {
                    key: key.clone(),
                    flight,
                    newer_than: None,
                    refresh: false,
                });
                Step::Wait { rx, held }
            }
        }
    }

    /// Adds a background refresh of `key` to the batch, unless a load of it
    /// runs or it is in its failure backoff.
    fn register_refresh<E>(
        &self,
        key: &K,
        newer_than: Option<u64>,
        members: &mut Vec<Member<K, V, E>>,
    ) where
        E: Send + Sync + 'static,
    {
        let sh = &*self.shared;
        if sh.flights.is_running(key) || sh.backoff_left(key).is_some() {
            return;
        }
        if let Err(flight) = sh.flights.join_or_register::<V, E>(key) {
            members.push(Member {
                key: key.clone(),
                flight,
                newer_than,
                refresh: true,
            });
        }
    }

    /// Leads the loads of `members`: reads L2 on the caller's task (a task
    /// spawn and a wake-up less when L2 answers), then runs the rest on a
    /// task of its own. A caller dropped during the read hands the whole
    /// batch to a task, so that callers that joined its keys still get
    /// their answers.
    async fn lead_batch<E>(&self, members: Vec<Member<K, V, E>>, load: &DynBatchLoader<K, V, E>)
    where
        E: Send + Sync + 'static,
    {
        let sh = &*self.shared;
        if members.iter().all(|m| m.refresh) {
            // Nothing the caller waits for: all of it in the background.
            return self.spawn_batch(members, load.clone(), false);
        }
        let members = sh.recheck_l1(members);
        let Some(l2) = sh.l2.as_ref().filter(|_| !members.is_empty()) else {
            return self.spawn_batch(members, load.clone(), true);
        };
        let mut handoff = Handoff {
            cache: self,
            members: Some(members),
            load,
        };
        let reads = {
            let keys: Vec<&K> = handoff.members.iter().flatten().map(|m| &m.key).collect();
            l2.read_many(&keys).await
        };
        self.resend_pending();
        let members = handoff.members.take().unwrap_or_default();
        let left = sh.answer_reads(members, reads);
        self.spawn_batch(left, load.clone(), true);
    }

    /// Runs the loads of `members` on a task of their own (owned by the
    /// cache), so that a caller dropped meanwhile strands nobody.
    /// `l2_asked`: L1 and L2 were read for them already.
    fn spawn_batch<E>(
        &self,
        members: Vec<Member<K, V, E>>,
        load: DynBatchLoader<K, V, E>,
        l2_asked: bool,
    ) where
        E: Send + Sync + 'static,
    {
        if members.is_empty() {
            return;
        }
        let shared = self.shared.clone();
        let task = tokio::spawn(async move {
            if l2_asked {
                shared.fly_rest(members, &load).await;
            } else {
                shared.fly_batch(members, load).await;
            }
        });
        self.guard.track(task.abort_handle());
    }
}

/// A batch's flights while its caller reads L2: if the caller is dropped
/// before taking them back, they go on on a task.
struct Handoff<'a, K, V, E>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    cache: &'a TieredCache<K, V>,
    members: Option<Vec<Member<K, V, E>>>,
    load: &'a DynBatchLoader<K, V, E>,
}

impl<K, V, E> Drop for Handoff<'_, K, V, E>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    fn drop(&mut self) {
        let Some(members) = self.members.take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            self.cache.spawn_batch(members, self.load.clone(), false);
        } else {
            // No runtime to load on: end the flights; their waiters see
            // them ended and get an error.
            for m in members {
                self.cache.shared.flights.finish(&m.flight);
            }
        }
    }
}

/// The distinct keys of `keys` (first occurrence order), and for each
/// input position the index of its key among them.
fn distinct<K: Hash + Eq + Clone>(keys: Vec<K>) -> (Vec<K>, Vec<usize>) {
    let mut index: HashMap<K, usize, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(keys.len(), Default::default());
    let mut uniq = Vec::with_capacity(keys.len());
    let pos = keys
        .into_iter()
        .map(|k| {
            *index.entry(k).or_insert_with_key(|k| {
                uniq.push(k.clone());
                uniq.len() - 1
            })
        })
        .collect();
    (uniq, pos)
}

impl<V: Clone> Slot<V> {
    /// What a waiter gets for a value this replica just loaded.
    pub(crate) fn loaded(&self) -> Option<Cached<V>> {
        self.cached(Freshness::Fresh, Source::Loader)
    }
}

#[cfg(test)]
mod tests {
    use super::distinct;

    #[test]
    fn distinct_keeps_first_order_and_maps_duplicates() {
        let (uniq, pos) = distinct(vec!["b", "a", "b", "c", "a"]);
        assert_eq!(uniq, ["b", "a", "c"]);
        assert_eq!(pos, [0, 1, 0, 2, 1]);
    }
}
