//! Instructions per call, for callgrind on a noisy machine: runs `N` L1
//! hits through `TieredCache::get_or_load` (`tiered`) or a `Levee`
//! pipeline (`levee`), or `N` calls through the no-cache stack (rate limit,
//! timeouts, retry, breaker) of a `Levee` pipeline (`stack`) or of
//! tower-resilience layers (`tower`), after the same setup. Instructions
//! per call are `(Ir(N) - Ir(0)) / N`:
//!
//! ```sh
//! cargo build --release -p levee-benches --example pipeline_hit_cost
//! for what in tiered levee stack tower; do for n in 0 100000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$what.$n \
//!     target/release/examples/pipeline_hit_cost $what $n 2>&1 | grep refs
//! done; done
//! ```

use std::hint::black_box;
use std::time::Duration;

use levee::Levee;
use levee::cache::{Loaded, TieredCache};

async fn miss() -> Result<Loaded<String>, std::io::Error> {
    Err(std::io::Error::other("the run expected a hit"))
}

async fn miss_raw() -> Result<String, std::io::Error> {
    Err(std::io::Error::other("the run expected a hit"))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "levee".into());
    let n: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let cache = || {
        TieredCache::<u64, String>::builder("cost")
            .ttl(Duration::from_secs(3600))
            .build()
            .expect("a cache")
    };
    let bare = cache();
    let levee: Levee<u64, String, std::io::Error> = Levee::builder("cost")
        .cache(cache())
        .build()
        .expect("a pipeline");
    let stack = levee_benches::stacks::levee_stack();
    let mut tower = levee_benches::stacks::tower_stack();
    rt.block_on(async {
        for k in 0..1_000 {
            bare.insert(k, format!("value {k}")).await;
            levee.insert(k, format!("value {k}")).await;
        }
        let start = std::time::Instant::now();
        for i in 0..n {
            match what.as_str() {
                "tiered" => {
                    black_box(bare.get_or_load(i % 1_000, miss).await.ok());
                }
                "stack" => {
                    black_box(
                        stack
                            .get(i % 1_000, move || async move { Ok(i) })
                            .await
                            .ok(),
                    );
                }
                "tower" => {
                    use tower::{Service, ServiceExt};
                    let svc = tower.ready().await.expect("ready");
                    black_box(svc.call(i).await.ok());
                }
                _ => {
                    black_box(levee.get(i % 1_000, miss_raw).await.ok());
                }
            }
        }
        if n > 0 {
            println!("{what}: {:?} per hit", start.elapsed() / n as u32);
        }
    });
}
