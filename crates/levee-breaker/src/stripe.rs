//! Per-thread stripes of a breaker's counters, so that a closed-path
//! success writes only cache lines its own thread writes (as Java's
//! `LongAdder` does). A thread keeps one stripe index for its life; the
//! stripes a breaker has are allocated on first use, so a breaker used by
//! one thread holds one.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Stripes per breaker: twice the cores (fewer threads share one), a power
/// of two, at most 64.
fn stripe_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores * 2).next_power_of_two().min(64)
    })
}

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's stripe index (threads are numbered as they first ask).
#[inline]
fn index() -> usize {
    INDEX.with(|i| {
        let v = i.get();
        if v != usize::MAX {
            return v;
        }
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let v = NEXT.fetch_add(1, Ordering::Relaxed);
        i.set(v);
        v
    })
}

/// One `T` per stripe, each allocated on its first use.
pub(crate) struct Stripes<T> {
    slots: Box<[OnceLock<Box<T>>]>,
    mask: usize,
}

impl<T> Stripes<T> {
    pub(crate) fn new() -> Self {
        let n = stripe_count();
        Stripes {
            slots: (0..n).map(|_| OnceLock::new()).collect(),
            mask: n - 1,
        }
    }

    /// This thread's stripe, made by `init` on its first use.
    #[inline]
    pub(crate) fn mine(&self, init: impl FnOnce() -> T) -> &T {
        self.slots[index() & self.mask].get_or_init(|| Box::new(init()))
    }

    /// Every stripe in use.
    pub(crate) fn each(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().filter_map(|s| s.get().map(|b| &**b))
    }
}

impl<T> std::fmt::Debug for Stripes<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stripes")
            .field("in_use", &self.each().count())
            .field("of", &self.slots.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_thread_uses_one_stripe_and_threads_spread() {
        let s: Stripes<AtomicUsize> = Stripes::new();
        for _ in 0..10 {
            s.mine(|| AtomicUsize::new(0))
                .fetch_add(1, Ordering::Relaxed);
        }
        assert_eq!(s.each().count(), 1);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                s.mine(|| AtomicUsize::new(0))
                    .fetch_add(1, Ordering::Relaxed);
            });
        });
        let total: usize = s.each().map(|a| a.load(Ordering::Relaxed)).sum();
        assert_eq!(total, 11);
        assert!(s.each().count() <= 2);
    }
}
