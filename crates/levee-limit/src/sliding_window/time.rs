//! The sliding window's time: an injected clock, or by default a TSC-based
//! clock (`quanta`, as governor uses), cheaper to read on every check than
//! `Instant::now()` through a `dyn Clock`.

use std::time::Instant;

use levee_core::SharedClock;

/// Nanoseconds since the limiter was built, plus an hour (so that aligned
/// windows never start before zero for keys first seen at start-up).
pub(crate) enum LimiterTime {
    Clock {
        clock: SharedClock,
        base: Instant,
    },
    Tsc {
        clock: quanta::Clock,
        base: quanta::Instant,
    },
}

const OFFSET: u64 = 3_600_000_000_000;

impl LimiterTime {
    /// `clock` when one was injected, else the TSC clock.
    pub(crate) fn new(clock: Option<SharedClock>) -> Self {
        match clock {
            Some(clock) => LimiterTime::Clock {
                base: clock.now(),
                clock,
            },
            None => {
                let clock = quanta::Clock::new();
                LimiterTime::Tsc {
                    base: clock.now(),
                    clock,
                }
            }
        }
    }

    #[inline]
    pub(crate) fn nanos(&self) -> u64 {
        let d = match self {
            LimiterTime::Clock { clock, base } => clock.now().saturating_duration_since(*base),
            LimiterTime::Tsc { clock, base } => clock.now().saturating_duration_since(*base),
        };
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX) + OFFSET
    }
}
