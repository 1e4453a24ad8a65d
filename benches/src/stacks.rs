//! The same no-cache stack two ways: a `Levee` pipeline and tower-resilience
//! layers (rate limit, total timeout, retry, breaker, attempt timeout around
//! a service that answers at once), for the pipeline bench and
//! `examples/pipeline_hit_cost.rs`.

use std::time::Duration;

use levee::breaker::CircuitBreaker;
use levee::limit::{Quota, SlidingWindow};
use levee::{Levee, RetryPolicy};

/// A `Levee` pipeline with every part but the cache, limits that never bite.
pub fn levee_stack() -> Levee<u64, u64, std::io::Error> {
    let quota = Quota::new((1 << 24) - 1, Duration::from_secs(1)).expect("a valid quota");
    Levee::builder("stack")
        .rate_limit(
            SlidingWindow::<u64>::builder(quota)
                .build()
                .expect("a limiter"),
        )
        .timeout(Duration::from_secs(5))
        .retry(RetryPolicy::new(3))
        .circuit_breaker(CircuitBreaker::builder().build().expect("a breaker"))
        .attempt_timeout(Duration::from_secs(2))
        .build()
        .expect("a pipeline")
}

type TrError = tower_resilience::circuitbreaker::CircuitBreakerError<
    tower_resilience::timelimiter::TimeLimiterError<std::io::Error>,
>;

/// The same parts as tower-resilience layers in one `ServiceBuilder`.
pub fn tower_stack() -> impl tower::Service<u64, Response = u64, Error = impl std::fmt::Debug> {
    use tower::ServiceBuilder;
    use tower_resilience::circuitbreaker::CircuitBreakerLayer;
    use tower_resilience::ratelimiter::RateLimiterLayer;
    use tower_resilience::retry::RetryLayer;
    use tower_resilience::timelimiter::TimeLimiterLayer;
    ServiceBuilder::new()
        .layer(
            RateLimiterLayer::builder()
                .limit_for_period(1 << 30)
                .refresh_period(Duration::from_secs(1))
                .build(),
        )
        .layer(
            TimeLimiterLayer::builder()
                .timeout_duration(Duration::from_secs(5))
                .build(),
        )
        .layer(
            RetryLayer::<u64, u64, TrError>::builder()
                .max_attempts(3)
                .exponential_backoff(Duration::from_millis(50))
                .build(),
        )
        .layer(CircuitBreakerLayer::builder().build())
        .layer(
            TimeLimiterLayer::builder()
                .timeout_duration(Duration::from_secs(2))
                .build(),
        )
        .service(tower::service_fn(|req: u64| async move {
            Ok::<u64, std::io::Error>(req)
        }))
}
