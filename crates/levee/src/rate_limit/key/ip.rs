//! [`PeerIp`]: the client's address as the key, read through a list of
//! trusted proxies from `X-Forwarded-For` or `Forwarded`.
//!
//! Forwarding headers are written by whoever sent the request, so only the
//! hops appended by proxies we trust are believed: the walk starts at the
//! TCP peer and moves leftwards only while the current hop is trusted. A
//! client can put anything to the left of its own address; it never gets
//! that far. The walk touches at most `max_hops` entries of at most
//! [`MAX_ENTRY`] bytes each and allocates nothing, so a hostile header
//! (huge, garbage, thousands of hops) costs a bounded scan and never a
//! panic.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, Request};
use levee_core::RedisKey;
use levee_limit::LimitError;

use super::KeyExtractor;

/// Longest forwarding entry parsed; longer ones are garbage (the longest
/// real one, `for="[v6]:port"`, is under 60 bytes).
const MAX_ENTRY: usize = 96;

/// A client address, as the key of a rate limit. IPv6 addresses are
/// reduced to their network prefix (see [`PeerIpBuilder::ipv6_prefix`]);
/// IPv4-mapped IPv6 addresses become IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    /// The address.
    pub fn ip(&self) -> IpAddr {
        self.0
    }
}

impl std::fmt::Display for ClientIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl From<ClientIp> for IpAddr {
    fn from(ip: ClientIp) -> IpAddr {
        ip.0
    }
}

impl RedisKey for ClientIp {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        // Writing to a Vec cannot fail.
        let _ = write!(out, "{}", self.0);
    }
}

/// An address range (`10.0.0.0/8`, `fd00::/8`), for trusted proxies.
///
/// ```
/// use levee::rate_limit::Cidr;
/// let private: Cidr = "10.0.0.0/8".parse()?;
/// assert!(private.contains("10.1.2.3".parse().unwrap()));
/// assert!(!private.contains("11.0.0.1".parse().unwrap()));
/// let one: Cidr = "192.0.2.7".parse()?; // a bare address is a /32
/// assert!(one.contains("192.0.2.7".parse().unwrap()));
/// # Ok::<(), levee::limit::LimitError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The range of `addr` with a `prefix`-bit network part; the prefix is
    /// at most 32 for IPv4 and 128 for IPv6.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, LimitError> {
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(LimitError::InvalidSetting {
                setting: "trusted_proxies",
                reason: format!("/{prefix} is longer than the {max} bits of {addr}"),
            });
        }
        Ok(Cidr {
            addr: mask(addr, prefix),
            prefix,
        })
    }

    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.addr
    }
}

impl FromStr for Cidr {
    type Err = LimitError;

    fn from_str(s: &str) -> Result<Self, LimitError> {
        let invalid = || LimitError::InvalidSetting {
            setting: "trusted_proxies",
            reason: format!("{s:?} is not an address range such as 10.0.0.0/8 or fd00::/8"),
        };
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| invalid())?)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| invalid())?;
        let full = if addr.to_canonical().is_ipv4() {
            32
        } else {
            128
        };
        Cidr::new(addr, prefix.unwrap_or(full))
    }
}

/// Zeroes the bits of `ip` after the first `prefix`.
fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let keep = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            IpAddr::V4((bits & keep).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let keep = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & keep))
        }
    }
}

/// Which forwarding header a trusted proxy writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`. The default.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for="[v6]:port"`.
    Forwarded,
    /// Neither: the TCP peer is the client, even when it is a trusted proxy.
    None,
}

/// The client's IP address as the key: the TCP peer (from axum's
/// `ConnectInfo<SocketAddr>`, or a plain `SocketAddr` request extension),
/// or, when the peer is a trusted proxy, the nearest untrusted address in
/// its forwarding header.
///
/// With no trusted proxies (the default), forwarding headers are ignored.
/// A request with no peer address (an axum app served without
/// `into_make_service_with_connect_info`) has no key.
///
/// ```
/// use levee::rate_limit::{ForwardedHeader, PeerIp};
///
/// let behind_lb = PeerIp::builder()
///     .trusted_proxies(["10.0.0.0/8".parse()?])
///     .header(ForwardedHeader::XForwardedFor)
///     .build()?;
/// let peer = "10.0.0.2".parse().unwrap();
/// let mut headers = http::HeaderMap::new();
/// headers.insert("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.7".parse().unwrap());
/// // 10.0.0.2 and 10.0.0.7 are trusted; 203.0.113.9 is the client.
/// assert_eq!(behind_lb.client_ip(peer, &headers).to_string(), "203.0.113.9");
/// # Ok::<(), levee::limit::LimitError>(())
/// ```
#[derive(Debug, Clone)]
pub struct PeerIp {
    trusted: Arc<[Cidr]>,
    header: ForwardedHeader,
    max_hops: usize,
    ipv6_prefix: u8,
}

impl Default for PeerIp {
    fn default() -> Self {
        PeerIp {
            trusted: Arc::from([]),
            header: ForwardedHeader::XForwardedFor,
            max_hops: 16,
            ipv6_prefix: 64,
        }
    }
}

impl PeerIp {
    /// The TCP peer's address, no proxies trusted.
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder, for servers behind proxies.
    pub fn builder() -> PeerIpBuilder {
        PeerIpBuilder {
            ip: PeerIp::default(),
            trusted: Vec::new(),
        }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|c| c.contains(ip))
    }

    fn key(&self, ip: IpAddr) -> ClientIp {
        let ip = ip.to_canonical();
        ClientIp(match ip {
            IpAddr::V6(_) => mask(ip, self.ipv6_prefix),
            v4 => v4,
        })
    }

    /// The client address of a request that came from `peer` with
    /// `headers`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> ClientIp {
        let name = match self.header {
            _ if !self.is_trusted(peer) => return self.key(peer),
            ForwardedHeader::XForwardedFor => HeaderName::from_static("x-forwarded-for"),
            ForwardedHeader::Forwarded => http::header::FORWARDED,
            ForwardedHeader::None => return self.key(peer),
        };
        // `hop` is the nearest address known good: a trusted proxy wrote
        // every entry right of here, and the entry it wrote names its peer.
        let mut hop = peer;
        let mut seen = 0;
        // Later fields were appended later: walk them last to first.
        for field in headers.get_all(name).iter().rev() {
            for entry in field.as_bytes().rsplit(|&b| b == b',') {
                seen += 1;
                let parsed = match self.header {
                    ForwardedHeader::Forwarded => forwarded_for(entry),
                    _ => node(entry),
                };
                // Garbage where a trusted proxy should have written an
                // address, or too many hops: stop at the last good hop
                // rather than believe anything further left.
                let Some(ip) = parsed.filter(|_| seen <= self.max_hops) else {
                    return self.key(hop);
                };
                if !self.is_trusted(ip) {
                    return self.key(ip);
                }
                hop = ip;
            }
        }
        self.key(hop)
    }

    fn peer<B>(req: &Request<B>) -> Option<IpAddr> {
        #[cfg(feature = "axum")]
        if let Some(axum::extract::ConnectInfo(addr)) = req
            .extensions()
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
        {
            return Some(addr.ip());
        }
        req.extensions().get::<SocketAddr>().map(SocketAddr::ip)
    }
}

impl<B> KeyExtractor<B> for PeerIp {
    type Key = ClientIp;

    fn extract(&self, req: &Request<B>) -> Option<ClientIp> {
        Self::peer(req).map(|peer| self.client_ip(peer, req.headers()))
    }
}

/// Builds a [`PeerIp`].
#[must_use]
#[derive(Debug)]
pub struct PeerIpBuilder {
    ip: PeerIp,
    trusted: Vec<Cidr>,
}

impl PeerIpBuilder {
    /// Proxies whose forwarding header is believed. Default: none.
    pub fn trusted_proxies(mut self, proxies: impl IntoIterator<Item = Cidr>) -> Self {
        self.trusted.extend(proxies);
        self
    }

    /// The header the trusted proxies write. Default:
    /// [`ForwardedHeader::XForwardedFor`]. Only one is read: a proxy that
    /// writes one passes the other through from the client untouched.
    pub fn header(mut self, header: ForwardedHeader) -> Self {
        self.ip.header = header;
        self
    }

    /// The most forwarding entries read, from the right. Default: 16.
    pub fn max_hops(mut self, max_hops: usize) -> Self {
        self.ip.max_hops = max_hops;
        self
    }

    /// IPv6 clients are keyed by this many leading bits, since one client
    /// usually holds a whole /64. Default: 64; 128 keys single addresses.
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.ip.ipv6_prefix = bits;
        self
    }

    /// Checks the settings and builds the extractor.
    pub fn build(self) -> Result<PeerIp, LimitError> {
        if self.ip.ipv6_prefix == 0 || self.ip.ipv6_prefix > 128 {
            return Err(LimitError::InvalidSetting {
                setting: "ipv6_prefix",
                reason: format!("{} is not within 1..=128", self.ip.ipv6_prefix),
            });
        }
        if self.ip.max_hops == 0 {
            return Err(LimitError::InvalidSetting {
                setting: "max_hops",
                reason: "0 would never read the header; use ForwardedHeader::None instead".into(),
            });
        }
        Ok(PeerIp {
            trusted: Arc::from(self.trusted),
            ..self.ip
        })
    }
}

/// An address with an optional port: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:80`, surrounded by optional whitespace.
fn node(entry: &[u8]) -> Option<IpAddr> {
    if entry.len() > MAX_ENTRY {
        return None;
    }
    let text = std::str::from_utf8(entry).ok()?.trim_matches([' ', '\t']);
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    text.parse::<SocketAddr>().ok().map(|a| a.ip())
}

/// The `for=` node of one `Forwarded` element (`for=1.2.3.4;proto=https`);
/// `unknown` and obfuscated identifiers (`_hidden`) are not addresses.
fn forwarded_for(element: &[u8]) -> Option<IpAddr> {
    if element.len() > MAX_ENTRY {
        return None;
    }
    let pair = element.split(|&b| b == b';').find_map(|pair| {
        let text = std::str::from_utf8(pair).ok()?.trim_matches([' ', '\t']);
        let (name, value) = text.split_once('=')?;
        name.eq_ignore_ascii_case("for").then_some(value)
    })?;
    let value = pair
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(pair);
    node(value.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn behind(header: ForwardedHeader) -> PeerIp {
        PeerIp::builder()
            .trusted_proxies(["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()])
            .header(header)
            .build()
            .unwrap()
    }

    fn client(p: &PeerIp, peer: &str, name: &'static str, values: &[&str]) -> String {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(name, v.parse().unwrap());
        }
        p.client_ip(ip(peer), &headers).to_string()
    }

    /// For each `(field value, expected client)`: a request from the
    /// trusted proxy 10.0.0.1 with one `name` field.
    fn via_proxy(p: &PeerIp, name: &'static str, cases: &[(&str, &str)]) {
        for (value, expected) in cases {
            assert_eq!(
                client(p, "10.0.0.1", name, &[value]),
                *expected,
                "{name}: {value:?}"
            );
        }
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let p = behind(ForwardedHeader::XForwardedFor);
        let claim = ["10.0.0.1"];
        assert_eq!(
            client(&p, "203.0.113.1", "x-forwarded-for", &claim),
            "203.0.113.1"
        );
        assert_eq!(
            client(&PeerIp::new(), "10.0.0.1", "x-forwarded-for", &claim),
            "10.0.0.1"
        );
    }

    #[test]
    fn walks_trusted_hops_from_the_right_across_fields() {
        let p = behind(ForwardedHeader::XForwardedFor);
        let fields = ["6.6.6.6, 1.2.3.4", "10.0.0.9"];
        assert_eq!(
            client(&p, "10.0.0.1", "x-forwarded-for", &fields),
            "1.2.3.4"
        );
        via_proxy(
            &p,
            "x-forwarded-for",
            &[
                // All trusted: the leftmost trusted hop.
                ("10.0.0.5, 10.0.0.6", "10.0.0.5"),
                // Ports and brackets are accepted.
                ("[2001:db8::1]:443", "2001:db8::"),
                ("1.2.3.4:80", "1.2.3.4"),
            ],
        );
    }

    #[test]
    fn garbage_stops_the_walk_at_the_last_trusted_hop() {
        let p = behind(ForwardedHeader::XForwardedFor);
        let huge = "9".repeat(100_000);
        let bad = [
            "not-an-ip",
            "",
            "1.2.3.4.5",
            "10.0.0.2,",
            "1.2.3.4\t;x",
            huge.as_str(),
        ];
        let cases: Vec<_> = bad.iter().map(|b| (*b, "10.0.0.1")).collect();
        via_proxy(&p, "x-forwarded-for", &cases);
    }

    #[test]
    fn hop_limit_bounds_the_walk() {
        let p = behind(ForwardedHeader::XForwardedFor);
        let many = format!("1.2.3.4,{}", ["10.0.0.3"; 10_000].join(","));
        let few = format!("1.2.3.4,{}", ["10.0.0.3"; 15].join(","));
        via_proxy(
            &p,
            "x-forwarded-for",
            &[(&many, "10.0.0.3"), (&few, "1.2.3.4")],
        );
    }

    #[test]
    fn forwarded_reads_for_nodes_only() {
        let p = behind(ForwardedHeader::Forwarded);
        let fwd =
            "for=6.6.6.6, for=\"[2001:db8:cafe::17]:4711\";proto=https, For=10.0.0.4;by=10.0.0.1";
        via_proxy(
            &p,
            "forwarded",
            &[
                (fwd, "2001:db8:cafe::"),
                ("for=unknown", "10.0.0.1"),
                ("proto=http", "10.0.0.1"),
            ],
        );
        // The other header is ignored.
        via_proxy(&p, "x-forwarded-for", &[("1.2.3.4", "10.0.0.1")]);
    }

    #[test]
    fn ipv6_is_keyed_by_prefix_and_mapped_v4_by_v4() {
        let p = PeerIp::new();
        assert_eq!(client(&p, "2001:db8::1:2", "x", &[]), "2001:db8::");
        assert_eq!(client(&p, "::ffff:192.0.2.1", "x", &[]), "192.0.2.1");
        let exact = PeerIp::builder().ipv6_prefix(128).build().unwrap();
        assert_eq!(client(&exact, "2001:db8::1:2", "x", &[]), "2001:db8::1:2");
    }

    #[test]
    fn cidr_parsing_and_bad_settings_name_themselves() {
        let err = "10.0.0.0/33".parse::<Cidr>().unwrap_err();
        assert!(err.to_string().contains("trusted_proxies"));
        assert!("nonsense".parse::<Cidr>().is_err());
        let all_v6 = Cidr::from_str("::/0").unwrap();
        assert!(all_v6.contains(ip("2001:db8::1")) && !all_v6.contains(ip("1.2.3.4")));
        let err = PeerIp::builder().ipv6_prefix(0).build().unwrap_err();
        assert!(err.to_string().contains("ipv6_prefix"));
        let err = PeerIp::builder().max_hops(0).build().unwrap_err();
        assert!(err.to_string().contains("max_hops"));
    }

    proptest::proptest! {
        /// Any field values a client can send (bytes a header value may
        /// hold, commas and addresses mixed in) never panic, and the key is
        /// always the proxy itself or an address the header names.
        #[test]
        fn hostile_fields_never_panic_and_name_a_real_hop(
            fields in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::prop_oneof![
                        proptest::sample::select(vec![
                            b",".to_vec(), b" ".to_vec(), b"10.0.0.7".to_vec(),
                            b"1.2.3.4".to_vec(), b"[2001:db8::9]:80".to_vec(),
                            b"for=".to_vec(), b";".to_vec(), b"\"".to_vec(),
                        ]),
                        proptest::collection::vec(
                            proptest::prop_oneof![0x20u8..0x7f, 0x80u8..=0xff, proptest::strategy::Just(b'\t')],
                            0..12,
                        ),
                    ],
                    0..40,
                ),
                0..4,
            ),
            forwarded in proptest::bool::ANY,
        ) {
            let header = if forwarded { ForwardedHeader::Forwarded } else { ForwardedHeader::XForwardedFor };
            let name = if forwarded { "forwarded" } else { "x-forwarded-for" };
            let p = behind(header);
            let mut headers = HeaderMap::new();
            let mut text = String::new();
            for parts in &fields {
                let value: Vec<u8> = parts.concat();
                text.push_str(&String::from_utf8_lossy(&value));
                headers.append(name, http::HeaderValue::from_bytes(&value).unwrap());
            }
            let got = p.client_ip(ip("10.0.0.1"), &headers).to_string();
            let named = ["10.0.0.1", "10.0.0.7", "1.2.3.4"];
            // The peer is IPv4: an IPv6 key (masked to /64, so not always
            // verbatim in the text) came from the header too.
            let from_header = text.contains(&got) || got.contains(':');
            proptest::prop_assert!(named.contains(&got.as_str()) || from_header, "{got}");
        }
    }

    #[test]
    fn redis_key_is_the_address_text() {
        assert_eq!(ClientIp(ip("192.0.2.1")).redis_key_string(), "192.0.2.1");
    }
}
