//! Striped statistics: a hit bumps a counter on a cache line that only its
//! own thread writes, so reads never contend on a shared counter, and (the
//! line having one writer) the bump is a plain load and store, not a locked
//! read-modify-write: a hit takes no atomic RMW beyond the shard's lock.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;
use parking_lot::Mutex;

/// Stripes owned by one thread each; threads beyond them share one more
/// stripe, bumped with `fetch_add`.
const STRIPES: usize = 16;
const SHARED: usize = STRIPES;

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
    /// `STRIPES` owned stripes, then the shared one.
    stripes: [CachePadded<Stripe>; STRIPES + 1],
}

/// Owned stripe indices given back by threads that ended.
static FREE: Mutex<Vec<usize>> = Mutex::new(Vec::new());
/// The next never-used owned stripe index.
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// No stripe claimed yet.
const UNCLAIMED: usize = usize::MAX;

/// This thread's claim on its stripe index (`INDEX`, the same index in
/// every cache), given back when the thread ends so a later thread can own
/// it.
struct Owner;

impl Owner {
    fn claim() -> usize {
        if let Some(i) = FREE.lock().pop() {
            return i;
        }
        // Never past SHARED, however many threads ask.
        NEXT.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < STRIPES).then_some(n + 1)
        })
        .unwrap_or(SHARED)
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        // Bumps made later by this thread (other thread-locals' destructors
        // may still read a cache) go to the shared stripe, not to the index
        // another thread may own next.
        let i = INDEX.with(|x| x.replace(SHARED));
        if i < STRIPES {
            // The mutex orders this thread's last bumps before the next
            // owner's first load of the same counters.
            FREE.lock().push(i);
        }
    }
}

thread_local! {
    /// This thread's stripe index. Constant-initialised and without a
    /// destructor, so reading it is one thread-local load, with no
    /// registration check on the hit path.
    static INDEX: Cell<usize> = const { Cell::new(UNCLAIMED) };
    /// Gives the index back when the thread ends; touched once, at the claim.
    static OWNER: Owner = const { Owner };
}

/// This thread's stripe: an owned one, or `SHARED` (also while the thread's
/// locals are being torn down).
#[inline]
fn stripe_index() -> usize {
    let i = INDEX.with(Cell::get);
    if i != UNCLAIMED {
        return i;
    }
    claim_stripe()
}

/// Adds one to the counter `field` picks in this thread's stripe: on the
/// hit path one thread-local load, one compare and a plain increment of a
/// line only this thread writes.
#[inline]
fn bump_mine(stripes: &[CachePadded<Stripe>; STRIPES + 1], field: fn(&Stripe) -> &AtomicU64) {
    let i = INDEX.with(Cell::get);
    if i < STRIPES {
        bump(i, field(&stripes[i]));
    } else {
        bump_other(stripes, field);
    }
}

/// The first bump of a thread (which claims its stripe), or one on the
/// shared stripe.
#[cold]
#[inline(never)]
fn bump_other(stripes: &[CachePadded<Stripe>; STRIPES + 1], field: fn(&Stripe) -> &AtomicU64) {
    let i = stripe_index();
    bump(i, field(&stripes[i]));
}

#[cold]
#[inline(never)]
fn claim_stripe() -> usize {
    OWNER
        .try_with(|_| {
            // Touching `OWNER` registers its destructor, which gives `i` back.
            let i = Owner::claim();
            INDEX.with(|x| x.set(i));
            i
        })
        .unwrap_or_else(|_| {
            INDEX.with(|x| x.set(SHARED));
            SHARED
        })
}

/// Adds one to `counter` of stripe `i`.
#[inline]
fn bump(i: usize, counter: &AtomicU64) {
    if i == SHARED {
        counter.fetch_add(1, Ordering::Relaxed);
    } else {
        // Only this thread writes an owned stripe's counters, so a load and
        // a store lose no update; readers see the count with a short delay.
        counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

impl Stats {
    #[inline]
    pub(crate) fn hit(&self) {
        bump_mine(&self.stripes, |s| &s.hits);
    }

    #[inline]
    pub(crate) fn miss(&self) {
        bump_mine(&self.stripes, |s| &s.misses);
    }

    #[inline]
    pub(crate) fn stale_hit(&self) {
        bump_mine(&self.stripes, |s| &s.stale_hits);
    }

    /// The read counters; the shards count inserts and removals.
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
            ..MemoryCacheStats::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;

    use crate::MemoryCache;

    /// More threads alive at once than there are owned stripes (some bump
    /// the shared one), in waves (later threads own stripes given back by
    /// ended ones): no hit or miss is lost.
    #[test]
    fn counts_are_exact_across_more_threads_than_stripes() {
        const THREADS: usize = 2 * super::STRIPES + 3;
        const WAVES: usize = 3;
        const READS: u64 = 2_000;
        let cache = MemoryCache::<u64, u64>::builder()
            .max_capacity(100)
            .build()
            .unwrap();
        cache.insert(1, 1);
        for _ in 0..WAVES {
            let start = Barrier::new(THREADS);
            std::thread::scope(|s| {
                for _ in 0..THREADS {
                    s.spawn(|| {
                        start.wait();
                        for i in 0..READS {
                            assert_eq!(cache.get(&1), Some(1));
                            if i % 2 == 0 {
                                assert_eq!(cache.get(&2), None);
                            }
                        }
                    });
                }
            });
        }
        let stats = cache.stats();
        let runs = (THREADS * WAVES) as u64;
        assert_eq!(stats.hits, runs * READS);
        assert_eq!(stats.misses, runs * READS / 2);
        assert!(
            super::FREE.lock().len() <= super::STRIPES,
            "indices are given back once each"
        );
    }
}
