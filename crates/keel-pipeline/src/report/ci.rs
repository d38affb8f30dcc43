//! What `keel report` says about one pipeline run, gathered through
//! keel-client (the database directly or a keel server): the run's model
//! metrics beside those of the version holding `@production` (its source
//! run's) and of the run recorded for the previous commit, the gate results
//! recorded on the run, the records of its built-in checks (validation and
//! the feature check's drift against the production training profile), the
//! evaluation details of its metrics files (confusion matrix, calibration)
//! and the metrics of the project's recent pipeline runs. Rendering is
//! [`super::page`]'s.

use std::collections::BTreeMap;
use std::path::Path;

use keel_client::api;
use keel_core::Run;
use keel_core::promotion::GateResults;
use keel_learn::metrics::{CalibrationBin, Metrics};

use crate::checks::{self, CheckRecord};
use crate::config::{Action, Pipeline};
use crate::error::{PipelineError, Result};
use crate::release::Repo;
use crate::track::{self, PIPELINE_TAG, Tracking};

/// How many commits back the previous commit's run is looked for.
pub const ANCESTORS: usize = 20;
/// How many recent pipeline runs the metric curves show.
pub const HISTORY_RUNS: i64 = 20;

/// What the run's metrics are compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Against {
    /// The production version and the previous commit's run (the default).
    Both,
    /// The production version only.
    Production,
    /// The run recorded for this commit (a sha, branch or tag) only.
    Commit(String),
}

impl Against {
    /// `production`, a commit, or nothing (both).
    pub fn parse(text: Option<&str>) -> Against {
        match text.map(str::trim) {
            None | Some("") => Against::Both,
            Some("production") => Against::Production,
            Some(commit) => Against::Commit(commit.to_string()),
        }
    }
}

/// One side the run is compared with.
#[derive(Debug, Clone, PartialEq)]
pub enum Baseline {
    /// Not asked for (`--against` chose the other side).
    NotAsked,
    /// Asked for but there is none, and why ("no production model yet").
    Missing(String),
    Found {
        /// What it is (`risk@production v1`, `commit 0a1b2c3d4e5f`).
        label: String,
        run_id: Option<String>,
        metrics: BTreeMap<String, f64>,
    },
}

impl Baseline {
    /// The baseline's value of `key`.
    pub fn value(&self, key: &str) -> Option<f64> {
        match self {
            Baseline::Found { metrics, .. } => metrics.get(key).copied(),
            _ => None,
        }
    }

    fn metrics(&self) -> Option<&BTreeMap<String, f64>> {
        match self {
            Baseline::Found { metrics, .. } => Some(metrics),
            _ => None,
        }
    }
}

/// One metric of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    pub key: String,
    pub value: Option<f64>,
    pub production: Option<f64>,
    pub previous: Option<f64>,
}

/// A built-in check step of the pipeline and what the run recorded of it.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckOutcome {
    pub stage: String,
    /// A `feature_check:` step (else `validate:`).
    pub feature_check: bool,
    /// The stage's status in the run (`ran`, `skipped`, `failed`, …).
    pub status: Option<String>,
    /// The record, or why there is none.
    pub record: std::result::Result<CheckRecord, String>,
}

/// The evaluation details a stage's metrics file holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Evaluation {
    Classification {
        file: String,
        classes: Vec<String>,
        /// `confusion[true][predicted]`.
        confusion: Vec<Vec<usize>>,
        calibration: Vec<CalibrationBin>,
    },
    /// Nothing to plot, and why.
    Unavailable { file: String, why: String },
}

/// One recent pipeline run's model metrics (the curves' points).
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPoint {
    /// Short commit, else short run id.
    pub label: String,
    pub run_id: String,
    pub metrics: BTreeMap<String, f64>,
}

/// Everything `keel report` shows about one run.
#[derive(Debug, Clone, PartialEq)]
pub struct CiReport {
    pub run_id: String,
    pub run_name: String,
    pub commit: Option<String>,
    pub dirty: bool,
    pub status: String,
    pub started_ms: i64,
    pub metrics: Vec<MetricRow>,
    pub production: Baseline,
    pub previous: Baseline,
    /// None when the run recorded no gate results.
    pub gates: Option<GateResults>,
    pub checks: Vec<CheckOutcome>,
    pub evaluations: Vec<Evaluation>,
    /// Oldest first, the reported run included.
    pub history: Vec<HistoryPoint>,
}

/// Whether a metric describes the model (not the pipeline's timings, not
/// the re-scored production model, not bootstrap intervals).
pub fn is_model_metric(key: &str) -> bool {
    !(key.starts_with("stage.")
        || key == "pipeline.seconds"
        || key.starts_with(crate::gates::PRODUCTION)
        || key.starts_with("bootstrap."))
}

fn short(text: &str) -> &str {
    &text[..text.len().min(12)]
}

fn tag<'r>(run: &'r Run, key: &str) -> Option<&'r str> {
    run.data
        .tags
        .iter()
        .find(|t| t.key == key)
        .map(|t| t.value.as_str())
}

/// The run recorded for the nearest commit before `commit` that has one
/// (up to [`ANCESTORS`] back along first parents); `Ok(Err(why))` when there
/// is none.
pub async fn previous_run(
    tracking: &Tracking,
    root: &Path,
    commit: Option<&str>,
) -> Result<std::result::Result<(String, Run), String>> {
    let Some(commit) = commit else {
        return Ok(Err(
            "the run recorded no git commit: no previous commit".into()
        ));
    };
    let Some(repo) = Repo::discover(root) else {
        return Ok(Err("not a git repository: no previous commit".into()));
    };
    let ancestors = repo.ancestors_of(commit, ANCESTORS);
    if ancestors.is_empty() {
        return Ok(Err(format!(
            "no previous commit before {} in this repository",
            short(commit)
        )));
    }
    for ancestor in ancestors {
        if let Some(run) = tracking.run_for_commit(&ancestor).await? {
            return Ok(Ok((ancestor, run)));
        }
    }
    Ok(Err(format!(
        "no pipeline run recorded for the {ANCESTORS} commits before {}",
        short(commit)
    )))
}

/// The newest pipeline run of the tracking experiment; an error saying so
/// when there is none.
pub async fn latest_run(tracking: &Tracking) -> Result<Run> {
    tracking.latest_run().await?.ok_or_else(|| {
        PipelineError::Invalid(format!(
            "no pipeline run to report on in experiment {:?}: run `keel run` first (or pass --run RUN_ID)",
            tracking.experiment
        ))
    })
}

/// Gathers the report of `run`.
pub async fn gather(
    tracking: &Tracking,
    pipeline: &Pipeline,
    run: &Run,
    against: &Against,
) -> Result<CiReport> {
    let run_id = run.info.run_id.clone();
    let commit = run.git_commit().map(str::to_string);

    let production = if matches!(against, Against::Commit(_)) {
        Baseline::NotAsked
    } else {
        match &pipeline.register {
            None => Baseline::Missing(
                "keel.yaml has no `register:` section: no production model to compare with".into(),
            ),
            Some(register) => match tracking.production(&register.model).await? {
                None => Baseline::Missing(format!(
                    "no production model yet ({}@{} does not exist)",
                    register.model,
                    track::PRODUCTION_ALIAS
                )),
                Some((version, production)) => {
                    let label = if version.run_id.as_deref() == Some(run_id.as_str()) {
                        format!("{} (this run's model)", production.label)
                    } else {
                        production.label
                    };
                    Baseline::Found {
                        label,
                        run_id: version.run_id,
                        metrics: production.metrics,
                    }
                }
            },
        }
    };

    let previous = match against {
        Against::Production => Baseline::NotAsked,
        Against::Commit(wanted) => {
            let resolved = match Repo::discover(&pipeline.root) {
                Some(repo) => repo.resolve(wanted)?,
                None if wanted.len() >= 7 && wanted.chars().all(|c| c.is_ascii_hexdigit()) => {
                    wanted.clone()
                }
                None => {
                    return Err(PipelineError::Invalid(format!(
                        "`{wanted}` names no commit: not a git repository (give the full commit id)"
                    )));
                }
            };
            match tracking.run_for_commit(&resolved).await? {
                Some(found) => Baseline::Found {
                    label: format!("commit {}", short(&resolved)),
                    run_id: Some(found.info.run_id.clone()),
                    metrics: track::model_metrics(&found),
                },
                None => Baseline::Missing(format!(
                    "no pipeline run recorded for commit {} ({wanted})",
                    short(&resolved)
                )),
            }
        }
        Against::Both => match previous_run(tracking, &pipeline.root, commit.as_deref()).await? {
            Ok((found_commit, found)) => Baseline::Found {
                label: format!("previous commit {}", short(&found_commit)),
                run_id: Some(found.info.run_id.clone()),
                metrics: track::model_metrics(&found),
            },
            Err(why) => Baseline::Missing(why),
        },
    };

    let own = track::model_metrics(run);
    let metrics = metric_rows(&own, &production, &previous);

    let root = &run.info.artifact_uri;
    let gates = match tracking.client.get_bytes(root, "gates.json").await? {
        Some(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .as_ref()
            .and_then(GateResults::from_value),
        None => None,
    }
    .or_else(|| tag(run, track::GATES_TAG).and_then(keel_core::promotion::parse_gate_results));

    let mut checks = Vec::new();
    let mut evaluations = Vec::new();
    for stage in &pipeline.stages {
        let status = tag(run, &format!("keel.stage.{}", stage.name)).map(str::to_string);
        if stage.checked_data().is_some() {
            let record = match tracking
                .client
                .get_bytes(root, &checks::artifact_path(&stage.name))
                .await?
            {
                Some(bytes) => checks::parse(&bytes)
                    .map_err(|error| format!("its record could not be read: {error}")),
                None => Err(match status.as_deref() {
                    Some("failed") => "the step failed before it recorded a result".to_string(),
                    Some(status) if status.starts_with("blocked") || status == "not selected" => {
                        format!("the step did not run ({status})")
                    }
                    _ => "no record of it was stored with this run".to_string(),
                }),
            };
            checks.push(CheckOutcome {
                stage: stage.name.clone(),
                feature_check: matches!(stage.action, Action::FeatureCheck { .. }),
                status: status.clone(),
                record,
            });
        }
        for file in &stage.metrics {
            let evaluation = match tracking
                .client
                .get_bytes(root, &track::metrics_artifact_path(&file.path))
                .await?
            {
                None => Evaluation::Unavailable {
                    file: file.path.clone(),
                    why: "the file was not stored with this run".into(),
                },
                Some(bytes) => evaluation(&file.path, &bytes),
            };
            evaluations.push(evaluation);
        }
    }

    let history = history(tracking, run).await?;
    Ok(CiReport {
        run_id,
        run_name: run.info.run_name.clone(),
        dirty: tag(run, "keel.git.dirty") == Some("true"),
        commit,
        status: run.info.status.as_str().to_string(),
        started_ms: run.info.start_time,
        metrics,
        production,
        previous,
        gates,
        checks,
        evaluations,
        history,
    })
}

/// The table's rows: every model metric of the run or of a baseline, sorted.
pub fn metric_rows(
    own: &BTreeMap<String, f64>,
    production: &Baseline,
    previous: &Baseline,
) -> Vec<MetricRow> {
    let mut keys: Vec<&String> = own
        .keys()
        .chain(production.metrics().into_iter().flat_map(|m| m.keys()))
        .chain(previous.metrics().into_iter().flat_map(|m| m.keys()))
        .filter(|key| is_model_metric(key))
        .collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|key| MetricRow {
            key: key.clone(),
            value: own.get(key).copied(),
            production: production.value(key),
            previous: previous.value(key),
        })
        .collect()
}

/// What a metrics file holds for plots: keel evaluate's classification
/// metrics carry the confusion matrix and calibration table.
pub fn evaluation(file: &str, bytes: &[u8]) -> Evaluation {
    let unavailable = |why: &str| Evaluation::Unavailable {
        file: file.to_string(),
        why: why.to_string(),
    };
    match serde_json::from_slice::<Metrics>(bytes) {
        Ok(Metrics::Classification(metrics)) => Evaluation::Classification {
            file: file.to_string(),
            classes: metrics.classes,
            confusion: metrics.confusion_matrix,
            calibration: metrics.calibration,
        },
        Ok(Metrics::Regression(_)) => {
            unavailable("a regression model: no confusion matrix or calibration")
        }
        Err(_) => unavailable(
            "not `keel evaluate`'s metrics JSON: it holds no confusion matrix or calibration table",
        ),
    }
}

/// The model metrics of the experiment's recent pipeline runs, oldest first.
async fn history(tracking: &Tracking, run: &Run) -> Result<Vec<HistoryPoint>> {
    let runs = tracking
        .client
        .search_runs(api::SearchRuns {
            experiment_ids: vec![run.info.experiment_id.clone()],
            filter: Some(format!(
                "tags.`{PIPELINE_TAG}` = 'true' AND attributes.start_time <= {}",
                run.info.start_time
            )),
            max_results: Some(HISTORY_RUNS),
            order_by: vec!["attributes.start_time DESC".to_string()],
        })
        .await?;
    Ok(runs
        .iter()
        .rev()
        .map(|r| HistoryPoint {
            label: short(r.git_commit().unwrap_or(&r.info.run_id)).to_string(),
            run_id: r.info.run_id.clone(),
            metrics: track::model_metrics(r)
                .into_iter()
                .filter(|(key, _)| is_model_metric(key))
                .collect(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn against_reads_production_a_commit_or_nothing() {
        assert_eq!(Against::parse(None), Against::Both);
        assert_eq!(Against::parse(Some("production")), Against::Production);
        assert_eq!(Against::parse(Some("main")), Against::Commit("main".into()));
    }

    #[test]
    fn rows_join_the_run_and_both_baselines_without_timings() {
        let own = BTreeMap::from([
            ("accuracy".to_string(), 0.8),
            ("stage.train.seconds".to_string(), 1.0),
            ("production.accuracy".to_string(), 0.7),
        ]);
        let production = Baseline::Found {
            label: "risk@production v1".into(),
            run_id: None,
            metrics: BTreeMap::from([
                ("accuracy".to_string(), 0.75),
                ("pipeline.seconds".to_string(), 3.0),
            ]),
        };
        let previous = Baseline::Found {
            label: "previous commit".into(),
            run_id: None,
            metrics: BTreeMap::from([("roc_auc".to_string(), 0.9)]),
        };
        let rows = metric_rows(&own, &production, &previous);
        assert_eq!(
            rows,
            vec![
                MetricRow {
                    key: "accuracy".into(),
                    value: Some(0.8),
                    production: Some(0.75),
                    previous: None,
                },
                MetricRow {
                    key: "roc_auc".into(),
                    value: None,
                    production: None,
                    previous: Some(0.9),
                },
            ]
        );
        let none = metric_rows(&own, &Baseline::Missing("none".into()), &Baseline::NotAsked);
        assert_eq!(none.len(), 1);
        assert_eq!(none[0].production, None);
    }

    #[test]
    fn evaluation_reads_keel_evaluate_and_says_what_else_lacks() {
        let classification = br#"{"task": "classification", "rows": 4, "unseen_label_rows": 0,
            "accuracy": 0.5, "precision": 0.5, "recall": 0.5, "f1": 0.5, "roc_auc": 0.5,
            "log_loss": 0.7, "classes": ["0", "1"], "confusion_matrix": [[1, 1], [1, 1]],
            "calibration": [{"lower": 0.0, "upper": 0.5, "count": 2, "mean_predicted": 0.3, "observed": 0.5}],
            "production": {"accuracy": 0.4}}"#;
        match evaluation("metrics.json", classification) {
            Evaluation::Classification {
                classes,
                confusion,
                calibration,
                ..
            } => {
                assert_eq!(classes, ["0", "1"]);
                assert_eq!(confusion, vec![vec![1, 1], vec![1, 1]]);
                assert_eq!(calibration.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        let regression =
            br#"{"task": "regression", "rows": 3, "rmse": 1.0, "mae": 1.0, "r2": 0.5}"#;
        assert!(matches!(
            evaluation("m.json", regression),
            Evaluation::Unavailable { why, .. } if why.contains("regression")
        ));
        assert!(matches!(
            evaluation("m.json", br#"{"latency": 3}"#),
            Evaluation::Unavailable { why, .. } if why.contains("no confusion matrix")
        ));
    }
}
