//! A process-wide coarse clock kept in one atomic: while at least one
//! [`MemoryCache`](super::MemoryCache) on the default time source lives, one
//! thread stores the coarse monotonic time into it every [`TICK`], so a get
//! that checks a TTL reads the time with one load instead of a clock call.
//!
//! The thread starts with the first such cache and stops when the last one
//! is dropped. Where it cannot be started, or between a stop and the next
//! start, the atomic holds 0 and readers read the clock themselves.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

/// How often the ticker stores the time: about the coarse clock's own
/// resolution (1 to 4 ms), so readings lag the clock by at most a tick more.
pub(crate) const TICK: Duration = Duration::from_millis(2);

/// The latest reading, or 0 while no ticker runs.
static NOW: AtomicU64 = AtomicU64::new(0);

/// Live tickets, and the stop flag of the running thread.
static STATE: Mutex<(usize, Option<Arc<AtomicBool>>)> = Mutex::new((0, None));

/// The ticker's latest reading of `read`'s clock, if a ticker runs.
#[inline]
pub(crate) fn recent() -> Option<u64> {
    match NOW.load(Ordering::Relaxed) {
        0 => None,
        t => Some(t),
    }
}

/// Keeps the ticker running while held.
#[derive(Debug)]
pub(crate) struct Ticket(());

impl Ticket {
    /// A ticket, starting the ticker (which stores `read()`) if none runs;
    /// `None` if its thread could not be started.
    pub(crate) fn acquire(read: fn() -> u64) -> Option<Ticket> {
        let mut state = STATE.lock();
        if state.0 == 0 {
            let stop = Arc::new(AtomicBool::new(false));
            let first = read().max(1);
            NOW.store(first, Ordering::Relaxed);
            let flag = stop.clone();
            let spawned = std::thread::Builder::new()
                .name("levee-cache-clock".into())
                .spawn(move || run(read, first, &flag));
            if spawned.is_err() {
                NOW.store(0, Ordering::Relaxed);
                return None;
            }
            state.1 = Some(stop);
        }
        state.0 += 1;
        Some(Ticket(()))
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = STATE.lock();
        state.0 -= 1;
        if state.0 == 0 {
            if let Some(stop) = state.1.take() {
                stop.store(true, Ordering::Relaxed);
            }
            // The stopped thread checks its flag under this lock before any
            // store, so no stale reading stays.
            NOW.store(0, Ordering::Relaxed);
        }
    }
}

fn run(read: fn() -> u64, mut last: u64, stop: &AtomicBool) {
    loop {
        std::thread::sleep(TICK);
        let now = read().max(last).max(1);
        // Under the state's lock, which a stop and a new start take too: a
        // stopped ticker never writes again. (It used to compare-and-swap
        // over its own last value instead; a new ticker started within one
        // coarse tick begins at that same value, so the old one's store
        // went through, the new one's next failed and it stopped: nothing
        // ticked while caches held tickets, and their entries never
        // expired.)
        let state = STATE.lock();
        if stop.load(Ordering::Relaxed) {
            return;
        }
        NOW.store(now, Ordering::Relaxed);
        drop(state);
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The caches' own reading: the ticker is process-wide, and caches
    /// built by other tests meanwhile read whatever it stores (a ticker of
    /// the wall clock's nanoseconds made their entries' times a scale
    /// apart from the clock they fall back to, so that an entry outlived
    /// its TTL in `on_the_default_clock_an_entry_expires_after_its_ttl`,
    /// and a reading could go back when a coarse ticker took over).
    use super::super::time::coarse_nanos as clock;

    /// One test for the process-wide state: the tests of this crate build
    /// caches on other threads, so counts are compared, not absolute.
    #[test]
    fn the_ticker_runs_while_a_ticket_is_held_and_leaves_no_reading_after() {
        let ticket = Ticket::acquire(clock).expect("a thread starts");
        let first = recent().expect("a reading at once");
        // The ticker thread moves the reading on: within 10 ticks on an idle
        // machine; up to 2 s allowed for a busy one (a fixed 20 ms wait
        // assumed the thread was scheduled in time; the test failed once in
        // about 20 runs here).
        let mut later = first;
        for _ in 0..1000 {
            std::thread::sleep(TICK);
            later = recent().expect("still running");
            if later > first {
                break;
            }
        }
        assert!(later > first, "the ticker moved the reading on");
        let second = Ticket::acquire(clock).expect("a second ticket");
        drop(ticket);
        assert!(recent().is_some(), "one ticket still holds it");
        drop(second);
        // Other tests may hold tickets of their own (caches built on other
        // threads); without any, the reading is gone and readers use the
        // clock. The state's lock keeps new tickets out meanwhile.
        let state = STATE.lock();
        if state.0 == 0 {
            assert_eq!(recent(), None);
            std::thread::sleep(TICK * 5);
            assert_eq!(recent(), None, "a stopped ticker wrote nothing after");
        }
        drop(state);
    }
}
