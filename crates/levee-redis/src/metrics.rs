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
