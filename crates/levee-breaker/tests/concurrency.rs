//! 8 threads hammer `call` while the breaker trips and recovers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use levee_breaker::{BreakerEvent, CircuitBreaker, State, Window};
use levee_core::ManualClock;

#[test]
fn half_open_never_admits_more_than_permits_and_counts_add_up() {
    let clock = ManualClock::new();
    let permits = 3u32;
    // Every probe is recorded at once, so each HalfOpen phase admits at
    // most `permits` probes: probes <= permits * phases.
    let probes = Arc::new(AtomicU64::new(0));
    let phases = Arc::new(AtomicU64::new(0));
    let transitions = Arc::new(AtomicU64::new(0));
    let (t, phase) = (transitions.clone(), phases.clone());
    let b = CircuitBreaker::builder()
        .failure_rate_threshold(0.5)
        .sliding_window(Window::Count(50))
        .minimum_calls(20)
        .open_duration(Duration::from_millis(5))
        .half_open_permits(permits)
        .clock(clock.shared())
        .on_event(move |e| {
            if let BreakerEvent::StateChanged { to, .. } = e {
                t.fetch_add(1, Ordering::Relaxed);
                if *to == State::HalfOpen {
                    phase.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
        .build()
        .unwrap();
    let admitted = Arc::new(AtomicU64::new(0));
    let rejected = Arc::new(AtomicU64::new(0));
    std::thread::scope(|s| {
        for thread in 0..8u64 {
            let (b, clock) = (b.clone(), clock.clone());
            let (admitted, rejected) = (admitted.clone(), rejected.clone());
            let probes = probes.clone();
            s.spawn(move || {
                for i in 0..20_000u64 {
                    // Phases of failures and successes make it trip and recover.
                    let fail = (i / 2_000) % 2 == 0 && (i + thread) % 3 != 0;
                    match b.try_acquire() {
                        Ok(p) => {
                            admitted.fetch_add(1, Ordering::Relaxed);
                            if p.is_probe() {
                                probes.fetch_add(1, Ordering::SeqCst);
                            }
                            if fail { p.failure() } else { p.success() }
                        }
                        Err(_) => {
                            rejected.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    if i % 100 == 0 {
                        clock.advance(Duration::from_millis(1));
                    }
                }
            });
        }
    });
    let total = admitted.load(Ordering::Relaxed) + rejected.load(Ordering::Relaxed);
    assert_eq!(total, 8 * 20_000);
    assert_eq!(b.stats().rejections, rejected.load(Ordering::Relaxed));
    let (probes, phases) = (probes.load(Ordering::SeqCst), phases.load(Ordering::SeqCst));
    assert!(phases > 0, "the breaker never went half-open");
    assert!(
        probes <= u64::from(permits) * phases,
        "{probes} probes in {phases} half-open phases"
    );
    assert!(
        transitions.load(Ordering::Relaxed) >= 3,
        "the breaker should have tripped and recovered"
    );
    assert!(rejected.load(Ordering::Relaxed) > 0);
}

/// Threads cycle the breaker through Open, HalfOpen and Closed with probes
/// that fail, succeed or are dropped; afterwards a single caller must still
/// find a working HalfOpen: it admits its permits and a success closes it.
#[test]
fn half_open_still_admits_its_permits_after_concurrent_cycling() {
    let clock = ManualClock::new();
    let permits = 2u32;
    let b = CircuitBreaker::builder()
        .consecutive_failures(1)
        .open_duration(Duration::from_micros(1))
        .half_open_permits(permits)
        .clock(clock.shared())
        .build()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_millis(3000);
    std::thread::scope(|s| {
        for thread in 0..8u64 {
            let (b, clock) = (b.clone(), clock.clone());
            s.spawn(move || {
                let mut i = thread;
                let mut held = None;
                while std::time::Instant::now() < deadline {
                    i = i
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    // Each thread holds its last permit for one more turn,
                    // so probes overlap and half-open refuses callers.
                    let last = std::mem::replace(&mut held, b.try_acquire().ok());
                    if let Some(p) = last {
                        match (i >> 33) % 3 {
                            0 => p.failure(),
                            1 => p.success(),
                            _ => drop(p),
                        }
                    }
                    if i % 4 == 0 {
                        clock.advance(Duration::from_micros(1));
                    }
                }
            });
        }
    });
    // One thread now, no reset: wherever the cycling left the breaker, once
    // the open time passes, successful probes (at most `permits`; fewer if
    // some succeeded already in this half-open phase) must close it.
    clock.advance(Duration::from_secs(1));
    for n in 0..permits {
        match b.try_acquire() {
            Ok(p) => p.success(),
            Err(e) => panic!("{:?} breaker refused probe {n}: {e}", b.state()),
        }
        if b.state() == State::Closed {
            return;
        }
    }
    panic!(
        "{permits} successful probes left the breaker {:?}",
        b.state()
    );
}

/// Under T threads every call failing, the breaker opens, and the calls it
/// admits are at most the single-threaded trip point plus T - 1 (each
/// other thread holds at most one permit when the trip lands), for a rate
/// rule over striped windows (count and time) and for the consecutive
/// rule.
#[test]
fn under_many_threads_the_breaker_opens_within_its_concurrent_trip_bound() {
    const THREADS: u64 = 8;
    let clock = ManualClock::new();
    let rules = [
        // (builder, calls that trip it on one thread)
        (
            CircuitBreaker::builder()
                .failure_rate_threshold(0.5)
                .sliding_window(Window::Count(20))
                .minimum_calls(10),
            10,
        ),
        (
            CircuitBreaker::builder()
                .failure_rate_threshold(0.5)
                .sliding_window(Window::Time(Duration::from_secs(10)))
                .minimum_calls(10),
            10,
        ),
        (CircuitBreaker::builder().consecutive_failures(7), 7),
    ];
    for (builder, trip_point) in rules {
        for round in 0..100 {
            let b = builder
                .clone()
                .clock(clock.shared())
                .open_duration(Duration::from_secs(60))
                .build()
                .unwrap();
            let admitted = AtomicU64::new(0);
            let start = std::sync::Barrier::new(THREADS as usize);
            std::thread::scope(|s| {
                for _ in 0..THREADS {
                    s.spawn(|| {
                        start.wait();
                        while let Ok(p) = b.try_acquire() {
                            admitted.fetch_add(1, Ordering::Relaxed);
                            p.failure();
                        }
                    });
                }
            });
            let admitted = admitted.load(Ordering::Relaxed);
            assert_eq!(b.state(), State::Open, "round {round}");
            assert!(
                admitted >= trip_point && admitted < trip_point + THREADS,
                "round {round}: {admitted} calls admitted, trip point {trip_point}, {THREADS} threads"
            );
        }
    }
}
