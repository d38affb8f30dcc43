//! The one duration format of every flag, environment variable and
//! keel.yaml field that takes a length of time: humantime's (`250ms`,
//! `30s`, `1.5s`, `10m`, `1h 30m`, `2d`). A unit is required: a bare number
//! is an error naming the expected form, never silently seconds in one
//! place and milliseconds in another.

use std::time::Duration;

use crate::error::Error;

/// What a duration looks like, for error messages.
pub const EXPECTED: &str = "a duration with a unit, such as 250ms, 30s, 10m or 1h";

/// Parses a duration; `what` names the flag or field in the error.
pub fn parse(what: &str, text: &str) -> Result<Duration, Error> {
    parse_flag(text).map_err(|why| Error::invalid_parameter(format!("{what}: {why}")))
}

/// Parses a duration, the error saying why and what is expected (clap's
/// `value_parser`, which names the flag itself).
pub fn parse_flag(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if !trimmed.is_empty() && trimmed.parse::<f64>().is_ok() {
        return Err(format!("`{trimmed}` has no unit (expected {EXPECTED})"));
    }
    humantime::parse_duration(trimmed)
        .map_err(|error| format!("`{trimmed}`: {error} (expected {EXPECTED})"))
}

/// A duration written back in the same format (`1h 30m`, `250ms`).
pub fn format(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// `#[serde(with = "keel_core::duration::serde")]` for a `Duration` field;
/// a number (YAML `window: 3600`) is an error naming the expected form.
pub mod serde {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    use super::{EXPECTED, format};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format(*value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }

    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(EXPECTED)
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
            super::parse_flag(text).map_err(E::custom)
        }

        fn visit_i64<E: de::Error>(self, number: i64) -> Result<Duration, E> {
            Err(E::custom(format_args!(
                "`{number}` has no unit (expected {EXPECTED})"
            )))
        }

        fn visit_u64<E: de::Error>(self, number: u64) -> Result<Duration, E> {
            Err(E::custom(format_args!(
                "`{number}` has no unit (expected {EXPECTED})"
            )))
        }

        fn visit_f64<E: de::Error>(self, number: f64) -> Result<Duration, E> {
            Err(E::custom(format_args!(
                "`{number}` has no unit (expected {EXPECTED})"
            )))
        }
    }

    /// The same for an `Option<Duration>` field (absent or null is `None`).
    pub mod option {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(
            value: &Option<Duration>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match value {
                Some(duration) => super::serialize(duration, serializer),
                None => serializer.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Duration>, D::Error> {
            #[derive(Deserialize)]
            struct Wrapped(#[serde(with = "super")] Duration);
            Option::<Wrapped>::deserialize(deserializer).map(|w| w.map(|Wrapped(d)| d))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_required() {
        assert_eq!(parse("x", "250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("x", " 30s ").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("x", "1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("x", "1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("x", "2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse("x", "0s").unwrap(), Duration::ZERO);
        let bare = parse("--timeout", "600").unwrap_err().message;
        assert_eq!(
            bare,
            "--timeout: `600` has no unit (expected a duration with a unit, such as 250ms, 30s, 10m or 1h)"
        );
        for bad in ["", "s", "10 parsecs", "-1s", "1.2.3s", "1.5"] {
            let error = parse("window", bad).unwrap_err().message;
            assert!(
                error.starts_with("window: ") && error.contains(EXPECTED),
                "{bad}: {error}"
            );
        }
        assert_eq!(format(Duration::from_secs(5400)), "1h 30m");
        assert_eq!(
            parse_flag("10"),
            Err(format!("`10` has no unit (expected {EXPECTED})"))
        );
    }
}
