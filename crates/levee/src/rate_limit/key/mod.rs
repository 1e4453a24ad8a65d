//! Key extractors: what a request is counted against.
//!
//! Any `Fn(&Request<B>) -> Option<K>` is an extractor; the ready-made ones
//! are [`PeerIp`] (the client address, through trusted proxies),
//! [`HeaderKey`] (a header's value, e.g. an API key) and [`ExtensionKey`]
//! (a value an auth middleware put in the request's extensions).
//! `None` means "no key": the layer then follows its
//! [`MissingKey`](super::MissingKey) setting.

mod ip;

use std::marker::PhantomData;

use http::{HeaderName, Request};

pub use ip::{Cidr, ClientIp, ForwardedHeader, PeerIp, PeerIpBuilder};

/// Finds the key a request is counted against.
///
/// Implemented for every `Fn(&Request<B>) -> Option<K>`, so a closure is an
/// extractor; the built-in extractors implement it for every body type.
///
/// ```
/// use http::Request;
/// use levee::rate_limit::KeyExtractor;
///
/// let tenant = |req: &Request<()>| {
///     req.uri().path().strip_prefix("/t/")?.split('/').next().map(str::to_owned)
/// };
/// let req = Request::get("/t/acme/orders").body(()).unwrap();
/// assert_eq!(tenant.extract(&req).as_deref(), Some("acme"));
/// ```
pub trait KeyExtractor<B>: Send + Sync + 'static {
    /// The key type, which the class limiters are keyed by.
    type Key;

    /// The request's key, or `None` when it has none.
    fn extract(&self, req: &Request<B>) -> Option<Self::Key>;
}

impl<B, K, F> KeyExtractor<B> for F
where
    F: Fn(&Request<B>) -> Option<K> + Send + Sync + 'static,
{
    type Key = K;

    fn extract(&self, req: &Request<B>) -> Option<K> {
        self(req)
    }
}

/// The value of one request header as the key, e.g. `x-api-key`.
///
/// Values that are not visible ASCII, are empty, or are longer than
/// [`max_len`](Self::max_len) (default 128 bytes) give no key: a client
/// cannot make the limiter hold arbitrarily large keys. With several
/// fields of the name, the first counts. The value is copied into a
/// `String`, so a key never pins the connection's read buffer.
///
/// Secrets used as keys (API keys, tokens) are held as they are, in
/// memory and, with a Redis limiter, in Redis key names; hash them first
/// (a closure around `levee::core::KeyHasher`) if that matters.
#[derive(Debug, Clone)]
pub struct HeaderKey {
    name: HeaderName,
    max_len: usize,
}

impl HeaderKey {
    /// Keys by the header `name`.
    pub fn new(name: HeaderName) -> Self {
        HeaderKey { name, max_len: 128 }
    }

    /// The longest value accepted as a key. Default: 128 bytes.
    #[must_use]
    pub fn max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len;
        self
    }
}

impl<B> KeyExtractor<B> for HeaderKey {
    type Key = String;

    fn extract(&self, req: &Request<B>) -> Option<String> {
        let value = req.headers().get(&self.name)?;
        if value.is_empty() || value.len() > self.max_len {
            return None;
        }
        value.to_str().ok().map(str::to_owned)
    }
}

/// A value of type `T` from the request's extensions, typically put there
/// by an authentication middleware that runs before this layer (the user
/// id). A request without it has no key.
pub struct ExtensionKey<T> {
    _type: PhantomData<fn() -> T>,
}

impl<T> ExtensionKey<T> {
    /// Keys by the `T` extension.
    pub fn new() -> Self {
        ExtensionKey { _type: PhantomData }
    }
}

impl<T> Default for ExtensionKey<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for ExtensionKey<T> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<T> std::fmt::Debug for ExtensionKey<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtensionKey")
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}

impl<B, T> KeyExtractor<B> for ExtensionKey<T>
where
    T: Clone + Send + Sync + 'static,
{
    type Key = T;

    fn extract(&self, req: &Request<B>) -> Option<T> {
        req.extensions().get::<T>().cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(headers: &[(&str, &[u8])]) -> Request<()> {
        let mut b = Request::get("/");
        for (n, v) in headers {
            b = b.header(*n, http::HeaderValue::from_bytes(v).unwrap());
        }
        b.body(()).unwrap()
    }

    #[test]
    fn header_key_takes_the_first_value() {
        let x = HeaderKey::new(HeaderName::from_static("x-api-key"));
        let req = get(&[("x-api-key", b"k1"), ("x-api-key", b"k2")]);
        assert_eq!(x.extract(&req).as_deref(), Some("k1"));
        assert_eq!(x.extract(&get(&[])), None);
    }

    #[test]
    fn header_key_refuses_long_empty_and_opaque_values() {
        let x = HeaderKey::new(HeaderName::from_static("x-api-key")).max_len(8);
        assert_eq!(x.extract(&get(&[("x-api-key", b"123456789")])), None);
        assert_eq!(x.extract(&get(&[("x-api-key", b"")])), None);
        assert_eq!(x.extract(&get(&[("x-api-key", b"caf\xe9")])), None);
        assert_eq!(
            x.extract(&get(&[("x-api-key", b"12345678")])).as_deref(),
            Some("12345678")
        );
    }

    #[derive(Clone, Debug, PartialEq)]
    struct UserId(u64);

    #[test]
    fn extension_key_reads_the_extension() {
        let x = ExtensionKey::<UserId>::new();
        let mut req = get(&[]);
        assert_eq!(x.extract(&req), None);
        req.extensions_mut().insert(UserId(7));
        assert_eq!(x.extract(&req), Some(UserId(7)));
    }
}
