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
//! `pair OURS PEER [ROUNDS] [N] [THREADS]` builds both cases in one process
//! and alternates rounds of `N` calls between them (see [`pair`]): on a VM
//! whose speed moves from one process to the next, the steadier wall-clock
//! comparison.
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

/// `println!` that ignores a closed stdout (`hot_path_cost ... | head`),
/// where `println!` panics.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// Trace length (a power of two); `N` may be larger, the trace wraps.
const TRACE: usize = 1 << 20;
const RESIDENT: u64 = 100_000;
const LIMIT_KEYS: u64 = 10_000;
/// No check in a run is denied, and the counter stays lock-free (< 2^24).
const LIMIT: u32 = (1 << 24) - 1;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "pair") {
        return pair(&args[1..]);
    }
    let what = args.first().cloned().unwrap_or_else(|| "cache".into());
    let n: usize = args
        .get(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let threads: usize = args.get(2).and_then(|t| t.parse().ok()).unwrap_or(1).max(1);
    let Some(case) = Case::new(&what) else {
        eprintln!("unknown case {what}");
        std::process::exit(2);
    };
    let timed = run(&case.trace, n, threads, &*case.op);
    if n > 0 {
        say!(
            "{:.1} ns per call ({threads} thread(s)), {:.1} ns of thread CPU time per call",
            timed.ns,
            timed.cpu_ns
        );
    }
    say!(
        "{what}: {} {} of {}",
        timed.count,
        case.counted,
        n * threads
    );
}

/// `pair OURS PEER [ROUNDS] [N] [THREADS]`: both cases built in this one
/// process, then `ROUNDS` rounds of `N` calls each, the two sides in
/// alternating order; prints the median of the per-round ratios (peer time
/// / our time: above 1, ours is faster), the worst round, and the ratios of
/// the two sides' best and median times. One process for both sides takes
/// out what moves a whole process (this VM ran one binary's get-hit at 30
/// ns in one process and 80 in the next); the first round's calls include
/// every key's first sight, later rounds are the steady state of the same
/// trace.
fn pair(args: &[String]) {
    let (Some(ours), Some(peer)) = (args.first(), args.get(1)) else {
        eprintln!("usage: hot_path_cost pair OURS PEER [ROUNDS] [N] [THREADS]");
        std::process::exit(2);
    };
    let rounds: usize = args
        .get(2)
        .and_then(|r| r.parse().ok())
        .unwrap_or(11)
        .max(1);
    let n: usize = args
        .get(3)
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000_000)
        .max(1);
    let threads: usize = args.get(4).and_then(|t| t.parse().ok()).unwrap_or(1).max(1);
    let (Some(a), Some(b)) = (Case::new(ours), Case::new(peer)) else {
        eprintln!("unknown case in {ours} / {peer}");
        std::process::exit(2);
    };
    let (mut ratios, mut ta, mut tb) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..rounds {
        let (x, y) = if r % 2 == 0 {
            let x = run(&a.trace, n, threads, &*a.op).ns;
            (x, run(&b.trace, n, threads, &*b.op).ns)
        } else {
            let y = run(&b.trace, n, threads, &*b.op).ns;
            (run(&a.trace, n, threads, &*a.op).ns, y)
        };
        ratios.push(y / x);
        ta.push(x);
        tb.push(y);
    }
    let worst = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let (ma, mb) = (median(&mut ta), median(&mut tb));
    // Sorted by `median`: the first is each side's best round.
    let (ba, bb) = (ta[0], tb[0]);
    say!(
        "{ours} vs {peer} {threads}t, one process: median round {:.2}x  worst {worst:.2}x  best {ba:.1} / {bb:.1} ns = {:.2}x  medians {ma:.1} / {mb:.1} ns = {:.2}x  ({rounds} rounds of {n} calls)",
        median(&mut ratios),
        bb / ba,
        mb / ma
    );
}

/// The median (the upper one of an even count).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A case: its trace, and the operation `measured` runs on each key (true
/// when it hit, or was admitted), the cache or limiter moved into it.
struct Case {
    trace: Vec<u64>,
    op: Box<dyn Fn(u64) -> bool + Sync>,
    /// What the printed count counts.
    counted: &'static str,
}

impl Case {
    fn new(what: &str) -> Option<Case> {
        Some(match what {
            "cache" | "cache_ttl" | "quick_cache" => cache(what),
            "cache_first" | "quick_cache_first" => cache_first(what),
            "window" | "governor" | "window_first" | "governor_first" | "window_one"
            | "governor_one" | "window_denied" | "governor_denied" => limiter(what),
            _ => return None,
        })
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

/// What [`run`] measured: the calls that returned true, the wall time per
/// round (one call on every thread), and each thread's CPU time per call.
struct Timed {
    count: usize,
    ns: f64,
    cpu_ns: f64,
}

/// Runs `measured` on `threads` threads at once, each from its own offset:
/// the wall time per round (one call on every thread), for interleaved A/B
/// runs (noisy on a shared machine: take the minimum and the median of
/// several runs), and each thread's CPU time per call, which a busy machine
/// inflates less (time spent descheduled is not counted; a sibling core's
/// load on shared caches still is).
fn run(trace: &[u64], n: usize, threads: usize, op: &(dyn Fn(u64) -> bool + Sync)) -> Timed {
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
    let calls = n.max(1) as f64;
    Timed {
        count,
        ns: elapsed.as_nanos() as f64 / calls,
        cpu_ns: cpu as f64 / (calls * threads as f64),
    }
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

fn cache(what: &str) -> Case {
    let trace = plain_zipf(RESIDENT, 7);
    let op: Box<dyn Fn(u64) -> bool + Sync> = match what {
        "quick_cache" => {
            let qc = quick_cache::sync::Cache::<u64, u64>::new(2 * RESIDENT as usize);
            for k in 1..=RESIDENT {
                qc.insert(k, k);
            }
            Box::new(move |k| black_box(qc.get(&k)).is_some())
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
            Box::new(move |k| black_box(mc.get(&k)).is_some())
        }
    };
    Case {
        trace,
        op,
        counted: "hits",
    }
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
fn cache_first(what: &str) -> Case {
    let trace = plain_zipf(1_000_000, 13);
    let op: Box<dyn Fn(u64) -> bool + Sync> = if what.starts_with("quick_cache") {
        let qc = quick_cache::sync::Cache::<u64, u64>::new(RESIDENT as usize);
        Box::new(move |k| {
            let hit = black_box(qc.get(&k)).is_some();
            if !hit {
                qc.insert(k, k);
            }
            hit
        })
    } else {
        let b = shards(MemoryCache::<u64, u64>::builder().max_capacity(RESIDENT));
        let mc = b.build().expect("a cache");
        Box::new(move |k| {
            let hit = black_box(mc.get(&k)).is_some();
            if !hit {
                mc.insert(k, k);
            }
            hit
        })
    };
    Case {
        trace,
        op,
        counted: "hits",
    }
}

fn limiter(what: &str) -> Case {
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
    let op: Box<dyn Fn(u64) -> bool + Sync> = if what.starts_with("governor") {
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
        Box::new(move |k| black_box(gov.check_key(&k)).is_ok())
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
        Box::new(move |k| black_box(sw.check(&k)).allowed)
    };
    Case {
        trace,
        op,
        counted: "allowed",
    }
}
