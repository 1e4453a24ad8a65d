//! Sliding windows of call outcomes, updated with atomics only, in
//! per-thread stripes (see [`stripe`](crate::stripe)): a call records on
//! its thread's stripe, and the breaker folds the stripes (sums them) when
//! it evaluates its rates, which a fast success needs only while the
//! stripe holds fewer than `minimum_calls` calls.
//!
//! What the windows mean under stripes:
//! - [`Window::Count(n)`](Window::Count): the last `n` calls of each
//!   stripe. One thread uses one stripe, so on one thread it is exactly
//!   the last `n` calls; with several, the rates are over up to `n` calls
//!   per stripe in use.
//! - [`Window::Time(d)`](Window::Time): every call of the last `d` (ten
//!   buckets of `d / 10` per stripe, summed).
//!
//! Concurrent records and resets may lose or double-count a call at the
//! moment of a reset, and two threads that share a stripe may overwrite one
//! slot of a count window (one outcome leaves the window early); the
//! breaker's decisions tolerate that (a rate computed over many calls moves
//! by at most one call's weight).

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::stripe::Stripes;

/// Which calls a breaker's failure and slow-call rates are computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last `n` calls (per thread stripe; see the crate docs).
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

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.calls = self.calls.saturating_add(o.calls);
        self.failures = self.failures.saturating_add(o.failures);
        self.slow = self.slow.saturating_add(o.slow);
    }
}

#[derive(Debug)]
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

    /// Records one outcome on this thread's stripe. Returns whether the
    /// stripe held fewer than `minimum` calls before it: only then can a
    /// fast success move the rates past a threshold (by completing
    /// `minimum_calls`); otherwise a success only lowers them.
    #[inline]
    pub(crate) fn record(&self, failed: bool, slow: bool, now_nanos: u64, minimum: u32) -> bool {
        match self {
            OutcomeWindow::Count(w) => w.record(failed, slow) < minimum,
            OutcomeWindow::Time(w) => w.record(failed, slow, now_nanos) < minimum,
        }
    }

    /// The counts of every stripe, summed.
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

/// Count windows: a ring of the last `n` outcomes per stripe.
#[derive(Debug)]
pub(crate) struct CountWindow {
    n: u32,
    stripes: Stripes<CountStripe>,
}

/// One stripe's ring, with running failure and slow counts. Aligned so
/// that two stripes never share a cache line.
#[derive(Debug)]
#[repr(align(128))]
struct CountStripe {
    /// The next slot to write.
    pos: AtomicU32,
    /// Whether every slot holds an outcome.
    full: AtomicBool,
    failures: AtomicI32,
    slow: AtomicI32,
    slots: Box<[AtomicU8]>,
}

impl CountStripe {
    fn new(n: u32) -> Self {
        CountStripe {
            pos: AtomicU32::new(0),
            full: AtomicBool::new(false),
            failures: AtomicI32::new(0),
            slow: AtomicI32::new(0),
            slots: (0..n).map(|_| AtomicU8::new(0)).collect(),
        }
    }

    fn calls(&self) -> u32 {
        if self.full.load(Ordering::Relaxed) {
            self.slots.len() as u32
        } else {
            self.pos.load(Ordering::Relaxed)
        }
    }
}

impl CountWindow {
    fn new(n: u32) -> Self {
        CountWindow {
            n: n.max(1),
            stripes: Stripes::new(),
        }
    }

    /// Records on this thread's stripe; returns the calls it held before.
    #[inline]
    fn record(&self, failed: bool, slow: bool) -> u32 {
        let s = self.stripes.mine(|| CountStripe::new(self.n));
        let bits = RECORDED | if failed { FAILED } else { 0 } | if slow { SLOW } else { 0 };
        // One thread owns a stripe but for collisions, so a load and a
        // store suffice; two threads racing here write one slot twice,
        // which the swap below keeps consistent with the counts.
        let pos = s.pos.load(Ordering::Relaxed);
        let held = if s.full.load(Ordering::Relaxed) {
            self.n
        } else {
            pos
        };
        let i = (pos as usize).min(s.slots.len() - 1);
        let next = pos + 1;
        if next >= self.n {
            s.pos.store(0, Ordering::Relaxed);
            if held < self.n {
                s.full.store(true, Ordering::Relaxed);
            }
        } else {
            s.pos.store(next, Ordering::Relaxed);
        }
        let old = s.slots[i].swap(bits, Ordering::Relaxed);
        if old != bits {
            let delta = |flag: u8| i32::from(bits & flag != 0) - i32::from(old & flag != 0);
            let f = delta(FAILED);
            if f != 0 {
                s.failures.fetch_add(f, Ordering::Relaxed);
            }
            let d = delta(SLOW);
            if d != 0 {
                s.slow.fetch_add(d, Ordering::Relaxed);
            }
        }
        held
    }

    fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for s in self.stripes.each() {
            c += Counts {
                calls: s.calls(),
                failures: s.failures.load(Ordering::Relaxed).max(0) as u32,
                slow: s.slow.load(Ordering::Relaxed).max(0) as u32,
            };
        }
        c
    }

    fn reset(&self) {
        for s in self.stripes.each() {
            for slot in s.slots.iter() {
                slot.store(0, Ordering::Relaxed);
            }
            s.failures.store(0, Ordering::Relaxed);
            s.slow.store(0, Ordering::Relaxed);
            s.full.store(false, Ordering::Relaxed);
            s.pos.store(0, Ordering::Relaxed);
        }
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

impl Bucket {
    fn counts_at(&self, period: u64) -> Counts {
        let e = self.epoch.load(Ordering::Acquire);
        if e != u64::MAX && e <= period && period - e < BUCKETS as u64 {
            Counts {
                calls: self.calls.load(Ordering::Relaxed),
                failures: self.failures.load(Ordering::Relaxed),
                slow: self.slow.load(Ordering::Relaxed),
            }
        } else {
            Counts::default()
        }
    }

    fn clear(&self) {
        self.epoch.store(u64::MAX, Ordering::Release);
        self.calls.store(0, Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
        self.slow.store(0, Ordering::Relaxed);
    }
}

/// One stripe's ten buckets.
#[derive(Debug)]
#[repr(align(128))]
struct TimeStripe([Bucket; BUCKETS]);

impl TimeStripe {
    fn new() -> Self {
        let s = TimeStripe(Default::default());
        s.0.iter().for_each(Bucket::clear);
        s
    }
}

/// Outcomes of the last `d`, in ten buckets per stripe.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    bucket_nanos: u64,
    stripes: Stripes<TimeStripe>,
}

impl TimeWindow {
    fn new(d: Duration) -> Self {
        TimeWindow {
            bucket_nanos: (levee_core::duration::nanos(d) / BUCKETS as u64).max(1),
            stripes: Stripes::new(),
        }
    }

    /// Records on this thread's stripe; returns the calls it held before.
    #[inline]
    fn record(&self, failed: bool, slow: bool, now: u64) -> u32 {
        let period = now / self.bucket_nanos;
        let stripe = self.stripes.mine(TimeStripe::new);
        let held = stripe
            .0
            .iter()
            .map(|b| b.counts_at(period).calls)
            .fold(0u32, u32::saturating_add);
        let b = &stripe.0[(period % BUCKETS as u64) as usize];
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
        held
    }

    fn counts(&self, now: u64) -> Counts {
        let period = now / self.bucket_nanos;
        let mut c = Counts::default();
        for s in self.stripes.each() {
            for b in &s.0 {
                c += b.counts_at(period);
            }
        }
        c
    }

    fn reset(&self) {
        for s in self.stripes.each() {
            s.0.iter().for_each(Bucket::clear);
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
