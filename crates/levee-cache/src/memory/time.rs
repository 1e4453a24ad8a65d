//! Time for the cache: the injected clock, or, by default, a coarse
//! monotonic clock that is cheaper to read on the hit path.

use std::sync::Arc;
use std::time::{Duration, Instant};

use levee_core::SharedClock;

use super::ticker::{Ticket, recent};

/// Nanoseconds on one monotonic scale, with conversions from `Instant`.
#[derive(Debug, Clone)]
pub(crate) enum TimeSource {
    /// `CLOCK_MONOTONIC_COARSE` (Linux), 1 to 4 ms resolution, read from
    /// the process-wide ticker's atomic (one load) while it runs, else
    /// directly (a few ns). An entry may be served as fresh up to a few ms
    /// past its expiry (longer if the ticker's thread is starved of CPU);
    /// that is the documented cost.
    Coarse {
        base_instant: Instant,
        base_nanos: u64,
        /// Keeps the ticker running while this source lives (`None`: its
        /// thread could not be started).
        _ticket: Option<Arc<Ticket>>,
    },
    /// An injected clock, read exactly (tests use `ManualClock`).
    Clock { clock: SharedClock, base: Instant },
}

impl TimeSource {
    pub(crate) fn coarse() -> Self {
        TimeSource::Coarse {
            base_instant: Instant::now(),
            base_nanos: coarse_nanos(),
            _ticket: Ticket::acquire(coarse_nanos).map(Arc::new),
        }
    }

    pub(crate) fn clock(clock: SharedClock) -> Self {
        // Start at an offset so that "now minus a duration" never underflows.
        let base = clock.now();
        TimeSource::Clock { clock, base }
    }

    #[inline]
    pub(crate) fn now(&self) -> u64 {
        match self {
            TimeSource::Coarse { .. } => recent().unwrap_or_else(coarse_nanos),
            TimeSource::Clock { clock, base } => clock_nanos(clock, *base),
        }
    }

    /// The `Instant` and the nanosecond reading that denote the same moment.
    fn base(&self) -> (Instant, u64) {
        match self {
            TimeSource::Coarse {
                base_instant,
                base_nanos,
                ..
            } => (*base_instant, *base_nanos),
            TimeSource::Clock { base, .. } => (*base, OFFSET),
        }
    }

    /// `at` on this source's scale (saturating at its ends).
    pub(crate) fn instant_to_nanos(&self, at: Instant) -> u64 {
        let (base_instant, base_nanos) = self.base();
        match at.checked_duration_since(base_instant) {
            Some(d) => base_nanos.saturating_add(nanos(d)),
            None => base_nanos.saturating_sub(nanos(base_instant - at)),
        }
    }

    /// A time on this scale as an `Instant`.
    pub(crate) fn nanos_to_instant(&self, t: u64) -> Instant {
        let (base_instant, base_nanos) = self.base();
        if t >= base_nanos {
            let far = Duration::from_secs(100 * 365 * 24 * 3600);
            base_instant
                .checked_add(Duration::from_nanos(t - base_nanos).min(far))
                .unwrap_or(base_instant + far)
        } else {
            base_instant
                .checked_sub(Duration::from_nanos(base_nanos - t))
                .unwrap_or(base_instant)
        }
    }
}

const OFFSET: u64 = 1 << 40;

/// An injected clock's reading (tests, simulations): kept out of the hit
/// path's code, which it would otherwise fill with the `Duration` maths.
#[inline(never)]
fn clock_nanos(clock: &SharedClock, base: Instant) -> u64 {
    OFFSET + nanos(clock.now().saturating_duration_since(base))
}

/// `d` in nanoseconds, saturating at `u64::MAX` (in 64-bit arithmetic:
/// `as_nanos`' 128-bit product cost a promotion from L2 about 20
/// instructions a conversion).
pub(crate) fn nanos(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(super) fn coarse_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and CLOCK_MONOTONIC_COARSE
    // is a valid clock id on Linux; clock_gettime writes only into `ts`.
    // Why not quanta's clock (safe, already a dependency): on the 2-vCPU
    // development VM, 2026-11-30, `cargo run --release -p levee-benches
    // --example clock_cost` measured this call at 7.0-13.9 ns against
    // 14.8-37.9 ns for `quanta::Clock::now()` and 12.7-26.1 ns for its
    // `raw()` (reading the TSC is slow under virtualisation), about 2x in
    // each of three interleaved runs: the hit path reads it on every get.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    if rc != 0 {
        return fallback_nanos();
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

#[cfg(not(target_os = "linux"))]
pub(super) fn coarse_nanos() -> u64 {
    fallback_nanos()
}

fn fallback_nanos() -> u64 {
    use std::sync::OnceLock;
    static START: OnceLock<Instant> = OnceLock::new();
    OFFSET + nanos(START.get_or_init(Instant::now).elapsed())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::MemoryCache;

    /// On the default time source (the ticker's reading), an entry stops
    /// being fresh once its TTL and the clock's resolution have passed.
    #[test]
    fn on_the_default_clock_an_entry_expires_after_its_ttl() {
        let cache = MemoryCache::<u32, u32>::builder()
            .max_capacity(10)
            .time_to_live(Duration::from_millis(30))
            .stale_retention(Duration::from_secs(60))
            .build()
            .unwrap();
        cache.insert(1, 1);
        assert_eq!(cache.get(&1), Some(1));
        std::thread::sleep(Duration::from_millis(30 + 100));
        assert_eq!(cache.get(&1), None, "not fresh 100 ms past its TTL");
        assert!(cache.get_entry(&1).is_some(), "kept as stale");
    }
}
