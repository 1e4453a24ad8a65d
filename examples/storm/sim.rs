//! The simulation's time and bookkeeping: one `ManualClock` for everything,
//! a driver that advances it only when the system is quiescent, and the
//! counters each request and upstream call adds to.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use levee::core::{Clock, ManualClock};
use levee_testkit::MockIdp;
use std::sync::Mutex;

use super::open::OpenRequests;
use super::trace::HOUR;

/// How long the driver waits for a request that works in real time
/// before it advances the clock anyway.
const STUCK: Duration = Duration::from_millis(500);
/// How long a call crossing loopback may take before the driver gives up
/// on it and advances the clock anyway (never in a sound run).
const CROSSING_LIMIT: Duration = Duration::from_secs(30);
/// How often the driver looks again when nothing wakes it.
const SLICE: Duration = Duration::from_millis(5);

/// How a request ended, for the counters.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// A value; `stale_tier` set when served past its fresh TTL, `fetched_ms`
    /// when the upstream produced it (simulated ms).
    Served {
        stale_tier: Option<Arc<str>>,
        fetched_ms: u64,
    },
    /// The user saw an error.
    Failed,
}

/// The state one strategy's run shares between its tasks.
#[derive(Debug)]
pub(crate) struct Sim {
    pub(crate) clock: ManualClock,
    start: Instant,
    in_flight: AtomicUsize,
    progress: Arc<tokio::sync::Notify>,
    open: Mutex<OpenRequests>,
    scheduled: AtomicUsize,
    woke: AtomicUsize,
    forced: AtomicU64,
    calls: AtomicU64,
    rejected: AtomicU64,
    per_minute: Vec<AtomicU64>,
    requests: Mutex<Requests>,
}

/// What the requests came to.
#[derive(Debug, Default)]
pub(crate) struct Requests {
    pub(crate) served: u64,
    pub(crate) errors: u64,
    pub(crate) stale_by_tier: BTreeMap<String, u64>,
    pub(crate) max_age_ms: u64,
    pub(crate) latencies_ms: Vec<u64>,
}

/// An upstream call in flight, until dropped (a timed-out attempt drops it).
pub(crate) struct CallGuard<'a>(&'a Sim, u32);

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        lock(&self.0.open).call_ended(self.1);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.progress.notify_one();
    }
}

impl Sim {
    pub(crate) fn new() -> Arc<Sim> {
        let clock = ManualClock::new();
        Arc::new(Sim {
            start: clock.now(),
            clock,
            in_flight: AtomicUsize::new(0),
            progress: Arc::new(tokio::sync::Notify::new()),
            open: Mutex::default(),
            scheduled: AtomicUsize::new(0),
            woke: AtomicUsize::new(0),
            forced: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            per_minute: (0..=HOUR.as_secs() / 60)
                .map(|_| AtomicU64::new(0))
                .collect(),
            requests: Mutex::new(Requests::default()),
        })
    }

    /// Simulated milliseconds since the run began.
    pub(crate) fn now_ms(&self) -> u64 {
        (self.clock.now() - self.start).as_millis() as u64
    }

    /// Sleeps on the simulated clock until `at` after the run began, then
    /// opens `requests` requests of `user`: one event of the schedule given
    /// to [`drive`](Self::drive).
    pub(crate) async fn wake_at(&self, at: Duration, user: u32, requests: usize) {
        let now = self.clock.now() - self.start;
        if at > now {
            self.scheduled.fetch_add(1, Ordering::SeqCst);
            self.clock.sleep(at - now).await;
            self.scheduled.fetch_sub(1, Ordering::SeqCst);
        }
        // Opened before the wake is counted: the driver never sees every
        // event awake with these requests missing.
        lock(&self.open).open(user, requests);
        self.woke.fetch_add(1, Ordering::SeqCst);
        self.progress.notify_one();
    }

    /// Has `idp` wake the driver when a call starts or ends waiting out its
    /// latency.
    pub(crate) fn watch(&self, idp: &MockIdp) {
        idp.notify_delayed(self.progress.clone());
    }

    /// Counts an upstream call; keep the guard until its answer is in.
    pub(crate) fn call_started(&self, user: u32) -> CallGuard<'_> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        lock(&self.open).call_started(user);
        self.progress.notify_one();
        self.calls.fetch_add(1, Ordering::SeqCst);
        let minute = (self.now_ms() / 60_000) as usize;
        if let Some(m) = self.per_minute.get(minute) {
            m.fetch_add(1, Ordering::Relaxed);
        }
        CallGuard(self, user)
    }

    /// Counts an upstream 429.
    pub(crate) fn rate_limited(&self) {
        self.rejected.fetch_add(1, Ordering::SeqCst);
    }

    /// A request opened by [`wake_at`](Self::wake_at) starts; returns the
    /// simulated ms it started at. Until every request has started the
    /// clock stays put.
    pub(crate) fn request_started(&self) -> u64 {
        lock(&self.open).start();
        self.now_ms()
    }

    /// A request of `user` opened by [`wake_at`](Self::wake_at) that began
    /// at `began` (simulated ms) ended with `outcome`.
    pub(crate) fn request_ended(&self, user: u32, began: u64, outcome: Outcome) {
        let now = self.now_ms();
        {
            let mut r = lock(&self.requests);
            r.latencies_ms.push(now - began);
            match outcome {
                Outcome::Served {
                    stale_tier,
                    fetched_ms,
                } => {
                    r.served += 1;
                    r.max_age_ms = r.max_age_ms.max(now.saturating_sub(fetched_ms));
                    if let Some(tier) = stale_tier {
                        *r.stale_by_tier.entry(tier.to_string()).or_default() += 1;
                    }
                }
                Outcome::Failed => r.errors += 1,
            }
        }
        lock(&self.open).close(user);
        self.progress.notify_one();
    }

    /// Upstream calls and 429s so far.
    pub(crate) fn upstream(&self) -> (u64, u64) {
        (
            self.calls.load(Ordering::SeqCst),
            self.rejected.load(Ordering::SeqCst),
        )
    }

    /// Upstream calls in each simulated minute.
    pub(crate) fn calls_per_minute(&self) -> Vec<u64> {
        self.per_minute
            .iter()
            .map(|m| m.load(Ordering::Relaxed))
            .collect()
    }

    /// Takes the request counters.
    pub(crate) fn take_requests(&self) -> Requests {
        std::mem::take(&mut *lock(&self.requests))
    }

    /// Runs the clock until every task in `tasks` has ended. `schedule`
    /// holds the time of every [`wake_at`](Self::wake_at) event, sorted.
    /// The clock moves to the next sleeper only when the system is
    /// quiescent (see [`settle`](Self::settle)), so no timeout on this clock
    /// fires while a real TCP exchange is under way.
    pub(crate) async fn drive(
        &self,
        idp: &MockIdp,
        schedule: &[Duration],
        mut tasks: tokio::task::JoinSet<()>,
    ) {
        loop {
            while let Some(done) = tasks.try_join_next() {
                done.expect("a simulated task panicked");
            }
            if tasks.is_empty() {
                return;
            }
            let now = self.clock.now() - self.start;
            let due = schedule.partition_point(|at| *at <= now);
            self.settle(idp, due).await;
            if self.clock.advance_to_next_sleeper().is_none() {
                // Nothing sleeps on the clock: the last tasks are ending.
                tokio::task::yield_now().await;
            }
        }
    }

    /// Returns once the system is quiescent: the `due` events have woken,
    /// no upstream call is crossing loopback (each waits out the IdP's
    /// latency), and every open request waits on the clock: on a call of
    /// its user, or (a retry's backoff) on another sleeper, with nothing
    /// moving for a moment of real time. A request working in real time
    /// (reading L2, polling it for another replica's load) is waited for; if
    /// nothing moves for [`STUCK`] the clock is advanced anyway and the run
    /// says so ([`forced_advances`](Self::forced_advances)). A call crossing
    /// loopback is never cut short that way: advancing the clock under it
    /// could fire its attempt timeout and count a failure the IdP never
    /// caused.
    ///
    /// The state is checked again every [`SLICE`]: a request that moves
    /// from real-time work to a sleep on the clock wakes no one.
    async fn settle(&self, idp: &MockIdp, due: usize) {
        let mut since = Instant::now();
        loop {
            // Registered before the check: a change after it is not lost.
            let moved = self.progress.notified();
            let woke = self.woke.load(Ordering::SeqCst) >= due;
            let unbacked = lock(&self.open).unbacked();
            let (in_flight, delayed) = (self.in_flight.load(Ordering::SeqCst), idp.delayed());
            let crossing = in_flight != delayed;
            if woke && !crossing {
                if unbacked == 0 {
                    return;
                }
                let parked = self
                    .clock
                    .sleepers()
                    .saturating_sub(self.scheduled.load(Ordering::SeqCst));
                if parked > delayed {
                    if self.still(moved).await {
                        return;
                    }
                    since = Instant::now();
                    continue;
                }
            }
            if tokio::time::timeout(SLICE, moved).await.is_ok() {
                since = Instant::now();
                continue;
            }
            let limit = if crossing { CROSSING_LIMIT } else { STUCK };
            if since.elapsed() >= limit {
                self.forced.fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
    }

    /// Whether nothing moves for a moment of real time.
    async fn still(&self, moved: tokio::sync::futures::Notified<'_>) -> bool {
        tokio::time::timeout(Duration::from_millis(2), moved)
            .await
            .is_err()
    }

    /// Requests still open (0 once a run has ended).
    pub(crate) fn open_requests(&self) -> usize {
        lock(&self.open).len()
    }

    /// Times the clock was advanced while a request seemed to work in real
    /// time (0 in a sound run).
    pub(crate) fn forced_advances(&self) -> u64 {
        self.forced.load(Ordering::SeqCst)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
