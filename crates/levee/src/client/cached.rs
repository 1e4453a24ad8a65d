//! [`CachedResponse`]: what the layer stores of a response, the rules for
//! storing it, and [`CacheStatus`]: where a served response came from.

use std::time::Duration;

use bytes::Bytes;
use http::header::CACHE_CONTROL;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use levee_cache::{Cached, Freshness, Loaded, Source};
use levee_core::SensitiveKey;

/// Headers that describe one connection, not the response: never stored.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// A response as the layer caches it: status, headers (less the
/// hop-by-hop ones) and the whole body. Cheap to clone (the body is
/// [`Bytes`]). Serialized for a Redis L2 as status, header pairs and body.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(into = "Wire", try_from = "Wire")]
pub struct CachedResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    /// The `Vary` names of the response and the hash of the values the
    /// request that loaded it had for them: a caller whose request has
    /// other values does not get this response.
    vary: Option<(Vec<HeaderName>, [u8; 32])>,
}

impl CachedResponse {
    /// The response's status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The response's headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The response's body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// A response with this status, these headers and this body.
    pub(crate) fn to_response(&self) -> Response<Full<Bytes>> {
        let mut r = Response::new(Full::new(self.body.clone()));
        *r.status_mut() = self.status;
        *r.headers_mut() = self.headers.clone();
        r
    }

    /// The names in the response's `Vary` and the loading request's hash.
    pub(crate) fn vary(&self) -> Option<(&[HeaderName], &[u8; 32])> {
        self.vary.as_ref().map(|(n, h)| (n.as_slice(), h))
    }
}

/// Whether (and for how long) a loaded response may be stored: set by the
/// loader on the response's extensions, read by the pipeline's mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Store {
    /// Never stored: handed to the callers of this load only.
    No,
    /// Stored for the cache's TTL, or for `max-age` if shorter.
    Yes(Option<Duration>),
}

/// The storing rule: a response is stored when its status is one HTTP
/// calls cacheable by default (200, 203, 204, 300, 301, 308, 404, 410),
/// its `Cache-Control` has no `no-store` or `no-cache` (the layer cannot
/// revalidate), nor `private` when the cache is shared (a Redis L2), and
/// `vary_ok` (its `Vary` list is the one the key was built with). A
/// `max-age` (or, for a shared cache, `s-maxage`) shorter than the TTL
/// becomes the entry's TTL.
pub(crate) fn store_rule(
    status: StatusCode,
    headers: &HeaderMap,
    shared: bool,
    vary_ok: bool,
) -> Store {
    let cacheable_status = matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 410
    );
    if !cacheable_status || !vary_ok {
        return Store::No;
    }
    let mut max_age = None;
    let mut s_maxage = None;
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(value) = value.to_str() else {
            return Store::No;
        };
        for directive in value.split(',') {
            let (name, arg) = match directive.split_once('=') {
                Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                None => (directive.trim(), None),
            };
            let secs = || {
                arg.and_then(|a| a.parse::<u64>().ok())
                    .map(Duration::from_secs)
            };
            let never = name.eq_ignore_ascii_case("no-store")
                || name.eq_ignore_ascii_case("no-cache")
                || (shared && name.eq_ignore_ascii_case("private"));
            if never {
                return Store::No;
            } else if name.eq_ignore_ascii_case("max-age") {
                max_age = secs();
            } else if name.eq_ignore_ascii_case("s-maxage") && shared {
                s_maxage = secs();
            }
        }
    }
    Store::Yes(s_maxage.or(max_age))
}

/// The pipeline's mapping: a collected response becomes the cached value,
/// stored or not as its [`Store`] mark says.
pub(crate) fn to_loaded(r: Response<Bytes>) -> Loaded<CachedResponse> {
    let store = r.extensions().get::<Store>().copied().unwrap_or(Store::No);
    let vary = r
        .extensions()
        .get::<VaryMark>()
        .map(|m| (m.0.clone(), *m.1.hash_bytes()));
    let (mut parts, body) = r.into_parts();
    for name in HOP_BY_HOP {
        parts.headers.remove(name);
    }
    let value = CachedResponse {
        status: parts.status,
        headers: parts.headers,
        body,
        vary,
    };
    match store {
        Store::No => Loaded::ValueUntil(value, Duration::ZERO),
        Store::Yes(None) => Loaded::Value(value),
        Store::Yes(Some(ttl)) => Loaded::ValueWithTtl(value, ttl),
    }
}

/// The `Vary` names of a loaded response and the loading request's hash
/// of them, carried to [`to_loaded`] on the response's extensions.
#[derive(Debug, Clone)]
pub(crate) struct VaryMark(pub(crate) Vec<HeaderName>, pub(crate) SensitiveKey);

/// Where a response the layer served came from, and how fresh it is: in
/// every response's extensions, and in the optional
/// [`cache_header`](super::LeveeLayerBuilder::cache_header).
///
/// The header's values: `fresh; source=l1`, `fresh; source=l2`,
/// `fresh; source=upstream`, `stale; tier=secondary; age=3600` (seconds
/// past its freshness), `fallback`, and `bypass` for a request that does
/// not use the cache (a method other than GET and HEAD, an over-long URI).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheStatus {
    /// Answered through the cache: from a tier, a load, or the fallback.
    Lookup {
        /// Which layer answered.
        source: Source,
        /// Fresh, or stale by how much and under which tier.
        freshness: Freshness,
    },
    /// Sent once to the upstream without the cache.
    Bypass,
}

impl CacheStatus {
    pub(crate) fn of<V>(cached: &Cached<V>) -> Self {
        CacheStatus::Lookup {
            source: cached.source,
            freshness: cached.freshness.clone(),
        }
    }

    /// Whether a stale value was served.
    pub fn is_stale(&self) -> bool {
        matches!(self, CacheStatus::Lookup { freshness, .. } if freshness.is_stale())
    }

    /// The header value, e.g. `stale; tier=secondary; age=3600`.
    pub fn header_value(&self) -> String {
        match self {
            CacheStatus::Bypass => "bypass".to_string(),
            CacheStatus::Lookup {
                source: Source::Fallback,
                ..
            } => "fallback".to_string(),
            CacheStatus::Lookup {
                freshness: Freshness::Stale { tier, age },
                ..
            } => format!("stale; tier={tier}; age={}", age.as_secs()),
            CacheStatus::Lookup { source, .. } => {
                let from = match source {
                    Source::L1 => "l1",
                    Source::L2 => "l2",
                    _ => "upstream",
                };
                format!("fresh; source={from}")
            }
        }
    }

    /// Puts this status on `response`: the extension, and the header when
    /// `header` is set (skipped if a tier's name is no valid header text).
    pub(crate) fn mark<B>(self, response: &mut Response<B>, header: Option<&HeaderName>) {
        if let Some(name) = header
            && let Ok(value) = HeaderValue::try_from(self.header_value())
        {
            response.headers_mut().insert(name.clone(), value);
        }
        response.extensions_mut().insert(self);
    }
}

/// The serialized form of a [`CachedResponse`].
#[derive(serde::Serialize, serde::Deserialize)]
struct Wire {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    vary: Option<(Vec<String>, Vec<u8>)>,
}

impl From<CachedResponse> for Wire {
    fn from(c: CachedResponse) -> Self {
        Wire {
            status: c.status.as_u16(),
            headers: c
                .headers
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
                .collect(),
            body: c.body.to_vec(),
            vary: c.vary.map(|(names, hash)| {
                (
                    names.iter().map(|n| n.as_str().to_string()).collect(),
                    hash.to_vec(),
                )
            }),
        }
    }
}

impl TryFrom<Wire> for CachedResponse {
    type Error = String;

    /// Headers that do not parse (another version's) are dropped; a value
    /// whose status or `Vary` cannot be read back is refused (a miss).
    fn try_from(w: Wire) -> Result<Self, String> {
        let mut headers = HeaderMap::new();
        for (k, v) in w.headers {
            if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
                headers.append(k, v);
            }
        }
        let vary = match w.vary {
            None => None,
            Some((names, hash)) => {
                let names = names
                    .into_iter()
                    .map(HeaderName::try_from)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("a stored Vary name: {e}"))?;
                let hash: [u8; 32] = hash
                    .try_into()
                    .map_err(|_| "a stored Vary hash is not 32 bytes".to_string())?;
                Some((names, hash))
            }
        };
        Ok(CachedResponse {
            status: StatusCode::from_u16(w.status).map_err(|e| format!("a stored status: {e}"))?,
            headers,
            body: Bytes::from(w.body),
            vary,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CACHE_CONTROL, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn the_store_rule_follows_cache_control_status_and_vary() {
        let ok = StatusCode::OK;
        assert_eq!(
            store_rule(ok, &HeaderMap::new(), true, true),
            Store::Yes(None)
        );
        assert_eq!(store_rule(ok, &cc("No-Store"), false, true), Store::No);
        assert_eq!(
            store_rule(ok, &cc("max-age=0, no-cache"), false, true),
            Store::No
        );
        assert_eq!(store_rule(ok, &cc("private"), true, true), Store::No);
        assert_eq!(
            store_rule(ok, &cc("private, max-age=60"), false, true),
            Store::Yes(Some(Duration::from_secs(60)))
        );
        assert_eq!(
            store_rule(ok, &cc("max-age=600, s-maxage=\"30\""), true, true),
            Store::Yes(Some(Duration::from_secs(30))),
            "a shared cache reads s-maxage first"
        );
        assert_eq!(store_rule(ok, &HeaderMap::new(), false, false), Store::No);
        assert_eq!(
            store_rule(StatusCode::NOT_FOUND, &HeaderMap::new(), false, true),
            Store::Yes(None)
        );
        for status in [
            StatusCode::UNAUTHORIZED,
            StatusCode::PARTIAL_CONTENT,
            StatusCode::FOUND,
        ] {
            assert_eq!(
                store_rule(status, &HeaderMap::new(), false, true),
                Store::No
            );
        }
    }

    #[test]
    fn a_not_stored_response_is_usable_for_no_time() {
        let mut r = Response::new(Bytes::from_static(b"x"));
        r.headers_mut()
            .insert("transfer-encoding", HeaderValue::from_static("chunked"));
        r.extensions_mut().insert(Store::No);
        match to_loaded(r) {
            Loaded::ValueUntil(v, d) => {
                assert_eq!(d, Duration::ZERO);
                assert!(
                    !v.headers().contains_key("transfer-encoding"),
                    "hop-by-hop dropped"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_header_says_source_and_freshness() {
        let stale = CacheStatus::Lookup {
            source: Source::L2,
            freshness: Freshness::Stale {
                tier: "secondary".into(),
                age: Duration::from_millis(3_600_900),
            },
        };
        assert_eq!(stale.header_value(), "stale; tier=secondary; age=3600");
        let fresh = CacheStatus::Lookup {
            source: Source::L2,
            freshness: Freshness::Fresh,
        };
        assert_eq!(fresh.header_value(), "fresh; source=l2");
        assert_eq!(CacheStatus::Bypass.header_value(), "bypass");
    }

    #[test]
    fn the_stored_form_round_trips_and_refuses_a_bad_vary() {
        let mut r = Response::new(Bytes::from_static(b"{}"));
        r.headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
        r.extensions_mut().insert(Store::Yes(None));
        let Loaded::Value(v) = to_loaded(r) else {
            panic!("stored")
        };
        let json = serde_json::to_string(&v).unwrap();
        let back: CachedResponse = serde_json::from_str(&json).unwrap();
        assert_eq!((back.status(), back.body()), (v.status(), v.body()));
        assert_eq!(back.headers(), v.headers());
        let bad = r#"{"status":200,"headers":[],"body":[],"vary":[["accept"],[1,2]]}"#;
        assert!(serde_json::from_str::<CachedResponse>(bad).is_err());
    }
}
