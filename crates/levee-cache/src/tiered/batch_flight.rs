//! The loads of one batch, on a task of their own: one `MGET` for the
//! keys, one pipeline of load-lock `SET NX`s, one batch loader call for the
//! keys this replica may load (while those another replica holds the lock
//! of are waited for on L2), one pipeline of write-backs. Each key is
//! answered (its flight ended) as soon as its result is known.

use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::FutureExt;

use super::batch::{DynBatchLoader, Member};
use super::flight::FlightResult;
use super::slot::Slot;
use super::{CacheError, InL1, Shared};
use crate::l2::L2Read;

/// A member whose load gave a value (or an absence) to keep.
type Kept<K, V, E> = (Member<K, V, E>, Slot<V>);

impl<K, V> Shared<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The whole batch: L1 again, one `MGET`, then [`fly_rest`](Self::fly_rest).
    pub(crate) async fn fly_batch<E>(
        &self,
        members: Vec<Member<K, V, E>>,
        load: DynBatchLoader<K, V, E>,
    ) where
        E: Send + Sync + 'static,
    {
        let open = self.recheck_l1(members);
        let open = self.answer_from_l2(open).await;
        self.fly_rest(open, &load).await;
    }

    /// Answers the members whose key a load that finished between the
    /// caller's look at L1 and its registration has put there (no second
    /// load); returns the others.
    pub(crate) fn recheck_l1<E>(&self, members: Vec<Member<K, V, E>>) -> Vec<Member<K, V, E>> {
        let mut open = Vec::with_capacity(members.len());
        for m in members {
            if m.newer_than.is_none()
                && let InL1::Fresh(cached, _) = self.look_in_l1(&m.key)
            {
                self.answer(m, Ok(cached));
            } else {
                open.push(m);
            }
        }
        open
    }

    /// After L2 was asked: the load locks, one batch loader call for the
    /// keys this replica may load, the wait for those another replica
    /// loads.
    pub(crate) async fn fly_rest<E>(
        &self,
        open: Vec<Member<K, V, E>>,
        load: &DynBatchLoader<K, V, E>,
    ) where
        E: Send + Sync + 'static,
    {
        let Some(l2) = self.l2.clone() else {
            return self.load_members(open, load).await;
        };
        let Some(wait) = self.cfg.load_lock.filter(|_| !open.is_empty()) else {
            return self.load_members(open, load).await;
        };
        let id = self.rng.next_u64();
        let taken = {
            let keys: Vec<&K> = open.iter().map(|m| &m.key).collect();
            l2.lock_many(&keys, id, wait).await
        };
        let (mut mine, mut theirs) = (Vec::new(), Vec::new());
        for (m, taken) in open.into_iter().zip(taken) {
            match taken {
                // Taken, or Redis could not say: load.
                Some(true) | None => mine.push(m),
                Some(false) => theirs.push(m),
            }
        }
        let mut locked: Vec<K> = mine.iter().map(|m| m.key.clone()).collect();
        let (_, later) = tokio::join!(
            self.load_members(mine, load),
            self.await_other_replicas(theirs, id, wait)
        );
        locked.extend(later.iter().map(|m| m.key.clone()));
        self.load_members(later, load).await;
        let keys: Vec<&K> = locked.iter().collect();
        l2.unlock_many(&keys, id).await;
    }

    /// One `MGET` for `open`; answers the keys L2 holds fresh, returns the
    /// others.
    async fn answer_from_l2<E>(&self, open: Vec<Member<K, V, E>>) -> Vec<Member<K, V, E>>
    where
        E: Send + Sync + 'static,
    {
        let Some(l2) = &self.l2 else { return open };
        if open.is_empty() {
            return open;
        }
        let reads = {
            let keys: Vec<&K> = open.iter().map(|m| &m.key).collect();
            l2.read_many(&keys).await
        };
        self.answer_reads(open, reads)
    }

    /// Answers the members whose L2 read (`reads`, in order) holds a fresh
    /// value; returns the others.
    pub(crate) fn answer_reads<E>(
        &self,
        open: Vec<Member<K, V, E>>,
        reads: Vec<L2Read<V>>,
    ) -> Vec<Member<K, V, E>> {
        let mut left = Vec::with_capacity(open.len());
        for (m, read) in open.into_iter().zip(reads) {
            match self.take_l2_read(&m.key, read, m.newer_than, m.flight.token()) {
                Some(found) => self.answer(m, Ok(found)),
                None => left.push(m),
            }
        }
        left
    }

    /// Waits (bounded by `wait`) for the replicas holding the locks of
    /// `theirs` to put values on L2, polling all of them with one `MGET` and
    /// one lock pipeline a round. Returns the keys to load here: those whose
    /// lock this replica took meanwhile, and those still missing at the end.
    async fn await_other_replicas<E>(
        &self,
        mut theirs: Vec<Member<K, V, E>>,
        id: u64,
        wait: Duration,
    ) -> Vec<Member<K, V, E>>
    where
        E: Send + Sync + 'static,
    {
        let Some(l2) = &self.l2 else { return theirs };
        let deadline = tokio::time::Instant::from_std(levee_core::duration::instant_after(
            tokio::time::Instant::now().into_std(),
            wait,
        ));
        let mut load_here = Vec::new();
        while !theirs.is_empty() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                load_here.append(&mut theirs);
                break;
            }
            tokio::time::sleep(self.cfg.load_lock_poll.min(left)).await;
            let missing = self.answer_from_l2(std::mem::take(&mut theirs)).await;
            if missing.is_empty() {
                break;
            }
            let taken = {
                let keys: Vec<&K> = missing.iter().map(|m| &m.key).collect();
                l2.lock_many(&keys, id, wait).await
            };
            for (m, taken) in missing.into_iter().zip(taken) {
                if taken == Some(true) {
                    load_here.push(m);
                } else {
                    theirs.push(m);
                }
            }
        }
        load_here
    }

    /// One call of `load` for `members`; answers each of them.
    async fn load_members<E>(&self, members: Vec<Member<K, V, E>>, load: &DynBatchLoader<K, V, E>)
    where
        E: Send + Sync + 'static,
    {
        if members.is_empty() {
            return;
        }
        let keys: Vec<K> = members.iter().map(|m| m.key.clone()).collect();
        for _ in &members {
            self.stats.load();
        }
        let started = self.clock.now();
        // A panic is caught here and becomes an error for every key. (On
        // this task, which is already the batch's own: no spawn and no
        // cross-task wake-up more.)
        let outcome = std::panic::AssertUnwindSafe(load(keys))
            .catch_unwind()
            .await;
        let load_time = self.clock.now().saturating_duration_since(started);
        let mut found = match outcome {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                let e = Arc::new(e);
                for m in members {
                    let err = self.failed(&m.key, CacheError::Load(e.clone()));
                    self.answer(m, Err(err));
                }
                return;
            }
            Err(_) => {
                // A bug in the loader, not an upstream failure: no backoff.
                for m in members {
                    self.stats.load_failed();
                    self.answer(m, Err(CacheError::LoaderPanicked));
                }
                return;
            }
        };
        let mut kept = Vec::with_capacity(members.len());
        for m in members {
            match found.remove(&m.key) {
                Some(Ok(loaded)) => {
                    self.backoff.clear(&m.key);
                    let slot = self.new_slot(loaded, load_time);
                    kept.push((m, slot));
                }
                Some(Err(e)) => {
                    let err = self.failed(&m.key, CacheError::Load(Arc::new(e)));
                    self.answer(m, Err(err));
                }
                None => {
                    let err = self.failed(&m.key, CacheError::MissingFromBatch);
                    self.answer(m, Err(err));
                }
            }
        }
        tracing::trace!(cache = %self.name, ?load_time, keys = kept.len(), "batch load finished");
        self.keep_many(&kept).await;
        for (m, _) in kept {
            self.flights.finish(&m.flight);
        }
    }

    /// Stores loaded slots in L1, gives them to their waiters, then writes
    /// them to L2 with one pipeline, fenced against `invalidate` as a
    /// single load's are: the flights stay registered until the write is
    /// done (an `invalidate` meanwhile marks them, and the write is undone),
    /// but their waiters need not wait for the write. A caller that joins a
    /// key during the write gets this answer: a value loaded moments ago
    /// (the write is bounded by the L2 timeout).
    async fn keep_many<E>(&self, kept: &[Kept<K, V, E>]) {
        let invalidated = |m: &Member<K, V, E>| m.flight.token().load(Ordering::SeqCst);
        let mut written: Vec<&Member<K, V, E>> = Vec::with_capacity(kept.len());
        let mut write: Vec<(&K, &Slot<V>)> = Vec::with_capacity(kept.len());
        for (m, slot) in kept {
            if invalidated(m) || slot.stale_until_ms <= slot.written_at_ms {
                continue;
            }
            self.put_l1(&m.key, slot.clone());
            if invalidated(m) {
                self.l1.invalidate(&m.key);
                continue;
            }
            written.push(m);
            write.push((&m.key, slot));
        }
        if self.l2.is_none() || write.is_empty() {
            // Nothing to write: end the flights before answering (as a
            // single load does), so a caller answered can start the next
            // load of its key (a refresh) at once.
            for (m, slot) in kept {
                self.flights.finish(&m.flight);
                m.flight.send(Ok(slot.loaded()));
            }
            return;
        }
        for (m, slot) in kept {
            m.flight.send(Ok(slot.loaded()));
        }
        self.put_l2_many(&write).await;
        if let Some(l2) = &self.l2 {
            // An `invalidate` that landed during the write: undo it (rare,
            // so one call a key).
            for m in written.into_iter().filter(|m| invalidated(m)) {
                self.l1.invalidate(&m.key);
                l2.delete(&m.key).await;
            }
        }
    }

    /// Ends the flight of `m` and gives its waiters `result`.
    fn answer<E>(&self, m: Member<K, V, E>, result: FlightResult<V, E>) {
        self.flights.finish(&m.flight);
        m.flight.send(result);
    }
}
