//! The traffic of the storm: seeded page loads, and the physical limit of
//! upstream calls they allow.

use std::time::Duration;

/// Requests a page load fires at once.
pub(crate) const REQUESTS_PER_PAGE: usize = 5;
/// The simulated span.
pub(crate) const HOUR: Duration = Duration::from_secs(3600);
/// Every user's first page load comes before this.
const FIRST_VISIT_BEFORE: Duration = Duration::from_secs(20 * 60);
/// A visit is 1 to this many page loads.
const PAGES_PER_VISIT: u64 = 4;
/// Between the page loads of a visit.
const CLICK: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(40));
/// A user comes back after a think time in this range.
const THINK: (Duration, Duration) = (Duration::from_secs(2 * 60), Duration::from_secs(10 * 60));

/// A small seeded generator (splitmix64): the trace depends on the seed
/// only, not on a crate's algorithm choice across versions.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `[lo, hi)`, millisecond steps.
    fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = (hi - lo).as_millis() as u64;
        lo + Duration::from_millis(self.below(span.max(1)))
    }
}

/// One page load: a user, when, and the replica each request lands on.
#[derive(Debug, Clone)]
pub(crate) struct PageLoad {
    pub(crate) user: u32,
    pub(crate) at: Duration,
    pub(crate) replicas: [usize; REQUESTS_PER_PAGE],
}

/// Every page load of the hour, in time order: visits of a few page loads
/// a few seconds apart, a few minutes between visits.
pub(crate) fn page_loads(users: u32, replicas: usize, seed: u64) -> Vec<PageLoad> {
    let mut rng = Rng::new(seed);
    let mut loads = Vec::new();
    for user in 0..users {
        let mut at = rng.between(Duration::ZERO, FIRST_VISIT_BEFORE);
        while at < HOUR {
            for page in 0..=rng.below(PAGES_PER_VISIT) {
                if page > 0 {
                    at += rng.between(CLICK.0, CLICK.1);
                }
                if at >= HOUR {
                    break;
                }
                let mut on = [0; REQUESTS_PER_PAGE];
                for r in &mut on {
                    *r = rng.below(replicas as u64) as usize;
                }
                loads.push(PageLoad {
                    user,
                    at,
                    replicas: on,
                });
            }
            at += rng.between(THINK.0, THINK.1);
        }
    }
    loads.sort_by_key(|p| (p.at, p.user));
    loads
}

/// The fewest upstream calls any cache with fresh TTL `ttl` can make for
/// this trace: per user, the TTL windows that hold at least one of the
/// user's requests (a window opens at the first request past the last
/// one's end). Early refresh would add calls; the storm runs without it.
pub(crate) fn physical_limit(loads: &[PageLoad], ttl: Duration) -> u64 {
    let mut window_end: std::collections::HashMap<u32, Duration> = Default::default();
    let mut windows = 0;
    for p in loads {
        let end = window_end.get(&p.user).copied();
        if end.is_none_or(|end| p.at >= end) {
            window_end.insert(p.user, p.at + ttl);
            windows += 1;
        }
    }
    windows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_counts_one_call_per_window_with_requests() {
        let at = |user, s| PageLoad {
            user,
            at: Duration::from_secs(s),
            replicas: [0; REQUESTS_PER_PAGE],
        };
        let ttl = Duration::from_secs(300);
        let loads = [at(1, 0), at(1, 299), at(1, 300), at(2, 10), at(1, 900)];
        assert_eq!(physical_limit(&loads, ttl), 4);
    }
}
