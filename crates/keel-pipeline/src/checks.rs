//! What the built-in check steps found, as a record: `keel run` writes the
//! outcome of a `validate:` or `feature_check:` step to
//! `.keel/state/checks/STAGE.json` when the step runs, and uploads it with
//! every tracked run as the artifact `checks/STAGE.json` (a step that is up
//! to date examined the same inputs, so its last record still holds).
//! `keel report` reads the records back: the validation summary and the
//! drift of the training data against the production model's profile.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{PipelineError, Result};

/// Folder of the records in the project (under `.keel/state`, git-ignored).
pub const CHECKS_DIR: &str = ".keel/state/checks";
/// Folder of the records among a run's artifacts.
pub const ARTIFACT_DIR: &str = "checks";

/// One violation of the schema, summarised (keel-validate's `Violation`
/// without its example rows).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViolationSummary {
    pub column: String,
    pub rule: String,
    pub message: String,
    pub count: u64,
}

/// The outcome of a `validate:` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidateRecord {
    pub data: String,
    pub schema: String,
    pub rows: u64,
    pub columns: usize,
    pub violations: Vec<ViolationSummary>,
    pub notes: Vec<String>,
}

impl ValidateRecord {
    /// The summary of keel-validate's report.
    pub fn from_report(data: &str, schema: &str, report: &keel_validate::Report) -> Self {
        ValidateRecord {
            data: data.to_string(),
            schema: schema.to_string(),
            rows: report.rows,
            columns: report.columns,
            violations: report
                .violations
                .iter()
                .map(|v| ViolationSummary {
                    column: v.column.clone(),
                    rule: v.rule.to_string(),
                    message: v.message.clone(),
                    count: v.count,
                })
                .collect(),
            notes: report.notes.clone(),
        }
    }

    /// Violating cells in all.
    pub fn violation_count(&self) -> u64 {
        self.violations.iter().map(|v| v.count).sum()
    }
}

/// The outcome of a `feature_check:` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureCheckRecord {
    pub data: String,
    /// `production` or the reference profile's path.
    pub reference: String,
    /// None when there was nothing to compare with (no production model
    /// with a stored training profile yet).
    pub report: Option<Box<keel_monitor::validate::ValidationReport>>,
}

/// A built-in step's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CheckRecord {
    Validate(ValidateRecord),
    FeatureCheck(FeatureCheckRecord),
}

/// Where `keel run` keeps the record of `stage`.
pub fn local_path(root: &Path, stage: &str) -> PathBuf {
    root.join(CHECKS_DIR).join(format!("{stage}.json"))
}

/// The artifact path of the record of `stage` under a run's artifact root.
pub fn artifact_path(stage: &str) -> String {
    format!("{ARTIFACT_DIR}/{stage}.json")
}

/// Writes the record of `stage` (atomically).
pub fn write(root: &Path, stage: &str, record: &CheckRecord) -> Result<()> {
    let path = local_path(root, stage);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| PipelineError::io(parent, source))?;
    }
    let bytes = serde_json::to_vec_pretty(record)
        .map_err(|error| PipelineError::Metrics(format!("{}: {error}", path.display())))?;
    keel_fs::write_atomic(&path, &bytes).map_err(|source| PipelineError::io(&path, source))
}

/// Removes the record of `stage` (before the step runs again, so a step that
/// fails without a result leaves none behind).
pub fn clear(root: &Path, stage: &str) -> Result<()> {
    let path = local_path(root, stage);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(PipelineError::io(&path, source)),
    }
}

/// Reads a record from its JSON.
pub fn parse(bytes: &[u8]) -> std::result::Result<CheckRecord, String> {
    serde_json::from_slice(bytes).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_their_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let record = CheckRecord::Validate(ValidateRecord {
            data: "data/train.csv".into(),
            schema: "schema.yaml".into(),
            rows: 10,
            columns: 3,
            violations: vec![ViolationSummary {
                column: "age".into(),
                rule: "min".into(),
                message: "below min 0".into(),
                count: 2,
            }],
            notes: vec![],
        });
        write(dir.path(), "validate", &record).expect("write");
        let bytes = std::fs::read(local_path(dir.path(), "validate")).expect("read");
        assert_eq!(parse(&bytes), Ok(record));
        clear(dir.path(), "validate").expect("clear");
        assert!(!local_path(dir.path(), "validate").exists());
        clear(dir.path(), "validate").expect("clearing nothing is fine");
        let none = CheckRecord::FeatureCheck(FeatureCheckRecord {
            data: "data/train.csv".into(),
            reference: "production".into(),
            report: None,
        });
        let text = serde_json::to_vec(&none).expect("json");
        assert_eq!(parse(&text), Ok(none));
        assert!(parse(b"{\"kind\": \"other\"}").is_err());
    }
}
