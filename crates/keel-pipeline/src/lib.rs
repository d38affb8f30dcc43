//! keel-pipeline: pipelines in the shape dvc.yaml users know, with CI gates.
//!
//! - [`config`]: `keel.yaml` (`params`, `stages`, `gates`, `register`) and
//!   `params.yaml`, `${key}` interpolation; errors carry line and column.
//! - [`dag`]: the stage graph from deps/outs; cycles, overlapping outputs and
//!   missing inputs are reported before anything runs.
//! - [`lock`]: `keel.lock`, per stage the cmd, params and BLAKE3 digests of
//!   deps and outs (keel-data's hashing and stat cache).
//! - [`runner`]: `keel run`: out-of-date stages only, in parallel, output
//!   streamed with `[stage]` prefixes.
//! - [`gates`]: gate expressions, evaluated against the stages' metrics and
//!   the production model's.
//! - [`track`]: the pipeline run in the metadata store (params, metrics, git
//!   state, dataset inputs, durations, logs as artifacts), gate results on
//!   the run, and registration of the model version when every gate passes.
//! - [`checks`]: the records of the built-in `validate` and `feature_check`
//!   steps, kept with each tracked run.
//! - [`report`]: the Markdown summary `keel run` writes for a pull request,
//!   and `keel report`'s Markdown/HTML report of a recorded run (metric
//!   deltas vs production and the previous commit, gates, validation, drift).
//!
//! Talks to other subsystems through their crates' APIs only: keel-data
//! (digests, lineage), keel-validate (the built-in `validate` step),
//! keel-store and keel-artifacts (tracking and registration).

pub mod checks;
pub mod config;
pub mod dag;
pub mod error;
pub mod gates;
pub mod lock;
pub mod project_lock;
pub mod release;
pub mod report;
pub mod runner;
pub mod track;

pub use config::{Pipeline, Stage};
pub use error::{PipelineError, Result};
pub use runner::{RunOptions, RunReport, StageReport, StageStatus, run};
