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
        base: quanta::Instant,
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
                    base: clock.now(),
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
            LimiterTime::Tsc { clock, base } => clock.now().saturating_duration_since(*base),
        }
    }
}
