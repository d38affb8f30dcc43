//! A double in JSON, as protobuf's JSON mapping writes it: finite values as
//! numbers, NaN and the infinities as the strings `"NaN"`, `"Infinity"` and
//! `"-Infinity"` (plain serde would write `null` and fail to read it back).
//! Used with `#[serde(with = "keel_core::json_double")]` on every `f64` that
//! travels between keel processes (a metric's value).

use serde::{Deserialize, Deserializer, Serializer};

/// The string a non-finite double is written as (`None` for a finite one,
/// which is written as a number). keel-server's JSON writer uses it too.
pub fn non_finite_name(value: f64) -> Option<&'static str> {
    if value.is_nan() {
        Some("NaN")
    } else if value == f64::INFINITY {
        Some("Infinity")
    } else if value == f64::NEG_INFINITY {
        Some("-Infinity")
    } else {
        None
    }
}

pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    match non_finite_name(*value) {
        Some(name) => serializer.serialize_str(name),
        None => serializer.serialize_f64(*value),
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Wire {
        Number(f64),
        Text(String),
    }
    match Wire::deserialize(deserializer)? {
        Wire::Number(value) => Ok(value),
        Wire::Text(text) => match text.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => other
                .parse()
                .map_err(|_| serde::de::Error::custom(format!("expected a number, got {other:?}"))),
        },
    }
}

#[cfg(test)]
mod tests {
    use crate::Metric;

    #[test]
    fn non_finite_values_round_trip() {
        for value in [1.5, f64::INFINITY, f64::NEG_INFINITY] {
            let text = serde_json::to_string(&Metric::new("m", value, 1, 0)).unwrap();
            let back: Metric = serde_json::from_str(&text).unwrap();
            assert_eq!(back.value, value, "{text}");
        }
        let text = serde_json::to_string(&Metric::new("m", f64::NAN, 1, 0)).unwrap();
        assert!(text.contains("\"NaN\""), "{text}");
        let back: Metric = serde_json::from_str(&text).unwrap();
        assert!(back.value.is_nan());
    }
}
