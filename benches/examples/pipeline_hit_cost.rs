//! Instructions per call, for callgrind on a noisy machine: runs `N` L1
//! hits through `TieredCache::get_or_load` (`tiered`) or a `Levee`
//! pipeline (`levee`), or `N` calls through the no-cache stack (rate limit,
//! timeouts, retry, breaker) of a `Levee` pipeline (`stack`) or of
//! tower-resilience layers (`tower`), after the same setup. Instructions
//! per call are `(Ir(N) - Ir(0)) / N`:
//!
//! ```sh
//! cargo build --release -p levee-benches --example pipeline_hit_cost
//! for what in tiered levee stack tower; do for n in 0 100000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$what.$n \
//!     target/release/examples/pipeline_hit_cost $what $n 2>&1 | grep refs
//! done; done
//! ```

use std::hint::black_box;
use std::time::Duration;

use levee::Levee;
use levee::cache::{Loaded, TieredCache};

async fn miss() -> Result<Loaded<String>, std::io::Error> {
    Err(std::io::Error::other("the run expected a hit"))
}

async fn miss_raw() -> Result<String, std::io::Error> {
    Err(std::io::Error::other("the run expected a hit"))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "levee".into());
    let n: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let cache = || {
        TieredCache::<u64, String>::builder("cost")
            .ttl(Duration::from_secs(3600))
            .build()
            .expect("a cache")
    };
    let bare = cache();
    let levee: Levee<u64, String, std::io::Error> = Levee::builder("cost")
        .cache(cache())
        .build()
        .expect("a pipeline");
    let stack = stack();
    let mut tower = tower_stack();
    rt.block_on(async {
        for k in 0..1_000 {
            bare.insert(k, format!("value {k}")).await;
            levee.insert(k, format!("value {k}")).await;
        }
        let start = std::time::Instant::now();
        for i in 0..n {
            match what.as_str() {
                "tiered" => {
                    black_box(bare.get_or_load(i % 1_000, miss).await.ok());
                }
                "stack" => {
                    black_box(
                        stack
                            .get(i % 1_000, move || async move { Ok(i) })
                            .await
                            .ok(),
                    );
                }
                "tower" => {
                    use tower::{Service, ServiceExt};
                    let svc = tower.ready().await.expect("ready");
                    black_box(svc.call(i).await.ok());
                }
                _ => {
                    black_box(levee.get(i % 1_000, miss_raw).await.ok());
                }
            }
        }
        if n > 0 {
            println!("{what}: {:?} per hit", start.elapsed() / n as u32);
        }
    });
}

fn stack() -> Levee<u64, u64, std::io::Error> {
    use levee::RetryPolicy;
    use levee::breaker::CircuitBreaker;
    use levee::limit::{Quota, SlidingWindow};
    let quota = Quota::new((1 << 24) - 1, Duration::from_secs(1)).expect("a quota");
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

fn tower_stack() -> impl tower::Service<u64, Response = u64, Error = impl std::fmt::Debug> {
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
