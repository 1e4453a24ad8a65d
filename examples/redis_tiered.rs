//! levee's `TieredCache` with a Redis L2, shared by two replicas.
//!
//! Two caches built with the same name, each with its own Redis connection,
//! stand in for two processes of one service. The example shows, for every
//! read, the value, how fresh it is, which tier answered and how often the
//! loader (the "provider") ran:
//!
//! 1. replica A loads a key; replica B finds it in Redis (no load); A then
//!    answers from its own memory;
//! 2. A invalidates the key: B's in-memory copy is dropped through the
//!    backplane (Redis pub/sub), and the next read loads again;
//! 3. the provider goes down: time moves past the TTL into the stale tiers,
//!    which keep serving the old value (labelled with tier and age), until
//!    it is older than the last tier and the error comes through.
//!
//! Time is a `ManualClock` shared by both caches and their L2s, so hours
//! pass in an instant. Redis: `REDIS_URL` when set (the example deletes its
//! one key when done), otherwise a private `redis-server` on a free port.
//!
//! Run: `cargo run --example redis_tiered`
//! (or `REDIS_URL=redis://127.0.0.1:6379 cargo run --example redis_tiered`)

use std::error::Error;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use levee::cache::{CacheError, Cached, Freshness, Loaded, RedisL2, Source, TieredCache};
use levee::core::ManualClock;
use levee::redis::RedisClient;
use levee_testkit::{RedisServer, TestkitError};

type Cache = TieredCache<String, String>;

const KEY: &str = "user:alice";
const TTL: Duration = Duration::from_secs(5 * 60);
const FAILURE_BACKOFF: Duration = Duration::from_secs(10);
const HOUR: Duration = Duration::from_secs(3600);
/// Each tier serves a value up to this long past its TTL.
const TIERS: [(&str, Duration); 2] = [
    ("secondary", Duration::from_secs(12 * 3600)),
    ("emergency", Duration::from_secs(48 * 3600)),
];

/// Stands in for the upstream: counts its calls and can be switched off.
#[derive(Default)]
struct Provider {
    down: AtomicBool,
    calls: AtomicU32,
}

impl Provider {
    async fn userinfo(&self) -> Result<String, String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            Err("503 Service Unavailable".into())
        } else {
            Ok(r#"{"sub":"alice","email":"alice@example.com"}"#.into())
        }
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

/// Where Redis is; holds the private server, if one was started, so that
/// it lives until the example ends.
struct Redis {
    url: String,
    _server: Option<RedisServer>,
}

fn redis() -> Result<Redis, Box<dyn Error>> {
    if let Ok(url) = std::env::var("REDIS_URL") {
        println!("Redis: REDIS_URL ({})", redacted(&url));
        return Ok(Redis { url, _server: None });
    }
    let server = match RedisServer::start() {
        Ok(server) => server,
        Err(TestkitError::NotInstalled(_)) => {
            return Err("redis-server is not installed. Install Redis \
                 (Debian/Ubuntu: `sudo apt-get install redis-server`, macOS: `brew install redis`), \
                 or point the example at a running server: \
                 REDIS_URL=redis://127.0.0.1:6379 cargo run --example redis_tiered"
                .into());
        }
        Err(e) => return Err(e.into()),
    };
    println!("Redis: a private redis-server at {}", server.url());
    Ok(Redis {
        url: server.url(),
        _server: Some(server),
    })
}

/// The URL without its password, fit to print.
fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://***@{host}"),
        _ => url.to_string(),
    }
}

/// One replica: its own connection to the shared Redis, as a separate
/// process would have. The same cache name puts both replicas on the same
/// Redis keys and the same backplane channel.
fn replica(url: &str, clock: &ManualClock) -> Result<Cache, Box<dyn Error>> {
    let client = RedisClient::standalone(url)
        // The client's breaker times its open state on the same clock.
        .clock(clock.shared())
        .build()?;
    let l2 = RedisL2::builder(client)
        // Generous, so that a slow machine does not turn an L2 hit into a
        // load and make the output lie.
        .timeout(Duration::from_millis(500))
        .build()?;
    let cache = TieredCache::builder("redis-tiered-example")
        .ttl(TTL)
        .stale_tiers(TIERS)
        .failure_backoff(FAILURE_BACKOFF)
        .l2(l2)
        .clock(clock.shared())
        .build()?;
    Ok(cache)
}

/// Waits (bounded, in real time) until both replicas listen on the
/// backplane: an invalidation published before that would be missed. It
/// also tells a wrong `REDIS_URL` apart from a working one.
async fn wait_subscribed(a: &Cache, b: &Cache, url: &str) -> Result<(), Box<dyn Error>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(a.stats().backplane_subscribed && b.stats().backplane_subscribed) {
        if Instant::now() > deadline {
            return Err(format!("could not reach Redis at {} within 5 s", redacted(url)).into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// `who` reads the key through `cache`, and the result is printed with
/// the reason it is what it is.
async fn read(who: &str, cache: &Cache, provider: &Arc<Provider>) {
    let before = provider.calls();
    let p = provider.clone();
    let result = cache
        .get_or_load(KEY.to_string(), move || async move {
            p.userinfo().await.map(Loaded::Value)
        })
        .await;
    let ran = provider.calls() - before;
    let runs = format!(
        "loader runs so far: {} (this read: {ran})",
        provider.calls()
    );
    match result {
        Ok(Some(got)) => {
            println!("   {who}: {}", got.value);
            println!(
                "      {}, source {:?}, {runs}",
                freshness(&got.freshness),
                got.source
            );
            println!("      why: {}", why(who, &got, ran));
        }
        Ok(None) => println!("   {who}: absent, {runs}"),
        Err(e) => {
            println!("   {who}: error: {e}");
            println!("      {runs}");
            println!("      why: {}", why_error(&e));
        }
    }
}

fn freshness(f: &Freshness) -> String {
    match f {
        Freshness::Stale { tier, age } => format!("Stale {{ tier: {tier}, age: {} }}", hm(*age)),
        other => format!("{other:?}"),
    }
}

/// Why a read gave what it gave, from the answer itself and whether the
/// loader ran.
fn why(who: &str, got: &Cached<String>, ran: u32) -> String {
    match (&got.freshness, got.source) {
        (Freshness::Fresh, Source::L1) => {
            format!("fresh in {who}'s own memory (L1): no Redis call, no load")
        }
        (Freshness::Fresh, Source::L2) => format!(
            "not in {who}'s memory, but fresh in Redis (L2), put there by an earlier load; \
             now copied into {who}'s L1, no load"
        ),
        (Freshness::Fresh, Source::Loader) => format!(
            "no fresh copy in {who}'s memory or in Redis: the loader ran and its value went to both tiers"
        ),
        (Freshness::Stale { tier, age }, Source::L2) => format!(
            "{who} held no copy; Redis held one past its TTL, so the loader ran; it failed, \
             and the value from Redis, {} past its TTL, fits tier {tier}",
            hm(*age)
        ),
        (Freshness::Stale { tier, age }, _) if ran > 0 => format!(
            "past its TTL, so the loader ran; it failed, and {who}'s own copy, {} past its TTL, fits tier {tier}",
            hm(*age)
        ),
        (Freshness::Stale { tier, .. }, _) => format!(
            "past its TTL, but a load of this key failed less than {FAILURE_BACKOFF:?} ago \
             (failure backoff): the loader was not run, and the old value fits tier {tier}"
        ),
        _ => "a case this example does not expect".into(),
    }
}

fn why_error(e: &CacheError<String>) -> String {
    match e {
        CacheError::Load(_) => format!(
            "the loader failed, and the value is older than the last stale tier allows ({} past its TTL)",
            hm(TIERS[1].1)
        ),
        CacheError::Backoff { .. } => {
            "a load failed recently and no stale value is left to serve".into()
        }
        _ => "see the error".into(),
    }
}

/// `1h05m`, `13h00m`, `1m00s`: ages on the manual clock are whole seconds.
fn hm(d: Duration) -> String {
    let s = (d.as_millis() + 500) / 1000;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

async fn two_replicas(a: &Cache, b: &Cache, provider: &Arc<Provider>) {
    println!("\n1. two replicas on one Redis:");
    read("A", a, provider).await;
    read("B", b, provider).await;
    read("A", a, provider).await;
}

async fn invalidation(
    a: &Cache,
    b: &Cache,
    provider: &Arc<Provider>,
) -> Result<(), Box<dyn Error>> {
    println!("\n2. A invalidates the key:");
    let key = KEY.to_string();
    println!("   before: B holds it in L1: {}", b.get(&key).is_some());
    let started = Instant::now();
    a.invalidate(&key).await;
    // `get` looks at L1 only; the backplane message arrives on B's own
    // subscription, so poll for it (in real time, bounded).
    while b.get(&key).is_some() {
        if started.elapsed() > Duration::from_secs(2) {
            return Err("B still held its copy 2 s after A's invalidate".into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    println!(
        "   B's L1 copy was dropped {:.1?} after A called invalidate (backplane invalidations at B: {})",
        started.elapsed(),
        b.stats().backplane_invalidations
    );
    read("B", b, provider).await;
    Ok(())
}

async fn outage(a: &Cache, b: &Cache, provider: &Arc<Provider>, clock: &ManualClock) {
    let tiers: Vec<String> = TIERS
        .iter()
        .map(|(tier, max)| format!("{tier} up to {}", hm(*max)))
        .collect();
    println!(
        "\n3. the provider goes down; the clock moves past the TTL ({}) into the stale tiers ({} past it):",
        hm(TTL),
        tiers.join(", ")
    );
    provider.down.store(true, Ordering::SeqCst);
    // B loaded the value at clock time 0; every offset below is from then.
    let mut at = Duration::ZERO;
    let mut advance = |to: Duration, what: &str| {
        clock.advance(to - at);
        at = to;
        println!("   -- clock at +{}: {what}", hm(at));
    };
    advance(TTL + Duration::from_secs(60), "1 minute past the TTL");
    read("B", b, provider).await;
    read("A", a, provider).await;
    advance(
        TTL + Duration::from_secs(65),
        "5 s later, inside B's failure backoff",
    );
    read("B", b, provider).await;
    advance(TTL + 13 * HOUR, "13 hours past the TTL");
    read("B", b, provider).await;
    advance(
        TTL + 49 * HOUR,
        "49 hours past the TTL, beyond the last tier",
    );
    read("B", b, provider).await;
}

async fn run() -> Result<(), Box<dyn Error>> {
    let redis = redis()?;
    let clock = ManualClock::new();
    let provider = Arc::new(Provider::default());
    let a = replica(&redis.url, &clock)?;
    // A shared Redis may still hold the key from an earlier run (values are
    // kept there for 48 h past their TTL). Cleared before B exists, so B's
    // backplane counter counts step 2 only.
    a.invalidate(&KEY.to_string()).await;
    let b = replica(&redis.url, &clock)?;
    wait_subscribed(&a, &b, &redis.url).await?;
    two_replicas(&a, &b, &provider).await;
    invalidation(&a, &b, &provider).await?;
    outage(&a, &b, &provider, &clock).await;
    a.invalidate(&KEY.to_string()).await; // leave a shared Redis clean
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    // Errors here are the user's to fix (no Redis, a wrong REDIS_URL):
    // a message, not a backtrace.
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
