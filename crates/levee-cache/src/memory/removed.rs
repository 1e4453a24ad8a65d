//! What one cache operation removed, for the stats and the eviction
//! listener, reported after the shard's lock is released.

use super::entry::EvictionCause;

/// A removed entry: its key, its value and why it left.
pub(crate) type Removal<K, V> = (K, V, EvictionCause);

/// The entries one operation removed, in the order they left. The first
/// two are held inline: an insert removes at most the key's old value and
/// one evicted entry (more only when a weigher makes one insert evict
/// several), so an insert that evicts allocates nothing for its report.
pub(crate) struct Removed<K, V> {
    first: Option<Removal<K, V>>,
    second: Option<Removal<K, V>>,
    more: Vec<Removal<K, V>>,
}

impl<K, V> Removed<K, V> {
    pub(crate) fn new() -> Self {
        Removed {
            first: None,
            second: None,
            more: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, removal: Removal<K, V>) {
        if self.first.is_none() {
            self.first = Some(removal);
        } else if self.second.is_none() {
            self.second = Some(removal);
        } else {
            self.more.push(removal);
        }
    }
}

impl<K, V> Removed<K, V> {
    /// Hands each removal to `f`, in order (no iterator: it would move the
    /// whole inline buffer once more).
    pub(crate) fn each(self, mut f: impl FnMut(Removal<K, V>)) {
        let Removed {
            first,
            second,
            more,
        } = self;
        if let Some(r) = first {
            f(r);
        }
        if let Some(r) = second {
            f(r);
        }
        more.into_iter().for_each(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removals_come_back_in_the_order_they_were_pushed() {
        for n in 0..6u32 {
            let mut removed = Removed::new();
            for i in 0..n {
                removed.push((i, i * 10, EvictionCause::Evicted));
            }
            let mut back = Vec::new();
            removed.each(|(k, _, _)| back.push(k));
            assert_eq!(back, (0..n).collect::<Vec<_>>());
        }
    }
}
