//! `keel evaluate`: scores a model on a CSV or Parquet table and prints (or
//! writes) the metrics JSON that gates read; optionally on the seeded
//! held-out split `keel train` used, with bootstrap confidence intervals, and
//! logged to a tracking run (metrics, params, and the metrics JSON as the
//! run's `metrics.json` artifact). A keel model folder is predicted natively;
//! an ONNX model (a `.onnx` file, or a folder such as `keel models import`
//! writes) runs in ONNX Runtime through keel-engine.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use keel_client::{Client, CreateRun, UpdateRun};
use keel_core::{Metric, Param, RunStatus, now_millis};
use keel_engine::{Batch, EnginePreference, LoadedModel};
use keel_learn::metrics::Scored;
use keel_learn::{Model, train_test_split};
use keel_table::{Column, Table, format_number};

/// Arguments of `keel evaluate`.
#[derive(Debug, Clone, clap::Args)]
pub struct EvaluateArgs {
    /// Model folder (from `keel train --out`), or an ONNX model: a `.onnx`
    /// file or a folder holding `model.onnx` (and `signature.json`).
    pub model: PathBuf,
    /// Data to score (CSV or Parquet, holding the target column).
    pub data: PathBuf,
    /// Column holding the truth (default: the model's target).
    #[arg(long)]
    pub target: Option<String>,
    /// ONNX Runtime shared library for ONNX models (else KEEL_ONNXRUNTIME_LIB,
    /// ORT_DYLIB_PATH, the active Python's onnxruntime wheel, LD_LIBRARY_PATH, /usr/lib…).
    #[arg(long)]
    pub onnxruntime_lib: Option<PathBuf>,
    /// Write the metrics JSON here instead of printing it.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Seed of the held-out split and of the bootstrap resampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Score only the rows `keel train --seed S --test-fraction F` held out
    /// of DATA (same seed, same fraction); 0 scores every row.
    #[arg(long, default_value_t = 0.0)]
    pub test_fraction: f64,
    /// Bootstrap resamples for 95% confidence intervals (0: none).
    #[arg(long, default_value_t = 0)]
    pub bootstrap: usize,
    /// Also score this model on the same rows and write its metrics under
    /// `production` (e.g. `models:/risk@production`, or a model folder), so a
    /// gate `accuracy >= production.accuracy` compares both on the same data.
    /// A registry alias that does not exist yet is noted and skipped.
    #[arg(long, value_name = "MODEL_URI")]
    pub compare: Option<String>,
    /// Log the metrics to this existing run.
    #[arg(long, conflicts_with = "experiment")]
    pub run_id: Option<String>,
    /// Log the metrics to a new run in this experiment (created if missing).
    #[arg(long)]
    pub experiment: Option<String>,
    /// Name of the new run (with --experiment).
    #[arg(long, requires = "experiment")]
    pub run_name: Option<String>,
    #[command(flatten)]
    pub client: super::client::ClientArgs,
}

pub fn run(args: EvaluateArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let scored = if is_onnx_model(&args.model) {
        score_onnx(&args)
    } else {
        score_keel(&args)
    }
    .with_context(|| {
        format!(
            "evaluating {} on {}",
            args.model.display(),
            args.data.display()
        )
    })?;
    let metrics = scored.metrics();
    let bootstrap = (args.bootstrap > 0).then(|| scored.bootstrap(args.bootstrap, args.seed));
    let mut document = serde_json::to_value(&metrics)?;
    if let (Some(bootstrap), Some(object)) = (&bootstrap, document.as_object_mut()) {
        object.insert("bootstrap".into(), serde_json::to_value(bootstrap)?);
    }
    if let Some(uri) = &args.compare {
        let compared = compare(&args, uri)?;
        if let Some(object) = document.as_object_mut() {
            match compared {
                Some((label, metrics)) => {
                    if !quiet {
                        let (name, value) = metrics.headline();
                        eprintln!("{label} on the same rows: {name}={value:.4}");
                    }
                    object.insert("production".into(), serde_json::to_value(&metrics)?);
                    object.insert("production_model".into(), label.into());
                }
                None => {
                    if !quiet {
                        eprintln!("{uri}: no such model version yet; nothing to compare with");
                    }
                }
            }
        }
    }
    match &args.output {
        Some(path) => {
            super::write_json(path, &document)?;
            if !quiet {
                let (name, value) = metrics.headline();
                println!("{name}={value:.4}; metrics written to {}", path.display());
            }
        }
        None => println!("{}", serde_json::to_string_pretty(&document)?),
    }
    if args.run_id.is_some() || args.experiment.is_some() {
        let mut scalars: Vec<(String, f64)> = metrics
            .scalars()
            .into_iter()
            .map(|(name, value)| (name.to_string(), value))
            .collect();
        if let Some(bootstrap) = &bootstrap {
            for (name, [lower, upper]) in &bootstrap.intervals {
                scalars.push((format!("{name}_ci_lower"), *lower));
                scalars.push((format!("{name}_ci_upper"), *upper));
            }
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting runtime")?;
        let logged = runtime.block_on(log_to_run(&args, &scalars, &document))?;
        if !quiet {
            eprintln!(
                "logged {} metric(s) to run {} (experiment {}); metrics JSON at {}",
                scalars.len(),
                logged.run_id,
                logged.experiment_id,
                logged.artifact
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Scores the model `uri` names on the same rows as the candidate; `None`
/// when the registry has no such version yet.
fn compare(
    args: &EvaluateArgs,
    uri: &str,
) -> anyhow::Result<Option<(String, keel_learn::Metrics)>> {
    let temporary = tempfile::tempdir().context("creating a temporary folder")?;
    let (label, dir) = if keel_core::uri::ModelUri::is_model_uri(uri) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting runtime")?;
        let fetched = runtime.block_on(async {
            let client = args.client.open(None).await?;
            let fetched = super::model_files::fetch(&client, uri, temporary.path()).await;
            client.close().await;
            fetched
        })?;
        match fetched {
            Some(fetched) => (fetched.label, fetched.dir),
            None => return Ok(None),
        }
    } else {
        (uri.to_string(), PathBuf::from(uri))
    };
    // The same rows, target and engine choice as the candidate's.
    let other = EvaluateArgs {
        model: dir,
        compare: None,
        ..args.clone()
    };
    let scored = if is_onnx_model(&other.model) {
        score_onnx(&other)
    } else {
        score_keel(&other)
    }
    .with_context(|| format!("evaluating {label} on {}", args.data.display()))?;
    Ok(Some((label, scored.metrics())))
}

/// A `.onnx` file, or a folder with `model.onnx` and no keel `model.json`.
fn is_onnx_model(path: &Path) -> bool {
    if path.is_dir() {
        !path.join(keel_learn::model::MODEL_FILE).is_file()
            && path.join(keel_learn::onnx::ONNX_FILE).is_file()
    } else {
        path.extension()
            .is_some_and(|extension| extension.eq_ignore_ascii_case("onnx"))
    }
}

/// The rows `keel train --seed S --test-fraction F` held out, or all rows.
fn held_out(table: Table, args: &EvaluateArgs) -> anyhow::Result<Table> {
    if args.test_fraction <= 0.0 {
        return Ok(table);
    }
    let (_, test_rows) = train_test_split(table.n_rows(), args.test_fraction, args.seed)?;
    Ok(table.select_rows(&test_rows))
}

fn score_keel(args: &EvaluateArgs) -> anyhow::Result<Scored> {
    let mut model = Model::load(&args.model)?;
    if let Some(target) = &args.target {
        model.target = target.clone();
    }
    let table = held_out(model.read_table(&args.data)?, args)?;
    Ok(Scored::from_model(&model, &table)?)
}

/// Predicts with ONNX Runtime (keel-engine) and lines the answers up with the
/// truth: classes by label, probabilities in the signature's class order.
fn score_onnx(args: &EvaluateArgs) -> anyhow::Result<Scored> {
    if let Some(library) = &args.onnxruntime_lib {
        keel_engine::set_onnxruntime_library(library.clone());
    }
    let loaded = LoadedModel::load(&args.model, EnginePreference::Auto)?;
    let signature = loaded.signature();
    let target = match &args.target {
        Some(target) => target.clone(),
        None => signature_target(&args.model).context(
            "--target: name the column holding the truth (the model's signature does not)",
        )?,
    };
    let categorical: Vec<String> = signature
        .inputs
        .iter()
        .filter(|input| input.kind.is_categorical())
        .map(|input| input.name.clone())
        .collect();
    let table = held_out(Table::read(&args.data, &categorical)?, args)?;
    let present: Vec<usize> = {
        let truth = table.require(&target)?;
        (0..table.n_rows())
            .filter(|&row| truth.text(row).is_some())
            .collect()
    };
    if present.is_empty() {
        bail!("target column {target:?} has no values");
    }
    let table = table.select_rows(&present);
    let truth = table.require(&target)?;
    let mut columns = Vec::with_capacity(signature.inputs.len());
    for input in &signature.inputs {
        let column = table.require(&input.name)?;
        columns.push(match (input.kind.is_categorical(), column) {
            (false, Column::Categorical(_)) => bail!(
                "column {:?} holds text; the model takes it as a number",
                input.name
            ),
            (true, Column::Numeric(values)) => Column::Categorical(
                values
                    .iter()
                    .map(|value| (!value.is_nan()).then(|| format_number(*value)))
                    .collect(),
            ),
            (_, column) => column.clone(),
        });
    }
    let batch = Batch {
        rows: table.n_rows(),
        columns,
    };
    Ok(match loaded.predict(&batch)? {
        keel_engine::Predictions::Classes {
            labels,
            probabilities,
            k,
        } => {
            let classes = signature.classes().unwrap_or_default().to_vec();
            let index = |label: &str| classes.iter().position(|class| class == label);
            let labels = labels
                .iter()
                .map(|label| {
                    index(label).with_context(|| {
                        format!("the model answered {label:?}, not one of its classes")
                    })
                })
                .collect::<anyhow::Result<Vec<usize>>>()?;
            let truth = (0..batch.rows)
                .map(|row| truth.text(row).and_then(|text| index(&text)))
                .collect();
            Scored::Classes {
                truth,
                labels,
                probabilities: probabilities
                    .chunks(k.max(1))
                    .map(<[f64]>::to_vec)
                    .collect(),
                classes,
            }
        }
        keel_engine::Predictions::Values(predicted) => match truth {
            Column::Numeric(values) => Scored::Values {
                truth: values.clone(),
                predicted,
            },
            Column::Categorical(_) => {
                bail!("target column {target:?} holds text; this model predicts numbers")
            }
        },
    })
}

/// The `target` a `signature.json` next to an ONNX model names, if any.
fn signature_target(model: &Path) -> Option<String> {
    let folder = if model.is_dir() {
        model
    } else {
        model.parent()?
    };
    let bytes = std::fs::read(folder.join(keel_learn::model::SIGNATURE_FILE)).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get("target")?.as_str().map(str::to_string)
}

struct Logged {
    run_id: String,
    experiment_id: String,
    artifact: String,
}

async fn log_to_run(
    args: &EvaluateArgs,
    scalars: &[(String, f64)],
    document: &serde_json::Value,
) -> anyhow::Result<Logged> {
    let client = args.client.open(None).await?;
    let result = log_with(&client, args, scalars, document).await;
    client.close().await;
    result
}

async fn log_with(
    client: &Client,
    args: &EvaluateArgs,
    scalars: &[(String, f64)],
    document: &serde_json::Value,
) -> anyhow::Result<Logged> {
    let (run, created) = match (&args.run_id, &args.experiment) {
        (Some(run_id), _) => (client.get_run(run_id).await?, false),
        (None, Some(name)) => {
            let experiment_id = client.experiment_id(name).await?;
            let run = client
                .create_run(CreateRun {
                    experiment_id,
                    user_id: super::client::local_user(),
                    run_name: args.run_name.clone(),
                    start_time: Some(now_millis()),
                    tags: Vec::new(),
                })
                .await?;
            (run, true)
        }
        (None, None) => anyhow::bail!("no run to log to"),
    };
    let run_id = run.info.run_id.clone();
    let timestamp = now_millis();
    let metrics = scalars
        .iter()
        .map(|(name, value)| Metric::new(name.clone(), *value, timestamp, 0))
        .collect();
    let param = |key: &str, value: String| Param {
        key: key.to_string(),
        value,
    };
    let params = vec![
        param("eval.model", args.model.display().to_string()),
        param("eval.data", args.data.display().to_string()),
        param("eval.seed", args.seed.to_string()),
        param("eval.test_fraction", args.test_fraction.to_string()),
        param("eval.bootstrap", args.bootstrap.to_string()),
    ];
    client
        .log_batch(&run_id, metrics, params, Vec::new())
        .await?;
    client
        .put_bytes(
            &run.info.artifact_uri,
            "metrics.json",
            serde_json::to_vec_pretty(document)?.into(),
        )
        .await
        .with_context(|| format!("storing metrics.json for run {run_id}"))?;
    let artifact = client.artifact_location(&run.info.artifact_uri, "metrics.json")?;
    if created {
        client
            .update_run(
                &run_id,
                UpdateRun {
                    status: Some(RunStatus::Finished),
                    end_time: Some(now_millis()),
                    run_name: None,
                },
            )
            .await?;
    }
    Ok(Logged {
        run_id,
        experiment_id: run.info.experiment_id,
        artifact,
    })
}
