//! The local limiters' time: an injected clock, or by default a TSC-based
//! clock (`quanta`, as governor uses), cheaper to read on every check than
//! `Instant::now()` through a `dyn Clock`.

use std::time::Instant;

use levee_core::SharedClock;

/// Time since the limiter was built.
pub(crate) enum LimiterTime {
    Clock {
        clock: SharedClock,
        base: Instant,
    },
    Tsc {
        clock: quanta::Clock,
        /// The clock's raw reading when the limiter was built: a reading
        /// is scaled to nanoseconds once, with no `Duration` in between.
        base: u64,
    },
}

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
                    base: clock.raw(),
                    clock,
                }
            }
        }
    }

    /// Time since the limiter was built.
    #[inline]
    pub(crate) fn elapsed(&self) -> std::time::Duration {
        match self {
            LimiterTime::Clock { clock, base } => clock.now().saturating_duration_since(*base),
            LimiterTime::Tsc { .. } => std::time::Duration::from_nanos(self.elapsed_nanos()),
        }
    }

    /// [`elapsed`](Self::elapsed) in nanoseconds (saturating), read without
    /// building a `Duration` on the TSC path: the sliding window computes
    /// in nanoseconds, and the round trip cost a division and a
    /// multiplication on every check.
    #[inline]
    pub(crate) fn elapsed_nanos(&self) -> u64 {
        match self {
            LimiterTime::Clock { clock, base } => {
                let d = clock.now().saturating_duration_since(*base);
                u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
            }
            // Zero if this core's counter reads behind the base (as
            // `saturating_duration_since` did).
            LimiterTime::Tsc { clock, base } => clock.delta_as_nanos(*base, clock.raw()),
        }
    }
}
