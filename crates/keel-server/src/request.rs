//! Reading requests: JSON bodies into typed structs (errors name the field),
//! query strings (repeated keys allowed), and MLflow's lenient scalar forms
//! (int64 as number or string; metric values as number or "NaN"/"Infinity").

use std::collections::HashMap;

use bytes::Bytes;
use keel_core::Error;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// Parses a JSON body into `T`. A syntax error is INVALID_PARAMETER_VALUE with the
/// position; a type error names the field path (e.g. `metrics[3].value`).
pub fn parse_json<T: DeserializeOwned>(body: &Bytes) -> Result<T, Error> {
    let quoted;
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else if let Some(rewritten) = quote_non_finite(body) {
        quoted = rewritten;
        &quoted
    } else {
        body
    };
    if has_nul_escape(body) {
        return Err(Error::invalid_parameter(
            "NUL characters (\\u0000) are not allowed in strings",
        ));
    }
    // The fast path reads without tracking where it is; only a body that fails
    // is read again with serde_path_to_error, to name the field in the error.
    // It checks the body's UTF-8 once (vectorized) and reads it as text, so
    // serde_json does not check every string again.
    if let Ok(text) = std::str::from_utf8(body) {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        if let Ok(value) = T::deserialize(&mut deserializer)
            && deserializer.end().is_ok()
        {
            return Ok(value);
        }
    }
    let deserializer = &mut serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut *deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            Error::invalid_parameter(format!("Malformed JSON request body: {inner}"))
        } else if path == "." || path.is_empty() {
            Error::invalid_parameter(format!("Invalid request body: {inner}"))
        } else {
            Error::invalid_parameter(format!("Invalid value for parameter '{path}': {inner}"))
        }
    })?;
    // One JSON value, nothing after it but whitespace.
    deserializer.end().map_err(|error| {
        Error::invalid_parameter(format!("Malformed JSON request body: {error}"))
    })?;
    Ok(value)
}

/// Whether a JSON text holds the escape `\u0000` inside a string (a raw NUL
/// byte is already a syntax error). PostgreSQL cannot store NUL in text, and
/// no name, key or value of keel's needs one, so both backends refuse it.
fn has_nul_escape(body: &[u8]) -> bool {
    // `\u0000` can only appear where the text holds it; most bodies have none.
    if memchr::memmem::find(body, b"u0000").is_none() {
        return false;
    }
    let (mut in_string, mut i) = (false, 0);
    while i < body.len() {
        match (in_string, body[i]) {
            (false, b'"') => in_string = true,
            (true, b'"') => in_string = false,
            (true, b'\\') => {
                if body[i + 1..].starts_with(b"u0000") {
                    return true;
                }
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    false
}

/// Merges query-string parameters under the JSON body (the body wins) and parses `T`.
pub fn params<T: DeserializeOwned>(query: Option<String>, body: &Bytes) -> Result<T, Error> {
    let mut object = match parse_json::<serde_json::Value>(body)? {
        serde_json::Value::Object(map) => map,
        _ => {
            return Err(Error::invalid_parameter(
                "The request body must be a JSON object",
            ));
        }
    };
    let query = QueryParams::parse(query.as_deref());
    for (key, values) in query.entries() {
        if !object.contains_key(key) {
            let value = if values.len() == 1 {
                serde_json::json!(values[0])
            } else {
                serde_json::json!(values)
            };
            object.insert(key.clone(), value);
        }
    }
    parse_json(&Bytes::from(serde_json::Value::Object(object).to_string()))
}

/// Python's `json.dumps` writes the non-standard tokens `NaN`, `Infinity` and
/// `-Infinity`; this quotes them (outside strings) so they reach the lenient
/// number fields as strings. Returns `None` when there is nothing to rewrite.
fn quote_non_finite(body: &[u8]) -> Option<Vec<u8>> {
    let has = |needle: &[u8]| memchr::memmem::find(body, needle).is_some();
    if !has(b"NaN") && !has(b"Infinity") {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() + 8);
    let (mut i, mut in_string, mut escaped) = (0, false, false);
    while i < body.len() {
        let byte = body[i];
        if in_string {
            out.push(byte);
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        let token = [&b"-Infinity"[..], b"Infinity", b"NaN"]
            .into_iter()
            .find(|t| body[i..].starts_with(t));
        match token {
            Some(token) => {
                out.push(b'"');
                out.extend_from_slice(token);
                out.push(b'"');
                i += token.len();
            }
            None => {
                if byte == b'"' {
                    in_string = true;
                }
                out.push(byte);
                i += 1;
            }
        }
    }
    Some(out)
}

/// Query-string parameters; repeated keys keep every value in order.
#[derive(Debug, Default)]
pub struct QueryParams(HashMap<String, Vec<String>>);

impl QueryParams {
    pub fn parse(raw: Option<&str>) -> Self {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        if let Some(raw) = raw {
            for (key, value) in url::form_urlencoded::parse(raw.as_bytes()) {
                map.entry(key.into_owned())
                    .or_default()
                    .push(value.into_owned());
            }
        }
        QueryParams(map)
    }

    /// Every key with its values.
    pub fn entries(&self) -> impl Iterator<Item = (&String, &Vec<String>)> {
        self.0.iter()
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.first()).map(String::as_str)
    }

    pub fn all(&self, key: &str) -> Vec<String> {
        self.0.get(key).cloned().unwrap_or_default()
    }

    /// A required parameter; its absence is INVALID_PARAMETER_VALUE naming it.
    pub fn required(&self, key: &str) -> Result<&str, Error> {
        self.get(key).filter(|v| !v.is_empty()).ok_or_else(|| {
            Error::invalid_parameter(format!("Missing value for required parameter '{key}'"))
        })
    }

    /// An optional integer parameter.
    pub fn int(&self, key: &str) -> Result<Option<i64>, Error> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
                Error::invalid_parameter(format!(
                    "Invalid value '{v}' for parameter '{key}': expected an integer"
                ))
            }),
        }
    }
}

/// Requires a field that serde left empty; names it in the error.
pub fn required<T>(value: Option<T>, field: &str) -> Result<T, Error> {
    required_with(value, || field.to_string())
}

/// [`required`] for a field whose name is built only when it is missing (the
/// elements of a 1,000-metric batch).
pub fn required_with<T>(value: Option<T>, field: impl FnOnce() -> String) -> Result<T, Error> {
    value.ok_or_else(|| {
        Error::invalid_parameter(format!(
            "Missing value for required parameter '{}'",
            field()
        ))
    })
}

/// Picks `run_id`, falling back to the legacy `run_uuid`.
pub fn run_id(run_id: Option<String>, run_uuid: Option<String>) -> Result<String, Error> {
    run_id
        .filter(|s| !s.is_empty())
        .or(run_uuid.filter(|s| !s.is_empty()))
        .ok_or_else(|| Error::invalid_parameter("Missing value for required parameter 'run_id'"))
}

/// A JSON scalar that MLflow accepts as a number or a string. Read with one
/// visitor, not `#[serde(untagged)]` (which buffers every value before trying
/// each variant: three times per metric of a 1,000-metric batch).
enum IntOrString {
    Int(i64),
    Float(f64),
    String(String),
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Scalar;
        impl serde::de::Visitor<'_> for Scalar {
            type Value = IntOrString;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number or a string")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<IntOrString, E> {
                Ok(IntOrString::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<IntOrString, E> {
                Ok(i64::try_from(v).map_or(IntOrString::Float(v as f64), IntOrString::Int))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<IntOrString, E> {
                Ok(IntOrString::Float(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<IntOrString, E> {
                Ok(IntOrString::String(v.to_string()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<IntOrString, E> {
                Ok(IntOrString::String(v))
            }
        }
        deserializer.deserialize_any(Scalar)
    }
}

/// int64 given as a JSON number or a numeric string (protobuf JSON writes int64 as strings).
pub fn lenient_i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    use serde::de::Error as _;
    match Option::<IntOrString>::deserialize(deserializer)? {
        None => Ok(None),
        Some(IntOrString::Int(v)) => Ok(Some(v)),
        Some(IntOrString::Float(v)) if v.fract() == 0.0 && v.abs() < 9.2e18 => Ok(Some(v as i64)),
        Some(IntOrString::Float(v)) => {
            Err(D::Error::custom(format!("expected an integer, got {v}")))
        }
        Some(IntOrString::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| D::Error::custom(format!("expected an integer, got '{s}'"))),
    }
}

/// A string id given as a JSON string or number (experiment ids are strings of integers).
pub fn lenient_string<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    Ok(match Option::<IntOrString>::deserialize(deserializer)? {
        None => None,
        Some(IntOrString::Int(v)) => Some(v.to_string()),
        Some(IntOrString::Float(v)) => Some(v.to_string()),
        Some(IntOrString::String(s)) => Some(s),
    })
}

/// A metric value: a JSON number, or one of the strings "NaN", "Infinity", "-Infinity" (or a numeric string).
pub fn metric_value<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    use serde::de::Error as _;
    match Option::<IntOrString>::deserialize(deserializer)? {
        None => Ok(None),
        Some(IntOrString::Int(v)) => Ok(Some(v as f64)),
        Some(IntOrString::Float(v)) => Ok(Some(v)),
        Some(IntOrString::String(s)) => match s.as_str() {
            "NaN" | "nan" => Ok(Some(f64::NAN)),
            "Infinity" | "inf" | "Inf" => Ok(Some(f64::INFINITY)),
            "-Infinity" | "-inf" | "-Inf" => Ok(Some(f64::NEG_INFINITY)),
            other => other
                .trim()
                .parse::<f64>()
                .map(Some)
                .map_err(|_| D::Error::custom(format!("expected a number, got '{other}'"))),
        },
    }
}

/// A list of strings given as a JSON list (of strings or numbers) or as one
/// string (a query-string parameter that appeared once).
pub fn string_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<IntOrString>),
        One(IntOrString),
    }
    let text = |item: IntOrString| match item {
        IntOrString::Int(v) => v.to_string(),
        IntOrString::Float(v) => v.to_string(),
        IntOrString::String(s) => s,
    };
    Ok(match Option::<OneOrMany>::deserialize(deserializer)? {
        None => Vec::new(),
        Some(OneOrMany::One(item)) => vec![text(item)],
        Some(OneOrMany::Many(items)) => items.into_iter().map(text).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Point {
        #[serde(default, deserialize_with = "metric_value")]
        value: Option<f64>,
        #[serde(default, deserialize_with = "lenient_i64")]
        step: Option<i64>,
    }

    #[test]
    fn lenient_scalars() {
        let p: Point = parse_json(&Bytes::from_static(br#"{"value":"NaN","step":"7"}"#)).unwrap();
        assert!(p.value.unwrap().is_nan());
        assert_eq!(p.step, Some(7));
        let p: Point = parse_json(&Bytes::from_static(br#"{"value":1.5,"step":3}"#)).unwrap();
        assert_eq!((p.value, p.step), (Some(1.5), Some(3)));
        let error = parse_json::<Point>(&Bytes::from_static(br#"{"value":"abc"}"#)).unwrap_err();
        assert!(error.message.contains("'value'"), "{}", error.message);
        let p: Point =
            parse_json(&Bytes::from_static(br#"{"value": -Infinity, "step": 1}"#)).unwrap();
        assert_eq!(p.value, Some(f64::NEG_INFINITY));
        let error =
            parse_json::<Point>(&Bytes::from_static(br#"{"value": 1, "step": NaN}"#)).unwrap_err();
        assert!(error.message.contains("'step'"), "{}", error.message);
        let rewritten =
            quote_non_finite(br#"{"a":"x NaN \" Infinity","b":NaN,"c":[-Infinity]}"#).unwrap();
        assert_eq!(
            rewritten,
            br#"{"a":"x NaN \" Infinity","b":"NaN","c":["-Infinity"]}"#.to_vec()
        );
        assert!(quote_non_finite(b"{\"a\": 1}").is_none());
        let error = parse_json::<Point>(&Bytes::from_static(br#"{"value": 1} x"#)).unwrap_err();
        assert!(
            error.message.contains("Malformed JSON"),
            "{}",
            error.message
        );
        assert!(has_nul_escape(br#"{"a": "x\u0000"}"#));
        assert!(!has_nul_escape(br#"{"a": "x\\u0000"}"#));
        assert!(!has_nul_escape(br#"{"a\"": 1}"#));
        let error = parse_json::<Point>(&Bytes::from_static(b"{not json")).unwrap_err();
        assert!(
            error.message.contains("Malformed JSON"),
            "{}",
            error.message
        );
        // A body that is not UTF-8 takes the slow path and is refused there.
        let error = parse_json::<Point>(&Bytes::from_static(b"{\"value\": \"\xff\"}")).unwrap_err();
        assert!(
            error.message.contains("Malformed JSON"),
            "{}",
            error.message
        );
    }

    #[test]
    fn scalars_are_read_without_buffering_and_errors_keep_their_path() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)] // only its parsing is tested
        struct Batch {
            metrics: Vec<Point>,
        }
        // Past i64: a float, so an integer field refuses it and a value takes it.
        let p: Point =
            parse_json(&Bytes::from_static(br#"{"value": 18446744073709551615}"#)).unwrap();
        assert_eq!(p.value, Some(18446744073709551615.0));
        let error = parse_json::<Point>(&Bytes::from_static(br#"{"step": 18446744073709551615}"#))
            .unwrap_err();
        assert!(error.message.contains("'step'"), "{}", error.message);
        let p: Point = parse_json(&Bytes::from_static(br#"{"step": -3, "value": 2}"#)).unwrap();
        assert_eq!((p.value, p.step), (Some(2.0), Some(-3)));
        for bad in [
            &br#"{"value": true}"#[..],
            br#"{"value": [1]}"#,
            br#"{"step": 1.5}"#,
        ] {
            assert!(parse_json::<Point>(&Bytes::copy_from_slice(bad)).is_err());
        }
        let error = parse_json::<Batch>(&Bytes::from_static(
            br#"{"metrics": [{"value": 1}, {"value": 2}, {"value": {}}]}"#,
        ))
        .unwrap_err();
        assert!(
            error.message.contains("'metrics[2].value'"),
            "{}",
            error.message
        );
    }

    #[test]
    fn query_params() {
        let q = QueryParams::parse(Some(
            "run_ids=a&run_ids=b&metric_key=loss%20x&max_results=5",
        ));
        assert_eq!(q.all("run_ids"), vec!["a", "b"]);
        assert_eq!(q.get("metric_key"), Some("loss x"));
        assert_eq!(q.int("max_results").unwrap(), Some(5));
        assert!(q.required("nope").is_err());
    }
}
