//! Instructions per call on the one-thread hot paths of issue 19, for
//! callgrind on a noisy machine: `N` `MemoryCache` get-hits beside
//! quick_cache's, and `N` `SlidingWindow` keyed checks beside governor's, on
//! the same keys after the same setup.
//!
//! Cases (first argument):
//! - `cache` / `cache_ttl` / `quick_cache`: get-hits, Zipf(1.0) over 100k
//!   resident keys (plain ranks, not scrambled); `cache_ttl` has a 1 h TTL.
//! - `cache_first` / `quick_cache_first`: plain `rand_distr::Zipf` u64 keys
//!   over 1M ranks into an empty cache of 100k: a get, and an insert when
//!   it misses (each key's first sight, and the evictions, are inside the
//!   measured loop).
//! - `HOT_PATH_SHARDS=N` sets the cache cases' shard count for levee.
//! - `window` / `governor`: the criterion trace of `benches/limiter.rs`
//!   (Zipf(1.0) over 10k scrambled keys, all resident).
//! - `window_first` / `governor_first`: plain `rand_distr::Zipf` u64 keys
//!   over 1M ranks, nothing resident: each key's first sight is inside the
//!   measured loop.
//! - `window_one` / `governor_one`: one hot key.
//! - `window_denied` / `governor_denied`: one key over its quota (1 an
//!   hour): every check in the loop is refused (the refusal path).
//!
//! An optional third argument runs the case on that many threads (default
//! 1), all on one limiter or cache, each making `N` calls from its own
//! offset in the trace (thread `t` starts at `t * TRACE / THREADS`, as the
//! criterion benches do); the printed time is then per round of one call
//! on every thread, as criterion's `2t` rows report it. With two threads
//! and a `_first` case both threads meet new keys from the start.
//!
//! The `N` calls run inside one function, `measured`, and callgrind counts
//! only there (setup, such as the TSC clock's calibration, varies from run
//! to run), so instructions per call are `Ir / N` (the indirect call into
//! the case's closure, a few instructions, is in every case alike):
//!
//! ```sh
//! cargo build --release -p levee-benches --example hot_path_cost
//! for what in cache cache_ttl quick_cache window governor; do
//!   valgrind --tool=callgrind --toggle-collect='hot_path_cost::measured' \
//!     --callgrind-out-file=/tmp/cg.$what target/release/examples/hot_path_cost $what 200000 \
//!     2>&1 | grep refs
//! done
//! # wall clock, two threads: hot_path_cost window_first 2000000 2
//! # resident keys measured in the window after their first checks:
//! HOT_PATH_NEXT_WINDOW=1 target/release/examples/hot_path_cost window 2000000
//! ```

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Duration;

use levee_cache::MemoryCache;
use levee_limit::{Quota, SlidingWindow};
use rand::SeedableRng;
use rand_distr::Distribution;

/// Trace length (a power of two); `N` may be larger, the trace wraps.
const TRACE: usize = 1 << 20;
const RESIDENT: u64 = 100_000;
const LIMIT_KEYS: u64 = 10_000;
/// No check in a run is denied, and the counter stays lock-free (< 2^24).
const LIMIT: u32 = (1 << 24) - 1;

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "cache".into());
    let n: usize = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let threads: usize = args.next().and_then(|t| t.parse().ok()).unwrap_or(1).max(1);
    match what.as_str() {
        "cache" | "cache_ttl" | "quick_cache" => cache(&what, n, threads),
        "cache_first" | "quick_cache_first" => cache_first(&what, n, threads),
        "window" | "governor" | "window_first" | "governor_first" | "window_one"
        | "governor_one" | "window_denied" | "governor_denied" => limiter(&what, n, threads),
        other => eprintln!("unknown case {other}"),
    }
}

/// The measured loop: `op` on `n` keys of `trace` from `offset`; how many
/// returned true.
#[inline(never)]
fn measured(trace: &[u64], offset: usize, n: usize, op: &(dyn Fn(u64) -> bool + Sync)) -> usize {
    (0..n)
        .filter(|i| op(trace[(offset + i) & (TRACE - 1)]))
        .count()
}

/// Runs `measured` on `threads` threads at once, each from its own offset.
/// Outside valgrind it also prints the wall time per round (one call on
/// every thread), for interleaved A/B runs of two builds (noisy on a shared
/// machine: take the minimum and the median of several runs), and each
/// thread's CPU time per call, which a busy machine inflates less (time
/// spent descheduled is not counted; a sibling core's load on shared
/// caches still is).
fn run(trace: &[u64], n: usize, threads: usize, op: &(dyn Fn(u64) -> bool + Sync)) -> usize {
    let barrier = std::sync::Barrier::new(threads + 1);
    let (count, elapsed, cpu) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let cpu = thread_cpu_nanos();
                    let count = measured(trace, t * TRACE / threads, n, op);
                    (count, thread_cpu_nanos() - cpu)
                })
            })
            .collect();
        barrier.wait();
        let start = std::time::Instant::now();
        let (count, cpu) = handles
            .into_iter()
            .map(|h| h.join().expect("a measuring thread"))
            .fold((0, 0), |(c, t), (count, cpu)| (c + count, t + cpu));
        (count, start.elapsed(), cpu)
    });
    if n > 0 {
        let ns = elapsed.as_nanos() as f64 / n as f64;
        let cpu_ns = cpu as f64 / (n * threads) as f64;
        println!(
            "{ns:.1} ns per call ({threads} thread(s)), {cpu_ns:.1} ns of thread CPU time per call"
        );
    }
    count
}

/// This thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), in nanoseconds.
#[allow(unsafe_code)]
fn thread_cpu_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is valid on
    // Linux and clock_gettime writes only into `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// With `HOT_PATH_NEXT_WINDOW=1`, waits 1.1 s after the resident keys'
/// first checks, so that the measured run is in the limiter's next 1 s
/// window and each resident key's previous window is not empty (the steady
/// state of a key in constant use; without it a short run sits in the
/// first window, where `SlidingWindow` skips the previous window's
/// weighting). Governor's cases wait alike.
fn next_window() {
    if std::env::var_os("HOT_PATH_NEXT_WINDOW").is_some_and(|v| v == "1") {
        std::thread::sleep(Duration::from_millis(1_100));
    }
}

fn plain_zipf(ranks: u64, seed: u64) -> Vec<u64> {
    let zipf = rand_distr::Zipf::new(ranks as f64, 1.0).expect("a valid Zipf");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..TRACE).map(|_| zipf.sample(&mut rng) as u64).collect()
}

fn cache(what: &str, n: usize, threads: usize) {
    let trace = plain_zipf(RESIDENT, 7);
    let hits = match what {
        "quick_cache" => {
            let qc = quick_cache::sync::Cache::<u64, u64>::new(2 * RESIDENT as usize);
            for k in 1..=RESIDENT {
                qc.insert(k, k);
            }
            run(&trace, n, threads, &|k| black_box(qc.get(&k)).is_some())
        }
        _ => {
            let mut b = shards(MemoryCache::<u64, u64>::builder().max_capacity(2 * RESIDENT));
            if what == "cache_ttl" {
                b = b.time_to_live(Duration::from_secs(3600));
            }
            let mc = b.build().expect("a cache");
            for k in 1..=RESIDENT {
                mc.insert(k, k);
            }
            run(&trace, n, threads, &|k| black_box(mc.get(&k)).is_some())
        }
    };
    println!("{what}: {hits} hits of {}", n * threads);
}

/// `HOT_PATH_SHARDS=N`: levee's shard count (else its default).
fn shards(
    b: levee_cache::MemoryCacheBuilder<u64, u64>,
) -> levee_cache::MemoryCacheBuilder<u64, u64> {
    match std::env::var("HOT_PATH_SHARDS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(n) => b.shards(n),
        None => b,
    }
}

/// Get, and insert on a miss, into an empty cache smaller than the key
/// space: the hit path, the first sight of a key and the evictions.
fn cache_first(what: &str, n: usize, threads: usize) {
    let trace = plain_zipf(1_000_000, 13);
    let hits = if what.starts_with("quick_cache") {
        let qc = quick_cache::sync::Cache::<u64, u64>::new(RESIDENT as usize);
        run(&trace, n, threads, &|k| {
            let hit = black_box(qc.get(&k)).is_some();
            if !hit {
                qc.insert(k, k);
            }
            hit
        })
    } else {
        let b = shards(MemoryCache::<u64, u64>::builder().max_capacity(RESIDENT));
        let mc = b.build().expect("a cache");
        run(&trace, n, threads, &|k| {
            let hit = black_box(mc.get(&k)).is_some();
            if !hit {
                mc.insert(k, k);
            }
            hit
        })
    };
    println!("{what}: {hits} hits of {}", n * threads);
}

fn limiter(what: &str, n: usize, threads: usize) {
    let trace: Vec<u64> = if what.ends_with("_first") {
        plain_zipf(1_000_000, 11)
    } else if what.ends_with("_one") || what.ends_with("_denied") {
        vec![7; TRACE]
    } else {
        levee_benches::Zipf::new(LIMIT_KEYS as usize, 1.0).trace(TRACE, 5)
    };
    let resident = !what.ends_with("_first");
    // `_denied`: one key over its quota (1 an hour): every check is refused.
    let limit = if what.ends_with("_denied") { 1 } else { LIMIT };
    // `_one`: one key checked back to back could pass `LIMIT` a second on a
    // fast machine; `LIMIT` per 100 ms keeps it admitted (both sides alike).
    let per = if what.ends_with("_denied") {
        Duration::from_secs(3600)
    } else if what.ends_with("_one") {
        Duration::from_millis(100)
    } else {
        Duration::from_secs(1)
    };
    let allowed = if what.starts_with("governor") {
        let gov = governor::RateLimiter::<u64, _, _>::keyed(
            governor::Quota::with_period(per / limit)
                .expect("a non-zero period")
                .allow_burst(NonZeroU32::new(limit).expect("non-zero")),
        );
        if resident {
            for k in 0..LIMIT_KEYS {
                let _ = gov.check_key(&levee_benches::scramble(k));
            }
            let _ = gov.check_key(&7);
            next_window();
        }
        run(&trace, n, threads, &|k| {
            black_box(gov.check_key(&k)).is_ok()
        })
    } else {
        let quota = Quota::new(limit, per).expect("a quota");
        let sw = SlidingWindow::<u64>::builder(quota)
            .build()
            .expect("a limiter");
        if resident {
            for k in 0..LIMIT_KEYS {
                let _ = sw.check(&levee_benches::scramble(k));
            }
            let _ = sw.check(&7);
            next_window();
        }
        run(&trace, n, threads, &|k| black_box(sw.check(&k)).allowed)
    };
    println!("{what}: {allowed} allowed of {}", n * threads);
}
