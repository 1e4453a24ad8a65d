//! Events a breaker reports to its listeners.

use std::sync::Arc;
use std::time::Duration;

/// The state of a [`CircuitBreaker`](crate::CircuitBreaker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Calls pass; outcomes are counted.
    Closed,
    /// Calls are refused until the open duration ends.
    Open,
    /// A limited number of probe calls pass; their outcomes decide.
    HalfOpen,
    /// Refused by an operator until [`reset`](crate::CircuitBreaker::reset).
    ForcedOpen,
    /// Every call passes and nothing changes state, until `reset`.
    Disabled,
}

impl State {
    pub(crate) fn from_bits(bits: u64) -> State {
        match bits & 0b111 {
            0 => State::Closed,
            1 => State::Open,
            2 => State::HalfOpen,
            3 => State::ForcedOpen,
            _ => State::Disabled,
        }
    }

    pub(crate) fn bits(self) -> u64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
            State::ForcedOpen => 3,
            State::Disabled => 4,
        }
    }
}

/// Something that happened to a breaker.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum BreakerEvent {
    /// The state changed; fired once per transition.
    StateChanged {
        /// The breaker's name.
        name: Arc<str>,
        /// The state before.
        from: State,
        /// The state after.
        to: State,
        /// For a move to Open: how long it stays open.
        open_for: Option<Duration>,
    },
    /// A call was refused.
    Rejected {
        /// The breaker's name.
        name: Arc<str>,
        /// The state that refused it.
        state: State,
    },
}

pub(crate) type Listener = Arc<dyn Fn(&BreakerEvent) + Send + Sync>;
