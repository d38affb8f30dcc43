//! keel-validate: data validation. `infer` reads a CSV or Parquet file once
//! and writes its [`Schema`] (types, nullability, min/max, categories,
//! uniqueness); `validate` streams a file against a schema and reports every
//! violation by column, with counts and example row numbers. Both read one
//! record (CSV) or one row group (Parquet) at a time, so memory does not grow
//! with the file; uniqueness is tracked as 64-bit hashes up to a bound.
//! Rows and cells come from keel-table's readers, so a cell is missing
//! here exactly when training, serving and monitoring read it as missing.
//!
//! Code map: [`schema`] (the schema file),
//! [`infer`], [`check`] (validation and its report); schema files are read
//! with keel-yaml (errors at `file:line:column`). Knows nothing about
//! pipelines, the metadata store or HTTP.

pub mod check;
pub mod error;
pub mod infer;
pub mod schema;

pub use check::{Report, Violation, validate, validate_path};
pub use error::{Result, ValidateError};
pub use infer::{infer, infer_path};
pub use schema::{ColumnSchema, ColumnType, Schema};

/// Most distinct values remembered per column for uniqueness (64-bit hashes,
/// about 40 MB per column at the bound); past it uniqueness is not claimed
/// (infer) or no longer checked (validate, which says so).
pub const UNIQUE_TRACK_LIMIT: usize = 2_000_000;

/// Most distinct values for a text column to be inferred as categorical.
pub const MAX_CATEGORIES: usize = 20;

fn value_hash(text: &str) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}
