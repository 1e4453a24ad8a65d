//! S3-FIFO's ghost queue: fingerprints of keys recently evicted from the
//! small queue, oldest first, and the same as a set, so that a key that
//! comes back soon goes straight to the main queue.
//!
//! The set is an open-addressed table of `u32` fingerprints with linear
//! probing, kept at most half full, with backward-shift deletion: no
//! tombstones, so the steady churn of one insert and one removal per
//! eviction never rehashes in place, and a probe is a few adjacent words.
//! (A general hash set spent more on this churn than the rest of an
//! eviction.)

use std::collections::VecDeque;

/// An empty slot of the table. A fingerprint of 0 is stored as 1.
const EMPTY: u32 = 0;

#[derive(Debug, Default)]
pub(crate) struct Ghosts {
    /// Oldest first. May hold fingerprints no longer in `set` (taken by a
    /// returning key); their removal when they leave is then a no-op.
    queue: VecDeque<u32>,
    set: FingerprintSet,
}

impl Ghosts {
    /// Whether `fp` is a ghost; if so it is forgotten (its key is back).
    pub(crate) fn take(&mut self, fp: u32) -> bool {
        self.set.remove(fp)
    }

    /// Remembers `fp` as the newest ghost, then forgets the oldest until at
    /// most `bound` are queued.
    pub(crate) fn remember(&mut self, fp: u32, bound: usize) {
        if self.set.insert(fp) {
            self.queue.push_back(fp);
        }
        while self.queue.len() > bound {
            if let Some(old) = self.queue.pop_front() {
                self.set.remove(old);
            }
        }
    }

    /// Ghosts queued.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Fingerprints in the set (never more than are queued).
    #[cfg(test)]
    pub(crate) fn set_len(&self) -> usize {
        self.set.len
    }
}

/// A set of non-zero `u32`s (0 is stored as 1).
#[derive(Debug, Default)]
struct FingerprintSet {
    /// A power of two long (or empty); `EMPTY` marks a free slot.
    slots: Vec<u32>,
    len: usize,
}

impl FingerprintSet {
    #[inline]
    fn stored(fp: u32) -> u32 {
        fp.max(1)
    }

    #[inline]
    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    /// Where `fp` is, or the free slot that ends its probe.
    #[inline]
    fn probe(&self, fp: u32) -> (usize, bool) {
        let mask = self.mask();
        let mut i = fp as usize & mask;
        loop {
            match self.slots[i] {
                EMPTY => return (i, false),
                x if x == fp => return (i, true),
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Adds `fp`; false if it was there.
    fn insert(&mut self, fp: u32) -> bool {
        let fp = Self::stored(fp);
        if 2 * (self.len + 1) > self.slots.len() {
            self.grow();
        }
        let (i, found) = self.probe(fp);
        if found {
            return false;
        }
        self.slots[i] = fp;
        self.len += 1;
        true
    }

    /// Removes `fp`; false if it was not there.
    fn remove(&mut self, fp: u32) -> bool {
        if self.len == 0 {
            return false;
        }
        let (mut hole, found) = self.probe(Self::stored(fp));
        if !found {
            return false;
        }
        // Backward shift: pull later members of the run into the hole when
        // the hole lies on their probe path (cyclically in [home, j)).
        let mask = self.mask();
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let x = self.slots[j];
            if x == EMPTY {
                break;
            }
            let home = x as usize & mask;
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.slots[hole] = x;
                hole = j;
            }
        }
        self.slots[hole] = EMPTY;
        self.len -= 1;
        true
    }

    fn grow(&mut self) {
        let cap = (self.slots.len() * 2).max(16);
        let old = std::mem::replace(&mut self.slots, vec![EMPTY; cap]);
        for x in old.into_iter().filter(|&x| x != EMPTY) {
            let (i, _) = self.probe(x);
            self.slots[i] = x;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::FingerprintSet;

    proptest! {
        /// Any sequence of inserts and removals (on a small range, so that
        /// runs collide and wrap) answers as a `HashSet` does, and every
        /// member stays findable after the removals' backward shifts.
        #[test]
        fn the_fingerprint_set_behaves_as_a_set(ops in prop::collection::vec((any::<bool>(), 0u32..64), 0..400)) {
            let mut set = FingerprintSet::default();
            let mut model = HashSet::new();
            for (add, x) in ops {
                // 0 is stored as 1: model that.
                let m = x.max(1);
                if add {
                    prop_assert_eq!(set.insert(x), model.insert(m));
                } else {
                    prop_assert_eq!(set.remove(x), model.remove(&m));
                }
                prop_assert_eq!(set.len, model.len());
                for &y in &model {
                    prop_assert!(set.probe(y).1, "{} lost", y);
                }
            }
        }
    }

    #[test]
    fn high_bits_and_wrapping_runs_are_kept_apart() {
        let mut set = FingerprintSet::default();
        // All share their low bits: one long run that wraps the table.
        let xs: Vec<u32> = (1..=7).map(|i| (i << 28) | 15).collect();
        for &x in &xs {
            assert!(set.insert(x));
        }
        assert!(set.remove(xs[2]));
        for (i, &x) in xs.iter().enumerate() {
            assert_eq!(set.probe(x).1, i != 2);
        }
    }
}
