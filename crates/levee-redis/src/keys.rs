//! [`Keyspace`]: how levee's components name their Redis keys, with Cluster
//! hash tags where one script touches keys that must share a slot.

use levee_core::RedisKey;

/// A key prefix (`levee:rl:`, `levee:userinfo:v1:`) and the keys under it.
///
/// [`key`](Self::key) appends a key's bytes as they are;
/// [`tagged`](Self::tagged) wraps them in a Cluster hash tag (`{...}`), so
/// that every key built from the same key lands in the same slot whatever
/// the prefix: the prefix stays outside the tag, the key inside.
///
/// ```
/// use levee_redis::Keyspace;
///
/// let limits = Keyspace::new(["levee", "rl"]);
/// assert_eq!(limits.tagged("user-42"), b"levee:rl:{user-42}");
/// let values = Keyspace::new(["levee", "userinfo", "v1"]);
/// assert_eq!(values.key("user-42"), b"levee:userinfo:v1:user-42");
/// assert_eq!(values.name("invalidate"), "levee:userinfo:v1:invalidate");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyspace {
    /// The parts joined with `:`, and a trailing `:`.
    prefix: Box<[u8]>,
}

impl Keyspace {
    /// A keyspace whose keys start with `parts` joined by `:`.
    pub fn new<I, S>(parts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut prefix = Vec::new();
        for part in parts {
            prefix.extend_from_slice(part.as_ref().as_bytes());
            prefix.push(b':');
        }
        Keyspace {
            prefix: prefix.into_boxed_slice(),
        }
    }

    /// The prefix, with its trailing `:`.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// `{prefix}:{key}`.
    pub fn key<K: RedisKey + ?Sized>(&self, key: &K) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.prefix.len() + 32);
        out.extend_from_slice(&self.prefix);
        key.write_redis_key(&mut out);
        out
    }

    /// `{prefix}:{{key}}`: the key in a Cluster hash tag.
    pub fn tagged<K: RedisKey + ?Sized>(&self, key: &K) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.prefix.len() + 34);
        out.extend_from_slice(&self.prefix);
        out.push(b'{');
        key.write_redis_key(&mut out);
        out.push(b'}');
        out
    }

    /// Calls `f` with `{prefix}:{key}` (as [`key`](Self::key) builds it),
    /// built in a buffer this thread reuses: no allocation per key.
    pub(crate) fn with_key<K: RedisKey + ?Sized, R>(
        &self,
        key: &K,
        f: impl FnOnce(&[u8]) -> R,
    ) -> R {
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut buf) => {
                buf.clear();
                buf.extend_from_slice(&self.prefix);
                key.write_redis_key(&mut buf);
                let out = f(&buf);
                // A rare huge key does not keep its buffer.
                if buf.capacity() > 4096 {
                    *buf = Vec::new();
                }
                out
            }
            // Only if `f` itself builds a key here: a buffer of its own.
            Err(_) => f(&self.key(key)),
        })
    }

    /// A name under the prefix (a channel, say), as a string.
    pub fn name(&self, suffix: &str) -> String {
        let mut out = String::from_utf8_lossy(&self.prefix).into_owned();
        out.push_str(suffix);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_key_sees_the_bytes_key_builds() {
        let space = Keyspace::new(["levee", "users", "v1"]);
        for k in ["", "a", "user-42", &"x".repeat(5000), "after a long one"] {
            assert_eq!(space.with_key(k, <[u8]>::to_vec), space.key(k));
            let nested = space.with_key(k, |outer| {
                (outer.to_vec(), space.with_key("inner", <[u8]>::to_vec))
            });
            assert_eq!(nested, (space.key(k), space.key("inner")));
        }
    }

    #[test]
    fn tagged_keys_of_one_key_share_the_tag_whatever_the_prefix() {
        let a = Keyspace::new(["a"]).tagged(&7u64);
        let b = Keyspace::new(["b", "c"]).tagged(&7u64);
        let tag = |k: &[u8]| {
            let open = k.iter().position(|&c| c == b'{').unwrap();
            let close = k.iter().position(|&c| c == b'}').unwrap();
            k[open + 1..close].to_vec()
        };
        assert_eq!(tag(&a), tag(&b));
        assert_ne!(a, b);
    }
}
