//! Sliding windows of call outcomes, updated with atomics only.
//!
//! Concurrent records and resets may lose or double-count a call at the
//! moment of a reset; the breaker's decisions tolerate that (a rate computed
//! over many calls moves by at most one call's weight).

use std::sync::atomic::{AtomicI32, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Which calls a breaker's failure and slow-call rates are computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last `n` calls.
    Count(u32),
    /// The calls of the last `d` (counted in ten buckets of `d / 10`).
    Time(Duration),
}

const RECORDED: u8 = 1;
const FAILED: u8 = 2;
const SLOW: u8 = 4;

/// Counts over the window at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) calls: u32,
    pub(crate) failures: u32,
    pub(crate) slow: u32,
}

#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per breaker; no boxing on the hot path
pub(crate) enum OutcomeWindow {
    Count(CountWindow),
    Time(TimeWindow),
}

impl OutcomeWindow {
    pub(crate) fn new(w: Window) -> Self {
        match w {
            Window::Count(n) => OutcomeWindow::Count(CountWindow::new(n)),
            Window::Time(d) => OutcomeWindow::Time(TimeWindow::new(d)),
        }
    }

    /// Whether `record` and `counts` read their `now_nanos` argument.
    #[inline]
    pub(crate) fn needs_time(&self) -> bool {
        matches!(self, OutcomeWindow::Time(_))
    }

    #[inline]
    pub(crate) fn record(&self, failed: bool, slow: bool, now_nanos: u64) {
        match self {
            OutcomeWindow::Count(w) => w.record(failed, slow),
            OutcomeWindow::Time(w) => w.record(failed, slow, now_nanos),
        }
    }

    pub(crate) fn counts(&self, now_nanos: u64) -> Counts {
        match self {
            OutcomeWindow::Count(w) => w.counts(),
            OutcomeWindow::Time(w) => w.counts(now_nanos),
        }
    }

    pub(crate) fn reset(&self) {
        match self {
            OutcomeWindow::Count(w) => w.reset(),
            OutcomeWindow::Time(w) => w.reset(),
        }
    }
}

/// A ring of the last `n` outcomes, with running failure and slow counts.
#[derive(Debug)]
pub(crate) struct CountWindow {
    slots: Box<[AtomicU8]>,
    next: AtomicU64,
    failures: AtomicI32,
    slow: AtomicI32,
}

impl CountWindow {
    fn new(n: u32) -> Self {
        CountWindow {
            slots: (0..n.max(1)).map(|_| AtomicU8::new(0)).collect(),
            next: AtomicU64::new(0),
            failures: AtomicI32::new(0),
            slow: AtomicI32::new(0),
        }
    }

    #[inline]
    fn record(&self, failed: bool, slow: bool) {
        let bits = RECORDED | if failed { FAILED } else { 0 } | if slow { SLOW } else { 0 };
        let i = (self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len() as u64) as usize;
        let old = self.slots[i].swap(bits, Ordering::Relaxed);
        if old != bits {
            let delta = |flag: u8| i32::from(bits & flag != 0) - i32::from(old & flag != 0);
            let f = delta(FAILED);
            if f != 0 {
                self.failures.fetch_add(f, Ordering::Relaxed);
            }
            let s = delta(SLOW);
            if s != 0 {
                self.slow.fetch_add(s, Ordering::Relaxed);
            }
        }
    }

    fn counts(&self) -> Counts {
        let n = self.slots.len() as u64;
        Counts {
            calls: self.next.load(Ordering::Relaxed).min(n) as u32,
            failures: self.failures.load(Ordering::Relaxed).max(0) as u32,
            slow: self.slow.load(Ordering::Relaxed).max(0) as u32,
        }
    }

    fn reset(&self) {
        for s in self.slots.iter() {
            s.store(0, Ordering::Relaxed);
        }
        self.failures.store(0, Ordering::Relaxed);
        self.slow.store(0, Ordering::Relaxed);
        self.next.store(0, Ordering::Relaxed);
    }
}

const BUCKETS: usize = 10;

#[derive(Debug, Default)]
struct Bucket {
    /// Which bucket period (now / bucket_len) this holds; `u64::MAX`: none.
    epoch: AtomicU64,
    calls: AtomicU32,
    failures: AtomicU32,
    slow: AtomicU32,
}

/// Outcomes of the last `d`, in ten buckets.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    bucket_nanos: u64,
    buckets: [Bucket; BUCKETS],
}

impl TimeWindow {
    fn new(d: Duration) -> Self {
        let w = TimeWindow {
            bucket_nanos: (levee_core::duration::nanos(d) / BUCKETS as u64).max(1),
            buckets: Default::default(),
        };
        w.reset();
        w
    }

    #[inline]
    fn record(&self, failed: bool, slow: bool, now: u64) {
        let period = now / self.bucket_nanos;
        let b = &self.buckets[(period % BUCKETS as u64) as usize];
        let seen = b.epoch.load(Ordering::Acquire);
        if seen != period
            && b.epoch
                .compare_exchange(seen, period, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            b.calls.store(0, Ordering::Relaxed);
            b.failures.store(0, Ordering::Relaxed);
            b.slow.store(0, Ordering::Relaxed);
        }
        b.calls.fetch_add(1, Ordering::Relaxed);
        if failed {
            b.failures.fetch_add(1, Ordering::Relaxed);
        }
        if slow {
            b.slow.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn counts(&self, now: u64) -> Counts {
        let period = now / self.bucket_nanos;
        let mut c = Counts::default();
        for b in &self.buckets {
            let e = b.epoch.load(Ordering::Acquire);
            if e != u64::MAX && e <= period && period - e < BUCKETS as u64 {
                c.calls += b.calls.load(Ordering::Relaxed);
                c.failures += b.failures.load(Ordering::Relaxed);
                c.slow += b.slow.load(Ordering::Relaxed);
            }
        }
        c
    }

    fn reset(&self) {
        for b in &self.buckets {
            b.epoch.store(u64::MAX, Ordering::Release);
            b.calls.store(0, Ordering::Relaxed);
            b.failures.store(0, Ordering::Relaxed);
            b.slow.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_window_forgets_the_oldest_outcome() {
        let w = CountWindow::new(3);
        w.record(true, false);
        w.record(false, false);
        w.record(false, true);
        assert_eq!(
            w.counts(),
            Counts {
                calls: 3,
                failures: 1,
                slow: 1
            }
        );
        w.record(false, false); // replaces the failure
        assert_eq!(
            w.counts(),
            Counts {
                calls: 3,
                failures: 0,
                slow: 1
            }
        );
    }

    #[test]
    fn time_window_drops_buckets_older_than_the_window() {
        let w = TimeWindow::new(Duration::from_secs(10));
        let s = 1_000_000_000u64;
        w.record(true, false, 0);
        w.record(false, false, 5 * s);
        assert_eq!(w.counts(5 * s).calls, 2);
        assert_eq!(
            w.counts(10 * s),
            Counts {
                calls: 1,
                failures: 0,
                slow: 0
            }
        );
        assert_eq!(w.counts(16 * s).calls, 0);
    }
}
