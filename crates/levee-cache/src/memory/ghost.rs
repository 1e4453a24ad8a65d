//! S3-FIFO's ghost queue: fingerprints of keys recently evicted from the
//! small queue, so that a key that comes back soon goes straight to the
//! main queue.
//!
//! A ghost stays one while fewer than about `bound` newer ghosts were made:
//! a FIFO of `bound` by age. Ages are kept in epochs of `bound / 32`
//! ghosts (a ghost lives `bound` ghosts to within a 32nd), beside a 24-bit
//! fingerprint, in one `u32`. The slots form a set-associative table of
//! buckets of [`WAYS`] slots (32 bytes), the bucket chosen by the
//! fingerprint, each bucket a small FIFO of its own, with about 1.9 slots
//! per ghost: on average 3.7 live ghosts in a bucket's seven slots, and
//! about one live ghost in 60 is forgotten early because its bucket drew
//! more than seven. Remembering a ghost writes one slot of its bucket;
//! looking one up reads one bucket. (A FIFO queue beside a hash set touched
//! the set twice per eviction, the new ghost in and the oldest out, and the
//! queue once.) The table grows with the ghosts made, up to the bound; a
//! grown table starts empty.

/// Slots per bucket: seven `u32` and the bucket's cursor, 32 bytes.
const WAYS: usize = 7;
/// The fingerprint's bits kept in a slot, below its epoch's 8 bits.
const FP_BITS: u32 = 24;
const FP_MASK: u32 = (1 << FP_BITS) - 1;
/// Epochs a ghost lives, at most. Ages are 8-bit: a slot is overwritten
/// long before its epoch could come round again.
const EPOCHS: u32 = 32;
/// A free slot. A fingerprint of 0 is kept as 1, so a held slot is never
/// 0.
const EMPTY: u32 = 0;

/// A FIFO of ghosts: `slots[cursor]` is the oldest, the next to be
/// overwritten.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(32))]
struct Bucket {
    slots: [u32; WAYS],
    cursor: u32,
}

#[derive(Debug, Default)]
pub(crate) struct Ghosts {
    /// Never pushed to: replaced whole when it grows (a boxed slice, 8 bytes
    /// less of the shard's header than a `Vec`).
    buckets: Box<[Bucket]>,
    /// The epoch of the newest ghost (its low 8 bits are what slots keep).
    epoch: u8,
    /// Ghosts made in the current epoch.
    in_epoch: u32,
    /// Ghosts per epoch, and epochs a ghost lives (at most [`EPOCHS`]):
    /// `step * window` is the bound to within one step.
    step: u32,
    window: u8,
    /// The bound they were computed for.
    bound: u32,
    /// Ghosts remembered, counted up to the bound: the table is sized for
    /// the fewer of the two, so a shard that has evicted a few entries
    /// holds a few slots, not slots for a whole shard of ghosts.
    made: u32,
    /// The next bucket [`clear_dead`](Self::clear_dead) empties of dead
    /// ghosts.
    swept: u32,
}

impl Ghosts {
    /// What a slot keeps of `fp` (the bucket is chosen by its high bits).
    #[inline]
    fn kept(fp: u32) -> u32 {
        (fp & FP_MASK).max(1)
    }

    /// The bucket of `fp` among `n`: the fingerprint scaled to `0..n` (its
    /// high bits choose, so any `n` works, not only powers of two).
    #[inline]
    fn bucket_of(fp: u32, n: usize) -> usize {
        ((u64::from(fp) * n as u64) >> 32) as usize
    }

    /// Whether `slot` holds a ghost younger than the window.
    #[inline]
    fn live(&self, slot: u32) -> bool {
        let age = u32::from(self.epoch.wrapping_sub((slot >> FP_BITS) as u8));
        slot != EMPTY && age < u32::from(self.window)
    }

    /// The slot of bucket `b` that holds `kept` as a live ghost. Slots are
    /// compared two at a time (a zero-lane test on `u64`s); only a slot the
    /// test reports (a match, or rarely the slot above one) is then looked
    /// at alone, so a bucket holding old ghosts of the same key costs a
    /// few instructions each, not a pass over every slot.
    #[inline(always)]
    fn find(&self, b: usize, kept: u32) -> Option<usize> {
        const ONES: u64 = 0x0000_0001_0000_0001;
        const TOPS: u64 = 0x8000_0000_8000_0000;
        const MASKS: u64 = FP_MASK as u64 * ONES;
        let s = &self.buckets[b].slots;
        let pattern = u64::from(kept) * ONES;
        let zero_lanes = |lo: u32, hi: u32| {
            let v = ((u64::from(lo) | u64::from(hi) << 32) ^ pattern) & MASKS;
            v.wrapping_sub(ONES) & !v & TOPS
        };
        let reported = [
            zero_lanes(s[0], s[1]),
            zero_lanes(s[2], s[3]),
            zero_lanes(s[4], s[5]),
        ];
        let last = s[WAYS - 1] & FP_MASK == kept;
        if reported == [0; 3] && !last {
            return None;
        }
        for (pair, mut lanes) in reported.into_iter().enumerate() {
            while lanes != 0 {
                let w = 2 * pair + (lanes.trailing_zeros() / 32) as usize;
                if s[w] & FP_MASK == kept && self.live(s[w]) {
                    return Some(w);
                }
                lanes &= lanes - 1;
            }
        }
        (last && self.live(s[WAYS - 1])).then_some(WAYS - 1)
    }

    /// Whether `fp` is a ghost; if so it is forgotten (its key is back),
    /// every copy of it.
    #[inline]
    pub(crate) fn take(&mut self, fp: u32) -> bool {
        let n = self.buckets.len();
        if n == 0 {
            return false;
        }
        let b = Self::bucket_of(fp, n);
        let kept = Self::kept(fp);
        let mut found = false;
        while let Some(w) = self.find(b, kept) {
            self.buckets[b].slots[w] = EMPTY;
            found = true;
        }
        found
    }

    /// Remembers `fp` as the newest ghost, and that about the newest
    /// `bound` are ghosts (the table grows to hold them; it never
    /// shrinks).
    ///
    /// No look for `fp` first: the shard remembers a key as it leaves the
    /// small queue, and the key's own ghost was taken when it was inserted,
    /// so `fp` is live here only when another key's ghost shares it (a
    /// fingerprint collision). It then takes a second slot, and
    /// [`take`](Self::take) forgets both. (The look cost about 25
    /// instructions an eviction.)
    #[inline(always)]
    pub(crate) fn remember(&mut self, fp: u32, bound: usize) {
        let bound = u32::try_from(bound)
            .unwrap_or(u32::MAX)
            .clamp(1, u32::MAX / 4);
        if bound != self.bound {
            self.set_bound(bound);
        }
        if self.made < bound {
            self.made += 1;
            if self.made as usize * 7 > self.buckets.len() * WAYS * 4 {
                // Doubling while few ghosts were made (a shard that evicts
                // now and then keeps a few slots); past a 64th of the bound,
                // room for the whole bound at once. A table grows empty, so
                // its last growth drops at most about a 32nd of a bound.
                let ghosts = if self.made <= bound / 64 {
                    self.made * 2
                } else {
                    bound
                };
                self.grow(ghosts as usize);
            }
        }
        let kept = Self::kept(fp);
        let b = Self::bucket_of(fp, self.buckets.len());
        if self.in_epoch >= self.step {
            self.epoch = self.epoch.wrapping_add(1);
            self.in_epoch = 0;
            self.clear_dead();
        }
        self.in_epoch += 1;
        let bucket = &mut self.buckets[b];
        let at = (bucket.cursor as usize).min(WAYS - 1);
        bucket.slots[at] = (u32::from(self.epoch) << FP_BITS) | kept;
        bucket.cursor = if at + 1 == WAYS { 0 } else { at as u32 + 1 };
    }

    /// Empties the dead ghosts of the next 128th of the buckets, at each
    /// new epoch: every slot is looked at once in 128 epochs, so a ghost
    /// (dead at an age of [`EPOCHS`] at most) is emptied before an age of
    /// 160 epochs, before its 8-bit epoch could read as a current one
    /// again (at 256). Without it a slot that its bucket's cursor did not
    /// reach for 256 epochs came back as a live ghost. About half a slot
    /// looked at per ghost made, in order.
    #[inline(never)]
    fn clear_dead(&mut self) {
        let n = self.buckets.len();
        if n == 0 {
            return;
        }
        let start = (self.swept as usize).min(n - 1);
        let end = (start + n.div_ceil(128)).min(n);
        let (epoch, window) = (self.epoch, u32::from(self.window));
        for bucket in &mut self.buckets[start..end] {
            for slot in &mut bucket.slots {
                let age = u32::from(epoch.wrapping_sub((*slot >> FP_BITS) as u8));
                if age >= window {
                    *slot = EMPTY;
                }
            }
        }
        self.swept = if end == n { 0 } else { end as u32 };
    }

    /// Sets the bound: the epochs' length. (The table's size follows the
    /// ghosts made, up to the bound.)
    #[cold]
    fn set_bound(&mut self, bound: u32) {
        self.bound = bound;
        self.step = bound.div_ceil(EPOCHS);
        // At most `EPOCHS`, so it fits.
        self.window = bound.div_ceil(self.step) as u8;
        self.made = self.made.min(bound);
    }

    /// A table of 1.875 slots per ghost for `ghosts`, grown when the ghosts
    /// to hold pass 1.75 slots each (so a shard whose entries vary does not
    /// grow it at every new high). It starts empty: a slot keeps too few of
    /// a fingerprint's bits to move it, and a ghost is only a hint (a key
    /// that comes back before the table refills goes to the small queue, as
    /// a new key does).
    #[cold]
    fn grow(&mut self, ghosts: usize) {
        let n = (ghosts * 15 / 8).div_ceil(WAYS).max(1);
        self.buckets = vec![
            Bucket {
                slots: [EMPTY; WAYS],
                cursor: 0,
            };
            n
        ]
        .into_boxed_slice();
    }

    /// Live ghosts.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.buckets
            .iter()
            .flat_map(|b| b.slots)
            .filter(|&s| self.live(s))
            .count()
    }

    /// Slots, held or free.
    #[cfg(test)]
    pub(crate) fn slots(&self) -> usize {
        self.buckets.len() * WAYS
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{Ghosts, WAYS};

    /// The model: every remembered fingerprint with its number; the newest
    /// `bound` (by number) are ghosts.
    #[derive(Default)]
    struct Fifo {
        made: Vec<(u32, u32)>,
        newest: u32,
    }

    impl Fifo {
        fn live(&self, bound: u32) -> impl Iterator<Item = &(u32, u32)> {
            self.made
                .iter()
                .filter(move |&&(_, n)| self.newest - n < bound)
        }
        fn remember(&mut self, fp: u32) {
            self.newest += 1;
            self.made.push((fp, self.newest));
        }
        fn take(&mut self, fp: u32, bound: u32) -> bool {
            let newest = self.newest;
            let before = self.made.len();
            self.made.retain(|&(f, n)| !(f == fp && newest - n < bound));
            self.made.len() != before
        }
    }

    proptest! {
        /// With no more live ghosts than a bucket has slots (so no bucket
        /// is ever crowded), the table answers exactly as a FIFO of the
        /// newest `bound` ghosts does: a ghost is found until `bound` newer
        /// ones were made, and found once: one remembered again while live
        /// is held twice, and taking it forgets both; when the table grows
        /// (doubling with the ghosts made, up to the bound) it starts
        /// empty.
        #[test]
        fn ghosts_are_the_newest_bound_by_age(
            ops in prop::collection::vec((any::<bool>(), 0u32..40, 0u32..4), 0..400),
            bound in 1usize..=WAYS,
        ) {
            let mut ghosts = Ghosts::default();
            let mut model = Fifo::default();
            for (remember, low, high) in ops {
                // A few fingerprints spread over all buckets, told apart by
                // the bits a slot keeps; 0 is kept as 1, which the model
                // mirrors.
                let fp = (high << 30) | (high << 8) | low;
                if remember {
                    let slots = ghosts.slots();
                    ghosts.remember(fp, bound);
                    if ghosts.slots() != slots {
                        // The table grew with the ghosts made: it starts
                        // empty.
                        model.made.clear();
                    }
                    model.remember(fp.max(1));
                } else {
                    prop_assert_eq!(ghosts.take(fp), model.take(fp.max(1), bound as u32));
                }
                prop_assert_eq!(ghosts.len(), model.live(bound as u32).count());
            }
        }
    }

    #[test]
    fn a_ghost_leaves_after_bound_newer_ones() {
        let mut ghosts = Ghosts::default();
        for fp in 1..=20u32 {
            ghosts.remember((fp << 27) | fp, 6);
        }
        for fp in 1..=20u32 {
            assert_eq!(ghosts.take((fp << 27) | fp), fp > 14, "ghost {fp}");
        }
    }

    #[test]
    fn a_table_sized_for_its_bound_keeps_nearly_every_ghost() {
        let mut ghosts = Ghosts::default();
        // Spread over the whole range, as hashes are.
        let fps: Vec<u32> = (1..=4000u32).map(|i| i.wrapping_mul(0x9E37_79B9)).collect();
        for &fp in &fps {
            ghosts.remember(fp, 2000);
            assert!(ghosts.slots() <= 3 * 2000);
        }
        // About the newest 2,000 are live (to within an epoch), and only
        // a crowded bucket forgot a live one early.
        let live = ghosts.len();
        assert!((1900..=2000).contains(&live), "{live} live");
        let kept = fps[2100..].iter().filter(|&&fp| ghosts.take(fp)).count();
        assert!(kept > 1880, "{kept} of the newest 1,900 kept");
        assert!(
            fps[..1900].iter().all(|&fp| !ghosts.take(fp)),
            "an old ghost is live"
        );
        assert!(
            fps[2100..].iter().all(|&fp| !ghosts.take(fp)),
            "a ghost taken twice"
        );
    }

    #[test]
    fn a_dead_ghost_stays_dead_when_its_epoch_comes_round() {
        // Bound 64: epochs of two ghosts, a window of 32 epochs, and a
        // table of 18 buckets once 64 ghosts were made.
        let bound = 64;
        // Fingerprints whose high bits choose the last bucket.
        let other = |i: u32| 0xFF00_0000 | (i & 0xFFFF) | 1;
        let mut ghosts = Ghosts::default();
        for i in 0..bound {
            ghosts.remember(other(i), bound as usize);
        }
        let slots = ghosts.slots();
        // The first bucket: no later ghost shares it, so its slot is never
        // overwritten.
        let a = 0x0000_1234;
        ghosts.remember(a, bound as usize);
        // 256 epochs of ghosts elsewhere: the slot's 8-bit epoch reads as
        // the current one again.
        for i in 0..256 * 2 {
            ghosts.remember(other(i), bound as usize);
        }
        assert_eq!(ghosts.slots(), slots, "the table grew (and emptied)");
        assert!(!ghosts.take(a), "a ghost 256 epochs old came back");
    }

    #[test]
    fn zero_is_a_fingerprint_like_any_other() {
        let mut ghosts = Ghosts::default();
        assert!(!ghosts.take(0));
        ghosts.remember(0, 4);
        assert!(ghosts.take(0));
        assert!(!ghosts.take(0));
    }
}
