//! A double in JSON, as protobuf's JSON mapping writes it: finite values as
//! numbers, NaN and the infinities as the strings `"NaN"`, `"Infinity"` and
//! `"-Infinity"` (plain serde would write `null` and fail to read it back).
//! Used with `#[serde(with = "keel_core::json_double")]` on every `f64` that
//! travels between keel processes (a metric's value).

use serde::{Deserialize, Deserializer, Serializer};

pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if value.is_nan() {
        serializer.serialize_str("NaN")
    } else if *value == f64::INFINITY {
        serializer.serialize_str("Infinity")
    } else if *value == f64::NEG_INFINITY {
        serializer.serialize_str("-Infinity")
    } else {
        serializer.serialize_f64(*value)
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
