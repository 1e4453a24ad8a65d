//! Striped statistics: a hit bumps a counter on a cache line that (mostly)
//! only its own thread writes, so reads never contend on a shared counter.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;

use super::entry::EvictionCause;

const STRIPES: usize = 16;

#[derive(Debug, Default)]
struct Stripe {
    hits: AtomicU64,
    misses: AtomicU64,
    stale_hits: AtomicU64,
}

/// A snapshot of a [`MemoryCache`](super::MemoryCache)'s counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryCacheStats {
    /// Reads that found a fresh value.
    pub hits: u64,
    /// Reads that found nothing usable.
    pub misses: u64,
    /// `get_entry` reads that found a stale value.
    pub stale_hits: u64,
    /// Values inserted (replacements included).
    pub inserts: u64,
    /// Entries removed to respect the capacity.
    pub evicted: u64,
    /// Entries removed because their stale retention ran out.
    pub expired: u64,
    /// Entries removed by `invalidate` or `invalidate_all`.
    pub invalidated: u64,
    /// Values overwritten by an insert for the same key.
    pub replaced: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Stats {
    stripes: [CachePadded<Stripe>; STRIPES],
    inserts: AtomicU64,
    evicted: AtomicU64,
    expired: AtomicU64,
    invalidated: AtomicU64,
    replaced: AtomicU64,
}

fn stripe_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    INDEX.with(|i| {
        if i.get() == usize::MAX {
            i.set(NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES);
        }
        i.get()
    })
}

impl Stats {
    #[inline]
    fn stripe(&self) -> &Stripe {
        &self.stripes[stripe_index()]
    }

    #[inline]
    pub(crate) fn hit(&self) {
        self.stripe().hits.fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn miss(&self) {
        self.stripe().misses.fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn stale_hit(&self) {
        self.stripe().stale_hits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn insert(&self) {
        self.inserts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn removed(&self, cause: EvictionCause) {
        let c = match cause {
            EvictionCause::Expired => &self.expired,
            EvictionCause::Evicted => &self.evicted,
            EvictionCause::Invalidated => &self.invalidated,
            EvictionCause::Replaced => &self.replaced,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> MemoryCacheStats {
        let sum = |f: fn(&Stripe) -> &AtomicU64| {
            self.stripes
                .iter()
                .map(|s| f(s).load(Ordering::Relaxed))
                .sum()
        };
        MemoryCacheStats {
            hits: sum(|s| &s.hits),
            misses: sum(|s| &s.misses),
            stale_hits: sum(|s| &s.stale_hits),
            inserts: self.inserts.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
            expired: self.expired.load(Ordering::Relaxed),
            invalidated: self.invalidated.load(Ordering::Relaxed),
            replaced: self.replaced.load(Ordering::Relaxed),
        }
    }
}
