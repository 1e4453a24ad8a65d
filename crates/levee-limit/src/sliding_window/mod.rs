//! [`SlidingWindow`]: a keyed, local sliding-window rate limiter.

mod state;

use std::collections::HashMap;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_utils::CachePadded;
use dashmap::DashMap;
use levee_core::SharedClock;
use parking_lot::{Mutex, RwLock};

pub use state::WindowMode;
use state::{Admitted, KeyState, PackedCounter, Rule, WindowAt};

use crate::{Decision, LimitError, Quota, RateLimiter};

type Hasher = foldhash::fast::RandomState;

/// Shards of the counter-mode key map (dashmap's default is four per
/// core): a shard is write-locked while a first sight grows its table,
/// and with more, smaller shards a growth stalls fewer concurrent checks
/// for less time.
const KEY_SHARDS: usize = 64;

/// Below this many keys, growth alone never triggers a sweep.
const MIN_SWEEP_KEYS: u64 = 1024;

/// A counter-mode key whose limit fits the packed word: two words, so an
/// entry with a `u64` key is 24 bytes and a table of many keys stays small
/// enough for the CPU's caches (growing it on first sights moves less).
struct Slot {
    packed: PackedCounter,
    /// The key's first check in the latest window it was checked in.
    last_seen: AtomicU64,
}

impl Slot {
    /// The packed counter's admission; the key is noted as seen at its
    /// first check in a window (see [`PackedCounter::admit`]): a write once
    /// a window, not on every check. Eviction stays safe: a key evicted
    /// once `now - last_seen >= idle` (at least two windows) was last
    /// checked two windows ago or earlier, so its counts no longer weigh
    /// on any decision; a key checked in every window is never evicted.
    /// `turns`: whether the key can have sat out a whole turn of the
    /// packed index unswept (then its `last_seen` is read on every check).
    #[inline]
    fn admit(&self, rule: Rule, at: WindowAt, now: u64, n: u32, turns: bool) -> Admitted {
        if turns {
            self.packed.admit::<true>(rule, at, now, n, &self.last_seen)
        } else {
            self.packed
                .admit::<false>(rule, at, now, n, &self.last_seen)
        }
    }
}

/// Whether a key can go unswept for a whole turn of the packed window
/// index (2^16 of its windows, at least `shortest` ns each) under an idle
/// timeout of `idle` ns: the periodic sweep runs every `idle` and drops
/// keys idle for `idle`, so a key goes unswept for under `2 * idle` (plus
/// the time until the next check starts the sweep: in that check the sweep
/// comes first). Half a turn of margin. (One case is left: after a pause
/// of a whole turn with no check at all, a check racing the sweep that the
/// first check after the pause runs, of a key idle for a whole number of
/// turns to within a window.)
fn index_can_turn(idle: u64, shortest: u64) -> bool {
    idle / shortest.max(1) >= 1 << 14
}

/// A key under the exact log, or a counter whose limit does not fit the
/// packed word: kept in a map of its own, so that counter-mode entries do
/// not carry a lock they never take.
struct LockedSlot {
    state: Mutex<KeyState>,
    last_seen: AtomicU64,
}

/// What the idle sweep reads of a held key.
trait Held {
    fn last_seen(&self) -> &AtomicU64;
}

impl Held for Slot {
    fn last_seen(&self) -> &AtomicU64 {
        &self.last_seen
    }
}

impl Held for LockedSlot {
    fn last_seen(&self) -> &AtomicU64 {
        &self.last_seen
    }
}

/// Notes a use at `now`. Skipped while the last note is recent (within 1/64
/// of the idle timeout), so that threads sharing a hot key do not all write
/// its cache line.
#[inline]
fn note_seen(last_seen: &AtomicU64, now: u64, idle: u64) {
    if now.saturating_sub(last_seen.load(Ordering::Relaxed)) > idle / 64 {
        last_seen.store(now, Ordering::Relaxed);
    }
}

struct Inner<K> {
    mode: WindowMode,
    time: crate::time::LimiterTime,
    default_quota: RwLock<Quota>,
    /// The default quota's limit and window, readable without a lock.
    default_limit: std::sync::atomic::AtomicU32,
    default_window: AtomicU64,
    /// The default window's index at a recent check (see
    /// [`WindowAt::with_hint`]): saves the check a division.
    window_hint: AtomicU64,
    /// The idle timeout in ns, recomputed when quotas change.
    idle_nanos: AtomicU64,
    /// Whether a key can sit out a whole turn of its packed window index
    /// (2^16 windows) unswept; see [`index_can_turn`]. Recomputed with
    /// `idle_nanos`.
    index_can_turn: AtomicBool,
    classes: RwLock<HashMap<String, Quota>>,
    /// Counter-mode keys under limits that fit the packed word.
    keys: DashMap<K, Slot, Hasher>,
    /// Exact-log keys, and counter-mode keys under larger limits.
    locked: DashMap<K, LockedSlot, Hasher>,
    /// One FIFO queue per key that has waiters, so `acquire` callers are
    /// served in arrival order.
    waiters: DashMap<K, Arc<tokio::sync::Mutex<()>>, Hasher>,
    idle_timeout: Option<Duration>,
    /// Keys inserted since the last sweep. Written on every first sight,
    /// so on a cache line of its own: beside the fields every check reads
    /// (quota, sweep time, window hint), each insert on one core made the
    /// other core's next check miss.
    inserts_since_sweep: CachePadded<AtomicU64>,
    /// Keys kept by the last sweep (at least 1024): a sweep is due once as
    /// many new keys have arrived. Read instead of the map's length, which
    /// would lock every shard on every check.
    kept_at_sweep: AtomicU64,
    /// When the last sweep ran (limiter time, ns).
    last_sweep: AtomicU64,
    /// The oldest last-seen time among the keys the last sweep kept
    /// (`u64::MAX` if it kept none). Keys added since were first seen
    /// after that sweep, so no key has been idle for longer than
    /// `now - min(oldest_kept, last_sweep)`.
    oldest_kept: AtomicU64,
}

/// A keyed sliding-window rate limiter, local to this process.
///
/// Cheap to clone: clones share one state. Keys idle for longer than the
/// idle timeout (default: twice the longest window) are evicted as the
/// limiter is used, so memory stays bounded without the caller's help.
///
/// ```
/// use std::num::NonZeroU32;
/// use levee_limit::{Quota, SlidingWindow};
///
/// let limiter = SlidingWindow::<String>::builder(Quota::per_minute(NonZeroU32::new(5).unwrap()))
///     .classes([("authenticated", Quota::per_minute(NonZeroU32::new(500).unwrap()))])
///     .build()?;
/// let user = "alice".to_string();
/// for _ in 0..5 {
///     assert!(limiter.check(&user).allowed);
/// }
/// let denied = limiter.check(&user);
/// assert!(!denied.allowed && denied.retry_after.is_some());
/// assert!(limiter.check_in(&"bob".to_string(), "authenticated")?.allowed);
/// # Ok::<(), levee_limit::LimitError>(())
/// ```
pub struct SlidingWindow<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for SlidingWindow<K> {
    fn clone(&self) -> Self {
        SlidingWindow {
            inner: self.inner.clone(),
        }
    }
}

impl<K: Hash + Eq> std::fmt::Debug for SlidingWindow<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlidingWindow")
            .field("mode", &self.inner.mode)
            .field("quota", &*self.inner.default_quota.read())
            .field("keys", &(self.inner.keys.len() + self.inner.locked.len()))
            .finish()
    }
}

/// Builds a [`SlidingWindow`].
#[must_use]
pub struct SlidingWindowBuilder<K> {
    quota: Quota,
    mode: WindowMode,
    classes: HashMap<String, Quota>,
    clock: Option<SharedClock>,
    idle_timeout: Option<Duration>,
    _key: std::marker::PhantomData<fn(K)>,
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> SlidingWindowBuilder<K> {
    /// The algorithm. Default: [`WindowMode::Counter`].
    pub fn mode(mut self, mode: WindowMode) -> Self {
        self.mode = mode;
        self
    }

    /// Named quota classes for [`SlidingWindow::check_in`].
    pub fn classes<I, S>(mut self, classes: I) -> Self
    where
        I: IntoIterator<Item = (S, Quota)>,
        S: Into<String>,
    {
        self.classes
            .extend(classes.into_iter().map(|(s, q)| (s.into(), q)));
        self
    }

    /// The time source. Default: the CPU's time-stamp counter through
    /// `quanta` (monotonic, as precise as `Instant` and cheaper to read on
    /// every check); use `TokioClock` for `acquire` under paused tokio time,
    /// or `ManualClock` in tests.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// How long a key may go unchecked before its state is dropped.
    /// Default: twice the longest window; must be at least that long, so
    /// eviction never changes a decision. In counter mode a key's idle time
    /// runs from its first check in the last window it was checked in
    /// (noting every check would cost each check a load), so a key may go
    /// up to one window sooner; its counts weigh on no decision by then.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = Some(d);
        self
    }

    /// Builds the limiter.
    pub fn build(self) -> Result<SlidingWindow<K>, LimitError> {
        let longest = self
            .classes
            .values()
            .map(Quota::window)
            .chain([self.quota.window()])
            .max();
        if let (Some(idle), Some(longest)) = (self.idle_timeout, longest)
            && idle < longest.saturating_mul(2)
        {
            return Err(LimitError::InvalidSetting {
                setting: "idle_timeout",
                reason: format!(
                    "{idle:?} is shorter than twice the longest window ({longest:?}); evicting earlier would forget admissions"
                ),
            });
        }
        let limiter = SlidingWindow {
            inner: Arc::new(Inner {
                mode: self.mode,
                time: crate::time::LimiterTime::new(self.clock),
                default_quota: RwLock::new(self.quota),
                default_limit: std::sync::atomic::AtomicU32::new(self.quota.limit()),
                default_window: AtomicU64::new(Rule::from(self.quota).window),
                window_hint: AtomicU64::new(0),
                idle_nanos: AtomicU64::new(u64::MAX),
                index_can_turn: AtomicBool::new(true),
                classes: RwLock::new(self.classes),
                keys: DashMap::with_hasher_and_shard_amount(Hasher::default(), KEY_SHARDS),
                locked: DashMap::with_hasher(Hasher::default()),
                waiters: DashMap::with_hasher(Hasher::default()),
                idle_timeout: self.idle_timeout,
                inserts_since_sweep: CachePadded::new(AtomicU64::new(0)),
                kept_at_sweep: AtomicU64::new(MIN_SWEEP_KEYS),
                last_sweep: AtomicU64::new(0),
                oldest_kept: AtomicU64::new(u64::MAX),
            }),
        };
        limiter.refresh_idle();
        Ok(limiter)
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> SlidingWindow<K> {
    /// A builder whose default quota, for keys checked without a class, is
    /// `quota`.
    pub fn builder(quota: Quota) -> SlidingWindowBuilder<K> {
        SlidingWindowBuilder {
            quota,
            mode: WindowMode::default(),
            classes: HashMap::new(),
            clock: None,
            idle_timeout: None,
            _key: std::marker::PhantomData,
        }
    }

    /// Nanoseconds since the limiter was built, plus an hour (so that
    /// aligned windows never start before zero for keys first seen at
    /// start-up).
    fn now(&self) -> u64 {
        self.inner.time.elapsed_nanos() + 3_600_000_000_000
    }

    fn decide(&self, key: &K, quota: Quota, n: NonZeroU32) -> Result<Decision, LimitError> {
        if n.get() > quota.limit() {
            return Err(LimitError::InsufficientCapacity {
                requested: n.get(),
                limit: quota.limit(),
            });
        }
        Ok(self.decide_within_limit(key, quota.into(), n.get(), None))
    }

    /// [`decide`](Self::decide) for an `n` known to be within the limit;
    /// `hint`, the window hint of the default quota when `rule` is it.
    #[inline]
    fn decide_within_limit(
        &self,
        key: &K,
        rule: Rule,
        n: u32,
        hint: Option<&AtomicU64>,
    ) -> Decision {
        let now = self.now();
        let idle = self.idle_nanos_cached();
        // The periodic sweep; the growth sweep is decided where keys are
        // added, so a check of a known key reads one sweep atomic.
        let last = self.inner.last_sweep.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= idle {
            self.sweep_once(last, now);
        }
        if self.inner.mode == WindowMode::Counter && PackedCounter::fits(rule) {
            let at = match hint {
                Some(hint) => WindowAt::with_hint(now, rule.window, hint),
                None => WindowAt::of(now, rule.window),
            };
            if let Some(slot) = self.inner.keys.get(key) {
                let turns = self.inner.index_can_turn.load(Ordering::Relaxed);
                let admitted = slot.admit(rule, at, now, n, turns);
                // The map's shard lock is released before the decision's
                // arithmetic.
                drop(slot);
                return admitted.decision(rule, at, n);
            }
            return self.first_sight(key, rule, now, at, n);
        }
        self.check_locked(key, rule, now, n)
    }

    /// A check of a counter-mode key not held: adds it, then
    /// [`after_insert`](Self::after_insert).
    #[inline(never)]
    fn first_sight(&self, key: &K, rule: Rule, now: u64, at: WindowAt, n: u32) -> Decision {
        let inserts = self.count_insert();
        let slot = self.inner.keys.entry(key.clone()).or_insert_with(|| Slot {
            packed: PackedCounter::default(),
            last_seen: AtomicU64::new(now),
        });
        let turns = self.inner.index_can_turn.load(Ordering::Relaxed);
        let decision = slot.admit(rule, at, now, n, turns).decision(rule, at, n);
        drop(slot);
        // The entry's shard lock is released: the sweep locks every shard.
        self.after_insert(inserts, now);
        decision
    }

    /// A check under the exact log, or of a counter whose limit does not
    /// fit the packed word: the key's own lock.
    #[inline(never)]
    fn check_locked(&self, key: &K, rule: Rule, now: u64, n: u32) -> Decision {
        if let Some(slot) = self.inner.locked.get(key) {
            note_seen(&slot.last_seen, now, self.idle_nanos_cached());
            return slot.state.lock().check(rule, now, n);
        }
        let inserts = self.count_insert();
        let decision = self
            .inner
            .locked
            .entry(key.clone())
            .or_insert_with(|| LockedSlot {
                state: Mutex::new(KeyState::new(self.inner.mode)),
                last_seen: AtomicU64::new(now),
            })
            .state
            .lock()
            .check(rule, now, n);
        self.after_insert(inserts, now);
        decision
    }

    /// Counts a key about to be added; the count since the last sweep.
    fn count_insert(&self) -> u64 {
        self.inner
            .inserts_since_sweep
            .fetch_add(1, Ordering::Relaxed)
            + 1
    }

    /// After a key was added (`inserts` since the last sweep, this one
    /// included): sweeps if the keys added since the last sweep outnumber
    /// those it kept (at least 1024), which bounds memory at about twice
    /// the active keys at O(1) amortised cost. The maps' lengths are never
    /// read here (they lock every shard).
    fn after_insert(&self, inserts: u64, now: u64) {
        let kept = self.inner.kept_at_sweep.load(Ordering::Relaxed);
        if inserts >= kept {
            let last = self.inner.last_sweep.load(Ordering::Relaxed);
            let oldest = self.inner.oldest_kept.load(Ordering::Relaxed).min(last);
            if now.saturating_sub(oldest) < self.idle_nanos_cached() {
                // No key can be idle yet, so a sweep would walk the whole
                // map to evict nothing (a burst of new keys paid for walks
                // of every key held): wait for as many new keys again.
                self.inner.inserts_since_sweep.store(0, Ordering::Relaxed);
                self.inner
                    .kept_at_sweep
                    .store(kept.saturating_add(inserts), Ordering::Relaxed);
            } else {
                self.sweep_once(last, now);
            }
        }
    }

    /// The default quota, read from two atomics (no lock, no `Duration`).
    #[inline]
    fn default_rule(&self) -> Rule {
        // A reader racing `set_quota` may pair the new limit with the old
        // window for one check; both halves come from valid quotas.
        Rule {
            limit: self.inner.default_limit.load(Ordering::Relaxed),
            window: self.inner.default_window.load(Ordering::Relaxed),
        }
    }

    fn refresh_idle(&self) {
        let (shortest, longest) = self.window_range();
        let idle = self.idle_nanos_for(longest);
        self.inner.idle_nanos.store(idle, Ordering::Relaxed);
        self.inner.index_can_turn.store(
            index_can_turn(idle, state::nanos(shortest)),
            Ordering::Relaxed,
        );
    }

    /// Spends one permit for `key` under the default quota.
    pub fn check(&self, key: &K) -> Decision {
        // n = 1 never exceeds a non-zero limit.
        self.decide_within_limit(key, self.default_rule(), 1, Some(&self.inner.window_hint))
    }

    /// Spends `n` permits for `key`; `InsufficientCapacity` if `n` is above
    /// the limit (it could never be admitted).
    pub fn check_n(&self, key: &K, n: NonZeroU32) -> Result<Decision, LimitError> {
        let rule = self.default_rule();
        if n.get() > rule.limit {
            return Err(LimitError::InsufficientCapacity {
                requested: n.get(),
                limit: rule.limit,
            });
        }
        Ok(self.decide_within_limit(key, rule, n.get(), Some(&self.inner.window_hint)))
    }

    /// Spends one permit for `key` under the quota of `class`.
    pub fn check_in(&self, key: &K, class: &str) -> Result<Decision, LimitError> {
        let quota = self
            .inner
            .classes
            .read()
            .get(class)
            .copied()
            .ok_or_else(|| LimitError::UnknownClass(class.to_string()))?;
        self.decide(key, quota, NonZeroU32::MIN)
    }

    /// Replaces the default quota; keys keep what they already spent.
    pub fn set_quota(&self, quota: Quota) {
        *self.inner.default_quota.write() = quota;
        self.inner
            .default_limit
            .store(quota.limit(), Ordering::Relaxed);
        self.inner
            .default_window
            .store(Rule::from(quota).window, Ordering::Relaxed);
        self.refresh_idle();
    }

    /// Adds or replaces the quota of `class`.
    pub fn set_class_quota(&self, class: &str, quota: Quota) {
        self.inner.classes.write().insert(class.to_string(), quota);
        self.refresh_idle();
    }

    /// Waits until one permit for `key` is admitted. Waiters for one key are
    /// served in arrival order; dropping the future gives up its place.
    pub async fn acquire(&self, key: &K) -> Decision {
        let place = InLine::join(&self.inner.waiters, key);
        let _turn = place.queue().lock().await;
        loop {
            let d = self.check(key);
            match d.retry_after {
                Some(wait) if !d.allowed => tokio::time::sleep(wait).await,
                _ => return d,
            }
        }
    }

    /// Like [`acquire`](Self::acquire), giving up after `max_wait` with
    /// [`LimitError::Timeout`].
    pub async fn acquire_timeout(
        &self,
        key: &K,
        max_wait: Duration,
    ) -> Result<Decision, LimitError> {
        tokio::time::timeout(max_wait, self.acquire(key))
            .await
            .map_err(|_| LimitError::Timeout(max_wait))
    }

    /// Keys with callers waiting in [`acquire`](Self::acquire) now.
    pub fn waiting_keys(&self) -> usize {
        self.inner.waiters.len()
    }

    /// Keys currently held. (A key checked both under a limit below 2^24
    /// and, in counter mode, under a larger one holds a state for each, and
    /// counts twice.)
    pub fn len(&self) -> usize {
        self.inner.keys.len() + self.inner.locked.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.inner.keys.is_empty() && self.inner.locked.is_empty()
    }

    fn idle_nanos(&self) -> u64 {
        self.idle_nanos_for(self.window_range().1)
    }

    /// The shortest and the longest window of the default quota and the
    /// classes' quotas.
    fn window_range(&self) -> (Duration, Duration) {
        let default = self.inner.default_quota.read().window();
        self.inner
            .classes
            .read()
            .values()
            .map(Quota::window)
            .fold((default, default), |(lo, hi), w| (lo.min(w), hi.max(w)))
    }

    /// The idle timeout in ns when the longest window is `longest`.
    fn idle_nanos_for(&self, longest: Duration) -> u64 {
        let idle = self
            .inner
            .idle_timeout
            .unwrap_or(longest.saturating_mul(2))
            .max(longest.saturating_mul(2));
        u64::try_from(idle.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Drops the state of keys idle past the idle timeout; returns how many.
    pub fn evict_idle(&self) -> usize {
        let now = self.now();
        self.inner.inserts_since_sweep.store(0, Ordering::Relaxed);
        self.inner.last_sweep.store(now, Ordering::Relaxed);
        let idle = self.idle_nanos();
        let before = self.len();
        let mut oldest = u64::MAX;
        retain_seen_within(&self.inner.keys, now, idle, &mut oldest);
        retain_seen_within(&self.inner.locked, now, idle, &mut oldest);
        let kept = self.len();
        self.inner.oldest_kept.store(oldest, Ordering::Relaxed);
        self.inner
            .kept_at_sweep
            .store((kept as u64).max(MIN_SWEEP_KEYS), Ordering::Relaxed);
        before.saturating_sub(kept)
    }

    /// Sweeps unless another thread swept since `last` was read: one
    /// thread sweeps, the others go on. Runs at least once per idle
    /// timeout, so a map that stopped growing still empties.
    fn sweep_once(&self, last: u64, now: u64) {
        if self
            .inner
            .last_sweep
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.evict_idle();
        }
    }

    fn idle_nanos_cached(&self) -> u64 {
        self.inner.idle_nanos.load(Ordering::Relaxed)
    }
}

/// Drops the keys of `map` idle for `idle` ns or more at `now`, lowering
/// `oldest` to the oldest last-seen time kept.
fn retain_seen_within<K: Hash + Eq, S: Held>(
    map: &DashMap<K, S, Hasher>,
    now: u64,
    idle: u64,
    oldest: &mut u64,
) {
    map.retain(|_, slot| {
        let seen = slot.last_seen().load(Ordering::Relaxed);
        let keep = now.saturating_sub(seen) < idle;
        if keep {
            *oldest = (*oldest).min(seen);
        }
        keep
    });
}

#[async_trait::async_trait]
impl<K: Hash + Eq + Clone + Send + Sync + 'static> RateLimiter<K> for SlidingWindow<K> {
    async fn check_n(&self, key: &K, n: NonZeroU32) -> Result<Decision, LimitError> {
        SlidingWindow::check_n(self, key, n)
    }

    fn check_n_now(&self, key: &K, n: NonZeroU32) -> Option<Result<Decision, LimitError>> {
        Some(SlidingWindow::check_n(self, key, n))
    }
}

/// A caller's place in one key's `acquire` queue. Dropping it (the call
/// returned, or its future was dropped by a timeout or a cancellation)
/// removes the key's queue once nobody else is in it, so giving up never
/// leaves a queue behind.
struct InLine<'a, K: Hash + Eq> {
    waiters: &'a DashMap<K, Arc<tokio::sync::Mutex<()>>, Hasher>,
    key: &'a K,
    queue: Arc<tokio::sync::Mutex<()>>,
}

impl<'a, K: Hash + Eq + Clone> InLine<'a, K> {
    fn join(waiters: &'a DashMap<K, Arc<tokio::sync::Mutex<()>>, Hasher>, key: &'a K) -> Self {
        let queue = waiters
            .entry(key.clone())
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
            .clone();
        InLine {
            waiters,
            key,
            queue,
        }
    }

    fn queue(&self) -> &tokio::sync::Mutex<()> {
        &self.queue
    }
}

impl<K: Hash + Eq> Drop for InLine<'_, K> {
    fn drop(&mut self) {
        // The map's reference and ours only: nobody else waits for this
        // key. Clones are made under the same shard lock that `remove_if`
        // holds, so the count cannot change while it is read.
        self.waiters
            .remove_if(self.key, |_, q| Arc::strong_count(q) == 2);
    }
}
