//! Page tokens: base64 of a JSON object `{"offset": N}`, as MLflow writes them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::Error;

/// Encodes an offset as an MLflow-style page token.
pub fn encode(offset: u64) -> String {
    STANDARD.encode(format!("{{\"offset\": {offset}}}"))
}

/// Decodes a page token; an empty or absent token is offset 0.
pub fn decode(token: Option<&str>) -> Result<u64, Error> {
    let token = match token {
        None | Some("") => return Ok(0),
        Some(t) => t,
    };
    let bad = || {
        Error::invalid_parameter(format!(
            "Invalid page token '{token}': not a keel page token"
        ))
    };
    let bytes = STANDARD.decode(token).map_err(|_| bad())?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    // SQL's OFFSET is a signed 64-bit integer: a larger offset would wrap.
    value
        .get("offset")
        .and_then(|v| v.as_u64())
        .filter(|offset| i64::try_from(*offset).is_ok())
        .ok_or_else(bad)
}

/// Cuts a page fetched with `LIMIT max_results + 1` back to `max_results` items
/// and returns the token of the next page, if there is one.
pub fn truncate_page<T>(items: &mut Vec<T>, max_results: i64, offset: u64) -> Option<String> {
    let limit = usize::try_from(max_results).unwrap_or(0);
    if items.len() > limit {
        items.truncate(limit);
        Some(encode(offset + limit as u64))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        assert_eq!(decode(Some(&encode(25_000))).unwrap(), 25_000);
        assert_eq!(decode(None).unwrap(), 0);
        assert_eq!(decode(Some("")).unwrap(), 0);
        // MLflow's own token for offset 2.
        assert_eq!(decode(Some("eyJvZmZzZXQiOiAyfQ==")).unwrap(), 2);
        assert!(decode(Some("not base64!")).is_err());
        // 2^63 would wrap to a negative OFFSET.
        assert!(decode(Some(&STANDARD.encode(r#"{"offset": 9223372036854775808}"#))).is_err());
        assert_eq!(
            decode(Some(&encode(i64::MAX as u64))).unwrap(),
            i64::MAX as u64
        );
        let mut items = vec![1, 2, 3];
        assert_eq!(
            decode(truncate_page(&mut items, 2, 10).as_deref()).unwrap(),
            12
        );
        assert_eq!(items, vec![1, 2]);
        assert_eq!(truncate_page(&mut items, 2, 10), None);
    }
}
