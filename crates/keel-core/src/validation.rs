//! MLflow's input rules, applied by every entry point before anything is stored.
//! Limits follow `mlflow.utils.validation` so the official client sees the same behaviour.

use crate::Error;

pub const MAX_METRICS_PER_BATCH: usize = 1000;
pub const MAX_PARAMS_TAGS_PER_BATCH: usize = 100;
pub const MAX_ENTITIES_PER_BATCH: usize = 1000;
pub const MAX_DATASETS_PER_BATCH: usize = 1000;
pub const MAX_ENTITY_KEY_LENGTH: usize = 250;
pub const MAX_PARAM_VAL_LENGTH: usize = 6000;
pub const MAX_TAG_VAL_LENGTH: usize = 8000;
pub const MAX_EXPERIMENT_NAME_LENGTH: usize = 500;
pub const MAX_EXPERIMENT_TAG_VAL_LENGTH: usize = 5000;
/// Upper bound for `max_results` in run search (MLflow's threshold).
pub const SEARCH_MAX_RESULTS_THRESHOLD: i64 = 50_000;
/// Page size for metric history (MLflow's default).
pub const GET_METRIC_HISTORY_MAX_RESULTS: i64 = 25_000;
/// Most experiments one search names (each is a bound SQL parameter; SQLite
/// and PostgreSQL cap those at 32,766 and 65,535 per statement).
pub const MAX_SEARCH_EXPERIMENT_IDS: usize = 1000;
/// Most comparisons in one search filter (each is a sub-query: PostgreSQL's
/// planner takes minutes over 500 of them joined by AND).
pub const MAX_FILTER_COMPARISONS: usize = 100;
/// Most `IN` list values in one search filter, all lists together (each is
/// a bound SQL parameter).
pub const MAX_FILTER_LIST_VALUES: usize = 1000;
/// Longest search filter, in bytes.
pub const MAX_FILTER_BYTES: usize = 64 * 1024;

/// Most `order_by` clauses in one search.
pub const MAX_ORDER_BY_CLAUSES: usize = 20;

/// Refuses more than [`MAX_ORDER_BY_CLAUSES`] `order_by` clauses.
pub fn check_order_by_count(count: usize) -> Result<(), Error> {
    if count > MAX_ORDER_BY_CLAUSES {
        return Err(Error::invalid_parameter(format!(
            "Invalid value for parameter 'order_by': {count} clauses given, at most \
             {MAX_ORDER_BY_CLAUSES} are accepted"
        )));
    }
    Ok(())
}

/// Refuses a search over more than [`MAX_SEARCH_EXPERIMENT_IDS`] experiments.
pub fn check_search_experiment_ids(count: usize) -> Result<(), Error> {
    if count > MAX_SEARCH_EXPERIMENT_IDS {
        return Err(Error::invalid_parameter(format!(
            "Invalid value for parameter 'experiment_ids': {count} experiments given, at most \
             {MAX_SEARCH_EXPERIMENT_IDS} may be searched at once"
        )));
    }
    Ok(())
}

/// What kind of key is being validated; used in messages ("Invalid metric name: ...").
#[derive(Debug, Clone, Copy)]
pub enum KeyKind {
    Metric,
    Param,
    Tag,
}

impl KeyKind {
    fn noun(self) -> &'static str {
        match self {
            KeyKind::Metric => "metric",
            KeyKind::Param => "param",
            KeyKind::Tag => "tag",
        }
    }
}

/// Validates a metric, param or tag key: MLflow's allowed characters, length, and
/// "must not resolve to another name when treated as a path".
pub fn validate_key(kind: KeyKind, key: &str) -> Result<(), Error> {
    let noun = kind.noun();
    if key.is_empty() {
        return Err(Error::invalid_parameter(format!(
            "Missing value for required parameter '{noun} key'"
        )));
    }
    let ok_chars = key
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ' | ':' | '/'));
    if !ok_chars {
        return Err(Error::invalid_parameter(format!(
            "Invalid {noun} name: '{key}'. Names may only contain alphanumerics, underscores (_), dashes (-), \
             periods (.), spaces ( ), colon(:) and slashes (/)."
        )));
    }
    if let Some(resolved) = normalized_if_different(key) {
        return Err(Error::invalid_parameter(format!(
            "Invalid {noun} name: '{key}'. Names may be treated as files in certain cases, and must not resolve \
             to other names when treated as such. This name would resolve to '{resolved}'"
        )));
    }
    // Checked before the field's name is built: a batch validates 1,000 keys.
    if key.len() <= MAX_ENTITY_KEY_LENGTH {
        return Ok(());
    }
    validate_length(&format!("{noun} key"), key, MAX_ENTITY_KEY_LENGTH)
}

/// Rejects a value longer than `limit` characters, naming the field.
pub fn validate_length(field: &str, value: &str, limit: usize) -> Result<(), Error> {
    let len = value.chars().count();
    if len > limit {
        return Err(Error::invalid_parameter(format!(
            "'{field}' exceeds the maximum length of {limit} characters (got {len})"
        )));
    }
    Ok(())
}

/// Posix-normalizes `name`; returns the normalized form when it differs (e.g. `a/../b`, `/abs`, `a//b`)
/// or, as in MLflow's `path_not_unique`, when it is `.` or leaves its folder (`..`, `../x`).
fn normalized_if_different(name: &str) -> Option<String> {
    if name.starts_with('/') {
        return Some(name.to_string());
    }
    if !name.contains('/') {
        // One part: only `.` and `..` (and the empty name) are not themselves.
        return matches!(name, "" | "." | "..")
            .then(|| if name.is_empty() { "." } else { name }.to_string());
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let normalized = if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    };
    let escapes = parts.is_empty() || parts.first() == Some(&"..");
    (normalized != name || escapes).then_some(normalized)
}

/// Validates an experiment name: non-empty and within MLflow's length limit.
pub fn validate_experiment_name(name: &str) -> Result<(), Error> {
    if name.trim().is_empty() {
        return Err(Error::invalid_parameter(
            "Invalid experiment name: '' (it must be a non-empty string)",
        ));
    }
    validate_length("experiment name", name, MAX_EXPERIMENT_NAME_LENGTH)
}

/// Validates a registered model name: non-empty, no `/` (it would break
/// `models:/NAME/VERSION`), not `.` or `..`.
pub fn validate_model_name(name: &str) -> Result<(), Error> {
    if name.trim().is_empty() {
        return Err(Error::invalid_parameter(
            "Registered model name cannot be empty.",
        ));
    }
    if name.contains('/') || name.contains('\0') {
        return Err(Error::invalid_parameter(format!(
            "Invalid registered model name '{name}': it must not contain '/'"
        )));
    }
    if name == "." || name == ".." {
        // Names become folder names (serving's model cache).
        return Err(Error::invalid_parameter(format!(
            "Invalid registered model name '{name}': '.' and '..' are not names"
        )));
    }
    validate_length("registered model name", name, 256)
}

/// Validates an alias as MLflow does: word characters and dashes, not `latest`,
/// and nothing that looks like a version (`3`, `v3`).
pub fn validate_alias(alias: &str) -> Result<(), Error> {
    let looks_like_version = {
        let digits = alias.strip_prefix(['v', 'V']).unwrap_or(alias);
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    };
    if alias.is_empty()
        || !alias
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        || alias.len() > 255
    {
        return Err(Error::invalid_parameter(format!(
            "Invalid alias name '{alias}': aliases may contain only letters, digits, '_' and '-' (at most 255)"
        )));
    }
    if alias.eq_ignore_ascii_case("latest") || looks_like_version {
        return Err(Error::invalid_parameter(format!(
            "Invalid alias name '{alias}': 'latest' and version-like names (e.g. '3', 'v3') are reserved"
        )));
    }
    Ok(())
}

/// Parses a version given as text ("3"); anything else names no version.
pub fn parse_version(name: &str, version: &str) -> Result<i64, Error> {
    version.trim().parse::<i64>().map_err(|_| {
        Error::invalid_parameter(format!(
            "Invalid model version '{version}' for model '{name}': versions are positive integers"
        ))
    })
}

/// Validates a relative artifact path: no absolute paths, no `..`, no backslashes or NUL.
pub fn validate_relative_path(path: &str) -> Result<(), Error> {
    if path.starts_with('/') || path.contains('\\') || path.contains('\0') {
        return Err(Error::invalid_parameter(format!(
            "Invalid artifact path: '{path}' (must be relative)"
        )));
    }
    if path.split('/').any(|p| p == "..") {
        return Err(Error::invalid_parameter(format!(
            "Invalid artifact path: '{path}' ('..' is not allowed)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(validate_key(KeyKind::Metric, "loss").is_ok());
        assert!(validate_key(KeyKind::Metric, "train/loss: top-1.5 x").is_ok());
        assert!(validate_key(KeyKind::Metric, "").is_err());
        assert!(validate_key(KeyKind::Metric, "a$b").is_err());
        assert!(validate_key(KeyKind::Param, "a/../b").is_err());
        assert!(validate_key(KeyKind::Metric, "../x").is_err());
        assert!(validate_key(KeyKind::Metric, "..").is_err());
        assert!(validate_key(KeyKind::Metric, ".").is_err());
        assert!(validate_key(KeyKind::Metric, "a..b").is_ok());
        assert!(validate_key(KeyKind::Param, "/abs").is_err());
        assert!(validate_key(KeyKind::Param, "a//b").is_err());
        assert!(validate_key(KeyKind::Tag, &"k".repeat(251)).is_err());
        assert!(validate_key(KeyKind::Tag, &"k".repeat(250)).is_ok());
    }

    #[test]
    fn paths() {
        assert!(validate_relative_path("model/MLmodel").is_ok());
        assert!(validate_relative_path("../etc/passwd").is_err());
        assert!(validate_relative_path("a/../../b").is_err());
        assert!(validate_relative_path("/etc/passwd").is_err());
    }
}
