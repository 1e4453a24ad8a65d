//! Memory per key of `SlidingWindow` (counter mode) beside governor's keyed
//! limiter, u64 keys: the resident-set growth of a fresh process checking
//! 1M distinct keys once each, each limiter in its own child process.
//!
//! Run: `cargo run --release -p levee-benches --example limiter_bytes_per_key`

use std::num::NonZeroU32;

const N: u64 = 1_000_000;

fn measure(which: &str) -> u64 {
    let limit = NonZeroU32::new(1_000).expect("non-zero");
    match which {
        "levee" => {
            let l =
                levee_limit::SlidingWindow::<u64>::builder(levee_limit::Quota::per_second(limit))
                    .build()
                    .expect("a limiter");
            let before = levee_benches::rss_bytes();
            (0..N).for_each(|k| assert!(l.check(&k).allowed));
            let after = levee_benches::rss_bytes();
            assert_eq!(l.len() as u64, N, "no key evicted within the run");
            after - before
        }
        "governor" => {
            let g = governor::RateLimiter::<u64, _, _>::keyed(governor::Quota::per_second(limit));
            let before = levee_benches::rss_bytes();
            (0..N).for_each(|k| assert!(g.check_key(&k).is_ok()));
            let after = levee_benches::rss_bytes();
            assert_eq!(g.len() as u64, N);
            after - before
        }
        other => panic!("unknown limiter {other}"),
    }
}

fn main() {
    if let Some(which) = std::env::args().nth(1) {
        println!("{}", measure(&which));
        return;
    }
    println!("resident memory per key, u64 keys, {N} keys (RSS growth of a fresh process)");
    for which in ["levee", "governor"] {
        let bytes = levee_benches::in_child(&[which]);
        println!("{which:<9} {:>6.1} bytes/key", bytes as f64 / N as f64);
    }
}
