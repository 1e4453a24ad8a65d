//! Per-key window state: the sliding-window counter and the exact log.
//! Pure arithmetic on nanosecond timestamps, so it is tested directly.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::{Decision, Quota};

/// Which algorithm a [`SlidingWindow`](crate::SlidingWindow) uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WindowMode {
    /// Two fixed-window buckets, the previous one weighted by how much of it
    /// still overlaps the sliding window. O(1) memory per key; admits at most
    /// the limit per aligned window, and can over-admit in an unaligned
    /// window (see the crate docs for the measured bound).
    #[default]
    Counter,
    /// Every admission's timestamp. Exact: at most the limit in any window
    /// of its length; memory grows with the limit.
    Log,
}

#[derive(Debug)]
pub(crate) enum KeyState {
    Counter {
        start: u64,
        prev: u32,
        curr: u32,
    },
    Log {
        entries: VecDeque<(u64, u32)>,
        total: u32,
    },
}

/// A quota as the window arithmetic reads it: the limit, and the window in
/// nanoseconds (at least 1). The hot path reads it from two atomics, with
/// no `Duration` to convert on every check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rule {
    pub(crate) limit: u32,
    pub(crate) window: u64,
}

impl From<Quota> for Rule {
    fn from(q: Quota) -> Self {
        Rule {
            limit: q.limit(),
            window: nanos(q.window()).max(1),
        }
    }
}

/// `d` in nanoseconds, saturating.
pub(crate) fn nanos(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}

fn dur(n: u64) -> Duration {
    Duration::from_nanos(n)
}

impl KeyState {
    pub(crate) fn new(mode: WindowMode) -> Self {
        match mode {
            WindowMode::Counter => KeyState::Counter {
                start: 0,
                prev: 0,
                curr: 0,
            },
            WindowMode::Log => KeyState::Log {
                entries: VecDeque::new(),
                total: 0,
            },
        }
    }

    /// Admits `n` at `now` if the quota allows, and says so.
    pub(crate) fn check(&mut self, rule: Rule, now: u64, n: u32) -> Decision {
        match self {
            KeyState::Counter { start, prev, curr } => {
                counter_check(rule, now, n, start, prev, curr)
            }
            KeyState::Log { entries, total } => log_check(rule, now, n, entries, total),
        }
    }
}

fn counter_check(
    rule: Rule,
    now: u64,
    n: u32,
    start: &mut u64,
    prev: &mut u32,
    curr: &mut u32,
) -> Decision {
    let w = rule.window;
    let aligned = now - now % w;
    if *start != aligned {
        *prev = if aligned.saturating_sub(*start) == w {
            *curr
        } else {
            0
        };
        *curr = 0;
        *start = aligned;
    }
    let (decision, admitted) = counter_decide(w, rule.limit, now - aligned, n, *prev, *curr);
    *curr = admitted;
    decision
}

/// The counter's decision for `n` more at `into` ns into the current
/// window, with `prev` and `curr` admitted in the previous and current
/// windows; and `curr` after it.
#[inline]
fn counter_decide(w: u64, limit: u32, into: u64, n: u32, prev: u32, curr: u32) -> (Decision, u32) {
    let (allowed, admitted) = counter_admit(w, limit, into, n, prev, curr);
    (
        counter_decision(w, limit, into, n, prev, curr, allowed),
        admitted,
    )
}

/// Whether `n` more fit, and `curr` after it: integers only, so that a
/// compare-and-swap on the result does not wait on floating point.
#[inline]
fn counter_admit(w: u64, limit: u32, into: u64, n: u32, prev: u32, curr: u32) -> (bool, u32) {
    // Admit if prev * (w - into) / w + curr + n <= limit: the previous
    // window weighted by how much of it is still inside the sliding window,
    // compared exactly.
    let allowed = u64::from(limit)
        .checked_sub(u64::from(curr) + u64::from(n))
        .is_some_and(|room| {
            u128::from(prev) * u128::from(w - into) <= u128::from(room) * u128::from(w)
        });
    (allowed, if allowed { curr + n } else { curr })
}

/// The [`Decision`] for a check that found `prev` and `curr` and was
/// `allowed` (or not).
#[inline]
fn counter_decision(
    w: u64,
    limit: u32,
    into: u64,
    n: u32,
    prev: u32,
    curr: u32,
    allowed: bool,
) -> Decision {
    let (curr, retry_after) = if allowed {
        (curr + n, None)
    } else {
        (curr, Some(counter_wait(w, into, limit, n, prev, curr)))
    };
    let used = if prev == 0 {
        // A key new in this window, or idle in the last (every first
        // sight): the same value without the division.
        curr
    } else {
        // Times are below 2^63 ns, so the signed conversion (one
        // instruction) is exact where the unsigned one takes several.
        let prev_weight = (w - into) as i64 as f64 / w as i64 as f64;
        ceil_u32(f64::from(prev) * prev_weight + f64::from(curr))
    };
    let reset_after = if curr > 0 {
        w.saturating_mul(2).saturating_sub(into)
    } else if prev > 0 {
        w - into
    } else {
        0
    };
    Decision {
        allowed,
        limit,
        remaining: limit.saturating_sub(used),
        retry_after,
        reset_after: dur(reset_after),
    }
}

/// Where a time falls among a rule's fixed windows: the window's index
/// (`now / w`) and how far into it, in ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WindowAt {
    pub(crate) index: u64,
    pub(crate) into: u64,
}

impl WindowAt {
    /// `now` in windows of `w` ns.
    #[inline]
    pub(crate) fn of(now: u64, w: u64) -> Self {
        WindowAt {
            index: now / w,
            into: now % w,
        }
    }

    /// [`of`](Self::of), without its 64-bit division (tens of cycles, the
    /// check's slowest instruction) while `now` is still in the window
    /// whose index `hint` holds; the hint moves on when the window does.
    /// Any index `i` with `i * w <= now < i * w + w` is `now / w`, so a
    /// stale hint, or one another thread wrote for another time or another
    /// window length, is never wrong, only slower.
    #[inline]
    pub(crate) fn with_hint(now: u64, w: u64, hint: &AtomicU64) -> Self {
        let index = hint.load(Ordering::Relaxed);
        if let Some(into) = index
            .checked_mul(w)
            .and_then(|start| now.checked_sub(start))
            && into < w
        {
            return WindowAt { index, into };
        }
        let at = Self::of(now, w);
        hint.store(at.index, Ordering::Relaxed);
        at
    }
}

/// The counter in one atomic word, updated with a compare-and-swap: no lock
/// on the hot path. Layout: window index (low 16 bits of `now / w`: only
/// "same window" and "the next one" matter), previous count, current count
/// (24 bits each), so it serves limits below 2^24
/// ([`PackedCounter::fits`]); larger ones take the locked [`KeyState`].
/// The index wraps after 2^16 windows, which a key can sit out unswept (a
/// long idle timeout, or a quota class whose window is much shorter than
/// the longest one): beside the word, the limiter keeps when the key's
/// latest window began for it ([`admit`](PackedCounter::admit)'s `seen`),
/// which tells a state from a whole turn ago from a current one.
#[derive(Debug, Default)]
pub(crate) struct PackedCounter(AtomicU64);

const COUNT_BITS: u32 = 24;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const INDEX_MASK: u64 = (1 << 16) - 1;

/// The largest limit a [`PackedCounter`] serves.
pub(crate) const PACKED_MAX_LIMIT: u32 = COUNT_MASK as u32;

impl PackedCounter {
    /// Whether `rule`'s limit fits the packed counts.
    #[inline]
    pub(crate) fn fits(rule: Rule) -> bool {
        rule.limit <= PACKED_MAX_LIMIT
    }

    /// Admits `n` at `at` (the window of `now`) if the quota allows,
    /// deciding as [`KeyState`]'s counter would; for a `rule` that
    /// [`fits`](Self::fits) (and `n` up to its limit).
    #[cfg(test)]
    pub(crate) fn check(
        &self,
        rule: Rule,
        at: WindowAt,
        now: u64,
        n: u32,
        seen: &AtomicU64,
    ) -> Decision {
        self.admit::<true>(rule, at, now, n, seen)
            .decision(rule, at, n)
    }

    /// [`check`](Self::check)'s integer part: the counts it found and
    /// whether it admitted. The decision (floating point, the wait of a
    /// refusal) is left to [`Admitted::decision`], which a caller can run
    /// after releasing whatever lock it found the counter under.
    ///
    /// `seen` is when the key's latest window began for it: raised to
    /// `now` by the check that moves the counter into a new window, before
    /// its swap, so a check that reads the moved word reads the raised time
    /// too (the word's load and a failed swap acquire). A word whose `seen`
    /// is two windows or more before `now` is older than the previous
    /// window, whatever its 16-bit index reads, and counts for nothing.
    /// (The idle sweep reads `seen` too: a key is noted as used once a
    /// window, not on every check.)
    ///
    /// `TURNS`: whether the key can have sat out a whole turn of the index
    /// unswept. Without it `seen` is only raised, never read: the limiter's
    /// sweep drops a key long before its index could come round.
    #[inline]
    pub(crate) fn admit<const TURNS: bool>(
        &self,
        rule: Rule,
        at: WindowAt,
        now: u64,
        n: u32,
        seen: &AtomicU64,
    ) -> Admitted {
        let Rule { limit, window: w } = rule;
        debug_assert!(Self::fits(rule) && n <= limit && at.into < w);
        let index = at.index & INDEX_MASK;
        let into = at.into;
        let mut word = self.0.load(Ordering::Acquire);
        loop {
            let (was, prev, curr) = unpack(word);
            // Within two windows of `seen` (`d / 2 < w` is `d < 2w`, without
            // an overflow), the index is exact.
            let recent = !TURNS || now.saturating_sub(seen.load(Ordering::Relaxed)) >> 1 < w;
            let (prev, curr) = if recent && was == index {
                (prev, curr)
            } else if recent && was == index.wrapping_sub(1) & INDEX_MASK {
                (curr, 0)
            } else {
                (0, 0)
            };
            let (allowed, admitted) = counter_admit(w, limit, into, n, prev, curr);
            let next = pack(index, prev, admitted);
            let found = Admitted {
                prev,
                curr,
                allowed,
            };
            let moving = !(recent && was == index);
            if next == word && !moving {
                return found;
            }
            if moving {
                // Into a new window (even when the word it leaves packs
                // the same, a whole turn ago): noted before the swap. A
                // maximum, not a store: a thread delayed here must not move
                // the note back past a later window's.
                seen.fetch_max(now, Ordering::Relaxed);
            }
            match self
                .0
                .compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return found,
                Err(now_word) => word = now_word,
            }
        }
    }
}

/// What [`PackedCounter::admit`] found: the previous and current windows'
/// counts before this check, and whether it was admitted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Admitted {
    prev: u32,
    curr: u32,
    allowed: bool,
}

impl Admitted {
    /// The check's [`Decision`].
    #[inline]
    pub(crate) fn decision(self, rule: Rule, at: WindowAt, n: u32) -> Decision {
        counter_decision(
            rule.window,
            rule.limit,
            at.into,
            n,
            self.prev,
            self.curr,
            self.allowed,
        )
    }
}

fn unpack(word: u64) -> (u64, u32, u32) {
    (
        word >> (2 * COUNT_BITS),
        ((word >> COUNT_BITS) & COUNT_MASK) as u32,
        (word & COUNT_MASK) as u32,
    )
}

fn pack(index: u64, prev: u32, curr: u32) -> u64 {
    (index << (2 * COUNT_BITS)) | (u64::from(prev) << COUNT_BITS) | u64::from(curr)
}

/// `x.ceil()` for 0 <= x < 2^32, without a call into libm on the hot path.
fn ceil_u32(x: f64) -> u32 {
    let t = x as u32;
    if f64::from(t) < x { t + 1 } else { t }
}

/// `x.ceil() as u64`, without a call into libm on the refusal path:
/// through `i64`, whose conversions are single instructions on x86-64, so
/// it saturates at `i64::MAX` (a wait of 292 years, past any hold a caller
/// would honour); 0 for a negative `x` or NaN.
fn ceil_u64(x: f64) -> u64 {
    let t = x as i64;
    let up = if (t as f64) < x {
        t.saturating_add(1)
    } else {
        t
    };
    up.max(0) as u64
}

/// Time from `into` (ns into the current window) until `n` more fit.
fn counter_wait(w: u64, into: u64, limit: u32, n: u32, prev: u32, curr: u32) -> Duration {
    if curr + n <= limit && prev > 0 {
        // Wait for the previous window's weight to decay enough.
        let need = 1.0 - f64::from(limit - curr - n) / f64::from(prev);
        let at = ceil_u64(need * w as f64);
        return dur(at.saturating_sub(into).max(1));
    }
    // In the next window, `curr` becomes the weighted previous bucket.
    let rest = w - into;
    let need = if curr == 0 {
        0.0
    } else {
        (1.0 - f64::from(limit - n) / f64::from(curr)).max(0.0)
    };
    dur(rest.saturating_add(ceil_u64(need * w as f64)))
}

fn log_check(
    rule: Rule,
    now: u64,
    n: u32,
    entries: &mut VecDeque<(u64, u32)>,
    total: &mut u32,
) -> Decision {
    let Rule { limit, window: w } = rule;
    // An entry at t counts in every window (now - w, now] with t > now - w.
    while let Some(&(t, c)) = entries.front() {
        if t + w <= now {
            entries.pop_front();
            *total -= c;
        } else {
            break;
        }
    }
    let allowed = *total + n <= limit;
    let retry_after = if allowed {
        match entries.back_mut() {
            Some((t, c)) if *t == now => *c += n,
            _ => entries.push_back((now, n)),
        }
        *total += n;
        None
    } else {
        // The earliest time enough old admissions have left the window.
        let mut freed = 0;
        let mut at = now;
        for &(t, c) in entries.iter() {
            freed += c;
            at = t + w;
            if *total - freed + n <= limit {
                break;
            }
        }
        Some(dur(at - now))
    };
    let reset_after = entries.back().map_or(0, |&(t, _)| t + w - now);
    Decision {
        allowed,
        limit,
        remaining: limit.saturating_sub(*total),
        retry_after,
        reset_after: dur(reset_after),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    const S: u64 = 1_000_000_000;

    fn quota(limit: u32) -> Rule {
        Quota::per_second(NonZeroU32::new(limit).unwrap()).into()
    }

    #[test]
    fn counter_weights_the_previous_window() {
        let mut st = KeyState::new(WindowMode::Counter);
        for _ in 0..10 {
            assert!(st.check(quota(10), 0, 1).allowed);
        }
        assert!(
            !st.check(quota(10), S / 2, 1).allowed,
            "half of 10 + 0 ... still 10 in the aligned window"
        );
        // 1.5 s: previous window (10) weighs 0.5 -> 5 used, 5 left.
        for _ in 0..5 {
            assert!(st.check(quota(10), S + S / 2, 1).allowed);
        }
        let d = st.check(quota(10), S + S / 2, 1);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        // Waiting retry_after makes the next call succeed.
        let wait = nanos(d.retry_after.unwrap());
        assert!(st.check(quota(10), S + S / 2 + wait, 1).allowed);
    }

    #[test]
    fn ceil_u64_is_the_float_ceiling_up_to_292_years_of_nanoseconds() {
        for x in [
            -1.5,
            -0.0,
            0.0,
            0.25,
            1.0,
            1.000_000_1,
            2.5e9,
            9.007_199_254_740_993e15,
            8.999_999_999_999_999e18,
            f64::NAN,
        ] {
            assert_eq!(ceil_u64(x), x.ceil() as u64, "{x}");
        }
        for huge in [9.3e18, 1.8e19, 1e30, f64::INFINITY] {
            assert_eq!(ceil_u64(huge), i64::MAX as u64, "{huge}");
        }
    }

    proptest::proptest! {
        #[test]
        fn ceil_u64_matches_f64_ceil(x in -1e3f64..1e16) {
            proptest::prop_assert_eq!(ceil_u64(x), x.ceil() as u64);
        }

        /// The packed counter decides exactly as the locked one, on any
        /// sequence of checks.
        #[test]
        fn packed_counter_matches_the_locked_counter(
            limit in 1u32..50,
            steps in proptest::collection::vec((0u64..3 * S, 1u32..4), 1..200),
        ) {
            let mut locked = KeyState::new(WindowMode::Counter);
            let packed = PackedCounter::default();
            // The same without reading `seen` (no turn of the index here).
            let unread = PackedCounter::default();
            let mut now = 3_600 * S;
            let (seen, seen_unread) = (AtomicU64::new(now), AtomicU64::new(now));
            for (gap, n) in steps {
                now += gap / 7;
                let n = n.min(limit);
                let a = locked.check(quota(limit), now, n);
                let at = WindowAt::of(now, quota(limit).window);
                let b = packed.check(quota(limit), at, now, n, &seen);
                let c = unread
                    .admit::<false>(quota(limit), at, now, n, &seen_unread)
                    .decision(quota(limit), at, n);
                proptest::prop_assert_eq!(a, b);
                proptest::prop_assert_eq!(a, c);
            }
            // Both noted the key at its latest window's first check.
            proptest::prop_assert_eq!(seen.load(Ordering::Relaxed), seen_unread.load(Ordering::Relaxed));
        }

        /// Also across idle gaps of whole turns of the packed index (2^16
        /// windows), and near them, which its 16 bits alone cannot tell
        /// from no gap.
        #[test]
        fn packed_counter_matches_the_locked_counter_across_index_turns(
            limit in 1u32..50,
            steps in proptest::collection::vec(
                (0u64..3 * S, 0u64..4, 0u64..3, 1u32..4),
                1..100,
            ),
        ) {
            let mut locked = KeyState::new(WindowMode::Counter);
            let packed = PackedCounter::default();
            let mut now = 3_600 * S;
            let seen = AtomicU64::new(now);
            for (gap, turns, off, n) in steps {
                // `S` is the quota's window: a jump of `turns` whole turns
                // of the index, give or take a window.
                now += gap / 7 + turns * 65_536 * S + off * S;
                let n = n.min(limit);
                let a = locked.check(quota(limit), now, n);
                let at = WindowAt::of(now, quota(limit).window);
                let b = packed.check(quota(limit), at, now, n, &seen);
                proptest::prop_assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn packed_counter_declines_limits_it_cannot_hold() {
        assert!(!PackedCounter::fits(quota(PACKED_MAX_LIMIT + 1)));
        let max = quota(PACKED_MAX_LIMIT);
        assert!(PackedCounter::fits(max));
        let packed = PackedCounter::default();
        let at = WindowAt::of(S, max.window);
        let seen = AtomicU64::new(S);
        assert!(packed.check(max, at, S, PACKED_MAX_LIMIT, &seen).allowed);
        assert!(
            !packed.check(max, at, S, 1, &seen).allowed,
            "full, no overflow"
        );
    }

    proptest::proptest! {
        /// A hint left by any earlier time, or by another window length,
        /// never changes where a time falls.
        #[test]
        fn a_window_hint_never_changes_the_answer(
            times in proptest::collection::vec((0u64..u64::MAX / 2, 0usize..3), 1..50),
        ) {
            let windows = [S, 7, 60 * S];
            let hint = AtomicU64::new(0);
            for (now, w) in times {
                let w = windows[w];
                proptest::prop_assert_eq!(WindowAt::with_hint(now, w, &hint), WindowAt::of(now, w));
                let near = now.saturating_add(w / 3);
                proptest::prop_assert_eq!(WindowAt::with_hint(near, w, &hint), WindowAt::of(near, w));
            }
        }
    }

    #[test]
    fn log_admits_again_exactly_when_the_oldest_leaves() {
        let mut st = KeyState::new(WindowMode::Log);
        assert!(st.check(quota(2), 0, 1).allowed);
        assert!(st.check(quota(2), S / 4, 1).allowed);
        let d = st.check(quota(2), S / 2, 1);
        assert_eq!(d.retry_after, Some(Duration::from_millis(500)));
        assert!(!st.check(quota(2), S - 1, 1).allowed);
        assert!(st.check(quota(2), S, 1).allowed);
    }
}
