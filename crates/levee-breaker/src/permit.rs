//! [`Permit`]: the right to make one call, and where its outcome goes.

use std::time::{Duration, Instant};

use crate::breaker::Inner;

/// How a call's result counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Counts as a success.
    Success,
    /// Counts as a failure.
    Failure,
    /// Counts for nothing (e.g. a 404, or a cancelled call).
    Ignore,
}

/// Permission to make one call. Record its outcome with
/// [`success`](Permit::success), [`failure`](Permit::failure) or
/// [`ignore`](Permit::ignore); a permit dropped without one records nothing
/// and, in HalfOpen, frees its probe slot.
#[must_use = "record the call's outcome on the permit"]
pub struct Permit<'a> {
    inner: &'a Inner,
    word: u64,
    half: bool,
    start: Option<Instant>,
    done: bool,
}

impl std::fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("half_open", &self.half)
            .finish()
    }
}

impl<'a> Permit<'a> {
    pub(crate) fn new(inner: &'a Inner, word: u64, half: bool, start: Option<Instant>) -> Self {
        Permit {
            inner,
            word,
            half,
            start,
            done: false,
        }
    }

    /// Records `outcome`.
    #[inline]
    pub fn record(mut self, outcome: Outcome) {
        self.done = true;
        let elapsed: Option<Duration> = self
            .start
            .map(|s| self.inner.now().saturating_duration_since(s));
        self.inner.record(self.word, self.half, outcome, elapsed);
    }

    /// The call succeeded.
    #[inline]
    pub fn success(self) {
        self.record(Outcome::Success)
    }

    /// The call failed.
    #[inline]
    pub fn failure(self) {
        self.record(Outcome::Failure)
    }

    /// The call counts for nothing.
    #[inline]
    pub fn ignore(self) {
        self.record(Outcome::Ignore)
    }

    /// Whether this permit is a HalfOpen probe.
    pub fn is_probe(&self) -> bool {
        self.half
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.done && self.half {
            self.inner.release_probe(self.word);
        }
    }
}
