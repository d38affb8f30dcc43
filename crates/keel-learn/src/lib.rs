//! keel-learn: keel's built-in tabular learners, so the whole path (train,
//! evaluate, serve) runs without Python.
//!
//! Data comes in as a [`keel_table::Table`] (CSV or Parquet, column types
//! inferred, missing cells read by keel-table's one rule);
//! [`model::Model::train`] fits preprocessing (imputation, categorical
//! encoding, standardization) together with one of the learners — logistic
//! regression, linear/ridge regression, random forest, histogram GBDT — and
//! the result predicts from raw rows. [`metrics`] scores predictions and
//! [`generate`] makes the example data sets of keel's two stories.
//! This crate knows nothing about the registry or HTTP: it returns model files
//! and the caller registers them.

pub mod error;
pub mod forest;
pub mod gbdt;
pub mod generate;
pub mod hist;
pub mod import;
pub mod linear;
pub mod metrics;
pub mod model;
pub mod onnx;
pub mod preprocess;
pub mod rng;
pub mod tree;

pub use error::{LearnError, Result};
pub use metrics::{Metrics, evaluate, train_test_split};
pub use model::{Algorithm, Model, Predictions, Task, TrainOptions};
