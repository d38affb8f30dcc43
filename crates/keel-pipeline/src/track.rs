//! A pipeline run in the metadata store, through keel-client (the database
//! directly, or a keel server over HTTP): the run with its params, metrics (the stages'
//! metrics files plus `stage.NAME.seconds`), git commit and dirty flag,
//! dataset inputs (keel-data lineage for tracked data, the pipeline's own
//! digest otherwise) and the logs of the stages that ran as artifacts; then
//! the gates, evaluated against the model version holding the production
//! alias, stored on the run; then, only when every gate passed, the
//! `register:` section: the model folder uploaded as a run artifact, a new
//! version whose source is that artifact and which carries the gate
//! results (what the registry's promotion rule reads), and the alias.
//!
//! Production metrics: the metrics of the production version's source run
//! (latest values); a version registered without a run falls back to the
//! `metrics` recorded in its gate results.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use keel_client::{Client, CreateRun, UpdateRun, api};
use keel_core::{
    Dataset, DatasetInput, ErrorCode, Metric, ModelVersion, Param, Run, RunStatus, Tag, now_millis,
};
use serde_json::json;

use crate::config::{Action, Pipeline, Reference};
use crate::error::{PipelineError, Result};
use crate::gates::{self, GateResult, Production};
use crate::lock::Entry;
use crate::runner::{RunReport, StageStatus};

/// Tag marking runs made by `keel run`.
pub const PIPELINE_TAG: &str = "keel.pipeline";
/// Tag holding the gate results JSON.
pub const GATES_TAG: &str = "keel.gates";
/// Alias the gates compare with.
pub const PRODUCTION_ALIAS: &str = "production";

/// Where runs and their artifacts go.
#[derive(Debug, Clone)]
pub struct Tracking {
    /// The metadata store, directly or through a keel server.
    pub client: Client,
    pub experiment: String,
    pub user: String,
    /// What triggered this run (e.g. a drift verdict); recorded in the
    /// registry's audit log with the registration and the alias move.
    pub cause: Option<String>,
    /// Move `register.alias` when the gates pass (false: register only, a
    /// person promotes later with `keel models promote`).
    pub move_alias: bool,
}

/// A registered version, the alias it took (if any) and what happened to
/// its release tags, for the user.
#[derive(Debug, Clone)]
pub struct Registered {
    pub version: ModelVersion,
    pub alias: Option<String>,
    pub notes: Vec<String>,
}

/// The first 12 characters of a commit.
fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

/// The git state of the project: commit and whether the tree has changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitState {
    pub commit: String,
    pub dirty: bool,
}

/// Reads `git rev-parse HEAD` and `git status --porcelain`; None outside a repository.
pub fn git_state(root: &Path) -> Option<GitState> {
    let run = |args: &[&str]| -> Option<String> {
        let output = Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let commit = run(&["rev-parse", "HEAD"])?.trim().to_string();
    let dirty = !run(&["status", "--porcelain", "--untracked-files=no"])?
        .trim()
        .is_empty();
    Some(GitState { commit, dirty })
}

impl Tracking {
    async fn experiment_id(&self) -> Result<String> {
        Ok(self.client.experiment_id(&self.experiment).await?)
    }

    /// Records a finished `keel run` as a run; returns it.
    pub async fn record(
        &self,
        pipeline: &Pipeline,
        report: &RunReport,
        started_ms: i64,
    ) -> Result<Run> {
        let mut tags = vec![
            Tag::new(PIPELINE_TAG, "true"),
            Tag::new("mlflow.source.name", pipeline.file.display().to_string()),
            Tag::new("mlflow.source.type", "PROJECT"),
            Tag::new("mlflow.user", self.user.clone()),
        ];
        if let Some(git) = git_state(&pipeline.root) {
            tags.push(Tag::new("mlflow.source.git.commit", git.commit));
            tags.push(Tag::new("keel.git.dirty", git.dirty.to_string()));
        }
        for stage in &report.stages {
            tags.push(Tag::new(
                format!("keel.stage.{}", stage.name),
                stage.status.as_str(),
            ));
        }
        let run = self
            .client
            .create_run(CreateRun {
                experiment_id: self.experiment_id().await?,
                user_id: self.user.clone(),
                run_name: None,
                start_time: Some(started_ms),
                tags,
            })
            .await?;
        let run_id = run.info.run_id.clone();

        let params: Vec<Param> = pipeline
            .all_params
            .iter()
            .map(|(key, value)| Param {
                key: key.clone(),
                value: value
                    .chars()
                    .take(keel_core::validation::MAX_PARAM_VAL_LENGTH)
                    .collect(),
            })
            .collect();
        self.client
            .log_batch(&run_id, Vec::new(), params, Vec::new())
            .await?;

        let now = now_millis();
        let mut metrics: Vec<Metric> = stage_metrics(pipeline)
            .values
            .into_iter()
            .map(|(key, value)| Metric::new(key, value, now, 0))
            .collect();
        for stage in &report.stages {
            if matches!(stage.status, StageStatus::Ran | StageStatus::Failed(_)) {
                metrics.push(Metric::new(
                    format!("stage.{}.seconds", stage.name),
                    stage.seconds,
                    now,
                    0,
                ));
            }
        }
        metrics.push(Metric::new("pipeline.seconds", report.seconds, now, 0));
        self.client
            .log_batch(&run_id, metrics, Vec::new(), Vec::new())
            .await?;

        let datasets = dataset_inputs(&pipeline.root, &report.inputs);
        if !datasets.is_empty() {
            self.client.log_inputs(&run_id, datasets).await?;
        }

        let root = &run.info.artifact_uri;
        for stage in &report.stages {
            if let Some(log) = &stage.log {
                self.client
                    .put_file(root, &format!("logs/{}.log", stage.name), log)
                    .await?;
            }
        }
        let lock = crate::runner::lock_path(pipeline);
        if lock.is_file() {
            self.client.put_file(root, "keel.lock", &lock).await?;
        }
        // What `keel report` shows beyond the scalar metrics: the records of
        // the built-in checks and the stages' metrics files as written
        // (confusion matrix, calibration), under `checks/` and `metrics/`.
        for stage in &pipeline.stages {
            if stage.checked_data().is_some() {
                let record = crate::checks::local_path(&pipeline.root, &stage.name);
                if record.is_file() {
                    self.client
                        .put_file(root, &crate::checks::artifact_path(&stage.name), &record)
                        .await?;
                }
            }
            for file in &stage.metrics {
                let local = pipeline.root.join(&file.path);
                if local.is_file() {
                    self.client
                        .put_file(root, &metrics_artifact_path(&file.path), &local)
                        .await?;
                }
            }
        }
        Ok(self.client.get_run(&run_id).await?)
    }

    /// Marks the run finished (or failed).
    pub async fn finish(&self, run_id: &str, succeeded: bool) -> Result<()> {
        self.client
            .update_run(
                run_id,
                UpdateRun {
                    status: Some(if succeeded {
                        RunStatus::Finished
                    } else {
                        RunStatus::Failed
                    }),
                    end_time: Some(now_millis()),
                    run_name: None,
                },
            )
            .await?;
        Ok(())
    }

    /// The version of `model` holding the production alias and its metrics.
    pub async fn production(&self, model: &str) -> Result<Option<(ModelVersion, Production)>> {
        let uri = format!(
            "{}{model}@{PRODUCTION_ALIAS}",
            keel_core::uri::MODELS_SCHEME
        );
        let version = match self.client.resolve_model_uri(&uri).await {
            Ok(reply) => reply.model_version,
            Err(error) if error.code == ErrorCode::ResourceDoesNotExist => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        let mut metrics = BTreeMap::new();
        if let Some(run_id) = version.run_id.as_deref() {
            match self.client.get_run(run_id).await {
                Ok(run) => {
                    for metric in run.data.metrics {
                        metrics.insert(metric.key, metric.value);
                    }
                }
                Err(error) if error.code == ErrorCode::ResourceDoesNotExist => {}
                Err(error) => return Err(error.into()),
            }
        }
        if metrics.is_empty()
            && let Some(recorded) = version
                .gate_results
                .as_deref()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
            && let Some(map) = recorded.get("metrics").and_then(|m| m.as_object())
        {
            for (key, value) in map {
                if let Some(value) = value.as_f64() {
                    metrics.insert(key.clone(), value);
                }
            }
        }
        let label = format!("{model}@{PRODUCTION_ALIAS} v{}", version.version);
        Ok(Some((version, Production { label, metrics })))
    }

    /// Fetches the training profile stored with the production version
    /// (`profile.json` next to its model files) to [`crate::runner::PRODUCTION_PROFILE`]
    /// for `feature_check` steps with `reference: production`; removes a stale
    /// copy when there is none. Returns the version's label when one was fetched.
    pub async fn fetch_production_profile(&self, pipeline: &Pipeline) -> Result<Option<String>> {
        let wanted = pipeline.stages.iter().any(|stage| {
            matches!(
                stage.action,
                Action::FeatureCheck {
                    reference: Reference::Production,
                    ..
                }
            )
        });
        let target = pipeline.root.join(crate::runner::PRODUCTION_PROFILE);
        let (Some(register), true) = (&pipeline.register, wanted) else {
            return Ok(None);
        };
        let fetched = match self.production(&register.model).await? {
            Some((version, production)) => {
                let uri = format!(
                    "{}{}/{}",
                    keel_core::uri::MODELS_SCHEME,
                    version.name,
                    version.version
                );
                let files = self.client.resolve_model_uri(&uri).await?.artifact_uri;
                self.client
                    .get_bytes(&files, keel_monitor::profile::PROFILE_FILE)
                    .await?
                    .map(|bytes| (bytes, production.label))
            }
            None => None,
        };
        match fetched {
            Some((bytes, label)) => {
                keel_fs::write_atomic(&target, &bytes)
                    .map_err(|source| PipelineError::io(&target, source))?;
                Ok(Some(label))
            }
            None => {
                if target.exists() {
                    std::fs::remove_file(&target)
                        .map_err(|source| PipelineError::io(&target, source))?;
                }
                Ok(None)
            }
        }
    }

    /// Evaluates the pipeline's gates on a run's metrics and stores the results on the run.
    pub async fn gate(
        &self,
        pipeline: &Pipeline,
        run: &Run,
    ) -> Result<(Vec<GateResult>, serde_json::Value)> {
        let metrics: BTreeMap<String, f64> = run
            .data
            .metrics
            .iter()
            .map(|metric| (metric.key.clone(), metric.value))
            .collect();
        let mut production = match &pipeline.register {
            Some(register) => self.production(&register.model).await?.map(|(_, p)| p),
            None => None,
        };
        // A stage that re-scored the production model on this run's data
        // (`keel evaluate --compare models:/NAME@production` writes `production.*`)
        // gives the fairer comparison: prefer it to the version's recorded metrics.
        if let Some(production) = production.as_mut() {
            let rescored: Vec<(String, f64)> = metrics
                .iter()
                .filter_map(|(key, value)| {
                    key.strip_prefix(gates::PRODUCTION)
                        .map(|key| (key.to_string(), *value))
                })
                .collect();
            if !rescored.is_empty() {
                production.metrics.extend(rescored);
                production.label.push_str(" (re-scored on this run's data)");
            }
        }
        let expressions: Vec<String> = pipeline
            .gates
            .iter()
            .map(|g| g.expression.clone())
            .collect();
        let context = stage_metrics(pipeline).context();
        let results = gates::evaluate(&expressions, &metrics, production.as_ref(), &context);
        let json = gates::results_json(&results, &metrics);
        let gates_only = json!({"passed": json["passed"], "gates": json["gates"]});
        let mut tags = vec![Tag::new(
            "keel.gates.passed",
            gates::all_passed(&results).to_string(),
        )];
        let text = gates_only.to_string();
        if text.len() <= keel_core::validation::MAX_TAG_VAL_LENGTH {
            tags.push(Tag::new(GATES_TAG, text));
        }
        self.client
            .log_batch(&run.info.run_id, Vec::new(), Vec::new(), tags)
            .await?;
        self.client
            .put_bytes(
                &run.info.artifact_uri,
                "gates.json",
                Bytes::from(serde_json::to_vec_pretty(&json).unwrap_or_default()),
            )
            .await?;
        Ok((results, json))
    }

    /// Registers the run's model (the `register:` section) carrying `gate_json` and
    /// `tags`, and moves the alias. Callers register only when every gate passed.
    pub async fn register(
        &self,
        pipeline: &Pipeline,
        run: &Run,
        gate_json: &serde_json::Value,
        tags: Vec<Tag>,
    ) -> Result<Option<Registered>> {
        let Some(register) = &pipeline.register else {
            return Ok(None);
        };
        let local = pipeline.root.join(&register.path.path);
        let name = register
            .path
            .path
            .rsplit('/')
            .next()
            .unwrap_or("model")
            .to_string();
        let root = &run.info.artifact_uri;
        let files = list_files(&local)?;
        if files.is_empty() {
            return Err(PipelineError::Invalid(format!(
                "register: `{}` does not exist or is empty",
                register.path.path
            )));
        }
        // What is registered is exactly what keel.lock describes: the folder's
        // digest before and after the upload must be the one its stage recorded.
        let recorded = crate::lock::Lock::read(&pipeline.root.join(crate::lock::LOCK_FILE))?
            .stages
            .values()
            .find_map(|stage| stage.outs.get(&register.path.path).copied());
        let unchanged = |when: &str| -> Result<()> {
            let Some(recorded) = recorded else {
                return Ok(());
            };
            let now = crate::runner::digest(&pipeline.root, &register.path.path)?;
            if now.map(|entry| entry.digest) != Some(recorded.digest) {
                return Err(PipelineError::Invalid(format!(
                    "register: `{}` changed {when} (keel.lock records digest {}, the folder now \
                     has {}); refusing to register files the lock does not describe",
                    register.path.path,
                    recorded.digest.to_hex(),
                    now.map_or("nothing".to_string(), |entry| entry
                        .digest
                        .to_hex()
                        .to_string())
                )));
            }
            Ok(())
        };
        unchanged("after its stage ran")?;
        for (relative, path) in &files {
            let target = if relative.is_empty() {
                name.clone()
            } else {
                format!("{name}/{relative}")
            };
            self.client.put_file(root, &target, path).await?;
        }
        unchanged("while it was uploaded")?;
        // The training profile travels with the version (what the next run's
        // feature check compares with): the model's own, or the profile of the
        // data the pipeline's feature check examined.
        let profile_name = keel_monitor::profile::PROFILE_FILE;
        if !files.iter().any(|(relative, _)| relative == profile_name)
            && let Some(data) = pipeline
                .stages
                .iter()
                .find_map(|stage| match &stage.action {
                    Action::FeatureCheck { data, .. } => Some(data),
                    _ => None,
                })
        {
            let profile = keel_monitor::profile_file(&pipeline.root.join(&data.path), None)
                .map_err(|error| {
                    PipelineError::Metrics(format!("profiling {}: {error}", data.path))
                })?;
            let local_profile = pipeline.root.join(".keel/state/registered-profile.json");
            profile.write_json(&local_profile).map_err(|error| {
                PipelineError::Metrics(format!("writing {}: {error}", local_profile.display()))
            })?;
            self.client
                .put_file(root, &format!("{name}/{profile_name}"), &local_profile)
                .await?;
        }
        let signature = ["signature.json"]
            .iter()
            .map(|file| local.join(file))
            .find(|path| path.is_file())
            .and_then(|path| std::fs::read_to_string(path).ok());
        let reason = format!("keel run: gates passed ({})", pipeline.file.display());
        let cause = self
            .cause
            .clone()
            .unwrap_or_else(|| format!("run {}", run.info.run_id));
        let version = self
            .client
            .create_model_version(api::CreateVersion {
                name: register.model.clone(),
                source: format!("{}/{name}", run.info.artifact_uri.trim_end_matches('/')),
                run_id: Some(run.info.run_id.clone()),
                description: Some(format!(
                    "Registered by keel run from {}",
                    register.path.path
                )),
                signature,
                gate_results: Some(gate_json.to_string()),
                tags,
                reason: reason.clone(),
                cause: cause.clone(),
                ..api::CreateVersion::default()
            })
            .await?;
        let mut notes = Vec::new();
        // Release tags are decided before the alias moves: the commit the
        // run came from, unless the tree is dirty or there is no git.
        let release = if register.git_tags {
            // The run's own outputs: its lock file and keel's folder.
            let lock = crate::runner::lock_path(pipeline);
            let keel_dir = pipeline.root.join(".keel");
            match crate::release::release_commit(
                &pipeline.root,
                &[lock.as_path(), keel_dir.as_path()],
            ) {
                Ok(release) => Some(release),
                Err(why) => {
                    notes.push(why);
                    None
                }
            }
        } else {
            None
        };
        let branch_allows = match (&register.on_branch, &release) {
            (None, _) => true,
            (Some(wanted), Some((_, head))) => head.branch.as_deref() == Some(wanted.as_str()),
            (Some(wanted), None) => crate::release::Repo::discover(&pipeline.root)
                .and_then(|repo| repo.head().ok())
                .is_some_and(|head| head.branch.as_deref() == Some(wanted.as_str())),
        };
        let mut moved = None;
        if let Some(alias) = register.alias.as_ref().filter(|_| self.move_alias) {
            if branch_allows {
                // The store checks the recorded gates inside the alias move.
                self.client
                    .promote(api::Promote {
                        name: register.model.clone(),
                        version: version.version.to_string(),
                        alias: alias.clone(),
                        force: false,
                        reason,
                        cause,
                    })
                    .await?;
                moved = Some(alias.clone());
            } else {
                notes.push(format!(
                    "not on branch `{}` (register.on_branch): registered without moving @{alias}",
                    register.on_branch.as_deref().unwrap_or_default()
                ));
            }
        }
        if let Some((repo, head)) = release {
            let datasets: Vec<serde_json::Value> = run
                .dataset_inputs
                .iter()
                .map(|input| json!({"name": input.dataset.name, "digest": input.dataset.digest}))
                .collect();
            let annotation = json!({
                "model": register.model,
                "version": version.version,
                "run_id": run.info.run_id,
                "passed": gate_json["passed"],
                "gates": gate_json["gates"],
                "datasets": datasets,
            });
            let tag = crate::release::version_tag(&register.model, version.version);
            repo.tag(&tag, &head.commit, &annotation.to_string())?;
            notes.push(format!("git tag {tag} on {}", short(&head.commit)));
            if let Some(alias) = &moved {
                let tag = repo.next_alias_tag(&register.model, alias)?;
                let annotation = json!({
                    "model": register.model,
                    "alias": alias,
                    "version": version.version,
                    "run_id": run.info.run_id,
                    "user": self.user,
                });
                repo.tag(&tag, &head.commit, &annotation.to_string())?;
                notes.push(format!("git tag {tag} on {}", short(&head.commit)));
            }
        }
        Ok(Some(Registered {
            version: self
                .client
                .get_model_version(&register.model, version.version)
                .await?,
            alias: moved,
            notes,
        }))
    }

    /// The newest `keel run` run recorded for `commit` (its
    /// `mlflow.source.git.commit`), if any.
    pub async fn run_for_commit(&self, commit: &str) -> Result<Option<Run>> {
        let Some(experiment_id) = self.client.find_experiment(&self.experiment).await? else {
            return Ok(None);
        };
        let runs = self
            .client
            .search_runs(api::SearchRuns {
                experiment_ids: vec![experiment_id],
                filter: Some(format!(
                    "tags.`{PIPELINE_TAG}` = 'true' AND tags.`mlflow.source.git.commit` = '{}'",
                    commit.replace('\'', "")
                )),
                max_results: Some(1),
                order_by: vec!["attributes.start_time DESC".to_string()],
            })
            .await?;
        Ok(runs.into_iter().next())
    }

    /// The newest `keel run` run of the experiment.
    pub async fn latest_run(&self) -> Result<Option<Run>> {
        let Some(experiment_id) = self.client.find_experiment(&self.experiment).await? else {
            return Ok(None);
        };
        let runs = self
            .client
            .search_runs(api::SearchRuns {
                experiment_ids: vec![experiment_id],
                filter: Some(format!("tags.`{PIPELINE_TAG}` = 'true'")),
                max_results: Some(1),
                order_by: vec!["attributes.start_time DESC".to_string()],
            })
            .await?;
        Ok(runs.into_iter().next())
    }
}

/// Where a stage's metrics file is kept among the run's artifacts.
pub fn metrics_artifact_path(path: &str) -> String {
    format!("metrics/{}", path.trim_start_matches("./"))
}

/// A run's metrics that describe the model (not the pipeline's timings).
pub fn model_metrics(run: &Run) -> BTreeMap<String, f64> {
    run.data
        .metrics
        .iter()
        .filter(|m| !m.key.starts_with("stage.") && m.key != "pipeline.seconds")
        .map(|m| (m.key.clone(), m.value))
        .collect()
}

/// The stages' metrics, flattened, and what could not be read.
#[derive(Debug, Clone, Default)]
pub struct StageMetrics {
    pub values: BTreeMap<String, f64>,
    /// Metrics files read.
    pub files: Vec<String>,
    /// Files that are missing or not JSON, with why.
    pub problems: Vec<String>,
}

impl StageMetrics {
    /// What a missing metric's note says about where keel looked.
    pub fn context(&self) -> String {
        let mut out = String::new();
        if !self.files.is_empty() {
            out.push_str(&format!(" (read: {})", self.files.join(", ")));
        }
        for problem in &self.problems {
            out.push_str(&format!("; {problem}"));
        }
        out
    }
}

/// Reads every stage's metrics files.
pub fn stage_metrics(pipeline: &Pipeline) -> StageMetrics {
    let mut out = StageMetrics::default();
    for stage in &pipeline.stages {
        for file in &stage.metrics {
            match gates::read_metrics(&pipeline.root, std::slice::from_ref(&file.path)) {
                Ok(metrics) => {
                    out.values.extend(metrics);
                    out.files.push(file.path.clone());
                }
                Err(error) => out.problems.push(error.to_string()),
            }
        }
    }
    out
}

/// Which inputs are datasets: data tracked by keel data (its metafile gives
/// the digest, through keel-data's lineage), and untracked tables and folders
/// (the pipeline's own digest). Code and config files are not datasets.
fn dataset_inputs(root: &Path, inputs: &BTreeMap<String, Entry>) -> Vec<DatasetInput> {
    let project = keel_data::Project::discover(root).ok();
    let mut out = Vec::new();
    for (path, entry) in inputs {
        if let Some(project) = &project
            && let Ok(input) = keel_data::dataset_input(project, Path::new(path), root)
        {
            out.push(DatasetInput {
                dataset: Dataset {
                    name: input.path.clone(),
                    digest: input.digest,
                    source_type: "keel-data".into(),
                    source: json!({"metafile": input.source, "hash": input.hash}).to_string(),
                    schema: None,
                    profile: Some(json!({"size": input.size, "files": input.files}).to_string()),
                },
                tags: vec![Tag::new("mlflow.data.context", "pipeline")],
            });
            continue;
        }
        let extension = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
        let is_table = matches!(
            extension.as_deref(),
            Some("csv" | "tsv" | "parquet" | "pq" | "jsonl")
        );
        let is_dir = root.join(path).is_dir();
        if is_table || is_dir {
            out.push(DatasetInput {
                dataset: Dataset {
                    name: path.clone(),
                    digest: entry.digest.to_hex(),
                    source_type: "local".into(),
                    source: json!({"path": path, "hash": keel_data::hash::HASH_NAME}).to_string(),
                    schema: None,
                    profile: Some(json!({"size": entry.size, "files": entry.files}).to_string()),
                },
                tags: vec![Tag::new("mlflow.data.context", "pipeline")],
            });
        }
    }
    out
}

/// Files under `path` (or `path` itself) as (relative, absolute), sorted.
fn list_files(path: &Path) -> Result<Vec<(String, std::path::PathBuf)>> {
    let mut out = Vec::new();
    if path.is_file() {
        out.push((String::new(), path.to_path_buf()));
        return Ok(out);
    }
    if !path.is_dir() {
        return Ok(out);
    }
    let mut stack = vec![(path.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| PipelineError::io(&dir, source))?;
        for entry in entries {
            let entry = entry.map_err(|source| PipelineError::io(&dir, source))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let relative = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let file_type = entry
                .file_type()
                .map_err(|source| PipelineError::io(&entry.path(), source))?;
            if file_type.is_dir() {
                stack.push((entry.path(), relative));
            } else if file_type.is_file() {
                out.push((relative, entry.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}
