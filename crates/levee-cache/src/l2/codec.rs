//! How an envelope becomes bytes on L2: JSON (readable by services in other
//! languages) or a compact binary layout (a fixed header and CBOR).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use super::envelope::{Envelope, FORMAT_VERSION};

/// The byte format of values on L2.
///
/// Readers accept both formats whatever the setting (the first byte tells
/// them apart), so a fleet can switch codecs one replica at a time.
///
/// - `Json` (default): `{"levee":1,"written_at":..,"fresh_until":..,
///   "stale_until":..,"load_ms":..,"value":..}` with times in unix
///   milliseconds; a cached absence has `"absent":true` and no `value`.
/// - `Binary`: `b'L'`, the format version, a flags byte (bit 0: absent),
///   `written_at`, `fresh_until`, `stale_until` as big-endian `u64`,
///   `load_ms` as big-endian `u32`, then the value in CBOR (RFC 8949).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Codec {
    /// JSON, for interop with other services.
    #[default]
    Json,
    /// A 31-byte binary header and a CBOR value: smaller and faster
    /// (feature `cbor`; a build without it reads such values as misses).
    #[cfg(feature = "cbor")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cbor")))]
    Binary,
}

/// Why stored bytes were not a usable envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// Not an envelope, or not one holding this value type.
    Corrupt,
    /// An envelope of a format version this build does not know.
    UnknownVersion,
}

#[cfg(feature = "cbor")]
const BINARY_MAGIC: u8 = b'L';
#[cfg(feature = "cbor")]
const BINARY_HEADER: usize = 31;
#[cfg(feature = "cbor")]
const FLAG_ABSENT: u8 = 1;

#[derive(Serialize)]
struct JsonOut<'a, V> {
    levee: u8,
    written_at: u64,
    fresh_until: u64,
    stale_until: u64,
    load_ms: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a V>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    absent: bool,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "V: Deserialize<'de>"))]
struct JsonIn<V> {
    levee: u8,
    written_at: u64,
    fresh_until: u64,
    stale_until: u64,
    #[serde(default)]
    load_ms: u32,
    // Present (even as `null`, for an optional `V`) means a value.
    #[serde(default, deserialize_with = "present")]
    value: Option<V>,
    #[serde(default)]
    absent: bool,
}

#[derive(Deserialize)]
struct JsonVersion {
    levee: u8,
}

fn present<'de, D: Deserializer<'de>, V: Deserialize<'de>>(d: D) -> Result<Option<V>, D::Error> {
    V::deserialize(d).map(Some)
}

impl Codec {
    /// The envelope as bytes.
    pub(crate) fn encode<V: Serialize>(self, env: &Envelope<V>) -> Result<Vec<u8>, String> {
        match self {
            Codec::Json => serde_json::to_vec(&JsonOut {
                levee: FORMAT_VERSION,
                written_at: env.written_at,
                fresh_until: env.fresh_until,
                stale_until: env.stale_until,
                load_ms: env.load_ms,
                value: env.value.as_ref(),
                absent: env.value.is_none(),
            })
            .map_err(|e| e.to_string()),
            #[cfg(feature = "cbor")]
            Codec::Binary => {
                let mut out = Vec::with_capacity(64);
                out.push(BINARY_MAGIC);
                out.push(FORMAT_VERSION);
                out.push(if env.value.is_none() { FLAG_ABSENT } else { 0 });
                out.extend_from_slice(&env.written_at.to_be_bytes());
                out.extend_from_slice(&env.fresh_until.to_be_bytes());
                out.extend_from_slice(&env.stale_until.to_be_bytes());
                out.extend_from_slice(&env.load_ms.to_be_bytes());
                if let Some(v) = &env.value {
                    ciborium::into_writer(v, &mut out).map_err(|e| e.to_string())?;
                }
                Ok(out)
            }
        }
    }

    /// Bytes in either format back into an envelope.
    pub(crate) fn decode<V: DeserializeOwned>(bytes: &[u8]) -> Result<Envelope<V>, DecodeError> {
        match bytes.first() {
            #[cfg(feature = "cbor")]
            Some(&BINARY_MAGIC) => decode_binary(bytes),
            Some(b'{') => decode_json(bytes),
            _ => Err(DecodeError::Corrupt),
        }
    }
}

fn decode_json<V: DeserializeOwned>(bytes: &[u8]) -> Result<Envelope<V>, DecodeError> {
    match super::canonical::decode(bytes) {
        Some(env) => Ok(env),
        None => decode_json_general(bytes),
    }
}

/// Any JSON envelope: other field orders, whitespace, fields this build
/// does not know; and every error.
pub(super) fn decode_json_general<V: DeserializeOwned>(
    bytes: &[u8],
) -> Result<Envelope<V>, DecodeError> {
    let parsed: JsonIn<V> = match serde_json::from_slice(bytes) {
        Ok(p) => p,
        Err(_) => {
            // A newer format may have a different shape: say so if it does.
            return match serde_json::from_slice::<JsonVersion>(bytes) {
                Ok(v) if v.levee != FORMAT_VERSION => Err(DecodeError::UnknownVersion),
                _ => Err(DecodeError::Corrupt),
            };
        }
    };
    if parsed.levee != FORMAT_VERSION {
        return Err(DecodeError::UnknownVersion);
    }
    if parsed.absent == parsed.value.is_some() {
        return Err(DecodeError::Corrupt);
    }
    Ok(Envelope {
        written_at: parsed.written_at,
        fresh_until: parsed.fresh_until,
        stale_until: parsed.stale_until,
        load_ms: parsed.load_ms,
        value: parsed.value,
    })
}

#[cfg(feature = "cbor")]
fn decode_binary<V: DeserializeOwned>(bytes: &[u8]) -> Result<Envelope<V>, DecodeError> {
    if bytes.len() < 2 {
        return Err(DecodeError::Corrupt);
    }
    if bytes[1] != FORMAT_VERSION {
        return Err(DecodeError::UnknownVersion);
    }
    if bytes.len() < BINARY_HEADER {
        return Err(DecodeError::Corrupt);
    }
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[i..i + 8]);
        u64::from_be_bytes(b)
    };
    let mut load = [0u8; 4];
    load.copy_from_slice(&bytes[27..31]);
    let body = &bytes[BINARY_HEADER..];
    let value = if bytes[2] & FLAG_ABSENT != 0 {
        if !body.is_empty() {
            return Err(DecodeError::Corrupt);
        }
        None
    } else {
        Some(ciborium::from_reader(body).map_err(|_| DecodeError::Corrupt)?)
    };
    Ok(Envelope {
        written_at: u64_at(3),
        fresh_until: u64_at(11),
        stale_until: u64_at(19),
        load_ms: u32::from_be_bytes(load),
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(value: Option<Option<String>>) -> Envelope<Option<String>> {
        Envelope {
            written_at: 1,
            fresh_until: 2,
            stale_until: 3,
            load_ms: 4,
            value,
        }
    }

    #[cfg(feature = "cbor")]
    #[test]
    fn both_codecs_round_trip_values_nulls_and_absence() {
        for codec in [Codec::Json, Codec::Binary] {
            for value in [Some(Some("v".to_string())), Some(None), None] {
                let bytes = codec.encode(&env(value.clone())).unwrap();
                assert_eq!(Codec::decode(&bytes), Ok(env(value)), "{codec:?}");
            }
        }
    }

    #[test]
    fn json_is_readable_by_other_languages() {
        let bytes = Codec::Json.encode(&env(Some(Some("v".into())))).unwrap();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"levee":1,"written_at":1,"fresh_until":2,"stale_until":3,"load_ms":4,"value":"v"}"#
        );
    }

    #[cfg(feature = "cbor")]
    #[test]
    fn garbage_and_other_versions_are_told_apart() {
        let decode = |b: &[u8]| Codec::decode::<String>(b).map(|_| ());
        assert_eq!(decode(b""), Err(DecodeError::Corrupt));
        assert_eq!(decode(b"\xff\x00garbage"), Err(DecodeError::Corrupt));
        assert_eq!(decode(b"{not json"), Err(DecodeError::Corrupt));
        assert_eq!(
            decode(br#"{"levee":9,"other":true}"#),
            Err(DecodeError::UnknownVersion)
        );
        assert_eq!(decode(b"L\x09"), Err(DecodeError::UnknownVersion));
        assert_eq!(decode(b"L\x01\x00short"), Err(DecodeError::Corrupt));
        let mut wrong_type = Codec::Binary.encode(&env(Some(None))).unwrap();
        wrong_type.truncate(BINARY_HEADER + 1);
        assert_eq!(decode(&wrong_type), Err(DecodeError::Corrupt));
    }
}
