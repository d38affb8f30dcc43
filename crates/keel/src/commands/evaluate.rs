//! `keel evaluate`: scores a model folder written by `keel train` on a CSV
//! table and prints (or writes) the metrics JSON that gates read.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use keel_learn::model::write_json_atomic;
use keel_learn::{Model, evaluate};

/// Arguments of `keel evaluate`.
#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {
    /// Model folder (from `keel train --out`).
    pub model: PathBuf,
    /// Data to score (CSV or Parquet, holding the target column).
    pub data: PathBuf,
    /// Column holding the truth (default: the model's target).
    #[arg(long)]
    pub target: Option<String>,
    /// Write the metrics JSON here instead of printing it.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

pub fn run(args: EvaluateArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let mut model = Model::load(&args.model)?;
    if let Some(target) = args.target {
        model.target = target;
    }
    let table = model.read_table(&args.data)?;
    let metrics = evaluate(&model, &table).with_context(|| {
        format!(
            "evaluating {} on {}",
            args.model.display(),
            args.data.display()
        )
    })?;
    match &args.output {
        Some(path) => {
            write_json_atomic(path, &metrics)?;
            if !quiet {
                let (name, value) = metrics.headline();
                println!("{name}={value:.4}; metrics written to {}", path.display());
            }
        }
        None => println!("{}", serde_json::to_string_pretty(&metrics)?),
    }
    Ok(ExitCode::SUCCESS)
}
