//! Backplane messages: the publishing replica's id (8 bytes, big-endian),
//! a kind byte (`k`: one key, `a`: every key) and, for `k`, the key's bytes.

pub(crate) const KIND_KEY: u8 = b'k';
pub(crate) const KIND_ALL: u8 = b'a';

/// A message saying `key` was invalidated by `replica`.
pub(crate) fn key_message(replica: u64, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + key.len());
    out.extend_from_slice(&replica.to_be_bytes());
    out.push(KIND_KEY);
    out.extend_from_slice(key);
    out
}

/// A message saying every key was invalidated by `replica`.
pub(crate) fn all_message(replica: u64) -> Vec<u8> {
    let mut out = replica.to_be_bytes().to_vec();
    out.push(KIND_ALL);
    out
}
