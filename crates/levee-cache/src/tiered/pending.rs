//! Invalidations that could not reach Redis (down, or its breaker open):
//! kept, bounded, and sent again once Redis answers, so that another
//! replica's copy does not outlive an `invalidate` for its whole TTL.
//!
//! Up to [`MAX_KEYS`] keys are re-sent exactly (their L2 delete and their
//! backplane message); past that, or after a failed `invalidate_all`, one
//! invalidate-all message is sent instead (every replica drops its L1; L2
//! copies of the keys past the bound end with their TTL, as an
//! `invalidate_all`'s do).

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::Mutex;

/// How many keys are kept to re-send one by one.
pub(crate) const MAX_KEYS: usize = 1024;

pub(crate) struct Pending<K> {
    inner: Mutex<Held<K>>,
    /// Whether anything waits (read on every L1 miss: one atomic load).
    waiting: AtomicBool,
    /// Whether a re-send runs (at most one at a time).
    sending: AtomicBool,
    /// Invalidations the running re-send holds.
    in_flight: AtomicUsize,
}

struct Held<K> {
    keys: HashSet<K>,
    all: bool,
}

/// What one re-send takes: the keys and whether to send an invalidate-all.
pub(crate) struct Batch<K> {
    pub(crate) keys: Vec<K>,
    pub(crate) all: bool,
}

impl<K: Hash + Eq + Clone> Pending<K> {
    pub(crate) fn new() -> Self {
        Pending {
            inner: Mutex::new(Held {
                keys: HashSet::new(),
                all: false,
            }),
            waiting: AtomicBool::new(false),
            sending: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// `key`'s invalidation did not reach Redis.
    pub(crate) fn add(&self, key: K) {
        let mut h = self.inner.lock();
        if !h.all {
            if h.keys.len() < MAX_KEYS {
                h.keys.insert(key);
            } else {
                h.keys.clear();
                h.all = true;
            }
        }
        self.waiting.store(true, Ordering::Release);
    }

    /// An `invalidate_all` did not reach Redis.
    pub(crate) fn add_all(&self) {
        let mut h = self.inner.lock();
        h.keys.clear();
        h.all = true;
        self.waiting.store(true, Ordering::Release);
    }

    /// Whether invalidations wait to be sent.
    #[inline]
    pub(crate) fn waiting(&self) -> bool {
        self.waiting.load(Ordering::Acquire)
    }

    /// Claims the re-send: `None` if one runs already or nothing waits.
    pub(crate) fn start(&self) -> Option<Batch<K>> {
        if !self.waiting() || self.sending.swap(true, Ordering::AcqRel) {
            return None;
        }
        let mut h = self.inner.lock();
        self.waiting.store(false, Ordering::Release);
        let batch = Batch {
            keys: h.keys.drain().collect(),
            all: std::mem::take(&mut h.all),
        };
        self.in_flight
            .store(batch.keys.len() + usize::from(batch.all), Ordering::Release);
        Some(batch)
    }

    /// Ends a re-send; what it could not send waits again.
    pub(crate) fn finish(&self, unsent: Batch<K>) {
        if unsent.all {
            self.add_all();
        }
        for k in unsent.keys {
            self.add(k);
        }
        self.in_flight.store(0, Ordering::Release);
        self.sending.store(false, Ordering::Release);
    }

    /// Invalidations waiting or being sent: keys, plus one for an
    /// invalidate-all.
    pub(crate) fn len(&self) -> usize {
        let h = self.inner.lock();
        h.keys.len() + usize::from(h.all) + self.in_flight.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_past_the_bound_become_one_invalidate_all() {
        let p = Pending::new();
        for k in 0..MAX_KEYS {
            p.add(k);
        }
        assert_eq!(p.len(), MAX_KEYS);
        p.add(MAX_KEYS);
        assert_eq!(p.len(), 1, "one invalidate-all");
        let b = p.start().unwrap();
        assert!(b.all && b.keys.is_empty());
        assert!(p.start().is_none(), "one re-send at a time");
        p.finish(Batch {
            keys: vec![7],
            all: false,
        });
        let b = p.start().unwrap();
        assert_eq!((b.keys, b.all), (vec![7], false));
        p.finish(Batch {
            keys: vec![],
            all: false,
        });
        assert!(!p.waiting() && p.start().is_none());
    }
}
