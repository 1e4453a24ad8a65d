//! The userinfo storm: U users on R replicas for one simulated hour against
//! an Auth0-like IdP (10 burst, 5 a minute per user) that is down from
//! minute 20 to 30 and answers in 2 s from minute 40 to 45, with the same
//! traffic for every strategy. Shared by `examples/userinfo_storm.rs` and
//! `crates/levee/tests/storm.rs`.

mod open;
pub(crate) mod sim;
pub(crate) mod strategy;
pub(crate) mod trace;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use levee_testkit::MockIdp;

use sim::Sim;
pub(crate) use strategy::{BoxError, FRESH_TTL, Strategy};
use strategy::{Replicas, Upstream};
use trace::PageLoad;

/// The IdP answers 503 from minute 20 to 30.
pub(crate) const OUTAGE: (u64, u64) = (20, 30);
/// The IdP answers in [`SLOW_LATENCY`] from minute 40 to 45.
pub(crate) const SLOW: (u64, u64) = (40, 45);
const SLOW_LATENCY: Duration = Duration::from_secs(2);
/// How long the IdP takes to answer the rest of the hour.
pub(crate) const LATENCY: Duration = Duration::from_millis(100);

/// What to simulate.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) users: u32,
    pub(crate) replicas: usize,
    pub(crate) seed: u64,
    /// Redis for levee full; `None`: a throwaway `redis-server`.
    pub(crate) redis: Option<String>,
    pub(crate) strategies: Vec<Strategy>,
}

/// One strategy's figures.
#[derive(Debug, Clone)]
pub(crate) struct Summary {
    pub(crate) strategy: Strategy,
    pub(crate) requests: u64,
    pub(crate) upstream_calls: u64,
    pub(crate) upstream_429s: u64,
    pub(crate) user_errors: u64,
    pub(crate) stale_by_tier: BTreeMap<String, u64>,
    /// The oldest value served: time since the IdP produced it.
    pub(crate) max_staleness: Duration,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) calls_per_minute: Vec<u64>,
    pub(crate) real_time: Duration,
    /// Clock advances the driver forced (0 in a sound run).
    pub(crate) forced_advances: u64,
}

/// Every strategy's figures and the physical limit of the trace.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub(crate) physical_limit: u64,
    pub(crate) page_loads: usize,
    pub(crate) summaries: Vec<Summary>,
}

/// Runs the storm once per strategy, on the same trace.
pub(crate) async fn run(config: &Config) -> Result<Report, BoxError> {
    let loads = trace::page_loads(config.users, config.replicas, config.seed);
    let physical_limit = trace::physical_limit(&loads, FRESH_TTL);
    let (_server, url) = match &config.redis {
        Some(url) => (None, url.clone()),
        None => {
            let server = levee_testkit::RedisServer::start()?;
            let url = server.url();
            (Some(server), url)
        }
    };
    let mut summaries = Vec::new();
    for &strategy in &config.strategies {
        summaries.push(run_one(strategy, config, &loads, &url).await?);
    }
    Ok(Report {
        physical_limit,
        page_loads: loads.len(),
        summaries,
    })
}

/// One strategy's hour, on a clock, IdP and key prefix of its own.
async fn run_one(
    strategy: Strategy,
    config: &Config,
    loads: &[PageLoad],
    redis_url: &str,
) -> Result<Summary, BoxError> {
    let began = Instant::now();
    let sim = Sim::new();
    let idp = Arc::new(MockIdp::start(sim.clock.shared()).await?);
    idp.set_latency(LATENCY);
    sim.watch(&idp);
    let prefix = format!(
        "storm-{}-{}",
        config.seed,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    );
    let replicas = Arc::new(Replicas::build(
        strategy,
        config.replicas,
        &sim,
        (redis_url, &prefix),
    )?);
    let up = Arc::new(Upstream {
        sim: sim.clone(),
        idp: idp.clone(),
    });
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(weather(sim.clone(), idp.clone()));
    for load in loads {
        tasks.spawn(page_load(load.clone(), up.clone(), replicas.clone()));
    }
    let mut schedule: Vec<Duration> = loads.iter().map(|l| l.at).collect();
    schedule.extend(WEATHER.iter().map(|m| minute(*m)));
    schedule.sort_unstable();
    sim.drive(&idp, &schedule, tasks).await;
    if sim.open_requests() > 0 {
        return Err(format!("{} requests still open after the hour", sim.open_requests()).into());
    }
    let (upstream_calls, upstream_429s) = sim.upstream();
    let mut r = sim.take_requests();
    r.latencies_ms.sort_unstable();
    let pct = |p: usize| {
        let i = (r.latencies_ms.len() * p / 100).min(r.latencies_ms.len().saturating_sub(1));
        Duration::from_millis(r.latencies_ms.get(i).copied().unwrap_or(0))
    };
    Ok(Summary {
        strategy,
        requests: r.served + r.errors,
        upstream_calls,
        upstream_429s,
        user_errors: r.errors,
        p50: pct(50),
        p99: pct(99),
        stale_by_tier: r.stale_by_tier,
        max_staleness: Duration::from_millis(r.max_age_ms),
        calls_per_minute: sim.calls_per_minute(),
        real_time: began.elapsed(),
        forced_advances: sim.forced_advances(),
    })
}

/// The minutes the IdP's weather changes.
const WEATHER: [u64; 4] = [OUTAGE.0, OUTAGE.1, SLOW.0, SLOW.1];

fn minute(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

/// The IdP's hour: the outage, then the slow spell.
async fn weather(sim: Arc<Sim>, idp: Arc<MockIdp>) {
    sim.wake_at(minute(OUTAGE.0), 0, 0).await;
    idp.set_outage(true);
    sim.wake_at(minute(OUTAGE.1), 0, 0).await;
    idp.set_outage(false);
    sim.wake_at(minute(SLOW.0), 0, 0).await;
    idp.set_latency(SLOW_LATENCY);
    sim.wake_at(minute(SLOW.1), 0, 0).await;
    idp.set_latency(LATENCY);
}

/// One page load: waits for its time, then its requests at once.
async fn page_load(load: PageLoad, up: Arc<Upstream>, replicas: Arc<Replicas>) {
    up.sim
        .wake_at(load.at, load.user, load.replicas.len())
        .await;
    let requests: Vec<_> = load
        .replicas
        .iter()
        .map(|&replica| {
            let (up, replicas) = (up.clone(), replicas.clone());
            tokio::spawn(async move {
                let (began, outcome) = replicas.request(&up, replica, load.user).await;
                up.sim.request_ended(load.user, began, outcome);
            })
        })
        .collect();
    for r in requests {
        r.await.expect("a request panicked");
    }
}
