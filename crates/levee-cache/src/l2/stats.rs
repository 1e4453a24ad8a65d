//! [`RedisL2Stats`].

/// Counters of a [`RedisL2`](crate::RedisL2) since it was built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisL2Stats {
    /// Redis commands sent (calls refused by the breaker are not sent).
    pub attempts: u64,
    /// Reads that found a usable envelope.
    pub hits: u64,
    /// Reads that found nothing.
    pub misses: u64,
    /// Envelopes written.
    pub writes: u64,
    /// Commands that failed with a Redis error.
    pub errors: u64,
    /// Commands that took longer than the timeout.
    pub timeouts: u64,
    /// Calls refused because the breaker was open.
    pub rejected: u64,
    /// Stored bytes that were not an envelope of this value type.
    pub corrupt: u64,
    /// Envelopes of a format version this build does not know.
    pub unknown_version: u64,
    /// Values over `max_value_bytes`, read or about to be written.
    pub oversized: u64,
    /// Signed values whose MAC did not verify (or unsigned ones, when
    /// signing is on).
    pub bad_signature: u64,
}
