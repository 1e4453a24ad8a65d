//! Early refresh (XFetch, Vattani et al., "Optimal Probabilistic Cache
//! Stampede Prevention", VLDB 2015): a read of a fresh value starts a
//! background refresh with a probability that rises as expiry nears,
//! scaled by how long the value took to load, so a hot key is reloaded
//! before it expires and by one reader, not all of them at expiry.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::slot::Slot;

/// `-ln(u)` never exceeds this for the `u` drawn here (`u >= 2^-53`), so a
/// value further from expiry than `delta * beta * MAX_DRAW` is never due and
/// needs no draw.
const MAX_DRAW: f64 = 37.0;

/// Whether a read at `now` of `slot` should refresh it early:
/// `delta * beta * -ln(u) >= time left`, with `delta` its load time.
pub(crate) fn due<V>(beta: f64, slot: &Slot<V>, now: Instant, rng: &Rng) -> bool {
    if slot.value.is_none() || slot.load_time.is_zero() {
        return false;
    }
    let left = slot
        .fresh_until
        .saturating_duration_since(now)
        .as_secs_f64();
    let scale = slot.load_time.as_secs_f64() * beta;
    if left > scale * MAX_DRAW {
        return false;
    }
    scale * -rng.next_unit().ln() >= left
}

/// A lock-free pseudo-random source (SplitMix64), seedable so tests and
/// benches are repeatable. Not for anything secret.
#[derive(Debug)]
pub(crate) struct Rng(AtomicU64);

impl Rng {
    pub(crate) fn new(seed: Option<u64>) -> Self {
        Rng(AtomicU64::new(seed.unwrap_or_else(rand::random)))
    }

    pub(crate) fn next_u64(&self) -> u64 {
        let mut z = self
            .0
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn next_f64(&self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in (0, 1].
    fn next_unit(&self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiered::slot::Now;
    use std::time::Duration;

    fn slot(load: Duration) -> (Slot<u8>, Instant) {
        let now = Now {
            mono: Instant::now(),
            wall_ms: 0,
        };
        (
            Slot::new(Some(1), now, Duration::from_secs(100), Duration::ZERO, load),
            now.mono,
        )
    }

    #[test]
    fn refresh_is_never_due_far_from_expiry_and_likelier_near_it() {
        let rng = Rng::new(Some(7));
        let (s, t0) = slot(Duration::from_secs(1));
        let share = |at: Duration| (0..10_000).filter(|_| due(1.0, &s, t0 + at, &rng)).count();
        assert_eq!(share(Duration::ZERO), 0, "100 s left, 1 s loads");
        let (early, late) = (
            share(Duration::from_secs(97)),
            share(Duration::from_millis(99_500)),
        );
        assert!(early < late, "{early} then {late}");
        // P(due with 3 s left) = e^-3, about 5 %.
        assert!((300..700).contains(&early), "{early}");
        assert_eq!(share(Duration::from_secs(100)), 10_000, "at expiry: always");
    }

    #[test]
    fn seeded_sources_repeat() {
        let (a, b) = (Rng::new(Some(1)), Rng::new(Some(1)));
        assert_eq!((a.next_u64(), a.next_u64()), (b.next_u64(), b.next_u64()));
        assert!(
            (0..1000)
                .map(|_| a.next_f64())
                .all(|x| (0.0..1.0).contains(&x))
        );
    }
}
