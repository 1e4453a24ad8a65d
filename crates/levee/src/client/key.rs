//! [`RequestKey`]: what a request is cached and limited under, and the
//! `Vary` lists learned per URI that decide which request headers count.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use http::header::{AUTHORIZATION, VARY};
use http::{HeaderMap, HeaderName, Method};
use levee_core::{KeyHasher, RedisKey, SensitiveKey};

/// The key of one request: its method, its URI, a keyed hash of its
/// credential and a keyed hash of the request headers its URI's responses
/// name in `Vary`.
///
/// The credential is the `Authorization` header: for `Bearer` the token
/// alone goes through the [`KeyHasher`] (so `hasher.key(token)` elsewhere
/// gives the same hash), for any other scheme the whole value does. The
/// raw credential is never kept. The `Vary`'d values are hashed too (they
/// may be cookies). The Redis encoding is `METHOD URI CREDENTIAL VARY`,
/// each hash in hex or `-` when absent (a URI holds no space).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RequestKey {
    method: Method,
    uri: Box<str>,
    credential: Option<SensitiveKey>,
    vary: Option<SensitiveKey>,
}

impl RequestKey {
    /// The request's method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The request's URI, as sent.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The hashed credential, if the request carried one.
    pub fn credential(&self) -> Option<&SensitiveKey> {
        self.credential.as_ref()
    }
}

impl std::fmt::Debug for RequestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestKey")
            .field("method", &self.method)
            .field("uri", &self.uri)
            .field("credential", &self.credential.is_some())
            .field("vary", &self.vary.is_some())
            .finish()
    }
}

impl RedisKey for RequestKey {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.uri.as_bytes());
        for hash in [&self.credential, &self.vary] {
            out.push(b' ');
            match hash {
                Some(h) => h.write_redis_key(out),
                None => out.push(b'-'),
            }
        }
    }
}

/// Makes [`RequestKey`]s.
#[derive(Debug)]
pub(crate) struct KeyMaker {
    pub(crate) hasher: KeyHasher,
}

impl KeyMaker {
    /// The key of a request to `uri` with `headers`, counting the headers
    /// named in `vary`.
    pub(crate) fn key(
        &self,
        method: &Method,
        uri: &str,
        headers: &HeaderMap,
        vary: &[HeaderName],
    ) -> RequestKey {
        RequestKey {
            method: method.clone(),
            uri: Box::from(uri),
            credential: self.credential(headers),
            vary: self.vary_hash(headers, vary),
        }
    }

    fn credential(&self, headers: &HeaderMap) -> Option<SensitiveKey> {
        let value = headers.get(AUTHORIZATION)?.as_bytes();
        match value.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => {
                Some(self.hasher.key(value[7..].trim_ascii()))
            }
            // A leading NUL (never in a header value) keeps these apart
            // from bearer tokens.
            _ => Some(self.hasher.key([b"\0", value].concat())),
        }
    }

    /// A keyed hash of the values of the headers named in `vary` (names
    /// sorted, so the order a response lists them in does not matter).
    pub(crate) fn vary_hash(
        &self,
        headers: &HeaderMap,
        vary: &[HeaderName],
    ) -> Option<SensitiveKey> {
        if vary.is_empty() {
            return None;
        }
        let mut buf = Vec::new();
        for name in vary {
            buf.extend_from_slice(name.as_str().as_bytes());
            buf.push(b':');
            for value in headers.get_all(name) {
                let v = value.as_bytes();
                buf.extend_from_slice(&u32::try_from(v.len()).unwrap_or(u32::MAX).to_le_bytes());
                buf.extend_from_slice(v);
            }
            buf.push(b'\n');
        }
        Some(self.hasher.key(buf))
    }
}

/// What a response's `Vary` header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Vary {
    /// These request headers (sorted, deduplicated; maybe none).
    Names(Arc<[HeaderName]>),
    /// `Vary: *`, more names than the layer keeps, or a name that does not
    /// parse: the response is never stored.
    Uncacheable,
}

impl Vary {
    /// Parses the `Vary` fields of `headers`, reading at most `max` names.
    pub(crate) fn of(headers: &HeaderMap, max: usize) -> Vary {
        let mut names: Vec<HeaderName> = Vec::new();
        for value in headers.get_all(VARY) {
            let Ok(value) = value.to_str() else {
                return Vary::Uncacheable;
            };
            for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                if name == "*" || names.len() >= max {
                    return Vary::Uncacheable;
                }
                match HeaderName::from_bytes(name.as_bytes()) {
                    Ok(n) => names.push(n),
                    Err(_) => return Vary::Uncacheable,
                }
            }
        }
        names.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        names.dedup();
        Vary::Names(names.into())
    }
}

/// The `Vary` list each URI's last response named, so that the next
/// request to the URI builds its key with the right headers. Bounded: once
/// `max_uris` are known, new URIs with a `Vary` are not recorded, and their
/// responses are not stored.
#[derive(Debug)]
pub(crate) struct VaryTable {
    lists: RwLock<HashMap<Box<str>, Arc<[HeaderName]>>>,
    max_uris: usize,
}

impl VaryTable {
    pub(crate) fn new(max_uris: usize) -> Self {
        VaryTable {
            lists: RwLock::new(HashMap::new()),
            max_uris,
        }
    }

    /// The list recorded for `uri` (empty when none is).
    pub(crate) fn get(&self, uri: &str) -> Arc<[HeaderName]> {
        let lists = self.lists.read().unwrap_or_else(PoisonError::into_inner);
        lists.get(uri).cloned().unwrap_or_else(|| Arc::from([]))
    }

    /// Records `names` for `uri`; whether the table now holds them.
    pub(crate) fn learn(&self, uri: &str, names: &Arc<[HeaderName]>) -> bool {
        let mut lists = self.lists.write().unwrap_or_else(PoisonError::into_inner);
        if names.is_empty() {
            lists.remove(uri);
            return true;
        }
        if let Some(known) = lists.get_mut(uri) {
            *known = names.clone();
            return true;
        }
        if lists.len() >= self.max_uris {
            return false;
        }
        lists.insert(Box::from(uri), names.clone());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn vary_names_are_sorted_deduplicated_and_capped() {
        let h = headers(&[("vary", "Accept-Language, accept"), ("vary", "accept")]);
        let Vary::Names(names) = Vary::of(&h, 8) else {
            panic!("parses")
        };
        assert_eq!(
            names.iter().map(HeaderName::as_str).collect::<Vec<_>>(),
            ["accept", "accept-language"]
        );
        assert_eq!(Vary::of(&h, 1), Vary::Uncacheable);
        assert_eq!(Vary::of(&headers(&[("vary", "*")]), 8), Vary::Uncacheable);
        assert_eq!(Vary::of(&headers(&[("vary", "a b")]), 8), Vary::Uncacheable);
    }

    #[test]
    fn a_hostile_vary_list_stops_at_the_cap() {
        let long = (0..100_000)
            .map(|i| format!("h{i}"))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(
            Vary::of(&headers(&[("vary", &long)]), 16),
            Vary::Uncacheable
        );
    }

    #[test]
    fn the_key_holds_a_hash_of_the_token_never_the_token() {
        let maker = KeyMaker {
            hasher: KeyHasher::new("a deployment secret of some length"),
        };
        let h = headers(&[("authorization", "Bearer token-alice")]);
        let key = maker.key(&Method::GET, "http://idp/userinfo", &h, &[]);
        assert_eq!(key.credential(), Some(&maker.hasher.key("token-alice")));
        let redis = key.redis_key_string();
        assert!(!redis.contains("token-alice"), "{redis}");
        assert!(!format!("{key:?}").contains("token-alice"));
        let basic = headers(&[("authorization", "Basic token-alice")]);
        assert_ne!(
            maker.key(&Method::GET, "u", &basic, &[]).credential,
            key.credential
        );
    }

    #[test]
    fn the_vary_table_is_bounded() {
        let table = VaryTable::new(1);
        let names: Arc<[HeaderName]> = Arc::from([http::header::ACCEPT]);
        assert!(table.learn("a", &names));
        assert!(!table.learn("b", &names), "full: b is not recorded");
        assert!(table.get("b").is_empty());
        assert_eq!(table.get("a"), names);
    }
}
