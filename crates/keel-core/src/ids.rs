//! Identifier generation in MLflow's formats.

/// A new run id: 32 lowercase hex characters.
pub fn new_run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A new logged-model id: `m-` followed by 32 hex characters.
pub fn new_model_id() -> String {
    format!("m-{}", uuid::Uuid::new_v4().simple())
}

/// A new opaque id for rows that need one (datasets, inputs).
pub fn new_uuid() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// True when `s` looks like a run id (32 hex chars); used to give a clear error early.
pub fn is_run_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}
