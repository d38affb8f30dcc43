//! keel-table: tabular data as every keel subsystem reads it.
//!
//! One owner for what a cell means ([`cell`]: the missing-value rule, text
//! to number, number to text), the typed streaming readers ([`rows`]: CSV a
//! record at a time, Parquet a row group at a time), the whole-table
//! reader ([`Table`]: columns inferred numeric or categorical) and the
//! partition of a file set into shards ([`shard`]: row groups and files).
//! Training (keel-learn), validation (keel-validate), serving's input contract
//! (keel-serve), monitoring (keel-monitor) and data diffs (keel-data) all
//! read cells here, so a `?` in a CSV is missing in every one of them.
//! Knows nothing about models, the registry or HTTP.

pub mod cell;
pub mod error;
pub mod rows;
pub mod shard;
pub mod table;

pub use cell::{Cell, MISSING_TOKENS, Text, format_number, is_missing, read_text};
pub use error::{Result, TableError};
pub use rows::{CsvRows, ParquetRows, Rows, is_parquet};
pub use table::{Column, Table};
