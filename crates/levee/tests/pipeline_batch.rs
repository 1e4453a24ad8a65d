//! `Levee::get_many`: a batch through the pipeline: one batch loader call,
//! the limiter spending per key loaded or per batch, stale values per key,
//! retries of the batch call.
#![cfg(feature = "pipeline")]

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use levee::cache::{BatchLoaded, Loaded, Source, TieredCache};
use levee::core::ManualClock;
use levee::limit::{Quota, SlidingWindow};
use levee::{BatchCost, Error, Levee, RetryPolicy};

type Pipeline = Levee<String, String, String>;
type Answer = Result<BatchLoaded<String, String, String>, String>;

/// A batch upstream that records each call's keys and fails the first
/// `failures` calls.
#[derive(Clone, Default)]
struct Upstream {
    calls: Arc<Mutex<Vec<Vec<String>>>>,
    failures: Arc<Mutex<u32>>,
}

impl Upstream {
    fn loader(
        &self,
    ) -> impl Fn(Vec<String>) -> std::pin::Pin<Box<dyn std::future::Future<Output = Answer> + Send>>
    + Send
    + Sync
    + 'static {
        let me = self.clone();
        move |keys| {
            let me = me.clone();
            Box::pin(async move {
                me.calls.lock().unwrap().push(keys.clone());
                {
                    let mut f = me.failures.lock().unwrap();
                    if *f > 0 {
                        *f -= 1;
                        return Err("503".to_string());
                    }
                }
                Ok(keys
                    .into_iter()
                    .map(|k| {
                        let v = Loaded::Value(format!("v-{k}"));
                        (k, Ok(v))
                    })
                    .collect())
            })
        }
    }

    fn calls(&self) -> Vec<Vec<String>> {
        self.calls.lock().unwrap().clone()
    }
}

fn keys(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
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

fn one_per_minute(clock: &ManualClock) -> SlidingWindow<String> {
    SlidingWindow::builder(Quota::per_minute(NonZeroU32::MIN))
        .clock(clock.shared())
        .build()
        .unwrap()
}

fn pipeline(clock: &ManualClock, cost: BatchCost) -> Pipeline {
    Levee::builder("batch")
        .cache(cache(clock))
        .rate_limit(one_per_minute(clock))
        .batch_cost(cost)
        .clock(clock.shared())
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_batch_is_one_loader_call_and_fresh_keys_are_answered_from_l1() {
    let clock = ManualClock::new();
    let p = pipeline(&clock, BatchCost::PerKey);
    let up = Upstream::default();
    let got = p.get_many(keys(&["a", "b", "c"]), up.loader()).await;
    assert!(
        got.iter()
            .all(|g| g.as_ref().unwrap().as_ref().unwrap().source == Source::Loader)
    );
    assert_eq!(up.calls(), [keys(&["a", "b", "c"])]);
    // Each key spent its one permit a minute: a second load would be
    // refused, so these answers can only come from L1.
    let again = p.get_many(keys(&["a", "b", "c"]), up.loader()).await;
    assert!(
        again
            .iter()
            .all(|g| g.as_ref().unwrap().as_ref().unwrap().source == Source::L1)
    );
    assert_eq!(up.calls().len(), 1);
}

#[tokio::test]
async fn per_key_cost_refuses_only_the_keys_whose_limit_is_spent() {
    let clock = ManualClock::new();
    let p = pipeline(&clock, BatchCost::PerKey);
    let up = Upstream::default();
    p.get_many(keys(&["a"]), up.loader()).await;
    p.invalidate(&"a".to_string()).await;
    let got = p.get_many(keys(&["a", "x"]), up.loader()).await;
    assert!(
        matches!(got[0], Err(Error::RateLimited { .. })),
        "{:?}",
        got[0]
    );
    assert_eq!(got[1].as_ref().unwrap().as_ref().unwrap().value, "v-x");
    assert_eq!(up.calls()[1], keys(&["x"]), "the refused key was not sent");
}

#[tokio::test]
async fn per_batch_cost_spends_one_permit_for_the_whole_batch() {
    let clock = ManualClock::new();
    let p = pipeline(&clock, BatchCost::PerBatch);
    let up = Upstream::default();
    p.get_many(keys(&["a", "b"]), up.loader()).await;
    // "b" spent nothing: it can lead a batch of its own.
    p.invalidate(&"b".to_string()).await;
    let got = p.get_many(keys(&["b", "y"]), up.loader()).await;
    assert!(got.iter().all(Result::is_ok), "{got:?}");
    // "a" led the first batch: a batch it leads now is refused whole.
    p.invalidate(&"a".to_string()).await;
    let got = p.get_many(keys(&["a", "z"]), up.loader()).await;
    assert!(
        got.iter()
            .all(|g| matches!(g, Err(Error::RateLimited { .. }))),
        "{got:?}"
    );
    assert_eq!(up.calls().len(), 2);
}

#[tokio::test]
async fn a_failed_batch_serves_stale_per_key_and_errors_the_rest() {
    let clock = ManualClock::new();
    let p: Pipeline = Levee::builder("batch")
        .cache(cache(&clock))
        .clock(clock.shared())
        .build()
        .unwrap();
    let up = Upstream::default();
    p.get_many(keys(&["a"]), up.loader()).await;
    clock.advance(Duration::from_secs(61));
    *up.failures.lock().unwrap() = 1;
    let got = p.get_many(keys(&["a", "b"]), up.loader()).await;
    let a = got[0].as_ref().unwrap().as_ref().unwrap();
    assert!(a.freshness.is_stale());
    assert_eq!(
        got[1].as_ref().unwrap_err().upstream().map(String::as_str),
        Some("503")
    );
}

#[tokio::test]
async fn a_failed_batch_call_is_retried_as_one_call() {
    let clock = ManualClock::new();
    let p: Pipeline = Levee::builder("batch")
        .retry(RetryPolicy::new(3).base_delay(Duration::ZERO))
        .clock(clock.shared())
        .build()
        .unwrap();
    let up = Upstream::default();
    *up.failures.lock().unwrap() = 2;
    let got = p.get_many(keys(&["a", "b", "a"]), up.loader()).await;
    let values: Vec<_> = got
        .iter()
        .map(|g| g.as_ref().unwrap().as_ref().unwrap().value.as_str())
        .collect();
    assert_eq!(values, ["v-a", "v-b", "v-a"]);
    assert_eq!(up.calls().len(), 3, "two failures, then the answer");
    assert_eq!(
        up.calls()[2],
        keys(&["a", "b"]),
        "a duplicate is sent once, without a cache too"
    );
}
