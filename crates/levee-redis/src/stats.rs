//! [`RedisClientStats`] and the counters behind them. State changes (the
//! connection lost, found again) are logged here, once per change, never
//! per request.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::RedisError;

/// Counters of a [`RedisClient`](crate::RedisClient) (shared by its clones)
/// since it was built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisClientStats {
    /// Calls that went to Redis (the breaker admitted them).
    pub attempts: u64,
    /// Calls answered (a server's error reply included).
    pub successes: u64,
    /// Calls refused by the open breaker: Redis was not called.
    pub rejected: u64,
    /// Calls that timed out.
    pub timeouts: u64,
    /// Calls that found Redis unreachable.
    pub unreachable: u64,
    /// Calls answered with an error reply (`WRONGTYPE`, a script error).
    pub server_errors: u64,
    /// Commands sent a second time on a fresh connection, after the first
    /// found its connection gone.
    pub retries: u64,
    /// Connections opened.
    pub connects: u64,
    /// Connects that failed or timed out.
    pub connect_failures: u64,
    /// Open connections found gone.
    pub connections_lost: u64,
    /// Open connections dropped because a half-open probe timed out on
    /// them (one that died silently is replaced at the next probe).
    pub connections_replaced: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    attempts: AtomicU64,
    successes: AtomicU64,
    rejected: AtomicU64,
    timeouts: AtomicU64,
    unreachable: AtomicU64,
    server_errors: AtomicU64,
    retries: AtomicU64,
    connects: AtomicU64,
    connect_failures: AtomicU64,
    connections_lost: AtomicU64,
    connections_replaced: AtomicU64,
    /// Whether the last connect or command found Redis reachable; flips are
    /// what get logged.
    down: AtomicBool,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn attempt(&self) {
        bump(&self.attempts);
    }

    pub(crate) fn rejected(&self) {
        bump(&self.rejected);
    }

    pub(crate) fn retry(&self) {
        bump(&self.retries);
    }

    /// Counts how an admitted call ended.
    pub(crate) fn outcome(&self, result: Result<(), &RedisError>) {
        match result {
            Ok(()) => bump(&self.successes),
            Err(e) if e.is_timeout() => bump(&self.timeouts),
            Err(e) if e.is_unreachable() => bump(&self.unreachable),
            Err(e) if e.is_server() => {
                bump(&self.successes);
                bump(&self.server_errors);
            }
            Err(_) => bump(&self.successes),
        }
    }

    pub(crate) fn connected(&self, name: &str) {
        bump(&self.connects);
        if self.down.swap(false, Ordering::AcqRel) {
            tracing::info!(client = name, "levee-redis: connected to Redis again");
        } else {
            tracing::debug!(client = name, "levee-redis: connected to Redis");
        }
    }

    pub(crate) fn connect_failed(&self, name: &str, err: &RedisError) {
        bump(&self.connect_failures);
        if !self.down.swap(true, Ordering::AcqRel) {
            tracing::warn!(client = name, error = %err, "levee-redis: cannot connect to Redis; callers use their fallbacks until it is back");
        }
    }

    pub(crate) fn connection_lost(&self, name: &str, err: &redis::RedisError) {
        bump(&self.connections_lost);
        if !self.down.swap(true, Ordering::AcqRel) {
            tracing::warn!(client = name, error = %err, "levee-redis: the Redis connection was lost; reconnecting on the next call");
        }
    }

    pub(crate) fn replaced(&self, name: &str) {
        bump(&self.connections_replaced);
        tracing::debug!(
            client = name,
            "levee-redis: a probe timed out; the next one opens a new connection"
        );
    }

    pub(crate) fn snapshot(&self) -> RedisClientStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RedisClientStats {
            attempts: get(&self.attempts),
            successes: get(&self.successes),
            rejected: get(&self.rejected),
            timeouts: get(&self.timeouts),
            unreachable: get(&self.unreachable),
            server_errors: get(&self.server_errors),
            retries: get(&self.retries),
            connects: get(&self.connects),
            connect_failures: get(&self.connect_failures),
            connections_lost: get(&self.connections_lost),
            connections_replaced: get(&self.connections_replaced),
        }
    }
}
