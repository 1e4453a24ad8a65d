//! Waiting on a [`Clock`]: [`Sleep`], the sleepers of a
//! [`ManualClock`](crate::ManualClock), and [`timeout`].
//!
//! Every wait a levee pipeline makes (timeouts, retry backoff, `Retry-After`,
//! queues) goes through its clock, so a test or a simulation driven by a
//! `ManualClock` can run an hour of pipeline time in a second while talking
//! to a real Redis (tokio's paused time cannot be used with real TCP).

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::Clock;

/// The future a [`Clock::sleep`] returns.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A wait on `clock` took longer than allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no answer within {0:?}")]
pub struct Elapsed(pub Duration);

/// Runs `f`, giving up after `d` of `clock`'s time. The time starts now,
/// when `timeout` is called, not when the future is first polled.
///
/// ```
/// use std::time::Duration;
/// use levee_core::{ManualClock, SystemClock, sleep::timeout};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// assert_eq!(timeout(&SystemClock, Duration::from_secs(1), async { 7 }).await, Ok(7));
/// let manual = ManualClock::new();
/// let waiting = timeout(&manual, Duration::from_secs(30), std::future::pending::<()>());
/// manual.advance(Duration::from_secs(30)); // its time is up
/// assert!(waiting.await.is_err());
/// # }
/// ```
pub fn timeout<F: Future>(clock: &dyn Clock, d: Duration, f: F) -> Timeout<'_, F> {
    timeout_from(clock, clock.now(), d, f)
}

/// Like [`timeout`], counting `d` from `start` (a reading of `clock` the
/// caller already has: one clock read fewer).
pub fn timeout_from<F: Future>(
    clock: &dyn Clock,
    start: std::time::Instant,
    d: Duration,
    f: F,
) -> Timeout<'_, F> {
    Timeout {
        f,
        sleep: None,
        clock,
        start,
        d,
    }
}

pin_project_lite::pin_project! {
    /// The future of [`timeout`]: `f`'s output, or [`Elapsed`].
    #[must_use = "futures do nothing unless polled"]
    pub struct Timeout<'c, F> {
        #[pin]
        f: F,
        // Made only if `f` is not ready at once: a call that answers on its
        // first poll pays for no timer.
        sleep: Option<Sleep>,
        clock: &'c dyn Clock,
        start: std::time::Instant,
        d: Duration,
    }
}

impl<F: Future> Future for Timeout<'_, F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.f.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        let (clock, start, d) = (*this.clock, *this.start, *this.d);
        let sleep = this.sleep.get_or_insert_with(|| {
            let spent = clock.now().saturating_duration_since(start);
            clock.sleep(d.saturating_sub(spent))
        });
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed(d))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The sleepers of one manual clock: woken by `advance`.
#[derive(Default)]
pub(crate) struct Sleepers {
    next_id: u64,
    /// (id, deadline in the clock's elapsed nanoseconds, waker).
    waiting: Vec<(u64, u64, Waker)>,
}

impl Sleepers {
    pub(crate) fn waiting_len(&self) -> usize {
        self.waiting.len()
    }

    /// The earliest deadline waited for.
    pub(crate) fn earliest(&self) -> Option<u64> {
        self.waiting.iter().map(|e| e.1).min()
    }

    /// Wakes every sleeper whose deadline is at or before `now`.
    pub(crate) fn wake_until(list: &Mutex<Sleepers>, now: u64) {
        let due: Vec<Waker> = {
            let mut s = lock(list);
            let mut due = Vec::new();
            s.waiting.retain(|(_, deadline, w)| {
                if *deadline <= now {
                    due.push(w.clone());
                    false
                } else {
                    true
                }
            });
            due
        };
        for w in due {
            w.wake();
        }
    }
}

fn lock(m: &Mutex<Sleepers>) -> std::sync::MutexGuard<'_, Sleepers> {
    // A panic while holding this lock leaves a consistent list: recover it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A sleep on a manual clock: ready once the clock's elapsed time reaches
/// `deadline`.
pub(crate) struct ManualSleep<T: ManualTime> {
    pub(crate) time: T,
    pub(crate) deadline: u64,
    pub(crate) id: Option<u64>,
}

/// What a [`ManualSleep`] needs of its clock.
pub(crate) trait ManualTime: Send + Unpin + 'static {
    fn elapsed(&self) -> u64;
    fn sleepers(&self) -> &Mutex<Sleepers>;
}

impl<T: ManualTime> Future for ManualSleep<T> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.time.elapsed() >= self.deadline {
            return Poll::Ready(());
        }
        let this = &mut *self;
        let mut s = lock(this.time.sleepers());
        // Checked again under the lock: an `advance` in between has either
        // been seen here or will see this sleeper's waker.
        if this.time.elapsed() >= this.deadline {
            return Poll::Ready(());
        }
        let waker = cx.waker().clone();
        match this.id {
            Some(id) => match s.waiting.iter_mut().find(|e| e.0 == id) {
                Some(entry) => entry.2 = waker,
                None => s.waiting.push((id, this.deadline, waker)),
            },
            None => {
                let id = s.next_id;
                s.next_id += 1;
                s.waiting.push((id, this.deadline, waker));
                this.id = Some(id);
            }
        }
        Poll::Pending
    }
}

impl<T: ManualTime> Drop for ManualSleep<T> {
    fn drop(&mut self) {
        // A sleep given up (a timeout that did not fire) leaves no entry.
        if let Some(id) = self.id {
            lock(self.time.sleepers()).waiting.retain(|e| e.0 != id);
        }
    }
}
