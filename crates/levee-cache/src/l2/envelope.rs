//! The envelope a value is stored in on L2: format version, the times that
//! decide its freshness (wall-clock unix milliseconds, so every replica reads
//! them alike), how long its load took, and the value (or its absence).

use std::time::Duration;

/// The envelope format this build writes and reads.
pub(crate) const FORMAT_VERSION: u8 = 1;

/// A value as stored on L2.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Envelope<V> {
    /// When it was loaded (unix ms).
    pub(crate) written_at: u64,
    /// Fresh until (unix ms).
    pub(crate) fresh_until: u64,
    /// Served as stale until (unix ms): fresh until plus the last stale tier.
    pub(crate) stale_until: u64,
    /// How long the load took, for early refresh (XFetch).
    pub(crate) load_ms: u32,
    /// The value; `None`: the loader said the key is absent.
    pub(crate) value: Option<V>,
}

/// What an envelope's times say about it at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EnvelopeAge {
    /// Fresh for this much longer.
    Fresh(Duration),
    /// Past its fresh time by this much, still within its stale horizon.
    Stale(Duration),
    /// Past its stale horizon: as good as missing.
    Dead,
}

impl<V> Envelope<V> {
    /// Freshness at wall time `now` (unix ms).
    pub(crate) fn age_at(&self, now: u64) -> EnvelopeAge {
        if now < self.fresh_until {
            EnvelopeAge::Fresh(Duration::from_millis(self.fresh_until - now))
        } else if now < self.stale_until {
            EnvelopeAge::Stale(Duration::from_millis(now - self.fresh_until))
        } else {
            EnvelopeAge::Dead
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_follows_the_envelope_times() {
        let env = Envelope {
            written_at: 1_000,
            fresh_until: 2_000,
            stale_until: 5_000,
            load_ms: 3,
            value: Some(1u8),
        };
        let at = |ms: u64| ms;
        assert_eq!(
            env.age_at(at(1_500)),
            EnvelopeAge::Fresh(Duration::from_millis(500))
        );
        assert_eq!(env.age_at(at(2_000)), EnvelopeAge::Stale(Duration::ZERO));
        assert_eq!(
            env.age_at(at(4_999)),
            EnvelopeAge::Stale(Duration::from_millis(2_999))
        );
        assert_eq!(env.age_at(at(5_000)), EnvelopeAge::Dead);
    }
}
