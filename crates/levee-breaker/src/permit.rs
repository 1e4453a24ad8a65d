//! [`Permit`] and [`OwnedPermit`]: the right to make one call, and where its
//! outcome goes.

use std::sync::Arc;
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

/// Where a permit finds its breaker: borrowed for [`Permit`], shared for
/// [`OwnedPermit`] (so it can cross `tokio::spawn` or live in a future).
enum Holder<'a> {
    Borrowed(&'a Inner),
    Owned(Arc<Inner>),
}

impl Holder<'_> {
    #[inline]
    fn inner(&self) -> &Inner {
        match self {
            Holder::Borrowed(i) => i,
            Holder::Owned(i) => i,
        }
    }
}

/// Permission to make one call. Record its outcome with
/// [`success`](Permit::success), [`failure`](Permit::failure) or
/// [`ignore`](Permit::ignore); a permit dropped without one records nothing
/// and, in HalfOpen, frees its probe slot.
///
/// A `Permit<'a>` from [`try_acquire`](crate::CircuitBreaker::try_acquire)
/// borrows its breaker; an [`OwnedPermit`] from
/// [`try_acquire_owned`](crate::CircuitBreaker::try_acquire_owned) holds a
/// reference-counted handle instead, with the same behaviour.
#[must_use = "record the call's outcome on the permit"]
pub struct Permit<'a> {
    holder: Holder<'a>,
    word: u64,
    half: bool,
    start: Option<Instant>,
    done: bool,
}

/// A [`Permit`] that owns a handle on its breaker: `'static`, `Send`, so it
/// can be moved into a spawned task or a tower future.
///
/// ```
/// use levee_breaker::CircuitBreaker;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let breaker = CircuitBreaker::builder().build()?;
/// let permit = breaker.try_acquire_owned()?;
/// tokio::spawn(async move {
///     // ... make the call ...
///     permit.success();
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub type OwnedPermit = Permit<'static>;

impl std::fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("half_open", &self.half)
            .finish()
    }
}

impl<'a> Permit<'a> {
    pub(crate) fn new(inner: &'a Inner, word: u64, half: bool, start: Option<Instant>) -> Self {
        Self::with(Holder::Borrowed(inner), word, half, start)
    }

    fn with(holder: Holder<'a>, word: u64, half: bool, start: Option<Instant>) -> Self {
        Permit {
            holder,
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
        let inner = self.holder.inner();
        let elapsed: Option<Duration> =
            self.start.map(|s| inner.now().saturating_duration_since(s));
        inner.record(self.word, self.half, outcome, elapsed);
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

impl OwnedPermit {
    pub(crate) fn owned(inner: Arc<Inner>, word: u64, half: bool, start: Option<Instant>) -> Self {
        Self::with(Holder::Owned(inner), word, half, start)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.done && self.half {
            self.holder.inner().release_probe(self.word);
        }
    }
}
