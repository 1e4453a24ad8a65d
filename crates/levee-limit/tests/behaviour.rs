//! check_n, classes, set_quota, acquire, eviction, GCRA and the bulkhead.

use std::num::NonZeroU32;
use std::time::Duration;

use levee_core::{ManualClock, TokioClock};
use levee_limit::{
    ConcurrencyLimit, Gcra, LimitError, Quota, RateLimiter, SlidingWindow, WindowMode,
};

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

#[test]
fn check_n_spends_n_and_refuses_more_than_the_limit_forever() {
    let l = SlidingWindow::<&str>::builder(Quota::per_minute(nz(10)))
        .build()
        .unwrap();
    let d = l.check_n(&"k", nz(7)).unwrap();
    assert!(d.allowed);
    assert_eq!(d.remaining, 3);
    assert!(!l.check_n(&"k", nz(4)).unwrap().allowed);
    assert!(l.check_n(&"k", nz(3)).unwrap().allowed);
    let err = l.check_n(&"k", nz(11)).unwrap_err();
    assert!(err.is_insufficient_capacity(), "{err}");
}

#[test]
fn classes_have_their_own_quotas_and_unknown_class_is_an_error() {
    let l = SlidingWindow::<u32>::builder(Quota::per_minute(nz(1)))
        .classes([
            ("anonymous", Quota::per_minute(nz(2))),
            ("authenticated", Quota::per_minute(nz(5))),
        ])
        .build()
        .unwrap();
    assert_eq!(
        (0..10)
            .filter(|_| l.check_in(&1, "anonymous").unwrap().allowed)
            .count(),
        2
    );
    assert_eq!(
        (0..10)
            .filter(|_| l.check_in(&2, "authenticated").unwrap().allowed)
            .count(),
        5
    );
    assert!(matches!(l.check_in(&3, "admin"), Err(LimitError::UnknownClass(c)) if c == "admin"));
}

#[test]
fn set_quota_takes_effect_at_once() {
    let clock = ManualClock::new();
    let l = SlidingWindow::<u8>::builder(Quota::per_second(nz(2)))
        .mode(WindowMode::Log)
        .clock(clock.shared())
        .build()
        .unwrap();
    assert_eq!((0..5).filter(|_| l.check(&0).allowed).count(), 2);
    l.set_quota(Quota::per_second(nz(4)));
    assert_eq!(
        (0..5).filter(|_| l.check(&0).allowed).count(),
        2,
        "2 more fit under the new limit of 4"
    );
    l.set_class_quota("vip", Quota::per_second(nz(100)));
    assert!(l.check_in(&0, "vip").unwrap().allowed);
}

#[tokio::test(start_paused = true)]
async fn acquire_waits_exactly_until_allowed() {
    let l = SlidingWindow::<u8>::builder(Quota::per_second(nz(2)))
        .mode(WindowMode::Log)
        .clock(TokioClock::new().shared())
        .build()
        .unwrap();
    let _ = l.check(&0);
    tokio::time::advance(Duration::from_millis(300)).await;
    let _ = l.check(&0);
    let start = tokio::time::Instant::now();
    let d = l.acquire(&0).await;
    assert!(d.allowed);
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(700),
        "the first admission leaves the window at 1 s"
    );
}

#[tokio::test(start_paused = true)]
async fn acquire_timeout_gives_up() {
    let l = SlidingWindow::<u8>::builder(Quota::per_minute(nz(1)))
        .clock(TokioClock::new().shared())
        .build()
        .unwrap();
    let _ = l.check(&0);
    let err = l
        .acquire_timeout(&0, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(err.is_timeout());
}

#[tokio::test(start_paused = true)]
async fn timed_out_acquires_leave_no_waiter_queue_behind() {
    let l = SlidingWindow::<u32>::builder(Quota::per_minute(nz(1)))
        .clock(TokioClock::new().shared())
        .build()
        .unwrap();
    for key in 0..100_000u32 {
        let _ = l.check(&key); // spends the key's one permit
        let err = l
            .acquire_timeout(&key, Duration::from_millis(1))
            .await
            .unwrap_err();
        assert!(err.is_timeout());
    }
    assert_eq!(l.waiting_keys(), 0);
}

#[tokio::test(start_paused = true)]
async fn dropped_acquire_frees_its_place_for_the_next_waiter() {
    let l = SlidingWindow::<u8>::builder(Quota::per_second(nz(1)))
        .mode(WindowMode::Log)
        .clock(TokioClock::new().shared())
        .build()
        .unwrap();
    let _ = l.check(&0);
    let first = tokio::spawn({
        let l = l.clone();
        async move { l.acquire(&0).await }
    });
    tokio::task::yield_now().await;
    first.abort(); // the first waiter gives up in line
    let _ = first.await;
    let start = tokio::time::Instant::now();
    assert!(l.acquire(&0).await.allowed);
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

#[test]
fn a_million_idle_keys_are_evicted() {
    let clock = ManualClock::new();
    let l = SlidingWindow::<u64>::builder(Quota::per_second(nz(5)))
        .clock(clock.shared())
        .build()
        .unwrap();
    for k in 0..1_000_000u64 {
        let _ = l.check(&k);
    }
    assert!(l.len() > 900_000);
    clock.advance(Duration::from_secs(3));
    // Keep using the limiter: the incremental sweep evicts on its own.
    for _ in 0..1_000_000u64 {
        let _ = l.check(&u64::MAX);
    }
    assert!(l.len() < 10, "{} keys left", l.len());
    assert_eq!(l.evict_idle(), 0);
}

#[test]
fn log_mode_and_large_limit_keys_are_evicted_and_decide_as_before() {
    // These keys live apart from the packed counters (their own lock); the
    // sweeps must reach them too, and a limit at 2^24 or above still counts.
    let big = (1 << 24) + 5;
    for (mode, limit) in [(WindowMode::Log, 5), (WindowMode::Counter, big)] {
        let clock = ManualClock::new();
        let l = SlidingWindow::<u64>::builder(Quota::per_second(nz(limit)))
            .mode(mode)
            .clock(clock.shared())
            .build()
            .unwrap();
        for k in 0..5_000u64 {
            assert!(l.check(&k).allowed);
        }
        assert_eq!(l.len(), 5_000, "{mode:?}");
        assert!(l.check_n(&0, nz(limit - 1)).unwrap().allowed);
        let full = l.check(&0);
        assert!(!full.allowed && full.remaining == 0, "{mode:?}: {full:?}");
        clock.advance(Duration::from_secs(3));
        for _ in 0..10 {
            let _ = l.check(&u64::MAX);
        }
        assert_eq!(l.len(), 1, "{mode:?}: idle keys left");
        assert!(l.check(&0).allowed, "{mode:?}: a fresh window");
    }
}

#[test]
fn a_key_checked_in_every_window_keeps_its_counts_through_sweeps() {
    // Window 1 s, idle timeout 2 s. A hot key is checked three times every
    // 300 ms (over its limit of 5 a second) while sweeps run all along
    // (explicit ones, and growth sweeps from a churn of new keys); its
    // decisions must match a limiter that never evicts (idle timeout of a
    // day, no churn). Were the hot key evicted as idle, its spent permits
    // would be forgotten and checks admitted that the reference refuses.
    let clock = ManualClock::new();
    let quota = Quota::per_second(nz(5));
    let l = SlidingWindow::<u64>::builder(quota)
        .clock(clock.shared())
        .build()
        .unwrap();
    let reference = SlidingWindow::<u64>::builder(quota)
        .clock(clock.shared())
        .idle_timeout(Duration::from_secs(86_400))
        .build()
        .unwrap();
    let hot = u64::MAX;
    let mut churn = 0u64;
    for step in 0..60 {
        for _ in 0..3 {
            assert_eq!(l.check(&hot), reference.check(&hot), "step {step}");
        }
        for _ in 0..1_500 {
            let _ = l.check(&churn);
            churn += 1;
        }
        l.evict_idle();
        clock.advance(Duration::from_millis(300));
    }
}

#[test]
fn growth_sweeps_still_evict_keys_that_became_idle() {
    // A window of 1 s: keys idle for 2 s are dropped. Growth sweeps that
    // could evict nothing are skipped; this checks that one which can is
    // not: keys kept by a sweep, idle since, go once enough new keys come.
    let clock = ManualClock::new();
    let l = SlidingWindow::<u64>::builder(Quota::per_second(nz(5)))
        .clock(clock.shared())
        .build()
        .unwrap();
    for k in 0..1_500u64 {
        let _ = l.check(&k);
    }
    assert_eq!(l.len(), 1_500, "nothing is idle yet");
    clock.advance(Duration::from_millis(1_900));
    assert_eq!(l.evict_idle(), 0, "1.9 s is not idle yet");
    // 1 s later the periodic sweep is not due (1 s since the last), but the
    // first 1,500 keys have been idle for 2.9 s.
    clock.advance(Duration::from_secs(1));
    for k in 10_000..11_500u64 {
        let _ = l.check(&k);
    }
    assert_eq!(
        l.len(),
        1_500,
        "the growth sweep evicted the idle keys and kept the new ones"
    );
}

#[test]
fn idle_timeout_shorter_than_two_windows_is_refused() {
    let err = SlidingWindow::<u8>::builder(Quota::per_minute(nz(1)))
        .idle_timeout(Duration::from_secs(60))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("idle_timeout"));
}

#[tokio::test]
async fn gcra_auth0_quota_burst_then_one_every_12_seconds() {
    let clock = ManualClock::new();
    let g = Gcra::<&str>::with_clock(nz(10), Duration::from_secs(12), clock.shared()).unwrap();
    for _ in 0..10 {
        assert!(g.check(&"u").allowed);
    }
    let d = RateLimiter::check(&g, &"u").await.unwrap();
    assert!(!d.allowed);
    assert_eq!(d.retry_after, Some(Duration::from_secs(12)));
    clock.advance(Duration::from_secs(12));
    assert!(g.check(&"u").allowed);
    assert!(!g.check(&"u").allowed);
    assert!(
        g.check_n(&"u", nz(11))
            .unwrap_err()
            .is_insufficient_capacity()
    );
}

#[tokio::test]
async fn bulkhead_queues_then_refuses_and_frees_on_drop() {
    let b = ConcurrencyLimit::new(1, 1).unwrap();
    let held = b.acquire().await.unwrap();
    let waiter = tokio::spawn({
        let b = b.clone();
        async move { b.acquire().await.map(|_| ()) }
    });
    while b.waiting() == 0 {
        tokio::task::yield_now().await;
    }
    assert!(matches!(
        b.acquire().await,
        Err(LimitError::QueueFull { .. })
    ));
    assert_eq!(b.in_flight(), 1);
    drop(held);
    waiter.await.unwrap().unwrap();
    assert_eq!(b.in_flight(), 0);
    assert_eq!(b.waiting(), 0);
}

/// A counter-mode key idle for a whole turn of its packed window index
/// (2^16 windows), which a long idle timeout keeps from being swept, starts
/// afresh: its old counts are not read as this window's or the last one's
/// (it was refused for up to two windows after an idle of exactly 2^16
/// windows). Jumps just short of and past a turn, and of several turns,
/// too.
#[test]
fn a_key_idle_for_a_turn_of_the_window_index_starts_afresh() {
    for jump in [65_535u64, 65_536, 65_537, 131_072, 3 * 65_536 + 1] {
        let clock = ManualClock::new();
        let l = SlidingWindow::<u8>::builder(Quota::per_second(nz(5)))
            .idle_timeout(Duration::from_secs(10 * 86_400))
            .clock(clock.shared())
            .build()
            .unwrap();
        for _ in 0..5 {
            assert!(l.check(&1).allowed);
        }
        assert!(!l.check(&1).allowed, "the limit is spent");
        clock.advance(Duration::from_secs(jump));
        let d = l.check(&1);
        assert!(d.allowed, "after {jump} idle windows: {d:?}");
        assert_eq!(d.remaining, 4, "after {jump} idle windows");
        for _ in 0..4 {
            assert!(l.check(&1).allowed);
        }
        assert!(!l.check(&1).allowed, "the new window's limit holds");
    }
}

/// The same with the default idle timeout: a quota class whose window is
/// far shorter than the longest one (100 ms beside an hour: the default
/// timeout, two hours, spans 72,000 of the short windows) keeps a key of
/// that class unswept through a whole turn of its index.
#[test]
fn a_short_window_class_beside_a_long_one_starts_afresh_after_a_turn() {
    let clock = ManualClock::new();
    let l = SlidingWindow::<u8>::builder(Quota::per_hour(nz(1000)))
        .classes([("burst", Quota::new(3, Duration::from_millis(100)).unwrap())])
        .clock(clock.shared())
        .build()
        .unwrap();
    for _ in 0..3 {
        assert!(l.check_in(&1, "burst").unwrap().allowed);
    }
    assert!(!l.check_in(&1, "burst").unwrap().allowed);
    clock.advance(Duration::from_millis(100 * 65_536));
    let d = l.check_in(&1, "burst").unwrap();
    assert!(d.allowed, "after 2^16 idle windows: {d:?}");
    assert_eq!(d.remaining, 2);
}
