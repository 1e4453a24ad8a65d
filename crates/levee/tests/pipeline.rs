//! The Levee pipeline against scripted in-process upstreams, timed with a
//! ManualClock: retries, Retry-After, the budget, breaker and stale values,
//! per-key 429s, fallback, cancellation, every error.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use levee::breaker::{CircuitBreaker, State};
use levee::cache::{Freshness, Loaded, Source, TieredCache};
use levee::core::{Clock, ManualClock};
use levee::limit::{ConcurrencyLimit, Quota, SlidingWindow, UpstreamQuota};
use levee::{Error, Levee, RetryBudget, RetryPolicy, Verdict};

/// One answer of a scripted upstream.
#[derive(Debug, Clone)]
enum Answer {
    Ok(&'static str),
    Status(u16, Option<u64>),
    Hang,
}

/// An upstream that answers from a script (the last answer repeats).
#[derive(Clone, Default)]
struct Upstream {
    script: Arc<std::sync::Mutex<VecDeque<Answer>>>,
    calls: Arc<AtomicU32>,
}

#[derive(Debug, Clone, PartialEq)]
struct Resp {
    status: u16,
    retry_after: Option<u64>,
    body: String,
}

impl Upstream {
    fn new(script: impl IntoIterator<Item = Answer>) -> Self {
        let u = Upstream::default();
        u.set(script);
        u
    }

    fn set(&self, script: impl IntoIterator<Item = Answer>) {
        *self.script.lock().unwrap() = script.into_iter().collect();
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    fn loader(
        &self,
    ) -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = Result<Resp, std::io::Error>> + Send>>
    + Send
    + Sync
    + 'static {
        let u = self.clone();
        move || {
            u.calls.fetch_add(1, Ordering::SeqCst);
            let next = {
                let mut s = u.script.lock().unwrap();
                if s.len() > 1 {
                    s.pop_front()
                } else {
                    s.front().cloned()
                }
            };
            Box::pin(async move {
                match next.unwrap_or(Answer::Status(500, None)) {
                    Answer::Ok(b) => Ok(Resp {
                        status: 200,
                        retry_after: None,
                        body: b.to_string(),
                    }),
                    Answer::Status(s, ra) => Ok(Resp {
                        status: s,
                        retry_after: ra,
                        body: String::new(),
                    }),
                    Answer::Hang => std::future::pending().await,
                }
            })
        }
    }
}

fn classify(r: &Result<Resp, std::io::Error>) -> Verdict {
    match r {
        Ok(r) if r.status == 200 => Verdict::Success,
        Ok(r) if r.status == 429 => Verdict::RateLimited {
            retry_after: r.retry_after.map(Duration::from_secs),
        },
        Ok(r) if r.status >= 500 => Verdict::Failure,
        Ok(_) => Verdict::DoNotRetry,
        Err(_) => Verdict::Failure,
    }
}

fn body(r: Resp) -> Loaded<String> {
    Loaded::Value(r.body)
}

type Pipeline = Levee<String, String, std::io::Error, Resp>;

fn builder(clock: &ManualClock) -> levee::LeveeBuilder<String, String, std::io::Error, Resp> {
    Levee::builder("test")
        .map(body)
        .classify(classify)
        .clock(clock.shared())
}

fn cache(clock: &ManualClock) -> TieredCache<String, String> {
    TieredCache::builder("test")
        .ttl(Duration::from_secs(60))
        .stale_tiers([("secondary", Duration::from_secs(3600))])
        .failure_backoff(Duration::ZERO)
        .clock(clock.shared())
        .build()
        .unwrap()
}

/// Runs `fut` on its own task; whenever everything runnable has run and it
/// is not done, moves the clock to the next sleeper's deadline.
async fn drive<T: Send + 'static>(
    clock: &ManualClock,
    fut: impl Future<Output = T> + Send + 'static,
) -> T {
    let task = tokio::spawn(fut);
    loop {
        for _ in 0..16 {
            tokio::task::yield_now().await;
        }
        if task.is_finished() {
            return task.await.unwrap();
        }
        clock.advance_to_next_sleeper();
    }
}

async fn get(
    p: &Pipeline,
    clock: &ManualClock,
    key: &str,
    u: &Upstream,
) -> Result<Option<levee::cache::Cached<String>>, Error<std::io::Error>> {
    let (p, key, loader) = (p.clone(), key.to_string(), u.loader());
    drive(clock, async move { p.get(key, loader).await }).await
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after() {
    let clock = ManualClock::new();
    let u = Upstream::new([Answer::Status(429, Some(7)), Answer::Ok("alice")]);
    let p = builder(&clock)
        .retry(RetryPolicy::new(3).no_budget())
        .build()
        .unwrap();
    let start = clock.now();
    let got = get(&p, &clock, "alice", &u).await.unwrap().unwrap();
    assert_eq!(got.value, "alice");
    assert_eq!(u.calls(), 2);
    let waited = clock.now() - start;
    assert!(waited >= Duration::from_secs(7), "retried after {waited:?}");
    assert_eq!(p.stats().retries, 1);
}

#[tokio::test]
async fn a_retry_after_past_the_cap_ends_the_call_as_rate_limited() {
    let clock = ManualClock::new();
    let u = Upstream::new([Answer::Status(429, Some(600))]);
    let p = builder(&clock)
        .retry(RetryPolicy::new(3).max_retry_after(Duration::from_secs(30)))
        .build()
        .unwrap();
    let err = get(&p, &clock, "alice", &u).await.unwrap_err();
    assert!(err.is_rate_limited(), "{err}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(600)));
    assert_eq!(u.calls(), 1);
}

#[tokio::test]
async fn the_breaker_opens_on_503s_while_stale_values_are_served() {
    let clock = ManualClock::new();
    let u = Upstream::new([Answer::Ok("v1")]);
    let breaker = CircuitBreaker::builder()
        .consecutive_failures(3)
        .open_duration(Duration::from_secs(30))
        .clock(clock.shared())
        .build()
        .unwrap();
    let p = builder(&clock)
        .cache(cache(&clock))
        .circuit_breaker(breaker.clone())
        .build()
        .unwrap();
    for key in ["a", "b", "c", "d", "e"] {
        assert_eq!(get(&p, &clock, key, &u).await.unwrap().unwrap().value, "v1");
    }
    clock.advance(Duration::from_secs(61));
    u.set([Answer::Status(503, None)]);
    let before = u.calls();
    for key in ["a", "b", "c", "d", "e"] {
        let got = get(&p, &clock, key, &u).await.unwrap().unwrap();
        assert_eq!(got.value, "v1");
        assert!(matches!(got.freshness, Freshness::Stale { .. }), "{got:?}");
    }
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(
        u.calls() - before,
        3,
        "the open breaker spared the upstream"
    );
    assert_eq!(p.stats().circuit_open, 2);
}

#[tokio::test]
async fn one_users_429_holds_that_user_back_and_no_one_else() {
    let clock = ManualClock::new();
    let alice = Upstream::new([Answer::Status(429, Some(60))]);
    let bob = Upstream::new([Answer::Ok("bob")]);
    let breaker = CircuitBreaker::builder()
        .consecutive_failures(1)
        .clock(clock.shared())
        .build()
        .unwrap();
    let p = builder(&clock)
        .upstream_quota(
            UpstreamQuota::<String>::builder()
                .clock(clock.shared())
                .build(),
        )
        .circuit_breaker(breaker.clone())
        .build()
        .unwrap();
    let err = get(&p, &clock, "alice", &alice).await.unwrap_err();
    assert!(err.is_rate_limited());
    assert_eq!(
        breaker.state(),
        State::Closed,
        "a 429 is not a breaker failure"
    );
    // Alice is held back: the upstream is not called for her again.
    let err = get(&p, &clock, "alice", &alice).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(60)));
    assert_eq!(alice.calls(), 1);
    // Bob is not slowed or failed.
    let start = clock.now();
    for _ in 0..5 {
        assert_eq!(
            get(&p, &clock, "bob", &bob).await.unwrap().unwrap().value,
            "bob"
        );
    }
    assert_eq!(clock.now(), start, "bob never waited");
    clock.advance(Duration::from_secs(60));
    alice.set([Answer::Ok("alice")]);
    assert_eq!(
        get(&p, &clock, "alice", &alice)
            .await
            .unwrap()
            .unwrap()
            .value,
        "alice"
    );
}

#[tokio::test]
async fn the_retry_budget_keeps_a_down_upstream_from_a_retry_storm() {
    let clock = ManualClock::new();
    let u = Upstream::new([Answer::Status(503, None)]);
    let (ratio, floor_per_s, window) = (0.1, 1, Duration::from_secs(10));
    let p = builder(&clock)
        .retry(RetryPolicy::new(3).budget(RetryBudget::new(ratio, floor_per_s, window)))
        .build()
        .unwrap();
    let calls = 1_000u32;
    for i in 0..calls {
        assert!(get(&p, &clock, &format!("k{i}"), &u).await.is_err());
    }
    let bound = (1.0 + ratio) * f64::from(calls) + f64::from(floor_per_s) * window.as_secs_f64();
    assert!(
        f64::from(u.calls()) <= bound,
        "{} upstream calls for {calls} calls (bound {bound}; without a budget: {})",
        u.calls(),
        3 * calls
    );
    assert!(u.calls() > calls, "some retries were allowed");
    assert!(p.stats().budget_exhausted > 0);
}

#[tokio::test]
async fn a_cancelled_caller_leaks_no_bulkhead_slot_or_breaker_probe() {
    let clock = ManualClock::new();
    let u = Upstream::new([Answer::Hang]);
    let bulkhead = ConcurrencyLimit::new(1, 0).unwrap();
    let breaker = CircuitBreaker::builder()
        .consecutive_failures(1)
        .half_open_permits(1)
        .clock(clock.shared())
        .build()
        .unwrap();
    let p = builder(&clock)
        .concurrency(bulkhead.clone())
        .circuit_breaker(breaker.clone())
        .build()
        .unwrap();
    breaker.trip_for(Duration::from_secs(1));
    clock.advance(Duration::from_secs(1)); // the next attempt is the one probe
    let call = tokio::spawn({
        let (p, loader) = (p.clone(), u.loader());
        async move { p.get("k".to_string(), loader).await }
    });
    while u.calls() == 0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(bulkhead.in_flight(), 1);
    call.abort();
    let _ = call.await;
    assert_eq!(bulkhead.in_flight(), 0, "the slot came back");
    u.set([Answer::Ok("v")]);
    let got = get(&p, &clock, "k", &u).await.unwrap().unwrap();
    assert_eq!(got.value, "v", "the probe slot came back too");
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test]
async fn the_fallback_runs_only_when_no_stale_value_exists() {
    let clock = ManualClock::new();
    let u = Upstream::new([Answer::Ok("cached")]);
    let fallbacks = Arc::new(AtomicU32::new(0));
    let f = fallbacks.clone();
    let p = builder(&clock)
        .cache(cache(&clock))
        .fallback(move |k: String| {
            f.fetch_add(1, Ordering::SeqCst);
            async move { Ok(Some(format!("default for {k}"))) }
        })
        .build()
        .unwrap();
    get(&p, &clock, "known", &u).await.unwrap();
    clock.advance(Duration::from_secs(61));
    u.set([Answer::Status(503, None)]);
    let stale = get(&p, &clock, "known", &u).await.unwrap().unwrap();
    assert_eq!((stale.value.as_str(), stale.source), ("cached", Source::L1));
    assert_eq!(fallbacks.load(Ordering::SeqCst), 0, "a stale value served");
    let fb = get(&p, &clock, "new", &u).await.unwrap().unwrap();
    assert_eq!(
        (fb.value.as_str(), fb.source),
        ("default for new", Source::Fallback)
    );
    assert_eq!(fallbacks.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_hour_of_retries_and_timeouts_runs_on_the_manual_clock() {
    let clock = ManualClock::new();
    // Every third attempt hangs until its timeout, the others fail or answer.
    let u = Upstream::new((0..2000).map(|i| match i % 3 {
        0 => Answer::Hang,
        1 => Answer::Status(503, None),
        _ => Answer::Ok("v"),
    }));
    let p = builder(&clock)
        .cache(cache(&clock))
        .retry(
            RetryPolicy::new(3)
                .no_budget()
                .base_delay(Duration::from_secs(1)),
        )
        .attempt_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let real = std::time::Instant::now();
    let start = clock.now();
    let mut served = 0;
    while clock.now() - start < Duration::from_secs(3600) {
        if get(&p, &clock, "k", &u).await.is_ok() {
            served += 1;
        }
        clock.advance(Duration::from_secs(30));
    }
    assert!(served >= 100, "{served}");
    assert!(p.stats().retries > 0);
    // Reported, not asserted: real time depends on the machine.
    eprintln!("one simulated hour took {:?} of real time", real.elapsed());
}

#[tokio::test]
async fn every_error_variant_says_what_happened() {
    let clock = ManualClock::new();
    // RateLimited, from our own limiter.
    let limiter = SlidingWindow::<String>::builder(Quota::per_minute(std::num::NonZeroU32::MIN))
        .clock(clock.shared())
        .build()
        .unwrap();
    let p = builder(&clock).rate_limit(limiter).build().unwrap();
    let ok = Upstream::new([Answer::Ok("v")]);
    get(&p, &clock, "k", &ok).await.unwrap();
    let e = get(&p, &clock, "k", &ok).await.unwrap_err();
    assert!(
        e.is_rate_limited() && e.to_string().contains("rate limited"),
        "{e}"
    );
    // CircuitOpen.
    let b = CircuitBreaker::builder()
        .clock(clock.shared())
        .build()
        .unwrap();
    b.force_open();
    let p = builder(&clock).circuit_breaker(b).build().unwrap();
    let e = get(&p, &clock, "k", &ok).await.unwrap_err();
    assert!(
        e.is_circuit_open() && e.to_string().contains("circuit breaker is open"),
        "{e}"
    );
    // Timeout.
    let hang = Upstream::new([Answer::Hang]);
    let p = builder(&clock)
        .attempt_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let e = get(&p, &clock, "k", &hang).await.unwrap_err();
    assert!(e.is_timeout() && e.to_string().contains("within 1s"), "{e}");
    // BulkheadFull.
    let bulkhead = ConcurrencyLimit::new(1, 0).unwrap();
    let _held = bulkhead.try_acquire().unwrap();
    let p = builder(&clock)
        .concurrency(bulkhead.clone())
        .build()
        .unwrap();
    let e = get(&p, &clock, "k", &ok).await.unwrap_err();
    assert!(
        matches!(e, Error::BulkheadFull) && e.to_string().contains("bulkhead"),
        "{e}"
    );
    // Upstream, with its error as the source.
    let p: Levee<String, String, std::io::Error> =
        Levee::builder("t").clock(clock.shared()).build().unwrap();
    let e = p
        .get("k".to_string(), || async {
            Err(std::io::Error::other("connection reset"))
        })
        .await
        .unwrap_err();
    assert_eq!(
        std::error::Error::source(&e).unwrap().to_string(),
        "connection reset"
    );
    assert!(
        e.upstream().is_some() && e.to_string().contains("upstream failed"),
        "{e}"
    );
    // Unsuccessful: an answer judged a failure.
    let bad = Upstream::new([Answer::Status(400, None)]);
    let p = builder(&clock).build().unwrap();
    let e = get(&p, &clock, "k", &bad).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Unsuccessful {
                verdict: Verdict::DoNotRetry,
                attempts: 1
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("do_not_retry"), "{e}");
    // Cache: the failure backoff.
    let with_backoff = TieredCache::builder("b")
        .failure_backoff(Duration::from_secs(5))
        .clock(clock.shared())
        .build()
        .unwrap();
    let p = builder(&clock).cache(with_backoff).build().unwrap();
    let down = Upstream::new([Answer::Status(503, None)]);
    let _ = get(&p, &clock, "k", &down).await.unwrap_err();
    let e = get(&p, &clock, "k", &down).await.unwrap_err();
    assert!(
        matches!(e, Error::Cache(_)) && e.retry_after().is_some(),
        "{e}"
    );
    assert_eq!(down.calls(), 1, "backed off: not called again");
}

#[tokio::test]
async fn call_once_makes_one_call_returns_its_answer_and_still_teaches_the_breaker() {
    let clock = ManualClock::new();
    let u = Upstream::new([Answer::Status(503, None)]);
    let breaker = CircuitBreaker::builder()
        .consecutive_failures(2)
        .open_duration(Duration::from_secs(30))
        .clock(clock.shared())
        .build()
        .unwrap();
    let p = builder(&clock)
        .cache(cache(&clock))
        .retry(RetryPolicy::new(5).base_delay(Duration::ZERO).no_budget())
        .circuit_breaker(breaker.clone())
        .build()
        .unwrap();
    // The 503 comes back as the upstream's own answer, not retried.
    let got = p.call_once(&"k".to_string(), u.loader()).await.unwrap();
    assert_eq!(got.unwrap().status, 503);
    assert_eq!(u.calls(), 1);
    p.call_once(&"k".to_string(), u.loader())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        breaker.state(),
        State::Open,
        "both 503s were breaker failures"
    );
    let refused = p.call_once(&"k".to_string(), u.loader()).await.unwrap_err();
    assert!(refused.is_circuit_open());
    assert_eq!(u.calls(), 2, "the open breaker kept the third call home");
    assert_eq!(
        p.stats().cache.unwrap().loads,
        0,
        "nothing went through the cache"
    );
}
