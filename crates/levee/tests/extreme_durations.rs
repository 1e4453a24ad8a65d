//! Every public setting and method that takes a `Duration`, given the
//! extremes (`Duration::ZERO` where allowed, `Duration::MAX`, and 2^64 ns +
//! 0.29 s, which a truncating cast turns into 0.29 s): nothing panics or
//! wraps, and a component built with them still answers.

use std::time::Duration;

use levee::breaker::{CircuitBreaker, Window};
use levee::cache::{MemoryCache, TieredCache};
use levee::core::ManualClock;
use levee::limit::{Quota, SlidingWindow, UpstreamQuota};
use levee::{Levee, RetryBudget, RetryPolicy};

const HUGE: [Duration; 2] = [Duration::MAX, Duration::from_secs(18_446_744_074)];

#[test]
fn breaker_settings_and_trip_for_at_the_extremes() {
    for d in HUGE {
        let clock = ManualClock::new();
        let b = CircuitBreaker::builder()
            .open_duration(d)
            .max_open_duration(d)
            .slow_call(d, 0.5)
            .sliding_window(Window::Time(d))
            .consecutive_failures(1)
            .clock(clock.shared())
            .build()
            .unwrap();
        b.try_acquire().unwrap().failure();
        clock.advance(Duration::from_secs(3600));
        assert!(b.try_acquire().is_err(), "still open an hour later");
        b.reset();
        b.trip_for(d);
        clock.advance(Duration::from_secs(3600));
        assert!(b.try_acquire().is_err());
        let _ = b.stats();
    }
}

#[tokio::test]
async fn cache_settings_at_the_extremes() {
    for d in HUGE {
        let clock = ManualClock::new();
        let l1 = MemoryCache::<u32, u32>::builder()
            .max_capacity(10)
            .time_to_live(d)
            .stale_retention(d)
            .clock(clock.shared())
            .build()
            .unwrap();
        l1.insert_with_ttl(1, 1, d);
        clock.advance(Duration::from_secs(3600));
        assert_eq!(l1.get(&1), Some(1));
        let cache: TieredCache<u32, u32> = TieredCache::builder("t")
            .ttl(d)
            .stale_while_revalidate(d)
            .stale_tiers([("forever", d)])
            .failure_backoff(d)
            .negative_ttl(d)
            .soft_timeout(d / 2)
            .hard_timeout(d)
            .clock(clock.shared())
            .build()
            .unwrap();
        let got = cache
            .get_or_load(1, || async { Ok::<_, std::io::Error>(7.into()) })
            .await
            .unwrap();
        assert_eq!(got.unwrap().value, 7);
        clock.advance(Duration::from_secs(3600));
        assert_eq!(cache.get(&1).unwrap().value, 7);
    }
}

#[test]
fn limiter_and_quota_settings_at_the_extremes() {
    for d in HUGE {
        let clock = ManualClock::new();
        if let Ok(q) = Quota::new(3, d) {
            let l = SlidingWindow::<u32>::builder(q)
                .clock(clock.shared())
                .build()
                .unwrap();
            assert!(l.check(&1).allowed);
        }
        let quota = UpstreamQuota::<u32>::builder()
            .default_hold(d)
            .max_hold(d)
            .clock(clock.shared())
            .build();
        let held = quota.hold(&1, d);
        assert_eq!(held, d.min(quota.max_hold()));
        assert!(quota.check(&1) != levee::limit::QuotaState::Ready);
    }
}

#[tokio::test]
async fn pipeline_settings_at_the_extremes() {
    for d in HUGE {
        let clock = ManualClock::new();
        let p: Levee<u32, u32, std::io::Error> = Levee::builder("t")
            .timeout(d)
            .attempt_timeout(d)
            .queue_timeout(d)
            .retry(
                RetryPolicy::new(3)
                    .base_delay(d)
                    .max_delay(d)
                    .max_retry_after(d)
                    .budget(RetryBudget::new(0.1, 1, d)),
            )
            .clock(clock.shared())
            .build()
            .unwrap();
        let got = p.get(1, || async { Ok(5) }).await.unwrap().unwrap();
        assert_eq!(got.value, 5);
    }
}
