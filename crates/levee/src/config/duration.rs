//! Durations in a config file are strings humans write: `"250ms"`, `"5m"`,
//! `"1h 30m"` (humantime), written back the same way.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// What a bad duration's error shows as examples.
pub(crate) const EXAMPLES: &str = "examples: 60s, 5m";

/// Parses a duration as a config file writes it.
pub(crate) fn parse(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|_| format!("{s:?} is not a duration ({EXAMPLES})"))
}

/// Writes a duration as a config file would (`5m`, `1s 500ms`).
pub(crate) fn format(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// `#[serde(with = "duration::option")]` for `Option<Duration>` fields.
pub(crate) mod option {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&format(*d)),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map(Some).map_err(serde::de::Error::custom)
    }
}

/// `#[serde(with = "duration::map")]` for named durations (stale tiers).
pub(crate) mod map {
    use std::collections::BTreeMap;

    use serde::ser::SerializeMap;

    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        m: &BTreeMap<String, Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut out = s.serialize_map(Some(m.len()))?;
        for (k, v) in m {
            out.serialize_entry(k, &format(*v))?;
        }
        out.end()
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, Duration>, D::Error> {
        BTreeMap::<String, String>::deserialize(d)?
            .into_iter()
            .map(|(k, v)| Ok((k, parse(&v).map_err(serde::de::Error::custom)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_durations_parse_back_equal() {
        for d in [
            Duration::from_millis(250),
            Duration::from_secs(300),
            Duration::from_millis(1500),
            Duration::from_secs(48 * 3600),
        ] {
            assert_eq!(parse(&format(d)), Ok(d), "{}", format(d));
        }
    }

    #[test]
    fn a_bad_duration_names_the_value_and_gives_examples() {
        assert_eq!(
            parse("5 parsecs"),
            Err("\"5 parsecs\" is not a duration (examples: 60s, 5m)".to_string())
        );
    }
}
