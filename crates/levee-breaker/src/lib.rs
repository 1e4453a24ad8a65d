//! levee's circuit breaker: [`CircuitBreaker`] and a keyed
//! [`BreakerRegistry`].
//!
//! ```
//! use std::time::Duration;
//! use levee_breaker::{CircuitBreaker, State};
//! use levee_core::ManualClock;
//!
//! let clock = ManualClock::new();
//! let breaker = CircuitBreaker::builder()
//!     .consecutive_failures(3)
//!     .open_duration(Duration::from_secs(10))
//!     .half_open_permits(1)
//!     .clock(clock.shared())
//!     .build()?;
//!
//! for _ in 0..3 {
//!     breaker.try_acquire().unwrap().failure();
//! }
//! assert_eq!(breaker.state(), State::Open);
//! let rejected = breaker.try_acquire().unwrap_err();
//! assert_eq!(rejected.retry_after, Some(Duration::from_secs(10)));
//!
//! clock.advance(Duration::from_secs(10));
//! breaker.try_acquire().unwrap().success(); // the one probe succeeds
//! assert_eq!(breaker.state(), State::Closed);
//! # Ok::<(), levee_breaker::BreakerConfigError>(())
//! ```
//!
//! # Rules
//!
//! - **Closed**: every call is admitted. Outcomes go into a sliding window
//!   ([`Window::Count`] of the last n calls, or [`Window::Time`] of the last
//!   d). The breaker trips to Open when, with at least `minimum_calls` in
//!   the window, the failure rate reaches `failure_rate_threshold` or the
//!   slow-call rate reaches the `slow_call` rate; or, whatever the window
//!   holds, after `consecutive_failures` failures in a row.
//! - **Open**: every call is refused with `Rejected { retry_after }`, the
//!   time left. After `open_duration` the next `try_acquire` moves the
//!   breaker to HalfOpen. Each reopening from HalfOpen multiplies the
//!   duration by `backoff_multiplier`, up to `max_open_duration`; `jitter`
//!   spreads it. [`CircuitBreaker::trip_for`] opens it for a given time
//!   (an upstream's `Retry-After`).
//! - **HalfOpen**: `half_open_permits` probe calls are admitted in total;
//!   the rest are refused with `retry_after: None`. The first failed (or
//!   slow) probe reopens the breaker; that many successful probes close it
//!   and clear the window. A probe whose permit is dropped unrecorded, or
//!   recorded as [`Outcome::Ignore`], frees its slot for another probe.
//! - **ForcedOpen** ([`force_open`](CircuitBreaker::force_open)) refuses
//!   everything with `retry_after: None`; **Disabled**
//!   ([`disable`](CircuitBreaker::disable)) admits everything and records
//!   nothing; [`reset`](CircuitBreaker::reset) returns to Closed.
//! - An outcome recorded on a permit issued before the last state change
//!   updates the statistics only, never the state.
//! - Events ([`BreakerEvent`]) fire once per transition and once per
//!   rejection, to the `on_event` listeners.
//!
//! With the `metrics` feature, transitions and rejections are reported
//! through the `metrics` crate: `levee_breaker_state` (gauge: 0 Closed,
//! 1 Open, 2 HalfOpen, 3 ForcedOpen, 4 Disabled),
//! `levee_breaker_transitions_total{to}` and `levee_breaker_rejections_total`,
//! each labelled `breaker` with the breaker's name.
//!
//! The Closed path takes no lock: the state is one atomic word (state and
//! generation), the windows are atomics, transitions take a mutex that the
//! hot path never touches.
//!
//! # Many cores: striped windows
//!
//! A Closed-path success writes only its own thread's stripe of the
//! window (stripes as Java's `LongAdder` has them: twice the cores, at most
//! 64, each on its own cache lines, allocated when a thread first records),
//! so the breaker's cost does not grow with the cores that share it. The
//! stripes are summed when the rates are evaluated: on every failure and
//! slow call, on a success while its stripe holds fewer than
//! `minimum_calls` calls (only then can a success complete
//! `minimum_calls`; otherwise a success only lowers the rates), and on
//! [`CircuitBreaker::stats`]. What that means:
//!
//! - [`Window::Count(n)`](Window::Count) is the last `n` calls *of each
//!   stripe*: on one thread exactly the last `n` calls (the reference-model
//!   property test holds it to that); with several threads the rates are
//!   over up to `n` calls per stripe in use, `minimum_calls` counts them
//!   all.
//! - [`Window::Time(d)`](Window::Time) is every call of the last `d`, as
//!   before (ten buckets per stripe, summed). A success does not evaluate
//!   the rates once `minimum_calls` is met, so a rate that rises only
//!   because older successes left the window is acted on at the next
//!   failure or slow call.
//! - Concurrent trip bound: with `T` threads calling, the breaker admits at
//!   most `T - 1` calls beyond the point where one thread would have
//!   tripped it: every failure evaluates the summed window, so each other
//!   thread holds at most one permit when the trip lands
//!   (`under_many_threads_the_breaker_opens_within_its_concurrent_trip_bound`
//!   checks it with 8 threads, for both windows and the consecutive rule).
//! - HalfOpen permits and the consecutive-failure rule are exact: one
//!   atomic each, as before (a failing upstream writes them anyway).
#![cfg_attr(docsrs, feature(doc_cfg))]

mod breaker;
mod builder;
mod error;
mod event;
mod permit;
mod registry;
mod stripe;
mod window;

pub use breaker::{BreakerStats, CircuitBreaker};
pub use builder::CircuitBreakerBuilder;
pub use error::{BreakerConfigError, BreakerError, Rejected};
pub use event::{BreakerEvent, State};
pub use permit::{Outcome, OwnedPermit, Permit};
pub use registry::BreakerRegistry;
pub use window::Window;
