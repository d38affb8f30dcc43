//! `keel gate`: evaluates keel.yaml's gates on a pipeline run's metrics
//! (default: the newest `keel run` run), against the production model,
//! prints the table, stores the results on the run, exits 1 on failure.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use keel_pipeline::{Pipeline, gates};

use super::run::TrackingArgs;

/// Arguments of `keel gate`.
#[derive(Debug, clap::Args)]
pub struct GateArgs {
    /// The run to gate (default: the newest `keel run` run of the experiment).
    #[arg(long)]
    pub run: Option<String>,
    /// The pipeline file holding the gates.
    #[arg(long, default_value = "keel.yaml")]
    pub file: PathBuf,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub tracking: TrackingArgs,
}

pub fn run(args: GateArgs) -> anyhow::Result<ExitCode> {
    let pipeline = Pipeline::load(&args.file)?;
    if pipeline.gates.is_empty() {
        bail!("{} has no `gates:`", pipeline.file.display());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting runtime")?;
    runtime.block_on(async {
        let tracking = args.tracking.open(&pipeline.root).await?;
        let outcome = async {
            let run = match &args.run {
                Some(run_id) => tracking.client.get_run(run_id).await?,
                None => tracking.latest_run().await?.ok_or_else(|| {
                    anyhow::anyhow!(
                        "no pipeline run in experiment {:?}: run `keel run` first (or pass --run RUN_ID)",
                        tracking.experiment
                    )
                })?,
            };
            let (results, json) = tracking.gate(&pipeline, &run).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&json)?);
            } else {
                println!("run {}", run.info.run_id);
                print!("{}", gates::table(&results));
            }
            Ok::<_, anyhow::Error>(gates::all_passed(&results))
        }
        .await;
        tracking.client.close().await;
        Ok(if outcome? { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    })
}
