//! Signed envelopes: a keyed BLAKE3 hash (a MAC, used as HMAC would be)
//! over the Redis key and the envelope bytes, appended to them, so a value
//! written by anyone without the key, or moved to another key, is rejected.

/// Length of the tag appended to a signed envelope.
pub(crate) const TAG_LEN: usize = 32;

const CONTEXT: &str = "levee-cache 2026 L2 envelope MAC v1";

/// The MAC key, derived from the deployment secret given to the builder.
#[derive(Clone)]
pub(crate) struct Signer {
    key: [u8; 32],
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(<redacted>)")
    }
}

impl Signer {
    pub(crate) fn new(secret: &[u8]) -> Self {
        Signer {
            key: blake3::derive_key(CONTEXT, secret),
        }
    }

    fn tag(&self, redis_key: &[u8], payload: &[u8]) -> blake3::Hash {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(&(redis_key.len() as u64).to_le_bytes());
        h.update(redis_key);
        h.update(payload);
        h.finalize()
    }

    /// Appends the tag of `payload` stored under `redis_key`.
    pub(crate) fn sign(&self, redis_key: &[u8], payload: &mut Vec<u8>) {
        let tag = self.tag(redis_key, payload);
        payload.extend_from_slice(tag.as_bytes());
    }

    /// The payload of a signed value, if its tag verifies.
    pub(crate) fn verify<'a>(&self, redis_key: &[u8], stored: &'a [u8]) -> Option<&'a [u8]> {
        let split = stored.len().checked_sub(TAG_LEN)?;
        let (payload, tag) = stored.split_at(split);
        let tag: [u8; TAG_LEN] = tag.try_into().ok()?;
        // `blake3::Hash` compares in constant time.
        (self.tag(redis_key, payload) == blake3::Hash::from_bytes(tag)).then_some(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_binds_the_secret_the_key_and_the_bytes() {
        let signer = Signer::new(b"secret");
        let mut stored = b"payload".to_vec();
        signer.sign(b"k", &mut stored);
        assert_eq!(signer.verify(b"k", &stored), Some(&b"payload"[..]));
        assert_eq!(
            signer.verify(b"other", &stored),
            None,
            "moved to another key"
        );
        assert_eq!(Signer::new(b"other").verify(b"k", &stored), None);
        let mut tampered = stored.clone();
        tampered[0] ^= 1;
        assert_eq!(signer.verify(b"k", &tampered), None);
        assert_eq!(signer.verify(b"k", b"short"), None);
    }
}
