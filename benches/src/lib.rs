//! Workload generators shared by levee's benches and measurement examples:
//! a seeded Zipf sampler and key traces; the no-cache pipeline stacks
//! ([`stacks`]) the pipeline bench compares.

pub mod stacks;

/// A small, fast, seeded generator (xorshift64*): workloads repeat exactly.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; 0 is remapped).
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A float in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Zipf(`s`) over `n` ranks: rank `i` (0-based) has weight `1 / (i+1)^s`.
#[derive(Debug, Clone)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// A sampler over `n` ranks with exponent `s`.
    pub fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut total = 0.0;
        for i in 0..n {
            total += 1.0 / ((i + 1) as f64).powf(s);
            cdf.push(total);
        }
        for c in &mut cdf {
            *c /= total;
        }
        Zipf { cdf }
    }

    /// A rank in 0..n.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        let u = rng.next_f64();
        self.cdf.partition_point(|c| *c < u).min(self.cdf.len() - 1) as u64
    }

    /// `len` samples, with ranks scrambled so that hot keys do not sit next
    /// to each other in hash order.
    pub fn trace(&self, len: usize, seed: u64) -> Vec<u64> {
        let mut rng = Rng::new(seed);
        (0..len).map(|_| scramble(self.sample(&mut rng))).collect()
    }
}

/// A bijection on u64 (so distinct ranks stay distinct keys).
pub fn scramble(x: u64) -> u64 {
    let x = (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    (x ^ (x >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53) ^ (x >> 29)
}

/// Runs `op(thread, i)` for `i` in `0..iters` on each of `threads` threads,
/// started together; returns the wall time from the start signal until all
/// are done.
pub fn run_threads<F: Fn(usize, u64) + Sync>(
    threads: usize,
    iters: u64,
    op: F,
) -> std::time::Duration {
    let barrier = std::sync::Barrier::new(threads + 1);
    let (op, barrier) = (&op, &barrier);
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                barrier.wait();
                for i in 0..iters {
                    op(t, i);
                }
            });
        }
        barrier.wait();
        std::time::Instant::now()
    })
    .elapsed()
}

/// This process's resident set in bytes (Linux `/proc/self/statm`; 0
/// elsewhere): the memory examples measure its growth.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// A `/userinfo` answer of a realistic size (about 200 bytes of JSON), the
/// value the tiered benches cache for key `i`.
pub fn userinfo(i: u64) -> String {
    format!(
        "{{\"sub\":\"auth0|{i:024}\",\"email\":\"user{i}@example.com\",\"email_verified\":true,\
         \"name\":\"User Number {i}\",\"picture\":\"https://cdn.example.com/avatars/{i}.png\",\
         \"updated_at\":\"2026-11-23T09:00:00.000Z\"}}"
    )
}

/// Runs this executable again with `args` and reads the number it prints:
/// each memory measurement runs in a fresh process of its own. 0 if the
/// child printed no number.
pub fn in_child(args: &[&str]) -> u64 {
    let exe = std::env::current_exe().expect("own path");
    let out = std::process::Command::new(exe)
        .args(args)
        .output()
        .expect("child runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// A plain multiplexed connection of the `redis` crate to `url`, opened on
/// `rt`: the raw baseline the Redis benches compare levee with.
pub fn raw_connection(
    rt: &tokio::runtime::Runtime,
    url: &str,
) -> redis::aio::MultiplexedConnection {
    rt.block_on(async {
        redis::Client::open(url)
            .expect("a redis client")
            .get_multiplexed_async_connection()
            .await
            .expect("a connection to the bench's redis-server")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_rank_zero_is_most_frequent() {
        let z = Zipf::new(1000, 1.0);
        let mut rng = Rng::new(1);
        let mut counts = [0u32; 3];
        for _ in 0..100_000 {
            let r = z.sample(&mut rng) as usize;
            if r < 3 {
                counts[r] += 1;
            }
        }
        assert!(counts[0] > counts[1] && counts[1] > counts[2], "{counts:?}");
    }
}
