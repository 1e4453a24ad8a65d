//! Each trip and recovery rule, driven by a ManualClock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use levee_breaker::{BreakerEvent, BreakerRegistry, CircuitBreaker, Outcome, State, Window};
use levee_core::ManualClock;

fn fail(b: &CircuitBreaker, n: usize) {
    for _ in 0..n {
        b.try_acquire().unwrap().failure();
    }
}

fn succeed(b: &CircuitBreaker, n: usize) {
    for _ in 0..n {
        b.try_acquire().unwrap().success();
    }
}

#[test]
fn failure_rate_over_count_window_trips_only_after_minimum_calls() {
    let b = CircuitBreaker::builder()
        .failure_rate_threshold(0.5)
        .sliding_window(Window::Count(10))
        .minimum_calls(6)
        .build()
        .unwrap();
    fail(&b, 3);
    succeed(&b, 2); // 3 of 5 failed, but fewer than 6 calls
    assert_eq!(b.state(), State::Closed);
    succeed(&b, 1); // 3 of 6 = 50%: the sixth call completes minimum_calls
    assert_eq!(b.state(), State::Open);
}

#[test]
fn count_window_forgets_old_failures() {
    let b = CircuitBreaker::builder()
        .failure_rate_threshold(0.5)
        .sliding_window(Window::Count(4))
        .minimum_calls(4)
        .build()
        .unwrap();
    fail(&b, 1);
    succeed(&b, 3);
    succeed(&b, 1); // pushes the failure out
    fail(&b, 1); // window: S S S F = 25%
    assert_eq!(b.state(), State::Closed);
    fail(&b, 1); // S S F F = 50%
    assert_eq!(b.state(), State::Open);
}

#[test]
fn failure_rate_over_time_window_forgets_old_buckets() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder()
        .failure_rate_threshold(0.5)
        .sliding_window(Window::Time(Duration::from_secs(10)))
        .minimum_calls(4)
        .clock(clock.shared())
        .build()
        .unwrap();
    fail(&b, 3);
    clock.advance(Duration::from_secs(11)); // those failures leave the window
    succeed(&b, 3);
    fail(&b, 1); // 1/4 in the window
    assert_eq!(b.state(), State::Closed);
    fail(&b, 1); // 2/5
    assert_eq!(b.state(), State::Closed);
    fail(&b, 1); // 3/6
    assert_eq!(b.state(), State::Open);
}

#[test]
fn slow_calls_trip_by_rate() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder()
        .no_failure_rate()
        .slow_call(Duration::from_millis(100), 0.5)
        .sliding_window(Window::Count(10))
        .minimum_calls(4)
        .clock(clock.shared())
        .build()
        .unwrap();
    for i in 0..4 {
        let p = b.try_acquire().unwrap();
        if i % 2 == 0 {
            clock.advance(Duration::from_millis(150));
        }
        p.success();
    }
    assert_eq!(b.state(), State::Open, "2 of 4 calls were slow");
    assert_eq!(b.stats().slow_calls, 2);
}

#[test]
fn consecutive_failures_trip_regardless_of_minimum_calls() {
    let b = CircuitBreaker::builder()
        .no_failure_rate()
        .consecutive_failures(3)
        .minimum_calls(100)
        .build()
        .unwrap();
    fail(&b, 2);
    succeed(&b, 1); // breaks the run
    fail(&b, 2);
    assert_eq!(b.state(), State::Closed);
    fail(&b, 1);
    assert_eq!(b.state(), State::Open);
}

#[test]
fn open_rejects_with_time_left_then_half_open_admits_exactly_permits() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder()
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(30))
        .half_open_permits(2)
        .clock(clock.shared())
        .build()
        .unwrap();
    fail(&b, 1);
    clock.advance(Duration::from_secs(10));
    assert_eq!(
        b.try_acquire().unwrap_err().retry_after,
        Some(Duration::from_secs(20))
    );
    clock.advance(Duration::from_secs(20));
    let p1 = b.try_acquire().unwrap();
    let p2 = b.try_acquire().unwrap();
    assert!(p1.is_probe() && p2.is_probe());
    assert_eq!(b.state(), State::HalfOpen);
    assert_eq!(b.try_acquire().unwrap_err().retry_after, None);
    p1.success();
    assert_eq!(b.state(), State::HalfOpen);
    p2.success();
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn half_open_failure_reopens_with_exponential_backoff_capped() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder()
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(10))
        .backoff_multiplier(2.0)
        .max_open_duration(Duration::from_secs(30))
        .half_open_permits(1)
        .clock(clock.shared())
        .build()
        .unwrap();
    fail(&b, 1);
    let mut expected = [20, 30, 30].into_iter();
    clock.advance(Duration::from_secs(10));
    for _ in 0..3 {
        b.try_acquire().unwrap().failure(); // the probe fails
        let open = expected.next().unwrap();
        assert_eq!(
            b.try_acquire().unwrap_err().retry_after,
            Some(Duration::from_secs(open))
        );
        clock.advance(Duration::from_secs(open));
    }
    b.try_acquire().unwrap().success();
    assert_eq!(b.state(), State::Closed);
    fail(&b, 1);
    assert_eq!(
        b.try_acquire().unwrap_err().retry_after,
        Some(Duration::from_secs(10)),
        "closing resets the backoff"
    );
}

#[test]
fn dropped_probe_frees_its_slot() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder()
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(1))
        .half_open_permits(1)
        .clock(clock.shared())
        .build()
        .unwrap();
    fail(&b, 1);
    clock.advance(Duration::from_secs(1));
    drop(b.try_acquire().unwrap());
    let p = b
        .try_acquire()
        .expect("the dropped probe's slot is free again");
    p.ignore();
    b.try_acquire().unwrap().success();
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn outcome_from_before_a_state_change_updates_stats_only() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder()
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(1))
        .half_open_permits(1)
        .clock(clock.shared())
        .build()
        .unwrap();
    let old = b.try_acquire().unwrap();
    fail(&b, 1);
    clock.advance(Duration::from_secs(1));
    let probe = b.try_acquire().unwrap();
    old.failure(); // issued while Closed: must not reopen the HalfOpen breaker
    assert_eq!(b.state(), State::HalfOpen);
    probe.success();
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn trip_for_opens_for_the_given_time() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder()
        .clock(clock.shared())
        .build()
        .unwrap();
    b.trip_for(Duration::from_secs(42));
    assert_eq!(
        b.try_acquire().unwrap_err().retry_after,
        Some(Duration::from_secs(42))
    );
    clock.advance(Duration::from_secs(42));
    assert!(b.try_acquire().is_ok());
}

#[test]
fn forced_open_and_disabled_until_reset() {
    let b = CircuitBreaker::builder()
        .consecutive_failures(1)
        .build()
        .unwrap();
    b.force_open();
    assert_eq!(b.try_acquire().unwrap_err().retry_after, None);
    b.disable();
    fail(&b, 5);
    assert_eq!(b.state(), State::Disabled, "disabled never trips");
    b.reset();
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.stats().calls, 0);
}

#[test]
fn events_fire_once_per_transition() {
    let clock = ManualClock::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let b = CircuitBreaker::builder()
        .consecutive_failures(2)
        .open_duration(Duration::from_secs(1))
        .half_open_permits(1)
        .clock(clock.shared())
        .on_event(move |e| {
            if let BreakerEvent::StateChanged { from, to, .. } = e {
                sink.lock().unwrap().push((*from, *to));
            }
        })
        .build()
        .unwrap();
    fail(&b, 2);
    for _ in 0..3 {
        assert!(b.try_acquire().is_err());
    }
    clock.advance(Duration::from_secs(1));
    b.try_acquire().unwrap().success();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            (State::Closed, State::Open),
            (State::Open, State::HalfOpen),
            (State::HalfOpen, State::Closed)
        ]
    );
}

#[tokio::test]
async fn call_counts_errors_and_call_with_classifies() {
    let b = CircuitBreaker::builder()
        .no_failure_rate()
        .consecutive_failures(2)
        .build()
        .unwrap();
    let not_found = |r: &Result<(), u16>| match r {
        Err(404) => Outcome::Ignore,
        Err(_) => Outcome::Failure,
        Ok(()) => Outcome::Success,
    };
    for _ in 0..5 {
        let r = b
            .call_with(|| async { Err::<(), u16>(404) }, not_found)
            .await;
        assert_eq!(r.unwrap_err().into_inner(), Some(404));
    }
    assert_eq!(b.state(), State::Closed, "404s are ignored");
    let _ = b.call(|| async { Err::<(), u16>(503) }).await;
    let _ = b.call(|| async { Err::<(), u16>(503) }).await;
    assert_eq!(b.state(), State::Open);
    let r = b.call(|| async { Ok::<u8, u16>(1) }).await;
    assert!(r.unwrap_err().is_rejected());
}

#[test]
fn registry_evicts_idle_closed_breakers_but_never_open_ones() {
    let clock = ManualClock::new();
    let reg = BreakerRegistry::with_idle_timeout(
        CircuitBreaker::builder().consecutive_failures(1),
        Duration::from_secs(60),
        clock.shared(),
    )
    .unwrap();
    reg.get(&"a").try_acquire().unwrap().success();
    reg.get(&"b").try_acquire().unwrap().failure();
    assert_eq!(reg.get(&"b").state(), State::Open);
    clock.advance(Duration::from_secs(61));
    assert_eq!(reg.evict_idle(), 1);
    assert_eq!(reg.len(), 1);
    assert_eq!(
        reg.get(&"b").state(),
        State::Open,
        "the open breaker was kept"
    );
}

#[test]
fn invalid_settings_are_named() {
    let err = CircuitBreaker::builder()
        .failure_rate_threshold(1.5)
        .build()
        .unwrap_err();
    assert_eq!(err.setting, "failure_rate_threshold");
    let err = CircuitBreaker::builder()
        .half_open_permits(0)
        .build()
        .unwrap_err();
    assert_eq!(err.setting, "half_open_permits");
    let err = CircuitBreaker::builder()
        .sliding_window(Window::Count(0))
        .build()
        .unwrap_err();
    assert_eq!(err.setting, "sliding_window");
}

#[tokio::test]
async fn builder_classifier_decides_how_call_counts_errors() {
    let b = CircuitBreaker::builder()
        .consecutive_failures(2)
        .classifier(|e| match e.downcast_ref::<u16>() {
            Some(404) => Outcome::Ignore,
            _ => Outcome::Failure,
        })
        .build()
        .unwrap();
    for _ in 0..5 {
        let _ = b.call(|| async { Err::<(), u16>(404) }).await;
    }
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.stats().calls, 0, "ignored outcomes are not counted");
    let _ = b.call(|| async { Err::<(), u16>(500) }).await;
    let _ = b.call(|| async { Err::<(), u16>(500) }).await;
    assert_eq!(b.state(), State::Open);
}

#[test]
fn minimum_calls_is_capped_at_the_count_window_size() {
    // The default minimum (20) is larger than the window: the effective
    // minimum is the window's size, so a window full of failures trips.
    let b = CircuitBreaker::builder()
        .sliding_window(Window::Count(10))
        .build()
        .unwrap();
    fail(&b, 9);
    assert_eq!(
        b.state(),
        State::Closed,
        "fewer calls than the window holds"
    );
    fail(&b, 1);
    assert_eq!(b.state(), State::Open);
}

#[test]
fn trip_for_a_duration_past_the_clock_range_saturates_instead_of_wrapping() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder()
        .clock(clock.shared())
        .build()
        .unwrap();
    // 18_446_744_074 s is 2^64 ns + 0.29 s: a truncating cast opens for 0.29 s.
    b.trip_for(Duration::from_secs(18_446_744_074));
    clock.advance(Duration::from_secs(3600));
    let left = b.try_acquire().unwrap_err().retry_after.unwrap();
    assert!(
        left > Duration::from_secs(100 * 365 * 24 * 3600),
        "{left:?}"
    );
    b.trip_for(Duration::MAX);
    clock.advance(Duration::from_secs(3600));
    assert!(b.try_acquire().is_err());
}

#[test]
fn owned_permit_crosses_threads_and_records_like_a_borrowed_one() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder()
        .consecutive_failures(2)
        .open_duration(Duration::from_secs(1))
        .half_open_permits(1)
        .clock(clock.shared())
        .build()
        .unwrap();
    for _ in 0..2 {
        let p = b.try_acquire_owned().unwrap();
        std::thread::spawn(move || p.failure()).join().unwrap();
    }
    assert_eq!(b.state(), State::Open);
    clock.advance(Duration::from_secs(1));
    let probe = b.try_acquire_owned().unwrap();
    assert!(probe.is_probe());
    assert!(b.try_acquire_owned().is_err(), "one probe only");
    drop(probe); // unrecorded: frees the probe slot
    let probe = b.try_acquire_owned().unwrap();
    let b2 = b.clone();
    drop(b); // the permit keeps the breaker alive
    probe.success();
    assert_eq!(b2.state(), State::Closed);
}

#[tokio::test]
async fn the_calls_own_error_is_the_source_of_the_breaker_error() {
    use std::error::Error as _;
    let b = CircuitBreaker::builder().build().unwrap();
    let err = b
        .call(|| async { Err::<(), _>(std::io::Error::other("upstream 503")) })
        .await
        .unwrap_err();
    assert_eq!(err.source().unwrap().to_string(), "upstream 503");
    assert!(
        !err.to_string().contains("upstream 503"),
        "not repeated: {err}"
    );
}
