//! `keel predict MODEL_URI INPUT... --output OUT.parquet [--shard I/N]`:
//! batch scoring through `keel serve`'s input contract and engine
//! (keel-serve's `batch` module), one shard of a file set per process.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use futures::StreamExt;
use keel_serve::batch::{BatchOptions, DEFAULT_BATCH_ROWS, load_model, score};
use keel_serve::{EnginePreference, ServeConfig};
use keel_table::shard::Shard;
use tokio::io::AsyncWriteExt;

use super::serve::{ContractArgs, tracking_server};

#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// The model, as `keel serve` takes it: a path (keel model folder, ONNX
    /// file), `runs:/RUN_ID/PATH`, or `models:/NAME@ALIAS` / `models:/NAME/VERSION`.
    pub model_uri: String,
    /// Rows to score: CSV or Parquet files, folders of them, or s3://
    /// objects (downloaded to a temporary folder first); one data set in
    /// sorted path order.
    #[arg(required = true)]
    pub inputs: Vec<String>,
    /// Parquet file to write (temporary file, then rename).
    #[arg(long)]
    pub output: PathBuf,
    /// Score only shard I of N (Parquet row groups, CSV files: the rule of
    /// `keel monitor profile --shard`); `auto/N` reads I from JOB_COMPLETION_INDEX.
    #[arg(long)]
    pub shard: Option<Shard>,
    /// Also write the model's input columns (as the contract read them).
    #[arg(long)]
    pub include_inputs: bool,
    /// Rows per batch (and per output row group).
    #[arg(long, default_value_t = DEFAULT_BATCH_ROWS)]
    pub batch_rows: usize,
    /// Tracking server that resolves models:/ and runs:/ URIs (default, as
    /// for every command: KEEL_TRACKING_URI, KEEL_BACKEND_STORE_URI, MLFLOW_TRACKING_URI).
    #[arg(long)]
    pub tracking_uri: Option<String>,
    /// Bearer token for the tracking server.
    #[arg(long, env = "MLFLOW_TRACKING_TOKEN", hide_env_values = true)]
    pub tracking_token: Option<String>,
    /// Engine for keel model folders: auto (native) or onnx.
    #[arg(long, default_value = "auto", value_parser = ["auto", "onnx"])]
    pub engine: String,
    /// ONNX Runtime shared library (else KEEL_ONNXRUNTIME_LIB, ORT_DYLIB_PATH).
    #[arg(long)]
    pub onnxruntime_lib: Option<PathBuf>,
    /// Where downloaded model versions are cached.
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pub contract: ContractArgs,
}

pub fn run(args: PredictArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting runtime")?;
    runtime.block_on(predict(args, quiet))
}

async fn predict(args: PredictArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    if let Some(library) = &args.onnxruntime_lib {
        keel_engine::set_onnxruntime_library(library.clone());
    }
    if args.batch_rows == 0 || args.batch_rows > keel_serve::batch::MAX_BATCH_ROWS {
        bail!(
            "--batch-rows must be between 1 and {}",
            keel_serve::batch::MAX_BATCH_ROWS
        );
    }
    let started = std::time::Instant::now();
    let mut config = ServeConfig::new(&args.model_uri);
    config.tracking_uri = tracking_server(args.tracking_uri.clone());
    config.tracking_token = args.tracking_token.clone();
    config.engine = match args.engine.as_str() {
        "onnx" => EnginePreference::Onnx,
        _ => EnginePreference::Auto,
    };
    if let Some(cache) = &args.cache_dir {
        config.cache_dir = cache.clone();
    }
    let (model, name, version) = load_model(&config).await?;
    let staging = tempfile::Builder::new()
        .prefix("keel-predict-")
        .tempdir()
        .context("creating a temporary folder for s3:// inputs")?;
    let inputs = stage(&args.inputs, staging.path()).await?;
    let files = keel_table::shard::files(&inputs)?;
    let units = keel_table::shard::units(&files)?;
    let shard = args.shard.unwrap_or(Shard::WHOLE);
    let mine = shard.select(&units).to_vec();
    let options = BatchOptions {
        policies: args.contract.policies(),
        batch_rows: args.batch_rows,
        include_inputs: args.include_inputs,
    };
    let output = args.output.clone();
    let summary = tokio::task::spawn_blocking(move || score(&model, &mine, &output, &options))
        .await
        .context("scoring task failed")??;
    if !quiet {
        let seconds = started.elapsed().as_secs_f64();
        eprintln!(
            "Scored {} rows ({} flagged) of shard {shard} ({} of {} units) with {name} version {version} in {seconds:.2}s ({:.0} rows/s) -> {}",
            summary.rows,
            summary.flagged_rows,
            shard.select(&units).len(),
            units.len(),
            summary.rows as f64 / seconds.max(1e-9),
            args.output.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Local paths as they are; each `s3://bucket/key` downloaded (streamed)
/// into `dir` under its key, so sorted order is the keys' order.
async fn stage(inputs: &[String], dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths = Vec::with_capacity(inputs.len());
    for input in inputs {
        let Some(rest) = input.strip_prefix("s3://") else {
            paths.push(PathBuf::from(input));
            continue;
        };
        let (bucket, key) = rest
            .split_once('/')
            .filter(|(_, key)| !key.is_empty() && !key.ends_with('/'))
            .with_context(|| format!("{input}: name an object, s3://BUCKET/KEY"))?;
        let store = keel_artifacts::ArtifactStore::open(&format!("s3://{bucket}"))?;
        let object = store.get(key).await?;
        let local = dir.join(bucket).join(key);
        if let Some(parent) = local.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let mut file = tokio::fs::File::create(&local)
            .await
            .with_context(|| format!("creating {}", local.display()))?;
        let mut stream = object.stream;
        while let Some(chunk) = stream.next().await {
            file.write_all(&chunk?)
                .await
                .with_context(|| format!("writing {}", local.display()))?;
        }
        file.flush().await?;
        paths.push(local);
    }
    Ok(paths)
}
