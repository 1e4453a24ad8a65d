//! [`ConcurrencyLimit`]: a bulkhead of at most N calls in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::LimitError;

/// At most `max_in_flight` calls at once, and at most `max_queue` callers
/// waiting (in arrival order) for a slot. Cheap to clone: clones share the
/// limit.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), levee_limit::LimitError> {
/// let bulkhead = levee_limit::ConcurrencyLimit::new(2, 0)?;
/// let a = bulkhead.acquire().await?;
/// let _b = bulkhead.acquire().await?;
/// assert!(bulkhead.acquire().await.is_err(), "full, and no queue");
/// drop(a);
/// assert!(bulkhead.try_acquire().is_ok());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ConcurrencyLimit {
    semaphore: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    max_in_flight: usize,
    max_queue: usize,
}

/// A slot in a [`ConcurrencyLimit`]; dropping it frees the slot.
#[derive(Debug)]
#[must_use = "the slot is freed when the permit is dropped: hold it for the whole call"]
pub struct ConcurrencyPermit {
    _permit: OwnedSemaphorePermit,
}

struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ConcurrencyLimit {
    /// A limit of `max_in_flight` (at least 1) with a queue of `max_queue`.
    pub fn new(max_in_flight: usize, max_queue: usize) -> Result<Self, LimitError> {
        if max_in_flight == 0 {
            return Err(LimitError::InvalidSetting {
                setting: "max_in_flight",
                reason: "0 would admit nothing; use at least 1".into(),
            });
        }
        Ok(ConcurrencyLimit {
            semaphore: Arc::new(Semaphore::new(max_in_flight)),
            waiting: Arc::new(AtomicUsize::new(0)),
            max_in_flight,
            max_queue,
        })
    }

    /// A slot now, or `QueueFull` if every slot is taken.
    pub fn try_acquire(&self) -> Result<ConcurrencyPermit, LimitError> {
        self.semaphore
            .clone()
            .try_acquire_owned()
            .map(|p| ConcurrencyPermit { _permit: p })
            .map_err(|_| self.full())
    }

    fn full(&self) -> LimitError {
        LimitError::QueueFull {
            max_in_flight: self.max_in_flight,
            max_queue: self.max_queue,
        }
    }

    /// A slot, waiting in line if the queue has room; `QueueFull` if not.
    /// Cancel-safe: a dropped wait gives up its place in the queue.
    pub async fn acquire(&self) -> Result<ConcurrencyPermit, LimitError> {
        if let Ok(p) = self.try_acquire() {
            return Ok(p);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(self.full());
        }
        let _waiting = Waiting(&self.waiting);
        let permit = self
            .semaphore
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| self.full())?;
        Ok(ConcurrencyPermit { _permit: permit })
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> usize {
        self.max_in_flight - self.semaphore.available_permits()
    }

    /// Callers waiting for a slot now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }
}
