//! The JSON envelope read without a general JSON parse, when it is laid out
//! exactly as this build writes it (`{"levee":1,"written_at":..,
//! "fresh_until":..,"stale_until":..,"load_ms":..,"value":..}`, or
//! `..,"absent":true}`): the header is matched byte by byte and only the
//! value's bytes go to serde_json; a value that is a JSON string is
//! unescaped straight into the `String` it becomes.
//!
//! Every surprise (another field order, whitespace, an unknown field, a
//! number this reader would have to think about, an escape it leaves to
//! serde_json) answers `None`, and the caller runs the general parse, so
//! what is accepted here is exactly what the general parse accepts, with
//! the same result; errors are always the general parse's.

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};

use super::envelope::{Envelope, FORMAT_VERSION};

// The header below spells the format version out.
const _: () = assert!(FORMAT_VERSION == 1);

/// The envelope in `bytes`, if they are in the canonical layout.
pub(super) fn decode<V: DeserializeOwned>(bytes: &[u8]) -> Option<Envelope<V>> {
    let mut rest = bytes.strip_prefix(br#"{"levee":1,"written_at":"#)?;
    let written_at = uint(&mut rest)?;
    rest = rest.strip_prefix(br#","fresh_until":"#)?;
    let fresh_until = uint(&mut rest)?;
    rest = rest.strip_prefix(br#","stale_until":"#)?;
    let stale_until = uint(&mut rest)?;
    rest = rest.strip_prefix(br#","load_ms":"#)?;
    let load_ms = u32::try_from(uint(&mut rest)?).ok()?;
    let value = if rest == br#","absent":true}"# {
        None
    } else {
        let body = rest.strip_prefix(br#","value":"#)?.strip_suffix(b"}")?;
        Some(value(body)?)
    };
    Some(Envelope {
        written_at,
        fresh_until,
        stale_until,
        load_ms,
        value,
    })
}

/// A JSON unsigned integer at the start of `rest` (moved past it): digits
/// with no leading zero, within `u64`.
fn uint(rest: &mut &[u8]) -> Option<u64> {
    let mut n: u64 = 0;
    let mut digits = 0;
    // Eight digits at a time while they last (a time in unix ms has 13):
    // sixteen digits always fit in a u64.
    while digits < 16
        && let Some(chunk) = rest.get(digits..).and_then(<[u8]>::first_chunk::<8>)
        && let Some(eight) = eight_digits(u64::from_le_bytes(*chunk))
    {
        n = n * 100_000_000 + eight;
        digits += 8;
    }
    while let Some(d) = rest.get(digits).map(|b| b.wrapping_sub(b'0')) {
        if d > 9 {
            break;
        }
        // Nineteen digits always fit in a u64; a twentieth may not.
        n = if digits < 19 {
            n * 10 + u64::from(d)
        } else {
            n.checked_mul(10)?.checked_add(u64::from(d))?
        };
        digits += 1;
    }
    if digits == 0 || (digits > 1 && rest[0] == b'0') {
        return None;
    }
    *rest = &rest[digits..];
    Some(n)
}

/// The number eight ASCII digits spell (the first one in the lowest byte
/// of `word`), if all eight are digits.
fn eight_digits(word: u64) -> Option<u64> {
    const NIBBLES: u64 = 0xf0f0_f0f0_f0f0_f0f0;
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    // Each byte is 0x30..=0x3f, and adding 6 keeps it below 0x40 (no byte
    // carries into the next): each is 0x30..=0x39.
    if word & NIBBLES != ZEROS || word.wrapping_add(0x0606_0606_0606_0606) & NIBBLES != ZEROS {
        return None;
    }
    // Pairs, then fours, then all eight, each step in the lanes of the
    // step before (a lane never outgrows its width: 99, 9,999, 99,999,999).
    let v = word - ZEROS;
    let v = (v * 10 + (v >> 8)) & 0x00ff_00ff_00ff_00ff;
    let v = (v * 100 + (v >> 16)) & 0x0000_ffff_0000_ffff;
    Some((v * 10_000 + (v >> 32)) & 0x0000_0000_ffff_ffff)
}

/// The value whose JSON text is all of `body`.
fn value<V: DeserializeOwned>(body: &[u8]) -> Option<V> {
    if let Some(s) = string(body)
        && let Ok(v) = V::deserialize(JsonString(s))
    {
        return Some(v);
    }
    serde_json::from_slice(body).ok()
}

/// The string `body` spells, when `body` is one JSON string literal and
/// nothing else, with no `\u` escape (those are left to serde_json).
fn string(body: &[u8]) -> Option<String> {
    let inner = body.strip_prefix(b"\"")?;
    // Unescaping only shortens: `j <= i` throughout, so `out` never grows.
    let mut out = vec![0u8; inner.len()];
    let (mut i, mut j) = (0, 0);
    loop {
        let plain = match inner.get(i..i + 8) {
            Some(chunk) => {
                let mut word = [0u8; 8];
                word.copy_from_slice(chunk);
                out[j..j + 8].copy_from_slice(chunk);
                let found = specials(u64::from_le_bytes(word));
                if found == 0 {
                    i += 8;
                    j += 8;
                    continue;
                }
                (found.trailing_zeros() / 8) as usize
            }
            None => {
                let n = inner[i..].iter().position(|&b| is_special(b))?;
                out[j..j + n].copy_from_slice(&inner[i..i + n]);
                n
            }
        };
        i += plain;
        j += plain;
        match inner[i] {
            b'"' if i + 1 == inner.len() => break,
            b'\\' => {
                out[j] = match inner.get(i + 1)? {
                    b'"' => b'"',
                    b'\\' => b'\\',
                    b'/' => b'/',
                    b'b' => 0x08,
                    b'f' => 0x0c,
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    _ => return None,
                };
                i += 2;
                j += 1;
            }
            // A quote before the end, or a raw control character (not JSON).
            _ => return None,
        }
    }
    out.truncate(j);
    // Many escapes left much of the buffer unused: give it back, since
    // the string may live long in L1.
    if out.capacity() - j > j / 8 {
        out.shrink_to_fit();
    }
    String::from_utf8(out).ok()
}

/// A byte that ends a run of plain string bytes: a quote, a backslash or
/// a control character.
fn is_special(b: u8) -> bool {
    b == b'"' || b == b'\\' || b < 0x20
}

/// The high bit of each byte of `word` (little-endian) that may be
/// special; the lowest one set is exact (a borrow only spreads upwards).
fn specials(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    zero_byte(word ^ (ONES * u64::from(b'"')))
        | zero_byte(word ^ (ONES * u64::from(b'\\')))
        | (word.wrapping_sub(ONES * 0x20) & !word & HIGH)
}

/// A decoded JSON string, handed to `V` as serde_json hands a string
/// token: as a string to `deserialize_any` and its kin, as `Some` to an
/// `Option`, as the inner value to a newtype, as a unit variant to an enum.
/// What it cannot be is an error, and the caller then asks serde_json.
struct JsonString(String);

impl<'de> de::Deserializer<'de> for JsonString {
    type Error = serde_json::Error;

    fn deserialize_any<Vi: Visitor<'de>>(self, visitor: Vi) -> Result<Vi::Value, Self::Error> {
        visitor.visit_string(self.0)
    }

    fn deserialize_option<Vi: Visitor<'de>>(self, visitor: Vi) -> Result<Vi::Value, Self::Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<Vi: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: Vi,
    ) -> Result<Vi::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<Vi: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: Vi,
    ) -> Result<Vi::Value, Self::Error> {
        let unit: de::value::StringDeserializer<serde_json::Error> = self.0.into_deserializer();
        visitor.visit_enum(unit)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fmt::Debug;

    use proptest::prelude::*;
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::l2::codec::{Codec, DecodeError, decode_json_general};

    fn env<V>(value: Option<V>) -> Envelope<V> {
        Envelope {
            written_at: 1_764_547_200_123,
            fresh_until: 1_764_547_260_123,
            stale_until: u64::MAX,
            load_ms: u32::MAX,
            value,
        }
    }

    /// What the general parse makes of `bytes`, and that the fast path,
    /// when it answers, answers the same.
    fn check<V: DeserializeOwned + PartialEq + Debug>(
        bytes: &[u8],
    ) -> Result<Envelope<V>, DecodeError> {
        let general = decode_json_general::<V>(bytes);
        if let Some(fast) = decode::<V>(bytes) {
            assert_eq!(Ok(fast), general, "{:?}", String::from_utf8_lossy(bytes));
        }
        let decoded = Codec::decode::<V>(bytes);
        if bytes.first() == Some(&b'{') {
            assert_eq!(decoded, general);
        }
        general
    }

    /// `value` written by this build reads back through the fast path.
    fn fast_round_trip<V: Serialize + DeserializeOwned + PartialEq + Debug>(value: Option<V>) {
        let bytes = Codec::Json.encode(&env(value)).unwrap();
        let fast = decode::<V>(&bytes);
        assert!(fast.is_some(), "{}", String::from_utf8_lossy(&bytes));
        let general = check::<V>(&bytes).unwrap();
        assert_eq!(fast, Some(general));
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Userinfo {
        sub: String,
        email: Option<String>,
        tags: Vec<String>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Plan {
        Free,
        Paid(u32),
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Token(String);

    #[test]
    fn values_this_build_writes_take_the_fast_path() {
        fast_round_trip(Some(String::new()));
        fast_round_trip(Some("plain".to_string()));
        fast_round_trip(Some(
            r#"{"sub":"auth0|1","name":"A \"B\" C","path":"a\\b/c"}"#.to_string(),
        ));
        fast_round_trip(Some("tab\tnl\ncr\r bs\u{8} ff\u{c}".to_string()));
        fast_round_trip(Some("ünïcødé ✓ 𝄞".to_string()));
        fast_round_trip(Some("exactly8".to_string()));
        fast_round_trip(Some("\"\"\"\"\"\"\"\"\"".to_string()));
        fast_round_trip(None::<String>);
        fast_round_trip(Some(Some("x".to_string())));
        fast_round_trip(Some(None::<String>));
        fast_round_trip(Some(Token("t".into())));
        fast_round_trip(Some(Plan::Free));
        fast_round_trip(Some(Plan::Paid(3)));
        fast_round_trip(Some('c'));
        fast_round_trip(Some(u64::MAX));
        fast_round_trip(Some(-1.5f64));
        fast_round_trip(Some(vec![1u8, 2, 3]));
        fast_round_trip(Some(BTreeMap::from([("k".to_string(), 1u8)])));
        fast_round_trip(Some(Userinfo {
            sub: "auth0|\"x\"".into(),
            email: None,
            tags: vec!["a".into(), "b\\".into()],
        }));
    }

    #[test]
    fn strings_with_unicode_escapes_are_left_to_serde_json() {
        let bytes = Codec::Json
            .encode(&env(Some("nul \u{0} bell \u{7}".to_string())))
            .unwrap();
        assert!(std::str::from_utf8(&bytes).unwrap().contains(r"\u0000"));
        assert_eq!(
            check::<String>(&bytes),
            Ok(env(Some("nul \u{0} bell \u{7}".to_string())))
        );
    }

    #[test]
    fn other_layouts_still_decode_through_the_general_parse() {
        let expected = || {
            Ok(Envelope {
                written_at: 1,
                fresh_until: 2,
                stale_until: 3,
                load_ms: 4,
                value: Some("v".to_string()),
            })
        };
        for text in [
            r#"{"value":"v","load_ms":4,"stale_until":3,"fresh_until":2,"written_at":1,"levee":1}"#,
            r#"{ "levee": 1, "written_at": 1, "fresh_until": 2, "stale_until": 3, "load_ms": 4, "value": "v" }"#,
            r#"{"levee":1,"written_at":1,"fresh_until":2,"stale_until":3,"load_ms":4,"value":"v","extra":[1]}"#,
            r#"{"levee":1,"written_at":1,"fresh_until":2,"stale_until":3,"value":"v","load_ms":4}"#,
            r#"{"levee":1,"written_at":1,"fresh_until":2,"stale_until":3,"load_ms":4,"value":"v","absent":false}"#,
            r#"{"levee":1,"written_at":1,"fresh_until":2,"stale_until":3,"load_ms":4,"value":"\u0076"}"#,
            r#"{"levee":1,"written_at":1,"fresh_until":2,"stale_until":3,"load_ms":4,"value":"v"} "#,
            r#"{"levee":1,"written_at":1,"fresh_until":2,"stale_until":3,"load_ms":4,"value": "v" }"#,
        ] {
            assert_eq!(check::<String>(text.as_bytes()), expected(), "{text}");
        }
        // no load_ms (it defaults to 0)
        let text = r#"{"levee":1,"written_at":1,"fresh_until":2,"stale_until":3,"value":"v"}"#;
        assert_eq!(decode::<String>(text.as_bytes()), None);
        assert_eq!(check::<String>(text.as_bytes()).unwrap().load_ms, 0);
    }

    #[test]
    fn corrupt_and_hostile_envelopes_are_errors_as_before() {
        let h = r#"{"levee":1,"written_at":1,"fresh_until":2,"stale_until":3,"load_ms":"#;
        let corrupt = [
            format!(r#"{h}4,"value":"v","absent":true}}"#),
            format!(r#"{h}4,"absent":true,"value":"v"}}"#),
            format!(r#"{h}4}}"#),
            format!(r#"{h}4,"value":"v"}}}}"#),
            format!(r#"{h}4,"value":"v"}},"value":"w"}}"#),
            format!(r#"{h}4,"value":"v","value":"w"}}"#),
            format!(r#"{h}4,"value":"v""#),
            format!(r#"{h}4,"value":"v}}"#),
            format!(r#"{h}4,"value":"a"b"}}"#),
            format!(r#"{h}4,"value":"\x"}}"#),
            format!(r#"{h}4,"value":"\"}}"#),
            format!("{h}4,\"value\":\"tab\there\"}}"),
            format!(r#"{h}4294967296,"value":"v"}}"#),
            format!(r#"{h}04,"value":"v"}}"#),
            format!(r#"{h}-4,"value":"v"}}"#),
            format!(r#"{h}4.0,"value":"v"}}"#),
            format!(r#"{h},"value":"v"}}"#),
            format!(r#"{h}4,"value":1}}"#),
            r#"{"levee":1,"written_at":18446744073709551616,"fresh_until":2,"stale_until":3,"load_ms":4,"value":"v"}"#.to_string(),
            r#"{"levee":1,"written_at":01,"fresh_until":2,"stale_until":3,"load_ms":4,"value":"v"}"#.to_string(),
        ];
        for text in &corrupt {
            assert_eq!(
                check::<String>(text.as_bytes()),
                Err(DecodeError::Corrupt),
                "{text}"
            );
        }
        let mut bad_utf8 = format!(r#"{h}4,"value":"ab"}}"#).into_bytes();
        let at = bad_utf8.len() - 3;
        bad_utf8[at] = 0xff;
        assert_eq!(check::<String>(&bad_utf8), Err(DecodeError::Corrupt));
        assert_eq!(
            check::<String>(br#"{"levee":2,"written_at":1,"fresh_until":2,"stale_until":3,"load_ms":4,"value":"v"}"#),
            Err(DecodeError::UnknownVersion)
        );
        assert_eq!(
            check::<u64>(format!(r#"{h}4,"value":"12"}}"#).as_bytes()),
            Err(DecodeError::Corrupt),
            "a string is not a number"
        );
    }

    #[test]
    fn every_truncation_of_an_envelope_is_corrupt() {
        let bytes = Codec::Json
            .encode(&env(Some(r#"{"a":"\"q\"","b":[1,2]}"#.to_string())))
            .unwrap();
        for len in 1..bytes.len() {
            assert_eq!(
                check::<String>(&bytes[..len]),
                Err(DecodeError::Corrupt),
                "{len}"
            );
        }
    }

    /// What `uint` must answer for `text`: the number, if `text` starts
    /// with a JSON unsigned integer that fits a u64, and what follows it.
    fn uint_by_str_parse(text: &str) -> Option<(u64, &str)> {
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        let (number, after) = text.split_at(digits);
        if digits == 0 || (digits > 1 && number.starts_with('0')) {
            return None;
        }
        Some((number.parse().ok()?, after))
    }

    #[test]
    fn integers_of_every_length_read_as_str_parse_reads_them() {
        let mut texts = vec![
            u64::MAX.to_string(),
            (u128::from(u64::MAX) + 1).to_string(),
            "99999999999999999999".to_string(),
            "0".to_string(),
            "00".to_string(),
            "012345678".to_string(),
        ];
        for len in 1..=21 {
            texts.push("9".repeat(len));
            texts.push(format!("1{}", "0".repeat(len - 1)));
            texts.push("1234567890123456789012".chars().take(len).collect());
        }
        for text in texts {
            for tail in ["", ",", "x", "/", ":", "12:", "1234567,"] {
                let full = format!("{text}{tail}");
                let mut rest = full.as_bytes();
                let got = uint(&mut rest).map(|n| (n, std::str::from_utf8(rest).unwrap()));
                assert_eq!(got, uint_by_str_parse(&full), "{full:?}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_integer_text_reads_as_str_parse_reads_it(text in "[0-9]{0,24}[0-9,:/x}]{0,10}") {
            let mut rest = text.as_bytes();
            let got = uint(&mut rest).map(|n| (n, std::str::from_utf8(rest).unwrap()));
            prop_assert_eq!(got, uint_by_str_parse(&text));
        }

        #[test]
        fn any_string_round_trips(s in any::<String>(), t in any::<u64>(), l in any::<u32>()) {
            let e = Envelope { written_at: t, fresh_until: t / 2, stale_until: t / 3, load_ms: l, value: Some(s) };
            let bytes = Codec::Json.encode(&e).unwrap();
            prop_assert_eq!(check::<String>(&bytes), Ok(e));
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_agree(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            check::<String>(&bytes).ok();
            check::<Option<String>>(&bytes).ok();
            let mut framed = br#"{"levee":1,"written_at":1,"fresh_until":2,"stale_until":3,"load_ms":4,"value":""#.to_vec();
            framed.extend_from_slice(&bytes);
            framed.extend_from_slice(b"\"}");
            check::<String>(&framed).ok();
            check::<serde_json::Value>(&framed).ok();
        }

        #[test]
        fn mutated_envelopes_never_panic_and_agree(
            s in "[a-z\"\\\\/\\n\\t\u{0}-\u{1f}é✓]{0,40}",
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            how in 0..3u8,
        ) {
            let mut bytes = Codec::Json.encode(&env(Some(s))).unwrap();
            let i = at.index(bytes.len());
            match how {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => { bytes.remove(i); }
            }
            check::<String>(&bytes).ok();
            check::<Option<String>>(&bytes).ok();
        }
    }
}
