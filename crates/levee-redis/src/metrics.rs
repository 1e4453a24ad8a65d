//! Metrics (feature `metrics`): `levee_redis_command_seconds{client}`
//! (histogram of admitted calls' latency), `levee_redis_errors_total{client,
//! kind}` and `levee_redis_rejected_total{client}`; the breaker's state is
//! `levee_breaker_state{breaker=<client name>}` from `levee-breaker`.
//! Handles are registered once, so a call allocates nothing for them.

use std::time::Duration;

use crate::RedisError;

pub(crate) struct Metrics {
    latency: metrics::Histogram,
    timeout: metrics::Counter,
    unreachable: metrics::Counter,
    server: metrics::Counter,
    reply: metrics::Counter,
    rejected: metrics::Counter,
}

impl Metrics {
    pub(crate) fn new(client: &str) -> Self {
        let errors = |kind: &'static str| metrics::counter!("levee_redis_errors_total", "client" => client.to_string(), "kind" => kind);
        Metrics {
            latency: metrics::histogram!("levee_redis_command_seconds", "client" => client.to_string()),
            timeout: errors("timeout"),
            unreachable: errors("unreachable"),
            server: errors("server"),
            reply: errors("reply"),
            rejected: metrics::counter!("levee_redis_rejected_total", "client" => client.to_string()),
        }
    }

    pub(crate) fn rejected(&self) {
        self.rejected.increment(1);
    }

    pub(crate) fn call(&self, took: Duration, result: Result<(), &RedisError>) {
        self.latency.record(took.as_secs_f64());
        let Err(e) = result else { return };
        match e {
            RedisError::Timeout { .. } => self.timeout.increment(1),
            RedisError::Unreachable { .. } => self.unreachable.increment(1),
            RedisError::Server { .. } => self.server.increment(1),
            _ => self.reply.increment(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use metrics::{
        Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString,
        Unit,
    };

    use super::*;

    /// Counts every counter by name and labels, and histogram records.
    #[derive(Default)]
    struct Counting {
        counters: parking_lot::Mutex<Vec<(String, Arc<AtomicU64>)>>,
        records: Arc<Records>,
    }

    #[derive(Default)]
    struct Records(AtomicU64);

    impl HistogramFn for Records {
        fn record(&self, _: f64) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    impl Counting {
        fn get(&self, name: &str) -> u64 {
            let counters = self.counters.lock();
            let found = counters.iter().find(|(n, _)| n == name);
            found.map_or(0, |(_, c)| c.load(Ordering::Relaxed))
        }
    }

    impl Recorder for Counting {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let mut name = key.name().to_string();
            for label in key.labels() {
                name.push_str(&format!(" {}={}", label.key(), label.value()));
            }
            let counter = Arc::new(AtomicU64::new(0));
            self.counters.lock().push((name, counter.clone()));
            Counter::from_arc(counter)
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::from_arc(self.records.clone())
        }
    }

    #[test]
    fn calls_errors_by_kind_and_rejections_are_counted() {
        let recorder = Counting::default();
        let m = metrics::with_local_recorder(&recorder, || Metrics::new("c"));
        let timeout = RedisError::Timeout {
            after: Duration::from_millis(50),
        };
        m.call(Duration::from_micros(20), Ok(()));
        m.call(Duration::from_millis(50), Err(&timeout));
        m.rejected();
        assert_eq!(recorder.records.0.load(Ordering::Relaxed), 2, "latency");
        assert_eq!(
            recorder.get("levee_redis_errors_total client=c kind=timeout"),
            1
        );
        assert_eq!(
            recorder.get("levee_redis_errors_total client=c kind=unreachable"),
            0
        );
        assert_eq!(recorder.get("levee_redis_rejected_total client=c"), 1);
    }
}
