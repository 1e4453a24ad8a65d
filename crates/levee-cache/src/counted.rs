//! [`Counted`]: one event's counter, for the `stats()` snapshots and, with
//! the `metrics` feature, the `metrics` crate.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// How many times an event happened; with the `metrics` feature each one
/// is also counted on `metric{owner_label=owner, event_label=event}`. The
/// metric's key is built once, with the counter, so that counting an event
/// (an L2 hit counts three) allocates nothing.
pub(crate) struct Counted {
    count: AtomicU64,
    #[cfg(feature = "metrics")]
    key: metrics::Key,
}

impl Counted {
    /// A counter at zero for `event`, e.g.
    /// `("levee_cache_requests_total", ("cache", name), ("result", "hit_l2"))`.
    pub(crate) fn new(
        metric: &'static str,
        owner: (&'static str, &Arc<str>),
        event: (&'static str, &'static str),
    ) -> Self {
        #[cfg(not(feature = "metrics"))]
        let _ = (metric, owner, event);
        Counted {
            count: AtomicU64::new(0),
            #[cfg(feature = "metrics")]
            key: metrics::Key::from_parts(
                metric,
                vec![
                    metrics::Label::new(owner.0, Arc::clone(owner.1)),
                    metrics::Label::new(event.0, event.1),
                ],
            ),
        }
    }

    /// Counts one event.
    pub(crate) fn bump(&self) {
        self.count.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        {
            static METADATA: metrics::Metadata<'static> =
                metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));
            metrics::with_recorder(|r| r.register_counter(&self.key, &METADATA)).increment(1);
        }
    }

    /// The events counted so far.
    pub(crate) fn get(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use std::sync::Mutex;

    use metrics::{
        Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    };

    use super::*;

    /// Every counter increment, by key.
    #[derive(Default)]
    struct Seen(Mutex<Vec<(String, u64)>>);

    struct Handle(Arc<Seen>, String);

    impl CounterFn for Handle {
        fn increment(&self, n: u64) {
            self.0.0.lock().unwrap().push((self.1.clone(), n));
        }
        fn absolute(&self, _: u64) {}
    }

    struct Rec(Arc<Seen>);

    impl Recorder for Rec {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let labels: Vec<_> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            Counter::from_arc(Arc::new(Handle(Arc::clone(&self.0), name)))
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    #[test]
    fn each_event_reaches_the_recorder_under_its_labels() {
        let seen = Arc::new(Seen::default());
        let counted = Counted::new(
            "levee_test_total",
            ("cache", &Arc::from("users")),
            ("result", "hit_l2"),
        );
        metrics::with_local_recorder(&Rec(Arc::clone(&seen)), || {
            counted.bump();
            counted.bump();
        });
        assert_eq!(counted.get(), 2);
        let expected = ("levee_test_total{cache=users,result=hit_l2}".to_string(), 1);
        assert_eq!(*seen.0.lock().unwrap(), vec![expected.clone(), expected]);
    }
}
