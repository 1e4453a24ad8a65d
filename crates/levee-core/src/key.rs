//! Key encoding: how keys become bytes in Redis keys, and keyed hashing of
//! secrets (bearer tokens) so that they never reach Redis or logs.

use std::fmt;

/// How a key becomes bytes inside a Redis key.
///
/// The encoding must be injective (two different keys never give the same
/// bytes) and stable across processes and versions, since replicas share
/// what it writes.
///
/// ```
/// use levee_core::RedisKey;
/// assert_eq!("user:42".redis_key_string(), "user:42");
/// assert_eq!(42u64.redis_key_string(), "42");
/// ```
pub trait RedisKey {
    /// Appends this key's bytes to `out`.
    fn write_redis_key(&self, out: &mut Vec<u8>);

    /// This key's bytes as a new vector.
    fn redis_key_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_redis_key(&mut out);
        out
    }

    /// This key's bytes as a string (lossy for keys that are not UTF-8).
    fn redis_key_string(&self) -> String {
        String::from_utf8_lossy(&self.redis_key_bytes()).into_owned()
    }
}

impl<T: RedisKey + ?Sized> RedisKey for &T {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        (**self).write_redis_key(out)
    }
}

impl<T: RedisKey + ?Sized> RedisKey for Box<T> {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        (**self).write_redis_key(out)
    }
}

impl<T: RedisKey + ?Sized> RedisKey for std::sync::Arc<T> {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        (**self).write_redis_key(out)
    }
}

impl RedisKey for str {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes())
    }
}

impl RedisKey for String {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes())
    }
}

impl RedisKey for [u8] {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self)
    }
}

impl RedisKey for Vec<u8> {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self)
    }
}

macro_rules! int_keys {
    ($($t:ty),*) => {$(
        impl RedisKey for $t {
            fn write_redis_key(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(self.to_string().as_bytes())
            }
        }
    )*};
}
int_keys!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize
);

/// Makes [`SensitiveKey`]s from secrets (bearer tokens, API keys) with a
/// keyed hash (BLAKE3 in keyed mode) under a deployment secret.
///
/// Every replica of a deployment must use the same secret to share entries;
/// someone who reads Redis but lacks the secret cannot test guesses of a
/// token against the keys. Use at least 32 random bytes.
///
/// ```
/// use levee_core::KeyHasher;
/// let hasher = KeyHasher::new(b"0123456789abcdef0123456789abcdef".as_slice());
/// assert_eq!(hasher.key("token-a"), hasher.key("token-a"));
/// assert_ne!(hasher.key("token-a"), hasher.key("token-b"));
/// ```
#[derive(Clone)]
pub struct KeyHasher {
    key: [u8; 32],
}

impl KeyHasher {
    /// A hasher under `secret`. The secret is stretched into a 32-byte key
    /// (BLAKE3 key derivation), so any length works; short secrets are weak:
    /// prefer [`KeyHasher::try_new`] where the secret comes from config.
    pub fn new(secret: impl AsRef<[u8]>) -> Self {
        KeyHasher {
            key: blake3::derive_key("levee 2026 KeyHasher v1", secret.as_ref()),
        }
    }

    /// Like [`KeyHasher::new`], but refuses a secret shorter than 16 bytes.
    pub fn try_new(secret: impl AsRef<[u8]>) -> Result<Self, crate::CoreError> {
        let secret = secret.as_ref();
        if secret.len() < 16 {
            return Err(crate::CoreError::InvalidSetting {
                setting: "key_hasher_secret",
                reason: format!(
                    "the secret is {} bytes; use at least 16 (32 random bytes recommended)",
                    secret.len()
                ),
            });
        }
        Ok(Self::new(secret))
    }

    /// The keyed hash of `secret_value`; only the hash is kept.
    pub fn key(&self, secret_value: impl AsRef<[u8]>) -> SensitiveKey {
        SensitiveKey {
            hash: *blake3::keyed_hash(&self.key, secret_value.as_ref()).as_bytes(),
        }
    }
}

impl fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHasher(<redacted>)")
    }
}

/// A key made from a secret by [`KeyHasher`]: holds only the keyed hash.
///
/// Its `Debug` and `Display` print `SensitiveKey(<redacted>)`; its Redis
/// encoding is the hash in lowercase hex (64 characters).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SensitiveKey {
    hash: [u8; 32],
}

impl SensitiveKey {
    /// The keyed hash itself.
    pub fn hash_bytes(&self) -> &[u8; 32] {
        &self.hash
    }
}

impl fmt::Debug for SensitiveKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SensitiveKey(<redacted>)")
    }
}

impl fmt::Display for SensitiveKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SensitiveKey(<redacted>)")
    }
}

impl RedisKey for SensitiveKey {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        out.reserve(64);
        for b in self.hash {
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_key_never_prints_the_token_or_hash() {
        let k = KeyHasher::new("secret-secret-secret").key("eyJ.token.value");
        let hex = k.redis_key_string();
        for shown in [format!("{k:?}"), format!("{k}")] {
            assert!(!shown.contains("eyJ"));
            assert!(!shown.contains(&hex[..8]));
            assert!(shown.contains("redacted"));
        }
    }

    #[test]
    fn different_secrets_give_different_keys() {
        let a = KeyHasher::new("secret-one-secret-one").key("tok");
        let b = KeyHasher::new("secret-two-secret-two").key("tok");
        assert_ne!(a, b);
    }

    #[test]
    fn redis_encoding_is_lowercase_hex_of_hash() {
        let k = KeyHasher::new("s3cr3t-s3cr3t-s3cr3t").key("tok");
        let s = k.redis_key_string();
        assert_eq!(s.len(), 64);
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert!(!s.contains("tok"));
    }

    #[test]
    fn try_new_rejects_short_secret_and_names_the_setting() {
        let err = KeyHasher::try_new("short").unwrap_err();
        assert!(err.to_string().contains("key_hasher_secret"), "{err}");
        assert!(KeyHasher::try_new("sixteen-bytes-ok").is_ok());
    }

    #[test]
    fn integer_and_string_keys_encode_as_text() {
        assert_eq!(7u32.redis_key_bytes(), b"7");
        assert_eq!((-7i64).redis_key_string(), "-7");
        assert_eq!(String::from("a:b").redis_key_string(), "a:b");
    }
}
