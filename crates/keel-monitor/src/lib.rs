//! keel-monitor: is the data a model sees still the data it was trained on,
//! and is the model still right?
//!
//! - [`profile`]: mergeable, serializable column profiles built in one
//!   streaming pass ([`read`] for CSV and Parquet, [`profile::Profile::from_table`]
//!   for in-memory tables), with exact counts and bounded sketches ([`sketch`]).
//! - [`drift`]: per-column verdicts (effect size AND corrected significance)
//!   and the dataset verdict; [`quality`]: data-quality findings, apart from drift.
//! - [`stats`]: the G-test, two-proportion test, Holm / Benjamini–Hochberg.
//!
//! This crate reads files and returns typed reports; it knows nothing about
//! the registry, HTTP or the terminal.

pub mod calibration;
pub mod config;
pub mod drift;
pub mod error;
pub mod joint;
pub mod labelled;
pub mod profile;
pub mod quality;
pub mod read;
pub mod render;
pub mod segments;
pub mod service;
pub mod sketch;
pub mod stats;
pub mod validate;
pub mod watch;
pub mod window;

pub use drift::{ColumnVerdict, DatasetVerdict, DriftConfig, DriftReport, Status, compare};
pub use error::{MonitorError, Result};
pub use profile::{ColumnKind, ColumnProfile, Profile};
pub use quality::{FindingKind, QualityFinding};
pub use read::profile_file;
