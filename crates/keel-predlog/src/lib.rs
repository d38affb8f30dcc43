//! keel-predlog: the prediction and feedback logs, as one owner.
//!
//! - [`schema`]: the columns and their types (constants shared by writer and
//!   reader), the format version and the compatibility rule.
//! - [`layout`]: Hive-style partitions by model, version and UTC day, one
//!   writer per replica (`part-<replica>-<seq>.parquet`), on a local
//!   directory or `s3://bucket/prefix`.
//! - [`PredictionLog`]: the writer a serving replica holds. A request's
//!   record is group-committed to an append-only spool segment on local disk
//!   before the request is answered (so `kill -9` loses no acknowledged
//!   prediction), then a background thread compacts sealed segments into
//!   Parquet under the log root; recovery at start-up compacts leftovers.
//! - [`LogReader`]: lists a model's files for a time window across versions
//!   and replicas, reads them into typed columns, merges replicas by time,
//!   and indexes feedback by `(request_id, row)`.
//!
//! The format is written up in `docs/prediction-log.md`. This crate knows
//! nothing of HTTP, models or monitoring: keel-serve writes through it,
//! keel-monitor and the retrain loop read through it.

mod compact;
pub mod error;
pub mod layout;
mod parquet_io;
mod reader;
pub mod schema;
mod segment;
mod spool;
mod store;
mod writer;

#[cfg(test)]
mod tests;

pub use error::{LogError, Result};
pub use reader::{FeedbackIndex, InputValues, Label, LogFile, LogReader, PredictionBatch};
pub use schema::{Input, InputKind, ModelSchema};
pub use segment::{Feedback, Inputs, Outputs, Prediction};
pub use spool::FsyncPolicy;
pub use store::Location;
pub use writer::{LogSettings, LoggedModel, PredictionLog, Refused, Stats, default_spool};
