//! The Redis fault matrix's parts: one replica's four Redis users on one
//! `RedisClient`, a call of each as a user makes it, and the check that a
//! part works through Redis again after a fault.

use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, StatusCode};
use levee::breaker::State;
use levee::cache::{Loaded, RedisL2, Source, TieredCache};
use levee::core::ManualClock;
use levee::limit::{
    OnRedisError, Quota, QuotaState, RateLimiter, RedisSlidingWindow, SharedUpstreamQuota,
    TimeSource, UpstreamQuota,
};
use levee::redis::{RedisClient, RedisClientBuilder};

pub(crate) type Cache = TieredCache<String, String>;

/// The client's breaker stays open this long (its default).
pub(crate) const OPEN_PERIOD: Duration = Duration::from_secs(5);
/// The Redis limiter's quota: Redis admits 9 an hour, the local fallback
/// 9 / 3 replicas.
const LIMIT: u32 = 9;
const REPLICAS: u32 = 3;

/// A Redis user of levee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// `TieredCache::get_or_load` with a Redis L2 (and its load lock).
    L2Get,
    /// `TieredCache::invalidate` on the backplane.
    Backplane,
    /// `RedisSlidingWindow::check` (`OnRedisError::Local`).
    Limiter,
    /// `SharedUpstreamQuota::check`.
    Quota,
}

impl Part {
    /// Every part (the cluster rows walk them all).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) const ALL: [Part; 4] = [Part::L2Get, Part::Backplane, Part::Limiter, Part::Quota];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Part::L2Get => "L2 get",
            Part::Backplane => "backplane invalidation",
            Part::Limiter => "Redis limiter check",
            Part::Quota => "shared quota check",
        }
    }
}

/// One replica's Redis users, all on one client.
pub(crate) struct Replica {
    pub(crate) client: RedisClient,
    pub(crate) cache: Cache,
    pub(crate) limiter: RedisSlidingWindow,
    pub(crate) quota: SharedUpstreamQuota<String>,
}

/// A replica on `client` (whose clock is `clock`), every Redis call with
/// `timeout`.
pub(crate) fn replica(
    client: RedisClientBuilder,
    clock: &ManualClock,
    prefix: &str,
    timeout: Duration,
) -> Replica {
    let client = client
        .clock(clock.shared())
        .command_timeout(timeout)
        .connect_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let cache = TieredCache::builder("matrix")
        .prefix(prefix)
        .ttl(Duration::from_secs(600))
        .failure_backoff(Duration::from_millis(1))
        .load_lock(Duration::from_millis(300))
        .l2(RedisL2::builder(client.clone())
            .timeout(timeout)
            .build()
            .unwrap())
        .clock(clock.shared())
        .build()
        .unwrap();
    let limiter = RedisSlidingWindow::builder(
        client.clone(),
        Quota::new(LIMIT, Duration::from_secs(3600)).unwrap(),
    )
    .prefix(format!("{prefix}-rl"))
    .time_source(TimeSource::Clock)
    .clock(clock.shared())
    .timeout(timeout)
    .on_redis_error(OnRedisError::Local { replicas: REPLICAS })
    .build()
    .unwrap();
    let quota = UpstreamQuota::<String>::builder()
        .clock(clock.shared())
        .build()
        .redis(client.clone(), format!("{prefix}-quota"))
        .timeout(timeout);
    Replica {
        client,
        cache,
        limiter,
        quota,
    }
}

/// The key of call `i` of `part`; `hot` keeps every call on one Redis slot
/// (`{hot}` hash tag, or one limiter/quota key).
pub(crate) fn key(part: Part, i: usize, hot: bool) -> String {
    match (part, hot) {
        (Part::L2Get | Part::Backplane, true) => format!("{{hot}}{i}"),
        (Part::Limiter | Part::Quota, true) => "hot".to_string(),
        (_, false) => format!("k{i}"),
    }
}

/// One call of `part` on `r`, as a user makes it: `Err` is what the
/// caller saw as an error. The backplane's `invalidate` returns nothing:
/// it cannot fail its caller.
pub(crate) async fn call(part: Part, r: &Replica, key: &str) -> Result<(), String> {
    match part {
        Part::L2Get => match load(&r.cache, key).await {
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        },
        Part::Backplane => {
            r.cache.invalidate(&key.to_string()).await;
            Ok(())
        }
        Part::Limiter => r
            .limiter
            .check(key)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        // Nothing holds this key back: anything but Ready refuses a user.
        Part::Quota => match r.quota.check(&key.to_string()).await {
            QuotaState::Ready => Ok(()),
            other => Err(format!("{other:?}")),
        },
    }
}

pub(crate) async fn load(cache: &Cache, key: &str) -> Result<Source, String> {
    match cache
        .get_or_load(key.to_string(), || async {
            Ok::<_, String>(Loaded::Value("v".to_string()))
        })
        .await
    {
        Ok(Some(c)) if c.value == "v" => Ok(c.source),
        Ok(other) => Err(format!("wrong answer: {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

fn too_many(retry_after_s: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("retry-after", HeaderValue::from(retry_after_s));
    h
}

/// Whether `part` works through Redis between replicas `a` and `b` (one
/// try, keys of `round`): what `a` stores, `b` reads; an invalidation
/// reaches `b`; Redis (not the local fallback) decides the limit.
pub(crate) async fn works(part: Part, a: &Replica, b: &Replica, round: usize) -> bool {
    let key = format!("ok{round}");
    match part {
        Part::L2Get => {
            load(&a.cache, &key).await == Ok(Source::Loader)
                && load(&b.cache, &key).await == Ok(Source::L2)
        }
        Part::Backplane => {
            if !(a.cache.stats().backplane_subscribed && b.cache.stats().backplane_subscribed) {
                return false;
            }
            if load(&b.cache, &key).await.is_err() || b.cache.get(&key).is_none() {
                return false;
            }
            a.cache.invalidate(&key).await;
            eventually(Duration::from_millis(500), || b.cache.get(&key).is_none()).await
        }
        Part::Limiter => {
            let mut admitted = 0;
            for _ in 0..LIMIT + 3 {
                admitted += u32::from(matches!(a.limiter.check(&key).await, Ok(d) if d.allowed));
            }
            admitted == LIMIT
        }
        Part::Quota => {
            a.quota
                .observe(&key, StatusCode::TOO_MANY_REQUESTS, &too_many(30))
                .await;
            matches!(b.quota.check(&key).await, QuotaState::HoldBack { .. })
        }
    }
}

pub(crate) async fn eventually(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}

/// Calls made during a fault, and what they came to.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Tally {
    pub(crate) calls: u64,
    pub(crate) errors: u64,
    /// Redis commands sent by calls that began with the breaker open.
    pub(crate) attempts_while_open: u64,
    /// Calls that began with the breaker open.
    pub(crate) calls_while_open: u64,
    /// Whether the breaker was open at some point.
    pub(crate) opened: bool,
}

impl Tally {
    /// Makes one call of `part` on `r` and counts it.
    pub(crate) async fn call(&mut self, part: Part, r: &Replica, key: &str) {
        let open = r.client.breaker().state() == State::Open;
        self.opened |= open;
        let before = r.client.stats().attempts;
        let result = call(part, r, key).await;
        self.calls += 1;
        self.errors += u64::from(result.is_err());
        if open {
            self.calls_while_open += 1;
            self.attempts_while_open += r.client.stats().attempts - before;
        }
    }
}

/// After a fault ends: moves the clock by one open period (so the breaker
/// lets a probe through), then tries `part` until it works through Redis
/// (real time, up to `within`); the clock moves by another period only
/// when a probe went to Redis and failed, opening the breaker again.
/// Returns the real time it took and how many open periods the clock was
/// moved by (1 when the first probe found Redis back), or `None` if it
/// never worked.
pub(crate) async fn recover(
    part: Part,
    a: &Replica,
    b: &Replica,
    clock: &ManualClock,
    within: Duration,
) -> Option<(Duration, u32)> {
    let began = Instant::now();
    let clients = [&a.client, &b.client];
    let sent = || clients.iter().map(|c| c.stats().attempts).sum::<u64>();
    let mut periods = 0;
    let mut probed_at = None;
    let mut round = 0;
    while began.elapsed() < within {
        let open = clients.iter().any(|c| c.breaker().state() == State::Open);
        if open && probed_at != Some(sent()) {
            clock.advance(OPEN_PERIOD + Duration::from_millis(1));
            periods += 1;
            probed_at = Some(sent());
        }
        round += 1;
        if works(part, a, b, round).await {
            return Some((began.elapsed(), periods));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// One row of the matrix, printed for docs/reliability.md.
pub(crate) fn report(part: Part, fault: &str, t: &Tally, recovery: Option<(Duration, u32)>) {
    let recovered = match recovery {
        Some((d, periods)) => format!("{} ms, {periods} open period(s)", d.as_millis()),
        None => "never".to_string(),
    };
    row(part, fault, t, &recovered);
}

/// One row of the matrix with `recovered` as its last column.
pub(crate) fn row(part: Part, fault: &str, t: &Tally, recovered: &str) {
    eprintln!(
        "MATRIX | {} | {fault} | {} | {} | {} | {} / {} | {recovered} |",
        part.name(),
        t.calls,
        t.errors,
        if t.opened { "yes" } else { "no" },
        t.attempts_while_open,
        t.calls_while_open,
    );
}
