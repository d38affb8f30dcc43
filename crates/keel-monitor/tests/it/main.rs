//! keel-monitor's integration tests, one binary: files in and reports out,
//! prediction-log windows, and the drift benchmark's design at 10k–1M rows.

mod concept;
mod files;
mod joint;
mod log;
mod segments;
mod service;
mod shards;
mod synthetic;
