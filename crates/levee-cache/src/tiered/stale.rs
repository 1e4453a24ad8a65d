//! Stale tiers: which tier's window covers a stale value's age, and serving
//! a stale value instead of an error.

use std::hash::Hash;
use std::sync::Arc;
use std::time::Instant;

use super::slot::Slot;
use super::{CacheError, Cached, Freshness, Shared, Source};

/// The tier name reported for a value served stale under
/// `stale_while_revalidate` when no configured tier covers its age.
const SWR_TIER: &str = "stale-while-revalidate";

impl<K, V> Shared<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The first tier whose window covers `age`.
    pub(crate) fn tier_for(&self, age: std::time::Duration) -> Option<Arc<str>> {
        self.cfg
            .tiers
            .iter()
            .find(|(_, max)| age <= *max)
            .map(|(n, _)| n.clone())
    }

    /// `slot` as a stale answer from `source`; under stale-while-revalidate
    /// a value no tier covers is labelled as such.
    pub(crate) fn serve_stale(
        &self,
        slot: &Slot<V>,
        now: Instant,
        swr: bool,
        source: Source,
    ) -> Option<Cached<V>> {
        let age = slot.age(now);
        let tier = self
            .tier_for(age)
            .or_else(|| swr.then(|| Arc::from(SWR_TIER)))?;
        self.stats.stale();
        slot.cached(Freshness::Stale { tier, age }, source)
    }

    /// After a failed load: a stale value if one fits a tier, else `err`.
    /// The load may have put a stale L2 value in L1 (`held` is what L1 held
    /// before it), so L1 is read again, and the answer says `L2` when the
    /// value held now is one the load brought from there.
    pub(crate) fn stale_after_failed_load<E>(
        &self,
        key: &K,
        held: Option<Slot<V>>,
        err: CacheError<E>,
    ) -> Result<Option<Cached<V>>, CacheError<E>> {
        let now_held = self.l1.peek(key, |slot, _| slot.clone());
        let brought = now_held
            .as_ref()
            .is_some_and(|n| n.from_l2 && held.as_ref().is_none_or(|h| !h.same_as(n)));
        let source = if brought { Source::L2 } else { Source::L1 };
        self.stale_or(now_held.or(held).as_ref(), source, err)
    }

    /// The held value if it is still fresh (its L1 copy was due for a check
    /// with L2) or stale within a tier; otherwise `err`. `source`: where
    /// the held value was read from.
    pub(crate) fn stale_or<E>(
        &self,
        held: Option<&Slot<V>>,
        source: Source,
        err: CacheError<E>,
    ) -> Result<Option<Cached<V>>, CacheError<E>> {
        let now = self.clock.now();
        if let Some(slot) = held {
            if slot.is_fresh(now) {
                return Ok(slot.cached(Freshness::Fresh, source));
            }
            if slot.value.is_some()
                && let Some(found) = self.serve_stale(slot, now, false, source)
            {
                return Ok(Some(found));
            }
        }
        Err(err)
    }
}
