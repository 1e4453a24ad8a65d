//! Limiter accuracy on random arrival times, with a ManualClock.

use std::num::NonZeroU32;
use std::time::Duration;

use levee_core::ManualClock;
use levee_limit::{Quota, SlidingWindow, WindowMode};
use proptest::prelude::*;

const W_MS: u64 = 1_000;

/// Runs arrivals (ms offsets, sorted) through a limiter; returns admission times.
fn admitted(mode: WindowMode, limit: u32, gaps: &[u64]) -> Vec<u64> {
    let clock = ManualClock::new();
    let quota = Quota::new(limit, Duration::from_millis(W_MS)).unwrap();
    let l = SlidingWindow::<u8>::builder(quota)
        .mode(mode)
        .clock(clock.shared())
        .build()
        .unwrap();
    let mut t = 0;
    let mut out = Vec::new();
    for g in gaps {
        clock.advance(Duration::from_millis(*g));
        t += g;
        if l.check(&0).allowed {
            out.push(t);
        }
    }
    out
}

/// Most admissions in any window (t - W, t] ending at an admission.
fn max_in_any_window(times: &[u64]) -> usize {
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..times.len() {
        while times[hi] - times[lo] >= W_MS {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

fn gaps() -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec(prop_oneof![3 => 0u64..20, 1 => 0u64..600], 1..400)
}

proptest! {
    #[test]
    fn log_never_admits_more_than_limit_in_any_window(limit in 1u32..20, gaps in gaps()) {
        let times = admitted(WindowMode::Log, limit, &gaps);
        prop_assert!(max_in_any_window(&times) <= limit as usize);
    }

    #[test]
    fn counter_admits_at_most_limit_per_aligned_window_and_under_twice_in_any(limit in 1u32..20, gaps in gaps()) {
        let times = admitted(WindowMode::Counter, limit, &gaps);
        // The limiter aligns windows to its own start plus one hour, which
        // is a whole number of 1 s windows: aligned windows are t / W.
        let mut per_window = std::collections::HashMap::new();
        for t in &times {
            *per_window.entry(t / W_MS).or_insert(0u32) += 1;
        }
        prop_assert!(per_window.values().all(|n| *n <= limit));
        prop_assert!(max_in_any_window(&times) < 2 * limit as usize);
    }
}

#[test]
fn counter_worst_case_over_admission_is_measured() {
    // Burst at the end of one window, then at the start of the next:
    // the counter's documented worst case.
    let clock = ManualClock::new();
    let limit = 10;
    let l = SlidingWindow::<u8>::builder(Quota::per_second(NonZeroU32::new(limit).unwrap()))
        .clock(clock.shared())
        .build()
        .unwrap();
    clock.advance(Duration::from_millis(999));
    let first = (0..limit).filter(|_| l.check(&0).allowed).count();
    clock.advance(Duration::from_millis(2));
    let second = (0..limit).filter(|_| l.check(&0).allowed).count();
    // 1 ms into the next window the previous 10 weigh 9.99: nothing more fits.
    assert_eq!((first, second), (10, 0));
    clock.advance(Duration::from_millis(499));
    let third = (0..limit).filter(|_| l.check(&0).allowed).count();
    // Half-way, the previous window weighs 5: 5 more are admitted, so the
    // sliding window (0.5 s .. 1.5 s] holds 15 = 1.5 x the limit.
    assert_eq!(third, 5);
}
