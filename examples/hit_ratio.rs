//! Hit ratios of MemoryCache (S3-FIFO; LRU and FIFO for comparison), moka
//! and quick_cache on the same traces: Zipf 0.8 and 1.0 over 1M keys with a
//! capacity of 10k, and a loop/scan workload (a hot Zipf set interleaved with
//! one-time sequential scans). A miss inserts the key.
//!
//! Run: `cargo run --release --example hit_ratio`

use std::time::Duration;

use levee::cache::{EvictionPolicy, MemoryCache};
use levee_benches::{Rng, Zipf, scramble};

const CAPACITY: u64 = 10_000;

fn hit_ratio(trace: &[u64], get: impl Fn(u64) -> bool, insert: impl Fn(u64)) -> f64 {
    let mut hits = 0usize;
    for &k in trace {
        if get(k) {
            hits += 1;
        } else {
            insert(k);
        }
    }
    100.0 * hits as f64 / trace.len() as f64
}

fn levee(policy: EvictionPolicy, trace: &[u64]) -> f64 {
    let c = MemoryCache::<u64, u64>::builder()
        .max_capacity(CAPACITY)
        .time_to_live(Duration::from_secs(3600))
        .policy(policy)
        .build()
        .expect("valid settings");
    hit_ratio(trace, |k| c.get(&k).is_some(), |k| c.insert(k, k))
}

fn moka(trace: &[u64]) -> f64 {
    let c = moka::sync::Cache::<u64, u64>::new(CAPACITY);
    let r = hit_ratio(trace, |k| c.get(&k).is_some(), |k| c.insert(k, k));
    c.run_pending_tasks();
    r
}

fn quick(trace: &[u64]) -> f64 {
    let c = quick_cache::sync::Cache::<u64, u64>::new(CAPACITY as usize);
    hit_ratio(trace, |k| c.get(&k).is_some(), |k| c.insert(k, k))
}

/// A hot Zipf(1.0) set of 8k keys; every 20k requests, a scan of 20k
/// keys never seen before.
fn loop_scan(len: usize) -> Vec<u64> {
    let hot = Zipf::new(8_000, 1.0);
    let mut rng = Rng::new(3);
    let mut next_scan = 10_000_000u64;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        for _ in 0..20_000 {
            out.push(scramble(hot.sample(&mut rng)));
        }
        for _ in 0..20_000 {
            out.push(scramble(next_scan));
            next_scan += 1;
        }
    }
    out.truncate(len);
    out
}

fn main() {
    let workloads: Vec<(&str, Vec<u64>)> = vec![
        (
            "zipf 0.8, 1M keys",
            Zipf::new(1_000_000, 0.8).trace(4_000_000, 1),
        ),
        (
            "zipf 1.0, 1M keys",
            Zipf::new(1_000_000, 1.0).trace(4_000_000, 2),
        ),
        ("loop/scan", loop_scan(2_000_000)),
    ];
    println!("hit ratio (%), capacity {CAPACITY}");
    println!(
        "{:<20} {:>14} {:>10} {:>10} {:>8} {:>12}",
        "workload", "levee S3-FIFO", "levee LRU", "levee FIFO", "moka", "quick_cache"
    );
    for (name, trace) in &workloads {
        println!(
            "{:<20} {:>14.2} {:>10.2} {:>10.2} {:>8.2} {:>12.2}",
            name,
            levee(EvictionPolicy::S3Fifo, trace),
            levee(EvictionPolicy::Lru, trace),
            levee(EvictionPolicy::Fifo, trace),
            moka(trace),
            quick(trace),
        );
    }
}
