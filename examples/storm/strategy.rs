//! The strategies the storm compares, each built once per replica: no
//! cache, a plain TTL map, levee's cache in memory only, and the full
//! `Levee` pipeline sharing Redis.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use levee::breaker::CircuitBreaker;
use levee::cache::{Freshness, Loaded, RedisL2, TieredCache};
use levee::limit::UpstreamQuota;
use levee::redis::RedisClient;
use levee::{Levee, RetryPolicy};
use levee_testkit::{MockIdp, TestkitError};

use super::sim::{Outcome, Sim};

/// The fresh TTL of every cache but the seeds' one-hour variant.
pub(crate) const FRESH_TTL: Duration = Duration::from_secs(300);
/// The seeds' variant: a TTL long enough to ride out the outage.
const HOUR_TTL: Duration = Duration::from_secs(3600);

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A cached userinfo body and when the IdP produced it (simulated ms).
type Info = (String, u64);
type Pipeline = Levee<String, Info, TestkitError, http::Response<String>>;

/// One way of getting a user's userinfo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// Every request calls the IdP.
    NoCache,
    /// A per-replica map with a fresh TTL: check, else call, then store.
    PlainTtl,
    /// The same with a one-hour TTL.
    PlainTtlHour,
    /// levee's `TieredCache` in memory, one per replica, in the pipeline.
    LeveeL1,
    /// The pipeline with Redis L2, load lock and the shared quota.
    LeveeFull,
}

impl Strategy {
    /// Every strategy, in the order of the table.
    pub(crate) const ALL: [Strategy; 5] = [
        Strategy::NoCache,
        Strategy::PlainTtl,
        Strategy::PlainTtlHour,
        Strategy::LeveeL1,
        Strategy::LeveeFull,
    ];

    /// The name in the table and the JSON.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Strategy::NoCache => "no cache",
            Strategy::PlainTtl => "plain ttl",
            Strategy::PlainTtlHour => "plain ttl 1h",
            Strategy::LeveeL1 => "levee l1",
            Strategy::LeveeFull => "levee full",
        }
    }
}

/// The IdP as every strategy calls it, counted by the simulation.
#[derive(Debug)]
pub(crate) struct Upstream {
    pub(crate) sim: Arc<Sim>,
    pub(crate) idp: Arc<MockIdp>,
}

impl Upstream {
    async fn call(&self, user: u32) -> Result<http::Response<String>, TestkitError> {
        let _in_flight = self.sim.call_started(user);
        let (status, headers, body) = self.idp.userinfo(&format!("token-u{user}")).await?;
        if status == http::StatusCode::TOO_MANY_REQUESTS {
            self.sim.rate_limited();
        }
        let mut r = http::Response::new(body);
        *r.status_mut() = status;
        *r.headers_mut() = headers;
        Ok(r)
    }
}

/// A strategy's state on every replica.
pub(crate) enum Replicas {
    NoCache,
    Plain {
        ttl_ms: u64,
        maps: Vec<Mutex<HashMap<u32, u64>>>,
    },
    Levee(Vec<Pipeline>),
}

impl Replicas {
    /// `strategy` on `n` replicas; `redis` (URL, key prefix) for levee full.
    pub(crate) fn build(
        strategy: Strategy,
        n: usize,
        sim: &Arc<Sim>,
        redis: (&str, &str),
    ) -> Result<Replicas, BoxError> {
        let plain = |ttl: Duration| Replicas::Plain {
            ttl_ms: ttl.as_millis() as u64,
            maps: (0..n).map(|_| Mutex::default()).collect(),
        };
        Ok(match strategy {
            Strategy::NoCache => Replicas::NoCache,
            Strategy::PlainTtl => plain(FRESH_TTL),
            Strategy::PlainTtlHour => plain(HOUR_TTL),
            Strategy::LeveeL1 => Replicas::Levee(
                (0..n)
                    .map(|r| pipeline(sim, r, None))
                    .collect::<Result<_, _>>()?,
            ),
            Strategy::LeveeFull => Replicas::Levee(
                (0..n)
                    .map(|r| pipeline(sim, r, Some(redis)))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    /// One API request on `replica` that needs `user`'s userinfo: when it
    /// started (simulated ms, once it has looked at its cache) and how it
    /// ended.
    pub(crate) async fn request(
        &self,
        up: &Arc<Upstream>,
        replica: usize,
        user: u32,
    ) -> (u64, Outcome) {
        match self {
            Replicas::NoCache => {
                let began = up.sim.request_started();
                (began, served_by(up, user, None).await)
            }
            Replicas::Plain { ttl_ms, maps } => {
                let map = &maps[replica];
                let held = lock(map).get(&user).copied();
                let began = up.sim.request_started();
                if let Some(fetched_ms) = held.filter(|at| began - at < *ttl_ms) {
                    let fresh = Outcome::Served {
                        stale_tier: None,
                        fetched_ms,
                    };
                    return (began, fresh);
                }
                (began, served_by(up, user, Some(map)).await)
            }
            Replicas::Levee(pipelines) => {
                let loader_up = up.clone();
                let loader = move || {
                    let up = loader_up.clone();
                    async move { up.call(user).await }
                };
                // The L1 look happens on the first poll, in this task.
                let began = up.sim.request_started();
                let outcome = match pipelines[replica].get(format!("u{user}"), loader).await {
                    Ok(Some(c)) => Outcome::Served {
                        stale_tier: match c.freshness {
                            Freshness::Stale { tier, .. } => Some(tier),
                            _ => None,
                        },
                        fetched_ms: c.value.1,
                    },
                    Ok(None) | Err(_) => Outcome::Failed,
                };
                (began, outcome)
            }
        }
    }
}

/// One call for `user`, its value stored in `map` (plain TTL) if it came.
async fn served_by(up: &Upstream, user: u32, map: Option<&Mutex<HashMap<u32, u64>>>) -> Outcome {
    match up.call(user).await {
        Ok(r) if r.status().is_success() => {
            let fetched_ms = up.sim.now_ms();
            if let Some(map) = map {
                lock(map).insert(user, fetched_ms);
            }
            Outcome::Served {
                stale_tier: None,
                fetched_ms,
            }
        }
        _ => Outcome::Failed,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One replica's pipeline: L1 (and with `redis`, L2 on the shared Redis,
/// the load lock and the shared upstream quota), stale tiers, breaker,
/// retry, attempt timeout, the HTTP classifier; all on the sim's clock.
/// Early refresh stays off (the physical limit assumes it).
fn pipeline(
    sim: &Arc<Sim>,
    replica: usize,
    redis: Option<(&str, &str)>,
) -> Result<Pipeline, BoxError> {
    let clock = sim.clock.shared();
    let mut cache = TieredCache::<String, Info>::builder("userinfo")
        .ttl(FRESH_TTL)
        .stale_tiers([
            ("secondary", Duration::from_secs(12 * 3600)),
            ("emergency", Duration::from_secs(48 * 3600)),
        ])
        .failure_backoff(Duration::from_secs(10))
        .clock(clock.clone());
    let local_quota = UpstreamQuota::<String>::builder()
        .clock(clock.clone())
        .build();
    let builder = Levee::<String, Info, TestkitError>::builder("userinfo");
    let builder = match redis {
        Some((url, prefix)) => {
            let client = RedisClient::standalone(url)
                .name(format!("replica-{replica}"))
                .clock(clock.clone())
                .command_timeout(Duration::from_millis(200))
                .build()?;
            let l2 = RedisL2::builder(client.clone())
                .timeout(Duration::from_millis(200))
                .build()?;
            // No invalidations in this story: no backplane to subscribe.
            cache = cache
                .prefix(prefix)
                .backplane(false)
                .load_lock(Duration::from_secs(2))
                // Polled in real time: 1 ms keeps the simulated hour short.
                .load_lock_poll(Duration::from_millis(1))
                .l2(l2);
            builder
                .cache(cache.build()?)
                .upstream_quota(local_quota.redis(client, format!("{prefix}-quota")))
        }
        None => builder.cache(cache.build()?).upstream_quota(local_quota),
    };
    let breaker = CircuitBreaker::builder()
        .name(format!("idp-{replica}"))
        .consecutive_failures(5)
        // One probe at a time, ever less often while the IdP stays down:
        // each probe is a call the outage makes for nothing.
        .open_duration(Duration::from_secs(30))
        .backoff_multiplier(2.0)
        .max_open_duration(Duration::from_secs(120))
        .half_open_permits(1)
        .clock(clock.clone())
        .build()?;
    let now = sim.clone();
    Ok(builder
        .circuit_breaker(breaker)
        // A 429 is not waited out: a stale value serves better.
        .retry(
            RetryPolicy::new(2)
                .base_delay(Duration::from_millis(200))
                .max_retry_after(Duration::ZERO),
        )
        .attempt_timeout(Duration::from_secs(3))
        .clock(clock)
        .map(move |r: http::Response<String>| match r.status() {
            http::StatusCode::UNAUTHORIZED => Loaded::Absent,
            _ => Loaded::Value((r.into_body(), now.now_ms())),
        })
        .http()
        .build()?)
}
