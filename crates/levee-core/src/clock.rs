//! Time sources: every levee component reads time through [`Clock`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::sleep::{ManualSleep, ManualTime, Sleep, Sleepers};

/// A source of time: monotonic for windows and timeouts, wall-clock for
/// envelopes shared with other processes through Redis.
///
/// Components hold it as `Arc<dyn Clock>` ([`SharedClock`]); the default is
/// [`SystemClock`].
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The monotonic time: windows, timeouts, ages.
    fn now(&self) -> Instant;
    /// The wall-clock time: timestamps that other processes read.
    fn system_now(&self) -> SystemTime;
    /// A future that completes once `d` of this clock's time has passed:
    /// every wait a pipeline makes (timeouts, retry backoff, queues) goes
    /// through it. Default: `tokio::time::sleep` (needs a tokio runtime
    /// with time enabled). [`ManualClock`] completes it when
    /// [`advance`](ManualClock::advance) reaches its deadline.
    fn sleep(&self, d: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(d))
    }
}

/// A clock shared between components.
pub type SharedClock = Arc<dyn Clock>;

/// The real clocks of the operating system.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl SystemClock {
    /// A [`SharedClock`] reading the operating system's clocks.
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> Instant {
        Instant::now()
    }
    #[inline]
    fn system_now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to; clones share one time.
///
/// [`advance`](ManualClock::advance) moves both readings;
/// [`set_system_time`](ManualClock::set_system_time) moves only the wall clock
/// (as an NTP step would).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use levee_core::{Clock, ManualClock};
///
/// let clock = ManualClock::starting_at(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
/// let other = clock.clone();
/// let t0 = clock.now();
/// other.advance(Duration::from_secs(5));
/// assert_eq!(clock.now() - t0, Duration::from_secs(5));
/// assert_eq!(clock.system_now(), UNIX_EPOCH + Duration::from_secs(1_700_000_005));
/// ```
#[derive(Clone)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

struct ManualInner {
    base: Instant,
    /// Nanoseconds advanced since `base`.
    elapsed: AtomicU64,
    /// Wall time in nanoseconds since the epoch, minus `elapsed`: so that
    /// `system_now = epoch + wall_base + elapsed`.
    wall_base: AtomicI64,
    sleepers: std::sync::Mutex<Sleepers>,
}

impl ManualTime for Arc<ManualInner> {
    fn elapsed(&self) -> u64 {
        self.elapsed.load(Ordering::SeqCst)
    }
    fn sleepers(&self) -> &std::sync::Mutex<Sleepers> {
        &self.sleepers
    }
}

impl ManualClock {
    /// A clock starting at the current real time, standing still.
    pub fn new() -> Self {
        Self::starting_at(SystemTime::now())
    }

    /// A clock whose wall reading starts at `wall`.
    pub fn starting_at(wall: SystemTime) -> Self {
        let clock = ManualClock {
            inner: Arc::new(ManualInner {
                base: Instant::now(),
                elapsed: AtomicU64::new(0),
                wall_base: AtomicI64::new(0),
                sleepers: std::sync::Mutex::new(Sleepers::default()),
            }),
        };
        clock.set_system_time(wall);
        clock
    }

    /// This clock as a [`SharedClock`]; it still shares time with `self`.
    pub fn shared(&self) -> SharedClock {
        Arc::new(self.clone())
    }

    /// Moves both the monotonic and the wall reading forward by `d`, and
    /// wakes every [`sleep`](Clock::sleep) whose time has come.
    pub fn advance(&self, d: Duration) {
        let nanos = crate::duration::nanos(d);
        let now = self
            .inner
            .elapsed
            .fetch_add(nanos, Ordering::SeqCst)
            .saturating_add(nanos);
        Sleepers::wake_until(&self.inner.sleepers, now);
    }

    /// Advances to the earliest deadline of the sleeps waiting on this
    /// clock, waking them; returns how far it moved, or `None` (not moving)
    /// when nothing sleeps. A simulation loop calls it whenever its tasks
    /// are all waiting on time.
    pub fn advance_to_next_sleeper(&self) -> Option<Duration> {
        let next = self.inner.sleepers.lock().ok()?.earliest()?;
        let now = self.inner.elapsed.load(Ordering::SeqCst);
        let d = Duration::from_nanos(next.saturating_sub(now));
        self.advance(d);
        Some(d)
    }

    /// Sleeps waiting on this clock now (for a simulation: advance while
    /// something waits).
    pub fn sleepers(&self) -> usize {
        self.inner.sleepers.lock().map_or(0, |s| s.waiting_len())
    }

    /// Sets the wall reading to `t`; the monotonic reading does not move.
    pub fn set_system_time(&self, t: SystemTime) {
        let wall = nanos_since_epoch(t);
        let elapsed = self.inner.elapsed.load(Ordering::SeqCst) as i64;
        self.inner
            .wall_base
            .store(wall.saturating_sub(elapsed), Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field(
                "elapsed",
                &Duration::from_nanos(self.inner.elapsed.load(Ordering::SeqCst)),
            )
            .field("system_now", &self.system_now())
            .finish()
    }
}

impl Clock for ManualClock {
    fn sleep(&self, d: Duration) -> Sleep {
        let deadline = self
            .inner
            .elapsed
            .load(Ordering::SeqCst)
            .saturating_add(crate::duration::nanos(d));
        Box::pin(ManualSleep {
            time: self.inner.clone(),
            deadline,
            id: None,
        })
    }

    fn now(&self) -> Instant {
        self.inner.base + Duration::from_nanos(self.inner.elapsed.load(Ordering::SeqCst))
    }

    fn system_now(&self) -> SystemTime {
        // The two loads are not one atomic snapshot; a concurrent advance can
        // be seen by one and not the other, which tests never rely on.
        let elapsed = self.inner.elapsed.load(Ordering::SeqCst) as i64;
        let nanos = self
            .inner
            .wall_base
            .load(Ordering::SeqCst)
            .saturating_add(elapsed);
        from_nanos_since_epoch(nanos)
    }
}

/// A clock reading `tokio::time::Instant`, so that tests which
/// `tokio::time::pause()` see the same time as the component.
///
/// The wall reading is the real wall time when the clock was made, moved on
/// by tokio's (possibly paused and advanced) time since then.
#[derive(Debug, Clone)]
pub struct TokioClock {
    start: tokio::time::Instant,
    wall_start: SystemTime,
}

impl TokioClock {
    /// A clock starting now. Needs no runtime to be made, but readings follow
    /// the paused time of the runtime that reads them.
    pub fn new() -> Self {
        TokioClock {
            start: tokio::time::Instant::now(),
            wall_start: SystemTime::now(),
        }
    }

    /// This clock as a [`SharedClock`].
    pub fn shared(&self) -> SharedClock {
        Arc::new(self.clone())
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
    fn system_now(&self) -> SystemTime {
        self.wall_start + tokio::time::Instant::now().saturating_duration_since(self.start)
    }
}

fn nanos_since_epoch(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

fn from_nanos_since_epoch(n: i64) -> SystemTime {
    if n >= 0 {
        UNIX_EPOCH + Duration::from_nanos(n as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(n.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_sleep_ends_when_advance_reaches_its_deadline() {
        let c = ManualClock::new();
        let sleeper = tokio::spawn({
            let c = c.clone();
            async move { c.sleep(Duration::from_secs(3600)).await }
        });
        while c.sleepers() == 0 {
            tokio::task::yield_now().await;
        }
        c.advance(Duration::from_secs(3599));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        c.advance(Duration::from_secs(1));
        sleeper.await.unwrap();
        assert_eq!(c.sleepers(), 0);
    }

    #[tokio::test]
    async fn a_timeout_that_did_not_fire_leaves_no_sleeper() {
        let c = ManualClock::new();
        let done = crate::sleep::timeout(&c, Duration::from_secs(5), async {
            tokio::task::yield_now().await;
            1
        })
        .await;
        assert_eq!(done, Ok(1));
        assert_eq!(c.sleepers(), 0);
    }

    #[test]
    fn manual_clock_clones_share_time() {
        let a = ManualClock::new();
        let b = a.clone();
        let t0 = a.now();
        let w0 = a.system_now();
        b.advance(Duration::from_millis(1500));
        assert_eq!(a.now() - t0, Duration::from_millis(1500));
        assert_eq!(
            a.system_now().duration_since(w0).unwrap(),
            Duration::from_millis(1500)
        );
    }

    #[test]
    fn set_system_time_moves_only_wall_clock() {
        let c = ManualClock::new();
        let t0 = c.now();
        let target = UNIX_EPOCH + Duration::from_secs(42);
        c.set_system_time(target);
        assert_eq!(c.now(), t0);
        assert_eq!(c.system_now(), target);
        c.advance(Duration::from_secs(1));
        assert_eq!(c.system_now(), target + Duration::from_secs(1));
        assert_eq!(c.now() - t0, Duration::from_secs(1));
    }

    #[test]
    fn wall_clock_before_epoch_round_trips() {
        let before = UNIX_EPOCH - Duration::from_secs(10);
        let c = ManualClock::starting_at(before);
        assert_eq!(c.system_now(), before);
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let c = TokioClock::new();
        let t0 = c.now();
        let w0 = c.system_now();
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(c.now() - t0, Duration::from_secs(30));
        assert_eq!(
            c.system_now().duration_since(w0).unwrap(),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn system_clock_is_monotonic() {
        let c = SystemClock;
        let a = c.now();
        let b = c.now();
        assert!(b >= a);
    }
}
