//! The Levee pipeline's cost on an L1 hit, beside `TieredCache::get_or_load`
//! alone on the same keys: first with no tracing subscriber and no metrics
//! recorder, then with both installed (an `INFO` fmt subscriber writing to
//! a sink, as in production, and a recorder that counts).
//!
//! And a call through rate limit + total timeout + retry + breaker +
//! attempt timeout (no cache) around a loader that answers at once, beside
//! the same stack of `tower-resilience` layers in one `ServiceBuilder`.
//!
//! Run: `cargo bench -p levee-benches --bench pipeline`
#![allow(missing_docs)] // criterion_main! generates an undocumented `main`

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use levee::Levee;
use levee::cache::{Loaded, TieredCache};

const KEYS: u64 = 1_000;

type Pipeline = Levee<u64, String, std::io::Error>;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn cache() -> TieredCache<u64, String> {
    TieredCache::builder("bench")
        .ttl(Duration::from_secs(3600))
        .build()
        .unwrap()
}

/// A pipeline and a bare cache, each holding every key.
fn setup(rt: &tokio::runtime::Runtime) -> (Pipeline, TieredCache<u64, String>) {
    let bare = cache();
    let levee: Pipeline = Levee::builder("bench").cache(cache()).build().unwrap();
    rt.block_on(async {
        for k in 0..KEYS {
            bare.insert(k, format!("value {k}")).await;
            levee.insert(k, format!("value {k}")).await;
        }
    });
    (levee, bare)
}

async fn miss() -> Result<Loaded<String>, std::io::Error> {
    Err(std::io::Error::other("the bench expected a hit"))
}

async fn miss_raw() -> Result<String, std::io::Error> {
    Err(std::io::Error::other("the bench expected a hit"))
}

fn measure(c: &mut Criterion, label: &str) {
    let rt = runtime();
    let (levee, bare) = setup(&rt);
    let mut g = c.benchmark_group(format!("l1_hit_{label}"));
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    g.bench_function("tiered_get_or_load", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    let got = bare.get_or_load(i % KEYS, miss).await;
                    black_box(got.unwrap());
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("levee_get", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    let got = levee.get(i % KEYS, miss_raw).await;
                    black_box(got.unwrap());
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

/// A recorder that counts what it is given (the cheapest real recorder).
#[derive(Default)]
struct Counting(Arc<AtomicU64>);

struct Sink(Arc<AtomicU64>);

impl metrics::HistogramFn for Sink {
    fn record(&self, _: f64) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

impl metrics::Recorder for Counting {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::from_arc(Arc::new(AtomicU64::new(0)))
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::from_arc(Arc::new(AtomicU64::new(0)))
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::from_arc(Arc::new(Sink(self.0.clone())))
    }
}

fn stack(c: &mut Criterion) {
    use tower::{Service, ServiceExt};

    let rt = runtime();
    let levee = levee_benches::stacks::levee_stack();
    let mut tower_stack = levee_benches::stacks::tower_stack();
    let mut g = c.benchmark_group("stack_no_cache");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    g.bench_function("levee_pipeline", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    let got = levee.get(i % KEYS, move || async move { Ok(i) }).await;
                    black_box(got.unwrap());
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("tower_resilience", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    let got = tower_stack.ready().await.unwrap().call(i).await;
                    black_box(got.unwrap());
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

fn pipeline(c: &mut Criterion) {
    stack(c);
    measure(c, "bare");
    // Installed once for the rest of the process: the second pipeline
    // registers its handles with the recorder.
    let _ = metrics::set_global_recorder(Counting::default());
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::sink)
        .init();
    measure(c, "observed");
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
