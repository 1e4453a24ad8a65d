//! Memory per entry for u64 -> u64 in MemoryCache, moka and quick_cache:
//! the resident-set growth of a fresh process inserting 1M entries, each
//! cache measured in its own child process; then the same caches after
//! 3M distinct keys went through a capacity of 1M (steady state under
//! eviction: what each keeps about evicted keys counts too).
//!
//! Run: `cargo run --release --example bytes_per_entry`

use std::time::Duration;

const N: u64 = 1_000_000;

/// Distinct keys inserted: `N`, or `3 N` in the eviction (churn) rounds.
fn keys(churn: bool) -> u64 {
    if churn { 3 * N } else { N }
}

fn measure(which: &str, churn: bool) -> u64 {
    let before = levee_benches::rss_bytes();
    match which {
        "levee" => {
            let c = levee::cache::MemoryCache::<u64, u64>::builder()
                .max_capacity(N)
                .time_to_live(Duration::from_secs(3600))
                .build()
                .expect("valid settings");
            (0..keys(churn)).for_each(|k| c.insert(k, k));
            assert!(c.len() as u64 >= N * 99 / 100);
            let after = levee_benches::rss_bytes();
            std::hint::black_box(&c);
            after - before
        }
        "moka" => {
            let c = moka::sync::Cache::<u64, u64>::builder()
                .max_capacity(N)
                .time_to_live(Duration::from_secs(3600))
                .build();
            (0..keys(churn)).for_each(|k| c.insert(k, k));
            c.run_pending_tasks();
            let after = levee_benches::rss_bytes();
            std::hint::black_box(&c);
            after - before
        }
        "quick_cache" => {
            let c = quick_cache::sync::Cache::<u64, u64>::new(N as usize);
            (0..keys(churn)).for_each(|k| c.insert(k, k));
            let after = levee_benches::rss_bytes();
            std::hint::black_box(&c);
            after - before
        }
        other => panic!("unknown cache {other}"),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    if let Some(which) = args.next() {
        let churn = args.next().is_some_and(|a| a == "churn");
        println!("{}", measure(&which, churn));
        return;
    }
    for churn in [false, true] {
        if churn {
            println!(
                "after {} distinct keys through a capacity of {N}",
                keys(true)
            );
        } else {
            println!(
                "resident memory per entry, u64 -> u64, {N} entries (RSS growth of a fresh process)"
            );
        }
        for which in ["levee", "moka", "quick_cache"] {
            let bytes = levee_benches::in_child(&[which, if churn { "churn" } else { "fill" }]);
            println!("{which:<12} {:>7.1} bytes/entry", bytes as f64 / N as f64);
        }
    }
}
